#!/usr/bin/python3
# A bounded soak: several clients send random valid and invalid calls to two domains (two
# real guests) — creates of every kind, lists, property reads, deletes, reverts, bad input —
# for SNAPSHOTD_SOAK_SECONDS (default 45; raise it by hand for a long run). The daemon must
# never crash, every reply must be a result or a documented error, its RSS must stay flat,
# and at the end the metadata, the files on disk and QEMU's block graph must agree.

import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import snaptest
from snaptest import (DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH, SNAPSHOT_IFACE, ERROR_PREFIX, Bus, Guest)

SECONDS = float(os.environ.get("SNAPSHOTD_SOAK_SECONDS", "45"))
CLIENTS = 4
DOCUMENTED = {ERROR_PREFIX + n for n in (
    "OperationUnsupported", "InvalidArgument", "NoSuchDomain", "NoSuchSnapshot", "SnapshotExists", "Busy",
    "OperationInvalid", "NoSpace", "AgentUnavailable", "Failed", "Aborted")} | {
    "org.freedesktop.DBus.Error.InvalidArgs", "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownMethod"}


def v(sig, value):
    from gi.repository import GLib
    return GLib.Variant(sig, value)


def wait_until(cond, timeout, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("%s not reached in %ss" % (what, timeout))
        time.sleep(0.05)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class SoakTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="snaps-", dir="/tmp")
        self.guests = {}
        self.bus = Bus(os.path.join(self.tmp, "bus"))
        os.makedirs(self.bus.tmpdir)
        # cleanups run even when setUp fails half way, unlike tearDown
        self.addCleanup(self.cleanup)
        self.bus.start()
        self.conf = os.path.join(self.tmp, "conf")
        self.state = os.path.join(self.tmp, "state")
        for name in ("vm1", "vm2"):
            g = Guest(os.path.join(self.tmp, name), dirty_mb=4)
            self.guests[name] = g
            g.start()
            images = os.path.join(self.tmp, "img-" + name)
            os.makedirs(images)
            g.domain_config(self.conf, name, images_dir=images)
        for g in self.guests.values():
            g.wait_ready()
        self.bus.start_daemon(self.conf, self.state)
        self.doms = {n: self.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", (n,))[0] for n in self.guests}
        for d in self.doms.values():
            wait_until(lambda: self.bus.get_property(d, DOMAIN_IFACE, "State") == "running", 20)

    def cleanup(self):
        result = getattr(self._outcome, "result", None)
        failed = result is None or result.errors or result.failures
        if failed:
            sys.stderr.write("\n===== snapshotd log =====\n%s\n" % self.bus.read_daemon_log()[-30000:])
        self.bus.stop()
        for g in self.guests.values():
            g.stop()
        if not failed and os.environ.get("SNAPSHOTD_TEST_KEEP") != "1":
            subprocess.run(["rm", "-rf", self.tmp])

    def client(self, seed, stats, errors, stop):
        rnd = random.Random(seed)
        conn = self.bus.new_connection()
        counter = 0

        def call(path, iface, method, sig=None, args=(), timeout=300):
            from gi.repository import Gio, GLib
            params = GLib.Variant("(%s)" % sig, tuple(args)) if sig else None
            try:
                r = conn.call_sync(snaptest.BUS_NAME, path, iface, method, params, None,
                                   Gio.DBusCallFlags.NONE, int(timeout * 1000), None)
                stats["ok"] += 1
                return r.unpack()
            except GLib.Error as e:
                name = Gio.DBusError.get_remote_error(e) or "?"
                stats[name] = stats.get(name, 0) + 1
                if name not in DOCUMENTED:
                    errors.append((method, name, e.message))
                return None

        while not stop.is_set():
            counter += 1
            dom_name = rnd.choice(sorted(self.doms))
            dom = self.doms[dom_name]
            op = rnd.random()
            snaps = call(dom, DOMAIN_IFACE, "ListSnapshots", "t", (rnd.choice([0, 1, 4, 8, 128, 512, 1024]),))
            snaps = snaps[0] if snaps else []
            name = "c%d-%d" % (seed, counter)
            if op < 0.30:
                kind = rnd.choice(["disk", "disk", "quiesce", "live", "paused", "internal"])
                opts = {"disk": {"disk-only": v("b", True), "atomic": v("b", True)},
                        "quiesce": {"disk-only": v("b", True), "quiesce": v("b", True)},
                        # a short live-timeout: a save that does not converge escalates (pause to finish)
                        "live": {"live": v("b", True), "memory": v("s", "external"), "live-timeout": v("u", 3)},
                        "paused": {"memory": v("s", "external")},
                        "internal": {"memory": v("s", "internal")}}[kind]
                call(dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "soak", opts))
            elif op < 0.45 and snaps:
                victim, flags = rnd.choice(snaps), rnd.choice([0, 0, 2, 1])
                # metadata only (2) forgets the record and keeps every file, by design
                gone = call(victim, "org.freedesktop.DBus.Properties", "Get", "ss", (SNAPSHOT_IFACE, "Name")) \
                    if flags == 2 else None
                if call(victim, SNAPSHOT_IFACE, "Delete", "t", (flags,)) is not None and gone:
                    self.kept.add(gone[0])
            elif op < 0.50 and snaps:
                flags = rnd.choice([0, 1, 2])
                # PAUSED (2) leaves the guest paused, by design, and so may any later revert to
                # a snapshot taken while it was
                if call(rnd.choice(snaps), SNAPSHOT_IFACE, "Revert", "t", (flags,)) is not None and flags == 2:
                    self.paused_by_revert.add(dom_name)
            elif op < 0.75 and snaps:
                p = rnd.choice(snaps)
                call(p, "org.freedesktop.DBus.Properties", "GetAll", "s", (SNAPSHOT_IFACE,))
                call(p, SNAPSHOT_IFACE, "GetXMLDesc", "t", (0,))
                call(p, SNAPSHOT_IFACE, "ListChildren", "t", (1,))
            else:
                bad = rnd.choice([
                    lambda: call(dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", ("../x", "", {"disk-only": v("b", True)})),
                    lambda: call(dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", ("x", "", {"bogus": v("b", True)})),
                    lambda: call(dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", ("x", "", {"live": v("b", True)})),
                    lambda: call(dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", ("<domainsnapshot><name>x", 16)),
                    lambda: call(dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", ("<a/>" * 1000, 1 << 20)),
                    lambda: call(dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("nope",)),
                    lambda: call(dom, DOMAIN_IFACE, "AbortJob"),
                    lambda: call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("nope",)),
                    lambda: call(dom + "/snapshot/nope", SNAPSHOT_IFACE, "Delete", "t", (0,)),
                    lambda: call(dom, DOMAIN_IFACE, "ListSnapshots", "t", (1 << 40,)),
                ])
                bad()

    def test_soak(self):
        pid = self.bus.daemon.pid
        rss_start = rss_kib(pid)
        stats, errors, stop = {"ok": 0}, [], threading.Event()
        self.kept = set()
        self.paused_by_revert = set()
        threads = [threading.Thread(target=self.client, args=(i, stats, errors, stop)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        stop.set()
        for t in threads:
            t.join(300)
        rss_end = rss_kib(pid)
        total = sum(stats.values())
        sys.stderr.write("soak: %d calls in %.0fs by %d clients; replies: %s; RSS %d KiB -> %d KiB\n"
                         % (total, SECONDS, CLIENTS, dict(sorted(stats.items())), rss_start, rss_end))

        self.assertIsNone(self.bus.daemon.poll(), "the daemon died")
        self.assertEqual(errors, [])
        self.assertGreater(stats["ok"], 20)
        # Under ASan (the sanitize suite) freed memory sits in its quarantine: RSS says nothing
        # there, leaks are ASan's to report.
        if not os.environ.get("SNAPSHOTD_TEST_SLOW"):
            self.assertLess(rss_end, rss_start + 8 * 1024, "RSS grew by more than 8 MiB")

        # metadata, files and QEMU agree
        for name, dom in self.doms.items():
            wait_until(lambda: self.bus.get_property(dom, DOMAIN_IFACE, "Job") == "", 120, "jobs end")
            g = self.guests[name]
            # (a memory save of a paused guest leaves QEMU in 'postmigrate': paused too)
            if name in self.paused_by_revert and g.status() in ("paused", "postmigrate"):
                g.qmp("cont")
            self.assertEqual(g.status(), "running")
            self.assertEqual(g.agent("guest-fsfreeze-status"), "thawed")
            paths = self.bus.call(dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]
            records = sorted(os.listdir(os.path.join(self.state, "snapshots", name))) \
                if os.path.isdir(os.path.join(self.state, "snapshots", name)) else []
            names = sorted(self.bus.get_property(p, SNAPSHOT_IFACE, "Name") + ".xml" for p in paths)
            self.assertEqual(names, records)
            chain = set()
            for d in g.qmp("query-block"):
                img = d.get("inserted", {}).get("image")
                while img:
                    chain.add(img["filename"])
                    img = img.get("backing-image")
            named = set()
            for p in paths:
                props = self.bus.get_all_properties(p, SNAPSHOT_IFACE)
                named.update(d[2] for d in props["Disks"] if d[2])
                if props["MemoryFile"]:
                    named.add(props["MemoryFile"])
                    self.assertTrue(os.path.exists(props["MemoryFile"]))
            images = os.path.join(self.tmp, "img-" + name)
            on_disk = {os.path.join(images, f) for f in os.listdir(images)}
            # every file is in QEMU's chain or named by a record, or was kept by a metadata-only
            # delete; nothing else is left behind
            kept = {f for f in on_disk if os.path.basename(f).split(".")[0] in self.kept}
            self.assertEqual(on_disk - chain - named - kept, set())
            # every file a record names as an overlay exists unless the snapshot was reverted away
            for f in named:
                self.assertTrue(os.path.exists(f) or f not in chain, f)


if __name__ == "__main__":
    unittest.main(verbosity=2)
