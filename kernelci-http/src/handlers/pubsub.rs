//! Pub/sub endpoints (API.md §9): subscribe, unsubscribe, listen, publish, push,
//! pop and the subscription statistics. The delivery model is described in
//! [`crate::pubsub`].
//!
//! Where this server answers differently from the reference (which answers these
//! client errors with 500):
//!
//! | situation | here |
//! |---|---|
//! | listen/unsubscribe on another user's subscription | 403 `Subscription <n> not owned by <user>` |
//! | durable `subscriber_id` of another user | 409 `Subscriber id <id> belongs to another user` |
//! | `/push` body without `data` | 422 `missing`, loc `["body","data"]` |
//! | `/pop` waiting while the server stops | 503 `Server is shutting down` |
//!
//! As in FastAPI, a request body that is not JSON is refused (422) before the token
//! is checked, and query, path and body validation (422) come after it.

use hyper::StatusCode;
use serde_json::{json, Value};

use kernelci_core::auth::Operation;
use kernelci_core::events::NewEvent;
use kernelci_core::id::ObjectId;
use kernelci_core::time::Timestamp;
use kernelci_core::validation::{body_loc, params, value, FieldError, Fields};

use crate::error::{ApiError, ApiResult};
use crate::pubsub::envelope::{Envelope, DEFAULT_TYPE};
use crate::pubsub::wire::{self, Style};
use crate::pubsub::PubSubError;
use crate::request::{require_body, Req};
use crate::response::{self, Resp};
use crate::state::AppState;

impl From<PubSubError> for ApiError {
    /// The statuses of pub/sub errors: not found 404, not owner 403, subscriber id
    /// taken 409, shutting down 503, store errors as [`ApiError::from_core`].
    fn from(e: PubSubError) -> Self {
        let status = match &e {
            PubSubError::NotFound(_) => StatusCode::NOT_FOUND,
            PubSubError::NotOwner { .. } => StatusCode::FORBIDDEN,
            PubSubError::SubscriberTaken(_) => StatusCode::CONFLICT,
            PubSubError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            PubSubError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            PubSubError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match e {
            PubSubError::Store(core) => ApiError::from_core(core),
            e => ApiError::detail(status, e.to_string()),
        }
    }
}

/// A 200 answer with an object whose keys keep the given order.
fn ordered(pairs: &[(&str, Value)]) -> Resp {
    let mut out = String::new();
    wire::write_object(&mut out, pairs.iter().map(|(k, v)| (*k, v)), Style::Compact);
    response::ok_raw(out.into_bytes())
}

/// A boolean query value as pydantic reads it; 422 `bool_parsing` otherwise.
pub(crate) fn query_bool(name: &str, raw: &str) -> ApiResult<bool> {
    Ok(params::bool_param(name, raw)?)
}

/// The `sub_id` path parameter: 422 `int_parsing` when it is not an integer, 404
/// when it is one no subscription can have.
fn sub_id(req: &Req) -> ApiResult<u64> {
    let id = params::path_int("sub_id", req.param(0))?;
    u64::try_from(id).map_err(|_| PubSubError::NotFound(id.to_string()).into())
}

/// POST `/subscribe/{channel}` (user): query `promisc` (boolean) and
/// `subscriber_id` (durable mode; an empty value counts as absent). Answers
/// `{"id", "channel", "user", "promiscuous"}`.
pub async fn subscribe(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let (caller, _) = state.require_user(req, Operation::Subscribe).await?;
    let promiscuous = match req.query_last("promisc") {
        Some(v) => query_bool("promisc", v)?,
        None => false,
    };
    let subscriber_id = req.query_last("subscriber_id").filter(|s| !s.is_empty());
    let info = state
        .broker()
        .subscribe(req.param(0), &caller.username, promiscuous, subscriber_id)
        .await?;
    Ok(ordered(&[
        ("id", json!(info.id)),
        ("channel", json!(info.channel)),
        ("user", json!(info.user)),
        ("promiscuous", json!(info.promiscuous)),
    ]))
}

/// POST `/unsubscribe/{sub_id}` (owner of the subscription): 200 `null`.
pub async fn unsubscribe(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let (caller, _) = state.require_user(req, Operation::Unsubscribe).await?;
    let id = sub_id(req)?;
    state.broker().unsubscribe(id, &caller.username).await?;
    Ok(response::ok(&Value::Null))
}

/// GET `/listen/{sub_id}` (owner of the subscription): the next message as
/// `{"type":"message","pattern":null,"channel":<ch>,"data":"<CloudEvent JSON>"}`,
/// a keep-alive (`"data": "BEEP"`) when nothing arrives within the keep-alive
/// period.
pub async fn listen(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let (caller, _) = state.require_user(req, Operation::Listen).await?;
    let id = sub_id(req)?;
    let delivery = state
        .broker()
        .listen(id, &caller.username, state.stopping())
        .await?;
    Ok(ordered(&[
        ("type", json!("message")),
        ("pattern", Value::Null),
        ("channel", json!(delivery.channel)),
        ("data", Value::String(delivery.text.to_string())),
    ]))
}

/// Python truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// POST `/publish/{channel}` (user): body `{"data"?, "type"?, "source"?,
/// "attributes"?}`. The event is stored in the event log (channel, owner = caller,
/// data) and broadcast with `type` (default `api.kernelci.org` when missing or
/// empty), `source` (default `CLOUD_EVENTS_SOURCE`), `owner` and the `attributes`
/// not already set. 200 `null`.
pub async fn publish(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    let (caller, _) = state.require_user(req, Operation::Publish).await?;
    let mut f = Fields::body(require_body(body)?)?;
    let data = f.get("data").cloned();
    if let Some(d) = data.as_ref().filter(|d| !truthy(d)) {
        let reason = "None is not allowed as event payload";
        let e = FieldError::value_error(f.loc("data"), reason, d.clone());
        f.error(e.with_ctx(json!({"error": {}})));
    }
    let type_ = f.optional_str("type", usize::MAX);
    let source = f.optional_str("source", usize::MAX);
    let extra = f.optional("attributes", value::object).unwrap_or_default();
    f.finish()?;
    let type_ = type_
        .as_deref()
        .filter(|t| !t.is_empty())
        .unwrap_or(DEFAULT_TYPE);
    let source = source
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(state.broker().source());
    let mut attributes = serde_json::Map::new();
    attributes.insert("type".into(), json!(type_));
    attributes.insert("source".into(), json!(source));
    for (k, v) in extra {
        // `owner` is set (to the caller) like `type` and `source`.
        if k != "owner" && !attributes.contains_key(&k) {
            attributes.insert(k, v);
        }
    }
    let event = NewEvent {
        id: ObjectId::new(),
        timestamp: Timestamp::now().truncate_to_millis(),
        channel: req.param(0).to_owned(),
        owner: Some(caller.username.clone()),
        data: data.unwrap_or(Value::Null),
    };
    state.emit(event, attributes).await?;
    Ok(response::ok(&Value::Null))
}

/// POST `/push/{list}` (user): body a JSON object with `data`; its other keys are
/// CloudEvent attributes. `type` and `source` get their defaults only when there is
/// no other key (otherwise missing ones are `null`, as in the reference). The
/// envelope is appended to the durable queue. 200 `null`.
pub async fn push(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let body = req.json_opt()?;
    state.require_user(req, Operation::Push).await?;
    let value = require_body(body)?;
    if !value.is_object() {
        return Err(FieldError::dict_type(vec!["body".into()], value).into());
    }
    // Read again keeping the key order (the attributes' order in the envelope).
    let mut fields: wire::Fields = wire::parse_fields(&req.body).map_err(ApiError::internal)?;
    let Some(data) = fields.remove("data") else {
        return Err(FieldError::missing(body_loc("data"), value).into());
    };
    let broker = state.broker();
    let envelope = if fields.0.is_empty() {
        Envelope::build(
            Some(broker.source()),
            Some(DEFAULT_TYPE),
            Timestamp::now(),
            data,
            [],
        )
    } else {
        Envelope::build(None, None, Timestamp::now(), data, fields.0)
    };
    broker.push(req.param(0), &envelope).await?;
    Ok(response::ok(&Value::Null))
}

/// GET `/pop/{list}` (user): removes and returns the oldest envelope of the queue
/// as a JSON object; waits while the queue is empty (until an item arrives or the
/// server stops: 503).
pub async fn pop(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state.require_user(req, Operation::Pop).await?;
    let text = state.broker().pop(req.param(0), state.stopping()).await?;
    let fields = wire::parse_fields(text.as_bytes()).map_err(ApiError::internal)?;
    Ok(response::ok_raw(
        fields.to_text(Style::Compact).into_bytes(),
    ))
}

/// GET `/stats/subscriptions` (admin): every subscription (of this process, or of the cluster on a shared store) as
/// `{"id","channel","user","promiscuous","created","last_poll"}` (naive UTC
/// datetimes; `promiscuous` is always `false`, as the reference reports it).
pub async fn subscription_stats(state: &AppState, req: &Req) -> ApiResult<Resp> {
    state
        .require_user(req, Operation::SubscriptionStats)
        .await?;
    let mut out = String::from("[");
    for (i, s) in state
        .broker()
        .subscriptions()
        .await?
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        let pairs = [
            ("id", json!(s.id)),
            ("channel", json!(s.channel)),
            ("user", json!(s.user)),
            ("promiscuous", json!(false)),
            ("created", json!(s.created.to_string())),
            ("last_poll", json!(s.last_poll.map(|t| t.to_string()))),
        ];
        wire::write_object(&mut out, pairs.iter().map(|(k, v)| (*k, v)), Style::Compact);
    }
    out.push(']');
    Ok(response::ok_raw(out.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_as_pydantic_reads_them() {
        for (raw, want) in [
            ("7", Some("7")),
            (" 007 ", Some("7")),
            ("+3", Some("3")),
            ("-0", Some("0")),
            ("-12", Some("-12")),
            ("1_000", Some("1000")),
            ("5.00", Some("5")),
            ("99999999999999999999999", Some("99999999999999999999999")),
            ("abc", None),
            ("", None),
            ("1.5", None),
            ("_1", None),
            ("1__0", None),
            ("0x10", None),
            ("-", None),
        ] {
            let got = params::path_int("sub_id", raw).ok().map(|i| i.to_string());
            assert_eq!(got.as_deref(), want, "{raw:?}");
        }
    }

    #[test]
    fn python_truthiness() {
        for v in [
            json!(null),
            json!(false),
            json!(0),
            json!(0.0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [
            json!(true),
            json!(1),
            json!(-0.5),
            json!("x"),
            json!([0]),
            json!({"a": null}),
        ] {
            assert!(truthy(&v), "{v}");
        }
    }
}
