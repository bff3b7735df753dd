//! `kernelci-server import mongo PATH`: the data of a reference (kernelci-api)
//! instance, from a `mongodump` or `mongoexport` of its MongoDB database, into the
//! store the usual settings select.
//!
//! - [`dump`] finds the collection files and streams their documents;
//! - [`convert`] turns each document into one of our records, or says why not;
//! - this module writes the records in batches through the store's import API
//!   ([`Store::import_records`]: idempotent by key, atomic per call), writes every
//!   refused document to the rejects file (one JSON line: collection, id, byte
//!   offset, reason), shows progress, and returns the counts per collection.
//!
//! Ids, datetimes (milliseconds), password hashes, groups and memberships, event
//! sequence ids and durable subscriber positions are kept, so clients' ids, logins
//! and pipeline services' `subscriber_id`s go on working. The event sequence goes
//! on after the highest imported one (the reference counts it in Redis, which a
//! dump does not hold). A batch the store refuses (a username that another id holds
//! already...) is retried one record at a time, so that only the offending record
//! is rejected. Running the import again after an interruption completes it: what
//! is there already is counted as skipped.

pub mod convert;
pub mod dump;

use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kernelci_core::store::{ImportStats, Record, Store};

use convert::Collection;
use dump::{CollectionFile, Documents, Item};

/// Counts of one collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Documents read.
    pub read: u64,
    /// Records written.
    pub imported: u64,
    /// Documents refused (in the rejects file).
    pub rejected: u64,
    /// Records already in the store.
    pub skipped: u64,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Counts per collection, in import order.
    pub collections: Vec<(Collection, Counts)>,
    /// The highest event sequence id imported.
    pub last_sequence: u64,
}

impl Summary {
    /// The report printed at the end: one line per collection.
    pub fn report(&self) -> String {
        let mut out = format!(
            "{:<17} {:>10} {:>10} {:>10} {:>10}\n",
            "collection", "read", "imported", "rejected", "skipped"
        );
        for (c, n) in &self.collections {
            out.push_str(&format!(
                "{:<17} {:>10} {:>10} {:>10} {:>10}\n",
                c.name(),
                n.read,
                n.imported,
                n.rejected,
                n.skipped
            ));
        }
        out
    }

    /// Documents refused in all.
    pub fn rejected(&self) -> u64 {
        self.collections.iter().map(|(_, n)| n.rejected).sum()
    }
}

/// The rejects file: one JSON object per refused document.
struct Rejects {
    out: BufWriter<std::fs::File>,
}

impl Rejects {
    fn write(
        &mut self,
        c: Collection,
        id: Option<String>,
        offset: Option<u64>,
        reason: &str,
    ) -> Result<(), String> {
        let line = serde_json::json!({
            "collection": c.name(), "id": id, "offset": offset, "reason": reason,
        });
        writeln!(self.out, "{line}").map_err(|e| format!("rejects file: {e}"))
    }
}

/// Progress of one collection file: a status line redrawn in place on a terminal,
/// a plain line every few seconds otherwise (shared shape with `copy`).
struct Progress {
    label: &'static str,
    size: u64,
    started: Instant,
    last_draw: Instant,
    tty: bool,
}

impl Progress {
    fn new(label: &'static str, size: u64) -> Self {
        let now = Instant::now();
        Progress {
            label,
            size,
            started: now,
            last_draw: now,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn line(&self, bytes: u64, docs: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let pct = if self.size == 0 {
            100.0
        } else {
            (bytes as f64 * 100.0 / self.size as f64).min(100.0)
        };
        let rate = bytes as f64 / secs;
        let eta = if rate > 0.0 && self.size > bytes {
            format!(", ETA {:.0}s", (self.size - bytes) as f64 / rate)
        } else {
            String::new()
        };
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64).round().min(width as f64) as usize;
        format!(
            "{:<17} [{}{}] {pct:.0}%, {docs} documents, {:.0}/s{eta}",
            self.label,
            "#".repeat(filled),
            "-".repeat(width - filled),
            docs as f64 / secs
        )
    }

    fn advance(&mut self, bytes: u64, docs: u64) {
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        if self.last_draw.elapsed() >= every {
            self.last_draw = Instant::now();
            self.draw(bytes, docs, false);
        }
    }

    fn draw(&self, bytes: u64, docs: u64, last: bool) {
        let mut err = std::io::stderr();
        let line = self.line(bytes, docs);
        let _ = match (self.tty, last) {
            (true, false) => write!(err, "\r{line}\x1b[K"),
            (true, true) => writeln!(err, "\r{line}\x1b[K"),
            (false, _) => writeln!(err, "{line}"),
        };
        let _ = err.flush();
    }
}

/// Imports the dump at `path` into `store`, `batch` records per import call,
/// refused documents to `rejects`. Errors are messages for the operator (a file
/// that cannot be read on, a store failure); refused documents are not errors.
pub async fn run(
    path: &Path,
    store: &dyn Store,
    batch: usize,
    rejects: &Path,
) -> Result<Summary, String> {
    let files = dump::discover(path)?;
    let out = std::fs::File::create(rejects)
        .map_err(|e| format!("cannot create {}: {e}", rejects.display()))?;
    let mut rejects = Rejects {
        out: BufWriter::new(out),
    };
    let mut summary = Summary::default();
    for file in &files {
        let counts = import_file(file, store, batch.max(1), &mut rejects, &mut summary).await?;
        summary.collections.push((file.collection, counts));
    }
    if summary.last_sequence > 0 {
        store
            .import_records(&[Record::EventSequence(summary.last_sequence)])
            .await
            .map_err(|e| format!("event sequence: {e}"))?;
    }
    rejects
        .out
        .flush()
        .map_err(|e| format!("rejects file: {e}"))?;
    store.flush().await.map_err(|e| e.to_string())?;
    Ok(summary)
}

/// What the reading thread hands the writer: one batch of converted documents and
/// the refusals met while reading it.
#[derive(Default)]
struct Batch {
    /// The records, and the `_id` of each (for the rejects file).
    records: Vec<Record>,
    ids: Vec<Option<String>>,
    /// Refused while reading or converting: (`_id`, byte offset, reason).
    refused: Vec<(Option<String>, Option<u64>, String)>,
    /// Documents read.
    read: u64,
    /// The highest event sequence id in the batch.
    last_sequence: u64,
    /// Bytes of the file read when the batch was cut.
    bytes: u64,
}

/// Reads and converts `file` on its own thread, `batch` documents at a time, so
/// that converting the next batch overlaps with writing this one; at most two
/// batches wait (memory stays bounded). A fatal read error is the last message.
fn read_batches(
    file: &CollectionFile,
    batch: usize,
) -> Result<tokio::sync::mpsc::Receiver<Result<Batch, String>>, String> {
    let c = file.collection;
    let mut docs = Documents::open(file)?;
    let path = file.path.display().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    std::thread::Builder::new()
        .name(format!("import-{}", c.name()))
        .spawn(move || loop {
            let mut b = Batch::default();
            for item in docs.by_ref().take(batch) {
                b.read += 1;
                match item {
                    Item::Doc(d) => match convert::convert(c, &d) {
                        Ok(r) => {
                            if let Record::Event(e) = &r {
                                b.last_sequence = b.last_sequence.max(e.sequence_id);
                            }
                            b.records.push(r);
                            b.ids.push(convert::id_text(&d));
                        }
                        Err(reason) => b.refused.push((convert::id_text(&d), None, reason)),
                    },
                    Item::Bad { offset, reason } => b.refused.push((None, Some(offset), reason)),
                    Item::Fatal(e) => {
                        let _ = tx.blocking_send(Err(format!("{path}: {e}")));
                        return;
                    }
                }
            }
            if b.read == 0 {
                return;
            }
            b.bytes = docs.bytes_read.load(Ordering::Relaxed);
            if tx.blocking_send(Ok(b)).is_err() {
                return;
            }
        })
        .map_err(|e| format!("cannot start a reading thread: {e}"))?;
    Ok(rx)
}

async fn import_file(
    file: &CollectionFile,
    store: &dyn Store,
    batch: usize,
    rejects: &mut Rejects,
    summary: &mut Summary,
) -> Result<Counts, String> {
    let c = file.collection;
    let mut batches = read_batches(file, batch)?;
    let mut progress = Progress::new(c.name(), file.size);
    let mut counts = Counts::default();
    let mut bytes = 0;
    while let Some(b) = batches.recv().await {
        let b = b?;
        counts.read += b.read;
        bytes = b.bytes;
        summary.last_sequence = summary.last_sequence.max(b.last_sequence);
        for (id, offset, reason) in &b.refused {
            counts.rejected += 1;
            rejects.write(c, id.clone(), *offset, reason)?;
        }
        write_batch(c, store, &b, &mut counts, rejects).await?;
        progress.advance(bytes, counts.read);
    }
    progress.draw(bytes.max(file.size), counts.read, true);
    Ok(counts)
}

/// Writes a batch in one import call; if the store refuses the call, one record
/// at a time, rejecting those it refuses (a store that is down stops the import).
async fn write_batch(
    c: Collection,
    store: &dyn Store,
    b: &Batch,
    counts: &mut Counts,
    rejects: &mut Rejects,
) -> Result<(), String> {
    if b.records.is_empty() {
        return Ok(());
    }
    let refused = |e: &kernelci_core::Error| {
        matches!(
            e,
            kernelci_core::Error::Conflict(_) | kernelci_core::Error::Invalid(_)
        )
    };
    match store.import_records(&b.records).await {
        Ok(stats) => add(counts, stats),
        Err(e) if refused(&e) => {
            for (r, id) in b.records.iter().zip(&b.ids) {
                match store.import_records(std::slice::from_ref(r)).await {
                    Ok(stats) => add(counts, stats),
                    Err(e) if refused(&e) => {
                        counts.rejected += 1;
                        rejects.write(c, id.clone(), None, &e.to_string())?;
                    }
                    Err(e) => return Err(format!("{}: {e}", c.name())),
                }
            }
        }
        Err(e) => return Err(format!("{}: {e}", c.name())),
    }
    Ok(())
}

fn add(counts: &mut Counts, stats: ImportStats) {
    counts.imported += stats.imported;
    counts.skipped += stats.skipped_existing;
}
