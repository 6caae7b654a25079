#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks introspection/*.xml against the D-Bus introspection format and our rules.

Usage: validate-introspection.py FILE.xml...

Per file: well-formed; root <node> holding exactly one <interface> named like the
file; only the elements and attributes the format knows; valid interface, member
and argument names; every type a single complete D-Bus type; every method arg with
name, type and direction (in|out); signal args with name and type (direction absent
or "out"); every property with type, access and an EmitsChangedSignal annotation
with a known value; no duplicate members or argument names; and a <!-- comment -->
right before every method, property and signal (the contract is documented).
Prints one line per problem; exit status 1 if there was any.
"""

import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dbus_introspection as di  # noqa: E402

ALLOWED = {
    'node': ({'name'}, {'node', 'interface'}),
    'interface': ({'name'}, {'method', 'signal', 'property', 'annotation'}),
    'method': ({'name'}, {'arg', 'annotation'}),
    'signal': ({'name'}, {'arg', 'annotation'}),
    'arg': ({'name', 'type', 'direction'}, {'annotation'}),
    'property': ({'name', 'type', 'access'}, {'annotation'}),
    'annotation': ({'name', 'value'}, set()),
}


def check_file(path):
    problems = []

    def bad(where, msg):
        problems.append(f'{os.path.basename(path)}: {where}: {msg}')

    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    try:
        root = ET.parse(path, parser=parser).getroot()
    except ET.ParseError as e:
        bad('document', f'not well-formed: {e}')
        return problems

    def walk(elem, where):
        if not isinstance(elem.tag, str):
            return                                  # a comment
        if elem.tag not in ALLOWED:
            bad(where, f'unknown element <{elem.tag}>')
            return
        attrs, children = ALLOWED[elem.tag]
        for a in elem.attrib:
            if a not in attrs:
                bad(where, f'<{elem.tag}> has unknown attribute "{a}"')
        for c in elem:
            if isinstance(c.tag, str):
                if c.tag not in children:
                    bad(where, f'<{c.tag}> not allowed inside <{elem.tag}>')
                walk(c, f'{where}/{c.tag}[{c.get("name", "")}]')

    if root.tag != 'node':
        bad('document', f'root element is <{root.tag}>, not <node>')
        return problems
    walk(root, 'node')

    ifaces = root.findall('interface')
    if len(ifaces) != 1:
        bad('node', f'{len(ifaces)} <interface> elements, want exactly 1')
    expected_iface = os.path.basename(path)[:-len('.xml')]

    for iface in ifaces:
        iname = iface.get('name')
        if not di.is_interface_name(iname or ''):
            bad('interface', f'invalid interface name "{iname}"')
        if iname != expected_iface:
            bad('interface', f'named "{iname}" but the file is {expected_iface}.xml')

        members = {}
        previous = None
        for elem in iface:
            if not isinstance(elem.tag, str):
                previous = elem
                continue
            kind, name = elem.tag, elem.get('name')
            where = f'{iname}.{name}' if name else f'{iname} <{kind}>'
            if kind == 'annotation':
                previous = elem
                continue
            if not di.is_member_name(name or ''):
                bad(where, f'invalid {kind} name "{name}"')
            if name in members:
                bad(where, f'{kind} duplicates a {members[name]} of the same name')
            members[name] = kind
            if previous is None or isinstance(previous.tag, str):
                bad(where, f'{kind} has no <!-- comment --> documenting it')
            previous = elem

            if kind in ('method', 'signal'):
                arg_names = set()
                for i, arg in enumerate(elem.findall('arg')):
                    aw = f'{where} arg {i}'
                    aname, atype, adir = arg.get('name'), arg.get('type'), arg.get('direction')
                    if not aname:
                        bad(aw, 'has no name')
                    elif not di.is_member_name(aname):
                        bad(aw, f'invalid name "{aname}"')
                    elif aname in arg_names:
                        bad(aw, f'duplicate argument name "{aname}"')
                    arg_names.add(aname)
                    if not atype:
                        bad(aw, 'has no type')
                    elif not di.is_single_complete_type(atype):
                        bad(aw, f'"{atype}" is not a single complete D-Bus type')
                    if kind == 'method' and adir not in ('in', 'out'):
                        bad(aw, f'direction is {adir!r}, want "in" or "out"')
                    if kind == 'signal' and adir not in (None, 'out'):
                        bad(aw, f'signal argument with direction "{adir}"')
            elif kind == 'property':
                ptype, access = elem.get('type'), elem.get('access')
                if not ptype:
                    bad(where, 'property has no type')
                elif not di.is_single_complete_type(ptype):
                    bad(where, f'"{ptype}" is not a single complete D-Bus type')
                if access not in ('read', 'write', 'readwrite'):
                    bad(where, f'access is {access!r}, want read, write or readwrite')
                emits = [a.get('value') for a in elem.findall('annotation')
                         if a.get('name') == di.EMITS_CHANGED]
                if len(emits) != 1:
                    bad(where, f'want exactly one {di.EMITS_CHANGED} annotation, found {len(emits)}')
                elif emits[0] not in di.EMITS_CHANGED_VALUES:
                    bad(where, f'EmitsChangedSignal "{emits[0]}" is not one of '
                               + ', '.join(di.EMITS_CHANGED_VALUES))
            for ann in elem.iter('annotation'):
                if not ann.get('name') or ann.get('value') is None:
                    bad(where, 'annotation without name or value')
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    problems = []
    for path in argv[1:]:
        p = check_file(path)
        print(f'{path}: {"OK" if not p else f"{len(p)} problem(s)"}')
        problems += p
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
