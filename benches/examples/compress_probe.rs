//! What compressing stored records one by one costs and saves: node documents and
//! their events in the binary codec, zstd per record without and with a dictionary
//! trained on a sample of the store's own records.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Instant;

use zstd::zstd_safe;

use kernelci_core::events::{node_event, NodeOp};
use kernelci_core::time::Timestamp;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |a| a.parse().unwrap());
    let nodes = kernelci_benches::nodes(n, 1).unwrap();
    let mut docs = Vec::new();
    let mut events = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let mut b = Vec::new();
        kernelci_store::codec::encode_node(node, &mut b).unwrap();
        docs.push(b);
        let e = node_event(node, NodeOp::Created, false, Timestamp::now()).with_sequence(i as u64);
        let mut b = Vec::new();
        kernelci_store::codec::encode_event(&e, &mut b).unwrap();
        events.push(b);
    }
    for (what, recs) in [("nodes", &docs), ("events", &events)] {
        let raw = recs.iter().map(Vec::len).sum::<usize>() as f64 / recs.len() as f64;
        println!("{what}: {} records, {raw:.0} B each", recs.len());
        for level in [1, 3] {
            report(what, recs, &[], level, "no dictionary");
        }
        for (sample, label) in [(2_000usize, "first 2000"), (recs.len() / 20, "every 20th")] {
            let train: Vec<&[u8]> = if label == "first 2000" {
                recs.iter().take(sample).map(Vec::as_slice).collect()
            } else {
                recs.iter().step_by(20).map(Vec::as_slice).collect()
            };
            for size in [16 << 10, 64 << 10, 112 << 10] {
                let t = Instant::now();
                let dict = zstd::dict::from_samples(&train, size).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                for level in [1, 3] {
                    report(
                        what,
                        recs,
                        &dict,
                        level,
                        &format!(
                            "dict {} KB ({label}, trained in {ms:.0} ms)",
                            dict.len() >> 10
                        ),
                    );
                }
            }
        }
    }
}

fn report(what: &str, recs: &[Vec<u8>], dict: &[u8], level: i32, label: &str) {
    let cdict = zstd::dict::EncoderDictionary::copy(dict, level);
    let ddict = zstd::dict::DecoderDictionary::copy(dict);
    let mut cctx = zstd_safe::create_cctx();
    let mut dctx = zstd_safe::create_dctx();
    let mut out = Vec::with_capacity(1 << 16);
    let mut comp = Vec::with_capacity(recs.len());
    let t = Instant::now();
    for r in recs {
        out.clear();
        cctx.compress_using_cdict(&mut out, r, cdict.as_cdict())
            .unwrap();
        comp.push(out.clone());
    }
    let c_us = t.elapsed().as_secs_f64() * 1e6 / recs.len() as f64;
    let size = comp.iter().map(Vec::len).sum::<usize>() as f64 / recs.len() as f64;
    let t = Instant::now();
    let mut k = 0;
    for c in &comp {
        out.clear();
        dctx.decompress_using_ddict(&mut out, c, ddict.as_ddict())
            .unwrap();
        k += out.len();
    }
    let d_us = t.elapsed().as_secs_f64() * 1e6 / recs.len() as f64;
    println!(
        "  {what} level {level} {label}: {size:.0} B, compress {c_us:.2} us, decompress {d_us:.2} us ({k})"
    );
}
