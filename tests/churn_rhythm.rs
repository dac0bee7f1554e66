//! The churn warning's rhythm: a member's usual interval comes from the latest 24 visit days
//! (what the counters keep per store), so a `min_visits` above that could never be met.

mod common;

use common::mqtt::store_with_hq;
use common::*;

/// `insight.churn.min_visits = 30` asked for thirty visit days before a member's rhythm
/// counts; each store keeps only the latest 24, so no member of a single store could ever
/// be overdue: the warning and the win-back coupons stopped, and nothing said why. Until
/// 2026-12-07 the config was taken as it was; now `check-config` (and the start) name the key.
#[test]
fn a_min_visits_the_kept_visit_days_cannot_reach_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (n, ok) in [(24, true), (25, false), (30, false)] {
        let config = write_config(
            dir.path(),
            &format!("\n[insight.churn]\nmin_visits = {n}\n"),
        );
        let out = storebox(&["check-config", config.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        if ok {
            assert!(out.status.success(), "min_visits = {n}: {err}");
        } else {
            assert_eq!(out.status.code(), Some(2), "min_visits = {n}: {err}");
            assert!(err.contains("insight.churn.min_visits"), "{err}");
            assert!(err.contains("24"), "{err}");
        }
    }
}

/// A member who has shopped here twice a week for years and, now and then, at another store
/// of the chain stopped coming a month ago. HQ's copy of the member brings both stores'
/// counters. The till flags the member as drifting away by their rhythm here (every 3–4
/// days), as the README says ("from their last 24 visit days"). Until 2026-12-07 the other
/// store's 24 days, spread over nine years, were taken with this store's: the usual interval
/// came out at ~70 days, the member was not at risk, and no win-back coupon was issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regular_who_stopped_coming_is_at_risk_whatever_they_did_at_other_stores() {
    use chrono::Duration;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_subscribed().await;

    let today = store_today();
    let last = today - Duration::days(30);
    // Here: twice a week for twelve weeks, until a month ago.
    let here: Vec<String> = (0..12)
        .flat_map(|week| [0, 3].map(|back| last - Duration::days(week * 7 + back)))
        .map(|day| day.to_string())
        .collect();
    // Elsewhere: every four months, nine years ago to a year ago.
    let elsewhere: Vec<String> = (0..24)
        .map(|n| (today - Duration::days(3300) + Duration::days(n * 120)).to_string())
        .collect();
    let counters = |days: &[String], visits: usize| {
        json!({"visits": visits, "last_visit_at": format!("{}T18:00:00+08:00", days.iter().max().unwrap()),
               "visit_days": days, "months": {}})
    };
    hq.publish(
        "storebox/stores/sh-001/hq/members",
        json!({"id": "m-1", "kind": "members", "version": 1, "items": [
            {"id": "hq-regular", "name": "钱芳", "phone": "13766665555", "version": 2,
             "created_at": "2016-03-01T10:00:00+08:00", "created_store": "sh-001",
             "counters": {"sh-001": counters(&here, 900), "sh-002": counters(&elsewhere, 24)}}]}),
    )
    .await;
    let t = d.login(CASHIER).await;
    let mut member = serde_json::Value::Null;
    for _ in 0..400 {
        let (s, v) = d.get(&t, "/v1/members/hq-regular").await;
        if s == 200 {
            member = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(member["visits"], 924, "{member}");
    let risk = &member["at_risk"];
    assert_eq!(risk["reason"], "overdue", "{member}");
    assert_eq!(risk["days_since_last"], 30, "{member}");
    assert!(
        risk["usual_interval_days"].as_f64().unwrap() < 4.0,
        "{member}"
    );
}
