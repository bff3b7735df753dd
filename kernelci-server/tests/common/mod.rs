//! Test support for the binary: start `kernelci-server serve` as a child process,
//! read where it listens, speak HTTP/1.1 to it over real sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_kernelci-server");

/// The binary in `dir`, with an environment of its own: none of the variables
/// of the test's environment (any of them may be a setting: `SECRET_KEY`,
/// `KCI_*`, `SMTP_*`...), but `PATH`, `HOME` and `TMPDIR`.
pub fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear();
    for var in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(var) {
            c.env(var, v);
        }
    }
    c.env("RUST_LOG", "warn").current_dir(dir);
    c
}

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub password: Option<String>,
    _out: BufReader<ChildStdout>,
}

pub fn start(dir: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Server {
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
    pub fn stop(mut self) {
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

impl Drop for Server {
    /// A test that fails leaves no server behind (a no-op after `stop`).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
pub fn http(
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

pub fn login(addr: &str, user: &str, password: &str) -> (u16, String) {
    let form = format!("username={user}&password={password}");
    http(
        addr,
        "POST",
        "/latest/user/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &form,
    )
}

pub fn token_of(body: &str) -> String {
    let start = body.find("\"access_token\":\"").unwrap() + 16;
    body[start..].split('"').next().unwrap().to_owned()
}
