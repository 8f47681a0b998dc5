//! The room registry: finds or creates room actors and supervises them.
//!
//! Supervision policy: a room actor that panics is restarted at once with
//! the same name, continuing its stream (its members see their mailboxes close
//! and rejoin, each getting a fresh `welcome`); the process never dies
//! because one room failed, and a room that cannot be restarted is forgotten
//! (its members' rejoin creates it afresh) rather than taking the registry
//! down.
//!
//! Idle rooms stop themselves: a room that has been empty for
//! `room_idle_secs` stops its own actor. Because a room handles one message
//! at a time, a `join` either reached it before (then it is not empty and
//! does not stop) or arrives after the stop (then the join fails and the
//! joiner asks the registry again, which by then has forgotten the room and
//! starts a fresh one, which continues the room's stream).
//!
//! Bounds: at most `max_rooms` rooms; a lookup that would create one more is
//! answered [`LookupError::RoomLimit`].
//!
//! Ids live in the rooms' streams ([`crate::history`]), not in any actor,
//! so rooms restarted with a restarted registry continue them too.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tracing::{error, info, warn};

use crate::history::Streams;
use crate::metrics::Metrics;
use crate::observer::RoomStats;
use crate::room::{Room, RoomArgs, RoomHandle, RoomInbox, RoomSettings};
use crate::supervisor::Supervised;

pub(crate) enum RegistryMsg {
    /// The room's actor, created if the room does not exist yet.
    Lookup {
        room: String,
        reply: RpcReplyPort<Result<RoomHandle, LookupError>>,
    },
}

/// Why a lookup found no room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("the server already has its most rooms ({max})")]
    RoomLimit { max: usize },
    #[error("the room actor could not be started")]
    SpawnFailed,
    #[error("the room registry is not answering (down or restarting)")]
    Unavailable,
}

/// Asks whichever registry is running now for `room`'s actor, creating the
/// room if needed.
pub(crate) async fn lookup(
    registry: &Supervised<RegistryMsg>,
    room: &str,
    timeout: Duration,
) -> Result<RoomHandle, LookupError> {
    let Some(registry) = registry.get() else {
        return Err(LookupError::Unavailable);
    };
    let answer = registry
        .call(
            |reply| RegistryMsg::Lookup {
                room: room.to_owned(),
                reply,
            },
            Some(timeout),
        )
        .await;
    match answer {
        Ok(CallResult::Success(found)) => found,
        _ => Err(LookupError::Unavailable),
    }
}

pub(crate) struct RoomRegistry;

#[derive(Clone)]
pub(crate) struct RegistryArgs {
    pub settings: Arc<RoomSettings>,
    pub metrics: Arc<Metrics>,
    pub streams: Streams,
    pub max_rooms: usize,
}

pub(crate) struct RegistryState {
    args: RegistryArgs,
    rooms: HashMap<String, RoomHandle>,
    /// Room name by actor id, to route supervision events.
    names: HashMap<ActorId, String>,
}

impl Drop for RegistryState {
    /// A registry that dies takes its rooms with it (they are linked
    /// children); their gauges go with them.
    fn drop(&mut self) {
        let metrics = &self.args.metrics;
        metrics.rooms.fetch_sub(self.names.len() as i64, Relaxed);
        for id in self.names.keys() {
            metrics.room_inboxes.remove(*id);
            metrics.observed.rooms.remove(*id);
        }
    }
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
            args,
            rooms: HashMap::new(),
            names: HashMap::new(),
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<RegistryMsg>,
        _state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        myself
            .stop_children_and_wait(Some("server shutting down".into()), None)
            .await;
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
                let found = state.lookup(&myself, room).await;
                // The caller may have given up waiting; nothing to undo.
                let _ = reply.send(found);
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
                state.args.metrics.room_restarts.fetch_add(1, Relaxed);
                state.args.metrics.observed.rooms.note_restart(&room);
                error!(room = %room, error = %err, "room actor panicked; restarting it");
                state.rooms.remove(&room);
                // A failure to restart must not take the registry (and every
                // other room) down: the room is forgotten, and the next join
                // tries again.
                if let Err(e) = state.spawn_room(&myself, room.clone()).await {
                    error!(room = %room, error = %e, "cannot restart room actor; it will be recreated on the next join");
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let Some(room) = state.forget(&cell) else {
                    return Ok(());
                };
                if state
                    .rooms
                    .get(&room)
                    .is_some_and(|e| e.actor.get_id() == cell.get_id())
                {
                    state.rooms.remove(&room);
                    state.args.metrics.observed.rooms.forget_restarts(&room);
                    info!(room = %room, reason = ?reason, "room stopped");
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl RegistryState {
    async fn lookup(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        room: String,
    ) -> Result<RoomHandle, LookupError> {
        if let Some(handle) = self.rooms.get(&room) {
            return Ok(handle.clone());
        }
        if self.rooms.len() >= self.args.max_rooms {
            self.args.metrics.room_limit_refusals.fetch_add(1, Relaxed);
            warn!(room = %room, max_rooms = self.args.max_rooms, "room limit reached; not creating the room");
            return Err(LookupError::RoomLimit {
                max: self.args.max_rooms,
            });
        }
        self.spawn_room(myself, room.clone()).await.map_err(|e| {
            error!(room = %room, error = %e, "cannot start room actor");
            LookupError::SpawnFailed
        })
    }

    async fn spawn_room(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        room: String,
    ) -> Result<RoomHandle, ActorProcessingErr> {
        let inbox = Arc::new(RoomInbox::default());
        let stats = Arc::new(RoomStats::new(room.clone(), inbox.clone()));
        let args = RoomArgs {
            name: room.clone(),
            streams: self.args.streams.clone(),
            inbox: inbox.clone(),
            settings: self.args.settings.clone(),
            metrics: self.args.metrics.clone(),
            stats: stats.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, Room, args, myself.get_cell()).await?;
        self.args
            .metrics
            .observed
            .rooms
            .insert(actor.clone(), stats);
        self.args.metrics.rooms.fetch_add(1, Relaxed);
        self.args
            .metrics
            .room_inboxes
            .insert(actor.get_id(), inbox.clone());
        self.names.insert(actor.get_id(), room.clone());
        let handle = RoomHandle { actor, inbox };
        self.rooms.insert(room, handle.clone());
        Ok(handle)
    }

    /// Drops the bookkeeping for a room actor that ended; returns its name.
    fn forget(&mut self, cell: &ActorCell) -> Option<String> {
        let room = self.names.remove(&cell.get_id())?;
        self.args.metrics.rooms.fetch_sub(1, Relaxed);
        self.args.metrics.room_inboxes.remove(cell.get_id());
        self.args.metrics.observed.rooms.remove(cell.get_id());
        Some(room)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::mailbox::{Delivery, Mailbox, mailbox};
    use crate::room::{ChatIn, RoomMsg};
    use actorchat_protocol::{Limits, ServerFrame};
    use ractor::rpc::CallResult;

    fn memory_storage() -> crate::history::StorageConfig {
        crate::history::StorageConfig {
            kind: crate::history::StorageKind::Memory,
            data_dir: std::path::PathBuf::new(),
            sync: crate::history::Durability::Normal,
            retention: crate::history::Retention {
                max_per_room: Some(1000),
                max_age: None,
            },
        }
    }

    async fn spawn_registry(max_rooms: usize) -> ActorRef<RegistryMsg> {
        let settings = Arc::new(RoomSettings {
            limits: Limits {
                max_text_chars: 4000,
                max_frame_bytes: 16 * 1024,
                max_messages_per_sec: 20,
            },
            presence_interval: Duration::from_millis(1),
            // Idle at once: every moment a room is empty, its stop is due.
            idle_after: Duration::ZERO,
            first_join_grace: Duration::ZERO,
            welcome_history: 50,
            recover_max: 1000,
            pause_phrase: None,
        });
        let args = RegistryArgs {
            settings,
            metrics: Arc::new(Metrics::default()),
            streams: crate::history::Streams::open(&memory_storage(), Arc::default()).unwrap(),
            max_rooms,
        };
        Actor::spawn(None, RoomRegistry, args).await.unwrap().0
    }

    async fn find(registry: &ActorRef<RegistryMsg>, room: &str) -> Result<RoomHandle, LookupError> {
        let answer = registry
            .call(
                |reply| RegistryMsg::Lookup {
                    room: room.to_owned(),
                    reply,
                },
                Some(Duration::from_secs(5)),
            )
            .await
            .unwrap();
        match answer {
            CallResult::Success(found) => found,
            _ => panic!("the registry did not answer"),
        }
    }

    /// Joins; `None` if the room had stopped before the join reached it.
    async fn join(room: &RoomHandle, session: u64) -> Option<Mailbox> {
        let (member, mailbox) = mailbox(64, 4096);
        let joined = room
            .actor
            .call(
                |reply| RoomMsg::Join {
                    session,
                    author: crate::room::Author {
                        name: format!("m{session}"),
                        user_id: None,
                    },
                    member,
                    since: None,
                    reply,
                },
                Some(Duration::from_secs(5)),
            )
            .await;
        matches!(joined, Ok(CallResult::Success(_))).then_some(mailbox)
    }

    fn chat(room: &RoomHandle, session: u64, text: &str) {
        let msg = ChatIn {
            session,
            departed: None,
            text: text.to_owned(),
            client_id: None,
            sent_at: None,
            calc: None,
        };
        room.chat(msg, None).unwrap();
    }

    /// The next chat's id; panics if the mailbox closes (the room stopped
    /// under its member).
    async fn next_chat_id(mailbox: &mut Mailbox) -> u64 {
        loop {
            let delivery = tokio::time::timeout(Duration::from_secs(5), mailbox.recv())
                .await
                .expect("no chat within 5 s");
            let Delivery::Frames(frames) = delivery else {
                panic!("the room stopped under a member: {delivery:?}");
            };
            for f in frames {
                if let Ok(ServerFrame::Chat(c)) = serde_json::from_slice(&f.to_bytes()) {
                    return c.id;
                }
            }
        }
    }

    /// The idle-stop race: a member leaves (the room's stop is due at once)
    /// while another joiner, holding the room's handle from an earlier
    /// lookup, joins. Whichever comes first, a joined member is never
    /// dropped by an idle stop, and the ids it sees never go backwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_stop_never_strands_a_member_that_joined_meanwhile() {
        let registry = spawn_registry(100).await;
        let (mut joined_in_time, mut joined_too_late) = (0, 0);
        for i in 0..200u64 {
            let Ok(room) = find(&registry, "r").await else {
                panic!("lookup failed");
            };
            let Some(mut first) = join(&room, 2 * i + 1).await else {
                continue;
            };
            chat(&room, 2 * i + 1, "hello");
            let id = next_chat_id(&mut first).await;
            room.cast(RoomMsg::Leave { session: 2 * i + 1 });
            drop(first);
            // The room is empty now; its stop races this join, which comes
            // a little later each time.
            for _ in 0..i % 16 {
                tokio::task::yield_now().await;
            }
            if i % 5 == 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let Some(mut second) = join(&room, 2 * i + 2).await else {
                joined_too_late += 1;
                continue;
            };
            joined_in_time += 1;
            tokio::task::yield_now().await;
            chat(&room, 2 * i + 2, "still here");
            let next = next_chat_id(&mut second).await;
            assert!(next > id, "ids went backwards: {id}, then {next}");
            room.cast(RoomMsg::Leave { session: 2 * i + 2 });
        }
        eprintln!("joined before the stop: {joined_in_time}, after it: {joined_too_late}");
        assert!(joined_in_time > 0, "the race was never exercised");
    }

    #[tokio::test]
    async fn a_lookup_beyond_max_rooms_is_refused_but_existing_rooms_are_found() {
        let registry = spawn_registry(2).await;
        let a = find(&registry, "a").await.unwrap();
        let _keep = join(&a, 1).await.unwrap();
        let b = find(&registry, "b").await.unwrap();
        let _keep_b = join(&b, 2).await.unwrap();
        assert_eq!(
            find(&registry, "c").await.err(),
            Some(LookupError::RoomLimit { max: 2 })
        );
        assert!(find(&registry, "a").await.is_ok());
    }
}
