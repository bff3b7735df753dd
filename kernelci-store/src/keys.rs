//! Key spaces and order-preserving encodings.
//!
//! Every record lives in one ordered key space, distinguished by a one-byte prefix
//! (see the crate docs for the full layout). Index keys encode field values so that
//! byte order equals the query language's value order
//! ([`kernelci_core::query::compare_values`]): type class first (null < numbers <
//! strings < objects < arrays < ObjectIds < booleans < dates), then the value.

use kernelci_core::id::ObjectId;
use kernelci_core::query::{QValue, Val};
use serde_json::Value;

/// Node documents: `N` + id (12) → version (8, BE) + JSON.
pub(crate) const NODE: u8 = b'N';
/// Index entries: `I` + index (1) + encoded values + id (12) → empty.
pub(crate) const INDEX: u8 = b'I';
/// Index counters: `K` + index (1) + encoded values → count (8, BE).
pub(crate) const COUNT: u8 = b'K';
/// Metadata: `M` + name → value.
pub(crate) const META: u8 = b'M';
/// Events: `E` + sequence id (8, BE) → JSON.
pub(crate) const EVENT: u8 = b'E';
/// Durable subscribers: `S` + subscriber id → JSON.
pub(crate) const SUBSCRIBER: u8 = b'S';
/// Named counters: `C` + name → u64 (8, BE).
pub(crate) const COUNTER: u8 = b'C';
/// Users: `U` + id (12) → JSON.
pub(crate) const USER: u8 = b'U';
/// User unique keys: `u` + `n` + username → id, `u` + `e` + e-mail → id.
pub(crate) const USER_KEY: u8 = b'u';
/// Groups: `G` + id (12) → JSON.
pub(crate) const GROUP: u8 = b'G';
/// Group names: `g` + name → id.
pub(crate) const GROUP_NAME: u8 = b'g';
/// Tokens: `T` + token id → JSON.
pub(crate) const TOKEN: u8 = b'T';
/// Key/value pairs: `V` + encoded namespace + key → value.
pub(crate) const KV: u8 = b'V';
/// Telemetry events: `Y` + id (12) → JSON.
pub(crate) const TELEMETRY: u8 = b'Y';
/// Telemetry time index: `y` + `ts` (8, [`time_bytes`]) + id (12) → empty.
pub(crate) const TELEMETRY_TS: u8 = b'y';
/// Queue items: `Q` + name length (4, BE) + name + position (8, BE) → value.
pub(crate) const QUEUE: u8 = b'Q';

/// Index counter suffix counting documents whose entries were truncated (more than
/// the per-node maximum): while it is non-zero the index is not used at all.
pub(crate) const LOSSY: u8 = 0xFE;

/// Index counter suffix counting documents whose entry count is not exactly one (or
/// that hold integers beyond ±2^53): while it is zero, the index is "regular" and
/// sums of counters are exact document counts.
pub(crate) const IRREGULAR: u8 = 0xFF;

const T_NULL: u8 = 0x10;
const T_NUM: u8 = 0x20;
const T_STR: u8 = 0x30;
const T_OBJ: u8 = 0x40;
const T_ARR: u8 = 0x50;
const T_ID: u8 = 0x70;
const T_BOOL: u8 = 0x80;
const T_DATE: u8 = 0x90;

/// Largest integer magnitude an `f64` holds exactly.
pub(crate) const EXACT_INT: i64 = 1 << 53;

/// A timestamp as 8 bytes whose order is time order (sign bit flipped, big-endian).
pub(crate) fn time_bytes(t: kernelci_core::time::Timestamp) -> [u8; 8] {
    ((t.as_micros() as u64) ^ (1 << 63)).to_be_bytes()
}

/// `prefix` + `parts`.
pub(crate) fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The smallest key greater than every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn num_bits(f: f64) -> [u8; 8] {
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    ordered.to_be_bytes()
}

/// Encodes one node value (a leaf found by `resolve`, or an array element).
/// Returns `None` for values an index cannot represent exactly (integers beyond
/// ±2^53), which make the document irregular for that index.
pub(crate) fn encode_val(out: &mut Vec<u8>, v: Val<'_>) -> Option<()> {
    match v {
        Val::Missing | Val::Null => out.push(T_NULL),
        Val::Bool(b) => out.extend_from_slice(&[T_BOOL, u8::from(b)]),
        Val::Int(i) => {
            if !(-EXACT_INT..=EXACT_INT).contains(&i) {
                return None;
            }
            out.push(T_NUM);
            out.extend_from_slice(&num_bits(i as f64));
        }
        Val::Float(f) => {
            out.push(T_NUM);
            // -0.0 equals 0 in the query language: one encoding for both.
            out.extend_from_slice(&num_bits(if f == 0.0 { 0.0 } else { f }));
        }
        Val::Str(s) => {
            out.push(T_STR);
            push_str(out, s.as_bytes());
        }
        Val::Date(t) => {
            out.push(T_DATE);
            out.extend_from_slice(&time_bytes(t));
        }
        Val::Id(id) => {
            out.push(T_ID);
            out.extend_from_slice(&id.bytes());
        }
        Val::Object(o) => {
            out.push(T_OBJ);
            push_str(
                out,
                canonical(&Value::Object(o.clone())).to_string().as_bytes(),
            );
        }
        Val::StrMap(m) => {
            out.push(T_OBJ);
            let json = serde_json::to_string(m).unwrap_or_default();
            push_str(out, json.as_bytes());
        }
        Val::Array(a) => {
            out.push(T_ARR);
            push_str(
                out,
                canonical(&Value::Array(a.to_vec())).to_string().as_bytes(),
            );
        }
        Val::Strings(s) => {
            out.push(T_ARR);
            let json = serde_json::to_string(s).unwrap_or_default();
            push_str(out, json.as_bytes());
        }
    }
    Some(())
}

/// `v` with the keys of every object in byte order: objects keep the order they were
/// sent in (serde_json's `preserve_order`), but equality in the query language
/// ignores key order, so index entries must not depend on it.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Encodes a query value the same way, or `None` when an index cannot look it up
/// exactly (integers beyond ±2^53).
pub(crate) fn encode_qvalue(out: &mut Vec<u8>, v: &QValue) -> Option<()> {
    match v {
        QValue::Null => encode_val(out, Val::Null),
        QValue::Bool(b) => encode_val(out, Val::Bool(*b)),
        QValue::Int(i) => encode_val(out, Val::Int(*i)),
        QValue::Str(s) => encode_val(out, Val::Str(s)),
        QValue::Date(t) => encode_val(out, Val::Date(*t)),
        QValue::Id(id) => encode_val(out, Val::Id(*id)),
        QValue::Doc(d) => encode_val(out, Val::Object(d)),
    }
}

/// The first byte of every encoding of a value of `v`'s type class, and one past the
/// last: a range predicate only matches values of its own type class.
pub(crate) fn type_class_bounds(v: &QValue) -> (u8, u8) {
    let tag = match v {
        QValue::Null => T_NULL,
        QValue::Bool(_) => T_BOOL,
        QValue::Int(_) => T_NUM,
        QValue::Str(_) => T_STR,
        QValue::Date(_) => T_DATE,
        QValue::Id(_) => T_ID,
        QValue::Doc(_) => T_OBJ,
    };
    (tag, tag + 1)
}

/// A decoded index value (for distinct-value walks: regex and `$ne` rewrites).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decoded {
    /// Null or missing.
    Null,
    /// A string.
    Str(String),
    /// Anything else (the planner only needs strings and null).
    Other,
}

/// Decodes one value from the front of `b`, returning it and the rest.
pub(crate) fn decode_one(b: &[u8]) -> Option<(Decoded, &[u8])> {
    let (&tag, rest) = b.split_first()?;
    match tag {
        T_NULL => Some((Decoded::Null, rest)),
        T_BOOL => Some((Decoded::Other, rest.get(1..)?)),
        T_NUM | T_DATE => Some((Decoded::Other, rest.get(8..)?)),
        T_ID => Some((Decoded::Other, rest.get(12..)?)),
        T_STR | T_OBJ | T_ARR => {
            let mut s = Vec::new();
            let mut i = 0;
            loop {
                match (rest.get(i)?, rest.get(i + 1)) {
                    (0, Some(0)) => break,
                    (0, Some(0xFF)) => {
                        s.push(0);
                        i += 2;
                    }
                    (0, _) => return None,
                    (&c, _) => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            let decoded = if tag == T_STR {
                Decoded::Str(String::from_utf8(s).ok()?)
            } else {
                Decoded::Other
            };
            Some((decoded, &rest[i + 2..]))
        }
        _ => None,
    }
}

/// The id at the end of an index key.
pub(crate) fn id_suffix(k: &[u8]) -> Option<ObjectId> {
    let tail: [u8; 12] = k.get(k.len().checked_sub(12)?..)?.try_into().ok()?;
    Some(ObjectId::from_bytes(tail))
}

/// A big-endian u64 value.
pub(crate) fn read_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::query::compare_values;
    use kernelci_core::time::Timestamp;

    fn enc(v: Val<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_val(&mut out, v).unwrap();
        out
    }

    #[test]
    fn byte_order_is_value_order() {
        let obj = serde_json::json!({"a": 1});
        let values = [
            Val::Null,
            Val::Int(-5),
            Val::Float(-0.5),
            Val::Int(0),
            Val::Float(2.5),
            Val::Int(3),
            Val::Str(""),
            Val::Str("a"),
            Val::Str("a\u{0}b"),
            Val::Str("ab"),
            Val::Str("b"),
            Val::Object(obj.as_object().unwrap()),
            Val::Id(ObjectId::from_bytes([1; 12])),
            Val::Bool(false),
            Val::Bool(true),
            Val::Date(Timestamp::from_micros(-5).unwrap()),
            Val::Date(Timestamp::from_micros(7).unwrap()),
        ];
        for w in values.windows(2) {
            assert_eq!(compare_values(w[0], w[1]), std::cmp::Ordering::Less);
            assert!(enc(w[0]) < enc(w[1]), "{:?} < {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn decoding_round_trips_strings() {
        let mut b = enc(Val::Str("x\u{0}y"));
        b.extend_from_slice(&[1, 2, 3]);
        let (d, rest) = decode_one(&b).unwrap();
        assert_eq!(d, Decoded::Str("x\u{0}y".into()));
        assert_eq!(rest, &[1, 2, 3]);
        assert_eq!(decode_one(&enc(Val::Null)).unwrap().0, Decoded::Null);
        assert!(decode_one(&[T_STR, b'a']).is_none(), "truncated");
        assert!(decode_one(&[0x99]).is_none(), "unknown tag");
    }

    #[test]
    fn big_integers_are_not_indexable() {
        let mut out = Vec::new();
        assert!(encode_val(&mut out, Val::Int(EXACT_INT + 1)).is_none());
        assert!(encode_val(&mut out, Val::Int(-EXACT_INT)).is_some());
    }

    #[test]
    fn prefix_end_is_the_next_prefix() {
        assert_eq!(prefix_end(b"Ia"), b"Ib".to_vec());
        assert_eq!(prefix_end(&[b'I', 0xFF]), vec![b'J']);
    }
}
