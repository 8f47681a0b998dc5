//! The `memory` backend: a bounded ring of messages per room in this
//! process. Resume works across reconnects; a restart loses everything, and
//! every stream gets a new epoch, so resuming clients are told
//! `recovered: false` instead of being shown a history that is not there.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Append, Head, Page, Retention, RoomStreams, StoreError, Stored, new_epoch};
use crate::clock::unix_millis;
use crate::metrics::Metrics;

pub(crate) struct MemoryStreams {
    rooms: Mutex<HashMap<String, MemoryStream>>,
    /// Most messages per room: the memory backend's bound (`None` only when
    /// the operator asked for unlimited history).
    max_per_room: Option<u64>,
    metrics: Arc<Metrics>,
}

struct MemoryStream {
    epoch: String,
    last_id: u64,
    messages: VecDeque<Stored>,
}

impl MemoryStream {
    /// Index of the first message with id ≥ `id` (ids are contiguous).
    fn index_of(&self, id: u64) -> usize {
        let first = self.messages.front().map_or(self.last_id + 1, |m| m.id);
        usize::try_from(id.saturating_sub(first))
            .unwrap_or(usize::MAX)
            .min(self.messages.len())
    }
}

impl MemoryStreams {
    pub(crate) fn new(max_per_room: Option<u64>, metrics: Arc<Metrics>) -> Self {
        MemoryStreams {
            rooms: Mutex::new(HashMap::new()),
            max_per_room,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, MemoryStream>> {
        // Never held across code that can panic midway.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_room<T>(&self, room: &str, f: impl FnOnce(&mut MemoryStream) -> T) -> T {
        let mut rooms = self.lock();
        let stream = rooms
            .entry(room.to_owned())
            .or_insert_with(|| MemoryStream {
                epoch: new_epoch(),
                last_id: 0,
                messages: VecDeque::new(),
            });
        f(stream)
    }
}

impl RoomStreams for MemoryStreams {
    async fn head(&self, room: &str) -> Result<Head, StoreError> {
        Ok(self.with_room(room, |s| Head {
            epoch: s.epoch.clone(),
            last_id: s.last_id,
        }))
    }

    async fn latest(&self, room: &str, n: usize) -> Result<Vec<Stored>, StoreError> {
        Ok(self.with_room(room, |s| {
            let skip = s.messages.len().saturating_sub(n);
            s.messages.iter().skip(skip).cloned().collect()
        }))
    }

    async fn after(&self, room: &str, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError> {
        Ok(self.with_room(room, |s| {
            let start = s.index_of(after.saturating_add(1));
            s.messages.iter().skip(start).take(limit).cloned().collect()
        }))
    }

    async fn before(&self, room: &str, before: u64, limit: usize) -> Result<Page, StoreError> {
        Ok(self.with_room(room, |s| {
            let end = s.index_of(before);
            let start = end.saturating_sub(limit);
            Page {
                messages: s.messages.range(start..end).cloned().collect(),
                has_more: start > 0,
            }
        }))
    }

    fn append(&self, append: Append) {
        let count = append.messages.len() as u64;
        self.with_room(&append.room, |s| {
            for message in append.messages {
                s.last_id = message.id;
                s.messages.push_back(message);
            }
            if let Some(max) = self.max_per_room {
                let excess = (s.messages.len() as u64).saturating_sub(max);
                s.messages
                    .drain(..usize::try_from(excess).unwrap_or(usize::MAX));
            }
        });
        self.metrics.history.appends.fetch_add(count, Relaxed);
        (append.done)(Ok(()));
    }

    async fn trim(&self, retention: Retention) -> Result<u64, StoreError> {
        let Some(max_age) = retention.max_age else {
            return Ok(0); // the count bound is kept at every append
        };
        let cutoff =
            unix_millis().saturating_sub(u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX));
        let mut removed = 0;
        for stream in self.lock().values_mut() {
            while stream.messages.front().is_some_and(|m| m.at_ms < cutoff) {
                stream.messages.pop_front();
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bytes::Bytes;

    fn stored(id: u64, at_ms: u64) -> Stored {
        Stored {
            id,
            at_ms,
            frame: Bytes::from(format!("{{\"id\":{id}}}")),
        }
    }

    fn append(streams: &MemoryStreams, room: &str, ids: std::ops::RangeInclusive<u64>, at_ms: u64) {
        streams.append(Append {
            room: room.into(),
            messages: ids.map(|id| stored(id, at_ms)).collect(),
            done: Box::new(|r| assert_eq!(r, Ok(()))),
            via_dispatcher: false,
        });
    }

    fn ids(list: &[Stored]) -> Vec<u64> {
        list.iter().map(|m| m.id).collect()
    }

    #[tokio::test]
    async fn ranges_pages_and_the_count_bound() {
        let streams = MemoryStreams::new(Some(10), Arc::default());
        let head = streams.head("r").await.unwrap();
        assert_eq!(head.last_id, 0);
        append(&streams, "r", 1..=15, 1);
        // Only the newest 10 are kept; the last id is remembered.
        assert_eq!(
            streams.head("r").await.unwrap(),
            Head {
                epoch: head.epoch,
                last_id: 15
            }
        );
        assert_eq!(ids(&streams.latest("r", 3).await.unwrap()), [13, 14, 15]);
        assert_eq!(
            ids(&streams.after("r", 12, 100).await.unwrap()),
            [13, 14, 15]
        );
        assert_eq!(ids(&streams.after("r", 0, 2).await.unwrap()), [6, 7]);
        let page = streams.before("r", 9, 2).await.unwrap();
        assert_eq!((ids(&page.messages), page.has_more), (vec![7, 8], true));
        let page = streams.before("r", 9, 5).await.unwrap();
        assert_eq!((ids(&page.messages), page.has_more), (vec![6, 7, 8], false));
        let page = streams.before("r", u64::MAX, 2).await.unwrap();
        assert_eq!(ids(&page.messages), [14, 15]);
    }

    #[tokio::test]
    async fn age_trimming_removes_the_oldest_only() {
        let streams = MemoryStreams::new(None, Arc::default());
        let now = unix_millis();
        append(&streams, "r", 1..=3, now - 120_000);
        append(&streams, "r", 4..=5, now);
        let retention = Retention {
            max_per_room: None,
            max_age: Some(std::time::Duration::from_secs(60)),
        };
        assert_eq!(streams.trim(retention).await.unwrap(), 3);
        assert_eq!(ids(&streams.latest("r", 10).await.unwrap()), [4, 5]);
        assert_eq!(streams.head("r").await.unwrap().last_id, 5);
    }
}
