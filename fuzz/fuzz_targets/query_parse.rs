//! Fuzzes the node query parser: any bytes as a query string, in every mode. The
//! body (shared with the proptests and the corpus replay test) asserts that parsing
//! never panics and that every parsed query renders to a string that parses back to
//! the same query.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kernelci_core::arbitrary::exercise_query(data);
});
