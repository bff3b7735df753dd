//! The client contract (CLIENT.md): what kernelci-core's Python client (`LatestAPI`,
//! `APIHelper`) and the kernelci-pipeline services send, replayed over real HTTP, and
//! the 18 points of CLIENT.md §7 ("must not break"), one test or labelled section per
//! point or group of points.
//!
//! The transport is mimicked precisely (see [`Api`]): URLs built like Python's
//! `urljoin(config.url, "latest/<path>")` (so `hello()` asks for `/latest/` and
//! `whoami()` for `/latest/whoami`), python-requests' headers (`Accept: */*`, and the
//! client's `Content-Type: application/json` on every request, GETs included), query
//! strings encoded as python-requests does (`True`/`False`, `None` left out,
//! datetimes as `str(dt)` with a space that becomes `+`, `:` as `%3A`, lists as
//! repeated keys), JSON bodies as `json.dumps` writes them (`null` for a POST without
//! data), forms for login and update-password. Every 4xx the client meets must be a
//! JSON object with `detail` (point 15): [`Api::send`] checks it on every answer.
//!
//! | CLIENT.md §7 point | test |
//! |---|---|
//! | 1 prefixes, `/latest/` root | [`p01_every_path_with_and_without_prefix`] |
//! | 2 `200 null` for a missing node | [`p02_missing_node_is_200_null`] |
//! | 3 pagination | [`p03_paginated_find_over_230_nodes`] |
//! | 4 bare array / integer, 16 batch `"True"` | [`p04_p16_kcidb_bridge_findfast_and_bulkset`] |
//! | 5 node JSON, 6 POST returns the node | [`p05_p06_create_job_node_and_versions`] |
//! | 7 PUT of the whole node | [`p07_tarball_puts_the_whole_node_back`] |
//! | 8 query strings | [`p08_query_strings_as_python_requests_encodes_them`] |
//! | 9, 10, 12 subscribe, listen, owner rule | [`p09_p10_p12_subscribe_listen_and_owner_rule`] |
//! | 11 node events, scheduler | [`p11_node_events_and_edge_triggered_scheduling`] |
//! | 13 pop | [`p13_push_and_pop_cloudevents`] |
//! | 14 login token, 17 whoami | [`p14_p17_login_token_and_whoami`] |
//! | 15 JSON error bodies | [`p15_every_client_error_is_json_with_detail`] (and every test) |
//! | 18 durable re-subscription | [`p18_durable_resubscription_replays_unacknowledged_events`] |
//!
//! Pipeline flows on top: the telemetry helper
//! ([`telemetry_batches_pages_and_stats`]), the timeout/holdoff/closing/trigger services
//! ([`pipeline_trigger_timeout_holdoff_and_closing_services`]), `submit_results`
//! ([`lava_callback_submit_results_hierarchy`]) and the LAVA callback's retry event
//! ([`lava_callback_retry_event_is_relayed_as_is`]).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration as ChronoDuration, NaiveDateTime, TimeZone, Utc};
use common::{every_backend, TestServer};
use hyper::Method;
use serde_json::{json, Map, Value};

use kernelci_core::id::ObjectId;
use kernelci_core::node::{Node, NodeResult, State};
use kernelci_core::time::Timestamp;

/// How many keep-alives a blocking receive goes through before the test gives up
/// (the test servers send one per second of silence).
const MAX_BEEPS: usize = 30;

// =====================================================================================
// Python-side encodings
// =====================================================================================

/// A Python `datetime` (UTC), naive or aware.
#[derive(Debug, Clone, Copy)]
struct PyDateTime {
    t: DateTime<Utc>,
    aware: bool,
}

impl PyDateTime {
    fn naive(t: DateTime<Utc>) -> Self {
        PyDateTime { t, aware: false }
    }

    fn aware(t: DateTime<Utc>) -> Self {
        PyDateTime { t, aware: true }
    }

    fn render(&self, sep: char) -> String {
        let mut s = self.t.format(&format!("%Y-%m-%d{sep}%H:%M:%S")).to_string();
        let us = self.t.timestamp_subsec_micros();
        if us != 0 {
            s.push_str(&format!(".{us:06}"));
        }
        if self.aware {
            s.push_str("+00:00");
        }
        s
    }

    /// `str(dt)`: `2024-01-02 03:04:05.678901[+00:00]`.
    fn str(&self) -> String {
        self.render(' ')
    }

    /// `dt.isoformat()`: `2024-01-02T03:04:05.678901[+00:00]`.
    fn isoformat(&self) -> String {
        self.render('T')
    }
}

/// A Python value in a `params` dict.
#[derive(Debug, Clone)]
enum Py {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    DateTime(PyDateTime),
    List(Vec<Py>),
}

impl From<&str> for Py {
    fn from(s: &str) -> Self {
        Py::Str(s.to_owned())
    }
}

impl From<String> for Py {
    fn from(s: String) -> Self {
        Py::Str(s)
    }
}

impl From<&String> for Py {
    fn from(s: &String) -> Self {
        Py::Str(s.clone())
    }
}

impl From<bool> for Py {
    fn from(b: bool) -> Self {
        Py::Bool(b)
    }
}

impl From<i64> for Py {
    fn from(i: i64) -> Self {
        Py::Int(i)
    }
}

impl From<PyDateTime> for Py {
    fn from(d: PyDateTime) -> Self {
        Py::DateTime(d)
    }
}

/// `str(value)` as python-requests applies it to a parameter value.
fn py_str(v: &Py) -> String {
    match v {
        Py::Str(s) => s.clone(),
        Py::Int(i) => i.to_string(),
        Py::Bool(true) => "True".into(),
        Py::Bool(false) => "False".into(),
        Py::DateTime(d) => d.str(),
        Py::None | Py::List(_) => unreachable!("handled by the caller"),
    }
}

/// `urllib.parse.quote_plus` (always-safe characters: letters, digits, `_.-~`).
fn quote_plus(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// python-requests' `_encode_params`: `None` values left out, lists as repeated
/// keys, everything else `str()`-ed, then `urlencode`.
fn encode_params(params: &[(String, Py)]) -> String {
    let mut pairs = Vec::new();
    for (k, v) in params {
        let values: Vec<&Py> = match v {
            Py::List(items) => items.iter().collect(),
            other => vec![other],
        };
        for v in values {
            if !matches!(v, Py::None) {
                pairs.push(format!("{}={}", quote_plus(k), quote_plus(&py_str(v))));
            }
        }
    }
    pairs.join("&")
}

/// A Python `dict` of parameters, in insertion order.
type Params = Vec<(String, Py)>;

/// One error case: client, method, path, parameters, body, status, `detail` (empty:
/// not compared).
type ErrorCase<'a> = (&'a Api<'a>, Method, String, Params, Body, u16, &'static str);

/// A `Params` from pairs.
fn params<const N: usize>(items: [(&str, Py); N]) -> Vec<(String, Py)> {
    items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// `json.dumps(value)`: `", "` and `": "` separators, non-ASCII escaped.
fn py_dumps(v: &Value) -> String {
    fn string(out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    fn value(out: &mut String, v: &Value) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => string(out, s),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    value(out, x);
                }
                out.push(']');
            }
            Value::Object(m) => {
                out.push('{');
                for (i, (k, x)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    string(out, k);
                    out.push_str(": ");
                    value(out, x);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    value(&mut out, v);
    out
}

/// Python's `urllib.parse.urljoin(base, rel)` for a relative path without scheme,
/// host or query (what `make_url` passes): the last segment of the base path is
/// dropped unless the base ends with `/`, empty segments in the middle are dropped,
/// `.` and `..` resolved; a `rel` starting with `/` replaces the base path.
fn urljoin(base: &str, rel: &str) -> String {
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_at = base[after_scheme..]
        .find('/')
        .map(|i| i + after_scheme)
        .unwrap_or(base.len());
    let (origin, bpath) = base.split_at(path_at);
    let segments: Vec<&str> = if rel.starts_with('/') {
        rel.split('/').collect()
    } else {
        let mut base_parts: Vec<&str> = bpath.split('/').collect();
        if base_parts.last() != Some(&"") {
            base_parts.pop();
        }
        let mut segs: Vec<&str> = base_parts;
        segs.extend(rel.split('/'));
        if segs.len() > 2 {
            let last = segs[segs.len() - 1];
            let middle: Vec<&str> = segs[1..segs.len() - 1]
                .iter()
                .copied()
                .filter(|s| !s.is_empty())
                .collect();
            let mut v = vec![segs[0]];
            v.extend(middle);
            v.push(last);
            segs = v;
        }
        segs
    };
    let mut resolved: Vec<&str> = Vec::new();
    for seg in &segments {
        match *seg {
            ".." => {
                resolved.pop();
            }
            "." => {}
            s => resolved.push(s),
        }
    }
    if matches!(segments.last(), Some(&".") | Some(&"..")) {
        resolved.push("");
    }
    let path = resolved.join("/");
    format!("{origin}{}", if path.is_empty() { "/" } else { &path })
}

/// Base64url without padding (what `kci user token-info` decodes).
fn b64url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => continue,
            _ => panic!("not base64url: {s}"),
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// The header and payload of a JWT, decoded as `kci user token-info` does.
fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    (
        serde_json::from_slice(&b64url_decode(parts[0])).unwrap(),
        serde_json::from_slice(&b64url_decode(parts[1])).unwrap(),
    )
}

/// A naive ISO datetime as the API writes them (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, no
/// zone), which Python's `datetime.fromisoformat` reads; the value.
fn naive_iso(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    assert!(s.len() == 19 || s.len() == 26, "{s}");
    assert_eq!(s.as_bytes()[10], b'T', "{s}");
    assert!(!s.contains('Z') && !s.contains('+'), "{s}");
    let fmt = if s.len() == 19 {
        "%Y-%m-%dT%H:%M:%S"
    } else {
        "%Y-%m-%dT%H:%M:%S%.6f"
    };
    NaiveDateTime::parse_from_str(s, fmt)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .and_utc()
}

/// The 23 keys of node JSON (API.md §6).
const NODE_KEYS: [&str; 23] = [
    "id",
    "kind",
    "name",
    "path",
    "group",
    "parent",
    "state",
    "result",
    "artifacts",
    "data",
    "debug",
    "jobfilter",
    "platform_filter",
    "created",
    "updated",
    "timeout",
    "holdoff",
    "owner",
    "submitter",
    "treeid",
    "user_groups",
    "processed_by_kcidb_bridge",
    "retry_counter",
];

/// Point 5: all 23 keys, `id` as lowercase hex, naive ISO datetimes.
fn assert_node_json(n: &Value) {
    let m = n.as_object().unwrap_or_else(|| panic!("not a node: {n}"));
    let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = NODE_KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "{n}");
    let id = n["id"].as_str().unwrap();
    assert!(
        id.len() == 24
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{id}"
    );
    for k in ["created", "updated", "timeout"] {
        naive_iso(&n[k]);
    }
    if !n["holdoff"].is_null() {
        naive_iso(&n["holdoff"]);
    }
}

// =====================================================================================
// The client (kernelci-core `kernelci/api/__init__.py` + `latest.py`)
// =====================================================================================

/// A request body as the client sends it.
enum Body {
    /// No body (GET, DELETE).
    None,
    /// `json.dumps(data)` with the client's `Content-Type: application/json`.
    Json(Value),
    /// A form (`json_data=False`).
    Form(Vec<(String, String)>),
}

/// An HTTP error as `raise_for_status` raises it.
#[derive(Debug)]
struct HttpError {
    status: u16,
    body: Value,
}

impl HttpError {
    /// The text kernelci-core shows: `detail`, else `error`, else `message`.
    fn shown(&self) -> String {
        for k in ["detail", "error", "message"] {
            if let Some(v) = self.body.get(k) {
                return v
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string());
            }
        }
        self.body.to_string()
    }
}

/// `LatestAPI` over one test server: `config.url`, version `latest`, an optional
/// token; records every request line it sends.
struct Api<'a> {
    s: &'a TestServer,
    url: String,
    token: Option<String>,
    log: Mutex<Vec<String>>,
}

impl<'a> Api<'a> {
    /// A client with `config.url = http://<addr>` (as `http://172.17.0.1:8001`).
    fn new(s: &'a TestServer, token: Option<&str>) -> Self {
        Self::with_url(s, &format!("http://{}", s.addr), token)
    }

    fn with_url(s: &'a TestServer, url: &str, token: Option<&str>) -> Self {
        Api {
            s,
            url: url.to_owned(),
            token: token.map(str::to_owned),
            log: Mutex::new(Vec::new()),
        }
    }

    /// `make_url`: `urljoin(config.url, "/".join((version, path)))`.
    fn make_url(&self, path: &str) -> String {
        urljoin(&self.url, &format!("latest/{path}"))
    }

    /// The request lines sent since the last call.
    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// One request with the client's headers; `raise_for_status` as an `Err`. Every
    /// 4xx answer must be a JSON object with `detail` (point 15).
    async fn send(
        &self,
        method: Method,
        path: &str,
        params: &[(String, Py)],
        body: Body,
    ) -> Result<common::TestResponse, HttpError> {
        let mut url = self.make_url(path);
        let qs = encode_params(params);
        if !qs.is_empty() {
            url.push('?');
            url.push_str(&qs);
        }
        let origin = format!("http://{}", self.s.addr);
        let target = url
            .strip_prefix(&origin)
            .unwrap_or_else(|| panic!("{url} is not on the test server"))
            .to_owned();
        self.log.lock().unwrap().push(format!("{method} {target}"));
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        // python-requests' session headers, then the client's own.
        let mut headers: Vec<(&str, &str)> = vec![
            ("user-agent", "python-requests/2.31.0"),
            ("accept-encoding", "gzip, deflate"),
            ("accept", "*/*"),
            ("connection", "keep-alive"),
        ];
        let (content_type, bytes) = match body {
            Body::None => ("application/json", Vec::new()),
            Body::Json(v) => ("application/json", py_dumps(&v).into_bytes()),
            Body::Form(fields) => {
                let text = fields
                    .iter()
                    .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                ("application/x-www-form-urlencoded", text.into_bytes())
            }
        };
        headers.push(("content-type", content_type));
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        // urllib3 decodes the body it asked to be compressed.
        let r = self
            .s
            .request(method, &target, &headers, bytes)
            .await
            .decoded();
        let status = r.code();
        if status < 400 {
            return Ok(r);
        }
        let body: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{target}: {status} body is not JSON ({e}): {}", r.text()));
        if status < 500 {
            let detail = body.get("detail");
            assert!(
                body.is_object() && detail.is_some_and(|d| d.is_string() || d.is_array()),
                "{target}: {status} without a JSON detail: {body}"
            );
        }
        Err(HttpError { status, body })
    }

    async fn ok(&self, method: Method, path: &str, params: &[(String, Py)], body: Body) -> Value {
        match self.send(method, path, params, body).await {
            Ok(r) => r.json(),
            Err(e) => panic!("{path}: HTTP {} {}", e.status, e.shown()),
        }
    }

    async fn get(&self, path: &str, params: &[(String, Py)]) -> Value {
        self.ok(Method::GET, path, params, Body::None).await
    }

    async fn post(&self, path: &str, data: Value) -> Value {
        self.ok(Method::POST, path, &[], Body::Json(data)).await
    }

    // ---- LatestAPI ------------------------------------------------------------------

    /// `hello()`: `_get('/')`.
    async fn hello(&self) -> Value {
        self.get("/", &[]).await
    }

    /// `user.whoami()`: `_get('/whoami')`.
    async fn whoami(&self) -> Value {
        self.get("/whoami", &[]).await
    }

    /// `user.create_token(username, password)`: a form to `/user/login`.
    async fn create_token(&self, username: &str, password: &str) -> Result<Value, HttpError> {
        let form = vec![
            ("username".to_owned(), username.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ];
        self.send(Method::POST, "/user/login", &[], Body::Form(form))
            .await
            .map(|r| r.json())
    }

    /// `user.update_password(username, current, new)`.
    async fn update_password(&self, username: &str, current: &str, new: &str) {
        let form = vec![
            ("username".to_owned(), username.to_owned()),
            ("password".to_owned(), current.to_owned()),
            ("new_password".to_owned(), new.to_owned()),
        ];
        self.send(Method::POST, "user/update-password", &[], Body::Form(form))
            .await
            .unwrap();
    }

    /// `user.get(user_id)`.
    async fn user_get(&self, id: &str) -> Value {
        self.get(&format!("user/{id}"), &[]).await
    }

    /// `user.find(attributes, offset, limit)`.
    async fn user_find(&self, attrs: Params) -> Vec<Value> {
        self.get_paginated("users", attrs, None, None).await
    }

    /// `user.update(fields, user_id)`: PATCH `user/<id or "me">`.
    async fn user_update(&self, fields: Value, user_id: Option<&str>) -> Value {
        let path = format!("user/{}", user_id.unwrap_or("me"));
        self.ok(Method::PATCH, &path, &[], Body::Json(fields)).await
    }

    /// `telemetry.add(events)`.
    async fn telemetry_add(&self, events: Value) -> Value {
        self.post("telemetry", events).await
    }

    /// `telemetry.find(attributes, offset, limit)`.
    async fn telemetry_find(&self, attrs: Params) -> Vec<Value> {
        self.get_paginated("telemetry", attrs, None, None).await
    }

    /// `telemetry.stats(attributes)`.
    async fn telemetry_stats(&self, attrs: Params) -> Value {
        self.get("telemetry/stats", &attrs).await
    }

    /// `_get_paginated(params, path, offset, limit)`.
    async fn get_paginated(
        &self,
        path: &str,
        attrs: Vec<(String, Py)>,
        offset: Option<i64>,
        limit: Option<i64>,
    ) -> Vec<Value> {
        let mut params = attrs;
        let truthy = |v: Option<i64>| v.filter(|x| *x != 0);
        if truthy(offset).is_some() || truthy(limit).is_some() {
            let or_none = |v: Option<i64>| truthy(v).map(Py::Int).unwrap_or(Py::None);
            params.push(("offset".into(), or_none(offset)));
            params.push(("limit".into(), or_none(limit)));
            let page = self.get(path, &params).await;
            return page["items"].as_array().unwrap().clone();
        }
        let mut objs = Vec::new();
        let (mut offset, limit) = (0i64, 100i64);
        params.push(("limit".into(), Py::Int(limit)));
        params.push(("offset".into(), Py::Int(offset)));
        loop {
            params.last_mut().unwrap().1 = Py::Int(offset);
            let page = self.get(path, &params).await;
            // Point 3: the envelope.
            let mut keys: Vec<&String> = page.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(keys, ["items", "limit", "offset", "total"], "{page}");
            assert_eq!(
                (page["limit"].as_i64(), page["offset"].as_i64()),
                (Some(limit), Some(offset))
            );
            let items = page["items"].as_array().unwrap().clone();
            let n = items.len() as i64;
            objs.extend(items);
            if n < limit {
                break;
            }
            offset += limit;
        }
        objs
    }

    /// `node.get(id)`: a dict or `None`.
    async fn node_get(&self, id: &str) -> Value {
        self.get(&format!("node/{id}"), &[]).await
    }

    /// `node.find(attributes, offset, limit)`.
    async fn node_find(
        &self,
        attrs: Vec<(String, Py)>,
        offset: Option<i64>,
        limit: Option<i64>,
    ) -> Vec<Value> {
        self.get_paginated("nodes", attrs, offset, limit).await
    }

    /// `node.findfast(attributes)`: the JSON array.
    async fn node_findfast(&self, attrs: Vec<(String, Py)>) -> Vec<Value> {
        let v = self.get("nodes/fast", &attrs).await;
        v.as_array()
            .unwrap_or_else(|| panic!("/nodes/fast must answer a bare array: {v}"))
            .clone()
    }

    /// `node.count(attributes)`: a JSON integer.
    async fn node_count(&self, attrs: Vec<(String, Py)>) -> u64 {
        let v = self.get("count", &attrs).await;
        v.as_u64()
            .unwrap_or_else(|| panic!("/count must answer a bare integer: {v}"))
    }

    /// `node.add(node)`.
    async fn node_add(&self, node: &Value) -> Value {
        self.post("node", node.clone()).await
    }

    /// `node.update(node, noevent)`: the whole dict to `PUT node/<id>`, after the
    /// client-side clean-up of a stale `node_timeout` error.
    async fn node_update(&self, mut node: Value, noevent: bool) -> Value {
        let result = node["result"].clone(); // KeyError in Python if missing
        if result != json!("incomplete")
            && node["data"].get("error_code") == Some(&json!("node_timeout"))
        {
            node["data"]["error_code"] = Value::Null;
            node["data"]["error_msg"] = Value::Null;
        }
        let id = node["id"].as_str().unwrap().to_owned();
        let params = if noevent {
            params([("noevent", "true".into())])
        } else {
            Vec::new()
        };
        self.ok(
            Method::PUT,
            &format!("node/{id}"),
            &params,
            Body::Json(node),
        )
        .await
    }

    /// `node.bulkset(ids, field, value)`.
    async fn node_bulkset(&self, ids: &[String], field: &str, value: &str) -> Value {
        let body = json!({"nodes": ids, "field": field, "value": value});
        self.ok(Method::PUT, "batch/nodeset", &[], Body::Json(body))
            .await
    }

    /// `subscribe(channel, promisc, subscriber_id)`: POST without data (so
    /// `json.dumps(None)`), `promisc` only when truthy.
    async fn subscribe(
        &self,
        channel: &str,
        promisc: Option<bool>,
        subscriber_id: Option<&str>,
    ) -> Result<u64, HttpError> {
        let mut p = Vec::new();
        if promisc == Some(true) {
            p.push(("promisc".to_owned(), Py::Bool(true)));
        }
        if let Some(sid) = subscriber_id {
            p.push(("subscriber_id".to_owned(), sid.into()));
        }
        let r = self
            .send(
                Method::POST,
                &format!("subscribe/{channel}"),
                &p,
                Body::Json(Value::Null),
            )
            .await?;
        let v = r.json();
        assert_eq!(v["channel"], channel, "{v}");
        Ok(v["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("subscription id must be an integer: {v}")))
    }

    /// `unsubscribe(sub_id)`.
    async fn unsubscribe(&self, sub_id: u64) {
        self.ok(
            Method::POST,
            &format!("unsubscribe/{sub_id}"),
            &[],
            Body::Json(Value::Null),
        )
        .await;
    }

    /// `send_event(channel, data)`.
    async fn send_event(&self, channel: &str, data: Value) {
        self.post(&format!("publish/{channel}"), data).await;
    }

    /// `receive_event(sub_id, block)`: the CloudEvent envelope, or `None` on a
    /// keep-alive when not blocking (point 10).
    async fn receive_event(&self, sub_id: u64, block: bool) -> Option<Value> {
        for _ in 0..MAX_BEEPS {
            let body = self.get(&format!("listen/{sub_id}"), &[]).await;
            // `resp.json().get('data')`: the body must be an object, never null.
            let body = body
                .as_object()
                .unwrap_or_else(|| panic!("listen must answer an object: {body}"))
                .clone();
            let data = body.get("data").cloned().unwrap_or(Value::Null);
            if data.is_null() || data == json!("") {
                continue;
            }
            // `json.loads(data)`: a string holding the CloudEvent JSON.
            let text = data
                .as_str()
                .unwrap_or_else(|| panic!("listen data must be a string: {data}"));
            let event: Value = serde_json::from_str(text).unwrap();
            assert_cloudevent(&event);
            if event["data"] == "BEEP" {
                if block {
                    continue;
                }
                return None;
            }
            return Some(event);
        }
        panic!("nothing but keep-alives on subscription {sub_id}");
    }

    /// `push_event(list, data)`.
    async fn push_event(&self, list: &str, data: Value) {
        self.post(&format!("push/{list}"), data).await;
    }

    /// `pop_event(list)`: `from_json(json.dumps(resp.json()))`.
    async fn pop_event(&self, list: &str) -> Value {
        let v = self.get(&format!("pop/{list}"), &[]).await;
        assert_cloudevent(&v);
        v
    }
}

/// A CloudEvent as the `cloudevents` package reads it: the required attributes, and
/// `time` as pipeline `monitor` parses it (`fromisoformat`, `+00:00`).
fn assert_cloudevent(e: &Value) {
    assert_eq!(e["specversion"], "1.0", "{e}");
    assert!(e["id"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    assert!(e["source"].is_string() && e["type"].is_string(), "{e}");
    let time = e["time"].as_str().unwrap_or_else(|| panic!("no time: {e}"));
    let naive = time
        .strip_suffix("+00:00")
        .unwrap_or_else(|| panic!("{time}"));
    assert_eq!(naive.len(), 26, "{time}");
    NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.6f").unwrap();
}

// =====================================================================================
// APIHelper (kernelci-core `kernelci/api/helper.py`)
// =====================================================================================

/// `APIHelper`: subscriptions with client-side filters.
struct Helper<'a> {
    api: &'a Api<'a>,
    filters: Mutex<HashMap<u64, Value>>,
}

/// `pubsub_event_filter`: every filter key present in `obj` must match; an array is
/// a Python tuple (any of); an object filters the sub-keys.
fn event_filter(filters: &Value, obj: &Value) -> bool {
    let Some(filters) = filters.as_object() else {
        return true;
    };
    for (key, value) in filters {
        let Some(have) = obj.get(key) else { continue };
        match value {
            Value::Object(sub) => {
                for (sk, sv) in sub {
                    let Some(h) = have.get(sk) else { continue };
                    let ok = match sv {
                        Value::Array(any) => any.contains(h),
                        v => v == h,
                    };
                    if !ok {
                        return false;
                    }
                }
            }
            Value::Array(any) => {
                if !any.contains(have) {
                    return false;
                }
            }
            v => {
                if v != have {
                    return false;
                }
            }
        }
    }
    true
}

impl<'a> Helper<'a> {
    fn new(api: &'a Api<'a>) -> Self {
        Helper {
            api,
            filters: Mutex::new(HashMap::new()),
        }
    }

    /// `subscribe_filters(filters, channel, promiscuous, subscriber_id)`.
    async fn subscribe_filters(
        &self,
        filters: Value,
        channel: &str,
        promiscuous: bool,
        subscriber_id: Option<&str>,
    ) -> u64 {
        let id = self
            .api
            .subscribe(channel, Some(promiscuous), subscriber_id)
            .await
            .unwrap();
        self.filters.lock().unwrap().insert(id, filters);
        id
    }

    /// `receive_event_data(sub_id, block)`.
    async fn receive_event_data(&self, sub_id: u64, block: bool) -> Option<Value> {
        self.api
            .receive_event(sub_id, block)
            .await
            .map(|e| e["data"].clone())
    }

    /// `receive_event_node(sub_id)`: the node named by the next matching event and
    /// the event's `is_hierarchy`.
    async fn receive_event_node(&self, sub_id: u64) -> (Value, Value) {
        let filters = self
            .filters
            .lock()
            .unwrap()
            .get(&sub_id)
            .cloned()
            .unwrap_or(Value::Null);
        for _ in 0..MAX_BEEPS {
            let payload = self.receive_event_data(sub_id, true).await.unwrap();
            let Some(id) = payload.get("id").and_then(Value::as_str) else {
                continue;
            };
            let node = self.api.node_get(id).await;
            if node.is_null() {
                continue;
            }
            if event_filter(&filters, &node) && event_filter(&filters, &payload) {
                return (
                    node,
                    payload.get("is_hierarchy").cloned().unwrap_or(Value::Null),
                );
            }
        }
        panic!("no matching node event on subscription {sub_id}");
    }

    /// `create_job_node` (CLIENT.md §6): POST `node` with the job's shape.
    async fn create_job_node(
        &self,
        kind: &str,
        name: &str,
        parent: &Value,
        platform: &str,
        runtime: &str,
        jobfilter: Option<Value>,
    ) -> Value {
        let mut data = json!({
            "kernel_revision": parent["data"]["kernel_revision"],
            "runtime": runtime,
            "platform": platform,
        });
        if kind == "kbuild" {
            for (k, v) in [
                ("kernel_type", "bzimage"),
                ("arch", "x86_64"),
                ("defconfig", "x86_64_defconfig"),
                ("config_full", "x86_64_defconfig"),
                ("compiler", "gcc-12"),
            ] {
                data[k] = json!(v);
            }
        }
        let path = [
            parent["path"].as_array().unwrap().clone(),
            vec![json!(name)],
        ]
        .concat();
        let mut node = json!({
            "kind": kind,
            "parent": parent["id"],
            "name": name,
            "path": path,
            "group": name,
            "artifacts": {},
            "treeid": parent["treeid"],
            "submitter": parent["submitter"],
            "data": data,
            "retry_counter": 0,
            "platform_filter": [platform],
        });
        if let Some(f) = jobfilter {
            node["jobfilter"] = f;
        }
        self.api.node_add(&node).await
    }

    /// `submit_results(results, root)` (CLIENT.md §5): PUT `nodes/<root id>`.
    async fn submit_results(&self, results: &Value, root: &Value) -> Result<Value, HttpError> {
        let root_id = root["id"].as_str().unwrap().to_owned();
        let mut root_node = self.api.node_get(&root_id).await;
        let parent = self.api.node_get(root["parent"].as_str().unwrap()).await;
        assert!(!parent.is_null());
        let rn = &results["node"];
        root_node["result"] = rn["result"].clone();
        root_node["state"] = rn.get("state").cloned().unwrap_or(json!("done"));
        if let Some(Value::Object(a)) = rn.get("artifacts") {
            for (k, v) in a {
                root_node["artifacts"][k] = v.clone();
            }
        }
        if let Some(Value::Object(d)) = rn.get("data") {
            for (k, v) in d {
                root_node["data"][k] = v.clone();
            }
        }
        root_node["processed_by_kcidb_bridge"] = json!(false);
        let inherited: Map<String, Value> = [
            "kernel_revision",
            "arch",
            "defconfig",
            "config_full",
            "compiler",
            "platform",
            "runtime",
            "kernel_type",
        ]
        .iter()
        .filter_map(|k| {
            root_node["data"]
                .get(*k)
                .map(|v| ((*k).to_owned(), v.clone()))
        })
        .collect();
        fn prepare(
            node: &Value,
            parent: &Value,
            group: &Value,
            inherited: &Map<String, Value>,
        ) -> Value {
            let mut n = node["node"].clone();
            let name = n["name"].clone();
            let path = [parent["path"].as_array().unwrap().clone(), vec![name]].concat();
            n["path"] = json!(path);
            if n.get("kind").is_none() {
                n["kind"] = parent["kind"].clone();
            }
            n["group"] = group.clone();
            if n.get("state").is_none() {
                n["state"] = json!("done");
            }
            let mut data = inherited.clone();
            if let Some(Value::Object(d)) = n.get("data") {
                data.extend(d.clone());
            }
            n["data"] = Value::Object(data);
            let children: Vec<Value> = node["child_nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| prepare(c, &n, group, inherited))
                .collect();
            json!({"node": n, "child_nodes": children})
        }
        let children: Vec<Value> = results["child_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| prepare(c, &root_node, &root_node["name"], &inherited))
            .collect();
        let body = json!({"node": root_node, "child_nodes": children});
        self.api
            .send(
                Method::PUT,
                &format!("nodes/{root_id}"),
                &[],
                Body::Json(body),
            )
            .await
            .map(|r| r.json())
    }
}

// =====================================================================================
// Fixtures
// =====================================================================================

fn revision(commit: &str) -> Value {
    json!({
        "tree": "mainline",
        "url": "https://git.kernel.org/pub/scm/linux/kernel/git/torvalds/linux.git",
        "branch": "master",
        "commit": commit,
        "describe": "v6.7-rc3-12-g0123456789ab",
        // As the published examples show them: strings (the server makes integers).
        "version": {"version": "6", "patchlevel": "7", "sublevel": null,
                    "extra": "-rc3-12-g0123456789ab", "name": null},
    })
}

/// The checkout the trigger service POSTs.
fn checkout(commit: &str) -> Value {
    json!({
        "kind": "checkout",
        "name": "checkout",
        "path": ["checkout"],
        "group": null,
        "data": {"kernel_revision": revision(commit)},
        "treeid": "a3f5c0ffee",
        "submitter": "service:pipeline",
    })
}

/// A node inserted directly in the store (bulk loads), stored form.
fn stored_node(kind: &str, name: &str, parent: &Value, owner: Option<&str>) -> Node {
    let mut n = Node::new(kind, name, Timestamp::now());
    n.parent = Some(ObjectId::parse(parent["id"].as_str().unwrap()).unwrap());
    n.path = vec!["checkout".into(), name.into()];
    n.owner = owner.map(str::to_owned);
    n.truncate_times();
    n
}

fn ids(nodes: &[Value]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect()
}

fn names(nodes: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = nodes
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_chrono(t).truncate_to_millis()
}

// =====================================================================================
// The emulation itself
// =====================================================================================

#[test]
fn the_emulated_transport_matches_python() {
    // urljoin as in CLIENT.md §1.
    for (base, rel, want) in [
        (
            "http://172.17.0.1:8001",
            "latest//",
            "http://172.17.0.1:8001/latest/",
        ),
        (
            "http://172.17.0.1:8001",
            "latest//whoami",
            "http://172.17.0.1:8001/latest/whoami",
        ),
        (
            "https://api.kernelci.org/",
            "latest/nodes",
            "https://api.kernelci.org/latest/nodes",
        ),
        (
            "https://staging.kernelci.org:9000",
            "latest/node/x",
            "https://staging.kernelci.org:9000/latest/node/x",
        ),
        (
            "https://host/api",
            "latest/count",
            "https://host/latest/count",
        ),
        (
            "https://host/api/",
            "latest/count",
            "https://host/api/latest/count",
        ),
        ("http://h", "latest/../x", "http://h/x"),
    ] {
        assert_eq!(urljoin(base, rel), want, "{base} + {rel}");
    }
    // requests' parameter encoding.
    let t =
        Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap() + ChronoDuration::microseconds(678_901);
    let p = params([
        ("state", "done".into()),
        ("processed_by_kcidb_bridge", false.into()),
        ("created__gt", PyDateTime::naive(t).into()),
        ("updated__lt", PyDateTime::aware(t).into()),
        ("result", Py::None),
        ("kind", Py::List(vec!["a b".into(), "c/d".into()])),
        ("limit", 5i64.into()),
    ]);
    assert_eq!(
        encode_params(&p),
        "state=done&processed_by_kcidb_bridge=False\
         &created__gt=2024-01-02+03%3A04%3A05.678901\
         &updated__lt=2024-01-02+03%3A04%3A05.678901%2B00%3A00\
         &kind=a+b&kind=c%2Fd&limit=5"
    );
    let whole = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    assert_eq!(PyDateTime::naive(whole).isoformat(), "2026-01-01T12:00:00");
    assert_eq!(
        py_dumps(&json!({"a": [1, null, true], "b": "é"})),
        r#"{"a": [1, null, true], "b": "\u00e9"}"#
    );
    // JWT pieces.
    assert_eq!(b64url_decode("eyJhIjoxfQ"), br#"{"a":1}"#);
    // The scheduler's edge trigger.
    let pattern = json!({"channel": "node", "kind": "checkout", "state": "available"});
    let p = |state: &str, prev: Option<&str>| {
        let mut v = json!({"op": if prev.is_some() {"updated"} else {"created"},
                           "kind": "checkout", "state": state, "result": null});
        if let Some(prev) = prev {
            v["previous_state"] = json!(prev);
            v["previous_result"] = Value::Null;
        }
        v
    };
    assert!(scheduler_matches(
        &pattern,
        &p("available", Some("running"))
    ));
    assert!(!scheduler_matches(
        &pattern,
        &p("available", Some("available"))
    ));
    assert!(!scheduler_matches(&pattern, &p("running", None)));
}

/// kernelci-core `scheduler.py`: a subset match of the configured event (but
/// `channel`), skipped for `updated` payloads whose previous state/result already
/// matched (edge triggering).
fn scheduler_matches(pattern: &Value, payload: &Value) -> bool {
    let subset = |p: &Value| {
        pattern
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() != "channel")
            .all(|(k, v)| p.get(k) == Some(v))
    };
    if !subset(payload) {
        return false;
    }
    if payload["op"] == "updated" && payload.get("previous_state").is_some() {
        let mut before = payload.clone();
        before["state"] = payload["previous_state"].clone();
        before["result"] = payload
            .get("previous_result")
            .cloned()
            .unwrap_or(Value::Null);
        if subset(&before) {
            return false;
        }
    }
    true
}

// =====================================================================================
// CLIENT.md §7
// =====================================================================================

every_backend!(p01_every_path_with_and_without_prefix);
/// Point 1: every path under `/latest/` and without prefix; `hello()` on `/latest/`
/// (trailing slash) with `Accept: */*` gets JSON.
async fn p01_every_path_with_and_without_prefix() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let addr = s.addr;
    for url in [
        format!("http://{addr}"),
        format!("http://{addr}/"),
        format!("http://{addr}/api"),
    ] {
        let api = Api::with_url(&s, &url, Some(&bob));
        assert_eq!(api.make_url("/"), format!("http://{addr}/latest/"));
        assert_eq!(api.hello().await, json!({"message": "KernelCI API"}));
        assert_eq!(api.take_log(), ["GET /latest/"]);
        assert_eq!(api.whoami().await["username"], "bob");
        assert_eq!(api.take_log(), ["GET /latest/whoami"]);
    }
    let api = Api::new(&s, Some(&bob));
    let node = api.node_add(&checkout("c0ffee")).await;
    let id = node["id"].as_str().unwrap();
    // The same reads answer the same with and without the prefix (python headers).
    let py = [("accept", "*/*"), ("content-type", "application/json")];
    for path in [
        format!("/node/{id}"),
        "/nodes?kind=checkout&limit=100&offset=0".to_owned(),
        "/nodes/fast?kind=checkout".to_owned(),
        "/count?kind=checkout".to_owned(),
        format!("/events?node_id={id}"),
        "/".to_owned(),
    ] {
        let a = s
            .request(Method::GET, &format!("/latest{path}"), &py, "")
            .await;
        let b = s.request(Method::GET, &path, &py, "").await;
        assert_eq!(a.code(), 200, "{path}: {}", a.text());
        assert_eq!((b.code(), b.json()), (200, a.json()), "{path}");
    }
    // And the writes and authenticated calls.
    let auth = format!("Bearer {bob}");
    let hdrs = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let r = s
        .request(
            Method::POST,
            "/node",
            &hdrs,
            serde_json::to_vec(&checkout("beef")).unwrap(),
        )
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    assert_eq!(
        s.request(Method::GET, "/whoami", &hdrs, "").await.json()["username"],
        "bob"
    );
    let r = s
        .request(Method::POST, "/subscribe/node", &hdrs, "null")
        .await;
    assert_eq!(r.code(), 200, "{}", r.text());
    s.stop().await;
}

every_backend!(p02_missing_node_is_200_null);
/// Point 2: `node.get` of a missing node is `None` (200 `null`), so `if not node`
/// works.
async fn p02_missing_node_is_200_null() {
    let s = TestServer::start().await;
    let api = Api::new(&s, None);
    let r = api
        .send(
            Method::GET,
            "node/65a1355ee98651d0fe81e412",
            &[],
            Body::None,
        )
        .await
        .unwrap();
    assert_eq!((r.code(), r.text()), (200, "null".to_owned()));
    assert_eq!(api.node_get("65a1355ee98651d0fe81e412").await, Value::Null);
    s.stop().await;
}

every_backend!(p03_paginated_find_over_230_nodes);
/// Point 3: `_get_paginated`'s loop (limit 100, offsets 0, 100, 200, stop at a short
/// page) over 230 children, created partly over HTTP and partly by bulk load; the
/// envelope; insertion order across pages; `kci node find`'s single page.
async fn p03_paginated_find_over_230_nodes() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let api = Api::new(&s, Some(&bob));
    let parent = api.node_add(&checkout("1234")).await;
    let pid = parent["id"].as_str().unwrap().to_owned();
    let mut created = Vec::new();
    let child = |i: usize| {
        json!({"kind": "test", "name": format!("t{i:03}"), "parent": pid,
               "path": ["checkout", format!("t{i:03}")], "data": {}})
    };
    for i in 0..15 {
        created.push(
            api.node_add(&child(i)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let bulk: Vec<Node> = (15..215)
        .map(|i| {
            let mut n = stored_node("test", &format!("t{i:03}"), &parent, Some("bob"));
            n.state = State::Done;
            n.result = Some(NodeResult::Pass);
            n
        })
        .collect();
    s.state.store().insert_nodes(&bulk).await.unwrap();
    created.extend(bulk.iter().map(|n| n.id.to_string()));
    for i in 215..230 {
        created.push(
            api.node_add(&child(i)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    api.take_log();

    // find({"parent": id}): 100 + 100 + 30.
    let all = api
        .node_find(params([("parent", (&pid).into())]), None, None)
        .await;
    assert_eq!(
        api.take_log(),
        [0, 100, 200].map(|o| format!("GET /latest/nodes?parent={pid}&limit=100&offset={o}"))
    );
    assert_eq!(ids(&all), created, "stable insertion order across pages");
    all.iter().for_each(assert_node_json);

    // find({"parent": id, "state": "done"}): exactly 200, so a third, empty page.
    let done = api
        .node_find(
            params([("parent", (&pid).into()), ("state", "done".into())]),
            None,
            None,
        )
        .await;
    assert_eq!(done.len(), 200);
    assert_eq!(ids(&done), created[15..215]);
    assert_eq!(api.take_log().len(), 3);
    let r = api
        .get(
            "nodes",
            &params([("parent", (&pid).into()), ("limit", 100i64.into())]),
        )
        .await;
    assert_eq!(r["total"], 230);
    api.take_log();

    // `kci node find parent=<id>`: page 0 of 10 → offset 0 is left out.
    let page = api
        .node_find(params([("parent", (&pid).into())]), Some(0), Some(10))
        .await;
    assert_eq!(
        api.take_log(),
        [format!("GET /latest/nodes?parent={pid}&limit=10")]
    );
    assert_eq!(ids(&page), created[..10]);
    // Page 3 of 10.
    let page = api
        .node_find(params([("parent", (&pid).into())]), Some(30), Some(10))
        .await;
    assert_eq!(
        api.take_log(),
        [format!("GET /latest/nodes?parent={pid}&offset=30&limit=10")]
    );
    assert_eq!(ids(&page), created[30..40]);
    s.stop().await;
}

every_backend!(p04_p16_kcidb_bridge_findfast_and_bulkset);
/// Points 4 and 16: the KCIDB bridge's loop — `findfast` with
/// `state=done&processed_by_kcidb_bridge=False&created__gt=..&updated__lt=..&limit=N`
/// (a bare array), `bulkset(ids, "processed_by_kcidb_bridge", "True")` (a bare
/// integer), until nothing is left; `count` answers a bare integer.
async fn p04_p16_kcidb_bridge_findfast_and_bulkset() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let bridge = Api::new(&s, Some(&admin));
    let parent = Api::new(&s, Some(&bob)).node_add(&checkout("kcidb")).await;
    let now = Utc::now();
    let mut expected = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..19 {
        let mut n = stored_node("test", &format!("n{i:02}"), &parent, Some("bob"));
        n.state = State::Done;
        n.result = Some(NodeResult::Pass);
        n.created = ts(now - ChronoDuration::days(2));
        n.updated = ts(now - ChronoDuration::hours(1));
        match i {
            // 12 to send.
            0..=11 => expected.push(n.id.to_string()),
            // Already processed.
            12..=14 => n.processed_by_kcidb_bridge = true,
            // Still running.
            15 => n.state = State::Running,
            // Updated too recently.
            16 => n.updated = ts(now),
            // Created too long ago.
            17 => n.created = ts(now - ChronoDuration::days(10)),
            // Done without a result is still done.
            _ => {
                n.result = None;
                expected.push(n.id.to_string());
            }
        }
        nodes.push(n);
    }
    s.state.store().insert_nodes(&nodes).await.unwrap();

    let query = || {
        params([
            ("state", "done".into()),
            ("processed_by_kcidb_bridge", false.into()),
            (
                "created__gt",
                PyDateTime::naive(now - ChronoDuration::days(4)).into(),
            ),
            (
                "updated__lt",
                PyDateTime::aware(now - ChronoDuration::minutes(5)).into(),
            ),
            ("limit", 5i64.into()),
        ])
    };
    let mut sent = Vec::new();
    let mut batches = Vec::new();
    loop {
        let batch = bridge.node_findfast(query()).await;
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 5);
        batch.iter().for_each(assert_node_json);
        let batch_ids = ids(&batch);
        let n = bridge
            .node_bulkset(&batch_ids, "processed_by_kcidb_bridge", "True")
            .await;
        assert_eq!(n, json!(batch_ids.len()), "bulkset answers a bare count");
        batches.push(batch_ids.len());
        sent.extend(batch_ids);
        assert!(batches.len() <= 4, "the bridge loops forever");
    }
    assert_eq!(batches, [5, 5, 3]);
    assert_eq!(sent, expected, "each node once, in natural order");
    let log = bridge.take_log();
    assert!(
        log[0].starts_with(
            "GET /latest/nodes/fast?state=done&processed_by_kcidb_bridge=False&created__gt="
        ) && log[0].contains("%2B00%3A00&limit=5"),
        "{}",
        log[0]
    );
    // The flag is set (Python True as a filter value).
    let count = bridge
        .node_count(params([
            ("processed_by_kcidb_bridge", true.into()),
            ("state", "done".into()),
        ]))
        .await;
    assert_eq!(count, 13 + 3);
    let r = bridge
        .send(
            Method::GET,
            "count",
            &params([("kind", "test".into())]),
            Body::None,
        )
        .await
        .unwrap();
    assert_eq!(r.text(), "19", "a bare integer");
    // A user without permission is skipped silently.
    let n = Api::new(&s, Some(&bob))
        .node_bulkset(
            &[parent["id"].as_str().unwrap().to_owned()],
            "processed_by_kcidb_bridge",
            "True",
        )
        .await;
    assert_eq!(n, json!(1), "bob owns the checkout");
    let (_, eve) = s.user("eve", false, true, &[]).await;
    let n = Api::new(&s, Some(&eve))
        .node_bulkset(&expected[..2], "processed_by_kcidb_bridge", "False")
        .await;
    assert_eq!(n, json!(0));
    s.stop().await;
}

every_backend!(p05_p06_create_job_node_and_versions);
/// Points 5 and 6: `node.add` returns the node with its `id` and the 23 keys;
/// `create_job_node`'s body (CLIENT.md §6) is accepted; version numbers come back as
/// integers, so the client's `"<version>.<patchlevel>"` works.
async fn p05_p06_create_job_node_and_versions() {
    let s = TestServer::start().await;
    let (_, pipeline) = s.user("pipeline", false, true, &[]).await;
    let api = Api::new(&s, Some(&pipeline));
    let helper = Helper::new(&api);
    let co = api.node_add(&checkout("5eed")).await;
    assert_node_json(&co);
    assert_eq!(co["owner"], "pipeline");
    assert_eq!(co["artifacts"], json!({}));
    let co = api.node_get(co["id"].as_str().unwrap()).await;
    assert_node_json(&co);
    let version = &co["data"]["kernel_revision"]["version"];
    assert_eq!(
        (version["version"].clone(), version["patchlevel"].clone()),
        (json!(6), json!(7))
    );
    let kver = format!(
        "{}.{}",
        version["version"].as_i64().unwrap(),
        version["patchlevel"].as_i64().unwrap()
    );
    assert_eq!(kver, "6.7");

    let kbuild = helper
        .create_job_node(
            "kbuild",
            "kbuild-gcc-12-x86",
            &co,
            "docker",
            "k8s-gke-eu-west4",
            Some(json!(["baseline-x86"])),
        )
        .await;
    assert_node_json(&kbuild);
    let kbuild = api.node_get(kbuild["id"].as_str().unwrap()).await;
    assert_eq!(kbuild["kind"], "kbuild");
    assert_eq!(kbuild["parent"], co["id"]);
    assert_eq!(kbuild["path"], json!(["checkout", "kbuild-gcc-12-x86"]));
    assert_eq!(kbuild["group"], "kbuild-gcc-12-x86");
    assert_eq!(kbuild["treeid"], "a3f5c0ffee");
    assert_eq!(kbuild["submitter"], "service:pipeline");
    assert_eq!(kbuild["jobfilter"], json!(["baseline-x86"]));
    assert_eq!(kbuild["platform_filter"], json!(["docker"]));
    assert_eq!(kbuild["retry_counter"], 0);
    assert_eq!(
        kbuild["data"]["kernel_revision"]["version"]["patchlevel"],
        7
    );
    assert_eq!(kbuild["data"]["defconfig"], "x86_64_defconfig");

    let job = helper
        .create_job_node(
            "job",
            "baseline-x86",
            &kbuild,
            "qemu-x86",
            "lava-collabora",
            None,
        )
        .await;
    let job = api.node_get(job["id"].as_str().unwrap()).await;
    assert_node_json(&job);
    assert_eq!(
        job["path"],
        json!(["checkout", "kbuild-gcc-12-x86", "baseline-x86"])
    );
    assert_eq!(job["jobfilter"], Value::Null);
    assert_eq!(job["data"]["runtime"], "lava-collabora");
    assert_eq!(job["data"]["kernel_revision"]["version"]["version"], 6);
    s.stop().await;
}

every_backend!(p07_tarball_puts_the_whole_node_back);
/// Point 7: the tarball service reads a checkout, changes it, and PUTs the whole
/// dict back (with `id`, `owner`, `created`, `updated`, …; read-only fields are
/// ignored); `holdoff` as `str(aware datetime)`.
async fn p07_tarball_puts_the_whole_node_back() {
    let s = TestServer::start().await;
    let (_, pipeline) = s.user("pipeline", false, true, &[]).await;
    let api = Api::new(&s, Some(&pipeline));
    let co = api.node_add(&checkout("7a4b")).await;
    let id = co["id"].as_str().unwrap().to_owned();

    let mut node = api.node_get(&id).await;
    let before = node.clone();
    node["state"] = json!("available");
    node["result"] = json!("pass");
    node["artifacts"]["tarball"] =
        json!("https://storage.kernelci.org/mainline/master/linux-7a4b.tar.gz");
    let holdoff =
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap() + ChronoDuration::microseconds(123_456);
    node["holdoff"] = json!(PyDateTime::aware(holdoff).str());
    assert_eq!(node["holdoff"], "2026-01-01 12:00:00.123456+00:00");
    // Read-only fields in the dict are ignored.
    node["owner"] = json!("mallory");
    node["submitter"] = json!("someone-else");
    node["user_groups"] = json!(["no-such-group"]);
    let updated = api.node_update(node, false).await;
    assert_node_json(&updated);
    assert_eq!(updated["id"], id);
    assert_eq!(updated["state"], "available");
    assert_eq!(updated["result"], "pass");
    assert_eq!(updated["holdoff"], "2026-01-01T12:00:00.123000");
    assert_eq!(updated["owner"], "pipeline");
    assert_eq!(updated["submitter"], "service:pipeline");
    assert_eq!(updated["user_groups"], json!([]));
    assert_eq!(updated["created"], before["created"]);
    assert!(naive_iso(&updated["updated"]) >= naive_iso(&before["updated"]));
    assert_eq!(api.node_get(&id).await, updated);

    // The failure variant (git checkout failed), without an event.
    let co2 = api.node_add(&checkout("dead")).await;
    let mut node = api.node_get(co2["id"].as_str().unwrap()).await;
    node["state"] = json!("done");
    node["result"] = json!("fail");
    node["data"]["error_code"] = json!("git_checkout_failure");
    node["data"]["error_msg"] = json!("fatal: reference is not a tree");
    let events_before = api
        .get(
            "events",
            &params([("node_id", co2["id"].as_str().unwrap().into())]),
        )
        .await;
    let done = api.node_update(node, true).await;
    assert_eq!(
        api.take_log().last().unwrap(),
        &format!(
            "PUT /latest/node/{}?noevent=true",
            co2["id"].as_str().unwrap()
        )
    );
    assert_eq!(
        (done["state"].clone(), done["result"].clone()),
        (json!("done"), json!("fail"))
    );
    assert_eq!(done["data"]["error_code"], "git_checkout_failure");
    let events_after = api
        .get(
            "events",
            &params([("node_id", co2["id"].as_str().unwrap().into())]),
        )
        .await;
    assert_eq!(events_after, events_before, "noevent");
    s.stop().await;
}

every_backend!(p08_query_strings_as_python_requests_encodes_them);
/// Point 8: the filter syntax clients use, encoded as python-requests does.
async fn p08_query_strings_as_python_requests_encodes_them() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let api = Api::new(&s, Some(&bob));
    let day = |d: u32| format!("2024-01-{d:02}T00:00:00");
    let mut co = checkout("8888");
    co["created"] = json!(day(1));
    co["state"] = json!("done");
    co["result"] = json!("pass");
    co["data"]["kernel_revision"]["version"] = Value::Null;
    co["processed_by_kcidb_bridge"] = json!(true);
    let co = api.node_add(&co).await;
    let pid = co["id"].as_str().unwrap().to_owned();
    let mk = |name: &str,
              kind: &str,
              state: &str,
              result: Value,
              arch: &str,
              pl: i64,
              processed: bool,
              d: u32| {
        json!({"kind": kind, "name": name, "parent": pid, "path": ["checkout", name],
               "state": state, "result": result, "created": day(d),
               "processed_by_kcidb_bridge": processed,
               "data": {"arch": arch, "kernel_revision": {
                   "tree": "next", "url": "https://git.kernel.org/next.git", "branch": "master",
                   "commit": "8888", "version": {"version": 6, "patchlevel": pl}}}})
    };
    for n in [
        mk(
            "kbuild-gcc-x86",
            "kbuild",
            "done",
            json!("fail"),
            "x86_64",
            1,
            false,
            2,
        ),
        mk(
            "kbuild-clang-arm64",
            "kbuild",
            "running",
            Value::Null,
            "arm64",
            2,
            true,
            3,
        ),
        mk(
            "baseline-x86",
            "job",
            "available",
            json!("pass"),
            "x86_64",
            3,
            false,
            4,
        ),
        mk("123", "test", "done", json!("skip"), "x86_64", 4, true, 5),
    ] {
        api.node_add(&n).await;
    }
    let at = |d: u32, h: u32, us: i64| {
        Utc.with_ymd_and_hms(2024, 1, d, h, 0, 0).unwrap() + ChronoDuration::microseconds(us)
    };
    let all = [
        "123",
        "baseline-x86",
        "checkout",
        "kbuild-clang-arm64",
        "kbuild-gcc-x86",
    ];
    #[rustfmt::skip]
    let cases: Vec<(Params, Vec<&str>)> = vec![
        (params([("kind", "kbuild".into())]), vec!["kbuild-clang-arm64", "kbuild-gcc-x86"]),
        (params([("name__re", "x86".into())]), vec!["baseline-x86", "kbuild-gcc-x86"]),
        (params([("name__re", "(?i)^KB".into())]), vec!["kbuild-clang-arm64", "kbuild-gcc-x86"]),
        (params([("result", "null".into())]), vec!["kbuild-clang-arm64"]),
        (params([("result__ne", "null".into())]), vec!["123", "baseline-x86", "checkout", "kbuild-gcc-x86"]),
        (params([("state__ne", "done".into())]), vec!["baseline-x86", "kbuild-clang-arm64"]),
        (params([("kind__in", "kbuild,job".into())]), vec!["baseline-x86", "kbuild-clang-arm64", "kbuild-gcc-x86"]),
        (params([("kind__nin", "kbuild,job".into())]), vec!["123", "checkout"]),
        (params([("data.kernel_revision.version.patchlevel__gt", 2i64.into())]), vec!["123", "baseline-x86"]),
        (params([("data.kernel_revision.version.patchlevel__gte", 2i64.into()),
                 ("data.kernel_revision.version.patchlevel__lte", 3i64.into())]),
         vec!["baseline-x86", "kbuild-clang-arm64"]),
        (params([("data.kernel_revision.version.patchlevel__lt", 2i64.into())]), vec!["kbuild-gcc-x86"]),
        (params([("data.arch", "x86_64".into()), ("kind", "kbuild".into())]), vec!["kbuild-gcc-x86"]),
        (params([("processed_by_kcidb_bridge", true.into())]), vec!["123", "checkout", "kbuild-clang-arm64"]),
        (params([("processed_by_kcidb_bridge", false.into())]), vec!["baseline-x86", "kbuild-gcc-x86"]),
        (params([("processed_by_kcidb_bridge", "tRuE".into())]), vec!["123", "checkout", "kbuild-clang-arm64"]),
        (params([("parent", (&pid).into())]), vec!["123", "baseline-x86", "kbuild-clang-arm64", "kbuild-gcc-x86"]),
        // Datetimes: str(dt) (space) naive and aware, isoformat (T) with +00:00.
        (params([("created__gt", PyDateTime::naive(at(2, 12, 0)).into())]),
         vec!["123", "baseline-x86", "kbuild-clang-arm64"]),
        (params([("created__gte", PyDateTime::aware(at(3, 0, 0)).into())]),
         vec!["123", "baseline-x86", "kbuild-clang-arm64"]),
        (params([("created__lt", PyDateTime::aware(at(3, 0, 0)).isoformat().into())]),
         vec!["checkout", "kbuild-gcc-x86"]),
        (params([("created__lte", PyDateTime::naive(at(2, 0, 1)).into())]), vec!["checkout", "kbuild-gcc-x86"]),
        (params([("created__gt", PyDateTime::naive(at(1, 0, 0)).isoformat().into()),
                 ("created__lt", "2024-01-04".into())]),
         vec!["kbuild-clang-arm64", "kbuild-gcc-x86"]),
        // Repeated keys (a list): the last value wins.
        (params([("state", Py::List(vec!["done".into(), "running".into()]))]), vec!["kbuild-clang-arm64"]),
        // None is left out.
        (params([("kind", "kbuild".into()), ("result", Py::None)]), vec!["kbuild-clang-arm64", "kbuild-gcc-x86"]),
        (params([("name", "123".into())]), vec!["123"]),
        (params([]), all.to_vec()),
    ];
    for (q, want) in cases {
        let qs = encode_params(&q);
        let found = api.node_find(q.clone(), None, None).await;
        assert_eq!(names(&found), want, "{qs}");
        assert_eq!(api.node_count(q).await, want.len() as u64, "count {qs}");
    }
    // The scheduler's `find(attrs, 0, 1)`.
    let found = api
        .node_find(
            params([
                ("name", "baseline-x86".into()),
                ("data.kernel_revision.tree", "next".into()),
                (
                    "created__gte",
                    PyDateTime::naive(at(1, 0, 0)).isoformat().into(),
                ),
            ]),
            Some(0),
            Some(1),
        )
        .await;
    assert_eq!(names(&found), ["baseline-x86"]);
    assert!(api.take_log().last().unwrap().ends_with("&limit=1"));
    s.stop().await;
}

every_backend!(p09_p10_p12_subscribe_listen_and_owner_rule);
/// Points 9, 10 and 12: `subscribe` answers `{"id": <int>, ...}` with and without
/// `promisc=True`; a listen with nothing to deliver returns a keep-alive (an object
/// whose `data` string holds a `BEEP` CloudEvent); a non-promiscuous subscription
/// sees its user's and ownerless messages only, a promiscuous one everything.
async fn p09_p10_p12_subscribe_listen_and_owner_rule() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let b = Api::new(&s, Some(&bob));
    let a = Api::new(&s, Some(&alice));
    let own = b.subscribe("node", None, None).await.unwrap();
    let all = b.subscribe("node", Some(true), None).await.unwrap();
    assert_ne!(own, all);
    assert_eq!(
        b.take_log(),
        [
            "POST /latest/subscribe/node",
            "POST /latest/subscribe/node?promisc=True"
        ]
    );
    // The raw answer and a keep-alive.
    let r = b
        .send(
            Method::POST,
            "subscribe/node",
            &params([("promisc", true.into())]),
            Body::Json(Value::Null),
        )
        .await
        .unwrap();
    let v = r.json();
    assert!(v["id"].is_u64(), "{v}");
    assert_eq!(
        (
            v["channel"].clone(),
            v["user"].clone(),
            v["promiscuous"].clone()
        ),
        (json!("node"), json!("bob"), json!(true))
    );
    let raw = b.get(&format!("listen/{own}"), &[]).await;
    assert_eq!(raw["type"], "message");
    assert_eq!(raw["channel"], "node");
    let beep: Value = serde_json::from_str(raw["data"].as_str().unwrap()).unwrap();
    assert_eq!(beep["data"], "BEEP");
    assert_eq!(
        b.receive_event(own, false).await,
        None,
        "non-blocking: None on BEEP"
    );

    // alice's node, an ownerless node's update, bob's node.
    let alices = a.node_add(&checkout("a11ce")).await;
    let mut orphan = Node::new("checkout", "orphan", Timestamp::now());
    orphan.truncate_times();
    s.state.store().insert_node(&orphan).await.unwrap();
    let admin_api = Api::new(&s, Some(&admin));
    let mut o = admin_api.node_get(&orphan.id.to_string()).await;
    o["state"] = json!("done");
    admin_api.node_update(o, false).await;
    let bobs = b.node_add(&checkout("b0b")).await;

    let first = b.receive_event(own, true).await.unwrap();
    assert_eq!(first["data"]["id"], orphan.id.to_string());
    assert!(
        first.get("owner").is_none() || first["owner"].is_null(),
        "{first}"
    );
    let second = b.receive_event(own, true).await.unwrap();
    assert_eq!(second["data"]["id"], bobs["id"]);
    assert_eq!(second["owner"], "bob");
    let seen: Vec<Value> = [
        b.receive_event(all, true).await.unwrap(),
        b.receive_event(all, true).await.unwrap(),
        b.receive_event(all, true).await.unwrap(),
    ]
    .iter()
    .map(|e| e["data"]["id"].clone())
    .collect();
    assert_eq!(
        seen,
        [
            alices["id"].clone(),
            json!(orphan.id.to_string()),
            bobs["id"].clone()
        ]
    );
    b.unsubscribe(own).await;
    let e = b
        .send(Method::GET, &format!("listen/{own}"), &[], Body::None)
        .await
        .unwrap_err();
    assert_eq!(e.status, 404);
    s.stop().await;
}

every_backend!(p11_node_events_and_edge_triggered_scheduling);
/// Point 11: node events on channel `node` with API.md §9.1's payload; the
/// scheduler's edge triggering works on `previous_state`/`previous_result`.
async fn p11_node_events_and_edge_triggered_scheduling() {
    let s = TestServer::start().await;
    let (_, pipeline) = s.user("pipeline", false, true, &[]).await;
    let api = Api::new(&s, Some(&pipeline));
    let helper = Helper::new(&api);
    let sched = helper
        .subscribe_filters(Value::Null, "node", true, Some("scheduler:node"))
        .await;
    assert_eq!(
        api.take_log(),
        ["POST /latest/subscribe/node?promisc=True&subscriber_id=scheduler%3Anode"]
    );
    let pattern = json!({"channel": "node", "kind": "checkout", "state": "available"});
    let base_keys = [
        "data",
        "group",
        "id",
        "is_hierarchy",
        "kind",
        "name",
        "op",
        "owner",
        "path",
        "result",
        "state",
    ];

    let co = api.node_add(&checkout("11aa")).await;
    let e = api.receive_event(sched, true).await.unwrap();
    assert_eq!(e["source"], "https://api.kernelci.org/");
    assert_eq!(e["type"], "api.kernelci.org");
    assert_eq!(e["owner"], "pipeline");
    let p = &e["data"];
    let mut keys: Vec<&String> = p.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, base_keys);
    assert_eq!(
        (
            p["op"].clone(),
            p["id"].clone(),
            p["kind"].clone(),
            p["name"].clone(),
            p["path"].clone(),
            p["group"].clone(),
            p["state"].clone(),
            p["result"].clone(),
            p["owner"].clone(),
            p["is_hierarchy"].clone()
        ),
        (
            json!("created"),
            co["id"].clone(),
            json!("checkout"),
            json!("checkout"),
            json!(["checkout"]),
            Value::Null,
            json!("running"),
            Value::Null,
            json!("pipeline"),
            json!(false)
        )
    );
    assert_eq!(p["data"], co["data"]);
    assert!(!scheduler_matches(&pattern, p));

    // running → available: the scheduler fires.
    let mut node = api.node_get(co["id"].as_str().unwrap()).await;
    node["state"] = json!("available");
    node["result"] = json!("pass");
    let node = api.node_update(node, false).await;
    let p = api.receive_event(sched, true).await.unwrap()["data"].clone();
    let mut keys: Vec<&String> = p.as_object().unwrap().keys().collect();
    keys.sort();
    let mut want = base_keys.to_vec();
    want.extend(["previous_result", "previous_state"]);
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(
        (p["op"].clone(), p["state"].clone(), p["result"].clone()),
        (json!("updated"), json!("available"), json!("pass"))
    );
    assert_eq!(
        (p["previous_state"].clone(), p["previous_result"].clone()),
        (json!("running"), Value::Null)
    );
    assert!(scheduler_matches(&pattern, &p));
    assert_eq!(p["id"], co["id"]);

    // available → available (another update): no second trigger.
    let mut again = node.clone();
    again["artifacts"]["config"] = json!("https://storage.kernelci.org/config");
    api.node_update(again, false).await;
    let p = api.receive_event(sched, true).await.unwrap()["data"].clone();
    assert_eq!(
        (
            p["state"].clone(),
            p["previous_state"].clone(),
            p["previous_result"].clone()
        ),
        (json!("available"), json!("available"), json!("pass"))
    );
    assert!(!scheduler_matches(&pattern, &p));

    // A hierarchy: one `updated` event with is_hierarchy true.
    let job = helper
        .create_job_node("job", "baseline-x86", &node, "qemu-x86", "lava-lab", None)
        .await;
    api.receive_event(sched, true).await.unwrap();
    let results = json!({"node": {"name": "baseline-x86", "result": "pass", "artifacts": {}},
                         "child_nodes": [{"node": {"name": "login", "kind": "test", "result": "pass"},
                                          "child_nodes": []}]});
    helper.submit_results(&results, &job).await.unwrap();
    let p = api.receive_event(sched, true).await.unwrap()["data"].clone();
    assert_eq!(
        (p["op"].clone(), p["id"].clone(), p["is_hierarchy"].clone()),
        (json!("updated"), job["id"].clone(), json!(true))
    );
    assert_eq!(
        (
            p["state"].clone(),
            p["previous_state"].clone(),
            p["previous_result"].clone()
        ),
        (json!("done"), json!("running"), Value::Null)
    );
    let job_pattern = json!({"channel": "node", "kind": "job", "state": "done", "result": "pass"});
    assert!(scheduler_matches(&job_pattern, &p));
    s.stop().await;
}

every_backend!(p13_push_and_pop_cloudevents);
/// Point 13: `pop_event` gets the parsed CloudEvent object with `data`.
async fn p13_push_and_pop_cloudevents() {
    let s = TestServer::start().await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let api = Api::new(&s, Some(&bob));
    let payload = json!({"id": "65a1355ee98651d0fe81e412", "retry": 1, "note": "žluťoučký"});
    api.push_event("retry-queue", json!({"data": payload}))
        .await;
    api.push_event("retry-queue", json!({"data": "second"}))
        .await;
    let e = api.pop_event("retry-queue").await;
    assert_eq!(e["data"], payload);
    assert_eq!(e["type"], "api.kernelci.org");
    assert_eq!(e["source"], "https://api.kernelci.org/");
    assert_eq!(api.pop_event("retry-queue").await["data"], "second");
    s.stop().await;
}

every_backend!(p14_p17_login_token_and_whoami);
/// Points 14 and 17: `create_token` posts a form and gets `access_token` and
/// `token_type`; the token is a JWT with `sub` (user id), `aud`, `exp` as
/// `kci user token-info` shows them; `whoami` names the user.
async fn p14_p17_login_token_and_whoami() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let admin_api = Api::new(&s, Some(&admin));
    let invite = admin_api
        .post(
            "user/invite",
            json!({"username": "carol", "email": "carol@example.org",
                                    "send_email": false, "return_token": true}),
        )
        .await;
    let carol_id = invite["user"]["id"].as_str().unwrap().to_owned();
    let anon = Api::new(&s, None);
    anon.post(
        "user/accept-invite",
        json!({"token": invite["token"], "password": "s3cret pw"}),
    )
    .await;
    let t = anon.create_token("carol", "s3cret pw").await.unwrap();
    assert_eq!(anon.take_log().last().unwrap(), "POST /latest/user/login");
    let mut keys: Vec<&String> = t.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "token_type"]);
    assert_eq!(t["token_type"], "bearer");
    let token = t["access_token"].as_str().unwrap();
    let (header, payload) = jwt_parts(token);
    assert_eq!(
        (header["alg"].clone(), header["typ"].clone()),
        (json!("HS256"), json!("JWT"))
    );
    assert_eq!(payload["sub"], carol_id);
    assert_eq!(payload["aud"], json!(["fastapi-users:auth"]));
    let exp = payload["exp"].as_i64().expect("exp is an integer");
    let expected = Utc::now().timestamp() + 315_360_000;
    assert!((exp - expected).abs() < 300, "{exp} vs {expected}");
    let carol = Api::new(&s, Some(token));
    let me = carol.whoami().await;
    assert_eq!(me["username"], "carol");
    assert_eq!(me["id"], carol_id);
    assert_eq!(carol.take_log(), ["GET /latest/whoami"]);
    // user.get, user.find (paginated), user.update (PATCH user/me).
    assert_eq!(carol.user_get(&carol_id).await["username"], "carol");
    let users = carol.user_find(Vec::new()).await;
    let mut found: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    found.sort_unstable();
    assert_eq!(found, ["admin", "carol"]);
    assert_eq!(
        carol.take_log().last().unwrap(),
        "GET /latest/users?limit=100&offset=0"
    );
    let me = carol
        .user_update(json!({"password": "s3cret pw"}), None)
        .await;
    assert_eq!(me["username"], "carol");
    assert_eq!(carol.take_log(), ["PATCH /latest/user/me"]);
    // update_password (form), then the new password logs in.
    carol
        .update_password("carol", "s3cret pw", "n3w+pw&x")
        .await;
    assert_eq!(
        anon.create_token("carol", "s3cret pw")
            .await
            .unwrap_err()
            .shown(),
        "LOGIN_BAD_CREDENTIALS"
    );
    anon.create_token("carol", "n3w+pw&x").await.unwrap();
    s.stop().await;
}

every_backend!(p15_every_client_error_is_json_with_detail);
/// Point 15: every 4xx the client can meet is a JSON object with `detail`, which is
/// what kernelci-core shows to users.
async fn p15_every_client_error_is_json_with_detail() {
    let s = TestServer::start().await;
    let (_, admin) = s.user("admin", true, true, &[]).await;
    let (_, bob) = s.user("bob", false, true, &[]).await;
    let (_, alice) = s.user("alice", false, true, &[]).await;
    let (_, unverified) = s.user("newbie", false, false, &[]).await;
    let anon = Api::new(&s, None);
    let a = Api::new(&s, Some(&admin));
    let b = Api::new(&s, Some(&bob));
    let al = Api::new(&s, Some(&alice));
    let nv = Api::new(&s, Some(&unverified));
    let garbage = Api::new(&s, Some("not-a-jwt"));
    let co = b.node_add(&checkout("e44")).await;
    let id = co["id"].as_str().unwrap().to_owned();
    let sub = b.subscribe("node", None, None).await.unwrap();
    b.subscribe("node", None, Some("bob:node")).await.unwrap();

    let j = |v: Value| Body::Json(v);
    #[rustfmt::skip]
    let checks: Vec<ErrorCase<'_>> = vec![
        (&anon, Method::POST, "node".into(), vec![], j(checkout("x")), 401, "Unauthorized"),
        (&garbage, Method::GET, "/whoami".into(), vec![], Body::None, 401, "Unauthorized"),
        (&nv, Method::GET, "/whoami".into(), vec![], Body::None, 403, "Forbidden"),
        (&b, Method::GET, "stats/subscriptions".into(), vec![], Body::None, 403, "Forbidden"),
        (&b, Method::GET, "nodez".into(), vec![], Body::None, 404, "Not Found"),
        // The legacy group API and the disabled registration.
        (&a, Method::GET, "group/65a1355ee98651d0fe81e412".into(), vec![], Body::None, 404, "Not Found"),
        (&a, Method::GET, "groups".into(), params([("limit", 100i64.into()), ("offset", 0i64.into())]),
         Body::None, 404, "Not Found"),
        (&a, Method::POST, "group".into(), vec![], j(json!({"name": "g"})), 404, "Not Found"),
        (&a, Method::POST, "user/register".into(), vec![],
         j(json!({"username": "x", "email": "x@example.org", "password": "p"})),
         404, "User registration is disabled; use /user/invite instead."),
        (&b, Method::POST, "user/register".into(), vec![], j(json!({"username": "x"})), 403, "Forbidden"),
        (&b, Method::POST, "user/request-verify-token".into(), vec![], j(json!({"email": "bob@example.org"})),
         405, "Method Not Allowed"),
        (&b, Method::POST, "user/verify".into(), vec![], j(json!({"token": "t"})), 405, "Method Not Allowed"),
        (&b, Method::GET, format!("unsubscribe/{sub}"), vec![], Body::None, 405, "Method Not Allowed"),
        // Queries.
        (&b, Method::GET, "nodes".into(), params([("limit", 0i64.into())]), Body::None, 422, ""),
        (&b, Method::GET, "nodes".into(), params([("created__gt", "bad".into())]), Body::None, 400,
         "Invalid isoformat string: 'bad'"),
        (&b, Method::GET, "nodes".into(), params([("parent", "zz".into())]), Body::None, 400,
         "'zz' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"),
        (&b, Method::GET, "node/zz".into(), vec![], Body::None, 400,
         "'zz' is not a valid ObjectId, it must be a 12-byte input or a 24-character hex string"),
        // Node writes.
        (&b, Method::POST, "node".into(), vec![], j(json!({"name": "n", "path": ["n"]})), 400,
         "Unsupported node kind: node"),
        (&b, Method::POST, "node".into(), vec![],
         j(json!({"name": "n", "path": ["n"], "kind": "checkout", "state": "bogus"})), 422, ""),
        (&b, Method::POST, "node".into(), vec![],
         j(json!({"name": "n", "path": ["n"], "kind": "test", "parent": "65a1355ee98651d0fe81e412"})),
         404, "Parent not found with id: 65a1355ee98651d0fe81e412"),
        (&b, Method::PUT, format!("node/{id}"), vec![],
         j(json!({"name": "checkout", "path": ["checkout"], "kind": "checkout", "state": "bogus"})), 422, ""),
        (&al, Method::PUT, format!("node/{id}"), vec![], j(co.clone()), 401,
         "Unauthorized to complete the operation"),
        (&b, Method::PUT, "node/65a1355ee98651d0fe81e412".into(), vec![], j(co.clone()), 404,
         "Node not found with id: 65a1355ee98651d0fe81e412"),
        (&b, Method::PUT, "batch/nodeset".into(), vec![],
         j(json!({"nodes": [id], "field": "name", "value": "x"})), 400, "Field not supported"),
        (&b, Method::PUT, "batch/nodeset".into(), vec![], j(json!({"nodes": [id]})), 422, ""),
        // Pub/sub.
        (&b, Method::GET, "listen/999999".into(), vec![], Body::None, 404,
         "Subscription id not found: 'Subscription 999999 not found'"),
        (&b, Method::GET, "listen/abc".into(), vec![], Body::None, 422, ""),
        (&al, Method::GET, format!("listen/{sub}"), vec![], Body::None, 403, ""),
        (&al, Method::POST, "subscribe/node".into(), params([("subscriber_id", "bob:node".into())]),
         j(Value::Null), 409, ""),
        (&b, Method::POST, "publish/node".into(), vec![], j(json!({"data": {}})), 422, ""),
        // Users.
        (&anon, Method::POST, "user/forgot-password".into(), vec![], j(json!({"email": "not an e-mail"})), 422, ""),
        (&anon, Method::POST, "user/reset-password".into(), vec![], j(json!({"token": "x", "password": "y"})),
         400, "RESET_PASSWORD_BAD_TOKEN"),
        (&b, Method::PATCH, "user/me".into(), vec![], j(json!({"groups": ["kernelci"]})), 400,
         "User groups can only be updated by an admin user"),
        (&b, Method::GET, "user/me".into(), vec![], Body::None, 404, "Not Found"),
        // Telemetry.
        (&b, Method::POST, "telemetry".into(), vec![], j(json!([])), 400, "Events list cannot be empty"),
    ];
    for (api, method, path, p, body, status, detail) in checks {
        let e = api
            .send(method.clone(), &path, &p, body)
            .await
            .map(|r| r.text())
            .expect_err(&format!("{method} {path} succeeded"));
        assert_eq!(e.status, status, "{method} {path}: {}", e.body);
        if !detail.is_empty() {
            assert_eq!(e.shown(), detail, "{method} {path}");
        }
    }
    // Login: a form with bad credentials.
    let e = anon.create_token("bob", "wrong").await.unwrap_err();
    assert_eq!(
        (e.status, e.shown()),
        (400, "LOGIN_BAD_CREDENTIALS".to_owned())
    );
    // A malformed JSON body (not json.dumps output, but what a broken caller sends).
    let r = s
        .request(
            Method::POST,
            "/latest/node",
            &[("content-type", "application/json")],
            "{\"name\": ",
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.json()["detail"][0]["type"], "json_invalid");
    // Query validation errors name the parameter.
    let r = s
        .request(
            Method::GET,
            "/latest/nodes?limit=x",
            &[("accept", "*/*")],
            "",
        )
        .await;
    assert_eq!(r.code(), 422);
    assert_eq!(r.json()["detail"][0]["loc"], json!(["query", "limit"]));
    s.stop().await;
}

every_backend!(p18_durable_resubscription_replays_unacknowledged_events);
/// Point 18 and the pipeline's durable subscriptions: the tarball service subscribes
/// with `subscriber_id="tarball:node"`; after a receive error it re-subscribes with
/// the same id (twice), which works and replays what it had not acknowledged.
async fn p18_durable_resubscription_replays_unacknowledged_events() {
    let s = TestServer::start().await;
    let (_, pipeline) = s.user("pipeline", false, true, &[]).await;
    let trigger = Api::new(&s, Some(&pipeline));
    let api = Api::new(&s, Some(&pipeline));
    let tarball = Helper::new(&api);
    let filters = json!({"op": "created", "kind": "checkout", "state": "running"});
    let sub1 = tarball
        .subscribe_filters(filters.clone(), "node", false, Some("tarball:node"))
        .await;
    assert_eq!(
        api.take_log(),
        ["POST /latest/subscribe/node?subscriber_id=tarball%3Anode"]
    );
    let a0 = trigger.node_add(&checkout("a0")).await;
    let (node, is_hierarchy) = tarball.receive_event_node(sub1).await;
    assert_eq!(
        (node["id"].clone(), is_hierarchy),
        (a0["id"].clone(), json!(false))
    );
    let mut n = node;
    n["state"] = json!("available");
    n["result"] = json!("pass");
    tarball.api.node_update(n, false).await;
    let a1 = trigger.node_add(&checkout("a1")).await;
    let (node, _) = tarball.receive_event_node(sub1).await;
    assert_eq!(node["id"], a1["id"]);
    // The service fails before processing a1 and before its next listen; meanwhile
    // the trigger goes on.
    let b = trigger.node_add(&checkout("b")).await;
    let sub2 = tarball
        .subscribe_filters(filters.clone(), "node", false, Some("tarball:node"))
        .await;
    assert_ne!(sub2, sub1);
    // At-least-once: a1 (delivered, not acknowledged) again, then b; not a0.
    let (node, _) = tarball.receive_event_node(sub2).await;
    assert_eq!(node["id"], a1["id"]);
    let (node, _) = tarball.receive_event_node(sub2).await;
    assert_eq!(node["id"], b["id"]);
    // A second failure right away: the replay restarts after b's predecessor.
    let c = trigger.node_add(&checkout("c")).await;
    let sub3 = tarball
        .subscribe_filters(filters, "node", false, Some("tarball:node"))
        .await;
    let (node, _) = tarball.receive_event_node(sub3).await;
    assert_eq!(node["id"], b["id"]);
    let (node, _) = tarball.receive_event_node(sub3).await;
    assert_eq!(node["id"], c["id"]);
    // Another user cannot take the subscriber id (and nothing is delivered to them).
    let (_, eve) = s.user("eve", false, true, &[]).await;
    let e = Api::new(&s, Some(&eve))
        .subscribe("node", None, Some("tarball:node"))
        .await
        .unwrap_err();
    assert_eq!(e.status, 409, "{:?}", e.body);
    s.stop().await;
}

// =====================================================================================
// Pipeline flows
// =====================================================================================

every_backend!(telemetry_batches_pages_and_stats);
/// The telemetry helper: `telemetry.add` of a batch, `telemetry.find` paginated
/// (more than 100 events), `telemetry.stats`.
async fn telemetry_batches_pages_and_stats() {
    let s = TestServer::start().await;
    let (_, lab) = s.user("lava-collabora", false, true, &[]).await;
    let api = Api::new(&s, Some(&lab));
    let events: Vec<Value> = (0..150)
        .map(|i| {
            json!({"kind": "job_result", "runtime": "lava-collabora", "device_type": "qemu",
                   "job_name": format!("baseline-{i}"), "result": if i % 3 == 0 { "fail" } else { "pass" },
                   "is_infra_error": i % 10 == 0, "extra": {"i": i}})
        })
        .collect();
    assert_eq!(
        api.telemetry_add(json!(events)).await,
        json!({"inserted": 150})
    );
    let found = api
        .telemetry_find(params([
            ("runtime", "lava-collabora".into()),
            ("kind", "job_result".into()),
        ]))
        .await;
    assert_eq!(found.len(), 150);
    let order: Vec<i64> = found
        .iter()
        .map(|e| e["extra"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(
        order,
        (0..150).collect::<Vec<_>>(),
        "insertion order across pages"
    );
    assert_eq!(api.take_log().len(), 1 + 2);
    let infra = api
        .telemetry_find(params([("is_infra_error", true.into())]))
        .await;
    assert_eq!(infra.len(), 15, "Python True");
    let stats = api
        .telemetry_stats(params([("group_by", "runtime,device_type".into())]))
        .await;
    assert_eq!(
        stats,
        json!([{"runtime": "lava-collabora", "device_type": "qemu", "total": 150, "pass": 100,
                "fail": 50, "incomplete": 0, "skip": 0, "infra_error": 15}])
    );
    s.stop().await;
}

every_backend!(pipeline_trigger_timeout_holdoff_and_closing_services);
/// The trigger's `count` (`created__gte` naive ISO with microseconds), the timeout
/// service (`find({"state": "running"})`, PUT done/incomplete/node_timeout), the
/// holdoff service (`find({"state": "available", "holdoff__lt": <aware ISO>})`, PUT
/// closing) and the closing service (`find({"state": "closing"})`,
/// `find({"parent": id})`, PUT done).
async fn pipeline_trigger_timeout_holdoff_and_closing_services() {
    let s = TestServer::start().await;
    let (_, pipeline) = s.user("pipeline", false, true, &[]).await;
    let api = Api::new(&s, Some(&pipeline));
    assert_eq!(api.whoami().await["username"], "pipeline");
    let now = Utc::now();

    // trigger: was this commit already checked out today?
    let since = PyDateTime::naive(now - ChronoDuration::days(1) + ChronoDuration::microseconds(1));
    let trig = |result: Option<&str>| {
        let mut p = params([
            ("kind", "checkout".into()),
            ("data.kernel_revision.commit", "f00d".into()),
            ("owner", "pipeline".into()),
            ("submitter", "service:pipeline".into()),
            ("created__gte", since.isoformat().into()),
        ]);
        if let Some(r) = result {
            p.push(("result".into(), r.into()));
        }
        p
    };
    assert_eq!(api.node_count(trig(None)).await, 0);
    let x = api.node_add(&checkout("f00d")).await;
    assert_eq!(api.node_count(trig(None)).await, 1);
    assert_eq!(api.node_count(trig(Some("incomplete"))).await, 0);
    let log = api.take_log();
    assert!(
        log.iter().any(|l| l.starts_with(
            "GET /latest/count?kind=checkout&data.kernel_revision.commit=f00d&owner=pipeline\
             &submitter=service%3Apipeline&created__gte=2"
        )),
        "{log:?}"
    );

    // tarball: x and y available; x's holdoff has passed, y's has not.
    let y = api.node_add(&checkout("f00e")).await;
    for (n, holdoff) in [
        (&x, now - ChronoDuration::hours(1)),
        (&y, now + ChronoDuration::hours(1)),
    ] {
        let mut node = api.node_get(n["id"].as_str().unwrap()).await;
        node["state"] = json!("available");
        node["result"] = json!("pass");
        node["holdoff"] = json!(PyDateTime::aware(holdoff).str());
        api.node_update(node, false).await;
    }
    let kbuild = Helper::new(&api)
        .create_job_node("kbuild", "kbuild-gcc-12-x86", &x, "docker", "k8s", None)
        .await;
    // z: running with a timeout in the past.
    let mut z = checkout("f00f");
    z["timeout"] = json!("2020-01-01T00:00:00");
    let z = api.node_add(&z).await;

    // timeout service.
    let running = api
        .node_find(params([("state", "running".into())]), None, None)
        .await;
    let mut timed_out = Vec::new();
    for mut node in running {
        if naive_iso(&node["timeout"]) < now {
            timed_out.push(node["id"].clone());
            node["state"] = json!("done");
            node["result"] = json!("incomplete");
            node["data"]["error_code"] = json!("node_timeout");
            node["data"]["error_msg"] = json!("Node timed-out");
            let n = api.node_update(node, false).await;
            assert_eq!(n["data"]["error_code"], "node_timeout");
        }
    }
    assert_eq!(timed_out, [z["id"].clone()]);
    // A late result: the client clears the stale error before sending.
    let mut late = api.node_get(z["id"].as_str().unwrap()).await;
    late["result"] = json!("pass");
    let late = api.node_update(late, false).await;
    assert_eq!(
        (
            late["data"]["error_code"].clone(),
            late["data"]["error_msg"].clone()
        ),
        (Value::Null, Value::Null)
    );

    // holdoff service.
    let expired = api
        .node_find(
            params([
                ("state", "available".into()),
                ("holdoff__lt", PyDateTime::aware(now).isoformat().into()),
            ]),
            None,
            None,
        )
        .await;
    assert_eq!(ids(&expired), [x["id"].as_str().unwrap()]);
    let log = api.take_log();
    assert!(log.last().unwrap().contains("&holdoff__lt=2"), "{log:?}");
    for mut node in expired {
        node["state"] = json!("closing");
        api.node_update(node, false).await;
    }

    // closing service: waits for the children.
    for round in 0..2 {
        let closing = api
            .node_find(params([("state", "closing".into())]), None, None)
            .await;
        assert_eq!(ids(&closing), [x["id"].as_str().unwrap()], "round {round}");
        for mut node in closing {
            let children = api
                .node_find(
                    params([("parent", node["id"].as_str().unwrap().into())]),
                    None,
                    None,
                )
                .await;
            assert_eq!(ids(&children), [kbuild["id"].as_str().unwrap()]);
            if children.iter().all(|c| c["state"] == "done") {
                node["state"] = json!("done");
                api.node_update(node, false).await;
            }
        }
        if round == 0 {
            let mut k = api.node_get(kbuild["id"].as_str().unwrap()).await;
            k["state"] = json!("done");
            k["result"] = json!("pass");
            api.node_update(k, false).await;
        }
    }
    assert_eq!(
        api.node_get(x["id"].as_str().unwrap()).await["state"],
        "done"
    );
    assert!(api
        .node_find(params([("state", "closing".into())]), None, None)
        .await
        .is_empty());
    assert_eq!(
        api.node_get(y["id"].as_str().unwrap()).await["state"],
        "available"
    );
    s.stop().await;
}

every_backend!(lava_callback_submit_results_hierarchy);
/// `submit_results` (CLIENT.md §5) as the LAVA callback uses it: GET the root and its
/// parent, PUT `nodes/<root id>` with the prepared tree; the answer lists the written
/// nodes, and the KCIDB bridge's `receive_event_node` sees `is_hierarchy`.
async fn lava_callback_submit_results_hierarchy() {
    let s = TestServer::start().await;
    let (_, pipeline) = s.user("pipeline", false, true, &[]).await;
    let api = Api::new(&s, Some(&pipeline));
    let helper = Helper::new(&api);
    let bridge_sub = helper
        .subscribe_filters(
            json!({"state": "done"}),
            "node",
            false,
            Some("send_kcidb:node"),
        )
        .await;
    let co = api.node_add(&checkout("ab12")).await;
    let kbuild = helper
        .create_job_node("kbuild", "kbuild-gcc-12-x86", &co, "docker", "k8s", None)
        .await;
    let job = helper
        .create_job_node(
            "job",
            "baseline-x86",
            &kbuild,
            "qemu-x86",
            "lava-collabora",
            None,
        )
        .await;
    api.take_log();
    let results = json!({
        "node": {"name": "baseline-x86", "result": "pass",
                 "artifacts": {"lava_log": "https://storage.kernelci.org/lava/log.txt"},
                 "data": {"job_id": "1234"}},
        "child_nodes": [
            {"node": {"name": "login", "kind": "test", "result": "pass"}, "child_nodes": []},
            {"node": {"name": "dmesg", "kind": "test", "result": "fail"},
             "child_nodes": [
                 {"node": {"name": "crit", "result": "fail"}, "child_nodes": []},
                 {"node": {"name": "emerg", "result": "pass",
                           "data": {"misc": {"measurement": 3}}}, "child_nodes": []}]},
        ],
    });
    let written = helper.submit_results(&results, &job).await.unwrap();
    let jid = job["id"].as_str().unwrap();
    assert_eq!(
        api.take_log(),
        [
            format!("GET /latest/node/{jid}"),
            format!("GET /latest/node/{}", kbuild["id"].as_str().unwrap()),
            format!("PUT /latest/nodes/{jid}"),
        ]
    );
    let written = written.as_array().unwrap();
    let got: Vec<&str> = written
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["baseline-x86", "login", "dmesg", "crit", "emerg"]);
    written.iter().for_each(assert_node_json);
    let root = &written[0];
    assert_eq!(
        (
            root["id"].as_str(),
            root["state"].clone(),
            root["result"].clone()
        ),
        (Some(jid), json!("done"), json!("pass"))
    );
    assert_eq!(
        root["artifacts"]["lava_log"],
        "https://storage.kernelci.org/lava/log.txt"
    );
    assert_eq!(root["data"]["job_id"], "1234");
    assert_eq!(root["data"]["kernel_revision"]["version"]["version"], 6);
    let by_name = |n: &str| written.iter().find(|x| x["name"] == n).unwrap();
    assert_eq!(by_name("login")["parent"], job["id"]);
    assert_eq!(by_name("crit")["parent"], by_name("dmesg")["id"]);
    assert_eq!(by_name("crit")["kind"], "test", "inherited");
    assert_eq!(
        by_name("crit")["path"],
        json!([
            "checkout",
            "kbuild-gcc-12-x86",
            "baseline-x86",
            "dmesg",
            "crit"
        ])
    );
    assert_eq!(by_name("crit")["group"], "baseline-x86");
    assert_eq!(by_name("emerg")["data"]["platform"], "qemu-x86");
    assert_eq!(by_name("emerg")["data"]["misc"]["measurement"], 3);
    for n in &written[1..] {
        assert_eq!(n["state"], "done");
        assert_eq!(n["owner"], "pipeline");
        assert_eq!(n["treeid"], "a3f5c0ffee");
    }
    let children = api
        .node_find(params([("parent", jid.into())]), None, None)
        .await;
    assert_eq!(names(&children), ["dmesg", "login"]);
    // The bridge: created events of running nodes are filtered out client-side; the
    // hierarchy's root update is delivered with is_hierarchy.
    let (node, is_hierarchy) = helper.receive_event_node(bridge_sub).await;
    assert_eq!(
        (node["id"].as_str(), is_hierarchy),
        (Some(jid), json!(true))
    );
    s.stop().await;
}

every_backend!(lava_callback_retry_event_is_relayed_as_is);
/// The LAVA callback publishes `{"data": <kbuild node dict with op="updated">}` on
/// `node` to have a job retried; job_retry, subscribed durably with filters, gets the
/// payload exactly as sent and the node through `receive_event_node`.
async fn lava_callback_retry_event_is_relayed_as_is() {
    let s = TestServer::start().await;
    let (_, pipeline) = s.user("pipeline", false, true, &[]).await;
    let api = Api::new(&s, Some(&pipeline));
    let helper = Helper::new(&api);
    let retry_api = Api::new(&s, Some(&pipeline));
    let job_retry = Helper::new(&retry_api);
    let filters =
        json!({"state": "done", "result": ["incomplete", "fail"], "kind": ["kbuild", "job"]});
    let sub = job_retry
        .subscribe_filters(filters, "node", false, Some("job_retry:node"))
        .await;
    let monitor = retry_api.subscribe("node", None, None).await.unwrap();
    let sched_retry = retry_api
        .subscribe("retry", None, Some("scheduler:retry"))
        .await
        .unwrap();
    let co = api.node_add(&checkout("4e7")).await;
    let kbuild = helper
        .create_job_node(
            "kbuild",
            "kbuild-gcc-12-arm64",
            &co,
            "docker",
            "k8s",
            Some(json!(["baseline-arm64"])),
        )
        .await;
    let mut k = api.node_get(kbuild["id"].as_str().unwrap()).await;
    k["state"] = json!("done");
    k["result"] = json!("incomplete");
    let k = api.node_update(k, true).await;
    // lava_callback: node dict + op + jobfilter, sent as the event payload.
    let mut payload = k.clone();
    payload["op"] = json!("updated");
    payload["jobfilter"] = json!(["baseline-arm64"]);
    payload["retry_counter"] = json!(1);
    api.send_event("node", json!({"data": payload})).await;
    assert_eq!(api.take_log().last().unwrap(), "POST /latest/publish/node");

    // The monitor (non-durable): created checkout, created kbuild, then the payload.
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(retry_api.receive_event(monitor, true).await.unwrap());
    }
    assert_eq!(events[2]["data"], payload, "relayed as is");
    assert_eq!(events[2]["owner"], "pipeline");
    // job_retry: filtered on the node (done, incomplete, kbuild) and the payload.
    let (node, is_hierarchy) = job_retry.receive_event_node(sub).await;
    assert_eq!(node, k);
    assert_eq!(
        is_hierarchy,
        Value::Null,
        "the callback's payload has no is_hierarchy"
    );
    // The `retry` channel carries the same kind of payload to the scheduler.
    api.send_event("retry", json!({"data": payload})).await;
    let e = retry_api.receive_event(sched_retry, true).await.unwrap();
    assert_eq!(e["data"], payload);
    // The same payload from /events.
    let history = api
        .get(
            "events",
            &params([("node_id", kbuild["id"].as_str().unwrap().into())]),
        )
        .await;
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["data"], payload);
    s.stop().await;
}
