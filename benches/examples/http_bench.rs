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
//!    (`time_shape`, in this process), then, with the store closed, over HTTP from
//!    the release server serving that same directory: median of ITERS sequential
//!    requests on one keep-alive connection each (the body read whole). The same
//!    data and the same answers, so the difference is what HTTP costs.
//! 2. **Point reads**: `GET /node/{id}` over random ids, 64 connections, SECONDS;
//!    then the same load on a hyper hello-world (this program, `hello` mode, two
//!    worker threads as the server) answering a node-sized JSON: the ratio.
//! 3. **Durable writes**: `POST /node` on a new, empty store with 1, 8, 32 and 128
//!    clients, SECONDS each: nodes/s, latency percentiles, and the server's CPU
//!    time per written node (from `/proc/PID/stat`).
//!
//! The load generator is this process: one thread (like `wrk -t1`), one task per
//! connection, hyper's HTTP/1.1 client. Not yet here: hierarchy submissions,
//! pub/sub latency, 1M nodes over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use tokio::net::TcpStream;

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

/// A running release server and what it printed.
struct Server {
    child: Child,
    addr: String,
    password: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn server_bin() -> PathBuf {
    std::env::var_os("KCI_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/kernelci-server"),
        PathBuf::from,
    )
}

fn start_server(data: &Path) -> Server {
    let mut child = Command::new(server_bin())
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the release server (cargo build --release -p kernelci-server)");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut password) = (String::new(), String::new());
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(a) = line
            .trim()
            .strip_prefix("kernelci-server listening on http://")
        {
            addr = a.to_owned();
        }
        if let Some(p) = line.split("password=").nth(1) {
            password = p.split_whitespace().next().unwrap().to_owned();
            break;
        }
        line.clear();
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Server {
        child,
        addr,
        password,
    }
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
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let store = SledStore::open(&dir, SledConfig::default()).unwrap();
        for s in &shapes {
            let (times, len) = kernelci_benches::time_shape(&rt, &store, s, iters).unwrap();
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
        let server = start_server(&dir);
        let addr = server.addr.clone();
        println!("| shape | total, items or count | store median ms | HTTP median ms | HTTP − store ms |");
        println!("|---|---:|---:|---:|---:|");
        for (s, (store_med, len)) in shapes.iter().zip(&store_ms) {
            let path = match s.endpoint.as_str() {
                "nodes" => format!("/latest/nodes?{}", s.query),
                "fast" => format!("/latest/nodes/fast?{}", s.query),
                _ => format!("/latest/count?{}", s.query),
            };
            let times = sequential(&addr, &path, iters).await;
            let http_med = times[times.len() / 2];
            println!(
                "| {} | {} | {:.3} | {:.3} | {:.3} |",
                s.name,
                len,
                store_med,
                http_med,
                http_med - store_med
            );
        }

        // 2. Point reads, then the hello-world.
        let a = addr.clone();
        let ids = Arc::new(ids);
        let reads: MakeRequest = Arc::new(move |i| {
            let id = &ids[(i.wrapping_mul(2_654_435_761)) % ids.len()];
            get(&a, &format!("/latest/node/{id}"), None)
        });
        let r = load(&addr, 64, duration, reads).await;
        drop(server);
        let doc = tempfile::NamedTempFile::new().unwrap();
        let sample = kernelci_benches::nodes(n, 1).unwrap();
        let test = sample.iter().find(|n| n.kind == "test").unwrap();
        std::fs::write(doc.path(), serde_json::to_vec(test).unwrap()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut hello = Command::new(std::env::current_exe().unwrap())
            .args(["hello", &port.to_string()])
            .arg(doc.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(hello.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let haddr = format!("127.0.0.1:{port}");
        let ha = haddr.clone();
        let hmake: MakeRequest = Arc::new(move |_| get(&ha, "/doc", None));
        let h = load(&haddr, 64, duration, hmake).await;
        let _ = hello.kill();
        let _ = hello.wait();
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

        // 3. Durable writes on a new store.
        let fresh = tempfile::tempdir().unwrap();
        let server = start_server(&fresh.path().join("data"));
        let addr = server.addr.clone();
        let token = Arc::new(login(&addr, &server.password).await);
        println!();
        println!("| POST /node, clients | nodes/s | p50 ms | p99 ms | server CPU µs/node |");
        println!("|---:|---:|---:|---:|---:|");
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
            let cpu0 = cpu_seconds(server.child.id());
            let w = load(&addr, clients, duration, make).await;
            let cpu = cpu_seconds(server.child.id()) - cpu0;
            println!(
                "| {clients} | {:.0} | {:.2} | {:.2} | {:.0} |",
                w.rate(),
                w.pct(0.5),
                w.pct(0.99),
                cpu / w.ok.max(1) as f64 * 1e6
            );
        }
    });
}
