//! Cancellable conversion of a `Natural` to decimal digits.
//!
//! malachite's `to_string` is fast but one uninterruptible call (about 0.45 s
//! of CPU for the 5.6 million digits of `10^6!` on the benchmark machine).
//! This module splits the work into steps of bounded size with the classic
//! divide-and-conquer scheme, and makes each level of the tree cheaper than
//! a plain division:
//!
//! 1. Bound the digit count `D` from the bit length, and pick a leaf size `L`
//!    and a depth `h` with `L·2^h >= D` and `L <= leaf_digits`.
//! 2. Compute `5^(L·2^j)` for `j < h` by repeated squaring. A split by
//!    `10^k = 5^k·2^k` divides `x >> k` by `5^k` and puts the low `k` bits
//!    back on the remainder: the divisor is 30 % shorter than `10^k`, and a
//!    division costs about 17 % less (measured at `10^6!`).
//! 3. Split `x = q·10^k + r` and recurse on both halves one level down.
//!    All nodes of a level divide by the same power, so each level below the
//!    top one gets a reciprocal `R ≈ 2^s / 5^k` once, and each node
//!    divides with two multiplications (Barrett): `q̃ = ⌊⌊hi/2^a⌋·R / 2^(s−a)⌋`
//!    is at most two below the quotient, and the remainder is computed
//!    modulo a power of two just above `5^k` (a low-half product). A Barrett
//!    node takes 45 % of a division; a level of `10^6!` costs 20–40 ms
//!    against 45–70 ms with divisions.
//! 4. Leaves (below `10^L`) use malachite's `to_string`, which at leaf size
//!    (at most 65,536 digits, about 1 ms) is as cheap per level as anything
//!    here.
//!
//! The reciprocals come from the bottom up: the smallest level's by one
//! division, each larger one by a Newton step from the one below (the powers
//! square, so their reciprocals do too), which costs about as much as one
//! Barrett node.
//!
//! Numbers up to [`ONE_CALL_DIGITS`] digits skip all of this and call
//! `to_string` once: below that size the tree saves nothing and the single
//! call stays a short step.
//!
//! Exact divisions remain for the top node (see [`TOP_LEVELS_DIVIDED`]), the
//! smallest reciprocal and fallbacks that the error bounds rule out. A
//! division by a large divisor is too long for one step (about 60 ms at the
//! top of `10^6!`), so it is done as long division in base
//! `2^quotient_chunk_bits`: each step divides the running remainder, extended
//! by the next chunk of the dividend, by the divisor, yielding one quotient
//! chunk, and the flag is polled between them. The steps cost about a third
//! more in total than one division, but each is a fraction of it.
//!
//! Every lower half is zero-padded to exactly `L·2^j` digits, because its
//! leading zeros are real digits of the result; only the most significant
//! piece is written without padding, and a most significant quotient of zero
//! is skipped entirely (the digit bound `D` may overshoot by one). The cancel
//! flag is polled between squarings, reciprocals, divisions, multiplications
//! and leaves.

use malachite_base::num::arithmetic::traits::{
    CheckedSub, DivRem, ModPowerOf2, ModPowerOf2Mul, ModPowerOf2Sub, Pow, Square,
};
use malachite_base::num::logic::traits::SignificantBits;
use malachite_nz::natural::Natural;

use crate::cancel::{Cancel, Cancelled, check};

/// Numbers with at most this many digits are converted by one `to_string`
/// call (about 25 ms of CPU at the limit, as long as the longest steps of
/// the tree): the tree is no faster there (24–25 ms against 21–22 ms for
/// 10^5!'s 456,574 digits).
const ONE_CALL_DIGITS: u64 = 1 << 19;

/// Largest leaf, in decimal digits, handed to malachite's `to_string`.
/// Tuned on `10^6!` (runs of 2^15 to 2^18 within ±15 ms of each other on
/// the shared machine, 2^16 and 2^15 ahead): halving the leaves saves about
/// as much `to_string` time (whose per-digit cost grows with size) as the
/// extra Barrett level costs.
const LEAF_DIGITS: u64 = 1 << 16;

/// Divisors from this many bits on are divided in chunks (see the module
/// docs); a whole division by a smaller divisor takes at most about 15 ms.
const CHUNKED_DIVISOR_BITS: u64 = 1 << 21;

/// Quotient bits produced by one step of a chunked division (a multiple of
/// 64). At `10^6!` a step takes at most about 20 ms of CPU; smaller chunks
/// add more total work than they save in latency.
const QUOTIENT_CHUNK_BITS: u64 = 1 << 21;

/// The top level (a single node) divides exactly instead of getting a
/// reciprocal: its Newton step plus one Barrett node cost about what the
/// chunked division costs (2 % less at `10^6!`), but the step's
/// multiplication needs more scratch memory than anything else in the
/// calculation (peak heap 19× the result's bytes at `10^6!`, against 13×).
const TOP_LEVELS_DIVIDED: usize = 1;

/// Guard bits of the Barrett reciprocals: the quotient estimate is then at
/// most two below the true quotient.
const GUARD_BITS: u64 = 64;

/// Bits above the divisor kept when a Barrett remainder is computed modulo a
/// power of two: the remainder is below `3·5^k`, and anything up to
/// `256·5^k` would still be exact, so a wrong estimate cannot go unnoticed.
const REMAINDER_SLACK_BITS: u64 = 8;

/// Exact divisions taken where the error bounds say they are not needed;
/// tests check that it stays zero.
#[cfg(test)]
static FALLBACKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a fallback (tests only).
fn note_fallback() {
    #[cfg(test)]
    FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Sizes of the steps of a conversion; tests shrink them to exercise every
/// path on small numbers.
#[derive(Clone, Copy)]
struct StepSizes {
    /// Numbers with at most this many digits go to `to_string` in one call.
    one_call_digits: u64,
    /// Largest leaf, in digits, converted by malachite's `to_string`.
    leaf_digits: u64,
    /// Divisors from this many bits on are divided in chunks.
    chunked_divisor_bits: u64,
    /// Quotient bits per chunked step; a positive multiple of 64 (checked in
    /// debug builds by `Converter::new`).
    quotient_chunk_bits: u64,
}

const STEP_SIZES: StepSizes = StepSizes {
    one_call_digits: ONE_CALL_DIGITS,
    leaf_digits: LEAF_DIGITS,
    chunked_divisor_bits: CHUNKED_DIVISOR_BITS,
    quotient_chunk_bits: QUOTIENT_CHUNK_BITS,
};

/// log10(2), rounded up so that digit bounds derived from bit lengths stay
/// upper bounds.
const LOG10_2_UP: f64 = 0.301_029_995_663_981_3;

/// The decimal digits of `x`, equal to `x.to_string()`, polling `cancel`
/// between steps.
///
/// # Errors
/// [`Cancelled`] as soon as `cancel` reports `true` at a check.
pub fn to_decimal<C: Cancel + ?Sized>(x: &Natural, cancel: &C) -> Result<String, Cancelled> {
    to_decimal_with(x, 0, STEP_SIZES, cancel)
}

/// [`to_decimal`] of `x·10^zeros`: the digits of `x` followed by `zeros`
/// zeros, written into one buffer.
pub(crate) fn to_decimal_times_power_of_ten<C: Cancel + ?Sized>(
    x: &Natural,
    zeros: u64,
    cancel: &C,
) -> Result<String, Cancelled> {
    to_decimal_with(x, zeros, STEP_SIZES, cancel)
}

/// [`to_decimal`] with the given step sizes, followed by `zeros` zeros
/// (unless `x` is zero).
fn to_decimal_with<C: Cancel + ?Sized>(
    x: &Natural,
    zeros: u64,
    sizes: StepSizes,
    cancel: &C,
) -> Result<String, Cancelled> {
    let bits = x.significant_bits();
    // Upper bound on the digit count: x < 2^bits <= 10^ceil(bits·log10 2).
    let max_digits = (bits as f64 * LOG10_2_UP).ceil() as u64 + 1;
    let zeros = if *x == 0u32 { 0 } else { zeros };
    if max_digits <= sizes.one_call_digits.max(sizes.leaf_digits) {
        // One call; its string is the result, without a copy. Reserved
        // exactly: extending by amortised growth would double the buffer.
        let mut digits = x.to_string();
        digits.reserve_exact(zeros as usize);
        digits.extend(std::iter::repeat_n('0', zeros as usize));
        return Ok(digits);
    }
    let mut out = String::with_capacity((max_digits + zeros) as usize);
    let converter = Converter::new(max_digits, sizes, cancel)?;
    converter.unpadded(x, converter.levels.len(), &mut out)?;
    drop(converter);
    out.extend(std::iter::repeat_n('0', zeros as usize));
    Ok(out)
}

/// One level of the tree: what a split by `10^digits` needs.
struct Level {
    /// The number of digits split off: `L·2^j`.
    digits: u64,
    /// `5^digits`.
    five: Natural,
    /// Bit length of `five`.
    five_bits: u64,
    /// The Barrett reciprocal `⌊2^s / 5^k⌋` or a few units less, `s` from
    /// [`Level::reciprocal_shift`]; `None` for the top level.
    reciprocal: Option<Natural>,
}

impl Level {
    /// `s` in `R = ⌊2^s / 5^k⌋`: the dividend `x >> k` of a node has at most
    /// `2·five_bits + k` bits (`x < 10^(2k)`), the quotient at most
    /// `five_bits + k`; `GUARD_BITS` more keep the estimate within two.
    fn reciprocal_shift(&self) -> u64 {
        2 * self.five_bits + self.digits + GUARD_BITS
    }

    /// Whether `x >= 10^digits`, i.e. `x` needs a split at this level.
    fn exceeds(&self, x: &Natural) -> bool {
        // 10^k = 5^k·2^k has five_bits + k bits.
        let power_bits = self.five_bits + self.digits;
        let x_bits = x.significant_bits();
        if x_bits != power_bits {
            return x_bits > power_bits;
        }
        *x >= (&self.five << self.digits)
    }
}

/// Shared state of one conversion.
struct Converter<'a, C: ?Sized> {
    /// `levels[j]` splits by `10^(leaf_digits·2^j)`.
    levels: Vec<Level>,
    /// Digits in a (padded) leaf.
    leaf_digits: u64,
    sizes: StepSizes,
    cancel: &'a C,
}

impl<'a, C: Cancel + ?Sized> Converter<'a, C> {
    /// Picks the tree for numbers of up to `max_digits` digits and computes
    /// its powers of five and reciprocals.
    fn new(max_digits: u64, sizes: StepSizes, cancel: &'a C) -> Result<Self, Cancelled> {
        // `div_rem_chunked` cuts chunks out of 64-bit limbs.
        debug_assert!(
            sizes.quotient_chunk_bits > 0 && sizes.quotient_chunk_bits.is_multiple_of(64),
            "quotient_chunk_bits must be a positive multiple of 64, not {}",
            sizes.quotient_chunk_bits
        );
        // Smallest depth h with ceil(D / 2^h) <= leaf size; then L·2^h >= D.
        let leaf_max = sizes.leaf_digits.max(1);
        let mut depth = 0u32;
        while max_digits.div_ceil(1 << depth) > leaf_max {
            depth += 1;
        }
        let leaf_digits = max_digits.div_ceil(1 << depth);

        let mut levels: Vec<Level> = Vec::with_capacity(depth as usize);
        for j in 0..depth {
            check(cancel)?;
            let five = match levels.last() {
                None => Natural::from(5u32).pow(leaf_digits),
                Some(below) => (&below.five).pow(2),
            };
            levels.push(Level {
                digits: leaf_digits << j,
                five_bits: five.significant_bits(),
                five,
                reciprocal: None,
            });
        }
        let mut converter = Self {
            levels,
            leaf_digits,
            sizes,
            cancel,
        };
        // Every level below the top gets a reciprocal: the smallest by one
        // division, each larger one by a Newton step from the one below,
        // which costs about a Barrett node, far less than a division.
        for j in 0..(depth as usize).saturating_sub(TOP_LEVELS_DIVIDED) {
            check(cancel)?;
            let reciprocal = match j.checked_sub(1) {
                None => {
                    let level = &converter.levels[j];
                    let numerator = Natural::from(1u32) << level.reciprocal_shift();
                    converter.div_rem_chunked(numerator, &level.five)?.0
                }
                Some(below) => converter.newton_reciprocal(below, j)?,
            };
            converter.levels[j].reciprocal = Some(reciprocal);
        }
        Ok(converter)
    }

    /// The reciprocal of level `j` from the one of level `below = j − 1`.
    ///
    /// With `T = 2^s / 5^k`, the square of the lower reciprocal, rescaled,
    /// is an underestimate `R₀ <= T` with about half the precision, and one
    /// Newton step `R₁ = R₀ + R₀·(2^s − 5^k·R₀) / 2^s` (rounded down) is again
    /// an underestimate, now within a few units: `T − R₁ < T·(1 − R₀/T)² + 2`.
    /// Staying below `T` keeps every Barrett estimate at or below the true
    /// quotient.
    fn newton_reciprocal(&self, below: usize, j: usize) -> Result<Natural, Cancelled> {
        let (lower, level) = (&self.levels[below], &self.levels[j]);
        let Some(lower_reciprocal) = lower.reciprocal.as_ref() else {
            // Not reached: reciprocals are built from the bottom up.
            note_fallback();
            let numerator = Natural::from(1u32) << level.reciprocal_shift();
            return Ok(self.div_rem_chunked(numerator, &level.five)?.0);
        };
        let s = level.reciprocal_shift();
        let lower_s = lower.reciprocal_shift();
        let square = lower_reciprocal.square();
        // 5^(2k) = (5^k)², so R_lower² / 2^(2·s_lower − s) <= 2^s / 5^(2k).
        // The shift is never negative: with b = five_bits below, 5^(2k) has
        // 2b − 1 or 2b bits, so 2·s_lower − s = 4b − 2·five_bits + GUARD_BITS
        // is GUARD_BITS or GUARD_BITS + 2.
        debug_assert!(
            2 * lower_s >= s + GUARD_BITS && 2 * lower_s <= s + GUARD_BITS + 2,
            "2·s_lower − s outside [GUARD_BITS, GUARD_BITS + 2]"
        );
        let r0 = square >> (2 * lower_s - s);
        check(self.cancel)?;
        let product = &level.five * &r0;
        check(self.cancel)?;
        let Some(error) = (Natural::from(1u32) << s).checked_sub(product) else {
            // Not reached (r0 <= 2^s / 5^k); divide exactly instead.
            note_fallback();
            let numerator = Natural::from(1u32) << s;
            return Ok(self.div_rem_chunked(numerator, &level.five)?.0);
        };
        // The error term only needs to be right to about a unit: dropping
        // `t` low bits of it costs less than one, and keeps the step an
        // underestimate.
        let t = level.five_bits.saturating_sub(GUARD_BITS);
        let correction = (&r0 * (error >> t)) >> (s - t);
        check(self.cancel)?;
        Ok(r0 + correction)
    }

    /// Writes `x < 10^(L·2^level)` without leading zeros.
    fn unpadded(&self, x: &Natural, level: usize, out: &mut String) -> Result<(), Cancelled> {
        check(self.cancel)?;
        if level == 0 {
            out.push_str(&x.to_string());
            return Ok(());
        }
        if !self.levels[level - 1].exceeds(x) {
            // Small enough to skip a level.
            return self.unpadded(x, level - 1, out);
        }
        let (q, r) = self.split(x, level - 1)?;
        self.unpadded(&q, level - 1, out)?;
        drop(q);
        self.padded(&r, level - 1, out)
    }

    /// Writes `x < 10^(L·2^level)` as exactly `L·2^level` digits.
    fn padded(&self, x: &Natural, level: usize, out: &mut String) -> Result<(), Cancelled> {
        check(self.cancel)?;
        if level == 0 {
            let digits = x.to_string();
            for _ in digits.len() as u64..self.leaf_digits {
                out.push('0');
            }
            out.push_str(&digits);
            return Ok(());
        }
        if *x == 0u32 {
            // Common in the low halves of numbers with long zero runs.
            let zeros = self.leaf_digits << level;
            out.extend(std::iter::repeat_n('0', zeros as usize));
            return Ok(());
        }
        let (q, r) = self.split(x, level - 1)?;
        self.padded(&q, level - 1, out)?;
        drop(q);
        self.padded(&r, level - 1, out)
    }

    /// `(x div 10^k, x mod 10^k)` for `k = levels[j].digits`, as a division
    /// of `x >> k` by `5^k` with the low `k` bits put back on the remainder.
    fn split(&self, x: &Natural, j: usize) -> Result<(Natural, Natural), Cancelled> {
        let level = &self.levels[j];
        let k = level.digits;
        let hi = x >> k;
        let (q, r) = match &level.reciprocal {
            Some(reciprocal) => self.div_rem_barrett(hi, level, reciprocal)?,
            None => self.div_rem_chunked(hi, &level.five)?,
        };
        check(self.cancel)?;
        Ok((q, (r << k) + x.mod_power_of_2(k)))
    }

    /// `hi.div_rem(5^k)` with the level's reciprocal (see the module docs).
    fn div_rem_barrett(
        &self,
        hi: Natural,
        level: &Level,
        reciprocal: &Natural,
    ) -> Result<(Natural, Natural), Cancelled> {
        let s = level.reciprocal_shift();
        let five = &level.five;
        if hi.significant_bits() + GUARD_BITS > s {
            // Not a node of this level (cannot happen: x < 10^(2k)); the
            // estimate's error bound would not hold, so divide exactly.
            note_fallback();
            return self.div_rem_chunked(hi, five);
        }
        // Dropping the dividend's low `a` bits costs less than 2^-63 of a unit
        // of the quotient estimate.
        let a = level.five_bits.saturating_sub(GUARD_BITS);
        check(self.cancel)?;
        let mut q = ((&hi >> a) * reciprocal) >> (s - a);
        check(self.cancel)?;
        // q <= hi / 5^k and the remainder is below 3·5^k, so it is exact
        // modulo 2^m.
        let m = level.five_bits + REMAINDER_SLACK_BITS;
        let product = (&q).mod_power_of_2(m).mod_power_of_2_mul(five, m);
        let mut r = (&hi).mod_power_of_2(m).mod_power_of_2_sub(product, m);
        let mut fixes = 0;
        while r >= *five {
            r -= five;
            q += Natural::from(1u32);
            fixes += 1;
            if fixes > 4 {
                // Outside the proven bound; recover with an exact division
                // rather than return wrong digits.
                note_fallback();
                return self.div_rem_chunked(hi, five);
            }
        }
        Ok((q, r))
    }

    /// `x.div_rem(d)`, as a chunked long division when the divisor is large
    /// (see the module docs), polling the flag between chunks.
    fn div_rem_chunked(&self, x: Natural, d: &Natural) -> Result<(Natural, Natural), Cancelled> {
        let chunk = self.sizes.quotient_chunk_bits;
        let d_bits = d.significant_bits();
        let x_bits = x.significant_bits();
        // Chunks of the dividend brought down one by one after the first
        // step; the first step's dividend has fewer than d_bits + chunk bits.
        let steps = x_bits.saturating_sub(d_bits) / chunk;
        if d_bits < self.sizes.chunked_divisor_bits || steps == 0 {
            return Ok(x.div_rem(d));
        }
        let limbs = x.into_limbs_asc();
        let chunk_limbs = (chunk / 64) as usize;
        let piece = |i: u64| -> Natural {
            let lo = (i as usize * chunk_limbs).min(limbs.len());
            let hi = (lo + chunk_limbs).min(limbs.len());
            Natural::from_limbs_asc(&limbs[lo..hi])
        };
        let top_start = (steps as usize * chunk_limbs).min(limbs.len());
        let (mut q, mut r) = Natural::from_limbs_asc(&limbs[top_start..]).div_rem(d);
        for i in (0..steps).rev() {
            check(self.cancel)?;
            let (qi, ri) = ((r << chunk) + piece(i)).div_rem(d);
            q = (q << chunk) + qi;
            r = ri;
        }
        Ok((q, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachite_base::num::arithmetic::traits::Factorial;
    use proptest::prelude::*;

    fn sizes(leaf_digits: u64, chunked: bool) -> StepSizes {
        let one_call_digits = 0;
        if chunked {
            StepSizes {
                one_call_digits,
                leaf_digits,
                chunked_divisor_bits: 64,
                quotient_chunk_bits: 64,
            }
        } else {
            StepSizes {
                one_call_digits,
                leaf_digits,
                ..STEP_SIZES
            }
        }
    }

    fn to_decimal_with_leaf<C: Cancel + ?Sized>(
        x: &Natural,
        leaf: u64,
        cancel: &C,
    ) -> Result<String, Cancelled> {
        to_decimal_with(x, 0, sizes(leaf, leaf.is_multiple_of(2)), cancel)
    }

    /// Checks the conversion against malachite for several leaf sizes, down
    /// to leaves of one digit, with and without chunked division.
    fn check_eq(x: &Natural) {
        let expected = x.to_string();
        for leaf in [1, 2, 3, 7, 50, LEAF_DIGITS] {
            for chunked in [false, true] {
                let got =
                    to_decimal_with(x, 0, sizes(leaf, chunked), &|| false).expect("not cancelled");
                assert_eq!(got, expected, "leaf size {leaf}, chunked {chunked}");
            }
        }
    }

    fn ten_to(e: u64) -> Natural {
        Natural::from(10u32).pow(e)
    }

    #[test]
    fn edge_cases() {
        check_eq(&Natural::from(0u32));
        for e in [
            0u64, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 100, 127, 128, 129, 4_000, 4_001,
        ] {
            let p = ten_to(e);
            check_eq(&p);
            check_eq(&(&p - Natural::from(1u32)));
            check_eq(&(&p + Natural::from(1u32)));
            // Long zero runs that land in lower halves and whole leaves.
            check_eq(&(&p * &p + Natural::from(7u32)));
            check_eq(&(Natural::from(123u32) * &p * &p + &p));
            // Long runs of nines, where a quotient estimate is most likely
            // to fall short.
            check_eq(&(&p * &p - Natural::from(1u32)));
            check_eq(&(&p * &p - &p));
        }
        check_eq(&Natural::factorial(300));
        check_eq(&Natural::factorial(3_000));
        check_eq(&Natural::factorial(20_000));
        assert_no_fallbacks();
    }

    /// No Barrett estimate or Newton step went outside its proven bound in
    /// any test so far (fallbacks give right digits, so only this shows them).
    fn assert_no_fallbacks() {
        assert_eq!(FALLBACKS.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn trailing_zeros_are_appended() {
        let x = Natural::from(1234u32);
        let got = to_decimal_times_power_of_ten(&x, 5, &|| false).expect("not cancelled");
        assert_eq!(got, "123400000");
        let zero = to_decimal_times_power_of_ten(&Natural::from(0u32), 5, &|| false);
        assert_eq!(zero.expect("not cancelled"), "0");
        let big = Natural::factorial(3_000);
        let got = to_decimal_with(&big, 3, sizes(10, true), &|| false).expect("not cancelled");
        assert_eq!(got, format!("{big}000"));
    }

    #[test]
    fn trailing_zeros_do_not_double_the_buffer() {
        // A one-call number followed by a few zeros: growing the digits by
        // amortised doubling would leave the result's buffer about twice
        // its length (for 10^5!, whose 24,999 zeros follow 431,575 digits).
        let x = Natural::factorial(3_000) + Natural::from(1u32);
        let digits = x.to_string().len();
        let got = to_decimal_times_power_of_ten(&x, 10, &|| false).expect("not cancelled");
        assert_eq!(got.len(), digits + 10);
        assert!(
            got.capacity() < got.len() + got.len() / 4,
            "capacity {} for {} bytes",
            got.capacity(),
            got.len()
        );
    }

    #[test]
    fn default_sizes_take_the_tree_above_the_one_call_limit() {
        // Just over ONE_CALL_DIGITS digits: the default tree, Barrett levels
        // and all, against malachite.
        let x = ten_to(ONE_CALL_DIGITS + 5) - Natural::from(3u32);
        assert_eq!(
            to_decimal(&x, &|| false).expect("not cancelled"),
            x.to_string()
        );
        let y = Natural::factorial(150_000);
        assert_eq!(
            to_decimal(&y, &|| false).expect("not cancelled"),
            y.to_string()
        );
        assert_no_fallbacks();
    }

    #[test]
    fn cancels() {
        let x = Natural::factorial(3_000);
        assert_eq!(to_decimal_with_leaf(&x, 10, &|| true), Err(Cancelled));
        // Cancelled part-way, after the tables are built.
        let polls = std::cell::Cell::new(0);
        let result = to_decimal_with_leaf(&x, 10, &|| {
            polls.set(polls.get() + 1);
            polls.get() > 40
        });
        assert_eq!(result, Err(Cancelled));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "multiple of 64")]
    fn refuses_quotient_chunks_that_are_not_whole_limbs() {
        // Chunks are cut from the dividend's 64-bit limbs: 100 bits would
        // silently give wrong digits, so debug builds stop at once.
        let bad = StepSizes {
            quotient_chunk_bits: 100,
            ..sizes(10, true)
        };
        let x = Natural::factorial(3_000);
        let _ = to_decimal_with(&x, 0, bad, &|| false);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_to_string(limbs in proptest::collection::vec(any::<u64>(), 0..40), leaf in 1u64..30) {
            let x = Natural::from_owned_limbs_asc(limbs);
            prop_assert_eq!(to_decimal_with_leaf(&x, leaf, &|| false).expect("not cancelled"), x.to_string());
            assert_no_fallbacks();
        }

        #[test]
        fn matches_to_string_with_sparse_digits(e1 in 0u64..600, e2 in 0u64..600, a in 1u32..1_000, leaf in 1u64..30) {
            let x = Natural::from(a) * ten_to(e1) + ten_to(e2);
            prop_assert_eq!(to_decimal_with_leaf(&x, leaf, &|| false).expect("not cancelled"), x.to_string());
            assert_no_fallbacks();
        }

        #[test]
        fn matches_to_string_with_runs_of_nines(e1 in 1u64..600, e2 in 0u64..600, leaf in 1u64..30) {
            // e2 nines, then zeros with a 1 in the middle of them.
            let x = ten_to(e1 + e2) - ten_to(e1) + ten_to(e1 / 2);
            prop_assert_eq!(to_decimal_with_leaf(&x, leaf, &|| false).expect("not cancelled"), x.to_string());
            assert_no_fallbacks();
        }
    }
}
