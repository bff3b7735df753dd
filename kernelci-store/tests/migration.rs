//! Layout 2 → 3: a store whose node documents are JSON opens, is rewritten in the
//! binary encoding, and answers exactly as before.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::raw_open;

use kernelci_core::node::Node;
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_store::codec::FORMAT_BINARY;
use kernelci_store::{SledConfig, SledStore};

fn nodes(n: usize) -> Vec<Node> {
    let t0 = Timestamp::now().truncate_to_millis();
    (0..n)
        .map(|i| {
            let mut node = Node::new(
                if i % 3 == 0 { "kbuild" } else { "test" },
                &format!("node-{i}"),
                t0.plus_seconds(i as i64),
            );
            node.data = serde_json::json!({"arch": if i % 2 == 0 { "arm64" } else { "x86_64" },
                                           "kernel_revision": {"tree": "mainline", "n": i}})
            .as_object()
            .cloned();
            node
        })
        .collect()
}

/// The stored values of every node document, straight from sled.
fn raw_docs(db: &sled::Db) -> Vec<(sled::IVec, sled::IVec)> {
    db.scan_prefix(b"N").map(Result::unwrap).collect()
}

#[tokio::test]
async fn json_documents_are_migrated_to_the_binary_layout() {
    let dir = tempfile::tempdir().unwrap();
    // More than one migration batch (1000 documents), plus a damaged one; fewer
    // than a dictionary's first training (codec::packed::FIRST_TRAINING), as a
    // layout 2 store had none.
    let all = nodes(1_545);
    {
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        store.insert_nodes(&all).await.unwrap();
        let first = all[0].clone();
        let mut changed = first.clone();
        changed.name = "renamed".into();
        store
            .replace_node(&changed, kernelci_core::store::Version(1))
            .await
            .unwrap();
        store.close().unwrap();
    }
    // Rewrite the store as layout 2 would have left it: JSON documents (every other
    // one, as if a migration had been interrupted), schema 2, one damaged value.
    let damaged_key;
    {
        let db = raw_open(dir.path());
        let docs = raw_docs(&db);
        assert!(docs.iter().all(|(_, v)| v[8] == FORMAT_BINARY));
        for (i, (k, v)) in docs.iter().enumerate() {
            if i % 2 == 0 {
                let node = kernelci_store::codec::decode_node(&v[8..]).unwrap();
                let mut json = v[..8].to_vec();
                json.extend_from_slice(&serde_json::to_vec(&node).unwrap());
                db.insert(k, json).unwrap();
            }
        }
        damaged_key = docs[7].0.clone();
        let mut garbage = 1u64.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"{\"id\": not json");
        db.insert(&damaged_key, garbage).unwrap();
        db.insert(b"Mschema", &2u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }

    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    for n in all.iter().skip(1) {
        let got = store.get_node(n.id).await;
        if n.id.bytes()[..] == damaged_key[1..] {
            assert!(got.is_err(), "the damaged document stays reported");
        } else {
            assert_eq!(&got.unwrap().unwrap().value, n);
        }
    }
    let first = store.get_node(all[0].id).await.unwrap().unwrap();
    assert_eq!((first.value.name.as_str(), first.version.0), ("renamed", 2));
    let q = Query::parse_str("data.arch=arm64&kind=test", Mode::Count).unwrap();
    let expected = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 2 == 0 && i % 3 != 0)
        .count() as u64;
    assert_eq!(store.count_nodes(&q).await.unwrap(), expected);
    // verify reports the damaged document (and its orphaned index entries), nothing
    // else: every migrated document agrees with its index entries.
    let problems = store.verify().unwrap().problems;
    assert!(problems[0].contains("corrupt node"), "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| !p.contains("entries missing") || p.contains(": 0 entries missing")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .all(|p| !p.contains("entries without") || p.contains(", 1 entries without")),
        "{problems:?}"
    );
    store.close().unwrap();

    let db = raw_open(dir.path());
    let docs = raw_docs(&db);
    assert_eq!(docs.len(), all.len());
    let json: Vec<_> = docs.iter().filter(|(_, v)| v[8] != FORMAT_BINARY).collect();
    assert_eq!(json.len(), 1, "only the damaged document is left as it was");
    assert_eq!(json[0].0, damaged_key);
    // Layout 3: layout 4 (packed records) comes with a store's first dictionary,
    // which a store this small has not trained.
    assert_eq!(
        db.get(b"Mschema").unwrap().unwrap().as_ref(),
        3u64.to_be_bytes()
    );
}

/// Events written by earlier versions (JSON) read back as they were, next to the
/// binary ones this version writes; nothing rewrites them.
#[tokio::test]
async fn json_events_read_back_next_to_binary_ones() {
    use kernelci_core::events::{node_event, EventQuery, NewEvent, NodeOp};
    use kernelci_store::codec::FORMAT_EVENT;
    let dir = tempfile::tempdir().unwrap();
    let node = &nodes(1)[0];
    let now = Timestamp::now();
    let published = NewEvent {
        id: kernelci_core::id::ObjectId::new(),
        timestamp: now.truncate_to_millis(),
        channel: "results".into(),
        owner: Some("bot".into()),
        data: serde_json::json!({"zeta": 1, "alpha": [true, null, 2.5]}),
    };
    let written = {
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        let mut written = Vec::new();
        for e in [
            node_event(node, NodeOp::Created, false, now),
            published,
            node_event(
                node,
                NodeOp::Updated {
                    previous_state: kernelci_core::node::State::Running,
                    previous_result: None,
                },
                true,
                now,
            ),
        ] {
            written.push(store.append_event(e).await.unwrap());
        }
        store.close().unwrap();
        written
    };
    {
        // The first two as an earlier version stored them.
        let db = raw_open(dir.path());
        let events: Vec<_> = db.scan_prefix(b"E").map(Result::unwrap).collect();
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|(_, v)| v[0] == FORMAT_EVENT));
        for (i, (k, _)) in events.iter().take(2).enumerate() {
            db.insert(k, serde_json::to_vec(&written[i]).unwrap())
                .unwrap();
        }
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    let read = store.find_events(&EventQuery::default()).await.unwrap();
    assert_eq!(read, written);
    // Key order kept, as clients see it.
    assert_eq!(
        serde_json::to_string(&read).unwrap(),
        serde_json::to_string(&written).unwrap()
    );
    store.close().unwrap();
}
