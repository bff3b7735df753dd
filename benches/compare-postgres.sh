#!/usr/bin/env bash
# Runs the PostgreSQL baseline and our store benchmark on the same generated data
# (gen_nodes.py --nodes N --seed 1) and prints one table: shape, ours (median),
# PostgreSQL (median), ratio; then the point operations.
#
#   benches/compare-postgres.sh [-q] [-r] N
#
#   -q  criterion --quick (fewer samples; for a first look)
#   -r  reuse PostgreSQL figures already in $OUT (or ../shared/workload) instead of
#       running pg_baseline.sh again
#
# Output: the table on stdout and in target/kernelci-bench/compare-N.md.
# Needs: python3, cargo, and for PostgreSQL its server binaries (initdb, pg_ctl,
# postgres, psql, pgbench), as pg_baseline.sh says. Takes a few minutes at 100k.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WORKLOAD="${KCI_WORKLOAD_DIR:-$ROOT/../shared/workload}"
QUICK=""
REUSE=0
while getopts "qrh" opt; do
    case $opt in
        q) QUICK="--quick" ;;
        r) REUSE=1 ;;
        *) sed -n '2,16p' "$0"; exit 0 ;;
    esac
done
shift $((OPTIND - 1))
N="${1:?usage: compare-postgres.sh [-q] [-r] N}"
OUT="$ROOT/target/kernelci-bench"
mkdir -p "$OUT"

PG_JSON="$OUT/pg_queries_$N.json"
if [ "$REUSE" = 1 ] && [ ! -f "$PG_JSON" ] && [ -f "$WORKLOAD/pg_queries_$N.json" ]; then
    cp "$WORKLOAD/pg_queries_$N.json" "$PG_JSON"
fi
if [ "$REUSE" = 0 ] || [ ! -f "$PG_JSON" ]; then
    echo "== PostgreSQL baseline at $N nodes" >&2
    bash "$WORKLOAD/pg_baseline.sh" -n "$N" -s 1 -o "$OUT" >&2
fi

echo "== kernelci-rs store benchmark at $N nodes" >&2
(cd "$ROOT" && KCI_BENCH_NODES="$N" cargo bench -q -p kernelci-benches --bench store -- $QUICK >&2)

python3 - "$N" "$OUT" "$ROOT/target/criterion" "$(git -C "$ROOT" rev-parse --short HEAD)" <<'PY'
import json, math, os, sys
n, out, crit, commit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def median_ns(group, bench):
    path = os.path.join(crit, group, bench, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except OSError:
        return None

def fmt_ms(ms):
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"

pg = {r["name"]: r for r in json.load(open(os.path.join(out, f"pg_queries_{n}.json")))}
ours = json.load(open(os.path.join(out, f"results-{n}.json")))
lines = [f"Data: gen_nodes.py --nodes {n} --seed 1; commit {commit}; machine: "
         f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB.",
         "",
         "| shape | endpoint | ours ms (median) | PostgreSQL ms (median) | ratio | plan (ours) |",
         "|---|---|---:|---:|---:|---|"]
ratios = []
for name, plan in ours["plans"].items():
    ns = median_ns(f"shapes-{n}", f"{name}_api")
    p = pg.get(name)
    if ns is None or p is None:
        continue
    ms = ns / 1e6
    ratio = ms / p["api_ms"]
    ratios.append(ratio)
    lines.append(f"| {name} | {plan['endpoint']} | {fmt_ms(ms)} | {fmt_ms(p['api_ms'])} | {ratio:.2f} | {plan['plan']} |")
geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else float("nan")
lines += ["", f"Shapes: {len(ratios)}; geometric mean of ratios: {geo:.3f}; "
          f"at most 0.2x: {sum(r <= 0.2 for r in ratios)}; slower than PostgreSQL: {sum(r > 1 for r in ratios)}.", ""]
ops = [("count_all", "count_all"), ("count kind=test", "count_kind_test"), ("get by id", "get_by_id"),
       ("durable insert, 1 writer (per insert)", "durable_insert_1_writer"),
       ("durable insert, 2 writers (per insert)", "durable_insert_2_writers"),
       ("update with a state transition (per update)", "update_state_transition")]
lines += ["| operation | ours |", "|---|---:|"]
for label, bench in ops:
    ns = median_ns(f"ops-{n}", bench)
    if ns is not None:
        extra = f" ({1e9 / ns:,.0f}/s)" if "insert" in bench or "update" in bench else ""
        lines.append(f"| {label} | {ns / 1e3:.2f} us{extra} |")
lines.append(f"| bulk ingest with all indexes | {ours['ingest_nodes_per_s']:,.0f} nodes/s |")
lines.append(f"| reopen | {ours['reopen_s']:.2f} s |")
lines.append(f"| disk | {ours['disk_bytes'] / 2**20:,.0f} MiB |")
lines.append(f"| RSS of the benchmark process | {ours['rss_bytes'] / 2**20:,.0f} MiB |")
table = "\n".join(lines)
print(table)
open(os.path.join(out, f"compare-{n}.md"), "w").write(table + "\n")
PY
