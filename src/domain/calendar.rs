//! Calendar rules in the store's own timezone: month buckets, spend windows, birthday windows.
//!
//! All functions take the store-local date as an argument; converting "now" into the store's
//! timezone is the caller's job (see [`local_date`]).

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::rules::{BirthdayWindow, SpendWindow};

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
    format!("{:04}-{:02}", date.year(), date.month())
}

/// Whether spend recorded in `month` (a [`month_key`]) counts towards a level on `today`.
pub fn month_in_spend_window(window: SpendWindow, month: &str, today: NaiveDate) -> bool {
    match window {
        SpendWindow::Lifetime => true,
        SpendWindow::CalendarYear => month.starts_with(&format!("{:04}-", today.year())),
        SpendWindow::Rolling365d => {
            // The current month and the eleven before it.
            let first = months_before(today, 11);
            month >= month_key(first).as_str() && month <= month_key(today).as_str()
        }
    }
}

/// Whether points earned in `month` have expired on `today`, given an expiry of `months`.
/// Points earned in November 2025 with a 12-month expiry are usable through November 2026.
pub fn month_expired(month: &str, today: NaiveDate, months: u32) -> bool {
    let last_valid_start = months_before(today, months);
    month < month_key(last_valid_start).as_str()
}

/// The first day of the month `n` months before `date`'s month.
fn months_before(date: NaiveDate, n: u32) -> NaiveDate {
    let total = date.year() * 12 + date.month0() as i32 - n as i32;
    let (y, m0) = (total.div_euclid(12), total.rem_euclid(12));
    NaiveDate::from_ymd_opt(y, m0 as u32 + 1, 1).unwrap_or(date)
}

/// This year's birthday for someone born on `birthday`. 29 February falls on 28 February in
/// years that have none.
pub fn birthday_in_year(birthday: NaiveDate, year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, birthday.month(), birthday.day())
        .or_else(|| NaiveDate::from_ymd_opt(year, birthday.month(), birthday.day() - 1))
        .unwrap_or(birthday)
}

/// Whether `today` lies in the birthday window of someone born on `birthday`.
pub fn in_birthday_window(birthday: NaiveDate, today: NaiveDate, window: BirthdayWindow) -> bool {
    let this_year = birthday_in_year(birthday, today.year());
    match window {
        BirthdayWindow::Day => this_year == today,
        BirthdayWindow::Week => this_year.iso_week() == today.iso_week(),
        BirthdayWindow::Month => birthday.month() == today.month(),
    }
}

/// Parses an RFC 3339 time, as found in requests and events.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

/// Midnight at the start of `date` in `tz` (the first valid instant when a DST gap swallows it).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) | chrono::LocalResult::Ambiguous(t, _) => {
            t.with_timezone(&Utc)
        }
        chrono::LocalResult::None => Utc.from_utc_datetime(&naive),
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
    fn expiry_counts_whole_months() {
        let today = d(2026, 11, 23);
        assert!(!month_expired("2025-11", today, 12));
        assert!(month_expired("2025-10", today, 12));
    }

    #[test]
    fn leap_day_birthdays() {
        let b = d(2000, 2, 29);
        assert!(in_birthday_window(b, d(2026, 2, 28), BirthdayWindow::Day));
        assert!(in_birthday_window(b, d(2028, 2, 29), BirthdayWindow::Day));
        assert!(!in_birthday_window(b, d(2028, 2, 28), BirthdayWindow::Day));
    }

    #[test]
    fn birthday_week_and_month() {
        let b = d(1990, 11, 25); // a Wednesday in 2026
        assert!(in_birthday_window(b, d(2026, 11, 23), BirthdayWindow::Week));
        assert!(!in_birthday_window(
            b,
            d(2026, 11, 30),
            BirthdayWindow::Week
        ));
        assert!(in_birthday_window(b, d(2026, 11, 1), BirthdayWindow::Month));
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
