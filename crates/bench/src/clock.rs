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
