//! WAL checkpoints off the writer's path.
//!
//! In WAL mode a commit appends pages to the WAL file; a checkpoint copies
//! them back into the database file and fsyncs it. SQLite's automatic
//! checkpoint runs inside the commit that crosses its mark, so every room
//! waited for the copy and the fsync: 100–250 ms per checkpoint, once a
//! second at 10,000 msg/s over 500 rooms, which set the delivery p99.
//!
//! So the writer's connection never checkpoints automatically. This thread,
//! with a connection of its own, runs PASSIVE checkpoints, which copy what
//! is in the WAL while the writer goes on committing. A PASSIVE checkpoint
//! alone never lets the WAL start over under steady writes: frames written
//! during a copy are never all copied at the moment the writer begins its
//! next transaction, so the file would grow without bound. Hence the second
//! half: once the WAL is worth restarting and what is left to copy is small,
//! the checkpointer asks the writer ([`Wal::take_finish`]) to copy that rest
//! itself between two commits. Then every frame is in the database and the
//! writer's next commit starts the WAL from its beginning. The writer's
//! share is a short copy and two fsyncs of little dirty data, instead of
//! the whole checkpoint.
//!
//! If the checkpointer cannot keep up (a slow disk under heavy writes), the
//! writer is asked to finish whatever is left once the WAL reaches
//! [`Limits::hard`]: a longer stall, but the WAL stays bounded.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tracing::{info, warn};

use crate::metrics::Metrics;

/// How often the checkpointer looks at the writer's progress.
const INTERVAL: Duration = Duration::from_millis(100);
/// Messages committed since the last pass that make a pass worth its two
/// fsyncs (at about a page per message, ~8 MiB of WAL). Passes that copy
/// little cost more than they save: each fsync of the WAL holds up the
/// writer's next append to a page being written back, and at a chat's pace
/// (100 msg/s) ten passes a second made the fan-out p99 worse.
const PASS_MESSAGES: u64 = 2_000;
/// However few messages came, a pass after this long, so that a quiet
/// server's WAL gets copied (and then starts over for free).
const QUIET_PASS: Duration = Duration::from_secs(10);
/// WAL frames (pages, 4 KiB) worth restarting the file for: 256 MiB.
/// Each restart stalls the writer for the copy of the rest and two fsyncs
/// (20–60 ms on this project's test machine under load), so restarts are
/// kept rare: at 10,000 msg/s over 500 rooms (about one page per message)
/// one every few seconds. When writes pause, the checkpointer copies
/// everything and the next commit restarts the WAL for free.
const WAL_RESET_FRAMES: i64 = 65_536;
/// The rest the writer is asked to copy itself, at most (frames).
const FINISH_FRAMES: i64 = 1024;
/// Above this many frames (1 GiB) the writer copies whatever is left,
/// however much.
const WAL_HARD_FRAMES: i64 = 262_144;
/// Passes in a row without a pause while the rest is still large.
const MAX_BACK_TO_BACK: u32 = 8;

/// When the WAL is restarted, in frames, and how often the checkpointer
/// looks (tests make them small).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub interval: Duration,
    pub pass_messages: u64,
    pub reset: i64,
    pub finish: i64,
    pub hard: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            interval: INTERVAL,
            pass_messages: PASS_MESSAGES,
            reset: WAL_RESET_FRAMES,
            finish: FINISH_FRAMES,
            hard: WAL_HARD_FRAMES,
        }
    }
}

/// What the writer and the checkpointer share.
#[derive(Debug, Default)]
pub(crate) struct Wal {
    limits: Limits,
    /// Set by the checkpointer: copy the rest before the next commit.
    finish: AtomicBool,
}

impl Wal {
    pub(crate) fn new(limits: Limits) -> Wal {
        Wal {
            limits,
            ..Wal::default()
        }
    }

    /// Whether the writer should copy the rest of the WAL now (and clears
    /// the request).
    pub(crate) fn take_finish(&self) -> bool {
        self.finish.swap(false, Relaxed)
    }
}

/// A checkpoint's answer: frames in the WAL, and how many of them are in the
/// database file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub log: i64,
    pub copied: i64,
}

/// `PRAGMA wal_checkpoint(PASSIVE)` on `conn`: copies what it can without
/// waiting for anyone.
pub(crate) fn passive(conn: &Connection) -> rusqlite::Result<Progress> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok(Progress {
            log: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

/// Starts the checkpointer on its own connection to `path`. It ends when
/// `stop`'s sender (held by the writer) is dropped.
pub(crate) fn spawn(
    path: &Path,
    wal: Arc<Wal>,
    metrics: Arc<Metrics>,
    stop: mpsc::Receiver<()>,
) -> Result<(), super::OpenError> {
    let path = path.to_owned();
    let mut wal_path = path.clone().into_os_string();
    wal_path.push("-wal");
    let wal_path = PathBuf::from(wal_path);
    let conn = Connection::open(&path).map_err(|e| super::OpenError::Database {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    std::thread::Builder::new()
        .name("sqlite-checkpt".into())
        .spawn(move || {
            Checkpointer {
                conn,
                wal,
                metrics,
                files: [wal_path, path],
            }
            .run(&stop);
        })
        .map_err(super::OpenError::Thread)?;
    Ok(())
}

struct Checkpointer {
    conn: Connection,
    wal: Arc<Wal>,
    metrics: Arc<Metrics>,
    /// The WAL and the database file, synced before the writer is asked to
    /// finish, so that its own fsyncs find little left to write.
    files: [PathBuf; 2],
}

impl Checkpointer {
    /// Writes out what the page cache holds of both files. Only a head
    /// start: SQLite still syncs what it needs itself.
    fn presync(&self) {
        for path in &self.files {
            if let Err(e) = File::open(path).and_then(|f| f.sync_data()) {
                warn!(error = %e, path = %path.display(), "could not sync a database file ahead of a WAL restart");
            }
        }
    }

    fn run(self, stop: &mpsc::Receiver<()>) {
        let limits = self.wal.limits;
        let mut passed_at = (0, Instant::now());
        let mut failing = false;
        let mut back_to_back = 0;
        loop {
            if back_to_back == 0 {
                match stop.recv_timeout(limits.interval) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                // The writer's count of committed messages.
                let appended = self.metrics.history.appends.load(Relaxed);
                let new = appended.saturating_sub(passed_at.0);
                if new < limits.pass_messages && (new == 0 || passed_at.1.elapsed() < QUIET_PASS) {
                    continue;
                }
                passed_at = (appended, Instant::now());
            }
            let started = Instant::now();
            match passive(&self.conn) {
                Ok(progress) => {
                    if failing {
                        info!("WAL checkpoints work again");
                        failing = false;
                    }
                    self.metrics
                        .history
                        .checkpoint_seconds
                        .observe(started.elapsed());
                    self.metrics.history.note_wal(progress.log, progress.copied);
                    let rest = progress.log - progress.copied;
                    let restart = (progress.log >= limits.reset && rest <= limits.finish)
                        || progress.log >= limits.hard;
                    if restart {
                        self.presync();
                        self.wal.finish.store(true, Relaxed);
                    }
                    back_to_back = if rest > limits.finish && back_to_back < MAX_BACK_TO_BACK {
                        back_to_back + 1
                    } else {
                        0
                    };
                }
                Err(e) => {
                    back_to_back = 0;
                    if !failing {
                        warn!(error = %e, "WAL checkpoint failed; the WAL grows until checkpoints work again");
                        failing = true;
                    }
                }
            }
        }
    }
}
