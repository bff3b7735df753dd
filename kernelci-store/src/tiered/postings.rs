//! The entries of one index, in memory: for each value tuple, the ids of the nodes
//! holding it.
//!
//! Two shapes, because the indexes have two (measured at 1M nodes: 36M entries in
//! 8.3M tuples, 8.1M of them held by a single node):
//! - a tuple held by several nodes (`kind`, `state`, a parent with children) maps to
//!   a [`PackedSet`] of its 12-byte ids: sorted ids share their time and process
//!   bytes, so an id costs 2 to 4 bytes instead of 12;
//! - a tuple held by one node (a creation time, and the ranged indexes that end in
//!   one) is one key `tuple ++ id` of a single [`PackedSet`] per index: about 20
//!   bytes instead of a map entry, a boxed tuple and an id list (about 75).
//!
//! A tuple moves from one shape to the other as its second id arrives or leaves.
//! Tuples never prefix one another (their encoding is self-delimiting,
//! `keys::encode_val`), so ordering the `tuple ++ id` keys orders the tuples, and
//! the first key at or after a tuple tells whether it is held once.

use std::collections::BTreeMap;
use std::ops::Bound;

use kernelci_core::id::ObjectId;

use super::packed::{Builder, PackedSet};

/// The entries of one index (module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Postings {
    multi: BTreeMap<Box<[u8]>, PackedSet>,
    single: PackedSet,
}

fn id_of(bytes: &[u8]) -> Option<ObjectId> {
    <[u8; 12]>::try_from(bytes).ok().map(ObjectId::from_bytes)
}

/// Splits a single key into its tuple and id.
fn split(key: &[u8]) -> Option<(&[u8], ObjectId)> {
    let at = key.len().checked_sub(12)?;
    let (t, id) = key.split_at(at);
    Some((t, id_of(id)?))
}

fn single_key(t: &[u8], id: &ObjectId) -> Vec<u8> {
    let mut k = Vec::with_capacity(t.len() + 12);
    k.extend_from_slice(t);
    k.extend_from_slice(&id.bytes());
    k
}

/// The ids of a multi tuple `t` within the key range, ascending or descending,
/// passed to `f` until it returns false; false when stopped.
fn visit_ids(
    t: &[u8],
    set: &PackedSet,
    range: &KeyRange<'_>,
    rev: bool,
    f: &mut dyn FnMut(&[u8], &ObjectId) -> bool,
) -> bool {
    // Only a tuple that prefixes a bound cuts its ids; any other tuple of the
    // range has all its keys inside it.
    let lo = match range.lo.strip_prefix(t) {
        Some(rest) if !rest.is_empty() => {
            if range.lo_exclusive {
                Bound::Excluded(rest)
            } else {
                Bound::Included(rest)
            }
        }
        _ => Bound::Unbounded,
    };
    let hi = match range.hi.strip_prefix(t) {
        Some(rest) if !rest.is_empty() => Bound::Excluded(rest),
        _ => Bound::Unbounded,
    };
    set.visit(lo, hi, rev, &mut |id| match id_of(id) {
        Some(id) => f(t, &id),
        None => true,
    })
}

/// Keys `tuple ++ id` from `lo` (inclusive unless `lo_exclusive`) to `hi`
/// (exclusive).
struct KeyRange<'a> {
    lo: &'a [u8],
    lo_exclusive: bool,
    hi: &'a [u8],
}

impl Postings {
    /// Entries given tuple by tuple, tuples strictly increasing, each with its
    /// strictly increasing, non-empty ids; `None` when they are not.
    pub(super) fn from_sorted(
        tuples: impl IntoIterator<Item = (Vec<u8>, Vec<ObjectId>)>,
    ) -> Option<Self> {
        let mut multi: Vec<(Box<[u8]>, PackedSet)> = Vec::new();
        let mut single = Builder::default();
        let mut prev: Option<Vec<u8>> = None;
        for (t, ids) in tuples {
            if prev.as_ref().is_some_and(|p| t <= *p) {
                return None;
            }
            match ids.as_slice() {
                [] => return None,
                [id] => {
                    if !single.push(&single_key(&t, id)) {
                        return None;
                    }
                }
                _ => {
                    let mut b = Builder::default();
                    for id in &ids {
                        if !b.push(&id.bytes()) {
                            return None;
                        }
                    }
                    multi.push((t.clone().into_boxed_slice(), b.finish()));
                }
            }
            prev = Some(t);
        }
        Some(Self {
            multi: multi.into_iter().collect(),
            single: single.finish(),
        })
    }

    /// How many distinct tuples.
    pub(super) fn tuples(&self) -> usize {
        self.multi.len() + self.single.len()
    }

    /// The id of `t` when exactly one node holds it.
    fn single_of(&self, t: &[u8]) -> Option<ObjectId> {
        let k = self.single.seek(t)?;
        match split(&k) {
            Some((kt, id)) if kt == t => Some(id),
            _ => None,
        }
    }

    /// How many nodes hold `t`.
    pub(super) fn count(&self, t: &[u8]) -> usize {
        match self.multi.get(t) {
            Some(set) => set.len(),
            None => usize::from(self.single_of(t).is_some()),
        }
    }

    /// Whether node `id` holds `t`.
    pub(super) fn contains(&self, t: &[u8], id: &ObjectId) -> bool {
        match self.multi.get(t) {
            Some(set) => set.contains(&id.bytes()),
            None => self.single.contains(&single_key(t, id)),
        }
    }

    /// The ids holding `t`, ascending.
    pub(super) fn ids(&self, t: &[u8]) -> Vec<ObjectId> {
        match self.multi.get(t) {
            Some(set) => {
                let mut out = Vec::new();
                if !set.extend_ids(&mut out) {
                    set.visit(Bound::Unbounded, Bound::Unbounded, false, &mut |id| {
                        out.extend(id_of(id));
                        true
                    });
                }
                out
            }
            None => self.single_of(t).into_iter().collect(),
        }
    }

    /// Adds the entry (`t`, `id`).
    pub(super) fn insert(&mut self, t: &[u8], id: ObjectId) {
        if let Some(set) = self.multi.get_mut(t) {
            set.insert(&id.bytes());
            return;
        }
        let Err(other) = self
            .single
            .insert_unless_prefixed(&single_key(t, &id), t.len())
        else {
            return;
        };
        match split(&other) {
            Some((_, one)) if one != id => {
                self.single.remove(&other);
                let (a, b) = if one < id { (one, id) } else { (id, one) };
                self.multi.insert(
                    t.into(),
                    PackedSet::from_sorted([&a.bytes()[..], &b.bytes()[..]]),
                );
            }
            _ => {}
        }
    }

    /// Removes the entry (`t`, `id`) if present.
    pub(super) fn remove(&mut self, t: &[u8], id: ObjectId) {
        let Some(set) = self.multi.get_mut(t) else {
            self.single.remove(&single_key(t, &id));
            return;
        };
        set.remove(&id.bytes());
        if set.len() <= 1 {
            let left = set.seek(&[]).and_then(|k| id_of(&k));
            self.multi.remove(t);
            if let Some(left) = left {
                self.single.insert(&single_key(t, &left));
            }
        }
    }

    /// Calls `f` with each entry (tuple, id) whose key `tuple ++ id` lies in
    /// `[lo, hi)` (`(lo, hi)` when `lo_exclusive`), in key order or reversed, until
    /// `f` returns false.
    pub(super) fn visit_entries(
        &self,
        lo: &[u8],
        lo_exclusive: bool,
        hi: &[u8],
        rev: bool,
        f: &mut dyn FnMut(&[u8], &ObjectId) -> bool,
    ) {
        if lo > hi {
            return;
        }
        let range = KeyRange {
            lo,
            lo_exclusive,
            hi,
        };
        // The multi tuples with keys in range: those from `lo` up to `hi`, and the
        // one `lo` extends, if any (tuples never prefix each other, so only it can
        // sit below `lo` with keys at or above it).
        let floor = self
            .multi
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(lo)))
            .next_back()
            .map(|(t, _)| &t[..])
            .filter(|t| lo.starts_with(t));
        let start = floor.unwrap_or(lo);
        let multi = self
            .multi
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(hi)));
        let multi: Box<dyn Iterator<Item = (&Box<[u8]>, &PackedSet)>> = if rev {
            Box::new(multi.rev())
        } else {
            Box::new(multi)
        };
        let mut multi = multi.peekable();
        let lo_key = if lo_exclusive {
            Bound::Excluded(lo)
        } else {
            Bound::Included(lo)
        };
        // The two shapes merged in order: before each single entry, the multi
        // tuples that come before it in the walk's direction.
        let comes_first = |mt: &[u8], t: &[u8]| if rev { mt > t } else { mt < t };
        let mut stopped = false;
        let go_on = self
            .single
            .visit(lo_key, Bound::Excluded(hi), rev, &mut |k| {
                let Some((t, id)) = split(k) else {
                    return true;
                };
                while let Some((mt, set)) = multi.next_if(|(mt, _)| comes_first(mt, t)) {
                    if !visit_ids(mt, set, &range, rev, f) {
                        stopped = true;
                        return false;
                    }
                }
                f(t, &id)
            });
        if !go_on || stopped {
            return;
        }
        for (mt, set) in multi {
            if !visit_ids(mt, set, &range, rev, f) {
                return;
            }
        }
    }

    /// Calls `f` with each distinct tuple above `lo` and below `hi` and its number
    /// of ids, in order, until it returns false.
    pub(super) fn visit_tuples(
        &self,
        lo: Bound<&[u8]>,
        hi: &[u8],
        f: &mut dyn FnMut(&[u8], usize) -> bool,
    ) {
        let valid = match lo {
            Bound::Included(l) => l <= hi,
            Bound::Excluded(l) => l < hi,
            Bound::Unbounded => true,
        };
        if !valid {
            return;
        }
        let mut multi = self
            .multi
            .range::<[u8], _>((lo, Bound::Excluded(hi)))
            .peekable();
        let above = |t: &[u8]| match lo {
            Bound::Included(l) => t >= l,
            Bound::Excluded(l) => t > l,
            Bound::Unbounded => true,
        };
        let key_lo = match lo {
            Bound::Included(l) | Bound::Excluded(l) => Bound::Included(l),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut stopped = false;
        self.single
            .visit(key_lo, Bound::Unbounded, false, &mut |k| {
                let Some((t, _)) = split(k) else {
                    return true;
                };
                if !above(t) {
                    return true;
                }
                if t >= hi {
                    return false;
                }
                while let Some((mt, set)) = multi.next_if(|(mt, _)| &mt[..] < t) {
                    if !f(mt, set.len()) {
                        stopped = true;
                        return false;
                    }
                }
                f(t, 1) || {
                    stopped = true;
                    false
                }
            });
        if stopped {
            return;
        }
        for (mt, set) in multi {
            if !f(mt, set.len()) {
                return;
            }
        }
    }

    /// Calls `f` with each tuple and its ids, in tuple order.
    pub(super) fn for_each_tuple(&self, f: &mut dyn FnMut(&[u8], &[ObjectId])) {
        let mut multi = self.multi.iter().peekable();
        let mut ids: Vec<ObjectId> = Vec::new();
        let mut flush_below =
            |t: Option<&[u8]>, ids: &mut Vec<ObjectId>, f: &mut dyn FnMut(&[u8], &[ObjectId])| {
                while let Some((mt, set)) = multi.next_if(|(mt, _)| t.is_none_or(|t| &mt[..] < t)) {
                    ids.clear();
                    set.visit(Bound::Unbounded, Bound::Unbounded, false, &mut |id| {
                        ids.extend(id_of(id));
                        true
                    });
                    f(mt, ids);
                }
            };
        self.single
            .visit(Bound::Unbounded, Bound::Unbounded, false, &mut |k| {
                if let Some((t, id)) = split(k) {
                    flush_below(Some(t), &mut ids, f);
                    f(t, &[id]);
                }
                true
            });
        flush_below(None, &mut ids, f);
    }

    /// Bytes held on the heap: an estimate, for sizing.
    pub(super) fn heap_bytes(&self) -> usize {
        self.single.heap_bytes()
            + self
                .multi
                .iter()
                .map(|(t, set)| t.len() + set.heap_bytes() + 64)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    use crate::small_id as id;

    /// A prefix-free tuple: one to four bytes, then a terminator absent from them.
    fn tuple_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![1u8, 2, 3, 0xff]), 1..4).prop_map(
            |mut t| {
                t.push(0);
                t
            },
        )
    }

    type Model = BTreeMap<Vec<u8>, BTreeSet<ObjectId>>;

    fn model_entries(m: &Model) -> Vec<(Vec<u8>, ObjectId)> {
        m.iter()
            .flat_map(|(t, ids)| ids.iter().map(move |id| (t.clone(), *id)))
            .collect()
    }

    fn key(t: &[u8], id: &ObjectId) -> Vec<u8> {
        single_key(t, id)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn behaves_like_a_map_of_id_sets(
            ops in prop::collection::vec(
                (any::<bool>(), tuple_strategy(), 0u32..40),
                0..400,
            ),
            lo in (tuple_strategy(), prop::option::of(0u32..40), any::<bool>()),
            hi in (tuple_strategy(), prop::option::of(0u32..40)),
            rev in any::<bool>(),
            limit in 1usize..60,
            probe in (tuple_strategy(), 0u32..40),
        ) {
            let mut model: Model = BTreeMap::new();
            let mut p = Postings::default();
            for (add, t, n) in ops {
                if add {
                    p.insert(&t, id(n));
                    model.entry(t).or_default().insert(id(n));
                } else {
                    p.remove(&t, id(n));
                    if let Some(ids) = model.get_mut(&t) {
                        ids.remove(&id(n));
                        if ids.is_empty() {
                            model.remove(&t);
                        }
                    }
                }
            }
            prop_assert_eq!(p.tuples(), model.len());
            let (pt, pn) = probe;
            prop_assert_eq!(p.count(&pt), model.get(&pt).map_or(0, BTreeSet::len));
            prop_assert_eq!(p.contains(&pt, &id(pn)), model.get(&pt).is_some_and(|s| s.contains(&id(pn))));
            prop_assert_eq!(p.ids(&pt), model.get(&pt).map_or_else(Vec::new, |s| s.iter().copied().collect()));

            // Entries in a key range, as the scans of `I` keys ask for them.
            let lo_key = match lo.1 { Some(n) => key(&lo.0, &id(n)), None => lo.0.clone() };
            let hi_key = match hi.1 { Some(n) => key(&hi.0, &id(n)), None => hi.0.clone() };
            let lo_exclusive = lo.2;
            let mut want: Vec<(Vec<u8>, ObjectId)> = model_entries(&model)
                .into_iter()
                .filter(|(t, id)| {
                    let k = key(t, id);
                    (if lo_exclusive { k > lo_key } else { k >= lo_key }) && k < hi_key
                })
                .collect();
            if rev {
                want.reverse();
            }
            want.truncate(limit);
            let mut got = Vec::new();
            p.visit_entries(&lo_key, lo_exclusive, &hi_key, rev, &mut |t, id| {
                got.push((t.to_vec(), *id));
                got.len() < limit
            });
            prop_assert_eq!(got, want);

            // Distinct tuples with their counts.
            let lo_t = if lo_exclusive { Bound::Excluded(&lo.0[..]) } else { Bound::Included(&lo.0[..]) };
            if lo.0 < hi.0 {
                let want: Vec<(Vec<u8>, usize)> = model
                    .range::<[u8], _>((lo_t, Bound::Excluded(&hi.0[..])))
                    .map(|(t, ids)| (t.clone(), ids.len()))
                    .take(limit)
                    .collect();
                let mut got = Vec::new();
                p.visit_tuples(lo_t, &hi.0, &mut |t, n| {
                    got.push((t.to_vec(), n));
                    got.len() < limit
                });
                prop_assert_eq!(got, want);
            }

            // Tuple by tuple, and rebuilt from that.
            let mut all = Vec::new();
            p.for_each_tuple(&mut |t, ids| all.push((t.to_vec(), ids.to_vec())));
            let want: Vec<(Vec<u8>, Vec<ObjectId>)> = model
                .iter()
                .map(|(t, ids)| (t.clone(), ids.iter().copied().collect()))
                .collect();
            prop_assert_eq!(&all, &want);
            prop_assert_eq!(Postings::from_sorted(all), Some(p));
        }
    }

    #[test]
    fn unsorted_or_empty_input_is_refused() {
        assert!(Postings::from_sorted([
            (b"b\0".to_vec(), vec![id(1)]),
            (b"a\0".to_vec(), vec![id(2)])
        ])
        .is_none());
        assert!(Postings::from_sorted([(b"a\0".to_vec(), vec![])]).is_none());
        assert!(Postings::from_sorted([(b"a\0".to_vec(), vec![id(2), id(1)])]).is_none());
    }

    #[test]
    fn a_tuple_moves_between_the_shapes() {
        let mut p = Postings::default();
        p.insert(b"t\0", id(5));
        assert!(p.multi.is_empty() && p.single.len() == 1);
        p.insert(b"t\0", id(3));
        assert_eq!(p.ids(b"t\0"), vec![id(3), id(5)]);
        assert!(p.single.len() == 0 && p.multi.len() == 1);
        p.remove(b"t\0", id(3));
        assert_eq!(p.ids(b"t\0"), vec![id(5)]);
        assert!(p.multi.is_empty() && p.single.len() == 1);
        p.remove(b"t\0", id(5));
        assert_eq!(p.tuples(), 0);
    }
}
