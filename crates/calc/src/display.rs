//! Text for people: abbreviated results and the numbers in reason sentences.

use std::time::Duration;

/// Results with more digits than this are abbreviated for chat (the issue's
/// default display cap).
pub const DEFAULT_DISPLAY_CAP: usize = 10_000;

/// Digits kept at each end of an abbreviated result.
pub const EDGE_DIGITS: usize = 50;

/// A decimal result as it is shown in chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abbreviated {
    /// The digits, or `first 50 digits` + `…` (U+2026, one character) +
    /// `last 50 digits` when abbreviated — 101 characters, 103 bytes.
    pub text: String,
    /// Number of digits of the full value.
    pub digits: usize,
    /// Whether `text` is abbreviated.
    pub truncated: bool,
}

/// Shortens `decimal` for display when it has more than `cap` characters.
///
/// The abbreviation is the first and last [`EDGE_DIGITS`] characters joined by
/// `…`. A value that would not get shorter (at most 101 characters) is never
/// abbreviated, whatever `cap` says. Works on characters, so any `&str` is
/// safe, though it is meant for ASCII digits.
#[must_use]
pub fn abbreviate(decimal: &str, cap: usize) -> Abbreviated {
    let digits = decimal.chars().count();
    if digits <= cap || digits <= 2 * EDGE_DIGITS + 1 {
        return Abbreviated {
            text: decimal.to_owned(),
            digits,
            truncated: false,
        };
    }
    let mut text = String::with_capacity(2 * EDGE_DIGITS + '…'.len_utf8());
    text.extend(decimal.chars().take(EDGE_DIGITS));
    text.push('…');
    let tail_start = decimal
        .char_indices()
        .rev()
        .nth(EDGE_DIGITS - 1)
        .map_or(0, |(i, _)| i);
    text.push_str(&decimal[tail_start..]);
    Abbreviated {
        text,
        digits,
        truncated: true,
    }
}

/// `8565705523` → `8,565,705,523`.
pub(crate) fn group_thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count known through its base-10 logarithm: grouped digits while it fits
/// comfortably in a `u64`, else scientific notation like `2.2×10^24`.
pub(crate) fn count_from_log10(log10: f64) -> String {
    if log10 < 15.0 {
        group_thousands(10f64.powf(log10).floor() as u64)
    } else {
        let exponent = log10.floor();
        // Truncated, not rounded: these counts are lower bounds.
        let mantissa = (10f64.powf(log10 - exponent) * 10.0).floor() / 10.0;
        format!("{mantissa:.1}×10^{exponent}")
    }
}

/// `123456` → `120,000`: two significant figures, rounded down, for limits
/// that are themselves estimates.
pub(crate) fn round_down_2_sig(value: u64) -> u64 {
    let mut scale = 1u64;
    while value / scale >= 100 {
        scale *= 10;
    }
    value / scale * scale
}

/// `67108864` → `64 MiB`.
pub(crate) fn bytes(value: u64) -> String {
    const MIB: u64 = 1 << 20;
    if value >= MIB && value.is_multiple_of(MIB) {
        format!("{} MiB", value / MIB)
    } else if value >= MIB {
        format!("{:.1} MiB", value as f64 / MIB as f64)
    } else {
        format!("{value} bytes")
    }
}

/// `2 s`, `2.5 s`, `350 ms`.
pub(crate) fn duration(value: Duration) -> String {
    let ms = value.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1_000) {
        format!("{} s", ms / 1_000)
    } else {
        format!("{:.1} s", value.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept() {
        let a = abbreviate("120", DEFAULT_DISPLAY_CAP);
        assert_eq!(
            a,
            Abbreviated {
                text: "120".into(),
                digits: 3,
                truncated: false
            }
        );
        let hundred = "7".repeat(101);
        assert!(!abbreviate(&hundred, 10).truncated);
    }

    #[test]
    fn long_values_keep_both_ends() {
        let value: String = (0..10_001)
            .map(|i| char::from(b'0' + (i % 10) as u8))
            .collect();
        let a = abbreviate(&value, DEFAULT_DISPLAY_CAP);
        assert!(a.truncated);
        assert_eq!(a.digits, 10_001);
        assert_eq!(a.text.chars().count(), 101);
        assert_eq!(&a.text[..50], &value[..50]);
        assert_eq!(&a.text[a.text.len() - 50..], &value[value.len() - 50..]);
        assert!(a.text.contains('…'));
        assert!(!abbreviate(&value[..10_000], DEFAULT_DISPLAY_CAP).truncated);
    }

    #[test]
    fn numbers_for_people() {
        assert_eq!(group_thousands(8_565_705_523), "8,565,705,523");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1_000), "1,000");
        assert_eq!(count_from_log10(24.35), "2.2×10^24");
        assert_eq!(count_from_log10(24.3599), "2.2×10^24");
        assert_eq!(round_down_2_sig(123_456), 120_000);
        assert_eq!(round_down_2_sig(7), 7);
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(duration(Duration::from_millis(2_000)), "2 s");
        assert_eq!(duration(Duration::from_millis(3_140)), "3.1 s");
        assert_eq!(duration(Duration::from_millis(250)), "250 ms");
    }
}
