//! A room's recent messages in memory: what a `welcome` shows and what a
//! quick reconnect resumes from, without a read from storage.
//!
//! Bounded by count and bytes (but always holding the `welcome` history),
//! and the `welcome` history is encoded once into a JSON array that every
//! joiner's `welcome` shares (see [`crate::mailbox::Frame`]) until the next
//! message arrives: a join storm costs one encoding, not one per joiner.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of recent frames a room keeps beyond its `welcome` history.
const MAX_BYTES: usize = 256 * 1024;

pub(crate) struct Recent {
    /// (id, `chat` frame), oldest first, ids contiguous.
    entries: VecDeque<(u64, Bytes)>,
    bytes: usize,
    /// Always kept: the `welcome` history's length.
    keep: usize,
    /// Never more: nothing older is resumed from memory anyway.
    max_entries: usize,
    /// The last `keep` frames as one JSON array, until the next push.
    welcome: Option<Bytes>,
}

impl Recent {
    pub(crate) fn new(keep: usize, max_entries: usize) -> Self {
        Recent {
            entries: VecDeque::new(),
            bytes: 0,
            keep,
            max_entries: max_entries.max(keep),
            welcome: None,
        }
    }

    /// Adds the next message (its id must follow the last one's).
    pub(crate) fn push(&mut self, id: u64, frame: Bytes) {
        if self.entries.back().is_some_and(|(last, _)| *last + 1 != id) {
            // Not contiguous (cannot happen in a room's own order); start
            // afresh rather than serve a gap.
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += frame.len();
        self.entries.push_back((id, frame));
        while self.entries.len() > self.keep
            && (self.entries.len() > self.max_entries || self.bytes > MAX_BYTES)
        {
            if let Some((_, old)) = self.entries.pop_front() {
                self.bytes -= old.len();
            }
        }
        self.welcome = None;
    }

    /// The newest `keep` frames as a JSON array, encoded once and shared.
    pub(crate) fn welcome_history(&mut self) -> Bytes {
        let keep = self.keep;
        let entries = &self.entries;
        self.welcome
            .get_or_insert_with(|| {
                let skip = entries.len().saturating_sub(keep);
                json_array(entries.iter().skip(skip).map(|(_, f)| f))
            })
            .clone()
    }

    /// Every frame with id > `after`, if memory still reaches back that far.
    pub(crate) fn after(&self, after: u64) -> Option<impl Iterator<Item = &Bytes> + Clone> {
        let first = self.entries.front().map_or(after + 1, |(id, _)| *id);
        (first <= after + 1).then(|| {
            self.entries
                .iter()
                .skip_while(move |(id, _)| *id <= after)
                .map(|(_, f)| f)
        })
    }
}

/// Joins pre-encoded JSON values into one JSON array.
pub(crate) fn json_array<'a>(frames: impl Iterator<Item = &'a Bytes> + Clone) -> Bytes {
    let len: usize = frames.clone().map(|f| f.len() + 1).sum();
    let mut out = BytesMut::with_capacity(len + 2);
    out.put_u8(b'[');
    for (i, frame) in frames.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(frame);
    }
    out.put_u8(b']');
    out.freeze()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn frame(id: u64, len: usize) -> Bytes {
        Bytes::from(format!("{{\"id\":{id},\"t\":\"{}\"}}", "x".repeat(len)))
    }

    #[test]
    fn welcome_history_is_the_newest_frames_encoded_once() {
        let mut recent = Recent::new(2, 10);
        assert_eq!(&recent.welcome_history()[..], b"[]");
        for id in 1..=3 {
            recent.push(id, frame(id, 0));
        }
        let a = recent.welcome_history();
        assert_eq!(&a[..], br#"[{"id":2,"t":""},{"id":3,"t":""}]"#);
        // Shared, not re-encoded, until the next message.
        assert_eq!(a.as_ptr(), recent.welcome_history().as_ptr());
        recent.push(4, frame(4, 0));
        assert_eq!(
            &recent.welcome_history()[..],
            br#"[{"id":3,"t":""},{"id":4,"t":""}]"#
        );
    }

    #[test]
    fn bounds_keep_the_welcome_history_and_resume_only_what_is_whole() {
        let mut recent = Recent::new(3, 5);
        for id in 1..=8 {
            recent.push(id, frame(id, 0));
        }
        // At most 5 kept: ids 4..=8.
        assert!(recent.after(2).is_none());
        let ids = |after| {
            recent.after(after).map(|it| {
                it.map(|f| {
                    serde_json::from_slice::<serde_json::Value>(f).unwrap()["id"]
                        .as_u64()
                        .unwrap()
                })
                .collect::<Vec<_>>()
            })
        };
        assert_eq!(ids(3), Some(vec![4, 5, 6, 7, 8]));
        assert_eq!(ids(7), Some(vec![8]));
        assert_eq!(ids(8), Some(vec![]));
        // Big frames: the byte bound applies, but never below `keep`.
        let mut recent = Recent::new(3, 1000);
        for id in 1..=10 {
            recent.push(id, frame(id, MAX_BYTES / 2));
        }
        assert_eq!(recent.entries.len(), 3);
    }
}
