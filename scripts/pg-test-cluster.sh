#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for tests (Debian's postgresql-15 package), unix socket only.
#
#   scripts/pg-test-cluster.sh start DIR [NAME=VALUE...]
#                                          initdb into DIR (created, must not hold a cluster),
#                                          start the server, print its URL on stdout; each
#                                          NAME=VALUE is a server setting (max_connections=12)
#   scripts/pg-test-cluster.sh url DIR     print the URL of the cluster in DIR
#   scripts/pg-test-cluster.sh restart DIR restart the server (fast shutdown: every session is
#                                          ended), same settings, same DIR
#   scripts/pg-test-cluster.sh down DIR    stop the server (fast shutdown), keep DIR
#   scripts/pg-test-cluster.sh up DIR      start the server of DIR again after `down`
#   scripts/pg-test-cluster.sh stop DIR    stop the server (fast shutdown) and remove DIR
#
# The server listens on no TCP address (listen_addresses=''), only on a socket in DIR; local
# connections are trusted: any local user (tests run servers as unprivileged users too) is the
# superuser "postgres" of this throw-away cluster. fsync is off. For tests only. PostgreSQL refuses to run as root, so as root the cluster belongs to the
# unprivileged "postgres" user (created by the package) and DIR is handed to it. The URL names
# the database "postgres"; tests create their own databases in it. The server's log is
# DIR/log. DIR's path must be short (a unix socket path holds at most 107 bytes) and, as root,
# reachable by the postgres user (a directory under /tmp is).
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [NAME=VALUE...] | url|restart|down|up|stop DIR" >&2
  exit 2
}
[ $# -ge 2 ] || usage
cmd=$1
dir=$2
shift 2
[ "$cmd" = start ] || [ $# -eq 0 ] || usage

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "pg-test-cluster: PostgreSQL is not installed (apt-get install postgresql-15)" >&2
  exit 1
fi

# Runs a PostgreSQL program as the cluster's owner.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start_server() {
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 start >/dev/null ||
    { tail -n 20 "$dir/log" >&2; return 1; }
}

url() {
  local abs
  abs=$(cd "$dir" && pwd)
  echo "postgresql:///postgres?host=$abs&user=postgres"
}

case "$cmd" in
start)
  if [ -e "$dir/data/PG_VERSION" ]; then
    echo "pg-test-cluster: $dir already holds a cluster" >&2
    exit 1
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
  fi
  chmod 0711 "$dir" # the socket's directory: any user may reach the socket, none may list it
  if ! as_owner test -w "$dir"; then
    echo "pg-test-cluster: the postgres user cannot reach $dir (a parent directory is closed" \
      "to it): use a directory under /tmp" >&2
    exit 1
  fi
  as_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  abs=$(cd "$dir" && pwd)
  # The settings go into the cluster's configuration file (a later line wins), so that restart
  # and up start the server with them again.
  {
    echo "listen_addresses = ''"
    echo "unix_socket_directories = '$abs'"
    echo "fsync = off"
    echo "synchronous_commit = off"
    echo "full_page_writes = off"
    echo "max_connections = 200"
    echo "shared_buffers = 64MB"
    for setting in "$@"; do
      case $setting in
      [a-z_]*=*) echo "${setting%%=*} = '${setting#*=}'" ;;
      *) echo "pg-test-cluster: a setting is NAME=VALUE, not '$setting'" >&2; exit 2 ;;
      esac
    done
  } | as_owner tee -a "$dir/data/postgresql.conf" >/dev/null
  start_server || exit 1
  url
  ;;
url)
  url
  ;;
restart)
  as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -m fast -w -t 60 restart >/dev/null ||
    { tail -n 20 "$dir/log" >&2; exit 1; }
  ;;
down)
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
  ;;
up)
  start_server
  ;;
stop)
  if [ -e "$dir/data/postmaster.pid" ]; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*)
  usage
  ;;
esac
