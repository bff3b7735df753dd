//! Group commit: writers share `fsync`s.
//!
//! A writer applies its batch (visible at once to readers), takes a ticket (the
//! number of batches applied so far), wakes the flusher thread and waits until a
//! flush that *started after* its batch was applied has finished. The flusher reads
//! the ticket counter, flushes (sled's `flush`: everything applied before it is on
//! disk when it returns), and publishes the ticket it covered: every writer whose
//! ticket is at most that number is durable. N concurrent writers thus share one
//! flush instead of paying N.
//!
//! In relaxed mode ([`Durability::FlushEvery`]) writers do not wait; the flusher
//! flushes at most that long after a write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::StoreError;

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
    pub(crate) fn start(db: sled::Db, mode: Durability) -> Self {
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
            .spawn(move || flusher(db, s, tx, period))
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

    /// Stops the flusher after a last flush.
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

fn flusher(db: sled::Db, s: Arc<Shared>, tx: watch::Sender<Flushed>, period: Option<Duration>) {
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
        let ticket = s.applied.load(Ordering::SeqCst);
        match db.flush() {
            Ok(_) => tx.send_modify(|f| f.durable = f.durable.max(ticket)),
            Err(e) => tx.send_modify(|f| {
                f.failed = f.failed.max(ticket);
                f.error = Some(e.to_string());
            }),
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
    }
}
