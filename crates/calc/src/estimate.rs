//! Size, memory and time of a multifactorial, known before any work is done.
//!
//! # Size
//! With `q = ⌊(n−1)/k⌋`, `r = n − qk ∈ [1, k]` and `a = r/k`, the product
//! `n·(n−k)·…·r` equals `k^(q+1)·Γ(q+1+a)/Γ(a)` (for `k = 1`, `a = 1` and it
//! is `Γ(n+1) = n!`). `ln Γ(y)` for `y >= 10` comes from the Stirling series
//! `(y−½)ln y − y + ½ln 2π + 1/(12y) − 1/(360y³) + 1/(1260y⁵)`, whose
//! truncation error lies in `(−1/(1680y⁷), 0)` (the series envelops the true
//! value); smaller arguments are shifted up with `Γ(y) = Γ(y+1)/y`. That gives
//! a certain interval for `ln P`, widened by a relative `1e-13` of the
//! magnitudes involved (about a thousand f64 rounding errors) plus `1e-9`, so
//! the bit and digit counts derived from its top are proven upper bounds.
//! Results under 4096 bits are simply computed, so their counts are exact.
//!
//! The same interval gives the leading decimal digits cheaply: the fractional
//! part of `log10 P`. Only digits that the interval pins down are reported.
//!
//! # Memory and time
//! Both are modelled from the result size `B` in bits and calibrated with
//! `examples/bench.rs --calibrate` on the development machine (2-core AMD
//! EPYC, release build; see the calculator section of docs/benchmarks.md):
//! peak heap is
//! [`PEAK_BYTES_PER_RESULT_BYTE`] times the result's bytes, time is
//! [`TIME_NS_COEFF`]`·B^`[`TIME_EXPONENT`] nanoseconds. The constants carry
//! a margin over the measurements. They describe this machine and release
//! builds; other hardware should re-run the calibration.

use std::time::Duration;

use malachite_base::num::logic::traits::SignificantBits;

use crate::parse::Request;
use crate::product;

/// Peak heap bytes of [`compute_decimal`](crate::compute_decimal) per byte
/// of result.
///
/// Measured with a counting allocator (`examples/bench.rs --calibrate`):
/// 10.8–16.5× over n = 10^4…2·10^6 and k = 1…3, about 13× at `10^6!`.
/// It includes the decimal string (2.4 bytes per result byte), the tables of
/// powers and reciprocals of the conversion and malachite's scratch space
/// (the largest multiplications' scratch sets the peak). 20 leaves a margin
/// over the worst measurement.
pub const PEAK_BYTES_PER_RESULT_BYTE: f64 = 20.0;

/// Fixed heap overhead of a calculation (buffers, small tables).
pub const PEAK_BYTES_FIXED: u64 = 64 << 10;

/// Time model: `t = TIME_FIXED + TIME_NS_COEFF · B^TIME_EXPONENT` for
/// [`compute_decimal`](crate::compute_decimal), `B` the result size in bits.
///
/// Both phases are sequences of FFT-sized multiplications, so the cost grows
/// a little faster than `B`: over n = 300,000…2·10^6 and k = 1…3 the thread
/// CPU time measured on the 2-core benchmark machine follows `B^1.2` with
/// coefficients 0.87–1.10 ns (`examples/bench.rs --calibrate`). The model
/// is fitted to CPU time because the machine was shared when it was
/// measured, and there the wall time mostly measures the other processes;
/// on an otherwise idle machine a calculation's wall time is its CPU time.
/// 1.25 ns is the worst coefficient plus about 15 %: `10^6!` is estimated
/// at 0.66 s (measured 0.45–0.49 s of CPU), and under the default 64 MiB
/// limit memory, not time, bounds what is admitted (results up to about
/// 27 Mbit, estimated at up to 1.0 s).
pub const TIME_NS_COEFF: f64 = 1.25;

/// See [`TIME_NS_COEFF`].
pub const TIME_EXPONENT: f64 = 1.2;

/// Fixed per-calculation time: thread hand-off, allocation, and the higher
/// per-bit cost of small results, which the power law underestimates by up
/// to a few milliseconds (measured: 1.1 ms for `10^4!`, 5.0 ms for
/// `30000!`, against 0.2 and 6.7 ms from the power law).
pub const TIME_FIXED: Duration = Duration::from_millis(5);

/// Results up to this many bits are computed exactly by [`estimate`]: at
/// most a few microseconds of work.
const EXACT_BITS: f64 = 4_096.0;

/// ½ ln 2π.
const HALF_LN_2PI: f64 = 0.918_938_533_204_672_8;

/// Everything admission needs to know about a calculation before running it.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Upper bound on the bit length of the result (saturates at `u64::MAX`).
    pub bits: u64,
    /// Upper bound on the number of decimal digits (saturates at `u64::MAX`).
    pub digits: u64,
    /// Best estimate of `log10` of the result: the digit count is about
    /// `⌊log10⌋ + 1`. Stays meaningful where `bits` saturates.
    pub log10: f64,
    /// Whether `bits` and `digits` are exact (small results are computed).
    pub exact: bool,
    /// The leading decimal digits the estimate determines reliably, as
    /// `d.dd` (at most three significant digits, truncated, not rounded), or
    /// `None` when f64 precision cannot pin even the first digit.
    pub leading: Option<String>,
    /// Estimated peak heap use of [`compute`](crate::compute) plus
    /// [`to_decimal`](crate::to_decimal), in bytes.
    pub peak_bytes: u64,
    /// Estimated time of compute plus decimal conversion on this machine.
    pub time: Duration,
}

impl Estimate {
    /// Best estimate of the number of decimal digits (exact when `exact`).
    #[must_use]
    pub fn approx_digits(&self) -> u64 {
        if self.exact {
            self.digits
        } else {
            (self.log10.floor() as u64).saturating_add(1)
        }
    }
}

/// Estimates the size, memory and time of `req` in a few hundred
/// nanoseconds (or computes it exactly when the result is tiny).
#[must_use]
pub fn estimate(req: Request) -> Estimate {
    let ln = ln_product(req);
    let log2_upper = ln.upper * std::f64::consts::LOG2_E;
    let log10_upper = ln.upper * std::f64::consts::LOG10_E;
    let log10 = ln.central * std::f64::consts::LOG10_E;

    let (bits, digits, exact, leading) = if log2_upper <= EXACT_BITS {
        exact_size(req)
    } else {
        (
            (log2_upper.floor() as u64).saturating_add(1),
            (log10_upper.floor() as u64).saturating_add(1),
            false,
            leading_digits(log10, ln.error * std::f64::consts::LOG10_E),
        )
    };
    Estimate {
        bits,
        digits,
        log10,
        exact,
        leading,
        peak_bytes: peak_bytes(bits),
        time: time(bits),
    }
}

/// Modelled peak heap bytes for a result of `bits` bits.
#[must_use]
pub fn peak_bytes(bits: u64) -> u64 {
    let result_bytes = bits.div_ceil(8) as f64;
    ((result_bytes * PEAK_BYTES_PER_RESULT_BYTE) as u64).saturating_add(PEAK_BYTES_FIXED)
}

/// Modelled compute + conversion time for a result of `bits` bits.
#[must_use]
pub fn time(bits: u64) -> Duration {
    let ns = TIME_NS_COEFF * (bits as f64).powf(TIME_EXPONENT);
    // Saturates for absurd sizes instead of panicking.
    TIME_FIXED.saturating_add(Duration::try_from_secs_f64(ns * 1e-9).unwrap_or(Duration::MAX))
}

/// Largest result size, in bits, whose modelled peak fits in `max_bytes`.
#[must_use]
pub fn max_bits_for_bytes(max_bytes: u64) -> u64 {
    let usable = max_bytes.saturating_sub(PEAK_BYTES_FIXED) as f64;
    (usable / PEAK_BYTES_PER_RESULT_BYTE * 8.0) as u64
}

/// Bits, digits, exactness and leading digits of a tiny result, by computing it.
fn exact_size(req: Request) -> (u64, u64, bool, Option<String>) {
    // A closure that never cancels; the product is at most ~4096 bits.
    match product::compute(req, &|| false) {
        Ok(value) => {
            let text = value.to_string();
            let mut leading = text.chars().take(3);
            let first = leading.next().map(String::from).unwrap_or_default();
            let rest: String = leading.collect();
            let leading = if rest.is_empty() {
                first
            } else {
                format!("{first}.{rest}")
            };
            (
                value.significant_bits().max(1),
                text.len() as u64,
                true,
                Some(leading),
            )
        }
        // Unreachable with a never-cancelling flag; fall back to an empty
        // estimate rather than panic.
        Err(_) => (u64::MAX, u64::MAX, false, None),
    }
}

/// An interval certain to contain `ln P`, and a best estimate inside it.
struct LnInterval {
    upper: f64,
    central: f64,
    /// Half-width of the uncertainty of `central` (truncation plus rounding).
    error: f64,
}

/// `ln` of the product `n·(n−k)·…`, as a certain interval.
fn ln_product(req: Request) -> LnInterval {
    let Request { n, k } = req;
    if n <= 1 {
        return LnInterval {
            upper: 0.0,
            central: 0.0,
            error: 0.0,
        };
    }
    if k >= n {
        let v = (n as f64).ln();
        return LnInterval {
            upper: v * (1.0 + 1e-15) + 1e-15,
            central: v,
            error: v * 1e-15,
        };
    }
    let q = (n - 1) / k;
    let r = n - q * k;
    let terms = (q + 1) as f64;
    let power = terms * (k as f64).ln();
    let (num, den) = if r == k {
        // a = 1: Γ(1) = 1, so only Γ(q + 2) remains.
        (ln_gamma(terms + 1.0), GammaInterval::ZERO)
    } else {
        let a = r as f64 / k as f64;
        (ln_gamma(terms + a), ln_gamma(a))
    };
    let lower = power + num.lower - den.upper;
    let upper = power + num.upper - den.lower;
    let magnitude = power.abs() + num.magnitude + den.magnitude;
    let rounding = magnitude * 1e-13 + 1e-9;
    LnInterval {
        upper: upper + rounding,
        central: (lower + upper) / 2.0,
        error: (upper - lower) / 2.0 + magnitude * 1e-15,
    }
}

/// An interval for `ln Γ(x)` and the magnitude of the terms summed for it
/// (which bounds the accumulated rounding error).
struct GammaInterval {
    lower: f64,
    upper: f64,
    magnitude: f64,
}

impl GammaInterval {
    const ZERO: Self = Self {
        lower: 0.0,
        upper: 0.0,
        magnitude: 0.0,
    };
}

/// `ln Γ(x)` for `x > 0` by the Stirling series (see the module docs).
fn ln_gamma(x: f64) -> GammaInterval {
    let mut y = x;
    let mut shift = 0.0;
    let mut magnitude = 0.0;
    while y < 10.0 {
        let l = y.ln();
        shift += l;
        magnitude += l.abs();
        y += 1.0;
    }
    let ln_y = y.ln();
    let main = (y - 0.5) * ln_y - y + HALF_LN_2PI;
    let y2 = y * y;
    let correction = 1.0 / (12.0 * y) - 1.0 / (360.0 * y * y2) + 1.0 / (1260.0 * y * y2 * y2);
    let remainder = 1.0 / (1680.0 * y * y2 * y2 * y2);
    let series = main + correction - shift;
    magnitude += ((y - 0.5) * ln_y).abs() + y + HALF_LN_2PI + 1.0;
    GammaInterval {
        lower: series - remainder,
        upper: series,
        magnitude,
    }
}

/// Up to three leading significant digits of `10^log10`, as `d.dd`, keeping
/// only those that stay the same across `log10 ± error`.
fn leading_digits(log10: f64, error: f64) -> Option<String> {
    let mantissa = 10f64.powf(log10 - log10.floor());
    // Relative error of the mantissa, doubled for the powf rounding.
    let relative = 2.0 * error * std::f64::consts::LN_10 + 1e-15;
    for significant in (1..=3u32).rev() {
        let scale = 10f64.powi(significant as i32 - 1);
        let low = (mantissa * (1.0 - relative) * scale).floor();
        let high = (mantissa * (1.0 + relative) * scale).floor();
        if low == high && low >= scale && low < 10.0 * scale {
            let digits = (low as u64).to_string();
            let (first, rest) = digits.split_at(1);
            return Some(if rest.is_empty() {
                first.to_owned()
            } else {
                format!("{first}.{rest}")
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachite_base::num::arithmetic::traits::Pow;
    use malachite_nz::natural::Natural;
    use proptest::prelude::*;

    /// Exact bits and digits, without a (slow in debug builds) conversion:
    /// a number of `bits` bits has `d` or `d + 1` digits, where `d` is the
    /// digit count of `2^(bits−1)`.
    fn exact(n: u64, k: u64) -> (u64, u64) {
        let value = product::compute(Request { n, k }, &|| false).expect("not cancelled");
        let bits = value.significant_bits().max(1);
        let d = ((bits - 1) as f64 * std::f64::consts::LOG10_2).floor() as u64 + 1;
        let digits = if value >= Natural::from(10u32).pow(d) {
            d + 1
        } else {
            d
        };
        (bits, digits)
    }

    #[test]
    fn exact_helper_counts_digits() {
        for n in [0, 1, 3, 4, 10, 25, 100, 1_000] {
            let value = product::compute(Request { n, k: 1 }, &|| false).expect("not cancelled");
            assert_eq!(exact(n, 1).1, value.to_string().len() as u64, "{n}");
        }
    }

    fn assert_close_upper_bound(n: u64, k: u64) {
        let e = estimate(Request { n, k });
        let (bits, digits) = exact(n, k);
        assert!(
            e.bits >= bits && e.digits >= digits,
            "{n}!({k}): {e:?} vs {bits} {digits}"
        );
        // The f64 interval is far tighter than one unit at these sizes.
        assert!(
            e.bits <= bits + 1 && e.digits <= digits + 1,
            "{n}!({k}): {e:?} vs {bits} {digits}"
        );
        assert!(
            e.approx_digits().abs_diff(digits) <= 1,
            "{n}!({k}): {e:?} vs {digits}"
        );
    }

    #[test]
    fn known_digit_counts() {
        for (n, digits) in [
            (10_000, 35_660),
            (30_000, 121_288),
            (1_000_000, 5_565_709),
            (10_000_000, 65_657_060),
            (1_000_000_000, 8_565_705_523),
        ] {
            let e = estimate(Request { n, k: 1 });
            assert!(e.digits >= digits && e.digits <= digits + 1, "{n}: {e:?}");
            assert_eq!(e.approx_digits(), digits, "{n}: {e:?}");
        }
    }

    #[test]
    fn leading_digits_of_famous_factorials() {
        // 10^9! = 9.9046…×10^8565705522, 10^6! = 8.2639…×10^5565708.
        assert_eq!(
            estimate(Request {
                n: 1_000_000_000,
                k: 1
            })
            .leading
            .as_deref(),
            Some("9.90")
        );
        assert_eq!(
            estimate(Request { n: 1_000_000, k: 1 }).leading.as_deref(),
            Some("8.26")
        );
        assert_eq!(
            estimate(Request { n: 20, k: 1 }).leading.as_deref(),
            Some("2.43")
        );
        assert!(estimate(Request { n: u64::MAX, k: 1 }).leading.is_none());
    }

    #[test]
    fn tiny_results_are_exact() {
        let e = estimate(Request { n: 20, k: 1 });
        assert!(e.exact);
        assert_eq!((e.bits, e.digits), (62, 19));
        let e = estimate(Request { n: 0, k: 1 });
        assert_eq!((e.bits, e.digits, e.approx_digits()), (1, 1, 1));
        assert_eq!(estimate(Request { n: 5, k: 8 }).digits, 1);
    }

    #[test]
    fn upper_bound_for_assorted_sizes() {
        for (n, k) in [
            (600, 1),
            (1_000, 1),
            (4_096, 1),
            (12_345, 1),
            (20_000, 1),
            (20_000, 2),
            (20_001, 2),
            (30_000, 3),
            (50_000, 7),
            (100_000, 1_000),
            (1 << 40, 1 << 37),
            (u64::MAX, u64::MAX / 300),
        ] {
            assert_close_upper_bound(n, k);
        }
    }

    #[test]
    fn absurd_sizes_saturate_without_panicking() {
        let e = estimate(Request { n: u64::MAX, k: 1 });
        assert_eq!(e.bits, u64::MAX);
        assert!(e.log10 > 3.47e20 && e.log10 < 3.48e20, "{e:?}");
        assert!(e.time > Duration::from_secs(1_000_000));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn upper_bound_for_random_factorials(n in 0u64..20_000) {
            assert_close_upper_bound(n, 1);
        }

        #[test]
        fn upper_bound_for_random_multifactorials(n in 0u64..20_000, k in 1u64..40) {
            assert_close_upper_bound(n, k);
        }
    }
}
