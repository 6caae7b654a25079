#!/usr/bin/python3
# snapshotd killed (SIGKILL, through a failpoint) at every step of a delete — of a snapshot in
# the middle of the chain (a commit below the top) and of the current leaf (an active commit
# and its pivot) — and of an internal revert, then started again. A delete or a revert cannot
# be undone once QEMU started on it, so recovery finishes it: the snapshot is gone with its
# overlays and nodes, its child stands on the merged image, the journal is gone; a revert's
# snapshot is current and the guest runs as it did. A revert killed before QEMU's load began
# changed nothing. Each time: the guest runs, its file systems are thawed, no block node or
# file is left that no record names, and the domain takes the next snapshot.

import os
import unittest

import snaptest
from snaptest import (DOMAIN_IFACE, SNAPSHOT_IFACE, BusError)

DELETE_MIDDLE_STEPS = ["delete-inspect", "delete-merge", "delete-commit", "delete-drop", "delete-forget"]
DELETE_LEAF_STEPS = ["delete-merge", "delete-commit", "delete-complete", "delete-drop", "delete-forget"]
REVERT_STEPS = ["revert-load", "revert-loading", "revert-state", "revert-done"]

v = snaptest.variant
wait_until = snaptest.wait_until
S = snaptest.SharedDomain("snapkd-", dirty_mb=4)


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class CrashDeleteRevertTest(snaptest.SharedTestCase):
    shared = S
    maxDiff = None

    @property
    def journal(self):
        return os.path.join(S.state_dir, "journal", "vm1.json")

    def create(self, name, opts=None):
        opts = opts or {"disk-only": v("b", True), "atomic": v("b", True)}
        return S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), timeout=120)[0]

    def lookup(self, name):
        try:
            return S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", (name,))[0]
        except BusError:
            return None

    def props(self, name):
        return S.bus.get_all_properties(self.lookup(name), SNAPSHOT_IFACE)

    def tree(self):
        """name -> parent name, for every snapshot."""
        out = {}
        for p in S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]:
            props = S.bus.get_all_properties(p, SNAPSHOT_IFACE)
            parent = props["Parent"]
            out[props["Name"]] = (S.bus.get_property(parent, SNAPSHOT_IFACE, "Name") if parent != "/" else None)
        return out

    def chains(self):
        """target -> the files of its backing chain, top first."""
        out = {}
        for d in S.guest.qmp("query-block"):
            img = d.get("inserted", {}).get("image")
            files = []
            while img:
                files.append(img["filename"])
                img = img.get("backing-image")
            out[snaptest.qdev_id(d.get("qdev", ""))] = files
        return out

    def recorded_files(self):
        names = set()
        for p in S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]:
            props = S.bus.get_all_properties(p, SNAPSHOT_IFACE)
            names.update(d[2] for d in props["Disks"] if d[2])
        return names

    def orphan_nodes(self):
        used = set(f for c in self.chains().values() for f in c)
        return [n["node-name"] for n in S.guest.qmp("query-named-block-nodes", flat=True)
                if n["node-name"].startswith("sd") and n["file"] not in used]

    def restart(self, failpoint=None):
        S.bus.stop_daemon()
        S.bus.start_daemon(S.config_dir, S.state_dir, failpoint=failpoint and failpoint + ":abort")
        wait_until(lambda: S.bus.get_property(S.dom, DOMAIN_IFACE, "State") in ("running", "paused"), 20,
                   "connected")

    def kill_during(self, failpoint, path, method, signature, args):
        self.restart(failpoint)
        with self.assertRaises(BusError) as cm:
            S.bus.call(path, SNAPSHOT_IFACE, method, signature, args, timeout=120)
        self.assertEqual(cm.exception.name, "org.freedesktop.DBus.Error.NoReply", cm.exception.message)
        wait_until(lambda: S.bus.daemon.poll() is not None, 10, "daemon died")
        self.assertEqual(S.bus.daemon.returncode, -9)
        self.assertTrue(os.path.exists(self.journal), "the dead job left a journal")
        self.restart()
        wait_until(lambda: S.bus.get_property(S.dom, DOMAIN_IFACE, "Job") == "" and not os.path.exists(self.journal),
                   60, "recovery")
        wait_until(lambda: S.guest.status() == "running", 10, "guest running")
        self.assertEqual(S.guest.agent("guest-fsfreeze-status"), "thawed")
        self.assertEqual(self.orphan_nodes(), [])
        self.assertEqual([j for j in S.guest.qmp("query-jobs")], [])

    def check_deleted(self, gone, child, overlays, base_of):
        """gone is deleted: its overlays and nodes are gone, child stands where it stood."""
        self.assertIsNone(self.lookup(gone))
        for f in overlays.values():
            self.assertFalse(os.path.exists(f), f)
        for target, files in self.chains().items():
            for f in overlays.values():
                self.assertNotIn(f, files)
        if child:
            disks = {d[0]: d for d in self.props(child)["Disks"]}
            self.assertEqual(set(disks), set(base_of))
        # no file in the image dir that no record names and no chain uses
        used = set(f for c in self.chains().values() for f in c) | self.recorded_files()
        left = set(os.path.join(S.images, f) for f in os.listdir(S.images)) - used
        self.assertEqual(left, set())

    def overlays_of(self, name):
        return {d[0]: d[2] for d in self.props(name)["Disks"] if d[2]}

    def test_01_kill_delete_middle(self):
        for n, step in enumerate(DELETE_MIDDLE_STEPS):
            with self.subTest(step=step):
                mid, top = "mid-%d" % n, "top-%d" % n
                self.create(mid)
                self.create(top)
                tree = self.tree()
                overlays = self.overlays_of(mid)
                chains = self.chains()
                self.kill_during(step, self.lookup(mid), "Delete", "t", (0,))
                want = {k: (tree[mid] if p == mid else p) for k, p in tree.items() if k != mid}
                self.assertEqual(self.tree(), want)
                self.check_deleted(mid, top, overlays, chains)
                # the child's recorded base is now the image mid's overlay was merged into
                for target, files in chains.items():
                    if overlays.get(target) in files:
                        i = files.index(overlays[target])
                        self.assertEqual(self.chains()[target][i:], files[i + 1:])

    def test_02_kill_delete_current_leaf(self):
        for n, step in enumerate(DELETE_LEAF_STEPS):
            with self.subTest(step=step):
                leaf = "leaf-%d" % n
                self.create(leaf)
                tree = self.tree()
                overlays = self.overlays_of(leaf)
                chains = self.chains()
                self.kill_during(step, self.lookup(leaf), "Delete", "t", (0,))
                want = {k: p for k, p in tree.items() if k != leaf}
                self.assertEqual(self.tree(), want)
                self.check_deleted(leaf, None, overlays, chains)
                for target, files in chains.items():
                    if overlays.get(target) == files[0]:
                        self.assertEqual(self.chains()[target], files[1:])

    def test_03_kill_internal_revert(self):
        # internal snapshots live in the top images: start from a chain whose top is ours
        self.create("rev-base")
        snap = self.create("rev-int", {"memory": v("s", "internal")})
        for n, step in enumerate(REVERT_STEPS):
            with self.subTest(step=step):
                self.create("rev-after-%d" % n, {"memory": v("s", "internal")})
                current = S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot")
                tree = self.tree()
                self.kill_during(step, snap, "Revert", "t", (0,))
                self.assertEqual(self.tree(), tree)
                want = current if step == "revert-load" else snap
                self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), want)
                self.assertEqual(S.guest.status(), "running")

    def test_04_domain_still_works(self):
        path = self.create("after")
        self.assertTrue(S.bus.get_property(path, SNAPSHOT_IFACE, "IsCurrent"))
        S.bus.call(path, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=120)
        self.assertIsNone(self.lookup("after"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
