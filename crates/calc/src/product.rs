//! The multifactorial `n·(n−k)·(n−2k)·…`, computed in cancellable steps.
//!
//! malachite's own `Natural::factorial` is fast but one uninterruptible call
//! (about 0.15 s at `n = 10^6`, far longer for larger inputs). Here every big
//! multiplication is a separate step, and the cancel flag is polled between
//! steps, so a cancelled calculation stops within one step.
//!
//! Two algorithms, both built from the same balanced product tree:
//!
//! * **Factorials** (`k = 1`, and even `n` with `k = 2`, since
//!   `(2m)!! = 2^m·m!`) use the prime-swing recursion that GMP and malachite
//!   use: the odd part of `n!` is `odd(⌊n/2⌋!)² · odd(swing(n))`, where
//!   `swing(n) = n!/⌊n/2⌋!²` is the product of the prime powers `p^e` with
//!   `e = Σ_i ⌊n/p^i⌋ mod 2`. Each level is one squaring, one product tree
//!   over the primes up to `n` and one multiplication; the powers of two are
//!   restored with one shift at the end (`n!` has `n − popcount(n)` of them).
//!   This does about a third of the work of a plain product tree over
//!   `1..=n`, whose cost grows with the number of tree levels.
//! * **Other multifactorials** use a balanced binary tree over the terms
//!   `n, n−k, …`: leaves multiply a run of terms with word arithmetic (terms
//!   packed several to a `u64` while the product fits, then a schoolbook
//!   limb-by-word loop, [`LEAF_WORDS`] words per leaf), inner nodes multiply
//!   their children with malachite (Toom-Cook and FFT; balanced operands suit
//!   them). Factors of two are stripped from every term and restored by one
//!   shift at the end.

use malachite_base::num::arithmetic::traits::{Pow, Square};
use malachite_nz::natural::Natural;

use crate::cancel::{Cancel, Cancelled, check};
use crate::parse::Request;

/// Packed `u64` words multiplied together in one leaf. Chosen by benchmark
/// (`examples/bench.rs`): larger leaves spend quadratic time in schoolbook
/// multiplication, smaller ones pay malachite's per-call overhead.
const LEAF_WORDS: usize = 16;

/// Below this `n` the odd part of `n!` comes straight from the term tree;
/// the swing recursion's sieve is not worth it.
const SWING_MIN: u64 = 1_024;

/// Computes `n!…!` (k marks) exactly, polling `cancel` between
/// multiplications. Callers should [`admit`](crate::admit) the request
/// first: memory and time grow with the result (about `n·log2 n / k` bits).
///
/// # Errors
/// [`Cancelled`] as soon as `cancel` reports `true` at a check; intermediate
/// values are dropped before returning.
pub fn compute<C: Cancel + ?Sized>(req: Request, cancel: &C) -> Result<Natural, Cancelled> {
    let parts = factors(req, Fives::Keep, cancel)?;
    check(cancel)?;
    Ok(parts.rest << parts.twos)
}

/// `n!…!` as `(m, z)` with the result equal to `m·10^z`, where `z` is the
/// smaller of its exponents of 2 and 5: every trailing zero for factorials.
///
/// For the decimal digits this is cheaper than [`compute`]: the factors of
/// five never enter the products, and the conversion handles `m`, which is
/// shorter than the result (by 4.5 % at `10^6!`, whose 249,998 trailing
/// zeros are then appended as text).
///
/// # Errors
/// [`Cancelled`] as soon as `cancel` reports `true` at a check.
pub(crate) fn compute_over_tens<C: Cancel + ?Sized>(
    req: Request,
    cancel: &C,
) -> Result<(Natural, u64), Cancelled> {
    let parts = factors(req, Fives::Strip, cancel)?;
    let tens = parts.twos.min(parts.fives);
    let mut rest = parts.rest;
    if parts.fives > tens {
        check(cancel)?;
        rest *= Natural::from(5u32).pow(parts.fives - tens);
    }
    check(cancel)?;
    Ok((rest << (parts.twos - tens), tens))
}

/// Whether the factors of five are taken out of the products.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fives {
    Keep,
    Strip,
}

/// A result as `rest·2^twos·5^fives`. From the product paths `rest` is odd
/// (and, when the fives are stripped, not a multiple of five; otherwise
/// `fives` is 0). The trivial results (`n == 0`, or `k >= n`: the single
/// term `n`) come back as `rest = n` (or 1) with both exponents 0, unstripped:
/// callers may only rely on `rest·2^twos·5^fives` being the result, and
/// `compute_over_tens` then finds no factors of ten to take out, which is
/// still correct (`n = 10, k >= 10` is converted as "10").
struct Factors {
    rest: Natural,
    twos: u64,
    fives: u64,
}

/// The result of `req` as [`Factors`].
fn factors<C: Cancel + ?Sized>(
    req: Request,
    fives: Fives,
    cancel: &C,
) -> Result<Factors, Cancelled> {
    let Request { n, k } = req;
    if n == 0 || k >= n {
        // The empty product, or the single term n.
        return Ok(Factors {
            rest: Natural::from(n.max(1)),
            twos: 0,
            fives: 0,
        });
    }
    if k == 1 {
        odd_factorial(n, fives, cancel)
    } else if k == 2 && n % 2 == 0 {
        // (2m)!! = 2^m · m!
        let parts = odd_factorial(n / 2, fives, cancel)?;
        Ok(Factors {
            twos: parts.twos + n / 2,
            ..parts
        })
    } else {
        odd_multifactorial(req, fives, cancel)
    }
}

/// `n!` as [`Factors`].
fn odd_factorial<C: Cancel + ?Sized>(
    n: u64,
    strip: Fives,
    cancel: &C,
) -> Result<Factors, Cancelled> {
    let twos = n - u64::from(n.count_ones());
    if n < SWING_MIN {
        let parts = odd_multifactorial(Request { n, k: 1 }, strip, cancel)?;
        return Ok(Factors { twos, ..parts });
    }
    let sieve = OddSieve::new(n, cancel)?;
    // odd(m!) for the smallest level, then up: odd(m!) = odd(⌊m/2⌋!)²·oddswing(m),
    // and likewise for the parts without fives, whose exponents add up the same way.
    let mut levels = Vec::new();
    let mut m = n;
    while m >= SWING_MIN {
        levels.push(m);
        m /= 2;
    }
    let base = odd_multifactorial(Request { n: m, k: 1 }, strip, cancel)?;
    let (mut odd, mut fives) = (base.rest, base.fives);
    for &m in levels.iter().rev() {
        let (swing, swing_fives) = odd_swing(m, &sieve, strip, cancel)?;
        check(cancel)?;
        odd = odd.square();
        check(cancel)?;
        odd *= swing;
        fives = 2 * fives + swing_fives;
    }
    Ok(Factors {
        rest: odd,
        twos,
        fives,
    })
}

/// The odd part of `swing(m) = m!/⌊m/2⌋!²`: the product over odd primes
/// `p <= m` of `p^e`, `e = Σ_i ⌊m/p^i⌋ mod 2`. Each `p^e <= m` fits a word.
/// With [`Fives::Strip`], the power of five is left out and its exponent
/// returned (otherwise 0).
fn odd_swing<C: Cancel + ?Sized>(
    m: u64,
    sieve: &OddSieve,
    strip: Fives,
    cancel: &C,
) -> Result<(Natural, u64), Cancelled> {
    let mut words = Vec::new();
    let mut packed = 1u64;
    let mut fives = 0;
    for p in sieve.odd_primes_up_to(m) {
        let mut factor = 1u64;
        let mut exponent = 0;
        let mut q = m / p;
        while q > 0 {
            if q % 2 == 1 {
                factor *= p;
                exponent += 1;
            }
            q /= p;
        }
        if p == 5 && strip == Fives::Strip {
            fives = exponent;
            continue;
        }
        if factor > 1 {
            match packed.checked_mul(factor) {
                Some(product) => packed = product,
                None => {
                    words.push(packed);
                    packed = factor;
                }
            }
        }
    }
    words.push(packed);
    check(cancel)?;
    let swing = tree(
        0,
        words.len(),
        LEAF_WORDS,
        &mut |lo, hi| limbs_product(words[lo..hi].iter().copied()),
        cancel,
    )?;
    Ok((swing, fives))
}

/// A bitset of the odd primes up to a bound (bit `i` stands for `2i + 1`).
struct OddSieve {
    composite: Vec<u64>,
    limit: u64,
}

impl OddSieve {
    /// Sieve of Eratosthenes over odd numbers, polling `cancel` once per
    /// sieving prime (each pass touches at most `limit/6` bits).
    fn new<C: Cancel + ?Sized>(limit: u64, cancel: &C) -> Result<Self, Cancelled> {
        let bits = limit / 2 + 1;
        let mut composite = vec![0u64; bits.div_ceil(64) as usize];
        composite[0] |= 1; // 1 is not prime
        let mut p = 3u64;
        while p <= limit / p {
            if composite[(p / 2 / 64) as usize] & (1 << (p / 2 % 64)) == 0 {
                check(cancel)?;
                let mut multiple = p * p;
                while multiple <= limit {
                    let i = multiple / 2;
                    composite[(i / 64) as usize] |= 1 << (i % 64);
                    multiple += 2 * p;
                }
            }
            p += 2;
        }
        Ok(Self { composite, limit })
    }

    /// The odd primes `p <= m` (`m <= limit`), in increasing order.
    fn odd_primes_up_to(&self, m: u64) -> impl Iterator<Item = u64> + '_ {
        let m = m.min(self.limit);
        (1..=m.saturating_sub(1) / 2).filter_map(move |i| {
            let is_composite = self.composite[(i / 64) as usize] & (1 << (i % 64)) != 0;
            (!is_composite).then_some(2 * i + 1)
        })
    }
}

/// `n·(n−k)·…` as [`Factors`], by a balanced tree over the terms.
fn odd_multifactorial<C: Cancel + ?Sized>(
    req: Request,
    strip: Fives,
    cancel: &C,
) -> Result<Factors, Cancelled> {
    let count = req.term_count() as usize;
    if count == 0 {
        return Ok(Factors {
            rest: Natural::from(1u32),
            twos: 0,
            fives: 0,
        });
    }
    let bits_per_term = (u64::BITS - req.n.leading_zeros()) as usize;
    let terms_per_leaf = LEAF_WORDS * (64 / bits_per_term).max(1);
    let mut twos = 0u64;
    let mut fives = 0u64;
    let rest = tree(
        0,
        count,
        terms_per_leaf,
        &mut |lo, hi| {
            // i < term_count, so i·k <= n − 1 and every term is at least 1.
            limbs_product((lo as u64..hi as u64).map(|i| {
                let term = req.n - i * req.k;
                let zeros = term.trailing_zeros();
                twos += u64::from(zeros);
                let mut term = term >> zeros;
                if strip == Fives::Strip {
                    while term.is_multiple_of(5) {
                        term /= 5;
                        fives += 1;
                    }
                }
                term
            }))
        },
        cancel,
    )?;
    Ok(Factors { rest, twos, fives })
}

/// Product of items `lo..hi` as a balanced binary tree: `leaf` multiplies
/// runs of at most `leaf_size` items, malachite the inner nodes, with a
/// cancel check before every node.
fn tree<C: Cancel + ?Sized>(
    lo: usize,
    hi: usize,
    leaf_size: usize,
    leaf: &mut dyn FnMut(usize, usize) -> Natural,
    cancel: &C,
) -> Result<Natural, Cancelled> {
    check(cancel)?;
    if hi - lo <= leaf_size {
        return Ok(leaf(lo, hi));
    }
    let mid = lo + (hi - lo) / 2;
    let left = tree(lo, mid, leaf_size, leaf, cancel)?;
    let right = tree(mid, hi, leaf_size, leaf, cancel)?;
    check(cancel)?;
    Ok(left * right)
}

/// Product of word-sized factors with word arithmetic: factors are packed
/// into one word while the product fits, and each full word multiplies the
/// limb vector in place.
fn limbs_product(factors: impl Iterator<Item = u64>) -> Natural {
    let mut limbs: Vec<u64> = Vec::with_capacity(LEAF_WORDS + 2);
    limbs.push(1);
    let mut packed = 1u64;
    for factor in factors {
        match packed.checked_mul(factor) {
            Some(product) => packed = product,
            None => {
                mul_word(&mut limbs, packed);
                packed = factor;
            }
        }
    }
    mul_word(&mut limbs, packed);
    Natural::from_owned_limbs_asc(limbs)
}

/// `limbs *= w` in place (little-endian limbs).
fn mul_word(limbs: &mut Vec<u64>, w: u64) {
    let mut carry = 0u128;
    for limb in limbs.iter_mut() {
        let p = u128::from(*limb) * u128::from(w) + carry;
        *limb = p as u64;
        carry = p >> 64;
    }
    if carry != 0 {
        limbs.push(carry as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachite_base::num::arithmetic::traits::{DivRem, Multifactorial};
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    fn value(n: u64, k: u64) -> Natural {
        compute(Request { n, k }, &|| false).expect("not cancelled")
    }

    #[test]
    fn small_exact_values() {
        assert_eq!(value(0, 1), 1u32);
        assert_eq!(value(1, 1), 1u32);
        assert_eq!(value(5, 1), 120u32);
        assert_eq!(value(20, 1), 2_432_902_008_176_640_000u64);
        assert_eq!(value(10, 2), 3840u32);
        assert_eq!(value(9, 2), 945u32);
        assert_eq!(value(7, 3), 28u32);
        assert_eq!(value(5, 8), 5u32);
        assert_eq!(value(0, 3), 1u32);
    }

    #[test]
    fn agrees_with_malachite_multifactorial() {
        for (n, k) in [
            (2_000, 1),
            (3_001, 2),
            (4_567, 3),
            (10_000, 7),
            (123_456, 1_000),
        ] {
            assert_eq!(value(n, k), Natural::multifactorial(n, k), "{n} {k}");
        }
    }

    #[test]
    fn huge_terms_do_not_overflow() {
        let n = u64::MAX;
        let expected = Natural::from(n)
            * Natural::from(n - (1 << 62))
            * Natural::from(n - (2 << 62))
            * Natural::from(n - (3 << 62));
        assert_eq!(value(n, 1 << 62), expected);
    }

    #[test]
    fn cancellation_is_prompt() {
        let flag = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                flag.store(true, Ordering::Relaxed);
            });
            let started = Instant::now();
            // Takes seconds in a debug build if not cancelled.
            let result = compute(Request { n: 2_000_000, k: 3 }, &flag);
            assert_eq!(result, Err(Cancelled));
            assert!(started.elapsed() < Duration::from_secs(2));
        });
        assert_eq!(compute(Request { n: 10, k: 1 }, &|| true), Err(Cancelled));
        assert_eq!(
            compute(Request { n: 5_000, k: 1 }, &|| true),
            Err(Cancelled)
        );
        // Cancelled in the middle of the swing recursion.
        let polls = std::cell::Cell::new(0);
        let result = compute(Request { n: 5_000, k: 1 }, &|| {
            polls.set(polls.get() + 1);
            polls.get() > 20
        });
        assert_eq!(result, Err(Cancelled));
    }

    /// `m·10^z` from [`compute_over_tens`], multiplied out.
    fn value_over_tens(n: u64, k: u64) -> (Natural, u64) {
        compute_over_tens(Request { n, k }, &|| false).expect("not cancelled")
    }

    #[test]
    fn factorials_lose_exactly_their_trailing_zeros() {
        for n in [
            0u64, 1, 4, 5, 10, 24, 25, 1_000, 1_023, 1_024, 5_000, 30_000,
        ] {
            let (m, tens) = value_over_tens(n, 1);
            // Legendre: the exponent of 5 in n!.
            let mut expected = 0;
            let mut p = 5;
            while p <= n {
                expected += n / p;
                p *= 5;
            }
            assert_eq!(tens, expected, "{n}");
            assert!(m.to_string().ends_with(|c| c != '0'), "{n}");
            assert_eq!(m * Natural::from(10u32).pow(tens), value(n, 1), "{n}");
        }
    }

    #[test]
    fn sieve_finds_odd_primes() {
        let sieve = OddSieve::new(100, &|| false).expect("not cancelled");
        let primes: Vec<u64> = sieve.odd_primes_up_to(100).collect();
        assert_eq!(
            primes,
            [
                3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79,
                83, 89, 97
            ]
        );
        assert_eq!(sieve.odd_primes_up_to(9).collect::<Vec<_>>(), [3, 5, 7]);
        assert_eq!(sieve.odd_primes_up_to(2).count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn quotient_of_consecutive_factorials_is_n(n in 1u64..3_000) {
            let (q, r) = value(n, 1).div_rem(value(n - 1, 1));
            prop_assert_eq!(r, 0u32);
            prop_assert_eq!(q, n);
        }

        #[test]
        fn matches_multifactorial(n in 0u64..2_000, k in 1u64..20) {
            prop_assert_eq!(value(n, k), Natural::multifactorial(n, k));
        }

        #[test]
        fn over_tens_matches_multifactorial(n in 0u64..3_000, k in 1u64..20) {
            let (m, tens) = value_over_tens(n, k);
            prop_assert_eq!(m * Natural::from(10u32).pow(tens), Natural::multifactorial(n, k));
        }
    }
}
