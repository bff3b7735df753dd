//! Model-based test (the sled pattern): random sequences of operations — inserts,
//! replaces, bulk field sets, purges, queries, counts, queue pushes and pops,
//! reopens — applied to the
//! naive reference store (the model), the memory store, the sled store and, when a
//! PostgreSQL server can be started, the PostgreSQL store (a fresh database per
//! sequence; "reopen" opens a new pool on it and re-runs the migrations). Every
//! answer must be equal, and `verify()` must be clean after each sequence.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use kernelci_core::arbitrary::{mode, node, query_pairs};
use kernelci_core::node::Node;
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::{node_json, FieldSet, Store};
use kernelci_core::testing::NaiveStore;
use kernelci_core::time::parse_query_datetime;
use kernelci_store::postgres::testing::TestCluster;
use kernelci_store::postgres::{PgConfig, PgStore};
use kernelci_store::{Durability, MemoryStore, SledConfig, SledStore};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(Node),
    InsertMany(Vec<Node>),
    /// Replace the i-th live node with the fields of another generated node.
    Replace(usize, Node),
    SetProcessed(Vec<usize>, bool),
    Purge(i64, usize),
    Query(Vec<(String, String)>, Mode),
    /// Push a value on one of [`QUEUES`].
    Push(usize, u8),
    /// Pop from one of [`QUEUES`].
    Pop(usize),
    Reopen,
}

/// Queue names, two of them prefixes of the third.
const QUEUES: [&str; 3] = ["", "q", "qq"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => node().prop_map(Op::Insert),
        1 => proptest::collection::vec(node(), 1..6).prop_map(Op::InsertMany),
        2 => (any::<usize>(), node()).prop_map(|(i, n)| Op::Replace(i, n)),
        1 => (proptest::collection::vec(any::<usize>(), 0..4), any::<bool>()).prop_map(|(i, b)| Op::SetProcessed(i, b)),
        1 => (0i64..3, 1usize..3).prop_map(|(s, m)| Op::Purge(s, m)),
        4 => (query_pairs(), mode()).prop_map(|(p, m)| Op::Query(p, m)),
        2 => (0..QUEUES.len(), any::<u8>()).prop_map(|(q, v)| Op::Push(q, v)),
        2 => (0..QUEUES.len()).prop_map(Op::Pop),
        1 => Just(Op::Reopen),
    ]
}

fn open_sled(dir: &tempfile::TempDir) -> SledStore {
    let config = SledConfig {
        durability: Durability::FlushEvery(Duration::from_millis(5)),
        ..SledConfig::default()
    };
    SledStore::open(dir.path(), config).unwrap()
}

async fn open_pg(url: &str) -> PgStore {
    PgStore::open(&PgConfig::new(url)).await.unwrap()
}

/// Runs `ops` on the model, memory and sled stores, and on a PostgreSQL store on a
/// fresh database of `pg` when given.
async fn run(ops: Vec<Op>, pg: Option<&TestCluster>) {
    let dir = tempfile::tempdir().unwrap();
    let model = NaiveStore::new();
    let memory = MemoryStore::new();
    let mut sled = open_sled(&dir);
    let pg_url = pg.map(TestCluster::create_database);
    let mut postgres = match &pg_url {
        Some(url) => Some(open_pg(url).await),
        None => None,
    };
    let mut live: Vec<kernelci_core::id::ObjectId> = Vec::new();
    let now = parse_query_datetime("2024-02-01").unwrap();
    for op in ops {
        let mut stores: Vec<&dyn Store> = vec![&model, &memory, &sled];
        if let Some(p) = &postgres {
            stores.push(p);
        }
        match op {
            Op::Insert(n) => {
                live.push(n.id);
                for s in &stores {
                    s.insert_node(&n).await.unwrap();
                }
            }
            Op::InsertMany(ns) => {
                live.extend(ns.iter().map(|n| n.id));
                for s in &stores {
                    s.insert_nodes(&ns).await.unwrap();
                }
            }
            Op::Replace(i, mut n) => {
                if live.is_empty() {
                    continue;
                }
                n.id = live[i % live.len()];
                for s in &stores {
                    match s.get_node(n.id).await.unwrap() {
                        Some(v) => {
                            s.replace_node(&n, v.version).await.unwrap();
                        }
                        None => assert!(s
                            .replace_node(&n, kernelci_core::store::Version(1))
                            .await
                            .is_err()),
                    }
                }
            }
            Op::SetProcessed(picks, b) => {
                let ids: Vec<_> = picks
                    .iter()
                    .filter(|_| !live.is_empty())
                    .map(|i| live[i % live.len()])
                    .collect();
                let mut answers = Vec::new();
                for s in &stores {
                    answers.push(
                        s.set_field_many(&ids, FieldSet::ProcessedByKcidbBridge(b), now)
                            .await
                            .unwrap(),
                    );
                }
                assert!(
                    answers.windows(2).all(|w| w[0] == w[1]),
                    "set_field_many: {answers:?}"
                );
            }
            Op::Purge(secs, max) => {
                let before = parse_query_datetime("2024-01-01")
                    .unwrap()
                    .plus_seconds(secs);
                let mut answers = Vec::new();
                for s in &stores {
                    answers.push(
                        s.delete_nodes_created_before(before, &["checkout"], max)
                            .await
                            .unwrap(),
                    );
                }
                assert!(
                    answers.windows(2).all(|w| w[0] == w[1]),
                    "purge: {answers:?}"
                );
            }
            Op::Query(pairs, mode) => {
                let Ok(q) = Query::parse(&pairs, mode) else {
                    continue;
                };
                let want = model.find_page(&q).await.unwrap();
                for s in &stores[1..] {
                    let got = s.find_page(&q).await.unwrap();
                    assert_eq!(got.total, want.total, "total of {q}");
                    let ids = |v: &[Node]| v.iter().map(|n| n.id).collect::<Vec<_>>();
                    assert_eq!(ids(&got.items), ids(&want.items), "items of {q}");
                    assert_eq!(got.items, want.items);
                    assert_eq!(s.count_nodes(&q).await.unwrap(), want.total, "count of {q}");
                    if let Some(n) = s.count_nodes_from_counters(&q).await.unwrap() {
                        assert_eq!(n, want.total, "count from counters of {q}");
                    }
                    assert_eq!(
                        ids(&s.find_nodes(&q).await.unwrap()),
                        ids(&want.items),
                        "find of {q}"
                    );
                    // The same page as the API's JSON, written from the documents.
                    let json: Vec<Vec<u8>> =
                        want.items.iter().map(|n| node_json(n).unwrap()).collect();
                    let got = s.find_page_json(&q).await.unwrap();
                    assert_eq!(got.total, want.total, "JSON total of {q}");
                    assert!(got.items == json, "JSON items of {q}");
                    assert!(
                        s.find_nodes_json(&q).await.unwrap() == json,
                        "JSON find of {q}"
                    );
                }
            }
            Op::Push(q, v) => {
                for s in &stores {
                    s.queue_push(QUEUES[q], &v.to_string()).await.unwrap();
                }
            }
            Op::Pop(q) => {
                let mut answers = Vec::new();
                for s in &stores {
                    answers.push(s.queue_pop(QUEUES[q]).await.unwrap());
                }
                assert!(answers.windows(2).all(|w| w[0] == w[1]), "pop: {answers:?}");
            }
            Op::Reopen => {
                drop(stores);
                if let Some(url) = &pg_url {
                    postgres = Some(open_pg(url).await);
                }
                drop(std::mem::replace(
                    &mut sled,
                    open_sled(&tempfile::tempdir().unwrap()),
                ));
                sled = open_sled(&dir);
            }
        }
    }
    let mut stores: Vec<&dyn Store> = vec![&model, &memory, &sled];
    if let Some(p) = &postgres {
        stores.push(p);
    }
    let mut all = Vec::new();
    for s in &stores {
        all.push(
            s.find_nodes(&Query::parse_str("", Mode::Fast).unwrap())
                .await
                .unwrap(),
        );
        assert_eq!(s.count_all_nodes().await.unwrap(), all[0].len() as u64);
    }
    for other in &all[1..] {
        assert_eq!(&all[0], other);
    }
    // Counts answered from counters (equality on the fields of a counted index), for
    // the values the stored nodes really have.
    for n in all[0].iter().take(8) {
        let text = |v: Option<&str>| v.map_or("null".to_owned(), str::to_owned);
        let parent = n.parent.map_or("null".to_owned(), |p| p.to_string());
        for q in [
            format!("kind={}", n.kind),
            format!("state={}", n.state.as_str()),
            format!("kind={}&state={}", n.kind, n.state.as_str()),
            format!("result={}", text(n.result.map(|r| r.as_str()))),
            format!("kind={}&owner={}", n.kind, text(n.owner.as_deref())),
            format!("parent={parent}"),
            format!("processed_by_kcidb_bridge={}", n.processed_by_kcidb_bridge),
        ] {
            let Ok(q) = Query::parse_str(&q, Mode::Count) else {
                continue;
            };
            let want = model.count_nodes(&q).await.unwrap();
            for s in &stores[1..] {
                assert_eq!(s.count_nodes(&q).await.unwrap(), want, "count of {q}");
                if let Some(n) = s.count_nodes_from_counters(&q).await.unwrap() {
                    assert_eq!(n, want, "count from counters of {q}");
                }
            }
        }
    }
    for name in QUEUES {
        let mut drained = Vec::new();
        for s in &stores {
            let mut items = Vec::new();
            while let Some(v) = s.queue_pop(name).await.unwrap() {
                items.push(v);
            }
            drained.push(items);
        }
        assert!(
            drained.windows(2).all(|w| w[0] == w[1]),
            "queue {name:?}: {drained:?}"
        );
    }
    for report in [memory.verify().unwrap(), sled.verify().unwrap()] {
        assert!(report.is_clean(), "{:?}", report.problems);
    }
    if let Some(p) = &postgres {
        let problems = p.verify_counts().await.unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn sled_and_memory_agree_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops, None));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn postgres_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let Some(cluster) = TestCluster::shared() else {
            return Ok(());
        };
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run(ops, Some(cluster)));
    }
}

/// Anchored regexes get an index range as pre-filter on PostgreSQL (`^dmesg` →
/// `name >= 'dmesg' AND name < 'dmesh'`); the answers stay the model's at the edges
/// of the range.
#[tokio::test]
async fn regex_pre_filters_agree_with_the_model() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let pg = open_pg(&cluster.create_database()).await;
    let model = NaiveStore::new();
    let t = parse_query_datetime("2024-01-01").unwrap();
    let names = [
        "dmesg",
        "dmesh",
        "dmesf",
        "dmesg.x",
        "Dmesg",
        "abc",
        "ac",
        "a",
        "b",
        "é",
        "a\u{10FFFF}b",
    ];
    let nodes: Vec<Node> = names.iter().map(|n| Node::new("test", n, t)).collect();
    for s in [&model as &dyn Store, &pg] {
        s.insert_nodes(&nodes).await.unwrap();
    }
    for q in [
        "name__re=^dmesg",
        "name__re=^dmesg$",
        "name__re=^ab?c",
        "name__re=^a",
        "name__re=^é",
        "name__re=^a\u{10FFFF}",
        "kind=test&name__re=^dmes[gh]",
        "owner__re=^a",
        // Unanchored: a required literal becomes a strpos() pre-filter.
        "name__re=mes",
        "name__re=es.x",
        "name__re=b?c",
        "name__re=ab*c",
        "name__re=é",
        "name__re=\u{10FFFF}b",
        "name__re=(?i)dmesg",
    ] {
        let q = Query::parse_str(q, Mode::Page).unwrap();
        let want = model.find_page(&q).await.unwrap();
        let got = pg.find_page(&q).await.unwrap();
        assert_eq!(got.items, want.items, "{q}");
        assert_eq!(got.total, want.total, "{q}");
    }
}
