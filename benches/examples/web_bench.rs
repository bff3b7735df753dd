//! The web pages' weight, and how soon the viewer shows its first results at N
//! nodes, in a real browser (issue 14).
//!
//! ```sh
//! cargo build --release -p kernelci-server
//! cargo run --release -p kernelci-benches --example store_probe -- 100000   # builds the store once
//! cargo run --release -p kernelci-benches --example web_bench -- 100000 [RUNS]
//! ```
//!
//! 1. **Weight**: each page's HTML and every asset it loads (the stylesheets,
//!    its module and, followed through their `from "./x.js"` imports, the modules
//!    it needs), as the server sends them: bytes uncompressed and with
//!    `Accept-Encoding: gzip`.
//! 2. **Speed**: Debian's Chromium, headless, through ChromeDriver, opens each
//!    viewer URL RUNS times (default 10) on the release server serving the
//!    N-node store built by `store_probe`; the figure is the time from the
//!    navigation's start to the results drawn (`#total`, or the node's fields),
//!    read in the page (`performance.now()`), and the slowest API request the
//!    page made for it (the browser's resource timing). The modules are
//!    revalidated on every load (304s); the browser profile is new for the run.
//!    The static landing page, timed the same way, is the browser's own floor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use kernelci_benches::server::start_server;
use serde_json::{json, Value};
use tokio::net::TcpStream;

/// The five pages.
const PAGES: [&str; 5] = ["viewer", "dashboard", "stats", "analytics", "manage"];

/// GETs `path`; returns the body as sent (compressed when `gzip`).
async fn fetch(addr: &str, path: &str, gzip: bool) -> Bytes {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", addr);
    if gzip {
        req = req.header("accept-encoding", "gzip");
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.into_body().collect().await.unwrap().to_bytes()
}

/// The assets page `name` loads: its stylesheets and its module with every
/// module that one imports, transitively.
async fn assets(addr: &str, name: &str) -> Vec<String> {
    let mut out = vec![
        "/static/css/style.css".to_owned(),
        "/static/css/web.css".to_owned(),
    ];
    let mut todo = vec![format!("{name}.js")];
    let mut seen = BTreeSet::new();
    while let Some(module) = todo.pop() {
        if !seen.insert(module.clone()) {
            continue;
        }
        let path = format!("/static/js/{module}");
        let text = String::from_utf8(fetch(addr, &path, false).await.to_vec()).unwrap();
        for part in text.split("from \"./").skip(1) {
            if let Some(end) = part.find('"') {
                todo.push(part[..end].to_owned());
            }
        }
        out.push(path);
    }
    out
}

async fn weights(addr: &str) {
    println!("| page | files | bytes | gzip bytes |");
    println!("|---|---:|---:|---:|");
    for page in PAGES {
        let mut files = vec![format!("/{page}")];
        files.extend(assets(addr, page).await);
        let (mut raw, mut gz) = (0, 0);
        for f in &files {
            raw += fetch(addr, f, false).await.len();
            gz += fetch(addr, f, true).await.len();
        }
        println!("| /{page} | {} | {raw} | {gz} |", files.len());
    }
}

/// ChromeDriver with a headless Chromium (the flags Chromium needs as root).
async fn browser() -> (Client, std::process::Child, tempfile::TempDir) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (apt install chromium chromium-driver)");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = fantoccini::wd::Capabilities::new();
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ];
    let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return (c, driver, profile),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("chromedriver: {e}"),
        }
    }
}

/// In the page: waits for `css` to have text, then answers the time since the
/// navigation started and the longest API request (ms).
const DRAWN: &str = "const [css, done] = arguments;\
    const check = () => {\
      const e = document.querySelector(css);\
      if (e && e.textContent) {\
        const api = performance.getEntriesByType('resource')\
          .filter((r) => r.name.includes('/latest/'));\
        done([performance.now(), Math.max(0, ...api.map((r) => r.duration))]);\
      } else { requestAnimationFrame(check); }\
    };\
    check();";

fn stats(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "{:.1} / {:.1} / {:.1}",
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

async fn speed(addr: &str, n: usize, runs: usize, node_id: &str) {
    let (c, mut driver, _profile) = browser().await;
    let base = format!("http://{addr}");
    let urls = [
        // The browser's own floor: a static page, no module, no API call.
        ("the landing page (no API call)", "/".to_owned(), "h1"),
        (
            "every node, newest first",
            "/viewer?search=".to_owned(),
            "#total",
        ),
        (
            "failed tests",
            "/viewer?search=kind%3Dtest&search=result%3Dfail".to_owned(),
            "#total",
        ),
        (
            "tests not passed, 3rd page",
            "/viewer?search=kind%3Dtest&search=result%21%3Dpass&offset=100".to_owned(),
            "#total",
        ),
        (
            "a node",
            format!("/viewer?node_id={node_id}"),
            "table.fields",
        ),
    ];
    println!();
    println!("Viewer at {n} nodes, {runs} runs each (ms, min / median / max):");
    println!();
    println!("| view | URL | results drawn | slowest API request |");
    println!("|---|---|---:|---:|");
    for (what, url, css) in urls {
        let (mut drawn, mut slowest) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            c.goto(&format!("{base}{url}")).await.unwrap();
            let v: Value = c.execute_async(DRAWN, vec![json!(css)]).await.unwrap();
            drawn.push(v[0].as_f64().unwrap());
            slowest.push(v[1].as_f64().unwrap());
        }
        println!(
            "| {what} | `{url}` | {} | {} |",
            stats(&mut drawn),
            stats(&mut slowest)
        );
    }
    c.close().await.unwrap();
    let _ = driver.kill();
    let _ = driver.wait();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let runs: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10);
    let dir = kernelci_benches::cache_dir().join(format!("store-{n}"));
    let ids = std::fs::read_to_string(kernelci_benches::cache_dir().join(format!("store-{n}.ids")))
        .expect("run store_probe first: it builds the store and its id list");
    let node_id = ids.lines().nth(ids.lines().count() / 2).unwrap().to_owned();
    let server = start_server(&dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        weights(&server.addr).await;
        speed(&server.addr, n, runs, &node_id).await;
    });
}
