//! A server stopped and started again on the same data (sled directory or
//! PostgreSQL database) keeps nodes, users, tokens and the event history (and keeps
//! numbering events after the last one).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::{every_backend, Backend, Location, TestServer};
use kernelci_core::id::ObjectId;
use kernelci_core::store::Store;
use kernelci_http::HttpConfig;
use kernelci_store::postgres::{PgConfig, PgStore};
use kernelci_store::{SledConfig, SledStore};
use serde_json::json;

every_backend!(the_data_is_in_the_backend_under_test);
/// The harness really runs each variant on its backend: a node posted over HTTP is
/// found afterwards by a store of that backend's own type, opened directly on the
/// server's data (a `PgStore` on the database URL for the PostgreSQL variant).
async fn the_data_is_in_the_backend_under_test() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let body = json!({"kind": "kbuild", "name": "k", "path": ["k"]});
    let r = s.post("/node", Some(&token), &body).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let id: ObjectId = r.json()["id"].as_str().unwrap().parse().unwrap();
    let data = s.stop().await;
    let node = match (Backend::current(), &data) {
        (Backend::Sled, Location::Sled(_)) => {
            let store = SledStore::open(&data.sled_dir().unwrap(), SledConfig::default()).unwrap();
            let node = store.get_node(id).await.unwrap();
            store.close().unwrap();
            node
        }
        (Backend::Postgres, Location::Postgres(url)) => {
            let store = PgStore::open(&PgConfig::new(url.as_str())).await.unwrap();
            store.get_node(id).await.unwrap()
        }
        (backend, data) => panic!("a {backend:?} test ran on {data:?}"),
    };
    assert_eq!(node.map(|n| n.value.name), Some("k".to_owned()));
}

every_backend!(data_survives_a_restart);
async fn data_survives_a_restart() {
    let s = TestServer::start().await;
    let (alice, token) = s.user("alice", false, true, &["team"]).await;
    let body = json!({"kind": "kbuild", "name": "k", "path": ["k"], "data": {"arch": "arm64"}});
    let node = s.post("/node", Some(&token), &body).await.json();
    let id = node["id"].as_str().unwrap().to_owned();
    let r = s
        .patch(
            &format!("/node/{id}"),
            Some(&token),
            &json!({"state": "available"}),
        )
        .await;
    assert_eq!(r.code(), 200);
    let events_before = s.get("/events", None).await.json();
    assert_eq!(events_before.as_array().unwrap().len(), 2);
    let data = s.stop().await;

    let s = TestServer::start_at(data, HttpConfig::for_tests(common::SECRET)).await;
    // The node, readable and queryable through its indexes.
    let n = s.get(&format!("/node/{id}"), None).await.json();
    assert_eq!(
        (n["state"].clone(), n["owner"].clone()),
        (json!("available"), json!("alice"))
    );
    assert_eq!(
        s.get("/count?kind=kbuild&state=available", None)
            .await
            .json(),
        json!(1)
    );
    assert_eq!(s.get("/count?data.arch=arm64", None).await.json(), json!(1));
    // The user and the token issued before the restart.
    let r = s.get(&format!("/user/{}", alice.id), Some(&token)).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()["groups"][0]["name"], "team");
    let r = s
        .patch(
            &format!("/node/{id}"),
            Some(&token),
            &json!({"state": "done", "result": "pass"}),
        )
        .await;
    assert_eq!(r.code(), 200);
    // The history, with sequence ids continuing after the last one.
    let events = s.get("/events", None).await.json();
    let seqs: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence_id"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3]);
    assert_eq!(events[0], events_before[0]);
    s.stop().await;
}

every_backend!(concurrent_updates_of_one_node_are_all_applied);
async fn concurrent_updates_of_one_node_are_all_applied() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let body = json!({"kind": "kbuild", "name": "k", "path": ["k"]});
    let id = s.post("/node", Some(&token), &body).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("/node/{id}");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (s, url, token) = (&s, url.clone(), token.clone());
        tasks.push(async move {
            s.patch(&url, Some(&token), &json!({"data": {"writer": i}}))
                .await
                .code()
        });
    }
    let codes = futures_join_all(tasks).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // One event per update, each with its own sequence id.
    let events = s
        .get(&format!("/events?node_id={id}&op=updated"), None)
        .await
        .json();
    assert_eq!(events.as_array().unwrap().len(), 16);
    s.stop().await;
}

/// Runs futures concurrently on the current task (no extra dependency).
async fn futures_join_all<F: std::future::Future<Output = u16>>(futs: Vec<F>) -> Vec<u16> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out = vec![0; set.len()];
    let mut done = vec![false; set.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(v) => {
                    out[i] = v;
                    done[i] = true;
                }
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out
}
