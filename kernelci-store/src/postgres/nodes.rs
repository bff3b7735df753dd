//! Node rows: columns, inserts (statements or binary `COPY`), replacement, counter
//! changes, and the query paths (plan, page, count).

use std::sync::OnceLock;

use super::*;

/// A node's column values and counter keys.
pub(super) struct NodeRow {
    pub(super) params: Params,
    pub(super) keys: Vec<(i16, String)>,
}

impl NodeRow {
    pub(super) fn new(node: &Node, version: i64) -> Result<Self> {
        let mut doc = Vec::new();
        codec::encode_node(node, &mut doc).map_err(|e| StoreError::Unencodable(e.to_string()))?;
        let mut p = Params::default();
        p.bind(node.id.bytes().to_vec());
        p.bind(version);
        p.bind(node.kind.clone());
        p.bind(node.name.clone());
        p.bind(node.path.clone());
        p.bind(node.group.clone());
        p.bind(node.parent.map(|id| id.bytes().to_vec()));
        p.bind(node.state.as_str().to_owned());
        p.bind(node.result.map(|r| r.as_str().to_owned()));
        p.bind(
            node.data
                .clone()
                .map(|m| Json(serde_json::Value::Object(m))),
        );
        p.bind(
            node.artifacts
                .as_ref()
                .map(|a| Json(serde_json::to_value(a).unwrap_or_default())),
        );
        p.bind(
            node.debug
                .clone()
                .map(|m| Json(serde_json::Value::Object(m))),
        );
        p.bind(node.created.to_chrono());
        p.bind(node.updated.to_chrono());
        p.bind(node.timeout.to_chrono());
        p.bind(node.holdoff.map(|t| t.to_chrono()));
        p.bind(node.owner.clone());
        p.bind(node.submitter.clone());
        p.bind(node.treeid.clone());
        p.bind(node.user_groups.clone());
        p.bind(node.processed_by_kcidb_bridge);
        p.bind(node.retry_counter);
        let irregular = irregular_bits(node);
        p.bind(irregular);
        p.bind(doc);
        Ok(Self {
            params: p,
            keys: node_keys(node, irregular),
        })
    }
}

/// Batches from this size are written with `COPY ... FROM STDIN BINARY`.
pub(super) const COPY_FROM: usize = 32;

/// Events staged with the node rows of the same statement (see [`insert_values`]).
#[derive(Default)]
pub(super) struct StagedEvents {
    ids: Vec<Vec<u8>>,
    times: Vec<chrono::DateTime<chrono::Utc>>,
    channels: Vec<String>,
    owners: Vec<Option<String>>,
    data: Vec<String>,
}

impl StagedEvents {
    /// Adds `event` (committed unsequenced with the rows; numbered afterwards).
    pub(super) fn push(&mut self, event: &NewEvent) -> Result<()> {
        self.ids.push(event.id.bytes().to_vec());
        self.times.push(ts(event.timestamp));
        self.channels.push(event.channel.clone());
        self.owners.push(event.owner.clone());
        self.data.push(json_text(&event.data)?);
        Ok(())
    }
}

/// Inserts up to [`COPY_FROM`] rows, their counter changes and `events` (committed
/// unsequenced, for the sequencer to number) in a single statement: one round trip,
/// its own transaction (a data-modifying `WITH` runs to completion with the
/// statement, all or nothing). Returns each event's id and staging number.
pub(super) async fn insert_values(
    client: &impl GenericClient,
    rows: &[NodeRow],
    events: &StagedEvents,
) -> std::result::Result<Vec<(Vec<u8>, i64)>, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached(&insert_values_sql(rows.len()))
        .await?;
    let (ix, key, shard, n) = added(rows).columns(shard());
    let mut params: Vec<&(dyn ToSql + Sync)> = rows.iter().flat_map(|r| r.params.refs()).collect();
    params.extend([
        &ix as &(dyn ToSql + Sync),
        &key,
        &shard,
        &n,
        &events.ids,
        &events.times,
        &events.channels,
        &events.owners,
        &events.data,
    ]);
    let staged = client.query(&stmt, &params).await?;
    Ok(staged.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The statement of [`insert_values`] for `k` rows (built once per `k`).
fn insert_values_sql(k: usize) -> String {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        (0..=COPY_FROM)
            .map(|k| {
                let rows: Vec<String> = (0..k)
                    .map(|r| {
                        let ps: Vec<String> =
                            (1..=24).map(|c| format!("${}", r * 24 + c)).collect();
                        format!("({})", ps.join(", "))
                    })
                    .collect();
                let p = |i: usize| format!("${}", k * 24 + i);
                format!(
                    "WITH node AS (INSERT INTO kci_nodes ({NODE_COLUMNS}) VALUES {}),
                     counts AS ({})
                     INSERT INTO kci_events (id, ts, channel, owner, data)
                     SELECT * FROM unnest({}::bytea[], {}::timestamptz[], {}::text[], {}::text[], {}::text[])
                     RETURNING id, stage",
                    rows.join(", "),
                    COUNTS_UPSERT
                        .replace("$1::", &format!("{}::", p(1)))
                        .replace("$2::", &format!("{}::", p(2)))
                        .replace("$3::", &format!("{}::", p(3)))
                        .replace("$4::", &format!("{}::", p(4))),
                    p(5),
                    p(6),
                    p(7),
                    p(8),
                    p(9),
                )
            })
            .collect()
    });
    all.get(k).cloned().unwrap_or_default()
}

/// Writes `rows` with one binary `COPY`, in one transaction with the count update
/// (all or nothing: a duplicate id aborts the whole copy).
pub(super) async fn copy_nodes(
    client: &mut Object,
    rows: &[NodeRow],
) -> std::result::Result<(), tokio_postgres::Error> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;
    use tokio_postgres::types::Type;
    const TYPES: [Type; 24] = [
        Type::BYTEA,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::BYTEA,
        Type::TEXT,
        Type::TEXT,
        Type::JSONB,
        Type::JSONB,
        Type::JSONB,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::BOOL,
        Type::INT8,
        Type::INT4,
        Type::BYTEA,
    ];
    let tx = client.transaction().await?;
    let sink = tx
        .copy_in(&format!(
            "COPY kci_nodes ({NODE_COLUMNS}) FROM STDIN BINARY"
        ))
        .await?;
    let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &TYPES));
    for row in rows {
        writer.as_mut().write(&row.params.refs()).await?;
    }
    writer.as_mut().finish().await?;
    apply_raw(&tx, added(rows)).await?;
    tx.commit().await
}

/// The first id of `nodes` that is stored already or repeats within `nodes` (for the
/// message of a refused bulk insert).
pub(super) async fn first_taken_id(client: &Object, nodes: &[Node]) -> Result<ObjectId> {
    let keys: Vec<Vec<u8>> = nodes.iter().map(|n| n.id.bytes().to_vec()).collect();
    let stored: std::collections::HashSet<Vec<u8>> = client
        .query("SELECT id FROM kci_nodes WHERE id = ANY($1)", &[&keys])
        .await
        .map_err(conv)?
        .iter()
        .map(|r| r.get::<_, Vec<u8>>(0))
        .collect();
    let mut seen = std::collections::HashSet::new();
    Ok(nodes
        .iter()
        .find(|n| stored.contains(n.id.bytes().as_slice()) || !seen.insert(n.id))
        .map_or(nodes[0].id, |n| n.id))
}

pub(super) fn insert_sql() -> String {
    let placeholders: Vec<String> = (1..=24).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO kci_nodes ({NODE_COLUMNS}) VALUES ({})",
        placeholders.join(", ")
    )
}

pub(super) fn update_sql() -> String {
    let cols: Vec<&str> = NODE_COLUMNS.split(", ").collect();
    let sets: Vec<String> = cols
        .iter()
        .enumerate()
        .skip(2)
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    // $2 is the new version; the expected one is $25. The row as it was is returned
    // for the counters.
    format!(
        "WITH old AS (SELECT doc FROM kci_nodes WHERE id = $1 AND version = $25 FOR UPDATE)
         UPDATE kci_nodes SET version = $2, {} FROM old WHERE id = $1 AND version = $25
         RETURNING old.doc",
        sets.join(", ")
    )
}

/// The counter changes of replacing `old` by the row `new`.
pub(super) fn replaced(old: &Node, new: &NodeRow) -> Deltas {
    let mut d = Deltas::default();
    d.add(node_keys(old, irregular_bits(old)), -1);
    d.add(new.keys.clone(), 1);
    d
}

pub(super) fn decode_doc(row: &Row, col: usize) -> Result<Node> {
    let b: &[u8] = row.try_get(col).map_err(conv)?;
    codec::decode_node(b).map_err(|e| corrupt("node", e))
}

/// The binary document in column `col` written straight as the API's JSON.
pub(super) fn doc_json(row: &Row, col: usize) -> Result<Vec<u8>> {
    let b: &[u8] = row.try_get(col).map_err(conv)?;
    let mut out = Vec::with_capacity(b.len().saturating_mul(2).saturating_add(256));
    codec::write_node_json(b, &mut out).map_err(|e| corrupt("node", e))?;
    Ok(out)
}

pub(super) fn version_of(row: &Row, col: usize) -> Result<Version> {
    let v: i64 = row.try_get(col).map_err(conv)?;
    Ok(Version(u64::try_from(v).unwrap_or(0)))
}

pub(super) fn shard() -> i16 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    i16::try_from(NEXT.fetch_add(1, Ordering::Relaxed) % counts::SHARDS).unwrap_or(0)
}

/// The counter changes of inserting `rows`.
pub(super) fn added(rows: &[NodeRow]) -> Deltas {
    let mut d = Deltas::default();
    for r in rows {
        d.add(r.keys.clone(), 1);
    }
    d
}

/// Adds counter changes: `$1`-`$4` are the index ids, keys, shards and deltas.
const COUNTS_UPSERT: &str = "INSERT INTO kci_counts (ix, key, shard, n)
     SELECT * FROM unnest($1::int2[], $2::text[], $3::int2[], $4::int8[])
     ON CONFLICT (ix, key, shard) DO UPDATE SET n = kci_counts.n + EXCLUDED.n";

/// Applies counter changes inside the caller's transaction (one statement, rows in
/// key order, one shard per call).
pub(super) async fn apply(tx: &impl GenericClient, deltas: Deltas) -> Result<()> {
    apply_raw(tx, deltas).await.map_err(conv)
}

pub(super) async fn apply_raw(
    tx: &impl GenericClient,
    deltas: Deltas,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (ix, key, shard, n) = deltas.columns(shard());
    if !ix.is_empty() {
        let stmt = tx.prepare_cached(COUNTS_UPSERT).await?;
        tx.execute(&stmt, &[&ix, &key, &shard, &n]).await?;
    }
    Ok(())
}

/// The sum of the counter rows of (`ix`, `key`).
pub(super) async fn read_count(client: &impl GenericClient, ix: i16, key: &str) -> Result<u64> {
    let stmt = client
        .prepare_cached(
            "SELECT coalesce(sum(n), 0)::bigint FROM kci_counts WHERE ix = $1 AND key = $2",
        )
        .await
        .map_err(conv)?;
    let n: i64 = client
        .query_one(&stmt, &[&ix, &key])
        .await
        .map_err(conv)?
        .get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Plans `q` inside `tx`: data paths are trusted unless an irregular row exists.
pub(super) async fn plan(tx: &impl GenericClient, q: &Query) -> Result<Translation> {
    let t = translate(q, true);
    if t.irregular_mask == 0 {
        return Ok(t);
    }
    let stmt = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM kci_nodes WHERE irregular <> 0 AND irregular & $1 <> 0)",
        )
        .await
        .map_err(conv)?;
    let any: bool = tx
        .query_one(&stmt, &[&t.irregular_mask])
        .await
        .map_err(conv)?
        .get(0);
    Ok(if any { translate(q, false) } else { t })
}

/// The page statement of an exact plan with an engine order (`LIMIT`/`OFFSET`
/// applied), else the statement whose rows are filtered in Rust.
pub(super) fn page_sql(t: &Translation, q: &Query) -> (String, bool) {
    let order = t.order.as_deref().unwrap_or("id ASC");
    let mut sql = format!(
        "SELECT doc FROM kci_nodes WHERE {} ORDER BY {order}",
        t.where_sql
    );
    let windowed = t.exact && t.order.is_some();
    if windowed {
        if let Some(l) = q.limit {
            sql.push_str(&format!(" LIMIT {}", i64::try_from(l).unwrap_or(i64::MAX)));
        }
        if q.offset > 0 {
            sql.push_str(&format!(
                " OFFSET {}",
                i64::try_from(q.offset).unwrap_or(i64::MAX)
            ));
        }
    }
    (sql, windowed)
}

pub(super) async fn find_in(
    tx: &deadpool_postgres::Transaction<'_>,
    q: &Query,
    t: &Translation,
) -> Result<Vec<Node>> {
    let (sql, windowed) = page_sql(t, q);
    if windowed {
        let rows = tx.query(&sql, &t.params.refs()).await.map_err(conv)?;
        return rows.iter().map(|r| decode_doc(r, 0)).collect();
    }
    let offset = usize::try_from(q.offset).unwrap_or(usize::MAX);
    let limit = q
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let sorted_by_engine = t.order.is_some();
    let portal = tx.bind(&sql, &t.params.refs()).await.map_err(conv)?;
    let mut out = Vec::new();
    let mut skipped = 0usize;
    loop {
        let rows = tx.query_portal(&portal, BATCH).await.map_err(conv)?;
        let done = rows.len() < usize::try_from(BATCH).unwrap_or(0);
        for r in &rows {
            let node = decode_doc(r, 0)?;
            if !(t.exact || matches(&node, q)) {
                continue;
            }
            if sorted_by_engine {
                if skipped < offset {
                    skipped += 1;
                    continue;
                }
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            out.push(node);
        }
        if sorted_by_engine && out.len() >= limit {
            return Ok(out);
        }
        if done {
            break;
        }
    }
    if !sorted_by_engine {
        sort_nodes(&mut out, q.sort.as_ref());
        out = out.into_iter().skip(offset).take(limit).collect();
    }
    Ok(out)
}

pub(super) async fn count_in(
    tx: &deadpool_postgres::Transaction<'_>,
    q: &Query,
    t: &Translation,
) -> Result<u64> {
    if t.exact {
        if let Some((ix, key, _)) = query_key(q) {
            // `plan` trusted every data path the key relies on (no irregular row).
            return read_count(tx, ix, &key).await;
        }
        let n: i64 = tx
            .query_one(
                &format!("SELECT count(*) FROM kci_nodes WHERE {}", t.where_sql),
                &t.params.refs(),
            )
            .await
            .map_err(conv)?
            .get(0);
        return Ok(u64::try_from(n).unwrap_or(0));
    }
    let sql = format!("SELECT doc FROM kci_nodes WHERE {}", t.where_sql);
    let portal = tx.bind(&sql, &t.params.refs()).await.map_err(conv)?;
    let mut n = 0u64;
    loop {
        let rows = tx.query_portal(&portal, BATCH * 4).await.map_err(conv)?;
        for r in &rows {
            if matches(&decode_doc(r, 0)?, q) {
                n += 1;
            }
        }
        if rows.len() < usize::try_from(BATCH * 4).unwrap_or(0) {
            return Ok(n);
        }
    }
}

pub(super) async fn count_all(client: &impl GenericClient) -> Result<u64> {
    read_count(client, counts::TOTAL, "").await
}

/// Most generated statements a connection keeps prepared; past it the connection's
/// cache is emptied (the query language has no bound on distinct statement texts).
const STATEMENT_CACHE_CAP: usize = 256;

/// Prepares `sql` through the connection's statement cache, kept bounded.
pub(super) async fn prepare_bounded(
    client: &Object,
    sql: &str,
) -> Result<tokio_postgres::Statement> {
    if client.statement_cache.size() >= STATEMENT_CACHE_CAP {
        client.statement_cache.clear();
    }
    client.prepare_cached(sql).await.map_err(conv)
}

/// Most nodes a page may hold to come back as one `ARRAY(...)` value (a page with
/// its total, or behind an irregular-row check); a larger or unlimited page goes
/// through a transaction instead, in rows (one value is limited to 1 GB and built
/// whole in the server's memory).
pub(super) const ARRAY_PAGE_MAX: u64 = 10_000;

/// Whether [`one_statement`] serves this page: always when it is the bare
/// statement (no check, no total), else only for a bounded page.
pub(super) fn one_statement_fits(q: &Query, t: &Translation, total: bool) -> bool {
    let bare = t.irregular_mask == 0 && !total;
    bare || q.limit.is_some_and(|l| l <= ARRAY_PAGE_MAX)
}

/// What [`one_statement`] answers.
pub(super) struct OneStatement {
    /// The page (empty when not asked).
    pub(super) items: Vec<Node>,
    /// The total (0 when not asked).
    pub(super) total: u64,
}

/// Answers an exact plan with an engine order in a single statement, so under one
/// snapshot and in one round trip with no explicit transaction: the irregular-row
/// check the plan relies on, the total (from the counter rows when the filters are
/// a counted key, else `count(*)`) and the page as an array (its order kept by
/// `ARRAY(...)`). `Ok(None)` when the check found an irregular row: the caller
/// plans again without trusting the data paths.
pub(super) async fn one_statement(
    client: &Object,
    q: &Query,
    t: &Translation,
    items: bool,
    total: bool,
) -> Result<Option<OneStatement>> {
    let key = if total { query_key(q) } else { None };
    // The filter's parameters are bound only when the statement uses the filter
    // (PostgreSQL cannot type a parameter nothing refers to).
    let uses_filter = items || (total && key.is_none());
    let mut extra: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let base = if uses_filter { t.params.0.len() } else { 0 };
    let mut bind = |v: Box<dyn ToSql + Sync + Send>| {
        extra.push(v);
        format!("${}", base + extra.len())
    };
    let check = if t.irregular_mask != 0 {
        format!(
            "EXISTS (SELECT 1 FROM kci_nodes WHERE irregular <> 0 AND irregular & {}::int4 <> 0)",
            bind(Box::new(t.irregular_mask))
        )
    } else {
        "false".to_owned()
    };
    let count = match key {
        Some((ix, key, _)) => format!(
            "SELECT coalesce(sum(n), 0)::bigint FROM kci_counts WHERE ix = {}::int2 AND key = {}::text",
            bind(Box::new(ix)),
            bind(Box::new(key))
        ),
        None => format!("SELECT count(*) FROM kci_nodes WHERE {}", t.where_sql),
    };
    let page = {
        let order = t.order.as_deref().unwrap_or("id ASC");
        let mut sql = format!(
            "SELECT doc FROM kci_nodes WHERE {} ORDER BY {order}",
            t.where_sql
        );
        if items {
            if let Some(l) = q.limit {
                let l = i64::try_from(l).unwrap_or(i64::MAX);
                sql.push_str(&format!(" LIMIT {}::int8", bind(Box::new(l))));
            }
            if q.offset > 0 {
                let o = i64::try_from(q.offset).unwrap_or(i64::MAX);
                sql.push_str(&format!(" OFFSET {}::int8", bind(Box::new(o))));
            }
        }
        sql
    };
    let mut params = if uses_filter {
        t.params.refs()
    } else {
        Vec::new()
    };
    params.extend(extra.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
    let decode = |b: &[u8]| codec::decode_node(b).map_err(|e| corrupt("node", e));
    // With nothing to check, a page alone or a count alone is the bare statement,
    // as a hand-written query would be (no wrapper for the planner to handle).
    if t.irregular_mask == 0 && items != total {
        if items {
            let stmt = prepare_bounded(client, &page).await?;
            let rows = client.query(&stmt, &params).await.map_err(conv)?;
            let items = rows
                .iter()
                .map(|r| decode(r.try_get(0).map_err(conv)?))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Some(OneStatement { items, total: 0 }));
        }
        let stmt = prepare_bounded(client, &count).await?;
        let n: i64 = client
            .query_one(&stmt, &params)
            .await
            .map_err(conv)?
            .try_get(0)
            .map_err(conv)?;
        return Ok(Some(OneStatement {
            items: Vec::new(),
            total: u64::try_from(n).unwrap_or(0),
        }));
    }
    let count = if total {
        format!("({count})")
    } else {
        "0::bigint".to_owned()
    };
    let page = if items {
        format!("ARRAY({page})")
    } else {
        "ARRAY[]::bytea[]".to_owned()
    };
    let sql = format!("SELECT {check}, {count}, {page}");
    let stmt = prepare_bounded(client, &sql).await?;
    let row = client.query_one(&stmt, &params).await.map_err(conv)?;
    let irregular: bool = row.try_get(0).map_err(conv)?;
    if irregular {
        return Ok(None);
    }
    let n: i64 = row.try_get(1).map_err(conv)?;
    let docs: Vec<&[u8]> = row.try_get(2).map_err(conv)?;
    let items = docs.into_iter().map(decode).collect::<Result<Vec<_>>>()?;
    Ok(Some(OneStatement {
        items,
        total: u64::try_from(n).unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::query::Mode;

    fn q(s: &str, limit: Option<u64>) -> Query {
        Query::parse_str(s, Mode::Page)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .with_window(limit, 0)
    }

    #[test]
    fn only_bounded_pages_come_back_as_one_array() {
        let checked = q(
            "data.kernel_revision.tree=mainline",
            Some(ARRAY_PAGE_MAX + 1),
        );
        let t = translate(&checked, true);
        assert_ne!(t.irregular_mask, 0);
        assert!(!one_statement_fits(&checked, &t, false));
        assert!(!one_statement_fits(&checked, &t, true));
        let unlimited = q("data.kernel_revision.tree=mainline", None);
        assert!(!one_statement_fits(&unlimited, &t, false));
        let bare = q("kind=test", None);
        let t = translate(&bare, true);
        assert!(
            one_statement_fits(&bare, &t, false),
            "a bare page streams rows"
        );
        assert!(!one_statement_fits(&bare, &t, true));
        let page = q("kind=test", Some(50));
        assert!(one_statement_fits(&page, &t, true));
    }
}
