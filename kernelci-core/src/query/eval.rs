//! Evaluating queries against nodes, with MongoDB's matching semantics
//! (QUERY.md §2): dotted paths traverse objects and fan out over arrays, equality
//! on an array matches any element, `null` matches missing fields, comparisons only
//! match values of the same type class.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::field::Root;
use super::{Cond, FieldPath, QValue, Query, Sort};
use crate::id::ObjectId;
use crate::node::Node;
use crate::time::Timestamp;

/// A value found in a node, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub enum Val<'a> {
    /// The path leads nowhere.
    Missing,
    /// JSON null / absent optional field.
    Null,
    /// Boolean.
    Bool(bool),
    /// Integer.
    Int(i64),
    /// Floating-point number.
    Float(f64),
    /// String.
    Str(&'a str),
    /// Datetime.
    Date(Timestamp),
    /// ObjectId.
    Id(ObjectId),
    /// Array of JSON values.
    Array(&'a [Value]),
    /// Array of strings (`path`, `user_groups`...).
    Strings(&'a [String]),
    /// JSON object.
    Object(&'a Map<String, Value>),
    /// Map of strings (`artifacts`).
    StrMap(&'a BTreeMap<String, String>),
}

impl<'a> Val<'a> {
    fn from_json(v: &'a Value) -> Self {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => Val::Str(s),
            Value::Array(a) => Val::Array(a),
            Value::Object(o) => Val::Object(o),
        }
    }

    fn opt_str(s: &'a Option<String>) -> Self {
        s.as_deref().map_or(Val::Null, Val::Str)
    }

    /// MongoDB's type order for sorting: null < numbers < strings < objects < arrays <
    /// ObjectId < booleans < dates.
    fn bracket(&self) -> u8 {
        match self {
            Val::Missing | Val::Null => 1,
            Val::Int(_) | Val::Float(_) => 2,
            Val::Str(_) => 3,
            Val::Object(_) | Val::StrMap(_) => 4,
            Val::Array(_) | Val::Strings(_) => 5,
            Val::Id(_) => 7,
            Val::Bool(_) => 8,
            Val::Date(_) => 9,
        }
    }

    /// The elements of an array value (empty for anything else).
    pub fn elements(&self) -> Vec<Val<'a>> {
        match *self {
            Val::Array(a) => a.iter().map(Val::from_json).collect(),
            Val::Strings(s) => s.iter().map(|x| Val::Str(x)).collect(),
            _ => Vec::new(),
        }
    }
}

/// The top-level value of `root` in `node`.
fn root_value(node: &Node, root: Root) -> Val<'_> {
    match root {
        Root::Kind => Val::Str(&node.kind),
        Root::Name => Val::Str(&node.name),
        Root::Path => Val::Strings(&node.path),
        Root::Group => Val::opt_str(&node.group),
        Root::Parent => node.parent.map_or(Val::Null, Val::Id),
        Root::State => Val::Str(node.state.as_str()),
        Root::Result => node.result.map_or(Val::Null, |r| Val::Str(r.as_str())),
        Root::Artifacts => node.artifacts.as_ref().map_or(Val::Null, Val::StrMap),
        Root::Data => node.data.as_ref().map_or(Val::Null, Val::Object),
        Root::Debug => node.debug.as_ref().map_or(Val::Null, Val::Object),
        Root::Jobfilter => node.jobfilter.as_deref().map_or(Val::Null, Val::Strings),
        Root::PlatformFilter => node
            .platform_filter
            .as_deref()
            .map_or(Val::Null, Val::Strings),
        Root::Created => Val::Date(node.created),
        Root::Updated => Val::Date(node.updated),
        Root::Timeout => Val::Date(node.timeout),
        Root::Holdoff => node.holdoff.map_or(Val::Null, Val::Date),
        Root::Owner => Val::opt_str(&node.owner),
        Root::Submitter => Val::opt_str(&node.submitter),
        Root::Treeid => Val::opt_str(&node.treeid),
        Root::UserGroups => Val::Strings(&node.user_groups),
        Root::ProcessedByKcidbBridge => Val::Bool(node.processed_by_kcidb_bridge),
        Root::RetryCounter => Val::Int(node.retry_counter),
        Root::Other => Val::Missing,
    }
}

/// Every value `path` reaches in `node` (several when it crosses arrays; `Missing`
/// where it leads nowhere).
pub fn resolve<'a>(node: &'a Node, path: &FieldPath) -> Vec<Val<'a>> {
    let mut out = Vec::new();
    walk(root_value(node, path.root()), path.rest(), &mut out);
    out
}

fn walk<'a>(v: Val<'a>, rest: &[String], out: &mut Vec<Val<'a>>) {
    let Some((seg, tail)) = rest.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Val::Object(o) => walk(o.get(seg).map_or(Val::Missing, Val::from_json), tail, out),
        Val::StrMap(m) => walk(m.get(seg).map_or(Val::Missing, |s| Val::Str(s)), tail, out),
        Val::Array(_) | Val::Strings(_) => {
            // A numeric segment indexes the array; every element that is an object is
            // also traversed with the same segment.
            let before = out.len();
            let elems = v.elements();
            if let Ok(i) = seg.parse::<usize>() {
                if let Some(e) = elems.get(i) {
                    walk(*e, tail, out);
                }
            }
            for e in elems {
                if matches!(e, Val::Object(_)) {
                    walk(e, rest, out);
                }
            }
            if out.len() == before {
                out.push(Val::Missing);
            }
        }
        _ => out.push(Val::Missing),
    }
}

/// Whether `node` satisfies every filter of `query` (limit, offset and sort are not
/// looked at).
pub fn matches(node: &Node, query: &Query) -> bool {
    query.filters.iter().all(|f| {
        let leaves = resolve(node, &f.field);
        f.conds.iter().all(|c| cond_matches(&leaves, c))
    })
}

fn cond_matches(leaves: &[Val<'_>], cond: &Cond) -> bool {
    match cond {
        Cond::Eq(v) => any_eq(leaves, v),
        Cond::Ne(v) => !any_eq(leaves, v),
        Cond::In(vs) => vs.iter().any(|v| any_eq(leaves, v)),
        Cond::Nin(vs) => !vs.iter().any(|v| any_eq(leaves, v)),
        Cond::Lt(v) => any_cmp(leaves, v, |o| o == Ordering::Less),
        Cond::Lte(v) => any_cmp(leaves, v, |o| o != Ordering::Greater),
        Cond::Gt(v) => any_cmp(leaves, v, |o| o == Ordering::Greater),
        Cond::Gte(v) => any_cmp(leaves, v, |o| o != Ordering::Less),
        Cond::Regex(p) => leaves
            .iter()
            .any(|leaf| with_elements(*leaf, |x| matches!(x, Val::Str(s) if p.is_match(s)))),
    }
}

/// `f` on the leaf itself, or on any element when the leaf is an array.
fn with_elements(leaf: Val<'_>, mut f: impl FnMut(Val<'_>) -> bool) -> bool {
    if f(leaf) {
        return true;
    }
    leaf.elements().into_iter().any(f)
}

fn any_eq(leaves: &[Val<'_>], v: &QValue) -> bool {
    leaves
        .iter()
        .any(|leaf| with_elements(*leaf, |x| value_eq(x, v)))
}

fn any_cmp(leaves: &[Val<'_>], v: &QValue, ok: impl Fn(Ordering) -> bool) -> bool {
    if matches!(v, QValue::Null) {
        // `$lte: null` / `$gte: null` behave as equality with null; `$lt`/`$gt` match
        // nothing.
        return ok(Ordering::Equal) && any_eq(leaves, v);
    }
    leaves
        .iter()
        .any(|leaf| with_elements(*leaf, |x| value_cmp(x, v).is_some_and(&ok)))
}

fn value_eq(x: Val<'_>, v: &QValue) -> bool {
    match (x, v) {
        (Val::Missing | Val::Null, QValue::Null) => true,
        (Val::Object(o), QValue::Doc(d)) => o == d,
        (Val::StrMap(m), QValue::Doc(d)) => {
            m.len() == d.len()
                && m.iter()
                    .all(|(k, s)| d.get(k).and_then(Value::as_str) == Some(s))
        }
        _ => value_cmp(x, v) == Some(Ordering::Equal),
    }
}

/// Orders a node value against a query value when both are of the same type class.
fn value_cmp(x: Val<'_>, v: &QValue) -> Option<Ordering> {
    match (x, v) {
        (Val::Bool(a), QValue::Bool(b)) => Some(a.cmp(b)),
        (Val::Int(a), QValue::Int(b)) => Some(a.cmp(b)),
        (Val::Float(a), QValue::Int(b)) => Some(cmp_int_float(*b, a).reverse()),
        (Val::Str(a), QValue::Str(b)) => Some(a.cmp(b.as_str())),
        (Val::Date(a), QValue::Date(b)) => Some(a.cmp(b)),
        (Val::Id(a), QValue::Id(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Compares an integer with a float exactly (casting a large integer to `f64` rounds
/// it, which would make the order inconsistent: a sort would panic on it).
pub(crate) fn cmp_int_float(i: i64, f: f64) -> Ordering {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || f >= TWO_63 {
        return Ordering::Less;
    }
    if f < -TWO_63 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    match i.cmp(&(whole as i64)) {
        Ordering::Equal if f > whole => Ordering::Less,
        Ordering::Equal if f < whole => Ordering::Greater,
        other => other,
    }
}

/// A total order over node values (MongoDB's sort order across types).
pub fn compare_values(a: Val<'_>, b: Val<'_>) -> Ordering {
    a.bracket().cmp(&b.bracket()).then_with(|| match (a, b) {
        (Val::Int(x), Val::Int(y)) => x.cmp(&y),
        (Val::Int(x), Val::Float(y)) => cmp_int_float(x, y),
        (Val::Float(x), Val::Int(y)) => cmp_int_float(y, x).reverse(),
        // JSON has no NaN; -0.0 and 0.0 are equal, as for MongoDB.
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Val::Str(x), Val::Str(y)) => x.cmp(y),
        (Val::Id(x), Val::Id(y)) => x.cmp(&y),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(&y),
        (Val::Date(x), Val::Date(y)) => x.cmp(&y),
        (Val::Object(_) | Val::StrMap(_), _) | (Val::Array(_) | Val::Strings(_), _) => {
            json_of(a).to_string().cmp(&json_of(b).to_string())
        }
        _ => Ordering::Equal,
    })
}

fn json_of(v: Val<'_>) -> Value {
    match v {
        Val::Object(o) => Value::Object(o.clone()),
        Val::StrMap(m) => serde_json::to_value(m).unwrap_or(Value::Null),
        Val::Array(a) => Value::Array(a.to_vec()),
        Val::Strings(s) => serde_json::to_value(s).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The value a node sorts by: the smallest reached value (largest when descending),
/// array elements included, as MongoDB does.
fn sort_key<'a>(node: &'a Node, sort: &Sort) -> Val<'a> {
    let mut candidates = Vec::new();
    for leaf in resolve(node, &sort.field) {
        let elems = leaf.elements();
        if elems.is_empty() {
            candidates.push(leaf);
        } else {
            candidates.extend(elems);
        }
    }
    let pick = if sort.descending {
        candidates.into_iter().max_by(|a, b| compare_values(*a, *b))
    } else {
        candidates.into_iter().min_by(|a, b| compare_values(*a, *b))
    };
    pick.unwrap_or(Val::Missing)
}

/// Orders `nodes` as `sort` asks, ties broken by id (ascending, or descending with a
/// descending sort); `None` orders by ascending id, the default order.
pub fn sort_nodes(nodes: &mut [Node], sort: Option<&Sort>) {
    match sort {
        None => nodes.sort_by_key(|n| n.id),
        Some(s) => {
            nodes.sort_by(|a, b| {
                let ord = compare_values(sort_key(a, s), sort_key(b, s)).then(a.id.cmp(&b.id));
                if s.descending {
                    ord.reverse()
                } else {
                    ord
                }
            });
        }
    }
}
