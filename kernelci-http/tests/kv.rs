//! The key/value store over real HTTP (API.md §9 "Key/value store").

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::{every_backend, TestServer, SECRET};
use hyper::Method;
use kernelci_http::HttpConfig;
use serde_json::json;

/// POST `body` with `content_type` (none when `None`) and an optional token.
async fn set(
    s: &TestServer,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<bytes::Bytes>,
) -> common::TestResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    s.request(Method::POST, path, &headers, body).await
}

const JSON: Option<&str> = Some("application/json");

every_backend!(users_only);
async fn users_only() {
    let s = TestServer::start().await;
    let unauthorized = (401, json!({"detail": "Unauthorized"}));
    let r = s.get("/latest/kv/ns/k", None).await;
    assert_eq!((r.code(), r.json()), unauthorized);
    let r = set(&s, "/latest/kv/ns/k", None, JSON, "\"v\"").await;
    assert_eq!((r.code(), r.json()), unauthorized);
    let r = set(&s, "/latest/kv/ns/k", None, Some("text/plain"), "v").await;
    assert_eq!((r.code(), r.json()), unauthorized);
    let r = s.delete("/latest/kv/ns/k", None).await;
    assert_eq!((r.code(), r.json()), unauthorized);
    let r = s.get("/latest/kv/ns/k", Some("not-a-token")).await;
    assert_eq!((r.code(), r.json()), unauthorized);
    // A malformed JSON body is refused before authentication.
    let r = set(&s, "/latest/kv/ns/k", None, JSON, "abc").await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "json_invalid");
    assert_eq!(r.detail()[0]["loc"][0], "body");
    s.stop().await;
}

every_backend!(set_get_delete);
async fn set_get_delete() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let tok = Some(token.as_str());

    let r = s.get("/latest/kv/ns/k", tok).await;
    assert_eq!((r.code(), r.json()), (200, json!(null)));

    // JSON content type: a JSON string.
    let r = set(&s, "/latest/kv/ns/k", tok, JSON, "\"abc\"").await;
    assert_eq!((r.code(), r.json()), (200, json!("OK")));
    assert_eq!(s.get("/latest/kv/ns/k", tok).await.json(), json!("abc"));
    for (body, input) in [
        ("5", json!(5)),
        ("{\"a\": 1}", json!({"a": 1})),
        ("[\"x\"]", json!(["x"])),
    ] {
        let r = set(&s, "/latest/kv/ns/k", tok, JSON, body).await;
        assert_eq!(r.code(), 422, "{body}");
        assert_eq!(
            r.detail(),
            json!([{"type": "string_type", "loc": ["body"], "msg": "Input should be a valid string",
                    "input": input}])
        );
    }
    let r = set(&s, "/latest/kv/ns/k", tok, JSON, "abc").await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("json_invalid"))
    );
    assert_eq!(
        s.get("/latest/kv/ns/k", tok).await.json(),
        json!("abc"),
        "unchanged"
    );
    let r = set(
        &s,
        "/latest/kv/ns/k",
        tok,
        Some("application/json; charset=utf-8"),
        "\"é\"",
    )
    .await;
    assert_eq!(r.code(), 200);
    assert_eq!(s.get("/latest/kv/ns/k", tok).await.json(), json!("é"));
    let r = set(
        &s,
        "/latest/kv/ns/k",
        tok,
        Some("application/vnd.api+json"),
        "\"v2\"",
    )
    .await;
    assert_eq!(r.code(), 200);
    assert_eq!(s.get("/latest/kv/ns/k", tok).await.json(), json!("v2"));
    // No content type at all: read as JSON too (as FastAPI does).
    let r = set(&s, "/latest/kv/ns/k", tok, None, "\"v3\"").await;
    assert_eq!(r.code(), 200);
    assert_eq!(s.get("/latest/kv/ns/k", tok).await.json(), json!("v3"));
    let r = set(&s, "/latest/kv/ns/k", tok, None, "bare").await;
    assert_eq!(r.code(), 422);

    // Any other content type: the raw text, quotes and all.
    let r = set(
        &s,
        "/latest/kv/ns/raw",
        tok,
        Some("text/plain"),
        "hello world",
    )
    .await;
    assert_eq!((r.code(), r.json()), (200, json!("OK")));
    assert_eq!(
        s.get("/latest/kv/ns/raw", tok).await.json(),
        json!("hello world")
    );
    set(
        &s,
        "/latest/kv/ns/raw",
        tok,
        Some("application/octet-stream"),
        "\"q\"",
    )
    .await;
    assert_eq!(s.get("/latest/kv/ns/raw", tok).await.json(), json!("\"q\""));
    let r = set(
        &s,
        "/latest/kv/ns/raw",
        tok,
        Some("text/plain"),
        vec![0xffu8, 0xfe],
    )
    .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "string_unicode");
    assert_eq!(r.detail()[0]["loc"], json!(["body"]));

    // Empty body, "" and null delete.
    for (ct, body) in [
        (Some("text/plain"), ""),
        (JSON, ""),
        (JSON, "\"\""),
        (JSON, "null"),
    ] {
        set(&s, "/latest/kv/ns/k", tok, JSON, "\"again\"").await;
        let r = set(&s, "/latest/kv/ns/k", tok, ct, body).await;
        assert_eq!((r.code(), r.json()), (200, json!("OK")), "{ct:?} {body:?}");
        assert_eq!(
            s.get("/latest/kv/ns/k", tok).await.json(),
            json!(null),
            "{body:?}"
        );
    }

    // DELETE, also of an absent key.
    for _ in 0..2 {
        let r = s.delete("/latest/kv/ns/raw", tok).await;
        assert_eq!(
            (r.code(), r.json()),
            (200, json!("Key-value pair deleted successfully"))
        );
        assert_eq!(s.get("/latest/kv/ns/raw", tok).await.json(), json!(null));
    }
    s.stop().await;
}

every_backend!(namespaces_and_keys);
async fn namespaces_and_keys() {
    let s = TestServer::start().await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    // Percent-encoded route parameters are decoded: `a%3Ab` is the namespace `a:b`.
    set(&s, "/latest/kv/a%3Ab/c", Some(&alice), JSON, "\"one\"").await;
    set(&s, "/latest/kv/a/b%3Ac", Some(&alice), JSON, "\"two\"").await;
    set(&s, "/latest/kv/other/c", Some(&alice), JSON, "\"three\"").await;
    assert_eq!(
        s.get("/latest/kv/a:b/c", Some(&alice)).await.json(),
        json!("one")
    );
    assert_eq!(
        s.get("/latest/kv/a/b:c", Some(&alice)).await.json(),
        json!("two")
    );
    assert_eq!(
        s.get("/v0/kv/other/c", Some(&alice)).await.json(),
        json!("three")
    );
    // The store is shared by all users.
    assert_eq!(s.get("/kv/a:b/c", Some(&bob)).await.json(), json!("one"));
    s.delete("/latest/kv/a%3Ab/c", Some(&bob)).await;
    assert_eq!(
        s.get("/latest/kv/a:b/c", Some(&alice)).await.json(),
        json!(null)
    );
    assert_eq!(
        s.get("/latest/kv/a/b:c", Some(&alice)).await.json(),
        json!("two")
    );
    s.stop().await;
}

every_backend!(values_survive_a_restart);
async fn values_survive_a_restart() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let tok = Some(token.as_str());
    set(&s, "/latest/kv/ns/kept", tok, JSON, "\"durable\"").await;
    set(&s, "/latest/kv/ns/gone", tok, Some("text/plain"), "x").await;
    s.delete("/latest/kv/ns/gone", tok).await;
    let data = s.stop().await;

    let s = TestServer::start_at(data, HttpConfig::for_tests(SECRET)).await;
    assert_eq!(
        s.get("/latest/kv/ns/kept", tok).await.json(),
        json!("durable")
    );
    assert_eq!(s.get("/latest/kv/ns/gone", tok).await.json(), json!(null));
    s.stop().await;
}
