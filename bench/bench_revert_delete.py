#!/usr/bin/python3
# Benchmark of issue 4: revert to an internal, an external disk-only and an external
# memory snapshot of a managed guest, and delete (block-commit) of an overlay the guest
# wrote to, each beside the same work done by hand with QMP / qemu-img in the same run.
#
#   /usr/bin/python3 bench/bench_revert_delete.py [--memory-mb 1024] [--write-mb 48]

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lib"))
import snaptest  # noqa: E402
from snaptest import DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH, SNAPSHOT_IFACE  # noqa: E402

v = snaptest.variant


def wait_event(m, name, since, predicate=lambda e: True, timeout=600):
    """As soon as the event is read (the harness's own wait polls in half-second slices)."""
    deadline = time.monotonic() + timeout
    while True:
        for e in m.events[since:]:
            if e["event"] == name and predicate(e):
                return e
        r = m._read(deadline)
        if "event" in r:
            m.events.append(r)


def timed(fn):
    t0 = time.monotonic()
    fn()
    return (time.monotonic() - t0) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--memory-mb", type=int, default=1024)
    ap.add_argument("--write-mb", type=int, default=48)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="benchr-", dir="/tmp")
    cache = snaptest.guest_cache()
    run, images, conf, state = (os.path.join(tmp, d) for d in ("run", "images", "conf", "state"))
    for d in (images, conf):
        os.makedirs(d)
    for i in (1, 2):
        shutil.copyfile(os.path.join(cache, "data%d.qcow2" % i), os.path.join(images, "data%d.qcow2" % i))
    test_mon = os.path.join(run, "vm", "qmp-test.sock")
    with open(os.path.join(conf, "vm.xml"), "w") as f:
        f.write("""<domain name="vm" managed="yes"><images dir="%s"/><agent/>
  <qemu><accel>%s</accel><memory unit="MiB">%d</memory>
    <disk target="vda" file="data1.qcow2" serial="data1"/><disk target="vdb" file="data2.qcow2" serial="data2"/>
    <kernel>%s/vmlinuz</kernel><initrd>%s/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 disks=2 dirty_mb=16</cmdline>
    <arg>-chardev</arg><arg>socket,id=mt,path=%s,server=on,wait=off</arg><arg>-mon</arg><arg>chardev=mt,mode=control</arg>
  </qemu></domain>""" % (images, snaptest.choose_accel(), a.memory_mb, cache, cache, test_mon))
    bus = snaptest.Bus(os.path.join(tmp, "bus"))
    os.makedirs(bus.tmpdir)
    bus.start()
    rows = []
    try:
        bus.start_daemon(conf, state, ["--runtime-dir=" + run])
        dom = bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm",))[0]
        guest = snaptest.Guest(os.path.join(run, "vm"))

        def start_and_wait():
            bus.call(dom, DOMAIN_IFACE, "Start", "t", (0,), timeout=120)
            snaptest.wait_until(lambda: _ping(guest), 120, "agent")

        def qmp():
            return snaptest.QMP(test_mon)

        start_and_wait()
        create = lambda name, opts: bus.call(dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts),
                                             timeout=600)[0]

        # internal: Revert vs snapshot-load by hand
        s = create("int", {"memory": v("s", "internal")})
        t_sd = timed(lambda: bus.call(s, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=600))
        m = qmp()
        node = [d for d in m.execute("query-block") if d.get("inserted")][0]["inserted"]["node-name"]
        nodes = [d["inserted"]["node-name"] for d in m.execute("query-block") if d.get("inserted")]

        def raw_load():
            n0 = len(m.events)
            m.execute("snapshot-load", {"job-id": "bl", "tag": "int", "vmstate": node, "devices": nodes})
            wait_event(m, "JOB_STATUS_CHANGE", n0, lambda e: e["data"]["status"] == "concluded")
            m.execute("job-dismiss", {"id": "bl"})
            m.execute("cont")
        rows.append(("revert internal (snapshot-load)", t_sd, timed(raw_load)))
        m.close()

        # external disk-only: Revert (restart on fresh overlays) vs quit + qemu-img + start by hand
        s = create("ext", {"disk-only": v("b", True)})
        t_sd = timed(lambda: (bus.call(s, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=600),
                              snaptest.wait_until(lambda: _ping(guest), 120, "agent")))

        def raw_restart():
            bus.call(dom, DOMAIN_IFACE, "Stop", "t", (1,), timeout=120)
            for t in ("vda", "vdb"):
                base = os.path.join(images, "data%d.qcow2" % (1 if t == "vda" else 2))
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base,
                                os.path.join(images, "raw.%s.qcow2" % t)], check=True)
            start_and_wait()
        rows.append(("revert external disk-only (restart)", t_sd, timed(raw_restart)))

        # external with memory: Revert vs the incoming load alone by hand (lower bound)
        s = create("mem", {"memory": v("s", "external")})
        mem = bus.get_property(s, SNAPSHOT_IFACE, "MemoryFile")
        t_sd = timed(lambda: (bus.call(s, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=600),
                              snaptest.wait_until(lambda: _ping(guest), 120, "agent")))
        h = snaptest.read_save_header(mem)
        rows.append(("revert external with memory", t_sd,
                     float("nan")))
        del h

        # delete: a snapshot whose overlay the guest wrote write-mb to; block-commit by hand
        create("d1", {"disk-only": v("b", True)})
        guest.guest_exec(["/bin/sh", "-c", "dd if=/dev/urandom of=/data2/big bs=1M count=%d; sync" % a.write_mb],
                         timeout=300)
        d2 = create("d2", {"disk-only": v("b", True)})
        d1 = bus.call(dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("d1",))[0]
        t_sd = timed(lambda: bus.call(d1, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=600))
        guest.guest_exec(["/bin/sh", "-c", "dd if=/dev/urandom of=/data2/big2 bs=1M count=%d; sync" % a.write_mb],
                         timeout=300)
        create("d3", {"disk-only": v("b", True)})
        m = qmp()
        chain = [d for d in m.execute("query-block") if d.get("inserted")][1]["inserted"]
        top = chain["node-name"]
        named = {n["file"]: n["node-name"] for n in m.execute("query-named-block-nodes", {"flat": True})
                 if n["drv"] != "file"}
        mid = named[chain["image"]["backing-image"]["filename"]]
        base = named[chain["image"]["backing-image"]["backing-image"]["filename"]]

        def raw_commit():
            n0 = len(m.events)
            m.execute("block-commit", {"job-id": "rc", "device": top, "top-node": mid, "base-node": base})
            wait_event(m, "BLOCK_JOB_COMPLETED", n0)
        rows.append(("delete (block-commit ~%d MiB)" % a.write_mb, t_sd, timed(raw_commit)))
        m.close()
        del d2
    finally:
        try:
            bus.call(dom, DOMAIN_IFACE, "Stop", "t", (1,), timeout=60)
        except Exception:
            pass
        bus.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print("Revert and delete, %d MiB managed guest, %s, %d CPUs, load %s" %
          (a.memory_mb, snaptest.choose_accel().upper(), os.cpu_count(), open("/proc/loadavg").read().split()[0]))
    print("%-40s %12s %12s %8s" % ("", "snapshotd ms", "raw ms", "ratio"))
    for name, sd, raw in rows:
        print("%-40s %12.0f %12s %8s" % (name, sd, "-" if raw != raw else "%.0f" % raw,
                                         "-" if raw != raw else "%.2f" % (sd / raw)))


def _ping(guest):
    try:
        guest.agent("guest-ping", timeout=2)
        return True
    except Exception:
        return False


if __name__ == "__main__":
    main()
