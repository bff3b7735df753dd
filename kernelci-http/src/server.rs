//! The connection loop: accept, apply the connection limits, serve each connection
//! with [`crate::service::api`] over hyper's HTTP/1.1.
//!
//! Connection limits ([`HttpConfig`](crate::HttpConfig)), so that slow or idle
//! clients cannot keep the server from answering others:
//! - at most `max_connections` connections at once, and at most
//!   `max_connections_per_ip` from one client address (an IPv6 client by its /64;
//!   addresses listed in `trusted_proxies` are exempt: every client behind a proxy
//!   shares its address);
//! - a connection over either limit is answered at once with 503 and a JSON
//!   `detail`, then closed, rather than left waiting in the kernel's backlog (at most
//!   [`MAX_REFUSING`] such answers are in progress; beyond, the connection is closed
//!   without one);
//! - `header_timeout_seconds` to send a request's headers, counted on a kept-alive
//!   connection from the end of the previous answer (so it is also the idle timeout);
//! - the body's minimum transfer rate (see [`crate::service`]);
//! - `write_timeout_seconds` for an answer's writes to make progress: a client that
//!   stops reading gives its connection back.
//!
//! Shutdown waits for in-flight requests at most `shutdown_grace_seconds`.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
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

/// The address a client is counted under: an IPv4 address as itself (also when it
/// arrives IPv4-mapped on an IPv6 socket), an IPv6 address by its /64 (one host
/// usually has a whole /64 to pick addresses from).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

impl Limits {
    /// A place for a connection from `ip`, or `None` over a limit.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let exempt = self.exempt.contains(&ip.to_canonical());
        let ip = client_key(ip);
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.max_total {
            return None;
        }
        let mine = c.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip > 0 && mine >= self.max_per_ip && !exempt {
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

/// A connection whose writes must make progress: a write (or flush) that cannot
/// proceed for `limit` fails with `TimedOut`, which ends the connection. So a client
/// that stops reading its answers gives its place back (hyper has no write timeout,
/// and `header_timeout_seconds` only runs while a request's head is read).
struct WriteProgress<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteProgress<T> {
    fn new(inner: T, limit: Duration) -> Self {
        WriteProgress {
            inner,
            limit,
            stalled: None,
        }
    }

    /// What to answer for a write that returned `poll`: progress clears the
    /// timer; a stall starts it, and fails once it has run out.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match poll {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteProgress<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteProgress<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
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
    let write_timeout = Duration::from_secs(config.write_timeout_seconds);
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
            .serve_connection(
                TokioIo::new(WriteProgress::new(stream, write_timeout)),
                TowerToHyperService::new(service),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_by_address_and_ipv6_by_64() {
        let key = |s: &str| client_key(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(key("10.1.2.3"), key("::ffff:10.1.2.3"));
        assert_ne!(key("10.1.2.3"), key("10.1.2.4"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
