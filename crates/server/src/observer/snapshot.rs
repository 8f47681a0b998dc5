//! The snapshot the observer page receives once a second, and the pure
//! parts of computing it (rates, the busiest rooms), kept apart from the
//! sampler so they can be tested without a server.
//!
//! The field names are the wire format read by `web/src/observer/snapshot.ts`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::process::Runtime;

/// Rooms listed one by one; the rest count only in the totals.
pub(crate) const MAX_ROOMS_SHOWN: usize = 100;
/// Members listed by the members query of one room.
pub(crate) const MAX_MEMBERS_LISTED: usize = 100;
/// Points of history kept: five minutes at one a second.
pub(crate) const HISTORY_POINTS: usize = 300;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    /// Server time of the sample, Unix milliseconds.
    pub at_ms: u64,
    pub uptime_secs: u64,
    /// What the previous sample cost the sampler task, in microseconds of
    /// wall time (the descriptor count on its blocking thread included):
    /// the observer measuring itself.
    pub sample_micros: u64,
    pub tree: Tree,
    pub rooms: Rooms,
    pub connections: Connections,
    pub calcs: Calcs,
    pub latency: LatencySummary,
    pub process: Process,
    /// This sample's point of the charts (also kept in the history).
    pub point: Point,
}

/// The supervision tree above the rooms and calculators (which are listed
/// in their own sections).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Tree {
    pub registry: ActorNode,
    pub scheduler: ActorNode,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ActorNode {
    pub up: bool,
    /// Restarts by the root supervisor since start.
    pub restarts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Rooms {
    /// Live room actors.
    pub live: usize,
    pub max_rooms: usize,
    /// The busiest rooms (at most [`MAX_ROOMS_SHOWN`]), busiest first.
    pub shown: Vec<RoomRow>,
    pub totals: RoomTotals,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct RoomRow {
    pub name: String,
    pub members: usize,
    pub messages_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub inbox: usize,
    pub deepest_queue: usize,
    pub presence_interval_ms: u64,
    pub last_id: u64,
    pub restarts: u64,
}

impl RoomRow {
    fn activity(&self) -> f64 {
        self.messages_per_sec + self.deliveries_per_sec
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct RoomTotals {
    pub members: usize,
    pub messages_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub deepest_inbox: usize,
    pub deepest_queue: usize,
    /// Room restarts since start (every room, including stopped ones).
    pub restarts: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Connections {
    pub open: i64,
    pub max_connections: usize,
    /// TCP connections still in their HTTP phase (the observer's own stream
    /// is one of them).
    pub pending: i64,
    pub opened_per_sec: f64,
    pub closed_per_sec: BTreeMap<&'static str, f64>,
    pub closed_total: BTreeMap<&'static str, u64>,
    pub errors_total: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Calcs {
    pub workers: usize,
    pub running: Vec<CalcRow>,
    pub queued: i64,
    pub queue_limit: usize,
    pub budget_used_bytes: i64,
    pub budget_limit_bytes: u64,
    pub results_total: BTreeMap<&'static str, u64>,
    /// The latest finished calculations, newest first.
    pub recent: Vec<RecentRow>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CalcRow {
    pub id: String,
    pub expr: String,
    pub elapsed_ms: u64,
    pub estimate_ms: u64,
    pub peak_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecentRow {
    pub id: String,
    pub expr: String,
    pub status: &'static str,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LatencySummary {
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub samples: u64,
    pub window_secs: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Process {
    pub rss_bytes: u64,
    /// Percent of one core over the last second.
    pub cpu_percent: f64,
    pub threads: u64,
    /// Counted every few seconds (see [`super::process::FDS_EVERY`]).
    pub open_fds: u64,
    pub runtime: Runtime,
}

/// One point of the five-minute charts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Point {
    pub at_ms: u64,
    pub connections: i64,
    pub messages_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub p99_us: Option<u64>,
    pub rss_bytes: u64,
    pub cpu_percent: f64,
}

/// One member, for the members query of a room (on demand, not per second).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct MemberRow {
    pub session: u64,
    pub name: String,
    /// The verified user id (`--auth`), `null` for a guest.
    pub user_id: Option<String>,
    /// Frames waiting in its outbound queue.
    pub queued: usize,
}

/// A counter's rate over `secs` seconds (0 if it went backwards or no time passed).
pub(crate) fn per_sec(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    round2(now.saturating_sub(before) as f64 / secs)
}

/// Two decimals are all a person reads; fewer digits, smaller frames.
pub(crate) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Totals over every room, and the `n` busiest (messages in plus deliveries
/// out per second, then members, then name), busiest first. O(rooms): a
/// partial selection, then a sort of the `n` kept.
pub(crate) fn busiest(
    mut rows: Vec<RoomRow>,
    n: usize,
    restarts: u64,
) -> (Vec<RoomRow>, RoomTotals) {
    let mut totals = RoomTotals {
        restarts,
        ..RoomTotals::default()
    };
    for r in &rows {
        totals.members += r.members;
        totals.messages_per_sec += r.messages_per_sec;
        totals.deliveries_per_sec += r.deliveries_per_sec;
        totals.deepest_inbox = totals.deepest_inbox.max(r.inbox);
        totals.deepest_queue = totals.deepest_queue.max(r.deepest_queue);
    }
    totals.messages_per_sec = round2(totals.messages_per_sec);
    totals.deliveries_per_sec = round2(totals.deliveries_per_sec);
    let order = |a: &RoomRow, b: &RoomRow| {
        b.activity()
            .total_cmp(&a.activity())
            .then(b.members.cmp(&a.members))
            .then_with(|| a.name.cmp(&b.name))
    };
    if rows.len() > n && n > 0 {
        rows.select_nth_unstable_by(n - 1, order);
    }
    rows.truncate(n);
    rows.sort_by(order);
    (rows, totals)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn row(name: String, members: usize, messages_per_sec: f64) -> RoomRow {
        RoomRow {
            name,
            members,
            messages_per_sec,
            deliveries_per_sec: messages_per_sec * members as f64,
            inbox: 0,
            deepest_queue: members % 7,
            presence_interval_ms: 100,
            last_id: 0,
            restarts: 0,
        }
    }

    #[test]
    fn the_busiest_hundred_are_shown_and_every_room_is_totalled() {
        let rows: Vec<RoomRow> = (0..250)
            .map(|i| RoomRow {
                deliveries_per_sec: 0.0,
                ..row(format!("r{i}"), i % 10 + 1, f64::from(i as u32))
            })
            .collect();
        let members: usize = rows.iter().map(|r| r.members).sum();
        let (shown, totals) = busiest(rows, MAX_ROOMS_SHOWN, 3);
        assert_eq!(shown.len(), MAX_ROOMS_SHOWN);
        assert_eq!(shown[0].name, "r249");
        assert_eq!(shown[99].name, "r150");
        assert_eq!(totals.members, members);
        assert_eq!(totals.restarts, 3);
        assert_eq!(totals.deepest_queue, 6);
        assert_eq!(totals.messages_per_sec, (0..250).sum::<u32>() as f64);
    }

    #[test]
    fn quiet_rooms_are_ordered_by_members_then_name() {
        let rows = vec![
            row("b".into(), 1, 0.0),
            row("a".into(), 1, 0.0),
            row("c".into(), 5, 0.0),
        ];
        let (shown, _) = busiest(rows, 2, 0);
        let names: Vec<&str> = shown.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["c", "a"]);
    }

    #[test]
    fn rates_never_go_negative() {
        assert_eq!(per_sec(10, 4, 2.0), 3.0);
        assert_eq!(per_sec(4, 10, 2.0), 0.0);
        assert_eq!(per_sec(4, 0, 0.0), 0.0);
    }

    proptest! {
        /// Whatever the rooms, the shown ones are at most `n`, sorted
        /// busiest first, and no hidden room is busier than a shown one.
        #[test]
        fn the_selection_is_bounded_and_exact(
            rooms in proptest::collection::vec((0usize..50, 0u32..1000), 0..300),
            n in 0usize..120,
        ) {
            let rows: Vec<RoomRow> = rooms
                .iter()
                .enumerate()
                .map(|(i, (m, rate))| row(format!("r{i}"), *m, f64::from(*rate)))
                .collect();
            let all = rows.clone();
            let (shown, totals) = busiest(rows, n, 0);
            prop_assert_eq!(shown.len(), all.len().min(n));
            prop_assert_eq!(totals.members, all.iter().map(|r| r.members).sum::<usize>());
            for w in shown.windows(2) {
                prop_assert!(w[0].activity() >= w[1].activity());
            }
            if let Some(last) = shown.last() {
                for r in all.iter().filter(|r| !shown.contains(r)) {
                    prop_assert!(r.activity() <= last.activity());
                }
            }
        }
    }
}
