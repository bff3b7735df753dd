//! The last gaps against the reference found by running its own tests and clients
//! (issue 11), each over real HTTP: content types of JSON bodies, `recursive` events
//! and their limit, ...
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{every_backend, TestServer};
use hyper::Method;
use serde_json::{json, Value};
use std::time::Duration;

use kernelci_http::config::PasswordCost;
use kernelci_http::HttpConfig;

/// Content types FastAPI does not read as JSON.
const NOT_JSON: &[&str] = &[
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/octet-stream",
    "text/json",
];

every_backend!(json_bodies_need_a_json_content_type);
async fn json_bodies_need_a_json_content_type() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let checkout = json!({"kind": "checkout", "name": "c", "path": ["c"], "data": {}});
    let id = s.post("/latest/node", Some(&admin), &checkout).await.json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stored = s.get(&format!("/latest/node/{id}"), None).await.json();
    let writes: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/latest/node".into(), checkout.clone()),
        (Method::PUT, format!("/latest/node/{id}"), stored.clone()),
        (
            Method::PATCH,
            format!("/latest/node/{id}"),
            json!({"state": "done"}),
        ),
        (
            Method::PUT,
            format!("/latest/nodes/{id}"),
            json!({"node": stored, "child_nodes": []}),
        ),
        (
            Method::POST,
            "/latest/user-groups".into(),
            json!({"name": "g1"}),
        ),
        (
            Method::PATCH,
            "/latest/user/me".into(),
            json!({"email": "new@example.org"}),
        ),
        (
            Method::POST,
            "/latest/telemetry".into(),
            json!([{"kind": "job_result", "runtime": "lava-a"}]),
        ),
        (
            Method::POST,
            "/latest/publish/node".into(),
            json!({"data": {"a": 1}}),
        ),
        (
            Method::PUT,
            "/latest/batch/nodeset".into(),
            json!({"nodes": [id], "field": "processed_by_kcidb_bridge", "value": "True"}),
        ),
    ];
    let auth = format!("Bearer {admin}");
    let before = s.get("/latest/count", None).await.json();
    for (method, path, body) in &writes {
        let text = body.to_string();
        for ct in NOT_JSON {
            let headers = [("authorization", auth.as_str()), ("content-type", *ct)];
            let r = s
                .request(method.clone(), path, &headers, text.clone())
                .await;
            assert_eq!(r.code(), 422, "{method} {path} as {ct}: {}", r.text());
            // pydantic's answer for a body that is not JSON: the text as `input`.
            let first = &r.detail()[0];
            assert_eq!(
                first["loc"],
                json!(["body"]),
                "{method} {path}: {}",
                r.text()
            );
            assert_eq!(first["input"], json!(text), "{method} {path}: {}", r.text());
        }
        // The same body as JSON is taken (and so is one without a content type,
        // as FastAPI reads it).
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json; charset=utf-8"),
        ];
        let r = s
            .request(method.clone(), path, &headers, text.clone())
            .await;
        assert!(
            r.code() < 300,
            "{method} {path} as JSON: {} {}",
            r.code(),
            r.text()
        );
    }
    // Nothing was written by the refused requests: one node more (the POST as JSON).
    assert_eq!(
        s.get("/latest/count", None).await.json(),
        json!(before.as_u64().unwrap() + 1)
    );
    let r = s
        .request(
            Method::POST,
            "/latest/node",
            &[("authorization", auth.as_str())],
            checkout.to_string(),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    s.stop().await;
}

every_backend!(recursive_events_need_a_limit_of_at_most_1000);
async fn recursive_events_need_a_limit_of_at_most_1000() {
    let s = TestServer::start().await;
    for q in [
        "recursive=true",
        "recursive=1&limit=",
        "recursive=1&limit=0",
        "recursive=1&limit=1001",
    ] {
        let r = s.get(&format!("/latest/events?{q}"), None).await;
        assert_eq!(r.code(), 400, "{q}: {}", r.text());
        assert_eq!(
            r.detail(),
            json!("Recursive limit is too large, max is 1000")
        );
    }
    for q in [
        "recursive=1&limit=1000",
        "recursive=false&limit=3",
        "limit=",
    ] {
        let r = s.get(&format!("/latest/events?{q}"), None).await;
        assert_eq!(r.code(), 200, "{q}: {}", r.text());
    }
    s.stop().await;
}

every_backend!(the_last_active_superuser_stays);
async fn the_last_active_superuser_stays() {
    let s = TestServer::start().await;
    let (root, token) = s.user("root", true, true, &[]).await;
    let (bob, _) = s.user("bob", false, true, &[]).await;
    let me = format!("/latest/user/{}", root.id);
    let refused = [
        (
            Method::DELETE,
            None,
            "Cannot delete the last active superuser",
        ),
        (
            Method::PATCH,
            Some(json!({"is_active": false})),
            "Cannot deactivate the last active superuser",
        ),
        (
            Method::PATCH,
            Some(json!({"is_superuser": false})),
            "Cannot demote the last active superuser",
        ),
    ];
    for (method, body, detail) in &refused {
        let r = s
            .send_json(method.clone(), &me, Some(&token), body.as_ref())
            .await;
        assert_eq!(
            (r.code(), r.detail()),
            (409, json!(detail)),
            "{method} {body:?}"
        );
    }
    let r = s.get(&me, Some(&token)).await.json();
    assert_eq!(
        (r["is_active"].clone(), r["is_superuser"].clone()),
        (json!(true), json!(true))
    );
    // Other users come and go; with a second administrator, the first may go.
    let r = s
        .delete(&format!("/latest/user/{}", bob.id), Some(&token))
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let (second, second_token) = s.user("second", true, true, &[]).await;
    let r = s
        .patch(&me, Some(&second_token), &json!({"is_superuser": false}))
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    // Now the second is the last one.
    let r = s
        .delete(&format!("/latest/user/{}", second.id), Some(&second_token))
        .await;
    assert_eq!(r.code(), 409, "{}", r.text());
    s.stop().await;
}

every_backend!(nodes_larger_than_the_maximum_get_413);
async fn nodes_larger_than_the_maximum_get_413() {
    let s = TestServer::start_with(kernelci_http::HttpConfig {
        max_node_bytes: 10_000,
        ..kernelci_http::HttpConfig::for_tests(common::SECRET)
    })
    .await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let big = "x".repeat(12_000);
    let node = |name: &str, blob: &str| json!({"kind": "checkout", "name": name, "path": [name], "data": {"blob": blob}});
    let too_large = |r: &common::TestResponse| {
        assert_eq!(r.code(), 413, "{}", r.text());
        let d = r.detail();
        let d = d.as_str().unwrap();
        assert!(
            d.starts_with("Node too large: ") && d.ends_with("at most 10000"),
            "{d}"
        );
    };
    too_large(
        &s.post("/latest/node", Some(&token), &node("big", &big))
            .await,
    );
    // Just under the limit is fine.
    let r = s
        .post(
            "/latest/node",
            Some(&token),
            &node("ok", &"x".repeat(9_000)),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let stored = r.json();
    let id = stored["id"].as_str().unwrap().to_owned();
    // Growing it past the limit: PUT, PATCH, or as the root of a hierarchy; a
    // hierarchy with one large child writes nothing at all.
    let mut grown = stored.clone();
    grown["data"]["blob"] = json!(big);
    too_large(
        &s.put(&format!("/latest/node/{id}"), Some(&token), &grown)
            .await,
    );
    too_large(
        &s.patch(
            &format!("/latest/node/{id}"),
            Some(&token),
            &json!({"data": {"blob": big}}),
        )
        .await,
    );
    let tree = json!({"node": stored, "child_nodes": [
        {"node": {"kind": "kbuild", "name": "small", "path": ["ok", "small"]}, "child_nodes": []},
        {"node": {"kind": "kbuild", "name": "large", "path": ["ok", "large"], "data": {"error_msg": big}},
         "child_nodes": []},
    ]});
    too_large(
        &s.put(&format!("/latest/nodes/{id}"), Some(&token), &tree)
            .await,
    );
    assert_eq!(s.get("/latest/count", None).await.json(), json!(1));
    assert_eq!(
        s.get(&format!("/latest/node/{id}"), None).await.json(),
        stored
    );
    s.stop().await;
}

/// An access token for `sub` with `iat`, signed with the test secret.
fn token_with_iat(sub: &str, iat: Value) -> String {
    let claims = json!({"sub": sub, "aud": ["fastapi-users:auth"], "iat": iat});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(common::SECRET.as_bytes()),
    )
    .unwrap()
}

every_backend!(an_access_token_issued_in_the_future_or_with_a_text_iat_is_refused);
async fn an_access_token_issued_in_the_future_or_with_a_text_iat_is_refused() {
    let s = TestServer::start().await;
    let (user, _) = s.user("alice", false, true, &[]).await;
    let sub = user.id.to_string();
    let now = kernelci_core::time::Timestamp::now()
        .to_chrono()
        .timestamp();
    for iat in [
        json!(now + 3600),
        json!("yesterday"),
        json!(null),
        json!({"t": 1}),
    ] {
        let r = s
            .get("/latest/whoami", Some(&token_with_iat(&sub, iat.clone())))
            .await;
        assert_eq!(r.code(), 401, "iat {iat}: {}", r.text());
    }
    for iat in [
        json!(now - 10),
        json!(now),
        json!((now - 5).to_string()),
        json!(1.5),
    ] {
        let r = s
            .get("/latest/whoami", Some(&token_with_iat(&sub, iat.clone())))
            .await;
        assert_eq!(r.code(), 200, "iat {iat}: {}", r.text());
    }
    s.stop().await;
}

every_backend!(names_keys_and_channels_have_length_limits);
async fn names_keys_and_channels_have_length_limits() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let long = |n: usize| "x".repeat(n);
    let too_long = |r: &common::TestResponse, loc: Value, max: usize| {
        assert_eq!(r.code(), 422, "{}", r.text());
        let d = &r.detail()[0];
        assert_eq!(d["type"], "string_too_long", "{d}");
        assert_eq!(d["loc"], loc, "{d}");
        assert_eq!(d["ctx"], json!({"max_length": max}), "{d}");
        assert_eq!(
            d["msg"],
            format!("String should have at most {max} characters")
        );
    };
    let node =
        |name: &str, path: Vec<String>| json!({"kind": "checkout", "name": name, "path": path});
    let r = s
        .post(
            "/latest/node",
            Some(&admin),
            &node(&long(1025), vec!["c".into()]),
        )
        .await;
    too_long(&r, json!(["body", "name"]), 1024);
    let r = s
        .post(
            "/latest/node",
            Some(&admin),
            &node("c", vec!["c".into(), long(1025)]),
        )
        .await;
    too_long(&r, json!(["body", "path", 1]), 1024);
    // At the limit (in characters, not bytes) it is taken.
    let r = s
        .post(
            "/latest/node",
            Some(&admin),
            &node(&"é".repeat(1024), vec!["c".into()]),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let r = s
        .post(
            "/latest/user-groups",
            Some(&admin),
            &json!({"name": long(257)}),
        )
        .await;
    too_long(&r, json!(["body", "name"]), 256);
    let r = s
        .post(
            "/latest/user/invite",
            Some(&admin),
            &json!({"username": long(129), "email": "a@example.org"}),
        )
        .await;
    too_long(&r, json!(["body", "username"]), 128);
    let r = s
        .patch(
            "/latest/user/me",
            Some(&admin),
            &json!({"username": long(129)}),
        )
        .await;
    too_long(&r, json!(["body", "username"]), 128);
    let r = s
        .post(
            &format!("/latest/subscribe/{}", long(1025)),
            Some(&admin),
            &json!(null),
        )
        .await;
    too_long(&r, json!(["path", "channel"]), 1024);
    let r = s
        .get(&format!("/latest/kv/ns/{}", long(1025)), Some(&admin))
        .await;
    too_long(&r, json!(["path", "key"]), 1024);
    // Nothing of those was stored.
    assert_eq!(s.get("/latest/count", None).await.json(), json!(1));
    s.stop().await;
}

every_backend!(integers_wider_than_64_bits_are_refused_not_rounded);
async fn integers_wider_than_64_bits_are_refused_not_rounded() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body =
        r#"{"kind": "checkout", "name": "c", "path": ["c"], "data": {"n": 18446744073709551616}}"#;
    let r = s
        .request(Method::POST, "/latest/node", &headers, body)
        .await;
    assert_eq!(r.code(), 422, "{}", r.text());
    assert_eq!(r.detail()[0]["input"], json!("18446744073709551616"));
    // The largest 64-bit values are kept exactly.
    let body = r#"{"kind": "checkout", "name": "c", "path": ["c"],
                   "data": {"u": 18446744073709551615, "i": -9223372036854775808}}"#;
    let r = s
        .request(Method::POST, "/latest/node", &headers, body)
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let text = s.get(&format!("/latest/node/{id}"), None).await.text();
    assert!(
        text.contains("18446744073709551615") && text.contains("-9223372036854775808"),
        "{text}"
    );
    s.stop().await;
}

every_backend!(an_invalid_enum_value_names_the_expected_ones_in_ctx);
async fn an_invalid_enum_value_names_the_expected_ones_in_ctx() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let r = s
        .post(
            "/latest/node",
            Some(&token),
            &json!({"kind": "checkout", "name": "c", "path": ["c"], "state": "x"}),
        )
        .await;
    assert_eq!(r.code(), 422, "{}", r.text());
    let d = &r.detail()[0];
    assert_eq!(d["type"], "enum");
    let expected = "'running', 'available', 'closing' or 'done'";
    assert_eq!(d["ctx"], json!({"expected": expected}), "{d}");
    assert_eq!(d["msg"], format!("Input should be {expected}"));
    s.stop().await;
}

/// The keys of the JSON object `text` (an answer body), in the order written.
fn keys_in_order(text: &str) -> Vec<String> {
    let v: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
    v.keys().cloned().collect()
}

every_backend!(json_objects_keep_the_models_field_order);
async fn json_objects_keep_the_models_field_order() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    // kernelci-api's own e2e suite asserts this order (test_create_regular_user).
    let me = s.get("/latest/whoami", Some(&admin)).await;
    assert_eq!(
        keys_in_order(&me.text()),
        [
            "id",
            "email",
            "is_active",
            "is_superuser",
            "is_verified",
            "username",
            "groups"
        ]
    );
    let body = json!({"kind": "checkout", "name": "c", "path": ["c"],
                      "data": {"zeta": 1, "alpha": {"y": 1, "b": 2}}});
    let node = s.post("/latest/node", Some(&admin), &body).await;
    assert_eq!(
        keys_in_order(&node.text()),
        [
            "id",
            "kind",
            "name",
            "path",
            "group",
            "parent",
            "state",
            "result",
            "artifacts",
            "data",
            "debug",
            "jobfilter",
            "platform_filter",
            "created",
            "updated",
            "timeout",
            "holdoff",
            "owner",
            "submitter",
            "treeid",
            "user_groups",
            "processed_by_kcidb_bridge",
            "retry_counter"
        ]
    );
    // A node's data keeps the order it was sent in, as MongoDB keeps it.
    let id = node.json()["id"].as_str().unwrap().to_owned();
    let text = s.get(&format!("/latest/node/{id}"), None).await.text();
    assert!(
        text.contains(r#""data":{"zeta":1,"alpha":{"y":1,"b":2}"#),
        "{text}"
    );
    let page = s.get("/latest/nodes?kind=checkout", None).await;
    assert_eq!(
        keys_in_order(&page.text()),
        ["items", "total", "limit", "offset"]
    );
    let events = s
        .get("/latest/events?limit=1&recursive=1", None)
        .await
        .json();
    let event = serde_json::to_string(&events[0]).unwrap();
    assert_eq!(
        keys_in_order(&event),
        [
            "timestamp",
            "sequence_id",
            "channel",
            "owner",
            "data",
            "id",
            "node"
        ]
    );
    let group = s
        .post("/latest/user-groups", Some(&admin), &json!({"name": "g"}))
        .await;
    assert_eq!(keys_in_order(&group.text()), ["id", "name"]);
    let sub = s
        .post("/latest/subscribe/node", Some(&admin), &json!(null))
        .await;
    assert_eq!(
        keys_in_order(&sub.text()),
        ["id", "channel", "user", "promiscuous"]
    );
    let bad = s
        .post(
            "/latest/node",
            Some(&admin),
            &json!({"name": "c", "path": ["c"], "state": "x"}),
        )
        .await;
    let item = serde_json::to_string(&bad.detail()[0]).unwrap();
    assert_eq!(keys_in_order(&item), ["type", "loc", "msg", "input", "ctx"]);
    s.stop().await;
}

every_backend!(queries_on_sub_documents_do_not_depend_on_key_order);
/// Objects keep the order they were sent in; queries must not depend on it (the
/// index of `data.platform` once encoded objects in that order).
async fn queries_on_sub_documents_do_not_depend_on_key_order() {
    let s = TestServer::start().await;
    let (_, token) = s.user("alice", false, true, &[]).await;
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = r#"{"kind": "checkout", "name": "c", "path": ["c"], "data": {"platform": {"b": 2, "a": 1}}}"#;
    let r = s
        .request(Method::POST, "/latest/node", &headers, body)
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    // Unknown operators make a sub-document equality (QUERY.md §6): {"a": 1, "b": 2}
    // in the order of the query string; equality ignores key order.
    for q in [
        "data.platform__a=1&data.platform__b=2",
        "data.platform__b=2&data.platform__a=1",
        "kind=checkout&data.platform__a=1&data.platform__b=2",
    ] {
        for endpoint in ["count", "nodes/fast"] {
            let r = s.get(&format!("/latest/{endpoint}?{q}"), None).await;
            let n = match endpoint {
                "count" => r.json().as_u64().unwrap(),
                _ => r.json().as_array().unwrap().len() as u64,
            };
            assert_eq!(n, 1, "{endpoint}?{q}: {}", r.text());
        }
    }
    s.stop().await;
}

every_backend!(a_slow_password_change_does_not_undo_a_deactivation);
/// Review finding: `PATCH /user/me` with a password read the user, hashed (slow),
/// then wrote the whole record back, undoing a deactivation an administrator made
/// meanwhile. Writes now go over the record they were applied to (compare-and-swap).
async fn a_slow_password_change_does_not_undo_a_deactivation() {
    let mut config = HttpConfig::for_tests(common::SECRET);
    // About a second per hash on these machines: the administrator's change lands
    // while the user's request is hashing.
    config.password_cost = PasswordCost {
        memory_kib: 262_144,
        iterations: 4,
        parallelism: 1,
    };
    let s = std::sync::Arc::new(TestServer::start_with(config).await);
    let (_, root) = s.user("root", true, true, &[]).await;
    let (bob, bob_token) = s.user("bob", false, true, &[]).await;
    let slow = {
        let s = s.clone();
        tokio::spawn(async move {
            let body = json!({"password": "a-new-secret", "email": "robert@example.org"});
            s.patch("/latest/user/me", Some(&bob_token), &body).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s
        .patch(
            &format!("/latest/user/{}", bob.id),
            Some(&root),
            &json!({"is_active": false, "is_superuser": false}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let r = slow.await.unwrap();
    assert_eq!(r.code(), 200, "{}", r.text());
    let stored = s.store.get_user(bob.id).await.unwrap().unwrap();
    assert!(!stored.is_active, "the deactivation was undone: {stored:?}");
    assert_eq!(
        stored.email, "robert@example.org",
        "the user's own change is kept"
    );
    assert!(!stored.hashed_password.is_empty(), "and the new password");
}

every_backend!(health_and_readiness_are_public_and_cheap);
/// `GET /health` (liveness, as upstream proposes) and `GET /ready` (the store
/// answers), unauthenticated, under every prefix; the outage case is in
/// kernelci-server's PostgreSQL tests.
async fn health_and_readiness_are_public_and_cheap() {
    let s = TestServer::start().await;
    for prefix in ["", "/latest", "/v0"] {
        let r = s.get(&format!("{prefix}/health"), None).await;
        assert_eq!(r.code(), 200, "{}", r.text());
        assert_eq!(r.text(), r#"{"status":"ok","service":"KernelCI API"}"#);
        let r = s.get(&format!("{prefix}/ready"), None).await;
        assert_eq!(r.code(), 200, "{}", r.text());
        assert_eq!(
            r.json(),
            json!({"status": "ready", "service": "KernelCI API", "leader": false})
        );
    }
    s.stop().await;
}
