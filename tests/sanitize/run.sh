#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs one integration test file against an ASan+UBSan build of snapshotd and snapshotctl.
#
#   tests/sanitize/run.sh TEST.py [unittest args...]
#
# The sanitizer build is made once (then only rebuilt when sources changed) in
# $SANITIZE_BUILD_DIR, by default sanitize/ under the meson build dir, under a lock. The
# daemon halts on the first UBSan report, and ASan's leak check at exit makes it exit
# non-zero: the tests check the daemon's exit status whenever they stop it, so any report
# fails the test. Reports are written to <dir>/reports/ as well, and the tail shown here.
set -euo pipefail

src="$(cd "$(dirname "$0")/../.." && pwd)"
if [ $# -lt 1 ]; then
        echo "usage: $0 TEST.py [unittest args...]" >&2
        exit 2
fi
test_file="$1"
shift
dir="${SANITIZE_BUILD_DIR:-${SNAPSHOTD_BUILD_ROOT:-$src/build}/sanitize}"
meson="${MESON:-meson}"

mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/build.ninja" ]; then
        rm -rf "$dir"
        echo "run.sh: configuring the ASan+UBSan build in $dir"
        if ! "$meson" setup "$dir" "$src" -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug \
                        -Dfailpoints=true -Dtests=false -Dman=disabled >"$dir.setup.log" 2>&1; then
                cat "$dir.setup.log" >&2
                exit 1
        fi
fi
if ! ninja -C "$dir" daemon/snapshotd client/snapshotctl >"$dir.build.log" 2>&1; then
        tail -n 60 "$dir.build.log" >&2
        echo "run.sh: building $dir failed" >&2
        exit 1
fi
flock -u 9

reports="$dir/reports"
mkdir -p "$reports"
name="$(basename "$test_file" .py)"
rm -f "$reports/$name".*
export SNAPSHOTD="$dir/daemon/snapshotd" SNAPSHOTCTL="$dir/client/snapshotctl"
# abort_on_error: a report kills the daemon at once (as a crash), so it cannot go unnoticed;
# log_path keeps the report even when the test only sees the exit status.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/$name.asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$reports/$name.ubsan"
# Everything is slower under ASan: give the tests' daemon start the valgrind-length wait.
export SNAPSHOTD_TEST_SLOW=1

rc=0
/usr/bin/python3 "$test_file" "$@" || rc=$?
found=0
for f in "$reports/$name".*; do
        [ -e "$f" ] || continue
        found=1
        echo "===== sanitizer report $f =====" >&2
        tail -n 40 "$f" >&2
done
if [ $found = 1 ] && [ $rc = 0 ]; then
        echo "run.sh: the tests passed but the sanitizers reported (above)" >&2
        rc=1
fi
exit $rc
