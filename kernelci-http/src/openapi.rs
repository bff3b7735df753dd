//! The OpenAPI 3.1 document served at `/latest/openapi.json` (and, through the path
//! rewrite, `/v0/openapi.json` and `/openapi.json`).
//!
//! It cannot drift from the code:
//!
//! - the paths come from the route table ([`ROUTES`]), and `describe` matches on
//!   every [`Endpoint`] (a new endpoint does not compile until it is described);
//! - the data schemas come from kernelci-core (`kernelci_core::openapi`: derived from
//!   the wire types with utoipa, and built from the tables the body parsers use);
//!   the few bodies this crate parses itself (users, groups, pub/sub) are described
//!   here next to their limits ([`crate::handlers::users::MAX_USERNAME_CHARS`]...);
//! - statuses: every operation declares what the server sends: its successes (200,
//!   202, 204), 401/403 from its access class, 413 and 422 when it reads a body or
//!   validates query parameters, 503 (connection limits, store unavailable), and its
//!   own errors; every error body is `{"detail": "..."}`, 422's detail a list of
//!   pydantic items. A trailing-slash mismatch answers 307 to the other spelling
//!   (`/latest` → `/latest/` is documented as a path).
//!
//! The tests check the document against the route table both ways and parse it
//! with utoipa's OpenAPI types; `scripts/schemathesis.sh` fuzzes a real server with
//! it and checks every answer against it.

use kernelci_core::store::Section;
use serde_json::{json, Map, Value};

use kernelci_core::auth::Access;
use kernelci_core::openapi::{nullable, object_id_input, reference};

use crate::handlers::users::{MAX_EMAIL_CHARS, MAX_GROUP_NAME_CHARS, MAX_USERNAME_CHARS};
use crate::routes::{Endpoint, ROUTES};
use crate::service::MAX_PATH_PARAM_CHARS;

/// The document's path of a route pattern.
pub fn path_of(pattern: &str) -> String {
    if pattern == "/" {
        "/latest/".to_owned()
    } else {
        format!("/latest{pattern}")
    }
}

/// What one operation takes and answers.
struct Spec {
    tag: &'static str,
    summary: &'static str,
    /// Query parameters (path parameters come from the pattern).
    query: Vec<Value>,
    /// Path parameter schemas by name, where not a plain string.
    path_schemas: Vec<(&'static str, Value)>,
    /// The request body object, if any.
    body: Option<Value>,
    /// Successful answers: status and response object.
    ok: Vec<(u16, Value)>,
    /// Error statuses beyond those the access class and the body imply.
    errors: &'static [u16],
}

impl Spec {
    fn new(tag: &'static str, summary: &'static str) -> Self {
        Spec {
            tag,
            summary,
            query: Vec::new(),
            path_schemas: Vec::new(),
            body: None,
            ok: Vec::new(),
            errors: &[],
        }
    }
    fn ok(mut self, status: u16, response: Value) -> Self {
        self.ok.push((status, response));
        self
    }
    fn json(self, description: &str, schema: Value) -> Self {
        self.ok(200, json_response(description, schema))
    }
    fn body(mut self, schema: Value) -> Self {
        self.body =
            Some(json!({"required": true, "content": {"application/json": {"schema": schema}}}));
        self
    }
    fn form(mut self, schema: Value) -> Self {
        self.body = Some(json!({"required": true,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}}}));
        self
    }
    fn query(mut self, params: impl IntoIterator<Item = Value>) -> Self {
        self.query.extend(params);
        self
    }
    fn path(mut self, name: &'static str, schema: Value) -> Self {
        self.path_schemas.push((name, schema));
        self
    }
    fn errors(mut self, errors: &'static [u16]) -> Self {
        self.errors = errors;
        self
    }
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn typed_response(description: &str, content_type: &str, schema: Value) -> Value {
    json!({"description": description, "content": {content_type: {"schema": schema}}})
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema,
           "description": description})
}

/// `limit` and `offset` of the paginated endpoints (API.md §1.6).
fn page_params() -> Vec<Value> {
    vec![
        query(
            "limit",
            json!({"type": "integer", "minimum": 1, "default": 50}),
            "Page size (no maximum)",
        ),
        query(
            "offset",
            json!({"type": "integer", "minimum": 0, "default": 0}),
            "Items to skip",
        ),
    ]
}

/// The free-form filters (`field=value`, `field__op=value`): every query parameter
/// an endpoint does not consume itself.
fn filters(description: &str) -> Value {
    json!({"name": "filters", "in": "query", "required": false, "style": "form", "explode": true,
           "schema": {"type": "object", "additionalProperties": {"type": "string"}},
           "description": description})
}

const NODE_FILTERS: &str = "Any other parameter filters on a node field: `field=value` \
    (dotted paths reach into objects: `data.kernel_revision.tree=mainline`) or \
    `field__op=value` with op one of `ne`, `lt`, `lte`, `gt`, `gte`, `re`, `in`, `nin` \
    (QUERY.md)";

fn page_of(item: Value) -> Value {
    json!({"type": "object", "properties": {
        "items": {"type": "array", "items": item},
        "total": {"type": "integer", "minimum": 0},
        "limit": {"type": "integer", "minimum": 1},
        "offset": {"type": "integer", "minimum": 0},
    }, "required": ["items", "total", "limit", "offset"]})
}

fn string_max(max: usize) -> Value {
    json!({"type": "string", "maxLength": max})
}

fn null_response(description: &str) -> Value {
    json_response(description, json!({"type": "null"}))
}

/// The schemas this crate defines (bodies it parses, answers it writes).
fn own_schemas() -> Vec<(&'static str, Value)> {
    let user_read_props = json!({
        "id": reference("ObjectId"),
        "email": {"type": "string"},
        "is_active": {"type": "boolean"},
        "is_superuser": {"type": "boolean"},
        "is_verified": {"type": "boolean"},
        "username": {"type": "string"},
        "groups": {"type": "array", "items": reference("UserGroup")},
    });
    let required: Vec<&String> = user_read_props
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let groups_list = json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true});
    vec![
        (
            "Error",
            json!({"type": "object", "properties": {"detail": {"type": "string"}},
            "required": ["detail"], "description": "Every error but 422"}),
        ),
        (
            "ValidationItem",
            json!({"type": "object", "properties": {
            "type": {"type": "string"},
            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
            "msg": {"type": "string"},
            "input": {},
            "ctx": {"type": "object"},
        }, "required": ["type", "loc", "msg", "input"],
           "description": "One problem, as pydantic reports it (`loc[0]` is body, query or path)"}),
        ),
        (
            "ValidationError",
            json!({"type": "object", "properties": {
            "detail": {"type": "array", "items": reference("ValidationItem")}},
            "required": ["detail"]}),
        ),
        (
            "UserRead",
            json!({"type": "object", "properties": user_read_props, "required": required}),
        ),
        (
            "UserListItem",
            json!({"allOf": [reference("UserRead"), {"type": "object",
            "properties": {"revision_id": {"type": "null"}}, "required": ["revision_id"]}]}),
        ),
        (
            "Token",
            json!({"type": "object", "properties": {
            "access_token": {"type": "string"}, "token_type": {"type": "string", "enum": ["bearer"]}},
            "required": ["access_token", "token_type"]}),
        ),
        (
            "LoginForm",
            json!({"type": "object", "properties": {
            "username": {"type": "string"}, "password": {"type": "string"},
            "grant_type": {"type": "string", "enum": ["password"]},
            "scope": {"type": "string"}, "client_id": {"type": "string"},
            "client_secret": {"type": "string"}},
            "required": ["username", "password"]}),
        ),
        (
            "UpdatePasswordForm",
            json!({"type": "object", "properties": {
            "username": {"type": "string"}, "password": {"type": "string"},
            "new_password": {"type": "string"}},
            "required": ["username", "password", "new_password"]}),
        ),
        (
            "InviteRequest",
            json!({"type": "object", "properties": {
            "username": string_max(MAX_USERNAME_CHARS),
            "email": {"type": "string", "format": "email", "maxLength": MAX_EMAIL_CHARS},
            "groups": groups_list,
            "is_superuser": {"type": "boolean", "default": false},
            "send_email": {"type": "boolean", "default": true},
            "return_token": {"type": "boolean", "default": false},
            "resend_if_exists": {"type": "boolean", "default": false}},
            "required": ["username", "email"]}),
        ),
        (
            "InviteUrl",
            json!({"type": "object", "properties": {
            "public_base_url": {"type": "string"}, "accept_invite_url": {"type": "string"}},
            "required": ["public_base_url", "accept_invite_url"]}),
        ),
        (
            "InviteResponse",
            json!({"type": "object", "properties": {
            "user": reference("UserRead"),
            "email_sent": {"type": "boolean"},
            "public_base_url": {"type": "string"},
            "accept_invite_url": {"type": "string"},
            "invite_url": {"type": ["string", "null"]},
            "token": {"type": ["string", "null"]}},
            "required": ["user", "email_sent", "public_base_url", "accept_invite_url",
                         "invite_url", "token"]}),
        ),
        (
            "TokenPassword",
            json!({"type": "object", "properties": {
            "token": {"type": "string"}, "password": {"type": "string"}},
            "required": ["token", "password"]}),
        ),
        (
            "ForgotPassword",
            json!({"type": "object", "properties": {
            "email": {"type": "string", "format": "email", "maxLength": MAX_EMAIL_CHARS}},
            "required": ["email"]}),
        ),
        (
            "UserUpdate",
            json!({"type": "object", "properties": {
            "username": nullable(string_max(MAX_USERNAME_CHARS)),
            "email": nullable(json!({"type": "string", "format": "email", "maxLength": MAX_EMAIL_CHARS})),
            "password": {"type": ["string", "null"]},
            "is_active": {"type": ["boolean", "null"]},
            "is_superuser": {"type": ["boolean", "null"]},
            "is_verified": {"type": ["boolean", "null"]},
            "groups": groups_list},
            "description": "Every field optional; on /user/me the flags are ignored and \
                groups must be empty"}),
        ),
        (
            "GroupCreate",
            json!({"type": "object", "properties": {
            "name": string_max(MAX_GROUP_NAME_CHARS)}, "required": ["name"]}),
        ),
        (
            "BatchNodeset",
            json!({"type": "object", "properties": {
            "nodes": {"type": "array", "items": object_id_input()},
            "field": {"type": "string", "enum": ["processed_by_kcidb_bridge"]},
            "value": {"type": "string", "enum": ["true", "false", "True", "False"]}},
            "required": ["nodes", "field", "value"]}),
        ),
        (
            "EventItem",
            json!({"allOf": [reference("Event"), {"type": "object", "properties": {
            "node": reference("Node")}, "description": "`node`: with `recursive`, the \
                current node of a node event"}]}),
        ),
        (
            "Subscription",
            json!({"type": "object", "properties": {
            "id": {"type": "integer", "minimum": 1}, "channel": {"type": "string"},
            "user": {"type": "string"}, "promiscuous": {"type": "boolean"}},
            "required": ["id", "channel", "user", "promiscuous"]}),
        ),
        (
            "SubscriptionStats",
            json!({"type": "object", "properties": {
            "id": {"type": "integer", "minimum": 1}, "channel": {"type": "string"},
            "user": {"type": "string"}, "promiscuous": {"type": "boolean"},
            "created": reference("Timestamp"),
            "last_poll": {"anyOf": [reference("Timestamp"), {"type": "null"}]}},
            "required": ["id", "channel", "user", "promiscuous", "created", "last_poll"]}),
        ),
        (
            "ListenMessage",
            json!({"type": "object", "properties": {
            "type": {"type": "string", "enum": ["message"]},
            "pattern": {"type": "null"},
            "channel": {"type": "string"},
            "data": {"type": "string", "description": "The CloudEvent, as JSON text"}},
            "required": ["type", "pattern", "channel", "data"]}),
        ),
        (
            "CloudEvent",
            json!({"type": "object", "properties": {
            "specversion": {}, "id": {}, "source": {}, "type": {}, "time": {}, "data": {}},
            "description": "A CloudEvent (structured mode); extension attributes as more keys"}),
        ),
        (
            "Publish",
            json!({"type": "object", "properties": {
            "data": {"description": "The payload (present: must not be null, false, 0, \
                empty); absent: null is published"},
            "type": {"type": ["string", "null"]},
            "source": {"type": ["string", "null"]},
            "attributes": {"type": ["object", "null"]}}}),
        ),
        (
            "Push",
            json!({"type": "object", "properties": {"data": {}}, "required": ["data"],
            "description": "`data` and any CloudEvent attributes"}),
        ),
        (
            "TelemetryInserted",
            json!({"type": "object", "properties": {
            "inserted": {"type": "integer", "minimum": 1}}, "required": ["inserted"]}),
        ),
        (
            "TelemetryStatsRow",
            json!({"type": "object", "properties": {
            "total": {"type": "integer"}, "pass": {"type": "integer"},
            "fail": {"type": "integer"}, "incomplete": {"type": "integer"},
            "skip": {"type": "integer"}, "infra_error": {"type": "integer"}},
            "required": ["total", "pass", "fail", "incomplete", "skip", "infra_error"],
            "description": "One group: its `group_by` values, then the counts"}),
        ),
        (
            "TelemetryAnomalies",
            json!({"type": "object", "properties": {
            "window": {"type": "string"}, "threshold": {"type": "number"},
            "min_total": {"type": "integer"}, "scope": {"type": "string"},
            "since": {"type": "string"},
            "result_anomalies": {"type": "array", "items": {"type": "object"}},
            "error_anomalies": {"type": "array", "items": {"type": "object"}}},
            "required": ["window", "threshold", "min_total", "scope", "since",
                         "result_anomalies", "error_anomalies"]}),
        ),
    ]
}

fn html() -> Value {
    typed_response("HTML page", "text/html", json!({"type": "string"}))
}

/// Tag, summary, parameters, body and answers of each endpoint.
fn describe(ep: Endpoint) -> Spec {
    use kernelci_core::auth::Operation::*;
    let node = || reference("Node");
    let id = || object_id_input();
    let noevent = || {
        query(
            "noevent",
            json!({"type": "boolean"}),
            "true: no `updated` event",
        )
    };
    match ep {
        Root => Spec::new(
            "meta",
            "{\"message\": \"KernelCI API\"}, or the landing page for browsers",
        )
        .ok(
            200,
            json!({"description": "Greeting", "content": {
                "application/json": {"schema": {"type": "object",
                    "properties": {"message": {"type": "string"}}, "required": ["message"]}},
                "text/html": {"schema": {"type": "string"}}}}),
        ),
        OpenApi => {
            Spec::new("meta", "This document").json("OpenAPI 3.1", json!({"type": "object"}))
        }
        Metrics => Spec::new("meta", "Counters in the Prometheus text format").ok(
            200,
            typed_response("Counters", "text/plain", json!({"type": "string"})),
        ),
        Health => Spec::new("meta", "Liveness: the process answers").json(
            "Alive",
            json!({"type": "object", "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "service": {"type": "string"}}, "required": ["status", "service"]}),
        ),
        Ready => Spec::new(
            "meta",
            "Readiness: the store answers and the server is not stopping",
        )
        .json(
            "Ready",
            json!({"type": "object", "properties": {
                    "status": {"type": "string", "enum": ["ready"]},
                    "service": {"type": "string"}, "leader": {"type": "boolean"}},
                    "required": ["status", "service", "leader"]}),
        ),
        HtmlPage => Spec::new("pages", "HTML page").ok(200, html()),
        Icon => Spec::new("pages", "Status icon")
            .ok(
                200,
                typed_response(
                    "PNG",
                    "image/png",
                    json!({"type": "string", "format": "binary"}),
                ),
            )
            .errors(&[400, 404]),
        StaticCss => Spec::new("pages", "Stylesheet")
            .ok(
                200,
                typed_response("CSS", "text/css", json!({"type": "string"})),
            )
            .errors(&[400, 404]),
        StaticJs => Spec::new("pages", "Script")
            .ok(
                200,
                typed_response(
                    "JavaScript",
                    "application/javascript",
                    json!({"type": "string"}),
                ),
            )
            .errors(&[400, 404]),
        Login => Spec::new("users", "Log in; returns a bearer token")
            .form(reference("LoginForm"))
            .json("Token", reference("Token"))
            .errors(&[400]),
        Logout => Spec::new("users", "Log out (tokens are stateless: nothing to do)")
            .ok(204, json!({"description": "Done"})),
        Register => Spec::new(
            "users",
            "Disabled: use /user/invite (always 404 for an admin)",
        )
        .body(json!({}))
        .errors(&[404]),
        InvitePage => Spec::new("users", "HTML form to invite a user").ok(200, html()),
        Invite => Spec::new("users", "Invite a user (creates it unverified)")
            .body(reference("InviteRequest"))
            .json("The invitation", reference("InviteResponse"))
            .errors(&[400]),
        InviteUrl => Spec::new("users", "The public URLs used in invitations")
            .json("URLs", reference("InviteUrl")),
        AcceptInvitePage => Spec::new("users", "HTML form to accept an invitation").ok(200, html()),
        AcceptInvite => Spec::new("users", "Accept an invitation: set the password")
            .body(reference("TokenPassword"))
            .json("The user, verified", reference("UserRead"))
            .errors(&[400, 404]),
        ForgotPassword => Spec::new("users", "E-mail a password reset token")
            .body(reference("ForgotPassword"))
            .ok(202, null_response("Accepted (also for an unknown address)")),
        ResetPassword => Spec::new("users", "Reset a password with a reset token")
            .body(reference("TokenPassword"))
            .ok(200, null_response("Done"))
            .errors(&[400]),
        UpdatePassword => Spec::new("users", "Change a password (credentials in the form)")
            .form(reference("UpdatePasswordForm"))
            .ok(200, null_response("Done"))
            .errors(&[400]),
        Whoami => Spec::new("users", "The caller").json("The caller", reference("UserRead")),
        GetUser => Spec::new("users", "One user")
            .json("The user", reference("UserRead"))
            .errors(&[404]),
        DeleteUser => Spec::new(
            "users",
            "Delete a user (not the last active superuser: 409)",
        )
        .ok(200, null_response("Deleted"))
        .errors(&[404, 409]),
        PatchMe => Spec::new("users", "Update the caller's profile")
            .body(reference("UserUpdate"))
            .json("The user", reference("UserRead"))
            .errors(&[400, 409]),
        PatchUser => Spec::new("users", "Update any user")
            .path("id", id())
            .body(reference("UserUpdate"))
            .json("The user", reference("UserRead"))
            .errors(&[400, 404, 409]),
        ListUsers => Spec::new("users", "Users (paginated)")
            .query(page_params())
            .query([filters(
                "Exact-match filters on user fields (`username=alice`, `groups.name=x`)",
            )])
            .json("A page", page_of(reference("UserListItem")))
            .errors(&[400]),
        ListGroups => Spec::new("user-groups", "User groups (paginated)")
            .query(page_params())
            .query([filters("Exact-match filters (`name=x`)")])
            .json("A page", page_of(reference("UserGroup")))
            .errors(&[400]),
        GetGroup => Spec::new("user-groups", "One user group")
            .path("id", id())
            .json("The group", reference("UserGroup"))
            .errors(&[400, 404]),
        CreateGroup => Spec::new("user-groups", "Create a user group")
            .body(reference("GroupCreate"))
            .json("The group", reference("UserGroup"))
            .errors(&[400]),
        DeleteGroup => Spec::new(
            "user-groups",
            "Delete a user group (409 while a user has it)",
        )
        .path("id", id())
        .ok(204, json!({"description": "Deleted"}))
        .errors(&[400, 404, 409]),
        GetNode => Spec::new("nodes", "One node, or null when it does not exist")
            .path("id", id())
            .json(
                "The node or null",
                json!({"anyOf": [node(), {"type": "null"}]}),
            )
            .errors(&[400]),
        ListNodes => Spec::new("nodes", "Nodes matching the query (paginated)")
            .query(page_params())
            .query([filters(NODE_FILTERS)])
            .json("A page", page_of(node()))
            .errors(&[400]),
        ListNodesFast => Spec::new("nodes", "Nodes matching the query (plain array)")
            .query([
                query(
                    "limit",
                    json!({"type": "integer", "minimum": 0}),
                    "At most this many (0: all)",
                ),
                query(
                    "offset",
                    json!({"type": "integer", "minimum": 0}),
                    "Skip this many",
                ),
                filters(NODE_FILTERS),
            ])
            .json("The nodes", json!({"type": "array", "items": node()}))
            .errors(&[400, 504]),
        CountNodes => Spec::new("nodes", "Number of nodes matching the query")
            .query([filters(&format!(
                "{NODE_FILTERS}; `limit` and `offset` are filters here"
            ))])
            .json("The count", json!({"type": "integer", "minimum": 0}))
            .errors(&[400]),
        CreateNode => Spec::new("nodes", "Create a node (owner: the caller)")
            .body(reference("NodeWrite"))
            .json("The node", node())
            .errors(&[400, 404]),
        ReplaceNode => Spec::new("nodes", "Replace a node (full update)")
            .path("id", id())
            .query([noevent()])
            .body(reference("NodeWrite"))
            .json("The node", node())
            .errors(&[400, 404, 409]),
        PatchNode => Spec::new("nodes", "Update some fields of a node")
            .path("id", id())
            .query([noevent()])
            .body(reference("NodePatch"))
            .json("The node", node())
            .errors(&[400, 404, 409]),
        BatchNodeset => Spec::new(
            "nodes",
            "Set processed_by_kcidb_bridge on the nodes the caller may edit",
        )
        .body(reference("BatchNodeset"))
        .json(
            "How many nodes changed",
            json!({"type": "integer", "minimum": 0}),
        )
        .errors(&[400, 404]),
        SubmitHierarchy => Spec::new("nodes", "Submit a node hierarchy under a node")
            .path("id", id())
            .body(reference("Hierarchy"))
            .json(
                "The written nodes, root first",
                json!({"type": "array", "items": node()}),
            )
            .errors(&[400, 404, 409]),
        ListEvents => Spec::new("events", "Event history (plain array)")
            .query([
                query(
                    "limit",
                    json!({"type": "integer", "minimum": 0}),
                    "At most this many",
                ),
                query(
                    "offset",
                    json!({"type": "integer", "minimum": 0}),
                    "Skip this many",
                ),
                query(
                    "from",
                    json!({"type": "string", "format": "date-time"}),
                    "Events after this time",
                ),
                query(
                    "recursive",
                    json!({"type": "string"}),
                    "Non-empty: add each event's node (limit 1..1000)",
                ),
                query("node_id", id(), "Events of this node"),
                query("id", id(), "One event"),
                query(
                    "ids",
                    json!({"type": "string"}),
                    "Comma-separated event ids",
                ),
                filters(
                    "`kind`, `state`, `result`, `op`, `name`, `group`, `owner` match the \
                    node event's data; `channel`, `path` (regex); anything else is an \
                    exact-match filter",
                ),
            ])
            .json(
                "The events",
                json!({"type": "array", "items": reference("EventItem")}),
            )
            .errors(&[400]),
        EventStream => Spec::new(
            "events",
            "The event log as server-sent events (`id:` the sequence id, `data:` the \
             /events document), from `Last-Event-ID`, else `after`, else the end of the log",
        )
        .query([
            query(
                "after",
                json!({"type": "integer", "minimum": 0}),
                "Start after this sequence id (the Last-Event-ID header wins)",
            ),
            query("node_id", id(), "Events of this node"),
            filters(
                "`kind`, `state`, `result`, `op`, `name`, `group`, `owner` match the \
                node event's data; `channel`, `path` (regex); anything else is an \
                exact-match filter; `limit`, `offset`, `recursive`, `id`, `ids` and \
                `from` are refused (400)",
            ),
        ])
        .ok(
            200,
            typed_response(
                "Server-sent events, until the client or the server goes",
                "text/event-stream",
                json!({"type": "string"}),
            ),
        )
        .errors(&[400, 503]),
        PostTelemetry => Spec::new("telemetry", "Store telemetry events")
            .body(
                json!({"type": "array", "items": reference("TelemetryEventInput"), "minItems": 1}),
            )
            .json("How many were stored", reference("TelemetryInserted"))
            .errors(&[400]),
        GetTelemetry => Spec::new("telemetry", "Telemetry events (paginated)")
            .query(page_params())
            .query([
                query(
                    "since",
                    json!({"type": "string", "format": "date-time"}),
                    "ts >= since",
                ),
                query(
                    "until",
                    json!({"type": "string", "format": "date-time"}),
                    "ts <= until",
                ),
                query(
                    "is_infra_error",
                    json!({"type": "boolean"}),
                    "true or false",
                ),
                filters("Exact-match filters on event fields"),
            ])
            .json("A page", page_of(reference("TelemetryEvent")))
            .errors(&[400]),
        TelemetryStats => Spec::new("telemetry", "Grouped telemetry counts")
            .query([
                json!({"name": "group_by", "in": "query", "required": true,
                       "schema": {"type": "string"}, "description":
                       "Comma list of runtime, lab, device_type, device_id, job_name, tree, \
                        branch, arch, kind, error_type"}),
                query(
                    "since",
                    json!({"type": "string", "format": "date-time"}),
                    "ts >= since",
                ),
                query(
                    "until",
                    json!({"type": "string", "format": "date-time"}),
                    "ts <= until",
                ),
                filters(
                    "kind, runtime (or lab), device_type, device_id, job_name, tree, branch, arch",
                ),
            ])
            .json(
                "One row per group",
                json!({"type": "array", "items": reference("TelemetryStatsRow")}),
            )
            .errors(&[400]),
        TelemetryAnomalies => Spec::new("telemetry", "Telemetry anomaly report")
            .query([
                query(
                    "window",
                    json!({"type": "string", "enum": ["1h", "3h", "6h", "12h", "24h", "48h"]}),
                    "Default 6h",
                ),
                query(
                    "threshold",
                    json!({"type": "number", "minimum": 0, "maximum": 1}),
                    "Default 0.5",
                ),
                query(
                    "min_total",
                    json!({"type": "integer", "minimum": 1}),
                    "Default 3",
                ),
                query(
                    "scope",
                    json!({"type": "string", "enum": ["device_type", "device"]}),
                    "Default device_type",
                ),
            ])
            .json("The report", reference("TelemetryAnomalies"))
            .errors(&[400]),
        KvGet => Spec::new("kv", "Read a value")
            .json("The value or null", json!({"type": ["string", "null"]})),
        KvSet => Spec::new("kv", "Write (or, empty or null, delete) a value")
            .ok(
                200,
                json_response("Done", json!({"type": "string", "enum": ["OK"]})),
            )
            .body(json!({}))
            .errors(&[]),
        KvDelete => Spec::new("kv", "Delete a value").json(
            "Done (also when absent)",
            json!({"type": "string", "enum": ["Key-value pair deleted successfully"]}),
        ),
        Subscribe => Spec::new(
            "pubsub",
            "Subscribe to a channel (durable with subscriber_id)",
        )
        .query([
            query(
                "promisc",
                json!({"type": "boolean"}),
                "Receive every owner's events",
            ),
            query(
                "subscriber_id",
                json!({"type": "string"}),
                "Durable subscriber name",
            ),
        ])
        .json("The subscription", reference("Subscription"))
        .errors(&[409, 429]),
        Unsubscribe => Spec::new("pubsub", "Drop a subscription")
            .path("id", json!({"type": "integer"}))
            .ok(200, null_response("Dropped"))
            .errors(&[403, 404]),
        Listen => Spec::new("pubsub", "Wait for the next message of a subscription")
            .path("id", json!({"type": "integer"}))
            .json(
                "A message (a keep-alive BEEP at the latest after the keep-alive period)",
                reference("ListenMessage"),
            )
            .errors(&[403, 404]),
        Publish => Spec::new("pubsub", "Publish a CloudEvent on a channel")
            .body(reference("Publish"))
            .ok(200, null_response("Published")),
        Push => Spec::new("pubsub", "Append a CloudEvent to a queue")
            .body(reference("Push"))
            .ok(200, null_response("Queued")),
        Pop => Spec::new(
            "pubsub",
            "Take the oldest CloudEvent of a queue (waits for one)",
        )
        .json("The event", reference("CloudEvent")),
        SubscriptionStats => Spec::new("pubsub", "Live subscriptions").json(
            "The subscriptions",
            json!({"type": "array", "items": reference("SubscriptionStats")}),
        ),
        Backup => Spec::new(
            "admin",
            "One page of the records of a section, for an online backup",
        )
        .path(
            "section",
            json!({"type": "string", "enum": Section::ALL.map(Section::name)}),
        )
        .query([
            query(
                "after",
                json!({"type": "string", "pattern": "^([0-9a-f]{2})*$"}),
                "The `next` of the previous page",
            ),
            query(
                "limit",
                json!({"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000}),
                "Records per page",
            ),
        ])
        .json(
            "Records in the section's order, and the cursor of the next page",
            json!({"type": "object", "properties": {
                "records": {"type": "array", "items": {"type": "object"}},
                "next": {"type": ["string", "null"]}},
                "required": ["records", "next"]}),
        )
        .errors(&[400, 404]),
    }
}

/// The body of KV writes: a JSON string, or any text with another content type.
fn kv_body() -> Value {
    json!({"required": false, "content": {
        "application/json": {"schema": {"type": ["string", "null"]}},
        "text/plain": {"schema": {"type": "string"}},
    }})
}

fn error_response(status: u16) -> Value {
    let name = match status {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        413 => "TooLarge",
        422 => "Unprocessable",
        429 => "TooMany",
        503 => "Unavailable",
        _ => "Timeout",
    };
    json!({ "$ref": format!("#/components/responses/{name}") })
}

fn error_responses() -> Map<String, Value> {
    let mut out = Map::new();
    for (name, description) in [
        ("BadRequest", "Refused: {\"detail\": \"...\"}"),
        (
            "Unauthorized",
            "No valid token, or not allowed to edit the node",
        ),
        (
            "Forbidden",
            "Not verified, not an administrator, or not the owner",
        ),
        ("NotFound", "Not found"),
        (
            "Conflict",
            "Conflict (in use, taken, or changed concurrently: retry)",
        ),
        ("TooLarge", "Body or node too large"),
        ("TooMany", "Too many subscriptions"),
        (
            "Unavailable",
            "Over a connection limit, or the store is unavailable: retry",
        ),
        ("Timeout", "The query took too long"),
    ] {
        out.insert(name.into(), json_response(description, reference("Error")));
    }
    out.insert(
        "Unprocessable".into(),
        json_response(
            "Validation errors, as pydantic lists them",
            reference("ValidationError"),
        ),
    );
    out
}

fn operation(method: &str, pattern: &str, ep: Endpoint) -> Value {
    let spec = describe(ep);
    let mut params: Vec<Value> = pattern
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let schema = spec
                .path_schemas
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(
                    || json!({"type": "string", "minLength": 1, "maxLength": MAX_PATH_PARAM_CHARS}),
                );
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    params.extend(spec.query.iter().cloned());
    let access = ep.access();
    let mut errors: Vec<u16> = spec.errors.to_vec();
    if access != Access::Public {
        errors.push(401);
    }
    if matches!(access, Access::Verified | Access::Admin) {
        errors.push(403);
    }
    let body = match ep {
        Endpoint::KvSet => Some(kv_body()),
        _ => spec.body.clone(),
    };
    if body.is_some() {
        errors.extend([413, 422]);
    }
    if !params.is_empty() && !errors.contains(&422) {
        errors.push(422);
    }
    errors.push(503);
    errors.sort_unstable();
    errors.dedup();
    let mut responses = Map::new();
    for (status, r) in &spec.ok {
        responses.insert(status.to_string(), r.clone());
    }
    for status in errors {
        responses.insert(status.to_string(), error_response(status));
    }
    let mut op = json!({
        "tags": [spec.tag],
        "summary": spec.summary,
        "operationId": format!("{ep:?}_{method}").to_lowercase(),
        "x-access": format!("{access:?}").to_lowercase(),
        "responses": responses,
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(b) = body {
        op["requestBody"] = b;
    }
    if access != Access::Public {
        op["security"] = json!([{"bearer": []}]);
    }
    op
}

/// The whole document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    // `/latest` (no slash) answers 307 to `/latest/`, as every path spelled with the
    // other trailing slash answers 307 to the one in this document.
    paths.insert(
        "/latest".into(),
        json!({"get": {"tags": ["meta"], "summary": "Redirect to /latest/",
            "operationId": "latest_redirect_get",
            "responses": {"307": {"description": "Redirect", "headers": {
                "location": {"schema": {"type": "string"}, "required": true}}}}}}),
    );
    for (method, pattern, ep) in ROUTES {
        let m = method.as_str().to_lowercase();
        let entry = paths.entry(path_of(pattern)).or_insert_with(|| json!({}));
        entry[m.as_str()] = operation(&m, pattern, *ep);
    }
    let mut schemas = Map::new();
    for (name, s) in kernelci_core::openapi::components() {
        schemas.insert(name, s);
    }
    for (name, s) in own_schemas() {
        schemas.insert(name.into(), s);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "KernelCI API (kernelci-rs)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every route is also served under /v0 and without a prefix. \
                A path spelled with the other trailing slash answers 307 to the one listed.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": schemas,
            "responses": error_responses(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let mut listed = 0;
        for (method, pattern, _) in ROUTES {
            let op = &doc["paths"][path_of(pattern)][method.as_str().to_lowercase()];
            assert!(op.is_object(), "{method} {pattern}");
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            listed += 1;
        }
        let ops: usize = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p != "/latest")
            .map(|(_, item)| item.as_object().unwrap().len())
            .sum();
        assert_eq!(ops, listed);
    }

    #[test]
    fn the_document_is_valid_openapi() {
        let doc = document();
        // utoipa writes "any value" as `{}` but cannot read it back: give such
        // schemas the `"type": null` it reads as any value.
        fn any_typed(s: &mut Value) {
            let Value::Object(m) = s else { return };
            if !["type", "$ref", "allOf", "anyOf", "oneOf"]
                .iter()
                .any(|k| m.contains_key(*k))
            {
                m.insert("type".into(), Value::Null);
            }
            for key in [
                "properties",
                "items",
                "additionalProperties",
                "allOf",
                "anyOf",
                "oneOf",
            ] {
                match m.get_mut(key) {
                    Some(Value::Object(o)) if key == "properties" => {
                        o.values_mut().for_each(any_typed)
                    }
                    Some(Value::Array(a)) => a.iter_mut().for_each(any_typed),
                    Some(v @ Value::Object(_)) => any_typed(v),
                    _ => {}
                }
            }
        }
        fn schemas_in(v: &mut Value) {
            let Value::Object(m) = v else {
                if let Value::Array(a) = v {
                    a.iter_mut().for_each(schemas_in);
                }
                return;
            };
            if let Some(s) = m.get_mut("schema") {
                any_typed(s);
            }
            m.values_mut().for_each(schemas_in);
        }
        let mut readable = doc.clone();
        schemas_in(&mut readable["paths"]);
        schemas_in(&mut readable["components"]["responses"]);
        if let Some(all) = readable["components"]["schemas"].as_object_mut() {
            all.values_mut().for_each(any_typed);
        }
        let parsed: utoipa::openapi::OpenApi = serde_json::from_value(readable).unwrap();
        assert_eq!(
            parsed.paths.paths.len(),
            doc["paths"].as_object().unwrap().len()
        );
        // Every reference resolves.
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        let target = r
                            .strip_prefix('#')
                            .and_then(|p| doc.pointer(p))
                            .filter(|t| !t.is_null());
                        assert!(target.is_some(), "{r}");
                    }
                    m.values().for_each(|v| walk(v, doc));
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
    }

    #[test]
    fn user_read_lists_the_public_user_keys() {
        use kernelci_core::auth::User;
        use kernelci_core::id::ObjectId;
        let user = User {
            id: ObjectId::new(),
            username: "u".into(),
            email: "u@example.org".into(),
            hashed_password: String::new(),
            is_active: true,
            is_superuser: false,
            is_verified: true,
            groups: Vec::new(),
        };
        let keys: Vec<String> = user
            .to_public_json()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let doc = document();
        let props: Vec<String> = doc["components"]["schemas"]["UserRead"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(props, keys);
    }
}
