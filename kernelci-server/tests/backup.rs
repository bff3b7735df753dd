//! Online backups as an operator takes them: `kernelci-server backup` copies a
//! running server while clients keep writing; every write acknowledged before the
//! backup started is in the store `restore` rebuilds from it, and a server on that
//! store serves it (the administrator logs in). `verify` finds a changed byte, a
//! cut file and a file of another kind; `restore` refuses them, and a store that
//! is not empty.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{command, http, login, start, token_of};

const SECRET: (&str, &str) = ("SECRET_KEY", "backup-test-secret");
const PASSWORD: (&str, &str) = ("KCI_INITIAL_PASSWORD", "backup-admin-password");

fn post_node(addr: &str, token: &str, name: &str) -> Option<String> {
    let auth = format!("Bearer {token}");
    let body = format!(
        r#"{{"kind":"checkout","name":"{name}","path":["{name}"],"data":{{"kernel_revision":{{"tree":"t","branch":"b","commit":"c","url":"https://git.kernel.org/x.git"}}}}}}"#
    );
    let (status, body) = http(
        addr,
        "POST",
        "/latest/node",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    (status == 200).then(|| {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["id"].as_str().unwrap().to_owned()
    })
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut c = command(dir);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_online_backup_holds_every_write_acknowledged_before_it_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[SECRET, PASSWORD], &[]);
    let (status, body) = login(&s.addr, "admin", PASSWORD.1);
    assert_eq!(status, 200, "{body}");
    let token = token_of(&body);
    let mut before: Vec<String> = (0..300)
        .map(|i| post_node(&s.addr, &token, &format!("before-{i}")).unwrap())
        .collect();
    // Writers keep going during the backup.
    let stop = Arc::new(AtomicBool::new(false));
    let during = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (addr, token, stop, during) =
                (s.addr.clone(), token.clone(), stop.clone(), during.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(id) = post_node(&addr, &token, &format!("during-{w}-{i}")) {
                        during.lock().unwrap().push(id);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Everything acknowledged so far must be in the backup.
    before.extend(during.lock().unwrap().iter().cloned());
    let file = dir.path().join("kci.backup");
    let url = format!("http://{}", s.addr);
    let (ok, out, err) = run(
        dir.path(),
        &["backup", "--url", &url, "--out", file.to_str().unwrap()],
        &[("KCI_TOKEN", &token)],
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("records"), "{out}");
    assert!(!Path::new(&format!("{}.partial", file.display())).exists());
    s.stop();

    let (ok, out, err) = run(dir.path(), &["verify", file.to_str().unwrap()], &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("a complete backup (format version 1"), "{out}");

    let restored = dir.path().join("restored");
    let (ok, out, err) = run(
        dir.path(),
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{out}\n{err}");
    // Into a store that is not empty: refused.
    let (ok, _, err) = run(
        dir.path(),
        &[
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("restore into an empty store"), "{err}");

    let r = tempfile::tempdir().unwrap();
    std::fs::rename(&restored, r.path().join("data")).unwrap();
    let s = start(r.path(), &[SECRET], &[]);
    for id in &before {
        let (status, body) = http(&s.addr, "GET", &format!("/latest/node/{id}"), &[], "");
        assert_eq!(
            status, 200,
            "node {id} acknowledged before the backup is missing: {body}"
        );
    }
    let (status, body) = login(&s.addr, "admin", PASSWORD.1);
    assert_eq!(status, 200, "{body}");
    s.stop();
}

#[test]
fn damaged_backups_are_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[SECRET, PASSWORD], &[]);
    let token = token_of(&login(&s.addr, "admin", PASSWORD.1).1);
    for i in 0..20 {
        post_node(&s.addr, &token, &format!("n{i}")).unwrap();
    }
    let file = dir.path().join("kci.backup");
    let url = format!("http://{}", s.addr);
    let (ok, out, err) = run(
        dir.path(),
        &["backup", "--url", &url, "--out", file.to_str().unwrap()],
        &[("KCI_TOKEN", &token)],
    );
    assert!(ok, "{out}\n{err}");
    // Not an administrator: refused by the server.
    let auth = format!("Bearer {token}");
    let (status, bob) = http(
        &s.addr,
        "POST",
        "/latest/user/invite",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"username":"bob","email":"bob@example.org","send_email":false,"return_token":true}"#,
    );
    assert_eq!(status, 200, "{bob}");
    let invite: serde_json::Value = serde_json::from_str(&bob).unwrap();
    let invite_token = invite["token"].as_str().unwrap_or_default().to_owned();
    let (status, body) = http(
        &s.addr,
        "POST",
        "/latest/user/accept-invite",
        &[("Content-Type", "application/json")],
        &format!(r#"{{"token":"{invite_token}","password":"bob-password"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let bob_token = token_of(&login(&s.addr, "bob", "bob-password").1);
    let (ok, _, err) = run(
        dir.path(),
        &[
            "backup",
            "--url",
            &url,
            "--out",
            dir.path().join("b2").to_str().unwrap(),
        ],
        &[("KCI_TOKEN", &bob_token)],
    );
    assert!(!ok);
    assert!(err.contains("403"), "{err}");
    s.stop();

    let text = std::fs::read_to_string(&file).unwrap();
    let verify = |content: &str| {
        let f = dir.path().join("damaged.backup");
        std::fs::write(&f, content).unwrap();
        let (ok, _, err) = run(dir.path(), &["verify", f.to_str().unwrap()], &[]);
        assert!(!ok, "a damaged backup passed verify");
        let restored = dir.path().join("restored");
        let (ok, _, rerr) = run(
            dir.path(),
            &[
                "restore",
                f.to_str().unwrap(),
                "--data-dir",
                restored.to_str().unwrap(),
            ],
            &[],
        );
        assert!(!ok, "a damaged backup was restored");
        let _ = std::fs::remove_dir_all(&restored);
        assert_eq!(err.lines().last(), rerr.lines().last());
        err
    };
    // One changed character in a record.
    let changed = text.replacen("\"n1", "\"m1", 1);
    assert!(verify(&changed).contains("checksum mismatch"));
    // The last line lost.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    assert!(verify(&(lines.join("\n") + "\n")).contains("cut short"));
    // Not a backup at all.
    assert!(verify("{\"hello\": 1}\n").contains("not a kernelci-server backup"));
    // A newer format.
    let newer = text.replacen("\"version\":1", "\"version\":99", 1);
    assert!(verify(&newer).contains("newer than this server reads"));
}

/// `verify` (without a file) and `rebuild-indexes` on a stopped data directory;
/// refused while a server holds it.
#[test]
fn the_store_of_a_stopped_server_is_verified_and_its_indexes_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let s = start(dir.path(), &[SECRET, PASSWORD], &[]);
    let token = token_of(&login(&s.addr, "admin", PASSWORD.1).1);
    for i in 0..30 {
        post_node(&s.addr, &token, &format!("n{i}")).unwrap();
    }
    let (ok, _, err) = run(dir.path(), &["verify", "--data-dir", data], &[]);
    assert!(!ok);
    assert!(err.contains("in use"), "{err}");
    s.stop();
    let (ok, out, err) = run(dir.path(), &["verify", "--data-dir", data], &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("30 nodes") && out.contains("the store is consistent"),
        "{out}"
    );
    let (ok, out, err) = run(dir.path(), &["rebuild-indexes", "--data-dir", data], &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("indexes rebuilt: 30 nodes"), "{out}");
    let (ok, _, err) = run(
        dir.path(),
        &[
            "verify",
            "--data-dir",
            dir.path().join("nothing").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("no sled store there"), "{err}");
}
