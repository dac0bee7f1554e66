//! Occasions the store acts on by itself — a birthday coming up, a new member, a member
//! drifting away, a campaign — and the coupon each brings. Every occasion has a deterministic
//! coupon code, so acting on it twice (a restart, a second run the same day) issues nothing
//! the second time.

use chrono::{Datelike, NaiveDate};
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

/// The year whose birthday falls in `today ..= today + days_ahead`, if one does.
pub fn birthday_due(birthday: NaiveDate, today: NaiveDate, days_ahead: u32) -> Option<i32> {
    let last = today + chrono::Duration::days(i64::from(days_ahead));
    [today.year(), today.year() + 1].into_iter().find(|y| {
        let d = birthday_in_year(birthday, *y);
        d >= today && d <= last
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn birthdays_in_the_window_once_a_year() {
        assert_eq!(
            birthday_due(d("1990-11-23"), d("2026-11-23"), 0),
            Some(2026)
        );
        assert_eq!(birthday_due(d("1990-11-24"), d("2026-11-23"), 0), None);
        assert_eq!(
            birthday_due(d("1990-11-30"), d("2026-11-23"), 7),
            Some(2026)
        );
        assert_eq!(
            birthday_due(d("1990-01-02"), d("2026-12-30"), 7),
            Some(2027)
        );
        // 29 February is celebrated on the 28th in other years.
        assert_eq!(
            birthday_due(d("2000-02-29"), d("2026-02-28"), 0),
            Some(2026)
        );
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
        for c in [b, w] {
            assert!(c.bytes().all(|x| x.is_ascii_alphanumeric() || x == b'-'));
        }
    }
}
