//! What sled's garbage collection after large batches costs other requests: small
//! node writes and reads, timed one by one while another task loads batches of
//! 20,000 nodes (each batch is followed by a reclaim of sled's epoch garbage).
//!
//! ```sh
//! cargo run --release -p kernelci-benches --example reclaim_probe
//! ```
//!
//! Prints the batch times and the small operations' latency percentiles during the
//! load (compare two builds in one session; the machine is shared and noisy).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernelci_core::node::Node;
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_store::{SledConfig, SledStore};

const BATCHES: usize = 8;
const BATCH: usize = 20_000;

fn node(prefix: &str, i: usize) -> Node {
    let mut n = Node::new("test", &format!("{prefix}-{i}"), Timestamp::now());
    n.data = serde_json::json!({"arch": "x86_64", "kernel_revision": {"tree": "mainline"}})
        .as_object()
        .cloned();
    n
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(SledStore::open(tmp.path(), SledConfig::default()).unwrap());
    rt.block_on(async {
        let seed: Vec<Node> = (0..2000).map(|i| node("seed", i)).collect();
        store.insert_nodes(&seed).await.unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let small = {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let (mut writes, mut reads) = (Vec::new(), Vec::new());
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    let n = node("small", i);
                    let t = Instant::now();
                    store.insert_node(&n).await.unwrap();
                    writes.push(t.elapsed());
                    let t = Instant::now();
                    store.get_node(seed[i % seed.len()].id).await.unwrap();
                    reads.push(t.elapsed());
                    i += 1;
                }
                (writes, reads)
            })
        };
        let mut batches = Vec::new();
        for b in 0..BATCHES {
            let nodes: Vec<Node> = (0..BATCH).map(|i| node(&format!("bulk{b}"), i)).collect();
            let t = Instant::now();
            store.insert_nodes(&nodes).await.unwrap();
            batches.push(t.elapsed());
        }
        done.store(true, Ordering::Relaxed);
        let (mut writes, mut reads) = small.await.unwrap();
        batches.sort();
        writes.sort();
        reads.sort();
        println!(
            "batch of {BATCH} nodes: min {:.0} ms, median {:.0} ms, max {:.0} ms",
            pct(&batches, 0.0),
            pct(&batches, 0.5),
            pct(&batches, 1.0)
        );
        for (label, v) in [("small write", &writes), ("read", &reads)] {
            println!(
                "{label:12} during the load ({} ops): p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
                v.len(),
                pct(v, 0.5),
                pct(v, 0.99),
                pct(v, 1.0)
            );
        }
    });
    Arc::into_inner(store).unwrap().close().unwrap();
}
