//! Property tests of kernelci-core: parser round trips, the evaluator against an
//! independent reference evaluator, the state machine, serde, ids, and "bad input
//! never panics".

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::HashSet;
use std::sync::Arc;

use kernelci_core::arbitrary::{
    exercise_node, exercise_query, json_value, mode, node, query_pairs,
};
use kernelci_core::id::IdGenerator;
use kernelci_core::node::{Node, NodeBody, NodePatch, NodeResult, State};
use kernelci_core::query::{matches, Cond, Mode, QValue, Query};
use kernelci_core::state::{self, ChildrenSummary};
use kernelci_core::time::{parse_query_datetime, Timestamp};
use proptest::prelude::*;
use serde_json::{json, Value};

// ---- an independent reference evaluator ------------------------------------------
//
// Works on the node's JSON document (as MongoDB would hold it: datetimes as dates,
// `parent` as an ObjectId), with MongoDB's rules written out plainly.

#[derive(Debug, Clone, PartialEq)]
enum B {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Date(i64),
    Oid(String),
    Arr(Vec<B>),
    Doc(Vec<(String, B)>),
}

fn to_b(v: &Value) -> B {
    match v {
        Value::Null => B::Null,
        Value::Bool(b) => B::Bool(*b),
        Value::Number(n) => B::Num(n.as_f64().unwrap()),
        Value::String(s) => B::Str(s.clone()),
        Value::Array(a) => B::Arr(a.iter().map(to_b).collect()),
        Value::Object(o) => B::Doc(o.iter().map(|(k, v)| (k.clone(), to_b(v))).collect()),
    }
}

fn document(node: &Node) -> B {
    let Value::Object(o) = node.to_json() else {
        unreachable!()
    };
    B::Doc(
        o.into_iter()
            .filter(|(k, _)| k != "id")
            .map(|(k, v)| {
                let b = match (k.as_str(), &v) {
                    ("created" | "updated" | "timeout" | "holdoff", Value::String(s)) => {
                        B::Date(parse_query_datetime(s).unwrap().as_micros())
                    }
                    ("parent", Value::String(s)) => B::Oid(s.to_lowercase()),
                    _ => to_b(&v),
                };
                (k, b)
            })
            .collect(),
    )
}

fn qv(v: &QValue) -> B {
    match v {
        QValue::Null => B::Null,
        QValue::Bool(b) => B::Bool(*b),
        QValue::Int(i) => B::Num(*i as f64),
        QValue::Str(s) => B::Str(s.clone()),
        QValue::Date(t) => B::Date(t.as_micros()),
        QValue::Id(id) => B::Oid(id.to_string()),
        QValue::Doc(d) => to_b(&Value::Object(d.clone())),
    }
}

/// Values a dotted path reaches; `None` = missing.
fn lookup<'a>(doc: &'a B, path: &[&str]) -> Vec<Option<&'a B>> {
    let Some((first, rest)) = path.split_first() else {
        return vec![Some(doc)];
    };
    match doc {
        B::Doc(fields) => match fields.iter().find(|(k, _)| k == first) {
            Some((_, v)) => lookup(v, rest),
            None => vec![None],
        },
        B::Arr(items) => {
            let mut out = Vec::new();
            if let Ok(i) = first.parse::<usize>() {
                if let Some(v) = items.get(i) {
                    out.extend(lookup(v, rest));
                }
            }
            for it in items {
                if matches!(it, B::Doc(_)) {
                    out.extend(lookup(it, path));
                }
            }
            if out.is_empty() {
                out.push(None);
            }
            out
        }
        _ => vec![None],
    }
}

/// The leaf itself plus, for arrays, every element.
fn expand<'a>(found: &[Option<&'a B>]) -> Vec<Option<&'a B>> {
    let mut out = Vec::new();
    for f in found {
        out.push(*f);
        if let Some(B::Arr(items)) = f {
            out.extend(items.iter().map(Some));
        }
    }
    out
}

fn same_class_cmp(a: &B, b: &B) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (B::Num(x), B::Num(y)) => x.partial_cmp(y),
        (B::Str(x), B::Str(y)) => Some(x.cmp(y)),
        (B::Date(x), B::Date(y)) => Some(x.cmp(y)),
        (B::Oid(x), B::Oid(y)) => Some(x.cmp(y)),
        (B::Bool(x), B::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn equal(found: &[Option<&B>], want: &B) -> bool {
    expand(found).into_iter().any(|c| match (c, want) {
        (None | Some(B::Null), B::Null) => true,
        (Some(B::Doc(a)), B::Doc(b)) => {
            let mut a = a.clone();
            let mut b = b.clone();
            a.sort_by(|x, y| x.0.cmp(&y.0));
            b.sort_by(|x, y| x.0.cmp(&y.0));
            a == b
        }
        (Some(x), w) => same_class_cmp(x, w) == Some(std::cmp::Ordering::Equal),
        _ => false,
    })
}

fn reference_matches(node: &Node, q: &Query) -> bool {
    use std::cmp::Ordering::*;
    let doc = document(node);
    q.filters.iter().all(|f| {
        let path: Vec<&str> = f.field.as_str().split('.').collect();
        let found = if path[0] == "id" {
            vec![None]
        } else {
            lookup(&doc, &path)
        };
        f.conds.iter().all(|c| {
            let cmp = |v: &QValue, ok: &dyn Fn(std::cmp::Ordering) -> bool| {
                let w = qv(v);
                if w == B::Null {
                    return ok(Equal) && equal(&found, &B::Null);
                }
                expand(&found)
                    .into_iter()
                    .flatten()
                    .any(|x| same_class_cmp(x, &w).is_some_and(ok))
            };
            match c {
                Cond::Eq(v) => equal(&found, &qv(v)),
                Cond::Ne(v) => !equal(&found, &qv(v)),
                Cond::In(vs) => vs.iter().any(|v| equal(&found, &qv(v))),
                Cond::Nin(vs) => !vs.iter().any(|v| equal(&found, &qv(v))),
                Cond::Lt(v) => cmp(v, &|o| o == Less),
                Cond::Lte(v) => cmp(v, &|o| o != Greater),
                Cond::Gt(v) => cmp(v, &|o| o == Greater),
                Cond::Gte(v) => cmp(v, &|o| o != Less),
                Cond::Regex(p) => expand(&found)
                    .into_iter()
                    .flatten()
                    .any(|x| matches!(x, B::Str(s) if p.is_match(s))),
            }
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn query_parse_render_parse_round_trips(pairs in query_pairs(), mode in mode()) {
        if let Ok(q) = Query::parse(&pairs, mode) {
            let rendered = q.to_query_string();
            let again = Query::parse_str(&rendered, mode);
            prop_assert_eq!(again.as_ref(), Ok(&q), "rendered: {}", rendered);
        }
    }

    #[test]
    fn matches_agrees_with_the_reference_evaluator(
        pairs in query_pairs(),
        nodes in proptest::collection::vec(node(), 1..8),
    ) {
        if let Ok(q) = Query::parse(&pairs, Mode::Count) {
            for n in &nodes {
                prop_assert_eq!(matches(n, &q), reference_matches(n, &q), "query {} on {}", q, n.to_json());
            }
        }
    }

    #[test]
    fn node_serde_round_trips(n in node()) {
        let text = serde_json::to_string(&n).unwrap();
        let back: Node = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &n);
        // The JSON form is also a valid body that rebuilds the same node.
        let body = NodeBody::from_json(&n.to_json(), &["body".into()], Timestamp::now()).unwrap();
        let mut rebuilt = body.node;
        rebuilt.id = n.id;
        prop_assert_eq!(rebuilt, n);
    }

    #[test]
    fn the_query_parser_never_panics(s in "\\PC{0,200}", mode in mode()) {
        let _ = Query::parse_str(&s, mode);
    }

    #[test]
    fn the_fuzz_target_bodies_hold_on_random_input(s in "[a-z_.=&%+0-9,:-]{0,120}", v in json_value()) {
        exercise_query(s.as_bytes());
        exercise_node(v.to_string().as_bytes());
    }

    #[test]
    fn node_validation_never_panics(v in json_value()) {
        let now = Timestamp::now();
        let _ = NodeBody::from_json(&v, &["body".into()], now);
        let _ = NodePatch::from_json(&v);
        let _ = state::HierarchyBody::from_json(&v, now);
        let wrapped = json!({"kind": "kbuild", "name": "n", "path": [], "data": v.clone()});
        if let Ok(b) = NodeBody::from_json(&wrapped, &["body".into()], now) {
            let _ = state::create(b, "u", kernelci_core::id::ObjectId::new(), now);
        }
        let nested = json!({"kind": "checkout", "name": "n", "path": [], "data": {"kernel_revision": v}});
        if let Ok(b) = NodeBody::from_json(&nested, &["body".into()], now) {
            let _ = state::create(b, "u", kernelci_core::id::ObjectId::new(), now);
        }
    }
}

/// One step of a node's life.
#[derive(Debug, Clone)]
enum Step {
    Patch(Option<State>, Option<NodeResult>),
    Put(State),
    Clock(i64, u64, u64),
}

fn step() -> impl Strategy<Value = Step> {
    let st = prop::sample::select(State::ALL.to_vec());
    prop_oneof![
        (
            prop::option::of(st.clone()),
            prop::option::of(prop::sample::select(NodeResult::ALL.to_vec()))
        )
            .prop_map(|(s, r)| Step::Patch(s, r)),
        st.prop_map(Step::Put),
        (0i64..20_000, 0u64..3, 0u64..3).prop_map(|(secs, total, done)| Step::Clock(
            secs,
            total,
            done.min(total)
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_state_machine_only_moves_forward_and_never_leaves_done(
        start in node(),
        steps in proptest::collection::vec(step(), 1..20),
    ) {
        let t0 = parse_query_datetime("2024-01-01").unwrap();
        let mut n = start;
        for s in steps {
            let before = n.state;
            let after = match s {
                Step::Patch(st, r) => {
                    let mut body = serde_json::Map::new();
                    body.insert("state".into(), json!(st));
                    body.insert("result".into(), json!(r));
                    let p = NodePatch::from_json(&Value::Object(body)).unwrap();
                    state::patch(&n, p, t0)
                }
                Step::Put(st) => {
                    let mut j = n.to_json();
                    j["state"] = json!(st);
                    let b = NodeBody::from_json(&j, &["body".into()], t0).unwrap();
                    state::replace(&n, b, t0)
                }
                Step::Clock(secs, total, done) => {
                    let now = t0.plus_seconds(secs);
                    let children = ChildrenSummary { total, done };
                    Ok(match state::due_transition(&n, children, now) {
                        Some(t) => {
                            let next = state::apply_timed(&n, &t, now);
                            prop_assert_eq!(state::due_transition(&next, children, now), None, "idempotent");
                            next
                        }
                        None => n.clone(),
                    })
                }
            };
            match after {
                Ok(next) => {
                    prop_assert!(state::transition_allowed(before, next.state), "{before} -> {}", next.state);
                    prop_assert_eq!(next.id, n.id);
                    n = next;
                }
                Err(e) => prop_assert!(
                    matches!(e, kernelci_core::Error::InvalidTransition { .. } | kernelci_core::Error::Invalid(_)),
                    "{e:?}"
                ),
            }
            if before == State::Done {
                prop_assert_eq!(n.state, State::Done);
            }
        }
    }
}

#[test]
fn ids_are_unique_and_ordered_across_threads() {
    let g = Arc::new(IdGenerator::new());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let g = Arc::clone(&g);
            std::thread::spawn(move || (0..20_000).map(|_| g.next_id()).collect::<Vec<_>>())
        })
        .collect();
    let per_thread: Vec<Vec<_>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all = HashSet::new();
    for ids in &per_thread {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "each thread sees increasing ids"
        );
        for id in ids {
            assert!(all.insert(*id), "duplicate id {id}");
        }
    }
    let later = g.next_id();
    assert!(
        all.iter().all(|id| *id < later),
        "an id made after the others is greater"
    );
    assert_eq!(all.len(), 80_000);
}
