//! Table tests with the examples of MODELS.md: each row is a node body and what the
//! POST path (base layer, then `state::create`) makes of it: stored values, or the
//! error class and text.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use kernelci_core::id::ObjectId;
use kernelci_core::node::NodeBody;
use kernelci_core::state;
use kernelci_core::time::{parse_query_datetime, Timestamp};
use kernelci_core::Error;
use serde_json::{json, Value};

fn now() -> Timestamp {
    parse_query_datetime("2024-02-01T09:58:28.479138").unwrap()
}

/// POSTs `body` as user `alice`: the stored node as JSON, or `422 <loc>: <type>` /
/// `400 <text>`.
fn post(body: Value) -> Result<Value, String> {
    let b = NodeBody::from_json(&body, &["body".into()], now()).map_err(describe)?;
    let node = state::create(b, "alice", ObjectId::new(), now()).map_err(describe)?;
    Ok(node.to_json())
}

fn describe(e: Error) -> String {
    match e {
        Error::Validation(errs) => {
            let parts: Vec<String> = errs
                .0
                .iter()
                .map(|f| {
                    let loc: Vec<String> = f
                        .loc
                        .iter()
                        .map(|p| p.to_string().replace('"', ""))
                        .collect();
                    format!("{}: {}", loc.join("."), f.kind)
                })
                .collect();
            format!("422 {}", parts.join(", "))
        }
        other => format!("400 {other}"),
    }
}

fn check(body: Value, expect: Result<Value, &str>) {
    let got = post(body.clone());
    match (&got, expect) {
        (Ok(node), Ok(want)) => {
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(&node[k], v, "field {k} of {body}");
            }
        }
        (Err(e), Err(want)) => assert_eq!(e, want, "{body}"),
        (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
    }
}

fn rev() -> Value {
    json!({"tree": "mainline", "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
           "branch": "master", "commit": "abc"})
}

/// Stored datetimes keep milliseconds (API.md §1.5: values read back end in `000`).
#[test]
fn defaults_of_the_node_table() {
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"]}),
        Ok(
            json!({"group": null, "parent": null, "state": "running", "result": null, "artifacts": {},
                  "data": {}, "debug": {}, "jobfilter": null, "platform_filter": [],
                  "created": "2024-02-01T09:58:28.479000", "updated": "2024-02-01T09:58:28.479000",
                  "timeout": "2024-02-01T15:58:28.479000", "holdoff": null, "owner": "alice",
                  "submitter": null, "treeid": null, "user_groups": [],
                  "processed_by_kcidb_bridge": false, "retry_counter": 0}),
        ),
    );
    let node = post(json!({"kind": "checkout", "name": "c", "path": ["c"]})).unwrap();
    assert_eq!(node.as_object().unwrap().len(), 23);
}

#[test]
fn base_layer_rows() {
    check(
        json!({"kind": "checkout", "path": ["c"]}),
        Err("422 body.name: missing"),
    );
    check(
        json!({"kind": "checkout", "name": "c"}),
        Err("422 body.path: missing"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "state": "pending"}),
        Err("422 body.state: enum"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "result": "PASS"}),
        Err("422 body.result: enum"),
    );
    check(
        json!({"kind": "checkout", "name": 1, "path": ["c"]}),
        Err("422 body.name: string_type"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": "c"}),
        Err("422 body.path: list_type"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "artifacts": {"a": "file:///x"}}),
        Err("422 body.artifacts.a: url_scheme"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "parent": "zz"}),
        Err("422 body.parent: value_error"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "user_groups": ["a", "a"]}),
        Err("422 body.user_groups: value_error"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "retry_counter": "2"}),
        Err("422 body.retry_counter: int_type"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "retry_counter": 2.0}),
        Err("422 body.retry_counter: int_type"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "retry_counter": true}),
        Err("422 body.retry_counter: int_type"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "timeout": null}),
        Err("422 body.timeout: datetime_type"),
    );
    // Unknown top-level keys are ignored, not stored.
    let node =
        post(json!({"kind": "checkout", "name": "c", "path": ["c"], "status": "pending"})).unwrap();
    assert!(node.get("status").is_none());
}

#[test]
fn normalisation_rows() {
    check(
        json!({"kind": "kbuild", "name": "k", "path": ["k"], "artifacts": {"log": "http://example.com"}}),
        Ok(json!({"artifacts": {"log": "http://example.com/"}})),
    );
    check(
        json!({"kind": "kbuild", "name": "k", "path": ["k"], "artifacts": null}),
        Ok(json!({"artifacts": null})),
    );
    check(
        json!({"kind": "kbuild", "name": "k", "path": ["k"], "created": "2030-01-01T00:00:00+02:00", "holdoff": "2020-01-01T00:00:00Z"}),
        Ok(json!({"created": "2029-12-31T22:00:00", "holdoff": "2020-01-01T00:00:00"})),
    );
    check(
        json!({"kind": "kbuild", "name": "k", "path": ["k"], "processed_by_kcidb_bridge": "yes", "owner": "mallory", "submitter": "svc", "treeid": "t1"}),
        Ok(
            json!({"processed_by_kcidb_bridge": true, "owner": "alice", "submitter": "svc", "treeid": "t1"}),
        ),
    );
}

#[test]
fn kind_layer_rows() {
    check(
        json!({"name": "n", "path": ["n"]}),
        Err("400 Unsupported node kind: node"),
    );
    check(
        json!({"kind": "node", "name": "n", "path": ["n"]}),
        Err("400 Unsupported node kind: node"),
    );
    check(
        json!({"kind": "kbuild", "name": "n", "path": ["n"], "data": null}),
        Err("400 1 validation error for Kbuild\ndata\n  Input should be a valid dictionary"),
    );
    check(
        json!({"kind": "process", "name": "n", "path": ["n"], "data": null}),
        Ok(json!({"data": null})),
    );
    let mut bad = rev();
    bad["url"] = json!("git@github.com:torvalds/linux");
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "data": {"kernel_revision": bad}}),
        Err("400 1 validation error for Checkout\ndata.kernel_revision.url\n  Input should be a valid URL, relative URL without a base"),
    );
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "data": {"error_code": "Infrastructure"}}),
        Err("400 1 validation error for Checkout\ndata.error_code\n  Input should be 'node_timeout' or 'git_checkout_failure'"),
    );
    // Unknown data keys are kept on POST; the kind defaults are not applied.
    check(
        json!({"kind": "kbuild", "name": "k", "path": ["k"], "data": {"arch": "x86_64", "custom": {"x": 1}}}),
        Ok(json!({"data": {"arch": "x86_64", "custom": {"x": 1}}})),
    );
    check(
        json!({"kind": "regression", "name": "r", "path": ["r"]}),
        Ok(json!({"result": null, "data": {}})),
    );
    // ObjectId-typed data fields are validated but stored as sent.
    check(
        json!({"kind": "regression", "name": "r", "path": ["r"], "data": {"fail_node": "65A1355EE98651D0FE81E412"}}),
        Ok(json!({"data": {"fail_node": "65A1355EE98651D0FE81E412"}})),
    );
    check(json!({"kind": "regression", "name": "r", "path": ["r"], "data": {"fail_node": "nope"}}), Err("400 1 validation error for Regression\ndata.fail_node\n  Value error, Invalid ObjectId"));
}

#[test]
fn kernel_version_coercion_rows() {
    let with_version = |v: Value| {
        let mut r = rev();
        r["version"] = v;
        json!({"kind": "checkout", "name": "c", "path": ["c"], "data": {"kernel_revision": r}})
    };
    let stored =
        |v: Value| post(with_version(v)).map(|n| n["data"]["kernel_revision"]["version"].clone());
    assert_eq!(
        stored(json!({"version": "6", "patchlevel": 6.0, "sublevel": "7"})).unwrap(),
        json!({"version": 6, "patchlevel": 6, "sublevel": 7})
    );
    assert_eq!(
        stored(json!({"version": 6, "patchlevel": 1, "sublevel": 0, "extra": "-rc2"})).unwrap(),
        json!({"version": 6, "patchlevel": 1, "sublevel": 0, "extra": "-rc2"})
    );
    assert_eq!(
        stored(json!({"version": "x", "patchlevel": 1})).unwrap_err(),
        "400 invalid literal for int() with base 10: 'x'"
    );
    assert_eq!(
        stored(json!({"version": "", "patchlevel": 1})).unwrap_err(),
        "400 1 validation error for Checkout\ndata.kernel_revision.version.version\n  Input should be a valid integer",
        "a falsy value is not coerced and then fails the strict check"
    );
    assert!(stored(json!({"patchlevel": 1}))
        .unwrap_err()
        .contains("data.kernel_revision.version.version\n  Field required"));
}

#[test]
fn a_body_id_is_refused_on_create() {
    check(
        json!({"kind": "checkout", "name": "c", "path": ["c"], "id": "65a1355ee98651d0fe81e412"}),
        Err("400 Object cannot be created with id: 65a1355ee98651d0fe81e412"),
    );
}
