//! Fuzzes packed records of kernelci-store (codec::packed): any bytes as the zstd
//! frame of a packed node document unpack to a document or a typed error (never a
//! panic, never an allocation past the frame bound), and a document that unpacks
//! and decodes packs and unpacks back to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kernelci_store::codec::packed::exercise_unpack(data);
});
