//! The Node model (MODELS.md §2–§4).
//!
//! A [`Node`] is one checkout, kernel build, job, test, process or regression. Its
//! JSON form always carries all 23 keys (absent values as `null` or their default).
//! Node bodies from clients are validated in two layers, as in the reference:
//!
//! 1. the **base layer** ([`NodeBody::from_json`]): the generic schema, failures are
//!    [`Error::Validation`](crate::Error::Validation) (422 at the edge); it also
//!    normalises artifact URLs and datetimes;
//! 2. the **kind layer** ([`kind::check`]): the `data` model of the node's kind,
//!    failures are [`Error::Invalid`](crate::Error::Invalid) (400 at the edge). The
//!    checked copy is thrown away: what is stored keeps every `data` key the client
//!    sent. Only hierarchy submissions store the kind-normalised `data`
//!    ([`kind::normalise`]).
//!
//! How each write (POST, PUT, PATCH, batch, hierarchy) combines a body with the
//! stored node is in [`crate::state`].

pub mod body;
pub(crate) mod check;

pub use check::MAX_NAME_CHARS;
pub mod kind;
mod url;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::ObjectId;
use crate::time::Timestamp;

pub use body::{NodeBody, NodePatch};
pub use kind::Kind;

/// How long a node may run before the timeout rule closes it, when its body does not
/// say: six hours (MODELS.md §2, `timeout`).
pub const DEFAULT_TIMEOUT_SECS: i64 = 6 * 3600;

/// A node as stored and as returned by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    /// Database id.
    pub id: ObjectId,
    /// `checkout`, `kbuild`, `job`, `test`, `process`, `regression` (old documents may
    /// hold `node`).
    pub kind: String,
    /// Node name, e.g. `baseline-x86`.
    pub name: String,
    /// Names from the top node down to this one.
    pub path: Vec<String>,
    /// Group name.
    pub group: Option<String>,
    /// Parent node.
    pub parent: Option<ObjectId>,
    /// Lifecycle state.
    pub state: State,
    /// Outcome, independent of the state.
    pub result: Option<NodeResult>,
    /// Artifact name to normalised http(s) URL.
    pub artifacts: Option<BTreeMap<String, String>>,
    /// Kind-specific data (free-form at the base layer).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub data: Option<Map<String, Value>>,
    /// Free-form debugging data.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub debug: Option<Map<String, Value>>,
    /// Job filter.
    pub jobfilter: Option<Vec<String>>,
    /// Platform filter.
    pub platform_filter: Option<Vec<String>>,
    /// Creation time.
    pub created: Timestamp,
    /// Last update time.
    pub updated: Timestamp,
    /// When the timeout rule closes the node.
    pub timeout: Timestamp,
    /// When an `available` node starts closing.
    pub holdoff: Option<Timestamp>,
    /// Username of the creator.
    pub owner: Option<String>,
    /// Free-form submitter (service name or token hash).
    pub submitter: Option<String>,
    /// Tree id.
    pub treeid: Option<String>,
    /// Groups whose members may edit the node.
    pub user_groups: Vec<String>,
    /// Whether the KCIDB bridge has processed the current version.
    pub processed_by_kcidb_bridge: bool,
    /// Retry counter.
    pub retry_counter: i64,
}

impl Node {
    /// A minimal node of the given kind and name (path `[name]`), created `now`, with
    /// every other field at its default. Handy for embedding and tests.
    pub fn new(kind: &str, name: &str, now: Timestamp) -> Self {
        Self {
            id: ObjectId::new(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            path: vec![name.to_owned()],
            group: None,
            parent: None,
            state: State::Running,
            result: None,
            artifacts: Some(BTreeMap::new()),
            data: Some(Map::new()),
            debug: Some(Map::new()),
            jobfilter: None,
            platform_filter: Some(Vec::new()),
            created: now,
            updated: now,
            timeout: now.plus_seconds(DEFAULT_TIMEOUT_SECS),
            holdoff: None,
            owner: None,
            submitter: None,
            treeid: None,
            user_groups: Vec::new(),
            processed_by_kcidb_bridge: false,
            retry_counter: 0,
        }
    }

    /// The JSON form (all 23 keys).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Truncates every datetime to the millisecond: the stored form (see
    /// [`Timestamp::truncate_to_millis`]). Every write rule of [`crate::state`] returns
    /// nodes in this form.
    pub fn truncate_times(&mut self) {
        self.created = self.created.truncate_to_millis();
        self.updated = self.updated.truncate_to_millis();
        self.timeout = self.timeout.truncate_to_millis();
        self.holdoff = self.holdoff.map(|h| h.truncate_to_millis());
    }

    /// `data.runtime` when it is a non-empty string (used by the permission rules).
    pub fn runtime(&self) -> Option<&str> {
        self.data
            .as_ref()?
            .get("runtime")?
            .as_str()
            .filter(|s| !s.is_empty())
    }
}

/// Lifecycle state of a node (MODELS.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Scheduled, no result yet.
    Running,
    /// Succeeded; children may be created.
    Available,
    /// Holdoff reached, waiting for children.
    Closing,
    /// Final.
    Done,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 4] = [
        State::Running,
        State::Available,
        State::Closing,
        State::Done,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Running => "running",
            State::Available => "available",
            State::Closing => "closing",
            State::Done => "done",
        }
    }

    /// Parses a wire name (case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NodeResult {
    /// Passed.
    Pass,
    /// Failed.
    Fail,
    /// Skipped.
    Skip,
    /// Could not complete (e.g. timed out).
    Incomplete,
}

impl NodeResult {
    /// Every result.
    pub const ALL: [NodeResult; 4] = [
        NodeResult::Pass,
        NodeResult::Fail,
        NodeResult::Skip,
        NodeResult::Incomplete,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeResult::Pass => "pass",
            NodeResult::Fail => "fail",
            NodeResult::Skip => "skip",
            NodeResult::Incomplete => "incomplete",
        }
    }

    /// Parses a wire name (case-sensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for NodeResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_all_23_keys_with_defaults() {
        let now = crate::time::parse_query_datetime("2024-01-01T00:00:00").unwrap();
        let node = Node::new("checkout", "checkout", now);
        let json = node.to_json();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 23, "{keys:?}");
        assert_eq!(json["timeout"], "2024-01-01T06:00:00");
        assert_eq!(json["artifacts"], serde_json::json!({}));
        assert_eq!(json["platform_filter"], serde_json::json!([]));
        assert_eq!(json["jobfilter"], Value::Null);
        assert_eq!(json["state"], "running");
        let back: Node = serde_json::from_value(json).unwrap();
        assert_eq!(back, node);
    }
}
