//! The other records: durable counters, telemetry, KV pairs, queues and leases.

use super::*;

impl PgStore {
    pub(super) async fn next_counter_row(&self, name: &str) -> Result<u64> {
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

    pub(super) async fn insert_telemetry_row(&self, events: &[TelemetryEvent]) -> Result<()> {
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

    pub(super) async fn find_telemetry_row(
        &self,
        query: &TelemetryQuery,
    ) -> Result<Page<TelemetryEvent>> {
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

    pub(super) async fn scan_telemetry_row(
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

    pub(super) async fn trim_telemetry_row(&self, before: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM kci_telemetry WHERE ts < $1", &[&ts(before)])
            .await
            .map_err(conv)
    }

    pub(super) async fn kv_get_row(&self, namespace: &str, key: &str) -> Result<Option<String>> {
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

    pub(super) async fn kv_set_row(&self, namespace: &str, key: &str, value: &str) -> Result<()> {
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

    pub(super) async fn kv_delete_row(&self, namespace: &str, key: &str) -> Result<bool> {
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

    pub(super) async fn queue_push_row(&self, name: &str, value: &str) -> Result<()> {
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

    pub(super) async fn queue_pop_row(&self, name: &str) -> Result<Option<String>> {
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

    pub(super) async fn acquire_lease_row(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool> {
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
}
