#!/usr/bin/python3
# Disk-only snapshots end to end: a private dbus-daemon, the built snapshotd, a real QEMU
# running the test guest (two virtio disks, qemu-ga inside, a workload writing to both).
# One guest is shared by the tests of this file; each test checks what a user would:
# files on disk, QEMU's block graph, the guest still running, errors by name.

import os
import subprocess
import time
import unittest
import xml.etree.ElementTree as ET

import snaptest
from snaptest import (BUS_NAME, DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH, SNAPSHOT_IFACE,
                      ERROR_PREFIX, BusError, image_info, qdev_id)

CREATE = {"REDEFINE": 1, "CURRENT": 2, "NO_METADATA": 4, "HALT": 8, "DISK_ONLY": 16,
          "REUSE_EXT": 32, "QUIESCE": 64, "ATOMIC": 128, "LIVE": 256, "VALIDATE": 512}
LIST = {"ROOTS": 1, "LEAVES": 4, "NO_LEAVES": 8, "METADATA": 2, "NO_METADATA": 16,
        "INACTIVE": 32, "ACTIVE": 64, "DISK_ONLY": 128, "INTERNAL": 256, "EXTERNAL": 512,
        "TOPOLOGICAL": 1024}
PHASES = ["validate", "quiesce", "pause", "memory", "disks", "thaw", "resume", "sync",
          "metadata", "done"]


v = snaptest.variant
wait_until = snaptest.wait_until


class _Shared(snaptest.SharedDomain):
    # older spellings the tests below use
    domain = property(lambda self: self.dom)


Shared = _Shared("snapi-", aux_monitor=True)
# a serial port nobody reads: an agent that never answers
Shared.guest_kwargs["extra_args"] += [
    "-chardev", "socket,id=qga-dead,path=%s/g/qga-dead.sock,server=on,wait=off" % Shared.tmp,
    "-device", "virtserialport,bus=vser0.0,chardev=qga-dead,name=org.example.nobody"]


def setUpModule():
    Shared.start()


def tearDownModule():
    Shared.stop(unmount=[os.path.join(Shared.images, m) for m in ("ro", "small")])


class DiskOnlyTest(snaptest.SharedTestCase):
    shared = Shared
    maxDiff = None

    @property
    def bus(self):
        return Shared.bus

    @property
    def guest(self):
        return Shared.guest

    @property
    def dom(self):
        return Shared.domain

    def setUp(self):
        self.bus.clear_signals()

    # --- helpers -------------------------------------------------------------------
    def create(self, name, opts=None, desc="", domain=None):
        o = {k: (v("b", x) if isinstance(x, bool) else x) for k, x in (opts or {}).items()}
        return self.bus.call(domain or self.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}",
                             (name, desc, o), timeout=120)[0]

    def assert_error(self, name, fn, *args, **kwargs):
        with self.assertRaises(BusError) as cm:
            fn(*args, **kwargs)
        full = name if "." in name else ERROR_PREFIX + name
        self.assertEqual(cm.exception.name, full, cm.exception.message)
        return cm.exception.message

    def props(self, path):
        return self.bus.get_all_properties(path, SNAPSHOT_IFACE)

    def top_nodes(self):
        """{target: (top node name, its image file)} from QEMU's block graph."""
        out = {}
        for dev in self.guest.qmp("query-block"):
            ins = dev.get("inserted")
            if ins:
                out[qdev_id(dev["qdev"])] = (ins["node-name"], ins["image"]["filename"])
        return out

    def node_names(self):
        return sorted(n["node-name"] for n in self.guest.qmp("query-named-block-nodes"))

    def image_files(self):
        out = []
        for root, dirs, files in os.walk(Shared.images):
            out += [os.path.join(root, f) for f in files]
        return sorted(out)

    def metadata_files(self):
        d = os.path.join(Shared.state_dir, "snapshots", "vm1")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def snapshot_names(self, flags=0):
        paths = self.bus.call(self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (flags,))[0]
        return [self.bus.get_property(p, SNAPSHOT_IFACE, "Name") for p in paths]

    def assert_guest_alive(self):
        self.assertEqual(self.guest.status(), "running")
        self.guest.agent("guest-ping", timeout=10)
        self.assertEqual(self.guest.agent("guest-fsfreeze-status", timeout=10), "thawed")

    def state(self):
        """Everything a failed call must leave as it was."""
        return (self.top_nodes(), self.node_names(), self.image_files(), self.metadata_files(),
                self.bus.get_property(self.dom, DOMAIN_IFACE, "CurrentSnapshot"))

    def guest_log_size(self):
        code, out, err = self.guest.guest_exec(["/bin/sh", "-c", "cat /data1/*.log | wc -c"])
        self.assertEqual(code, 0, err)
        return int(out.strip())

    # --- the main path ---------------------------------------------------------------
    def test_01_atomic_quiesced_two_disks(self):
        before = self.top_nodes()
        self.assertEqual(sorted(before), ["vda", "vdb"])
        written_before = self.guest_log_size()
        console_before = self.guest.console().count("FSFREEZE-HOOK freeze")
        self.bus.subscribe(sender=None, iface=DOMAIN_IFACE, member="Progress")
        self.bus.subscribe(sender=None, iface=MANAGER_IFACE, member="SnapshotCreated")
        self.bus.subscribe(sender=None, iface="org.freedesktop.DBus.Properties",
                           member="PropertiesChanged")

        path = self.create("s1", {"disk-only": True, "atomic": True, "quiesce": True},
                           desc="first <snapshot> & test")
        self.assertTrue(path.startswith(self.dom + "/snapshot/"))

        # files on disk: two qcow2 overlays backed by the images the guest used
        after = self.top_nodes()
        for target in ("vda", "vdb"):
            overlay = os.path.join(Shared.images, "s1.%s.qcow2" % target)
            self.assertTrue(os.path.isfile(overlay), overlay)
            self.assertEqual(os.stat(overlay).st_mode & 0o777, 0o600)
            info = image_info(overlay)
            self.assertEqual(info["format"], "qcow2")
            self.assertEqual(info["backing-filename"], before[target][1])
            # QEMU's block graph: the device now writes to the overlay
            self.assertEqual(after[target][1], overlay)
            self.assertNotEqual(after[target][0], before[target][0])
            chain = [n for n in self.guest.qmp("query-named-block-nodes")
                     if n["node-name"] == after[target][0]][0]
            self.assertEqual(chain["image"]["backing-image"]["filename"], before[target][1])

        # the guest kept running, was frozen and thawed, and keeps writing
        self.assert_guest_alive()
        self.assertEqual(self.guest.console().count("FSFREEZE-HOOK freeze"), console_before + 1)
        self.assertGreaterEqual(self.guest.console().count("FSFREEZE-HOOK thaw"), console_before + 1)
        wait_until(lambda: self.guest_log_size() > written_before, 20, "guest writing")

        # properties
        p = self.props(path)
        self.assertEqual(p["Name"], "s1")
        self.assertEqual(p["Description"], "first <snapshot> & test")
        self.assertEqual(p["State"], "disk-snapshot")
        self.assertEqual(p["Memory"], "no")
        self.assertEqual(p["MemoryFile"], "")
        self.assertTrue(p["Quiesced"])
        self.assertTrue(p["IsCurrent"])
        self.assertEqual(p["Domain"], self.dom)
        self.assertEqual(sorted(p["Disks"]), [
            ("vda", "external", os.path.join(Shared.images, "s1.vda.qcow2")),
            ("vdb", "external", os.path.join(Shared.images, "s1.vdb.qcow2"))])
        self.assertLess(abs(p["CreationTime"] / 1e6 - time.time()), 120)
        self.assertEqual(self.bus.get_property(self.dom, DOMAIN_IFACE, "CurrentSnapshot"), path)
        self.assertEqual(self.bus.get_property(self.dom, DOMAIN_IFACE, "Job"), "")

        # signals: phases in DESIGN.md's order, done last; SnapshotCreated; Job changed
        self.bus.wait_for("SnapshotCreated", lambda s: s["args"] == (self.dom, path), timeout=5)
        phases = [s["args"][1] for s in self.bus.signals("Progress") if s["path"] == self.dom]
        self.assertEqual(phases[0], "validate")
        self.assertEqual(phases[-1], "done")
        self.assertIn("quiesce", phases)
        self.assertIn("disks", phases)
        self.assertIn("thaw", phases)
        order = [PHASES.index(x) for x in phases]
        self.assertEqual(order, sorted(order), phases)
        jobs = [s["args"][1].get("Job") for s in self.bus.signals("PropertiesChanged")
                if s["path"] == self.dom and "Job" in s["args"][1]]
        self.assertEqual(jobs, ["snapshot-create", ""])

        # metadata on disk validates against libvirt's schema
        f = os.path.join(Shared.state_dir, "snapshots", "vm1", "s1.xml")
        r = subprocess.run(["virt-xml-validate", f, "domainsnapshot"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        xml = self.bus.call(path, SNAPSHOT_IFACE, "GetXMLDesc", "t", (0,))[0]
        root = ET.fromstring(xml)
        self.assertEqual(root.findtext("name"), "s1")
        self.assertEqual(root.findtext("state"), "disk-snapshot")
        self.assertEqual(root.find("domain").findtext("name"), "vm1")

    def test_02_chain_list_and_lookup(self):
        s2 = self.create("s2", {"disk-only": True, "disks": v("a(sss)", [("vdb", "no", "")])})
        p = self.props(s2)
        self.assertEqual(p["Disks"], [("vda", "external", os.path.join(Shared.images, "s2.vda.qcow2")),
                                      ("vdb", "no", "")])
        self.assertFalse(p["Quiesced"])
        s1 = self.bus.call(self.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("s1",))[0]
        self.assertEqual(p["Parent"], s1)
        self.assertEqual(self.props(s1)["Children"], [s2])
        self.assertFalse(self.props(s1)["IsCurrent"])
        # the vda chain is now base <- s1 <- s2, vdb stays on s1's overlay
        self.assertEqual(image_info(os.path.join(Shared.images, "s2.vda.qcow2"))["backing-filename"],
                         os.path.join(Shared.images, "s1.vda.qcow2"))
        self.assertEqual(self.top_nodes()["vdb"][1], os.path.join(Shared.images, "s1.vdb.qcow2"))

        names = self.snapshot_names()
        self.assertEqual(names[:2], ["s1", "s2"])
        self.assertEqual(self.snapshot_names(LIST["ROOTS"]), ["s1"])
        self.assertNotIn("s1", self.snapshot_names(LIST["LEAVES"]))
        self.assertIn("s1", self.snapshot_names(LIST["NO_LEAVES"]))
        self.assertEqual(self.snapshot_names(LIST["NO_METADATA"]), [])
        self.assertEqual(self.snapshot_names(LIST["DISK_ONLY"]), names)
        self.assertEqual(self.snapshot_names(LIST["ACTIVE"] | LIST["INACTIVE"]), [])
        self.assertEqual(self.snapshot_names(LIST["EXTERNAL"]), names)
        self.assertEqual(self.snapshot_names(LIST["INTERNAL"]), [])
        self.assertEqual(self.snapshot_names(LIST["TOPOLOGICAL"])[:2], ["s1", "s2"])
        kids = self.bus.call(s1, SNAPSHOT_IFACE, "ListChildren", "t", (0,))[0]
        self.assertEqual(kids, [s2])
        self.assert_error("NoSuchSnapshot", self.bus.call, self.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("nope",))
        self.assert_error("org.freedesktop.DBus.Error.InvalidArgs", self.bus.call, self.dom, DOMAIN_IFACE,
                          "ListSnapshots", "t", (1 << 20,))

    def test_03_create_from_xml_and_reuse_external(self):
        # an overlay the caller made with qemu-img, reused as it is
        base = self.top_nodes()["vdb"][1]
        pre = os.path.join(Shared.images, "pre.vdb.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", base, pre], check=True)
        xml = """<domainsnapshot><name>s3</name><description>from xml</description>
                 <disks><disk name='vda' snapshot='no'/>
                 <disk name='vdb' snapshot='external'><source file='%s'/></disk></disks>
                 </domainsnapshot>""" % pre
        path = self.bus.call(self.dom, DOMAIN_IFACE, "CreateSnapshotXML", "st",
                             (xml, CREATE["DISK_ONLY"] | CREATE["REUSE_EXT"] | CREATE["ATOMIC"]), timeout=120)[0]
        p = self.props(path)
        self.assertEqual(p["Description"], "from xml")
        self.assertEqual(self.top_nodes()["vdb"][1], pre)
        self.assert_guest_alive()

    def test_04_no_metadata_and_validate_only(self):
        before_meta = self.metadata_files()
        before_cur = self.bus.get_property(self.dom, DOMAIN_IFACE, "CurrentSnapshot")
        r = self.create("nometa", {"disk-only": True, "no-metadata": True,
                                   "disks": v("a(sss)", [("vdb", "no", "")])})
        self.assertEqual(r, "/")
        self.assertTrue(os.path.isfile(os.path.join(Shared.images, "nometa.vda.qcow2")))
        self.assertEqual(self.top_nodes()["vda"][1], os.path.join(Shared.images, "nometa.vda.qcow2"))
        self.assertEqual(self.metadata_files(), before_meta)
        self.assertNotIn("nometa", self.snapshot_names())
        self.assertEqual(self.bus.get_property(self.dom, DOMAIN_IFACE, "CurrentSnapshot"), before_cur)

        before = self.state()
        r = self.create("validated", {"disk-only": True, "atomic": True, "quiesce": True, "validate-only": True})
        self.assertEqual(r, "/")
        self.assertEqual(self.state(), before)
        # validate-only still refuses what would fail
        self.assert_error("InvalidArgument", self.create, "validated",
                          {"disk-only": True, "validate-only": True,
                           "disks": v("a(sss)", [("vda", "external", "/etc/passwd")])})
        self.assertEqual(self.state(), before)

    # --- failures leave nothing behind ------------------------------------------------
    def test_10_second_overlay_on_read_only_storage(self):
        ro = os.path.join(Shared.images, "ro")
        os.makedirs(ro, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro], check=True)
        try:
            before = self.state()
            msg = self.assert_error("Failed", self.create, "fail-ro",
                                    {"disk-only": True, "atomic": True, "quiesce": True,
                                     "disks": v("a(sss)", [("vda", "external", "ok.vda.qcow2"),
                                                           ("vdb", "external", "ro/x.vdb.qcow2")])})
            self.assertIn("ro/x.vdb.qcow2", msg)
            self.assertIn("Read-only file system", msg)
            self.assertEqual(self.state(), before)
            self.assertFalse(os.path.exists(os.path.join(Shared.images, "ok.vda.qcow2")))
            self.assert_guest_alive()
        finally:
            subprocess.run(["umount", ro], check=True)

    def test_11_image_dir_full_during_format(self):
        # the file system fills while the second overlay is written: room is left for the
        # first overlay's three written pages (header, refcount table, refcount block) and
        # one more
        small = os.path.join(Shared.images, "small")
        os.makedirs(small, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", small], check=True)
        try:
            with open(os.path.join(small, "filler"), "wb") as f:
                f.write(b"x" * (60 * 4096))
            before = self.state()
            msg = self.assert_error("NoSpace", self.create, "fail-full",
                                    {"disk-only": True, "atomic": True,
                                     "disks": v("a(sss)", [("vda", "external", "small/a.qcow2"),
                                                           ("vdb", "external", "small/b.qcow2")])})
            self.assertIn("small/b.qcow2", msg)
            self.assertEqual(self.state(), before, msg)
            self.assertEqual(os.listdir(small), ["filler"])
            self.assert_guest_alive()
        finally:
            subprocess.run(["umount", small], check=True)

    def test_12_agent_absent_or_hung(self):
        S = Shared
        aux = os.path.join(S.tmp, "g", "qmp-aux.sock")
        for name, agent in (("vm1-noagent", "/nonexistent/qga.sock"),
                            ("vm1-hung", os.path.join(S.tmp, "g", "qga-dead.sock"))):
            d = self.bus.call(MANAGER_PATH, MANAGER_IFACE, "RegisterDomain", "ssa{sv}",
                              (name, aux, {"agent-socket": v("s", agent),
                                           "images-dir": v("s", S.images)}))[0]
            try:
                wait_until(lambda: self.bus.get_property(d, DOMAIN_IFACE, "State") == "running", 20)
                before = self.state()
                t0 = time.monotonic()
                msg = self.assert_error("AgentUnavailable", self.create, "q-" + name,
                                        {"disk-only": True, "quiesce": True}, domain=d)
                self.assertLess(time.monotonic() - t0, 40)
                self.assertIn("agent", msg)
                self.assertEqual(self.state(), before)
                self.assertFalse(self.bus.get_property(d, DOMAIN_IFACE, "HasAgent"))
                # best effort: crash-consistent, recorded as not quiesced
                path = self.create("be-" + name, {"disk-only": True, "quiesce": True,
                                                  "quiesce-best-effort": True,
                                                  "disks": v("a(sss)", [("vdb", "no", "")])}, domain=d)
                self.assertFalse(self.bus.get_property(path, SNAPSHOT_IFACE, "Quiesced"))
                self.assert_guest_alive()
            finally:
                self.bus.call(MANAGER_PATH, MANAGER_IFACE, "UnregisterDomain", "s", (name,))
        # vm1's own view of the guest is unaffected (its block graph moved under it, which
        # the next snapshot of vm1 picks up from query-block)
        self.assertEqual(self.bus.get_property(self.dom, DOMAIN_IFACE, "State"), "running")

    def test_13_bad_input(self):
        before = self.state()
        bad = [
            ("org.freedesktop.DBus.Error.InvalidArgs", {"frobnicate": True}, "s-x"),
            ("org.freedesktop.DBus.Error.InvalidArgs", {"atomic": v("s", "yes")}, "s-x"),
            ("InvalidArgument", {"disk-only": True}, "../x"),
            ("InvalidArgument", {"disk-only": True}, "a/b"),
            ("InvalidArgument", {"disk-only": True}, ".hidden"),
            ("InvalidArgument", {"disk-only": True}, "x" * 256),
            ("InvalidArgument", {"disk-only": True, "memory": v("s", "External")}, "s-x"),
            ("InvalidArgument", {"disk-only": True,
                                 "disks": v("a(sss)", [("vda", "external", "../escape.qcow2")])}, "s-x"),
            ("InvalidArgument", {"disk-only": True,
                                 "disks": v("a(sss)", [("vda", "external", "/etc/passwd")])}, "s-x"),
            ("InvalidArgument", {"disk-only": True,
                                 "disks": v("a(sss)", [("sdz", "external", "")])}, "s-x"),
            ("SnapshotExists", {"disk-only": True}, "s1"),
            ("OperationUnsupported", {"quiesce": True}, "s-x"),
            ("OperationUnsupported", {"live": True, "disk-only": True}, "s-x"),
            ("OperationUnsupported", {"live": True}, "s-x"),
            ("OperationUnsupported", {"disk-only": True, "memory": v("s", "external")}, "s-x"),
            ("OperationUnsupported", {"quiesce": True, "disk-only": True,
                                      "memory": v("s", "internal")}, "s-x"),
        ]
        for err, opts, name in bad:
            with self.subTest(err=err, opts=opts, name=name[:20]):
                msg = self.assert_error(err, self.create, name, opts)
                self.assertTrue(msg)
        # the messages name the conflicting options
        self.assertIn("quiesce", self.assert_error("OperationUnsupported", self.create, "s-x", {"quiesce": True}))
        m = self.assert_error("OperationUnsupported", self.create, "s-x", {"live": True, "disk-only": True})
        self.assertIn("live", m)
        self.assertIn("disk-only", m)

        xmlcall = lambda xml, flags=CREATE["DISK_ONLY"]: self.bus.call(
            self.dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", (xml, flags), timeout=60)
        self.assert_error("org.freedesktop.DBus.Error.InvalidArgs", xmlcall,
                          "<domainsnapshot><name>x</name></domainsnapshot>", 1 << 12)
        self.assert_error("InvalidArgument", xmlcall, "<domainsnapshot><name>x" + "y" * (10 << 20) +
                          "</name></domainsnapshot>")
        self.assert_error("InvalidArgument", xmlcall,
                          '<!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
                          "<domainsnapshot><name>&b;</name></domainsnapshot>")
        self.assert_error("InvalidArgument", xmlcall,
                          '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                          "<domainsnapshot><name>&x;</name></domainsnapshot>")
        self.assert_error("InvalidArgument", xmlcall, "<domainsnapshot><name>x</name>")
        self.assert_error("NoSuchDomain", self.bus.call, MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("nope",))
        self.assert_error("OperationInvalid", self.bus.call, self.dom, DOMAIN_IFACE, "AbortJob")
        self.assert_error("OperationUnsupported", self.bus.call, self.dom, DOMAIN_IFACE, "Start", "t", (0,))

        # nothing changed and the daemon keeps serving
        self.assertEqual(self.state(), before)
        self.assertIn(self.dom, self.bus.call(MANAGER_PATH, MANAGER_IFACE, "ListDomains")[0])
        self.assert_guest_alive()

    def test_14_busy(self):
        # two creates at once on one domain: the second is Busy, the first succeeds
        from gi.repository import Gio, GLib
        conn2 = self.bus.new_connection()
        results = []
        opts = {"disk-only": v("b", True), "quiesce": v("b", True),
                "disks": v("a(sss)", [("vdb", "no", "")])}
        conn2.call(BUS_NAME, self.dom, DOMAIN_IFACE, "CreateSnapshot",
                   GLib.Variant("(ssa{sv})", ("busy1", "", opts)), None, Gio.DBusCallFlags.NONE,
                   120000, None, lambda c, res: results.append(c.call_finish(res)))
        ctx = GLib.MainContext.default()

        def pump_until(cond, timeout):
            deadline = time.monotonic() + timeout
            while not cond():
                self.assertLess(time.monotonic(), deadline)
                if not ctx.iteration(False):
                    time.sleep(0.01)

        pump_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "Job") == "snapshot-create", 10)
        self.assert_error("Busy", self.create, "busy2", {"disk-only": True})
        pump_until(lambda: bool(results), 60)
        self.assertTrue(results[0].unpack()[0].endswith("busy1"))
        conn2.close_sync(None)

    # --- the daemon restarted sees the same tree --------------------------------------
    def test_20_restart_keeps_tree(self):
        def tree():
            out = []
            for p in self.bus.call(self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]:
                q = self.props(p)
                out.append((q["Name"], q["Parent"], q["IsCurrent"], q["Disks"], q["Quiesced"],
                            q["Description"], q["State"], q["CreationTime"]))
            return out, self.bus.get_property(self.dom, DOMAIN_IFACE, "CurrentSnapshot")
        before = tree()
        self.assertEqual(self.bus.stop_daemon(), 0)
        self.bus.start_daemon(Shared.config_dir, Shared.state_dir)
        wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "State") == "running", 20)
        self.assertEqual(tree(), before)

    def test_21_metadata_only_delete(self):
        self.create("d1", {"disk-only": True, "disks": v("a(sss)", [("vdb", "no", "")])})
        d2 = self.create("d2", {"disk-only": True, "disks": v("a(sss)", [("vdb", "no", "")])})
        d1 = self.bus.call(self.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("d1",))[0]
        parent = self.props(d1)["Parent"]
        files = self.image_files()
        self.bus.call(d1, SNAPSHOT_IFACE, "Delete", "t", (2,))
        self.assertNotIn("d1", self.snapshot_names())
        self.assertEqual(self.props(d2)["Parent"], parent)
        self.assertEqual(self.image_files(), files)
        self.bus.wait_for("SnapshotDeleted", lambda s: s["args"] == (self.dom, "d1"), timeout=5) \
            if self.bus.signals("SnapshotDeleted") else None

    # --- the introspection contract, and snapshotctl as a user runs it ------------------
    def test_30_introspection_matches_contract(self):
        script = os.path.join(snaptest.SOURCE_ROOT, "tests", "data", "check-introspection.py")
        r = subprocess.run(["/usr/bin/python3", script, "--address", self.bus.address, "--require-all"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_31_snapshotctl(self):
        ctl = os.environ["SNAPSHOTCTL"]
        run = lambda *a: subprocess.run([ctl, "--address=" + self.bus.address] + list(a),
                                        capture_output=True, text=True, timeout=120)
        r = run("create-as", "vm1", "ctl1", "made by snapshotctl", "--disk-only", "--atomic", "--quiesce",
                "--diskspec", "vda,file=ctl1-a.qcow2", "--diskspec", "vdb,snapshot=external")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ctl1", r.stdout)
        self.assertTrue(os.path.isfile(os.path.join(Shared.images, "ctl1-a.qcow2")))
        self.assertTrue(os.path.isfile(os.path.join(Shared.images, "ctl1.vdb.qcow2")))
        r = run("list", "vm1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ctl1", r.stdout)
        self.assertIn("disk-snapshot", r.stdout)
        r = run("list", "vm1", "--json")
        import json
        items = json.loads(r.stdout)
        self.assertIn("ctl1", [i["Name"] for i in items])
        r = run("list", "vm1", "--tree")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run("info", "vm1", "ctl1")
        self.assertIn("made by snapshotctl", r.stdout)
        r = run("dumpxml", "vm1", "ctl1")
        self.assertEqual(ET.fromstring(r.stdout).findtext("name"), "ctl1")
        r = run("current", "vm1", "--name")
        self.assertEqual(r.stdout.strip(), "ctl1")
        r = run("list-domains")
        self.assertIn("vm1", r.stdout)
        # errors: one line, named, non-zero exit
        r = run("create-as", "vm1", "../bad", "--disk-only")
        self.assertEqual(r.returncode, 2)       # snapshotctl(1): invalid argument
        self.assertIn("InvalidArgument", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        r = run("info", "nodomain", "x")
        self.assertEqual(r.returncode, 4)       # snapshotctl(1): no such domain or snapshot
        self.assertIn("NoSuchDomain", r.stderr)

    # --- halt ends the guest: last ----------------------------------------------------
    def test_99_halt(self):
        path = self.create("halted", {"disk-only": True, "halt": True,
                                      "disks": v("a(sss)", [("vdb", "no", "")])})
        self.assertNotEqual(path, "/")
        self.guest.proc.wait(20)
        wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "State") == "shutoff", 20)
        self.assertTrue(os.path.isfile(os.path.join(Shared.images, "halted.vda.qcow2")))
        self.assert_error("OperationInvalid", self.create, "after-halt", {"disk-only": True})

        # QEMU comes back on the same socket: the daemon reconnects by itself
        self.guest.start()
        self.guest.wait_ready()
        wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "State") == "running", 30,
                   "reconnect")
        path = self.create("after-restart", {"disk-only": True, "atomic": True})
        self.assertEqual(self.top_nodes()["vda"][1], os.path.join(Shared.images, "after-restart.vda.qcow2"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
