//! A server stopped and started again on the same data directory keeps nodes,
//! users, tokens and the event history (and keeps numbering events after the last
//! one).

mod common;

use common::TestServer;
use kernelci_http::HttpConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let dir = s.dir.clone();
    let tmp = s.stop().await;

    let s = TestServer::start_in(&dir, HttpConfig::for_tests(common::SECRET)).await;
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
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
