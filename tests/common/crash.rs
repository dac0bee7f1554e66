//! The crash tests' common ground: requests that may get no answer, what a daemon says of the
//! whole store, and the comparison of its cache with one rebuilt from the journal.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Daemon, MANAGER};

/// (status, body) or None when no answer came.
pub type Answer = Option<(u16, Value)>;

pub async fn call(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    token: &str,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> Answer {
    let mut req = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let r = req.send().await.ok()?;
    let s = r.status().as_u16();
    let text = r.text().await.ok()?;
    Some((s, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

pub fn ok(a: &Answer) -> bool {
    matches!(a, Some((s, _)) if (200..300).contains(s))
}

/// Fails the test on a 5xx (the daemon must never answer 500 on these).
pub fn no_5xx(what: &str, a: &Answer) {
    if let Some((s, v)) = a {
        assert!(*s < 500, "{what}: {s} {v}");
    }
}

/// Every sale of `days` (with its refunds), read from the journal through the API.
pub async fn all_sales(d: &Daemon, token: &str) -> Vec<Value> {
    let mut days = BTreeSet::new();
    let today = super::store_today();
    days.insert(today.pred_opt().unwrap().to_string());
    days.insert(today.to_string());
    days.insert(today.succ_opt().unwrap().to_string());
    let mut out = Vec::new();
    for day in days {
        for s in d.sales_on(token, &day).await {
            let (_, full) = d
                .get(token, &format!("/v1/sales/{}", s["id"].as_str().unwrap()))
                .await;
            out.push(full);
        }
    }
    out
}

/// What one daemon says about the store: every member, every stock level, every sale.
pub async fn snapshot(d: &Daemon, members: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let t = d.login(MANAGER).await;
    let mut out = BTreeMap::new();
    for id in members {
        let (s, mut v) = d.get(&t, &format!("/v1/members/{id}")).await;
        // Time-dependent insight fields are not the cache's state.
        if let Some(o) = v.as_object_mut() {
            for k in ["rfm", "segment", "at_risk", "insight"] {
                o.remove(k);
            }
        }
        out.insert(format!("member {id}"), json!([s, v]));
    }
    for sku in ["TEA", "MILK", "RICE", "SNACK"] {
        let (s, v) = d.get(&t, &format!("/v1/stock/{sku}")).await;
        out.insert(format!("stock {sku}"), json!([s, v]));
        let (s, v) = d.get(&t, &format!("/v1/products/{sku}")).await;
        out.insert(format!("product {sku}"), json!([s, v]));
    }
    for s in all_sales(d, &t).await {
        out.insert(
            format!(
                "sale {}",
                s["sale"]["id"].as_str().or(s["id"].as_str()).unwrap_or("?")
            ),
            s,
        );
    }
    out
}

/// Journal-implied member counters and stock, from the sales and refunds the API reads from
/// the journal, against the cache's.
pub async fn check_counters(d: &Daemon, core: &[String], moved: &BTreeMap<String, i64>) {
    let t = d.login(MANAGER).await;
    let sales = all_sales(d, &t).await;
    let mut stock: BTreeMap<String, i64> = moved.clone();
    let mut spend: HashMap<String, i64> = HashMap::new();
    let mut points: HashMap<String, i64> = HashMap::new();
    let mut visits: HashMap<String, i64> = HashMap::new();
    for v in &sales {
        let s = if v["sale"].is_object() { &v["sale"] } else { v };
        let m = s["member_id"].as_str().map(str::to_string);
        for l in s["lines"].as_array().unwrap() {
            *stock.entry(l["sku"].as_str().unwrap().into()).or_default() -=
                l["qty"].as_i64().unwrap();
        }
        if let Some(m) = &m {
            *spend.entry(m.clone()).or_default() += s["total"].as_i64().unwrap();
            *points.entry(m.clone()).or_default() +=
                s["points_earned"].as_i64().unwrap() - s["points_redeemed"].as_i64().unwrap();
            *visits.entry(m.clone()).or_default() += 1;
        }
        for r in v["refunds"].as_array().unwrap() {
            if r["restock"] == true {
                for l in r["lines"].as_array().unwrap() {
                    *stock.entry(l["sku"].as_str().unwrap().into()).or_default() +=
                        l["qty"].as_i64().unwrap();
                }
            }
            if let Some(m) = &m {
                *spend.entry(m.clone()).or_default() -= r["amount"].as_i64().unwrap();
                *points.entry(m.clone()).or_default() +=
                    r["points_restored"].as_i64().unwrap() - r["points_reversed"].as_i64().unwrap();
            }
        }
    }
    for m in core {
        let (_, v) = d.get(&t, &format!("/v1/members/{m}")).await;
        assert_eq!(
            v["total_spend"].as_i64(),
            Some(*spend.get(m).unwrap_or(&0)),
            "spend of {m}: {v}"
        );
        assert_eq!(
            v["points"].as_i64(),
            Some(*points.get(m).unwrap_or(&0)),
            "points of {m}: {v}"
        );
        assert_eq!(
            v["visits"].as_i64(),
            Some(*visits.get(m).unwrap_or(&0)),
            "visits of {m}: {v}"
        );
    }
    for (sku, n) in &stock {
        let (_, v) = d.get(&t, &format!("/v1/stock/{sku}")).await;
        assert_eq!(v["on_hand"].as_i64(), Some(*n), "stock of {sku}: {v}");
    }
}

/// Sum of stock movements per SKU (opening stock included), from the journal through the API.
pub async fn movements(d: &Daemon) -> BTreeMap<String, i64> {
    let t = d.login(MANAGER).await;
    let mut out = BTreeMap::new();
    let today = super::store_today();
    for day in [today.pred_opt().unwrap(), today, today.succ_opt().unwrap()] {
        let (s, v) = d.get(&t, &format!("/v1/stock/movements?date={day}")).await;
        assert_eq!(s, 200, "{v}");
        for m in v["movements"].as_array().unwrap() {
            *out.entry(m["sku"].as_str().unwrap().to_string())
                .or_default() += m["delta"].as_i64().unwrap();
        }
    }
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Stops `d`, starts it again and a second daemon on a copy of its data without the cache:
/// both must say the same of everything.
pub async fn compare_with_rebuild(dir: &Path, extra: &str, members: &BTreeSet<String>) -> Daemon {
    let other = dir.join("rebuilt");
    let _ = std::fs::remove_dir_all(&other);
    std::fs::create_dir_all(&other).unwrap();
    copy_dir(&dir.join("data"), &other.join("data"));
    // The store key lives beside the config? Copy every file of dir too (config, key).
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), other.join(e.file_name())).unwrap();
        }
    }
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(other.join("data").join(f));
    }
    let a = Daemon::start_in(dir, extra);
    let b = Daemon::start_in(&other, extra);
    let sa = snapshot(&a, members).await;
    let sb = snapshot(&b, members).await;
    for (k, va) in &sa {
        assert_eq!(
            Some(va),
            sb.get(k),
            "cache and journal replay differ on {k}"
        );
    }
    assert_eq!(sa.len(), sb.len());
    b.terminate();
    a
}

pub const EXTRA: &str = r#"
[[products]]
sku = "SNACK"
name = "薯片"
price = 650
stock = 1000
"#;
