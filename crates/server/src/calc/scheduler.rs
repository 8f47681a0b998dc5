//! The calculation scheduler: the queue the original Gleam project wished for.
//!
//! Admission policy, in order, all before any work:
//! 1. the estimate ([`actorchat_calc::admit`]): a result whose estimated peak
//!    memory exceeds the per-calculation limit, or whose estimated time
//!    exceeds the timeout, is `rejected` with a reason;
//! 2. a calculation starts at once if a worker is free and its estimate fits
//!    in the memory budget next to the running ones;
//! 3. otherwise it waits in a bounded FIFO queue; when the queue is full it
//!    is answered `busy`.
//!
//! Strict FIFO: a big calculation at the head waits for budget rather than
//! being overtaken forever by small ones.
//!
//! Cancelled requests (the requester left) give their queue slot back at
//! once: the queue is purged of them before every admission decision, so a
//! queue full of requests nobody waits for never answers `busy`.
//!
//! Each calculation runs on its own thread ([`super::calculator`]), which
//! reports here by cast, exactly once, even if it panics. This actor is
//! supervised by the root ([`crate::supervisor`]); if it fails, its state is
//! dropped, which cancels every queued and running calculation, and each
//! requester's reply channel closes (the connection answers `error`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actorchat_calc::{Limits, Rejection, Request, abbreviate, admit};
use actorchat_protocol::{CalcResult, CalcStatus};
use axum::body::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::calculator::{self, CalculatorArgs, Finished, Outcome};
use super::{CancelFlag, ResultStore, millis, result_without_value};
use crate::metrics::{CalcEnd, Metrics};
use crate::observer::figures::RunningCalc;

pub type JobId = u64;

/// What the requester asks for, as the parser classified it.
#[derive(Debug)]
pub enum Work {
    Run(Request),
    /// Refused by the parser already (`n` does not fit in 64 bits).
    Refused(Rejection),
}

pub enum SchedulerMsg {
    /// A chat text that is a calculation. The answer always comes, on `reply`.
    Submit {
        expr: String,
        work: Work,
        cancel: Arc<CancelFlag>,
        reply: oneshot::Sender<CalcResult>,
    },
    /// A calculator's thread ended.
    Finished { job: JobId, finished: Finished },
    /// Observer action: cancel a queued or running calculation; its
    /// requester gets an `error` result. Replies whether it was found.
    Cancel {
        job: JobId,
        reply: RpcReplyPort<bool>,
    },
}

#[derive(Clone)]
pub struct SchedulerArgs {
    pub workers: usize,
    pub queue: usize,
    pub budget_bytes: u64,
    pub limits: Limits,
    /// Admit on memory only; see `Config::calc_skip_time_admission`.
    pub skip_time_admission: bool,
    pub display_digits: usize,
    pub nice: i32,
    pub store: Arc<ResultStore>,
    pub metrics: Arc<Metrics>,
    /// Jobs are numbered from here: 0 on one node; in cluster mode a random
    /// start per node, so that result ids (`/calc/{id}`) are unique across
    /// the cluster.
    pub first_job: JobId,
}

pub struct CalcScheduler;

pub struct SchedulerState {
    args: SchedulerArgs,
    next_job: JobId,
    queue: VecDeque<Job>,
    running: HashMap<JobId, Job>,
    budget_in_use: u64,
}

impl Drop for SchedulerState {
    /// Stopped or failed: nothing queued or running will be reported any
    /// more, so stop the threads now rather than at their deadline. The
    /// reply senders drop with the jobs, which tells each requester.
    fn drop(&mut self) {
        for job in self.queue.iter().chain(self.running.values()) {
            job.cancel.cancel();
        }
        self.args.metrics.observed.calcs.clear_running();
        let calc = &self.args.metrics.calc;
        calc.running.store(0, Relaxed);
        calc.queued.store(0, Relaxed);
        calc.budget_in_use.store(0, Relaxed);
    }
}

struct Job {
    id: JobId,
    expr: String,
    request: Request,
    peak_bytes: u64,
    /// The admission estimate of its time, for the observer.
    estimate: Duration,
    cancel: Arc<CancelFlag>,
    reply: oneshot::Sender<CalcResult>,
    /// Cancelled from the observer: the requester is told, unlike when it
    /// cancelled by leaving.
    by_admin: bool,
}

impl Actor for CalcScheduler {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        args: SchedulerArgs,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        info!(
            workers = args.workers,
            queue = args.queue,
            budget_bytes = args.budget_bytes,
            max_bytes = args.limits.max_bytes,
            timeout_ms = args.limits.timeout.as_millis() as u64,
            "calculation scheduler started"
        );
        Ok(SchedulerState {
            next_job: args.first_job,
            args,
            queue: VecDeque::new(),
            running: HashMap::new(),
            budget_in_use: 0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Submit {
                expr,
                work,
                cancel,
                reply,
            } => {
                state.submit(&myself, expr, work, cancel, reply);
            }
            SchedulerMsg::Finished { job, finished } => {
                state.finish(job, finished);
                state.start_queued(&myself);
            }
            SchedulerMsg::Cancel { job, reply } => {
                let _ = reply.send(state.cancel_by_admin(job));
                state.start_queued(&myself);
            }
        }
        Ok(())
    }
}

impl SchedulerState {
    fn submit(
        &mut self,
        myself: &ActorRef<SchedulerMsg>,
        expr: String,
        work: Work,
        cancel: Arc<CancelFlag>,
        reply: oneshot::Sender<CalcResult>,
    ) {
        self.next_job += 1;
        let id = self.next_job;
        let rejected = |reason: String| {
            result_without_value(
                calc_id(id),
                expr.clone(),
                CalcStatus::Rejected,
                Duration::ZERO,
                reason,
            )
        };
        let request = match work {
            Work::Refused(rejection) => {
                self.args.metrics.calc.ended(CalcEnd::Rejected);
                let _ = reply.send(rejected(rejection.reason()));
                return;
            }
            Work::Run(request) => request,
        };
        let mut limits = self.args.limits;
        if self.args.skip_time_admission {
            limits.timeout = Duration::MAX;
        }
        let estimate = match admit(request, &limits) {
            Ok(estimate) => estimate,
            Err(rejection) => {
                self.args.metrics.calc.ended(CalcEnd::Rejected);
                info!(expr = %expr, reason = %rejection, "calculation rejected");
                let _ = reply.send(rejected(rejection.reason()));
                return;
            }
        };
        if estimate.peak_bytes > self.args.budget_bytes {
            self.args.metrics.calc.ended(CalcEnd::Rejected);
            let _ = reply.send(rejected(format!(
                "{expr} would need about {} MiB, more than the server's whole calculation budget ({} MiB).",
                estimate.peak_bytes >> 20,
                self.args.budget_bytes >> 20
            )));
            return;
        }
        let job = Job {
            id,
            expr,
            request,
            peak_bytes: estimate.peak_bytes,
            estimate: estimate.time,
            cancel,
            reply,
            by_admin: false,
        };
        self.drop_cancelled();
        if self.queue.is_empty() && self.fits(&job) {
            self.start(myself, job);
        } else if self.queue.len() < self.args.queue {
            self.queue.push_back(job);
            self.args
                .metrics
                .calc
                .queued
                .store(self.queue.len() as i64, Relaxed);
        } else {
            self.args.metrics.calc.ended(CalcEnd::Busy);
            warn!(expr = %job.expr, queue = self.args.queue, "calculation queue full; answering busy");
            let reason = format!(
                "The server is busy: {} calculations are running and {} are waiting. Try again shortly.",
                self.running.len(),
                self.queue.len()
            );
            let result = job.without_value(CalcStatus::Busy, Duration::ZERO, reason);
            let _ = job.reply.send(result);
        }
    }

    fn fits(&self, job: &Job) -> bool {
        self.running.len() < self.args.workers
            && self.budget_in_use + job.peak_bytes <= self.args.budget_bytes
    }

    /// Removes queued jobs whose requester left, freeing their slots.
    fn drop_cancelled(&mut self) {
        let before = self.queue.len();
        self.queue.retain(|job| !job.cancel.is_set());
        for _ in self.queue.len()..before {
            self.args.metrics.calc.ended(CalcEnd::Cancelled);
        }
    }

    /// Starts queued jobs, in order, while the head fits.
    fn start_queued(&mut self, myself: &ActorRef<SchedulerMsg>) {
        self.drop_cancelled();
        while let Some(head) = self.queue.front() {
            if !self.fits(head) {
                break;
            }
            if let Some(job) = self.queue.pop_front() {
                self.start(myself, job);
            }
        }
        self.args
            .metrics
            .calc
            .queued
            .store(self.queue.len() as i64, Relaxed);
    }

    fn start(&mut self, myself: &ActorRef<SchedulerMsg>, job: Job) {
        let args = CalculatorArgs {
            job: job.id,
            request: job.request,
            cancel: job.cancel.clone(),
            timeout: self.args.limits.timeout,
            nice: self.args.nice,
            scheduler: myself.clone(),
        };
        match calculator::spawn(args) {
            Ok(()) => {
                self.args.metrics.observed.calcs.started(RunningCalc {
                    id: calc_id(job.id),
                    expr: job.expr.clone(),
                    started: Instant::now(),
                    estimate: job.estimate,
                    peak_bytes: job.peak_bytes,
                });
                self.budget_in_use += job.peak_bytes;
                self.running.insert(job.id, job);
                self.publish_gauges();
            }
            Err(e) => {
                error!(error = %e, "cannot start a calculator");
                self.args.metrics.calc.ended(CalcEnd::Error);
                let result = job.without_value(
                    CalcStatus::Error,
                    Duration::ZERO,
                    "The server could not start a calculator; try again.",
                );
                let _ = job.reply.send(result);
            }
        }
    }

    fn release(&mut self, job: &Job) {
        self.budget_in_use = self.budget_in_use.saturating_sub(job.peak_bytes);
        self.publish_gauges();
    }

    fn publish_gauges(&self) {
        let calc = &self.args.metrics.calc;
        calc.running.store(self.running.len() as i64, Relaxed);
        calc.budget_in_use.store(self.budget_in_use as i64, Relaxed);
    }

    fn finish(&mut self, id: JobId, finished: Finished) {
        let Some(job) = self.running.remove(&id) else {
            return;
        };
        self.release(&job);
        let ended = match finished.outcome {
            Outcome::Done(_) => CalcEnd::Ok,
            Outcome::TimedOut => CalcEnd::Timeout,
            Outcome::Cancelled if job.by_admin => CalcEnd::Error,
            Outcome::Cancelled => CalcEnd::Cancelled,
            Outcome::Failed(_) => CalcEnd::Error,
        };
        self.args.metrics.observed.calcs.finished(
            &calc_id(job.id),
            ended.as_str(),
            finished.elapsed,
        );
        let metrics = &self.args.metrics.calc;
        if let Some(latency) = finished.cancel_latency {
            metrics.cancel_latency_seconds.observe(latency);
        }
        let result = match finished.outcome {
            Outcome::Done(value) => {
                metrics.ended(CalcEnd::Ok);
                metrics.compute_seconds.observe(finished.elapsed);
                let shown = abbreviate(&value, self.args.display_digits);
                let result = CalcResult {
                    id: calc_id(job.id),
                    expr: job.expr.clone(),
                    status: CalcStatus::Ok,
                    value: Some(shown.text),
                    digits: Some(shown.digits as u64),
                    truncated: shown.truncated,
                    elapsed_ms: millis(finished.elapsed),
                    reason: None,
                };
                self.args
                    .store
                    .insert(result.id.clone(), Bytes::from(value));
                result
            }
            Outcome::TimedOut => {
                metrics.ended(CalcEnd::Timeout);
                let limit = self.args.limits.timeout;
                let reason = format!(
                    "{} did not finish within the {} ms limit and was stopped.",
                    job.expr,
                    limit.as_millis()
                );
                job.without_value(CalcStatus::Timeout, finished.elapsed, reason)
            }
            Outcome::Cancelled if job.by_admin => {
                metrics.ended(CalcEnd::Error);
                info!(job = id, expr = %job.expr, "calculation cancelled by an administrator");
                job.without_value(
                    CalcStatus::Error,
                    finished.elapsed,
                    "Cancelled by the server's administrator.",
                )
            }
            Outcome::Cancelled => {
                metrics.ended(CalcEnd::Cancelled);
                info!(
                    job = id,
                    latency_ms = finished.cancel_latency.map(|d| d.as_millis() as u64),
                    "calculation cancelled: requester left"
                );
                return; // nobody to tell
            }
            Outcome::Failed(panic) => {
                metrics.ended(CalcEnd::Error);
                error!(job = id, expr = %job.expr, panic = %panic, "calculation panicked");
                job.without_value(
                    CalcStatus::Error,
                    finished.elapsed,
                    "The calculation failed unexpectedly; the server carries on.",
                )
            }
        };
        let _ = job.reply.send(result);
    }
}

impl SchedulerState {
    /// Observer action. A queued job is answered and dropped at once; a
    /// running one is flagged, and answered when its thread reports.
    fn cancel_by_admin(&mut self, id: JobId) -> bool {
        if let Some(job) = self.running.get_mut(&id) {
            job.by_admin = true;
            job.cancel.cancel();
            return true;
        }
        let Some(pos) = self.queue.iter().position(|j| j.id == id) else {
            return false;
        };
        let Some(job) = self.queue.remove(pos) else {
            return false;
        };
        self.args
            .metrics
            .calc
            .queued
            .store(self.queue.len() as i64, Relaxed);
        self.args.metrics.calc.ended(CalcEnd::Error);
        info!(job = id, expr = %job.expr, "queued calculation cancelled by an administrator");
        let result = job.without_value(
            CalcStatus::Error,
            Duration::ZERO,
            "Cancelled by the server's administrator before it started.",
        );
        let _ = job.reply.send(result);
        true
    }
}

impl Job {
    fn without_value(
        &self,
        status: CalcStatus,
        elapsed: Duration,
        reason: impl Into<String>,
    ) -> CalcResult {
        result_without_value(calc_id(self.id), self.expr.clone(), status, elapsed, reason)
    }
}

/// The `id` of a calculation's result, also its `/calc/{id}` path.
fn calc_id(job: JobId) -> String {
    format!("c{job}")
}
