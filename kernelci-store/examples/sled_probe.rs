//! Raw sled batch-insert throughput on this machine (for sizing the engine).

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (mode, name) in [
        (sled::Mode::HighThroughput, "high-throughput"),
        (sled::Mode::LowSpace, "low-space"),
    ] {
        let dir = tempfile::tempdir()?;
        let db = sled::Config::new()
            .path(dir.path())
            .mode(mode)
            .cache_capacity(256 << 20)
            .open()?;
        let t = Instant::now();
        let n = 400_000u64;
        for chunk in 0..(n / 1000) {
            let mut b = sled::Batch::default();
            for i in 0..1000u64 {
                let k = (chunk * 1000 + i)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .to_be_bytes();
                b.insert(&k, &[0u8; 16]);
            }
            db.apply_batch(b)?;
        }
        println!(
            "{name}: random keys: {:.0} inserts/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        for chunk in 0..(n / 1000) {
            let mut b = sled::Batch::default();
            for i in 0..1000u64 {
                let k = (1u64 << 62 | (chunk * 1000 + i)).to_be_bytes();
                b.insert(&k, &[0u8; 16]);
            }
            db.apply_batch(b)?;
        }
        println!(
            "{name}: sequential keys: {:.0} inserts/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        for i in 0..n {
            db.insert((1u64 << 61 | i).to_be_bytes(), &[0u8; 16])?;
        }
        println!(
            "{name}: single inserts: {:.0} inserts/s",
            n as f64 / t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
