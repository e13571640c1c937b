#!/usr/bin/env bash
# Runs every unit test binary given; prints one summary line; fails if any failed.
#
# The store tests also run against PostgreSQL: unless SQLFS_TEST_PG_URL names a server already,
# a throw-away cluster is started for the run (scripts/pg-test-cluster.sh) and removed after.
# Without PostgreSQL installed they run against SQLite only, and say so.
set -u
here=$(cd "$(dirname "$0")" && pwd)
cluster=
if [ -z "${SQLFS_TEST_PG_URL:-}" ] && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  cluster=$(mktemp -d /tmp/sqlfs-pg.XXXXXX)
  trap 'bash "$here/pg-test-cluster.sh" stop "$cluster"' EXIT
  if url=$(bash "$here/pg-test-cluster.sh" start "$cluster"); then
    export SQLFS_TEST_PG_URL="$url"
  else
    echo "unit tests: could not start a PostgreSQL cluster; the store tests run on SQLite only" >&2
  fi
fi
pass=0; fail=0
for t in "$@"; do
  if "$t"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: $t" >&2; fi
done
echo "unit test binaries: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
