//! The room registry: finds or creates room actors and supervises them.
//!
//! Supervision policy: a room actor that panics is restarted at once with
//! the same name and sequence counter (its members see their mailboxes close
//! and rejoin, each getting a fresh `welcome`); the process never dies
//! because one room failed. A room that stays empty for `room_idle_secs`
//! asks to be stopped, and the registry forgets it before stopping it, so a
//! later lookup creates a fresh one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tracing::{error, info};

use crate::metrics::Metrics;
use crate::room::{Room, RoomArgs, RoomMsg, RoomSettings};

pub enum RegistryMsg {
    /// The room's actor, created if the room does not exist yet.
    Lookup {
        room: String,
        reply: RpcReplyPort<ActorRef<RoomMsg>>,
    },
    /// A room has been empty for its idle period.
    RoomIdle { room: String, id: ActorId },
}

pub struct RoomRegistry;

pub struct RegistryArgs {
    pub settings: Arc<RoomSettings>,
    pub metrics: Arc<Metrics>,
}

pub struct RegistryState {
    settings: Arc<RoomSettings>,
    metrics: Arc<Metrics>,
    rooms: HashMap<String, RoomEntry>,
    /// Room name by actor id, to route supervision events.
    names: HashMap<ActorId, String>,
}

struct RoomEntry {
    actor: ActorRef<RoomMsg>,
    seq: Arc<AtomicU64>,
}

impl Actor for RoomRegistry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RegistryMsg>,
        args: RegistryArgs,
    ) -> Result<RegistryState, ActorProcessingErr> {
        Ok(RegistryState {
            settings: args.settings,
            metrics: args.metrics,
            rooms: HashMap::new(),
            names: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RegistryMsg>,
        _state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        myself.stop_children(Some("server shutting down".into()));
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RegistryMsg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Lookup { room, reply } => {
                let actor = match state.rooms.get(&room) {
                    Some(entry) => entry.actor.clone(),
                    None => {
                        let seq = Arc::new(AtomicU64::new(0));
                        match state.spawn_room(&myself, room.clone(), seq).await {
                            Ok(actor) => actor,
                            // Dropping the reply port fails the caller's join,
                            // which it retries; the registry itself carries on.
                            Err(e) => {
                                error!(room = %room, error = %e, "cannot start room actor");
                                return Ok(());
                            }
                        }
                    }
                };
                let _ = reply.send(actor);
            }
            RegistryMsg::RoomIdle { room, id } => {
                if state
                    .rooms
                    .get(&room)
                    .is_some_and(|e| e.actor.get_id() == id)
                {
                    if let Some(entry) = state.rooms.remove(&room) {
                        info!(room = %room, "stopping idle room");
                        entry.actor.stop(Some("idle".into()));
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RegistryMsg>,
        event: SupervisionEvent,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let Some(room) = state.forget(&cell) else {
                    return Ok(());
                };
                state.metrics.room_restarts.fetch_add(1, Relaxed);
                error!(room = %room, error = %err, "room actor panicked; restarting it");
                let seq = state
                    .rooms
                    .remove(&room)
                    .map_or_else(|| Arc::new(AtomicU64::new(0)), |e| e.seq);
                state.spawn_room(&myself, room, seq).await?;
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(room) = state.forget(&cell) {
                    if state
                        .rooms
                        .get(&room)
                        .is_some_and(|e| e.actor.get_id() == cell.get_id())
                    {
                        state.rooms.remove(&room);
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    async fn spawn_room(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        room: String,
        seq: Arc<AtomicU64>,
    ) -> Result<ActorRef<RoomMsg>, ActorProcessingErr> {
        let args = RoomArgs {
            name: room.clone(),
            seq: seq.clone(),
            settings: self.settings.clone(),
            metrics: self.metrics.clone(),
            registry: myself.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, Room, args, myself.get_cell()).await?;
        self.metrics.rooms.fetch_add(1, Relaxed);
        self.names.insert(actor.get_id(), room.clone());
        self.rooms.insert(
            room,
            RoomEntry {
                actor: actor.clone(),
                seq,
            },
        );
        Ok(actor)
    }

    /// Drops the bookkeeping for a room actor that ended; returns its name.
    fn forget(&mut self, cell: &ActorCell) -> Option<String> {
        let room = self.names.remove(&cell.get_id())?;
        self.metrics.rooms.fetch_sub(1, Relaxed);
        Some(room)
    }
}
