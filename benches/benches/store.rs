//! The store benchmark: `cargo bench -p kernelci-benches --bench store`.
//!
//! `KCI_BENCH_NODES` (default 100000) picks the data set size, seed 1, as the
//! PostgreSQL baseline. Measures on a `SledStore`: bulk ingest, close + reopen, disk
//! size, every query shape of the workload (the API-equivalent call: page + total for
//! `/nodes`, items for `/nodes/fast`, the count for `/count`, plus items and total
//! separately), the counts, get by id, durable single inserts with 1 and 2 writers,
//! and updates with a state transition. One-shot figures and the plan of every shape
//! go to `target/kernelci-bench/results-N.json`; criterion keeps its medians under
//! `target/criterion/`. `benches/compare-postgres.sh` joins them with PostgreSQL's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: failing loudly is fine

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use kernelci_benches::{nodes, shapes};
use kernelci_core::node::{Node, State};
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_store::{Durability, SledConfig, SledStore};
use serde_json::{json, Value};

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            total += if p.is_dir() {
                dir_size(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
        }
    }
    total
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn fresh_node(i: u64, state: State) -> Node {
    let mut n = Node::new("test", &format!("bench-{i}"), Timestamp::now());
    n.state = state;
    n.path = vec!["checkout".into(), "kbuild".into(), format!("bench-{i}")];
    n.data = json!({"arch": "x86_64", "platform": "qemu", "kernel_revision": {"tree": "mainline", "branch": "master"}})
        .as_object()
        .cloned();
    n.truncate_times();
    n
}

fn main() {
    let n: usize = std::env::var("KCI_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    results.insert("nodes".into(), json!(n));
    results.insert("seed".into(), json!(1));

    eprintln!("loading {n} nodes (gen_nodes.py --nodes {n} --seed 1)");
    let data = nodes(n, 1).expect("workload nodes");
    let shapes = shapes(n, 1).expect("workload queries");
    let dir = tempfile::Builder::new()
        .prefix("kernelci-bench-")
        .tempdir_in(kernelci_benches::cache_dir())
        .expect("tempdir");

    // Bulk ingest with every index, relaxed durability, then one flush.
    let bulk = SledConfig {
        durability: Durability::FlushEvery(Duration::from_millis(200)),
        ..SledConfig::default()
    };
    let store = SledStore::open(dir.path(), bulk).expect("open");
    let t = Instant::now();
    rt.block_on(async {
        for chunk in data.chunks(1000) {
            store.insert_nodes(chunk).await.expect("insert");
        }
        store.flush().await.expect("flush");
    });
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "ingest: {n} nodes in {secs:.1} s = {:.0} nodes/s",
        n as f64 / secs
    );
    results.insert("ingest_nodes_per_s".into(), json!(n as f64 / secs));
    store.close().expect("close");
    // Keep only what the point benchmarks need, so the RSS figure is the store's.
    let sample_ids: Vec<_> = data.iter().step_by(97).map(|n| n.id).collect();
    drop(data);

    let t = Instant::now();
    let store = Arc::new(SledStore::open(dir.path(), SledConfig::default()).expect("reopen"));
    let reopen = t.elapsed().as_secs_f64();
    results.insert("reopen_s".into(), json!(reopen));
    results.insert("disk_bytes".into(), json!(dir_size(dir.path())));
    eprintln!(
        "reopen: {reopen:.3} s; disk: {} MB",
        dir_size(dir.path()) >> 20
    );

    let mut c = Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();

    // Every query shape.
    let mut plans = BTreeMap::new();
    {
        let mut g = c.benchmark_group(format!("shapes-{n}"));
        for shape in &shapes {
            let Ok(q) = shape.parse() else {
                eprintln!("skipping {}: does not parse", shape.name);
                continue;
            };
            let plan = store
                .explain(&q)
                .map(|p| p.to_string())
                .unwrap_or_else(|e| e.to_string());
            plans.insert(
                shape.name.clone(),
                json!({"endpoint": shape.endpoint, "query": shape.query, "plan": plan}),
            );
            let s = Arc::clone(&store);
            match shape.endpoint.as_str() {
                "nodes" => {
                    g.bench_function(format!("{}/api", shape.name), |b| {
                        b.iter(|| rt.block_on(s.find_page(&q)).expect("page"))
                    });
                    g.bench_function(format!("{}/items", shape.name), |b| {
                        b.iter(|| rt.block_on(s.find_nodes(&q)).expect("items"))
                    });
                    g.bench_function(format!("{}/total", shape.name), |b| {
                        b.iter(|| rt.block_on(s.count_nodes(&q)).expect("total"))
                    });
                }
                "fast" => {
                    g.bench_function(format!("{}/api", shape.name), |b| {
                        b.iter(|| rt.block_on(s.find_nodes(&q)).expect("items"))
                    });
                }
                _ => {
                    g.bench_function(format!("{}/api", shape.name), |b| {
                        b.iter(|| rt.block_on(s.count_nodes(&q)).expect("count"))
                    });
                }
            }
        }
        g.finish();
    }
    results.insert("plans".into(), json!(plans));

    // Point operations.
    {
        let mut g = c.benchmark_group(format!("ops-{n}"));
        let all = Query::parse_str("", Mode::Count).expect("query");
        let kind_test = Query::parse_str("kind=test", Mode::Count).expect("query");
        g.bench_function("count_all", |b| {
            b.iter(|| rt.block_on(store.count_all_nodes()).expect("count"))
        });
        g.bench_function("count_query_all", |b| {
            b.iter(|| rt.block_on(store.count_nodes(&all)).expect("count"))
        });
        g.bench_function("count_kind_test", |b| {
            b.iter(|| rt.block_on(store.count_nodes(&kind_test)).expect("count"))
        });
        let ids = &sample_ids;
        let mut i = 0;
        g.bench_function("get_by_id", |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                rt.block_on(store.get_node(ids[i])).expect("get")
            })
        });
        let counter = std::sync::atomic::AtomicU64::new(0);
        g.bench_function("durable_insert_1_writer", |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let k = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        store
                            .insert_node(&fresh_node(k, State::Running))
                            .await
                            .expect("insert");
                    }
                });
                t.elapsed()
            })
        });
        g.bench_function("durable_insert_2_writers", |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                rt.block_on(async {
                    let tasks: Vec<_> = (0..2)
                        .map(|_| {
                            let s = Arc::clone(&store);
                            let start =
                                counter.fetch_add(iters, std::sync::atomic::Ordering::Relaxed);
                            tokio::spawn(async move {
                                for k in 0..iters.div_ceil(2) {
                                    s.insert_node(&fresh_node(start + k, State::Running))
                                        .await
                                        .expect("insert");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.expect("writer");
                    }
                });
                // Two writers each did iters/2 inserts: time per insert overall.
                t.elapsed()
            })
        });
        g.bench_function("update_state_transition", |b| {
            b.iter_custom(|iters| {
                let start = counter.fetch_add(iters, std::sync::atomic::Ordering::Relaxed);
                let fresh: Vec<Node> = (0..iters)
                    .map(|k| fresh_node(start + k, State::Running))
                    .collect();
                rt.block_on(store.insert_nodes(&fresh)).expect("insert");
                let t = Instant::now();
                rt.block_on(async {
                    for node in &fresh {
                        let v = store
                            .get_node(node.id)
                            .await
                            .expect("get")
                            .expect("present");
                        let mut next = v.value;
                        next.state = State::Available;
                        store.replace_node(&next, v.version).await.expect("replace");
                    }
                });
                t.elapsed()
            })
        });
        g.finish();
    }
    results.insert("rss_bytes".into(), json!(rss_bytes()));
    c.final_summary();

    let out_dir = kernelci_benches::cache_dir().join("../kernelci-bench");
    let _ = std::fs::create_dir_all(&out_dir);
    let out = out_dir.join(format!("results-{n}.json"));
    match std::fs::write(
        &out,
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    ) {
        Ok(()) => eprintln!("results: {}", out.display()),
        Err(e) => eprintln!("could not write {}: {e}", out.display()),
    }
}
