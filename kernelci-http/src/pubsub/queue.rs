//! The FIFO queues of `/push` and `/pop` (API.md §9).
//!
//! Items live in the store ([`Store::queue_push`] / [`Store::queue_pop`]), so they
//! survive restarts (the reference keeps them in Redis) and a pop is atomic. A pop
//! on an empty queue waits: pushes wake the waiters of their queue, and waiters
//! also look again every [`RECHECK`] so that an item that arrived without a wake-up
//! (another process on the same store) is still found.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kernelci_core::store::Store;
use tokio::sync::{watch, Notify};

use super::PubSubError;

/// How often a waiting pop looks at the store without being woken.
pub const RECHECK: Duration = Duration::from_secs(1);

/// Waiters of each queue name (an entry exists only while someone waits).
#[derive(Default)]
pub(crate) struct Queues {
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A waiter's registration, removed when the last waiter of the name leaves.
struct Waiting<'a> {
    queues: &'a Queues,
    name: &'a str,
    notify: Option<Arc<Notify>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self
            .queues
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Drop ours first: the map's own reference is then the only one left when
        // nobody else waits.
        self.notify.take();
        if map
            .get(self.name)
            .is_some_and(|n| Arc::strong_count(n) == 1)
        {
            map.remove(self.name);
        }
    }
}

impl Queues {
    fn register<'a>(&'a self, name: &'a str) -> Waiting<'a> {
        let mut map = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let notify = map.entry(name.to_owned()).or_default().clone();
        Waiting {
            queues: self,
            name,
            notify: Some(notify),
        }
    }

    /// Appends an item and wakes the pops waiting on `name`.
    pub(crate) async fn push(
        &self,
        store: &dyn Store,
        name: &str,
        item: &str,
    ) -> Result<(), PubSubError> {
        store.queue_push(name, item).await?;
        let notify = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some(n) = notify {
            n.notify_waiters();
        }
        Ok(())
    }

    /// Removes and returns the oldest item, waiting while the queue is empty, until
    /// the server stops ([`PubSubError::ShuttingDown`]).
    pub(crate) async fn pop(
        &self,
        store: &dyn Store,
        name: &str,
        mut stopping: watch::Receiver<bool>,
    ) -> Result<String, PubSubError> {
        let waiting = self.register(name);
        let Some(notify) = waiting.notify.clone() else {
            return Err(PubSubError::ShuttingDown);
        };
        loop {
            // Registered before looking, so a push between the look and the wait
            // still wakes this pop.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(item) = store.queue_pop(name).await? {
                return Ok(item);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(RECHECK) => {}
                _ = crate::state::stopped(&mut stopping) => return Err(PubSubError::ShuttingDown),
            }
        }
    }

    /// Number of queue names with waiting pops (for tests).
    #[cfg(test)]
    pub(crate) fn waiting_names(&self) -> usize {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernelci_core::testing::NaiveStore;

    #[tokio::test]
    async fn a_push_wakes_a_waiting_pop_and_the_waiter_entry_goes_away() {
        let store: Arc<dyn Store> = Arc::new(NaiveStore::new());
        let queues = Arc::new(Queues::default());
        let (_tx, rx) = watch::channel(false);
        let (q, s) = (queues.clone(), store.clone());
        let pop = tokio::spawn(async move { q.pop(s.as_ref(), "jobs", rx).await });
        while queues.waiting_names() == 0 {
            tokio::task::yield_now().await;
        }
        queues.push(store.as_ref(), "jobs", "item").await.unwrap();
        assert_eq!(pop.await.unwrap().unwrap(), "item");
        assert_eq!(queues.waiting_names(), 0);
    }

    #[tokio::test]
    async fn stopping_ends_a_waiting_pop() {
        let store = NaiveStore::new();
        let queues = Queues::default();
        let (tx, rx) = watch::channel(false);
        let stop = async {
            tokio::task::yield_now().await;
            tx.send_replace(true);
        };
        let (popped, ()) = tokio::join!(queues.pop(&store, "jobs", rx), stop);
        assert!(matches!(popped, Err(PubSubError::ShuttingDown)));
    }
}
