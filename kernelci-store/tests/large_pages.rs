//! Pages over many candidates (where documents are loaded in batches, in parallel
//! from 64 on) equal the naive store's, for every combination of limit, offset,
//! residual check and total.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use kernelci_core::id::IdGenerator;
use kernelci_core::node::{Node, State};
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::{node_json, Store};
use kernelci_core::testing::NaiveStore;
use kernelci_core::time::Timestamp;
use kernelci_store::MemoryStore;
use serde_json::json;

fn nodes(n: usize) -> Vec<Node> {
    let ids = IdGenerator::with_parts([7, 7, 7, 7, 7], 0);
    let t0 = Timestamp::from_micros(1_700_000_000_000_000).unwrap_or_else(Timestamp::now);
    (0..n)
        .map(|i| {
            let kind = ["test", "kbuild", "job"][i % 3];
            let mut node = Node::new(kind, &format!("n{}-{}", i % 17, i), t0);
            node.id = ids.next_id_at(1_700_000_000 + i as u64);
            node.created = t0.plus_seconds(i as i64);
            node.state =
                [State::Running, State::Done, State::Available][i % 3 / 2 + (i % 5 == 0) as usize];
            let arch = ["x86_64", "arm64"][i % 2];
            node.data = json!({"arch": arch, "n": i}).as_object().cloned();
            node.truncate_times();
            node
        })
        .collect()
}

#[tokio::test]
async fn batched_pages_equal_the_naive_store() {
    let data = nodes(1500);
    let naive = NaiveStore::new();
    let mem = MemoryStore::new();
    let dir = tempfile::tempdir().unwrap();
    let sled = kernelci_store::SledStore::open(dir.path(), Default::default()).unwrap();
    for s in [&naive as &dyn Store, &mem, &sled] {
        s.insert_nodes(&data).await.unwrap();
    }
    let filters = [
        "kind=test",
        "kind=test&name__re=^n3-",
        "data.arch=arm64&state=done",
        "created__gt=2023-11-14T22:20:00&kind=job",
        "data.n__gt=700&kind=kbuild",
        "",
    ];
    let windows = [
        (1, 0),
        (7, 3),
        (50, 0),
        (100, 40),
        (600, 10),
        (1000, 0),
        (5000, 1490),
    ];
    for f in filters {
        for (limit, offset) in windows {
            for mode in [Mode::Page, Mode::Fast] {
                let qs = format!("{f}&limit={limit}&offset={offset}");
                let q = Query::parse_str(qs.trim_start_matches('&'), mode).unwrap();
                let want = naive.find_page(&q).await.unwrap();
                for (name, s) in [("memory", &mem as &dyn Store), ("sled", &sled)] {
                    let got = s.find_page(&q).await.unwrap();
                    assert_eq!(got.total, want.total, "{name} total {qs}");
                    assert_eq!(got.items, want.items, "{name} items {qs}");
                    let json = s.find_page_json(&q).await.unwrap();
                    assert_eq!(json.total, want.total, "{name} JSON total {qs}");
                    let expected: Vec<Vec<u8>> =
                        want.items.iter().map(|n| node_json(n).unwrap()).collect();
                    assert!(json.items == expected, "{name} JSON items {qs}");
                    let count = s.count_nodes(&q).await.unwrap();
                    assert_eq!(count, want.total, "{name} count {qs}");
                }
            }
        }
    }
}
