//! Counter rows: how `count_all_nodes`, `/count` and page totals on an equality over
//! a counted index are answered without `COUNT(*)` (upstream kernelci-api issue 549:
//! `kind=test&limit=1` took 6 s).
//!
//! `kci_counts(ix, key, shard, n)` holds, for each counted index `ix` and each value
//! tuple `key`, how many nodes have it, spread over [`SHARDS`] rows so that
//! concurrent writers rarely wait for the same row (a count is the sum of at most
//! 16 rows, read through the primary key). `ix = 0, key = ''` is the number of nodes.
//! Every node write changes the counters in its own transaction, rows in (ix, key)
//! order so two writers never lock them in opposite orders.
//!
//! Counted: every declared index whose fields all hold one value per node and are
//! compared by equality (not `path`/`user_groups`, not the datetimes), except `name`
//! and `data.kernel_revision.commit`, whose values are nearly unique per node (a row
//! per node would double the table for counts nobody asks). A `data.*` path counts
//! regular rows only; a count over it is used only while no row is irregular there
//! (see the `query` module).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use kernelci_core::node::Node;
use kernelci_core::query::{Cond, FieldPath, QValue, Query, Root};

use super::query::data_paths;
use crate::INDEXES;

/// Counter rows per (index, key).
pub(crate) const SHARDS: u64 = 16;

/// The index id of the node total.
pub(crate) const TOTAL: i16 = 0;

/// Fields too selective to be worth a counter row per value.
const NOT_COUNTED: [&str; 2] = ["name", "data.kernel_revision.commit"];

/// The counted indexes: id and field paths.
pub(crate) fn counted() -> &'static [(i16, Vec<FieldPath>)] {
    static COUNTED: OnceLock<Vec<(i16, Vec<FieldPath>)>> = OnceLock::new();
    COUNTED.get_or_init(|| {
        INDEXES
            .iter()
            .filter(|def| def.fields.iter().all(|f| !NOT_COUNTED.contains(f)))
            .filter_map(|def| {
                let paths = def.paths();
                let countable = paths.iter().all(|p| match p.root() {
                    Root::Data => data_paths().contains(p),
                    Root::Kind
                    | Root::State
                    | Root::Result
                    | Root::Owner
                    | Root::Group
                    | Root::Parent
                    | Root::Submitter
                    | Root::Treeid
                    | Root::ProcessedByKcidbBridge
                    | Root::RetryCounter => p.rest().is_empty(),
                    _ => false,
                });
                countable.then(|| (i16::from(def.id), paths))
            })
            .collect()
    })
}

/// Appends one value to a key: a type letter, then the text, length-prefixed so that
/// no two tuples share a key.
fn push(key: &mut String, tag: char, text: &str) {
    key.push_str(&text.len().to_string());
    key.push(tag);
    key.push_str(text);
}

fn push_null(key: &mut String) {
    key.push_str("0n");
}

/// The value of one counted field in `node`; `false` when the node does not count
/// there (an irregular `data` value).
fn push_node_value(key: &mut String, node: &Node, path: &FieldPath, irregular: i32) -> bool {
    let opt = |key: &mut String, v: Option<&str>| match v {
        Some(s) => push(key, 's', s),
        None => push_null(key),
    };
    match path.root() {
        Root::Kind => push(key, 's', &node.kind),
        Root::State => push(key, 's', node.state.as_str()),
        Root::Result => opt(key, node.result.map(|r| r.as_str())),
        Root::Owner => opt(key, node.owner.as_deref()),
        Root::Group => opt(key, node.group.as_deref()),
        Root::Submitter => opt(key, node.submitter.as_deref()),
        Root::Treeid => opt(key, node.treeid.as_deref()),
        Root::Parent => match node.parent {
            Some(id) => push(key, 'i', &id.to_string()),
            None => push_null(key),
        },
        Root::ProcessedByKcidbBridge => push(
            key,
            'b',
            if node.processed_by_kcidb_bridge {
                "1"
            } else {
                "0"
            },
        ),
        Root::RetryCounter => push(key, 'd', &node.retry_counter.to_string()),
        Root::Data => {
            let Some(bit) = data_paths().iter().position(|p| p == path) else {
                return false;
            };
            if irregular & (1 << bit) != 0 {
                return false;
            }
            let mut v = node.data.as_ref().and_then(|d| d.get(path.rest().first()?));
            for seg in path.rest().iter().skip(1) {
                v = v.and_then(|x| x.get(seg));
            }
            match v.and_then(serde_json::Value::as_str) {
                Some(s) => push(key, 's', s),
                None => push_null(key),
            }
        }
        _ => return false,
    }
    true
}

/// The counter keys of a node (`irregular`: its bits), the total included.
pub(crate) fn node_keys(node: &Node, irregular: i32) -> Vec<(i16, String)> {
    let mut out = vec![(TOTAL, String::new())];
    for (ix, paths) in counted() {
        let mut key = String::new();
        if paths
            .iter()
            .all(|p| push_node_value(&mut key, node, p, irregular))
        {
            out.push((*ix, key));
        }
    }
    out
}

/// The counter that answers `q`'s count exactly, if any: every filter is one
/// equality, on exactly the fields of a counted index. Returns the index, the key, and
/// the `irregular` bits the answer relies on.
pub(crate) fn query_key(q: &Query) -> Option<(i16, String, i32)> {
    if q.filters.is_empty() {
        return Some((TOTAL, String::new(), 0));
    }
    let mut values: Vec<(&FieldPath, &QValue)> = Vec::new();
    for f in &q.filters {
        match f.conds.as_slice() {
            [Cond::Eq(v)] => values.push((&f.field, v)),
            _ => return None,
        }
    }
    let (ix, paths) = counted().iter().find(|(_, paths)| {
        paths.len() == values.len() && paths.iter().all(|p| values.iter().any(|(f, _)| *f == p))
    })?;
    let mut key = String::new();
    let mut mask = 0;
    for p in paths {
        let (_, v) = values.iter().find(|(f, _)| *f == p)?;
        if let Some(bit) = data_paths().iter().position(|d| d == p) {
            mask |= 1 << bit;
        }
        match v {
            QValue::Null => push_null(&mut key),
            QValue::Str(s) => push(&mut key, 's', s),
            QValue::Id(id) => push(&mut key, 'i', &id.to_string()),
            QValue::Bool(b) => push(&mut key, 'b', if *b { "1" } else { "0" }),
            QValue::Int(n) => push(&mut key, 'd', &n.to_string()),
            // A datetime or a sub-document never equals a counted field's value; the
            // engine says 0 just as fast.
            QValue::Date(_) | QValue::Doc(_) => return None,
        }
    }
    Some((*ix, key, mask))
}

/// Counter changes, summed per (index, key) and kept in key order.
#[derive(Debug, Default)]
pub(crate) struct Deltas(BTreeMap<(i16, String), i64>);

impl Deltas {
    /// Adds `by` to each of `keys`.
    pub fn add(&mut self, keys: Vec<(i16, String)>, by: i64) {
        for k in keys {
            *self.0.entry(k).or_insert(0) += by;
        }
    }

    /// The non-zero changes as the four arrays of the upsert statement, in key order.
    #[allow(clippy::type_complexity)]
    pub fn columns(self, shard: i16) -> (Vec<i16>, Vec<String>, Vec<i16>, Vec<i64>) {
        let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for ((ix, key), n) in self.0 {
            if n != 0 {
                cols.0.push(ix);
                cols.1.push(key);
                cols.2.push(shard);
                cols.3.push(n);
            }
        }
        cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::query::Mode;
    use kernelci_core::time::Timestamp;

    fn q(s: &str) -> Query {
        Query::parse_str(s, Mode::Count).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_node_and_the_query_for_it_meet_on_the_same_key() {
        let mut n = Node::new("test", "t", Timestamp::now());
        n.owner = Some("lab".into());
        let keys = node_keys(&n, 0);
        for query in [
            "kind=test",
            "owner=lab&kind=test",
            "result=null",
            "state=running",
        ] {
            let (ix, key, _) = query_key(&q(query)).unwrap_or_else(|| panic!("{query}"));
            assert!(keys.contains(&(ix, key)), "{query}: {keys:?}");
        }
        // Not answerable from one counter.
        for query in [
            "kind__ne=test",
            "name=t",
            "kind=test&name=t",
            "kind=test&owner__in=a,b",
        ] {
            assert!(query_key(&q(query)).is_none(), "{query}");
        }
    }

    #[test]
    fn keys_are_unambiguous() {
        let mut a = String::new();
        push(&mut a, 's', "ab");
        push(&mut a, 's', "c");
        let mut b = String::new();
        push(&mut b, 's', "a");
        push(&mut b, 's', "bc");
        assert_ne!(a, b);
    }
}
