//! Query planning and execution over the indexes.
//!
//! A query's filters are translated, where an index can answer them exactly, into
//! **sources**: posting lists (`Eq`, `In`, and `Ne`/`Nin`/regex rewritten into the
//! matching distinct values of a regular index) or key ranges (`lt`/`gt`...). The
//! smallest source drives; other sources of comparable size are intersected; what is
//! left (unindexed fields, untranslatable conditions, sources too large to pay) is
//! checked on the documents with [`matches`], the one definition of the language.
//!
//! Totals come from counters when one posting source answers everything, from the
//! candidate ids when the indexes answer everything, and from documents only when a
//! residual check is needed. `limit`/`offset` stop the walk early; an explicit sort on
//! a regular single-field index walks that index in order (newest-first on `created`
//! included).

use std::collections::HashSet;
use std::fmt;

use kernelci_core::id::ObjectId;
use kernelci_core::node::Node;
use kernelci_core::query::{matches, sort_nodes, Cond, FieldFilter, QValue, Query};
use kernelci_core::Error;

use crate::codec;
use crate::engine::{count_key, irregular_key, lossy_key, node_json, node_key, read_doc, Engine};
use crate::error::StoreError;
use crate::index::{IndexDef, INDEXES};
use crate::keys::{self, decode_one, encode_qvalue, key, prefix_end, Decoded};
use crate::kv::Kv;

/// Most distinct values a `$ne`/`$nin`/regex rewrite walks before giving up on the
/// index for that filter.
const MAX_DISTINCT_WALK: usize = 20_000;
/// A candidate set is loaded and sorted in memory below this size; above it an
/// explicit sort walks the sort field's index.
const SORT_IN_MEMORY: u64 = 5_000;
/// A source is intersected (its ids scanned into a set) when it is at most this many
/// times the driver's size; a larger one is cheaper to check on the driver's
/// documents (a document load costs about as much as scanning ten index entries).
const INTERSECT_RATIO: u64 = 8;
/// An in-memory posting source is intersected when it is at most this many times the
/// number of candidates left (listing an id from a packed posting set costs about
/// 6 ns, checking a document loaded from sled about 5 µs).
const MEMORY_INTERSECT_RATIO: u64 = 800;
/// Up to this many driver ids are listed up front, so that the candidates left
/// after each intersected set (not the driver's size) decide whether the next,
/// larger source is worth listing.
const SURVIVORS_UP_TO: u64 = 200_000;
/// An in-memory range source is intersected when it is at most this many times the
/// driver's size (its ids are listed straight from the index and sorted; measured at
/// 1M nodes, 100x lost to loading the driver's documents: `kcidb_unprocessed`).
const MEMORY_RANGE_INTERSECT_RATIO: u64 = 20;
/// Most value combinations of equality filters [`Engine::count_from_counters`]
/// reads the counters of (one counter read each).
const COUNTER_TUPLES: usize = 256;
/// A range source is counted for its estimate up to this many keys.
const PROBE_CAP: u64 = 100_000;
/// An in-memory range source is counted for its estimate up to this many entries.
const MEMORY_PROBE_CAP: u64 = 1_000_000;

type Res<T> = Result<T, Error>;

/// A distinct value tuple of an index and how many nodes hold it.
type Distinct = (Vec<u8>, u64);

/// How a query is answered: returned by `explain`, so tests and benchmarks can show
/// which index served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The source that drives the walk (`None`: every document, in id order).
    pub driver: Option<String>,
    /// Sources intersected with the driver.
    pub intersect: Vec<String>,
    /// Fields checked on the documents (`None` if the indexes answer exactly).
    pub residual: Vec<String>,
    /// The residual check reads only document heads (no filter is on `artifacts`,
    /// `data` or `debug`; see [`crate::codec::decode_head`]).
    pub residual_on_heads: bool,
    /// How `total`/`count` is computed.
    pub total: TotalBy,
    /// How the order is produced.
    pub order: OrderBy,
}

/// How a total is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalBy {
    /// Read from maintained counters, no scan.
    Counters,
    /// Counted over index entries, no document loaded.
    IndexEntries,
    /// Counted over documents (a residual check is needed).
    Documents,
}

impl TotalBy {
    /// Counters when they answer, else documents when a residual check runs, else
    /// index entries.
    fn of(from_counters: bool, check_docs: bool) -> Self {
        match (from_counters, check_docs) {
            (true, _) => TotalBy::Counters,
            (false, true) => TotalBy::Documents,
            (false, false) => TotalBy::IndexEntries,
        }
    }
}

/// How the order is produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderBy {
    /// Ascending id, straight from the sources.
    Id,
    /// Walking this index (ascending or descending).
    IndexWalk(String),
    /// Loading the candidates and sorting them in memory.
    InMemory,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "driver: {}",
            self.driver.as_deref().unwrap_or("all documents")
        )?;
        if !self.intersect.is_empty() {
            write!(f, "; intersect: {}", self.intersect.join(", "))?;
        }
        if !self.residual.is_empty() {
            write!(f, "; residual: {}", self.residual.join(", "))?;
            if self.residual_on_heads {
                write!(f, " (on document heads)")?;
            }
        }
        write!(f, "; total: {:?}; order: {:?}", self.total, self.order)
    }
}

/// One way to produce candidate ids.
#[derive(Debug, Clone)]
enum Source {
    /// Union of the posting lists of these value tuples.
    Postings {
        index: &'static IndexDef,
        tuples: Vec<Vec<u8>>,
        label: String,
    },
    /// The index keys in any of the `[lo, hi)` ranges (ids in value order, not id
    /// order).
    Range {
        ranges: Vec<(Vec<u8>, Vec<u8>)>,
        label: String,
    },
}

impl Source {
    fn label(&self) -> &str {
        match self {
            Source::Postings { label, .. } | Source::Range { label, .. } => label,
        }
    }
}

struct Prepared {
    sources: Vec<(Source, u64)>,
    /// Filters not fully answered by the sources.
    residual: Vec<String>,
    /// No source can match (e.g. `created__lt=null`).
    empty: bool,
}

/// The key range of index keys starting with `base` (prefix + index id + leading
/// values) whose next value satisfies every range condition of `conds`, or `None`
/// unless they are all `lt`/`lte`/`gt`/`gte` of one type class with non-null,
/// encodable values.
fn range_bounds(base: &[u8], conds: &[Cond]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut lo: Option<Vec<u8>> = None;
    let mut hi: Option<Vec<u8>> = None;
    let mut class: Option<(u8, u8)> = None;
    for c in conds {
        let (Cond::Lt(v) | Cond::Lte(v) | Cond::Gt(v) | Cond::Gte(v)) = c else {
            return None;
        };
        if matches!(v, QValue::Null) {
            return None;
        }
        let bounds = keys::type_class_bounds(v);
        if class.is_some_and(|c| c != bounds) {
            return None;
        }
        class = Some(bounds);
        let at = [base, &encode(v)?].concat();
        match c {
            Cond::Gt(_) => lo = lo.max(Some(prefix_end(&at))),
            Cond::Gte(_) => lo = lo.max(Some(at)),
            Cond::Lt(_) => hi = Some(hi.map_or(at.clone(), |h| h.min(at))),
            _ => {
                let end = prefix_end(&at);
                hi = Some(hi.map_or(end.clone(), |h| h.min(end)));
            }
        }
    }
    let (tag, end) = class?;
    Some((
        lo.unwrap_or_else(|| [base, &[tag]].concat()),
        hi.unwrap_or_else(|| [base, &[end]].concat()),
    ))
}

fn single_index(field: &str) -> Option<&'static IndexDef> {
    INDEXES
        .iter()
        .find(|i| i.fields.len() == 1 && i.fields[0] == field)
}

fn encode(v: &QValue) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    encode_qvalue(&mut out, v)?;
    Some(out)
}

/// The values of a filter that is exactly one `Eq` or one `In`.
fn equality_values(f: &FieldFilter) -> Option<Vec<Vec<u8>>> {
    match f.conds.as_slice() {
        [Cond::Eq(v)] => Some(vec![encode(v)?]),
        [Cond::In(vs)] => vs.iter().map(encode).collect(),
        _ => None,
    }
}

/// Membership of ascending candidate ids in sorted id sets: each set keeps a cursor
/// that only moves forward, galloping, so checking n candidates against a set of m
/// ids costs about n·log(m/n) comparisons on nearby memory instead of n binary
/// searches over the whole set.
struct Cursors<'a> {
    sets: &'a [Vec<ObjectId>],
    at: Vec<usize>,
}

impl<'a> Cursors<'a> {
    fn new(sets: &'a [Vec<ObjectId>]) -> Self {
        Self {
            sets,
            at: vec![0; sets.len()],
        }
    }

    /// Whether every set holds `id`; ids must be offered in ascending order.
    fn accepts(&mut self, id: &ObjectId) -> bool {
        for (set, at) in self.sets.iter().zip(self.at.iter_mut()) {
            *at = gallop(set, *at, id);
            if set.get(*at) != Some(id) {
                return false;
            }
        }
        true
    }
}

/// The first position at or after `from` whose id is not below `id`.
fn gallop(set: &[ObjectId], from: usize, id: &ObjectId) -> usize {
    let (mut lo, mut hi, mut step) = (from, from, 1);
    while hi < set.len() && set[hi] < *id {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    let hi = hi.min(set.len());
    lo + set[lo..hi].partition_point(|x| x < id)
}

/// The size estimate of a range that was not counted (one source: nothing to
/// compare; or larger than anything it could be compared with).
const UNCOUNTED: u64 = u64::MAX / 4;

/// How `explain` shows a source's size: `~N`, or `not counted`.
fn size_label(est: u64) -> String {
    if est >= UNCOUNTED {
        "not counted".to_owned()
    } else {
        format!("~{est}")
    }
}

/// Whether every filter of `q` can be checked on a document head.
fn heads_suffice(q: &Query) -> bool {
    q.filters
        .iter()
        .all(|f| codec::head_suffices(f.field.as_str()))
}

/// What a page collects for each node: the decoded [`Node`], or its JSON written
/// straight from the stored document ([`NodeJson`]).
trait PageItem: Send + Sync + Sized {
    /// The item of a stored document (the document after its version, unpacked).
    fn from_doc(key: &[u8], doc: &[u8]) -> Result<Self, StoreError>;
    /// The item of a node already decoded (a whole-document residual check, an
    /// in-memory sort).
    fn from_node(node: Node, key: &[u8]) -> Result<Self, StoreError>;
}

impl PageItem for Node {
    fn from_doc(key: &[u8], doc: &[u8]) -> Result<Self, StoreError> {
        read_doc(key, doc)
    }

    fn from_node(node: Node, _key: &[u8]) -> Result<Self, StoreError> {
        Ok(node)
    }
}

/// A node as the API's JSON (what `serde_json` writes for it).
struct NodeJson(Vec<u8>);

impl PageItem for NodeJson {
    fn from_doc(key: &[u8], doc: &[u8]) -> Result<Self, StoreError> {
        node_json(key, doc).map(NodeJson)
    }

    fn from_node(node: Node, key: &[u8]) -> Result<Self, StoreError> {
        kernelci_core::store::node_json(&node)
            .map(NodeJson)
            .map_err(|e| StoreError::corrupt("node", key, e))
    }
}

/// Collects one page (skipping `offset`, keeping `limit`) from candidate ids in
/// order, counting every accepted candidate, and loading a document only when it is
/// in the page or a residual check needs it.
struct PageWalk<'q, T> {
    query: &'q Query,
    want_items: bool,
    offset: usize,
    limit: usize,
    check_docs: bool,
    /// The residual check can run on a document's head ([`codec::decode_head`]).
    head_check: bool,
    skipped: usize,
    items: Vec<T>,
    total: u64,
}

impl<'q, T: PageItem> PageWalk<'q, T> {
    fn new(
        query: &'q Query,
        want_items: bool,
        offset: usize,
        limit: usize,
        check_docs: bool,
    ) -> Self {
        Self {
            query,
            want_items,
            offset,
            limit,
            check_docs,
            head_check: check_docs && heads_suffice(query),
            skipped: 0,
            items: Vec::new(),
            total: 0,
        }
    }

    /// Offers the next candidate; `false` when the walk can stop (page full and the
    /// total not counted by walking).
    fn offer<K: Kv>(
        &mut self,
        engine: &Engine<K>,
        id: ObjectId,
        walk_for_total: bool,
    ) -> Result<bool, StoreError> {
        self.offer_with(engine, id, walk_for_total, None)
    }

    /// Offers a batch of candidates in order, loading the documents the walk needs
    /// (every one when a residual check needs them, else those that land in the page)
    /// up front and, for large batches, on two threads: returning many documents is
    /// bounded by decoding them. Same result as offering them one by one (documents
    /// loaded past the point where the walk stops are dropped).
    fn offer_batch<K: Kv + Sync>(
        &mut self,
        engine: &Engine<K>,
        ids: &[ObjectId],
        walk_for_total: bool,
    ) -> Result<bool, StoreError> {
        let room = if self.want_items {
            self.limit.saturating_sub(self.items.len())
        } else {
            0
        };
        let to_skip = self.offset.saturating_sub(self.skipped);
        let needed = if self.check_docs {
            ids.len()
        } else {
            // Without residual checks every candidate is accepted, so the page is the
            // candidates after the offset, up to the room left.
            ids.len().min(to_skip.saturating_add(room))
        };
        let first = if self.check_docs {
            0
        } else {
            to_skip.min(needed)
        };
        let docs = load_many(&ids[first..needed], |id| self.fetch(engine, id))?;
        let mut docs = docs.into_iter();
        for (i, id) in ids.iter().enumerate() {
            let preloaded = if (first..needed).contains(&i) {
                docs.next()
            } else {
                None
            };
            if !self.offer_with(engine, *id, walk_for_total, preloaded)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The document of `id` for this walk: with a residual check, only if it
    /// matches (`None` when vanished or rejected).
    fn fetch<K: Kv>(&self, engine: &Engine<K>, id: ObjectId) -> Result<Option<T>, StoreError> {
        if self.check_docs {
            engine.load_matching(id, self.query, self.head_check)
        } else {
            engine.load(id)
        }
    }

    /// [`PageWalk::offer`] with the document possibly loaded already.
    fn offer_with<K: Kv>(
        &mut self,
        engine: &Engine<K>,
        id: ObjectId,
        walk_for_total: bool,
        preloaded: Option<Option<T>>,
    ) -> Result<bool, StoreError> {
        let collecting = self.want_items && self.items.len() < self.limit;
        if !collecting && !walk_for_total {
            return Ok(false);
        }
        let in_page = collecting && self.skipped >= self.offset;
        let node = if self.check_docs || in_page {
            let loaded = match preloaded {
                Some(n) => n,
                None => self.fetch(engine, id)?,
            };
            match loaded {
                Some(n) => Some(n),
                None => return Ok(true),
            }
        } else {
            None
        };
        self.total += 1;
        if collecting {
            if self.skipped < self.offset {
                self.skipped += 1;
            } else if let Some(n) = node {
                self.items.push(n);
            }
        }
        Ok(true)
    }
}

/// Batches from this size are loaded on two threads.
const PARALLEL_LOAD_MIN: usize = 64;

/// `fetch` of each of `ids`, in order.
fn load_many<T: PageItem>(
    ids: &[ObjectId],
    fetch: impl Fn(ObjectId) -> Result<Option<T>, StoreError> + Sync,
) -> Result<Vec<Option<T>>, StoreError> {
    let load_all = |part: &[ObjectId]| -> Result<Vec<Option<T>>, StoreError> {
        part.iter().map(|id| fetch(*id)).collect()
    };
    if ids.len() < PARALLEL_LOAD_MIN {
        return load_all(ids);
    }
    let (a, b) = ids.split_at(ids.len() / 2);
    let (first, second) = std::thread::scope(|scope| {
        let other = scope.spawn(|| load_all(b));
        let mine = load_all(a);
        // A panic while decoding would be a bug; report it as a failed read.
        let theirs = other
            .join()
            .unwrap_or_else(|_| Err(StoreError::Task("document loader panicked".into())));
        (mine, theirs)
    });
    let mut out = first?;
    out.extend(second?);
    Ok(out)
}

impl<K: Kv> Engine<K> {
    fn regular(&self, index: &IndexDef) -> Result<bool, StoreError> {
        Ok(self.read_counter(&irregular_key(index))? == 0)
    }

    /// Every distinct value tuple of a single-field index with its count (from the
    /// counters), or `None` past [`MAX_DISTINCT_WALK`].
    fn distinct(&self, index: &IndexDef) -> Result<Option<Vec<Distinct>>, StoreError> {
        let lo = key(keys::COUNT, &[&[index.id]]);
        let hi = lossy_key(index);
        let mut out = Vec::new();
        for item in self.kv.scan(&lo, &hi, false) {
            let (k, v) = item?;
            if out.len() >= MAX_DISTINCT_WALK {
                return Ok(None);
            }
            let n = keys::read_u64(v.as_ref()).unwrap_or(0);
            out.push((k.as_ref()[2..].to_vec(), n));
        }
        Ok(Some(out))
    }

    fn postings_count(&self, index: &IndexDef, tuples: &[Vec<u8>]) -> Result<u64, StoreError> {
        let mut n = 0;
        for t in tuples {
            n += self.read_counter(&count_key(index, t))?;
        }
        Ok(n)
    }

    /// Translates one filter on a single-field index into sources, or `None` when a
    /// condition cannot be answered exactly by the index.
    fn filter_sources(&self, f: &FieldFilter) -> Result<Option<Vec<Source>>, StoreError> {
        let Some(index) = single_index(f.field.as_str()) else {
            return Ok(None);
        };
        let base = key(keys::INDEX, &[&[index.id]]);
        let name = f.field.as_str();
        let mut out = Vec::new();
        if self.read_counter(&lossy_key(index))? > 0 {
            // Some node's entries were truncated: lookups would miss it.
            return Ok(None);
        }
        // One single-sided range per condition: (lo, hi, type class).
        let mut ranges: Vec<(Vec<u8>, Vec<u8>, u8)> = Vec::new();
        let postings = |tuples: Vec<Vec<u8>>, label: String| Source::Postings {
            index,
            tuples,
            label,
        };
        for c in &f.conds {
            match c {
                Cond::Eq(v) => match encode(v) {
                    Some(t) => out.push(postings(vec![t], format!("{name} ="))),
                    None => return Ok(None),
                },
                Cond::In(vs) => match vs.iter().map(encode).collect::<Option<Vec<_>>>() {
                    Some(ts) => out.push(postings(ts, format!("{name} in"))),
                    None => return Ok(None),
                },
                Cond::Lt(v) | Cond::Lte(v) | Cond::Gt(v) | Cond::Gte(v) => {
                    if matches!(v, QValue::Null) {
                        if matches!(c, Cond::Lte(_) | Cond::Gte(_)) {
                            out.push(postings(
                                vec![encode(v).unwrap_or_default()],
                                format!("{name} = null"),
                            ));
                            continue;
                        }
                        out.push(postings(Vec::new(), format!("{name} (nothing)")));
                        continue;
                    }
                    if matches!(v, QValue::Int(_)) && !self.regular(index)? {
                        return Ok(None);
                    }
                    let Some(enc) = encode(v) else {
                        return Ok(None);
                    };
                    let mut at = base.clone();
                    at.extend_from_slice(&enc);
                    let (class_tag, class_end) = keys::type_class_bounds(v);
                    let class_lo = key(keys::INDEX, &[&[index.id, class_tag]]);
                    let class_hi = key(keys::INDEX, &[&[index.id, class_end]]);
                    let (lo, hi) = match c {
                        Cond::Gt(_) => (Some(prefix_end(&at)), None),
                        Cond::Gte(_) => (Some(at), None),
                        Cond::Lt(_) => (None, Some(at)),
                        _ => (None, Some(prefix_end(&at))),
                    };
                    ranges.push((lo.unwrap_or(class_lo), hi.unwrap_or(class_hi), class_tag));
                }
                Cond::Ne(_) | Cond::Nin(_) | Cond::Regex(_) => {
                    if !self.regular(index)? {
                        return Ok(None);
                    }
                    let Some(values) = self.distinct(index)? else {
                        return Ok(None);
                    };
                    let keep: Vec<Vec<u8>> = match c {
                        Cond::Ne(v) => {
                            let Some(ex) = encode(v) else { return Ok(None) };
                            values.into_iter().map(|(t, _)| t).filter(|t| *t != ex).collect()
                        }
                        Cond::Nin(vs) => {
                            let Some(ex) = vs.iter().map(encode).collect::<Option<HashSet<_>>>() else {
                                return Ok(None);
                            };
                            values.into_iter().map(|(t, _)| t).filter(|t| !ex.contains(t)).collect()
                        }
                        Cond::Regex(p) => values
                            .into_iter()
                            .map(|(t, _)| t)
                            .filter(|t| matches!(decode_one(t), Some((Decoded::Str(s), _)) if p.is_match(&s)))
                            .collect(),
                        _ => Vec::new(),
                    };
                    out.push(postings(keep, format!("{name} (distinct values)")));
                }
            }
        }
        // Bounds may share one key range only when each node has exactly one value
        // there (a regular index) and they are of one type class; otherwise each
        // bound is its own source (an array may satisfy `gt` and `lt` with two
        // different elements).
        let one_class = ranges.windows(2).all(|w| w[0].2 == w[1].2);
        if ranges.len() > 1 && one_class && self.regular(index)? {
            let lo = ranges.iter().map(|r| r.0.clone()).max().unwrap_or_default();
            let hi = ranges.iter().map(|r| r.1.clone()).min().unwrap_or_default();
            ranges = vec![(lo, hi, 0)];
        }
        for (lo, hi, _) in ranges {
            out.push(Source::Range {
                ranges: vec![(lo, hi)],
                label: format!("{name} range"),
            });
        }
        Ok(Some(out))
    }

    fn prepare(&self, q: &Query) -> Res<Prepared> {
        let mut sources: Vec<Source> = Vec::new();
        let mut covered = vec![false; q.filters.len()];
        // Compound indexes first: equality on each of their fields.
        // The most specific compound indexes first (three fields before two).
        let mut compounds: Vec<&'static IndexDef> =
            INDEXES.iter().filter(|i| i.fields.len() > 1).collect();
        compounds.sort_by_key(|i| std::cmp::Reverse(i.fields.len()));
        for index in compounds {
            let positions: Option<Vec<usize>> = index
                .fields
                .iter()
                .map(|f| q.filters.iter().position(|x| x.field.as_str() == *f))
                .collect();
            let Some(positions) = positions else { continue };
            if self.read_counter(&lossy_key(index))? > 0 {
                continue;
            }
            if positions.iter().any(|p| covered[*p]) {
                continue;
            }
            let (last, leading) = match positions.split_last() {
                Some(split) => split,
                None => continue,
            };
            let all_eq: Option<Vec<Vec<Vec<u8>>>> = positions
                .iter()
                .map(|p| equality_values(&q.filters[*p]))
                .collect();
            let Some(per_field) = all_eq else {
                // Equality on the leading fields and a range on the last one: one key
                // range per combination of the leading values.
                let leading_eq: Option<Vec<Vec<Vec<u8>>>> = leading
                    .iter()
                    .map(|p| equality_values(&q.filters[*p]))
                    .collect();
                let Some(leading_eq) = leading_eq else {
                    continue;
                };
                if !self.regular(index)? {
                    continue;
                }
                let mut prefixes: Vec<Vec<u8>> = vec![key(keys::INDEX, &[&[index.id]])];
                for values in leading_eq {
                    prefixes = prefixes
                        .iter()
                        .flat_map(|t| values.iter().map(move |v| [t.as_slice(), v].concat()))
                        .collect();
                }
                let conds = &q.filters[*last].conds;
                let ranges: Option<Vec<(Vec<u8>, Vec<u8>)>> =
                    prefixes.iter().map(|p| range_bounds(p, conds)).collect();
                let Some(ranges) = ranges else { continue };
                for p in &positions {
                    covered[*p] = true;
                }
                sources.push(Source::Range {
                    ranges,
                    label: format!("{} range", index.fields.join("+")),
                });
                continue;
            };
            let mut tuples: Vec<Vec<u8>> = vec![Vec::new()];
            for values in per_field {
                tuples = tuples
                    .iter()
                    .flat_map(|t| values.iter().map(move |v| [t.as_slice(), v].concat()))
                    .collect();
            }
            for p in &positions {
                covered[*p] = true;
            }
            sources.push(Source::Postings {
                index,
                tuples,
                label: format!("{} =", index.fields.join("+")),
            });
        }
        let mut residual = Vec::new();
        for (i, f) in q.filters.iter().enumerate() {
            if covered[i] {
                continue;
            }
            match self.filter_sources(f)? {
                Some(s) => sources.extend(s),
                None => residual.push(f.field.to_string()),
            }
        }
        let mut estimated = Vec::new();
        let mut empty = false;
        for s in sources {
            let est = match &s {
                Source::Postings { index, tuples, .. } => self.postings_count(index, tuples)?,
                Source::Range { .. } => UNCOUNTED,
            };
            if est == 0 {
                empty = true;
            }
            estimated.push((s, est));
        }
        let best = estimated.iter().map(|(_, e)| *e).min().unwrap_or(u64::MAX);
        // In-memory ranges are counted exactly up to the size that could still be
        // intersected (or drive): cheap, no key is built.
        // With one source there is nothing to decide.
        if self.kv.derives_counts() && estimated.len() > 1 {
            let cap = best
                .saturating_mul(MEMORY_RANGE_INTERSECT_RATIO)
                .min(self.count_all()?.max(1))
                .min(MEMORY_PROBE_CAP);
            for (s, est) in estimated.iter_mut() {
                if let Source::Range { ranges, .. } = s {
                    let mut n = 0;
                    for (lo, hi) in ranges.iter() {
                        match self.kv.range_count(lo, hi, (cap + 1).saturating_sub(n))? {
                            Some(c) => n += c,
                            None => {
                                n = UNCOUNTED;
                                break;
                            }
                        }
                        if n > cap {
                            break;
                        }
                    }
                    *est = n;
                    if n == 0 {
                        empty = true;
                    }
                }
            }
        }
        // Otherwise probe ranges only when no posting source is already small.
        let best = estimated.iter().map(|(_, e)| *e).min().unwrap_or(u64::MAX);
        if best > 2_000 && !self.kv.derives_counts() {
            let cap = best.min(self.count_all()?.max(1)).min(PROBE_CAP);
            for (s, est) in estimated.iter_mut() {
                if let Source::Range { ranges, .. } = s {
                    let mut n = 0;
                    'probe: for (lo, hi) in ranges.iter() {
                        for item in self.kv.scan(lo, hi, false) {
                            item?;
                            n += 1;
                            if n >= cap {
                                break 'probe;
                            }
                        }
                    }
                    *est = n;
                    if n == 0 {
                        empty = true;
                    }
                }
            }
        }
        estimated.sort_by_key(|(_, e)| *e);
        Ok(Prepared {
            sources: estimated,
            residual,
            empty,
        })
    }

    /// The ids of a source, ascending, deduplicated.
    fn materialize(&self, s: &Source) -> Result<Vec<ObjectId>, StoreError> {
        let mut ids = Vec::new();
        let sorted = match s {
            Source::Postings { index, tuples, .. } => {
                for t in tuples {
                    if let Some(ids_here) = self.kv.posting_ids(index.id, t)? {
                        ids.extend(ids_here);
                        continue;
                    }
                    let lo = key(keys::INDEX, &[&[index.id], t]);
                    let hi = prefix_end(&lo);
                    for item in self.kv.scan(&lo, &hi, false) {
                        let (k, _) = item?;
                        if let Some(id) = keys::id_suffix(k.as_ref()) {
                            ids.push(id);
                        }
                    }
                }
                tuples.len() <= 1
            }
            Source::Range { ranges, .. } => {
                for (lo, hi) in ranges {
                    if let Some(found) = self.kv.range_ids(lo, hi)? {
                        ids.extend(found);
                        continue;
                    }
                    for item in self.kv.scan(lo, hi, false) {
                        let (k, _) = item?;
                        if let Some(id) = keys::id_suffix(k.as_ref()) {
                            ids.push(id);
                        }
                    }
                }
                false
            }
        };
        if !sorted {
            ids.sort_unstable();
            ids.dedup();
        }
        Ok(ids)
    }

    fn load<T: PageItem>(&self, id: ObjectId) -> Result<Option<T>, StoreError> {
        let k = node_key(id);
        let Some(v) = self.kv.get(&k)? else {
            return Ok(None);
        };
        self.with_doc(&k, v.as_ref(), |doc, _| T::from_doc(&k, doc).map(Some))
    }

    /// The document of `id` if it matches `q`. With `head` (no filter of `q` is on
    /// `artifacts`, `data` or `debug`), a binary document is checked on its head
    /// and decoded whole only when it matches: a rejected candidate costs a fraction
    /// of a full decode. Such a candidate's tail is never read, so damage there
    /// surfaces only if the head matches (and always in `verify`).
    fn load_matching<T: PageItem>(
        &self,
        id: ObjectId,
        q: &Query,
        head: bool,
    ) -> Result<Option<T>, StoreError> {
        let k = node_key(id);
        let Some(v) = self.kv.get(&k)? else {
            return Ok(None);
        };
        self.with_doc(&k, v.as_ref(), |doc, _| {
            if head && doc.first() == Some(&codec::FORMAT_BINARY) {
                let h = codec::decode_head(doc).map_err(|e| StoreError::corrupt("node", &k, e))?;
                if !matches(&h, q) {
                    return Ok(None);
                }
                // The head decides: the whole document is read once, into the item.
                return T::from_doc(&k, doc).map(Some);
            }
            let node = read_doc(&k, doc)?;
            if !matches(&node, q) {
                return Ok(None);
            }
            T::from_node(node, &k).map(Some)
        })
    }

    /// Decides the plan and runs it. `want_items`: collect the page; `want_total`:
    /// count every match.
    fn execute<T: PageItem>(
        &self,
        q: &Query,
        want_items: bool,
        want_total: bool,
    ) -> Res<(Vec<T>, u64, Plan)> {
        let p = self.prepare(q)?;
        let limit = q
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let offset = usize::try_from(q.offset).unwrap_or(usize::MAX);
        let mut plan = Plan {
            driver: p
                .sources
                .first()
                .map(|(s, e)| format!("{} ({})", s.label(), size_label(*e))),
            intersect: Vec::new(),
            residual: p.residual.clone(),
            residual_on_heads: heads_suffice(q),
            total: TotalBy::IndexEntries,
            order: OrderBy::Id,
        };
        if p.empty {
            plan.total = TotalBy::Counters;
            return Ok((Vec::new(), 0, plan));
        }
        // Which sources to intersect: those within reach of the driver's size.
        let driver_est = p.sources.first().map_or(u64::MAX, |(_, e)| *e);
        let mut sets: Vec<Vec<ObjectId>> = Vec::new();
        let mut check_docs = !p.residual.is_empty();
        // Posting lists and ranges held in memory are listed, not scanned key by key:
        // an id costs a thousandth (postings) or about a twentieth (ranges, sorted
        // after) of loading a document.
        let cheap_postings = self.kv.derives_counts();
        // With a small in-memory driver, its ids are listed once, and each set
        // listed shrinks the candidates the next source is weighed against (a
        // commit's few nodes are not worth intersecting with a large submitter list).
        let mut survivors: Option<Vec<ObjectId>> = None;
        let mut candidates = driver_est;
        for (s, est) in p.sources.iter().skip(1) {
            let ratio = match s {
                Source::Postings { .. } => MEMORY_INTERSECT_RATIO,
                Source::Range { .. } => MEMORY_RANGE_INTERSECT_RATIO,
            };
            let cheap = cheap_postings && *est <= candidates.saturating_mul(ratio);
            if cheap || *est <= driver_est.saturating_mul(INTERSECT_RATIO) {
                let set = self.materialize(s)?;
                if cheap_postings && driver_est <= SURVIVORS_UP_TO {
                    let left = match survivors.take() {
                        Some(ids) => ids,
                        None => match p.sources.first() {
                            Some((driver, _)) => self.materialize(driver)?,
                            None => Vec::new(),
                        },
                    };
                    let mut at = 0;
                    let left: Vec<ObjectId> = left
                        .into_iter()
                        .filter(|id| {
                            at = gallop(&set, at, id);
                            set.get(at) == Some(id)
                        })
                        .collect();
                    candidates = left.len() as u64;
                    survivors = Some(left);
                }
                sets.push(set);
                plan.intersect
                    .push(format!("{} ({})", s.label(), size_label(*est)));
            } else {
                check_docs = true;
                plan.residual
                    .push(format!("{} (source too large)", s.label()));
            }
        }
        // Candidates come in ascending id order: membership is a forward walk.
        // Survivors are the driver's ids already checked against every set.
        let no_sets: &[Vec<ObjectId>] = &[];
        let mut members = Cursors::new(if survivors.is_some() { no_sets } else { &sets });

        // Exact total from counters: one posting source, nothing else to check.
        let single_postings = p.sources.len() == 1 && !check_docs;
        let mut counter_total = None;
        if single_postings {
            if let Some((Source::Postings { index, tuples, .. }, est)) = p.sources.first() {
                if tuples.len() <= 1 || self.regular(index)? {
                    counter_total = Some(*est);
                }
            }
        }

        if !want_items {
            if let Some(total) = counter_total {
                plan.total = TotalBy::Counters;
                return Ok((Vec::new(), total, plan));
            }
        }
        // A sort only matters for the items; a count ignores it.
        if let Some(sort) = q.sort.as_ref().filter(|_| want_items) {
            return self.execute_sorted(
                q,
                &p,
                sort,
                &sets,
                check_docs,
                counter_total,
                want_total,
                plan,
                limit,
                offset,
            );
        }

        // Candidate ids in ascending id order. A single posting list is streamed when
        // the walk may stop early (a page whose total comes from the counters); when
        // every candidate is walked anyway, an in-memory list is copied in one go.
        let walks_all = want_total && counter_total.is_none() && !p.sources.is_empty();
        let driver_ids: Box<dyn Iterator<Item = Result<ObjectId, StoreError>> + '_> = match p
            .sources
            .first()
        {
            _ if survivors.is_some() => {
                Box::new(survivors.take().unwrap_or_default().into_iter().map(Ok))
            }
            None => Box::new(
                self.kv
                    .scan(&[keys::NODE], &prefix_end(&[keys::NODE]), false)
                    .map(|item| {
                        let (k, _) = item?;
                        keys::id_suffix(k.as_ref())
                            .ok_or_else(|| StoreError::corrupt("node key", k.as_ref(), "short key"))
                    }),
            ),
            Some((s @ Source::Postings { tuples, .. }, _))
                if tuples.len() == 1 && !(walks_all && cheap_postings) =>
            {
                let Source::Postings { index, tuples, .. } = s else {
                    unreachable!()
                };
                let lo = key(keys::INDEX, &[&[index.id], &tuples[0]]);
                let hi = prefix_end(&lo);
                Box::new(self.kv.scan(&lo, &hi, false).map(|item| {
                    let (k, _) = item?;
                    keys::id_suffix(k.as_ref())
                        .ok_or_else(|| StoreError::corrupt("index key", k.as_ref(), "short key"))
                }))
            }
            Some((s, _)) => Box::new(self.materialize(s)?.into_iter().map(Ok)),
        };
        if p.sources.is_empty() && !check_docs {
            counter_total = Some(self.count_all()?);
        }
        plan.total = TotalBy::of(counter_total.is_some(), check_docs);

        let mut page = PageWalk::new(q, want_items, offset, limit, check_docs);
        let walk_for_total = want_total && counter_total.is_none();
        // Candidates are offered in growing batches (8, 16, ... 512), so a small
        // page loads few extra documents and a large one loads in parallel.
        let mut batch: Vec<ObjectId> = Vec::with_capacity(8);
        let mut batch_size = 8;
        let mut more = true;
        for id in driver_ids {
            let id = id?;
            if !members.accepts(&id) {
                continue;
            }
            batch.push(id);
            if batch.len() >= batch_size {
                more = page.offer_batch(self, &batch, walk_for_total)?;
                batch.clear();
                if !more {
                    break;
                }
                batch_size = (batch_size * 2).min(512);
            }
        }
        if more && !batch.is_empty() {
            page.offer_batch(self, &batch, walk_for_total)?;
        }
        Ok((page.items, counter_total.unwrap_or(page.total), plan))
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_sorted<T: PageItem>(
        &self,
        q: &Query,
        p: &Prepared,
        sort: &kernelci_core::query::Sort,
        sets: &[Vec<ObjectId>],
        check_docs: bool,
        counter_total: Option<u64>,
        want_total: bool,
        mut plan: Plan,
        limit: usize,
        offset: usize,
    ) -> Res<(Vec<T>, u64, Plan)> {
        let driver_est = p.sources.first().map_or(u64::MAX, |(_, e)| *e);
        let sort_index = single_index(sort.field.as_str());
        let walk = match sort_index {
            Some(i) if driver_est > SORT_IN_MEMORY && self.regular(i)? => Some(i),
            _ => None,
        };
        let Some(index) = walk else {
            // Load every candidate and sort in memory.
            plan.order = OrderBy::InMemory;
            plan.total = TotalBy::of(counter_total.is_some(), check_docs);
            let ids: Vec<ObjectId> = match p.sources.first() {
                Some((s, _)) => self.materialize(s)?,
                None => {
                    let mut ids = Vec::new();
                    for item in self
                        .kv
                        .scan(&[keys::NODE], &prefix_end(&[keys::NODE]), false)
                    {
                        let (k, _) = item?;
                        ids.extend(keys::id_suffix(k.as_ref()));
                    }
                    ids
                }
            };
            let mut nodes: Vec<Node> = Vec::new();
            for id in ids
                .into_iter()
                .filter(|id| sets.iter().all(|s| s.binary_search(id).is_ok()))
            {
                let loaded = if check_docs {
                    self.load_matching(id, q, heads_suffice(q))?
                } else {
                    self.load(id)?
                };
                nodes.extend(loaded);
            }
            sort_nodes(&mut nodes, Some(sort));
            let total = nodes.len() as u64;
            let items = nodes
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|n| {
                    let k = node_key(n.id);
                    T::from_node(n, &k)
                })
                .collect::<Result<_, _>>()?;
            return Ok((items, total, plan));
        };
        plan.order = OrderBy::IndexWalk(format!(
            "{}{}",
            if sort.descending { "-" } else { "" },
            index.fields[0]
        ));
        // The driver becomes one more membership set; the sort index walk drives.
        let mut all_sets: Vec<Vec<ObjectId>> = sets.to_vec();
        if let Some((s, _)) = p.sources.first() {
            all_sets.push(self.materialize(s)?);
        }
        let lo = key(keys::INDEX, &[&[index.id]]);
        let hi = prefix_end(&lo);
        let mut page = PageWalk::new(q, true, offset, limit, check_docs);
        // A scan is not a snapshot: a node updated during the walk may show up twice.
        let mut seen: HashSet<ObjectId> = HashSet::new();
        // Without a residual check the total comes from the sets (or the counters).
        let walk_for_total = want_total && counter_total.is_none() && check_docs;
        for item in self.kv.scan(&lo, &hi, sort.descending) {
            let (k, _) = item?;
            let Some(id) = keys::id_suffix(k.as_ref()) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
            if !all_sets.iter().all(|s| s.binary_search(&id).is_ok()) {
                continue;
            }
            if !page.offer(self, id, walk_for_total)? {
                break;
            }
        }
        let (items, total) = (page.items, page.total);
        let total = match counter_total {
            Some(t) => t,
            None if check_docs => total,
            None => match all_sets.split_first() {
                Some((first, rest)) => first
                    .iter()
                    .filter(|id| rest.iter().all(|s| s.binary_search(id).is_ok()))
                    .count() as u64,
                None => self.count_all()?,
            },
        };
        plan.total = TotalBy::of(counter_total.is_some(), check_docs);
        Ok((items, total, plan))
    }

    /// `find_nodes`.
    pub(crate) fn find(&self, q: &Query) -> Res<Vec<Node>> {
        Ok(self.execute(q, true, false)?.0)
    }

    /// `count_nodes`.
    pub(crate) fn count(&self, q: &Query) -> Res<u64> {
        Ok(self.execute::<Node>(q, false, true)?.1)
    }

    /// `count_nodes_from_counters`: the count when the counters give it, decided
    /// the way [`Self::count`] decides a total from counters, without listing an id
    /// or loading a node. Only equality filters (`=`, `in`) are considered, with at
    /// most [`COUNTER_TUPLES`] value combinations, so that deciding costs a bounded
    /// number of counter reads (`ne`, `nin` and regular expressions walk an index's
    /// distinct values, ranges are probed).
    pub(crate) fn count_from_counters(&self, q: &Query) -> Res<Option<u64>> {
        let mut combinations = 1usize;
        for f in &q.filters {
            let values = match f.conds.as_slice() {
                [Cond::Eq(_)] => 1,
                [Cond::In(vs)] => vs.len().max(1),
                _ => return Ok(None),
            };
            combinations = combinations.saturating_mul(values);
            if combinations > COUNTER_TUPLES {
                return Ok(None);
            }
        }
        let p = self.prepare(q)?;
        if p.empty {
            return Ok(Some(0));
        }
        if !p.residual.is_empty() {
            return Ok(None);
        }
        match p.sources.as_slice() {
            [] => Ok(Some(self.count_all()?)),
            [(Source::Postings { index, tuples, .. }, est)]
                if tuples.len() <= 1 || self.regular(index)? =>
            {
                Ok(Some(*est))
            }
            _ => Ok(None),
        }
    }

    /// `find_page`.
    pub(crate) fn page(&self, q: &Query) -> Res<(Vec<Node>, u64)> {
        let (items, total, _) = self.execute(q, true, true)?;
        Ok((items, total))
    }

    /// `find_page_json`: [`Self::page`] with each node as the API's JSON, written
    /// from its stored document ([`NodeJson`]).
    pub(crate) fn page_json(&self, q: &Query) -> Res<(Vec<Vec<u8>>, u64)> {
        let (items, total, _) = self.execute::<NodeJson>(q, true, true)?;
        Ok((items.into_iter().map(|j| j.0).collect(), total))
    }

    /// `find_nodes_json`: [`Self::find`] with each node as the API's JSON.
    pub(crate) fn find_json(&self, q: &Query) -> Res<Vec<Vec<u8>>> {
        let (items, _, _) = self.execute::<NodeJson>(q, true, false)?;
        Ok(items.into_iter().map(|j| j.0).collect())
    }

    /// The plan of `q` (runs it with a zero limit to decide).
    pub(crate) fn explain(&self, q: &Query) -> Res<Plan> {
        Ok(self.execute::<Node>(q, false, true)?.2)
    }
}

#[cfg(test)]
mod cursor_tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u16) -> ObjectId {
        crate::small_id(u32::from(n))
    }

    proptest! {
        #[test]
        fn cursors_agree_with_binary_search(
            sets in prop::collection::vec(prop::collection::btree_set(0u16..2000, 0..300), 0..4),
            probes in prop::collection::btree_set(0u16..2000, 0..300),
        ) {
            let sets: Vec<Vec<ObjectId>> =
                sets.into_iter().map(|s| s.into_iter().map(id).collect()).collect();
            let mut cursors = Cursors::new(&sets);
            for p in probes.into_iter().map(id) {
                let expected = sets.iter().all(|s| s.binary_search(&p).is_ok());
                prop_assert_eq!(cursors.accepts(&p), expected);
            }
        }
    }
}
