//! The connection loop: accept, apply the connection limits, serve each connection
//! with [`crate::service::api`] over hyper's HTTP/1.1.
//!
//! Connection limits ([`HttpConfig`](crate::HttpConfig)), so that slow or idle
//! clients cannot keep the server from answering others:
//! - at most `max_connections` connections at once, and at most
//!   `max_connections_per_ip` from one client address (addresses listed in
//!   `trusted_proxies` are exempt: every client behind a proxy shares its address);
//! - a connection over either limit is answered at once with 503 and a JSON
//!   `detail`, then closed, rather than left waiting in the kernel's backlog (at most
//!   [`MAX_REFUSING`] such answers are in progress; beyond, the connection is closed
//!   without one);
//! - `header_timeout_seconds` to send a request's headers, counted on a kept-alive
//!   connection from the end of the previous answer (so it is also the idle timeout);
//! - the body's minimum transfer rate (see [`crate::service`]).
//!
//! Shutdown waits for in-flight requests at most `shutdown_grace_seconds`.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::error::HttpError;
use crate::service::PeerAddr;
use crate::state::AppState;

/// Most refusals (503 answers to connections over a limit) written at once.
pub const MAX_REFUSING: usize = 256;

/// How long a refusal may take (writing the answer, then reading what the client
/// sent so that closing does not reset the connection before it reads the answer).
const REFUSAL_TIME: Duration = Duration::from_secs(1);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 33\r\n\
\r\n\
{\"detail\":\"Too many connections\"}";

/// Open connections, in all and per client address.
#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// The connection limits of one server.
#[derive(Debug)]
struct Limits {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_ip: usize,
    exempt: Vec<IpAddr>,
}

/// One admitted connection; gives its place back when dropped.
struct Admitted {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Limits {
    /// A place for a connection from `ip`, or `None` over a limit.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.max_total {
            return None;
        }
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0 && mine >= self.max_per_ip && !self.exempt.contains(&ip) {
            return None;
        }
        c.total += 1;
        c.per_ip.insert(ip, mine + 1);
        Some(Admitted {
            limits: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.limits.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Answers 503 on a connection over a limit and closes it (best effort, within
/// [`REFUSAL_TIME`]): the request's head is read first (if it comes within half of
/// that time) so that the answer is one to a request, and what the client still
/// sends is read until it closes, so that closing does not reset the connection
/// before the client reads the answer.
async fn refuse(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_TIME / 2, async {
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(REFUSAL_TIME / 2, async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (long polls are woken and answer at once; at most
/// `shutdown_grace_seconds`), stops the background jobs and flushes the store.
///
/// The background jobs of [`crate::jobs`] run while serving when the configuration
/// enables them.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    crate::bootstrap::bootstrap(&state).await?;
    let graceful = GracefulShutdown::new();
    let jobs = crate::jobs::spawn(&state);
    tokio::pin!(shutdown);
    let config = state.config();
    let limits = Arc::new(Limits {
        counts: Mutex::default(),
        max_total: config.max_connections,
        max_per_ip: config.max_connections_per_ip,
        exempt: config.trusted_proxies.clone(),
    });
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let header_timeout = Duration::from_secs(config.header_timeout_seconds);
    let api = crate::service::api(state.clone());
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(admitted) = limits.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: over the connection limits");
            if let Ok(permit) = Arc::clone(&refusing).try_acquire_owned() {
                tokio::spawn(async move {
                    refuse(stream).await;
                    drop(permit);
                });
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = tower::ServiceExt::map_request(api.clone(), move |mut req: Request<_>| {
            req.extensions_mut().insert(PeerAddr(peer));
            req
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(admitted);
        });
    }
    drop(listener);
    state.begin_shutdown();
    let grace = config.shutdown_grace_seconds;
    if tokio::time::timeout(Duration::from_secs(grace), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_seconds = grace,
            "requests still in progress at the end of the shutdown grace period"
        );
    }
    jobs.stop().await;
    state.store().flush().await?;
    Ok(())
}
