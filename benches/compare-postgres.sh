#!/usr/bin/env bash
# Runs the PostgreSQL baseline (hand-written SQL), our sled store benchmark and our
# PostgreSQL store (PgStore) benchmark on the same generated data (gen_nodes.py
# --nodes N --seed 1) and prints one table: shape, sled (median), PgStore (median),
# hand-written SQL (median), ratios; then the point operations of both stores.
#
#   benches/compare-postgres.sh [-q] [-r] [-S] [-P] [-k ROUNDS] N
#
#   -q  criterion --quick (fewer samples; for a first look)
#   -r  reuse PostgreSQL baseline figures already in $OUT (or ../shared/workload)
#       instead of running pg_baseline.sh again
#   -S  skip the sled benchmark (its criterion results of an earlier run are used)
#   -P  skip the PgStore benchmark (target/kernelci-bench/pg-results-N.json of an
#       earlier run is used)
#   -k  rounds of the PgStore criterion pass over the loaded database (default 3);
#       the table shows the median of the round medians and their range
#
# PgStore runs on a throwaway cluster started here with the settings of
# pg_baseline.sh (its postgresql.conf lines are read from that script: same
# shared_buffers, work_mem, ..., autovacuum off, fsync and synchronous_commit on),
# and VACUUM ANALYZE after the load as the baseline does. PgStore connects through
# the cluster's unix socket, as the baseline's psql does (KCI_PG_TCP=1: over TCP on
# 127.0.0.1 instead).
#
# Output: the table on stdout and in target/kernelci-bench/compare-N.md; the plans
# (PgStore explain + what PostgreSQL ran, from auto_explain; sled's explain) in
# target/kernelci-bench/plans-N.md.
# Needs: python3, cargo, and PostgreSQL's server binaries (initdb, pg_ctl,
# postgres, psql, pgbench), as pg_baseline.sh says. Takes ~15 minutes at 100k.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
WORKLOAD="${KCI_WORKLOAD_DIR:-$ROOT/../shared/workload}"
QUICK=""
REUSE=0
SLED=1
PGSTORE=1
ROUNDS=3
while getopts "qrSPk:h" opt; do
    case $opt in
        q) QUICK="--quick" ;;
        r) REUSE=1 ;;
        S) SLED=0 ;;
        P) PGSTORE=0 ;;
        k) ROUNDS="$OPTARG" ;;
        *) sed -n '2,29p' "$0"; exit 0 ;;
    esac
done
shift $((OPTIND - 1))
N="${1:?usage: compare-postgres.sh [-q] [-r] [-S] [-P] [-k ROUNDS] N}"
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

if [ "$SLED" = 1 ]; then
    echo "== kernelci-rs sled store benchmark at $N nodes" >&2
    (cd "$ROOT" && KCI_BENCH_NODES="$N" cargo bench -q -p kernelci-benches --bench store -- $QUICK >&2)
fi

# ---- PgStore on a cluster set up as pg_baseline.sh sets up its own
find_bin() {
    local b=$1 p
    p=$(command -v "$b" 2>/dev/null || true)
    if [ -z "$p" ]; then
        p=$(ls -d /usr/lib/postgresql/*/bin/"$b" 2>/dev/null | sort -V | tail -1 || true)
    fi
    [ -n "$p" ] || { echo "compare-postgres: $b not found" >&2; exit 1; }
    readlink -f "$p"
}
PGWORK=""
cleanup() {
    set +e
    if [ -n "$PGWORK" ]; then
        if [ -f "$PGWORK/data/postmaster.pid" ]; then
            "${AS[@]}" "$PGCTL" -D "$PGWORK/data" -m fast -w stop >/dev/null 2>&1
        fi
        rm -rf "$PGWORK"
    fi
}
trap cleanup EXIT INT TERM

if [ "$PGSTORE" = 1 ]; then
    INITDB=$(find_bin initdb)
    PGBIN=$(dirname "$INITDB")
    PGCTL="$PGBIN/pg_ctl"
    PSQL_BIN="$PGBIN/psql"
    [ -x "$PSQL_BIN" ] || PSQL_BIN=$(find_bin psql)
    # A free loopback port, for TCP (KCI_PG_TCP=1) and the round-trip comparison.
    PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    PGWORK=$(mktemp -d /tmp/kci-pgstore.XXXXXX)
    chmod 755 "$PGWORK"
    AS=()
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd -r -m postgres
        chown postgres "$PGWORK"
        AS=(runuser -u postgres --)
    fi
    # The baseline's postgresql.conf lines, minus its socket and port.
    SETTINGS=$(sed -n '/postgresql.conf" <<EOF/,/^EOF/p' "$WORKLOAD/pg_baseline.sh" | sed '1d;$d' \
        | grep -v -E '^(listen_addresses|unix_socket_directories|port) ')
    echo "$SETTINGS" | grep -q '^shared_buffers' \
        || { echo "compare-postgres: no settings found in pg_baseline.sh" >&2; exit 1; }
    "${AS[@]}" "$INITDB" -D "$PGWORK/data" -U postgres --auth=trust --locale=C -E UTF8 >/dev/null
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$PGWORK'"
        echo "port = $PORT"
        echo "$SETTINGS"
    } >> "$PGWORK/data/postgresql.conf"
    "${AS[@]}" "$PGCTL" -D "$PGWORK/data" -l "$PGWORK/server.log" -w start >/dev/null
    "${AS[@]}" "$PSQL_BIN" -X -q -h "$PGWORK" -p "$PORT" -U postgres -d postgres \
        -c "CREATE DATABASE kci_rs" >/dev/null
    # The host's round trip right now (it moves between ~15 and ~90 us on the shared
    # 2-core VM): pgbench, one client, prepared SELECT 1, unix socket then TCP.
    echo "SELECT 1;" > "$PGWORK/select1.sql"
    chmod 644 "$PGWORK/select1.sql"
    PGBENCH="$PGBIN/pgbench"
    [ -x "$PGBENCH" ] || PGBENCH=$(find_bin pgbench)
    rtt() {
        "${AS[@]}" "$PGBENCH" -n -M prepared -c 1 -T 2 -h "$1" -p "$PORT" -U postgres \
            -f "$PGWORK/select1.sql" kci_rs 2>/dev/null | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p'
    }
    echo "{\"unix_ms\": $(rtt "$PGWORK"), \"tcp_ms\": $(rtt 127.0.0.1)}" > "$OUT/pg-rtt-$N.json"
    PG_HOST=$PGWORK
    [ "${KCI_PG_TCP:-0}" = 1 ] && PG_HOST=127.0.0.1
    echo "pgbench SELECT 1 latency (ms): $(cat "$OUT/pg-rtt-$N.json")" >&2
    echo "== kernelci-rs PgStore benchmark at $N nodes (PostgreSQL settings as pg_baseline.sh:" \
        $(echo "$SETTINGS" | tr '\n' ';') ")" >&2
    (cd "$ROOT" && KCI_BENCH_NODES="$N" KCI_PG_ROUNDS="$ROUNDS" \
        KCI_PG_URL="host=$PG_HOST port=$PORT user=postgres dbname=kci_rs sslmode=disable" \
        KCI_PG_LOG="$PGWORK/server.log" \
        cargo bench -q -p kernelci-benches --bench pg -- $QUICK >&2)
    cleanup
    PGWORK=""
fi

# The commit measured: KCI_BENCH_COMMIT (a snapshot outside git), else HEAD, marked
# when the stores' sources differ from it.
COMMIT="${KCI_BENCH_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
if [ -z "${KCI_BENCH_COMMIT:-}" ] && [ -n "$(git -C "$ROOT" status --porcelain -- kernelci-core kernelci-store 2>/dev/null)" ]; then
    COMMIT="$COMMIT + uncommitted changes in kernelci-core/kernelci-store"
fi
python3 - "$N" "$OUT" "$ROOT/target/criterion" "$COMMIT" <<'PY'
import json, math, os, re, statistics, sys
n, out, crit, commit = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]

def median_ns(group, bench):
    path = os.path.join(crit, group, bench, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except OSError:
        return None

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None

def fmt_ms(ms):
    if ms is None:
        return "–"
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"

def geo(rs):
    return math.exp(sum(math.log(r) for r in rs) / len(rs)) if rs else float("nan")

IXDEF = {}

def index_label(name):
    """kci_nodes_ix_N -> its columns (without the trailing id), e.g. (kind, created)."""
    d = IXDEF.get(name)
    if not d:
        return name
    m = re.search(r"USING (\w+) \((.*)\)$", d)
    if not m:
        return name
    cols = m.group(2)
    cols = re.sub(r"""\(\(data #>> '\{([^}]*)\}'::text\[\]\)\)( COLLATE "C")?""",
                  lambda x: x.group(1).replace(",", "."), cols)
    cols = [c.strip().strip('"') for c in cols.split(",")]
    if cols and cols[-1] == "id" and len(cols) > 1:
        cols = cols[:-1]
    label = "+".join(c.replace("kernel_revision.", "") for c in cols)
    return label + (" gin" if m.group(1) == "gin" else "")

def plan_summary(explain):
    """residual/sort, then the indexes and scans of PostgreSQL's plan."""
    lines = explain.splitlines()
    head = lines[0] if lines else ""
    m = re.match(r"residual: (.*); sort: (.*)", head)
    bits = []
    if m and m.group(1) != "none":
        bits.append("residual in Rust")
    if m and m.group(2) != "SQL":
        bits.append("sort in Rust")
    scans = []
    for l in lines[1:]:
        for pat, fmt in ((r"Index Only Scan(?: Backward)? using (\S+)", "ios {}"),
                         (r"Index Scan(?: Backward)? using (\S+)", "{}"),
                         (r"Bitmap Index Scan on (\S+)", "bitmap {}"),
                         (r"(Seq Scan) on", "seqscan"),
                         (r"^\s*(->\s*)?(Sort|Incremental Sort)\b", "Sort")):
            mm = re.search(pat, l)
            if mm:
                s = fmt.format(index_label(mm.group(1))) if "{}" in fmt else fmt
                if s not in scans:
                    scans.append(s)
    return ", ".join(bits + scans) or "?"

def protocol(executed):
    """(round trips, server ms) of one traced API call, from the statement log: a
    simple statement, a parse, a portal bind and an execute are one round trip each
    (an unnamed bind travels with its execute)."""
    rts, ms = 0, 0.0
    for m in re.finditer(r"^duration: ([0-9.]+) ms  (statement|parse|bind|execute)( \S+)?", executed or "", re.M):
        ms += float(m.group(1))
        step, name = m.group(2), m.group(3) or ""
        if step in ("statement", "parse", "execute") or (step == "bind" and "/" in name):
            rts += 1
    return rts, ms

pg = {r["name"]: r for r in json.load(open(os.path.join(out, f"pg_queries_{n}.json")))}
sled = load(os.path.join(out, f"results-{n}.json"))
pgs = load(os.path.join(out, f"pg-results-{n}.json"))
rounds = pgs["rounds"] if pgs else []
pgplans = pgs["plans"] if pgs else {}
IXDEF.update(pgs.get("indexes", {}) if pgs else {})

def pgstore_ms(bench):
    vals = [r["shapes_ns"][bench] / 1e6 for r in rounds if bench in r["shapes_ns"]]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None

def pgstore_op(bench):
    vals = [r["ops_ns"][bench] / 1e6 for r in rounds if bench in r["ops_ns"]]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None

names = list(pg)
lines = [f"Data: gen_nodes.py --nodes {n} --seed 1; commit {commit}; machine: "
         f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') >> 30} GiB; "
         f"PgStore: median of {len(rounds)} round medians (range); `SELECT 1` round trip at the "
         f"start of each round: " + ", ".join(f"{r.get('round_trip_us', float('nan')):.0f}" for r in rounds) + " us. "
         "Round trips and server ms: one traced call (statement log; auto_explain adds to the server time).",
         "",
         "| shape | endpoint | sled ms | PgStore ms (range) | SQL ms | sled/SQL | PgStore/SQL | round trips | server ms | PgStore plan |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
sled_r, pgs_r, slow, mismatch = [], [], [], []
for name in names:
    p = pg[name]
    sns = median_ns(f"shapes-{n}", f"{name}_api")
    sms = sns / 1e6 if sns is not None else None
    g = pgstore_ms(f"{name}/api")
    sql = p["api_ms"]
    sr = sms / sql if sms is not None else None
    gr = g[0] / sql if g else None
    if sr is not None:
        sled_r.append(sr)
    if gr is not None:
        pgs_r.append(gr)
        if gr > 1.2:
            slow.append((name, gr))
    plan = pgplans.get(name, {})
    if plan:
        want = (p.get("rows"), p.get("total", p.get("count")))
        got_items, got_total = plan.get("items"), plan.get("total")
        ep = p["endpoint"]
        if ep == "count" and got_total != want[1]:
            mismatch.append(f"{name}: count {got_total}, SQL {want[1]}")
        elif ep == "fast" and got_items != want[0]:
            mismatch.append(f"{name}: items {got_items}, SQL {want[0]}")
        elif ep == "nodes" and (got_items, got_total) != want:
            mismatch.append(f"{name}: items/total {got_items}/{got_total}, SQL {want[0]}/{want[1]}")
    gs = f"{fmt_ms(g[0])} ({fmt_ms(g[1])}–{fmt_ms(g[2])})" if g else "–"
    rts, sv = protocol(plan.get("executed")) if plan.get("executed") else (None, None)
    lines.append(f"| {name} | {p['endpoint']} | {fmt_ms(sms)} | {gs} | {fmt_ms(sql)} | "
                 f"{f'{sr:.2f}' if sr is not None else '–'} | {f'{gr:.2f}' if gr is not None else '–'} | "
                 f"{rts if rts is not None else '–'} | {fmt_ms(sv)} | "
                 f"{plan_summary(plan.get('explain', '')) if plan else '–'} |")
lines += ["",
          f"sled: {len(sled_r)} shapes; geometric mean of sled/SQL {geo(sled_r):.3f}; "
          f"slower than SQL: {sum(r > 1 for r in sled_r)}.",
          f"PgStore: {len(pgs_r)} shapes; geometric mean of PgStore/SQL {geo(pgs_r):.3f}; "
          f"at most 1.2x: {sum(r <= 1.2 for r in pgs_r)}; over 1.2x: {len(slow)}"
          + (" (" + ", ".join(f"{s} {r:.2f}" for s, r in sorted(slow, key=lambda x: -x[1])) + ")" if slow else "")
          + ".",
          "PgStore results differing from the SQL baseline's row counts: "
          + ("; ".join(mismatch) if mismatch else "none") + ".", ""]

if sled:
    ops = [("count_all", "count_all"), ("count kind=test", "count_kind_test"), ("get by id", "get_by_id"),
           ("durable insert, 1 writer (per insert)", "durable_insert_1_writer"),
           ("durable insert, 2 writers (per insert)", "durable_insert_2_writers"),
           ("update with a state transition (per update)", "update_state_transition")]
    lines += ["| sled operation | ours |", "|---|---:|"]
    for label, bench in ops:
        ns = median_ns(f"ops-{n}", bench)
        if ns is not None:
            extra = f" ({1e9 / ns:,.0f}/s)" if "insert" in bench or "update" in bench else ""
            lines.append(f"| {label} | {ns / 1e3:.2f} us{extra} |")
    lines.append(f"| bulk ingest with all indexes | {sled['ingest_nodes_per_s']:,.0f} nodes/s |")
    lines.append(f"| reopen | {sled['reopen_s']:.2f} s |")
    lines.append(f"| disk | {sled['disk_bytes'] / 2**20:,.0f} MiB |")
    lines.append(f"| RSS of the benchmark process | {sled['rss_bytes'] / 2**20:,.0f} MiB |")
    lines.append("")

if pgs:
    ing = pgs["ingest"]
    sz = pgs["sizes"]
    lines += ["| PgStore operation | median (range over rounds) |", "|---|---:|"]
    labels = [("count_all", "count_all_nodes")]
    for k, v in pgs.get("counted", {}).items():
        labels.append((k, f"count `{v['query']}` ({v['count']:,})"))
    labels += [("page_kind_test_limit1", "page `kind=test&limit=1` with its total"), ("get_by_id", "get by id")]
    for bench, label in labels:
        o = pgstore_op(bench)
        if o:
            lines.append(f"| {label} | {fmt_ms(o[0])} ms ({fmt_ms(o[1])}–{fmt_ms(o[2])}) |")
    lines.append(f"| bulk ingest, `insert_nodes` batches of {pgs['batch']}, every index in place | "
                 f"{ing['insert_nodes_per_s']:,.0f} nodes/s ({ing['insert_s']:.1f} s) |")
    dec = ing.get("nodes_per_s_by_decile", [])
    if dec:
        lines.append(f"| the same by tenth of the load (first → last) | "
                     + " / ".join(f"{d / 1000:.1f}k" for d in dec) + " |")
    u = ing.get("usage")
    if u:
        lines.append(f"| the load's CPU per node: bench process (parse + encode) / PostgreSQL; WAL per node | "
                     f"{u['client_cpu_us_per_node']:.0f} us / {u['server_cpu_us_per_node']:.0f} us; "
                     f"{u['wal_bytes_per_node']:,.0f} B |")
    lines.append(f"| VACUUM (ANALYZE) after the load | {ing['vacuum_analyze_s']:.1f} s |")
    lines.append(f"| ingest end to end (inserts + VACUUM ANALYZE) | {ing['end_to_end_nodes_per_s']:,.0f} nodes/s |")
    for w, runs in sorted(pgs.get("durable_inserts", {}).items(), key=lambda x: int(x[0])):
        rates = sorted(r["nodes_per_s"] for r in runs)
        if not rates:
            continue
        p50 = statistics.median(r["p50_us"] for r in runs)
        p99 = statistics.median(r["p99_us"] for r in runs)
        cpu = ""
        us = [r["usage"] for r in runs if "usage" in r]
        if us:
            cpu = (f"; CPU per insert {statistics.median(x['client_cpu_us_per_node'] for x in us):.0f} us here, "
                   f"{statistics.median(x['server_cpu_us_per_node'] for x in us):.0f} us in PostgreSQL; "
                   f"WAL {statistics.median(x['wal_bytes_per_node'] for x in us):,.0f} B")
        lines.append(f"| durable single-node inserts, {w} writer{'s' if w != '1' else ''} | "
                     f"{statistics.median(rates):,.0f} nodes/s ({rates[0]:,.0f}–{rates[-1]:,.0f}; "
                     f"p50 {p50 / 1000:.2f} ms, p99 {p99 / 1000:.2f} ms{cpu}) |")
    lines.append(f"| disk: table + {sz['index_count']} indexes (heap, indexes) | "
                 f"{sz['table_total'] / 2**20:,.0f} MiB ({sz['heap'] / 2**20:,.0f}, {sz['indexes'] / 2**20:,.0f}) |")
    rtt = pgs.get("round_trip_us")
    if isinstance(rtt, (int, float)):
        lines.append(f"| prepared `SELECT 1` round trip (tokio-postgres, the store's connection) | {rtt:.0f} us |")
    pgb = load(os.path.join(out, f"pg-rtt-{n}.json"))
    if pgb:
        lines.append(f"| the same with pgbench before the run: unix socket / TCP | "
                     f"{pgb['unix_ms'] * 1000:.0f} us / {pgb['tcp_ms'] * 1000:.0f} us |")
    st = pgs.get("settings", {})
    lines += ["", "PostgreSQL for PgStore: " + ", ".join(f"{k} {v}" for k, v in sorted(st.items())) + "."]

table = "\n".join(lines)
print(table)
open(os.path.join(out, f"compare-{n}.md"), "w").write(table + "\n")

# The plans file: PgStore's (explain, then what ran), slow shapes first; sled's.
order = sorted(pgplans, key=lambda s: (s not in dict(slow), s))
pl = [f"# Plans at {n} nodes (commit {commit})", ""]
for name in order:
    e = pgplans[name]
    g = pgstore_ms(f"{name}/api")
    sql = pg.get(name, {}).get("api_ms")
    ratio = f"{g[0] / sql:.2f}x the SQL baseline" if g and sql else ""
    rts, sv = protocol(e.get("executed"))
    pl += [f"## {name} ({e['endpoint']}) {ratio}", "",
           f"`{e['query']}` — items {e.get('items')}, total {e.get('total')}; "
           f"SQL baseline plan: {pg.get(name, {}).get('plan', '?')}; traced call: "
           f"{rts} round trips, {sv:.3f} ms in the server", "",
           "PgStore::explain:", "", "```", e["explain"].rstrip(), "```", ""]
    if e.get("executed"):
        pl += ["Executed (auto_explain, log_analyze):", "", "```", e["executed"].rstrip(), "```", ""]
if sled:
    pl += ["# sled plans (IndexedStore::explain)", ""]
    for name, e in sled["plans"].items():
        pl.append(f"* {name}: {e['plan']}")
open(os.path.join(out, f"plans-{n}.md"), "w").write("\n".join(pl) + "\n")
print(f"\nplans: {os.path.join(out, f'plans-{n}.md')}", file=sys.stderr)
PY
