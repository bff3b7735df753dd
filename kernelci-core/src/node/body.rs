//! Node bodies sent by clients: the base-layer schema (MODELS.md §1–§2).
//!
//! [`NodeBody::from_json`] checks a POST/PUT/hierarchy node body and fills every
//! omitted field with its default; [`NodePatch::from_json`] checks a PATCH body.
//! Unknown top-level keys are ignored, as in the reference.

use serde_json::{Map, Value};

use super::check;
use super::{Node, NodeResult, State, DEFAULT_TIMEOUT_SECS, MAX_NAME_CHARS};
use crate::error::{Error, Result, ValidationErrors};
use crate::id::ObjectId;
use crate::time::Timestamp;
use crate::validation::{at, value, FieldError, Loc};

/// The wire names of the states, in order.
const STATES: [&str; 4] = ["running", "available", "closing", "done"];
/// The wire names of the results, in order.
const RESULTS: [&str; 4] = ["pass", "fail", "skip", "incomplete"];

/// A node body that passed the base layer, with defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeBody {
    /// The `id` the body carried, if any (POST refuses it, PUT ignores it, hierarchy
    /// children use it to replace a stored node).
    pub id: Option<ObjectId>,
    /// The node as the body describes it. Its `id` is a placeholder (all zero) until a
    /// write operation of [`crate::state`] gives it one.
    pub node: Node,
}

impl NodeBody {
    /// Checks `body` against the base Node schema; `loc` is where it sits in the request
    /// (`["body"]`, or `["body", "node"]` inside a hierarchy). `now` gives the defaults
    /// of `created`, `updated` and `timeout` (now + 6 h).
    pub fn from_json(body: &Value, loc: &[Value], now: Timestamp) -> Result<Self> {
        let mut errs = ValidationErrors::default();
        let Value::Object(obj) = body else {
            errs.add(FieldError::model_attributes_type(
                loc.to_vec(),
                body.clone(),
            ));
            return Err(Error::Validation(errs));
        };
        let mut node = Node::new("node", "", now);
        node.id = ObjectId::from_bytes([0; 12]);
        let e = &mut errs;
        let field = |key: &str| obj.get(key);
        let l = |key: &str| at(loc, key);

        let id = field("id")
            .and_then(|v| value::opt_object_id(e, l("id"), v))
            .flatten();
        if let Some(v) = field("kind") {
            node.kind = value::string(e, l("kind"), v).unwrap_or_default();
        }
        match field("name") {
            Some(v) => {
                node.name =
                    value::bounded_string(e, l("name"), v, MAX_NAME_CHARS).unwrap_or_default()
            }
            None => missing(e, l("name"), body),
        }
        match field("path") {
            Some(v) => {
                node.path =
                    value::bounded_string_list(e, l("path"), v, MAX_NAME_CHARS).unwrap_or_default()
            }
            None => missing(e, l("path"), body),
        }
        if let Some(v) = field("group") {
            node.group = if v.is_null() {
                None
            } else {
                value::bounded_string(e, l("group"), v, MAX_NAME_CHARS)
            };
        }
        if let Some(v) = field("parent") {
            node.parent = value::opt_object_id(e, l("parent"), v).flatten();
        }
        if let Some(v) = field("state") {
            node.state = value::enum_str(e, l("state"), v, &STATES)
                .and_then(State::parse)
                .unwrap_or(State::Running);
        }
        if let Some(v) = field("result") {
            node.result = parse_result(e, l("result"), v).flatten();
        }
        if let Some(v) = field("artifacts") {
            node.artifacts = check::artifacts(e, l("artifacts"), v).flatten();
        }
        if let Some(v) = field("data") {
            node.data = value::opt_object(e, l("data"), v).flatten();
        }
        if let Some(v) = field("debug") {
            node.debug = value::opt_object(e, l("debug"), v).flatten();
        }
        if let Some(v) = field("jobfilter") {
            node.jobfilter = value::opt_string_list(e, l("jobfilter"), v).flatten();
        }
        if let Some(v) = field("platform_filter") {
            node.platform_filter = value::opt_string_list(e, l("platform_filter"), v).flatten();
        }
        if let Some(v) = field("created") {
            node.created = value::datetime(e, l("created"), v).unwrap_or(now);
        }
        if let Some(v) = field("updated") {
            node.updated = value::datetime(e, l("updated"), v).unwrap_or(now);
        }
        if let Some(v) = field("timeout") {
            node.timeout = value::datetime(e, l("timeout"), v)
                .unwrap_or(now.plus_seconds(DEFAULT_TIMEOUT_SECS));
        }
        if let Some(v) = field("holdoff") {
            node.holdoff = value::opt_datetime(e, l("holdoff"), v).flatten();
        }
        if let Some(v) = field("owner") {
            node.owner = value::opt_string(e, l("owner"), v).flatten();
        }
        if let Some(v) = field("submitter") {
            node.submitter = value::opt_string(e, l("submitter"), v).flatten();
        }
        if let Some(v) = field("treeid") {
            node.treeid = value::opt_string(e, l("treeid"), v).flatten();
        }
        if let Some(v) = field("user_groups") {
            if let Some(groups) = value::string_list(e, l("user_groups"), v) {
                if has_duplicates(&groups) {
                    e.push(
                        l("user_groups"),
                        "value_error",
                        "Value error, Groups must be unique",
                        v.clone(),
                    );
                }
                node.user_groups = groups;
            }
        }
        if let Some(v) = field("processed_by_kcidb_bridge") {
            node.processed_by_kcidb_bridge =
                value::lax_bool(e, l("processed_by_kcidb_bridge"), v).unwrap_or(false);
        }
        if let Some(v) = field("retry_counter") {
            node.retry_counter = value::strict_int(e, l("retry_counter"), v).unwrap_or(0);
        }
        errs.into_result()?;
        Ok(Self { id, node })
    }
}

fn missing(errs: &mut ValidationErrors, loc: Loc, input: &Value) {
    errs.add(FieldError::missing(loc, input.clone()));
}

fn has_duplicates(items: &[String]) -> bool {
    let mut seen = std::collections::HashSet::new();
    items.iter().any(|g| !seen.insert(g.as_str()))
}

fn parse_result(errs: &mut ValidationErrors, loc: Loc, v: &Value) -> Option<Option<NodeResult>> {
    if v.is_null() {
        return Some(None);
    }
    value::enum_str(errs, loc, v, &RESULTS)
        .and_then(NodeResult::parse)
        .map(Some)
}

/// A checked PATCH body: each field is `None` when absent; nullable fields hold
/// `Some(None)` for an explicit `null`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodePatch {
    /// New state; `Some(None)` (explicit null) means no state change.
    pub state: Option<Option<State>>,
    /// New result.
    pub result: Option<Option<NodeResult>>,
    /// New artifacts (checked as http(s) URLs, kept as sent).
    pub artifacts: Option<Option<std::collections::BTreeMap<String, String>>>,
    /// New data (replaces the stored object wholesale).
    pub data: Option<Option<Map<String, Value>>>,
    /// New debug object.
    pub debug: Option<Option<Map<String, Value>>>,
    /// New job filter.
    pub jobfilter: Option<Option<Vec<String>>>,
    /// New platform filter.
    pub platform_filter: Option<Option<Vec<String>>>,
    /// New timeout.
    pub timeout: Option<Timestamp>,
    /// New holdoff.
    pub holdoff: Option<Option<Timestamp>>,
    /// New `processed_by_kcidb_bridge` (see [`crate::state::patch`]).
    pub processed_by_kcidb_bridge: Option<bool>,
}

impl NodePatch {
    /// The keys a PATCH may carry; every other key is ignored.
    pub const KEYS: [&'static str; 10] = [
        "state",
        "result",
        "artifacts",
        "data",
        "debug",
        "jobfilter",
        "platform_filter",
        "timeout",
        "holdoff",
        "processed_by_kcidb_bridge",
    ];

    /// Checks a PATCH body. Type and enum errors are [`Error::Validation`] (422); the
    /// checks the reference makes in its kind layer (an artifact that is not an http(s)
    /// URL, `null` for `timeout` or `processed_by_kcidb_bridge`) and a body with no
    /// recognised key are [`Error::Invalid`] (400).
    pub fn from_json(body: &Value) -> Result<Self> {
        let loc = [Value::from("body")];
        let mut errs = ValidationErrors::default();
        let Value::Object(obj) = body else {
            errs.add(FieldError::model_attributes_type(
                loc.to_vec(),
                body.clone(),
            ));
            return Err(Error::Validation(errs));
        };
        if !Self::KEYS.iter().any(|k| obj.contains_key(*k)) {
            return Err(Error::Invalid("No fields to update".into()));
        }
        let mut kind_errs = ValidationErrors::default();
        let e = &mut errs;
        let l = |key: &str| at(&loc, key);
        let mut p = NodePatch::default();
        if let Some(v) = obj.get("state") {
            p.state = if v.is_null() {
                Some(None)
            } else {
                value::enum_str(e, l("state"), v, &STATES).map(State::parse)
            };
        }
        if let Some(v) = obj.get("result") {
            p.result = parse_result(e, l("result"), v);
        }
        if let Some(v) = obj.get("artifacts") {
            // Shape errors are schema errors; URL errors come from the kind check.
            let mut url_errs = ValidationErrors::default();
            if v.is_null()
                || v.as_object()
                    .is_some_and(|m| m.values().all(Value::is_string))
            {
                // Checked as URLs, stored as sent: the reference discards the
                // kind-normalised copy on PATCH.
                check::artifacts(&mut url_errs, vec!["artifacts".into()], v);
                kind_errs.0.extend(url_errs.0);
                p.artifacts = Some(v.as_object().map(|m| {
                    m.iter()
                        .filter_map(|(k, u)| Some((k.clone(), u.as_str()?.to_owned())))
                        .collect()
                }));
            } else if let Some(m) = value::opt_object(e, l("artifacts"), v) {
                for (k, val) in m.iter().flatten() {
                    value::string(e, at(&l("artifacts"), k.as_str()), val);
                }
            }
        }
        if let Some(v) = obj.get("data") {
            p.data = value::opt_object(e, l("data"), v);
        }
        if let Some(v) = obj.get("debug") {
            p.debug = value::opt_object(e, l("debug"), v);
        }
        if let Some(v) = obj.get("jobfilter") {
            p.jobfilter = value::opt_string_list(e, l("jobfilter"), v);
        }
        if let Some(v) = obj.get("platform_filter") {
            p.platform_filter = value::opt_string_list(e, l("platform_filter"), v);
        }
        if let Some(v) = obj.get("timeout") {
            match value::opt_datetime(e, l("timeout"), v) {
                Some(Some(t)) => p.timeout = Some(t),
                Some(None) => kind_errs.push(
                    vec!["timeout".into()],
                    "datetime_type",
                    "Input should be a valid datetime",
                    Value::Null,
                ),
                None => {}
            }
        }
        if let Some(v) = obj.get("holdoff") {
            p.holdoff = value::opt_datetime(e, l("holdoff"), v);
        }
        if let Some(v) = obj.get("processed_by_kcidb_bridge") {
            match value::opt_lax_bool(e, l("processed_by_kcidb_bridge"), v) {
                Some(Some(b)) => p.processed_by_kcidb_bridge = Some(b),
                Some(None) => kind_errs.push(
                    vec!["processed_by_kcidb_bridge".into()],
                    "bool_type",
                    "Input should be a valid boolean",
                    Value::Null,
                ),
                None => {}
            }
        }
        errs.into_result()?;
        if !kind_errs.is_empty() {
            return Err(Error::Invalid(kind_errs.describe("Node")));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        crate::time::parse_query_datetime("2024-01-01T00:00:00").unwrap()
    }

    fn errors(v: Value) -> Vec<(String, &'static str)> {
        match NodeBody::from_json(&v, &["body".into()], now()) {
            Err(Error::Validation(errs)) => errs
                .0
                .iter()
                .map(|e| {
                    let loc: Vec<String> = e
                        .loc
                        .iter()
                        .map(|p| p.to_string().replace('"', ""))
                        .collect();
                    (loc.join("."), e.kind)
                })
                .collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[test]
    fn minimal_body_gets_every_default() {
        let b = NodeBody::from_json(
            &json!({"name": "n", "path": ["n"]}),
            &["body".into()],
            now(),
        )
        .unwrap();
        assert_eq!(b.id, None);
        let n = b.node;
        assert_eq!(n.kind, "node");
        assert_eq!(n.state, State::Running);
        assert_eq!(n.created, now());
        assert_eq!(n.timeout.to_string(), "2024-01-01T06:00:00");
        assert_eq!(n.artifacts, Some(Default::default()));
        assert_eq!(n.data, Some(Map::new()));
        assert_eq!(n.platform_filter, Some(vec![]));
        assert_eq!(n.jobfilter, None);
        assert_eq!(n.retry_counter, 0);
        assert!(!n.processed_by_kcidb_bridge);
    }

    #[test]
    fn base_layer_errors_are_listed_with_locations() {
        assert_eq!(
            errors(json!({})),
            vec![
                ("body.name".into(), "missing"),
                ("body.path".into(), "missing")
            ]
        );
        assert_eq!(
            errors(
                json!({"name": 5, "path": "x", "state": "pending", "result": "ok",
                          "retry_counter": "2", "user_groups": ["a", "a"],
                          "artifacts": {"log": "ftp://x/y"}, "parent": "zz",
                          "processed_by_kcidb_bridge": "maybe", "timeout": "soon",
                          "data": [], "path2": 1})
            ),
            vec![
                ("body.name".into(), "string_type"),
                ("body.path".into(), "list_type"),
                ("body.parent".into(), "value_error"),
                ("body.state".into(), "enum"),
                ("body.result".into(), "enum"),
                ("body.artifacts.log".into(), "url_scheme"),
                ("body.data".into(), "dict_type"),
                ("body.timeout".into(), "datetime_parsing"),
                ("body.user_groups".into(), "value_error"),
                ("body.processed_by_kcidb_bridge".into(), "bool_parsing"),
                ("body.retry_counter".into(), "int_type"),
            ]
        );
        assert_eq!(
            errors(json!([1])),
            vec![("body".into(), "model_attributes_type")]
        );
        assert_eq!(
            errors(json!({"name": "n", "path": ["a", 1]})),
            vec![("body.path.1".into(), "string_type")]
        );
    }

    #[test]
    fn enum_message_lists_the_choices() {
        let Err(Error::Validation(errs)) = NodeBody::from_json(
            &json!({"name": "n", "path": [], "state": "x"}),
            &["body".into()],
            now(),
        ) else {
            panic!()
        };
        assert_eq!(
            errs.0[0].msg,
            "Input should be 'running', 'available', 'closing' or 'done'"
        );
    }

    #[test]
    fn values_are_normalised() {
        let b = NodeBody::from_json(
            &json!({"name": "n", "path": ["n"], "artifacts": {"log": "HTTP://Example.com"},
                    "created": "2030-01-01T00:00:00+02:00", "processed_by_kcidb_bridge": "True",
                    "holdoff": 1700000000, "id": "65A1355EE98651D0FE81E412", "bogus": 1}),
            &["body".into()],
            now(),
        )
        .unwrap();
        assert_eq!(b.node.artifacts.unwrap()["log"], "http://example.com/");
        assert_eq!(b.node.created.to_string(), "2029-12-31T22:00:00");
        assert!(b.node.processed_by_kcidb_bridge);
        assert_eq!(b.node.holdoff.unwrap().to_string(), "2023-11-14T22:13:20");
        assert_eq!(b.id.unwrap().to_string(), "65a1355ee98651d0fe81e412");
    }

    #[test]
    fn patch_artifacts_are_checked_but_kept_as_sent() {
        let p = NodePatch::from_json(&json!({"artifacts": {"log": "HTTP://Example.com"}})).unwrap();
        assert_eq!(p.artifacts.unwrap().unwrap()["log"], "HTTP://Example.com");
    }

    #[test]
    fn patch_bodies() {
        assert_eq!(
            NodePatch::from_json(&json!({"name": "x"})),
            Err(Error::Invalid("No fields to update".into()))
        );
        let p = NodePatch::from_json(&json!({"state": null, "result": null, "data": {"a": 1}}))
            .unwrap();
        assert_eq!(p.state, Some(None));
        assert_eq!(p.result, Some(None));
        assert_eq!(
            p.data,
            Some(Some(json!({"a": 1}).as_object().unwrap().clone()))
        );
        assert!(matches!(
            NodePatch::from_json(&json!({"state": "bogus"})),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            NodePatch::from_json(&json!({"timeout": null})),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            NodePatch::from_json(&json!({"processed_by_kcidb_bridge": null})),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            NodePatch::from_json(&json!({"artifacts": {"log": "not a url"}})),
            Err(Error::Invalid(m)) if m.contains("artifacts.log")
        ));
        assert!(matches!(
            NodePatch::from_json(&json!({"artifacts": {"log": 1}})),
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            NodePatch::from_json(&json!("x")),
            Err(Error::Validation(_))
        ));
    }
}
