//! The subscription registry of a shared store (table `kci_subscriptions`): every
//! server of a cluster registers its pub/sub subscriptions here, so that any of them
//! answers a listen, and the position of each subscription in the event log moves by
//! compare-and-set (two listens racing on one subscription never deliver one event
//! twice).

use kernelci_core::store::SubscriptionRecord;
use kernelci_core::time::Timestamp;
use kernelci_core::{Error, Result};
use tokio_postgres::Row;

use super::errors::conv;
use super::rows::{from_ts, ts};
use super::PgStore;

fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn record_from_row(r: &Row) -> SubscriptionRecord {
    let id: i64 = r.get("id");
    let position: i64 = r.get("position");
    SubscriptionRecord {
        id: u64::try_from(id).unwrap_or(0),
        channel: r.get("channel"),
        user: r.get("username"),
        promiscuous: r.get("promiscuous"),
        subscriber_id: r.get("subscriber_id"),
        created: from_ts(r.get("created")),
        last_poll: r
            .get::<_, Option<chrono::DateTime<chrono::Utc>>>("last_poll")
            .map(from_ts),
        position: u64::try_from(position).unwrap_or(0),
    }
}

impl PgStore {
    pub(super) async fn put_subscription_row(&self, rec: &SubscriptionRecord) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO kci_subscriptions
                     (id, channel, username, promiscuous, subscriber_id, created, last_poll, position)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET
                     channel = EXCLUDED.channel, username = EXCLUDED.username,
                     promiscuous = EXCLUDED.promiscuous, subscriber_id = EXCLUDED.subscriber_id,
                     created = EXCLUDED.created, last_poll = EXCLUDED.last_poll,
                     position = EXCLUDED.position",
                &[
                    &seq(rec.id),
                    &rec.channel,
                    &rec.user,
                    &rec.promiscuous,
                    &rec.subscriber_id,
                    &ts(rec.created),
                    &rec.last_poll.map(ts),
                    &seq(rec.position),
                ],
            )
            .await
            .map_err(conv)?;
        Ok(())
    }

    pub(super) async fn get_subscription_row(&self, id: u64) -> Result<Option<SubscriptionRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT * FROM kci_subscriptions WHERE id = $1", &[&seq(id)])
            .await
            .map_err(conv)?;
        Ok(row.as_ref().map(record_from_row))
    }

    pub(super) async fn delete_subscription_row(&self, id: u64) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute("DELETE FROM kci_subscriptions WHERE id = $1", &[&seq(id)])
            .await
            .map_err(conv)?;
        Ok(n > 0)
    }

    pub(super) async fn list_subscription_rows(&self) -> Result<Vec<SubscriptionRecord>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT * FROM kci_subscriptions ORDER BY id", &[])
            .await
            .map_err(conv)?;
        Ok(rows.iter().map(record_from_row).collect())
    }

    pub(super) async fn advance_subscription_row(
        &self,
        id: u64,
        from: u64,
        to: u64,
        now: Timestamp,
    ) -> Result<bool> {
        let client = self.client().await?;
        // One statement: the update when the position is still `from`, and whether
        // the row exists at all (to tell "moved meanwhile" from "gone").
        let row = client
            .query_one(
                "WITH moved AS (
                     UPDATE kci_subscriptions SET position = $3, last_poll = $4
                     WHERE id = $1 AND position = $2 RETURNING id)
                 SELECT (SELECT count(*) FROM moved) AS moved,
                        EXISTS (SELECT 1 FROM kci_subscriptions WHERE id = $1) AS present",
                &[&seq(id), &seq(from), &seq(to), &ts(now)],
            )
            .await
            .map_err(conv)?;
        let moved: i64 = row.get("moved");
        let present: bool = row.get("present");
        if moved > 0 {
            Ok(true)
        } else if present {
            Ok(false)
        } else {
            Err(Error::NotFound(format!("Subscription not found: {id}")))
        }
    }

    pub(super) async fn delete_idle_subscription_rows(&self, before: Timestamp) -> Result<u64> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM kci_subscriptions WHERE last_poll < $1",
                &[&ts(before)],
            )
            .await
            .map_err(conv)
    }
}
