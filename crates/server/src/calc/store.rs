//! Full calculation results, kept for `GET /calc/{id}` while they fit.
//!
//! Bounded in bytes, oldest evicted first: a flood of big results costs a
//! fixed amount of memory, and a link that stops working says so (404).
//! Values are [`Bytes`], so serving one is a reference-count bump, and the
//! lock is held only for map operations, never across an await.
//!
//! Cluster mode: a calculation runs on the node that received it, but its
//! link must work on every node. Each value is also kept in Redis, under the
//! same byte budget (`--calc-store-bytes`, now for the whole cluster), oldest
//! evicted first by one script; a node that does not hold a value reads it
//! from there. Ids are unique across nodes: each node's scheduler numbers
//! from its own random start.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use redis::Script;
use redis::aio::ConnectionManager;
use tracing::warn;

/// The cluster's values: `HSET` of the value, its place in the eviction
/// order, the bytes in use; oldest values removed until the new one fits.
/// KEYS: values (hash), order (sorted set), bytes (string). ARGV: id,
/// value, budget, sequence number.
const KEEP: &str = r#"
local size = string.len(ARGV[2])
local budget = tonumber(ARGV[3])
if size > budget then return 0 end
local used = tonumber(redis.call('GET', KEYS[3]) or '0') + size - redis.call('HSTRLEN', KEYS[1], ARGV[1])
while used > budget do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest or oldest == ARGV[1] then break end
  used = used - redis.call('HSTRLEN', KEYS[1], oldest)
  redis.call('HDEL', KEYS[1], oldest)
  redis.call('ZREM', KEYS[2], oldest)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('SET', KEYS[3], used)
return 1
"#;

/// Redis keys of the cluster's results (one hash tag: one slot).
const VALUES: &str = "ac:{calc}:values";
const ORDER: &str = "ac:{calc}:order";
const BYTES: &str = "ac:{calc}:bytes";

pub struct ResultStore {
    max_bytes: usize,
    inner: Mutex<Inner>,
    shared: Option<Shared>,
}

/// Cluster mode's copy of the values in Redis.
struct Shared {
    conn: ConnectionManager,
    keep: Arc<Script>,
}

#[derive(Debug, Default)]
struct Inner {
    values: HashMap<String, Bytes>,
    /// Insertion order, for eviction.
    order: VecDeque<String>,
    bytes: usize,
}

impl ResultStore {
    pub fn new(max_bytes: usize) -> Self {
        ResultStore {
            max_bytes,
            inner: Mutex::new(Inner::default()),
            shared: None,
        }
    }

    /// Cluster mode: values are also kept in Redis for the other nodes.
    pub(crate) fn shared(max_bytes: usize, conn: ConnectionManager) -> Self {
        ResultStore {
            shared: Some(Shared {
                conn,
                keep: Arc::new(Script::new(KEEP)),
            }),
            ..ResultStore::new(max_bytes)
        }
    }

    /// Keeps `value` under `id`, evicting the oldest values until it fits.
    /// A value larger than the whole store is not kept.
    pub fn insert(&self, id: String, value: Bytes) {
        if value.len() > self.max_bytes {
            return;
        }
        if let Some(shared) = &self.shared {
            shared.keep(id.clone(), value.clone(), self.max_bytes);
        }
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while inner.bytes + value.len() > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(old) = inner.values.remove(&oldest) {
                inner.bytes -= old.len();
            }
        }
        inner.bytes += value.len();
        if let Some(old) = inner.values.insert(id.clone(), value) {
            inner.bytes -= old.len();
        } else {
            inner.order.push_back(id);
        }
    }

    pub fn get(&self, id: &str) -> Option<Bytes> {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.values.get(id).cloned()
    }

    /// The value, from this node or (cluster mode) from Redis.
    pub async fn get_anywhere(&self, id: &str) -> Option<Bytes> {
        if let Some(value) = self.get(id) {
            return Some(value);
        }
        let shared = self.shared.as_ref()?;
        let mut conn = shared.conn.clone();
        let value: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("HGET")
            .arg(VALUES)
            .arg(id)
            .query_async(&mut conn)
            .await;
        match value {
            Ok(value) => value.map(Bytes::from),
            Err(e) => {
                warn!(id, error = %e, "cannot read a calculation's value from Redis");
                None
            }
        }
    }

    /// Bytes held right now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.bytes)
    }
}

impl Shared {
    /// Copies a value to Redis without waiting; a failure only means other
    /// nodes answer 404 for it.
    fn keep(&self, id: String, value: Bytes, budget: usize) {
        let mut conn = self.conn.clone();
        let keep = self.keep.clone();
        tokio::spawn(async move {
            let kept: redis::RedisResult<i64> = keep
                .key(VALUES)
                .key(ORDER)
                .key(BYTES)
                .arg(&id)
                .arg(&value[..])
                .arg(budget)
                .arg(crate::clock::unix_millis())
                .invoke_async(&mut conn)
                .await;
            if let Err(e) = kept {
                warn!(id, error = %e, "cannot keep a calculation's value in Redis; other nodes answer 404 for it");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first_and_stays_within_bounds() {
        let store = ResultStore::new(10);
        store.insert("a".into(), Bytes::from_static(b"1234"));
        store.insert("b".into(), Bytes::from_static(b"5678"));
        store.insert("c".into(), Bytes::from_static(b"90"));
        assert_eq!(store.bytes(), 10);
        store.insert("d".into(), Bytes::from_static(b"xyz"));
        assert!(store.get("a").is_none(), "oldest evicted");
        assert_eq!(store.get("b").as_deref(), Some(&b"5678"[..]));
        assert_eq!(store.get("d").as_deref(), Some(&b"xyz"[..]));
        assert!(store.bytes() <= 10);
        store.insert("huge".into(), Bytes::from(vec![b'9'; 11]));
        assert!(store.get("huge").is_none());
    }
}
