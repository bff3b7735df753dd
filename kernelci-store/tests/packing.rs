//! Node documents and events packed with dictionaries trained on the store's own
//! records (`codec::packed`, layout 4), over a real sled store: trained once enough
//! records are written, stored before any record that needs them, read back the
//! same after a clean close and after a drop without one, smaller on disk, and
//! damage reported rather than panicking.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw_open;
use kernelci_core::events::{node_event, NodeOp};
use kernelci_core::node::Node;
use kernelci_core::query::{Mode, Query};
use kernelci_core::store::Store;
use kernelci_core::time::Timestamp;
use kernelci_store::codec::packed::{FIRST_TRAINING, FORMAT_PACKED};
use kernelci_store::codec::FORMAT_BINARY;
use kernelci_store::{SledConfig, SledStore, SCHEMA_VERSION};

const TREES: [&str; 3] = ["mainline", "next", "stable"];
const ARCHES: [&str; 3] = ["x86_64", "arm64", "riscv"];
const LABS: [&str; 3] = ["collabora", "baylibre", "broonie"];

/// KernelCI-shaped test nodes: the same trees, URLs and paths over and over, with
/// names, platforms and log URLs that vary.
fn nodes(from: usize, n: usize) -> Vec<Node> {
    let t0 = Timestamp::now().truncate_to_millis();
    (from..from + n)
        .map(|i| {
            let mut node = Node::new(
                "test",
                &format!("baseline.dmesg.{}", i % 97),
                t0.plus_seconds(i as i64),
            );
            node.path = vec![
                "checkout".into(),
                format!("kbuild-gcc-12-{}", ["x86", "arm64", "riscv"][i % 3]),
                "baseline".into(),
                node.name.clone(),
            ];
            node.data = serde_json::json!({
                "kernel_revision": {
                    "tree": TREES[i % 3],
                    "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
                    "branch": "master",
                    "commit": format!("{:040x}", i / 50),
                    "describe": format!("v6.13-rc3-{}-g{:012x}", i / 50, i / 50),
                },
                "arch": ARCHES[i % 3],
                "platform": format!("board-{}", i % 41),
                "runtime": format!("lava-{}", LABS[i % 3]),
                "job_id": i * 7 + 1_000_000,
            })
            .as_object()
            .cloned();
            node.artifacts = Some(
                [(
                    "lava_log".to_owned(),
                    format!("https://storage.kernelci.org/results/{i}/lava_log.txt.gz"),
                )]
                .into_iter()
                .collect(),
            );
            node
        })
        .collect()
}

/// Writes `all` as 16 concurrent writers would, each node with its event.
async fn write(store: &Arc<SledStore>, all: &[Node]) {
    let mut tasks = Vec::new();
    for chunk in all.chunks(all.len().div_ceil(16)) {
        let store = store.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for n in &chunk {
                let e = node_event(n, NodeOp::Created, false, Timestamp::now());
                store.insert_node_with_event(n, e).await.unwrap().unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Writes one node (with its event) at a time until both kinds have a dictionary
/// in use (the training runs in the background and a trained dictionary is stored
/// by the next write); adds the nodes written to `all`.
async fn until_packing(store: &Arc<SledStore>, all: &mut Vec<Node>) {
    let started = Instant::now();
    loop {
        let (n, e) = store.packing();
        if n.current > 0 && e.current > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no dictionary after 60 s"
        );
        let one = nodes(all.len(), 1);
        write(store, &one).await;
        all.extend(one);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn names(store: &SledStore, q: &str) -> Vec<String> {
    let q = Query::parse_str(q, Mode::Fast).unwrap();
    let mut v: Vec<String> = store
        .find_nodes(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|n| format!("{}/{}", n.id, n.name))
        .collect();
    v.sort();
    v
}

fn expected(all: &[Node], pred: impl Fn(&Node) -> bool) -> Vec<String> {
    let mut v: Vec<String> = all
        .iter()
        .filter(|n| pred(n))
        .map(|n| format!("{}/{}", n.id, n.name))
        .collect();
    v.sort();
    v
}

/// Checks every node and every event of `all` against the store.
async fn check_all(store: &SledStore, all: &[Node]) {
    for n in all {
        assert_eq!(&store.get_node(n.id).await.unwrap().unwrap().value, n);
    }
    // A filter on the document's head and one on its free-form tail.
    assert_eq!(
        names(store, "name=baseline.dmesg.5").await,
        expected(all, |n| n.name == "baseline.dmesg.5")
    );
    assert_eq!(
        names(store, "data.platform=board-7").await,
        expected(all, |n| n.data.as_ref().unwrap()["platform"] == "board-7")
    );
    let events = store
        .events_after(0, Some("node"), 1_000_000)
        .await
        .unwrap();
    assert_eq!(events.len(), all.len());
    let mut ids: Vec<String> = events
        .iter()
        .map(|e| e.data["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut want: Vec<String> = all.iter().map(|n| n.id.to_string()).collect();
    want.sort();
    assert_eq!(ids, want);
    for e in &events {
        assert_eq!(e.data["kind"], "test");
        assert!(e.data["data"]["kernel_revision"]["url"]
            .as_str()
            .unwrap()
            .ends_with("linux.git"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_are_packed_once_trained_and_read_back_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = FIRST_TRAINING as usize;
    let mut all = nodes(0, first);
    {
        let store = Arc::new(SledStore::open(dir.path(), SledConfig::default()).unwrap());
        assert!(
            !store.is_compressed(),
            "a new store leaves sled's log plain"
        );
        write(&store, &all).await;
        let (n, e) = store.packing();
        assert_eq!((n.written, e.written), (first as u64, first as u64));
        assert_eq!(
            (n.packed, e.packed),
            (0, 0),
            "nothing packed before a dictionary"
        );
        until_packing(&store, &mut all).await;
        let later = nodes(all.len(), 1_000);
        write(&store, &later).await;
        all.extend(later);
        let (n, e) = store.packing();
        assert!(n.packed >= 1_000 && e.packed >= 1_000, "{n:?} {e:?}");
        check_all(&store, &all).await;
        Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    }
    // Behind the store's back: the dictionaries are stored, the last documents
    // are packed and the first ones are as they were written.
    let (packed_docs, plain_docs, packed_bytes, plain_bytes) = {
        let db = raw_open(dir.path());
        assert!(db.get(b"Mdict\x00\x00\x00\x00\x01").unwrap().is_some());
        assert!(db.get(b"Mdict\x01\x00\x00\x00\x01").unwrap().is_some());
        assert_eq!(
            db.get(b"Mschema").unwrap().unwrap().as_ref(),
            SCHEMA_VERSION.to_be_bytes()
        );
        let mut counts = (0, 0, 0, 0);
        for item in db.scan_prefix(b"N") {
            let (_, v) = item.unwrap();
            match v[8] {
                FORMAT_PACKED => {
                    counts.0 += 1;
                    counts.2 += v.len();
                }
                FORMAT_BINARY => {
                    counts.1 += 1;
                    counts.3 += v.len();
                }
                other => panic!("document format {other:#x}"),
            }
        }
        counts
    };
    assert_eq!(packed_docs + plain_docs, all.len());
    assert!(packed_docs >= 1_000 && plain_docs >= first);
    // The workload's documents pack to about a fifth; these, to under a half.
    let (packed_avg, plain_avg) = (packed_bytes / packed_docs, plain_bytes / plain_docs);
    assert!(
        packed_avg * 2 < plain_avg,
        "packed {packed_avg} B, plain {plain_avg} B"
    );

    // Reopened (the index snapshot), the dictionaries load and every record reads.
    {
        let store = Arc::new(SledStore::open(dir.path(), SledConfig::default()).unwrap());
        let (n, e) = store.packing();
        assert_eq!((n.dictionaries, n.current, e.dictionaries), (1, 1, 1));
        check_all(&store, &all).await;
        assert!(store.verify().unwrap().is_clean());
        // Dropped without close: reopening rebuilds the indexes from the documents,
        // packed ones included.
        let more = nodes(all.len() + 10_000, 200);
        write(&store, &more).await;
        all.extend(more);
    }
    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    check_all(&store, &all).await;
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.nodes, all.len() as u64);
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_packed_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = nodes(0, FIRST_TRAINING as usize);
    let victim;
    {
        let store = Arc::new(SledStore::open(dir.path(), SledConfig::default()).unwrap());
        write(&store, &all).await;
        until_packing(&store, &mut all).await;
        let last = nodes(all.len(), 1);
        write(&store, &last).await;
        victim = last[0].id;
        Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    }
    {
        let db = raw_open(dir.path());
        let k = [&b"N"[..], &victim.bytes()].concat();
        let mut v = db.get(&k).unwrap().unwrap().to_vec();
        assert_eq!(v[8], FORMAT_PACKED);
        // The dictionary id names one the store does not have.
        v[9] = 0x7F;
        db.insert(&k, v).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), SledConfig::default()).unwrap();
    let e = store.get_node(victim).await.unwrap_err();
    assert!(e.to_string().contains("unknown dictionary"), "{e}");
    // The others read; verify names the damaged one.
    assert_eq!(
        &store.get_node(all[3].id).await.unwrap().unwrap().value,
        &all[3]
    );
    let report = store.verify().unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("unknown dictionary")),
        "{:?}",
        report.problems
    );
    store.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_reopened_with_a_training_due_trains_on_its_stored_records() {
    // Processes that each write fewer records than a training needs (or a store
    // written by an earlier version): the count goes on across restarts, and the
    // store trains on its newest records when it opens with a training due.
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for _ in 0..2 {
        let store = Arc::new(SledStore::open(dir.path(), SledConfig::default()).unwrap());
        let some = nodes(all.len(), FIRST_TRAINING as usize / 2 + 10);
        write(&store, &some).await;
        all.extend(some);
        assert_eq!(store.packing().0.dictionaries, 0);
        // Closed before the sample of this process alone was enough.
        Arc::try_unwrap(store).ok().unwrap().close().unwrap();
    }
    let store = Arc::new(SledStore::open(dir.path(), SledConfig::default()).unwrap());
    let before = all.len();
    until_packing(&store, &mut all).await;
    // Far fewer writes than a sample during writes needs (500).
    assert!(all.len() - before < 300, "{} writes", all.len() - before);
    let later = nodes(all.len(), 50);
    write(&store, &later).await;
    all.extend(later);
    assert!(store.packing().0.packed >= 50);
    check_all(&store, &all).await;
    Arc::try_unwrap(store).ok().unwrap().close().unwrap();
}
