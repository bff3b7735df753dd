//! `GET /events/stream` (API.md §7, ours): the event log as a stream of
//! server-sent events, for the web pages' live updates and any client that
//! wants events as they are appended without a subscription.
//!
//! - **Public**, as `/events`: it shows the same documents, with the same filters
//!   (`channel`, `kind`, `state`, `result`, `op`, `name`, `group`, `owner`,
//!   `node_id`, `path`, exact matches); paging (`limit`, `offset`), `recursive`,
//!   `id`/`ids` and `from` are refused, since a stream has no end to page to.
//! - **Position**: each event is sent as `id: <sequence id>` and `data: <the
//!   /events document>`, the first frame and each keep-alive carry the position
//!   as an `id:` of their own; the stream starts after the `Last-Event-ID` header (a
//!   browser's `EventSource` sends it when it reconnects, so nothing is missed
//!   across a dropped connection), else after `after=<sequence id>`, else at the
//!   current end of the log. Events are read from the log, not from memory: an
//!   event appended through another server sharing the store arrives too.
//! - **Wake-ups**: as a durable listen's ([`crate::pubsub::Broker::wait_for_events`]): this
//!   server's writes, the store's notifications, and a look at the log every
//!   second anyway.
//! - **Bounded**: at most `max_event_streams` streams at once (503 beyond, with
//!   `Retry-After`); each holds one batch of the log and a channel of
//!   [`CHANNEL_FRAMES`] frames, so a client that reads slowly makes its stream
//!   wait, not grow. A comment line every [`KEEP_ALIVE`] keeps proxies from
//!   closing an idle stream and finds clients that went away.
//! - **Shutdown**: every stream ends when the server starts to stop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use kernelci_core::events::{event_document, Event, EventQuery};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::{ApiError, ApiResult};
use crate::request::Req;
use crate::response::{Body, Resp};
use crate::state::AppState;

/// How often an idle stream sends a comment line.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Frames a stream may have written but the client not yet read.
pub const CHANNEL_FRAMES: usize = 16;

/// How many log events a stream reads at once.
const BATCH: usize = 256;

/// How long a browser waits before reconnecting (the `retry:` field).
const RETRY_MS: u64 = 2000;

/// Parameters of `/events` a stream cannot honour.
const REFUSED: [&str; 6] = ["limit", "offset", "recursive", "id", "ids", "from"];

/// A stream's place in the count of open streams; leaves it when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(Arc::clone(count)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where the stream starts: `Last-Event-ID`, else `after=`, else `None` (the end
/// of the log).
fn start_after(req: &Req) -> ApiResult<Option<u64>> {
    let parse = |what: &str, v: &str| {
        v.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "{what} must be an event sequence id (an integer >= 0)"
            ))
        })
    };
    if let Some(v) = req.header("last-event-id").filter(|v| !v.trim().is_empty()) {
        return parse("Last-Event-ID", v).map(Some);
    }
    match req.query.iter().rev().find(|(k, _)| k == "after") {
        Some((_, v)) if !v.is_empty() => parse("after", v).map(Some),
        _ => Ok(None),
    }
}

/// `GET /events/stream`.
pub async fn stream_events(state: &AppState, req: &Req) -> ApiResult<Resp> {
    if let Some((k, _)) = req
        .query
        .iter()
        .find(|(k, _)| REFUSED.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "'{k}' is not available on the event stream (use GET /events)"
        )));
    }
    let pairs: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(k, _)| k != "after")
        .cloned()
        .collect();
    let query = EventQuery::parse(&pairs)?;
    let after = start_after(req)?;
    let Some(slot) = Slot::take(state.event_streams(), state.config().max_event_streams) else {
        return Err(
            ApiError::detail(StatusCode::SERVICE_UNAVAILABLE, "Too many event streams")
                .with_header("retry-after", "5"),
        );
    };
    let position = match after {
        Some(n) => n,
        None => state.store().last_event_sequence().await?,
    };
    let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
    // The position as the browser's last event id from the start: a reconnect
    // before any matching event resumes here, not at the end of the log then.
    let first = format!("retry: {RETRY_MS}\nid: {position}\n\n");
    // Cannot fail: the channel is new and has room.
    let _ = tx.try_send(Bytes::from(first));
    tokio::spawn(pump(state.clone(), query, position, tx, slot));
    let mut r = Response::new(Body::Stream(rx));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx buffers answers unless told not to.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// One event as a server-sent event.
fn frame(event: &Event) -> Bytes {
    let doc = event_document(event);
    // JSON text has no raw line breaks: one `data:` line.
    let text = serde_json::to_string(&doc).unwrap_or_else(|_| "null".into());
    Bytes::from(format!("id: {}\ndata: {text}\n\n", event.sequence_id))
}

/// Sends the log's matching events after `position` to `tx` until the client goes
/// away, the store fails or the server stops.
async fn pump(
    state: AppState,
    query: EventQuery,
    mut position: u64,
    tx: mpsc::Sender<Bytes>,
    _slot: Slot,
) {
    let broker = state.broker();
    let mut local = broker.watch_events();
    let mut stopping = state.stopping();
    let mut quiet_since = Instant::now();
    loop {
        if *stopping.borrow() {
            return;
        }
        local.borrow_and_update();
        // Every channel's events, filtered here (the query checks the channel):
        // the position moves over the others too, so neither a wake-up for
        // another channel's event nor the store's notification of it makes the
        // stream read the same events again.
        let batch = match state.store().events_after(position, None, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "event stream: reading the log failed; stream ended");
                return;
            }
        };
        let full = batch.len() == BATCH;
        for event in batch {
            position = event.sequence_id;
            if query.matches(&event) {
                if !send(&tx, frame(&event), &mut stopping).await {
                    return;
                }
                quiet_since = Instant::now();
            }
        }
        if full {
            continue;
        }
        let keep_alive_at = quiet_since + KEEP_ALIVE;
        let until = keep_alive_at.min(Instant::now() + crate::pubsub::LOG_RECHECK);
        tokio::select! {
            _ = broker.wait_for_events(position, until, &mut local, &mut stopping) => {}
            _ = tx.closed() => return,
        }
        if Instant::now() >= keep_alive_at {
            // With the position: a reconnect resumes after the events passed over.
            let beat = Bytes::from(format!(": keep-alive\nid: {position}\n\n"));
            if !send(&tx, beat, &mut stopping).await {
                return;
            }
            quiet_since = Instant::now();
        }
    }
}

/// Sends `frame`, waiting while the client reads slowly; `false` when the client
/// went away or the server started to stop meanwhile (a client that stopped
/// reading does not hold its stream past the stop).
async fn send(
    tx: &mpsc::Sender<Bytes>,
    frame: Bytes,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = tx.send(frame) => sent.is_ok(),
        _ = crate::state::stopped(stopping) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let count = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&count, 2);
        let b = Slot::take(&count, 2);
        assert!(a.is_some() && b.is_some());
        assert!(Slot::take(&count, 2).is_none());
        drop(a);
        assert!(Slot::take(&count, 2).is_some());
        drop(b);
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
