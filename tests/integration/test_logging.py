#!/usr/bin/python3
# Logging. Started by systemd (stderr is the journal stream $JOURNAL_STREAM names), snapshotd
# sends each message to journald natively, with the domain and, for the one line each job
# ends with, the snapshot, job, result and duration as fields. Here journald is a datagram
# socket of the test's, bind-mounted over /run/systemd/journal in a mount namespace of the
# daemon's own (nothing of the machine's is touched). Otherwise: plain stderr lines, and
# --log-level filters them.

import os
import shlex
import socket
import subprocess
import tempfile
import unittest

import snaptest
from snaptest import DOMAIN_IFACE, SNAPSHOT_IFACE, BusError

v = snaptest.variant
wait_until = snaptest.wait_until
S = snaptest.SharedDomain("snaplog-", dirty_mb=0)
JOURNAL_DIR = tempfile.mkdtemp(prefix="snaplog-journal-")
JOURNAL = None

# In a private mount namespace: a tmpfs /run (so /run/systemd/journal can be made), our
# socket's dir bound there, and JOURNAL_STREAM naming the stderr the daemon really has.
WRAPPER = ("unshare --mount --propagation private /bin/sh -c '"
           "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && "
           "mount --bind %s /run/systemd/journal && "
           "JOURNAL_STREAM=$(stat -L -c %%d:%%i /proc/self/fd/2) exec \"$@\"' snapshotd-in-ns") % shlex.quote(JOURNAL_DIR)


def setUpModule():
    global JOURNAL
    JOURNAL = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    JOURNAL.bind(os.path.join(JOURNAL_DIR, "socket"))
    os.environ["SNAPSHOTD_TEST_WRAPPER"] = WRAPPER
    try:
        S.start()
    finally:
        os.environ.pop("SNAPSHOTD_TEST_WRAPPER", None)


def tearDownModule():
    S.stop()
    JOURNAL.close()
    subprocess.run(["rm", "-rf", JOURNAL_DIR])


def parse_entry(data):
    """journald's native protocol: KEY=value lines, or KEY\\n<le64 size><value>\\n."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, val = line.split(b"=", 1)
            i = nl + 1
        else:
            k, size = line, int.from_bytes(data[nl + 1:nl + 9], "little")
            val = data[nl + 9:nl + 9 + size]
            i = nl + 9 + size + 1
        fields[k.decode()] = val.decode("utf-8", "replace")
    return fields


def entries(timeout=2.0):
    JOURNAL.settimeout(timeout)
    out = []
    try:
        while True:
            out.append(parse_entry(JOURNAL.recv(65536)))
            JOURNAL.settimeout(0.3)
    except (socket.timeout, BlockingIOError):
        pass
    return out


class LoggingTest(snaptest.SharedTestCase):
    shared = S

    def test_01_journal_fields_and_job_outcome(self):
        entries(0.5)  # start-up messages
        S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}",
                   ("log1", "", {"disk-only": v("b", True), "atomic": v("b", True)}), timeout=120)
        got = entries()
        self.assertTrue(got, "nothing reached the journal socket")
        for e in got:
            self.assertEqual(e["SYSLOG_IDENTIFIER"], "snapshotd")
            self.assertIn(e["PRIORITY"], [str(n) for n in range(8)])
        outcome = [e for e in got if e.get("SNAPSHOTD_JOB") == "snapshot-create"]
        self.assertEqual(len(outcome), 1, got)
        o = outcome[0]
        self.assertEqual((o["SNAPSHOTD_DOMAIN"], o["SNAPSHOTD_SNAPSHOT"], o["SNAPSHOTD_RESULT"], o["PRIORITY"]),
                         ("vm1", "log1", "done", "6"))
        self.assertGreater(int(o["SNAPSHOTD_DURATION_USEC"]), 0)
        self.assertGreater(int(o["SNAPSHOTD_QEMU_USEC"]), 0)
        self.assertLessEqual(int(o["SNAPSHOTD_QEMU_USEC"]), int(o["SNAPSHOTD_DURATION_USEC"]))
        self.assertRegex(o["MESSAGE"], r"^Domain 'vm1': snapshot-create of 'log1' done in [0-9.]+ s "
                                       r"\(QEMU [0-9.]+ s\)\.$")
        # every per-domain message carries the domain
        for e in got:
            if e["MESSAGE"].startswith("Domain 'vm1': "):
                self.assertEqual(e["SNAPSHOTD_DOMAIN"], "vm1", e)

    def test_02_failed_job_outcome(self):
        entries(0.3)
        # a memory image where a file already is: the job refuses it
        open(os.path.join(S.images, "taken.mem"), "w").close()
        with self.assertRaises(BusError) as cm:
            S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}",
                       ("log2", "", {"memory": v("s", "external"), "memory-file": v("s", "taken.mem")}), timeout=120)
        os.unlink(os.path.join(S.images, "taken.mem"))
        got = [e for e in entries() if e.get("SNAPSHOTD_JOB") == "snapshot-create"]
        if not got:
            self.skipTest("refused before a job started (%s)" % cm.exception.name)
        o = got[0]
        self.assertEqual(o["SNAPSHOTD_RESULT"], cm.exception.name.rsplit(".", 1)[1])
        self.assertEqual(o["PRIORITY"], "4")
        self.assertIn("failed after", o["MESSAGE"])

    def test_03_delete_outcome(self):
        entries(0.3)
        p = S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("log1",))[0]
        S.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=120)
        got = [e for e in entries() if e.get("SNAPSHOTD_JOB") == "snapshot-delete"]
        self.assertEqual([(e["SNAPSHOTD_SNAPSHOT"], e["SNAPSHOTD_RESULT"]) for e in got], [("log1", "done")])


class PlainStderrTest(unittest.TestCase):
    """No journal: readable lines on stderr, filtered by --log-level."""

    def run_daemon(self, *args):
        with snaptest.Bus() as bus:
            tmp = bus.tmpdir
            os.makedirs(os.path.join(tmp, "conf"), exist_ok=True)
            bus.start_daemon(os.path.join(tmp, "conf"), os.path.join(tmp, "state"), extra_args=args)
            self.assertEqual(bus.stop_daemon(), 0)
            return bus.read_daemon_log()

    def test_levels(self):
        log = self.run_daemon()
        self.assertIn("serving org.example.Snapshot1", log)
        self.assertNotRegex(log, r"(?m)^<\d>")
        self.assertNotIn("serving", self.run_daemon("--log-level=warning"))
        self.assertIn("serving", self.run_daemon("--log-level=debug"))

    def test_bad_level(self):
        r = subprocess.run([os.environ["SNAPSHOTD"], "--log-level=loud"], capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Invalid --log-level 'loud'", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
