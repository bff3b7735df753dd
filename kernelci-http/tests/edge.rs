//! The HTTP edge over real sockets: connection floods (slow bodies, idle
//! connections) against the connection limits, the body's minimum transfer rate,
//! the idle timeout, response compression, request ids, and the API mounted as a
//! `tower::Service` by an embedder.
//!
//! The floods come from 127.0.0.2 (Linux routes all of 127/8 to loopback) and the
//! well-behaved client from 127.0.0.1, as an attacker and a user on two machines.
//! Each flood is a few hundred sockets held for a few seconds; the check is that the
//! normal request is answered while they are open (a generous bound: a server that
//! lets the flood through makes it wait for minutes, or for ever).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use common::{Backend, TestServer, SECRET};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use kernelci_core::node::Node;
use kernelci_http::{AppState, HttpConfig};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Long enough for any well-behaved request on a loaded CI machine, far shorter than
/// what the floods below hold a server that lets them through.
const PATIENCE: Duration = Duration::from_secs(10);

/// A connection to `to` from `from` (a loopback address).
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// What the server sent on `stream` within `wait` (until it closed or the time ran
/// out), as text.
async fn read_for(stream: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server closed `stream` within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    matches!(
        tokio::time::timeout(wait, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await,
        Ok(())
    )
}

/// The start of a login with a 100 kB body of which 10 bytes are sent.
const STALLED_LOGIN: &[u8] = b"POST /latest/user/login HTTP/1.1\r\nhost: x\r\n\
content-type: application/x-www-form-urlencoded\r\ncontent-length: 100000\r\n\r\nusername=a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_from_one_address_do_not_stop_other_clients() {
    Backend::Sled
        .run(async {
            let s = TestServer::start_with(HttpConfig {
                max_connections: 300,
                max_connections_per_ip: 100,
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            let mut flood = Vec::new();
            for _ in 0..600 {
                let mut c = connect_from(Ipv4Addr::new(127, 0, 0, 2), s.addr).await;
                let _ = c.write_all(STALLED_LOGIN).await;
                flood.push(c);
            }
            // Another client is answered while the 600 are open.
            let r = tokio::time::timeout(PATIENCE, s.get("/latest/count", None))
                .await
                .expect("a normal request waited behind the flood");
            assert_eq!(r.code(), 200);
            // The connections over the per-address limit were refused at once, with
            // a JSON 503 (or, past the refusals in progress, closed): only the 100
            // admitted ones are still open.
            let mut reads = tokio::task::JoinSet::new();
            for mut c in flood.drain(..) {
                reads.spawn(async move {
                    let answer = read_for(&mut c, Duration::from_secs(3)).await;
                    let open = !closed_within(&mut c, Duration::from_millis(1)).await;
                    (answer, open, c)
                });
            }
            let (mut refused, mut open) = (0, 0);
            while let Some(r) = reads.join_next().await {
                let (answer, still_open, c) = r.unwrap();
                if answer.starts_with("HTTP/1.1 503") {
                    assert!(answer.contains(r#"{"detail":"Too many connections"}"#));
                    refused += 1;
                } else {
                    assert!(answer.is_empty(), "{answer}");
                }
                if still_open {
                    open += 1;
                    flood.push(c);
                }
            }
            assert!(refused >= 50, "only {refused} refusals");
            assert!(open <= 100, "{open} connections of the flood still open");
            drop(flood);
            s.stop().await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_connection_limit_clients_get_503_at_once_and_idle_connections_close() {
    Backend::Sled
        .run(async {
            let s = TestServer::start_with(HttpConfig {
                max_connections: 40,
                max_connections_per_ip: 0,
                header_timeout_seconds: 2,
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            let mut idle = Vec::new();
            for _ in 0..40 {
                idle.push(connect_from(Ipv4Addr::new(127, 0, 0, 2), s.addr).await);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Every place is taken: the next client is told so at once.
            let mut c = connect_from(Ipv4Addr::LOCALHOST, s.addr).await;
            c.write_all(b"GET /latest/count HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            let answer = read_for(&mut c, PATIENCE).await;
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
            assert!(
                answer.ends_with(r#"{"detail":"Too many connections"}"#),
                "{answer}"
            );
            // The idle connections are closed after the header timeout ...
            for c in idle.iter_mut() {
                assert!(
                    closed_within(c, PATIENCE).await,
                    "an idle connection was kept open"
                );
            }
            // ... and their places are free again.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(s.get("/latest/count", None).await.code(), 200);
            s.stop().await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_slower_than_the_minimum_rate_is_cut_off_and_a_steady_one_is_not() {
    Backend::Sled
        .run(async {
            let s = TestServer::start_with(HttpConfig {
                body_timeout_seconds: 1,
                body_min_rate: 1000,
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            // 10 bytes of 100,000, then nothing: 408 after the 1 s allowance (plus
            // 10 ms earned), and the connection is closed.
            let mut c = connect_from(Ipv4Addr::LOCALHOST, s.addr).await;
            c.write_all(STALLED_LOGIN).await.unwrap();
            let answer = read_for(&mut c, PATIENCE).await;
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains("Request body timed out"), "{answer}");
            assert!(
                answer.to_ascii_lowercase().contains("connection: close"),
                "{answer}"
            );

            // 40 kB in 8 pieces over 1.6 s: slower than the allowance alone, well
            // above the minimum rate; the body is read in full and the request
            // answered by its handler (a node without a token: 401).
            let body = json!({"kind": "checkout", "name": "x".repeat(40_000)}).to_string();
            let mut c = connect_from(Ipv4Addr::LOCALHOST, s.addr).await;
            let head = format!(
                "POST /latest/node HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\n\r\n",
                body.len()
            );
            c.write_all(head.as_bytes()).await.unwrap();
            for piece in body.as_bytes().chunks(body.len().div_ceil(8)) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                c.write_all(piece).await.unwrap();
            }
            let answer = read_for(&mut c, Duration::from_secs(2)).await;
            assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
            s.stop().await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_compressed_for_clients_that_ask() {
    Backend::Sled
        .run(async {
            let s = TestServer::start().await;
            let now = kernelci_core::time::Timestamp::now();
            let nodes: Vec<Node> = (0..40)
                .map(|i| Node::new("test", &format!("baseline.dmesg.{i}"), now))
                .collect();
            s.store.insert_nodes(&nodes).await.unwrap();
            let plain = s.get("/latest/nodes?kind=test", None).await;
            assert_eq!(plain.code(), 200);
            assert_eq!(plain.header("content-encoding"), None);
            for (coding, decode) in [
                ("gzip", gunzip as fn(&[u8]) -> Vec<u8>),
                ("deflate", inflate),
            ] {
                let r = s
                    .request(
                        hyper::Method::GET,
                        "/latest/nodes?kind=test",
                        &[("accept-encoding", coding)],
                        Bytes::new(),
                    )
                    .await;
                assert_eq!(r.code(), 200);
                assert_eq!(r.header("content-encoding").as_deref(), Some(coding));
                assert!(r.body.len() < plain.body.len() / 2);
                let json: Value = serde_json::from_slice(&decode(&r.body)).unwrap();
                assert_eq!(json, plain.json());
            }
            // A small answer is sent as it is.
            let r = s
                .request(
                    hyper::Method::GET,
                    "/latest/count",
                    &[("accept-encoding", "gzip")],
                    Bytes::new(),
                )
                .await;
            assert_eq!(r.header("content-encoding"), None);
            assert_eq!(r.json(), json!(40));
            s.stop().await;
        })
        .await;
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn inflate(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id() {
    Backend::Sled
        .run(async {
            let s = TestServer::start().await;
            let a = s.get("/latest/count", None).await;
            let b = s.get("/latest/nope", None).await;
            let (a, b) = (a.header("x-request-id"), b.header("x-request-id"));
            for id in [&a, &b] {
                let parsed = id.as_deref().and_then(|v| uuid::Uuid::parse_str(v).ok());
                assert_eq!(parsed.map(|u| u.get_version_num()), Some(4), "{id:?}");
                assert_eq!(id.as_deref().map(str::len), Some(36), "hyphenated: {id:?}");
            }
            assert_ne!(a, b);
            let r = s
                .request(
                    hyper::Method::GET,
                    "/latest/count",
                    &[("x-request-id", "pipeline-42")],
                    Bytes::new(),
                )
                .await;
            assert_eq!(r.header("x-request-id").as_deref(), Some("pipeline-42"));
            s.stop().await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_can_call_the_api_as_a_tower_service() {
    Backend::Sled
        .run(async {
            let location = common::Location::fresh();
            let (store, _sled) = location.open().await;
            let state = AppState::new(store, HttpConfig::for_tests(SECRET)).unwrap();
            let api = kernelci_http::api(state.clone());
            let req = Request::get("/latest/count")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let r = tower::ServiceExt::oneshot(api.clone(), req).await.unwrap();
            assert_eq!(r.status(), 200);
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"0");
            // The bare service too, with a body.
            let bare = kernelci_http::ApiService::new(state);
            let req = Request::post("/latest/node")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap();
            let r = tower::ServiceExt::oneshot(bare, req).await.unwrap();
            assert_eq!(r.status(), 401);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default_and_answers_the_configured_origins() {
    Backend::Sled
        .run(async {
            let origin = [("origin", "https://dashboard.example.org")];
            let preflight = [
                ("origin", "https://dashboard.example.org"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ];
            // Off: no CORS headers, and a preflight is an unknown method.
            let s = TestServer::start().await;
            let r = s
                .request(hyper::Method::GET, "/latest/count", &origin, Bytes::new())
                .await;
            assert_eq!(r.header("access-control-allow-origin"), None);
            let r = s
                .request(
                    hyper::Method::OPTIONS,
                    "/latest/node",
                    &preflight,
                    Bytes::new(),
                )
                .await;
            assert_eq!(r.code(), 405);
            s.stop().await;

            let s = TestServer::start_with(HttpConfig {
                cors_origins: vec!["https://dashboard.example.org".into()],
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            let r = s
                .request(
                    hyper::Method::OPTIONS,
                    "/latest/node",
                    &preflight,
                    Bytes::new(),
                )
                .await;
            assert_eq!(r.code(), 200, "{}", r.text());
            assert_eq!(
                r.header("access-control-allow-origin").as_deref(),
                Some("https://dashboard.example.org")
            );
            let methods = r.header("access-control-allow-methods").unwrap_or_default();
            assert!(
                methods.contains("POST") && methods.contains("PATCH"),
                "{methods}"
            );
            let r = s
                .request(hyper::Method::GET, "/latest/count", &origin, Bytes::new())
                .await;
            assert_eq!(r.code(), 200);
            assert_eq!(
                r.header("access-control-allow-origin").as_deref(),
                Some("https://dashboard.example.org")
            );
            assert!(r
                .header("access-control-expose-headers")
                .is_some_and(|h| h.contains("x-request-id")));
            // Another origin gets no permission.
            let r = s
                .request(
                    hyper::Method::GET,
                    "/latest/count",
                    &[("origin", "https://evil.example.org")],
                    Bytes::new(),
                )
                .await;
            assert_eq!(r.header("access-control-allow-origin"), None);
            s.stop().await;
        })
        .await;
}

#[test]
fn cors_origins_must_be_origins() {
    for bad in [
        "dashboard.example.org",
        "https://x.org/path",
        "https://x.org/",
        "ftp://x.org",
    ] {
        let config = HttpConfig {
            cors_origins: vec![bad.into()],
            ..HttpConfig::for_tests(SECRET)
        };
        assert!(config.validate().is_err(), "{bad}");
    }
    for good in ["*", "https://x.org", "http://127.0.0.1:8080"] {
        let config = HttpConfig {
            cors_origins: vec![good.into()],
            ..HttpConfig::for_tests(SECRET)
        };
        assert!(config.validate().is_ok(), "{good}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gives_its_connection_back() {
    Backend::Sled
        .run(async {
            let s = TestServer::start_with(HttpConfig {
                max_connections: 1,
                write_timeout_seconds: 1,
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            // About 12 MB of answer: more than the socket buffers hold.
            let now = kernelci_core::time::Timestamp::now();
            let nodes: Vec<Node> = (0..8000)
                .map(|i| {
                    let mut n = Node::new("test", &format!("baseline.dmesg.{i}"), now);
                    n.path = vec!["x".repeat(700), format!("t{i}")];
                    n
                })
                .collect();
            s.store.insert_nodes(&nodes).await.unwrap();
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut stalled = socket.connect(s.addr).await.unwrap();
            stalled
                .write_all(b"GET /latest/nodes?limit=8000 HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            // The only place is taken until the server gives up on the stalled write.
            let served = tokio::time::timeout(PATIENCE, async {
                loop {
                    let mut c = connect_from(Ipv4Addr::LOCALHOST, s.addr).await;
                    c.write_all(
                        b"GET /latest/count HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                    )
                    .await
                    .unwrap();
                    let answer = read_for(&mut c, Duration::from_secs(2)).await;
                    if answer.starts_with("HTTP/1.1 200") {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await;
            assert!(
                served.is_ok(),
                "a client that reads nothing kept the only place"
            );
            drop(stalled);
            s.stop().await;
        })
        .await;
}

/// Starts `POST /latest/node` with a declared length of `declared` and sends `sent`
/// bytes of it.
async fn partial_post(s: &TestServer, declared: usize, sent: usize) -> TcpStream {
    let mut c = connect_from(Ipv4Addr::LOCALHOST, s.addr).await;
    let head = format!(
        "POST /latest/node HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {declared}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&vec![b' '; sent]).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_held_at_once_are_bounded() {
    Backend::Sled
        .run(async {
            let s = TestServer::start_with(HttpConfig {
                max_body_bytes: 100_000,
                max_inflight_body_bytes: 150_000,
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            let mut a = partial_post(&s, 100_000, 90_000).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            // A second body would take the bodies held past 150,000 bytes.
            let mut b = partial_post(&s, 100_000, 90_000).await;
            let answer = read_for(&mut b, PATIENCE).await;
            assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
            assert!(answer.contains("too many request bodies"), "{answer}");
            // The first completes (and is answered by its handler: a body of spaces
            // is not JSON).
            a.write_all(&vec![b' '; 10_000]).await.unwrap();
            let answer = read_for(&mut a, Duration::from_secs(3)).await;
            assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
            drop(a);
            // Its share is given back: another large body is read.
            let mut c = partial_post(&s, 100_000, 100_000).await;
            let answer = read_for(&mut c, Duration::from_secs(3)).await;
            assert!(answer.starts_with("HTTP/1.1 422"), "{answer}");
            s.stop().await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_may_not_last_longer_than_body_max_seconds() {
    Backend::Sled
        .run(async {
            let s = TestServer::start_with(HttpConfig {
                body_timeout_seconds: 1,
                body_min_rate: 100,
                body_max_seconds: 2,
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            // 1,000 bytes every 0.3 s: ten times the minimum rate, but never done.
            let mut c = partial_post(&s, 1_000_000, 1_000).await;
            let started = std::time::Instant::now();
            let mut answer = String::new();
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if c.write_all(&[b' '; 1_000]).await.is_err() {
                    break;
                }
                answer = read_for(&mut c, Duration::from_millis(1)).await;
                if !answer.is_empty() {
                    break;
                }
            }
            if answer.is_empty() {
                answer = read_for(&mut c, Duration::from_secs(2)).await;
            }
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(
                started.elapsed() < PATIENCE,
                "cut off after {:?}",
                started.elapsed()
            );
            s.stop().await;
        })
        .await;
}

/// Review finding: a handler kept running after its client went away, so a client
/// that sends requests and hangs up could pile up work without any connection
/// limit noticing. Handlers in progress are now bounded (`max_inflight_requests`,
/// 503 at once beyond), and a read stops when its client goes away, giving its
/// place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_progress_are_bounded_and_a_gone_reader_gives_its_place_back() {
    Backend::Sled
        .run(async {
            let s = TestServer::start_with(HttpConfig {
                max_inflight_requests: 2,
                // Listens wait for a message (no keep-alive answer).
                keep_alive_period: 0,
                ..HttpConfig::for_tests(SECRET)
            })
            .await;
            let (_, token) = s.user("alice", false, true, &[]).await;
            let mut listens = Vec::new();
            for _ in 0..2 {
                let r = s.post("/latest/subscribe/node", Some(&token), &json!({})).await;
                assert_eq!(r.code(), 200, "{}", r.text());
                let id = r.json()["id"].clone();
                let mut c = connect_from(Ipv4Addr::new(127, 0, 0, 2), s.addr).await;
                let head = format!(
                    "GET /latest/listen/{id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
                );
                c.write_all(head.as_bytes()).await.unwrap();
                listens.push(c);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Both places are taken by the waiting listens.
            let r = s.get("/latest/count", None).await;
            assert_eq!(
                (r.code(), r.detail()),
                (503, json!("Server busy: too many requests in progress"))
            );
            // A listener that hangs up gives its place back.
            drop(listens.pop());
            let mut code = 0;
            for _ in 0..50 {
                code = s.get("/latest/count", None).await.code();
                if code == 200 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(code, 200, "the place of a gone listener was not freed");
            s.stop().await;
        })
        .await;
}

#[test]
fn max_inflight_requests_must_be_positive() {
    let config = HttpConfig {
        max_inflight_requests: 0,
        ..HttpConfig::for_tests(SECRET)
    };
    assert!(config.validate().is_err());
}
