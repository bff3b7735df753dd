//! The server's public URL: the base of the links it writes (invite links,
//! `/user/invite/url`) and of its redirects.
//!
//! With `PUBLIC_BASE_URL` set ([`HttpConfig::public_base_url`]), that is the base,
//! whatever the request says. Without it:
//! - links are built from the request: the forwarding headers (`Forwarded`'s last
//!   hop, else the last value of `X-Forwarded-Host` / `X-Forwarded-Proto`: what the
//!   proxy itself added) only when the peer is one of
//!   [`HttpConfig::trusted_proxies`], else the request's own `Host`; a host is used
//!   only when it looks like one (`[A-Za-z0-9.:_\[\]-]`, at most 255 bytes) and a
//!   protocol only when it is `http` or `https`;
//! - redirects are relative (`Location: /latest/`): no request header ends up in
//!   them.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

use crate::config::HttpConfig;

/// The configured `PUBLIC_BASE_URL`, without a trailing `/` (`None` when unset or
/// blank).
pub fn configured(config: &HttpConfig) -> Option<&str> {
    config
        .public_base_url
        .as_deref()
        .map(|b| b.trim().trim_end_matches('/'))
        .filter(|b| !b.is_empty())
}

/// The public base URL for links in the answer to a request with `headers` from
/// `peer`, without a trailing `/` (see the module docs).
pub fn base_url(config: &HttpConfig, headers: &HeaderMap, peer: SocketAddr) -> String {
    if let Some(base) = configured(config) {
        return base.to_owned();
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut host: Option<String> = None;
    let mut proto: Option<String> = None;
    if config.trusted_proxies.contains(&peer.ip().to_canonical()) {
        // The last hop: the one the trusted proxy itself added (a client's own
        // `Forwarded` header is passed on in front of it by many proxies).
        if let Some(fwd) = header("forwarded") {
            let last_hop = fwd.rsplit(',').next().unwrap_or("");
            for pair in last_hop.split(';') {
                let Some((k, v)) = pair.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"').to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "host" => host = Some(v),
                    "proto" => proto = Some(v),
                    _ => {}
                }
            }
        }
        let last = |name: &str| {
            header(name)
                .and_then(|v| v.rsplit(',').next())
                .map(|v| v.trim().to_owned())
        };
        host = host.or_else(|| last("x-forwarded-host"));
        proto = proto.or_else(|| last("x-forwarded-proto"));
    }
    let proto = proto
        .map(|p| p.to_ascii_lowercase())
        .filter(|p| p == "http" || p == "https");
    if let Some(h) = host.filter(|h| plausible_host(h)) {
        return format!("{}://{h}", proto.as_deref().unwrap_or("http"));
    }
    let own = header("host")
        .map(str::trim)
        .filter(|h| plausible_host(h))
        .unwrap_or("localhost");
    format!("http://{own}")
}

/// The client's address for logs: the TCP peer, or, when the peer is one of the
/// `trusted_proxies`, the address that proxy forwarded (the last hop of
/// `Forwarded: for=`, else the last value of `X-Forwarded-For`) if it is one.
pub fn client_ip(config: &HttpConfig, headers: &HeaderMap, peer: SocketAddr) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if !config.trusted_proxies.contains(&peer_ip) {
        return peer_ip;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let from_forwarded = header("forwarded").and_then(|fwd| {
        let last_hop = fwd.rsplit(',').next()?;
        last_hop.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim().eq_ignore_ascii_case("for")).then(|| {
                let v = v.trim().trim_matches('"');
                // `[2001:db8::1]:4711`, `192.0.2.1:4711` or a bare address.
                let v = v
                    .strip_prefix('[')
                    .map_or(v, |r| r.split(']').next().unwrap_or(r));
                v.parse::<IpAddr>()
                    .ok()
                    .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
            })?
        })
    });
    let from_xff = || {
        header("x-forwarded-for")
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    };
    from_forwarded
        .or_else(from_xff)
        .map_or(peer_ip, |ip| ip.to_canonical())
}

/// The `Location` of a redirect to `path_and_query` (which starts with `/`):
/// absolute under `PUBLIC_BASE_URL` when it is set, else relative.
pub fn redirect_location(config: &HttpConfig, path_and_query: &str) -> String {
    match configured(config) {
        Some(base) => format!("{base}{path_and_query}"),
        None => path_and_query.to_owned(),
    }
}

fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".:-_[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in list {
            if let Ok(v) = hyper::header::HeaderValue::from_str(v) {
                map.insert(*k, v);
            }
        }
        map
    }

    #[test]
    fn the_client_behind_a_trusted_proxy() {
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
        let mut config = HttpConfig::default();
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 198.51.100.7"),
            ("forwarded", r#"for=192.0.2.1, for="[2001:db8::1]:4711""#),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
        assert_eq!(client_ip(&config, &h, proxy), ip("10.0.0.1"), "not trusted");
        config.trusted_proxies = vec![ip("10.0.0.1")];
        assert_eq!(client_ip(&config, &h, proxy), ip("2001:db8::1"));
        let h = headers(&[("x-forwarded-for", "203.0.113.9, 198.51.100.7")]);
        assert_eq!(client_ip(&config, &h, proxy), ip("198.51.100.7"));
        let h = headers(&[("x-forwarded-for", "not-an-address")]);
        assert_eq!(client_ip(&config, &h, proxy), ip("10.0.0.1"));
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap_or(SocketAddr::from(([10, 0, 0, 1], 1)))
    }

    /// Peers the integration tests cannot be (they connect from loopback).
    #[test]
    fn forwarding_headers_are_believed_from_trusted_proxies_only() {
        let mut config = HttpConfig::for_tests("k");
        config.trusted_proxies = vec!["10.0.0.2".parse().unwrap_or([10, 0, 0, 2].into())];
        let fwd = headers(&[
            ("host", "api.internal:8001"),
            ("forwarded", "for=1.2.3.4;host=api.example.org;proto=https"),
            ("x-forwarded-host", "x.example.org"),
        ]);
        assert_eq!(
            base_url(&config, &fwd, peer("8.8.8.8:5000")),
            "http://api.internal:8001"
        );
        // A private address is not trusted for being private.
        assert_eq!(
            base_url(&config, &fwd, peer("10.0.0.3:5000")),
            "http://api.internal:8001"
        );
        assert_eq!(
            base_url(&config, &fwd, peer("10.0.0.2:5000")),
            "https://api.example.org"
        );
        // A proto that is not http(s) and a host that is not a host are not used.
        let odd = headers(&[
            ("host", "api.internal"),
            ("x-forwarded-host", "evil.example.org/path"),
            ("x-forwarded-proto", "javascript"),
        ]);
        assert_eq!(
            base_url(&config, &odd, peer("10.0.0.2:1")),
            "http://api.internal"
        );
        assert_eq!(
            base_url(&config, &headers(&[]), peer("10.0.0.2:1")),
            "http://localhost"
        );
        config.public_base_url = Some("https://kernelci.example.org/api/".into());
        assert_eq!(
            base_url(&config, &fwd, peer("10.0.0.2:5000")),
            "https://kernelci.example.org/api"
        );
        assert_eq!(
            redirect_location(&config, "/latest/?a=1"),
            "https://kernelci.example.org/api/latest/?a=1"
        );
        config.public_base_url = None;
        assert_eq!(redirect_location(&config, "/latest/"), "/latest/");
    }
}
