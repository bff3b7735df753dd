//! The OpenAPI 3 document served at `/latest/openapi.json`, generated from the route
//! table so that it lists every endpoint the router serves (a test checks both
//! ways).

use serde_json::{json, Map, Value};

use kernelci_core::auth::Access;

use crate::routes::{Endpoint, ROUTES};

/// Who may call an endpoint (AUTH.md §9), from core's access classes.
fn access(ep: Endpoint) -> &'static str {
    match ep.access() {
        Access::Public => "public",
        Access::User => "user",
        Access::Verified => "verified",
        Access::Admin => "admin",
    }
}

/// Tag, summary and request body kind of each endpoint.
fn describe(ep: Endpoint) -> (&'static str, &'static str, Option<&'static str>) {
    use kernelci_core::auth::Operation::*;
    match ep {
        Root => (
            "meta",
            "Landing page (HTML) or {\"message\": \"KernelCI API\"} (JSON)",
            None,
        ),
        OpenApi => ("meta", "This document", None),
        Metrics => ("meta", "Counters in the Prometheus text format", None),
        HtmlPage => ("pages", "HTML page", None),
        Icon => ("pages", "Status icon (PNG)", None),
        StaticCss => ("pages", "Stylesheet", None),
        StaticJs => ("pages", "Script", None),
        Login => (
            "users",
            "Log in with a form (username, password); returns a bearer token",
            Some("form"),
        ),
        Logout => (
            "users",
            "Log out (tokens are stateless: nothing to do)",
            None,
        ),
        Register => ("users", "Disabled: use /user/invite", Some("json")),
        InvitePage => ("users", "HTML form to invite a user", None),
        Invite => (
            "users",
            "Invite a user (creates it unverified)",
            Some("json"),
        ),
        InviteUrl => ("users", "The public URLs used in invitations", None),
        AcceptInvitePage => ("users", "HTML form to accept an invitation", None),
        AcceptInvite => (
            "users",
            "Accept an invitation: set the password",
            Some("json"),
        ),
        ForgotPassword => ("users", "E-mail a password reset token", Some("json")),
        ResetPassword => ("users", "Reset a password with a reset token", Some("json")),
        UpdatePassword => (
            "users",
            "Change a password (form: username, password, new_password)",
            Some("form"),
        ),
        Whoami => ("users", "The caller", None),
        GetUser => ("users", "One user", None),
        DeleteUser => ("users", "Delete a user", None),
        PatchMe => ("users", "Update the caller's profile", Some("json")),
        PatchUser => ("users", "Update any user", Some("json")),
        ListUsers => ("users", "Users (paginated; exact-match filters)", None),
        ListGroups => ("user-groups", "User groups (paginated)", None),
        GetGroup => ("user-groups", "One user group", None),
        CreateGroup => ("user-groups", "Create a user group", Some("json")),
        DeleteGroup => (
            "user-groups",
            "Delete a user group (409 while in use)",
            None,
        ),
        GetNode => ("nodes", "One node, or null when it does not exist", None),
        ListNodes => (
            "nodes",
            "Nodes matching the query (paginated envelope)",
            None,
        ),
        ListNodesFast => ("nodes", "Nodes matching the query (plain array)", None),
        CountNodes => ("nodes", "Number of nodes matching the query", None),
        CreateNode => ("nodes", "Create a node", Some("json")),
        ReplaceNode => ("nodes", "Replace a node (full update)", Some("json")),
        PatchNode => ("nodes", "Update some fields of a node", Some("json")),
        BatchNodeset => (
            "nodes",
            "Set processed_by_kcidb_bridge on many nodes",
            Some("json"),
        ),
        SubmitHierarchy => (
            "nodes",
            "Submit a node hierarchy under a node",
            Some("json"),
        ),
        ListEvents => ("events", "Event history (plain array)", None),
        PostTelemetry => ("telemetry", "Store telemetry events", Some("json")),
        GetTelemetry => ("telemetry", "Telemetry events (paginated)", None),
        TelemetryStats => ("telemetry", "Grouped telemetry counts", None),
        TelemetryAnomalies => ("telemetry", "Telemetry anomaly report", None),
        KvGet => ("kv", "Read a value", None),
        KvSet => (
            "kv",
            "Write (or with an empty body delete) a value",
            Some("json"),
        ),
        KvDelete => ("kv", "Delete a value", None),
        Subscribe => (
            "pubsub",
            "Subscribe to a channel (durable with subscriber_id)",
            None,
        ),
        Unsubscribe => ("pubsub", "Drop a subscription", None),
        Listen => (
            "pubsub",
            "Long-poll the next message of a subscription",
            None,
        ),
        Publish => ("pubsub", "Publish a CloudEvent on a channel", Some("json")),
        Push => ("pubsub", "Append a CloudEvent to a queue", Some("json")),
        Pop => (
            "pubsub",
            "Take the oldest CloudEvent of a queue (waits)",
            None,
        ),
        SubscriptionStats => ("pubsub", "Live subscriptions", None),
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for (method, pattern, ep) in ROUTES {
        let path = if *pattern == "/" {
            "/latest/".to_owned()
        } else {
            format!("/latest{pattern}")
        };
        let (tag, summary, body) = describe(*ep);
        let params: Vec<Value> = pattern
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut op = json!({
            "tags": [tag],
            "summary": summary,
            "operationId": format!("{:?}", ep).to_lowercase() + "_" + &method.as_str().to_lowercase(),
            "parameters": params,
            "x-access": access(*ep),
            "responses": {
                "200": {"description": "Success"},
                "4XX": {"description": "Client error: {\"detail\": ...}",
                         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if access(*ep) != "public" {
            op["security"] = json!([{"bearer": []}]);
        }
        if let Some(kind) = body {
            let ctype = if kind == "form" {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            op["requestBody"] = json!({"content": {ctype: {"schema": {"type": "object"}}}});
        }
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        entry[method.as_str().to_lowercase()] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "KernelCI API (kernelci-rs)",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every route is also served under /v0 and without a prefix.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Error": {"type": "object", "properties": {"detail": {}}}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = document();
        for (method, pattern, _) in ROUTES {
            let path = if *pattern == "/" {
                "/latest/".to_owned()
            } else {
                format!("/latest{pattern}")
            };
            assert!(
                doc["paths"][&path][method.as_str().to_lowercase()].is_object(),
                "{method} {path}"
            );
        }
    }
}
