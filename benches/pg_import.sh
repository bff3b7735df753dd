#!/usr/bin/env bash
# Times `kernelci-server import mongo DUMP` into PostgreSQL: a throwaway cluster
# (initdb in a temporary directory, loopback only, the defaults but
# max_wal_size=4GB), RUNS imports, each into a new database; prints the wall time,
# the importer's peak RSS and the database size of each run.
#
#   cargo build --release -p kernelci-server
#   cargo run --release -p kernelci-benches --example mongo_dump -- 1000000 target/mongo-1m
#   benches/pg_import.sh target/mongo-1m 3
#
# Needs the PostgreSQL server binaries (Debian's postgresql package) and GNU time
# is not needed (the RSS comes from /proc). As root, the cluster runs as `postgres`.
set -euo pipefail
cd "$(dirname "$0")/.."

dump=${1:?usage: benches/pg_import.sh DUMP [RUNS]}
runs=${2:-3}
bin=${KCI_BIN:-target/release/kernelci-server}
dump=$(cd "$dump" && pwd)

initdb=$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
pgbin=$(dirname "$(readlink -f "$initdb")")
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres "$work"
cleanup() {
    as_pg "$pgbin/pg_ctl" -D "$work/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

as_pg "$pgbin/initdb" -D "$work/data" -U postgres -A trust --no-locale -E UTF8 >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/data" -l "$work/postgres.log" -w start \
    -o "-p $port -k $work -c listen_addresses=127.0.0.1 -c max_wal_size=4GB" >/dev/null
psql() { as_pg "$pgbin/psql" -h 127.0.0.1 -p "$port" -U postgres -At "$@"; }
psql -c "select version()"

echo "run  seconds  nodes/s  peak_rss_MB  db_MB"
for i in $(seq 1 "$runs"); do
    psql -c "create database kci_$i" >/dev/null
    start=$(date +%s.%N)
    "$bin" import mongo "$dump" --backend postgres \
        --database-url "postgres://postgres@127.0.0.1:$port/kci_$i" \
        --rejects "$work/rejects-$i.jsonl" >"$work/import-$i.txt" 2>&1 &
    pid=$!
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
        rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$peak" ] && peak=$rss
        sleep 0.2
    done
    wait "$pid" || { cat "$work/import-$i.txt"; exit 1; }
    end=$(date +%s.%N)
    nodes=$(awk '$1 == "node" && $2 ~ /^[0-9]+$/ {print $3}' "$work/import-$i.txt")
    size=$(psql -c "select pg_database_size('kci_$i') / 1048576")
    python3 -c "import sys; s=$end-$start; print(f'{$i:>3}  {s:7.1f}  {$nodes/s:7.0f}  {$peak/1024:11.0f}  {$size:5}')"
    psql -c "drop database kci_$i" >/dev/null
done
