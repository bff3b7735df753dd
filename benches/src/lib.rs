//! Benchmarks for kernelci-rs (run by hand with `cargo bench`, never in CI).
//!
//! The data comes from `../shared/workload/gen_nodes.py` (the same generator and seed
//! as the PostgreSQL baseline of `../shared/workload/pg_baseline.sh`), so our figures
//! compare side by side with PostgreSQL's (`benches/compare-postgres.sh`).
//!
//! This library holds the workload plumbing shared by the bench targets: generating
//! (and caching) node sets and query lists, and loading them into a store.

pub mod server;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;

use kernelci_core::node::Node;
use kernelci_core::query::{Mode, Query};

/// Where the workload tools live: `$KCI_WORKLOAD_DIR`, else `../shared/workload`
/// next to the repository.
pub fn workload_dir() -> PathBuf {
    std::env::var_os("KCI_WORKLOAD_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/workload"),
        PathBuf::from,
    )
}

/// Where generated data is cached: `target/workload/`.
pub fn cache_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/workload");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn generate(args: &[&str], out: &Path) -> std::io::Result<()> {
    if out.exists() {
        return Ok(());
    }
    let tmp = out.with_extension("tmp");
    let file = std::fs::File::create(&tmp)?;
    let status = Command::new("python3")
        .arg(workload_dir().join("gen_nodes.py"))
        .args(args)
        .stdout(file)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "gen_nodes.py {args:?} failed: {status}"
        )));
    }
    std::fs::rename(tmp, out)
}

/// The JSON-lines file of the `n`-node data set of `seed` (generated when missing).
pub fn nodes_path(n: usize, seed: u64) -> std::io::Result<PathBuf> {
    let path = cache_dir().join(format!("nodes-{n}-{seed}.jsonl"));
    generate(
        &["--nodes", &n.to_string(), "--seed", &seed.to_string()],
        &path,
    )?;
    Ok(path)
}

/// The `n`-node data set of `seed` (generated once, then read from the cache).
pub fn nodes(n: usize, seed: u64) -> std::io::Result<Vec<Node>> {
    let mut out = Vec::with_capacity(n);
    for_each_chunk(n, seed, 10_000, |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(out)
}

/// Reads the `n`-node data set of `seed` in creation order, `chunk` nodes at a time
/// (the last chunk may be shorter), and hands each chunk to `f`: a loader that never
/// holds the whole set in memory.
pub fn for_each_chunk(
    n: usize,
    seed: u64,
    chunk: usize,
    mut f: impl FnMut(&[Node]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let path = nodes_path(n, seed)?;
    let chunk = chunk.max(1);
    let mut buf = Vec::with_capacity(chunk);
    for line in BufReader::new(std::fs::File::open(&path)?).lines() {
        let node: Node = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
        buf.push(node);
        if buf.len() == chunk {
            f(&buf)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        f(&buf)?;
    }
    Ok(())
}

/// One query shape of the workload.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Shape name (`kind_test_limit1`...).
    pub name: String,
    /// `nodes`, `fast` or `count`.
    pub endpoint: String,
    /// The query string.
    pub query: String,
}

impl Shape {
    /// The parsed query, in the endpoint's mode.
    pub fn parse(&self) -> Result<Query, kernelci_core::query::QueryError> {
        let mode = match self.endpoint.as_str() {
            "nodes" => Mode::Page,
            "fast" => Mode::Fast,
            _ => Mode::Count,
        };
        Query::parse_str(&self.query, mode)
    }
}

/// The query shapes for the `n`-node data set of `seed`.
pub fn shapes(n: usize, seed: u64) -> std::io::Result<Vec<Shape>> {
    let path = cache_dir().join(format!("queries-{n}-{seed}.tsv"));
    generate(
        &[
            "--queries",
            "--nodes",
            &n.to_string(),
            "--seed",
            &seed.to_string(),
        ],
        &path,
    )?;
    let text = std::fs::read_to_string(&path)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            Some(Shape {
                name: parts.next()?.to_owned(),
                endpoint: parts.next()?.to_owned(),
                query: parts.next().unwrap_or("").to_owned(),
            })
        })
        .collect())
}

/// Times `iters` API-equivalent calls of `shape` on `store` (`find_page` for
/// `/nodes`, `find_nodes` for `/nodes/fast`, `count_nodes` for `/count`), each
/// `block_on` of `rt`; returns the sorted times in milliseconds and the last
/// call's total, item count or count. The nodes are returned decoded
/// ([`kernelci_core::node::Node`]): the store-level figures of
/// docs/PERFORMANCE.md.
pub fn time_shape(
    rt: &tokio::runtime::Runtime,
    store: &dyn kernelci_core::store::Store,
    shape: &Shape,
    iters: usize,
) -> kernelci_core::Result<(Vec<f64>, usize)> {
    time_calls(rt, store, shape, iters, false)
}

/// [`time_shape`] with the calls the server makes: `find_page_json` and
/// `find_nodes_json`, each node returned as the API's JSON (what `http_bench`
/// compares its HTTP times with).
pub fn time_shape_as_served(
    rt: &tokio::runtime::Runtime,
    store: &dyn kernelci_core::store::Store,
    shape: &Shape,
    iters: usize,
) -> kernelci_core::Result<(Vec<f64>, usize)> {
    time_calls(rt, store, shape, iters, true)
}

fn time_calls(
    rt: &tokio::runtime::Runtime,
    store: &dyn kernelci_core::store::Store,
    shape: &Shape,
    iters: usize,
    json: bool,
) -> kernelci_core::Result<(Vec<f64>, usize)> {
    let q = shape
        .parse()
        .map_err(|e| kernelci_core::Error::Invalid(e.to_string()))?;
    let mut times = Vec::with_capacity(iters);
    let mut len = 0;
    for _ in 0..iters.max(1) {
        let t = std::time::Instant::now();
        len = match (shape.endpoint.as_str(), json) {
            ("nodes", false) => rt.block_on(store.find_page(&q))?.total as usize,
            ("nodes", true) => rt.block_on(store.find_page_json(&q))?.total as usize,
            ("fast", false) => rt.block_on(store.find_nodes(&q))?.len(),
            ("fast", true) => rt.block_on(store.find_nodes_json(&q))?.len(),
            _ => rt.block_on(store.count_nodes(&q))? as usize,
        };
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times, len))
}

/// The bytes of every file under `path` (0 for what cannot be read).
pub fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The resident memory of process `pid` (`"self"` for this one) from
/// `/proc/PID/status`, in bytes (0 when unreadable).
pub fn rss_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}
