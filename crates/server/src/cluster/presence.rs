//! Presence across nodes: `num_participants`, `joined`/`left` and the
//! participant list cover the whole cluster.
//!
//! Each room actor still coalesces its own node's joins and leaves into one
//! update per presence interval (see `crate::room`). In cluster mode that
//! flush also goes to Redis as a [`PresenceNote`]: the node's member count
//! and names are stored in the room's presence hash (`ac:{r:ROOM}:pres`,
//! one field per node) and the change is published on the room's channel,
//! where the other nodes' rooms add it to what they tell their members.
//!
//! A node proves it is alive by a heartbeat (`ac:nodes`, a sorted set of
//! node name → last beat in ms, every third of `--node-ttl-secs`). A node
//! whose beat is older than the TTL is dead: the first live node to notice
//! takes a short lock and, for every room the dead node had members in
//! (`ac:node:NAME:rooms`), removes its presence field and publishes a note
//! with count 0 and its members' names as `left`. A node also clears its
//! own leftovers when it starts, in case it died and came back under the
//! same name.

use std::sync::Arc;
use std::time::Duration;

use actorchat_protocol::Rename;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::clock::unix_millis;
use crate::history::channel;

/// The sorted set of node heartbeats.
const NODES: &str = "ac:nodes";

/// Tries per announcement, and the pause between them.
const ANNOUNCE_ATTEMPTS: u32 = 5;
const ANNOUNCE_RETRY: Duration = Duration::from_millis(200);

/// One node's presence change in one room, as published on the channel
/// (`p <json>`) and, without the deltas, stored in the presence hash.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct PresenceNote {
    /// The node it is about (not always the sender: see the reaper).
    pub node: String,
    /// The node's members in the room now.
    pub count: u32,
    /// Names of the node's announced members (at most
    /// `MAX_PARTICIPANTS_LISTED`), for joiners' `welcome.participants`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renamed: Vec<Rename>,
}

impl PresenceNote {
    /// The channel payload.
    pub(crate) fn encode(&self) -> String {
        format!("p {}", serde_json::to_string(self).unwrap_or_default())
    }

    /// The node's stored state: count and names, no deltas.
    fn stored(&self) -> String {
        serde_json::to_string(&PresenceNote {
            node: self.node.clone(),
            count: self.count,
            names: self.names.clone(),
            ..PresenceNote::default()
        })
        .unwrap_or_default()
    }

    pub(crate) fn decode(payload: &[u8]) -> Option<PresenceNote> {
        serde_json::from_slice(payload.strip_prefix(b"p ")?).ok()
    }
}

fn pres_key(room: &str) -> String {
    format!("ac:{{r:{room}}}:pres")
}

fn rooms_key(node: &str) -> String {
    format!("ac:node:{node}:rooms")
}

/// Node-side presence: announcing this node's changes, reading the
/// others', and the heartbeat.
#[derive(Clone)]
pub(crate) struct Presence {
    conn: ConnectionManager,
    pub node: Arc<str>,
    ttl: Duration,
}

impl Presence {
    pub(crate) fn new(conn: ConnectionManager, node: Arc<str>, ttl: Duration) -> Presence {
        Presence { conn, node, ttl }
    }

    /// Stores and publishes this node's change in a room. Never waits: a
    /// lost announcement is repaired by the next one (each carries the
    /// node's full count) or, for a dead node, by the reaper.
    pub(crate) fn announce(&self, room: &str, note: PresenceNote) {
        let mut conn = self.conn.clone();
        let (pres, rooms, channel) = (pres_key(room), rooms_key(&self.node), channel(room));
        let room = room.to_owned();
        tokio::spawn(async move {
            let mut pipe = redis::pipe();
            if note.count == 0 {
                pipe.hdel(&pres, &note.node).ignore();
                pipe.srem(&rooms, &room).ignore();
            } else {
                pipe.hset(&pres, &note.node, note.stored()).ignore();
                pipe.sadd(&rooms, &room).ignore();
            }
            // Also a heartbeat: a node that announces is alive (and after
            // Redis lost everything, this restores it before the next beat).
            pipe.zadd(NODES, &note.node, unix_millis()).ignore();
            pipe.publish(&channel, note.encode()).ignore();
            // A few tries: right after Redis comes back, the command
            // connection may still be reconnecting.
            for attempt in 1..=ANNOUNCE_ATTEMPTS {
                match pipe.query_async::<()>(&mut conn).await {
                    Ok(()) => return,
                    Err(e) if attempt == ANNOUNCE_ATTEMPTS => {
                        warn!(room = %room, error = %e, "cannot announce presence to the cluster; the next change repairs it");
                    }
                    Err(_) => tokio::time::sleep(ANNOUNCE_RETRY).await,
                }
            }
        });
    }

    /// The other live nodes' presence in a room.
    pub(crate) async fn others(&self, room: &str) -> Vec<PresenceNote> {
        let mut conn = self.conn.clone();
        let since = unix_millis().saturating_sub(self.ttl_ms());
        type Fields = Vec<(String, String)>;
        let read: redis::RedisResult<(Fields, Vec<String>)> = redis::pipe()
            .hgetall(pres_key(room))
            .zrangebyscore(NODES, since, "+inf")
            .query_async(&mut conn)
            .await;
        match read {
            Ok((fields, live)) => fields
                .into_iter()
                .filter(|(node, _)| *node != *self.node && live.contains(node))
                .filter_map(|(_, stored)| serde_json::from_str(&stored).ok())
                .collect(),
            Err(e) => {
                warn!(room, error = %e, "cannot read the cluster's presence; counting this node only until the next update");
                Vec::new()
            }
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Beats every third of the TTL and reaps nodes that stopped beating;
    /// first clears this node's own leftovers from an earlier life.
    pub(crate) async fn run(self) {
        self.reap(&self.node).await;
        let mut tick = tokio::time::interval(self.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let mut conn = self.conn.clone();
            let now = unix_millis();
            let beat: redis::RedisResult<(Vec<String>,)> = redis::pipe()
                .zadd(NODES, &*self.node, now)
                .ignore()
                .zrangebyscore(NODES, "-inf", now.saturating_sub(self.ttl_ms()))
                .query_async(&mut conn)
                .await;
            match beat {
                Ok((dead,)) => {
                    for node in dead.iter().filter(|n| **n != *self.node) {
                        self.reap(node).await;
                    }
                }
                Err(e) => warn!(error = %e, "cannot send the node heartbeat to Redis"),
            }
        }
    }

    /// Removes a dead node's members from every room it was in and tells
    /// the rooms they left. One node does it (a lock with a TTL).
    async fn reap(&self, dead: &str) {
        let mut conn = self.conn.clone();
        let lock = format!("ac:node:{dead}:reaping");
        let taken: redis::RedisResult<Option<String>> = redis::cmd("SET")
            .arg(&lock)
            .arg(&*self.node)
            .arg("NX")
            .arg("EX")
            .arg(30)
            .query_async(&mut conn)
            .await;
        if !matches!(taken, Ok(Some(_))) {
            return;
        }
        let rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(rooms_key(dead))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        for room in &rooms {
            let stored: Option<String> = redis::cmd("HGET")
                .arg(pres_key(room))
                .arg(dead)
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            let left = stored
                .and_then(|s| serde_json::from_str::<PresenceNote>(&s).ok())
                .map(|n| n.names)
                .unwrap_or_default();
            let note = PresenceNote {
                node: dead.to_owned(),
                left,
                ..PresenceNote::default()
            };
            let done: redis::RedisResult<()> = redis::pipe()
                .hdel(pres_key(room), dead)
                .ignore()
                .publish(channel(room), note.encode())
                .ignore()
                .query_async(&mut conn)
                .await;
            if let Err(e) = done {
                warn!(node = dead, room = %room, error = %e, "cannot remove a dead node's members");
            }
        }
        let cleared: redis::RedisResult<()> = redis::pipe()
            .del(rooms_key(dead))
            .ignore()
            .zrem(NODES, dead)
            .ignore()
            .del(&lock)
            .ignore()
            .query_async(&mut conn)
            .await;
        if let Err(e) = cleared {
            warn!(node = dead, error = %e, "cannot clear a dead node's records");
        } else if dead != &*self.node || !rooms.is_empty() {
            info!(
                node = dead,
                rooms = rooms.len(),
                "removed a node's members from the cluster's presence"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_survives_the_channel() {
        let note = PresenceNote {
            node: "a:3000".into(),
            count: 2,
            names: vec!["Ada".into(), "Bob".into()],
            joined: vec!["Bob".into()],
            left: vec![],
            renamed: vec![Rename {
                from: "x".into(),
                to: "Ada".into(),
            }],
        };
        assert_eq!(PresenceNote::decode(note.encode().as_bytes()), Some(note));
        assert_eq!(PresenceNote::decode(b"c ep 1\n{}"), None);
        assert_eq!(PresenceNote::decode(b"p {"), None);
    }
}
