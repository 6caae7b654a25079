#!/usr/bin/python3
# snapshotd killed (SIGKILL, through a failpoint) at every step of a create — disk-only
# atomic quiesced, live memory, paused memory — then started again. Each time: the guest
# runs, its file systems are thawed, QEMU's migration settings are as before, no file or
# block node the dead job created is left unless the snapshot was finished, and the metadata
# is exactly as before (or, when the disks had already switched over, holds the finished
# snapshot). The domain takes the next snapshot normally.

import os
import unittest

import snaptest
from snaptest import (DOMAIN_IFACE, SNAPSHOT_IFACE, BusError)

CASES = {
    "disk-only": ({"disk-only": True, "atomic": True, "quiesce": True},
                  ["prepare", "freeze", "snapshot", "thaw", "resume", "sync", "restore", "metadata"]),
    "live": ({"live": True, "memory": "external"},
             ["prepare", "memory", "snapshot", "memory-finish", "resume", "sync", "restore", "metadata"]),
    "paused": ({"memory": "external"},
               ["prepare", "pause", "memory", "snapshot", "memory-finish", "resume", "sync", "restore", "metadata"]),
}
# from this step on the disks had switched over: the snapshot is finished by recovery
COMMITTED_FROM = {"thaw", "memory-finish", "resume", "sync", "restore", "metadata"}
# and from this one the memory image was complete too
MEMORY_WHOLE_FROM = {"restore", "metadata"}


v = snaptest.variant
wait_until = snaptest.wait_until
S = snaptest.SharedDomain("snapk-", dirty_mb=8)


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class CrashTest(snaptest.SharedTestCase):
    shared = S
    maxDiff = None


    def meta(self):
        d = os.path.join(S.state_dir, "snapshots", "vm1")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def snapshot_files(self):
        """Every file the daemon's records name, which may stay."""
        names = set()
        for p in S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]:
            props = S.bus.get_all_properties(p, SNAPSHOT_IFACE)
            names.update(d[2] for d in props["Disks"] if d[2])
            if props["MemoryFile"]:
                names.add(props["MemoryFile"])
        return names

    def migration_settings(self):
        p = S.guest.qmp("query-migrate-parameters")
        caps = {c["capability"]: c["state"] for c in S.guest.qmp("query-migrate-capabilities")}
        return (p["max-bandwidth"], p["downtime-limit"], caps["events"], caps["pause-before-switchover"],
                caps["auto-converge"])

    def orphan_nodes(self):
        """Our nodes (sd...) that no device's chain uses."""
        used = set()
        for d in S.guest.qmp("query-block"):
            img = d.get("inserted", {}).get("image")
            while img:
                used.add(img["filename"])
                img = img.get("backing-image")
        return [n["node-name"] for n in S.guest.qmp("query-named-block-nodes", flat=True)
                if n["node-name"].startswith("sd") and n["file"] not in used]

    def restart(self, failpoint=None):
        S.bus.stop_daemon()
        S.bus.start_daemon(S.config_dir, S.state_dir, failpoint=failpoint)

    def run_case(self, kind, step, n):
        opts, _ = CASES[kind]
        o = {k: v("b", x) if isinstance(x, bool) else v("s", x) for k, x in opts.items()}
        name = "%s-%s-%d" % (kind, step, n)
        meta_before = self.meta()
        files_before = set(os.listdir(S.images))
        settings = self.migration_settings()

        self.restart("create-%s:abort" % step)
        wait_until(lambda: S.bus.get_property(S.dom, DOMAIN_IFACE, "State") == "running", 20, "connected")
        with self.assertRaises(BusError) as cm:
            S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", o), timeout=120)
        # the daemon died mid-call: the bus answers for it
        self.assertEqual(cm.exception.name, "org.freedesktop.DBus.Error.NoReply", cm.exception.message)
        wait_until(lambda: S.bus.daemon.poll() is not None, 10, "daemon died")
        self.assertEqual(S.bus.daemon.returncode, -9)
        journal = os.path.join(S.state_dir, "journal", "vm1.json")
        self.assertTrue(os.path.exists(journal), "the dead job left a journal")

        self.restart()
        wait_until(lambda: S.bus.get_property(S.dom, DOMAIN_IFACE, "State") == "running" and
                   S.bus.get_property(S.dom, DOMAIN_IFACE, "Job") == "" and not os.path.exists(journal),
                   30, "recovery")
        wait_until(lambda: S.guest.status() == "running", 10, "guest running")
        self.assertEqual(S.guest.agent("guest-fsfreeze-status"), "thawed")
        self.assertEqual(self.migration_settings(), settings)
        self.assertEqual(self.orphan_nodes(), [])

        finished = step in COMMITTED_FROM
        if finished:
            self.assertEqual(self.meta(), sorted(meta_before + [name + ".xml"]))
            p = S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", (name,))[0]
            self.assertTrue(S.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))
            if kind != "disk-only":
                want = "external" if step in MEMORY_WHOLE_FROM else "no"
                self.assertEqual(S.bus.get_property(p, SNAPSHOT_IFACE, "Memory"), want)
        else:
            self.assertEqual(self.meta(), meta_before)
        # every file left is one a snapshot record names, or was there before
        left = set(os.path.join(S.images, f) for f in set(os.listdir(S.images)) - files_before)
        self.assertEqual(left - self.snapshot_files(), set())

    def test_kill_at_every_step(self):
        n = 0
        for kind, (_, steps) in CASES.items():
            for step in steps:
                n += 1
                with self.subTest(kind=kind, step=step):
                    self.run_case(kind, step, n)
        # and the domain works as before
        path = S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}",
                          ("after", "", {"disk-only": v("b", True), "atomic": v("b", True)}), timeout=120)[0]
        self.assertTrue(S.bus.get_property(path, SNAPSHOT_IFACE, "IsCurrent"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
