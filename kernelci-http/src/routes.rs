//! The route table and path handling of API.md §1.1.
//!
//! Paths are first rewritten ([`rewrite`]): `/vN...` other than `/v0` is refused,
//! `/v0/...` is served like `/latest/...`, and a path without a prefix gets
//! `/latest` in front. The remainder (after `/latest` or `/v0`) is matched segment
//! by segment against [`ROUTES`]: `{param}` segments match any one non-empty
//! segment. A path that matches with another method answers 405 with `Allow`; a
//! path that would match with or without its trailing slash answers 307 to that
//! spelling; anything else is 404.

use hyper::Method;
use kernelci_core::auth::Operation;

/// Every endpoint the server answers: core's [`Operation`], which also gives each
/// its access class (AUTH.md §9).
pub type Endpoint = Operation;

/// One route: method, path pattern (relative to `/latest`), endpoint.
pub type Route = (Method, &'static str, Endpoint);

/// The route table. Order matters where patterns overlap: the first match wins
/// (`/user/me` before `/user/{id}`).
pub static ROUTES: &[Route] = &[
    (Method::GET, "/", Endpoint::Root),
    (Method::GET, "/openapi.json", Endpoint::OpenApi),
    (Method::POST, "/user/login", Endpoint::Login),
    (Method::POST, "/user/logout", Endpoint::Logout),
    (Method::POST, "/user/register", Endpoint::Register),
    (Method::GET, "/user/invite", Endpoint::InvitePage),
    (Method::POST, "/user/invite", Endpoint::Invite),
    (Method::GET, "/user/invite/url", Endpoint::InviteUrl),
    (
        Method::GET,
        "/user/accept-invite",
        Endpoint::AcceptInvitePage,
    ),
    (Method::POST, "/user/accept-invite", Endpoint::AcceptInvite),
    (
        Method::POST,
        "/user/forgot-password",
        Endpoint::ForgotPassword,
    ),
    (
        Method::POST,
        "/user/reset-password",
        Endpoint::ResetPassword,
    ),
    (
        Method::POST,
        "/user/update-password",
        Endpoint::UpdatePassword,
    ),
    (Method::GET, "/whoami", Endpoint::Whoami),
    (Method::PATCH, "/user/me", Endpoint::PatchMe),
    (Method::GET, "/user/{id}", Endpoint::GetUser),
    (Method::DELETE, "/user/{id}", Endpoint::DeleteUser),
    (Method::PATCH, "/user/{id}", Endpoint::PatchUser),
    (Method::GET, "/users", Endpoint::ListUsers),
    (Method::GET, "/user-groups", Endpoint::ListGroups),
    (Method::POST, "/user-groups", Endpoint::CreateGroup),
    (Method::GET, "/user-groups/{id}", Endpoint::GetGroup),
    (Method::DELETE, "/user-groups/{id}", Endpoint::DeleteGroup),
    (Method::GET, "/node/{id}", Endpoint::GetNode),
    (Method::PUT, "/node/{id}", Endpoint::ReplaceNode),
    (Method::PATCH, "/node/{id}", Endpoint::PatchNode),
    (Method::POST, "/node", Endpoint::CreateNode),
    (Method::GET, "/nodes", Endpoint::ListNodes),
    (Method::GET, "/nodes/fast", Endpoint::ListNodesFast),
    (Method::PUT, "/nodes/{id}", Endpoint::SubmitHierarchy),
    (Method::GET, "/count", Endpoint::CountNodes),
    (Method::PUT, "/batch/nodeset", Endpoint::BatchNodeset),
    (Method::GET, "/events", Endpoint::ListEvents),
    (Method::GET, "/events/stream", Endpoint::EventStream),
    (Method::POST, "/telemetry", Endpoint::PostTelemetry),
    (Method::GET, "/telemetry", Endpoint::GetTelemetry),
    (Method::GET, "/telemetry/stats", Endpoint::TelemetryStats),
    (
        Method::GET,
        "/telemetry/anomalies",
        Endpoint::TelemetryAnomalies,
    ),
    (Method::GET, "/kv/{ns}/{key}", Endpoint::KvGet),
    (Method::POST, "/kv/{ns}/{key}", Endpoint::KvSet),
    (Method::DELETE, "/kv/{ns}/{key}", Endpoint::KvDelete),
    (Method::POST, "/subscribe/{channel}", Endpoint::Subscribe),
    (Method::POST, "/unsubscribe/{id}", Endpoint::Unsubscribe),
    (Method::GET, "/listen/{id}", Endpoint::Listen),
    (Method::POST, "/publish/{channel}", Endpoint::Publish),
    (Method::POST, "/push/{list}", Endpoint::Push),
    (Method::GET, "/pop/{list}", Endpoint::Pop),
    (
        Method::GET,
        "/stats/subscriptions",
        Endpoint::SubscriptionStats,
    ),
    (Method::GET, "/metrics", Endpoint::Metrics),
    (Method::GET, "/health", Endpoint::Health),
    (Method::GET, "/ready", Endpoint::Ready),
    (Method::GET, "/backup/{section}", Endpoint::Backup),
    (Method::GET, "/viewer", Endpoint::HtmlPage),
    (Method::GET, "/dashboard", Endpoint::HtmlPage),
    (Method::GET, "/manage", Endpoint::HtmlPage),
    (Method::GET, "/stats", Endpoint::HtmlPage),
    (Method::GET, "/analytics", Endpoint::HtmlPage),
    (Method::GET, "/icons/{name}", Endpoint::Icon),
    (Method::GET, "/static/css/{file}", Endpoint::StaticCss),
    (Method::GET, "/static/js/{file}", Endpoint::StaticJs),
];

/// The outcome of the path rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// The path relative to the version prefix (starts with `/`), and the prefix
    /// (`/latest` or `/v0`) it is served under.
    Path {
        /// `/latest` or `/v0`.
        prefix: &'static str,
        /// The rest, e.g. `/nodes` (may be empty for `/latest` itself).
        rest: String,
    },
    /// `/vN` with N other than 0: 400 `Unsupported API version: <token>`.
    UnsupportedVersion(String),
    /// Not under a prefix after all (e.g. `/latestfoo`): 404.
    NotFound,
}

/// Applies the prefix rules of API.md §1.1 to a request path.
pub fn rewrite(path: &str) -> Rewritten {
    if let Some(after) = path.strip_prefix("/v") {
        let token_len = after
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(after.len());
        if token_len > 0 {
            let token = &path[1..2 + token_len];
            if token != "v0" {
                return Rewritten::UnsupportedVersion(token.to_owned());
            }
            return split_prefix("/v0", &path[3..]);
        }
    }
    if let Some(rest) = path.strip_prefix("/latest") {
        return split_prefix("/latest", rest);
    }
    Rewritten::Path {
        prefix: "/latest",
        rest: path.to_owned(),
    }
}

fn split_prefix(prefix: &'static str, rest: &str) -> Rewritten {
    if rest.is_empty() || rest.starts_with('/') {
        Rewritten::Path {
            prefix,
            rest: rest.to_owned(),
        }
    } else {
        Rewritten::NotFound
    }
}

/// What the router decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// Serve `endpoint` with these path parameters (percent-decoded, in order).
    Found(Endpoint, Vec<String>),
    /// The path exists with other methods (for the `Allow` header).
    MethodNotAllowed(Vec<Method>),
    /// The other trailing-slash spelling exists: redirect to this path (relative to
    /// the prefix).
    Redirect(String),
    /// Nothing.
    NotFound,
}

/// Whether `path` has `pattern`'s segments (a `{param}` segment matching any one
/// non-empty segment). Allocates nothing: most routes are tried and refused.
fn matches(pattern: &str, path: &str) -> bool {
    // The literal part before the first parameter is a prefix of every path the
    // pattern matches: one comparison turns most routes away.
    let literal = pattern.find('{').map_or(pattern, |at| &pattern[..at]);
    if !path.starts_with(literal) {
        return false;
    }
    let mut p = pattern.split('/');
    let mut s = path.split('/');
    loop {
        match (p.next(), s.next()) {
            (None, None) => return true,
            (Some(ps), Some(ss)) => {
                let fits = if ps.starts_with('{') {
                    !ss.is_empty()
                } else {
                    ps == ss
                };
                if !fits {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The percent-decoded segments of `path` at `pattern`'s `{param}` places (for a
/// path that [`matches`] it).
fn params(pattern: &str, path: &str) -> Vec<String> {
    pattern
        .split('/')
        .zip(path.split('/'))
        .filter(|(ps, _)| ps.starts_with('{'))
        .map(|(_, ss)| percent_decode(ss))
        .collect()
}

/// Decodes `%XX` escapes (invalid escapes stay as they are; invalid UTF-8 is
/// replaced).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = hex {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn lookup(method: &Method, path: &str) -> Option<RouteMatch> {
    if let Some((_, pattern, endpoint)) = ROUTES
        .iter()
        .find(|(m, pattern, _)| m == method && matches(pattern, path))
    {
        return Some(RouteMatch::Found(*endpoint, params(pattern, path)));
    }
    let mut allowed = Vec::new();
    for (m, pattern, _) in ROUTES {
        if matches(pattern, path) && !allowed.contains(m) {
            allowed.push(m.clone());
        }
    }
    (!allowed.is_empty()).then_some(RouteMatch::MethodNotAllowed(allowed))
}

/// Routes `path` (relative to the prefix) for `method`.
pub fn route(method: &Method, path: &str) -> RouteMatch {
    if let Some(m) = lookup(method, path) {
        return m;
    }
    let other = if path.is_empty() {
        "/".to_owned()
    } else if path.len() > 1 && path.ends_with('/') {
        path.trim_end_matches('/').to_owned()
    } else {
        format!("{path}/")
    };
    if other != path && lookup(method, &other).is_some() {
        return RouteMatch::Redirect(other);
    }
    RouteMatch::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_prefixes() {
        let p = |prefix, rest: &str| Rewritten::Path {
            prefix,
            rest: rest.to_owned(),
        };
        assert_eq!(rewrite("/nodes"), p("/latest", "/nodes"));
        assert_eq!(rewrite("/"), p("/latest", "/"));
        assert_eq!(rewrite("/latest/nodes"), p("/latest", "/nodes"));
        assert_eq!(rewrite("/latest"), p("/latest", ""));
        assert_eq!(rewrite("/v0/nodes"), p("/v0", "/nodes"));
        assert_eq!(rewrite("/viewer"), p("/latest", "/viewer"));
        assert_eq!(rewrite("/latestfoo"), Rewritten::NotFound);
        assert_eq!(
            rewrite("/v1/nodes"),
            Rewritten::UnsupportedVersion("v1".into())
        );
        assert_eq!(
            rewrite("/v1.2/x"),
            Rewritten::UnsupportedVersion("v1.2".into())
        );
        assert_eq!(rewrite("/v0x"), Rewritten::NotFound);
    }

    #[test]
    fn routes_methods_and_slashes() {
        assert_eq!(
            route(&Method::GET, "/node/abc"),
            RouteMatch::Found(Endpoint::GetNode, vec!["abc".into()])
        );
        assert_eq!(
            route(&Method::PATCH, "/user/me"),
            RouteMatch::Found(Endpoint::PatchMe, vec![])
        );
        assert!(matches!(
            route(&Method::POST, "/user/verify"),
            RouteMatch::MethodNotAllowed(_)
        ));
        assert_eq!(
            route(&Method::GET, "/nodes/"),
            RouteMatch::Redirect("/nodes".into())
        );
        assert_eq!(route(&Method::GET, ""), RouteMatch::Redirect("/".into()));
        assert_eq!(route(&Method::GET, "/group/1"), RouteMatch::NotFound);
        assert_eq!(
            route(&Method::GET, "/kv/a%3Ab/c"),
            RouteMatch::Found(Endpoint::KvGet, vec!["a:b".into(), "c".into()])
        );
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("a%zz"), "a%zz");
    }

    /// Every route is reached by a path of its own shape, with its parameters
    /// decoded in order; one segment more or one parameter empty is no match.
    #[test]
    fn every_route_is_reachable() {
        for (method, pattern, endpoint) in ROUTES {
            let mut n = 0;
            let path: Vec<String> = pattern
                .split('/')
                .map(|seg| {
                    if seg.starts_with('{') {
                        n += 1;
                        format!("p{n}%41")
                    } else {
                        seg.to_owned()
                    }
                })
                .collect();
            let want: Vec<String> = (1..=n).map(|i| format!("p{i}A")).collect();
            assert_eq!(
                route(method, &path.join("/")),
                RouteMatch::Found(*endpoint, want),
                "{method} {pattern}"
            );
            assert!(!matches(pattern, &format!("{}/more", path.join("/"))));
            if n > 0 {
                let empty: Vec<&str> = pattern
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { "" } else { seg })
                    .collect();
                assert!(!matches(pattern, &empty.join("/")), "{pattern}");
            }
        }
    }
}
