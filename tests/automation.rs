//! Marketing automation and campaigns through the real binary: a birthday coupon issued once
//! per member per year across restarts, used at the till and counted; a missed birthday caught
//! up; welcome coupons; a campaign with a control group, measured.

mod common;

use chrono::Datelike;
use common::history;
use common::*;
use serde_json::{Value, json};
use storebox::domain::automation::{Occasion, occasion_code};

fn start(dir: &std::path::Path) -> Daemon {
    let config = dir.join("storebox.toml");
    let text = config_text(&dir.join("data"), "").replace(
        "[insight.automation]\nenabled = false",
        "[insight.automation]\nenabled = true\nrun_hour = 0\nwelcome_coupon = 800",
    );
    std::fs::write(&config, text).unwrap();
    Daemon::start_with(dir, &config)
}

fn wait_for(d: &Daemon, needle: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while d.log_text().matches(needle).count() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "no {needle:?}:\n{}",
            d.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn count_events(dir: &std::path::Path, kind: &str, like: &str) -> i64 {
    let c = rusqlite::Connection::open(dir.join("data/journal.sqlite3")).unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM events WHERE kind = ?1 AND data LIKE ?2",
        [kind, like],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn birthday_coupons_are_issued_once_used_at_the_till_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let today = store_today();
    let d = start(dir.path());
    wait_for(&d, "morning automation done", 1);
    let t = d.login(CASHIER).await;
    let birthday = format!("1990-{:02}-{:02}", today.month(), today.day());
    let today_is_29_feb = today.month() == 2 && today.day() == 29;
    let birthday = if today_is_29_feb {
        "1992-02-29".to_string()
    } else {
        birthday
    };
    let a = d
        .register(
            &t,
            "寿星",
            "13900000001",
            json!({"birthday": birthday, "consent": {"marketing": true}}),
        )
        .await;
    let later = today + chrono::Duration::days(40);
    let b = d
        .register(
            &t,
            "还没到",
            "13900000002",
            json!({"birthday": format!("1991-{:02}-{:02}", later.month(), later.day().min(28))}),
        )
        .await;
    // Welcome coupons come with the registration.
    let welcome = occasion_code(&Occasion::Welcome, &a);
    let (s, c) = d.get(&t, &format!("/v1/coupons/{welcome}")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["member_id"], a.as_str());
    assert_eq!(c["kind"]["amount"], 800);

    // The morning run at the next start issues the birthday coupon; later runs do not again.
    d.terminate();
    for n in 1..=2 {
        let d = start(dir.path());
        wait_for(&d, "morning automation done", 1);
        d.terminate();
        assert_eq!(
            count_events(dir.path(), "member.birthday", &format!("%{a}%")),
            1,
            "run {n}"
        );
    }
    assert_eq!(
        count_events(dir.path(), "member.birthday", &format!("%{b}%")),
        0
    );
    let code = occasion_code(&Occasion::Birthday { year: today.year() }, &a);
    assert_eq!(
        count_events(dir.path(), "coupon.issued", &format!("%{code}%")),
        1
    );

    // At the till: the coupon takes ¥10 off, once.
    let d = start(dir.path());
    let t = d.login(CASHIER).await;
    let (s, c) = d.get(&t, &format!("/v1/coupons/{code}")).await;
    assert_eq!((s, c["kind"]["amount"].as_i64()), (200, Some(1000)), "{c}");
    let (s, q) = d
        .post(
            &t,
            "/v1/sales/quote",
            &json!({"member_id": a, "lines": [{"sku": "RICE", "qty": 1}], "coupon_codes": [code]}),
        )
        .await;
    assert_eq!(s, 200, "{q}");
    let total = q["total"].as_i64().unwrap();
    let (s, sale) = d
        .sale(
            &t,
            &json!({"member_id": a, "lines": [{"sku": "RICE", "qty": 1}], "coupon_codes": [code],
                    "payments": cash(total)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    assert!(sale["discount_total"].as_i64().unwrap() >= 1000, "{sale}");
    let (s, again) = d
        .sale(
            &t,
            &json!({"member_id": a, "lines": [{"sku": "RICE", "qty": 1}], "coupon_codes": [code],
                    "payments": cash(8990)}),
        )
        .await;
    assert_eq!(s, 422, "a used coupon: {again}");

    // Counted among the automatic campaigns.
    let tm = d.login(MANAGER).await;
    let (s, v) = d.get(&tm, "/v1/campaigns").await;
    assert_eq!(s, 200, "{v}");
    let bd = v["automatic"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"].as_str().unwrap().starts_with("BD"))
        .unwrap()
        .clone();
    assert_eq!(
        (bd["issued"].as_u64(), bd["redeemed"].as_u64()),
        (Some(1), Some(1)),
        "{bd}"
    );
    assert_eq!(bd["redemption_rate"], 1.0);
    let wl = &v["automatic"][1];
    assert_eq!(wl["issued"], 2, "{wl}");
    d.terminate();
}

/// A member registered at `registered` with `birthday`, for [`history::write_journal`].
fn member_born(
    id: &str,
    phone: &str,
    registered: chrono::DateTime<chrono::FixedOffset>,
    birthday: chrono::NaiveDate,
) -> (chrono::DateTime<chrono::FixedOffset>, Value) {
    // 1992 is a leap year: any day of the year is someone's birthday then.
    let birthday = format!("1992-{:02}-{:02}", birthday.month(), birthday.day());
    let mut e = history::member_event(id, registered, "1001", "寿星", phone);
    e["data"]["profile"]["birthday"] = json!(birthday);
    (registered, e)
}

/// Birthdays no morning run served — the box was off, the member registered after the run —
/// are caught up by the next run within a week, in the birthday's year, once; never a birthday
/// before the member registered.
#[tokio::test]
async fn a_missed_birthday_is_caught_up_by_the_next_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shanghai = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let today = store_today();
    let day = |n: i64| today - chrono::Duration::days(n);
    let evening = |d: chrono::NaiveDate| {
        d.and_hms_opt(20, 0, 0)
            .unwrap()
            .and_local_timezone(shanghai)
            .unwrap()
    };
    let id = || uuid::Uuid::now_v7().to_string();
    // Members of long standing: a birthday three days ago (the box was off), and one eight
    // days ago, beyond the default week.
    let (off, long_past) = (id(), id());
    // Registered on the birthday, yesterday evening, after the morning run.
    let on_the_day = id();
    // Registered yesterday, the day after the birthday.
    let after = id();
    history::write_journal(
        &data,
        vec![
            member_born(&off, "13900000011", evening(day(60)), day(3)),
            member_born(&long_past, "13900000012", evening(day(60)), day(8)),
            member_born(&on_the_day, "13900000013", evening(day(1)), day(1)),
            member_born(&after, "13900000014", evening(day(1)), day(2)),
        ],
    );
    for run in 1..=2 {
        let d = start(dir.path());
        wait_for(&d, "morning automation done", 1);
        d.terminate();
        for (m, born, n) in [
            (&off, day(3), 1),
            (&long_past, day(8), 0),
            (&on_the_day, day(1), 1),
            (&after, day(2), 0),
        ] {
            assert_eq!(
                count_events(dir.path(), "member.birthday", &format!("%{m}%")),
                n,
                "run {run}: born {born}"
            );
            // The birthday's year, not today's (they differ early in January).
            let code = occasion_code(&Occasion::Birthday { year: born.year() }, m);
            assert_eq!(
                count_events(dir.path(), "coupon.issued", &format!("%{code}%")),
                n,
                "run {run}: born {born}"
            );
        }
    }
    let d = start(dir.path());
    let t = d.login(CASHIER).await;
    let code = occasion_code(
        &Occasion::Birthday {
            year: day(3).year(),
        },
        &off,
    );
    let (s, c) = d.get(&t, &format!("/v1/coupons/{code}")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (c["member_id"].as_str(), c["kind"]["amount"].as_i64()),
        (Some(off.as_str()), Some(1000))
    );
    d.terminate();
}

#[tokio::test]
async fn a_campaign_holds_out_a_control_group_and_measures_the_effect() {
    let dir = tempfile::tempdir().unwrap();
    let today = store_today();
    let d = start(dir.path());
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let mut members = Vec::new();
    for i in 0..40 {
        let tags = if i % 10 == 0 {
            json!([])
        } else {
            json!(["vip"])
        };
        members.push(
            d.register(
                &t,
                &format!("客{i}"),
                &format!("1370000{i:04}"),
                json!({"tags": tags}),
            )
            .await,
        );
    }
    let (s, v) = d
        .post(
            &tm,
            "/v1/campaigns",
            &json!({"id": "VIP11", "name": "VIP 双十一", "target": {"tag": "vip"},
                    "coupon_title": "VIP 满100减20",
                    "coupon": {"type": "amount_off", "threshold": 10000, "amount": 2000},
                    "starts": today.to_string(), "ends": (today + chrono::Duration::days(6)).to_string(),
                    "control_percent": 25}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let treated = v["treated_members"].as_u64().unwrap();
    let control = v["control_members"].as_u64().unwrap();
    assert_eq!(treated + control, 36, "the 36 vip members, split");
    // The split hashes random member ids: about a quarter held out (none: p ≈ 3·10⁻⁵).
    assert!(control > 0 && treated > 0, "{v}");
    assert_eq!(v["issued"], treated);

    // Every treated member shops with the coupon; control members without.
    let mut treated_revenue = 0;
    let mut control_revenue = 0;
    let mut redeemed = 0;
    for m in &members {
        let code = occasion_code(
            &Occasion::Campaign {
                campaign: "VIP11".into(),
            },
            m,
        );
        let has = d.get(&t, &format!("/v1/coupons/{code}")).await.0 == 200;
        let mut body = json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}]});
        if has {
            body["coupon_codes"] = json!([code]);
        }
        let (_, q) = d.post(&t, "/v1/sales/quote", &body).await;
        let total = q["total"].as_i64().unwrap();
        body["payments"] = cash(total);
        let (s, sale) = d.sale(&t, &body).await;
        assert_eq!(s, 201, "{sale}");
        let (_, mv) = d.get(&tm, &format!("/v1/members/{m}")).await;
        let vip = mv["tags"].as_array().unwrap().contains(&Value::from("vip"));
        if has {
            treated_revenue += total;
            redeemed += 1;
        } else if vip {
            control_revenue += total;
        }
    }
    let (s, v) = d.get(&tm, "/v1/campaigns/VIP11").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["redeemed"].as_u64(), Some(redeemed));
    assert_eq!(v["redemption_rate"], 1.0);
    assert_eq!(v["treated_revenue"].as_i64(), Some(treated_revenue));
    assert_eq!(v["control_revenue"].as_i64(), Some(control_revenue));
    let per_t = treated_revenue / treated as i64;
    let per_c = control_revenue / control as i64;
    assert_eq!(
        v["incremental_revenue"].as_i64(),
        Some((per_t - per_c) * treated as i64)
    );
    d.terminate();
}

/// A member who came every week for three months and has not been back for `gap_days`: a
/// registration and ten sales, for [`history::write_journal`].
fn drifting_member(
    id: &str,
    phone: &str,
    gap_days: i64,
) -> Vec<(chrono::DateTime<chrono::FixedOffset>, Value)> {
    let now = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    let last = now - chrono::Duration::days(gap_days);
    let first = last - chrono::Duration::weeks(9);
    let mut events = vec![(
        first - chrono::Duration::hours(1),
        history::member_event(
            id,
            first - chrono::Duration::hours(1),
            "1001",
            "常客",
            phone,
        ),
    )];
    for week in 0..10 {
        let at = first + chrono::Duration::weeks(week);
        let sale = uuid::Uuid::now_v7().to_string();
        events.push((
            at,
            history::sale_event(&sale, at, "1001", Some(id), &[("TEA", 1, 25000)]),
        ));
    }
    events
}

fn start_winback(dir: &std::path::Path, winback_coupon: i64) -> Daemon {
    let config = dir.join("storebox.toml");
    let text = config_text(&dir.join("data"), "").replace(
        "[insight.automation]\nenabled = false",
        &format!(
            "[insight.automation]\nenabled = true\nrun_hour = 0\nwinback_coupon = {winback_coupon}"
        ),
    );
    std::fs::write(&config, text).unwrap();
    Daemon::start_with(dir, &config)
}

#[tokio::test]
async fn members_drifting_away_are_reported_to_hq_once_with_or_without_a_coupon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (x, y) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    history::write_journal(&data, drifting_member(&x, "13911110001", 60));

    // No win-back coupon configured: the member is still flagged to HQ, once.
    for run in 1..=2 {
        let d = start_winback(dir.path(), 0);
        wait_for(&d, "morning automation done", 1);
        let tm = d.login(MANAGER).await;
        let (s, m) = d.get(&tm, &format!("/v1/members/{x}")).await;
        assert_eq!(s, 200, "{m}");
        assert_eq!(m["at_risk"]["reason"], "overdue", "{m}");
        d.terminate();
        assert_eq!(
            count_events(dir.path(), "member.at_risk", &format!("%{x}%")),
            1,
            "run {run}"
        );
        assert_eq!(
            count_events(dir.path(), "member.at_risk", "%\"coupon_code\":null%"),
            1
        );
        assert_eq!(count_events(dir.path(), "coupon.issued", "%WB%"), 0);
    }

    // With a coupon configured later: a new occasion gets one; the old one is not acted on
    // again (HQ heard of it already).
    history::write_journal(&data, drifting_member(&y, "13911110002", 45));
    for run in 1..=2 {
        let d = start_winback(dir.path(), 1500);
        wait_for(&d, "morning automation done", 1);
        d.terminate();
        assert_eq!(
            count_events(dir.path(), "member.at_risk", &format!("%{x}%")),
            1
        );
        assert_eq!(
            count_events(dir.path(), "member.at_risk", &format!("%{y}%")),
            1,
            "run {run}"
        );
        assert_eq!(
            count_events(dir.path(), "coupon.issued", "%WB%"),
            1,
            "run {run}"
        );
    }
    let since = (chrono::Utc::now() - chrono::Duration::days(45))
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m")
        .to_string();
    let code = occasion_code(
        &Occasion::Winback {
            since,
            reason: String::new(),
        },
        &y,
    );
    let d = start_winback(dir.path(), 1500);
    let t = d.login(CASHIER).await;
    let (s, c) = d.get(&t, &format!("/v1/coupons/{code}")).await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (c["member_id"].as_str(), c["kind"]["amount"].as_i64()),
        (Some(y.as_str()), Some(1500))
    );
    d.terminate();
}
