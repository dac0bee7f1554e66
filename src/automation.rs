//! The store's own marketing, each morning (store time): birthday coupons for members whose
//! birthday is in the configured window — `birthday_days_ahead` before it, and up to
//! `birthday_catch_up_days` after it for a birthday no run served yet (the box was off that
//! morning, or the member registered or had their birthday entered after that morning's run;
//! see [`crate::domain::automation::birthday_due`]); for members who turned `at_risk`, a
//! `member.at_risk` event to HQ with a win-back coupon (the event goes up without a coupon
//! when `winback_coupon = 0`). Every occasion has a code (see
//! [`crate::domain::automation::occasion_code`]), the code of its coupon too, which the cache
//! remembers, so a restart or a second run the same day acts on nothing twice. Welcome
//! coupons are issued with the registration itself.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Timelike, Utc};
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::domain::automation::{Occasion, birthday_due};
use crate::domain::campaign::{Campaign, CheckedSpec, in_control};
use crate::domain::insight::{churn, rfm};
use crate::ledger::{Actor, Command, Ledger, Outcome, StoreSettings};

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Birthday coupons issued.
    pub birthday: u64,
    /// Members newly flagged at risk (`member.at_risk` sent, with a win-back coupon if one
    /// is configured).
    pub at_risk: u64,
    /// Occasions already served before (nothing issued).
    pub already: u64,
}

/// The morning pass reads every member (unsealing each: about 4 s of one core for a million
/// on the 2-core store box) while the tills sell. It runs on a thread of the lowest CPU
/// priority ([`lowest_priority`]) and takes at most this share of one core, resting between
/// stretches of work; a million members then take about a quarter of a minute when the store
/// is quiet, longer when the tills are busy.
const DUTY: f64 = 0.25;

/// Members between two rests of the pass.
const STRETCH: u32 = 500;

/// How long to rest after `worked`, to keep to `duty` of one core.
fn rest_after(worked: Duration, duty: f64) -> Duration {
    if duty >= 1.0 || duty <= 0.0 {
        return Duration::ZERO;
    }
    worked.mul_f64(1.0 / duty - 1.0)
}

/// Rests every [`STRETCH`] members; breaks the scan when the daemon stops.
struct Pace<'a> {
    stop: &'a CancellationToken,
    since: Instant,
    seen: u32,
}

impl Pace<'_> {
    fn new(stop: &CancellationToken) -> Pace<'_> {
        Pace {
            stop,
            since: Instant::now(),
            seen: 0,
        }
    }

    fn step(&mut self) -> ControlFlow<()> {
        if self.stop.is_cancelled() {
            return ControlFlow::Break(());
        }
        self.seen += 1;
        if self.seen.is_multiple_of(STRETCH) {
            std::thread::sleep(rest_after(self.since.elapsed(), DUTY));
            self.since = Instant::now();
        }
        ControlFlow::Continue(())
    }
}

/// Lowers the calling thread to the lowest CPU priority (nice 19), so the pass runs on the
/// CPU time the tills leave. On Linux `setpriority` with a thread id applies to that thread
/// alone; it cannot be raised again without privileges, hence a thread of its own.
fn lowest_priority() {
    // SAFETY: two system calls about the calling thread; no memory is passed.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot lower the automation thread's priority; it runs paced only"
        );
    }
}

fn actor() -> Actor {
    Actor {
        staff_no: "automation".into(),
        role: crate::domain::access::Role::Admin,
        terminal_id: "storebox".into(),
    }
}

/// Runs once a day, at or after `run_hour` store time (at once on start if that hour has
/// passed: a run is harmless to repeat). What no run served — a birthday on a day the box was
/// off, a member registered after the day's run — the next run catches up (birthdays within
/// `birthday_catch_up_days`).
pub async fn run(
    ledger: Ledger,
    cache: Cache,
    settings: Arc<StoreSettings>,
    shutdown: CancellationToken,
) {
    let a = settings.insight.automation.clone();
    if !a.enabled {
        return;
    }
    let mut done: Option<NaiveDate> = None;
    let mut waiting = false;
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = settings.local(Utc::now());
        let today = now.date_naive();
        if now.hour() < a.run_hour || done == Some(today) {
            continue;
        }
        // A box without a battery-backed clock that booted at 1970: a run now would issue
        // coupons dated 1970, expired once NTP sets the clock.
        if crate::domain::timestamp::clock_not_set(&now) {
            if !waiting {
                tracing::warn!(%today, "morning automation waits: the clock is not set");
                waiting = true;
            }
            continue;
        }
        waiting = false;
        let result = run_once(&ledger, &cache, &settings, today, &shutdown).await;
        if shutdown.is_cancelled() {
            return;
        }
        match result {
            Ok(t) => {
                tracing::info!(
                    birthday = t.birthday,
                    at_risk = t.at_risk,
                    already = t.already,
                    "morning automation done"
                );
                done = Some(today);
            }
            Err(e) => {
                tracing::error!(error = %e, "morning automation failed; retrying in a minute")
            }
        }
    }
}

/// One run for `today`, paced (see [`DUTY`]); stops early, having done part, once `stop` is
/// cancelled.
pub async fn run_once(
    ledger: &Ledger,
    cache: &Cache,
    settings: &Arc<StoreSettings>,
    today: NaiveDate,
    stop: &CancellationToken,
) -> Result<Tally, String> {
    let a = settings.insight.automation.clone();
    let (cache2, settings2, stop2) = (cache.clone(), settings.clone(), stop.clone());
    let (done, found) = tokio::sync::oneshot::channel();
    let scan = move || {
        lowest_priority();
        let now = settings2.local(Utc::now());
        let rules = settings2.rules();
        let mut out = Vec::new();
        let mut pace = Pace::new(&stop2);
        cache2
            .scan_members_while(|_, m| {
                let go = pace.step();
                let Some(p) = &m.profile else { return go };
                // The store-local day the member registered: no coupon for a birthday before it.
                let registered = settings2.local_date(m.created_at.with_timezone(&Utc));
                if let Some(year) = p.birthday.and_then(|b| {
                    birthday_due(
                        b,
                        registered,
                        today,
                        a.birthday_days_ahead,
                        a.birthday_catch_up_days,
                    )
                }) {
                    // The level in force today, as the till shows it (with levels that can
                    // drop, the stored one may be gone).
                    let level = m
                        .effective_level(&rules, today)
                        .map(|l| l.code.clone())
                        .unwrap_or_default();
                    let amount = a
                        .birthday_coupon
                        .get(&level)
                        .or_else(|| a.birthday_coupon.get("default"))
                        .copied()
                        .unwrap_or(0);
                    if amount > 0 {
                        let occasion = Occasion::Birthday { year };
                        let coupon = crate::ledger::auto_coupon(
                            &occasion,
                            &m.id,
                            "生日礼券 Birthday",
                            amount,
                            now,
                            settings2.tz,
                            a.birthday_valid_days,
                        );
                        out.push((m.id.clone(), occasion, Some(Box::new(coupon))));
                    }
                }
                if let Some(reason) = churn(&m, &settings2.insight.churn, today) {
                    let since = m
                        .last_visit_day(today)
                        .map(|d| d.format("%Y-%m").to_string())
                        .unwrap_or_default();
                    let occasion = Occasion::Winback {
                        since,
                        reason: reason.describe(),
                    };
                    let coupon = (a.winback_coupon > 0).then(|| {
                        Box::new(crate::ledger::auto_coupon(
                            &occasion,
                            &m.id,
                            "回归礼券 We miss you",
                            a.winback_coupon,
                            now,
                            settings2.tz,
                            a.winback_valid_days,
                        ))
                    });
                    out.push((m.id.clone(), occasion, coupon));
                }
                go
            })
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(out)
    };
    // Its own thread, not the blocking pool: the thread's priority is lowered for good.
    std::thread::Builder::new()
        .name("automation".into())
        .spawn(move || {
            let _ = done.send(scan());
        })
        .map_err(|e| format!("cannot start the automation thread: {e}"))?;
    let occasions = found
        .await
        .map_err(|_| "the automation thread stopped".to_string())??;
    let mut t = Tally::default();
    for (member_id, occasion, coupon) in occasions {
        if stop.is_cancelled() {
            break;
        }
        let birthday = matches!(occasion, Occasion::Birthday { .. });
        let cmd = Command::Automate {
            member_id,
            occasion,
            coupon,
        };
        match ledger
            .execute(actor(), cmd)
            .await
            .map_err(|e| e.to_string())?
        {
            Outcome::Automated { issued: true } if birthday => t.birthday += 1,
            Outcome::Automated { issued: true } => t.at_risk += 1,
            _ => t.already += 1,
        }
    }
    Ok(t)
}

/// A campaign for this store's members: those in the target segment and with the target tag
/// (erased members never), split by the stable hash of [`in_control`] into treated and
/// control. `None` when no member here matches. Scans every member: call it off the async
/// runtime.
pub fn campaign_for(
    cache: &Cache,
    settings: &StoreSettings,
    checked: CheckedSpec,
    started_by: &str,
    today: NaiveDate,
) -> Result<Option<Campaign>, crate::cache::CacheError> {
    let CheckedSpec { spec, segment } = checked;
    let (mut treated, mut control) = (Vec::new(), Vec::new());
    cache.scan_members(|_, m| {
        if m.erased_at.is_some() {
            return;
        }
        let in_segment = segment.is_none_or(|s| rfm(&m, &settings.insight.rfm, today).1 == s);
        let tagged = spec.target.tag.as_ref().is_none_or(|t| m.tags.contains(t));
        if in_segment && tagged {
            if in_control(&spec.id, &m.id, spec.control_percent) {
                control.push(m.id);
            } else {
                treated.push(m.id);
            }
        }
    })?;
    if treated.is_empty() {
        return Ok(None);
    }
    Ok(Some(Campaign {
        spec,
        treated,
        control,
        started_by: started_by.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pass_rests_three_times_its_work_and_stops_with_the_daemon() {
        let ms = Duration::from_millis;
        assert_eq!(rest_after(ms(8), 0.25), ms(24));
        assert_eq!(rest_after(ms(8), 1.0), Duration::ZERO);
        assert_eq!(rest_after(ms(8), 0.0), Duration::ZERO);
        let stop = CancellationToken::new();
        let mut pace = Pace::new(&stop);
        assert!((0..10).all(|_| pace.step().is_continue()));
        stop.cancel();
        assert!(pace.step().is_break());
    }

    /// The pass's thread, and only it, drops to nice 19.
    #[test]
    fn the_pass_thread_runs_at_the_lowest_priority() {
        // SAFETY: reads the priority of the calling thread.
        let nice =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let before = nice();
        let inside = std::thread::spawn(move || {
            lowest_priority();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(inside, 19);
        assert_eq!(nice(), before, "the calling thread keeps its priority");
    }
}
