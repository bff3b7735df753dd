//! The shared state of a running server and the per-request authentication.

use std::sync::Arc;

use kernelci_core::auth::{authorize, Operation, Principal, User};
use kernelci_core::events::{Event, NewEvent};
use kernelci_core::store::Store;
use tokio::sync::watch;

use crate::config::HttpConfig;
use crate::error::{ApiError, ApiResult, HttpError};
use crate::mail::Mailer;
use crate::metrics::{MeteredStore, Metrics};
use crate::pubsub::Broker;
use crate::request::Req;
use crate::tokens::Tokens;

/// Everything handlers share. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    config: HttpConfig,
    tokens: Tokens,
    broker: Broker,
    metrics: Metrics,
    mailer: Mailer,
    stopping: watch::Sender<bool>,
    /// This server among those sharing the store (`host:pid:random`).
    server_id: String,
    /// Whether this server holds the `jobs` lease (runs the time-driven jobs).
    leader: std::sync::atomic::AtomicBool,
    /// Open event streams (`GET /events/stream`).
    event_streams: Arc<std::sync::atomic::AtomicUsize>,
}

/// `host:pid:random`: readable in logs and metrics, unique even for two servers with
/// the same host name and pid (containers).
fn new_server_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "server".to_owned());
    let mut r = [0u8; 3];
    let _ = getrandom::getrandom(&mut r);
    format!(
        "{host}:{}:{:02x}{:02x}{:02x}",
        std::process::id(),
        r[0],
        r[1],
        r[2]
    )
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// A state over `store` with `config` (checked with [`HttpConfig::validate`]).
    pub fn new(store: Arc<dyn Store>, config: HttpConfig) -> Result<Self, HttpError> {
        config.validate().map_err(HttpError::Config)?;
        let tokens = Tokens::new(&config)
            .ok_or_else(|| HttpError::Config(format!("bad ALGORITHM {}", config.algorithm)))?;
        let server_id = new_server_id();
        let metrics = Metrics::new(&server_id);
        // Every store operation of the server is timed (kci_store_operation_*).
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(store, metrics.store()));
        let broker = Broker::new(store.clone(), &config);
        let mailer =
            Mailer::new(config.smtp.clone()).map_err(|e| HttpError::Config(e.to_string()))?;
        let (stopping, _) = watch::channel(false);
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                config,
                tokens,
                broker,
                metrics,
                mailer,
                stopping,
                server_id,
                leader: std::sync::atomic::AtomicBool::new(false),
                event_streams: Arc::default(),
            }),
        })
    }

    /// This server's id (`host:pid:random`), unique among the servers sharing a
    /// store; `/metrics` reports it.
    pub fn server_id(&self) -> &str {
        &self.inner.server_id
    }

    /// Whether this server runs the time-driven jobs (holds the `jobs` lease).
    pub fn is_leader(&self) -> bool {
        self.inner.leader.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        let was = self
            .inner
            .leader
            .swap(leader, std::sync::atomic::Ordering::Relaxed);
        if was != leader {
            tracing::info!(server = %self.server_id(), leader, "jobs leadership changed");
        }
    }

    /// How many event streams are open (`GET /events/stream`).
    pub fn event_streams(&self) -> &Arc<std::sync::atomic::AtomicUsize> {
        &self.inner.event_streams
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The store, shared.
    pub fn store_arc(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    /// Token signing and verification.
    pub fn tokens(&self) -> &Tokens {
        &self.inner.tokens
    }

    /// The pub/sub broker.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
    }

    /// The counters of `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The e-mail sender.
    pub fn mailer(&self) -> &Mailer {
        &self.inner.mailer
    }

    /// Marks the server as stopping: long polls return, background jobs end.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// A receiver that turns `true` when the server begins to stop.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    /// The user a request's bearer token names, if the token verifies and the user
    /// exists (AUTH.md §1.2). Inactive users are returned (the access rules refuse
    /// them).
    pub async fn caller(&self, req: &Req) -> ApiResult<Option<User>> {
        let Some(token) = req.bearer() else {
            return Ok(None);
        };
        for id in self.tokens().verify_access(token) {
            if let Some(user) = self.store().get_user(id).await? {
                return Ok(Some(user));
            }
        }
        Ok(None)
    }

    /// Applies the access class of `op` to the caller: the principal for non-public
    /// operations, 401/403 otherwise.
    pub async fn require(&self, req: &Req, op: Operation) -> ApiResult<Option<(Principal, User)>> {
        let user = self.caller(req).await?;
        let principal = user.as_ref().map(User::principal);
        authorize(principal.as_ref(), op)?;
        Ok(match (principal, user) {
            (Some(p), Some(u)) if p.is_active => Some((p, u)),
            _ => None,
        })
    }

    /// [`AppState::require`] for operations that need a user: the principal and
    /// user, never `None`.
    pub async fn require_user(&self, req: &Req, op: Operation) -> ApiResult<(Principal, User)> {
        self.require(req, op)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }

    /// Appends an event to the log and hands it to the broker (node events,
    /// publishes). Returns the stored event with its sequence id.
    pub async fn emit(
        &self,
        event: NewEvent,
        attributes: serde_json::Map<String, serde_json::Value>,
    ) -> ApiResult<Event> {
        let event = self.store().append_event(event).await?;
        self.broker().broadcast(&event, attributes);
        Ok(event)
    }

    /// Hands to the broker the event a store logged with the write of `node`
    /// (`Store::insert_node_with_event` and `replace_node_with_event`). An event that
    /// could not be logged is reported in the server's log only: the node is stored,
    /// and an error would make the client retry (and duplicate) its write.
    pub fn announce(&self, node: kernelci_core::id::ObjectId, event: kernelci_core::Result<Event>) {
        match event {
            Ok(e) => self.broker().broadcast(&e, Default::default()),
            Err(e) => tracing::error!(node = %node, error = %e, "node event not recorded"),
        }
    }
}

/// Completes when the server begins to stop (or the state is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
