//! Fuzzes the stored event encoding of kernelci-store: any bytes after the format
//! byte decode to an event or a typed error (never a panic), and an event that
//! decodes round-trips.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kernelci_store::codec::exercise_event_decode(data);
});
