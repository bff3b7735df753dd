//! The stored form of a node document (layout 3): a compact binary encoding.
//!
//! A stored node value is `version (u64 BE)` followed by the document. Layout 3
//! writes the document as [`FORMAT_BINARY`] and this encoding; layouts 1 and 2 wrote
//! JSON, which starts with `{`, and [`decode_node`] still reads it (the migration
//! rewrites old documents on open, and a document not yet rewritten stays readable).
//!
//! Why not JSON: decoding a 1.3 KB KernelCI node from JSON costs about 4.6 µs, most
//! of it scanning for escapes and quotes, parsing numbers and datetimes, and 30-odd
//! object keys that every node repeats. Here:
//!
//! - the 23 fields of [`Node`] come in a fixed order, without names; which optional
//!   fields are present is one bit mask; the free-form `artifacts`, `data` and
//!   `debug` come last, so a query that filters on none of them is checked on a
//!   [`decode_head`] that never reads them;
//! - datetimes are microseconds: `created` as 8 bytes, `updated`, `timeout` and
//!   `holdoff` as zig-zag varint deltas from `created` (usually 3–5 bytes);
//! - ids are their 12 bytes, `state` and `result` one byte each;
//! - free-form JSON (`data`, `debug`) is a tagged tree: object keys found in
//!   `KEYS` (the field names of KernelCI's data models) are one byte, others are
//!   stored inline; strings are a varint length and their UTF-8 bytes.
//!
//! Decoding checks every length against the bytes left and every string for UTF-8,
//! and bounds nesting at [`MAX_DEPTH`]: damaged bytes give a [`CodecError`], never a
//! panic or an allocation larger than the input.

mod event;
mod json;
pub mod packed;

use std::collections::BTreeMap;

use kernelci_core::id::ObjectId;
use kernelci_core::node::{Node, NodeResult, State};
use kernelci_core::time::Timestamp;
use serde_json::{Map, Number, Value};

pub use event::{decode_event, encode_event, exercise_event_decode, FORMAT_EVENT};
pub use json::{exercise_json, write_node_json};

/// First byte of a binary document (after the version). JSON documents start with `{`.
pub const FORMAT_BINARY: u8 = 0xB5;

/// Deepest nesting of `data`/`debug` values that encodes. The API refuses bodies
/// nested deeper than 100 levels; this bounds the decoder's recursion on damaged bytes.
pub const MAX_DEPTH: usize = 512;

/// A key that is not in `KEYS` is written as `INLINE_KEY + its length`, then its
/// bytes. The base is fixed (not the dictionary's size), so appending to the
/// dictionary never changes how existing documents read.
const INLINE_KEY: usize = 0x80;

/// The most elements a decoder reserves room for before reading them: a damaged
/// count then costs at most this much memory per nesting level, not gigabytes.
const MAX_RESERVE: usize = 64;

/// Object keys encoded as one byte (their index here). Part of the on-disk format:
/// append only (up to [`INLINE_KEY`] entries), never reorder or remove.
const KEYS: &[&str] = &[
    // data (MODELS.md §4) and the workload's data
    "kernel_revision",
    "tree",
    "url",
    "branch",
    "commit",
    "describe",
    "version",
    "patchlevel",
    "sublevel",
    "extra",
    "name",
    "patchset",
    "commit_tags",
    "commit_message",
    "tip_of_branch",
    "arch",
    "defconfig",
    "compiler",
    "config_full",
    "kernel_type",
    "platform",
    "runtime",
    "device",
    "error_code",
    "error_msg",
    "job_id",
    "job_context",
    "regression",
    "misc",
    "fragments",
    "fail_node",
    "pass_node",
    "failed_kernel_revision",
    "node_sequence",
    "test_revision",
    "test_source",
    "architecture_filter",
    "result",
    "state",
    "kind",
    "path",
    "id",
    // artifacts
    "lava_log",
    "callback_data",
    "build_log",
    "metadata",
    "kernel",
    "modules",
    "_config",
    "dtbs",
    "tarball",
    "test_log",
    "results_json",
    "coverage_report",
    "config",
    "log",
];

/// Why stored bytes do not decode as a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes end inside a field.
    #[error("document truncated at byte {0}")]
    Truncated(usize),
    /// A byte or value that this layout never writes.
    #[error("invalid {what} at byte {at}")]
    Invalid {
        /// Which element.
        what: &'static str,
        /// Offset in the document.
        at: usize,
    },
    /// `data`/`debug` nested deeper than [`MAX_DEPTH`].
    #[error("nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The document ends before its last byte.
    #[error("{0} bytes after the end of the document")]
    Trailing(usize),
}

// Presence bits of the optional fields, in the order they are written.
const HAS_GROUP: u16 = 1;
const HAS_PARENT: u16 = 1 << 1;
const HAS_ARTIFACTS: u16 = 1 << 2;
const HAS_DATA: u16 = 1 << 3;
const HAS_DEBUG: u16 = 1 << 4;
const HAS_JOBFILTER: u16 = 1 << 5;
const HAS_PLATFORM_FILTER: u16 = 1 << 6;
const HAS_HOLDOFF: u16 = 1 << 7;
const HAS_OWNER: u16 = 1 << 8;
const HAS_SUBMITTER: u16 = 1 << 9;
const HAS_TREEID: u16 = 1 << 10;
const PROCESSED: u16 = 1 << 11;
const ALL_BITS: u16 = (1 << 12) - 1;

// Value tags.
const T_NULL: u8 = 0;
const T_FALSE: u8 = 1;
const T_TRUE: u8 = 2;
const T_INT: u8 = 3;
const T_UINT: u8 = 4;
const T_FLOAT: u8 = 5;
const T_STR: u8 = 6;
const T_ARRAY: u8 = 7;
const T_OBJECT: u8 = 8;

/// Appends the binary form of `node` (with its [`FORMAT_BINARY`] byte) to `out`.
pub fn encode_node(node: &Node, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut w = Writer { out };
    w.out.push(FORMAT_BINARY);
    let bits = [
        (node.group.is_some(), HAS_GROUP),
        (node.parent.is_some(), HAS_PARENT),
        (node.artifacts.is_some(), HAS_ARTIFACTS),
        (node.data.is_some(), HAS_DATA),
        (node.debug.is_some(), HAS_DEBUG),
        (node.jobfilter.is_some(), HAS_JOBFILTER),
        (node.platform_filter.is_some(), HAS_PLATFORM_FILTER),
        (node.holdoff.is_some(), HAS_HOLDOFF),
        (node.owner.is_some(), HAS_OWNER),
        (node.submitter.is_some(), HAS_SUBMITTER),
        (node.treeid.is_some(), HAS_TREEID),
        (node.processed_by_kcidb_bridge, PROCESSED),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0u16, |acc, (_, bit)| acc | bit);
    w.out.extend_from_slice(&bits.to_le_bytes());
    w.out.extend_from_slice(&node.id.bytes());
    w.str(&node.kind);
    w.str(&node.name);
    w.strs(&node.path);
    if let Some(g) = &node.group {
        w.str(g);
    }
    if let Some(p) = &node.parent {
        w.out.extend_from_slice(&p.bytes());
    }
    w.out.push(state_byte(node.state));
    w.out.push(node.result.map_or(0, result_byte));
    if let Some(v) = &node.jobfilter {
        w.strs(v);
    }
    if let Some(v) = &node.platform_filter {
        w.strs(v);
    }
    let created = node.created.as_micros();
    w.out.extend_from_slice(&created.to_le_bytes());
    w.int(node.updated.as_micros().wrapping_sub(created));
    w.int(node.timeout.as_micros().wrapping_sub(created));
    if let Some(h) = node.holdoff {
        w.int(h.as_micros().wrapping_sub(created));
    }
    for s in [&node.owner, &node.submitter, &node.treeid]
        .into_iter()
        .flatten()
    {
        w.str(s);
    }
    w.strs(&node.user_groups);
    w.int(node.retry_counter);
    // The free-form tail, last: a head decode stops before it.
    if let Some(a) = &node.artifacts {
        w.uint(a.len() as u64);
        for (k, v) in a {
            w.key(k);
            w.str(v);
        }
    }
    if let Some(d) = &node.data {
        w.object(d, 1)?;
    }
    if let Some(d) = &node.debug {
        w.object(d, 1)?;
    }
    Ok(())
}

/// Decodes a binary document (starting at its [`FORMAT_BINARY`] byte).
pub fn decode_node(b: &[u8]) -> Result<Node, CodecError> {
    decode(b, true)
}

/// Decodes every field of a binary document but `artifacts`, `data` and `debug`
/// (left `None`), which are stored last and not read: enough to check a query that
/// filters on none of them, at a fraction of the cost (see [`head_suffices`]).
pub fn decode_head(b: &[u8]) -> Result<Node, CodecError> {
    decode(b, false)
}

/// Whether a filter on the field `path` (dotted) can be checked on the node
/// [`decode_head`] returns.
pub fn head_suffices(path: &str) -> bool {
    let top = path.split('.').next().unwrap_or(path);
    !matches!(top, "artifacts" | "data" | "debug")
}

fn decode(b: &[u8], full: bool) -> Result<Node, CodecError> {
    let mut r = Reader { b, at: 0 };
    let h = Head::read(&mut r, Reader::strings)?;
    let has = |bit: u16| h.bits & bit != 0;
    let (artifacts, data, debug) = if full {
        let artifacts = r.opt(has(HAS_ARTIFACTS), |r| {
            let n = r.count()?;
            let mut m = BTreeMap::new();
            for _ in 0..n {
                let k = r.key()?;
                let v = r.string()?;
                m.insert(k, v);
            }
            Ok(m)
        })?;
        let data = r.opt(has(HAS_DATA), |r| r.object(1))?;
        let debug = r.opt(has(HAS_DEBUG), |r| r.object(1))?;
        if r.at != b.len() {
            return Err(CodecError::Trailing(b.len() - r.at));
        }
        (artifacts, data, debug)
    } else {
        (None, None, None)
    };
    let owned = |s: Option<&str>| s.map(str::to_owned);
    Ok(Node {
        id: h.id,
        kind: h.kind.to_owned(),
        name: h.name.to_owned(),
        path: h.path,
        group: owned(h.group),
        parent: h.parent,
        state: h.state,
        result: h.result,
        artifacts,
        data,
        debug,
        jobfilter: h.jobfilter,
        platform_filter: h.platform_filter,
        created: h.created,
        updated: h.updated,
        timeout: h.timeout,
        holdoff: h.holdoff,
        owner: owned(h.owner),
        submitter: owned(h.submitter),
        treeid: owned(h.treeid),
        user_groups: h.user_groups,
        processed_by_kcidb_bridge: has(PROCESSED),
        retry_counter: h.retry_counter,
    })
}

/// Where a list of strings of the head starts (its strings already checked by
/// [`Reader::skip_strings`]), to be read again from there.
#[derive(Clone, Copy)]
struct Strs(usize);

/// Every field of a binary document before its free-form tail, as stored: strings
/// borrowed, each list of strings as `L` (owned `Vec<String>` for [`decode`],
/// located [`Strs`] for [`json::write_node_json`]). Reading it checks the whole
/// head.
struct Head<'a, L> {
    bits: u16,
    id: ObjectId,
    kind: &'a str,
    name: &'a str,
    path: L,
    group: Option<&'a str>,
    parent: Option<ObjectId>,
    state: State,
    result: Option<NodeResult>,
    jobfilter: Option<L>,
    platform_filter: Option<L>,
    created: Timestamp,
    updated: Timestamp,
    timeout: Timestamp,
    holdoff: Option<Timestamp>,
    owner: Option<&'a str>,
    submitter: Option<&'a str>,
    treeid: Option<&'a str>,
    user_groups: L,
    retry_counter: i64,
}

impl<'a, L> Head<'a, L> {
    /// Reads the head from the document's first byte, each list with `list`; `r`
    /// is left at the tail.
    fn read(
        r: &mut Reader<'a>,
        list: impl Fn(&mut Reader<'a>) -> Result<L, CodecError>,
    ) -> Result<Self, CodecError> {
        if r.byte()? != FORMAT_BINARY {
            return Err(r.invalid("format byte"));
        }
        let bits = u16::from_le_bytes(r.array::<2>()?);
        if bits & !ALL_BITS != 0 {
            return Err(r.invalid("presence bits"));
        }
        let has = |bit: u16| bits & bit != 0;
        let id = ObjectId::from_bytes(r.array()?);
        let kind = r.str_ref()?;
        let name = r.str_ref()?;
        let path = list(r)?;
        let group = r.opt(has(HAS_GROUP), Reader::str_ref)?;
        let parent = r.opt(has(HAS_PARENT), |r| Ok(ObjectId::from_bytes(r.array()?)))?;
        let state = r.state()?;
        let result = r.result()?;
        let jobfilter = r.opt(has(HAS_JOBFILTER), &list)?;
        let platform_filter = r.opt(has(HAS_PLATFORM_FILTER), &list)?;
        let created_us = i64::from_le_bytes(r.array()?);
        let created = r.time(created_us, 0)?;
        let updated = r.delta_time(created_us)?;
        let timeout = r.delta_time(created_us)?;
        let holdoff = r.opt(has(HAS_HOLDOFF), |r| r.delta_time(created_us))?;
        let owner = r.opt(has(HAS_OWNER), Reader::str_ref)?;
        let submitter = r.opt(has(HAS_SUBMITTER), Reader::str_ref)?;
        let treeid = r.opt(has(HAS_TREEID), Reader::str_ref)?;
        let user_groups = list(r)?;
        let retry_counter = r.int()?;
        Ok(Head {
            bits,
            id,
            kind,
            name,
            path,
            group,
            parent,
            state,
            result,
            jobfilter,
            platform_filter,
            created,
            updated,
            timeout,
            holdoff,
            owner,
            submitter,
            treeid,
            user_groups,
            retry_counter,
        })
    }
}

/// The body of the `doc_decode` fuzz target (and of its corpus replay test): any
/// bytes, as a stored document, decode to a node or an error, never a panic; a node
/// that decodes encodes back to the same bytes.
pub fn exercise_decode(data: &[u8]) {
    let mut doc = vec![FORMAT_BINARY];
    doc.extend_from_slice(data);
    if let Ok(node) = decode_node(&doc) {
        let mut again = Vec::new();
        if encode_node(&node, &mut again).is_ok() {
            assert_eq!(
                decode_node(&again).as_ref(),
                Ok(&node),
                "re-encoded node differs"
            );
        }
    }
}

fn state_byte(s: State) -> u8 {
    match s {
        State::Running => 0,
        State::Available => 1,
        State::Closing => 2,
        State::Done => 3,
    }
}

fn result_byte(r: NodeResult) -> u8 {
    match r {
        NodeResult::Pass => 1,
        NodeResult::Fail => 2,
        NodeResult::Skip => 3,
        NodeResult::Incomplete => 4,
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn uint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.out.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.out.push(v as u8);
    }

    fn int(&mut self, v: i64) {
        self.uint(zigzag(v));
    }

    fn str(&mut self, s: &str) {
        self.uint(s.len() as u64);
        self.out.extend_from_slice(s.as_bytes());
    }

    fn strs(&mut self, v: &[String]) {
        self.uint(v.len() as u64);
        for s in v {
            self.str(s);
        }
    }

    /// A dictionary key is its index; another key is `INLINE_KEY + length`, then
    /// its bytes.
    fn key(&mut self, k: &str) {
        match KEYS.iter().position(|d| *d == k) {
            Some(i) => self.uint(i as u64),
            None => {
                self.uint((INLINE_KEY + k.len()) as u64);
                self.out.extend_from_slice(k.as_bytes());
            }
        }
    }

    fn object(&mut self, m: &Map<String, Value>, depth: usize) -> Result<(), CodecError> {
        self.uint(m.len() as u64);
        for (k, v) in m {
            self.key(k);
            self.value(v, depth + 1)?;
        }
        Ok(())
    }

    fn value(&mut self, v: &Value, depth: usize) -> Result<(), CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep);
        }
        match v {
            Value::Null => self.out.push(T_NULL),
            Value::Bool(false) => self.out.push(T_FALSE),
            Value::Bool(true) => self.out.push(T_TRUE),
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.out.push(T_INT);
                    self.int(i);
                } else if let Some(u) = n.as_u64() {
                    self.out.push(T_UINT);
                    self.uint(u);
                } else {
                    self.out.push(T_FLOAT);
                    let f = n.as_f64().unwrap_or(0.0);
                    self.out.extend_from_slice(&f.to_le_bytes());
                }
            }
            Value::String(s) => {
                self.out.push(T_STR);
                self.str(s);
            }
            Value::Array(a) => {
                self.out.push(T_ARRAY);
                self.uint(a.len() as u64);
                for x in a {
                    self.value(x, depth + 1)?;
                }
            }
            Value::Object(m) => {
                self.out.push(T_OBJECT);
                self.object(m, depth)?;
            }
        }
        Ok(())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn invalid(&self, what: &'static str) -> CodecError {
        CodecError::Invalid { what, at: self.at }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(CodecError::Truncated(self.at))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn uint(&mut self) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            v |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.invalid("varint"))
    }

    fn int(&mut self) -> Result<i64, CodecError> {
        Ok(unzigzag(self.uint()?))
    }

    /// A count of elements, each at least one byte: never more than the bytes left.
    /// Callers reserve at most [`MAX_RESERVE`] slots up front: every level of a
    /// damaged, deeply nested document could otherwise reserve its count times the
    /// element size at once.
    fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.uint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.b.len() - self.at => Ok(n),
            _ => Err(self.invalid("count")),
        }
    }

    fn utf8(&mut self, n: usize) -> Result<&'a str, CodecError> {
        let at = self.at;
        let bytes = self.take(n)?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::Invalid { what: "UTF-8", at })
    }

    /// A string, borrowed from the document.
    fn str_ref(&mut self) -> Result<&'a str, CodecError> {
        let n = self.uint()?;
        let n = usize::try_from(n).map_err(|_| self.invalid("length"))?;
        self.utf8(n)
    }

    fn string(&mut self) -> Result<String, CodecError> {
        self.str_ref().map(str::to_owned)
    }

    fn strings(&mut self) -> Result<Vec<String>, CodecError> {
        let n = self.count()?;
        let mut v = Vec::with_capacity(n.min(MAX_RESERVE));
        for _ in 0..n {
            v.push(self.string()?);
        }
        Ok(v)
    }

    /// Skips a list of strings (checking each as [`Reader::str_ref`] does) and
    /// says where it starts.
    fn skip_strings(&mut self) -> Result<Strs, CodecError> {
        let at = self.at;
        let n = self.count()?;
        for _ in 0..n {
            self.str_ref()?;
        }
        Ok(Strs(at))
    }

    fn key(&mut self) -> Result<String, CodecError> {
        self.key_ref().map(str::to_owned)
    }

    /// An object key, borrowed from the dictionary or the document.
    fn key_ref(&mut self) -> Result<&'a str, CodecError> {
        let k = self.uint()?;
        match usize::try_from(k) {
            Ok(i) if i < KEYS.len() => Ok(KEYS[i]),
            Ok(i) if i >= INLINE_KEY => self.utf8(i - INLINE_KEY),
            _ => Err(self.invalid("key")),
        }
    }

    fn state(&mut self) -> Result<State, CodecError> {
        Ok(match self.byte()? {
            0 => State::Running,
            1 => State::Available,
            2 => State::Closing,
            3 => State::Done,
            _ => return Err(self.invalid("state")),
        })
    }

    fn result(&mut self) -> Result<Option<NodeResult>, CodecError> {
        Ok(match self.byte()? {
            0 => None,
            1 => Some(NodeResult::Pass),
            2 => Some(NodeResult::Fail),
            3 => Some(NodeResult::Skip),
            4 => Some(NodeResult::Incomplete),
            _ => return Err(self.invalid("result")),
        })
    }

    fn opt<T>(
        &mut self,
        present: bool,
        f: impl FnOnce(&mut Self) -> Result<T, CodecError>,
    ) -> Result<Option<T>, CodecError> {
        if present {
            f(self).map(Some)
        } else {
            Ok(None)
        }
    }

    fn time(&self, base: i64, delta: i64) -> Result<Timestamp, CodecError> {
        base.checked_add(delta)
            .and_then(Timestamp::from_micros)
            .ok_or_else(|| self.invalid("datetime"))
    }

    fn delta_time(&mut self, base: i64) -> Result<Timestamp, CodecError> {
        let d = self.int()?;
        self.time(base, d)
    }

    fn object(&mut self, depth: usize) -> Result<Map<String, Value>, CodecError> {
        let n = self.count()?;
        // Keys were written in order: collecting pairs lets the map bulk-build.
        let mut pairs = Vec::with_capacity(n.min(MAX_RESERVE));
        for _ in 0..n {
            let k = self.key()?;
            pairs.push((k, self.value(depth + 1)?));
        }
        Ok(Map::from_iter(pairs))
    }

    fn value(&mut self, depth: usize) -> Result<Value, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep);
        }
        Ok(match self.byte()? {
            T_NULL => Value::Null,
            T_FALSE => Value::Bool(false),
            T_TRUE => Value::Bool(true),
            T_INT => Value::Number(self.int()?.into()),
            T_UINT => Value::Number(self.uint()?.into()),
            T_FLOAT => {
                let f = f64::from_le_bytes(self.array()?);
                Value::Number(Number::from_f64(f).ok_or_else(|| self.invalid("number"))?)
            }
            T_STR => Value::String(self.string()?),
            T_ARRAY => {
                let n = self.count()?;
                let mut a = Vec::with_capacity(n.min(MAX_RESERVE));
                for _ in 0..n {
                    a.push(self.value(depth + 1)?);
                }
                Value::Array(a)
            }
            T_OBJECT => Value::Object(self.object(depth)?),
            _ => return Err(self.invalid("value tag")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::arbitrary;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> Node {
        let mut n = Node::new("test", "baseline", Timestamp::now().truncate_to_millis());
        n.parent = Some(ObjectId::new());
        n.group = Some("baseline-arm".into());
        n.result = Some(NodeResult::Fail);
        n.holdoff = Some(n.created.plus_seconds(-5));
        n.owner = Some("production".into());
        n.processed_by_kcidb_bridge = true;
        n.retry_counter = -3;
        n.data = json!({
            "kernel_revision": {"tree": "next", "version": {"version": 7, "sublevel": null}},
            "unknown key": [1.5, u64::MAX, i64::MIN, "s", true, false, {"": {}}],
        })
        .as_object()
        .cloned();
        n
    }

    fn roundtrip(n: &Node) -> Node {
        let mut b = Vec::new();
        encode_node(n, &mut b).unwrap();
        decode_node(&b).unwrap()
    }

    #[test]
    fn sample_round_trips() {
        let n = sample();
        assert_eq!(roundtrip(&n), n);
    }

    #[test]
    fn the_head_is_the_node_without_its_free_form_tail() {
        let n = sample();
        let mut b = Vec::new();
        encode_node(&n, &mut b).unwrap();
        let head = decode_head(&b).unwrap();
        let mut expected = n.clone();
        expected.artifacts = None;
        expected.data = None;
        expected.debug = None;
        assert_eq!(head, expected);
        assert!(head_suffices("created") && head_suffices("processed_by_kcidb_bridge"));
        assert!(!head_suffices("data.kernel_revision.tree") && !head_suffices("artifacts"));
    }

    #[test]
    fn every_state_and_result_round_trips() {
        let mut n = sample();
        for s in State::ALL {
            for r in NodeResult::ALL.map(Some).into_iter().chain([None]) {
                n.state = s;
                n.result = r;
                assert_eq!(roundtrip(&n), n);
            }
        }
    }

    #[test]
    fn every_truncation_and_byte_flip_is_an_error_or_a_node() {
        let mut b = Vec::new();
        encode_node(&sample(), &mut b).unwrap();
        for len in 0..b.len() {
            assert!(
                decode_node(&b[..len]).is_err(),
                "prefix of {len} bytes decoded"
            );
        }
        for i in 0..b.len() {
            for x in [0x00, 0x7F, 0x80, 0xFF] {
                let mut d = b.clone();
                d[i] = x;
                let _ = decode_node(&d); // must not panic
            }
        }
        let mut long = b.clone();
        long.push(0);
        assert_eq!(decode_node(&long), Err(CodecError::Trailing(1)));
    }

    #[test]
    fn deep_nesting_is_refused_both_ways() {
        let mut v = json!(null);
        for _ in 0..MAX_DEPTH + 2 {
            v = json!([v]);
        }
        let mut n = sample();
        n.data = Some(Map::from_iter([("deep".to_owned(), v)]));
        assert_eq!(encode_node(&n, &mut Vec::new()), Err(CodecError::TooDeep));
        // Damaged bytes of nested arrays stop at the bound, not at the stack's end.
        let garbage: Vec<u8> = std::iter::repeat_n([T_ARRAY, 1], 100_000)
            .flatten()
            .collect();
        let mut r = Reader { b: &garbage, at: 0 };
        assert_eq!(r.value(1), Err(CodecError::TooDeep));
    }

    #[test]
    fn dictionary_keys_are_unique_and_smaller_than_inline_ones() {
        let mut seen = std::collections::HashSet::new();
        assert!(KEYS.iter().all(|k| seen.insert(*k)));
        assert!(
            KEYS.len() <= INLINE_KEY,
            "dictionary keys stay below inline keys"
        );
        // An inline key reads the same whatever the dictionary's size: its marker
        // does not depend on KEYS.len().
        let mut b = Vec::new();
        Writer { out: &mut b }.key("not in the dictionary");
        assert_eq!(b[0] as usize, INLINE_KEY + "not in the dictionary".len());
    }

    proptest! {
        #[test]
        fn arbitrary_nodes_round_trip(n in arbitrary::node()) {
            prop_assert_eq!(roundtrip(&n), n);
        }

        #[test]
        fn arbitrary_json_round_trips(
            mut n in arbitrary::node(),
            data in arbitrary::json_value(),
            debug in arbitrary::json_value(),
        ) {
            n.data = Some(Map::from_iter([("v".to_owned(), data)]));
            n.debug = debug.as_object().cloned();
            n.jobfilter = Some(vec!["é".into(), String::new()]);
            prop_assert_eq!(roundtrip(&n), n);
        }
    }
}
