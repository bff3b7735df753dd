//! `GET /events/stream` over real HTTP (API.md §7): the event log as server-sent
//! events, resumed from `Last-Event-ID`, filtered as `/events`, bounded, ended by
//! the server's stop, and fed by every server sharing a PostgreSQL store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{every_backend, Backend, Location, TestServer, SECRET};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kernelci_http::HttpConfig;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// An open stream: the answer's head and its body, read event by event.
struct Stream {
    status: u16,
    headers: hyper::HeaderMap,
    body: Incoming,
    buffer: String,
    /// The last `id:` seen in any frame (what a browser sends when it reconnects).
    last_id: Option<u64>,
}

/// One server-sent event: its `id:` and its `data:` as JSON.
#[derive(Debug)]
struct Sse {
    id: Option<u64>,
    data: Value,
}

/// What reading a stream for a while gave.
#[derive(Debug)]
enum Next {
    /// An event with data.
    Event(Sse),
    /// The server ended the stream.
    End,
    /// Nothing within the wait (the stream is still open).
    Quiet,
}

impl Stream {
    async fn open(s: &TestServer, query: &str, headers: &[(&str, &str)]) -> Stream {
        let tcp = TcpStream::connect(s.addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut b = Request::builder()
            .uri(format!("/latest/events/stream{query}"))
            .header("host", s.addr.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp: Response<Incoming> = sender
            .send_request(b.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        Stream {
            status,
            headers,
            body: resp.into_body(),
            buffer: String::new(),
            last_id: None,
        }
    }

    /// The whole body of an answer that is not a stream (an error).
    async fn rest(mut self) -> String {
        while let Some(f) = self.body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                self.buffer.push_str(&String::from_utf8_lossy(&d));
            }
        }
        self.buffer
    }

    /// The next event with data (comments, `retry:` and id-only frames skipped),
    /// the end of the stream, or nothing within `wait`.
    async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.parse().unwrap());
                        self.last_id = id;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let Some(data) = data {
                    return Next::Event(Sse { id, data });
                }
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => return Next::End,
                Ok(Some(frame)) => {
                    if let Ok(d) = frame.unwrap().into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&d));
                    }
                }
            }
        }
    }

    /// The next event, which must come within [`WAIT`].
    async fn event(&mut self, what: &str) -> Sse {
        match self.next(WAIT).await {
            Next::Event(e) => e,
            other => panic!("{what}: {other:?}"),
        }
    }

    /// Nothing more for a while, the stream still open.
    async fn quiet(&mut self, what: &str) {
        match self.next(QUIET).await {
            Next::Quiet => {}
            other => panic!("{what}: {other:?}"),
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(700);

async fn node(s: &TestServer, token: &str, kind: &str, name: &str) -> Value {
    let r = s
        .post(
            "/latest/node",
            Some(token),
            &json!({"kind": kind, "name": name, "path": [name]}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    r.json()
}

/// The `/events` documents of `query`, as the stream must send them.
async fn events(s: &TestServer, query: &str) -> Vec<Value> {
    let r = s.get(&format!("/latest/events?{query}"), None).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    r.json().as_array().unwrap().clone()
}

every_backend!(
    new_events_arrive_filtered_with_their_sequence_ids,
    a_reconnect_resumes_after_the_last_event_id,
    bad_requests_and_the_bound_on_streams,
    a_filtered_stream_reads_past_other_events_once,
);

/// A stream opened with a filter gets the matching events appended after it
/// opened, each as `id: <sequence id>` and the `/events` document, and nothing
/// else; it is public.
async fn new_events_arrive_filtered_with_their_sequence_ids() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    node(&s, &token, "checkout", "before").await;
    let mut stream = Stream::open(&s, "?kind=kbuild", &[]).await;
    assert_eq!(stream.status, 200);
    assert_eq!(
        stream.headers["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    assert_eq!(
        stream.headers["cache-control"].to_str().unwrap(),
        "no-cache"
    );
    node(&s, &token, "checkout", "c1").await;
    let k = node(&s, &token, "kbuild", "k1").await;
    let got = stream.event("the kbuild's event").await;
    let want = events(&s, &format!("node_id={}", k["id"].as_str().unwrap())).await;
    assert_eq!(got.data, want[0]);
    assert_eq!(got.id, want[0]["sequence_id"].as_u64());
    assert_eq!(got.data["data"]["op"], "created");
    // An update of the same node comes next; the checkouts never do.
    let mut k2 = k.clone();
    k2["state"] = json!("done");
    k2["result"] = json!("fail");
    let r = s
        .put(
            &format!("/latest/node/{}", k["id"].as_str().unwrap()),
            Some(&token),
            &k2,
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let got = stream.event("the update's event").await;
    assert_eq!(
        (&got.data["data"]["op"], &got.data["data"]["result"]),
        (&json!("updated"), &json!("fail"))
    );
    stream.quiet("nothing else").await;
    s.stop().await;
}

/// `Last-Event-ID` (what a browser sends when it reconnects) and `after=` start
/// the stream after that event: the events after it are sent, in order, once.
async fn a_reconnect_resumes_after_the_last_event_id() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    for name in ["a", "b", "c"] {
        node(&s, &token, "checkout", name).await;
    }
    let all = events(&s, "kind=checkout").await;
    let first = all[0]["sequence_id"].as_u64().unwrap().to_string();
    for (query, headers) in [
        (
            "?kind=checkout".to_owned(),
            vec![("last-event-id", first.as_str())],
        ),
        (format!("?kind=checkout&after={first}"), vec![]),
        // The header wins over the parameter.
        (
            "?kind=checkout&after=999999".to_owned(),
            vec![("last-event-id", first.as_str())],
        ),
    ] {
        let mut stream = Stream::open(&s, &query, &headers).await;
        assert_eq!(stream.status, 200);
        for want in &all[1..] {
            let got = stream.event("a logged event").await;
            assert_eq!(&got.data, want, "{query}");
        }
        stream.quiet(&query).await;
    }
    // Without either, only what comes later; the first frame says where the
    // stream starts, so a browser reconnecting before any event resumes there.
    let mut stream = Stream::open(&s, "", &[]).await;
    stream.quiet("nothing else").await;
    let end = events(&s, "").await.last().unwrap()["sequence_id"].as_u64();
    assert_eq!(stream.last_id, end);
    let d = node(&s, &token, "checkout", "d").await;
    let got = stream.event("the new checkout").await;
    assert_eq!(got.data["data"]["id"], d["id"]);
    s.stop().await;
}

/// Bad parameters are a JSON 400; at most `max_event_streams` streams are open
/// (503 with Retry-After beyond), and a closed one gives its place back.
async fn bad_requests_and_the_bound_on_streams() {
    let mut config = HttpConfig::for_tests(SECRET);
    config.max_event_streams = 2;
    let s = TestServer::start_with(config).await;
    for (query, headers, detail) in [
        (
            "?limit=5",
            vec![],
            "'limit' is not available on the event stream (use GET /events)",
        ),
        (
            "?recursive=1",
            vec![],
            "'recursive' is not available on the event stream (use GET /events)",
        ),
        (
            "?after=x",
            vec![],
            "after must be an event sequence id (an integer >= 0)",
        ),
        (
            "",
            vec![("last-event-id", "-1")],
            "Last-Event-ID must be an event sequence id (an integer >= 0)",
        ),
        (
            "?id=nope",
            vec![],
            "'id' is not available on the event stream (use GET /events)",
        ),
    ] {
        let stream = Stream::open(&s, query, &headers).await;
        assert_eq!(stream.status, 400, "{query}");
        let body: Value = serde_json::from_str(&stream.rest().await).unwrap();
        assert_eq!(body, json!({ "detail": detail }), "{query}");
    }
    let a = Stream::open(&s, "", &[]).await;
    let b = Stream::open(&s, "", &[]).await;
    assert_eq!((a.status, b.status), (200, 200));
    let metrics = s.get("/metrics", None).await.text();
    assert!(
        metrics.lines().any(|l| l == "kci_event_streams 2"),
        "{metrics}"
    );
    let c = Stream::open(&s, "", &[]).await;
    assert_eq!(c.status, 503);
    assert_eq!(c.headers["retry-after"].to_str().unwrap(), "5");
    assert_eq!(
        serde_json::from_str::<Value>(&c.rest().await).unwrap(),
        json!({"detail": "Too many event streams"})
    );
    // The client of `a` goes away: its place is free once the server notices
    // (at its next write or wake-up; an event makes one).
    drop(a);
    let (_, token) = s.user("alice", false, true, &[]).await;
    let mut opened = None;
    for i in 0..50 {
        node(&s, &token, "checkout", &format!("poke{i}")).await;
        let d = Stream::open(&s, "", &[]).await;
        if d.status == 200 {
            opened = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        opened.is_some(),
        "the closed stream's place was not given back"
    );
    drop((b, opened));
    s.stop().await;
}

/// A graceful stop ends every open stream (the stop does not wait for the
/// clients to go away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_streams() {
    Backend::Sled
        .run(async {
            let s = TestServer::start().await;
            let mut stream = Stream::open(&s, "", &[]).await;
            assert_eq!(stream.status, 200);
            let stop = tokio::spawn(s.stop());
            assert!(matches!(stream.next(WAIT).await, Next::End));
            tokio::time::timeout(WAIT, stop)
                .await
                .expect("the stop finished")
                .unwrap();
        })
        .await;
}

/// Two servers sharing one PostgreSQL database: a stream opened on one gets the
/// events written through the other (read from the log, woken by NOTIFY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_gets_the_events_of_another_server() {
    Backend::Postgres
        .run(async {
            let Location::Postgres(url) = Location::fresh() else {
                unreachable!("a PostgreSQL location");
            };
            let config = HttpConfig::for_tests(SECRET);
            let one = TestServer::start_at(Location::Postgres(url.clone()), config.clone()).await;
            let two = TestServer::start_at(Location::Postgres(url), config).await;
            let (_, token) = one.user("alice", false, true, &[]).await;
            let mut stream = Stream::open(&one, "?kind=job", &[]).await;
            assert_eq!(stream.status, 200);
            let j = node(&two, &token, "job", "through-two").await;
            let got = stream.event("the other server's event").await;
            assert_eq!(got.data["data"]["id"], j["id"]);
            drop(stream);
            two.stop().await;
            one.stop().await;
        })
        .await;
}

/// `kci_store_operation_duration_seconds_count` of `operation`.
async fn store_reads(s: &TestServer, operation: &str) -> f64 {
    let text = s.get("/metrics", None).await.text();
    let series =
        format!("kci_store_operation_duration_seconds_count{{operation=\"{operation}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// A stream of one channel reads the log past other channels' events once: its
/// position moves over them, so their wake-ups (on PostgreSQL, their
/// notifications) do not make it read them again, or in a loop until an event of
/// its channel comes.
async fn a_filtered_stream_reads_past_other_events_once() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let mut stream = Stream::open(&s, "?channel=node", &[]).await;
    assert_eq!(stream.status, 200);
    for i in 0..5 {
        let r = s
            .post(
                "/latest/publish/other",
                Some(&token),
                &json!({"data": {"i": i}}),
            )
            .await;
        assert_eq!(r.code(), 200, "{}", r.text());
    }
    stream.quiet("no node event").await;
    // Settled: about one look at the log a second from now on.
    let before = store_reads(&s, "events_after").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reads = store_reads(&s, "events_after").await - before;
    assert!(reads <= 8.0, "{reads} reads of the log in 2 s while idle");
    // And the stream still gets its own channel's events.
    let c = node(&s, &token, "checkout", "after-others").await;
    assert_eq!(
        stream.event("the node event").await.data["data"]["id"],
        c["id"]
    );
    s.stop().await;
}
