//! Node endpoints end to end (API.md §6, AUTH.md §5), events (§7), and the
//! time-driven state machine job.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use common::{every_backend, TestServer};
use hyper::Method;
use serde_json::{json, Value};

use kernelci_core::time::Timestamp;
use kernelci_http::jobs;

fn checkout(name: &str) -> Value {
    json!({
        "kind": "checkout",
        "name": name,
        "path": [name],
        "data": {"kernel_revision": {
            "tree": "mainline", "branch": "master", "commit": "abc123",
            "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
            "version": {"version": "6", "patchlevel": 7.0, "sublevel": 1}
        }}
    })
}

fn kbuild(parent: &str, runtime: Option<&str>) -> Value {
    let mut v = json!({
        "kind": "kbuild", "name": "kbuild-gcc-12-x86", "path": ["checkout", "kbuild-gcc-12-x86"],
        "parent": parent, "data": {"arch": "x86_64"}
    });
    if let Some(r) = runtime {
        v["data"]["runtime"] = json!(r);
    }
    v
}

const KEYS: [&str; 23] = [
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
    "retry_counter",
];

every_backend!(create_and_read);
async fn create_and_read() {
    let s = TestServer::start().await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    // Malformed JSON is a 422 even without a token; a token is then required.
    let r = s
        .request(
            Method::POST,
            "/latest/node",
            &[("content-type", "application/json")],
            "{\"a\": x}",
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["type"], "json_invalid");
    assert_eq!(r.detail()[0]["loc"], json!(["body", 6]));
    assert_eq!(
        s.post("/latest/node", None, &checkout("c")).await.code(),
        401
    );
    let bad = s
        .post("/latest/node", Some("not-a-token"), &checkout("c"))
        .await;
    assert_eq!((bad.code(), bad.detail()), (401, json!("Unauthorized")));
    // Base layer: 422 list; kind layer: 400 text.
    let r = s
        .post(
            "/latest/node",
            Some(&alice),
            &json!({"kind": "checkout", "name": 1, "path": []}),
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail()[0]["loc"], json!(["body", "name"]));
    let r = s
        .post(
            "/latest/node",
            Some(&alice),
            &json!({"kind": "node", "name": "n", "path": ["n"]}),
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Unsupported node kind: node"))
    );
    let mut with_id = checkout("c");
    with_id["id"] = json!("65a1355ee98651d0fe81e412");
    let r = s.post("/latest/node", Some(&alice), &with_id).await;
    assert_eq!(r.code(), 400);
    assert_eq!(
        r.detail(),
        json!("Object cannot be created with id: 65a1355ee98651d0fe81e412")
    );
    let r = s
        .post(
            "/latest/node",
            Some(&alice),
            &kbuild("65a1355ee98651d0fe81e412", None),
        )
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            404,
            json!("Parent not found with id: 65a1355ee98651d0fe81e412")
        )
    );
    let mut grouped = checkout("c");
    grouped["user_groups"] = json!(["nope"]);
    let r = s.post("/latest/node", Some(&alice), &grouped).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("User group does not exist with name: nope"))
    );
    let mut bad_version = checkout("c");
    bad_version["data"]["kernel_revision"]["version"]["version"] = json!("x");
    let r = s.post("/latest/node", Some(&alice), &bad_version).await;
    assert_eq!(
        r.detail(),
        json!("invalid literal for int() with base 10: 'x'")
    );

    // Success: owner forced, version coerced, all 23 keys.
    let mut body = checkout("c1");
    body["owner"] = json!("mallory");
    let r = s.post("/latest/node", Some(&alice), &body).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let posted = r.text();
    let node = r.json();
    let keys: Vec<&str> = node
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = KEYS.to_vec();
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(node["owner"], "alice");
    assert_eq!(node["state"], "running");
    assert_eq!(
        node["data"]["kernel_revision"]["version"],
        json!({"version": 6, "patchlevel": 7, "sublevel": 1})
    );
    let id = node["id"].as_str().unwrap().to_owned();

    // GET: the node; a missing one is 200 null; a malformed id 400.
    let r = s.get(&format!("/latest/node/{id}"), None).await;
    assert_eq!(r.json()["id"], json!(id));
    assert_eq!(r.json()["created"], node["created"]);
    // Written straight from the stored document (both backends): the same bytes
    // as the POST's answer (the node serialised), the 23 keys in the reference's order
    // (kernelci-api's own tests compare key order).
    assert_eq!(r.text(), posted);
    let got: Vec<String> = r.json().as_object().unwrap().keys().cloned().collect();
    assert_eq!(got, KEYS);
    let r = s.get("/node/65a1355ee98651d0fe81e412", None).await;
    assert_eq!((r.code(), r.json()), (200, Value::Null));
    let r = s.get("/node/xyz", None).await;
    assert_eq!(r.code(), 400);
    assert_eq!(
        r.detail(),
        json!("'xyz' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string")
    );
    // The created event.
    let events = s.get(&format!("/events?node_id={id}"), None).await.json();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["data"]["op"], "created");
    assert_eq!(events[0]["owner"], "alice");
    assert!(events[0]["data"].get("previous_state").is_none());
    s.stop().await;
}

every_backend!(queries_pages_and_counts);
async fn queries_pages_and_counts() {
    let s = TestServer::start().await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = s
            .post("/node", Some(&alice), &checkout(&format!("c{i}")))
            .await;
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    let page = s
        .get("/latest/nodes?kind=checkout&limit=3&offset=2", None)
        .await
        .json();
    assert_eq!(page["total"], 7);
    assert_eq!(
        (page["limit"].clone(), page["offset"].clone()),
        (json!(3), json!(2))
    );
    let got: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ids[2..5].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // Byte for byte: each item as GET /node writes it, the page's keys in the
    // reference's order; /nodes/fast the same items as a plain array.
    let mut items = Vec::new();
    for id in &ids[2..5] {
        items.push(s.get(&format!("/node/{id}"), None).await.text());
    }
    let items = items.join(",");
    assert_eq!(
        s.get("/latest/nodes?kind=checkout&limit=3&offset=2", None)
            .await
            .text(),
        format!("{{\"items\":[{items}],\"total\":7,\"limit\":3,\"offset\":2}}")
    );
    assert_eq!(
        s.get("/nodes/fast?kind=checkout&limit=3&offset=2", None)
            .await
            .text(),
        format!("[{items}]")
    );
    let page = s.get("/nodes", None).await.json();
    assert_eq!(
        (
            page["limit"].clone(),
            page["items"].as_array().unwrap().len()
        ),
        (json!(50), 7)
    );
    let page = s.get("/nodes?offset=100", None).await.json();
    assert_eq!(
        (page["total"].clone(), page["items"].clone()),
        (json!(7), json!([]))
    );
    for (q, loc) in [
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
        ("limit=abc", "limit"),
    ] {
        let r = s.get(&format!("/nodes?{q}"), None).await;
        assert_eq!(r.code(), 422, "{q}");
        assert_eq!(r.detail()[0]["loc"], json!(["query", loc]));
    }
    // Filters, operators, last value wins.
    let r = s.get("/nodes?name=c3&name=c4", None).await.json();
    assert_eq!(r["items"][0]["name"], "c4");
    // As in the reference, `id=` compares with stored ObjectIds and matches nothing.
    let r = s.get(&format!("/nodes?id={}", ids[4]), None).await.json();
    assert_eq!(r["total"], 0);
    let r = s
        .get("/nodes?created__gt=2000-01-01T00:00:00&kind=checkout", None)
        .await
        .json();
    assert_eq!(r["total"], 7);
    let r = s
        .get(
            "/nodes?data.kernel_revision.tree=mainline&state__ne=done",
            None,
        )
        .await
        .json();
    assert_eq!(r["total"], 7);
    let r = s.get("/nodes?name__re=(", None).await;
    assert_eq!(r.code(), 400);
    // fast: a plain array, limit honoured; count: an integer, limit is a filter.
    let r = s
        .get("/nodes/fast?kind=checkout&limit=2", None)
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 2);
    assert_eq!(s.get("/nodes/fast?limit=abc", None).await.code(), 400);
    assert_eq!(s.get("/count?kind=checkout", None).await.json(), json!(7));
    assert_eq!(
        s.get("/count?kind=checkout&limit=1", None).await.json(),
        json!(0)
    );
    assert_eq!(s.get("/latest/count", None).await.json(), json!(7));
    s.stop().await;
}

every_backend!(put_patch_and_permissions);
async fn put_patch_and_permissions() {
    let s = TestServer::start().await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let (_, editor) = s.user("editor", false, false, &["node:edit:any"]).await;
    let (_, team) = s.user("team", false, true, &["team-a"]).await;
    let (_, lab) = s
        .user("lab", false, true, &["runtime:lava-x:node-editor"])
        .await;
    let c = s.post("/node", Some(&alice), &checkout("c")).await.json();
    let cid = c["id"].as_str().unwrap().to_owned();
    let k = s
        .post("/node", Some(&alice), &kbuild(&cid, Some("lava-x")))
        .await
        .json();
    let kid = k["id"].as_str().unwrap().to_owned();
    let url = format!("/latest/node/{kid}");

    // Order of checks: token, existence, permission, body.
    assert_eq!(s.put(&url, None, &k).await.code(), 401);
    let r = s
        .put("/node/65a1355ee98651d0fe81e412", Some(&alice), &k)
        .await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            404,
            json!("Node not found with id: 65a1355ee98651d0fe81e412")
        )
    );
    assert_eq!(s.put("/node/zz", Some(&alice), &k).await.code(), 400);
    let r = s.put(&url, Some(&bob), &json!({"state": 5})).await;
    assert_eq!(
        (r.code(), r.detail()),
        (401, json!("Unauthorized to complete the operation"))
    );
    assert_eq!(
        s.put(&url, Some(&alice), &json!({"state": 5})).await.code(),
        422
    );

    // Every AUTH.md §5 grant works (PATCH); a stranger is refused.
    for (who, token) in [("admin", &admin), ("editor", &editor), ("lab", &lab)] {
        let r = s
            .patch(
                &url,
                Some(token),
                &json!({"data": {"arch": "x86_64", "runtime": "lava-x", "who": who}}),
            )
            .await;
        assert_eq!(r.code(), 200, "{who}: {}", r.text());
    }
    assert_eq!(
        s.patch(&url, Some(&team), &json!({"result": "pass"}))
            .await
            .code(),
        401
    );
    let mut grouped = checkout("g");
    grouped["user_groups"] = json!(["team-a"]);
    let g = s.post("/node", Some(&alice), &grouped).await.json();
    let r = s
        .patch(
            &format!("/node/{}", g["id"].as_str().unwrap()),
            Some(&team),
            &json!({"result": "pass"}),
        )
        .await;
    assert_eq!(r.code(), 200);

    // PUT is a full replacement: omitted fields take defaults, owner is kept.
    let mut full = s.get(&url, None).await.json();
    full["owner"] = json!("bob");
    full["state"] = json!("available");
    full["data"] = json!({"arch": "arm64"});
    let r = s.put(&url, Some(&alice), &full).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let n = r.json();
    assert_eq!(
        (n["owner"].clone(), n["state"].clone(), n["data"].clone()),
        (json!("alice"), json!("available"), json!({"arch": "arm64"}))
    );
    // Back to running: refused; with noevent, no event.
    full["state"] = json!("running");
    let r = s.put(&url, Some(&alice), &full).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Transition not allowed with state: running"))
    );
    full["state"] = json!("closing");
    let r = s
        .put(&format!("{url}?noevent=true"), Some(&alice), &full)
        .await;
    assert_eq!(r.code(), 200);

    // PATCH: no fields, replaced data, null result, transition check.
    let r = s.patch(&url, Some(&alice), &json!({"name": "x"})).await;
    assert_eq!((r.code(), r.detail()), (400, json!("No fields to update")));
    let r = s
        .patch(
            &url,
            Some(&alice),
            &json!({"state": "done", "result": null, "data": {"arch": "riscv"}}),
        )
        .await;
    assert_eq!(r.code(), 200);
    assert_eq!(
        (r.json()["state"].clone(), r.json()["result"].clone()),
        (json!("done"), Value::Null)
    );
    let r = s
        .patch(&url, Some(&alice), &json!({"state": "available"}))
        .await;
    assert_eq!(r.code(), 400);

    // Events: one per write but the noevent PUT, with previous values.
    let events = s.get(&format!("/events?node_id={kid}"), None).await.json();
    let ops: Vec<(Value, Value, Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["data"]["op"].clone(),
                e["data"]["state"].clone(),
                e["data"]["previous_state"].clone(),
            )
        })
        .collect();
    assert_eq!(ops.len(), 6, "{ops:?}");
    assert_eq!(
        ops[4],
        (json!("updated"), json!("available"), json!("running"))
    );
    assert_eq!(ops[5], (json!("updated"), json!("done"), json!("closing")));
    // recursive adds the current node.
    let r = s
        .get(
            &format!("/events?node_id={kid}&recursive=false&limit=2"),
            None,
        )
        .await
        .json();
    assert_eq!(r.as_array().unwrap().len(), 2);
    assert_eq!(r[0]["node"]["state"], "done");
    let r = s.get("/events?recursive=1&limit=5000", None).await;
    assert_eq!(
        (r.code(), r.detail()),
        (400, json!("Recursive limit is too large, max is 1000"))
    );
    let r = s.get("/events?node_id=a&data.id=b", None).await;
    assert_eq!(
        r.detail(),
        json!("Provide either node_id or data.id, not both")
    );
    let r = s.get("/events?from=1700000000", None).await;
    assert_eq!(
        r.detail(),
        json!("Invalid 'from' parameter, must be an ISO 8601 datetime")
    );
    let r = s.get("/events?kind=kbuild&state=done", None).await.json();
    assert_eq!(r.as_array().unwrap().len(), 1);
    s.stop().await;
}

every_backend!(batch_nodeset);
async fn batch_nodeset() {
    let s = TestServer::start().await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let a1 = s.post("/node", Some(&alice), &checkout("a1")).await.json()["id"].clone();
    let a2 = s.post("/node", Some(&alice), &checkout("a2")).await.json()["id"].clone();
    let b1 = s.post("/node", Some(&bob), &checkout("b1")).await.json()["id"].clone();
    let r = s
        .put("/batch/nodeset", Some(&alice), &json!({"nodes": []}))
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.detail().as_array().unwrap().len(), 2);
    let body =
        json!({"nodes": [a1, b1, a2], "field": "processed_by_kcidb_bridge", "value": "True"});
    assert_eq!(s.put("/batch/nodeset", None, &body).await.code(), 401);
    let r = s.put("/batch/nodeset", Some(&alice), &body).await;
    assert_eq!((r.code(), r.json()), (200, json!(2)));
    assert_eq!(
        s.get("/count?processed_by_kcidb_bridge=true", None)
            .await
            .json(),
        json!(2)
    );
    let r = s
        .put(
            "/batch/nodeset",
            Some(&alice),
            &json!({"nodes": [a1], "field": "state", "value": "True"}),
        )
        .await;
    assert_eq!((r.code(), r.detail()), (400, json!("Field not supported")));
    // A missing node stops processing; earlier nodes stay updated.
    let body = json!({"nodes": [a1, "65a1355ee98651d0fe81e412", a2], "field": "processed_by_kcidb_bridge", "value": "false"});
    let r = s.put("/batch/nodeset", Some(&alice), &body).await;
    assert_eq!(r.code(), 404);
    assert_eq!(
        s.get("/count?processed_by_kcidb_bridge=true", None)
            .await
            .json(),
        json!(1)
    );
    // No events for batch updates.
    assert_eq!(s.get("/events?op=updated", None).await.json(), json!([]));
    s.stop().await;
}

every_backend!(hierarchy_submission);
async fn hierarchy_submission() {
    let s = TestServer::start().await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let mut root = s.post("/node", Some(&alice), &kbuild_root()).await.json();
    let rid = root["id"].as_str().unwrap().to_owned();
    root["state"] = json!("done");
    root["result"] = json!("pass");
    let tree = json!({"node": root, "child_nodes": [
        {"node": {"kind": "test", "name": "baseline", "path": ["checkout", "baseline"], "result": "pass",
                  "data": {"misc": {"x": 1}, "unknown": "dropped"}},
         "child_nodes": [{"node": {"kind": "test", "name": "login", "path": ["checkout", "baseline", "login"], "result": "fail"}}]}
    ]});
    let url = format!("/nodes/{rid}");
    assert_eq!(s.put(&url, Some(&bob), &tree).await.code(), 401);
    assert_eq!(
        s.put("/nodes/65a1355ee98651d0fe81e412", Some(&alice), &tree)
            .await
            .code(),
        404
    );
    assert_eq!(
        s.put(&url, Some(&alice), &json!({"node": {"name": "x"}}))
            .await
            .code(),
        422
    );
    // A child referenced by an id that does not exist: nothing is written.
    let mut ghost = tree.clone();
    ghost["child_nodes"][0]["node"]["id"] = json!("65a1355ee98651d0fe81e412");
    let r = s.put(&url, Some(&alice), &ghost).await;
    assert_eq!(
        (r.code(), r.detail()),
        (
            400,
            json!("No object found with id: 65a1355ee98651d0fe81e412")
        )
    );
    assert_eq!(s.get("/count?kind=test", None).await.json(), json!(0));
    let r = s.put(&url, Some(&alice), &tree).await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let written = r.json();
    let written = written.as_array().unwrap();
    assert_eq!(written.len(), 3);
    assert_eq!(written[0]["id"], json!(rid));
    assert_eq!(written[1]["parent"], json!(rid));
    assert_eq!(written[2]["parent"], written[1]["id"]);
    assert_eq!(written[1]["owner"], "alice");
    assert!(written[1]["data"].get("unknown").is_none());
    assert_eq!(
        s.get(&format!("/count?parent={rid}"), None).await.json(),
        json!(1)
    );
    let events = s.get("/events?op=updated", None).await.json();
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["data"]["is_hierarchy"], true);
    assert_eq!(events[0]["data"]["previous_state"], "running");
    // All or nothing: a submission naming one existing node twice is refused whole
    // (its new child and the root's change are not written either).
    let kid = written[1]["id"].as_str().unwrap().to_owned();
    let mut root2 = s.get(&url.replace("nodes", "node"), None).await.json();
    root2["result"] = json!("fail");
    let twice = json!({"node": root2, "child_nodes": [
        {"node": {"id": kid, "kind": "test", "name": "baseline", "path": ["checkout", "baseline"]}},
        {"node": {"id": kid, "kind": "test", "name": "baseline", "path": ["checkout", "baseline"]}},
        {"node": {"kind": "test", "name": "new", "path": ["checkout", "new"]}}
    ]});
    let r = s.put(&url, Some(&alice), &twice).await;
    assert_eq!(r.code(), 409, "{}", r.text());
    assert!(
        r.detail().as_str().unwrap().contains("not written"),
        "{}",
        r.text()
    );
    assert_eq!(s.get("/count?kind=test", None).await.json(), json!(2));
    assert_eq!(
        s.get(&url.replace("nodes", "node"), None).await.json()["result"],
        "pass"
    );
    assert_eq!(
        s.get("/events?op=updated", None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    s.stop().await;
}

fn kbuild_root() -> Value {
    json!({"kind": "kbuild", "name": "kbuild", "path": ["checkout", "kbuild"], "data": {"arch": "x86_64"}})
}

every_backend!(time_driven_transitions_and_purge);
async fn time_driven_transitions_and_purge() {
    let mut config = kernelci_http::HttpConfig::for_tests(common::SECRET);
    config.node_purge_age_days = Some(1);
    let s = TestServer::start_with(config).await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let c = s.post("/node", Some(&alice), &checkout("c")).await.json();
    let cid = c["id"].as_str().unwrap().to_owned();
    let k = s
        .post("/node", Some(&alice), &kbuild(&cid, None))
        .await
        .json();
    let kid = k["id"].as_str().unwrap().to_owned();
    // The checkout is available with a past holdoff; its kbuild still runs.
    let r = s
        .patch(
            &format!("/node/{cid}"),
            Some(&alice),
            &json!({"state": "available", "holdoff": "2020-01-01T00:00:00"}),
        )
        .await;
    assert_eq!(r.code(), 200);
    let round = jobs::run_state_machine(&s.state, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(round.held_off, 1);
    assert_eq!(
        s.get(&format!("/node/{cid}"), None).await.json()["state"],
        "closing"
    );
    // Idempotent.
    assert_eq!(
        jobs::run_state_machine(&s.state, Timestamp::now())
            .await
            .unwrap(),
        jobs::StateRound::default()
    );
    // Seven hours later the kbuild's timeout (6 h) has passed: done, incomplete; then
    // the checkout's children are all done.
    let later = Timestamp::now().plus_seconds(7 * 3600);
    let round = jobs::run_state_machine(&s.state, later).await.unwrap();
    assert!(round.timed_out >= 1, "{round:?}");
    let k = s.get(&format!("/node/{kid}"), None).await.json();
    assert_eq!(
        (
            k["state"].clone(),
            k["result"].clone(),
            k["data"]["error_code"].clone()
        ),
        (json!("done"), json!("incomplete"), json!("node_timeout"))
    );
    assert_eq!(
        s.get(&format!("/node/{cid}"), None).await.json()["state"],
        "done"
    );
    let ev = s
        .get(&format!("/events?node_id={kid}&op=updated"), None)
        .await
        .json();
    assert_eq!(ev[0]["data"]["previous_state"], "running");
    // Purge: nodes but checkouts older than a day go; the counter appears.
    let later = Timestamp::now().plus_seconds(8 * 86_400);
    assert_eq!(jobs::run_purge(&s.state, later).await.unwrap(), 1);
    let round = jobs::run_housekeeping(&s.state, later).await.unwrap();
    assert_eq!(s.get("/count", None).await.json(), json!(1));
    assert!(s
        .get("/metrics", None)
        .await
        .text()
        .contains("nodes_purged{instance=\"api\"} 1"));
    // Events older than the history TTL are trimmed.
    assert!(round.events_trimmed >= 1);
    s.stop().await;
}
