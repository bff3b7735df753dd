//! Benchmarks for kernelci-rs (run by hand with `cargo bench`, never in CI).
//!
//! This crate will load `../shared/workload/gen_nodes.py` data sets into each store
//! backend and time every query shape of the workload, the counts, ingest, durable
//! inserts and state transitions, so that the figures compare side by side with the
//! PostgreSQL baseline (`benches/compare-postgres.sh`).
