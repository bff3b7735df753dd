//! `kernelci-server copy` as an operator runs it: a sled store filled through the
//! HTTP API is copied to PostgreSQL and back to a new sled store (to a second sled
//! store when PostgreSQL is not on the machine); a second run copies nothing and
//! finds the same counts; a server started on the copy serves the same data and
//! logs the same users in; a store in use is refused; a mismatch fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{command, http, login, start, token_of};
use kernelci_store::postgres::testing::TestCluster;

const SECRET: (&str, &str) = ("SECRET_KEY", "copy-test-secret");
const PASSWORD: (&str, &str) = ("KCI_INITIAL_PASSWORD", "copy-admin-password");

fn post(addr: &str, token: &str, path: &str, body: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    http(
        addr,
        "POST",
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// Runs `copy --from FROM --to TO`; (success, stdout, stderr).
fn copy(dir: &Path, from: &str, to: &str) -> (bool, String, String) {
    copy_with(dir, from, to, &[])
}

/// Runs `copy --from FROM --to TO` with more options.
fn copy_with(dir: &Path, from: &str, to: &str, more: &[&str]) -> (bool, String, String) {
    let out = command(dir)
        .args(["copy", "--from", from, "--to", to, "--batch-size", "3"])
        .args(more)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a client sees of a server's data.
fn snapshot(addr: &str, token: &str) -> Vec<String> {
    let auth = format!("Bearer {token}");
    [
        "/latest/nodes?limit=1000",
        "/latest/count",
        "/latest/count?kind=test",
        "/latest/users",
        "/latest/events?limit=1000",
    ]
    .iter()
    .map(|path| {
        let (status, body) = http(addr, "GET", path, &[("Authorization", &auth)], "");
        assert_eq!(status, 200, "{path}: {body}");
        body
    })
    .collect()
}

#[test]
fn copy_sled_to_postgres_and_back() {
    let dir = tempfile::tempdir().unwrap();
    // The server's data dir is `<dir>/data`.
    let s = start(dir.path(), &[SECRET, PASSWORD], &[]);
    let (status, body) = login(&s.addr, "admin", PASSWORD.1);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let (status, body) = post(
        &s.addr,
        &token,
        "/latest/node",
        r#"{"kind": "checkout", "name": "c", "path": ["c"],
            "data": {"kernel_revision": {"tree": "mainline", "branch": "master",
            "commit": "2a987e65025e2b79c6d453b78cb5985ac6e5eb26",
            "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git"}}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let parent: serde_json::Value = serde_json::from_str(&body).unwrap();
    let parent = parent["id"].as_str().unwrap().to_owned();
    for i in 0..7 {
        let body = format!(
            r#"{{"kind": "test", "name": "t{i}", "path": ["c", "t{i}"], "parent": "{parent}"}}"#
        );
        let (status, body) = post(&s.addr, &token, "/latest/node", &body);
        assert_eq!(status, 200, "{body}");
    }
    let before = snapshot(&s.addr, &token);

    // The store is locked while the server runs.
    let source = format!("sled:{}", dir.path().join("data").display());
    let (ok, _, err) = copy(dir.path(), &source, "memory:");
    assert!(!ok);
    assert!(err.contains("in use"), "{err}");
    s.stop();

    let middle = match TestCluster::shared() {
        Some(cluster) => format!("postgres:{}", cluster.create_database()),
        None => format!("sled:{}", dir.path().join("middle").display()),
    };
    let (ok, out, err) = copy(dir.path(), &source, &middle);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("verified"), "{out}");
    // Again: nothing to copy, the same counts.
    let (ok, again, err) = copy(dir.path(), &source, &middle);
    assert!(ok, "{again}\n{err}");
    for line in again.lines().filter(|l| l.contains("imported")) {
        assert!(line.contains("imported          0"), "{line}");
    }
    let counts = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.contains("imported"))
            .map(|l| l.split("imported").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(counts(&out), counts(&again));
    assert_eq!(counts(&out).len(), 10);

    // Back into a new sled store, which a server then serves.
    let other = tempfile::tempdir().unwrap();
    let back = other.path().join("data");
    let (ok, out, err) = copy(dir.path(), &middle, &format!("sled:{}", back.display()));
    assert!(ok, "{out}\n{err}");
    let s = start(other.path(), &[SECRET], &[]);
    let (status, body) = login(&s.addr, "admin", PASSWORD.1);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    assert_eq!(snapshot(&s.addr, &token), before);
    s.stop();
    // A store the copy creates leaves sled's log plain (it packs its records
    // itself), unless a compression level is asked for.
    let conf = |dir: &Path| {
        String::from_utf8_lossy(&std::fs::read(dir.join("conf")).unwrap()).into_owned()
    };
    assert!(
        conf(&back).contains("use_compression: false"),
        "{}",
        conf(&back)
    );
    let zstd_dir = tempfile::tempdir().unwrap();
    let zstd = zstd_dir.path().join("data");
    let to = format!("sled:{}", zstd.display());
    let (ok, out, err) = copy_with(dir.path(), &middle, &to, &["--compression-level", "1"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        conf(&zstd).contains("use_compression: true"),
        "{}",
        conf(&zstd)
    );
    let s = start(zstd_dir.path(), &[SECRET], &[]);
    let (status, body) = login(&s.addr, "admin", PASSWORD.1);
    assert_eq!(status, 200, "{body}");
    assert_eq!(snapshot(&s.addr, &token_of(&body)), before);
    s.stop();

    // A target that holds more than the source fails the verification.
    let (ok, out, err) = copy(dir.path(), "memory:", &format!("sled:{}", back.display()));
    assert!(!ok, "{out}");
    assert!(err.contains("counts differ"), "{err}");

    // Bad specs are refused by the parser.
    let (ok, _, err) = copy(dir.path(), "mysql:x", "memory:");
    assert!(!ok);
    assert!(err.contains("sled:DIR"), "{err}");
}
