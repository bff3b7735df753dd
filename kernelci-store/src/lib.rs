//! # kernelci-store
//!
//! The implementations of [`kernelci_core::store::Store`]:
//!
//! - [`MemoryStore`]: volatile, for tests and embedding;
//! - [`SledStore`]: the embedded, durable default (sled 0.34): no server to run;
//! - [`postgres::PgStore`] (feature `postgres`, on by default): PostgreSQL, for data
//!   beyond one machine's RAM and several server processes on one database (see the
//!   [`postgres`] module; the rest of this page is about the first two).
//!
//! Both are one engine ([`IndexedStore`]) over an ordered key space — an in-memory
//! B-tree or one sled tree — so index maintenance, counters and the query planner are
//! written once and the two backends return identical results by construction.
//!
//! ```
//! use kernelci_core::node::Node;
//! use kernelci_core::query::{Mode, Query};
//! use kernelci_core::store::Store;
//! use kernelci_core::time::Timestamp;
//! use kernelci_store::SledStore;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let store = SledStore::open(dir.path(), Default::default())?;
//! store.insert_node(&Node::new("checkout", "checkout", Timestamp::now())).await?;
//! let q = Query::parse_str("kind=checkout", Mode::Count)?;
//! assert_eq!(store.count_nodes(&q).await?, 1);
//! println!("{}", store.explain(&q)?); // driver: kind = (~1); total: Counters; ...
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Layout
//!
//! One ordered key space; the first byte of a key says what it holds. Index entries
//! (`I`) and counters (`K`) are kept in memory by the [`tiered`] space (sled stores
//! documents and records only, about one key per node write); the other prefixes are
//! the base space (sled or a B-tree):
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `N` | node id (12 bytes) | version (u64 BE) + node document ([`codec`]: binary since layout 3, JSON before; since layout 4 packed with the store's dictionary once it has one, [`codec::packed`]) |
//! | `I` | index id (1) + encoded value tuple + node id | empty |
//! | `K` | index id (1) + encoded value tuple | number of nodes with that tuple (u64 BE) |
//! | `K` | index id (1) + `0xFF` | number of *irregular* nodes of that index |
//! | `M` | `schema`, `nodes`, `event_seq`, `gen` | layout version, node count, last event sequence id, write generation |
//! | `M` | `dict` + kind (1 byte: node 0, event 1) + id (u32 BE) | the store's node count or last event sequence when it was stored (u64 BE) + a zstd dictionary ([`codec::packed`]) |
//! | `E` | sequence id (u64 BE) | event ([`codec::decode_event`]; JSON before; packed like node documents) |
//! | `S` | subscriber id | subscriber JSON |
//! | `C` | counter name | u64 BE |
//! | `U` / `u` | user id / `n`+username, `e`+e-mail | user JSON / user id |
//! | `G` / `g` | group id / name | group JSON / group id |
//! | `T` | token id | token JSON |
//! | `V` | encoded namespace + key | value |
//! | `Y` | telemetry event id (12 bytes) | telemetry event JSON |
//! | `y` | `ts` (8 bytes, time order) + event id | empty (the telemetry time index) |
//! | `Q` | name length (u32 BE) + queue name + position (u64 BE) | queued value |
//!
//! [`Store::export_records`] walks one prefix per section in key order (the cursor
//! is the last key returned); [`Store::import_records`] computes the writes of a
//! whole batch of records under the writer lock, with the same index and counter
//! maintenance as the ordinary writes, and applies them as one atomic batch.
//!
//! Values in index keys use an order-preserving encoding ([`keys`](crate)): a type
//! tag in the query language's type order, then big-endian numbers (sign-flipped),
//! escaped zero-terminated strings, 12-byte ids, microsecond dates. So an index scan
//! in key order is a scan in value order, then id order; equality is a prefix scan
//! whose ids come out sorted; a range predicate is one key range.
//!
//! A node's document, its index entries and the counters it changes are written in
//! **one atomic batch** (the base batch and the in-memory index update happen under
//! one exclusive view lock that every read holds shared): a reader never sees a node
//! without its index entries or an index entry without its node. The metadata holds
//! the layout version and a write generation; opening a store written by a newer
//! layout fails with a clear error, an older one is migrated (1 → 2: the on-disk
//! index keys are dropped; 2 → 3: JSON documents are rewritten in the binary
//! encoding, in batches, after the indexes are loaded; 3 → 4 rewrites nothing:
//! layout 4 is written with the store's first packing dictionary, and records are
//! packed as they are written from then on; a new store starts at 3). `close` writes an index snapshot tagged with the
//! generation; `open` loads it when current and otherwise rebuilds the indexes from
//! the documents.
//!
//! Telemetry events are immutable documents keyed by id (`Y`, written in posting
//! order, so key order is id order) with one time-index entry each (`y`, written in
//! the same batch as the document; `ts` is the client's, unrelated to the id). What
//! answers each telemetry call:
//!
//! - `find_telemetry` / `scan_telemetry` without `since`/`until`: a walk of the `Y`
//!   documents in key order, each checked against the exact-match terms;
//! - with `since` and/or `until`: the `y` range of those bounds gives the candidate
//!   ids, sorted back into id order, whose documents are loaded and checked (`ts`
//!   again, then the terms); the anomaly report's recent window reads only its range;
//! - `trim_telemetry`: the `y` range below the cut-off, deleted with the documents in
//!   batches of 10,000.
//!
//! The declared indexes are in [`INDEXES`]; [`IndexedStore::explain`] tells which
//! one answers a query, [`IndexedStore::verify`] proves that indexes and counters
//! agree with the documents, and [`IndexedStore::rebuild_indexes`] recomputes them.

pub mod codec;
mod commit;
mod engine;
mod error;
mod index;
mod keys;
pub mod kv;
mod planner;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod tiered;
mod verify;

/// An id whose last four bytes are `n` (tests that need ordered ids).
#[cfg(test)]
pub(crate) fn small_id(n: u32) -> ObjectId {
    let mut b = [0u8; 12];
    b[8..].copy_from_slice(&n.to_be_bytes());
    ObjectId::from_bytes(b)
}

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use kernelci_core::auth::{User, UserGroup};
use kernelci_core::events::{Event, EventQuery, NewEvent};
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;
use kernelci_core::node::Node;
use kernelci_core::query::Query;
use kernelci_core::state::ChildrenSummary;
use kernelci_core::store::{
    ExportCursor, FieldSet, ImportStats, Page, Record, Section, Store, SubscriberState,
    TokenRecord, Version, Versioned,
};
use kernelci_core::telemetry::{TelemetryEvent, TelemetryQuery};
use kernelci_core::time::Timestamp;
use kernelci_core::Error as CoreError;
use kernelci_core::Result;

pub use codec::packed::PackStats;
pub use commit::{Durability, DEFAULT_COMMIT_DELAY};
pub use engine::SCHEMA_VERSION;
pub use error::StoreError;
pub use index::{IndexDef, INDEXES};
pub use kv::{MemKv, SledKv};
pub use planner::{OrderBy, Plan, TotalBy};
pub use tiered::Tiered;
pub use verify::VerifyReport;

use commit::{DataSync, GroupCommit};
use engine::{versioned, Engine};
use kv::Kv;

/// Settings of a [`SledStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledConfig {
    /// When writes are on disk (default: when the write returns).
    pub durability: Durability,
    /// sled's page cache, in bytes (default 256 MiB).
    pub cache_bytes: u64,
    /// How long a durable flush that finds several writers waiting first waits for
    /// more to join it (default [`DEFAULT_COMMIT_DELAY`]; zero: never).
    pub commit_delay: std::time::Duration,
    /// After each flush, `fsync` sled's new blob files and `fdatasync` its log, so
    /// an acknowledged write survives a power loss (default true). False leaves
    /// sled's own `sync_file_range`: it survives a killed process, not a power loss
    /// or a kernel crash.
    pub sync_data: bool,
    /// The zstd level sled compresses a **new** store's log with (1–22; 0: no
    /// compression; default [`DEFAULT_COMPRESSION_LEVEL`]). A store keeps the choice
    /// it was created with: this setting never changes an existing one.
    pub compression_level: u8,
}

/// The zstd level of a new store's log: none. Node documents and events are packed
/// one by one with dictionaries trained on the store's own records
/// ([`codec::packed`]), which keeps the disk within about 15 % of what sled's
/// compression gave, without its cost on every write (docs/PERFORMANCE.md,
/// "Eighth change").
pub const DEFAULT_COMPRESSION_LEVEL: u8 = 0;

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Durable,
            cache_bytes: 256 << 20,
            commit_delay: DEFAULT_COMMIT_DELAY,
            sync_data: true,
            compression_level: DEFAULT_COMPRESSION_LEVEL,
        }
    }
}

/// The store engine over an ordered key space; use [`MemoryStore`] or [`SledStore`].
pub struct IndexedStore<K: kv::Kv> {
    engine: Arc<Engine<K>>,
    commit: Option<GroupCommit>,
    /// The directory of a durable store (where the index snapshot goes).
    dir: Option<std::path::PathBuf>,
    /// Whether sled compresses the store's log (a durable store created so).
    compressed: bool,
}

/// The volatile store: everything in memory, nothing survives the process. Writes
/// are visible when they return.
pub type MemoryStore = IndexedStore<Tiered<MemKv>>;

/// The durable store on sled: with the default [`Durability::Durable`], every write
/// method returns once its write is on disk.
pub type SledStore = IndexedStore<Tiered<SledKv>>;

impl MemoryStore {
    /// An empty memory store.
    pub fn new() -> Self {
        let engine = Engine::new(Tiered::empty(MemKv::default()));
        // A fresh memory space cannot fail its schema check.
        let _ = engine.open_checks();
        Self {
            engine: Arc::new(engine),
            commit: None,
            dir: None,
            compressed: false,
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// The indexes come from the snapshot written by the last [`SledStore::close`]
    /// when nothing was written since; otherwise (a crash, or a store dropped without
    /// `close`) they are rebuilt from the documents, which takes longer on a large
    /// store but is never wrong.
    pub fn open(path: &Path, config: SledConfig) -> std::result::Result<Self, StoreError> {
        let (config_sled, compressed) = sled_settings(path, config.compression_level)?;
        let config_sled = config_sled
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::LowSpace)
            // Our group commit (or relaxed flusher) flushes; sled's own periodic
            // flusher thread would also keep the directory locked after `close`.
            .flush_every_ms(None);
        // sled releases its directory lock from background threads shortly after the
        // last handle is dropped: a reopen in the same process (a restart) waits for
        // it, up to a few seconds, instead of failing.
        let started = std::time::Instant::now();
        let db = loop {
            match config_sled.open() {
                Ok(db) => break db,
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < std::time::Duration::from_secs(5) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(e.into()),
            }
        };
        migrate(&db)?;
        // Writes wait in the space's pending overlay until the group committer's
        // next flush hands them to sled as one batch (see `kv::pending`).
        let kv = SledKv::deferred(db)?;
        let engine = Engine::new(Tiered::new(kv.clone())?);
        let layout = engine.open_checks()?;
        if !engine.kv.load_snapshot(path)? {
            engine.rebuild_indexes()?;
        }
        engine.upgrade(layout)?;
        engine.train_if_due()?;
        engine.kv.flush()?;
        let sync = if config.sync_data {
            Some(DataSync::open(path)?)
        } else {
            None
        };
        Ok(Self {
            engine: Arc::new(engine),
            commit: Some(GroupCommit::start(
                kv,
                config.durability,
                config.commit_delay,
                sync,
            )),
            dir: Some(path.to_path_buf()),
            compressed,
        })
    }

    /// Flushes, writes the index snapshot (so the next open is fast) and stops the
    /// background flusher.
    pub fn close(self) -> std::result::Result<(), StoreError> {
        if let Some(c) = &self.commit {
            c.stop();
        }
        self.engine.kv.flush()?;
        if let Some(dir) = &self.dir {
            self.engine.kv.write_snapshot(dir)?;
        }
        Ok(())
    }
}

/// sled's settings for the space in `path`: compressed with zstd at `level` when the
/// store is new (`level` 0: not compressed), as it was created otherwise.
///
/// sled refuses to open a space with a compression setting other than the one it was
/// created with, and records that setting in the `conf` file it writes next to its
/// log (a `use_compression: true|false` line among others, then a checksum). A
/// directory without that file is a new store. Tools and tests that open a store's
/// sled space directly use this too.
pub fn sled_config(path: &Path, level: u8) -> std::result::Result<sled::Config, StoreError> {
    Ok(sled_settings(path, level)?.0)
}

/// [`sled_config`], and whether the space is compressed.
fn sled_settings(path: &Path, level: u8) -> std::result::Result<(sled::Config, bool), StoreError> {
    let conf = path.join("conf");
    let compressed = match std::fs::read(&conf) {
        // Text lines, then a 4-byte checksum that sled verifies on open.
        Ok(bytes) => String::from_utf8_lossy(&bytes)
            .lines()
            .find_map(|l| l.strip_prefix("use_compression:"))
            .map(|v| v.trim() == "true")
            .ok_or_else(|| {
                StoreError::Settings(format!("{} has no use_compression line", conf.display()))
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => level > 0,
        Err(e) => return Err(StoreError::Settings(format!("{}: {e}", conf.display()))),
    };
    let config = sled::Config::new()
        .path(path)
        .use_compression(compressed)
        .compression_factor(i32::from(level.clamp(1, 22)));
    Ok((config, compressed))
}

impl SledStore {
    /// Whether this store's log is compressed (decided when it was created; see
    /// [`SledConfig::compression_level`]).
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }
}

impl<K: kv::Kv> IndexedStore<K> {
    /// How the node documents and events written by this process were packed
    /// ([`codec::packed`]): `(nodes, events)`.
    pub fn packing(&self) -> (PackStats, PackStats) {
        self.engine.pack_stats()
    }
}

impl<B: kv::Kv> IndexedStore<Tiered<B>> {
    /// Per index: the tuples and entries it holds in memory (for sizing and
    /// benchmarks).
    pub fn index_stats(&self) -> std::result::Result<Vec<tiered::IndexStats>, StoreError> {
        self.engine.kv.index_stats()
    }
}

/// The records of one kind in a store's base space (see [`SledStore::record_sizes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSize {
    /// What the records are (`nodes`, `events`, ...).
    pub kind: &'static str,
    /// How many.
    pub count: u64,
    /// Their key and value bytes.
    pub bytes: u64,
}

impl SledStore {
    /// The live records of the store by kind, with their bytes (a full scan: for
    /// sizing and benchmarks). What the directory holds beyond their sum is sled's
    /// own layout and the garbage its log has not reclaimed yet.
    pub fn record_sizes(&self) -> std::result::Result<Vec<RecordSize>, StoreError> {
        let kind = |prefix: u8| match prefix {
            keys::NODE => "nodes",
            keys::EVENT => "events",
            keys::TELEMETRY | keys::TELEMETRY_TS => "telemetry",
            keys::USER | keys::USER_KEY | keys::GROUP | keys::GROUP_NAME | keys::TOKEN => {
                "users, groups, tokens"
            }
            keys::SUBSCRIBER | keys::QUEUE => "subscriptions",
            _ => "other",
        };
        let mut out: Vec<RecordSize> = Vec::new();
        for item in self.engine.kv.base.scan(&[], &[0xFF; 4], false) {
            let (k, v) = item?;
            let name = kind(k.as_ref().first().copied().unwrap_or(0));
            let bytes = (k.as_ref().len() + v.as_ref().len()) as u64;
            match out.iter_mut().find(|r| r.kind == name) {
                Some(r) => {
                    r.count += 1;
                    r.bytes += bytes;
                }
                None => out.push(RecordSize {
                    kind: name,
                    count: 1,
                    bytes,
                }),
            }
        }
        Ok(out)
    }
}

/// Layout migrations, on the raw sled tree before the engine opens it.
///
/// - 1 → 2: index entries and counters moved from sled keys into memory (see
///   [`tiered`]); the old `I` and `K` keys are deleted.
fn migrate(db: &sled::Db) -> std::result::Result<(), StoreError> {
    let schema_key = b"Mschema";
    let version = match db.get(schema_key)? {
        Some(v) => keys::read_u64(&v)
            .ok_or_else(|| StoreError::corrupt("schema version", schema_key, "short value"))?,
        None => return Ok(()),
    };
    if version == 1 {
        // In chunks (the migration is idempotent: a crash midway repeats it).
        for prefix in [keys::INDEX, keys::COUNT] {
            loop {
                let doomed: Vec<sled::IVec> = db
                    .range(vec![prefix]..keys::prefix_end(&[prefix]))
                    .keys()
                    .take(10_000)
                    .collect::<std::result::Result<_, _>>()?;
                if doomed.is_empty() {
                    break;
                }
                let mut batch = sled::Batch::default();
                for k in doomed {
                    batch.remove(k);
                }
                db.apply_batch(batch)?;
            }
        }
        db.insert(schema_key, &2u64.to_be_bytes())?;
        db.flush()?;
    }
    Ok(())
}

impl<K: Kv> IndexedStore<K> {
    async fn durable(&self) -> Result<()> {
        match &self.commit {
            Some(c) => Ok(c.committed().await?),
            None => Ok(()),
        }
    }

    /// How `query` is answered: which index drives, what is intersected, what is
    /// checked on documents, how the total is computed.
    pub fn explain(&self, query: &Query) -> Result<Plan> {
        let _view = self.engine.kv.read_view()?;
        self.engine.explain(query)
    }

    /// Checks that every index entry and counter agrees with the documents (and
    /// that every document decodes). A clean report has no problems.
    pub fn verify(&self) -> std::result::Result<VerifyReport, StoreError> {
        let _view = self.engine.kv.read_view()?;
        self.engine.verify()
    }

    /// Recomputes every index entry and counter from the documents.
    pub async fn rebuild_indexes(&self) -> Result<()> {
        self.engine.rebuild_indexes()?;
        self.durable().await
    }
}

#[async_trait]
impl<K: Kv> Store for IndexedStore<K> {
    async fn insert_node(&self, node: &Node) -> Result<()> {
        self.engine.insert_nodes(std::slice::from_ref(node))?;
        self.durable().await
    }

    async fn insert_nodes(&self, nodes: &[Node]) -> Result<()> {
        self.engine.insert_nodes(nodes)?;
        self.durable().await
    }

    async fn insert_node_with_event(&self, node: &Node, event: NewEvent) -> Result<Result<Event>> {
        let (_, logged) = self.engine.write_nodes(&[(node, None)], Some(event))?;
        self.durable().await?;
        Ok(logged.ok_or_else(|| CoreError::Storage("event not logged".into())))
    }

    async fn replace_node_with_event(
        &self,
        node: &Node,
        expected: Version,
        event: NewEvent,
    ) -> Result<(Version, Result<Event>)> {
        let (versions, logged) = self
            .engine
            .write_nodes(&[(node, Some(expected))], Some(event))?;
        self.durable().await?;
        let version = versions
            .first()
            .copied()
            .ok_or_else(|| CoreError::Storage("no version written".into()))?;
        Ok((
            version,
            logged.ok_or_else(|| CoreError::Storage("event not logged".into())),
        ))
    }

    async fn write_nodes_with_event(
        &self,
        nodes: &[(&Node, Option<Version>)],
        event: NewEvent,
    ) -> Result<(Vec<Version>, Result<Event>)> {
        let (versions, logged) = self.engine.write_nodes(nodes, Some(event))?;
        self.durable().await?;
        Ok((
            versions,
            logged.ok_or_else(|| CoreError::Storage("event not logged".into())),
        ))
    }

    async fn get_node(&self, id: ObjectId) -> Result<Option<Versioned<Node>>> {
        let _view = self.engine.kv.read_view()?;
        Ok(self.engine.get_node(id)?.map(versioned))
    }

    async fn get_node_json(&self, id: ObjectId) -> Result<Option<Vec<u8>>> {
        let _view = self.engine.kv.read_view()?;
        Ok(self.engine.get_node_json(id)?)
    }

    async fn replace_node(&self, node: &Node, expected: Version) -> Result<Version> {
        let v = self.engine.replace_node(node, expected)?;
        self.durable().await?;
        Ok(v)
    }

    async fn find_nodes(&self, query: &Query) -> Result<Vec<Node>> {
        let _view = self.engine.kv.read_view()?;
        self.engine.find(query)
    }

    async fn count_nodes(&self, query: &Query) -> Result<u64> {
        let _view = self.engine.kv.read_view()?;
        self.engine.count(query)
    }

    async fn count_nodes_from_counters(&self, query: &Query) -> Result<Option<u64>> {
        let _view = self.engine.kv.read_view()?;
        self.engine.count_from_counters(query)
    }

    async fn find_page(&self, query: &Query) -> Result<Page<Node>> {
        let _view = self.engine.kv.read_view()?;
        let (items, total) = self.engine.page(query)?;
        Ok(Page { items, total })
    }

    async fn find_nodes_json(&self, query: &Query) -> Result<Vec<Vec<u8>>> {
        let _view = self.engine.kv.read_view()?;
        self.engine.find_json(query)
    }

    async fn find_page_json(&self, query: &Query) -> Result<Page<Vec<u8>>> {
        let _view = self.engine.kv.read_view()?;
        let (items, total) = self.engine.page_json(query)?;
        Ok(Page { items, total })
    }

    async fn count_all_nodes(&self) -> Result<u64> {
        Ok(self.engine.count_all()?)
    }

    async fn set_field_many(&self, ids: &[ObjectId], set: FieldSet, now: Timestamp) -> Result<u64> {
        let n = self.engine.set_field_many(ids, set, now)?;
        self.durable().await?;
        Ok(n)
    }

    async fn children(&self, parent: ObjectId) -> Result<Vec<Node>> {
        let _view = self.engine.kv.read_view()?;
        self.engine.children(parent)
    }

    async fn descendants_summary(&self, id: ObjectId) -> Result<ChildrenSummary> {
        let _view = self.engine.kv.read_view()?;
        self.engine.descendants_summary(id)
    }

    async fn delete_nodes_created_before(
        &self,
        before: Timestamp,
        keep_kinds: &[&str],
        max: usize,
    ) -> Result<u64> {
        let n = self
            .engine
            .delete_nodes_created_before(before, keep_kinds, max)?;
        self.durable().await?;
        Ok(n)
    }

    async fn append_event(&self, event: NewEvent) -> Result<Event> {
        let e = self.engine.append_event(event)?;
        self.durable().await?;
        Ok(e)
    }

    async fn events_after(
        &self,
        after: u64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.engine.events_after(after, channel, limit)
    }

    async fn find_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        self.engine.find_events(query)
    }

    async fn last_event_sequence(&self) -> Result<u64> {
        Ok(self.engine.last_event_sequence()?)
    }

    async fn trim_events(&self, before: Timestamp) -> Result<u64> {
        let n = self.engine.trim_events(before)?;
        self.durable().await?;
        Ok(n)
    }

    async fn get_subscriber(&self, id: &str) -> Result<Option<SubscriberState>> {
        Ok(self
            .engine
            .get_json("subscriber", &keys::key(keys::SUBSCRIBER, &[id.as_bytes()]))?)
    }

    async fn put_subscriber(&self, state: &SubscriberState) -> Result<()> {
        self.engine.put_subscriber(state)?;
        self.durable().await
    }

    async fn advance_subscriber(&self, id: &str, sequence_id: u64, now: Timestamp) -> Result<()> {
        self.engine.advance_subscriber(id, sequence_id, now)?;
        self.durable().await
    }

    async fn delete_subscriber(&self, id: &str) -> Result<bool> {
        let existed = self
            .engine
            .delete_key(keys::key(keys::SUBSCRIBER, &[id.as_bytes()]))?;
        self.durable().await?;
        Ok(existed)
    }

    async fn list_subscribers(&self) -> Result<Vec<SubscriberState>> {
        self.engine.list("subscriber", keys::SUBSCRIBER)
    }

    async fn next_counter(&self, name: &str) -> Result<u64> {
        let n = self.engine.next_counter(name)?;
        self.durable().await?;
        Ok(n)
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        self.engine.insert_user(user)?;
        self.durable().await
    }

    async fn get_user(&self, id: ObjectId) -> Result<Option<User>> {
        Ok(self.engine.get_json("user", &Engine::<K>::user_key(id))?)
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.engine.user_by_name(username)
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.engine.user_by_email(email)
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        self.engine.update_user(user)?;
        self.durable().await
    }

    async fn replace_user(&self, expected: &User, user: &User) -> Result<bool> {
        let written = self.engine.write_user(user, Some(expected))?;
        if written {
            self.durable().await?;
        }
        Ok(written)
    }

    async fn delete_user(&self, id: ObjectId) -> Result<bool> {
        let existed = self.engine.delete_user(id)?;
        self.durable().await?;
        Ok(existed)
    }

    async fn find_users(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<User>> {
        self.engine.find_users(filter, limit, offset)
    }

    async fn insert_group(&self, group: &UserGroup) -> Result<()> {
        self.engine.insert_group(group)?;
        self.durable().await
    }

    async fn get_group(&self, id: ObjectId) -> Result<Option<UserGroup>> {
        Ok(self.engine.get_json("group", &Engine::<K>::group_key(id))?)
    }

    async fn get_group_by_name(&self, name: &str) -> Result<Option<UserGroup>> {
        self.engine.group_by_name(name)
    }

    async fn delete_group(&self, id: ObjectId) -> Result<bool> {
        let existed = self.engine.delete_group(id)?;
        self.durable().await?;
        Ok(existed)
    }

    async fn find_groups(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<UserGroup>> {
        self.engine.find_groups(filter, limit, offset)
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        self.engine.put_token(token)?;
        self.durable().await
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        Ok(self
            .engine
            .get_json("token", &keys::key(keys::TOKEN, &[id.as_bytes()]))?)
    }

    async fn consume_token(&self, id: &str, now: Timestamp) -> Result<Option<TokenRecord>> {
        let t = self.engine.consume_token(id, now)?;
        self.durable().await?;
        Ok(t)
    }

    async fn insert_telemetry(&self, events: &[TelemetryEvent]) -> Result<()> {
        self.engine.insert_telemetry(events)?;
        self.durable().await
    }

    async fn find_telemetry(&self, query: &TelemetryQuery) -> Result<Page<TelemetryEvent>> {
        self.engine.find_telemetry(query)
    }

    async fn scan_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        filter: &ExactFilter,
    ) -> Result<Vec<TelemetryEvent>> {
        self.engine.scan_telemetry(since, until, filter)
    }

    async fn trim_telemetry(&self, before: Timestamp) -> Result<u64> {
        let n = self.engine.trim_telemetry(before)?;
        self.durable().await?;
        Ok(n)
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        self.engine.kv_get(namespace, key)
    }

    async fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.engine.kv_set(namespace, key, value)?;
        self.durable().await
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool> {
        let existed = self
            .engine
            .delete_key(Engine::<K>::kv_key(namespace, key))?;
        self.durable().await?;
        Ok(existed)
    }

    async fn queue_push(&self, name: &str, value: &str) -> Result<()> {
        self.engine.queue_push(name, value)?;
        self.durable().await
    }

    async fn queue_pop(&self, name: &str) -> Result<Option<String>> {
        let v = self.engine.queue_pop(name)?;
        if v.is_some() {
            self.durable().await?;
        }
        Ok(v)
    }

    async fn export_records(
        &self,
        section: Section,
        after: Option<&ExportCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<ExportCursor>)> {
        let _view = self.engine.kv.read_view()?;
        let (records, next) =
            self.engine
                .export_records(section, after.map(ExportCursor::as_bytes), limit)?;
        Ok((records, next.map(ExportCursor::from_bytes)))
    }

    async fn count_records(&self, section: Section) -> Result<u64> {
        let _view = self.engine.kv.read_view()?;
        self.engine.count_records(section)
    }

    async fn import_records(&self, records: &[Record]) -> Result<ImportStats> {
        let stats = self.engine.import_records(records)?;
        self.durable().await?;
        Ok(stats)
    }

    async fn flush(&self) -> Result<()> {
        Ok(self.engine.kv.flush()?)
    }
}
