//! Calculations on demand: `200!` in a chat becomes work for a calculator
//! thread, and can never stall the chat or take the process down.
//!
//! - [`scheduler`]: the one actor that owns admission (estimate first, then
//!   workers, queue and memory budget) and tracks the running calculations.
//! - [`calculator`]: one dedicated low-priority OS thread per admitted
//!   calculation, where the arithmetic runs (never a Tokio worker thread);
//!   it reports to the scheduler directly.
//! - [`holdback`]: the connection side: a client's later messages wait
//!   behind its calculation, and go out in order once it is done.
//! - [`store`]: full results for `GET /calc/{id}`, bounded in bytes.

pub(crate) mod calculator;
pub(crate) mod holdback;
pub(crate) mod scheduler;
pub(crate) mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actorchat_protocol::{CalcResult, CalcStatus};

pub(crate) use scheduler::{CalcScheduler, SchedulerArgs, SchedulerMsg, Work};
pub(crate) use store::ResultStore;

/// Set when the requester no longer wants the result (it disconnected). It
/// remembers when, so the scheduler can measure how fast a cancelled
/// calculation frees its worker.
#[derive(Debug, Default)]
pub struct CancelFlag {
    set: AtomicBool,
    at: OnceLock<Instant>,
}

impl CancelFlag {
    pub fn cancel(&self) {
        let _ = self.at.set(Instant::now());
        self.set.store(true, Ordering::Release);
    }

    /// Cheap enough to poll between every step of a calculation.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub fn set_at(&self) -> Option<Instant> {
        self.at.get().copied()
    }
}

/// Cancels on drop, so a connection that ends for any reason cancels its
/// calculation, whether queued or running.
#[derive(Debug)]
pub struct CancelOnDrop(pub Arc<CancelFlag>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A result that carries no value (refused, stopped, failed or lost), with
/// the sentence that says why. `elapsed` is the time spent computing: zero
/// for a calculation that never ran.
pub fn result_without_value(
    id: String,
    expr: String,
    status: CalcStatus,
    elapsed: Duration,
    reason: impl Into<String>,
) -> CalcResult {
    CalcResult {
        id,
        expr,
        status,
        value: None,
        digits: None,
        truncated: false,
        elapsed_ms: millis(elapsed),
        reason: Some(reason.into()),
    }
}

/// Whole milliseconds, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
