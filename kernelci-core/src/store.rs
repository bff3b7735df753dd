//! The storage trait every backend implements.
//!
//! [`Store`] is object-safe and used as `Arc<dyn Store>`. It knows nothing of HTTP
//! and applies no business rule: the rules live in [`crate::state`],
//! [`crate::auth`] and [`crate::query`]; a store persists, indexes and finds.
//!
//! # Guarantees every implementation gives
//!
//! - **Atomicity**: each method is atomic on its own: a concurrent reader sees a
//!   write whole or not at all (a node never without its index entries, an event
//!   never without its sequence id). Methods over several items say so when they are
//!   not atomic as a whole.
//! - **Durability**: for a durable backend, when a write method returns `Ok` the
//!   write survives a crash (process kill or power loss) unless the backend was
//!   explicitly configured to relax this. Volatile backends (in-memory) say so in
//!   their own docs.
//! - **Order**: queries without a sort return nodes by ascending id (creation
//!   order), so paging with `limit`/`offset` is stable.
//! - **Equivalence**: every backend returns the same results for the same calls;
//!   a node matches a query exactly when [`crate::query::matches()`] says so.
//!
//! # Export and import
//!
//! [`Store::export_records`] walks the whole content, one [`Section`] at a time, in
//! pages of backend-independent [`Record`]s with a resume [`ExportCursor`];
//! [`Store::import_records`] writes such records into any backend, idempotently by
//! each record's key. Together they copy a store to another backend
//! (`kernelci-server copy`) and are the basis of backups.
//!
//! Errors are [`Error`]: `NotFound` and `Conflict` as documented per method,
//! `Storage` for I/O failures and corrupt data (never a panic).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::auth::{User, UserGroup};
use crate::error::{Error, Result};
use crate::events::{Event, EventQuery, NewEvent};
use crate::exact::ExactFilter;
use crate::id::ObjectId;
use crate::node::Node;
use crate::query::Query;
use crate::state::ChildrenSummary;
use crate::telemetry::{TelemetryEvent, TelemetryQuery};
use crate::time::Timestamp;

/// A stored value's version: incremented by every write of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub u64);

/// A value with the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub version: Version,
}

/// One page of results and the number of all matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of the page.
    pub items: Vec<T>,
    /// Number of matching items, ignoring limit and offset.
    pub total: u64,
}

/// A durable pub/sub subscriber (MODELS.md §9, `SubscriberState`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriberState {
    /// Client-chosen unique id.
    pub subscriber_id: String,
    /// Channel.
    pub channel: String,
    /// Username of the subscriber.
    pub user: String,
    /// Receives every event, not only the user's own and ownerless ones.
    pub promiscuous: bool,
    /// Sequence id of the last event delivered (only ever increases).
    pub last_event_id: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last listen.
    pub last_poll: Option<Timestamp>,
}

/// A pub/sub subscription registered in a store that several servers share
/// (see [`Store::is_shared`]): any of them answers its listens, from the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Subscription id (from the `subscription` counter).
    pub id: u64,
    /// Channel.
    pub channel: String,
    /// Username of the subscriber.
    pub user: String,
    /// Receives every message, not only the user's own and ownerless ones.
    pub promiscuous: bool,
    /// The durable subscriber id, for durable subscriptions.
    pub subscriber_id: Option<String>,
    /// Creation time.
    pub created: Timestamp,
    /// Last listen, `None` until the first.
    pub last_poll: Option<Timestamp>,
    /// Sequence id of the last event delivered or passed over (the next listen
    /// reads the log after it).
    pub position: u64,
}

/// What a [`TokenRecord`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenPurpose {
    /// An invitation to set a password.
    Invite,
    /// A password reset.
    Reset,
}

/// A single-use token the server issued (invites, password resets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Opaque token id (for example the hash of the token text).
    pub id: String,
    /// Purpose.
    pub purpose: TokenPurpose,
    /// The user it concerns.
    pub user_id: ObjectId,
    /// Expiry.
    pub expires: Timestamp,
    /// Set once consumed.
    pub used: bool,
}

/// The parts of a store's content that [`Store::export_records`] walks, one at a
/// time, each in its own stable order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// Nodes with their versions, by ascending id.
    Nodes,
    /// Events with their sequence ids, by ascending sequence id.
    Events,
    /// Durable subscribers, by id (byte order).
    Subscribers,
    /// Users, by id.
    Users,
    /// Groups, by id.
    Groups,
    /// Single-use tokens, by id (byte order).
    Tokens,
    /// Key/value pairs, by namespace then key.
    Kv,
    /// Telemetry events, by id.
    Telemetry,
    /// Queue items, queue by queue (in an order of names of the backend's choosing),
    /// each queue in FIFO order.
    Queues,
    /// The event sequence high-water mark ([`Record::EventSequence`], first), then
    /// the [`Store::next_counter`] counters by name.
    Counters,
}

impl Section {
    /// Every section, in the order a copy walks them (groups before the users that
    /// belong to them; the sequence mark after the events).
    pub const ALL: [Section; 10] = [
        Section::Nodes,
        Section::Events,
        Section::Subscribers,
        Section::Groups,
        Section::Users,
        Section::Tokens,
        Section::Kv,
        Section::Telemetry,
        Section::Queues,
        Section::Counters,
    ];

    /// The section named `name` ([`Section::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The section's name in messages (`nodes`, `events`...).
    pub fn name(self) -> &'static str {
        match self {
            Section::Nodes => "nodes",
            Section::Events => "events",
            Section::Subscribers => "subscribers",
            Section::Users => "users",
            Section::Groups => "groups",
            Section::Tokens => "tokens",
            Section::Kv => "kv",
            Section::Telemetry => "telemetry",
            Section::Queues => "queues",
            Section::Counters => "counters",
        }
    }
}

impl std::fmt::Display for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// One stored record as [`Store::export_records`] returns it and
/// [`Store::import_records`] takes it: everything a store holds, in a
/// backend-independent form (copies between backends, backups). Its serde form is
/// `{"type": "node", "record": {...}}` (JSON round trips are lossless).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "record", rename_all = "snake_case")]
pub enum Record {
    /// A node and its version (kept by the import).
    Node {
        /// The node.
        node: Node,
        /// Its version.
        version: Version,
    },
    /// An event with its sequence id (kept by the import).
    Event(Event),
    /// A durable subscriber and its position.
    Subscriber(SubscriberState),
    /// A user.
    User(User),
    /// A group.
    Group(UserGroup),
    /// A single-use token.
    Token(TokenRecord),
    /// A key/value pair.
    Kv {
        /// Namespace.
        namespace: String,
        /// Key.
        key: String,
        /// Value.
        value: String,
    },
    /// A telemetry event.
    Telemetry(TelemetryEvent),
    /// One item of a queue.
    QueueItem {
        /// Queue name.
        name: String,
        /// Its place in the queue at export time: 0 for the oldest item (the next
        /// pop), 1 for the one after it...
        index: u64,
        /// The queued value.
        value: String,
    },
    /// A [`Store::next_counter`] counter and the last value it returned.
    Counter {
        /// Counter name.
        name: String,
        /// Last value returned (the next call returns one more).
        value: u64,
    },
    /// The event sequence high-water mark: [`Store::last_event_sequence`], which may
    /// be above every stored event's sequence id (trimmed events).
    EventSequence(u64),
}

impl Record {
    /// The section this record belongs to.
    pub fn section(&self) -> Section {
        match self {
            Record::Node { .. } => Section::Nodes,
            Record::Event(_) => Section::Events,
            Record::Subscriber(_) => Section::Subscribers,
            Record::User(_) => Section::Users,
            Record::Group(_) => Section::Groups,
            Record::Token(_) => Section::Tokens,
            Record::Kv { .. } => Section::Kv,
            Record::Telemetry(_) => Section::Telemetry,
            Record::QueueItem { .. } => Section::Queues,
            Record::Counter { .. } | Record::EventSequence(_) => Section::Counters,
        }
    }
}

/// Where an export stopped: pass it back to [`Store::export_records`] to get the
/// records after it. Opaque, and meaningful only to the store that returned it, for
/// the same section. Key-based, not offset-based (except in the naive model), so
/// records written or deleted meanwhile neither shift nor repeat the walk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExportCursor(Vec<u8>);

impl ExportCursor {
    /// A cursor from its bytes (for backends).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The cursor's bytes (for backends).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What [`Store::import_records`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportStats {
    /// Records written (a counter or the sequence mark: raised).
    pub imported: u64,
    /// Records already there (same key), left as they were (a counter or the
    /// sequence mark: already at least as high).
    pub skipped_existing: u64,
}

impl std::ops::AddAssign for ImportStats {
    fn add_assign(&mut self, rhs: Self) {
        self.imported += rhs.imported;
        self.skipped_existing += rhs.skipped_existing;
    }
}

/// The bulk field updates `PUT /batch/nodeset` may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldSet {
    /// `processed_by_kcidb_bridge` := the value.
    ProcessedByKcidbBridge(bool),
}

/// A node as the API's JSON: what `serde_json` writes for it (its 23 keys in
/// declaration order); the form the `*_json` methods of [`Store`] return.
pub fn node_json(node: &Node) -> Result<Vec<u8>> {
    serde_json::to_vec(node).map_err(|e| Error::Storage(format!("node {} as JSON: {e}", node.id)))
}

/// Persistent storage of nodes, events, subscribers, users, groups, tokens, telemetry,
/// KV pairs and queues (see the module docs for the guarantees).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- nodes -------------------------------------------------------------------

    /// Inserts a new node (version 1). `Conflict` if the id exists. Atomic, durable.
    async fn insert_node(&self, node: &Node) -> Result<()>;

    /// Inserts many new nodes (bulk loads). All-or-nothing: on `Conflict` (an id that
    /// exists or repeats) nothing is inserted. Durable when it returns.
    async fn insert_nodes(&self, nodes: &[Node]) -> Result<()>;

    /// The node with this id and its version, or `None`.
    async fn get_node(&self, id: ObjectId) -> Result<Option<Versioned<Node>>>;

    /// The node with this id as the JSON the API answers with (what `serde_json`
    /// writes for the [`Node`]: its 23 keys in declaration order), or `None`. This
    /// default serialises [`Store::get_node`]'s node; a backend whose stored form
    /// can be written as JSON without building a `Node` overrides it.
    async fn get_node_json(&self, id: ObjectId) -> Result<Option<Vec<u8>>> {
        let Some(v) = self.get_node(id).await? else {
            return Ok(None);
        };
        node_json(&v.value).map(Some)
    }

    /// Replaces the stored node with the same id, if its version is still `expected`
    /// (compare-and-swap). Returns the new version. `NotFound` if absent, `Conflict`
    /// if the version moved on (the caller re-reads and re-applies its rules).
    /// Atomic, durable.
    async fn replace_node(&self, node: &Node, expected: Version) -> Result<Version>;

    /// [`Store::insert_node`], then [`Store::append_event`] of `event`, as one write
    /// where the backend can make it one: then a crash never leaves the node without
    /// its event. The outer error is the node write's (nothing was written); the
    /// inner result is the event's, once the node is stored (an `Err` there never
    /// means the node write failed, so a caller must not report it as one). This
    /// default makes two writes; a backend that can do better overrides it.
    async fn insert_node_with_event(&self, node: &Node, event: NewEvent) -> Result<Result<Event>> {
        self.insert_node(node).await?;
        Ok(self.append_event(event).await)
    }

    /// [`Store::replace_node`], then [`Store::append_event`] of `event`, as one
    /// write where the backend can make it one (see
    /// [`Store::insert_node_with_event`] for the two results). Returns the new
    /// version and the event's result.
    async fn replace_node_with_event(
        &self,
        node: &Node,
        expected: Version,
        event: NewEvent,
    ) -> Result<(Version, Result<Event>)> {
        let version = self.replace_node(node, expected).await?;
        Ok((version, self.append_event(event).await))
    }

    /// Inserts (`None`) or replaces (compare-and-swap on `Some(version)`) each node
    /// of a submission (a hierarchy), then appends `event`, as one write where the
    /// backend can make it one: then either every node and the event are stored, or,
    /// on a `Conflict` (a new id that exists or repeats, a version that moved on) or
    /// `NotFound` (a replaced node that is gone), nothing is. Returns the new
    /// versions in order and the event's result (see
    /// [`Store::insert_node_with_event`]). This default writes one node after the
    /// other (an error midway leaves the earlier ones written) and then the event;
    /// a backend that can do better overrides it.
    async fn write_nodes_with_event(
        &self,
        nodes: &[(&Node, Option<Version>)],
        event: NewEvent,
    ) -> Result<(Vec<Version>, Result<Event>)> {
        let mut versions = Vec::with_capacity(nodes.len());
        for (node, expected) in nodes {
            versions.push(match expected {
                Some(v) => self.replace_node(node, *v).await?,
                None => {
                    self.insert_node(node).await?;
                    Version(1)
                }
            });
        }
        Ok((versions, self.append_event(event).await))
    }

    /// The nodes matching `query`, ordered by its sort (default ascending id), with its
    /// offset and limit applied by the store (never by loading every match).
    async fn find_nodes(&self, query: &Query) -> Result<Vec<Node>>;

    /// The number of nodes matching `query`'s filters (limit and offset ignored).
    async fn count_nodes(&self, query: &Query) -> Result<u64>;

    /// The [`Store::count_nodes`] answer when the store's counters give it without
    /// reading any node or list of ids (no node can match, or one index answers
    /// every filter exactly, or there is no filter), at the cost of a few counter
    /// reads: cheap enough to answer on an async worker thread instead of the
    /// blocking pool. `None` when only [`Store::count_nodes`] can tell (this
    /// default), and for any query whose decision itself would scan (regular
    /// expressions, ranges, `ne`).
    async fn count_nodes_from_counters(&self, query: &Query) -> Result<Option<u64>> {
        let _ = query;
        Ok(None)
    }

    /// One page of [`Store::find_nodes`] with the [`Store::count_nodes`] total, read
    /// from one consistent view where the backend allows it.
    async fn find_page(&self, query: &Query) -> Result<Page<Node>> {
        let items = self.find_nodes(query).await?;
        let total = self.count_nodes(query).await?;
        Ok(Page { items, total })
    }

    /// [`Store::find_nodes`] with each node as the API's JSON (see
    /// [`Store::get_node_json`]). This default serialises the nodes of
    /// [`Store::find_nodes`].
    async fn find_nodes_json(&self, query: &Query) -> Result<Vec<Vec<u8>>> {
        self.find_nodes(query)
            .await?
            .iter()
            .map(node_json)
            .collect()
    }

    /// [`Store::find_page`] with each node as the API's JSON (see
    /// [`Store::get_node_json`]). This default serialises the nodes of
    /// [`Store::find_page`].
    async fn find_page_json(&self, query: &Query) -> Result<Page<Vec<u8>>> {
        let page = self.find_page(query).await?;
        Ok(Page {
            items: page.items.iter().map(node_json).collect::<Result<_>>()?,
            total: page.total,
        })
    }

    /// The number of stored nodes.
    async fn count_all_nodes(&self) -> Result<u64>;

    /// Applies `set` to each existing node of `ids` and sets its `updated` to `now`,
    /// bumping its version. Returns how many nodes were changed; unknown ids are
    /// skipped. Each node's update is atomic; the batch as a whole is not.
    async fn set_field_many(&self, ids: &[ObjectId], set: FieldSet, now: Timestamp) -> Result<u64>;

    /// The direct children of `parent` (nodes whose `parent` is it), by ascending id.
    async fn children(&self, parent: ObjectId) -> Result<Vec<Node>>;

    /// How many descendants (children, grandchildren...) `id` has and how many of
    /// them are `done`, for the time-driven rules. Each node counts once and the walk
    /// terminates even if `parent` links form a cycle (PUT only refuses a node being
    /// its own parent).
    async fn descendants_summary(&self, id: ObjectId) -> Result<ChildrenSummary>;

    /// Deletes up to `max` nodes created before `before` whose kind is not in
    /// `keep_kinds` (the purge keeps checkouts), oldest first. Returns how many were
    /// deleted. Each deletion is atomic; the batch as a whole is not.
    async fn delete_nodes_created_before(
        &self,
        before: Timestamp,
        keep_kinds: &[&str],
        max: usize,
    ) -> Result<u64>;

    // ---- events ------------------------------------------------------------------

    /// Appends an event with the next sequence id (1, 2, 3... shared by all channels,
    /// never reused, also after restarts and trims) and returns it. Atomic, durable.
    async fn append_event(&self, event: NewEvent) -> Result<Event>;

    /// Up to `limit` events with a sequence id greater than `after`, on `channel`
    /// when given, by ascending sequence id.
    async fn events_after(
        &self,
        after: u64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>>;

    /// The events matching `query`, by ascending sequence id, its offset and limit
    /// applied.
    async fn find_events(&self, query: &EventQuery) -> Result<Vec<Event>>;

    /// The sequence id of the last appended event (0 when none ever was).
    async fn last_event_sequence(&self) -> Result<u64>;

    /// Deletes events older than `before`. Returns how many.
    async fn trim_events(&self, before: Timestamp) -> Result<u64>;

    // ---- durable subscribers ------------------------------------------------------

    /// The subscriber with this id.
    async fn get_subscriber(&self, subscriber_id: &str) -> Result<Option<SubscriberState>>;

    /// Creates or replaces a subscriber. Atomic, durable.
    async fn put_subscriber(&self, state: &SubscriberState) -> Result<()>;

    /// Creates the subscriber `state` unless one with its id exists, and returns the
    /// existing one then (`None`: created). Atomic where several processes share the
    /// store: of two creations of one id, exactly one creates it and the other gets
    /// its record. This default reads, then writes: enough for a store used by one
    /// process, whose broker serialises its subscriptions.
    async fn create_subscriber(&self, state: &SubscriberState) -> Result<Option<SubscriberState>> {
        if let Some(existing) = self.get_subscriber(&state.subscriber_id).await? {
            return Ok(Some(existing));
        }
        self.put_subscriber(state).await?;
        Ok(None)
    }

    /// Records delivery up to `sequence_id` (kept only if greater than the stored
    /// position: "max" semantics) and the poll time. `NotFound` if unknown. Atomic,
    /// durable.
    async fn advance_subscriber(
        &self,
        subscriber_id: &str,
        sequence_id: u64,
        now: Timestamp,
    ) -> Result<()>;

    /// Deletes a subscriber; `false` if it did not exist.
    async fn delete_subscriber(&self, subscriber_id: &str) -> Result<bool>;

    /// Every subscriber, by id.
    async fn list_subscribers(&self) -> Result<Vec<SubscriberState>>;

    // ---- counters ----------------------------------------------------------------

    /// The next value (1, 2, 3...) of the durable counter `name` (subscription ids).
    /// Never returns a value twice, also across restarts.
    async fn next_counter(&self, name: &str) -> Result<u64>;

    // ---- users and groups --------------------------------------------------------

    /// Inserts a user. `Conflict` if the id, username or e-mail is taken.
    async fn insert_user(&self, user: &User) -> Result<()>;

    /// The user with this id.
    async fn get_user(&self, id: ObjectId) -> Result<Option<User>>;

    /// The user with this username.
    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>>;

    /// The user with this e-mail.
    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>>;

    /// Replaces a user. `NotFound` if absent, `Conflict` if the new username or e-mail
    /// belongs to another user.
    async fn update_user(&self, user: &User) -> Result<()>;

    /// Replaces the user `expected.id` with `user` only if the stored record still
    /// equals `expected` (compare-and-swap, atomic against every other user write of
    /// every server sharing the store): `Ok(false)` and nothing written when it
    /// changed meanwhile. `NotFound` if absent, `Conflict` if the new username or
    /// e-mail belongs to another user. Read-modify-write paths use this, so that a
    /// slow step between the read and the write (hashing a password) cannot undo a
    /// concurrent change (a deactivation, a demotion).
    async fn replace_user(&self, expected: &User, user: &User) -> Result<bool>;

    /// Deletes a user; `false` if it did not exist.
    async fn delete_user(&self, id: ObjectId) -> Result<bool>;

    /// Users whose public JSON form ([`User::to_public_json`]) matches `filter`, by
    /// ascending id, one page.
    async fn find_users(&self, filter: &ExactFilter, limit: u64, offset: u64)
        -> Result<Page<User>>;

    /// Inserts a group. `Conflict` if the id or name is taken.
    async fn insert_group(&self, group: &UserGroup) -> Result<()>;

    /// The group with this id.
    async fn get_group(&self, id: ObjectId) -> Result<Option<UserGroup>>;

    /// The group with this name.
    async fn get_group_by_name(&self, name: &str) -> Result<Option<UserGroup>>;

    /// Deletes a group; `false` if it did not exist; `Conflict` (and nothing deleted)
    /// while a user belongs to it.
    async fn delete_group(&self, id: ObjectId) -> Result<bool>;

    /// Groups matching `filter` (on `{id, name}`), by ascending id, one page.
    async fn find_groups(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<UserGroup>>;

    // ---- tokens ------------------------------------------------------------------

    /// Stores a token record (replacing one with the same id).
    async fn put_token(&self, token: &TokenRecord) -> Result<()>;

    /// The token record with this id.
    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>>;

    /// Marks the token used if it exists, is unused and has not expired at `now`, and
    /// returns it; otherwise `None`. Atomic: of two concurrent calls at most one gets
    /// the token.
    async fn consume_token(&self, id: &str, now: Timestamp) -> Result<Option<TokenRecord>>;

    // ---- telemetry ---------------------------------------------------------------

    /// Inserts telemetry events (ids assigned by the caller, increasing in posting
    /// order). On `Conflict` (an id that exists or repeats) nothing is inserted.
    /// Durable when it returns. A store may write a large call in several batches
    /// (sled: 4,096 events each, to bound its memory): readers may then see part of
    /// it while it runs, and a storage failure or a crash part-way keeps the batches
    /// written before it (the reference's `insert_many` is not atomic either).
    async fn insert_telemetry(&self, events: &[TelemetryEvent]) -> Result<()>;

    /// One page of the events `query` matches ([`TelemetryQuery::matches`]), by
    /// ascending id (insertion order), with the number of all matches (limit and
    /// offset ignored).
    async fn find_telemetry(&self, query: &TelemetryQuery) -> Result<Page<TelemetryEvent>>;

    /// Every event with `since <= ts <= until` (each bound optional) whose JSON
    /// document matches `filter`, by ascending id (the input of the stats and anomaly
    /// reports).
    async fn scan_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        filter: &ExactFilter,
    ) -> Result<Vec<TelemetryEvent>>;

    /// Deletes the events whose `ts` is before `before` (the TTL). Returns how many.
    /// Each deletion is atomic; the trim as a whole is not.
    async fn trim_telemetry(&self, before: Timestamp) -> Result<u64>;

    // ---- key/value ---------------------------------------------------------------

    /// The value stored under `namespace`/`key`.
    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>>;

    /// Stores a value. Durable.
    async fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()>;

    /// Deletes a value; `false` if there was none.
    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool>;

    // ---- queues ------------------------------------------------------------------

    /// Appends `value` to the end of the FIFO queue `name` (created on first use;
    /// queues are global, not per user). Atomic, durable.
    async fn queue_push(&self, name: &str, value: &str) -> Result<()>;

    /// Removes and returns the oldest value of the queue `name`, or `None` when it is
    /// empty (or was never used). Atomic: two concurrent pops never return the same
    /// value, and each pushed value is returned by exactly one pop. Durable.
    async fn queue_pop(&self, name: &str) -> Result<Option<String>>;

    // ---- coordination ------------------------------------------------------------

    /// Takes or renews the lease `name` for `holder` until `ttl` from now, and says
    /// whether `holder` has it: true when nobody held it, `holder` already did, or the
    /// previous holder's lease expired. At most one holder at a time among every
    /// process sharing the store (time-driven jobs run on the holder of `jobs`).
    /// A store used by one process only (the embedded backends) grants every call,
    /// which is this default.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        let _ = (name, holder, ttl);
        Ok(true)
    }

    // ---- shared subscriptions -------------------------------------------------------

    /// Whether several server processes may use this store at once (PostgreSQL).
    /// A shared store registers pub/sub subscriptions (the methods below) and wakes
    /// listeners through [`Store::wait_events`]; an embedded store is used by one
    /// process, whose broker keeps subscriptions in memory, and answers `false`,
    /// this default.
    fn is_shared(&self) -> bool {
        false
    }

    /// Registers a subscription (replacing one of the same id). Atomic, durable.
    /// Stores that are not shared refuse with a storage error (this default).
    async fn put_subscription(&self, record: &SubscriptionRecord) -> Result<()> {
        let _ = record;
        Err(not_shared())
    }

    /// The subscription `id`, `None` if it was never registered or was removed.
    async fn get_subscription(&self, id: u64) -> Result<Option<SubscriptionRecord>> {
        let _ = id;
        Err(not_shared())
    }

    /// Removes the subscription `id`; `false` if it did not exist.
    async fn delete_subscription(&self, id: u64) -> Result<bool> {
        let _ = id;
        Err(not_shared())
    }

    /// Every registered subscription, by id.
    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        Err(not_shared())
    }

    /// Moves the subscription `id` from position `from` to `to` and records the poll
    /// time `now`, only if its position is still `from` (compare and set: of two
    /// listens racing on one subscription, from any servers, exactly one moves it).
    /// `Ok(false)` when the position moved meanwhile; `NotFound` when the
    /// subscription is gone.
    async fn advance_subscription(
        &self,
        id: u64,
        from: u64,
        to: u64,
        now: Timestamp,
    ) -> Result<bool> {
        let _ = (id, from, to, now);
        Err(not_shared())
    }

    /// Removes the subscriptions last polled before `before` (never-polled ones are
    /// kept); returns how many.
    async fn delete_idle_subscriptions(&self, before: Timestamp) -> Result<u64> {
        let _ = before;
        Err(not_shared())
    }

    /// Waits until an event with a sequence id above `after` may have been appended,
    /// by any process sharing the store, or until `timeout` passed, and returns the
    /// highest sequence id it heard of (`after` itself on a timeout). It is a wake-up,
    /// not the truth: the caller reads the log. A store that cannot notify returns
    /// `after` at once, this default (its one process wakes its own listeners).
    async fn wait_events(&self, after: u64, timeout: std::time::Duration) -> Result<u64> {
        let _ = timeout;
        Ok(after)
    }

    // ---- export and import ---------------------------------------------------------

    /// Up to `limit` records of `section` after `after` (from the start when `None`),
    /// in the section's stable order (see [`Section`]), and the cursor to continue
    /// from, `None` when the section is exhausted. Memory is bounded by `limit`
    /// (a `limit` of 0 is taken as 1). Each call reads one consistent view where the
    /// backend allows it; a walk over several calls is a consistent snapshot only if
    /// nothing writes the store meanwhile (a copy or a backup runs on a stopped
    /// server). Read-only.
    async fn export_records(
        &self,
        section: Section,
        after: Option<&ExportCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<ExportCursor>)>;

    /// Writes exported records, idempotently: a record whose key is already stored
    /// is skipped and left as it is (nodes, users, groups and telemetry by id,
    /// events by sequence id, subscribers and tokens by id, KV pairs by namespace and
    /// key). Nodes keep their versions and events their sequence ids; the sequence
    /// mark and counters are raised to at least the record's value, never lowered
    /// (so the target never hands out a sequence id or counter value the source
    /// did). A queue item at `index` is appended when the target queue holds exactly
    /// `index` items, skipped when it holds more (copied by an earlier run), and
    /// refused with `Invalid` when it holds fewer (a gap): so a queue is copied into
    /// an empty queue of that name, in order, and an interrupted copy re-run from the
    /// start completes it without duplicates. A user or group whose username,
    /// e-mail or name belongs to another id is a `Conflict`.
    ///
    /// Node index entries and counters are maintained exactly as by
    /// [`Store::insert_nodes`]. Atomic per record at least (the embedded backends and
    /// PostgreSQL write a whole call in one batch or transaction: on an error nothing
    /// of the call is written); durable when it returns.
    async fn import_records(&self, records: &[Record]) -> Result<ImportStats>;

    /// The number of records [`Store::export_records`] returns for `section` (by
    /// walking it; a backend may count faster). Read-only.
    async fn count_records(&self, section: Section) -> Result<u64> {
        let mut cursor = None;
        let mut n = 0u64;
        loop {
            let (records, next) = self
                .export_records(section, cursor.as_ref(), 10_000)
                .await?;
            n += records.len() as u64;
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
    }

    // ---- lifecycle ---------------------------------------------------------------

    /// Waits until every write acknowledged so far is on disk (a no-op for volatile
    /// backends). Called on shutdown.
    async fn flush(&self) -> Result<()>;
}

/// `NotFound` for a node id, with the reference's wording.
pub fn node_not_found(id: ObjectId) -> Error {
    Error::NotFound(format!("Node not found with id: {id}"))
}

/// The refusal of a queue item that would leave a gap (see
/// [`Store::import_records`]).
pub fn queue_gap(name: &str, len: u64, index: u64) -> Error {
    Error::Invalid(format!(
        "Queue {name:?} holds {len} items: cannot import its item {index} (queues are \
         imported in order, into an empty queue)"
    ))
}

/// The error of the shared-subscription methods on a store that is not shared.
fn not_shared() -> Error {
    Error::Storage("this store is not shared: subscriptions are kept by the server".into())
}
