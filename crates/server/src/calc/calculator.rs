//! A calculator actor: one per admitted calculation, started on demand by
//! the scheduler and supervised by it.
//!
//! The actor itself only waits; the arithmetic runs on a dedicated OS thread
//! it spawns, because big-integer work would otherwise block a Tokio worker
//! and every connection scheduled on it. The thread lowers its own priority
//! (nice) so the network threads win the CPU when both want it, polls the
//! cancel flag and the deadline between steps, and reports back with a cast.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actorchat_calc::{Request, compute_decimal};
use ractor::{Actor, ActorProcessingErr, ActorRef};
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

pub enum CalculatorMsg {
    /// The thread is done.
    Finished(Finished),
}

pub struct CalculatorArgs {
    pub job: JobId,
    pub request: Request,
    pub cancel: Arc<CancelFlag>,
    pub timeout: Duration,
    pub nice: i32,
    pub scheduler: ActorRef<SchedulerMsg>,
}

pub struct Calculator;

pub struct CalculatorState {
    job: JobId,
    scheduler: ActorRef<SchedulerMsg>,
}

impl Actor for Calculator {
    type Msg = CalculatorMsg;
    type State = CalculatorState;
    type Arguments = CalculatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CalculatorMsg>,
        args: CalculatorArgs,
    ) -> Result<CalculatorState, ActorProcessingErr> {
        let CalculatorArgs {
            job,
            request,
            cancel,
            timeout,
            nice,
            scheduler,
        } = args;
        std::thread::Builder::new()
            .name(format!("calc-{job}"))
            .spawn(move || {
                let finished = run(request, &cancel, timeout, nice);
                // The actor may have been stopped (server shutdown); fine.
                let _ = myself.cast(CalculatorMsg::Finished(finished));
            })?;
        Ok(CalculatorState { job, scheduler })
    }

    async fn handle(
        &self,
        myself: ActorRef<CalculatorMsg>,
        msg: CalculatorMsg,
        state: &mut CalculatorState,
    ) -> Result<(), ActorProcessingErr> {
        let CalculatorMsg::Finished(finished) = msg;
        let _ = state.scheduler.cast(SchedulerMsg::Finished {
            job: state.job,
            finished,
        });
        myself.stop(None);
        Ok(())
    }
}

/// Runs on the calculator thread.
fn run(request: Request, cancel: &CancelFlag, timeout: Duration, nice: i32) -> Finished {
    lower_priority(nice);
    let started = Instant::now();
    let deadline = started + timeout;
    let stop = || cancel.is_set() || Instant::now() >= deadline;
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
            Some(ended.saturating_duration_since(deadline)),
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
