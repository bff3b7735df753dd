//! The key/value store (API.md §9, all endpoints need a user): string values under a
//! namespace and a key (route parameters, already percent-decoded).
//!
//! `POST` takes the value from the body, by content type as the reference's
//! framework does: with a JSON content type the body must be a JSON string (a
//! number, object... is 422 `string_type`, malformed JSON 422 `json_invalid` even
//! without a token); with any other content type the raw body is the value (422
//! `string_unicode` when it is not UTF-8). A request **without** `Content-Type` is
//! read as JSON too (FastAPI does so), so `requests.post(url, data="abc")` gets 422.
//! An empty body, `""` or JSON `null` deletes the key.
//!
//! Choice where the reference differs: it stores `<namespace>:<key>` in one Redis
//! key space, so `ns=a, key=b:c` and `ns=a:b, key=c` collide; here namespace and key
//! are kept apart.

use serde_json::{json, Value};

use kernelci_core::auth::Operation;
use kernelci_core::validation::FieldError;

use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use crate::response::{ok, Resp};
use crate::state::AppState;

/// `GET /kv/{ns}/{key}`: the value as a JSON string, or `null`.
pub async fn kv_get(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::KvGet).await?;
    let value = state.store().kv_get(req.param(0), req.param(1)).await?;
    Ok(ok(&json!(value)))
}

/// The body before authentication: nothing, decoded JSON, or raw bytes.
enum Body {
    Empty,
    Json(Value),
    Raw,
}

/// `POST /kv/{ns}/{key}`: sets (or, for an empty value, deletes) the value; `"OK"`.
/// A store failure while setting is 500 `Failed to set key-value pair`.
pub async fn kv_set(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = if req.body.is_empty() {
        Body::Empty
    } else if req.has_json_type() {
        Body::Json(req.json()?)
    } else {
        Body::Raw
    };
    state.require_user(req, Operation::KvSet).await?;
    let value = match body {
        Body::Empty | Body::Json(Value::Null) => None,
        Body::Json(Value::String(s)) => Some(s),
        Body::Json(other) => {
            return Err(ApiError::invalid(FieldError::string_type(
                vec!["body".into()],
                other,
            )))
        }
        Body::Raw => Some(String::from_utf8(req.body.to_vec()).map_err(|e| {
            ApiError::invalid(FieldError::new(
                vec!["body".into()],
                "string_unicode",
                "Input should be a valid string, unable to parse raw data as a unicode string",
                Value::String(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ))
        })?),
    };
    let (ns, key) = (req.param(0), req.param(1));
    match value.filter(|v| !v.is_empty()) {
        None => {
            state.store().kv_delete(ns, key).await?;
        }
        Some(v) => state.store().kv_set(ns, key, &v).await.map_err(|e| {
            tracing::error!(error = %e, "kv_set failed");
            ApiError::detail(
                hyper::StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to set key-value pair",
            )
        })?,
    }
    Ok(ok(&json!("OK")))
}

/// `DELETE /kv/{ns}/{key}`: `"Key-value pair deleted successfully"`, also when there
/// was no value.
pub async fn kv_delete(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::KvDelete).await?;
    state.store().kv_delete(req.param(0), req.param(1)).await?;
    Ok(ok(&json!("Key-value pair deleted successfully")))
}
