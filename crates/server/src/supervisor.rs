//! The root of the supervision tree: the actor that starts the room registry
//! and the calculation scheduler, restarts them when they fail, and stops
//! them in order at shutdown.
//!
//! ```text
//! Root (this module)
//! ├── RoomRegistry ──── Room "lobby", Room "rust", …   (linked children)
//! └── CalcScheduler ─── calculator threads (not actors; report by cast)
//! ```
//!
//! Restart policy (one-for-one): when a top-level actor fails or stops
//! without being asked to, the root marks it down (`/readyz` answers 503
//! with the reason), waits `restart_delay_ms` (so a crash loop cannot spin a
//! core), starts a fresh one with the same arguments and publishes its
//! reference through the [`Supervised`] handle every connection goes
//! through. What dies with it:
//! - the registry's rooms are its linked children and die with it; their
//!   members see their mailboxes close and rejoin through the handle (the
//!   join retries span the restart), getting a fresh `welcome`. Ids live
//!   in the rooms' streams (`crate::history`), so they continue.
//! - the scheduler's queued and running calculations are cancelled (its
//!   state cancels them when dropped) and their requesters get an `error`
//!   result ("service unavailable"); messages held behind them follow.
//!
//! Shutdown order (see `RunningServer::shutdown`): connections close first,
//! then the HTTP listener, then this root stops the registry (and with it
//! every room), then the scheduler (cancelling what still runs).

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tracing::{error, info, warn};

use crate::calc::{CalcScheduler, SchedulerArgs, SchedulerMsg};
use crate::metrics::Metrics;
use crate::registry::{RegistryArgs, RegistryMsg, RoomRegistry};

/// A top-level actor, for readiness reasons, metrics and test hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopLevel {
    Registry,
    Scheduler,
}

impl TopLevel {
    pub const ALL: [TopLevel; 2] = [TopLevel::Registry, TopLevel::Scheduler];

    pub fn as_str(self) -> &'static str {
        match self {
            TopLevel::Registry => "room_registry",
            TopLevel::Scheduler => "calc_scheduler",
        }
    }

    fn index(self) -> usize {
        match self {
            TopLevel::Registry => 0,
            TopLevel::Scheduler => 1,
        }
    }
}

/// The current reference to a supervised actor, replaced on every restart.
/// Readers clone the reference under a short read lock (never held across
/// an await); `None` while the actor is down.
pub(crate) struct Supervised<M> {
    current: RwLock<Option<ActorRef<M>>>,
}

impl<M> Supervised<M> {
    fn empty() -> Self {
        Supervised {
            current: RwLock::new(None),
        }
    }

    pub(crate) fn get(&self) -> Option<ActorRef<M>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set(&self, actor: Option<ActorRef<M>>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = actor;
    }
}

/// Why each top-level actor is down, if it is: what `/readyz` reports.
#[derive(Debug, Default)]
pub(crate) struct Readiness {
    down: Mutex<[Option<String>; 2]>,
}

impl Readiness {
    fn set(&self, which: TopLevel, reason: Option<String>) {
        self.down.lock().unwrap_or_else(|p| p.into_inner())[which.index()] = reason;
    }

    /// One sentence per actor that is down; empty when ready.
    pub(crate) fn problems(&self) -> Vec<String> {
        let down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        TopLevel::ALL
            .iter()
            .filter_map(|w| {
                down[w.index()]
                    .as_ref()
                    .map(|why| format!("{} is down ({why}); restarting", w.as_str()))
            })
            .collect()
    }
}

/// The handles the rest of the server uses to reach the top-level actors.
pub(crate) struct TopLevelActors {
    pub registry: Supervised<RegistryMsg>,
    pub calc: Supervised<SchedulerMsg>,
    pub readiness: Readiness,
}

impl TopLevelActors {
    pub(crate) fn new() -> Self {
        TopLevelActors {
            registry: Supervised::empty(),
            calc: Supervised::empty(),
            readiness: Readiness::default(),
        }
    }
}

pub(crate) enum RootMsg {
    /// Timer: start this actor again.
    Restart(TopLevel),
    /// Test hook: kill this actor as a crash would.
    Kill(TopLevel),
}

pub(crate) struct Root;

pub(crate) struct RootArgs {
    pub actors: Arc<TopLevelActors>,
    pub registry: RegistryArgs,
    pub scheduler: SchedulerArgs,
    pub restart_delay: Duration,
    pub metrics: Arc<Metrics>,
}

pub(crate) struct RootState {
    args: RootArgs,
    /// Which child each live actor id is.
    children: Vec<(ActorId, TopLevel)>,
}

impl Actor for Root {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RootMsg>,
        args: RootArgs,
    ) -> Result<RootState, ActorProcessingErr> {
        let mut state = RootState {
            args,
            children: Vec::new(),
        };
        // At start a failure is fatal: the server does not come up half-made.
        for which in TopLevel::ALL {
            state.start(&myself, which).await?;
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RootMsg>,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        // Rooms first (no more chat can start a calculation), then the
        // scheduler, which cancels whatever still runs.
        let wait = Some(Duration::from_secs(2));
        if let Some(registry) = state.args.actors.registry.get() {
            let _ = registry.stop_and_wait(Some("shutdown".into()), wait).await;
        }
        if let Some(calc) = state.args.actors.calc.get() {
            let _ = calc.stop_and_wait(Some("shutdown".into()), wait).await;
        }
        state.args.actors.registry.set(None);
        state.args.actors.calc.set(None);
        info!("top-level actors stopped");
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::Restart(which) => {
                if let Err(e) = state.start(&myself, which).await {
                    error!(actor = which.as_str(), error = %e, "restart failed; trying again");
                    state.schedule_restart(&myself, which);
                }
            }
            RootMsg::Kill(which) => {
                warn!(
                    actor = which.as_str(),
                    "test hook: killing a top-level actor"
                );
                match which {
                    TopLevel::Registry => {
                        if let Some(a) = state.args.actors.registry.get() {
                            a.kill();
                        }
                    }
                    TopLevel::Scheduler => {
                        if let Some(a) = state.args.actors.calc.get() {
                            a.kill();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (id, reason) = match &event {
            SupervisionEvent::ActorFailed(cell, err) => (cell.get_id(), format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell.get_id(),
                format!(
                    "stopped unexpectedly: {}",
                    reason.as_deref().unwrap_or("no reason")
                ),
            ),
            _ => return Ok(()),
        };
        let Some(pos) = state.children.iter().position(|(c, _)| *c == id) else {
            return Ok(());
        };
        let (_, which) = state.children.swap_remove(pos);
        error!(actor = which.as_str(), reason = %reason, "top-level actor down; restarting it");
        state.args.metrics.actor_restart(which);
        let actors = &state.args.actors;
        actors.readiness.set(which, Some(reason));
        match which {
            TopLevel::Registry => actors.registry.set(None),
            TopLevel::Scheduler => actors.calc.set(None),
        }
        state.schedule_restart(&myself, which);
        Ok(())
    }
}

impl RootState {
    async fn start(
        &mut self,
        myself: &ActorRef<RootMsg>,
        which: TopLevel,
    ) -> Result<(), ActorProcessingErr> {
        let supervisor = myself.get_cell();
        let actors = &self.args.actors;
        let id = match which {
            TopLevel::Registry => {
                let args = self.args.registry.clone();
                let (actor, _) = Actor::spawn_linked(None, RoomRegistry, args, supervisor).await?;
                let id = actor.get_id();
                actors.registry.set(Some(actor));
                id
            }
            TopLevel::Scheduler => {
                let args = self.args.scheduler.clone();
                let (actor, _) = Actor::spawn_linked(None, CalcScheduler, args, supervisor).await?;
                let id = actor.get_id();
                actors.calc.set(Some(actor));
                id
            }
        };
        self.children.push((id, which));
        actors.readiness.set(which, None);
        info!(actor = which.as_str(), "top-level actor running");
        Ok(())
    }

    fn schedule_restart(&self, myself: &ActorRef<RootMsg>, which: TopLevel) {
        let delay = self.args.restart_delay;
        if delay.is_zero() {
            let _ = myself.cast(RootMsg::Restart(which));
        } else {
            myself.send_after(delay, move || RootMsg::Restart(which));
        }
    }
}
