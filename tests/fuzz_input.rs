//! Randomly spoiled requests against the real daemon: every write route and the lookups get
//! valid requests with values swapped for hostile ones (huge and negative numbers, floats,
//! wrong types, long and odd strings, impossible dates), keys dropped or added, bodies cut
//! short or replaced by bytes, and path and query values spoiled. None may get a 5xx or a
//! dropped connection, none may take the daemon down, and one that is refused (4xx) must not
//! have written anything to the journal.
//!
//! The generator is seeded: `FUZZ_SEED` replays a run, `FUZZ_CASES` sets its length (default
//! 500). A failure prints the seed, the case number and the request.

mod common;

use common::spoil::{hostile_text, seeded, spoil_body};
use common::{ADMIN, CASHIER, Daemon, cash};
use rand::RngExt;
use serde_json::{Value, json};

/// A request that works (or is refused for a plain reason) before it is spoiled.
struct Template {
    method: &'static str,
    path: String,
    /// Query parameters, spoiled one at a time.
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    /// Whether the path's last segment may be spoiled (not for the staff and sessions routes,
    /// where a spoiled path could change or end the test's own login).
    spoil_path: bool,
}

fn template(method: &'static str, path: &str, body: Option<Value>) -> Template {
    Template {
        method,
        path: path.to_string(),
        query: Vec::new(),
        body,
        spoil_path: false,
    }
}

fn read(path: &str, query: &[(&'static str, &str)]) -> Template {
    Template {
        method: "GET",
        path: path.to_string(),
        query: query.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body: None,
        spoil_path: true,
    }
}

fn templates(member: &str, sale: &str, today: &str) -> Vec<Template> {
    let spoilable = |mut t: Template| {
        t.spoil_path = true;
        t
    };
    vec![
        template(
            "POST",
            "/v1/members",
            Some(
                json!({"name": "张三", "phone": "13600000001", "gender": "male",
                "birthday": "1990-02-28", "card_no": "C9000001", "tags": ["vip"],
                "consent": {"marketing": true}}),
            ),
        ),
        spoilable(template(
            "PATCH",
            &format!("/v1/members/{member}"),
            Some(
                json!({"name": "李四", "phone": "13600000002", "birthday": "1988-02-29",
                "tags": ["vip", "老客"], "consent": {"marketing": false}}),
            ),
        )),
        template(
            "POST",
            "/v1/sales/quote",
            Some(
                json!({"member_id": member, "lines": [{"sku": "TEA", "qty": 1},
                {"sku": "MILK", "qty": 3}], "redeem_points": 100, "coupon_codes": ["FUZZ-1"]}),
            ),
        ),
        template(
            "POST",
            "/v1/sales",
            Some(
                json!({"member_id": member, "lines": [{"sku": "MILK", "qty": 2}],
                "payments": [{"method": "cash", "amount": 2580}]}),
            ),
        ),
        template(
            "POST",
            "/v1/sales",
            Some(
                json!({"lines": [{"sku": "RICE", "qty": 1}, {"sku": "TEA", "qty": 1}],
                "payments": [{"method": "card", "amount": 30000}, {"method": "cash", "amount": 3990}]}),
            ),
        ),
        spoilable(template(
            "POST",
            &format!("/v1/sales/{sale}/refunds"),
            Some(json!({"reason": "顾客退货", "lines": [{"sku": "MILK", "qty": 1}]})),
        )),
        spoilable(template(
            "PUT",
            "/v1/products/FUZZ",
            Some(
                json!({"name": "测试商品", "price": 990, "barcodes": ["6901234567908"],
                "safety_stock": 5}),
            ),
        )),
        template(
            "POST",
            &format!("/v1/members/{member}/points"),
            Some(json!({"delta": 50, "reason": "goodwill", "note": "补偿"})),
        ),
        template(
            "POST",
            "/v1/stock/movements",
            Some(json!({"sku": "RICE", "delta": 3, "reason": "receive", "note": "到货"})),
        ),
        template(
            "POST",
            "/v1/coupons",
            Some(
                json!({"code": "FUZZ-2", "title": "满100减10", "member_id": member,
                "kind": {"type": "amount_off", "threshold": 10000, "amount": 1000},
                "valid_from": format!("{today}T00:00:00+08:00"),
                "valid_to": format!("{today}T23:59:59+08:00")}),
            ),
        ),
        template(
            "POST",
            "/v1/coupons",
            Some(
                json!({"title": "九折", "kind": {"type": "percent_off", "bps": 1000, "cap": 5000}}),
            ),
        ),
        template(
            "PUT",
            "/v1/staff/f-100",
            Some(json!({"name": "临时工", "role": "cashier", "pin": "4321"})),
        ),
        template(
            "POST",
            "/v1/feedback",
            Some(json!({"rating": 4, "category": "service", "text": "很好", "member_id": member})),
        ),
        spoilable(template(
            "PATCH",
            "/v1/feedback/no-such-item",
            Some(json!({"status": "closed", "note": "已回访"})),
        )),
        template(
            "POST",
            "/v1/campaigns",
            Some(
                // No control group: the one `vip` member falls in a 10 % one for one member
                // id in ten, and the campaign then has nobody to treat (`422 no_members`).
                json!({"id": "FUZZ1", "name": "测试活动", "target": {"tag": "vip"},
                "coupon_title": "满100减20",
                "coupon": {"type": "amount_off", "threshold": 10000, "amount": 2000},
                "starts": today, "ends": today, "control_percent": 0}),
            ),
        ),
        template(
            "POST",
            "/v1/sessions",
            Some(json!({"staff_no": "1001", "pin": "1111"})),
        ),
        read("/v1/members", &[("phone", "13600000001")]),
        read("/v1/members", &[("card", "C9000001")]),
        read("/v1/members", &[("phone_tail", "0001")]),
        read("/v1/members", &[("q", "张")]),
        read(&format!("/v1/members/{member}"), &[]),
        read("/v1/products", &[("barcode", "6901234567892")]),
        read("/v1/products/TEA", &[]),
        read("/v1/stock/TEA", &[]),
        read("/v1/stock", &[("below_safety", "true")]),
        read("/v1/stock/movements", &[("date", today)]),
        read("/v1/sales", &[("date", today), ("after_seq", "0")]),
        read(&format!("/v1/sales/{sale}"), &[]),
        read("/v1/coupons/FUZZ-1", &[]),
        read("/v1/reports/sales", &[("from", today), ("to", today)]),
        read("/v1/reports/products", &[("from", today), ("to", today)]),
        read(
            "/v1/reports/staff",
            &[("from", today), ("to", today), ("format", "csv")],
        ),
        read("/v1/audit", &[("after", "0"), ("limit", "5")]),
        read("/v1/members/at-risk", &[("format", "csv")]),
        read(
            "/v1/segments",
            &[("segment", "important_value"), ("limit", "5")],
        ),
        read(
            "/v1/reports/associations",
            &[("from", today), ("to", today), ("min_count", "1")],
        ),
    ]
}

/// The bearer token for `t`: for a login, the second terminal's (spoiled PINs lock it out
/// after a while, and the test's own sessions come from the first), else the staff session's.
fn token_for<'a>(t: &Template, session: &'a str) -> &'a str {
    if t.path == "/v1/sessions" {
        "test-terminal-token-0002"
    } else {
        session
    }
}

/// Percent-encodes everything but letters, digits and `-._~`.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The journal's last `seq`, from `/healthz`.
async fn last_seq(d: &Daemon) -> u64 {
    let h = d.health().await;
    h["journal"]["last_seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no journal seq in /healthz: {h}"))
}

#[tokio::test]
async fn spoiled_requests_never_crash_the_daemon_nor_write_when_refused() {
    let (seed, cases, mut rng) = seeded(500);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let cashier = d.login(CASHIER).await;
    let admin = d.login(ADMIN).await;
    let member = d.register(&cashier, "测试", "13912345678", json!({})).await;
    let (s, sale) = d
        .sale(
            &cashier,
            &json!({"lines": [{"sku": "MILK", "qty": 3}], "payments": cash(3870)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    let sale = sale["id"].as_str().unwrap().to_string();
    // The member reaches 普通会员 (¥2,500), then earns points to redeem (¥250).
    for qty in [10, 1] {
        let (s, v) = d
            .sale(
                &cashier,
                &json!({"member_id": member, "lines": [{"sku": "TEA", "qty": qty}], "payments": cash(25_000 * qty)}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, c) = d
        .post(
            &admin,
            "/v1/coupons",
            &json!({"code": "FUZZ-1", "title": "满100减10",
                "kind": {"type": "amount_off", "threshold": 10000, "amount": 1000}}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let today = common::store_today().to_string();
    let templates = templates(&member, &sale, &today);
    let (mut accepted, mut refused) = (0, 0);

    // Unspoiled, each template works (the feedback item does not exist): otherwise the spoiled
    // requests would mostly test the same refusal.
    for t in &templates {
        let path = if t.query.is_empty() {
            t.path.clone()
        } else {
            let q: Vec<String> = t
                .query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            format!("{}?{}", t.path, q.join("&"))
        };
        let mut req = d
            .client
            .request(t.method.parse().unwrap(), d.url(&path))
            .bearer_auth(token_for(t, &admin))
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string());
        if let Some(body) = &t.body {
            req = req.json(body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        eprintln!("{status} {} {path}", t.method);
        if path.starts_with("/v1/feedback/no-such-item") {
            assert_eq!(status, 404, "{} {path}: {text}", t.method);
        } else {
            assert!(
                (200..300).contains(&status),
                "{} {path}: {status} {text}",
                t.method
            );
        }
    }

    for case in 0..cases {
        let t = &templates[rng.random_range(0..templates.len())];
        let mut path = t.path.clone();
        if t.spoil_path && rng.random_bool(0.2) {
            let cut = path.rfind('/').map_or(0, |i| i + 1);
            path = format!("{}{}", &path[..cut], encode(&hostile_text(&mut rng)));
        }
        let mut query = t.query.clone();
        if !query.is_empty() {
            let i = rng.random_range(0..query.len());
            match rng.random_range(0..4) {
                0 => {
                    query.remove(i);
                }
                1 => query.push(("unexpected", hostile_text(&mut rng))),
                _ => query[i].1 = hostile_text(&mut rng),
            }
        }
        if !query.is_empty() {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect();
            path = format!("{path}?{}", q.join("&"));
        }
        let body = t.body.as_ref().map(|b| spoil_body(&mut rng, b));
        let key = if rng.random_bool(0.1) {
            hostile_text(&mut rng)
        } else {
            uuid::Uuid::now_v7().to_string()
        };
        let token = token_for(
            t,
            if rng.random_bool(0.5) {
                &admin
            } else {
                &cashier
            },
        );

        let before = last_seq(&d).await;
        let mut req = d
            .client
            .request(t.method.parse().unwrap(), d.url(&path))
            .bearer_auth(token)
            .header("content-type", "application/json");
        if let Ok(key) = reqwest::header::HeaderValue::from_str(&key) {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = &body {
            req = req.body(body.clone());
        }
        let shown = || {
            let body = body
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(600)]).to_string())
                .unwrap_or_default();
            format!(
                "seed {seed} (FUZZ_SEED={seed} replays it), case {case}: {} {} key {key:?} body {body}",
                t.method,
                &path[..path.len().min(300)]
            )
        };
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => panic!(
                "no answer ({}); {}\n{}",
                e.without_url(),
                shown(),
                d.log_text()
            ),
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status < 500,
            "{status} {text}; {}\n{}",
            shown(),
            d.log_text()
        );
        let after = last_seq(&d).await;
        if status >= 400 {
            refused += 1;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // A refused login (a wrong PIN, a locked staff number) writes one thing at most:
            // its audit entry.
            let audited = u64::from(t.path == "/v1/sessions");
            assert!(
                (before..=before + audited).contains(&after),
                "refused with {status} {text} but the journal moved; {}",
                shown()
            );
            assert!(
                v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                "a refusal without the error JSON: {status} {text}; {}",
                shown()
            );
        } else {
            accepted += 1;
        }
    }
    let h = d.health().await;
    assert_eq!(h["status"], "ok", "{h}");
    assert!(
        !d.log_text().contains("panicked"),
        "the daemon panicked (seed {seed}):\n{}",
        d.log_text()
    );
    // The store still sells, and the member found is the one registered.
    let (s, v) = d
        .sale(
            &cashier,
            &json!({"member_id": member, "lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25000)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    eprintln!("seed {seed}: {cases} cases, {accepted} accepted, {refused} refused");

    // What was accepted replays: the cache, deleted, is rebuilt from the journal alone and
    // shows the same store.
    let seq = last_seq(&d).await;
    let (_, member_before) = d.get(&admin, &format!("/v1/members/{member}")).await;
    let (_, stock_before) = d.get(&admin, "/v1/stock").await;
    let config = d.config.clone();
    assert_eq!(d.terminate(), Some(0), "the daemon did not stop cleanly");
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join("data").join(f));
    }
    let d = Daemon::start_with(dir.path(), &config);
    // Two events more: the start, in the audit log, and the request for HQ's data, which the
    // cache alone held (`sync.requested` `cache_rebuilt`).
    assert_eq!(last_seq(&d).await, seq + 2, "{}", d.log_text());
    let admin = d.login(ADMIN).await;
    let (s, member_after) = d.get(&admin, &format!("/v1/members/{member}")).await;
    assert_eq!(s, 200, "{member_after}");
    assert_eq!(member_after, member_before);
    let (_, stock_after) = d.get(&admin, "/v1/stock").await;
    assert_eq!(stock_after, stock_before);
}
