//! The node's pub/sub connection to Redis: how a message published by any
//! node reaches the rooms of this one.
//!
//! One connection per node, not one per room. A room subscribes to its
//! channel when it starts (before it reads its stream's head, so nothing
//! published in between is missed) and unsubscribes when it stops; the
//! bus routes each message to the room's actor and does nothing else, so
//! it never falls behind Redis (a slow subscriber is what Redis's
//! `client-output-buffer-limit pubsub` disconnects).
//!
//! When the connection drops, the bus reconnects with backoff,
//! resubscribes every room, and tells each room to catch up from its last
//! delivered id ([`RoomMsg::CatchUp`]): what was published meanwhile is
//! read from the stream, not lost. While it is down, `/readyz` says so.
//!
//! A connection can also go quiet without dropping (a failover that leaves
//! the TCP connection to a server that no longer gets the publishes, the
//! failure behind centrifugo#1189). So the bus probes it: every
//! [`PROBE_EVERY`] it publishes a nonce on its node's own probe channel, and
//! a probe not back within [`PROBE_TIMEOUT`] counts as a dropped connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use ractor::{ActorId, ActorRef};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::PresenceNote;
use crate::history::{StoreError, channel, room_of};
use crate::metrics::Metrics;
use crate::room::RoomMsg;

/// How long a room waits for Redis to confirm its subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the bus proves its subscription still receives.
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// A probe not back by then means the connection is stale.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A batch of one room's messages as published by some node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub epoch: String,
    pub first_id: u64,
    /// The `chat` frames, ids `first_id`, `first_id + 1`, …
    pub frames: Vec<Bytes>,
}

impl Delivery {
    /// Parses `c <epoch> <first_id>\n<frame>\n<frame>…` (frames are JSON,
    /// which never holds a raw newline).
    pub(crate) fn parse(payload: Bytes) -> Option<Delivery> {
        let newline = payload.iter().position(|b| *b == b'\n')?;
        let header = std::str::from_utf8(&payload[..newline]).ok()?;
        let mut words = header.split(' ');
        let (Some("c"), Some(epoch), Some(first), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return None;
        };
        let first_id = first.parse().ok()?;
        let epoch = epoch.to_owned();
        let body = payload.slice(newline + 1..);
        let mut frames = Vec::new();
        let mut start = 0;
        for (i, b) in body.iter().enumerate() {
            if *b == b'\n' {
                frames.push(body.slice(start..i));
                start = i + 1;
            }
        }
        frames.push(body.slice(start..));
        Some(Delivery {
            epoch,
            first_id,
            frames,
        })
    }
}

/// A cloneable handle on the node's pub/sub connection.
#[derive(Clone)]
pub(crate) struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    /// This node: its own presence notes come back on the channel and are
    /// not news to it.
    node: Arc<str>,
    /// The node's probe channel (see the module comment).
    probe_channel: String,
    /// For publishing probes (a subscribed connection cannot publish).
    conn: redis::aio::ConnectionManager,
    /// The actor each subscribed room's messages go to.
    routes: Mutex<HashMap<String, ActorRef<RoomMsg>>>,
    commands: mpsc::UnboundedSender<Command>,
    connected: AtomicBool,
    metrics: Arc<Metrics>,
}

enum Command {
    Subscribe {
        channel: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Unsubscribe {
        channel: String,
    },
}

impl Bus {
    /// Starts the bus task; it connects (and reconnects) on its own.
    pub(crate) fn start(
        client: redis::Client,
        conn: redis::aio::ConnectionManager,
        metrics: Arc<Metrics>,
        node: Arc<str>,
    ) -> Bus {
        let (commands, receiver) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            probe_channel: format!("ac:probe:{node}"),
            conn,
            node,
            routes: Mutex::new(HashMap::new()),
            commands,
            connected: AtomicBool::new(false),
            metrics,
        });
        tokio::spawn(run(client, inner.clone(), receiver));
        Bus { inner }
    }

    /// Routes `room`'s messages to `actor` and returns once Redis has
    /// confirmed the subscription.
    pub(crate) async fn subscribe(
        &self,
        room: &str,
        actor: ActorRef<RoomMsg>,
    ) -> Result<(), StoreError> {
        {
            let mut routes = self.inner.routes();
            routes.insert(room.to_owned(), actor);
            let n = routes.len() as i64;
            self.inner.metrics.cluster.subscribed.store(n, Relaxed);
        }
        let (reply, confirmed) = oneshot::channel();
        let sent = self.inner.commands.send(Command::Subscribe {
            channel: channel(room),
            reply,
        });
        let outcome = match tokio::time::timeout(SUBSCRIBE_TIMEOUT, confirmed).await {
            _ if sent.is_err() => Err("the pub/sub task has stopped".to_owned()),
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the pub/sub connection dropped".to_owned()),
            Err(_) => Err("Redis did not confirm the subscription in time".to_owned()),
        };
        outcome.map_err(|e| {
            let routes = self.inner.routes();
            if routes.contains_key(room) {
                self.inner.drop_route(routes, room);
            }
            StoreError::Read(format!("cannot subscribe to the room's channel: {e}"))
        })
    }

    /// Stops routing `room` to `actor` (a newer actor of the same room,
    /// after a restart, keeps its route).
    pub(crate) fn unsubscribe(&self, room: &str, actor: ActorId) {
        let routes = self.inner.routes();
        if routes.get(room).is_some_and(|a| a.get_id() == actor) {
            self.inner.drop_route(routes, room);
        }
    }

    /// A sentence for `/readyz` while the pub/sub connection is down.
    pub(crate) fn problem(&self) -> Option<String> {
        (!self.inner.connected.load(Relaxed)).then(|| {
            "the Redis pub/sub connection is down; messages from other nodes wait until it is back".to_owned()
        })
    }
}

impl Inner {
    fn routes(&self) -> MutexGuard<'_, HashMap<String, ActorRef<RoomMsg>>> {
        // Never held across an await or code that can panic midway.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes a route and unsubscribes its channel.
    fn drop_route(
        &self,
        mut routes: MutexGuard<'_, HashMap<String, ActorRef<RoomMsg>>>,
        room: &str,
    ) {
        routes.remove(room);
        self.metrics
            .cluster
            .subscribed
            .store(routes.len() as i64, Relaxed);
        drop(routes);
        let _ = self.commands.send(Command::Unsubscribe {
            channel: channel(room),
        });
    }

    fn route(&self, msg: &redis::Msg) {
        let Some(room) = room_of(msg.get_channel_name()) else {
            return;
        };
        let payload = msg.get_payload_bytes();
        let message = if payload.starts_with(b"p ") {
            match PresenceNote::decode(payload) {
                Some(note) if *note.node == *self.node => return,
                Some(note) => RoomMsg::Presence(note),
                None => {
                    warn!(
                        room,
                        "unreadable presence note on a room's channel; ignored"
                    );
                    return;
                }
            }
        } else {
            match Delivery::parse(Bytes::copy_from_slice(payload)) {
                Some(delivery) => RoomMsg::Delivered(delivery),
                None => {
                    warn!(
                        room,
                        "unreadable message on a room's channel; ignored (a gap check will fetch it from the stream)"
                    );
                    return;
                }
            }
        };
        let routes = self.routes();
        if let Some(actor) = routes.get(room)
            && actor.cast(message).is_err()
        {
            // The room stopped without unsubscribing (it panicked).
            self.drop_route(routes, room);
        }
    }
}

/// Connects, resubscribes, routes; on a drop, reconnects with backoff.
async fn run(
    client: redis::Client,
    inner: Arc<Inner>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut connections = 0u64;
    loop {
        let (sink, mut stream) = match connect(&client, &inner).await {
            Ok(split) => split,
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "cannot connect the Redis pub/sub connection");
                if !refuse_until(&mut commands, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        connections += 1;
        inner.connected.store(true, Relaxed);
        let rooms: Vec<ActorRef<RoomMsg>> = inner.routes().values().cloned().collect();
        if connections > 1 {
            inner.metrics.cluster.reconnects.fetch_add(1, Relaxed);
            info!(
                rooms = rooms.len(),
                "Redis pub/sub reconnected; rooms catch up from the stream"
            );
            for room in rooms {
                let _ = room.cast(RoomMsg::CatchUp);
            }
        }
        let mut probe = tokio::time::interval(PROBE_EVERY);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The nonce of the probe in flight and when it went out.
        let mut awaiting: Option<(u64, tokio::time::Instant)> = None;
        let mut nonce = 0u64;
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) if msg.get_channel_name() == inner.probe_channel => {
                        if awaiting.is_some_and(|(n, _)| msg.get_payload_bytes() == n.to_string().as_bytes()) {
                            awaiting = None;
                        }
                    }
                    Some(msg) => inner.route(&msg),
                    None => break,
                },
                _ = probe.tick() => {
                    if let Some((_, sent)) = awaiting {
                        if sent.elapsed() >= PROBE_TIMEOUT {
                            inner.metrics.cluster.stale_probes.fetch_add(1, Relaxed);
                            warn!("the Redis pub/sub connection stopped delivering (a probe did not come back); reconnecting");
                            break;
                        }
                        continue;
                    }
                    nonce += 1;
                    awaiting = Some((nonce, tokio::time::Instant::now()));
                    let mut conn = inner.conn.clone();
                    let channel = inner.probe_channel.clone();
                    tokio::spawn(async move {
                        let _: redis::RedisResult<()> = redis::cmd("PUBLISH")
                            .arg(&channel)
                            .arg(nonce)
                            .query_async(&mut conn)
                            .await;
                    });
                }
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Subscribe { channel, reply }) => {
                        let mut sink = sink.clone();
                        tokio::spawn(async move {
                            let result = sink.subscribe(&channel).await.map_err(|e| e.to_string());
                            let _ = reply.send(result);
                        });
                    }
                    // Spawned: a stale connection must not stop the loop.
                    Some(Command::Unsubscribe { channel }) => {
                        let mut sink = sink.clone();
                        tokio::spawn(async move {
                            let _ = sink.unsubscribe(&channel).await;
                        });
                    }
                },
            }
        }
        inner.connected.store(false, Relaxed);
        warn!("lost the Redis pub/sub connection; reconnecting");
    }
}

/// A fresh pub/sub connection, subscribed to every routed room.
async fn connect(
    client: &redis::Client,
    inner: &Inner,
) -> redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    let mut channels: Vec<String> = inner.routes().keys().map(|room| channel(room)).collect();
    channels.push(inner.probe_channel.clone());
    tokio::time::timeout(SUBSCRIBE_TIMEOUT, sink.subscribe(&channels))
        .await
        .map_err(|_| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "Redis did not confirm the subscriptions in time",
            ))
        })??;
    Ok((sink, stream))
}

/// Waits `delay`, answering subscriptions meanwhile with an error (there
/// is no connection to subscribe on; the room retries on its next join).
/// Returns false when the bus was dropped.
async fn refuse_until(commands: &mut mpsc::UnboundedReceiver<Command>, delay: Duration) -> bool {
    let deadline = tokio::time::sleep(delay);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => return true,
            command = commands.recv() => match command {
                None => return false,
                Some(Command::Subscribe { reply, .. }) => {
                    let _ = reply.send(Err("Redis is unreachable".to_owned()));
                }
                Some(Command::Unsubscribe { .. }) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_splits_into_its_frames() {
        let d = Delivery::parse(Bytes::from_static(b"c ep0ch 41\n{\"a\":1}\n{\"b\":2}"));
        assert_eq!(
            d,
            Some(Delivery {
                epoch: "ep0ch".into(),
                first_id: 41,
                frames: vec![
                    Bytes::from_static(b"{\"a\":1}"),
                    Bytes::from_static(b"{\"b\":2}")
                ],
            })
        );
    }

    #[test]
    fn malformed_deliveries_are_refused() {
        for bad in [
            &b""[..],
            b"c ep 1",
            b"x ep 1\n{}",
            b"c ep one\n{}",
            b"c ep 1 extra\n{}",
        ] {
            assert_eq!(
                Delivery::parse(Bytes::copy_from_slice(bad)),
                None,
                "{bad:?}"
            );
        }
    }
}
