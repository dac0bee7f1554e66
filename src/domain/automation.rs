//! Occasions the store acts on by itself — a birthday coming up, a new member, a member
//! drifting away, a campaign — and the coupon each brings. Every occasion has a deterministic
//! coupon code, so acting on it twice (a restart, a second run the same day) issues nothing
//! the second time.

use chrono::{Datelike, Days, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::calendar::birthday_in_year;

/// Why a coupon is issued automatically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Occasion {
    /// The member's birthday in `year`.
    Birthday {
        /// The year of the birthday.
        year: i32,
    },
    /// The member just registered.
    Welcome,
    /// The member turned `at_risk`; `since` is the month of their last visit (`2026-09`).
    Winback {
        /// Month of the last visit.
        since: String,
        /// Why (as shown at the till).
        reason: String,
    },
    /// A campaign's coupon.
    Campaign {
        /// Campaign id.
        campaign: String,
    },
}

/// The coupon code of an occasion for a member: a prefix naming the occasion, then ten hex
/// digits of SHA-256 of the member id. `BD26-…` birthday 2026, `WL-…` welcome,
/// `WB2609-…` win-back after a last visit in 2026-09, `<campaign>-…` a campaign.
pub fn occasion_code(occasion: &Occasion, member_id: &str) -> String {
    let h = Sha256::digest(member_id.as_bytes());
    let tail: String = hex::encode(&h[..5]).to_ascii_uppercase();
    let prefix = match occasion {
        Occasion::Birthday { year } => format!("BD{:02}", year.rem_euclid(100)),
        Occasion::Welcome => "WL".to_string(),
        Occasion::Winback { since, .. } => {
            format!("WB{}", since.replace('-', "").get(2..).unwrap_or(""))
        }
        Occasion::Campaign { campaign } => campaign.to_ascii_uppercase(),
    };
    format!("{prefix}-{tail}")
}

/// Whether `code` is an occasion's code (see [`occasion_code`]) of the family `prefix`: the
/// prefix, `digits` digits (the month of a win-back's last visit: `WB` then `2609`), a dash and
/// the ten hex digits of a member. `BD26` with 0 digits, `WL`, a campaign's id. A code a
/// manager or HQ chose that only begins the same way (`WBXMAS`, `WL-VIP`, `SPRING-EXTRA`, or
/// campaign `SPRING2`'s `SPRING2-…` for `SPRING`) is not one: the reports count by this.
pub fn is_occasion_code(code: &str, prefix: &str, digits: usize) -> bool {
    let Some(rest) = code.strip_prefix(prefix) else {
        return false;
    };
    let Some((middle, tail)) = rest.split_once('-') else {
        return false;
    };
    middle.len() == digits
        && middle.bytes().all(|b| b.is_ascii_digit())
        && tail.len() == 10
        && tail.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// The year of the birthday the morning run acts on `today`, if there is one: a birthday in
/// `today - catch_up_days ..= today + days_ahead`, and not before `registered` (the store-local
/// day the member registered).
///
/// Looking back `catch_up_days` catches up a birthday no run acted on: the box was off that
/// morning, or the member registered (or had their birthday entered) after that morning's run.
/// A member who registers after their birthday gets no coupon for it: the first birthday
/// coupon is for the first birthday on or after the day they joined (their birthday that very
/// day included). The year is the birthday's, not today's: a 31 December birthday caught up
/// on 2 January is the old year's, so its coupon code (per year, see [`occasion_code`]) is the
/// one a run on the day would have used, and a member gets at most one per year.
///
/// A window shorter than a year (the configuration allows up to 31 + 31 days) holds at most one
/// birthday.
pub fn birthday_due(
    birthday: NaiveDate,
    registered: NaiveDate,
    today: NaiveDate,
    days_ahead: u32,
    catch_up_days: u32,
) -> Option<i32> {
    let first = today
        .checked_sub_days(Days::new(u64::from(catch_up_days)))
        .unwrap_or(NaiveDate::MIN)
        .max(registered);
    let last = today
        .checked_add_days(Days::new(u64::from(days_ahead)))
        .unwrap_or(NaiveDate::MAX);
    let year = today.year();
    [year - 1, year, year + 1].into_iter().find(|y| {
        let d = birthday_in_year(birthday, *y);
        d.year() == *y && d >= first && d <= last
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// Registered long before any of the birthdays below.
    const LONG_AGO: &str = "2000-01-01";

    #[test]
    fn birthdays_in_the_window_once_a_year() {
        let due = |b: &str, today: &str, ahead| birthday_due(d(b), d(LONG_AGO), d(today), ahead, 0);
        assert_eq!(due("1990-11-23", "2026-11-23", 0), Some(2026));
        assert_eq!(due("1990-11-24", "2026-11-23", 0), None);
        assert_eq!(due("1990-11-30", "2026-11-23", 7), Some(2026));
        assert_eq!(due("1990-01-02", "2026-12-30", 7), Some(2027));
        // 29 February is celebrated on the 28th in other years.
        assert_eq!(due("2000-02-29", "2026-02-28", 0), Some(2026));
        assert_eq!(due("2000-02-29", "2028-02-28", 0), None);
        assert_eq!(due("2000-02-29", "2028-02-29", 0), Some(2028));
    }

    #[test]
    fn a_missed_birthday_is_caught_up_within_the_window_in_its_own_year() {
        let due = |b: &str, registered: &str, today: &str, catch_up| {
            birthday_due(d(b), d(registered), d(today), 0, catch_up)
        };
        // The box was off on the birthday: the next run, up to a week later, issues it.
        assert_eq!(due("1990-03-10", LONG_AGO, "2026-03-11", 7), Some(2026));
        assert_eq!(due("1990-03-10", LONG_AGO, "2026-03-17", 7), Some(2026));
        assert_eq!(due("1990-03-10", LONG_AGO, "2026-03-18", 7), None);
        assert_eq!(due("1990-03-10", LONG_AGO, "2026-03-11", 0), None);
        // Across New Year the year is the birthday's.
        assert_eq!(due("1990-12-31", LONG_AGO, "2027-01-02", 7), Some(2026));
        assert_eq!(due("1990-12-25", LONG_AGO, "2027-01-01", 7), Some(2026));
        assert_eq!(due("1990-12-24", LONG_AGO, "2027-01-01", 7), None);
        // 29 February, caught up in a common year (on the 28th) and in a leap year.
        assert_eq!(due("2000-02-29", LONG_AGO, "2027-03-02", 7), Some(2027));
        assert_eq!(due("2000-02-29", LONG_AGO, "2028-03-02", 7), Some(2028));
        // Registered on the birthday, after that morning's run: the next morning issues it.
        assert_eq!(due("1990-03-10", "2026-03-10", "2026-03-11", 7), Some(2026));
        // Registered after the birthday: nothing for it; next year's is issued as usual.
        assert_eq!(due("1990-03-10", "2026-03-11", "2026-03-11", 7), None);
        assert_eq!(due("1990-03-10", "2026-03-11", "2026-03-12", 7), None);
        assert_eq!(due("1990-03-10", "2026-03-11", "2027-03-10", 7), Some(2027));
        // Looking ahead and back at once.
        assert_eq!(
            birthday_due(d("1990-03-10"), d(LONG_AGO), d("2026-03-05"), 5, 7),
            Some(2026)
        );
        assert_eq!(
            birthday_due(d("1990-03-10"), d(LONG_AGO), d("2026-03-04"), 5, 7),
            None
        );
        // The calendar's ends do not panic.
        assert_eq!(
            birthday_due(d("1990-03-10"), NaiveDate::MIN, NaiveDate::MIN, 0, 31),
            None
        );
        assert_eq!(
            birthday_due(d("1990-12-31"), d(LONG_AGO), NaiveDate::MAX, 31, 31),
            Some(NaiveDate::MAX.year())
        );
        assert_eq!(
            birthday_due(d("1990-01-01"), d(LONG_AGO), NaiveDate::MAX, 31, 31),
            None
        );
    }

    proptest::proptest! {
        /// What a run finds is a birthday in its window, on or after the registration, and its
        /// year is that birthday's; every birthday on or after the registration is found by
        /// every run from `days_ahead` before it to `catch_up_days` after it, with its own
        /// year — so a member gets at most one coupon per year, and at least one per year
        /// they were a member on their birthday whenever the box ran in that stretch.
        #[test]
        fn the_window_finds_each_birthday_once_in_its_own_year(
            born in 0i64..40_000,
            registered in 0i64..40_000,
            today in 0i64..40_000,
            ahead in 0u32..=31,
            catch_up in 0u32..=31,
        ) {
            let day = |n: i64| d("1950-01-01") + chrono::Duration::days(n);
            let (born, registered, today) = (day(born), day(registered), day(today));
            match birthday_due(born, registered, today, ahead, catch_up) {
                Some(y) => {
                    let on = birthday_in_year(born, y);
                    proptest::prop_assert_eq!(on.year(), y);
                    proptest::prop_assert!(on >= registered);
                    proptest::prop_assert!(on >= today - chrono::Duration::days(catch_up.into()));
                    proptest::prop_assert!(on <= today + chrono::Duration::days(ahead.into()));
                }
                None => {
                    for y in [today.year() - 1, today.year(), today.year() + 1] {
                        let on = birthday_in_year(born, y);
                        proptest::prop_assert!(
                            on < registered
                                || on < today - chrono::Duration::days(catch_up.into())
                                || on > today + chrono::Duration::days(ahead.into()),
                            "{} missed on {}", on, today
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn codes_are_stable_and_valid_coupon_codes() {
        let b = occasion_code(&Occasion::Birthday { year: 2026 }, "m-1");
        assert_eq!(b, occasion_code(&Occasion::Birthday { year: 2026 }, "m-1"));
        assert_ne!(b, occasion_code(&Occasion::Birthday { year: 2027 }, "m-1"));
        assert!(b.starts_with("BD26-") && b.len() == 15, "{b}");
        let w = occasion_code(
            &Occasion::Winback {
                since: "2026-09".into(),
                reason: String::new(),
            },
            "m-1",
        );
        assert!(w.starts_with("WB2609-"), "{w}");
        for c in [&b, &w] {
            assert!(c.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-'));
        }
        assert!(is_occasion_code(&b, "BD26", 0));
        assert!(is_occasion_code(&w, "WB", 4));
        let spring = occasion_code(
            &Occasion::Campaign {
                campaign: "spring".into(),
            },
            "m-1",
        );
        assert!(is_occasion_code(&spring, "SPRING", 0));
        for (other, prefix, digits) in [
            ("WBXMAS2026", "WB", 4),
            ("WB2609-XMAS", "WB", 4),
            ("WL-VIP8", "WL", 0),
            ("SPRING-EXTRA", "SPRING", 0),
            (spring.as_str(), "SPRIN", 0),
            (b.as_str(), "BD2", 0),
        ] {
            assert!(!is_occasion_code(other, prefix, digits), "{other}");
        }
    }
}
