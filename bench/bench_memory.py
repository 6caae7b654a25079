#!/usr/bin/python3
# Benchmark of issue 7: a live (and a paused) external checkpoint of a guest that dirties
# memory, through snapshotd, against the same migration driven by hand over QMP to a file
# descriptor (the raw QEMU baseline) and `dd` of the same size to the same file system (the
# disk's limit), in one run on one guest. Prints a table.
#
#   /usr/bin/python3 bench/bench_memory.py [--memory-mb 1024] [--dirty-mb 64] [--reps 3]

import argparse
import array
import json
import os
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import snaptest  # noqa: E402
from snaptest import DOMAIN_IFACE, SNAPSHOT_IFACE  # noqa: E402


def event_time(e):
    return e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6


def pause_ms(events):
    """STOP → RESUME, from QEMU's own event timestamps."""
    stop = [e for e in events if e["event"] == "STOP"]
    resume = [e for e in events if e["event"] == "RESUME"]
    if not stop or not resume:
        return float("nan")
    return (event_time(resume[-1]) - event_time(stop[0])) * 1000


def wait_migration(g, since, timeout=600):
    """React to QEMU's MIGRATION event as soon as it is read (the harness's wait polls in
    half-second slices, which would count against the baseline)."""
    qmp = g._qmp
    deadline = time.monotonic() + timeout
    while True:
        for e in qmp.events[since:]:
            if e["event"] == "MIGRATION" and e["data"]["status"] in ("completed", "failed"):
                return e
        m = qmp._read(deadline)
        if "event" in m:
            qmp.events.append(m)


def raw_save(g, path, live):
    """What a careful caller would do by hand: lift the bandwidth cap, 20 ms downtime (under
    KVM only, as the daemon: see raw_memory in bench/run), migrate to an fd of a file it
    opened, cont when completed, fsync."""
    q = g.qmp
    q("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
    params = {"max-bandwidth": (1 << 63) // 8 - 1}
    if snaptest.choose_accel() == "kvm":
        params["downtime-limit"] = 20
    q("migrate-set-parameters", args=params)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    msg = json.dumps({"execute": "getfd", "arguments": {"fdname": "bench"}, "id": "fd"}).encode() + b"\n"
    g._qmp.sock.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    while g._qmp._read(time.monotonic() + 10).get("id") != "fd":
        pass
    n0 = len(g.events)
    t0 = time.monotonic()
    if not live:
        q("stop")
    q("migrate", uri="fd:bench")
    wait_migration(g, n0)
    while True:
        try:
            q("cont")
            break
        except snaptest.QMPError:
            time.sleep(0.001)
    t1 = time.monotonic()
    os.fsync(fd)
    os.close(fd)
    t2 = time.monotonic()
    q("migrate-set-parameters", args={"max-bandwidth": 134217728, "downtime-limit": 300})
    q("migrate-set-capabilities", capabilities=[{"capability": "events", "state": False}])
    return t2 - t0, t1 - t0, pause_ms(g.events[n0:]), os.path.getsize(path)


def snapshotd_save(shared, name, live):
    g = shared.guest
    n0 = len(g.events)
    opts = {"memory": snaptest.variant("s", "external")}
    if live:
        opts["live"] = snaptest.variant("b", True)
    t0 = time.monotonic()
    p = shared.bus.call(shared.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), timeout=600)[0]
    t1 = time.monotonic()
    g.pull = g.events  # drain
    f = shared.bus.get_property(p, SNAPSHOT_IFACE, "MemoryFile")
    return t1 - t0, pause_ms(g.events[n0:]), os.path.getsize(f), f


def dd(path, size):
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=%d" % max(1, size >> 20),
                    "conv=fsync", "status=none"], check=True)
    t = time.monotonic() - t0
    os.unlink(path)
    return t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--dirty-mb", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()

    S = snaptest.SharedDomain("benchm-", memory_mb=a.memory_mb, dirty_mb=a.dirty_mb)
    S.start()
    rows = {k: [] for k in ("sd-live", "raw-live", "dd", "sd-paused", "raw-paused")}
    try:
        time.sleep(3)  # let the dirtying loop run
        for i in range(a.reps):
            t, p, size, f = snapshotd_save(S, "live%d" % i, True)
            rows["sd-live"].append((t, p, size))
            os.unlink(f)
            path = os.path.join(S.images, "raw%d.mem" % i)
            t, _, p, size = raw_save(S.guest, path, True)
            rows["raw-live"].append((t, p, size))
            os.unlink(path)
            rows["dd"].append((dd(os.path.join(S.images, "dd.bin"), size), float("nan"), size))
            t, p, size, f = snapshotd_save(S, "paused%d" % i, False)
            rows["sd-paused"].append((t, p, size))
            os.unlink(f)
            path = os.path.join(S.images, "rawp%d.mem" % i)
            t, _, p, size = raw_save(S.guest, path, False)
            rows["raw-paused"].append((t, p, size))
            os.unlink(path)
    finally:
        S.stop()

    def med(xs):
        xs = [x for x in xs if x == x]
        return statistics.median(xs) if xs else float("nan")

    load = open("/proc/loadavg").read().split()[0]
    print("Memory checkpoints: %d MiB guest dirtying %d MiB, QEMU %s, %s, %d CPUs, %d reps, load %s"
          % (a.memory_mb, a.dirty_mb, subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                                                    text=True).stdout.split()[3], snaptest.choose_accel().upper(),
             os.cpu_count(), a.reps, load))
    print("%-34s %9s %9s %12s %12s %10s" % ("", "seconds", "MiB/s", "pause ms", "pause max", "MiB"))
    names = {"sd-live": "snapshotd live checkpoint", "raw-live": "raw QMP migrate to fd (live)",
             "dd": "dd of the same size (conv=fsync)", "sd-paused": "snapshotd paused checkpoint",
             "raw-paused": "raw stop+migrate+cont"}
    for k in ("sd-live", "raw-live", "dd", "sd-paused", "raw-paused"):
        r = rows[k]
        t = med([x[0] for x in r])
        size = med([x[2] for x in r])
        pauses = [x[1] for x in r if x[1] == x[1]]
        print("%-34s %9.2f %9.1f %12s %12s %10.0f" % (names[k], t, size / (1 << 20) / t if t else 0,
              "%.1f" % med(pauses) if pauses else "-", "%.1f" % max(pauses) if pauses else "-", size / (1 << 20)))
    sd, raw, d = med([x[0] for x in rows["sd-live"]]), med([x[0] for x in rows["raw-live"]]), med([x[0] for x in rows["dd"]])
    print("ratio snapshotd/raw (live): %.2f   snapshotd/dd: %.2f   paused: pause snapshotd - raw = %+.1f ms"
          % (sd / raw, sd / d, med([x[1] for x in rows["sd-paused"]]) - med([x[1] for x in rows["raw-paused"]])))


if __name__ == "__main__":
    main()
