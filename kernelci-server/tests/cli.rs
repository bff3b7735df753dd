//! The binary as a newcomer uses it: `serve --dev` prints where it listens and how
//! to log in, the login works, SIGTERM stops it cleanly, a restart keeps the data and
//! the development credentials; `serve` without a secret refuses to start; `admin
//! create` makes a superuser in an offline store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_kernelci-server");

fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    for var in [
        "SECRET_KEY",
        "KCI_INITIAL_PASSWORD",
        "KCI_LISTEN",
        "KCI_DATA_DIR",
        "KCI_BACKEND",
    ] {
        c.env_remove(var);
    }
    c.env("RUST_LOG", "warn").current_dir(dir);
    c
}

struct Server {
    child: Child,
    addr: String,
    password: Option<String>,
    _out: BufReader<ChildStdout>,
}

fn start(dir: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut c = command(dir);
    c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in extra_env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut password = None;
    let mut line = String::new();
    // The address line, then (in dev mode) the login hint.
    while out.read_line(&mut line).unwrap() > 0 {
        if let Some(a) = line
            .trim()
            .strip_prefix("kernelci-server listening on http://")
        {
            addr = Some(a.to_owned());
            if !args.contains(&"--dev") {
                break;
            }
        }
        if let Some(i) = line.find("password=") {
            let rest = &line[i + "password=".len()..];
            password = Some(rest.split_whitespace().next().unwrap().to_owned());
            break;
        }
        line.clear();
    }
    Server {
        child,
        addr: addr.expect("the server printed its address"),
        password,
        _out: out,
    }
}

impl Server {
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        // A clean exit (graceful shutdown, store closed).
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

fn login(addr: &str, user: &str, password: &str) -> (u16, String) {
    let form = format!("username={user}&password={password}");
    http(
        addr,
        "POST",
        "/latest/user/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
}

fn token_of(body: &str) -> String {
    let start = body.find("\"access_token\":\"").unwrap() + 16;
    body[start..].split('"').next().unwrap().to_owned()
}

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
