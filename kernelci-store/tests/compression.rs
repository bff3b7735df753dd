//! sled's log compression: a store keeps the choice it was created with (new stores
//! leave it off by default and pack their records themselves, tests/packing.rs),
//! and the data reads back the same either way.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use kernelci_core::node::Node;
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_store::{SledConfig, SledStore, StoreError};

/// Nodes shaped like KernelCI's: every one names the same tree, URL and revision.
fn nodes(n: usize) -> Vec<Node> {
    let t0 = Timestamp::now().truncate_to_millis();
    (0..n)
        .map(|i| {
            let mut node = Node::new(
                "test",
                &format!("baseline.login.{i}"),
                t0.plus_seconds(i as i64),
            );
            node.data = serde_json::json!({
                "kernel_revision": {
                    "tree": "mainline",
                    "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
                    "branch": "master",
                    "commit": "d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d",
                    "describe": "v6.13-rc3-45-gd4e5f6a7b8c9",
                },
                "arch": "arm64",
                "defconfig": "defconfig",
                "platform": format!("board-{}", i % 7),
            })
            .as_object()
            .cloned();
            node
        })
        .collect()
}

fn config(level: u8) -> SledConfig {
    SledConfig {
        compression_level: level,
        ..SledConfig::default()
    }
}

async fn all_names(store: &SledStore) -> Vec<String> {
    let q = Query::parse_str("kind=test", Mode::Fast).unwrap();
    let found = store.find_nodes(&q).await.unwrap();
    found.into_iter().map(|n| n.name).collect()
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

#[tokio::test]
async fn a_compressed_store_keeps_it_whatever_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let all = nodes(300);
    {
        // As earlier versions made every new store.
        let store = SledStore::open(dir.path(), config(1)).unwrap();
        assert!(store.is_compressed());
        store.insert_nodes(&all).await.unwrap();
        store.close().unwrap();
    }
    // Reopened with compression off: still compressed (sled could not open it
    // otherwise), every node there.
    let store = SledStore::open(dir.path(), config(0)).unwrap();
    assert!(store.is_compressed());
    assert_eq!(all_names(&store).await.len(), 300);
    let one = store.get_node(all[17].id).await.unwrap().unwrap();
    assert_eq!(one.value, all[17]);
    store.close().unwrap();
}

#[tokio::test]
async fn an_uncompressed_store_stays_uncompressed() {
    // A store made with level 0 (the default now, or before compression existed)
    // opens with compression asked for and keeps working uncompressed.
    let dir = tempfile::tempdir().unwrap();
    let all = nodes(200);
    {
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        assert!(!store.is_compressed());
        store.insert_nodes(&all).await.unwrap();
        store.close().unwrap();
    }
    let store = SledStore::open(dir.path(), config(1)).unwrap();
    assert!(!store.is_compressed());
    store.insert_nodes(&nodes(1)).await.unwrap();
    assert_eq!(all_names(&store).await.len(), 201);
    store.close().unwrap();
    // The raw space opens as it was made, too.
    drop(common::raw_open(dir.path()));
}

#[tokio::test]
async fn compression_shrinks_the_directory() {
    let all = nodes(3000);
    let mut sizes = Vec::new();
    for level in [0, 1] {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), config(level)).unwrap();
        for chunk in all.chunks(100) {
            store.insert_nodes(chunk).await.unwrap();
        }
        store.close().unwrap();
        sizes.push(dir_bytes(dir.path()));
    }
    // KernelCI's nodes repeat their trees, URLs and revisions: compressed, the log
    // is a fraction of its plain size (about a quarter on the workload).
    assert!(
        sizes[1] * 2 < sizes[0],
        "compressed {} bytes, plain {}",
        sizes[1],
        sizes[0]
    );
}

#[test]
fn a_damaged_settings_file_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("conf"), "segment_size: 524288\n").unwrap();
    match SledStore::open(dir.path(), SledConfig::default()) {
        Err(StoreError::Settings(m)) => assert!(m.contains("use_compression"), "{m}"),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("opened a store with a damaged settings file"),
    }
}
