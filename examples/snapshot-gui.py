#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Take a live snapshot with memory the way a GUI would: every D-Bus call asynchronous on
a GLib main loop (the window would stay responsive), the domain list drawn from the
objects' properties, the job's Progress signals drawn as a progress bar, and a Cancel
button (here: Ctrl-C, or --abort-after) that calls AbortJob.

Needs only GLib/Gio through PyGObject: on Debian the package python3-gi, run with
/usr/bin/python3.

    snapshot-gui.py                       list the domains, snapshot the first one
    snapshot-gui.py --domain vm1 --name before-upgrade
    snapshot-gui.py --list                list the domains only
    snapshot-gui.py --abort-after 2       cancel the snapshot 2 s into the memory save
    snapshot-gui.py --address unix:path=/tmp/bus.sock   another bus than the system bus

Exit status: 0 snapshot taken (or listed), 1 failure, 2 bad usage, 3 aborted.
"""

import argparse
import signal
import sys
import time

try:
    import gi
    gi.require_version("Gio", "2.0")
    from gi.repository import Gio, GLib
except (ImportError, ValueError) as e:
    sys.exit("snapshot-gui.py needs PyGObject (Debian: python3-gi, run with /usr/bin/python3): %s" % e)

BUS_NAME = "org.example.Snapshot1"
MANAGER_PATH = "/org/example/Snapshot1"
MANAGER_IFACE = "org.example.Snapshot1.Manager"
DOMAIN_IFACE = "org.example.Snapshot1.Domain"
SNAPSHOT_IFACE = "org.example.Snapshot1.Snapshot"
ABORTED = "org.example.Snapshot1.Error.Aborted"

# A snapshot with memory can take minutes: no call timeout for it (D-Bus' default is 25 s).
NO_TIMEOUT = GLib.MAXINT

EXIT_OK, EXIT_FAILURE, EXIT_ABORTED = 0, 1, 3


def error_name(e):
    """The D-Bus error name of a GLib.Error from a call, and its message without it."""
    name = Gio.DBusError.get_remote_error(e) or "%s.%d" % (GLib.quark_to_string(e.domain), e.code)
    Gio.DBusError.strip_remote_error(e)
    return name, e.message


class ProgressBar:
    """Draws Progress(job, phase, processed, remaining, total): a bar redrawn in place on a
    terminal, one "progress:" line per signal otherwise (a log, or a test, reads those)."""

    WIDTH = 30

    def __init__(self, out):
        self.out = out
        self.tty = out.isatty()
        self.drawn = False

    def update(self, job, phase, processed, remaining, total):
        whole = total or processed + remaining
        percent = 100 * processed // whole if whole else None
        if phase == "memory" and whole:
            detail = "%d/%d MiB" % (processed >> 20, whole >> 20)
        elif whole:
            detail = "%d/%d" % (processed, whole)
        else:
            detail = ""
        if self.tty:
            filled = self.WIDTH * (percent or 0) // 100
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.out.write("\r\033[K[%s] %-8s %3s%% %s" % (bar, phase, "" if percent is None else percent, detail))
            self.drawn = True
        else:
            self.out.write("progress: %s %s %s%s\n" % (job, phase, "-" if percent is None else "%d%%" % percent,
                                                      " " + detail if detail else ""))
        self.out.flush()

    def finish(self):
        if self.drawn:
            self.out.write("\n")
            self.drawn = False


class SnapshotApp:
    def __init__(self, args, loop):
        self.args = args
        self.loop = loop
        self.conn = None
        self.domains = {}               # path -> properties
        self.domain = None
        self.bar = ProgressBar(sys.stdout)
        self.job_running = False
        self.abort_requested = False
        self.abort_timer = 0
        self.exit_status = EXIT_OK
        self.started = None

    # --- plumbing ----------------------------------------------------------------------

    def quit(self, status):
        self.exit_status = status
        self.loop.quit()

    def fatal(self, what, e):
        name, msg = error_name(e)
        self.bar.finish()
        print("%s: %s: %s" % (what, name, msg), file=sys.stderr)
        self.quit(EXIT_FAILURE)

    def call(self, path, iface, method, params, on_reply, on_error=None, timeout=-1):
        """An asynchronous call; on_reply gets the unpacked reply tuple. Interactive
        authorization is allowed, so polkit's agent may ask the user for a password, as a
        GUI wants."""

        def done(conn, res):
            try:
                reply = conn.call_finish(res)
            except GLib.Error as e:
                if on_error:
                    on_error(e)
                else:
                    self.fatal(method, e)
                return
            on_reply(reply.unpack())

        self.conn.call(BUS_NAME, path, iface, method, params, None,
                       Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, timeout, None, done)

    # --- 1. connect ----------------------------------------------------------------------

    def start(self):
        if self.args.address:
            Gio.DBusConnection.new_for_address(
                self.args.address,
                Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
                None, None, self.on_connected, Gio.DBusConnection.new_for_address_finish)
        else:
            # The system bus (which honours $DBUS_SYSTEM_BUS_ADDRESS).
            Gio.bus_get(Gio.BusType.SYSTEM, None, self.on_connected, Gio.bus_get_finish)
        return False

    def on_connected(self, source, res, finish):
        try:
            self.conn = finish(res)
        except GLib.Error as e:
            return self.fatal("connect", e)
        # A GUI keeps its list current from the manager's signals rather than polling.
        self.conn.signal_subscribe(BUS_NAME, MANAGER_IFACE, None, MANAGER_PATH, None,
                                   Gio.DBusSignalFlags.NONE, self.on_manager_signal)
        self.call(MANAGER_PATH, MANAGER_IFACE, "ListDomains", None, self.on_domains)

    def on_manager_signal(self, conn, sender, path, iface, member, params):
        args = params.unpack()
        print("event: %s %s" % (member, " ".join(str(a) for a in args)))

    # --- 2. the domain list ----------------------------------------------------------------

    def on_domains(self, reply):
        paths = reply[0]
        if not paths:
            print("No domains.", file=sys.stderr)
            return self.quit(EXIT_FAILURE if not self.args.list else EXIT_OK)
        pending = set(paths)

        def got(path):
            def on_props(r):
                self.domains[path] = r[0]
                pending.discard(path)
                if not pending:
                    self.show_domains(paths)
            return on_props

        # All properties of each domain in one call each, all calls in flight at once.
        for p in paths:
            self.call(p, "org.freedesktop.DBus.Properties", "GetAll", GLib.Variant("(s)", (DOMAIN_IFACE,)), got(p))

    def show_domains(self, paths):
        print("%-16s %-9s %-6s %-8s %s" % ("DOMAIN", "STATE", "AGENT", "KIND", "CURRENT SNAPSHOT"))
        for p in paths:
            d = self.domains[p]
            current = d.get("CurrentSnapshot", "/")
            print("%-16s %-9s %-6s %-8s %s" % (d.get("Name"), d.get("State"), "yes" if d.get("HasAgent") else "no",
                                               "managed" if d.get("Managed") else "attached",
                                               "-" if current == "/" else current.rsplit("/", 1)[-1]))
        sys.stdout.flush()
        if self.args.list:
            return self.quit(EXIT_OK)

        if self.args.domain:
            match = [p for p in paths if self.domains[p].get("Name") == self.args.domain]
            if not match:
                print("No domain '%s'." % self.args.domain, file=sys.stderr)
                return self.quit(EXIT_FAILURE)
            self.domain = match[0]
        else:
            self.domain = paths[0]
        self.create()

    # --- 3. the snapshot, with progress and a cancel button -----------------------------------

    def create(self):
        name = self.domains[self.domain]["Name"]
        self.conn.signal_subscribe(BUS_NAME, DOMAIN_IFACE, "Progress", self.domain, None,
                                   Gio.DBusSignalFlags.NONE, self.on_progress)
        options = {"live": GLib.Variant("b", True), "memory": GLib.Variant("s", "external")}
        if self.args.live_timeout is not None:
            options["live-timeout"] = GLib.Variant("u", self.args.live_timeout)
        print("Taking live snapshot '%s' of %s (Ctrl-C aborts)..." % (self.args.name or "(generated)", name))
        sys.stdout.flush()
        self.job_running = True
        self.started = time.monotonic()
        self.call(self.domain, DOMAIN_IFACE, "CreateSnapshot",
                  GLib.Variant("(ssa{sv})", (self.args.name, self.args.description, options)),
                  self.on_created, self.on_create_failed, timeout=NO_TIMEOUT)

    def on_progress(self, conn, sender, path, iface, member, params):
        if not self.job_running:
            return
        job, phase, processed, remaining, total = params.unpack()
        self.bar.update(job, phase, processed, remaining, total)
        # --abort-after counts from the start of the memory save, the part worth cancelling.
        if phase == "memory" and self.args.abort_after is not None and not self.abort_timer:
            self.abort_timer = GLib.timeout_add(int(self.args.abort_after * 1000), self.on_abort_timer)

    def on_created(self, reply):
        self.job_running = False
        self.bar.finish()
        path = reply[0]
        print("Snapshot taken in %.1f s: %s" % (time.monotonic() - self.started, path))

        def on_props(r):
            p = r[0]
            print("  name %s, state %s, memory %s %s" % (p["Name"], p["State"], p["Memory"], p["MemoryFile"]))
            for target, kind, file in p["Disks"]:
                print("  disk %s: %s %s" % (target, kind, file))
            self.quit(EXIT_OK)

        self.call(path, "org.freedesktop.DBus.Properties", "GetAll", GLib.Variant("(s)", (SNAPSHOT_IFACE,)),
                  on_props)

    def on_create_failed(self, e):
        self.job_running = False
        self.bar.finish()
        name, msg = error_name(e)
        if name == ABORTED:
            print("Snapshot aborted: %s" % msg)
            return self.quit(EXIT_ABORTED)
        print("Snapshot failed: %s: %s" % (name, msg), file=sys.stderr)
        self.quit(EXIT_FAILURE)

    def abort(self):
        if not self.job_running or self.abort_requested:
            return
        self.abort_requested = True
        self.bar.finish()
        print("Aborting...")
        sys.stdout.flush()

        def on_abort_error(e):
            # e.g. OperationInvalid: the job was already past the point of no return, and
            # the snapshot will be taken after all.
            name, msg = error_name(e)
            print("AbortJob: %s: %s" % (name, msg), file=sys.stderr)

        self.call(self.domain, DOMAIN_IFACE, "AbortJob", None, lambda r: None, on_abort_error)

    def on_abort_timer(self):
        self.abort()
        return GLib.SOURCE_REMOVE

    def on_sigint(self):
        if self.job_running and not self.abort_requested:
            # Like a Cancel button: the job's own reply (Aborted) ends the program.
            self.abort()
        else:
            # A second Ctrl-C, or nothing to abort: stop waiting.
            self.bar.finish()
            self.quit(130)
        return GLib.SOURCE_CONTINUE


def main():
    ap = argparse.ArgumentParser(description="Take a live snapshot with memory through snapshotd, as a GUI would.")
    ap.add_argument("--address", help="D-Bus address of the bus to use (default: the system bus)")
    ap.add_argument("--domain", help="the domain to snapshot (default: the first one listed)")
    ap.add_argument("--name", default="", help="the snapshot's name (default: generated by snapshotd)")
    ap.add_argument("--description", default="taken by snapshot-gui.py", help="the snapshot's description")
    ap.add_argument("--live-timeout", type=int, help="seconds the live save may run before the guest is paused")
    ap.add_argument("--abort-after", type=float, metavar="SECONDS", help="abort the snapshot SECONDS after its memory save started")
    ap.add_argument("--list", action="store_true", help="only list the domains")
    args = ap.parse_args()

    loop = GLib.MainLoop()
    app = SnapshotApp(args, loop)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, app.on_sigint)
    GLib.idle_add(app.start)
    loop.run()
    return app.exit_status


if __name__ == "__main__":
    sys.exit(main())
