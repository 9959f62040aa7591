//! Human-written durations, bandwidths and sizes, as scenario files spell
//! them.
//!
//! Durations are a decimal number followed by a unit: `"250ms"`, `"30s"`,
//! `"2m"`, `"1.5s"`. Bandwidths are a decimal number of bits per second with
//! an SI prefix: `"512kbit"`, `"100Mbit"`, `"1Gbit"`. Sizes are a decimal
//! number of bytes with a unit: `"64KiB"`, `"1.5MB"`, `"8MiB"`, `"1500B"`.
//! All are parsed with integer arithmetic (no floating point), so `"0.1s"`
//! is exactly 100 ms on every machine.

use std::fmt;
use std::time::Duration;

/// Why a duration or bandwidth string was rejected. Its `Display` is a short
/// phrase meant to follow a field name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The string does not start with a decimal number.
    #[error("{0:?} is not a number followed by a unit; expected e.g. {1}")]
    NotANumber(String, &'static str),
    /// The number is fine but the unit is not one we know.
    #[error("{0:?} has an unknown unit; expected one of {1}")]
    UnknownUnit(String, &'static str),
    /// The value does not fit (more than about 584 years, or 2^64 bit/s).
    #[error("{0:?} is out of range")]
    OutOfRange(String),
    /// More decimals than the smallest unit resolves (`"1.5ns"`).
    #[error("{0:?} is finer than 1ns (or 1bit/s)")]
    TooPrecise(String),
    /// A size that is not a whole number of bytes (`"1.5B"`).
    #[error("{0:?} is not a whole number of bytes")]
    FractionalBytes(String),
}

/// Duration units, smallest first: suffix and nanoseconds per unit.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];
const DURATION_UNIT_NAMES: &str = "ns, us, ms, s, m, h";
const DURATION_EXAMPLE: &str = "\"250ms\", \"30s\", \"1.5s\", \"2m\"";

/// Bandwidth units (case-insensitive): suffix and bits per second per unit.
const BANDWIDTH_UNITS: &[(&str, u128)] = &[("bit", 1), ("kbit", 1_000), ("mbit", 1_000_000), ("gbit", 1_000_000_000)];
const BANDWIDTH_UNIT_NAMES: &str = "bit, kbit, Mbit, Gbit";
const BANDWIDTH_EXAMPLE: &str = "\"512kbit\", \"100Mbit\", \"1Gbit\"";

/// Size units (case-sensitive): suffix and bytes per unit. `kB` is 1000
/// bytes and `KiB` 1024 (IEC 80000-13), so no size is a guess.
const SIZE_UNITS: &[(&str, u128)] = &[
    ("B", 1),
    ("kB", 1_000),
    ("KiB", 1 << 10),
    ("MB", 1_000_000),
    ("MiB", 1 << 20),
    ("GB", 1_000_000_000),
    ("GiB", 1 << 30),
];
/// The size units, as errors list them.
pub const SIZE_UNIT_NAMES: &str = "B, kB, KiB, MB, MiB, GB, GiB";
const SIZE_EXAMPLE: &str = "\"64KiB\", \"1.5MB\", \"8MiB\"";

/// Parses `"250ms"`, `"30s"`, `"1.5s"`, `"2m"`, `"1h"`, `"10us"`, `"0s"`.
///
/// Whitespace around the number and the unit is not allowed: the scenario
/// format is strict so that a typo is an error, not a surprise.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let nanos = parse_scaled(text, DURATION_UNITS, false, DURATION_UNIT_NAMES, DURATION_EXAMPLE)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| UnitError::OutOfRange(text.to_owned()))?;
    // The remainder is below 1e9 and fits in u32.
    let sub = (nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

/// Parses `"100Mbit"`, `"512kbit"`, `"1Gbit"`, `"1.5Mbit"`, `"9600bit"` into
/// bits per second. Prefixes are SI (1 kbit = 1000 bit), as in `tc`.
pub fn parse_bandwidth(text: &str) -> Result<u64, UnitError> {
    let bits = parse_scaled(text, BANDWIDTH_UNITS, true, BANDWIDTH_UNIT_NAMES, BANDWIDTH_EXAMPLE)?;
    u64::try_from(bits).map_err(|_| UnitError::OutOfRange(text.to_owned()))
}

/// Parses `"64KiB"`, `"1.5MB"`, `"8MiB"`, `"1500B"`, `"2GiB"` into bytes,
/// exactly: a size that is not a whole number of bytes (`"1.5B"`) is
/// refused, and so is a bare number (`"64"`): a size always says its unit.
/// Units are case-sensitive (`"64KB"` is neither `kB` nor `KiB`).
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let bytes = parse_scaled(text, SIZE_UNITS, false, SIZE_UNIT_NAMES, SIZE_EXAMPLE).map_err(|e| match e {
        UnitError::TooPrecise(text) => UnitError::FractionalBytes(text),
        e => e,
    })?;
    u64::try_from(bytes).map_err(|_| UnitError::OutOfRange(text.to_owned()))
}

/// Formats a duration the way scenario files write it, with the largest unit
/// that keeps it exact: `1.5s`, `250ms`, `2m`, `0s`.
pub fn format_duration(d: Duration) -> String {
    DurationDisplay(d).to_string()
}

struct DurationDisplay(Duration);

impl fmt::Display for DurationDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        // Minutes and hours only when whole; otherwise the largest of s, ms,
        // us, ns that leaves at most three decimals.
        for &(unit, scale) in DURATION_UNITS.iter().rev() {
            if scale >= 60_000_000_000 {
                if nanos % scale == 0 {
                    return write!(f, "{}{unit}", nanos / scale);
                }
                continue;
            }
            if nanos >= scale && (nanos * 1000) % scale == 0 {
                let whole = nanos / scale;
                let frac = nanos % scale * 1000 / scale;
                return if frac == 0 {
                    write!(f, "{whole}{unit}")
                } else {
                    let digits = format!("{frac:03}");
                    write!(f, "{whole}.{}{unit}", digits.trim_end_matches('0'))
                };
            }
        }
        write!(f, "{nanos}ns")
    }
}

/// Splits `text` into a decimal number and a unit from `units`, and returns
/// the number times the unit's scale, exactly.
fn parse_scaled(
    text: &str,
    units: &[(&str, u128)],
    case_insensitive: bool,
    unit_names: &'static str,
    example: &'static str,
) -> Result<u128, UnitError> {
    let number_len = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    // "1", "1.5"; not "", ".5", "1.", "1.2.3".
    let (whole, frac, has_point) = match number.split_once('.') {
        Some((w, f)) => (w, f, true),
        None => (number, "", false),
    };
    let malformed = whole.is_empty() || (has_point && frac.is_empty()) || frac.contains('.');
    if malformed {
        return Err(UnitError::NotANumber(text.to_owned(), example));
    }
    let scale = units
        .iter()
        .find(|(name, _)| if case_insensitive { name.eq_ignore_ascii_case(unit) } else { *name == unit })
        .map(|&(_, scale)| scale)
        .ok_or_else(|| UnitError::UnknownUnit(text.to_owned(), unit_names))?;
    let out_of_range = || UnitError::OutOfRange(text.to_owned());
    // At most 38 digits fit in a u128; more is out of range anyway.
    if whole.len() > 30 || frac.len() > 30 {
        return Err(out_of_range());
    }
    let whole: u128 = whole.parse().map_err(|_| out_of_range())?;
    let mut value = whole.checked_mul(scale).ok_or_else(out_of_range)?;
    if !frac.is_empty() {
        let digits: u128 = frac.parse().map_err(|_| out_of_range())?;
        let denominator = 10u128.pow(frac.len() as u32);
        let scaled = digits.checked_mul(scale).ok_or_else(out_of_range)?;
        if scaled % denominator != 0 {
            // Finer than the unit's resolution (e.g. "1.5ns"): refuse rather
            // than round silently.
            return Err(UnitError::TooPrecise(text.to_owned()));
        }
        value = value.checked_add(scaled / denominator).ok_or_else(out_of_range)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_every_unit_parse_exactly() {
        // Given the strings a scenario author writes,
        // when they are parsed,
        // then each gives the exact duration.
        let cases = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected_with_a_reason() {
        assert_eq!(
            parse_duration("30").unwrap_err().to_string(),
            "\"30\" has an unknown unit; expected one of ns, us, ms, s, m, h"
        );
        assert_eq!(
            parse_duration("fast").unwrap_err().to_string(),
            "\"fast\" is not a number followed by a unit; expected e.g. \"250ms\", \"30s\", \"1.5s\", \"2m\""
        );
        for bad in ["", "s", ".5s", "1.s", "1..2s", "-1s", "1 s", " 1s", "1S", "1.5ns"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_duration("99999999999999999999h"), Err(UnitError::OutOfRange("99999999999999999999h".into())));
    }

    #[test]
    fn bandwidths_parse_to_bits_per_second() {
        assert_eq!(parse_bandwidth("100Mbit"), Ok(100_000_000));
        assert_eq!(parse_bandwidth("512kbit"), Ok(512_000));
        assert_eq!(parse_bandwidth("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_bandwidth("1.5mbit"), Ok(1_500_000));
        assert_eq!(parse_bandwidth("9600bit"), Ok(9600));
        assert_eq!(
            parse_bandwidth("10MB").unwrap_err().to_string(),
            "\"10MB\" has an unknown unit; expected one of bit, kbit, Mbit, Gbit"
        );
    }

    #[test]
    fn sizes_parse_to_exact_bytes() {
        // Given the forms a scenario author writes, when they are parsed,
        // then each is an exact number of bytes, powers of ten or of two.
        let cases = [
            ("64KiB", 65_536),
            ("64kB", 64_000),
            ("1.5MB", 1_500_000),
            ("8MiB", 8 << 20),
            ("1500B", 1500),
            ("2GiB", 2 << 30),
            ("0B", 0),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        // and anything else is refused with a reason.
        for bad in ["", "KiB", "-1KiB", "1.KiB", ".5KiB", "1..5KiB", "64kb", "64 KiB", "lots", "64", "20ms"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(parse_size("1.5B"), Err(UnitError::FractionalBytes("1.5B".into())));
        assert_eq!(
            parse_size("64KB").unwrap_err().to_string(),
            "\"64KB\" has an unknown unit; expected one of B, kB, KiB, MB, MiB, GB, GiB"
        );
        assert_eq!(parse_size("99999999999999999999GiB"), Err(UnitError::OutOfRange("99999999999999999999GiB".into())));
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for text in ["0s", "1.5s", "250ms", "2m", "1h", "30s", "1.25ms", "10us", "7ns", "90s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed), "{text}");
        }
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_micros(1250)), "1.25ms");
    }
}
