//! Durable single-node inserts into a `PgStore`, in a fresh process: how many per
//! second with 1, 2 and 8 writers, and the per-insert latency.
//!
//! ```sh
//! KCI_PG_URL='host=127.0.0.1 port=5432 user=postgres dbname=kci sslmode=disable' \
//!     cargo run --release -p kernelci-benches --example pg_write_probe -- [SECONDS] [WRITERS...]
//! ```
//!
//! The nodes are copies of a 1.2 KB test node of the workload (first finished test
//! of `gen_nodes.py --nodes 1000 --seed 1`) with fresh ids, into whatever the database
//! holds (the store creates its schema if missing). Pair it with the server's
//! `log_min_duration_statement = 0` to see where an insert's time goes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kernelci_core::id::ObjectId;
use kernelci_core::node::State;
use kernelci_core::store::Store;
use kernelci_store::postgres::{PgConfig, PgStore};

fn main() {
    let url = std::env::var("KCI_PG_URL").expect("KCI_PG_URL");
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let mut writers: Vec<usize> = args.filter_map(|s| s.parse().ok()).collect();
    if writers.is_empty() {
        writers = vec![1, 2, 8];
    }
    let template = kernelci_benches::nodes(1000, 1)
        .expect("nodes")
        .into_iter()
        .find(|n| n.kind == "test" && n.state == State::Done)
        .expect("a test node");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(rt.block_on(PgStore::open(&PgConfig::new(url))).unwrap());
    for w in writers {
        let (count, elapsed, mut lat) = rt.block_on(async {
            let start = Instant::now();
            let stop = start + Duration::from_secs_f64(secs);
            let tasks: Vec<_> = (0..w)
                .map(|_| {
                    let s = Arc::clone(&store);
                    let t = template.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while Instant::now() < stop {
                            let mut n = t.clone();
                            n.id = ObjectId::new();
                            let t0 = Instant::now();
                            s.insert_node(&n).await.unwrap();
                            lat.push(t0.elapsed().as_secs_f64() * 1e6);
                        }
                        lat
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            (all.len(), start.elapsed(), all)
        });
        lat.sort_by(f64::total_cmp);
        let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
        println!(
            "{w} writers: {count} inserts in {:.1} s = {:.0}/s; p50 {:.0} us, p99 {:.0} us",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64(),
            p(0.5),
            p(0.99)
        );
    }
}
