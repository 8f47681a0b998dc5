//! Full calculation results, kept for `GET /calc/{id}` while they fit.
//!
//! Bounded in bytes, oldest evicted first: a flood of big results costs a
//! fixed amount of memory, and a link that stops working says so (404).
//! Values are [`Bytes`], so serving one is a reference-count bump, and the
//! lock is held only for map operations, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use axum::body::Bytes;

#[derive(Debug)]
pub struct ResultStore {
    max_bytes: usize,
    inner: Mutex<Inner>,
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
        }
    }

    /// Keeps `value` under `id`, evicting the oldest values until it fits.
    /// A value larger than the whole store is not kept.
    pub fn insert(&self, id: String, value: Bytes) {
        if value.len() > self.max_bytes {
            return;
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

    /// Bytes held right now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |inner| inner.bytes)
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
