//! Reopen time, memory and point-read latency of a persistent store, each measured
//! in a fresh process (so the RSS is the store's, not the loaded data set's).
//!
//! ```sh
//! cargo run --release -p kernelci-benches --example store_probe -- 1000000
//! ```
//!
//! The first run builds `target/workload/store-N` from the workload's nodes (bulk,
//! relaxed durability) and closes it; every run then opens it, reports the open
//! time, the process RSS, and get-by-id latency percentiles over 20k ids, and the close time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use kernelci_core::id::ObjectId;
use kernelci_core::store::Store;
use kernelci_store::{Durability, SledConfig, SledStore};

fn rss_mb() -> u64 {
    kernelci_benches::rss_bytes("self") >> 20
}

fn dir_mb(path: &std::path::Path) -> u64 {
    kernelci_benches::dir_bytes(path) >> 20
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = kernelci_benches::cache_dir().join(format!("store-{n}"));
    let ids_file = kernelci_benches::cache_dir().join(format!("store-{n}.ids"));
    if !dir.exists() {
        let data = kernelci_benches::nodes(n, 1).unwrap();
        // KCI_SLED_COMPRESSION_LEVEL=0 builds an uncompressed store (to compare).
        let compression_level = std::env::var("KCI_SLED_COMPRESSION_LEVEL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(kernelci_store::DEFAULT_COMPRESSION_LEVEL);
        let bulk = SledConfig {
            durability: Durability::FlushEvery(Duration::from_millis(200)),
            compression_level,
            ..SledConfig::default()
        };
        let store = SledStore::open(&dir, bulk).unwrap();
        let t = Instant::now();
        rt.block_on(async {
            for chunk in data.chunks(1000) {
                store.insert_nodes(chunk).await.unwrap();
            }
            store.flush().await.unwrap();
        });
        eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());
        let ids: String = data
            .iter()
            .step_by((n / 20_000).max(1))
            .map(|n| format!("{}\n", n.id))
            .collect();
        std::fs::write(&ids_file, ids).unwrap();
        store.close().unwrap();
        eprintln!("built; run again to measure in a fresh process");
        return;
    }
    let ids: Vec<ObjectId> = std::fs::read_to_string(&ids_file)
        .unwrap()
        .lines()
        .map(|l| ObjectId::parse(l).unwrap())
        .collect();
    let before = rss_mb();
    let t = Instant::now();
    let store = SledStore::open(&dir, SledConfig::default()).unwrap();
    let open = t.elapsed();
    println!(
        "open: {:.3} s; rss after open: {} MB (before {before} MB); disk: {} MB",
        open.as_secs_f64(),
        rss_mb(),
        dir_mb(&dir)
    );
    let stats = store.index_stats().unwrap();
    let sum = |f: fn(&kernelci_store::tiered::IndexStats) -> u64| stats.iter().map(f).sum::<u64>();
    println!(
        "indexes: {} tuples ({} held by one node), {} entries, {} MB of tuple bytes, about {} MB on the heap",
        sum(|s| s.tuples),
        sum(|s| s.single_tuples),
        sum(|s| s.entries),
        sum(|s| s.tuple_bytes) >> 20,
        sum(|s| s.heap_bytes) >> 20
    );
    if std::env::var_os("KCI_INDEX_STATS").is_some() {
        for s in &stats {
            println!(
                "  index {:>2}: {:>8} tuples, {:>8} single, {:>8} entries, {:>6} KB tuples",
                s.index,
                s.tuples,
                s.single_tuples,
                s.entries,
                s.tuple_bytes >> 10
            );
        }
    }
    let mut lat: Vec<Duration> = Vec::with_capacity(ids.len() * 2);
    rt.block_on(async {
        for round in 0..2 {
            for id in &ids {
                let t = Instant::now();
                let got = store.get_node(*id).await.unwrap();
                let d = t.elapsed();
                assert!(got.is_some());
                if round == 1 {
                    lat.push(d);
                }
            }
        }
    });
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    println!(
        "get_by_id (warm, {} ids): p50 {:.1} us, p90 {:.1} us, p99 {:.1} us; rss {} MB",
        lat.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        rss_mb()
    );
    let t = Instant::now();
    store.close().unwrap();
    println!(
        "close (flush + index snapshot): {:.3} s",
        t.elapsed().as_secs_f64()
    );
}
