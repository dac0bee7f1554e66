//! Staff, permissions and personal data, through the real binary: PIN lock-out, the whole
//! permission matrix, the audit chain and its verification, staff administration.

mod common;

use common::*;
use serde_json::{Value, json};
use storebox::domain::access::{Action, Role};

async fn login_status(
    d: &Daemon,
    terminal: &str,
    staff_no: &str,
    pin: &str,
) -> (u16, Value, Option<String>) {
    let r = d
        .client
        .post(d.url("/v1/sessions"))
        .bearer_auth(terminal)
        .json(&json!({"staff_no": staff_no, "pin": pin}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

const POS2: &str = "test-terminal-token-0002";

#[tokio::test]
async fn the_sixth_pin_is_refused_even_when_right_until_the_lock_expires() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[security]\nlockout_seconds = 3\n");

    for i in 0..5 {
        let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "1001", "0000").await;
        assert_eq!(
            (s, code(&v)),
            (401, "invalid_credentials"),
            "attempt {i}: {v}"
        );
    }
    let (s, v, retry) = login_status(&d, TERMINAL_TOKEN, "1001", "1111").await;
    assert_eq!((s, code(&v)), (429, "staff_locked"), "{v}");
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=3).contains(&secs), "{secs}");
    // Locked everywhere, not only on the terminal that guessed.
    let (s, _, _) = login_status(&d, POS2, "1001", "1111").await;
    assert_eq!(s, 429);
    // Other staff work on.
    d.login(MANAGER).await;

    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "1001", "1111").await;
    assert_eq!(s, 201, "after the lock: {v}");

    // A terminal trying many staff numbers is locked as a whole (20 by default).
    for i in 0..20 {
        let (s, _, _) = login_status(&d, POS2, &format!("77{i:02}"), "1234").await;
        assert_eq!(s, 401);
    }
    let (s, v, _) = login_status(&d, POS2, "2001", "2222").await;
    assert_eq!((s, code(&v)), (429, "terminal_locked"), "{v}");
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "2001", "2222").await;
    assert_eq!(s, 201, "the other terminal is not locked");

    // All of it is in the audit log.
    let admin = d.login(ADMIN).await;
    let (s, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{v}");
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "login.failed").count(), 25);
    assert_eq!(actions.iter().filter(|a| **a == "login.refused").count(), 3);
    assert!(actions.contains(&"login"));
    assert!(actions.contains(&"config.load"));
    let log = d.log_text();
    d.terminate();
    // As a word of its own: a PIN inside a longer number (a timestamp, a duration) is not one.
    let leaked: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == "1111" || w == "2222")
        })
        .collect();
    assert!(leaked.is_empty(), "a PIN in the log: {leaked:?}");
}

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

    // Field-level rules: only managers see full phone numbers.
    let (_, v) = d.get(&tokens[0].1, &format!("/v1/members/{member}")).await;
    assert_eq!(v["phone"], "139****5678");
    let (_, v) = d.get(&tokens[1].1, &format!("/v1/members/{member}")).await;
    assert_eq!(v["phone"], "13912345678");
    d.terminate();
}

#[tokio::test]
async fn staff_managed_by_an_admin_log_in_and_removal_ends_their_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let admin = d.login(ADMIN).await;
    let (s, v) = d
        .send(
            reqwest::Method::PUT,
            &admin,
            "/v1/staff/3001",
            &json!({"name": "赵敏", "role": "cashier", "pin": "3030"}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("pin").is_none() && v.get("pin_hash").is_none());
    let t = d.login(("3001", "3030")).await;
    let (s, _) = d.get(&t, "/v1/products/TEA").await;
    assert_eq!(s, 200);

    // An admin cannot remove themselves.
    let (s, v) = d
        .send(
            reqwest::Method::DELETE,
            &admin,
            "/v1/staff/9001",
            &Value::Null,
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (409, "cannot_change_self"));

    let (s, _) = d
        .send(
            reqwest::Method::DELETE,
            &admin,
            "/v1/staff/3001",
            &Value::Null,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, v) = d.get(&t, "/v1/products/TEA").await;
    assert_eq!(
        (s, code(&v)),
        (401, "invalid_token"),
        "session survived removal"
    );
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "3001", "3030").await;
    assert_eq!(s, 401);

    // A config staff member removed over the API stays removed after a restart.
    let (s, _) = d
        .send(
            reqwest::Method::DELETE,
            &admin,
            "/v1/staff/1001",
            &Value::Null,
            None,
        )
        .await;
    assert_eq!(s, 204);
    d.terminate();
    let d = Daemon::start_in(dir.path(), "");
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "1001", "1111").await;
    assert_eq!(s, 401);
    let admin = d.login(ADMIN).await;
    let (_, v) = d.get(&admin, "/v1/staff").await;
    let list = v.as_array().unwrap();
    assert!(
        list.iter()
            .any(|s| s["staff_no"] == "1001" && s["active"] == false),
        "{v}"
    );
    d.terminate();
}

#[tokio::test]
async fn a_tampered_audit_entry_is_named_by_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let (s, v) = d
        .sale(
            &tm,
            &json!({"lines": [{"sku": "TEA", "qty": 2}], "payments": cash(50000)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sale_id = v["sale"]["id"]
        .as_str()
        .or(v["id"].as_str())
        .unwrap()
        .to_string();
    let (s, v) = d
        .post(
            &tm,
            &format!("/v1/sales/{sale_id}/refunds"),
            &json!({"reason": "顾客退货"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = d
        .post(
            &tm,
            "/v1/stock/movements",
            &json!({"sku": "RICE", "delta": 10, "reason": "receive"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let admin = d.login(ADMIN).await;
    let (_, v) = d.get(&admin, "/v1/audit").await;
    let entries = v["entries"].as_array().unwrap().clone();
    let refund = entries
        .iter()
        .find(|e| e["action"] == "sale.refund")
        .expect("the refund is audited");
    assert_eq!(refund["target"], sale_id.as_str());
    assert_eq!(refund["staff_no"], "2001");
    assert!(entries.iter().any(|e| e["action"] == "stock.move"));
    let config = d.config.clone();
    d.terminate();

    let config = config.to_str().unwrap();
    let out = storebox(&["audit", "verify", "--config", config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    // Someone with the SQLite file makes the refund smaller.
    let n = refund["n"].as_u64().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    db.execute(
        "UPDATE audit SET detail = json_set(detail, '$.amount', 1) WHERE n = ?1",
        [n as i64],
    )
    .unwrap();
    drop(db);
    let out = storebox(&["audit", "verify", "--config", config]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("broken at entry {n} (sale.refund")),
        "{err}"
    );
}
