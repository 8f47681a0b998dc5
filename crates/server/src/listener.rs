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
//!   phase at once; one more is closed at once, without reading a byte, and
//!   counted. An upgraded WebSocket leaves the HTTP phase (hyper's connection
//!   future ends when it hands the socket over) and is counted against
//!   `max_connections` instead;
//! - accept errors (EMFILE under descriptor exhaustion) back off from 10 ms
//!   to 1 s instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::server::AppState;

/// Shortest and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// At most one log line per this interval about refused pending connections.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Accepts connections until shutdown begins, then waits for the HTTP
/// connections in progress (each is asked to finish its current request).
pub async fn serve(listener: TcpListener, app: Router, state: Arc<AppState>) {
    let pending = Arc::new(Semaphore::new(
        usize::try_from(state.config.max_pending_connections).unwrap_or(usize::MAX),
    ));
    let http = TaskTracker::new();
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut refusals = Refusals::default();
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
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                continue;
            }
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            state.metrics.pending_refused.fetch_add(1, Relaxed);
            refusals.note(peer, state.config.max_pending_connections);
            continue; // dropping `tcp` closes it
        };
        let _ = tcp.set_nodelay(state.config.tcp_nodelay);
        let app = app.clone();
        let state = state.clone();
        http.spawn(async move {
            state.metrics.pending_connections.fetch_add(1, Relaxed);
            http_phase(TokioIo::new(tcp), peer, app, &state).await;
            state.metrics.pending_connections.fetch_sub(1, Relaxed);
            drop(permit);
        });
    }
    http.close();
    http.wait().await;
}

/// Serves HTTP on one connection until it closes, times out or is upgraded.
async fn http_phase(
    io: TokioIo<tokio::net::TcpStream>,
    peer: SocketAddr,
    app: Router,
    state: &AppState,
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

/// Rate-limits the log line about refused connections: a flood of them is
/// one line a second with a count, not one line each.
#[derive(Default)]
struct Refusals {
    since_last_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, peer: SocketAddr, limit: u64) {
        self.since_last_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL)
        {
            warn!(
                %peer,
                refused = self.since_last_log,
                limit,
                "pending-connection cap reached (connections that have not finished their HTTP request); closing new ones at once"
            );
            self.since_last_log = 0;
            self.last_log = Some(now);
        }
    }
}
