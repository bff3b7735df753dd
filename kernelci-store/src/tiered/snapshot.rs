//! The index snapshot file (format 3): the whole [`IndexSpace`] written by a clean
//! `close` and loaded by the next `open` instead of rebuilding from the documents.
//!
//! Layout (integers big-endian unless "varint", which is LEB128):
//!
//! ```text
//! magic | layout u64 | index fingerprint u64 | store id [12] | generation u64
//! id table: count u64, then that many ids [12], strictly increasing
//! indexes: count u64, then per index:
//!     index id u8 | irregular u64 | lossy u64 | postings u64 | section bytes u64 | section
//! CRC-32 of everything above, u32
//! ```
//!
//! A section holds the postings of one index in tuple order. Each tuple is
//! prefix-compressed against the one before it (varint shared length, varint rest
//! length, the rest), then its id count (varint) and its ids. An id is written as
//! the varint gap to its position in the id table (`position - next + 1`, where
//! `next` is one past the previous id's position: dense lists cost one byte an id),
//! or, when the table does not hold it, `0` followed by its 12 bytes.
//!
//! The id table is the ids of the first index (`kind`, which every node has exactly
//! once), so in practice every id is in it; the escape keeps any space exact.
//!
//! Why: format 2 wrote every id as 12 bytes and every tuple whole, 645 MB at 1M
//! nodes, as large as the documents. Sections carry their byte length so that they
//! are parsed in parallel without a first pass.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use kernelci_core::id::ObjectId;

use super::{IndexData, IndexSpace, Postings};

/// Format 3: id table, prefix-compressed tuples, id gaps (formats 1 and 2 are not
/// loaded: their store rebuilds its indexes once).
const SNAPSHOT_MAGIC: &[u8] = b"kernelci-rs index snapshot 3\n";

/// Layout of the index keys a snapshot holds (the index-key layout of store layout
/// 2; documents changed encoding in layout 3 without touching index keys). Bump
/// when index keys change.
const SNAPSHOT_LAYOUT: u64 = 2;

/// The snapshot file inside a sled store's directory.
pub(crate) const SNAPSHOT_FILE: &str = "indexes.snapshot";

/// What a snapshot must match to be loaded.
pub(super) struct SnapshotHeader {
    /// The store's random identity.
    pub(super) store_id: [u8; 12],
    /// The base's write generation when the snapshot was taken.
    pub(super) generation: u64,
}

impl IndexSpace {
    /// Streams the snapshot (module docs) to `w`.
    pub(super) fn write_snapshot(
        &self,
        w: &mut impl std::io::Write,
        header: &SnapshotHeader,
    ) -> std::io::Result<()> {
        let table = self.id_table();
        let mut hashing = Hashing {
            inner: w,
            hash: crc32fast::Hasher::new(),
        };
        // Buffered above the checksum, so the CRC sees large chunks (its SIMD path).
        let mut h = std::io::BufWriter::with_capacity(1 << 16, &mut hashing);
        h.write_all(SNAPSHOT_MAGIC)?;
        h.write_all(&SNAPSHOT_LAYOUT.to_be_bytes())?;
        h.write_all(&index_fingerprint().to_be_bytes())?;
        h.write_all(&header.store_id)?;
        h.write_all(&header.generation.to_be_bytes())?;
        h.write_all(&(table.len() as u64).to_be_bytes())?;
        for id in &table {
            h.write_all(&id.bytes())?;
        }
        h.write_all(&(self.indexes.len() as u64).to_be_bytes())?;
        let positions = Positions::new(&table);
        let indexes: Vec<(&u8, &IndexData)> = self.indexes.iter().collect();
        let sections = parallel(&indexes, |(_, data)| {
            let mut section = Vec::new();
            encode_section(&mut section, data, &positions);
            section
        });
        for ((idx, data), section) in indexes.iter().zip(sections) {
            h.write_all(&[**idx])?;
            h.write_all(&data.irregular.to_be_bytes())?;
            h.write_all(&data.lossy.to_be_bytes())?;
            h.write_all(&(data.postings.tuples() as u64).to_be_bytes())?;
            h.write_all(&(section.len() as u64).to_be_bytes())?;
            h.write_all(&section)?;
        }
        h.flush()?;
        drop(h);
        let sum = hashing.hash.finalize();
        hashing.inner.write_all(&sum.to_be_bytes())
    }

    /// The snapshot as bytes (tests).
    #[cfg(test)]
    pub(super) fn snapshot_bytes(&self, header: &SnapshotHeader) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.write_snapshot(&mut out, header);
        out
    }

    /// The sorted, distinct ids of the first index.
    fn id_table(&self) -> Vec<ObjectId> {
        let Some(first) = self.indexes.values().next() else {
            return Vec::new();
        };
        let mut ids: Vec<ObjectId> = Vec::new();
        first
            .postings
            .for_each_tuple(&mut |_, list| ids.extend_from_slice(list));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Parses a snapshot, or `None` if it is not exactly a valid snapshot of this
    /// store at this generation with the current index definitions.
    ///
    /// The sections are parsed in parallel (one thread per core, up to 4), each into
    /// a sorted vector that `BTreeMap` builds in bulk: reopening a large store is
    /// bounded by reading the file, not by a million tree insertions.
    pub(super) fn from_snapshot(bytes: &[u8], header: &SnapshotHeader) -> Option<Self> {
        let (body, sum) = bytes.split_at(bytes.len().checked_sub(4)?);
        if crc32fast::hash(body) != u32::from_be_bytes(sum.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body);
        if r.take(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC
            || r.u64()? != SNAPSHOT_LAYOUT
            || r.u64()? != index_fingerprint()
            || r.take(12)? != header.store_id
            || r.u64()? != header.generation
        {
            return None;
        }
        let n = usize::try_from(r.u64()?).ok()?;
        let raw = r.take(n.checked_mul(12)?)?;
        let table: Vec<ObjectId> = raw
            .chunks_exact(12)
            .map(|c| c.try_into().ok().map(ObjectId::from_bytes))
            .collect::<Option<_>>()?;
        if !table.windows(2).all(|w| w[0] < w[1]) {
            return None;
        }
        let mut sections: Vec<(u8, u64, u64, u64, &[u8])> = Vec::new();
        for _ in 0..r.u64()? {
            let idx = r.take(1)?[0];
            let (irregular, lossy, count) = (r.u64()?, r.u64()?, r.u64()?);
            let len = usize::try_from(r.u64()?).ok()?;
            sections.push((idx, irregular, lossy, count, r.take(len)?));
        }
        if !r.0.is_empty() {
            return None;
        }
        let parsed = parallel(&sections, |&(idx, irregular, lossy, count, section)| {
            parse_section(section, count, &table).map(|postings| {
                (
                    idx,
                    IndexData {
                        postings,
                        irregular,
                        lossy,
                    },
                )
            })
        });
        let mut space = IndexSpace::default();
        for item in parsed {
            let (idx, data) = item?;
            if space.indexes.insert(idx, data).is_some() {
                return None;
            }
        }
        Some(space)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Runs `f` over `items` on up to four threads (one per core), results in order.
fn parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(mine) => mine,
                // A worker cannot panic (f does not); if one did, its panic resumes.
                Err(e) => std::panic::resume_unwind(e),
            })
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Where an id sits in the sorted id table: the table is split into as many buckets
/// as ids by the first 8 bytes of the id (time, then the random part), so a lookup
/// is a bucket and a search among the few ids in it, not a search of the table.
struct Positions<'a> {
    table: &'a [ObjectId],
    lo: u64,
    span: u128,
    starts: Vec<u32>,
}

fn head(id: &ObjectId) -> u64 {
    let b = id.bytes();
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl<'a> Positions<'a> {
    fn new(table: &'a [ObjectId]) -> Self {
        let (lo, hi) = match (table.first(), table.last()) {
            (Some(a), Some(b)) => (head(a), head(b)),
            _ => (0, 0),
        };
        let mut p = Self {
            table,
            lo,
            span: u128::from(hi - lo) + 1,
            starts: Vec::with_capacity(table.len() + 2),
        };
        // starts[b] = the first position whose bucket is at least b.
        for (i, id) in table.iter().enumerate() {
            let b = p.bucket(id);
            while p.starts.len() <= b {
                p.starts.push(i as u32);
            }
        }
        while p.starts.len() <= p.buckets() {
            p.starts.push(table.len() as u32);
        }
        p
    }

    fn buckets(&self) -> usize {
        self.table.len().max(1)
    }

    fn bucket(&self, id: &ObjectId) -> usize {
        let k = head(id).clamp(self.lo, self.lo + (self.span - 1) as u64) - self.lo;
        (u128::from(k) * self.buckets() as u128 / self.span) as usize
    }

    /// `Ok(position)` of `id` in the table, or `Err` when the table lacks it.
    fn find(&self, id: &ObjectId) -> Result<usize, ()> {
        let b = self.bucket(id);
        let (start, end) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        let at = start + self.table[start..end].partition_point(|x| x < id);
        if self.table.get(at) == Some(id) {
            Ok(at)
        } else {
            Err(())
        }
    }
}

fn encode_section(out: &mut Vec<u8>, data: &IndexData, positions: &Positions<'_>) {
    let mut prev: Vec<u8> = Vec::new();
    data.postings.for_each_tuple(&mut |t, ids| {
        let shared = prev
            .iter()
            .zip(t.iter())
            .take_while(|(a, b)| a == b)
            .count();
        put_varint(out, shared as u64);
        put_varint(out, (t.len() - shared) as u64);
        out.extend_from_slice(&t[shared..]);
        put_varint(out, ids.len() as u64);
        let mut next = 0;
        for id in ids {
            match positions.find(id) {
                Ok(pos) => {
                    put_varint(out, (pos - next + 1) as u64);
                    next = pos + 1;
                }
                Err(()) => {
                    out.push(0);
                    out.extend_from_slice(&id.bytes());
                }
            }
        }
        prev.clear();
        prev.extend_from_slice(t);
    });
}

/// The postings of one section: strictly increasing non-empty tuples, each with a
/// non-empty, strictly increasing id list.
fn parse_section(section: &[u8], count: u64, table: &[ObjectId]) -> Option<Postings> {
    let mut r = Reader(section);
    let count = usize::try_from(count).ok()?;
    let mut prev: Vec<u8> = Vec::new();
    let mut failed = false;
    let mut parsed = 0usize;
    let tuples = std::iter::from_fn(|| {
        if failed || parsed == count {
            return None;
        }
        parsed += 1;
        let item = parse_tuple(&mut r, &prev, table);
        match &item {
            Some((t, _)) => {
                prev.clear();
                prev.extend_from_slice(t);
            }
            None => failed = true,
        }
        item
    });
    let postings = Postings::from_sorted(tuples)?;
    if failed || parsed != count || !r.0.is_empty() {
        return None;
    }
    Some(postings)
}

/// One tuple of a section and its ids (after the tuple `prev`).
fn parse_tuple(
    r: &mut Reader<'_>,
    prev: &[u8],
    table: &[ObjectId],
) -> Option<(Vec<u8>, Vec<ObjectId>)> {
    let shared = r.varint()?;
    let rest = r.varint()?;
    if shared > prev.len() {
        return None;
    }
    let mut t = Vec::with_capacity(shared.checked_add(rest)?);
    t.extend_from_slice(&prev[..shared]);
    t.extend_from_slice(r.take(rest)?);
    if t.is_empty() || t.as_slice() <= prev {
        return None;
    }
    let n = r.varint()?;
    if n == 0 || n > r.0.len() {
        return None;
    }
    let mut ids = Vec::with_capacity(n);
    let mut next = 0usize;
    for _ in 0..n {
        let gap = r.varint()?;
        let id = if gap == 0 {
            ObjectId::from_bytes(r.take(12)?.try_into().ok()?)
        } else {
            let pos = next.checked_add(gap - 1)?;
            next = pos + 1;
            *table.get(pos)?
        };
        if ids.last().is_some_and(|last| *last >= id) {
            return None;
        }
        ids.push(id);
    }
    Some((t, ids))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A hash of the index definitions: a snapshot made with other definitions is not
/// loaded even if the layout number was not bumped.
fn index_fingerprint() -> u64 {
    let mut h = FNV_OFFSET;
    for i in crate::index::INDEXES {
        h = fnv(h, &[i.id]);
        for f in i.fields {
            h = fnv(h, f.as_bytes());
            h = fnv(h, &[0]);
        }
    }
    fnv(h, &(crate::index::MAX_ENTRIES as u64).to_be_bytes())
}

/// A writer that checksums (CRC-32) what passes through it.
struct Hashing<'a, W: std::io::Write> {
    inner: &'a mut W,
    hash: crc32fast::Hasher,
}

impl<W: std::io::Write> std::io::Write for Hashing<'_, W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(b)?;
        self.hash.update(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
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

    fn varint(&mut self) -> Option<usize> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first()?;
            v |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(v).ok();
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::small_id as id;

    /// Index id, then (tuple, small id numbers) per posting.
    type Spec = Vec<(u8, Vec<(Vec<u8>, Vec<u32>)>)>;

    fn space(indexes: Spec) -> IndexSpace {
        let mut s = IndexSpace::default();
        for (idx, postings) in indexes {
            let mut postings: Vec<(Vec<u8>, Vec<ObjectId>)> = postings
                .into_iter()
                .map(|(t, mut ids)| {
                    ids.sort_unstable();
                    ids.dedup();
                    (t, ids.into_iter().map(id).collect())
                })
                .collect();
            postings.sort();
            let postings = Postings::from_sorted(postings).expect("sorted, prefix-free tuples");
            s.indexes.insert(
                idx,
                IndexData {
                    postings,
                    irregular: 3,
                    lossy: 0,
                },
            );
        }
        s
    }

    const HEADER: SnapshotHeader = SnapshotHeader {
        store_id: [7; 12],
        generation: 42,
    };

    #[test]
    fn ids_missing_from_the_table_are_escaped() {
        // Index 1 (the table) holds ids 1..=3; index 2 names 0, 2, 9 and 1000.
        let s = space(vec![
            (
                1,
                vec![(b"a".to_vec(), vec![1, 2]), (b"b".to_vec(), vec![3])],
            ),
            (
                2,
                vec![
                    (b"x\0".to_vec(), vec![0, 2, 9, 1000]),
                    (b"xy\0".to_vec(), vec![3]),
                ],
            ),
        ]);
        let bytes = s.snapshot_bytes(&HEADER);
        assert_eq!(IndexSpace::from_snapshot(&bytes, &HEADER), Some(s));
    }

    #[test]
    fn an_empty_space_round_trips() {
        let s = IndexSpace::default();
        let bytes = s.snapshot_bytes(&HEADER);
        assert_eq!(IndexSpace::from_snapshot(&bytes, &HEADER), Some(s));
    }

    #[test]
    fn every_truncation_is_refused() {
        let s = space(vec![(1, vec![(b"a".to_vec(), vec![1, 2, 300])])]);
        let bytes = s.snapshot_bytes(&HEADER);
        for len in 0..bytes.len() {
            assert!(IndexSpace::from_snapshot(&bytes[..len], &HEADER).is_none());
        }
    }

    #[test]
    fn a_dense_list_costs_about_a_byte_an_id() {
        let all: Vec<u32> = (0..10_000).collect();
        let s = space(vec![(1, vec![(b"test".to_vec(), all)])]);
        let bytes = s.snapshot_bytes(&HEADER);
        // 12 bytes per id in the table, about one more per id in the section.
        assert!(bytes.len() < 10_000 * 14, "{} bytes", bytes.len());
    }

    proptest! {
        #[test]
        fn positions_find_every_table_id_and_nothing_else(
            raw in prop::collection::btree_set(any::<[u8; 12]>(), 0..300),
            probes in prop::collection::vec(any::<[u8; 12]>(), 0..50),
        ) {
            let table: Vec<ObjectId> = raw.iter().copied().map(ObjectId::from_bytes).collect();
            let positions = Positions::new(&table);
            for (i, id) in table.iter().enumerate() {
                prop_assert_eq!(positions.find(id), Ok(i));
            }
            for p in probes {
                let id = ObjectId::from_bytes(p);
                prop_assert_eq!(positions.find(&id).is_ok(), raw.contains(&p));
            }
        }

        #[test]
        fn arbitrary_spaces_round_trip(
            indexes in prop::collection::btree_map(
                1u8..6,
                prop::collection::btree_map(
                    // Fixed length: tuples never prefix one another.
                    prop::collection::vec(any::<u8>(), 3),
                    prop::collection::vec(0u32..5_000, 1..40),
                    1..20,
                ),
                0..4,
            )
        ) {
            let s = space(
                indexes
                    .into_iter()
                    .map(|(i, p)| (i, p.into_iter().collect()))
                    .collect(),
            );
            let bytes = s.snapshot_bytes(&HEADER);
            prop_assert_eq!(IndexSpace::from_snapshot(&bytes, &HEADER), Some(s));
        }
    }
}
