//! `GET /v1/campaigns` counts a campaign's coupons and the automatic ones (welcome, win-back,
//! birthday) by their codes: a coupon a manager (or HQ) gave a code of their own that merely
//! begins the same way — `WBXMAS`, `WL-VIP`, `SPRING-EXTRA` — is none of them.

mod common;

use common::*;
use serde_json::{Value, json};

fn start(dir: &std::path::Path) -> Daemon {
    let config = dir.join("storebox.toml");
    let text = config_text(&dir.join("data"), "").replace(
        "[insight.automation]\nenabled = false",
        "[insight.automation]\nenabled = true\nrun_hour = 23\nwelcome_coupon = 800",
    );
    std::fs::write(&config, text).unwrap();
    Daemon::start_with(dir, &config)
}

fn automatic<'a>(v: &'a Value, id: &str) -> &'a Value {
    v["automatic"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v}"))
}

#[tokio::test]
async fn coupons_of_a_manager_s_own_code_are_not_counted_as_automatic_or_campaign_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let t = d.login(CASHIER).await;
    let member = d
        .register(&t, "张三", "13900000031", json!({"tags": ["vip"]}))
        .await;
    let tm = d.login(MANAGER).await;
    let (s, c) = d
        .post(
            &tm,
            "/v1/campaigns",
            &json!({"id": "SPRING", "name": "春季", "target": {"tag": "vip"},
                    "coupon_title": "春季礼券", "coupon": {"type": "amount_off", "threshold": 10000, "amount": 1000},
                    "starts": store_today(), "ends": store_today(), "control_percent": 0}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["issued"], 1, "{c}");
    // A manager's own coupons, codes as a manager would choose them.
    let family = format!(
        "BD{:02}-FAMILY",
        chrono::Datelike::year(&store_today()) % 100
    );
    for code in ["WBXMAS2026", "WL-VIP8", "SPRING-EXTRA", family.as_str()] {
        let (s, c) = d
            .post(
                &tm,
                "/v1/coupons",
                &json!({"code": code, "title": "店长券", "member_id": member,
                        "kind": {"type": "amount_off", "threshold": 10000, "amount": 500}}),
            )
            .await;
        assert_eq!(s, 201, "{c}");
    }
    let (s, v) = d.get(&tm, "/v1/campaigns").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["campaigns"][0]["issued"], 1, "campaign SPRING: {v}");
    assert_eq!(automatic(&v, "WL")["issued"], 1, "welcome: {v}");
    assert_eq!(automatic(&v, "WB")["issued"], 0, "win-back: {v}");
    let bd = v["automatic"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(automatic(&v, &bd)["issued"], 0, "birthday: {v}");
    d.terminate();
}
