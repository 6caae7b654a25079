#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The examples in examples/ work, against the built daemon on a private bus and one guest:
#   busctl-cookbook.sh        every busctl/gdbus command of README.md's cookbook
#   snapshot-gui.py           a live snapshot with progress; aborted by --abort-after and by
#                             SIGINT, which leaves nothing behind
#   systemd/snapshotd-nightly@.{service,timer}
#                             systemd-analyze verify, and the service's ExecStart= lines run
#                             (with %i substituted and the private bus in
#                             DBUS_SYSTEM_BUS_ADDRESS): a dated, quiesced disk-only snapshot,
#                             then `snapshotctl prune DOMAIN --keep 7`

import datetime
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import snaptest
from snaptest import DOMAIN_IFACE, SNAPSHOT_IFACE

v = snaptest.variant
S = snaptest.SharedDomain("snapex-", dirty_mb=16)
EXAMPLES = os.path.join(snaptest.SOURCE_ROOT, "examples")
GUI = os.path.join(EXAMPLES, "snapshot-gui.py")
UNITS = os.path.join(EXAMPLES, "systemd")


def setUpModule():
    S.start()


def tearDownModule():
    S.stop()


class ExamplesTest(snaptest.SharedTestCase):
    shared = S

    def env(self):
        # busctl, gdbus, snapshotctl and Gio's system bus all honour this.
        return dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=S.bus.address, LC_ALL="C.UTF-8")

    def snapshots(self):
        return S.bus.call(S.dom, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]

    def names(self):
        return [S.bus.get_property(p, SNAPSHOT_IFACE, "Name") for p in self.snapshots()]

    def delete_all(self):
        for p in reversed(self.snapshots()):
            S.bus.call(p, SNAPSHOT_IFACE, "Delete", "t", (0,), timeout=300)

    def assert_clean(self):
        """Nothing left behind: no snapshot, no file in the image dir, no job, guest running."""
        self.assertEqual(self.names(), [])
        self.assertEqual(os.listdir(S.images), [])
        self.assertEqual(S.bus.get_property(S.dom, DOMAIN_IFACE, "Job"), "")
        self.assertEqual(S.guest.status(), "running")

    def gui(self, *args, timeout=300):
        return subprocess.run(["/usr/bin/python3", GUI, "--address", S.bus.address] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)

    def dirty_load(self):
        """A second, bigger dirtying loop in the guest, so that a live save keeps iterating
        long enough to be aborted (as test_memory's abort test does); stopped at cleanup."""
        pid = S.guest.agent("guest-exec", path="/bin/sh", arg=["-c",
            "i=0; while :; do dd if=/mem/seed$((i % 2)) of=/mem/more bs=1M seek=$((i % 96)) count=1 "
            "conv=notrunc 2>/dev/null; i=$((i + 1)); done"])["pid"]
        self.addCleanup(lambda: S.guest.agent("guest-exec", path="/bin/sh",
                                              arg=["-c", "kill %d; rm -f /mem/more" % pid]))
        time.sleep(1)

    # --- the cookbook ------------------------------------------------------------------------

    def test_1_cookbook(self):
        self.assert_clean()
        r = subprocess.run(["sh", os.path.join(EXAMPLES, "busctl-cookbook.sh"), S.name], env=self.env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"busctl monitor saw [1-9][0-9]* Progress signals")
        self.assertIn("org.example.Snapshot1.Error.Aborted", r.stdout)
        self.assertIn("<name>cb-live</name>", r.stdout)
        self.assert_clean()

    def test_2_cookbook_matches_readme(self):
        # Every busctl/gdbus command line of README.md's cookbook section is one the script runs.
        with open(os.path.join(snaptest.SOURCE_ROOT, "README.md")) as f:
            readme = f.read()
        m = re.search(r"^## Cookbook: busctl and gdbus\n(.*?)(?=^## )", readme, re.S | re.M)
        self.assertIsNotNone(m, "README.md has no '## Cookbook: busctl and gdbus' section")
        with open(os.path.join(EXAMPLES, "busctl-cookbook.sh")) as f:
            script = " ".join(f.read().replace("\\\n", " ").split())
        blocks = re.findall(r"```sh\n(.*?)```", m.group(1), re.S)
        commands = [" ".join(c.split()) for b in blocks for c in b.replace("\\\n", " ").splitlines()
                    if c.strip().startswith(("busctl ", "gdbus "))]
        self.assertGreater(len(commands), 15)
        for c in commands:
            # the README names the domain vm1 and puts background commands in the background
            c = re.sub(r" vm1$", ' "$D"', c.removesuffix(" &"))
            self.assertIn(c, script)

    # --- snapshot-gui.py ---------------------------------------------------------------------

    def test_3_gui_live_snapshot(self):
        r = self.gui("--domain", S.name, "--name", "gui-live")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^vm1\s+running\s+yes\s+attached")
        progress = re.findall(r"(?m)^progress: snapshot-create (\S+)", r.stdout)
        self.assertIn("memory", progress, r.stdout)
        self.assertEqual(progress[-1], "done", r.stdout)
        self.assertIn("Snapshot taken", r.stdout)
        self.assertIn("event: SnapshotCreated", r.stdout)
        path = S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("gui-live",))[0]
        p = S.bus.get_all_properties(path, SNAPSHOT_IFACE)
        self.assertEqual((p["Memory"], p["State"]), ("external", "running"))
        self.assertTrue(os.path.isfile(p["MemoryFile"]))
        self.assertIn(p["MemoryFile"], r.stdout)
        self.delete_all()
        self.assert_clean()

    def test_4_gui_abort_after(self):
        self.dirty_load()
        r = self.gui("--domain", S.name, "--name", "gui-aborted", "--abort-after", "0")
        self.assertEqual(r.returncode, 3, r.stdout)
        self.assertIn("Aborting...", r.stdout)
        self.assertIn("Snapshot aborted", r.stdout)
        self.assert_clean()

    def test_5_gui_sigint(self):
        # Ctrl-C once the memory is being written: AbortJob, and the job's reply ends it.
        self.dirty_load()
        p = subprocess.Popen(["/usr/bin/python3", GUI, "--address", S.bus.address, "--domain", S.name,
                              "--name", "gui-sigint"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out = []
        try:
            for line in p.stdout:
                out.append(line)
                if line.startswith("progress: snapshot-create memory"):
                    p.send_signal(signal.SIGINT)
                    break
            out.append(p.communicate(timeout=120)[0])
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        out = "".join(out)
        self.assertEqual(p.returncode, 3, out)
        self.assertIn("Snapshot aborted", out)
        self.assert_clean()

    # --- the nightly timer -------------------------------------------------------------------

    def unit_copy(self):
        """The units in a temp dir, with the built snapshotctl in place of /usr/bin/snapshotctl
        when that is not installed."""
        ctl = os.environ.get("SNAPSHOTCTL")
        snaptest.require(ctl and os.access(ctl, os.X_OK), "SNAPSHOTCTL does not name the built client")
        tmp = tempfile.mkdtemp(prefix="units-", dir=S.tmp)
        for f in os.listdir(UNITS):
            with open(os.path.join(UNITS, f)) as src, open(os.path.join(tmp, f), "w") as dst:
                text = src.read()
                if not os.access("/usr/bin/snapshotctl", os.X_OK):
                    text = text.replace("/usr/bin/snapshotctl", ctl)
                dst.write(text)
        return tmp

    def test_6_units_verify(self):
        analyze = shutil.which("systemd-analyze")
        snaptest.require(analyze, "systemd-analyze is not installed")
        tmp = self.unit_copy()
        # The man pages are not installed in a build tree: Documentation= is not checked.
        r = subprocess.run([analyze, "--no-pager", "--man=no", "verify",
                            os.path.join(tmp, "snapshotd-nightly@.service"),
                            os.path.join(tmp, "snapshotd-nightly@.timer"),
                            os.path.join(tmp, "snapshotd-nightly@vm1.service"),
                            os.path.join(tmp, "snapshotd-nightly@vm1.timer")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp)
        self.assertEqual((r.returncode, r.stdout.strip()), (0, ""))
        r = subprocess.run([analyze, "--no-pager", "security", "--offline=true",
                            os.path.join(tmp, "snapshotd-nightly@.service")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        self.assertLessEqual(float(m.group(1)), 1.5, r.stdout)

    def exec_start_lines(self, tmp, instance):
        """The service's ExecStart= command lines as argv lists, with the specifiers systemd
        would expand here (%i, %%) expanded."""
        with open(os.path.join(tmp, "snapshotd-nightly@.service")) as f:
            lines = [l.split("=", 1)[1] for l in f.read().splitlines() if l.startswith("ExecStart=")]
        self.assertEqual(len(lines), 2, lines)
        out = []
        for l in lines:
            self.assertNotRegex(l.replace("%%", ""), r"%[^i]", "a specifier this test does not expand")
            argv = shlex.split(l.lstrip("-@:+!").replace("%%", "\0").replace("%i", instance).replace("\0", "%"))
            # verify checks the first command's executable only: check every one
            self.assertTrue(os.access(argv[0], os.X_OK), argv[0])
            out.append(argv)
        return out

    def test_7_nightly_service(self):
        tmp = self.unit_copy()
        create, prune = self.exec_start_lines(tmp, S.name)
        # 7 older snapshots, so that prune --keep 7 has one to remove after tonight's
        for i in range(7):
            S.bus.call(S.dom, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}",
                       ("old-%d" % i, "", {"disk-only": v("b", True)}), timeout=120)
        before = datetime.date.today()
        r = subprocess.run(create, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout)
        names = self.names()
        tonight = [n for n in names if n.startswith("nightly-")]
        self.assertEqual(len(tonight), 1, names)
        self.assertIn(tonight[0], ["nightly-%s" % d.isoformat() for d in (before, datetime.date.today())])
        path = S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", (tonight[0],))[0]
        p = S.bus.get_all_properties(path, SNAPSHOT_IFACE)
        self.assertEqual((p["State"], p["Memory"], p["Quiesced"], p["Description"]),
                         ("disk-snapshot", "no", True, "nightly snapshot"))
        self.assertEqual(len(names), 8)

        try:
            # `snapshotctl prune DOMAIN --keep N` (added by the issue-6 client work): the
            # oldest snapshot goes, the newest 7 stay.
            r = subprocess.run(prune, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=600)
            self.assertEqual(r.returncode, 0, "snapshotctl prune failed:\n" + r.stdout)
            self.assertEqual(self.names(), ["old-%d" % i for i in range(1, 7)] + tonight)
        finally:
            self.delete_all()
        self.assert_clean()


if __name__ == "__main__":
    unittest.main(verbosity=2)
