//! Locking out PIN guessing: wrong PINs are counted per staff number and per terminal; at the
//! limit the staff number (or the terminal) is locked for a while, and no PIN — not even the
//! right one — is checked until the lock expires. A login's attempt is counted before its PIN
//! is checked and taken back when the PIN was right, so that many logins sent at once get no
//! more checks than the limit.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// Wrong PINs counted against one staff number or terminal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strikes {
    /// Wrong PINs since the count started.
    pub failures: u32,
    /// When the count started.
    pub since: DateTime<Utc>,
    /// Locked until then, once `failures` reached the limit.
    pub locked_until: Option<DateTime<Utc>>,
}

/// Until when `strikes` locks its staff number or terminal, if it does at `now`.
pub fn locked_until(strikes: Option<&Strikes>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    strikes
        .and_then(|s| s.locked_until)
        .filter(|until| *until > now)
}

/// `strikes` as a clock that went back since they were counted leaves them: a count started
/// after `now` starts at `now`, and a lock ends at most `window` after `now` (it was set for
/// `window` from its own now). Unchanged otherwise. Without this, wrong PINs counted while the
/// clock ran a day ahead (a box that booted with a bad real-time clock, set right by NTP
/// later) locked the staff number or terminal for a day, with no unlock by an admin.
pub fn settle(strikes: Option<Strikes>, now: DateTime<Utc>, window: Duration) -> Option<Strikes> {
    let mut s = strikes?;
    s.since = s.since.min(now);
    let latest = now.checked_add_signed(window).unwrap_or(now);
    s.locked_until = s.locked_until.map(|until| until.min(latest));
    Some(s)
}

/// Counts one more wrong PIN. A count older than `window` (or whose lock has expired) starts
/// again; reaching `max` locks for `window`.
pub fn strike(current: Option<Strikes>, now: DateTime<Utc>, max: u32, window: Duration) -> Strikes {
    let fresh = Strikes {
        failures: 0,
        since: now,
        locked_until: None,
    };
    let mut s = match current {
        Some(s) if s.locked_until.is_some_and(|u| u <= now) => fresh,
        Some(s) if s.locked_until.is_none() && s.since + window <= now => fresh,
        Some(s) => s,
        None => fresh,
    };
    s.failures = s.failures.saturating_add(1);
    if s.failures >= max && s.locked_until.is_none() {
        s.locked_until = Some(now + window);
    }
    s
}

/// Takes back one attempt that [`strike`] counted into the count started at `since`, when it
/// turned out to hold the right PIN or no PIN was answered (a login's attempt is counted before
/// its PIN is checked, so that logins sent at once cannot all pass the lock). A count started
/// since then keeps every attempt: it never held this one. A lock the attempt set is lifted;
/// `None` when nothing is left to count.
pub fn take_back(current: Option<Strikes>, max: u32, since: DateTime<Utc>) -> Option<Strikes> {
    let mut s = current?;
    if s.since != since {
        return Some(s);
    }
    s.failures = s.failures.saturating_sub(1);
    if s.failures < max {
        s.locked_until = None;
    }
    (s.failures > 0 || s.locked_until.is_some()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn the_fifth_wrong_pin_locks_until_the_window_passes() {
        let w = Duration::seconds(900);
        let mut s = None;
        for i in 0..4 {
            s = Some(strike(s, t(i), 5, w));
            assert_eq!(locked_until(s.as_ref(), t(i)), None);
        }
        let s = strike(s, t(10), 5, w);
        assert_eq!(locked_until(Some(&s), t(11)), Some(t(910)));
        assert_eq!(locked_until(Some(&s), t(910)), None);
        // After the lock a new count starts.
        let s = strike(Some(s), t(911), 5, w);
        assert_eq!(s.failures, 1);
        assert_eq!(locked_until(Some(&s), t(911)), None);
    }

    #[test]
    fn a_right_pin_takes_back_its_attempt_and_the_lock_it_set() {
        let w = Duration::seconds(900);
        let mut s = None;
        for i in 0..4 {
            s = Some(strike(s, t(i), 5, w));
        }
        // The fifth attempt locks while its PIN is checked; it was right.
        let s = strike(s, t(5), 5, w);
        assert_eq!(locked_until(Some(&s), t(6)), Some(t(905)));
        let s = take_back(Some(s), 5, t(0));
        assert_eq!(s.as_ref().map(|s| s.failures), Some(4));
        assert_eq!(locked_until(s.as_ref(), t(6)), None);
        // The only attempt, right: nothing left.
        assert_eq!(take_back(Some(strike(None, t(0), 5, w)), 5, t(0)), None);
        assert_eq!(take_back(None, 5, t(0)), None);
    }

    /// A right PIN answered late must not take its attempt back from a count started after
    /// it: that would give the new window's guesses one more check each.
    #[test]
    fn an_attempt_is_taken_back_only_from_the_count_it_went_into() {
        let w = Duration::seconds(60);
        let old = strike(None, t(0), 5, w);
        assert_eq!(old.since, t(0));
        // The window passes; a new count starts and reaches the limit.
        let mut s = None;
        for i in 0..5 {
            s = Some(strike(s.or(Some(old.clone())), t(61 + i), 5, w));
        }
        let s = s.unwrap();
        assert_eq!((s.failures, s.since), (5, t(61)));
        assert_eq!(take_back(Some(s.clone()), 5, t(0)), Some(s));
    }

    #[test]
    fn a_clock_that_went_back_shortens_the_lock_to_the_window() {
        let w = Duration::seconds(60);
        let day = 86_400;
        let mut s = None;
        for i in 0..5 {
            s = Some(strike(s, t(day + i), 5, w));
        }
        // The clock is set back a day.
        let s = settle(s, t(0), w);
        assert_eq!(locked_until(s.as_ref(), t(0)), Some(t(60)));
        assert_eq!(s.as_ref().map(|s| s.since), Some(t(0)));
        assert_eq!(locked_until(s.as_ref(), t(60)), None);
        // Counts of a clock that did not go back are left as they are.
        let fresh = strike(None, t(0), 5, w);
        assert_eq!(settle(Some(fresh.clone()), t(30), w), Some(fresh));
        assert_eq!(settle(None, t(0), w), None);
    }

    #[test]
    fn old_wrong_pins_are_forgotten() {
        let w = Duration::seconds(60);
        let mut s = None;
        for i in 0..4 {
            s = Some(strike(s, t(i), 5, w));
        }
        let s = strike(s, t(120), 5, w);
        assert_eq!(s.failures, 1);
    }
}
