//! The storage engine, written once over an ordered key space ([`Kv`]).
//!
//! Writes take one writer lock, compute the complete set of key changes (document,
//! index entries, counters) and apply them as one atomic batch. Reads take no lock:
//! they read the key space directly (index scans, document gets).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kernelci_core::auth::{User, UserGroup};
use kernelci_core::events::{Event, EventQuery, NewEvent};
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;
use kernelci_core::node::{Node, State};
use kernelci_core::query::FieldPath;
use kernelci_core::state::{set_processed, ChildrenSummary};
use kernelci_core::store::{
    node_not_found, FieldSet, Page, SubscriberState, TokenRecord, Version, Versioned,
};
use kernelci_core::telemetry::{in_range, TelemetryEvent, TelemetryQuery};
use kernelci_core::time::Timestamp;
use kernelci_core::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::codec::packed::{self, Dictionaries, Kind, PackStats};
use crate::error::StoreError;
use crate::index::{combine, entry_key, field_values, FieldValues, Flags, IndexDef, INDEXES};
use crate::keys::{self, key, prefix_end, read_u64};
use crate::kv::{Kv, Write};

/// Layout version written in the metadata. Bump it when keys or encodings change;
/// `Engine::open_checks` is the migration hook.
///
/// - 1: index entries and counters in sled;
/// - 2: index entries and counters in memory (the snapshot), dropped from sled;
/// - 3: node documents in the binary encoding of [`codec`] instead of JSON;
/// - 4: node documents and events may be packed with the store's dictionaries
///   ([`codec::packed`]); an older server would not read them. A store records
///   layout 4 in the batch that stores its first dictionary, so one without any
///   stays at 3, readable by the servers before.
pub const SCHEMA_VERSION: u64 = 4;

/// The first layout with binary node documents (older ones are rewritten on open).
const BINARY_LAYOUT: u64 = 3;

/// Documents rewritten per batch by the layout 2 → 3 migration.
const MIGRATE_BATCH: usize = 1000;

const META_SCHEMA: &[u8] = b"schema";
const META_NODES: &[u8] = b"nodes";
const META_EVENT_SEQ: &[u8] = b"event_seq";

type Res<T> = Result<T, Error>;

mod export;

/// The engine over one key space.
pub struct Engine<K: Kv> {
    pub(crate) kv: K,
    write_lock: Mutex<()>,
    pub(crate) paths: Vec<Vec<FieldPath>>,
    /// The distinct fields of all indexes, each resolved once per node write.
    fields: Fields,
    /// The dictionaries node documents and events are packed with.
    dicts: Dictionaries,
    /// The layout the store's metadata records (4 once a dictionary is stored).
    layout: AtomicU64,
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The binary form of an event ([`crate::codec::encode_event`]), or JSON for the
/// rare event the binary form refuses (data nested past the codec's bound).
fn event_record(e: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    match crate::codec::encode_event(e, &mut out) {
        Ok(()) => out,
        Err(_) => to_json(e),
    }
}

/// Reads an unpacked event: binary, or JSON as earlier versions (and
/// [`event_record`]'s fallback) wrote it.
fn read_event_record(key: &[u8], b: &[u8]) -> Result<Event, StoreError> {
    if b.first() == Some(&crate::codec::FORMAT_EVENT) {
        crate::codec::decode_event(b).map_err(|e| StoreError::corrupt("event", key, e))
    } else {
        from_json("event", key, b)
    }
}

fn from_json<T: DeserializeOwned>(
    what: &'static str,
    key: &[u8],
    b: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|e| StoreError::corrupt(what, key, e))
}

pub(crate) fn node_key(id: ObjectId) -> Vec<u8> {
    key(keys::NODE, &[&id.bytes()])
}

/// A node's stored value, not packed: its version, then the binary document.
fn plain_doc(node: &Node, version: Version) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::with_capacity(1024);
    v.extend_from_slice(&version.0.to_be_bytes());
    codec::encode_node(node, &mut v).map_err(|e| StoreError::Unencodable(e.to_string()))?;
    Ok(v)
}

/// The version at the head of a stored node value.
fn doc_version(key: &[u8], b: &[u8]) -> Result<Version, StoreError> {
    read_u64(b)
        .map(Version)
        .ok_or_else(|| StoreError::corrupt("node", key, "value shorter than its version"))
}

/// Decodes an unpacked node document: the binary layout ([`codec`]) or, written
/// before layout 3, JSON.
pub(crate) fn read_doc(key: &[u8], doc: &[u8]) -> Result<Node, StoreError> {
    if doc.first() == Some(&b'{') {
        from_json("node", key, doc)
    } else {
        codec::decode_node(doc).map_err(|e| StoreError::corrupt("node", key, e))
    }
}

/// A stored document (after its version, unpacked) as the API's JSON: a binary
/// one written straight as JSON ([`codec::write_node_json`]), a JSON one (layouts
/// 1 and 2, not yet migrated) decoded and serialised.
pub(crate) fn node_json(key: &[u8], doc: &[u8]) -> Result<Vec<u8>, StoreError> {
    if doc.first() == Some(&b'{') {
        let node = read_doc(key, doc)?;
        return kernelci_core::store::node_json(&node)
            .map_err(|e| StoreError::corrupt("node", key, e));
    }
    // A node's JSON is about twice its binary document.
    let mut out = Vec::with_capacity(doc.len().saturating_mul(2).saturating_add(256));
    codec::write_node_json(doc, &mut out).map_err(|e| StoreError::corrupt("node", key, e))?;
    Ok(out)
}

/// Counter changes accumulated for one batch, keyed by full counter key.
#[derive(Default)]
pub(crate) struct Deltas(BTreeMap<Vec<u8>, i64>);

impl Deltas {
    fn add(&mut self, k: Vec<u8>, d: i64) {
        *self.0.entry(k).or_insert(0) += d;
    }
}

pub(crate) fn count_key(index: &IndexDef, tuple: &[u8]) -> Vec<u8> {
    key(keys::COUNT, &[&[index.id], tuple])
}

pub(crate) fn lossy_key(index: &IndexDef) -> Vec<u8> {
    key(keys::COUNT, &[&[index.id, keys::LOSSY]])
}

pub(crate) fn irregular_key(index: &IndexDef) -> Vec<u8> {
    key(keys::COUNT, &[&[index.id, keys::IRREGULAR]])
}

/// Telemetry events written per store batch (see `Engine::insert_telemetry`).
pub(crate) const TELEMETRY_BATCH: usize = 4096;

impl<K: Kv> Engine<K> {
    pub(crate) fn new(kv: K) -> Self {
        Self {
            kv,
            write_lock: Mutex::new(()),
            paths: INDEXES.iter().map(IndexDef::paths).collect(),
            fields: Fields::new(),
            dicts: Dictionaries::default(),
            layout: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        self.write_lock.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Checks (or writes, on a new store: layout 3) the schema version, loads the
    /// packing dictionaries, and returns the version found. The migration hook: an
    /// older layout is converted by [`Engine::upgrade`] once the indexes are loaded.
    pub(crate) fn open_checks(&self) -> Result<u64, StoreError> {
        let k = key(keys::META, &[META_SCHEMA]);
        let found = self.check_layout(&k)?;
        self.layout.store(found, Ordering::Release);
        self.load_dictionaries()?;
        Ok(found)
    }

    /// The store's count of `kind`'s records: its nodes, or its last event
    /// sequence (what dictionary trainings are spaced by, across restarts). A
    /// damaged count reads as 0: it only delays a training, and `verify` reports
    /// and repairs it.
    fn records_of(&self, kind: Kind) -> u64 {
        let k = match kind {
            Kind::Node => Self::node_count_key(),
            Kind::Event => key(keys::META, &[META_EVENT_SEQ]),
        };
        self.read_counter(&k).unwrap_or(0)
    }

    /// Starts training a dictionary of each kind whose training is due when the
    /// store opens (after any upgrade), on its newest stored records in the
    /// current binary forms: a store written by an earlier version, or by
    /// processes that each wrote too little to train one.
    pub(crate) fn train_if_due(&self) -> Result<(), StoreError> {
        if self.dicts.opened(Kind::Node, self.records_of(Kind::Node)) {
            let samples = self.newest_records(keys::NODE, |k, v| {
                self.with_doc(k, v, |doc, _| {
                    Ok((doc.first() == Some(&codec::FORMAT_BINARY)).then(|| doc.to_vec()))
                })
            })?;
            self.dicts.train_from(Kind::Node, samples);
        }
        if self.dicts.opened(Kind::Event, self.records_of(Kind::Event)) {
            let samples = self.newest_records(keys::EVENT, |k, v| {
                self.dicts
                    .unpack(Kind::Event, v, |e| {
                        (e.first() == Some(&codec::FORMAT_EVENT)).then(|| e.to_vec())
                    })
                    .map_err(|e| StoreError::corrupt("event", k, e))
            })?;
            self.dicts.train_from(Kind::Event, samples);
        }
        Ok(())
    }

    /// Up to [`packed::SAMPLE_RECORDS`] (and about [`packed::SAMPLE_BYTES`]) of the
    /// newest records under `prefix` (node ids and event sequence numbers grow with
    /// time), as `unpack` gives them; damaged, refused (`None`) and very large ones
    /// left out.
    fn newest_records(
        &self,
        prefix: u8,
        unpack: impl Fn(&[u8], &[u8]) -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in self.kv.scan(&[prefix], &prefix_end(&[prefix]), true) {
            let (k, v) = item?;
            if let Ok(Some(record)) = unpack(k.as_ref(), v.as_ref()) {
                if record.len() <= packed::SAMPLE_MAX_RECORD {
                    bytes += record.len();
                    out.push(record);
                }
            }
            if out.len() >= packed::SAMPLE_RECORDS || bytes >= packed::SAMPLE_BYTES {
                break;
            }
        }
        Ok(out)
    }

    /// The stored dictionaries, in id order (their keys sort so).
    fn load_dictionaries(&self) -> Result<(), StoreError> {
        let lo = key(keys::META, &[b"dict"]);
        let hi = prefix_end(&lo);
        for item in self.kv.scan(&lo, &hi, false) {
            let (k, v) = item?;
            let name = &k.as_ref()[1..];
            self.dicts
                .load(name, v.as_ref())
                .map_err(|e| StoreError::corrupt("dictionary", k.as_ref(), e))?;
        }
        Ok(())
    }

    fn check_layout(&self, k: &[u8]) -> Result<u64, StoreError> {
        match self.kv.get(k)? {
            // A new store: layout 4 comes with its first dictionary.
            None => {
                self.kv.apply(vec![(
                    k.to_vec(),
                    Some(BINARY_LAYOUT.to_be_bytes().to_vec()),
                )])?;
                Ok(BINARY_LAYOUT)
            }
            Some(v) => {
                let found = read_u64(v.as_ref())
                    .ok_or_else(|| StoreError::corrupt("schema version", k, "short value"))?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Ok(found)
            }
        }
    }

    /// Brings a store of layout `found` below 3 to layout 3: layout 2 → 3 rewrites
    /// its JSON node documents ([`Engine::migrate_documents`]), then records the
    /// layout. 3 → 4 happens with the first dictionary stored
    /// ([`Engine::store_ready_dictionary`]), not here.
    pub(crate) fn upgrade(&self, found: u64) -> Result<(), StoreError> {
        if found >= BINARY_LAYOUT {
            return Ok(());
        }
        self.migrate_documents()?;
        let k = key(keys::META, &[META_SCHEMA]);
        self.kv
            .apply(vec![(k, Some(BINARY_LAYOUT.to_be_bytes().to_vec()))])?;
        self.layout.store(BINARY_LAYOUT, Ordering::Release);
        Ok(())
    }

    /// Layout 2 → 3: rewrites every JSON node document in the binary encoding (not
    /// packed: the store is not at layout 4 yet), in batches under the writer lock. Each document keeps its version and index
    /// entries (its content is unchanged). Idempotent and safe to interrupt: both
    /// encodings decode, so a crash midway leaves a readable store that the next
    /// open finishes migrating. A document that does not decode is left for
    /// [`crate::IndexedStore::verify`] to report. Returns the number rewritten.
    fn migrate_documents(&self) -> Result<u64, StoreError> {
        let mut rewritten = 0;
        let mut from = vec![keys::NODE];
        let end = prefix_end(&[keys::NODE]);
        loop {
            let _guard = self.lock()?;
            let mut writes = Vec::with_capacity(MIGRATE_BATCH);
            let mut last = None;
            for item in self.kv.scan(&from, &end, false).take(MIGRATE_BATCH) {
                let (k, v) = item?;
                let (k, v) = (k.as_ref(), v.as_ref());
                last = Some(k.to_vec());
                // A damaged document is left as it is: `verify` reports it, and one
                // bad value must not make the whole store unopenable.
                if v.get(8) == Some(&b'{') {
                    if let Ok((node, version)) = self.decode_doc(k, v) {
                        writes.push((k.to_vec(), Some(plain_doc(&node, version)?)));
                    }
                }
            }
            let Some(mut last) = last else { break };
            rewritten += writes.len() as u64;
            self.kv.apply(writes)?;
            last.push(0);
            from = last;
        }
        Ok(rewritten)
    }

    // ---- packed records (codec::packed) --------------------------------------------

    /// Stores the dictionary of `kind` trained since the last write, if any, and
    /// packs with it from now on. Its own batch, applied before the caller's: no
    /// record packed with it reaches the disk before it. Callers hold the writer
    /// lock, so no other write packs with it first.
    fn store_ready_dictionary(&self, kind: Kind) -> Result<(), StoreError> {
        if let Some((id, name, value)) = self.dicts.take_ready(kind, || self.records_of(kind)) {
            let mut writes = vec![(key(keys::META, &[&name]), Some(value.clone()))];
            // The layout that reads packed records, recorded with the first
            // dictionary: an older server then refuses the store, not misreads it.
            if self.layout.load(Ordering::Acquire) < SCHEMA_VERSION {
                writes.push((
                    key(keys::META, &[META_SCHEMA]),
                    Some(SCHEMA_VERSION.to_be_bytes().to_vec()),
                ));
            }
            self.kv.apply(writes)?;
            self.layout.store(SCHEMA_VERSION, Ordering::Release);
            self.dicts
                .stored(kind, id, &value)
                .map_err(|e| StoreError::corrupt("dictionary", &name, e))?;
        }
        Ok(())
    }

    /// The stored value of a node document: its version, then the document packed
    /// (or as it is until the store has a dictionary).
    pub(crate) fn encode_doc(&self, node: &Node, version: Version) -> Result<Vec<u8>, StoreError> {
        self.store_ready_dictionary(Kind::Node)?;
        let mut raw = Vec::with_capacity(1024);
        codec::encode_node(node, &mut raw).map_err(|e| StoreError::Unencodable(e.to_string()))?;
        let mut v = Vec::with_capacity(8 + raw.len());
        v.extend_from_slice(&version.0.to_be_bytes());
        self.dicts.pack(Kind::Node, &raw, &mut v);
        Ok(v)
    }

    /// Calls `f` with the node document of stored value `b` unpacked, and its
    /// version.
    pub(crate) fn with_doc<T>(
        &self,
        key: &[u8],
        b: &[u8],
        f: impl FnOnce(&[u8], Version) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let version = doc_version(key, b)?;
        self.dicts
            .unpack(Kind::Node, &b[8..], |doc| f(doc, version))
            .map_err(|e| StoreError::corrupt("node", key, e))?
    }

    /// Decodes a stored node value: its version, then the document.
    pub(crate) fn decode_doc(&self, key: &[u8], b: &[u8]) -> Result<(Node, Version), StoreError> {
        self.with_doc(key, b, |doc, version| Ok((read_doc(key, doc)?, version)))
    }

    /// The stored value of an event, packed like node documents.
    pub(crate) fn encode_event_value(&self, e: &Event) -> Result<Vec<u8>, StoreError> {
        self.store_ready_dictionary(Kind::Event)?;
        let raw = event_record(e);
        let mut v = Vec::with_capacity(raw.len());
        self.dicts.pack(Kind::Event, &raw, &mut v);
        Ok(v)
    }

    /// Reads a stored event.
    pub(crate) fn decode_event_value(&self, key: &[u8], b: &[u8]) -> Result<Event, StoreError> {
        self.dicts
            .unpack(Kind::Event, b, |raw| read_event_record(key, raw))
            .map_err(|e| StoreError::corrupt("event", key, e))?
    }

    /// Figures of the node documents' and the events' dictionaries.
    pub(crate) fn pack_stats(&self) -> (PackStats, PackStats) {
        (self.dicts.stats(Kind::Node), self.dicts.stats(Kind::Event))
    }

    pub(crate) fn read_counter(&self, k: &[u8]) -> Result<u64, StoreError> {
        match self.kv.get(k)? {
            None => Ok(0),
            Some(v) => {
                read_u64(v.as_ref()).ok_or_else(|| StoreError::corrupt("counter", k, "short value"))
            }
        }
    }

    /// Adds the index and counter changes of replacing `old` by `new` (either may be
    /// absent) to `writes` and `deltas`.
    pub(crate) fn index_changes(
        &self,
        old: Option<&Node>,
        new: Option<&Node>,
        writes: &mut Vec<Write>,
        deltas: &mut Deltas,
    ) {
        let derived = self.kv.derives_counts();
        let old_values = old.map(|n| self.fields.values(n));
        let new_values = new.map(|n| self.fields.values(n));
        for (i, index) in INDEXES.iter().enumerate() {
            let none = (BTreeSet::new(), Flags::default());
            let (old_e, old_f) = old_values
                .as_ref()
                .map_or_else(|| none.clone(), |v| self.fields.entries(i, v));
            let (new_e, new_f) = new_values
                .as_ref()
                .map_or(none, |v| self.fields.entries(i, v));
            if let Some(n) = old {
                let id = n.id.bytes();
                for t in old_e.difference(&new_e) {
                    writes.push((entry_key(index, t, &id), None));
                    if !derived {
                        deltas.add(count_key(index, t), -1);
                    }
                }
            }
            if let Some(n) = new {
                let id = n.id.bytes();
                for t in new_e.difference(&old_e) {
                    writes.push((entry_key(index, t, &id), Some(Vec::new())));
                    if !derived {
                        deltas.add(count_key(index, t), 1);
                    }
                }
            }
            // Most writes change neither flag: no key is built for them.
            let irregular = i64::from(new_f.irregular) - i64::from(old_f.irregular);
            if irregular != 0 {
                deltas.add(irregular_key(index), irregular);
            }
            let lossy = i64::from(new_f.lossy) - i64::from(old_f.lossy);
            if lossy != 0 {
                deltas.add(lossy_key(index), lossy);
            }
        }
    }

    /// Turns accumulated deltas into counter writes (reading each counter once).
    pub(crate) fn counter_writes(
        &self,
        deltas: Deltas,
        writes: &mut Vec<Write>,
    ) -> Result<(), StoreError> {
        for (k, d) in deltas.0 {
            if d == 0 {
                continue;
            }
            let current = self.read_counter(&k)? as i64;
            let next = (current + d).max(0) as u64;
            writes.push((k, (next != 0).then(|| next.to_be_bytes().to_vec())));
        }
        Ok(())
    }

    fn node_count_key() -> Vec<u8> {
        key(keys::META, &[META_NODES])
    }

    // ---- nodes -------------------------------------------------------------------

    pub(crate) fn insert_nodes(&self, nodes: &[Node]) -> Res<()> {
        let writes: Vec<(&Node, Option<Version>)> = nodes.iter().map(|n| (n, None)).collect();
        self.write_nodes(&writes, None).map(|_| ())
    }

    /// Inserts (`None`) or replaces (compare-and-swap on `Some(version)`) each node
    /// and appends `event`, as one batch: all or nothing. A new id that exists or
    /// repeats is a `Conflict`, as is a replacement whose version moved on; a
    /// replaced node that is gone is `NotFound`. Returns the new versions in order
    /// and the logged event.
    pub(crate) fn write_nodes(
        &self,
        nodes: &[(&Node, Option<Version>)],
        event: Option<NewEvent>,
    ) -> Res<(Vec<Version>, Option<Event>)> {
        let _guard = self.lock()?;
        let mut seen = HashSet::new();
        let mut olds = Vec::with_capacity(nodes.len());
        let mut versions = Vec::with_capacity(nodes.len());
        for (n, expected) in nodes {
            if !seen.insert(n.id) {
                return Err(Error::Conflict(format!(
                    "Node {} is written twice in one submission",
                    n.id
                )));
            }
            match expected {
                None => {
                    if self.kv.get(&node_key(n.id))?.is_some() {
                        return Err(Error::Conflict(format!(
                            "Node already exists with id: {}",
                            n.id
                        )));
                    }
                    olds.push(None);
                    versions.push(Version(1));
                }
                Some(expected) => {
                    let Some((old, version)) = self.get_node(n.id)? else {
                        return Err(node_not_found(n.id));
                    };
                    if version != *expected {
                        return Err(Error::Conflict(format!(
                            "Node {} was modified concurrently",
                            n.id
                        )));
                    }
                    olds.push(Some(old));
                    versions.push(Version(version.0 + 1));
                }
            }
        }
        let mut writes = Vec::with_capacity(nodes.len() * 32 + 2);
        let mut deltas = Deltas::default();
        let mut inserted = 0i64;
        for (((n, _), old), version) in nodes.iter().zip(&olds).zip(&versions) {
            writes.push((node_key(n.id), Some(self.encode_doc(n, *version)?)));
            self.index_changes(old.as_ref(), Some(n), &mut writes, &mut deltas);
            inserted += i64::from(old.is_none());
        }
        deltas.add(Self::node_count_key(), inserted);
        self.counter_writes(deltas, &mut writes)?;
        let logged = event
            .map(|e| self.event_writes(e, &mut writes))
            .transpose()?;
        self.kv.apply(writes)?;
        Ok((versions, logged))
    }

    pub(crate) fn get_node(&self, id: ObjectId) -> Result<Option<(Node, Version)>, StoreError> {
        let k = node_key(id);
        self.kv
            .get(&k)?
            .map(|v| self.decode_doc(&k, v.as_ref()))
            .transpose()
    }

    /// The stored node as the API's JSON ([`node_json`]).
    pub(crate) fn get_node_json(&self, id: ObjectId) -> Result<Option<Vec<u8>>, StoreError> {
        let k = node_key(id);
        let Some(v) = self.kv.get(&k)? else {
            return Ok(None);
        };
        self.with_doc(&k, v.as_ref(), |doc, _| node_json(&k, doc).map(Some))
    }

    pub(crate) fn replace_node(&self, node: &Node, expected: Version) -> Res<Version> {
        let (versions, _) = self.write_nodes(&[(node, Some(expected))], None)?;
        versions
            .first()
            .copied()
            .ok_or_else(|| Error::Storage("no version written".into()))
    }

    pub(crate) fn set_field_many(
        &self,
        ids: &[ObjectId],
        set: FieldSet,
        now: Timestamp,
    ) -> Res<u64> {
        let mut changed = 0;
        for id in ids {
            let _guard = self.lock()?;
            let Some((old, version)) = self.get_node(*id)? else {
                continue;
            };
            let mut node = old.clone();
            match set {
                FieldSet::ProcessedByKcidbBridge(b) => set_processed(&mut node, b, now),
            }
            let mut writes = vec![(
                node_key(node.id),
                Some(self.encode_doc(&node, Version(version.0 + 1))?),
            )];
            let mut deltas = Deltas::default();
            self.index_changes(Some(&old), Some(&node), &mut writes, &mut deltas);
            self.counter_writes(deltas, &mut writes)?;
            self.kv.apply(writes)?;
            changed += 1;
        }
        Ok(changed)
    }

    pub(crate) fn delete_node_locked(&self, node: &Node) -> Result<(), StoreError> {
        let mut writes = vec![(node_key(node.id), None)];
        let mut deltas = Deltas::default();
        self.index_changes(Some(node), None, &mut writes, &mut deltas);
        deltas.add(Self::node_count_key(), -1);
        self.counter_writes(deltas, &mut writes)?;
        self.kv.apply(writes)
    }

    pub(crate) fn delete_nodes_created_before(
        &self,
        before: Timestamp,
        keep: &[&str],
        max: usize,
    ) -> Res<u64> {
        let created = crate::index::find(&["created"])
            .ok_or_else(|| StoreError::Task("no created index".into()))?;
        let lo = key(keys::INDEX, &[&[created.id]]);
        let mut hi = lo.clone();
        keys::encode_val(&mut hi, kernelci_core::query::Val::Date(before));
        let mut victims = Vec::new();
        for item in self.kv.scan(&lo, &hi, false) {
            let (k, _) = item?;
            let Some(id) = keys::id_suffix(k.as_ref()) else {
                continue;
            };
            if let Some((n, _)) = self.get_node(id)? {
                if n.created < before && !keep.contains(&n.kind.as_str()) {
                    victims.push(id);
                    if victims.len() >= max {
                        break;
                    }
                }
            }
        }
        let mut deleted = 0;
        for id in victims {
            let _guard = self.lock()?;
            // Re-check under the lock: a concurrent write may have changed the node.
            if let Some((n, _)) = self.get_node(id)? {
                if n.created < before && !keep.contains(&n.kind.as_str()) {
                    self.delete_node_locked(&n)?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    pub(crate) fn count_all(&self) -> Result<u64, StoreError> {
        self.read_counter(&Self::node_count_key())
    }

    pub(crate) fn children(&self, parent: ObjectId) -> Res<Vec<Node>> {
        let mut out = Vec::new();
        for id in self.child_ids(parent)? {
            if let Some((n, _)) = self.get_node(id)? {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn child_ids(&self, parent: ObjectId) -> Result<Vec<ObjectId>, StoreError> {
        let index = crate::index::find(&["parent"])
            .ok_or_else(|| StoreError::Task("no parent index".into()))?;
        let mut lo = key(keys::INDEX, &[&[index.id]]);
        keys::encode_val(&mut lo, kernelci_core::query::Val::Id(parent));
        let hi = prefix_end(&lo);
        let mut ids = Vec::new();
        for item in self.kv.scan(&lo, &hi, false) {
            let (k, _) = item?;
            if let Some(id) = keys::id_suffix(k.as_ref()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// Walks the `parent` index breadth-first; the (parent, state) counters give each
    /// level's done count without loading documents.
    pub(crate) fn descendants_summary(&self, id: ObjectId) -> Res<ChildrenSummary> {
        let by_state = crate::index::find(&["parent", "state"])
            .ok_or_else(|| StoreError::Task("no parent+state index".into()))?;
        let mut summary = ChildrenSummary::default();
        let mut seen = HashSet::from([id]);
        let mut frontier = vec![id];
        while let Some(parent) = frontier.pop() {
            let children = self.child_ids(parent)?;
            let fresh: Vec<ObjectId> = children.into_iter().filter(|c| seen.insert(*c)).collect();
            if fresh.is_empty() {
                continue;
            }
            summary.total += fresh.len() as u64;
            // Done children: the (parent, state=done) posting list, restricted to the
            // fresh ones (a cycle may bring back a node already counted).
            let mut lo = key(keys::INDEX, &[&[by_state.id]]);
            keys::encode_val(&mut lo, kernelci_core::query::Val::Id(parent));
            keys::encode_val(
                &mut lo,
                kernelci_core::query::Val::Str(State::Done.as_str()),
            );
            let hi = prefix_end(&lo);
            let fresh_set: HashSet<ObjectId> = fresh.iter().copied().collect();
            for item in self.kv.scan(&lo, &hi, false) {
                let (k, _) = item?;
                if keys::id_suffix(k.as_ref()).is_some_and(|c| fresh_set.contains(&c)) {
                    summary.done += 1;
                }
            }
            frontier.extend(fresh);
        }
        Ok(summary)
    }

    // ---- events ------------------------------------------------------------------

    pub(crate) fn append_event(&self, event: NewEvent) -> Res<Event> {
        let _guard = self.lock()?;
        let mut writes = Vec::with_capacity(2);
        let e = self.event_writes(event, &mut writes)?;
        self.kv.apply(writes)?;
        Ok(e)
    }

    /// Numbers `event` with the next sequence id and adds its writes (the event and
    /// the sequence counter) to `writes`. The caller holds the write lock.
    fn event_writes(&self, event: NewEvent, writes: &mut Vec<Write>) -> Res<Event> {
        let seq_key = key(keys::META, &[META_EVENT_SEQ]);
        let seq = self.read_counter(&seq_key)? + 1;
        let e = event.with_sequence(seq);
        writes.push((
            key(keys::EVENT, &[&seq.to_be_bytes()]),
            Some(self.encode_event_value(&e)?),
        ));
        writes.push((seq_key, Some(seq.to_be_bytes().to_vec())));
        Ok(e)
    }

    fn scan_events(&self, after: u64) -> impl Iterator<Item = Result<Event, StoreError>> + '_ {
        let lo = key(keys::EVENT, &[&(after.saturating_add(1)).to_be_bytes()]);
        let hi = prefix_end(&[keys::EVENT]);
        self.kv.scan(&lo, &hi, false).map(|item| {
            let (k, v) = item?;
            self.decode_event_value(k.as_ref(), v.as_ref())
        })
    }

    pub(crate) fn events_after(
        &self,
        after: u64,
        channel: Option<&str>,
        limit: usize,
    ) -> Res<Vec<Event>> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for e in self.scan_events(after) {
            let e = e?;
            if channel.is_none_or(|c| c == e.channel) {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn find_events(&self, q: &EventQuery) -> Res<Vec<Event>> {
        let mut out = Vec::new();
        let mut skipped = 0;
        let limit = q
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        for e in self.scan_events(0) {
            let e = e?;
            if !q.matches(&e) {
                continue;
            }
            if skipped < q.offset {
                skipped += 1;
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }

    pub(crate) fn last_event_sequence(&self) -> Result<u64, StoreError> {
        self.read_counter(&key(keys::META, &[META_EVENT_SEQ]))
    }

    pub(crate) fn trim_events(&self, before: Timestamp) -> Res<u64> {
        let mut doomed = Vec::new();
        for item in self
            .kv
            .scan(&[keys::EVENT], &prefix_end(&[keys::EVENT]), false)
        {
            let (k, v) = item?;
            let e = self.decode_event_value(k.as_ref(), v.as_ref())?;
            if e.timestamp < before {
                doomed.push((k.as_ref().to_vec(), None));
            }
        }
        let n = doomed.len() as u64;
        let _guard = self.lock()?;
        self.kv.apply(doomed)?;
        Ok(n)
    }

    // ---- simple records ----------------------------------------------------------

    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        what: &'static str,
        k: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.kv
            .get(k)?
            .map(|v| from_json(what, k, v.as_ref()))
            .transpose()
    }

    pub(crate) fn put_subscriber(&self, s: &SubscriberState) -> Res<()> {
        let _guard = self.lock()?;
        Ok(self.kv.apply(vec![(
            key(keys::SUBSCRIBER, &[s.subscriber_id.as_bytes()]),
            Some(to_json(s)),
        )])?)
    }

    pub(crate) fn advance_subscriber(&self, id: &str, seq: u64, now: Timestamp) -> Res<()> {
        let _guard = self.lock()?;
        let k = key(keys::SUBSCRIBER, &[id.as_bytes()]);
        let mut s: SubscriberState = self
            .get_json("subscriber", &k)?
            .ok_or_else(|| Error::NotFound(format!("Subscriber not found: {id}")))?;
        s.last_event_id = s.last_event_id.max(seq);
        s.last_poll = Some(now);
        Ok(self.kv.apply(vec![(k, Some(to_json(&s)))])?)
    }

    pub(crate) fn delete_key(&self, k: Vec<u8>) -> Res<bool> {
        let _guard = self.lock()?;
        let existed = self.kv.get(&k)?.is_some();
        if existed {
            self.kv.apply(vec![(k, None)])?;
        }
        Ok(existed)
    }

    pub(crate) fn list<T: DeserializeOwned>(&self, what: &'static str, prefix: u8) -> Res<Vec<T>> {
        let mut out = Vec::new();
        for item in self.kv.scan(&[prefix], &prefix_end(&[prefix]), false) {
            let (k, v) = item?;
            out.push(from_json(what, k.as_ref(), v.as_ref())?);
        }
        Ok(out)
    }

    pub(crate) fn next_counter(&self, name: &str) -> Res<u64> {
        let _guard = self.lock()?;
        let k = key(keys::COUNTER, &[name.as_bytes()]);
        let next = self.read_counter(&k)? + 1;
        self.kv
            .apply(vec![(k, Some(next.to_be_bytes().to_vec()))])?;
        Ok(next)
    }

    // ---- users and groups ---------------------------------------------------------

    fn user_name_key(name: &str) -> Vec<u8> {
        key(keys::USER_KEY, &[b"n", name.as_bytes()])
    }

    fn user_email_key(email: &str) -> Vec<u8> {
        key(keys::USER_KEY, &[b"e", email.as_bytes()])
    }

    pub(crate) fn user_key(id: ObjectId) -> Vec<u8> {
        key(keys::USER, &[&id.bytes()])
    }

    fn taken_by_other(&self, k: &[u8], id: ObjectId) -> Result<bool, StoreError> {
        Ok(self
            .kv
            .get(k)?
            .is_some_and(|v| v.as_ref() != id.bytes().as_slice()))
    }

    pub(crate) fn insert_user(&self, u: &User) -> Res<()> {
        let _guard = self.lock()?;
        if self.kv.get(&Self::user_key(u.id))?.is_some()
            || self.kv.get(&Self::user_name_key(&u.username))?.is_some()
            || self.kv.get(&Self::user_email_key(&u.email))?.is_some()
        {
            return Err(Error::Conflict(
                "User with this id, username or e-mail already exists".into(),
            ));
        }
        let id = u.id.bytes().to_vec();
        Ok(self.kv.apply(vec![
            (Self::user_key(u.id), Some(to_json(u))),
            (Self::user_name_key(&u.username), Some(id.clone())),
            (Self::user_email_key(&u.email), Some(id)),
        ])?)
    }

    pub(crate) fn user_by_unique(&self, k: &[u8]) -> Res<Option<User>> {
        let Some(id) = self.kv.get(k)? else {
            return Ok(None);
        };
        let bytes: [u8; 12] = id
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::corrupt("user key", k, "not an id"))?;
        Ok(self.get_json("user", &Self::user_key(ObjectId::from_bytes(bytes)))?)
    }

    pub(crate) fn user_by_name(&self, name: &str) -> Res<Option<User>> {
        self.user_by_unique(&Self::user_name_key(name))
    }

    pub(crate) fn user_by_email(&self, email: &str) -> Res<Option<User>> {
        self.user_by_unique(&Self::user_email_key(email))
    }

    pub(crate) fn update_user(&self, u: &User) -> Res<()> {
        self.write_user(u, None).map(|_| ())
    }

    /// Writes `u` if the stored user equals `expected` (when given): `false` and
    /// nothing written otherwise. Under the engine lock, like every user write.
    pub(crate) fn write_user(&self, u: &User, expected: Option<&User>) -> Res<bool> {
        let _guard = self.lock()?;
        let old: User = self
            .get_json("user", &Self::user_key(u.id))?
            .ok_or_else(|| Error::NotFound(format!("User not found with id: {}", u.id)))?;
        if expected.is_some_and(|e| *e != old) {
            return Ok(false);
        }
        if self.taken_by_other(&Self::user_name_key(&u.username), u.id)?
            || self.taken_by_other(&Self::user_email_key(&u.email), u.id)?
        {
            return Err(Error::Conflict("Username or e-mail already taken".into()));
        }
        let id = u.id.bytes().to_vec();
        let mut writes = vec![(Self::user_key(u.id), Some(to_json(u)))];
        if old.username != u.username {
            writes.push((Self::user_name_key(&old.username), None));
        }
        if old.email != u.email {
            writes.push((Self::user_email_key(&old.email), None));
        }
        writes.push((Self::user_name_key(&u.username), Some(id.clone())));
        writes.push((Self::user_email_key(&u.email), Some(id)));
        self.kv.apply(writes)?;
        Ok(true)
    }

    pub(crate) fn delete_user(&self, id: ObjectId) -> Res<bool> {
        let _guard = self.lock()?;
        let Some(u) = self.get_json::<User>("user", &Self::user_key(id))? else {
            return Ok(false);
        };
        self.kv.apply(vec![
            (Self::user_key(id), None),
            (Self::user_name_key(&u.username), None),
            (Self::user_email_key(&u.email), None),
        ])?;
        Ok(true)
    }

    pub(crate) fn find_users(&self, f: &ExactFilter, limit: u64, offset: u64) -> Res<Page<User>> {
        let all: Vec<User> = self.list("user", keys::USER)?;
        Ok(page(
            all.into_iter()
                .filter(|u| f.matches(&u.to_public_json()))
                .collect(),
            limit,
            offset,
        ))
    }

    pub(crate) fn group_key(id: ObjectId) -> Vec<u8> {
        key(keys::GROUP, &[&id.bytes()])
    }

    fn group_name_key(name: &str) -> Vec<u8> {
        key(keys::GROUP_NAME, &[name.as_bytes()])
    }

    pub(crate) fn insert_group(&self, g: &UserGroup) -> Res<()> {
        let _guard = self.lock()?;
        if self.kv.get(&Self::group_key(g.id))?.is_some()
            || self.kv.get(&Self::group_name_key(&g.name))?.is_some()
        {
            return Err(Error::Conflict(format!("Group already exists: {}", g.name)));
        }
        Ok(self.kv.apply(vec![
            (Self::group_key(g.id), Some(to_json(g))),
            (Self::group_name_key(&g.name), Some(g.id.bytes().to_vec())),
        ])?)
    }

    pub(crate) fn group_by_name(&self, name: &str) -> Res<Option<UserGroup>> {
        let k = Self::group_name_key(name);
        let Some(id) = self.kv.get(&k)? else {
            return Ok(None);
        };
        let bytes: [u8; 12] = id
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::corrupt("group name", &k, "not an id"))?;
        Ok(self.get_json("group", &Self::group_key(ObjectId::from_bytes(bytes)))?)
    }

    pub(crate) fn delete_group(&self, id: ObjectId) -> Res<bool> {
        let _guard = self.lock()?;
        let Some(g) = self.get_json::<UserGroup>("group", &Self::group_key(id))? else {
            return Ok(false);
        };
        let users: Vec<User> = self.list("user", keys::USER)?;
        if users.iter().any(|u| u.groups.iter().any(|x| x.id == id)) {
            return Err(Error::Conflict(
                "Group is in use by at least one user".into(),
            ));
        }
        self.kv.apply(vec![
            (Self::group_key(id), None),
            (Self::group_name_key(&g.name), None),
        ])?;
        Ok(true)
    }

    pub(crate) fn find_groups(
        &self,
        f: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Res<Page<UserGroup>> {
        let all: Vec<UserGroup> = self.list("group", keys::GROUP)?;
        Ok(page(
            all.into_iter()
                .filter(|g| f.matches(&serde_json::to_value(g).unwrap_or_default()))
                .collect(),
            limit,
            offset,
        ))
    }

    // ---- telemetry ---------------------------------------------------------------

    pub(crate) fn telemetry_key(id: ObjectId) -> Vec<u8> {
        key(keys::TELEMETRY, &[&id.bytes()])
    }

    pub(crate) fn telemetry_ts_key(ts: Timestamp, id: ObjectId) -> Vec<u8> {
        key(keys::TELEMETRY_TS, &[&keys::time_bytes(ts), &id.bytes()])
    }

    /// Each event's document and its time-index entry, all in one batch.
    pub(crate) fn insert_telemetry(&self, events: &[TelemetryEvent]) -> Res<()> {
        if events.is_empty() {
            return Ok(());
        }
        let _guard = self.lock()?;
        let mut seen = HashSet::new();
        for e in events {
            if !seen.insert(e.id) || self.kv.get(&Self::telemetry_key(e.id))?.is_some() {
                return Err(Error::Conflict(format!(
                    "Telemetry event already exists with id: {}",
                    e.id
                )));
            }
        }
        // In batches of TELEMETRY_BATCH events: sled keeps every tree node a batch
        // replaces until the batch ends (one epoch guard), so one batch of 400k
        // writes held gigabytes (see docs/PERFORMANCE.md, memory). The lock is held
        // throughout and the ids were checked above; a crash in the middle keeps the
        // batches written before it.
        for part in events.chunks(TELEMETRY_BATCH) {
            let mut writes = Vec::with_capacity(part.len() * 2);
            for e in part {
                writes.push((Self::telemetry_key(e.id), Some(to_json(e))));
                writes.push((Self::telemetry_ts_key(e.ts, e.id), Some(Vec::new())));
            }
            self.kv.apply(writes)?;
        }
        Ok(())
    }

    /// The ids of the time-index entries with `since <= ts <= until`, ascending.
    fn telemetry_ids_between(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
    ) -> Result<Vec<ObjectId>, StoreError> {
        let lo = match since {
            Some(s) => key(keys::TELEMETRY_TS, &[&keys::time_bytes(s)]),
            None => vec![keys::TELEMETRY_TS],
        };
        let hi = match until {
            Some(u) => prefix_end(&key(keys::TELEMETRY_TS, &[&keys::time_bytes(u)])),
            None => prefix_end(&[keys::TELEMETRY_TS]),
        };
        let mut ids = Vec::new();
        if lo >= hi {
            return Ok(ids);
        }
        for item in self.kv.scan(&lo, &hi, false) {
            let (k, _) = item?;
            if let Some(id) = keys::id_suffix(k.as_ref()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Calls `visit` on every event with `since <= ts <= until`, by ascending id,
    /// until it returns false. Without bounds the documents are walked in key (id)
    /// order; with a bound the time index gives the candidates, whose `ts` is
    /// checked again on the document.
    fn walk_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        visit: &mut dyn FnMut(TelemetryEvent) -> bool,
    ) -> Res<()> {
        if since.is_none() && until.is_none() {
            let lo = [keys::TELEMETRY];
            for item in self.kv.scan(&lo, &prefix_end(&lo), false) {
                let (k, v) = item?;
                if !visit(from_json("telemetry", k.as_ref(), v.as_ref())?) {
                    break;
                }
            }
            return Ok(());
        }
        for id in self.telemetry_ids_between(since, until)? {
            let k = Self::telemetry_key(id);
            // Trimmed since the index was read.
            let Some(v) = self.kv.get(&k)? else {
                continue;
            };
            let e: TelemetryEvent = from_json("telemetry", &k, v.as_ref())?;
            if in_range(e.ts, since, until) && !visit(e) {
                break;
            }
        }
        Ok(())
    }

    pub(crate) fn find_telemetry(&self, q: &TelemetryQuery) -> Res<Page<TelemetryEvent>> {
        let offset = usize::try_from(q.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let mut total = 0usize;
        let mut items = Vec::new();
        self.walk_telemetry(q.since, q.until, &mut |e| {
            if q.filter.terms.is_empty() || q.filter.matches(&e.document()) {
                if total >= offset && items.len() < limit {
                    items.push(e);
                }
                total += 1;
            }
            true
        })?;
        Ok(Page {
            items,
            total: total as u64,
        })
    }

    pub(crate) fn scan_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        filter: &ExactFilter,
    ) -> Res<Vec<TelemetryEvent>> {
        let mut out = Vec::new();
        self.walk_telemetry(since, until, &mut |e| {
            if filter.terms.is_empty() || filter.matches(&e.document()) {
                out.push(e);
            }
            true
        })?;
        Ok(out)
    }

    /// Deletes events with `ts < before` through the time index, in batches of up to
    /// 10,000 events, each under the writer lock (so writers are never held long and
    /// the count is exact).
    pub(crate) fn trim_telemetry(&self, before: Timestamp) -> Res<u64> {
        const BATCH: usize = 10_000;
        let lo = [keys::TELEMETRY_TS];
        let hi = key(keys::TELEMETRY_TS, &[&keys::time_bytes(before)]);
        let mut deleted = 0;
        loop {
            let _guard = self.lock()?;
            let mut writes = Vec::new();
            let mut n = 0;
            for item in self.kv.scan(&lo, &hi, false).take(BATCH) {
                let (k, _) = item?;
                if let Some(id) = keys::id_suffix(k.as_ref()) {
                    writes.push((Self::telemetry_key(id), None));
                }
                writes.push((k.as_ref().to_vec(), None));
                n += 1;
            }
            if n == 0 {
                return Ok(deleted);
            }
            deleted += n;
            self.kv.apply(writes)?;
        }
    }

    // ---- tokens and kv -----------------------------------------------------------

    pub(crate) fn put_token(&self, t: &TokenRecord) -> Res<()> {
        let _guard = self.lock()?;
        Ok(self.kv.apply(vec![(
            key(keys::TOKEN, &[t.id.as_bytes()]),
            Some(to_json(t)),
        )])?)
    }

    pub(crate) fn consume_token(&self, id: &str, now: Timestamp) -> Res<Option<TokenRecord>> {
        let _guard = self.lock()?;
        let k = key(keys::TOKEN, &[id.as_bytes()]);
        match self.get_json::<TokenRecord>("token", &k)? {
            Some(mut t) if !t.used && t.expires > now => {
                t.used = true;
                self.kv.apply(vec![(k, Some(to_json(&t)))])?;
                Ok(Some(t))
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn kv_key(namespace: &str, k: &str) -> Vec<u8> {
        let mut out = vec![keys::KV];
        keys::encode_val(&mut out, kernelci_core::query::Val::Str(namespace));
        out.extend_from_slice(k.as_bytes());
        out
    }

    pub(crate) fn kv_set(&self, namespace: &str, k: &str, value: &str) -> Res<()> {
        let _guard = self.lock()?;
        Ok(self.kv.apply(vec![(
            Self::kv_key(namespace, k),
            Some(value.as_bytes().to_vec()),
        )])?)
    }

    pub(crate) fn kv_get(&self, namespace: &str, k: &str) -> Res<Option<String>> {
        let key = Self::kv_key(namespace, k);
        match self.kv.get(&key)? {
            None => Ok(None),
            Some(v) => Ok(Some(
                String::from_utf8(v.as_ref().to_vec())
                    .map_err(|e| StoreError::corrupt("kv value", &key, e))?,
            )),
        }
    }
}

impl<K: Kv> Engine<K> {
    // ---- queues ------------------------------------------------------------------

    /// The key prefix of the items of queue `name`: the length prefix keeps a name
    /// from being the prefix of another queue's keys.
    fn queue_prefix(name: &str) -> Res<Vec<u8>> {
        let len =
            u32::try_from(name.len()).map_err(|_| Error::Invalid("Queue name too long".into()))?;
        Ok(key(keys::QUEUE, &[&len.to_be_bytes(), name.as_bytes()]))
    }

    /// Appends after the queue's last item (position 1 when it is empty), under the
    /// write lock so that positions are never taken twice.
    pub(crate) fn queue_push(&self, name: &str, value: &str) -> Res<()> {
        let prefix = Self::queue_prefix(name)?;
        let end = prefix_end(&prefix);
        let _guard = self.lock()?;
        let last = match self.kv.scan(&prefix, &end, true).next() {
            None => 0,
            Some(item) => {
                let (k, _) = item?;
                read_u64(&k.as_ref()[prefix.len()..])
                    .ok_or_else(|| StoreError::corrupt("queue key", k.as_ref(), "short key"))?
            }
        };
        let position = last
            .checked_add(1)
            .ok_or_else(|| Error::Storage("queue position overflow".into()))?;
        let mut k = prefix;
        k.extend_from_slice(&position.to_be_bytes());
        Ok(self.kv.apply(vec![(k, Some(value.as_bytes().to_vec()))])?)
    }

    /// Removes and returns the first item, under the write lock (so two pops never
    /// return the same item).
    pub(crate) fn queue_pop(&self, name: &str) -> Res<Option<String>> {
        let prefix = Self::queue_prefix(name)?;
        let end = prefix_end(&prefix);
        let _guard = self.lock()?;
        let Some(item) = self.kv.scan(&prefix, &end, false).next() else {
            return Ok(None);
        };
        let (k, v) = item?;
        let k = k.as_ref().to_vec();
        let value = String::from_utf8(v.as_ref().to_vec())
            .map_err(|e| StoreError::corrupt("queue value", &k, e))?;
        self.kv.apply(vec![(k, None)])?;
        Ok(Some(value))
    }
}

fn page<T>(items: Vec<T>, limit: u64, offset: u64) -> Page<T> {
    let total = items.len() as u64;
    let items = items
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect();
    Page { items, total }
}

/// The store's answer for `get_node`.
pub(crate) fn versioned((value, version): (Node, Version)) -> Versioned<Node> {
    Versioned { value, version }
}

/// The distinct fields of [`INDEXES`] and, per index, which of them it combines: a
/// node's fields are resolved and encoded once per write, not once per index using
/// them.
#[derive(Debug)]
struct Fields {
    paths: Vec<FieldPath>,
    of_index: Vec<Vec<usize>>,
}

impl Fields {
    fn new() -> Self {
        let mut paths: Vec<FieldPath> = Vec::new();
        let mut of_index = Vec::new();
        for index in INDEXES {
            let mut mine = Vec::new();
            for p in index.paths() {
                let at = match paths.iter().position(|q| *q == p) {
                    Some(at) => at,
                    None => {
                        paths.push(p);
                        paths.len() - 1
                    }
                };
                mine.push(at);
            }
            of_index.push(mine);
        }
        Fields { paths, of_index }
    }

    /// The values of every field in `node`.
    fn values(&self, node: &Node) -> Vec<FieldValues> {
        self.paths.iter().map(|p| field_values(p, node)).collect()
    }

    /// The entries and flags of index number `i` (in [`INDEXES`]) from `values`.
    fn entries(&self, i: usize, values: &[FieldValues]) -> (BTreeSet<Vec<u8>>, Flags) {
        let fields: Vec<&FieldValues> = self.of_index[i].iter().map(|f| &values[*f]).collect();
        combine(&fields)
    }
}
