//! One subscription: its owner and channel, and where its next message comes from
//! (an in-memory buffer, or a cursor over the event log for durable subscribers).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kernelci_core::events::Event;
use kernelci_core::time::Timestamp;
use tokio::sync::Notify;

/// Most messages a live subscription buffers; beyond it the oldest are dropped
/// (with a warning): a client that stopped listening must not exhaust memory.
pub const LIVE_BUFFER_CAP: usize = 10_000;

/// What `/subscribe` and `/stats/subscriptions` report about a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionInfo {
    /// Subscription id (from the store's durable counter).
    pub id: u64,
    /// Channel.
    pub channel: String,
    /// Username of the subscriber.
    pub user: String,
    /// Receives every message, not only the user's own and ownerless ones.
    pub promiscuous: bool,
    /// The durable subscriber id, for durable subscriptions.
    pub subscriber_id: Option<String>,
    /// Creation time.
    pub created: Timestamp,
    /// Last `listen` (start time), `None` until the first.
    pub last_poll: Option<Timestamp>,
}

/// A registered subscription.
pub(crate) struct Subscription {
    pub(crate) id: u64,
    pub(crate) channel: String,
    pub(crate) user: String,
    pub(crate) promiscuous: bool,
    pub(crate) created: Timestamp,
    last_poll: Mutex<Option<Timestamp>>,
    /// Woken when a message may be available, or when the subscription is closed.
    pub(crate) wake: Notify,
    closed: AtomicBool,
    pub(crate) feed: Feed,
}

/// Where a subscription's messages come from.
pub(crate) enum Feed {
    /// Messages broadcast since the subscription exists, buffered in memory.
    Live(Live),
    /// The event log after the subscriber's cursor.
    Durable(Durable),
}

/// The buffer of a live subscription.
pub(crate) struct Live {
    buffer: Mutex<LiveBuffer>,
    /// Held by the listen in progress (listens of one subscription take turns).
    pub(crate) reader: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct LiveBuffer {
    queue: VecDeque<Arc<str>>,
    dropped: u64,
}

/// The state of a durable subscription.
pub(crate) struct Durable {
    /// The client-chosen subscriber id (key of the stored `SubscriberState`).
    pub(crate) subscriber_id: String,
    /// The cursor, held by the listen in progress.
    pub(crate) reader: tokio::sync::Mutex<Cursor>,
}

/// A durable subscription's position in the event log.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// The last sequence id examined (delivered, or skipped by the owner filter).
    pub(crate) position: u64,
    /// The sequence id delivered by the previous listen, acknowledged by the next.
    pub(crate) pending_ack: Option<u64>,
    /// Events read from the log and not examined yet.
    pub(crate) backlog: VecDeque<Event>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data here (every
    // critical section is a single push or pop).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The owner rule (API.md §9) for a subscription of `user`: a non-promiscuous
/// subscription receives messages without an owner and those owned by its user.
pub(crate) fn accepts(promiscuous: bool, user: &str, owner: Option<&str>) -> bool {
    match owner {
        None | Some("") => true,
        Some(o) => promiscuous || o == user,
    }
}

impl Subscription {
    /// A live subscription.
    pub(crate) fn live(
        id: u64,
        channel: &str,
        user: &str,
        promiscuous: bool,
        now: Timestamp,
    ) -> Self {
        Self::new(
            id,
            channel,
            user,
            promiscuous,
            now,
            Feed::Live(Live {
                buffer: Mutex::default(),
                reader: tokio::sync::Mutex::new(()),
            }),
        )
    }

    /// A durable subscription reading the log after `position`.
    pub(crate) fn durable(
        id: u64,
        channel: &str,
        user: &str,
        promiscuous: bool,
        now: Timestamp,
        subscriber_id: &str,
        position: u64,
    ) -> Self {
        let cursor = Cursor {
            position,
            ..Cursor::default()
        };
        Self::new(
            id,
            channel,
            user,
            promiscuous,
            now,
            Feed::Durable(Durable {
                subscriber_id: subscriber_id.to_owned(),
                reader: tokio::sync::Mutex::new(cursor),
            }),
        )
    }

    fn new(
        id: u64,
        channel: &str,
        user: &str,
        promiscuous: bool,
        now: Timestamp,
        feed: Feed,
    ) -> Self {
        Subscription {
            id,
            channel: channel.to_owned(),
            user: user.to_owned(),
            promiscuous,
            created: now,
            last_poll: Mutex::new(None),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            feed,
        }
    }

    /// The owner rule (API.md §9): a non-promiscuous subscription receives messages
    /// without an owner and those owned by its user.
    pub(crate) fn accepts(&self, owner: Option<&str>) -> bool {
        accepts(self.promiscuous, &self.user, owner)
    }

    /// Records a listen.
    pub(crate) fn touch(&self, now: Timestamp) {
        *lock(&self.last_poll) = Some(now);
    }

    /// The last listen.
    pub(crate) fn last_poll(&self) -> Option<Timestamp> {
        *lock(&self.last_poll)
    }

    /// Marks the subscription closed (unsubscribed or dropped) and wakes its listen.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether [`Subscription::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The report of `/subscribe` and `/stats/subscriptions`.
    pub(crate) fn info(&self) -> SubscriptionInfo {
        SubscriptionInfo {
            id: self.id,
            channel: self.channel.clone(),
            user: self.user.clone(),
            promiscuous: self.promiscuous,
            subscriber_id: match &self.feed {
                Feed::Live(_) => None,
                Feed::Durable(d) => Some(d.subscriber_id.clone()),
            },
            created: self.created,
            last_poll: self.last_poll(),
        }
    }
}

impl Live {
    /// Buffers a message, dropping the oldest beyond [`LIVE_BUFFER_CAP`].
    pub(crate) fn offer(&self, sub_id: u64, text: Arc<str>) {
        let mut b = lock(&self.buffer);
        b.queue.push_back(text);
        if b.queue.len() > LIVE_BUFFER_CAP {
            b.queue.pop_front();
            b.dropped += 1;
            if b.dropped == 1 || b.dropped % 1000 == 0 {
                tracing::warn!(
                    subscription = sub_id,
                    dropped = b.dropped,
                    "subscription buffer full: oldest messages dropped (is the client listening?)"
                );
            }
        }
    }

    /// The oldest buffered message.
    pub(crate) fn take(&self) -> Option<Arc<str>> {
        lock(&self.buffer).queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_rule() {
        let now = Timestamp::now();
        let plain = Subscription::live(1, "node", "bob", false, now);
        let promisc = Subscription::live(2, "node", "bob", true, now);
        for (owner, plain_gets, promisc_gets) in [
            (None, true, true),
            (Some(""), true, true),
            (Some("bob"), true, true),
            (Some("alice"), false, true),
        ] {
            assert_eq!(plain.accepts(owner), plain_gets, "{owner:?}");
            assert_eq!(promisc.accepts(owner), promisc_gets, "{owner:?}");
        }
    }

    #[test]
    fn live_buffers_drop_the_oldest_beyond_the_cap() {
        let sub = Subscription::live(1, "node", "bob", false, Timestamp::now());
        let Feed::Live(live) = &sub.feed else {
            unreachable!()
        };
        for i in 0..LIVE_BUFFER_CAP + 2 {
            live.offer(1, Arc::from(i.to_string()));
        }
        assert_eq!(live.take().as_deref(), Some("2"));
        let mut n = 1;
        while live.take().is_some() {
            n += 1;
        }
        assert_eq!(n, LIVE_BUFFER_CAP);
    }
}
