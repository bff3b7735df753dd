//! The store conformance suite of kernelci-core, run on both backends, plus the
//! checks only a durable backend has (reopen).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_core::testing::conformance;
use kernelci_store::{MemoryStore, SledConfig, SledStore};

fn sled_store(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path(), SledConfig::default()).unwrap()
}

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    let store = MemoryStore::new();
    conformance::run_all(&store).await;
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[tokio::test]
async fn sled_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled_store(&dir);
    conformance::run_all(&store).await;
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.nodes > 0 && report.entries > report.nodes);
}

#[tokio::test]
async fn each_check_on_a_fresh_store() {
    for check in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let sled = sled_store(&dir);
        let mem = MemoryStore::new();
        for store in [&sled as &dyn Store, &mem as &dyn Store] {
            match check {
                0 => conformance::nodes(store).await,
                1 => conformance::events(store).await,
                2 => conformance::subscribers_and_counters(store).await,
                3 => conformance::users_and_groups(store).await,
                _ => conformance::tokens_and_kv(store).await,
            }
        }
    }
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = sled_store(&dir);
    conformance::nodes(&store).await;
    conformance::events(&store).await;
    let before_nodes = store
        .find_nodes(&Query::parse_str("", Mode::Fast).unwrap())
        .await
        .unwrap();
    let before_seq = store.last_event_sequence().await.unwrap();
    let counter = store.next_counter("subscription").await.unwrap();
    store.kv_set("ns", "k", "v").await.unwrap();
    store.close().unwrap();

    let store = sled_store(&dir);
    let after_nodes = store
        .find_nodes(&Query::parse_str("", Mode::Fast).unwrap())
        .await
        .unwrap();
    assert_eq!(after_nodes, before_nodes);
    assert_eq!(store.last_event_sequence().await.unwrap(), before_seq);
    assert_eq!(
        store.next_counter("subscription").await.unwrap(),
        counter + 1
    );
    assert_eq!(store.kv_get("ns", "k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(
        store
            .count_nodes(&Query::parse_str("kind=kbuild", Mode::Count).unwrap())
            .await
            .unwrap(),
        3
    );
    assert!(store.verify().unwrap().is_clean());
}

/// Found by the model test: an inverted range made the in-memory B-tree panic.
#[tokio::test]
async fn inverted_ranges_match_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sled = sled_store(&dir);
    let mem = MemoryStore::new();
    for store in [&sled as &dyn Store, &mem as &dyn Store] {
        conformance::nodes(store).await;
        for qs in [
            "created__gt=2024-01-02&created__lt=2024-01-01",
            "created__gte=2024-01-01&created__lt=2024-01-01",
            "created__gt=2024-01-01T00:00:05&created__lte=2024-01-01T00:00:05",
        ] {
            let q = Query::parse_str(qs, Mode::Page).unwrap();
            let page = store.find_page(&q).await.unwrap();
            assert_eq!((page.items.len(), page.total), (0, 0), "{qs}");
        }
    }
}
