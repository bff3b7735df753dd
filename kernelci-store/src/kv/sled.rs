//! The durable space: one sled tree, large values out of line, writes deferred
//! into a pending overlay when a group committer drains them.

use std::sync::Arc;

use sled::IVec;

use super::pending::{Merged, Pending};
use super::{Kv, Scan, Write};
use crate::error::StoreError;

/// A write as sled stores it (after large values were cut into chunks).
type RawWrite = (Vec<u8>, Option<Vec<u8>>);

/// Batches of at least this many writes drive sled's garbage collection afterwards
/// (see [`reclaim`]).
const RECLAIM_MIN_WRITES: usize = 1024;

/// Frees now what a large batch left for later. sled 0.34 applies a batch under one
/// epoch guard and copies each B-tree node it changes; the old copies are freed by
/// crossbeam-epoch only as later pins move the epoch on (a few hundred objects per
/// hundred-odd pins), so after a batch of 100k writes an idle server kept about a
/// gigabyte of them. Each `flush` of a fresh pin tries to move the epoch and frees
/// what it can; a pause now and then lets a thread pinned meanwhile (the group
/// flusher inside `db.flush()`) move on. Measured: the live heap after 410k
/// telemetry events fell from 2.3 GB to 0.35 GB.
fn reclaim(writes: usize) {
    for i in 0..(writes / 32 + 64) {
        crossbeam_epoch::pin().flush();
        if i % 256 == 255 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Values longer than this are stored out of line, in chunks (see [`SledKv`]).
pub(crate) const SPILL_MIN: usize = 64 * 1024;

/// The size of a chunk of a value stored out of line.
const CHUNK: usize = 64 * 1024;

/// First byte of the chunk keys, and of a value that is not the value itself: a
/// marker (`SPILL, MARKER, length (8), chunk count (4)`) or an escaped value
/// (`SPILL, ESCAPED, value...`, for a value that begins with this byte).
const SPILL: u8 = 0xFD;
const MARKER: u8 = 0x01;
const ESCAPED: u8 = 0x00;

/// First byte of the fence keys: more keys than a sled leaf holds (16), never
/// written again, between the last records (`y`, the telemetry time index, appended
/// to) and the chunks, so that no leaf holds both a chunk and a record written often.
const FENCE: u8 = 0xFC;
const FENCE_KEYS: u8 = 17;

/// The key of chunk `i` of the value of `key`.
fn chunk_key(key: &[u8], i: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 5);
    k.push(SPILL);
    k.extend_from_slice(key);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// The chunk count of a marker, `None` for any other value.
fn marker_chunks(v: &[u8]) -> Option<(u64, u32)> {
    if v.len() != 14 || v[0] != SPILL || v[1] != MARKER {
        return None;
    }
    let len = u64::from_be_bytes(v[2..10].try_into().ok()?);
    let chunks = u32::from_be_bytes(v[10..14].try_into().ok()?);
    Some((len, chunks))
}

/// A durable ordered space: one sled tree.
///
/// Large values are stored out of line: sled 0.34 keeps values inside its B-tree
/// leaves and rewrites a whole leaf at every split and every tenth change to it, so
/// a 20 MB node made every write of a key sharing its leaf (the next nodes, the
/// store's counters, the end of the event log) write 20 MB again: a hierarchy
/// submission took 25 times as long after one such node. A value of 64 KiB
/// or more is written as 64 KiB chunks under their own keys (`0xFD` + key +
/// chunk number), behind a fence of keys that are never written, and its key holds
/// a 14-byte marker; the chunks, the marker and the removal of the chunks of the
/// value it replaces are one batch. Reads put the value together again; scans
/// never show chunk or fence keys.
///
/// A deferred space ([`SledKv::deferred`]) keeps its batches in a pending overlay
/// (the `kv::pending` module) until [`Kv::flush`] hands them all to sled as one batch.
#[derive(Clone)]
pub struct SledKv {
    pub(crate) db: sled::Db,
    pending: Option<Arc<Pending>>,
}

impl SledKv {
    /// The space of `db`, with its fence written if missing.
    pub fn new(db: sled::Db) -> Result<Self, StoreError> {
        if db.get([FENCE, FENCE_KEYS - 1])?.is_none() {
            let mut batch = sled::Batch::default();
            for i in 0..FENCE_KEYS {
                batch.insert(vec![FENCE, i], Vec::new());
            }
            db.apply_batch(batch)?;
        }
        Ok(SledKv { db, pending: None })
    }

    /// Like [`SledKv::new`], with writes deferred: each batch is visible at once but
    /// reaches sled only at the next [`Kv::flush`] (all pending batches as one sled
    /// batch), or when the overlay passes its high-water mark. For a store whose
    /// group committer flushes before acknowledging.
    pub fn deferred(db: sled::Db) -> Result<Self, StoreError> {
        let mut kv = Self::new(db)?;
        kv.pending = Some(Arc::default());
        Ok(kv)
    }

    /// The value sled stores under `key`, pending writes first.
    fn raw_get(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        if let Some(p) = &self.pending {
            if let Some(v) = p.get(key)? {
                return Ok(v);
            }
        }
        Ok(self.db.get(key)?)
    }

    /// Hands the pending batches to sled (no-op when not deferred).
    fn drain(&self) -> Result<(), StoreError> {
        if let Some(p) = &self.pending {
            let n = p.drain(&self.db)?;
            if n >= RECLAIM_MIN_WRITES {
                reclaim(n);
            }
        }
        Ok(())
    }

    /// Applies sled-level writes to sled now, as one batch.
    fn apply_now(&self, writes: Vec<RawWrite>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        Ok(())
    }

    /// The stored form of `v` read back: chunks put together, an escape removed.
    fn resolve(&self, key: &[u8], v: sled::IVec) -> Result<sled::IVec, StoreError> {
        if v.first() != Some(&SPILL) {
            return Ok(v);
        }
        if v.get(1) == Some(&ESCAPED) {
            return Ok(sled::IVec::from(&v[2..]));
        }
        let (len, chunks) = marker_chunks(&v)
            .ok_or_else(|| StoreError::corrupt("out-of-line value", key, "bad marker"))?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        for i in 0..chunks {
            let part = self.raw_get(&chunk_key(key, i))?.ok_or_else(|| {
                StoreError::corrupt("out-of-line value", key, format!("chunk {i} missing"))
            })?;
            out.extend_from_slice(&part);
        }
        if out.len() as u64 != len {
            return Err(StoreError::corrupt(
                "out-of-line value",
                key,
                format!("{} bytes in its chunks, {len} expected", out.len()),
            ));
        }
        Ok(sled::IVec::from(out))
    }

    /// Adds to `out` the removal of the chunks of the value stored under `key`
    /// (none unless it is out of line).
    fn drop_chunks(&self, key: &[u8], out: &mut Vec<RawWrite>) -> Result<(), StoreError> {
        if let Some(old) = self.raw_get(key)? {
            if let Some((_, chunks)) = marker_chunks(&old) {
                for i in 0..chunks {
                    out.push((chunk_key(key, i), None));
                }
            }
        }
        Ok(())
    }

    /// The sled-level writes of a batch: large values cut into chunks behind a
    /// marker, the chunks of replaced values removed, values that look like a
    /// marker escaped. Later writes of a key win, as in a sled batch.
    fn lower(&self, writes: Vec<Write>) -> Result<Vec<RawWrite>, StoreError> {
        let mut out = Vec::with_capacity(writes.len());
        // Chunk counts of the values this batch puts out of line, by key (a key
        // written twice in one batch drops the chunks of its first value).
        let mut spilled: std::collections::HashMap<Vec<u8>, u32> = Default::default();
        for (k, v) in writes {
            // Empty values (index-like keys) are never out of line and replace no
            // out-of-line value: no read for them.
            if v.as_ref().is_none_or(|v| !v.is_empty()) {
                self.drop_chunks(&k, &mut out)?;
            }
            if let Some(count) = spilled.remove(&k) {
                for i in 0..count {
                    out.push((chunk_key(&k, i), None));
                }
            }
            match v {
                Some(v) if v.len() >= SPILL_MIN => {
                    let chunks = v.chunks(CHUNK);
                    let count = u32::try_from(chunks.len())
                        .map_err(|_| StoreError::Unencodable("a value over 256 TiB".into()))?;
                    for (i, part) in (0u32..).zip(chunks) {
                        out.push((chunk_key(&k, i), Some(part.to_vec())));
                    }
                    spilled.insert(k.clone(), count);
                    let mut marker = Vec::with_capacity(14);
                    marker.extend_from_slice(&[SPILL, MARKER]);
                    marker.extend_from_slice(&(v.len() as u64).to_be_bytes());
                    marker.extend_from_slice(&count.to_be_bytes());
                    out.push((k, Some(marker)));
                }
                Some(v) if v.first() == Some(&SPILL) => {
                    let mut escaped = Vec::with_capacity(v.len() + 2);
                    escaped.extend_from_slice(&[SPILL, ESCAPED]);
                    escaped.extend_from_slice(&v);
                    out.push((k, Some(escaped)));
                }
                other => out.push((k, other)),
            }
        }
        Ok(out)
    }
}

impl Kv for SledKv {
    type Bytes = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        match self.raw_get(key)? {
            Some(v) => Ok(Some(self.resolve(key, v)?)),
            None => Ok(None),
        }
    }

    fn scan(&self, lo: &[u8], hi: &[u8], rev: bool) -> Scan<'_, sled::IVec> {
        // Records only: never the fence nor the chunks.
        let hi = if hi > [FENCE].as_slice() {
            &[FENCE][..]
        } else {
            hi
        };
        if lo >= hi {
            return Box::new(std::iter::empty());
        }
        // The pending entries first: one drained after this snapshot is already in
        // sled when the range below starts.
        let pending = match &self.pending {
            Some(p) => match p.range(lo, hi) {
                Ok(v) => v,
                Err(e) => return Box::new(std::iter::once(Err(e))),
            },
            None => Vec::new(),
        };
        let range = self.db.range(lo.to_vec()..hi.to_vec());
        let base: Box<dyn Iterator<Item = sled::Result<(IVec, IVec)>> + Send> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        let merged = Merged::new(base, pending, rev);
        Box::new(merged.map(move |r| {
            let (k, v) = r.map_err(StoreError::from)?;
            let v = self.resolve(&k, v)?;
            Ok((k, v))
        }))
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let n = writes.len();
        let raw = self.lower(writes)?;
        match &self.pending {
            // Small batches wait in the overlay for the next flush.
            Some(p) if n < RECLAIM_MIN_WRITES => {
                if p.put(raw)? {
                    self.drain()?;
                }
                return Ok(());
            }
            // A bulk batch is a sled batch of its own, after what was pending.
            Some(_) => {
                self.drain()?;
                self.apply_now(raw)?;
            }
            None => self.apply_now(raw)?,
        }
        if n >= RECLAIM_MIN_WRITES {
            reclaim(n);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.drain()?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens the space of `dir`, waiting (as `SledStore::open` does) for sled's
    /// background threads to release the lock of a handle just dropped.
    fn open(dir: &std::path::Path) -> SledKv {
        let started = std::time::Instant::now();
        let db = loop {
            match sled::Config::new().path(dir).open() {
                Ok(db) => break db,
                Err(e) if started.elapsed() < std::time::Duration::from_secs(10) => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        };
        SledKv::new(db).unwrap_or_else(|e| panic!("{e}"))
    }

    fn raw_keys(kv: &SledKv) -> Vec<Vec<u8>> {
        kv.db
            .iter()
            .keys()
            .map(|k| k.map(|k| k.to_vec()).unwrap_or_default())
            .collect()
    }

    fn chunk_keys(kv: &SledKv) -> usize {
        raw_keys(kv)
            .iter()
            .filter(|k| k.first() == Some(&SPILL))
            .count()
    }

    fn get(kv: &SledKv, k: &[u8]) -> Option<Vec<u8>> {
        kv.get(k)
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|v| v.to_vec())
    }

    #[test]
    fn large_values_are_stored_out_of_line_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let kv = open(dir.path());
        let big: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let apply = |w: Vec<Write>| kv.apply(w).unwrap_or_else(|e| panic!("{e}"));
        apply(vec![
            (b"Nbig".to_vec(), Some(big.clone())),
            (b"Nsmall".to_vec(), Some(b"{}".to_vec())),
            // A value that begins like a marker is kept as it is.
            (b"Nodd".to_vec(), Some(vec![SPILL, MARKER, 1, 2])),
        ]);
        assert_eq!(get(&kv, b"Nbig"), Some(big.clone()));
        assert_eq!(get(&kv, b"Nodd"), Some(vec![SPILL, MARKER, 1, 2]));
        // Inline, the key holds a 14-byte marker; the value is in 4 chunks.
        assert_eq!(kv.db.get(b"Nbig").ok().flatten().map(|v| v.len()), Some(14));
        assert_eq!(chunk_keys(&kv), 4);
        // Scans show the records only, whole.
        let all: Vec<(Vec<u8>, Vec<u8>)> = kv
            .scan(&[0], &[0xFF, 0xFF], false)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap_or_default())
            .collect();
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [b"Nbig".as_slice(), b"Nodd", b"Nsmall"]);
        assert_eq!(all[0].1, big);
        let rev: Vec<Vec<u8>> = kv
            .scan(b"N", b"O", true)
            .map(|r| r.map(|(k, _)| k.to_vec()).unwrap_or_default())
            .collect();
        assert_eq!(
            rev,
            [b"Nsmall".to_vec(), b"Nodd".to_vec(), b"Nbig".to_vec()]
        );
        // Replaced by a smaller large value, by a small one, removed: no chunk left
        // behind.
        let smaller = vec![7u8; CHUNK + 1];
        apply(vec![(b"Nbig".to_vec(), Some(smaller.clone()))]);
        assert_eq!(get(&kv, b"Nbig"), Some(smaller));
        assert_eq!(chunk_keys(&kv), 2);
        apply(vec![(b"Nbig".to_vec(), Some(b"{}".to_vec()))]);
        assert_eq!(chunk_keys(&kv), 0);
        apply(vec![(b"Nbig".to_vec(), Some(big.clone()))]);
        apply(vec![(b"Nbig".to_vec(), None)]);
        assert_eq!((get(&kv, b"Nbig"), chunk_keys(&kv)), (None, 0));
        // One key written twice in one batch keeps the last value's chunks only.
        apply(vec![
            (b"Nbig".to_vec(), Some(big.clone())),
            (b"Nbig".to_vec(), Some(vec![1u8; CHUNK])),
        ]);
        assert_eq!(get(&kv, b"Nbig"), Some(vec![1u8; CHUNK]));
        assert_eq!(chunk_keys(&kv), 1);
        drop(kv);
        // Reopened: the same values; the fence is written once.
        let kv = open(dir.path());
        assert_eq!(get(&kv, b"Nbig"), Some(vec![1u8; CHUNK]));
        let fence = raw_keys(&kv)
            .iter()
            .filter(|k| k.first() == Some(&FENCE))
            .count();
        assert_eq!(fence, usize::from(FENCE_KEYS));
    }

    #[test]
    fn a_missing_chunk_is_reported_as_corruption() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let kv = open(dir.path());
        kv.apply(vec![(b"Nbig".to_vec(), Some(vec![3u8; 2 * CHUNK]))])
            .unwrap_or_else(|e| panic!("{e}"));
        kv.db
            .remove(chunk_key(b"Nbig", 1))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = kv
            .get(b"Nbig")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("chunk 1 missing"), "{e}");
    }

    fn scan_all(kv: &SledKv, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        kv.scan(&[0], &[0xFF, 0xFF], rev)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    #[test]
    fn a_deferred_space_shows_pending_writes_and_hands_them_to_sled_on_flush() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let kv = SledKv::deferred(open(dir.path()).db).unwrap_or_else(|e| panic!("{e}"));
        let apply = |w: Vec<Write>| kv.apply(w).unwrap_or_else(|e| panic!("{e}"));
        apply(vec![
            (b"Na".to_vec(), Some(b"1".to_vec())),
            (b"Nc".to_vec(), Some(b"3".to_vec())),
        ]);
        kv.flush().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            kv.db.get(b"Na").ok().flatten().map(|v| v.to_vec()),
            Some(b"1".to_vec())
        );
        // Pending: a new key, a replaced one, a deleted one, a large value.
        let big: Vec<u8> = (0..(2 * CHUNK + 5)).map(|i| (i % 241) as u8).collect();
        apply(vec![
            (b"Nb".to_vec(), Some(b"2".to_vec())),
            (b"Nc".to_vec(), Some(b"3'".to_vec())),
            (b"Na".to_vec(), None),
            (b"Nbig".to_vec(), Some(big.clone())),
        ]);
        // Not in sled yet...
        assert_eq!(kv.db.get(b"Nb").ok().flatten(), None);
        assert!(kv.db.get(b"Na").ok().flatten().is_some());
        assert_eq!(chunk_keys(&kv), 0);
        // ...but every read sees them: gets, scans both ways.
        let want = vec![
            (b"Nb".to_vec(), b"2".to_vec()),
            (b"Nbig".to_vec(), big.clone()),
            (b"Nc".to_vec(), b"3'".to_vec()),
        ];
        assert_eq!(get(&kv, b"Na"), None);
        assert_eq!(get(&kv, b"Nbig"), Some(big.clone()));
        assert_eq!(scan_all(&kv, false), want);
        let mut back = want.clone();
        back.reverse();
        assert_eq!(scan_all(&kv, true), back);
        // A large value replaced while its chunks are still pending leaves none.
        apply(vec![(b"Nbig".to_vec(), Some(vec![9u8; CHUNK + 1]))]);
        kv.flush().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chunk_keys(&kv), 2);
        assert_eq!(kv.db.get(b"Na").ok().flatten(), None);
        assert_eq!(
            kv.db.get(b"Nc").ok().flatten().map(|v| v.to_vec()),
            Some(b"3'".to_vec())
        );
        drop(kv);
        // What was flushed is what a reopen finds.
        let kv = open(dir.path());
        assert_eq!(
            scan_all(&kv, false),
            vec![
                (b"Nb".to_vec(), b"2".to_vec()),
                (b"Nbig".to_vec(), vec![9u8; CHUNK + 1]),
                (b"Nc".to_vec(), b"3'".to_vec()),
            ]
        );
    }
}
