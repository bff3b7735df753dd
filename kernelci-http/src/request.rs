//! A request as handlers see it: method, route parameters, decoded query pairs,
//! headers, the whole body (already read within the size limit), the peer address.
//! Body decoders give the reference's 422 answers.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::Value;

use kernelci_core::validation::{params, FieldError, ValidationErrors};

use crate::error::{ApiError, ApiResult};

/// One request, read in full.
#[derive(Debug, Clone)]
pub struct Req {
    /// The method.
    pub method: Method,
    /// The path as received (before rewriting).
    pub path: String,
    /// The version prefix it is served under (`/latest` or `/v0`).
    pub prefix: &'static str,
    /// Route parameters, in pattern order, percent-decoded.
    pub params: Vec<String>,
    /// Query pairs in order, decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The TCP peer.
    pub peer: SocketAddr,
}

impl Req {
    /// Route parameter `i` (the router guarantees it exists for the route).
    pub fn param(&self, i: usize) -> &str {
        self.params.get(i).map(String::as_str).unwrap_or("")
    }

    /// The last value of query key `k` (API.md §1.7: the last one wins).
    pub fn query_last(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// The query pairs with repeated keys collapsed to their last value (kept at
    /// the position of the last occurrence).
    pub fn query_last_wins(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::with_capacity(self.query.len());
        for (k, v) in &self.query {
            out.retain(|(key, _)| key != k);
            out.push((k.clone(), v.clone()));
        }
        out
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` without parameters, lower-case.
    pub fn content_type(&self) -> String {
        self.header("content-type")
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// The bearer token of `Authorization` (the scheme matched case-insensitively).
    pub fn bearer(&self) -> Option<&str> {
        let h = self.header("authorization")?;
        let (scheme, token) = h.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }

    /// Whether the body is to be read as JSON, by FastAPI's rule: no `Content-Type`,
    /// `application/json` or `application/*+json`.
    pub fn has_json_type(&self) -> bool {
        let ct = self.content_type();
        ct.is_empty()
            || ct
                .strip_prefix("application/")
                .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
    }

    /// The body as JSON: 422 `json_invalid` (pydantic's shape, with the byte position)
    /// when it does not parse or is nested deeper than [`MAX_JSON_DEPTH`], and
    /// `missing` when it is empty.
    ///
    /// A body of another content type ([`Req::has_json_type`]) is not decoded: as
    /// FastAPI does, it is the body's text, a JSON string, so that the endpoint's
    /// validation refuses it with its own 422 (`model_attributes_type` for an
    /// object, `list_type` for a list...) with the text as `input`.
    pub fn json(&self) -> ApiResult<Value> {
        if self.body.is_empty() {
            return Err(body_missing());
        }
        if !self.has_json_type() {
            return Ok(Value::String(
                String::from_utf8_lossy(&self.body).into_owned(),
            ));
        }
        if let Some(pos) = too_deep(&self.body, MAX_JSON_DEPTH) {
            return Err(json_invalid(
                pos,
                format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
            ));
        }
        if let Some((pos, literal)) = wide_integer(&self.body) {
            return Err(ApiError::invalid(FieldError::value_error(
                vec!["body".into(), pos.into()],
                "integers must fit in 64 bits",
                Value::String(literal),
            )));
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| json_invalid(byte_offset(&self.body, e.line(), e.column()), e.to_string()))
    }

    /// The body decoded as JSON **before** authentication: `None` when it is empty,
    /// 422 `json_invalid` as [`Req::json`] when it does not parse. FastAPI decodes the
    /// body, then runs the dependencies (authentication), then validates: an empty or
    /// wrongly shaped body without a token is 401, not 422. Handlers that need a
    /// user call this, then authenticate, then [`require_body`] and the field checks.
    pub fn json_opt(&self) -> ApiResult<Option<Value>> {
        if self.body.is_empty() {
            Ok(None)
        } else {
            self.json().map(Some)
        }
    }

    /// The JSON body, which must be an object (422 `model_attributes_type` otherwise).
    pub fn json_object(&self) -> ApiResult<serde_json::Map<String, Value>> {
        into_object(self.json()?)
    }
}

/// The body of [`Req::json_opt`], required: 422 `missing` (loc `["body"]`) when there
/// was none.
pub fn require_body(body: Option<Value>) -> ApiResult<Value> {
    body.ok_or_else(body_missing)
}

/// 422 `missing` at `["body"]`: a required body was not sent.
pub fn body_missing() -> ApiError {
    ApiError::invalid(FieldError::missing(vec!["body".into()], Value::Null))
}

/// A body that must be an object: 422 `model_attributes_type` otherwise.
pub fn into_object(body: Value) -> ApiResult<serde_json::Map<String, Value>> {
    match body {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::invalid(FieldError::model_attributes_type(
            vec!["body".into()],
            other,
        ))),
    }
}

impl Req {
    /// The body as form pairs (`application/x-www-form-urlencoded`); other content
    /// types give no pairs (so required fields are reported missing, as the
    /// reference does for a JSON login body).
    pub fn form(&self) -> Vec<(String, String)> {
        if self.content_type() == "application/x-www-form-urlencoded"
            || self.content_type().is_empty()
        {
            form_urlencoded::parse(&self.body).into_owned().collect()
        } else {
            Vec::new()
        }
    }
}

/// How deeply request JSON may nest (arrays and objects), as MongoDB's limit for
/// the reference's documents. Stored documents wrap request values in a few more
/// levels (an event holds a node's `data` two levels down), and the store reads
/// them back with serde_json's limit of 128: a deeper request would store a
/// document that cannot be read again (a node event that fails `/events` and every
/// durable subscriber's `listen`).
pub const MAX_JSON_DEPTH: usize = 100;

/// pydantic's `json_invalid` answer at byte `pos`.
fn json_invalid(pos: usize, error: String) -> ApiError {
    ApiError::invalid(FieldError::json_invalid(pos, error))
}

/// The byte position of the first `[` or `{` (outside strings) that opens level
/// `max + 1`, if any. Malformed text is left to the parser.
fn too_deep(body: &[u8], max: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, b) in body.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Pagination of `/nodes`, `/users`, `/user-groups` and `/telemetry` (API.md §1.6): `limit` ≥ 1 (default
/// 50, no maximum) and `offset` ≥ 0 (default 0), the last value of each winning;
/// 422 with `loc: ["query", "limit" | "offset"]` otherwise.
pub fn page_window(req: &Req) -> ApiResult<(u64, u64)> {
    let limit = params::uint_param(&req.query, "limit", 50, 1);
    let offset = params::uint_param(&req.query, "offset", 0, 0);
    match (limit, offset) {
        (Ok(l), Ok(o)) => Ok((l, o)),
        (l, o) => Err(ApiError::invalid(
            [l.err(), o.err()]
                .into_iter()
                .flatten()
                .flat_map(|e| e.0)
                .collect::<ValidationErrors>(),
        )),
    }
}

/// The byte position and text of the first integer literal (outside strings) that
/// fits neither `i64` nor `u64`: serde_json would read it as a float and store a
/// different number (and MongoDB, the reference's store, refuses it). Floats
/// (with `.`, `e` or `E`) are left alone; malformed text is left to the parser.
fn wide_integer(body: &[u8]) -> Option<(usize, String)> {
    let (mut in_string, mut escaped) = (false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < body.len() && body[i].is_ascii_digit() {
                i += 1;
            }
            let is_float = i < body.len() && matches!(body[i], b'.' | b'e' | b'E');
            let text = String::from_utf8_lossy(&body[start..i]).into_owned();
            let digits = text.trim_start_matches('-');
            // Only long literals can be out of range.
            if !is_float
                && digits.len() >= 19
                && text.parse::<i64>().is_err()
                && text.parse::<u64>().is_err()
            {
                return Some((start, text));
            }
            while i < body.len() && matches!(body[i], b'.' | b'e' | b'E' | b'+' | b'-')
                || i < body.len() && body[i].is_ascii_digit()
            {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    None
}

/// serde_json reports 1-based line and column; the reference reports a byte offset.
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in body.split(|b| *b == b'\n').enumerate() {
        if i + 1 == line {
            return offset + column.saturating_sub(1);
        }
        offset += l.len() + 1;
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_depth() {
        assert_eq!(too_deep(b"[[1]]", 2), None);
        assert_eq!(too_deep(b"[[[1]]]", 2), Some(2));
        assert_eq!(too_deep(br#"{"a": {"b": [0]}}"#, 2), Some(12));
        // Brackets inside strings (escaped quotes included) do not count.
        assert_eq!(too_deep(br#"["[[[", "\"[[[", "\\"]"#, 1), None);
        assert_eq!(too_deep(br#"["\\", [1]]"#, 1), Some(7));
    }

    #[test]
    fn integers_wider_than_64_bits() {
        assert_eq!(wide_integer(br#"{"n": 18446744073709551615}"#), None);
        assert_eq!(wide_integer(br#"{"n": -9223372036854775808}"#), None);
        assert_eq!(
            wide_integer(br#"{"n": 18446744073709551616}"#),
            Some((6, "18446744073709551616".into()))
        );
        assert_eq!(
            wide_integer(br#"[1, -9223372036854775809]"#),
            Some((4, "-9223372036854775809".into()))
        );
        // Floats, and digits inside strings (escaped quotes included), are not.
        assert_eq!(wide_integer(br#"[1.8446744073709551616e25, 1e400]"#), None);
        assert_eq!(
            wide_integer(br#"["99999999999999999999", "\"99999999999999999999"]"#),
            None
        );
    }

    #[test]
    fn byte_offsets() {
        assert_eq!(byte_offset(b"{\"a\": x}", 1, 7), 6);
        assert_eq!(byte_offset(b"{\n x}", 2, 2), 3);
    }
}
