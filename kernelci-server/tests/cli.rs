//! The binary as a newcomer uses it: `serve --dev` prints where it listens and how
//! to log in, the login works, SIGTERM stops it cleanly, a restart keeps the data and
//! the development credentials; `serve` without a secret refuses to start; `admin
//! create` makes a superuser in an offline store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{command, http, login, start, token_of};

#[test]
fn dev_mode_serves_logs_in_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[], &["--dev"]);
    let password = s.password.clone().expect("a login hint");
    let (status, body) = http(&s.addr, "GET", "/latest/", &[], "");
    assert_eq!(
        (status, body.as_str()),
        (200, "{\"message\":\"KernelCI API\"}")
    );
    let (status, body) = login(&s.addr, "admin", &password);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let auth = format!("Bearer {token}");
    let node = r#"{"kind":"checkout","name":"c","path":["c"]}"#;
    let (status, body) = http(
        &s.addr,
        "POST",
        "/latest/node",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        node,
    );
    assert_eq!(status, 200, "{body}");
    s.stop();

    // Same data dir: same development secret (the token still works), same node.
    let s = start(dir.path(), &[], &["--dev"]);
    assert_eq!(s.password.as_deref(), Some(password.as_str()));
    let (status, body) = http(
        &s.addr,
        "GET",
        "/latest/whoami",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"username\":\"admin\""));
    let (_, body) = http(&s.addr, "GET", "/latest/count?kind=checkout", &[], "");
    assert_eq!(body, "1");
    s.stop();
}

#[test]
fn serve_without_a_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SECRET_KEY"), "{err}");
    assert!(err.contains("--dev"), "{err}");
}

#[test]
fn admin_create_then_login() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let create = |name: &str, email: &str| {
        let mut child = command(dir.path())
            .args([
                "admin",
                "create",
                "--username",
                name,
                "--email",
                email,
                "--data-dir",
            ])
            .arg(&data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"s3cret pw\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = create("root", "root@example.org");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = create("root", "other@example.org");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    let s = start(dir.path(), &[("SECRET_KEY", "k-for-the-test")], &[]);
    let (status, body) = login(&s.addr, "root", "s3cret%20pw");
    assert_eq!(status, 200, "{body}");
    let auth = format!("Bearer {}", token_of(&body));
    let (status, body) = http(
        &s.addr,
        "GET",
        "/latest/whoami",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200);
    assert!(body.contains("\"is_superuser\":true"), "{body}");
    s.stop();
}

/// `KEEP_ALIVE_PERIOD=0` (kernelci-api's test set-up uses it) starts the server with
/// keep-alives off: a listen answers with the next real message, however long after
/// the keep-alive period it comes, and never with a BEEP.
#[test]
fn keep_alive_period_0_turns_keep_alives_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[("KEEP_ALIVE_PERIOD", "0")], &["--dev"]);
    let password = s.password.clone().expect("a login hint");
    let (status, body) = login(&s.addr, "admin", &password);
    assert_eq!(status, 200, "{body}");
    let auth = format!("Bearer {}", token_of(&body));
    let (status, body) = http(
        &s.addr,
        "POST",
        "/latest/subscribe/x",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let id = body
        .split("\"id\":")
        .nth(1)
        .and_then(|r| r.split([',', '}']).next())
        .unwrap()
        .trim()
        .to_owned();
    let addr = s.addr.clone();
    let listen_auth = auth.clone();
    let listen = std::thread::spawn(move || {
        http(
            &addr,
            "GET",
            &format!("/latest/listen/{id}"),
            &[("Authorization", &listen_auth)],
            "",
        )
    });
    // (It refused to start before.) A listen with nothing to deliver waits.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!listen.is_finished(), "the listen answered with no message");
    let (status, body) = http(
        &s.addr,
        "POST",
        "/latest/publish/x",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"data": {"hello": "world"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = listen.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello") && !body.contains("BEEP"), "{body}");
    s.stop();
}
