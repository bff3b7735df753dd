//! Pub/sub: subscriptions, listen, publish, queues (API.md §9).

use std::sync::Arc;

use kernelci_core::events::Event;
use kernelci_core::store::Store;

use crate::config::HttpConfig;

/// The in-process message broker.
pub struct Broker {
    #[allow(dead_code)]
    store: Arc<dyn Store>,
}

impl Broker {
    /// A broker over the store's event log.
    pub fn new(store: Arc<dyn Store>, _config: &HttpConfig) -> Self {
        Broker { store }
    }

    /// Delivers a stored event to the live subscriptions of its channel.
    pub fn broadcast(
        &self,
        _event: &Event,
        _attributes: serde_json::Map<String, serde_json::Value>,
    ) {
    }
}

impl Broker {
    /// Drops subscriptions whose last poll is older than `idle`; returns how many.
    pub fn drop_idle(
        &self,
        _idle: std::time::Duration,
        _now: kernelci_core::time::Timestamp,
    ) -> u64 {
        0
    }
}
