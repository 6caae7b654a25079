#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# snapshotctl for scripts and shells, against the built daemon on a private bus and one guest:
#   --json=pretty|short   every read command's output parses and has the keys snapshotctl(1)
#                         documents; short is one line, pretty is indented
#   exit statuses         one per error class: usage (2), unsupported (3), no such domain or
#                         snapshot (4), busy (75), any other failure (1); denied (77) is
#                         checked in the polkit suite, which runs a real polkitd
#   prune --keep N        the oldest go (their overlay files too), the newest N stay, QEMU's
#                         backing chains are whole; --dry-run changes nothing; a refused
#                         delete stops it with the refusal's status and a JSON report
#   bash completion       verbs, options per verb, domain and snapshot names from the daemon
#                         the line names (--address); its lists match `snapshotctl help VERB`
#   zsh completion        the same, typed with a Tab into a real interactive zsh (on a
#                         pseudo-terminal, tests/lib/complete.zsh); its lists are bash's
#   snapshotctl(1)        names every verb, option and exit status

import json
import os
import re
import signal
import subprocess
import time
import unittest

import snaptest
from snaptest import DOMAIN_IFACE, SNAPSHOT_IFACE, qdev_id

S = snaptest.SharedDomain("snapcli-")
CTL = os.environ.get("SNAPSHOTCTL")
COMPLETION = os.path.join(snaptest.SOURCE_ROOT, "completion", "snapshotctl.bash")
ZSH_COMPLETION = os.path.join(snaptest.SOURCE_ROOT, "completion", "_snapshotctl")
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"

DOMAIN_KEYS = {"Path", "Name", "State", "CurrentSnapshot", "Job", "HasAgent", "Managed"}
SNAPSHOT_KEYS = {"Path", "Name", "Description", "Domain", "Parent", "Children", "CreationTime", "State",
                 "Memory", "MemoryFile", "Disks", "IsCurrent", "Quiesced"}
DISK_KEYS = {"target", "snapshot", "file"}


def setUpModule():
    snaptest.require(CTL and os.access(CTL, os.X_OK), "SNAPSHOTCTL does not name the built client")
    S.start()


def tearDownModule():
    S.stop()


class QemuStopped:
    """QEMU SIGSTOPped: a job that reaches QMP waits (well within snapshotd's 30 s QMP
    timeout), so the domain stays busy as long as the test needs."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)


class CliTest(snaptest.SharedTestCase):
    shared = S

    def ctl(self, *args, timeout=120, env=None):
        return subprocess.run([CTL, "--address=" + S.bus.address] + list(args), capture_output=True, text=True,
                              timeout=timeout, env=env)

    def ok(self, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, 0, "snapshotctl %s: %s" % (" ".join(args), r.stderr))
        return r.stdout

    def names(self):
        return self.ok("list", "vm1", "--name").split()

    def names_by_age(self):
        snaps = json.loads(self.ok("list", "vm1", "--json=short"))
        return [s["Name"] for s in sorted(snaps, key=lambda s: s["CreationTime"])]

    def snapshot(self, name):
        self.ok("create-as", "vm1", name, "--disk-only", "--no-progress")

    def json_both(self, *args):
        """The command's output with --json=short and --json=pretty, checked for form, and
        parsed (the same value both times)."""
        short = self.ok(*args, "--json=short")
        self.assertEqual(short.count("\n"), 1, short)
        self.assertTrue(short.endswith("\n"))
        pretty = self.ok(*args, "--json=pretty")
        self.assertGreater(pretty.count("\n"), 1, pretty)
        self.assertIn("\n  ", pretty)
        self.assertEqual(json.loads(short), json.loads(pretty))
        # a bare --json is pretty
        self.assertEqual(self.ok(*args, "--json"), pretty)
        return json.loads(short)

    def assert_snapshot_object(self, o, name):
        self.assertLessEqual(SNAPSHOT_KEYS, set(o), o)
        self.assertEqual(o["Name"], name)
        self.assertIsInstance(o["CreationTime"], int)
        self.assertIsInstance(o["Children"], list)
        self.assertIsInstance(o["IsCurrent"], bool)
        for d in o["Disks"]:
            self.assertEqual(set(d), DISK_KEYS, d)

    def chain(self, target):
        for d in S.guest.qmp("query-block"):
            if d.get("inserted") and qdev_id(d["qdev"]) == target:
                out, img = [], d["inserted"]["image"]
                while img:
                    out.append(img["filename"])
                    img = img.get("backing-image")
                return out
        return None

    # --- JSON -----------------------------------------------------------------------------

    def test_01_json_of_every_read_command(self):
        self.snapshot("j1")
        self.snapshot("j2")

        domains = self.json_both("list-domains")
        self.assertEqual([d["Name"] for d in domains], ["vm1"])
        self.assertLessEqual(DOMAIN_KEYS, set(domains[0]), domains[0])
        self.assertEqual(domains[0]["Path"], S.dom)
        self.assertEqual(domains[0]["Job"], "")

        snaps = {s["Name"]: s for s in self.json_both("list", "vm1")}
        self.assertEqual(set(snaps), {"j1", "j2"})
        for name, s in snaps.items():
            self.assert_snapshot_object(s, name)
        self.assertEqual(snaps["j2"]["Parent"], snaps["j1"]["Path"])
        self.assertTrue(snaps["j2"]["IsCurrent"])
        self.assertEqual([d["snapshot"] for d in snaps["j1"]["Disks"]], ["external", "external"])

        info = self.json_both("info", "vm1", "j1")
        self.assert_snapshot_object(info, "j1")
        self.assertEqual(info["Children"], [snaps["j2"]["Path"]])
        self.assertNotIn("MemoryImage", info)   # disk-only: no memory image to read

        x = self.json_both("dumpxml", "vm1", "j1")
        self.assertEqual(set(x), {"Domain", "Name", "XML"})
        self.assertEqual((x["Domain"], x["Name"]), ("vm1", "j1"))
        self.assertEqual(x["XML"].rstrip("\n"), self.ok("dumpxml", "vm1", "j1").rstrip("\n"))
        self.assertIn("<name>j1</name>", x["XML"])

        c = self.json_both("current", "vm1")
        self.assertEqual((set(c), c["Domain"], c["Name"]), ({"Domain", "Name", "XML"}, "vm1", "j2"))
        self.assertIn("<name>j2</name>", c["XML"])
        self.assertEqual(self.json_both("current", "vm1", "--name"), {"Domain": "vm1", "Name": "j2"})

        self.assertEqual(self.json_both("job", "vm1"), {"Domain": "vm1", "Job": ""})
        self.assertEqual(self.json_both("parent", "vm1", "j2"), {"Domain": "vm1", "Name": "j2", "Parent": "j1"})

        # --json=off is the text, and the text views did not change
        self.assertEqual(self.ok("job", "vm1", "--json=off"), "none\n")
        self.assertEqual(self.ok("list", "vm1", "--name"), "j1\nj2\n")
        self.assertEqual(self.ok("list-domains", "--name"), "vm1\n")
        self.assertRegex(self.ok("list-domains"), r"(?m)^ vm1 +running +j2 +yes$")

    def test_02_json_usage(self):
        for args in (["list", "vm1", "--json=long"], ["create-as", "vm1", "--json"], ["revert", "vm1", "j1", "--json"],
                     ["list", "vm1", "--json", "--tree"], ["list-domains", "--json", "--name"]):
            with self.subTest(args=args):
                r = self.ctl(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
        # the global position works too
        self.assertEqual(json.loads(self.ok("--json=short", "job", "vm1")), {"Domain": "vm1", "Job": ""})

    # --- exit statuses ----------------------------------------------------------------------

    def assert_status(self, status, error, *args):
        r = self.ctl(*args)
        self.assertEqual(r.returncode, status, "%s: %s" % (args, r.stderr))
        if error:
            self.assertIn(error, r.stderr)
        return r

    def test_03_exit_statuses(self):
        # usage: the command line, and values snapshotd refuses (InvalidArgument)
        self.assert_status(2, None, "list")
        self.assert_status(2, None, "list", "vm1", "--bogus")
        self.assert_status(2, None, "frobnicate")
        self.assert_status(2, None, "delete", "vm1", "j1", "--children", "--children-only")
        self.assert_status(2, "InvalidArgument", "create-as", "vm1", ".hidden", "--disk-only", "--no-progress")
        # no such domain or snapshot
        for args in (["list", "nosuch"], ["info", "nosuch", "j1"], ["job", "nosuch"], ["prune", "nosuch", "--keep", "1"]):
            self.assert_status(4, "NoSuchDomain", *args)
        for args in (["info", "vm1", "nosuch"], ["dumpxml", "vm1", "nosuch", "--json"], ["delete", "vm1", "nosuch"],
                     ["revert", "vm1", "nosuch"], ["parent", "vm1", "nosuch"]):
            self.assert_status(4, "NoSuchSnapshot", *args)
        r = self.assert_status(4, "has no parent", "parent", "vm1", "j1")
        self.assertEqual(r.stdout, "")
        # unsupported: an attached domain is not started by snapshotd
        self.assert_status(3, "OperationUnsupported", "start", "vm1")
        # any other failure: no job to abort (OperationInvalid)
        self.assert_status(1, "OperationInvalid", "abort", "vm1")
        # no daemon at all
        r = subprocess.run([CTL, "--address=unix:path=" + os.path.join(S.tmp, "nobus"), "list-domains"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stderr)

    def test_04_busy_stops_prune(self):
        """A job holds the domain (its QEMU stopped mid-call): another job is Busy (75), and
        prune stops at its first delete with that status and a report of where it stands."""
        before = self.names_by_age()
        with QemuStopped(S.guest.proc.pid):
            p = subprocess.Popen([CTL, "--address=" + S.bus.address, "create-as", "vm1", "held", "--disk-only",
                                  "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                snaptest.wait_until(lambda: self.ctl("job", "vm1").stdout.strip() == "snapshot-create", 10,
                                    "the create job running")
                self.assert_status(75, "Busy", "create-as", "vm1", "other", "--disk-only", "--no-progress")
                r = self.assert_status(75, "Busy", "prune", "vm1", "--keep", "0", "--json=short", "--no-progress")
                self.assertIn("stopped at snapshot '%s': 0 of %d deleted" % (before[0], len(before)), r.stderr)
                report = json.loads(r.stdout)
                self.assertEqual((report["Deleted"], report["Failed"]["Name"], report["Failed"]["Error"]),
                                 ([], before[0], "org.example.Snapshot1.Error.Busy"))
                self.assertEqual([k["Name"] for k in report["Kept"]], before)
            finally:
                os.kill(S.guest.proc.pid, signal.SIGCONT)
                out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(self.names_by_age(), before + ["held"])

    # --- prune ------------------------------------------------------------------------------

    def test_05_prune(self):
        older = self.names_by_age()                # what earlier tests left: older than p1..p4
        for i in range(1, 5):
            self.snapshot("p%d" % i)
            time.sleep(0.01)                        # distinct creation times, whatever the clock
        doomed = older + ["p1", "p2"]
        images = set(os.listdir(S.images))
        for n in doomed + ["p3", "p4"]:
            self.assertIn(n + ".vda.qcow2", images)

        # --dry-run: the plan, nothing done
        plan = json.loads(self.ok("prune", "vm1", "--keep", "2", "--dry-run", "--json=short"))
        self.assertEqual((plan["Domain"], plan["Keep"], plan["DryRun"], plan["Failed"]), ("vm1", 2, True, None))
        self.assertEqual([d["Name"] for d in plan["Deleted"]], doomed)
        self.assertEqual([k["Name"] for k in plan["Kept"]], ["p3", "p4"])
        times = [d["CreationTime"] for d in plan["Deleted"] + plan["Kept"]]
        self.assertEqual(times, sorted(times))
        text = self.ok("prune", "vm1", "--keep=2", "--dry-run")
        self.assertEqual([l.split()[3] for l in text.splitlines()], doomed)
        self.assertTrue(text.startswith("Would delete snapshot "), text)
        self.assertEqual(len(self.names()), len(doomed) + 2)

        # the real thing, exactly as the nightly timer calls it (but with JSON)
        done = json.loads(self.ok("prune", "vm1", "--keep", "2", "--json", "--no-progress"))
        self.assertEqual((done["DryRun"], done["Failed"]), (False, None))
        self.assertEqual([d["Name"] for d in done["Deleted"]], doomed)
        self.assertEqual(self.names(), ["p3", "p4"])
        left = os.listdir(S.images)
        for n in doomed:
            self.assertFalse([f for f in left if f.startswith(n + ".")], left)
        p3 = S.bus.call(S.dom, DOMAIN_IFACE, "LookupSnapshot", "s", ("p3",))[0]
        self.assertEqual(S.bus.get_property(p3, SNAPSHOT_IFACE, "Parent"), "/")
        self.assertEqual(self.ok("parent", "vm1", "p4"), "p3\n")

        # QEMU's chains: base <- p3's overlay <- p4's overlay, and no deleted file in the graph
        for target in ("vda", "vdb"):
            chain = self.chain(target)
            self.assertEqual([os.path.basename(f) for f in chain[:2]], ["p4.%s.qcow2" % target, "p3.%s.qcow2" % target])
            self.assertEqual(len(chain), 3, chain)
            self.assertFalse(chain[2].startswith(S.images), chain)
            # the top overlay is the one the running guest writes to: qemu-img check reads it
            # mid-write and may see a cluster allocated past the end; the backing one is still
            rc, out = snaptest.image_check(chain[1])
            self.assertEqual(rc, 0, out)
        files = {n.get("file") for n in S.guest.block_graph()}
        for n in doomed:
            self.assertFalse([f for f in files if f and os.path.basename(f).startswith(n + ".")], files)

        # nothing (more) to do
        self.assertEqual(self.ok("prune", "vm1", "--keep", "2"),
                         "Domain vm1 has 2 snapshots, --keep=2: nothing to delete\n")
        for bad in (["prune", "vm1"], ["prune", "vm1", "--keep", "-1"], ["prune", "vm1", "--keep", "two"],
                    ["prune", "vm1", "--keep", ""]):
            self.assert_status(2, None, *bad)

    # --- bash completion --------------------------------------------------------------------

    def completion_env(self, env_address=None):
        """The built snapshotctl first in PATH; the system bus at env_address, if given."""
        env = dict(os.environ, PATH=os.path.dirname(CTL) + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        if env_address:
            env["DBUS_SYSTEM_BUS_ADDRESS"] = env_address
        return env

    def complete(self, line, env_address=None):
        """Candidates of _snapshotctl for the command line (completing at its end), with
        COMP_WORDS split at blanks and at '=' and ':' as bash does."""
        snaptest.require(os.path.exists(BASH_COMPLETION), "bash-completion is not installed")
        words = []
        for w in line.split(" "):
            words += re.findall(r"[=:]+|[^=:]+", w) if w else [""]
        script = """
            . %(bc)s
            . %(comp)s
            COMP_LINE=$1; COMP_POINT=${#1}; COMP_CWORD=$2; shift 2
            COMP_WORDS=("$@")
            _snapshotctl
            printf '%%s\\n' "${COMPREPLY[@]}"
        """ % {"bc": BASH_COMPLETION, "comp": COMPLETION}
        r = subprocess.run(["bash", "-c", script, "bash", line, str(len(words) - 1)] + words,
                           capture_output=True, text=True, timeout=60, env=self.completion_env(env_address))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        return [c for c in r.stdout.split("\n") if c]

    def test_06_completion(self):
        addr = "--address=" + S.bus.address
        self.assertEqual(self.names(), ["p3", "p4"])
        verbs = self.complete("snapshotctl ")
        self.assertIn("prune", verbs)
        self.assertIn("list-domains", verbs)
        self.assertEqual(self.complete("snapshotctl li"), ["list-domains", "list"])
        self.assertEqual(self.complete("snapshotctl %s pru" % addr), ["prune"])
        self.assertEqual(sorted(self.complete("snapshotctl prune vm1 --")),
                         sorted(["--keep", "--dry-run", "--no-progress", "--json=", "--help", "--version",
                                 "--address=", "--host=", "--no-ask-password"]))
        self.assertEqual(self.complete("snapshotctl list vm1 --json="), ["pretty", "short", "off"])
        self.assertEqual(self.complete("snapshotctl --json=s"), ["short"])

        # names from the daemon the line names: --address=ADDR, --address ADDR, or the environment
        self.assertEqual(self.complete("snapshotctl %s list " % addr), ["vm1"])
        self.assertEqual(self.complete("snapshotctl --address %s info v" % S.bus.address), ["vm1"])
        self.assertEqual(self.complete("snapshotctl info vm1 ", env_address=S.bus.address), ["p3", "p4"])
        self.assertEqual(self.complete("snapshotctl %s delete vm1 p" % addr), ["p3", "p4"])
        self.assertEqual(self.complete("snapshotctl %s dumpxml --security-info vm1 p4" % addr), ["p4"])
        self.assertEqual(self.complete("snapshotctl %s create-as --name x vm1 " % addr), [])
        self.assertEqual(self.complete("snapshotctl %s prune --keep 3 " % addr), ["vm1"])
        self.assertEqual(self.complete("snapshotctl %s prune --keep " % addr), [])
        self.assertEqual(self.complete("snapshotctl %s info vm1 p4 " % addr), [])
        # another bus: nothing there
        self.assertEqual(self.complete("snapshotctl --address=unix:path=/nonexistent list "), [])

    def test_07_completion_matches_help(self):
        """The verbs and per-verb options the completion knows are snapshotctl's own."""
        help_text = self.ok("--help")
        verbs = re.findall(r"(?m)^  ([a-z][a-z-]+)(?: |$)", help_text.split("Options:")[0])
        self.assertIn("prune", verbs)
        with open(COMPLETION) as f:
            comp = f.read()
        self.assertEqual(re.search(r"__snapshotctl_verbs='([^']*)'", comp).group(1).split(), verbs)
        known = dict(re.findall(r"(?m)^        \[([a-z-]+)\]='([^']*)'", comp.split("__snapshotctl_verb_arg_options")[0]))
        for verb in verbs:
            with self.subTest(verb=verb):
                h = self.ok("help", verb).split("Global options:")[0]
                opts = re.findall(r"(?m)^     (--[a-z-]+)(=|\[=)?", h)
                want = sorted(o + ("=" if o == "--json" else "") for o, _ in opts)
                self.assertEqual(sorted(known[verb].split()), want)

        # zsh's tables are bash's
        with open(ZSH_COMPLETION) as f:
            zsh = f.read()
        self.assertEqual(re.findall(r"(?m)^        '([a-z-]+):", zsh), verbs)
        for table, bash_table in (("verb_options", "__snapshotctl_verb_options"),
                                  ("verb_arg_options", "__snapshotctl_verb_arg_options"),
                                  ("verb_args", "__snapshotctl_verb_args")):
            with self.subTest(table=table):
                z = re.search(r"local -A %s=\(\n(.*?)\n\)" % table, zsh, re.S).group(1)
                b = re.search(r"declare -A %s=\(\n(.*?)\n\)" % bash_table, comp, re.S).group(1)
                self.assertEqual(dict(re.findall(r"([a-z-]+) '([^']*)'", z)),
                                 dict(re.findall(r"\[([a-z-]+)\]='([^']*)'", b)))

    # --- the man page -----------------------------------------------------------------------

    def test_08_man_page_names_everything(self):
        page = os.path.join(os.environ.get("SNAPSHOTD_BUILD_ROOT", ""), "man", "snapshotctl.1")
        snaptest.require(os.path.isfile(page), "the man page was not built (scdoc missing?)")
        with open(page) as f:
            text = re.sub(r"\\f[BIRP]", "", f.read()).replace("\\&", "").replace("\\-", "-")
        help_text = self.ok("--help")
        verbs = re.findall(r"(?m)^  ([a-z][a-z-]+)(?: |$)", help_text.split("Options:")[0])
        words = set(verbs)
        words |= set(re.findall(r"--[a-z][a-z-]+", help_text))
        for verb in verbs:
            words |= set(re.findall(r"--[a-z][a-z-]+", self.ok("help", verb)))
        for w in sorted(words):
            self.assertRegex(text, r"(?<![\w-])%s(?![\w-])" % re.escape(w), "snapshotctl(1) does not mention " + w)
        for status in re.findall(r"(?m)^  (\d+) ", help_text.split("Exit status:")[1]):
            self.assertRegex(text, r"\b%s\b" % status, "exit status %s" % status)
        for key in sorted(DOMAIN_KEYS | SNAPSHOT_KEYS | {"XML", "Deleted", "Kept", "DryRun", "Failed", "Keep"}):
            self.assertIn(key, text)

    # --- zsh completion ---------------------------------------------------------------------

    def test_09_zsh_completion(self):
        """The same as test_06, in an interactive zsh: Tab pressed at the end of each line."""
        addr = "--address=" + S.bus.address
        self.assertEqual(self.names(), ["p3", "p4"])

        def zsh(line, env_address=None):
            return snaptest.zsh_complete(line, self.completion_env(env_address))

        help_text = self.ok("--help")
        verbs = re.findall(r"(?m)^  ([a-z][a-z-]+)(?: |$)", help_text.split("Options:")[0])
        self.assertEqual(zsh("snapshotctl "), verbs + ["help"])
        self.assertEqual(zsh("snapshotctl li"), ["list-domains", "list"])
        self.assertEqual(zsh("snapshotctl help "), verbs)
        self.assertEqual(zsh("snapshotctl %s pru" % addr), ["prune"])
        self.assertEqual(sorted(zsh("snapshotctl prune vm1 --")),
                         sorted(["--keep", "--dry-run", "--no-progress", "--json=", "--help", "--version",
                                 "--address=", "--host=", "--no-ask-password"]))
        self.assertEqual(zsh("snapshotctl list vm1 --json="), ["pretty", "short", "off"])
        self.assertEqual(zsh("snapshotctl --json=s"), ["short"])

        # names from the daemon the line names: --address=ADDR, --address ADDR, or the environment
        self.assertEqual(zsh("snapshotctl %s list " % addr), ["vm1"])
        self.assertEqual(zsh("snapshotctl --address %s info v" % S.bus.address), ["vm1"])
        self.assertEqual(zsh("snapshotctl info vm1 ", env_address=S.bus.address), ["p3", "p4"])
        self.assertEqual(zsh("snapshotctl %s delete vm1 p" % addr), ["p3", "p4"])
        self.assertEqual(zsh("snapshotctl %s dumpxml --security-info vm1 p4" % addr), ["p4"])
        self.assertEqual(zsh("snapshotctl %s create-as --name x vm1 " % addr), [])
        self.assertEqual(zsh("snapshotctl %s prune --keep 3 " % addr), ["vm1"])
        self.assertEqual(zsh("snapshotctl %s prune --keep " % addr), [])
        self.assertEqual(zsh("snapshotctl %s info vm1 p4 " % addr), [])
        # another bus: nothing there
        self.assertEqual(zsh("snapshotctl --address=unix:path=/nonexistent list "), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
