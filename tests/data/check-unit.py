#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Checks the configured snapshotd.service with systemd-analyze.

Usage: check-unit.py SYSTEMD-ANALYZE UNIT [MAX-EXPOSURE]

- `systemd-analyze verify` must pass without a message. When ExecStart= names a
  binary that is not installed yet (the usual case in a build tree), a copy of the
  unit with ExecStart=/bin/true is verified instead, and the test says so.
- `systemd-analyze security --offline=true` must rate the sandbox at most
  MAX-EXPOSURE (default 2.0; lower is better, 10 is unprotected). The score and
  the settings that still cost exposure are printed.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    analyze, unit = argv[1], os.path.abspath(argv[2])
    limit = float(argv[3]) if len(argv) == 4 else 2.0
    failed = False

    with open(unit) as f:
        text = f.read()
    m = re.search(r'^ExecStart=(\S+)', text, re.M)
    exec_path = m.group(1) if m else None

    with tempfile.TemporaryDirectory(prefix='snapshotd-unit-') as tmp:
        copy = os.path.join(tmp, os.path.basename(unit))
        if exec_path and not os.access(exec_path, os.X_OK):
            print(f'NOTE {exec_path} is not installed: verifying with ExecStart=/bin/true')
            text = text.replace(f'ExecStart={exec_path}', 'ExecStart=/bin/true')
            with open(copy, 'w') as f:
                f.write(text)
        else:
            shutil.copy(unit, copy)

        r = subprocess.run([analyze, '--no-pager', 'verify', copy],
                           capture_output=True, text=True, cwd=tmp)
        messages = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or messages:
            print(f'FAIL systemd-analyze verify (exit {r.returncode}):\n{messages}')
            failed = True
        else:
            print('OK systemd-analyze verify')

        r = subprocess.run([analyze, '--no-pager', 'security', '--offline=true', copy],
                           capture_output=True, text=True, cwd=tmp)
        m = re.search(r'Overall exposure level for \S+: ([0-9.]+)', r.stdout)
        if not m:
            print(f'FAIL systemd-analyze security gave no rating (exit {r.returncode}):\n'
                  f'{r.stdout}{r.stderr}')
            return 1
        for line in r.stdout.splitlines():
            if line.startswith('✗'):
                print('  ' + re.sub(r'\s{2,}', '  ', line))
        score = float(m.group(1))
        if score > limit:
            print(f'FAIL exposure {score} is above {limit}')
            failed = True
        else:
            print(f'OK exposure {score} (at most {limit})')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
