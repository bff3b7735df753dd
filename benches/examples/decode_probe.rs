//! Cost of decoding stored node documents: JSON (layouts 1-2) and the binary layout 3;
//! and of answering with one as JSON: decoded then serialised, or written straight
//! from the binary document (`codec::write_node_json`).
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
        let bins: Vec<Vec<u8>> = nodes
            .iter()
            .step_by(5)
            .map(|n| {
                let mut b = Vec::new();
                kernelci_store::codec::encode_node(n, &mut b).unwrap();
                b
            })
            .collect();
        let avg_bin = bins.iter().map(Vec::len).sum::<usize>() / bins.len();
        let t = Instant::now();
        for b in &bins {
            let n = kernelci_store::codec::decode_node(b).unwrap();
            k += n.path.len();
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / bins.len() as f64;
        println!("decode Node (binary layout): {per:.2} us/doc (avg {avg_bin} bytes) {k}");
        let t = Instant::now();
        for b in &bins {
            let n = kernelci_store::codec::decode_head(b).unwrap();
            k += n.path.len();
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / bins.len() as f64;
        println!("decode head (binary layout): {per:.2} us/doc {k}");
        let mut out = Vec::with_capacity(4096);
        let t = Instant::now();
        for b in &bins {
            let n = kernelci_store::codec::decode_node(b).unwrap();
            out.clear();
            serde_json::to_writer(&mut out, &n).unwrap();
            k += out.len();
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / bins.len() as f64;
        println!("binary -> Node -> JSON: {per:.2} us/doc {k}");
        let t = Instant::now();
        for b in &bins {
            out.clear();
            kernelci_store::codec::write_node_json(b, &mut out).unwrap();
            k += out.len();
        }
        let per = t.elapsed().as_secs_f64() * 1e6 / bins.len() as f64;
        println!("binary -> JSON (write_node_json): {per:.2} us/doc {k}");
    }
}
