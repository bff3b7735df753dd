//! The broker over a shared store (several servers, one database; see
//! [`Store::is_shared`](kernelci_core::store::Store::is_shared)).
//!
//! Every subscription, live or durable, is a [`SubscriptionRecord`] in the store and
//! reads the event log after its recorded position, so any server answers its
//! listens: a client may subscribe through one server and listen through another,
//! and the subscription counts of `/stats/subscriptions` are the cluster's.
//!
//! - **Position**: a live subscription starts at the end of the log when it is
//!   created; a durable one at its subscriber's acknowledged position. A listen
//!   moves the position over the events it passes (other owners') and the one it
//!   delivers, by compare-and-set: two listens racing on one subscription, on any
//!   servers, never deliver the same event twice, and never lose one.
//! - **Acknowledgement** (durable): each listen first acknowledges, in the
//!   subscriber's record, the position the previous listen left, as the in-memory
//!   mode does.
//! - **Wake-ups**: a waiting listen is woken by this server's broadcasts and by
//!   [`Store::wait_events`](kernelci_core::store::Store::wait_events) (PostgreSQL
//!   `NOTIFY` from the sequencer of any server), and reads the log again every
//!   [`LOG_RECHECK`] anyway; the log is the truth.
//! - **Envelopes**: the broadcast's own while it is among this server's recent ones
//!   (so `/publish` attributes are kept); an event published through another server
//!   is delivered with an envelope rebuilt from the log (default `type` and
//!   `source`, as the reference's replays are).
//! - **Idle subscriptions** are removed from the store by the housekeeping round of
//!   any server.
//! - **Memory**: nothing per subscription is kept between listens.

use std::sync::atomic::Ordering;

use kernelci_core::events::Event;
use kernelci_core::store::SubscriptionRecord;
use kernelci_core::time::Timestamp;
use kernelci_core::Error as CoreError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::broker::{owned_by, Broker, Delivery, LOG_BATCH, LOG_RECHECK};
use super::envelope::Envelope;
use super::subscription::{accepts, SubscriptionInfo};
use super::PubSubError;

impl From<SubscriptionRecord> for SubscriptionInfo {
    fn from(r: SubscriptionRecord) -> Self {
        SubscriptionInfo {
            id: r.id,
            channel: r.channel,
            user: r.user,
            promiscuous: r.promiscuous,
            subscriber_id: r.subscriber_id,
            created: r.created,
            last_poll: r.last_poll,
        }
    }
}

impl Broker {
    /// [`Broker::subscribe`] on a shared store: the subscription is registered in
    /// the store.
    pub(super) async fn subscribe_shared(
        &self,
        channel: &str,
        user: &str,
        promiscuous: bool,
        subscriber_id: Option<&str>,
    ) -> Result<SubscriptionInfo, PubSubError> {
        let now = Timestamp::now();
        let held = self
            .store
            .list_subscriptions()
            .await?
            .iter()
            .filter(|s| s.user == user)
            .count();
        self.check_quota(user, held)?;
        let last = self.store.last_event_sequence().await?;
        let position = match subscriber_id {
            None => last,
            Some(sid) => {
                self.subscriber_position(sid, channel, user, promiscuous, now, last)
                    .await?
            }
        };
        let record = SubscriptionRecord {
            id: self.store.next_counter("subscription").await?,
            channel: channel.to_owned(),
            user: user.to_owned(),
            promiscuous,
            subscriber_id: subscriber_id.map(str::to_owned),
            created: now,
            last_poll: None,
            position,
        };
        self.store.put_subscription(&record).await?;
        Ok(record.into())
    }

    /// The registered subscription `id` if it is `user`'s.
    async fn owned_shared(&self, id: u64, user: &str) -> Result<SubscriptionRecord, PubSubError> {
        let found = self.store.get_subscription(id).await?;
        owned_by(id, found, |r| &r.user, user)
    }

    /// [`Broker::unsubscribe`] on a shared store. A listen waiting on it, on any
    /// server, answers a keep-alive at its next look at the store.
    pub(super) async fn unsubscribe_shared(&self, id: u64, user: &str) -> Result<(), PubSubError> {
        self.owned_shared(id, user).await?;
        self.store.delete_subscription(id).await?;
        Ok(())
    }

    /// [`Broker::listen`] on a shared store (see the module docs).
    pub(super) async fn listen_shared(
        &self,
        id: u64,
        user: &str,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<Delivery, PubSubError> {
        let mut record = self.owned_shared(id, user).await?;
        let channel = record.channel.clone();
        let now = Timestamp::now();
        let deadline = Instant::now() + self.keep_alive;
        if let Some(sid) = &record.subscriber_id {
            match self
                .store
                .advance_subscriber(sid, record.position, now)
                .await
            {
                Ok(()) => {}
                Err(CoreError::NotFound(_)) => {
                    tracing::warn!(subscriber_id = %sid, "durable subscriber record missing");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut local = self.high.subscribe();
        // The poll time is recorded by the first compare-and-set, even when there
        // is nothing to deliver.
        let mut polled = false;
        let found = loop {
            let seen = self.log_high.load(Ordering::Acquire);
            let batch = self
                .store
                .events_after(record.position, Some(&channel), LOG_BATCH)
                .await?;
            let full = batch.len() == LOG_BATCH;
            let mut to = record.position;
            let mut next: Option<Event> = None;
            for event in batch {
                to = event.sequence_id;
                if accepts(record.promiscuous, &record.user, event.owner.as_deref()) {
                    next = Some(event);
                    break;
                }
            }
            // Built before the position moves: a listen cancelled while it waits
            // for the broadcast's envelope leaves the event to the next one.
            let text = match &next {
                Some(event) => Some(self.envelope_of(event, deadline).await),
                None => None,
            };
            if to != record.position || !polled {
                match self
                    .store
                    .advance_subscription(id, record.position, to, now)
                    .await
                {
                    Ok(true) => {
                        record.position = to;
                        polled = true;
                    }
                    // Another listen moved it: start again from where it is now.
                    Ok(false) => match self.store.get_subscription(id).await? {
                        Some(r) => {
                            record = r;
                            continue;
                        }
                        None => break None,
                    },
                    Err(CoreError::NotFound(_)) => break None,
                    Err(e) => return Err(e.into()),
                }
            }
            if let Some(text) = text {
                break Some(text);
            }
            if full {
                continue;
            }
            let until = deadline.min(Instant::now() + LOG_RECHECK);
            if !self
                .wait_for_events(seen, until, &mut local, &mut stopping)
                .await
                && (Instant::now() >= deadline || *stopping.borrow())
            {
                break None;
            }
            // Unsubscribed or dropped meanwhile (possibly through another server)?
            match self.store.get_subscription(id).await? {
                Some(r) => record = r,
                None => break None,
            }
        };
        let text = found.unwrap_or_else(|| {
            std::sync::Arc::from(Envelope::beep(&self.source, Timestamp::now()).to_python_json())
        });
        Ok(Delivery { channel, text })
    }

    /// A receiver of this server's newest broadcast sequence id, for
    /// [`Broker::wait_for_events`]: take it before reading the log, so that an
    /// event appended meanwhile wakes the wait.
    pub fn watch_events(&self) -> watch::Receiver<u64> {
        self.high.subscribe()
    }

    /// Waits for a wake-up: a broadcast of this server, a notification of an event
    /// above `seen` from the store (by any server sharing it), `until`, or the
    /// server stopping. `true` when woken by an event. Works on any store: one
    /// without notifications waits for this server's broadcasts.
    pub async fn wait_for_events(
        &self,
        seen: u64,
        until: Instant,
        local: &mut watch::Receiver<u64>,
        stopping: &mut watch::Receiver<bool>,
    ) -> bool {
        let timeout = until.saturating_duration_since(Instant::now());
        tokio::select! {
            r = self.store.wait_events(seen, timeout) => match r {
                Ok(high) if high > seen => {
                    self.log_high.fetch_max(high, Ordering::AcqRel);
                    true
                }
                // A store without notifications answers at once: wait for the
                // other wake-ups until `until`.
                _ => tokio::select! {
                    r = local.changed() => r.is_ok(),
                    _ = tokio::time::sleep_until(until) => false,
                    _ = crate::state::stopped(stopping) => false,
                },
            },
            r = local.changed() => r.is_ok(),
            _ = crate::state::stopped(stopping) => false,
        }
    }

    /// Every registered subscription of the cluster, by id.
    pub(super) async fn subscriptions_shared(&self) -> Result<Vec<SubscriptionInfo>, PubSubError> {
        Ok(self
            .store
            .list_subscriptions()
            .await?
            .into_iter()
            .map(SubscriptionInfo::from)
            .collect())
    }
}
