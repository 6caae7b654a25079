# Test harness for snapshotd's integration tests (run with /usr/bin/python3).
#
#   guest_cache()         build (once, cached) the test guest; returns its directory
#   Guest                 a real QEMU running the test guest, with a test QMP monitor,
#                         a QMP socket for the daemon and the guest agent socket
#   Bus                   a private dbus-daemon (system-bus config) + the built snapshotd
#   SnapTestCase          unittest base: temp dir, guests and buses cleaned up, their logs
#                         printed only when the test failed
#   require(cond, why)    skip normally, fail when CI=true
#   zsh_complete(line)    what completion/_snapshotctl offers for a line in a real zsh
#
# Environment: SNAPSHOTD (daemon binary), SNAPSHOTD_BUILD_ROOT (cache location),
# SNAPSHOTD_TEST_ACCEL=kvm|tcg, SNAPSHOTD_TEST_SLOW=1 (a sanitizer build: longer waits),
# SNAPSHOTD_TEST_WRAPPER (e.g. "valgrind -q" for the
# daemon), SNAPSHOTD_TEST_KEEP=1 (keep temp dirs), CI=true (skips become failures).

import base64
import fcntl
import itertools
import json
import os
import random
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
from xml.sax.saxutils import quoteattr

BUS_NAME = "org.example.Snapshot1"
MANAGER_PATH = "/org/example/Snapshot1"
MANAGER_IFACE = "org.example.Snapshot1.Manager"
DOMAIN_IFACE = "org.example.Snapshot1.Domain"
SNAPSHOT_IFACE = "org.example.Snapshot1.Snapshot"
ERROR_PREFIX = "org.example.Snapshot1.Error."

SOURCE_ROOT = os.environ.get("SNAPSHOTD_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_GUEST = os.path.join(SOURCE_ROOT, "tests", "guest", "build-guest.sh")
ZSH_COMPLETE = os.path.join(SOURCE_ROOT, "tests", "lib", "complete.zsh")


def in_ci():
    return os.environ.get("CI") == "true"


def require(cond, why):
    """Skip the test when cond is false; in CI (CI=true) fail instead."""
    if cond:
        return
    if in_ci():
        raise AssertionError("required in CI: " + why)
    raise unittest.SkipTest(why)


def zsh_complete(line, env):
    """The candidates zsh's completion offers when Tab is pressed at the end of line, with
    completion/_snapshotctl in $fpath (complete.zsh types it into an interactive zsh on a
    pseudo-terminal), in the order offered, each once."""
    require(shutil.which("zsh") is not None, "zsh is not installed")
    r = subprocess.run(["zsh", "-f", ZSH_COMPLETE, os.path.join(SOURCE_ROOT, "completion"), line],
                       capture_output=True, text=True, timeout=60, env=env)
    if r.returncode != 0:
        raise AssertionError("complete.zsh %r: exit status %d: %s" % (line, r.returncode, r.stderr))
    return list(dict.fromkeys(c for c in r.stdout.split("\n") if c))


def _hyphenate(kwargs):
    # QMP and the agent spell arguments with hyphens; Python keywords cannot.
    return {k.replace("_", "-"): v for k, v in kwargs.items()}


# --- guest image cache ------------------------------------------------------------------

_guest_cache_dir = None


def guest_cache():
    """Build the test guest once (under a file lock) and return its directory, which holds
    vmlinuz, initramfs.cpio.gz, data1.qcow2, data2.qcow2."""
    global _guest_cache_dir
    if _guest_cache_dir:
        return _guest_cache_dir
    root = os.environ.get("SNAPSHOTD_BUILD_ROOT")
    if root:
        d = os.path.join(root, "guest-cache")
    else:
        d = os.path.join(tempfile.gettempdir(), "snapshotd-guest-cache-%d" % os.getuid())
    os.makedirs(d, exist_ok=True)
    with open(d + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        p = subprocess.run(["bash", BUILD_GUEST, d], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise RuntimeError("building the test guest failed (%s):\n%s" % (BUILD_GUEST, p.stdout))
    _guest_cache_dir = d
    return d


# --- images ------------------------------------------------------------------------------

def image_info(path, backing_chain=False):
    """qemu-img info -U --output=json (a list with backing_chain=True)."""
    argv = ["qemu-img", "info", "-U", "--output=json"]
    if backing_chain:
        argv.append("--backing-chain")
    p = subprocess.run(argv + [path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError("qemu-img info %s: %s" % (path, p.stderr.strip()))
    return json.loads(p.stdout)


def image_snapshots(path):
    """Names of the internal snapshots in a qcow2 image."""
    return [s["name"] for s in image_info(path).get("snapshots", [])]


def image_backing(path):
    """The backing file an image names, or None."""
    return image_info(path).get("backing-filename")


def image_check(path):
    """qemu-img check; returns (exit code, output). 0 means clean."""
    p = subprocess.run(["qemu-img", "check", "-U", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


SAVE_HEADER = struct.Struct("=16s19I")


def read_save_header(path):
    """The virDomainSave() header of a memory image, as a dict (+ the XML it carries)."""
    with open(path, "rb") as f:
        raw = f.read(SAVE_HEADER.size)
        if len(raw) < SAVE_HEADER.size:
            raise ValueError("%s: short header" % path)
        v = SAVE_HEADER.unpack(raw)
        h = {"magic": v[0].decode("latin-1"), "version": v[1], "data_len": v[2],
             "was_running": v[3], "format": v[4], "cookie_offset": v[5]}
        xml = f.read(h["data_len"])
        h["xml"] = xml.split(b"\0", 1)[0].decode("utf-8", "replace")
    return h


# --- QMP -----------------------------------------------------------------------------------

class QMPError(Exception):
    def __init__(self, error_class, desc):
        super().__init__("%s: %s" % (error_class, desc))
        self.error_class = error_class
        self.desc = desc


class AgentError(QMPError):
    pass


class QMP:
    """A synchronous QMP client; events read on the way are kept in .events."""

    def __init__(self, path, timeout=30):
        self.path = path
        self.events = []
        self._buf = b""
        self._ids = itertools.count(1)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
            deadline = time.monotonic() + timeout
            self.greeting = self._read(deadline)
            self.execute("qmp_capabilities")
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None

    def _read(self, deadline):
        while b"\n" not in self._buf:
            left = deadline - time.monotonic() if deadline else None
            if left is not None and left <= 0:
                raise TimeoutError("QMP %s: no answer" % self.path)
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("QMP %s: no answer" % self.path) from None
            if not data:
                raise ConnectionError("QMP %s: connection closed" % self.path)
            self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, args=None, timeout=60):
        i = next(self._ids)
        msg = {"execute": cmd, "id": i}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        while True:
            r = self._read(deadline)
            if "event" in r:
                self.events.append(r)
                continue
            if r.get("id") != i:
                continue
            if "error" in r:
                raise QMPError(r["error"].get("class"), r["error"].get("desc"))
            return r.get("return")

    def pull_events(self, timeout=0):
        """Read whatever events arrived (waiting at most timeout s for the first one)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                if b"\n" not in self._buf:
                    left = max(deadline - time.monotonic(), 0)
                    self.sock.settimeout(left if left > 0 else 0.0)
                    try:
                        data = self.sock.recv(65536)
                    except (BlockingIOError, socket.timeout):
                        return
                    if not data:
                        return
                    self._buf += data
                    continue
                r = self._read(None)
                if "event" in r:
                    self.events.append(r)
        finally:
            if self.sock:
                self.sock.settimeout(None)

    def wait_event(self, name, timeout=30, predicate=None, since=0):
        """Return the first event called name (at index >= since in .events)."""
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events[since:]:
                if e["event"] == name and (predicate is None or predicate(e)):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("QMP event %s did not come in %ss" % (name, timeout))
            self.pull_events(min(left, 0.5))


# --- the guest ------------------------------------------------------------------------------

def qdev_id(qdev):
    """The device id in a query-block qdev value: "vda" for "vda" and for
    "/machine/peripheral/vda/virtio-backend"."""
    prefix = "/machine/peripheral/"
    if qdev.startswith(prefix):
        return qdev[len(prefix):].split("/", 1)[0]
    return qdev


def choose_accel():
    a = os.environ.get("SNAPSHOTD_TEST_ACCEL", "")
    if a in ("kvm", "tcg"):
        return a
    if (os.path.exists("/sys/module/kvm_intel") or os.path.exists("/sys/module/kvm_amd")) \
            and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm"
    return "tcg"


class Guest:
    """The test guest in QEMU. All sockets and files live in workdir (keep it short:
    unix socket paths are limited to 107 bytes)."""

    def __init__(self, workdir, memory_mb=256, disks=2, dirty_mb=16, extra_args=(),
                 append=""):
        if not 0 <= disks <= 2:
            raise ValueError("disks must be 0..2")
        self.workdir = os.path.abspath(workdir)
        self.memory_mb = memory_mb
        self.disks = disks
        self.dirty_mb = dirty_mb
        self.extra_args = list(extra_args)
        self.append = append
        self.console_log = os.path.join(self.workdir, "console.log")
        self.qemu_log = os.path.join(self.workdir, "qemu.log")
        self.qga_sock = os.path.join(self.workdir, "qga.sock")
        self.qmp_sock = os.path.join(self.workdir, "qmp.sock")
        self.qmp_test_sock = os.path.join(self.workdir, "qmp-test.sock")
        self.disk_paths = [os.path.join(self.workdir, "data%d.qcow2" % (i + 1))
                           for i in range(disks)]
        self.accel = choose_accel()
        self.proc = None
        self._qmp = None
        self.started_at = None
        if len(self.qmp_test_sock) > 107:
            raise ValueError("workdir too long for unix sockets: %s" % self.workdir)

    # lifecycle
    def argv(self):
        cache = guest_cache()
        cmdline = "console=ttyS0 panic=-1 disks=%d dirty_mb=%d" % (self.disks, self.dirty_mb)
        if self.append:
            cmdline += " " + self.append
        a = ["qemu-system-x86_64", "-name", "snaptest", "-nodefaults", "-display", "none",
             "-no-user-config", "-no-reboot", "-m", str(self.memory_mb), "-smp", "1",
             "-kernel", os.path.join(cache, "vmlinuz"),
             "-initrd", os.path.join(cache, "initramfs.cpio.gz"),
             "-append", cmdline,
             "-serial", "file:" + self.console_log]
        if self.accel == "kvm":
            a += ["-accel", "kvm", "-cpu", "host"]
        else:
            a += ["-accel", "tcg"]
        for i, path in enumerate(self.disk_paths):
            n = i + 1
            a += ["-blockdev", "driver=file,filename=%s,node-name=disk%d-file" % (path, n),
                  "-blockdev", "driver=qcow2,file=disk%d-file,node-name=disk%d" % (n, n),
                  "-device", "virtio-blk-pci,drive=disk%d,id=vd%s,serial=data%d"
                  % (n, "abcdefgh"[i], n)]
        a += ["-device", "virtio-serial-pci,id=vser0",
              "-chardev", "socket,id=qga0,path=%s,server=on,wait=off" % self.qga_sock,
              "-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
              "-chardev", "socket,id=mon-daemon,path=%s,server=on,wait=off" % self.qmp_sock,
              "-mon", "chardev=mon-daemon,mode=control",
              "-chardev", "socket,id=mon-test,path=%s,server=on,wait=off" % self.qmp_test_sock,
              "-mon", "chardev=mon-test,mode=control"]
        return a + self.extra_args

    def start(self, copy_disks=True):
        os.makedirs(self.workdir, exist_ok=True)
        cache = guest_cache()
        if copy_disks:
            for i, path in enumerate(self.disk_paths):
                shutil.copyfile(os.path.join(cache, "data%d.qcow2" % (i + 1)), path)
        for s in (self.qga_sock, self.qmp_sock, self.qmp_test_sock):
            if os.path.exists(s):
                os.unlink(s)
        if os.path.exists(self.console_log):
            os.unlink(self.console_log)
        argv = self.argv()
        with open(self.qemu_log, "a") as log:
            log.write("+ %s\n" % " ".join(shlex.quote(x) for x in argv))
            log.flush()
            self.started_at = time.monotonic()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("QEMU exited (%d) at start:\n%s"
                                   % (self.proc.returncode, self._tail(self.qemu_log)))
            try:
                self._qmp = QMP(self.qmp_test_sock)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def wait_ready(self, timeout=60):
        """Wait until the guest agent answers guest-ping; returns seconds since start()."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("QEMU exited (%d) while booting; console:\n%s"
                                   % (self.proc.returncode, self._tail(self.console_log)))
            try:
                self.agent("guest-ping", timeout=1)
                took = time.monotonic() - self.started_at
                # The workload starts right after qemu-ga; GUEST-READY says it did.
                self.wait_console("GUEST-READY", timeout=max(deadline - time.monotonic(), 5))
                return took
            except (TimeoutError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError("guest agent did not answer in %ss; console:\n%s"
                                       % (timeout, self._tail(self.console_log)))

    def stop(self, timeout=10):
        if not self.proc:
            return None
        if self.proc.poll() is None and self._qmp:
            try:
                self._qmp.execute("quit", timeout=5)
            except (QMPError, OSError, TimeoutError, ValueError):
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._qmp:
            self._qmp.close()
            self._qmp = None
        return self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # the test's QMP monitor
    def qmp(self, cmd, args=None, timeout=60, **kwargs):
        """Run a QMP command on the test monitor. Keyword names get hyphens for
        underscores (node_name= -> node-name); pass args= for verbatim names."""
        a = dict(args or {})
        a.update(_hyphenate(kwargs))
        return self._qmp.execute(cmd, a, timeout=timeout)

    @property
    def events(self):
        self._qmp.pull_events()
        return self._qmp.events

    def wait_event(self, name, timeout=30, predicate=None, since=0):
        return self._qmp.wait_event(name, timeout, predicate, since)

    def status(self):
        return self.qmp("query-status")["status"]

    def live_save_single_pass(self):
        """Whether snapshotd saves this guest's memory live in one pass, its setup paused
        too: under TCG on QEMU < 9.0, whose multi-pass saves lose writes (daemon/job-memory.c)."""
        return self.accel != "kvm" and self.qmp("query-version")["qemu"]["major"] < 9

    def is_running(self):
        if not self.proc or self.proc.poll() is not None:
            return False
        try:
            return self.status() == "running"
        except (OSError, TimeoutError, QMPError):
            return False

    def block_graph(self):
        return self.qmp("query-named-block-nodes", flat=True)

    def block_devices(self):
        """{device id: top node name} from query-block. QEMU reports a virtio-blk-pci
        device's qdev as its QOM path (/machine/peripheral/vda/virtio-backend); this
        gives the id (vda)."""
        return {qdev_id(b.get("qdev", "")): b.get("inserted", {}).get("node-name")
                for b in self.qmp("query-block")}

    # the guest agent
    def agent(self, cmd, args=None, timeout=30, reply=True, **kwargs):
        """Run a guest-agent command over a short-lived connection. The agent socket
        takes one client at a time (the daemon uses it too), so connecting and the
        guest-sync-delimited handshake are retried until timeout; the command itself
        is sent once."""
        a = dict(args or {})
        a.update(_hyphenate(kwargs))
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.qga_sock)
                buf = self._agent_sync(s, min(deadline, time.monotonic() + 3))
            except (OSError, TimeoutError):
                s.close()
                if time.monotonic() >= deadline:
                    raise TimeoutError("guest agent: no answer to guest-sync in %ss" % timeout)
                time.sleep(0.1)
                continue
            try:
                msg = {"execute": cmd}
                if a:
                    msg["arguments"] = a
                s.sendall(json.dumps(msg).encode() + b"\n")
                if not reply:
                    return None
                while b"\n" not in buf:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("guest agent: no answer to %s" % cmd)
                    s.settimeout(left)
                    try:
                        data = s.recv(65536)
                    except socket.timeout:
                        raise TimeoutError("guest agent: no answer to %s" % cmd) from None
                    if not data:
                        raise ConnectionError("guest agent: connection closed during %s" % cmd)
                    buf += data
                r = json.loads(buf.split(b"\n", 1)[0])
                if "error" in r:
                    raise AgentError(r["error"].get("class"), r["error"].get("desc"))
                return r.get("return")
            finally:
                s.close()

    @staticmethod
    def _agent_sync(s, deadline):
        # 0xFF resets the agent's parser (it answers with a parse error, ignored);
        # the answer to our sync id follows the agent's own 0xFF.
        sync_id = random.randrange(1, 2 ** 31)
        s.sendall(b"\xff" + json.dumps({"execute": "guest-sync-delimited",
                                        "arguments": {"id": sync_id}}).encode() + b"\n")
        buf = b""
        while True:
            while True:
                i = buf.find(b"\xff")
                if i >= 0 and b"\n" in buf[i:]:
                    line, buf = buf[i + 1:].split(b"\n", 1)
                    try:
                        if json.loads(line).get("return") == sync_id:
                            return buf
                    except ValueError:
                        pass
                    continue
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("guest-sync")
            s.settimeout(left)
            try:
                data = s.recv(65536)
            except socket.timeout:
                raise TimeoutError("guest-sync") from None
            if not data:
                raise ConnectionError("guest agent closed")
            buf += data

    def guest_exec(self, argv, input=None, timeout=30):
        """Run argv in the guest; returns (exit code, stdout, stderr) as text."""
        a = {"path": argv[0], "arg": list(argv[1:]), "capture-output": True}
        if input is not None:
            a["input-data"] = base64.b64encode(input.encode()).decode()
        pid = self.agent("guest-exec", a, timeout=timeout)["pid"]
        deadline = time.monotonic() + timeout
        while True:
            st = self.agent("guest-exec-status", pid=pid, timeout=timeout)
            if st.get("exited"):
                out = base64.b64decode(st.get("out-data", "")).decode("utf-8", "replace")
                err = base64.b64decode(st.get("err-data", "")).decode("utf-8", "replace")
                return st.get("exitcode", -1), out, err
            if time.monotonic() > deadline:
                raise TimeoutError("guest command %s did not finish" % argv)
            time.sleep(0.1)

    def guest_read(self, path):
        code, out, err = self.guest_exec(["cat", path])
        if code != 0:
            raise RuntimeError("cat %s in guest: %s" % (path, err.strip()))
        return out

    # console
    def console(self):
        try:
            with open(self.console_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_console(self, text, timeout=30, count=1):
        """Wait until text appears at least count times in the console log."""
        deadline = time.monotonic() + timeout
        while self.console().count(text) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("%r not on the console after %ss" % (text, timeout))
            time.sleep(0.1)

    @staticmethod
    def _tail(path, n=40):
        try:
            with open(path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return "(no %s)" % path
        return "\n".join(lines[-n:])

    def domain_config(self, config_dir, name, images_dir=None, agent=True):
        return write_domain_config(config_dir, name, self.qmp_sock,
                                   self.qga_sock if agent else None,
                                   images_dir or self.workdir)


def write_domain_config(config_dir, name, qmp_socket, agent_socket=None, images_dir=None):
    """Write config_dir/<name>.xml in the format of DESIGN.md; returns its path."""
    os.makedirs(config_dir, exist_ok=True)
    lines = ["<domain name=%s>" % quoteattr(name),
             "  <qmp socket=%s/>" % quoteattr(qmp_socket)]
    if agent_socket:
        lines.append("  <agent socket=%s/>" % quoteattr(agent_socket))
    if images_dir:
        lines.append("  <images dir=%s/>" % quoteattr(images_dir))
    lines.append("</domain>")
    path = os.path.join(config_dir, name + ".xml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# --- D-Bus ----------------------------------------------------------------------------------

def _gi():
    try:
        import gi
        gi.require_version("Gio", "2.0")
        from gi.repository import Gio, GLib
    except (ImportError, ValueError):
        require(False, "python3-gi is not installed")
    return Gio, GLib


class BusError(Exception):
    def __init__(self, name, message):
        super().__init__("%s: %s" % (name, message))
        self.name = name
        self.message = message


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%(socket)s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
%(extra)s
</busconfig>
"""


class Bus:
    """A private dbus-daemon with a system-bus configuration, and the daemon on it."""

    def __init__(self, tmpdir=None, extra_config=""):
        _gi()  # skip (fail in CI) early without python3-gi
        self.tmpdir = tmpdir or tempfile.mkdtemp(prefix="snapbus-")
        self._own_tmpdir = tmpdir is None       # made here: removed when a with-block ends
        self.extra_config = extra_config
        self.address = None
        self.proc = None
        self.daemon = None
        self.daemon_log = os.path.join(self.tmpdir, "snapshotd.log")
        self.bus_log = os.path.join(self.tmpdir, "dbus-daemon.log")
        self.conn = None
        self.received = []
        self._subs = []

    def start(self):
        sock = os.path.join(self.tmpdir, "bus.sock")
        conf = os.path.join(self.tmpdir, "bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONFIG % {"socket": sock, "extra": self.extra_config})
        with open(self.bus_log, "a") as log:
            self.proc = subprocess.Popen(["dbus-daemon", "--config-file=" + conf, "--nofork",
                                          "--nopidfile", "--print-address=1"],
                                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                         stderr=log, text=True)
        self.address = self.proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("dbus-daemon did not start")
        self.conn = self.new_connection()
        return self

    def new_connection(self):
        Gio, _ = _gi()
        return Gio.DBusConnection.new_for_address_sync(
            self.address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT
            | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    def stop(self):
        self.stop_daemon()
        for sid in self._subs:
            self.conn.signal_unsubscribe(sid)
        self._subs = []
        if self.conn:
            self.conn.close_sync(None)
            self.conn = None
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc.stdout.close()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self._own_tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    # the daemon
    def start_daemon(self, config_dir, state_dir, extra_args=(), timeout=None, failpoint=None):
        """Start snapshotd and wait for its bus name. failpoint: its SNAPSHOTD_FAILPOINT
        ("name:action[,...]", see daemon/failpoint.h), for this daemon only."""
        exe = os.environ.get("SNAPSHOTD")
        require(exe and os.access(exe, os.X_OK), "SNAPSHOTD does not name the built daemon")
        wrapper = shlex.split(os.environ.get("SNAPSHOTD_TEST_WRAPPER", ""))
        if timeout is None:
            timeout = 60 if wrapper or os.environ.get("SNAPSHOTD_TEST_SLOW") else 10
        argv = wrapper + [exe, "--bus-address=" + self.address,
                          "--config-dir=" + config_dir, "--state-dir=" + state_dir]
        argv += list(extra_args)
        log = open(self.daemon_log, "a")
        log.write("+ %s\n" % " ".join(shlex.quote(x) for x in argv))
        log.flush()
        env = dict(os.environ)
        env.pop("SNAPSHOTD_FAILPOINT", None)
        if failpoint:
            env["SNAPSHOTD_FAILPOINT"] = failpoint
        self.daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.name_has_owner(BUS_NAME):
            if self.daemon.poll() is not None:
                raise RuntimeError("snapshotd exited (%d) at start:\n%s"
                                   % (self.daemon.returncode, self.read_daemon_log()))
            if time.monotonic() > deadline:
                raise TimeoutError("snapshotd did not take %s in %ss" % (BUS_NAME, timeout))
            time.sleep(0.05)
        return self.daemon

    def stop_daemon(self, timeout=None):
        """SIGTERM the daemon and wait; returns its exit code (None if not running)."""
        if not self.daemon:
            return None
        if timeout is None:
            timeout = 60 if os.environ.get("SNAPSHOTD_TEST_WRAPPER") or os.environ.get("SNAPSHOTD_TEST_SLOW") else 10
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(timeout)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
        rc = self.daemon.returncode
        self.daemon = None
        return rc

    def read_daemon_log(self):
        try:
            with open(self.daemon_log, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # calls
    def call(self, path, iface, method, signature=None, args=(), timeout=30,
             dest=BUS_NAME, conn=None, interactive=False):
        """Call a method; returns the unpacked reply (a tuple), raises BusError."""
        Gio, GLib = _gi()
        params = GLib.Variant("(%s)" % signature, tuple(args)) if signature else None
        flags = Gio.DBusCallFlags.NONE
        if interactive:
            flags |= Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION
        try:
            r = (conn or self.conn).call_sync(dest, path, iface, method, params, None,
                                              flags, int(timeout * 1000), None)
        except GLib.Error as e:
            name = Gio.DBusError.get_remote_error(e) or "%s.%d" % (e.domain, e.code)
            Gio.DBusError.strip_remote_error(e)
            raise BusError(name, e.message) from None
        finally:
            self.dispatch()
        return r.unpack() if r is not None else ()

    def get_property(self, path, iface, name, dest=BUS_NAME):
        return self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss",
                         (iface, name), dest=dest)[0]

    def get_all_properties(self, path, iface, dest=BUS_NAME):
        return self.call(path, "org.freedesktop.DBus.Properties", "GetAll", "s",
                         (iface,), dest=dest)[0]

    def name_has_owner(self, name):
        return self.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "NameHasOwner",
                         "s", (name,), dest="org.freedesktop.DBus")[0]

    def list_names(self):
        return self.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "ListNames",
                         dest="org.freedesktop.DBus")[0]

    # signals
    def subscribe(self, sender=None, iface=None, member=None, path=None):
        """Record matching signals in .received as dicts: sender, path, interface,
        member, args (unpacked tuple), time."""
        Gio, _ = _gi()

        def on_signal(conn, sender, path, iface, member, params):
            self.received.append({"sender": sender, "path": path, "interface": iface,
                                  "member": member, "args": params.unpack(),
                                  "time": time.monotonic()})

        sid = self.conn.signal_subscribe(sender, iface, member, path, None,
                                         Gio.DBusSignalFlags.NONE, on_signal)
        self._subs.append(sid)
        # Make sure the bus has the match rule before the test goes on.
        self.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId",
                  dest="org.freedesktop.DBus")
        return sid

    def dispatch(self, timeout=0):
        """Deliver queued signals; with timeout, wait up to that long for one more."""
        _, GLib = _gi()
        ctx = GLib.MainContext.default()
        while ctx.iteration(False):
            pass
        if timeout > 0:
            deadline = time.monotonic() + timeout
            n = len(self.received)
            while len(self.received) == n and time.monotonic() < deadline:
                if not ctx.iteration(False):
                    time.sleep(0.01)

    def signals(self, member=None, iface=None):
        self.dispatch()
        return [s for s in self.received
                if (member is None or s["member"] == member)
                and (iface is None or s["interface"] == iface)]

    def clear_signals(self):
        self.dispatch()
        self.received.clear()

    def wait_for(self, member, predicate=None, timeout=30, iface=None):
        """Return the first received signal named member for which predicate(sig) is
        true (predicate gets the dict described in subscribe())."""
        deadline = time.monotonic() + timeout
        while True:
            for s in self.signals(member, iface):
                if predicate is None or predicate(s):
                    return s
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("signal %s did not come in %ss" % (member, timeout))
            self.dispatch(min(left, 0.1))


# --- unittest base -------------------------------------------------------------------------

class SnapTestCase(unittest.TestCase):
    """Gives each test a short temp dir (self.tmpdir), makes guests and buses that are
    stopped afterwards, and prints their logs (daemon log, QEMU log, guest console)
    only when the test failed."""

    def setUp(self):
        super().setUp()
        self._logs = []
        # Registered first, so it runs last: it sees failures of tearDown and cleanups.
        self.addCleanup(self._finish)
        self.tmpdir = tempfile.mkdtemp(prefix="snapt-", dir="/tmp")

    def watch_log(self, path, label=None):
        self._logs.append((label or path, path))

    def make_guest(self, name="guest", start=True, wait=True, **kwargs):
        g = Guest(os.path.join(self.tmpdir, name), **kwargs)
        self.watch_log(g.qemu_log, "%s: QEMU log" % name)
        self.watch_log(g.console_log, "%s: console" % name)
        self.addCleanup(g.stop)
        if start:
            g.start()
            if wait:
                g.wait_ready()
        return g

    def make_bus(self, **kwargs):
        b = Bus(tempfile.mkdtemp(prefix="bus-", dir=self.tmpdir), **kwargs)
        b.start()
        self.watch_log(b.daemon_log, "snapshotd log")
        self.watch_log(b.bus_log, "dbus-daemon log")
        self.addCleanup(b.stop)
        return b

    def _failed(self):
        outcome = getattr(self, "_outcome", None)
        if outcome is None:
            return False
        result = getattr(outcome, "result", None)
        if result is not None:
            # Python >= 3.11 records failures in the result as they happen.
            for test, _ in list(result.errors) + list(result.failures):
                if getattr(test, "test_case", test) is self:
                    return True
            return False
        return any(exc for _, exc in getattr(outcome, "errors", []))

    def _finish(self):
        failed = self._failed()
        if failed:
            for label, path in self._logs:
                try:
                    with open(path, "rb") as f:
                        text = f.read().decode("utf-8", "replace")
                except FileNotFoundError:
                    continue
                sys.stderr.write("\n===== %s (%s) =====\n%s\n===== end %s =====\n"
                                 % (label, path, text, label))
        if os.environ.get("SNAPSHOTD_TEST_KEEP") == "1":
            sys.stderr.write("kept %s\n" % self.tmpdir)
        else:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


# --- one guest, bus and daemon shared by a test module ---------------------------------------

def wait_until(cond, timeout, what="condition", interval=0.05):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("%s not reached in %ss" % (what, timeout))
        time.sleep(interval)


def variant(sig, value):
    """A GLib.Variant, for a{sv} option values."""
    _, GLib = _gi()
    return GLib.Variant(sig, value)


class SharedDomain:
    """The test guest as domain "vm1" (config file, image dir) on a private bus with the
    daemon, for a whole test module: start() in setUpModule, stop() in tearDownModule.
    stop() raises when the daemon did not exit cleanly (under --setup=valgrind: errors or
    leaks), so the module fails."""

    def __init__(self, prefix, name="vm1", aux_monitor=False, **guest_kwargs):
        self.tmp = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.name = name
        self.failed = False
        extra = list(guest_kwargs.pop("extra_args", ()))
        if aux_monitor:
            # a second monitor, for a second domain on the same QEMU
            extra += ["-chardev", "socket,id=mon-aux,path=%s/g/qmp-aux.sock,server=on,wait=off" % self.tmp,
                      "-mon", "chardev=mon-aux,mode=control"]
        self.guest_kwargs = dict(guest_kwargs, extra_args=extra)
        self.guest = self.bus = None
        self.config_dir = os.path.join(self.tmp, "conf")
        self.state_dir = os.path.join(self.tmp, "state")
        self.images = os.path.join(self.tmp, "images")
        self.aux_qmp = os.path.join(self.tmp, "g", "qmp-aux.sock")

    def start_guest(self):
        self.guest = Guest(os.path.join(self.tmp, "g"), **self.guest_kwargs)
        self.guest.start()
        self.guest.wait_ready()
        return self.guest

    def start(self):
        # setUpModule failing half way gets no tearDownModule: stop what did start
        try:
            return self._start()
        except BaseException:
            self.failed = True
            try:
                self.stop()
            except AssertionError:
                pass
            raise

    def _start(self):
        self.start_guest()
        self.bus = Bus(os.path.join(self.tmp, "bus"))
        os.makedirs(self.bus.tmpdir)
        self.bus.start()
        os.makedirs(self.images, exist_ok=True)
        self.guest.domain_config(self.config_dir, self.name, images_dir=self.images)
        self.bus.start_daemon(self.config_dir, self.state_dir)
        self.dom = self.bus.call(MANAGER_PATH, MANAGER_IFACE, "GetDomain", "s", (self.name,))[0]
        wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "State") == "running", 20,
                   "domain running")
        # The daemon pings the agent once it is connected; HasAgent flips when that answers.
        wait_until(lambda: self.bus.get_property(self.dom, DOMAIN_IFACE, "HasAgent"), 30, "agent answered")
        return self

    def stop(self, unmount=()):
        rc = self.bus.stop_daemon() if self.bus else None
        log = self.bus.read_daemon_log() if self.bus else ""
        if self.bus:
            self.bus.stop()
        if self.guest:
            self.guest.stop()
        for m in unmount:
            subprocess.run(["umount", m], stderr=subprocess.DEVNULL)
        if self.failed or os.environ.get("SNAPSHOTD_TEST_KEEP") == "1":
            sys.stderr.write("kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if rc not in (None, 0):
            raise AssertionError("snapshotd exited with %s at the end; its log:\n%s" % (rc, log[-20000:]))


class SharedTestCase(unittest.TestCase):
    """Base for tests on a SharedDomain (class attribute `shared`): prints the daemon's log
    and the guest's console when a test (or one of its subtests) failed."""
    shared = None

    def tearDown(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result and any(getattr(t, "test_case", t) is self for t, _ in result.errors + result.failures):
            self.shared.failed = True
            sys.stderr.write("\n===== snapshotd log =====\n%s\n" % self.shared.bus.read_daemon_log()[-30000:])
            if self.shared.guest:
                sys.stderr.write("\n===== guest console (tail) =====\n%s\n" % self.shared.guest.console()[-3000:])
        super().tearDown()
