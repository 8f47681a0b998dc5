//! Starting and stopping the server: the listener, the router, the actors,
//! the connection limit and graceful shutdown.
//!
//! Shutdown policy: on SIGINT/SIGTERM (or [`RunningServer::shutdown`]) the
//! listener stops accepting, every connection sends close 1001 and ends, and
//! the server waits at most `shutdown_grace_secs` for them before stopping
//! the actors: the root supervisor stops the room registry (and with it
//! every room), then the calculation scheduler (cancelling what still runs);
//! see [`crate::supervisor`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actorchat_protocol::{Limits, MAX_TEXT_CHARS};
use axum::Router;
use ractor::{Actor, ActorRef};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::auth::{Auth, AuthError};
use crate::calc::{ResultStore, SchedulerArgs};
use crate::config::{Config, ConfigError};
use crate::history::StorageKind;
use crate::history::{OpenError, Streams, spawn_retention};
use crate::http;
use crate::identity::SessionIds;
use crate::listener;
use crate::metrics::Metrics;
use crate::origin::AllowedOrigins;
use crate::registry::RegistryArgs;
use crate::room::RoomSettings;
use crate::supervisor::{Root, RootArgs, RootMsg, TopLevel, TopLevelActors};

/// File descriptors kept free for the listener, log files, `/proc` reads
/// and the like when the connection limit is derived from the fd limit.
const FD_RESERVE: u64 = 64;

/// What every handler and connection shares.
pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// The room registry and the calculation scheduler, through handles that
    /// follow their restarts.
    pub actors: Arc<TopLevelActors>,
    /// The root supervisor; stopping it stops every actor, in order.
    pub root: ActorRef<RootMsg>,
    /// Which pages may open a WebSocket (`--allowed-origins`).
    pub origins: AllowedOrigins,
    /// Full calculation results for `GET /calc/{id}`.
    pub calc_results: Arc<ResultStore>,
    /// Every room's stream: history pages, `GET /rooms/{room}/messages`.
    pub streams: Streams,
    pub sessions: SessionIds,
    /// One permit per open WebSocket: the hard connection limit.
    pub connection_slots: Arc<Semaphore>,
    pub max_connections: usize,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks so shutdown can wait for their close frames.
    pub connections: TaskTracker,
    /// Who may connect, and as whom (`--auth`).
    pub auth: Auth,
    /// The observer's latest snapshot and history (`/observer`).
    pub(crate) observer: crate::observer::Hub,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start an actor: {0}")]
    Actor(#[from] ractor::SpawnErr),
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Storage(#[from] OpenError),
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    #[error("cluster mode: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A server that is accepting connections.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<AppState>,
    serve: JoinHandle<()>,
}

/// Binds the listener, starts the actors and begins serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    config.validate()?;
    let origins = AllowedOrigins::parse(&config.allowed_origins).map_err(|reason| ConfigError {
        flag: "--allowed-origins",
        reason,
    })?;
    let auth = Auth::new(&config.auth)?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.bind,
        source,
    })?;
    let metrics = Arc::new(Metrics::default());
    let mut redis_conn = None;
    let streams = match &config.cluster.redis_url {
        Some(url) => {
            let node = config
                .cluster
                .node_name
                .clone()
                .unwrap_or_else(|| default_node_name(addr));
            let (conn, cluster) =
                crate::cluster::connect(&config.cluster, url, &node, metrics.clone()).await?;
            info!(node = %node, redis = %redacted_url(url), "cluster mode: rooms, order, presence and history shared through Redis");
            redis_conn = Some(conn.clone());
            Streams::redis(conn, cluster, &config.cluster, metrics.clone())
        }
        None => open_storage(&config, metrics.clone()).await?,
    };
    let max_frame_bytes = u32::try_from(config.max_frame_bytes).unwrap_or(u32::MAX);
    let limits = Limits {
        max_text_chars: MAX_TEXT_CHARS as u32,
        max_frame_bytes,
        max_messages_per_sec: config.rate_per_sec,
    };
    let settings = Arc::new(RoomSettings {
        limits,
        presence_interval: config.presence_interval(),
        idle_after: config.room_idle(),
        welcome_history: config.welcome_history,
        recover_max: config.recover_max,
        pause_phrase: config.debug_pause_phrase.clone(),
        first_join_grace: crate::connection::JOIN_TIMEOUT,
    });
    let registry = RegistryArgs {
        settings,
        metrics: metrics.clone(),
        streams: streams.clone(),
        max_rooms: config.max_rooms,
    };
    let calc_results = Arc::new(match &redis_conn {
        Some(conn) => ResultStore::shared(config.calc_store_bytes, conn.clone()),
        None => ResultStore::new(config.calc_store_bytes),
    });
    let scheduler = SchedulerArgs {
        workers: config.calc_workers(),
        queue: config.calc_queue,
        budget_bytes: config.calc_budget_bytes,
        limits: actorchat_calc::Limits {
            max_bytes: config.calc_max_bytes,
            timeout: Duration::from_millis(config.calc_timeout_ms),
        },
        skip_time_admission: config.calc_skip_time_admission,
        display_digits: config.calc_display_digits,
        nice: config.calc_nice,
        store: calc_results.clone(),
        metrics: metrics.clone(),
        first_job: match redis_conn {
            Some(_) => random_job_start(),
            None => 0,
        },
    };
    let actors = Arc::new(TopLevelActors::new());
    let root_args = RootArgs {
        actors: actors.clone(),
        registry,
        scheduler,
        restart_delay: config.restart_delay(),
        metrics: metrics.clone(),
    };
    let (root, _) = Actor::spawn(None, Root, root_args).await?;
    let max_connections = config
        .max_connections
        .unwrap_or_else(default_max_connections);
    let state = Arc::new(AppState {
        config,
        metrics,
        actors,
        root,
        origins,
        calc_results,
        streams: streams.clone(),
        sessions: SessionIds::default(),
        connection_slots: Arc::new(Semaphore::new(max_connections)),
        max_connections,
        shutdown: CancellationToken::new(),
        connections: TaskTracker::new(),
        auth,
        observer: crate::observer::Hub::default(),
    });
    spawn_retention(streams, state.shutdown.clone());
    tokio::spawn(crate::observer::sampler::run(state.clone()));
    let app: Router = http::router(state.clone());
    let serve = tokio::spawn(listener::serve(listener, app, state.clone()));
    info!(%addr, max_connections, "listening");
    Ok(RunningServer { addr, state, serve })
}

/// This node's name unless `--node-name` says otherwise: host name and port.
fn default_node_name(addr: SocketAddr) -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    format!("{host}:{}", addr.port())
}

/// Cluster mode: where this node's calculation ids start (a random multiple
/// of 2^32, so that two nodes' ids never meet).
fn random_job_start() -> u64 {
    let mut raw = [0u8; 4];
    if getrandom::fill(&mut raw).is_err() {
        raw = std::process::id().to_le_bytes();
    }
    u64::from(u32::from_le_bytes(raw)) << 32
}

/// A Redis URL without its password, for logs.
fn redacted_url(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| {
        rest.rsplit_once('@')
            .map(|(_, host)| format!("{scheme}://***@{host}"))
    }) {
        Some(redacted) => redacted,
        None => url.to_owned(),
    }
}

/// Opens the room streams off the runtime's workers (creating the data
/// directory and migrating the database can touch the disk for a while).
async fn open_storage(config: &Config, metrics: Arc<Metrics>) -> Result<Streams, StartError> {
    let storage = config.storage();
    let opened = tokio::task::spawn_blocking(move || Streams::open(&storage, metrics)).await;
    let streams = match opened {
        Ok(opened) => opened?,
        Err(e) => {
            return Err(StartError::Storage(OpenError::Thread(
                std::io::Error::other(e.to_string()),
            )));
        }
    };
    match config.storage {
        StorageKind::Sqlite => {
            info!(data_dir = %config.data_dir.display(), sync = ?config.sync, "history stored in SQLite")
        }
        StorageKind::Memory => {
            warn!("history kept in memory only: it is lost when the server stops")
        }
    }
    ignore_file_size_signal();
    Ok(streams)
}

/// A write beyond the file-size limit (`RLIMIT_FSIZE`) raises SIGXFSZ,
/// whose default action kills the process. Handling it instead makes the
/// write fail with EFBIG, which storage reports like a full disk: the chat
/// is answered `unavailable` and the server keeps running.
fn ignore_file_size_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    warn!("a write exceeded the file-size limit (SIGXFSZ); it fails instead");
                }
            });
        }
        Err(e) => {
            warn!(error = %e, "cannot handle SIGXFSZ; a write beyond the file-size limit would stop the server")
        }
    }
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's metrics, readable after shutdown too.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// Test hook: kills a top-level actor as a crash would, so tests can
    /// show the root restarts it and `/readyz` reports the outage.
    #[doc(hidden)]
    pub fn debug_kill(&self, which: TopLevel) {
        let _ = self.state.root.cast(RootMsg::Kill(which));
    }

    /// Resolves when shutdown has begun (for example after a signal).
    pub async fn shutdown_requested(&self) {
        self.state.shutdown.cancelled().await;
    }

    /// Stops accepting, closes every WebSocket with 1001, waits for them
    /// (bounded by the grace period), then stops the actors.
    pub async fn shutdown(self) {
        let RunningServer { state, serve, .. } = self;
        state.shutdown.cancel();
        state.connections.close();
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        if tokio::time::timeout(grace, state.connections.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = state.connections.len(),
                "connections still open after the grace period"
            );
        }
        match tokio::time::timeout(Duration::from_secs(1), serve).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "HTTP server task failed"),
            Err(_) => warn!("HTTP server did not stop within 1 s"),
        }
        // The root stops the registry (rooms) and then the scheduler.
        let _ = state
            .root
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
            .await;
        info!("server stopped");
    }
}

/// The open-file soft limit minus [`FD_RESERVE`].
fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let soft = limit.current.unwrap_or(1024 * 1024);
    usize::try_from(soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX)
}

/// Raises the open-file soft limit to the hard limit, so the connection
/// limit can use every descriptor the system allows. Returns (before, after).
pub fn raise_fd_limit() -> (Option<u64>, Option<u64>) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let mut raised = before;
    raised.current = before.maximum;
    if raised.current != before.current && setrlimit(Resource::Nofile, raised).is_err() {
        return (before.current, before.current);
    }
    (before.current, getrlimit(Resource::Nofile).current)
}
