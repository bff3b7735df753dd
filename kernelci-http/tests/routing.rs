//! Prefixes, redirects, 404/405, body limits, pages (API.md §1.1, §3).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::{every_backend, TestServer};
use hyper::Method;
use kernelci_http::HttpConfig;
use serde_json::json;

every_backend!(prefixes_versions_and_errors);
async fn prefixes_versions_and_errors() {
    let s = TestServer::start().await;
    // Root answers JSON to API clients, HTML to browsers, under every prefix.
    for path in ["/", "/latest/", "/v0/"] {
        let r = s.get(path, None).await;
        assert_eq!(r.code(), 200, "{path}");
        assert_eq!(r.json(), json!({"message": "KernelCI API"}));
    }
    let r = s
        .request(Method::GET, "/", &[("accept", "text/html,*/*")], "")
        .await;
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("KernelCI API"));
    // `/latest` redirects to `/latest/`; a trailing slash to the plain spelling.
    // Relative: the client's Host header never ends up in a Location.
    let r = s
        .request(Method::GET, "/latest", &[("host", "evil.example.org")], "")
        .await;
    assert_eq!(r.code(), 307);
    assert_eq!(r.header("location").unwrap(), "/latest/");
    let r = s.get("/latest/count/?kind=x", None).await;
    assert_eq!(r.code(), 307);
    assert!(r
        .header("location")
        .unwrap()
        .ends_with("/latest/count?kind=x"));
    // Other versions: 400 text.
    let r = s.get("/v1/nodes", None).await;
    assert_eq!(r.code(), 400);
    assert_eq!(r.text(), "Unsupported API version: v1");
    // Unknown paths and methods.
    let r = s.get("/latestfoo", None).await;
    assert_eq!((r.code(), r.json()), (404, json!({"detail": "Not Found"})));
    let r = s.get("/group/65a1355ee98651d0fe81e412", None).await;
    assert_eq!(r.code(), 404);
    let r = s.send_json(Method::POST, "/user/verify", None, None).await;
    assert_eq!(r.code(), 405);
    assert_eq!(r.detail(), json!("Method Not Allowed"));
    assert!(r.header("allow").unwrap().contains("GET"));
    let r = s.send_json(Method::GET, "/unsubscribe/1", None, None).await;
    assert_eq!(r.code(), 405);
    // Docs of the reference are not served; ours is.
    assert_eq!(s.get("/docs", None).await.code(), 404);
    let r = s.get("/latest/openapi.json", None).await;
    assert_eq!(r.code(), 200);
    assert!(r.json()["paths"]["/latest/nodes"]["get"].is_object());
    assert_eq!(r.json()["openapi"], "3.1.0");
    // The same document under every spelling of the prefix.
    for path in ["/v0/openapi.json", "/openapi.json"] {
        let other = s.get(path, None).await;
        assert_eq!(other.code(), 200, "{path}");
        assert_eq!(other.json(), r.json(), "{path}");
    }
    s.stop().await;
}

every_backend!(pages_assets_and_metrics);
async fn pages_assets_and_metrics() {
    let s = TestServer::start().await;
    let r = s.get("/viewer", None).await;
    assert_eq!(r.code(), 200);
    assert_eq!(
        r.header("cache-control").unwrap(),
        "no-cache, no-store, must-revalidate"
    );
    assert!(r.text().contains("/latest/nodes"));
    let r = s.get("/icons/ok.png", None).await;
    assert_eq!(r.code(), 200);
    assert_eq!(r.header("content-type").unwrap(), "image/png");
    assert!(r.body.starts_with(b"\x89PNG"));
    assert_eq!(
        s.get("/icons/x.gif", None).await.detail(),
        json!("Invalid icon name")
    );
    assert_eq!(s.get("/icons/nope.png", None).await.code(), 404);
    let r = s.get("/static/css/style.css", None).await;
    assert_eq!(r.code(), 200);
    assert_eq!(r.header("cache-control").unwrap(), "public, max-age=3600");
    // The web pages' assets: revalidated each time, 304 for the same bytes.
    let r = s.get("/static/js/viewer.js", None).await;
    assert_eq!(r.code(), 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(r.header("cache-control").as_deref(), Some("no-cache"));
    let tag = r.header("etag").unwrap();
    assert!(r.text().contains("convertCondition"));
    let again = s
        .request(
            Method::GET,
            "/static/js/viewer.js",
            &[("if-none-match", &tag)],
            "",
        )
        .await;
    assert_eq!(again.code(), 304);
    assert!(again.body.is_empty());
    let other = s
        .request(
            Method::GET,
            "/static/js/common.js",
            &[("if-none-match", &tag)],
            "",
        )
        .await;
    assert_eq!(other.code(), 200, "another file, another tag");
    assert_ne!(other.header("etag"), Some(tag));
    assert_eq!(
        s.get("/static/css/a%20b.css", None).await.detail(),
        json!("Invalid filename")
    );
    assert_eq!(
        s.get("/static/js/none.js", None).await.detail(),
        json!("File not found")
    );
    let r = s.get("/metrics", None).await;
    assert_eq!(r.code(), 200);
    assert!(r
        .text()
        .starts_with("http_requests_total{instance=\"api\"} "));
    s.stop().await;
}

every_backend!(redirects_use_the_public_base_url_when_it_is_set);
async fn redirects_use_the_public_base_url_when_it_is_set() {
    let s = TestServer::start_with(HttpConfig {
        public_base_url: Some("https://api.example.org/".into()),
        ..HttpConfig::for_tests(common::SECRET)
    })
    .await;
    let r = s
        .request(
            Method::GET,
            "/latest/count/?kind=x",
            &[("host", "evil.example.org")],
            "",
        )
        .await;
    assert_eq!(r.code(), 307);
    assert_eq!(
        r.header("location").unwrap(),
        "https://api.example.org/latest/count?kind=x"
    );
    s.stop().await;
}

every_backend!(oversized_bodies_get_413);
async fn oversized_bodies_get_413() {
    let s = TestServer::start_with(HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::for_tests(common::SECRET)
    })
    .await;
    let big = json!({"name": "x".repeat(4096)});
    let r = s.post("/latest/node", None, &big).await;
    assert_eq!(r.code(), 413);
    assert!(r.detail().as_str().unwrap().contains("1024"));
    s.stop().await;
}

every_backend!(connections_beyond_the_limit_are_refused_until_a_place_is_free);
async fn connections_beyond_the_limit_are_refused_until_a_place_is_free() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(HttpConfig {
        max_connections: 1,
        ..HttpConfig::for_tests(common::SECRET)
    })
    .await;
    // One idle connection takes the only place (give the server time to accept it).
    let idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The next client is answered at once: 503, not left in the backlog.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /latest/count HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        c.read_to_string(&mut answer),
    )
    .await
    .expect("left waiting")
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Served as soon as the place is free.
    drop(idle);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(s.get("/count", None).await.code(), 200);
    s.stop().await;
}

every_backend!(subscriptions_per_user_are_bounded);
async fn subscriptions_per_user_are_bounded() {
    let s = TestServer::start_with(HttpConfig {
        max_subscriptions_per_user: 2,
        ..HttpConfig::for_tests(common::SECRET)
    })
    .await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let first = s.post("/subscribe/node", Some(&alice), &json!(null)).await;
    assert_eq!(first.code(), 200);
    assert_eq!(
        s.post("/subscribe/node", Some(&alice), &json!(null))
            .await
            .code(),
        200
    );
    let r = s.post("/subscribe/node", Some(&alice), &json!(null)).await;
    assert_eq!(r.code(), 429);
    assert!(r.detail().as_str().unwrap().contains("at most 2"));
    // Other users are not affected; unsubscribing frees a place.
    assert_eq!(
        s.post("/subscribe/node", Some(&bob), &json!(null))
            .await
            .code(),
        200
    );
    let id = first.json()["id"].as_u64().unwrap();
    let r = s
        .post(&format!("/unsubscribe/{id}"), Some(&alice), &json!(null))
        .await;
    assert_eq!(r.code(), 200);
    assert_eq!(
        s.post("/subscribe/node", Some(&alice), &json!(null))
            .await
            .code(),
        200
    );
    s.stop().await;
}
