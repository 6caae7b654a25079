#!/usr/bin/python3
# One whole life cycle on one guest: disk-only, internal and live memory snapshots are
# created, listed, read, reverted to and deleted with their data, and the daemon stopped.
# The sanitize suite runs it with the daemon under valgrind: any error or definite leak
# makes the daemon exit non-zero, which stopping it checks.

import os
import unittest

import snaptest
from snaptest import DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH, SNAPSHOT_IFACE

v = snaptest.variant
S = snaptest.SharedDomain("snapcy-", dirty_mb=0)


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class CycleTest(snaptest.SharedTestCase):
    shared = S

    def create(self, name, opts):
        return S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), timeout=300)[0]

    def test_cycle(self):
        # internal first: QEMU keeps it in the images the guest writes to, not below an overlay
        internal = self.create("c-int", {"memory": v("s", "internal")})
        S.bus.call(internal, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=300)
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), internal)
        self.assertEqual(S.guest.status(), "running")

        disk = self.create("c-disk", {"disk-only": v("b", True), "atomic": v("b", True), "quiesce": v("b", True)})
        live = self.create("c-live", {"live": v("b", True), "memory": v("s", "external")})
        mem = S.bus.get_property(live, SNAPSHOT_IFACE, "MemoryFile")
        self.assertTrue(os.path.exists(mem))

        self.assertEqual(S.bus.call(MANAGER_PATH, MANAGER_IFACE, "ListDomains", "", ())[0], [S.dom])
        self.assertEqual(S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0], [internal, disk, live])
        self.assertIn("<name>c-live</name>", S.bus.call(live, SNAPSHOT_IFACE, "GetXMLDesc", "t", (0,))[0])
        S.bus.get_all_properties(live, SNAPSHOT_IFACE)

        # newest first: each delete merges an overlay down; the internal one is last
        for p in (live, disk, internal):
            S.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=300)
        self.assertEqual(S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0], [])
        self.assertFalse(os.path.exists(mem))
        self.assertEqual(os.listdir(S.images), [])
        self.assertEqual(S.guest.status(), "running")
        # stopping checks the exit status: under valgrind, non-zero on any error or leak
        self.assertEqual(S.bus.stop_daemon(), 0, S.bus.read_daemon_log()[-5000:])
        S.bus.start_daemon(S.config_dir, S.state_dir)


if __name__ == "__main__":
    unittest.main(verbosity=2)
