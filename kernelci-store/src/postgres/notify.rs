//! Event wake-ups across servers: `LISTEN`/`NOTIFY`.
//!
//! The sequencer notifies channel [`CHANNEL`] with the highest sequence id it gave,
//! in the transaction that gives it (PostgreSQL delivers the notification at commit,
//! to every listening session of every server). Each [`PgStore`](super::PgStore)
//! keeps one connection outside its pool listening on it, started on the first
//! [`Notifier::wait`], reconnected after a failure, and stopped once the store is
//! dropped. A notification is only a wake-up: listeners read the event table,
//! which is the truth, so a notification lost while the connection was down costs
//! at most the listeners' periodic re-read (after a reconnection the listeners are
//! woken with the last sequence id read from the table). The listening connection
//! also runs the sequencer every few seconds, so an event whose writer could not
//! number it (its sequencer call failed after the commit) is numbered anyway.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use super::events::sequencer_sql;
use super::tls::Connector;

/// The notification channel of sequenced events.
pub(super) const CHANNEL: &str = "kci_events";

/// The `application_name` of listening sessions.
pub const APPLICATION_NAME: &str = "kernelci-server events";

/// How often the listening connection runs the sequencer (see [`session`]).
const SWEEP: Duration = Duration::from_secs(5);

/// How long to wait before connecting again after the listening connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// The listening side of one store.
pub(super) struct Notifier {
    config: tokio_postgres::Config,
    connector: Connector,
    /// The highest notified sequence id. Held here so that the listening task runs
    /// while the store lives: the task ends once every receiver is dropped.
    high: watch::Receiver<u64>,
    /// The sender, until the first wait moves it into the listening task.
    idle: Mutex<Option<watch::Sender<u64>>>,
}

impl Notifier {
    /// A notifier that connects with `config` and `connector` when first used.
    pub(super) fn new(mut config: tokio_postgres::Config, connector: Connector) -> Self {
        // Named apart from the pool's sessions in `pg_stat_activity`.
        config.application_name(APPLICATION_NAME);
        let (tx, rx) = watch::channel(0);
        Self {
            config,
            connector,
            high: rx,
            idle: Mutex::new(Some(tx)),
        }
    }

    /// Waits until a sequence id above `after` was notified or `timeout` passed;
    /// returns the highest notified id (at least `after`).
    pub(super) async fn wait(&self, after: u64, timeout: Duration) -> u64 {
        self.start();
        let mut rx = self.high.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|h| *h > after)).await;
        let high = *rx.borrow();
        high.max(after)
    }

    /// Spawns the listening task on the first call.
    fn start(&self) {
        let sender = self.idle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = sender {
            tokio::spawn(listen(self.config.clone(), self.connector.clone(), tx));
        }
    }
}

/// Listens on [`CHANNEL`] and raises `high` to every notified sequence id, on a
/// connection made again after every failure, until every receiver is gone.
async fn listen(config: tokio_postgres::Config, connector: Connector, high: watch::Sender<u64>) {
    loop {
        let session = tokio::select! {
            r = session(&config, connector.clone(), &high) => r,
            _ = high.closed() => return,
        };
        if let Err(e) = session {
            tracing::warn!(error = %e, "event notifications: listening connection lost");
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT) => {}
            _ = high.closed() => return,
        }
    }
}

/// One listening connection, until it fails.
async fn session(
    config: &tokio_postgres::Config,
    connector: Connector,
    high: &watch::Sender<u64>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(connector).await?;
    let raise = high.clone();
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Ok(seq) = n.payload().parse::<u64>() {
                        raise.send_if_modified(|h| {
                            let newer = seq > *h;
                            *h = (*h).max(seq);
                            newer
                        });
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Anything sequenced while no connection listened wakes the listeners now.
    let last: i64 = client
        .query_one("SELECT last FROM kci_event_seq", &[])
        .await?
        .get(0);
    let last = u64::try_from(last).unwrap_or(0);
    high.send_if_modified(|h| {
        let newer = last > *h;
        *h = (*h).max(last);
        newer
    });
    // While it listens, the connection also runs the sequencer now and then: an
    // event committed by a writer that could not number it (its sequencer call
    // failed) is numbered within this period, even if nothing else is appended.
    let mut driver = driver;
    let ended = loop {
        tokio::select! {
            ended = &mut driver => break ended,
            _ = tokio::time::sleep(SWEEP) => {
                client.simple_query(&sequencer_sql()).await?;
            }
        }
    };
    drop(client);
    match ended {
        Ok(r) => r,
        Err(join) => {
            tracing::warn!(error = %join, "event notifications: listening task failed");
            Ok(())
        }
    }
}
