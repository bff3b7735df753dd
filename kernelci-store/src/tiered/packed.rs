//! A sorted set of byte strings packed into front-coded blocks: the in-memory form
//! of the index entries (see `postings`).
//!
//! Each block is one exact-size allocation holding up to about [`BLOCK_BYTES`] of
//! entries in ascending order. An entry is the length it shares with the entry
//! before it in the block (varint), the length of the rest (varint), then the rest;
//! a block's first entry shares nothing, so it is readable in place and serves as
//! the block's key. Sorted keys share long prefixes (an index tuple and the time
//! part of an id), so an entry costs a few bytes where a `BTreeMap` entry of boxed
//! bytes costs 60 to 90 (issue 13: one million nodes held about 36 million index
//! entries in about 900 MB).
//!
//! A set of one block is that block alone; a larger set keeps its blocks in a
//! `BTreeMap` by first key. Every set keeps a copy of its last key, so that
//! appending (new ids are usually the largest) reads no block. Finding a key in a
//! block reads the shared lengths and compares bytes only where they can decide
//! ([`probe`]); adding or removing one copies the block around it and re-encodes
//! the entry after it, without decoding the others.

use std::collections::BTreeMap;
use std::ops::Bound;

use kernelci_core::id::ObjectId;

/// The size a block is split at.
#[cfg(not(test))]
const BLOCK_BYTES: usize = 1024;
/// Small in tests, so that every test runs over many blocks.
#[cfg(test)]
const BLOCK_BYTES: usize = 64;

/// A sorted set of byte strings (module docs).
#[derive(Clone, Default)]
pub(super) struct PackedSet {
    len: usize,
    repr: Repr,
}

#[derive(Clone, Default)]
enum Repr {
    #[default]
    Empty,
    /// One block, and its last key.
    One { block: Box<[u8]>, last: Box<[u8]> },
    /// Blocks by their first key, and the largest key.
    Many {
        blocks: BTreeMap<Box<[u8]>, Box<[u8]>>,
        last: Box<[u8]>,
    },
}

impl std::fmt::Debug for PackedSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_list();
        self.visit(Bound::Unbounded, Bound::Unbounded, false, &mut |k| {
            list.entry(&k);
            true
        });
        list.finish()
    }
}

/// Equal content, whatever the block boundaries.
impl PartialEq for PackedSet {
    fn eq(&self, other: &Self) -> bool {
        if self.len != other.len {
            return false;
        }
        let (mut a, mut b) = (Vec::with_capacity(self.len), Vec::with_capacity(self.len));
        self.visit(Bound::Unbounded, Bound::Unbounded, false, &mut |k| {
            a.push(k.to_vec());
            true
        });
        other.visit(Bound::Unbounded, Bound::Unbounded, false, &mut |k| {
            b.push(k.to_vec());
            true
        });
        a == b
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at`; blocks are only ever written by this module, so a
/// malformed one reads as the end of the block.
fn varint(block: &[u8], at: &mut usize) -> Option<usize> {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let b = *block.get(*at)?;
        *at += 1;
        v |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// How many leading bytes `a` and `b` share.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Calls `f` with each entry of `block` in order until it returns false; false
/// when stopped.
fn for_each(block: &[u8], f: &mut dyn FnMut(&[u8]) -> bool) -> bool {
    let mut cur: Vec<u8> = Vec::with_capacity(64);
    let mut at = 0;
    while at < block.len() {
        let (Some(shared), Some(rest)) = (varint(block, &mut at), varint(block, &mut at)) else {
            return true;
        };
        let Some(bytes) = block.get(at..at + rest) else {
            return true;
        };
        at += rest;
        cur.truncate(shared);
        cur.extend_from_slice(bytes);
        if !f(&cur) {
            return false;
        }
    }
    true
}

/// The first entry of a block (stored whole).
fn first(block: &[u8]) -> &[u8] {
    let mut at = 0;
    match (varint(block, &mut at), varint(block, &mut at)) {
        (Some(0), Some(rest)) => block.get(at..at + rest).unwrap_or(&[]),
        _ => &[],
    }
}

/// Every entry of a block, decoded.
fn decode(block: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for_each(block, &mut |k| {
        out.push(k.to_vec());
        true
    });
    out
}

/// The last entry of a block (empty for an empty block).
fn last_key(block: &[u8]) -> Vec<u8> {
    let mut last: Vec<u8> = Vec::new();
    for_each(block, &mut |k| {
        last.clear();
        last.extend_from_slice(k);
        true
    });
    last
}

/// Where a key falls in a block (see [`probe`]).
struct Probe {
    /// Where the first entry at or above the key starts (where the entries end
    /// when there is none).
    at: usize,
    /// Where that entry ends.
    end: usize,
    /// The length the key shares with the entry before `at` (0 when none).
    prev_common: usize,
    /// The entry at `at`, if any.
    hit: Option<Hit>,
}

/// The first entry at or above a probed key: it is `key[..shared]` followed by
/// `block[rest]`.
struct Hit {
    shared: usize,
    rest: std::ops::Range<usize>,
    /// The length it shares with the key.
    common: usize,
    /// Whether it is the key.
    equal: bool,
}

/// Finds where `key` falls in `block` without decoding the entries: only the
/// length each entry shares with the one before it is read, against `m`, the
/// length the key shares with the last entry found below it. An entry sharing
/// more than `m` with its predecessor is below the key too (it has the byte where
/// the predecessor fell short of the key); one sharing less is above it (it rose
/// where the predecessor still agreed with the key); only one sharing exactly `m`
/// needs its bytes compared.
fn probe(block: &[u8], key: &[u8]) -> Probe {
    let mut at = 0;
    let mut m = 0;
    while at < block.len() {
        let mut p = at;
        let (Some(s), Some(r)) = (varint(block, &mut p), varint(block, &mut p)) else {
            break;
        };
        let Some(rest) = block.get(p..p + r) else {
            break;
        };
        let end = p + r;
        let found = |common: usize, equal: bool| Probe {
            at,
            end,
            prev_common: m,
            hit: Some(Hit {
                shared: s,
                rest: p..end,
                common,
                equal,
            }),
        };
        if s < m {
            return found(s, false);
        }
        if s == m {
            let tail = key.get(m..).unwrap_or(&[]);
            let j = common_prefix(rest, tail);
            match rest.get(j).cmp(&tail.get(j)) {
                std::cmp::Ordering::Less => m += j,
                std::cmp::Ordering::Equal => return found(m + j, true),
                std::cmp::Ordering::Greater => return found(m + j, false),
            }
        }
        at = end;
    }
    Probe {
        at,
        end: at,
        prev_common: m,
        hit: None,
    }
}

/// Appends an entry sharing `shared` bytes with the one before it.
fn put_entry(out: &mut Vec<u8>, shared: usize, rest: &[u8]) {
    put_varint(out, shared);
    put_varint(out, rest.len());
    out.extend_from_slice(rest);
}

/// A change to a block: the bytes in `range` are replaced by `with`.
struct Edit {
    range: std::ops::Range<usize>,
    with: Vec<u8>,
}

/// The edit that adds `key` to `block`, or `None` when it holds it already: the
/// new entry goes where [`probe`] stopped, and the entry found there is
/// re-encoded against it (from what the probe read, without decoding).
fn insert_edit(block: &[u8], key: &[u8]) -> Option<Edit> {
    insert_edit_from(block, key, probe(block, key))
}

/// [`insert_edit`] from the key's probe.
fn insert_edit_from(block: &[u8], key: &[u8], pr: Probe) -> Option<Edit> {
    if pr.hit.as_ref().is_some_and(|h| h.equal) {
        return None;
    }
    let mut with = Vec::with_capacity(2 * key.len() + 8);
    put_entry(&mut with, pr.prev_common, key.get(pr.prev_common..)?);
    if let Some(h) = pr.hit {
        let rest = block.get(h.rest)?;
        put_entry(&mut with, h.common, rest.get(h.common - h.shared..)?);
    }
    Some(Edit {
        range: pr.at..pr.end,
        with,
    })
}

/// The edit that removes `key` from `block`, or `None` when it does not hold
/// it. The entry after it is re-encoded against the one before: it shares with
/// that one the shorter of what each shares with `key`.
fn remove_edit(block: &[u8], key: &[u8]) -> Option<Edit> {
    let pr = probe(block, key);
    if !pr.hit.as_ref().is_some_and(|h| h.equal) {
        return None;
    }
    if pr.end == block.len() {
        return Some(Edit {
            range: pr.at..pr.end,
            with: Vec::new(),
        });
    }
    let mut p = pr.end;
    let next_shared = varint(block, &mut p)?;
    let r = varint(block, &mut p)?;
    let next_rest = block.get(p..p + r)?;
    let shared = next_shared.min(pr.prev_common);
    let mut with = Vec::with_capacity(next_shared - shared + r + 4);
    put_varint(&mut with, shared);
    put_varint(&mut with, next_shared - shared + r);
    with.extend_from_slice(key.get(shared..next_shared)?);
    with.extend_from_slice(next_rest);
    Some(Edit {
        range: pr.at..p + r,
        with,
    })
}

/// Applies `edit` to `block` in place: the allocation is resized once to the
/// exact new size (usually without moving, within the allocator's size class)
/// and the bytes after the edit shifted.
fn apply(block: &mut Box<[u8]>, edit: Edit) {
    let mut v = Vec::from(std::mem::take(block));
    let grow = edit.with.len().saturating_sub(edit.range.len());
    v.reserve_exact(grow);
    v.splice(edit.range, edit.with);
    *block = v.into_boxed_slice();
}

/// Appends `key` to a block being built whose last entry is `prev`.
fn push_entry(out: &mut Vec<u8>, prev: &[u8], key: &[u8]) {
    let shared = common_prefix(prev, key);
    put_entry(out, shared, &key[shared..]);
}

/// Encodes sorted `keys` into blocks of about [`BLOCK_BYTES`].
fn encode<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<Box<[u8]>> {
    let mut b = Builder::default();
    for k in keys {
        b.push(k);
    }
    b.blocks()
}

/// Builds a [`PackedSet`] from keys given in strictly increasing order.
pub(super) struct Builder {
    blocks: Vec<Box<[u8]>>,
    cur: Vec<u8>,
    prev: Vec<u8>,
    len: usize,
    /// The size a block is closed at.
    split: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            blocks: Vec::new(),
            cur: Vec::new(),
            prev: Vec::new(),
            len: 0,
            split: BLOCK_BYTES,
        }
    }
}

impl Builder {
    /// Appends `key`; false (and nothing appended) unless it is above the last one.
    pub(super) fn push(&mut self, key: &[u8]) -> bool {
        if self.len > 0 && key <= self.prev.as_slice() {
            return false;
        }
        if self.cur.len() >= self.split {
            self.blocks
                .push(std::mem::take(&mut self.cur).into_boxed_slice());
            self.prev.clear();
        }
        push_entry(&mut self.cur, &self.prev, key);
        self.prev.clear();
        self.prev.extend_from_slice(key);
        self.len += 1;
        true
    }

    fn blocks(mut self) -> Vec<Box<[u8]>> {
        if !self.cur.is_empty() {
            self.blocks.push(self.cur.into_boxed_slice());
        }
        self.blocks
    }

    /// The set of the keys pushed.
    pub(super) fn finish(self) -> PackedSet {
        let len = self.len;
        let last: Box<[u8]> = self.prev.as_slice().into();
        PackedSet {
            len,
            repr: repr_of(self.blocks(), Some(last)),
        }
    }
}

/// The representation of `blocks` (in order), whose last key is `last` (read
/// from the last block when not given and needed).
fn repr_of(mut blocks: Vec<Box<[u8]>>, last: Option<Box<[u8]>>) -> Repr {
    match blocks.len() {
        0 => Repr::Empty,
        1 => {
            let block = blocks.remove(0);
            Repr::One {
                last: last.unwrap_or_else(|| last_key(&block).into()),
                block,
            }
        }
        _ => Repr::Many {
            last: last.unwrap_or_else(|| {
                blocks
                    .last()
                    .map(|b| last_key(b))
                    .unwrap_or_default()
                    .into()
            }),
            blocks: blocks.into_iter().map(|b| (first(&b).into(), b)).collect(),
        },
    }
}

/// Decodes a block of 12-byte keys into ids (see [`PackedSet::extend_ids`]). A
/// 12-byte key's shared and rest lengths are one-byte varints summing to 12.
fn decode_ids(block: &[u8], out: &mut Vec<ObjectId>) -> bool {
    let mut cur = [0u8; 12];
    let mut at = 0;
    while at < block.len() {
        let (Some(&shared), Some(&rest)) = (block.get(at), block.get(at + 1)) else {
            return false;
        };
        let (shared, rest) = (usize::from(shared), usize::from(rest));
        if shared + rest != 12 {
            return false;
        }
        let Some(bytes) = block.get(at + 2..at + 2 + rest) else {
            return false;
        };
        cur[shared..].copy_from_slice(bytes);
        at += 2 + rest;
        out.push(ObjectId::from_bytes(cur));
    }
    true
}

fn above(lo: Bound<&[u8]>, k: &[u8]) -> bool {
    match lo {
        Bound::Included(b) => k >= b,
        Bound::Excluded(b) => k > b,
        Bound::Unbounded => true,
    }
}

fn below(hi: Bound<&[u8]>, k: &[u8]) -> bool {
    match hi {
        Bound::Included(b) => k <= b,
        Bound::Excluded(b) => k < b,
        Bound::Unbounded => true,
    }
}

impl PackedSet {
    /// A set of strictly increasing `keys`, built in bulk (a key not above the one
    /// before it is skipped).
    pub(super) fn from_sorted<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut b = Builder::default();
        for k in keys {
            b.push(k);
        }
        b.finish()
    }

    /// How many keys.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The largest key.
    fn last(&self) -> Option<&[u8]> {
        match &self.repr {
            Repr::Empty => None,
            Repr::One { last, .. } | Repr::Many { last, .. } => Some(last),
        }
    }

    /// Whether `key` is above every key.
    fn above_last(&self, key: &[u8]) -> bool {
        self.last().is_none_or(|l| key > l)
    }

    /// The largest key, given up while the representation changes.
    fn take_last(&mut self) -> Option<Box<[u8]>> {
        match &mut self.repr {
            Repr::Empty => None,
            Repr::One { last, .. } | Repr::Many { last, .. } => Some(std::mem::take(last)),
        }
    }

    /// The block that holds `key` if any block does: the last block whose first key
    /// is at most `key`, or the first block when `key` is below them all.
    fn block_for(&self, key: &[u8]) -> Option<(&[u8], &[u8])> {
        match &self.repr {
            Repr::Empty => None,
            Repr::One { block: b, .. } => Some((first(b), b)),
            Repr::Many { blocks, .. } => blocks
                .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
                .next_back()
                .or_else(|| blocks.iter().next())
                .map(|(k, b)| (&k[..], &b[..])),
        }
    }

    /// The block [`Self::block_for`] finds, to change it.
    fn block_for_mut(&mut self, key: &[u8]) -> Option<&mut Box<[u8]>> {
        match &mut self.repr {
            Repr::Empty => None,
            Repr::One { block: b, .. } => Some(b),
            Repr::Many { blocks, .. } => {
                if blocks.first_key_value().is_some_and(|(k, _)| key < &k[..]) {
                    blocks.values_mut().next()
                } else {
                    blocks
                        .range_mut::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
                        .next_back()
                        .map(|(_, b)| b)
                }
            }
        }
    }

    /// Whether `key` is in the set.
    pub(super) fn contains(&self, key: &[u8]) -> bool {
        if self.above_last(key) {
            return false;
        }
        self.block_for(key)
            .and_then(|(_, block)| probe(block, key).hit)
            .is_some_and(|h| h.equal)
    }

    /// The first key at or after `key`.
    pub(super) fn seek(&self, key: &[u8]) -> Option<Vec<u8>> {
        if self.above_last(key) {
            return None;
        }
        let (first_key, block) = self.block_for(key)?;
        if let Some(h) = probe(block, key).hit {
            let mut out = key.get(..h.shared)?.to_vec();
            out.extend_from_slice(block.get(h.rest)?);
            return Some(out);
        }
        // Above every key of its block: the next block starts with the answer.
        match &self.repr {
            Repr::Many { blocks, .. } => blocks
                .range::<[u8], _>((Bound::Excluded(first_key), Bound::Unbounded))
                .next()
                .map(|(k, _)| k.to_vec()),
            _ => None,
        }
    }

    /// Adds `key`; false when it was already there.
    pub(super) fn insert(&mut self, key: &[u8]) -> bool {
        if self.len == 0 {
            self.repr = repr_of(encode([key]), Some(key.into()));
            self.len = 1;
            return true;
        }
        if self.above_last(key) {
            self.append(key);
            return true;
        }
        let Some(edit) = self.block_for(key).and_then(|(_, b)| insert_edit(b, key)) else {
            return false;
        };
        self.insert_with(key, edit);
        true
    }

    /// Adds `key`, above every key of the (non-empty) set: the last block gets
    /// one entry encoded against `last` (grown in place by the allocator most of
    /// the time), or a new block starts. New ids are usually the largest.
    fn append(&mut self, key: &[u8]) {
        let grow = |b: &mut Box<[u8]>, last: &[u8]| {
            let shared = common_prefix(last, key);
            let mut with = Vec::with_capacity(key.len() - shared + 4);
            put_entry(&mut with, shared, &key[shared..]);
            let end = b.len();
            apply(
                b,
                Edit {
                    range: end..end,
                    with,
                },
            );
        };
        match &mut self.repr {
            Repr::Empty => return,
            Repr::One { block, last } if block.len() < BLOCK_BYTES => grow(block, last),
            Repr::One { block, .. } => {
                let old = std::mem::take(block);
                self.repr = repr_of(vec![old, encode([key]).remove(0)], Some(key.into()));
            }
            Repr::Many { blocks, last } => match blocks.last_entry() {
                Some(mut e) if e.get().len() < BLOCK_BYTES => grow(e.get_mut(), last),
                _ => {
                    blocks.insert(key.into(), encode([key]).remove(0));
                }
            },
        }
        if let Repr::One { last, .. } | Repr::Many { last, .. } = &mut self.repr {
            *last = key.into();
        }
        self.len += 1;
    }

    /// Adds `key` unless the set holds another key with the same first `prefix`
    /// bytes: that key is returned then, and nothing added. `Ok(false)` when `key`
    /// is there already. One probe answers both (the key's neighbours are the only
    /// candidates), so that `postings` keeps its single tuples unique at the cost
    /// of one insert.
    pub(super) fn insert_unless_prefixed(
        &mut self,
        key: &[u8],
        prefix: usize,
    ) -> Result<bool, Vec<u8>> {
        match self.last() {
            None => return Ok(self.insert(key)),
            Some(last) if key > last => {
                if common_prefix(last, key) >= prefix {
                    return Err(last.to_vec());
                }
                self.append(key);
                return Ok(true);
            }
            Some(_) => {}
        }
        let Some((first_key, block)) = self.block_for(key) else {
            return Ok(false);
        };
        let pr = probe(block, key);
        match &pr.hit {
            Some(h) if h.equal => return Ok(false),
            Some(h) if h.common >= prefix => {
                let mut other = key.get(..h.shared).unwrap_or_default().to_vec();
                other.extend_from_slice(block.get(h.rest.clone()).unwrap_or_default());
                return Err(other);
            }
            Some(_) => {}
            None => {
                // Above its block: the next block's first key follows it.
                if let Repr::Many { blocks, .. } = &self.repr {
                    let next = blocks
                        .range::<[u8], _>((Bound::Excluded(first_key), Bound::Unbounded))
                        .next();
                    if let Some((k, _)) = next.filter(|(k, _)| common_prefix(k, key) >= prefix) {
                        return Err(k.to_vec());
                    }
                }
            }
        }
        if pr.at > 0 && pr.prev_common >= prefix {
            // The key before it (rare: decoded the slow way).
            let mut other = Vec::new();
            self.visit(Bound::Unbounded, Bound::Excluded(key), true, &mut |k| {
                other = k.to_vec();
                false
            });
            return Err(other);
        }
        let Some(edit) = insert_edit_from(block, key, pr) else {
            return Ok(false);
        };
        self.insert_with(key, edit);
        Ok(true)
    }

    /// Applies `edit`, which adds `key` to the block [`Self::block_for`] finds,
    /// then settles the block if its first key or its size changed.
    fn insert_with(&mut self, key: &[u8], edit: Edit) {
        let Some(block) = self.block_for_mut(key) else {
            return;
        };
        // A key below the block's first one changes the block's key in the map.
        let old_first: Option<Box<[u8]>> = (edit.range.start == 0).then(|| first(block).into());
        apply(block, edit);
        let outgrown = block.len() > BLOCK_BYTES;
        let map_key = old_first.or_else(|| outgrown.then(|| first(block).into()));
        self.len += 1;
        if let Some(k) = map_key {
            self.settle(&k);
        }
    }

    /// Removes `key`; false when it was not there.
    pub(super) fn remove(&mut self, key: &[u8]) -> bool {
        if self.above_last(key) {
            return false;
        }
        let Some(block) = self.block_for_mut(key) else {
            return false;
        };
        let Some(edit) = remove_edit(block, key) else {
            return false;
        };
        // Removing a block's first key changes its key in the map (or empties it).
        let was_first = edit.range.start == 0;
        apply(block, edit);
        self.len -= 1;
        if was_first {
            self.settle(key);
        }
        match &mut self.repr {
            Repr::One { block, last } if key == &last[..] => *last = last_key(block).into(),
            Repr::Many { blocks, last } if key == &last[..] => {
                *last = blocks
                    .values()
                    .next_back()
                    .map(|b| last_key(b))
                    .unwrap_or_default()
                    .into();
            }
            _ => {}
        }
        true
    }

    /// Puts back in order the block the map keys `map_key` (any block of a
    /// one-block set) after a change to its first key or its size: re-keyed,
    /// dropped when empty, split when it outgrew [`BLOCK_BYTES`]. `last` is the
    /// caller's to keep.
    fn settle(&mut self, map_key: &[u8]) {
        let last = self.take_last();
        let block = match &mut self.repr {
            Repr::Empty => return,
            Repr::One { block, .. } => std::mem::take(block),
            Repr::Many { blocks, last: l } => match blocks.remove(map_key) {
                Some(b) => b,
                None => {
                    *l = last.unwrap_or_default();
                    return;
                }
            },
        };
        let new: Vec<Box<[u8]>> = if block.is_empty() {
            Vec::new()
        } else if block.len() > BLOCK_BYTES {
            // Halves, so that the next inserts have room before another split.
            let mut b = Builder {
                split: block.len() / 2,
                ..Builder::default()
            };
            for k in decode(&block) {
                b.push(&k);
            }
            b.blocks()
        } else {
            vec![block]
        };
        match &mut self.repr {
            Repr::Many { blocks, last: l } => {
                for b in new {
                    blocks.insert(first(&b).into(), b);
                }
                if blocks.len() <= 1 {
                    let rest: Vec<Box<[u8]>> = std::mem::take(blocks).into_values().collect();
                    self.repr = repr_of(rest, last);
                } else {
                    *l = last.unwrap_or_default();
                }
            }
            _ => self.repr = repr_of(new, last),
        }
    }

    /// Calls `f` with each key in `(lo, hi)`, ascending or (`rev`) descending, until
    /// it returns false; false when stopped.
    pub(super) fn visit(
        &self,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        rev: bool,
        f: &mut dyn FnMut(&[u8]) -> bool,
    ) -> bool {
        let blocks: Box<dyn Iterator<Item = &[u8]>> = match &self.repr {
            Repr::Empty => return true,
            Repr::One { block: b, .. } => Box::new(std::iter::once(&b[..])),
            Repr::Many { blocks, .. } => {
                if rev {
                    // From the last block that starts below `hi`.
                    Box::new(
                        blocks
                            .range::<[u8], _>((Bound::Unbounded, hi))
                            .rev()
                            .map(|(_, b)| &b[..]),
                    )
                } else {
                    // From the block that holds `lo`.
                    let start = match lo {
                        Bound::Included(k) | Bound::Excluded(k) => blocks
                            .range::<[u8], _>((Bound::Unbounded, Bound::Included(k)))
                            .next_back()
                            .map(|(first, _)| &first[..]),
                        Bound::Unbounded => None,
                    };
                    let range = match start {
                        Some(s) => blocks.range::<[u8], _>((Bound::Included(s), Bound::Unbounded)),
                        None => blocks.range::<[u8], _>(..),
                    };
                    Box::new(range.map(|(_, b)| &b[..]))
                }
            }
        };
        for block in blocks {
            if rev {
                for k in decode(block).iter().rev() {
                    if !below(hi, k) {
                        continue;
                    }
                    if !above(lo, k) {
                        return true;
                    }
                    if !f(k) {
                        return false;
                    }
                }
            } else {
                let mut stopped = false;
                let go_on = for_each(block, &mut |k| {
                    if !above(lo, k) {
                        return true;
                    }
                    if !below(hi, k) {
                        stopped = true;
                        return false;
                    }
                    f(k)
                });
                if !go_on {
                    return stopped;
                }
            }
        }
        true
    }

    /// Appends every key to `out` as an id, when every key is 12 bytes long (the
    /// id sets of `postings`): a decoding loop without callbacks, for the planner's
    /// intersections, which list sets of up to a million ids. False (and `out`
    /// unchanged) when a key is not 12 bytes.
    pub(super) fn extend_ids(&self, out: &mut Vec<ObjectId>) -> bool {
        let before = out.len();
        out.reserve(self.len);
        let ok = match &self.repr {
            Repr::Empty => true,
            Repr::One { block: b, .. } => decode_ids(b, out),
            Repr::Many { blocks, .. } => blocks.values().all(|b| decode_ids(b, out)),
        };
        if !ok {
            out.truncate(before);
        }
        ok
    }

    /// Bytes held on the heap (blocks, and the map's keys): an estimate for sizing.
    pub(super) fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Empty => 0,
            Repr::One { block, last } => block.len() + last.len(),
            Repr::Many { blocks, last } => {
                last.len()
                    + blocks
                        .iter()
                        .map(|(k, b)| k.len() + b.len() + 48)
                        .sum::<usize>()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn keys(set: &PackedSet) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        set.visit(Bound::Unbounded, Bound::Unbounded, false, &mut |k| {
            out.push(k.to_vec());
            true
        });
        out
    }

    fn id_key(n: u32) -> Vec<u8> {
        let mut k = b"\x30test\x00\x00".to_vec();
        k.extend_from_slice(&[0x6a, 0x1c, 0xcb, 0x80, 1, 2, 3, 4, 5]);
        k.extend_from_slice(&n.to_be_bytes()[1..]);
        k
    }

    #[test]
    fn appending_many_keys_splits_blocks_and_keeps_order() {
        let mut set = PackedSet::default();
        for n in 0..10_000 {
            assert!(set.insert(&id_key(n)));
        }
        assert!(!set.insert(&id_key(5)));
        assert_eq!(set.len(), 10_000);
        assert!(matches!(set.repr, Repr::Many { .. }));
        let all = keys(&set);
        assert_eq!(all.len(), 10_000);
        assert!(all.windows(2).all(|w| w[0] < w[1]));
        assert!(set.contains(&id_key(9_999)) && !set.contains(&id_key(10_000)));
        // Shared prefixes: the blocks hold far less than the 20 bytes of a key per
        // entry (the map's per-block cost is large with the tests' small blocks).
        let blocks: usize = match &set.repr {
            Repr::Many { blocks, .. } => blocks.values().map(|b| b.len()).sum(),
            _ => 0,
        };
        assert!(blocks < 10_000 * 6, "{blocks} bytes");
    }

    #[test]
    fn id_sets_decode_in_one_go() {
        let ids: Vec<ObjectId> = (0..5_000u32)
            .map(|n| crate::small_id(n.wrapping_mul(2_654_435_761) % 100_000))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let keys: Vec<[u8; 12]> = ids.iter().map(ObjectId::bytes).collect();
        let set = PackedSet::from_sorted(keys.iter().map(|k| &k[..]));
        let mut out = vec![crate::small_id(7)];
        assert!(set.extend_ids(&mut out));
        assert_eq!(out[1..], ids[..]);
        // Keys of another length are refused, and nothing is appended.
        let other = PackedSet::from_sorted([&b"abc"[..], b"abd"]);
        assert!(!other.extend_ids(&mut out));
        assert_eq!(out.len(), ids.len() + 1);
    }

    #[test]
    fn removing_everything_empties_the_set() {
        let mut set = PackedSet::from_sorted(
            (0..3_000)
                .map(id_key)
                .collect::<Vec<_>>()
                .iter()
                .map(Vec::as_slice),
        );
        for n in (0..3_000).rev().step_by(2).chain((0..3_000).step_by(2)) {
            assert!(set.remove(&id_key(n)), "{n}");
        }
        assert_eq!(set.len(), 0);
        assert!(keys(&set).is_empty());
        assert!(!set.remove(&id_key(1)));
        assert!(set.insert(&id_key(7)));
        assert_eq!(keys(&set), vec![id_key(7)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>),
        Remove(Vec<u8>),
    }

    fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
        // Few distinct bytes, so keys share prefixes and collide.
        prop::collection::vec(
            prop::sample::select(vec![0u8, 1, 2, 0x7f, 0x80, 0xff]),
            0..40,
        )
    }

    fn bound(b: Option<(bool, Vec<u8>)>) -> Bound<Vec<u8>> {
        match b {
            None => Bound::Unbounded,
            Some((true, k)) => Bound::Included(k),
            Some((false, k)) => Bound::Excluded(k),
        }
    }

    fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(k) => Bound::Included(k),
            Bound::Excluded(k) => Bound::Excluded(k),
            Bound::Unbounded => Bound::Unbounded,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn behaves_like_a_btreeset(
            initial in prop::collection::btree_set(key_strategy(), 0..300),
            ops in prop::collection::vec(
                prop_oneof![
                    key_strategy().prop_map(Op::Insert),
                    key_strategy().prop_map(Op::Remove),
                ],
                0..300,
            ),
            lo in prop::option::of((any::<bool>(), key_strategy())),
            hi in prop::option::of((any::<bool>(), key_strategy())),
            limit in 1usize..50,
            probe in key_strategy(),
        ) {
            let mut model: BTreeSet<Vec<u8>> = initial.clone();
            let mut set = PackedSet::from_sorted(initial.iter().map(Vec::as_slice));
            for op in ops {
                match op {
                    Op::Insert(k) => prop_assert_eq!(set.insert(&k), model.insert(k)),
                    Op::Remove(k) => prop_assert_eq!(set.remove(&k), model.remove(&k)),
                }
                prop_assert_eq!(set.len(), model.len());
            }
            prop_assert_eq!(keys(&set), model.iter().cloned().collect::<Vec<_>>());
            // The layout: no empty block, none much over the split size, each keyed
            // by its first entry, and a map only for two blocks or more.
            let blocks: Vec<(&[u8], &[u8])> = match &set.repr {
                Repr::Empty => Vec::new(),
                Repr::One { block: b, .. } => vec![(first(b), &b[..])],
                Repr::Many { blocks: m, .. } => {
                    prop_assert!(m.len() >= 2);
                    m.iter().map(|(k, b)| (&k[..], &b[..])).collect()
                }
            };
            for (k, b) in blocks {
                prop_assert!(!b.is_empty() && b.len() <= BLOCK_BYTES + 48, "{} bytes", b.len());
                prop_assert_eq!(k, first(b));
            }
            prop_assert_eq!(set.last().map(<[u8]>::to_vec), model.last().cloned());
            for k in &model {
                prop_assert!(set.contains(k));
                prop_assert_eq!(set.seek(k), Some(k.clone()));
            }
            prop_assert_eq!(set.contains(&probe), model.contains(&probe));
            prop_assert_eq!(set.seek(&probe), model.range(probe.clone()..).next().cloned());
            let (lo, hi) = (bound(lo), bound(hi));
            let valid = match (&lo, &hi) {
                (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => {
                    a < b || (a == b && matches!((&lo, &hi), (Bound::Included(_), Bound::Included(_))))
                }
                _ => true,
            };
            if valid {
                let want: Vec<Vec<u8>> = model.range((lo.clone(), hi.clone())).take(limit).cloned().collect();
                let mut got = Vec::new();
                set.visit(as_ref(&lo), as_ref(&hi), false, &mut |k| {
                    got.push(k.to_vec());
                    got.len() < limit
                });
                prop_assert_eq!(got, want);
                let want: Vec<Vec<u8>> = model.range((lo.clone(), hi.clone())).rev().take(limit).cloned().collect();
                let mut got = Vec::new();
                set.visit(as_ref(&lo), as_ref(&hi), true, &mut |k| {
                    got.push(k.to_vec());
                    got.len() < limit
                });
                prop_assert_eq!(got, want);
            }
            prop_assert_eq!(&PackedSet::from_sorted(model.iter().map(Vec::as_slice)), &set);
        }
    }
}
