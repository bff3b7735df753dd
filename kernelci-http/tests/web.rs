//! The web pages in a real browser: Debian's Chromium, headless, driven through
//! its ChromeDriver (WebDriver) by fantoccini, against a real server on loopback
//! with seeded nodes. Skipped when Chromium or ChromeDriver is missing, unless
//! `KCI_REQUIRE_BROWSER` is set (`.ci/run` installs both and sets it).
//! Screenshots go to `target/screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestServer};
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A headless Chromium session; the driver process is killed on drop.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    /// Kills ChromeDriver's whole process group: killing the driver alone leaves
    /// the Chromium processes it started running after the tests.
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts ChromeDriver and a headless Chromium session, or `None` (skip) when
/// either program is missing and the browser is not required.
async fn browser() -> Option<Browser> {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let driver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        assert!(
            std::env::var_os("KCI_REQUIRE_BROWSER").is_none(),
            "KCI_REQUIRE_BROWSER is set but chromium or chromedriver is missing"
        );
        eprintln!("SKIPPED: no chromium/chromedriver on PATH");
        return None;
    };
    let port = free_port();
    // In a process group of its own, which Chromium's processes join: Drop
    // kills them all.
    let driver = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut caps = Capabilities::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        // ChromeDriver listens on loopback over plain HTTP: no TLS connector.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "chromedriver: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    Some(Browser {
        client,
        driver,
        _profile: profile,
    })
}

/// ChromeDriver's browser log (console messages, failed loads) since the last read.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (hyper::http::Method, Option<String>) {
        (
            hyper::http::Method::POST,
            Some(r#"{"type":"browser"}"#.into()),
        )
    }
}

/// The console errors (level SEVERE) logged since the last call.
async fn console_errors(c: &Client) -> Vec<String> {
    let log = c.issue_cmd(BrowserLog).await.unwrap();
    log.as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// Waits for `css` to be there with some text (pages fill their elements after
/// their API calls answer) and returns the text.
async fn text_of(c: &Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            let text = e.text().await.unwrap_or_default();
            if !text.is_empty() {
                return text;
            }
        }
        assert!(Instant::now() < deadline, "{css}: no text after 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `css`'s text is `want` (a click may still be loading the next
/// page when it returns), failing with the last text seen after 10 s.
async fn text_is(c: &Client, css: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            last = e.text().await.unwrap_or_default();
            if last == want {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css}: {last:?}, not {want:?}");
}

/// Clicks the element `css` names (waiting for it: pages draw after their API
/// calls answer).
async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Seeds checkouts over two trees, a kbuild per checkout, jobs and tests with
/// mixed results; returns (checkout ids, the first checkout's kbuild id).
async fn seed(s: &TestServer, token: &str) -> (Vec<String>, String) {
    let mut checkouts = Vec::new();
    let mut first_kbuild = String::new();
    for i in 0..6 {
        let tree = if i % 2 == 0 { "mainline" } else { "next" };
        let c = s
            .post(
                "/node",
                Some(token),
                &json!({"kind": "checkout", "name": "checkout", "path": ["checkout"],
                        "data": {"kernel_revision": {"tree": tree, "branch": "master",
                                  "commit": format!("{i:040x}"), "url": "https://git.example.org/linux.git"}}}),
            )
            .await;
        assert_eq!(c.code(), 200, "{}", c.text());
        let cid = c.json()["id"].as_str().unwrap().to_owned();
        let k = s
            .post(
                "/node",
                Some(token),
                &json!({"kind": "kbuild", "name": "kbuild-gcc-12-x86", "parent": cid,
                        "path": ["checkout", "kbuild-gcc-12-x86"], "result": if i % 3 == 0 { "fail" } else { "pass" },
                        "artifacts": {"kernel": "https://files.example.org/bzImage"},
                        "data": {"arch": "x86_64", "kernel_revision": {"tree": tree, "branch": "master",
                                  "commit": format!("{i:040x}"), "url": "https://git.example.org/linux.git"}}}),
            )
            .await;
        assert_eq!(k.code(), 200, "{}", k.text());
        let kid = k.json()["id"].as_str().unwrap().to_owned();
        if i == 0 {
            first_kbuild = kid.clone();
        }
        for (t, result) in ["pass", "fail", "skip"].into_iter().enumerate() {
            let r = s
                .post(
                    "/node",
                    Some(token),
                    &json!({"kind": "test", "name": format!("baseline-{t}"), "parent": kid,
                            "path": ["checkout", "kbuild-gcc-12-x86", format!("baseline-{t}")],
                            "result": result}),
                )
                .await;
            assert_eq!(r.code(), 200, "{}", r.text());
        }
        checkouts.push(cid);
    }
    (checkouts, first_kbuild)
}

/// A browser and a server with the seeded nodes (see [`seed`]), or `None` (skip).
async fn seeded() -> Option<(Browser, TestServer, Vec<String>, String)> {
    let b = browser().await?;
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let (checkouts, kbuild) = seed(&s, &token).await;
    Some((b, s, checkouts, kbuild))
}

/// The viewer: a search's rows and total match the API, paging, a node page with
/// its fields, parent and children links, and the raw JSON equal to the API's;
/// no console error on the way; a page that cannot reach the API says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_searches_opens_nodes_and_reports_errors() {
    Backend::Sled
        .run(async {
            let Some((b, s, checkouts, kbuild)) = seeded().await else {
                return;
            };
            let c = &b.client;
            let base = format!("http://{}", s.addr);
            // An artifact URL the API would refuse (422: http or https only), as
            // data imported from elsewhere could hold: written to the store directly.
            let id = kernelci_core::id::ObjectId::parse(&kbuild).unwrap();
            let stored = s.store.get_node(id).await.unwrap().unwrap();
            let mut node = stored.value;
            if let Some(a) = node.artifacts.as_mut() {
                a.insert("evil".into(), "javascript:alert(1)".into());
            }
            s.store.replace_node(&node, stored.version).await.unwrap();

            // A search as KCIDB and e-mails link it (reference URL form).
            c.goto(&format!(
                "{base}/viewer?search=kind%3Dtest&search=result%21%3Dpass"
            ))
            .await
            .unwrap();
            let total = text_of(c, "#total").await;
            let want = s.get("/count?kind=test&result__ne=pass", None).await.json();
            assert!(
                total.ends_with(&format!("of {want} nodes")),
                "{total} vs {want}"
            );
            let rows = c
                .find_all(Locator::Css("table.nodes tbody tr"))
                .await
                .unwrap();
            assert_eq!(rows.len() as u64, want.as_u64().unwrap());
            screenshot(c, "viewer-search").await;
            assert_eq!(console_errors(c).await, Vec::<String>::new());

            // Paging: the 18 tests from the 11th, then the page before.
            c.goto(&format!("{base}/viewer?search=kind%3Dtest&offset=10"))
                .await
                .unwrap();
            text_is(c, "#total", "11–18 of 18 nodes").await;
            click(c, "#prev").await;
            text_is(c, "#total", "1–18 of 18 nodes").await;

            // An empty `search=` lists every node (the reference's menu link).
            c.goto(&format!("{base}/viewer?search=")).await.unwrap();
            let all = s.get("/count", None).await.json();
            text_is(c, "#total", &format!("1–{all} of {all} nodes")).await;

            // The condition builder and the free-form box.
            c.goto(&format!("{base}/viewer")).await.unwrap();
            let value = c
                .wait()
                .for_element(Locator::Css("#cond-value"))
                .await
                .unwrap();
            click(c, "#cond-field option[value='kind']").await;
            value.send_keys("checkout").await.unwrap();
            click(c, "#cond-add").await;
            click(c, "#search-go").await;
            text_is(c, "#total", "1–6 of 6 nodes").await;
            let url = c.current_url().await.unwrap();
            assert_eq!(url.query(), Some("search=kind%3Dcheckout"));

            // A node page: fields, parent link, children, raw JSON = GET /node/{id}.
            c.goto(&format!("{base}/viewer?node_id={kbuild}"))
                .await
                .unwrap();
            text_is(c, "#node-title", "kbuild-gcc-12-x86 kbuild").await;
            text_is(c, "#children-total", "3").await;
            let raw = c
                .execute(
                    "return document.getElementById('raw-json').textContent",
                    vec![],
                )
                .await
                .unwrap();
            let raw: Value = serde_json::from_str(raw.as_str().unwrap()).unwrap();
            assert_eq!(raw, s.get(&format!("/node/{kbuild}"), None).await.json());
            assert_eq!(
                text_of(c, "td[data-field='result']").await,
                "fail",
                "the first kbuild failed"
            );
            // Artifacts: links, except a URL that is not http(s) or ftp (a
            // `javascript:` link would run in the page), shown as text.
            let links = c.find_all(Locator::Css("#artifacts a")).await.unwrap();
            assert_eq!(links.len(), 1);
            assert_eq!(
                links[0].attr("href").await.unwrap().as_deref(),
                Some("https://files.example.org/bzImage")
            );
            let shown = text_of(c, "#artifacts").await;
            assert!(shown.contains("evil: javascript:alert(1)"), "{shown}");
            screenshot(c, "viewer-node").await;
            // Parent link, then back to a child through the children table.
            click(c, "td[data-field='parent'] a").await;
            c.wait()
                .for_url(
                    &url::Url::parse(&format!("{base}/viewer?node_id={}", checkouts[0])).unwrap(),
                )
                .await
                .unwrap();
            text_is(c, "#children-total", "1").await;
            click(c, "#children a.node-link").await;
            text_is(c, "#node-title", "kbuild-gcc-12-x86 kbuild").await;
            // The download button offers the same JSON (a Blob of the API's text).
            let blob = c
                .execute_async(
                    "const done = arguments[0];\
                     const orig = URL.createObjectURL;\
                     URL.createObjectURL = (b) => { b.text().then(done); return orig(b); };\
                     document.getElementById('download').click();",
                    vec![],
                )
                .await
                .unwrap();
            let downloaded: Value = serde_json::from_str(blob.as_str().unwrap()).unwrap();
            assert_eq!(
                downloaded,
                s.get(&format!("/node/{kbuild}"), None).await.json()
            );
            assert_eq!(console_errors(c).await, Vec::<String>::new());

            // The trees view: pick mainline/master, the kbuild matrix's cells are
            // coloured by result (the first mainline kbuild failed, the others
            // passed), oldest commit first, each linking to its kbuild.
            c.goto(&format!("{base}/viewer?view=trees")).await.unwrap();
            c.wait()
                .for_element(Locator::Css("#tree-branch option[value^='mainline']"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            click(c, "#load-matrix").await;
            text_of(c, "#matrix").await;
            let url = c.current_url().await.unwrap();
            assert_eq!(url.query(), Some("view=trees&tree=mainline&branch=master"));
            let cells = c.find_all(Locator::Css("#matrix td.cell")).await.unwrap();
            let mut seen = Vec::new();
            for cell in &cells {
                let bg = c
                    .execute(
                        "return getComputedStyle(arguments[0]).backgroundColor",
                        vec![serde_json::to_value(cell).unwrap()],
                    )
                    .await
                    .unwrap();
                seen.push((
                    cell.text().await.unwrap(),
                    cell.attr("data-commit").await.unwrap().unwrap(),
                    bg.as_str().unwrap().to_owned(),
                ));
            }
            let (red, green) = ("rgb(255, 206, 203)", "rgb(172, 238, 187)");
            let commit = |i: usize| format!("{i:040x}");
            assert_eq!(
                seen,
                vec![
                    ("FAIL".into(), commit(0), red.into()),
                    ("PASS".into(), commit(2), green.into()),
                    ("PASS".into(), commit(4), green.into()),
                ]
            );
            screenshot(c, "viewer-trees").await;
            cells[0]
                .find(Locator::Css("a"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            text_is(c, "td[data-field='id']", &kbuild).await;
            // Back returns to the matrix (the state is in the URL).
            c.back().await.unwrap();
            text_of(c, "#matrix").await;
            assert_eq!(console_errors(c).await, Vec::<String>::new());

            // An unknown node: a message, not a blank page.
            c.goto(&format!("{base}/viewer?node_id=000000000000000000000000"))
                .await
                .unwrap();
            let msg = text_of(c, "#message").await;
            assert!(msg.contains("No node with id"), "{msg}");
            // A bad query: the API's detail is shown.
            c.goto(&format!("{base}/viewer?search=name__re%3D("))
                .await
                .unwrap();
            let msg = text_of(c, "#message").await;
            assert!(msg.starts_with("400"), "{msg}");

            // The API goes away: the page says it cannot reach it.
            c.goto(&format!("{base}/viewer")).await.unwrap();
            text_of(c, "#search").await;
            s.stop().await;
            c.execute(
                "document.getElementById('conditions').value = 'kind=checkout';\
                 document.getElementById('search-go').click();",
                vec![],
            )
            .await
            .unwrap();
            let msg = text_of(c, "#message").await;
            assert!(msg.contains("Cannot reach the API"), "{msg}");
            screenshot(c, "viewer-unreachable").await;
        })
        .await;
}

/// The stats page: each bar's count equals `/count` over the same window, the
/// charts are drawn (one bar per value), the kind filter and the window live in
/// the URL, and a bar opens those nodes in the viewer with the same total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_charts_match_the_api() {
    Backend::Sled
        .run(async {
            let Some((b, s, _, _)) = seeded().await else {
                return;
            };
            let c = &b.client;
            let base = format!("http://{}", s.addr);

            c.goto(&format!("{base}/stats?window=30d")).await.unwrap();
            text_is(c, "#stats-total", "30 nodes").await;
            let bars = |chart: &'static str| async move {
                let mut out = Vec::new();
                for a in c
                    .find_all(Locator::Css(&format!("#{chart} a.bar")))
                    .await
                    .unwrap()
                {
                    out.push((
                        a.attr("data-label").await.unwrap().unwrap(),
                        a.attr("data-count").await.unwrap().unwrap(),
                    ));
                }
                out
            };
            let kinds = bars("by-kind").await;
            assert_eq!(kinds.len(), 6);
            for (kind, count) in &kinds {
                let want = s.get(&format!("/count?kind={kind}"), None).await.json();
                assert_eq!(count, &want.to_string(), "{kind}");
            }
            assert_eq!(kinds[1], ("kbuild".to_owned(), "6".to_owned()));
            let results = bars("by-result").await;
            for (result, count) in &results {
                let want = s.get(&format!("/count?result={result}"), None).await.json();
                assert_eq!(count, &want.to_string(), "{result}");
            }
            screenshot(c, "stats").await;
            assert_eq!(console_errors(c).await, Vec::<String>::new());

            // One kind: the state and result charts count tests only.
            c.execute(
                "const k = document.getElementById('kind'); k.value = 'test';\
                 k.dispatchEvent(new Event('change'));",
                vec![],
            )
            .await
            .unwrap();
            let url = c.current_url().await.unwrap();
            assert_eq!(url.query(), Some("window=30d&kind=test"));
            let deadline = Instant::now() + Duration::from_secs(10);
            let failed = loop {
                let r = bars("by-result").await;
                if let Some((_, n)) = r.iter().find(|(l, _)| l == "fail") {
                    if n == "6" {
                        break r;
                    }
                }
                assert!(Instant::now() < deadline, "{r:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(failed[0], ("pass".to_owned(), "6".to_owned()));
            // A bar opens the viewer on the same nodes.
            click(c, "#by-result a.bar[data-label='fail']").await;
            text_is(c, "#total", "1–6 of 6 nodes").await;
            let url = c.current_url().await.unwrap();
            assert!(url.path().ends_with("/viewer"), "{url}");
            assert_eq!(console_errors(c).await, Vec::<String>::new());
        })
        .await;
}

/// Fills the input `css` with `text`.
async fn fill(c: &Client, css: &str, text: &str) {
    let e = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Signs the browser tab in as `user` with `token`, as the login form would.
async fn sign_in(c: &Client, user: &str, token: &str) {
    c.execute(
        "sessionStorage.setItem('kci-token', arguments[0]);\
         sessionStorage.setItem('kci-user', arguments[1]);",
        vec![json!(token), json!(user)],
    )
    .await
    .unwrap();
}

/// The manage page: the login form; an administrator invites a user from it;
/// the user accepts the invitation in the browser (the accept page), logs in
/// through the form and sees who they are; the administrator deactivates them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manage_invites_a_user_who_accepts_and_logs_in() {
    Backend::Sled
        .run(async {
            let Some((b, s, _, _)) = seeded().await else {
                return;
            };
            let c = &b.client;
            let base = format!("http://{}", s.addr);
            let (_, root) = s.user("root", true, true, &[]).await;

            // Nobody logged in: the login form, and a "Log in" link in the header.
            c.goto(&format!("{base}/manage")).await.unwrap();
            text_of(c, "#login").await;
            text_is(c, "#login-link", "Log in").await;
            // A wrong password: a message, still the form.
            fill(c, "#login-user", "root").await;
            fill(c, "#login-password", "wrong").await;
            click(c, "#login-go").await;
            let msg = text_of(c, "#message").await;
            assert!(msg.contains("Wrong username or password"), "{msg}");
            // The browser logs the refused login itself (a 400): that one only.
            let logged = console_errors(c).await;
            assert!(
                logged.len() == 1 && logged[0].contains("/latest/user/login"),
                "{logged:?}"
            );

            // The administrator's session (its token, as the login form keeps it).
            sign_in(c, "root", &root).await;
            c.refresh().await.unwrap();
            text_is(c, "td[data-field='username']", "root").await;
            text_is(c, "td[data-field='administrator']", "yes").await;
            text_of(c, "#users tr[data-user='alice']").await;

            // Invite bob (no e-mail: the link is shown).
            fill(c, "#invite-user", "bob").await;
            fill(c, "#invite-email", "bob@example.org").await;
            click(c, "#invite-send").await;
            click(c, "#invite-go").await;
            let link = text_of(c, "#invite-url").await;
            text_of(c, "#users tr[data-user='bob']").await;
            screenshot(c, "manage-admin").await;
            assert_eq!(console_errors(c).await, Vec::<String>::new());
            let token = url::Url::parse(&link)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
                .unwrap();

            // Bob accepts in the browser, on this server's accept page.
            click(c, "#logout").await;
            let accept = format!(
                "{base}/user/accept-invite?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("token", &token)
                    .finish()
            );
            c.goto(&accept).await.unwrap();
            fill(c, "input[name='password']", "bob-secret-pw-1").await;
            fill(c, "input[name='password_again']", "bob-secret-pw-1").await;
            click(c, "#accept button[type='submit']").await;
            let answer = text_of(c, "#accept-result").await;
            assert!(answer.starts_with("200"), "{answer}");

            // Bob logs in through the form and sees himself.
            c.goto(&format!("{base}/manage")).await.unwrap();
            fill(c, "#login-user", "bob").await;
            fill(c, "#login-password", "bob-secret-pw-1").await;
            click(c, "#login-go").await;
            text_is(c, "td[data-field='username']", "bob").await;
            text_is(c, "td[data-field='verified']", "yes").await;
            text_is(c, "#who strong", "bob").await;
            assert!(
                c.find(Locator::Css("#users")).await.is_err(),
                "not an admin"
            );
            screenshot(c, "manage-user").await;
            // The session lives in this tab's sessionStorage only.
            let stored = c
                .execute(
                    "return [sessionStorage.getItem('kci-token') !== null,\
                             localStorage.length]",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(stored, json!([true, 0]));

            // The administrator deactivates bob.
            click(c, "#logout").await;
            sign_in(c, "root", &root).await;
            c.goto(&format!("{base}/manage")).await.unwrap();
            click(c, "#users tr[data-user='bob'] .toggle-active").await;
            text_is(c, "#users tr[data-user='bob'] td.active", "no").await;
            let users = s.get("/users?username=bob", Some(&root)).await.json();
            assert_eq!(users["items"][0]["is_active"], false);

            // Users page by page (two a page here), and one found by name.
            let total = s.get("/users?limit=1", Some(&root)).await.json()["total"]
                .as_u64()
                .unwrap();
            assert!(total >= 3, "{total}");
            c.goto(&format!("{base}/manage?users_limit=2"))
                .await
                .unwrap();
            text_is(c, "#users-range", &format!("1–2 of {total}")).await;
            let first = texts(c, "#users tbody tr td:first-child").await;
            click(c, "#users-next").await;
            text_is(c, "#users-range", &format!("3–{} of {total}", total.min(4))).await;
            let second = texts(c, "#users tbody tr td:first-child").await;
            assert!(
                first.iter().all(|u| !second.contains(u)),
                "{first:?} {second:?}"
            );
            c.back().await.unwrap();
            text_is(c, "#users-range", &format!("1–2 of {total}")).await;
            fill(c, "#find-user", "bob").await;
            click(c, "#find-go").await;
            text_is(c, "#users-range", "1–1 of 1").await;
            assert_eq!(texts(c, "#users tbody tr td:first-child").await, ["bob"]);
            assert_eq!(console_errors(c).await, Vec::<String>::new());
        })
        .await;
}

/// A checkout of mainline/master at `commit` with a running kbuild, a passing
/// kbuild, its test suite (a job) and tests of every result, and a regression of
/// the failing test; returns (checkout id, running kbuild, job, failing test).
async fn seed_checkout(s: &TestServer, token: &str, commit: &str) -> [Value; 4] {
    let rev = json!({"tree": "mainline", "branch": "master", "commit": commit,
                     "url": "https://git.example.org/linux.git", "describe": "v6.99-rc1"});
    let post = |body: Value| async move {
        let r = s.post("/node", Some(token), &body).await;
        assert_eq!(r.code(), 200, "{}", r.text());
        r.json()
    };
    let checkout = post(
        json!({"kind": "checkout", "name": "checkout", "path": ["checkout"],
        "data": {"kernel_revision": rev}}),
    )
    .await;
    let running = post(json!({"kind": "kbuild", "name": "kbuild-clang-17-arm64",
        "parent": checkout["id"], "path": ["checkout", "kbuild-clang-17-arm64"],
        "data": {"arch": "arm64", "compiler": "clang-17", "defconfig": "defconfig",
                 "kernel_revision": rev}}))
    .await;
    let built = post(
        json!({"kind": "kbuild", "name": "kbuild-gcc-12-x86", "parent": checkout["id"],
        "path": ["checkout", "kbuild-gcc-12-x86"], "state": "done", "result": "pass",
        "data": {"arch": "x86_64", "compiler": "gcc-12", "defconfig": "x86_64_defconfig",
                 "kernel_revision": rev}}),
    )
    .await;
    let job = post(json!({"kind": "job", "name": "baseline-x86", "parent": built["id"],
        "path": ["checkout", "kbuild-gcc-12-x86", "baseline-x86"], "state": "done", "result": "fail",
        "data": {"platform": "qemu-x86", "runtime": "lava-collabora", "kernel_revision": rev}}))
    .await;
    let mut failing = Value::Null;
    for result in ["pass", "pass", "fail", "skip", "incomplete"] {
        let n = failing.is_null() as usize;
        let t = post(json!({"kind": "test", "name": format!("baseline.{result}{n}"),
            "parent": job["id"], "state": "done", "result": result,
            "path": ["checkout", "kbuild-gcc-12-x86", "baseline-x86", format!("baseline.{result}{n}")],
            "data": {"platform": "qemu-x86", "kernel_revision": rev}}))
        .await;
        if result == "fail" {
            failing = t;
        }
    }
    post(
        json!({"kind": "regression", "name": "baseline.fail1", "path": ["checkout", "regression"],
        "state": "done", "result": "fail",
        "data": {"fail_node": failing["id"], "platform": "qemu-x86",
                 "failed_kernel_revision": rev}}),
    )
    .await;
    [checkout, running, job, failing]
}

/// Waits until `css` shows the API's `/count?{query}`.
async fn shows_count(c: &Client, s: &TestServer, css: &str, query: &str) {
    let want = s.get(&format!("/count?{query}"), None).await.json();
    text_is(c, css, &want.to_string()).await;
}

/// Fails when the page shows a bare "null" line (a missing part drawn as text).
async fn no_stray_null(c: &Client) {
    let main = text_of(c, "#main").await;
    assert!(!main.lines().any(|l| l.trim() == "null"), "{main}");
}

/// The text of every `css` element, in order.
async fn texts(c: &Client, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in c.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap_or_default());
    }
    out
}

/// The dashboard: trees, a branch's commits, a checkout's builds, suites and
/// tests counted as the API counts them, the regression highlighted, filters and
/// drill-down in the URL, and a node's state change shown live, without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_counts_filters_and_updates_live() {
    Backend::Sled
        .run(async {
            let Some((b, s, _, _)) = seeded().await else {
                return;
            };
            let c = &b.client;
            let base = format!("http://{}", s.addr);
            let (_, token) = s.user("lab", false, true, &[]).await;
            let commit = "d".repeat(40);
            let [checkout, running, job, failing] = seed_checkout(&s, &token, &commit).await;

            // Start view: one row per tree/branch with checkouts in the window.
            c.goto(&format!("{base}/dashboard")).await.unwrap();
            text_of(c, "#trees tbody tr").await;
            let trees = texts(c, "#trees tbody tr td:first-child").await;
            assert_eq!(trees, ["mainline", "next"]);
            assert_eq!(console_errors(c).await, Vec::<String>::new());

            // A branch: its checkouts newest first, each counted.
            click(c, "#trees tr[data-tree='mainline'] a").await;
            text_is(c, "#commits-total", "4 newest of 4 checkouts").await;
            let scope = format!(
                "data.kernel_revision.tree=mainline&data.kernel_revision.branch=master\
                 &data.kernel_revision.commit={commit}"
            );
            let row = format!(
                "#commits tr[data-id='{}']",
                checkout["id"].as_str().unwrap()
            );
            for (kind, result) in [
                ("kbuild", "pass"),
                ("kbuild", "fail"),
                ("test", "pass"),
                ("test", "fail"),
            ] {
                let css = format!("{row} td[data-figure='{kind}-{result}']");
                shows_count(c, &s, &css, &format!("{scope}&kind={kind}&result={result}")).await;
            }
            screenshot(c, "dashboard-branch").await;
            // The reference's mode flags: the heatmaps of builds and suites, a
            // cell per name and commit (oldest first), coloured by result/state.
            click(c, "#mode-builds").await;
            text_of(c, "#heatmap").await;
            let url = c.current_url().await.unwrap();
            assert!(
                url.query().unwrap().starts_with("builds=&tree=mainline"),
                "{url}"
            );
            let mut classes = Vec::new();
            for td in c
                .find_all(Locator::Css(
                    "#heatmap tr[data-name='kbuild-gcc-12-x86'] td",
                ))
                .await
                .unwrap()
            {
                classes.push(td.attr("class").await.unwrap().unwrap_or_default());
            }
            // Seeded commits 0, 2, 4 (the first failed), then commit d.
            assert_eq!(
                classes,
                [
                    "cell cell-fail",
                    "cell cell-pass",
                    "cell cell-pass",
                    "cell cell-pass"
                ]
            );
            text_is(
                c,
                &format!(
                    "#heatmap tr[data-name='kbuild-clang-17-arm64'] td[data-commit='{commit}']"
                ),
                "RUN",
            )
            .await;
            c.goto(&format!(
                "{base}/dashboard?testsuites&tree=mainline&branch=master"
            ))
            .await
            .unwrap();
            text_is(
                c,
                &format!("#heatmap tr[data-name='baseline-x86'] td[data-commit='{commit}']"),
                "FAIL",
            )
            .await;
            c.back().await.unwrap();

            // The checkout: every figure of the summary is the API's count.
            click(c, &format!("{row} td.mono a")).await;
            text_of(c, "#summary-table").await;
            let url = c.current_url().await.unwrap();
            assert_eq!(
                url.query(),
                Some(format!("tree=mainline&branch=master&commit={commit}").as_str())
            );
            for kind in ["kbuild", "job", "test"] {
                for (col, extra) in [
                    ("total", ""),
                    ("pass", "&result=pass"),
                    ("fail", "&result=fail"),
                    ("incomplete", "&result=incomplete"),
                    ("skip", "&result=skip"),
                    ("not done", "&state__ne=done"),
                ] {
                    let css = format!("tr[data-kind='{kind}'] td[data-col='{col}']");
                    shows_count(c, &s, &css, &format!("{scope}&kind={kind}{extra}")).await;
                }
            }
            text_is(c, "tr[data-kind='test'] td[data-col='total']", "5").await;
            // The regression: listed, counted, and its failing test highlighted.
            text_is(c, "#regressions-total", "1 regression").await;
            let failing_row = format!(
                "#tests-table tr[data-id='{}']",
                failing["id"].as_str().unwrap()
            );
            let class = c
                .find(Locator::Css(&failing_row))
                .await
                .unwrap()
                .attr("class")
                .await
                .unwrap();
            assert_eq!(class.as_deref(), Some("regression"));
            text_is(c, &format!("{failing_row} .badge"), "regression").await;
            text_is(c, "#tests-total", "1–5 of 5 tests").await;
            no_stray_null(c).await;
            screenshot(c, "dashboard").await;
            assert_eq!(console_errors(c).await, Vec::<String>::new());

            // Filters: failed nodes only, in the URL; the suite's tests.
            c.execute("document.getElementById('result').value = 'fail';", vec![])
                .await
                .unwrap();
            click(c, "#apply").await;
            text_is(c, "#tests-total", "1–1 of 1 tests").await;
            text_is(c, "#builds h2", "Builds (0)").await;
            text_is(c, "#suites h2", "Test suites (1)").await;
            let url = c.current_url().await.unwrap();
            assert!(url.query().unwrap().ends_with("&result=fail"), "{url}");
            c.back().await.unwrap();
            text_is(c, "#tests-total", "1–5 of 5 tests").await;
            click(c, "#suites-table a.suite-tests").await;
            text_is(c, "#tests h2", "Tests of suite baseline-x86").await;
            let url = c.current_url().await.unwrap();
            assert!(
                url.query()
                    .unwrap()
                    .ends_with(&format!("&suite={}", job["id"].as_str().unwrap())),
                "{url}"
            );

            // Live: the running kbuild fails; the page shows it without a reload.
            c.goto(&format!(
                "{base}/dashboard?checkout={}",
                checkout["id"].as_str().unwrap()
            ))
            .await
            .unwrap();
            text_is(c, "tr[data-kind='kbuild'] td[data-col='not done']", "1").await;
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.find(Locator::Css("#live.on")).await.is_err() {
                assert!(Instant::now() < deadline, "the event stream did not open");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            c.execute("window.kciMark = 'same page';", vec![])
                .await
                .unwrap();
            let mut done = running.clone();
            done["state"] = json!("done");
            done["result"] = json!("fail");
            let id = running["id"].as_str().unwrap();
            let r = s.put(&format!("/node/{id}"), Some(&token), &done).await;
            assert_eq!(r.code(), 200, "{}", r.text());
            text_is(c, "tr[data-kind='kbuild'] td[data-col='fail']", "1").await;
            text_is(c, "tr[data-kind='kbuild'] td[data-col='not done']", "0").await;
            text_is(
                c,
                &format!("#builds-table tr[data-id='{id}'] td:nth-child(6)"),
                "fail",
            )
            .await;
            let live = text_of(c, "#live").await;
            assert!(live.starts_with("live · 1 update · last "), "{live}");
            let mark = c.execute("return window.kciMark;", vec![]).await.unwrap();
            assert_eq!(mark, json!("same page"));
            screenshot(c, "dashboard-live").await;
            assert_eq!(console_errors(c).await, Vec::<String>::new());
        })
        .await;
}

/// Telemetry of two labs, all of it now: lab-a 8 results (6 pass, 2 fail) on
/// qemu, lab-b 5 results on rpi (1 pass, 2 fail, 2 incomplete infrastructure
/// errors) and 3 runtime errors.
async fn seed_telemetry(s: &TestServer, token: &str) {
    let mut events = Vec::new();
    for (i, result) in [
        "pass", "pass", "pass", "fail", "pass", "pass", "fail", "pass",
    ]
    .into_iter()
    .enumerate()
    {
        events.push(
            json!({"kind": if i % 2 == 0 { "job_result" } else { "test_result" },
            "runtime": "lab-a", "device_type": "qemu", "tree": "mainline", "result": result,
            "job_name": format!("baseline-{i}")}),
        );
    }
    for (i, result) in ["pass", "fail", "fail", "incomplete", "incomplete"]
        .into_iter()
        .enumerate()
    {
        events.push(
            json!({"kind": "job_result", "runtime": "lab-b", "device_type": "rpi",
            "tree": "next", "result": result, "is_infra_error": result == "incomplete",
            "error_type": if result == "incomplete" { Some("timeout") } else { None },
            "job_name": format!("kselftest-{i}")}),
        );
    }
    for _ in 0..3 {
        events.push(
            json!({"kind": "runtime_error", "runtime": "lab-b", "error_type": "lava-down",
            "error_msg": "scheduler unreachable"}),
        );
    }
    let r = s
        .post("/telemetry", Some(token), &Value::Array(events))
        .await;
    assert_eq!(r.json(), json!({"inserted": 16}));
}

/// The analytics page: totals, per-runtime health, anomalies and infrastructure
/// errors as the telemetry API reports them; a runtime filter in the URL; a
/// row's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_shows_the_telemetry_api() {
    Backend::Sled
        .run(async {
            let Some(b) = browser().await else {
                return;
            };
            let s = TestServer::start().await;
            let c = &b.client;
            let base = format!("http://{}", s.addr);
            let (_, token) = s.user("lab", false, true, &[]).await;
            seed_telemetry(&s, &token).await;
            let stats = |query: &'static str| {
                let s = &s;
                async move {
                    s.get(&format!("/telemetry/stats?{query}"), None)
                        .await
                        .json()
                }
            };
            let sum = |rows: &Value, field: &str| -> u64 {
                rows.as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r[field].as_u64().unwrap())
                    .sum()
            };

            c.goto(&format!("{base}/analytics")).await.unwrap();
            let by_kind = stats("group_by=kind").await;
            for f in ["total", "pass", "fail", "incomplete", "infra_error"] {
                text_is(
                    c,
                    &format!("#totals [data-figure='{f}'] .value"),
                    &sum(&by_kind, f).to_string(),
                )
                .await;
            }
            text_is(c, "#totals [data-figure='total'] .value", "16").await;
            // Per runtime: the API's figures and the health band of the pass rate.
            for row in stats("group_by=runtime").await.as_array().unwrap() {
                let runtime = row["runtime"].as_str().unwrap();
                let tr = format!("#by-runtime tr[data-key='{runtime}']");
                for f in ["total", "pass", "fail", "infra_error"] {
                    text_is(
                        c,
                        &format!("{tr} td[data-figure='{f}']"),
                        &row[f].to_string(),
                    )
                    .await;
                }
                let rate = row["pass"].as_f64().unwrap() / row["total"].as_f64().unwrap();
                let band = if rate >= 0.8 {
                    "good"
                } else if rate >= 0.5 {
                    "fair"
                } else {
                    "poor"
                };
                text_is(c, &format!("{tr} td.health"), band).await;
            }
            text_is(c, "#by-runtime tr[data-key='lab-a'] td.health", "fair").await;
            // Anomalies at the default threshold: lab-b's rpi fails 4 of 5 (and
            // its scheduler errors), lab-a's qemu 2 of 8 is under it.
            let report = s.get("/telemetry/anomalies", None).await.json();
            assert_eq!(report["result_anomalies"].as_array().unwrap().len(), 1);
            text_of(c, "#anomalies tr[data-key='lab-b/rpi']").await;
            assert!(c
                .find(Locator::Css("#anomalies tr[data-key='lab-a/qemu']"))
                .await
                .is_err());
            text_is(c, "#error-anomalies tbody tr td:nth-child(3)", "3").await;
            text_is(c, "#infra-total", "2 newest of 2").await;
            // The heatmap: a cell per runtime and device type the API groups.
            for row in stats("group_by=runtime,device_type")
                .await
                .as_array()
                .unwrap()
            {
                let Some(device) = row["device_type"].as_str() else {
                    continue;
                };
                let cell = format!(
                    "#heatmap tr[data-key='{}'] td[data-device='{device}']",
                    row["runtime"].as_str().unwrap()
                );
                text_is(c, &cell, &format!("{}/{}", row["pass"], row["total"])).await;
            }
            let class = |css: &'static str| async move {
                c.find(Locator::Css(css))
                    .await
                    .unwrap()
                    .attr("class")
                    .await
                    .unwrap()
            };
            assert_eq!(
                class("#heatmap tr[data-key='lab-a'] td[data-device='qemu']")
                    .await
                    .as_deref(),
                Some("cell heat-fair")
            );
            assert_eq!(
                class("#heatmap tr[data-key='lab-b'] td[data-device='rpi']")
                    .await
                    .as_deref(),
                Some("cell heat-poor")
            );
            text_is(
                c,
                "#heatmap tr[data-key='lab-a'] td[data-device='rpi']",
                "–",
            )
            .await;
            no_stray_null(c).await;
            screenshot(c, "analytics").await;
            assert_eq!(console_errors(c).await, Vec::<String>::new());

            // One runtime: the figures are its own; the URL says so.
            c.execute(
                "const r = document.getElementById('runtime'); r.value = 'lab-a';\
                 r.dispatchEvent(new Event('change'));",
                vec![],
            )
            .await
            .unwrap();
            let lab_a = stats("group_by=kind&runtime=lab-a").await;
            text_is(
                c,
                "#totals [data-figure='total'] .value",
                &sum(&lab_a, "total").to_string(),
            )
            .await;
            text_is(c, "#infra-total", "0 newest of 0").await;
            let url = c.current_url().await.unwrap();
            assert_eq!(url.query(), Some("runtime=lab-a"));
            // A device type's events, under the runtime filter.
            click(c, "#by-device tr[data-key='qemu'] a.detail-link").await;
            let want = s
                .get("/telemetry?runtime=lab-a&device_type=qemu&limit=1", None)
                .await
                .json();
            let n = want["total"].as_u64().unwrap();
            assert_eq!(n, 8);
            text_is(c, "#detail-total", &format!("{n} newest of {n}")).await;
            assert_eq!(
                c.find_all(Locator::Css("#detail-events tbody tr"))
                    .await
                    .unwrap()
                    .len() as u64,
                n
            );
            assert_eq!(console_errors(c).await, Vec::<String>::new());
        })
        .await;
}

/// Every page fits a phone's width (390 CSS pixels): nothing but the tables'
/// own scroll areas is wider than the screen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_a_phone_screen() {
    Backend::Sled
        .run(async {
            let Some((b, s, checkouts, _)) = seeded().await else {
                return;
            };
            let c = &b.client;
            let base = format!("http://{}", s.addr);
            c.set_window_size(390, 844).await.unwrap();
            let checkout = &checkouts[0];
            for (path, ready) in [
                ("/viewer?search=kind%3Dtest".to_owned(), "#total"),
                (format!("/viewer?node_id={checkout}"), "table.fields"),
                (
                    "/viewer?view=trees&tree=mainline&branch=master".to_owned(),
                    "#matrix",
                ),
                ("/dashboard".to_owned(), "#trees"),
                (
                    "/dashboard?tree=mainline&branch=master".to_owned(),
                    "#commits",
                ),
                (format!("/dashboard?checkout={checkout}"), "#summary-table"),
                ("/stats".to_owned(), "#stats-total"),
                ("/analytics".to_owned(), "#totals"),
                ("/manage".to_owned(), "#login"),
            ] {
                c.goto(&format!("{base}{path}")).await.unwrap();
                text_of(c, ready).await;
                let widths = c
                    .execute(
                        "return [document.documentElement.scrollWidth, window.innerWidth];",
                        vec![],
                    )
                    .await
                    .unwrap();
                let (scroll, inner) = (widths[0].as_u64().unwrap(), widths[1].as_u64().unwrap());
                // What sticks out (outside the tables' scroll areas), to say why.
                let wide = c
                    .execute(
                        "return [...document.querySelectorAll('body *')]\
                         .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1\
                                 && !e.closest('.scroll'))\
                         .map((e) => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className)\
                         .slice(0, 8);",
                        vec![],
                    )
                    .await
                    .unwrap();
                assert!(
                    scroll <= inner,
                    "{path}: {scroll} px wide on a {inner} px screen: {wide}"
                );
                assert_eq!(console_errors(c).await, Vec::<String>::new(), "{path}");
                if path.starts_with("/dashboard?checkout") {
                    screenshot(c, "dashboard-phone").await;
                }
            }
        })
        .await;
}
