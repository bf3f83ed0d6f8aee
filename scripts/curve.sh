#!/usr/bin/env bash
# curve.sh: the scale-out curve of docs/SCALING.md on this machine. W1 and W2
# with 1, 2 and 4 supervisor hosts (network namespaces) of 16 workers in all,
# and 4 hosts with 64 workers, on PostgreSQL and MariaDB; then each server's
# own commit ceiling (pgbench; mysqlslap) at 16 and 64 clients, and, during a
# W2 run on 4 hosts, what the server's sessions wait on (sampled every 100 ms)
# and where the machine's CPU goes (perf, by command). Needs root (namespaces,
# perf). Results: $OUT (default /tmp/curve), one JSON line per bench result.
#
#   scripts/curve.sh [rounds]     (default 2 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
OUT=${OUT:-/tmp/curve}
PG=${DUCTWORK_TEST_POSTGRES_DSN:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
MY=${DUCTWORK_TEST_MYSQL_DSN:-root@tcp(127.0.0.1:3306)/}
mkdir -p "$OUT"
go build -o "$OUT/bench" ./cmd/ductwork-bench

bench() { # backend dsn workload n workers procs
  "$OUT/bench" -backend "$1" -dsn "$2" -workload "$3" -n "$4" -workers "$5" -procs "$6" -netns -json 2>>"$OUT/stderr.log"
}

for r in $(seq "$ROUNDS"); do
  for cfg in "16 1" "16 2" "16 4" "64 4"; do
    set -- $cfg
    bench postgres "$PG" jobs 20000 "$1" "$2" | tee -a "$OUT/results.jsonl"
    bench postgres "$PG" chain 1000 "$1" "$2" | tee -a "$OUT/results.jsonl"
    bench mysql "$MY" jobs 5000 "$1" "$2" | tee -a "$OUT/results.jsonl"
    bench mysql "$MY" chain 300 "$1" "$2" | tee -a "$OUT/results.jsonl"
  done
done

# The servers' own commit ceilings: one-row UPDATE transactions.
{
  psql -q -h 127.0.0.1 -U postgres -d test -c "DROP TABLE IF EXISTS curve_probe; CREATE TABLE curve_probe (id int PRIMARY KEY, n bigint); INSERT INTO curve_probe SELECT g, 0 FROM generate_series(1, 10000) g"
  printf '\\set id random(1, 10000)\nUPDATE curve_probe SET n = n + 1 WHERE id = :id;\n' >"$OUT/probe.sql"
  for c in 16 64; do
    echo "pgbench clients=$c: $(pgbench -h 127.0.0.1 -U postgres -n -f "$OUT/probe.sql" -c "$c" -j 2 -T 5 test 2>/dev/null | grep -E '^tps' | head -1)"
  done
  psql -q -h 127.0.0.1 -U postgres -d test -c "DROP TABLE curve_probe"
  mysql -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS curve_probe; CREATE DATABASE curve_probe; CREATE TABLE curve_probe.t (id int PRIMARY KEY, n bigint) ENGINE=InnoDB; INSERT INTO curve_probe.t SELECT seq, 0 FROM curve_probe.seq_1_to_10000"
  for c in 16 64; do
    q=$((c * 500))
    echo "mysqlslap clients=$c autocommit updates=$((q / 2)) (plus as many SETs): $(mysqlslap -h 127.0.0.1 -u root --create-schema=curve_probe --concurrency="$c" --iterations=1 --number-of-queries="$q" \
      --delimiter=";" --query="SET @i = FLOOR(1 + RAND() * 10000); UPDATE t SET n = n + 1 WHERE id = @i" 2>&1 | grep -E 'Average number of seconds' | sed 's/^ *//')"
  done
  mysql -h 127.0.0.1 -u root -e "DROP DATABASE curve_probe"
} | tee "$OUT/ceilings.txt"

# What PostgreSQL's sessions wait on during W2 on 4 hosts, and where the
# machine's CPU goes.
sample_pg() {
  while :; do
    psql -Atq -h 127.0.0.1 -U postgres -d test -c "SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()" 2>/dev/null
    sleep 0.1
  done
}
sample_pg >"$OUT/pg-waits.raw" &
sampler=$!
perf record -a -F 99 -o "$OUT/perf-pg.data" -- "$OUT/bench" -backend postgres -dsn "$PG" -workload chain -n 1000 -workers 16 -procs 4 -netns -json 2>>"$OUT/stderr.log" | tee -a "$OUT/profiled.jsonl"
kill "$sampler" 2>/dev/null || true
sort "$OUT/pg-waits.raw" | uniq -c | sort -rn | head -15 | tee "$OUT/pg-waits.txt"
perf report -i "$OUT/perf-pg.data" --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12 | tee "$OUT/perf-pg.txt"

sample_my() {
  while :; do
    mysql -N -h 127.0.0.1 -u root -e "SELECT IFNULL(NULLIF(STATE, ''), 'executing') FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Sleep' AND DB LIKE 'dwbench_%'" 2>/dev/null
    sleep 0.1
  done
}
sample_my >"$OUT/my-states.raw" &
sampler=$!
perf record -a -F 99 -o "$OUT/perf-my.data" -- "$OUT/bench" -backend mysql -dsn "$MY" -workload chain -n 300 -workers 16 -procs 4 -netns -json 2>>"$OUT/stderr.log" | tee -a "$OUT/profiled.jsonl"
kill "$sampler" 2>/dev/null || true
sort "$OUT/my-states.raw" | uniq -c | sort -rn | head -15 | tee "$OUT/my-states.txt"
perf report -i "$OUT/perf-my.data" --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12 | tee "$OUT/perf-my.txt"
