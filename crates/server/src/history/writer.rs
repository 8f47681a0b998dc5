//! The SQLite writer: one thread, the only connection that writes.
//!
//! Group commit: it blocks for the first request, then takes everything
//! else already queued (up to [`MAX_BATCH_MESSAGES`]) and commits it all in
//! one transaction, so under load one commit (and with `--sync full` one
//! `fsync`) carries hundreds of messages of many rooms. Only then does it
//! tell each room, which broadcasts. A failed commit rolls back the whole
//! batch and reports the error to every room in it: nothing of it was
//! stored, nothing of it is broadcast.
//!
//! Retention runs here too, between batches, in transactions of at most
//! [`TRIM_BATCH`] deletions, so trimming never holds the write lock long.
//! Checkpoints do not: they run on their own thread, and the writer only
//! copies the small rest that lets the WAL start over
//! ([`super::checkpointer`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::checkpointer::{self, Wal};
use super::completions::Completions;
use super::{Append, Head, Health, Retention, StoreError, new_epoch};
use crate::clock::unix_millis;
use crate::metrics::Metrics;

/// A room's last id, in a query over `rooms`: its newest message's, or what
/// its row kept when retention last removed messages, whichever is larger.
/// So the row is written only by retention, never by a commit (which saves
/// a page of `rooms` in the WAL per room and commit).
const LAST_ID: &str =
    "max(last_id, coalesce((SELECT max(id) FROM messages WHERE room = rooms.id), 0))";

/// Most messages committed in one transaction.
const MAX_BATCH_MESSAGES: usize = 8192;
/// Most messages one trim transaction deletes.
pub(crate) const TRIM_BATCH: usize = 1000;
/// While writes fail, how often the writer tries a small write of its own,
/// so `/readyz` turns ready again even if nobody chats.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Requests queued for the writer before `append` fails fast with a
/// storage error instead of queueing without bound (each room has at most
/// one batch in flight, so this is only reached with a stuck disk).
const QUEUE: usize = 65_536;

pub(crate) enum WriterMsg {
    Append(Append),
    /// A room's epoch and last id, creating its stream (a new epoch) if
    /// it is new.
    Head {
        room: String,
        reply: oneshot::Sender<Result<Head, StoreError>>,
    },
    Trim {
        retention: Retention,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

pub(crate) struct WriterHandle(mpsc::SyncSender<WriterMsg>);

impl WriterHandle {
    pub(crate) fn send(&self, msg: WriterMsg) -> Result<(), StoreError> {
        self.0.try_send(msg).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                StoreError::Write("the storage writer's queue is full".into())
            }
            mpsc::TrySendError::Disconnected(_) => StoreError::Stopped,
        })
    }

    /// Like [`WriterHandle::send`], but hands the message back on failure.
    pub(crate) fn try_send(&self, msg: WriterMsg) -> Result<(), (StoreError, WriterMsg)> {
        self.0.try_send(msg).map_err(|e| match e {
            mpsc::TrySendError::Full(m) => (
                StoreError::Write("the storage writer's queue is full".into()),
                m,
            ),
            mpsc::TrySendError::Disconnected(m) => (StoreError::Stopped, m),
        })
    }
}

/// Starts the writer thread; it ends when every handle is dropped.
/// `checkpointer` is the sender whose drop (when the writer ends) stops the
/// checkpointer thread.
pub(crate) fn spawn(
    conn: Connection,
    completions: Completions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    wal: Arc<Wal>,
    checkpointer: mpsc::Sender<()>,
) -> std::io::Result<WriterHandle> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        // Linux keeps 15 bytes of a thread's name (`top -H`, `/proc`).
        .name("sqlite-writer".into())
        .spawn(move || {
            Writer {
                conn,
                completions,
                metrics,
                health,
                rooms: HashMap::new(),
                wal,
                _checkpointer: checkpointer,
            }
            .run(&rx);
        })?;
    Ok(WriterHandle(tx))
}

struct Writer {
    conn: Connection,
    /// How rooms learn that their batch is committed.
    completions: Completions,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Room name → its row and last stored id, filled as rooms are written
    /// (cleared when a commit fails: it may name what was rolled back).
    rooms: HashMap<Arc<str>, RoomRow>,
    wal: Arc<Wal>,
    _checkpointer: mpsc::Sender<()>,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<WriterMsg>) {
        loop {
            let first = if self.health.is_failing() {
                match rx.recv_timeout(PROBE_EVERY) {
                    Ok(msg) => msg,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.probe();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => return,
                }
            };
            let mut batch = Vec::new();
            let mut trims = Vec::new();
            let mut messages = 0;
            let mut next = Some(first);
            while let Some(msg) = next {
                match msg {
                    WriterMsg::Trim { retention, reply } => trims.push((retention, reply)),
                    WriterMsg::Append(append) => {
                        messages += append.messages.len();
                        batch.push(WriterMsg::Append(append));
                    }
                    create => batch.push(create),
                }
                next = if messages < MAX_BATCH_MESSAGES {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
            for (retention, reply) in trims {
                let _ = reply.send(self.trim(retention));
            }
            // After the rooms were told: they broadcast while this copies.
            if self.wal.take_finish() {
                self.finish_checkpoint();
            }
        }
    }

    /// Copies what the checkpointer left in the WAL, so that every frame is
    /// in the database file and the next commit starts the WAL over.
    fn finish_checkpoint(&mut self) {
        let started = Instant::now();
        let history = &self.metrics.history;
        match checkpointer::passive(&self.conn) {
            Ok(progress) => {
                history.wal_finish_seconds.observe(started.elapsed());
                history.note_wal(progress.log, progress.copied);
            }
            Err(e) => {
                warn!(error = %e, "copying the rest of the WAL failed; the checkpointer tries again")
            }
        }
    }

    /// One small real write (a page in the WAL), to learn whether writes
    /// work again.
    fn probe(&mut self) {
        let result = self
            .conn
            .execute(
                "INSERT INTO probe (id, at_ms) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
                [int(unix_millis())],
            )
            .map(|_| ())
            .map_err(|e| StoreError::Write(e.to_string()));
        self.health.record(&result);
    }

    fn commit(&mut self, batch: Vec<WriterMsg>) {
        let started = Instant::now();
        let mut rejected = vec![false; batch.len()];
        let (result, messages) = match self.write(&batch, &mut rejected) {
            Ok(written) => (Ok(()), written),
            Err(e) => (Err(e), 0),
        };
        let history = &self.metrics.history;
        match &result {
            Ok(()) if messages > 0 => {
                history.commit_seconds.observe(started.elapsed());
                history.commit_messages.observe(messages as u64);
                // The checkpointer's measure of progress too.
                history.appends.fetch_add(messages as u64, Relaxed);
            }
            Ok(()) => {}
            Err(e) => {
                // The cache may name rooms or ids that were rolled back.
                self.rooms.clear();
                history.write_errors.fetch_add(1, Relaxed);
                error!(error = %e, "storage commit failed; the batch is answered `unavailable` and not broadcast");
            }
        }
        self.health.record(&result);
        for (msg, rejected) in batch.into_iter().zip(rejected) {
            match msg {
                WriterMsg::Append(append) => {
                    let outcome = if rejected {
                        Err(StoreError::Write(
                            "the batch does not follow the room's stored ids".into(),
                        ))
                    } else {
                        result.clone()
                    };
                    if append.via_dispatcher {
                        self.completions.complete(append.done, outcome);
                    } else {
                        (append.done)(outcome);
                    }
                }
                WriterMsg::Head { room, reply } => {
                    let _ = reply.send(result.clone().and_then(|()| self.head(&room)));
                }
                WriterMsg::Trim { .. } => {}
            }
        }
    }

    /// Writes a batch in one transaction; all or nothing, except that an
    /// append that does not continue its room's stored ids is left out and
    /// marked in `rejected`: ids are contiguous (resume and gap filling rely
    /// on it), and one room's bad batch must not fail every other room's
    /// messages in the same transaction.
    /// Returns how many messages it wrote.
    fn write(&mut self, batch: &[WriterMsg], rejected: &mut [bool]) -> Result<usize, StoreError> {
        let fail = |e: rusqlite::Error| StoreError::Write(e.to_string());
        let tx = self.conn.transaction().map_err(fail)?;
        let mut written = 0;
        for (msg, rejected) in batch.iter().zip(rejected) {
            match msg {
                WriterMsg::Append(append) => {
                    let row = room_row(&tx, &mut self.rooms, &append.room).map_err(fail)?;
                    let (Some(first), Some(last)) =
                        (append.messages.first(), append.messages.last())
                    else {
                        continue;
                    };
                    if first.id != row.last_id + 1 {
                        error!(
                            room = %append.room, first = first.id, stored = row.last_id,
                            "a batch does not follow the room's stored ids; refused (a bug in the room's numbering)"
                        );
                        *rejected = true;
                        continue;
                    }
                    written += append.messages.len();
                    row.last_id = last.id;
                    let room = row.id;
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO messages (room, id, at_ms, frame) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .map_err(fail)?;
                    // The room's row is not touched (see `LAST_ID`).
                    for m in &append.messages {
                        insert
                            .execute(params![room, int(m.id), int(m.at_ms), &m.frame[..]])
                            .map_err(fail)?;
                    }
                }
                WriterMsg::Head { room, .. } => {
                    let room: Arc<str> = room.as_str().into();
                    room_row(&tx, &mut self.rooms, &room).map_err(fail)?;
                }
                WriterMsg::Trim { .. } => {}
            }
        }
        tx.commit().map_err(fail)?;
        Ok(written)
    }

    fn head(&self, room: &str) -> Result<Head, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT epoch, {LAST_ID} FROM rooms WHERE name = ?1"),
                [room],
                |row| {
                    Ok(Head {
                        epoch: row.get(0)?,
                        last_id: row.get::<_, i64>(1)?.try_into().unwrap_or(0),
                    })
                },
            )
            .map_err(|e| StoreError::Read(e.to_string()))
    }

    /// Deletes at most [`TRIM_BATCH`] messages that `retention` no longer
    /// keeps, oldest first, in one transaction; returns how many.
    fn trim(&mut self, retention: Retention) -> Result<u64, StoreError> {
        if retention.max_per_room.is_none() && retention.max_age.is_none() {
            return Ok(0);
        }
        let started = Instant::now();
        let fail = |e: rusqlite::Error| StoreError::Write(e.to_string());
        let cutoff = retention.max_age.map(|age| {
            int(unix_millis().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)))
        });
        let tx = self.conn.transaction().map_err(fail)?;
        let rooms: Vec<(i64, i64)> = tx
            .prepare_cached(&format!("SELECT id, {LAST_ID} FROM rooms"))
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(fail)?;
        let mut budget = TRIM_BATCH as i64;
        let mut removed = 0u64;
        for (room, last_id) in rooms {
            if budget == 0 {
                break;
            }
            let Some(first) = tx
                .prepare_cached("SELECT min(id) FROM messages WHERE room = ?1")
                .and_then(|mut s| s.query_row([room], |r| r.get::<_, Option<i64>>(0)))
                .map_err(fail)?
            else {
                continue;
            };
            // Ids are contiguous, so the count bound is an id bound.
            let mut keep_from = retention
                .max_per_room
                .map_or(first, |max| first.max(last_id - int(max) + 1));
            if let Some(cutoff) = cutoff {
                // The first message young enough to keep, looked for only
                // among the next `budget` ids (time only grows along ids), so
                // one trim never scans a whole room.
                let horizon = (first + budget).min(last_id + 1);
                let young: Option<i64> = tx
                    .prepare_cached(
                        "SELECT id FROM messages WHERE room = ?1 AND id >= ?2 AND id < ?4 AND at_ms >= ?3 ORDER BY id LIMIT 1",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![room, keep_from, cutoff, horizon], |r| r.get(0))
                            .optional()
                    })
                    .map_err(fail)?;
                keep_from = keep_from.max(young.unwrap_or(horizon));
            }
            let end = keep_from.min(first + budget);
            if end <= first {
                continue;
            }
            // The newest message may be among those removed: its id must
            // survive them (see `head`).
            tx.prepare_cached("UPDATE rooms SET last_id = ?2 WHERE id = ?1 AND last_id < ?2")
                .and_then(|mut s| s.execute(params![room, last_id]))
                .map_err(fail)?;
            let n = tx
                .prepare_cached("DELETE FROM messages WHERE room = ?1 AND id < ?2")
                .and_then(|mut s| s.execute(params![room, end]))
                .map_err(fail)?;
            budget -= n as i64;
            removed += n as u64;
        }
        tx.commit().map_err(fail)?;
        if removed > 0 {
            self.metrics.history.trimmed.fetch_add(removed, Relaxed);
            if started.elapsed().as_millis() > 100 {
                warn!(
                    removed,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "a retention batch took long"
                );
            }
        }
        Ok(removed)
    }
}

/// A room's row id and last stored id, as the writer tracks them.
struct RoomRow {
    id: i64,
    last_id: u64,
}

/// The room's row, creating its stream (with a new epoch) if it is new.
fn room_row<'a>(
    tx: &rusqlite::Transaction<'_>,
    cache: &'a mut HashMap<Arc<str>, RoomRow>,
    room: &Arc<str>,
) -> rusqlite::Result<&'a mut RoomRow> {
    if !cache.contains_key(room) {
        tx.prepare_cached(
            "INSERT INTO rooms (name, epoch, last_id, created_ms) VALUES (?1, ?2, 0, ?3) ON CONFLICT (name) DO NOTHING",
        )?
        .execute(params![&**room, new_epoch(), int(unix_millis())])?;
        let (id, last_id) = tx
            .prepare_cached(&format!("SELECT id, {LAST_ID} FROM rooms WHERE name = ?1"))?
            .query_row([&**room], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?)))?;
        let last_id = u64::try_from(last_id).unwrap_or(0);
        cache.insert(room.clone(), RoomRow { id, last_id });
    }
    cache
        .get_mut(room)
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
