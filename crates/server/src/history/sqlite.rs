//! The `sqlite` backend: every room's stream in one embedded database
//! (`<data-dir>/actorchat.db`, bundled SQLite, WAL mode).
//!
//! Durability: with `synchronous=NORMAL` a commit is in the WAL file when
//! it returns, so it survives a crash or `kill -9` of the process (not a
//! power loss); `--sync full` also waits for `fsync`. Writes all go through
//! the single writer thread ([`super::writer`]); reads use a small pool of
//! read-only connections on Tokio's blocking pool, which WAL lets run while
//! the writer commits.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::oneshot;

use super::checkpointer::{self, Limits, Wal};
use super::completions::Completions;
use super::writer::{self, WriterMsg};
use super::{
    Append, Durability, Head, Health, OpenError, Page, Retention, RoomStreams, StoreError, Stored,
};
use crate::metrics::Metrics;

/// The schema, one entry per version; `PRAGMA user_version` says how many
/// have been applied. Append only: a released migration never changes.
const MIGRATIONS: &[&str] = &[
    // 1: rooms keep their epoch and last id even when retention has removed
    // every message, so ids are never reused (`last_id` is written by
    // retention, before it removes messages; a room's head is the larger of
    // it and its newest message). Messages are clustered by (room, id):
    // every read is a range of one room.
    "CREATE TABLE rooms (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        epoch TEXT NOT NULL,
        last_id INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE messages (
        room INTEGER NOT NULL,
        id INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        frame BLOB NOT NULL,
        PRIMARY KEY (room, id)
    ) WITHOUT ROWID;
    CREATE TABLE probe (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        at_ms INTEGER NOT NULL
    );",
];

/// Page cache per connection (64 MiB, negative = KiB) and memory-mapped
/// reads (256 MiB): with hundreds of rooms a commit touches a leaf page per
/// room, and SQLite's default 2 MiB cache made the writer re-read them from
/// the file (a `pread` each) on every commit.
const CACHE: &str = "PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456;";

/// The writer never checkpoints by itself (SQLite's automatic checkpoint
/// runs inside a commit and stalls every room for the copy and its fsync);
/// the checkpointer thread does it ([`super::checkpointer`]). When the WAL
/// starts over, its file is cut back to 256 MiB.
const WAL: &str = "PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=268435456;";

/// Read connections kept open for reuse; more may be opened under load.
const POOLED_READERS: usize = 4;

pub(crate) struct SqliteStreams {
    path: PathBuf,
    readers: Arc<Mutex<Vec<Connection>>>,
    writer: writer::WriterHandle,
}

/// The database file inside the data directory.
pub(crate) fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("actorchat.db")
}

impl SqliteStreams {
    pub(crate) fn open(
        data_dir: &Path,
        sync: Durability,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Result<SqliteStreams, OpenError> {
        Self::open_with(data_dir, sync, metrics, health, Limits::default())
    }

    fn open_with(
        data_dir: &Path,
        sync: Durability,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        wal_limits: Limits,
    ) -> Result<SqliteStreams, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = database_path(data_dir);
        let db_error = |e: rusqlite::Error| OpenError::Database {
            path: path.clone(),
            reason: e.to_string(),
        };
        let conn = Connection::open(&path).map_err(db_error)?;
        let synchronous = match sync {
            Durability::Normal => "NORMAL",
            Durability::Full => "FULL",
        };
        // journal_mode answers with the mode it set: a read-only or
        // corrupt file fails here, at start, not at the first chat.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
            .map_err(db_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(OpenError::Database {
                path: path.clone(),
                reason: format!("could not switch to WAL mode (got {mode})"),
            });
        }
        conn.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA busy_timeout=5000; {CACHE} {WAL}"
        ))
        .map_err(db_error)?;
        migrate(&conn, &path)?;
        let wal = Arc::new(Wal::new(wal_limits));
        let (stop_checkpointer, stop) = std::sync::mpsc::channel();
        checkpointer::spawn(&path, wal.clone(), metrics.clone(), stop)?;
        let completions = Completions::start().map_err(OpenError::Thread)?;
        let writer = writer::spawn(conn, completions, metrics, health, wal, stop_checkpointer)
            .map_err(OpenError::Thread)?;
        let streams = SqliteStreams {
            path: path.clone(),
            readers: Arc::new(Mutex::new(Vec::new())),
            writer,
        };
        // A first read proves the read side works too.
        let reader = open_reader(&streams.path).map_err(db_error)?;
        streams.put_reader(reader);
        Ok(streams)
    }

    fn put_reader(&self, conn: Connection) {
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOLED_READERS {
            pool.push(conn);
        }
    }

    /// Runs `query` on a read connection on Tokio's blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&path)?,
            };
            let result = query(&conn);
            let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOLED_READERS {
                pool.push(conn);
            }
            result
        });
        match read.await {
            Ok(result) => result.map_err(|e| StoreError::Read(e.to_string())),
            Err(e) => Err(StoreError::Read(format!("read task failed: {e}"))),
        }
    }
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(&format!(
        "PRAGMA query_only=1; PRAGMA busy_timeout=5000; {CACHE}"
    ))?;
    Ok(conn)
}

/// Applies the migrations this database has not seen yet.
fn migrate(conn: &Connection, path: &Path) -> Result<(), OpenError> {
    let db_error = |e: rusqlite::Error| OpenError::Database {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db_error)?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(OpenError::TooNew {
            path: path.to_owned(),
            found: version,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let next = i + 1;
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version={next}; COMMIT;"
        ))
        .map_err(db_error)?;
        tracing::info!(path = %path.display(), version = next, "database schema migrated");
    }
    Ok(())
}

fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    Ok(Stored {
        id: row.get::<_, i64>(0)?.try_into().unwrap_or(0),
        at_ms: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
        frame: Bytes::from(row.get::<_, Vec<u8>>(2)?),
    })
}

/// SQLite integers are signed; ids and limits beyond i64 are clamped.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const ROOM: &str = "(SELECT id FROM rooms WHERE name = ?1)";

impl RoomStreams for SqliteStreams {
    /// Through the writer, behind any append already queued: a room
    /// restarted after a panic must see the last id of a batch its
    /// predecessor had in flight, or it would hand out that id again.
    async fn head(&self, room: &str) -> Result<Head, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(WriterMsg::Head {
            room: room.into(),
            reply,
        })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    async fn latest(&self, room: &str, n: usize) -> Result<Vec<Stored>, StoreError> {
        let name = room.to_owned();
        let mut newest_first: Vec<Stored> = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT id, at_ms, frame FROM messages WHERE room = {ROOM} ORDER BY id DESC LIMIT ?2"
                ))?;
                stmt.query_map(params![name, int(n as u64)], stored)?.collect()
            })
            .await?;
        newest_first.reverse();
        Ok(newest_first)
    }

    async fn after(&self, room: &str, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let name = room.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT id, at_ms, frame FROM messages WHERE room = {ROOM} AND id > ?2 ORDER BY id LIMIT ?3"
            ))?;
            stmt.query_map(params![name, int(after), int(limit as u64)], stored)?
                .collect()
        })
        .await
    }

    async fn before(&self, room: &str, before: u64, limit: usize) -> Result<Page, StoreError> {
        let name = room.to_owned();
        let mut newest_first: Vec<Stored> = self
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT id, at_ms, frame FROM messages WHERE room = {ROOM} AND id < ?2 ORDER BY id DESC LIMIT ?3"
                ))?;
                // One more than asked: whether it exists is `has_more`.
                stmt.query_map(params![name, int(before), int(limit as u64 + 1)], stored)?
                    .collect()
            })
            .await?;
        let has_more = newest_first.len() > limit;
        newest_first.truncate(limit);
        newest_first.reverse();
        Ok(Page {
            messages: newest_first,
            has_more,
        })
    }

    fn append(&self, append: Append) {
        if let Err((e, WriterMsg::Append(append))) = self.writer.try_send(WriterMsg::Append(append))
        {
            (append.done)(Err(e));
        }
    }

    async fn trim(&self, retention: Retention) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer.send(WriterMsg::Trim { retention, reply })?;
        answer.await.map_err(|_| StoreError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::history::Streams;
    use crate::history::{StorageConfig, StorageKind};

    pub(crate) fn config(dir: &Path) -> StorageConfig {
        StorageConfig {
            kind: StorageKind::Sqlite,
            data_dir: dir.to_owned(),
            sync: Durability::Normal,
            retention: Retention {
                max_per_room: None,
                max_age: None,
            },
        }
    }

    async fn append(streams: &Streams, room: &str, ids: std::ops::RangeInclusive<u64>, at_ms: u64) {
        let (tx, rx) = oneshot::channel();
        streams.append(Append {
            room: room.into(),
            messages: ids
                .map(|id| Stored {
                    id,
                    at_ms,
                    frame: Bytes::from(format!("{{\"id\":{id}}}")),
                })
                .collect(),
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
            via_dispatcher: false,
        });
        rx.await.unwrap().unwrap();
    }

    fn ids(list: &[Stored]) -> Vec<u64> {
        list.iter().map(|m| m.id).collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("actorchat-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[tokio::test]
    async fn survives_reopening_and_pages_join_up() {
        let dir = temp_dir("reopen");
        let epoch = {
            let streams = Streams::open(&config(&dir), Arc::default()).unwrap();
            let head = streams.head("r", 0).await.unwrap();
            assert_eq!(head.last_id, 0);
            append(&streams, "r", 1..=3, 10).await;
            append(&streams, "r", 4..=7, 11).await;
            append(&streams, "other", 1..=2, 11).await;
            head.epoch
        };
        let streams = Streams::open(&config(&dir), Arc::default()).unwrap();
        let head = streams.head("r", 0).await.unwrap();
        assert_eq!(head, Head { epoch, last_id: 7 });
        assert_eq!(ids(&streams.latest("r", 2).await.unwrap()), [6, 7]);
        assert_eq!(ids(&streams.after("r", 5, 10).await.unwrap()), [6, 7]);
        // Scroll-back pages join up and the first has_more is false.
        let mut seen = Vec::new();
        let mut before = u64::MAX;
        loop {
            let page = streams.before("r", before, 3).await.unwrap();
            seen.splice(0..0, ids(&page.messages));
            before = page.messages[0].id;
            if !page.has_more {
                break;
            }
        }
        assert_eq!(seen, [1, 2, 3, 4, 5, 6, 7]);
        // Another room's stream is separate, with its own epoch.
        let other = streams.head("other", 0).await.unwrap();
        assert_eq!(other.last_id, 2);
        assert_ne!(other.epoch, streams.head("r", 0).await.unwrap().epoch);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_duplicate_id_fails_the_batch_and_writes_nothing_of_it() {
        let dir = temp_dir("dup");
        let streams = Streams::open(&config(&dir), Arc::default()).unwrap();
        streams.head("r", 0).await.unwrap();
        append(&streams, "r", 1..=2, 1).await;
        let (tx, rx) = oneshot::channel();
        streams.append(Append {
            room: "r".into(),
            messages: [3, 2]
                .into_iter()
                .map(|id| Stored {
                    id,
                    at_ms: 1,
                    frame: Bytes::from_static(b"{}"),
                })
                .collect(),
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
            via_dispatcher: false,
        });
        assert!(matches!(rx.await.unwrap(), Err(StoreError::Write(_))));
        assert!(!streams.problems().is_empty());
        assert_eq!(ids(&streams.latest("r", 10).await.unwrap()), [1, 2]);
        append(&streams, "r", 3..=3, 1).await;
        assert!(streams.problems().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A batch that does not follow the stored ids would leave a gap: it is
    /// refused, alone; the next that does follow is stored.
    #[tokio::test]
    async fn a_batch_that_does_not_follow_the_stored_ids_is_refused_alone() {
        let dir = temp_dir("gap");
        let streams = Streams::open(&config(&dir), Arc::default()).unwrap();
        streams.head("r", 0).await.unwrap();
        streams.head("other", 0).await.unwrap();
        append(&streams, "r", 1..=2, 1).await;
        let (gap, gap_done) = oneshot::channel();
        streams.append(Append {
            room: "r".into(),
            messages: vec![Stored {
                id: 5,
                at_ms: 1,
                frame: Bytes::from_static(b"{}"),
            }],
            done: Box::new(move |r| {
                let _ = gap.send(r);
            }),
            via_dispatcher: false,
        });
        // Queued behind it, possibly in the same transaction: unharmed.
        append(&streams, "other", 1..=1, 1).await;
        assert!(matches!(gap_done.await.unwrap(), Err(StoreError::Write(_))));
        assert_eq!(ids(&streams.latest("r", 10).await.unwrap()), [1, 2]);
        assert_eq!(ids(&streams.latest("other", 10).await.unwrap()), [1]);
        append(&streams, "r", 3..=3, 1).await;
        assert_eq!(streams.head("r", 0).await.unwrap().last_id, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn trimming_by_count_and_by_age() {
        let dir = temp_dir("trim");
        let mut config = config(&dir);
        let streams = Streams::open(&config, Arc::default()).unwrap();
        streams.head("r", 0).await.unwrap();
        let now = crate::clock::unix_millis();
        append(&streams, "r", 1..=2500, now - 3_600_000).await;
        append(&streams, "r", 2501..=3000, now).await;
        drop(streams);
        config.retention.max_per_room = Some(2000);
        let streams = Streams::open(&config, Arc::default()).unwrap();
        let mut removed = 0;
        loop {
            let n = streams.trim().await.unwrap();
            if n == 0 {
                break;
            }
            assert!(
                n <= writer::TRIM_BATCH as u64,
                "one trim removes a small batch"
            );
            removed += n;
        }
        assert_eq!(removed, 1000);
        assert_eq!(ids(&streams.after("r", 0, 1).await.unwrap()), [1001]);
        drop(streams);
        config.retention.max_age = Some(std::time::Duration::from_secs(60));
        let streams = Streams::open(&config, Arc::default()).unwrap();
        while streams.trim().await.unwrap() > 0 {}
        assert_eq!(ids(&streams.after("r", 0, 1).await.unwrap()), [2501]);
        // The last id survives trimming, even of every message.
        assert_eq!(streams.head("r", 0).await.unwrap().last_id, 3000);
        drop(streams);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        config.retention.max_age = Some(std::time::Duration::from_millis(1));
        let streams = Streams::open(&config, Arc::default()).unwrap();
        while streams.trim().await.unwrap() > 0 {}
        assert!(streams.latest("r", 10).await.unwrap().is_empty());
        drop(streams);
        let streams = Streams::open(&config, Arc::default()).unwrap();
        assert_eq!(streams.head("r", 0).await.unwrap().last_id, 3000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Under writes that never pause, a PASSIVE checkpoint alone would let
    /// the WAL grow for ever (autocheckpoint is off); the writer's finish
    /// keeps it bounded, and nothing is lost on the way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_under_writes_that_never_pause() {
        let dir = temp_dir("wal");
        let metrics = Arc::new(Metrics::default());
        let limits = Limits {
            interval: std::time::Duration::from_millis(5),
            pass_messages: 50,
            reset: 64,
            finish: 32,
            hard: 256,
        };
        let streams = Arc::new(
            SqliteStreams::open_with(
                &dir,
                Durability::Normal,
                metrics.clone(),
                Arc::default(),
                limits,
            )
            .unwrap(),
        );
        const ROOMS: u64 = 40;
        const BATCHES: u64 = 300;
        let mut writers = Vec::new();
        for r in 0..ROOMS {
            let streams = streams.clone();
            writers.push(tokio::spawn(async move {
                let room = format!("room-{r}");
                streams.head(&room).await.unwrap();
                for b in 0..BATCHES {
                    let (tx, rx) = oneshot::channel();
                    streams.append(Append {
                        room: room.as_str().into(),
                        messages: (b * 2 + 1..=b * 2 + 2)
                            .map(|id| Stored {
                                id,
                                at_ms: 1,
                                frame: Bytes::from(format!(
                                    "{{\"id\":{id},\"text\":\"{}\"}}",
                                    "x".repeat(200)
                                )),
                            })
                            .collect(),
                        done: Box::new(move |r| {
                            let _ = tx.send(r);
                        }),
                        // Both ways of telling the room, side by side.
                        via_dispatcher: r % 2 == 0,
                    });
                    rx.await.unwrap().unwrap();
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        // Without restarts the WAL would hold every page of every commit
        // (about 150 MB here); with them, what a few passes leave behind.
        let commits = metrics.history.commit_seconds.count();
        assert!(commits > 200, "{commits} commits");
        let wal_bytes = std::fs::metadata(dir.join("actorchat.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal_bytes < 32 << 20,
            "the WAL grew to {wal_bytes} bytes over {commits} commits"
        );
        assert!(metrics.history.checkpoint_seconds.count() > 0);
        for r in 0..ROOMS {
            let room = format!("room-{r}");
            assert_eq!(streams.head(&room).await.unwrap().last_id, BATCHES * 2);
            let all = streams.after(&room, 0, 1000).await.unwrap();
            assert_eq!(ids(&all), (1..=BATCHES * 2).collect::<Vec<_>>());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_newer_schema_or_a_corrupt_file_is_refused() {
        let dir = temp_dir("newer");
        std::fs::create_dir_all(&dir).unwrap();
        let conn = Connection::open(database_path(&dir)).unwrap();
        conn.execute_batch("PRAGMA user_version=99;").unwrap();
        drop(conn);
        let err = SqliteStreams::open(&dir, Durability::Normal, Arc::default(), Arc::default())
            .err()
            .unwrap();
        assert!(matches!(err, OpenError::TooNew { found: 99, .. }), "{err}");
        std::fs::write(database_path(&dir), vec![7u8; 8192]).unwrap();
        let _ = std::fs::remove_file(dir.join("actorchat.db-wal"));
        let err = SqliteStreams::open(&dir, Durability::Normal, Arc::default(), Arc::default())
            .err()
            .unwrap();
        assert!(matches!(err, OpenError::Database { .. }), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
