//! Crash safety: a child process writes nodes (inserts, state updates, events) and
//! prints each write once the store acknowledged it; the parent kills it with SIGKILL
//! at a random moment, reopens the store, and checks that every acknowledged write is
//! present and intact and that `verify()` is clean. Twenty iterations on one
//! directory, so later iterations also recover from earlier crashes.
//!
//! The child is this same test binary, re-executed with `KERNELCI_CRASH_CHILD` set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kernelci_core::id::ObjectId;
use kernelci_core::node::{Node, State};
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_store::{SledConfig, SledStore};

const CHILD_ENV: &str = "KERNELCI_CRASH_CHILD";
const ITERATIONS: u64 = 20;

/// The writer: runs until killed.
async fn child(dir: &str) {
    let store = SledStore::open(std::path::Path::new(dir), SledConfig::default()).unwrap();
    let mut out = std::io::stdout();
    let mut mine: Vec<ObjectId> = Vec::new();
    // Enough nodes for a packing dictionary (codec::packed): the next openings
    // train one and store it while being killed at random moments.
    let filled = store.count_all_nodes().await.unwrap();
    if filled < 2_500 {
        for chunk in 0..(2_500 - filled).div_ceil(500) {
            let filler: Vec<Node> = (0..500)
                .map(|j| {
                    let mut n = Node::new("test", &format!("filler-{chunk}-{j}"), Timestamp::now());
                    n.data = serde_json::json!({"arch": "x86_64", "platform": format!("board-{}", j % 9)})
                        .as_object()
                        .cloned();
                    n
                })
                .collect();
            store.insert_nodes(&filler).await.unwrap();
        }
    }
    for i in 0u64.. {
        match i % 4 {
            0 | 1 => {
                let mut n = Node::new("test", &format!("test-{i}"), Timestamp::now());
                n.data = serde_json::json!({"i": i, "arch": "x86_64"})
                    .as_object()
                    .cloned();
                n.truncate_times();
                store.insert_node(&n).await.unwrap();
                mine.push(n.id);
                writeln!(out, "node {}", serde_json::to_string(&n).unwrap()).unwrap();
            }
            2 => {
                let Some(id) = mine.last().copied() else {
                    continue;
                };
                let v = store.get_node(id).await.unwrap().unwrap();
                let mut n = v.value;
                n.state = State::Done;
                let version = store.replace_node(&n, v.version).await.unwrap();
                writeln!(
                    out,
                    "update {} {}",
                    version.0,
                    serde_json::to_string(&n).unwrap()
                )
                .unwrap();
            }
            _ => {
                let e = kernelci_core::events::NewEvent {
                    id: ObjectId::new(),
                    timestamp: Timestamp::now().truncate_to_millis(),
                    channel: "node".into(),
                    owner: None,
                    data: serde_json::json!({"i": i}),
                };
                let e = store.append_event(e).await.unwrap();
                writeln!(out, "event {}", e.sequence_id).unwrap();
            }
        }
        out.flush().unwrap();
    }
}

/// A small deterministic-enough random source (no extra crate).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(child(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut seed = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id()) | 1;
    // Last acknowledged state of every node, and the highest acknowledged event.
    let mut nodes: HashMap<ObjectId, (u64, Node)> = HashMap::new();
    let mut last_event = 0u64;
    let mut total_acks = 0;
    let mut packed_openings = 0u64;
    for iteration in 0..ITERATIONS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "acknowledged_writes_survive_sigkill",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<String>>()
        });
        std::thread::sleep(Duration::from_millis(150 + next_random(&mut seed) % 350));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        for line in &lines {
            let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
            match kind {
                "node" => {
                    let n: Node = serde_json::from_str(rest).unwrap();
                    nodes.insert(n.id, (1, n));
                }
                "update" => {
                    let (v, json) = rest.split_once(' ').unwrap();
                    let n: Node = serde_json::from_str(json).unwrap();
                    nodes.insert(n.id, (v.parse().unwrap(), n));
                }
                "event" => last_event = last_event.max(rest.parse().unwrap()),
                _ => {} // test harness chatter
            }
        }
        total_acks += lines.len();

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
        rt.block_on(async {
            for (id, (version, acked)) in &nodes {
                let stored = store.get_node(*id).await.unwrap().unwrap_or_else(|| {
                    panic!("iteration {iteration}: acknowledged node {id} lost")
                });
                assert!(
                    stored.version.0 >= *version,
                    "iteration {iteration}: node {id} went back in time"
                );
                if stored.version.0 == *version {
                    assert_eq!(
                        &stored.value, acked,
                        "iteration {iteration}: node {id} not intact"
                    );
                }
            }
            assert!(
                store.last_event_sequence().await.unwrap() >= last_event,
                "iteration {iteration}: event lost"
            );
        });
        let report = store.verify().unwrap();
        assert!(
            report.is_clean(),
            "iteration {iteration}: {:?}",
            report.problems
        );
        packed_openings += u64::from(store.packing().0.dictionaries > 0);
        store.close().unwrap();
    }
    eprintln!(
        "{total_acks} acknowledged writes over {ITERATIONS} crashes, \
         {packed_openings} openings with a packing dictionary"
    );
    assert!(packed_openings > 0, "no dictionary was ever stored");
    assert!(
        total_acks > 100,
        "the child made progress ({total_acks} acknowledged writes)"
    );
}
