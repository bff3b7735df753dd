//! The PostgreSQL store on a throwaway cluster: core's conformance suite, the
//! migrations, the event-order checker with concurrent writers, concurrent queue
//! pops, rows the `data` indexes cannot answer, and text PostgreSQL cannot store.
//!
//! Without PostgreSQL on the machine every test prints a SKIPPED line and passes,
//! unless `KCI_REQUIRE_POSTGRES=1` (CI sets it), which makes a missing server fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::sync::Arc;

use kernelci_core::events::NewEvent;
use kernelci_core::id::ObjectId;
use kernelci_core::node::Node;
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_core::testing::{conformance, NaiveStore};
use kernelci_core::time::Timestamp;
use kernelci_store::postgres::testing::TestCluster;
use kernelci_store::postgres::{PgConfig, PgStore, SCHEMA_VERSION};

/// A store on a fresh database of the shared cluster, or `None` (skipped).
async fn fresh() -> Option<(PgStore, String)> {
    let cluster = TestCluster::shared()?;
    let url = cluster.create_database();
    let store = PgStore::open(&PgConfig::new(&url)).await.unwrap();
    Some((store, url))
}

#[tokio::test]
async fn postgres_store_passes_the_conformance_suite() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    conformance::run_all(&store).await;
    let problems = store.verify_counts().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn each_conformance_check_on_a_fresh_database() {
    for check in 0..9 {
        let Some((store, _)) = fresh().await else {
            return;
        };
        match check {
            0 => conformance::nodes(&store).await,
            1 => conformance::events(&store).await,
            2 => conformance::subscribers_and_counters(&store).await,
            3 => conformance::users_and_groups(&store).await,
            4 => conformance::telemetry(&store).await,
            5 => conformance::tokens_and_kv(&store).await,
            6 => conformance::subscriptions(&store).await,
            7 => conformance::node_writes_with_events(&store).await,
            _ => conformance::queues(&store).await,
        }
    }
}

#[tokio::test]
async fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some((store, url)) = fresh().await else {
        return;
    };
    // Opening again finds everything applied.
    let again = PgStore::open(&PgConfig::new(&url)).await.unwrap();
    let report = again.migrate().await.unwrap();
    assert!(report.applied.is_empty(), "{report:?}");
    assert!(report.indexes_created.is_empty(), "{report:?}");
    // Data written before survives a re-open.
    let n = Node::new("checkout", "c", Timestamp::now());
    store.insert_node(&n).await.unwrap();
    assert_eq!(again.get_node(n.id).await.unwrap().unwrap().value, n);

    // A database written by a newer build is refused with a clear message.
    let client = tokio_postgres_client(&url).await;
    client
        .execute(
            "INSERT INTO kci_schema (version, name) VALUES ($1, 'from the future')",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = PgStore::open(&PgConfig::new(&url))
        .await
        .err()
        .expect("a newer schema must be refused");
    let text = err.to_string();
    assert!(text.contains("unsupported schema version"), "{text}");
}

#[tokio::test]
async fn servers_starting_together_migrate_once() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database();
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::open(&PgConfig::new(&url)).await })
        })
        .collect();
    for o in opens {
        o.await.unwrap().unwrap();
    }
    let client = tokio_postgres_client(&url).await;
    let n: i64 = client
        .query_one("SELECT count(*) FROM kci_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, i64::from(SCHEMA_VERSION));
}

/// The hazard of "allocate a number, then insert": with eight concurrent writers, a
/// reader that polls `events_after(last seen)` must see every sequence id exactly
/// once, in order, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_readers_never_skip_a_sequence_under_concurrent_writers() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let store = Arc::new(store);
    const WRITERS: usize = 8;
    const EACH: usize = 60;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..EACH {
                    let e = NewEvent {
                        id: ObjectId::new(),
                        timestamp: Timestamp::now(),
                        channel: "node".into(),
                        owner: Some(format!("w{w}")),
                        data: serde_json::json!({"i": i}),
                    };
                    store.append_event(e).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = 0;
            while seen.len() < WRITERS * EACH {
                let batch = store.events_after(last, None, 1000).await.unwrap();
                for e in batch {
                    seen.push(e.sequence_id);
                    last = e.sequence_id;
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(60), reader)
        .await
        .expect("the reader saw every event")
        .unwrap();
    let want: Vec<u64> = (1..=(WRITERS * EACH) as u64).collect();
    assert_eq!(seen, want, "every sequence id once, in order, no gap");
    assert_eq!(
        store.last_event_sequence().await.unwrap(),
        (WRITERS * EACH) as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pops_hand_each_item_to_exactly_one_caller() {
    let Some((store, url)) = fresh().await else {
        return;
    };
    for i in 0..400 {
        store.queue_push("jobs", &i.to_string()).await.unwrap();
    }
    // Two pools, as two servers would have.
    let other = Arc::new(PgStore::open(&PgConfig::new(&url)).await.unwrap());
    let store = Arc::new(store);
    let poppers: Vec<_> = (0..8)
        .map(|k| {
            let s: Arc<PgStore> = if k % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(v) = s.queue_pop("jobs").await.unwrap() {
                    got.push(v.parse::<u32>().unwrap());
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for p in poppers {
        all.extend(p.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<u32>>());
    assert_eq!(store.queue_pop("jobs").await.unwrap(), None);
}

/// Nodes whose indexed `data` paths are not one string reached through objects
/// (an array on the way, a number) are answered exactly all the same.
#[tokio::test]
async fn irregular_data_values_are_still_matched_exactly() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let model = NaiveStore::new();
    let t = Timestamp::now();
    let mut nodes = Vec::new();
    for (i, data) in [
        serde_json::json!({"kernel_revision": {"tree": "mainline", "branch": "master"}}),
        serde_json::json!({"kernel_revision": [{"tree": "mainline"}, {"tree": "next"}]}),
        serde_json::json!({"kernel_revision": {"tree": 5}}),
        serde_json::json!({"kernel_revision": {"tree": ["mainline", "stable"]}}),
        serde_json::json!({"kernel_revision": "mainline"}),
        serde_json::json!({"arch": "x86_64"}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut n = Node::new("kbuild", &format!("n{i}"), t);
        n.data = data.as_object().cloned();
        nodes.push(n);
    }
    for s in [&store as &dyn Store, &model] {
        s.insert_nodes(&nodes).await.unwrap();
    }
    for q in [
        "data.kernel_revision.tree=mainline",
        "data.kernel_revision.tree=null",
        "data.kernel_revision.tree__ne=mainline",
        "data.kernel_revision.tree__in=next,stable",
        "data.kernel_revision.tree__gt=m",
        "data.kernel_revision.tree__int=5",
        "data.kernel_revision.tree__re=^main",
        "kind=kbuild&sort=data.kernel_revision.tree",
        "kind=kbuild&sort=-data.kernel_revision.tree&limit=2&offset=1",
        "data.arch=x86_64&data.kernel_revision.tree=null",
    ] {
        let q = Query::parse_str(q, Mode::Page).unwrap();
        let want = model.find_page(&q).await.unwrap();
        let got = store.find_page(&q).await.unwrap();
        let ids = |v: &[Node]| v.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&got.items), ids(&want.items), "{q}");
        assert_eq!(got.total, want.total, "{q}");
    }
    // With only regular rows, the same queries are answered by the engine alone.
    let plan = store
        .explain(&Query::parse_str("data.kernel_revision.tree=mainline", Mode::Page).unwrap())
        .await
        .unwrap();
    assert!(plan.contains("residual: matches() in Rust"), "{plan}");
}

#[tokio::test]
async fn regular_data_paths_are_answered_by_the_expression_indexes() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let mut n = Node::new("kbuild", "k", Timestamp::now());
    n.data = serde_json::json!({"kernel_revision": {"tree": "mainline"}})
        .as_object()
        .cloned();
    store.insert_node(&n).await.unwrap();
    let q = Query::parse_str(
        "kind=kbuild&data.kernel_revision.tree=mainline&sort=-created",
        Mode::Page,
    )
    .unwrap();
    let plan = store.explain(&q).await.unwrap();
    assert!(plan.starts_with("residual: none; sort: SQL"), "{plan}");
    assert_eq!(store.find_page(&q).await.unwrap().total, 1);
}

#[tokio::test]
async fn text_postgres_cannot_store_is_a_client_error() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let n = Node::new("checkout", "bad\u{0}name", Timestamp::now());
    let err = store.insert_node(&n).await.unwrap_err();
    assert!(matches!(err, kernelci_core::Error::Invalid(_)), "{err:?}");
    let mut n = Node::new("checkout", "ok", Timestamp::now());
    n.data = serde_json::json!({"x": "nul\u{0}inside"})
        .as_object()
        .cloned();
    let err = store.insert_node(&n).await.unwrap_err();
    assert!(matches!(err, kernelci_core::Error::Invalid(_)), "{err:?}");
    assert_eq!(store.count_all_nodes().await.unwrap(), 0);
    // KV and queue text is kept byte for byte, NUL included.
    store.kv_set("ns\u{0}", "k\u{0}", "a\u{0}b").await.unwrap();
    assert_eq!(
        store.kv_get("ns\u{0}", "k\u{0}").await.unwrap().as_deref(),
        Some("a\u{0}b")
    );
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_not_a_hang() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = PgConfig::new(format!("postgres://kci@127.0.0.1:{port}/nothing"));
    config.connect_timeout = std::time::Duration::from_secs(2);
    let err = PgStore::open(&config).await.err().expect("no server there");
    let text = err.to_string();
    assert!(text.contains("database unavailable"), "{text}");
}

async fn tokio_postgres_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

#[tokio::test]
async fn every_table_is_created_and_every_declared_index_exists() {
    let Some((_store, url)) = fresh().await else {
        return;
    };
    let client = tokio_postgres_client(&url).await;
    let names: BTreeSet<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE tablename = 'kci_nodes'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for def in kernelci_store::INDEXES {
        let name = format!("kci_nodes_ix_{}", def.id);
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
}

/// TLS as managed PostgreSQL services require it: `sslmode=require` (encrypted, the
/// certificate not checked, as libpq), `verify-full` with the CA file, and a wrong CA
/// refused. The cluster accepts TLS connections only.
#[tokio::test]
async fn tls_connections_with_require_and_a_ca_file() {
    let Some(cluster) = TestCluster::start_with_tls() else {
        return;
    };
    let ca = cluster.ca_file().unwrap().to_str().unwrap().to_owned();
    let base = cluster.create_database();
    let name = base.rsplit('/').next().unwrap().to_owned();
    let at = |host: &str, query: &str| {
        format!("postgres://kci@{host}:{}/{name}?{query}", cluster.port())
    };
    let ssl_in_use = |url: String| async move {
        let store = PgStore::open(&PgConfig::new(&url)).await?;
        let n = Node::new("checkout", "tls", Timestamp::now());
        store.insert_node(&n).await.unwrap();
        Ok::<_, kernelci_store::StoreError>(store.get_node(n.id).await.unwrap().is_some())
    };
    assert!(ssl_in_use(at("127.0.0.1", "sslmode=require"))
        .await
        .unwrap());
    assert!(ssl_in_use(at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}")
    ))
    .await
    .unwrap());
    // The server refuses plain connections, so the above really were TLS.
    let err = PgStore::open(&PgConfig::new(at("127.0.0.1", "sslmode=disable")))
        .await
        .err()
        .expect("plain TCP is refused by this cluster");
    assert!(err.to_string().contains("database"), "{err}");
    // A CA that did not sign the server's certificate is refused.
    let other = tempfile::NamedTempFile::new().unwrap();
    let self_signed = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other-ca",
            "-keyout",
            "/dev/null",
        ])
        .arg("-out")
        .arg(other.path())
        .output()
        .unwrap();
    assert!(self_signed.status.success());
    let wrong = at(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", other.path().display()),
    );
    assert!(PgStore::open(&PgConfig::new(wrong)).await.is_err());
}

/// Large batches go through `COPY`: still all-or-nothing, and a duplicate (stored or
/// within the batch) is a `Conflict` naming it.
#[tokio::test]
async fn bulk_inserts_are_all_or_nothing_and_name_the_duplicate() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let t = Timestamp::now();
    let batch: Vec<Node> = (0..500)
        .map(|i| Node::new("test", &format!("t{i}"), t))
        .collect();
    store.insert_nodes(&batch[..400]).await.unwrap();
    assert_eq!(store.count_all_nodes().await.unwrap(), 400);
    // One already stored among new ones.
    let mut again = batch[400..].to_vec();
    again.push(batch[7].clone());
    let err = store.insert_nodes(&again).await.unwrap_err();
    assert_eq!(
        err,
        kernelci_core::Error::Conflict(format!("Node already exists with id: {}", batch[7].id))
    );
    // One repeated within the batch.
    let mut twice = batch[400..].to_vec();
    twice.push(batch[450].clone());
    let err = store.insert_nodes(&twice).await.unwrap_err();
    assert_eq!(
        err,
        kernelci_core::Error::Conflict(format!("Node already exists with id: {}", batch[450].id))
    );
    assert_eq!(store.count_all_nodes().await.unwrap(), 400);
    store.insert_nodes(&batch[400..]).await.unwrap();
    let q = Query::parse_str("kind=test", Mode::Count).unwrap();
    assert_eq!(store.count_nodes(&q).await.unwrap(), 500);
    assert_eq!(store.count_all_nodes().await.unwrap(), 500);
    assert_eq!(
        store.get_node(batch[499].id).await.unwrap().unwrap().value,
        batch[499]
    );
}

/// The `jobs` lease: one holder at a time, renewed by its holder, taken over once it
/// expires (the database's clock decides).
#[tokio::test]
async fn a_lease_has_one_holder_and_passes_on_when_it_expires() {
    let Some((a, url)) = fresh().await else {
        return;
    };
    let b = PgStore::open(&PgConfig::new(&url)).await.unwrap();
    let ttl = std::time::Duration::from_millis(600);
    assert!(a.acquire_lease("jobs", "server-a", ttl).await.unwrap());
    assert!(!b.acquire_lease("jobs", "server-b", ttl).await.unwrap());
    // Another lease is independent.
    assert!(b.acquire_lease("other", "server-b", ttl).await.unwrap());
    // Renewed by its holder: still not B's after the first ttl.
    tokio::time::sleep(ttl / 2).await;
    assert!(a.acquire_lease("jobs", "server-a", ttl).await.unwrap());
    tokio::time::sleep(ttl / 2).await;
    assert!(!b.acquire_lease("jobs", "server-b", ttl).await.unwrap());
    // A stops renewing: B gets it, and then A no longer has it.
    tokio::time::sleep(ttl + std::time::Duration::from_millis(100)).await;
    assert!(b.acquire_lease("jobs", "server-b", ttl).await.unwrap());
    assert!(!a.acquire_lease("jobs", "server-a", ttl).await.unwrap());
}

fn event(channel: &str) -> kernelci_core::events::NewEvent {
    kernelci_core::events::NewEvent {
        id: kernelci_core::id::ObjectId::new(),
        timestamp: Timestamp::now(),
        channel: channel.into(),
        owner: None,
        data: serde_json::json!({"n": 1}),
    }
}

/// `wait_events` is woken by an event another store (another server) appended,
/// through NOTIFY. Without a notification the wait would run to its 60 s timeout
/// and return `after`.
#[tokio::test]
async fn event_waits_are_woken_by_appends_of_another_server() {
    let Some((a, url)) = fresh().await else {
        return;
    };
    let b = PgStore::open(&PgConfig::new(&url)).await.unwrap();
    let long = std::time::Duration::from_secs(60);
    // Nothing appended yet: a short wait returns what it was given.
    assert_eq!(
        a.wait_events(0, std::time::Duration::from_millis(300))
            .await
            .unwrap(),
        0
    );
    let a = std::sync::Arc::new(a);
    for round in 1..=3u64 {
        let w = a.clone();
        let wait = tokio::spawn(async move { w.wait_events(round - 1, long).await });
        // Give the wait time to start (and, the first time, to LISTEN): an append
        // before that is still seen, by the re-read after LISTEN.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let e = b.append_event(event("node")).await.unwrap();
        assert_eq!(e.sequence_id, round);
        let woke = tokio::time::timeout(long, wait)
            .await
            .expect("woken before the timeout")
            .unwrap()
            .unwrap();
        assert_eq!(woke, round);
    }
}

/// The store's sessions run at read committed whatever the database's default:
/// concurrent appends (their sequencer runs wait for one lock) all succeed on a
/// database whose default isolation is serializable, which would fail them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_succeed_under_a_serializable_database_default() {
    let Some((_, url)) = fresh().await else {
        return;
    };
    let client = tokio_postgres_client(&url).await;
    client
        .batch_execute(
            "DO $$ BEGIN EXECUTE format(
                 'ALTER DATABASE %I SET default_transaction_isolation = serializable',
                 current_database()); END $$",
        )
        .await
        .unwrap();
    let store = Arc::new(PgStore::open(&PgConfig::new(&url)).await.unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    store.append_event(event("node")).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.last_event_sequence().await.unwrap(), 320);
}

/// A node write and its event are one transaction: an event PostgreSQL refuses
/// (here a NUL character in its owner) leaves no node either, and a refused node
/// write leaves no event. (Two separate writes would have stored the node.)
#[tokio::test]
async fn a_node_and_its_event_are_written_together_or_not_at_all() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let now = Timestamp::now();
    let node = Node::new("checkout", "atomic", now);
    // A raw NUL in a text column (JSON data would carry it escaped).
    let mut bad = event("node");
    bad.owner = Some("nul \u{0}".into());
    let r = store.insert_node_with_event(&node, bad.clone()).await;
    assert!(matches!(r, Err(kernelci_core::Error::Invalid(_))), "{r:?}");
    assert!(store.get_node(node.id).await.unwrap().is_none());

    store.insert_node(&node).await.unwrap();
    let stored = store.get_node(node.id).await.unwrap().unwrap();
    let mut done = node.clone();
    done.state = kernelci_core::node::State::Done;
    let r = store
        .replace_node_with_event(&done, stored.version, bad)
        .await;
    assert!(matches!(r, Err(kernelci_core::Error::Invalid(_))), "{r:?}");
    assert_eq!(store.get_node(node.id).await.unwrap().unwrap(), stored);
    assert_eq!(store.last_event_sequence().await.unwrap(), 0);
    let problems = store.verify_counts().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

/// An event committed but never numbered (its writer's sequencer call failed, or
/// it went away) is numbered by the listening connection's periodic sequencer run,
/// and the waiting listeners are woken, with no other append.
#[tokio::test]
async fn a_committed_event_left_unnumbered_is_numbered_anyway() {
    let Some((store, url)) = fresh().await else {
        return;
    };
    // Starts the listening connection.
    store
        .wait_events(0, std::time::Duration::from_millis(300))
        .await
        .unwrap();
    let client = tokio_postgres_client(&url).await;
    client
        .execute(
            "INSERT INTO kci_events (id, ts, channel, owner, data)
             VALUES ('\\x000102030405060708090a0b', now(), 'node', NULL, '{}')",
            &[],
        )
        .await
        .unwrap();
    let woke = store
        .wait_events(0, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(woke, 1);
    let events = store.events_after(0, None, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].sequence_id, 1);
}

/// Servers creating the same new durable subscriber at once: exactly one creates
/// it, every other gets the winner's record (so another user's id is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_subscriber_creations_have_one_winner() {
    let Some((a, url)) = fresh().await else {
        return;
    };
    let a = Arc::new(a);
    let b = Arc::new(PgStore::open(&PgConfig::new(&url)).await.unwrap());
    for round in 0..20 {
        let sid = format!("svc-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let state = kernelci_core::store::SubscriberState {
                    subscriber_id: sid.clone(),
                    channel: "node".into(),
                    user: format!("user-{i}"),
                    promiscuous: false,
                    last_event_id: i,
                    created_at: Timestamp::now(),
                    last_poll: None,
                };
                tokio::spawn(async move { (state.clone(), store.create_subscriber(&state).await) })
            })
            .collect();
        let mut winners = Vec::new();
        let mut seen = Vec::new();
        for t in tasks {
            let (state, r) = t.await.unwrap();
            match r.unwrap() {
                None => winners.push(state),
                Some(existing) => seen.push(existing),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        let stored = a.get_subscriber(&sid).await.unwrap().unwrap();
        assert_eq!(stored, winners[0]);
        assert!(seen.iter().all(|s| *s == stored), "round {round}");
    }
}

/// A listening connection killed under a running store comes back: a wait started
/// after the kill is still woken by a later append.
#[tokio::test]
async fn event_notifications_survive_a_killed_listening_connection() {
    let Some((a, url)) = fresh().await else {
        return;
    };
    let b = PgStore::open(&PgConfig::new(&url)).await.unwrap();
    a.wait_events(0, std::time::Duration::from_millis(500))
        .await
        .unwrap();
    let client = tokio_postgres_client(&url).await;
    let killed: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database()
               AND application_name = 'kernelci-server events') k",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "one listening session per store that waited");
    let a = std::sync::Arc::new(a);
    let w = a.clone();
    let wait =
        tokio::spawn(async move { w.wait_events(0, std::time::Duration::from_secs(60)).await });
    // Appended while (or after) the listener reconnects: either the notification or
    // the re-read at reconnection wakes the wait.
    b.append_event(event("node")).await.unwrap();
    let woke = tokio::time::timeout(std::time::Duration::from_secs(60), wait)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(woke, 1);
}

/// Concurrent single-node inserts are written in shared groups: every caller gets
/// its own answer (a duplicate id its `Conflict`, the rest of its group `Ok`), every
/// acknowledged node is stored, and the counters match the rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_inserts_answer_each_caller() {
    let Some((store, _)) = fresh().await else {
        return;
    };
    let store = std::sync::Arc::new(store);
    let taken: Vec<Node> = (0..10)
        .map(|i| Node::new("checkout", &format!("taken-{i}"), Timestamp::now()))
        .collect();
    store.insert_nodes(&taken).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|w| {
            let store = store.clone();
            let taken = taken.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..25 {
                    // Every fifth insert of a writer repeats a stored id.
                    let node = if i % 5 == 4 {
                        taken[(w + i) % taken.len()].clone()
                    } else {
                        let mut n = Node::new("test", &format!("w{w}-{i}"), Timestamp::now());
                        n.state = kernelci_core::node::State::Done;
                        n
                    };
                    let r = store.insert_node(&node).await;
                    out.push((node, r, i % 5 == 4));
                }
                out
            })
        })
        .collect();
    let mut written = 0u64;
    for t in tasks {
        for (node, r, duplicate) in t.await.unwrap() {
            if duplicate {
                assert_eq!(
                    r,
                    Err(kernelci_core::Error::Conflict(format!(
                        "Node already exists with id: {}",
                        node.id
                    )))
                );
            } else {
                r.unwrap();
                written += 1;
                assert_eq!(store.get_node(node.id).await.unwrap().unwrap().value, node);
            }
        }
    }
    assert_eq!(written, 32 * 20);
    let (groups, rows) = store.insert_group_stats();
    assert_eq!(rows, 32 * 25);
    assert!(
        groups < rows,
        "some inserts shared a group: {groups} groups"
    );
    assert_eq!(store.count_all_nodes().await.unwrap(), written + 10);
    let q = Query::parse_str("kind=test&state=done", Mode::Fast).unwrap();
    assert_eq!(store.count_nodes(&q).await.unwrap(), written);
    let problems = store.verify_counts().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

#[tokio::test]
async fn export_import_to_and_from_postgres() {
    use kernelci_store::MemoryStore;
    // memory → PostgreSQL
    let Some((target, _)) = fresh().await else {
        return;
    };
    conformance::export_import(&MemoryStore::new(), &target).await;
    let problems = target.verify_counts().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    // PostgreSQL → memory
    let Some((source, _)) = fresh().await else {
        return;
    };
    let copy = MemoryStore::new();
    conformance::export_import(&source, &copy).await;
    assert!(copy.verify().unwrap().is_clean());
    // PostgreSQL → PostgreSQL, and the model → PostgreSQL
    let (Some((source, _)), Some((target, _))) = (fresh().await, fresh().await) else {
        return;
    };
    conformance::export_import(&source, &target).await;
    assert!(target.verify_counts().await.unwrap().is_empty());
    let Some((target, _)) = fresh().await else {
        return;
    };
    conformance::export_import(&NaiveStore::new(), &target).await;
}

/// A Unix socket (`host=/dir`), with the default `sslmode` and with `disable`: the
/// TLS connector must not refuse a host that is a path.
#[tokio::test]
async fn unix_socket_connections_work() {
    let Some((_store, url)) = fresh().await else {
        return;
    };
    let client = tokio_postgres_client(&url).await;
    let dirs: String = client
        .query_one("SHOW unix_socket_directories", &[])
        .await
        .unwrap()
        .get(0);
    let Some(dir) = dirs.split(',').map(str::trim).find(|d| d.starts_with('/')) else {
        eprintln!("the test cluster listens on no Unix socket; nothing to check");
        return;
    };
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap();
    let db = url.rsplit('/').next().unwrap();
    for mode in ["prefer", "disable"] {
        let conninfo = format!("host={dir} port={port} user=kci dbname={db} sslmode={mode}");
        let store = PgStore::open(&PgConfig::new(&conninfo))
            .await
            .unwrap_or_else(|e| panic!("{conninfo}: {e}"));
        let n = Node::new("checkout", "socket", Timestamp::now());
        store.insert_node(&n).await.unwrap();
        assert!(store.get_node(n.id).await.unwrap().is_some());
    }
}
