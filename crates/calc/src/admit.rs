//! Admission: deciding from the estimate alone whether to run a calculation.
//!
//! A calculation is refused, before any work, when its estimated peak memory
//! exceeds the per-calculation limit or its estimated time exceeds the
//! timeout. Memory is checked first because it is the limit that protects
//! the process; time only protects the user from waiting for a timeout.

use std::time::Duration;

use crate::display::{bytes, count_from_log10, duration, group_thousands, round_down_2_sig};
use crate::estimate::{Estimate, estimate, max_bits_for_bytes};
use crate::parse::Request;

/// Per-calculation limits, from the server's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest estimated peak heap use of one calculation (default 64 MiB).
    pub max_bytes: u64,
    /// Time after which the server cancels a calculation (default 2 s);
    /// calculations estimated to take longer are refused up front.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 64 << 20,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Why a calculation was refused. `Display` (and [`Rejection::reason`]) is a
/// sentence for the chat's `reason` field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The estimated peak memory exceeds `Limits::max_bytes`.
    #[error(
        "{request} has {}{}, more than this server computes (limit: about {} digits in {}).",
        size(.estimate), starts(.estimate), group_thousands(round_down_2_sig(*.max_digits)),
        bytes(*.max_bytes)
    )]
    TooLarge {
        request: Request,
        estimate: Estimate,
        /// The limit that was exceeded.
        max_bytes: u64,
        /// About how many digits fit in `max_bytes`.
        max_digits: u64,
    },
    /// The estimated time exceeds `Limits::timeout`.
    #[error(
        "{request} has {}{}, which would take about {} to compute, longer than the {} limit.",
        size(.estimate), starts(.estimate), duration(.estimate.time), duration(*.timeout)
    )]
    TooSlow {
        request: Request,
        estimate: Estimate,
        timeout: Duration,
    },
    /// `n` does not even fit in 64 bits (found by [`parse`](crate::parse)).
    #[error(
        "{expr} has more than {} digits (n alone has {} digits), far more than this server computes.",
        count_from_log10(*.log10_min_digits), group_thousands(*.n_digits)
    )]
    InputTooLarge {
        /// The calculation as written, with a long `n` shortened to its
        /// first digits (so it never grows with the input).
        expr: String,
        /// Significant digits in `n`.
        n_digits: u64,
        /// A lower bound on log10 of the result's digit count.
        log10_min_digits: f64,
    },
}

impl Rejection {
    /// The sentence for the chat's `reason` field.
    #[must_use]
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// Builds the rejection for `digits!…!` (`k` marks) when the digits (no
    /// leading zeros) do not fit in a `u64`. Reads at most 17 digits, so the
    /// cost does not grow with the input.
    pub(crate) fn input_too_large(digits: &[u8], k: u64) -> Self {
        const SHOWN: usize = 24;
        let n_digits = digits.len() as u64;
        let head = &digits[..digits.len().min(17)];
        let lead = head
            .iter()
            .fold(0f64, |acc, &d| acc * 10.0 + f64::from(d - b'0'));
        let log10_n = lead.log10() + (digits.len() - head.len()) as f64;

        // n >= 10^19 > k, so there are at least two terms. Lower bounds:
        // k = 1: n! >= (n/e)^n, so log10 n! >= n·(log10 n − log10 e);
        // any k: at least n/(2k) terms are >= n/2, so P >= (n/2)^(n/(2k)),
        // and trivially P >= n.
        let log10_min_digits = if k == 1 {
            log10_n + (log10_n - std::f64::consts::LOG10_E).log10()
        } else {
            let halves =
                log10_n - (2.0 * k as f64).log10() + (log10_n - std::f64::consts::LOG10_2).log10();
            halves.max((n_digits as f64 - 1.0).max(1.0).log10())
        };

        let mut expr: String = digits.iter().take(SHOWN).map(|&d| char::from(d)).collect();
        if digits.len() > SHOWN {
            expr.push('…');
        }
        let bangs = Request { n: 0, k }.to_string();
        expr.push_str(&bangs[1..]);
        Self::InputTooLarge {
            expr,
            n_digits,
            log10_min_digits,
        }
    }
}

/// `35,660 digits` or `about 8,565,705,523 digits`.
fn size(estimate: &Estimate) -> String {
    let digits = estimate.approx_digits();
    let count = if digits == u64::MAX {
        count_from_log10(estimate.log10.log10())
    } else {
        group_thousands(digits)
    };
    if estimate.exact {
        format!("{count} digits")
    } else {
        format!("about {count} digits")
    }
}

/// ` (starts 9.90…)`, or nothing when the leading digits are unknown.
fn starts(estimate: &Estimate) -> String {
    estimate
        .leading
        .as_ref()
        .map_or_else(String::new, |lead| format!(" (starts {lead}…)"))
}

/// Estimates `req` and admits it if it fits `limits`, in well under a
/// microsecond for any input (tiny results are computed exactly, in a few
/// microseconds).
///
/// # Errors
/// [`Rejection::TooLarge`] when the estimated peak memory exceeds
/// `limits.max_bytes`, else [`Rejection::TooSlow`] when the estimated time
/// exceeds `limits.timeout`.
pub fn admit(req: Request, limits: &Limits) -> Result<Estimate, Rejection> {
    let estimate = estimate(req);
    if estimate.peak_bytes > limits.max_bytes {
        let max_bits = max_bits_for_bytes(limits.max_bytes);
        return Err(Rejection::TooLarge {
            request: req,
            estimate,
            max_bytes: limits.max_bytes,
            max_digits: (max_bits as f64 * std::f64::consts::LOG10_2) as u64,
        });
    }
    if estimate.time > limits.timeout {
        return Err(Rejection::TooSlow {
            request: req,
            estimate,
            timeout: limits.timeout,
        });
    }
    Ok(estimate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Parsed, parse};
    use std::time::Instant;

    #[test]
    fn small_calculations_are_admitted() {
        for n in [0, 1, 20, 1_000, 100_000] {
            assert!(
                admit(Request { n, k: 1 }, &Limits::default()).is_ok(),
                "{n}"
            );
        }
    }

    #[test]
    fn billion_factorial_is_refused_with_its_size() {
        let started = Instant::now();
        let rejection = admit(
            Request {
                n: 1_000_000_000,
                k: 1,
            },
            &Limits::default(),
        )
        .expect_err("far too large");
        assert!(started.elapsed() < Duration::from_millis(10));
        let reason = rejection.reason();
        assert!(matches!(rejection, Rejection::TooLarge { .. }));
        assert!(
            reason.starts_with(
                "1000000000! has about 8,565,705,523 digits (starts 9.90…), more than this server computes (limit: about "
            ),
            "{reason}"
        );
        assert!(reason.ends_with(" digits in 64 MiB)."), "{reason}");
    }

    #[test]
    fn slow_calculations_are_refused_by_time() {
        let limits = Limits {
            max_bytes: u64::MAX,
            timeout: Duration::from_millis(100),
        };
        let rejection = admit(Request { n: 3_000_000, k: 1 }, &limits).expect_err("too slow");
        assert!(
            matches!(rejection, Rejection::TooSlow { .. }),
            "{rejection}"
        );
        assert!(
            rejection.reason().contains("longer than the 100 ms limit"),
            "{rejection}"
        );
    }

    #[test]
    fn every_huge_input_is_refused_quickly() {
        let long = format!("{}!", "9".repeat(10_000));
        let texts = [
            "1000000000!",
            "99999999999999999999999!",
            "99999999999999999999999!!!!",
            "18446744073709551615!",
            "18446744073709551615!!",
            long.as_str(),
        ];
        for text in texts {
            let started = Instant::now();
            let reason = match parse(text) {
                Parsed::TooLarge(rejection) => rejection.reason(),
                Parsed::Calc(req) => admit(req, &Limits::default()).expect_err(text).reason(),
                Parsed::NotACalculation => panic!("{text} is a calculation"),
            };
            assert!(started.elapsed() < Duration::from_millis(20), "{text}");
            assert!(reason.contains("digits"), "{reason}");
            assert!(reason.len() < 300, "{reason}");
        }
        let Parsed::TooLarge(r) = parse("99999999999999999999999!") else {
            panic!()
        };
        assert_eq!(
            r.reason(),
            "99999999999999999999999! has more than 2.2×10^24 digits (n alone has 23 digits), \
             far more than this server computes."
        );
    }
}
