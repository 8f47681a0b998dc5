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

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::{Append, Head, Health, Retention, StoreError, new_epoch};
use crate::clock::unix_millis;
use crate::metrics::Metrics;

/// Most messages committed in one transaction.
const MAX_BATCH_MESSAGES: usize = 8192;
/// Most messages one trim transaction deletes.
pub(crate) const TRIM_BATCH: usize = 1000;
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
pub(crate) fn spawn(
    conn: Connection,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<WriterHandle> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("actorchat-sqlite-writer".into())
        .spawn(move || {
            Writer {
                conn,
                metrics,
                health,
                room_ids: HashMap::new(),
            }
            .run(&rx);
        })?;
    Ok(WriterHandle(tx))
}

struct Writer {
    conn: Connection,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Room name → rowid, filled as rooms are written.
    room_ids: HashMap<Arc<str>, i64>,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<WriterMsg>) {
        while let Ok(first) = rx.recv() {
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
                self.commit(batch, messages);
            }
            for (retention, reply) in trims {
                let _ = reply.send(self.trim(retention));
            }
        }
    }

    fn commit(&mut self, batch: Vec<WriterMsg>, messages: usize) {
        let started = Instant::now();
        let result = self.write(&batch);
        let history = &self.metrics.history;
        match &result {
            Ok(()) if messages > 0 => {
                history.commit_seconds.observe(started.elapsed());
                history.commit_messages.observe(messages as u64);
                history.appends.fetch_add(messages as u64, Relaxed);
            }
            Ok(()) => {}
            Err(e) => {
                // The cache may name rooms whose insert was rolled back.
                self.room_ids.clear();
                history.write_errors.fetch_add(1, Relaxed);
                error!(error = %e, messages, "storage commit failed; the batch is answered `unavailable` and not broadcast");
            }
        }
        self.health.record(&result.clone().map(|_| ()));
        for msg in batch {
            match msg {
                WriterMsg::Append(append) => (append.done)(result.clone()),
                WriterMsg::Head { room, reply } => {
                    let _ = reply.send(result.clone().and_then(|()| self.head(&room)));
                }
                WriterMsg::Trim { .. } => {}
            }
        }
    }

    /// Writes a batch in one transaction; all or nothing.
    fn write(&mut self, batch: &[WriterMsg]) -> Result<(), StoreError> {
        let fail = |e: rusqlite::Error| StoreError::Write(e.to_string());
        let tx = self.conn.transaction().map_err(fail)?;
        for msg in batch {
            match msg {
                WriterMsg::Append(append) => {
                    let room = room_id(&tx, &mut self.room_ids, &append.room).map_err(fail)?;
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO messages (room, id, at_ms, frame) VALUES (?1, ?2, ?3, ?4)",
                        )
                        .map_err(fail)?;
                    for m in &append.messages {
                        insert
                            .execute(params![room, int(m.id), int(m.at_ms), &m.frame[..]])
                            .map_err(fail)?;
                    }
                    if let Some(last) = append.messages.last() {
                        tx.prepare_cached(
                            "UPDATE rooms SET last_id = ?2 WHERE id = ?1 AND last_id < ?2",
                        )
                        .and_then(|mut s| s.execute(params![room, int(last.id)]))
                        .map_err(fail)?;
                    }
                }
                WriterMsg::Head { room, .. } => {
                    let room: Arc<str> = room.as_str().into();
                    room_id(&tx, &mut self.room_ids, &room).map_err(fail)?;
                }
                WriterMsg::Trim { .. } => {}
            }
        }
        tx.commit().map_err(fail)
    }

    fn head(&self, room: &str) -> Result<Head, StoreError> {
        self.conn
            .query_row(
                "SELECT epoch, last_id FROM rooms WHERE name = ?1",
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
            .prepare_cached("SELECT id, last_id FROM rooms")
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

/// The room's rowid, creating its stream (with a new epoch) if it is new.
fn room_id(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut HashMap<Arc<str>, i64>,
    room: &Arc<str>,
) -> rusqlite::Result<i64> {
    if let Some(id) = cache.get(room) {
        return Ok(*id);
    }
    tx.prepare_cached(
        "INSERT INTO rooms (name, epoch, last_id, created_ms) VALUES (?1, ?2, 0, ?3) ON CONFLICT (name) DO NOTHING",
    )?
    .execute(params![&**room, new_epoch(), int(unix_millis())])?;
    let id = tx
        .prepare_cached("SELECT id FROM rooms WHERE name = ?1")?
        .query_row([&**room], |r| r.get(0))?;
    cache.insert(room.clone(), id);
    Ok(id)
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
