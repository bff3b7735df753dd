//! The binary as a newcomer uses it: `serve --dev` prints where it listens and how
//! to log in, the login works, SIGTERM stops it cleanly, a restart keeps the data and
//! the development credentials; `serve` without a secret refuses to start; `admin
//! create` makes a superuser in an offline store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

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
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
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
    assert_eq!(again.status.code(), Some(1), "a runtime failure");
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

/// VmRSS of process `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024
}

/// Large telemetry inserts leave the server's memory bounded: 150,000 events in
/// three requests (24 MB of JSON) took the server to over a gigabyte of RSS, kept
/// after the requests (sled kept every tree node a batch replaced until later
/// requests moved its epoch on, and glibc's malloc kept what was freed). What is
/// freed goes back to the system within jemalloc's decay (10 s) also when no
/// request follows: RSS is read until it is under the bound, for 30 s at most.
#[test]
fn large_telemetry_inserts_leave_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[], &["--dev"]);
    let password = s.password.clone().expect("a login hint");
    let (_, body) = login(&s.addr, "admin", &password);
    let auth = format!("Bearer {}", token_of(&body));
    let before = rss_mib(s.child.id());
    let mut n = 0;
    for _ in 0..3 {
        let events: Vec<String> = (0..50_000)
            .map(|_| {
                n += 1;
                format!(
                    r#"{{"kind":"job_result","runtime":"lava-a","device_type":"x","lab":"l","result":"pass","job_name":"job{n}","device_id":"dev{}"}}"#,
                    n % 100
                )
            })
            .collect();
        let (status, body) = http(
            &s.addr,
            "POST",
            "/latest/telemetry",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            &format!("[{}]", events.join(",")),
        );
        assert_eq!(status, 200, "{body}");
    }
    let peak = rss_mib(s.child.id());
    // Generous: the events take about 40 MB as stored, sled's cache is 256 MiB;
    // 315-324 MiB right after the requests, and about 95 MiB over the start
    // once the freed pages are purged (2 CPUs; the start grows with the CPUs).
    assert!(
        peak < 450,
        "server RSS {peak} MiB right after 150,000 events"
    );
    let bound = before + 180;
    let waited = std::time::Instant::now();
    let mut after = peak;
    while after >= bound && waited.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(250));
        after = rss_mib(s.child.id());
    }
    eprintln!(
        "server RSS: {before} MiB before, {peak} MiB after 150,000 events, \
         {after} MiB {:.1} s later",
        waited.elapsed().as_secs_f64()
    );
    assert!(after < bound, "server RSS {after} MiB after 150,000 events");
    s.stop();
}

/// `config check`: every setting as resolved, secrets masked (also when read from
/// `SECRET_KEY_FILE`); exit status 0 for a configuration `serve` accepts, 78 for one
/// it refuses, 2 for a usage error.
#[test]
fn config_check_prints_the_resolved_settings_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "from-a-file-not-to-be-printed\n").unwrap();
    let file = dir.path().join("kci.toml");
    std::fs::write(&file, "max_connections = 77\nkeep_alive_period = 5\n").unwrap();
    let out = command(dir.path())
        .args(["config", "check", "--listen", "0.0.0.0:9999", "--config"])
        .arg(&file)
        .env("SECRET_KEY_FILE", &secret)
        .env("KCI_MAX_BODY_BYTES", "1234")
        .env("DATABASE_URL", "postgres://kci:db-password@db.example/kci")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "listen = 0.0.0.0:9999",
        "secret_key = **** (set)",
        "max_connections = 77",
        "keep_alive_period = 5",
        "max_body_bytes = 1234",
        "database_url = postgres://kci:****@db.example/kci",
        "email_password = (not set)",
        "configuration OK",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(
        !text.contains("from-a-file") && !text.contains("db-password"),
        "{text}"
    );
    // A configuration `serve` refuses: 78.
    let out = command(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SECRET_KEY"));
    let out = command(dir.path())
        .args(["config", "check"])
        .env("SECRET_KEY_FILE", dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("secret_key_file"));
    // A usage error: clap's 2.
    let out = command(dir.path())
        .args(["config", "check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // Every setting is an option; the option beats the variable, which beats
    // the file; a bad value is a configuration error wherever it comes from.
    let out = command(dir.path())
        .args(["config", "check", "--config"])
        .arg(&file)
        .args(["--max-connections", "88", "--sled-cache-mb", "64"])
        .args(["--smtp-host", "mail.example.org", "--smtp-port", "465"])
        .args(["--email-sender", "kci@example.org"])
        .env("SECRET_KEY", "k")
        .env("KCI_MAX_CONNECTIONS", "99")
        .env("KCI_HOUSEKEEPING_PERIOD_SECONDS", "120")
        .env("KEEP_ALIVE_PERIOD", "7")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "max_connections = 88",
        "housekeeping_period_seconds = 120",
        "sled_cache_mb = 64",
        "smtp_tls = tls",
        "keep_alive_period = 7",
        "body_timeout_seconds = 20",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    let out = command(dir.path())
        .args(["config", "check", "--password-iterations", "three"])
        .env("SECRET_KEY", "k")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password_iterations"));
    // E-mail settings that cannot work are configuration errors too: a password in
    // clear text over the network, no sender.
    for (args, reason) in [
        (
            &["--smtp-host", "mail.example.org", "--smtp-tls", "none"][..],
            "clear text",
        ),
        (&["--smtp-host", "mail.example.org"][..], "EMAIL_SENDER"),
    ] {
        let out = command(dir.path())
            .args(["config", "check", "--email-sender"])
            .arg(if reason == "EMAIL_SENDER" {
                ""
            } else {
                "kci@example.org"
            })
            .args(args)
            .env("SECRET_KEY", "k")
            .env("EMAIL_PASSWORD", "pw")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(err.contains(reason), "{err}");
    }
    // A secret given directly wins over one read from a file; an empty one is
    // not given.
    let out = command(dir.path())
        .args(["config", "check", "--secret-key-file"])
        .arg(&secret)
        .env("KCI_SECRET_KEY", "")
        .env("SECRET_KEY", "")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // --help names each setting's variable (secret values never shown).
    let out = command(dir.path())
        .args(["serve", "--help"])
        .env("SECRET_KEY", "do-not-show")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for text in [
        "--secret-key <KEY>",
        "[env: SECRET_KEY]",
        "--secret-key-file <FILE>",
        "[env: SECRET_KEY_FILE=]",
        "--node-purge-age-days <DAYS>",
        "[env: NODE_PURGE_AGE_DAYS=]",
        "[default: 180]",
        "[env: KCI_MAX_INFLIGHT_REQUESTS=]",
    ] {
        assert!(help.contains(text), "no {text:?} in\n{help}");
    }
    assert!(!help.contains("do-not-show"));
}

/// `--log-format json`: one JSON object per line, and each request's line has the
/// method, route, status, request id and client address.
#[test]
fn json_logs_carry_the_request_id_and_the_client() {
    use std::io::{BufRead, BufReader, Read};
    let dir = tempfile::tempdir().unwrap();
    let mut child = command(dir.path())
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("SECRET_KEY", "log-test-secret")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "no address line");
        if let Some(a) = line
            .trim()
            .strip_prefix("kernelci-server listening on http://")
        {
            break a.to_owned();
        }
    };
    let (status, _) = http(
        &addr,
        "GET",
        "/latest/count",
        &[("X-Request-Id", "req-42")],
        "",
    );
    assert_eq!(status, 200);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let request = lines
        .iter()
        .find(|l| l["message"] == "request")
        .unwrap_or_else(|| panic!("no request line in {err}"));
    assert_eq!(request["request_id"], "req-42", "{request}");
    assert_eq!(request["client"], "127.0.0.1", "{request}");
    assert_eq!(request["route"], "/count", "{request}");
    assert_eq!(request["status"], 200, "{request}");
    assert_eq!(request["level"], "INFO", "{request}");
}

/// The sample configuration (`deploy/kernelci.toml`) names every setting with its
/// real default: with every line uncommented, `config check` accepts it and
/// resolves each setting to the value the file shows.
#[test]
fn the_sample_configuration_names_every_setting_with_its_default() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kernelci.toml"),
    )
    .unwrap();
    let mut file = String::new();
    let mut shown = Vec::new();
    for line in sample.lines() {
        let Some(setting) = line.strip_prefix("# ").filter(|l| {
            l.split_once(" = ")
                .is_some_and(|(k, _)| k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        }) else {
            continue;
        };
        let setting = setting.split(" #").next().unwrap().trim();
        let (name, value) = setting.split_once(" = ").unwrap();
        if name != "secret_key" {
            file.push_str(setting);
            file.push('\n');
        }
        shown.push((name.to_owned(), value.trim_matches('"').to_owned()));
    }
    let path = dir.path().join("all.toml");
    std::fs::write(&path, &file).unwrap();
    let out = command(dir.path())
        .args(["config", "check", "--config"])
        .arg(&path)
        .env("SECRET_KEY", "sample-test")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolved: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for (name, value) in &resolved {
        let in_sample = shown.iter().find(|(k, _)| k == name);
        let Some((_, sample_value)) = in_sample else {
            panic!("{name} is not in deploy/kernelci.toml");
        };
        let expected = if sample_value.is_empty() {
            ["(not set)", ""].contains(&value.as_str()) || value.starts_with("****")
        } else {
            value == sample_value
        };
        assert!(
            expected,
            "{name}: the sample says {sample_value:?}, the default is {value:?}"
        );
    }
}

/// A SIGTERM sent the moment the server says it listens stops it gracefully
/// (exit status 0, the store closed), never by the signal's default action: the
/// handlers are installed before that line is printed.
#[test]
fn sigterm_right_after_start_is_a_graceful_stop() {
    use std::io::{BufRead, BufReader};
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = command(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("SECRET_KEY", "signal-test-secret")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "no address line");
            if line.starts_with("kernelci-server listening on") {
                break;
            }
        }
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
}
