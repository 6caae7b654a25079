#!/usr/bin/python3
# Limits and concurrency, with three real guests on one daemon:
#  - snapshots on three domains at once all succeed;
#  - reads on other domains are answered while a live memory save runs (latency printed);
#  - a caller that disconnects mid-call: the job ends as it would have (logged), nothing is
#    left behind, the domain is not busy;
#  - --max-snapshots bounds CreateSnapshot and REDEFINE with NoSpace; the daemon keeps serving.

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import snaptest
from snaptest import (DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH, SNAPSHOT_IFACE, ERROR_PREFIX, Bus, BusError, Guest)

v = snaptest.variant
wait_until = snaptest.wait_until
NAMES = ("vm1", "vm2", "vm3")
REDEFINE = 1
DISK_ONLY = {"disk-only": v("b", True), "atomic": v("b", True)}


class LimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="snaplim-", dir="/tmp")
        cls.conf = os.path.join(cls.tmp, "conf")
        cls.state = os.path.join(cls.tmp, "state")
        cls.bus = Bus(os.path.join(cls.tmp, "bus"))
        os.makedirs(cls.bus.tmpdir)
        cls.bus.start()
        cls.guests, cls.images = {}, {}
        try:
            for i, name in enumerate(NAMES):
                # vm1 dirties memory, so its live save takes a while
                g = Guest(os.path.join(cls.tmp, name), dirty_mb=32 if i == 0 else 2, memory_mb=256)
                cls.guests[name] = g
                g.start()
                cls.images[name] = os.path.join(cls.tmp, "img-" + name)
                os.makedirs(cls.images[name])
                g.domain_config(cls.conf, name, images_dir=cls.images[name])
            for g in cls.guests.values():
                g.wait_ready()
            cls.start_daemon()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def start_daemon(cls, *args):
        cls.bus.start_daemon(cls.conf, cls.state, extra_args=args)
        cls.doms = {n: cls.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", (n,))[0] for n in NAMES}
        for d in cls.doms.values():
            wait_until(lambda: cls.bus.get_property(d, DOMAIN_IFACE, "State") == "running", 30)

    @classmethod
    def tearDownClass(cls):
        rc = cls.bus.stop_daemon()
        log = cls.bus.read_daemon_log()
        cls.bus.stop()
        for g in cls.guests.values():
            g.stop()
        if rc not in (None, 0):
            raise AssertionError("snapshotd exited with %s; its log:\n%s" % (rc, log[-20000:]))
        if os.environ.get("SNAPSHOTD_TEST_KEEP") != "1":
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def create(self, dom, name, opts=DISK_ONLY):
        return self.bus.call(self.doms[dom], DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), timeout=300)[0]

    def snapshots(self, dom):
        return self.bus.call(self.doms[dom], DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]

    def test_01_three_domains_at_once(self):
        results, errors = {}, []

        def one(dom):
            try:
                results[dom] = self.create(dom, "together")
            except BusError as e:
                errors.append((dom, e.name, e.message))

        threads = [threading.Thread(target=one, args=(d,)) for d in NAMES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        for d in NAMES:
            self.assertEqual(self.bus.get_property(results[d], SNAPSHOT_IFACE, "Name"), "together")
            self.assertTrue(self.guests[d].is_running())

    def test_02_reads_during_a_live_save(self):
        done = threading.Event()
        err = []

        def save():
            try:
                self.create("vm1", "live-save", {"live": v("b", True), "memory": v("s", "external")})
            except BusError as e:
                err.append(e)
            done.set()

        t = threading.Thread(target=save)
        t.start()
        wait_until(lambda: self.bus.get_property(self.doms["vm1"], DOMAIN_IFACE, "Job") != "" or done.is_set(), 10)
        lat = []
        conn = self.bus.new_connection()
        from gi.repository import Gio, GLib
        while not done.is_set():
            for dom in ("vm2", "vm3"):
                t0 = time.monotonic()
                conn.call_sync(snaptest.BUS_NAME, self.doms[dom], DOMAIN_IFACE, "ListSnapshots",
                               GLib.Variant("(t)", (0,)), None, Gio.DBusCallFlags.NONE, 5000, None)
                conn.call_sync(snaptest.BUS_NAME, self.doms[dom], "org.freedesktop.DBus.Properties", "GetAll",
                               GLib.Variant("(s)", (DOMAIN_IFACE,)), None, Gio.DBusCallFlags.NONE, 5000, None)
                lat.append((time.monotonic() - t0) * 1000 / 2)
        t.join()
        self.assertEqual(err, [])
        self.assertGreater(len(lat), 5)
        lat.sort()
        # reported, not asserted: timings belong to the benchmarks
        sys.stderr.write("\nreads on vm2/vm3 during vm1's live save: %d calls, median %.2f ms, p99 %.2f ms, max %.2f ms\n"
                         % (len(lat), statistics.median(lat), lat[int(len(lat) * 0.99) - 1], lat[-1]))

    def test_03_caller_disconnects_mid_call(self):
        before = set(os.listdir(self.images["vm2"]))
        # a separate process makes the call and is killed while the job runs
        code = ("import sys, gi\n"
                "gi.require_version('Gio', '2.0')\n"
                "from gi.repository import Gio, GLib\n"
                "c = Gio.DBusConnection.new_for_address_sync(sys.argv[1], Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT"
                " | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)\n"
                "print('calling', flush=True)\n"
                "c.call_sync('org.example.Snapshot1', sys.argv[2], 'org.example.Snapshot1.Domain', 'CreateSnapshot',"
                " GLib.Variant('(ssa{sv})', ('gone', '', {'live': GLib.Variant('b', True),"
                " 'memory': GLib.Variant('s', 'external')})), None, 0, 300000, None)\n")
        p = subprocess.Popen(["/usr/bin/python3", "-c", code, self.bus.address, self.doms["vm2"]],
                             stdout=subprocess.PIPE, text=True)
        self.assertEqual(p.stdout.readline().strip(), "calling")
        wait_until(lambda: self.bus.get_property(self.doms["vm2"], DOMAIN_IFACE, "Job") != "", 10, "job started")
        p.kill()
        p.wait()
        p.stdout.close()
        wait_until(lambda: self.bus.get_property(self.doms["vm2"], DOMAIN_IFACE, "Job") == "", 120, "job ended")
        # the job finished for nobody: the snapshot is whole, or nothing of it is left
        names = [self.bus.get_property(s, SNAPSHOT_IFACE, "Name") for s in self.snapshots("vm2")]
        left = set(os.listdir(self.images["vm2"])) - before
        if "gone" in names:
            s = self.bus.call(self.doms["vm2"], DOMAIN_IFACE, "LookupSnapshot", "s", ("gone",))[0]
            self.assertEqual(self.bus.get_property(s, SNAPSHOT_IFACE, "Memory"), "external")
            self.assertTrue(left)
        else:
            self.assertEqual(left, set())
        self.assertIn("Domain 'vm2': snapshot-create of 'gone'", self.bus.read_daemon_log())
        self.assertTrue(self.guests["vm2"].is_running())
        self.create("vm2", "after-disconnect")

    def test_04_max_snapshots(self):
        self.bus.stop_daemon()
        self.start_daemon("--max-snapshots=3")
        try:
            n = len(self.snapshots("vm3"))
            for i in range(n, 3):
                self.create("vm3", "cap-%d" % i)
            files = sorted(os.listdir(self.images["vm3"]))
            with self.assertRaises(BusError) as cm:
                self.create("vm3", "one-too-many")
            self.assertEqual(cm.exception.name, ERROR_PREFIX + "NoSpace")
            self.assertIn("--max-snapshots=3", cm.exception.message)
            self.assertEqual(sorted(os.listdir(self.images["vm3"])), files)
            # REDEFINE of a new record counts too; of an existing one it does not
            xml = self.bus.call(self.snapshots("vm3")[-1], SNAPSHOT_IFACE, "GetXMLDesc", "t", (0,))[0]
            with self.assertRaises(BusError) as cm:
                self.bus.call(self.doms["vm3"], DOMAIN_IFACE, "CreateSnapshotXML", "st",
                              (xml.replace("<name>cap-2</name>", "<name>imported</name>"), REDEFINE))
            self.assertEqual(cm.exception.name, ERROR_PREFIX + "NoSpace")
            self.bus.call(self.doms["vm3"], DOMAIN_IFACE, "CreateSnapshotXML", "st", (xml, REDEFINE))
            # another domain is not affected by vm3's count
            self.create("vm1", "still-fine")
        finally:
            self.bus.stop_daemon()
            self.start_daemon()

    def test_06_hung_qemu(self):
        """vm3's QEMU stops answering (SIGSTOP): its calls fail after --qmp-timeout, it is
        marked unknown, vm2 is served meanwhile, and it comes back when QEMU does."""
        self.bus.stop_daemon()
        self.start_daemon("--qmp-timeout=2")
        g = self.guests["vm3"]
        files = sorted(os.listdir(self.images["vm3"]))
        n = len(self.snapshots("vm3"))
        os.kill(g.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with self.assertRaises(BusError) as cm:
                self.create("vm3", "hung")
            took = time.monotonic() - t0
            self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed", cm.exception.message)
            self.assertIn("in time", cm.exception.message)
            self.assertLess(took, 30)
            self.assertEqual(self.bus.get_property(self.doms["vm3"], DOMAIN_IFACE, "State"), "unknown")
            t0 = time.monotonic()
            self.snapshots("vm2")
            self.assertLess(time.monotonic() - t0, 1.0)
            self.assertIn("Domain 'vm3': QEMU did not answer", self.bus.read_daemon_log())
        finally:
            os.kill(g.pid, signal.SIGCONT)
        wait_until(lambda: self.bus.get_property(self.doms["vm3"], DOMAIN_IFACE, "State") == "running", 30,
                   "vm3 answers again")
        wait_until(lambda: not os.path.exists(os.path.join(self.state, "journal", "vm3.json")), 30, "recovery")
        self.assertEqual(sorted(os.listdir(self.images["vm3"])), files)
        self.assertEqual(len(self.snapshots("vm3")), n)
        self.create("vm3", "after-hang")
        self.bus.stop_daemon()
        self.start_daemon()

    def test_05_bad_limit_option(self):
        r = subprocess.run([os.environ["SNAPSHOTD"], "--max-snapshots=0"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--max-snapshots", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
