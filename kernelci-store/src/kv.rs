//! The ordered key-value layer under the engine (an implementation detail, public only
//! because the store types are generic over it): an in-memory B-tree, or one sled
//! tree. The engine writes only through [`Kv::apply`], an atomic batch, so a reader
//! never sees a document without its index entries or the reverse.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use crate::error::StoreError;

/// One write of a batch: `Some` puts, `None` deletes.
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// Boxed iterator over `(key, value)` pairs.
pub type Scan<'a, B> = Box<dyn Iterator<Item = Result<(B, B), StoreError>> + Send + 'a>;

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for super::MemKv {}
    impl Sealed for super::SledKv {}
}

/// Holds off writers while a multi-key read runs (a no-op for plain spaces).
pub struct ViewGuard<'a>(
    // Held for its Drop: releasing it lets writers in.
    #[allow(dead_code)] pub(crate) Option<std::sync::RwLockReadGuard<'a, ()>>,
);

/// An ordered key-value space under the engine. Sealed: implemented by [`MemKv`] and
/// [`SledKv`] only.
pub trait Kv: sealed::Sealed + Send + Sync + 'static {
    /// Bytes handed out by reads (cheap to clone).
    type Bytes: AsRef<[u8]> + Clone + Send + Sync;

    /// The value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Self::Bytes>, StoreError>;

    /// Keys in `[lo, hi)` in ascending order, or descending when `rev`.
    fn scan(&self, lo: &[u8], hi: &[u8], rev: bool) -> Scan<'_, Self::Bytes>;

    /// Applies all writes atomically (all visible at once, or none).
    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// Makes every applied write durable (no-op for volatile spaces).
    fn flush(&self) -> Result<(), StoreError>;

    /// A consistent view for a multi-key read (see [`crate::tiered`]).
    fn read_view(&self) -> Result<ViewGuard<'_>, StoreError> {
        Ok(ViewGuard(None))
    }

    /// The sorted ids of one value tuple of one index, when the space holds postings
    /// directly (`None`: scan the `I` keys instead).
    fn posting_ids(
        &self,
        _index_id: u8,
        _tuple: &[u8],
    ) -> Result<Option<Vec<kernelci_core::id::ObjectId>>, StoreError> {
        Ok(None)
    }

    /// The ids of the `I` keys in `[lo, hi)` (both within one index, or `hi` past
    /// its end), in key order, when the space can list them without building keys
    /// (`None`: scan instead).
    fn range_ids(
        &self,
        _lo: &[u8],
        _hi: &[u8],
    ) -> Result<Option<Vec<kernelci_core::id::ObjectId>>, StoreError> {
        Ok(None)
    }

    /// How many `I` keys `[lo, hi)` holds, counting at most `cap` (`None`: the space
    /// cannot count without scanning).
    fn range_count(&self, _lo: &[u8], _hi: &[u8], _cap: u64) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// True when value counters are derived from the index entries (the engine then
    /// skips maintaining them).
    fn derives_counts(&self) -> bool {
        false
    }

    /// Called when a rebuild of every index entry and counter has completed.
    fn indexes_rebuilt(&self) {}

    /// Removes every index entry and counter.
    fn clear_indexes(&self) -> Result<(), StoreError> {
        for prefix in [crate::keys::INDEX, crate::keys::COUNT] {
            let mut doomed = Vec::new();
            for item in self.scan(&[prefix], &crate::keys::prefix_end(&[prefix]), false) {
                doomed.push((item?.0.as_ref().to_vec(), None));
            }
            self.apply(doomed)?;
        }
        Ok(())
    }
}

/// Shared bytes of the memory space.
type Bytes = Arc<[u8]>;
/// The memory space's map.
type Map = BTreeMap<Bytes, Bytes>;

/// A volatile ordered space: a B-tree behind a read-write lock.
#[derive(Default, Clone)]
pub struct MemKv {
    map: Arc<RwLock<Map>>,
}

/// How many entries a memory scan copies per lock acquisition.
const SCAN_CHUNK: usize = 256;

impl MemKv {
    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Map>, StoreError> {
        self.map.read().map_err(|_| StoreError::Poisoned)
    }
}

/// A chunked scan: each chunk re-takes the read lock and continues after the last key
/// seen, so a long scan never blocks writers for long (like sled, a scan is not a
/// snapshot across chunks).
struct MemScan {
    kv: MemKv,
    lo: Bound<Arc<[u8]>>,
    hi: Bound<Arc<[u8]>>,
    rev: bool,
    buf: std::vec::IntoIter<(Bytes, Bytes)>,
    done: bool,
}

impl Iterator for MemScan {
    type Item = Result<(Arc<[u8]>, Arc<[u8]>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.buf.next() {
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        let inverted = match (&self.lo, &self.hi) {
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
                l >= h
            }
            _ => false,
        };
        if inverted {
            self.done = true;
            return None;
        }
        let map = match self.kv.read() {
            Ok(m) => m,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
        let range = map.range::<[u8], _>((
            self.lo.as_ref().map(|k| &k[..]),
            self.hi.as_ref().map(|k| &k[..]),
        ));
        let chunk: Vec<(Bytes, Bytes)> = if self.rev {
            range
                .rev()
                .take(SCAN_CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            range
                .take(SCAN_CHUNK)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        drop(map);
        if chunk.len() < SCAN_CHUNK {
            self.done = true;
        }
        if let Some((last, _)) = chunk.last() {
            if self.rev {
                self.hi = Bound::Excluded(last.clone());
            } else {
                self.lo = Bound::Excluded(last.clone());
            }
        }
        self.buf = chunk.into_iter();
        self.buf.next().map(Ok)
    }
}

impl Kv for MemKv {
    type Bytes = Arc<[u8]>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, StoreError> {
        Ok(self.read()?.get(key).cloned())
    }

    fn scan(&self, lo: &[u8], hi: &[u8], rev: bool) -> Scan<'_, Arc<[u8]>> {
        if lo >= hi {
            // An empty (or inverted, e.g. `created__gt=B&created__lt=A` with A < B)
            // range: B-tree ranges panic on it.
            return Box::new(std::iter::empty());
        }
        Box::new(MemScan {
            kv: self.clone(),
            lo: Bound::Included(Arc::from(lo)),
            hi: Bound::Excluded(Arc::from(hi)),
            rev,
            buf: Vec::new().into_iter(),
            done: false,
        })
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let mut map = self.map.write().map_err(|_| StoreError::Poisoned)?;
        for (k, v) in writes {
            match v {
                Some(v) => {
                    map.insert(Arc::from(k), Arc::from(v));
                }
                None => {
                    map.remove(&k[..]);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

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
#[derive(Clone)]
pub struct SledKv {
    pub(crate) db: sled::Db,
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
        Ok(SledKv { db })
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
            let part = self.db.get(chunk_key(key, i))?.ok_or_else(|| {
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

    /// Adds to `batch` the removal of the chunks of the value stored under `key`
    /// (none unless it is out of line).
    fn drop_chunks(&self, key: &[u8], batch: &mut sled::Batch) -> Result<(), StoreError> {
        if let Some(old) = self.db.get(key)? {
            if let Some((_, chunks)) = marker_chunks(&old) {
                for i in 0..chunks {
                    batch.remove(chunk_key(key, i));
                }
            }
        }
        Ok(())
    }
}

impl Kv for SledKv {
    type Bytes = sled::IVec;

    fn get(&self, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
        match self.db.get(key)? {
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
        let range = self.db.range(lo.to_vec()..hi.to_vec());
        let map = move |r: sled::Result<(sled::IVec, sled::IVec)>| {
            let (k, v) = r.map_err(StoreError::from)?;
            let v = self.resolve(&k, v)?;
            Ok((k, v))
        };
        if rev {
            Box::new(range.rev().map(map))
        } else {
            Box::new(range.map(map))
        }
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let n = writes.len();
        let mut batch = sled::Batch::default();
        // Chunk counts of the values this batch puts out of line, by key (a key
        // written twice in one batch drops the chunks of its first value).
        let mut spilled: std::collections::HashMap<Vec<u8>, u32> = Default::default();
        for (k, v) in writes {
            // Empty values (index-like keys) are never out of line and replace no
            // out-of-line value: no read for them.
            if v.as_ref().is_none_or(|v| !v.is_empty()) {
                self.drop_chunks(&k, &mut batch)?;
            }
            if let Some(count) = spilled.remove(&k) {
                for i in 0..count {
                    batch.remove(chunk_key(&k, i));
                }
            }
            match v {
                Some(v) if v.len() >= SPILL_MIN => {
                    let chunks = v.chunks(CHUNK);
                    let count = u32::try_from(chunks.len())
                        .map_err(|_| StoreError::Unencodable("a value over 256 TiB".into()))?;
                    for (i, part) in (0u32..).zip(chunks) {
                        batch.insert(chunk_key(&k, i), part);
                    }
                    spilled.insert(k.clone(), count);
                    let mut marker = Vec::with_capacity(14);
                    marker.extend_from_slice(&[SPILL, MARKER]);
                    marker.extend_from_slice(&(v.len() as u64).to_be_bytes());
                    marker.extend_from_slice(&count.to_be_bytes());
                    batch.insert(k, marker);
                }
                Some(v) if v.first() == Some(&SPILL) => {
                    let mut escaped = Vec::with_capacity(v.len() + 2);
                    escaped.extend_from_slice(&[SPILL, ESCAPED]);
                    escaped.extend_from_slice(&v);
                    batch.insert(k, escaped);
                }
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch)?;
        if n >= RECLAIM_MIN_WRITES {
            reclaim(n);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> SledKv {
        let db = sled::Config::new()
            .path(dir)
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
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
}
