//! Median latency of the API-equivalent call of a few query shapes on a `PgStore`
//! database loaded by `pg_load` (run that first), in a fresh process, with the plan
//! PostgreSQL chose: for looking at one shape by hand.
//!
//! ```sh
//! KCI_PG_URL='host=/tmp/... port=... user=postgres dbname=kci' \
//!     cargo run --release -p kernelci-benches --example pg_query_probe -- 1000000 [shape...]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        let (times, len) = kernelci_benches::time_shape(&rt, &store, &shape, iters).unwrap();
        println!(
            "{:<34} {:>8.3} ms (min {:.3})  ({len}: total, items or count)",
            shape.name,
            times[times.len() / 2],
            times[0]
        );
        if std::env::var_os("EXPLAIN").is_some() {
            println!(
                "{}",
                rt.block_on(store.explain(&shape.parse().unwrap())).unwrap()
            );
        }
    }
}
