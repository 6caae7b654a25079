#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the libFuzzer targets in a clang build dir (once; later calls only rebuild what
# changed) and runs one target on its seed corpus.
#
#   tests/fuzz/run.sh TARGET SECONDS [libFuzzer options...]    by hand, e.g. run.sh snapshot-xml 600
#   tests/fuzz/run.sh --test TARGET                            from `meson test` (FUZZ_SECONDS, default 15)
#
# TARGET: snapshot-xml, domain-config, json-stream, save-image, create-options, qmp.
# The clang build dir is $FUZZ_BUILD_DIR, by default fuzz-clang/ under the meson build dir
# (build/fuzz-clang when run by hand). New inputs libFuzzer finds go to <that dir>/work/TARGET/corpus
# (the seeds in tests/fuzz/corpus/TARGET are only read); a crash, leak or sanitizer report fails
# the run and leaves its reproducer in <that dir>/work/TARGET/artifacts/.
# Exit: 0 clean, 1 a finding or a build failure, 77 clang or its libFuzzer runtime missing
# (skip; under CI=true that is a failure instead).
set -euo pipefail

src="$(cd "$(dirname "$0")/../.." && pwd)"
test_mode=0
if [ "${1:-}" = "--test" ]; then
        test_mode=1
        shift
fi
if [ $# -lt 1 ] || { [ $test_mode = 0 ] && [ $# -lt 2 ]; }; then
        echo "usage: $0 TARGET SECONDS [libFuzzer options...] | $0 --test TARGET" >&2
        exit 2
fi
target="${1#fuzz-}"
shift
if [ $test_mode = 1 ]; then
        seconds="${FUZZ_SECONDS:-15}"
else
        seconds="$1"
        shift
fi
if [ ! -f "$src/tests/fuzz/fuzz-$target.c" ]; then
        echo "run.sh: no such target '$target' (see tests/fuzz/fuzz-*.c)" >&2
        exit 2
fi

if [ -n "${FUZZ_BUILD_DIR:-}" ]; then
        dir="$FUZZ_BUILD_DIR"
elif [ -n "${SNAPSHOTD_BUILD_ROOT:-}" ]; then
        dir="$SNAPSHOTD_BUILD_ROOT/fuzz-clang"
else
        dir="$src/build/fuzz-clang"
fi
meson="${MESON:-meson}"

missing() {
        if [ "${CI:-}" = "true" ]; then
                echo "run.sh: $1; under CI=true this fails instead of skipping (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
                exit 1
        fi
        echo "run.sh: $1, skipping (apt-get install clang libclang-rt-14-dev)" >&2
        exit 77
}

command -v clang >/dev/null || missing "clang is not installed"
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$probe/p.c"
clang -fsanitize=fuzzer,address,undefined -o "$probe/p" "$probe/p.c" >"$probe/log" 2>&1 ||
        missing "clang cannot link a libFuzzer program with ASan/UBSan ($(head -c 300 "$probe/log"))"

# Configure and build under a lock: the tests of the five targets start together.
mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
if [ ! -f "$dir/build.ninja" ]; then
        rm -rf "$dir"
        echo "run.sh: configuring the clang fuzz build in $dir"
        if ! CC=clang "$meson" setup "$dir" "$src" -Dfuzz=true -Db_sanitize=address,undefined \
                        -Db_lundef=false -Dbuildtype=debugoptimized >"$dir.setup.log" 2>&1; then
                cat "$dir.setup.log" >&2
                echo "run.sh: configuring $dir failed" >&2
                exit 1
        fi
fi
targets=()
for f in "$src"/tests/fuzz/fuzz-*.c; do
        t="$(basename "$f" .c)"
        targets+=("tests/fuzz/$t")
done
if ! ninja -C "$dir" "${targets[@]}" >"$dir.build.log" 2>&1; then
        tail -n 60 "$dir.build.log" >&2
        echo "run.sh: building the fuzz targets in $dir failed" >&2
        exit 1
fi
flock -u 9

work="$dir/work/$target"
mkdir -p "$work/corpus" "$work/artifacts"
log="$work/last.log"
opts=(-max_total_time="$seconds" -print_final_stats=1 -error_exitcode=99 -timeout_exitcode=98
      -timeout=25 -rss_limit_mb=2048 -artifact_prefix="$work/artifacts/")
if [ -f "$src/tests/fuzz/$target.dict" ]; then
        opts+=(-dict="$src/tests/fuzz/$target.dict")
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
echo "run.sh: fuzz-$target for $seconds s (log: $log)"
rc=0
corpora=("$work/corpus" "$src/tests/fuzz/corpus/$target")
# Reproducers of fixed findings stay as seeds, so a regression shows up at once.
if [ -d "$src/tests/fuzz/crashes/$target" ]; then
        corpora+=("$src/tests/fuzz/crashes/$target")
fi
"$dir/tests/fuzz/fuzz-$target" "${opts[@]}" "$@" "${corpora[@]}" >"$log" 2>&1 || rc=$?

execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
status="$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 || true)"
cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")"
ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")"
corp="$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$status")"
echo "fuzz-$target: executions ${execs:-?} in $seconds s, cov: ${cov:-?}, ft: ${ft:-?}, corpus: ${corp:-?}"

if [ $rc -ne 0 ]; then
        # The sanitizer report and libFuzzer's note on the reproducer are at the end.
        tail -n 80 "$log" >&2
        echo "run.sh: fuzz-$target FAILED (exit $rc); reproducer(s):" >&2
        ls -1 "$work/artifacts" >&2 || true
        echo "replay: $dir/tests/fuzz/fuzz-$target <file>" >&2
        exit 1
fi
