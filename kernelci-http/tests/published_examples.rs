//! The curl examples of the published KernelCI "API details" page, replayed in
//! document order against a real server.
//!
//! The commands live in `fixtures/published_curl_examples.txt` (copied from the page,
//! command lines only); [`split_commands`] and [`Curl::parse`] read that small subset
//! of shell and curl syntax (`$` prompts, single quotes spanning lines, `\`
//! continuations, `-X`, `-H`, `-d`, a trailing `| jq`). Placeholders are replaced by
//! real values created during the run (tokens, invite and reset tokens, user, node
//! and subscription ids); `localhost:8001` over http or https becomes the test
//! server over plain http.
//!
//! [`STEPS`] is the expectation table: each example, in order, with the status
//! API.md gives (the code wins where the page disagrees, API.md §12) and a note; a
//! few examples run twice (the page's form, then a corrected one). Key body facts
//! are checked in the `match` of [`published_examples_in_document_order`].
//!
//! Where our server departs from the reference on purpose, the expectation follows
//! our documented choice: `parent=null` matches root nodes, as the page says
//! (kernelci-core `query` module docs).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;
mod fake_smtp;

use common::{every_backend, TestResponse, TestServer, SECRET};
use fake_smtp::{Behaviour, FakeSmtp};
use hyper::Method;
use kernelci_http::HttpConfig;
use serde_json::{json, Value};

/// The commands, as published.
const FIXTURE: &str = include_str!("fixtures/published_curl_examples.txt");

/// How many commands the page has.
const EXAMPLES: usize = 44;

/// The token of the page's examples (`{"sub":"bob"}`, no `aud`).
const EXAMPLE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2IifQ.ci1smeJeuX779PptTkuaG1SEdkp5M1S1AgYvX8VdB20";

/// The password the examples set with `<new-password>`: `test`, the one the page's
/// "Get authorization token" example then logs in with (`username=test&password=test`).
const NEW_PASSWORD: &str = "test";

/// How a step runs its example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// As published, placeholders replaced.
    Published,
    /// As published but keeping the page's example token.
    KeepExampleToken,
    /// With the `Bearer` scheme the page's header lacks.
    AddBearer,
    /// With `POST`, the method the endpoint has.
    AsPost,
}

/// One line of the expectation table.
struct Step {
    /// The example's number (1-based, document order).
    example: usize,
    run: Run,
    status: u16,
    note: &'static str,
}

const fn step(example: usize, run: Run, status: u16, note: &'static str) -> Step {
    Step {
        example,
        run,
        status,
        note,
    }
}

use Run::*;

/// The expectation table (document order): example number, how it runs, expected
/// status, note.
#[rustfmt::skip]
const STEPS: &[Step] = &[
    // ---- Users
    step(1, Published, 200, "invite `test` with return_token: user, email_sent false, token, invite_url"),
    step(2, Published, 200, "invite URL preview: public_base_url from the request host"),
    step(3, Published, 200, "accept `test`'s invite: password set, verified"),
    step(4, Published, 200, "invite `alice` into the existing group `kernelci`"),
    step(5, Published, 200, "accept `alice`'s invite"),
    step(6, Published, 200, "login alice (form): bearer token"),
    step(7, Published, 200, "login test/test (`<new-password>` is `test`)"),
    step(8, Published, 401, "the page's header has no `Bearer` scheme: anonymous (AUTH.md §1)"),
    step(8, AddBearer, 200, "with `Bearer`: the user page, items with revision_id null"),
    step(9, Published, 200, "any user may read any user (API.md §12)"),
    step(10, Published, 202, "forgot-password: 202 null, the token is e-mailed"),
    step(11, Published, 200, "reset-password with the e-mailed token: 200 null"),
    step(12, Published, 200, "update-password (form): 200 null"),
    step(13, Published, 422, "the body has a trailing comma: json_invalid"),
    step(14, Published, 200, "admin PATCH: new e-mail (unverifies), groups replaced"),
    step(15, Published, 200, "admin DELETE: 200 null (not 204)"),
    // ---- Nodes
    step(16, KeepExampleToken, 401, "the page's token ({\"sub\":\"bob\"}, no aud) is refused (API.md §12)"),
    step(16, Published, 200, "create the checkout: all 23 keys, artifacts {} (not null)"),
    step(17, Published, 200, "the node, stored datetimes"),
    step(18, Published, 200, "all nodes: envelope, default limit 50"),
    step(19, Published, 200, "checkouts of tree mainline"),
    step(20, Published, 200, "checkouts created after 2022-12-06"),
    step(21, Published, 200, "kbuilds named like x86"),
    step(22, Published, 200, "https, no /latest prefix, date range on created"),
    step(23, Published, 200, "parent=null: root nodes (our documented choice, as the page says)"),
    step(24, Published, 422, "the body has a trailing comma: json_invalid, before the token is looked at"),
    step(25, Published, 200, "count of all nodes: a bare integer"),
    step(26, Published, 200, "count name=checkout"),
    step(27, Published, 200, "count on a dotted field"),
    step(28, Published, 200, "count with an artifact URL value"),
    step(29, Published, 200, "count with a timestamp operator (works, API.md §12)"),
    step(30, Published, 200, "count result=null"),
    // ---- Pub/sub
    step(31, Published, 200, "subscribe: {id, channel, user, promiscuous}"),
    step(32, Published, 200, "listen with nothing published: a keep-alive (BEEP)"),
    step(33, Published, 200, "publish: 200 null"),
    step(34, Published, 200, "listen: the message, data as a JSON string, with _sequence_id"),
    step(35, Published, 405, "unsubscribe with GET: Method Not Allowed (API.md §12)"),
    step(35, AsPost, 200, "unsubscribe with POST: 200 null"),
    // ---- Events
    step(36, Published, 200, "every event: a plain array, no default limit"),
    step(37, Published, 200, "done passing jobs"),
    step(38, Published, 200, "created since an ISO datetime"),
    step(39, Published, 200, "path regex: nothing matches linux-next"),
    step(40, Published, 200, "by group and state"),
    step(41, Published, 200, "by node owner (data.owner) and kind"),
    step(42, Published, 200, "recursive with limit <= 1000: events carry their node"),
    step(43, Published, 200, "by node id"),
    step(44, Published, 200, "combined filters with a date-only `from`"),
];

// =====================================================================================
// The curl subset
// =====================================================================================

/// Splits the fixture into commands (lists of words) with shell quoting rules:
/// `'...'` (may span lines), `"..."` (with `\"`), `\` + newline joins lines, `\x` is
/// `x`; an unquoted newline ends a command; `|` and what follows are dropped; lines
/// starting with `#` are comments.
fn split_commands(text: &str) -> Vec<Vec<String>> {
    let text: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut piped = false;
    let mut chars = text.chars();
    let flush = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>, piped: bool| {
        if *in_word && !piped {
            words.push(std::mem::take(word));
        }
        word.clear();
        *in_word = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(ch) => word.push(ch),
                        None => panic!("unterminated single quote"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.push(chars.next().expect("escape at end")),
                        Some(ch) => word.push(ch),
                        None => panic!("unterminated double quote"),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(ch) => {
                    word.push(ch);
                    in_word = true;
                }
                None => {}
            },
            ' ' | '\t' => flush(&mut word, &mut in_word, &mut words, piped),
            '|' => {
                flush(&mut word, &mut in_word, &mut words, piped);
                piped = true;
            }
            '\n' => {
                flush(&mut word, &mut in_word, &mut words, piped);
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
                piped = false;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    flush(&mut word, &mut in_word, &mut words, piped);
    if !words.is_empty() {
        commands.push(words);
    }
    commands
}

/// One curl command.
#[derive(Debug, Clone)]
struct Curl {
    method: Option<String>,
    url: String,
    headers: Vec<(String, String)>,
    data: Option<String>,
}

impl Curl {
    /// Reads `[$] curl [-X M] [-H 'K: V']... [-d DATA] URL` (options in any order).
    fn parse(words: &[String]) -> Curl {
        let mut it = words.iter().map(String::as_str).peekable();
        if it.peek() == Some(&"$") {
            it.next();
        }
        assert_eq!(it.next(), Some("curl"), "{words:?}");
        let (mut method, mut url, mut headers, mut data) = (None, None, Vec::new(), None);
        while let Some(w) = it.next() {
            match w {
                "-X" => method = Some(it.next().expect("-X value").to_owned()),
                "-H" => {
                    let h = it.next().expect("-H value");
                    let (k, v) = h.split_once(':').unwrap_or_else(|| panic!("header {h}"));
                    headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                "-d" => data = Some(it.next().expect("-d value").to_owned()),
                w if w.starts_with('-') => panic!("unsupported curl option {w}"),
                w => {
                    assert!(url.is_none(), "two URLs in {words:?}");
                    url = Some(w.to_owned());
                }
            }
        }
        Curl {
            method,
            url: url.expect("no URL"),
            headers,
            data,
        }
    }

    /// Applies `(placeholder, value)` substitutions to every part.
    fn substitute(&self, subs: &[(String, String)]) -> Curl {
        let s = |text: &str| {
            subs.iter().fold(text.to_owned(), |t, (from, to)| {
                t.replace(from.as_str(), to)
            })
        };
        Curl {
            method: self.method.clone(),
            url: s(&self.url),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), s(v)))
                .collect(),
            data: self.data.as_deref().map(s),
        }
    }

    /// The method curl uses.
    fn method(&self) -> Method {
        match (&self.method, &self.data) {
            (Some(m), _) => Method::from_bytes(m.as_bytes()).unwrap(),
            (None, Some(_)) => Method::POST,
            (None, None) => Method::GET,
        }
    }

    /// The request target: the page's `http(s)://localhost:8001` host is the test
    /// server.
    fn target(&self) -> String {
        let rest = self
            .url
            .strip_prefix("http://localhost:8001")
            .or_else(|| self.url.strip_prefix("https://localhost:8001"))
            .unwrap_or_else(|| panic!("unexpected host in {}", self.url));
        if rest.is_empty() {
            "/".to_owned()
        } else {
            rest.to_owned()
        }
    }

    /// Sends it as curl would: its headers, plus `Accept: */*` and, with `-d`, a form
    /// content type when not given.
    async fn send(&self, s: &TestServer) -> TestResponse {
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        let mut headers: Vec<(&str, &str)> = vec![("user-agent", "curl/8.5.0")];
        if !has("accept") {
            headers.push(("accept", "*/*"));
        }
        if self.data.is_some() && !has("content-type") {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        headers.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let body = self.data.clone().unwrap_or_default();
        s.request(self.method(), &self.target(), &headers, body)
            .await
    }
}

// =====================================================================================
// The run
// =====================================================================================

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

fn page_ids(v: &Value) -> Vec<String> {
    ids(&v["items"])
}

/// Creates a node as `token`'s user; its id.
async fn node(s: &TestServer, token: &str, body: Value) -> String {
    let r = s.post("/latest/node", Some(token), &body).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_owned()
}

/// The node data of the run (created by `admin` before the examples):
/// `staging` (root, 2022, tree kernelci, branch staging-mainline, with the page's
/// tarball URL), `next` (root, 2024, result null) and four done children of `next`
/// (a kbuild, a passing job, a kunit test, a failing kselftest).
struct Dataset {
    staging: String,
    next: String,
    kbuild: String,
    job: String,
    kunit: String,
    kselftest: String,
}

async fn dataset(s: &TestServer, admin: &str) -> Dataset {
    let staging = node(
        s,
        admin,
        json!({"kind": "checkout", "name": "checkout", "path": ["checkout"],
               "state": "done", "result": "pass", "created": "2022-10-01T10:00:00",
               "artifacts": {"tarball": "http://172.17.0.1:8002/linux-kernelci-staging-mainline-staging-mainline-20220927.0.tar.gz"},
               "data": {"kernel_revision": {"tree": "kernelci", "url": "https://github.com/kernelci/linux.git",
                        "branch": "staging-mainline", "commit": "1385303d0d85c68473d8901d69c7153b03a3150b",
                        "describe": "staging-mainline-20220927.0"}}}),
    )
    .await;
    let rev = json!({"tree": "next", "url": "https://git.kernel.org/pub/scm/linux/kernel/git/next/linux-next.git",
                     "branch": "master", "commit": "39384a5d7e2eb2f28039a92c022aed886a675fbf",
                     "describe": "next-20240501",
                     "version": {"version": 6, "patchlevel": 9, "extra": "-rc6"}});
    let next = node(
        s,
        admin,
        json!({"kind": "checkout", "name": "checkout", "path": ["checkout"], "state": "done",
               "created": "2024-05-01T10:00:00", "data": {"kernel_revision": rev}}),
    )
    .await;
    let kbuild = node(
        s,
        admin,
        json!({"kind": "kbuild", "name": "kbuild-gcc-10-x86", "parent": next,
               "path": ["checkout", "kbuild-gcc-10-x86"], "group": "kbuild-gcc-10-x86",
               "state": "done", "result": "pass",
               "data": {"kernel_revision": rev, "arch": "x86_64", "defconfig": "x86_64_defconfig",
                        "compiler": "gcc-10"}}),
    )
    .await;
    let job = node(
        s,
        admin,
        json!({"kind": "job", "name": "baseline-x86", "parent": kbuild,
               "path": ["checkout", "kbuild-gcc-10-x86", "baseline-x86"], "group": "baseline-x86",
               "state": "done", "result": "pass",
               "data": {"kernel_revision": rev, "platform": "qemu-x86"}}),
    )
    .await;
    let kunit = node(
        s,
        admin,
        json!({"kind": "test", "name": "exec", "parent": next,
               "path": ["checkout", "kunit-x86_64", "exec"], "group": "kunit-x86_64",
               "state": "done", "result": "pass", "data": {"kernel_revision": rev}}),
    )
    .await;
    let kselftest = node(
        s,
        admin,
        json!({"kind": "test", "name": "kselftest-cpufreq", "parent": kbuild,
               "path": ["checkout", "kbuild-gcc-10-x86", "kselftest-cpufreq"], "group": "kselftest",
               "state": "done", "result": "fail", "data": {"kernel_revision": rev}}),
    )
    .await;
    Dataset {
        staging,
        next,
        kbuild,
        job,
        kunit,
        kselftest,
    }
}

/// The reset token of the first reset e-mail received (other mails are skipped).
async fn reset_token_from_mail(smtp: &mut FakeSmtp) -> String {
    loop {
        let m = smtp.next().await;
        if m.header("Subject") == Some("Reset Password Token for KernelCI API account") {
            assert_eq!(m.to, ["test@kernelci.org"]);
            let body = m.body();
            let after = body.split_once("within one hour:").unwrap().1;
            return after.split_whitespace().next().unwrap().to_owned();
        }
    }
}

/// A keep-alive or message of `/listen`: the wrapper checked, the envelope parsed.
fn listened(r: &TestResponse, channel: &str) -> Value {
    let v = r.json();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["pattern"], Value::Null);
    assert_eq!(v["channel"], channel);
    let envelope: Value =
        serde_json::from_str(v["data"].as_str().expect("data is a string")).unwrap();
    assert_eq!(envelope["specversion"], "1.0");
    assert!(envelope["time"].as_str().unwrap().ends_with("+00:00"));
    envelope
}

#[test]
fn the_fixture_parses_as_the_page_shows_it() {
    let commands = split_commands(FIXTURE);
    assert_eq!(commands.len(), EXAMPLES);
    let first = Curl::parse(&commands[0]);
    assert_eq!(first.method(), Method::POST);
    assert_eq!(first.url, "http://localhost:8001/latest/user/invite");
    assert_eq!(first.headers.len(), 3);
    assert_eq!(
        first.headers[2],
        (
            "Authorization".to_owned(),
            "Bearer <ADMIN-AUTHORIZATION-TOKEN>".to_owned()
        )
    );
    let body: Value = serde_json::from_str(first.data.as_deref().unwrap()).unwrap();
    assert_eq!(body["username"], "test");
    // `| jq` is dropped; unquoted URLs; the subscribe example has no prompt.
    let create = Curl::parse(&commands[15]);
    assert_eq!(create.url, "http://localhost:8001/latest/node");
    assert!(create.data.as_deref().unwrap().ends_with("}\n}\n}"));
    assert_eq!(Curl::parse(&commands[16]).method(), Method::GET);
    assert_eq!(Curl::parse(&commands[24]).target(), "/latest/count");
    assert_eq!(
        Curl::parse(&commands[21]).target().split('?').next(),
        Some("/nodes")
    );
    assert_eq!(Curl::parse(&commands[30]).target(), "/latest/subscribe/abc");
    // The expectation table covers every example, in order.
    let mut next = 1;
    for s in STEPS {
        assert!(
            s.example == next || s.example + 1 == next,
            "step for example {}",
            s.example
        );
        next = s.example + 1;
    }
    assert_eq!(next, EXAMPLES + 1);
    // A few syntax corners.
    let c = split_commands("# c\n$ curl -H \"a: \\\"b\\\"\" 'x'\\\n'y' | jq .\ncurl z\n");
    assert_eq!(
        c,
        [vec!["$", "curl", "-H", "a: \"b\"", "xy"], vec!["curl", "z"]]
    );
}

every_backend!(published_examples_in_document_order);
async fn published_examples_in_document_order() {
    let examples: Vec<Curl> = split_commands(FIXTURE)
        .iter()
        .map(|w| Curl::parse(w))
        .collect();
    assert_eq!(examples.len(), EXAMPLES);
    let mut smtp = FakeSmtp::start(Behaviour::default()).await;
    let s = TestServer::start_with(HttpConfig {
        smtp: Some(smtp.config("")),
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let base = format!("http://{}", s.addr);

    // Set-up: an admin, bob (the page's token names him), a user to delete, the
    // group `kernelci` (the page assumes it exists), some nodes.
    let (admin_user, admin) = s.user("admin", true, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let (doomed, _) = s.user("doomed", false, true, &[]).await;
    let r = s
        .post(
            "/latest/user-groups",
            Some(&admin),
            &json!({"name": "kernelci"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let data = dataset(&s, &admin).await;

    // Placeholder → value, filled as the run goes.
    let mut subs: Vec<(String, String)> = vec![
        ("<ADMIN-AUTHORIZATION-TOKEN>".into(), admin.clone()),
        ("<ADMIN-USER-AUTHORIZATION-TOKEN>".into(), admin.clone()),
        ("<new-password>".into(), NEW_PASSWORD.into()),
        ("<current-password>".into(), NEW_PASSWORD.into()),
        ("Bearer TOKEN".into(), format!("Bearer {bob}")),
        (EXAMPLE_TOKEN.into(), bob.clone()),
        ("6526448e7d140ee220971a0e".into(), admin_user.id.to_string()),
        ("658d1edecf0bce203d594f1c".into(), doomed.id.to_string()),
    ];
    let set = |subs: &mut Vec<(String, String)>, key: &str, value: &str| {
        subs.retain(|(k, _)| k != key);
        subs.push((key.to_owned(), value.to_owned()));
    };
    let mut test_id = String::new();
    let mut checkout_id = String::new();

    for st in STEPS {
        let mut curl = examples[st.example - 1].clone();
        let mut active = subs.clone();
        match st.run {
            Published => {}
            KeepExampleToken => active.retain(|(k, _)| k != EXAMPLE_TOKEN),
            AddBearer => {
                for (k, v) in &mut curl.headers {
                    if k.eq_ignore_ascii_case("authorization") && !v.starts_with("Bearer ") {
                        *v = format!("Bearer {v}");
                    }
                }
            }
            AsPost => curl.method = Some("POST".into()),
        }
        let curl = curl.substitute(&active);
        let r = curl.send(&s).await;
        let ctx = format!(
            "example {} ({:?}: {}): {} {}\n-> {} {}",
            st.example,
            st.run,
            st.note,
            curl.method(),
            curl.target(),
            r.code(),
            r.text()
        );
        assert_eq!(r.code(), st.status, "{ctx}");
        let ok_body = || -> Value { r.json() };
        match (st.example, st.run) {
            (1, _) => {
                let v = ok_body();
                assert_eq!(v["user"]["username"], "test", "{ctx}");
                assert_eq!(v["user"]["is_verified"], false);
                assert_eq!(v["email_sent"], false);
                assert_eq!(v["public_base_url"], base);
                let token = v["token"].as_str().unwrap();
                assert_eq!(
                    v["invite_url"],
                    format!("{base}/user/accept-invite?token={token}")
                );
                set(&mut subs, "<INVITE-TOKEN>", token);
                test_id = v["user"]["id"].as_str().unwrap().to_owned();
                set(&mut subs, "615f30020eb7c3c6616e5ac3", &test_id);
            }
            (2, _) => assert_eq!(
                ok_body(),
                json!({"public_base_url": base, "accept_invite_url": format!("{base}/user/accept-invite")})
            ),
            (3, _) | (5, _) => {
                let v = ok_body();
                let who = if st.example == 3 { "test" } else { "alice" };
                assert_eq!(
                    (v["username"].clone(), v["is_verified"].clone()),
                    (json!(who), json!(true)),
                    "{ctx}"
                );
            }
            (4, _) => {
                let v = ok_body();
                assert_eq!(v["user"]["groups"][0]["name"], "kernelci", "{ctx}");
                set(&mut subs, "<INVITE-TOKEN>", v["token"].as_str().unwrap());
            }
            (6, _) | (7, _) => {
                let v = ok_body();
                assert_eq!(v["token_type"], "bearer", "{ctx}");
                if st.example == 6 {
                    set(
                        &mut subs,
                        "<USER-AUTHORIZATION-TOKEN>",
                        v["access_token"].as_str().unwrap(),
                    );
                }
            }
            (8, Published) => assert_eq!(ok_body(), json!({"detail": "Unauthorized"})),
            (8, _) => {
                let v = ok_body();
                assert_eq!(
                    (v["total"].clone(), v["limit"].clone(), v["offset"].clone()),
                    (json!(5), json!(50), json!(0)),
                    "{ctx}"
                );
                let mut users: Vec<&str> = v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|u| u["username"].as_str().unwrap())
                    .collect();
                users.sort_unstable();
                assert_eq!(users, ["admin", "alice", "bob", "doomed", "test"]);
                assert!(v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|u| u["revision_id"].is_null() && u.get("hashed_password").is_none()));
            }
            (9, _) => {
                let v = ok_body();
                assert_eq!(
                    (v["id"].as_str(), v["username"].as_str()),
                    (Some(admin_user.id.to_string().as_str()), Some("admin"))
                );
            }
            (10, _) => {
                assert_eq!(ok_body(), Value::Null);
                let token = reset_token_from_mail(&mut smtp).await;
                set(&mut subs, "PASSWORD-RESET-TOKEN-RECEIVED-BY-EMAIL", &token);
            }
            (11, _) | (12, _) | (15, _) | (33, _) | (35, AsPost) => {
                assert_eq!(ok_body(), Value::Null, "{ctx}")
            }
            (13, _) | (24, _) => {
                let v = ok_body();
                assert_eq!(v["detail"][0]["type"], "json_invalid", "{ctx}");
                assert_eq!(v["detail"][0]["loc"][0], "body");
            }
            (14, _) => {
                let v = ok_body();
                assert_eq!(v["id"].as_str(), Some(test_id.as_str()));
                assert_eq!(v["email"], "test-user@kernelci.org");
                assert_eq!(
                    v["is_verified"], false,
                    "a new e-mail needs verifying again"
                );
                assert_eq!(v["groups"][0]["name"], "kernelci");
            }
            (16, KeepExampleToken) => assert_eq!(ok_body(), json!({"detail": "Unauthorized"})),
            (16, _) => {
                let v = ok_body();
                assert_eq!(v.as_object().unwrap().len(), 23, "{ctx}");
                assert_eq!(
                    (v["kind"].clone(), v["state"].clone(), v["owner"].clone()),
                    (json!("checkout"), json!("running"), json!("bob"))
                );
                assert_eq!(v["artifacts"], json!({}));
                checkout_id = v["id"].as_str().unwrap().to_owned();
                set(&mut subs, "61bda8f2eb1a63d2b7152418", &checkout_id);
                set(&mut subs, "65a1355ee98651d0fe81e412", &checkout_id);
            }
            (17, _) => {
                let v = ok_body();
                assert_eq!(v["id"].as_str(), Some(checkout_id.as_str()), "{ctx}");
                assert_eq!(
                    v["data"]["kernel_revision"]["commit"],
                    "2a987e65025e2b79c6d453b78cb5985ac6e5eb26"
                );
                let created = v["created"].as_str().unwrap();
                assert!(
                    created.len() == 19 || created.ends_with("000"),
                    "stored in milliseconds: {created}"
                );
                assert_eq!(
                    (
                        v["group"].clone(),
                        v["parent"].clone(),
                        v["holdoff"].clone()
                    ),
                    (Value::Null, Value::Null, Value::Null)
                );
            }
            (18, _) => {
                let v = ok_body();
                assert_eq!(
                    (v["total"].clone(), v["limit"].clone(), v["offset"].clone()),
                    (json!(7), json!(50), json!(0)),
                    "{ctx}"
                );
                assert_eq!(v["items"].as_array().unwrap().len(), 7);
            }
            (19, _) => assert_eq!(page_ids(&ok_body()), [checkout_id.as_str()], "{ctx}"),
            (20, _) => assert_eq!(
                page_ids(&ok_body()),
                [data.next.as_str(), checkout_id.as_str()],
                "{ctx}"
            ),
            (21, _) => assert_eq!(page_ids(&ok_body()), [data.kbuild.as_str()], "{ctx}"),
            (22, _) => assert_eq!(page_ids(&ok_body()), [data.next.as_str()], "{ctx}"),
            (23, _) => assert_eq!(
                page_ids(&ok_body()),
                [
                    data.staging.as_str(),
                    data.next.as_str(),
                    checkout_id.as_str()
                ],
                "{ctx}"
            ),
            // Counts: the page's answers where the data allows (4 → 7, 3 → 1 here).
            (25..=30, _) => {
                let want = match st.example {
                    25 => 7,
                    26 => 3,
                    27 => 1,
                    28 => 1,
                    29 => 1,
                    _ => 2,
                };
                assert_eq!(r.text(), want.to_string(), "{ctx}");
            }
            (31, _) => {
                let v = ok_body();
                let id = v["id"].as_u64().expect("an integer id");
                assert_eq!(
                    v,
                    json!({"id": id, "channel": "abc", "user": "bob", "promiscuous": false})
                );
                set(&mut subs, "/listen/800", &format!("/listen/{id}"));
                set(&mut subs, "/unsubscribe/800", &format!("/unsubscribe/{id}"));
            }
            (32, _) => {
                let e = listened(&r, "abc");
                assert_eq!(e["data"], "BEEP", "{ctx}");
                assert!(e.get("_sequence_id").is_none());
            }
            (34, _) => {
                let e = listened(&r, "abc");
                assert_eq!(e["data"], json!({"sample_key": "sample_value"}), "{ctx}");
                assert_eq!(
                    (e["owner"].clone(), e["source"].clone(), e["type"].clone()),
                    (
                        json!("bob"),
                        json!("https://api.kernelci.org/"),
                        json!("api.kernelci.org")
                    )
                );
                assert!(
                    e["_sequence_id"].is_u64(),
                    "real-time messages carry _sequence_id"
                );
            }
            (35, _) => {
                assert_eq!(ok_body(), json!({"detail": "Method Not Allowed"}));
                assert!(r.header("allow").unwrap().contains("POST"), "{ctx}");
            }
            (36, _) => {
                let v = ok_body();
                let events = v.as_array().unwrap();
                assert_eq!(events.len(), 8, "7 node events and the publish: {ctx}");
                assert_eq!(events[7]["channel"], "abc");
                assert_eq!(events[7]["data"], json!({"sample_key": "sample_value"}));
                let seqs: Vec<u64> = events
                    .iter()
                    .map(|e| e["sequence_id"].as_u64().unwrap())
                    .collect();
                assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
                assert!(!events[0]["timestamp"].as_str().unwrap().contains('+'));
            }
            (37, _) => assert_node_events(&ok_body(), &[&data.job], &ctx),
            (38, _) => assert_node_events(
                &ok_body(),
                &[
                    &data.staging,
                    &data.next,
                    &data.kbuild,
                    &data.job,
                    &data.kunit,
                    &data.kselftest,
                    &checkout_id,
                ],
                &ctx,
            ),
            (39, _) => assert_eq!(ok_body(), json!([]), "{ctx}"),
            (40, _) => assert_node_events(&ok_body(), &[&data.kunit], &ctx),
            (41, _) => assert_node_events(&ok_body(), &[&data.staging, &data.next], &ctx),
            (42, _) => {
                let v = ok_body();
                assert_node_events(&v, &[&data.kselftest], &ctx);
                assert_eq!(v[0]["node"]["id"].as_str(), Some(data.kselftest.as_str()));
                assert_eq!(v[0]["node"]["result"], "fail");
            }
            (43, _) => {
                let v = ok_body();
                assert_node_events(&v, &[&checkout_id], &ctx);
                assert_eq!(v[0]["data"]["op"], "created");
            }
            (44, _) => assert_node_events(&ok_body(), &[&data.kselftest], &ctx),
            (n, run) => panic!("no checks for example {n} ({run:?})"),
        }
    }
    // What the examples changed, seen afterwards.
    let r = s
        .post_form(
            "/latest/user/login",
            None,
            &[("username", "test"), ("password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(
        r.detail(),
        "LOGIN_USER_NOT_VERIFIED",
        "example 14 changed test's e-mail"
    );
    let r = s
        .get(&format!("/latest/user/{}", doomed.id), Some(&admin))
        .await;
    assert_eq!(r.code(), 404, "example 15 deleted the user");
    s.stop().await;
}

/// `v` is a list of node events about exactly `nodes`, in this order.
fn assert_node_events(v: &Value, nodes: &[&String], ctx: &str) {
    let got: Vec<&str> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {ctx}"))
        .iter()
        .map(|e| {
            assert_eq!(e["channel"], "node", "{ctx}");
            e["data"]["id"].as_str().unwrap()
        })
        .collect();
    let want: Vec<&str> = nodes.iter().map(|s| s.as_str()).collect();
    assert_eq!(got, want, "{ctx}");
}
