//! The broker: the registry of subscriptions, broadcast, listen, and the queues.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use kernelci_core::events::Event;
use kernelci_core::store::{Store, SubscriberState};
use kernelci_core::time::Timestamp;
use kernelci_core::Error as CoreError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::envelope::Envelope;
use super::queue::Queues;
use super::subscription::{Cursor, Feed, Subscription, SubscriptionInfo};
use super::PubSubError;
use crate::config::HttpConfig;

/// How many recent envelopes (by sequence id) are kept for durable deliveries.
pub const RECENT_CAP: usize = 1024;

/// How many events a durable subscription reads from the log at a time.
pub(super) const LOG_BATCH: usize = 256;

/// How long a durable delivery waits for the broadcast of an event it found in the
/// log before the broadcast happened (to reuse the broadcast's envelope).
const BROADCAST_GRACE: Duration = Duration::from_secs(1);

/// How often a waiting durable listen reads the log again without a wake-up: an
/// event appended by another server sharing the store (which wakes only its own
/// listeners) is delivered within this time.
pub const LOG_RECHECK: Duration = Duration::from_secs(1);

/// What a `listen` returns: the channel and the envelope text.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The subscription's channel.
    pub channel: String,
    /// The CloudEvent as Python `json.dumps` text.
    pub text: Arc<str>,
}

/// The in-process message broker (see the [module docs](super)).
pub struct Broker {
    pub(super) store: Arc<dyn Store>,
    /// The store is shared by several servers: subscriptions are registered in it
    /// (see [`super::shared`]) instead of `subs`.
    shared: bool,
    pub(super) source: String,
    pub(super) keep_alive: Duration,
    subs: RwLock<BTreeMap<u64, Arc<Subscription>>>,
    /// Envelopes of recent broadcasts, by sequence id.
    recent: Mutex<BTreeMap<u64, Arc<str>>>,
    /// The highest sequence id broadcast (or known to predate this process).
    pub(super) high: watch::Sender<u64>,
    /// The highest sequence id the store notified (shared stores).
    pub(super) log_high: AtomicU64,
    /// Serialises the check-and-create of durable subscriber records.
    registry: tokio::sync::Mutex<()>,
    queues: Queues,
    /// `max_subscriptions_per_user`.
    max_per_user: usize,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("subscriptions", &self.read_subs().len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    /// A broker over the store's event log, with the CloudEvent source and the
    /// keep-alive period of `config`.
    pub fn new(store: Arc<dyn Store>, config: &HttpConfig) -> Self {
        Broker {
            shared: store.is_shared(),
            store,
            log_high: AtomicU64::new(0),
            source: config.cloud_events_source.clone(),
            keep_alive: config.keep_alive(),
            subs: RwLock::new(BTreeMap::new()),
            recent: Mutex::new(BTreeMap::new()),
            high: watch::Sender::new(0),
            registry: tokio::sync::Mutex::new(()),
            queues: Queues::default(),
            max_per_user: config.max_subscriptions_per_user,
        }
    }

    /// The CloudEvent `source` of this server.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn read_subs(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<Subscription>>> {
        self.subs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_subs(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<Subscription>>> {
        self.subs.write().unwrap_or_else(|e| e.into_inner())
    }

    // ---- subscriptions -------------------------------------------------------------

    /// Creates a subscription of `user` to `channel` with the next id of the store's
    /// `subscription` counter.
    ///
    /// With a `subscriber_id` the subscription is durable: on first use the
    /// subscriber's record is created at the current end of the log (nothing is
    /// replayed); an existing record of the same user makes the subscription read
    /// the log from the last acknowledged event (every later event of the channel is
    /// delivered, not only 1000 as in the reference); a record of another user is
    /// refused with [`PubSubError::SubscriberTaken`] (the reference answers 500 and
    /// registers the subscription anyway). The record keeps the channel and
    /// promiscuity of its first use; a subscription reads its own request's channel
    /// and applies its own request's owner rule.
    pub async fn subscribe(
        &self,
        channel: &str,
        user: &str,
        promiscuous: bool,
        subscriber_id: Option<&str>,
    ) -> Result<SubscriptionInfo, PubSubError> {
        if self.shared {
            return self
                .subscribe_shared(channel, user, promiscuous, subscriber_id)
                .await;
        }
        let now = Timestamp::now();
        // Subscriptions never polled are kept (as the reference), so their number
        // per user is bounded instead.
        let held = self.read_subs().values().filter(|s| s.user == user).count();
        self.check_quota(user, held)?;
        let sub = match subscriber_id {
            None => {
                let id = self.store.next_counter("subscription").await?;
                Subscription::live(id, channel, user, promiscuous, now)
            }
            Some(sid) => {
                let last = self.store.last_event_sequence().await?;
                // Events up to here can only come from the log, never from a
                // broadcast still on its way.
                self.high.send_modify(|h| *h = (*h).max(last));
                let position = self
                    .subscriber_position(sid, channel, user, promiscuous, now, last)
                    .await?;
                let id = self.store.next_counter("subscription").await?;
                Subscription::durable(id, channel, user, promiscuous, now, sid, position)
            }
        };
        let info = sub.info();
        self.write_subs().insert(sub.id, Arc::new(sub));
        Ok(info)
    }

    /// Refuses a new subscription of `user`, who holds `held`, past
    /// `max_subscriptions_per_user`.
    pub(super) fn check_quota(&self, user: &str, held: usize) -> Result<(), PubSubError> {
        if held >= self.max_per_user {
            return Err(PubSubError::TooMany {
                user: user.to_owned(),
                limit: self.max_per_user,
            });
        }
        Ok(())
    }

    /// Where the durable subscriber `sid` resumes: its acknowledged position, or
    /// `last` (the end of the log) for a new subscriber, whose record is created
    /// then. Another user's subscriber id is refused.
    pub(super) async fn subscriber_position(
        &self,
        sid: &str,
        channel: &str,
        user: &str,
        promiscuous: bool,
        now: Timestamp,
        last: u64,
    ) -> Result<u64, PubSubError> {
        // Serialises this process's creations; the store's create-if-absent makes
        // them atomic across the servers sharing it.
        let _registry = self.registry.lock().await;
        let created = self
            .store
            .create_subscriber(&SubscriberState {
                subscriber_id: sid.to_owned(),
                channel: channel.to_owned(),
                user: user.to_owned(),
                promiscuous,
                last_event_id: last,
                created_at: now,
                last_poll: None,
            })
            .await?;
        match created {
            Some(state) if state.user != user => Err(PubSubError::SubscriberTaken(sid.to_owned())),
            Some(state) => Ok(state.last_event_id),
            None => Ok(last),
        }
    }

    /// The subscription `id` if it is `user`'s.
    fn owned(&self, id: u64, user: &str) -> Result<Arc<Subscription>, PubSubError> {
        let found = self.read_subs().get(&id).cloned();
        owned_by(id, found, |s| &s.user, user)
    }

    /// Removes `user`'s subscription `id` (a durable subscriber's record is kept).
    /// A listen in progress on it returns a keep-alive.
    pub async fn unsubscribe(&self, id: u64, user: &str) -> Result<(), PubSubError> {
        if self.shared {
            return self.unsubscribe_shared(id, user).await;
        }
        self.owned(id, user)?;
        if let Some(sub) = self.write_subs().remove(&id) {
            sub.close();
        }
        Ok(())
    }

    /// Every subscription, by id (on a shared store, every server's).
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionInfo>, PubSubError> {
        if self.shared {
            return self.subscriptions_shared().await;
        }
        Ok(self.read_subs().values().map(|s| s.info()).collect())
    }

    /// Drops subscriptions whose last poll is older than `idle` at `now` (never-polled
    /// ones are kept, as in the reference); returns how many.
    pub async fn drop_idle(&self, idle: Duration, now: Timestamp) -> Result<u64, PubSubError> {
        let secs = i64::try_from(idle.as_secs()).unwrap_or(i64::MAX);
        let cutoff = now.plus_seconds(-secs);
        if self.shared {
            return Ok(self.store.delete_idle_subscriptions(cutoff).await?);
        }
        let mut subs = self.write_subs();
        let idle_ids: Vec<u64> = subs
            .values()
            .filter(|s| s.last_poll().is_some_and(|t| t < cutoff))
            .map(|s| s.id)
            .collect();
        for id in &idle_ids {
            if let Some(sub) = subs.remove(id) {
                sub.close();
            }
        }
        Ok(idle_ids.len() as u64)
    }

    // ---- broadcast -----------------------------------------------------------------

    /// Delivers a stored event to the subscriptions of its channel: its envelope
    /// ([`Envelope::of_event`]: the event's owner and data, `attributes`, the
    /// sequence id) is buffered for every live subscription whose owner rule accepts
    /// it, durable subscriptions are woken (they read the log), and the envelope is
    /// kept among the recent ones so that durable deliveries reuse it.
    pub fn broadcast(&self, event: &Event, attributes: serde_json::Map<String, serde_json::Value>) {
        let envelope = Envelope::of_event(event, &self.source, Timestamp::now(), &attributes);
        let text: Arc<str> = Arc::from(envelope.to_python_json());
        {
            let mut recent = lock(&self.recent);
            recent.insert(event.sequence_id, text.clone());
            while recent.len() > RECENT_CAP {
                recent.pop_first();
            }
        }
        self.high.send_modify(|h| *h = (*h).max(event.sequence_id));
        let owner = envelope.owner();
        for sub in self.read_subs().values() {
            if sub.channel != event.channel {
                continue;
            }
            match &sub.feed {
                Feed::Live(live) => {
                    if sub.accepts(owner) {
                        live.offer(sub.id, text.clone());
                        sub.wake.notify_one();
                    }
                }
                Feed::Durable(_) => sub.wake.notify_one(),
            }
        }
    }

    fn recent(&self, sequence_id: u64) -> Option<Arc<str>> {
        lock(&self.recent).get(&sequence_id).cloned()
    }

    // ---- listen --------------------------------------------------------------------

    /// The next message of `user`'s subscription `id`.
    ///
    /// Waits at most the keep-alive period, then answers a keep-alive (a CloudEvent
    /// with `"data": "BEEP"`); answers one at once when the server is stopping or the
    /// subscription is removed meanwhile. Listens of one subscription take turns.
    ///
    /// Durable subscriptions first acknowledge the message delivered by their
    /// previous listen (and record the poll time in the store), then deliver the
    /// next event of the log accepted by the owner rule.
    pub async fn listen(
        &self,
        id: u64,
        user: &str,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<Delivery, PubSubError> {
        if self.shared {
            return self.listen_shared(id, user, stopping).await;
        }
        let sub = self.owned(id, user)?;
        let now = Timestamp::now();
        sub.touch(now);
        let deadline = Instant::now() + self.keep_alive;
        let found = match &sub.feed {
            Feed::Live(live) => {
                let turn = tokio::select! {
                    t = live.reader.lock() => Some(t),
                    _ = tokio::time::sleep_until(deadline) => None,
                    _ = crate::state::stopped(&mut stopping) => None,
                };
                match turn {
                    None => None,
                    Some(_turn) => loop {
                        if let Some(text) = live.take() {
                            break Some(text);
                        }
                        if sub.is_closed() || !wait(&sub, deadline, &mut stopping).await {
                            break None;
                        }
                    },
                }
            }
            Feed::Durable(durable) => {
                let turn = tokio::select! {
                    t = durable.reader.lock() => Some(t),
                    _ = tokio::time::sleep_until(deadline) => None,
                    _ = crate::state::stopped(&mut stopping) => None,
                };
                match turn {
                    None => None,
                    Some(mut cursor) => {
                        self.acknowledge(&durable.subscriber_id, &mut cursor, now)
                            .await?;
                        loop {
                            if let Some(event) = self.next_event(&sub, &mut cursor).await? {
                                let text = self.envelope_of(&event, deadline).await;
                                // Consumed only now, after the last wait: a listen
                                // cancelled before (its client went away) leaves the
                                // event to the next one.
                                cursor.backlog.pop_front();
                                cursor.position = event.sequence_id;
                                cursor.pending_ack = Some(event.sequence_id);
                                break Some(text);
                            }
                            if sub.is_closed() {
                                break None;
                            }
                            let until = deadline.min(Instant::now() + LOG_RECHECK);
                            if !wait(&sub, until, &mut stopping).await
                                && (Instant::now() >= deadline || *stopping.borrow())
                            {
                                break None;
                            }
                        }
                    }
                }
            }
        };
        let text = found.unwrap_or_else(|| {
            Arc::from(Envelope::beep(&self.source, Timestamp::now()).to_python_json())
        });
        Ok(Delivery {
            channel: sub.channel.clone(),
            text,
        })
    }

    /// Stores the acknowledgement of the previous delivery (max semantics) and the
    /// poll time. A subscriber record that vanished is recreated by nothing: the
    /// subscription goes on from its in-memory cursor.
    async fn acknowledge(
        &self,
        subscriber_id: &str,
        cursor: &mut Cursor,
        now: Timestamp,
    ) -> Result<(), PubSubError> {
        // Cleared only once stored (a listen cancelled meanwhile acknowledges again
        // next time; acknowledgements have max semantics).
        let ack = cursor.pending_ack;
        match self
            .store
            .advance_subscriber(subscriber_id, ack.unwrap_or(0), now)
            .await
        {
            Ok(()) => {
                cursor.pending_ack = None;
                Ok(())
            }
            Err(CoreError::NotFound(_)) => {
                tracing::warn!(subscriber_id, "durable subscriber record missing");
                cursor.pending_ack = None;
                Ok(())
            }
            // Not acknowledged: try again at the next listen.
            Err(e) => Err(e.into()),
        }
    }

    /// The next event after the cursor that the subscription's owner rule accepts,
    /// left at the front of the backlog (the caller consumes it once delivered); the
    /// events it skips move the cursor.
    async fn next_event(
        &self,
        sub: &Subscription,
        cursor: &mut Cursor,
    ) -> Result<Option<Event>, PubSubError> {
        loop {
            while let Some(event) = cursor.backlog.front() {
                if sub.accepts(event.owner.as_deref()) {
                    return Ok(Some(event.clone()));
                }
                cursor.position = event.sequence_id;
                cursor.backlog.pop_front();
            }
            let batch = self
                .store
                .events_after(cursor.position, Some(&sub.channel), LOG_BATCH)
                .await?;
            if batch.is_empty() {
                return Ok(None);
            }
            cursor.backlog = VecDeque::from(batch);
            tokio::task::yield_now().await;
        }
    }

    /// The envelope of an event read from the log: the broadcast's one while it is
    /// among the recent ones (so `/publish` attributes are kept), otherwise a new
    /// one (new `id` and `time`, default `type` and `source`, the event's owner and
    /// data) — always with `_sequence_id`, which the reference leaves out of replayed
    /// messages (clients ignore it).
    pub(super) async fn envelope_of(&self, event: &Event, deadline: Instant) -> Arc<str> {
        let seq = event.sequence_id;
        if let Some(text) = self.recent(seq) {
            return text;
        }
        // On an embedded store every event is this process's: one above the last
        // broadcast is on its way to `broadcast`, so wait for it briefly. On a
        // shared store most events read from the log come from other servers and
        // no broadcast of theirs will come here: the envelope is rebuilt at once
        // (a listen racing this server's own broadcast, a window of microseconds,
        // may then miss a `/publish`'s extra attributes).
        if !self.shared && seq > *self.high.borrow() {
            // Appended by this process and not broadcast yet: wait for it briefly.
            let mut rx = self.high.subscribe();
            let until = deadline.min(Instant::now() + BROADCAST_GRACE);
            let _ = tokio::time::timeout_at(until, rx.wait_for(|h| *h >= seq)).await;
            if let Some(text) = self.recent(seq) {
                return text;
            }
        }
        let env = Envelope::of_event(event, &self.source, Timestamp::now(), &Default::default());
        Arc::from(env.to_python_json())
    }

    // ---- queues --------------------------------------------------------------------

    /// Appends an envelope to the queue `name` and wakes its waiting pops.
    pub async fn push(&self, name: &str, envelope: &Envelope) -> Result<(), PubSubError> {
        self.queues
            .push(self.store.as_ref(), name, &envelope.to_python_json())
            .await
    }

    /// Removes and returns the oldest item of the queue `name` (its envelope text),
    /// waiting while the queue is empty until the server stops.
    pub async fn pop(
        &self,
        name: &str,
        stopping: watch::Receiver<bool>,
    ) -> Result<String, PubSubError> {
        self.queues.pop(self.store.as_ref(), name, stopping).await
    }
}

/// Waits for a wake-up of `sub`; `false` when the deadline passed or the server is
/// stopping.
async fn wait(sub: &Subscription, deadline: Instant, stopping: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = sub.wake.notified() => true,
        _ = tokio::time::sleep_until(deadline) => false,
        _ = crate::state::stopped(stopping) => false,
    }
}

/// The subscription `id` that was `found`, if it is `user`'s (`owner` reads its
/// user): 404 when none was found, 403 when it is another user's.
pub(super) fn owned_by<T>(
    id: u64,
    found: Option<T>,
    owner: impl Fn(&T) -> &str,
    user: &str,
) -> Result<T, PubSubError> {
    let sub = found.ok_or_else(|| PubSubError::NotFound(id.to_string()))?;
    if owner(&sub) != user {
        return Err(PubSubError::NotOwner {
            id,
            user: user.to_owned(),
        });
    }
    Ok(sub)
}
