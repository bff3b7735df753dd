//! `GET /metrics` over real HTTP (docs/OPERATIONS.md "Monitoring"): the
//! reference's counters first and unchanged, then request latency histograms by
//! route and status, requests in flight, store operation latencies, live and
//! durable subscriptions with each durable subscriber's backlog, and background
//! job runs, on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use common::{every_backend, TestServer, SECRET};
use kernelci_http::HttpConfig;

/// The value of the sample `line_start` (name and labels, exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

async fn scrape(s: &TestServer) -> String {
    let r = s.get("/metrics", None).await;
    assert_eq!(r.code(), 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

fn node(name: &str) -> Value {
    json!({"kind": "checkout", "name": name, "path": [name], "group": "g",
           "data": {"kernel_revision": {"tree": "t", "branch": "b", "commit": "c",
                                              "url": "https://git.example.org/t.git"}}})
}

every_backend!(requests_store_operations_and_subscribers_are_measured);
async fn requests_store_operations_and_subscribers_are_measured() {
    let s = TestServer::start().await;
    let (_, user) = s.user("alice", false, true, &[]).await;
    let created = s.post("/latest/node", Some(&user), &node("one")).await;
    assert_eq!(created.code(), 200, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        assert_eq!(s.get(&format!("/latest/node/{id}"), None).await.code(), 200);
    }
    assert_eq!(s.get("/latest/node/not-an-id", None).await.code(), 400);
    assert_eq!(s.get("/latest/no/such/path", None).await.code(), 404);
    // A durable subscriber on `node`, then two more nodes it has not received.
    let r = s
        .send_json(
            Method::POST,
            "/latest/subscribe/node?subscriber_id=svc:metrics",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let sub = r.json()["id"].as_u64().unwrap();
    for name in ["two", "three"] {
        assert_eq!(
            s.post("/latest/node", Some(&user), &node(name))
                .await
                .code(),
            200
        );
    }

    let text = scrape(&s).await;
    // The reference's lines come first, as the reference writes them.
    assert!(
        text.starts_with("http_requests_total{instance=\"api\"} "),
        "{text}"
    );
    let get_node = "kci_http_request_duration_seconds_count{method=\"GET\",route=\"/node/{id}\",status=\"200\"}";
    assert_eq!(sample(&text, get_node), Some(3.0), "{text}");
    let bad_id = "kci_http_request_duration_seconds_count{method=\"GET\",route=\"/node/{id}\",status=\"400\"}";
    assert_eq!(sample(&text, bad_id), Some(1.0), "{text}");
    let unmatched = "kci_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"}";
    assert_eq!(sample(&text, unmatched), Some(1.0), "{text}");
    let inf = "kci_http_request_duration_seconds_bucket{method=\"GET\",route=\"/node/{id}\",status=\"200\",le=\"+Inf\"}";
    assert_eq!(sample(&text, inf), Some(3.0), "{text}");
    // The scrape itself is the one request in flight.
    assert_eq!(sample(&text, "kci_http_requests_in_flight"), Some(1.0));
    // Store operations, by Store method: the three reads (the bad id never
    // reached the store) and the three writes of a node with its event.
    let reads = "kci_store_operation_duration_seconds_count{operation=\"get_node_json\"}";
    assert_eq!(sample(&text, reads), Some(3.0), "{text}");
    let writes = "kci_store_operation_duration_seconds_count{operation=\"insert_node_with_event\"}";
    assert_eq!(sample(&text, writes), Some(3.0), "{text}");
    // Pub/sub: one live subscription, one durable subscriber two events behind.
    assert_eq!(sample(&text, "kci_subscriptions{kind=\"live\"}"), Some(1.0));
    assert_eq!(
        sample(&text, "kci_subscriptions{kind=\"durable\"}"),
        Some(1.0)
    );
    let lag = "kci_durable_subscriber_lag_events{subscriber_id=\"svc:metrics\"}";
    assert_eq!(sample(&text, lag), Some(2.0), "{text}");
    assert!(sample(&text, "kci_event_sequence").unwrap() >= 3.0);
    assert_eq!(sample(&text, "kci_jobs_leader"), Some(0.0));

    // Receiving an event lowers the backlog (the next listen acknowledges it).
    for _ in 0..2 {
        let r = s.get(&format!("/latest/listen/{sub}"), Some(&user)).await;
        assert_eq!(r.code(), 200, "{}", r.text());
    }
    let text = scrape(&s).await;
    assert_eq!(sample(&text, lag), Some(1.0), "{text}");
    s.stop().await;
}

every_backend!(background_job_rounds_are_counted);
async fn background_job_rounds_are_counted() {
    let s = TestServer::start_with(HttpConfig {
        background_jobs: true,
        housekeeping_period_seconds: 1,
        state_period_seconds: 1,
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let series = |job: &str, result: &str| {
        format!("kci_job_runs_total{{job=\"{job}\",result=\"{result}\"}}")
    };
    loop {
        let text = scrape(&s).await;
        let ok = |job| sample(&text, &series(job, "ok")).unwrap_or(0.0);
        if ok("housekeeping") >= 1.0 && ok("state_machine") >= 1.0 {
            assert_eq!(sample(&text, &series("housekeeping", "failed")), Some(0.0));
            assert_eq!(sample(&text, "kci_jobs_leader"), Some(1.0));
            let last = "kci_job_last_success_timestamp_seconds{job=\"housekeeping\"}";
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!((now - sample(&text, last).unwrap()).abs() < 60.0, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "no job rounds counted:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.stop().await;
}

every_backend!(answers_from_counters_skip_the_query);
/// `/count`, `/nodes` and `/nodes/fast` ask the store whether its counters give
/// the answer first; the embedded store answers equality counts and empty pages
/// that way (the query itself is never run), PostgreSQL declines and runs it. Each
/// answer is the same either way.
async fn answers_from_counters_skip_the_query() {
    let s = TestServer::start().await;
    let (_, user) = s.user("alice", false, true, &[]).await;
    for name in ["one", "two", "three"] {
        assert_eq!(
            s.post("/latest/node", Some(&user), &node(name))
                .await
                .code(),
            200
        );
    }
    let embedded = common::Backend::current() == common::Backend::Sled;
    let ops = |text: &str, op: &str| {
        let series = format!("kci_store_operation_duration_seconds_count{{operation=\"{op}\"}}");
        sample(text, &series).unwrap_or(0.0)
    };
    let before = scrape(&s).await;
    // A count on one index, a count of everything, an empty page, an empty list.
    assert_eq!(s.get("/count?kind=checkout", None).await.json(), json!(3));
    assert_eq!(s.get("/count", None).await.json(), json!(3));
    assert_eq!(
        s.get("/nodes?kind=kbuild&limit=5&offset=1", None)
            .await
            .json(),
        json!({"items": [], "total": 0, "limit": 5, "offset": 1})
    );
    assert_eq!(
        s.get("/nodes/fast?kind=kbuild", None).await.json(),
        json!([])
    );
    let text = scrape(&s).await;
    let delta = |op: &str| ops(&text, op) - ops(&before, op);
    assert_eq!(delta("count_nodes_from_counters"), 4.0, "{text}");
    let (counts, pages, finds) = if embedded {
        (0.0, 0.0, 0.0)
    } else {
        (2.0, 1.0, 1.0)
    };
    assert_eq!(delta("count_nodes"), counts, "{text}");
    assert_eq!(delta("find_page_json"), pages, "{text}");
    assert_eq!(delta("find_nodes_json"), finds, "{text}");

    // What the counters cannot tell runs the query, with the same answers.
    let before = scrape(&s).await;
    assert_eq!(s.get("/count?name__re=^t", None).await.json(), json!(2));
    let page = s.get("/nodes?kind=checkout&limit=2", None).await.json();
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let text = scrape(&s).await;
    let delta = |op: &str| ops(&text, op) - ops(&before, op);
    assert_eq!(delta("count_nodes"), 1.0, "{text}");
    assert_eq!(delta("find_page_json"), 1.0, "{text}");
    s.stop().await;
}
