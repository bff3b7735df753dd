//! The store conformance suite of kernelci-core, run on both backends, plus the
//! checks only a durable backend has (reopen).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use kernelci_core::query::{Mode, Query};
use kernelci_core::store::{node_json, Store};
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
    for check in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let sled = sled_store(&dir);
        let mem = MemoryStore::new();
        for store in [&sled as &dyn Store, &mem as &dyn Store] {
            match check {
                0 => conformance::nodes(store).await,
                1 => conformance::events(store).await,
                2 => conformance::subscribers_and_counters(store).await,
                3 => conformance::users_and_groups(store).await,
                4 => conformance::telemetry(store).await,
                5 => conformance::tokens_and_kv(store).await,
                6 => conformance::node_writes_with_events(store).await,
                _ => conformance::queues(store).await,
            }
        }
        assert!(sled.verify().unwrap().is_clean());
        assert!(mem.verify().unwrap().is_clean());
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
    let telemetry = conformance::sample_telemetry();
    store.insert_telemetry(&telemetry).await.unwrap();
    conformance::queues(&store).await;
    store.queue_push("left", "3").await.unwrap();
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
    let since = telemetry[2].ts;
    assert_eq!(
        store
            .scan_telemetry(Some(since), None, &Default::default())
            .await
            .unwrap(),
        telemetry
            .iter()
            .filter(|e| e.ts >= since)
            .cloned()
            .collect::<Vec<_>>(),
        "documents and their time index survive"
    );
    for want in ["1", "2", "3"] {
        assert_eq!(
            store.queue_pop("left").await.unwrap().as_deref(),
            Some(want),
            "queues survive a reopen in order"
        );
    }
    assert_eq!(store.queue_pop("left").await.unwrap(), None);
    // A queue emptied before the reopen is used again in order.
    store.queue_push("left", "4").await.unwrap();
    store.queue_push("left", "5").await.unwrap();
    assert_eq!(store.queue_pop("left").await.unwrap().as_deref(), Some("4"));
    assert_eq!(store.queue_pop("left").await.unwrap().as_deref(), Some("5"));
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

/// Crafted nodes the review found answered wrongly; every query must agree with the
/// naive model store on both backends.
#[tokio::test]
async fn review_regressions_agree_with_the_model() {
    use kernelci_core::node::Node;
    use kernelci_core::testing::NaiveStore;
    use kernelci_core::time::Timestamp;

    let mut nodes = Vec::new();
    // 1. Array elements satisfying `gt` and `lt` separately.
    let mut n = Node::new("test", "arrays", Timestamp::now());
    n.path = vec!["checkout".into(), "kbuild".into()];
    nodes.push(n);
    // 2. More index entries than a node may have: the index must not be trusted.
    let mut n = Node::new("test", "many", Timestamp::now());
    let platforms: Vec<String> = (0..300).map(|i| format!("p{i:03}")).collect();
    n.data = serde_json::json!({"platform": platforms, "arch": "x86_64"})
        .as_object()
        .cloned();
    nodes.push(n);
    // 4/5. -0.0 equals 0; integers beyond 2^53 next to floats.
    for (i, v) in [
        serde_json::json!(-0.0),
        serde_json::json!(0),
        serde_json::json!(1.5),
    ]
    .into_iter()
    .enumerate()
    {
        let mut n = Node::new("job", &format!("zero-{i}"), Timestamp::now());
        n.data = Some(serde_json::Map::from_iter([("arch".to_string(), v)]));
        nodes.push(n);
    }
    let big = 1i64 << 53;
    for k in 0..30 {
        let mut n = Node::new("kbuild", &format!("big-{k}"), Timestamp::now());
        let v = match k % 3 {
            0 => serde_json::json!(big + 1 + k),
            1 => serde_json::json!(9007199254740992.0),
            _ => serde_json::json!(big),
        };
        n.data = serde_json::json!({"x": v, "arch": "arm64"})
            .as_object()
            .cloned();
        nodes.push(n);
    }
    let dir = tempfile::tempdir().unwrap();
    let sled = sled_store(&dir);
    let mem = MemoryStore::new();
    let model = NaiveStore::new();
    for s in [
        &sled as &dyn Store,
        &mem as &dyn Store,
        &model as &dyn Store,
    ] {
        s.insert_nodes(&nodes).await.unwrap();
    }
    for qs in [
        "path__gt=k&path__lt=d",
        "path__gt=c&path__lt=d",
        "data.platform=p299",
        "data.platform__gt=p298",
        "data.platform__in=p000,p299",
        "data.arch__int=0",
        "data.arch__gte=0",
        "data.arch__ne=0",
        "data.arch__lte=0&data.arch__gte=0",
        "data.arch__gt=0&data.arch__lt=abc",
        "sort=data.x",
        "sort=-data.x&limit=7",
        "sort=data.arch&limit=3&offset=2",
        // Compound indexes with a trailing range.
        "kind=kbuild&created__gt=2000-01-01",
        "kind__in=kbuild,job&created__lt=2100-01-01&limit=5",
        "kind=kbuild&created__gt=2100-01-01",
        "state=running&timeout__gt=2000-01-01&timeout__lt=2100-01-01",
        "state__in=running,done&holdoff__lt=2100-01-01",
        "kind=job&result=null&created__gte=2000-01-01&sort=-created",
        "kind=kbuild&data.kernel_revision.tree=null&created__gt=2000-01-01&created__lt=1999-01-01",
    ] {
        let q = Query::parse_str(qs, Mode::Page).unwrap();
        let want = model.find_page(&q).await.unwrap();
        for s in [&sled as &dyn Store, &mem as &dyn Store] {
            let got = s.find_page(&q).await.unwrap();
            let ids = |v: &[Node]| v.iter().map(|n| n.id).collect::<Vec<_>>();
            assert_eq!(
                (ids(&got.items), got.total),
                (ids(&want.items), want.total),
                "{qs}"
            );
            assert_eq!(s.count_nodes(&q).await.unwrap(), want.total, "count {qs}");
        }
    }
    assert!(sled.verify().unwrap().is_clean());
    assert!(mem.events_after(0, None, 0).await.unwrap().is_empty());
}

/// The index snapshot: used after a clean close, ignored when stale or damaged.
#[tokio::test]
async fn index_snapshots_are_used_only_when_current() {
    use kernelci_core::node::Node;
    use kernelci_core::time::Timestamp;
    let dir = tempfile::tempdir().unwrap();
    let q = Query::parse_str("kind=kbuild", Mode::Count).unwrap();
    let store = sled_store(&dir);
    conformance::nodes(&store).await;
    store.close().unwrap();
    let snapshot = dir.path().join("indexes.snapshot");
    assert!(snapshot.exists(), "close writes the snapshot");

    // Current snapshot: loaded.
    let store = sled_store(&dir);
    assert_eq!(store.count_nodes(&q).await.unwrap(), 3);
    assert!(store.verify().unwrap().is_clean());
    // A write, then a drop without close: the snapshot is stale and must be ignored.
    let extra = Node::new("kbuild", "extra", Timestamp::now());
    store.insert_node(&extra).await.unwrap();
    drop(store);
    let store = sled_store(&dir);
    assert_eq!(
        store.count_nodes(&q).await.unwrap(),
        4,
        "rebuilt from the documents"
    );
    assert!(store.verify().unwrap().is_clean());
    store.close().unwrap();

    // A damaged snapshot: rejected, indexes rebuilt.
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let n = bytes.len();
    bytes.truncate(n / 2);
    std::fs::write(&snapshot, bytes).unwrap();
    let store = sled_store(&dir);
    assert_eq!(store.count_nodes(&q).await.unwrap(), 4);
    assert!(store.verify().unwrap().is_clean());
}

/// The conformance sample nodes in the naive model, a sled store in `dir` and a
/// memory store.
async fn sample_stores(
    dir: &tempfile::TempDir,
) -> (kernelci_core::testing::NaiveStore, SledStore, MemoryStore) {
    let naive = kernelci_core::testing::NaiveStore::default();
    conformance::nodes(&naive).await;
    let (sled, memory) = (sled_store(dir), MemoryStore::new());
    conformance::nodes(&sled).await;
    conformance::nodes(&memory).await;
    (naive, sled, memory)
}

/// `count_nodes_from_counters` answers equality filters one index covers (and
/// queries nothing can match), with the naive model's count, and declines anything
/// it would have to scan for, on both backends.
#[tokio::test]
async fn counts_from_counters_are_exact_or_declined() {
    let dir = tempfile::tempdir().unwrap();
    let (naive, sled, memory) = sample_stores(&dir).await;
    let stores: [&dyn Store; 2] = [&sled, &memory];
    for (qs, answered) in [
        ("", true),
        ("kind=kbuild", true),
        ("kind=no-such-kind", true),
        ("kind=kbuild&state=done", true),
        ("kind__in=kbuild,job", true),
        ("state=running&kind=no-such-kind", true),
        ("kind=kbuild&data.kernel_revision.tree=mainline", true),
        ("kind=kbuild&name=no-such-name", true),
        ("kind=kbuild&name=kbuild-3", false),
        ("kind=kbuild&data.defconfig=tinyconfig", false),
        ("name__re=^kbuild", false),
        ("kind__ne=kbuild", false),
        ("created__gt=2024-01-01T00:00:02", false),
    ] {
        let q = Query::parse_str(qs, Mode::Count).unwrap();
        let want = naive.count_nodes(&q).await.unwrap();
        for store in stores {
            let got = store.count_nodes_from_counters(&q).await.unwrap();
            if answered {
                assert_eq!(got, Some(want), "{qs}");
            } else {
                assert_eq!(got, None, "{qs}");
            }
        }
    }
}

/// The planner uses the compound indexes that end in a range field.
#[tokio::test]
async fn compound_range_indexes_answer_equality_plus_range() {
    let store = MemoryStore::new();
    conformance::nodes(&store).await;
    for (qs, index) in [
        (
            "kind=kbuild&created__gt=2024-01-01T00:00:02",
            "kind+created range",
        ),
        (
            "state=running&timeout__lt=2100-01-01",
            "state+timeout range",
        ),
        (
            "kind=job&result=pass&created__gte=2024-01-01",
            "kind+result+created range",
        ),
    ] {
        let q = Query::parse_str(qs, Mode::Page).unwrap();
        let plan = store.explain(&q).unwrap();
        assert!(
            plan.driver.as_deref().is_some_and(|d| d.starts_with(index)),
            "{qs}: {plan}"
        );
        assert!(plan.residual.is_empty(), "{qs}: {plan}");
    }
}

/// Residual checks on top-level fields read document heads only; checks on `data`
/// read whole documents; both give the naive model's answer, on both backends.
#[tokio::test]
async fn residual_checks_on_heads_agree_with_whole_documents() {
    let dir = tempfile::tempdir().unwrap();
    let (naive, sled, memory) = sample_stores(&dir).await;
    let stores: [&dyn Store; 2] = [&sled, &memory];
    for (qs, heads) in [
        (
            "kind=kbuild&treeid__ne=abc&created__gt=2024-01-01T00:00:01",
            true,
        ),
        ("state=done&platform_filter__ne=zz", true),
        ("kind=kbuild&data.defconfig__ne=tinyconfig", false),
        ("owner__ne=nobody&artifacts.log__ne=x", false),
    ] {
        let q = Query::parse_str(qs, Mode::Page).unwrap();
        let plan = sled.explain(&q).unwrap();
        assert_eq!(plan, memory.explain(&q).unwrap());
        assert!(!plan.residual.is_empty(), "{qs}: {plan}");
        assert_eq!(plan.residual_on_heads, heads, "{qs}: {plan}");
        assert_eq!(
            plan.to_string().contains("(on document heads)"),
            heads,
            "{qs}: {plan}"
        );
        let expected = naive.find_page(&q).await.unwrap();
        for store in stores {
            let got = store.find_page(&q).await.unwrap();
            assert_eq!(got.total, expected.total, "{qs}");
            assert_eq!(got.items, expected.items, "{qs}");
            // Checked on heads, then written as JSON straight from the document.
            let json = store.find_page_json(&q).await.unwrap();
            let want: Vec<Vec<u8>> = expected
                .items
                .iter()
                .map(|n| node_json(n).unwrap())
                .collect();
            assert_eq!(json.total, expected.total, "{qs}");
            assert!(json.items == want, "{qs}");
        }
    }
}

/// Concurrent pops on both backends: every pushed value is popped exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pops_never_return_an_item_twice() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn Store>; 2] = [Arc::new(sled_store(&dir)), Arc::new(MemoryStore::new())];
    for store in stores {
        let n = 200;
        for i in 0..n {
            store.queue_push("work", &i.to_string()).await.unwrap();
        }
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(v) = store.queue_pop("work").await.unwrap() {
                    got.push(v.parse::<u32>().unwrap());
                }
                got
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let got = t.await.unwrap();
            // Each popper sees the values in queue order.
            assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
            all.extend(got);
        }
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn export_import_between_memory_sled_and_the_model() {
    use kernelci_core::testing::NaiveStore;
    // memory → sled, then the sled copy survives a reopen and exports the same.
    let dir = tempfile::tempdir().unwrap();
    let source = MemoryStore::new();
    let target = sled_store(&dir);
    conformance::export_import(&source, &target).await;
    let report = target.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    let before =
        conformance::export_section(&target, kernelci_core::store::Section::Nodes, 1000).await;
    target.close().unwrap();
    let reopened = sled_store(&dir);
    assert!(reopened.verify().unwrap().is_clean());
    assert_eq!(
        conformance::export_section(&reopened, kernelci_core::store::Section::Nodes, 1000).await,
        before
    );

    // sled → memory, and the model ↔ memory both ways.
    let dir = tempfile::tempdir().unwrap();
    let source = sled_store(&dir);
    let target = MemoryStore::new();
    conformance::export_import(&source, &target).await;
    assert!(target.verify().unwrap().is_clean());
    conformance::export_import(&NaiveStore::new(), &MemoryStore::new()).await;
    conformance::export_import(&MemoryStore::new(), &NaiveStore::new()).await;
}

/// User records are kept in memory in front of sled (`tiered::records`): a user
/// read while it is being written is never answered stale once the write
/// returned. A writer flips `is_active` many times while readers read; after each
/// write returns, a read must see that write (or a later one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_reads_are_never_stale_after_a_write() {
    use kernelci_core::auth::User;
    use kernelci_core::id::ObjectId;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(sled_store(&dir));
    let mut user = User {
        id: ObjectId::new(),
        username: "flip".into(),
        email: "flip@example.org".into(),
        hashed_password: "x".into(),
        is_active: true,
        is_superuser: false,
        is_verified: true,
        groups: Vec::new(),
    };
    store.insert_user(&user).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (store, done, id) = (Arc::clone(&store), Arc::clone(&done), user.id);
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                assert!(store.get_user(id).await.unwrap().is_some());
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    for i in 0..300 {
        user.is_active = i % 2 == 0;
        user.username = format!("flip-{i}");
        store.update_user(&user).await.unwrap();
        let read = store.get_user(user.id).await.unwrap().unwrap();
        assert_eq!(read, user, "read after write {i}");
    }
    done.store(true, Ordering::SeqCst);
    for r in readers {
        assert!(r.await.unwrap() > 0);
    }
    // Deleted: gone at once, and after a reopen the record is the last one written.
    assert!(store.delete_user(user.id).await.unwrap());
    assert!(store.get_user(user.id).await.unwrap().is_none());
    store.insert_user(&user).await.unwrap();
    assert_eq!(store.get_user(user.id).await.unwrap().as_ref(), Some(&user));
    let store = Arc::try_unwrap(store).ok().unwrap();
    store.close().unwrap();
    let store = sled_store(&dir);
    assert_eq!(store.get_user(user.id).await.unwrap(), Some(user));
}
