//! Fuzzes the stored node document written straight as JSON (kernelci-store's
//! `codec::write_node_json`): any bytes after the format byte write JSON exactly
//! when they decode as a node, and that JSON is what serialising the node gives.
//! Its seeds are the doc_decode corpus (the same input).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kernelci_store::codec::exercise_json(data);
});
