//! Storage backends for kernelci-rs.
//!
//! This crate will hold the two implementations of [`kernelci_core::store::Store`]:
//!
//! - `MemoryStore`: fast, volatile, for tests and embedding;
//! - `SledStore`: the embedded, durable default (sled 0.34), with secondary-index
//!   trees, maintained counters and group commit.
//!
//! Until then it only re-exports the trait so that dependants can already name it.

pub use kernelci_core::store::Store;
