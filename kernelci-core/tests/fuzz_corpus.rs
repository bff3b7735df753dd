//! Replays the committed fuzz seed corpus (`fuzz/corpus/`) through the fuzz target
//! bodies, so CI covers what the fuzzers start from (and any crash input added there).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::fs;
use std::path::PathBuf;

use kernelci_core::arbitrary::{exercise_node, exercise_query};

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        run(&bytes);
        n += 1;
    }
    n
}

#[test]
fn query_parse_corpus_replays() {
    assert!(
        replay("query_parse", exercise_query) >= 50,
        "the seed corpus is committed"
    );
}

#[test]
fn node_validate_corpus_replays() {
    assert!(
        replay("node_validate", exercise_node) >= 50,
        "the seed corpus is committed"
    );
}
