//! Export and import for [`PgStore`] (`Store::export_records` and `import_records`).
//!
//! An export page is one keyset query per call (`WHERE key > cursor ORDER BY key
//! LIMIT n`; text keys in byte order, `COLLATE "C"`). The cursor holds the last key:
//! a node, user, group or telemetry id; an event's sequence id; a subscriber or token
//! id; a KV pair's namespace and key; a queue item's name, position and index; a
//! counter's name (empty when only the sequence mark was returned).
//!
//! An import is one transaction: node rows through the insert statement with
//! `ON CONFLICT (id) DO NOTHING` and the `kci_counts` changes of the rows actually
//! inserted (as `insert_nodes` does), every other record by `ON CONFLICT DO NOTHING`
//! on its key (the number of rows written tells imported from skipped), events with
//! their `seq` under the sequencer's lock, which then raises `kci_event_seq.last`.

use std::collections::HashMap;

use kernelci_core::store::{queue_gap, ExportCursor, ImportStats, Record, Section};

use super::*;

/// `u32` length + `a`, then `b`.
fn pair(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + a.len() + b.len());
    out.extend_from_slice(&(a.len() as u32).to_be_bytes());
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

fn unpair(c: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let bad = || Error::Invalid("bad export cursor".into());
    let len: [u8; 4] = c.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
    let end = 4 + u32::from_be_bytes(len) as usize;
    Ok((
        c.get(4..end).ok_or_else(bad)?.to_vec(),
        c.get(end..).ok_or_else(bad)?.to_vec(),
    ))
}

fn u64_of(b: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = b
        .try_into()
        .map_err(|_| Error::Invalid("bad export cursor".into()))?;
    Ok(u64::from_be_bytes(arr))
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn u64_from(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl PgStore {
    pub(super) async fn export_page(
        &self,
        section: Section,
        after: Option<&ExportCursor>,
        limit: usize,
    ) -> Result<(Vec<Record>, Option<ExportCursor>)> {
        let limit = limit.max(1);
        let n = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let first = after.is_none();
        let c: &[u8] = after.map_or(&[], ExportCursor::as_bytes);
        let text = |b: &[u8]| {
            String::from_utf8(b.to_vec())
                .map_err(|_| Error::Invalid("bad export cursor: not UTF-8".into()))
        };
        let mut out = Vec::new();
        let mut next: Vec<u8> = Vec::new();
        match section {
            Section::Nodes | Section::Users | Section::Groups | Section::Telemetry => {
                let (table, cols) = match section {
                    Section::Nodes => ("kci_nodes", "doc, version, id"),
                    Section::Users => ("kci_users", "doc, 0::bigint, id"),
                    Section::Groups => ("kci_groups", "doc, 0::bigint, id"),
                    _ => ("kci_telemetry", "doc, 0::bigint, id"),
                };
                let rows = client
                    .query(
                        &format!("SELECT {cols} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"),
                        &[&c, &n],
                    )
                    .await
                    .map_err(conv)?;
                for r in &rows {
                    out.push(match section {
                        Section::Nodes => Record::Node {
                            node: decode_doc(r, 0)?,
                            version: version_of(r, 1)?,
                        },
                        Section::Users => Record::User(from_json_text("user", r.get(0))?),
                        Section::Groups => Record::Group(from_json_text("group", r.get(0))?),
                        _ => Record::Telemetry(from_json_text("telemetry", r.get(0))?),
                    });
                    next = r.get::<_, Vec<u8>>(2);
                }
            }
            Section::Events => {
                let after_seq = if first { 0 } else { i64_of(u64_of(c)?) };
                let rows = client
                    .query(
                        "SELECT * FROM kci_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                        &[&after_seq, &n],
                    )
                    .await
                    .map_err(conv)?;
                for r in &rows {
                    let e = event_from_row(r)?;
                    next = e.sequence_id.to_be_bytes().to_vec();
                    out.push(Record::Event(e));
                }
            }
            Section::Subscribers | Section::Tokens => {
                let (sql, key) = match section {
                    Section::Subscribers => (
                        "SELECT * FROM kci_subscribers WHERE $1 OR subscriber_id COLLATE \"C\" > $2
                         ORDER BY subscriber_id COLLATE \"C\" LIMIT $3",
                        "subscriber_id",
                    ),
                    _ => (
                        "SELECT * FROM kci_tokens WHERE $1 OR id COLLATE \"C\" > $2
                         ORDER BY id COLLATE \"C\" LIMIT $3",
                        "id",
                    ),
                };
                let rows = client
                    .query(sql, &[&first, &text(c)?, &n])
                    .await
                    .map_err(conv)?;
                for r in &rows {
                    out.push(match section {
                        Section::Subscribers => Record::Subscriber(subscriber_from_row(r)),
                        _ => Record::Token(token_from_row(r)?),
                    });
                    next = r.get::<_, String>(key).into_bytes();
                }
            }
            Section::Kv => {
                let (ns, key) = if first {
                    (Vec::new(), Vec::new())
                } else {
                    unpair(c)?
                };
                let rows = client
                    .query(
                        "SELECT namespace, key, value FROM kci_kv
                         WHERE $1 OR (namespace, key) > ($2, $3)
                         ORDER BY namespace, key LIMIT $4",
                        &[&first, &ns, &key, &n],
                    )
                    .await
                    .map_err(conv)?;
                for r in &rows {
                    let (ns, key, value): (Vec<u8>, Vec<u8>, Vec<u8>) =
                        (r.get(0), r.get(1), r.get(2));
                    next = pair(&ns, &key);
                    out.push(Record::Kv {
                        namespace: utf8("KV namespace", ns)?,
                        key: utf8("KV key", key)?,
                        value: utf8("KV value", value)?,
                    });
                }
            }
            Section::Queues => {
                // Cursor: pair(name, pos (8) + index (8)).
                let (name, rest) = if first {
                    (Vec::new(), vec![0; 16])
                } else {
                    unpair(c)?
                };
                let pos = i64_of(u64_of(rest.get(..8).unwrap_or(&[]))?);
                let mut index = u64_of(rest.get(8..).unwrap_or(&[]))?;
                let rows = client
                    .query(
                        "SELECT name, pos, value FROM kci_queue
                         WHERE $1 OR (name, pos) > ($2, $3)
                         ORDER BY name, pos LIMIT $4",
                        &[&first, &name, &pos, &n],
                    )
                    .await
                    .map_err(conv)?;
                let mut current = (!first).then_some(name);
                for r in &rows {
                    let (qname, qpos, value): (Vec<u8>, i64, Vec<u8>) =
                        (r.get(0), r.get(1), r.get(2));
                    if current.as_deref() == Some(qname.as_slice()) {
                        index += 1;
                    } else {
                        index = 0;
                        current = Some(qname.clone());
                    }
                    let mut tail = u64_from(qpos).to_be_bytes().to_vec();
                    tail.extend_from_slice(&index.to_be_bytes());
                    next = pair(&qname, &tail);
                    out.push(Record::QueueItem {
                        name: utf8("queue name", qname)?,
                        index,
                        value: utf8("queue item", value)?,
                    });
                }
            }
            Section::Counters => {
                if first {
                    out.push(Record::EventSequence(self.last_event_sequence().await?));
                }
                // Cursor: empty after the sequence mark alone, else 1 + the name.
                if out.len() < limit {
                    let rows = client
                        .query(
                            "SELECT name, value FROM kci_counters
                             WHERE $1 OR name COLLATE \"C\" > $2
                             ORDER BY name COLLATE \"C\" LIMIT $3",
                            &[
                                &c.is_empty(),
                                &text(c.get(1..).unwrap_or(&[]))?,
                                &i64_of((limit - out.len()) as u64),
                            ],
                        )
                        .await
                        .map_err(conv)?;
                    for r in &rows {
                        let name: String = r.get(0);
                        let mut k = vec![1];
                        k.extend_from_slice(name.as_bytes());
                        next = k;
                        out.push(Record::Counter {
                            name,
                            value: u64_from(r.get(1)),
                        });
                    }
                }
            }
        }
        let more = out.len() >= limit;
        Ok((out, more.then(|| ExportCursor::from_bytes(next))))
    }

    /// A batch of nodes none of which is stored yet (the common case of a copy into
    /// an empty database): one binary `COPY` with the counter changes, all or nothing,
    /// and no lock shared with other importers, so several batches load at once.
    /// `None` when one of them is stored already (a re-run): the caller then
    /// imports the batch row by row, skipping those.
    async fn import_new_nodes(&self, records: &[Record]) -> Result<Option<ImportStats>> {
        let rows = records
            .iter()
            .filter_map(|r| match r {
                Record::Node { node, version } => Some(NodeRow::new(node, i64_of(version.0))),
                _ => None,
            })
            .collect::<Result<Vec<_>>>()?;
        let mut client = self.client().await?;
        match copy_nodes(&mut client, &rows).await {
            Ok(()) => Ok(Some(ImportStats {
                imported: rows.len() as u64,
                ..ImportStats::default()
            })),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(conv(e)),
        }
    }

    pub(super) async fn count_section(&self, section: Section) -> Result<u64> {
        if section == Section::Nodes {
            return count_all(&self.client().await?).await;
        }
        let (table, extra) = match section {
            Section::Nodes => ("kci_nodes", 0),
            Section::Events => ("kci_events WHERE seq IS NOT NULL", 0),
            Section::Subscribers => ("kci_subscribers", 0),
            Section::Users => ("kci_users", 0),
            Section::Groups => ("kci_groups", 0),
            Section::Tokens => ("kci_tokens", 0),
            Section::Kv => ("kci_kv", 0),
            Section::Telemetry => ("kci_telemetry", 0),
            Section::Queues => ("kci_queue", 0),
            Section::Counters => ("kci_counters", 1),
        };
        let n: i64 = self
            .client()
            .await?
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(conv)?
            .get(0);
        Ok(u64_from(n) + extra)
    }

    pub(super) async fn import_batch(&self, records: &[Record]) -> Result<ImportStats> {
        let only_nodes =
            !records.is_empty() && records.iter().all(|r| matches!(r, Record::Node { .. }));
        if only_nodes {
            if let Some(stats) = self.import_new_nodes(records).await? {
                return Ok(stats);
            }
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(conv)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEQUENCER_LOCK])
            .await
            .map_err(conv)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock_shared($1)",
            &[&MEMBERSHIP_LOCK],
        )
        .await
        .map_err(conv)?;
        let insert_node = tx
            .prepare(&format!("{} ON CONFLICT (id) DO NOTHING", insert_sql()))
            .await
            .map_err(conv)?;
        let mut deltas = Deltas::default();
        let mut max_seq: i64 = 0;
        let mut queues: HashMap<String, u64> = HashMap::new();
        let mut stats = ImportStats::default();
        let unique = |e: tokio_postgres::Error, what: String| {
            if is_unique_violation(&e) {
                Error::Conflict(what)
            } else {
                conv(e)
            }
        };
        for r in records {
            let written: u64 = match r {
                Record::Node { node, version } => {
                    let row = NodeRow::new(node, i64_of(version.0))?;
                    let n = tx
                        .execute(&insert_node, &row.params.refs())
                        .await
                        .map_err(conv)?;
                    if n > 0 {
                        deltas.add(row.keys, 1);
                    }
                    n
                }
                Record::Event(e) => {
                    let seq = i64_of(e.sequence_id);
                    let n = tx
                        .execute(
                            "INSERT INTO kci_events (seq, id, ts, channel, owner, data)
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
                            &[
                                &seq,
                                &e.id.bytes().as_slice(),
                                &ts(e.timestamp),
                                &e.channel,
                                &e.owner,
                                &json_text(&e.data)?,
                            ],
                        )
                        .await
                        .map_err(conv)?;
                    max_seq = max_seq.max(seq);
                    n
                }
                Record::EventSequence(last) => {
                    raise_sequence(&tx, max_seq).await?;
                    tx.execute(
                        "UPDATE kci_event_seq SET last = $1 WHERE last < $1",
                        &[&i64_of(*last)],
                    )
                    .await
                    .map_err(conv)?
                }
                Record::Counter { name, value } => tx
                    .execute(
                        "INSERT INTO kci_counters (name, value) VALUES ($1, $2)
                         ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value
                         WHERE kci_counters.value < EXCLUDED.value",
                        &[name, &i64_of(*value)],
                    )
                    .await
                    .map_err(conv)?,
                Record::Subscriber(s) => tx
                    .execute(
                        "INSERT INTO kci_subscribers
                             (subscriber_id, channel, username, promiscuous, last_event_id, created_at, last_poll)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subscriber_id) DO NOTHING",
                        &[
                            &s.subscriber_id,
                            &s.channel,
                            &s.user,
                            &s.promiscuous,
                            &i64_of(s.last_event_id),
                            &ts(s.created_at),
                            &s.last_poll.map(ts),
                        ],
                    )
                    .await
                    .map_err(conv)?,
                Record::User(u) => {
                    let (id, groups, doc) = user_params(u)?;
                    tx.execute(
                        "INSERT INTO kci_users (id, username, email, group_ids, doc)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                        &[&id, &u.username, &u.email, &groups, &doc],
                    )
                    .await
                    .map_err(|e| {
                        unique(
                            e,
                            "User with this id, username or e-mail already exists".into(),
                        )
                    })?
                }
                Record::Group(g) => tx
                    .execute(
                        "INSERT INTO kci_groups (id, name, doc) VALUES ($1, $2, $3)
                         ON CONFLICT (id) DO NOTHING",
                        &[&g.id.bytes().as_slice(), &g.name, &json_text(g)?],
                    )
                    .await
                    .map_err(|e| unique(e, format!("Group already exists: {}", g.name)))?,
                Record::Token(t) => tx
                    .execute(
                        "INSERT INTO kci_tokens (id, purpose, user_id, expires, used)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                        &[
                            &t.id,
                            &purpose_str(t.purpose),
                            &t.user_id.bytes().as_slice(),
                            &ts(t.expires),
                            &t.used,
                        ],
                    )
                    .await
                    .map_err(conv)?,
                Record::Kv {
                    namespace,
                    key,
                    value,
                } => tx
                    .execute(
                        "INSERT INTO kci_kv (namespace, key, value) VALUES ($1, $2, $3)
                         ON CONFLICT (namespace, key) DO NOTHING",
                        &[&namespace.as_bytes(), &key.as_bytes(), &value.as_bytes()],
                    )
                    .await
                    .map_err(conv)?,
                Record::Telemetry(e) => tx
                    .execute(
                        "INSERT INTO kci_telemetry (id, ts, doc) VALUES ($1, $2, $3)
                         ON CONFLICT (id) DO NOTHING",
                        &[&e.id.bytes().as_slice(), &ts(e.ts), &json_text(e)?],
                    )
                    .await
                    .map_err(conv)?,
                Record::QueueItem { name, index, value } => {
                    let len = match queues.get(name) {
                        Some(n) => *n,
                        None => {
                            let n: i64 = tx
                                .query_one(
                                    "SELECT count(*) FROM kci_queue WHERE name = $1",
                                    &[&name.as_bytes()],
                                )
                                .await
                                .map_err(conv)?
                                .get(0);
                            u64_from(n)
                        }
                    };
                    if *index < len {
                        0
                    } else if *index == len {
                        tx.execute(
                            "INSERT INTO kci_queue (name, value) VALUES ($1, $2)",
                            &[&name.as_bytes(), &value.as_bytes()],
                        )
                        .await
                        .map_err(conv)?;
                        queues.insert(name.clone(), len + 1);
                        1
                    } else {
                        return Err(queue_gap(name, len, *index));
                    }
                }
            };
            if written > 0 {
                stats.imported += 1;
            } else {
                stats.skipped_existing += 1;
            }
        }
        raise_sequence(&tx, max_seq).await?;
        apply(&tx, deltas).await?;
        tx.commit().await.map_err(conv)?;
        Ok(stats)
    }
}

/// Raises the last sequence id to at least `seq` (never lowers it).
async fn raise_sequence(tx: &impl GenericClient, seq: i64) -> Result<()> {
    if seq > 0 {
        tx.execute(
            "UPDATE kci_event_seq SET last = greatest(last, $1)",
            &[&seq],
        )
        .await
        .map_err(conv)?;
    }
    Ok(())
}
