//! Pub/sub: subscriptions, listen, publish, queues (API.md §9, MODELS.md §8–9).
//!
//! # Delivery model
//!
//! Every event (node events, `/publish`) is first appended to the store's event
//! log, which gives it its sequence id, then handed to [`Broker::broadcast`]. A
//! subscription is bound to one channel and one user:
//!
//! - A **live** subscription (no `subscriber_id`) buffers, in memory, every message
//!   broadcast on its channel after its creation that passes the owner rule (a
//!   non-promiscuous subscription receives messages without an owner and those of
//!   its user). The buffer keeps at most
//!   [`LIVE_BUFFER_CAP`](subscription::LIVE_BUFFER_CAP) messages (the oldest are
//!   dropped, with a warning).
//! - A **durable** subscription (`subscriber_id`) reads the event log itself, from
//!   the position stored in the subscriber's `SubscriberState`; the log is the
//!   source of truth, so nothing is lost across restarts and replays are not capped
//!   (the reference replays at most 1000 events). Each `listen` acknowledges the
//!   message delivered by the previous one (at-least-once delivery). Sequence ids
//!   become visible in the log in order, so reading it in order never skips one.
//!   Delivered envelopes are the broadcast's ones while they are among the
//!   [`RECENT_CAP`](broker::RECENT_CAP) most recent (so `/publish` attributes are
//!   kept), otherwise rebuilt from the stored event. They always carry
//!   `_sequence_id` (the reference leaves it out of replays; clients ignore it).
//!
//! # Keep-alives
//!
//! The reference publishes a `BEEP` message on every subscribed channel every
//! `KEEP_ALIVE_PERIOD` seconds so that a blocked `listen` returns before the
//! clients' 60 s timeout. Here each `listen` has its own timer instead: one that
//! has nothing to deliver within the period answers a `BEEP` (no owner, no
//! `_sequence_id`). Clients see the same thing: every blocked listen returns within
//! the period. A listen blocked when the server begins to stop answers a `BEEP` at
//! once; a waiting `pop` answers 503.
//!
//! # Queues
//!
//! `/push` and `/pop` use durable FIFO queues in the store (see [`queue`]): they
//! survive restarts, and each item is popped once.
//!
//! # Limits of this design
//!
//! On an embedded store, live subscriptions live in one process (as in the
//! reference): after a restart a live subscription id is unknown (404) and the
//! client subscribes again. On a store shared by several servers every subscription
//! is registered in the store and read from the event log instead (see [`shared`]),
//! so it outlives any one server. Extension
//! attributes of broadcast events come in the order of their names (they pass
//! through a `serde_json::Map`); JSON objects are unordered and clients read them
//! into dicts.

pub mod broker;
pub mod envelope;
pub mod queue;
pub mod shared;
pub mod subscription;
pub mod wire;

pub use broker::{Broker, Delivery, LOG_RECHECK};
pub use envelope::Envelope;
pub use subscription::SubscriptionInfo;

/// What can go wrong in pub/sub operations (mapped to statuses by the pub/sub
/// handlers).
#[derive(Debug, thiserror::Error)]
pub enum PubSubError {
    /// No subscription with this id (its decimal text).
    #[error("Subscription id not found: 'Subscription {0} not found'")]
    NotFound(String),
    /// The subscription belongs to another user.
    #[error("Subscription {id} not owned by {user}")]
    NotOwner {
        /// The subscription id.
        id: u64,
        /// The caller's username.
        user: String,
    },
    /// The durable subscriber id is another user's.
    #[error("Subscriber id {0} belongs to another user")]
    SubscriberTaken(String),
    /// The user already has the maximum number of live subscriptions.
    #[error("Too many subscriptions for {user} (at most {limit}); unsubscribe unused ones")]
    TooMany {
        /// The caller's username.
        user: String,
        /// The limit (`max_subscriptions_per_user`).
        limit: usize,
    },
    /// The server is stopping (a waiting `pop` gives up).
    #[error("Server is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kernelci_core::Error),
}
