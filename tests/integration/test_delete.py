#!/usr/bin/python3
# Deleting snapshots with their data, and REDEFINE/CURRENT, against a real running guest:
# overlays are merged with block-commit while the guest runs, and the guest's data must be
# the same before and after (checksummed inside the guest through the agent).

import os
import unittest
import xml.etree.ElementTree as ET

import snaptest
from snaptest import (DOMAIN_IFACE, SNAPSHOT_IFACE, ERROR_PREFIX, BusError, image_info, qdev_id)

DEL_CHILDREN, DEL_METADATA, DEL_CHILDREN_ONLY = 1, 2, 4
REDEFINE, CURRENT, LIVE = 1, 2, 256


v = snaptest.variant
wait_until = snaptest.wait_until
S = snaptest.SharedDomain("snapd-", dirty_mb=0)


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class DeleteTest(snaptest.SharedTestCase):
    shared = S
    maxDiff = None


    def create(self, name, opts=None):
        o = {"disk-only": v("b", True)}
        o.update(opts or {})
        return S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", o), timeout=120)[0]

    def lookup(self, name):
        return S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", (name,))[0]

    def delete(self, name, flags=0):
        S.bus.call(self.lookup(name), SNAPSHOT_IFACE, "Delete", "t", (flags,), timeout=300)

    def names(self):
        return [S.bus.get_property(p, SNAPSHOT_IFACE, "Name")
                for p in S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]]

    def parent_name(self, name):
        p = S.bus.get_property(self.lookup(name), SNAPSHOT_IFACE, "Parent")
        return None if p == "/" else S.bus.get_property(p, SNAPSHOT_IFACE, "Name")

    def chain(self, target):
        for d in S.guest.qmp("query-block"):
            if d.get("inserted") and qdev_id(d["qdev"]) == target:
                out, img = [], d["inserted"]["image"]
                while img:
                    out.append(img["filename"])
                    img = img.get("backing-image")
                return out

    def write_marker(self, text):
        S.guest.guest_exec(["/bin/sh", "-c", "echo '%s' > /data1/marker; echo '%s' > /data2/marker; sync"
                            % (text, text)])

    def guest_sums(self):
        code, out, err = S.guest.guest_exec(["/bin/sh", "-c", "sync; md5sum /data1/marker /data2/marker"])
        self.assertEqual(code, 0, err)
        return out

    def assert_images_clean(self):
        # Not the top of each chain: the running guest writes to it while qemu-img reads it,
        # which can show a cluster allocated past the end of the file for a moment.
        for t in ("vda", "vdb"):
            for f in self.chain(t)[1:]:
                code, out = snaptest.image_check(f)
                self.assertEqual(code, 0, out)

    def ov(self, snap, target):
        return os.path.join(S.images, "%s.%s.qcow2" % (snap, target))

    # ---------------------------------------------------------------------------------
    def test_01_delete_middle_of_chain(self):
        base = self.chain("vda")[-1]
        self.write_marker("one")
        self.create("s1")
        self.write_marker("two")
        self.create("s2")
        self.write_marker("three")
        self.create("s3")
        self.assertEqual(self.chain("vda"), [self.ov("s3", "vda"), self.ov("s2", "vda"), self.ov("s1", "vda"), base])
        before = self.guest_sums()

        self.delete("s2")
        self.assertEqual(self.chain("vda"), [self.ov("s3", "vda"), self.ov("s1", "vda"), base])
        self.assertFalse(os.path.exists(self.ov("s2", "vda")))
        self.assertEqual(image_info(self.ov("s3", "vda"))["backing-filename"], self.ov("s1", "vda"))
        self.assertNotIn("s2", self.names())
        self.assertEqual(self.parent_name("s3"), "s1")
        # s3's record now names s1's overlay as its point in time
        xml = S.bus.call(self.lookup("s3"), SNAPSHOT_IFACE, "GetXMLDesc", "t", (0,))[0]
        files = [d.find("source").get("file") for d in ET.fromstring(xml).find("domain").iter("disk")]
        self.assertIn(self.ov("s1", "vda"), files)
        self.assertEqual(self.guest_sums(), before)
        self.assertEqual(S.guest.status(), "running")
        self.assert_images_clean()

    def test_02_delete_current_leaf_active_commit(self):
        before = self.guest_sums()
        self.delete("s3")
        self.assertEqual(self.chain("vda")[0], self.ov("s1", "vda"))
        self.assertFalse(os.path.exists(self.ov("s3", "vda")))
        cur = S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot")
        self.assertEqual(S.bus.get_property(cur, SNAPSHOT_IFACE, "Name"), "s1")
        self.assertEqual(self.guest_sums(), before)
        # the guest keeps writing to the merged image
        self.write_marker("four")
        self.assertIn("marker", self.guest_sums())
        self.assert_images_clean()

    def test_03_children_and_children_only(self):
        self.create("c1")
        self.create("c2")
        self.create("c3")
        self.delete("c1", DEL_CHILDREN_ONLY)
        self.assertIn("c1", self.names())
        self.assertNotIn("c2", self.names())
        self.assertFalse(os.path.exists(self.ov("c2", "vda")))
        self.assertFalse(os.path.exists(self.ov("c3", "vdb")))
        self.create("c4")
        self.delete("c1", DEL_CHILDREN)
        for n in ("c1", "c4"):
            self.assertNotIn(n, self.names())
        self.assertEqual(self.chain("vda")[0], self.ov("s1", "vda"))
        self.assert_images_clean()

    def test_04_memory_and_internal(self):
        m = self.create("m1", {"disk-only": v("b", False), "memory": v("s", "external")})
        mem = S.bus.get_property(m, SNAPSHOT_IFACE, "MemoryFile")
        self.assertTrue(os.path.exists(mem))
        self.delete("m1")
        self.assertFalse(os.path.exists(mem))
        self.assertFalse(os.path.exists(self.ov("m1", "vda")))

        self.create("int1", {"disk-only": v("b", False), "memory": v("s", "internal")})
        top = self.chain("vda")[0]
        self.assertIn("int1", snaptest.image_snapshots(top))
        self.delete("int1")
        self.assertNotIn("int1", snaptest.image_snapshots(top))
        self.assertNotIn("int1", self.names())
        self.assertEqual(S.guest.status(), "running")

    def test_045_mixed_tree_internal_below_external(self):
        # an internal snapshot, then an external one on top: the internal one now lives in
        # a backing image QEMU has open read-only. This version cannot remove it from there:
        # the delete must say so and keep the record (the snapshot is still in the image).
        self.create("mix-int", {"disk-only": v("b", False), "memory": v("s", "internal")})
        holder = self.chain("vda")[0]
        self.create("mix-ext")
        self.assertIn("mix-int", snaptest.image_snapshots(holder))
        with self.assertRaises(BusError) as cm:
            self.delete("mix-int")
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed")
        self.assertIn("mix-int", self.names())
        self.assertIn("mix-int", snaptest.image_snapshots(holder))
        # reverting to it is refused up front: QEMU's load would stop the guest and fail
        with self.assertRaises(BusError) as cm:
            S.bus.call(self.lookup("mix-int"), SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=120)
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationUnsupported", cm.exception.message)
        self.assertIn("stands on", cm.exception.message)
        self.assertEqual(S.guest.status(), "running")
        # merging the external one away puts the holder on top again: then it can go
        self.delete("mix-ext")
        self.delete("mix-int")
        self.assertNotIn("mix-int", self.names())
        self.assertNotIn("mix-int", snaptest.image_snapshots(self.chain("vda")[0]))
        self.assertEqual(S.guest.status(), "running")

    def test_046_internal_inside_an_overlay_refuses_its_merge(self):
        # an external snapshot, then an internal one: the internal one lives in the external
        # one's overlay. Deleting the external one would merge that overlay away and the
        # internal snapshot with it (a soak run did, then failed to revert to it): refused.
        self.create("ie-ext")
        self.create("ie-int", {"disk-only": v("b", False), "memory": v("s", "internal")})
        holder = self.ov("ie-ext", "vda")
        self.assertEqual(self.chain("vda")[0], holder)
        chain = self.chain("vda")
        with self.assertRaises(BusError) as cm:
            self.delete("ie-ext")
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationUnsupported", cm.exception.message)
        self.assertIn("'ie-int' is stored inside", cm.exception.message)
        self.assertEqual(self.chain("vda"), chain)
        self.assertIn("ie-ext", self.names())
        self.assertIn("ie-int", snaptest.image_snapshots(holder))
        # the internal one first, then the external one merges
        self.delete("ie-int")
        self.delete("ie-ext")
        self.assertFalse(os.path.exists(holder))
        self.assertEqual(S.guest.status(), "running")

    def test_047_revert_to_an_internal_snapshot_gone_from_its_image(self):
        # removed behind snapshotd's back: the revert says so and the guest keeps running
        # (QEMU's own load would have stopped it first, and left it stopped)
        self.create("gone", {"disk-only": v("b", False), "memory": v("s", "internal")})
        top = self.chain("vda")[0]
        S.guest.qmp("human-monitor-command", **{"command-line": "delvm gone"})
        self.assertNotIn("gone", snaptest.image_snapshots(top))
        with self.assertRaises(BusError) as cm:
            S.bus.call(self.lookup("gone"), SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=120)
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed", cm.exception.message)
        self.assertIn("is not inside", cm.exception.message)
        self.assertEqual(S.guest.status(), "running")
        S.bus.call(self.lookup("gone"), SNAPSHOT_IFACE, "Delete", "t", (DEL_METADATA,))

    def test_05_refuse_what_another_snapshot_needs(self):
        self.create("y1")
        self.create("y2")
        base_of_y2 = self.ov("y1", "vda")
        # another snapshot whose point in time is y1's overlay as it is (as a branch after a
        # revert would have): imported with REDEFINE
        xml = """<domainsnapshot><name>other</name><state>disk-snapshot</state>
                 <parent><name>y1</name></parent>
                 <disks><disk name='vda' snapshot='no'/><disk name='vdb' snapshot='no'/></disks>
                 <domain type='qemu'><name>vm1</name><memory unit='KiB'>262144</memory><vcpu>1</vcpu>
                 <os><type arch='x86_64'>hvm</type></os><devices>
                 <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>
                 <target dev='vda' bus='virtio'/></disk></devices></domain></domainsnapshot>""" % base_of_y2
        S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", (xml, REDEFINE))
        chain = self.chain("vda")
        with self.assertRaises(BusError) as cm:
            self.delete("y2")
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationUnsupported")
        self.assertIn("other", cm.exception.message)
        self.assertEqual(self.chain("vda"), chain)
        self.assertIn("y2", self.names())
        self.assertTrue(os.path.exists(self.ov("y2", "vda")))
        # metadata-only is always possible
        S.bus.call(self.lookup("other"), SNAPSHOT_IFACE, "Delete", "t", (DEL_METADATA,))
        self.delete("y2")
        self.assertFalse(os.path.exists(self.ov("y2", "vda")))

    def test_06_redefine_and_current(self):
        path = self.lookup("y1")
        xml = S.bus.call(path, SNAPSHOT_IFACE, "GetXMLDesc", "t", (0,))[0]
        cur = S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot")
        # a copy under a new name, imported and made current
        copy = xml.replace("<name>y1</name>", "<name>y1-copy</name>", 1)
        p = S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", (copy, REDEFINE | CURRENT))[0]
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), p)
        self.assertTrue(S.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))
        # editing the description of an existing record
        edited = xml.replace("<description/>", "<description>edited</description>").replace(
            "<description></description>", "<description>edited</description>")
        if "<description>edited" not in edited:
            edited = edited.replace("<name>y1</name>", "<name>y1</name><description>edited</description>", 1)
        S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", (edited, REDEFINE))
        self.assertEqual(S.bus.get_property(path, SNAPSHOT_IFACE, "Description"), "edited")
        # refusals
        bad = [
            (copy.replace(self.ov("y1", "vda"), "/nonexistent/x.qcow2").replace("y1-copy", "bad1"), REDEFINE,
             "InvalidArgument", "does not exist"),
            (copy.replace("<name>y1-copy</name>", "<name>bad2</name><parent><name>ghost</name></parent>", 1)
             if "<parent>" not in copy else copy.replace("y1-copy", "bad2").replace(
                 copy[copy.index("<parent>"):copy.index("</parent>") + 9], "<parent><name>ghost</name></parent>"),
             REDEFINE, "InvalidArgument", "ghost"),
            (copy, REDEFINE | LIVE, "OperationUnsupported", "live"),
            (copy, CURRENT, "OperationUnsupported", "redefine"),
        ]
        for doc, flags, err, word in bad:
            with self.subTest(err=err, word=word):
                with self.assertRaises(BusError) as cm:
                    S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", (doc, flags))
                self.assertEqual(cm.exception.name, ERROR_PREFIX + err, cm.exception.message)
                self.assertIn(word, cm.exception.message)
        self.assertNotIn("bad1", self.names())
        S.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (DEL_METADATA,))
        del cur

    def test_07_restart_keeps_tree(self):
        def tree():
            return [(n, self.parent_name(n)) for n in self.names()], \
                S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot")
        before = tree()
        self.assertEqual(S.bus.stop_daemon(), 0)
        S.bus.start_daemon(S.config_dir, S.state_dir)
        wait_until(lambda: S.bus.get_property(S.dom, DOMAIN_IFACE, "State") == "running", 20)
        self.assertEqual(tree(), before)

    def test_08_forget_a_long_chain(self):
        """Metadata only, with children, of a chain longer than one slice of the loop (32):
        every record is gone from the bus and the state dir, the current mark moves to the
        chain's parent, and the rest of the tree is as it was."""
        import re
        base = "y1"     # test_05's: a disk-only record whose files exist
        xml = S.bus.call(self.lookup(base), SNAPSHOT_IFACE, "GetXMLDesc", "t", (0,))[0]
        xml = re.sub(r"\s*<parent>.*?</parent>", "", xml, flags=re.S)
        before = [(n, self.parent_name(n)) for n in self.names()]
        parent = base
        for i in range(40):
            name = "chain%02d" % i
            doc = xml.replace("<name>%s</name>" % base,
                              "<name>%s</name><parent><name>%s</name></parent>" % (name, parent), 1)
            S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshotXML", "st", (doc, REDEFINE | (CURRENT if i == 39 else 0)))
            parent = name
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), self.lookup("chain39"))
        S.bus.subscribe(member="SnapshotDeleted")
        self.delete("chain00", DEL_CHILDREN | DEL_METADATA)
        S.bus.dispatch(0.3)
        deleted = sorted(sig["args"][1] for sig in S.bus.signals("SnapshotDeleted"))
        self.assertEqual(deleted, ["chain%02d" % i for i in range(40)])
        self.assertEqual([(n, self.parent_name(n)) for n in self.names()], before)
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), self.lookup(base))
        records = os.listdir(os.path.join(S.state_dir, "snapshots", "vm1"))
        self.assertFalse([f for f in records if f.startswith("chain") or f.startswith(".")], records)
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "Job"), "")


if __name__ == "__main__":
    unittest.main(verbosity=2)
