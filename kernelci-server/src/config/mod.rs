//! The server's configuration: one struct, filled from the command line over the
//! environment over an optional TOML file over the defaults.
//!
//! Every setting has an option and an environment variable ([`Settings`], which
//! clap reads: `kernelci-server serve --help` lists them with their defaults).
//! The variables are the reference's names (API.md §11: `SECRET_KEY`,
//! `SMTP_HOST`...) and ours with a `KCI_` prefix (`KCI_LISTEN`, `KCI_DATA_DIR`...);
//! as in the reference they are also matched in any case, every setting also
//! under a `KCI_` prefix, and a secret also as `<NAME>_FILE` ([`env_layer`], the
//! layer under clap's). The TOML file uses the names in lower case
//! (`secret_key = "..."`, `listen = "0.0.0.0:8001"`; [`file_layer`]).
//! [`resolve`] parses and checks every value, so a bad one is a configuration
//! error whichever layer it came from.

mod args;

pub use args::Settings;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use kernelci_http::{HttpConfig, SmtpConfig, SmtpTls};
use kernelci_store::{Durability, SledConfig};

/// Which store the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The durable embedded store (default).
    Sled,
    /// In memory: everything is lost when the server stops.
    Memory,
    /// PostgreSQL (`database_url`): several servers may share one database.
    Postgres,
}

impl Backend {
    /// The setting's value for this backend.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sled => "sled",
            Backend::Memory => "memory",
            Backend::Postgres => "postgres",
        }
    }
}

/// The PostgreSQL settings of `serve --backend postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `postgres://...` URL (required with the postgres backend).
    pub url: Option<String>,
    /// Most connections per server.
    pub pool_size: usize,
    /// Statement timeout in seconds (0: the database's own setting).
    pub statement_timeout_seconds: u64,
}

/// A configuration error, with the setting it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value does not parse.
    #[error("{name}: {reason}")]
    Bad {
        /// Setting name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The TOML file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// File path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One source of settings: names (lower case) to raw text values.
pub type Layer = BTreeMap<String, String>;

/// Every setting name we read (lower case).
pub const NAMES: &[&str] = &[
    "listen",
    "data_dir",
    "backend",
    "secret_key",
    "unified_secret",
    "algorithm",
    "access_token_expire_seconds",
    "invite_token_expire_seconds",
    "public_base_url",
    "keep_alive_period",
    "cloud_events_source",
    "event_history_ttl_seconds",
    "telemetry_ttl_seconds",
    "node_purge_age_days",
    "smtp_host",
    "smtp_port",
    "smtp_tls",
    "smtp_ca_file",
    "smtp_timeout_seconds",
    "email_sender",
    "email_password",
    "kci_initial_password",
    "kci_initial_admin_username",
    "kci_initial_admin_email",
    "max_body_bytes",
    "max_connections",
    "max_connections_per_ip",
    "max_node_bytes",
    "trusted_proxies",
    "cors_origins",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "body_min_rate",
    "write_timeout_seconds",
    "body_max_seconds",
    "max_inflight_body_bytes",
    "max_inflight_requests",
    "shutdown_grace_seconds",
    "database_url",
    "database_pool_size",
    "database_statement_timeout_seconds",
    "state_period_seconds",
    "housekeeping_period_seconds",
    "subscription_idle_seconds",
    "max_subscriptions_per_user",
    "max_event_streams",
    "fast_query_timeout_seconds",
    "password_memory_kib",
    "password_iterations",
    "password_parallelism",
    "sled_cache_mb",
    "sled_flush_interval_ms",
    "sled_commit_delay_us",
    "sled_sync_data",
    "sled_compression_level",
];

/// The settings that hold secrets: masked by `config check`, and readable from a
/// file named by `<NAME>_FILE` (`SECRET_KEY_FILE=/run/secrets/kci`), as container
/// platforms hand secrets over.
pub const SECRETS: &[&str] = &[
    "secret_key",
    "unified_secret",
    "email_password",
    "kci_initial_password",
    "database_url",
];

/// The setting a name stands for (`kci_` prefix allowed for every setting).
fn known(lower: &str) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|n| **n == lower || lower.strip_prefix("kci_") == Some(**n))
        .copied()
}

/// The content of a secret file (a final newline dropped).
fn secret_file(name: &str, path: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path.trim()).map_err(|e| ConfigError::Bad {
        name: format!("{name}_file"),
        reason: format!("{path}: {e}"),
    })?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
}

/// The environment as a layer: each known name, matched case-insensitively; our own
/// settings also under a `KCI_` prefix (`KCI_LISTEN`, `KCI_DATA_DIR`...); a secret
/// also as `<NAME>_FILE`, the path of a file holding it (the variable itself wins
/// when both are set).
pub fn env_layer(vars: impl Iterator<Item = (String, String)>) -> Result<Layer, ConfigError> {
    let mut layer = Layer::new();
    let mut from_files = Layer::new();
    for (k, v) in vars {
        let lower = k.to_ascii_lowercase();
        if let Some(name) = known(&lower) {
            // An empty secret is not given (its file, if any, is used).
            if !(v.is_empty() && SECRETS.contains(&name)) {
                layer.insert(name.to_owned(), v);
            }
        } else if let Some(name) = lower
            .strip_suffix("_file")
            .and_then(known)
            .filter(|n| SECRETS.contains(n))
        {
            from_files.insert(name.to_owned(), secret_file(name, &v)?);
        }
    }
    for (k, v) in from_files {
        layer.entry(k).or_insert(v);
    }
    Ok(layer)
}

/// A TOML file as a layer (keys in lower case; values of any scalar type).
pub fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let mut layer = Layer::new();
    let mut from_files = Layer::new();
    for (k, v) in table {
        let name = k.to_ascii_lowercase();
        if let Some(secret) = name.strip_suffix("_file").filter(|n| SECRETS.contains(n)) {
            let toml::Value::String(p) = v else {
                return Err(err(format!("{k}: a path is expected")));
            };
            from_files.insert(secret.to_owned(), secret_file(secret, &p)?);
            continue;
        }
        if !NAMES.contains(&name.as_str()) {
            return Err(err(format!("unknown setting {k:?}")));
        }
        let value = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => return Err(err(format!("{k}: unsupported value {other}"))),
        };
        layer.insert(name, value);
    }
    for (k, v) in from_files {
        layer.entry(k).or_insert(v);
    }
    Ok(layer)
}

/// The resolved configuration of `serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory of the sled store.
    pub data_dir: PathBuf,
    /// The store.
    pub backend: Backend,
    /// The PostgreSQL settings (used by the postgres backend).
    pub database: DatabaseConfig,
    /// The HTTP layer's settings.
    pub http: HttpConfig,
    /// `KCI_INITIAL_PASSWORD` & co.: the superuser to create at start if missing.
    pub initial_admin: Option<(String, String, String)>,
    /// The sled store's page cache and durability.
    pub sled: SledConfig,
}

/// `postgres://user:****@host/db`: the password of a URL masked.
fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "****".into();
    };
    match rest.split_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:****@{host}")
        }
        None => url.to_owned(),
    }
}

impl ServerConfig {
    /// Every setting as resolved, in [`NAMES`] order, secrets masked: what
    /// `kernelci-server config check` prints.
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        let h = &self.http;
        let secret = |v: &str| {
            if v.is_empty() {
                "(not set)".to_owned()
            } else {
                "**** (set)".to_owned()
            }
        };
        let opt = |v: Option<String>| v.unwrap_or_else(|| "(not set)".into());
        let smtp = h.smtp.as_ref();
        let admin = self.initial_admin.as_ref();
        NAMES
            .iter()
            .map(|name| {
                let value = match *name {
                    "listen" => self.listen.to_string(),
                    "data_dir" => self.data_dir.display().to_string(),
                    "backend" => self.backend.as_str().to_owned(),
                    "secret_key" => secret(&h.secret_key),
                    "unified_secret" => secret(&h.unified_secret),
                    "algorithm" => h.algorithm.clone(),
                    "access_token_expire_seconds" => h.access_token_expire_seconds.to_string(),
                    "invite_token_expire_seconds" => h.invite_token_expire_seconds.to_string(),
                    "public_base_url" => opt(h.public_base_url.clone()),
                    "keep_alive_period" => h.keep_alive_period.to_string(),
                    "cloud_events_source" => h.cloud_events_source.clone(),
                    "event_history_ttl_seconds" => h.event_history_ttl_seconds.to_string(),
                    "telemetry_ttl_seconds" => h.telemetry_ttl_seconds.to_string(),
                    "node_purge_age_days" => opt(h.node_purge_age_days.map(|v| v.to_string())),
                    "smtp_host" => opt(smtp.map(|s| s.host.clone())),
                    "smtp_port" => smtp.map_or(587, |s| s.port).to_string(),
                    "smtp_tls" => smtp
                        .map_or(SmtpTls::for_port(587), |s| s.tls)
                        .as_str()
                        .to_owned(),
                    "smtp_ca_file" => opt(smtp
                        .and_then(|s| s.ca_file.as_ref())
                        .map(|p| p.display().to_string())),
                    "smtp_timeout_seconds" => smtp.map_or(30, |s| s.timeout_seconds).to_string(),
                    "email_sender" => opt(smtp.map(|s| s.sender.clone())),
                    "email_password" => secret(smtp.map_or("", |s| s.password.as_str())),
                    "kci_initial_password" => secret(admin.map_or("", |a| a.2.as_str())),
                    "kci_initial_admin_username" => admin.map_or("admin".into(), |a| a.0.clone()),
                    "kci_initial_admin_email" => {
                        admin.map_or("admin@kernelci.org".into(), |a| a.1.clone())
                    }
                    "max_body_bytes" => h.max_body_bytes.to_string(),
                    "max_connections" => h.max_connections.to_string(),
                    "max_connections_per_ip" => h.max_connections_per_ip.to_string(),
                    "max_node_bytes" => h.max_node_bytes.to_string(),
                    "trusted_proxies" => h
                        .trusted_proxies
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    "cors_origins" => h.cors_origins.join(","),
                    "header_timeout_seconds" => h.header_timeout_seconds.to_string(),
                    "body_timeout_seconds" => h.body_timeout_seconds.to_string(),
                    "body_min_rate" => h.body_min_rate.to_string(),
                    "write_timeout_seconds" => h.write_timeout_seconds.to_string(),
                    "body_max_seconds" => h.body_max_seconds.to_string(),
                    "max_inflight_body_bytes" => h.max_inflight_body_bytes.to_string(),
                    "max_inflight_requests" => h.max_inflight_requests.to_string(),
                    "shutdown_grace_seconds" => h.shutdown_grace_seconds.to_string(),
                    "database_url" => opt(self.database.url.as_deref().map(mask_url)),
                    "database_pool_size" => self.database.pool_size.to_string(),
                    "database_statement_timeout_seconds" => {
                        self.database.statement_timeout_seconds.to_string()
                    }
                    "state_period_seconds" => h.state_period_seconds.to_string(),
                    "housekeeping_period_seconds" => h.housekeeping_period_seconds.to_string(),
                    "subscription_idle_seconds" => h.subscription_idle_seconds.to_string(),
                    "max_subscriptions_per_user" => h.max_subscriptions_per_user.to_string(),
                    "max_event_streams" => h.max_event_streams.to_string(),
                    "fast_query_timeout_seconds" => h.fast_query_timeout_seconds.to_string(),
                    "password_memory_kib" => h.password_cost.memory_kib.to_string(),
                    "password_iterations" => h.password_cost.iterations.to_string(),
                    "password_parallelism" => h.password_cost.parallelism.to_string(),
                    "sled_cache_mb" => (self.sled.cache_bytes >> 20).to_string(),
                    "sled_flush_interval_ms" => match self.sled.durability {
                        Durability::Durable => "0".to_owned(),
                        Durability::FlushEvery(d) => d.as_millis().to_string(),
                    },
                    "sled_commit_delay_us" => self.sled.commit_delay.as_micros().to_string(),
                    "sled_sync_data" => self.sled.sync_data.to_string(),
                    "sled_compression_level" => self.sled.compression_level.to_string(),
                    other => format!("(unknown setting {other})"),
                };
                (*name, value)
            })
            .collect()
    }
}

fn parse<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.trim().parse().map_err(|e: T::Err| ConfigError::Bad {
        name: name.to_owned(),
        reason: format!("{v:?}: {e}"),
    })
}

/// Merges layers (later ones win) over the defaults.
pub fn resolve(layers: &[&Layer]) -> Result<ServerConfig, ConfigError> {
    let mut merged = Layer::new();
    for l in layers {
        for (k, v) in l.iter() {
            merged.insert(k.clone(), v.clone());
        }
    }
    let get = |k: &str| merged.get(k).map(String::as_str);
    let mut http = HttpConfig::default();
    let mut cfg = ServerConfig {
        listen: parse("listen", get("listen").unwrap_or("127.0.0.1:8001"))?,
        data_dir: PathBuf::from(get("data_dir").unwrap_or("./kernelci-data")),
        backend: match get("backend").unwrap_or("sled") {
            "sled" => Backend::Sled,
            "memory" => Backend::Memory,
            "postgres" => Backend::Postgres,
            other => {
                return Err(ConfigError::Bad {
                    name: "backend".into(),
                    reason: format!("{other:?}: use sled, memory or postgres"),
                })
            }
        },
        database: DatabaseConfig {
            url: get("database_url")
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            pool_size: get("database_pool_size")
                .map(|v| parse("database_pool_size", v))
                .transpose()?
                .unwrap_or(16),
            statement_timeout_seconds: get("database_statement_timeout_seconds")
                .map(|v| parse("database_statement_timeout_seconds", v))
                .transpose()?
                .unwrap_or(30),
        },
        http: HttpConfig::default(),
        initial_admin: None,
        sled: SledConfig::default(),
    };
    if let Some(v) = get("secret_key") {
        http.secret_key = v.to_owned();
    }
    if let Some(v) = get("unified_secret") {
        http.unified_secret = v.to_owned();
    }
    if let Some(v) = get("algorithm") {
        http.algorithm = v.trim().to_owned();
    }
    if let Some(v) = get("access_token_expire_seconds") {
        http.access_token_expire_seconds = parse("access_token_expire_seconds", v)?;
    }
    if let Some(v) = get("invite_token_expire_seconds") {
        http.invite_token_expire_seconds = parse("invite_token_expire_seconds", v)?;
    }
    if let Some(v) = get("public_base_url").filter(|v| !v.trim().is_empty()) {
        http.public_base_url = Some(v.trim().to_owned());
    }
    if let Some(v) = get("keep_alive_period") {
        http.keep_alive_period = parse("keep_alive_period", v)?;
    }
    if let Some(v) = get("cloud_events_source") {
        http.cloud_events_source = v.to_owned();
    }
    if let Some(v) = get("event_history_ttl_seconds") {
        http.event_history_ttl_seconds = parse("event_history_ttl_seconds", v)?;
    }
    if let Some(v) = get("telemetry_ttl_seconds") {
        http.telemetry_ttl_seconds = parse("telemetry_ttl_seconds", v)?;
    }
    if let Some(v) = get("node_purge_age_days") {
        let days: u64 = parse("node_purge_age_days", v)?;
        http.node_purge_age_days = (days > 0).then_some(days);
    }
    if let Some(v) = get("max_body_bytes") {
        http.max_body_bytes = parse("max_body_bytes", v)?;
    }
    if let Some(v) = get("max_connections") {
        http.max_connections = parse("max_connections", v)?;
    }
    if let Some(v) = get("max_node_bytes") {
        http.max_node_bytes = parse("max_node_bytes", v)?;
    }
    if let Some(v) = get("max_connections_per_ip") {
        http.max_connections_per_ip = parse("max_connections_per_ip", v)?;
    }
    if let Some(v) = get("trusted_proxies") {
        http.trusted_proxies = v
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| parse("trusted_proxies", a))
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = get("cors_origins") {
        http.cors_origins = v
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect();
    }
    if let Some(v) = get("header_timeout_seconds") {
        http.header_timeout_seconds = parse("header_timeout_seconds", v)?;
    }
    if let Some(v) = get("body_timeout_seconds") {
        http.body_timeout_seconds = parse("body_timeout_seconds", v)?;
    }
    if let Some(v) = get("body_max_seconds") {
        http.body_max_seconds = parse("body_max_seconds", v)?;
    }
    if let Some(v) = get("max_inflight_body_bytes") {
        http.max_inflight_body_bytes = parse("max_inflight_body_bytes", v)?;
    }
    if let Some(v) = get("max_inflight_requests") {
        http.max_inflight_requests = parse("max_inflight_requests", v)?;
    }
    if let Some(v) = get("write_timeout_seconds") {
        http.write_timeout_seconds = parse("write_timeout_seconds", v)?;
    }
    if let Some(v) = get("body_min_rate") {
        http.body_min_rate = parse("body_min_rate", v)?;
    }
    if let Some(v) = get("state_period_seconds") {
        http.state_period_seconds = parse("state_period_seconds", v)?;
    }
    for (name, field) in [
        (
            "housekeeping_period_seconds",
            &mut http.housekeeping_period_seconds,
        ),
        (
            "subscription_idle_seconds",
            &mut http.subscription_idle_seconds,
        ),
        (
            "fast_query_timeout_seconds",
            &mut http.fast_query_timeout_seconds,
        ),
    ] {
        if let Some(v) = get(name) {
            *field = parse(name, v)?;
        }
    }
    if let Some(v) = get("max_subscriptions_per_user") {
        http.max_subscriptions_per_user = parse("max_subscriptions_per_user", v)?;
    }
    if let Some(v) = get("max_event_streams") {
        http.max_event_streams = parse("max_event_streams", v)?;
    }
    for (name, field) in [
        ("password_memory_kib", &mut http.password_cost.memory_kib),
        ("password_iterations", &mut http.password_cost.iterations),
        ("password_parallelism", &mut http.password_cost.parallelism),
    ] {
        if let Some(v) = get(name) {
            *field = parse(name, v)?;
        }
    }
    if let Some(v) = get("sled_cache_mb") {
        let mb: u64 = parse("sled_cache_mb", v)?;
        cfg.sled.cache_bytes = mb.saturating_mul(1 << 20);
    }
    if let Some(v) = get("sled_flush_interval_ms") {
        let ms: u64 = parse("sled_flush_interval_ms", v)?;
        cfg.sled.durability = if ms == 0 {
            Durability::Durable
        } else {
            Durability::FlushEvery(std::time::Duration::from_millis(ms))
        };
    }
    if let Some(v) = get("sled_commit_delay_us") {
        let us: u64 = parse("sled_commit_delay_us", v)?;
        cfg.sled.commit_delay = std::time::Duration::from_micros(us);
    }
    if let Some(v) = get("sled_sync_data") {
        cfg.sled.sync_data = parse("sled_sync_data", v)?;
    }
    if let Some(v) = get("sled_compression_level") {
        let level: u8 = parse("sled_compression_level", v)?;
        if level > 22 {
            return Err(ConfigError::Bad {
                name: "sled_compression_level".to_owned(),
                reason: format!("{level} is not a zstd level (1-22, or 0 for none)"),
            });
        }
        cfg.sled.compression_level = level;
    }
    if let Some(v) = get("shutdown_grace_seconds") {
        http.shutdown_grace_seconds = parse("shutdown_grace_seconds", v)?;
    }
    if let Some(host) = get("smtp_host").filter(|h| !h.trim().is_empty()) {
        let port = get("smtp_port")
            .map(|p| parse("smtp_port", p))
            .transpose()?
            .unwrap_or(587);
        let mut smtp = SmtpConfig::new(
            host.trim(),
            port,
            get("email_sender").unwrap_or_default(),
            get("email_password").unwrap_or_default(),
        );
        if let Some(v) = get("smtp_tls") {
            smtp.tls = parse("smtp_tls", v)?;
        }
        smtp.ca_file = get("smtp_ca_file")
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(PathBuf::from);
        if let Some(v) = get("smtp_timeout_seconds") {
            smtp.timeout_seconds = parse("smtp_timeout_seconds", v)?;
        }
        http.smtp = Some(smtp);
    }
    if let Some(password) = get("kci_initial_password").filter(|p| !p.is_empty()) {
        let username = get("kci_initial_admin_username")
            .filter(|u| !u.is_empty())
            .unwrap_or("admin")
            .to_owned();
        let email = get("kci_initial_admin_email")
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{username}@kernelci.org"));
        cfg.initial_admin = Some((username, email, password.to_owned()));
    }
    if cfg.backend == Backend::Postgres && cfg.database.url.is_none() {
        return Err(ConfigError::Bad {
            name: "database_url".into(),
            reason: "the postgres backend needs a database URL (--database-url, DATABASE_URL or KCI_DATABASE_URL)".into(),
        });
    }
    if cfg.database.pool_size == 0 {
        return Err(ConfigError::Bad {
            name: "database_pool_size".into(),
            reason: "must be at least 1".into(),
        });
    }
    cfg.http = http;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(pairs: &[(&str, &str)]) -> Layer {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn precedence_and_defaults() {
        let file = layer(&[("secret_key", "from-file"), ("keep_alive_period", "30")]);
        let env = env_layer(
            vec![
                ("Secret_Key".to_owned(), "from-env".to_owned()),
                ("KCI_LISTEN".to_owned(), "0.0.0.0:9000".to_owned()),
                ("PATH".to_owned(), "/bin".to_owned()),
                ("NODE_PURGE_AGE_DAYS".to_owned(), "0".to_owned()),
            ]
            .into_iter(),
        )
        .unwrap();
        let cli = layer(&[("listen", "127.0.0.1:7000")]);
        let c = resolve(&[&file, &env, &cli]).unwrap();
        assert_eq!(c.http.secret_key, "from-env");
        assert_eq!(c.http.keep_alive_period, 30);
        assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.http.node_purge_age_days, None);
        assert_eq!(c.backend, Backend::Sled);
        assert_eq!(c.data_dir, PathBuf::from("./kernelci-data"));
        let d = resolve(&[]).unwrap();
        assert_eq!(d.http.algorithm, "HS256");
        assert_eq!(d.http.access_token_expire_seconds, 315_360_000);
        assert_eq!(d.listen.to_string(), "127.0.0.1:8001");
    }

    #[test]
    fn initial_admin_and_errors() {
        let c = resolve(&[&layer(&[("kci_initial_password", "pw")])]).unwrap();
        assert_eq!(
            c.initial_admin,
            Some(("admin".into(), "admin@kernelci.org".into(), "pw".into()))
        );
        let e = resolve(&[&layer(&[("keep_alive_period", "soon")])]).unwrap_err();
        assert!(e.to_string().starts_with("keep_alive_period"));
        assert!(resolve(&[&layer(&[("backend", "mongo")])]).is_err());
        let c = resolve(&[&layer(&[("smtp_host", "mail"), ("smtp_port", "465")])]).unwrap();
        assert_eq!(c.http.smtp.unwrap().port, 465);
    }

    #[test]
    fn sled_compression_level() {
        assert_eq!(
            resolve(&[]).unwrap().sled.compression_level,
            kernelci_store::DEFAULT_COMPRESSION_LEVEL
        );
        let c = resolve(&[&layer(&[("sled_compression_level", "0")])]).unwrap();
        assert_eq!(c.sled.compression_level, 0);
        for bad in ["23", "-1", "fast"] {
            let e = resolve(&[&layer(&[("sled_compression_level", bad)])]).unwrap_err();
            assert!(e.to_string().starts_with("sled_compression_level"), "{e}");
        }
    }

    #[test]
    fn toml_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "secret_key = \"k\"\nkeep_alive_period = 20\n").unwrap();
        let l = file_layer(&p).unwrap();
        assert_eq!(l.get("keep_alive_period").unwrap(), "20");
        std::fs::write(&p, "nope = 1\n").unwrap();
        assert!(file_layer(&p)
            .unwrap_err()
            .to_string()
            .contains("unknown setting"));
    }
}
