#!/usr/bin/python3
# Benchmark of issue 2: what snapshotd adds on top of QEMU for a disk-only snapshot, and
# how ListSnapshots scales with the number of snapshots. One run, one running test guest
# (TCG unless SNAPSHOTD_TEST_ACCEL says otherwise), a private dbus-daemon, the built
# snapshotd. See bench/README.md for what each number means.
#
# Environment (set by `ninja -C <build> bench`): SNAPSHOTD, SNAPSHOTCTL,
# SNAPSHOTD_BUILD_ROOT (guest image cache), SNAPSHOTD_SOURCE_ROOT.

import argparse
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

REPO = os.environ.get("SNAPSHOTD_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

import snaptest  # noqa: E402,F401  (the harness; its names are imported below)
from snaptest import (BUS_NAME, DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH,  # noqa: E402
                      SNAPSHOT_IFACE, Bus, Guest, qdev_id)

now = time.perf_counter


# --- statistics and output ----------------------------------------------------------------

def pct(xs, p):
    """Nearest-rank percentile (p90 of 10 samples is the 9th smallest)."""
    s = sorted(xs)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def ms(x):
    return "%.2f" % (x * 1000.0)


def table(title, header, rows):
    cols = list(zip(*([header] + rows)))
    width = [max(len(str(c)) for c in col) for col in cols]
    out = [title]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                              for i, (c, w) in enumerate(zip(r, width)))
    out.append(fmt(header))
    out.append("  ".join("-" * w for w in width))
    out += [fmt(r) for r in rows]
    return "\n".join(out)


def log(msg):
    sys.stderr.write("[bench %6.1fs] %s\n" % (time.monotonic() - T0, msg))
    sys.stderr.flush()


T0 = time.monotonic()


# --- D-Bus ------------------------------------------------------------------------------------

def gi():
    from gi.repository import Gio, GLib
    return Gio, GLib


def call(conn, path, iface, method, sig=None, args=(), reply=None, timeout=120):
    Gio, GLib = gi()
    params = GLib.Variant("(%s)" % sig, tuple(args)) if sig else None
    rtype = GLib.VariantType(reply) if reply else None
    return conn.call_sync(BUS_NAME, path, iface, method, params, rtype,
                          Gio.DBusCallFlags.NONE, int(timeout * 1000), None)


def dbus_create(conn, dom, name):
    """One CreateSnapshot(disk-only, atomic) call; returns its wall time."""
    _, GLib = gi()
    opts = {"disk-only": GLib.Variant("b", True), "atomic": GLib.Variant("b", True)}
    t0 = now()
    call(conn, dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), "(o)")
    return now() - t0


def atomic_write(d, name, data):
    """What daemon/xml-util.c xml_file_write_atomic() does."""
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(d, name))
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


# --- the same snapshot by hand over QMP ---------------------------------------------------

def drain_events(qmp):
    # Events for the daemon's own blockdev-create jobs reach every monitor; read them out of
    # the socket now so they are not parsed inside a timed section.
    qmp.pull_events(0)
    qmp.events.clear()


def wait_concluded(qmp, job_id, since, timeout=60):
    # snaptest's wait_event polls in 0.5 s slices; this returns as soon as the event is read.
    deadline = time.monotonic() + timeout
    while True:
        for e in qmp.events[since:]:
            d = e.get("data", {})
            if e["event"] == "JOB_STATUS_CHANGE" and d.get("id") == job_id \
                    and d.get("status") == "concluded":
                return
        since = len(qmp.events)
        r = qmp._read(deadline)
        if "event" in r:
            qmp.events.append(r)


def raw_snapshot(guest, images, tag):
    """What daemon/job-create.c sends for a disk-only atomic snapshot of every writable disk,
    sent by hand on the test monitor. Returns (total, transaction) wall times. query-block
    (to learn the current top nodes) runs before the clock starts."""
    qmp = guest._qmp
    drain_events(qmp)
    plan = []
    for dev in qmp.execute("query-block"):
        ins = dev.get("inserted")
        if not ins or ins.get("ro"):
            continue
        img = ins["image"]
        plan.append((qdev_id(dev.get("qdev", "")), ins["node-name"], img["filename"],
                     img["format"], img["virtual-size"]))
    assert len(plan) == 2, plan

    t0 = now()
    actions = []
    for target, top, base, fmt, size in plan:
        path = os.path.join(images, "%s.%s.qcow2" % (tag, target))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        os.close(fd)
        file_node = "%s-%s-file" % (tag, target)
        fmt_node = "%s-%s" % (tag, target)
        job = "%s-%s-create" % (tag, target)
        qmp.execute("blockdev-add", {"driver": "file", "node-name": file_node, "filename": path})
        since = len(qmp.events)
        qmp.execute("blockdev-create", {"job-id": job,
                                        "options": {"driver": "qcow2", "file": file_node,
                                                    "size": size, "backing-file": base,
                                                    "backing-fmt": fmt}})
        wait_concluded(qmp, job, since)
        qmp.execute("job-dismiss", {"id": job})
        qmp.execute("blockdev-add", {"driver": "qcow2", "node-name": fmt_node,
                                     "file": file_node, "backing": None})
        actions.append({"type": "blockdev-snapshot", "data": {"node": top, "overlay": fmt_node}})
    t1 = now()
    qmp.execute("transaction", {"actions": actions})
    t2 = now()
    return t2 - t0, t2 - t1


# --- metadata copies ----------------------------------------------------------------------------

def make_copies(template, n, chain):
    """n <domainsnapshot> documents made from one real one: names b0000.., creation times
    one second apart, each the parent of the next (chain) or all roots (flat); the last is
    the current one."""
    root = ET.fromstring(template)
    name = root.findtext("name")
    ctime = int(root.findtext("creationTime"))
    m = re.search(r"<creation-time>(\d+)</creation-time>", template)
    cusec = int(m.group(1)) if m else None
    # Edit the text, not a re-serialized tree, so namespaces and layout stay as the daemon
    # wrote them. Drop the template's own <parent> and <active>, then put ours where the
    # daemon's writer puts them (parent before creationTime, active before domain).
    body = re.sub(r"\s*<parent>.*?</parent>", "", template, count=1, flags=re.S)
    body = re.sub(r"\s*<active>[^<]*</active>", "", body, count=1)
    assert "<name>%s</name>" % name in body and "\n  <domain" in body
    out = {}
    for i in range(n):
        new = "b%04d" % i
        doc = body.replace("<name>%s</name>" % name, "<name>%s</name>" % new, 1)
        ct = "<creationTime>%d</creationTime>" % (ctime + i)
        if chain and i > 0:
            ct = "<parent>\n    <name>b%04d</name>\n  </parent>\n  " % (i - 1) + ct
        doc = doc.replace("<creationTime>%d</creationTime>" % ctime, ct, 1)
        if cusec is not None:
            doc = doc.replace("<creation-time>%d</creation-time>" % cusec,
                              "<creation-time>%d</creation-time>" % (cusec + i * 1000000), 1)
        if i == n - 1:
            doc = doc.replace("\n  <domain", "\n  <active>1</active>\n  <domain", 1)
        out[new] = doc
    return out


# --- the benchmark ------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="snapb-", dir="/tmp")
        self.guest = self.bus = None

    def setup(self):
        g = os.path.join(self.tmp, "g")
        self.guest = Guest(g)
        self.guest.start()
        boot = self.guest.wait_ready(timeout=120)
        log("guest up (%s) in %.1fs" % (self.guest.accel, boot))
        self.bus = Bus(os.path.join(self.tmp, "bus"))
        os.makedirs(self.bus.tmpdir)
        self.bus.start()
        self.config_dir = os.path.join(self.tmp, "conf")
        self.state_dir = os.path.join(self.tmp, "state")
        self.images = os.path.join(self.tmp, "images")
        os.makedirs(self.images)
        self.guest.domain_config(self.config_dir, "vm1", images_dir=self.images)
        self.start_daemon()
        self.conn = self.bus.conn

    def start_daemon(self):
        t0 = now()
        self.bus.start_daemon(self.config_dir, self.state_dir)
        took = now() - t0
        self.dom = self.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm1",))[0]
        deadline = time.monotonic() + 30
        while self.bus.get_property(self.dom, DOMAIN_IFACE, "State") != "running":
            if time.monotonic() > deadline:
                raise TimeoutError("domain vm1 not running after daemon start")
            time.sleep(0.05)
        return took

    def teardown(self):
        if self.bus:
            self.bus.stop()
        if self.guest:
            self.guest.stop()
        if self.args.keep:
            log("kept %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # part 1
    def create_bench(self):
        reps = self.args.reps
        qmp = self.guest._qmp
        # one of each untimed, so first-use costs (QEMU's qcow2 code paths, the daemon's
        # first QMP capability look-ups) stay out of the samples
        dbus_create(self.conn, self.dom, "warm")
        raw_snapshot(self.guest, self.images, "rwarm")
        dbus, raw, tx = [], [], []
        for i in range(reps):
            # alternate which goes first, so both see the same backing-chain depths on average
            order = ("dbus", "raw") if i % 2 == 0 else ("raw", "dbus")
            for kind in order:
                if kind == "dbus":
                    dbus.append(dbus_create(self.conn, self.dom, "d%02d" % i))
                    drain_events(qmp)
                else:
                    t, x = raw_snapshot(self.guest, self.images, "r%02d" % i)
                    raw.append(t)
                    tx.append(x)
        assert self.guest.status() == "running"
        depth = 2 * reps + 2
        pair = [a / b for a, b in zip(dbus, raw)]

        # Components of the difference, measured on their own: the QMP reads the daemon sends
        # that the raw sequence does not, and the metadata writes (3 atomic file writes per
        # create: the new record, the new record again from domain_set_current(), the old
        # current one cleared; each is temp file + fsync + rename + fsync of the directory).
        qb, reads, writes = [], [], []
        snapdir = os.path.join(self.state_dir, "snapshots", "vm1")
        with open(os.path.join(snapdir, "warm.xml"), "rb") as f:
            record = f.read()
        for _ in range(reps):
            t0 = now()
            qmp.execute("query-block")
            t1 = now()
            for cmd in ("query-memory-size-summary", "query-cpus-fast", "query-jobs"):
                qmp.execute(cmd)
            qb.append(t1 - t0)
            reads.append(now() - t1)
            t0 = now()
            atomic_write(snapdir, ".bench-probe", record)
            writes.append(now() - t0)
        os.unlink(os.path.join(snapdir, ".bench-probe"))
        log("create: %d D-Bus + %d raw snapshots, chains now %d overlays deep" % (reps, reps, depth))
        rows = [
            ["snapshotd CreateSnapshot (D-Bus)", len(dbus), ms(statistics.median(dbus)), ms(pct(dbus, 90)),
             ms(min(dbus)), ms(max(dbus))],
            ["raw QMP, same commands", len(raw), ms(statistics.median(raw)), ms(pct(raw, 90)),
             ms(min(raw)), ms(max(raw))],
            ["raw QMP transaction alone", len(tx), ms(statistics.median(tx)), ms(pct(tx, 90)),
             ms(min(tx)), ms(max(tx))],
            ["ratio snapshotd/raw", "", "%.2f" % (statistics.median(dbus) / statistics.median(raw)),
             "%.2f" % (pct(dbus, 90) / pct(raw, 90)), "", ""],
            ["ratio per D-Bus/raw pair", len(pair), "%.2f" % statistics.median(pair),
             "%.2f" % pct(pair, 90), "%.2f" % min(pair), "%.2f" % max(pair)],
            ["  part: query-block", len(qb), ms(statistics.median(qb)), ms(pct(qb, 90)),
             ms(min(qb)), ms(max(qb))],
            ["  part: 3 other extra QMP reads", len(reads), ms(statistics.median(reads)), ms(pct(reads, 90)),
             ms(min(reads)), ms(max(reads))],
            ["  part: 1 atomic metadata write", len(writes), ms(statistics.median(writes)),
             ms(pct(writes, 90)), ms(min(writes)), ms(max(writes))],
            ["raw + the parts (3 writes, est.)", "",
             ms(statistics.median(raw) + statistics.median(qb) + statistics.median(reads)
                + 3 * statistics.median(writes)),
             "", "", ""],
        ]
        return table("1. Two-disk disk-only atomic snapshot of the running guest (%s, no quiesce)"
                     % self.guest.accel,
                     ["", "n", "median ms", "p90 ms", "min ms", "max ms"], rows), depth

    # part 2
    def list_bench(self):
        snapdir = os.path.join(self.state_dir, "snapshots", "vm1")
        with open(os.path.join(snapdir, "warm.xml")) as f:
            template = f.read()
        calls = self.args.list_calls
        rows = []
        for n, chain in ((1, True), (100, True), (1000, True), (1000, False)):
            self.bus.stop_daemon()
            for e in os.listdir(snapdir):
                os.unlink(os.path.join(snapdir, e))
            for name, doc in make_copies(template, n, chain).items():
                with open(os.path.join(snapdir, name + ".xml"), "w") as f:
                    f.write(doc)
            start = self.start_daemon()
            pid = self.bus.daemon.pid
            rss_start = rss_kib(pid)

            paths = call(self.conn, self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,), "(ao)").unpack()[0]
            if len(paths) != n:
                raise RuntimeError("ListSnapshots returned %d paths, wrote %d files; daemon log:\n%s"
                                   % (len(paths), n, self.bus.read_daemon_log()[-3000:]))
            # the daemon read the copies as meant: the last is current, with the right parent
            cur = self.bus.get_property(self.dom, DOMAIN_IFACE, "CurrentSnapshot")
            props = self.bus.get_all_properties(cur, SNAPSHOT_IFACE)
            parent = props["Parent"]
            parent = self.bus.get_property(parent, SNAPSHOT_IFACE, "Name") if parent != "/" else None
            want = "b%04d" % (n - 2) if chain and n > 1 else None
            if props["Name"] != "b%04d" % (n - 1) or parent != want:
                raise RuntimeError("current %s parent %s; expected b%04d parent %s"
                                   % (props["Name"], parent, n - 1, want))
            lat = []
            for _ in range(calls):
                t0 = now()
                call(self.conn, self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,), "(ao)")
                lat.append(now() - t0)

            names = getall = ctl = None
            if n == 1000 and chain:
                names, getall, ctl = [], [], []
                for _ in range(self.args.list_reps):
                    t0 = now()
                    ps = call(self.conn, self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,),
                              "(ao)").unpack()[0]
                    for p in ps:
                        call(self.conn, p, "org.freedesktop.DBus.Properties", "Get", "ss",
                             (SNAPSHOT_IFACE, "Name"), "(v)")
                    names.append(now() - t0)
                    t0 = now()
                    ps = call(self.conn, self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,),
                              "(ao)").unpack()[0]
                    for p in ps:
                        call(self.conn, p, "org.freedesktop.DBus.Properties", "GetAll", "s",
                             (SNAPSHOT_IFACE,), "(a{sv})")
                    getall.append(now() - t0)
                    ctl_exe = os.environ.get("SNAPSHOTCTL")
                    if ctl_exe:
                        t0 = now()
                        r = subprocess.run([ctl_exe, "--address=" + self.bus.address, "list", "vm1"],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                        ctl.append(now() - t0)
                        if r.returncode != 0 or len(r.stdout.splitlines()) < n:
                            raise RuntimeError("snapshotctl list: %s" % r.stderr)
            rss_end = rss_kib(pid)
            log("list: %d snapshots (%s) done" % (n, "chain" if chain else "flat"))
            rows.append([n, "chain" if chain else "flat", ms(statistics.median(lat)), ms(pct(lat, 99)),
                         ms(statistics.median(names)) if names else "-",
                         ms(statistics.median(getall)) if getall else "-",
                         ms(statistics.median(ctl)) if ctl else "-",
                         "%.0f" % (start * 1000), rss_start, rss_end])
        return table("2. ListSnapshots(0) latency, %d calls per row; list+Name/GetAll and snapshotctl: "
                     "median of %d" % (calls, self.args.list_reps),
                     ["snapshots", "parents", "List med ms", "List p99 ms", "List+Name ms",
                      "List+GetAll ms", "snapshotctl list ms", "start ms", "RSS start KiB",
                      "RSS end KiB"], rows)

    def peer_ping(self):
        lat = []
        for _ in range(self.args.list_calls):
            t0 = now()
            call(self.conn, MANAGER_PATH, "org.freedesktop.DBus.Peer", "Ping")
            lat.append(now() - t0)
        return "baseline: org.freedesktop.DBus.Peer.Ping to snapshotd from this Python: median %s ms, " \
               "p99 %s ms (%d calls)" % (ms(statistics.median(lat)), ms(pct(lat, 99)), len(lat))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=30, help="CreateSnapshot / raw repetitions (30)")
    ap.add_argument("--list-calls", type=int, default=200, help="ListSnapshots calls per row (200)")
    ap.add_argument("--list-reps", type=int, default=10,
                    help="repetitions of list+Name, list+GetAll, snapshotctl list at 1000 (10)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()

    if not os.environ.get("SNAPSHOTD"):
        exe = os.path.join(REPO, "build", "daemon", "snapshotd")
        os.environ["SNAPSHOTD"] = exe
        os.environ.setdefault("SNAPSHOTCTL", os.path.join(REPO, "build", "client", "snapshotctl"))
    os.environ.setdefault("SNAPSHOTD_BUILD_ROOT",
                          os.path.dirname(os.path.dirname(os.environ["SNAPSHOTD"])))
    for key in ("SNAPSHOTD", "SNAPSHOTCTL"):
        if os.environ.get(key) and not os.access(os.environ[key], os.X_OK):
            sys.exit("%s=%s is not executable; build first" % (key, os.environ[key]))

    load_start = loadavg()
    b = Bench(args)
    try:
        b.setup()
        part1, depth = b.create_bench()
        ping = b.peer_ping()
        part2 = b.list_bench()
    except BaseException:
        if b.bus:
            sys.stderr.write("===== snapshotd log (tail) =====\n%s\n" % b.bus.read_daemon_log()[-5000:])
        b.args.keep = True
        raise
    finally:
        b.teardown()

    print("snapshotd benchmark: %s, QEMU %s, %d CPUs, total %.0f s, load average %s at start, %s at end" % (
        os.environ["SNAPSHOTD"], qemu_version(), os.cpu_count(), time.monotonic() - T0,
        load_start, loadavg()))
    print()
    print(part1)
    print("(D-Bus and raw alternate; backing chains end %d overlays deep per disk)" % depth)
    print()
    print(ping)
    print()
    print(part2)
    return 0


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def qemu_version():
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], stdout=subprocess.PIPE,
                             text=True).stdout
        return out.split()[3]
    except (OSError, IndexError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
