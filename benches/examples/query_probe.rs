//! Median latency of the API-equivalent call (`find_page` for `/nodes`, `find_nodes`
//! for `/nodes/fast`, `count_nodes` for `/count`) of a few query shapes on the
//! persistent store built by
//! `store_probe` (run that first), in a fresh process.
//!
//! ```sh
//! cargo run --release -p kernelci-benches --example query_probe -- 1000000 [shape...]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kernelci_core::store::Store;
use kernelci_store::{SledConfig, SledStore};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let wanted: Vec<String> = args.collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = kernelci_benches::cache_dir().join(format!("store-{n}"));
    let store = SledStore::open(&dir, SledConfig::default()).unwrap();
    println!("nodes: {}", rt.block_on(store.count_all_nodes()).unwrap());
    for shape in kernelci_benches::shapes(n, 1).unwrap() {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == &shape.name) {
            continue;
        }
        let iters: usize = std::env::var("ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(25);
        // The API-equivalent call, as in the criterion benchmark.
        let (times, len) = kernelci_benches::time_shape(&rt, &store, &shape, iters).unwrap();
        println!(
            "{:<34} {:>8.3} ms  ({len}: total, items or count)",
            shape.name,
            times[times.len() / 2]
        );
        // EXPLAIN=1 prints how each shape was answered.
        if std::env::var_os("EXPLAIN").is_some() {
            println!("    {:?}", store.explain(&shape.parse().unwrap()).unwrap());
        }
    }
    store.close().unwrap();
}
