//! `kernelci-server import mongo` as an operator runs it: dumps of the reference's
//! MongoDB database written with the BSON crate in both formats (`mongodump` BSON,
//! gzip included; `mongoexport` Extended JSON, canonical lines and a relaxed
//! array), imported into a sled store, then served: ids, millisecond datetimes,
//! parents, old passwords (bcrypt and Argon2), event sequence ids and a durable
//! subscriber's position are all there; refused documents are in the rejects file
//! with their reason; a second run imports nothing and skips everything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::Path;

use bson::{doc, oid::ObjectId, Bson, DateTime, Document};
use common::{command, http, login, start, token_of};
use kernelci_http::passwords::hash_blocking;
use kernelci_http::PasswordCost;

const SECRET: (&str, &str) = ("SECRET_KEY", "import-test-secret");
/// The fixtures' events and telemetry are months old: without this, the
/// server's first housekeeping round (when it wins the jobs lease first) trims
/// them, as retention should, before the test reads them.
const KEEP_EVENTS: (&str, &str) = ("EVENT_HISTORY_TTL_SECONDS", "3153600000");
const KEEP_TELEMETRY: (&str, &str) = ("TELEMETRY_TTL_SECONDS", "3153600000");

/// The documents of one dump, as the reference stores them.
struct Fixture {
    checkout: ObjectId,
    kbuild: ObjectId,
    events: [ObjectId; 3],
    collections: Vec<(&'static str, Vec<Document>)>,
}

fn fixture() -> Fixture {
    let (checkout, kbuild, test) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    let group = ObjectId::new();
    let created = DateTime::from_millis(1_764_000_000_123);
    let later = DateTime::from_millis(1_764_000_100_456);
    let node = |id: ObjectId, kind: &str, name: &str, path: Vec<&str>, parent: Bson| {
        doc! {"_id": id, "kind": kind, "name": name, "path": path, "group": Bson::Null,
        "parent": parent, "state": "done", "result": "pass", "artifacts": {},
        "data": {"kernel_revision": {"tree": "mainline", "branch": "master",
            "commit": "abc", "url": "https://git.kernel.org/x.git"}},
        "debug": {}, "jobfilter": Bson::Null, "platform_filter": [], "created": created,
        "updated": later, "timeout": later, "holdoff": Bson::Null, "owner": "alice",
        "submitter": Bson::Null, "treeid": Bson::Null, "user_groups": [],
        "processed_by_kcidb_bridge": false, "retry_counter": 0_i32}
    };
    let mut kbuild_doc = node(
        kbuild,
        "kbuild",
        "build",
        vec!["checkout", "build"],
        checkout.into(),
    );
    // Written by an update: the redundant `id` the reference's serializer adds.
    kbuild_doc.insert("id", kbuild);
    // A regression-style ObjectId inside `data`, and a document from before
    // `retry_counter` and `processed_by_kcidb_bridge` existed.
    let mut test_doc = node(
        test,
        "test",
        "t1",
        vec!["checkout", "build", "t1"],
        kbuild.into(),
    );
    test_doc.insert("data", doc! {"fail_node": checkout});
    test_doc.remove("retry_counter");
    test_doc.remove("processed_by_kcidb_bridge");
    let nodes = vec![
        node(
            checkout,
            "checkout",
            "checkout",
            vec!["checkout"],
            Bson::Null,
        ),
        kbuild_doc,
        test_doc,
        doc! {"_id": ObjectId::new(), "path": ["nameless"]},
        doc! {"_id": ObjectId::new(), "name": "n", "path": ["n"],
        "data": {"x": Bson::Decimal128(bson::Decimal128::from_bytes([0; 16]))}},
    ];
    let alice_hash = bcrypt::hash("alice-password", 4).unwrap();
    let bob_hash = hash_blocking("bob-password", PasswordCost::TESTING).unwrap();
    let users = vec![
        doc! {"_id": ObjectId::new(), "email": "alice@example.org", "hashed_password": alice_hash,
        "is_active": true, "is_superuser": true, "is_verified": true, "username": "alice",
        "groups": [{"_id": group, "name": "kernelci"}], "revision_id": Bson::Null},
        doc! {"_id": ObjectId::new(), "email": "bob@example.org", "hashed_password": bob_hash,
        "is_active": true, "is_superuser": false, "is_verified": true, "username": "bob",
        "groups": [{"id": group, "name": "kernelci"}]},
    ];
    let events = [ObjectId::new(), ObjectId::new(), ObjectId::new()];
    let mut history: Vec<Document> = events
        .iter()
        .zip(1_i32..)
        .map(|(id, seq)| {
            doc! {"_id": *id, "timestamp": later, "sequence_id": seq, "channel": "node",
            "owner": "alice", "data": {"op": "created", "id": format!("node-of-event-{seq}"),
                "kind": "checkout", "name": "checkout", "path": ["checkout"], "group": Bson::Null,
                "state": "running", "result": Bson::Null, "owner": "alice", "data": {}}}
        })
        .collect();
    history.push(doc! {"_id": ObjectId::new(), "timestamp": later, "data": {"op": "created"}});
    let subscribers = vec![doc! {"_id": ObjectId::new(), "subscriber_id": "pipeline-a",
    "channel": "node", "user": "alice", "promiscuous": true, "last_event_id": 2_i64,
    "created_at": created, "last_poll": later}];
    let telemetry = (0..2)
        .map(|i| {
            doc! {"_id": ObjectId::new(), "id": Bson::Null, "ts": later, "kind": "job_result",
            "runtime": "lava-x", "device_type": "rpi", "result": "pass",
            "is_infra_error": false, "retry": i, "extra": {}}
        })
        .collect();
    Fixture {
        checkout,
        kbuild,
        events,
        collections: vec![
            ("usergroup", vec![doc! {"_id": group, "name": "kernelci"}]),
            ("user", users),
            ("node", nodes),
            ("eventhistory", history),
            ("subscriber_state", subscribers),
            ("telemetry", telemetry),
        ],
    }
}

fn bson_bytes(docs: &[Document]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in docs {
        d.to_writer(&mut out).unwrap();
    }
    out
}

/// `mongodump --db kernelci` (with `--gzip` for the nodes), a corrupt document
/// among the nodes, and the metadata files mongodump writes.
fn write_mongodump(dir: &Path, f: &Fixture) {
    let db = dir.join("dump").join("kernelci");
    std::fs::create_dir_all(&db).unwrap();
    for (name, docs) in &f.collections {
        let mut bytes = bson_bytes(docs);
        if *name == "node" {
            // A document whose length is right and whose content is not BSON.
            bytes.extend_from_slice(&[9, 0, 0, 0, 0x99, b'a', 0, 0, 0]);
            bytes.extend(bson_bytes(&[
                doc! {"_id": ObjectId::new(), "name": "after-corrupt",
                "path": ["after-corrupt"]},
            ]));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&bytes).unwrap();
            std::fs::write(db.join("node.bson.gz"), gz.finish().unwrap()).unwrap();
        } else {
            std::fs::write(db.join(format!("{name}.bson")), bytes).unwrap();
        }
        std::fs::write(db.join(format!("{name}.metadata.json")), "{\"indexes\":[]}").unwrap();
    }
}

/// `mongoexport`: canonical Extended JSON, one document per line, and relaxed
/// Extended JSON with `--jsonArray` for the users.
fn write_mongoexport(dir: &Path, f: &Fixture) {
    let out = dir.join("export");
    std::fs::create_dir_all(&out).unwrap();
    for (name, docs) in &f.collections {
        let text = if *name == "user" {
            let items: Vec<String> = docs
                .iter()
                .map(|d| Bson::Document(d.clone()).into_relaxed_extjson().to_string())
                .collect();
            format!("[\n{}\n]\n", items.join(",\n"))
        } else {
            docs.iter()
                .map(|d| format!("{}\n", Bson::Document(d.clone()).into_canonical_extjson()))
                .collect()
        };
        std::fs::write(out.join(format!("{name}.json")), text).unwrap();
    }
}

/// Runs `import mongo PATH` into `<dir>/data`; (success, stdout, stderr).
fn import(dir: &Path, path: &Path) -> (bool, String, String) {
    let out = command(dir)
        .args(["import", "mongo"])
        .arg(path)
        .args(["--batch-size", "2", "--rejects"])
        .arg(dir.join("rejects.jsonl"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report line of `collection`: (read, imported, rejected, skipped).
fn counts(report: &str, collection: &str) -> (u64, u64, u64, u64) {
    let line = report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(collection))
        .unwrap_or_else(|| panic!("no {collection} line in {report}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    (n[0], n[1], n[2], n[3])
}

/// What a served import must show.
fn check_served(dir: &Path, f: &Fixture) {
    let s = start(dir, &[SECRET, KEEP_EVENTS, KEEP_TELEMETRY], &[]);
    let (status, body) = http(
        &s.addr,
        "GET",
        &format!("/latest/node/{}", f.checkout),
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let node: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        node["created"], "2025-11-24T16:00:00.123000",
        "milliseconds kept"
    );
    assert_eq!(node["owner"], "alice");
    let (_, body) = http(
        &s.addr,
        "GET",
        &format!("/latest/node/{}", f.kbuild),
        &[],
        "",
    );
    let kbuild: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(kbuild["parent"], f.checkout.to_hex());
    let (_, body) = http(&s.addr, "GET", "/latest/count", &[], "");
    assert_eq!(
        body.trim(),
        "4",
        "three nodes and the one after the corrupt document"
    );
    // Old passwords: bcrypt (passlib) and Argon2 (pwdlib).
    let (status, body) = login(&s.addr, "alice", "alice-password");
    assert_eq!(status, 200, "{body}");
    let alice = token_of(&body);
    let (status, body) = login(&s.addr, "bob", "bob-password");
    assert_eq!(status, 200, "{body}");
    let auth = format!("Bearer {alice}");
    let (_, body) = http(
        &s.addr,
        "GET",
        "/latest/whoami",
        &[("Authorization", &auth)],
        "",
    );
    assert!(body.contains("\"name\":\"kernelci\""), "{body}");
    // The pipeline service reconnects with its subscriber id: the next event is the
    // third, not one it had, and nothing is missed.
    let (status, body) = http(
        &s.addr,
        "POST",
        "/latest/subscribe/node?subscriber_id=pipeline-a",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let sub: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (status, body) = http(
        &s.addr,
        "GET",
        &format!("/latest/listen/{}", sub["id"]),
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("node-of-event-3"), "{body}");
    let (_, body) = http(&s.addr, "GET", "/latest/events?limit=10", &[], "");
    for id in &f.events {
        assert!(body.contains(&id.to_hex()), "event {id} missing: {body}");
    }
    // New events go on after the imported sequence.
    let (status, body) = http(
        &s.addr,
        "POST",
        "/latest/node",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"kind":"checkout","name":"new","path":["new"],"data":{"kernel_revision":{"tree":"t","branch":"b","commit":"c","url":"https://git.kernel.org/x.git"}}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = http(
        &s.addr,
        "GET",
        "/latest/events?limit=10&from=2000-01-01",
        &[],
        "",
    );
    assert!(body.contains("\"sequence_id\":4"), "{body}");
    let (_, body) = http(&s.addr, "GET", "/latest/telemetry", &[], "");
    assert!(body.contains("\"total\":2"), "{body}");
    s.stop();
}

fn rejects(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("rejects.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_mongodump_is_imported_served_and_a_second_run_skips_everything() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    write_mongodump(dir.path(), &f);
    let (ok, out, err) = import(dir.path(), &dir.path().join("dump"));
    assert!(ok, "{out}\n{err}");
    assert_eq!(counts(&out, "node"), (7, 4, 3, 0), "{out}");
    assert_eq!(counts(&out, "user"), (2, 2, 0, 0), "{out}");
    assert_eq!(counts(&out, "eventhistory"), (4, 3, 1, 0), "{out}");
    assert_eq!(counts(&out, "subscriber_state"), (1, 1, 0, 0), "{out}");
    assert_eq!(counts(&out, "telemetry"), (2, 2, 0, 0), "{out}");
    let refused = rejects(dir.path());
    let reasons: Vec<&str> = refused
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        reasons.iter().any(|r| r.contains("no sequence_id")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r == &"no name"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("undecodable BSON")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("unsupported BSON type")),
        "{reasons:?}"
    );
    let (ok, out, err) = import(dir.path(), &dir.path().join("dump"));
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        counts(&out, "node"),
        (7, 0, 3, 4),
        "a second run skips: {out}"
    );
    assert_eq!(counts(&out, "user"), (2, 0, 0, 2), "{out}");
    check_served(dir.path(), &f);
}

#[test]
fn a_mongoexport_in_extended_json_is_imported() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    write_mongoexport(dir.path(), &f);
    let (ok, out, err) = import(dir.path(), &dir.path().join("export"));
    assert!(ok, "{out}\n{err}");
    assert_eq!(counts(&out, "node"), (5, 3, 2, 0), "{out}");
    assert_eq!(counts(&out, "user"), (2, 2, 0, 0), "{out}");
    let s = start(dir.path(), &[SECRET, KEEP_EVENTS, KEEP_TELEMETRY], &[]);
    let (_, body) = http(
        &s.addr,
        "GET",
        &format!("/latest/node/{}", f.checkout),
        &[],
        "",
    );
    assert!(
        body.contains("\"created\":\"2025-11-24T16:00:00.123000\""),
        "{body}"
    );
    assert_eq!(login(&s.addr, "alice", "alice-password").0, 200);
    s.stop();
}

#[test]
fn a_dump_that_cannot_be_read_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = import(dir.path(), &dir.path().join("missing"));
    assert!(!ok);
    assert!(err.contains("missing"), "{err}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, _, err) = import(dir.path(), &empty);
    assert!(!ok);
    assert!(err.contains("no collection"), "{err}");
    // A length no document can have: the file cannot be read on.
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("node.bson"), [0xff, 0xff, 0xff, 0x7f, 1, 2]).unwrap();
    let (ok, _, err) = import(dir.path(), &bad);
    assert!(!ok);
    assert!(err.contains("cannot be right"), "{err}");
}

/// The committed dump written by pymongo's own `bson` package
/// (`tests/fixtures/make_pymongo_dump.py`), with hashes from the reference's
/// libraries: what real dumps are made of.
#[test]
fn a_dump_written_by_pymongo_is_imported_as_the_reference_stored_it() {
    let dir = tempfile::tempdir().unwrap();
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pymongo-dump");
    let (ok, out, err) = import(dir.path(), &dump);
    assert!(ok, "{out}\n{err}");
    for (c, n) in [
        ("usergroup", 1),
        ("user", 2),
        ("node", 3),
        ("eventhistory", 3),
        ("subscriber_state", 1),
        ("telemetry", 1),
    ] {
        assert_eq!(counts(&out, c), (n, n, 0, 0), "{c}: {out}");
    }
    let s = start(dir.path(), &[SECRET, KEEP_EVENTS, KEEP_TELEMETRY], &[]);
    let (_, body) = http(
        &s.addr,
        "GET",
        "/latest/node/6751a0000000000000000003",
        &[],
        "",
    );
    let node: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Python's microseconds, cut to BSON's milliseconds.
    assert_eq!(node["created"], "2026-01-02T03:04:05.678000", "{body}");
    assert_eq!(node["parent"], "6751a0000000000000000002");
    assert_eq!(
        node["data"]["fail_node"], "6751a0000000000000000002",
        "{body}"
    );
    assert_eq!(node["kind"], "regression");
    let (_, body) = http(&s.addr, "GET", "/latest/nodes?kind=kbuild", &[], "");
    assert!(body.contains("\"total\":1"), "{body}");
    let (status, body) = login(&s.addr, "alice", "alice-fixture");
    assert_eq!(status, 200, "bcrypt from the reference: {body}");
    let alice = format!("Bearer {}", token_of(&body));
    let (status, body) = login(&s.addr, "bob", "bob-fixture");
    assert_eq!(status, 200, "argon2-cffi from the reference: {body}");
    let (status, body) = http(
        &s.addr,
        "POST",
        "/latest/subscribe/node?subscriber_id=fixture-pipeline",
        &[("Authorization", &alice)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let sub: serde_json::Value = serde_json::from_str(&body).unwrap();
    let (_, body) = http(
        &s.addr,
        "GET",
        &format!("/latest/listen/{}", sub["id"]),
        &[("Authorization", &alice)],
        "",
    );
    assert!(body.contains("fixture-event-3"), "{body}");
    s.stop();
}
