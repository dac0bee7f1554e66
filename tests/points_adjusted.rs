//! A manager's adjustment of a member's points by hand (`POST /v1/members/{id}/points`),
//! against the real daemon: the balance, paying with the points, refusals that change nothing,
//! the idempotency key across a restart, a cache rebuilt from the journal, a refund after an
//! adjustment, expiry, and `points.adjusted` at HQ.

mod common;

use common::mqtt::{store_with_hq, wait_for};
use common::*;
use serde_json::{Value, json};

/// `POST /v1/members/{m}/points` with `key`.
async fn adjust(d: &Daemon, token: &str, m: &str, body: Value, key: &str) -> (u16, Value) {
    d.send(
        reqwest::Method::POST,
        token,
        &format!("/v1/members/{m}/points"),
        &body,
        Some(key),
    )
    .await
}

/// A new adjustment (a key of its own) of `delta` points for `reason`, without a note.
async fn adjust_new(d: &Daemon, token: &str, m: &str, delta: i64, reason: &str) -> (u16, Value) {
    let body = json!({"delta": delta, "reason": reason});
    adjust(d, token, m, body, &new_key()).await
}

async fn points(d: &Daemon, token: &str, m: &str) -> i64 {
    let (s, v) = d.get(token, &format!("/v1/members/{m}")).await;
    assert_eq!(s, 200, "{v}");
    v["points"].as_i64().unwrap()
}

/// The reports that count sales (and so the points sales earned), as JSON.
async fn reports(d: &Daemon, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for r in ["sales", "staff", "products"] {
        let (s, v) = d.get(token, &format!("/v1/reports/{r}")).await;
        assert_eq!(s, 200, "{r}: {v}");
        out.push(v);
    }
    out
}

fn new_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goodwill_credit_pays_for_a_sale_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "钱七", "13700137000", json!({})).await;
    let reports_before = reports(&d, &tm).await;

    // A cashier may not; the role is checked before the body.
    let (s, v) = adjust_new(&d, &t, &m, 1000, "goodwill").await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");

    let key = new_key();
    let body = json!({"delta": 1000, "reason": "goodwill", "note": "送货延误"});
    let (s, first) = adjust(&d, &tm, &m, body.clone(), &key).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["member_id"], json!(m));
    assert_eq!(first["delta"], 1000);
    assert_eq!(first["reason"], "goodwill");
    assert_eq!(first["note"], "送货延误");
    assert_eq!(first["staff_no"], MANAGER.0);
    assert_eq!(first["terminal_id"], "pos-1");
    assert_eq!(first["member"]["points"], 1000);
    assert_eq!(
        first["member"]["level"],
        Value::Null,
        "a credit is no spend"
    );
    assert!(
        first["created_at"].as_str().unwrap().ends_with("+08:00"),
        "{first}"
    );
    assert!(
        first["seq"].as_u64().is_some() && first["id"].as_str().is_some(),
        "{first}"
    );
    assert_eq!(points(&d, &t, &m).await, 1000);

    // The same key and body: the same answer, adjusted once.
    let (s, again) = adjust(&d, &tm, &m, body.clone(), &key).await;
    assert_eq!((s, &again), (200, &first));
    assert_eq!(points(&d, &t, &m).await, 1000);
    // The same key with another body, or another member: 409.
    let (s, v) = adjust(
        &d,
        &tm,
        &m,
        json!({"delta": 999, "reason": "goodwill", "note": "送货延误"}),
        &key,
    )
    .await;
    assert_eq!((s, code(&v)), (409, "idempotency_key_reused"), "{v}");

    // The member pays with the points: 500 points are ¥5.00 of a ¥12.90 bottle of milk.
    let (s, sale) = d
        .sale(
            &t,
            &json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}],
                          "redeem_points": 500, "payments": cash(790)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    assert_eq!(sale["points_redeemed"], 500, "{sale}");
    assert_eq!(sale["member"]["points"], 500, "{sale}");

    // A correction below zero is refused and changes nothing.
    let (s, v) = adjust_new(&d, &tm, &m, -501, "correction").await;
    assert_eq!((s, code(&v)), (422, "insufficient_points"), "{v}");
    assert_eq!(points(&d, &t, &m).await, 500);
    // Malformed requests: 400, nothing recorded.
    for (body, want) in [
        (json!({"delta": 0, "reason": "goodwill"}), "invalid_delta"),
        (
            json!({"delta": 1_000_001, "reason": "goodwill"}),
            "invalid_delta",
        ),
        (
            json!({"delta": -1_000_001, "reason": "correction"}),
            "invalid_delta",
        ),
        (
            json!({"delta": 5, "reason": "goodwill", "note": "长".repeat(201)}),
            "invalid_note",
        ),
    ] {
        let (s, v) = adjust(&d, &tm, &m, body.clone(), &new_key()).await;
        assert_eq!((s, code(&v)), (400, want), "{body}: {v}");
    }
    for body in [
        json!({"delta": 5, "reason": "bribe"}),
        json!({"delta": 5, "reason": "goodwill", "staff_no": "1001"}),
        json!({"delta": 1.5, "reason": "goodwill"}),
        json!({"reason": "goodwill"}),
    ] {
        let (s, v) = adjust(&d, &tm, &m, body.clone(), &new_key()).await;
        assert_eq!(s, 400, "{body}: {v}");
    }
    // `note: null` is no note, as leaving it out.
    let (s, v) = adjust(
        &d,
        &tm,
        &m,
        json!({"delta": -100, "reason": "correction", "note": null}),
        &new_key(),
    )
    .await;
    assert_eq!(
        (s, &v["note"], &v["member"]["points"]),
        (201, &json!(""), &json!(400)),
        "{v}"
    );
    // No key: 400, like a sale.
    let (s, v) = d
        .post(
            &tm,
            &format!("/v1/members/{m}/points"),
            &json!({"delta": 5, "reason": "goodwill"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "idempotency_key_required"), "{v}");
    // Unknown member: 404.
    let (s, v) = adjust(
        &d,
        &tm,
        "no-such-member",
        json!({"delta": 5, "reason": "goodwill"}),
        &new_key(),
    )
    .await;
    assert_eq!((s, code(&v)), (404, "member_not_found"), "{v}");
    assert_eq!(points(&d, &t, &m).await, 400);

    // Reports of sales are the same whatever was adjusted (the one sale is in both).
    let mut after = reports(&d, &tm).await;
    for (b, a) in reports_before.iter().zip(after.iter_mut()) {
        assert_ne!(b, a, "the sale is counted");
    }
    let (s, v) = adjust_new(&d, &tm, &m, 777, "complaint").await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(
        reports(&d, &tm).await,
        after,
        "an adjustment is not in the sales' figures"
    );
    let (_, staff) = d.get(&tm, "/v1/reports/staff").await;
    assert!(!staff.to_string().contains("777"), "{staff}");

    // An erased member's points are not adjusted.
    let gone = d.register(&t, "周九", "13600136000", json!({})).await;
    let (s, _) = d.erase(&tm, &gone).await;
    assert_eq!(s, 204);
    let (s, v) = adjust_new(&d, &tm, &gone, 5, "goodwill").await;
    assert_eq!((s, code(&v)), (422, "member_erased"), "{v}");

    // Audited like the other managers' money actions.
    let ta = d.login(ADMIN).await;
    let (s, audit) = d.get(&ta, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{audit}");
    let adjusts: Vec<&Value> = audit["entries"]
        .as_array()
        .or(audit["audit"].as_array())
        .unwrap_or_else(|| panic!("{audit}"))
        .iter()
        .filter(|e| e["action"] == "points.adjust")
        .collect();
    assert_eq!(adjusts.len(), 3, "{audit}");
    assert_eq!(adjusts[0]["target"], json!(m));
    assert_eq!(adjusts[0]["detail"]["delta"], 1000);
    assert_eq!(adjusts[0]["staff_no"], MANAGER.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adjustment_survives_a_restart_and_a_rebuilt_cache_and_its_key_still_answers() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "吴十", "13500135000", json!({})).await;
    let key = new_key();
    let body = json!({"delta": 300, "reason": "correction", "note": "漏记积分"});
    let (s, first) = adjust(&d, &tm, &m, body.clone(), &key).await;
    assert_eq!(s, 201, "{first}");
    let (s, v) = adjust_new(&d, &tm, &m, -120, "correction").await;
    assert_eq!((s, &v["member"]["points"]), (201, &json!(180)), "{v}");
    d.terminate();

    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    assert_eq!(points(&d, &t, &m).await, 180);
    let (s, again) = adjust(&d, &tm, &m, body.clone(), &key).await;
    assert_eq!(
        (s, &again),
        (200, &first),
        "the key answers after a restart"
    );
    assert_eq!(points(&d, &t, &m).await, 180, "and adjusts nothing again");
    d.terminate();

    // The cache gone: rebuilt from the journal, the same balance.
    let data = dir.path().join("data");
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    assert_eq!(points(&d, &t, &m).await, 180, "replayed from the journal");
    let (s, again) = adjust(&d, &tm, &m, body, &key).await;
    assert_eq!((s, &again), (200, &first));
    assert_eq!(points(&d, &t, &m).await, 180);
}

/// A refund takes back the points its sale earned; points a manager credited stay, and a
/// correction afterwards is paid from what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_after_an_adjustment_takes_back_only_the_sale_s_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "郑一", "13300133000", json!({})).await;
    // ¥1,000 makes 普通会员 (no points: no level when it began); the next ¥250 earns 250.
    let (s, v) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 4}], "payments": cash(100_000)}))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, sale) = d
        .sale(
            &t,
            &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25_000)}),
        )
        .await;
    assert_eq!((s, &sale["points_earned"]), (201, &json!(250)), "{sale}");
    let (s, v) = adjust_new(&d, &tm, &m, 200, "goodwill").await;
    assert_eq!((s, &v["member"]["points"]), (201, &json!(450)), "{v}");
    assert_eq!(v["member"]["level"]["code"], "regular", "{v}");
    assert_eq!(v["member"]["total_spend"], 125_000, "{v}");

    let sale_id = sale["id"].as_str().unwrap();
    let (s, refund) = d
        .send(
            reqwest::Method::POST,
            &tm,
            &format!("/v1/sales/{sale_id}/refunds"),
            &json!({"reason": "不要了"}),
            Some(&new_key()),
        )
        .await;
    assert_eq!(s, 201, "{refund}");
    assert_eq!(refund["points_reversed"], 250, "{refund}");
    assert_eq!(
        refund["refund_total"], 25_000,
        "all the money back: {refund}"
    );
    assert_eq!(refund["member"]["points"], 200, "{refund}");
    assert_eq!(points(&d, &t, &m).await, 200);

    let (s, v) = adjust_new(&d, &tm, &m, -201, "correction").await;
    assert_eq!((s, code(&v)), (422, "insufficient_points"), "{v}");
    let (s, v) = adjust_new(&d, &tm, &m, -200, "correction").await;
    assert_eq!((s, &v["member"]["points"]), (201, &json!(0)), "{v}");
}

/// HQ gets `points.adjusted` with the data docs/uplink.md lists, and its audit entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_receives_points_adjusted() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "王二", "13200132000", json!({})).await;
    let (s, credit) = adjust(
        &d,
        &tm,
        &m,
        json!({"delta": 88, "reason": "complaint", "note": "排队太久"}),
        &new_key(),
    )
    .await;
    assert_eq!(s, 201, "{credit}");
    let (s, debit) = adjust_new(&d, &tm, &m, -8, "other").await;
    assert_eq!(s, 201, "{debit}");
    wait_for(30, "two points.adjusted at HQ", || {
        hq.events()
            .iter()
            .filter(|e| e["kind"] == "points.adjusted")
            .count()
            == 2
    })
    .await;
    let events = hq.events();
    let got: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "points.adjusted")
        .collect();
    let month = store_today().format("%Y-%m").to_string();
    for (e, answer) in got.iter().zip([&credit, &debit]) {
        assert_eq!(e["id"], answer["id"], "{e}");
        assert_eq!(e["seq"], answer["seq"], "{e}");
        assert_eq!(e["store_id"], "sh-001");
        assert_eq!(e["occurred_at"], answer["created_at"]);
        let data = &e["data"];
        assert_eq!(data["member_id"], json!(m), "{e}");
        assert_eq!(data["store_id"], "sh-001", "{e}");
        assert_eq!(data["delta"], answer["delta"], "{e}");
        assert_eq!(data["reason"], answer["reason"], "{e}");
        assert_eq!(data["note"], answer["note"], "{e}");
        assert_eq!(data["staff_no"], MANAGER.0, "{e}");
        assert_eq!(data["terminal_id"], "pos-1", "{e}");
        assert_eq!(data["month"], json!(month), "{e}");
        assert_eq!(data["member"], answer["member"], "{e}");
    }
    assert_eq!(got[1]["data"]["member"]["points"], 80);
    wait_for(30, "the adjustments' audit entries at HQ", || {
        hq.events()
            .iter()
            .filter(|e| e["kind"] == "audit.recorded" && e["data"]["action"] == "points.adjust")
            .count()
            == 2
    })
    .await;
}

/// With `points_expiry_months = 1`, a month's credit lapses at the end of the next month, and
/// a debit is paid from the oldest points first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credited_points_lapse_with_their_month() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[membership]\npoints_expiry_months = 1\n");
    let at = |when: &str| start_faked(dir.path(), &config, lib, ("FAKETIME", when), &[]);
    let d = at("@2026-01-10 02:00:00");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "冯三", "13100131000", json!({})).await;
    let (s, v) = adjust_new(&d, &tm, &m, 300, "goodwill").await;
    assert_eq!(
        (s, &v["created_at"].as_str().unwrap()[..7]),
        (201, "2026-01"),
        "{v}"
    );
    d.terminate();

    let d = at("@2026-02-15 02:00:00");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    assert_eq!(
        points(&d, &t, &m).await,
        300,
        "January's points hold through February"
    );
    let (s, v) = adjust_new(&d, &tm, &m, 200, "goodwill").await;
    assert_eq!((s, &v["member"]["points"]), (201, &json!(500)), "{v}");
    // Taken from January's first.
    let (s, v) = adjust_new(&d, &tm, &m, -100, "correction").await;
    assert_eq!((s, &v["member"]["points"]), (201, &json!(400)), "{v}");
    d.terminate();

    let d = at("@2026-03-02 02:00:00");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    assert_eq!(
        points(&d, &t, &m).await,
        200,
        "January's other 200 lapsed, February's stay"
    );
    let (s, v) = adjust_new(&d, &tm, &m, -201, "correction").await;
    assert_eq!((s, code(&v)), (422, "insufficient_points"), "{v}");
    d.terminate();

    let d = at("@2026-04-01 02:00:00");
    let t = d.login(CASHIER).await;
    assert_eq!(
        points(&d, &t, &m).await,
        0,
        "February's lapsed at the end of March"
    );
}
