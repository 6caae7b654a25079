#!/usr/bin/python3
# Files the caller names (DESIGN.md rule 9): every attempt to make the root daemon write,
# truncate or reuse something outside the domain's image directory, or something in it
# that is not a plain file of ours, is refused with InvalidArgument; the target is
# untouched, nothing is created, no metadata is kept, the guest runs on, and the daemon
# keeps serving. One guest, bus and daemon serve the whole file.

import hashlib
import os
import shutil
import sys
import tempfile
import time
import unittest

import snaptest
from snaptest import DOMAIN_IFACE, MANAGER_IFACE, MANAGER_PATH, ERROR_PREFIX, Bus, BusError, Guest

INVALID = ERROR_PREFIX + "InvalidArgument"
FAILED = ERROR_PREFIX + "Failed"
# Refused safely but late (when the overlay is created, after validation), with Failed
# instead of rule 9's InvalidArgument: see test_late_refusals_are_invalid_argument.
LATE = (INVALID, FAILED)
REUSE_EXT = 32
DISK_ONLY = 16


class S:
    tmp = guest = bus = None
    images = outside = state_dir = config_dir = None
    domain = None
    failed = False


def v(sig, value):
    from gi.repository import GLib
    return GLib.Variant(sig, value)


def setUpModule():
    S.tmp = tempfile.mkdtemp(prefix="snapp-", dir="/tmp")
    S.guest = Guest(os.path.join(S.tmp, "g"))
    S.guest.start()
    S.guest.wait_ready()
    S.bus = Bus(os.path.join(S.tmp, "bus"))
    os.makedirs(S.bus.tmpdir)
    S.bus.start()
    S.config_dir = os.path.join(S.tmp, "conf")
    S.state_dir = os.path.join(S.tmp, "state")
    S.images = os.path.join(S.tmp, "images")
    S.outside = os.path.join(S.tmp, "outside")
    os.makedirs(S.images)
    os.makedirs(S.outside)
    S.guest.domain_config(S.config_dir, "vm1", images_dir=S.images)
    S.bus.start_daemon(S.config_dir, S.state_dir)
    S.domain = S.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm1",))[0]
    deadline = time.monotonic() + 30
    while S.bus.get_property(S.domain, DOMAIN_IFACE, "State") != "running":
        if time.monotonic() > deadline:
            raise TimeoutError("domain vm1 did not come up")
        time.sleep(0.1)


def tearDownModule():
    rc = None
    log = ""
    if S.bus:
        rc = S.bus.stop_daemon()
        log = S.bus.read_daemon_log()
        S.bus.stop()
    if S.guest:
        S.guest.stop()
    if S.failed or os.environ.get("SNAPSHOTD_TEST_KEEP") == "1":
        sys.stderr.write("kept %s\n" % S.tmp)
    else:
        shutil.rmtree(S.tmp, ignore_errors=True)
    if rc not in (None, 0):
        raise AssertionError("snapshotd exited with %s at the end; its log:\n%s" % (rc, log[-20000:]))


def fingerprint(path):
    """What must not change about a file: its bytes, mode, owner, times, inode."""
    st = os.stat(path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    return (digest, st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ino)


class PathTest(unittest.TestCase):
    maxDiff = None

    def tearDown(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result and any(t is self for t, _ in result.errors + result.failures):
            S.failed = True
            sys.stderr.write("\n===== snapshotd log =====\n%s\n" % S.bus.read_daemon_log()[-20000:])
        # Whatever a test put into the image dir goes, so each starts from an empty one.
        for n in os.listdir(S.images):
            p = os.path.join(S.images, n)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)

    def world(self):
        files = []
        for top in (S.images, S.outside, S.state_dir):
            for root, dirs, names in os.walk(top):
                for n in dirs + names:
                    p = os.path.join(root, n)
                    files.append((os.path.relpath(p, S.tmp), os.lstat(p).st_mode))
        return {"files": sorted(files),
                "snapshots": S.bus.call(S.domain, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0],
                "nodes": sorted(n["node-name"] for n in S.guest.block_graph()),
                "status": S.guest.status(),
                "passwd": fingerprint("/etc/passwd")}

    def refused(self, name, options, error=INVALID, watch=()):
        """CreateSnapshot(name, options) must fail with error and change nothing."""
        before = self.world()
        marks = {p: fingerprint(p) for p in watch}
        with self.assertRaises(BusError) as cm:
            S.bus.call(S.domain, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", options), timeout=120)
        if isinstance(error, tuple):
            self.assertIn(cm.exception.name, error, cm.exception.message)
        else:
            self.assertEqual(cm.exception.name, error, cm.exception.message)
        self.assertEqual(self.world(), before)
        for p, fp in marks.items():
            self.assertEqual(fingerprint(p), fp, p)
        # and the daemon still serves
        self.assertEqual(S.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm1",))[0], S.domain)
        return cm.exception.message

    @staticmethod
    def disk(file, target="vda", reuse=False, memory=None):
        o = {"disk-only": v("b", True),
             "disks": v("a(sss)", [(target, "external", file), ("vdb", "no", "")])}
        if reuse:
            o["reuse-external"] = v("b", True)
        return o

    # names
    def test_names(self):
        for name in ("../evil", "a/b", "..", ".hidden", "x\x01y", "n" * 256):
            with self.subTest(name=name):
                self.refused(name, {"disk-only": v("b", True)})

    def test_names_xml(self):
        before = self.world()
        for name in ("../evil", "a/b", ".hidden"):
            with self.subTest(name=name):
                xml = "<domainsnapshot><name>%s</name></domainsnapshot>" % name
                with self.assertRaises(BusError) as cm:
                    S.bus.call(S.domain, DOMAIN_IFACE, "CreateSnapshotXML", "st", (xml, DISK_ONLY), timeout=60)
                self.assertEqual(cm.exception.name, INVALID, cm.exception.message)
        self.assertEqual(self.world(), before)

    # overlay and memory file options
    def test_dotdot_in_file(self):
        for spec in ("../outside/x.qcow2", "sub/../../outside/x.qcow2", "./x.qcow2/..",
                     S.images + "/../outside/x.qcow2"):
            with self.subTest(file=spec):
                self.refused("p1", self.disk(spec))
        self.assertEqual(os.listdir(S.outside), [])

    def test_absolute_outside(self):
        for spec in (os.path.join(S.outside, "x.qcow2"), "/etc/snapshotd-evil.qcow2", "/etc/passwd",
                     S.images + "-sibling/x.qcow2", S.images):
            with self.subTest(file=spec):
                self.refused("p2", self.disk(spec), watch=["/etc/passwd"])
        self.assertFalse(os.path.exists("/etc/snapshotd-evil.qcow2"))
        self.assertFalse(os.path.exists(S.images + "-sibling"))

    def test_memory_file_outside(self):
        for spec in ("../outside/m.mem", os.path.join(S.outside, "m.mem"), "/etc/passwd"):
            with self.subTest(memory_file=spec):
                self.refused("p3", {"memory": v("s", "external"), "memory-file": v("s", spec)},
                             watch=["/etc/passwd"])
        self.assertEqual(os.listdir(S.outside), [])

    # what lies in the image dir
    def test_symlink_to_passwd(self):
        os.symlink("/etc/passwd", os.path.join(S.images, "link.qcow2"))
        for reuse in (False, True):
            with self.subTest(reuse_external=reuse):
                self.refused("p4", self.disk("link.qcow2", reuse=reuse), watch=["/etc/passwd"])
        os.symlink("/etc/passwd", os.path.join(S.images, "link.mem"))
        self.refused("p4", {"memory": v("s", "external"), "memory-file": v("s", "link.mem")},
                     watch=["/etc/passwd"])

    def test_dangling_symlink(self):
        # The link's target does not exist yet: creating "through" it would make a file outside.
        target = os.path.join(S.outside, "made-through-link.qcow2")
        os.symlink(target, os.path.join(S.images, "dangling.qcow2"))
        for reuse in (False, True):
            with self.subTest(reuse_external=reuse):
                self.refused("p5", self.disk("dangling.qcow2", reuse=reuse), error=INVALID if reuse else LATE)
        self.assertFalse(os.path.lexists(target))

    def test_symlinked_directory(self):
        # A directory component that is a symlink: RESOLVE_NO_SYMLINKS covers every component.
        os.symlink(S.outside, os.path.join(S.images, "sub"))
        with open(os.path.join(S.outside, "existing.qcow2"), "wb") as f:
            f.write(b"not an image")
        for spec, reuse in (("sub/new.qcow2", False), ("sub/existing.qcow2", True)):
            with self.subTest(file=spec, reuse_external=reuse):
                self.refused("p6", self.disk(spec, reuse=reuse), error=INVALID if reuse else LATE,
                             watch=[os.path.join(S.outside, "existing.qcow2")])
        self.assertEqual(sorted(os.listdir(S.outside)), ["existing.qcow2"])
        os.unlink(os.path.join(S.outside, "existing.qcow2"))

    def test_late_refusals_are_invalid_argument(self):
        # Without reuse-external, validation checks "already exists" with access(), which
        # follows symlinks: a dangling link or a symlinked directory passes it, and the
        # O_EXCL|O_NOFOLLOW/RESOLVE_NO_SYMLINKS create refuses later with Failed. Safe (the
        # tests above check nothing is touched), but rule 9 says InvalidArgument, before
        # anything runs. Drop the decorator when job-create.c refuses these in validation.
        os.symlink(os.path.join(S.outside, "nope.qcow2"), os.path.join(S.images, "dangling.qcow2"))
        os.symlink(S.outside, os.path.join(S.images, "sub"))
        for spec in ("dangling.qcow2", "sub/new.qcow2"):
            with self.subTest(file=spec):
                self.refused("p10", self.disk(spec))

    def test_fifo(self):
        os.mkfifo(os.path.join(S.images, "fifo.qcow2"))
        for reuse in (False, True):
            with self.subTest(reuse_external=reuse):
                self.refused("p7", self.disk("fifo.qcow2", reuse=reuse))

    def test_directory(self):
        os.mkdir(os.path.join(S.images, "dir.qcow2"))
        self.refused("p8", self.disk("dir.qcow2", reuse=True))

    def test_other_owner(self):
        p = os.path.join(S.images, "foreign.qcow2")
        subprocess_ok = shutil.which("qemu-img")
        snaptest.require(subprocess_ok, "qemu-img is missing")
        import subprocess
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", p, "64M"], check=True)
        os.chown(p, 4242, 4242)
        self.refused("p9", self.disk("foreign.qcow2", reuse=True), watch=[p])
        self.assertEqual(os.stat(p).st_uid, 4242)


if __name__ == "__main__":
    unittest.main(verbosity=2)
