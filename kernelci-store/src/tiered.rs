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

use std::collections::BTreeMap;
use std::io::{Read, Write as _};
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use kernelci_core::id::ObjectId;

use crate::error::StoreError;
use crate::keys::{self, read_u64};
use crate::kv::{Kv, Scan, ViewGuard, Write};

/// The ids of one value tuple, sorted ascending (one inline id for unique values).
#[derive(Debug, Clone, PartialEq)]
enum Ids {
    One(ObjectId),
    Many(Vec<ObjectId>),
}

impl Ids {
    fn as_slice(&self) -> &[ObjectId] {
        match self {
            Ids::One(id) => std::slice::from_ref(id),
            Ids::Many(v) => v,
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn insert(&mut self, id: ObjectId) {
        match self {
            Ids::One(one) if *one == id => {}
            Ids::One(one) => {
                let mut v = vec![*one, id];
                v.sort_unstable();
                *self = Ids::Many(v);
            }
            Ids::Many(v) => {
                // New ids are usually the largest: check the end first.
                if v.last().is_none_or(|last| *last < id) {
                    v.push(id);
                } else if let Err(at) = v.binary_search(&id) {
                    v.insert(at, id);
                }
            }
        }
    }

    /// Removes `id`; true when the list became empty.
    fn remove(&mut self, id: ObjectId) -> bool {
        match self {
            Ids::One(one) => *one == id,
            Ids::Many(v) => {
                if let Ok(at) = v.binary_search(&id) {
                    v.remove(at);
                }
                if v.len() == 1 {
                    *self = Ids::One(v[0]);
                }
                false
            }
        }
    }
}

/// The in-memory entries and counters of one index.
#[derive(Debug, Default, Clone, PartialEq)]
struct IndexData {
    postings: BTreeMap<Box<[u8]>, Ids>,
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
                    Some(_) => match data.postings.get_mut(tuple) {
                        Some(ids) => ids.insert(id),
                        None => {
                            data.postings.insert(tuple.into(), Ids::One(id));
                        }
                    },
                    None => {
                        if data
                            .postings
                            .get_mut(tuple)
                            .is_some_and(|ids| ids.remove(id))
                        {
                            data.postings.remove(tuple);
                        }
                    }
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
                let ids = self.indexes.get(&idx)?.postings.get(tuple)?;
                ids.as_slice().binary_search(&id).ok().map(|_| Vec::new())
            }
            Some(&keys::COUNT) if k.len() >= 2 => {
                let data = self.indexes.get(&k[1])?;
                let n = match &k[2..] {
                    [keys::IRREGULAR] => data.irregular,
                    [keys::LOSSY] => data.lossy,
                    tuple => data.postings.get(tuple).map_or(0, |ids| ids.len() as u64),
                };
                (n > 0).then(|| n.to_be_bytes().to_vec())
            }
            _ => None,
        }
    }

    /// Up to `max` keys of one index in `[lo, hi)` after `after` (exclusive), as
    /// `(key, value)`; both bounds must share their first two bytes (prefix + index)
    /// or `hi` must be the end of that index.
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
        let in_range =
            |k: &[u8]| k >= lo && k < hi && after.is_none_or(|a| if rev { k < a } else { k > a });
        // Tuple-level bounds: the rest of the key after prefix + index.
        let lo_rest = &lo[2..];
        let hi_rest: &[u8] = if hi.len() >= 2 && hi[..2] == head {
            &hi[2..]
        } else {
            &[0xFF; 1]
        };
        match prefix {
            keys::INDEX => {
                // A tuple whose keys may reach into the range starts at the greatest
                // tuple not above the lower bound (a key is tuple ++ id).
                let after_tuple = after.filter(|a| a.len() >= 14).map(|a| &a[2..a.len() - 12]);
                // The greatest tuple not above the lower bound may still hold keys in
                // range (a key is tuple ++ id).
                let floor: Option<&[u8]> = data
                    .postings
                    .range::<[u8], _>((Bound::Unbounded, Bound::Included(lo_rest)))
                    .next_back()
                    .map(|(t, _)| &t[..]);
                let mut start: Bound<&[u8]> = floor.map_or(Bound::Unbounded, Bound::Included);
                let mut end: Bound<&[u8]> = Bound::Excluded(hi_rest);
                // Resume where the previous chunk stopped.
                match (after_tuple, rev) {
                    (Some(t), false) if floor.is_none_or(|f| t > f) => start = Bound::Included(t),
                    (Some(t), true) if t < hi_rest => end = Bound::Included(t),
                    _ => {}
                }
                if let (Bound::Included(a), Bound::Included(b) | Bound::Excluded(b)) = (start, end)
                {
                    if a > b {
                        return out;
                    }
                }
                let range = data.postings.range::<[u8], _>((start, end));
                let push = |t: &[u8], id: &ObjectId, out: &mut Vec<(Vec<u8>, Vec<u8>)>| {
                    let mut k = Vec::with_capacity(2 + t.len() + 12);
                    k.extend_from_slice(&head);
                    k.extend_from_slice(t);
                    k.extend_from_slice(&id.bytes());
                    if in_range(&k) {
                        out.push((k, Vec::new()));
                    }
                };
                if rev {
                    'rev: for (t, ids) in range.rev() {
                        for id in ids.as_slice().iter().rev() {
                            push(t, id, &mut out);
                            if out.len() >= max {
                                break 'rev;
                            }
                        }
                    }
                } else {
                    'fwd: for (t, ids) in range {
                        for id in ids.as_slice() {
                            push(t, id, &mut out);
                            if out.len() >= max {
                                break 'fwd;
                            }
                        }
                    }
                }
            }
            keys::COUNT => {
                let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                for (t, ids) in data
                    .postings
                    .range::<[u8], _>((Bound::Included(lo_rest), Bound::Excluded(hi_rest)))
                {
                    all.push((
                        [&head[..], t].concat(),
                        (ids.len() as u64).to_be_bytes().to_vec(),
                    ));
                }
                for (suffix, n) in [(keys::LOSSY, data.lossy), (keys::IRREGULAR, data.irregular)] {
                    if n > 0 {
                        all.push((vec![prefix, idx, suffix], n.to_be_bytes().to_vec()));
                    }
                }
                all.retain(|(k, _)| in_range(k));
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

    fn snapshot_bytes(&self, generation: u64) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&crate::engine::SCHEMA_VERSION.to_be_bytes());
        out.extend_from_slice(&generation.to_be_bytes());
        out.extend_from_slice(&(self.indexes.len() as u64).to_be_bytes());
        for (idx, data) in &self.indexes {
            out.push(*idx);
            out.extend_from_slice(&data.irregular.to_be_bytes());
            out.extend_from_slice(&data.lossy.to_be_bytes());
            out.extend_from_slice(&(data.postings.len() as u64).to_be_bytes());
            for (t, ids) in &data.postings {
                out.extend_from_slice(&(t.len() as u32).to_be_bytes());
                out.extend_from_slice(t);
                out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
                for id in ids.as_slice() {
                    out.extend_from_slice(&id.bytes());
                }
            }
        }
        out
    }

    fn from_snapshot(bytes: &[u8], generation: u64) -> Option<Self> {
        let mut r = Reader(bytes);
        if r.take(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC
            || r.u64()? != crate::engine::SCHEMA_VERSION
            || r.u64()? != generation
        {
            return None;
        }
        let mut space = IndexSpace::default();
        for _ in 0..r.u64()? {
            let idx = r.take(1)?[0];
            let mut data = IndexData {
                irregular: r.u64()?,
                lossy: r.u64()?,
                ..IndexData::default()
            };
            for _ in 0..r.u64()? {
                let n = r.u32()? as usize;
                let t: Box<[u8]> = r.take(n)?.into();
                let count = r.u32()? as usize;
                let mut ids = Vec::with_capacity(count.min(1 << 20));
                for _ in 0..count {
                    ids.push(ObjectId::from_bytes(r.take(12)?.try_into().ok()?));
                }
                let ids = if ids.len() == 1 {
                    Ids::One(ids[0])
                } else {
                    Ids::Many(ids)
                };
                data.postings.insert(t, ids);
            }
            space.indexes.insert(idx, data);
        }
        r.0.is_empty().then_some(space)
    }
}

const SNAPSHOT_MAGIC: &[u8] = b"kernelci-rs index snapshot\n";
/// The snapshot file inside a sled store's directory.
pub(crate) const SNAPSHOT_FILE: &str = "indexes.snapshot";

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
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
}

/// How many index keys a scan copies per lock acquisition.
const CHUNK: usize = 512;

struct IndexScan {
    index: Arc<RwLock<IndexSpace>>,
    lo: Vec<u8>,
    hi: Vec<u8>,
    rev: bool,
    last: Option<Vec<u8>>,
    buf: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    done: bool,
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
            if chunk.len() < CHUNK {
                self.done = true;
            }
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
        Ok(Self {
            base,
            index: Arc::new(RwLock::new(IndexSpace::default())),
            view: RwLock::new(()),
            generation: AtomicU64::new(generation),
        })
    }

    /// Loads the snapshot in `dir` if it matches the base's generation.
    pub fn load_snapshot(&self, dir: &Path) -> Result<bool, StoreError> {
        let mut bytes = Vec::new();
        match std::fs::File::open(dir.join(SNAPSHOT_FILE)) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(|e| StoreError::Task(format!("reading the index snapshot: {e}")))?;
            }
            Err(_) => return Ok(false),
        }
        match IndexSpace::from_snapshot(&bytes, self.generation.load(Ordering::SeqCst)) {
            Some(space) => {
                *self.index.write().map_err(|_| StoreError::Poisoned)? = space;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Writes the index snapshot for the current generation (after the base is
    /// flushed), atomically (temporary file, fsync, rename).
    pub fn write_snapshot(&self, dir: &Path) -> Result<(), StoreError> {
        let _writers_wait = self.view.write().map_err(|_| StoreError::Poisoned)?;
        self.base.flush()?;
        let bytes = self
            .index
            .read()
            .map_err(|_| StoreError::Poisoned)?
            .snapshot_bytes(self.generation.load(Ordering::SeqCst));
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let io = |e: std::io::Error| StoreError::Task(format!("writing the index snapshot: {e}"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE)).map_err(io)
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
        Ok(self.base.get(key)?.map(|v| Arc::from(v.as_ref())))
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
            });
        }
        Box::new(self.base.scan(lo, hi, rev).map(|item| {
            let (k, v) = item?;
            Ok((Arc::from(k.as_ref()), Arc::from(v.as_ref())))
        }))
    }

    fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let _exclusive = self.view.write().map_err(|_| StoreError::Poisoned)?;
        let (index, mut base): (Vec<Write>, Vec<Write>) =
            writes.into_iter().partition(|(k, _)| is_index_key(k));
        if !base.is_empty() || !index.is_empty() {
            let next = self.generation.load(Ordering::SeqCst) + 1;
            base.push((generation_key(), Some(next.to_be_bytes().to_vec())));
            self.base.apply(base)?;
            self.generation.store(next, Ordering::SeqCst);
        }
        let mut space = self.index.write().map_err(|_| StoreError::Poisoned)?;
        for (k, v) in &index {
            space.apply(k, v.as_deref())?;
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
                .and_then(|d| d.postings.get(tuple))
                .map_or_else(Vec::new, |ids| ids.as_slice().to_vec()),
        ))
    }

    fn derives_counts(&self) -> bool {
        true
    }

    fn clear_indexes(&self) -> Result<(), StoreError> {
        let _exclusive = self.view.write().map_err(|_| StoreError::Poisoned)?;
        *self.index.write().map_err(|_| StoreError::Poisoned)? = IndexSpace::default();
        Ok(())
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
        let bytes = space.snapshot_bytes(9);
        assert_eq!(IndexSpace::from_snapshot(&bytes, 9), Some(space));
        assert_eq!(
            IndexSpace::from_snapshot(&bytes, 8),
            None,
            "stale generation"
        );
        assert_eq!(
            IndexSpace::from_snapshot(&bytes[..bytes.len() - 1], 9),
            None,
            "truncated"
        );
    }
}
