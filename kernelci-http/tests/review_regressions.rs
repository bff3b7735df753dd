//! Regression tests of the review of kernelci-http: each test reproduces a problem
//! found (or a property checked) by the review, over real HTTP where it can. The
//! comment above each test says what went wrong before the fix.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::time::Duration;

use common::{every_backend, TestServer, SECRET};
use hyper::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use kernelci_core::time::Timestamp;
use kernelci_http::{jobs, HttpConfig};

/// Generous bound for things that must happen "soon" (never a timing assertion: a
/// test that hits it has found a lost message or a hang).
const PATIENCE: Duration = Duration::from_secs(30);

fn checkout(name: &str) -> Value {
    json!({
        "kind": "checkout",
        "name": name,
        "path": [name],
        "data": {"kernel_revision": {
            "tree": "mainline", "branch": "master", "commit": "abc123",
            "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git"
        }}
    })
}

/// `depth` nested arrays around `1`.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..depth {
        v = json!([v]);
    }
    v
}

/// `http_requests_total` of `/metrics`.
async fn requests_total(s: &TestServer) -> u64 {
    let r = s.get("/metrics", None).await;
    r.text()
        .lines()
        .find(|l| l.starts_with("http_requests_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("http_requests_total")
}

/// Sends `head` (a request without body) on a new connection and returns the
/// connection, once the server has started handling the request (it counts in
/// `/metrics` when its handler starts).
async fn start_raw_request(s: &TestServer, head: String) -> TcpStream {
    let before = requests_total(s).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    // `/metrics` itself counts one per look.
    let mut looks = 1;
    loop {
        let now = requests_total(s).await;
        if now > before + looks {
            return c;
        }
        looks += 1;
        assert!(looks < 10_000, "the request never reached its handler");
        tokio::task::yield_now().await;
    }
}

/// Lets the server notice a closed connection before the test goes on.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The next envelope of subscription `id` that is not a keep-alive, listening
/// through at most `beeps` keep-alives.
async fn next_message(s: &TestServer, id: u64, token: &str, beeps: usize) -> Option<Value> {
    for _ in 0..=beeps {
        let r = s.get(&format!("/latest/listen/{id}"), Some(token)).await;
        assert_eq!(r.code(), 200, "{}", r.text());
        let envelope: Value = serde_json::from_str(r.json()["data"].as_str().unwrap()).unwrap();
        if envelope["data"] != "BEEP" {
            return Some(envelope);
        }
    }
    None
}

// ---- client-controlled input -------------------------------------------------------

every_backend!(deep_json_bodies_are_refused_before_they_poison_the_event_log);
/// A node whose `data` was nested ~125 levels deep was accepted, but its node event
/// (which holds `data` two levels further down) could not be read back from the
/// store (serde_json's depth limit): every `GET /events` and every durable
/// subscriber's `listen` on `node` answered 500 until the event expired.
async fn deep_json_bodies_are_refused_before_they_poison_the_event_log() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let sub = s
        .send_json(
            Method::POST,
            "/latest/subscribe/node?subscriber_id=svc:node",
            Some(&token),
            None,
        )
        .await;
    let sub = sub.json()["id"].as_u64().unwrap();

    // Body depth 125: refused with pydantic's json_invalid shape, even without a
    // token (decoding comes before authentication).
    let mut deep = checkout("deep");
    deep["data"]["deep"] = nested(123);
    for token in [Some(token.as_str()), None] {
        let r = s.post("/latest/node", token, &deep).await;
        assert_eq!(r.code(), 422, "{}", r.text());
        let d = &r.detail()[0];
        assert_eq!(d["type"], "json_invalid");
        assert_eq!(d["msg"], "JSON decode error");
        assert!(d["loc"][1].is_u64(), "{d}");
        assert!(d["ctx"]["error"].as_str().unwrap().contains("100 levels"));
    }

    // Depth 100 (the limit) is stored, and everything derived from it reads back.
    let mut ok = checkout("ok");
    ok["data"]["deep"] = nested(98);
    let r = s.post("/latest/node", Some(&token), &ok).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = s.get("/latest/events?recursive=1&limit=10", None).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()[0]["data"]["id"], id);
    let e = next_message(&s, sub, &token, 5)
        .await
        .expect("the node event");
    assert_eq!(e["data"]["id"], id);
    let r = s.get(&format!("/latest/node/{id}"), None).await;
    assert_eq!(r.json()["data"]["deep"], nested(98));
    // Other bodies too (the check is the decoder's).
    let mut publish = json!({"data": nested(100)});
    let r = s.post("/latest/publish/x", Some(&token), &publish).await;
    assert_eq!(r.code(), 422, "{}", r.text());
    publish["data"] = nested(99);
    let r = s.post("/latest/publish/x", Some(&token), &publish).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    s.stop().await;
}

every_backend!(bodies_are_validated_after_authentication);
/// `PUT /batch/nodeset` decoded its body as an object before authenticating, and
/// every endpoint needing a user answered an empty body with 422 before looking at
/// the token; FastAPI decodes, then authenticates (401), then validates (422).
async fn bodies_are_validated_after_authentication() {
    let s = TestServer::start().await;
    let (alice, token) = s.user("alice", false, true, &[]).await;
    let (_, admin) = s.user("root", true, true, &[]).await;
    let node = s.post("/latest/node", Some(&token), &checkout("c")).await;
    let node = node.json()["id"].as_str().unwrap().to_owned();
    let cases: Vec<(Method, String)> = vec![
        (Method::POST, "/latest/node".into()),
        (Method::PUT, format!("/latest/node/{node}")),
        (Method::PATCH, format!("/latest/node/{node}")),
        (Method::PUT, format!("/latest/nodes/{node}")),
        (Method::PUT, "/latest/batch/nodeset".into()),
        (Method::POST, "/latest/user-groups".into()),
        (Method::POST, "/latest/user/invite".into()),
        (Method::PATCH, "/latest/user/me".into()),
        (Method::PATCH, format!("/latest/user/{}", alice.id)),
    ];
    for (method, path) in &cases {
        // Empty body, no token: 401.
        let r = s.send_json(method.clone(), path, None, None).await;
        assert_eq!(r.code(), 401, "{method} {path}: {}", r.text());
        assert_eq!(r.detail(), "Unauthorized");
        // Empty body with a token: 422 missing body.
        let tok = if path.contains("user") {
            &admin
        } else {
            &token
        };
        let r = s.send_json(method.clone(), path, Some(tok), None).await;
        assert_eq!(r.code(), 422, "{method} {path}: {}", r.text());
        assert_eq!(r.detail()[0]["type"], "missing");
        assert_eq!(r.detail()[0]["loc"], json!(["body"]));
        // Malformed JSON: 422 even without a token.
        let r = s
            .request(
                method.clone(),
                path,
                &[("content-type", "application/json")],
                "{oops",
            )
            .await;
        assert_eq!(r.code(), 422, "{method} {path}: {}", r.text());
        assert_eq!(r.detail()[0]["type"], "json_invalid");
    }
    // A batch body that is JSON but not an object: 401 without a token, 422 with.
    let r = s
        .send_json(Method::PUT, "/latest/batch/nodeset", None, Some(&json!([])))
        .await;
    assert_eq!(r.code(), 401, "{}", r.text());
    let r = s
        .send_json(
            Method::PUT,
            "/latest/batch/nodeset",
            Some(&token),
            Some(&json!([])),
        )
        .await;
    assert_eq!(r.code(), 422, "{}", r.text());
    assert_eq!(r.detail()[0]["type"], "model_attributes_type");
    s.stop().await;
}

every_backend!(nodes_pagination_is_validated_like_fastapi);
/// `/nodes` reported only the first bad pagination parameter (FastAPI lists both)
/// and refused integers beyond 63 bits with a misleading `int_parsing`, while
/// `/users` and `/user-groups` accept them (Python integers are unbounded).
async fn nodes_pagination_is_validated_like_fastapi() {
    let s = TestServer::start().await;
    let r = s.get("/latest/nodes?limit=0&offset=-1", None).await;
    assert_eq!(r.code(), 422, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"detail": [
            {"type": "greater_than_equal", "loc": ["query", "limit"],
             "msg": "Input should be greater than or equal to 1", "input": "0",
             "ctx": {"ge": 1}},
            {"type": "greater_than_equal", "loc": ["query", "offset"],
             "msg": "Input should be greater than or equal to 0", "input": "-1",
             "ctx": {"ge": 0}},
        ]})
    );
    let r = s.get("/latest/nodes?limit=x", None).await;
    assert_eq!(r.code(), 422);
    assert_eq!(
        r.detail()[0],
        json!({"type": "int_parsing", "loc": ["query", "limit"],
               "msg": "Input should be a valid integer, unable to parse string as an integer",
               "input": "x"})
    );
    let r = s
        .get(
            "/latest/nodes?limit=99999999999999999999&offset=99999999999999999999",
            None,
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()["items"], json!([]));
    assert_eq!(r.json()["limit"], json!(u64::MAX));
    // The last value wins, and the filters still apply.
    let (_, token) = s.user("alice", false, true, &[]).await;
    for name in ["a", "b", "c"] {
        s.post("/latest/node", Some(&token), &checkout(name)).await;
    }
    let r = s
        .get("/latest/nodes?limit=0&limit=2&offset=1&name__ne=zzz", None)
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let page = r.json();
    assert_eq!(
        (page["total"].as_u64(), page["limit"].as_u64()),
        (Some(3), Some(2))
    );
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "c"]);
    s.stop().await;
}

every_backend!(noevent_is_a_pydantic_boolean);
/// `noevent` is a declared boolean query parameter of `PUT`/`PATCH /node/{id}`:
/// pydantic refuses a value it cannot read as a boolean (422, before the node is
/// looked up) and reads `t`/`y` as true; the handler took any other value as false
/// and published the event.
async fn noevent_is_a_pydantic_boolean() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let node = s
        .post("/latest/node", Some(&token), &checkout("c"))
        .await
        .json();
    let id = node["id"].as_str().unwrap().to_owned();
    let missing = "0123456789abcdef01234567";
    for (method, target) in [(Method::PUT, id.as_str()), (Method::PATCH, missing)] {
        let r = s
            .send_json(
                method.clone(),
                &format!("/latest/node/{target}?noevent=maybe"),
                Some(&token),
                Some(&json!({"state": "available"})),
            )
            .await;
        assert_eq!(r.code(), 422, "{method}: {}", r.text());
        assert_eq!(
            r.detail(),
            json!([{"type": "bool_parsing", "loc": ["query", "noevent"],
                    "msg": "Input should be a valid boolean, unable to interpret input",
                    "input": "maybe"}])
        );
        // Without a token the token comes first.
        let r = s
            .send_json(
                method,
                &format!("/latest/node/{target}?noevent=maybe"),
                None,
                Some(&json!({"state": "available"})),
            )
            .await;
        assert_eq!(r.code(), 401, "{}", r.text());
    }
    let events = |r: common::TestResponse| r.json().as_array().unwrap().len();
    let before = events(s.get("/latest/events", None).await);
    for flag in ["t", "Y", "on", "1"] {
        let r = s
            .patch(
                &format!("/latest/node/{id}?noevent={flag}"),
                Some(&token),
                &json!({"debug": {"flag": flag}}),
            )
            .await;
        assert_eq!(r.code(), 200, "{}", r.text());
    }
    assert_eq!(events(s.get("/latest/events", None).await), before);
    let r = s
        .patch(
            &format!("/latest/node/{id}?noevent=off"),
            Some(&token),
            &json!({"debug": {"flag": "off"}}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(events(s.get("/latest/events", None).await), before + 1);
    s.stop().await;
}

// ---- long polls ----------------------------------------------------------------------

every_backend!(an_abandoned_pop_does_not_take_the_next_item);
/// A client that gave up on a waiting `GET /pop` (clients time out after 60 s and
/// retry) left its pop running in the server: the next item pushed was popped by
/// it and thrown away.
async fn an_abandoned_pop_does_not_take_the_next_item() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let head = format!(
        "GET /latest/pop/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
    );
    for _ in 0..3 {
        drop(start_raw_request(&s, head.clone()).await);
    }
    settle().await;
    let r = s
        .post(
            "/latest/push/jobs",
            Some(&token),
            &json!({"data": {"n": 1}}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let r = tokio::time::timeout(PATIENCE, s.get("/latest/pop/jobs", Some(&token)))
        .await
        .expect("the pushed item was taken by an abandoned pop");
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()["data"], json!({"n": 1}));
    s.stop().await;
}

every_backend!(an_abandoned_listen_does_not_take_the_next_message);
/// The same for `listen`: an abandoned listen (live or durable subscription) kept
/// waiting and swallowed the next message; a durable one also acknowledged it.
async fn an_abandoned_listen_does_not_take_the_next_message() {
    // A long keep-alive, so that the abandoned listens are still waiting when the
    // messages are published.
    let config = HttpConfig {
        keep_alive_period: 50,
        ..HttpConfig::for_tests(SECRET)
    };
    let s = TestServer::start_with(config).await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    for query in ["", "?subscriber_id=svc:ch"] {
        let r = s
            .send_json(
                Method::POST,
                &format!("/latest/subscribe/ch{query}"),
                Some(&token),
                None,
            )
            .await;
        let id = r.json()["id"].as_u64().unwrap();
        let head = format!(
            "GET /latest/listen/{id} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
        );
        drop(start_raw_request(&s, head).await);
        settle().await;
        let payload = json!({"query": query});
        let r = s
            .post(
                "/latest/publish/ch",
                Some(&token),
                &json!({ "data": payload }),
            )
            .await;
        assert_eq!(r.code(), 200, "{}", r.text());
        let e = tokio::time::timeout(PATIENCE, next_message(&s, id, &token, 0))
            .await
            .expect("the message was taken by the abandoned listen")
            .expect("a message, not a keep-alive");
        assert_eq!(e["data"], payload, "{query}");
        let r = s
            .send_json(
                Method::POST,
                &format!("/latest/unsubscribe/{id}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(r.code(), 200);
    }
    s.stop().await;
}

// ---- resource limits -----------------------------------------------------------------

every_backend!(a_declared_body_over_the_limit_is_refused_at_once);
/// A `Content-Length` over the body limit was only refused once that many bytes had
/// arrived: a client declaring a huge body and sending nothing held the request (and
/// a graceful shutdown) for the whole body timeout.
async fn a_declared_body_over_the_limit_is_refused_at_once() {
    let config = HttpConfig {
        max_body_bytes: 1000,
        ..HttpConfig::for_tests(SECRET)
    };
    let s = TestServer::start_with(config).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(
        b"POST /latest/node HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 1000000000000\r\n\r\n{",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, c.read_to_end(&mut out))
        .await
        .expect("no answer to an oversized Content-Length")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["detail"], "Request body larger than 1000 bytes");
    // A body that is too large without declaring it is refused as it arrives.
    let r = s
        .request(
            Method::POST,
            "/latest/node",
            &[("content-type", "application/json")],
            vec![b' '; 5000],
        )
        .await;
    assert_eq!(r.code(), 413, "{}", r.text());
    s.stop().await;
}

every_backend!(shutdown_does_not_wait_for_a_stalled_upload);
/// Shutdown waited for every connection, including an upload that had stalled: the
/// server could take the whole body timeout (5 min by default) to stop.
async fn shutdown_does_not_wait_for_a_stalled_upload() {
    let config = HttpConfig {
        shutdown_grace_seconds: 1,
        ..HttpConfig::for_tests(SECRET)
    };
    let s = TestServer::start_with(config).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"POST /latest/node HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"na")
        .await
        .unwrap();
    settle().await;
    tokio::time::timeout(PATIENCE, s.stop())
        .await
        .expect("shutdown waited for the stalled upload");
    drop(c);
}

// ---- security ------------------------------------------------------------------------

every_backend!(a_hierarchy_cannot_overwrite_another_users_node);
/// `PUT /nodes/{id}` checked the edit permission on the root only: naming another
/// user's node by id as a child of one's own root replaced it wholesale.
async fn a_hierarchy_cannot_overwrite_another_users_node() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let (_, mallory) = s.user("mallory", false, true, &[]).await;
    let victim = s.post("/latest/node", Some(&bob), &checkout("bobs")).await;
    let victim = victim.json();
    let root = s
        .post("/latest/node", Some(&mallory), &checkout("mine"))
        .await;
    let root = root.json();
    let root_id = root["id"].as_str().unwrap();
    let mut forged = victim.clone();
    forged["name"] = json!("pwned");
    forged["state"] = json!("done");
    let body = json!({"node": root, "child_nodes": [{"node": forged, "child_nodes": []}]});
    let r = s
        .put(&format!("/latest/nodes/{root_id}"), Some(&mallory), &body)
        .await;
    assert_eq!(r.code(), 401, "{}", r.text());
    assert_eq!(r.detail(), "Unauthorized to complete the operation");
    let now = s
        .get(
            &format!("/latest/node/{}", victim["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(now.json(), victim);
    // Nothing of the hierarchy was written.
    let r = s.get(&format!("/latest/node/{root_id}"), None).await;
    assert_eq!(r.json()["updated"], root["updated"]);
    // Bob may name his own node in a hierarchy under a root he may edit.
    let bob_root = s
        .post("/latest/node", Some(&bob), &checkout("bobroot"))
        .await;
    let bob_root = bob_root.json();
    let mut child = victim.clone();
    child["name"] = json!("renamed");
    let body = json!({"node": bob_root, "child_nodes": [{"node": child, "child_nodes": []}]});
    let r = s
        .put(
            &format!("/latest/nodes/{}", bob_root["id"].as_str().unwrap()),
            Some(&bob),
            &body,
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()[1]["name"], "renamed");
    s.stop().await;
}

every_backend!(users_cannot_take_a_legacy_pipeline_account_name);
/// Any user could rename themselves `production` (or `staging.kernelci.org`): the
/// next start-up gives those names the group `node:edit:any`.
async fn users_cannot_take_a_legacy_pipeline_account_name() {
    let s = TestServer::start().await;
    let (alice, token) = s.user("alice", false, true, &[]).await;
    let (_, admin) = s.user("root", true, true, &[]).await;
    for name in ["production", "staging.kernelci.org"] {
        let r = s
            .patch("/latest/user/me", Some(&token), &json!({"username": name}))
            .await;
        assert_eq!(r.code(), 400, "{}", r.text());
        assert_eq!(r.detail(), format!("Username is reserved: {name}"));
    }
    let r = s.get("/latest/whoami", Some(&token)).await;
    assert_eq!(r.json()["username"], "alice");
    // Other names still work, and administrators decide for everybody.
    let r = s
        .patch(
            "/latest/user/me",
            Some(&token),
            &json!({"username": "alice2"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let r = s
        .patch(
            &format!("/latest/user/{}", alice.id),
            Some(&admin),
            &json!({"username": "production"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    // The account keeps its name when it updates itself otherwise.
    let r = s
        .patch(
            "/latest/user/me",
            Some(&token),
            &json!({"username": "production", "password": "x"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    s.stop().await;
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A JWT with this header and payload, signed with HMAC-`alg` and `key` (or
/// unsigned for `none`).
fn jwt(header: &Value, payload: &Value, key: &[u8]) -> String {
    use jsonwebtoken::{crypto, Algorithm, EncodingKey};
    let msg = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(payload.to_string().as_bytes())
    );
    let alg = match header["alg"].as_str() {
        Some("HS384") => Algorithm::HS384,
        Some("HS512") => Algorithm::HS512,
        Some("HS256") => Algorithm::HS256,
        _ => return format!("{msg}."),
    };
    let sig = crypto::sign(msg.as_bytes(), &EncodingKey::from_secret(key), alg).unwrap();
    format!("{msg}.{sig}")
}

every_backend!(forged_access_tokens_are_anonymous);
/// Access tokens that must not verify: unsigned, another algorithm, no or another
/// audience, expired, not yet valid, another key, a username as `sub`. Checked so
/// that a change of the JWT library or its settings cannot open any of them.
async fn forged_access_tokens_are_anonymous() {
    let config = HttpConfig {
        unified_secret: "unified".into(),
        ..HttpConfig::for_tests(SECRET)
    };
    let s = TestServer::start_with(config).await;
    let (alice, _) = s.user("alice", false, true, &[]).await;
    let sub = alice.id.to_string();
    let now = Timestamp::now().to_chrono().timestamp();
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    let good = json!({"sub": sub, "aud": ["fastapi-users:auth"], "exp": now + 600});
    let key = SECRET.as_bytes();
    // The well-formed ones work (the test can fail): both keys, `aud` as a string,
    // no `exp` (ACCESS_TOKEN_EXPIRE_SECONDS=0 issues such tokens).
    for token in [
        jwt(&hs256, &good, key),
        jwt(&hs256, &good, b"unified"),
        jwt(
            &hs256,
            &json!({"sub": sub, "aud": "fastapi-users:auth"}),
            key,
        ),
    ] {
        let r = s.get("/latest/whoami", Some(&token)).await;
        assert_eq!(r.code(), 200, "{token}: {}", r.text());
    }
    let forged = [
        jwt(&json!({"alg": "none", "typ": "JWT"}), &good, key),
        jwt(&json!({"alg": "HS512", "typ": "JWT"}), &good, key),
        jwt(&json!({"alg": "HS384", "typ": "JWT"}), &good, b"unified"),
        jwt(&json!({"alg": "RS256", "typ": "JWT"}), &good, key),
        jwt(&hs256, &json!({"sub": sub, "exp": now + 600}), key),
        jwt(
            &hs256,
            &json!({"sub": sub, "aud": ["fastapi-users:reset"]}),
            key,
        ),
        jwt(
            &hs256,
            &json!({"sub": sub, "aud": "fastapi-users:auth", "exp": now - 5}),
            key,
        ),
        jwt(
            &hs256,
            &json!({"sub": sub, "aud": "fastapi-users:auth", "nbf": now + 600}),
            key,
        ),
        jwt(&hs256, &json!({"aud": "fastapi-users:auth"}), key),
        jwt(
            &hs256,
            &json!({"sub": "alice", "aud": "fastapi-users:auth"}),
            key,
        ),
        jwt(&hs256, &good, b"another key"),
        jwt(&hs256, &good, b""),
        // An invite token is not an access token.
        jwt(
            &hs256,
            &json!({"sub": sub, "email": alice.email, "purpose": "invite", "exp": now + 600}),
            key,
        ),
        "a.b.c".to_owned(),
        String::new(),
    ];
    for token in forged {
        let r = s
            .request(
                Method::GET,
                "/latest/whoami",
                &[("authorization", &format!("Bearer {token}"))],
                Vec::new(),
            )
            .await;
        assert_eq!(r.code(), 401, "{token}: {}", r.text());
        assert_eq!(r.detail(), "Unauthorized");
        assert!(r.header("www-authenticate").is_none());
    }
    s.stop().await;
}

every_backend!(password_hashes_never_leave_the_server);
/// No answer that carries a user ever carries its password hash (every endpoint
/// that returns users, and the invitation flow).
async fn password_hashes_never_leave_the_server() {
    let s = TestServer::start().await;
    let (admin_user, admin) = s.user("root", true, true, &["team"]).await;
    let r = s
        .post(
            "/latest/user/invite",
            Some(&admin),
            &json!({"username": "new", "email": "new@example.org", "return_token": true,
                    "send_email": false, "groups": ["team"]}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let invited = r.json();
    let invite_token = invited["token"].as_str().unwrap().to_owned();
    let new_id = invited["user"]["id"].as_str().unwrap().to_owned();
    let mut answers = vec![r];
    answers.push(
        s.post(
            "/latest/user/accept-invite",
            None,
            &json!({"token": invite_token, "password": "pw"}),
        )
        .await,
    );
    answers.push(
        s.post_form(
            "/latest/user/login",
            None,
            &[("username", "new"), ("password", "pw")],
        )
        .await,
    );
    let new_token = answers[2].json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    answers.push(s.get("/latest/whoami", Some(&new_token)).await);
    answers.push(
        s.get(&format!("/latest/user/{new_id}"), Some(&new_token))
            .await,
    );
    answers.push(s.get("/latest/users", Some(&new_token)).await);
    answers.push(s.get("/latest/users?username=new", Some(&new_token)).await);
    answers.push(
        s.patch(
            "/latest/user/me",
            Some(&new_token),
            &json!({"password": "pw2"}),
        )
        .await,
    );
    answers.push(
        s.patch(
            &format!("/latest/user/{}", admin_user.id),
            Some(&admin),
            &json!({"password": "pw3"}),
        )
        .await,
    );
    answers.push(s.get("/latest/openapi.json", None).await);
    let stored = s
        .state
        .store()
        .get_user_by_username("new")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.hashed_password.starts_with("$argon2id$"));
    for r in &answers[..answers.len() - 1] {
        assert_eq!(r.code(), 200, "{}", r.text());
    }
    for r in &answers {
        let text = r.text();
        assert!(!text.contains("$argon2"), "{text}");
        assert!(!text.contains(&stored.hashed_password), "{text}");
    }
    for r in &answers[..answers.len() - 1] {
        assert!(!r.text().contains("hashed_password"), "{}", r.text());
    }
    // Filtering on the hash is not possible either (filters see the public form).
    let r = s
        .get(
            &format!(
                "/latest/users?hashed_password={}",
                form_urlencoded::byte_serialize(stored.hashed_password.as_bytes())
                    .collect::<String>()
            ),
            Some(&new_token),
        )
        .await;
    assert_eq!(r.json()["total"], 0);
    s.stop().await;
}

// ---- background jobs -----------------------------------------------------------------

every_backend!(background_rounds_end_once_the_server_is_stopping);
/// The background rounds did not look at shutdown: a long purge or state-machine
/// round kept the server from stopping until it was over.
async fn background_rounds_end_once_the_server_is_stopping() {
    let config = HttpConfig {
        node_purge_age_days: Some(1),
        ..HttpConfig::for_tests(SECRET)
    };
    let s = TestServer::start_with(config).await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let mut node = checkout("old");
    node["created"] = json!("2020-01-01T00:00:00");
    node["timeout"] = json!("2020-01-02T00:00:00");
    let r = s.post("/latest/node", Some(&token), &node).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let mut kbuild = json!({"kind": "kbuild", "name": "k", "path": ["old", "k"],
        "parent": r.json()["id"], "data": {}, "created": "2020-01-01T00:00:00",
        "timeout": "2020-01-02T00:00:00"});
    let r = s.post("/latest/node", Some(&token), &kbuild).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    kbuild = r.json();
    let now = Timestamp::now();

    s.state.begin_shutdown();
    assert_eq!(
        jobs::run_state_machine(&s.state, now).await.unwrap(),
        jobs::StateRound::default()
    );
    assert_eq!(jobs::run_purge(&s.state, now).await.unwrap(), 0);
    let r = s
        .get(
            &format!("/latest/node/{}", kbuild["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(r.json()["state"], "running");

    // The same rounds on a server that is not stopping do the work (the test can
    // fail).
    let data = s.stop().await;
    let config = HttpConfig {
        node_purge_age_days: Some(1),
        ..HttpConfig::for_tests(SECRET)
    };
    let s = TestServer::start_at(data, config).await;
    let round = jobs::run_state_machine(&s.state, now).await.unwrap();
    assert_eq!(round.timed_out, 2);
    assert_eq!(jobs::run_purge(&s.state, now).await.unwrap(), 1);
    s.stop().await;
}
