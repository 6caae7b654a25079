#!/bin/bash
# Sets everything up, then runs snapshotd against a real QEMU guest on a private bus and
# takes an atomic, quiesced, disk-only snapshot of both disks with snapshotctl while the
# guest keeps writing. Everything it starts, it stops.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec env SNAPSHOTD="$PWD/build/daemon/snapshotd" SNAPSHOTCTL="$PWD/build/client/snapshotctl" \
        SNAPSHOTD_BUILD_ROOT="$PWD/build" SNAPSHOTD_SOURCE_ROOT="$PWD" PYTHONPATH="$PWD/tests/lib" \
        /usr/bin/python3 scripts/demo.py "$@"
