#!/usr/bin/env bash
# Read throughput of one kernelci-server against two sharing one PostgreSQL
# database, and the servers' memory, over real HTTP on loopback (wrk).
#
#   KCI_PG_URL='host=127.0.0.1 port=5432 user=postgres dbname=kci sslmode=disable' \
#       benches/multi-server.sh [SECONDS] [ROUNDS]
#
# The database must hold a loaded data set (examples/pg_load.rs). Each round runs,
# for SECONDS each (default 10): one server loaded by one wrk (2 threads, 64
# connections), then two servers each loaded by its own wrk with the same settings,
# started together; requests are `GET /latest/node/{id}` over 1,000 ids picked at
# random from the database and `GET /latest/nodes?kind=test&state=done&limit=10`
# (one in ten). Prints requests/s per configuration and the servers' peak RSS
# (VmHWM) at the end. Needs wrk (Debian package `wrk`), psql and a release build.
# Runs by hand only; the 2-core machine shares its cores between the servers,
# PostgreSQL and wrk, so the figure is what a second process adds there, not on a
# machine with cores to spare.
set -euo pipefail
SECS=${1:-10}
ROUNDS=${2:-3}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${KCI_PG_URL:?set KCI_PG_URL}"
command -v wrk >/dev/null || { echo "wrk missing (apt-get install -y wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -q -p kernelci-server)
BIN="$ROOT/target/release/kernelci-server"
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT INT TERM

psql "$KCI_PG_URL" -At -c "SELECT encode(id, 'hex') FROM kci_nodes ORDER BY random() LIMIT 1000" > "$T/ids"
{
    echo "local ids = {}"
    while read -r id; do echo "ids[#ids + 1] = \"$id\""; done < "$T/ids"
    cat <<'LUA'
local n = 0
request = function()
    n = n + 1
    if n % 10 == 0 then
        return wrk.format("GET", "/latest/nodes?kind=test&state=done&limit=10")
    end
    return wrk.format("GET", "/latest/node/" .. ids[math.random(#ids)])
end
LUA
} > "$T/load.lua"

start() {  # port -> pid
    local port=$1
    mkdir -p "$T/d$port"
    SECRET_KEY=bench-secret KCI_INITIAL_PASSWORD=bench-password RUST_LOG=warn \
        "$BIN" serve --backend postgres --database-url "$KCI_PG_URL" \
        --listen "127.0.0.1:$port" --data-dir "$T/d$port" >"$T/s$port.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/latest/" && break
        sleep 0.1
    done
    echo "$pid"
}
rate() { sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$1"; }

A=$(start 18101); PIDS+=("$A")
B=$(start 18102); PIDS+=("$B")
# Warm both servers' pools and PostgreSQL's cache.
wrk -t2 -c64 -d3s -s "$T/load.lua" http://127.0.0.1:18101 >/dev/null
wrk -t2 -c64 -d3s -s "$T/load.lua" http://127.0.0.1:18102 >/dev/null
echo "| round | one server req/s | two servers req/s (A + B) | ratio |"
echo "|---|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
    wrk -t2 -c64 -d"${SECS}s" -s "$T/load.lua" http://127.0.0.1:18101 > "$T/one"
    wrk -t2 -c64 -d"${SECS}s" -s "$T/load.lua" http://127.0.0.1:18101 > "$T/a" &
    WA=$!
    wrk -t2 -c64 -d"${SECS}s" -s "$T/load.lua" http://127.0.0.1:18102 > "$T/b"
    wait "$WA"
    one=$(rate "$T/one"); a=$(rate "$T/a"); b=$(rate "$T/b")
    two=$(echo "$a + $b" | bc -l)
    printf "| %s | %.0f | %.0f (%.0f + %.0f) | %.2f |\n" "$r" "$one" "$two" "$a" "$b" \
        "$(echo "$two / $one" | bc -l)"
done
for p in "$A" "$B"; do
    echo "server $p: $(grep -E 'VmHWM|VmRSS' /proc/$p/status | tr -s ' \n' ' ')"
done
