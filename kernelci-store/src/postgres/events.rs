//! The event log and durable subscriber positions: appends (staged unsequenced,
//! then numbered by the sequencer here, see the module docs of `postgres`), reads in
//! sequence order, trims.

use super::*;

impl PgStore {
    /// Numbers the event staged as `stage` (and every other pending one): `event`
    /// with its sequence id. The sequencer runs in a task of its own, so a caller
    /// that goes away (its client disconnected) never leaves its committed event
    /// unnumbered.
    pub(super) async fn sequence_staged(&self, stage: i64, event: NewEvent) -> Result<Event> {
        let pool = self.pool.clone();
        let run = tokio::spawn(async move {
            let client = pool
                .get()
                .await
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            sequence(&client, &[stage]).await
        });
        let numbered = run
            .await
            .map_err(|e| Error::Storage(format!("event sequencer: {e}")))??;
        let seq = numbered
            .first()
            .map(|(_, seq)| *seq)
            .ok_or_else(|| Error::Storage("event left unsequenced".into()))?;
        Ok(event.with_sequence(seq))
    }

    pub(super) async fn append_event_row(&self, event: NewEvent) -> Result<Event> {
        let stage = stage_event(&self.client().await?, &event).await?;
        self.sequence_staged(stage, event).await
    }

    pub(super) async fn events_after_row(
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

    pub(super) async fn find_events_row(&self, query: &EventQuery) -> Result<Vec<Event>> {
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

    pub(super) async fn last_event_sequence_row(&self) -> Result<u64> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one("SELECT last FROM kci_event_seq", &[])
            .await
            .map_err(conv)?
            .get(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) async fn trim_events_row(&self, before: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM kci_events WHERE ts < $1 AND seq IS NOT NULL",
                &[&ts(before)],
            )
            .await
            .map_err(conv)
    }

    pub(super) async fn get_subscriber_row(
        &self,
        subscriber_id: &str,
    ) -> Result<Option<SubscriberState>> {
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

    pub(super) async fn put_subscriber_row(&self, state: &SubscriberState) -> Result<()> {
        self.insert_subscriber(
            state,
            "DO UPDATE SET
                 channel = EXCLUDED.channel, username = EXCLUDED.username,
                 promiscuous = EXCLUDED.promiscuous, last_event_id = EXCLUDED.last_event_id,
                 created_at = EXCLUDED.created_at, last_poll = EXCLUDED.last_poll",
        )
        .await?;
        Ok(())
    }

    pub(super) async fn create_subscriber_row(
        &self,
        state: &SubscriberState,
    ) -> Result<Option<SubscriberState>> {
        // Inserted unless present; a conflicting concurrent insert waits for the
        // other transaction and then finds its row.
        if self.insert_subscriber(state, "DO NOTHING").await? > 0 {
            return Ok(None);
        }
        self.get_subscriber_row(&state.subscriber_id).await
    }

    /// Inserts `state`, with `on_conflict` (a constant of ours) as the action on an
    /// existing id; returns the rows written.
    async fn insert_subscriber(&self, state: &SubscriberState, on_conflict: &str) -> Result<u64> {
        let client = self.client().await?;
        let last = i64::try_from(state.last_event_id).unwrap_or(i64::MAX);
        client
            .execute(
                &format!(
                    "INSERT INTO kci_subscribers
                         (subscriber_id, channel, username, promiscuous, last_event_id, created_at, last_poll)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (subscriber_id) {on_conflict}"
                ),
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
            .map_err(conv)
    }

    pub(super) async fn advance_subscriber_row(
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

    pub(super) async fn delete_subscriber_row(&self, subscriber_id: &str) -> Result<bool> {
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

    pub(super) async fn list_subscribers_row(&self) -> Result<Vec<SubscriberState>> {
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
}

/// Commits nothing by itself: inserts `event` unsequenced (in the caller's
/// transaction, if any) and returns its staging number.
pub(super) async fn stage_event(client: &impl GenericClient, event: &NewEvent) -> Result<i64> {
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

/// The sequencer (see the module docs of `postgres`): under the sequencer lock,
/// numbers every committed unsequenced event after the last number given, in
/// staging order, and notifies the listeners of every server. Statements of one
/// simple-protocol message: they run as one implicit transaction (the advisory
/// lock is held to its commit), each with a snapshot of its own (read committed,
/// which `open` sets for every session), so the numbering statement sees every
/// event committed before the lock was granted. A run that finds nothing to number
/// writes nothing. Only constants of ours are spliced in.
pub(super) fn sequencer_sql() -> String {
    format!(
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
         SELECT pg_notify('{}', max(seq)::text) FROM numbered HAVING count(*) > 0;",
        notify::CHANNEL
    )
}

/// Runs the sequencer and returns the sequence id of each event staged as one of
/// `stages` (one round trip; the caller's stage numbers are the only other text).
pub(super) async fn sequence(
    client: &tokio_postgres::Client,
    stages: &[i64],
) -> Result<Vec<(i64, u64)>> {
    let list: Vec<String> = stages.iter().map(i64::to_string).collect();
    let sql = format!(
        "{} SELECT stage, seq FROM kci_events WHERE stage IN ({}) AND seq IS NOT NULL;",
        sequencer_sql(),
        list.join(", ")
    );
    let messages = client.simple_query(&sql).await.map_err(conv)?;
    let mut out = Vec::new();
    for m in &messages {
        if let tokio_postgres::SimpleQueryMessage::Row(r) = m {
            if r.columns().len() == 2 {
                let stage = r.get(0).and_then(|t| t.parse::<i64>().ok());
                let seq = r.get(1).and_then(|t| t.parse::<u64>().ok());
                if let (Some(stage), Some(seq)) = (stage, seq) {
                    out.push((stage, seq));
                }
            }
        }
    }
    if out.len() != stages.len() {
        return Err(Error::Storage("event left unsequenced".into()));
    }
    Ok(out)
}
