//! Writes applied but not yet handed to sled: the pending overlay of a deferred
//! [`super::SledKv`].
//!
//! Why: sled 0.34 writes its I/O buffer out twice for every `apply_batch` (before and
//! after reserving the batch's manifest), each write a `pwrite` plus a synchronous
//! `sync_file_range` on its I/O thread pool, whose every task wakes all of the
//! pool's idle threads. One batch per client write made a durable `POST /node` cost
//! four buffer writes and most of the server's CPU in context switches, and the
//! writes did not get cheaper with more clients (docs/PERFORMANCE.md).
//!
//! So a deferred space puts each batch here (visible to every read at once, like a
//! sled batch), and the group committer ([`crate::commit`]) drains everything
//! pending as **one** sled batch before each flush: N concurrent writers share one
//! batch and one flush.
//!
//! Invariants:
//! - a key present here is newer than sled's value for it: reads look here first
//!   (`Some(None)` is a deletion that hides sled's value);
//! - a writer's batch enters under one lock hold and a drain takes a snapshot under
//!   one lock hold, so each batch reaches sled whole, inside one sled batch (crash
//!   atomicity is unchanged);
//! - an entry leaves only after sled has its value, and only if it was not written
//!   again meanwhile (its sequence number still matches).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sled::IVec;

use crate::error::StoreError;

/// Past this many bytes pending, the writer drains itself (bounded memory when
/// writes outpace the committer, e.g. a relaxed-durability bulk load).
pub(super) const HIGH_WATER_BYTES: usize = 64 * 1024 * 1024;

/// A pending value: `None` deletes.
#[derive(Debug)]
struct Entry {
    seq: u64,
    value: Option<IVec>,
}

#[derive(Debug, Default)]
struct Inner {
    map: BTreeMap<IVec, Entry>,
    seq: u64,
    bytes: usize,
}

fn entry_bytes(k: &[u8], v: Option<&IVec>) -> usize {
    // Key, value, and the map's own overhead per entry (a rough constant).
    k.len() + v.map_or(0, |v| v.len()) + 64
}

/// What a drain takes: the sled batch, and each key it holds with its entry's
/// sequence number.
type Snapshot = (sled::Batch, Vec<(IVec, u64)>);

/// The overlay: applied writes not yet in sled.
#[derive(Debug, Default)]
pub(super) struct Pending {
    inner: Mutex<Inner>,
    /// The map's length, kept under the lock: reads skip the lock when it is zero
    /// (the common case between flushes on a read-mostly server).
    entries: AtomicUsize,
    /// One drain at a time (so drains reach sled in order).
    drain: Mutex<()>,
}

impl Pending {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned)
    }

    /// The pending value of `key`: `None` if nothing is pending for it, `Some(None)`
    /// if it is pending deletion.
    pub(super) fn get(&self, key: &[u8]) -> Result<Option<Option<IVec>>, StoreError> {
        if self.entries.load(Ordering::SeqCst) == 0 {
            return Ok(None);
        }
        Ok(self.lock()?.map.get(key).map(|e| e.value.clone()))
    }

    /// The pending entries with keys in `[lo, hi)`, ascending.
    pub(super) fn range(
        &self,
        lo: &[u8],
        hi: &[u8],
    ) -> Result<Vec<(IVec, Option<IVec>)>, StoreError> {
        if lo >= hi || self.entries.load(Ordering::SeqCst) == 0 {
            return Ok(Vec::new());
        }
        let inner = self.lock()?;
        Ok(inner
            .map
            .range::<[u8], _>((Bound::Included(lo), Bound::Excluded(hi)))
            .map(|(k, e)| (k.clone(), e.value.clone()))
            .collect())
    }

    /// True when nothing is pending.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.lock()?.map.is_empty())
    }

    /// Adds one batch (later writes of a key win), atomically for readers. Returns
    /// true when the overlay is past [`HIGH_WATER_BYTES`] and the caller should drain.
    pub(super) fn put(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<bool, StoreError> {
        let mut inner = self.lock()?;
        for (k, v) in writes {
            inner.seq += 1;
            let seq = inner.seq;
            let value = v.map(IVec::from);
            let add = entry_bytes(&k, value.as_ref());
            let old = inner.map.insert(IVec::from(k), Entry { seq, value });
            inner.bytes += add;
            if let Some(old) = old {
                // The key's size is counted once; its old value goes.
                inner.bytes = inner
                    .bytes
                    .saturating_sub(old.value.as_ref().map_or(0, |v| v.len()) + 64);
            }
        }
        self.entries.store(inner.map.len(), Ordering::SeqCst);
        Ok(inner.bytes > HIGH_WATER_BYTES)
    }

    /// Hands everything pending to sled as one batch (visible there, not yet
    /// flushed), then forgets what sled now holds. Returns how many writes it
    /// applied.
    pub(super) fn drain(&self, db: &sled::Db) -> Result<usize, StoreError> {
        let _one = self.drain.lock().map_err(|_| StoreError::Poisoned)?;
        let Some((batch, taken)) = self.snapshot()? else {
            return Ok(0);
        };
        db.apply_batch(batch)?;
        self.forget(&taken)?;
        Ok(taken.len())
    }

    /// Everything pending as one sled batch, with the keys and sequence numbers it
    /// holds; `None` when nothing is pending.
    fn snapshot(&self) -> Result<Option<Snapshot>, StoreError> {
        let inner = self.lock()?;
        if inner.map.is_empty() {
            return Ok(None);
        }
        let mut batch = sled::Batch::default();
        let taken = inner
            .map
            .iter()
            .map(|(k, e)| {
                match &e.value {
                    Some(v) => batch.insert(k.clone(), v.clone()),
                    None => batch.remove(k.clone()),
                }
                (k.clone(), e.seq)
            })
            .collect();
        Ok(Some((batch, taken)))
    }

    /// Drops the entries of a snapshot that sled now holds, except those written
    /// again since (their sequence number moved on).
    fn forget(&self, taken: &[(IVec, u64)]) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        for (k, seq) in taken {
            if inner.map.get(k).is_some_and(|e| e.seq == *seq) {
                if let Some(e) = inner.map.remove(k) {
                    let n = entry_bytes(k, e.value.as_ref());
                    inner.bytes = inner.bytes.saturating_sub(n);
                }
            }
        }
        self.entries.store(inner.map.len(), Ordering::SeqCst);
        Ok(())
    }
}

/// Merges a sled scan with the pending entries of the same range (both in the scan's
/// order): a pending entry replaces sled's pair with its key, a pending deletion
/// hides it.
pub(super) struct Merged<I: Iterator> {
    base: std::iter::Peekable<I>,
    pending: std::iter::Peekable<std::vec::IntoIter<(IVec, Option<IVec>)>>,
    rev: bool,
}

impl<I> Merged<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    /// `pending` ascending; it is reversed here when `rev`.
    pub(super) fn new(base: I, mut pending: Vec<(IVec, Option<IVec>)>, rev: bool) -> Self {
        if rev {
            pending.reverse();
        }
        Merged {
            base: base.peekable(),
            pending: pending.into_iter().peekable(),
            rev,
        }
    }
}

impl<I> Iterator for Merged<I>
where
    I: Iterator<Item = sled::Result<(IVec, IVec)>>,
{
    type Item = sled::Result<(IVec, IVec)>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering::{Equal, Greater, Less};
        loop {
            let from_pending = match (self.base.peek(), self.pending.peek()) {
                (_, None) | (Some(Err(_)), _) => return self.base.next(),
                (None, Some(_)) => true,
                (Some(Ok((bk, _))), Some((pk, _))) => match bk.as_ref().cmp(pk.as_ref()) {
                    Equal => {
                        // The pending value is newer: drop sled's.
                        self.base.next();
                        true
                    }
                    Less => self.rev,
                    Greater => !self.rev,
                },
            };
            if !from_pending {
                return self.base.next();
            }
            match self.pending.next() {
                Some((k, Some(v))) => return Some(Ok((k, v))),
                // A pending deletion: nothing to show.
                Some((_, None)) => continue,
                None => return self.base.next(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(pairs: &[(&str, &str)]) -> Vec<sled::Result<(IVec, IVec)>> {
        pairs
            .iter()
            .map(|(k, v)| Ok((IVec::from(k.as_bytes()), IVec::from(v.as_bytes()))))
            .collect()
    }

    fn pend(pairs: &[(&str, Option<&str>)]) -> Vec<(IVec, Option<IVec>)> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    IVec::from(k.as_bytes()),
                    v.map(|v| IVec::from(v.as_bytes())),
                )
            })
            .collect()
    }

    fn strings(it: impl Iterator<Item = sled::Result<(IVec, IVec)>>) -> Vec<String> {
        it.map(|r| {
            let (k, v) = r.unwrap_or_else(|e| panic!("{e}"));
            format!(
                "{}={}",
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&v)
            )
        })
        .collect()
    }

    #[test]
    fn pending_entries_replace_add_and_hide_in_both_directions() {
        let base = [("a", "1"), ("c", "3"), ("e", "5"), ("g", "7")];
        let pending = [
            ("b", Some("2p")),
            ("c", Some("3p")),
            ("e", None),
            ("h", Some("8p")),
        ];
        let fwd = Merged::new(ok(&base).into_iter(), pend(&pending), false);
        assert_eq!(strings(fwd), ["a=1", "b=2p", "c=3p", "g=7", "h=8p"]);
        let mut back = ok(&base);
        back.reverse();
        let rev = Merged::new(back.into_iter(), pend(&pending), true);
        assert_eq!(strings(rev), ["h=8p", "g=7", "c=3p", "b=2p", "a=1"]);
        let only_pending = Merged::new(ok(&[]).into_iter(), pend(&pending), false);
        assert_eq!(strings(only_pending), ["b=2p", "c=3p", "h=8p"]);
    }

    #[test]
    fn a_drain_keeps_what_was_written_again_meanwhile() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let p = Pending::default();
        let put = |w: Vec<(&str, Option<&str>)>| {
            p.put(
                w.into_iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
                    .collect(),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        put(vec![("k", Some("1")), ("gone", None)]);
        db.insert("gone", "old").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.drain(&db).unwrap_or_else(|e| panic!("{e}")), 2);
        assert!(p.is_empty().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(db.get("k").ok().flatten(), Some(IVec::from("1")));
        assert_eq!(db.get("gone").ok().flatten(), None);
        // A key written again after a drain took its snapshot stays pending with
        // its newer value; the others leave.
        put(vec![("k", Some("2")), ("other", Some("x"))]);
        let (batch, taken) = p
            .snapshot()
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("nothing pending"));
        put(vec![("k", Some("3"))]);
        db.apply_batch(batch).unwrap_or_else(|e| panic!("{e}"));
        p.forget(&taken).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(db.get("k").ok().flatten(), Some(IVec::from("2")));
        assert_eq!(
            p.get(b"k").unwrap_or_else(|e| panic!("{e}")),
            Some(Some(IVec::from("3")))
        );
        assert_eq!(p.get(b"other").unwrap_or_else(|e| panic!("{e}")), None);
        assert_eq!(p.drain(&db).unwrap_or_else(|e| panic!("{e}")), 1);
        assert_eq!(db.get("k").ok().flatten(), Some(IVec::from("3")));
    }
}
