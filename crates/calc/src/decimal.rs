//! Cancellable conversion of a `Natural` to decimal digits.
//!
//! malachite's `to_string` is fast but one uninterruptible call (about one
//! second for the 5.6 million digits of `10^6!` on the benchmark machine). This module splits the work
//! into steps of bounded size with the classic divide-and-conquer scheme:
//!
//! 1. Bound the digit count `D` from the bit length, and pick a leaf size `L`
//!    and a depth `h` with `L·2^h >= D` and `L <= LEAF_DIGITS`.
//! 2. Compute `p_j = 10^(L·2^j)` for `j < h` by repeated squaring.
//! 3. Split `x = q·p_{h−1} + r` by one division; both halves are below
//!    `p_{h−1}`, so recurse on each one level down. Leaves (below `10^L`) use
//!    malachite's `to_string`.
//!
//! A single division of a 2b-bit number by a b-bit power is too long a step
//! at the top of the tree (about 0.25 s of CPU for `10^6!`), so large divisions are
//! done as long division in base `2^QUOTIENT_CHUNK_BITS`: each step divides
//! the running remainder, extended by the next chunk of the dividend, by the
//! power, yielding one quotient chunk. The steps cost a little more in total
//! than one division but each is a fraction of it, and the flag is polled
//! between them.
//!
//! Every lower half is zero-padded to exactly `L·2^j` digits, because its
//! leading zeros are real digits of the result; only the most significant
//! piece is written without padding, and a most significant quotient of zero
//! is skipped entirely (the digit bound `D` may overshoot by one). The cancel
//! flag is polled between squarings, between divisions and between leaves.

use malachite_base::num::arithmetic::traits::{DivRem, Pow};
use malachite_base::num::logic::traits::SignificantBits;
use malachite_nz::natural::Natural;

use crate::cancel::{Cancel, Cancelled, check};

/// Largest leaf, in decimal digits, handed to malachite's `to_string`.
/// Tuned on `10^6!`: malachite's own divide-and-conquer is faster than ours
/// level for level, so leaves are as large as the step budget allows — one
/// leaf takes about 50 ms of CPU. Leaves of 4,000 digits cost 1.5× as much
/// in total.
const LEAF_DIGITS: u64 = 1 << 19;

/// Divisors from this many bits on are divided in chunks (see the module
/// docs); a whole division by a smaller divisor takes at most about 50 ms.
const CHUNKED_DIVISOR_BITS: u64 = 1 << 22;

/// Quotient bits produced by one step of a chunked division (a multiple of
/// 64). At `10^6!` a step takes about 50 ms of CPU, against about 250 ms for
/// the whole top-level division in one call; smaller chunks add more total
/// work (1M-bit chunks: +25 %) than they save in latency.
const QUOTIENT_CHUNK_BITS: u64 = 1 << 21;

/// Sizes of the steps of a conversion; tests shrink them to exercise every
/// path on small numbers.
#[derive(Clone, Copy)]
struct StepSizes {
    /// Largest leaf, in digits, converted by malachite's `to_string`.
    leaf_digits: u64,
    /// Divisors from this many bits on are divided in chunks.
    chunked_divisor_bits: u64,
    /// Quotient bits per chunked step; a multiple of 64.
    quotient_chunk_bits: u64,
}

const STEP_SIZES: StepSizes = StepSizes {
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
    to_decimal_with(x, STEP_SIZES, cancel)
}

/// [`to_decimal`] with the given step sizes.
fn to_decimal_with<C: Cancel + ?Sized>(
    x: &Natural,
    sizes: StepSizes,
    cancel: &C,
) -> Result<String, Cancelled> {
    let leaf_max = sizes.leaf_digits;
    let bits = x.significant_bits();
    // Upper bound on the digit count: x < 2^bits <= 10^ceil(bits·log10 2).
    let max_digits = (bits as f64 * LOG10_2_UP).ceil() as u64 + 1;
    if max_digits <= leaf_max {
        return Ok(x.to_string());
    }

    // Smallest depth h with ceil(D / 2^h) <= LEAF_DIGITS; then L·2^h >= D.
    let mut depth = 0u32;
    while max_digits.div_ceil(1 << depth) > leaf_max {
        depth += 1;
    }
    let leaf_digits = max_digits.div_ceil(1 << depth);

    let mut powers: Vec<Natural> = Vec::with_capacity(depth as usize);
    powers.push(Natural::from(10u32).pow(leaf_digits));
    for _ in 1..depth {
        check(cancel)?;
        let last = powers.last().ok_or(Cancelled)?;
        let square = last * last;
        powers.push(square);
    }

    let mut out = String::with_capacity(max_digits as usize);
    let converter = Converter {
        powers: &powers,
        leaf_digits,
        sizes,
        cancel,
    };
    check(cancel)?;
    converter.unpadded(x.clone(), depth, &mut out)?;
    Ok(out)
}

/// Shared state of one conversion.
struct Converter<'a, C: ?Sized> {
    /// `powers[j] = 10^(leaf_digits·2^j)`.
    powers: &'a [Natural],
    /// Digits in a (padded) leaf.
    leaf_digits: u64,
    sizes: StepSizes,
    cancel: &'a C,
}

impl<C: Cancel + ?Sized> Converter<'_, C> {
    /// Writes `x < 10^(L·2^level)` without leading zeros.
    fn unpadded(&self, x: Natural, level: u32, out: &mut String) -> Result<(), Cancelled> {
        check(self.cancel)?;
        if level == 0 || x < self.powers[level as usize - 1] {
            // Either a leaf, or small enough to skip a level.
            if level == 0 {
                out.push_str(&x.to_string());
                return Ok(());
            }
            return self.unpadded(x, level - 1, out);
        }
        let (q, r) = self.div_rem(x, level - 1)?;
        self.unpadded(q, level - 1, out)?;
        self.padded(r, level - 1, out)
    }

    /// Writes `x < 10^(L·2^level)` as exactly `L·2^level` digits.
    fn padded(&self, x: Natural, level: u32, out: &mut String) -> Result<(), Cancelled> {
        check(self.cancel)?;
        if level == 0 {
            let digits = x.to_string();
            for _ in digits.len() as u64..self.leaf_digits {
                out.push('0');
            }
            out.push_str(&digits);
            return Ok(());
        }
        if x == 0u32 {
            // Common in the low halves of numbers with long zero runs.
            let zeros = self.leaf_digits << level;
            out.extend(std::iter::repeat_n('0', zeros as usize));
            return Ok(());
        }
        let (q, r) = self.div_rem(x, level - 1)?;
        self.padded(q, level - 1, out)?;
        self.padded(r, level - 1, out)
    }
}

impl<C: Cancel + ?Sized> Converter<'_, C> {
    /// `x.div_rem(powers[j])`, as a chunked long division when the divisor
    /// is large (see the module docs), polling the flag between chunks.
    fn div_rem(&self, x: Natural, j: u32) -> Result<(Natural, Natural), Cancelled> {
        let d = &self.powers[j as usize];
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
        if chunked {
            StepSizes {
                leaf_digits,
                chunked_divisor_bits: 64,
                quotient_chunk_bits: 64,
            }
        } else {
            StepSizes {
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
        to_decimal_with(x, sizes(leaf, leaf % 2 == 0), cancel)
    }

    /// Checks the conversion against malachite for several leaf sizes, down
    /// to leaves of one digit, with and without chunked division.
    fn check_eq(x: &Natural) {
        let expected = x.to_string();
        for leaf in [1, 2, 3, 7, 50, LEAF_DIGITS] {
            for chunked in [false, true] {
                let got =
                    to_decimal_with(x, sizes(leaf, chunked), &|| false).expect("not cancelled");
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
        }
        check_eq(&Natural::factorial(300));
        check_eq(&Natural::factorial(3_000));
        check_eq(&Natural::factorial(20_000));
    }

    #[test]
    fn cancels() {
        let x = Natural::factorial(3_000);
        assert_eq!(to_decimal_with_leaf(&x, 10, &|| true), Err(Cancelled));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_to_string(limbs in proptest::collection::vec(any::<u64>(), 0..40), leaf in 1u64..30) {
            let x = Natural::from_owned_limbs_asc(limbs);
            prop_assert_eq!(to_decimal_with_leaf(&x, leaf, &|| false).expect("not cancelled"), x.to_string());
        }

        #[test]
        fn matches_to_string_with_sparse_digits(e1 in 0u64..600, e2 in 0u64..600, a in 1u32..1_000, leaf in 1u64..30) {
            let x = Natural::from(a) * ten_to(e1) + ten_to(e2);
            prop_assert_eq!(to_decimal_with_leaf(&x, leaf, &|| false).expect("not cancelled"), x.to_string());
        }
    }
}
