#!/usr/bin/python3
# Authorization end to end with a real polkitd on the tests' private system bus.
#
# The file re-executes itself in new mount and pid namespaces (unshare), where it
# bind-mounts test directories over polkit's action and rule directories and a
# /etc/passwd and /etc/group with test users over the host's: the host stays unchanged and
# its own rules are hidden. Outcomes are decided by the .rules file below (without logind
# every subject is inactive and non-local, so the defaults would decide nothing useful).
# Non-root callers are this same file run as the test user (setpriv ... --call SPEC).
#
# One guest, one bus, one polkitd and one snapshotd serve the whole file. The daemon runs
# under valgrind (or SNAPSHOTD_TEST_WRAPPER), and the last test stops it and requires a
# clean exit: no memory error and no leak after callers that vanished mid-check.

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

NS_ENV = "SNAPSHOTD_POLKIT_NS"

BUS_NAME = "org.example.Snapshot1"
MANAGER_PATH = "/org/example/Snapshot1"
MANAGER_IFACE = "org.example.Snapshot1.Manager"
DOMAIN_IFACE = "org.example.Snapshot1.Domain"
SNAPSHOT_IFACE = "org.example.Snapshot1.Snapshot"
ERR = "org.example.Snapshot1.Error."
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
INTERACTIVE = "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
LIMITS = "org.freedesktop.DBus.Error.LimitsExceeded"
POLKITD = "/usr/lib/polkit-1/polkitd"
PK_NAME = "org.freedesktop.PolicyKit1"


# --- the caller side: runs as a test user ------------------------------------------------

def run_calls(spec):
    """Make the calls of spec on a new bus connection and print their outcomes as JSON.
    mode "sync": one after the other; "async": all at once, wait for all (or timeout);
    "async-exit": all at once, then exit after exit_after seconds whatever is pending."""
    import gi
    gi.require_version("Gio", "2.0")
    from gi.repository import Gio, GLib

    conn = Gio.DBusConnection.new_for_address_sync(
        spec["address"], Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
        | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    def params(sig, args):
        if not sig:
            return None
        out = []
        for a in args:
            if isinstance(a, dict):  # a{sv}: values come as [signature, value]
                a = {k: GLib.Variant(x[0], x[1]) for k, x in a.items()}
            out.append(a)
        return GLib.Variant("(%s)" % sig, tuple(out))

    def outcome(fn):
        try:
            r = fn()
            return {"reply": list(r.unpack()) if r is not None else []}
        except GLib.Error as e:
            name = Gio.DBusError.get_remote_error(e) or "%s.%d" % (e.domain, e.code)
            Gio.DBusError.strip_remote_error(e)
            return {"error": name, "message": e.message}

    calls = spec["calls"]
    results = [None] * len(calls)
    timeout_ms = int(spec.get("timeout", 60) * 1000)

    def flags(c):
        f = Gio.DBusCallFlags.NONE
        if c.get("interactive"):
            f |= Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION
        return f

    if spec.get("mode", "sync") == "sync":
        for i, c in enumerate(calls):
            results[i] = outcome(lambda: conn.call_sync(
                BUS_NAME, c["path"], c["iface"], c["method"], params(c.get("sig"), c.get("args", [])),
                None, flags(c), timeout_ms, None))
    else:
        loop = GLib.MainLoop()

        def done(source, res, i):
            results[i] = outcome(lambda: source.call_finish(res))
            if all(r is not None for r in results):
                loop.quit()

        for i, c in enumerate(calls):
            conn.call(BUS_NAME, c["path"], c["iface"], c["method"],
                      params(c.get("sig"), c.get("args", [])), None, flags(c), timeout_ms, None,
                      done, i)
        if spec["mode"] == "async-exit":
            GLib.timeout_add(int(spec["exit_after"] * 1000), loop.quit)
        else:
            GLib.timeout_add(timeout_ms + 5000, loop.quit)
        loop.run()
    sys.stdout.write(json.dumps(results) + "\n")
    sys.stdout.flush()
    # Leave without closing anything: for async-exit the daemon sees the caller vanish.
    os._exit(0)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--call":
    run_calls(json.loads(sys.argv[2]))

if __name__ == "__main__" and os.environ.get(NS_ENV) != "1":
    # Everything below needs its own mount and pid namespace; get them and start again.
    if os.geteuid() != 0 or not shutil.which("unshare"):
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
        import snaptest
        snaptest.require(False, "the polkit tests need root and unshare(1)")
    os.environ[NS_ENV] = "1"
    argv = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child",
            "--mount-proc", sys.executable, os.path.abspath(__file__)] + sys.argv[1:]
    sys.stdout.flush()
    sys.exit(subprocess.call(argv))

import snaptest  # noqa: E402  (only in the namespace: the caller side above needs none of it)
from snaptest import Bus, Guest  # noqa: E402


# --- the test world ------------------------------------------------------------------------

USERS = {
    # name: uid (gid = uid; "snapgroup" is also in group "snapshot")
    "snapgrant": 4201,   # rules: YES to everything
    "snapdeny": 4202,    # rules: NO to everything but list
    "snapask": 4203,     # rules: AUTH_ADMIN (a challenge) to everything but list
    "snapblind": 4204,   # rules: NO to everything, list included
    "snapgroup": 4205,   # only the shipped example rules (group "snapshot")
}
SNAPSHOT_GID = 4300

TEST_RULES = r"""
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.example.snapshot1.") !== 0)
        return polkit.Result.NOT_HANDLED;
    polkit.log("snapshotd-test: action=" + action.id + " user=" + subject.user +
               " domain=" + action.lookup("domain") + " snapshot=" + action.lookup("snapshot"));
    var list = action.id == "org.example.snapshot1.list";
    switch (subject.user) {
    case "snapgrant":
        return polkit.Result.YES;
    case "snapdeny":
        return list ? polkit.Result.NOT_HANDLED : polkit.Result.NO;
    case "snapask":
        return list ? polkit.Result.NOT_HANDLED : polkit.Result.AUTH_ADMIN;
    case "snapblind":
        return polkit.Result.NO;
    }
    return polkit.Result.NOT_HANDLED;
});
"""

VALGRIND = ("valgrind --quiet --error-exitcode=99 --leak-check=full "
            "--errors-for-leak-kinds=definite --show-leak-kinds=definite --track-fds=no")


class S:
    tmp = guest = bus = polkitd = None
    images = state_dir = config_dir = None
    domain = base = None
    base_name = None
    n_bases = 0
    failed = False


def sh(*argv):
    subprocess.run(argv, check=True)


def make_world():
    S.tmp = tempfile.mkdtemp(prefix="snapk-", dir="/tmp")
    os.chmod(S.tmp, 0o755)
    etc = os.path.join(S.tmp, "etc")
    actions = os.path.join(S.tmp, "actions")
    rules = os.path.join(S.tmp, "rules")
    vendor_rules = os.path.join(S.tmp, "vendor-rules")
    for d in (etc, actions, rules, vendor_rules):
        os.makedirs(d)
        os.chmod(d, 0o755)

    with open("/etc/passwd") as f:
        passwd = f.read()
    with open("/etc/group") as f:
        group = f.read()
    for name, uid in USERS.items():
        passwd += "%s:x:%d:%d:snapshotd test:/nonexistent:/usr/sbin/nologin\n" % (name, uid, uid)
        group += "%s:x:%d:\n" % (name, uid)
    group += "snapshot:x:%d:snapgroup\n" % SNAPSHOT_GID
    for path, text in ((os.path.join(etc, "passwd"), passwd), (os.path.join(etc, "group"), group)):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)

    src = snaptest.SOURCE_ROOT
    shutil.copy(os.path.join(src, "polkit", "org.example.snapshot1.policy"), actions)
    with open(os.path.join(rules, "10-snapshotd-test.rules"), "w") as f:
        f.write(TEST_RULES)
    shutil.copy(os.path.join(src, "polkit", "50-snapshotd-example.rules"), rules)
    for d in (actions, rules):
        for n in os.listdir(d):
            os.chmod(os.path.join(d, n), 0o644)

    # This mount namespace is ours alone: the host never sees these mounts.
    sh("mount", "--bind", actions, "/usr/share/polkit-1/actions")
    sh("mount", "--bind", rules, "/etc/polkit-1/rules.d")
    sh("mount", "--bind", vendor_rules, "/usr/share/polkit-1/rules.d")
    sh("mount", "--bind", os.path.join(etc, "passwd"), "/etc/passwd")
    sh("mount", "--bind", os.path.join(etc, "group"), "/etc/group")


def start_polkitd():
    log = open(os.path.join(S.tmp, "polkitd.log"), "a")
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=S.bus.address)
    S.polkitd = subprocess.Popen([POLKITD], stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, env=env)
    log.close()
    deadline = time.monotonic() + 20
    while not S.bus.name_has_owner(PK_NAME):
        if S.polkitd.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("polkitd did not take its name:\n" + read(os.path.join(S.tmp, "polkitd.log")))
        time.sleep(0.01)


def stop_polkitd(sig=signal.SIGTERM):
    if S.polkitd and S.polkitd.poll() is None:
        S.polkitd.send_signal(sig)
        S.polkitd.wait(10)
    S.polkitd = None
    deadline = time.monotonic() + 10
    while S.bus.name_has_owner(PK_NAME) and time.monotonic() < deadline:
        time.sleep(0.01)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def setUpModule():
    snaptest.require(os.path.exists(POLKITD), "polkitd is not installed (apt-get install polkitd)")
    snaptest.require(shutil.which("setpriv") is not None, "setpriv (util-linux) is missing")
    wrapper = os.environ.get("SNAPSHOTD_TEST_WRAPPER")
    if not wrapper:
        snaptest.require(shutil.which("valgrind") is not None, "valgrind is not installed")
        os.environ["SNAPSHOTD_TEST_WRAPPER"] = VALGRIND
    make_world()
    S.guest = Guest(os.path.join(S.tmp, "g"))
    S.guest.start()
    S.guest.wait_ready()
    S.bus = Bus(os.path.join(S.tmp, "bus"),
                # Room above the daemon's own bound, so that is what the tests meet.
                extra_config='<limit name="max_replies_per_connection">4096</limit>')
    os.makedirs(S.bus.tmpdir)
    os.chmod(S.bus.tmpdir, 0o755)
    S.bus.start()
    start_polkitd()
    S.config_dir = os.path.join(S.tmp, "conf")
    S.state_dir = os.path.join(S.tmp, "state")
    S.images = os.path.join(S.tmp, "images")
    os.makedirs(S.images)
    S.guest.domain_config(S.config_dir, "vm1", images_dir=S.images)
    S.bus.start_daemon(S.config_dir, S.state_dir)
    S.domain = S.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm1",))[0]
    deadline = time.monotonic() + 30
    while S.bus.get_property(S.domain, DOMAIN_IFACE, "State") != "running":
        if time.monotonic() > deadline:
            raise TimeoutError("domain vm1 did not come up")
        time.sleep(0.1)
    new_base()


def new_base():
    """A snapshot for Revert and Delete to act on, taken by root. (A snapshot forgotten
    with Delete's metadata-only keeps its overlay files, so each gets a new name.)"""
    S.n_bases += 1
    S.base_name = "base%d" % S.n_bases
    S.base = create_as_root(S.base_name)


def create_as_root(name):
    from gi.repository import GLib
    return S.bus.call(S.domain, DOMAIN_IFACE, "CreateSnapshot", "ssa{sv}",
                      (name, "", {"disk-only": GLib.Variant("b", True)}), timeout=120)[0]


def tearDownModule():
    if S.bus:
        S.bus.stop_daemon()
        if S.polkitd:
            stop_polkitd()
        S.bus.stop()
    if S.guest:
        S.guest.stop()
    if S.failed or os.environ.get("SNAPSHOTD_TEST_KEEP") == "1":
        sys.stderr.write("kept %s\n" % S.tmp)
    else:
        shutil.rmtree(S.tmp, ignore_errors=True)


# --- the methods under test ------------------------------------------------------------------

def mutating_calls():
    """Every method that changes something: (name, action, call, outcome for a granted
    caller: None = success, else the error it meets after authorization)."""
    dom, snap = S.domain, S.base
    bogus_qmp = os.path.join(S.tmp, "no-such-qmp.sock")
    xml = "<domainsnapshot><name>pk-xml</name></domainsnapshot>"
    return [
        ("CreateSnapshot", "create",
         dict(path=dom, iface=DOMAIN_IFACE, method="CreateSnapshot", sig="ssa{sv}",
              args=["pk-create", "", {"disk-only": ["b", True]}]), None),
        ("CreateSnapshotXML", "create",
         dict(path=dom, iface=DOMAIN_IFACE, method="CreateSnapshotXML", sig="st", args=[xml, 16]), None),
        ("AbortJob", "create",
         dict(path=dom, iface=DOMAIN_IFACE, method="AbortJob"), ERR + "OperationInvalid"),
        ("Revert", "revert",
         dict(path=snap, iface=SNAPSHOT_IFACE, method="Revert", sig="t", args=[0]), ERR + "OperationUnsupported"),
        ("Delete", "delete",
         dict(path=snap, iface=SNAPSHOT_IFACE, method="Delete", sig="t", args=[2]), None),
        ("RegisterDomain", "manage",
         dict(path=MANAGER_PATH, iface=MANAGER_IFACE, method="RegisterDomain", sig="ssa{sv}",
              args=["pk-dom", bogus_qmp, {"images-dir": ["s", os.path.join(S.tmp, "pk-dom-images")]}]), None),
        ("UnregisterDomain", "manage",
         dict(path=MANAGER_PATH, iface=MANAGER_IFACE, method="UnregisterDomain", sig="s", args=["pk-dom"]), None),
        ("Reload", "manage",
         dict(path=MANAGER_PATH, iface=MANAGER_IFACE, method="Reload"), None),
        ("Start", "manage",
         dict(path=dom, iface=DOMAIN_IFACE, method="Start", sig="t", args=[0]), ERR + "OperationUnsupported"),
        ("Stop", "manage",
         dict(path=dom, iface=DOMAIN_IFACE, method="Stop", sig="t", args=[0]), ERR + "OperationUnsupported"),
    ]


def read_calls():
    return [
        dict(path=MANAGER_PATH, iface=MANAGER_IFACE, method="ListDomains"),
        dict(path=MANAGER_PATH, iface=MANAGER_IFACE, method="GetDomain", sig="s", args=["vm1"]),
        dict(path=S.domain, iface=DOMAIN_IFACE, method="ListSnapshots", sig="t", args=[0]),
        dict(path=S.domain, iface=DOMAIN_IFACE, method="LookupSnapshot", sig="s", args=[S.base_name]),
        dict(path=S.base, iface=SNAPSHOT_IFACE, method="GetXMLDesc", sig="t", args=[0]),
        dict(path=S.base, iface=SNAPSHOT_IFACE, method="ListChildren", sig="t", args=[0]),
    ]


class PolkitTest(unittest.TestCase):
    maxDiff = None

    def tearDown(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result and any(t is self for t, _ in result.errors + result.failures):
            S.failed = True
            sys.stderr.write("\n===== snapshotd log =====\n%s\n" % S.bus.read_daemon_log()[-20000:])
            sys.stderr.write("\n===== polkitd log =====\n%s\n" % read(os.path.join(S.tmp, "polkitd.log"))[-8000:])
        if S.polkitd is None or S.polkitd.poll() is not None:
            start_polkitd()

    # helpers
    def as_user(self, user, calls, mode="sync", exit_after=None, timeout=60):
        uid = USERS[user]
        spec = {"address": S.bus.address, "calls": calls, "mode": mode, "timeout": timeout}
        if exit_after is not None:
            spec["exit_after"] = exit_after
        p = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--init-groups",
                            "/usr/bin/python3", os.path.abspath(__file__), "--call", json.dumps(spec)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={"PATH": "/usr/bin:/bin", "HOME": S.tmp}, timeout=timeout + 30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def world(self):
        """What a call may change: files, metadata, domains, the guest."""
        files = []
        for top in (S.images, S.state_dir, S.config_dir):
            for root, dirs, names in os.walk(top):
                for n in dirs + names:
                    files.append(os.path.relpath(os.path.join(root, n), S.tmp))
        return {"files": sorted(files),
                "domains": S.bus.call(MANAGER_PATH, MANAGER_IFACE, "ListDomains")[0],
                "snapshots": S.bus.call(S.domain, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0],
                "current": S.bus.get_property(S.domain, DOMAIN_IFACE, "CurrentSnapshot"),
                "nodes": sorted(n["node-name"] for n in S.guest.block_graph()),
                "status": S.guest.status()}

    def assert_alive(self):
        self.assertEqual(S.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", ("vm1",))[0], S.domain)
        self.assertIsNone(S.bus.daemon.poll(), "snapshotd exited")

    # tests
    def test_01_granted_by_rule(self):
        """A caller the rules grant gets every method through to its own next step."""
        for name, action, call, expect in mutating_calls():
            with self.subTest(method=name):
                r = self.as_user("snapgrant", [call], timeout=120)[0]
                if expect is None:
                    self.assertIn("reply", r, r)
                else:
                    self.assertEqual(r.get("error"), expect, r)
        # What the granted calls did is really there.
        names = [S.bus.get_property(p, SNAPSHOT_IFACE, "Name")
                 for p in S.bus.call(S.domain, DOMAIN_IFACE, "ListSnapshots", "t", (0,))[0]]
        self.assertIn("pk-create", names)
        self.assertIn("pk-xml", names)
        self.assertNotIn(S.base_name, names)   # Delete (metadata-only) went through
        self.assertTrue(any(f.startswith("pk-create.") for f in os.listdir(S.images)), os.listdir(S.images))
        # polkitd saw the details: domain and snapshot names.
        log = read(os.path.join(S.tmp, "polkitd.log"))
        self.assertIn("action=org.example.snapshot1.create user=snapgrant domain=vm1 snapshot=pk-create", log)
        self.assertIn("action=org.example.snapshot1.delete user=snapgrant domain=vm1 snapshot=%s" % S.base_name, log)
        # Back to a snapshot to act on for the next tests.
        new_base()

    def check_refused(self, user, error, interactive=False):
        before = self.world()
        calls = []
        for name, action, call, _ in mutating_calls():
            c = dict(call)
            c["interactive"] = interactive
            calls.append(c)
        # All at once: ten checks in flight from one caller, under the per-caller bound.
        results = self.as_user(user, calls, mode="async")
        for (name, action, _, _), r in zip(mutating_calls(), results):
            with self.subTest(method=name):
                self.assertEqual(r.get("error"), error, r)
                if error == ACCESS_DENIED:
                    self.assertIn("org.example.snapshot1." + action, r["message"])
        self.assertEqual(self.world(), before)

    def test_02_denied_by_rule(self):
        self.check_refused("snapdeny", ACCESS_DENIED)

    def test_03_challenge(self):
        self.check_refused("snapask", INTERACTIVE)

    def test_04_challenge_interactive_without_agent(self):
        # The caller allows interaction, but there is no authentication agent: still no.
        before = self.world()
        r = self.as_user("snapask", [dict(mutating_calls()[0][2], interactive=True)])[0]
        self.assertIn(r.get("error"), (INTERACTIVE, ACCESS_DENIED), r)
        self.assertEqual(self.world(), before)

    def test_05_read_only_methods(self):
        # list is allowed to anyone by the action's defaults...
        for r in self.as_user("snapdeny", read_calls()):
            self.assertIn("reply", r, r)
        # ...and a rule can take it away; the methods ask (properties are not checked).
        for r in self.as_user("snapblind", read_calls()):
            self.assertEqual(r.get("error"), ACCESS_DENIED, r)
            self.assertIn("org.example.snapshot1.list", r["message"])

    def test_06_example_rules_group(self):
        """The shipped example: group "snapshot" may create and revert; delete needs an admin."""
        calls = {c[0]: c[2] for c in mutating_calls()}
        create = dict(calls["CreateSnapshot"], args=["pk-group", "", {"disk-only": ["b", True]}])
        r = self.as_user("snapgroup", [create, calls["Revert"], calls["Delete"], calls["Reload"]], timeout=120)
        self.assertIn("reply", r[0], r[0])
        self.assertEqual(r[1].get("error"), ERR + "OperationUnsupported", r[1])
        self.assertEqual(r[2].get("error"), INTERACTIVE, r[2])
        self.assertEqual(r[3].get("error"), INTERACTIVE, r[3])   # manage: the policy's default

    def test_07_pkcheck_agrees(self):
        """Cross-check the rules with polkit's own client for a process of each user."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=S.bus.address)
        for user, want in (("snapgrant", 0), ("snapdeny", 1), ("snapask", 2)):
            uid = USERS[user]
            sleeper = subprocess.Popen(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                                        "--init-groups", "sleep", "30"])
            try:
                time.sleep(0.1)
                p = subprocess.run(["pkcheck", "--action-id", "org.example.snapshot1.create",
                                    "--process", str(sleeper.pid)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                with self.subTest(user=user):
                    self.assertEqual(p.returncode, want, p.stdout)
            finally:
                sleeper.kill()
                sleeper.wait()

    def test_08_snapshotctl_as_user(self):
        ctl = os.environ.get("SNAPSHOTCTL")
        snaptest.require(ctl and os.access(ctl, os.X_OK), "SNAPSHOTCTL does not name the built client")
        cases = (("snapgrant", ["create-as", "vm1", "pk-ctl", "--disk-only"], None),
                 ("snapdeny", ["create-as", "vm1", "pk-ctl-no", "--disk-only"], "org.example.snapshot1.create"),
                 ("snapdeny", ["list", "vm1"], None),
                 ("snapblind", ["list", "vm1"], "org.example.snapshot1.list"))
        for user, args, denied in cases:
            uid = USERS[user]
            p = subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--init-groups",
                                ctl, "--address=" + S.bus.address, "--no-ask-password"] + args,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
            with self.subTest(user=user, args=args):
                if denied is None:
                    self.assertEqual(p.returncode, 0, p.stdout)
                else:
                    self.assertEqual(p.returncode, 77, p.stdout)    # snapshotctl(1): not authorized
                    self.assertIn(denied, p.stdout)

    def test_10_polkitd_stopped(self):
        stop_polkitd()
        before = self.world()
        r = self.as_user("snapgrant", [mutating_calls()[0][2], read_calls()[2]])
        for x in r:
            self.assertEqual(x.get("error"), ACCESS_DENIED, x)
            self.assertIn("polkit could not be asked", x["message"])
        self.assertEqual(self.world(), before)
        # root is served without polkit
        self.assertEqual(S.bus.call(MANAGER_PATH, MANAGER_IFACE, "Reload"), ())
        name = S.bus.get_property(create_as_root("pk-root"), SNAPSHOT_IFACE, "Name")
        self.assertEqual(name, "pk-root")

    def test_11_polkitd_killed_during_check(self):
        S.polkitd.send_signal(signal.SIGSTOP)
        p = subprocess.Popen(["setpriv", "--reuid=%d" % USERS["snapgrant"], "--regid=%d" % USERS["snapgrant"],
                              "--init-groups", "/usr/bin/python3", os.path.abspath(__file__), "--call",
                              json.dumps({"address": S.bus.address, "mode": "async", "timeout": 60,
                                          "calls": [mutating_calls()[7][2]]})],
                             stdout=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin", "HOME": S.tmp})
        time.sleep(1.5)    # the check reached the stopped polkitd
        self.assertIsNone(p.poll(), "the call was answered although polkitd is stopped")
        S.polkitd.kill()
        S.polkitd.wait()
        S.polkitd = None
        out, _ = p.communicate(timeout=60)
        r = json.loads(out)[0]
        self.assertEqual(r.get("error"), ACCESS_DENIED, r)
        self.assertIn("polkit could not be asked", r["message"])
        self.assert_alive()

    def test_12_limits_and_vanishing_callers(self):
        """Checks are bounded per caller; checks of callers that left are dropped, so they
        do not count against the total bound (16 per caller, 128 in all)."""
        S.polkitd.send_signal(signal.SIGSTOP)
        try:
            reload = mutating_calls()[7][2]
            # One caller, 20 calls: 16 wait for polkit, 4 are refused at once.
            r = self.as_user("snapgrant", [reload] * 20, mode="async-exit", exit_after=2)
            self.assertEqual(sum(1 for x in r if x and x.get("error") == LIMITS), 4, r)
            self.assertEqual(sum(1 for x in r if x is None), 16, r)
            # Nine more callers that leave with 16 checks pending each: 160 > 128, which
            # only fits if the checks of the callers gone were dropped.
            for i in range(9):
                r = self.as_user("snapgrant", [reload] * 16, mode="async-exit", exit_after=0.7)
                self.assertEqual(r, [None] * 16, "caller %d: %s" % (i, r))
            self.assert_alive()
        finally:
            S.polkitd.send_signal(signal.SIGCONT)
        # polkitd now answers checks for callers long gone; the daemon shrugs.
        r = self.as_user("snapgrant", [reload])[0]
        self.assertIn("reply", r, r)
        self.assert_alive()

    def test_99_clean_exit(self):
        """Last: the daemon (under valgrind) exits cleanly: no memory error, no leak."""
        rc = S.bus.stop_daemon(timeout=120)
        self.assertEqual(rc, 0, S.bus.read_daemon_log()[-20000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
