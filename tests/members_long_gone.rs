//! The churn warning on a store that has run for years: members who stopped coming long ago
//! stayed `at_risk` for ever, and the manager's list — longest overdue first — began with
//! thousands of them (13,060 on a five-year store), burying the regulars who drifted away last
//! month and can still be won back. Away longer than `lost_after_days` (365), a member is lost
//! (the RFM segments show them), not at risk.

mod common;

use chrono::{FixedOffset, TimeZone};
use common::history;
use common::{CASHIER, Daemon, MANAGER, store_today};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_gone_for_years_are_lost_not_at_risk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    let today = store_today();
    let at = |days_ago: i64| {
        tz.from_local_datetime(
            &(today - chrono::Duration::days(days_ago))
                .and_hms_opt(11, 0, 0)
                .unwrap(),
        )
        .unwrap()
    };
    // A weekly regular each, who stopped coming 800, 400, 300 and 60 days ago.
    let stopped = [800i64, 400, 300, 60];
    let mut events = Vec::new();
    for (m, last) in stopped.iter().enumerate() {
        let id = format!("0190a000-0000-7000-8000-{m:012}");
        let first = last + 7 * 20;
        events.push((
            at(first + 1),
            history::member_event(
                &id,
                at(first + 1),
                "1001",
                "会员",
                &format!("1390000000{m}"),
            ),
        ));
        for w in 0..=20 {
            let sale = format!("0190b000-{m:04}-7000-8000-{w:012}");
            let when = at(first - w * 7);
            events.push((
                when,
                history::sale_event(&sale, when, "1001", Some(&id), &[("TEA", 1, 25_000)]),
            ));
        }
    }
    history::write_journal(&data, events);
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let (s, v) = d.get(&tm, "/v1/members/at-risk").await;
    assert_eq!(s, 200, "{v}");
    let away: Vec<i64> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["days_since_last"].as_i64().unwrap())
        .collect();
    assert_eq!(away, [300, 60], "{v}");
    // The list is as of today and whole: a report's period or limit is refused, not ignored.
    for q in ["from=2026-01-01", "to=2026-01-31", "limit=1"] {
        let (s, v) = d.get(&tm, &format!("/v1/members/at-risk?{q}")).await;
        assert_eq!(s, 400, "{q}: {v}");
    }
    // At the till: the one gone two years and more is not flagged; last month's is.
    let tc = d.login(CASHIER).await;
    for (m, flagged) in [(0, false), (3, true)] {
        let (s, v) = d
            .get(&tc, &format!("/v1/members/0190a000-0000-7000-8000-{m:012}"))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(!v["at_risk"].is_null(), flagged, "{v}");
    }
    d.terminate();

    // A store that wants them all back on the list says so.
    let config = common::write_config(dir.path(), "[insight.churn]\nlost_after_days = 3650\n");
    let d = Daemon::start_with(dir.path(), &config);
    let tm = d.login(MANAGER).await;
    let (_, v) = d.get(&tm, "/v1/members/at-risk").await;
    assert_eq!(v["members"].as_array().map(Vec::len), Some(4), "{v}");
    d.terminate();
    let bad = common::write_config(dir.path(), "[insight.churn]\nlost_after_days = 7\n");
    let out = common::storebox(&["check-config", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("insight.churn.lost_after_days"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
