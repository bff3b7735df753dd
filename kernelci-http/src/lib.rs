//! # kernelci-http
//!
//! The KernelCI API over HTTP/1.1 with hyper: every endpoint of the contract
//! (`docs/spec/API.md`), a drop-in for existing clients (kernelci-core's Python
//! client, `kci`, kernelci-pipeline).
//!
//! The library owns the server: build an [`AppState`] over any
//! [`Store`](kernelci_core::store::Store) and a [`HttpConfig`], bind a listener, and
//! call [`serve`]:
//!
//! ```no_run
//! use std::sync::Arc;
//! use kernelci_http::{serve, AppState, HttpConfig};
//! # async fn run(store: Arc<dyn kernelci_core::store::Store>) -> Result<(), kernelci_http::HttpError> {
//! let state = AppState::new(store, HttpConfig { secret_key: "change me".into(), ..HttpConfig::default() })?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8001").await?;
//! // Serves until the future completes (the binary waits for SIGINT/SIGTERM).
//! serve(listener, state, std::future::pending()).await
//! # }
//! ```
//!
//! ## Modules
//!
//! - [`routes`]: prefixes (`/latest`, `/v0`, none), the route table, 404/405/307;
//! - [`server`]: the connection loop and its limits (per address, in all, idle
//!   and header timeouts);
//! - [`service`]: the API as a `tower::Service` (body size and transfer rate,
//!   routing, one log line per request, panics → 500) and its middleware
//!   (request ids, compression), for [`serve`] or an embedder's own server;
//! - [`handlers`]: one module per area (nodes, events, users, groups, pub/sub, KV,
//!   telemetry, pages);
//! - [`state`]: shared state and authentication; [`tokens`]: JWTs;
//! - [`pubsub`]: the broker (subscriptions, durable subscribers, keep-alives,
//!   queues); [`jobs`]: background work; [`metrics`], [`openapi`], [`mail`].
//!
//! Errors: handlers return [`ApiError`] (status + `{"detail": ...}`); core errors
//! map to statuses in [`ApiError::from_core`].

#![warn(missing_docs)]

pub mod account_tokens;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod handlers;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod passwords;
pub mod public_url;
pub mod pubsub;
pub mod request;
pub mod response;
pub mod routes;
pub mod server;
pub mod service;
pub mod state;
pub mod tokens;

pub use config::{HttpConfig, InitialAdmin, PasswordCost, SmtpConfig, SmtpTls};
pub use error::{ApiError, HttpError};
pub use server::serve;
pub use service::{api, ApiService, PeerAddr};
pub use state::AppState;
