//! Replays the committed seed corpus of the `doc_decode` fuzz target
//! (`fuzz/corpus/doc_decode/`, stored documents of the workload) through its body, so
//! CI covers what the fuzzer starts from and any crash input added there.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use kernelci_store::codec::{decode_node, exercise_decode, FORMAT_BINARY};

#[test]
fn doc_decode_corpus_replays_and_decodes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/doc_decode");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        exercise_decode(&bytes);
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("seed-")
        {
            // The seeds are real documents: they must decode, not only not panic.
            let doc = [&[FORMAT_BINARY][..], &bytes].concat();
            decode_node(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seeds += 1;
        }
    }
    assert!(seeds >= 8, "the seed corpus is committed");
}
