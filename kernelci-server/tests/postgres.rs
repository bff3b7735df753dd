//! `serve --backend postgres` as an operator runs it: on a throwaway PostgreSQL
//! cluster, data kept across restarts, a clear error at start when the database
//! cannot be reached or is not configured, 503 while the database is down and
//! recovery without a restart when it is back.
//!
//! Without PostgreSQL on the machine these tests print a SKIPPED line and pass, unless
//! `KCI_REQUIRE_POSTGRES=1` (CI sets it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{command, http, login, start, token_of};
use kernelci_store::postgres::testing::TestCluster;

const SECRET: (&str, &str) = ("SECRET_KEY", "postgres-test-secret");
const PASSWORD: (&str, &str) = ("KCI_INITIAL_PASSWORD", "pg-admin-password");

fn post_node(addr: &str, token: &str, name: &str) -> (u16, String) {
    let body = format!(
        r#"{{"kind": "checkout", "name": "{name}", "path": ["{name}"],
            "data": {{"kernel_revision": {{"tree": "mainline", "branch": "master",
            "commit": "2a987e65025e2b79c6d453b78cb5985ac6e5eb26",
            "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git"}}}}}}"#
    );
    let auth = format!("Bearer {token}");
    http(
        addr,
        "POST",
        "/latest/node",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

fn id_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[test]
fn serve_on_postgres_keeps_data_across_restarts() {
    let Some(cluster) = TestCluster::shared() else {
        return;
    };
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let args = ["--backend", "postgres", "--database-url", url.as_str()];
    let s = start(dir.path(), &[SECRET, PASSWORD], &args);
    let (status, body) = login(&s.addr, "admin", PASSWORD.1);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let (status, body) = post_node(&s.addr, &token, "checkout-1");
    assert_eq!(status, 200, "{body}");
    let id = id_of(&body);
    s.stop();

    // A second server on the same database (DATABASE_URL this time) sees it all:
    // the node, the administrator, the token's user.
    let s = start(
        dir.path(),
        &[SECRET, PASSWORD, ("DATABASE_URL", url.as_str())],
        &["--backend", "postgres"],
    );
    let (status, body) = http(&s.addr, "GET", &format!("/latest/node/{id}"), &[], "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("checkout-1"), "{body}");
    let (status, body) = http(&s.addr, "GET", "/latest/count?kind=checkout", &[], "");
    assert_eq!((status, body.trim()), (200, "1"));
    let auth = format!("Bearer {token}");
    let (status, _) = http(
        &s.addr,
        "GET",
        "/latest/whoami",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200);
    s.stop();
}

/// Runs `serve` expecting it to exit by itself; returns (exit success, stderr, how
/// long it took).
fn serve_expecting_exit(env: &[(&str, &str)], args: &[&str]) -> (bool, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = command(dir.path());
    c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let began = Instant::now();
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        began.elapsed(),
    )
}

#[test]
fn an_unreachable_database_is_a_clear_error_at_start() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://kci@127.0.0.1:{port}/kernelci");
    let (ok, stderr, took) = serve_expecting_exit(
        &[SECRET],
        &["--backend", "postgres", "--database-url", &url],
    );
    assert!(!ok);
    assert!(
        stderr.contains("cannot open the PostgreSQL database"),
        "{stderr}"
    );
    // Refused at once, not after the 10 s connection timeout.
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[test]
fn the_postgres_backend_without_a_url_is_a_configuration_error() {
    let (ok, stderr, _) = serve_expecting_exit(&[SECRET], &["--backend", "postgres"]);
    assert!(!ok);
    assert!(stderr.contains("database_url"), "{stderr}");
}

#[test]
fn a_database_outage_is_503_and_the_server_recovers_by_itself() {
    let Some(cluster) = TestCluster::start() else {
        return;
    };
    let url = cluster.create_database();
    let dir = tempfile::tempdir().unwrap();
    let s = start(
        dir.path(),
        &[SECRET, PASSWORD],
        &["--backend", "postgres", "--database-url", url.as_str()],
    );
    let (status, body) = login(&s.addr, "admin", PASSWORD.1);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    assert_eq!(post_node(&s.addr, &token, "before").0, 200);
    assert_eq!(http(&s.addr, "GET", "/ready", &[], "").0, 200);

    cluster.stop();
    // Readiness follows the database; liveness does not (no restart for an outage).
    let (status, body) = http(&s.addr, "GET", "/ready", &[], "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"detail\""), "{body}");
    let (status, body) = http(&s.addr, "GET", "/health", &[], "");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"ok","service":"KernelCI API"}"#)
    );
    let (status, body) = http(&s.addr, "GET", "/latest/nodes?kind=checkout", &[], "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"detail\""), "{body}");
    let (status, body) = post_node(&s.addr, &token, "during");
    assert_eq!(status, 503, "{body}");

    cluster.restart();
    // Pooled connections to the old server are dropped and new ones made: within a
    // few attempts the same server answers again, without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http(&s.addr, "GET", "/latest/count?kind=checkout", &[], "");
        if status == 200 {
            assert_eq!(
                body.trim(),
                "1",
                "the write refused during the outage is not there"
            );
            assert_eq!(http(&s.addr, "GET", "/ready", &[], "").0, 200);
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "no recovery within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(post_node(&s.addr, &token, "after").0, 200);
    s.stop();
}
