//! Per-connection token bucket for inbound frames.
//!
//! Checked once a WebSocket message has been read (and its UTF-8 checked)
//! but before its JSON is parsed, so a flood costs the server as little as
//! it can. A second bucket per connection limits `join` frames alone, since
//! each may create a room and passes through the one registry actor. Time is passed in, which keeps the bucket a plain
//! value that tests drive without sleeping.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket: a new connection may burst right away.
    pub fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate_per_sec: f64::from(rate_per_sec),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token, for a helpful error message.
    pub fn wait(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate_per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate_per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(20, 40, t0);
        assert_eq!((0..100).filter(|_| b.try_take(t0)).count(), 40);
        assert!(b.wait() > Duration::ZERO);
        // One second later, twenty more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| b.try_take(t1)).count(), 20);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| b.try_take(t2)).count(), 40);
    }
}
