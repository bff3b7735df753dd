//! Loads the workload's data set into a `PgStore` database and leaves it there, for
//! looking at plans by hand (`psql`, `EXPLAIN (ANALYZE, SUMMARY)`), then runs
//! `VACUUM (ANALYZE)` as the benchmark does.
//!
//! ```sh
//! KCI_PG_URL='host=127.0.0.1 port=5432 user=postgres dbname=kci sslmode=disable' \
//!     cargo run --release -p kernelci-benches --example pg_load -- [N] [BATCH] [LOADERS]
//! ```
//!
//! `N` nodes of `gen_nodes.py --nodes N --seed 1` (default 100000), `insert_nodes` in
//! batches of `BATCH` (default 5000), from `LOADERS` concurrent tasks (default 1; the
//! batches are dealt out in turn, so a parent may arrive after its children, which
//! the store allows). The database should be empty.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kernelci_core::node::Node;
use kernelci_core::store::Store;
use kernelci_store::postgres::{PgConfig, PgStore};

fn main() {
    let url = std::env::var("KCI_PG_URL").expect("KCI_PG_URL");
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let batch: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let loaders: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let store = Arc::new(
        rt.block_on(PgStore::open(&PgConfig::new(url.clone())))
            .unwrap(),
    );
    let t = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Node>>(loaders);
    let rx = Arc::new(Mutex::new(rx));
    let tasks: Vec<_> = (0..loaders.max(1))
        .map(|_| {
            let store = Arc::clone(&store);
            let rx = Arc::clone(&rx);
            rt.spawn(async move {
                let mut busy = Duration::ZERO;
                loop {
                    let next = tokio::task::block_in_place(|| rx.lock().unwrap().recv());
                    let Ok(chunk) = next else { break };
                    let t = Instant::now();
                    store.insert_nodes(&chunk).await.unwrap();
                    busy += t.elapsed();
                }
                busy
            })
        })
        .collect();
    kernelci_benches::for_each_chunk(n, 1, batch, |chunk| {
        tx.send(chunk.to_vec()).unwrap();
        Ok(())
    })
    .unwrap();
    drop(tx);
    for task in tasks {
        let busy = rt.block_on(task).unwrap();
        println!(
            "  a loader spent {:.1} s in insert_nodes",
            busy.as_secs_f64()
        );
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{n} nodes in {secs:.1} s with {loaders} loader(s), parsing included: {:.0} nodes/s",
        n as f64 / secs
    );
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        c.batch_execute("VACUUM (ANALYZE) kci_nodes").await.unwrap();
    });
    println!("vacuumed and analyzed");
}
