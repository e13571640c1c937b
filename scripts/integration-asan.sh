#!/usr/bin/env bash
# The integration suites against the server built with ASan/LSan/UBSan (build/asan/sqlfs).
# Every sanitizer report goes to a file in a fresh log directory; the run fails when a test
# fails or when any report (a leak at exit, a memory error, undefined behaviour) was written,
# whichever server process of the suites wrote it. GCC's UBSan runtime ignores log_path and
# prints to the server's stderr: the servers' own log files (kept below the suites' pytest
# base directories) are searched for sanitizer reports too.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-/usr/bin/python3}
BINARY=$PWD/build/asan/sqlfs
[ -x "$BINARY" ] || { echo "integration-asan: $BINARY is not built" >&2; exit 2; }

logs=$(mktemp -d /tmp/sqlfs-asan.XXXXXX)
mkdir "$logs/reports"
export SQLFS_BINARY=$BINARY
export ASAN_OPTIONS="detect_leaks=1:log_path=$logs/reports/asan:abort_on_error=0:quarantine_size_mb=32"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/reports/ubsan"
export LSAN_OPTIONS="log_path=$logs/reports/lsan"

rc=0
$PYTHON -m pytest -q -p no:cacheprovider --basetemp="$logs/integration" tests/integration || rc=1
$PYTHON -m pytest -q -p no:cacheprovider --basetemp="$logs/sdk" python/tests || rc=1

# Server logs: tests/integration writes <data>.log, python/tests server.log.
reports=$( (find "$logs/reports" -type f;
            grep -rlE --include='*.log' 'runtime error:|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer' \
                "$logs/integration" "$logs/sdk" 2>/dev/null) | sort)
if [ -n "$reports" ]; then
    echo "integration-asan: sanitizer reports were written:" >&2
    for f in $reports; do
        echo "== $f" >&2
        case $f in
        *.log) grep -m1 -A40 -E 'runtime error:|ERROR: (Address|Leak|UndefinedBehavior)Sanitizer' "$f" >&2 ;;
        *) head -n 60 "$f" >&2 ;;
        esac
    done
    rc=1
else
    echo "integration-asan: no sanitizer report (leaks, memory errors, undefined behaviour)"
fi
rm -rf "$logs"
exit $rc
