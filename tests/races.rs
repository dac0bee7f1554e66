//! Concurrent requests racing on the same thing, against the real daemon: the ledger's group
//! commit batches them together, and each must see what the ones before it in the batch did.
//! The same points or coupon spent from many terminals at once, the same sale refunded at once,
//! the same Idempotency-Key sent at once, the same phone registered at once, the last units of a
//! product sold at once, an edit racing an erasure, keyed commands sent at once.
//! (HQ's changes, quotes and safety stock racing the tills: tests/races_hq_stock.rs.)

mod common;

use common::race::*;
use common::*;
use futures_util::future::join_all;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_points_spent_from_many_tills_at_once_are_spent_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tills = tills(&d).await;
    let m = member_with_points(&d, &tills[0], "13800000001").await;
    let results = race(
        &d,
        &tills,
        N,
        reqwest::Method::POST,
        "/v1/sales",
        |_| json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "redeem_points": 1200, "payments": cash(25_000)}),
        fresh_key,
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 422), N - 1, "{results:?}");
    for (s, v) in &results {
        if *s == 422 {
            assert_eq!(code(v), "insufficient_points", "{v}");
        }
    }
    let (_, sale) = results.iter().find(|(s, _)| *s == 201).unwrap();
    let (_, member) = d.get(&tills[0], &format!("/v1/members/{m}")).await;
    assert_eq!(member["points"], sale["member"]["points"], "{member}");
    assert!(member["points"].as_i64().unwrap() >= 0, "{member}");
    assert_eq!(journal_count(&d, "sale.recorded"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_use_coupon_presented_at_many_tills_at_once_is_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tills = tills(&d).await;
    let tm = d.login(MANAGER).await;
    let (s, c) = d
        .post(
            &tm,
            "/v1/coupons",
            &json!({"code": "RACE-1", "kind": {"type": "amount_off", "threshold": 1000, "amount": 500}}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let results = race(
        &d,
        &tills,
        N,
        reqwest::Method::POST,
        "/v1/sales",
        |_| json!({"lines": [{"sku": "RICE", "qty": 1}], "coupon_codes": ["RACE-1"], "payments": cash(8_990)}),
        fresh_key,
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 422), N - 1, "{results:?}");
    assert_eq!(journal_count(&d, "coupon.redeemed"), 1);
    let (_, c) = d.get(&tills[0], "/v1/coupons/RACE-1").await;
    assert!(c["used"].is_object(), "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sale_refunded_from_many_tills_at_once_is_refunded_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tills = tills(&d).await;
    let managers = [
        login_on(&d, TERMINAL_TOKEN, MANAGER).await,
        login_on(&d, POS2, MANAGER).await,
    ];
    let m = d
        .register(&tills[0], "李四", "13800000002", json!({}))
        .await;
    let (s, whole) = d
        .sale(&tills[0], &json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 5}, {"sku": "RICE", "qty": 2}], "payments": cash(5 * 1290 + 2 * 8990)}))
        .await;
    assert_eq!(s, 201, "{whole}");
    let (s, part) = d
        .sale(&tills[0], &json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 5}], "payments": cash(5 * 1290)}))
        .await;
    assert_eq!(s, 201, "{part}");
    let (_, milk) = d.get(&tills[0], "/v1/stock/MILK").await;
    let (_, rice) = d.get(&tills[0], "/v1/stock/RICE").await;
    let (milk, rice) = (
        milk["on_hand"].as_i64().unwrap(),
        rice["on_hand"].as_i64().unwrap(),
    );

    // The whole sale, at once from both tills.
    let path = format!("/v1/sales/{}/refunds", whole["id"].as_str().unwrap());
    let results = race(
        &d,
        &managers,
        N,
        reqwest::Method::POST,
        &path,
        |_| json!({"reason": "退货"}),
        |_| None,
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 422), N - 1, "{results:?}");
    // Three of five, at once: only one fits.
    let path = format!("/v1/sales/{}/refunds", part["id"].as_str().unwrap());
    let results = race(
        &d,
        &managers,
        N,
        reqwest::Method::POST,
        &path,
        |_| json!({"reason": "退货", "lines": [{"sku": "MILK", "qty": 3}]}),
        |_| None,
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 422), N - 1, "{results:?}");

    let (_, v) = d
        .get(
            &tills[0],
            &format!("/v1/sales/{}", whole["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(v["refunded_total"], whole["total"], "{v}");
    let (_, v) = d
        .get(
            &tills[0],
            &format!("/v1/sales/{}", part["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(v["refunded_total"], 3 * 1290, "{v}");
    let (_, m2) = d.get(&tills[0], "/v1/stock/MILK").await;
    let (_, r2) = d.get(&tills[0], "/v1/stock/RICE").await;
    assert_eq!(m2["on_hand"], milk + 5 + 3, "{m2}");
    assert_eq!(r2["on_hand"], rice + 2, "{r2}");
    let (_, member) = d.get(&tills[0], &format!("/v1/members/{m}")).await;
    assert_eq!(member["total_spend"], 5 * 1290 - 3 * 1290, "{member}");
    assert_eq!(journal_count(&d, "sale.refunded"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_many_times_at_once_makes_one_sale() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tills = [t.clone()];
    let m = member_with_points(&d, &t, "13800000003").await;
    let body = json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 2}], "redeem_points": 100, "payments": cash(2 * 1290)});
    let key = uuid::Uuid::now_v7().to_string();
    let results = race(
        &d,
        &tills,
        N,
        reqwest::Method::POST,
        "/v1/sales",
        |_| body.clone(),
        |_| Some(key.clone()),
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 200), N - 1, "{results:?}");
    // Every answer is the original sale, as it was answered.
    let (_, first) = results.iter().find(|(s, _)| *s == 201).unwrap();
    for (_, v) in &results {
        assert_eq!(v, first);
    }
    assert_eq!(journal_count(&d, "sale.recorded"), 3);

    // Different bodies under one key: one sale, the others 409 (or 200, the same body).
    let key = uuid::Uuid::now_v7().to_string();
    let results = race(
        &d,
        &tills,
        N,
        reqwest::Method::POST,
        "/v1/sales",
        |i| json!({"lines": [{"sku": "MILK", "qty": 1 + (i % 4)}], "payments": cash(4 * 1290)}),
        |_| Some(key.clone()),
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    let (_, won) = results.iter().find(|(s, _)| *s == 201).unwrap();
    for (s, v) in &results {
        match s {
            201 => {}
            200 => assert_eq!(v["id"], won["id"], "{v}"),
            409 => assert_eq!(code(v), "idempotency_key_reused", "{v}"),
            _ => panic!("{s} {v}"),
        }
    }
    assert_eq!(journal_count(&d, "sale.recorded"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_phone_registered_from_many_tills_at_once_is_one_member() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tills = tills(&d).await;
    let results = race(
        &d,
        &tills,
        N,
        reqwest::Method::POST,
        "/v1/members",
        |i| json!({"name": format!("王{i}"), "phone": "13900000009", "card_no": format!("C{i:04}")}),
        |_| None,
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 409), N - 1, "{results:?}");
    let (_, found) = d.get(&tills[0], "/v1/members?phone=13900000009").await;
    assert_eq!(found["members"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(journal_count(&d, "member.registered"), 1);

    // One card from many tills, under different phones.
    let results = race(
        &d,
        &tills,
        N,
        reqwest::Method::POST,
        "/v1/members",
        |i| json!({"name": format!("赵{i}"), "phone": format!("137000000{i:02}"), "card_no": "CARD-RACE"}),
        |_| None,
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 409), N - 1, "{results:?}");
    let (_, found) = d.get(&tills[0], "/v1/members?card=CARD-RACE").await;
    assert_eq!(found["members"].as_array().unwrap().len(), 1, "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_last_units_sold_at_once_never_go_below_zero_and_warn_once() {
    let dir = tempfile::tempdir().unwrap();
    // Negative stock refused.
    let config = config_text(
        &dir.path().join("data"),
        "[[products]]\nsku = \"LAST\"\nname = \"限量月饼\"\nprice = 1000\nstock = 6\nsafety_stock = 4\n",
    )
    .replace(
        "environment = \"development\"",
        "environment = \"development\"\nallow_negative_stock = false",
    );
    let path = dir.path().join("storebox.toml");
    std::fs::write(&path, config).unwrap();
    let d = Daemon::start_with(dir.path(), &path);
    let tills = tills(&d).await;
    let results = race(
        &d,
        &tills,
        N,
        reqwest::Method::POST,
        "/v1/sales",
        |_| json!({"lines": [{"sku": "LAST", "qty": 1}], "payments": cash(1000)}),
        fresh_key,
    )
    .await;
    assert_eq!(count(&results, 201), 6, "{results:?}");
    assert_eq!(count(&results, 422), N - 6, "{results:?}");
    let (_, level) = d.get(&tills[0], "/v1/stock/LAST").await;
    assert_eq!(level["on_hand"], 0, "{level}");
    assert_eq!(journal_count(&d, "stock.low"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edit_racing_an_erasure_leaves_nothing_personal() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    for round in 0..8 {
        let phone = format!("1360000{round:04}");
        let m = d
            .register(
                &t,
                "钱七",
                &phone,
                json!({"card_no": format!("EC{round:04}")}),
            )
            .await;
        let path = format!("/v1/members/{m}");
        let edits = (0..6).map(|i| {
            let (d, t, path) = (&d, t.clone(), path.clone());
            async move {
                d.send(
                    reqwest::Method::PATCH,
                    &t,
                    &path,
                    &json!({"name": format!("钱{i}"), "phone": format!("1350000{round:02}{i:02}"), "tags": ["孕妇"]}),
                    None,
                )
                .await
            }
        });
        let nothing = json!({});
        let erase = d.send(reqwest::Method::DELETE, &tm, &path, &nothing, None);
        let (edits, erased) = tokio::join!(join_all(edits), erase);
        assert!(matches!(erased.0, 200 | 204), "{erased:?}");
        for (s, v) in &edits {
            assert!(matches!(s, 200 | 404), "{s} {v}");
        }
        let (_, v) = d.get(&tm, &path).await;
        assert!(v["name"].is_null() && v["phone"].is_null(), "{v}");
        assert_eq!(v["tags"], json!([]), "{v}");
        for i in 0..6 {
            let (_, found) = d
                .get(&tm, &format!("/v1/members?phone=1350000{round:02}{i:02}"))
                .await;
            assert_eq!(found["members"], json!([]), "{found}");
        }
        let (_, found) = d.get(&tm, &format!("/v1/members?phone={phone}")).await;
        assert_eq!(found["members"], json!([]), "{found}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keyed_registrations_refunds_and_movements_sent_at_once_happen_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_text(&dir.path().join("data"), "").replace(
        "environment = \"development\"",
        "environment = \"development\"\nallow_negative_stock = false",
    );
    let path = dir.path().join("storebox.toml");
    std::fs::write(&path, config).unwrap();
    let d = Daemon::start_with(dir.path(), &path);
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;

    // One registration, its key sent many times at once.
    let key = uuid::Uuid::now_v7().to_string();
    let results = race(
        &d,
        std::slice::from_ref(&t),
        N,
        reqwest::Method::POST,
        "/v1/members",
        |_| json!({"name": "孙八", "phone": "13711112222"}),
        |_| Some(key.clone()),
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    assert_eq!(count(&results, 200), N - 1, "{results:?}");
    assert!(
        results.iter().all(|(_, v)| v["id"] == results[0].1["id"]),
        "{results:?}"
    );
    assert_eq!(journal_count(&d, "member.registered"), 1);

    // One refund key, different lines at once: one refund.
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "MILK", "qty": 4}], "payments": cash(4 * 1290)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    let key = uuid::Uuid::now_v7().to_string();
    let results = race(
        &d,
        std::slice::from_ref(&tm),
        N,
        reqwest::Method::POST,
        &format!("/v1/sales/{}/refunds", sale["id"].as_str().unwrap()),
        |i| json!({"reason": "退货", "lines": [{"sku": "MILK", "qty": 1 + i % 3}]}),
        |_| Some(key.clone()),
    )
    .await;
    assert_eq!(count(&results, 201), 1, "{results:?}");
    for (s, v) in &results {
        assert!(matches!(s, 200 | 201 | 409), "{s} {v}");
    }
    assert_eq!(journal_count(&d, "sale.refunded"), 1);

    // Damage of the last units, at once: never below zero.
    let (_, level) = d.get(&t, "/v1/stock/RICE").await;
    let on_hand = level["on_hand"].as_i64().unwrap();
    let results = race(
        &d,
        std::slice::from_ref(&tm),
        N,
        reqwest::Method::POST,
        "/v1/stock/movements",
        |_| json!({"sku": "RICE", "delta": -(on_hand / 4), "reason": "damage"}),
        fresh_key,
    )
    .await;
    assert_eq!(count(&results, 201), 4, "{results:?}");
    let (_, level) = d.get(&t, "/v1/stock/RICE").await;
    assert_eq!(level["on_hand"], on_hand % 4, "{level}");
}
