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

mod accounts;
mod counts;
mod errors;
mod events;
mod export;
mod group;
mod nodes;
mod notify;
mod query;
mod records;
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
use events::stage_event;
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

    /// The row `sql` (a prepared statement on `kci_nodes` with the id as `$1`)
    /// gives for `id`, if any.
    async fn node_row(&self, sql: &str, id: ObjectId) -> Result<Option<Row>> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(conv)?;
        client
            .query_opt(&stmt, &[&id.bytes().as_slice()])
            .await
            .map_err(conv)
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
        Err(why_not_replaced(&client, node.id).await)
    }
}

/// Why a compare-and-swap update of node `id` matched no row: `Conflict` if the
/// node exists (its version moved on), `NotFound` if it is gone.
async fn why_not_replaced(client: &impl GenericClient, id: ObjectId) -> Error {
    let found = client
        .query_opt(
            "SELECT 1 FROM kci_nodes WHERE id = $1",
            &[&id.bytes().as_slice()],
        )
        .await;
    match found {
        Ok(Some(_)) => Error::Conflict(format!("Node {id} was modified concurrently")),
        Ok(None) => node_not_found(id),
        Err(e) => conv(e),
    }
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
        // The group's task numbers the events it wrote before answering.
        let row = NodeRow::new(node, 1)?;
        let numbered = self
            .inserts
            .insert(&self.pool, node.id, row, Some(event.clone()))
            .await?;
        Ok(match numbered {
            Some(Ok(seq)) => Ok(event.with_sequence(seq)),
            Some(Err(e)) => Err(e),
            None => Err(Error::Storage("event not staged".into())),
        })
    }

    async fn replace_node_with_event(
        &self,
        node: &Node,
        expected: Version,
        event: NewEvent,
    ) -> Result<(Version, Result<Event>)> {
        let (version, stage) = self.replace(node, expected, Some(&event)).await?;
        let logged = match stage {
            Some(stage) => self.sequence_staged(stage, event).await,
            None => Err(Error::Storage("event not staged".into())),
        };
        Ok((version, logged))
    }

    async fn write_nodes_with_event(
        &self,
        nodes: &[(&Node, Option<Version>)],
        event: NewEvent,
    ) -> Result<(Vec<Version>, Result<Event>)> {
        // One transaction: every replacement (compare-and-swap), the new rows in
        // statements of up to COPY_FROM rows, and the event staged with them.
        let mut seen = std::collections::HashSet::new();
        if let Some((n, _)) = nodes.iter().find(|(n, _)| !seen.insert(n.id)) {
            return Err(Error::Conflict(format!(
                "Node {} is written twice in one submission",
                n.id
            )));
        }
        let mut client = self.client().await?;
        let update = client.prepare_cached(&update_sql()).await.map_err(conv)?;
        let tx = client.transaction().await.map_err(conv)?;
        let mut versions = Vec::with_capacity(nodes.len());
        let mut new_rows = Vec::new();
        for (node, expected) in nodes {
            let Some(expected) = expected else {
                new_rows.push(NodeRow::new(node, 1)?);
                versions.push(Version(1));
                continue;
            };
            let old_version = i64::try_from(expected.0).unwrap_or(i64::MAX);
            let new = old_version.saturating_add(1);
            let mut row = NodeRow::new(node, new)?;
            row.params.bind(old_version);
            let Some(old) = tx
                .query_opt(&update, &row.params.refs())
                .await
                .map_err(conv)?
            else {
                return Err(why_not_replaced(&tx, node.id).await);
            };
            apply(&tx, replaced(&decode_doc(&old, 0)?, &row)).await?;
            versions.push(Version(u64::try_from(new).unwrap_or(0)));
        }
        for chunk in new_rows.chunks(COPY_FROM) {
            insert_values(&tx, chunk, &Default::default())
                .await
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        Error::Conflict("A node of the submission already exists".into())
                    } else {
                        conv(e)
                    }
                })?;
        }
        let stage = stage_event(&tx, &event).await?;
        tx.commit().await.map_err(conv)?;
        Ok((versions, self.sequence_staged(stage, event).await))
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
        let row = self
            .node_row("SELECT doc, version FROM kci_nodes WHERE id = $1", id)
            .await?;
        row.map(|r| {
            Ok(Versioned {
                value: decode_doc(&r, 0)?,
                version: version_of(&r, 1)?,
            })
        })
        .transpose()
    }

    async fn get_node_json(&self, id: ObjectId) -> Result<Option<Vec<u8>>> {
        let row = self
            .node_row("SELECT doc FROM kci_nodes WHERE id = $1", id)
            .await?;
        row.map(|r| doc_json(&r, 0)).transpose()
    }

    async fn replace_node(&self, node: &Node, expected: Version) -> Result<Version> {
        Ok(self.replace(node, expected, None).await?.0)
    }

    async fn find_nodes(&self, query: &Query) -> Result<Vec<Node>> {
        let mut client = self.client().await?;
        let t = translate(query, true);
        if t.exact && t.order.is_some() && one_statement_fits(query, &t, false) {
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
        if t.exact && t.order.is_some() && one_statement_fits(query, &t, true) {
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
        self.append_event_row(event).await
    }

    async fn events_after(
        &self,
        after: u64,
        channel: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        self.events_after_row(after, channel, limit).await
    }

    async fn find_events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        self.find_events_row(query).await
    }

    async fn last_event_sequence(&self) -> Result<u64> {
        self.last_event_sequence_row().await
    }

    async fn trim_events(&self, before: Timestamp) -> Result<u64> {
        self.trim_events_row(before).await
    }

    async fn get_subscriber(&self, subscriber_id: &str) -> Result<Option<SubscriberState>> {
        self.get_subscriber_row(subscriber_id).await
    }

    async fn put_subscriber(&self, state: &SubscriberState) -> Result<()> {
        self.put_subscriber_row(state).await
    }

    async fn create_subscriber(&self, state: &SubscriberState) -> Result<Option<SubscriberState>> {
        self.create_subscriber_row(state).await
    }

    async fn advance_subscriber(
        &self,
        subscriber_id: &str,
        sequence_id: u64,
        now: Timestamp,
    ) -> Result<()> {
        self.advance_subscriber_row(subscriber_id, sequence_id, now)
            .await
    }

    async fn delete_subscriber(&self, subscriber_id: &str) -> Result<bool> {
        self.delete_subscriber_row(subscriber_id).await
    }

    async fn list_subscribers(&self) -> Result<Vec<SubscriberState>> {
        self.list_subscribers_row().await
    }

    async fn next_counter(&self, name: &str) -> Result<u64> {
        self.next_counter_row(name).await
    }

    async fn insert_user(&self, user: &User) -> Result<()> {
        self.insert_user_row(user).await
    }

    async fn get_user(&self, id: ObjectId) -> Result<Option<User>> {
        self.get_user_row(id).await
    }

    async fn get_user_by_username(&self, username: &str) -> Result<Option<User>> {
        self.get_user_by_username_row(username).await
    }

    async fn get_user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.get_user_by_email_row(email).await
    }

    async fn update_user(&self, user: &User) -> Result<()> {
        self.update_user_row(user).await
    }

    async fn replace_user(&self, expected: &User, user: &User) -> Result<bool> {
        self.replace_user_row(expected, user).await
    }

    async fn delete_user(&self, id: ObjectId) -> Result<bool> {
        self.delete_user_row(id).await
    }

    async fn find_users(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<User>> {
        self.find_users_row(filter, limit, offset).await
    }

    async fn insert_group(&self, group: &UserGroup) -> Result<()> {
        self.insert_group_row(group).await
    }

    async fn get_group(&self, id: ObjectId) -> Result<Option<UserGroup>> {
        self.get_group_row(id).await
    }

    async fn get_group_by_name(&self, name: &str) -> Result<Option<UserGroup>> {
        self.get_group_by_name_row(name).await
    }

    async fn delete_group(&self, id: ObjectId) -> Result<bool> {
        self.delete_group_row(id).await
    }

    async fn find_groups(
        &self,
        filter: &ExactFilter,
        limit: u64,
        offset: u64,
    ) -> Result<Page<UserGroup>> {
        self.find_groups_row(filter, limit, offset).await
    }

    async fn put_token(&self, token: &TokenRecord) -> Result<()> {
        self.put_token_row(token).await
    }

    async fn get_token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.get_token_row(id).await
    }

    async fn consume_token(&self, id: &str, now: Timestamp) -> Result<Option<TokenRecord>> {
        self.consume_token_row(id, now).await
    }

    async fn insert_telemetry(&self, events: &[TelemetryEvent]) -> Result<()> {
        self.insert_telemetry_row(events).await
    }

    async fn find_telemetry(&self, query: &TelemetryQuery) -> Result<Page<TelemetryEvent>> {
        self.find_telemetry_row(query).await
    }

    async fn scan_telemetry(
        &self,
        since: Option<Timestamp>,
        until: Option<Timestamp>,
        filter: &ExactFilter,
    ) -> Result<Vec<TelemetryEvent>> {
        self.scan_telemetry_row(since, until, filter).await
    }

    async fn trim_telemetry(&self, before: Timestamp) -> Result<u64> {
        self.trim_telemetry_row(before).await
    }

    async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<String>> {
        self.kv_get_row(namespace, key).await
    }

    async fn kv_set(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
        self.kv_set_row(namespace, key, value).await
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool> {
        self.kv_delete_row(namespace, key).await
    }

    async fn queue_push(&self, name: &str, value: &str) -> Result<()> {
        self.queue_push_row(name, value).await
    }

    async fn queue_pop(&self, name: &str) -> Result<Option<String>> {
        self.queue_pop_row(name).await
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
        self.acquire_lease_row(name, holder, ttl).await
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
