//! The server's settings (API.md §11), one struct with the reference's defaults.
//!
//! The binary fills it from the command line, the environment and a TOML file; the
//! library only reads it. Durations are in seconds, as the reference's variables.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the connection to the SMTP server is protected (`SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, which the server must offer:
    /// nothing (credentials, mail) is ever sent in clear text (ports 587 and 25).
    Starttls,
    /// TLS from the first byte ("SMTPS", port 465).
    Tls,
    /// No TLS at all: only for a trusted relay on the same host or pod.
    None,
}

impl SmtpTls {
    /// The reference's choice for a port: implicit TLS on 465, STARTTLS otherwise.
    pub fn for_port(port: u16) -> Self {
        if port == 465 {
            SmtpTls::Tls
        } else {
            SmtpTls::Starttls
        }
    }

    /// The setting's value (`starttls`, `tls`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }
}

impl std::str::FromStr for SmtpTls {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Ok(SmtpTls::Starttls),
            "tls" | "implicit" | "smtps" => Ok(SmtpTls::Tls),
            "none" | "plain" => Ok(SmtpTls::None),
            other => Err(format!("{other:?}: use starttls, tls or none")),
        }
    }
}

/// SMTP settings (`SMTP_HOST`, `SMTP_PORT`, `EMAIL_SENDER`, `EMAIL_PASSWORD`, and
/// ours: `SMTP_TLS`, `SMTP_CA_FILE`, `SMTP_TIMEOUT_SECONDS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpConfig {
    /// Server host name (also the name its certificate must carry).
    pub host: String,
    /// Port (465 implicit TLS, 587 submission with STARTTLS, 25 relay).
    pub port: u16,
    /// The From address (and the login user).
    pub sender: String,
    /// The login password (empty: no login).
    pub password: String,
    /// How the connection is protected ([`SmtpTls::for_port`] by default, as the
    /// reference: TLS on 465, STARTTLS otherwise).
    pub tls: SmtpTls,
    /// A PEM file of certificates trusted in addition to the system's roots (a
    /// private CA, or a relay's self-signed certificate). The server's certificate
    /// and name are always verified.
    pub ca_file: Option<std::path::PathBuf>,
    /// Time allowed for one whole delivery (connecting, the handshake, every
    /// command and the message), in seconds.
    pub timeout_seconds: u64,
}

impl SmtpConfig {
    /// A configuration with the defaults for `host:port` (TLS mode from the port,
    /// no extra CA, 30 s timeout).
    pub fn new(host: &str, port: u16, sender: &str, password: &str) -> Self {
        SmtpConfig {
            host: host.to_owned(),
            port,
            sender: sender.to_owned(),
            password: password.to_owned(),
            tls: SmtpTls::for_port(port),
            ca_file: None,
            timeout_seconds: 30,
        }
    }
}

/// The first administrator, created at start-up when no user has its username
/// (AUTH.md §8). The binary fills it from `KCI_INITIAL_PASSWORD` (required to
/// enable it), `KCI_INITIAL_ADMIN_USERNAME` (default `admin`) and
/// `KCI_INITIAL_ADMIN_EMAIL` (default `<username>@kernelci.org`).
///
/// The account is active, verified and a superuser, with an Argon2id hash of
/// `password`. An existing user of that name is never changed, so the setting can
/// stay in place across restarts.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitialAdmin {
    /// Username of the administrator.
    pub username: String,
    /// Its e-mail address (must be valid and not used by another user).
    pub email: String,
    /// Its initial password (must not be empty).
    pub password: String,
}

impl std::fmt::Debug for InitialAdmin {
    /// Everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitialAdmin")
            .field("username", &self.username)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// Argon2id cost parameters for new password hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordCost {
    /// Memory in KiB (reference: 65536).
    pub memory_kib: u32,
    /// Iterations (reference: 3).
    pub iterations: u32,
    /// Lanes (reference: 4).
    pub parallelism: u32,
}

impl PasswordCost {
    /// argon2-cffi's defaults, as the reference writes them.
    pub const REFERENCE: PasswordCost = PasswordCost {
        memory_kib: 65536,
        iterations: 3,
        parallelism: 4,
    };

    /// A cheap setting for tests (never for production data).
    pub const TESTING: PasswordCost = PasswordCost {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
}

/// Every setting of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpConfig {
    /// `SECRET_KEY`: signs access, invite and reset tokens. Required (non-empty).
    pub secret_key: String,
    /// `UNIFIED_SECRET`: a second key accepted when verifying access tokens.
    pub unified_secret: String,
    /// `ALGORITHM`: `HS256`, `HS384` or `HS512`.
    pub algorithm: String,
    /// `ACCESS_TOKEN_EXPIRE_SECONDS` (0: tokens without `exp`).
    pub access_token_expire_seconds: u64,
    /// `INVITE_TOKEN_EXPIRE_SECONDS`.
    pub invite_token_expire_seconds: u64,
    /// `PUBLIC_BASE_URL`: base of invite links (else derived from the request).
    pub public_base_url: Option<String>,
    /// `KEEP_ALIVE_PERIOD`: seconds between BEEP keep-alives (< 60; 0: none).
    pub keep_alive_period: u64,
    /// `CLOUD_EVENTS_SOURCE`.
    pub cloud_events_source: String,
    /// `EVENT_HISTORY_TTL_SECONDS`: events older than this are trimmed.
    pub event_history_ttl_seconds: u64,
    /// `TELEMETRY_TTL_SECONDS`: telemetry older than this is trimmed.
    pub telemetry_ttl_seconds: u64,
    /// `NODE_PURGE_AGE_DAYS`: nodes (but checkouts) older than this are purged
    /// (default 180, as the reference); `None` turns the purge off.
    pub node_purge_age_days: Option<u64>,
    /// Idle subscriptions (last poll older than this) are dropped.
    pub subscription_idle_seconds: u64,
    /// Period of the housekeeping jobs (subscription clean-up, trims, purge).
    pub housekeeping_period_seconds: u64,
    /// Period of the time-driven state machine (timeouts, holdoff, closing).
    pub state_period_seconds: u64,
    /// Runs the background jobs at all (tests switch them off).
    pub background_jobs: bool,
    /// E-mail settings; `None`: nothing is sent (flows report `email_sent: false`).
    pub smtp: Option<SmtpConfig>,
    /// Largest accepted request body (bytes); larger bodies get 413.
    pub max_body_bytes: usize,
    /// Largest node, as JSON (bytes): a write that would store a larger one gets
    /// 413 (default 16 MiB, MongoDB's document limit).
    #[serde(default = "default_max_node_bytes")]
    pub max_node_bytes: usize,
    /// Time allowed to receive a request's headers, counted on a kept-alive
    /// connection from the end of the previous answer: so also the time an idle
    /// connection stays open.
    pub header_timeout_seconds: u64,
    /// Time allowed to receive a request's body, plus one second for every
    /// `body_min_rate` bytes received (a body that trickles in slower is cut off
    /// with 408).
    pub body_timeout_seconds: u64,
    /// The longest a request body may take in any case (see `body_timeout_seconds`).
    #[serde(default = "default_body_max_seconds")]
    pub body_max_seconds: u64,
    /// The bytes of request bodies the server holds at once, over all requests;
    /// a body that would go past it gets 503 (default 1 GiB).
    #[serde(default = "default_max_inflight_body_bytes")]
    pub max_inflight_body_bytes: usize,
    /// Most requests being handled at once (handlers still running after their
    /// client went away included); a request beyond it gets 503 at once
    /// (default 8192: twice the default `max_connections`).
    #[serde(default = "default_max_inflight_requests")]
    pub max_inflight_requests: usize,
    /// How long an answer's write may make no progress (the client reads nothing)
    /// before the connection is closed.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_seconds: u64,
    /// The minimum transfer rate of a request body, in bytes per second (see
    /// `body_timeout_seconds`).
    #[serde(default = "default_body_min_rate")]
    pub body_min_rate: u64,
    /// At shutdown, how long in-flight requests (and uploads in progress) may still
    /// take before the server stops without them.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_seconds: u64,
    /// Most connections served at once; further connections are answered 503 at
    /// once (so a flood of idle connections cannot exhaust memory, nor make other
    /// clients wait in the kernel's backlog).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most connections served at once from one client address (0: no per-address
    /// limit); further connections from it are answered 503 at once.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// Addresses of the reverse proxies in front of the server: exempt from
    /// `max_connections_per_ip` (every client behind a proxy shares its address).
    #[serde(default)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Origins whose browser pages may call the API (CORS), e.g.
    /// `https://dashboard.example.org`; `*` for any; empty (the default): CORS off.
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Most live subscriptions one user may hold (429 beyond).
    #[serde(default = "default_max_subscriptions")]
    pub max_subscriptions_per_user: usize,
    /// Most event streams open at once (`GET /events/stream`; 503 beyond).
    #[serde(default = "default_max_event_streams")]
    pub max_event_streams: usize,
    /// `/nodes/fast` gives up after this long (504), as the reference's 15 s.
    pub fast_query_timeout_seconds: u64,
    /// Cost of new password hashes.
    pub password_cost: PasswordCost,
    /// The administrator to create at start-up if missing (`None`: none is created;
    /// see [`InitialAdmin`]).
    #[serde(default)]
    pub initial_admin: Option<InitialAdmin>,
}

fn default_shutdown_grace() -> u64 {
    30
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_connections_per_ip() -> usize {
    256
}

fn default_body_max_seconds() -> u64 {
    300
}

fn default_max_inflight_body_bytes() -> usize {
    1 << 30
}

fn default_max_inflight_requests() -> usize {
    8192
}

fn default_write_timeout() -> u64 {
    30
}

fn default_max_node_bytes() -> usize {
    16 * 1024 * 1024
}

fn default_body_min_rate() -> u64 {
    1024
}

fn default_max_subscriptions() -> usize {
    1000
}

fn default_max_event_streams() -> usize {
    256
}

impl Default for HttpConfig {
    /// The reference defaults; `secret_key` is empty (the caller must set it).
    fn default() -> Self {
        HttpConfig {
            secret_key: String::new(),
            unified_secret: String::new(),
            algorithm: "HS256".into(),
            access_token_expire_seconds: 315_360_000,
            invite_token_expire_seconds: 604_800,
            public_base_url: None,
            keep_alive_period: 45,
            cloud_events_source: "https://api.kernelci.org/".into(),
            event_history_ttl_seconds: 604_800,
            telemetry_ttl_seconds: 1_209_600,
            node_purge_age_days: Some(180),
            subscription_idle_seconds: 900,
            housekeeping_period_seconds: 900,
            state_period_seconds: 60,
            background_jobs: true,
            smtp: None,
            max_body_bytes: 64 * 1024 * 1024,
            max_node_bytes: default_max_node_bytes(),
            header_timeout_seconds: 10,
            body_timeout_seconds: 20,
            body_min_rate: default_body_min_rate(),
            write_timeout_seconds: default_write_timeout(),
            body_max_seconds: default_body_max_seconds(),
            max_inflight_body_bytes: default_max_inflight_body_bytes(),
            max_inflight_requests: default_max_inflight_requests(),
            shutdown_grace_seconds: default_shutdown_grace(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_connections_per_ip(),
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            max_subscriptions_per_user: default_max_subscriptions(),
            max_event_streams: default_max_event_streams(),
            fast_query_timeout_seconds: 15,
            password_cost: PasswordCost::REFERENCE,
            initial_admin: None,
        }
    }
}

impl HttpConfig {
    /// A configuration for tests: the given secret, cheap password hashes, no
    /// background jobs, a 1 s keep-alive.
    pub fn for_tests(secret: &str) -> Self {
        HttpConfig {
            secret_key: secret.into(),
            password_cost: PasswordCost::TESTING,
            background_jobs: false,
            node_purge_age_days: None,
            keep_alive_period: 1,
            ..Default::default()
        }
    }

    /// Checks the values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.secret_key.trim().is_empty() {
            return Err(
                "SECRET_KEY is not set: set it (a long random string) or pass --dev \
                        for a throw-away development key"
                    .into(),
            );
        }
        if !matches!(self.algorithm.as_str(), "HS256" | "HS384" | "HS512") {
            return Err(format!(
                "ALGORITHM {:?} is not supported: use HS256, HS384 or HS512",
                self.algorithm
            ));
        }
        if self.keep_alive_period >= 60 {
            return Err(
                "KEEP_ALIVE_PERIOD must be below 60 seconds (clients time out at 60 s); \
                 0 turns keep-alives off"
                    .into(),
            );
        }
        if self.max_connections == 0 {
            return Err("max_connections must be positive".into());
        }
        if self.max_inflight_requests == 0 {
            return Err("max_inflight_requests must be positive".into());
        }
        // At most a day: larger values would overflow the timers' deadlines.
        for (name, v) in [
            ("header_timeout_seconds", self.header_timeout_seconds),
            ("body_timeout_seconds", self.body_timeout_seconds),
            ("write_timeout_seconds", self.write_timeout_seconds),
            ("body_max_seconds", self.body_max_seconds),
        ] {
            if v == 0 || v > 86_400 {
                return Err(format!("{name} must be between 1 and 86400"));
            }
        }
        if self.max_inflight_body_bytes < self.max_body_bytes {
            return Err("max_inflight_body_bytes must be at least max_body_bytes".into());
        }
        if self.body_min_rate == 0 {
            return Err("body_min_rate must be positive".into());
        }
        for o in &self.cors_origins {
            let ok = o == "*"
                || (url::Url::parse(o).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https") && u.path() == "/" && !o.ends_with('/')
                }));
            if !ok {
                return Err(format!(
                    "cors_origins: {o:?} is not an origin (scheme://host[:port], or *)"
                ));
            }
        }
        if self.max_body_bytes == 0 {
            return Err("max_body_bytes must be positive".into());
        }
        Ok(())
    }

    /// The keep-alive period: how long a listen waits before it answers a BEEP.
    /// `KEEP_ALIVE_PERIOD=0` turns keep-alives off (as the reference, whose test
    /// set-up uses it): a listen then waits for a message as long as its client
    /// does (a year at most).
    pub fn keep_alive(&self) -> Duration {
        match self.keep_alive_period {
            0 => Duration::from_secs(365 * 24 * 3600),
            s => Duration::from_secs(s),
        }
    }
}
