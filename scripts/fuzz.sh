#!/bin/bash
# Runs each libFuzzer target for SECONDS on its seed corpus; exits non-zero on the first crash.
# Usage: scripts/fuzz.sh SECONDS TARGET...   (binaries in build/fuzz, seeds in fuzz/corpus/<t>)
set -u
secs=$1
shift
out=build/fuzz
status=0
for t in "$@"; do
    mkdir -p "$out/work/$t" "fuzz/corpus/$t"
    log="$out/$t.log"
    if ! "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$out/$t-" -print_final_stats=1 \
        "$out/work/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
        echo "FUZZ $t: FAILED (see $log; reproducer in $out/$t-*)"
        grep -E "ERROR|SUMMARY|==[0-9]+==" "$log" | head -20
        status=1
        continue
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    echo "FUZZ $t: ok, ${runs:-?} execs in ${secs}s, $cov"
done
exit $status
