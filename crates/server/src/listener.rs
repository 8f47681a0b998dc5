//! The accept loop and each connection's HTTP phase, up to the WebSocket
//! upgrade.
//!
//! Why not `axum::serve`: it runs hyper without a timer, so a client that
//! sends half a request line and then nothing holds its socket forever, and
//! nothing bounds how many sockets sit in that state. Slowloris then
//! exhausts the process's file descriptors without ever reaching the
//! WebSocket connection limit. Here:
//!
//! - every request's headers must arrive within `header_timeout_secs`
//!   (hyper's header-read timeout, which also bounds an idle keep-alive
//!   connection between requests);
//! - at most `max_pending_connections` TCP connections may be in their HTTP
//!   phase at once. When one more arrives, the OLDEST pending connection is
//!   closed to make room, not the newcomer: a legitimate client sends its
//!   request within milliseconds, so it is almost never the oldest, while a
//!   slowloris socket ages at the front of the line. Refusing newcomers
//!   instead would let 1,024 stalled sockets lock everyone out for a whole
//!   header timeout. An upgraded WebSocket leaves the HTTP phase (hyper's
//!   connection future ends when it hands the socket over) and is counted
//!   against `max_connections` instead;
//! - accept errors (EMFILE under descriptor exhaustion) back off from 10 ms
//!   to 1 s instead of spinning.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::server::AppState;

/// Shortest and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// At most one log line per this interval about evicted pending connections.
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Accepts connections until shutdown begins, then waits for the HTTP
/// connections in progress (each is asked to finish its current request).
pub async fn serve(listener: TcpListener, app: Router, state: Arc<AppState>) {
    let pending = Arc::new(Pending::new(state.config.max_pending_connections));
    let http = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut evictions = EvictionLog::default();
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => {
                backoff = ACCEPT_BACKOFF.0;
                accepted
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                warn!(error = %e, pause_ms = backoff.as_millis() as u64, "accept failed; pausing");
                tokio::select! {
                    () = state.shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        let (id, evicted) = pending.admit();
        if evicted {
            state.metrics.pending_evicted.fetch_add(1, Relaxed);
            evictions.note(state.config.max_pending_connections);
        }
        let _ = tcp.set_nodelay(state.config.tcp_nodelay);
        let app = app.clone();
        let state = state.clone();
        let pending = pending.clone();
        http.spawn(async move {
            state.metrics.pending_connections.fetch_add(1, Relaxed);
            http_phase(TokioIo::new(tcp), peer, app, &state, id.evicted).await;
            pending.leave(id.number);
            state.metrics.pending_connections.fetch_sub(1, Relaxed);
        });
    }
    http.close();
    http.wait().await;
}

/// The connections in their HTTP phase, oldest first.
struct Pending {
    cap: usize,
    inner: Mutex<PendingInner>,
}

struct PendingInner {
    next: u64,
    /// Each pending connection's eviction signal, by arrival number.
    waiting: BTreeMap<u64, oneshot::Sender<()>>,
}

/// A pending connection's place in line.
struct PendingId {
    number: u64,
    /// Fires when the connection must make room for a newer one.
    evicted: oneshot::Receiver<()>,
}

impl Pending {
    fn new(cap: u64) -> Self {
        Pending {
            cap: usize::try_from(cap).unwrap_or(usize::MAX).max(1),
            inner: Mutex::new(PendingInner {
                next: 0,
                waiting: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingInner> {
        // Nothing panics while the lock is held.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection; at the cap, evicts the oldest first.
    /// Returns its id and whether someone was evicted.
    fn admit(&self) -> (PendingId, bool) {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        let evicted = inner.waiting.len() >= self.cap;
        if evicted && let Some((_, oldest)) = inner.waiting.pop_first() {
            let _ = oldest.send(());
        }
        let number = inner.next;
        inner.next += 1;
        inner.waiting.insert(number, tx);
        (
            PendingId {
                number,
                evicted: rx,
            },
            evicted,
        )
    }

    fn leave(&self, number: u64) {
        self.lock().waiting.remove(&number);
    }
}

/// Serves HTTP on one connection until it closes, times out, is upgraded or
/// is evicted to make room for a newer one.
async fn http_phase(
    io: TokioIo<tokio::net::TcpStream>,
    peer: SocketAddr,
    app: Router,
    state: &AppState,
    evicted: oneshot::Receiver<()>,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_timeout())
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        Ok(()) = evicted => {
            debug!(%peer, "evicted from the pending line to make room for a newer connection");
            return;
        }
        () = state.shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            state.metrics.header_timeouts.fetch_add(1, Relaxed);
            debug!(%peer, "request headers not received within the header timeout; closed");
        } else {
            debug!(%peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

/// Errors that concern one connection only (it was reset before we took
/// it); the listener itself is fine.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Rate-limits the log line about evictions: a flood is one line a second
/// with a count, not one line each.
#[derive(Default)]
struct EvictionLog {
    since_last_log: u64,
    last_log: Option<Instant>,
}

impl EvictionLog {
    fn note(&mut self, cap: u64) {
        self.since_last_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= EVICTION_LOG_INTERVAL)
        {
            warn!(
                evicted = self.since_last_log,
                cap,
                "pending-connection cap reached (connections that have not finished their HTTP request, e.g. slowloris); closing the oldest to make room"
            );
            self.since_last_log = 0;
            self.last_log = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pending_connection_makes_room() {
        let pending = Pending::new(2);
        let (mut first, evicted) = pending.admit();
        assert!(!evicted);
        let (mut second, _) = pending.admit();
        let (mut third, evicted) = pending.admit();
        assert!(evicted);
        assert_eq!(first.evicted.try_recv(), Ok(()));
        assert!(second.evicted.try_recv().is_err());
        // One that left makes room without evicting anyone.
        pending.leave(second.number);
        let (_, evicted) = pending.admit();
        assert!(!evicted);
        assert!(third.evicted.try_recv().is_err());
    }
}
