//! The root, HTML pages, static assets, `/metrics` and `/openapi.json` (API.md §3).
//!
//! `GET /` answers the HTML landing page to browsers (an `Accept` header naming
//! `text/html`) and `{"message": "KernelCI API"}` to everything else, so that
//! kernelci-core's `hello()` (python-requests sends `Accept: */*`) works again
//! (CLIENT.md §2). The web pages are API clients served from assets compiled into
//! the binary (`assets/web/`): an HTML shell per page and its script module. The
//! pages are `/viewer`, `/dashboard`, `/stats`, `/analytics` and `/manage`
//! (docs/spec/PAGES.md).

use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::metrics::SubscriberFigures;
use crate::request::Req;
use crate::response::{self, Resp};
use crate::state::AppState;
use kernelci_core::time::Timestamp;

/// The shared stylesheet (`/static/css/style.css`).
pub const STYLE_CSS: &str = include_str!("../../assets/style.css");
/// The form script of the invite pages (`/static/js/forms.js`).
pub const FORMS_JS: &str = include_str!("../../assets/forms.js");

/// The web pages' stylesheet (`/static/css/web.css`).
pub const WEB_CSS: &str = include_str!("../../assets/web/web.css");
/// What every web page shares (`/static/js/common.js`): the API client, messages.
pub const COMMON_JS: &str = include_str!("../../assets/web/common.js");
/// The viewer page (`/static/js/viewer.js`).
pub const VIEWER_JS: &str = include_str!("../../assets/web/viewer.js");
/// The stats page (`/static/js/stats.js`).
pub const STATS_JS: &str = include_str!("../../assets/web/stats.js");
/// The dashboard page (`/static/js/dashboard.js`).
pub const DASHBOARD_JS: &str = include_str!("../../assets/web/dashboard.js");
/// The analytics page (`/static/js/analytics.js`).
pub const ANALYTICS_JS: &str = include_str!("../../assets/web/analytics.js");
/// The bar charts the stats and analytics pages draw (`/static/js/charts.js`).
pub const CHARTS_JS: &str = include_str!("../../assets/web/charts.js");
/// The result matrices of the viewer and the dashboard (`/static/js/matrix.js`).
pub const MATRIX_JS: &str = include_str!("../../assets/web/matrix.js");
/// The manage page and its login form (`/static/js/manage.js`).
pub const MANAGE_JS: &str = include_str!("../../assets/web/manage.js");

const ICONS: &[(&str, &[u8])] = &[
    ("ok.png", include_bytes!("../../assets/ok.png")),
    ("bad.png", include_bytes!("../../assets/bad.png")),
    ("warning.png", include_bytes!("../../assets/warning.png")),
];

/// Wraps `body` in the common page layout.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/static/css/style.css\">\
         </head><body>\n{body}\n</body></html>\n"
    )
}

fn landing() -> String {
    page(
        "KernelCI API",
        "<h1>KernelCI API</h1>\
         <p class=\"muted\">kernelci-rs: the KernelCI API server.</p>\
         <h2>JSON API</h2><ul>\
         <li><a href=\"/latest/nodes?limit=10\">/latest/nodes</a>: nodes (filters: <code>kind=kbuild&amp;state=done</code>, <code>created__gt=...</code>)</li>\
         <li><a href=\"/latest/count\">/latest/count</a>: number of nodes</li>\
         <li><a href=\"/latest/events?limit=10\">/latest/events</a>: event history</li>\
         <li><a href=\"/latest/openapi.json\">/latest/openapi.json</a>: every endpoint (OpenAPI 3)</li>\
         <li><a href=\"/metrics\">/metrics</a>: counters</li></ul>\
         <h2>Users</h2><ul>\
         <li><a href=\"/user/invite\">Invite a user</a> (administrators)</li>\
         <li><a href=\"/user/accept-invite\">Accept an invitation</a></li></ul>",
    )
}

/// `GET /`.
pub async fn root(_state: &AppState, req: &Req) -> ApiResult<Resp> {
    let wants_html = req
        .header("accept")
        .is_some_and(|a| a.to_ascii_lowercase().contains("text/html"));
    if wants_html {
        Ok(response::html(landing()))
    } else {
        Ok(response::ok(&json!({"message": "KernelCI API"})))
    }
}

/// The modules each page's script imports (besides `common.js`, which all do):
/// preloaded by its HTML, so the browser fetches them with the page's own module
/// instead of one import level after another.
fn imports_of(name: &str) -> &'static [&'static str] {
    match name {
        "viewer" | "dashboard" => &["matrix.js"],
        "stats" | "analytics" => &["charts.js"],
        _ => &[],
    }
}

/// The shell of a web page whose script is `/static/js/{name}.js`: a header, a
/// message area, the main area the script fills.
fn app_page(name: &str) -> String {
    let preload: String = std::iter::once("common.js")
        .chain(imports_of(name).iter().copied())
        .map(|m| format!("<link rel=\"modulepreload\" href=\"/static/js/{m}\">"))
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>KernelCI {name}</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/static/css/style.css\">\
         <link rel=\"stylesheet\" href=\"/static/css/web.css\">{preload}\
         </head><body class=\"app\">\n<nav id=\"nav\"><strong>KernelCI</strong></nav>\
         <div id=\"message\" hidden></div>\
         <main id=\"main\"><noscript>This page needs JavaScript; the same data is in \
         the JSON API under <a href=\"/latest/nodes\">/latest/nodes</a>.</noscript></main>\
         <script type=\"module\" src=\"/static/js/{name}.js\"></script>\n</body></html>\n"
    )
}

/// `/viewer`, `/dashboard`, `/manage`, `/stats`, `/analytics`, with the
/// reference's no-cache headers.
pub async fn html_page(_state: &AppState, req: &Req) -> ApiResult<Resp> {
    const PAGES: [&str; 5] = ["viewer", "dashboard", "stats", "analytics", "manage"];
    let name = req.path.rsplit('/').next().unwrap_or_default();
    match PAGES.iter().find(|p| **p == name) {
        Some(page) => Ok(no_cache(response::html(app_page(page)))),
        // The routes send only these five paths here.
        None => Err(ApiError::not_found("Not Found")),
    }
}

/// Adds the reference's no-cache headers of its pages.
fn no_cache(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    h.insert("expires", HeaderValue::from_static("0"));
    r
}

fn valid_name(name: &str, ext: &str) -> bool {
    name.len() > ext.len() + 1
        && name.ends_with(&format!(".{ext}"))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `GET /icons/{name}`.
pub async fn icon(_state: &AppState, req: &Req) -> ApiResult<Resp> {
    let name = req.param(0);
    if !valid_name(name, "png") {
        return Err(ApiError::bad_request("Invalid icon name"));
    }
    // The reference answers 500 for a missing icon file; a missing file is the
    // client's mistake, so 404.
    let (_, bytes) = ICONS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| ApiError::not_found("File not found"))?;
    Ok(response::with_body(StatusCode::OK, "image/png", *bytes))
}

/// `GET /static/css/{file}` and `GET /static/js/{file}`.
pub async fn static_file(_state: &AppState, req: &Req, ext: &str) -> ApiResult<Resp> {
    let name = req.param(0);
    if !valid_name(name, ext) {
        return Err(ApiError::bad_request("Invalid filename"));
    }
    const JS: &str = "text/javascript; charset=utf-8";
    let (content, ctype, web) = match (ext, name) {
        ("css", "style.css") => (STYLE_CSS, "text/css; charset=utf-8", false),
        ("js", "forms.js") => (FORMS_JS, "application/javascript", false),
        ("css", "web.css") => (WEB_CSS, "text/css; charset=utf-8", true),
        ("js", "common.js") => (COMMON_JS, JS, true),
        ("js", "viewer.js") => (VIEWER_JS, JS, true),
        ("js", "stats.js") => (STATS_JS, JS, true),
        ("js", "dashboard.js") => (DASHBOARD_JS, JS, true),
        ("js", "analytics.js") => (ANALYTICS_JS, JS, true),
        ("js", "charts.js") => (CHARTS_JS, JS, true),
        ("js", "matrix.js") => (MATRIX_JS, JS, true),
        ("js", "manage.js") => (MANAGE_JS, JS, true),
        _ => return Err(ApiError::not_found("File not found")),
    };
    if !web {
        let mut r = response::with_body(StatusCode::OK, ctype, content);
        r.headers_mut().insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        return Ok(r);
    }
    // The web pages' modules import each other by plain URLs, so a browser must
    // never mix two versions after an upgrade: revalidated on every use (no-cache),
    // answered 304 when the browser's copy is this binary's.
    let tag = etag(content);
    let fresh = req
        .header("if-none-match")
        .is_some_and(|h| h.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut r = if fresh {
        response::with_body(StatusCode::NOT_MODIFIED, ctype, "")
    } else {
        response::with_body(StatusCode::OK, ctype, content)
    };
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(hyper::header::ETAG, v);
    }
    Ok(r)
}

/// A strong entity tag of `content` (a hash of the bytes: the assets are
/// compiled in, so it changes exactly when the binary serves other bytes).
fn etag(content: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

/// `GET /metrics`: the reference's counters, then ours (see [`crate::metrics`]).
/// The pub/sub gauges are read now, at a cost that does not grow with the event
/// log: the broker's subscriptions, the newest sequence id, and the durable
/// subscribers' positions (one listing; at most [`crate::metrics::MAX_SUBSCRIBER_SERIES`] get
/// their own series). A store that does not answer leaves them as they were; the
/// scrape still succeeds.
pub async fn metrics(state: &AppState, _req: &Req) -> ApiResult<Resp> {
    let m = state.metrics();
    if let Ok((live, sequence, subscribers)) = pubsub_figures(state).await {
        m.observe_pubsub(live, sequence, &subscribers);
    }
    m.set_leader(state.is_leader());
    m.set_event_streams(
        state
            .event_streams()
            .load(std::sync::atomic::Ordering::Acquire),
    );
    Ok(response::with_body(
        StatusCode::OK,
        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        m.render(),
    ))
}

/// Live subscriptions, the newest sequence id, the durable subscribers' figures.
async fn pubsub_figures(
    state: &AppState,
) -> Result<(u64, u64, Vec<SubscriberFigures>), Box<dyn std::error::Error + Send + Sync>> {
    let live = state.broker().subscriptions().await?.len() as u64;
    let store = state.store();
    let sequence = store.last_event_sequence().await?;
    let now = Timestamp::now().to_chrono();
    let subscribers = store
        .list_subscribers()
        .await?
        .into_iter()
        .map(|s| {
            let since = s.last_poll.unwrap_or(s.created_at).to_chrono();
            SubscriberFigures {
                subscriber_id: s.subscriber_id,
                behind: sequence.saturating_sub(s.last_event_id),
                idle_seconds: (now - since).num_milliseconds().max(0) as f64 / 1000.0,
            }
        })
        .collect();
    Ok((live, sequence, subscribers))
}

/// The `service` of the health answers.
const SERVICE: &str = "KernelCI API";

/// How long `/ready` waits for the store.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /health` (liveness, public): `{"status": "ok", "service": "KernelCI API"}`
/// whenever the process answers HTTP at all; it touches nothing else, so a store
/// that is down does not get the process restarted.
pub async fn health(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    Ok(response::ok(&json!({"status": "ok", "service": SERVICE})))
}

/// `GET /ready` (readiness, public): 200 `{"status": "ready", "service", "leader"}`
/// when the store answers a cheap read (the event log's high-water mark) within 2 s;
/// 503 with a `detail` when it does not, or while the server is shutting down (so
/// that a load balancer stops sending it requests before it goes).
pub async fn ready(state: &AppState, _req: &Req) -> ApiResult<Resp> {
    let unavailable = |detail: String| {
        ApiError::detail(StatusCode::SERVICE_UNAVAILABLE, detail).with_header("retry-after", "1")
    };
    if *state.stopping().borrow() {
        return Err(unavailable("Shutting down".into()));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store().last_event_sequence()).await {
        Ok(Ok(_)) => Ok(response::ok(&json!({
            "status": "ready",
            "service": SERVICE,
            "leader": state.is_leader(),
        }))),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness check: the store failed");
            Err(unavailable("Store unavailable".into()))
        }
        Err(_) => Err(unavailable(format!(
            "Store did not answer within {} s",
            READY_TIMEOUT.as_secs()
        ))),
    }
}

/// `GET /latest/openapi.json`.
pub async fn openapi(_state: &AppState, _req: &Req) -> ApiResult<Resp> {
    Ok(response::ok(&crate::openapi::document()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in source of module `file`.
    fn module(file: &str) -> &'static str {
        match file {
            "common.js" => COMMON_JS,
            "charts.js" => CHARTS_JS,
            "matrix.js" => MATRIX_JS,
            "viewer.js" => VIEWER_JS,
            "dashboard.js" => DASHBOARD_JS,
            "stats.js" => STATS_JS,
            "analytics.js" => ANALYTICS_JS,
            "manage.js" => MANAGE_JS,
            other => panic!("{other} is not a compiled-in module"),
        }
    }

    /// Every module `file` imports, transitively (`from "./x.js"`).
    fn imports(file: &str, out: &mut std::collections::BTreeSet<String>) {
        for part in module(file).split("from \"./").skip(1) {
            let name = part.split('"').next().unwrap_or_default().to_owned();
            if out.insert(name.clone()) {
                imports(&name, out);
            }
        }
    }

    /// Each page's HTML preloads exactly the modules its script needs, so a new
    /// import cannot be left to the slower one-level-at-a-time discovery.
    #[test]
    fn pages_preload_what_their_scripts_import() {
        for page in ["viewer", "dashboard", "stats", "analytics", "manage"] {
            let mut want = std::collections::BTreeSet::new();
            imports(&format!("{page}.js"), &mut want);
            let html = app_page(page);
            let got: std::collections::BTreeSet<String> = html
                .split("<link rel=\"modulepreload\" href=\"/static/js/")
                .skip(1)
                .filter_map(|p| p.split('"').next().map(str::to_owned))
                .collect();
            assert_eq!(got, want, "{page}");
        }
    }
}
