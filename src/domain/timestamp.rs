//! RFC 3339 timestamps in JSON, written and read without chrono's general formatting and
//! parsing machinery.
//!
//! Every member lookup reads a member's `created_at` from the cache and writes it back out, and
//! every sale writes its time twice (journal and answer): through chrono's `Serialize` and
//! `FromStr` that was ~2,800 and ~1,900 instructions each, a tenth of a lookup's own work. The
//! text is the same as chrono's: [`write()`] produces exactly what chrono's `Serialize` does
//! (RFC 3339, fractional seconds in groups of three digits as needed, `Z` for UTC), and
//! [`parse`] accepts everything chrono's `Deserialize` accepts. Only the common shape takes the
//! short way; anything else (years outside 0–9999, offsets with seconds, leap seconds, the
//! relaxed forms chrono also takes) goes through chrono itself, so no value reads or writes
//! differently. Use the [`serde`] functions with `#[serde(with = "...")]`.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Timelike};

/// No store sells before this (this release was made later): a clock that says an earlier
/// time was not set — a box without a battery-backed clock booted at 1970-01-01 before NTP
/// set it (or never, with the store's uplink down). Sales are still recorded (refusing them
/// would close the store), dated as the clock says; `/healthz` and the log say so.
pub const CLOCK_FLOOR_UNIX: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

/// Whether the clock that says `now` was evidently never set (see [`CLOCK_FLOOR_UNIX`]).
pub fn clock_not_set<Tz: chrono::TimeZone>(now: &DateTime<Tz>) -> bool {
    now.timestamp() < CLOCK_FLOOR_UNIX
}

/// Longest text [`write()`] produces on its short way: `2026-11-23T10:15:00.123456789+08:00`.
const SHORT: usize = 35;

/// A timestamp's text, on the stack when it takes the short way.
pub struct Text {
    buf: [u8; SHORT],
    len: usize,
    long: Option<String>,
}

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.long {
            Some(s) => s,
            None => std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default(),
        }
    }
}

/// `t` as chrono's `Serialize` writes it.
pub fn write(t: &DateTime<FixedOffset>) -> Text {
    let mut text = Text {
        buf: [0; SHORT],
        len: 0,
        long: None,
    };
    let offset = t.offset().local_minus_utc();
    let year = t.year();
    if !(0..=9999).contains(&year) || offset % 60 != 0 || t.nanosecond() >= 1_000_000_000 {
        // What chrono's `Serialize` writes: `write_rfc3339` with `AutoSi` and `Z` for UTC.
        text.long = Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        return text;
    }
    let mut w = Digits {
        buf: &mut text.buf,
        len: 0,
    };
    let y = year as u32;
    w.two(y / 100);
    w.two(y % 100);
    w.byte(b'-');
    w.two(t.month());
    w.byte(b'-');
    w.two(t.day());
    w.byte(b'T');
    w.two(t.hour());
    w.byte(b':');
    w.two(t.minute());
    w.byte(b':');
    w.two(t.second());
    let nano = t.nanosecond();
    // chrono's `SecondsFormat::AutoSi`: as few groups of three digits as show the value.
    let (frac, digits) = if nano == 0 {
        (0, 0)
    } else if nano.is_multiple_of(1_000_000) {
        (nano / 1_000_000, 3)
    } else if nano.is_multiple_of(1_000) {
        (nano / 1_000, 6)
    } else {
        (nano, 9)
    };
    if digits > 0 {
        w.byte(b'.');
        let mut div = 10u32.pow(digits - 1);
        while div > 0 {
            w.byte(b'0' + (frac / div % 10) as u8);
            div /= 10;
        }
    }
    if offset == 0 {
        w.byte(b'Z');
    } else {
        w.byte(if offset < 0 { b'-' } else { b'+' });
        let minutes = offset.unsigned_abs() / 60;
        w.two(minutes / 60);
        w.byte(b':');
        w.two(minutes % 60);
    }
    text.len = w.len;
    text
}

/// Writes digits into a fixed buffer (the short way never writes more than [`SHORT`] bytes).
struct Digits<'a> {
    buf: &'a mut [u8; SHORT],
    len: usize,
}

impl Digits<'_> {
    fn byte(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// Two digits of `n` (below 100).
    fn two(&mut self, n: u32) {
        self.byte(b'0' + (n / 10 % 10) as u8);
        self.byte(b'0' + (n % 10) as u8);
    }
}

/// Reads a timestamp as chrono's `Deserialize` does, with chrono's error where it would fail.
pub fn parse(s: &str) -> Result<DateTime<FixedOffset>, chrono::ParseError> {
    parse_short(s.as_bytes()).map_or_else(|| s.parse(), Ok)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` with a fraction of 1–9 digits; `None` for
/// anything else, including values out of range (chrono then decides).
fn parse_short(b: &[u8]) -> Option<DateTime<FixedOffset>> {
    let num = |i: usize, n: usize| -> Option<u32> {
        b.get(i..i + n)?.iter().try_fold(0u32, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    if !(sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':')) {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 2)?, num(8, 2)?)?;
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut nano = 0u32;
    if sep(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return None;
        }
        nano = num(i + 1, digits)? * 10u32.pow(9 - digits as u32);
        i += 1 + digits;
    }
    let offset = match b.get(i..)? {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hm = [*h1, *h2, *m1, *m2];
            if !hm.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let (h, m) = (
                i32::from((h1 - b'0') * 10 + (h2 - b'0')),
                i32::from((m1 - b'0') * 10 + (m2 - b'0')),
            );
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(hour, min, sec, nano)?;
    date.and_time(time)
        .and_local_timezone(FixedOffset::east_opt(offset)?)
        .single()
}

/// `#[serde(with = "crate::domain::timestamp::serde")]` for a `DateTime<FixedOffset>`; `option`
/// below for an `Option` of one.
pub mod serde {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserializer, Serializer};

    /// Writes `t` (see [`write()`](super::write)).
    pub fn serialize<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(super::write(t).as_str())
    }

    /// Reads a timestamp (see [`parse`](super::parse)).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
        d.deserialize_str(Visitor)
    }

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = DateTime<FixedOffset>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an RFC 3339 formatted date and time string")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            super::parse(v).map_err(E::custom)
        }
    }

    /// The same for an `Option` (use with `#[serde(default)]`).
    pub mod option {
        use chrono::{DateTime, FixedOffset};
        use serde::{Deserializer, Serializer};

        /// Writes `t` or `null`.
        pub fn serialize<S: Serializer>(
            t: &Option<DateTime<FixedOffset>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        /// Reads a timestamp or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
            d.deserialize_option(OptionVisitor)
        }

        struct OptionVisitor;

        impl<'de> serde::de::Visitor<'de> for OptionVisitor {
            type Value = Option<DateTime<FixedOffset>>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an RFC 3339 formatted date and time string or null")
            }

            fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn a_clock_at_1970_is_not_set_and_one_at_the_floor_is() {
        let at = |s: i64| chrono::DateTime::from_timestamp(s, 0).unwrap();
        assert!(super::clock_not_set(&at(30)));
        assert!(super::clock_not_set(&at(super::CLOCK_FLOOR_UNIX - 1)));
        assert!(!super::clock_not_set(&at(super::CLOCK_FLOOR_UNIX)));
    }

    fn chrono_json(t: &DateTime<FixedOffset>) -> String {
        serde_json::to_string(t).unwrap_or_default()
    }

    #[test]
    fn writes_what_chrono_writes() {
        let cn = FixedOffset::east_opt(8 * 3600).unwrap();
        let cases = [
            cn.with_ymd_and_hms(2026, 11, 23, 10, 15, 0).unwrap(),
            cn.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::milliseconds(7),
            cn.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::microseconds(70),
            cn.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::nanoseconds(1),
            FixedOffset::east_opt(0)
                .unwrap()
                .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
                .unwrap(),
            FixedOffset::west_opt(9 * 3600 + 30 * 60)
                .unwrap()
                .with_ymd_and_hms(1999, 12, 31, 23, 59, 59)
                .unwrap(),
            // The long way: an offset with seconds, years outside 0–9999.
            FixedOffset::east_opt(3600 + 7)
                .unwrap()
                .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
                .unwrap(),
            FixedOffset::east_opt(10)
                .unwrap()
                .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
                .unwrap(),
            cn.with_ymd_and_hms(12026, 6, 1, 0, 0, 0).unwrap(),
            cn.with_ymd_and_hms(-5, 6, 1, 0, 0, 0).unwrap(),
        ];
        for t in cases {
            let ours = serde_json::to_string(&Wrapped(t)).unwrap_or_default();
            assert_eq!(ours, chrono_json(&t));
            // An offset's seconds are not written (by chrono either): only the rest reads back.
            let text = write(&t);
            assert_eq!(parse(text.as_str()).ok(), text.as_str().parse().ok());
            if t.offset().local_minus_utc() % 60 == 0 {
                assert_eq!(parse(text.as_str()).ok(), Some(t));
            }
        }
    }

    #[test]
    fn a_leap_second_is_written_and_read_as_chrono_does() {
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_local_timezone(FixedOffset::east_opt(0).unwrap())
            .unwrap();
        let text = write(&leap);
        assert_eq!(format!("\"{}\"", text.as_str()), chrono_json(&leap));
        assert_eq!(parse(text.as_str()).ok(), Some(leap));
    }

    #[test]
    fn reads_what_chrono_reads_and_refuses_what_it_refuses() {
        for s in [
            "2026-11-23T10:15:00+08:00",
            "2026-11-23T10:15:00.5Z",
            "2026-11-23T10:15:00.123456789-00:00",
            "2026-11-23t10:15:00z",
            "2026-11-23 10:15:00+08:00",
            "2026-11-23T10:15:00.1234567891+08:00",
            "2026-02-30T10:15:00+08:00",
            "2026-11-23T24:00:00+08:00",
            "2026-11-23T10:60:00+08:00",
            "2026-11-23T10:15:60+08:00",
            "2026-11-23T10:15:00+24:00",
            "2026-11-23T10:15:00+08:60",
            "2026-11-23T10:15:00+0800",
            "2026-11-23T10:15:00.+08:00",
            "2026-11-23T10:15:00",
            "0000-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "+2026-11-23T10:15:00Z",
            "２026-11-23T10:15:00Z",
            "",
            "garbage",
        ] {
            let chrono: Option<DateTime<FixedOffset>> = s.parse().ok();
            assert_eq!(parse(s).ok(), chrono, "{s:?}");
            let json = format!("\"{s}\"");
            let ours = serde_json::from_str::<Wrapped>(&json).ok().map(|w| w.0);
            let theirs = serde_json::from_str::<DateTime<FixedOffset>>(&json).ok();
            assert_eq!(ours, theirs, "{s:?}");
        }
    }

    #[test]
    fn options_read_null_and_missing_as_none() {
        #[derive(::serde::Serialize, ::serde::Deserialize, PartialEq, Debug)]
        struct O {
            #[serde(default, with = "super::serde::option")]
            at: Option<DateTime<FixedOffset>>,
        }
        assert_eq!(serde_json::from_str::<O>("{}").ok(), Some(O { at: None }));
        assert_eq!(
            serde_json::from_str::<O>(r#"{"at":null}"#).ok(),
            Some(O { at: None })
        );
        let t = parse("2026-11-23T10:15:00+08:00").ok();
        assert_eq!(
            serde_json::from_str::<O>(r#"{"at":"2026-11-23T10:15:00+08:00"}"#).ok(),
            Some(O { at: t })
        );
        assert_eq!(
            serde_json::to_string(&O { at: t }).unwrap_or_default(),
            r#"{"at":"2026-11-23T10:15:00+08:00"}"#
        );
        assert_eq!(
            serde_json::to_string(&O { at: None }).unwrap_or_default(),
            r#"{"at":null}"#
        );
        assert!(serde_json::from_str::<O>(r#"{"at":"yesterday"}"#).is_err());
    }

    #[derive(::serde::Serialize, ::serde::Deserialize)]
    struct Wrapped(#[serde(with = "super::serde")] DateTime<FixedOffset>);

    proptest! {
        #[test]
        fn any_time_writes_and_reads_back_as_chrono(
            secs in -62_135_596_800i64..253_402_300_799i64,
            nano in prop_oneof![Just(0u32), 0u32..1000, (0u32..1000).prop_map(|n| n * 1_000_000), (0u32..1_000_000).prop_map(|n| n * 1000), 0u32..1_000_000_000],
            offset in prop_oneof![(-1439i32..1440).prop_map(|m| m * 60), -86_399i32..86_400],
        ) {
            let Some(utc) = DateTime::from_timestamp(secs, nano) else { return Ok(()) };
            let Some(off) = FixedOffset::east_opt(offset) else { return Ok(()) };
            let t = utc.with_timezone(&off);
            let ours = serde_json::to_string(&Wrapped(t)).unwrap_or_default();
            prop_assert_eq!(&ours, &chrono_json(&t));
            let back = serde_json::from_str::<Wrapped>(&ours).ok().map(|w| w.0);
            let chrono_back = serde_json::from_str::<DateTime<FixedOffset>>(&ours).ok();
            prop_assert_eq!(back, chrono_back);
            if offset % 60 == 0 {
                prop_assert_eq!(back, Some(t));
            }
        }
    }
}
