//! One MongoDB document of the reference into one of our records.
//!
//! A document is first turned into the JSON form our types read (ObjectIds as hex
//! text, datetimes as our timestamps at the millisecond MongoDB keeps, `_id` as
//! `id`), then read with the fields the reference's models fill by default when a
//! document predates them, and checked as the reference's models would. A document
//! that fails is refused with the reason (the import writes it to its rejects file
//! and goes on).
//!
//! Choices: nodes are checked at the base layer only (an old document of a kind or
//! `data` model that the current rules refuse is still the reference's data, served
//! as it is); an event without `sequence_id` (from before sequence ids) is refused,
//! since a durable subscriber could not place it; an event without `channel` is a
//! node event (the only kind there was before channels).

use bson::{Bson, Document};
use serde_json::{json, Map, Value};

use kernelci_core::auth::{User, UserGroup};
use kernelci_core::events::Event;
use kernelci_core::id::ObjectId;
use kernelci_core::node::Node;
use kernelci_core::store::{Record, SubscriberState, Version};
use kernelci_core::telemetry::TelemetryEvent;
use kernelci_core::time::Timestamp;

/// The collections of the reference's database that are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Collection {
    /// `usergroup`.
    UserGroup,
    /// `user`.
    User,
    /// `node`.
    Node,
    /// `eventhistory`.
    EventHistory,
    /// `subscriber_state`.
    SubscriberState,
    /// `telemetry`.
    Telemetry,
}

impl Collection {
    /// Every collection, in import order (groups before the users that embed them).
    pub const ALL: [Collection; 6] = [
        Collection::UserGroup,
        Collection::User,
        Collection::Node,
        Collection::EventHistory,
        Collection::SubscriberState,
        Collection::Telemetry,
    ];

    /// The collection's name in the reference's database.
    pub fn name(self) -> &'static str {
        match self {
            Collection::UserGroup => "usergroup",
            Collection::User => "user",
            Collection::Node => "node",
            Collection::EventHistory => "eventhistory",
            Collection::SubscriberState => "subscriber_state",
            Collection::Telemetry => "telemetry",
        }
    }

    /// The collection named `name`, if it is imported.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A document converted, or why not.
pub type Converted = Result<Record, String>;

/// The `_id` of a document as text (for the rejects file), if it has one.
pub fn id_text(doc: &Document) -> Option<String> {
    match doc.get("_id") {
        Some(Bson::ObjectId(oid)) => Some(oid.to_hex()),
        Some(Bson::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    }
}

/// Converts one document of `collection`.
pub fn convert(collection: Collection, doc: &Document) -> Converted {
    let json = document_json(doc, "")?;
    match collection {
        Collection::UserGroup => group(json).map(Record::Group),
        Collection::User => user(json).map(Record::User),
        Collection::Node => node(json),
        Collection::EventHistory => event(json).map(Record::Event),
        Collection::SubscriberState => subscriber(json).map(Record::Subscriber),
        Collection::Telemetry => telemetry(json).map(Record::Telemetry),
    }
}

/// A BSON value in our JSON form; `at` names where it is (for errors).
fn bson_json(v: &Bson, at: &str) -> Result<Value, String> {
    Ok(match v {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => json!(i),
        Bson::Int64(i) => json!(i),
        Bson::Double(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("{at}: the number {f} has no JSON form"))?,
        Bson::String(s) => Value::String(s.clone()),
        Bson::ObjectId(oid) => Value::String(oid.to_hex()),
        Bson::DateTime(dt) => {
            let micros = dt.timestamp_millis().checked_mul(1000);
            let ts = micros
                .and_then(Timestamp::from_micros)
                .ok_or_else(|| format!("{at}: datetime {dt} out of range"))?;
            Value::String(ts.to_string())
        }
        Bson::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| bson_json(item, &format!("{at}.{i}")))
                .collect::<Result<_, _>>()?,
        ),
        Bson::Document(d) => document_json(d, at)?,
        other => {
            return Err(format!(
                "{}: unsupported BSON type {:?}",
                if at.is_empty() { "document" } else { at },
                other.element_type()
            ))
        }
    })
}

fn document_json(doc: &Document, at: &str) -> Result<Value, String> {
    let mut out = Map::new();
    for (k, v) in doc {
        let here = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        out.insert(k.clone(), bson_json(v, &here)?);
    }
    Ok(Value::Object(out))
}

/// `obj` with `_id` as `id` (a stored redundant `id` is replaced by `_id`).
fn with_id(mut obj: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let id = obj.remove("_id").ok_or("no _id")?;
    if id.as_str().is_none_or(|s| ObjectId::parse(s).is_err()) {
        return Err(format!("_id {id} is not an ObjectId"));
    }
    obj.insert("id".into(), id);
    Ok(obj)
}

fn object(v: Value) -> Result<Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err("not a document".into()),
    }
}

/// `doc` over `defaults`: the document's keys win; `null` where the default is not
/// nullable is left to the type to refuse.
fn over(defaults: Value, doc: Map<String, Value>) -> Value {
    let mut base = match defaults {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in doc {
        base.insert(k, v);
    }
    Value::Object(base)
}

fn read<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

fn group(v: Value) -> Result<UserGroup, String> {
    let g: UserGroup = read(Value::Object(with_id(object(v)?)?))?;
    if g.name.is_empty() {
        return Err("empty group name".into());
    }
    Ok(g)
}

fn user(v: Value) -> Result<User, String> {
    let mut obj = with_id(object(v)?)?;
    if let Some(Value::Array(groups)) = obj.get_mut("groups") {
        for g in groups.iter_mut() {
            if let Value::Object(m) = g {
                if let Some(id) = m.remove("_id") {
                    m.insert("id".into(), id);
                }
            }
        }
    }
    let defaults = json!({"is_active": true, "is_superuser": false, "is_verified": false,
        "groups": []});
    let u: User = read(over(defaults, obj))?;
    if u.username.is_empty() || u.email.is_empty() {
        return Err("empty username or email".into());
    }
    if !(u.hashed_password.starts_with("$argon2") || u.hashed_password.starts_with("$2")) {
        return Err("hashed_password is neither Argon2 nor bcrypt".into());
    }
    Ok(u)
}

fn node(v: Value) -> Converted {
    let obj = with_id(object(v)?)?;
    for required in ["name", "path"] {
        if !obj.contains_key(required) {
            return Err(format!("no {required}"));
        }
    }
    let mut obj = obj;
    // The reference's defaults for the fields a document predates; the times
    // default from `created` (now when it is missing too).
    let created = match obj.get("created") {
        Some(c) => c.clone(),
        None => Value::String(Timestamp::now().truncate_to_millis().to_string()),
    };
    if !obj.contains_key("timeout") {
        let ts = read::<Timestamp>(created.clone()).map_err(|e| format!("created: {e}"))?;
        let timeout = ts.plus_seconds(kernelci_core::node::DEFAULT_TIMEOUT_SECS);
        obj.insert("timeout".into(), Value::String(timeout.to_string()));
    }
    for (key, default) in [
        ("kind", json!("node")),
        ("state", json!("running")),
        ("artifacts", json!({})),
        ("data", json!({})),
        ("debug", json!({})),
        ("platform_filter", json!([])),
        ("user_groups", json!([])),
        ("processed_by_kcidb_bridge", json!(false)),
        ("retry_counter", json!(0)),
        ("updated", created.clone()),
        ("created", created.clone()),
    ] {
        obj.entry(key).or_insert(default);
    }
    let node: Node = read(Value::Object(obj))?;
    Ok(Record::Node {
        node,
        version: Version(1),
    })
}

fn event(v: Value) -> Result<Event, String> {
    let obj = with_id(object(v)?)?;
    if !obj.contains_key("sequence_id") {
        return Err("no sequence_id (an event from before sequence ids)".into());
    }
    let e: Event = read(over(
        json!({"channel": "node", "owner": null, "data": null}),
        obj,
    ))?;
    if e.sequence_id == 0 {
        return Err("sequence_id 0 (sequence ids start at 1)".into());
    }
    Ok(e)
}

fn subscriber(v: Value) -> Result<SubscriberState, String> {
    let mut obj = object(v)?;
    obj.remove("_id");
    let now = Timestamp::now().truncate_to_millis().to_string();
    let defaults = json!({"promiscuous": false, "last_event_id": 0, "created_at": now,
        "last_poll": null});
    let s: SubscriberState = read(over(defaults, obj))?;
    if s.subscriber_id.is_empty() {
        return Err("empty subscriber_id".into());
    }
    Ok(s)
}

fn telemetry(v: Value) -> Result<TelemetryEvent, String> {
    let obj = with_id(object(v)?)?;
    let defaults = json!({"is_infra_error": false, "retry": 0, "extra": {}});
    read(over(defaults, obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId as Oid, DateTime};

    #[test]
    fn a_node_keeps_its_id_parent_and_milliseconds() {
        let (id, parent) = (Oid::new(), Oid::new());
        let created = DateTime::from_millis(1_700_000_000_123);
        let d = doc! {"_id": id, "kind": "kbuild", "name": "b", "path": ["c", "b"],
        "parent": parent, "created": created, "updated": created, "timeout": created,
        "state": "done", "result": "pass", "data": {"arch": "x86_64", "n": 3_i64},
        "id": id};
        let Ok(Record::Node { node, .. }) = convert(Collection::Node, &d) else {
            panic!("not converted");
        };
        assert_eq!(node.id.to_string(), id.to_hex());
        assert_eq!(node.parent.map(|p| p.to_string()), Some(parent.to_hex()));
        assert_eq!(node.created.to_string(), "2023-11-14T22:13:20.123000");
        assert_eq!(
            node.retry_counter, 0,
            "defaults for fields the document predates"
        );
        assert_eq!(node.data.and_then(|d| d.get("n").cloned()), Some(json!(3)));
    }

    #[test]
    fn refusals_say_why() {
        let no_name = doc! {"_id": Oid::new(), "path": ["x"]};
        assert_eq!(
            convert(Collection::Node, &no_name).err().as_deref(),
            Some("no name")
        );
        let decimal = doc! {"_id": Oid::new(), "name": "n", "path": ["n"],
        "data": {"x": bson::Bson::Decimal128(bson::Decimal128::from_bytes([0; 16]))}};
        let e = convert(Collection::Node, &decimal)
            .err()
            .unwrap_or_default();
        assert!(e.contains("data.x: unsupported BSON type"), "{e}");
        let bad_state = doc! {"_id": Oid::new(), "name": "n", "path": ["n"], "state": "x"};
        assert!(convert(Collection::Node, &bad_state).is_err());
        let old_event = doc! {"_id": Oid::new(), "timestamp": DateTime::now(), "data": {}};
        assert!(convert(Collection::EventHistory, &old_event).is_err());
    }

    #[test]
    fn users_keep_their_hashes_and_groups() {
        let gid = Oid::new();
        let d = doc! {"_id": Oid::new(), "username": "u", "email": "u@example.org",
        "hashed_password": "$2b$12$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY",
        "groups": [{"_id": gid, "name": "g"}], "revision_id": null};
        let Ok(Record::User(u)) = convert(Collection::User, &d) else {
            panic!("not converted");
        };
        assert!(u.is_active && !u.is_superuser && !u.is_verified);
        assert_eq!(u.groups[0].id.to_string(), gid.to_hex());
        assert!(u.hashed_password.starts_with("$2b$"));
    }
}
