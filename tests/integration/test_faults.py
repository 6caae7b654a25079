#!/usr/bin/python3
# Faults from outside snapshotd, on a real guest:
#  - QEMU dies in the middle of the disk transaction: the daemon reaches QEMU through a
#    proxy on its QMP socket, which kills QEMU (SIGKILL) the moment the `transaction` command
#    passes; the call fails with Failed, and once QEMU is back nothing of the snapshot is
#    left: no record, no overlay file, no journal; the domain takes the next snapshot;
#  - the image file system fills up in the middle of a live memory save: the call fails,
#    the partial image and the overlays are gone, the guest runs on its old disks;
#  - QEMU loses an AbortJob's cancel (QEMU 7.2's migration_maybe_pause race, which left a
#    soak run's guest stopped in finish-migrate for good): the save hangs in "cancelling"
#    with the guest stopped. Real QEMU hits it only by chance, so the proxy stages it on a
#    real save that is paused at switchover: it hides the pause from snapshotd, swallows
#    the migrate_cancel and reports "cancelling" from then on, until snapshotd's
#    `migrate-continue state=cancelling` (the wake-up that frees the stuck thread), which
#    it hands to QEMU as the cancel QEMU never got. The abort must end promptly with the
#    guest running and nothing left behind; and when snapshotd is killed while the save is
#    stuck, the restarted one's recovery must free it the same way;
#  - QEMU refuses to open an overlay while a live save copies RAM (a live save opens its
#    overlays only then): the save is cancelled, the nodes, files and settings go back;
#  - the state dir's disk is slow (a write takes 1.5 s) or fails: the daemon keeps answering
#    while the job's journal and record are written (worker threads), and a journal that
#    cannot be written fails the job before anything changes.

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import snaptest
from snaptest import (DOMAIN_IFACE, MANAGER_PATH, MANAGER_IFACE, SNAPSHOT_IFACE, ERROR_PREFIX, Bus, BusError, Guest)

v = snaptest.variant
wait_until = snaptest.wait_until


class QmpProxy:
    """Forwards QMP between snapshotd and QEMU; kills QEMU when a command matching
    `trigger` goes by (before QEMU sees it). With `filter` set, it works message by message:
    filter(to_qemu, msg) returns the messages to send instead, as (to_qemu, msg) pairs."""

    def __init__(self, path, target):
        self.path, self.target = path, target
        self.trigger = None
        self.on_trigger = None
        self.filter = None
        self.fired = threading.Event()
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                u.connect(self.target)
            except OSError:
                c.close()
                u.close()
                continue
            conn = {True: u, False: c, "lock": threading.Lock()}
            threading.Thread(target=self.pump, args=(c, u, True, conn), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, False, conn), daemon=True).start()

    def pump(self, src, dst, to_qemu, conn):
        buf = b""
        try:
            while True:
                # getfd passes the memory image's fd along with the command: forward it too
                data, fds, _, _ = socket.recv_fds(src, 65536, 8)
                if not data:
                    break
                if to_qemu and self.trigger and self.trigger in data:
                    self.trigger = None
                    self.on_trigger()
                    self.fired.set()
                    break
                if self.filter and not fds:
                    buf += data
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if line.strip():
                            for where, msg in self.filter(to_qemu, json.loads(line)):
                                with conn["lock"]:
                                    conn[where].sendall(json.dumps(msg).encode() + b"\r\n")
                    continue
                if fds:
                    socket.send_fds(dst, [data], fds)
                    for fd in fds:
                        os.close(fd)
                else:
                    with conn["lock"]:
                        dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if not to_qemu:
            src.close()
            dst.close()

    def close(self):
        self.srv.close()


class LostCancel:
    """Stages QEMU's lost cancel on a real save (see the top of this file)."""

    def __init__(self):
        self.paused = threading.Event()     # QEMU is at switchover; snapshotd was not told
        self.woken = threading.Event()      # snapshotd sent the wake-up
        self.stuck = False
        self.queries = set()

    def __call__(self, to_qemu, msg):
        if not to_qemu:
            if msg.get("event") == "MIGRATION" and msg["data"].get("status") == "pre-switchover" \
                    and not self.woken.is_set():
                self.paused.set()
                return []
            if self.stuck and msg.get("id") in self.queries and isinstance(msg.get("return"), dict):
                msg["return"]["status"] = "cancelling"
            return [(False, msg)]
        cmd = msg.get("execute")
        if cmd == "migrate_cancel" and self.paused.is_set() and not self.woken.is_set():
            self.stuck = True
            now = time.time()
            return [(False, {"return": {}, "id": msg.get("id")}),
                    (False, {"event": "MIGRATION", "data": {"status": "cancelling"},
                             "timestamp": {"seconds": int(now), "microseconds": int(now % 1 * 1e6)}})]
        if self.stuck and cmd == "query-migrate":
            self.queries.add(msg.get("id"))
        if self.stuck and cmd == "migrate-continue" and msg.get("arguments", {}).get("state") == "cancelling":
            self.stuck = False
            self.woken.set()
            return [(True, {"execute": "migrate_cancel", "id": msg.get("id")})]
        return [(True, msg)]


class FaultsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="snapf-", dir="/tmp")
        cls.conf = os.path.join(cls.tmp, "conf")
        cls.state = os.path.join(cls.tmp, "state")
        cls.images = os.path.join(cls.tmp, "img")
        os.makedirs(cls.images)
        cls.bus = Bus(os.path.join(cls.tmp, "bus"))
        os.makedirs(cls.bus.tmpdir)
        cls.bus.start()
        cls.guest = None
        cls.start_guest()
        cls.proxy = QmpProxy(os.path.join(cls.tmp, "proxy.sock"), cls.guest.qmp_sock)
        snaptest.write_domain_config(cls.conf, "vm1", cls.proxy.path, cls.guest.qga_sock, cls.images)
        cls.bus.start_daemon(cls.conf, cls.state)
        cls.dom = cls.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm1",))[0]
        wait_until(lambda: cls.bus.get_property(cls.dom, DOMAIN_IFACE, "State") == "running", 30, "running")

    @classmethod
    def start_guest(cls, dirty_mb=4):
        if cls.guest:
            cls.guest.stop()
        cls.guest = Guest(os.path.join(cls.tmp, "g"), dirty_mb=dirty_mb)
        cls.guest.start()
        cls.guest.wait_ready()

    @classmethod
    def tearDownClass(cls):
        rc = cls.bus.stop_daemon()
        log = cls.bus.read_daemon_log()
        cls.bus.stop()
        cls.proxy.close()
        if cls.guest:
            cls.guest.stop()
        subprocess.run(["umount", "-q", cls.images])
        if rc not in (None, 0):
            raise AssertionError("snapshotd exited with %s; its log:\n%s" % (rc, log[-20000:]))
        if os.environ.get("SNAPSHOTD_TEST_KEEP") != "1":
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def meta(self):
        d = os.path.join(self.state, "snapshots", "vm1")
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def journal(self):
        return os.path.exists(os.path.join(self.state, "journal", "vm1.json"))

    def create(self, name, opts):
        return self.bus.call(self.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}", (name, "", opts), timeout=300)[0]

    @staticmethod
    def refusing(refuse, sent, desc):
        """A proxy filter that notes each command sent to QEMU in sent and answers it itself
        with a GenericError desc where refuse(msg, sent) says, instead of passing it on."""
        def flt(to_qemu, msg):
            if to_qemu and msg.get("execute"):
                sent.append(msg["execute"])
                if refuse(msg, sent):
                    return [(False, {"error": {"class": "GenericError", "desc": desc}, "id": msg.get("id")})]
            return [(to_qemu, msg)]
        return flt

    def test_01_qemu_killed_in_the_transaction(self):
        meta, files = self.meta(), sorted(os.listdir(self.images))
        self.proxy.trigger = b'"transaction"'
        self.proxy.on_trigger = self.guest.kill
        with self.assertRaises(BusError) as cm:
            self.create("mid-tx", {"disk-only": v("b", True), "atomic": v("b", True)})
        self.assertTrue(self.proxy.fired.is_set())
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed", cm.exception.message)
        self.assertEqual(self.meta(), meta)
        # QEMU back (a new process on the same disks): whatever the job left is tidied
        self.start_guest()
        wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "State") == "running", 30, "reconnect")
        wait_until(lambda: not self.journal() and self.bus.get_property(self.dom, DOMAIN_IFACE, "Job") == "", 30,
                   "recovery")
        self.assertEqual(self.meta(), meta)
        self.assertEqual(sorted(os.listdir(self.images)), files)
        p = self.create("after-tx", {"disk-only": v("b", True), "atomic": v("b", True)})
        self.assertTrue(self.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))
        self.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=120)

    def test_02_image_fs_fills_mid_save(self):
        for f in os.listdir(self.images):
            os.unlink(os.path.join(self.images, f))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", self.images], check=True)
        meta = self.meta()
        out = []

        def save():
            try:
                out.append(self.create("fills", {"live": v("b", True), "memory": v("s", "external")}))
            except BusError as e:
                out.append(e)

        t = threading.Thread(target=save)
        t.start()
        # Once QEMU writes the image, slow it down (on the test's own monitor) so the fill
        # surely lands mid-save, then take every free block.
        deadline = time.monotonic() + 60
        while not out and time.monotonic() < deadline:
            if self.guest.qmp("query-migrate").get("status") == "active":
                self.guest.qmp("migrate-set-parameters", **{"max-bandwidth": 8 << 20})
                break
        self.assertFalse(out, "the save ended before it could be slowed down: %s" % out)
        # every free block, even as QEMU keeps writing: until the file system says ENOSPC
        with open(os.path.join(self.images, "filler"), "wb") as f:
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError as e:
                self.assertEqual(e.errno, errno.ENOSPC)
        t.join(300)
        os.unlink(os.path.join(self.images, "filler"))
        self.assertIsInstance(out[0], BusError, "the save finished before the file system filled")
        self.assertEqual(out[0].name, ERROR_PREFIX + "NoSpace", out[0].message)
        self.assertIn("is full", out[0].message)
        sys.stderr.write("\nthe save failed with %s: %s\n" % (out[0].name, out[0].message))
        self.assertEqual(os.listdir(self.images), [])
        self.assertEqual(self.meta(), meta)
        self.assertFalse(self.journal())
        self.assertEqual(self.guest.status(), "running")
        # and the next save, with room, works
        p = self.create("fits", {"disk-only": v("b", True)})
        self.assertTrue(self.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))

    def test_03_cancel_lost_in_qemu(self):
        meta, files = self.meta(), sorted(os.listdir(self.images))
        lost = LostCancel()
        self.proxy.filter = lost
        out = []

        def save():
            try:
                out.append(self.create("lost-cancel", {"live": v("b", True), "memory": v("s", "external")}))
            except BusError as e:
                out.append(e)

        t = threading.Thread(target=save)
        try:
            t.start()
            self.assertTrue(lost.paused.wait(120), "the save never reached switchover")
            self.assertEqual(self.guest.status(), "finish-migrate")
            t0 = time.monotonic()
            self.bus.call(self.dom, DOMAIN_IFACE, "AbortJob")
            t.join(120)
            took = time.monotonic() - t0
        finally:
            self.proxy.filter = None
        self.assertTrue(lost.woken.is_set(), "snapshotd never woke the stuck save")
        self.assertIsInstance(out[0], BusError, "the save was not aborted")
        self.assertEqual(out[0].name, ERROR_PREFIX + "Aborted", out[0].message)
        sys.stderr.write("\nthe lost cancel ended in %.2f s\n" % took)
        # Before the wake-up, the call took 40 s and left the guest stopped for good.
        self.assertLess(took, 8, "the abort waited out a timeout")
        wait_until(lambda: self.guest.status() == "running", 10, "guest running")
        self.assertEqual(self.guest.qmp("query-migrate").get("status"), "cancelled")
        caps = {c["capability"]: c["state"] for c in self.guest.qmp("query-migrate-capabilities")}
        self.assertFalse(caps["pause-before-switchover"])
        self.assertEqual(sorted(os.listdir(self.images)), files)
        self.assertEqual(self.meta(), meta)
        self.assertFalse(self.journal())
        self.assertIn("was stuck in QEMU", self.bus.read_daemon_log())
        # and the next save goes through
        p = self.create("after-lost-cancel", {"live": v("b", True), "memory": v("s", "external")})
        self.assertTrue(self.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))
        self.assertEqual(self.guest.status(), "running")

    def test_04_cancel_lost_then_daemon_killed(self):
        meta, files = self.meta(), sorted(os.listdir(self.images))
        lost = LostCancel()
        self.proxy.filter = lost
        out = []

        def save():
            try:
                out.append(self.create("lost-kill", {"live": v("b", True), "memory": v("s", "external")}))
            except BusError as e:
                out.append(e)

        t = threading.Thread(target=save)
        try:
            t.start()
            self.assertTrue(lost.paused.wait(120), "the save never reached switchover")
            self.bus.call(self.dom, DOMAIN_IFACE, "AbortJob")
            wait_until(lambda: lost.stuck, 10, "the cancel swallowed")
            self.bus.daemon.kill()
            self.bus.daemon.wait()
            t.join(60)
            self.assertEqual(self.guest.status(), "finish-migrate")
            self.assertTrue(self.journal())
            self.bus.start_daemon(self.conf, self.state)
            wait_until(lambda: not self.journal(), 30, "recovery")
        finally:
            self.proxy.filter = None
        self.assertTrue(lost.woken.is_set(), "the recovery never woke the stuck save")
        wait_until(lambda: self.guest.status() == "running", 10, "guest running")
        self.assertEqual(self.guest.qmp("query-migrate").get("status"), "cancelled")
        caps = {c["capability"]: c["state"] for c in self.guest.qmp("query-migrate-capabilities")}
        self.assertFalse(caps["pause-before-switchover"])
        self.assertEqual(sorted(os.listdir(self.images)), files)
        self.assertEqual(self.meta(), meta)
        self.dom = self.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm1",))[0]
        wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "Job") == "", 30, "no job")
        p = self.create("after-lost-kill", {"disk-only": v("b", True)})
        self.assertTrue(self.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))

    def test_05_overlay_open_fails_while_ram_copies(self):
        """A live save opens its overlays once migrate runs (they are needed only at
        switchover); when QEMU refuses one there, the save is cancelled and rolled back."""
        meta, files = self.meta(), sorted(os.listdir(self.images))
        nodes = sorted(n["node-name"] for n in self.guest.qmp("query-named-block-nodes"))
        sent = []

        def second_qcow2(msg, sent):
            return msg["execute"] == "blockdev-add" and msg.get("arguments", {}).get("driver") == "qcow2" and \
                sent.count("blockdev-add") == 2

        self.proxy.filter = self.refusing(second_qcow2, sent, "injected: cannot open")
        try:
            with self.assertRaises(BusError) as cm:
                self.create("open-fails", {"live": v("b", True), "memory": v("s", "external")})
        finally:
            self.proxy.filter = None
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed", cm.exception.message)
        self.assertIn("blockdev-add", cm.exception.message)
        self.assertIn("injected: cannot open", cm.exception.message)
        # the overlays were opened while the save ran, not before it
        self.assertLess(sent.index("migrate"), sent.index("blockdev-add"), sent)
        wait_until(lambda: self.guest.status() == "running", 10, "guest running")
        self.assertIn(self.guest.qmp("query-migrate").get("status"), ("cancelled", "failed"))
        caps = {c["capability"]: c["state"] for c in self.guest.qmp("query-migrate-capabilities")}
        self.assertFalse(caps["pause-before-switchover"])
        self.assertEqual(sorted(n["node-name"] for n in self.guest.qmp("query-named-block-nodes")), nodes)
        self.assertEqual(sorted(os.listdir(self.images)), files)
        self.assertEqual(self.meta(), meta)
        self.assertFalse(self.journal())
        p = self.create("after-open-fails", {"live": v("b", True), "memory": v("s", "external")})
        self.assertTrue(self.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))
        self.assertEqual(self.guest.status(), "running")

    def disk_only_refused(self, name, refuse):
        """A disk-only create whose commands the proxy answers with an error where refuse(msg,
        sent) says; returns (the D-Bus error, the commands sent), after checking that nothing
        changed: QEMU's nodes and devices, the files, the metadata, the guest running."""
        meta, files = self.meta(), sorted(os.listdir(self.images))
        nodes = sorted(n["node-name"] for n in self.guest.qmp("query-named-block-nodes"))
        tops = {d["device"] or d["qdev"]: d["inserted"]["node-name"] for d in self.guest.qmp("query-block")
                if d.get("inserted")}
        sent = []
        self.proxy.filter = self.refusing(refuse, sent, "injected: refused")
        try:
            with self.assertRaises(BusError) as cm:
                self.create(name, {"disk-only": v("b", True), "atomic": v("b", True)})
        finally:
            self.proxy.filter = None
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed", cm.exception.message)
        self.assertIn("injected: refused", cm.exception.message)
        self.assertEqual(self.guest.status(), "running")
        self.assertEqual(sorted(n["node-name"] for n in self.guest.qmp("query-named-block-nodes")), nodes)
        self.assertEqual({d["device"] or d["qdev"]: d["inserted"]["node-name"]
                          for d in self.guest.qmp("query-block") if d.get("inserted")}, tops)
        self.assertEqual(sorted(os.listdir(self.images)), files)
        self.assertEqual(self.meta(), meta)
        self.assertFalse(self.journal())
        return cm.exception, sent

    def test_06_overlay_open_fails_before_the_transaction(self):
        """A disk-only snapshot sends its transaction right behind the blockdev-adds; when
        QEMU cannot open the second overlay, the transaction fails with it, the first overlay
        is closed again and both files are gone."""
        def second_add(msg, sent):
            return msg["execute"] == "blockdev-add" and sent.count("blockdev-add") == 2

        err, sent = self.disk_only_refused("add-fails", second_add)
        self.assertIn("blockdev-add", err.message)
        # pipelined: the transaction was sent, and refused by QEMU for the missing overlay
        self.assertIn("transaction", sent)
        self.assertLess(sent.index("blockdev-add"), sent.index("transaction"))
        p = self.create("after-add-fails", {"disk-only": v("b", True), "atomic": v("b", True)})
        self.assertTrue(self.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))
        self.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=120)

    def test_07_transaction_refused_after_the_adds(self):
        """Both overlays open, the transaction refused: both are closed and removed."""
        def tx(msg, sent):
            return msg["execute"] == "transaction"

        err, sent = self.disk_only_refused("tx-refused", tx)
        self.assertIn("transaction", err.message)
        self.assertEqual(sent.count("blockdev-del"), 2, sent)
        p = self.create("after-tx-refused", {"disk-only": v("b", True), "atomic": v("b", True)})
        self.assertTrue(self.bus.get_property(p, SNAPSHOT_IFACE, "IsCurrent"))
        self.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=120)

    def restart_with(self, failpoint):
        """The daemon again with SNAPSHOTD_FAILPOINT set; without it after the test."""
        def restart(fp=None):
            self.bus.stop_daemon()
            self.bus.start_daemon(self.conf, self.state, failpoint=fp)
            wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "State") == "running", 30, "running")
        restart(failpoint)
        self.addCleanup(restart)

    def ask_while(self, call, probe):
        """call() in a thread; meanwhile probe() every 50 ms, timed, and the domain's Job
        read. Returns (call's result or BusError, the probes' durations, the Jobs seen)."""
        out = []

        def run():
            try:
                out.append(call())
            except BusError as e:
                out.append(e)

        t = threading.Thread(target=run)
        t.start()
        waits, jobs = [], set()
        while t.is_alive():
            t0 = time.monotonic()
            probe()
            jobs.add(self.bus.get_property(self.dom, DOMAIN_IFACE, "Job"))
            waits.append(time.monotonic() - t0)
            time.sleep(0.05)
        t.join()
        return out[0], waits, jobs

    def leftovers(self):
        d = os.path.join(self.state, "snapshots", "vm1")
        return [f for f in os.listdir(d) if f.startswith(".")] if os.path.isdir(d) else []

    def test_08_slow_state_dir_keeps_the_daemon_answering(self):
        """The job's journal and record are written on worker threads: while each write
        takes 1.5 s (a failpoint standing for an fsync stuck behind another domain's memory
        image: up to 130 ms on the loop, measured), other calls are answered at once, and the
        snapshot completes."""
        self.restart_with("create-journal-write:slow,create-record-write:slow")
        meta = self.meta()
        path, waits, jobs = self.ask_while(
            lambda: self.create("slow-disk", {"disk-only": v("b", True), "atomic": v("b", True)}),
            lambda: self.bus.call(MANAGER_PATH, MANAGER_IFACE, "ListDomains"))
        self.assertIsInstance(path, str, path)
        self.assertIn("snapshot-create", jobs)
        # journal, staging and commit: three slow writes, ~4.5 s of asking
        self.assertGreater(len(waits), 30, waits)
        self.assertLess(max(waits), 0.5, waits)
        self.assertEqual(self.meta(), sorted(meta + ["slow-disk.xml"]))
        self.assertTrue(self.bus.get_property(path, SNAPSHOT_IFACE, "IsCurrent"))
        # QEMU's devices run on the overlays the record names, and they are on disk
        overlays = {d[2] for d in self.bus.get_property(path, SNAPSHOT_IFACE, "Disks") if d[2]}
        tops = {d["inserted"]["image"]["filename"] for d in self.guest.qmp("query-block") if d.get("inserted")}
        self.assertEqual(len(overlays), 2, overlays)
        self.assertLessEqual(overlays, tops)
        self.assertTrue(all(os.path.isfile(f) for f in overlays), overlays)
        self.assertFalse(self.journal())
        self.assertEqual(self.leftovers(), [])
        self.bus.call(path, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=120)

    def test_09_journal_write_fails(self):
        """The journal cannot be written: the job fails before changing anything."""
        self.restart_with("create-journal-write:error")
        meta, files = self.meta(), sorted(os.listdir(self.images))
        nodes = sorted(n["node-name"] for n in self.guest.qmp("query-named-block-nodes"))
        with self.assertRaises(BusError) as cm:
            self.create("no-journal", {"disk-only": v("b", True), "atomic": v("b", True)})
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed", cm.exception.message)
        self.assertIn("Cannot write the job journal", cm.exception.message)
        self.assertEqual(self.meta(), meta)
        self.assertEqual(sorted(os.listdir(self.images)), files)
        self.assertEqual(sorted(n["node-name"] for n in self.guest.qmp("query-named-block-nodes")), nodes)
        self.assertFalse(self.journal())
        self.assertEqual(self.leftovers(), [])
        self.assertEqual(self.guest.status(), "running")
        self.assertEqual(self.bus.get_property(self.dom, DOMAIN_IFACE, "Job"), "")

    def test_10_metadata_delete_off_the_loop(self):
        """A metadata-only delete writes its records on a worker: while that takes 1.5 s
        (failpoint), other calls are answered at once, the domain says it is busy, and the
        record is gone at the end."""
        self.create("forget-slow", {"disk-only": v("b", True), "atomic": v("b", True)})
        self.restart_with("store-batch-write:slow")
        p = self.bus.call(self.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("forget-slow",))[0]
        res, waits, jobs = self.ask_while(
            lambda: self.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (2,), timeout=60),
            lambda: self.bus.call(self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,)))
        self.assertNotIsInstance(res, BusError, res)
        self.assertNotIn(p, self.bus.call(self.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0])
        self.assertIn("snapshot-delete", jobs)
        self.assertGreater(len(waits), 10, waits)
        self.assertLess(max(waits), 0.5, waits)
        self.assertNotIn("forget-slow.xml", self.meta())
        self.assertEqual(self.leftovers(), [])
        self.assertEqual(self.bus.get_property(self.dom, DOMAIN_IFACE, "Job"), "")

    def test_11_metadata_delete_write_fails(self):
        """The records cannot be written: the call says so, names the error, and the daemon
        goes on serving; the record stays on disk (nothing was changed there)."""
        self.create("forget-fails", {"disk-only": v("b", True), "atomic": v("b", True)})
        self.restart_with("store-batch-write:error")
        p = self.bus.call(self.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("forget-fails",))[0]
        with self.assertRaises(BusError) as cm:
            self.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (2,), timeout=60)
        self.assertEqual(cm.exception.name, ERROR_PREFIX + "Failed", cm.exception.message)
        self.assertIn("Cannot delete snapshot records", cm.exception.message)
        self.assertIn("forget-fails.xml", self.meta())
        self.assertEqual(self.leftovers(), [])
        self.assertEqual(self.bus.get_property(self.dom, DOMAIN_IFACE, "Job"), "")
        self.bus.call(MANAGER_PATH, MANAGER_IFACE, "ListDomains")
        self.assertIn("records on disk may bring deleted snapshots back", self.bus.read_daemon_log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
