//! Building responses.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;

use crate::error::ApiError;

/// The response type of every handler.
pub type Resp = Response<Full<Bytes>>;

/// A response with a body and content type.
pub fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json(status: StatusCode, v: &Value) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    with_body(status, "application/json", body)
}

/// 200 with a JSON body.
pub fn ok(v: &Value) -> Resp {
    json(StatusCode::OK, v)
}

/// 200 with `v` serialised straight into the body (no `serde_json::Value` on the
/// way: a typed node costs its own serialisation only). A value that cannot be
/// serialised (a map with non-string keys; none of ours) answers `null`, as
/// [`json`] does.
pub fn ok_typed<T: serde::Serialize + ?Sized>(v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
    with_body(StatusCode::OK, "application/json", body)
}

/// 200 with a JSON body already serialised.
pub fn ok_raw(body: Vec<u8>) -> Resp {
    with_body(StatusCode::OK, "application/json", body)
}

/// A status with an empty body (204).
pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// An HTML page.
pub fn html(body: impl Into<Bytes>) -> Resp {
    with_body(StatusCode::OK, "text/html; charset=utf-8", body)
}

/// The answer for an [`ApiError`].
pub fn error(e: ApiError) -> Resp {
    let mut r = json(e.status, &e.body);
    for (name, value) in e.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}
