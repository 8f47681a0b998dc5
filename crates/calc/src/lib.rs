//! actorchat's calculation engine: multifactorials (`5!`, `10!!`, `7!!!`)
//! from chat text to abbreviated decimal digits.
//!
//! The engine is pure and synchronous — no async runtime, no threads, no
//! timers — so the server decides where it runs (dedicated low-priority
//! threads) and when it stops (timeouts, disconnects). The pipeline:
//!
//! 1. [`parse`] a chat text into a [`Request`] (or plain chat, or a rejection
//!    when `n` is too large to represent).
//! 2. [`admit`] it against [`Limits`]: a cheap [`Estimate`] of size, peak
//!    memory and time refuses hopeless work before it starts.
//! 3. [`compute`] the product and convert it [`to_decimal`] (together:
//!    [`compute_decimal`]), both polling a [`Cancel`] between steps of
//!    bounded size (at most about 25 ms of CPU at `n = 10^6`), so a
//!    cancelled calculation stops and frees its memory promptly.
//! 4. [`abbreviate`] the digits for chat.
//!
//! ```
//! use std::sync::atomic::AtomicBool;
//! use actorchat_calc::{abbreviate, admit, compute_decimal, parse, Limits, Parsed, DEFAULT_DISPLAY_CAP};
//!
//! let limits = Limits::default(); // 64 MiB, 2 s
//! let cancel = AtomicBool::new(false); // set by the timeout or a disconnect
//! match parse("10!!") {
//!     Parsed::NotACalculation => { /* plain chat */ }
//!     Parsed::TooLarge(rejection) => println!("rejected: {}", rejection.reason()),
//!     Parsed::Calc(req) => match admit(req, &limits) {
//!         Err(rejection) => println!("rejected: {}", rejection.reason()),
//!         Ok(estimate) => {
//!             // estimate.peak_bytes goes against the global memory budget.
//!             let digits = compute_decimal(req, &cancel).expect("not cancelled");
//!             let shown = abbreviate(&digits, DEFAULT_DISPLAY_CAP);
//!             assert_eq!((shown.text.as_str(), shown.digits, shown.truncated), ("3840", 4, false));
//!             assert!(estimate.digits >= 4);
//!         }
//!     },
//! }
//! ```
//!
//! Modules: `parse` (grammar), `estimate` (size/memory/time model), `admit`
//! (limits and rejection sentences), `product` (cancellable product tree),
//! `decimal` (cancellable radix conversion), `display` (text for people),
//! `cancel` (the cancellation contract).

mod admit;
mod cancel;
mod decimal;
mod display;
mod estimate;
mod parse;
mod product;

pub use admit::{Limits, Rejection, admit};
pub use cancel::{Cancel, Cancelled};
pub use decimal::to_decimal;
pub use display::{Abbreviated, DEFAULT_DISPLAY_CAP, EDGE_DIGITS, abbreviate};
pub use estimate::{
    Estimate, PEAK_BYTES_FIXED, PEAK_BYTES_PER_RESULT_BYTE, TIME_EXPONENT, TIME_FIXED,
    TIME_NS_COEFF, estimate,
};
pub use malachite_nz::natural::Natural;
pub use parse::{Parsed, Request, parse};
pub use product::compute;

/// The decimal digits of `req`'s result: the same as [`compute`] then
/// [`to_decimal`], but the factors of ten never enter the arithmetic (the
/// product is computed without them, converted, and the zeros appended), so
/// both phases work on a shorter number.
///
/// # Errors
/// [`Cancelled`] as soon as `cancel` reports `true` at a check; the partial
/// result is dropped before returning.
pub fn compute_decimal<C: Cancel + ?Sized>(req: Request, cancel: &C) -> Result<String, Cancelled> {
    // The trailing zeros (a quarter of n for n!) are neither multiplied in
    // nor converted: they are appended as text.
    let (value, tens) = product::compute_over_tens(req, cancel)?;
    decimal::to_decimal_times_power_of_ten(&value, tens, cancel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachite_base::num::arithmetic::traits::Multifactorial;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// End to end against malachite's own multifactorial, an independent
        /// computation: the product tree (swing factorial from 1,024 on, the
        /// `(2m)!! = 2^m·m!` shortcut, the general product), the factors of
        /// ten taken out and the zeros appended as text.
        #[test]
        fn compute_decimal_matches_malachite(
            n in prop_oneof![0u64..64, 0u64..30_000],
            k in prop_oneof![1u64..=3, 1u64..=40, 0u64..=u64::MAX],
        ) {
            let k = k.max(1);
            let got = compute_decimal(Request { n, k }, &|| false).expect("not cancelled");
            let expected = Natural::multifactorial(n, k).to_string();
            // Not prop_assert_eq!: a failure would print both numbers in full.
            prop_assert!(
                got == expected,
                "n = {}, k = {}: {} digits, expected {}; first difference at {:?}",
                n,
                k,
                got.len(),
                expected.len(),
                got.bytes().zip(expected.bytes()).position(|(a, b)| a != b)
            );
        }
    }
}
