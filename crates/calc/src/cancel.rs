//! Cooperative cancellation.
//!
//! The engine has no threads or timers of its own. Long operations call
//! [`Cancel::cancelled`] between their uninterruptible steps (one big-integer
//! multiplication or division each) and return [`Cancelled`] as soon as it
//! answers `true`, dropping every intermediate value on the way out. The
//! caller decides what cancellation means: a flag set by a timer or by a
//! disconnect, a deadline check, or both.

use std::sync::atomic::{AtomicBool, Ordering};

/// Something the engine polls between steps to learn whether to stop.
///
/// Implemented for [`AtomicBool`] (stop once it is `true`) and for any
/// `Fn() -> bool` closure (stop once it returns `true`), so a caller can also
/// check a deadline: `&|| Instant::now() >= deadline || flag.load(Relaxed)`.
pub trait Cancel {
    /// Whether the computation should stop now. Called often (every few
    /// milliseconds at most), so it must be cheap.
    fn cancelled(&self) -> bool;
}

impl Cancel for AtomicBool {
    fn cancelled(&self) -> bool {
        // Relaxed is enough: the flag carries no data, and a late observation
        // only delays the stop by one step.
        self.load(Ordering::Relaxed)
    }
}

impl<F: Fn() -> bool + ?Sized> Cancel for F {
    fn cancelled(&self) -> bool {
        self()
    }
}

/// A computation stopped because its [`Cancel`] asked it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the calculation was cancelled")]
pub struct Cancelled;

/// Returns `Err(Cancelled)` if `cancel` says to stop.
pub(crate) fn check<C: Cancel + ?Sized>(cancel: &C) -> Result<(), Cancelled> {
    if cancel.cancelled() {
        Err(Cancelled)
    } else {
        Ok(())
    }
}
