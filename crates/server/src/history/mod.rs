//! Room streams: where a room's messages are kept, so that a reload, a
//! reconnect or a crash of the process loses nothing anyone has seen.
//!
//! A room's stream is an append-only sequence of `chat` frames (the exact
//! bytes that were broadcast) numbered by `id`, plus an `epoch` that names
//! the stream. Ids are strictly increasing and contiguous; the stream
//! remembers its last id even when retention has trimmed every message, so
//! ids are never reused. The epoch changes only when the stream itself is
//! lost (the data directory was deleted, `memory` storage restarted): a
//! client resuming from another epoch cannot be recovered.
//!
//! One interface ([`RoomStreams`]), several backends behind [`Streams`]:
//! - [`memory`]: a bounded ring per room; resume works across reconnects,
//!   not across restarts;
//! - [`sqlite`]: one embedded database in `--data-dir`, WAL mode. Writes go
//!   through one writer thread that commits everything queued in one
//!   transaction ([`writer`]); reads run on Tokio's blocking pool. Never on
//!   a Tokio worker.
//! - [`redis_streams`] (cluster mode): streams in Redis, shared by every
//!   node. There the ids come from Redis, not from the room: a room hands
//!   its batch to [`Streams::publish`] and broadcasts what comes back on
//!   its channel (see `crate::cluster`).
//!
//! Policy (persist, then broadcast): a room hands a batch to
//! [`RoomStreams::append`] and broadcasts it only when told it was
//! committed. The room never waits for the disk; it keeps receiving and
//! queues what arrives meanwhile for the next batch (see `crate::room`).

mod checkpointer;
mod completions;
mod memory;
mod recent;
mod redis_streams;
mod retention;
mod sqlite;
mod writer;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;

pub(crate) use recent::{Recent, json_array};
pub(crate) use redis_streams::{CHAT_PREFIX, Publish, channel, room_of};
pub(crate) use retention::spawn_retention;

/// One stored message: its id, when it was stored, and its `chat` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub id: u64,
    /// Milliseconds since the Unix epoch; what age-based retention compares.
    pub at_ms: u64,
    pub frame: Bytes,
}

/// What a room needs to know of its stream when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub epoch: String,
    /// The newest id ever appended, 0 if none.
    pub last_id: u64,
}

/// Messages older than some id, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub messages: Vec<Stored>,
    /// Whether older messages than the first of `messages` are stored.
    pub has_more: bool,
}

/// A batch of consecutive messages of one room, handed to the stream.
pub(crate) struct Append {
    pub room: Arc<str>,
    /// In id order, contiguous, continuing the stream's last id.
    pub messages: Vec<Stored>,
    /// Called once, when the batch is committed or failed.
    pub done: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
    /// The room's own broadcasts overflow a Tokio worker's run queue, so a
    /// wake-up from the writer thread would wait behind them: `done` runs
    /// on the runtime, through the completion dispatcher (see
    /// `completions`). Other rooms' `done` runs on the writer thread, which
    /// is quicker while the runtime's global queue is short.
    pub via_dispatcher: bool,
}

/// Why a stream operation failed while the server runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("storage write failed: {0}")]
    Write(String),
    #[error("storage read failed: {0}")]
    Read(String),
    #[error("the storage writer has stopped")]
    Stopped,
}

/// Why storage could not be opened at start; the binary exits with status 2.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the database {path}: {reason} (is the data directory writable, and the file an actorchat database?)"
    )]
    Database { path: PathBuf, reason: String },
    #[error(
        "the database {path} has schema version {found}, newer than this actorchat understands ({supported}); use a newer actorchat or another --data-dir"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("cannot start the storage writer thread: {0}")]
    Thread(std::io::Error),
}

/// How much history to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most messages per room; `None` = unlimited.
    pub max_per_room: Option<u64>,
    /// Oldest message age; `None` = forever.
    pub max_age: Option<Duration>,
}

/// How durable a commit is (SQLite's `synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    /// Survives a crash or `kill -9` of the server (WAL, `synchronous=NORMAL`).
    Normal,
    /// Also survives a power loss: every commit waits for `fsync`.
    Full,
}

/// Which backend keeps the streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    Sqlite,
    Memory,
}

/// Everything needed to open storage.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub kind: StorageKind,
    pub data_dir: PathBuf,
    pub sync: Durability,
    pub retention: Retention,
}

/// The room-stream interface every backend implements. Reads are async so
/// that a networked backend (Redis, for cluster mode) fits beside these.
pub(crate) trait RoomStreams: Send + Sync + 'static {
    /// The stream's epoch and last id, creating the stream if it is new.
    fn head(&self, room: &str) -> impl Future<Output = Result<Head, StoreError>> + Send;
    /// The newest `n` messages, oldest first.
    fn latest(
        &self,
        room: &str,
        n: usize,
    ) -> impl Future<Output = Result<Vec<Stored>, StoreError>> + Send;
    /// Messages with id > `after`, oldest first, at most `limit`.
    fn after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Stored>, StoreError>> + Send;
    /// The newest `limit` messages with id < `before`, oldest first.
    fn before(
        &self,
        room: &str,
        before: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreError>> + Send;
    /// Queues a batch; never waits. `append.done` reports the outcome.
    fn append(&self, append: Append);
    /// Removes what the retention policy no longer keeps, a small batch at
    /// a time; returns how many messages it removed.
    fn trim(&self, retention: Retention) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

enum Backend {
    Memory(memory::MemoryStreams),
    Sqlite(sqlite::SqliteStreams),
    Redis(redis_streams::RedisStreams),
}

/// The configured backend, shared by every room and connection.
#[derive(Clone)]
pub(crate) struct Streams {
    backend: Arc<Backend>,
    health: Arc<Health>,
    pub retention: Retention,
}

/// Whether the last write succeeded: what `/readyz` reports.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failing: AtomicBool,
    reason: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub(crate) fn record(&self, result: &Result<(), StoreError>) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Relaxed) {
                    tracing::info!("storage writes succeed again");
                }
            }
            Err(e) => {
                *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                self.failing.store(true, Relaxed);
            }
        }
    }

    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Relaxed)
    }

    /// A sentence for `/readyz` while writes fail.
    pub(crate) fn problem(&self) -> Option<String> {
        if !self.failing.load(Relaxed) {
            return None;
        }
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some(format!(
            "storage writes are failing ({}); chat is answered `unavailable`",
            reason.as_deref().unwrap_or("unknown error")
        ))
    }
}

impl Streams {
    /// Opens the configured backend: creates the data directory, opens and
    /// migrates the database, starts the writer thread.
    pub(crate) fn open(
        config: &StorageConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Streams, OpenError> {
        let health = Arc::new(Health::default());
        let backend = match config.kind {
            StorageKind::Memory => Backend::Memory(memory::MemoryStreams::new(
                config.retention.max_per_room,
                metrics,
            )),
            StorageKind::Sqlite => Backend::Sqlite(sqlite::SqliteStreams::open(
                &config.data_dir,
                config.sync,
                metrics,
                health.clone(),
            )?),
        };
        Ok(Streams {
            backend: Arc::new(backend),
            health,
            retention: config.retention,
        })
    }

    /// Cluster mode: streams in Redis, numbered by Redis.
    pub(crate) fn redis(
        conn: redis::aio::ConnectionManager,
        cluster: crate::cluster::Cluster,
        config: &crate::cluster::ClusterConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Streams {
        let health = Arc::new(Health::default());
        Streams {
            backend: Arc::new(Backend::Redis(redis_streams::RedisStreams::new(
                conn,
                cluster,
                config,
                metrics,
                health.clone(),
            ))),
            health,
            retention: Retention {
                max_per_room: Some(config.redis_history_per_room),
                max_age: Some(config.history_ttl()),
            },
        }
    }

    /// Why the streams cannot take messages now, for `/readyz`: failing
    /// writes, or (cluster mode) a pub/sub connection that is down.
    pub(crate) fn problems(&self) -> Vec<String> {
        let bus = self.cluster().and_then(|c| c.bus.problem());
        self.health.problem().into_iter().chain(bus).collect()
    }

    /// The cluster (bus and presence), if the streams are shared through
    /// Redis: then ids come from Redis ([`Streams::publish`]), not from the
    /// room.
    pub(crate) fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        match &*self.backend {
            Backend::Redis(b) => Some(b.cluster()),
            _ => None,
        }
    }

    /// Cluster mode: numbers, stores and publishes a batch (see
    /// [`Publish`]). Without Redis (cannot happen: rooms check [`Streams::cluster`]
    /// first) the batch fails.
    pub(crate) fn publish(&self, publish: Publish) {
        match &*self.backend {
            Backend::Redis(b) => b.publish(publish),
            _ => (publish.done)(Err(StoreError::Stopped)),
        }
    }

    /// `floor`: the newest id the caller has seen. A shared stream that
    /// Redis lost is recreated (new epoch) continuing after it, so ids are
    /// not handed out twice; a local stream never loses its last id.
    pub(crate) async fn head(&self, room: &str, floor: u64) -> Result<Head, StoreError> {
        match &*self.backend {
            Backend::Memory(b) => b.head(room).await,
            Backend::Sqlite(b) => b.head(room).await,
            Backend::Redis(b) => b.head(room, floor).await,
        }
    }

    pub(crate) async fn latest(&self, room: &str, n: usize) -> Result<Vec<Stored>, StoreError> {
        match &*self.backend {
            Backend::Memory(b) => b.latest(room, n).await,
            Backend::Sqlite(b) => b.latest(room, n).await,
            Backend::Redis(b) => b.latest(room, n).await,
        }
    }

    pub(crate) async fn after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        match &*self.backend {
            Backend::Memory(b) => b.after(room, after, limit).await,
            Backend::Sqlite(b) => b.after(room, after, limit).await,
            Backend::Redis(b) => b.after(room, after, limit).await,
        }
    }

    pub(crate) async fn before(
        &self,
        room: &str,
        before: u64,
        limit: usize,
    ) -> Result<Page, StoreError> {
        match &*self.backend {
            Backend::Memory(b) => b.before(room, before, limit).await,
            Backend::Sqlite(b) => b.before(room, before, limit).await,
            Backend::Redis(b) => b.before(room, before, limit).await,
        }
    }

    /// Queues a batch; never waits.
    pub(crate) fn append(&self, append: Append) {
        match &*self.backend {
            Backend::Memory(b) => b.append(append),
            Backend::Sqlite(b) => b.append(append),
            // Rooms publish instead (they check `cluster()`).
            Backend::Redis(_) => (append.done)(Err(StoreError::Stopped)),
        }
    }

    pub(crate) async fn trim(&self) -> Result<u64, StoreError> {
        match &*self.backend {
            Backend::Memory(b) => b.trim(self.retention).await,
            Backend::Sqlite(b) => b.trim(self.retention).await,
            Backend::Redis(b) => b.trim(self.retention).await,
        }
    }
}

/// A `history` frame (also the body of `GET /rooms/{room}/messages`): the
/// stored frames are spliced in as they are, never decoded.
pub(crate) fn history_frame(room: &str, page: &Page) -> Bytes {
    let room = serde_json::to_string(room).unwrap_or_else(|_| "\"\"".into());
    let messages = json_array(page.messages.iter().map(|m| &m.frame));
    let mut out = Vec::with_capacity(messages.len() + room.len() + 64);
    out.extend_from_slice(b"{\"type\":\"history\",\"room\":");
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(b",\"messages\":");
    out.extend_from_slice(&messages);
    out.extend_from_slice(if page.has_more {
        b",\"has_more\":true}"
    } else {
        b",\"has_more\":false}"
    });
    Bytes::from(out)
}

/// A new epoch: 16 characters from 80 random bits.
pub(crate) fn new_epoch() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut raw = [0u8; 10];
    if getrandom::fill(&mut raw).is_err() {
        // No OS randomness (extremely unusual): the time still makes a
        // lost-and-recreated stream's epoch differ from the old one.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        raw.copy_from_slice(&nanos.to_le_bytes()[..10]);
    }
    let bits = raw.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    (0..16)
        .map(|i| char::from(ALPHABET[((bits >> (i * 5)) & 31) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_frame_decodes_as_the_protocol_type() {
        let chat = actorchat_protocol::ServerFrame::Chat(actorchat_protocol::ChatMessage {
            id: 7,
            room: "r".into(),
            author: "Ada".into(),
            user_id: Some("u-ada".into()),
            text: "hi".into(),
            client_id: None,
            sent_at: None,
            server_time: 1,
            calc: None,
        });
        let page = Page {
            messages: vec![Stored {
                id: 7,
                at_ms: 1,
                frame: Bytes::from(chat.to_json()),
            }],
            has_more: true,
        };
        let frame: actorchat_protocol::ServerFrame =
            serde_json::from_slice(&history_frame("r", &page)).unwrap_or_else(|e| panic!("{e}"));
        let actorchat_protocol::ServerFrame::History(h) = frame else {
            panic!("not a history frame");
        };
        assert!(h.has_more);
        assert_eq!(h.messages.len(), 1);
    }

    #[test]
    fn epochs_are_sixteen_characters_and_differ() {
        let a = new_epoch();
        let b = new_epoch();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
