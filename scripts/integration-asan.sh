#!/usr/bin/env bash
# The integration suites against the server built with ASan/LSan/UBSan (build/asan/sqlfs).
# Every sanitizer report goes to a file in a fresh log directory; the run fails when a test
# fails or when any report (a leak at exit, a memory error, undefined behaviour) was written,
# whichever server process of the suites wrote it.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
BINARY=$PWD/build/asan/sqlfs
[ -x "$BINARY" ] || { echo "integration-asan: $BINARY is not built" >&2; exit 2; }

logs=$(mktemp -d /tmp/sqlfs-asan.XXXXXX)
export SQLFS_BINARY=$BINARY
export ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan:abort_on_error=0:quarantine_size_mb=32"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan"
export LSAN_OPTIONS="log_path=$logs/lsan"

rc=0
$PYTHON -m pytest -q -p no:cacheprovider tests/integration || rc=1
$PYTHON -m pytest -q -p no:cacheprovider python/tests || rc=1

reports=$(find "$logs" -type f | sort)
if [ -n "$reports" ]; then
    echo "integration-asan: sanitizer reports were written:" >&2
    for f in $reports; do echo "== $f" >&2; head -n 60 "$f" >&2; done
    rc=1
else
    echo "integration-asan: no sanitizer report (leaks, memory errors, undefined behaviour)"
fi
rm -rf "$logs"
exit $rc
