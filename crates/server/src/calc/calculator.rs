//! A calculator: one dedicated OS thread per admitted calculation.
//!
//! The arithmetic runs on its own thread, because big-integer work would
//! otherwise block a Tokio worker and every connection scheduled on it. The
//! thread lowers its own priority (nice, `SCHED_IDLE`) so the network
//! threads win the CPU when both want it, polls the cancel flag and the
//! deadline between steps, and reports to the scheduler with a cast. No
//! actor sits in between: the thread is the calculator, and a report is
//! guaranteed by a guard that sends `Failed` if the thread ends any other
//! way than through its normal report.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actorchat_calc::{Request, compute_decimal};
use ractor::ActorRef;
use tracing::warn;

use super::CancelFlag;
use super::scheduler::{JobId, SchedulerMsg};

/// How a calculation thread ended.
#[derive(Debug)]
pub enum Outcome {
    /// The full decimal value.
    Done(String),
    /// The deadline passed.
    TimedOut,
    /// The requester went away.
    Cancelled,
    /// The arithmetic panicked (a bug); the process carries on.
    Failed(String),
}

/// The thread's report.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    /// From the start of the computation to the end of the thread.
    pub elapsed: Duration,
    /// For cancelled and timed-out runs: from the moment the stop was due
    /// (deadline passed or flag seen) to the thread being done.
    pub cancel_latency: Option<Duration>,
}

/// What a calculator thread needs.
pub struct CalculatorArgs {
    pub job: JobId,
    pub request: Request,
    pub cancel: Arc<CancelFlag>,
    pub timeout: Duration,
    pub nice: i32,
    pub scheduler: ActorRef<SchedulerMsg>,
}

/// Reports to the scheduler exactly once: with the result, or, if the
/// thread unwinds before that, with `Failed`, so a worker slot never leaks.
struct Report {
    job: JobId,
    scheduler: ActorRef<SchedulerMsg>,
    sent: bool,
}

impl Report {
    fn send(mut self, finished: Finished) {
        self.sent = true;
        // The scheduler may have stopped (shutdown, or a restart); fine.
        let _ = self.scheduler.cast(SchedulerMsg::Finished {
            job: self.job,
            finished,
        });
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if !self.sent {
            let _ = self.scheduler.cast(SchedulerMsg::Finished {
                job: self.job,
                finished: Finished {
                    outcome: Outcome::Failed("the calculator thread ended without a result".into()),
                    elapsed: Duration::ZERO,
                    cancel_latency: None,
                },
            });
        }
    }
}

/// Starts the calculation on its own thread.
pub fn spawn(args: CalculatorArgs) -> std::io::Result<()> {
    let CalculatorArgs {
        job,
        request,
        cancel,
        timeout,
        nice,
        scheduler,
    } = args;
    let report = Report {
        job,
        scheduler,
        sent: false,
    };
    std::thread::Builder::new()
        .name(format!("calc-{job}"))
        .spawn(move || {
            let finished = run(request, &cancel, timeout, nice);
            report.send(finished);
        })?;
    Ok(())
}

/// Runs on the calculator thread.
fn run(request: Request, cancel: &CancelFlag, timeout: Duration, nice: i32) -> Finished {
    lower_priority(nice);
    let started = Instant::now();
    // The configured timeout is validated, but a deadline past what
    // `Instant` can hold must still not panic: it then means "never".
    let deadline = started.checked_add(timeout);
    let stop = || cancel.is_set() || deadline.is_some_and(|d| Instant::now() >= d);
    let result = catch_unwind(AssertUnwindSafe(|| compute_decimal(request, &stop)));
    let ended = Instant::now();
    let elapsed = ended - started;
    let (outcome, cancel_latency) = match result {
        Ok(Ok(value)) => (Outcome::Done(value), None),
        // Which stop fired: the requester's flag wins; otherwise the deadline.
        Ok(Err(_)) if cancel.is_set() => {
            let latency = cancel
                .set_at()
                .map(|at| ended.saturating_duration_since(at));
            (Outcome::Cancelled, latency)
        }
        Ok(Err(_)) => (
            Outcome::TimedOut,
            deadline.map(|d| ended.saturating_duration_since(d)),
        ),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            (Outcome::Failed(message), None)
        }
    };
    Finished {
        outcome,
        elapsed,
        cancel_latency,
    }
}

/// Lowers this thread's scheduling priority so the network threads win the
/// CPU whenever they want it: on Linux the `SCHED_IDLE` policy (run only when
/// nothing else is runnable, preempted at once by any normal thread), and
/// the nice value as well (it is what counts where `SCHED_IDLE` is refused).
fn lower_priority(nice: i32) {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        warn!(error = %e, "cannot lower calculator thread priority");
    }
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` only reads `param`, which lives for the
        // call; pid 0 means the calling thread.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        if rc != 0 {
            warn!(error = %std::io::Error::last_os_error(), "cannot set SCHED_IDLE for the calculator thread");
        }
    }
}
