//! The server over real HTTP on loopback, side by side with the store it serves
//! and with a hyper hello-world, in one run (issue 13's harness, first part).
//!
//! ```sh
//! cargo build --release -p kernelci-server
//! cargo run --release -p kernelci-benches --example store_probe -- 100000   # builds the store once
//! cargo run --release -p kernelci-benches --example http_bench -- 100000 [SECONDS]
//! ```
//!
//! 1. **Query shapes**: every shape of the workload, first on the store itself
//!    (`time_shape_as_served`: the calls the server makes, nodes written as JSON
//!    by the store, in this process), then, with the store closed, over HTTP from
//!    the release server serving that same directory: median of ITERS sequential
//!    requests on one keep-alive connection each (the body read whole). The same
//!    data and the same answers, so the difference is what HTTP costs; the
//!    hello-world's own round trip on one connection (same run) is the part of it
//!    every server pays, and the last columns check issue 13's target (3 µs per
//!    node in the answer plus 50 µs per request) with and without it.
//! 2. **Point reads**: `GET /node/{id}` over random ids, 64 connections, SECONDS;
//!    then the same load on a hyper hello-world (this program, `hello` mode, two
//!    worker threads as the server) answering a node-sized JSON: the ratio.
//! 3. **Durable writes**: `POST /node` on a new, empty store with 1, 8, 32 and 128
//!    clients, SECONDS each: nodes/s, latency percentiles, and the server's CPU
//!    time per written node (from `/proc/PID/stat`).
//!
//! 4. **Hierarchy submissions**: `PUT /nodes/{id}` with 50 new children, 1, 8 and
//!    32 clients on a new store.
//! 5. **Event delivery**: 50 listeners long-polling the `node` channel while one
//!    client creates a node every 10 ms: time from the write's answer to each
//!    listener holding the event.
//!
//! 6. **Disk and memory after a load through the API** (`disk`): the workload's N
//!    nodes posted one by one (`POST /node`, 32 clients, each node once its
//!    parent's new id is known) into a new store; then the data directory's size
//!    and the server's RSS while it runs, after a clean stop, and after a restart
//!    (the indexes reloaded), per node.
//!
//! `SECTIONS=queries,reads,writes,hierarchy,pubsub,disk` (default: all) runs only
//! those. `SECTIONS=paths PATHS='/latest/count /latest/nodes?kind=x'` (only when
//! named) times the listed requests against each other on the N-node store.
//! The load generator is this process: one thread (like `wrk -t1`), one task per
//! connection, hyper's HTTP/1.1 client. N = 1000000 runs every section on the
//! 1M-node store (store_probe builds it; about 5 minutes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::net::TcpStream;

use kernelci_benches::server::start_server;
use kernelci_store::{SledConfig, SledStore};

/// A request maker: the i-th request of a connection.
type MakeRequest = Arc<dyn Fn(usize) -> Request<Full<Bytes>> + Send + Sync>;

/// Latencies (µs, sorted) and the number of requests answered 2xx.
struct Load {
    micros: Vec<u64>,
    ok: usize,
    seconds: f64,
}

impl Load {
    fn pct(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        self.micros[i] as f64 / 1000.0
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
}

/// `connections` connections to `addr`, each sending `make(i)` in a loop for
/// `duration`.
async fn load(addr: &str, connections: usize, duration: Duration, make: MakeRequest) -> Load {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = addr.to_owned();
        let make = Arc::clone(&make);
        tasks.push(tokio::task::spawn_local(async move {
            let stream = TcpStream::connect(&addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::task::spawn_local(conn);
            let mut micros = Vec::new();
            let mut ok = 0;
            let mut i = c * 1_000_003;
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = sender.send_request(make(i)).await.unwrap();
                let status = resp.status();
                resp.into_body().collect().await.unwrap();
                micros.push(t.elapsed().as_micros() as u64);
                if status.is_success() {
                    ok += 1;
                }
                i += 1;
            }
            (micros, ok)
        }));
    }
    let mut all = Vec::new();
    let mut ok = 0;
    for t in tasks {
        let (m, o) = t.await.unwrap();
        all.extend(m);
        ok += o;
    }
    all.sort_unstable();
    Load {
        micros: all,
        ok,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// `iters` GETs of `path` one after the other on one keep-alive connection (after
/// one not counted); their times in ms, sorted.
async fn sequential(addr: &str, path: &str, iters: usize) -> Vec<f64> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::task::spawn_local(conn);
    let mut times = Vec::with_capacity(iters);
    for i in 0..=iters {
        let t = Instant::now();
        let resp = sender.send_request(get(addr, path, None)).await.unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.into_body().collect().await.unwrap();
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

fn get(addr: &str, path: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(path).header("host", addr);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

/// One request on a new connection: the status and the body.
async fn call(addr: &str, req: Request<Full<Bytes>>) -> (hyper::StatusCode, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::task::spawn_local(conn);
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// A JSON request with a bearer token.
fn json_req(
    method: &str,
    addr: &str,
    path: &str,
    token: &str,
    body: String,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The server's CPU seconds so far (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}

async fn login(addr: &str, password: &str) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::task::spawn_local(conn);
    let req = Request::post("/latest/user/login")
        .header("host", addr)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "username=admin&password={password}"
        ))))
        .unwrap();
    let body = sender
        .send_request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

/// `hello` mode: a hyper server with two worker threads answering every request
/// with the file's bytes as JSON.
fn hello(port: &str, file: &str) {
    let body = Bytes::from(std::fs::read(file).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        println!("listening");
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("hello") {
        return hello(&args[1], &args[2]);
    }
    let n: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let seconds: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(8);
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let duration = Duration::from_secs(seconds);
    // SECTIONS=queries,reads,writes (default: all) runs only those parts.
    let sections = std::env::var("SECTIONS").unwrap_or_else(|_| "all".into());
    let run = |name: &str| sections == "all" || sections.split(',').any(|s| s == name);
    let dir = kernelci_benches::cache_dir().join(format!("store-{n}"));
    let ids: Vec<String> =
        std::fs::read_to_string(kernelci_benches::cache_dir().join(format!("store-{n}.ids")))
            .expect("run store_probe first: it builds the store and its id list")
            .lines()
            .map(str::to_owned)
            .collect();
    let shapes = kernelci_benches::shapes(n, 1).unwrap();

    // 1. The store alone, then closed.
    let mut store_ms = Vec::new();
    if run("queries") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = SledStore::open(&dir, SledConfig::default()).unwrap();
        for s in &shapes {
            let (times, len) =
                kernelci_benches::time_shape_as_served(&rt, &store, s, iters).unwrap();
            store_ms.push((times[times.len() / 2], len));
        }
        store.close().unwrap();
    }

    let local = tokio::task::LocalSet::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    local.block_on(&rt, async {
        if run("queries") {
            queries(&dir, &shapes, &store_ms, iters, n).await;
        }
        if sections.split(',').any(|s| s == "paths") {
            paths(&dir, iters).await;
        }
        if run("reads") {
            reads(&dir, ids, n, duration).await;
        }
        if run("writes") {
            writes(duration).await;
        }
        if run("hierarchy") {
            hierarchy(duration).await;
        }
        if run("pubsub") {
            pubsub(duration).await;
        }
        if run("disk") {
            disk(n).await;
        }
    });
}

/// `SECTIONS=paths PATHS='/latest/count /latest/nodes?kind=x'`: the median round
/// trip of each path on one connection, in three alternating rounds, to compare
/// two requests' costs on one server in one run.
async fn paths(dir: &Path, iters: usize) {
    let list = std::env::var("PATHS").unwrap_or_default();
    let server = start_server(dir);
    println!("| path | median ms, three rounds |");
    println!("|---|---:|");
    let mut medians: Vec<Vec<f64>> = vec![Vec::new(); list.split_whitespace().count()];
    for _ in 0..3 {
        for (path, m) in list.split_whitespace().zip(medians.iter_mut()) {
            let times = sequential(&server.addr, path, iters).await;
            m.push(times[times.len() / 2]);
        }
    }
    for (path, m) in list.split_whitespace().zip(&medians) {
        let text: Vec<String> = m.iter().map(|v| format!("{v:.3}")).collect();
        println!("| {path} | {} |", text.join(" / "));
    }
    println!();
}

/// Section 1 over HTTP: every shape, beside its store-level median and a hyper
/// hello-world's round trip measured in the same run (the part of "HTTP" that any
/// server on this machine pays: loopback, the client, one wake-up each side).
async fn queries(
    dir: &Path,
    shapes: &[kernelci_benches::Shape],
    store_ms: &[(f64, usize)],
    iters: usize,
    n: usize,
) {
    let hello = Hello::start(n);
    let rtt = {
        let times = sequential(&hello.addr, "/doc", iters.max(100)).await;
        times[times.len() / 2]
    };
    drop(hello);
    let server = start_server(dir);
    let addr = server.addr.clone();
    println!("hyper hello-world round trip, same JSON, one connection: median {rtt:.3} ms");
    println!();
    println!(
        "| shape | total, items or count | nodes in the answer | store median ms | HTTP median ms | HTTP − store ms | beyond the hello-world round trip ms | target: 0.05 + 0.003 × nodes ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (mut within, mut within_beyond) = (0, 0);
    for (s, (store_med, len)) in shapes.iter().zip(store_ms) {
        let path = match s.endpoint.as_str() {
            "nodes" => format!("/latest/nodes?{}", s.query),
            "fast" => format!("/latest/nodes/fast?{}", s.query),
            _ => format!("/latest/count?{}", s.query),
        };
        let (_, body) = call(&addr, get(&addr, &path, None)).await;
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let nodes = match &answer {
            serde_json::Value::Array(a) => a.len(),
            serde_json::Value::Object(m) => m
                .get("items")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len),
            _ => 0,
        };
        let times = sequential(&addr, &path, iters).await;
        let http_med = times[times.len() / 2];
        let added = http_med - store_med;
        let allowed = 0.05 + 0.003 * nodes as f64;
        within += usize::from(added <= allowed);
        within_beyond += usize::from(added - rtt <= allowed);
        println!(
            "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
            s.name,
            len,
            nodes,
            store_med,
            http_med,
            added,
            added - rtt,
            allowed
        );
    }
    println!();
    println!(
        "within the target: {within} of {} shapes; beyond the hello-world round trip: {within_beyond} of {}",
        shapes.len(),
        shapes.len()
    );
}

/// The hyper hello-world (this program in `hello` mode, its own process) answering
/// a node-sized JSON: a test node of the workload.
struct Hello {
    child: Child,
    addr: String,
    _doc: tempfile::NamedTempFile,
}

impl Hello {
    fn start(n: usize) -> Self {
        let doc = tempfile::NamedTempFile::new().unwrap();
        let sample = kernelci_benches::nodes(n.min(100_000), 1).unwrap();
        let test = sample.iter().find(|n| n.kind == "test").unwrap();
        std::fs::write(doc.path(), serde_json::to_vec(test).unwrap()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["hello", &port.to_string()])
            .arg(doc.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            _doc: doc,
        }
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Section 2: point reads, then the hello-world.
async fn reads(dir: &Path, ids: Vec<String>, n: usize, duration: Duration) {
    let server = start_server(dir);
    let addr = server.addr.clone();
    let a = addr.clone();
    let ids = Arc::new(ids);
    let reads: MakeRequest = Arc::new(move |i| {
        let id = &ids[(i.wrapping_mul(2_654_435_761)) % ids.len()];
        get(&a, &format!("/latest/node/{id}"), None)
    });
    let r = load(&addr, 64, duration, reads).await;
    drop(server);
    let hello = Hello::start(n);
    let haddr = hello.addr.clone();
    let ha = haddr.clone();
    let hmake: MakeRequest = Arc::new(move |_| get(&ha, "/doc", None));
    let h = load(&haddr, 64, duration, hmake).await;
    drop(hello);
    println!();
    println!("| point reads, 64 connections | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| GET /node/{{id}} | {:.0} | {:.2} | {:.2} |",
        r.rate(),
        r.pct(0.5),
        r.pct(0.99)
    );
    println!(
        "| hyper hello-world, the same JSON | {:.0} | {:.2} | {:.2} |",
        h.rate(),
        h.pct(0.5),
        h.pct(0.99)
    );
    println!("| ratio | {:.2} | | |", r.rate() / h.rate());
}

/// Section 3: durable writes on a new store.
async fn writes(duration: Duration) {
    let fresh = tempfile::tempdir().unwrap();
    let server = start_server(&fresh.path().join("data"));
    let addr = server.addr.clone();
    let token = Arc::new(login(&addr, &server.password).await);
    println!();
    println!(
        "| POST /node, clients | nodes/s | p50 ms | p99 ms | server CPU µs/node | load generator CPU µs/node |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for clients in [1, 8, 32, 128] {
        let a = addr.clone();
        let t = Arc::clone(&token);
        let make: MakeRequest = Arc::new(move |i| {
            let body = format!(
                r#"{{"kind":"checkout","name":"bench-{clients}-{i}","path":["bench-{clients}-{i}"],"data":{{"kernel_revision":{{"tree":"mainline","branch":"master","commit":"c{i}","url":"https://git.example.org/linux.git"}}}}}}"#
            );
            Request::post("/latest/node")
                .header("host", &a)
                .header("authorization", format!("Bearer {t}"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        });
        let (cpu0, own0) = (
            cpu_seconds(server.child.id()),
            cpu_seconds(std::process::id()),
        );
        let w = load(&addr, clients, duration, make).await;
        let cpu = cpu_seconds(server.child.id()) - cpu0;
        let own = cpu_seconds(std::process::id()) - own0;
        println!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} |",
            w.rate(),
            w.pct(0.5),
            w.pct(0.99),
            cpu / w.ok.max(1) as f64 * 1e6,
            own / w.ok.max(1) as f64 * 1e6
        );
    }
}

/// Section 4: hierarchy submissions (`PUT /nodes/{id}`: the root and 50 new test
/// nodes, as a lab posts a job's results) on a new store, 1, 8 and 32 clients, each
/// on its own root; nodes/s counts the 51 nodes each submission writes.
async fn hierarchy(duration: Duration) {
    const CHILDREN: usize = 50;
    let fresh = tempfile::tempdir().unwrap();
    let server = start_server(&fresh.path().join("data"));
    let addr = server.addr.clone();
    let token = login(&addr, &server.password).await;
    println!();
    println!(
        "| PUT /nodes/{{id}} ({CHILDREN} children), clients | nodes/s | submissions/s | p50 ms | p99 ms | server CPU µs/node |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for clients in [1, 8, 32] {
        let mut roots = Vec::new();
        for c in 0..clients {
            let body = format!(
                r#"{{"kind":"job","name":"root-{clients}-{c}","path":["checkout","root-{clients}-{c}"]}}"#
            );
            let (status, root) =
                call(&addr, json_req("POST", &addr, "/latest/node", &token, body)).await;
            assert!(status.is_success(), "{status}");
            let root: serde_json::Value = serde_json::from_slice(&root).unwrap();
            roots.push(root);
        }
        let roots = Arc::new(roots);
        let (a, t) = (addr.clone(), token.clone());
        let make: MakeRequest = Arc::new(move |i| {
            let root = &roots[(i / 1_000_003) % roots.len()];
            let id = root["id"].as_str().unwrap();
            let children: Vec<serde_json::Value> = (0..CHILDREN)
                .map(|j| {
                    serde_json::json!({"node": {"kind": "test", "name": format!("t{i}-{j}"),
                        "path": ["checkout", "root", format!("t{i}-{j}")], "result": "pass"}})
                })
                .collect();
            let body = serde_json::json!({"node": root, "child_nodes": children}).to_string();
            json_req("PUT", &a, &format!("/latest/nodes/{id}"), &t, body)
        });
        let cpu0 = cpu_seconds(server.child.id());
        let w = load(&addr, clients, duration, make).await;
        let cpu = cpu_seconds(server.child.id()) - cpu0;
        let nodes = (w.ok * (CHILDREN + 1)) as f64;
        println!(
            "| {clients} | {:.0} | {:.0} | {:.2} | {:.2} | {:.0} |",
            nodes / w.seconds,
            w.rate(),
            w.pct(0.5),
            w.pct(0.99),
            cpu / nodes.max(1.0) * 1e6
        );
    }
}

/// Section 5: event delivery latency. LISTENERS subscribers of the `node` channel
/// each long-poll `GET /listen/{id}` on their own connection while one client
/// creates a node every 10 ms for SECONDS; a delivery's latency is the time from
/// the write's answer to a listener holding the event (negative: the event
/// arrived before the writer read its answer).
async fn pubsub(duration: Duration) {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    const LISTENERS: usize = 50;
    let fresh = tempfile::tempdir().unwrap();
    let server = start_server(&fresh.path().join("data"));
    let addr = server.addr.clone();
    let token = login(&addr, &server.password).await;
    let received: Rc<RefCell<Vec<(u64, Instant)>>> = Rc::default();
    let mut tasks = Vec::new();
    for _ in 0..LISTENERS {
        let (status, sub) = call(
            &addr,
            json_req(
                "POST",
                &addr,
                "/latest/subscribe/node",
                &token,
                String::new(),
            ),
        )
        .await;
        assert!(status.is_success(), "{status}");
        let sub: serde_json::Value = serde_json::from_slice(&sub).unwrap();
        let id = sub["id"].as_u64().unwrap();
        let (a, t, got) = (addr.clone(), token.clone(), Rc::clone(&received));
        tasks.push(tokio::task::spawn_local(async move {
            let stream = TcpStream::connect(&a).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::task::spawn_local(conn);
            loop {
                let req = Request::get(format!("/latest/listen/{id}"))
                    .header("host", &a)
                    .header("authorization", format!("Bearer {t}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let Ok(resp) = sender.send_request(req).await else {
                    return;
                };
                let Ok(body) = resp.into_body().collect().await else {
                    return;
                };
                let at = Instant::now();
                let body = body.to_bytes();
                // The node's name, `lat-K`, somewhere in the event.
                if let Some(k) = body.windows(4).position(|w| w == b"lat-").and_then(|p| {
                    let digits: String = body[p + 4..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .map(|b| *b as char)
                        .collect();
                    digits.parse().ok()
                }) {
                    got.borrow_mut().push((k, at));
                }
            }
        }));
    }
    // The listeners are waiting: write.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stream = TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::task::spawn_local(conn);
    let mut acked: HashMap<u64, Instant> = HashMap::new();
    let end = Instant::now() + duration;
    let mut k = 0u64;
    while Instant::now() < end {
        let body = format!(r#"{{"kind":"checkout","name":"lat-{k}","path":["lat-{k}"]}}"#);
        let resp = sender
            .send_request(json_req("POST", &addr, "/latest/node", &token, body))
            .await
            .unwrap();
        assert!(resp.status().is_success());
        resp.into_body().collect().await.unwrap();
        acked.insert(k, Instant::now());
        k += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for t in &tasks {
        t.abort();
    }
    let mut lat: Vec<f64> = received
        .borrow()
        .iter()
        .filter_map(|(k, at)| {
            let ack = acked.get(k)?;
            Some(if at >= ack {
                at.duration_since(*ack).as_secs_f64() * 1e3
            } else {
                -(ack.duration_since(*at).as_secs_f64() * 1e3)
            })
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!();
    println!("| event delivery, {LISTENERS} listeners | events | deliveries | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| write answered → listener has it | {k} | {} of {} | {:.2} | {:.2} | {:.2} |",
        lat.len(),
        k as usize * LISTENERS,
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

/// The resident memory of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> u64 {
    kernelci_benches::rss_bytes(&pid.to_string())
}

/// Section 6: the workload loaded through the API, then disk and memory per node.
async fn disk(n: usize) {
    const CLIENTS: usize = 32;
    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("data");
    let server = start_server(&data);
    let addr = server.addr.clone();
    let token = Arc::new(login(&addr, &server.password).await);
    // Each node waits for its parent's new id, then for one of CLIENTS slots.
    let text = std::fs::read_to_string(kernelci_benches::nodes_path(n, 1).unwrap()).unwrap();
    // The groups the nodes name must exist.
    let mut groups = std::collections::BTreeSet::new();
    for line in text.lines() {
        let node: serde_json::Value = serde_json::from_str(line).unwrap();
        for g in node["user_groups"].as_array().into_iter().flatten() {
            groups.extend(g.as_str().map(str::to_owned));
        }
    }
    for g in groups {
        let body = serde_json::json!({ "name": g }).to_string();
        let (status, body) = call(
            &addr,
            json_req("POST", &addr, "/latest/user-groups", &token, body),
        )
        .await;
        assert!(
            status.is_success(),
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut ids: Vec<tokio::sync::watch::Sender<Option<String>>> = Vec::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS).map(|_| None).collect();
    let clients = Arc::new(std::sync::Mutex::new(clients));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for line in text.lines() {
        let mut node: serde_json::Value = serde_json::from_str(line).unwrap();
        let old_id = node["id"].as_str().unwrap().to_owned();
        let parent = node["parent"]
            .as_str()
            .and_then(|p| index.get(p))
            .map(|&i| ids[i].subscribe());
        if let Some(obj) = node.as_object_mut() {
            obj.remove("id");
        }
        let (tx, _) = tokio::sync::watch::channel(None);
        let me = tx.clone();
        index.insert(old_id, ids.len());
        ids.push(tx);
        let (addr, token, slots, clients) = (
            addr.clone(),
            Arc::clone(&token),
            Arc::clone(&slots),
            Arc::clone(&clients),
        );
        tasks.push(tokio::task::spawn_local(async move {
            if let Some(mut parent) = parent {
                let id = parent.wait_for(Option::is_some).await.unwrap().clone();
                node["parent"] = serde_json::Value::String(id.unwrap());
            }
            let _slot = slots.acquire().await.unwrap();
            // Reuse one of the CLIENTS keep-alive connections.
            let sender = clients.lock().unwrap().iter_mut().find_map(Option::take);
            let mut sender = match sender {
                Some(s) => s,
                None => {
                    let stream = TcpStream::connect(&addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                    tokio::task::spawn_local(conn);
                    sender
                }
            };
            let req = json_req("POST", &addr, "/latest/node", &token, node.to_string());
            let resp = sender.send_request(req).await.unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert!(
                status.is_success(),
                "{status}: {}",
                String::from_utf8_lossy(&body)
            );
            let created: serde_json::Value = serde_json::from_slice(&body).unwrap();
            me.send_replace(created["id"].as_str().map(str::to_owned));
            if let Some(free) = clients.lock().unwrap().iter_mut().find(|c| c.is_none()) {
                *free = Some(sender);
            }
        }));
    }
    drop(text);
    for t in tasks {
        t.await.unwrap();
    }
    let took = start.elapsed().as_secs_f64();
    let per = |bytes: u64| bytes as f64 / n as f64;
    let live_disk = kernelci_benches::dir_bytes(&data);
    let live_rss = rss_bytes(server.child.id());
    drop(server);
    let stopped_disk = kernelci_benches::dir_bytes(&data);
    let server = start_server(&data);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reopened_rss = rss_bytes(server.child.id());
    let reopened_disk = kernelci_benches::dir_bytes(&data);
    drop(server);
    println!();
    println!(
        "loaded {n} nodes through POST /node ({CLIENTS} clients) in {took:.1} s ({:.0} nodes/s)",
        n as f64 / took
    );
    println!();
    println!("| after the load | disk MiB | disk B/node | RSS MiB | RSS B/node |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| running | {} | {:.0} | {} | {:.0} |",
        live_disk >> 20,
        per(live_disk),
        live_rss >> 20,
        per(live_rss)
    );
    println!(
        "| stopped (clean close) | {} | {:.0} | | |",
        stopped_disk >> 20,
        per(stopped_disk)
    );
    println!(
        "| restarted, idle | {} | {:.0} | {} | {:.0} |",
        reopened_disk >> 20,
        per(reopened_disk),
        reopened_rss >> 20,
        per(reopened_rss)
    );
    let store = SledStore::open(&data, SledConfig::default()).unwrap();
    println!();
    println!("| records | count | bytes | B/node |");
    println!("|---|---:|---:|---:|");
    for r in store.record_sizes().unwrap() {
        println!(
            "| {} | {} | {} | {:.0} |",
            r.kind,
            r.count,
            r.bytes,
            per(r.bytes)
        );
    }
    store.close().unwrap();
    // KCI_KEEP_DIR=path keeps the loaded directory there (to look inside).
    if let Some(keep) = std::env::var_os("KCI_KEEP_DIR") {
        std::fs::rename(&data, keep).unwrap();
    }
}
