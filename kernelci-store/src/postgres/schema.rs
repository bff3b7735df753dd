//! The database schema: versioned migrations embedded in the binary, applied at start
//! under an advisory lock, and the node indexes derived from [`crate::INDEXES`].
//!
//! `kci_schema` records every applied migration. A database whose newest migration is
//! newer than [`SCHEMA_VERSION`] was written by a newer kernelci-server and is refused
//! with a clear message rather than used half-understood. Several servers starting at
//! once are safe: each takes the same session advisory lock before looking, so exactly
//! one of them applies what is missing and the others find it applied.
//!
//! KV pairs and queue items are kept as `bytea` (UTF-8 bytes): their names and values
//! are any client text, NUL characters included, which `text` cannot hold.

use deadpool_postgres::Object;
use kernelci_core::query::{FieldPath, Root};

use crate::error::StoreError;
use crate::index::IndexDef;
use crate::INDEXES;

/// The newest schema this build knows.
pub const SCHEMA_VERSION: i32 = 3;

/// Advisory lock key of the migration step (an arbitrary constant: "kci-migr").
const MIGRATION_LOCK: i64 = 0x6b63_692d_6d69_6772;

/// One migration: its version, a name for the log, and its SQL.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. Never edit one that has shipped: add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "tables",
        sql: r#"
CREATE TABLE kci_nodes (
    id bytea PRIMARY KEY,
    version bigint NOT NULL,
    "kind" text COLLATE "C" NOT NULL,
    "name" text COLLATE "C" NOT NULL,
    "path" text[] COLLATE "C" NOT NULL,
    "group" text COLLATE "C",
    "parent" bytea,
    "state" text COLLATE "C" NOT NULL,
    "result" text COLLATE "C",
    "data" jsonb,
    "artifacts" jsonb,
    "debug" jsonb,
    "created" timestamptz NOT NULL,
    "updated" timestamptz NOT NULL,
    "timeout" timestamptz NOT NULL,
    "holdoff" timestamptz,
    "owner" text COLLATE "C",
    "submitter" text COLLATE "C",
    "treeid" text COLLATE "C",
    "user_groups" text[] COLLATE "C" NOT NULL,
    "processed_by_kcidb_bridge" boolean NOT NULL,
    "retry_counter" bigint NOT NULL,
    irregular integer NOT NULL DEFAULT 0,
    doc bytea NOT NULL
);
CREATE INDEX kci_nodes_irregular ON kci_nodes (id) WHERE irregular <> 0;

CREATE TABLE kci_counts (
    ix smallint NOT NULL,
    key text COLLATE "C" NOT NULL,
    shard smallint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (ix, key, shard)
);

CREATE TABLE kci_events (
    stage bigserial PRIMARY KEY,
    seq bigint UNIQUE,
    id bytea NOT NULL,
    ts timestamptz NOT NULL,
    channel text COLLATE "C" NOT NULL,
    owner text,
    data text NOT NULL
);
CREATE INDEX kci_events_pending ON kci_events (stage) WHERE seq IS NULL;
CREATE INDEX kci_events_channel ON kci_events (channel, seq);
CREATE INDEX kci_events_ts ON kci_events (ts);
CREATE TABLE kci_event_seq (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint NOT NULL
);
INSERT INTO kci_event_seq VALUES (true, 0);

CREATE TABLE kci_subscribers (
    subscriber_id text PRIMARY KEY,
    channel text NOT NULL,
    username text NOT NULL,
    promiscuous boolean NOT NULL,
    last_event_id bigint NOT NULL,
    created_at timestamptz NOT NULL,
    last_poll timestamptz
);

CREATE TABLE kci_counters (
    name text PRIMARY KEY,
    value bigint NOT NULL
);

CREATE TABLE kci_users (
    id bytea PRIMARY KEY,
    username text NOT NULL UNIQUE,
    email text NOT NULL UNIQUE,
    group_ids bytea[] NOT NULL,
    doc text NOT NULL
);

CREATE TABLE kci_groups (
    id bytea PRIMARY KEY,
    name text NOT NULL UNIQUE,
    doc text NOT NULL
);

CREATE TABLE kci_tokens (
    id text PRIMARY KEY,
    purpose text NOT NULL,
    user_id bytea NOT NULL,
    expires timestamptz NOT NULL,
    used boolean NOT NULL
);

CREATE TABLE kci_telemetry (
    id bytea PRIMARY KEY,
    ts timestamptz NOT NULL,
    doc text NOT NULL
);
CREATE INDEX kci_telemetry_ts ON kci_telemetry (ts, id);

CREATE TABLE kci_kv (
    namespace bytea NOT NULL,
    key bytea NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (namespace, key)
);

CREATE TABLE kci_queue (
    pos bigserial PRIMARY KEY,
    name bytea NOT NULL,
    value bytea NOT NULL
);
CREATE INDEX kci_queue_name ON kci_queue (name, pos);
"#,
    },
    Migration {
        version: 2,
        name: "leases",
        sql: r#"
CREATE TABLE kci_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires timestamptz NOT NULL
);
"#,
    },
    Migration {
        version: 3,
        name: "subscriptions",
        sql: r#"
CREATE TABLE kci_subscriptions (
    id bigint PRIMARY KEY,
    channel text NOT NULL,
    username text NOT NULL,
    promiscuous boolean NOT NULL,
    subscriber_id text,
    created timestamptz NOT NULL,
    last_poll timestamptz,
    position bigint NOT NULL
);
"#,
    },
];

/// What a migration run did (see [`crate::postgres::PgStore::migrate`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MigrationReport {
    /// Versions applied by this call (empty when the database was current).
    pub applied: Vec<i32>,
    /// Node indexes created by this call.
    pub indexes_created: Vec<String>,
    /// Node indexes dropped because [`crate::INDEXES`] no longer declares them.
    pub indexes_dropped: Vec<String>,
}

/// Brings the database to [`SCHEMA_VERSION`] and the node indexes to
/// [`crate::INDEXES`], under the migration lock.
pub(crate) async fn migrate(client: &mut Object) -> Result<MigrationReport, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = migrate_locked(client).await;
    // Released whatever happened (a failed unlock only means the session ends it).
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    result
}

async fn migrate_locked(client: &mut Object) -> Result<MigrationReport, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS kci_schema (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let current: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM kci_schema", &[])
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Schema {
            found: u64::try_from(current).unwrap_or(0),
            supported: u64::try_from(SCHEMA_VERSION).unwrap_or(0),
        });
    }
    let mut report = MigrationReport::default();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO kci_schema (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        tx.commit().await?;
        report.applied.push(m.version);
    }
    reconcile_indexes(client, &mut report).await?;
    Ok(report)
}

/// Creates the declared node indexes that are missing and drops the ones no longer
/// declared (names `kci_nodes_ix_<id>`).
async fn reconcile_indexes(
    client: &mut Object,
    report: &mut MigrationReport,
) -> Result<(), StoreError> {
    let existing: Vec<String> = client
        .query(
            "SELECT indexname::text FROM pg_indexes
             WHERE tablename = 'kci_nodes' AND indexname LIKE 'kci\\_nodes\\_ix\\_%'",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let declared: Vec<(String, String)> = INDEXES.iter().filter_map(index_sql).collect();
    for (name, sql) in &declared {
        if !existing.contains(name) {
            client.batch_execute(sql).await?;
            report.indexes_created.push(name.clone());
        }
    }
    for name in existing {
        if !declared.iter().any(|(n, _)| *n == name) {
            // `name` comes from pg_indexes and matched our own prefix; quoted anyway.
            client
                .batch_execute(&format!("DROP INDEX IF EXISTS \"{name}\""))
                .await?;
            report.indexes_dropped.push(name);
        }
    }
    Ok(())
}

/// The SQL expression of a node field usable in an index and in a query: a typed
/// column, or the text at a `data.*` path. `None` for fields with no such expression.
pub(crate) fn field_expr(path: &FieldPath) -> Option<String> {
    let rest = path.rest();
    match path.root() {
        Root::Data if !rest.is_empty() => Some(data_text_expr(rest)),
        _ if !rest.is_empty() => None,
        root => column_name(root).map(|c| format!("\"{c}\"")),
    }
}

/// `((data #>> '{a,b}') COLLATE "C")`: the text at a `data` path, compared bytewise.
/// The segments come from declared index paths (never from a client), and are quoted
/// for the array literal all the same.
pub(crate) fn data_text_expr(segments: &[String]) -> String {
    let parts: Vec<String> = segments
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let literal = format!("{{{}}}", parts.join(",")).replace('\'', "''");
    format!("((\"data\" #>> '{literal}') COLLATE \"C\")")
}

/// The column of a top-level field, if it has one.
pub(crate) fn column_name(root: Root) -> Option<&'static str> {
    Some(match root {
        Root::Kind => "kind",
        Root::Name => "name",
        Root::Path => "path",
        Root::Group => "group",
        Root::Parent => "parent",
        Root::State => "state",
        Root::Result => "result",
        Root::Created => "created",
        Root::Updated => "updated",
        Root::Timeout => "timeout",
        Root::Holdoff => "holdoff",
        Root::Owner => "owner",
        Root::Submitter => "submitter",
        Root::Treeid => "treeid",
        Root::UserGroups => "user_groups",
        Root::ProcessedByKcidbBridge => "processed_by_kcidb_bridge",
        Root::RetryCounter => "retry_counter",
        _ => return None,
    })
}

/// Whether a top-level field is an array column (GIN-indexed).
pub(crate) fn is_array_root(root: Root) -> bool {
    matches!(root, Root::Path | Root::UserGroups)
}

/// The name and `CREATE INDEX` statement of one declared index: GIN for a single
/// array field, otherwise a btree on the fields then `id` (so an equality prefix
/// yields ids in order and a page needs no sort).
fn index_sql(def: &IndexDef) -> Option<(String, String)> {
    let paths = def.paths();
    let name = format!("kci_nodes_ix_{}", def.id);
    if let [single] = paths.as_slice() {
        if single.rest().is_empty() && is_array_root(single.root()) {
            let col = column_name(single.root())?;
            return Some((
                name.clone(),
                format!("CREATE INDEX IF NOT EXISTS {name} ON kci_nodes USING gin (\"{col}\")"),
            ));
        }
    }
    let mut exprs = Vec::new();
    for p in &paths {
        if p.rest().is_empty() && is_array_root(p.root()) {
            return None;
        }
        exprs.push(field_expr(p)?);
    }
    exprs.push("id".to_owned());
    Some((
        name.clone(),
        format!(
            "CREATE INDEX IF NOT EXISTS {name} ON kci_nodes ({})",
            exprs.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_index_has_a_statement() {
        for def in INDEXES {
            let (name, sql) = index_sql(def).unwrap_or_else(|| panic!("index {}", def.id));
            assert!(sql.contains(&name), "{sql}");
        }
    }

    #[test]
    fn data_paths_are_text_at_a_constant_path() {
        let p = FieldPath::parse("data.kernel_revision.tree").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            field_expr(&p).as_deref(),
            Some("((\"data\" #>> '{\"kernel_revision\",\"tree\"}') COLLATE \"C\")")
        );
        let odd = data_text_expr(&["a'b".to_owned(), "c\"d".to_owned()]);
        assert_eq!(
            odd,
            "((\"data\" #>> '{\"a''b\",\"c\\\"d\"}') COLLATE \"C\")"
        );
    }
}
