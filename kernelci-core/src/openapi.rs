//! OpenAPI 3.1 schemas of the API's data (feature `openapi`).
//!
//! Two sources, so that the schemas cannot drift from the code:
//!
//! - the types that *are* the wire form ([`Node`], [`State`], [`NodeResult`],
//!   [`UserGroup`], [`Event`], [`TelemetryEvent`]) derive `utoipa::ToSchema`; their
//!   leaf types [`ObjectId`] and [`Timestamp`] implement it here;
//! - request bodies are not serde types (they are parsed by hand, with pydantic's
//!   errors and defaults), so their schemas are built from the tables and constants
//!   the parsers use: the kinds' `data` models ([`Kind::data_schema`]), the states
//!   and results, [`NodePatch::KEYS`], [`MAX_NAME_CHARS`], the telemetry fields.
//!
//! [`components`] lists every schema by name; schemas refer to each other with
//! `#/components/schemas/<name>`. kernelci-http assembles the document.

use serde_json::{json, Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::auth::UserGroup;
use crate::events::Event;
use crate::id::ObjectId;
use crate::node::{Kind, Node, NodePatch, NodeResult, State, MAX_NAME_CHARS};
use crate::telemetry::{TelemetryEvent, OPTIONAL_FIELDS};
use crate::time::Timestamp;

/// The ids the server writes: 24 lower-case hex digits.
pub const OBJECT_ID_PATTERN: &str = "^[0-9a-f]{24}$";
/// The ids the server reads: 24 hex digits, any case.
pub const OBJECT_ID_INPUT_PATTERN: &str = "^[0-9a-fA-F]{24}$";
/// The datetimes the server writes: naive UTC, a fraction of six digits only when
/// the microseconds are not zero (API.md §1.5).
pub const TIMESTAMP_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?$";

impl PartialSchema for ObjectId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(OBJECT_ID_PATTERN))
            .description(Some("Database id: 24 hex digits"))
            .examples([json!("65a1355ee98651d0fe81e412")])
            .into()
    }
}

impl ToSchema for ObjectId {}

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(TIMESTAMP_PATTERN))
            .description(Some(
                "UTC datetime without a zone; the fraction (6 digits) only when not zero",
            ))
            .examples([json!("2024-02-01T09:58:28.479000")])
            .into()
    }
}

impl ToSchema for Timestamp {}

/// `schema` or `null`.
pub fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

/// A reference to the component `name`.
pub fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An id in a request (path, query or body).
pub fn object_id_input() -> Value {
    json!({"type": "string", "pattern": OBJECT_ID_INPUT_PATTERN})
}

/// A datetime in a JSON body: ISO 8601 (zone optional, naive is UTC) or seconds
/// since the epoch (API.md §1.5).
pub fn datetime_input() -> Value {
    json!({"anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "number", "minimum": 0, "maximum": 253_402_300_799_i64},
    ]})
}

fn name_string() -> Value {
    json!({"type": "string", "maxLength": MAX_NAME_CHARS})
}

fn string_list() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn artifacts() -> Value {
    nullable(json!({
        "type": "object",
        "additionalProperties": {"type": "string", "format": "uri", "pattern": "^https?://"},
        "description": "Artifact name to absolute http(s) URL (stored normalised)",
    }))
}

/// The schema of one base-layer node field in a request (MODELS.md §2), or `None`
/// for a key the parser does not read.
fn node_field(name: &str) -> Option<Value> {
    let states: Vec<&str> = State::ALL.iter().map(State::as_str).collect();
    let results: Vec<&str> = NodeResult::ALL.iter().map(NodeResult::as_str).collect();
    Some(match name {
        "kind" => json!({"type": "string"}),
        "name" => name_string(),
        "path" => json!({"type": "array", "items": name_string()}),
        "group" => nullable(name_string()),
        "parent" => nullable(object_id_input()),
        "state" => json!({"type": "string", "enum": states}),
        "result" => nullable(json!({"type": "string", "enum": results})),
        "artifacts" => artifacts(),
        "data" | "debug" => nullable(json!({"type": "object"})),
        "jobfilter" | "platform_filter" => nullable(string_list()),
        "created" | "updated" | "timeout" => datetime_input(),
        "holdoff" => nullable(datetime_input()),
        "owner" | "submitter" | "treeid" => nullable(json!({"type": "string"})),
        "user_groups" => json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true}),
        "processed_by_kcidb_bridge" => json!({"type": "boolean"}),
        "retry_counter" => json!({"type": "integer", "format": "int64"}),
        _ => return None,
    })
}

/// The keys of a node body, in the model's order (the keys of [`Node`] but `id`).
fn node_body_keys() -> Vec<String> {
    let node = Node::new(
        "checkout",
        "n",
        Timestamp::from_micros(0).unwrap_or_else(Timestamp::now),
    );
    match node.to_json() {
        Value::Object(m) => m.keys().filter(|k| *k != "id").cloned().collect(),
        _ => Vec::new(),
    }
}

/// The component name of the node body of `kind`.
pub fn node_body_name(kind: Kind) -> String {
    format!("{}NodeBody", kind.model_name())
}

/// The component name of the `data` model of `kind`.
pub fn data_name(kind: Kind) -> String {
    format!("{}Data", kind.model_name())
}

/// The base layer (`NodeBody`): every key of [`Node`] but `id`; `name` and `path`
/// required; everything else has a default. Unknown keys are ignored.
fn node_body() -> Value {
    let mut props = Map::new();
    for k in node_body_keys() {
        if let Some(s) = node_field(&k) {
            props.insert(k, s);
        }
    }
    json!({
        "type": "object",
        "description": "A node as a client writes it (MODELS.md §2): `name` and `path` are \
            required, every other field has a default; unknown keys are ignored",
        "properties": props,
        "required": ["name", "path"],
    })
}

/// The body of one kind: the base layer, `kind` fixed, `data` of the kind's model.
fn kind_body(kind: Kind) -> Value {
    let data = match kind.data_schema() {
        Some(_) => reference(&data_name(kind)),
        None => nullable(json!({"type": "object"})),
    };
    json!({
        "allOf": [reference("NodeBody"), {
            "type": "object",
            "properties": {"kind": {"type": "string", "enum": [kind.as_str()]}, "data": data},
            "required": ["kind"],
        }],
    })
}

/// A node body of any accepted kind.
fn node_write() -> Value {
    let kinds: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| reference(&node_body_name(*k)))
        .collect();
    let mapping: Map<String, Value> = Kind::ALL
        .iter()
        .map(|k| {
            (
                k.as_str().to_owned(),
                Value::from(format!("#/components/schemas/{}", node_body_name(*k))),
            )
        })
        .collect();
    json!({
        "oneOf": kinds,
        "discriminator": {"propertyName": "kind", "mapping": mapping},
        "example": {
            "kind": "checkout",
            "name": "checkout",
            "path": ["checkout"],
            "data": {"kernel_revision": {
                "tree": "mainline",
                "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
                "branch": "master",
                "commit": "0123456789abcdef0123456789abcdef01234567",
            }},
        },
    })
}

/// `PATCH /node/{id}`: any of [`NodePatch::KEYS`], each replacing the stored value.
fn node_patch() -> Value {
    let props: Map<String, Value> = NodePatch::KEYS
        .iter()
        .filter_map(|k| node_field(k).map(|s| ((*k).to_owned(), s)))
        .collect();
    json!({
        "type": "object",
        "description": "The fields to replace (other keys are ignored; none of them: 400)",
        "properties": props,
        "example": {"state": "done", "result": "pass"},
    })
}

/// `PUT /nodes/{id}`: a node and its children, recursively.
fn hierarchy() -> Value {
    json!({
        "type": "object",
        "properties": {
            "node": {"allOf": [reference("NodeWrite")], "description":
                "The node; with an `id`, it replaces that stored node (the root's id is the path's)"},
            "child_nodes": {"type": "array", "items": reference("Hierarchy")},
        },
        "required": ["node"],
    })
}

/// One telemetry event as `POST /telemetry` takes it (MODELS.md §10).
fn telemetry_input() -> Value {
    let mut props = Map::new();
    props.insert("ts".into(), datetime_input());
    props.insert("kind".into(), json!({"type": "string"}));
    props.insert("runtime".into(), json!({"type": "string"}));
    for f in OPTIONAL_FIELDS {
        props.insert(f.into(), nullable(json!({"type": "string"})));
    }
    props.insert("is_infra_error".into(), json!({"type": "boolean"}));
    props.insert(
        "retry".into(),
        json!({"type": "integer", "format": "int64"}),
    );
    props.insert("extra".into(), json!({"type": "object"}));
    json!({"type": "object", "properties": props, "required": ["kind", "runtime"]})
}

/// Marks every property of an object schema required: the wire types always
/// write every key (absent values as `null`).
fn all_required(mut schema: Value) -> Value {
    let keys: Vec<Value> = schema["properties"]
        .as_object()
        .map(|m| m.keys().cloned().map(Value::from).collect())
        .unwrap_or_default();
    if !keys.is_empty() {
        schema["required"] = Value::Array(keys);
    }
    schema
}

fn derived<T: ToSchema>() -> (String, Value) {
    let schema = serde_json::to_value(T::schema()).unwrap_or(Value::Null);
    (T::name().into_owned(), schema)
}

/// Every schema core defines, by component name.
pub fn components() -> Vec<(String, Value)> {
    let mut out = vec![
        derived::<ObjectId>(),
        derived::<Timestamp>(),
        derived::<State>(),
        derived::<NodeResult>(),
    ];
    for (name, schema) in [
        derived::<Node>(),
        derived::<UserGroup>(),
        derived::<Event>(),
        derived::<TelemetryEvent>(),
    ] {
        out.push((name, all_required(schema)));
    }
    out.push(("NodeBody".into(), node_body()));
    for kind in Kind::ALL {
        if let Some(data) = kind.data_schema() {
            if !out.iter().any(|(n, _)| *n == data_name(kind)) {
                out.push((data_name(kind), data));
            }
        }
        out.push((node_body_name(kind), kind_body(kind)));
    }
    out.push(("NodeWrite".into(), node_write()));
    out.push(("NodePatch".into(), node_patch()));
    out.push(("Hierarchy".into(), hierarchy()));
    out.push(("TelemetryEventInput".into(), telemetry_input()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_schema_lists_the_23_keys_as_required() {
        let (_, node) = components().into_iter().find(|(n, _)| n == "Node").unwrap();
        let keys = Node::new("checkout", "c", Timestamp::now()).to_json();
        let keys: Vec<&String> = keys.as_object().unwrap().keys().collect();
        let props: Vec<&String> = node["properties"].as_object().unwrap().keys().collect();
        assert_eq!(props, keys);
        assert_eq!(node["required"].as_array().unwrap().len(), 23);
    }

    #[test]
    fn every_body_key_has_a_schema() {
        for k in node_body_keys() {
            assert!(node_field(&k).is_some(), "{k}");
        }
        for k in NodePatch::KEYS {
            assert!(node_field(k).is_some(), "{k}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        let all = components();
        let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        fn walk(v: &Value, names: &[&str]) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let name = r.trim_start_matches("#/components/schemas/");
                        assert!(names.contains(&name), "{r}");
                    }
                    m.values().for_each(|v| walk(v, names));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, names)),
                _ => {}
            }
        }
        for (_, s) in &all {
            walk(s, &names);
        }
    }
}
