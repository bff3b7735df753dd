//! The settings as command-line options: [`Settings`], one `Option` per setting,
//! each also read from its environment variable by clap (`--help` shows both and
//! the default). [`Settings::layer`] turns what was given into the top layer of
//! [`super::resolve`] (over the environment's other spellings and the TOML file);
//! a test checks that this list and [`super::NAMES`] agree, and that each
//! `[default: ...]` shown is the value `config check` resolves.

// The field docs are `--help` text, written for a terminal: `[default: x]` and bare
// URLs are meant as they are.
#![allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls,
    rustdoc::invalid_html_tags
)]

use std::path::PathBuf;

use super::{secret_file, ConfigError, Layer};

/// Every setting of the server (see the module docs). Values are text: they are
/// parsed by [`super::resolve`], so a bad value is a configuration error (exit
/// status 78) wherever it comes from.
#[derive(clap::Args, Debug, Default, Clone, serde::Serialize)]
pub struct Settings {
    /// TOML configuration file (the settings in lower case, `secret_key = "..."`;
    /// `deploy/kernelci.toml` is a commented sample).
    #[arg(long, env = "KCI_CONFIG", value_name = "FILE", help_heading = "Server")]
    #[serde(skip)]
    pub config: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8001].
    #[arg(long, env = "KCI_LISTEN", value_name = "ADDR", help_heading = "Server")]
    pub listen: Option<String>,
    /// The server's public URL, for links and redirects (default: from the request).
    #[arg(
        long,
        env = "PUBLIC_BASE_URL",
        value_name = "URL",
        help_heading = "Server"
    )]
    pub public_base_url: Option<String>,
    /// Comma-separated proxy addresses whose Forwarded/X-Forwarded-* headers are believed (default: none).
    #[arg(
        long,
        env = "KCI_TRUSTED_PROXIES",
        value_name = "IPS",
        help_heading = "Server"
    )]
    pub trusted_proxies: Option<String>,
    /// Comma-separated origins CORS allows (default: none, CORS off).
    #[arg(
        long,
        env = "KCI_CORS_ORIGINS",
        value_name = "ORIGINS",
        help_heading = "Server"
    )]
    pub cors_origins: Option<String>,
    /// The CloudEvents `source` of events [default: https://api.kernelci.org/].
    #[arg(
        long,
        env = "CLOUD_EVENTS_SOURCE",
        value_name = "URL",
        help_heading = "Server"
    )]
    pub cloud_events_source: Option<String>,
    /// Data directory of the sled store [default: ./kernelci-data].
    #[arg(
        long,
        env = "KCI_DATA_DIR",
        value_name = "DIR",
        help_heading = "Storage"
    )]
    pub data_dir: Option<String>,
    /// Store backend [default: sled].
    #[arg(
        long,
        env = "KCI_BACKEND",
        value_name = "sled|memory|postgres",
        help_heading = "Storage"
    )]
    pub backend: Option<String>,
    /// PostgreSQL URL of the postgres backend (postgres://user:pass@host/db; ?sslmode=require, verify-full&sslrootcert=FILE for TLS) (prefer the variable or the file: options show in `ps`).
    #[arg(
        long,
        env = "DATABASE_URL",
        value_name = "URL",
        help_heading = "Storage",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// A file holding DATABASE_URL (a final newline is dropped).
    #[arg(
        long,
        env = "DATABASE_URL_FILE",
        value_name = "FILE",
        help_heading = "Storage"
    )]
    #[serde(skip)]
    pub database_url_file: Option<String>,
    /// Most PostgreSQL connections per server [default: 16].
    #[arg(
        long,
        env = "KCI_DATABASE_POOL_SIZE",
        value_name = "N",
        help_heading = "Storage"
    )]
    pub database_pool_size: Option<String>,
    /// PostgreSQL statement timeout; 0 keeps the database's own [default: 30].
    #[arg(
        long,
        env = "KCI_DATABASE_STATEMENT_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        help_heading = "Storage"
    )]
    pub database_statement_timeout_seconds: Option<String>,
    /// sled's page cache [default: 256].
    #[arg(
        long,
        env = "KCI_SLED_CACHE_MB",
        value_name = "MIB",
        help_heading = "Storage"
    )]
    pub sled_cache_mb: Option<String>,
    /// 0: a write is on disk when it is acknowledged; N: on disk within N ms (bulk loads; a crash may lose the last writes) [default: 0].
    #[arg(
        long,
        env = "KCI_SLED_FLUSH_INTERVAL_MS",
        value_name = "MS",
        help_heading = "Storage"
    )]
    pub sled_flush_interval_ms: Option<String>,
    /// Microseconds a flush that finds several writers waiting first waits for more to join it (fewer, fuller flushes under load; 0: never) [default: 75].
    #[arg(
        long,
        env = "KCI_SLED_COMMIT_DELAY_US",
        value_name = "US",
        help_heading = "Storage"
    )]
    pub sled_commit_delay_us: Option<String>,
    /// true: after each flush, fsync sled's new blob files and fdatasync its log (an acknowledged write survives a power loss); false: sled's own sync_file_range only (survives a killed process, not a power loss) [default: true].
    #[arg(
        long,
        env = "KCI_SLED_SYNC_DATA",
        value_name = "BOOL",
        help_heading = "Storage"
    )]
    pub sled_sync_data: Option<String>,
    /// zstd level (1-22) sled compresses the log of a store it creates with; 0: no compression. An existing store keeps the choice it was created with. Either way, a store packs the node documents and events it writes with dictionaries trained on its own records [default: 0].
    #[arg(
        long,
        env = "KCI_SLED_COMPRESSION_LEVEL",
        value_name = "LEVEL",
        help_heading = "Storage"
    )]
    pub sled_compression_level: Option<String>,
    /// Key signing the access tokens (required unless --dev) (prefer the variable or the file: options show in `ps`).
    #[arg(
        long,
        env = "SECRET_KEY",
        value_name = "KEY",
        help_heading = "Authentication",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,
    /// A file holding SECRET_KEY (a final newline is dropped).
    #[arg(
        long,
        env = "SECRET_KEY_FILE",
        value_name = "FILE",
        help_heading = "Authentication"
    )]
    #[serde(skip)]
    pub secret_key_file: Option<String>,
    /// A second key whose tokens are also accepted (default: none) (prefer the variable or the file: options show in `ps`).
    #[arg(
        long,
        env = "UNIFIED_SECRET",
        value_name = "KEY",
        help_heading = "Authentication",
        hide_env_values = true
    )]
    pub unified_secret: Option<String>,
    /// A file holding UNIFIED_SECRET (a final newline is dropped).
    #[arg(
        long,
        env = "UNIFIED_SECRET_FILE",
        value_name = "FILE",
        help_heading = "Authentication"
    )]
    #[serde(skip)]
    pub unified_secret_file: Option<String>,
    /// Token signature algorithm [default: HS256].
    #[arg(
        long,
        env = "ALGORITHM",
        value_name = "HS256|HS384|HS512",
        help_heading = "Authentication"
    )]
    pub algorithm: Option<String>,
    /// Lifetime of access tokens [default: 315360000].
    #[arg(
        long,
        env = "ACCESS_TOKEN_EXPIRE_SECONDS",
        value_name = "SECONDS",
        help_heading = "Authentication"
    )]
    pub access_token_expire_seconds: Option<String>,
    /// Lifetime of invitation links [default: 604800].
    #[arg(
        long,
        env = "INVITE_TOKEN_EXPIRE_SECONDS",
        value_name = "SECONDS",
        help_heading = "Authentication"
    )]
    pub invite_token_expire_seconds: Option<String>,
    /// Argon2id memory of new password hashes [default: 65536].
    #[arg(
        long,
        env = "KCI_PASSWORD_MEMORY_KIB",
        value_name = "KIB",
        help_heading = "Authentication"
    )]
    pub password_memory_kib: Option<String>,
    /// Argon2id iterations of new password hashes [default: 3].
    #[arg(
        long,
        env = "KCI_PASSWORD_ITERATIONS",
        value_name = "N",
        help_heading = "Authentication"
    )]
    pub password_iterations: Option<String>,
    /// Argon2id lanes of new password hashes [default: 4].
    #[arg(
        long,
        env = "KCI_PASSWORD_PARALLELISM",
        value_name = "N",
        help_heading = "Authentication"
    )]
    pub password_parallelism: Option<String>,
    /// Seconds between keep-alives of /listen; 0: off [default: 45].
    #[arg(
        long,
        env = "KEEP_ALIVE_PERIOD",
        value_name = "SECONDS",
        help_heading = "Pub/sub and retention"
    )]
    pub keep_alive_period: Option<String>,
    /// Most live subscriptions of one user (429 beyond) [default: 1000].
    #[arg(
        long,
        env = "KCI_MAX_SUBSCRIPTIONS_PER_USER",
        value_name = "N",
        help_heading = "Pub/sub and retention"
    )]
    pub max_subscriptions_per_user: Option<String>,
    /// Most event streams open at once (GET /events/stream; 503 beyond) [default: 256].
    #[arg(
        long,
        env = "KCI_MAX_EVENT_STREAMS",
        value_name = "N",
        help_heading = "Pub/sub and retention"
    )]
    pub max_event_streams: Option<String>,
    /// Subscriptions not polled for this long are dropped [default: 900].
    #[arg(
        long,
        env = "KCI_SUBSCRIPTION_IDLE_SECONDS",
        value_name = "SECONDS",
        help_heading = "Pub/sub and retention"
    )]
    pub subscription_idle_seconds: Option<String>,
    /// Retention: events older than this are trimmed [default: 604800].
    #[arg(
        long,
        env = "EVENT_HISTORY_TTL_SECONDS",
        value_name = "SECONDS",
        help_heading = "Pub/sub and retention"
    )]
    pub event_history_ttl_seconds: Option<String>,
    /// Retention: telemetry older than this is trimmed [default: 1209600].
    #[arg(
        long,
        env = "TELEMETRY_TTL_SECONDS",
        value_name = "SECONDS",
        help_heading = "Pub/sub and retention"
    )]
    pub telemetry_ttl_seconds: Option<String>,
    /// Retention: nodes (but checkouts) older than this are purged daily; 0: never [default: 180].
    #[arg(
        long,
        env = "NODE_PURGE_AGE_DAYS",
        value_name = "DAYS",
        help_heading = "Pub/sub and retention"
    )]
    pub node_purge_age_days: Option<String>,
    /// How often the leader runs the timeout/holdoff state machine [default: 60].
    #[arg(
        long,
        env = "KCI_STATE_PERIOD_SECONDS",
        value_name = "SECONDS",
        help_heading = "Jobs"
    )]
    pub state_period_seconds: Option<String>,
    /// How often idle subscriptions are dropped and events/telemetry trimmed [default: 900].
    #[arg(
        long,
        env = "KCI_HOUSEKEEPING_PERIOD_SECONDS",
        value_name = "SECONDS",
        help_heading = "Jobs"
    )]
    pub housekeeping_period_seconds: Option<String>,
    /// SMTP server; no e-mail is sent when unset.
    #[arg(long, env = "SMTP_HOST", value_name = "HOST", help_heading = "E-mail")]
    pub smtp_host: Option<String>,
    /// SMTP port [default: 587].
    #[arg(long, env = "SMTP_PORT", value_name = "PORT", help_heading = "E-mail")]
    pub smtp_port: Option<String>,
    /// starttls (required), tls (implicit) or none (a local relay) [default: starttls (tls on port 465)].
    #[arg(
        long,
        env = "SMTP_TLS",
        value_name = "starttls|tls|none",
        help_heading = "E-mail"
    )]
    pub smtp_tls: Option<String>,
    /// PEM certificates trusted besides the system's roots.
    #[arg(
        long,
        env = "SMTP_CA_FILE",
        value_name = "FILE",
        help_heading = "E-mail"
    )]
    pub smtp_ca_file: Option<String>,
    /// Time for one whole delivery [default: 30].
    #[arg(
        long,
        env = "SMTP_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        help_heading = "E-mail"
    )]
    pub smtp_timeout_seconds: Option<String>,
    /// From address, also the SMTP login.
    #[arg(
        long,
        env = "EMAIL_SENDER",
        value_name = "ADDRESS",
        help_heading = "E-mail"
    )]
    pub email_sender: Option<String>,
    /// SMTP password (no login when unset) (prefer the variable or the file: options show in `ps`).
    #[arg(
        long,
        env = "EMAIL_PASSWORD",
        value_name = "PASSWORD",
        help_heading = "E-mail",
        hide_env_values = true
    )]
    pub email_password: Option<String>,
    /// A file holding EMAIL_PASSWORD (a final newline is dropped).
    #[arg(
        long,
        env = "EMAIL_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "E-mail"
    )]
    #[serde(skip)]
    pub email_password_file: Option<String>,
    /// Creates this superuser at start when missing (prefer the variable or the file: options show in `ps`).
    #[arg(
        long,
        env = "KCI_INITIAL_PASSWORD",
        value_name = "PASSWORD",
        help_heading = "First administrator",
        hide_env_values = true
    )]
    pub kci_initial_password: Option<String>,
    /// A file holding KCI_INITIAL_PASSWORD (a final newline is dropped).
    #[arg(
        long,
        env = "KCI_INITIAL_PASSWORD_FILE",
        value_name = "FILE",
        help_heading = "First administrator"
    )]
    #[serde(skip)]
    pub kci_initial_password_file: Option<String>,
    /// Its username [default: admin].
    #[arg(
        long,
        env = "KCI_INITIAL_ADMIN_USERNAME",
        value_name = "NAME",
        help_heading = "First administrator"
    )]
    pub kci_initial_admin_username: Option<String>,
    /// Its e-mail [default: admin@kernelci.org, or <username>@kernelci.org].
    #[arg(
        long,
        env = "KCI_INITIAL_ADMIN_EMAIL",
        value_name = "ADDRESS",
        help_heading = "First administrator"
    )]
    pub kci_initial_admin_email: Option<String>,
    /// Largest request body (413 beyond) [default: 67108864].
    #[arg(
        long,
        env = "KCI_MAX_BODY_BYTES",
        value_name = "BYTES",
        help_heading = "Limits and timeouts"
    )]
    pub max_body_bytes: Option<String>,
    /// Largest node document [default: 16777216].
    #[arg(
        long,
        env = "KCI_MAX_NODE_BYTES",
        value_name = "BYTES",
        help_heading = "Limits and timeouts"
    )]
    pub max_node_bytes: Option<String>,
    /// Most open connections [default: 4096].
    #[arg(
        long,
        env = "KCI_MAX_CONNECTIONS",
        value_name = "N",
        help_heading = "Limits and timeouts"
    )]
    pub max_connections: Option<String>,
    /// Most open connections of one client address [default: 256].
    #[arg(
        long,
        env = "KCI_MAX_CONNECTIONS_PER_IP",
        value_name = "N",
        help_heading = "Limits and timeouts"
    )]
    pub max_connections_per_ip: Option<String>,
    /// Most requests being answered at once (503 beyond) [default: 8192].
    #[arg(
        long,
        env = "KCI_MAX_INFLIGHT_REQUESTS",
        value_name = "N",
        help_heading = "Limits and timeouts"
    )]
    pub max_inflight_requests: Option<String>,
    /// Most request-body bytes held at once (503 beyond) [default: 1073741824].
    #[arg(
        long,
        env = "KCI_MAX_INFLIGHT_BODY_BYTES",
        value_name = "BYTES",
        help_heading = "Limits and timeouts"
    )]
    pub max_inflight_body_bytes: Option<String>,
    /// Time for a request's headers [default: 10].
    #[arg(
        long,
        env = "KCI_HEADER_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        help_heading = "Limits and timeouts"
    )]
    pub header_timeout_seconds: Option<String>,
    /// Base time for a request's body [default: 20].
    #[arg(
        long,
        env = "KCI_BODY_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        help_heading = "Limits and timeouts"
    )]
    pub body_timeout_seconds: Option<String>,
    /// A body gets one more second per this many bytes [default: 1024].
    #[arg(
        long,
        env = "KCI_BODY_MIN_RATE",
        value_name = "BYTES_PER_SECOND",
        help_heading = "Limits and timeouts"
    )]
    pub body_min_rate: Option<String>,
    /// Most time for any body [default: 300].
    #[arg(
        long,
        env = "KCI_BODY_MAX_SECONDS",
        value_name = "SECONDS",
        help_heading = "Limits and timeouts"
    )]
    pub body_max_seconds: Option<String>,
    /// Time for a client to take an answer [default: 30].
    #[arg(
        long,
        env = "KCI_WRITE_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        help_heading = "Limits and timeouts"
    )]
    pub write_timeout_seconds: Option<String>,
    /// /nodes/fast gives up after this long (504) [default: 15].
    #[arg(
        long,
        env = "KCI_FAST_QUERY_TIMEOUT_SECONDS",
        value_name = "SECONDS",
        help_heading = "Limits and timeouts"
    )]
    pub fast_query_timeout_seconds: Option<String>,
    /// Time requests get to finish at shutdown [default: 30].
    #[arg(
        long,
        env = "KCI_SHUTDOWN_GRACE_SECONDS",
        value_name = "SECONDS",
        help_heading = "Limits and timeouts"
    )]
    pub shutdown_grace_seconds: Option<String>,
}

impl Settings {
    /// The TOML file to read, if one is named (an empty value names none).
    pub fn config_file(&self) -> Option<PathBuf> {
        self.config
            .as_deref()
            .filter(|c| !c.trim().is_empty())
            .map(PathBuf::from)
    }

    /// What was given (on the command line or in the variables clap reads), as two
    /// layers: the secrets read from their files, and the values given directly.
    /// [`super::resolve`] puts the environment's other spellings between them, so
    /// a secret given directly, in any spelling, wins over one read from a file.
    /// An empty secret counts as not given.
    pub fn layers(&self) -> Result<(Layer, Layer), ConfigError> {
        let mut values = Layer::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(self) {
            for (name, value) in map {
                if let serde_json::Value::String(v) = value {
                    values.insert(name, v);
                }
            }
        }
        let mut files = Layer::new();
        for (name, file) in [
            ("secret_key", &self.secret_key_file),
            ("unified_secret", &self.unified_secret_file),
            ("email_password", &self.email_password_file),
            ("kci_initial_password", &self.kci_initial_password_file),
            ("database_url", &self.database_url_file),
        ] {
            if values.get(name).is_some_and(String::is_empty) {
                values.remove(name);
            }
            if let Some(path) = file.as_deref().filter(|p| !p.trim().is_empty()) {
                files.insert(name.to_owned(), secret_file(name, path)?);
            }
        }
        Ok((files, values))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use clap::CommandFactory;

    use super::Settings;
    use crate::config::{resolve, NAMES, SECRETS};

    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        settings: Settings,
    }

    /// Every setting is an option with an environment variable, and the default
    /// its help shows is the one `config check` resolves.
    #[test]
    fn every_setting_is_an_option_with_its_true_default() {
        let command = Probe::command();
        let defaults = resolve(&[]).unwrap().settings();
        for (name, resolved) in &defaults {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == *name)
                .unwrap_or_else(|| panic!("{name} has no option"));
            assert!(arg.get_env().is_some(), "{name} has no variable");
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            if let Some(shown) = help.split("[default: ").nth(1) {
                // The value, before any explanation (`starttls (tls on port 465)`).
                let shown = shown.split(']').next().unwrap_or_default();
                let value = shown.split([' ', ',']).next().unwrap_or_default();
                assert_eq!(
                    value, resolved,
                    "{name}: --help says {shown:?}, the default is {resolved:?}"
                );
            } else {
                assert!(
                    resolved == "(not set)" || resolved.is_empty() || resolved.starts_with("****"),
                    "{name}: --help shows no default, and it is {resolved:?}"
                );
            }
        }
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            let secret_file = id
                .strip_suffix("_file")
                .is_some_and(|s| SECRETS.contains(&s));
            assert!(
                NAMES.contains(&id) || secret_file || id == "config",
                "{id} is an option but not a setting"
            );
        }
        assert_eq!(
            defaults.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            NAMES.to_vec()
        );
    }

    #[test]
    fn given_options_and_secret_files_make_the_layers() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "from-file\n").unwrap();
        let key = key.display().to_string();
        let settings = Settings {
            listen: Some("0.0.0.0:9000".into()),
            secret_key_file: Some(key.clone()),
            email_password: Some("given".into()),
            email_password_file: Some(key.clone()),
            unified_secret: Some(String::new()),
            unified_secret_file: Some(key),
            config: Some(String::new()),
            database_url_file: Some(" ".into()),
            ..Settings::default()
        };
        let (files, values) = settings.layers().unwrap();
        assert_eq!(values.get("listen").unwrap(), "0.0.0.0:9000");
        assert_eq!(values.get("email_password").unwrap(), "given");
        assert_eq!(values.len(), 2, "{values:?}");
        assert_eq!(files.get("secret_key").unwrap(), "from-file");
        assert_eq!(files.get("unified_secret").unwrap(), "from-file");
        assert_eq!(files.len(), 3, "{files:?}");
        assert_eq!(settings.config_file(), None);
        let missing = Settings {
            secret_key_file: Some("/nonexistent/key".into()),
            ..Settings::default()
        };
        assert!(missing
            .layers()
            .unwrap_err()
            .to_string()
            .contains("secret_key_file"));
    }
}
