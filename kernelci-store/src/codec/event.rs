//! The stored form of an event (layout 3 onwards): binary, as node documents are.
//!
//! An event value is [`FORMAT_EVENT`], then the event's id (12 bytes), timestamp
//! (microseconds, 8 bytes), sequence id, channel and owner, then its `data` in one of
//! two forms:
//!
//! - **a node event** (what every node write logs: `kernelci_core::events::
//!   node_event_payload`): its fields without their names, in the payload's fixed
//!   key order, the node id as 12 bytes, `state`/`result` one byte each, the node's
//!   `data` as the node codec's tagged tree (whose dictionary holds KernelCI's keys).
//!   About half the size of the JSON, which repeated every key of every event;
//! - **any other data** (`/publish`, or a node-channel payload of another shape):
//!   the tagged tree of the value as it is, key order kept.
//!
//! Events written by earlier versions are JSON (they start with `{`); [`decode_event`]
//! reads both, so a store needs no migration: old events stay as they were until
//! the retention trims them.

use serde_json::{Map, Value};

use kernelci_core::events::Event;
use kernelci_core::id::ObjectId;

use super::{CodecError, Reader, Writer};

/// First byte of a binary event. JSON events start with `{`.
pub const FORMAT_EVENT: u8 = 0xE7;

/// `data` is the tagged tree of a value.
const DATA_VALUE: u8 = 0;
/// `data` is a node event payload, without its keys.
const DATA_NODE_EVENT: u8 = 1;

/// The keys of a node event payload, in their order; updates add the last two.
const NODE_EVENT_KEYS: [&str; 13] = [
    "op",
    "id",
    "kind",
    "name",
    "path",
    "group",
    "state",
    "result",
    "owner",
    "data",
    "is_hierarchy",
    "previous_state",
    "previous_result",
];
/// How many keys a `created` payload has.
const CREATED_KEYS: usize = 11;

/// `state` names by their byte (the node codec's bytes).
const STATES: [&str; 4] = ["running", "available", "closing", "done"];
/// `result` names by their byte; 0 is `null`.
const RESULTS: [&str; 4] = ["pass", "fail", "skip", "incomplete"];

/// Appends the binary form of `event` to `out`.
pub fn encode_event(event: &Event, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut w = Writer { out };
    w.out.push(FORMAT_EVENT);
    w.out.extend_from_slice(&event.id.bytes());
    w.out
        .extend_from_slice(&event.timestamp.as_micros().to_le_bytes());
    w.uint(event.sequence_id);
    w.str(&event.channel);
    opt_str(&mut w, event.owner.as_deref());
    match node_event_fields(&event.data) {
        Some(fields) => {
            w.out.push(DATA_NODE_EVENT);
            fields.write(&mut w)?;
        }
        None => {
            w.out.push(DATA_VALUE);
            w.value(&event.data, 1)?;
        }
    }
    Ok(())
}

/// Decodes a binary event (starting at its [`FORMAT_EVENT`] byte).
pub fn decode_event(b: &[u8]) -> Result<Event, CodecError> {
    let mut r = Reader { b, at: 0 };
    if r.byte()? != FORMAT_EVENT {
        return Err(r.invalid("format byte"));
    }
    let id = ObjectId::from_bytes(r.array()?);
    let micros = i64::from_le_bytes(r.array()?);
    let timestamp = r.time(micros, 0)?;
    let sequence_id = r.uint()?;
    let channel = r.string()?;
    let owner = opt_string(&mut r)?;
    let data = match r.byte()? {
        DATA_VALUE => r.value(1)?,
        DATA_NODE_EVENT => read_node_event(&mut r)?,
        _ => return Err(r.invalid("event data form")),
    };
    if r.at != b.len() {
        return Err(CodecError::Trailing(b.len() - r.at));
    }
    Ok(Event {
        id,
        timestamp,
        sequence_id,
        channel,
        owner,
        data,
    })
}

/// The body of the `event_decode` fuzz target: any bytes, as a stored event, decode
/// to an event or an error, never a panic; an event that decodes encodes back to an
/// event that decodes the same.
pub fn exercise_event_decode(data: &[u8]) {
    let mut stored = vec![FORMAT_EVENT];
    stored.extend_from_slice(data);
    if let Ok(event) = decode_event(&stored) {
        let mut again = Vec::new();
        if encode_event(&event, &mut again).is_ok() {
            assert_eq!(
                decode_event(&again).as_ref(),
                Ok(&event),
                "re-encoded event differs"
            );
        }
    }
}

fn opt_str(w: &mut Writer<'_>, s: Option<&str>) {
    match s {
        Some(s) => {
            w.out.push(1);
            w.str(s);
        }
        None => w.out.push(0),
    }
}

fn opt_string(r: &mut Reader<'_>) -> Result<Option<String>, CodecError> {
    match r.byte()? {
        0 => Ok(None),
        1 => r.string().map(Some),
        _ => Err(r.invalid("option")),
    }
}

/// The fields of a node event payload, borrowed from the value.
struct NodeEventFields<'a> {
    id: ObjectId,
    kind: &'a str,
    name: &'a str,
    path: Vec<&'a str>,
    group: Option<&'a str>,
    state: u8,
    result: u8,
    owner: Option<&'a str>,
    data: Option<&'a Map<String, Value>>,
    is_hierarchy: bool,
    /// `previous_state` and `previous_result` of an update (`None`: a creation).
    previous: Option<(u8, u8)>,
}

impl NodeEventFields<'_> {
    fn write(&self, w: &mut Writer<'_>) -> Result<(), CodecError> {
        w.out
            .push(u8::from(self.previous.is_some()) | (u8::from(self.is_hierarchy) << 1));
        w.out.extend_from_slice(&self.id.bytes());
        w.str(self.kind);
        w.str(self.name);
        w.uint(self.path.len() as u64);
        for p in &self.path {
            w.str(p);
        }
        opt_str(w, self.group);
        w.out.push(self.state);
        w.out.push(self.result);
        opt_str(w, self.owner);
        match self.data {
            Some(d) => {
                w.out.push(1);
                w.object(d, 1)?;
            }
            None => w.out.push(0),
        }
        if let Some((state, result)) = self.previous {
            w.out.push(state);
            w.out.push(result);
        }
        Ok(())
    }
}

/// The fields of `data` when it is exactly a node event payload (its keys in their
/// order, each value of its type, the id and names canonical), so that
/// [`read_node_event`] rebuilds the same value; `None` otherwise.
fn node_event_fields(data: &Value) -> Option<NodeEventFields<'_>> {
    let m = data.as_object()?;
    let updated = match m.get("op")?.as_str()? {
        "created" => false,
        "updated" => true,
        _ => return None,
    };
    let keys = if updated {
        NODE_EVENT_KEYS.len()
    } else {
        CREATED_KEYS
    };
    if m.len() != keys || !m.keys().zip(NODE_EVENT_KEYS).all(|(k, want)| k == want) {
        return None;
    }
    let id_text = m.get("id")?.as_str()?;
    let id = ObjectId::parse(id_text).ok()?;
    if id.to_string() != id_text {
        return None;
    }
    let state = |v: &Value| STATES.iter().position(|s| Some(*s) == v.as_str());
    let result = |v: &Value| match v {
        Value::Null => Some(0),
        other => RESULTS
            .iter()
            .position(|r| Some(*r) == other.as_str())
            .map(|i| i + 1),
    };
    let previous = if updated {
        Some((
            state(m.get("previous_state")?)? as u8,
            result(m.get("previous_result")?)? as u8,
        ))
    } else {
        None
    };
    Some(NodeEventFields {
        id,
        kind: m.get("kind")?.as_str()?,
        name: m.get("name")?.as_str()?,
        path: m
            .get("path")?
            .as_array()?
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()?,
        group: text_or_null(m.get("group")?)?,
        state: state(m.get("state")?)? as u8,
        result: result(m.get("result")?)? as u8,
        owner: text_or_null(m.get("owner")?)?,
        data: match m.get("data")? {
            Value::Null => None,
            Value::Object(d) => Some(d),
            _ => return None,
        },
        is_hierarchy: m.get("is_hierarchy")?.as_bool()?,
        previous,
    })
}

/// `Some(None)` for `null`, `Some(text)` for a string, `None` for anything else.
fn text_or_null(v: &Value) -> Option<Option<&str>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.as_str())),
        _ => None,
    }
}

/// Rebuilds a node event payload written by [`NodeEventFields::write`].
fn read_node_event(r: &mut Reader<'_>) -> Result<Value, CodecError> {
    let flags = r.byte()?;
    if flags & !0b11 != 0 {
        return Err(r.invalid("node event flags"));
    }
    let updated = flags & 1 != 0;
    let id = ObjectId::from_bytes(r.array()?);
    let kind = r.string()?;
    let name = r.string()?;
    let path = r.strings()?;
    let group = opt_string(r)?;
    let state = read_state(r)?;
    let result = read_result(r)?;
    let owner = opt_string(r)?;
    let data = match r.byte()? {
        0 => Value::Null,
        1 => Value::Object(r.object(1)?),
        _ => return Err(r.invalid("option")),
    };
    let text = |s: Option<String>| s.map_or(Value::Null, Value::String);
    let mut m = Map::new();
    m.insert(
        "op".into(),
        Value::from(if updated { "updated" } else { "created" }),
    );
    m.insert("id".into(), Value::String(id.to_string()));
    m.insert("kind".into(), Value::String(kind));
    m.insert("name".into(), Value::String(name));
    m.insert(
        "path".into(),
        Value::Array(path.into_iter().map(Value::String).collect()),
    );
    m.insert("group".into(), text(group));
    m.insert("state".into(), state);
    m.insert("result".into(), result);
    m.insert("owner".into(), text(owner));
    m.insert("data".into(), data);
    m.insert("is_hierarchy".into(), Value::Bool(flags & 2 != 0));
    if updated {
        let previous_state = read_state(r)?;
        let previous_result = read_result(r)?;
        m.insert("previous_state".into(), previous_state);
        m.insert("previous_result".into(), previous_result);
    }
    Ok(Value::Object(m))
}

fn read_state(r: &mut Reader<'_>) -> Result<Value, CodecError> {
    let b = r.byte()?;
    STATES
        .get(usize::from(b))
        .map(|s| Value::from(*s))
        .ok_or_else(|| r.invalid("state"))
}

fn read_result(r: &mut Reader<'_>) -> Result<Value, CodecError> {
    match r.byte()? {
        0 => Ok(Value::Null),
        b => RESULTS
            .get(usize::from(b) - 1)
            .map(|s| Value::from(*s))
            .ok_or_else(|| r.invalid("result")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::events::{node_event, NodeOp};
    use kernelci_core::node::{Node, NodeResult, State};
    use kernelci_core::time::Timestamp;
    use serde_json::json;

    fn roundtrip(e: &Event) -> Vec<u8> {
        let mut b = Vec::new();
        encode_event(e, &mut b).unwrap_or_else(|err| panic!("{err}"));
        let back = decode_event(&b).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(&back, e);
        // Key order too (the maps compare as sets).
        assert_eq!(
            serde_json::to_string(&back.data).ok(),
            serde_json::to_string(&e.data).ok()
        );
        b
    }

    fn kbuild() -> Node {
        let mut n = Node::new("kbuild", "kbuild-gcc-12-arm64", Timestamp::now());
        n.path = vec!["checkout".into(), "kbuild-gcc-12-arm64".into()];
        n.group = Some("kbuild-gcc-12-arm64".into());
        n.owner = Some("lab-admin".into());
        n.data = json!({"kernel_revision": {"tree": "mainline", "commit": "abc"},
                        "arch": "arm64", "custom key": [1, 2.5, null, true]})
        .as_object()
        .cloned();
        n
    }

    #[test]
    fn node_events_take_the_compact_form_and_read_back_exactly() {
        let mut n = kbuild();
        let created = node_event(&n, NodeOp::Created, false, Timestamp::now()).with_sequence(7);
        let b = roundtrip(&created);
        assert_eq!(b[1 + 12 + 8 + 1 + 1 + 4 + 1 + 1 + 9], DATA_NODE_EVENT);
        let json = serde_json::to_vec(&created).map(|v| v.len()).unwrap_or(0);
        assert!(b.len() * 2 < json, "{} bytes binary, {json} JSON", b.len());
        n.state = State::Done;
        n.result = Some(NodeResult::Incomplete);
        n.owner = None;
        n.data = None;
        let op = NodeOp::Updated {
            previous_state: State::Available,
            previous_result: None,
        };
        roundtrip(&node_event(&n, op, true, Timestamp::now()).with_sequence(u64::MAX));
        let op = NodeOp::Updated {
            previous_state: State::Closing,
            previous_result: Some(NodeResult::Fail),
        };
        roundtrip(&node_event(&n, op, false, Timestamp::now()).with_sequence(1));
    }

    #[test]
    fn other_data_is_kept_as_it_is() {
        let n = kbuild();
        let base = node_event(&n, NodeOp::Created, false, Timestamp::now()).with_sequence(3);
        let payload = base.data.clone();
        let mut variants = vec![
            json!({"anything": "published", "n": 1}),
            json!([1, "two"]),
            Value::Null,
        ];
        // Node-event look-alikes that the compact form would not rebuild exactly.
        let mut reordered = Map::new();
        if let Value::Object(m) = &payload {
            for (k, v) in m.iter().rev() {
                reordered.insert(k.clone(), v.clone());
            }
        }
        variants.push(Value::Object(reordered));
        for (key, v) in [
            ("id", json!("ABCDEF0123456789ABCDEF01")),
            ("state", json!("paused")),
            ("result", json!(3)),
            ("op", json!("deleted")),
            ("path", json!(["a", 1])),
            ("data", json!("text")),
            ("is_hierarchy", json!("yes")),
        ] {
            let mut p = payload.clone();
            p[key] = v;
            variants.push(p);
        }
        let mut extra = payload.clone();
        extra["extra"] = json!(1);
        variants.push(extra);
        for data in variants {
            let e = Event {
                data,
                channel: "custom".into(),
                owner: None,
                ..base.clone()
            };
            let b = roundtrip(&e);
            assert_eq!(b[1 + 12 + 8 + 1 + 1 + 6 + 1], DATA_VALUE);
        }
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let e = node_event(&kbuild(), NodeOp::Created, false, Timestamp::now()).with_sequence(9);
        let mut b = Vec::new();
        encode_event(&e, &mut b).unwrap_or_else(|err| panic!("{err}"));
        for cut in 0..b.len() {
            assert!(decode_event(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert_eq!(decode_event(&longer), Err(CodecError::Trailing(1)));
        for at in 1..b.len() {
            let mut bad = b.clone();
            bad[at] ^= 0xFF;
            // Any outcome but a panic: some flips still decode (a changed letter),
            // and then round-trip.
            exercise_event_decode(&bad[1..]);
        }
    }
}
