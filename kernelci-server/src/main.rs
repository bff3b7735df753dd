//! `kernelci-server`: configuration, tracing, bind, serve.
//!
//! ```text
//! kernelci-server serve [--listen ADDR] [--data-dir DIR] [--config FILE] [--dev]
//!                       [--backend sled|memory|postgres] [--database-url URL]
//! kernelci-server admin create --username U --email E [--data-dir DIR] [--config FILE]
//! kernelci-server copy --from SPEC --to SPEC [--batch-size N]
//! kernelci-server import mongo PATH [--rejects FILE] [--batch-size N] [--data-dir DIR]
//!                       [--backend sled|postgres] [--database-url URL] [--config FILE]
//! ```
//!
//! `backup --url URL --out FILE` takes an online backup of a running server,
//! `restore FILE` writes one into an empty store and `verify FILE` checks one
//! ([`backup`]).
//!
//! `config check` prints the resolved settings (secrets masked) and checks them.
//! Exit statuses: 0 success, 1 a runtime failure, 2 a usage error (clap), 78
//! (`EX_CONFIG`) a configuration that cannot work.
//!
//! `import mongo` brings the data of a reference (kernelci-api) instance over from a
//! `mongodump` or `mongoexport` of its database ([`import`]).
//!
//! `copy` copies every record of one store into another ([`copy`]); a SPEC is
//! `sled:DIR`, `postgres:URL` or `memory:`.
//!
//! Settings come from the command line over the environment over the TOML file over
//! the defaults ([`config`]). `serve` refuses to start without `SECRET_KEY` unless
//! `--dev` is given: then a key and an `admin` password are generated once, kept in
//! `<data-dir>/dev-secrets.toml` (so restarts keep tokens and the password valid),
//! and a login hint is printed.

mod backup;
mod config;
mod copy;
mod dev;
mod import;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use config::{Backend, Layer, ServerConfig};
use kernelci_core::store::Store;
use kernelci_http::{serve, AppState};
use kernelci_store::postgres::{PgConfig, PgStore};
use kernelci_store::{MemoryStore, SledStore};

#[derive(Parser, Debug)]
#[command(
    name = "kernelci-server",
    version,
    about = "The KernelCI API server (kernelci-rs)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on standard error: `text` (for people) or `json` (one object
    /// per line, for log collectors). The level comes from RUST_LOG (default info).
    #[arg(
        long,
        global = true,
        env = "KCI_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting (`--help` lists them with their variables and defaults).
#[derive(clap::Args, Debug, Default)]
struct Common {
    #[command(flatten)]
    settings: config::Settings,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serves the API.
    Serve {
        /// Development mode: generate (once) a secret key and an admin password.
        #[arg(long)]
        dev: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Administration of an offline store.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Backs up a running server (online, through its admin endpoint
    /// `/backup/{section}`) into a file: versioned JSON lines with a checksum,
    /// written to FILE.partial and renamed when complete. The token of an
    /// administrator comes from KCI_TOKEN or --token-file.
    Backup {
        /// The server, over plain HTTP (run next to it).
        #[arg(long, default_value = "http://127.0.0.1:8001")]
        url: String,
        /// The backup file to write.
        #[arg(long)]
        out: PathBuf,
        /// A file holding an administrator's access token (else KCI_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Writes a backup into an empty store (the one the usual settings select),
    /// after checking the whole file. Stop a sled server first.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Records per import call.
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Checks a backup file whole (header, version, every record, counts,
    /// checksum) without writing anything; without FILE, checks the sled store of
    /// the data directory instead (every document decodes, every index entry and
    /// counter agrees with the documents). Stop the server first.
    Verify {
        /// The backup file (omit it to check the store).
        file: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Recomputes every index entry and counter of the sled store in the data
    /// directory from its documents (after `verify` reported problems). Stop the
    /// server first.
    RebuildIndexes {
        #[command(flatten)]
        common: Common,
    },
    /// The configuration: `config check`.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Imports the data of another KernelCI API server.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Copies every record (nodes, events, users, groups, tokens, subscribers, KV,
    /// telemetry, queues, counters) from one store into another, then compares the
    /// counts. Safe to run again after an interruption: what is there is skipped.
    /// Stop the servers of both stores first (a sled store is locked while in use).
    Copy {
        /// Source store: sled:DIR, postgres:URL or memory:.
        #[arg(long)]
        from: copy::Spec,
        /// Target store: sled:DIR (created if missing), postgres:URL or memory:.
        #[arg(long)]
        to: copy::Spec,
        /// Records per batch (one import transaction each).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        /// Node and telemetry batches written at once (each on its own connection
        /// of a PostgreSQL target); the other sections go one batch at a time.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
        jobs: u32,
        /// zstd level of a sled target created by the copy (0: not compressed); a
        /// target that exists keeps its own.
        #[arg(
            long,
            env = "KCI_SLED_COMPRESSION_LEVEL",
            default_value_t = kernelci_store::DEFAULT_COMPRESSION_LEVEL,
            value_parser = clap::value_parser!(u8).range(0..=22)
        )]
        compression_level: u8,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Prints every setting of `serve` as resolved from the command line, the
    /// environment (and `<SECRET>_FILE` files), the config file and the defaults,
    /// secrets masked; then checks them as `serve` would. Exit status 0 when `serve`
    /// would accept them, 78 otherwise.
    Check {
        /// Check as `serve --dev` would (a development key is generated then).
        #[arg(long)]
        dev: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
enum ImportSource {
    /// From a `mongodump` directory (BSON, optionally `--gzip`) or `mongoexport`
    /// files (Extended JSON, lines or `--jsonArray`) of the reference's MongoDB
    /// database: collections `node`, `user`, `usergroup`, `eventhistory`,
    /// `subscriber_state`, `telemetry`. Ids, password hashes, event sequence ids and
    /// durable subscriber positions are kept. Documents that fail validation go to
    /// the rejects file and the import goes on; running it again after an
    /// interruption completes it (what is there is skipped). Stop a sled server
    /// first (its store is locked while in use).
    Mongo {
        /// The dump: a directory (`dump/` or `dump/kernelci/`) or one collection file.
        path: PathBuf,
        /// Where refused documents are listed, one JSON object per line.
        #[arg(long, default_value = "kernelci-import-rejects.jsonl")]
        rejects: PathBuf,
        /// Records per import call (one transaction or atomic batch each).
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Creates a verified superuser; the password is read from the terminal (without
    /// echo) or from the first line of standard input.
    Create {
        /// Username.
        #[arg(long, default_value = "admin")]
        username: String,
        /// E-mail address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        common: Common,
    },
}

/// How a command failed: the message, and the exit status it gives (besides 0 for
/// success and clap's 2 for a usage error).
#[derive(Debug)]
enum Failure {
    /// The configuration is wrong (a value, a missing secret, an unreadable file):
    /// exit status 78 (`EX_CONFIG`), so supervisors need not restart in a loop.
    Config(String),
    /// Anything else (a store, a socket, a damaged file): exit status 1.
    Runtime(String),
}

impl From<String> for Failure {
    fn from(e: String) -> Self {
        Failure::Runtime(e)
    }
}

impl Failure {
    fn exit(self) -> ExitCode {
        let (message, code) = match self {
            Failure::Config(m) => (m, 78),
            Failure::Runtime(m) => (m, 1),
        };
        eprintln!("error: {message}");
        ExitCode::from(code)
    }
}

/// The configuration: the options and the variables clap reads (`--help`), over
/// the environment's other spellings (any case, a `KCI_` prefix, `<SECRET>_FILE`),
/// over the secrets read from the files the options name, over the TOML file,
/// over the defaults.
fn layers(common: &Common) -> Result<ServerConfig, Failure> {
    layers_inner(&common.settings).map_err(Failure::Config)
}

fn layers_inner(settings: &config::Settings) -> Result<ServerConfig, String> {
    let file = match settings.config_file() {
        Some(p) => config::file_layer(&p).map_err(|e| e.to_string())?,
        None => Layer::new(),
    };
    let env = config::env_layer(std::env::vars()).map_err(|e| e.to_string())?;
    let (secret_files, given) = settings.layers().map_err(|e| e.to_string())?;
    let cfg = config::resolve(&[&file, &secret_files, &env, &given]).map_err(|e| e.to_string())?;
    // The e-mail settings are checked here, as every other, so that a bad one is a
    // configuration error (78) for `serve` and `config check` alike.
    kernelci_http::mail::Mailer::new(cfg.http.smtp.clone()).map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// jemalloc: it gives freed memory back to the system (after `dirty_decay_ms`,
/// 10 s by default), where glibc's malloc kept gigabytes after a large write.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options (its `malloc_conf`; `_RJEM_MALLOC_CONF` in the environment
/// still overrides them). `oversize_threshold:0`: jemalloc serves allocations over
/// 8 MiB from an arena that hands their pages back to the system as soon as they
/// are freed, so a query listing a large index (`kind=test` at 1M nodes: an 11 MB
/// id list) faulted in fresh pages on every request: 32 ms where the store alone
/// takes 17 ms (docs/PERFORMANCE.md). Off, such allocations reuse pages like any
/// other and go back after the same `dirty_decay_ms`. `background_thread:true`:
/// that decay runs on jemalloc's own thread; without it jemalloc purges only when
/// the program allocates or frees, so an idle server kept the pages of its last
/// large request for good (312-416 MiB after 150,000 telemetry events, and the
/// same 30 s later; with the thread about 215 MiB 8 s later:
/// kernelci-server/tests/cli.rs).
// The one exported symbol: jemalloc reads this NUL-terminated string at start-up
// (a thin pointer to its first byte, as C's `const char *malloc_conf`).
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &u8 = &b"oversize_threshold:0,background_thread:true\0"[0];

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return Failure::Runtime(format!("cannot start the runtime: {e}")).exit();
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { dev, common } => {
                let cfg = layers(&common)?;
                run_serve(cfg, dev).await
            }
            Command::Copy {
                from,
                to,
                batch_size,
                jobs,
                compression_level,
            } => Ok(copy::run(
                &from,
                &to,
                batch_size as usize,
                jobs as usize,
                compression_level,
            )
            .await?),
            Command::Config {
                command: ConfigCommand::Check { dev, common },
            } => {
                let cfg = layers(&common)?;
                for (name, value) in cfg.settings() {
                    println!("{name} = {value}");
                }
                if !dev {
                    cfg.http.validate().map_err(Failure::Config)?;
                }
                if cfg.backend == Backend::Postgres && cfg.database.url.is_none() {
                    return Err(Failure::Config(
                        "the postgres backend needs --database-url or DATABASE_URL".into(),
                    ));
                }
                println!("configuration OK");
                Ok(())
            }
            Command::Backup {
                url,
                out,
                token_file,
            } => {
                let token = match token_file {
                    Some(f) => std::fs::read_to_string(&f)
                        .map_err(|e| format!("{}: {e}", f.display()))?
                        .trim()
                        .to_owned(),
                    None => std::env::var("KCI_TOKEN").map_err(|_| {
                        "an administrator's token is needed: set KCI_TOKEN or --token-file"
                            .to_string()
                    })?,
                };
                let end = backup::backup(&url, &token, &out).await?;
                println!(
                    "backup of {url} in {}: {}",
                    out.display(),
                    counts_text(&end)
                );
                Ok(())
            }
            Command::Verify { file: None, common } => {
                let cfg = layers(&common)?;
                let store = open_sled_offline(&cfg)?;
                let report = store.verify().map_err(|e| e.to_string());
                store.close().map_err(|e| e.to_string())?;
                let report = report?;
                println!(
                    "{}: {} nodes, {} index entries checked",
                    cfg.data_dir.display(),
                    report.nodes,
                    report.entries
                );
                if report.is_clean() {
                    println!("the store is consistent");
                    Ok(())
                } else {
                    for p in &report.problems {
                        println!("problem: {p}");
                    }
                    Err(Failure::Runtime(format!(
                        "{} problems found: run `kernelci-server rebuild-indexes` (documents \
                         that do not decode need a backup)",
                        report.problems.len()
                    )))
                }
            }
            Command::RebuildIndexes { common } => {
                let cfg = layers(&common)?;
                let store = open_sled_offline(&cfg)?;
                let rebuilt = store.rebuild_indexes().await.map_err(|e| e.to_string());
                let report = store.verify().map_err(|e| e.to_string());
                store.close().map_err(|e| e.to_string())?;
                rebuilt?;
                let report = report?;
                println!(
                    "indexes rebuilt: {} nodes, {} index entries; {}",
                    report.nodes,
                    report.entries,
                    if report.is_clean() {
                        "the store is consistent".to_owned()
                    } else {
                        format!("{} problems remain", report.problems.len())
                    }
                );
                Ok(())
            }
            Command::Verify {
                file: Some(file), ..
            } => {
                let (header, end) = backup::verify(&file)?;
                println!(
                    "{}: a complete backup (format version {}, taken {} from {}): {}",
                    file.display(),
                    header.version,
                    header.created,
                    header.source,
                    counts_text(&end)
                );
                Ok(())
            }
            Command::Restore {
                file,
                batch_size,
                common,
            } => {
                let cfg = layers(&common)?;
                let (store, sled) = open_store(&cfg).await?;
                let result = backup::restore(&file, store.as_ref(), batch_size as usize).await;
                drop(store);
                if let Some(s) = sled.and_then(|s| Arc::try_unwrap(s).ok()) {
                    s.close().map_err(|e| e.to_string())?;
                }
                let end = result?;
                println!("restored {}: {}", file.display(), counts_text(&end));
                Ok(())
            }
            Command::Import {
                source:
                    ImportSource::Mongo {
                        path,
                        rejects,
                        batch_size,
                        common,
                    },
            } => {
                let cfg = layers(&common)?;
                let (store, sled) = open_store(&cfg).await?;
                let result =
                    import::run(&path, store.as_ref(), batch_size as usize, &rejects).await;
                drop(store);
                if let Some(s) = sled.and_then(|s| Arc::try_unwrap(s).ok()) {
                    s.close().map_err(|e| e.to_string())?;
                }
                let summary = result?;
                print!("{}", summary.report());
                if summary.rejected() > 0 {
                    println!(
                        "{} documents refused: see {}",
                        summary.rejected(),
                        rejects.display()
                    );
                }
                Ok(())
            }
            Command::Admin {
                command:
                    AdminCommand::Create {
                        username,
                        email,
                        common,
                    },
            } => {
                let cfg = layers(&common)?;
                let password = dev::read_password()?;
                let (store, sled) = open_store(&cfg).await?;
                let result = dev::admin_create(store.as_ref(), &username, &email, &password).await;
                drop(store);
                if let Some(s) = sled.and_then(|s| Arc::try_unwrap(s).ok()) {
                    s.close().map_err(|e| e.to_string())?;
                }
                Ok(result?)
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.exit(),
    }
}

/// The sled store of `cfg`'s data directory, which must exist, for offline
/// commands (a running server holds its lock: the error says so).
fn open_sled_offline(cfg: &ServerConfig) -> Result<SledStore, String> {
    if cfg.backend != Backend::Sled {
        return Err(
            "this command works on a sled data directory; for PostgreSQL use \
                    the database's own tools"
                .into(),
        );
    }
    if !cfg.data_dir.join("db").exists() && !cfg.data_dir.join("conf").exists() {
        return Err(format!("{}: no sled store there", cfg.data_dir.display()));
    }
    SledStore::open(&cfg.data_dir, cfg.sled).map_err(|e| {
        if e.to_string().contains("could not acquire lock") {
            format!(
                "the store in {} is in use (is a server running on it? stop it first)",
                cfg.data_dir.display()
            )
        } else {
            format!("cannot open the store in {}: {e}", cfg.data_dir.display())
        }
    })
}

/// `records: 12 (nodes 10, users 2)`.
fn counts_text(end: &backup::format::End) -> String {
    let parts: Vec<String> = end
        .sections
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    format!("{} records ({})", end.records, parts.join(", "))
}

/// An open store, and for sled also the handle to close it at exit.
type Opened = (Arc<dyn Store>, Option<Arc<SledStore>>);

/// The store of `cfg`.
async fn open_store(cfg: &ServerConfig) -> Result<Opened, Failure> {
    match cfg.backend {
        Backend::Memory => Ok((Arc::new(MemoryStore::new()), None)),
        Backend::Postgres => {
            let url = cfg.database.url.clone().ok_or_else(|| {
                Failure::Config("the postgres backend needs --database-url or DATABASE_URL".into())
            })?;
            let mut pg = PgConfig::new(url);
            pg.pool_size = cfg.database.pool_size;
            pg.statement_timeout = (cfg.database.statement_timeout_seconds > 0)
                .then(|| std::time::Duration::from_secs(cfg.database.statement_timeout_seconds));
            let store = PgStore::open(&pg)
                .await
                .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
            Ok((Arc::new(store), None))
        }
        Backend::Sled => {
            std::fs::create_dir_all(&cfg.data_dir)
                .map_err(|e| format!("cannot create {}: {e}", cfg.data_dir.display()))?;
            let s = Arc::new(SledStore::open(&cfg.data_dir, cfg.sled).map_err(|e| {
                format!("cannot open the store in {}: {e}", cfg.data_dir.display())
            })?);
            if s.is_compressed() != (cfg.sled.compression_level > 0) {
                tracing::info!(
                    compressed = s.is_compressed(),
                    "the store keeps the compression it was created with \
                     (sled_compression_level applies to new stores)"
                );
            }
            Ok((s.clone() as Arc<dyn Store>, Some(s)))
        }
    }
}

async fn run_serve(mut cfg: ServerConfig, dev_mode: bool) -> Result<(), Failure> {
    let mut hint = None;
    if dev_mode {
        let secrets = dev::dev_secrets(&cfg)?;
        if cfg.http.secret_key.is_empty() {
            cfg.http.secret_key = secrets.secret_key.clone();
        }
        if cfg.initial_admin.is_none() {
            cfg.initial_admin = Some((
                "admin".into(),
                "admin@kernelci.org".into(),
                secrets.admin_password.clone(),
            ));
            hint = Some(secrets.admin_password);
        }
    }
    if let Some((username, email, password)) = &cfg.initial_admin {
        cfg.http.initial_admin = Some(kernelci_http::InitialAdmin {
            username: username.clone(),
            email: email.clone(),
            password: password.clone(),
        });
    }
    cfg.http.validate().map_err(Failure::Config)?;
    let (store, sled) = open_store(&cfg).await?;
    // The initial administrator (if configured) is created by `serve` before it
    // accepts connections.
    let state = AppState::new(store, cfg.http.clone()).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let shutdown = shutdown_signal();
    println!("kernelci-server listening on http://{addr}");
    match cfg.backend {
        Backend::Sled => println!("data directory: {}", cfg.data_dir.display()),
        Backend::Memory => println!("backend: memory (nothing is kept after exit)"),
        Backend::Postgres => println!("backend: postgres"),
    }
    if let Some(password) = hint {
        println!(
            "development mode: log in as admin with\n  curl -s -d username=admin -d password={password} http://{addr}/latest/user/login"
        );
    }
    serve(listener, state, shutdown)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(sled) = sled {
        // Every request task is done: this is the last handle. Closing writes the
        // index snapshot so the next start is fast.
        match Arc::try_unwrap(sled) {
            Ok(s) => s.close().map_err(|e| e.to_string())?,
            Err(_) => tracing::warn!("store still in use at exit; it was flushed, not closed"),
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits for SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled: the caller calls it before it says it
/// listens, so a signal sent as soon as the server answers is never missed (the
/// default action would kill the process without the graceful stop).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {},
                _ = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

#[cfg(test)]
mod allocator_tests {
    use std::ffi::CStr;

    /// jemalloc's option `name`, read into a `T` starting as `init`.
    ///
    /// # Safety
    /// `T` must be the option's C type (`size_t` as `usize`, `bool` as `bool`).
    #[allow(unsafe_code)]
    unsafe fn option<T>(name: &CStr, mut init: T) -> T {
        let mut len = std::mem::size_of::<T>();
        // SAFETY: the caller's promise: `init` and `len` describe a buffer of the
        // option's type and size; nothing is written to jemalloc.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                std::ptr::addr_of_mut!(init).cast(),
                &mut len,
                std::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(rc, 0, "mallctl {name:?}");
        init
    }

    /// jemalloc took our `malloc_conf`: large allocations are not purged at once,
    /// and freed pages are purged by jemalloc's thread, also when the server is idle.
    #[test]
    #[allow(unsafe_code)]
    fn jemalloc_reads_the_exported_options() {
        // SAFETY: `opt.oversize_threshold` is a size_t, `opt.background_thread` a bool.
        let (threshold, background) = unsafe {
            (
                option(c"opt.oversize_threshold", usize::MAX),
                option(c"opt.background_thread", false),
            )
        };
        assert_eq!(threshold, 0);
        assert!(background, "jemalloc purges on a thread of its own");
        // SAFETY: `background_thread` (the thread's state, not the option asked
        // for) is a bool.
        let running = unsafe { option(c"background_thread", false) };
        assert!(running, "jemalloc's background thread is enabled");
    }
}
