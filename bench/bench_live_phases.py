#!/usr/bin/python3
# Where a live external checkpoint's time goes, from QEMU's own MIGRATION event timestamps
# (wall clock, like the call's): the D-Bus call to "setup" (snapshotd's work before QEMU
# starts copying: cache check, settings, journal, overlays, getfd, migrate), "setup" to
# "completed" (QEMU's), "completed" to the reply (cont, the image's fsync, the records); and
# the guest's pause by the same events.
# Medians over N saves of one guest that dirties memory. Use with SNAPSHOTD set to compare
# two builds, alternating.
#
#   SNAPSHOTD=build/daemon/snapshotd SNAPSHOTD_BUILD_ROOT=build \
#       /usr/bin/python3 bench/bench_live_phases.py [--reps 15] [--memory-mb 1024]

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import snaptest  # noqa: E402
from bench_memory import event_time  # noqa: E402
from snaptest import DOMAIN_IFACE, SNAPSHOT_IFACE  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--dirty-mb", type=int, default=64)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()

    S = snaptest.SharedDomain("benchp-", memory_mb=a.memory_mb, dirty_mb=a.dirty_mb)
    S.start()
    phases = {"call -> setup": [], "setup -> completed": [], "completed -> reply": [], "total": [],
              # the guest's pause, split: QEMU stops it and waits for us (pre-switchover); we
              # switch the disks and send migrate-continue (QEMU says "device"); QEMU writes
              # the final pass; we send cont the moment it says "completed"
              "pause: STOP -> pre-switchover": [], "pause: pre-switchover -> device": [],
              "pause: device -> completed": [], "pause: completed -> RESUME": [],
              "pause: STOP -> RESUME": []}
    try:
        time.sleep(3)  # let the dirtying loop run
        g = S.guest
        opts = {"memory": snaptest.variant("s", "external"), "live": snaptest.variant("b", True)}
        for i in range(a.reps):
            n0 = len(g.events)
            w0 = time.time()
            p = S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", ("live%d" % i, "", opts),
                           timeout=600)[0]
            w1 = time.time()
            g.pull = g.events  # drain
            ts = {}
            for e in g.events[n0:]:
                if e["event"] == "MIGRATION":
                    ts.setdefault(e["data"]["status"], event_time(e))
                elif e["event"] in ("STOP", "RESUME"):
                    ts.setdefault(e["event"], event_time(e))
            os.unlink(S.bus.get_property(p, SNAPSHOT_IFACE, "MemoryFile"))
            if "setup" not in ts or "completed" not in ts:
                continue
            phases["call -> setup"].append(ts["setup"] - w0)
            phases["setup -> completed"].append(ts["completed"] - ts["setup"])
            phases["completed -> reply"].append(w1 - ts["completed"])
            phases["total"].append(w1 - w0)
            marks = ["STOP", "pre-switchover", "device", "completed", "RESUME"]
            if all(m in ts for m in marks):
                for a_, b_ in zip(marks, marks[1:]):
                    phases["pause: %s -> %s" % (a_, b_)].append(ts[b_] - ts[a_])
                phases["pause: STOP -> RESUME"].append(ts["RESUME"] - ts["STOP"])
    finally:
        S.stop()

    print("Live checkpoint phases: %d MiB guest dirtying %d MiB, %s, %d saves, load %.2f"
          % (a.memory_mb, a.dirty_mb, os.environ.get("SNAPSHOTD", "?"), len(phases["total"]),
             os.getloadavg()[0]))
    print("%-32s %10s %10s %10s" % ("phase", "median ms", "min ms", "max ms"))
    for k, xs in phases.items():
        if xs:
            print("%-32s %10.1f %10.1f %10.1f" % (k, statistics.median(xs) * 1000, min(xs) * 1000,
                                                   max(xs) * 1000))


if __name__ == "__main__":
    main()
