#!/usr/bin/env bash
# pgpair.sh: a PostgreSQL primary and a synchronous streaming standby on this
# machine, from Debian's postgresql package, for failover tests and the chaos
# command. Clients use a multi-host DSN with target_session_attrs=read-write,
# so that after a failover they find the promoted standby by themselves.
#
#   scripts/pgpair.sh up         start the primary and its synchronous standby
#   scripts/pgpair.sh down       stop both and remove the data
#   scripts/pgpair.sh failover   SIGKILL the primary, promote the standby
#   scripts/pgpair.sh wait       return once the promoted standby accepts writes
#   scripts/pgpair.sh dsn        the multi-host DSN
#
# PGPAIR_DIR (default /tmp/ductwork-pgpair) holds the data; PGPAIR_PORT
# (default 15432) is the primary's port, the standby's is one more. Needs
# root (the servers run as the postgres user).
set -euo pipefail

DIR=${PGPAIR_DIR:-/tmp/ductwork-pgpair}
PORT=${PGPAIR_PORT:-15432}
SPORT=$((PORT + 1))
BIN=/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin
as_pg() { runuser -u postgres -- "$@"; }

dsn() { echo "postgres://postgres@127.0.0.1:$PORT,127.0.0.1:$SPORT/test?sslmode=disable&target_session_attrs=read-write&connect_timeout=3"; }

wait_writable() { # wait_writable PORT: until the server there accepts writes (60 s)
  for _ in $(seq 1 120); do
    if [ "$(as_pg "$BIN/psql" -h 127.0.0.1 -p "$1" -d postgres -XAtc 'SELECT NOT pg_is_in_recovery()' 2>/dev/null)" = t ]; then return 0; fi
    sleep 0.5
  done
  echo "pgpair: the server on port $1 does not accept writes" >&2
  return 1
}

case "${1:-}" in
up)
  if [ -e "$DIR" ]; then echo "pgpair: $DIR exists; run '$0 down' first" >&2; exit 1; fi
  mkdir -p "$DIR" && chown postgres:postgres "$DIR"
  as_pg "$BIN/initdb" -D "$DIR/primary" -U postgres --auth=trust >/dev/null
  cat >>"$DIR/primary/postgresql.conf" <<CONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
wal_level = replica
max_wal_senders = 4
wal_keep_size = 256MB
synchronous_commit = on
shared_buffers = 64MB
max_connections = 200
CONF
  as_pg "$BIN/pg_ctl" -D "$DIR/primary" -l "$DIR/primary.log" -w start >/dev/null
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -d postgres -Xqc "CREATE DATABASE test"
  as_pg "$BIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$DIR/standby" -R -X stream -c fast
  cat >>"$DIR/standby/postgresql.conf" <<CONF
port = $SPORT
CONF
  echo "primary_conninfo = 'host=127.0.0.1 port=$PORT user=postgres application_name=standby'" >>"$DIR/standby/postgresql.auto.conf"
  as_pg "$BIN/pg_ctl" -D "$DIR/standby" -l "$DIR/standby.log" -w start >/dev/null
  # Synchronous from now on (set before the standby exists, every commit
  # would wait for it): an acknowledged commit is on both servers.
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -d postgres -Xqc "ALTER SYSTEM SET synchronous_standby_names = 'standby'" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 1 120); do
    state=$(as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -d postgres -XAtc "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'" 2>/dev/null || true)
    if [ "$state" = sync ]; then echo "pgpair: primary :$PORT, synchronous standby :$SPORT"; exit 0; fi
    sleep 0.5
  done
  echo "pgpair: the standby did not become synchronous; see $DIR/*.log" >&2
  exit 1
  ;;
down)
  for n in primary standby; do
    if [ -f "$DIR/$n/postmaster.pid" ]; then kill -9 "$(head -1 "$DIR/$n/postmaster.pid")" 2>/dev/null || true; fi
  done
  pkill -9 -f "postgres -D $DIR/" 2>/dev/null || true
  rm -rf "$DIR"
  ;;
failover)
  kill -9 "$(head -1 "$DIR/primary/postmaster.pid")"
  as_pg "$BIN/pg_ctl" -D "$DIR/standby" -w promote >/dev/null
  ;;
wait)
  wait_writable "$SPORT"
  ;;
dsn)
  dsn
  ;;
*)
  sed -n '2,15p' "$0" >&2
  exit 2
  ;;
esac
