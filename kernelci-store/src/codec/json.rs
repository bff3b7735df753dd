//! A binary document written straight as the API's JSON, without building a
//! [`Node`](kernelci_core::node::Node).
//!
//! `GET /node/{id}` answers with a stored document as JSON. Decoding it into a
//! `Node` first allocates a `String` per field and a `serde_json` map for `data`
//! (hashing every key), and serialising it walks all of that again; here one pass
//! over the stored bytes writes the answer. The output is byte for byte what
//! `serde_json` writes for the decoded node (the 23 keys in `Node`'s declaration
//! order, absent options as `null`, `data` keys in their stored order, strings
//! escaped and numbers formatted by `serde_json` itself), which a property test
//! checks over arbitrary nodes. That holds for every document [`super::encode_node`]
//! writes; a damaged one that repeats a `data` key or lists `artifacts` out of
//! order (which the encoder never writes) is written as stored, where decoding
//! would keep one of each key.
//!
//! The stored order is not the JSON order (`artifacts`, `data` and `debug` are
//! stored last so that a head decode can stop before them): the head is read
//! first, borrowing its strings and noting where its lists start, then written
//! in the JSON order, reading the tail when its keys come. The checks are the
//! decoder's: a damaged document gives a [`CodecError`] (and `out` holds a partial
//! answer the caller must drop), never a panic.

use kernelci_core::id::ObjectId;
use kernelci_core::time::Timestamp;

use super::{
    CodecError, Head, Reader, Strs, FORMAT_BINARY, HAS_ARTIFACTS, HAS_DATA, HAS_DEBUG, MAX_DEPTH,
    PROCESSED, T_ARRAY, T_FALSE, T_FLOAT, T_INT, T_NULL, T_OBJECT, T_STR, T_TRUE, T_UINT,
};

/// Appends the API's JSON for the binary document `b` (starting at its
/// [`FORMAT_BINARY`] byte) to `out`: what `serde_json::to_vec(&decode_node(b)?)`
/// gives, in one pass and without allocating per field.
pub fn write_node_json(b: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let mut r = Reader { b, at: 0 };
    let h = Head::read(&mut r, Reader::skip_strings)?;
    let has = |bit: u16| h.bits & bit != 0;

    let mut w = JsonWriter { out, b };
    w.raw("{\"id\":");
    w.id(h.id);
    w.raw(",\"kind\":");
    w.str(h.kind)?;
    w.raw(",\"name\":");
    w.str(h.name)?;
    w.raw(",\"path\":");
    w.strings(h.path)?;
    w.raw(",\"group\":");
    w.opt_str(h.group)?;
    w.raw(",\"parent\":");
    match h.parent {
        Some(p) => w.id(p),
        None => w.raw("null"),
    }
    w.raw(",\"state\":\"");
    w.raw(h.state.as_str());
    w.raw("\",\"result\":");
    match h.result {
        Some(res) => {
            w.raw("\"");
            w.raw(res.as_str());
            w.raw("\"");
        }
        None => w.raw("null"),
    }
    // The tail, stored last, goes here in the JSON order.
    w.raw(",\"artifacts\":");
    if has(HAS_ARTIFACTS) {
        let n = r.count()?;
        w.seq(('{', '}'), n, |w| {
            w.str(r.key_ref()?)?;
            w.raw(":");
            w.str(r.str_ref()?)
        })?;
    } else {
        w.raw("null");
    }
    w.raw(",\"data\":");
    if has(HAS_DATA) {
        w.object(&mut r, 1)?;
    } else {
        w.raw("null");
    }
    w.raw(",\"debug\":");
    if has(HAS_DEBUG) {
        w.object(&mut r, 1)?;
    } else {
        w.raw("null");
    }
    if r.at != b.len() {
        return Err(CodecError::Trailing(b.len() - r.at));
    }
    w.raw(",\"jobfilter\":");
    w.opt_strings(h.jobfilter)?;
    w.raw(",\"platform_filter\":");
    w.opt_strings(h.platform_filter)?;
    w.raw(",\"created\":");
    w.time(h.created);
    w.raw(",\"updated\":");
    w.time(h.updated);
    w.raw(",\"timeout\":");
    w.time(h.timeout);
    w.raw(",\"holdoff\":");
    match h.holdoff {
        Some(t) => w.time(t),
        None => w.raw("null"),
    }
    w.raw(",\"owner\":");
    w.opt_str(h.owner)?;
    w.raw(",\"submitter\":");
    w.opt_str(h.submitter)?;
    w.raw(",\"treeid\":");
    w.opt_str(h.treeid)?;
    w.raw(",\"user_groups\":");
    w.strings(h.user_groups)?;
    w.raw(",\"processed_by_kcidb_bridge\":");
    w.raw(if has(PROCESSED) { "true" } else { "false" });
    w.raw(",\"retry_counter\":");
    w.number(h.retry_counter)?;
    w.raw("}");
    Ok(())
}

/// The body of the `doc_json` fuzz target (and of its corpus replay test): any
/// bytes, as a stored document, either fail to write as JSON, or write the JSON
/// that serialising their decoded node gives; and they write exactly when they
/// decode.
pub fn exercise_json(data: &[u8]) {
    let mut doc = vec![FORMAT_BINARY];
    doc.extend_from_slice(data);
    let mut out = Vec::new();
    let written = write_node_json(&doc, &mut out);
    match super::decode_node(&doc) {
        Ok(node) => {
            assert!(written.is_ok(), "decodes but does not write: {written:?}");
            // A damaged object may repeat a key, which the decoded map keeps
            // once: compare only when the decoded node re-encodes to the input.
            let mut again = Vec::new();
            if super::encode_node(&node, &mut again).is_ok() && again == doc {
                let expected = serde_json::to_vec(&node).unwrap_or_default();
                assert_eq!(out, expected, "written JSON differs from serde_json's");
            }
        }
        Err(_) => assert!(written.is_err(), "writes but does not decode"),
    }
}

/// Writes JSON into `out`; `b` is the document, for lists re-read by offset.
struct JsonWriter<'o, 'a> {
    out: &'o mut Vec<u8>,
    b: &'a [u8],
}

impl JsonWriter<'_, '_> {
    fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    /// `n` elements written by `each`, separated by commas, between `brackets`.
    fn seq(
        &mut self,
        brackets: (char, char),
        n: usize,
        mut each: impl FnMut(&mut Self) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        self.out.push(brackets.0 as u8);
        for i in 0..n {
            if i > 0 {
                self.out.push(b',');
            }
            each(self)?;
        }
        self.out.push(brackets.1 as u8);
        Ok(())
    }

    /// A string, escaped by `serde_json`.
    fn str(&mut self, s: &str) -> Result<(), CodecError> {
        serde_json::to_writer(&mut *self.out, s).map_err(|_| CodecError::Invalid {
            what: "JSON string",
            at: 0,
        })
    }

    fn opt_str(&mut self, s: Option<&str>) -> Result<(), CodecError> {
        match s {
            Some(s) => self.str(s),
            None => {
                self.raw("null");
                Ok(())
            }
        }
    }

    /// The list of strings stored at `at` (already checked by
    /// [`Reader::skip_strings`]).
    fn strings(&mut self, at: Strs) -> Result<(), CodecError> {
        let mut r = Reader {
            b: self.b,
            at: at.0,
        };
        let n = r.count()?;
        self.seq(('[', ']'), n, |w| w.str(r.str_ref()?))
    }

    fn opt_strings(&mut self, at: Option<Strs>) -> Result<(), CodecError> {
        match at {
            Some(at) => self.strings(at),
            None => {
                self.raw("null");
                Ok(())
            }
        }
    }

    fn id(&mut self, id: ObjectId) {
        self.raw("\"");
        self.raw(id.to_hex().as_str());
        self.raw("\"");
    }

    fn time(&mut self, t: Timestamp) {
        self.raw("\"");
        self.raw(t.to_text().as_str());
        self.raw("\"");
    }

    /// A number as `serde_json` formats it (`itoa` for integers, `ryu` for floats).
    fn number<T: serde::Serialize>(&mut self, v: T) -> Result<(), CodecError> {
        serde_json::to_writer(&mut *self.out, &v).map_err(|_| CodecError::Invalid {
            what: "JSON number",
            at: 0,
        })
    }

    /// An object of `data`/`debug` at `r`, `depth` levels down (see
    /// [`super::MAX_DEPTH`]).
    fn object(&mut self, r: &mut Reader<'_>, depth: usize) -> Result<(), CodecError> {
        let n = r.count()?;
        self.seq(('{', '}'), n, |w| {
            w.str(r.key_ref()?)?;
            w.raw(":");
            w.value(r, depth + 1)
        })
    }

    fn value(&mut self, r: &mut Reader<'_>, depth: usize) -> Result<(), CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::TooDeep);
        }
        match r.byte()? {
            T_NULL => self.raw("null"),
            T_FALSE => self.raw("false"),
            T_TRUE => self.raw("true"),
            T_INT => self.number(r.int()?)?,
            T_UINT => self.number(r.uint()?)?,
            T_FLOAT => {
                let f = f64::from_le_bytes(r.array()?);
                // The decoder refuses what JSON cannot hold (serde_json would
                // write `null`).
                if !f.is_finite() {
                    return Err(r.invalid("number"));
                }
                self.number(f)?;
            }
            T_STR => self.str(r.str_ref()?)?,
            T_ARRAY => {
                let n = r.count()?;
                self.seq(('[', ']'), n, |w| w.value(r, depth + 1))?;
            }
            T_OBJECT => self.object(r, depth)?,
            _ => return Err(r.invalid("value tag")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::arbitrary;
    use kernelci_core::node::Node;
    use proptest::prelude::*;
    use serde_json::Value;

    fn json_of(node: &Node) -> Vec<u8> {
        let mut doc = Vec::new();
        super::super::encode_node(node, &mut doc).expect("encodes");
        let mut out = Vec::new();
        write_node_json(&doc, &mut out).expect("writes");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every node writes exactly the JSON serde_json gives for it.
        #[test]
        fn same_as_serde_json(node in arbitrary::node()) {
            let expected = serde_json::to_vec(&node).expect("serialises");
            let written = json_of(&node);
            prop_assert_eq!(String::from_utf8_lossy(&written), String::from_utf8_lossy(&expected));
        }

        /// Free-form fields of any shape, strings needing escapes, any datetime.
        #[test]
        fn any_content_same_as_serde_json(
            node in arbitrary::node(),
            data in arbitrary::json_value(),
            debug in arbitrary::json_value(),
            name in any::<String>(),
            owner in prop::option::of(any::<String>()),
            jobfilter in prop::option::of(prop::collection::vec(any::<String>(), 0..4)),
            artifacts in prop::collection::btree_map(any::<String>(), any::<String>(), 0..4),
            created in -62_135_596_800_000_000i64..253_402_300_799_000_000,
            delta in -1_000_000_000i64..1_000_000_000,
        ) {
            let mut node = node;
            let object = |v: Value| match v {
                Value::Object(m) => m,
                other => [("v".to_owned(), other)].into_iter().collect(),
            };
            node.data = Some(object(data));
            node.debug = Some(object(debug));
            node.name = name;
            node.owner = owner;
            node.jobfilter = jobfilter;
            node.artifacts = Some(artifacts);
            if let (Some(c), Some(u)) = (
                Timestamp::from_micros(created),
                Timestamp::from_micros(created.saturating_add(delta)),
            ) {
                node.created = c;
                node.updated = u;
            }
            let expected = serde_json::to_vec(&node).expect("serialises");
            let written = json_of(&node);
            prop_assert_eq!(String::from_utf8_lossy(&written), String::from_utf8_lossy(&expected));
        }
    }

    #[test]
    fn a_minimal_node_and_a_full_one() {
        let now = Timestamp::from_micros(1_700_000_000_123_456).expect("in range");
        let mut node = Node::new("test", "baseline \"x86\"\n", now);
        assert_eq!(json_of(&node), serde_json::to_vec(&node).expect("json"));
        node.data = None;
        node.artifacts = None;
        node.debug = None;
        node.platform_filter = None;
        assert_eq!(json_of(&node), serde_json::to_vec(&node).expect("json"));
        let v = serde_json::json!({
            "kernel_revision": {"tree": "mainline", "unknown key ✓": [1, -2, 2.5, 1e300, u64::MAX, null, true, false]},
            "nested": {"a": {"b": {"c": []}}, "e": {}},
        });
        node.data = v.as_object().cloned();
        node.artifacts = Some([("log".to_owned(), "https://x/y?z=\"q\"".to_owned())].into());
        node.group = Some("g".into());
        node.parent = Some(ObjectId::new());
        node.result = Some(kernelci_core::node::NodeResult::Incomplete);
        node.holdoff = Some(now);
        node.owner = Some("o\u{1}".into());
        node.jobfilter = Some(vec!["a".into(), "b".into()]);
        node.processed_by_kcidb_bridge = true;
        node.retry_counter = -3;
        assert_eq!(json_of(&node), serde_json::to_vec(&node).expect("json"));
    }

    #[test]
    fn damaged_documents_are_errors() {
        let now = Timestamp::from_micros(1_700_000_000_000_000).expect("in range");
        let mut node = Node::new("kbuild", "gcc-12", now);
        node.data = serde_json::json!({"arch": "x86_64", "x": [1.5, "s"]})
            .as_object()
            .cloned();
        let mut doc = Vec::new();
        super::super::encode_node(&node, &mut doc).expect("encodes");
        for cut in 0..doc.len() {
            let mut out = Vec::new();
            assert!(
                write_node_json(&doc[..cut], &mut out).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = doc.clone();
        longer.push(0);
        assert_eq!(
            write_node_json(&longer, &mut Vec::new()),
            Err(CodecError::Trailing(1))
        );
        for at in 1..doc.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                let mut bad = doc.clone();
                bad[at] ^= flip;
                exercise_json(&bad[1..]);
            }
        }
    }
}
