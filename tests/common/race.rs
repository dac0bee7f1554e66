//! Concurrent requests from the store's tills, sent at once (tests/races*.rs).

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::*;

/// Clients sent at once in each race.
pub const N: usize = 16;

/// Logs `staff` in on the terminal with token `terminal`.
pub async fn login_on(d: &Daemon, terminal: &str, staff: (&str, &str)) -> String {
    let (s, v, _) = login_status(d, terminal, staff.0, staff.1).await;
    assert_eq!(s, 201, "login: {v}");
    v["token"].as_str().unwrap().to_string()
}

/// One cashier session on each of the two terminals.
pub async fn tills(d: &Daemon) -> [String; 2] {
    [
        login_on(d, TERMINAL_TOKEN, CASHIER).await,
        login_on(d, POS2, CASHIER).await,
    ]
}

/// Sends `n` requests at once, alternating the two tills; (status, body) of each.
pub async fn race(
    d: &Daemon,
    tokens: &[String],
    n: usize,
    method: reqwest::Method,
    path: &str,
    body: impl Fn(usize) -> Value,
    key: impl Fn(usize) -> Option<String>,
) -> Vec<(u16, Value)> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let tasks = (0..n).map(|i| {
        let client = d.client.clone();
        let url = d.url(path);
        let token = tokens[i % tokens.len()].clone();
        let body = body(i);
        let key = key(i);
        let method = method.clone();
        let barrier = barrier.clone();
        tokio::spawn(async move {
            let mut req = client.request(method, url).bearer_auth(token).json(&body);
            if let Some(k) = key {
                req = req.header("Idempotency-Key", k);
            }
            barrier.wait().await;
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    });
    join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

pub fn fresh_key(_: usize) -> Option<String> {
    Some(uuid::Uuid::now_v7().to_string())
}

pub fn count(results: &[(u16, Value)], status: u16) -> usize {
    results.iter().filter(|(s, _)| *s == status).count()
}

pub fn journal_count(d: &Daemon, kind: &str) -> i64 {
    let c = rusqlite::Connection::open(d.dir.join("data/journal.sqlite3")).unwrap();
    c.query_row("SELECT COUNT(*) FROM events WHERE kind = ?1", [kind], |r| {
        r.get(0)
    })
    .unwrap()
}

/// A member with 1,200 points (a silver member's ¥1,000 sale).
pub async fn member_with_points(d: &Daemon, t: &str, phone: &str) -> String {
    let m = d.register(t, "张三", phone, json!({})).await;
    let (s, v) = d
        .sale(t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 12}], "payments": cash(300_000)}))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = d
        .sale(t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 4}], "payments": cash(100_000)}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["member"]["points"], 1200, "{v}");
    m
}
