//! Fuzzes the stored node encoding of kernelci-store: any bytes after the format byte
//! decode to a node or a typed error (never a panic, never an allocation larger than
//! the input), and a node that decodes round-trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kernelci_store::codec::exercise_decode(data);
});
