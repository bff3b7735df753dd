//! The PostgreSQL backend: [`PgStore`] (feature `postgres`, on by default).
//!
//! Several kernelci-server processes may share one database: every method is one
//! transaction (or one statement) of its own, and nothing that answers a request is
//! kept in a process's memory.
//!
//! # Schema
//!
//! [`schema`] holds the versioned migrations (applied at open under an advisory lock;
//! a database of a newer schema is refused) and derives the node indexes from
//! [`crate::INDEXES`]: a btree per declared index on its typed columns or
//! `data #>> path` expressions then `id`, GIN for the `path` and `user_groups`
//! arrays. A node is one row: typed columns for every top-level field the queries
//! filter and sort on, `jsonb` for `data`, `artifacts` and `debug`, and `doc`, the
//! node in the compact binary encoding of [`crate::codec`], which is what reads decode
//! (one column, exact round trip of every value).
//!
//! # Queries
//!
//! See the `query` module: exact SQL where the query language's semantics can be
//! written in SQL, a superset pre-filter and a residual check with
//! [`kernelci_core::query::matches`] where they cannot (regexes among them: patterns
//! are never given to PostgreSQL). Exact plans page and count in the engine, in one
//! statement (the page as an array, the total and the irregular-row check under one
//! snapshot, no explicit transaction); residual plans stream rows through a portal in
//! batches and stop once the page is full.
//!
//! # Event log
//!
//! Sequence ids are given in commit order by construction. `append_event` commits the
//! event **unsequenced**, then runs the *sequencer*: a transaction holding an advisory
//! lock until it commits that numbers every committed unsequenced event, in staging
//! order, after the last number given. Numbers become visible only when the
//! sequencer commits, and sequencer transactions are serialised by the lock, so a
//! reader that has seen number `n` has seen every number below it: `events_after(n)`
//! never skips an event (the "allocate a number, then insert" hazard cannot arise).
//! Concurrent appenders share sequencer runs: one run numbers every event committed
//! before it.
//!
//! # Several servers
//!
//! The store says it is shared ([`Store::is_shared`]): pub/sub subscriptions are
//! rows of `kci_subscriptions` (the `subscriptions` module), whose log positions move
//! by compare-and-set, and the sequencer's `NOTIFY` wakes the listeners of every
//! server (the `notify` module). Time-driven jobs run on the holder of a lease row.
//!
//! # Writes
//!
//! A single-node insert is one statement (the row and its counter rows in one
//! data-modifying `WITH`); the concurrent ones of a process are written together,
//! up to 32 rows per statement (the `group` module). Bulk inserts of 32 rows or more
//! use binary `COPY`.
//!
//! # Counts
//!
//! `count_all_nodes`, and counts and page totals whose filters are one equality on
//! each field of a counted index (`kind=test`, `kind=kbuild&state=done`,
//! `parent=...`), read sharded counter rows kept in the same transaction as every node
//! write (see the `counts` module): no `COUNT(*)`, no hot row. Other exact counts run
//! `count(*)` on the plan's indexes; residual plans count in Rust.

mod counts;
mod errors;
mod export;
mod group;
mod nodes;
mod notify;
mod query;
mod rows;
pub mod schema;
mod subscriptions;
#[cfg(feature = "pg-test-util")]
pub mod testing;
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use kernelci_core::auth::{User, UserGroup};
use kernelci_core::events::{Event, EventQuery, NewEvent};
use kernelci_core::exact::ExactFilter;
use kernelci_core::id::ObjectId;
use kernelci_core::node::Node;
use kernelci_core::query::{matches, sort_nodes, Query};
use kernelci_core::state::{set_processed, ChildrenSummary};
use kernelci_core::store::{
    node_not_found, ExportCursor, FieldSet, ImportStats, Page, Record, Section, Store,
    SubscriberState, SubscriptionRecord, TokenPurpose, TokenRecord, Version, Versioned,
};
use kernelci_core::telemetry::{TelemetryEvent, TelemetryQuery};
use kernelci_core::time::Timestamp;
use kernelci_core::{Error, Result};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::{IsolationLevel, Row};

pub use schema::{MigrationReport, SCHEMA_VERSION};

use crate::codec;
use crate::error::StoreError;
use counts::{node_keys, query_key, Deltas};
use errors::*;
use nodes::*;
use query::{irregular_bits, translate, Params, Translation};
use rows::*;

/// Settings of a [`PgStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/db?sslmode=...` (see the `tls` notes in
    /// the module docs for `sslmode` and `sslrootcert`), or a libpq key=value string.
    pub url: String,
    /// Most connections this process opens (default 16).
    pub pool_size: usize,
    /// Longest a statement may run before the server cancels it (default 30 s;
    /// `None`: the database's own setting).
    pub statement_timeout: Option<Duration>,
    /// Longest to wait for a connection (default 10 s); then the call fails with a
    /// storage error instead of hanging.
    pub connect_timeout: Duration,
}

impl PgConfig {
    /// Default settings for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            statement_timeout: Some(Duration::from_secs(30)),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL store (see the module docs). Cheap to share behind an `Arc`; every
/// call takes a pooled connection.
pub struct PgStore {
    pool: Pool,
    notifier: notify::Notifier,
    inserts: std::sync::Arc<group::InsertGroups>,
}

/// Rows fetched per round trip by residual plans.
const BATCH: i32 = 256;

/// Advisory lock of the event sequencer ("kci-evsq").
const SEQUENCER_LOCK: i64 = 0x6b63_692d_6576_7371;
/// Advisory lock that orders user writes before group deletions ("kci-usgr").
const MEMBERSHIP_LOCK: i64 = 0x6b63_692d_7573_6772;

/// The columns of a node row, in the order [`NodeRow::params`] binds them.
const NODE_COLUMNS: &str = "id, version, \"kind\", \"name\", \"path\", \"group\", \"parent\", \
     \"state\", \"result\", \"data\", \"artifacts\", \"debug\", \"created\", \"updated\", \
     \"timeout\", \"holdoff\", \"owner\", \"submitter\", \"treeid\", \"user_groups\", \
     \"processed_by_kcidb_bridge\", \"retry_counter\", irregular, doc";

impl PgStore {
    /// Connects to the database of `config`, applies the missing migrations and
    /// creates the declared indexes. Fails with a clear error when the database
    /// cannot be reached, refuses the credentials, or has a newer schema.
    pub async fn open(config: &PgConfig) -> std::result::Result<Self, StoreError> {
        let parsed = tls::parse_url(&config.url);
        let mut pg: tokio_postgres::Config = parsed
            .for_driver
            .parse()
            .map_err(|e| StoreError::Config(format!("database URL: {e}")))?;
        pg.connect_timeout(config.connect_timeout);
        // The event sequencer and the compare-and-set writes rely on read committed
        // (a snapshot per statement), whatever the database's default is.
        // Prepared statements are cached per connection; each execution is still
        // planned for its values (`kind=test` and `kind=checkout` want other plans).
        let mut options = String::from(
            "-c default_transaction_isolation=read\\ committed -c plan_cache_mode=force_custom_plan",
        );
        if let Some(t) = config.statement_timeout {
            options.push_str(&format!(" -c statement_timeout={}", t.as_millis()));
        }
        pg.options(options);
        if pg.get_application_name().is_none() {
            pg.application_name("kernelci-server");
        }
        let connector = tls::connector(&parsed)?;
        let notifier = notify::Notifier::new(pg.clone(), connector.clone());
        let manager = Manager::from_config(
            pg,
            connector,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Self {
            pool,
            notifier,
            inserts: Default::default(),
        };
        let mut client = store.client_raw().await?;
        schema::migrate(&mut client).await?;
        Ok(store)
    }

    /// Applies the migrations again (a no-op on a current database) and says what it
    /// did; `open` already does this.
    pub async fn migrate(&self) -> std::result::Result<MigrationReport, StoreError> {
        let mut client = self.client_raw().await?;
        schema::migrate(&mut client).await
    }

    /// How many groups of single-node inserts this store wrote and how many nodes
    /// they held (see the `group` module): their ratio is the mean group size.
    pub fn insert_group_stats(&self) -> (u64, u64) {
        self.inserts.stats()
    }

    /// The plan PostgreSQL chose for `q`'s page query (`EXPLAIN`), and whether rows
    /// are re-checked in Rust.
    pub async fn explain(&self, q: &Query) -> Result<String> {
        let mut client = self.client().await?;
        let tx = read_tx(&mut client, false).await?;
        let t = plan(&tx, q).await?;
        let (sql, _) = page_sql(&t, q);
        let rows = tx
            .query(&format!("EXPLAIN {sql}"), &t.params.refs())
            .await
            .map_err(conv)?;
        let mut out = format!(
            "residual: {}; sort: {}\n",
            if t.exact { "none" } else { "matches() in Rust" },
            if t.order.is_some() { "SQL" } else { "Rust" }
        );
        for r in rows {
            out.push_str(r.get::<_, &str>(0));
            out.push('\n');
        }
        Ok(out)
    }

    /// Recomputes every counter from the stored nodes and lists the counters that
    /// disagree with their rows (empty: the counters are right). Reads every node: for
    /// tests and for an operator's check, not for a request path.
    pub async fn verify_counts(&self) -> Result<Vec<String>> {
        let mut client = self.client().await?;
        let tx = read_tx(&mut client, true).await?;
        let mut want: std::collections::BTreeMap<(i16, String), i64> = Default::default();
        let portal = tx
            .bind("SELECT doc FROM kci_nodes", &[])
            .await
            .map_err(conv)?;
        loop {
            let rows = tx.query_portal(&portal, BATCH * 4).await.map_err(conv)?;
            for r in &rows {
                let node = decode_doc(r, 0)?;
                for k in node_keys(&node, irregular_bits(&node)) {
                    *want.entry(k).or_insert(0) += 1;
                }
            }
            if rows.len() < usize::try_from(BATCH * 4).unwrap_or(0) {
                break;
            }
        }
        let mut have: std::collections::BTreeMap<(i16, String), i64> = Default::default();
        for r in tx
            .query(
                "SELECT ix, key, sum(n)::bigint FROM kci_counts GROUP BY ix, key",
                &[],
            )
            .await
            .map_err(conv)?
        {
            let n: i64 = r.get(2);
            if n != 0 {
                have.insert((r.get(0), r.get(1)), n);
            }
        }
        tx.commit().await.map_err(conv)?;
        let mut problems = Vec::new();
        for (k, n) in &want {
            if have.get(k) != Some(n) {
                problems.push(format!(
                    "counter {k:?}: stored {:?}, nodes {n}",
                    have.get(k)
                ));
            }
        }
        for (k, n) in &have {
            if !want.contains_key(k) {
                problems.push(format!("counter {k:?}: stored {n}, nodes 0"));
            }
        }
        Ok(problems)
    }

    /// The JSON document (column `doc`) of the row `sql` selects with `param`.
    async fn doc_by<T: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        sql: &str,
        param: &(dyn ToSql + Sync),
    ) -> Result<Option<T>> {
        let client = self.client().await?;
        let row = client.query_opt(sql, &[param]).await.map_err(conv)?;
        row.map(|r| from_json_text(what, r.get::<_, &str>(0)))
            .transpose()
    }

    async fn client_raw(&self) -> std::result::Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn client(&self) -> Result<Object> {
        Ok(self.client_raw().await?)
    }

    /// `replace_node`, with `event` committed (unsequenced) in the same transaction
    /// when given; returns the new version and the event's staging number.
    async fn replace(
        &self,
        node: &Node,
        expected: Version,
        event: Option<&NewEvent>,
    ) -> Result<(Version, Option<i64>)> {
        let expected = i64::try_from(expected.0).unwrap_or(i64::MAX);
        let new = expected.saturating_add(1);
        let mut row = NodeRow::new(node, new)?;
        row.params.bind(expected);
        let mut client = self.client().await?;
        let stmt = client.prepare_cached(&update_sql()).await.map_err(conv)?;
        let tx = client.transaction().await.map_err(conv)?;
        let old = tx
            .query_opt(&stmt, &row.params.refs())
            .await
            .map_err(conv)?;
        if let Some(old) = old {
            apply(&tx, replaced(&decode_doc(&old, 0)?, &row)).await?;
            let stage = match event {
                Some(e) => Some(stage_event(&tx, e).await?),
                None => None,
            };
            tx.commit().await.map_err(conv)?;
            return Ok((Version(u64::try_from(new).unwrap_or(0)), stage));
        }
        drop(tx);
        let exists = client
            .query_opt(
                "SELECT 1 FROM kci_nodes WHERE id = $1",
                &[&node.id.bytes().as_slice()],
            )
            .await
            .map_err(conv)?
            .is_some();
        if exists {
            Err(Error::Conflict(format!(
                "Node {} was modified concurrently",
                node.id
            )))
        } else {
            Err(node_not_found(node.id))
        }
    }

    /// Numbers the event staged as `stage` (and every other pending one): `event`
    /// with its sequence id.
    async fn sequence_staged(&self, stage: Option<i64>, event: NewEvent) -> Result<Event> {
        let stage = stage.ok_or_else(|| Error::Storage("event not staged".into()))?;
        let client = self.client().await?;
        let seq = self.sequence_pending(&client, stage).await?;
        Ok(event.with_sequence(seq))
    }

    /// Numbers every committed unsequenced event (see the module docs) and returns
    /// the sequence id of the event staged as `stage`. One message, one round trip:
    /// its statements run as one implicit transaction (the advisory lock is held to
    /// its commit), each with a snapshot of its own (read committed, which `open`
    /// sets for every session), so the numbering statement sees every event
    /// committed before the lock was granted. A run that finds nothing to number
    /// writes nothing.
    async fn sequence_pending(&self, client: &Object, stage: i64) -> Result<u64> {
        // Only integers of ours are spliced in (the lock key, a stage number).
        let sql = format!(
            "SELECT pg_advisory_xact_lock({SEQUENCER_LOCK});
             WITH pending AS (
                 SELECT stage, row_number() OVER (ORDER BY stage) AS rn
                 FROM kci_events WHERE seq IS NULL ORDER BY stage LIMIT 100000),
             bumped AS (
                 UPDATE kci_event_seq SET last = last + (SELECT count(*) FROM pending)
                 WHERE EXISTS (SELECT 1 FROM pending)
                 RETURNING last - (SELECT count(*) FROM pending) AS base),
             numbered AS (
                 UPDATE kci_events e SET seq = bumped.base + pending.rn
                 FROM pending, bumped WHERE e.stage = pending.stage RETURNING e.seq)
             SELECT pg_notify('{}', max(seq)::text) FROM numbered HAVING count(*) > 0;
             SELECT seq FROM kci_events WHERE stage = {stage};",
            notify::CHANNEL
        );
        let messages = client.simple_query(&sql).await.map_err(conv)?;
        let seq = messages
            .iter()
            .rev()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
                _ => None,
            })
            .and_then(|t| t.parse::<u64>().ok());
        seq.ok_or_else(|| Error::Storage("event left unsequenced".into()))
    }
}

/// Commits nothing by itself: inserts `event` unsequenced (in the caller's
/// transaction, if any) and returns its staging number.
async fn stage_event(client: &impl GenericClient, event: &NewEvent) -> Result<i64> {
    let data = json_text(&event.data)?;
    let row = client
        .query_one(
            "INSERT INTO kci_events (id, ts, channel, owner, data) VALUES ($1, $2, $3, $4, $5)
             RETURNING stage",
            &[
                &event.id.bytes().as_slice(),
                &ts(event.timestamp),
                &event.channel,
                &event.owner,
                &data,
            ],
        )
        .await
        .map_err(conv)?;
    Ok(row.get(0))
}

/// A read-only transaction; with `snapshot`, at repeatable read (one consistent view
/// for several statements).
async fn read_tx(
    client: &mut Object,
    snapshot: bool,
) -> Result<deadpool_postgres::Transaction<'_>> {
    let mut b = client.build_transaction().read_only(true);
    if snapshot {
        b = b.isolation_level(IsolationLevel::RepeatableRead);
    }
    b.start().await.map_err(conv)
}

/// A transaction holding the membership lock: shared by user writes, exclusive for a
/// group deletion, so no membership is added between its check and its delete.
async fn membership_tx(
    client: &mut Object,
    exclusive: bool,
) -> Result<deadpool_postgres::Transaction<'_>> {
    let tx = client.transaction().await.map_err(conv)?;
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock($1)"
    } else {
        "SELECT pg_advisory_xact_lock_shared($1)"
    };
    tx.execute(sql, &[&MEMBERSHIP_LOCK]).await.map_err(conv)?;
    Ok(tx)
}

#[async_trait]
impl Store for PgStore {
    async fn insert_node(&self, node: &Node) -> Result<()> {
        // Grouped with the concurrent inserts of this process (see `group`).
        let row = NodeRow::new(node, 1)?;
        self.inserts.insert(&self.pool, node.id, row, None).await?;
        Ok(())
    }

    async fn insert_node_with_event(&self, node: &Node, event: NewEvent) -> Result<Result<Event>> {
        // The event is committed with the node (unsequenced), so no crash separates
        // them; any later sequencer run numbers it should this one fail.
        let row = NodeRow::new(node, 1)?;
        let stage = self
            .inserts
            .insert(&self.pool, node.id, row, Some(event.clone()))
            .await?;
        Ok(self.sequence_staged(stage, event).await)
    }

    async fn replace_node_with_event(
        &self,
        node: &Node,
        expected: Version,
        event: NewEvent,
    ) -> Result<(Version, Result<Event>)> {
        let (version, stage) = self.replace(node, expected, Some(&event)).await?;
        Ok((version, self.sequence_staged(stage, event).await))
    }

    async fn insert_nodes(&self, nodes: &[Node]) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let rows = nodes
            .iter()
            .map(|n| NodeRow::new(n, 1))
            .collect::<Result<Vec<_>>>()?;
        let mut client = self.client().await?;
        let written = if nodes.len() >= COPY_FROM {
            copy_nodes(&mut client, &rows).await
        } else {
            insert_values(&client, &rows, &Default::default())
                .await
                .map(|_| ())
        };
        match written {
            Err(e) if is_unique_violation(&e) => {
                let id = first_taken_id(&client, nodes).await?;
                Err(Error::Conflict(format!(
                    "Node already exists with id: {id}"
                )))
            }
            other => other.map_err(conv),
        }
    }

    async fn get_node(&self, id: ObjectId) -> Result<Option<Versioned<Node>>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT doc, version FROM kci_nodes WHERE id = $1")
            .await
            .map_err(conv)?;
        let row = client
            .query_opt(&stmt, &[&id.bytes().as_slice()])
            .await
            .map_err(conv)?;
        row.map(|r| {
            Ok(Versioned {
                value: decode_doc(&r, 0)?,
                version: version_of(&r, 1)?,
            })
        })
        .transpose()
    }

    async fn replace_node(&self, node: &Node, expected: Version) -> Result<Version> {
        Ok(self.replace(node, expected, None).await?.0)
    }

    async fn find_nodes(&self, query: &Query) -> Result<Vec<Node>> {
        let mut client = self.client().await?;
        let t = translate(query, true);
        if t.exact && t.order.is_some() {
            if let Some(one) = one_statement(&client, query, &t, true, false).await? {
                return Ok(one.items);
            }
        }
        let tx = read_tx(&mut client, false).await?;
        let t = plan(&tx, query).await?;
        let nodes = find_in(&tx, query, &t).await?;
        tx.commit().await.map_err(conv)?;
        Ok(nodes)
    }

    async fn count_nodes(&self, query: &Query) -> Result<u64> {
        let mut client = self.client().await?;
        let t = translate(query, true);
        if t.exact {
            if let Some(one) = one_statement(&client, query, &t, false, true).await? {
                return Ok(one.total);
            }
        }
        let tx = read_tx(&mut client, false).await?;
        let t = plan(&tx, query).await?;
        let n = count_in(&tx, query, &t).await?;
        tx.commit().await.map_err(conv)?;
        Ok(n)
    }

    async fn find_page(&self, query: &Query) -> Result<Page<Node>> {
        let mut client = self.client().await?;
        let t = translate(query, true);
        if t.exact && t.order.is_some() {
            if let Some(one) = one_statement(&client, query, &t, true, true).await? {
                return Ok(Page {
                    items: one.items,
                    total: one.total,
                });
            }
        }
        let tx = read_tx(&mut client, true).await?;
        // One plan (and one irregular-row check) for the page and its total.
        let t = plan(&tx, query).await?;
        let items = find_in(&tx, query, &t).await?;
        let total = count_in(&tx, query, &t).await?;
        tx.commit().await.map_err(conv)?;
        Ok(Page { items, total })
    }

    async fn count_all_nodes(&self) -> Result<u64> {
        let client = self.client().await?;
        count_all(&client).await
    }

    async fn set_field_many(&self, ids: &[ObjectId], set: FieldSet, now: Timestamp) -> Result<u64> {
        let mut changed = 0;
        let mut client = self.client().await?;
        let update = client.prepare_cached(&update_sql()).await.map_err(conv)?;
        // Batches of one transaction each: every node's update is atomic.
        for chunk in ids.chunks(500) {
            let keys: Vec<Vec<u8>> = chunk.iter().map(|id| id.bytes().to_vec()).collect();
            let tx = client.transaction().await.map_err(conv)?;
            let rows = tx
                .query(
                    "SELECT doc, version FROM kci_nodes WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                    &[&keys],
                )
                .await
                .map_err(conv)?;
            let mut found = std::collections::HashMap::new();
            for r in &rows {
                let node = decode_doc(r, 0)?;
                let version = i64::try_from(version_of(r, 1)?.0).unwrap_or(i64::MAX);
                found.insert(node.id, (node, version));
            }
            // In the order given; an id listed twice is updated twice (as the other
            // backends do).
            for id in chunk {
                let Some((node, version)) = found.get_mut(id) else {
                    continue;
                };
                let old = node.clone();
                match set {
                    FieldSet::ProcessedByKcidbBridge(b) => set_processed(node, b, now),
                }
                let mut row = NodeRow::new(node, version.saturating_add(1))?;
                row.params.bind(*version);
                tx.query_one(&update, &row.params.refs())
                    .await
                    .map_err(conv)?;
                apply(&tx, replaced(&old, &row)).await?;
                *version = version.saturating_add(1);
                changed += 1;
            }
            tx.commit().await.map_err(conv)?;
        }
        Ok(changed)
    }

    async fn children(&self, parent: ObjectId) -> Result<Vec<Node>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT doc FROM kci_nodes WHERE \"parent\" = $1 ORDER BY id",
                &[&parent.bytes().as_slice()],
            )
            .await
            .map_err(conv)?;
        rows.iter().map(|r| decode_doc(r, 0)).collect()
    }

    async fn descendants_summary(&self, id: ObjectId) -> Result<ChildrenSummary> {
        let client = self.client().await?;
        // UNION (not UNION ALL) drops rows already found, so a cycle of parent links
        // ends the recursion; the start node is never its own descendant.
        let row = client
            .query_one(
                "WITH RECURSIVE d(id, state) AS (
                     SELECT id, \"state\" FROM kci_nodes WHERE \"parent\" = $1 AND id <> $1
                     UNION
                     SELECT n.id, n.\"state\" FROM kci_nodes n JOIN d ON n.\"parent\" = d.id
                     WHERE n.id <> $1)
                 SELECT count(DISTINCT id), count(DISTINCT id) FILTER (WHERE state = 'done') FROM d",
                &[&id.bytes().as_slice()],
            )
            .await
            .map_err(conv)?;
        let total: i64 = row.get(0);
        let done: i64 = row.get(1);
        Ok(ChildrenSummary {
            total: u64::try_from(total).unwrap_or(0),
            done: u64::try_from(done).unwrap_or(0),
        })
    }

    async fn delete_nodes_created_before(
        &self,
        before: Timestamp,
        keep_kinds: &[&str],
        max: usize,
    ) -> Result<u64> {
        let keep: Vec<String> = keep_kinds.iter().map(|k| (*k).to_owned()).collect();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(conv)?;
        let rows = tx
            .query(
                "DELETE FROM kci_nodes WHERE id IN (
                     SELECT id FROM kci_nodes
                     WHERE \"created\" < $1 AND NOT (\"kind\" = ANY($2))
                     ORDER BY \"created\", id LIMIT $3)
                 RETURNING doc",
                &[&ts(before), &keep, &max],
            )
            .await
            .map_err(conv)?;
        let mut deltas = Deltas::default();
        for r in &rows {
            let node = decode_doc(r, 0)?;
            deltas.add(node_keys(&node, irregular_bits(&node)), -1);
        }
        apply(&tx, deltas).await?;
        tx.commit().await.map_err(conv)?;
        Ok(rows.len() as u64)
    }

    async fn append_event(&self, event: NewEvent) -> Result<Event> {
        let client = self.client().await?;
        let stage = stage_event(&client, &event).await?;
        let seq = self.sequence_pending(&client, stage).await?;
        Ok(event.with_sequence(seq))
    }

    async fn events_after(
        &self,
        after: u64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let client = self.client().await?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match channel {
            Some(c) => {
                client
                    .query(
                        "SELECT seq, id, ts, channel, owner, data FROM kci_events
                         WHERE channel = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                        &[&c, &after, &limit],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        "SELECT seq, id, ts, channel, owner, data FROM kci_events
                         WHERE seq > $1 ORDER BY seq LIMIT $2",
                        &[&after, &limit],
                    )
                    .await
            }
        }
        .map_err(conv)?;
        rows.iter().map(event_from_row).collect()
    }

    async fn find_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        let mut client = self.client().await?;
        let offset = usize::try_from(query.offset).unwrap_or(usize::MAX);
        let limit = query
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut p = Params::default();
        let mut conds = vec!["seq IS NOT NULL".to_owned()];
        if let Some(c) = &query.channel {
            conds.push(format!("channel = {}", p.bind(c.clone())));
        }
        if let Some(from) = query.from {
            conds.push(format!("ts > {}", p.bind(ts(from))));
        }
        if !query.ids.is_empty() {
            let ids: Vec<Vec<u8>> = query.ids.iter().map(|i| i.bytes().to_vec()).collect();
            conds.push(format!("id = ANY({})", p.bind(ids)));
        }
        let sql = format!(
            "SELECT seq, id, ts, channel, owner, data FROM kci_events WHERE {} ORDER BY seq",
            conds.join(" AND ")
        );
        let tx = read_tx(&mut client, false).await?;
        let portal = tx.bind(&sql, &p.refs()).await.map_err(conv)?;
        let mut out = Vec::new();
        let mut skipped = 0;
        'outer: loop {
            let rows = tx.query_portal(&portal, BATCH).await.map_err(conv)?;
            for r in &rows {
                let e = event_from_row(r)?;
                if !query.matches(&e) {
                    continue;
                }
                if skipped < offset {
                    skipped += 1;
                    continue;
                }
                if out.len() >= limit {
                    break 'outer;
                }
                out.push(e);
            }
            if rows.len() < usize::try_from(BATCH).unwrap_or(0) || out.len() >= limit {
                break;
            }
        }
        tx.commit().await.map_err(conv)?;
        Ok(out)
    }

    async fn last_event_sequence(&self) -> Result<u64> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one("SELECT last FROM kci_event_seq", &[])
            .await
            .map_err(conv)?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn trim_events(&self, before: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM kci_events WHERE ts < $1 AND seq IS NOT NULL",
                &[&ts(before)],
            )
            .await
            .map_err(conv)
    }

    async fn get_subscriber(&self, subscriber_id: &str) -> Result<Option<SubscriberState>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT * FROM kci_subscribers WHERE subscriber_id = $1",
                &[&subscriber_id],
            )
            .await
            .map_err(conv)?;
        Ok(row.as_ref().map(subscriber_from_row))
    }

    async fn put_subscriber(&self, state: &SubscriberState) -> Result<()> {
        let client = self.client().await?;
        let last = i64::try_from(state.last_event_id).unwrap_or(i64::MAX);
        client
            .execute(
                "INSERT INTO kci_subscribers
                     (subscriber_id, channel, username, promiscuous, last_event_id, created_at, last_poll)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (subscriber_id) DO UPDATE SET
                     channel = EXCLUDED.channel, username = EXCLUDED.username,
                     promiscuous = EXCLUDED.promiscuous, last_event_id = EXCLUDED.last_event_id,
                     created_at = EXCLUDED.created_at, last_poll = EXCLUDED.last_poll",
                &[
                    &state.subscriber_id,
                    &state.channel,
                    &state.user,
                    &state.promiscuous,
                    &last,
                    &ts(state.created_at),
                    &state.last_poll.map(ts),
                ],
            )
            .await
            .map_err(conv)?;
        Ok(())
    }

    async fn advance_subscriber(
        &self,
        subscriber_id: &str,
        sequence_id: u64,
        now: Timestamp,
    ) -> Result<()> {
        let client = self.client().await?;
        let seq = i64::try_from(sequence_id).unwrap_or(i64::MAX);
        let n = client
            .execute(
                "UPDATE kci_subscribers SET last_event_id = greatest(last_event_id, $2), last_poll = $3
                 WHERE subscriber_id = $1",
                &[&subscriber_id, &seq, &ts(now)],
            )
            .await
            .map_err(conv)?;
        if n == 0 {
            return Err(Error::NotFound(format!(
                "Subscriber not found: {subscriber_id}"
            )));
        }
        Ok(())
    }

    async fn delete_subscriber(&self, subscriber_id: &str) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM kci_subscribers WHERE subscriber_id = $1",
                &[&subscriber_id],
            )
            .await
            .map_err(conv)?;
        Ok(n > 0)
    }

    async fn list_subscribers(&self) -> Result<Vec<SubscriberState>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT * FROM kci_subscribers ORDER BY subscriber_id COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(conv)?;
        Ok(rows.iter().map(subscriber_from_row).collect())
    }

    async fn next_counter(&self, name: &str) -> Result<u64> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one(
                "INSERT INTO kci_counters (name, value) VALUES ($1, 1)
                 ON CONFLICT (name) DO UPDATE SET value = kci_counters.value + 1
                 RETURNING value",
                &[&name],
            )
            .await
            .map_err(conv)?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        let (id, groups, doc) = user_params(user)?;
        let mut client = self.client().await?;
        let tx = membership_tx(&mut client, false).await?;
        match tx
            .execute(
                "INSERT INTO kci_users (id, username, email, group_ids, doc) VALUES ($1, $2, $3, $4, $5)",
                &[&id, &user.username, &user.email, &groups, &doc],
            )
            .await
        {
            Ok(_) => tx.commit().await.map_err(conv),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict(
                "User with this id, username or e-mail already exists".into(),
            )),
            Err(e) => Err(conv(e)),
        }
    }

    async fn get_user(&self, id: ObjectId) -> Result<Option<User>> {
        self.doc_by(
            "user",
            "SELECT doc FROM kci_users WHERE id = $1",
            &id.bytes().as_slice(),
        )
        .await
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.doc_by(
            "user",
            "SELECT doc FROM kci_users WHERE username = $1",
            &username,
        )
        .await
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.doc_by("user", "SELECT doc FROM kci_users WHERE email = $1", &email)
            .await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        let (id, groups, doc) = user_params(user)?;
        let mut client = self.client().await?;
        let tx = membership_tx(&mut client, false).await?;
        match tx
            .execute(
                "UPDATE kci_users SET username = $2, email = $3, group_ids = $4, doc = $5 WHERE id = $1",
                &[&id, &user.username, &user.email, &groups, &doc],
            )
            .await
        {
            Ok(0) => Err(Error::NotFound(format!(
                "User not found with id: {}",
                user.id
            ))),
            Ok(_) => tx.commit().await.map_err(conv),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Conflict("Username or e-mail already taken".into()))
            }
            Err(e) => Err(conv(e)),
        }
    }

    async fn delete_user(&self, id: ObjectId) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM kci_users WHERE id = $1",
                &[&id.bytes().as_slice()],
            )
            .await
            .map_err(conv)?;
        Ok(n > 0)
    }

    async fn find_users(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<User>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT doc FROM kci_users ORDER BY id", &[])
            .await
            .map_err(conv)?;
        let mut found = Vec::new();
        for r in &rows {
            let u: User = from_json_text("user", r.get::<_, &str>(0))?;
            if filter.matches(&u.to_public_json()) {
                found.push(u);
            }
        }
        let total = found.len() as u64;
        Ok(Page {
            items: page_of(found, limit, offset),
            total,
        })
    }

    async fn insert_group(&self, group: &UserGroup) -> Result<()> {
        let client = self.client().await?;
        match client
            .execute(
                "INSERT INTO kci_groups (id, name, doc) VALUES ($1, $2, $3)",
                &[
                    &group.id.bytes().as_slice(),
                    &group.name,
                    &json_text(group)?,
                ],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict(format!(
                "Group already exists: {}",
                group.name
            ))),
            Err(e) => Err(conv(e)),
        }
    }

    async fn get_group(&self, id: ObjectId) -> Result<Option<UserGroup>> {
        self.doc_by(
            "group",
            "SELECT doc FROM kci_groups WHERE id = $1",
            &id.bytes().as_slice(),
        )
        .await
    }

    async fn get_group_by_name(&self, name: &str) -> Result<Option<UserGroup>> {
        self.doc_by("group", "SELECT doc FROM kci_groups WHERE name = $1", &name)
            .await
    }

    async fn delete_group(&self, id: ObjectId) -> Result<bool> {
        let key = id.bytes().to_vec();
        let mut client = self.client().await?;
        // Exclusive against user writes (which hold it shared): no membership can be
        // added between the check and the delete.
        let tx = membership_tx(&mut client, true).await?;
        let in_use: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM kci_users WHERE $1 = ANY(group_ids))",
                &[&key],
            )
            .await
            .map_err(conv)?
            .get(0);
        if in_use {
            return Err(Error::Conflict(
                "Group is in use by at least one user".into(),
            ));
        }
        let n = tx
            .execute("DELETE FROM kci_groups WHERE id = $1", &[&key])
            .await
            .map_err(conv)?;
        tx.commit().await.map_err(conv)?;
        Ok(n > 0)
    }

    async fn find_groups(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<UserGroup>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT doc FROM kci_groups ORDER BY id", &[])
            .await
            .map_err(conv)?;
        let mut found = Vec::new();
        for r in &rows {
            let g: UserGroup = from_json_text("group", r.get::<_, &str>(0))?;
            if filter.matches(&serde_json::to_value(&g).unwrap_or_default()) {
                found.push(g);
            }
        }
        let total = found.len() as u64;
        Ok(Page {
            items: page_of(found, limit, offset),
            total,
        })
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO kci_tokens (id, purpose, user_id, expires, used) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (id) DO UPDATE SET purpose = EXCLUDED.purpose,
                     user_id = EXCLUDED.user_id, expires = EXCLUDED.expires, used = EXCLUDED.used",
                &[
                    &token.id,
                    &purpose_str(token.purpose),
                    &token.user_id.bytes().as_slice(),
                    &ts(token.expires),
                    &token.used,
                ],
            )
            .await
            .map_err(conv)?;
        Ok(())
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT * FROM kci_tokens WHERE id = $1", &[&id])
            .await
            .map_err(conv)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn consume_token(&self, id: &str, now: Timestamp) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE kci_tokens SET used = true WHERE id = $1 AND NOT used AND expires > $2
                 RETURNING *",
                &[&id, &ts(now)],
            )
            .await
            .map_err(conv)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn insert_telemetry(&self, events: &[TelemetryEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        let stmt = client
            .prepare_cached("INSERT INTO kci_telemetry (id, ts, doc) VALUES ($1, $2, $3)")
            .await
            .map_err(conv)?;
        let tx = client.transaction().await.map_err(conv)?;
        for e in events {
            let doc = json_text(e)?;
            if let Err(err) = tx
                .execute(&stmt, &[&e.id.bytes().as_slice(), &ts(e.ts), &doc])
                .await
            {
                if is_unique_violation(&err) {
                    return Err(Error::Conflict(format!(
                        "Telemetry event already exists with id: {}",
                        e.id
                    )));
                }
                return Err(conv(err));
            }
        }
        tx.commit().await.map_err(conv)
    }

    async fn find_telemetry(&self, query: &TelemetryQuery) -> Result<Page<TelemetryEvent>> {
        let mut client = self.client().await?;
        let (sql, p) = telemetry_range_sql(query.since, query.until);
        let offset = usize::try_from(query.offset).unwrap_or(usize::MAX);
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        let mut total = 0u64;
        let mut items = Vec::new();
        scan_telemetry_rows(&mut client, &sql, &p.refs(), |e| {
            if query.matches(&e) {
                let at = usize::try_from(total).unwrap_or(usize::MAX);
                if at >= offset && items.len() < limit {
                    items.push(e);
                }
                total += 1;
            }
        })
        .await?;
        Ok(Page { items, total })
    }

    async fn scan_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        filter: &ExactFilter,
    ) -> Result<Vec<TelemetryEvent>> {
        let mut client = self.client().await?;
        let (sql, p) = telemetry_range_sql(since, until);
        let mut out = Vec::new();
        scan_telemetry_rows(&mut client, &sql, &p.refs(), |e| {
            if filter.matches(&e.document()) {
                out.push(e);
            }
        })
        .await?;
        Ok(out)
    }

    async fn trim_telemetry(&self, before: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM kci_telemetry WHERE ts < $1", &[&ts(before)])
            .await
            .map_err(conv)
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM kci_kv WHERE namespace = $1 AND key = $2",
                &[&namespace.as_bytes(), &key.as_bytes()],
            )
            .await
            .map_err(conv)?;
        row.map(|r| utf8("KV value", r.get(0))).transpose()
    }

    async fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO kci_kv (namespace, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value",
                &[&namespace.as_bytes(), &key.as_bytes(), &value.as_bytes()],
            )
            .await
            .map_err(conv)?;
        Ok(())
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM kci_kv WHERE namespace = $1 AND key = $2",
                &[&namespace.as_bytes(), &key.as_bytes()],
            )
            .await
            .map_err(conv)?;
        Ok(n > 0)
    }

    async fn queue_push(&self, name: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO kci_queue (name, value) VALUES ($1, $2)",
                &[&name.as_bytes(), &value.as_bytes()],
            )
            .await
            .map_err(conv)?;
        Ok(())
    }

    async fn queue_pop(&self, name: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        // SKIP LOCKED: concurrent pops (from any server) each take a different item.
        let row = client
            .query_opt(
                "DELETE FROM kci_queue WHERE pos = (
                     SELECT pos FROM kci_queue WHERE name = $1 ORDER BY pos
                     LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING value",
                &[&name.as_bytes()],
            )
            .await
            .map_err(conv)?;
        row.map(|r| utf8("queue item", r.get(0))).transpose()
    }

    async fn export_records(
        &self,
        section: Section,
        after: Option<&ExportCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<ExportCursor>)> {
        self.export_page(section, after, limit).await
    }

    async fn import_records(&self, records: &[Record]) -> Result<ImportStats> {
        self.import_batch(records).await
    }

    async fn count_records(&self, section: Section) -> Result<u64> {
        self.count_section(section).await
    }

    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        // The database's clock decides expiry: servers' clocks may disagree.
        let client = self.client().await?;
        let row = client
            .query_opt(
                "INSERT INTO kci_leases (name, holder, expires)
                 VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires
                 WHERE kci_leases.holder = EXCLUDED.holder OR kci_leases.expires < clock_timestamp()
                 RETURNING holder",
                &[&name, &holder, &ttl.as_secs_f64()],
            )
            .await
            .map_err(conv)?;
        Ok(row.is_some())
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn put_subscription(&self, record: &SubscriptionRecord) -> Result<()> {
        self.put_subscription_row(record).await
    }

    async fn get_subscription(&self, id: u64) -> Result<Option<SubscriptionRecord>> {
        self.get_subscription_row(id).await
    }

    async fn delete_subscription(&self, id: u64) -> Result<bool> {
        self.delete_subscription_row(id).await
    }

    async fn list_subscriptions(&self) -> Result<Vec<SubscriptionRecord>> {
        self.list_subscription_rows().await
    }

    async fn advance_subscription(
        &self,
        id: u64,
        from: u64,
        to: u64,
        now: Timestamp,
    ) -> Result<bool> {
        self.advance_subscription_row(id, from, to, now).await
    }

    async fn delete_idle_subscriptions(&self, before: Timestamp) -> Result<u64> {
        self.delete_idle_subscription_rows(before).await
    }

    async fn wait_events(&self, after: u64, timeout: Duration) -> Result<u64> {
        Ok(self.notifier.wait(after, timeout).await)
    }

    async fn flush(&self) -> Result<()> {
        // Every write committed with synchronous_commit (the default) is on disk.
        Ok(())
    }
}
