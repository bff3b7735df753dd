//! Generators and invariant checks shared by the proptests and the fuzz targets
//! (feature `arbitrary`).
//!
//! The strategies produce KernelCI-shaped input (query pairs over real field names and
//! operators, nodes with small value domains so that queries hit) rather than uniform
//! noise, so random tests exercise the interesting paths. [`exercise_query`] and
//! [`exercise_node`] are the bodies of the fuzz targets: they must never panic, and
//! they assert the round-trip invariants on whatever input parses.

use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use crate::id::ObjectId;
use crate::node::{kind, Node, NodeBody, NodePatch, NodeResult, State};
use crate::query::{Mode, Query};
use crate::state::HierarchyBody;
use crate::time::Timestamp;

/// Node ids used by the generated nodes and queries (so that `parent=` can match).
pub const IDS: [&str; 3] = [
    "65a1355ee98651d0fe81e412",
    "65a1355ee98651d0fe81e413",
    "65a1355ee98651d0fe81e414",
];

const FIELDS: &[&str] = &[
    "kind",
    "name",
    "path",
    "group",
    "parent",
    "state",
    "result",
    "owner",
    "created",
    "updated",
    "timeout",
    "holdoff",
    "retry_counter",
    "processed_by_kcidb_bridge",
    "user_groups",
    "data.arch",
    "data.kernel_revision.tree",
    "data.kernel_revision.version.patchlevel",
    "data.list.a",
    "data.nums",
    "artifacts.log",
    "debug.x",
    "foo",
    "data__arch",
    "id",
];

const OPS: &[&str] = &[
    "", "", "lt", "lte", "gt", "gte", "ne", "re", "in", "nin", "int", "foo",
];

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("False".to_owned()),
        prop::sample::select(vec![
            "kbuild",
            "checkout",
            "test",
            "done",
            "running",
            "pass",
            "fail",
            "x86_64",
            "arm64",
            "mainline",
            "next",
            "alice",
            "bob",
            "checkout,kbuild",
            "x86_64,arm64"
        ])
        .prop_map(str::to_owned),
        (0u32..5).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "2024-01-01",
            "2024-01-01T00:00:01",
            "2024-06-01 10:00:00+02:00",
            "2023-12-31T23:59:59.5Z"
        ])
        .prop_map(str::to_owned),
        prop::sample::select(IDS.to_vec()).prop_map(str::to_owned),
        prop::sample::select(vec!["^k", "(?i)X86", "[0-9]", "a|b", "["]).prop_map(str::to_owned),
        "[a-z0-9,._-]{0,8}",
    ]
}

/// Query pairs over the fields, operators and values KernelCI uses (some invalid).
pub fn query_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let pair = (
        prop::sample::select(FIELDS),
        prop::sample::select(OPS),
        value_strategy(),
    )
        .prop_map(|(f, op, v)| {
            let key = if op.is_empty() {
                f.to_owned()
            } else {
                format!("{f}__{op}")
            };
            (key, v)
        });
    let extra = prop_oneof![
        Just(None),
        Just(Some(("sort".to_owned(), "-created".to_owned()))),
        Just(Some(("sort".to_owned(), "name".to_owned()))),
        Just(Some(("sort".to_owned(), "-data.arch".to_owned()))),
        Just(Some(("limit".to_owned(), "3".to_owned()))),
        Just(Some(("offset".to_owned(), "1".to_owned()))),
    ];
    (vec(pair, 0..5), extra).prop_map(|(mut pairs, extra)| {
        pairs.extend(extra);
        pairs
    })
}

/// Any of the three query modes.
pub fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Page), Just(Mode::Fast), Just(Mode::Count)]
}

fn t(s: &str) -> Timestamp {
    crate::time::parse_query_datetime(s).unwrap_or_else(|_| Timestamp::now())
}

/// Nodes over small value domains (so that generated queries match some of them).
pub fn node() -> impl Strategy<Value = Node> {
    let state = prop::sample::select(State::ALL.to_vec());
    let result = prop::option::of(prop::sample::select(NodeResult::ALL.to_vec()));
    let kind = prop::sample::select(vec!["checkout", "kbuild", "test", "job"]);
    let name = prop::sample::select(vec![
        "checkout",
        "kbuild-gcc-x86",
        "kbuild-clang-arm64",
        "baseline-x86",
        "123",
    ]);
    let data = (
        prop::option::of(prop::sample::select(vec!["x86_64", "arm64"])),
        prop::option::of(prop::sample::select(vec!["mainline", "next"])),
        prop::option::of(0i64..5),
        prop::option::of(vec(prop::option::of(0i64..3), 0..3)),
        prop::option::of(vec(0i64..5, 0..3)),
    )
        .prop_map(|(arch, tree, patchlevel, list, nums)| {
            let mut d = Map::new();
            if let Some(a) = arch {
                d.insert("arch".into(), json!(a));
            }
            if let Some(tree) = tree {
                let mut rev = json!({"tree": tree});
                if let Some(p) = patchlevel {
                    rev["version"] = json!({"patchlevel": p});
                }
                d.insert("kernel_revision".into(), rev);
            }
            if let Some(list) = list {
                let items: Vec<Value> = list
                    .into_iter()
                    .map(|a| a.map_or(json!({}), |a| json!({"a": a})))
                    .collect();
                d.insert("list".into(), Value::Array(items));
            }
            if let Some(nums) = nums {
                d.insert("nums".into(), json!(nums));
            }
            d
        });
    (
        (
            kind,
            name,
            state,
            result,
            prop::option::of(prop::sample::select(IDS.to_vec())),
        ),
        (
            0i64..4,
            any::<bool>(),
            prop::option::of(prop::sample::select(vec!["alice", "bob"])),
        ),
        (0i64..3, prop::option::of(0i64..3), data),
        (
            prop::option::of(prop::sample::select(vec!["g1", "g2"])),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (kind, name, state, result, parent),
                (rc, processed, owner),
                (created, holdoff, data),
                (group, has_log),
            )| {
                let mut n = Node::new(kind, name, t("2024-01-01").plus_seconds(created));
                n.state = state;
                n.result = result;
                n.parent = parent.and_then(|p| ObjectId::parse(p).ok());
                n.retry_counter = rc;
                n.processed_by_kcidb_bridge = processed;
                n.owner = owner.map(str::to_owned);
                n.holdoff = holdoff.map(|h| t("2024-01-01").plus_seconds(h));
                n.data = Some(data);
                n.path = vec!["checkout".into(), name.into()];
                n.group = group.map(str::to_owned);
                n.user_groups = group.map(|g| vec![g.to_owned()]).unwrap_or_default();
                if has_log {
                    n.artifacts = Some([("log".to_owned(), "http://x/".to_owned())].into());
                }
                n
            },
        )
}

/// Arbitrary JSON, biased towards node-body shapes.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "running",
            "done",
            "pass",
            "kbuild",
            "checkout",
            "2024-01-01",
            "http://x",
            "65a1355ee98651d0fe81e412"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "kind",
                    "name",
                    "path",
                    "state",
                    "result",
                    "data",
                    "artifacts",
                    "timeout",
                    "holdoff",
                    "parent",
                    "user_groups",
                    "retry_counter",
                    "kernel_revision",
                    "version",
                    "patchlevel",
                    "url",
                    "tree",
                    "node",
                    "child_nodes",
                    "misc",
                    "x",
                ]),
                inner,
                0..8,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// The fuzz target for the query parser: any bytes, as a query string, in every mode.
/// Never panics; a query that parses renders to a string that parses to the same
/// query.
pub fn exercise_query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [Mode::Page, Mode::Fast, Mode::Count] {
        if let Ok(q) = Query::parse_str(text, mode) {
            let again = Query::parse_str(&q.to_query_string(), mode);
            assert_eq!(
                again.as_ref(),
                Ok(&q),
                "render/parse round trip of {text:?}"
            );
            let node = Node::new("test", "n", Timestamp::now());
            let _ = crate::query::matches(&node, &q);
        }
    }
}

/// The fuzz target for node validation: any bytes, as JSON, through every body
/// parser and the kind layer. Never panics; a valid node survives a serde round trip.
pub fn exercise_node(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let now = Timestamp::now();
    if let Ok(body) = NodeBody::from_json(&v, &["body".into()], now) {
        let mut node = body.node;
        if let Some(d) = node.data.as_mut() {
            let _ = kind::coerce_kernel_version(d);
        }
        if let Ok(k) = kind::check(&node) {
            let _ = kind::normalise(k, node.data.as_ref());
        }
        let json = node.to_json();
        let back: Node =
            serde_json::from_value(json).unwrap_or_else(|e| panic!("serde round trip: {e}"));
        assert_eq!(back, node);
    }
    let _ = NodePatch::from_json(&v);
    let _ = HierarchyBody::from_json(&v, now);
}
