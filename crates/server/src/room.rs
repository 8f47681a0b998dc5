//! The room actor: one per room, owning its members and its message sequence.
//!
//! Where a chat message goes: a connection validates a `chat` frame and casts
//! [`RoomMsg::Chat`] here; the room stamps the author (the sender's session
//! name: identity comes from the server, never from the client), the next
//! sequence number and the server time, encodes the frame ONCE, and offers
//! the same bytes to every member's mailbox ([`crate::mailbox`]), never
//! waiting for any of them.
//!
//! The inbox is bounded: every chat cast to a room is counted in its
//! [`RoomInbox`] (one atomic per room, incremented by the sender, decremented
//! by the room when it handles the message). A connection whose chat would
//! find more than `room_inbox` messages waiting answers its client
//! `room_busy` instead of casting, so an overloaded room sheds load at its
//! door instead of growing without bound.
//!
//! Presence is coalesced: joins, leaves and renames collect in
//! [`Presence`] and go out as one `room_update` at most once per
//! presence interval, so a burst of N joins costs each member a few frames,
//! not N.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use actorchat_protocol::{
    CalcResult, ChatMessage, Limits, MAX_PARTICIPANTS_LISTED, Rename, RoomUpdate, ServerFrame,
    Welcome,
};
use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{info, warn};

use crate::clock::unix_millis;
use crate::identity::SessionId;
use crate::mailbox::{Kick, MemberHandle, Undeliverable};
use crate::metrics::Metrics;
use crate::observer::RoomStats;
use crate::observer::snapshot::{MAX_MEMBERS_LISTED, MemberRow};

/// Most names in each list of one `room_update`; `num_participants` is
/// always exact. Small on purpose: every member gets every update, so in a
/// big room long lists would multiply into every member's outbound queue and
/// write batch.
const MAX_NAMES_PER_UPDATE: usize = 50;

/// Room size per base presence interval; see [`RoomState::presence_interval`].
const PRESENCE_MEMBERS_PER_INTERVAL: usize = 1000;

/// What a room can be asked to do.
pub enum RoomMsg {
    /// Add a member. The room queues the member's `welcome` as the first
    /// frame of its mailbox, then replies.
    Join {
        session: SessionId,
        name: String,
        member: MemberHandle,
        reply: RpcReplyPort<()>,
    },
    /// Remove a member that left or disconnected.
    Leave { session: SessionId },
    /// Broadcast a chat message from a member. Counted in the room's
    /// [`RoomInbox`] by whoever casts it (see [`RoomHandle::chat`]).
    Chat(ChatIn),
    /// A member changed its display name.
    Rename { session: SessionId, name: String },
    /// Timer: send the pending `room_update`.
    FlushPresence,
    /// Timer: stop if still empty since `generation`.
    IdleCheck { generation: u64 },
    /// Observer action: panic, as a crash would, so the registry restarts
    /// the room and its members rejoin.
    Kill,
    /// Observer action: remove this member and close its connection;
    /// replies whether it was a member.
    Kick {
        session: SessionId,
        reply: RpcReplyPort<bool>,
    },
    /// Observer query: up to [`MAX_MEMBERS_LISTED`] members.
    Members { reply: RpcReplyPort<Vec<MemberRow>> },
}

/// Chat messages cast to a room and not yet handled by it.
#[derive(Debug, Default)]
pub(crate) struct RoomInbox(AtomicUsize);

impl RoomInbox {
    pub(crate) fn depth(&self) -> usize {
        self.0.load(Relaxed)
    }
}

/// What a connection holds of its room: the actor and its inbox counter.
#[derive(Clone)]
pub(crate) struct RoomHandle {
    pub actor: ActorRef<RoomMsg>,
    pub inbox: Arc<RoomInbox>,
}

/// Why a chat was not handed to the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChatRefused {
    /// `limit` messages already wait in the room's inbox.
    Busy,
    /// The room actor has stopped.
    Gone,
}

/// A chat as the room receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatIn {
    pub session: SessionId,
    /// The sender's name if it is no longer a member: a calculation
    /// result, or messages held behind it, that arrive after the sender
    /// joined another room still go to the room they were written in.
    pub departed_name: Option<String>,
    pub text: String,
    pub client_id: Option<String>,
    pub sent_at: Option<u64>,
    pub calc: Option<CalcResult>,
}

impl RoomHandle {
    /// Casts a chat unless `limit` messages already wait (`None`: no limit,
    /// for messages admitted earlier, such as calculation results).
    pub(crate) fn chat(&self, chat: ChatIn, limit: Option<usize>) -> Result<(), ChatRefused> {
        let before = self.inbox.0.fetch_add(1, Relaxed);
        if limit.is_some_and(|limit| before >= limit) {
            self.inbox.0.fetch_sub(1, Relaxed);
            return Err(ChatRefused::Busy);
        }
        if self.actor.cast(RoomMsg::Chat(chat)).is_err() {
            self.inbox.0.fetch_sub(1, Relaxed);
            return Err(ChatRefused::Gone);
        }
        Ok(())
    }

    /// Casts anything but a chat; a stopped room is noticed by the caller
    /// through its mailbox closing.
    pub(crate) fn cast(&self, msg: RoomMsg) -> bool {
        self.actor.cast(msg).is_ok()
    }
}

/// Settings every room shares.
#[derive(Debug)]
pub struct RoomSettings {
    pub limits: Limits,
    pub presence_interval: Duration,
    pub idle_after: Duration,
    /// How long a new room waits for its first member before it may stop.
    pub first_join_grace: Duration,
    /// Test-only fault injection; see `Config::debug_pause_phrase`.
    pub pause_phrase: Option<String>,
}

pub struct RoomArgs {
    pub name: String,
    /// Owned by the registry's sequence book so that a restarted room
    /// continues the sequence.
    pub seq: Arc<AtomicU64>,
    pub inbox: Arc<RoomInbox>,
    pub settings: Arc<RoomSettings>,
    pub metrics: Arc<Metrics>,
    /// This room's figures for the observer, made by the registry.
    pub stats: Arc<RoomStats>,
}

pub struct Room;

pub struct RoomState {
    name: String,
    seq: Arc<AtomicU64>,
    inbox: Arc<RoomInbox>,
    settings: Arc<RoomSettings>,
    metrics: Arc<Metrics>,
    stats: Arc<RoomStats>,
    members: HashMap<SessionId, Member>,
    presence: Presence,
    /// Bumped whenever the room becomes empty; an idle check for an older
    /// generation is stale (someone joined meanwhile).
    idle_generation: u64,
}

struct Member {
    name: String,
    handle: MemberHandle,
    /// Whether a `room_update` has told the room about this member yet. A
    /// `welcome` lists only announced members; the others arrive in the next
    /// update, so a client applying welcome + updates never counts anyone twice.
    announced: bool,
}

/// Presence changes waiting for the next `room_update`.
#[derive(Default)]
struct Presence {
    joined: Vec<(SessionId, String)>,
    left: Vec<String>,
    renamed: Vec<Rename>,
    flush_scheduled: bool,
    last_flush: Option<Instant>,
}

impl Presence {
    fn is_empty(&self) -> bool {
        self.joined.is_empty() && self.left.is_empty() && self.renamed.is_empty()
    }
}

impl Actor for Room {
    type Msg = RoomMsg;
    type State = RoomState;
    type Arguments = RoomArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<RoomMsg>,
        args: RoomArgs,
    ) -> Result<RoomState, ActorProcessingErr> {
        Ok(RoomState {
            name: args.name,
            seq: args.seq,
            inbox: args.inbox,
            settings: args.settings,
            metrics: args.metrics,
            stats: args.stats,
            members: HashMap::new(),
            presence: Presence::default(),
            idle_generation: 0,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<RoomMsg>,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        // A room nobody joins (the joiner vanished between lookup and join)
        // must not live forever; but its first joiner gets at least the join
        // timeout to arrive, however short the idle period.
        state.idle_generation += 1;
        let generation = state.idle_generation;
        let first_wait = state
            .settings
            .idle_after
            .max(state.settings.first_join_grace);
        myself.send_after(first_wait, move || RoomMsg::IdleCheck { generation });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RoomMsg>,
        msg: RoomMsg,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RoomMsg::Join {
                session,
                name,
                member,
                reply,
            } => {
                state.join(&myself, session, name, member);
                // The joiner may have given up waiting; nothing to undo then,
                // its mailbox closes and the next offer removes it.
                let _ = reply.send(());
            }
            RoomMsg::Leave { session } => state.leave(&myself, session),
            RoomMsg::Chat(chat) => {
                state.inbox.0.fetch_sub(1, Relaxed);
                state.stats.messages_in.fetch_add(1, Relaxed);
                if state.settings.pause_phrase.as_deref() == Some(chat.text.as_str()) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                state.chat(&myself, chat);
            }
            RoomMsg::Rename { session, name } => state.rename(&myself, session, name),
            RoomMsg::FlushPresence => {
                state.presence.flush_scheduled = false;
                state.flush_presence(&myself);
            }
            RoomMsg::IdleCheck { generation } => {
                // Decided here, between two messages: a join that reached the
                // room earlier made it non-empty; one that arrives after the
                // stop fails and is retried through the registry.
                if generation == state.idle_generation && state.members.is_empty() {
                    info!(room = %state.name, "room idle; stopping");
                    myself.stop(Some("idle".into()));
                }
            }
            RoomMsg::Kill => {
                panic!("observer action: room {} killed", state.name);
            }
            RoomMsg::Kick { session, reply } => {
                let _ = reply.send(state.kick(&myself, session));
            }
            RoomMsg::Members { reply } => {
                let _ = reply.send(state.member_rows());
            }
        }
        state
            .stats
            .note_shape(state.members.len(), state.presence_interval());
        Ok(())
    }
}

impl RoomState {
    fn join(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        session: SessionId,
        name: String,
        member: MemberHandle,
    ) {
        if let Some(old) = self.members.remove(&session) {
            // A reconnecting session replaces its stale membership.
            self.note_left(session, old.name, old.announced);
        }
        let num_participants = self.members.len() + 1;
        let participants: Vec<String> = self
            .members
            .values()
            .filter(|m| m.announced)
            .map(|m| m.name.clone())
            .take(MAX_PARTICIPANTS_LISTED)
            .collect();
        let welcome = ServerFrame::Welcome(Welcome {
            session_id: session,
            name: name.clone(),
            room: self.name.clone(),
            num_participants: u32::try_from(num_participants).unwrap_or(u32::MAX),
            participants,
            limits: self.settings.limits,
        });
        if member.offer(&Bytes::from(welcome.to_json())).is_err() {
            return; // already gone
        }
        self.metrics.outbound_queue_depth.fetch_add(1, Relaxed);
        self.members.insert(
            session,
            Member {
                name: name.clone(),
                handle: member,
                announced: false,
            },
        );
        self.presence.joined.push((session, name));
        self.schedule_presence(myself);
    }

    fn leave(&mut self, myself: &ActorRef<RoomMsg>, session: SessionId) {
        if let Some(m) = self.members.remove(&session) {
            self.note_left(session, m.name, m.announced);
            self.members_left(myself);
        }
    }

    /// After members left: announce it, and start the idle clock if nobody is left.
    fn members_left(&mut self, myself: &ActorRef<RoomMsg>) {
        self.schedule_presence(myself);
        if self.members.is_empty() {
            self.schedule_idle_check(myself);
        }
    }

    fn note_left(&mut self, session: SessionId, name: String, announced: bool) {
        if announced {
            self.presence.left.push(name);
        } else {
            // Joined and left within one interval: nobody needs to hear of it.
            self.presence.joined.retain(|(id, _)| *id != session);
        }
    }

    fn rename(&mut self, myself: &ActorRef<RoomMsg>, session: SessionId, name: String) {
        let Some(member) = self.members.get_mut(&session) else {
            return;
        };
        let from = std::mem::replace(&mut member.name, name.clone());
        if member.announced {
            self.presence.renamed.push(Rename { from, to: name });
        } else if let Some(entry) = self
            .presence
            .joined
            .iter_mut()
            .find(|(id, _)| *id == session)
        {
            entry.1 = name;
        }
        self.schedule_presence(myself);
    }

    fn chat(&mut self, myself: &ActorRef<RoomMsg>, chat: ChatIn) {
        let author = match (self.members.get(&chat.session), chat.departed_name) {
            (Some(member), _) => member.name.clone(),
            (None, Some(name)) => name,
            // Left (or was dropped) while the message was in flight.
            (None, None) => return,
        };
        let frame = ServerFrame::Chat(ChatMessage {
            id: self.seq.fetch_add(1, Relaxed) + 1,
            room: self.name.clone(),
            author,
            text: chat.text,
            client_id: chat.client_id,
            sent_at: chat.sent_at,
            server_time: unix_millis(),
            calc: chat.calc,
        });
        self.broadcast(myself, &frame);
    }

    /// Encodes `frame` once and offers it to every member. Members whose
    /// queue is full are removed and told they are slow consumers.
    fn broadcast(&mut self, myself: &ActorRef<RoomMsg>, frame: &ServerFrame) {
        let bytes = Bytes::from(frame.to_json());
        self.metrics.observed.latency.maybe_probe(&bytes);
        let mut delivered = 0u64;
        let mut deepest = 0;
        let mut dropped: Vec<(SessionId, Undeliverable)> = Vec::new();
        for (id, member) in &self.members {
            match member.handle.offer_counted(&bytes) {
                Ok(queued) => {
                    delivered += 1;
                    deepest = deepest.max(queued);
                }
                Err(why) => dropped.push((*id, why)),
            }
        }
        self.stats.note_broadcast(delivered, deepest);
        self.metrics.broadcasts.fetch_add(1, Relaxed);
        self.metrics.deliveries.fetch_add(delivered, Relaxed);
        self.metrics
            .outbound_queue_depth
            .fetch_add(delivered as i64, Relaxed);
        if dropped.is_empty() {
            return;
        }
        for (id, why) in dropped {
            let Some(member) = self.members.remove(&id) else {
                continue;
            };
            if why == Undeliverable::Full {
                self.metrics.slow_consumer_disconnects.fetch_add(1, Relaxed);
                warn!(
                    room = %self.name, session = id, name = %member.name,
                    "slow consumer: outbound queue full, disconnecting with 1013"
                );
                member.handle.kick(Kick::SlowConsumer);
            }
            self.note_left(id, member.name, member.announced);
        }
        self.members_left(myself);
    }

    /// Sends the pending update now if the interval since the last one has
    /// passed, otherwise makes sure a flush is scheduled for when it has.
    fn schedule_presence(&mut self, myself: &ActorRef<RoomMsg>) {
        if self.presence.flush_scheduled || self.presence.is_empty() {
            return;
        }
        let interval = self.presence_interval();
        let wait = self.presence.last_flush.map_or(Duration::ZERO, |t| {
            t.checked_add(interval).map_or(interval, |due| {
                due.saturating_duration_since(Instant::now())
            })
        });
        if wait.is_zero() {
            self.flush_presence(myself);
        } else {
            self.presence.flush_scheduled = true;
            myself.send_after(wait, || RoomMsg::FlushPresence);
        }
    }

    /// The base interval, stretched in big rooms: every update goes to every
    /// member, so one per 100 ms in a room of 19,000 would cost 190,000
    /// deliveries a second. Stretching by one base interval per
    /// [`PRESENCE_MEMBERS_PER_INTERVAL`] members keeps a room's presence
    /// traffic near 10,000 deliveries a second however big it grows.
    fn presence_interval(&self) -> Duration {
        let stretch = self
            .members
            .len()
            .div_ceil(PRESENCE_MEMBERS_PER_INTERVAL)
            .max(1);
        self.settings
            .presence_interval
            .saturating_mul(u32::try_from(stretch).unwrap_or(u32::MAX))
    }

    fn flush_presence(&mut self, myself: &ActorRef<RoomMsg>) {
        if self.presence.is_empty() {
            return;
        }
        let joined = std::mem::take(&mut self.presence.joined);
        for (id, _) in &joined {
            if let Some(m) = self.members.get_mut(id) {
                m.announced = true;
            }
        }
        let cap = MAX_NAMES_PER_UPDATE;
        let update = ServerFrame::RoomUpdate(RoomUpdate {
            room: self.name.clone(),
            num_participants: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
            joined: joined.into_iter().map(|(_, n)| n).take(cap).collect(),
            left: self.presence.left.drain(..).take(cap).collect(),
            renamed: self.presence.renamed.drain(..).take(cap).collect(),
        });
        self.presence.last_flush = Some(Instant::now());
        self.broadcast(myself, &update);
    }

    /// Observer action: removes a member and tells its connection to close.
    fn kick(&mut self, myself: &ActorRef<RoomMsg>, session: SessionId) -> bool {
        let Some(member) = self.members.remove(&session) else {
            return false;
        };
        info!(room = %self.name, session, name = %member.name, "closed by an administrator");
        member.handle.kick(Kick::Admin);
        self.note_left(session, member.name, member.announced);
        self.members_left(myself);
        true
    }

    fn member_rows(&self) -> Vec<MemberRow> {
        let mut rows: Vec<MemberRow> = self
            .members
            .iter()
            .map(|(session, m)| MemberRow {
                session: *session,
                name: m.name.clone(),
                queued: m.handle.queued(),
            })
            .collect();
        rows.sort_by_key(|r| r.session);
        rows.truncate(MAX_MEMBERS_LISTED);
        rows
    }

    fn schedule_idle_check(&mut self, myself: &ActorRef<RoomMsg>) {
        self.idle_generation += 1;
        let generation = self.idle_generation;
        myself.send_after(self.settings.idle_after, move || RoomMsg::IdleCheck {
            generation,
        });
    }
}
