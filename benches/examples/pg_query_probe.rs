//! Median latency of the API-equivalent call of a few query shapes on a `PgStore`
//! database loaded by `pg_load` (run that first), in a fresh process, with the plan
//! PostgreSQL chose: for looking at one shape by hand.
//!
//! ```sh
//! KCI_PG_URL='host=/tmp/... port=... user=postgres dbname=kci' \
//!     cargo run --release -p kernelci-benches --example pg_query_probe -- 1000000 [shape...]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use kernelci_core::store::Store;
use kernelci_store::postgres::{PgConfig, PgStore};

fn main() {
    let url = std::env::var("KCI_PG_URL").expect("KCI_PG_URL");
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let wanted: Vec<String> = args.collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(PgStore::open(&PgConfig::new(url))).unwrap();
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for shape in kernelci_benches::shapes(n, 1).unwrap() {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == &shape.name) {
            continue;
        }
        let q = shape.parse().unwrap();
        let mut times = Vec::new();
        let mut len = 0;
        for _ in 0..iters {
            let t = Instant::now();
            len = match shape.endpoint.as_str() {
                "nodes" => rt.block_on(store.find_page(&q)).unwrap().total as usize,
                "fast" => rt.block_on(store.find_nodes(&q)).unwrap().len(),
                _ => rt.block_on(store.count_nodes(&q)).unwrap() as usize,
            };
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:<34} {:>8.3} ms (min {:.3})  ({len}: total, items or count)",
            shape.name,
            times[times.len() / 2],
            times[0]
        );
        if std::env::var_os("EXPLAIN").is_some() {
            println!("{}", rt.block_on(store.explain(&q)).unwrap());
        }
    }
}
