//! A timestamp's RFC 3339 text in the one shape kordon writes and devices
//! send, `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z`, written and read without
//! jiff's general printer and parser.
//!
//! A device's `ts` is mostly such a text, and every fix is journaled with
//! two of them; jiff's printer, reached through `fmt::Display`, was a
//! twentieth of the journal's thread at 10,000 fixes/s. The text is byte for byte jiff's own (the
//! tests compare both over any timestamp), and any text outside the shape
//! (an offset, a leap second, a lower-case `z`, a year past 9999) goes to
//! jiff, which decides. This module never reads a clock.

use jiff::Timestamp;
use serde::Serializer;

const SECONDS_PER_DAY: i64 = 86_400;
/// `YYYY-MM-DDTHH:MM:SS.fffffffffZ`.
const LONGEST: usize = 30;

/// A timestamp's text, on the stack.
pub struct Text {
    bytes: [u8; LONGEST],
    len: usize,
}

impl Text {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// `ts` as jiff's `Display` writes it, for years 0000 to 9999 (jiff's
/// sign and six digits beyond that are left to jiff: `None`).
pub fn write(ts: Timestamp) -> Option<Text> {
    let (mut seconds, mut nanos) = (ts.as_second(), ts.subsec_nanosecond());
    // Before 1970 jiff counts the fraction back from the second.
    if nanos < 0 {
        seconds -= 1;
        nanos += 1_000_000_000;
    }
    let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
    if !(0..=9999).contains(&year) {
        return None;
    }
    let of_day = seconds.rem_euclid(SECONDS_PER_DAY);
    let mut text = Text {
        bytes: *b"0000-00-00T00:00:00.000000000Z",
        len: 0,
    };
    let b = &mut text.bytes;
    let year = year as u32;
    pair(&mut b[0..2], year / 100);
    pair(&mut b[2..4], year % 100);
    pair(&mut b[5..7], month);
    pair(&mut b[8..10], day);
    let of_day = of_day as u32;
    pair(&mut b[11..13], of_day / 3600);
    pair(&mut b[14..16], of_day / 60 % 60);
    pair(&mut b[17..19], of_day % 60);
    text.len = if nanos == 0 {
        19
    } else {
        let nanos = nanos as u32;
        b[20] = b'0' + (nanos / 100_000_000) as u8;
        pair(&mut b[21..23], nanos / 1_000_000 % 100);
        pair(&mut b[23..25], nanos / 10_000 % 100);
        pair(&mut b[25..27], nanos / 100 % 100);
        pair(&mut b[27..29], nanos % 100);
        // jiff writes the fraction without its trailing zeros.
        let mut end = 29;
        while b[end - 1] == b'0' {
            end -= 1;
        }
        end
    };
    b[text.len] = b'Z';
    text.len += 1;
    Some(text)
}

/// The timestamp `text` names, as `text.parse::<Timestamp>()` reads it.
pub fn read(text: &str) -> Result<Timestamp, jiff::Error> {
    match read_plain(text.as_bytes()) {
        Some(ts) => Ok(ts),
        None => text.parse(),
    }
}

/// A serde `serialize_with` for a timestamp: the same text as jiff's
/// `Serialize`, which writes its `Display`.
pub fn serialize<S: Serializer>(ts: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    match write(*ts) {
        Some(text) => serializer.serialize_str(text.as_str()),
        None => serializer.collect_str(ts),
    }
}

/// The shape [`write`] writes, with every field in range; `None` for
/// anything else, which jiff then reads (or refuses).
fn read_plain(b: &[u8]) -> Option<Timestamp> {
    if b.len() < 20 || b[b.len() - 1] != b'Z' {
        return None;
    }
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(at, byte)| b[at] != byte) {
        return None;
    }
    let year = number(&b[0..4])?;
    let (month, day) = (number(&b[5..7])?, number(&b[8..10])?);
    let (hour, minute, second) = (
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
    );
    let in_range = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !in_range {
        return None;
    }
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(year as i64, month, day);
    let seconds = days * SECONDS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second);
    Timestamp::new(seconds, nanos as i32).ok()
}

/// The value of ASCII digits; `None` if any is not one.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}

/// Writes `n` (below 100) as two digits: a digit at a time was most of
/// [`write`]'s cost.
fn pair(out: &mut [u8], n: u32) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let at = n as usize % 100 * 2;
    out.copy_from_slice(&PAIRS[at..at + 2]);
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date of a day since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every timestamp jiff can hold.
    fn any_timestamp() -> impl Strategy<Value = Timestamp> {
        let (min, max) = (Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
        (min..=max, 0..1_000_000_000i32, 0..4u32).prop_filter_map(
            "in jiff's range",
            |(seconds, nanos, round)| {
                // Whole seconds, milliseconds and microseconds are common.
                let nanos = match round {
                    0 => 0,
                    1 => nanos / 1_000_000 * 1_000_000,
                    2 => nanos / 1_000 * 1_000,
                    _ => nanos,
                };
                let nanos = if seconds < 0 { -nanos } else { nanos };
                Timestamp::new(seconds, nanos).ok()
            },
        )
    }

    /// Near today, where every fix is.
    fn recent_timestamp() -> impl Strategy<Value = Timestamp> {
        (1_600_000_000i64..2_000_000_000, 0..1_000i32)
            .prop_map(|(s, ms)| Timestamp::new(s, ms * 1_000_000).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        #[test]
        fn writes_what_jiff_writes(ts in prop_oneof![any_timestamp(), recent_timestamp()]) {
            let jiff = ts.to_string();
            match write(ts) {
                Some(text) => prop_assert_eq!(text.as_str(), jiff),
                None => prop_assert!(jiff.starts_with(['-', '+']), "{jiff}"),
            }
        }

        #[test]
        fn reads_what_it_writes(ts in prop_oneof![any_timestamp(), recent_timestamp()]) {
            let text = ts.to_string();
            prop_assert_eq!(read(&text).unwrap(), ts);
            if write(ts).is_some() {
                prop_assert_eq!(read_plain(text.as_bytes()), Some(ts), "the fast path read {}", text);
            }
        }

        /// Any text of the shape's characters, in or out of range: read as
        /// jiff reads it, or refused as jiff refuses it.
        #[test]
        fn reads_as_jiff_reads(text in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,11})?[Zz]") {
            prop_assert_eq!(read(&text).ok(), text.parse::<Timestamp>().ok(), "{}", text);
        }

        /// Fields in range, with a fraction of any length and trailing
        /// zeros as devices send it: the fast path reads it, as jiff does.
        #[test]
        fn reads_device_texts_as_jiff_does(
            (year, month, day) in (0..=9999u32, 1..=12u32, 1..=31u32),
            (hour, minute, second) in (0..24u32, 0..60u32, 0..60u32),
            fraction in "(\\.[0-9]{1,9})?",
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z");
            let jiff = text.parse::<Timestamp>().ok();
            prop_assert_eq!(read_plain(text.as_bytes()), jiff, "{}", text);
        }
    }

    #[test]
    fn writes_the_fraction_without_trailing_zeros() {
        let ts: Timestamp = "2026-12-06T01:02:03.120Z".parse().unwrap();
        assert_eq!(write(ts).unwrap().as_str(), "2026-12-06T01:02:03.12Z");
        let whole: Timestamp = "2026-12-06T01:02:03Z".parse().unwrap();
        assert_eq!(write(whole).unwrap().as_str(), "2026-12-06T01:02:03Z");
    }

    #[test]
    fn leaves_other_shapes_to_jiff() {
        for text in [
            "2026-12-06T01:02:03+01:00",
            "2026-12-31T23:59:60Z",
            "2026-02-29T00:00:00Z",
            "2026-12-06 01:02:03Z",
            "2026-12-06T01:02:03.Z",
            "2026-12-06T01:02:03.1234567890Z",
        ] {
            assert_eq!(read_plain(text.as_bytes()), None, "{text}");
            assert_eq!(read(text).ok(), text.parse::<Timestamp>().ok(), "{text}");
        }
    }

    #[test]
    fn serialises_as_jiff_does_in_json_and_postcard() {
        #[derive(serde::Serialize)]
        struct Mine(#[serde(serialize_with = "serialize")] Timestamp);
        for text in [
            "2026-12-06T01:02:03.5Z",
            "1969-12-31T23:59:59.999Z",
            "-000001-01-01T00:00:00Z",
        ] {
            let ts: Timestamp = text.parse().unwrap();
            assert_eq!(
                serde_json::to_string(&Mine(ts)).unwrap(),
                serde_json::to_string(&ts).unwrap()
            );
            assert_eq!(
                postcard::to_allocvec(&Mine(ts)).unwrap(),
                postcard::to_allocvec(&ts).unwrap()
            );
        }
    }
}
