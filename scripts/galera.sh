#!/usr/bin/env bash
# galera.sh: a three-node MariaDB Galera cluster on this machine, from Debian's
# mariadb-server and galera-4 packages, for the MySQL backend's cluster tests
# and the chaos command. Each node has its own data directory, SQL port and
# Galera ports on the loopback; the cluster is torn down with `down`.
#
#   scripts/galera.sh up            start (bootstrap node 0, the others join by SST)
#   scripts/galera.sh down          stop every node and remove the data
#   scripts/galera.sh kill N        SIGKILL node N (0, 1, 2)
#   scripts/galera.sh start N       start node N again (it rejoins: IST or SST)
#   scripts/galera.sh partition N   cut node N off from the others (it stays up and
#                                   takes client connections, but is non-Primary)
#   scripts/galera.sh heal N        end the partition; wait until node N is Synced
#   scripts/galera.sh status        each node's wsrep state
#   scripts/galera.sh dsn N         the DSN of node N (go-sql-driver/mysql form)
#
# GALERA_DIR (default /tmp/ductwork-galera) holds the data; GALERA_PORT (default
# 13306) is node 0's SQL port, node N listens on GALERA_PORT+N on 127.0.0.1.
# Galera's own traffic (group, IST, SST) uses a loopback address per node,
# 127.0.0.1(1+N) (127.0.0.11, .12, .13), so that `partition` can drop it between
# one node's address and the others' with iptables while client connections on
# 127.0.0.1 go on. Needs root (the nodes run as the mysql user) and, for
# partition/heal, iptables (apt-get install iptables).
set -euo pipefail

DIR=${GALERA_DIR:-/tmp/ductwork-galera}
PORT=${GALERA_PORT:-13306}
NODES=3
GPORT=$((PORT + 1000)) # Galera base ports: GPORT + 10*N (group), +1 (IST), +2 (SST)

sqlport() { echo $((PORT + $1)); }
gport() { echo $((GPORT + 10 * $1)); }
gaddr() { echo "127.0.0.$((11 + $1))"; } # node N's address for Galera traffic
CHAIN=ductwork-galera                    # iptables chain of the partition rules

cluster_address() {
  local a="" i
  for i in $(seq 0 $((NODES - 1))); do a="$a,$(gaddr "$i"):$(gport "$i")"; done
  echo "gcomm://${a#,}"
}

write_config() {
  local i=$1 g a
  g=$(gport "$i")
  a=$(gaddr "$i")
  cat >"$DIR/n$i.cnf" <<CNF
[mysqld]
user=mysql
datadir=$DIR/n$i
socket=$DIR/n$i.sock
pid-file=$DIR/n$i.pid
log-error=$DIR/n$i.err
port=$(sqlport "$i")
bind-address=127.0.0.1
skip-name-resolve
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
innodb_log_file_size=32M
wsrep_on=ON
wsrep_provider=/usr/lib/galera/libgalera_smm.so
wsrep_cluster_name=ductwork
wsrep_cluster_address=$(cluster_address)
wsrep_node_name=n$i
wsrep_node_address=$a:$g
wsrep_node_incoming_address=127.0.0.1:$(sqlport "$i")
wsrep_provider_options="base_host=$a;base_port=$g;gmcast.listen_addr=tcp://$a:$g;ist.recv_addr=$a:$((g + 1));gcache.size=64M;evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S"
wsrep_sst_method=rsync
wsrep_sst_receive_address=$a:$((g + 2))
CNF
}

ping_node() { mariadb-admin --socket="$DIR/n$1.sock" -u root ping >/dev/null 2>&1; }

wait_synced() { # wait_synced N: until node N says Synced (up to 120 s)
  local i=$1 state
  for _ in $(seq 1 240); do
    state=$(mariadb --socket="$DIR/n$i.sock" -u root -N -e "SHOW STATUS LIKE 'wsrep_local_state_comment'" 2>/dev/null | awk '{print $2}') || true
    if [ "$state" = "Synced" ]; then return 0; fi
    sleep 0.5
  done
  echo "galera: node $i did not reach Synced (last state: ${state:-down}); see $DIR/n$i.err" >&2
  return 1
}

start_node() { # start_node N [--wsrep-new-cluster]
  local i=$1
  shift
  /usr/sbin/mariadbd --defaults-file="$DIR/n$i.cnf" "$@" >/dev/null 2>&1 &
  wait_synced "$i"
}

cluster_status() { # cluster_status N: Primary, non-Primary, or nothing if down
  mariadb --socket="$DIR/n$1.sock" -u root -N -e "SHOW STATUS LIKE 'wsrep_cluster_status'" 2>/dev/null | awk '{print $2}' || true
}

need_iptables() {
  if ! command -v iptables >/dev/null; then
    echo "galera: iptables is missing (apt-get install -y iptables); partition and heal need it" >&2
    exit 1
  fi
}

# unpartition N: remove the rules that cut node N off (none left is fine).
unpartition() {
  local i=$1 j r
  iptables -N "$CHAIN" 2>/dev/null || true
  for j in $(seq 0 $((NODES - 1))); do
    [ "$j" = "$i" ] && continue
    for r in "-s $(gaddr "$i") -d $(gaddr "$j")" "-s $(gaddr "$j") -d $(gaddr "$i")"; do
      # shellcheck disable=SC2086
      while iptables -D "$CHAIN" $r -p tcp -m multiport --ports "$GPORT:$((GPORT + 10 * NODES - 1))" -j DROP 2>/dev/null; do :; done
    done
  done
}

case "${1:-}" in
up)
  if [ -e "$DIR" ]; then echo "galera: $DIR exists; run '$0 down' first" >&2; exit 1; fi
  mkdir -p "$DIR"
  for i in $(seq 0 $((NODES - 1))); do
    write_config "$i"
    mkdir -p "$DIR/n$i"
  done
  chown -R mysql:mysql "$DIR"
  mariadb-install-db --defaults-file="$DIR/n0.cnf" --auth-root-authentication-method=normal >/dev/null
  start_node 0 --wsrep-new-cluster
  # Root over TCP from the loopback, with no password, as on the test server.
  mariadb --socket="$DIR/n0.sock" -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; CREATE DATABASE IF NOT EXISTS test"
  for i in $(seq 1 $((NODES - 1))); do start_node "$i"; done
  "$0" status
  ;;
down)
  for i in $(seq 0 $((NODES - 1))); do
    if [ -f "$DIR/n$i.pid" ]; then kill -9 "$(cat "$DIR/n$i.pid")" 2>/dev/null || true; fi
  done
  pkill -9 -f "mariadbd --defaults-file=$DIR/" 2>/dev/null || true
  pkill -9 -f "rsync --daemon.*$DIR" 2>/dev/null || true
  rm -rf "$DIR"
  if command -v iptables >/dev/null && iptables -n -L "$CHAIN" >/dev/null 2>&1; then
    while iptables -D INPUT -j "$CHAIN" 2>/dev/null; do :; done
    iptables -F "$CHAIN"
    iptables -X "$CHAIN"
  fi
  ;;
partition)
  # Drop every packet between node N's Galera address and the others' (both
  # directions, all the Galera ports: group, IST, SST); client connections to
  # 127.0.0.1 are not touched. Node N stays up, loses the quorum and refuses
  # queries (WSREP has not yet prepared node for application use) while the
  # other two keep the Primary component.
  need_iptables
  i=$2
  unpartition "$i"
  iptables -C INPUT -j "$CHAIN" 2>/dev/null || iptables -I INPUT -j "$CHAIN"
  for j in $(seq 0 $((NODES - 1))); do
    [ "$j" = "$i" ] && continue
    iptables -A "$CHAIN" -s "$(gaddr "$i")" -d "$(gaddr "$j")" -p tcp -m multiport --ports "$GPORT:$((GPORT + 10 * NODES - 1))" -j DROP
    iptables -A "$CHAIN" -s "$(gaddr "$j")" -d "$(gaddr "$i")" -p tcp -m multiport --ports "$GPORT:$((GPORT + 10 * NODES - 1))" -j DROP
  done
  # Until node N has noticed (evs.suspect_timeout and inactive_timeout: 3-6 s).
  for _ in $(seq 1 60); do
    st=$(cluster_status "$i")
    if [ -n "$st" ] && [ "$st" != "Primary" ]; then
      echo "galera: node $i partitioned ($st)"
      exit 0
    fi
    sleep 0.5
  done
  echo "galera: node $i still ${st:-down} 30 s after the partition" >&2
  exit 1
  ;;
heal)
  need_iptables
  unpartition "$2"
  wait_synced "$2"
  ;;
kill)
  kill -9 "$(cat "$DIR/n$2.pid")"
  ;;
start)
  start_node "$2"
  ;;
status)
  for i in $(seq 0 $((NODES - 1))); do
    printf 'node %d (port %d): ' "$i" "$(sqlport "$i")"
    mariadb --socket="$DIR/n$i.sock" -u root -N -e "SELECT CONCAT(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT','WSREP_CLUSTER_SIZE') ORDER BY VARIABLE_NAME" 2>/dev/null | paste -sd' ' || echo down
  done
  ;;
dsn)
  echo "root@tcp(127.0.0.1:$(sqlport "$2"))/"
  ;;
*)
  sed -n '2,23p' "$0" >&2
  exit 2
  ;;
esac
