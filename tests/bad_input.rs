//! Bad input never panics and never changes data: each case gets a clear error, and the
//! journal, members and stock are exactly as before.

mod common;

use std::process::Command;

use common::{CASHIER, Daemon, MANAGER, TERMINAL_TOKEN, cash, code};
use serde_json::{Value, json};

/// What must not change.
async fn snapshot(d: &Daemon, t: &str, member: &str) -> (Value, Value, Value) {
    let h = d.health().await;
    let (_, m) = d.get(t, &format!("/v1/members/{member}")).await;
    let (_, s) = d.get(t, "/v1/stock/TEA").await;
    (h["journal"]["last_seq"].clone(), m, s)
}

async fn raw(
    d: &Daemon,
    token: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> (u16, Value) {
    let mut req = d
        .client
        .request(method.parse().unwrap(), d.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let m = d.register(&t, "测试", "13912345678", json!({})).await;
    // Logins are audited (an event each): log the manager in before the snapshot.
    let tm = d.login(MANAGER).await;
    let before = snapshot(&d, &t, &m).await;
    let json_ct = Some("application/json");

    // Malformed JSON.
    let (s, v) = raw(
        &d,
        &t,
        "POST",
        "/v1/sales",
        br#"{"lines": [{"sku": "TEA", "qty": 1}"#.to_vec(),
        json_ct,
    )
    .await;
    assert_eq!((s, code(&v)), (400, "invalid_body"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().len() > 5);

    // Oversized JSON.
    let big = format!(
        r#"{{"name": "{}", "phone": "13900000000"}}"#,
        "x".repeat(200_000)
    );
    let (s, v) = raw(&d, &t, "POST", "/v1/members", big.into_bytes(), json_ct).await;
    assert_eq!((s, code(&v)), (413, "payload_too_large"), "{v}");

    // Not JSON at all / no content type.
    let (s, v) = raw(
        &d,
        &t,
        "POST",
        "/v1/sales",
        b"\xff\xfe\x00garbage".to_vec(),
        json_ct,
    )
    .await;
    assert_eq!((s, code(&v)), (400, "invalid_body"), "{v}");
    let (s, v) = raw(&d, &t, "POST", "/v1/sales", b"{}".to_vec(), None).await;
    assert_eq!((s, code(&v)), (415, "unsupported_media_type"), "{v}");

    // Unknown fields.
    let (s, v) = d
        .post(
            &t,
            "/v1/members",
            &json!({"name": "甲", "phone": "13900000001", "colour": "red"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_body"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("colour"),
        "{v}"
    );
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 1, "price": 1}], "payments": cash(25_000)}),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (400, "invalid_body"),
        "a terminal cannot set its own price: {v}"
    );

    // Negative, zero, fractional and absurd quantities.
    for qty in [json!(-1), json!(1.5), json!(4_294_967_296u64), json!("2")] {
        let (s, v) = d
            .sale(
                &t,
                &json!({"lines": [{"sku": "TEA", "qty": qty}], "payments": cash(25_000)}),
            )
            .await;
        assert_eq!((s, code(&v)), (400, "invalid_body"), "qty {qty}: {v}");
    }
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 0}], "payments": cash(25_000)}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_quantity"), "{v}");
    let (s, v) = d
        .sale(&t, &json!({"lines": [{"sku": "TEA", "qty": 9999}, {"sku": "TEA", "qty": 9999}], "payments": cash(25_000)}))
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_quantity"), "{v}");
    let (s, v) = d.sale(&t, &json!({"lines": [], "payments": []})).await;
    assert_eq!((s, code(&v)), (400, "empty_cart"), "{v}");
    // More than 500 distinct products is refused before any is looked up; 501 scans of one
    // product are one line.
    let many: Vec<Value> = (0..501)
        .map(|i| json!({"sku": format!("X{i}"), "qty": 1}))
        .collect();
    let (s, v) = d.post(&t, "/v1/sales/quote", &json!({"lines": many})).await;
    assert_eq!((s, code(&v)), (400, "too_many_lines"), "{v}");
    let scans = vec![json!({"sku": "MILK", "qty": 1}); 501];
    let (s, v) = d
        .post(&t, "/v1/sales/quote", &json!({"lines": scans}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["lines"].as_array().map(Vec::len), Some(1), "{v}");

    // Unknown sku, member, coupon.
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "NOPE", "qty": 1}], "payments": cash(100)}),
        )
        .await;
    assert_eq!((s, code(&v)), (404, "unknown_product"), "{v}");
    let (s, v) = d
        .sale(&t, &json!({"member_id": "no-such-member", "lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25_000)}))
        .await;
    assert_eq!((s, code(&v)), (404, "member_not_found"), "{v}");
    let (s, v) = d
        .sale(&t, &json!({"lines": [{"sku": "TEA", "qty": 1}], "coupon_codes": ["FAKE1234"], "payments": cash(25_000)}))
        .await;
    assert_eq!((s, code(&v)), (404, "unknown_coupon"), "{v}");

    // Payments that do not settle.
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": cash(100)}),
        )
        .await;
    assert_eq!((s, code(&v)), (422, "underpaid"), "{v}");
    let (s, v) = d
        .sale(&t, &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": [{"method": "card", "amount": 30_000}]}))
        .await;
    assert_eq!((s, code(&v)), (422, "non_cash_overpaid"), "{v}");
    let (s, v) = d
        .sale(&t, &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": [{"method": "cash", "amount": i64::MAX}, {"method": "cash", "amount": i64::MAX}]}))
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_payment"), "{v}");
    let (s, v) = d
        .sale(&t, &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": [{"method": "cheque", "amount": 25_000}]}))
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_body"), "{v}");
    let (s, v) = d
        .sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "redeem_points": -5, "payments": cash(25_000)}))
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_points"), "{v}");

    // No idempotency key on a sale; a silly one.
    let (s, v) = d
        .send(
            reqwest::Method::POST,
            &t,
            "/v1/sales",
            &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25_000)}),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (400, "idempotency_key_required"), "{v}");
    let long_key = "k".repeat(300);
    let (s, v) = d
        .send(
            reqwest::Method::POST,
            &t,
            "/v1/sales",
            &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25_000)}),
            Some(&long_key),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_idempotency_key"), "{v}");

    // Bad member data.
    for (body, want) in [
        (json!({"name": "乙", "phone": "12345"}), "invalid_phone"),
        (
            json!({"name": "   ", "phone": "13900000002"}),
            "invalid_name",
        ),
        (
            json!({"name": "乙", "phone": "13900000002", "card_no": "卡"}),
            "invalid_card",
        ),
        (
            json!({"name": "乙", "phone": "13900000002", "birthday": "2999-01-01"}),
            "invalid_birthday",
        ),
    ] {
        let (s, v) = d.post(&t, "/v1/members", &body).await;
        assert_eq!((s, code(&v)), (400, want), "{body}: {v}");
    }
    let (s, v) = d
        .post(
            &t,
            "/v1/members",
            &json!({"name": "重复", "phone": "139-1234-5678"}),
        )
        .await;
    assert_eq!((s, code(&v)), (409, "phone_taken"), "{v}");
    let (s, v) = d.get(&t, "/v1/members?phone_tail=12a4").await;
    assert_eq!((s, code(&v)), (400, "invalid_phone_tail"), "{v}");
    let (s, v) = d.get(&t, "/v1/members?phone=1&card=2").await;
    assert_eq!((s, code(&v)), (400, "invalid_query"), "{v}");
    let (s, v) = d.get(&t, "/v1/members?shoe_size=42").await;
    assert_eq!((s, code(&v)), (400, "invalid_query"), "{v}");

    // Tokens and roles.
    let (s, v) = d.get("not-a-token", "/v1/members?phone=13912345678").await;
    assert_eq!((s, code(&v)), (401, "invalid_token"), "{v}");
    let r = d.client.get(d.url("/v1/stock/TEA")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let (s, v) = d.get(TERMINAL_TOKEN, "/v1/stock/TEA").await;
    assert_eq!(
        (s, code(&v)),
        (401, "invalid_token"),
        "a terminal token is not a session: {v}"
    );
    let r = d
        .client
        .post(d.url("/v1/sessions"))
        .bearer_auth("wrong-terminal-token-xx")
        .json(&json!({"staff_no": "1001", "pin": "1111"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (s, v) = d
        .post(
            &t,
            "/v1/stock/movements",
            &json!({"sku": "TEA", "delta": 5, "reason": "receive"}),
        )
        .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = d
        .send(
            reqwest::Method::PUT,
            &t,
            "/v1/products/TEA",
            &json!({"name": "便宜茶", "price": 1}),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");
    let (s, v) = d.erase(&t, &m).await;
    assert_eq!((s, code(&v)), (403, "forbidden"), "{v}");

    // Manager-side refusals.
    let (s, v) = d
        .post(
            &tm,
            "/v1/stock/movements",
            &json!({"sku": "TEA", "delta": -5, "reason": "receive"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_delta"), "{v}");
    let (s, v) = d
        .post(&tm, "/v1/sales/nope/refunds", &json!({"reason": "x"}))
        .await;
    assert_eq!((s, code(&v)), (404, "sale_not_found"), "{v}");
    // Values at the edge of their types: the most negative delta (whose absolute value does
    // not exist), a campaign on the calendar's last day (its coupons would end the day after),
    // a report on its first (the report compares with the period before).
    let (s, v) = d
        .post(
            &tm,
            "/v1/stock/movements",
            &json!({"sku": "TEA", "delta": i64::MIN, "reason": "damage"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_delta"), "{v}");
    let (s, v) = d
        .post(
            &tm,
            "/v1/campaigns",
            &json!({"id": "EDGE1", "name": "x", "target": {"segment": "no_purchase"},
                   "coupon_title": "x", "coupon": {"type": "amount_off", "threshold": 0, "amount": 100},
                   "starts": "+262142-12-31", "ends": "+262142-12-31"}),
        )
        .await;
    assert_eq!((s, code(&v)), (400, "invalid_period"), "{v}");
    for q in [
        "to=-262143-01-01",
        "from=-262143-01-01&to=-262143-01-01",
        "to=%2B262142-12-31",
    ] {
        for report in ["sales", "products", "staff", "associations"] {
            let (s, v) = d.get(&tm, &format!("/v1/reports/{report}?{q}")).await;
            assert_eq!((s, code(&v)), (400, "invalid_period"), "{report}?{q}: {v}");
        }
    }

    // Routes and methods that do not exist.
    let (s, v) = d.get(&t, "/v1/nothing").await;
    assert_eq!((s, code(&v)), (404, "no_route"), "{v}");
    let (s, v) = d
        .send(reqwest::Method::PUT, &t, "/v1/sales", &json!({}), None)
        .await;
    assert_eq!((s, code(&v)), (405, "method_not_allowed"), "{v}");

    let after = snapshot(&d, &t, &m).await;
    assert_eq!(before, after, "bad requests changed data");

    // A wrong PIN is refused and changes nothing but the audit log (one entry).
    let r = d
        .client
        .post(d.url("/v1/sessions"))
        .bearer_auth(TERMINAL_TOKEN)
        .json(&json!({"staff_no": "1001", "pin": "0000"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (last, _, _) = snapshot(&d, &t, &m).await;
    assert_eq!(last.as_u64(), after.0.as_u64().map(|n| n + 1));

    // A page position past any `seq` there can be is past the last page, not back at the first.
    let (s, v) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": [{"method": "cash", "amount": 25000}]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let today = common::store_today();
    for (after, n) in [("0", 1), ("18446744073709551615", 0)] {
        let (s, v) = d
            .get(&tm, &format!("/v1/sales?date={today}&after_seq={after}"))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["sales"].as_array().map(Vec::len),
            Some(n),
            "after_seq={after}: {v}"
        );
    }
    // Refund lines that name nothing, or nothing of a product: refused as malformed, and the
    // sale stays refundable in full.
    let sale = format!("/v1/sales/{}/refunds", v["id"].as_str().unwrap());
    for lines in [json!([]), json!([{"sku": "TEA", "qty": 0}])] {
        let (s, e) = d
            .post(&tm, &sale, &json!({"reason": "x", "lines": lines}))
            .await;
        assert_eq!((s, code(&e)), (400, "invalid_refund_lines"), "{lines}: {e}");
    }
    let (s, r) = d.post(&tm, &sale, &json!({"reason": "x"})).await;
    assert_eq!((s, r["refund_total"].as_i64()), (201, Some(25000)), "{r}");
    assert!(!d.log_text().contains("panicked"));
}

#[test]
fn corrupt_config_is_refused_with_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_storebox");
    let cases = [
        ("[store\nid = ", "", "line 1"),
        (
            "[store]\nid = \"sh-001\"\nname = \"店\"\ntimezone = \"Mars/Olympus\"\n",
            "store.timezone",
            "unknown time zone",
        ),
        (
            "[store]\nid = \"sh-001\"\nname = \"店\"\n[http]\nlisten = 8080\n",
            "http.listen",
            "invalid type",
        ),
        ("\u{0}\u{1}binary", "", ""),
        // One token for two terminals, given as hashes: the key named is the one written.
        (
            &format!(
                "[store]\nid = \"sh-001\"\nname = \"店\"\n\
                 [[terminals]]\nid = \"pos-1\"\ntoken_sha256 = \"{hash}\"\n\
                 [[terminals]]\nid = \"pos-2\"\ntoken_sha256 = \"{hash}\"\n",
                hash = "ab".repeat(32)
            ),
            "terminals[1].token_sha256",
            "the same token as terminal pos-1",
        ),
    ];
    for (i, (text, key, reason)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(bin)
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "case {i}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("bad{i}.toml")), "case {i}: {err}");
        assert!(err.contains(key), "case {i}: {err}");
        assert!(err.contains(reason), "case {i}: {err}");
        assert!(!err.contains("panicked"), "case {i}: {err}");
        let out = Command::new(bin)
            .args(["run", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "run with case {i}");
    }
    let out = Command::new(bin)
        .args(["check-config", "/nonexistent/storebox.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[tokio::test]
async fn an_oversized_body_gets_its_413_on_a_kept_alive_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let big = format!(
        r#"{{"name": "{}", "phone": "13900000000"}}"#,
        "x".repeat(300_000)
    );
    // Kept-alive connections (reqwest's pool), the body sent while the server has already
    // decided: each gets the error, none a broken connection.
    for i in 0..20 {
        let r = d
            .client
            .post(d.url("/v1/members"))
            .bearer_auth(&t)
            .header("Idempotency-Key", format!("big-{i}"))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i}: no answer: {e}"));
        assert_eq!(r.status().as_u16(), 413, "request {i}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(code(&v), "payload_too_large", "{v}");
    }
    // A client that waits for `100 Continue` before sending hears the refusal at once.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        let head = format!(
            "POST /v1/members HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {t}\r\n\
             content-type: application/json\r\ncontent-length: 300000\r\n\
             expect: 100-continue\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut answer))
            .await
            .expect("no answer before the body")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }
    // The connections still serve, and nothing was registered.
    let (s, v) = d.get(&t, "/v1/members?phone=13900000000").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["members"], json!([]));
}

#[tokio::test]
async fn a_broken_config_leaves_the_data_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let (s, _) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 2}], "payments": cash(50_000)}),
        )
        .await;
    assert_eq!(s, 201);
    let config = d.config.clone();
    assert_eq!(d.terminate(), Some(0));
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, good.replace("[http]", "[http]\nlisten_port = 1")).unwrap();
    let out = common::storebox(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http.listen_port"));
    std::fs::write(&config, good).unwrap();
    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    let sales = d.sales_on(&t, &common::store_today().to_string()).await;
    assert_eq!(sales.len(), 1);
}
