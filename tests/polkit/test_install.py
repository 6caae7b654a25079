#!/usr/bin/python3
# The system install: configure the source tree with --prefix=/usr (what the README tells
# administrators), `meson install --destdir` into a temp dir, and check that every file
# lands where the system's own components look for it — dbus-daemon, polkitd, systemd,
# systemd-tmpfiles — with sane modes, that the installed XML is well-formed, and how
# `systemd-analyze security --offline=true` rates the installed unit.

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import snaptest  # noqa: E402

SOURCE_ROOT = snaptest.SOURCE_ROOT

# Where the system looks, for a --prefix=/usr install (Debian 12, merged /usr).
EXPECTED = {
    "usr/share/dbus-1/system.d/org.example.Snapshot1.conf": "dbus-daemon: system bus policy (includedir)",
    "usr/share/dbus-1/system-services/org.example.Snapshot1.service": "dbus-daemon: system bus activation (servicedir)",
    "usr/share/dbus-1/interfaces/org.example.Snapshot1.Manager.xml": "D-Bus interface descriptions",
    "usr/share/dbus-1/interfaces/org.example.Snapshot1.Domain.xml": "D-Bus interface descriptions",
    "usr/share/dbus-1/interfaces/org.example.Snapshot1.Snapshot.xml": "D-Bus interface descriptions",
    "usr/share/polkit-1/actions/org.example.snapshot1.policy": "polkitd: actions",
    "usr/lib/systemd/system/snapshotd.service": "systemd: system units",
    "usr/lib/tmpfiles.d/snapshotd.conf": "systemd-tmpfiles",
    "usr/libexec/snapshotd": "the daemon (libexecdir, named by the unit)",
    "usr/bin/snapshotctl": "the client (bindir)",
    "usr/share/bash-completion/completions/snapshotctl": "bash-completion: loaded on demand (completionsdir)",
    "usr/share/zsh/vendor-completions/_snapshotctl": "zsh: Debian's $fpath for packages' completion functions",
}


def run(argv, **kwargs):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


class InstallTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        snaptest.require(shutil.which("meson") is not None, "meson is not on PATH")
        cls.tmp = tempfile.mkdtemp(prefix="snapinst-")
        cls.build = os.path.join(cls.tmp, "build")
        cls.root = os.path.join(cls.tmp, "root")
        p = run(["meson", "setup", "--prefix=/usr", "-Dtests=false", cls.build, SOURCE_ROOT])
        if p.returncode != 0:
            raise RuntimeError("meson setup failed:\n" + p.stdout)
        p = run(["meson", "install", "-C", cls.build, "--destdir", cls.root, "--quiet"])
        if p.returncode != 0:
            raise RuntimeError("meson install failed:\n" + p.stdout[-8000:])
        cls.installed = sorted(os.path.relpath(os.path.join(d, f), cls.root)
                               for d, _, files in os.walk(cls.root) for f in files)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, rel):
        return os.path.join(self.root, rel)

    def test_files_where_the_system_looks(self):
        for rel, who in EXPECTED.items():
            with self.subTest(file=rel):
                self.assertTrue(os.path.isfile(self.path(rel)), "%s (%s) missing; installed:\n%s"
                                % (rel, who, "\n".join(self.installed)))
        for rel in ("usr/libexec/snapshotd", "usr/bin/snapshotctl"):
            self.assertTrue(os.access(self.path(rel), os.X_OK), rel)
        for rel in EXPECTED:
            mode = os.stat(self.path(rel)).st_mode
            self.assertFalse(mode & 0o022, "%s is group/world writable (%o)" % (rel, mode))

    def test_system_components_agree(self):
        # The directories above are the ones the installed components really use.
        with open("/usr/share/dbus-1/system.conf") as f:
            conf = f.read()
        self.assertIn("<includedir>system.d</includedir>", conf)     # relative to /usr/share/dbus-1
        unit_paths = run(["systemd-analyze", "unit-paths"]).stdout.split()
        self.assertIn("/usr/lib/systemd/system", unit_paths)
        # The unit and the activation file point at what was installed.
        with open(self.path("usr/lib/systemd/system/snapshotd.service")) as f:
            unit = f.read()
        m = re.search(r"^ExecStart=(\S+)", unit, re.M)
        self.assertIsNotNone(m, unit)
        self.assertTrue(os.path.isfile(self.path(m.group(1).lstrip("/"))), m.group(1))
        self.assertRegex(unit, r"(?m)^BusName=org\.example\.Snapshot1$")
        self.assertRegex(unit, r"(?m)^Type=dbus$")
        with open(self.path("usr/share/dbus-1/system-services/org.example.Snapshot1.service")) as f:
            act = f.read()
        self.assertRegex(act, r"(?m)^Name=org\.example\.Snapshot1$")
        self.assertRegex(act, r"(?m)^Exec=/bin/false$")
        self.assertRegex(act, r"(?m)^SystemdService=snapshotd\.service$")
        # Every tmpfiles line is "TYPE PATH ...".
        with open(self.path("usr/lib/tmpfiles.d/snapshotd.conf")) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    self.assertRegex(line, r"^[a-zA-Z][+!=~^-]*\s+/\S+", line)

    def test_xmllint_installed_xml(self):
        xmllint = shutil.which("xmllint")
        snaptest.require(xmllint is not None, "xmllint is missing (libxml2-utils)")
        xml = [r for r in self.installed
               if r.endswith((".xml", ".policy")) or (r.endswith(".conf") and "/dbus-1/" in r)]
        self.assertGreaterEqual(len(xml), 5, self.installed)
        for rel in xml:
            with self.subTest(file=rel):
                p = run([xmllint, "--noout", "--nonet", self.path(rel)])
                self.assertEqual(p.returncode, 0, p.stdout)
        # The policy against polkit's DTD, the bus policy against D-Bus's, when present.
        if os.path.exists("/usr/share/polkit-1/policyconfig-1.dtd"):
            p = run([xmllint, "--noout", "--nonet", "--valid",
                     self.path("usr/share/polkit-1/actions/org.example.snapshot1.policy")])
            self.assertEqual(p.returncode, 0, p.stdout)

    def test_unit_security(self):
        analyze = shutil.which("systemd-analyze")
        snaptest.require(analyze is not None, "systemd-analyze is missing")
        unit = self.path("usr/lib/systemd/system/snapshotd.service")
        p = run([analyze, "security", "--offline=true", "--no-pager", unit], timeout=60)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", p.stdout)
        self.assertIsNotNone(m, p.stdout)
        sys.stderr.write("\nsystemd-analyze security --offline=true: %s %s\n" % (m.group(1), m.group(2)))
        # "OK" or better, as issue 3 asks: at most 4.9 (OK), 2.x (GOOD/SAFE).
        self.assertLessEqual(float(m.group(1)), 4.9, p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
