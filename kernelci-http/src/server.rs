//! The connection loop: accept, read each request in full (within the size and time
//! limits), rewrite and route its path, run its handler in its own task (a panic
//! becomes a 500, never a dropped connection), log one line, answer.
//!
//! Known limit: requests hyper itself refuses before routing (a malformed request
//! line, invalid URI bytes, oversized headers: 400/431) are answered by hyper with an
//! empty body, not a JSON `detail`; hyper 1.x offers no hook for these.
//!
//! Handler tasks outlive a client that goes away (a write the client gave up on
//! still completes), except the long polls (`/pop`, `/listen`): their task is
//! aborted when the connection closes, so that a client that timed out does not
//! leave behind a waiter that would take the next queue item or message and drop
//! it.
//!
//! Shutdown waits for in-flight requests at most `shutdown_grace_seconds`
//! ([`HttpConfig`](crate::HttpConfig)).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::{ApiError, HttpError};
use crate::handlers;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::routes::{self, Endpoint, Rewritten, RouteMatch};
use crate::state::AppState;

/// Serves the API on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (long polls are woken and answer at once; at most
/// `shutdown_grace_seconds`), stops the background jobs and flushes the store.
///
/// The background jobs of [`crate::jobs`] run while serving when the configuration
/// enables them.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    crate::bootstrap::bootstrap(&state).await?;
    let graceful = GracefulShutdown::new();
    let jobs = crate::jobs::spawn(&state);
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(state.config().max_connections));
    loop {
        // A free connection slot first, then a connection: at the limit, new clients
        // wait in the kernel's backlog.
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a moment.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let st = state.clone();
                let service = service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(handle(st, peer, req).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(state.config().header_timeout_seconds))
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    state.begin_shutdown();
    let grace = state.config().shutdown_grace_seconds;
    if tokio::time::timeout(Duration::from_secs(grace), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace,
            "requests still in progress at the end of the shutdown grace period"
        );
    }
    jobs.stop().await;
    state.store().flush().await?;
    Ok(())
}

async fn handle(state: AppState, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (resp, route) = answer(state, peer, req).await;
    tracing::info!(
        %method,
        route = route.unwrap_or(path.as_str()),
        status = resp.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

async fn answer(
    state: AppState,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> (Resp, Option<&'static str>) {
    let (parts, body) = req.into_parts();
    let (prefix, rest) = match routes::rewrite(parts.uri.path()) {
        Rewritten::Path { prefix, rest } => (prefix, rest),
        Rewritten::UnsupportedVersion(token) => {
            let body = format!("Unsupported API version: {token}");
            let r = response::with_body(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", body);
            return (r, None);
        }
        Rewritten::NotFound => return (not_found(), None),
    };
    let (endpoint, params, pattern) = match routes::route(&parts.method, &rest) {
        RouteMatch::Found(e, p) => {
            let pattern = routes::ROUTES
                .iter()
                .find(|(m, _, ep)| *ep == e && m == parts.method)
                .map(|(_, p, _)| *p);
            (e, p, pattern)
        }
        RouteMatch::MethodNotAllowed(allowed) => {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            let e = ApiError::detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
                .with_header("allow", allow.join(", "));
            return (response::error(e), None);
        }
        RouteMatch::Redirect(to) => return (redirect(&parts, prefix, &to), None),
        RouteMatch::NotFound => return (not_found(), None),
    };
    let limit = state.config().max_body_bytes;
    // A declared length over the limit is refused at once, without waiting for a
    // body that will be refused anyway.
    if usize::try_from(hyper::body::Body::size_hint(&body).lower()).map_or(true, |n| n > limit) {
        return (too_large(limit), pattern);
    }
    let body_timeout = Duration::from_secs(state.config().body_timeout_seconds);
    let body = match tokio::time::timeout(body_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let r = if too_large {
                self::too_large(limit)
            } else {
                response::error(ApiError::bad_request("Could not read the request body"))
            };
            return (r, pattern);
        }
        Err(_) => {
            let e = ApiError::detail(StatusCode::REQUEST_TIMEOUT, "Request body timed out");
            return (response::error(e), pattern);
        }
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        prefix,
        params,
        query,
        headers: parts.headers,
        body,
        peer,
    };
    // Each handler runs in its own task so that a bug that panics answers 500
    // instead of dropping the connection.
    let task = tokio::spawn(handlers::dispatch(state, endpoint, req));
    let _abort = matches!(endpoint, Endpoint::Pop | Endpoint::Listen)
        .then(|| AbortOnDrop(task.abort_handle()));
    let resp = match task.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => response::error(e),
        Err(join) => response::error(ApiError::internal(format!("handler failed: {join}"))),
    };
    (resp, pattern)
}

/// Aborts a task when dropped: the request future of a long poll is dropped when its
/// connection closes (see the module docs).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn too_large(limit: usize) -> Resp {
    response::error(ApiError::detail(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request body larger than {limit} bytes"),
    ))
}

fn not_found() -> Resp {
    response::error(ApiError::not_found("Not Found"))
}

fn redirect(parts: &hyper::http::request::Parts, prefix: &str, to: &str) -> Resp {
    let host = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let mut location = format!("http://{host}{prefix}{to}");
    if let Some(q) = parts.uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
