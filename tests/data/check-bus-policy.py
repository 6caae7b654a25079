#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Exercises data/org.example.Snapshot1.conf on a private dbus-daemon.

Usage: check-bus-policy.py POLICY.conf

The private bus gets the system bus's default policy (deny own, deny method calls)
plus our file, as /usr/share/dbus-1/system.conf would include it. Then:
  - dbus-daemon must load it without a warning;
  - root may own org.example.Snapshot1;
  - (as "nobody", through setpriv) owning the name is denied; method calls to the
    name on our three interfaces and on Introspectable/Properties/Peer/ObjectManager
    pass the bus; a call on another interface is AccessDenied.
Without root only the loading is checked. Exit 77 (skip) without dbus-daemon or gi.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

BUS_NAME = 'org.example.Snapshot1'
ALLOWED = [
    'org.example.Snapshot1.Manager',
    'org.example.Snapshot1.Domain',
    'org.example.Snapshot1.Snapshot',
    'org.freedesktop.DBus.Introspectable',
    'org.freedesktop.DBus.Properties',
    'org.freedesktop.DBus.Peer',
    'org.freedesktop.DBus.ObjectManager',
]
DENIED = ['org.example.Snapshot1.NotInThePolicy', 'org.freedesktop.DBus.Debug.Stats']

BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
  </policy>
  <include>{policy}</include>
</busconfig>
'''

# Runs as "nobody": one line per check, "OK ..." or "FAIL ...".
CLIENT = r'''
import sys
from gi.repository import Gio, GLib
address, name = sys.argv[1], sys.argv[2]
allowed, denied = sys.argv[3].split(','), sys.argv[4].split(',')
c = Gio.DBusConnection.new_for_address_sync(address,
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
        Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

def call(dest, path, iface, method, args=None):
    try:
        c.call_sync(dest, path, iface, method, args, None, Gio.DBusCallFlags.NONE, 5000, None)
        return None
    except GLib.Error as e:
        return Gio.DBusError.get_remote_error(e) or e.message

err = call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
           'RequestName', GLib.Variant('(su)', (name, 4)))
print(('OK' if err == 'org.freedesktop.DBus.Error.AccessDenied' else 'FAIL')
      + f' nobody owning {name}: {err or "allowed"}')
for iface in allowed:
    err = call(name, '/org/example/Snapshot1', iface, 'PolicyCheck')
    print(('FAIL' if err == 'org.freedesktop.DBus.Error.AccessDenied' else 'OK')
          + f' nobody calling {iface}: {err or "answered"}')
for iface in denied:
    err = call(name, '/org/example/Snapshot1', iface, 'PolicyCheck')
    print(('OK' if err == 'org.freedesktop.DBus.Error.AccessDenied' else 'FAIL')
          + f' nobody calling {iface}: {err or "answered"}')
'''


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    policy = os.path.abspath(argv[1])
    dbus_daemon = shutil.which('dbus-daemon')
    if not dbus_daemon:
        print('SKIP: no dbus-daemon')
        return 77
    try:
        from gi.repository import Gio, GLib
    except ImportError:
        print('SKIP: /usr/bin/python3 has no gi (python3-gi)')
        return 77

    failed = False
    with tempfile.TemporaryDirectory(prefix='snapshotd-policy-') as tmp:
        os.chmod(tmp, 0o755)                # "nobody" must reach the socket
        socket = os.path.join(tmp, 'bus')
        config = os.path.join(tmp, 'bus.conf')
        with open(config, 'w') as f:
            f.write(BUS_CONFIG.format(socket=socket, policy=policy))
        daemon = subprocess.Popen([dbus_daemon, '--nofork', '--nopidfile', '--nosyslog',
                                   f'--config-file={config}', '--print-address=1'],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            address = daemon.stdout.readline().strip()
            if not address:
                daemon.wait(5)
                print(f'FAIL dbus-daemon did not start with the policy:\n{daemon.stderr.read()}')
                return 1
            print(f'OK dbus-daemon loaded {policy}')

            if os.geteuid() != 0:
                print('NOTE not root: ownership and send rules are not exercised')
            else:
                failed = exercise(address, Gio, GLib)
        finally:
            daemon.terminate()
            try:
                _, err = daemon.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                daemon.kill()
                _, err = daemon.communicate()
        # dbus-daemon reports policy mistakes (unknown attributes, ...) on stderr, next
        # to the rejections we provoked and its complaint about not raising RLIMIT_NOFILE.
        noise = ('Rejected send message', 'Failed to set fd limit')
        complaints = [l for l in err.splitlines() if l.strip() and not any(n in l for n in noise)]
        if complaints:
            print('FAIL dbus-daemon complained:\n' + '\n'.join(complaints))
            failed = True
    return 1 if failed else 0


def exercise(address, Gio, GLib):
    failed = False
    conn = Gio.DBusConnection.new_for_address_sync(
        address,
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
        Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)
    try:
        reply = conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus',
                               'org.freedesktop.DBus', 'RequestName',
                               GLib.Variant('(su)', (BUS_NAME, 4)), GLib.VariantType('(u)'),
                               Gio.DBusCallFlags.NONE, 5000, None).unpack()[0]
    except GLib.Error as e:
        reply = Gio.DBusError.get_remote_error(e) or e.message
    if reply == 1:
        print(f'OK root owns {BUS_NAME}')
    else:
        # Without an owner the calls below would not meet the send rules at all.
        print(f'FAIL root could not become the primary owner of {BUS_NAME}: {reply}')
        return True

    nobody = pwd.getpwnam('nobody')
    client = subprocess.Popen(
        ['setpriv', f'--reuid={nobody.pw_uid}', f'--regid={nobody.pw_gid}', '--clear-groups',
         sys.executable, '-c', CLIENT, address, BUS_NAME, ','.join(ALLOWED), ','.join(DENIED)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Our connection has to answer the calls that get through (with UnknownMethod),
    # which GDBus does from the main context.
    ctx = GLib.MainContext.default()
    deadline = time.monotonic() + 60
    while client.poll() is None and time.monotonic() < deadline:
        while ctx.iteration(False):
            pass
        time.sleep(0.01)
    if client.poll() is None:
        client.kill()
    out = client.communicate()[0]
    print(out, end='')
    if client.returncode != 0 or 'FAIL' in out or not out.strip():
        failed = True
    return failed


if __name__ == '__main__':
    sys.exit(main(sys.argv))
