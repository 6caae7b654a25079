#!/usr/bin/python3
# snapshotctl as a person or a script runs it, against the real daemon and guest: progress
# while a live checkpoint runs (plain lines in a pipe, a redrawn line on a terminal),
# Ctrl-C aborting the job, the memory image header in `info`, revert and delete.

import os
import pty
import select
import signal
import subprocess
import time
import unittest

import snaptest

S = snaptest.SharedDomain("snapc-", dirty_mb=16)
CTL = os.environ.get("SNAPSHOTCTL")


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class SnapshotctlTest(snaptest.SharedTestCase):
    shared = S

    def ctl(self, *args, timeout=120):
        return subprocess.run([CTL, "--address=" + S.bus.address] + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def test_01_live_checkpoint_with_plain_progress(self):
        r = self.ctl("create-as", "vm1", "live1", "--live", "--memspec", "file=live1.mem")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Domain snapshot live1 created", r.stdout)
        lines = r.stderr.splitlines()
        self.assertIn("progress: validate", lines)
        self.assertTrue(any(l.startswith("progress: memory") for l in lines), r.stderr)
        self.assertNotIn("\r", r.stderr)
        self.assertTrue(os.path.exists(os.path.join(S.images, "live1.mem")))

        r = self.ctl("info", "vm1", "live1")
        self.assertIn("complete (LibvirtQemudSave), version 2", r.stdout)
        r = self.ctl("info", "vm1", "live1", "--json")
        import json
        info = json.loads(r.stdout)
        self.assertEqual(info["MemoryImage"]["magic"], "LibvirtQemudSave")
        self.assertEqual(info["MemoryImage"]["version"], 2)

    def test_02_no_progress(self):
        r = self.ctl("create-as", "vm1", "quiet", "--disk-only", "--no-progress")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("progress", r.stderr)

    def test_03_progress_bar_on_a_terminal(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(CTL, [CTL, "--address=" + S.bus.address, "create-as", "vm1", "tty1", "--live",
                           "--memspec", "tty1.mem"])
        out = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
        _, status = os.waitpid(pid, 0)
        text = out.decode("utf-8", "replace")
        self.assertEqual(os.waitstatus_to_exitcode(status), 0, text)
        self.assertIn("\r\033[K", text)          # redrawn in place
        self.assertIn("memory", text)
        self.assertIn("Domain snapshot tty1 created", text)

    def test_04_interrupt_aborts(self):
        # a second dirtying loop keeps the live save iterating long enough to interrupt it
        S.guest.agent("guest-exec", path="/bin/sh", arg=[
            "-c", "i=0; while :; do dd if=/mem/seed$((i % 2)) of=/mem/more bs=1M seek=$((i % 96)) count=1 "
                  "conv=notrunc 2>/dev/null; i=$((i + 1)); done"])
        p = subprocess.Popen([CTL, "--address=" + S.bus.address, "create-as", "vm1", "intr", "--live",
                              "--memspec", "intr.mem", "--abort-on-interrupt"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = ""
        while "progress: validate" not in line:
            line = p.stderr.readline()
            self.assertTrue(line, "no progress before the end")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 1, out + err)
        self.assertIn("Aborted", err)
        self.assertFalse(os.path.exists(os.path.join(S.images, "intr.mem")))
        self.assertEqual(self.ctl("job", "vm1").stdout.strip(), "none")
        self.assertEqual(S.guest.status(), "running")

    def test_05_revert_and_delete(self):
        r = self.ctl("create-as", "vm1", "int1", "--memspec", "snapshot=internal")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.ctl("revert", "vm1", "int1", "--paused")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("reverted", r.stdout)
        self.assertEqual(S.guest.status(), "paused")
        r = self.ctl("revert", "vm1", "int1", "--running")
        self.assertEqual(S.guest.status(), "running")
        r = self.ctl("delete", "vm1", "int1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("int1", self.ctl("list", "vm1").stdout)
        r = self.ctl("delete", "vm1", "nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn("NoSuchSnapshot", r.stderr)
        r = self.ctl("abort", "vm1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("OperationInvalid", r.stderr)

    def test_06_tree_parent_redefine(self):
        self.ctl("create-as", "vm1", "t1", "--disk-only")
        self.ctl("create-as", "vm1", "t2", "--disk-only")
        r = self.ctl("list", "vm1", "--tree")
        self.assertIn("t2  (current)", r.stdout)
        self.assertEqual(self.ctl("parent", "vm1", "t2").stdout.strip(), "t1")
        xml = self.ctl("dumpxml", "vm1", "t1").stdout.replace("<name>t1</name>", "<name>t1-copy</name>", 1)
        path = os.path.join(S.tmp, "t1-copy.xml")
        with open(path, "w") as f:
            f.write(xml)
        r = self.ctl("redefine", "vm1", path, "--current")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.ctl("current", "vm1", "--name").stdout.strip(), "t1-copy")


if __name__ == "__main__":
    unittest.main(verbosity=2)
