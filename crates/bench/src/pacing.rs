//! Fixed-rate send schedules that do not drift.
//!
//! An aggregate rate `R` (messages per second) is shared by `S` senders:
//! sender `i` sends its `k`-th message at `start + (i + k·S) / R`. Every send
//! time is computed from `start`, never from the previous send, so a late
//! wake-up does not push the rest of the schedule back ("sleep drift"); a
//! sender that falls behind sends the overdue messages at once and is on time
//! again. Together the senders send `R × D` messages in `D` seconds, evenly
//! interleaved.

use std::time::Duration;

use tokio::time::Instant;

/// The send times of one sender, within `[start, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    end: Instant,
    /// Aggregate rate of all senders, messages per second.
    rate: f64,
    senders: u64,
    index: u64,
    /// At most this many sends (for one-shot schedules).
    limit: u64,
}

impl Schedule {
    /// Sender `index` of `senders` sharing `rate` messages per second.
    /// `None` if this sender has nothing to send.
    pub fn shared(
        start: Instant,
        end: Instant,
        rate: f64,
        senders: u64,
        index: u64,
    ) -> Option<Schedule> {
        (rate > 0.0 && rate.is_finite() && senders > 0 && index < senders).then_some(Schedule {
            start,
            end,
            rate,
            senders,
            index,
            limit: u64::MAX,
        })
    }

    /// A single send at `at` (if before `end`).
    pub fn once(at: Instant, end: Instant) -> Schedule {
        Schedule {
            start: at,
            end,
            rate: 1.0,
            senders: 1,
            index: 0,
            limit: 1,
        }
    }

    /// When the `k`-th send is due, or `None` once the schedule is over.
    pub fn at(&self, k: u64) -> Option<Instant> {
        if k >= self.limit {
            return None;
        }
        let slot = self.index as f64 + k as f64 * self.senders as f64;
        let t = self.start + Duration::from_secs_f64(slot / self.rate);
        (t < self.end).then_some(t)
    }

    /// How many sends this schedule makes in total.
    pub fn count(&self) -> u64 {
        let span = self.end.saturating_duration_since(self.start).as_secs_f64();
        let slots = span * self.rate;
        // Slots index + k·senders < slots  ⇔  k < (slots - index) / senders.
        let n = ((slots - self.index as f64) / self.senders as f64).ceil();
        let mut n = if n > 0.0 {
            (n as u64).min(self.limit)
        } else {
            0
        };
        // Floating point at the boundary: settle with `at`, the source of truth.
        while n > 0 && self.at(n - 1).is_none() {
            n -= 1;
        }
        while self.at(n).is_some() {
            n += 1;
        }
        n.min(self.limit)
    }
}

/// How many messages `senders` senders sharing `rate` per second send in
/// `duration` (what a phase should send if every send goes out).
pub fn total_sends(duration: Duration, rate: f64, senders: u64) -> u64 {
    let start = Instant::now();
    let end = start + duration;
    (0..senders)
        .filter_map(|i| Schedule::shared(start, end, rate, senders, i))
        .map(|s| s.count())
        .sum()
}

/// Walks a [`Schedule`]: which send is next and when it is due.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: Schedule,
    next: u64,
}

impl Pacer {
    pub fn new(schedule: Schedule) -> Pacer {
        Pacer { schedule, next: 0 }
    }

    /// When the next send is due, or `None` when the schedule is done.
    pub fn due(&self) -> Option<Instant> {
        self.schedule.at(self.next)
    }

    /// If the next send is due at `now`, takes it: returns its sequence
    /// number and how late it is.
    pub fn take_due(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let due = self.due()?;
        if due > now {
            return None;
        }
        let seq = self.next;
        self.next += 1;
        Some((seq, now - due))
    }

    /// Sleeps until the next send is due and takes it.
    pub async fn tick(&mut self) -> Option<(u64, Duration)> {
        let due = self.due()?;
        tokio::time::sleep_until(due).await;
        self.take_due(Instant::now().max(due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn senders_share_the_rate_without_drift() {
        let start = Instant::now();
        let end = start + Duration::from_secs(2);
        let (rate, senders) = (30.0, 4);
        let mut tasks = Vec::new();
        for i in 0..senders {
            let schedule = Schedule::shared(start, end, rate, senders, i).unwrap();
            tasks.push(tokio::spawn(async move {
                let mut pacer = Pacer::new(schedule);
                let mut times = Vec::new();
                while let Some((seq, late)) = pacer.tick().await {
                    assert_eq!(seq, times.len() as u64);
                    // Timers have millisecond resolution.
                    assert!(late < Duration::from_millis(1), "late by {late:?}");
                    times.push(Instant::now() - start);
                }
                assert_eq!(times.len() as u64, schedule.count());
                times
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        // 30 msgs/s for 2 s.
        assert_eq!(all.len(), 60);
        all.sort();
        for (k, t) in all.iter().enumerate() {
            let want = Duration::from_secs_f64(k as f64 / rate);
            let diff = t.abs_diff(want);
            assert!(
                diff < Duration::from_millis(1),
                "send {k} at {t:?}, want {want:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_sender_catches_up_instead_of_drifting() {
        let start = Instant::now();
        let end = start + Duration::from_secs(1);
        let mut pacer = Pacer::new(Schedule::shared(start, end, 10.0, 1, 0).unwrap());
        // Stall for 350 ms: sends 0..=3 are due, and all are taken at once.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let now = Instant::now();
        let mut late = Vec::new();
        while let Some((_, l)) = pacer.take_due(now) {
            late.push(l.as_millis());
        }
        assert_eq!(late, vec![350, 250, 150, 50]);
        // The next send is still at 400 ms, not 350 + 100.
        assert_eq!(pacer.due(), Some(start + Duration::from_millis(400)));
        let mut rest = 0;
        while pacer.tick().await.is_some() {
            rest += 1;
        }
        assert_eq!(rest, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn counts_match_and_edge_cases() {
        let start = Instant::now();
        let end = start + Duration::from_secs(30);
        let total: u64 = (0..10)
            .map(|i| Schedule::shared(start, end, 100.0, 10, i).unwrap().count())
            .sum();
        assert_eq!(total, 3000);
        assert_eq!(total_sends(Duration::from_secs(30), 100.0, 10), 3000);
        assert_eq!(total_sends(Duration::from_millis(1500), 7.0, 3), 11);
        assert_eq!(total_sends(Duration::from_secs(1), 0.0, 3), 0);
        assert!(Schedule::shared(start, end, 0.0, 10, 0).is_none());
        assert!(Schedule::shared(start, end, 5.0, 10, 10).is_none());
        let once = Schedule::once(start + Duration::from_millis(5), end);
        assert_eq!(once.count(), 1);
        assert_eq!(once.at(1), None);
        let late = Schedule::once(end, end);
        assert_eq!(late.count(), 0);
        // Fractional rates: 7 msgs/s over 3 senders for 1 s → 7 sends.
        let end1 = start + Duration::from_secs(1);
        let n: u64 = (0..3)
            .map(|i| Schedule::shared(start, end1, 7.0, 3, i).unwrap().count())
            .sum();
        assert_eq!(n, 7);
    }
}
