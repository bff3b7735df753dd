//! Times bulk ingest of a JSONL node file into the memory and sled stores, to see
//! where ingest time goes: `cargo run --release -p kernelci-store --example
//! ingest_probe -- FILE [N]`.

use std::io::BufRead;
use std::time::{Duration, Instant};

use kernelci_core::node::Node;
use kernelci_core::store::Store;
use kernelci_store::{Durability, MemoryStore, SledConfig, SledStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let file = args.next().ok_or("usage: ingest_probe FILE [N]")?;
    let n: usize = args.next().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut nodes = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(file)?)
        .lines()
        .take(n)
    {
        nodes.push(serde_json::from_str::<Node>(&line?)?);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mem = MemoryStore::new();
    let t = Instant::now();
    for chunk in nodes.chunks(1000) {
        rt.block_on(mem.insert_nodes(chunk))?;
    }
    println!(
        "memory: {:.0} nodes/s",
        nodes.len() as f64 / t.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let config = SledConfig {
        durability: Durability::FlushEvery(Duration::from_millis(200)),
        ..SledConfig::default()
    };
    let sled = SledStore::open(dir.path(), config)?;
    let t = Instant::now();
    for chunk in nodes.chunks(1000) {
        rt.block_on(sled.insert_nodes(chunk))?;
    }
    println!(
        "sled: {:.0} nodes/s",
        nodes.len() as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
