//! Checking what a client received against the room's sequence of ids.
//!
//! A room's ids are contiguous (1, 2, 3, … with no id skipped), so the
//! room's full sequence from any point is known from its last id alone. A
//! client's arrivals (welcome history first, then live frames, across every
//! resume) must be exactly that sequence: every id once, in order.
//!
//! A client's record is split into **segments**. A segment starts with a
//! plain join or with a resume the server could not recover
//! (`recovered: false`): from then on the client is expected to have every
//! message after the segment's `floor` (the id just before its first
//! history message, or the welcome's `last_id` if the history was empty).
//! A recovered resume continues the current segment. A segment ends where
//! the next one starts (at the highest id it received) or, for the last
//! one, at the room's last id.

use std::collections::{HashMap, HashSet};

/// One message as a client received it: its id and a fingerprint of its
/// content (to catch two clients seeing different messages under one id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub id: u64,
    pub fingerprint: u64,
}

/// A stretch of one client's arrivals that must be gap-free.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    /// The client must have every id above this one (up to the segment's end).
    pub floor: u64,
    pub arrivals: Vec<Arrival>,
}

impl Segment {
    pub fn new(floor: u64) -> Segment {
        Segment {
            floor,
            arrivals: Vec::new(),
        }
    }

    /// The highest id received, or the floor if none.
    pub fn last_id(&self) -> u64 {
        self.arrivals
            .iter()
            .map(|a| a.id)
            .max()
            .unwrap_or(self.floor)
    }
}

/// What is wrong with one client's (or all clients') arrivals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Findings {
    /// Ids the client should have received and never did.
    pub missing: u64,
    /// Arrivals of an id the client already had.
    pub duplicates: u64,
    /// Arrivals of a new id lower than one already received.
    pub reordered: u64,
    /// Arrivals of an id the room does not have (above its last id, or not
    /// above the segment's floor).
    pub out_of_range: u64,
}

impl Findings {
    pub fn is_clean(&self) -> bool {
        *self == Findings::default()
    }

    pub fn add(&mut self, o: &Findings) {
        self.missing += o.missing;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.out_of_range += o.out_of_range;
    }
}

/// Checks one client's segments against a room whose newest id is
/// `room_last`.
pub fn check(segments: &[Segment], room_last: u64) -> Findings {
    let mut f = Findings::default();
    for (i, segment) in segments.iter().enumerate() {
        let end = if i + 1 == segments.len() {
            room_last
        } else {
            segment.last_id().min(room_last)
        };
        let floor = segment.floor;
        let mut seen: HashSet<u64> = HashSet::with_capacity(segment.arrivals.len());
        let mut highest = floor;
        for a in &segment.arrivals {
            if a.id <= floor || a.id > end {
                f.out_of_range += 1;
                continue;
            }
            if !seen.insert(a.id) {
                f.duplicates += 1;
                continue;
            }
            if a.id < highest {
                f.reordered += 1;
            }
            highest = highest.max(a.id);
        }
        // Every id in (floor, end] is expected once; `seen` holds only those.
        f.missing += end.saturating_sub(floor) - seen.len() as u64;
    }
    f
}

/// Ids that different clients received with different content.
pub fn conflicting_ids<'a>(clients: impl IntoIterator<Item = &'a [Segment]>) -> u64 {
    let mut content: HashMap<u64, u64> = HashMap::new();
    let mut conflicts: HashMap<u64, ()> = HashMap::new();
    for segments in clients {
        for a in segments.iter().flat_map(|s| &s.arrivals) {
            match content.get(&a.id) {
                Some(&f) if f != a.fingerprint => {
                    conflicts.insert(a.id, ());
                }
                Some(_) => {}
                None => {
                    content.insert(a.id, a.fingerprint);
                }
            }
        }
    }
    conflicts.len() as u64
}

/// A stable 64-bit fingerprint of a message's identifying fields (FNV-1a:
/// the same in every process and run).
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seg(floor: u64, ids: &[u64]) -> Segment {
        Segment {
            floor,
            arrivals: ids
                .iter()
                .map(|&id| Arrival {
                    id,
                    fingerprint: id * 7,
                })
                .collect(),
        }
    }

    #[test]
    fn an_exact_sequence_is_clean() {
        assert!(check(&[seg(0, &[1, 2, 3, 4])], 4).is_clean());
        // Joined when the room was at 10 (history 8..=10), then live.
        assert!(check(&[seg(7, &[8, 9, 10, 11, 12])], 12).is_clean());
        // Nothing received and nothing sent since the join.
        assert!(check(&[seg(5, &[])], 5).is_clean());
    }

    #[test]
    fn gaps_duplicates_and_reorderings_are_counted() {
        let f = check(&[seg(0, &[1, 2, 4, 5])], 6);
        assert_eq!((f.missing, f.duplicates, f.reordered), (2, 0, 0));
        let f = check(&[seg(0, &[1, 2, 2, 3])], 3);
        assert_eq!((f.missing, f.duplicates, f.reordered), (0, 1, 0));
        let f = check(&[seg(0, &[1, 3, 2, 4])], 4);
        assert_eq!((f.missing, f.duplicates, f.reordered), (0, 0, 1));
        let f = check(&[seg(3, &[3, 4, 9])], 5);
        assert_eq!((f.out_of_range, f.missing), (2, 1));
    }

    #[test]
    fn an_unrecovered_resume_starts_a_new_segment() {
        // Received 1..=3, dropped; the server could not recover and sent
        // the latest history 20..=22; then live 23, 24.
        let segments = [seg(0, &[1, 2, 3]), seg(19, &[20, 21, 22, 23, 24])];
        assert!(check(&segments, 24).is_clean());
        // The first segment ends at its own last id: nothing after 3 is
        // expected in it, but 1..=3 must all be there.
        let segments = [seg(0, &[1, 3]), seg(19, &[20, 21])];
        assert_eq!(check(&segments, 21).missing, 1);
    }

    #[test]
    fn conflicting_content_is_found() {
        let a = [seg(0, &[1, 2, 3])];
        let mut b = [seg(0, &[1, 2, 3])];
        assert_eq!(conflicting_ids([&a[..], &b[..]]), 0);
        b[0].arrivals[1].fingerprint = 99;
        assert_eq!(conflicting_ids([&a[..], &b[..]]), 1);
    }

    #[test]
    fn fingerprints_separate_fields() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["x"]), fingerprint(&["x"]));
    }

    proptest! {
        /// Whatever a client received, the counts account for every arrival
        /// and every expected id exactly once.
        #[test]
        fn counts_add_up(ids in proptest::collection::vec(1u64..60, 0..120), last in 0u64..60) {
            let s = [seg(0, &ids)];
            let f = check(&s, last);
            let in_range: std::collections::BTreeSet<u64> =
                ids.iter().copied().filter(|&id| id <= last).collect();
            prop_assert_eq!(f.missing, last - in_range.len() as u64);
            prop_assert_eq!(f.out_of_range, ids.iter().filter(|&&id| id > last).count() as u64);
            let distinct = in_range.len() as u64;
            prop_assert_eq!(f.duplicates, ids.len() as u64 - f.out_of_range - distinct);
            prop_assert!(f.reordered <= distinct);
            // A sorted, de-duplicated, complete sequence is clean.
            let exact: Vec<u64> = (1..=last).collect();
            prop_assert!(check(&[seg(0, &exact)], last).is_clean());
        }
    }
}
