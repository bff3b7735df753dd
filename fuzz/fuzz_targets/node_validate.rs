//! Fuzzes node validation: any bytes as a JSON body, through the base layer, the kind
//! layer, the PATCH and hierarchy parsers. The body (shared with the proptests and the
//! corpus replay test) asserts that nothing panics and that valid nodes survive a
//! serde round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kernelci_core::arbitrary::exercise_node(data);
});
