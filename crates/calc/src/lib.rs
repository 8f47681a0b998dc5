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
//! 3. [`compute`] the product and convert it [`to_decimal`], both polling a
//!    [`Cancel`] between steps of bounded size (each well under 0.1 s at
//!    `n = 10^6`), so a cancelled calculation stops and frees its memory
//!    promptly.
//! 4. [`abbreviate`] the digits for chat.
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
    Estimate, PEAK_BYTES_FIXED, PEAK_BYTES_PER_RESULT_BYTE, TIME_FIXED, TIME_NS_PER_BIT_LOG2,
    estimate,
};
pub use malachite_nz::natural::Natural;
pub use parse::{Parsed, Request, parse};
pub use product::compute;

/// [`compute`] then [`to_decimal`]: the decimal digits of `req`'s result.
///
/// # Errors
/// [`Cancelled`] as soon as `cancel` reports `true` at a check; the partial
/// result is dropped before returning.
pub fn compute_decimal<C: Cancel + ?Sized>(req: Request, cancel: &C) -> Result<String, Cancelled> {
    let value = compute(req, cancel)?;
    to_decimal(&value, cancel)
}
