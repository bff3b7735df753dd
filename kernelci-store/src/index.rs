//! The secondary indexes, declared in code from the query patterns of KernelCI's
//! clients (`../shared/workload/README.md`, "Who queries what").
//!
//! An index covers one field or a tuple of fields. Its entries for a node are
//! computed with kernelci-core's own path resolution ([`resolve`]), so an index
//! answers exactly what [`kernelci_core::query::matches`] would: a leaf that is an
//! array contributes one entry per element, a missing field an entry for null.

use std::collections::BTreeSet;

use kernelci_core::node::Node;
use kernelci_core::query::{resolve, FieldPath, Val};

use crate::keys::{encode_val, INDEX};

/// One declared index.
#[derive(Debug)]
pub struct IndexDef {
    /// Stable one-byte id (part of every key: never reuse or renumber).
    pub id: u8,
    /// The indexed fields, as query paths.
    pub fields: &'static [&'static str],
}

/// Every index, in id order. Changing this list changes the on-disk layout: bump
/// [`crate::engine::SCHEMA_VERSION`] (the store rebuilds its indexes on open).
pub const INDEXES: &[IndexDef] = &[
    IndexDef {
        id: 1,
        fields: &["kind"],
    },
    IndexDef {
        id: 2,
        fields: &["name"],
    },
    IndexDef {
        id: 3,
        fields: &["state"],
    },
    IndexDef {
        id: 4,
        fields: &["result"],
    },
    IndexDef {
        id: 5,
        fields: &["owner"],
    },
    IndexDef {
        id: 6,
        fields: &["group"],
    },
    IndexDef {
        id: 7,
        fields: &["parent"],
    },
    IndexDef {
        id: 8,
        fields: &["created"],
    },
    IndexDef {
        id: 9,
        fields: &["updated"],
    },
    IndexDef {
        id: 10,
        fields: &["timeout"],
    },
    IndexDef {
        id: 11,
        fields: &["holdoff"],
    },
    IndexDef {
        id: 12,
        fields: &["path"],
    },
    IndexDef {
        id: 13,
        fields: &["submitter"],
    },
    IndexDef {
        id: 14,
        fields: &["data.kernel_revision.tree"],
    },
    IndexDef {
        id: 15,
        fields: &["data.kernel_revision.branch"],
    },
    IndexDef {
        id: 16,
        fields: &["data.kernel_revision.commit"],
    },
    IndexDef {
        id: 17,
        fields: &["data.platform"],
    },
    IndexDef {
        id: 18,
        fields: &["data.arch"],
    },
    IndexDef {
        id: 19,
        fields: &["data.runtime"],
    },
    IndexDef {
        id: 20,
        fields: &["processed_by_kcidb_bridge"],
    },
    IndexDef {
        id: 21,
        fields: &["retry_counter"],
    },
    IndexDef {
        id: 22,
        fields: &["user_groups"],
    },
    // Compound indexes: equality on every field answers a page and its total from
    // one posting list and one counter.
    IndexDef {
        id: 40,
        fields: &["kind", "data.kernel_revision.tree"],
    },
    IndexDef {
        id: 41,
        fields: &["kind", "result"],
    },
    IndexDef {
        id: 42,
        fields: &["kind", "state"],
    },
    IndexDef {
        id: 43,
        fields: &["parent", "state"],
    },
    IndexDef {
        id: 44,
        fields: &["kind", "owner"],
    },
    // Equality then a range on the last field (the viewer's and the pollers'
    // "these nodes since T" and "lapsed" queries) answer with one key range.
    IndexDef {
        id: 50,
        fields: &["kind", "created"],
    },
    IndexDef {
        id: 51,
        fields: &["state", "timeout"],
    },
    IndexDef {
        id: 52,
        fields: &["state", "holdoff"],
    },
    IndexDef {
        id: 53,
        fields: &["kind", "data.kernel_revision.tree", "created"],
    },
    IndexDef {
        id: 54,
        fields: &[
            "data.kernel_revision.tree",
            "data.kernel_revision.branch",
            "created",
        ],
    },
    IndexDef {
        id: 55,
        fields: &["kind", "result", "created"],
    },
];

/// The most entries one node may have in one index (arrays multiply entries); a node
/// beyond it is indexed with what fits and marked irregular, so the planner stops
/// trusting counter sums for that index.
pub(crate) const MAX_ENTRIES: usize = 256;

impl IndexDef {
    /// The parsed field paths.
    pub(crate) fn paths(&self) -> Vec<FieldPath> {
        self.fields
            .iter()
            .filter_map(|f| FieldPath::parse(f).ok())
            .collect()
    }
}

/// How a node sits in an index besides its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Flags {
    /// Not exactly one entry, or a value that cannot be encoded exactly.
    pub irregular: bool,
    /// Entries were dropped (more than [`MAX_ENTRIES`]): lookups are incomplete.
    pub lossy: bool,
}

/// The encoded values of one field of a node (sorted, distinct), and whether the
/// field is irregular there (not exactly one value, or a value that cannot be encoded
/// exactly).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FieldValues {
    values: BTreeSet<Vec<u8>>,
    irregular: bool,
}

/// The [`FieldValues`] of `path` in `node`.
pub(crate) fn field_values(path: &FieldPath, node: &Node) -> FieldValues {
    let mut out = FieldValues::default();
    for leaf in resolve(node, path) {
        let elems = leaf.elements();
        let leaf_values: Vec<Val<'_>> = if matches!(leaf, Val::Array(_) | Val::Strings(_)) {
            elems
        } else {
            vec![leaf]
        };
        for v in leaf_values {
            let mut enc = Vec::new();
            if encode_val(&mut enc, v).is_some() {
                out.values.insert(enc);
            } else {
                out.irregular = true;
            }
        }
    }
    if out.values.len() != 1 {
        out.irregular = true;
    }
    out
}

/// The value tuples of an index from the values of its fields, in field order (the
/// cross product, at most [`MAX_ENTRIES`]), and its [`Flags`].
pub(crate) fn combine(fields: &[&FieldValues]) -> (BTreeSet<Vec<u8>>, Flags) {
    let mut flags = Flags {
        irregular: fields.iter().any(|f| f.irregular),
        lossy: false,
    };
    // The common case: one value per field, one tuple.
    if fields.iter().all(|f| f.values.len() == 1) {
        let tuple: Vec<u8> = fields
            .iter()
            .flat_map(|f| f.values.iter().flatten().copied())
            .collect();
        return (BTreeSet::from([tuple]), flags);
    }
    let mut tuples: BTreeSet<Vec<u8>> = BTreeSet::from([Vec::new()]);
    for f in fields {
        let mut next = BTreeSet::new();
        'outer: for t in &tuples {
            for v in &f.values {
                if next.len() >= MAX_ENTRIES {
                    flags.irregular = true;
                    flags.lossy = true;
                    break 'outer;
                }
                let mut k = t.clone();
                k.extend_from_slice(v);
                next.insert(k);
            }
        }
        tuples = next;
    }
    (tuples, flags)
}

/// The encoded value tuples of `node` in `index` (without prefix and id), and its
/// [`Flags`] there.
pub(crate) fn entries(
    index: &IndexDef,
    paths: &[FieldPath],
    node: &Node,
) -> (BTreeSet<Vec<u8>>, Flags) {
    let values: Vec<FieldValues> = paths.iter().map(|p| field_values(p, node)).collect();
    let _ = index;
    combine(&values.iter().collect::<Vec<_>>())
}

/// The full index key of one entry.
pub(crate) fn entry_key(index: &IndexDef, tuple: &[u8], id: &[u8; 12]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + tuple.len() + 12);
    k.push(INDEX);
    k.push(index.id);
    k.extend_from_slice(tuple);
    k.extend_from_slice(id);
    k
}

/// The index whose fields are exactly `fields`.
pub(crate) fn find(fields: &[&str]) -> Option<&'static IndexDef> {
    INDEXES.iter().find(|i| i.fields == fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::time::Timestamp;

    #[test]
    fn ids_are_unique() {
        let ids: BTreeSet<u8> = INDEXES.iter().map(|i| i.id).collect();
        assert_eq!(ids.len(), INDEXES.len());
        assert!(INDEXES
            .iter()
            .all(|i| i.id != 0 && i.id != 0xFF && i.paths().len() == i.fields.len()));
    }

    #[test]
    fn entries_follow_resolution() {
        let mut n = Node::new("test", "t", Timestamp::now());
        n.path = vec!["a".into(), "b".into(), "a".into()];
        let path = find(&["path"]).unwrap();
        let (e, flags) = entries(path, &path.paths(), &n);
        assert_eq!(e.len(), 2, "array elements, deduplicated");
        assert!(flags.irregular && !flags.lossy, "two entries");
        let kind = find(&["kind"]).unwrap();
        let (e, flags) = entries(kind, &kind.paths(), &n);
        assert_eq!((e.len(), flags), (1, Flags::default()));
        let tree = find(&["data.kernel_revision.tree"]).unwrap();
        let (e, flags) = entries(tree, &tree.paths(), &n);
        assert_eq!(
            (e.len(), flags.irregular),
            (1, false),
            "missing is one null entry"
        );
        n.path = vec![];
        let (e, flags) = entries(path, &path.paths(), &n);
        assert_eq!(
            (e.len(), flags.irregular),
            (0, true),
            "an empty array has no entry"
        );
        n.path = (0..300).map(|i| format!("p{i:03}")).collect();
        let (e, flags) = entries(path, &path.paths(), &n);
        assert_eq!(
            (e.len(), flags.lossy),
            (MAX_ENTRIES, true),
            "truncated entries make the node lossy"
        );
        let compound = find(&["kind", "data.kernel_revision.tree"]).unwrap();
        let (e, _) = entries(compound, &compound.paths(), &n);
        assert_eq!(e.len(), 1);
    }
}
