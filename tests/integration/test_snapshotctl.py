#!/usr/bin/python3
# snapshotctl as a person or a script runs it, against the real daemon and guest: progress
# while a live checkpoint runs (plain lines in a pipe, a redrawn line on a terminal, none
# with --no-progress), Ctrl-C during a save (the question on a terminal, a second Ctrl-C
# declining it, --abort-on-interrupt for scripts), the abort and job verbs, the memory image
# header in `info` (complete, partial, unreadable), create from XML, revert and delete.

import json
import os
import pty
import select
import signal
import subprocess
import threading
import time
import unittest

import snaptest

S = snaptest.SharedDomain("snapc-", dirty_mb=16)
CTL = os.environ.get("SNAPSHOTCTL")

# A second dirtying loop (the guest's own workload rewrites 16 MiB) makes a live save
# iterate; see Throttle for why that alone is not enough here.
DIRTY_LOOP = ("i=0; while :; do dd if=/mem/seed$((i % 2)) of=/mem/more bs=1M seek=$((i % 96)) count=1 "
              "conv=notrunc 2>/dev/null; i=$((i + 1)); done")


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class Throttle:
    """Runs the guest's QEMU at about a tenth of its speed (SIGSTOP 90 ms in every 100) while
    a test interrupts a live save. Here a live save of the test guest takes about 0.1 s
    even with the dirtying loops, because QEMU under TCG writes memory out far faster than
    the guest can dirty it: too short to interrupt reliably. Slowed, it takes seconds."""

    def __init__(self, pid):
        self.pid = pid
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self.stopping.is_set():
                os.kill(self.pid, signal.SIGSTOP)
                self.stopping.wait(0.09)
                os.kill(self.pid, signal.SIGCONT)
                self.stopping.wait(0.01)
        finally:
            os.kill(self.pid, signal.SIGCONT)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()


class Terminal:
    """snapshotctl on a pseudo-terminal: its controlling TTY, so isatty(stderr) holds,
    /dev/tty is the terminal, and a ^C typed at the master is SIGINT from the line
    discipline, as at a real keyboard."""

    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(CTL, [CTL, "--address=" + S.bus.address] + list(args))
            finally:
                os._exit(127)
        self.out = b""
        self.status = None

    def _read(self, timeout):
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:         # EIO: the child closed the terminal
            chunk = b""
        self.out += chunk
        return bool(chunk)

    def text(self):
        return self.out.decode("utf-8", "replace")

    def expect(self, pattern, timeout=60):
        start = len(self.out)
        deadline = time.monotonic() + timeout
        while pattern.encode() not in self.out[start:]:
            if time.monotonic() > deadline:
                raise AssertionError("no %r on the terminal within %d s: %r" % (pattern, timeout, self.text()))
            if not self._read(0.2):
                raise AssertionError("snapshotctl ended before %r: %r" % (pattern, self.text()))

    def type(self, data):
        os.write(self.fd, data)

    def finish(self, timeout=120):
        deadline = time.monotonic() + timeout
        while self._read(1):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                break
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status), self.text()


class SnapshotctlTest(snaptest.SharedTestCase):
    shared = S

    def ctl(self, *args, timeout=120):
        return subprocess.run([CTL, "--address=" + S.bus.address] + list(args), capture_output=True, text=True,
                              timeout=timeout)

    def ctl_async(self, *args):
        return subprocess.Popen([CTL, "--address=" + S.bus.address] + list(args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def image(self, name):
        return os.path.join(S.images, name)

    def slow_live_save(self):
        """Makes the next live saves long enough to interrupt, until the test ends."""
        pid = S.guest.agent("guest-exec", path="/bin/sh", arg=["-c", DIRTY_LOOP])["pid"]
        self.addCleanup(S.guest.guest_exec, ["/bin/sh", "-c", "kill %d" % pid])
        self.enterContext(Throttle(S.guest.proc.pid))

    def wait_stderr(self, p, prefix):
        """Reads p's stderr until a line starts with prefix; returns what was read."""
        seen = ""
        while True:
            line = p.stderr.readline()
            self.assertTrue(line, "snapshotctl ended before %r: %s" % (prefix, seen))
            seen += line
            if line.startswith(prefix):
                return seen

    def assert_aborted(self, rc, text, mem):
        self.assertEqual(rc, 1, text)
        self.assertIn("org.example.Snapshot1.Error.Aborted", text)
        self.assertFalse(os.path.exists(self.image(mem)))
        self.assertEqual(self.ctl("job", "vm1").stdout.strip(), "none")
        self.assertEqual(S.guest.status(), "running")

    def test_01_live_checkpoint_with_plain_progress(self):
        r = self.ctl("create-as", "vm1", "live1", "--live", "--memspec", "file=live1.mem,snapshot=external")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "Domain snapshot live1 created\n")
        lines = r.stderr.splitlines()
        self.assertNotIn("\r", r.stderr)
        self.assertTrue(all(l.startswith("progress: ") for l in lines), r.stderr)
        phases = [l.split()[1] for l in lines]
        # each phase once when it begins, the memory phase at most once a second
        self.assertEqual(phases[0], "validate")
        self.assertIn("memory", phases)
        self.assertLess(phases.index("memory"), phases.index("disks"))
        self.assertEqual(len(set(p for p in phases if p != "memory")), len([p for p in phases if p != "memory"]))
        for l in lines:
            if l.split()[1] == "memory":
                self.assertRegex(l, r"^progress: memory \d+% \d+/\d+ MiB$")
        self.assertTrue(os.path.exists(self.image("live1.mem")))
        self.assertEqual(S.guest.status(), "running")

    def test_02_info_shows_the_memory_image_header(self):
        r = self.ctl("info", "vm1", "live1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Memory Image:   complete (LibvirtQemudSave)\n", r.stdout)
        self.assertIn("  Version:      2\n", r.stdout)
        self.assertRegex(r.stdout, r"  Data Length:  \d+ bytes")
        self.assertIn("  Was Running:  yes\n", r.stdout)
        self.assertIn("  Format:       0 (raw)\n", r.stdout)
        with open(self.image("live1.mem"), "rb") as f:
            data_len = int.from_bytes(f.read(92)[20:24], "little")
        self.assertIn("  Stream Offset:%d (" % (92 + data_len), r.stdout)

        info = json.loads(self.ctl("info", "vm1", "live1", "--json").stdout)
        m = info["MemoryImage"]
        self.assertEqual((m["magic"], m["complete"], m["version"], m["data_len"], m["was_running"], m["format"],
                          m["stream_offset"]), ("LibvirtQemudSave", True, 2, data_len, True, 0, 92 + data_len))

        # a save that never completed, as a crash leaves it
        path = self.image("live1.mem")
        with open(path, "r+b") as f:
            f.write(b"LibvirtQemudPart")
        try:
            r = self.ctl("info", "vm1", "live1")
            self.assertIn("Memory Image:   partial (LibvirtQemudPart): the save never completed", r.stdout)
            m = json.loads(self.ctl("info", "vm1", "live1", "--json").stdout)["MemoryImage"]
            self.assertEqual((m["magic"], m["complete"], m["partial"]), ("LibvirtQemudPart", False, True))
        finally:
            with open(path, "r+b") as f:
                f.write(b"LibvirtQemudSave")

        # a file the caller cannot read (here: gone) does not fail the rest of info
        os.rename(path, path + ".away")
        try:
            r = self.ctl("info", "vm1", "live1")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("Memory Image:   unreadable: No such file or directory\n", r.stdout)
            self.assertIn("Name:           live1\n", r.stdout)
            m = json.loads(self.ctl("info", "vm1", "live1", "--json").stdout)["MemoryImage"]
            self.assertEqual(m, {"error": "No such file or directory"})
        finally:
            os.rename(path + ".away", path)

    def test_03_no_progress(self):
        r = self.ctl("create-as", "vm1", "quiet", "--live", "--memspec", "quiet.mem", "--no-progress")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        self.assertEqual(r.stdout, "Domain snapshot quiet created\n")

    def test_04_progress_bar_on_a_terminal(self):
        t = Terminal("create-as", "vm1", "tty1", "--live", "--memspec", "tty1.mem")
        rc, text = t.finish()
        self.assertEqual(rc, 0, text)
        self.assertIn("\r\033[Kvalidate", text)               # redrawn in place
        self.assertRegex(text, r"\r\033\[Kmemory +\d+% \[[#-]{20}\]")
        self.assertNotIn("progress:", text)
        # the line is cleared before the result
        self.assertTrue(text.endswith("\r\033[KDomain snapshot tty1 created\r\n"), repr(text[-200:]))
        self.assertTrue(os.path.exists(self.image("tty1.mem")))

    def test_05_create_from_xml_live(self):
        path = os.path.join(S.tmp, "xml1.xml")
        with open(path, "w") as f:
            f.write("<domainsnapshot><name>xml1</name><memory snapshot='external' file='%s'/></domainsnapshot>"
                    % self.image("xml1.mem"))
        r = self.ctl("create", "vm1", path, "--live")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Domain snapshot xml1 created from '%s'" % path, r.stdout)
        self.assertIn("progress: memory", r.stderr)
        self.assertIn("  Was Running:  yes\n", self.ctl("info", "vm1", "xml1").stdout)

    def test_06_ctrl_c_on_a_terminal_asks(self):
        self.slow_live_save()

        # declined by a second Ctrl-C: the save goes on and ends (the short live-timeout
        # pauses the guest to finish it)
        t = Terminal("create-as", "vm1", "kept", "--live", "--memspec", "kept.mem", "--live-timeout", "2")
        t.expect("memory")
        t.type(b"\x03")
        t.expect("Abort the snapshot job? [y/N] ")
        t.type(b"\x03")
        t.expect("The job goes on.")
        rc, text = t.finish()
        self.assertEqual(rc, 0, text)
        self.assertIn("Domain snapshot kept created", text)
        self.assertTrue(os.path.exists(self.image("kept.mem")))

        # answered "y"
        t = Terminal("create-as", "vm1", "asked", "--live", "--memspec", "asked.mem")
        t.expect("memory")
        t.type(b"\x03")
        t.expect("Abort the snapshot job? [y/N] ")
        t.type(b"y\n")
        rc, text = t.finish()
        self.assertIn("Aborting the job...", text)
        self.assert_aborted(rc, text, "asked.mem")

    def test_07_abort_on_interrupt(self):
        self.slow_live_save()
        p = self.ctl_async("create-as", "vm1", "intr", "--live", "--memspec", "intr.mem", "--abort-on-interrupt")
        self.wait_stderr(p, "progress: ")       # the first progress line
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        self.assertEqual(out, "")
        self.assertRegex(err, r"snapshotctl: Failed to create snapshot of domain 'vm1': .*"
                              r"\(org\.example\.Snapshot1\.Error\.Aborted\)\n$")
        self.assert_aborted(p.returncode, err, "intr.mem")

    def test_08_job_and_abort_verbs(self):
        self.slow_live_save()
        p = self.ctl_async("create-as", "vm1", "byverb", "--live", "--memspec", "byverb.mem")
        self.wait_stderr(p, "progress: memory")
        r = self.ctl("job", "vm1")
        self.assertEqual((r.returncode, r.stdout), (0, "snapshot-create\n"), r.stderr)
        r = self.ctl("abort", "vm1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "Job of domain vm1 aborting\n")
        out, err = p.communicate(timeout=120)
        self.assert_aborted(p.returncode, err, "byverb.mem")
        r = self.ctl("abort", "vm1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("OperationInvalid", r.stderr)

    def test_09_revert_and_delete(self):
        for name in ("live1", "quiet", "tty1", "xml1", "kept"):
            r = self.ctl("delete", "vm1", name, "--no-progress")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertFalse(os.path.exists(self.image(name + ".mem")))
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
        self.assertEqual(r.returncode, 4)       # snapshotctl(1): no such domain or snapshot
        self.assertIn("NoSuchSnapshot", r.stderr)

    def test_10_tree_parent_redefine(self):
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
