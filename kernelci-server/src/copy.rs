//! `kernelci-server copy --from SPEC --to SPEC`: every record of one store into
//! another, through the store's export/import API
//! ([`Store::export_records`], [`Store::import_records`]).
//!
//! Each section is streamed in batches (one export page, then one import call: one
//! transaction or atomic batch on the target). Progress goes to standard error: a
//! status line with rate and ETA redrawn in place on a terminal, plain lines every
//! few seconds otherwise. (Drawn by hand: one line with a rate and an ETA does not
//! need a progress-bar crate and its terminal dependencies.) At the end the records
//! of every section are counted in both stores and any difference fails the copy.
//!
//! The import is idempotent (see [`Store::import_records`]), so a copy that was
//! interrupted is completed by running it again: what is there is skipped.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kernelci_core::store::{ImportStats, Section, Store};
use kernelci_store::postgres::{PgConfig, PgStore};
use kernelci_store::{MemoryStore, SledConfig, SledStore};

/// Where a copy reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `sled:DIR`.
    Sled(PathBuf),
    /// `postgres:URL` (or a bare `postgres://` / `postgresql://` URL).
    Postgres(String),
    /// `memory:` (an empty, volatile store: for tests).
    Memory,
}

impl std::str::FromStr for Spec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Spec::Postgres(s.to_owned()));
        }
        match s.split_once(':') {
            Some(("sled", dir)) if !dir.is_empty() => Ok(Spec::Sled(PathBuf::from(dir))),
            Some(("postgres", url)) if !url.is_empty() => Ok(Spec::Postgres(url.to_owned())),
            Some(("memory", "")) => Ok(Spec::Memory),
            _ => Err(format!(
                "{s:?}: use sled:DIR, postgres:URL or memory: as a store"
            )),
        }
    }
}

impl std::fmt::Display for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spec::Sled(d) => write!(f, "sled:{}", d.display()),
            // The URL may hold a password.
            Spec::Postgres(_) => f.write_str("postgres"),
            Spec::Memory => f.write_str("memory:"),
        }
    }
}

/// An open store and, for sled, the handle to close it.
struct Opened {
    store: Arc<dyn Store>,
    sled: Option<Arc<SledStore>>,
}

impl Opened {
    fn close(self) -> Result<(), String> {
        let Opened { store, sled } = self;
        drop(store);
        if let Some(s) = sled.and_then(|s| Arc::try_unwrap(s).ok()) {
            s.close().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Opens `spec`; a sled store created here is compressed at `level` (0: not).
async fn open(spec: &Spec, source: bool, level: u8) -> Result<Opened, String> {
    match spec {
        Spec::Memory => Ok(Opened {
            store: Arc::new(MemoryStore::new()),
            sled: None,
        }),
        Spec::Postgres(url) => {
            let store = PgStore::open(&PgConfig::new(url.clone()))
                .await
                .map_err(|e| format!("cannot open the PostgreSQL database: {e}"))?;
            Ok(Opened {
                store: Arc::new(store),
                sled: None,
            })
        }
        Spec::Sled(dir) => {
            if source && !dir.join("db").exists() && !dir.join("conf").exists() {
                return Err(format!("{}: no sled store there", dir.display()));
            }
            if !source {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let config = SledConfig {
                compression_level: level,
                ..SledConfig::default()
            };
            let s = SledStore::open(dir, config).map_err(|e| {
                if e.to_string().contains("could not acquire lock") {
                    format!(
                        "the sled store in {} is in use (is a server running on it? stop it \
                         first)",
                        dir.display()
                    )
                } else {
                    format!("cannot open the store in {}: {e}", dir.display())
                }
            })?;
            let s = Arc::new(s);
            Ok(Opened {
                store: s.clone(),
                sled: Some(s),
            })
        }
    }
}

/// The status line of one section.
struct Progress {
    section: Section,
    total: u64,
    done: u64,
    started: Instant,
    last_draw: Instant,
    tty: bool,
}

impl Progress {
    fn new(section: Section, total: u64) -> Self {
        let now = Instant::now();
        Self {
            section,
            total,
            done: 0,
            started: now,
            last_draw: now,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let pct = if self.total == 0 {
            100.0
        } else {
            self.done as f64 * 100.0 / self.total as f64
        };
        let eta = if rate > 0.0 && self.total > self.done {
            format!(", ETA {:.0}s", (self.total - self.done) as f64 / rate)
        } else {
            String::new()
        };
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64).round().min(width as f64) as usize;
        format!(
            "{:<11} [{}{}] {}/{} ({pct:.0}%), {rate:.0}/s{eta}",
            self.section.name(),
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.done,
            self.total
        )
    }

    fn advance(&mut self, n: u64) {
        self.done += n;
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last_draw.elapsed() >= every {
            self.last_draw = Instant::now();
            let mut err = std::io::stderr();
            if self.tty {
                let _ = write!(err, "\r{}\x1b[K", self.line());
            } else {
                let _ = writeln!(err, "{}", self.line());
            }
            let _ = err.flush();
        }
    }

    fn finish(&self, stats: ImportStats) {
        let mut err = std::io::stderr();
        let done = format!(
            "{} in {:.1}s: {} imported, {} already there",
            self.line(),
            self.started.elapsed().as_secs_f64(),
            stats.imported,
            stats.skipped_existing
        );
        if self.tty {
            let _ = writeln!(err, "\r{done}\x1b[K");
        } else {
            let _ = writeln!(err, "{done}");
        }
    }
}

/// Copies every section of `from` into `to`, `batch` records at a time (up to `jobs`
/// node or telemetry batches written at once), then compares the counts of every
/// section. Errors are messages for the operator.
pub async fn run(
    from: &Spec,
    to: &Spec,
    batch: usize,
    jobs: usize,
    compression_level: u8,
) -> Result<(), String> {
    if from == to {
        return Err("--from and --to are the same store".into());
    }
    let source = open(from, true, compression_level).await?;
    let target = match open(to, false, compression_level).await {
        Ok(t) => t,
        Err(e) => {
            source.close()?;
            return Err(e);
        }
    };
    let result = copy(source.store.as_ref(), &target.store, batch, jobs).await;
    let flushed = target.store.flush().await.map_err(|e| e.to_string());
    source.close()?;
    target.close()?;
    flushed?;
    let mismatches = result?;
    if mismatches.is_empty() {
        println!("copy from {from} to {to}: verified, every section has the same count");
        Ok(())
    } else {
        Err(format!(
            "copy from {from} to {to}: counts differ after the copy: {} (was the target \
             not empty, or the source written during the copy?)",
            mismatches.join("; ")
        ))
    }
}

/// The copy proper; returns the sections whose counts differ.
async fn copy(
    source: &dyn Store,
    target: &Arc<dyn Store>,
    batch: usize,
    jobs: usize,
) -> Result<Vec<String>, String> {
    let err =
        |what: &str, section: Section, e: kernelci_core::Error| format!("{section}: {what}: {e}");
    let mut report = Vec::new();
    for section in Section::ALL {
        let total = source
            .count_records(section)
            .await
            .map_err(|e| err("counting the source", section, e))?;
        let mut progress = Progress::new(section, total);
        let mut stats = ImportStats::default();
        let mut cursor = None;
        // Nodes and telemetry records are independent of each other (their import
        // is idempotent by id, in any order): several batches are written at once.
        // The other sections keep their order (queue positions, event sequence).
        let width = match section {
            Section::Nodes | Section::Telemetry => jobs.max(1),
            _ => 1,
        };
        let mut writing: tokio::task::JoinSet<Written> = tokio::task::JoinSet::new();
        loop {
            let (records, next) = source
                .export_records(section, cursor.as_ref(), batch)
                .await
                .map_err(|e| err("reading the source", section, e))?;
            if !records.is_empty() {
                while writing.len() >= width {
                    let (s, n) = joined(writing.join_next().await)
                        .map_err(|e| err("writing the target", section, e))?;
                    stats += s;
                    progress.advance(n);
                }
                let target = target.clone();
                writing.spawn(async move {
                    let n = records.len() as u64;
                    Ok((target.import_records(&records).await?, n))
                });
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        while !writing.is_empty() {
            let (s, n) = joined(writing.join_next().await)
                .map_err(|e| err("writing the target", section, e))?;
            stats += s;
            progress.advance(n);
        }
        progress.finish(stats);
        let exported = progress.done;
        let (s, t) = (
            source
                .count_records(section)
                .await
                .map_err(|e| err("counting the source", section, e))?,
            target
                .count_records(section)
                .await
                .map_err(|e| err("counting the target", section, e))?,
        );
        println!(
            "{section:<11} source {s:>10}  target {t:>10}  imported {:>10}  already there {:>10}",
            stats.imported, stats.skipped_existing
        );
        if s != t || exported != s {
            report.push(format!(
                "{section}: source {s}, target {t}, {exported} copied"
            ));
        }
    }
    Ok(report)
}

/// What an import task answers: its stats and how many records it was given.
type Written = Result<(ImportStats, u64), kernelci_core::Error>;

/// The result of a finished import task (a panic or cancellation is a storage
/// error).
fn joined(r: Option<Result<Written, tokio::task::JoinError>>) -> Written {
    match r {
        Some(Ok(r)) => r,
        Some(Err(e)) => Err(kernelci_core::Error::Storage(format!("import task: {e}"))),
        None => Ok((ImportStats::default(), 0)),
    }
}
