//! Calendar rules in the store's own timezone: month buckets, spend windows, birthday windows.
//!
//! All functions take the store-local date as an argument; converting "now" into the store's
//! timezone is the caller's job (see [`local_date`]).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use super::rules::{BirthdayWindow, SpendWindow};

/// The years a period asked for (a campaign's run, a report's) may lie in: far enough from the
/// edges of what the calendar holds that the day after it, or a period as long before it,
/// exists.
pub const PERIOD_YEARS: std::ops::RangeInclusive<i32> = 2000..=9998;

/// The store-local wall-clock time for an instant.
pub fn local_time(tz: Tz, at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&tz).fixed_offset()
}

/// The store-local calendar day for an instant.
pub fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// The bucket key for a month: `"2026-11"`. Keys sort chronologically as strings.
pub fn month_key(date: NaiveDate) -> String {
    MonthKey::of(date).as_str().to_owned()
}

/// A month's bucket key on the stack, for comparing with stored keys: a member's spend, points
/// and churn checks compare every month bucket they read with one, on every lookup and sale,
/// so it is written digit by digit rather than through `format!` and a new `String`.
#[derive(Clone, Copy)]
pub struct MonthKey {
    buf: [u8; 16],
    len: usize,
}

impl MonthKey {
    /// The key of `date`'s month.
    pub fn of(date: NaiveDate) -> MonthKey {
        MonthKey::new(date.year(), date.month())
    }

    /// The key of the month `n` months before `date`'s month.
    pub fn before(date: NaiveDate, n: u32) -> MonthKey {
        let total = i64::from(date.year()) * 12 + i64::from(date.month0()) - i64::from(n);
        let year = i32::try_from(total.div_euclid(12)).unwrap_or(i32::MIN);
        MonthKey::new(year, total.rem_euclid(12) as u32 + 1)
    }

    /// `{year:04}-{month:02}`, as `format!` writes it for any year.
    fn new(year: i32, month: u32) -> MonthKey {
        let mut k = MonthKey {
            buf: [0; 16],
            len: 7,
        };
        if (0..=9999).contains(&year) && (1..=12).contains(&month) {
            let y = year as u32;
            k.buf[..7].copy_from_slice(&[
                b'0' + (y / 1000) as u8,
                b'0' + (y / 100 % 10) as u8,
                b'0' + (y / 10 % 10) as u8,
                b'0' + (y % 10) as u8,
                b'-',
                b'0' + (month / 10) as u8,
                b'0' + (month % 10) as u8,
            ]);
        } else {
            use std::io::Write;
            let mut w = std::io::Cursor::new(&mut k.buf[..]);
            // 16 bytes hold any i32 year and u32 month: "-2147483648-4294967295" does not
            // occur (months are 1–12), and "-2147483648-12" is 14.
            let _ = write!(w, "{year:04}-{month:02}");
            k.len = w.position() as usize;
        }
        k
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }

    /// The year part with its dash (`"2026-"`): every key of that year starts with it.
    fn year_prefix(&self) -> &str {
        let s = self.as_str();
        s.get(..s.len().saturating_sub(2)).unwrap_or_default()
    }
}

/// Whether spend recorded in `month` (a [`month_key`]) counts towards a level on `today`.
pub fn month_in_spend_window(window: SpendWindow, month: &str, today: NaiveDate) -> bool {
    match window {
        SpendWindow::Lifetime => true,
        SpendWindow::CalendarYear => month.starts_with(MonthKey::of(today).year_prefix()),
        SpendWindow::Rolling365d => {
            // The current month and the eleven before it.
            month >= MonthKey::before(today, 11).as_str() && month <= MonthKey::of(today).as_str()
        }
    }
}

/// Whether points earned in `month` have expired on `today`, given an expiry of `months`.
/// Points earned in November 2025 with a 12-month expiry are usable through November 2026.
pub fn month_expired(month: &str, today: NaiveDate, months: u32) -> bool {
    month < MonthKey::before(today, months).as_str()
}

/// This year's birthday for someone born on `birthday`. 29 February falls on 28 February in
/// years that have none.
pub fn birthday_in_year(birthday: NaiveDate, year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, birthday.month(), birthday.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, birthday.month(), birthday.day() - 1))
        .unwrap_or(birthday)
}

/// The year of the birthday whose window `today` lies in, for someone born on `birthday`, or
/// `None` outside every window. A week (Mon–Sun) can span New Year: on 2 January 2027 the
/// week of a 31 December birthday is 2026's.
pub fn birthday_window_year(
    birthday: NaiveDate,
    today: NaiveDate,
    window: BirthdayWindow,
) -> Option<i32> {
    let year = today.year();
    match window {
        BirthdayWindow::Day => (birthday_in_year(birthday, year) == today).then_some(year),
        BirthdayWindow::Week => [year, year - 1, year + 1]
            .into_iter()
            .find(|y| birthday_in_year(birthday, *y).iso_week() == today.iso_week()),
        BirthdayWindow::Month => (birthday.month() == today.month()).then_some(year),
    }
}

/// Parses an RFC 3339 time, as found in requests and events.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// The end of a validity of `days` days that begins at `at`: the first instant of the store-local
/// day after the `days`-th day after `at`'s (a coupon valid up to and including that instant, as
/// a campaign's coupons are valid through its last day). A coupon issued at 19:30 for 30 days
/// can be used all of the 30th day, not only until 19:30 on it.
pub fn end_of_days_after(tz: Tz, at: DateTime<Utc>, days: u32) -> DateTime<FixedOffset> {
    let last = local_date(tz, at)
        .checked_add_days(chrono::Days::new(u64::from(days) + 1))
        .unwrap_or(NaiveDate::MAX);
    local_time(tz, start_of_day(tz, last))
}

/// Midnight at the start of `date` in `tz` (the first valid instant when a DST gap swallows it:
/// in Santiago, Beirut or Havana clocks go from 00:00 to 01:00).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.with_timezone(&Utc)
        }
        chrono::LocalResult::None => {
            // The gap ends at the instant midnight would be by the offset in force before it
            // (a day earlier: offsets change months apart). Until 2026-12-07 this was midnight
            // UTC, the evening before in Santiago.
            let before = tz
                .offset_from_utc_datetime(&(naive - chrono::Duration::days(1)))
                .fix();
            Utc.from_utc_datetime(
                &(naive - chrono::Duration::seconds(i64::from(before.local_minus_utc()))),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn rolling_window_is_twelve_months() {
        let today = d(2026, 3, 15);
        assert!(month_in_spend_window(
            SpendWindow::Rolling365d,
            "2026-03",
            today
        ));
        assert!(month_in_spend_window(
            SpendWindow::Rolling365d,
            "2025-04",
            today
        ));
        assert!(!month_in_spend_window(
            SpendWindow::Rolling365d,
            "2025-03",
            today
        ));
        assert!(month_in_spend_window(
            SpendWindow::CalendarYear,
            "2026-01",
            today
        ));
        assert!(!month_in_spend_window(
            SpendWindow::CalendarYear,
            "2025-12",
            today
        ));
    }

    #[test]
    fn month_keys_are_written_as_format_writes_them() {
        for (y, m) in [
            (2026, 11),
            (2026, 1),
            (0, 1),
            (9999, 12),
            (10000, 3),
            (-1, 5),
            (-262143, 12),
            (262142, 7),
            (33, 10),
        ] {
            let date = d(y, m, 1);
            assert_eq!(MonthKey::of(date).as_str(), format!("{y:04}-{m:02}"));
            assert_eq!(month_key(date), format!("{y:04}-{m:02}"));
        }
        assert_eq!(MonthKey::of(d(2026, 3, 15)).year_prefix(), "2026-");
        assert_eq!(MonthKey::before(d(2026, 1, 31), 1).as_str(), "2025-12");
        assert_eq!(MonthKey::before(d(2026, 3, 15), 11).as_str(), "2025-04");
        assert_eq!(MonthKey::before(d(2026, 3, 15), 26).as_str(), "2024-01");
        assert_eq!(MonthKey::before(d(0, 2, 1), 2).as_str(), "-001-12");
        // A count of months larger than the calendar still gives a key (the earliest year).
        assert!(
            MonthKey::before(d(2026, 3, 15), u32::MAX)
                .as_str()
                .starts_with('-')
        );
    }

    #[test]
    fn expiry_counts_whole_months() {
        let today = d(2026, 11, 23);
        assert!(!month_expired("2025-11", today, 12));
        assert!(month_expired("2025-10", today, 12));
    }

    #[test]
    fn a_validity_ends_with_the_store_s_day() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        // 19:30 in Shanghai on 10 March; 30 days: through 9 April, until midnight.
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 11, 30, 0).unwrap();
        assert_eq!(
            end_of_days_after(tz, at, 30).to_rfc3339(),
            "2026-04-10T00:00:00+08:00"
        );
        // 00:30 on 11 March in Shanghai is still 10 March in UTC: the store's day counts.
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 16, 30, 0).unwrap();
        assert_eq!(
            end_of_days_after(tz, at, 1).to_rfc3339(),
            "2026-03-13T00:00:00+08:00"
        );
        // Into summer time in Berlin: the offset of the last day.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
        assert_eq!(
            end_of_days_after(tz, at, 30).to_rfc3339(),
            "2026-04-10T00:00:00+02:00"
        );
    }

    #[test]
    fn leap_day_birthdays() {
        let b = d(2000, 2, 29);
        let day = |t| birthday_window_year(b, t, BirthdayWindow::Day);
        assert_eq!(day(d(2026, 2, 28)), Some(2026));
        assert_eq!(day(d(2028, 2, 29)), Some(2028));
        assert_eq!(day(d(2028, 2, 28)), None);
    }

    #[test]
    fn birthday_week_and_month() {
        let b = d(1990, 11, 25); // a Wednesday in 2026
        let week = |b, t| birthday_window_year(b, t, BirthdayWindow::Week);
        assert_eq!(week(b, d(2026, 11, 23)), Some(2026));
        assert_eq!(week(b, d(2026, 11, 30)), None);
        assert_eq!(
            birthday_window_year(b, d(2026, 11, 1), BirthdayWindow::Month),
            Some(2026)
        );
        // The week of 28 December 2026 to 3 January 2027 holds the birthday of someone born
        // on 31 December (2026's) and of someone born on 1 January (2027's).
        let (dec31, jan1) = (d(1990, 12, 31), d(1990, 1, 1));
        assert_eq!(week(dec31, d(2027, 1, 2)), Some(2026));
        assert_eq!(week(dec31, d(2026, 12, 28)), Some(2026));
        assert_eq!(week(dec31, d(2027, 1, 4)), None);
        assert_eq!(week(jan1, d(2026, 12, 28)), Some(2027));
        assert_eq!(week(jan1, d(2027, 1, 3)), Some(2027));
        assert_eq!(week(jan1, d(2026, 12, 27)), None);
    }

    #[test]
    fn shanghai_day_boundary() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 16, 30, 0).unwrap();
        assert_eq!(local_date(tz, at), d(2026, 11, 23));
        assert_eq!(
            start_of_day(tz, d(2026, 11, 23)),
            Utc.with_ymd_and_hms(2026, 11, 22, 16, 0, 0).unwrap()
        );
    }
}
