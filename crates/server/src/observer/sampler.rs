//! The one task that samples the server once a second for every observer
//! page: it reads the atomics the actors keep, turns counters into rates,
//! keeps five minutes of chart points, and publishes the snapshot encoded
//! once, shared by every open stream.
//!
//! Cost per second: O(rooms) atomic loads (totals and the top-100
//! selection; rooms are bounded by `--max-rooms`), O(running calculations),
//! two small `/proc/self` reads, and every [`FDS_EVERY`] seconds a count of
//! open descriptors on a blocking thread. Nothing here is O(connections)
//! per second, and no actor is messaged: sampling never queues behind chat.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::ActorId;
use tokio::sync::watch;
use tracing::warn;

use super::figures::CloseReason;
use super::latency::{WINDOW_SECS, Window};
use super::process::{self, FDS_EVERY, Runtime};
use super::snapshot::{
    ActorNode, CalcRow, Calcs, Connections, HISTORY_POINTS, LatencySummary, MAX_ROOMS_SHOWN, Point,
    Process, RecentRow, RoomRow, Rooms, Snapshot, Tree, busiest, per_sec, round2,
};
use crate::calc::millis;
use crate::clock::unix_millis;
use crate::metrics::cpu_seconds_of;
use crate::server::AppState;
use crate::supervisor::TopLevel;

/// Where snapshots are published: the latest one, encoded, and the history.
pub(crate) struct Hub {
    latest: watch::Sender<Option<Arc<str>>>,
    history: Mutex<VecDeque<Point>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub {
            latest: watch::Sender::new(None),
            history: Mutex::new(VecDeque::with_capacity(HISTORY_POINTS)),
        }
    }
}

impl Hub {
    /// A new watcher: the chart history so far (JSON array of points) and
    /// the stream of snapshots (the latest one is marked unseen).
    pub(crate) fn subscribe(&self) -> (String, watch::Receiver<Option<Arc<str>>>) {
        let mut rx = self.latest.subscribe();
        rx.mark_changed();
        let history = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let json = serde_json::to_string(&*history).unwrap_or_else(|_| "[]".into());
        (json, rx)
    }

    fn publish(&self, snapshot: &Snapshot) {
        {
            let mut history = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if history.len() == HISTORY_POINTS {
                history.pop_front();
            }
            history.push_back(snapshot.point.clone());
        }
        // Encoded only while someone watches.
        if self.latest.receiver_count() == 0 {
            return;
        }
        match serde_json::to_string(snapshot) {
            Ok(json) => {
                self.latest.send_replace(Some(json.into()));
            }
            Err(e) => warn!(error = %e, "observer snapshot not encoded"),
        }
    }
}

/// Samples once a second until shutdown.
pub(crate) async fn run(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sampler = Sampler::new();
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        if sampler.ticks.is_multiple_of(FDS_EVERY) {
            sampler.open_fds = tokio::task::spawn_blocking(process::open_fds)
                .await
                .unwrap_or(0);
        }
        let snapshot = sampler.sample(&state);
        state.observer.publish(&snapshot);
        sampler.cost = started.elapsed();
    }
}

/// What the previous sample saw, for rates.
struct Sampler {
    started: Instant,
    ticks: u64,
    at: Instant,
    rooms: HashMap<ActorId, (u64, u64)>,
    accepted: u64,
    closed: [u64; CloseReason::ALL.len()],
    cpu: Option<f64>,
    window: Window,
    open_fds: u64,
    /// How long the previous sample took.
    cost: Duration,
}

impl Sampler {
    fn new() -> Self {
        let now = Instant::now();
        Sampler {
            started: now,
            ticks: 0,
            at: now,
            rooms: HashMap::new(),
            accepted: 0,
            closed: [0; CloseReason::ALL.len()],
            cpu: cpu_seconds_of("self"),
            window: Window::default(),
            open_fds: 0,
            cost: Duration::ZERO,
        }
    }

    fn sample(&mut self, state: &AppState) -> Snapshot {
        let now = Instant::now();
        let secs = now.duration_since(self.at).as_secs_f64();
        self.at = now;
        self.ticks += 1;
        let metrics = &state.metrics;
        let observed = &metrics.observed;

        let (rows, live) = self.rooms(state, secs);
        let (shown, totals) = busiest(rows, MAX_ROOMS_SHOWN, metrics.room_restarts.load(Relaxed));

        let accepted = metrics.connections_accepted.load(Relaxed);
        let opened_per_sec = per_sec(accepted, self.accepted, secs);
        self.accepted = accepted;
        let closed = observed.closed();
        let mut closed_per_sec = std::collections::BTreeMap::new();
        let mut closed_total = std::collections::BTreeMap::new();
        for (i, why) in CloseReason::ALL.iter().enumerate() {
            closed_per_sec.insert(why.as_str(), per_sec(closed[i], self.closed[i], secs));
            closed_total.insert(why.as_str(), closed[i]);
        }
        self.closed = closed;

        self.window.push(observed.latency.take_second());
        let p99_us = self.window.quantile(0.99).map(micros);
        let latency = LatencySummary {
            p50_us: self.window.quantile(0.5).map(micros),
            p99_us,
            samples: self.window.samples(),
            window_secs: WINDOW_SECS,
        };

        let (rss_bytes, threads) = process::status();
        let cpu = cpu_seconds_of("self");
        let cpu_percent = match (cpu, self.cpu) {
            (Some(now), Some(before)) if secs > 0.0 => round2((now - before) / secs * 100.0),
            _ => 0.0,
        };
        self.cpu = cpu;

        let board = observed.calcs.read();
        let calcs = Calcs {
            workers: state.config.calc_workers(),
            running: board
                .running
                .iter()
                .map(|c| CalcRow {
                    id: c.id.clone(),
                    expr: c.expr.clone(),
                    elapsed_ms: millis(now.saturating_duration_since(c.started)),
                    estimate_ms: millis(c.estimate),
                    peak_bytes: c.peak_bytes,
                })
                .collect(),
            queued: metrics.calc.queued.load(Relaxed),
            queue_limit: state.config.calc_queue,
            budget_used_bytes: metrics.calc.budget_in_use.load(Relaxed),
            budget_limit_bytes: state.config.calc_budget_bytes,
            results_total: metrics.calc.ended_counts().collect(),
            recent: board
                .recent
                .iter()
                .rev()
                .map(|c| RecentRow {
                    id: c.id.clone(),
                    expr: c.expr.clone(),
                    status: c.status,
                    elapsed_ms: millis(c.elapsed),
                })
                .collect(),
        };

        let connections = metrics.connections.load(Relaxed);
        let point = Point {
            at_ms: unix_millis(),
            connections,
            messages_per_sec: totals.messages_per_sec,
            deliveries_per_sec: totals.deliveries_per_sec,
            p99_us,
            rss_bytes,
            cpu_percent,
        };
        let node = |which: TopLevel, up: bool| ActorNode {
            up,
            restarts: metrics.actor_restarts_of(which),
        };
        Snapshot {
            at_ms: point.at_ms,
            uptime_secs: now.duration_since(self.started).as_secs(),
            sample_micros: micros(self.cost),
            tree: Tree {
                registry: node(TopLevel::Registry, state.actors.registry.get().is_some()),
                scheduler: node(TopLevel::Scheduler, state.actors.calc.get().is_some()),
            },
            rooms: Rooms {
                live,
                max_rooms: state.config.max_rooms,
                shown,
                totals,
            },
            connections: Connections {
                open: connections,
                max_connections: state.max_connections,
                pending: metrics.pending_connections.load(Relaxed),
                opened_per_sec,
                closed_per_sec,
                closed_total,
                errors_total: metrics.errors_by_code().collect(),
            },
            calcs,
            latency,
            process: Process {
                rss_bytes,
                cpu_percent,
                threads,
                open_fds: self.open_fds,
                runtime: Runtime::current(),
            },
            point,
        }
    }

    /// One row per live room, with rates since the previous sample.
    fn rooms(&mut self, state: &AppState, secs: f64) -> (Vec<RoomRow>, usize) {
        let book = state.metrics.observed.rooms.lock();
        let mut seen = HashMap::with_capacity(book.live.len());
        let rows = book
            .live
            .iter()
            .map(|(id, room)| {
                let s = &room.stats;
                let messages = s.messages_in.load(Relaxed);
                let deliveries = s.deliveries.load(Relaxed);
                let (m0, d0) = self.rooms.get(id).copied().unwrap_or((0, 0));
                seen.insert(*id, (messages, deliveries));
                RoomRow {
                    name: s.name.clone(),
                    members: s.members.load(Relaxed),
                    messages_per_sec: per_sec(messages, m0, secs),
                    deliveries_per_sec: per_sec(deliveries, d0, secs),
                    inbox: s.inbox.depth(),
                    deepest_queue: s.deepest_queue.load(Relaxed),
                    presence_interval_ms: s.presence_interval_ms.load(Relaxed),
                    last_id: s.last_id.load(Relaxed),
                    restarts: book.restarts.get(&s.name).copied().unwrap_or(0),
                }
            })
            .collect();
        let live = book.live.len();
        drop(book);
        self.rooms = seen;
        (rows, live)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::observer::snapshot::RoomTotals;

    fn snapshot(at_ms: u64) -> Snapshot {
        let node = ActorNode {
            up: true,
            restarts: 0,
        };
        let point = Point {
            at_ms,
            connections: 0,
            messages_per_sec: 0.0,
            deliveries_per_sec: 0.0,
            p99_us: None,
            rss_bytes: 0,
            cpu_percent: 0.0,
        };
        Snapshot {
            at_ms,
            uptime_secs: 0,
            sample_micros: 0,
            tree: Tree {
                registry: node,
                scheduler: node,
            },
            rooms: Rooms {
                live: 0,
                max_rooms: 1,
                shown: vec![],
                totals: RoomTotals::default(),
            },
            connections: Connections {
                open: 0,
                max_connections: 1,
                pending: 0,
                opened_per_sec: 0.0,
                closed_per_sec: Default::default(),
                closed_total: Default::default(),
                errors_total: Default::default(),
            },
            calcs: Calcs {
                workers: 1,
                running: vec![],
                queued: 0,
                queue_limit: 1,
                budget_used_bytes: 0,
                budget_limit_bytes: 1,
                results_total: Default::default(),
                recent: vec![],
            },
            latency: LatencySummary {
                p50_us: None,
                p99_us: None,
                samples: 0,
                window_secs: WINDOW_SECS,
            },
            process: Process {
                rss_bytes: 0,
                cpu_percent: 0.0,
                threads: 1,
                open_fds: 0,
                runtime: Runtime::default(),
            },
            point,
        }
    }

    #[test]
    fn the_hub_keeps_five_minutes_and_encodes_only_for_watchers() {
        let hub = Hub::default();
        hub.publish(&snapshot(1));
        assert!(hub.latest.borrow().is_none(), "nobody watches: not encoded");
        let (history, mut rx) = hub.subscribe();
        let points: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
        assert_eq!(points.len(), 1);
        for t in 2..=HISTORY_POINTS as u64 + 50 {
            hub.publish(&snapshot(t));
        }
        let latest = rx.borrow_and_update().clone().unwrap();
        let latest: serde_json::Value = serde_json::from_str(&latest).unwrap();
        assert_eq!(latest["at_ms"], HISTORY_POINTS as u64 + 50);
        let (history, _) = hub.subscribe();
        let points: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
        assert_eq!(points.len(), HISTORY_POINTS);
        assert_eq!(points[0]["at_ms"], 51);
    }
}
