#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# The built man pages (man/*.scd through scdoc) render without groff warnings, and the
# pages that document the contract name everything in it:
#   org.example.Snapshot1.5  every interface, method, property and signal of
#                            introspection/*.xml, every CreateSnapshot/RegisterDomain
#                            option, every error name (DESIGN.md's "Errors" section when
#                            it is there, and common/snapshot-bus.h) and polkit action
#   snapshotd.8              every --option of `snapshotd --help`, every polkit action
#
#   check-man.py --snapshotd BIN --source-root DIR [--design DESIGN.md] PAGE...
# Pages are found by file name; a missing one fails.

import argparse
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

failures = []


def fail(msg):
    failures.append(msg)


def plain(roff):
    """The page's words without roff escapes, so names read as written (scdoc puts \\&
    after every period and font changes around bold and italic words)."""
    s = re.sub(r"\\f[BIRP]", "", roff)
    s = s.replace("\\&", "").replace("\\-", "-").replace("\\(aq", "'").replace("\\e", "\\")
    return s.replace("\\\\", "\\")


def check_renders(page):
    # -ww: every warning; -z: no output. groff prints warnings on stderr and still exits 0.
    r = subprocess.run(["groff", "-ww", "-z", "-man", "-Tutf8", page],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0 or r.stderr.strip():
        fail("%s: groff -ww: rc %d\n%s" % (os.path.basename(page), r.returncode, r.stderr))
    if shutil.which("man"):
        r = subprocess.run(["man", "--warnings", "-l", "-Tutf8", page],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
        if r.returncode != 0 or r.stderr.strip():
            fail("%s: man --warnings: rc %d\n%s" % (os.path.basename(page), r.returncode, r.stderr))


def introspection_names(paths):
    names = set()
    for p in paths:
        root = ET.parse(p).getroot()
        for iface in root.iter("interface"):
            names.add(iface.get("name"))
            for kind in ("method", "property", "signal"):
                for el in iface.iter(kind):
                    names.add(el.get("name"))
    return names


def option_keys(paths):
    """The a{sv} keys the introspection comments list, as "key" type pairs, e.g.
    "live" b, "disks" a(sss)."""
    keys = set()
    for p in paths:
        with open(p) as f:
            text = f.read()
        for comment in re.findall(r"<!--(.*?)-->", text, re.S):
            if "@options" in comment:
                keys.update(re.findall(r'"([a-z][a-z-]*)"\s+(?:[a-z]|a\()', comment))
    return keys


def design_errors(path):
    """Error names from DESIGN.md's "## Errors" section: full names, and the short names
    that follow "org.example.Snapshot1.Error. +"."""
    with open(path) as f:
        text = f.read()
    m = re.search(r"^## Errors\n(.*?)(?=^## )", text, re.S | re.M)
    if not m:
        fail("%s: no '## Errors' section" % path)
        return set()
    section = m.group(1)
    names = set(re.findall(r"`(org\.freedesktop\.DBus\.Error\.[A-Za-z]+)`", section))
    tail = section.split("org.example.Snapshot1.Error.`", 1)
    if len(tail) == 2:
        names.update("org.example.Snapshot1.Error." + n
                     for n in re.findall(r"`([A-Z][A-Za-z]+)`", tail[1]))
    return names


def header_errors(path):
    with open(path) as f:
        return {"org.example.Snapshot1.Error." + n
                for n in re.findall(r'SNAPSHOT_ERROR_PREFIX\s+"([A-Za-z]+)"', f.read())}


def polkit_actions(path):
    return {a.get("id") for a in ET.parse(path).getroot().iter("action")}


def help_options(snapshotd):
    out = subprocess.run([snapshotd, "--help"], stdout=subprocess.PIPE, check=True, text=True).stdout
    opts = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", out))
    if len(opts) < 3:
        fail("snapshotd --help lists only %s" % sorted(opts))
    return opts


def missing(what, names, text):
    # whole words: "State" must not be satisfied by "StateDirectory"
    lost = sorted(n for n in names if not re.search(r"(?<![\w.-])" + re.escape(n) + r"(?![\w-])", text))
    if lost:
        fail("%s does not mention: %s" % (what, ", ".join(lost)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--snapshotd", required=True)
    ap.add_argument("--source-root", required=True)
    ap.add_argument("--design")
    ap.add_argument("pages", nargs="+")
    a = ap.parse_args()

    pages = {os.path.basename(p): p for p in a.pages}
    for p in a.pages:
        if not os.path.isfile(p) or os.path.getsize(p) < 200:
            fail("%s: missing or empty" % p)
        else:
            check_renders(p)

    def text_of(name):
        if name not in pages or not os.path.isfile(pages[name]):
            fail("no page %s among %s" % (name, sorted(pages)))
            return ""
        with open(pages[name]) as f:
            return plain(f.read())

    src = a.source_root
    intro = sorted(os.path.join(src, "introspection", f)
                   for f in os.listdir(os.path.join(src, "introspection")) if f.endswith(".xml"))
    policy = os.path.join(src, "polkit", "org.example.snapshot1.policy")

    api = text_of("org.example.Snapshot1.5")
    missing("org.example.Snapshot1.5 (introspection names)", introspection_names(intro), api)
    missing("org.example.Snapshot1.5 (a{sv} option keys)", option_keys(intro), api)
    errors = header_errors(os.path.join(src, "common", "snapshot-bus.h"))
    design = a.design or os.path.join(os.path.dirname(os.path.abspath(src)), "shared", "DESIGN.md")
    if os.path.isfile(design):
        errors |= design_errors(design)
    else:
        print("note: %s not found; error names from common/snapshot-bus.h only" % design)
    if len(errors) < 10:
        fail("found only %d error names: %s" % (len(errors), sorted(errors)))
    missing("org.example.Snapshot1.5 (error names)", errors, api)
    missing("org.example.Snapshot1.5 (polkit actions)", polkit_actions(policy), api)

    daemon = text_of("snapshotd.8")
    missing("snapshotd.8 (snapshotd --help options)", help_options(a.snapshotd), daemon)
    missing("snapshotd.8 (polkit actions)", polkit_actions(policy), daemon)

    for f in failures:
        print("FAIL: " + f)
    if not failures:
        print("ok: %d pages" % len(a.pages))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
