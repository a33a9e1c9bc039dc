#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests, benchmarks and the demo: initdb into a
# directory, a free port on 127.0.0.1, password authentication, stopped at the end.
# No mock: the PostgreSQL journal's tests run against this real server.
#
#   scripts/pg-throwaway.sh start DIR     initdb DIR (once) and start the server;
#                                         prints the connection URI (also in DIR/uri)
#   scripts/pg-throwaway.sh stop DIR      stop the server (fast shutdown), keep DIR
#   scripts/pg-throwaway.sh kill DIR      stop it the way a crash would (immediate
#                                         shutdown: WAL recovery at the next start)
#   scripts/pg-throwaway.sh destroy DIR   stop it and delete DIR
#   scripts/pg-throwaway.sh uri DIR       print the URI of a started cluster
#
# PostgreSQL refuses to run as root, so as root (CI, the test run) the cluster
# belongs to the `postgres` user the Debian package creates (runuser); as any other
# user it is that user's. The superuser is `troupe` with a random password made
# for each cluster (kept in DIR/password, mode 600, and in the printed URI): the
# server listens on 127.0.0.1 only, and the cluster lives as long as the run.
# `start` on a stopped cluster starts it again on the same port (a restart test).
# Exits non-zero with the server log's tail when the server cannot start.
set -euo pipefail

bin="${PG_THROWAWAY_BIN:-}"
if [ -z "$bin" ]; then
  for v in 15 16 17 14 13; do
    if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then bin="/usr/lib/postgresql/$v/bin"; break; fi
  done
fi
die() { echo "pg-throwaway: $*" >&2; exit 1; }
[ -n "$bin" ] && [ -x "$bin/initdb" ] ||
  die "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); install the postgresql package (scripts/install-deps.sh)"

what="${1:-}"
dir="${2:-}"
[ -n "$what" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|kill|destroy|uri DIR" >&2; exit 2; }

as_owner() {  # runs a server command as the cluster's owner
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Below the kernel's ephemeral range: a client reconnecting in a loop to a stopped
# server on a port inside it can be given that very port as its own and connect to
# itself (TCP self-connect), which then keeps the server from starting again.
free_port() {
  local p low=20000 high=32767
  if [ -r /proc/sys/net/ipv4/ip_local_port_range ]; then
    high=$(($(cut -f1 /proc/sys/net/ipv4/ip_local_port_range) - 1))
  fi
  [ "$high" -gt "$low" ] || low=1024
  for _ in $(seq 1 50); do
    p=$((low + RANDOM % (high - low)))
    port_in_use "$p" || { echo "$p"; return; }
  done
  die "no free port found on 127.0.0.1"
}

init_cluster() {
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (the postgresql package creates it)"
    chown postgres: "$dir"
  fi
  # Another local user must not guess the superuser's password of a cluster that
  # listens on TCP; hex, so it goes into the URI as is.
  # (od reads exactly its bytes: a reader closed early would SIGPIPE under pipefail.)
  (umask 077; od -An -N18 -tx1 /dev/urandom | tr -d ' \n' >"$dir/password")
  cp "$dir/password" "$dir/pwfile"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/pwfile"
  mkdir -p "$dir/sock"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/sock"
  as_owner "$bin/initdb" -D "$dir/data" -U troupe --pwfile="$dir/pwfile" --auth=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { tail -20 "$dir/initdb.log" >&2; die "initdb failed in '$dir/data'"; }
  rm -f "$dir/pwfile"
  # Tests open a pool per journal and run in parallel; the rest are defaults.
  cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/sock'
max_connections = 300
shared_buffers = 128MB
EOF
}

start() {
  mkdir -p "$dir"
  [ -f "$dir/data/PG_VERSION" ] || init_cluster
  local port attempt
  for attempt in $(seq 1 20); do
    port="$(cat "$dir/port" 2>/dev/null || free_port)"
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
         -o "-p $port" start >/dev/null 2>&1; then
      echo "$port" >"$dir/port"
      echo "postgresql://troupe:$(cat "$dir/password")@127.0.0.1:$port/postgres" >"$dir/uri"
      chmod 600 "$dir/uri"
      cat "$dir/uri"
      return
    fi
    # Someone took the port between the check and the start: try another one. A
    # restart keeps its port (and URI): right after a stop the port can still be
    # busy for a moment, so wait and try it again.
    [ -f "$dir/port" ] && sleep 0.5
  done
  tail -20 "$dir/server.log" >&2 || true
  die "the server in '$dir/data' did not start (log above, full log in '$dir/server.log')"
}

stop() {  # stop <mode>
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_owner "$bin/pg_ctl" -D "$dir/data" -m "$1" -w -t 60 stop >/dev/null 2>&1 ||
    die "pg_ctl stop -m $1 failed for '$dir/data'"
}

case "$what" in
  start) start ;;
  stop) stop fast ;;
  kill) stop immediate ;;
  destroy) stop fast; rm -rf "$dir" ;;
  uri) [ -f "$dir/uri" ] || die "no cluster started in '$dir'"; cat "$dir/uri" ;;
  *) echo "usage: $0 start|stop|kill|destroy|uri DIR" >&2; exit 2 ;;
esac
