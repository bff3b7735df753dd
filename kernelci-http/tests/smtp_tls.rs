//! E-mail over TLS against a real SMTP server: aiosmtpd (PyPI) with a self-signed
//! certificate made by `openssl`, on loopback (`tests/smtp/server.py`).
//!
//! The server runs from the venv `scripts/test-tools.sh` makes
//! (`target/test-tools-venv`; `KCI_TEST_PYTHON` names another interpreter). When
//! the venv or `openssl` is missing the tests say so and pass, unless
//! `KCI_REQUIRE_SMTP=1` (set by `.ci/run`) makes that a failure.
//!
//! Covered: STARTTLS and implicit TLS deliveries with a login, the certificate
//! verified (an untrusted certificate, a host name the certificate does not name),
//! no fallback to clear text when STARTTLS is not offered, a refused login, and the
//! invitation flow over HTTP with the token read from the delivered message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fake_smtp;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{Backend, TestServer, SECRET};
use kernelci_http::mail::{Email, MailError, Mailer};
use kernelci_http::{HttpConfig, SmtpConfig, SmtpTls};

const LOGIN: &str = "kernelci@example.org";
const PASSWORD: &str = "smtp-secret";

/// A running aiosmtpd with its three listeners.
struct SmtpServer {
    child: Child,
    _stdin: ChildStdin,
    dir: tempfile::TempDir,
    starttls: u16,
    tls: u16,
    plain: u16,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The interpreter with aiosmtpd, if there is one.
fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KCI_TEST_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("test-tools-venv/bin/python");
    p.exists().then_some(p)
}

fn unavailable(why: &str) -> Option<SmtpServer> {
    if std::env::var("KCI_REQUIRE_SMTP").as_deref() == Ok("1") {
        panic!("SMTP test server unavailable: {why} (run scripts/test-tools.sh)");
    }
    eprintln!("skipped: SMTP test server unavailable: {why} (run scripts/test-tools.sh)");
    None
}

/// A self-signed certificate for `localhost` (only that name: connecting by IP
/// address must fail verification).
fn make_certificate(dir: &Path) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl SmtpServer {
    fn start() -> Option<SmtpServer> {
        let Some(python) = python() else {
            return unavailable("no target/test-tools-venv");
        };
        let dir = tempfile::tempdir().unwrap();
        if !make_certificate(dir.path()) {
            return unavailable("openssl could not make a certificate");
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg(dir.path().join("cert.pem"))
            .arg(dir.path().join("key.pem"))
            .args([LOGIN, PASSWORD])
            .arg(dir.path().join("received.jsonl"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("server.py did not start ({e}): {line:?}"));
        let port = |name: &str| u16::try_from(ports[name].as_u64().unwrap()).unwrap();
        Some(SmtpServer {
            starttls: port("starttls"),
            tls: port("tls"),
            plain: port("plain"),
            child,
            _stdin: stdin,
            dir,
        })
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// Settings for `port` in `tls` mode, trusting the server's certificate.
    fn config(&self, port: u16, tls: SmtpTls) -> SmtpConfig {
        SmtpConfig {
            tls,
            ca_file: Some(self.cert()),
            timeout_seconds: 10,
            ..SmtpConfig::new("localhost", port, LOGIN, PASSWORD)
        }
    }

    /// The messages received so far.
    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("received.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (up to 10 s) until `n` messages have been received; returns them.
    fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn email(subject: &str) -> Email {
    Email {
        to: "dana@example.org".into(),
        subject: subject.into(),
        body: "Hello over TLS.\n.a line with a dot\n".into(),
    }
}

async fn send(cfg: SmtpConfig, subject: &str) -> Result<(), MailError> {
    Mailer::new(Some(cfg)).unwrap().send(&email(subject)).await
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_with_a_login() {
    let Some(server) = SmtpServer::start() else {
        return;
    };
    send(server.config(server.starttls, SmtpTls::Starttls), "one")
        .await
        .unwrap();
    send(server.config(server.tls, SmtpTls::Tls), "two")
        .await
        .unwrap();
    let got = server.wait_for(2);
    assert_eq!(got.len(), 2, "{got:?}");
    for (m, listener, subject) in [(&got[0], "starttls", "one"), (&got[1], "tls", "two")] {
        assert_eq!(m["listener"], listener);
        assert_eq!(m["encrypted"], true, "{m}");
        assert_eq!(m["login"], LOGIN);
        assert_eq!(m["from"], LOGIN);
        assert_eq!(m["to"], json!(["dana@example.org"]));
        let data = m["data"].as_str().unwrap();
        assert!(data.contains(&format!("Subject: {subject}\r\n")), "{data}");
        assert!(data.contains("\r\nMessage-ID: <"), "{data:?}");
        assert!(
            data.contains("\r\n\r\nHello over TLS.\r\n.a line with a dot\r\n"),
            "{data:?}"
        );
    }
}

#[tokio::test]
async fn the_certificate_is_verified_and_clear_text_is_never_a_fallback() {
    let Some(server) = SmtpServer::start() else {
        return;
    };
    // Not trusted: the self-signed certificate is not among the system's roots.
    for (port, tls) in [
        (server.starttls, SmtpTls::Starttls),
        (server.tls, SmtpTls::Tls),
    ] {
        let cfg = SmtpConfig {
            ca_file: None,
            ..server.config(port, tls)
        };
        let e = send(cfg, "untrusted").await.unwrap_err();
        assert!(matches!(e, MailError::Smtp(_)), "{tls:?}: {e}");
        assert!(
            e.to_string().contains("invalid peer certificate"),
            "{tls:?}: {e}"
        );
        // Trusted, but the certificate does not name 127.0.0.1.
        let cfg = SmtpConfig {
            host: "127.0.0.1".into(),
            ..server.config(port, tls)
        };
        let e = send(cfg, "wrong name").await.unwrap_err();
        assert!(
            e.to_string().contains("certificate not valid for name"),
            "{tls:?}: {e}"
        );
    }
    // STARTTLS required, and the server does not offer it: nothing is sent (no
    // password, so that only the missing TLS can stop the delivery).
    let no_login = |tls| SmtpConfig {
        password: String::new(),
        ..server.config(server.plain, tls)
    };
    let e = send(no_login(SmtpTls::Starttls), "downgrade")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("STARTTLS is not supported"), "{e}");
    // Implicit TLS against a clear-text server.
    let e = send(no_login(SmtpTls::Tls), "no tls").await.unwrap_err();
    assert!(e.to_string().contains("corrupt message"), "{e}");
    // A wrong password over a good channel.
    let cfg = SmtpConfig {
        password: "wrong".into(),
        ..server.config(server.starttls, SmtpTls::Starttls)
    };
    let e = send(cfg, "bad login").await.unwrap_err();
    assert!(
        matches!(e, MailError::Smtp(ref s) if s.is_permanent()),
        "{e}"
    );
    // Then a good delivery, and it is the only message the server got.
    send(server.config(server.starttls, SmtpTls::Starttls), "good")
        .await
        .unwrap();
    let got = server.wait_for(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0]["data"]
        .as_str()
        .unwrap()
        .contains("Subject: good\r\n"));
}

/// Over HTTP (sled: the store is not what is tested here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_delivered_over_starttls_and_accepted() {
    Backend::Sled.run(invitation_flow()).await;
}

async fn invitation_flow() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let s = TestServer::start_with(HttpConfig {
        smtp: Some(smtp.config(smtp.starttls, SmtpTls::Starttls)),
        ..HttpConfig::for_tests(SECRET)
    })
    .await;
    let admin = s.user("admin", true, true, &[]).await.1;
    let r = s
        .post(
            "/latest/user/invite",
            Some(&admin),
            &json!({"username": "erin", "email": "erin@example.org", "send_email": true}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(r.json()["email_sent"], true, "{}", r.text());
    let got = smtp.wait_for(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["to"], json!(["erin@example.org"]));
    assert_eq!(got[0]["encrypted"], true);
    let data = fake_smtp::decoded_body(got[0]["data"].as_str().unwrap());
    let token = data
        .split("?token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or_else(|| panic!("no invite link in {data}"));
    let r = s
        .post(
            "/latest/user/accept-invite",
            None,
            &json!({"token": token, "password": "erin-password"}),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    let r = s
        .post_form(
            "/latest/user/login",
            None,
            &[("username", "erin"), ("password", "erin-password")],
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    // Both messages (the invitation, the welcome) are counted as sent.
    assert_eq!(smtp.wait_for(2).len(), 2);
    let metrics = s.get("/metrics", None).await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l == "kci_emails_total{result=\"sent\"} 2"),
        "{metrics}"
    );
    s.stop().await;
}
