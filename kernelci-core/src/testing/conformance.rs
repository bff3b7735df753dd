//! The store conformance suite, written once over `&dyn Store`.
//!
//! Each function checks one area of the [`Store`] contract on an **empty** store and
//! panics (test-style) on the first violation. A backend's test module calls
//! [`run_all`] (or each function with a fresh store). `reopen` variants for durable
//! backends live with those backends.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test utility: failing loudly is the point

use serde_json::json;

use crate::auth::{User, UserGroup};
use crate::error::Error;
use crate::events::{node_event, EventQuery, NodeOp};
use crate::exact::ExactFilter;
use crate::id::{IdGenerator, ObjectId};
use crate::node::{Node, NodeResult, State};
use crate::query::{Mode, Query};
use crate::store::{
    ExportCursor, FieldSet, Record, Section, Store, SubscriberState, SubscriptionRecord,
    TokenPurpose, TokenRecord, Version,
};
use crate::telemetry::{TelemetryEvent, TelemetryQuery};
use crate::time::{parse_query_datetime, Timestamp};

fn t(s: &str) -> Timestamp {
    parse_query_datetime(s).unwrap()
}

fn q(qs: &str, mode: Mode) -> Query {
    Query::parse_str(qs, mode).unwrap()
}

/// Ten nodes: a checkout and nine children of kinds kbuild/test/job, with ids in
/// creation order.
pub fn sample_nodes() -> Vec<Node> {
    let ids = IdGenerator::with_parts([7, 7, 7, 7, 7], 0);
    let t0 = t("2024-01-01");
    let mut checkout = Node::new("checkout", "checkout", t0);
    checkout.id = ids.next_id_at(1_700_000_000);
    checkout.state = State::Available;
    checkout.data = json!({"kernel_revision": {"tree": "mainline"}})
        .as_object()
        .cloned();
    let mut out = vec![checkout.clone()];
    for i in 0..9i64 {
        let kind = ["kbuild", "test", "job"][(i % 3) as usize];
        let mut n = Node::new(kind, &format!("{kind}-{i}"), t0.plus_seconds(i + 1));
        n.id = ids.next_id_at(1_700_000_000 + i as u64 + 1);
        n.parent = Some(checkout.id);
        n.path = vec!["checkout".into(), n.name.clone()];
        n.state = if i < 4 { State::Done } else { State::Running };
        n.result = (i < 4).then_some(NodeResult::Pass);
        n.owner = Some(if i % 2 == 0 { "alice" } else { "bob" }.into());
        n.data = json!({"arch": if i % 2 == 0 { "x86_64" } else { "arm64" }, "n": i})
            .as_object()
            .cloned();
        out.push(n);
    }
    out
}

/// Every check, each on the given store (which must start empty and is left
/// non-empty).
pub async fn run_all(store: &dyn Store) {
    nodes(store).await;
    queries(store).await;
    bulk_and_purge(store).await;
    events(store).await;
    node_writes_with_events(store).await;
    subscribers_and_counters(store).await;
    users_and_groups(store).await;
    tokens_and_kv(store).await;
    telemetry(store).await;
    queues(store).await;
    if store.is_shared() {
        subscriptions(store).await;
    }
    store.flush().await.unwrap();
}

/// Insert, get, versioned replace, conflicts.
pub async fn nodes(store: &dyn Store) {
    let nodes = sample_nodes();
    store.insert_node(&nodes[0]).await.unwrap();
    assert!(matches!(
        store.insert_node(&nodes[0]).await,
        Err(Error::Conflict(_))
    ));
    // All-or-nothing bulk insert: a duplicate inside the batch inserts nothing.
    let dup = vec![nodes[1].clone(), nodes[1].clone()];
    assert!(matches!(
        store.insert_nodes(&dup).await,
        Err(Error::Conflict(_))
    ));
    assert!(store.get_node(nodes[1].id).await.unwrap().is_none());
    store.insert_nodes(&nodes[1..]).await.unwrap();
    assert_eq!(store.count_all_nodes().await.unwrap(), 10);

    let got = store.get_node(nodes[3].id).await.unwrap().unwrap();
    assert_eq!(got.value, nodes[3]);
    assert_eq!(got.version, Version(1));
    let mut changed = got.value.clone();
    changed.result = Some(NodeResult::Fail);
    let v2 = store.replace_node(&changed, got.version).await.unwrap();
    assert!(v2 > got.version);
    assert!(matches!(
        store.replace_node(&changed, got.version).await,
        Err(Error::Conflict(_))
    ));
    changed.result = Some(NodeResult::Pass);
    store.replace_node(&changed, v2).await.unwrap();
    assert_eq!(
        store.get_node(nodes[3].id).await.unwrap().unwrap().value,
        changed
    );
    let ghost = Node::new("test", "ghost", t("2024-01-01"));
    assert!(matches!(
        store.replace_node(&ghost, Version(1)).await,
        Err(Error::NotFound(_))
    ));
    assert!(store.get_node(ghost.id).await.unwrap().is_none());
    // The JSON answer is serde_json's rendering of the stored node, byte for byte
    // (key order included), for every node.
    for n in &nodes {
        let stored = store.get_node(n.id).await.unwrap().unwrap().value;
        let json = store.get_node_json(n.id).await.unwrap().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&json),
            String::from_utf8_lossy(&serde_json::to_vec(&stored).unwrap()),
            "node {}",
            n.name
        );
    }
    assert!(store.get_node_json(ghost.id).await.unwrap().is_none());
}

/// Queries: filters, order, sort, limit/offset, totals, children.
pub async fn queries(store: &dyn Store) {
    let nodes = sample_nodes();
    let names = |ns: Vec<Node>| ns.into_iter().map(|n| n.name).collect::<Vec<_>>();

    let all = store.find_nodes(&q("", Mode::Fast)).await.unwrap();
    assert_eq!(
        all.iter().map(|n| n.id).collect::<Vec<_>>(),
        nodes.iter().map(|n| n.id).collect::<Vec<_>>(),
        "default order is ascending id"
    );

    let page = store
        .find_page(&q("kind=kbuild&limit=2&offset=1", Mode::Page))
        .await
        .unwrap();
    assert_eq!(page.total, 3);
    assert_eq!(names(page.items), ["kbuild-3", "kbuild-6"]);
    let page = store
        .find_page(&q("kind=kbuild&limit=2&offset=10", Mode::Page))
        .await
        .unwrap();
    assert_eq!(
        (page.items.len(), page.total),
        (0, 3),
        "offset beyond the end keeps the total"
    );

    assert_eq!(
        store
            .count_nodes(&q("state=done", Mode::Count))
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store.count_nodes(&q("limit=1", Mode::Count)).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .count_nodes(&q("data.arch=arm64&state__ne=done", Mode::Count))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .count_nodes(&q("parent=null", Mode::Count))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .count_nodes(&q("path=checkout", Mode::Count))
            .await
            .unwrap(),
        10
    );
    assert_eq!(
        store
            .count_nodes(&q(
                "created__gte=2024-01-01T00:00:05&created__lt=2024-01-01T00:00:08",
                Mode::Count
            ))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        store
            .count_nodes(&q("data.n__gt=6", Mode::Count))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .count_nodes(&q("name__re=^test-", Mode::Count))
            .await
            .unwrap(),
        3
    );

    let newest = store
        .find_nodes(&q("sort=-created&limit=3", Mode::Page))
        .await
        .unwrap();
    assert_eq!(names(newest), ["job-8", "test-7", "kbuild-6"]);
    let by_name = store
        .find_nodes(&q("kind=job&sort=name", Mode::Fast))
        .await
        .unwrap();
    assert_eq!(names(by_name), ["job-2", "job-5", "job-8"]);
    let fast = store
        .find_nodes(&q("owner=alice&offset=3&limit=1", Mode::Fast))
        .await
        .unwrap();
    assert_eq!(names(fast), ["kbuild-6"]);

    let children = store.children(nodes[0].id).await.unwrap();
    assert_eq!(children.len(), 9);
    assert!(children.windows(2).all(|w| w[0].id < w[1].id));
    let summary = store.descendants_summary(nodes[0].id).await.unwrap();
    assert_eq!((summary.total, summary.done), (9, 4));
    assert_eq!(
        store.descendants_summary(nodes[5].id).await.unwrap().total,
        0
    );
    // Grandchildren count too.
    let mut grandchild = Node::new("test", "grandchild", t("2024-01-01T00:01:00"));
    grandchild.parent = Some(nodes[5].id);
    store.insert_node(&grandchild).await.unwrap();
    assert_eq!(
        store.descendants_summary(nodes[5].id).await.unwrap(),
        crate::state::ChildrenSummary { total: 1, done: 0 }
    );
    let summary = store.descendants_summary(nodes[0].id).await.unwrap();
    assert_eq!((summary.total, summary.done), (10, 4));
    assert_eq!(
        store.children(nodes[0].id).await.unwrap().len(),
        9,
        "children are direct only"
    );
    // A parent cycle (a -> b -> a) terminates and counts each node once.
    let mut a = Node::new("test", "cycle-a", t("2024-01-01T00:02:00"));
    let mut b = Node::new("test", "cycle-b", t("2024-01-01T00:02:01"));
    a.parent = Some(b.id);
    b.parent = Some(a.id);
    store.insert_nodes(&[a.clone(), b.clone()]).await.unwrap();
    assert_eq!(store.descendants_summary(a.id).await.unwrap().total, 1);
}

/// Bulk field set and purge by age.
pub async fn bulk_and_purge(store: &dyn Store) {
    let nodes = sample_nodes();
    let now = t("2024-02-01");
    let ids = vec![nodes[1].id, nodes[2].id, ObjectId::new()];
    let changed = store
        .set_field_many(&ids, FieldSet::ProcessedByKcidbBridge(true), now)
        .await
        .unwrap();
    assert_eq!(changed, 2, "unknown ids are skipped");
    let n1 = store.get_node(nodes[1].id).await.unwrap().unwrap();
    assert!(n1.value.processed_by_kcidb_bridge);
    assert_eq!(n1.value.updated, now);
    assert_eq!(
        store
            .count_nodes(&q("processed_by_kcidb_bridge=true", Mode::Count))
            .await
            .unwrap(),
        2
    );

    // Purge: created before 00:00:03, checkouts kept, oldest first, at most `max`.
    let deleted = store
        .delete_nodes_created_before(t("2024-01-01T00:00:03"), &["checkout"], 1)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(store.get_node(nodes[1].id).await.unwrap().is_none());
    let deleted = store
        .delete_nodes_created_before(t("2024-01-01T00:00:03"), &["checkout"], 100)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert!(
        store.get_node(nodes[0].id).await.unwrap().is_some(),
        "checkouts are kept"
    );
    assert_eq!(store.count_all_nodes().await.unwrap(), 11);
    assert_eq!(
        store
            .count_nodes(&q("kind=kbuild", Mode::Count))
            .await
            .unwrap(),
        2,
        "counts follow deletions"
    );
}

/// The event log.
pub async fn events(store: &dyn Store) {
    let before = store.last_event_sequence().await.unwrap();
    let mut n = Node::new("kbuild", "k", t("2024-03-01"));
    n.owner = Some("alice".into());
    let e1 = store
        .append_event(node_event(
            &n,
            NodeOp::Created,
            false,
            t("2024-03-01T00:00:01"),
        ))
        .await
        .unwrap();
    let e2 = store
        .append_event(node_event(
            &n,
            NodeOp::Updated {
                previous_state: State::Running,
                previous_result: None,
            },
            false,
            t("2024-03-01T00:00:02"),
        ))
        .await
        .unwrap();
    let mut other = node_event(&n, NodeOp::Created, false, t("2024-03-01T00:00:03"));
    other.channel = "other".into();
    other.data = json!("raw");
    let e3 = store.append_event(other).await.unwrap();
    assert_eq!(
        (e1.sequence_id, e2.sequence_id, e3.sequence_id),
        (before + 1, before + 2, before + 3)
    );
    assert_eq!(store.last_event_sequence().await.unwrap(), before + 3);

    let after = store.events_after(before, None, 10).await.unwrap();
    assert_eq!(
        after.iter().map(|e| e.sequence_id).collect::<Vec<_>>(),
        [before + 1, before + 2, before + 3]
    );
    assert_eq!(
        store
            .events_after(before, Some("node"), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.events_after(before, None, 1).await.unwrap(),
        vec![e1.clone()]
    );

    let pairs = |qs: &str| {
        form_urlencoded::parse(qs.as_bytes())
            .into_owned()
            .collect::<Vec<_>>()
    };
    let found = store
        .find_events(&EventQuery::parse(&pairs("op=updated&kind=kbuild")).unwrap())
        .await
        .unwrap();
    assert_eq!(found, vec![e2.clone()]);
    let found = store
        .find_events(&EventQuery::parse(&pairs("channel=node&offset=1&limit=5")).unwrap())
        .await
        .unwrap();
    assert_eq!(found, vec![e2.clone()]);
    let found = store
        .find_events(&EventQuery::parse(&pairs(&format!("ids={},{}", e1.id, e3.id))).unwrap())
        .await
        .unwrap();
    assert_eq!(found, vec![e1.clone(), e3.clone()]);

    assert_eq!(
        store.trim_events(t("2024-03-01T00:00:02")).await.unwrap(),
        1
    );
    let e4 = store
        .append_event(node_event(&n, NodeOp::Created, false, t("2024-03-02")))
        .await
        .unwrap();
    assert_eq!(
        e4.sequence_id,
        before + 4,
        "sequence ids are never reused after a trim"
    );
}

/// Durable subscribers and counters.
pub async fn subscribers_and_counters(store: &dyn Store) {
    let s = SubscriberState {
        subscriber_id: "pipeline-1".into(),
        channel: "node".into(),
        user: "alice".into(),
        promiscuous: false,
        last_event_id: 5,
        created_at: t("2024-01-01"),
        last_poll: None,
    };
    store.put_subscriber(&s).await.unwrap();
    store
        .advance_subscriber("pipeline-1", 9, t("2024-01-02"))
        .await
        .unwrap();
    store
        .advance_subscriber("pipeline-1", 7, t("2024-01-03"))
        .await
        .unwrap();
    let got = store.get_subscriber("pipeline-1").await.unwrap().unwrap();
    assert_eq!(got.last_event_id, 9, "max semantics");
    assert_eq!(got.last_poll, Some(t("2024-01-03")));
    assert!(matches!(
        store.advance_subscriber("nope", 1, t("2024-01-01")).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(store.list_subscribers().await.unwrap().len(), 1);
    assert!(store.delete_subscriber("pipeline-1").await.unwrap());
    assert!(!store.delete_subscriber("pipeline-1").await.unwrap());
    assert!(store.get_subscriber("pipeline-1").await.unwrap().is_none());

    // Create-if-absent: the first creation wins, a later one gets its record.
    let mine = SubscriberState {
        subscriber_id: "pipeline-2".into(),
        ..s.clone()
    };
    assert_eq!(store.create_subscriber(&mine).await.unwrap(), None);
    let theirs = SubscriberState {
        user: "bob".into(),
        last_event_id: 99,
        ..mine.clone()
    };
    assert_eq!(
        store.create_subscriber(&theirs).await.unwrap(),
        Some(mine.clone())
    );
    assert_eq!(
        store.get_subscriber("pipeline-2").await.unwrap(),
        Some(mine)
    );
    assert!(store.delete_subscriber("pipeline-2").await.unwrap());

    assert_eq!(store.next_counter("subscription").await.unwrap(), 1);
    assert_eq!(store.next_counter("subscription").await.unwrap(), 2);
    assert_eq!(store.next_counter("other").await.unwrap(), 1);
}

/// A node write with its event: both stored, the event numbered next; a refused
/// write (duplicate id, stale version, missing node) appends no event. A
/// submission of several nodes is all or nothing.
pub async fn node_writes_with_events(store: &dyn Store) {
    let before = store.last_event_sequence().await.unwrap();
    let now = t("2024-04-01");
    let mut n = Node::new("checkout", "with-event", now);
    n.owner = Some("alice".into());
    let created = store
        .insert_node_with_event(&n, node_event(&n, NodeOp::Created, false, now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.sequence_id, before + 1);
    assert_eq!(created.owner.as_deref(), Some("alice"));
    let stored = store.get_node(n.id).await.unwrap().unwrap();
    assert_eq!(stored.value, n);

    let again = store
        .insert_node_with_event(&n, node_event(&n, NodeOp::Created, false, now))
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");

    let mut done = n.clone();
    done.state = State::Done;
    let op = NodeOp::Updated {
        previous_state: State::Running,
        previous_result: None,
    };
    let (version, updated) = store
        .replace_node_with_event(&done, stored.version, node_event(&done, op, false, now))
        .await
        .unwrap();
    assert!(version > stored.version);
    let updated = updated.unwrap();
    assert_eq!(updated.sequence_id, before + 2);
    assert_eq!(updated.data["state"], "done");
    let stale = store
        .replace_node_with_event(&done, stored.version, node_event(&done, op, false, now))
        .await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");
    let missing = Node::new("checkout", "missing", now);
    let gone = store
        .replace_node_with_event(&missing, Version(1), node_event(&missing, op, false, now))
        .await;
    assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");

    assert_eq!(store.last_event_sequence().await.unwrap(), before + 2);
    let logged = store.events_after(before, None, 10).await.unwrap();
    assert_eq!(logged, [created, updated]);

    // A submission: the root replaced, two new children, one event; all or nothing.
    let root = store.get_node(n.id).await.unwrap().unwrap();
    let mut root_done = root.value.clone();
    root_done.result = Some(NodeResult::Pass);
    let mut kids: Vec<Node> = (0..2)
        .map(|i| {
            let mut k = Node::new("test", &format!("kid-{i}"), now);
            k.parent = Some(n.id);
            k
        })
        .collect();
    let total = store.count_all_nodes().await.unwrap();
    // Refused, nothing written: a stale root version; a new id that exists; an id
    // written twice; a replaced node that is gone.
    let refusals: Vec<Vec<(&Node, Option<Version>)>> = vec![
        vec![(&root_done, Some(stored.version)), (&kids[0], None)],
        vec![
            (&root_done, Some(root.version)),
            (&kids[0], None),
            (&n, None),
        ],
        vec![
            (&root_done, Some(root.version)),
            (&kids[0], None),
            (&kids[0], None),
        ],
        vec![
            (&root_done, Some(root.version)),
            (&kids[0], None),
            (&missing, Some(Version(1))),
        ],
    ];
    for (i, writes) in refusals.iter().enumerate() {
        let r = store
            .write_nodes_with_event(writes, node_event(&root_done, op, true, now))
            .await;
        let expected_not_found = i == 3;
        match r {
            Err(Error::Conflict(_)) if !expected_not_found => {}
            Err(Error::NotFound(_)) if expected_not_found => {}
            other => panic!("refusal {i}: {other:?}"),
        }
        assert_eq!(store.count_all_nodes().await.unwrap(), total, "refusal {i}");
        assert_eq!(
            store.get_node(n.id).await.unwrap().unwrap(),
            root,
            "refusal {i}"
        );
        assert_eq!(store.last_event_sequence().await.unwrap(), before + 2);
    }
    kids[1].owner = Some("alice".into());
    let writes: Vec<(&Node, Option<Version>)> = vec![
        (&root_done, Some(root.version)),
        (&kids[0], None),
        (&kids[1], None),
    ];
    let (versions, logged) = store
        .write_nodes_with_event(&writes, node_event(&root_done, op, true, now))
        .await
        .unwrap();
    let event = logged.unwrap();
    assert_eq!(event.sequence_id, before + 3);
    assert_eq!(event.data["is_hierarchy"], true);
    assert_eq!(versions[1..], [Version(1), Version(1)]);
    let root_after = store.get_node(n.id).await.unwrap().unwrap();
    assert_eq!(
        (root_after.value, root_after.version),
        (root_done.clone(), versions[0])
    );
    assert!(versions[0] > root.version);
    assert_eq!(store.count_all_nodes().await.unwrap(), total + 2);
    assert_eq!(store.children(n.id).await.unwrap(), kids);
    let counted = store
        .count_nodes(&q(&format!("parent={}&kind=test", n.id), Mode::Fast))
        .await
        .unwrap();
    assert_eq!(counted, 2);
}

/// The subscription registry of a shared store: put, get, compare-and-set of the
/// position, idle removal, delete.
pub async fn subscriptions(store: &dyn Store) {
    let rec = |id: u64, last_poll: Option<Timestamp>| SubscriptionRecord {
        id,
        channel: "node".into(),
        user: "alice".into(),
        promiscuous: id % 2 == 0,
        subscriber_id: (id == 3).then(|| "pipeline-3".to_owned()),
        created: t("2024-01-01"),
        last_poll,
        position: 10,
    };
    for id in [3, 1, 2] {
        store.put_subscription(&rec(id, None)).await.unwrap();
    }
    assert_eq!(store.get_subscription(3).await.unwrap(), Some(rec(3, None)));
    assert_eq!(store.get_subscription(9).await.unwrap(), None);
    let ids: Vec<u64> = store
        .list_subscriptions()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [1, 2, 3], "by id");

    let now = t("2024-01-02");
    assert!(store.advance_subscription(1, 10, 12, now).await.unwrap());
    assert!(
        !store.advance_subscription(1, 10, 15, now).await.unwrap(),
        "a stale position does not move it"
    );
    let got = store.get_subscription(1).await.unwrap().unwrap();
    assert_eq!((got.position, got.last_poll), (12, Some(now)));
    assert!(matches!(
        store.advance_subscription(9, 0, 1, now).await,
        Err(Error::NotFound(_))
    ));

    store
        .put_subscription(&rec(2, Some(t("2024-01-05"))))
        .await
        .unwrap();
    // 1 was polled on 01-02, 2 on 01-05, 3 never.
    assert_eq!(
        store
            .delete_idle_subscriptions(t("2024-01-03"))
            .await
            .unwrap(),
        1
    );
    assert!(store.get_subscription(1).await.unwrap().is_none());
    assert!(
        store.get_subscription(3).await.unwrap().is_some(),
        "never polled: kept"
    );
    assert!(store.delete_subscription(2).await.unwrap());
    assert!(!store.delete_subscription(2).await.unwrap());
    assert!(store.delete_subscription(3).await.unwrap());
    assert!(store.list_subscriptions().await.unwrap().is_empty());
}

fn user(name: &str, groups: Vec<UserGroup>) -> User {
    User {
        id: ObjectId::new(),
        username: name.into(),
        email: format!("{name}@example.org"),
        hashed_password: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA".into(),
        is_active: true,
        is_superuser: false,
        is_verified: true,
        groups,
    }
}

/// Users and groups.
pub async fn users_and_groups(store: &dyn Store) {
    let g = UserGroup {
        id: ObjectId::new(),
        name: "kernelci".into(),
    };
    store.insert_group(&g).await.unwrap();
    assert!(matches!(
        store
            .insert_group(&UserGroup {
                id: ObjectId::new(),
                name: "kernelci".into()
            })
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.get_group_by_name("kernelci").await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(store.get_group(g.id).await.unwrap(), Some(g.clone()));

    let alice = user("alice", vec![g.clone()]);
    let bob = user("bob", vec![]);
    store.insert_user(&alice).await.unwrap();
    store.insert_user(&bob).await.unwrap();
    let mut clash = user("alice", vec![]);
    assert!(matches!(
        store.insert_user(&clash).await,
        Err(Error::Conflict(_))
    ));
    clash.username = "carol".into();
    clash.email = "bob@example.org".into();
    assert!(matches!(
        store.insert_user(&clash).await,
        Err(Error::Conflict(_))
    ));

    assert_eq!(store.get_user(alice.id).await.unwrap(), Some(alice.clone()));
    assert_eq!(
        store.get_user_by_username("bob").await.unwrap(),
        Some(bob.clone())
    );
    assert_eq!(
        store.get_user_by_email("alice@example.org").await.unwrap(),
        Some(alice.clone())
    );

    let mut renamed = bob.clone();
    renamed.username = "alice".into();
    assert!(matches!(
        store.update_user(&renamed).await,
        Err(Error::Conflict(_))
    ));
    renamed.username = "robert".into();
    store.update_user(&renamed).await.unwrap();
    assert!(store.get_user_by_username("bob").await.unwrap().is_none());
    assert_eq!(
        store.get_user_by_username("robert").await.unwrap(),
        Some(renamed.clone())
    );
    assert!(matches!(
        store.update_user(&user("ghost", vec![])).await,
        Err(Error::NotFound(_))
    ));

    // Compare-and-swap: written only over the record the caller read.
    let read = store.get_user(renamed.id).await.unwrap().unwrap();
    let mut deactivated = read.clone();
    deactivated.is_active = false;
    assert!(store.replace_user(&read, &deactivated).await.unwrap());
    let mut stale = read.clone();
    stale.hashed_password = "written over a stale read".into();
    assert!(
        !store.replace_user(&read, &stale).await.unwrap(),
        "a record changed since it was read is not replaced"
    );
    assert_eq!(
        store.get_user(read.id).await.unwrap(),
        Some(deactivated.clone())
    );
    let mut taken = deactivated.clone();
    taken.email = "alice@example.org".into();
    assert!(matches!(
        store.replace_user(&deactivated, &taken).await,
        Err(Error::Conflict(_))
    ));
    let ghost = user("ghost", vec![]);
    assert!(matches!(
        store.replace_user(&ghost, &ghost).await,
        Err(Error::NotFound(_))
    ));
    let mut renamed = deactivated.clone();
    renamed.is_active = true;
    renamed.username = "rob".into();
    assert!(store.replace_user(&deactivated, &renamed).await.unwrap());
    assert!(store
        .get_user_by_username("robert")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.get_user_by_username("rob").await.unwrap(),
        Some(renamed.clone())
    );

    let pairs = |qs: &str| {
        form_urlencoded::parse(qs.as_bytes())
            .into_owned()
            .collect::<Vec<_>>()
    };
    let f = ExactFilter::from_pairs(&pairs("groups.name=kernelci"), &[]).unwrap();
    let page = store.find_users(&f, 10, 0).await.unwrap();
    assert_eq!((page.total, page.items[0].username.as_str()), (1, "alice"));
    let page = store
        .find_users(&ExactFilter::default(), 1, 1)
        .await
        .unwrap();
    assert_eq!((page.total, page.items.len()), (2, 1));
    let groups = store
        .find_groups(
            &ExactFilter::from_pairs(&pairs("name=kernelci"), &[]).unwrap(),
            10,
            0,
        )
        .await
        .unwrap();
    assert_eq!(groups.items, vec![g.clone()]);

    assert!(
        matches!(store.delete_group(g.id).await, Err(Error::Conflict(_))),
        "group in use"
    );
    assert!(store.delete_user(alice.id).await.unwrap());
    assert!(!store.delete_user(alice.id).await.unwrap());
    assert!(store.delete_group(g.id).await.unwrap());
    assert!(!store.delete_group(g.id).await.unwrap());
}

/// Single-use tokens and the key/value store.
pub async fn tokens_and_kv(store: &dyn Store) {
    let tok = TokenRecord {
        id: "tok-1".into(),
        purpose: TokenPurpose::Invite,
        user_id: ObjectId::new(),
        expires: t("2024-01-02"),
        used: false,
    };
    store.put_token(&tok).await.unwrap();
    assert_eq!(store.get_token("tok-1").await.unwrap(), Some(tok.clone()));
    assert!(
        store
            .consume_token("tok-1", t("2024-01-03"))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    let got = store
        .consume_token("tok-1", t("2024-01-01"))
        .await
        .unwrap()
        .unwrap();
    assert!(got.used);
    assert!(
        store
            .consume_token("tok-1", t("2024-01-01"))
            .await
            .unwrap()
            .is_none(),
        "single use"
    );
    assert!(store
        .consume_token("nope", t("2024-01-01"))
        .await
        .unwrap()
        .is_none());

    assert_eq!(store.kv_get("ns", "k").await.unwrap(), None);
    store.kv_set("ns", "k", "v1").await.unwrap();
    store.kv_set("ns", "k", "v2").await.unwrap();
    store.kv_set("other", "k", "x").await.unwrap();
    assert_eq!(
        store.kv_get("ns", "k").await.unwrap().as_deref(),
        Some("v2")
    );
    assert!(store.kv_delete("ns", "k").await.unwrap());
    assert!(!store.kv_delete("ns", "k").await.unwrap());
    assert_eq!(
        store.kv_get("other", "k").await.unwrap().as_deref(),
        Some("x")
    );
}

/// Six telemetry events with increasing ids; their `ts` (given by the "client") are
/// deliberately not in id order: `ts` = 2024-06-01 + (5, 1, 4, 2, 3, 0) hours.
pub fn sample_telemetry() -> Vec<TelemetryEvent> {
    let ids = IdGenerator::with_parts([9, 9, 9, 9, 9], 0);
    let hours: [i64; 6] = [5, 1, 4, 2, 3, 0];
    hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let body = json!({
                "kind": if i % 2 == 0 { "job_result" } else { "runtime_error" },
                "runtime": if i < 3 { "lab-a" } else { "lab-b" },
                "device_type": "qemu",
                "result": if i % 3 == 0 { "fail" } else { "pass" },
                "is_infra_error": i == 4,
                "ts": t("2024-06-01").plus_seconds(h * 3600).to_string(),
                "extra": {"n": i},
            });
            TelemetryEvent::from_json(
                &body,
                ids.next_id_at(1_700_000_000 + i as u64),
                t("2024-06-01"),
            )
            .unwrap()
        })
        .collect()
}

/// Telemetry: all-or-nothing insert, pages by id, totals, `ts` bounds, filters, trim.
pub async fn telemetry(store: &dyn Store) {
    let events = sample_telemetry();
    let pairs = |qs: &str| {
        form_urlencoded::parse(qs.as_bytes())
            .into_owned()
            .collect::<Vec<_>>()
    };
    let query = |qs: &str, limit: u64, offset: u64| {
        TelemetryQuery::parse(&pairs(qs), limit, offset).unwrap()
    };
    let ns = |items: &[TelemetryEvent]| {
        items
            .iter()
            .map(|e| e.extra["n"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };

    assert_eq!(
        store.find_telemetry(&query("", 50, 0)).await.unwrap().total,
        0
    );
    // A repeated id inserts nothing; neither does an id already stored.
    let dup = vec![events[0].clone(), events[1].clone(), events[0].clone()];
    assert!(matches!(
        store.insert_telemetry(&dup).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.find_telemetry(&query("", 50, 0)).await.unwrap().total,
        0
    );
    store.insert_telemetry(&events[..2]).await.unwrap();
    assert!(matches!(
        store.insert_telemetry(&events[1..3]).await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(
        store.find_telemetry(&query("", 50, 0)).await.unwrap().total,
        2
    );
    store.insert_telemetry(&events[2..]).await.unwrap();
    store.insert_telemetry(&[]).await.unwrap();

    // Pages in id order, whatever the `ts`; the total ignores limit and offset.
    let all = store.find_telemetry(&query("", 50, 0)).await.unwrap();
    assert_eq!(all.items, events);
    let page = store.find_telemetry(&query("", 2, 3)).await.unwrap();
    assert_eq!((ns(&page.items), page.total), (vec![3, 4], 6));
    let page = store.find_telemetry(&query("", 10, 10)).await.unwrap();
    assert_eq!((page.items.len(), page.total), (0, 6));

    // `ts` bounds are inclusive and look at `ts`, not at the id.
    let page = store
        .find_telemetry(&query(
            "since=2024-06-01T01:00:00&until=2024-06-01T04:00:00",
            50,
            0,
        ))
        .await
        .unwrap();
    assert_eq!((ns(&page.items), page.total), (vec![1, 2, 3, 4], 4));
    let page = store
        .find_telemetry(&query(
            "since=2024-06-01T01:00:00&until=2024-06-01T04:00:00&runtime=lab-a",
            1,
            1,
        ))
        .await
        .unwrap();
    assert_eq!((ns(&page.items), page.total), (vec![2], 2));
    let page = store
        .find_telemetry(&query("until=2024-06-01T00:59:59.999", 50, 0))
        .await
        .unwrap();
    assert_eq!(ns(&page.items), vec![5]);
    // Exact filters, booleans converted, nested keys.
    let page = store
        .find_telemetry(&query("is_infra_error=true", 50, 0))
        .await
        .unwrap();
    assert_eq!(ns(&page.items), vec![4]);
    let page = store
        .find_telemetry(&query("kind=job_result&result=fail", 50, 0))
        .await
        .unwrap();
    assert_eq!(ns(&page.items), vec![0]);
    let page = store
        .find_telemetry(&query(&format!("id={}", events[3].id), 50, 0))
        .await
        .unwrap();
    assert_eq!(ns(&page.items), vec![3]);

    // The scan of the reports.
    let f = |qs: &str| ExactFilter::from_pairs(&pairs(qs), &[]).unwrap();
    let got = store
        .scan_telemetry(Some(t("2024-06-01T02:00:00")), None, &f(""))
        .await
        .unwrap();
    assert_eq!(ns(&got), vec![0, 2, 3, 4]);
    let got = store
        .scan_telemetry(None, Some(t("2024-06-01T02:00:00")), &f("runtime=lab-b"))
        .await
        .unwrap();
    assert_eq!(ns(&got), vec![3, 5]);
    let got = store.scan_telemetry(None, None, &f("")).await.unwrap();
    assert_eq!(got, events);
    let got = store
        .scan_telemetry(Some(t("2024-06-02")), Some(t("2024-06-01")), &f(""))
        .await
        .unwrap();
    assert!(got.is_empty(), "inverted bounds match nothing");

    // Trim by `ts`: strictly before.
    assert_eq!(
        store
            .trim_telemetry(t("2024-06-01T02:00:00"))
            .await
            .unwrap(),
        2
    );
    let all = store.find_telemetry(&query("", 50, 0)).await.unwrap();
    assert_eq!((ns(&all.items), all.total), (vec![0, 2, 3, 4], 4));
    assert_eq!(
        store
            .trim_telemetry(t("2024-06-01T02:00:00"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.trim_telemetry(t("2030-01-01")).await.unwrap(), 4);
    assert_eq!(
        store.find_telemetry(&query("", 50, 0)).await.unwrap().total,
        0
    );
    // Trimmed ids are free again (nothing is left behind).
    store.insert_telemetry(&events[..1]).await.unwrap();
    assert_eq!(
        store.scan_telemetry(None, None, &f("")).await.unwrap(),
        events[..1].to_vec()
    );
}

/// FIFO queues: order, pushes after pops, names kept apart (also names that are
/// prefixes of each other), empty and never-used queues, values kept byte for byte.
pub async fn queues(store: &dyn Store) {
    let pop = |name: &'static str| async move { store.queue_pop(name).await.unwrap() };
    assert_eq!(pop("jobs").await, None, "a never-used queue is empty");
    for v in ["a", "b", "c"] {
        store.queue_push("jobs", v).await.unwrap();
    }
    store.queue_push("job", "short name").await.unwrap();
    store.queue_push("jobs\0", "nul in the name").await.unwrap();
    store.queue_push("jobsx", "longer name").await.unwrap();
    store.queue_push("", "empty name").await.unwrap();
    assert_eq!(pop("jobs").await.as_deref(), Some("a"));
    store.queue_push("jobs", "d").await.unwrap();
    for want in ["b", "c", "d"] {
        assert_eq!(pop("jobs").await.as_deref(), Some(want));
    }
    assert_eq!(pop("jobs").await, None);
    assert_eq!(pop("job").await.as_deref(), Some("short name"));
    assert_eq!(pop("jobs\0").await.as_deref(), Some("nul in the name"));
    assert_eq!(pop("jobsx").await.as_deref(), Some("longer name"));
    assert_eq!(pop("").await.as_deref(), Some("empty name"));
    for name in ["job", "jobs\0", "jobsx", ""] {
        assert_eq!(pop(name).await, None, "{name:?}");
    }
    // An emptied queue is used again in order; values are returned unchanged.
    let values = ["", "{\"data\": \"\\u00e9\"}", "é 🦀", "e"];
    for v in values {
        store.queue_push("jobs", v).await.unwrap();
    }
    for v in values {
        assert_eq!(pop("jobs").await.as_deref(), Some(v));
    }
    assert_eq!(pop("jobs").await, None);
    // Left non-empty for the durable backends' reopen checks.
    store.queue_push("left", "1").await.unwrap();
    store.queue_push("left", "2").await.unwrap();
}

/// Fills `store` (empty) with every kind of record through the normal API: the whole
/// suite ([`run_all`]), then a queue whose head was popped, a second counter, a
/// trimmed event (so the sequence mark is above the last stored event), a
/// subscriber and a KV pair more.
pub async fn fill_every_section(store: &dyn Store) {
    run_all(store).await;
    for v in ["a", "b", "c"] {
        store.queue_push("partly", v).await.unwrap();
    }
    assert_eq!(
        store.queue_pop("partly").await.unwrap().as_deref(),
        Some("a")
    );
    store.next_counter("other").await.unwrap();
    store.kv_set("ns\0x", "key", "nul").await.unwrap();
    let g = UserGroup {
        id: ObjectId::new(),
        name: "copied".into(),
    };
    store.insert_group(&g).await.unwrap();
    store.insert_user(&user("dora", vec![g])).await.unwrap();
    store
        .put_subscriber(&SubscriberState {
            subscriber_id: "copy-sub".into(),
            channel: "node".into(),
            user: "alice".into(),
            promiscuous: true,
            last_event_id: 2,
            created_at: t("2024-01-01"),
            last_poll: None,
        })
        .await
        .unwrap();
    let n = Node::new("test", "t", t("2024-05-01"));
    store
        .append_event(node_event(&n, NodeOp::Created, false, t("2024-05-01")))
        .await
        .unwrap();
    store
        .append_event(node_event(&n, NodeOp::Created, false, t("2000-01-01")))
        .await
        .unwrap();
    store.trim_events(t("2001-01-01")).await.unwrap();
    store.flush().await.unwrap();
}

/// Every record of `section`, walked `limit` at a time.
pub async fn export_section(store: &dyn Store, section: Section, limit: usize) -> Vec<Record> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let (records, next) = store
            .export_records(section, cursor.as_ref(), limit)
            .await
            .unwrap();
        assert!(records.len() <= limit.max(1), "{section}: limit exceeded");
        assert!(
            records.iter().all(|r| r.section() == section),
            "{section}: foreign record"
        );
        out.extend(records);
        match next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// A cursor is client input (`GET /backup/{section}?after=`): any bytes, a cursor
/// of another section or another backend give that section's records or
/// [`Error::Invalid`], never another section's records nor another error.
async fn foreign_cursors(store: &dyn Store) {
    let mut cursors: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0x0e, 0x40, 0x0e, 0x0b],
        vec![0xff; 4],
        vec![0xff; 40],
        b"Csubscription".to_vec(),
        vec![0, 0, 0, 0, 0, 0, 0, 1],
        vec![0x80, 0xc0],
    ];
    for section in Section::ALL {
        if let Ok((_, Some(c))) = store.export_records(section, None, 1).await {
            cursors.push(c.as_bytes().to_vec());
        }
    }
    for section in Section::ALL {
        for c in &cursors {
            let cursor = ExportCursor::from_bytes(c.clone());
            match store.export_records(section, Some(&cursor), 5).await {
                Ok((records, _)) => assert!(
                    records.iter().all(|r| r.section() == section),
                    "{section} after {c:x?}: foreign records"
                ),
                Err(Error::Invalid(_)) => {}
                Err(e) => panic!("{section} after {c:x?}: {e}"),
            }
        }
    }
}

/// A section's records in a backend-independent order: queues by name (each still
/// in FIFO order), everything else as exported.
fn normalised(section: Section, mut records: Vec<Record>) -> Vec<Record> {
    if section == Section::Queues {
        records.sort_by(|a, b| match (a, b) {
            (
                Record::QueueItem {
                    name: na,
                    index: ia,
                    ..
                },
                Record::QueueItem {
                    name: nb,
                    index: ib,
                    ..
                },
            ) => (na, ia).cmp(&(nb, ib)),
            _ => std::cmp::Ordering::Equal,
        });
    }
    records
}

/// Export and import ([`Store::export_records`], [`Store::import_records`]):
/// fills `source` (empty) with [`fill_every_section`], exports every section in
/// small pages (the walk equals a one-page walk; every record survives a JSON round
/// trip), imports the first half of every section into `target` (empty: an
/// interrupted copy), then everything in small batches (only the rest is written),
/// and checks that `target` exports the same records, answers
/// the same node counts, numbers its next event and counter after the source's, and
/// pops the same queue items. Importing again skips everything and doubles nothing;
/// a queue item that would leave a gap is refused.
pub async fn export_import(source: &dyn Store, target: &dyn Store) {
    fill_every_section(source).await;
    foreign_cursors(source).await;
    let mut exported = Vec::new();
    for section in Section::ALL {
        let paged = export_section(source, section, 3).await;
        let whole = export_section(source, section, 100_000).await;
        assert_eq!(paged, whole, "{section}: paged walk differs");
        for r in &paged {
            let text = serde_json::to_string(r).unwrap();
            let back: Record = serde_json::from_str(&text).unwrap();
            assert_eq!(&back, r, "{section}: JSON round trip of {text}");
        }
        assert!(!paged.is_empty(), "{section}: nothing exported");
        assert_eq!(
            source.count_records(section).await.unwrap(),
            paged.len() as u64,
            "{section}"
        );
        exported.push((section, paged));
    }
    // Node versions are exported: the suite replaced a node (version 3).
    assert!(exported[0]
        .1
        .iter()
        .any(|r| matches!(r, Record::Node { version, .. } if *version > Version(1))));

    let total: u64 = exported.iter().map(|(_, r)| r.len() as u64).sum();
    // An interrupted copy: the first half of each section...
    let mut half = 0u64;
    for (_, records) in &exported {
        let head = &records[..records.len() / 2];
        for chunk in head.chunks(4) {
            let stats = target.import_records(chunk).await.unwrap();
            assert_eq!(stats.imported, chunk.len() as u64, "{stats:?}");
        }
        half += head.len() as u64;
    }
    // ...then the whole copy again completes it.
    let mut stats = crate::store::ImportStats::default();
    for (_, records) in &exported {
        for chunk in records.chunks(4) {
            stats += target.import_records(chunk).await.unwrap();
        }
    }
    assert_eq!(stats.imported, total - half, "{stats:?}");
    assert_eq!(stats.skipped_existing, half, "{stats:?}");
    target.flush().await.unwrap();

    let compare = |label: &'static str| {
        let exported = &exported;
        async move {
            for (section, records) in exported {
                let got = export_section(target, *section, 7).await;
                assert_eq!(
                    normalised(*section, got),
                    normalised(*section, records.clone()),
                    "{label}: {section} differs"
                );
            }
            for qs in [
                "",
                "kind=test",
                "state=done",
                "owner=alice",
                "data.arch=arm64",
            ] {
                let cq = q(qs, Mode::Count);
                assert_eq!(
                    target.count_nodes(&cq).await.unwrap(),
                    source.count_nodes(&cq).await.unwrap(),
                    "{label}: count of {qs:?}"
                );
                let fq = q(qs, Mode::Fast);
                assert_eq!(
                    target.find_nodes(&fq).await.unwrap(),
                    source.find_nodes(&fq).await.unwrap(),
                    "{label}: find {qs:?}"
                );
            }
            assert_eq!(
                target.count_all_nodes().await.unwrap(),
                source.count_all_nodes().await.unwrap()
            );
            assert_eq!(
                target.last_event_sequence().await.unwrap(),
                source.last_event_sequence().await.unwrap()
            );
        }
    };
    compare("first import").await;

    // Again: everything is there already.
    let mut again = crate::store::ImportStats::default();
    for (_, records) in &exported {
        for chunk in records.chunks(5) {
            again += target.import_records(chunk).await.unwrap();
        }
    }
    assert_eq!(again.imported, 0, "{again:?}");
    assert_eq!(again.skipped_existing, total, "{again:?}");
    compare("second import").await;

    // A queue item that would leave a gap is refused, and nothing of its batch is kept.
    let gap = [
        Record::Kv {
            namespace: "gap".into(),
            key: "k".into(),
            value: "v".into(),
        },
        Record::QueueItem {
            name: "fresh".into(),
            index: 1,
            value: "x".into(),
        },
    ];
    assert!(matches!(
        target.import_records(&gap).await,
        Err(Error::Invalid(_))
    ));
    assert_eq!(target.kv_get("gap", "k").await.unwrap(), None);

    // The target carries on where the source stopped.
    let n = Node::new("test", "after", t("2024-06-01"));
    let e = target
        .append_event(node_event(&n, NodeOp::Created, false, t("2024-06-01")))
        .await
        .unwrap();
    assert_eq!(
        e.sequence_id,
        source.last_event_sequence().await.unwrap() + 1
    );
    for name in ["other"] {
        assert_eq!(
            target.next_counter(name).await.unwrap(),
            source.next_counter(name).await.unwrap()
        );
    }
    for name in ["partly", "left"] {
        loop {
            let (a, b) = (
                source.queue_pop(name).await.unwrap(),
                target.queue_pop(name).await.unwrap(),
            );
            assert_eq!(a, b, "queue {name}");
            if a.is_none() {
                break;
            }
        }
    }
}
