//! The campaigns page of a store that has run a campaign a month for years: a campaign whose
//! period is over has figures that no longer change. They were read from the journal again at
//! every `GET /v1/campaigns` — every past campaign's period, each up to a year of sales, more
//! every month — and each read waited for (and then held) the one report turn, so the page
//! waited for any report running and held up the next.

mod common;

use std::time::{Duration, Instant};

use chrono::{FixedOffset, TimeZone};
use common::history;
use common::{Daemon, MANAGER, store_today};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_campaigns_figures_are_read_once_not_at_every_look() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tz = FixedOffset::east_opt(8 * 3600).unwrap();
    let today = store_today();
    let at = |days_ago: i64, hour: u32| {
        tz.from_local_datetime(
            &(today - chrono::Duration::days(days_ago))
                .and_hms_opt(hour, 0, 0)
                .unwrap(),
        )
        .unwrap()
    };
    let mut events = Vec::new();
    // Regulars: a visit a week for a year (the "important_value" segment).
    for m in 0..200 {
        let id = format!("0190a000-0000-7000-8000-{m:012}");
        events.push((
            at(370, 9),
            history::member_event(
                &id,
                at(370, 9),
                "1001",
                &format!("会员{m}"),
                &format!("139{m:08}"),
            ),
        ));
        for w in 0..52 {
            let sale = format!("0190b000-{m:04}-7000-8000-{w:012}");
            let when = at(364 - w * 7, 10 + (m % 8) as u32);
            events.push((
                when,
                history::sale_event(&sale, when, "1001", Some(&id), &[("TEA", 1, 25_000)]),
            ));
        }
    }
    // Walk-in sales, enough for a year's report to take a while.
    for i in 0..40_000i64 {
        let when = at(1 + i * 729 / 40_000, 9 + (i % 12) as u32);
        let lines: Vec<(&str, u32, i64)> = (0..8).map(|l| ("MILK", 1, 1290 + l)).collect();
        let sale = format!("0190c000-0000-7000-8000-{i:012}");
        events.push((when, history::sale_event(&sale, when, "1001", None, &lines)));
    }
    history::write_journal(&data, events);
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let (s, v) = d
        .post(
            &tm,
            "/v1/campaigns",
            &json!({"id": "SPRING", "name": "春季", "target": {"segment": "important_value"},
                    "coupon_title": "满100减10", "coupon": {"type": "amount_off", "amount": 1000,
                    "threshold": 10000}, "starts": (today - chrono::Duration::days(60)).to_string(),
                    "ends": (today - chrono::Duration::days(31)).to_string()}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, first) = d.get(&tm, "/v1/campaigns").await;
    assert_eq!(s, 200, "{first}");
    assert!(
        first["campaigns"][0]["treated_revenue"].as_i64().unwrap() > 0,
        "{first}"
    );

    // A year's sales report takes the report turn for a while...
    let report = {
        let (client, base, token) = (d.client.clone(), d.base.clone(), tm.clone());
        let from = today - chrono::Duration::days(365);
        tokio::spawn(async move {
            let r = client
                .get(format!("{base}/v1/reports/sales?from={from}&to={today}"))
                .bearer_auth(token)
                .timeout(Duration::from_secs(300))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            Instant::now()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and the campaigns page, whose only campaign is over and was read before, answers
    // without waiting for it, with the same figures.
    let (s, again) = d.get(&tm, "/v1/campaigns").await;
    let answered = Instant::now();
    assert_eq!(s, 200, "{again}");
    let report_done = report.await.unwrap();
    assert!(
        answered < report_done,
        "the campaigns page waited for a year's report to read the journal again"
    );
    assert_eq!(first["campaigns"], again["campaigns"]);
    d.terminate();
}
