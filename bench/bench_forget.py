#!/usr/bin/python3
# Metadata-only deletes (Delete with CHILDREN|METADATA_ONLY of the root of a chain of N
# records): how long the call takes, and how long a ListSnapshots of another domain waits
# meanwhile (bench/bus-load every 5 ms in its own process). No guest: the domains' QMP
# sockets do not exist, as in bench/run's metadata items, whose helpers this reuses.
#
#   /usr/bin/python3 bench/bench_forget.py [--sizes 10,100,300] [--reps 3]

import argparse
import importlib.machinery
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "lib"))
sys.path.insert(0, HERE)
BUILD = os.path.abspath(os.environ.get("SNAPSHOTD_BUILD_ROOT", os.path.join(HERE, "..", "build")))
os.environ.setdefault("SNAPSHOTD", os.path.join(BUILD, "daemon", "snapshotd"))
os.environ.setdefault("SNAPSHOTD_BUILD_ROOT", BUILD)
suite = importlib.machinery.SourceFileLoader("bench_run", os.path.join(HERE, "run")).load_module()
import snaptest  # noqa: E402


def one(n, template):
    tmp = tempfile.mkdtemp(prefix="b2-forget-", dir="/tmp")
    bus = snaptest.Bus(os.path.join(tmp, "bus"))
    os.makedirs(bus.tmpdir)
    bus.start()
    conf, state = os.path.join(tmp, "conf"), os.path.join(tmp, "state")
    try:
        suite.write_domains(conf, state, template, {"vmA": n, "vmB": 100}, tmp)
        subprocess.run(["sync"])
        suite.start_daemon(bus, conf, state)
        conn = bus.conn
        get = lambda name: suite.call(conn, suite.MANAGER_PATH, suite.MANAGER_IFACE, "GetDomain", "s",  # noqa: E731
                                      (name,)).unpack()[0]
        doma, domb = get("vmA"), get("vmB")
        root = suite.call(conn, doma, suite.DOMAIN_IFACE, "LookupSnapshot", "s", ("b0000",)).unpack()[0]
        start = time.time()
        probe = subprocess.Popen([suite.bus_load(), bus.address, "ListSnapshots", domb, repr(start),
                                  repr(start + 3600), "--each=5"], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        t0 = time.time()
        suite.call(conn, root, suite.SNAPSHOT_IFACE, "Delete", "t", (3,))
        t1 = time.time()
        time.sleep(0.2)
        probe.terminate()
        lines = probe.communicate()[0].splitlines()[:-1]
        lat = [(float(a), float(b) * 1000) for a, b in (ln.split() for ln in lines)]
        # a call that started before the delete and ended in it waited for it too
        during = [x for s, x in lat if s <= t1 and s + x / 1000 >= t0]
        left = os.listdir(os.path.join(state, "snapshots", "vmA"))
        if left:
            raise RuntimeError("records left after the delete: %s" % left[:5])
        return (t1 - t0) * 1000, max(during or [0.0]), sum(1 for x in during if x > 10), len(during)
    finally:
        bus.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="10,100,300")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    with open(os.path.join(HERE, "metadata-template.xml")) as f:
        template = f.read()
    print("%-8s %14s %22s %14s" % ("records", "Delete ms med", "ListSnapshots(vmB) max", "calls > 10 ms"))
    for n in [int(x) for x in a.sizes.split(",")]:
        rs = [one(n, template) for _ in range(a.reps)]
        print("%-8d %14.1f %19.2f ms %10d of %d" % (n, statistics.median(r[0] for r in rs), max(r[1] for r in rs),
                                                     sum(r[2] for r in rs), sum(r[3] for r in rs)))


if __name__ == "__main__":
    main()
