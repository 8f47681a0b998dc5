//! Wall-clock time in microseconds, the unit of `sent_at`.
//!
//! Latency is measured as `now_us() - sent_at` on the receiving client. The
//! sender and every receiver run on the same machine (often in the same
//! process), so they share this clock; across machines the figure would
//! include clock offset.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now_us() / 1000
}

/// The local monotonic instant that corresponds to the wall-clock time
/// `unix_us`, so worker processes can start a phase at the same moment.
pub fn instant_at(unix_us: u64) -> Instant {
    let now = Instant::now();
    let wall = now_us();
    if unix_us >= wall {
        now + Duration::from_micros(unix_us - wall)
    } else {
        now.checked_sub(Duration::from_micros(wall - unix_us))
            .unwrap_or(now)
    }
}

/// CPU time (user + system) this process has used, in seconds, from
/// `/proc/self/stat`; `None` where that file does not exist. The load
/// generator shares the machine with the server, so its own cost is part
/// of every figure.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat)
}

/// `utime` and `stime` are fields 14 and 15 of `/proc/<pid>/stat`, counted
/// after the command name (field 2, in parentheses, which may hold spaces),
/// in clock ticks. Linux reports them in USER_HZ, 100 per second on every
/// architecture it supports (`sysconf(_SC_CLK_TCK)`).
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    const TICKS_PER_SEC: f64 = 100.0;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_time_from_proc_stat() {
        // Fields 3..=13 skipped, then utime 250 and stime 150 ticks.
        let stat = "4242 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0";
        assert_eq!(parse_cpu_seconds(stat), Some(4.0));
        assert_eq!(parse_cpu_seconds("garbage"), None);
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(process_cpu_seconds().is_some());
        }
    }
}
