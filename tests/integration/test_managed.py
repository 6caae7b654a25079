#!/usr/bin/python3
# Managed domains: snapshotd starts and stops the test guest's QEMU itself, which lets it
# revert external snapshots — disk-only and with memory — proven from inside the guest (a
# marker file on disk, a counter the guest keeps only in RAM).

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import snaptest
from snaptest import DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH, SNAPSHOT_IFACE, ERROR_PREFIX, Bus, BusError, Guest

v = snaptest.variant
wait_until = snaptest.wait_until
RUNNING, PAUSED = 1, 2


class S:
    tmp = bus = None
    failed = False


def setUpModule():
    S.tmp = tempfile.mkdtemp(prefix="snapg-", dir="/tmp")
    cache = snaptest.guest_cache()
    S.runtime = os.path.join(S.tmp, "run")
    S.images = os.path.join(S.tmp, "images")
    S.conf = os.path.join(S.tmp, "conf")
    S.state = os.path.join(S.tmp, "state")
    for d in (S.images, S.conf):
        os.makedirs(d)
    for i in (1, 2):
        shutil.copyfile(os.path.join(cache, "data%d.qcow2" % i), os.path.join(S.images, "data%d.qcow2" % i))
    console = os.path.join(S.runtime, "vm2", "console.log")
    accel = snaptest.choose_accel()
    with open(os.path.join(S.conf, "vm2.xml"), "w") as f:
        f.write("""<domain name="vm2" managed="yes">
  <images dir="%(images)s"/>
  <agent/>
  <qemu binary="qemu-system-x86_64">
    <accel>%(accel)s</accel>
    <memory unit="MiB">256</memory>
    <vcpus>1</vcpus>
    <disk target="vda" file="data1.qcow2" format="qcow2" serial="data1"/>
    <disk target="vdb" file="data2.qcow2" format="qcow2" serial="data2"/>
    <kernel>%(cache)s/vmlinuz</kernel>
    <initrd>%(cache)s/initramfs.cpio.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 disks=2 dirty_mb=8</cmdline>
    <arg>-serial</arg>
    <arg>file:%(console)s</arg>
    <arg>-no-reboot</arg>
    <shutdown timeout="20"/>
  </qemu>
</domain>
""" % {"images": S.images, "cache": cache, "console": console, "accel": accel})
    # an attached domain beside it: Start/Stop are not for it
    snaptest.write_domain_config(S.conf, "vm9", os.path.join(S.tmp, "vm9-qmp.sock"), images_dir=S.images)
    S.bus = Bus(os.path.join(S.tmp, "bus"))
    os.makedirs(S.bus.tmpdir)
    S.bus.start()
    S.bus.start_daemon(S.conf, S.state, ["--runtime-dir=" + S.runtime])
    S.dom = S.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm2",))[0]
    # the guest's agent, reached at the socket snapshotd gave it
    S.guest = Guest(os.path.join(S.runtime, "vm2"))


def tearDownModule():
    rc = None
    try:
        if S.bus and S.bus.daemon and S.bus.get_property(S.dom, DOMAIN_IFACE, "State") != "shutoff":
            S.bus.call(S.dom, DOMAIN_IFACE, "Stop", "t", (1,), timeout=60)
    except Exception:
        pass
    if S.bus:
        rc = S.bus.stop_daemon()
        log = S.bus.read_daemon_log()
        S.bus.stop()
    pid = qemu_pid()
    if pid and not pid_gone(pid):
        os.kill(pid, signal.SIGKILL)
    if S.failed or os.environ.get("SNAPSHOTD_TEST_KEEP") == "1":
        sys.stderr.write("kept %s\n" % S.tmp)
    else:
        shutil.rmtree(S.tmp, ignore_errors=True)
    if rc not in (None, 0):
        raise AssertionError("snapshotd exited with %s at the end; its log:\n%s" % (rc, log[-20000:]))


RUNTIME_FILES = ("qmp.sock", "qga.sock", "qemu.pid")


def qemu_pid():
    """The managed QEMU's PID, from the pidfile snapshotd makes it write (None without one)."""
    try:
        with open(os.path.join(S.runtime, "vm2", "qemu.pid")) as f:
            return int(f.read().strip() or 0) or None
    except FileNotFoundError:
        return None


def pid_gone(pid):
    # A QEMU whose snapshotd was restarted is an orphan: a zombie until init reaps it.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def runtime_files():
    d = os.path.join(S.runtime, "vm2")
    return sorted(f for f in os.listdir(d) if f in RUNTIME_FILES) if os.path.isdir(d) else []


class ManagedTest(unittest.TestCase):
    def tearDown(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result and any(getattr(t, "test_case", t) is self for t, _ in result.errors + result.failures):
            S.failed = True
            sys.stderr.write("\n===== snapshotd log =====\n%s\n" % S.bus.read_daemon_log()[-30000:])
            for f in ("qemu.log", "console.log"):
                p = os.path.join(S.runtime, "vm2", f)
                if os.path.exists(p):
                    sys.stderr.write("\n===== %s =====\n%s\n" % (f, open(p, errors="replace").read()[-4000:]))

    def state(self):
        return S.bus.get_property(S.dom, DOMAIN_IFACE, "State")

    def wait_agent(self):
        deadline = time.monotonic() + 90
        while True:
            try:
                S.guest.agent("guest-ping", timeout=2)
                break
            except (OSError, TimeoutError, snaptest.QMPError):
                self.assertLess(time.monotonic(), deadline, "guest agent did not answer")
                time.sleep(0.5)
        wait_until(lambda: "GUEST-READY" in S.guest.console(), 60, "workload")

    def marker(self, text=None):
        if text is not None:
            code, _, err = S.guest.guest_exec(["/bin/sh", "-c", "echo %s > /data1/marker; sync" % text])
            self.assertEqual(code, 0, err)
        return S.guest.guest_read("/data1/marker").strip()

    def counter(self):
        return int(S.guest.guest_read("/mem/counter").strip())

    def create(self, name, opts):
        return S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), timeout=300)[0]

    def start(self):
        S.bus.call(S.dom, DOMAIN_IFACE, "Start", "t", (0,), timeout=60)
        self.assertEqual(self.state(), "running")
        pid = qemu_pid()
        self.assertTrue(pid and not pid_gone(pid), "no QEMU after Start")
        return pid

    def restart_daemon(self):
        self.assertEqual(S.bus.stop_daemon(), 0)
        S.bus.start_daemon(S.conf, S.state, ["--runtime-dir=" + S.runtime])
        wait_until(lambda: self.state() == "running", 20, "re-attached")

    def assert_gone(self, pid):
        wait_until(lambda: pid_gone(pid), 10, "QEMU %d gone" % pid)
        self.assertEqual(self.state(), "shutoff")
        # its sockets and pidfile went with it; its log stays
        self.assertEqual(runtime_files(), [])
        self.assertTrue(os.path.exists(os.path.join(S.runtime, "vm2", "qemu.log")))

    def test_00_attached_domain(self):
        vm9 = S.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm9",))[0]
        self.assertFalse(S.bus.get_property(vm9, DOMAIN_IFACE, "Managed"))
        for method in ("Start", "Stop"):
            with self.assertRaises(BusError) as cm:
                S.bus.call(vm9, DOMAIN_IFACE, method, "t", (0,))
            self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationUnsupported", method)
        # flags are checked before anything else
        with self.assertRaises(BusError) as cm:
            S.bus.call(S.dom, DOMAIN_IFACE, "Start", "t", (1,))
        self.assertEqual(cm.exception.name, "org.freedesktop.DBus.Error.InvalidArgs")
        with self.assertRaises(BusError) as cm:
            S.bus.call(S.dom, DOMAIN_IFACE, "Stop", "t", (2,))
        self.assertEqual(cm.exception.name, "org.freedesktop.DBus.Error.InvalidArgs")

    def test_01_start_stop(self):
        self.assertTrue(S.bus.get_property(S.dom, DOMAIN_IFACE, "Managed"))
        self.assertEqual(self.state(), "shutoff")
        pid = self.start()
        self.wait_agent()
        with self.assertRaises(BusError) as cm:
            S.bus.call(S.dom, DOMAIN_IFACE, "Start", "t", (0,))
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationInvalid")
        # graceful: the guest powers off (through its agent or ACPI)
        S.bus.call(S.dom, DOMAIN_IFACE, "Stop", "t", (0,), timeout=120)
        self.assert_gone(pid)
        log = S.bus.read_daemon_log()
        self.assertIn("asking the guest agent to shut the guest down", log)  # it answers: not ACPI
        self.assertIn("exited (status 0)", log)
        pid = self.start()
        self.wait_agent()
        # the daemon restarted while the guest runs finds it again: the same QEMU
        self.restart_daemon()
        self.assertEqual(qemu_pid(), pid)

    def test_02_revert_external_disk_only(self):
        self.marker("disk-A")
        ext = self.create("ext1", {"disk-only": v("b", True), "atomic": v("b", True), "quiesce": v("b", True)})
        self.marker("disk-B")
        S.bus.call(ext, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.assertEqual(self.state(), "running")
        self.wait_agent()
        self.assertEqual(self.marker(), "disk-A")
        # the snapshot's own images were not written: its overlay still backs onto data1
        self.assertTrue(os.path.exists(os.path.join(S.images, "ext1.vda.qcow2")))
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), ext)

    def test_03_revert_external_with_memory(self):
        self.marker("mem-A")
        c0 = self.counter()
        snap = self.create("mem1", {"live": v("b", True), "memory": v("s", "external")})
        time.sleep(3)
        self.marker("mem-B")
        c2 = self.counter()
        S.bus.call(snap, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.assertEqual(self.state(), "running")
        S.guest.agent("guest-ping", timeout=30)
        c3 = self.counter()
        self.assertGreaterEqual(c3, c0)
        self.assertLess(c3, c2)
        self.assertEqual(self.marker(), "mem-A")
        # paused on request
        S.bus.call(snap, SNAPSHOT_IFACE, "Revert", "t", (PAUSED,), timeout=300)
        self.assertEqual(self.state(), "paused")

    def test_035_branched_tree_and_paused_memory(self):
        # from the state the last test left (paused): a running guest
        if self.state() == "shutoff":
            S.bus.call(S.dom, DOMAIN_IFACE, "Start", "t", (0,), timeout=60)
        elif self.state() == "paused":
            snap = S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot")
            S.bus.call(snap, SNAPSHOT_IFACE, "Revert", "t", (RUNNING,), timeout=300)
        self.wait_agent()
        # A ← B (a paused memory checkpoint), then back to A and a new branch C from there
        self.marker("tree-A")
        a = self.create("tA", {"disk-only": v("b", True)})
        self.marker("tree-B")
        b = self.create("tB", {"memory": v("s", "external")})
        S.bus.call(a, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.wait_agent()
        self.assertEqual(self.marker(), "tree-A")
        self.marker("tree-C")
        c = self.create("tC", {"disk-only": v("b", True)})
        self.assertEqual(S.bus.get_property(c, SNAPSHOT_IFACE, "Parent"), a)
        self.assertEqual(sorted(S.bus.get_property(a, SNAPSHOT_IFACE, "Children")), sorted([b, c]))
        # revert to B, not current, on the other branch: its memory and disks come back
        S.bus.call(b, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.assertEqual(self.state(), "running")
        S.guest.agent("guest-ping", timeout=30)
        self.assertEqual(self.marker(), "tree-B")
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), b)
        # and C's branch is still there, untouched
        S.bus.call(c, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.wait_agent()
        self.assertEqual(self.marker(), "tree-C")

    def test_036_delete_on_a_branch_not_running(self):
        snaps = lambda: [S.bus.get_property(p, SNAPSHOT_IFACE, "Name")
                         for p in S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]]
        # a leaf of the other branch (tB, with a memory image): its overlay and image go
        b = S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("tB",))[0]
        mem = S.bus.get_property(b, SNAPSHOT_IFACE, "MemoryFile")
        S.bus.call(b, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=300)
        self.assertNotIn("tB", snaps())
        self.assertFalse(os.path.exists(mem))
        self.assertFalse(os.path.exists(os.path.join(S.images, "tB.vda.qcow2")))
        # a middle snapshot on a branch not running: D1 <- D2, back to D1, delete D1: D2
        # stands on D1's overlay, so that stays; the record goes
        self.marker("d1")
        d1 = self.create("D1", {"disk-only": v("b", True)})
        self.marker("d2")
        d2 = self.create("D2", {"disk-only": v("b", True)})
        S.bus.call(d1, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.wait_agent()
        S.bus.call(d1, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=300)
        self.assertNotIn("D1", snaps())
        self.assertTrue(os.path.exists(os.path.join(S.images, "D1.vda.qcow2")))
        self.assertEqual(self.state(), "running")
        S.bus.call(d2, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.wait_agent()
        self.assertEqual(self.marker(), "d2")
        for f in os.listdir(S.images):
            if f.endswith(".qcow2"):
                # the overlay the guest runs on is written while qemu-img reads it: a leak or
                # cluster past the end can show for a moment; real corruption stays
                for _ in range(3):
                    code, out = snaptest.image_check(os.path.join(S.images, f))
                    if code != 2:
                        break
                    time.sleep(0.5)
                self.assertNotEqual(code, 2, out)  # 2: corruption

    def test_04_force_stop(self):
        ctl = os.environ["SNAPSHOTCTL"]
        r = subprocess.run([ctl, "--address=" + S.bus.address, "stop", "vm2", "--force"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Domain vm2 stopped", r.stdout)
        self.assertEqual(self.state(), "shutoff")
        self.assertEqual(runtime_files(), [])
        with self.assertRaises(BusError) as cm:
            S.bus.call(S.dom, DOMAIN_IFACE, "Stop", "t", (0,))
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationInvalid")

    def test_05_qemu_killed(self):
        # QEMU dies under snapshotd (its child): shut off, and Start works again
        pid = self.start()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: self.state() == "shutoff", 10, "shutoff after SIGKILL")
        self.assert_gone(pid)
        pid = self.start()
        S.guest.agent("guest-ping", timeout=60)
        # a QEMU an earlier snapshotd started: forced Stop, and a kill noticed without a child
        self.restart_daemon()
        S.bus.call(S.dom, DOMAIN_IFACE, "Stop", "t", (1,), timeout=60)
        self.assert_gone(pid)
        pid = self.start()
        self.restart_daemon()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: self.state() == "shutoff", 15, "shutoff after SIGKILL")
        self.assert_gone(pid)
        # nothing keeps reconnecting to it
        self.assertNotIn("Reconnect", S.bus.read_daemon_log()[-2000:])

    def test_06_killed_during_external_revert(self):
        """snapshotd SIGKILLed at each step of an external revert: started again, it puts the
        disks back, removes the dead job's overlays and runs the revert again."""
        self.start()
        self.wait_agent()
        self.marker("at-kx")
        kx = self.create("kx", {"disk-only": v("b", True), "atomic": v("b", True)})
        journal = os.path.join(S.state, "journal", "vm2.json")
        for step in ("revert-ext-stop", "revert-ext-overlays", "revert-ext-launch", "revert-ext-state",
                     "revert-ext-done"):
            with self.subTest(step=step):
                self.marker("after-kx")
                overlays = sorted(f for f in os.listdir(S.images) if ".r" in f)
                self.assertEqual(S.bus.stop_daemon(), 0)
                S.bus.start_daemon(S.conf, S.state, ["--runtime-dir=" + S.runtime], failpoint=step + ":abort")
                wait_until(lambda: self.state() == "running", 20, "re-attached")
                with self.assertRaises(BusError) as cm:
                    S.bus.call(kx, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=120)
                self.assertEqual(cm.exception.name, "org.freedesktop.DBus.Error.NoReply")
                wait_until(lambda: S.bus.daemon.poll() is not None, 10, "daemon died")
                self.assertTrue(os.path.exists(journal), "the dead revert left a journal")
                S.bus.start_daemon(S.conf, S.state, ["--runtime-dir=" + S.runtime])
                wait_until(lambda: not os.path.exists(journal) and self.state() == "running" and
                           S.bus.get_property(S.dom, DOMAIN_IFACE, "Job") == "", 120, "recovery")
                self.wait_agent()
                # reverted: the disk is as it was at kx, and kx is current
                self.assertEqual(self.marker(), "at-kx")
                self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), kx)
                # one new overlay per disk, whatever the dead job had made
                after = sorted(f for f in os.listdir(S.images) if ".r" in f)
                self.assertEqual(len(after), len(overlays) + 2, (overlays, after))


if __name__ == "__main__":
    unittest.main(verbosity=2)
