#!/usr/bin/python3
# Reverting, proven from inside the guest: a marker file on disk and a counter the guest
# keeps only in RAM must come back to their values at snapshot time.

import time
import unittest

import snaptest
from snaptest import (DOMAIN_IFACE, MANAGER_IFACE, SNAPSHOT_IFACE, ERROR_PREFIX, BusError)

RUNNING, PAUSED = 1, 2


v = snaptest.variant
wait_until = snaptest.wait_until
S = snaptest.SharedDomain("snapr-", dirty_mb=0)


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class RevertTest(snaptest.SharedTestCase):
    shared = S

    def create(self, name, opts):
        return S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), timeout=120)[0]

    def marker(self, text=None):
        if text is not None:
            code, _, err = S.guest.guest_exec(["/bin/sh", "-c", "echo %s > /data1/marker; sync" % text])
            self.assertEqual(code, 0, err)
        return S.guest.guest_read("/data1/marker").strip()

    def counter(self):
        return int(S.guest.guest_read("/mem/counter").strip())

    def test_01_internal_revert_restores_disk_and_ram(self):
        S.bus.subscribe(iface=MANAGER_IFACE, member="SnapshotReverted")
        self.marker("before")
        c0 = self.counter()
        path = self.create("int1", {"memory": v("s", "internal")})
        c1 = self.counter()
        time.sleep(2)
        self.marker("after")
        c2 = self.counter()
        self.assertGreater(c2, c1)
        self.create("int2", {"memory": v("s", "internal")})

        S.bus.call(path, SNAPSHOT_IFACE, "Revert", "t", (0,), timeout=120)
        self.assertEqual(S.guest.status(), "running")
        self.assertEqual(self.marker(), "before")
        c3 = self.counter()
        # RAM came back: the counter restarts from its value at snapshot time
        self.assertGreaterEqual(c3, c0)
        self.assertLess(c3, c2)
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "CurrentSnapshot"), path)
        S.bus.wait_for("SnapshotReverted", lambda s: s["args"] == (S.dom, path), timeout=5)
        # nothing the revert replaced is deleted: int2 is still there and revertable
        int2 = S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("int2",))[0]
        S.bus.call(int2, SNAPSHOT_IFACE, "Revert", "t", (PAUSED,), timeout=120)
        self.assertEqual(S.guest.status(), "paused")
        S.bus.call(int2, SNAPSHOT_IFACE, "Revert", "t", (RUNNING,), timeout=120)
        self.assertEqual(S.guest.status(), "running")
        self.assertEqual(self.marker(), "after")

    def test_02_refusals(self):
        ext = self.create("ext1", {"disk-only": v("b", True)})
        with self.assertRaises(BusError) as cm:
            S.bus.call(ext, SNAPSHOT_IFACE, "Revert", "t", (0,))
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationUnsupported")
        self.assertIn("attached", cm.exception.message)
        with self.assertRaises(BusError) as cm:
            S.bus.call(ext, SNAPSHOT_IFACE, "Revert", "t", (RUNNING | PAUSED,))
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "OperationUnsupported")
        with self.assertRaises(BusError) as cm:
            S.bus.call(ext, SNAPSHOT_IFACE, "Revert", "t", (8,))
        self.assertEqual(cm.exception.name, "org.freedesktop.DBus.Error.InvalidArgs")
        self.assertEqual(S.guest.status(), "running")


if __name__ == "__main__":
    unittest.main(verbosity=2)
