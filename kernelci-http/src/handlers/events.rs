//! `GET /events` (API.md §7): the event history, a plain array in sequence order.
//!
//! With `recursive`, each event whose node still exists carries `"node"`, its current
//! JSON. Events whose `data` is not an object with an `id` are returned without
//! `node` (the reference failed the whole request with a 500).

use serde_json::Value;

use kernelci_core::events::{event_document, EventQuery};
use kernelci_core::id::ObjectId;

use crate::error::ApiResult;
use crate::handlers::nodes::offload;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::state::AppState;

/// `GET /events`.
pub async fn list_events(state: &AppState, req: &Req) -> ApiResult<Resp> {
    let query = EventQuery::parse(&req.query)?;
    let q = query.clone();
    let events = offload(state, move |s| {
        Box::pin(async move { s.find_events(&q).await })
    })
    .await?;
    let mut out = Vec::with_capacity(events.len());
    for e in &events {
        let mut doc = event_document(e);
        if query.recursive {
            let node_id = e
                .data
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| ObjectId::parse(s).ok());
            if let Some(id) = node_id {
                if let (Some(node), Value::Object(m)) =
                    (state.store().get_node(id).await?, &mut doc)
                {
                    m.insert("node".into(), node.value.to_json());
                }
            }
        }
        out.push(doc);
    }
    Ok(response::ok(&Value::Array(out)))
}
