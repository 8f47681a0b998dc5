//! The room actor: one per room, owning its members and the order of its stream.
//!
//! Where a chat message goes: a connection validates a `chat` frame and casts
//! [`RoomMsg::Chat`] here; the room stamps the author (the sender's session
//! name: identity comes from the server, never from the client). Then,
//! persist before broadcast: the room numbers the waiting messages with
//! the next ids of its stream, encodes each frame ONCE and hands the batch
//! to storage ([`crate::history`]) without waiting; when storage reports the
//! commit ([`RoomMsg::Committed`]) it offers the same bytes to every
//! member's mailbox ([`crate::mailbox`]), never waiting for any of them.
//! One batch is in flight per room; what arrives meanwhile forms the next
//! batch, so a slow disk makes batches bigger, not the room slower. A
//! failed commit is answered `unavailable` to its senders and nothing of it
//! is broadcast; the ids are handed out again (nobody saw them).
//!
//! Joins: a member's `welcome` carries the room's recent history, encoded
//! once and shared by every joiner ([`Recent`]); a resuming member's
//! carries exactly the messages after its `since` id, from memory when they
//! are recent, otherwise from a storage read that runs while the room goes
//! on. Either way the member is added in the same step as its history is
//! cut off, so the first live frame it gets follows the history's last.
//!
//! The inbox is bounded: every chat cast to a room is counted in its
//! [`RoomInbox`] (one atomic per room, incremented by the sender, decremented
//! by the room when it handles the message). A connection whose chat would
//! find more than `room_inbox` messages waiting answers its client
//! `room_busy` instead of casting, so an overloaded room sheds load at its
//! door instead of growing without bound.
//!
//! Cluster mode (`--redis-url`) changes who numbers: Redis does, and the
//! room broadcasts what comes back on its channel (see [`shared`]).
//!
//! Presence is coalesced: joins, leaves and renames collect in
//! [`Presence`] and go out as one `room_update` at most once per
//! presence interval, so a burst of N joins costs each member a few frames,
//! not N.

mod shared;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use actorchat_protocol::{
    CalcResult, ChatMessage, ErrorCode, Limits, MAX_PARTICIPANTS_LISTED, Rename, RoomUpdate,
    ServerFrame, Since, Welcome,
};
use bytes::Bytes;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{error, info, warn};

use crate::clock::unix_millis;
use crate::cluster::{Delivery, PresenceNote};
use crate::history::{Append, Head, Recent, StoreError, Stored, Streams, json_array};
use crate::identity::{SessionId, default_name};
use crate::mailbox::{Frame, Kick, MemberHandle, Undeliverable};
use crate::metrics::Metrics;
use crate::observer::RoomStats;
use crate::observer::snapshot::{MAX_MEMBERS_LISTED, MemberRow};

/// Most names in each list of one `room_update`; `num_participants` is
/// always exact. Small on purpose: every member gets every update, so in a
/// big room long lists would multiply into every member's outbound queue and
/// write batch.
const MAX_NAMES_PER_UPDATE: usize = 50;

/// Most messages of one room in one storage batch. Each batch is broadcast
/// in one go when committed, so this bounds the burst a member's outbound
/// queue takes at once (a backlog of thousands would otherwise land on every
/// member together and overflow their queues).
const MAX_BATCH: usize = 64;
/// A Tokio worker's own run queue (256 tasks). A room with at least this
/// many members overflows it with every broadcast, into the runtime's
/// global queue, so its storage completions must not be remote wake-ups,
/// which would wait behind them (see `history::Append::via_dispatcher`).
const WORKER_QUEUE: usize = 256;

/// Room size per base presence interval; see [`RoomState::presence_interval`].
const PRESENCE_MEMBERS_PER_INTERVAL: usize = 1000;

/// What a room can be asked to do.
pub enum RoomMsg {
    /// Add a member. The room queues the member's `welcome` as the first
    /// frame of its mailbox, then replies. With `since`, the member resumes
    /// (see [`Welcome::recovered`]). No reply: the room's stream could not
    /// be read (the joiner retries, then gives up).
    Join {
        session: SessionId,
        author: Author,
        member: MemberHandle,
        since: Option<Since>,
        /// The name the member joined under: its own, unless a guest asked
        /// for the name of a verified member (see [`RoomState::admit`]).
        reply: RpcReplyPort<String>,
    },
    /// Storage finished a resume's read (see [`RoomState::resume`]).
    ResumeRead {
        join: Box<PendingJoin>,
        read: Result<Vec<Stored>, StoreError>,
    },
    /// Storage finished the batch in flight.
    Committed(Result<(), StoreError>),
    /// Cluster mode: Redis numbered, stored and published the batch in
    /// flight (its first id), or failed to.
    Published(Result<u64, StoreError>),
    /// Cluster mode: messages of this room published by some node (this
    /// one included), from the room's channel.
    Delivered(Delivery),
    /// Cluster mode: messages read from the stream to fill a gap (`head`:
    /// `None`) or to catch up after a reconnect (`head`: the stream's).
    Filled {
        head: Option<Head>,
        read: Result<Vec<Stored>, StoreError>,
    },
    /// Cluster mode: the pub/sub connection came back; read what was
    /// published while it was down.
    CatchUp,
    /// Cluster mode: timer after a publish; if its messages have not come
    /// back on the channel by now, read them from the stream.
    CheckDelivered { upto: u64 },
    /// Cluster mode: another node's members of this room changed.
    Presence(PresenceNote),
    /// Remove a member that left or disconnected.
    Leave { session: SessionId },
    /// Broadcast a chat message from a member. Counted in the room's
    /// [`RoomInbox`] by whoever casts it (see [`RoomHandle::chat`]).
    Chat(ChatIn),
    /// A member asks to change its display name; refused (with a
    /// sentence) when a guest asks for a verified member's name.
    Rename {
        session: SessionId,
        name: String,
        reply: RpcReplyPort<Result<(), String>>,
    },
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

/// Who writes: a display name and, for a verified user, its user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Author {
    pub name: String,
    pub user_id: Option<Arc<str>>,
}

/// A chat as the room receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatIn {
    pub session: SessionId,
    /// The sender if it is no longer a member: a calculation result, or
    /// messages held behind it, that arrive after the sender joined another
    /// room still go to the room they were written in.
    pub departed: Option<Author>,
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
    /// Messages in a plain join's `welcome.history`.
    pub welcome_history: usize,
    /// Most missed messages a resume recovers.
    pub recover_max: usize,
    pub presence_interval: Duration,
    pub idle_after: Duration,
    /// How long a new room waits for its first member before it may stop.
    pub first_join_grace: Duration,
    /// Test-only fault injection; see `Config::debug_pause_phrase`.
    pub pause_phrase: Option<String>,
}

pub struct RoomArgs {
    pub name: String,
    /// The room's stream: ids continue from its last one, whether the room
    /// restarted after a panic or the server after a crash.
    pub streams: Streams,
    pub inbox: Arc<RoomInbox>,
    pub settings: Arc<RoomSettings>,
    pub metrics: Arc<Metrics>,
    /// This room's figures for the observer, made by the registry.
    pub stats: Arc<RoomStats>,
}

pub struct Room;

pub struct RoomState {
    name: String,
    /// The name as storage keys it, shared by every batch.
    key: Arc<str>,
    streams: Streams,
    /// Read from storage on the first message; `None` until then, and again
    /// after a failed commit (so the next message re-reads the last id).
    stream: Option<StreamState>,
    /// Chats received and not yet handed to storage.
    waiting: Vec<Outgoing>,
    /// The batch storage is committing: (sender, received, id, frame).
    in_flight: Vec<(SessionId, Instant, u64, Bytes)>,
    /// When the batch in flight was handed to storage.
    in_flight_since: Instant,
    /// Resumes waiting for a storage read; the room does not stop meanwhile.
    pending_resumes: usize,
    /// Cluster mode: frames from the channel that came after a gap, by id,
    /// waiting for the gap to be filled from the stream.
    ahead: BTreeMap<u64, Bytes>,
    /// Cluster mode: a read of the stream is under way.
    filling: bool,
    /// Cluster mode: when this room received its own published messages
    /// not yet delivered, by id (the start of their delivery latency).
    received_at: HashMap<u64, Instant>,
    /// Cluster mode: the room's members on other nodes, by node: their
    /// count and names (see `crate::cluster::presence`).
    remote: HashMap<String, PresenceNote>,
    inbox: Arc<RoomInbox>,
    settings: Arc<RoomSettings>,
    metrics: Arc<Metrics>,
    stats: Arc<RoomStats>,
    members: HashMap<SessionId, Member>,
    /// Display names of verified members, with how many hold each: a guest
    /// may not take one (checked on join and rename). Empty unless
    /// `--auth optional|required`.
    verified_names: HashMap<String, u32>,
    presence: Presence,
    /// Bumped whenever the room becomes empty; an idle check for an older
    /// generation is stale (someone joined meanwhile).
    idle_generation: u64,
}

/// What a room knows of its stream.
struct StreamState {
    epoch: String,
    /// The newest id broadcast (and so committed).
    last_id: u64,
    recent: Recent,
}

/// A chat accepted by the room, waiting for its id.
struct Outgoing {
    session: SessionId,
    /// When the room received it: the start of its delivery latency.
    received: Instant,
    author: Author,
    chat: ChatIn,
}

/// A resuming join whose missed messages are being read from storage.
pub struct PendingJoin {
    session: SessionId,
    author: Author,
    member: MemberHandle,
    reply: RpcReplyPort<String>,
    /// The resume's stream and where the read got to.
    epoch: String,
    after: u64,
    /// Frames read so far, oldest first.
    history: Vec<Bytes>,
    started: Instant,
}

struct Member {
    name: String,
    /// The verified user's id, stamped on its messages; `None` for a guest.
    user_id: Option<Arc<str>>,
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
            key: args.name.as_str().into(),
            name: args.name,
            streams: args.streams,
            stream: None,
            waiting: Vec::new(),
            in_flight: Vec::new(),
            in_flight_since: Instant::now(),
            pending_resumes: 0,
            ahead: BTreeMap::new(),
            filling: false,
            received_at: HashMap::new(),
            remote: HashMap::new(),
            inbox: args.inbox,
            settings: args.settings,
            metrics: args.metrics,
            stats: args.stats,
            members: HashMap::new(),
            verified_names: HashMap::new(),
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

    async fn post_stop(
        &self,
        myself: ActorRef<RoomMsg>,
        state: &mut RoomState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(cluster) = state.streams.cluster() {
            cluster.bus.unsubscribe(&state.name, myself.get_id());
        }
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
                author,
                member,
                since,
                reply,
            } => {
                if state.load_stream(&myself, 0).await {
                    state.join(&myself, session, author, member, since, reply);
                }
            }
            RoomMsg::ResumeRead { join, read } => {
                state.pending_resumes -= 1;
                state.resume_read(&myself, *join, read);
            }
            RoomMsg::Committed(result) => {
                let broadcast = state.committed(&myself, result);
                if broadcast > 1 {
                    // A batch is many broadcasts in one step; let the
                    // members' connections (on this worker too) drain them
                    // before the next batch lands on their queues.
                    tokio::task::yield_now().await;
                }
            }
            RoomMsg::Published(result) => state.published(&myself, result),
            RoomMsg::Delivered(delivery) => state.delivered(&myself, delivery).await,
            RoomMsg::Filled { head, read } => state.filled(&myself, head, read).await,
            RoomMsg::CatchUp => {
                // Redis may have lost this node's presence with everything
                // else (or missed a change made while it was away).
                state.announce(PresenceNote::default());
                state.read_missed(&myself, true).await;
            }
            RoomMsg::CheckDelivered { upto } => {
                if state.stream.as_ref().is_some_and(|s| s.last_id < upto) {
                    state.read_missed(&myself, true).await;
                }
            }
            RoomMsg::Presence(note) => state.remote_presence(&myself, note),
            RoomMsg::Leave { session } => state.leave(&myself, session),
            RoomMsg::Chat(chat) => {
                state.stats.messages_in.fetch_add(1, Relaxed);
                if state.settings.pause_phrase.as_deref() == Some(chat.text.as_str()) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                state.chat(chat);
                if state.load_stream(&myself, 0).await {
                    state.send_batch(&myself);
                } else {
                    state.fail_waiting();
                }
            }
            RoomMsg::Rename {
                session,
                name,
                reply,
            } => {
                let _ = reply.send(state.rename(&myself, session, name));
            }
            RoomMsg::FlushPresence => {
                state.presence.flush_scheduled = false;
                state.flush_presence(&myself);
            }
            RoomMsg::IdleCheck { generation } => {
                // Decided here, between two messages: a join that reached the
                // room earlier made it non-empty; one that arrives after the
                // stop fails and is retried through the registry.
                if generation == state.idle_generation && state.is_idle() {
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
    /// Reads the stream's epoch, last id and recent messages if not done
    /// yet. The room waits for this read (it cannot number or replay
    /// anything without it); it happens once per room start.
    /// `floor`: see [`Streams::head`] (0 when the room knows of no id).
    async fn load_stream(&mut self, myself: &ActorRef<RoomMsg>, floor: u64) -> bool {
        if self.stream.is_some() {
            return true;
        }
        let keep = self.settings.welcome_history;
        let loaded = async {
            // Cluster mode: subscribed before the head (and the other
            // nodes' presence) is read, so that whatever is published after
            // the read arrives on the channel.
            if let Some(cluster) = self.streams.cluster() {
                cluster.bus.subscribe(&self.name, myself.clone()).await?;
                self.remote = cluster
                    .presence
                    .others(&self.name)
                    .await
                    .into_iter()
                    .map(|note| (note.node.clone(), note))
                    .collect();
            }
            let head = self.streams.head(&self.name, floor).await?;
            let latest = self.streams.latest(&self.name, keep).await?;
            Ok::<_, StoreError>((head, latest))
        }
        .await;
        match loaded {
            Ok((head, latest)) => {
                let mut recent = Recent::new(keep, self.settings.recover_max);
                for m in latest.into_iter().filter(|m| m.id <= head.last_id) {
                    recent.push(m.id, m.frame);
                }
                self.stats.last_id.store(head.last_id, Relaxed);
                self.stream = Some(StreamState {
                    epoch: head.epoch,
                    last_id: head.last_id,
                    recent,
                });
                true
            }
            Err(e) => {
                error!(room = %self.name, error = %e, "cannot read the room's stream; refusing joins and chat until it can");
                false
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.members.is_empty()
            && self.pending_resumes == 0
            && self.in_flight.is_empty()
            && self.waiting.is_empty()
    }

    fn join(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        session: SessionId,
        author: Author,
        member: MemberHandle,
        since: Option<Since>,
        reply: RpcReplyPort<String>,
    ) {
        let started = Instant::now();
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        // Decided with the stream borrowed; acted on after.
        let now = match &since {
            None => Ok((None, stream.recent.welcome_history())),
            Some(since) => {
                let missed = stream.last_id.checked_sub(since.id);
                let recoverable = since.epoch == stream.epoch
                    && missed.is_some_and(|n| n <= self.settings.recover_max as u64);
                if !recoverable {
                    Ok((Some(false), stream.recent.welcome_history()))
                } else if let Some(frames) = stream.recent.after(since.id) {
                    Ok((Some(true), json_array(frames)))
                } else {
                    Err(stream.last_id)
                }
            }
        };
        match (now, since) {
            (Ok((recovered, history)), _) => {
                if let Some(recovered) = recovered {
                    self.resumed(recovered, started);
                }
                let name = self.admit(myself, session, author, member, recovered, history);
                let _ = reply.send(name);
            }
            // Older than memory reaches: read from storage while the room
            // goes on.
            (Err(upto), Some(since)) => {
                let join = PendingJoin {
                    session,
                    author,
                    member,
                    reply,
                    epoch: since.epoch,
                    after: since.id,
                    history: Vec::new(),
                    started,
                };
                self.read_for(myself, join, upto);
            }
            (Err(_), None) => {}
        }
    }

    /// Reads the messages after `join.after` up to `upto` for a resume.
    fn read_for(&mut self, myself: &ActorRef<RoomMsg>, join: PendingJoin, upto: u64) {
        self.pending_resumes += 1;
        self.metrics.history.reads.fetch_add(1, Relaxed);
        let streams = self.streams.clone();
        let room = self.key.clone();
        let myself = myself.clone();
        let limit = usize::try_from(upto.saturating_sub(join.after)).unwrap_or(usize::MAX);
        tokio::spawn(async move {
            let read = streams.after(&room, join.after, limit).await;
            let _ = myself.cast(RoomMsg::ResumeRead {
                join: Box::new(join),
                read,
            });
        });
    }

    /// A resume's read is back: the member gets it, plus what was broadcast
    /// since (from memory), and joins in the same step.
    fn resume_read(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        mut join: PendingJoin,
        read: Result<Vec<Stored>, StoreError>,
    ) {
        let Some(stream) = self.stream.as_mut() else {
            return; // storage failed meanwhile; the joiner retries
        };
        let contiguous = match read {
            Ok(messages) => messages.into_iter().try_fold(join.after, |expected, m| {
                (m.id == expected + 1).then(|| {
                    join.history.push(m.frame);
                    m.id
                })
            }),
            Err(e) => {
                warn!(room = %self.name, error = %e, "resume read failed; answering recovered: false");
                None
            }
        };
        let mut recovered = None;
        // A room busier than memory holds may have moved on past what
        // memory reaches during the read: read on from there, but never
        // chase it for more than twice the recover limit.
        let chase = 2 * self.settings.recover_max;
        if let Some(reached) = contiguous.filter(|_| join.epoch == stream.epoch) {
            join.after = reached;
            if let Some(rest) = stream.recent.after(reached) {
                join.history.extend(rest.cloned());
                recovered = Some(());
            } else if join.history.len() <= chase {
                let upto = stream.last_id;
                self.read_for(myself, join, upto);
                return;
            }
        }
        let PendingJoin {
            session,
            author,
            member,
            reply,
            history,
            started,
            ..
        } = join;
        let (recovered, history) = match recovered {
            Some(()) => (true, json_array(history.iter())),
            None => (false, stream.recent.welcome_history()),
        };
        self.resumed(recovered, started);
        let name = self.admit(myself, session, author, member, Some(recovered), history);
        let _ = reply.send(name);
    }

    fn resumed(&self, recovered: bool, started: Instant) {
        let history = &self.metrics.history;
        if recovered {
            history.resumes_recovered.fetch_add(1, Relaxed);
        } else {
            history.resumes_not_recovered.fetch_add(1, Relaxed);
        }
        history.resume_seconds.observe(started.elapsed());
    }

    /// Queues the member's `welcome` (with `history`, a JSON array of chat
    /// frames) and adds it to the room. Returns the name it joined under: a
    /// guest asking for the name of a verified member gets its default
    /// name instead, and an `invalid_name` error after the welcome saying so.
    fn admit(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        session: SessionId,
        author: Author,
        member: MemberHandle,
        recovered: Option<bool>,
        history: Bytes,
    ) -> String {
        let Author { mut name, user_id } = author;
        if self.stream.is_none() {
            return name;
        }
        if let Some(old) = self.members.remove(&session) {
            // A reconnecting session replaces its stale membership.
            self.forget(session, old);
        }
        let taken = user_id.is_none() && self.verified_names.contains_key(&name);
        if taken {
            let asked = std::mem::replace(&mut name, default_name(session));
            info!(room = %self.name, session, asked = %asked, given = %name, "guest asked for a verified member's name; given its default name");
        }
        let welcome = self.welcome(
            session,
            &name,
            user_id.as_deref(),
            recovered,
            self.participants() + 1,
        );
        if member
            .offer_frame(welcome_frame(&welcome, history))
            .is_err()
        {
            return name; // already gone
        }
        self.metrics.outbound_queue_depth.fetch_add(1, Relaxed);
        if taken {
            let notice = ServerFrame::error(
                ErrorCode::InvalidName,
                format!(
                    "That name belongs to a verified member of {}; you joined as {name}.",
                    self.name
                ),
            );
            if member.offer(&Bytes::from(notice.to_json())).is_ok() {
                self.metrics.outbound_queue_depth.fetch_add(1, Relaxed);
                self.metrics.error(ErrorCode::InvalidName);
            }
        }
        if user_id.is_some() {
            *self.verified_names.entry(name.clone()).or_default() += 1;
        }
        self.members.insert(
            session,
            Member {
                name: name.clone(),
                user_id,
                handle: member,
                announced: false,
            },
        );
        self.presence.joined.push((session, name.clone()));
        self.schedule_presence(myself);
        name
    }

    /// A member's `welcome`, without its history (see [`welcome_frame`]).
    /// It lists the announced members; the others arrive in the next
    /// `room_update`.
    fn welcome(
        &self,
        session: SessionId,
        name: &str,
        user_id: Option<&str>,
        recovered: Option<bool>,
        num_participants: usize,
    ) -> Welcome {
        let (epoch, last_id) = self
            .stream
            .as_ref()
            .map(|s| (s.epoch.clone(), s.last_id))
            .unwrap_or_default();
        Welcome {
            session_id: session,
            name: name.to_owned(),
            room: self.name.clone(),
            num_participants: u32::try_from(num_participants).unwrap_or(u32::MAX),
            participants: self
                .members
                .values()
                .filter(|m| m.announced)
                .map(|m| m.name.clone())
                .chain(self.remote.values().flat_map(|n| n.names.iter().cloned()))
                .take(MAX_PARTICIPANTS_LISTED)
                .collect(),
            limits: self.settings.limits,
            epoch,
            last_id,
            recovered,
            user_id: user_id.map(str::to_owned),
            history: Vec::new(),
        }
    }

    fn leave(&mut self, myself: &ActorRef<RoomMsg>, session: SessionId) {
        if let Some(m) = self.members.remove(&session) {
            self.forget(session, m);
            self.members_left(myself);
        }
    }

    /// A member removed from `members`: its verified name is free again,
    /// and the room hears it left. Returns its handle, to kick it or drop it
    /// (which ends the connection's mailbox).
    fn forget(&mut self, session: SessionId, member: Member) -> MemberHandle {
        if member.user_id.is_some() {
            self.release_verified_name(&member.name);
        }
        self.note_left(session, member.name, member.announced);
        member.handle
    }

    fn release_verified_name(&mut self, name: &str) {
        if let Some(n) = self.verified_names.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                self.verified_names.remove(name);
            }
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

    /// Renames a guest (a verified member's name comes from its token: the
    /// connection refuses its `set_name` before it gets here).
    fn rename(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        session: SessionId,
        name: String,
    ) -> Result<(), String> {
        let Some(member) = self.members.get_mut(&session) else {
            return Ok(());
        };
        if member.user_id.is_none() && self.verified_names.contains_key(&name) {
            return Err(format!(
                "{name} is the name of a verified member of {}; choose another.",
                self.name
            ));
        }
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
        Ok(())
    }

    /// Accepts a chat for the next batch, stamping its author now: a rename
    /// after sending does not change who wrote it.
    fn chat(&mut self, chat: ChatIn) {
        let author = match (self.members.get(&chat.session), &chat.departed) {
            (Some(member), _) => Author {
                name: member.name.clone(),
                user_id: member.user_id.clone(),
            },
            (None, Some(departed)) => departed.clone(),
            // Left (or was dropped) while the message was in flight.
            (None, None) => {
                self.inbox.0.fetch_sub(1, Relaxed);
                return;
            }
        };
        self.waiting.push(Outgoing {
            session: chat.session,
            received: Instant::now(),
            author,
            chat,
        });
    }

    /// Numbers the waiting chats, encodes each once and hands them to
    /// storage, unless a batch is already in flight.
    fn send_batch(&mut self, myself: &ActorRef<RoomMsg>) {
        let Some(stream) = self.stream.as_ref() else {
            return;
        };
        if !self.in_flight.is_empty() || self.waiting.is_empty() {
            return;
        }
        let server_time = unix_millis();
        let take = self.waiting.len().min(MAX_BATCH);
        if self.streams.cluster().is_some() {
            let floor = stream.last_id;
            return self.publish_batch(myself, take, server_time, floor);
        }
        let mut messages = Vec::with_capacity(take);
        for (i, out) in self.waiting.drain(..take).enumerate() {
            let id = stream.last_id + 1 + i as u64;
            let frame = Bytes::from(chat_frame(
                &self.name,
                out.author,
                out.chat,
                id,
                server_time,
            ));
            self.in_flight
                .push((out.session, out.received, id, frame.clone()));
            messages.push(Stored {
                id,
                at_ms: server_time,
                frame,
            });
        }
        let myself = myself.clone();
        self.in_flight_since = Instant::now();
        self.streams.append(Append {
            room: self.key.clone(),
            messages,
            via_dispatcher: self.members.len() >= WORKER_QUEUE,
            done: Box::new(move |result| {
                // A room that died meanwhile misses nothing: the messages
                // are stored, and its successor's members see them in
                // their `welcome` history.
                let _ = myself.cast(RoomMsg::Committed(result));
            }),
        });
    }

    /// The batch in flight is committed (broadcast it) or failed (tell
    /// its senders); then the next batch goes. Returns how many messages
    /// were broadcast.
    fn committed(&mut self, myself: &ActorRef<RoomMsg>, result: Result<(), StoreError>) -> usize {
        let batch = std::mem::take(&mut self.in_flight);
        self.metrics
            .history
            .append_seconds
            .observe(self.in_flight_since.elapsed());
        let mut broadcast = 0;
        self.inbox.0.fetch_sub(batch.len(), Relaxed);
        match result {
            Ok(()) => {
                for (_, received, id, frame) in batch {
                    if let Some(stream) = self.stream.as_mut() {
                        stream.last_id = id;
                        self.stats.last_id.store(id, Relaxed);
                        stream.recent.push(id, frame.clone());
                    }
                    self.broadcast(myself, &frame, received);
                    broadcast += 1;
                }
            }
            Err(e) => {
                warn!(room = %self.name, error = %e, messages = batch.len(), "messages not stored; answering their senders `unavailable`");
                for (session, ..) in batch {
                    self.unavailable(session);
                }
                // Re-read the last id before numbering anything again.
                self.stream = None;
            }
        }
        if self.stream.is_some() {
            self.send_batch(myself);
        } else {
            self.fail_waiting();
        }
        if self.is_idle() {
            self.schedule_idle_check(myself);
        }
        broadcast
    }

    /// Storage is unreadable: everything waiting is answered `unavailable`.
    fn fail_waiting(&mut self) {
        let waiting = std::mem::take(&mut self.waiting);
        self.inbox.0.fetch_sub(waiting.len(), Relaxed);
        for out in waiting {
            self.unavailable(out.session);
        }
    }

    fn unavailable(&self, session: SessionId) {
        let Some(member) = self.members.get(&session) else {
            return;
        };
        let frame = ServerFrame::error(
            ErrorCode::Unavailable,
            "The message could not be stored, so it was not sent. Try again in a moment.",
        );
        if member.handle.offer(&Bytes::from(frame.to_json())).is_ok() {
            self.metrics.outbound_queue_depth.fetch_add(1, Relaxed);
            self.metrics.error(ErrorCode::Unavailable);
        }
    }

    /// Offers one encoded frame to every member. Members whose queue is
    /// full are removed and told they are slow consumers.
    fn broadcast(&mut self, myself: &ActorRef<RoomMsg>, bytes: &Bytes, received: Instant) {
        self.metrics.observed.latency.maybe_probe(bytes, received);
        let mut delivered = 0u64;
        let mut deepest = 0;
        let mut dropped: Vec<(SessionId, Undeliverable)> = Vec::new();
        for (id, member) in &self.members {
            match member.handle.offer_counted(bytes) {
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
                self.forget(id, member).kick(Kick::SlowConsumer);
            } else {
                self.forget(id, member);
            }
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
        let update = RoomUpdate {
            room: self.name.clone(),
            num_participants: u32::try_from(self.participants()).unwrap_or(u32::MAX),
            joined: joined.into_iter().map(|(_, n)| n).take(cap).collect(),
            left: self.presence.left.drain(..).take(cap).collect(),
            renamed: self.presence.renamed.drain(..).take(cap).collect(),
        };
        self.presence.last_flush = Some(Instant::now());
        self.announce(PresenceNote {
            joined: update.joined.clone(),
            left: update.left.clone(),
            renamed: update.renamed.clone(),
            ..PresenceNote::default()
        });
        let frame = ServerFrame::RoomUpdate(update).to_json();
        self.broadcast(myself, &Bytes::from(frame), Instant::now());
    }

    /// Everyone in the room: this node's members and (cluster mode) the
    /// other nodes'.
    fn participants(&self) -> usize {
        self.members.len()
            + self
                .remote
                .values()
                .map(|n| n.count as usize)
                .sum::<usize>()
    }

    /// Observer action: removes a member and tells its connection to close.
    fn kick(&mut self, myself: &ActorRef<RoomMsg>, session: SessionId) -> bool {
        let Some(member) = self.members.remove(&session) else {
            return false;
        };
        info!(room = %self.name, session, name = %member.name, "closed by an administrator");
        self.forget(session, member).kick(Kick::Admin);
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
                user_id: m.user_id.as_deref().map(str::to_owned),
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

/// A chat's frame, encoded once for every member (and the stream).
fn chat_frame(room: &str, author: Author, chat: ChatIn, id: u64, server_time: u64) -> String {
    ServerFrame::Chat(ChatMessage {
        id,
        room: room.to_owned(),
        author: author.name,
        user_id: author.user_id.as_deref().map(str::to_owned),
        text: chat.text,
        client_id: chat.client_id,
        sent_at: chat.sent_at,
        server_time,
        calc: chat.calc,
    })
    .to_json()
}

/// A `welcome` as parts: its own head, the shared `history` array, and the
/// closing brace. `history` is the struct's last field, so its encoding
/// with an empty history ends in `"history":[]}`, and the array goes where
/// the `[]` was.
fn welcome_frame(welcome: &Welcome, history: Bytes) -> Frame {
    let json = ServerFrame::Welcome(welcome.clone()).to_json();
    match json.strip_suffix("[]}") {
        Some(head) if welcome.history.is_empty() => Frame::Parts(
            vec![
                Bytes::from(head.to_owned()),
                history,
                Bytes::from_static(b"}"),
            ]
            .into_boxed_slice(),
        ),
        // Not the expected shape (cannot happen with these types): send
        // the welcome without history rather than a broken frame.
        _ => Frame::Whole(Bytes::from(json)),
    }
}
