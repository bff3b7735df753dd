//! The PostgreSQL store benchmark: `cargo bench -p kernelci-benches --bench pg`.
//!
//! Same data (`gen_nodes.py --nodes N --seed 1`, `KCI_BENCH_NODES`, default 100000),
//! same query shapes and same measurement (criterion median of the API-equivalent
//! call, in process) as the `store` benchmark, on a [`PgStore`].
//!
//! The database: `KCI_PG_URL` names an **empty** database (what
//! `benches/compare-postgres.sh` does, on a cluster with the settings of
//! `../shared/workload/pg_baseline.sh`, through its unix socket as the baseline's
//! psql); without it a throwaway
//! [`TestCluster`] is started, whose settings are not the baseline's (64 MB of shared
//! buffers): figures taken that way do not compare with the baseline.
//!
//! Steps:
//! 1. bulk ingest: the data set streamed through `insert_nodes` in batches of
//!    `KCI_PG_BATCH` (default 5000) nodes, every declared index in place (the store
//!    creates them at open), then `VACUUM (ANALYZE)` as the baseline does after its
//!    load; nodes/s of the inserts alone and end to end;
//! 2. plans: `PgStore::explain` of every shape; with `KCI_PG_LOG` (the server's log
//!    file) also the plans PostgreSQL actually ran for every statement of the API
//!    call, with row counts and times (`auto_explain` with `log_analyze`), and the
//!    server time of each protocol step (`log_min_duration_statement = 0`: parse,
//!    bind, which plans, execute), set for this pass only with `ALTER DATABASE`;
//! 3. `KCI_PG_ROUNDS` (default 1) rounds of criterion over every shape (`api`, and
//!    for `/nodes` also `items` and `total`) and the point operations: `count_nodes`
//!    on the counted-index equalities (kind, state, result, owner, parent, kind+owner,
//!    each on its most frequent value), `count_all_nodes`, the `kind=test&limit=1`
//!    page with its total, get by id;
//! 4. durable single-node inserts (`insert_node`, `synchronous_commit` as the server
//!    has it) with 1, 2 and 8 concurrent writers: `KCI_PG_WRITE_RUNS` (default 3)
//!    fixed-length runs of `KCI_PG_WRITE_SECS` (default 5) seconds each, nodes/s and
//!    per-insert p50/p99.
//!
//! For the ingest and each write run it also records the CPU time of this process and
//! of every server process (`/proc`) and the WAL written, per node; and the round trip
//! of a prepared `SELECT 1` before each round (it moves between ~15 and ~90 µs on the
//! shared 2-core VM, and a PgStore call makes several).
//!
//! Everything goes to `target/kernelci-bench/pg-results-N.json` (criterion also keeps
//! its own files under `target/criterion/pg-*`); `benches/compare-postgres.sh` turns
//! it into the PgStore column and the plans file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: failing loudly is fine

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kernelci_benches::{for_each_chunk, shapes, Shape};
use kernelci_core::id::ObjectId;
use kernelci_core::node::{Node, State};
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_store::postgres::testing::TestCluster;
use kernelci_store::postgres::{PgConfig, PgStore};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The repository's `target/`.
fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// Criterion's median (ns per iteration) of `group/id` in round `round` (0-based),
/// from its files: criterion keeps a benchmark registered again in the same process
/// under `<id>_2`, `<id>_3`, ...
fn criterion_median(group: &str, id: &str, round: usize) -> Option<f64> {
    let mut dir = id.replace('/', "_");
    if round > 0 {
        dir.push_str(&format!("_{}", round + 1));
    }
    let path = target_dir()
        .join("criterion")
        .join(group)
        .join(dir)
        .join("new/estimates.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// A plain connection for what the store does not do (VACUUM, sizes, settings).
async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("admin connection");
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("admin connection: {e}");
        }
    });
    client
}

async fn scalar_i64(c: &tokio_postgres::Client, sql: &str) -> i64 {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Median round trip of `SELECT 1` (µs) on a plain connection to `url`.
async fn round_trip_us(url: &str) -> f64 {
    let c = admin(url).await;
    let stmt = c.prepare("SELECT 1").await.expect("prepare");
    let mut t = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t0 = Instant::now();
        c.query_one(&stmt, &[]).await.expect("SELECT 1");
        t.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// CPU seconds (user + system) of process `pid` (`self` for this one), from
/// `/proc/PID/stat` (clock ticks of 10 ms, Linux's `USER_HZ` = 100).
fn cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Where the time of a write phase goes: CPU of this process, CPU of every server
/// process `pg_stat_activity` lists (backends, WAL writer, checkpointer...), WAL
/// written.
#[derive(Debug, Clone, Default)]
struct Usage {
    client_cpu_s: f64,
    server_cpu: HashMap<i32, f64>,
    wal_bytes: i64,
}

impl Usage {
    async fn now(admin: &tokio_postgres::Client) -> Self {
        let pids: Vec<i32> = admin
            .query("SELECT pid FROM pg_stat_activity", &[])
            .await
            .map(|rows| rows.iter().map(|r| r.get(0)).collect())
            .unwrap_or_default();
        let wal: i64 = admin
            .query_one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", &[])
            .await
            .map(|r| r.get(0))
            .unwrap_or(0);
        Self {
            client_cpu_s: cpu_s("self").unwrap_or(0.0),
            server_cpu: pids
                .into_iter()
                .filter_map(|p| Some((p, cpu_s(&p.to_string())?)))
                .collect(),
            wal_bytes: wal,
        }
    }

    /// The change since `before`, per unit of work (`per`: nodes written).
    fn since(&self, before: &Usage, per: f64) -> Value {
        let server: f64 = self
            .server_cpu
            .iter()
            .map(|(p, c)| c - before.server_cpu.get(p).copied().unwrap_or(0.0))
            .sum();
        let client = self.client_cpu_s - before.client_cpu_s;
        let wal = self.wal_bytes - before.wal_bytes;
        json!({
            "client_cpu_s": client,
            "server_cpu_s": server,
            "wal_bytes": wal,
            "client_cpu_us_per_node": client * 1e6 / per,
            "server_cpu_us_per_node": server * 1e6 / per,
            "wal_bytes_per_node": wal as f64 / per,
        })
    }
}

/// What the ingest pass keeps from the data besides loading it.
#[derive(Default)]
struct Sample {
    /// Every 97th id (get by id).
    ids: Vec<ObjectId>,
    /// Children per parent (the parent with most children is the `parent=` count).
    children: HashMap<ObjectId, u64>,
    /// A finished test node: the template of the durable inserts (as pgbench's).
    template: Option<Node>,
}

/// Appends what the server logged since `from` (the plans `auto_explain` wrote).
fn read_log(path: &Path, from: u64) -> (String, u64) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return (String::new(), from);
    };
    let mut s = String::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_string(&mut s).is_err() {
        return (String::new(), from);
    }
    let end = from + s.len() as u64;
    // Keep the plans; drop the line prefixes (time, pid).
    let mut out = String::new();
    for line in s.lines() {
        let line = match line.find("LOG:  ") {
            Some(i) => &line[i + 6..],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    (out, end)
}

fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The API call of a shape: page + total for `/nodes`, items for `/nodes/fast`, the
/// count for `/count`. Returns (items, total or count).
async fn api_call(store: &PgStore, endpoint: &str, q: &Query) -> (usize, u64) {
    match endpoint {
        "nodes" => {
            let p = store.find_page(q).await.expect("page");
            (p.items.len(), p.total)
        }
        "fast" => {
            let items = store.find_nodes(q).await.expect("items");
            (items.len(), items.len() as u64)
        }
        _ => (0, store.count_nodes(q).await.expect("count")),
    }
}

/// Runs `writers` concurrent writers of single durable inserts for `secs`; returns
/// (inserts, elapsed, sorted per-insert latencies in µs).
fn write_run(
    rt: &Runtime,
    store: &Arc<PgStore>,
    template: &Node,
    writers: usize,
    secs: f64,
) -> (u64, Duration, Vec<f64>) {
    rt.block_on(async {
        let start = Instant::now();
        let stop = start + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let s = Arc::clone(store);
                let t = template.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < stop {
                        let mut node = t.clone();
                        node.id = ObjectId::new();
                        let t0 = Instant::now();
                        s.insert_node(&node).await.expect("insert");
                        lat.push(t0.elapsed().as_secs_f64() * 1e6);
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("writer"));
        }
        let elapsed = start.elapsed();
        all.sort_by(f64::total_cmp);
        (all.len() as u64, elapsed, all)
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let n: usize = env_num("KCI_BENCH_NODES", 100_000);
    let batch: usize = env_num("KCI_PG_BATCH", 5000);
    let rounds: usize = env_num("KCI_PG_ROUNDS", 1);
    let write_runs: usize = env_num("KCI_PG_WRITE_RUNS", 3);
    let write_secs: f64 = env_num("KCI_PG_WRITE_SECS", 5.0);
    let log_path = std::env::var_os("KCI_PG_LOG").map(PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    results.insert("nodes".into(), json!(n));
    results.insert("seed".into(), json!(1));
    results.insert("batch".into(), json!(batch));

    // The database.
    let _cluster;
    let url = if let Ok(url) = std::env::var("KCI_PG_URL") {
        url
    } else {
        eprintln!(
            "KCI_PG_URL not set: starting a throwaway test cluster (its settings are not \
             the baseline's; use benches/compare-postgres.sh for comparable figures)"
        );
        let Some(c) = TestCluster::start() else {
            eprintln!("no PostgreSQL installed: nothing to measure");
            return;
        };
        let url = c.create_database();
        _cluster = c;
        results.insert("test_cluster".into(), json!(true));
        url
    };
    let admin = rt.block_on(admin(&url));
    let settings: BTreeMap<String, String> = rt.block_on(async {
        admin
            .query(
                "SELECT name, setting || coalesce(' ' || unit, '') FROM pg_settings WHERE name IN \
                 ('server_version', 'shared_buffers', 'effective_cache_size', 'work_mem', \
                 'maintenance_work_mem', 'max_wal_size', 'checkpoint_timeout', 'jit', \
                 'autovacuum', 'fsync', 'synchronous_commit', 'wal_level', 'random_page_cost', \
                 'max_parallel_workers_per_gather')",
                &[],
            )
            .await
            .expect("settings")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    });
    eprintln!("PostgreSQL settings: {settings:?}");
    results.insert("settings".into(), json!(settings));
    // The round trip of one prepared `SELECT 1` on a connection like PgStore's.
    let rtt = rt.block_on(round_trip_us(&url));
    eprintln!("SELECT 1 round trip: {rtt:.1} us");
    results.insert("round_trip_us".into(), json!(rtt));

    let shapes = shapes(n, 1).expect("workload queries");
    let store = Arc::new(
        rt.block_on(PgStore::open(&PgConfig::new(url.clone())))
            .expect("open PgStore"),
    );
    let existing = rt.block_on(store.count_all_nodes()).expect("count");
    assert!(
        existing == 0,
        "the database of KCI_PG_URL holds {existing} nodes: give an empty one"
    );

    // 1. Bulk ingest through insert_nodes, every index in place.
    eprintln!("ingest: {n} nodes (gen_nodes.py --nodes {n} --seed 1), batches of {batch}");
    let mut sample = Sample::default();
    let mut insert_time = Duration::ZERO;
    let mut batch_secs: Vec<f64> = Vec::new();
    let mut loaded = 0usize;
    let before_ingest = rt.block_on(Usage::now(&admin));
    let wall = Instant::now();
    for_each_chunk(n, 1, batch, |chunk| {
        for (i, node) in chunk.iter().enumerate() {
            if (loaded + i) % 97 == 0 {
                sample.ids.push(node.id);
            }
            if let Some(p) = node.parent {
                *sample.children.entry(p).or_default() += 1;
            }
            if sample.template.is_none() && node.kind == "test" && node.state == State::Done {
                sample.template = Some(node.clone());
            }
        }
        let t = Instant::now();
        rt.block_on(store.insert_nodes(chunk))
            .expect("insert_nodes");
        let d = t.elapsed();
        insert_time += d;
        batch_secs.push(d.as_secs_f64());
        loaded += chunk.len();
        if batch_secs.len() % 20 == 0 {
            eprintln!(
                "  {loaded} nodes, {:.0} nodes/s so far (inserts only)",
                loaded as f64 / insert_time.as_secs_f64()
            );
        }
        Ok(())
    })
    .expect("load");
    let load_wall = wall.elapsed().as_secs_f64();
    let ingest_usage = rt
        .block_on(Usage::now(&admin))
        .since(&before_ingest, loaded as f64);
    eprintln!("ingest usage: {ingest_usage}");
    let t = Instant::now();
    rt.block_on(admin.batch_execute("VACUUM (ANALYZE) kci_nodes"))
        .expect("vacuum");
    let vacuum_s = t.elapsed().as_secs_f64();
    let ins = insert_time.as_secs_f64();
    eprintln!(
        "ingest: {loaded} nodes, inserts {ins:.1} s = {:.0} nodes/s; with parsing {load_wall:.1} s; \
         VACUUM ANALYZE {vacuum_s:.1} s; end to end {:.0} nodes/s",
        loaded as f64 / ins,
        loaded as f64 / (ins + vacuum_s)
    );
    // Batch rates over the load: does the rate fall as the indexes grow?
    let decile = |k: usize| {
        let len = batch_secs.len();
        let (a, b) = (
            len * k / 10,
            (len * (k + 1) / 10).max(len * k / 10 + 1).min(len),
        );
        let s: f64 = batch_secs[a..b].iter().sum();
        (b - a) as f64 * batch as f64 / s
    };
    let deciles: Vec<f64> = (0..10.min(batch_secs.len())).map(decile).collect();
    let sizes = rt.block_on(async {
        json!({
            "table_total": scalar_i64(&admin, "SELECT pg_total_relation_size('kci_nodes')").await,
            "heap": scalar_i64(&admin, "SELECT pg_relation_size('kci_nodes')").await,
            "indexes": scalar_i64(&admin, "SELECT pg_indexes_size('kci_nodes')").await,
            "database": scalar_i64(&admin, "SELECT pg_database_size(current_database())").await,
            "index_count": scalar_i64(&admin, "SELECT count(*) FROM pg_indexes WHERE tablename = 'kci_nodes'").await,
        })
    });
    eprintln!("sizes: {sizes}");
    results.insert(
        "ingest".into(),
        json!({
            "nodes": loaded,
            "insert_s": ins,
            "insert_nodes_per_s": loaded as f64 / ins,
            "wall_with_parsing_s": load_wall,
            "vacuum_analyze_s": vacuum_s,
            "end_to_end_nodes_per_s": loaded as f64 / (ins + vacuum_s),
            "nodes_per_s_by_decile": deciles,
            "usage": ingest_usage,
        }),
    );
    results.insert("sizes".into(), sizes);
    let indexes: BTreeMap<String, String> = rt
        .block_on(admin.query(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = 'kci_nodes'",
            &[],
        ))
        .expect("indexes")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    results.insert("indexes".into(), json!(indexes));

    let parsed: Vec<(Shape, Query)> = shapes
        .iter()
        .filter_map(|s| match s.parse() {
            Ok(q) => Some((s.clone(), q)),
            Err(e) => {
                eprintln!("skipping {}: does not parse: {e}", s.name);
                None
            }
        })
        .collect();

    // 2. Plans: explain, and what ran (auto_explain) when the server log is readable.
    let mut plans = BTreeMap::new();
    let db: String = rt
        .block_on(admin.query_one("SELECT current_database()", &[]))
        .expect("db")
        .get(0);
    // One connection, so that the second call of a shape finds the first one's caches.
    let traced = log_path.as_ref().filter(|p| p.exists()).map(|log| {
        rt.block_on(admin.batch_execute(&format!(
            "ALTER DATABASE \"{db}\" SET session_preload_libraries = 'auto_explain';
             ALTER DATABASE \"{db}\" SET auto_explain.log_min_duration = 0;
             ALTER DATABASE \"{db}\" SET auto_explain.log_analyze = on;
             ALTER DATABASE \"{db}\" SET auto_explain.log_buffers = on;
             ALTER DATABASE \"{db}\" SET auto_explain.log_timing = on;
             ALTER DATABASE \"{db}\" SET log_min_duration_statement = 0;"
        )))
        .expect("auto_explain settings");
        let mut config = PgConfig::new(url.clone());
        config.pool_size = 1;
        let traced = rt
            .block_on(PgStore::open(&config))
            .expect("open traced PgStore");
        (log.clone(), traced)
    });
    for (shape, q) in &parsed {
        let explain = rt
            .block_on(store.explain(q))
            .unwrap_or_else(|e| format!("explain failed: {e}"));
        let mut entry = json!({
            "endpoint": shape.endpoint,
            "query": shape.query,
            "explain": explain,
        });
        let (items, total) = rt.block_on(api_call(&store, &shape.endpoint, q));
        entry["items"] = json!(items);
        entry["total"] = json!(total);
        if let Some((log, traced)) = &traced {
            // The second call is the one kept: the first on a fresh connection also
            // loads the table's catalog entries.
            rt.block_on(api_call(traced, &shape.endpoint, q));
            std::thread::sleep(Duration::from_millis(20));
            let from = log_len(log);
            rt.block_on(api_call(traced, &shape.endpoint, q));
            std::thread::sleep(Duration::from_millis(20));
            entry["executed"] = json!(read_log(log, from).0);
        }
        plans.insert(shape.name.clone(), entry);
    }
    if let Some((_, traced)) = traced {
        drop(traced);
        rt.block_on(admin.batch_execute(&format!("ALTER DATABASE \"{db}\" RESET ALL")))
            .expect("reset auto_explain");
    }
    results.insert("plans".into(), json!(plans));

    // 3. Criterion rounds: shapes, counts, page, get.
    let parent_top = sample
        .children
        .iter()
        .max_by_key(|(id, c)| (**c, **id))
        .map(|(id, _)| *id)
        .expect("some parent");
    let counted = [
        ("count_kind_test", "kind=test".to_owned()),
        ("count_state_done", "state=done".to_owned()),
        ("count_result_pass", "result=pass".to_owned()),
        ("count_owner_production", "owner=production".to_owned()),
        ("count_parent_top", format!("parent={parent_top}")),
        ("count_kind_owner", "kind=test&owner=production".to_owned()),
    ];
    let mut c = Criterion::default()
        .output_directory(&target_dir().join("criterion"))
        .sample_size(15)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let shapes_group = format!("pg-shapes-{n}");
    let ops_group = format!("pg-ops-{n}");
    let mut round_results = Vec::new();
    let mut op_values = BTreeMap::new();
    for round in 0..rounds {
        // The host's mood: the round trip moves between ~15 and ~90 us on this VM.
        let round_rtt = rt.block_on(round_trip_us(&url));
        eprintln!(
            "round {} of {rounds}; SELECT 1 round trip {round_rtt:.1} us",
            round + 1
        );
        let mut ids = Vec::new();
        {
            let mut g = c.benchmark_group(&shapes_group);
            for (shape, q) in &parsed {
                let s = Arc::clone(&store);
                match shape.endpoint.as_str() {
                    "nodes" => {
                        g.bench_function(format!("{}/api", shape.name), |b| {
                            b.iter(|| rt.block_on(s.find_page(q)).expect("page"))
                        });
                        g.bench_function(format!("{}/items", shape.name), |b| {
                            b.iter(|| rt.block_on(s.find_nodes(q)).expect("items"))
                        });
                        g.bench_function(format!("{}/total", shape.name), |b| {
                            b.iter(|| rt.block_on(s.count_nodes(q)).expect("total"))
                        });
                        ids.extend(
                            ["api", "items", "total"].map(|p| format!("{}/{p}", shape.name)),
                        );
                    }
                    "fast" => {
                        g.bench_function(format!("{}/api", shape.name), |b| {
                            b.iter(|| rt.block_on(s.find_nodes(q)).expect("items"))
                        });
                        ids.push(format!("{}/api", shape.name));
                    }
                    _ => {
                        g.bench_function(format!("{}/api", shape.name), |b| {
                            b.iter(|| rt.block_on(s.count_nodes(q)).expect("count"))
                        });
                        ids.push(format!("{}/api", shape.name));
                    }
                }
            }
            g.finish();
        }
        let mut op_ids = Vec::new();
        {
            let mut g = c.benchmark_group(&ops_group);
            g.bench_function("count_all", |b| {
                b.iter(|| rt.block_on(store.count_all_nodes()).expect("count"))
            });
            op_ids.push("count_all".to_owned());
            for (name, qs) in &counted {
                let q = Query::parse_str(qs, Mode::Count).expect("query");
                if round == 0 {
                    let v = rt.block_on(store.count_nodes(&q)).expect("count");
                    op_values.insert((*name).to_owned(), json!({"query": qs, "count": v}));
                }
                g.bench_function(*name, |b| {
                    b.iter(|| rt.block_on(store.count_nodes(&q)).expect("count"))
                });
                op_ids.push((*name).to_owned());
            }
            let page = Query::parse_str("kind=test&limit=1", Mode::Page).expect("query");
            g.bench_function("page_kind_test_limit1", |b| {
                b.iter(|| rt.block_on(store.find_page(&page)).expect("page"))
            });
            op_ids.push("page_kind_test_limit1".to_owned());
            let ids_ref = &sample.ids;
            let mut i = 0;
            g.bench_function("get_by_id", |b| {
                b.iter(|| {
                    i = (i + 1) % ids_ref.len();
                    rt.block_on(store.get_node(ids_ref[i])).expect("get")
                })
            });
            op_ids.push("get_by_id".to_owned());
            g.finish();
        }
        let mut medians = BTreeMap::new();
        for id in &ids {
            if let Some(ns) = criterion_median(&shapes_group, id, round) {
                medians.insert(id.clone(), ns);
            }
        }
        let mut ops = BTreeMap::new();
        for id in &op_ids {
            if let Some(ns) = criterion_median(&ops_group, id, round) {
                ops.insert(id.clone(), ns);
            }
        }
        round_results
            .push(json!({"shapes_ns": medians, "ops_ns": ops, "round_trip_us": round_rtt}));
    }
    results.insert("rounds".into(), json!(round_results));
    results.insert("counted".into(), json!(op_values));

    // 4. Durable single-node inserts with concurrent writers.
    let template = sample.template.clone().expect("a finished test node");
    let mut writes = BTreeMap::new();
    if write_runs > 0 {
        // Warm the pool (16 connections) and the statement caches.
        write_run(&rt, &store, &template, 8, 0.5);
    }
    for writers in [1usize, 2, 8] {
        let mut runs = Vec::new();
        for _ in 0..write_runs {
            let before = rt.block_on(Usage::now(&admin));
            let (count, elapsed, lat) = write_run(&rt, &store, &template, writers, write_secs);
            let usage = rt.block_on(Usage::now(&admin)).since(&before, count as f64);
            let rate = count as f64 / elapsed.as_secs_f64();
            eprintln!(
                "durable inserts, {writers} writers: {rate:.0} nodes/s, p50 {:.0} us, p99 {:.0} us",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
            runs.push(json!({
                "inserts": count,
                "secs": elapsed.as_secs_f64(),
                "nodes_per_s": rate,
                "p50_us": percentile(&lat, 0.5),
                "p99_us": percentile(&lat, 0.99),
                "usage": usage,
            }));
        }
        writes.insert(writers.to_string(), json!(runs));
    }
    results.insert("durable_inserts".into(), json!(writes));
    c.final_summary();

    let out_dir = target_dir().join("kernelci-bench");
    let _ = std::fs::create_dir_all(&out_dir);
    let out = out_dir.join(format!("pg-results-{n}.json"));
    match std::fs::write(
        &out,
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    ) {
        Ok(()) => eprintln!("results: {}", out.display()),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
}
