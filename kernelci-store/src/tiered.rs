//! The tiered key space: index entries and counters in memory, everything else in
//! the base space (sled, or a B-tree for the memory store).
//!
//! Index entries (`I` keys) and index counters (`K` keys) live in an `IndexSpace`:
//! per index, a map from encoded value tuple to the sorted ids of the nodes holding it.
//! Counters are the lengths of those lists, so they cost nothing to maintain. The
//! engine still reads and writes them as keys of one ordered space (the planner is
//! unchanged); this module answers those keys from the structures.
//!
//! Why: sled 0.34 sustains about 100k–150k key writes per second here, and a node has
//! about 30 index entries, so keeping them as sled keys capped ingest near 2k nodes/s
//! (see `docs/PERFORMANCE.md`). Now a node write is one document key in sled.
//!
//! Persistence: the base keeps a write generation (`M` + `gen`), bumped in every
//! batch. `close` writes the index space to a snapshot file tagged with that
//! generation; `open` loads the snapshot when the generation matches and otherwise
//! rebuilds the indexes from the documents (the crash path: slower, never wrong).
//!
//! Consistency: a write applies the index changes and the base batch under one
//! exclusive view lock, and every engine read holds the shared view lock for its
//! duration, so a reader never sees a node without its index entries or the reverse.
//!
//! User records (`U` keys), read by every authenticated request, are also kept in
//! memory once read (`records`): every write of one goes through [`Tiered::apply`],
//! which forgets it around the base batch.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kernelci_core::id::ObjectId;

use crate::error::StoreError;
use crate::keys::{self, read_u64};
use crate::kv::{Kv, Scan, ViewGuard, Write};

mod packed;
mod postings;
mod records;
mod snapshot;

use postings::Postings;
use records::RecordCache;

use snapshot::SnapshotHeader;
pub(crate) use snapshot::SNAPSHOT_FILE;

/// The in-memory entries and counters of one index.
#[derive(Debug, Default, Clone, PartialEq)]
struct IndexData {
    postings: Postings,
    irregular: u64,
    lossy: u64,
}

/// Every index, by index id.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct IndexSpace {
    indexes: BTreeMap<u8, IndexData>,
}

/// Splits an `I` key into (index id, tuple, id).
fn split_entry(k: &[u8]) -> Option<(u8, &[u8], ObjectId)> {
    if k.len() < 14 || k[0] != keys::INDEX {
        return None;
    }
    let id = keys::id_suffix(k)?;
    Some((k[1], &k[2..k.len() - 12], id))
}

impl IndexSpace {
    fn apply(&mut self, k: &[u8], v: Option<&[u8]>) -> Result<(), StoreError> {
        match k.first() {
            Some(&keys::INDEX) => {
                let (idx, tuple, id) = split_entry(k)
                    .ok_or_else(|| StoreError::corrupt("index key", k, "malformed"))?;
                let data = self.indexes.entry(idx).or_default();
                match v {
                    Some(_) => data.postings.insert(tuple, id),
                    None => data.postings.remove(tuple, id),
                }
            }
            Some(&keys::COUNT)
                if k.len() == 3 && (k[2] == keys::IRREGULAR || k[2] == keys::LOSSY) =>
            {
                let n = v.and_then(read_u64).unwrap_or(0);
                let data = self.indexes.entry(k[1]).or_default();
                if k[2] == keys::IRREGULAR {
                    data.irregular = n;
                } else {
                    data.lossy = n;
                }
            }
            // Value counters are the list lengths: their writes carry no information.
            Some(&keys::COUNT) => {}
            _ => {
                return Err(StoreError::corrupt(
                    "index space key",
                    k,
                    "not an index key",
                ))
            }
        }
        Ok(())
    }

    fn get(&self, k: &[u8]) -> Option<Vec<u8>> {
        match k.first() {
            Some(&keys::INDEX) => {
                let (idx, tuple, id) = split_entry(k)?;
                let data = self.indexes.get(&idx)?;
                data.postings.contains(tuple, &id).then(Vec::new)
            }
            Some(&keys::COUNT) if k.len() >= 2 => {
                let data = self.indexes.get(&k[1])?;
                let n = match &k[2..] {
                    [keys::IRREGULAR] => data.irregular,
                    [keys::LOSSY] => data.lossy,
                    tuple => data.postings.count(tuple) as u64,
                };
                (n > 0).then(|| n.to_be_bytes().to_vec())
            }
            _ => None,
        }
    }

    /// Up to `max` keys of one index in `[lo, hi)` after `after` (exclusive, in the
    /// scan's direction), as `(key, value)`.
    ///
    /// Contract (what the engine and planner do): a scan of `I` or `K` keys stays
    /// within one index: `lo` starts with the prefix and the index id, and `hi` is
    /// either in the same index or past its end. Other ranges return nothing.
    fn collect(
        &self,
        lo: &[u8],
        hi: &[u8],
        after: Option<&[u8]>,
        rev: bool,
        max: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        let (Some(&prefix), Some(&idx)) = (lo.first(), lo.get(1)) else {
            return out;
        };
        let Some(data) = self.indexes.get(&idx) else {
            return out;
        };
        let head = [prefix, idx];
        // The effective bounds of the rest of the key (after prefix + index).
        let lo_rest: &[u8] = match after {
            Some(a) if !rev && a.len() >= 2 && a[..2] == head && a[2..] >= lo[2..] => &a[2..],
            _ => &lo[2..],
        };
        let lo_exclusive = matches!(after, Some(a) if !rev && a.len() >= 2 && &a[2..] == lo_rest);
        let hi_rest: &[u8] = match after {
            Some(a) if rev && a.len() >= 2 && a[..2] == head => &a[2..],
            _ if hi.len() >= 2 && hi[..2] == head => &hi[2..],
            _ => &[0xFF],
        };
        let hi_inclusive = false;
        if lo_rest > hi_rest || (lo_rest == hi_rest && !hi_inclusive) {
            return out;
        }
        let key_of = |t: &[u8], id: &ObjectId| {
            let mut k = Vec::with_capacity(2 + t.len() + 12);
            k.extend_from_slice(&head);
            k.extend_from_slice(t);
            k.extend_from_slice(&id.bytes());
            k
        };
        match prefix {
            keys::INDEX => {
                data.postings
                    .visit_entries(lo_rest, lo_exclusive, hi_rest, rev, &mut |t, id| {
                        out.push((key_of(t, id), Vec::new()));
                        out.len() < max
                    });
            }
            keys::COUNT => {
                let lo_bound = if lo_exclusive {
                    Bound::Excluded(lo_rest)
                } else {
                    Bound::Included(lo_rest)
                };
                let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                data.postings.visit_tuples(lo_bound, hi_rest, &mut |t, n| {
                    all.push(([&head[..], t].concat(), (n as u64).to_be_bytes().to_vec()));
                    rev || all.len() < max
                });
                for (suffix, n) in [(keys::LOSSY, data.lossy), (keys::IRREGULAR, data.irregular)] {
                    let k = vec![prefix, idx, suffix];
                    if n > 0
                        && k.as_slice() >= lo
                        && k.as_slice() < hi
                        && after.is_none_or(|a| {
                            if rev {
                                k.as_slice() < a
                            } else {
                                k.as_slice() > a
                            }
                        })
                    {
                        all.push((k, n.to_be_bytes().to_vec()));
                    }
                }
                if rev {
                    all.reverse();
                }
                all.truncate(max);
                out = all;
            }
            _ => {}
        }
        out
    }
}

fn is_index_key(k: &[u8]) -> bool {
    matches!(k.first(), Some(&keys::INDEX) | Some(&keys::COUNT))
}

fn generation_key() -> Vec<u8> {
    keys::key(keys::META, &[b"gen"])
}

/// The tiered space over a base space `B` (see the module docs).
pub struct Tiered<B: Kv> {
    pub(crate) base: B,
    index: Arc<RwLock<IndexSpace>>,
    view: RwLock<()>,
    generation: AtomicU64,
    /// Set when the indexes may disagree with the base (a failed write, a cleared
    /// index space not yet rebuilt): no snapshot is written while it is set.
    dirty: std::sync::atomic::AtomicBool,
    /// A random identity of this store, written in the base and in snapshots, so a
    /// snapshot is never loaded into another store that reached the same generation.
    store_id: [u8; 12],
    /// User records read from the base, kept (see [`records`]).
    records: RecordCache,
}

/// How many index keys a scan copies per lock acquisition: a small first chunk (a
/// `limit=1` query needs one key), growing to this size.
const CHUNK: usize = 4096;
const FIRST_CHUNK: usize = 16;

struct IndexScan {
    index: Arc<RwLock<IndexSpace>>,
    lo: Vec<u8>,
    hi: Vec<u8>,
    rev: bool,
    last: Option<Vec<u8>>,
    buf: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    done: bool,
    chunk: usize,
}

impl Iterator for IndexScan {
    type Item = Result<(Arc<[u8]>, Arc<[u8]>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.buf.next() {
                self.last = Some(k.clone());
                return Some(Ok((Arc::from(k), Arc::from(v))));
            }
            if self.done {
                return None;
            }
            let chunk = match self.index.read() {
                Ok(space) => {
                    space.collect(&self.lo, &self.hi, self.last.as_deref(), self.rev, CHUNK)
                }
                Err(_) => {
                    self.done = true;
                    return Some(Err(StoreError::Poisoned));
                }
            };
            if chunk.len() < self.chunk {
                self.done = true;
            }
            self.chunk = (self.chunk * 4).min(CHUNK);
            if chunk.is_empty() {
                return None;
            }
            self.buf = chunk.into_iter();
        }
    }
}

impl<B: Kv> Tiered<B> {
    /// A tiered space over a new, empty `base`.
    pub fn empty(base: B) -> Self {
        Self {
            base,
            index: Arc::new(RwLock::new(IndexSpace::default())),
            view: RwLock::new(()),
            generation: AtomicU64::new(0),
            dirty: std::sync::atomic::AtomicBool::new(false),
            store_id: ObjectId::new().bytes(),
            records: RecordCache::default(),
        }
    }

    /// A tiered space over `base`, with empty indexes (call [`Tiered::load_snapshot`]
    /// or rebuild them).
    pub fn new(base: B) -> Result<Self, StoreError> {
        let generation = match base.get(&generation_key())? {
            Some(v) => read_u64(v.as_ref()).ok_or_else(|| {
                StoreError::corrupt("generation", &generation_key(), "short value")
            })?,
            None => 0,
        };
        let id_key = keys::key(keys::META, &[b"store_id"]);
        let store_id = match base.get(&id_key)? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::corrupt("store id", &id_key, "not 12 bytes"))?,
            None => {
                let id = ObjectId::new().bytes();
                base.apply(vec![(id_key, Some(id.to_vec()))])?;
                id
            }
        };
        Ok(Self {
            base,
            index: Arc::new(RwLock::new(IndexSpace::default())),
            view: RwLock::new(()),
            generation: AtomicU64::new(generation),
            dirty: std::sync::atomic::AtomicBool::new(false),
            store_id,
            records: RecordCache::default(),
        })
    }

    /// Loads the snapshot in `dir` if it belongs to this store, matches the base's
    /// generation and passes its checks; then deletes the file, so that only a clean
    /// [`Tiered::write_snapshot`] leaves one. Any problem means "not loaded" (the
    /// caller rebuilds the indexes from the documents).
    pub fn load_snapshot(&self, dir: &Path) -> Result<bool, StoreError> {
        let path = dir.join(SNAPSHOT_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(false);
        };
        let _ = std::fs::remove_file(&path);
        let header = SnapshotHeader {
            store_id: self.store_id,
            generation: self.generation.load(Ordering::SeqCst),
        };
        match IndexSpace::from_snapshot(&bytes, &header) {
            Some(space) => {
                *self.index.write().map_err(|_| StoreError::Poisoned)? = space;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Writes the index snapshot for the current generation (after the base is
    /// flushed), streamed to a temporary file, fsynced, then renamed into place.
    /// Writes nothing (and removes an old snapshot) while the indexes may be wrong.
    pub fn write_snapshot(&self, dir: &Path) -> Result<(), StoreError> {
        let _writers_wait = self.view.write().map_err(|_| StoreError::Poisoned)?;
        let path = dir.join(SNAPSHOT_FILE);
        if self.dirty.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&path);
            return Ok(());
        }
        self.base.flush()?;
        let header = SnapshotHeader {
            store_id: self.store_id,
            generation: self.generation.load(Ordering::SeqCst),
        };
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let io = |e: std::io::Error| StoreError::Task(format!("writing the index snapshot: {e}"));
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut w = std::io::BufWriter::new(file);
        self.index
            .read()
            .map_err(|_| StoreError::Poisoned)?
            .write_snapshot(&mut w, &header)
            .map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

impl<B: Kv> Tiered<B> {
    /// Calls `f` with the id of each `I` key in `[lo, hi)` (within one index, or `hi`
    /// past its end) until it returns false; false when `lo` is not an index key.
    fn visit_range(
        &self,
        lo: &[u8],
        hi: &[u8],
        f: &mut dyn FnMut(&ObjectId) -> bool,
    ) -> Result<bool, StoreError> {
        let (Some(&keys::INDEX), Some(&idx)) = (lo.first(), lo.get(1)) else {
            return Ok(false);
        };
        let space = self.index.read().map_err(|_| StoreError::Poisoned)?;
        let head = [keys::INDEX, idx];
        let hi_rest: &[u8] = if hi.len() >= 2 && hi[..2] == head {
            &hi[2..]
        } else {
            &[0xFF]
        };
        if let Some(data) = space.indexes.get(&idx) {
            if lo[2..] < *hi_rest {
                data.postings
                    .visit_entries(&lo[2..], false, hi_rest, false, &mut |_, id| f(id));
            }
        }
        Ok(true)
    }
}

impl<B: Kv> crate::kv::sealed::Sealed for Tiered<B> {}

impl<B: Kv> Kv for Tiered<B> {
    type Bytes = Arc<[u8]>;

    fn get(&self, key: &[u8]) -> Result<Option<Arc<[u8]>>, StoreError> {
        if is_index_key(key) {
            let space = self.index.read().map_err(|_| StoreError::Poisoned)?;
            return Ok(space.get(key).map(Arc::from));
        }
        if !RecordCache::covers(key) {
            return Ok(self.base.get(key)?.map(|v| Arc::from(v.as_ref())));
        }
        match self.records.get(key) {
            Ok(v) => Ok(Some(v)),
            Err(miss) => {
                let v: Option<Arc<[u8]>> = self.base.get(key)?.map(|v| Arc::from(v.as_ref()));
                if let (Some(miss), Some(v)) = (miss, v.as_ref()) {
                    self.records.keep(miss, key, v);
                }
                Ok(v)
            }
        }
    }

    fn scan(&self, lo: &[u8], hi: &[u8], rev: bool) -> Scan<'_, Arc<[u8]>> {
        if lo >= hi {
            return Box::new(std::iter::empty());
        }
        if is_index_key(lo) {
            return Box::new(IndexScan {
                index: Arc::clone(&self.index),
                lo: lo.to_vec(),
                hi: hi.to_vec(),
                rev,
                last: None,
                buf: Vec::new().into_iter(),
                done: false,
                chunk: FIRST_CHUNK,
            });
        }
        Box::new(self.base.scan(lo, hi, rev).map(|item| {
            let (k, v) = item?;
            Ok((Arc::from(k.as_ref()), Arc::from(v.as_ref())))
        }))
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let (index, mut base): (Vec<Write>, Vec<Write>) =
            writes.into_iter().partition(|(k, _)| is_index_key(k));
        if base.is_empty() && index.is_empty() {
            return Ok(());
        }
        // Check every index key first: once the base batch is applied, the in-memory
        // update must not fail.
        for (k, _) in &index {
            let well_formed = match k.first() {
                Some(&keys::INDEX) => split_entry(k).is_some(),
                _ => k.len() >= 3,
            };
            if !well_formed {
                return Err(StoreError::corrupt("index key", k, "malformed"));
            }
        }
        // Base-only writes (events, records) cannot make a reader see a document
        // without its index entries: they skip the exclusive view.
        let _exclusive = if index.is_empty() {
            None
        } else {
            Some(self.view.write().map_err(|_| StoreError::Poisoned)?)
        };
        let mut space = if index.is_empty() {
            None
        } else {
            Some(self.index.write().map_err(|_| StoreError::Poisoned)?)
        };
        let next = self.generation.load(Ordering::SeqCst) + 1;
        base.push((generation_key(), Some(next.to_be_bytes().to_vec())));
        // Kept user records this batch writes are forgotten before and after it
        // (see `records`); the second time also when the batch fails or panics.
        let forget = self.records.around_write(&base);
        let applied = self.base.apply(base);
        drop(forget);
        if let Err(e) = applied {
            // The base may or may not hold the batch: never trust a snapshot again.
            self.dirty.store(true, Ordering::SeqCst);
            return Err(e);
        }
        self.generation.store(next, Ordering::SeqCst);
        if let Some(space) = space.as_mut() {
            for (k, v) in &index {
                if let Err(e) = space.apply(k, v.as_deref()) {
                    self.dirty.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.base.flush()
    }

    fn read_view(&self) -> Result<ViewGuard<'_>, StoreError> {
        Ok(ViewGuard(Some(
            self.view.read().map_err(|_| StoreError::Poisoned)?,
        )))
    }

    fn posting_ids(&self, index_id: u8, tuple: &[u8]) -> Result<Option<Vec<ObjectId>>, StoreError> {
        let space = self.index.read().map_err(|_| StoreError::Poisoned)?;
        Ok(Some(
            space
                .indexes
                .get(&index_id)
                .map_or_else(Vec::new, |d| d.postings.ids(tuple)),
        ))
    }

    fn range_ids(&self, lo: &[u8], hi: &[u8]) -> Result<Option<Vec<ObjectId>>, StoreError> {
        let mut out = Vec::new();
        let visited = self.visit_range(lo, hi, &mut |id| {
            out.push(*id);
            true
        })?;
        Ok(visited.then_some(out))
    }

    fn range_count(&self, lo: &[u8], hi: &[u8], cap: u64) -> Result<Option<u64>, StoreError> {
        let mut n = 0u64;
        let visited = self.visit_range(lo, hi, &mut |_| {
            n += 1;
            n < cap
        })?;
        Ok(visited.then_some(n))
    }

    fn derives_counts(&self) -> bool {
        true
    }

    fn clear_indexes(&self) -> Result<(), StoreError> {
        let _exclusive = self.view.write().map_err(|_| StoreError::Poisoned)?;
        self.dirty.store(true, Ordering::SeqCst);
        *self.index.write().map_err(|_| StoreError::Poisoned)? = IndexSpace::default();
        Ok(())
    }

    fn indexes_rebuilt(&self) {
        self.dirty.store(false, Ordering::SeqCst);
    }
}

/// The size of one in-memory index (see [`Tiered::index_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexStats {
    /// The index id (see [`crate::INDEXES`]).
    pub index: u8,
    /// Distinct value tuples.
    pub tuples: u64,
    /// Tuples held by exactly one node.
    pub single_tuples: u64,
    /// Entries (tuple, node) in all.
    pub entries: u64,
    /// Bytes of the encoded tuples, summed over distinct tuples.
    pub tuple_bytes: u64,
    /// An estimate of the heap bytes the index holds.
    pub heap_bytes: u64,
}

impl<B: Kv> Tiered<B> {
    /// Per index: how many tuples and entries it holds in memory.
    pub fn index_stats(&self) -> Result<Vec<IndexStats>, StoreError> {
        let space = self.index.read().map_err(|_| StoreError::Poisoned)?;
        Ok(space
            .indexes
            .iter()
            .map(|(&index, data)| {
                let mut s = IndexStats {
                    index,
                    heap_bytes: data.postings.heap_bytes() as u64,
                    ..IndexStats::default()
                };
                data.postings.for_each_tuple(&mut |t, ids| {
                    s.tuples += 1;
                    s.tuple_bytes += t.len() as u64;
                    s.entries += ids.len() as u64;
                    if ids.len() == 1 {
                        s.single_tuples += 1;
                    }
                });
                s
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::MemKv;

    fn entry(idx: u8, tuple: &[u8], id: u8) -> Vec<u8> {
        [&[keys::INDEX, idx][..], tuple, &[id; 12]].concat()
    }

    #[test]
    fn scans_match_a_plain_ordered_space() {
        let tiered = Tiered::new(MemKv::default()).unwrap();
        let plain = MemKv::default();
        let mut writes = Vec::new();
        for idx in [1u8, 2] {
            for t in [
                &b"\x30a\x00\x00"[..],
                b"\x30b\x00\x00",
                b"\x10",
                b"\x30ab\x00\x00",
            ] {
                for id in [3u8, 1, 2] {
                    writes.push((entry(idx, t, id), Some(Vec::new())));
                }
            }
        }
        writes.push((entry(1, b"\x10", 2), None));
        writes.push((
            vec![keys::COUNT, 1, keys::IRREGULAR],
            Some(5u64.to_be_bytes().to_vec()),
        ));
        tiered.apply(writes.clone()).unwrap();
        // The plain space gets what the tiered one derives: entries and counts.
        plain
            .apply(
                writes
                    .iter()
                    .filter(|(k, _)| k[0] == keys::INDEX)
                    .cloned()
                    .collect(),
            )
            .unwrap();
        let ranges: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![keys::INDEX, 1], vec![keys::INDEX, 2]),
            (vec![keys::INDEX, 1, 0x30], vec![keys::INDEX, 1, 0x31]),
            (entry(1, b"\x30a\x00\x00", 2), vec![keys::INDEX, 2]),
            (
                [&[keys::INDEX, 1], &b"\x30a\x00\x01"[..]].concat(),
                vec![keys::INDEX, 1, 0x31],
            ),
            (vec![keys::INDEX, 2, 0x10], entry(2, b"\x30ab\x00\x00", 2)),
        ];
        for (lo, hi) in ranges {
            for rev in [false, true] {
                let a: Vec<Vec<u8>> = tiered
                    .scan(&lo, &hi, rev)
                    .map(|r| r.unwrap().0.to_vec())
                    .collect();
                let b: Vec<Vec<u8>> = plain
                    .scan(&lo, &hi, rev)
                    .map(|r| r.unwrap().0.to_vec())
                    .collect();
                assert_eq!(a, b, "{lo:?}..{hi:?} rev={rev}");
            }
        }
        // Counters are list lengths; the irregular counter is kept.
        let count = |k: &[u8]| tiered.get(k).unwrap().map(|v| read_u64(&v).unwrap());
        assert_eq!(count(&[keys::COUNT, 1, 0x10]), Some(2));
        assert_eq!(count(&[keys::COUNT, 1, 0x30, b'b', 0, 0]), Some(3));
        assert_eq!(count(&[keys::COUNT, 1, keys::IRREGULAR]), Some(5));
        assert_eq!(count(&[keys::COUNT, 3, 0x10]), None);
        let distinct: Vec<Vec<u8>> = tiered
            .scan(&[keys::COUNT, 1], &[keys::COUNT, 1, keys::LOSSY], false)
            .map(|r| r.unwrap().0.to_vec())
            .collect();
        assert_eq!(distinct.len(), 4);
    }

    /// Scans that resume across chunks (a tuple with more ids than a chunk), with
    /// bounds inside tuples and ids, agree with a plain ordered space.
    #[test]
    fn resumed_scans_match_a_plain_ordered_space() {
        let tiered = Tiered::new(MemKv::default()).unwrap();
        let plain = MemKv::default();
        let id = |n: u32| {
            let mut b = [0u8; 12];
            b[8..].copy_from_slice(&n.to_be_bytes());
            b
        };
        let mut writes = Vec::new();
        for (t, count) in [
            (&b"\x10"[..], 5u32),
            (b"\x30a\x00\x00", 9000),
            (b"\x30b\x00\x00", 3),
        ] {
            for n in 0..count {
                writes.push((
                    [&[keys::INDEX, 4][..], t, &id(n * 7)].concat(),
                    Some(Vec::new()),
                ));
            }
        }
        tiered.apply(writes.clone()).unwrap();
        plain.apply(writes).unwrap();
        let k = |t: &[u8], tail: &[u8]| [&[keys::INDEX, 4][..], t, tail].concat();
        let bounds: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (vec![keys::INDEX, 4], vec![keys::INDEX, 5]),
            (
                k(b"\x30a\x00\x00", &id(700)),
                k(b"\x30a\x00\x00", &id(50_000)),
            ),
            (k(b"\x30a\x00\x00", &id(701)[..10]), k(b"\x30b", &[])),
            (k(b"\x10", &id(14)), k(b"\x30a\x00\x00", &id(3)[..5])),
            (k(b"\x30", &[]), k(b"\x30a\x00\x00", &[])),
            (k(b"\x30a\x00\x00", &[]), k(b"\x30a\x00\x01", &[])),
        ];
        for (lo, hi) in bounds {
            for rev in [false, true] {
                let a: Vec<Vec<u8>> = tiered
                    .scan(&lo, &hi, rev)
                    .map(|r| r.unwrap().0.to_vec())
                    .collect();
                let b: Vec<Vec<u8>> = plain
                    .scan(&lo, &hi, rev)
                    .map(|r| r.unwrap().0.to_vec())
                    .collect();
                assert_eq!(a.len(), b.len(), "{lo:?}..{hi:?} rev={rev}");
                assert_eq!(a, b, "{lo:?}..{hi:?} rev={rev}");
            }
        }
        // Inverted and foreign ranges are empty, never a panic.
        let empty = |lo: &[u8], hi: &[u8]| tiered.scan(lo, hi, false).count();
        assert_eq!(empty(&[keys::COUNT, 4, 0xFF, 0], &[keys::COUNT, 5]), 0);
        assert_eq!(empty(&k(b"\x30b", &[]), &k(b"\x30a", &[])), 0);
    }

    #[test]
    fn snapshots_round_trip_and_check_the_generation() {
        let tiered = Tiered::new(MemKv::default()).unwrap();
        tiered
            .apply(vec![
                (entry(7, b"\x30x\x00\x00", 1), Some(Vec::new())),
                (entry(7, b"\x30x\x00\x00", 2), Some(Vec::new())),
            ])
            .unwrap();
        let space = tiered.index.read().unwrap().clone();
        let header = |generation, store_id| SnapshotHeader {
            store_id,
            generation,
        };
        let bytes = space.snapshot_bytes(&header(9, [1; 12]));
        assert_eq!(
            IndexSpace::from_snapshot(&bytes, &header(9, [1; 12])),
            Some(space)
        );
        assert_eq!(
            IndexSpace::from_snapshot(&bytes, &header(8, [1; 12])),
            None,
            "stale generation"
        );
        assert_eq!(
            IndexSpace::from_snapshot(&bytes, &header(9, [2; 12])),
            None,
            "another store"
        );
        assert_eq!(
            IndexSpace::from_snapshot(&bytes[..bytes.len() - 1], &header(9, [1; 12])),
            None,
            "truncated"
        );
        let mut flipped = bytes.clone();
        let at = flipped.len() - 20;
        flipped[at] ^= 1;
        assert_eq!(
            IndexSpace::from_snapshot(&flipped, &header(9, [1; 12])),
            None,
            "checksum"
        );
    }
}
