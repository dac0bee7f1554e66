//! The whole permission matrix, through the real binary: every route the API serves, with
//! each role's token, is allowed or refused as `domain::access` says.

mod common;

use common::*;
use serde_json::{Value, json};
use storebox::domain::access::{Action, Role};

/// One request per route and method, with the action that decides who may make it.
fn routes(member: &str, sale: &str) -> Vec<(&'static str, String, Value, Action)> {
    let m = member.to_string();
    let s = sale.to_string();
    vec![
        (
            "POST",
            "/v1/members".into(),
            json!({"name": "矩阵", "phone": "PHONE"}),
            Action::MemberRegister,
        ),
        (
            "GET",
            "/v1/members?phone_tail=5678".into(),
            Value::Null,
            Action::MemberRead,
        ),
        (
            "GET",
            "/v1/members/export".into(),
            Value::Null,
            Action::MemberExport,
        ),
        (
            "GET",
            format!("/v1/members/{m}"),
            Value::Null,
            Action::MemberRead,
        ),
        (
            "PATCH",
            format!("/v1/members/{m}"),
            json!({"tags": ["vip"]}),
            Action::MemberEdit,
        ),
        (
            "DELETE",
            "/v1/members/no-such-member".into(),
            Value::Null,
            Action::MemberErase,
        ),
        (
            "POST",
            "/v1/members/no-such-member/points".into(),
            json!({"delta": 10, "reason": "goodwill"}),
            Action::PointsAdjust,
        ),
        (
            "GET",
            "/v1/products?barcode=6901234567892".into(),
            Value::Null,
            Action::ProductRead,
        ),
        (
            "GET",
            "/v1/products/TEA".into(),
            Value::Null,
            Action::ProductRead,
        ),
        (
            "PUT",
            "/v1/products/MILK".into(),
            json!({"name": "纯牛奶 1L", "price": 1290}),
            Action::ProductEdit,
        ),
        ("GET", "/v1/stock".into(), Value::Null, Action::StockRead),
        (
            "GET",
            "/v1/stock/TEA".into(),
            Value::Null,
            Action::StockRead,
        ),
        (
            "GET",
            "/v1/stock/movements?sku=TEA".into(),
            Value::Null,
            Action::StockRead,
        ),
        (
            "POST",
            "/v1/stock/movements".into(),
            json!({"sku": "RICE", "delta": 1, "reason": "receive"}),
            Action::StockMove,
        ),
        (
            "POST",
            "/v1/sales/quote".into(),
            json!({"lines": [{"sku": "MILK", "qty": 1}]}),
            Action::SaleQuote,
        ),
        (
            "POST",
            "/v1/sales".into(),
            json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": [{"method": "cash", "amount": 1290}]}),
            Action::SaleRecord,
        ),
        (
            "GET",
            format!("/v1/sales?date={}", store_today()),
            Value::Null,
            Action::SaleRead,
        ),
        (
            "GET",
            format!("/v1/sales/{s}"),
            Value::Null,
            Action::SaleRead,
        ),
        (
            "GET",
            format!("/v1/refunds?date={}", store_today()),
            Value::Null,
            Action::SaleRead,
        ),
        (
            "POST",
            "/v1/sales/no-such-sale/refunds".into(),
            json!({"reason": "矩阵"}),
            Action::SaleRefund,
        ),
        (
            "POST",
            format!("/v1/sales/{s}/print"),
            Value::Null,
            Action::ReceiptReprint,
        ),
        (
            "GET",
            "/v1/coupons/NOPE-1".into(),
            Value::Null,
            Action::CouponRead,
        ),
        (
            "POST",
            "/v1/coupons".into(),
            json!({"title": "矩阵券", "kind": {"type": "amount_off", "threshold": 10000, "amount": 100}}),
            Action::CouponIssue,
        ),
        ("GET", "/v1/devices".into(), Value::Null, Action::StatusRead),
        (
            "POST",
            "/v1/devices/no-such-printer/drawer".into(),
            Value::Null,
            Action::DeviceControl,
        ),
        ("GET", "/v1/events".into(), Value::Null, Action::StatusRead),
        ("GET", "/v1/uplink".into(), Value::Null, Action::StatusRead),
        ("GET", "/v1/staff".into(), Value::Null, Action::StaffRead),
        (
            "GET",
            "/v1/staff/1001".into(),
            Value::Null,
            Action::StaffRead,
        ),
        (
            "PUT",
            "/v1/staff/t-100".into(),
            json!({"name": "临时工", "role": "cashier", "pin": "4321"}),
            Action::StaffManage,
        ),
        (
            "DELETE",
            "/v1/staff/no-such-staff".into(),
            Value::Null,
            Action::StaffManage,
        ),
        ("GET", "/v1/audit".into(), Value::Null, Action::AuditRead),
        (
            "GET",
            "/v1/segments".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "GET",
            "/v1/members/at-risk".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "GET",
            "/v1/reports/sales".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "GET",
            "/v1/reports/products".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "GET",
            "/v1/reports/associations".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "GET",
            "/v1/reports/staff?format=csv".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "GET",
            "/v1/reports/stock".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "POST",
            "/v1/feedback".into(),
            json!({"rating": 5, "category": "praise", "text": "收银员很耐心"}),
            Action::FeedbackRecord,
        ),
        (
            "GET",
            "/v1/feedback".into(),
            Value::Null,
            Action::FeedbackManage,
        ),
        (
            "GET",
            "/v1/campaigns".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "GET",
            "/v1/campaigns/NOPE".into(),
            Value::Null,
            Action::ReportsRead,
        ),
        (
            "POST",
            "/v1/campaigns".into(),
            json!({"id": "BAD ID", "name": "x", "target": {"tag": "vip"}, "coupon_title": "x",
                   "coupon": {"type": "amount_off", "threshold": 0, "amount": 100},
                   "starts": "2026-11-01", "ends": "2026-11-30"}),
            Action::CampaignManage,
        ),
        (
            "PATCH",
            "/v1/feedback/no-such-item".into(),
            json!({"status": "closed", "note": "矩阵"}),
            Action::FeedbackManage,
        ),
    ]
}

/// Every `(METHOD, /path)` the API serves, read from the route tables in `src/api`.
fn served_routes() -> Vec<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines() {
            let Some(i) = line.find(".route(\"") else {
                continue;
            };
            let rest = &line[i + 8..];
            let path = rest[..rest.find('"').unwrap()].to_string();
            for method in ["get", "post", "put", "patch", "delete"] {
                if rest.contains(&format!("{method}(")) {
                    out.push((method.to_uppercase(), path.clone()));
                }
            }
        }
    }
    out
}

/// `/v1/members/{id}` matches `/v1/members/abc?x=1`.
fn matches(pattern: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or_default();
    let (p, q): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    p.len() == q.len()
        && p.iter().zip(&q).all(|(a, b)| a.starts_with('{') || a == b)
        && !(pattern.contains('{') && q.contains(&"export"))
}

#[tokio::test]
async fn every_route_enforces_the_permission_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tokens = [
        (Role::Cashier, d.login(CASHIER).await),
        (Role::Manager, d.login(MANAGER).await),
        (Role::Admin, d.login(ADMIN).await),
    ];
    let t = &tokens[0].1;
    let member = d.register(t, "张三", "13912345678", json!({})).await;
    let (s, sale) = d
        .sale(t, &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25000), "member_id": member}))
        .await;
    assert_eq!(s, 201, "{sale}");
    let sale_id = sale["sale"]["id"]
        .as_str()
        .or(sale["id"].as_str())
        .unwrap()
        .to_string();
    let table = routes(&member, &sale_id);

    // The table covers every route the API serves (but logging in and out, and health and
    // metrics, which need no session and hold no personal data).
    for (method, pattern) in served_routes() {
        if pattern.starts_with("/v1/sessions") || pattern == "/healthz" || pattern == "/metrics" {
            continue;
        }
        assert!(
            table
                .iter()
                .any(|(m, p, _, _)| *m == method && matches(&pattern, p)),
            "{method} {pattern} is not in the permission test"
        );
    }

    let mut phone = 13800000000u64;
    for (role, token) in &tokens {
        for (method, path, body, action) in &table {
            let mut body = body.clone();
            if body.get("phone").is_some() {
                phone += 1;
                body["phone"] = json!(phone.to_string());
            }
            let mut req = d
                .client
                .request(method.parse().unwrap(), d.url(path))
                .bearer_auth(token)
                .header("Idempotency-Key", uuid::Uuid::now_v7().to_string());
            if !body.is_null() {
                req = req.json(&body);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            // Streams (events, export) are not read to the end.
            let v: Value = if status < 300
                && (path == "/v1/events" || path.ends_with("/export") || path.contains("csv"))
            {
                Value::Null
            } else {
                r.json().await.unwrap_or(Value::Null)
            };
            if action.allowed(*role) {
                assert!(
                    ![401, 403].contains(&status),
                    "{role:?} may {method} {path} but got {status} {v}"
                );
            } else {
                assert_eq!(
                    (status, code(&v)),
                    (403, "forbidden"),
                    "{role:?} may not {method} {path}"
                );
            }
        }
    }

    // A role that may not use a route is told so before its body is read: a malformed body
    // gets 403 as a well-formed one does, not 400.
    for (method, path, body, action) in &table {
        if body.is_null() || action.allowed(Role::Cashier) {
            continue;
        }
        let r = d
            .client
            .request(method.parse().unwrap(), d.url(path))
            .bearer_auth(&tokens[0].1)
            .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
            .header("Content-Type", "application/json")
            .body("{\"half\": ")
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, code(&v)),
            (403, "forbidden"),
            "a cashier's malformed {method} {path}"
        );
    }

    // Field-level rules: only managers see full phone numbers.
    let (_, v) = d.get(&tokens[0].1, &format!("/v1/members/{member}")).await;
    assert_eq!(v["phone"], "139****5678");
    let (_, v) = d.get(&tokens[1].1, &format!("/v1/members/{member}")).await;
    assert_eq!(v["phone"], "13912345678");
    d.terminate();
}
