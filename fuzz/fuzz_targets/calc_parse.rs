//! `actorchat_calc::parse` (and what the server does next with its answer:
//! `admit`, and for small `n` the computation itself) on arbitrary strings.
//!
//! The classification is compared with an independent reading of the
//! grammar in the crate docs (ASCII whitespace, digits, `!`s, ASCII
//! whitespace); rejection sentences must stay short whatever the input; and
//! small accepted multifactorials are compared with a naive product.
#![no_main]

use std::sync::atomic::AtomicBool;

use actorchat_calc::{
    DEFAULT_DISPLAY_CAP, Limits, Natural, Parsed, Request, abbreviate, admit, compute_decimal,
    parse,
};
use libfuzzer_sys::fuzz_target;

/// Largest `n` whose result is computed and checked against the naive
/// product (`1000!` has 2,568 digits: microseconds either way).
const NAIVE_MAX_N: u64 = 1000;

/// Longest rejection sentence accepted, in characters: it goes into a chat
/// line, and the parser promises it never grows with the input.
const MAX_REASON_CHARS: usize = 300;

fuzz_target!(|text: &str| {
    let parsed = parse(text);
    match (grammar(text), &parsed) {
        (None, Parsed::NotACalculation) => {}
        (Some((digits, k)), Parsed::Calc(req)) => {
            assert_eq!(req.k, k, "{text:?}");
            assert!(req.k >= 1 && req.k <= text.len() as u64);
            assert_eq!(req.n.to_string(), significant(digits), "{text:?}");
            check_admission(*req);
        }
        (Some((digits, _)), Parsed::TooLarge(rejection)) => {
            assert!(
                significant(digits).parse::<u64>().is_err(),
                "{text:?} fits a u64 but was refused as too large"
            );
            check_reason(&rejection.reason());
        }
        (expected, got) => panic!("{text:?}: grammar says {expected:?}, parse says {got:?}"),
    }
});

/// The grammar, read independently of the parser: `(digits, k)` when `text`
/// is ASCII whitespace, one or more digits, `k >= 1` marks, ASCII whitespace.
fn grammar(text: &str) -> Option<(&str, u64)> {
    let core = text.trim_ascii();
    let digits_end = core.find(|c: char| !c.is_ascii_digit())?;
    let (digits, bangs) = core.split_at(digits_end);
    (!digits.is_empty() && bangs.bytes().all(|b| b == b'!')).then_some((digits, bangs.len() as u64))
}

/// The digits without leading zeros ("0" for zero).
fn significant(digits: &str) -> &str {
    match digits.trim_start_matches('0') {
        "" => "0",
        s => s,
    }
}

fn check_reason(reason: &str) {
    assert!(!reason.trim().is_empty());
    let chars = reason.chars().count();
    assert!(chars <= MAX_REASON_CHARS, "{chars} characters: {reason}");
}

fn check_admission(req: Request) {
    match admit(req, &Limits::default()) {
        Err(rejection) => check_reason(&rejection.reason()),
        Ok(estimate) => {
            assert!(
                estimate.digits >= 1 && estimate.bits >= 1,
                "{req}: {estimate:?}"
            );
            if req.n > NAIVE_MAX_N {
                return;
            }
            let cancel = AtomicBool::new(false);
            let decimal = compute_decimal(req, &cancel).expect("never cancelled");
            assert_eq!(decimal, naive(req).to_string(), "{req}");
            if estimate.exact {
                assert_eq!(estimate.digits, decimal.len() as u64, "{req}");
            } else {
                assert!(
                    estimate.digits >= decimal.len() as u64,
                    "{req}: {estimate:?}"
                );
            }
            let shown = abbreviate(&decimal, DEFAULT_DISPLAY_CAP);
            assert_eq!(shown.digits, decimal.len());
        }
    }
}

/// `n·(n−k)·(n−2k)·…` down to the last positive term, one factor at a time.
fn naive(req: Request) -> Natural {
    let mut product = Natural::from(1u32);
    let mut term = req.n;
    while term > 0 {
        product *= Natural::from(term);
        term = term.saturating_sub(req.k);
    }
    product
}
