//! One interface over "the clients": a fleet in this process, or fleets in
//! `--procs` worker processes. Scenarios only talk to a [`Driver`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::fleet::{Fleet, FleetPlan, RampResult, Share};
use crate::phase::{PhaseResult, PhaseSpec};
use crate::progress::Progress;
use crate::target::Target;
use crate::workers::{WorkerCmd, WorkerMsg, Workers};

pub enum Driver {
    Local(Fleet),
    Procs(Workers),
}

impl Driver {
    /// Opens all clients of `plan`, in this process or in `procs` workers.
    pub async fn start(
        target: Arc<Target>,
        plan: &FleetPlan,
        procs: u32,
        progress: &Progress,
    ) -> Result<(Driver, RampResult), BenchError> {
        progress.ramp(u64::from(plan.total()));
        if procs <= 1 {
            let (fleet, ramp) =
                Fleet::open(target, plan, Share::ALL, |live| progress.ramp_update(&live)).await;
            return Ok((Driver::Local(fleet), ramp));
        }
        let mut workers = Workers::spawn(plan, procs).await?;
        let ramps = workers
            .gather(
                |msg| match msg {
                    WorkerMsg::Ready { ramp } => Some(ramp),
                    _ => None,
                },
                |live| progress.ramp_update(&live),
            )
            .await?;
        let mut total = RampResult::default();
        for r in &ramps {
            total.merge(r);
        }
        Ok((Driver::Procs(workers), total))
    }

    /// Runs one phase in every process and merges the results.
    pub async fn run_phase(
        &mut self,
        spec: PhaseSpec,
        progress: &Progress,
    ) -> Result<PhaseResult, BenchError> {
        let length = Duration::from_millis(spec.duration_ms + spec.grace_ms);
        progress.phase(&spec.name, length);
        let shown = Instant::now();
        match self {
            Driver::Local(fleet) => Ok(fleet
                .run_phase(spec, |live| progress.phase_update(shown.elapsed(), &live))
                .await),
            Driver::Procs(workers) => {
                workers.broadcast(&WorkerCmd::Phase { spec }).await?;
                let results = workers
                    .gather(
                        |msg| match msg {
                            WorkerMsg::Phase { result } => Some(result),
                            _ => None,
                        },
                        |live| progress.phase_update(shown.elapsed(), &live),
                    )
                    .await?;
                let mut total = PhaseResult::empty();
                for r in &results {
                    total.merge(r);
                }
                Ok(total)
            }
        }
    }

    /// Closes all clients (and worker processes).
    pub async fn close(self) {
        match self {
            Driver::Local(fleet) => fleet.close().await,
            Driver::Procs(workers) => workers.close().await,
        }
    }
}
