//! Replays the committed seed corpus of the `doc_decode` fuzz target
//! (`fuzz/corpus/doc_decode/`, stored documents of the workload) through its body, so
//! CI covers what the fuzzer starts from and any crash input added there; the
//! `doc_json` target's body over the same inputs and their damaged forms; and the
//! `packed_decode` target's body over those documents packed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use kernelci_store::codec::{decode_node, exercise_decode, exercise_json, FORMAT_BINARY};

/// Every file of the doc_decode corpus, with whether it is a seed (a real
/// document) rather than an input the fuzzer added.
fn corpus() -> Vec<(std::path::PathBuf, bool)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/doc_decode");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let seed = path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-");
            (path, seed)
        })
        .collect()
}

#[test]
fn doc_decode_corpus_replays_and_decodes() {
    let mut seeds = 0;
    for (path, seed) in corpus() {
        let bytes = std::fs::read(&path).unwrap();
        exercise_decode(&bytes);
        if seed {
            // The seeds are real documents: they must decode, not only not panic.
            let doc = [&[FORMAT_BINARY][..], &bytes].concat();
            decode_node(&doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seeds += 1;
        }
    }
    assert!(seeds >= 8, "the seed corpus is committed");
}

/// The `doc_json` fuzz target's body (its seeds are doc_decode's) over the corpus,
/// every truncation of the seeds and three changes of each of their bytes: JSON is
/// written exactly when the document decodes, and it is serde_json's for the node.
#[test]
fn doc_json_corpus_and_damaged_seeds_agree_with_the_decoder() {
    for (path, seed) in corpus() {
        let bytes = std::fs::read(&path).unwrap();
        exercise_json(&bytes);
        if seed {
            for cut in 0..bytes.len() {
                exercise_json(&bytes[..cut]);
            }
            for i in 0..bytes.len() {
                for flip in [0x01u8, 0x40, 0xFF] {
                    let mut bad = bytes.clone();
                    bad[i] ^= flip;
                    exercise_json(&bad);
                }
            }
        }
    }
}

/// The `packed_decode` fuzz target's body over the doc_decode seeds packed with its
/// dictionary, and over every truncation and every single-byte change of them:
/// unpacking damaged frames gives errors or other documents, never a panic.
#[test]
fn packed_seeds_and_their_damaged_forms_never_panic() {
    use kernelci_store::codec::packed::{exercise_unpack, fuzz_frame};
    let mut packed = 0;
    for (path, _) in corpus().into_iter().filter(|(_, seed)| *seed) {
        let doc = [&[FORMAT_BINARY][..], &std::fs::read(&path).unwrap()].concat();
        let frame = fuzz_frame(&doc);
        assert!(!frame.is_empty(), "{} packs", path.display());
        assert!(frame.len() < doc.len(), "{} packs smaller", path.display());
        exercise_unpack(&frame);
        for cut in 0..frame.len() {
            exercise_unpack(&frame[..cut]);
        }
        for i in 0..frame.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut bad = frame.clone();
                bad[i] ^= flip;
                exercise_unpack(&bad);
            }
        }
        packed += 1;
    }
    assert!(packed >= 8, "the seed corpus is committed");
}
