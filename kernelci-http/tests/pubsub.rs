//! Pub/sub, queues and subscription statistics over real HTTP (API.md §9,
//! CLIENT.md §4 and checklist items 9–13, 18).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::time::Duration;

use common::{every_backend, TestServer, SECRET};
use hyper::Method;
use kernelci_core::time::Timestamp;
use kernelci_http::HttpConfig;
use serde_json::{json, Value};

/// How many keep-alives a test listens through before giving up on a message.
const MAX_BEEPS: usize = 30;

/// One listen: the wrapper checked, the envelope parsed from its `data` string.
async fn listen_once(s: &TestServer, id: u64, token: &str) -> Value {
    let r = s.get(&format!("/latest/listen/{id}"), Some(token)).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["type"], "message");
    assert_eq!(body["pattern"], Value::Null);
    assert!(body["channel"].is_string());
    let text = body["data"].as_str().expect("data is a string");
    serde_json::from_str(text).expect("data holds JSON")
}

fn is_beep(envelope: &Value) -> bool {
    envelope["data"] == "BEEP"
}

/// The next message that is not a keep-alive.
async fn next_message(s: &TestServer, id: u64, token: &str) -> Value {
    for _ in 0..MAX_BEEPS {
        let e = listen_once(s, id, token).await;
        if !is_beep(&e) {
            return e;
        }
    }
    panic!("no message on subscription {id} after {MAX_BEEPS} keep-alives");
}

async fn subscribe(s: &TestServer, channel: &str, query: &str, token: &str) -> u64 {
    let r = s
        .send_json(
            Method::POST,
            &format!("/latest/subscribe/{channel}{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    r.json()["id"].as_u64().unwrap()
}

async fn publish(s: &TestServer, channel: &str, token: &str, body: Value) {
    let r = s
        .post(&format!("/latest/publish/{channel}"), Some(token), &body)
        .await;
    assert_eq!((r.code(), r.json()), (200, Value::Null), "{}", r.text());
}

every_backend!(subscribe_listen_unsubscribe);
async fn subscribe_listen_unsubscribe() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let r = s
        .send_json(Method::POST, "/latest/subscribe/node", Some(&bob), None)
        .await;
    assert_eq!(r.code(), 200);
    // Keys in the reference's order.
    let id = r.json()["id"].as_u64().unwrap();
    assert_eq!(
        r.text(),
        format!(r#"{{"id":{id},"channel":"node","user":"bob","promiscuous":false}}"#)
    );
    let r = s
        .send_json(
            Method::POST,
            "/subscribe/node?promisc=True",
            Some(&bob),
            None,
        )
        .await;
    let promisc = r.json();
    assert_eq!(promisc["promiscuous"], true);
    assert!(promisc["id"].as_u64().unwrap() > id, "ids increase");

    publish(&s, "node", &bob, json!({"data": {"hello": "world"}})).await;
    let r = s.get(&format!("/listen/{id}"), Some(&bob)).await;
    assert_eq!(r.code(), 200);
    let body = r.json();
    assert_eq!(body["channel"], "node");
    let e: Value = serde_json::from_str(body["data"].as_str().unwrap()).unwrap();
    assert_eq!(e["data"], json!({"hello": "world"}));
    assert_eq!(e["owner"], "bob");

    let r = s
        .send_json(
            Method::POST,
            &format!("/unsubscribe/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((r.code(), r.json()), (200, Value::Null));
    let missing = json!(format!(
        "Subscription id not found: 'Subscription {id} not found'"
    ));
    let r = s.get(&format!("/listen/{id}"), Some(&bob)).await;
    assert_eq!((r.code(), r.detail()), (404, missing.clone()));
    let r = s
        .send_json(
            Method::POST,
            &format!("/unsubscribe/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!((r.code(), r.detail()), (404, missing));
    s.stop().await;
}

every_backend!(subscription_errors);
async fn subscription_errors() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let unauthorized = (401, json!("Unauthorized"));
    for (method, path) in [
        (Method::POST, "/subscribe/node"),
        (Method::POST, "/unsubscribe/1"),
        (Method::GET, "/listen/1"),
        (Method::GET, "/listen/abc"), // authentication comes first
        (Method::POST, "/publish/node"),
        (Method::POST, "/push/q"),
        (Method::GET, "/pop/q"),
    ] {
        let r = s.send_json(method.clone(), path, None, None).await;
        assert_eq!((r.code(), r.detail()), unauthorized, "{method} {path}");
        let r = s
            .send_json(method.clone(), path, Some("garbage"), None)
            .await;
        assert_eq!(r.code(), 401, "{method} {path}");
    }
    for (method, path) in [
        (Method::GET, "/listen/abc"),
        (Method::POST, "/unsubscribe/1.5"),
    ] {
        let r = s.send_json(method, path, Some(&bob), None).await;
        assert_eq!(r.code(), 422);
        let d = &r.detail()[0];
        assert_eq!(d["type"], "int_parsing");
        assert_eq!(d["loc"], json!(["path", "sub_id"]));
        assert_eq!(
            d["msg"],
            "Input should be a valid integer, unable to parse string as an integer"
        );
    }
    for (raw, shown) in [
        ("999999", "999999"),
        (
            "123456789012345678901234567890",
            "123456789012345678901234567890",
        ),
        ("-3", "-3"),
    ] {
        let r = s.get(&format!("/listen/{raw}"), Some(&bob)).await;
        assert_eq!(r.code(), 404, "{raw}");
        assert_eq!(
            r.detail(),
            json!(format!(
                "Subscription id not found: 'Subscription {shown} not found'"
            ))
        );
    }
    let r = s
        .send_json(
            Method::POST,
            "/subscribe/node?promisc=maybe",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "bool_parsing");
    assert_eq!(r.detail()[0]["loc"], json!(["query", "promisc"]));

    // Another user's subscription: 403 (the reference answers 500).
    let id = subscribe(&s, "node", "", &bob).await;
    let not_owned = json!(format!("Subscription {id} not owned by alice"));
    let r = s.get(&format!("/listen/{id}"), Some(&alice)).await;
    assert_eq!((r.code(), r.detail()), (403, not_owned.clone()));
    let r = s
        .send_json(
            Method::POST,
            &format!("/unsubscribe/{id}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!((r.code(), r.detail()), (403, not_owned));
    // Still bob's and still there.
    assert!(listen_once(&s, id, &bob).await.is_object());
    s.stop().await;
}

every_backend!(two_listeners_on_one_channel_both_receive_a_publish);
async fn two_listeners_on_one_channel_both_receive_a_publish() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let a = subscribe(&s, "chat", "", &alice).await;
    let b = subscribe(&s, "chat", "", &bob).await;
    let (ea, eb, ()) = tokio::join!(
        next_message(&s, a, &alice),
        next_message(&s, b, &bob),
        async {
            // Published while both listens are (most likely) blocked; buffered if not.
            tokio::time::sleep(Duration::from_millis(100)).await;
            // No owner: ownerless messages reach every subscription.
            let event = s
                .state
                .store()
                .append_event(kernelci_core::events::NewEvent {
                    id: kernelci_core::id::ObjectId::new(),
                    timestamp: Timestamp::now(),
                    channel: "chat".into(),
                    owner: None,
                    data: json!({"n": 1}),
                })
                .await
                .unwrap();
            s.state.broker().broadcast(&event, Default::default());
        }
    );
    assert_eq!(ea["data"], json!({"n": 1}));
    assert_eq!(eb["data"], json!({"n": 1}));
    assert_eq!(ea["_sequence_id"], eb["_sequence_id"]);
    assert!(ea.get("owner").is_none());

    // The same through /publish (owner = publisher, seen by the publisher's own
    // subscription), with both listens blocked first.
    let b2 = subscribe(&s, "chat", "?promisc=true", &bob).await;
    let (ea, eb, ()) = tokio::join!(
        next_message(&s, a, &alice),
        next_message(&s, b2, &bob),
        async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            publish(&s, "chat", &alice, json!({"data": "hi"})).await;
        }
    );
    assert_eq!(
        (ea["data"].clone(), eb["data"].clone()),
        (json!("hi"), json!("hi"))
    );
    s.stop().await;
}

every_backend!(owner_filtering_of_plain_and_promiscuous_subscriptions);
async fn owner_filtering_of_plain_and_promiscuous_subscriptions() {
    let s = TestServer::start().await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let alice_plain = subscribe(&s, "node", "", &alice).await;
    let bob_promisc = subscribe(&s, "node", "?promisc=True", &bob).await;
    let bob_plain = subscribe(&s, "node", "?promisc=false", &bob).await;

    // /publish sets owner = the publisher.
    publish(&s, "node", &alice, json!({"data": "from alice"})).await;
    publish(&s, "node", &bob, json!({"data": "from bob"})).await;

    let e = next_message(&s, alice_plain, &alice).await;
    assert_eq!(
        (e["data"].clone(), e["owner"].clone()),
        (json!("from alice"), json!("alice"))
    );
    // Bob's message is not alice's: the next one she gets is a keep-alive.
    assert!(is_beep(&listen_once(&s, alice_plain, &alice).await));

    let e = next_message(&s, bob_promisc, &bob).await;
    assert_eq!(e["data"], "from alice");
    let e = next_message(&s, bob_promisc, &bob).await;
    assert_eq!(e["data"], "from bob");

    // The plain subscription skips alice's message.
    let e = next_message(&s, bob_plain, &bob).await;
    assert_eq!(
        (e["data"].clone(), e["owner"].clone()),
        (json!("from bob"), json!("bob"))
    );
    s.stop().await;
}

every_backend!(an_idle_listen_returns_a_keep_alive);
async fn an_idle_listen_returns_a_keep_alive() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let id = subscribe(&s, "quiet", "", &bob).await;
    let r = s.get(&format!("/listen/{id}"), Some(&bob)).await;
    assert_eq!(r.code(), 200);
    assert_eq!(r.json()["channel"], "quiet");
    let text = r.json()["data"].as_str().unwrap().to_owned();
    let e: Value = serde_json::from_str(&text).unwrap();
    assert!(is_beep(&e));
    assert!(e.get("owner").is_none() && e.get("_sequence_id").is_none());
    assert_eq!(e["type"], "api.kernelci.org");
    assert_eq!(e["source"], "https://api.kernelci.org/");
    assert!(
        text.starts_with(r#"{"specversion": "1.0", "id": ""#),
        "{text}"
    );

    // A stopping server answers blocked listens at once, and waiting pops with 503.
    s.state.begin_shutdown();
    assert!(is_beep(&listen_once(&s, id, &bob).await));
    let r = s.get("/pop/nothing", Some(&bob)).await;
    assert_eq!(
        (r.code(), r.detail()),
        (503, json!("Server is shutting down"))
    );
    s.stop().await;
}

every_backend!(envelope_text_and_publish_rules);
async fn envelope_text_and_publish_rules() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let id = subscribe(&s, "ch", "", &bob).await;
    publish(
        &s,
        "ch",
        &bob,
        json!({"data": {"name": "café 🦀"}, "type": "my.type",
               "attributes": {"foo": "bar", "owner": "mallory", "type": "ignored"}}),
    )
    .await;
    let r = s.get(&format!("/listen/{id}"), Some(&bob)).await;
    let text = r.json()["data"].as_str().unwrap().to_owned();
    // Python json.dumps: ", " / ": " separators, ASCII escapes, key order.
    assert!(
        text.contains(r#""data": {"name": "caf\u00e9 \ud83e\udd80"}"#),
        "{text}"
    );
    let order = [
        "\"specversion\"",
        "\"id\"",
        "\"source\"",
        "\"type\"",
        "\"time\"",
        "\"data\"",
        "\"owner\"",
        "\"foo\"",
        "\"_sequence_id\"",
    ];
    let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let e: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["type"], "my.type");
    assert_eq!(e["source"], "https://api.kernelci.org/");
    assert_eq!(e["owner"], "bob", "owner cannot be overridden");
    assert_eq!(e["foo"], "bar");
    let time = e["time"].as_str().unwrap();
    assert!(time.ends_with("+00:00") && time.len() == 32, "{time}");
    assert_eq!(e["id"].as_str().unwrap().len(), 36);
    // The event is in the log with the same sequence id.
    let events = s.store.events_after(0, Some("ch"), 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(e["_sequence_id"], json!(events[0].sequence_id));
    assert_eq!(events[0].owner.as_deref(), Some("bob"));
    assert_eq!(events[0].data, json!({"name": "café 🦀"}));

    // `data` absent: a null payload; empty `type`/`source`: the defaults.
    publish(&s, "ch", &bob, json!({"type": "", "source": ""})).await;
    let e = next_message(&s, id, &bob).await;
    assert_eq!(e["data"], Value::Null);
    assert_eq!(e["type"], "api.kernelci.org");
    assert_eq!(e["source"], "https://api.kernelci.org/");

    // Falsy data: 422.
    for data in [
        json!(null),
        json!({}),
        json!([]),
        json!(""),
        json!(0),
        json!(false),
    ] {
        let r = s
            .post("/publish/ch", Some(&bob), &json!({"data": data}))
            .await;
        assert_eq!(r.code(), 422, "{data}");
        let d = &r.detail()[0];
        assert_eq!(
            d["msg"],
            "Value error, None is not allowed as event payload"
        );
        assert_eq!(d["loc"], json!(["body", "data"]));
    }
    let r = s
        .post(
            "/publish/ch",
            Some(&bob),
            &json!({"data": 1, "type": 5, "attributes": []}),
        )
        .await;
    assert_eq!(r.code(), 422);
    let kinds: Vec<Value> = r
        .detail()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["type"].clone())
        .collect();
    assert_eq!(kinds, [json!("string_type"), json!("dict_type")]);
    let r = s.post("/publish/ch", Some(&bob), &json!([1])).await;
    assert_eq!(r.detail()[0]["type"], "model_attributes_type");
    let r = s
        .send_json(Method::POST, "/publish/ch", Some(&bob), None)
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("missing"))
    );
    // Malformed JSON: 422 before authentication.
    let r = s
        .request(
            Method::POST,
            "/publish/ch",
            &[("content-type", "application/json")],
            "{oops",
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("json_invalid"))
    );
    // Nothing of that was published.
    assert_eq!(
        s.store.events_after(0, Some("ch"), 10).await.unwrap().len(),
        2
    );
    s.stop().await;
}

every_backend!(durable_subscribers_resume_after_a_restart);
async fn durable_subscribers_resume_after_a_restart() {
    let config = HttpConfig::for_tests(SECRET);
    let s = TestServer::start_with(config.clone()).await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    // Published before the first subscription: not replayed.
    publish(&s, "retry", &alice, json!({"data": "e0"})).await;
    let query = "?subscriber_id=svc:retry";
    let first = subscribe(&s, "retry", query, &alice).await;
    let state = s.store.get_subscriber("svc:retry").await.unwrap().unwrap();
    assert_eq!(
        (state.user.as_str(), state.channel.as_str()),
        ("alice", "retry")
    );
    assert_eq!(
        state.last_event_id,
        s.store.last_event_sequence().await.unwrap()
    );

    publish(&s, "retry", &alice, json!({"data": "e1"})).await;
    publish(&s, "retry", &bob, json!({"data": "not alice's"})).await;
    publish(
        &s,
        "retry",
        &alice,
        json!({"data": "e2", "attributes": {"kept": true}}),
    )
    .await;
    publish(&s, "retry", &alice, json!({"data": "e3"})).await;
    let e1 = next_message(&s, first, &alice).await;
    assert_eq!(e1["data"], "e1");
    let e2 = next_message(&s, first, &alice).await;
    assert_eq!(e2["data"], "e2", "bob's event is skipped");
    assert_eq!(e2["kept"], true, "the broadcast envelope is reused");
    // The second listen acknowledged the first delivery, not the second.
    let seq1 = e1["_sequence_id"].as_u64().unwrap();
    assert_eq!(
        s.store
            .get_subscriber("svc:retry")
            .await
            .unwrap()
            .unwrap()
            .last_event_id,
        seq1
    );
    // Another user cannot use the subscriber id.
    let r = s
        .send_json(
            Method::POST,
            &format!("/subscribe/retry{query}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            409,
            json!("Subscriber id svc:retry belongs to another user")
        )
    );

    let data = s.stop().await;
    let s = TestServer::start_at(data, config).await;
    if common::Backend::current() == common::Backend::Postgres {
        // Registered in the shared database: the subscription outlives the server
        // (any server of the cluster answers it). Dropped here to go on as on sled.
        let sub = s.store.get_subscription(first).await.unwrap().unwrap();
        assert_eq!(sub.subscriber_id.as_deref(), Some("svc:retry"));
        let r = s
            .send_json(
                Method::POST,
                &format!("/unsubscribe/{first}"),
                Some(&alice),
                None,
            )
            .await;
        assert_eq!(r.code(), 200);
    }
    // Subscription ids of the process do not survive; the counter does.
    let r = s.get(&format!("/listen/{first}"), Some(&alice)).await;
    assert_eq!(r.code(), 404);
    let again = subscribe(&s, "retry", query, &alice).await;
    assert!(again > first);
    // At least once: the unacknowledged e2, then e3, each with its sequence id.
    let e = next_message(&s, again, &alice).await;
    assert_eq!(
        (e["data"].clone(), e["_sequence_id"].clone()),
        (json!("e2"), e2["_sequence_id"].clone())
    );
    let e = next_message(&s, again, &alice).await;
    assert_eq!(e["data"], "e3");
    assert!(e["_sequence_id"].as_u64().unwrap() > seq1);
    assert_eq!(e["owner"], "alice");
    // Nothing more: a keep-alive, which acknowledges e3.
    assert!(is_beep(&listen_once(&s, again, &alice).await));
    assert_eq!(
        s.store
            .get_subscriber("svc:retry")
            .await
            .unwrap()
            .unwrap()
            .last_event_id,
        e["_sequence_id"].as_u64().unwrap()
    );
    // Re-subscribing again (as pipeline services do after errors) works and
    // replays nothing acknowledged.
    let third = subscribe(&s, "retry", query, &alice).await;
    publish(&s, "retry", &alice, json!({"data": "e4"})).await;
    assert_eq!(next_message(&s, third, &alice).await["data"], "e4");
    s.stop().await;
}

every_backend!(push_and_pop_are_fifo_per_list);
async fn push_and_pop_are_fifo_per_list() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    for (list, data) in [
        ("one", json!("a")),
        ("two", json!("c")),
        ("one", json!("b")),
    ] {
        let r = s
            .post(&format!("/push/{list}"), Some(&bob), &json!({"data": data}))
            .await;
        assert_eq!((r.code(), r.json()), (200, Value::Null));
    }
    let pop = |list: &'static str| {
        let s = &s;
        let bob = bob.clone();
        async move {
            let r = s.get(&format!("/latest/pop/{list}"), Some(&bob)).await;
            assert_eq!(r.code(), 200, "{}", r.text());
            r
        }
    };
    let r = pop("one").await;
    let e = r.json();
    assert_eq!(e["data"], "a");
    // Only `data`: the default type and source.
    assert_eq!(e["type"], "api.kernelci.org");
    assert_eq!(e["source"], "https://api.kernelci.org/");
    assert!(e["time"].as_str().unwrap().ends_with("+00:00"));
    assert!(
        r.text().starts_with(r#"{"specversion":"1.0","id":""#),
        "{}",
        r.text()
    );
    assert_eq!(pop("two").await.json()["data"], "c");
    assert_eq!(pop("one").await.json()["data"], "b");

    // Other keys become attributes, in their order; type and source are then null.
    let r = s
        .request(
            Method::POST,
            "/push/attrs",
            &[
                ("authorization", &format!("Bearer {bob}")),
                ("content-type", "application/json"),
            ],
            r#"{"zz": 1, "data": {"k": "é"}, "foo": "bar"}"#,
        )
        .await;
    assert_eq!(r.code(), 200);
    let r = pop("attrs").await;
    let text = r.text();
    assert!(text.contains(r#""source":null,"type":null,"#), "{text}");
    assert!(
        text.ends_with(r#""data":{"k":"é"},"zz":1,"foo":"bar"}"#),
        "{text}"
    );

    // A pop waits for a push.
    let (r, ()) = tokio::join!(pop("later"), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = s
            .post("/push/later", Some(&bob), &json!({"data": {"n": 1}}))
            .await;
        assert_eq!(r.code(), 200);
    });
    assert_eq!(r.json()["data"], json!({"n": 1}));

    // Errors.
    let r = s.post("/push/one", Some(&bob), &json!({"nodata": 1})).await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "missing");
    assert_eq!(r.detail()[0]["loc"], json!(["body", "data"]));
    let r = s.post("/push/one", Some(&bob), &json!([1])).await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("dict_type"))
    );
    let r = s
        .send_json(Method::POST, "/push/one", Some(&bob), None)
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["loc"].clone()),
        (422, json!(["body"]))
    );
    let r = s
        .request(
            Method::POST,
            "/push/one",
            &[("content-type", "application/json")],
            "nope",
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()[0]["type"].clone()),
        (422, json!("json_invalid"))
    );
    s.stop().await;
}

every_backend!(queued_items_survive_a_restart);
async fn queued_items_survive_a_restart() {
    let config = HttpConfig::for_tests(SECRET);
    let s = TestServer::start_with(config.clone()).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    for n in 1..=3 {
        let r = s.post("/push/jobs", Some(&bob), &json!({"data": n})).await;
        assert_eq!(r.code(), 200);
    }
    assert_eq!(s.get("/pop/jobs", Some(&bob)).await.json()["data"], 1);
    let data = s.stop().await;
    let s = TestServer::start_at(data, config).await;
    assert_eq!(s.get("/pop/jobs", Some(&bob)).await.json()["data"], 2);
    assert_eq!(s.get("/pop/jobs", Some(&bob)).await.json()["data"], 3);
    assert_eq!(s.store.queue_pop("jobs").await.unwrap(), None);
    s.stop().await;
}

every_backend!(subscription_stats_and_idle_clean_up);
async fn subscription_stats_and_idle_clean_up() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    assert_eq!(s.get("/stats/subscriptions", None).await.code(), 401);
    let r = s.get("/stats/subscriptions", Some(&bob)).await;
    assert_eq!((r.code(), r.detail()), (403, json!("Forbidden")));
    let r = s.get("/stats/subscriptions", Some(&admin)).await;
    assert_eq!((r.code(), r.json()), (200, json!([])));

    let polled = subscribe(&s, "node", "?promisc=true", &bob).await;
    let never = subscribe(&s, "node", "", &bob).await;
    listen_once(&s, polled, &bob).await;
    let r = s.get("/latest/stats/subscriptions", Some(&admin)).await;
    let stats = r.json();
    assert_eq!(stats.as_array().unwrap().len(), 2);
    let first = &stats[0];
    assert_eq!(first["id"], polled);
    assert_eq!(first["channel"], "node");
    assert_eq!(first["user"], "bob");
    assert_eq!(first["promiscuous"], false, "always reported false");
    for t in [
        first["created"].as_str().unwrap(),
        first["last_poll"].as_str().unwrap(),
    ] {
        assert!(
            t.len() >= 19 && !t.contains('+') && !t.ends_with('Z'),
            "{t}"
        );
    }
    assert_eq!(stats[1]["id"], never);
    assert_eq!(stats[1]["last_poll"], Value::Null);
    assert!(r.text().starts_with(&format!(
        r#"[{{"id":{polled},"channel":"node","user":"bob","promiscuous":false,"created":""#
    )));

    // Idle clean-up drops polled subscriptions idle too long, never the unpolled.
    let later = Timestamp::now().plus_seconds(3600);
    assert_eq!(
        s.state
            .broker()
            .drop_idle(Duration::from_secs(60), later)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.get(&format!("/listen/{polled}"), Some(&bob)).await.code(),
        404
    );
    let stats = s.get("/stats/subscriptions", Some(&admin)).await.json();
    assert_eq!(stats.as_array().unwrap().len(), 1);
    assert_eq!(stats[0]["id"], never);
    s.stop().await;
}
