#!/usr/bin/python3
# Self-test of the test guest and of tests/lib/snaptest.py: boots the guest, talks to
# its agent and to QEMU, freezes and thaws, and exercises the private bus helpers.

import io
import os
import shutil
import sys
import time
import unittest
from unittest import mock

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import snaptest  # noqa: E402


def line_count(guest, path):
    return len(guest.guest_read(path).splitlines())


class GuestTest(snaptest.SnapTestCase):
    def setUp(self):
        super().setUp()
        for tool in ("qemu-system-x86_64", "qemu-img", "mkfs.ext4", "cpio", "busybox"):
            snaptest.require(shutil.which(tool) or os.path.exists("/usr/sbin/" + tool)
                             or os.path.exists("/bin/" + tool), tool + " is not installed")
        snaptest.require(os.path.exists("/usr/sbin/qemu-ga"), "qemu-guest-agent is not installed")

    def test_boot_workload_freeze(self):
        g = self.make_guest(wait=False)
        boot = g.wait_ready()
        sys.stderr.write("\nboot to agent (%s): %.2f s\n" % (g.accel, boot))
        self.assertIn("GUEST-READY", g.console())
        self.assertEqual(snaptest.qdev_id("/machine/peripheral/vda/virtio-backend"), "vda")

        mounts = g.guest_read("/proc/mounts")
        self.assertRegex(mounts, r"/dev/vd[a-z] /data1 ext4 ")
        self.assertRegex(mounts, r"/dev/vd[a-z] /data2 ext4 ")
        self.assertRegex(mounts, r"\S+ /mem tmpfs ")
        self.assertEqual(g.guest_read("/data1/disk-name"), "data1\n")
        self.assertEqual(g.guest_read("/data2/disk-name"), "data2\n")

        # The workload moves: the log on data1 grows, the RAM counter counts.
        deadline = time.monotonic() + 20
        while line_count(g, "/data1/counter.log") < 3 or not g.guest_read("/data2/rewrite.dat").strip():
            self.assertLess(time.monotonic(), deadline, "workload did not start")
            time.sleep(0.2)
        a, m = line_count(g, "/data1/counter.log"), int(g.guest_read("/mem/counter"))
        time.sleep(1)
        self.assertGreater(line_count(g, "/data1/counter.log"), a)
        self.assertGreater(int(g.guest_read("/mem/counter")), m)
        code, out, _ = g.guest_exec(["ls", "-l", "/mem/dirty"])
        self.assertEqual(code, 0, out)

        # Freeze: both file systems, the hook tells the console, the log stops growing.
        self.assertEqual(g.agent("guest-fsfreeze-freeze"), 2)
        self.assertEqual(g.agent("guest-fsfreeze-status"), "frozen")
        g.wait_console("FSFREEZE-HOOK freeze", timeout=10)
        # (A frozen agent refuses guest-exec; the log's timestamps show the pause.)
        time.sleep(2)
        self.assertEqual(g.agent("guest-fsfreeze-thaw"), 2)
        self.assertEqual(g.agent("guest-fsfreeze-status"), "thawed")
        g.wait_console("FSFREEZE-HOOK thaw", timeout=10)
        time.sleep(1)
        stamps = [float(line.split()[1])
                  for line in g.guest_read("/data1/counter.log").splitlines()]
        gap = max(b - a for a, b in zip(stamps, stamps[1:]))
        self.assertGreater(gap, 1.5, "writes to /data1 went on while frozen")
        self.assertGreater(stamps[-1] - stamps[0], gap)

        # What the daemon will see through QMP.
        blocks = g.qmp("query-block")
        sys.stderr.write("query-block: %s\n" % [(b.get("qdev"), b.get("device"),
                                                 b["inserted"]["node-name"]) for b in blocks])
        self.assertEqual(g.block_devices(), {"vda": "disk1", "vdb": "disk2"})
        nodes = {n["node-name"] for n in g.block_graph()}
        self.assertTrue({"disk1", "disk1-file", "disk2", "disk2-file"} <= nodes, nodes)
        self.assertTrue(g.is_running())
        with self.assertRaises(snaptest.QMPError) as e:
            g.qmp("no-such-command")
        self.assertEqual(e.exception.error_class, "CommandNotFound")
        self.assertEqual(snaptest.image_info(g.disk_paths[0])["format"], "qcow2")
        self.assertEqual(snaptest.image_snapshots(g.disk_paths[0]), [])

        # The daemon's monitor is a separate one, free for it.
        qmp = snaptest.QMP(g.qmp_sock)
        self.assertEqual(qmp.execute("query-status")["status"], "running")
        qmp.close()

        g.qmp("stop")
        self.assertFalse(g.is_running())
        g.qmp("cont")
        self.assertTrue(g.is_running())
        g.stop()
        self.assertFalse(g.is_running())

    def test_powerdown(self):
        g = self.make_guest(dirty_mb=0)
        since = len(g.events)
        g.qmp("system_powerdown")
        g.proc.wait(60)
        self.assertIn("GUEST-SHUTDOWN acpi", g.console())
        self.assertIn("GUEST-POWEROFF", g.console())
        self.assertTrue(any(e["event"] == "SHUTDOWN" for e in g.events[since:]))

    def test_agent_shutdown_one_disk(self):
        g = self.make_guest(disks=1, dirty_mb=0, memory_mb=192)
        mounts = g.guest_read("/proc/mounts")
        self.assertIn(" /data1 ", mounts)
        self.assertNotIn(" /data2 ", mounts)
        self.assertEqual(g.block_devices(), {"vda": "disk1"})
        g.agent("guest-shutdown", reply=False)
        g.proc.wait(60)
        self.assertIn("GUEST-SHUTDOWN", g.console())


class BusTest(snaptest.SnapTestCase):
    def test_private_bus(self):
        bus = self.make_bus()
        self.assertTrue(bus.address.startswith("unix:path=" + self.tmpdir))
        self.assertIn("org.freedesktop.DBus", bus.list_names())
        self.assertFalse(bus.name_has_owner(snaptest.BUS_NAME))

        bus.subscribe(sender="org.freedesktop.DBus", member="NameOwnerChanged")
        other = bus.new_connection()
        r = bus.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "RequestName", "su",
                     ("org.example.SelfTest", 0), dest="org.freedesktop.DBus", conn=other)
        self.assertEqual(r, (1,))
        sig = bus.wait_for("NameOwnerChanged", lambda s: s["args"][0] == "org.example.SelfTest",
                           timeout=5)
        self.assertEqual(sig["args"][2], other.get_unique_name())
        self.assertIn("org.example.SelfTest", bus.list_names())

        with self.assertRaises(snaptest.BusError) as e:
            bus.call(snaptest.MANAGER_PATH, snaptest.MANAGER_IFACE, "ListDomains")
        self.assertEqual(e.exception.name, "org.freedesktop.DBus.Error.ServiceUnknown")
        other.close_sync(None)

    def test_domain_config(self):
        path = snaptest.write_domain_config(os.path.join(self.tmpdir, "conf"), "vm-1",
                                            "/run/a&b/qmp.sock", "/run/vm/qga.sock", "/img")
        with open(path) as f:
            text = f.read()
        self.assertIn('<domain name="vm-1">', text)
        self.assertIn('<qmp socket="/run/a&amp;b/qmp.sock"/>', text)
        self.assertIn('<images dir="/img"/>', text)


class HarnessTest(unittest.TestCase):
    def test_require(self):
        with mock.patch.dict(os.environ, {"CI": "true"}):
            with self.assertRaises(AssertionError):
                snaptest.require(False, "x")
        with mock.patch.dict(os.environ, {"CI": ""}):
            with self.assertRaises(unittest.SkipTest):
                snaptest.require(False, "x")
        snaptest.require(True, "x")

    def test_logs_only_on_failure(self):
        class Inner(snaptest.SnapTestCase):
            def test_fail(self):
                p = os.path.join(self.tmpdir, "daemon.log")
                with open(p, "w") as f:
                    f.write("MARKER-LOG-LINE\n")
                self.watch_log(p, "daemon")
                self.fail("on purpose")

            def test_pass(self):
                p = os.path.join(self.tmpdir, "daemon.log")
                with open(p, "w") as f:
                    f.write("MARKER-LOG-LINE\n")
                self.watch_log(p, "daemon")

        for name, shown in (("test_fail", True), ("test_pass", False)):
            err = io.StringIO()
            with mock.patch.object(sys, "stderr", err):
                Inner(name).run(unittest.TestResult())
            self.assertEqual("MARKER-LOG-LINE" in err.getvalue(), shown, name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
