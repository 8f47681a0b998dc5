//! The `redis` backend (cluster mode): every node reads and appends the
//! same streams, kept in Redis, so any node serves any room's history and
//! resume, and a room's order is one order across the cluster.
//!
//! Keys of a room share one hash tag (`{r:<room>}`), so a room lives in one
//! slot and the design also fits a Redis Cluster:
//! - `ac:{r:ROOM}:meta`, a hash: `e` (the epoch) and `t` (the newest id);
//! - `ac:{r:ROOM}:log`, a stream: entry `<id>-0`, field `f` = the `chat`
//!   frame exactly as broadcast;
//! - `ac:{r:ROOM}`, the room's pub/sub channel (see `crate::cluster::bus`).
//!
//! Publishing is one Lua script, so it is one atomic step in Redis: take
//! the next ids, append the frames to the stream (trimmed to
//! `--redis-history-per-room`), publish them on the channel, and refresh
//! both keys' TTL (`--redis-history-ttl-secs`, counted from the room's last
//! message). Two nodes publishing into one room are serialised by Redis,
//! so every node receives the room's messages in one order, with no gaps
//! it cannot fill from the stream.
//!
//! Redis keeps everything in memory: a stream is a bounded cache, named by
//! its epoch. When Redis loses it (restarted without persistence, or the
//! TTL passed) the next publish or read creates a new epoch; a resume from
//! the old one answers `recovered: false`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Head, Health, Page, Retention, StoreError, Stored, new_epoch};
use crate::cluster::{Cluster, ClusterConfig};
use crate::metrics::Metrics;

/// How often a failing node pings Redis to learn that it is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// A chat frame starts with these bytes, then its id, then its tail: the
/// script splices in the id Redis assigned, so a frame is still encoded
/// once, by the node that received the chat.
pub(crate) const CHAT_PREFIX: &str = "{\"type\":\"chat\",\"id\":";

/// Appends frames and publishes them; see the module comment. Returns the
/// first frame's id.
///
/// KEYS: meta, log. ARGV: new epoch (used only if the stream is new or
/// lost its newest messages), floor (the newest id the caller has
/// delivered: a recreated stream continues after it, so an id is never
/// given to two messages), max length, TTL seconds, channel, then one
/// frame tail per message.
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
local top = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local floor = tonumber(ARGV[2])
if not epoch then
  epoch = ARGV[1]
  top = floor
  redis.call('DEL', KEYS[2])
elseif top < floor then
  -- The stream lost its newest messages (Redis restarted from an older
  -- snapshot or AOF): it is another stream now, continuing after the
  -- newest id anyone was shown.
  epoch = ARGV[1]
  top = floor
end
local first = top + 1
local frames = {}
for i = 6, #ARGV do
  top = top + 1
  local id = string.format('%d', top)
  local frame = '{"type":"chat","id":' .. id .. ARGV[i]
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], id .. '-0', 'f', frame)
  frames[#frames + 1] = frame
end
redis.call('HSET', KEYS[1], 'e', epoch, 't', string.format('%d', top))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], 'c ' .. epoch .. ' ' .. string.format('%d', first) .. '\n' .. table.concat(frames, '\n'))
return first
"#;

/// The stream's epoch and newest id, creating an empty stream (with a new
/// epoch, continuing after the floor) if there is none, and giving a new
/// epoch to one that lost messages below the floor. KEYS: meta, log. ARGV:
/// new epoch, floor, TTL seconds.
const HEAD: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
local top = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
if not epoch then
  redis.call('DEL', KEYS[2])
end
if not epoch or top < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'e', ARGV[1], 't', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return {ARGV[1], ARGV[2]}
end
return {epoch, string.format('%d', top)}
"#;

/// The key names of one room.
pub(crate) struct Keys {
    pub meta: String,
    pub log: String,
    pub channel: String,
}

impl Keys {
    pub(crate) fn of(room: &str) -> Keys {
        Keys {
            meta: format!("ac:{{r:{room}}}:meta"),
            log: format!("ac:{{r:{room}}}:log"),
            channel: channel(room),
        }
    }
}

/// The pub/sub channel of a room.
pub(crate) fn channel(room: &str) -> String {
    format!("ac:{{r:{room}}}")
}

/// The room a channel belongs to.
pub(crate) fn room_of(channel: &str) -> Option<&str> {
    channel.strip_prefix("ac:{r:")?.strip_suffix('}')
}

/// A batch for [`RedisStreams::publish`]: the ids come from Redis.
pub(crate) struct Publish {
    pub room: Arc<str>,
    /// Each message's `chat` frame after its id (see [`CHAT_PREFIX`]).
    pub tails: Vec<Bytes>,
    /// The newest id the room has delivered.
    pub floor: u64,
    /// Called once with the batch's first id, or the error (then nothing
    /// of it was stored or published).
    pub done: Box<dyn FnOnce(Result<u64, StoreError>) + Send>,
}

pub(crate) struct RedisStreams {
    conn: ConnectionManager,
    /// Shared with every publish task (a script holds its source).
    publish: Arc<Script>,
    head: Script,
    max_len: u64,
    ttl_secs: u64,
    cluster: Cluster,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// Whether a task is pinging Redis after a failed publish.
    probing: Arc<AtomicBool>,
}

impl RedisStreams {
    pub(crate) fn new(
        conn: ConnectionManager,
        cluster: Cluster,
        config: &ClusterConfig,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> RedisStreams {
        RedisStreams {
            conn,
            publish: Arc::new(Script::new(PUBLISH)),
            head: Script::new(HEAD),
            max_len: config.redis_history_per_room,
            ttl_secs: config.redis_history_ttl_secs,
            cluster,
            metrics,
            health,
            probing: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Times one round trip for the Redis latency histogram.
    async fn timed<T>(
        &self,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        let started = Instant::now();
        let result = op.await;
        self.metrics
            .cluster
            .redis_seconds
            .observe(started.elapsed());
        result
    }

    pub(crate) async fn head(&self, room: &str, floor: u64) -> Result<Head, StoreError> {
        let keys = Keys::of(room);
        let mut conn = self.conn.clone();
        let (epoch, last_id): (String, u64) = self
            .timed(
                self.head
                    .key(&keys.meta)
                    .key(&keys.log)
                    .arg(new_epoch())
                    .arg(floor)
                    .arg(self.ttl_secs)
                    .invoke_async(&mut conn),
            )
            .await
            .map_err(read_error)?;
        Ok(Head { epoch, last_id })
    }

    pub(crate) async fn latest(&self, room: &str, n: usize) -> Result<Vec<Stored>, StoreError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut rows = self.range(room, "XREVRANGE", "+", "-", n).await?;
        rows.reverse();
        Ok(rows)
    }

    pub(crate) async fn after(
        &self,
        room: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        if limit == 0 || after == u64::MAX {
            return Ok(Vec::new());
        }
        let start = format!("{}-0", after + 1);
        self.range(room, "XRANGE", &start, "+", limit).await
    }

    pub(crate) async fn before(
        &self,
        room: &str,
        before: u64,
        limit: usize,
    ) -> Result<Page, StoreError> {
        if limit == 0 || before <= 1 {
            return Ok(Page {
                messages: Vec::new(),
                has_more: false,
            });
        }
        let end = format!("{}-0", before - 1);
        let mut messages = self.range(room, "XREVRANGE", &end, "-", limit + 1).await?;
        let has_more = messages.len() > limit;
        messages.truncate(limit);
        messages.reverse();
        Ok(Page { messages, has_more })
    }

    /// Streams are trimmed as they grow (`MAXLEN`) and expire as a whole
    /// (TTL): there is nothing to do in the background.
    pub(crate) async fn trim(&self, _retention: Retention) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// Runs the publish script off the room's task; the room never waits
    /// for Redis.
    pub(crate) fn publish(&self, publish: Publish) {
        let script = self.publish.clone();
        let mut conn = self.conn.clone();
        let metrics = self.metrics.clone();
        let health = self.health.clone();
        let probing = self.probing.clone();
        let (max_len, ttl) = (self.max_len, self.ttl_secs);
        tokio::spawn(async move {
            let Publish {
                room,
                tails,
                floor,
                done,
            } = publish;
            let keys = Keys::of(&room);
            let mut invocation = script.key(&keys.meta);
            invocation
                .key(&keys.log)
                .arg(new_epoch())
                .arg(floor)
                .arg(max_len)
                .arg(ttl)
                .arg(&keys.channel);
            for tail in &tails {
                invocation.arg(&tail[..]);
            }
            let started = Instant::now();
            let result = invocation
                .invoke_async::<u64>(&mut conn)
                .await
                .map_err(|e| StoreError::Write(format!("Redis: {e}")));
            let took = started.elapsed();
            metrics.cluster.redis_seconds.observe(took);
            let history = &metrics.history;
            history.commit_seconds.observe(took);
            health.record(&result.as_ref().map(|_| ()).map_err(StoreError::clone));
            if result.is_ok() {
                history.appends.fetch_add(tails.len() as u64, Relaxed);
                history.commit_messages.observe(tails.len() as u64);
            } else {
                history.write_errors.fetch_add(1, Relaxed);
                metrics.cluster.publish_errors.fetch_add(1, Relaxed);
                if !probing.swap(true, Relaxed) {
                    tokio::spawn(probe_until_healthy(conn, health, probing));
                }
            }
            done(result);
        });
    }

    /// `XRANGE`/`XREVRANGE` of a room's stream, as stored messages.
    async fn range(
        &self,
        room: &str,
        command: &str,
        from: &str,
        to: &str,
        count: usize,
    ) -> Result<Vec<Stored>, StoreError> {
        let keys = Keys::of(room);
        let mut conn = self.conn.clone();
        let rows: Vec<(String, Vec<Vec<u8>>)> = self
            .timed(
                redis::cmd(command)
                    .arg(&keys.log)
                    .arg(from)
                    .arg(to)
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn),
            )
            .await
            .map_err(read_error)?;
        rows.into_iter()
            .map(|(id, fields)| {
                let id = entry_id(&id)
                    .ok_or_else(|| StoreError::Read(format!("unexpected stream entry id {id}")))?;
                let frame = fields
                    .into_iter()
                    .nth(1)
                    .ok_or_else(|| StoreError::Read(format!("stream entry {id} has no frame")))?;
                Ok(Stored {
                    id,
                    at_ms: 0,
                    frame: Bytes::from(frame),
                })
            })
            .collect()
    }
}

/// After a failed publish, pings Redis until it answers, so that `/readyz`
/// turns ready again without waiting for the next chat to succeed.
async fn probe_until_healthy(
    mut conn: ConnectionManager,
    health: Arc<Health>,
    probing: Arc<AtomicBool>,
) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
        if pong.is_ok() {
            health.record(&Ok(()));
            break;
        }
    }
    probing.store(false, Relaxed);
}

fn read_error(e: redis::RedisError) -> StoreError {
    StoreError::Read(format!("Redis: {e}"))
}

/// The message id of a stream entry id `<id>-0`.
fn entry_id(id: &str) -> Option<u64> {
    id.strip_suffix("-0")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actorchat_protocol::{ChatMessage, ServerFrame};

    #[test]
    fn a_chat_frame_starts_with_the_prefix_the_script_splices_after() {
        let frame = ServerFrame::Chat(ChatMessage {
            id: 0,
            room: "r".into(),
            author: "Ada".into(),
            user_id: None,
            text: "hi".into(),
            client_id: None,
            sent_at: None,
            server_time: 1,
            calc: None,
        })
        .to_json();
        assert!(frame.starts_with(&format!("{CHAT_PREFIX}0,")), "{frame}");
    }

    #[test]
    fn channels_name_their_room() {
        let keys = Keys::of("team-1");
        assert_eq!(keys.channel, "ac:{r:team-1}");
        assert_eq!(keys.meta, "ac:{r:team-1}:meta");
        assert_eq!(room_of(&keys.channel), Some("team-1"));
        assert_eq!(room_of("other"), None);
        assert_eq!(entry_id("42-0"), Some(42));
        assert_eq!(entry_id("42-1"), None);
    }
}
