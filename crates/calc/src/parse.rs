//! Recognising calculations in chat text.
//!
//! A chat text is a calculation iff it is optional ASCII whitespace, a
//! non-negative decimal integer `n` (leading zeros allowed), `k >= 1`
//! exclamation marks, then optional ASCII whitespace — `5!`, ` 10!! `,
//! `7!!!`. Anything else (`5 !`, `-3!`, `+3!`, `3!x`, `!`, `3`) is plain chat.
//!
//! The parser works on bytes in one pass and never allocates in proportion
//! to the input: an `n` that does not fit in a `u64` is summarised by its
//! digit count and leading digits, which is all a rejection needs. `k` always
//! fits, because it is at most the length of the text.

use std::fmt;

use crate::admit::Rejection;

/// A syntactically valid calculation whose numbers fit the engine's types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// The integer before the exclamation marks.
    pub n: u64,
    /// The number of exclamation marks: the step of the multifactorial
    /// `n·(n−k)·(n−2k)·…`, which stops at the last positive term. `k >= n`
    /// gives `n` itself (`5!!!!!!!!` = 5) and `0!…!` is always 1.
    pub k: u64,
}

impl Request {
    /// Longest run of `!` written out in full by `Display`; longer runs are
    /// summarised so that reason sentences stay short.
    const MAX_BANGS_SHOWN: u64 = 12;

    /// Number of factors in the product (0 for `n = 0`, the empty product).
    #[must_use]
    pub fn term_count(&self) -> u64 {
        if self.n == 0 || self.k == 0 {
            0
        } else {
            (self.n - 1) / self.k + 1
        }
    }
}

impl fmt::Display for Request {
    /// `10!!`, or `10!…! (k = 40)` when there are more than 12 marks.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.n)?;
        if self.k <= Self::MAX_BANGS_SHOWN {
            for _ in 0..self.k {
                f.write_str("!")?;
            }
            Ok(())
        } else {
            write!(f, "!…! (k = {})", self.k)
        }
    }
}

/// What a chat text is, as far as the calculator is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Plain chat: not of the form `n!…!`.
    NotACalculation,
    /// A calculation to estimate, admit and run.
    Calc(Request),
    /// A well-formed calculation whose `n` does not fit in a `u64`. Its result
    /// would have more than 10^20 digits, so it is refused before any work;
    /// the rejection says roughly how large it would have been.
    TooLarge(Rejection),
}

/// Classifies a chat text; see the module documentation for the grammar.
///
/// Runs in time linear in the text, without allocating in proportion to it.
#[must_use]
pub fn parse(text: &str) -> Parsed {
    let bytes = text.as_bytes();
    let mut i = skip_space(bytes, 0);

    let digits_start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let digits = &bytes[digits_start..i];
    if digits.is_empty() {
        return Parsed::NotACalculation;
    }

    let bangs_start = i;
    while i < bytes.len() && bytes[i] == b'!' {
        i += 1;
    }
    // usize -> u64 never truncates on supported (32/64-bit) targets.
    let k = (i - bangs_start) as u64;
    if k == 0 || skip_space(bytes, i) != bytes.len() {
        return Parsed::NotACalculation;
    }

    // Leading zeros do not make a number larger.
    let first_nonzero = digits.iter().position(|&d| d != b'0');
    let significant = first_nonzero.map_or(&digits[..0], |p| &digits[p..]);
    match parse_u64(significant) {
        Some(n) => Parsed::Calc(Request { n, k }),
        None => Parsed::TooLarge(Rejection::input_too_large(significant, k)),
    }
}

/// Index of the first non-whitespace byte at or after `i`.
fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The value of ASCII digits without leading zeros, or `None` on overflow.
/// More than 20 significant digits cannot fit, so the loop is short.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn calc(n: u64, k: u64) -> Parsed {
        Parsed::Calc(Request { n, k })
    }

    #[test]
    fn accepts_calculations() {
        assert_eq!(parse("5!"), calc(5, 1));
        assert_eq!(parse("  10!!"), calc(10, 2));
        assert_eq!(parse("7!!!  "), calc(7, 3));
        assert_eq!(parse("0!"), calc(0, 1));
        assert_eq!(parse("007!"), calc(7, 1));
        assert_eq!(parse("5!!!!!!!!"), calc(5, 8));
        assert_eq!(parse("\t20!\n"), calc(20, 1));
        assert_eq!(parse("18446744073709551615!"), calc(u64::MAX, 1));
        assert_eq!(
            parse(&format!("{}7!", "0".repeat(10_000))),
            calc(7, 1),
            "leading zeros never make n too large"
        );
    }

    #[test]
    fn rejects_plain_chat() {
        for text in [
            "", " ", "!", "5", "5 !", "-3!", "+3!", "3!x", "x3!", "3.0!", "3!!a", "3!?", "hello",
            "５!", "3! !", "1_000!", "0x10!",
        ] {
            assert_eq!(parse(text), Parsed::NotACalculation, "{text:?}");
        }
    }

    #[test]
    fn huge_n_is_too_large() {
        for text in [
            "18446744073709551616!",
            "99999999999999999999999!",
            "99999999999999999999999!!!!!!!!!",
        ] {
            let Parsed::TooLarge(rejection) = parse(text) else {
                panic!("{text} should be too large");
            };
            assert!(rejection.reason().contains("digits"), "{rejection}");
        }
        let long = format!("{}!", "9".repeat(10_000));
        let started = std::time::Instant::now();
        let Parsed::TooLarge(rejection) = parse(&long) else {
            panic!("a 10,000-digit n should be too large");
        };
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        assert!(rejection.reason().len() < 300, "{rejection}");
    }

    #[test]
    fn display_writes_marks_or_summary() {
        assert_eq!(Request { n: 10, k: 2 }.to_string(), "10!!");
        assert_eq!(Request { n: 10, k: 40 }.to_string(), "10!…! (k = 40)");
    }

    proptest! {
        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        #[test]
        fn round_trips(n in any::<u64>(), k in 1u64..50, lead in "[ \t]{0,3}", trail in "[ \t]{0,3}") {
            let text = format!("{lead}{n}{}{trail}", "!".repeat(k as usize));
            prop_assert_eq!(parse(&text), calc(n, k));
        }

        #[test]
        fn chat_like_text_is_not_a_calculation(text in "[a-z ,.?]{0,40}") {
            prop_assert_eq!(parse(&text), Parsed::NotACalculation);
        }
    }
}
