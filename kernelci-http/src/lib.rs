//! The KernelCI HTTP API.
//!
//! This crate will hold the hyper 1.x handlers for every endpoint of the documented
//! API (`/latest` and `/v0`), the single table mapping [`kernelci_core::Error`] to an
//! HTTP status and a `{"detail": ...}` body, and `serve(listener, state, shutdown)`,
//! which the `kernelci-server` binary calls. It is the only crate that knows the wire
//! format.

pub use kernelci_core::Error;
