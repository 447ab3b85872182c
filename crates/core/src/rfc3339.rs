//! A timestamp's RFC 3339 text in the one shape kordon writes and devices
//! send, `YYYY-MM-DDTHH:MM:SS[.fffffffff]Z`, written and read without
//! jiff's general printer and parser.
//!
//! A device's `ts` is mostly such a text, and every fix is journaled with
//! two of them; jiff's printer, reached through `fmt::Display`, was a
//! twentieth of the journal's thread at 10,000 fixes/s. The text is byte
//! for byte jiff's own (the tests compare both over any timestamp), and
//! any text outside the shape (an offset, a leap second, a lower-case `z`,
//! a year past 9999) goes to jiff, which decides. The calendar is jiff's
//! too: only the text is written here. This module never reads a clock.

use jiff::civil::DateTime;
use jiff::tz::Offset;
use jiff::Timestamp;
use serde::Serializer;

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
    let at = Offset::UTC.to_datetime(ts);
    let year = u32::try_from(at.year()).ok().filter(|year| *year <= 9999)?;
    let mut text = Text {
        bytes: *b"0000-00-00T00:00:00.000000000Z",
        len: 0,
    };
    let b = &mut text.bytes;
    pair(&mut b[0..2], year / 100);
    pair(&mut b[2..4], year % 100);
    pair(&mut b[5..7], at.month() as u32);
    pair(&mut b[8..10], at.day() as u32);
    pair(&mut b[11..13], at.hour() as u32);
    pair(&mut b[14..16], at.minute() as u32);
    pair(&mut b[17..19], at.second() as u32);
    let nanos = at.subsec_nanosecond() as u32;
    text.len = if nanos == 0 {
        19
    } else {
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
    let field = |at: usize| number(&b[at..at + 2]).map(|n| n as i8);
    let year = number(&b[0..4])? as i16;
    let nanos = match &b[19..b.len() - 1] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            number(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    // jiff refuses a field out of range, and a second of 60, which its
    // parser takes (as 59): both go to the parser.
    let at = DateTime::new(
        year,
        field(5)?,
        field(8)?,
        field(11)?,
        field(14)?,
        field(17)?,
        nanos as i32,
    )
    .ok()?;
    Offset::UTC.to_timestamp(at).ok()
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
