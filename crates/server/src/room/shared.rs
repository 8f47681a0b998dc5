//! Cluster mode, the room's side: a room whose stream is shared through
//! Redis (see `crate::cluster`) does not number or broadcast its own
//! messages. It publishes them ([`RoomState::publish_batch`]) and delivers,
//! in id order, what comes back on its channel from every node
//! ([`RoomState::delivered`]), filling gaps from the stream
//! ([`RoomState::read_missed`]) or, when that is impossible, giving its
//! members a fresh `welcome` ([`RoomState::resync`]). Presence is
//! announced to the other nodes and heard from them the same way.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use actorchat_protocol::{MAX_PARTICIPANTS_LISTED, RoomUpdate, ServerFrame};
use bytes::Bytes;
use ractor::ActorRef;
use tracing::{error, warn};

use super::{Outgoing, RoomMsg, RoomState, chat_frame, welcome_frame};
use crate::cluster::{Delivery, PresenceNote};
use crate::history::{CHAT_PREFIX, Head, Publish, StoreError, Stored};
use crate::identity::SessionId;

/// How long a published batch may take to come back on the room's channel
/// before the room reads it from the stream instead.
const DELIVERY_GRACE: Duration = Duration::from_secs(1);

impl RoomState {
    /// Cluster mode: Redis numbers the batch. Each frame is encoded once,
    /// here, with id 0; the script splices the real id in after
    /// [`CHAT_PREFIX`], and the frame comes back to every node (this one
    /// too) on the room's channel.
    pub(super) fn publish_batch(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        take: usize,
        server_time: u64,
        floor: u64,
    ) {
        let mut tails = Vec::with_capacity(take);
        let batch: Vec<Outgoing> = self.waiting.drain(..take).collect();
        for out in batch {
            let frame = chat_frame(&self.name, out.author, out.chat, 0, server_time);
            let Some(tail) = frame
                .strip_prefix(CHAT_PREFIX)
                .and_then(|f| f.strip_prefix('0'))
            else {
                // Cannot happen (a unit test pins the encoding); refuse
                // the message rather than publish a broken frame.
                error!(room = %self.name, "a chat frame does not start as expected; not published");
                self.inbox.0.fetch_sub(1, Relaxed);
                self.unavailable(out.session);
                continue;
            };
            tails.push(Bytes::copy_from_slice(tail.as_bytes()));
            self.in_flight
                .push((out.session, out.received, 0, Bytes::new()));
        }
        if tails.is_empty() {
            return;
        }
        let myself = myself.clone();
        self.streams.publish(Publish {
            room: self.key.clone(),
            tails,
            floor,
            done: Box::new(move |result| {
                let _ = myself.cast(RoomMsg::Published(result));
            }),
        });
    }

    /// Cluster mode: the batch in flight was published (its messages come
    /// back on the channel) or failed (its senders are told); then the
    /// next batch goes.
    pub(super) fn published(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        result: Result<u64, StoreError>,
    ) {
        let batch = std::mem::take(&mut self.in_flight);
        self.inbox.0.fetch_sub(batch.len(), Relaxed);
        match result {
            Ok(first_id) => {
                let delivered = self.stream.as_ref().map_or(0, |s| s.last_id);
                let upto = first_id + batch.len() as u64 - 1;
                for (i, (_, received, ..)) in batch.into_iter().enumerate() {
                    let id = first_id + i as u64;
                    if id > delivered {
                        self.received_at.insert(id, received);
                    }
                }
                if upto > delivered {
                    // Normally back within a millisecond; if the channel
                    // lost them, the stream has them.
                    myself.send_after(DELIVERY_GRACE, move || RoomMsg::CheckDelivered { upto });
                }
            }
            Err(e) => {
                warn!(room = %self.name, error = %e, messages = batch.len(), "messages not published; answering their senders `unavailable`");
                for (session, ..) in batch {
                    self.unavailable(session);
                }
            }
        }
        self.send_batch(myself);
        if self.is_idle() {
            self.schedule_idle_check(myself);
        }
    }

    /// Cluster mode: a batch from the channel. Delivered in id order; a
    /// gap before it is read from the stream first.
    pub(super) async fn delivered(&mut self, myself: &ActorRef<RoomMsg>, delivery: Delivery) {
        let Some(stream) = self.stream.as_ref() else {
            return; // not loaded: the load's head read covers it
        };
        if delivery.epoch != stream.epoch {
            return self.resync(myself).await;
        }
        let last_id = stream.last_id;
        for (i, frame) in delivery.frames.into_iter().enumerate() {
            let id = delivery.first_id + i as u64;
            if id > last_id {
                self.ahead.insert(id, frame);
            }
        }
        self.deliver_ahead(myself).await;
    }

    /// Broadcasts the frames that continue the room's sequence; if a gap
    /// is left before the rest, reads it from the stream.
    pub(super) async fn deliver_ahead(&mut self, myself: &ActorRef<RoomMsg>) {
        loop {
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let id = stream.last_id + 1;
            let Some(frame) = self.ahead.remove(&id) else {
                break;
            };
            stream.last_id = id;
            stream.recent.push(id, frame.clone());
            self.stats.last_id.store(id, Relaxed);
            let received = self.received_at.remove(&id).unwrap_or_else(Instant::now);
            self.broadcast(myself, &frame, received);
        }
        if !self.ahead.is_empty() {
            self.read_missed(myself, false).await;
        }
    }

    /// Reads the messages after the last delivered one from the stream:
    /// those missing before [`RoomState::ahead`] (a gap) or, to catch up,
    /// whatever the stream has (`catch_up`, which also checks the epoch).
    /// Runs while the room goes on; one read at a time.
    pub(super) async fn read_missed(&mut self, myself: &ActorRef<RoomMsg>, catch_up: bool) {
        let Some(stream) = self.stream.as_ref() else {
            return;
        };
        if self.filling {
            return;
        }
        let after = stream.last_id;
        let missing = match self.ahead.first_key_value() {
            Some((first, _)) if !catch_up => first - after - 1,
            _ => self.settings.recover_max as u64 + 1,
        };
        if missing > self.settings.recover_max as u64 && !catch_up {
            // More than a resume would replay: start afresh instead.
            return self.resync(myself).await;
        }
        self.filling = true;
        self.metrics.cluster.catch_ups.fetch_add(1, Relaxed);
        let streams = self.streams.clone();
        let room = self.key.clone();
        let myself = myself.clone();
        let limit = usize::try_from(missing).unwrap_or(usize::MAX);
        tokio::spawn(async move {
            let head = match catch_up {
                true => match streams.head(&room, after).await {
                    Ok(head) => Some(head),
                    Err(e) => {
                        let _ = myself.cast(RoomMsg::Filled {
                            head: None,
                            read: Err(e),
                        });
                        return;
                    }
                },
                false => None,
            };
            let read = streams.after(&room, after, limit).await;
            let _ = myself.cast(RoomMsg::Filled { head, read });
        });
    }

    /// A read of missed messages is back: deliver what now continues the
    /// sequence. A hole the stream cannot fill (trimmed, expired) or a new
    /// epoch means the members' view cannot be completed: resync.
    pub(super) async fn filled(
        &mut self,
        myself: &ActorRef<RoomMsg>,
        head: Option<Head>,
        read: Result<Vec<Stored>, StoreError>,
    ) {
        self.filling = false;
        let Some(stream) = self.stream.as_ref() else {
            return;
        };
        if head.as_ref().is_some_and(|h| h.epoch != stream.epoch) {
            return self.resync(myself).await;
        }
        let messages = match read {
            Ok(messages) => messages,
            Err(e) => {
                warn!(room = %self.name, error = %e, "cannot read missed messages from the stream; retrying in a second");
                myself.send_after(Duration::from_secs(1), || RoomMsg::CatchUp);
                return;
            }
        };
        let last_id = stream.last_id;
        let too_many = messages.len() > self.settings.recover_max;
        for m in messages.into_iter().filter(|m| m.id > last_id) {
            self.ahead.entry(m.id).or_insert(m.frame);
        }
        let hole = !self.ahead.is_empty() && !self.ahead.contains_key(&(last_id + 1));
        if too_many || hole {
            return self.resync(myself).await;
        }
        self.deliver_ahead(myself).await;
    }

    /// Cluster mode: the members' sequence cannot be continued (the stream
    /// was lost and has a new epoch, or a gap is gone from it). Every
    /// member gets a fresh `welcome` with `recovered: false` and the
    /// stream's recent history, as a resume from a lost stream would.
    pub(super) async fn resync(&mut self, myself: &ActorRef<RoomMsg>) {
        self.metrics.cluster.resyncs.fetch_add(1, Relaxed);
        warn!(room = %self.name, members = self.members.len(), "the room's stream was lost or has a gap it no longer holds; members get a fresh welcome (recovered: false)");
        self.ahead.clear();
        self.received_at.clear();
        let floor = self.stream.take().map_or(0, |s| s.last_id);
        if !self.load_stream(myself, floor).await {
            return;
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let history = stream.recent.welcome_history();
        let sessions: Vec<SessionId> = self.members.keys().copied().collect();
        for session in sessions {
            let Some(member) = self.members.get(&session) else {
                continue;
            };
            let welcome = self.welcome(
                session,
                &member.name,
                member.user_id.as_deref(),
                Some(false),
                self.participants(),
            );
            if member
                .handle
                .offer_frame(welcome_frame(&welcome, history.clone()))
                .is_ok()
            {
                self.metrics.outbound_queue_depth.fetch_add(1, Relaxed);
            }
        }
    }

    /// Cluster mode: tells the other nodes this node's members in the room
    /// now (count and names) and the change (`note`'s deltas).
    pub(super) fn announce(&self, note: PresenceNote) {
        let Some(cluster) = self.streams.cluster() else {
            return;
        };
        cluster.presence.announce(
            &self.name,
            PresenceNote {
                node: cluster.presence.node.to_string(),
                count: u32::try_from(self.members.len()).unwrap_or(u32::MAX),
                names: self
                    .members
                    .values()
                    .filter(|m| m.announced)
                    .map(|m| m.name.clone())
                    .take(MAX_PARTICIPANTS_LISTED)
                    .collect(),
                ..note
            },
        );
    }

    /// Cluster mode: another node's members changed (or it died and the
    /// reaper reports them gone). Its change goes to this node's members
    /// at once: the other node has already coalesced it.
    pub(super) fn remote_presence(&mut self, myself: &ActorRef<RoomMsg>, note: PresenceNote) {
        let PresenceNote {
            node,
            count,
            names,
            joined,
            left,
            renamed,
        } = note;
        let before = self.participants();
        if count == 0 {
            self.remote.remove(&node);
        } else {
            self.remote.insert(
                node.clone(),
                PresenceNote {
                    node,
                    count,
                    names,
                    ..PresenceNote::default()
                },
            );
        }
        let quiet = joined.is_empty() && left.is_empty() && renamed.is_empty();
        if self.members.is_empty() || (quiet && self.participants() == before) {
            return;
        }
        let update = ServerFrame::RoomUpdate(RoomUpdate {
            room: self.name.clone(),
            num_participants: u32::try_from(self.participants()).unwrap_or(u32::MAX),
            joined,
            left,
            renamed,
        });
        self.broadcast(myself, &Bytes::from(update.to_json()), Instant::now());
    }
}
