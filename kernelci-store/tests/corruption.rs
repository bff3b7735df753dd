//! Bad data on disk gives a typed error, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::raw_open;

use kernelci_core::node::Node;
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_core::Error;
use kernelci_store::{SledConfig, SledStore, StoreError};

fn node_key(n: &Node) -> Vec<u8> {
    let mut k = vec![b'N'];
    k.extend_from_slice(&n.id.bytes());
    k
}

/// Writes `value` under `key` directly with sled, behind the store's back.
fn poke(dir: &std::path::Path, key: &[u8], value: &[u8]) {
    let db = raw_open(dir);
    db.insert(key, value).unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn damaged_documents_are_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = Node::new("kbuild", "good", Timestamp::now());
    let bad = Node::new("kbuild", "bad", Timestamp::now());
    let short = Node::new("kbuild", "short", Timestamp::now());
    {
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        store
            .insert_nodes(&[good.clone(), bad.clone(), short.clone()])
            .await
            .unwrap();
        store.close().unwrap();
    }
    let mut garbage = 1u64.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"{\"id\": not json");
    poke(dir.path(), &node_key(&bad), &garbage);
    poke(dir.path(), &node_key(&short), b"abc");

    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    assert_eq!(store.get_node(good.id).await.unwrap().unwrap().value, good);
    for id in [bad.id, short.id] {
        match store.get_node(id).await {
            Err(Error::Storage(msg)) => assert!(msg.contains("corrupt node"), "{msg}"),
            other => panic!("expected a storage error, got {other:?}"),
        }
    }
    let q = Query::parse_str("kind=kbuild", Mode::Page).unwrap();
    assert!(matches!(store.find_nodes(&q).await, Err(Error::Storage(_))));
    assert_eq!(
        store.count_nodes(&q).await.unwrap(),
        3,
        "counts need no document"
    );
    let report = store.verify().unwrap();
    assert!(!report.is_clean());
    assert!(
        report.problems.iter().any(|p| p.contains("corrupt node")),
        "{:?}",
        report.problems
    );
}

#[tokio::test]
async fn damaged_binary_documents_are_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = (0..4)
        .map(|i| Node::new("test", &format!("t{i}"), Timestamp::now()))
        .collect();
    {
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        store.insert_nodes(&nodes).await.unwrap();
        store.close().unwrap();
    }
    let whole = raw_open(dir.path())
        .get(node_key(&nodes[0]))
        .unwrap()
        .unwrap()
        .to_vec();
    // Truncated mid-document; an unknown state byte's neighbourhood flipped; a
    // trailing byte; a huge string length.
    let mut flipped = whole.clone();
    flipped[9] = 0xFF;
    let mut trailing = whole.clone();
    trailing.push(0);
    let mut huge = whole[..8 + 3 + 12].to_vec();
    huge.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]);
    let damaged = [whole[..whole.len() / 2].to_vec(), flipped, trailing, huge];
    for (n, value) in nodes.iter().zip(&damaged) {
        poke(dir.path(), &node_key(n), value);
    }
    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    for n in &nodes {
        match store.get_node(n.id).await {
            Err(Error::Storage(msg)) => assert!(msg.contains("corrupt node"), "{msg}"),
            other => panic!("expected a storage error, got {other:?}"),
        }
    }
    assert!(!store.verify().unwrap().is_clean());
}

#[tokio::test]
async fn damaged_counters_and_index_entries_are_found_by_verify_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::new("job", "j", Timestamp::now());
    {
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        store.insert_node(&n).await.unwrap();
        store.close().unwrap();
    }
    // A truncated node counter and a stray index entry.
    poke(dir.path(), b"Mnodes", b"\x01");
    let mut stray = vec![b'I', 1];
    stray.extend_from_slice(&[0x30, b'x', 0, 0]);
    stray.extend_from_slice(&[7; 12]);
    poke(dir.path(), &stray, b"");

    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    match store.count_all_nodes().await {
        Err(Error::Storage(msg)) => assert!(msg.contains("corrupt counter"), "{msg}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(matches!(store.verify(), Err(StoreError::Corrupt { .. })));
    store.rebuild_indexes().await.unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(store.count_all_nodes().await.unwrap(), 1);
}

#[tokio::test]
async fn a_newer_layout_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    SledStore::open(dir.path(), SledConfig::default())
        .unwrap()
        .close()
        .unwrap();
    poke(dir.path(), b"Mschema", &999u64.to_be_bytes());
    match SledStore::open(dir.path(), SledConfig::default()) {
        Err(e @ StoreError::Schema { found: 999, .. }) => {
            assert!(e.to_string().contains("unsupported schema version 999"))
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("opened a store of a newer layout"),
    }
}

/// Layout 1 kept index entries and counters as sled keys; opening such a store
/// deletes them and rebuilds the indexes in memory.
#[tokio::test]
async fn a_layout_1_store_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::new("kbuild", "k", Timestamp::now());
    {
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        store.insert_node(&n).await.unwrap();
        store.close().unwrap();
    }
    {
        let db = raw_open(dir.path());
        db.insert(b"Mschema", &1u64.to_be_bytes()).unwrap();
        for i in 0..25_000u32 {
            let mut k = vec![b'I', 1, 0x30];
            k.extend_from_slice(&i.to_be_bytes());
            db.insert(k, b"").unwrap();
        }
        db.insert([b'K', 1, 0x10], &7u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    let q = Query::parse_str("kind=kbuild", Mode::Count).unwrap();
    assert_eq!(store.count_nodes(&q).await.unwrap(), 1);
    assert!(store.verify().unwrap().is_clean());
    store.close().unwrap();
    let db = raw_open(dir.path());
    assert_eq!(db.scan_prefix([b'I']).count(), 0, "old index keys deleted");
    assert_eq!(db.scan_prefix([b'K']).count(), 0, "old counters deleted");
    // Every later layout up to 3; layout 4 comes with a first packing dictionary.
    assert_eq!(
        db.get(b"Mschema").unwrap().unwrap().as_ref(),
        &3u64.to_be_bytes(),
        "migrated through every later layout"
    );
}
