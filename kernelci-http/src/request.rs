//! A request as handlers see it: method, route parameters, decoded query pairs,
//! headers, the whole body (already read within the size limit), the peer address.
//! Body decoders give the reference's 422 answers.

use std::net::SocketAddr;

use bytes::Bytes;
use hyper::header::HeaderMap;
use hyper::Method;
use serde_json::{json, Value};

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

    /// The body as JSON: 422 `json_invalid` (pydantic's shape, with the byte position)
    /// when it does not parse, and `missing` when it is empty.
    pub fn json(&self) -> ApiResult<Value> {
        if self.body.is_empty() {
            return Err(ApiError::unprocessable(
                "missing",
                json!(["body"]),
                "Field required",
                Value::Null,
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            let pos = byte_offset(&self.body, e.line(), e.column());
            ApiError {
                status: hyper::StatusCode::UNPROCESSABLE_ENTITY,
                body: json!({"detail": [{
                    "type": "json_invalid",
                    "loc": ["body", pos],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.to_string()},
                }]}),
                headers: Vec::new(),
            }
        })
    }

    /// The JSON body, which must be an object (422 `model_attributes_type` otherwise).
    pub fn json_object(&self) -> ApiResult<serde_json::Map<String, Value>> {
        match self.json()? {
            Value::Object(m) => Ok(m),
            other => Err(ApiError::unprocessable(
                "model_attributes_type",
                json!(["body"]),
                "Input should be a valid dictionary or object to extract fields from",
                other,
            )),
        }
    }

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

/// Required string fields of a form: 422 listing each missing one (loc
/// `["body", name]`).
pub fn form_fields<'a>(
    pairs: &'a [(String, String)],
    required: &[&str],
) -> ApiResult<Vec<&'a str>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in required {
        match pairs.iter().rev().find(|(k, _)| k == name) {
            Some((_, v)) => found.push(v.as_str()),
            None => missing.push(
                json!({"type": "missing", "loc": ["body", name], "msg": "Field required", "input": null}),
            ),
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(ApiError {
            status: hyper::StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({ "detail": missing }),
            headers: Vec::new(),
        })
    }
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
    fn byte_offsets() {
        assert_eq!(byte_offset(b"{\"a\": x}", 1, 7), 6);
        assert_eq!(byte_offset(b"{\n x}", 2, 2), 3);
    }
}
