//! The event log: node events, their payload, and the `/events` query (MODELS.md §7,
//! API.md §7).
//!
//! Every node create/update appends one [`Event`] to a log with a global,
//! monotonically increasing `sequence_id` (starting at 1, surviving restarts); pub/sub
//! listeners and `/events` read from it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::exact::{json_path_any, ExactFilter};
use crate::id::ObjectId;
use crate::node::{Node, NodeResult, State};
use crate::query::Pattern;
use crate::time::{parse_query_datetime, Timestamp};

/// The channel of node events.
pub const NODE_CHANNEL: &str = "node";

/// The largest `limit` of a recursive `/events` query (and its default).
pub const RECURSIVE_MAX_LIMIT: u64 = 1000;

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Event id.
    pub id: ObjectId,
    /// Publication time (UTC).
    pub timestamp: Timestamp,
    /// Global sequence number, shared by all channels.
    pub sequence_id: u64,
    /// Pub/sub channel (`node` for node events).
    pub channel: String,
    /// Node owner for node events; publisher for `/publish`.
    pub owner: Option<String>,
    /// Node event payload ([`node_event_payload`]) or the published data.
    pub data: Value,
}

/// An event before the store gives it a sequence id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Event id.
    pub id: ObjectId,
    /// Publication time.
    pub timestamp: Timestamp,
    /// Channel.
    pub channel: String,
    /// Owner.
    pub owner: Option<String>,
    /// Payload.
    pub data: Value,
}

impl NewEvent {
    /// The event with its sequence id.
    pub fn with_sequence(self, sequence_id: u64) -> Event {
        Event {
            id: self.id,
            timestamp: self.timestamp,
            sequence_id,
            channel: self.channel,
            owner: self.owner,
            data: self.data,
        }
    }
}

/// What a node event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOp {
    /// `POST /node`.
    Created,
    /// `PUT`, `PATCH`, hierarchy, or a time-driven transition; with the values before
    /// the write.
    Updated {
        /// State before the write.
        previous_state: State,
        /// Result before the write.
        previous_result: Option<NodeResult>,
    },
}

/// The payload of a node event (MODELS.md §7.2): `op`, `id`, `kind`, `name`, `path`,
/// `group`, `state`, `result`, `owner`, `data` after the write, `is_hierarchy`, and on
/// updates `previous_state` / `previous_result`.
pub fn node_event_payload(node: &Node, op: NodeOp, is_hierarchy: bool) -> Value {
    let mut v = json!({
        "op": match op { NodeOp::Created => "created", NodeOp::Updated { .. } => "updated" },
        "id": node.id,
        "kind": node.kind,
        "name": node.name,
        "path": node.path,
        "group": node.group,
        "state": node.state,
        "result": node.result,
        "owner": node.owner,
        "data": node.data,
        "is_hierarchy": is_hierarchy,
    });
    if let (
        NodeOp::Updated {
            previous_state,
            previous_result,
        },
        Value::Object(m),
    ) = (op, &mut v)
    {
        m.insert("previous_state".into(), json!(previous_state));
        m.insert("previous_result".into(), json!(previous_result));
    }
    v
}

/// The new event of a node write, on the `node` channel, owned by the node's owner.
pub fn node_event(node: &Node, op: NodeOp, is_hierarchy: bool, now: Timestamp) -> NewEvent {
    NewEvent {
        id: ObjectId::new(),
        timestamp: now.truncate_to_millis(),
        channel: NODE_CHANNEL.into(),
        owner: node.owner.clone(),
        data: node_event_payload(node, op, is_hierarchy),
    }
}

/// A parsed `/events` query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventQuery {
    /// `channel=`.
    pub channel: Option<String>,
    /// `kind, state, result, op, name, group, owner` → `data.<key>` equality.
    pub data_eq: Vec<(String, String)>,
    /// `path=`: regex on `data.path` elements.
    pub path: Option<Pattern>,
    /// `node_id=` (or `data.id=`): `data.id` equality.
    pub node_id: Option<String>,
    /// `id=` / `ids=`: only these events.
    pub ids: Vec<ObjectId>,
    /// `from=`: only events strictly after this time.
    pub from: Option<Timestamp>,
    /// `limit=`.
    pub limit: Option<u64>,
    /// `offset=`.
    pub offset: u64,
    /// `recursive=`: attach the current node to each event.
    pub recursive: bool,
    /// Every other parameter: exact match on the event document.
    pub other: ExactFilter,
}

const DATA_KEYS: [&str; 7] = ["kind", "state", "result", "op", "name", "group", "owner"];
const RESERVED: [&str; 11] = [
    "channel",
    "path",
    "node_id",
    "id",
    "ids",
    "from",
    "limit",
    "offset",
    "recursive",
    "data.id",
    "",
];

impl EventQuery {
    /// Parses decoded query pairs with the rules and messages of API.md §7. A repeated
    /// key keeps its last value.
    ///
    /// Choices where the reference is silent: `recursive` without `limit` uses the
    /// recursive maximum (1000) as the limit; an empty value (`id=`, `from=`...) counts
    /// as absent; the query length and term limits of [`crate::query`] apply.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self> {
        let get = |k: &str| {
            pairs
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let bad = |m: &str| Error::Invalid(m.to_owned());
        let mut q = EventQuery {
            channel: get("channel").map(str::to_owned),
            ..Default::default()
        };
        for key in DATA_KEYS {
            if let Some(v) = get(key).filter(|v| !v.is_empty()) {
                q.data_eq.push((key.to_owned(), v.to_owned()));
            }
        }
        if let Some(p) = get("path") {
            q.path = Some(Pattern::new("path", p)?);
        }
        match (get("node_id"), get("data.id")) {
            (Some(_), Some(_)) => return Err(bad("Provide either node_id or data.id, not both")),
            (Some(v), None) | (None, Some(v)) => q.node_id = Some(v.to_owned()),
            (None, None) => {}
        }
        match (get("id"), get("ids")) {
            (Some(_), Some(_)) => return Err(bad("Provide either id or ids, not both")),
            (Some(id), None) => {
                q.ids = vec![ObjectId::parse(id).map_err(|_| bad("Invalid id format"))?];
            }
            (None, Some(ids)) => {
                for part in ids.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    q.ids
                        .push(ObjectId::parse(part).map_err(|_| bad("Invalid ids format"))?);
                }
                if q.ids.is_empty() {
                    return Err(bad("ids must contain at least one id"));
                }
            }
            (None, None) => {}
        }
        if let Some(from) = get("from") {
            q.from = Some(
                parse_query_datetime(from)
                    .map_err(|_| bad("Invalid 'from' parameter, must be an ISO 8601 datetime"))?
                    .truncate_to_millis(),
            );
        }
        let int = |v: &str| crate::validation::text::python_int_text(v);
        // An empty value is no value, as the reference's `if limit:`.
        if let Some(v) = get("limit").filter(|v| !v.is_empty()) {
            // MongoDB's limit: 0 is no limit, a negative n is n.
            let n = int(v)?;
            q.limit = (n != 0).then_some(n.unsigned_abs());
        }
        if let Some(v) = get("offset") {
            q.offset = u64::try_from(int(v)?).map_err(|_| bad("'offset' must not be negative"))?;
        }
        q.recursive = get("recursive").is_some_and(|v| !v.is_empty());
        // As the reference, `recursive` needs a `limit` of at most 1000; `limit=0`
        // (no limit), which the reference lets through, is refused too.
        if q.recursive && q.limit.is_none_or(|l| l > RECURSIVE_MAX_LIMIT) {
            return Err(bad("Recursive limit is too large, max is 1000"));
        }
        let mut reserved: Vec<&str> = RESERVED.to_vec();
        reserved.extend(DATA_KEYS);
        q.other = ExactFilter::from_pairs(pairs, &reserved)?;
        Ok(q)
    }

    /// Whether `event` satisfies the filters (limit and offset are not looked at).
    pub fn matches(&self, event: &Event) -> bool {
        if self.channel.as_deref().is_some_and(|c| c != event.channel) {
            return false;
        }
        if !self.ids.is_empty() && !self.ids.contains(&event.id) {
            return false;
        }
        if self.from.is_some_and(|from| event.timestamp <= from) {
            return false;
        }
        let data = &event.data;
        let data_str = |k: &str| data.get(k).and_then(Value::as_str);
        if !self
            .data_eq
            .iter()
            .all(|(k, v)| data_str(k) == Some(v.as_str()))
        {
            return false;
        }
        if self
            .node_id
            .as_deref()
            .is_some_and(|id| data_str("id") != Some(id))
        {
            return false;
        }
        if let Some(p) = &self.path {
            let hit = json_path_any(data, &["path"], &|v| {
                v.as_str().is_some_and(|s| p.is_match(s))
            });
            if !hit {
                return false;
            }
        }
        self.other.terms.is_empty() || self.other.matches(&event_document(event))
    }
}

/// The event as its stored document (the shape `/events` filters and returns).
pub fn event_document(event: &Event) -> Value {
    // The reference's order: the stored fields, then `id` (set last from `_id`).
    let mut doc = serde_json::Map::new();
    doc.insert("timestamp".into(), serde_json::json!(event.timestamp));
    doc.insert("sequence_id".into(), event.sequence_id.into());
    doc.insert("channel".into(), event.channel.clone().into());
    doc.insert("owner".into(), serde_json::json!(event.owner));
    doc.insert("data".into(), event.data.clone());
    doc.insert("id".into(), serde_json::json!(event.id));
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(qs: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(qs.as_bytes()).into_owned().collect()
    }

    fn event(seq: u64, node: &Node, op: NodeOp) -> Event {
        node_event(
            node,
            op,
            false,
            Timestamp::from_micros(seq as i64 * 1_000_000).unwrap(),
        )
        .with_sequence(seq)
    }

    #[test]
    fn node_event_payloads() {
        let mut n = Node::new("kbuild", "k", Timestamp::now());
        n.owner = Some("alice".into());
        let created = node_event_payload(&n, NodeOp::Created, false);
        assert_eq!(created["op"], "created");
        assert_eq!(created["id"], n.id.to_string());
        assert!(created.get("previous_state").is_none());
        let updated = node_event_payload(
            &n,
            NodeOp::Updated {
                previous_state: State::Running,
                previous_result: None,
            },
            true,
        );
        assert_eq!(updated["op"], "updated");
        assert_eq!(updated["previous_state"], "running");
        assert_eq!(updated["previous_result"], Value::Null);
        assert_eq!(updated["is_hierarchy"], true);
        let keys: Vec<&String> = updated.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 13);
    }

    #[test]
    fn event_query_errors() {
        let e = |qs: &str| EventQuery::parse(&pairs(qs)).unwrap_err().to_string();
        assert_eq!(
            e("node_id=a&data.id=b"),
            "Provide either node_id or data.id, not both"
        );
        assert_eq!(e("id=x"), "Invalid id format");
        assert_eq!(e("ids=x,y"), "Invalid ids format");
        assert_eq!(e("ids=,,"), "ids must contain at least one id");
        assert_eq!(
            e("id=65a1355ee98651d0fe81e412&ids=65a1355ee98651d0fe81e412"),
            "Provide either id or ids, not both"
        );
        assert_eq!(
            e("from=1700000000"),
            "Invalid 'from' parameter, must be an ISO 8601 datetime"
        );
        assert_eq!(e("limit=x"), "invalid literal for int() with base 10: 'x'");
        assert_eq!(
            e("recursive=false&limit=1001"),
            "Recursive limit is too large, max is 1000"
        );
        for without in [
            "recursive=0",
            "recursive=true&limit=",
            "recursive=1&limit=0",
        ] {
            assert_eq!(e(without), "Recursive limit is too large, max is 1000");
        }
        let q = EventQuery::parse(&pairs("recursive=0&limit=1000")).unwrap();
        assert!(q.recursive);
        assert_eq!(q.limit, Some(1000));
        let q = EventQuery::parse(&pairs("limit=")).unwrap();
        assert_eq!(q.limit, None);
    }

    #[test]
    fn event_query_matching() {
        let mut n = Node::new("kbuild", "k1", Timestamp::now());
        n.path = vec!["checkout".into(), "k1".into()];
        n.owner = Some("alice".into());
        let e1 = event(1, &n, NodeOp::Created);
        let e2 = event(
            2,
            &n,
            NodeOp::Updated {
                previous_state: State::Running,
                previous_result: None,
            },
        );
        let m = |qs: &str, e: &Event| EventQuery::parse(&pairs(qs)).unwrap().matches(e);
        assert!(m("kind=kbuild&op=created", &e1) && !m("kind=kbuild&op=created", &e2));
        assert!(m("kind=", &e1), "empty value ignored");
        assert!(m("owner=alice&channel=node", &e1));
        assert!(!m("channel=other", &e1));
        assert!(m("path=^check", &e1) && !m("path=^k2", &e1));
        assert!(m(&format!("node_id={}", n.id), &e2));
        assert!(m(&format!("data.id={}", n.id), &e2));
        assert!(m(&format!("id={}", e2.id), &e2) && !m(&format!("id={}", e2.id), &e1));
        assert!(m("from=1970-01-01T00:00:01", &e2) && !m("from=1970-01-01T00:00:01", &e1));
        assert!(!m("sequence_id=2", &e2), "no conversion of decimal strings");
        assert!(m("data.is_hierarchy=false", &e2), "booleans are converted");
        assert!(m("data.previous_state=running", &e2));
    }
}
