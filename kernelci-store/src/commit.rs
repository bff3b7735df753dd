//! Group commit: writers share `fsync`s.
//!
//! A writer applies its batch (visible at once to readers), takes a ticket (the
//! number of batches applied so far), wakes the flusher thread and waits until a
//! flush that *started after* its batch was applied has finished. The flusher reads
//! the ticket counter, flushes (the space's `flush`: every batch applied before it,
//! still pending in the overlay of `kv::pending`, handed to sled as one batch, then
//! sled's `flush`: all of it on disk when it returns), and publishes the ticket it
//! covered: every writer whose ticket is at most that number is durable. N
//! concurrent writers thus share one sled batch and one flush instead of paying N.
//!
//! A flush that finds several writers waiting first waits a moment (the commit
//! delay) for those still on their way, as PostgreSQL's `commit_delay` does: every
//! flush costs sled's I/O thread pool the same few buffer writes and wake-ups,
//! whatever it carries, so under load fewer, fuller flushes leave more CPU to the
//! writers (measured in docs/PERFORMANCE.md).
//!
//! What "on disk" means: sled 0.34 flushes its log with `sync_file_range`, which
//! writes the pages but neither the file's metadata nor the drive's volatile write
//! cache, and it writes large pages to blob files without any sync. That survives a
//! killed process (the kernel holds the pages) but not a power loss or a kernel
//! crash. With [`DataSync`] (the default), each flush is followed by `fsync` of the
//! blob files new since the last one and of their directory, then `fdatasync` of
//! the log: an acknowledged write is then on stable storage as the drive reports it.
//!
//! In relaxed mode ([`Durability::FlushEvery`]) writers do not wait; the flusher
//! flushes at most that long after a write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;
use crate::kv::{Kv, SledKv};

/// When a write method of a durable store returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// On disk when the method returns (group commit). The default.
    #[default]
    Durable,
    /// Applied (visible) when the method returns, on disk within this long: for bulk
    /// loads. A crash may lose the last writes.
    FlushEvery(Duration),
}

/// How many writers must be waiting for a flush to wait its commit delay first (as
/// PostgreSQL's `commit_siblings`): a lone writer is never delayed.
pub(crate) const COMMIT_SIBLINGS: u64 = 2;

/// The default commit delay: chosen with `http_bench` (docs/PERFORMANCE.md).
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_micros(75);

/// Makes what sled flushed survive a power loss (see the module docs).
pub(crate) struct DataSync {
    log: std::fs::File,
    blobs: std::path::PathBuf,
    /// The blob files already synced.
    synced: std::collections::HashSet<std::ffi::OsString>,
}

impl DataSync {
    /// For the sled database in `dir`: syncs the directory itself once (so the files
    /// sled created there are reachable after a power loss).
    pub(crate) fn open(dir: &std::path::Path) -> std::io::Result<Self> {
        std::fs::File::open(dir)?.sync_all()?;
        let mut sync = Self {
            log: std::fs::File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            synced: Default::default(),
        };
        sync.sync()?;
        Ok(sync)
    }

    /// New blob files and their directory, then the log.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        let mut live = std::collections::HashSet::new();
        let mut new = false;
        match std::fs::read_dir(&self.blobs) {
            Ok(entries) => {
                for e in entries {
                    let e = e?;
                    let name = e.file_name();
                    if !self.synced.contains(&name) {
                        match std::fs::File::open(e.path()) {
                            Ok(f) => f.sync_all()?,
                            // Collected by sled meanwhile: nothing to keep.
                            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(err) => return Err(err),
                        }
                        new = true;
                    }
                    live.insert(name);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if new {
            std::fs::File::open(&self.blobs)?.sync_all()?;
        }
        self.synced = live;
        self.log.sync_data()
    }

    /// How many blob files have been synced and are still there.
    #[cfg(test)]
    pub(crate) fn blobs_synced(&self) -> usize {
        self.synced.len()
    }
}

/// What the flusher has done so far.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Flushed {
    /// Every ticket up to this one is on disk (a successful flush covered it).
    durable: u64,
    /// The last failed flush covered tickets up to this one...
    failed: u64,
    /// ...and failed with this error.
    error: Option<String>,
}

struct Shared {
    applied: AtomicU64,
    wake: Mutex<bool>,
    cond: Condvar,
    stop: AtomicBool,
}

/// The group committer of one sled database.
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
    flushed: watch::Receiver<Flushed>,
    mode: Durability,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the flusher of `kv`. In durable mode, a flush that finds at least
    /// [`COMMIT_SIBLINGS`] writers waiting first waits `delay` for more to join.
    /// With `sync`, every flush is made power-loss durable (see [`DataSync`]).
    pub(crate) fn start(
        kv: SledKv,
        mode: Durability,
        delay: Duration,
        sync: Option<DataSync>,
    ) -> Self {
        let shared = Arc::new(Shared {
            applied: AtomicU64::new(0),
            wake: Mutex::new(false),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = watch::channel(Flushed::default());
        let s = Arc::clone(&shared);
        let period = match mode {
            Durability::Durable => None,
            Durability::FlushEvery(d) => Some(d),
        };
        let thread = std::thread::Builder::new()
            .name("kernelci-store-flush".into())
            .spawn(move || flusher(kv, s, tx, period, delay, sync))
            .ok();
        Self {
            shared,
            flushed: rx,
            mode,
            thread: Mutex::new(thread),
        }
    }

    /// Called after a batch was applied: returns when it is durable (or at once in
    /// relaxed mode).
    pub(crate) async fn committed(&self) -> Result<(), StoreError> {
        let ticket = self.shared.applied.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut pending) = self.shared.wake.lock() {
            *pending = true;
            self.shared.cond.notify_one();
        }
        if self.mode != Durability::Durable {
            return Ok(());
        }
        let mut rx = self.flushed.clone();
        // Wait for a flush that started after this batch was applied: a successful
        // one makes it durable; a failed one is reported (an older failure is not).
        let state = rx
            .wait_for(|f| f.durable >= ticket || f.failed >= ticket)
            .await
            .map_err(|_| StoreError::Task("the flusher stopped".into()))?;
        if state.durable >= ticket {
            Ok(())
        } else {
            Err(StoreError::Task(format!(
                "flush failed: {}",
                state.error.as_deref().unwrap_or("unknown error")
            )))
        }
    }

    /// Stops the flusher after a last flush covering every write applied before
    /// the call (also one applied while an earlier flush was running).
    pub(crate) fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(mut pending) = self.shared.wake.lock() {
            *pending = true;
            self.shared.cond.notify_one();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

fn flusher(
    kv: SledKv,
    s: Arc<Shared>,
    tx: watch::Sender<Flushed>,
    period: Option<Duration>,
    delay: Duration,
    mut sync: Option<DataSync>,
) {
    // The tickets the last flush covered up to.
    let mut last = 0u64;
    loop {
        {
            let Ok(mut pending) = s.wake.lock() else {
                return;
            };
            while !*pending && !s.stop.load(Ordering::SeqCst) {
                pending = match s.cond.wait(pending) {
                    Ok(p) => p,
                    Err(_) => return,
                };
            }
            *pending = false;
        }
        if let Some(p) = period {
            // Relaxed mode: let writes accumulate for up to one period.
            if !s.stop.load(Ordering::SeqCst) {
                std::thread::sleep(p);
            }
        }
        // Several writers waiting: others are likely on their way, so give them a
        // moment to join this flush (each flush costs sled's I/O pool three
        // buffer writes and a wake-up of all its threads, whatever it carries).
        let waiting = s.applied.load(Ordering::SeqCst).saturating_sub(last);
        if period.is_none() && !delay.is_zero() && waiting >= COMMIT_SIBLINGS {
            std::thread::sleep(delay);
        }
        let ticket = s.applied.load(Ordering::SeqCst);
        last = ticket;
        let flushed = kv.flush().and_then(|()| match sync.as_mut() {
            Some(d) => d.sync().map_err(StoreError::from),
            None => Ok(()),
        });
        match flushed {
            Ok(_) => tx.send_modify(|f| f.durable = f.durable.max(ticket)),
            Err(e) => tx.send_modify(|f| {
                f.failed = f.failed.max(ticket);
                f.error = Some(e.to_string());
            }),
        }
        // Stopping: done once a flush covered every write applied so far. A write
        // applied while this flush ran (after its ticket was read) needs one more
        // flush, or a store dropped without `close` would lose it.
        if s.stop.load(Ordering::SeqCst) && s.applied.load(Ordering::SeqCst) <= ticket {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_sync_syncs_each_new_blob_file_and_the_log() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut sync = DataSync::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let blobs = || {
            std::fs::read_dir(dir.path().join("blobs"))
                .map(|d| d.count())
                .unwrap_or(0)
        };
        // A value over sled's blob threshold goes to a file of its own.
        db.insert(b"big", vec![5u8; 300 * 1024])
            .unwrap_or_else(|e| panic!("{e}"));
        db.flush().unwrap_or_else(|e| panic!("{e}"));
        assert!(blobs() >= 1, "sled wrote no blob file");
        sync.sync().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sync.blobs_synced(), blobs());
        // Files sled removed are forgotten.
        db.remove(b"big").unwrap_or_else(|e| panic!("{e}"));
        db.flush().unwrap_or_else(|e| panic!("{e}"));
        sync.sync().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sync.blobs_synced(), blobs());
    }
}
