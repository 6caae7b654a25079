#!/bin/bash
# Runs every test (unit, data, integration against a real QEMU guest on a private bus) and
# ends with one line "N passed, N failed[, N skipped]". Under CI=true a skipped test counts
# as failed: a suite that cannot run here is a failure, not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

meson test -C build --print-errorlogs --timeout-multiplier "${SNAPSHOTD_TIMEOUT_MULTIPLIER:-1}" "$@"
rc=$?

# meson's own summary lists Ok/Fail/Skipped/Timeout; count from its JSON log instead, so
# the closing line means the same for every suite.
read -r passed failed skipped < <(/usr/bin/python3 - build/meson-logs/testlog.json <<'PY'
import json, sys
passed = failed = skipped = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"):
        passed += 1
    elif r == "SKIP":
        skipped += 1
    else:
        failed += 1
print(passed, failed, skipped)
PY
)
if [ "${CI:-}" = "true" ] && [ "${skipped:-0}" -gt 0 ]; then
        echo "CI=true: counting ${skipped} skipped test(s) as failed"
        failed=$((failed + skipped))
        skipped=0
        rc=1
fi
if [ "${skipped:-0}" -gt 0 ]; then
        echo "${passed:-0} passed, ${failed:-1} failed, ${skipped} skipped"
else
        echo "${passed:-0} passed, ${failed:-1} failed"
fi
[ "$rc" -eq 0 ] && [ "${failed:-1}" -eq 0 ]
