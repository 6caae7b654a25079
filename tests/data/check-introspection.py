#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Compares the running snapshotd's introspection with introspection/*.xml.

Usage:
  check-introspection.py [--address ADDR] [--dest NAME] [--introspection-dir DIR]
                         [--recursive] [--require-all] [--busctl] [PATH...]

ADDR defaults to $SNAPSHOTD_BUS_ADDRESS. Without PATHs the whole tree below
/org/example/Snapshot1 is walked; with PATHs only those objects are checked (and
their descendants with --recursive).

For every object it checks that the interface DESIGN.md puts at that path is there
(Manager and ObjectManager at the root, Domain at .../domain/<D>, Snapshot at
.../snapshot/<S>), and for each org.example.Snapshot1.* interface it finds, compares
with the file of that name: methods (in and out arguments: order, names, types),
properties (type, access, EmitsChangedSignal) and signals (argument names, types),
plus other annotations. sd-bus writes EmitsChangedSignal only when it is not "true"
(SD_BUS_VTABLE_PROPERTY_CONST → "const", ..._EMITS_INVALIDATION → "invalidates",
no flag → "false"); a missing one means "true", as the D-Bus specification says.
sd-bus marks methods without SD_BUS_VTABLE_UNPRIVILEGED with the annotation
org.freedesktop.systemd1.Privileged: that is reported too, since polkit and not the
bus decides who may call what.

Prints one line per difference and a summary. Exit status: 0 no difference,
1 differences, 2 usage or bus errors.
"""

import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbus_introspection as di  # noqa: E402

ROOT = '/org/example/Snapshot1'
OUR_PREFIX = 'org.example.Snapshot1.'
PRIVILEGED = 'org.freedesktop.systemd1.Privileged'
OBJECT_MANAGER = 'org.freedesktop.DBus.ObjectManager'
DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'introspection')


class Introspector:
    def __init__(self, address, dest, use_busctl):
        self.address, self.dest = address, dest
        self.conn = None
        if not use_busctl:
            try:
                from gi.repository import Gio, GLib
            except ImportError:
                use_busctl = True
        if use_busctl:
            if not shutil.which('busctl'):
                raise RuntimeError('neither python3-gi nor busctl is available')
            return
        self.Gio, self.GLib = Gio, GLib
        self.conn = Gio.DBusConnection.new_for_address_sync(
            address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
            Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION, None, None)

    def introspect(self, path):
        if self.conn is None:
            r = subprocess.run(['busctl', f'--address={self.address}', 'introspect',
                                '--xml-interface', self.dest, path],
                               capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                raise RuntimeError(f'busctl introspect {path}: {r.stderr.strip()}')
            return r.stdout
        try:
            reply = self.conn.call_sync(self.dest, path, 'org.freedesktop.DBus.Introspectable',
                                        'Introspect', None, self.GLib.VariantType('(s)'),
                                        self.Gio.DBusCallFlags.NONE, 30000, None)
        except self.GLib.Error as e:
            raise RuntimeError(f'Introspect {path}: {e.message}')
        return reply.unpack()[0]


def expected_interface(path):
    if path == ROOT:
        return OUR_PREFIX + 'Manager'
    rest = path[len(ROOT):].split('/')[1:] if path.startswith(ROOT + '/') else []
    if len(rest) == 2 and rest[0] == 'domain':
        return OUR_PREFIX + 'Domain'
    if len(rest) == 4 and rest[0] == 'domain' and rest[2] == 'snapshot':
        return OUR_PREFIX + 'Snapshot'
    return None


def fmt_args(args):
    return '(' + ', '.join(f'{t} {n}' for n, t in args) + ')'


def compare_args(where, kind, want, got, diffs):
    if want == got:
        return
    if [t for _, t in want] != [t for _, t in got]:
        diffs.append(f'{where}: {kind} signature differs: contract {fmt_args(want)}, '
                     f'daemon {fmt_args(got)}')
        return
    for i, ((wn, wt), (gn, _)) in enumerate(zip(want, got)):
        if wn != gn:
            diffs.append(f'{where}: {kind} argument {i} ({wt}) is named "{gn}", '
                         f'contract says "{wn}"')


def compare_annotations(where, want, got, diffs):
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            diffs.append(f'{where}: annotation {k}: contract {want.get(k)!r}, daemon {got.get(k)!r}')


def compare_interface(where, want, got, diffs):
    compare_annotations(where, want['annotations'], got['annotations'], diffs)

    for name in sorted(set(want['methods']) | set(got['methods'])):
        w, g = want['methods'].get(name), got['methods'].get(name)
        mw = f'{where}.{name}()'
        if g is None:
            diffs.append(f'{mw}: method missing in the daemon')
            continue
        if w is None:
            diffs.append(f'{mw}: method not in the contract')
            continue
        compare_args(mw, 'in', w['in'], g['in'], diffs)
        compare_args(mw, 'out', w['out'], g['out'], diffs)
        gann = dict(g['annotations'])
        if gann.pop(PRIVILEGED, None) == 'true' and w['annotations'].get(PRIVILEGED) != 'true':
            diffs.append(f'{mw}: only root may call it (the vtable entry lacks '
                         f'SD_BUS_VTABLE_UNPRIVILEGED)')
        wann = {k: v for k, v in w['annotations'].items() if k != PRIVILEGED}
        compare_annotations(mw, wann, gann, diffs)

    for name in sorted(set(want['properties']) | set(got['properties'])):
        w, g = want['properties'].get(name), got['properties'].get(name)
        pw = f'{where}.{name}'
        if g is None:
            diffs.append(f'{pw}: property missing in the daemon')
            continue
        if w is None:
            diffs.append(f'{pw}: property not in the contract')
            continue
        if w['type'] != g['type']:
            diffs.append(f'{pw}: type: contract "{w["type"]}", daemon "{g["type"]}"')
        if w['access'] != g['access']:
            diffs.append(f'{pw}: access: contract "{w["access"]}", daemon "{g["access"]}"')
        if w['emits_changed'] != g['emits_changed']:
            diffs.append(f'{pw}: EmitsChangedSignal: contract "{w["emits_changed"]}", '
                         f'daemon "{g["emits_changed"]}"')
        compare_annotations(pw, w['annotations'], g['annotations'], diffs)

    for name in sorted(set(want['signals']) | set(got['signals'])):
        w, g = want['signals'].get(name), got['signals'].get(name)
        sw = f'{where}.{name}'
        if g is None:
            diffs.append(f'{sw}: signal missing in the daemon')
            continue
        if w is None:
            diffs.append(f'{sw}: signal not in the contract')
            continue
        compare_args(sw, 'signal', w['args'], g['args'], diffs)
        compare_annotations(sw, w['annotations'], g['annotations'], diffs)


def load_contract(directory):
    contract = {}
    for fn in sorted(os.listdir(directory)):
        if not (fn.startswith(OUR_PREFIX) and fn.endswith('.xml')):
            continue
        with open(os.path.join(directory, fn)) as f:
            ifaces, _ = di.parse_interfaces(f.read())
        contract.update(ifaces)
    return contract


def main(argv):
    ap = argparse.ArgumentParser(description='Compare the running daemon with introspection/*.xml.')
    ap.add_argument('--address', default=os.environ.get('SNAPSHOTD_BUS_ADDRESS'),
                    help='bus address (default: $SNAPSHOTD_BUS_ADDRESS)')
    ap.add_argument('--dest', default='org.example.Snapshot1', help='bus name of the daemon')
    ap.add_argument('--introspection-dir', default=DEFAULT_DIR)
    ap.add_argument('--recursive', '-r', action='store_true',
                    help='also check the objects below the given paths')
    ap.add_argument('--require-all', action='store_true',
                    help='fail when an interface of the contract was not found on any object')
    ap.add_argument('--busctl', action='store_true', help='use busctl even when gi is there')
    ap.add_argument('paths', nargs='*')
    args = ap.parse_args(argv[1:])

    if not args.address:
        print('check-introspection: no bus address (--address or SNAPSHOTD_BUS_ADDRESS)',
              file=sys.stderr)
        return 2
    try:
        contract = load_contract(args.introspection_dir)
    except (OSError, di.ET.ParseError) as e:
        print(f'check-introspection: cannot read the contract: {e}', file=sys.stderr)
        return 2
    if not contract:
        print(f'check-introspection: no {OUR_PREFIX}*.xml in {args.introspection_dir}',
              file=sys.stderr)
        return 2

    try:
        bus = Introspector(args.address, args.dest, args.busctl)
    except Exception as e:
        print(f'check-introspection: cannot connect to {args.address}: {e}', file=sys.stderr)
        return 2

    queue = list(args.paths) or [ROOT]
    recursive = args.recursive or not args.paths
    diffs, seen, checked_objects = [], set(), 0
    while queue:
        path = queue.pop(0)
        try:
            xml = bus.introspect(path)
            ifaces, nodes = di.parse_interfaces(xml)
        except (RuntimeError, di.ET.ParseError) as e:
            print(f'check-introspection: {e}', file=sys.stderr)
            return 2
        if recursive:
            queue += [path.rstrip('/') + '/' + n for n in nodes]
        checked_objects += 1

        exp = expected_interface(path)
        if exp and exp not in ifaces:
            diffs.append(f'{path}: {exp} missing on this object')
        if path == ROOT and OBJECT_MANAGER not in ifaces:
            diffs.append(f'{path}: {OBJECT_MANAGER} missing on this object')
        for name, got in sorted(ifaces.items()):
            if not name.startswith(OUR_PREFIX):
                continue                        # standard interfaces are sd-bus's
            if name not in contract:
                diffs.append(f'{path}: interface {name} is not in the contract')
                continue
            seen.add(name)
            compare_interface(f'{path}: {name}', contract[name], got, diffs)

    if args.require_all:
        for name in sorted(set(contract) - seen):
            diffs.append(f'{name}: no object with this interface was found to check')

    for d in diffs:
        print(d)
    print(f'check-introspection: {checked_objects} object(s), interfaces checked: '
          f'{", ".join(sorted(n[len(OUR_PREFIX):] for n in seen)) or "none"}; '
          f'{len(diffs)} difference(s)')
    return 1 if diffs else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
