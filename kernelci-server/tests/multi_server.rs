//! Two real `kernelci-server` processes on one PostgreSQL database, as behind a load
//! balancer: a client may send each request to either. Nodes, tokens and queues are
//! shared; a durable subscriber moves from one server to the other and misses
//! nothing nor receives anything twice; an event written through one server reaches
//! a durable listener waiting on the other within seconds; the time-driven jobs run
//! on one leader, and when it is killed the other takes over and a timed-out node
//! gets exactly one transition event; a server killed mid-write loses no
//! acknowledged write.
//!
//! Live subscriptions are the cluster's too: made through one server, listened
//! and counted through the other.
//!
//! Skipped (with a SKIPPED line) without PostgreSQL, unless `KCI_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{http, login, start, token_of, Server};
use kernelci_store::postgres::testing::TestCluster;
use serde_json::Value;

const PASSWORD: &str = "multi-server-password";

/// Starts a server on `url` with a short keep-alive and a 1 s state machine period.
fn server(dir: &Path, url: &str) -> Server {
    start(
        dir,
        &[
            ("SECRET_KEY", "multi-server-secret"),
            ("KCI_INITIAL_PASSWORD", PASSWORD),
            ("KEEP_ALIVE_PERIOD", "3"),
            ("KCI_STATE_PERIOD_SECONDS", "1"),
        ],
        &["--backend", "postgres", "--database-url", url],
    )
}

/// Two servers on a fresh database of the shared test cluster, with their data
/// directories (first, so that they outlive the servers); `None` without
/// PostgreSQL (skipped).
fn two_servers() -> Option<((tempfile::TempDir, tempfile::TempDir), Server, Server)> {
    let url = TestCluster::shared()?.create_database();
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = server(dirs.0.path(), &url);
    let b = server(dirs.1.path(), &url);
    Some((dirs, a, b))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn call(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) = http(
        addr,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    let v = if text.trim().is_empty() {
        Value::Null
    } else {
        json(&text)
    };
    (status, v)
}

fn post_node(addr: &str, token: &str, name: &str, extra: &str) -> String {
    let body = format!(r#"{{"kind": "checkout", "name": "{name}", "path": ["{name}"]{extra}}}"#);
    let (status, v) = call(addr, "POST", "/latest/node", token, &body);
    assert_eq!(status, 200, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// The node id of a listen's event, or "BEEP".
fn listen(addr: &str, token: &str, sub: u64) -> String {
    let (status, v) = call(addr, "GET", &format!("/latest/listen/{sub}"), token, "");
    assert_eq!(status, 200, "{v}");
    let event = json(v["data"].as_str().unwrap());
    match &event["data"] {
        Value::String(s) if s == "BEEP" => "BEEP".into(),
        data => data["id"].as_str().unwrap_or("?").to_owned(),
    }
}

fn metric(addr: &str, name: &str) -> u64 {
    let (_, text) = http(addr, "GET", "/metrics", &[], "");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_servers_share_nodes_queues_and_durable_subscribers() {
    let Some((_dirs, a, b)) = two_servers() else {
        return;
    };
    // A token from A is good on B (same secret, users in the shared store).
    let token = token_of(&login(&a.addr, "admin", PASSWORD).1);
    let id = post_node(&a.addr, &token, "from-a", "");
    let (status, v) = call(&b.addr, "GET", &format!("/latest/node/{id}"), &token, "");
    assert_eq!((status, v["name"].as_str()), (200, Some("from-a")));

    // Queue items pushed through both servers are popped through both, each once.
    for i in 0..40 {
        let addr = if i % 2 == 0 { &a.addr } else { &b.addr };
        let (status, _) = call(
            addr,
            "POST",
            "/latest/push/jobs",
            &token,
            &format!(r#"{{"data": {{"i": {i}}}}}"#),
        );
        assert_eq!(status, 200);
    }
    let poppers: Vec<_> = [
        a.addr.clone(),
        b.addr.clone(),
        a.addr.clone(),
        b.addr.clone(),
    ]
    .into_iter()
    .map(|addr| {
        let token = token.clone();
        std::thread::spawn(move || {
            (0..10)
                .map(|_| {
                    let (status, v) = call(&addr, "GET", "/latest/pop/jobs", &token, "");
                    assert_eq!(status, 200, "{v}");
                    v["data"]["i"].as_u64().unwrap()
                })
                .collect::<Vec<_>>()
        })
    })
    .collect();
    let mut popped: Vec<u64> = poppers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    popped.sort_unstable();
    assert_eq!(popped, (0..40).collect::<Vec<u64>>());

    // A durable subscriber on A receives an event written through B.
    let sub_a = subscribe(&a.addr, &token, "?subscriber_id=mover");
    let e1 = post_node(&b.addr, &token, "e1", "");
    assert_eq!(listen(&a.addr, &token, sub_a), e1);
    let e2 = post_node(&b.addr, &token, "e2", "");
    assert_eq!(listen(&a.addr, &token, sub_a), e2);
    // Acknowledges e2; nothing more yet.
    assert_eq!(listen(&a.addr, &token, sub_a), "BEEP");

    // The subscriber moves to B: it resumes after e2, with nothing lost or repeated.
    let sub_b = subscribe(&b.addr, &token, "?subscriber_id=mover");
    assert_ne!(sub_a, sub_b, "subscription ids are unique across servers");
    let e3 = post_node(&a.addr, &token, "e3", "");
    assert_eq!(listen(&b.addr, &token, sub_b), e3);
    // A listen already waiting on B gets an event written through A afterwards,
    // before its 3 s keep-alive (B is not told of A's writes: it reads the log again
    // every second).
    let waiting = {
        let (addr, token) = (b.addr.clone(), token.clone());
        std::thread::spawn(move || listen(&addr, &token, sub_b))
    };
    std::thread::sleep(Duration::from_millis(1500));
    let e4 = post_node(&a.addr, &token, "e4", "");
    assert_eq!(waiting.join().unwrap(), e4);
    a.stop();
    b.stop();
}

/// A user `name` invited through `a`, accepting through `b`; returns a token.
fn invited_user(a: &str, b: &str, admin: &str, name: &str) -> String {
    let body = format!(
        r#"{{"username": "{name}", "email": "{name}@example.org", "send_email": false,
            "return_token": true}}"#
    );
    let (status, v) = call(a, "POST", "/latest/user/invite", admin, &body);
    assert_eq!(status, 200, "{v}");
    let invite = v["token"].as_str().unwrap();
    let body = format!(r#"{{"token": "{invite}", "password": "{PASSWORD}"}}"#);
    let (status, v) = call(b, "POST", "/latest/user/accept-invite", "", &body);
    assert_eq!(status, 200, "{v}");
    token_of(&login(a, name, PASSWORD).1)
}

fn subscribe(addr: &str, token: &str, query: &str) -> u64 {
    let (status, v) = call(
        addr,
        "POST",
        &format!("/latest/subscribe/node{query}"),
        token,
        "",
    );
    assert_eq!(status, 200, "{v}");
    v["id"].as_u64().unwrap()
}

/// Live (non-durable) subscriptions are the cluster's: made through A, listened
/// through B with the owner rule of plain and promiscuous subscriptions, counted
/// by `/stats/subscriptions` of either server, woken by writes through the other
/// server, shared by listens on both servers without an event delivered twice or
/// lost, and unsubscribed through either.
#[test]
fn live_subscriptions_are_the_clusters() {
    let Some((_dirs, a, b)) = two_servers() else {
        return;
    };
    let admin = token_of(&login(&a.addr, "admin", PASSWORD).1);
    let bob = invited_user(&a.addr, &b.addr, &admin, "bob");

    let plain = subscribe(&a.addr, &bob, "");
    let promisc = subscribe(&a.addr, &admin, "?promisc=true");
    for addr in [&a.addr, &b.addr] {
        let (status, v) = call(addr, "GET", "/latest/stats/subscriptions", &admin, "");
        assert_eq!(status, 200, "{v}");
        let ids: Vec<u64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [plain, promisc], "through {addr}");
    }

    let by_admin = post_node(&b.addr, &admin, "by-admin", "");
    let by_bob = post_node(&a.addr, &bob, "by-bob", "");
    // Bob's plain subscription gets his own node only; admin's promiscuous one both.
    assert_eq!(listen(&b.addr, &bob, plain), by_bob);
    assert_eq!(listen(&a.addr, &bob, plain), "BEEP");
    assert_eq!(listen(&b.addr, &admin, promisc), by_admin);
    assert_eq!(listen(&a.addr, &admin, promisc), by_bob);
    // Another user's subscription stays theirs on every server.
    let (status, _) = call(
        &b.addr,
        "GET",
        &format!("/latest/listen/{promisc}"),
        &bob,
        "",
    );
    assert_eq!(status, 403);

    // A listen waiting on B is woken by a write through A, before its keep-alive.
    let waiting = {
        let (addr, token) = (b.addr.clone(), bob.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            (listen(&addr, &token, plain), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let woke = post_node(&a.addr, &bob, "wakes-b", "");
    let (got, took) = waiting.join().unwrap();
    assert_eq!(got, woke, "after {took:?}");

    // Listens on both servers at once share one subscription: every event once.
    let written: BTreeSet<String> = (0..30)
        .map(|i| {
            let addr = if i % 2 == 0 { &a.addr } else { &b.addr };
            post_node(addr, &admin, &format!("n{i}"), "")
        })
        .collect();
    let listeners: Vec<_> = [&a.addr, &b.addr, &a.addr, &b.addr]
        .into_iter()
        .map(|addr| {
            let (addr, token) = (addr.clone(), admin.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match listen(&addr, &token, promisc) {
                        beep if beep == "BEEP" => break got,
                        id => got.push(id),
                    }
                }
            })
        })
        .collect();
    let mut delivered: Vec<String> = listeners
        .into_iter()
        .flat_map(|l| l.join().unwrap())
        .collect();
    delivered.sort();
    let expected: Vec<String> = written
        .iter()
        .cloned()
        .chain(std::iter::once(woke.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(delivered, expected, "each event exactly once");

    // Unsubscribed through B: gone on A too.
    let (status, _) = call(
        &b.addr,
        "POST",
        &format!("/latest/unsubscribe/{plain}"),
        &bob,
        "",
    );
    assert_eq!(status, 200);
    let (status, _) = call(&a.addr, "GET", &format!("/latest/listen/{plain}"), &bob, "");
    assert_eq!(status, 404);
    a.stop();
    b.stop();
}

#[test]
fn the_jobs_leader_fails_over_and_a_timeout_gives_one_event() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = server(da.path(), &url);
    wait_for("A to lead", Duration::from_secs(10), || {
        metric(&a.addr, "kci_jobs_leader") == 1
    });
    let b = server(db.path(), &url);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        metric(&b.addr, "kci_jobs_leader"),
        0,
        "one leader at a time"
    );

    let token = token_of(&login(&a.addr, "admin", PASSWORD).1);
    let timeout = (chrono::Utc::now() + chrono::Duration::seconds(3))
        .format("%Y-%m-%dT%H:%M:%S%.3f")
        .to_string();
    let id = post_node(
        &a.addr,
        &token,
        "times-out",
        &format!(r#", "timeout": "{timeout}""#),
    );
    // The leader dies before the node times out.
    a.child.kill().unwrap();
    a.child.wait().unwrap();

    wait_for("B to lead", Duration::from_secs(15), || {
        metric(&b.addr, "kci_jobs_leader") == 1
    });
    wait_for("the timeout transition", Duration::from_secs(20), || {
        let (_, v) = call(&b.addr, "GET", &format!("/latest/node/{id}"), &token, "");
        v["state"] == "done"
    });
    // Give a second round the chance to (wrongly) repeat the transition.
    std::thread::sleep(Duration::from_secs(2));
    let (status, events) = call(
        &b.addr,
        "GET",
        &format!("/latest/events?node_id={id}"),
        &token,
        "",
    );
    assert_eq!(status, 200, "{events}");
    let done: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["data"]["state"] == "done")
        .collect();
    assert_eq!(done.len(), 1, "exactly one transition event: {events}");
    assert_eq!(done[0]["data"]["result"], "incomplete");
    b.stop();
}

#[test]
fn a_server_killed_mid_write_loses_no_acknowledged_write() {
    let Some((_dirs, mut a, b)) = two_servers() else {
        return;
    };
    let token = token_of(&login(&a.addr, "admin", PASSWORD).1);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, token) = (a.addr.clone(), token.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                for i in 0..10_000 {
                    let body = format!(r#"{{"kind": "checkout", "name": "w{w}-{i}", "path": ["x"]}}"#);
                    let auth = format!("Bearer {token}");
                    let Ok(mut s) = std::net::TcpStream::connect(&addr) else {
                        break;
                    };
                    use std::io::{Read, Write};
                    let req = format!(
                        "POST /latest/node HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(req.as_bytes()).is_err() {
                        break;
                    }
                    let mut resp = String::new();
                    if s.read_to_string(&mut resp).is_err() || !resp.starts_with("HTTP/1.1 200") {
                        break;
                    }
                    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
                    acknowledged.push(json(body)["id"].as_str().unwrap().to_owned());
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let acknowledged: BTreeSet<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(acknowledged.len() > 10, "the writers got going");
    for id in &acknowledged {
        let (status, _) = call(&b.addr, "GET", &format!("/latest/node/{id}"), &token, "");
        assert_eq!(status, 200, "acknowledged node {id} is lost");
    }
    b.stop();
}
