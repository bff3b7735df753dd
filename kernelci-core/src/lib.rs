//! # kernelci-core
//!
//! The KernelCI domain as pure, I/O-free logic: the [`Node`](node::Node) model and its
//! two-layer validation, the [state machine](state) and the rules of every node
//! write, the [query language](query) and its evaluator, the
//! [permission rules](auth), the [event log](events) records, and the
//! [storage trait](store::Store) that backends implement.
//!
//! Nothing here knows HTTP or does I/O: errors are [`Error`] variants saying what went
//! wrong, and the HTTP layer maps them to status codes. The behaviour follows the
//! KernelCI API contract (the reference Python server); every place where we
//! deliberately differ is documented where it happens.
//!
//! # Example
//!
//! Validate a node body, create it, move it through the state machine, and query it:
//!
//! ```
//! use kernelci_core::id::ObjectId;
//! use kernelci_core::node::{NodeBody, NodePatch, State};
//! use kernelci_core::query::{matches, Mode, Query};
//! use kernelci_core::state;
//! use kernelci_core::time::Timestamp;
//! use serde_json::json;
//!
//! let now = Timestamp::now();
//! // Base layer (422 errors at the edge) ...
//! let body = NodeBody::from_json(
//!     &json!({
//!         "kind": "kbuild",
//!         "name": "kbuild-gcc-12-x86",
//!         "path": ["checkout", "kbuild-gcc-12-x86"],
//!         "data": {"arch": "x86_64", "kernel_revision": {
//!             "tree": "mainline", "branch": "master", "commit": "abc123",
//!             "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git"}}
//!     }),
//!     &["body".into()],
//!     now,
//! )?;
//! // ... then the kind layer (400 errors) and the POST rules.
//! let node = state::create(body, "alice", ObjectId::new(), now)?;
//! assert_eq!(node.owner.as_deref(), Some("alice"));
//!
//! // A PATCH moving the build to `available`; going back to `running` is refused.
//! let patch = NodePatch::from_json(&json!({"state": "available", "result": "pass"}))?;
//! let node = state::patch(&node, patch, now)?;
//! assert_eq!(node.state, State::Available);
//! let back = NodePatch::from_json(&json!({"state": "running"}))?;
//! assert!(state::patch(&node, back, now).is_err());
//!
//! // The query language, with MongoDB matching semantics.
//! let q = Query::parse_str("kind=kbuild&data.kernel_revision.tree=mainline&state__ne=done", Mode::Page)?;
//! assert!(matches(&node, &q));
//! let q = Query::parse_str("name__re=^kbuild-clang", Mode::Page)?;
//! assert!(!matches(&node, &q));
//! # Ok::<(), kernelci_core::Error>(())
//! ```
//!
//! # Crate map
//!
//! - [`id`], [`time`]: ObjectIds and UTC timestamps with the API's text formats;
//! - [`node`]: the model, base-layer bodies, kinds and their data models;
//! - [`state`]: transitions, PUT/PATCH/batch/hierarchy rules, time-driven rules;
//! - [`query`]: parser, evaluator, renderer and planner inspection API;
//! - [`auth`]: users, groups, access classes, the node edit rule;
//! - [`events`]: event records, node event payloads, the `/events` query;
//! - [`exact`]: the exact-match filters of `/users` and friends;
//! - [`telemetry`]: telemetry events, the `/telemetry` query, and the stats and
//!   anomaly reports;
//! - [`store`]: the storage trait;
//! - `testing` (feature `test-util`): a naive scan-only store used as a reference
//!   model; `arbitrary` (feature `arbitrary`): proptest strategies shared with the
//!   fuzz targets.

#![warn(missing_docs)]

pub mod auth;
pub mod error;
pub mod events;
pub mod exact;
pub mod id;
pub mod node;
pub mod query;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod validation;

#[cfg(feature = "arbitrary")]
pub mod arbitrary;
#[cfg(feature = "openapi")]
pub mod openapi;
#[cfg(feature = "test-util")]
pub mod testing;

pub use error::{Error, Result};
