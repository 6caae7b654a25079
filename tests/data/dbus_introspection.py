# SPDX-License-Identifier: LGPL-2.1-or-later
"""Reading D-Bus introspection XML into plain data, shared by the data tests.

Only the standard library: these scripts run with /usr/bin/python3 and no extra
modules unless they talk to a bus.
"""

import re
import xml.etree.ElementTree as ET

EMITS_CHANGED = 'org.freedesktop.DBus.Property.EmitsChangedSignal'
EMITS_CHANGED_VALUES = ('true', 'invalidates', 'const', 'false')

# Annotations that only document (GDBus doc strings) and never change the API.
DOC_ANNOTATION_PREFIXES = ('org.gtk.GDBus.DocString',)

_NAME_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
_BASIC = 'ybnqiuxtdsogh'


def is_member_name(s):
    return bool(s) and len(s) <= 255 and bool(_NAME_RE.match(s)) and not s[0].isdigit()


def is_interface_name(s):
    if not s or len(s) > 255:
        return False
    parts = s.split('.')
    return len(parts) >= 2 and all(_NAME_RE.match(p) for p in parts)


def _complete_type(sig, i, depth):
    """Index after the single complete type starting at sig[i], or -1."""
    if i >= len(sig) or depth > 64:
        return -1
    c = sig[i]
    if c in _BASIC or c == 'v':
        return i + 1
    if c == 'a':
        if i + 1 < len(sig) and sig[i + 1] == '{':
            if i + 2 >= len(sig) or sig[i + 2] not in _BASIC:
                return -1
            j = _complete_type(sig, i + 3, depth + 1)
            if j < 0 or j >= len(sig) or sig[j] != '}':
                return -1
            return j + 1
        return _complete_type(sig, i + 1, depth + 1)
    if c == '(':
        j = i + 1
        if j < len(sig) and sig[j] == ')':
            return -1           # empty structs are not allowed
        while j < len(sig) and sig[j] != ')':
            j = _complete_type(sig, j, depth + 1)
            if j < 0:
                return -1
        if j >= len(sig):
            return -1
        return j + 1
    return -1


def is_single_complete_type(sig):
    return bool(sig) and len(sig) <= 255 and _complete_type(sig, 0, 0) == len(sig)


def _annotations(elem):
    out = {}
    for a in elem.findall('annotation'):
        name = a.get('name')
        if name is None or name.startswith(DOC_ANNOTATION_PREFIXES):
            continue
        out[name] = a.get('value')
    return out


def parse_interfaces(xml_text):
    """{interface name: {'methods': {...}, 'properties': {...}, 'signals': {...},
    'annotations': {...}}} for every <interface> directly below the root <node>;
    plus the list of child node names."""
    root = ET.fromstring(xml_text)
    interfaces = {}
    for iface in root.findall('interface'):
        d = {'methods': {}, 'properties': {}, 'signals': {},
             'annotations': _annotations(iface)}
        for m in iface.findall('method'):
            args = [{'name': a.get('name'), 'type': a.get('type'),
                     'direction': a.get('direction', 'in')} for a in m.findall('arg')]
            d['methods'][m.get('name')] = {
                'in': [(a['name'], a['type']) for a in args if a['direction'] == 'in'],
                'out': [(a['name'], a['type']) for a in args if a['direction'] == 'out'],
                'annotations': _annotations(m)}
        for s in iface.findall('signal'):
            d['signals'][s.get('name')] = {
                'args': [(a.get('name'), a.get('type')) for a in s.findall('arg')],
                'annotations': _annotations(s)}
        for p in iface.findall('property'):
            ann = _annotations(p)
            # The specification's default, and what sd-bus means by leaving it out.
            emits = ann.pop(EMITS_CHANGED, 'true')
            d['properties'][p.get('name')] = {
                'type': p.get('type'), 'access': p.get('access'),
                'emits_changed': emits, 'annotations': ann}
        interfaces[iface.get('name')] = d
    nodes = [n.get('name') for n in root.findall('node') if n.get('name')]
    return interfaces, nodes
