//! Cost of decoding stored node documents (JSON) versus the whole point read.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Instant;

use kernelci_core::node::Node;

fn main() {
    let nodes = kernelci_benches::nodes(100_000, 1).unwrap();
    let docs: Vec<Vec<u8>> = nodes
        .iter()
        .step_by(5)
        .map(|n| serde_json::to_vec(n).unwrap())
        .collect();
    let avg = docs.iter().map(Vec::len).sum::<usize>() / docs.len();
    for _ in 0..2 {
        let t = Instant::now();
        let mut k = 0;
        for d in &docs {
            let n: Node = serde_json::from_slice(d).unwrap();
            k += n.path.len();
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / docs.len() as f64;
        println!("decode Node: {per:.2} us/doc (avg {avg} bytes) {k}");
        let t = Instant::now();
        for d in &docs {
            let v: serde_json::Value = serde_json::from_slice(d).unwrap();
            k += v.as_object().map_or(0, |o| o.len());
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / docs.len() as f64;
        println!("decode Value: {per:.2} us/doc {k}");
    }
}
