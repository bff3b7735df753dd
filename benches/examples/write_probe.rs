//! Durable write latency on a sled store, in a fresh process: one writer, two
//! writers, updates with a state transition, and the same inserts with relaxed
//! durability (what a write costs before its flush).
//!
//! ```sh
//! cargo run --release -p kernelci-benches --example write_probe -- [DIR]
//! ```
//!
//! Without `DIR` a new store in a temporary directory is used; with it, that store
//! (e.g. `target/workload/store-1000000`, which then keeps the probe's nodes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kernelci_core::node::{Node, State};
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_store::{Durability, SledConfig, SledStore};

const N: usize = 3000;

fn node(i: usize) -> Node {
    let mut n = Node::new("test", &format!("write-probe-{i}"), Timestamp::now());
    n.data = serde_json::json!({"arch": "x86_64", "kernel_revision": {"tree": "mainline"}})
        .as_object()
        .cloned();
    n
}

fn per_op(label: &str, d: Duration, n: usize) {
    let us = d.as_secs_f64() * 1e6 / n as f64;
    println!("{label:40} {us:8.1} us/op  ({:.0}/s)", 1e6 / us);
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for (label, durability) in [
        (
            "relaxed",
            Durability::FlushEvery(Duration::from_millis(200)),
        ),
        ("durable", Durability::Durable),
    ] {
        // PROBE_MODE=relaxed|durable runs one of the two (for profiling).
        if std::env::var("PROBE_MODE").is_ok_and(|m| m != label) {
            continue;
        }
        let store = Arc::new(
            SledStore::open(
                &dir,
                SledConfig {
                    durability,
                    ..SledConfig::default()
                },
            )
            .unwrap(),
        );
        let nodes: Vec<Node> = (0..3 * N).map(node).collect();
        rt.block_on(async {
            let t = Instant::now();
            for n in &nodes[..N] {
                store.insert_node(n).await.unwrap();
            }
            per_op(&format!("{label} insert, 1 writer"), t.elapsed(), N);
            let t = Instant::now();
            let tasks: Vec<_> = [&nodes[N..N + N / 2], &nodes[N + N / 2..2 * N]]
                .into_iter()
                .map(|part| {
                    let s = Arc::clone(&store);
                    let part = part.to_vec();
                    tokio::spawn(async move {
                        for n in &part {
                            s.insert_node(n).await.unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            per_op(&format!("{label} insert, 2 writers"), t.elapsed(), N);
            let t = Instant::now();
            for n in &nodes[..N] {
                let v = store.get_node(n.id).await.unwrap().unwrap();
                let mut next = v.value;
                next.state = State::Available;
                store.replace_node(&next, v.version).await.unwrap();
            }
            per_op(&format!("{label} update (get + replace)"), t.elapsed(), N);
            let t = Instant::now();
            for _ in 0..200 {
                store.flush().await.unwrap();
            }
            per_op(
                &format!("{label} flush with nothing to write"),
                t.elapsed(),
                200,
            );
        });
        Arc::into_inner(store).unwrap().close().unwrap();
    }
}
