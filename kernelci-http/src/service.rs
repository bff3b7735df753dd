//! The API as a [`tower::Service`]: what [`crate::serve`] runs on each connection,
//! and what an embedder mounts in a server of its own.
//!
//! [`ApiService`] is the bare API: it reads each request's body within the size
//! limit and the minimum transfer rate, rewrites and routes the path, runs the
//! handler (a panic becomes a 500, never a dropped connection), logs one line and
//! answers. [`api`] wraps it in the middleware [`crate::serve`] uses:
//! a request id (`x-request-id`, kept when the client sends one), gzip/deflate
//! compression of answers of at least [`COMPRESS_MIN_BYTES`] for clients that ask
//! for it (`Accept-Encoding`), a JSON 500 for a panic outside the handlers, and,
//! when configured ([`cors`]), CORS for browser pages of other origins.
//!
//! The client's address comes from the [`PeerAddr`] request extension (an embedder
//! inserts it; without it the peer is taken as `0.0.0.0:0`, a global address, so
//! that no forwarding header is believed).
//!
//! A write runs in a task of its own, which outlives a client that goes away (a
//! write the client gave up on still completes). Reads and the long polls (`/pop`,
//! `/listen`) run on the connection's task and stop when the request future is
//! dropped: a read nobody waits for is not worth finishing, and a client that
//! timed out does not leave behind a waiter that would take the next queue item or
//! message and drop it.
//!
//! Known limit: requests hyper itself refuses before routing (a malformed request
//! line, invalid URI bytes, oversized headers: 400/431) are answered by hyper with an
//! empty body, not a JSON `detail`; hyper 1.x offers no hook for these.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, LOCATION};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::util::Either;
use tower::ServiceBuilder;
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer, ResponseForPanic};
use tower_http::compression::predicate::{And, NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{Compression, CompressionLayer};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestId, PropagateRequestIdLayer, RequestId, SetRequestId,
    SetRequestIdLayer,
};

use kernelci_core::validation::value::too_long;
use kernelci_core::validation::FieldError;

use crate::error::{ApiError, ApiResult};
use crate::handlers;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::routes::{self, Endpoint, Rewritten, RouteMatch};
use crate::state::AppState;

/// Answers smaller than this are sent as they are (compressing them saves less than
/// it costs).
pub const COMPRESS_MIN_BYTES: u64 = 1024;

/// The request header that carries a request's id (set when the client sends none,
/// and copied to the answer).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The client's address, as a request extension: [`crate::serve`] inserts the TCP
/// peer; an embedder inserts what it knows (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The bare API (no middleware) as a [`tower::Service`] over any request body.
#[derive(Clone)]
pub struct ApiService {
    state: AppState,
    limits: Limits,
}

/// What all requests share.
#[derive(Clone)]
struct Limits {
    /// The bytes of request bodies held at once, in KiB (see [`read_body`]).
    bodies: Arc<Semaphore>,
    /// One permit per handler running (`max_inflight_requests`).
    handlers: Arc<Semaphore>,
}

impl ApiService {
    /// The API over `state`.
    pub fn new(state: AppState) -> Self {
        let kib = (state.config().max_inflight_body_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        let handlers = state
            .config()
            .max_inflight_requests
            .clamp(1, Semaphore::MAX_PERMITS);
        ApiService {
            state,
            limits: Limits {
                bodies: Arc::new(Semaphore::new(kib)),
                handlers: Arc::new(Semaphore::new(handlers)),
            },
        }
    }
}

impl std::fmt::Debug for ApiService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiService").finish_non_exhaustive()
    }
}

impl<B> tower::Service<Request<B>> for ApiService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = Resp;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let state = self.state.clone();
        let limits = self.limits.clone();
        Box::pin(async move { Ok(handle(state, limits, req).await) })
    }
}

/// The id [`api`] gives a request that came without one: a random (version 4)
/// UUID, written into the header without the formatting machinery (tower-http's
/// `MakeRequestUuid` formats it through `Display` and parses the text back).
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let id = uuid::Uuid::new_v4().hyphenated();
        let value = HeaderValue::from_bytes(id.encode_lower(&mut text).as_bytes()).ok()?;
        Some(RequestId::new(value))
    }
}

/// When [`api`] compresses an answer: at least [`COMPRESS_MIN_BYTES`], and not an
/// event stream.
pub type Compressible = And<SizeAbove, NotForContentType>;

/// What answers a panic that escapes [`ApiService`] (it catches the handlers'
/// own, so only the routing and body code could panic here): a JSON 500, the
/// cause logged, not sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicAnswer;

impl ResponseForPanic for PanicAnswer {
    type ResponseBody = response::Body;

    fn response_for_panic(&mut self, cause: Box<dyn std::any::Any + Send + 'static>) -> Resp {
        let what = panic_text(cause.as_ref());
        response::error(ApiError::internal(format!("panic: {what}")))
    }
}

/// A panic's message (empty when it is neither a `&str` nor a `String`).
fn panic_text(cause: &(dyn std::any::Any + Send)) -> String {
    cause
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The service [`api`] builds (outermost first): request id, its echo in the
/// answer, compression, a panic as a JSON 500, the API.
pub type Api = SetRequestId<
    PropagateRequestId<
        Compression<CatchPanic<Either<Cors<ApiService>, ApiService>, PanicAnswer>, Compressible>,
    >,
    NewRequestId,
>;

/// The CORS rules of `config.cors_origins` (`None`: CORS off, the default): the
/// listed origins (or any, for `*`) may call every endpoint from a browser with a
/// bearer token (no cookies are involved, so no credentials mode); `x-request-id` is
/// readable by the page; preflights are cached 10 minutes.
pub fn cors(config: &crate::HttpConfig) -> Option<CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins = if config.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            config
                .cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([
                hyper::Method::GET,
                hyper::Method::POST,
                hyper::Method::PUT,
                hyper::Method::PATCH,
                hyper::Method::DELETE,
            ])
            .allow_headers([hyper::header::AUTHORIZATION, hyper::header::CONTENT_TYPE])
            .expose_headers([hyper::header::HeaderName::from_static(REQUEST_ID_HEADER)])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// The API with the middleware [`crate::serve`] runs: request ids and response
/// compression around [`ApiService`] (see the module docs). Mount it in a hyper
/// server with `hyper_util::service::TowerToHyperService`, inserting a [`PeerAddr`]
/// into each request.
pub fn api(state: AppState) -> Api {
    let header = hyper::header::HeaderName::from_static(REQUEST_ID_HEADER);
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(header.clone(), NewRequestId))
        .layer(PropagateRequestIdLayer::new(header))
        .layer(
            CompressionLayer::new()
                .gzip(true)
                .deflate(true)
                .compress_when(
                    SizeAbove::new(COMPRESS_MIN_BYTES)
                        .and(NotForContentType::const_new("text/event-stream")),
                ),
        )
        .layer(CatchPanicLayer::custom(PanicAnswer))
        .option_layer(cors(state.config()))
        .service(ApiService::new(state))
}

async fn handle<B>(state: AppState, limits: Limits, req: Request<B>) -> Resp
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let client = req
        .extensions()
        .get::<PeerAddr>()
        .map(|p| crate::public_url::client_ip(state.config(), req.headers(), p.0));
    let in_flight = state.metrics().request_started();
    let metrics_state = state.clone();
    let (resp, route) = answer(state, limits, req).await;
    drop(in_flight);
    let took = started.elapsed();
    metrics_state.metrics().observe_request(
        method.as_str(),
        route.unwrap_or("unmatched"),
        resp.status().as_u16(),
        took,
    );
    tracing::info!(
        %method,
        client = client.map(|c| c.to_string()).unwrap_or_default(),
        route = route.unwrap_or(path.as_str()),
        status = resp.status().as_u16(),
        latency_us = took.as_micros() as u64,
        request_id,
        "request"
    );
    resp
}

async fn answer<B>(state: AppState, limits: Limits, req: Request<B>) -> (Resp, Option<&'static str>)
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |p| p.0);
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
        RouteMatch::Redirect(to) => return (redirect(state.config(), &parts, prefix, &to), None),
        RouteMatch::NotFound => return (not_found(), None),
    };
    if let Some(r) = overlong_param(pattern.unwrap_or(""), &params) {
        return (r, pattern);
    }
    // The body's share of the budget is held until the handler is done with it.
    let (body, _held) = match read_body(&state, &limits.bodies, body).await {
        Ok(b) => b,
        Err(r) => return (r, pattern),
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
    // The task holds its permit until it ends, also when the client went away:
    // so handlers left running cannot pile up.
    let Ok(permit) = Arc::clone(&limits.handlers).try_acquire_owned() else {
        let e = ApiError::detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server busy: too many requests in progress",
        )
        .with_header("retry-after", "1");
        return (response::error(e), pattern);
    };
    // A request that only reads (and the long polls) stops when its client goes
    // away; a write runs to its end (stopping it between two store operations
    // could lose the event of a node already written).
    let inline =
        req.method == hyper::Method::GET || matches!(endpoint, Endpoint::Pop | Endpoint::Listen);
    let handler = async move {
        let answer = handlers::dispatch(state, endpoint, req).await;
        drop(permit);
        answer
    };
    let answer = run_handler(inline, handler).await;
    let resp = match answer {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => response::error(e),
        Err(why) => response::error(ApiError::internal(format!("handler failed: {why}"))),
    };
    (resp, pattern)
}

/// Runs a handler to its answer, or to the text of its panic. `inline`: on the
/// calling task, so that dropping the request future stops it; a task of its own
/// would cost a hand-off to whichever worker thread picks it up and a wake-up back
/// (about 0.1 ms, more than most reads take). Otherwise in a task of its own, which
/// runs to its end when the caller goes away.
async fn run_handler<F>(inline: bool, handler: F) -> Result<ApiResult<Resp>, String>
where
    F: Future<Output = ApiResult<Resp>> + Send + 'static,
{
    if inline {
        AssertUnwindSafe(handler)
            .catch_unwind()
            .await
            .map_err(|cause| format!("panic: {}", panic_text(cause.as_ref())))
    } else {
        tokio::spawn(handler).await.map_err(|join| join.to_string())
    }
}

/// Reads the whole body within `max_body_bytes` and the transfer-rate rule: the body
/// must be complete `body_timeout_seconds` after the request started plus one second
/// for every `body_min_rate` bytes received, and within `body_max_seconds` in any
/// case ([`crate::HttpConfig`]). So a client that stalls, or trickles, is cut off
/// whatever length it announced, and a large upload at any reasonable speed is not.
/// The bytes received count against `max_inflight_body_bytes`, shared by every
/// request (`bodies`, in KiB): past it the request gets 503, so the bodies held at
/// once never exceed it however many clients send them. A refusal closes the
/// connection (the rest of the body is never read).
async fn read_body<B>(
    state: &AppState,
    bodies: &Arc<Semaphore>,
    body: B,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Resp>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let config = state.config();
    let limit = config.max_body_bytes;
    // A declared length over the limit is refused at once, without waiting for a
    // body that will be refused anyway.
    if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > limit) {
        return Err(closing(too_large(limit)));
    }
    let started = tokio::time::Instant::now();
    let grace = Duration::from_secs(config.body_timeout_seconds);
    let cap = started + Duration::from_secs(config.body_max_seconds);
    let rate = config.body_min_rate.max(1) as f64;
    let mut body = std::pin::pin!(Limited::new(body, limit));
    let mut received = BytesMut::new();
    let mut held: Option<OwnedSemaphorePermit> = None;
    loop {
        let earned = Duration::from_secs_f64(received.len() as f64 / rate);
        let deadline = (started + grace + earned).min(cap);
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                let e = ApiError::detail(StatusCode::REQUEST_TIMEOUT, "Request body timed out");
                return Err(closing(response::error(e)));
            }
            Ok(None) => return Ok((received.freeze(), held)),
            Ok(Some(Ok(frame))) => {
                if let Ok(mut data) = frame.into_data() {
                    while bytes::Buf::has_remaining(&data) {
                        let chunk = bytes::Buf::chunk(&data);
                        let n = chunk.len();
                        received.extend_from_slice(chunk);
                        bytes::Buf::advance(&mut data, n);
                    }
                }
                // Whole KiB received so far, against those already held.
                let want = received.len().div_ceil(1024);
                let have = held.as_ref().map_or(0, |p| p.num_permits());
                if want > have {
                    let more = u32::try_from(want - have).unwrap_or(u32::MAX);
                    match Arc::clone(bodies).try_acquire_many_owned(more) {
                        Ok(p) => match held.as_mut() {
                            Some(h) => h.merge(p),
                            None => held = Some(p),
                        },
                        Err(_) => {
                            let e = ApiError::detail(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "Server busy: too many request bodies in progress",
                            )
                            .with_header("retry-after", "1");
                            return Err(closing(response::error(e)));
                        }
                    }
                }
            }
            Ok(Some(Err(e))) => {
                let r = if e
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    too_large(limit)
                } else {
                    response::error(ApiError::bad_request("Could not read the request body"))
                };
                return Err(closing(r));
            }
        }
    }
}

/// The longest path parameter accepted (a channel, queue, KV namespace or key...),
/// in characters.
pub const MAX_PATH_PARAM_CHARS: usize = 1024;

/// 422 `string_too_long` (loc `["path", <name>]`) for the first parameter of
/// `params` longer than [`MAX_PATH_PARAM_CHARS`]; the names come from `pattern`
/// (`/kv/{ns}/{key}`). Checked before authentication.
fn overlong_param(pattern: &str, params: &[String]) -> Option<Resp> {
    let names = pattern
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'));
    for (name, value) in names.zip(params) {
        let max = MAX_PATH_PARAM_CHARS;
        if too_long(value, max) {
            return Some(response::error(ApiError::invalid(
                FieldError::string_too_long(
                    vec!["path".into(), name.into()],
                    serde_json::Value::String(value.clone()),
                    max,
                ),
            )));
        }
    }
    None
}

/// Asks hyper to close the connection after `r` (its request body is left unread).
fn closing(mut r: Resp) -> Resp {
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
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

fn redirect(
    config: &crate::HttpConfig,
    parts: &hyper::http::request::Parts,
    prefix: &str,
    to: &str,
) -> Resp {
    let mut target = format!("{prefix}{to}");
    if let Some(q) = parts.uri.query() {
        target.push('?');
        target.push_str(q);
    }
    let location = crate::public_url::redirect_location(config, &target);
    let mut r = Response::new(response::Body::empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn a_handler_that_panics_gives_its_message_inline_or_in_a_task() {
        for inline in [true, false] {
            let panicking = async {
                if true {
                    panic!("handler bug");
                }
                Ok(Response::new(response::Body::empty()))
            };
            let got = run_handler(inline, panicking).await;
            let why = got.err().unwrap_or_default();
            assert!(why.contains("handler bug"), "{inline}: {why}");
        }
    }

    /// An inline handler stops when its request future is dropped; a handler in a
    /// task of its own runs to its end.
    #[tokio::test]
    async fn an_inline_handler_stops_with_its_caller() {
        use std::sync::atomic::{AtomicBool, Ordering};
        for inline in [true, false] {
            let done = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&done);
            let (started_tx, started) = tokio::sync::oneshot::channel();
            let handler = async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_millis(50)).await;
                flag.store(true, Ordering::SeqCst);
                Ok(Response::new(response::Body::empty()))
            };
            let caller = tokio::spawn(run_handler(inline, handler));
            let _ = started.await;
            caller.abort();
            let _ = caller.await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(done.load(Ordering::SeqCst), !inline, "inline: {inline}");
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_service_is_a_json_500() {
        let panicking = tower::service_fn(|_: Request<Full<Bytes>>| async {
            if true {
                panic!("routing bug");
            }
            Ok::<Resp, Infallible>(Response::new(response::Body::empty()))
        });
        let svc = ServiceBuilder::new()
            .layer(CatchPanicLayer::custom(PanicAnswer))
            .service(panicking);
        let req = Request::new(Full::new(Bytes::new()));
        let Ok(r) = tower::ServiceExt::oneshot(svc, req).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = r
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        assert_eq!(
            &body[..],
            br#"{"detail":"Internal server error, check the server logs"}"#
        );
    }
}
