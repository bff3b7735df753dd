//! Writes the workload's `N`-node data set as a `mongodump` of the reference's
//! database would hold it (`OUT/kernelci/node.bson`: `_id` and `parent` as
//! ObjectIds, datetimes as BSON dates), for timing `kernelci-server import mongo`.
//!
//! ```sh
//! cargo run --release -p kernelci-benches --example mongo_dump -- 1000000 target/mongo-1m
//! time target/release/kernelci-server import mongo target/mongo-1m --data-dir /tmp/imported
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufWriter, Write};

use bson::{oid::ObjectId, Bson, DateTime, Document};
use serde_json::Value;

fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            None => Bson::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(a) => Bson::Array(a.iter().map(to_bson).collect()),
        Value::Object(m) => {
            Bson::Document(m.iter().map(|(k, v)| (k.clone(), to_bson(v))).collect())
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "target/mongo-dump".into()));
    let db = out.join("kernelci");
    std::fs::create_dir_all(&db).unwrap();
    let mut file = BufWriter::new(std::fs::File::create(db.join("node.bson")).unwrap());
    let mut written = 0usize;
    kernelci_benches::for_each_chunk(n, 1, 10_000, |chunk| {
        for node in chunk {
            let json = serde_json::to_value(node).map_err(std::io::Error::other)?;
            let Value::Object(fields) = json else {
                continue;
            };
            let mut doc = Document::new();
            for (k, v) in fields {
                let value = match (k.as_str(), &v) {
                    ("id", Value::String(s)) | ("parent", Value::String(s)) => {
                        Bson::ObjectId(ObjectId::parse_str(s).unwrap())
                    }
                    ("created" | "updated" | "timeout" | "holdoff", Value::String(_)) => {
                        let ts: kernelci_core::time::Timestamp =
                            serde_json::from_value(v.clone()).unwrap();
                        Bson::DateTime(DateTime::from_millis(ts.to_chrono().timestamp_millis()))
                    }
                    _ => to_bson(&v),
                };
                doc.insert(if k == "id" { "_id".to_owned() } else { k }, value);
            }
            doc.to_writer(&mut file).map_err(std::io::Error::other)?;
            written += 1;
        }
        Ok(())
    })
    .unwrap();
    file.flush().unwrap();
    println!("{written} nodes in {}", db.join("node.bson").display());
}
