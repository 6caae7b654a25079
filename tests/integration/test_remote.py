#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# snapshotctl -H/--host: snapshotd on "another machine", reached the way systemctl -H
# reaches it — sd-bus runs `ssh -xT root@HOST systemd-stdio-bridge` — against a real sshd.
#
# Debian's sshd runs on 127.0.0.1 on a free port with a throwaway host key, user key and
# config in a temp dir, in a private mount namespace: a tmpfs on /run there holds the
# privilege separation directory it insists on, and /run/dbus/system_bus_socket pointing at
# the test's private bus, which is what systemd-stdio-bridge (systemd 252) connects to as
# "the system bus" (it does not read DBUS_SYSTEM_BUS_ADDRESS; the config sets that too, for
# bridges that do). sd-bus runs plain `ssh` from PATH, so a wrapper `ssh` first in PATH adds
# `-F <our ssh_config>` (port, key, known_hosts, BatchMode). Nothing outside the temp dir
# and the namespace changes; sshd is stopped by its PID.

import json
import os
import shutil
import socket
import subprocess
import time
import unittest

import snaptest

S = snaptest.SharedDomain("snaprem-")
CTL = os.environ.get("SNAPSHOTCTL")
SSHD = "/usr/sbin/sshd"
HOST = "root@127.0.0.1"

SSHD_CONFIG = """\
ListenAddress 127.0.0.1:%(port)d
HostKey %(dir)s/host_key
PidFile %(dir)s/sshd.pid
AuthorizedKeysFile %(dir)s/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
X11Forwarding no
SetEnv DBUS_SYSTEM_BUS_ADDRESS=%(bus)s
"""

SSH_CONFIG = """\
Host *
        Port %(port)d
        IdentityFile %(dir)s/id
        IdentitiesOnly yes
        UserKnownHostsFile %(dir)s/known_hosts
        GlobalKnownHostsFile /dev/null
        StrictHostKeyChecking yes
        BatchMode yes
        ConnectTimeout 10
        LogLevel ERROR
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, workdir, bus_socket, bus_address):
        self.dir = workdir
        self.bus_socket = bus_socket
        self.bus_address = bus_address
        self.port = free_port()
        self.proc = None
        self.log = os.path.join(workdir, "sshd.log")
        self.bin = os.path.join(workdir, "bin")

    def start(self):
        os.makedirs(self.bin)
        for key in ("host_key", "id"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(self.dir, key)],
                           check=True)
        shutil.copy(os.path.join(self.dir, "id.pub"), os.path.join(self.dir, "authorized_keys"))
        with open(os.path.join(self.dir, "host_key.pub")) as f:
            host_key = " ".join(f.read().split()[:2])
        with open(os.path.join(self.dir, "known_hosts"), "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (self.port, host_key))
        values = {"port": self.port, "dir": self.dir, "bus": self.bus_address}
        with open(os.path.join(self.dir, "sshd_config"), "w") as f:
            f.write(SSHD_CONFIG % values)
        with open(os.path.join(self.dir, "ssh_config"), "w") as f:
            f.write(SSH_CONFIG % values)
        wrapper = os.path.join(self.bin, "ssh")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec /usr/bin/ssh -F %s/ssh_config "$@"\n' % self.dir)
        os.chmod(wrapper, 0o755)

        # sshd -D stays in the foreground as the process we started (exec), so its PID is ours.
        script = ("set -e; mount -t tmpfs -o mode=0755 snaptest-run /run; mkdir -m 0755 /run/sshd /run/dbus; "
                  "ln -s %s /run/dbus/system_bus_socket; exec %s -D -e -f %s/sshd_config"
                  % (self.bus_socket, SSHD, self.dir))
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while "Server listening" not in self.read_log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("sshd did not start:\n" + self.read_log())
            time.sleep(0.05)

    def read_log(self):
        try:
            with open(self.log) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def env(self):
        env = dict(os.environ, PATH=self.bin + ":" + os.environ.get("PATH", "/usr/bin:/bin"), LC_ALL="C.UTF-8")
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)      # -H must not need it
        return env


SSH = None


def setUpModule():
    global SSH
    snaptest.require(CTL and os.access(CTL, os.X_OK), "SNAPSHOTCTL does not name the built client")
    snaptest.require(os.access(SSHD, os.X_OK) and shutil.which("ssh"), "openssh-server/openssh-client missing")
    snaptest.require(shutil.which("systemd-stdio-bridge"), "systemd-stdio-bridge missing")
    snaptest.require(os.geteuid() == 0, "sshd in a mount namespace needs root")
    S.start()
    try:
        work = os.path.join(S.tmp, "ssh")
        os.makedirs(work)
        sock = S.bus.address.split("unix:path=", 1)[1].split(",", 1)[0]
        SSH = Sshd(work, sock, S.bus.address)
        SSH.start()
    except BaseException:
        if SSH:
            SSH.stop()
        S.stop()
        raise


def tearDownModule():
    if SSH:
        SSH.stop()
    S.stop()


class RemoteTest(snaptest.SharedTestCase):
    shared = S

    def tearDown(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result and any(getattr(t, "test_case", t) is self for t, _ in result.errors + result.failures):
            print("\n===== sshd log =====\n" + SSH.read_log()[-5000:])
        super().tearDown()

    def remote(self, *args, host=HOST, timeout=120):
        return subprocess.run([CTL, "-H", host] + list(args), capture_output=True, text=True, timeout=timeout,
                              env=SSH.env())

    def ok(self, *args, **kwargs):
        r = self.remote(*args, **kwargs)
        self.assertEqual(r.returncode, 0, "snapshotctl -H %s: %s" % (" ".join(args), r.stderr))
        return r

    def local(self, *args):
        return subprocess.run([CTL, "--address=" + S.bus.address] + list(args), capture_output=True, text=True,
                              timeout=120)

    def test_01_list_domains(self):
        r = self.ok("list-domains")
        self.assertRegex(r.stdout, r"(?m)^ vm1 +running +- +yes$")
        self.assertEqual([d["Name"] for d in json.loads(self.ok("list-domains", "--json=short").stdout)], ["vm1"])
        self.assertEqual(self.ok("--host=" + HOST, "list-domains", "--name").stdout, "vm1\n")

    def test_02_create_list_delete(self):
        r = self.ok("create-as", "vm1", "r1", "taken over ssh", "--disk-only", "--atomic")
        self.assertEqual(r.stdout, "Domain snapshot r1 created\n")
        # the job's Progress signals came through the bridge as well
        self.assertIn("progress: disks", r.stderr)
        for target in ("vda", "vdb"):
            self.assertTrue(os.path.isfile(os.path.join(S.images, "r1.%s.qcow2" % target)))
        self.assertEqual(self.ok("list", "vm1", "--name").stdout, "r1\n")
        self.assertEqual(json.loads(self.ok("list", "vm1", "--json").stdout),
                         json.loads(self.local("list", "vm1", "--json").stdout))
        self.assertIn("taken over ssh", self.ok("info", "vm1", "r1").stdout)

        self.ok("create-as", "vm1", "r2", "--disk-only", "--no-progress")
        self.assertEqual(json.loads(self.ok("current", "vm1", "--name", "--json=short").stdout)["Name"], "r2")
        done = json.loads(self.ok("prune", "vm1", "--keep=1", "--json=short", "--no-progress").stdout)
        self.assertEqual([d["Name"] for d in done["Deleted"]], ["r1"])
        self.assertEqual(self.local("list", "vm1", "--name").stdout, "r2\n")
        self.assertFalse(os.path.exists(os.path.join(S.images, "r1.vda.qcow2")))

    def test_03_memory_image_is_not_read_here(self):
        self.ok("create-as", "vm1", "m1", "--memspec", "file=m1.mem", "--no-progress")
        r = self.ok("info", "vm1", "m1")
        self.assertIn("Memory Image:   not read: the file is on the remote host\n", r.stdout)
        self.assertNotIn("MemoryImage", json.loads(self.ok("info", "vm1", "m1", "--json").stdout))
        self.assertIn("MemoryImage", json.loads(self.local("info", "vm1", "m1", "--json").stdout))
        self.assertEqual(self.ok("delete", "vm1", "m1", "--no-progress").stdout, "Domain snapshot m1 deleted\n")
        self.assertFalse(os.path.exists(os.path.join(S.images, "m1.mem")))

    def test_04_errors(self):
        # error names and exit statuses cross the bridge
        r = self.remote("info", "vm1", "nosuch")
        self.assertEqual(r.returncode, 4, r.stderr)
        self.assertIn("org.example.Snapshot1.Error.NoSuchSnapshot", r.stderr)
        # -H and --address exclude each other
        r = self.remote("--address=" + S.bus.address, "list-domains")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("exclude each other", r.stderr)
        # a host that does not answer: ssh's complaint, then a failure
        r = self.remote("list-domains", host="root@127.0.0.2")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("ssh: connect to host 127.0.0.2", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_05_completion_asks_the_host(self):
        """bash completion passes -H on to the snapshotctl it runs for names."""
        comp = os.path.join(snaptest.SOURCE_ROOT, "completion", "snapshotctl.bash")
        snaptest.require(os.path.exists("/usr/share/bash-completion/bash_completion"), "bash-completion missing")
        names = self.ok("list", "vm1", "--name").stdout.split()
        self.assertTrue(names)
        script = """
            . /usr/share/bash-completion/bash_completion
            . %s
            COMP_LINE=$1; COMP_POINT=${#1}; COMP_CWORD=$2; shift 2
            COMP_WORDS=("$@")
            _snapshotctl
            printf '%%s\\n' "${COMPREPLY[@]}"
        """ % comp
        env = SSH.env()
        env["PATH"] = os.path.dirname(CTL) + ":" + env["PATH"]
        for words, want in ((["snapshotctl", "-H", HOST, "list", ""], ["vm1"]),
                            (["snapshotctl", "-H", HOST, "info", "vm1", ""], names)):
            r = subprocess.run(["bash", "-c", script, "bash", " ".join(words), str(len(words) - 1)] + words,
                               capture_output=True, text=True, timeout=60, env=env)
            self.assertEqual((r.returncode, r.stderr), (0, ""))
            self.assertEqual(r.stdout.split(), want)

    def test_06_zsh_completion_asks_the_host(self):
        """zsh completion passes -H (and --host=) on to the snapshotctl it runs for names."""
        names = self.ok("list", "vm1", "--name").stdout.split()
        self.assertTrue(names)
        env = SSH.env()
        env["PATH"] = os.path.dirname(CTL) + ":" + env["PATH"]
        self.assertEqual(snaptest.zsh_complete("snapshotctl -H %s list " % HOST, env), ["vm1"])
        self.assertEqual(snaptest.zsh_complete("snapshotctl --host=%s info vm1 " % HOST, env), names)


if __name__ == "__main__":
    unittest.main(verbosity=2)
