//! Nothing acknowledged is lost, for every write path: `kill -9` during a concurrent mix of
//! registrations, edits, erasures, member sales with points and coupons, refunds, stock
//! movements, product edits and logins; then every answered request is checked, unanswered ones
//! retried with their key, and the cache compared with a cache rebuilt from the journal.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::crash::*;
use common::{CASHIER, Daemon, MANAGER, POS2, TERMINAL_TOKEN};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Default)]
struct Book {
    /// key → (path, body, answer)
    keyed: BTreeMap<String, (String, Value, Answer)>,
    /// member id → (acked name, unknown name after it)
    names: HashMap<String, (String, Option<String>)>,
    /// member id → erased acked (true) or unknown (false)
    erased: HashMap<String, bool>,
    /// product price: (acked, unknown)
    price: (i64, Option<i64>),
    /// coupon code → acked issue
    coupons: HashMap<String, bool>,
    /// sale ids acknowledged (for refunds)
    sale_ids: Vec<String>,
}

struct Ctx {
    client: reqwest::Client,
    base: String,
    cashier: String,
    manager: String,
    book: Arc<Mutex<Book>>,
    stop: Arc<AtomicBool>,
    core: Vec<String>,
    round: u64,
    counter: Arc<AtomicU64>,
}

impl Ctx {
    fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// A POST with an idempotency key, written in the book with its answer (or none).
    async fn keyed_post(
        &self,
        what: &str,
        token: &str,
        path: &str,
        body: Value,
        key: String,
    ) -> Answer {
        let a = call(
            &self.client,
            &self.base,
            Method::POST,
            token,
            path,
            Some(&body),
            Some(&key),
        )
        .await;
        no_5xx(what, &a);
        self.book
            .lock()
            .await
            .keyed
            .insert(key, (path.to_string(), body, a.clone()));
        a
    }
}

/// Registrations, edits and erasures of fresh members.
async fn members_task(c: Arc<Ctx>, lane: u64) {
    while !c.stop.load(Ordering::Relaxed) {
        let n = c.next();
        let key = format!("reg-{}-{lane}-{n}", c.round);
        let phone = format!("137{:02}{:06}", c.round * 10 + lane, n % 1_000_000);
        let name = format!("会员{n}");
        let body =
            json!({"name": name, "phone": phone, "card_no": format!("CARD{n}"), "tags": ["t"]});
        let a = c
            .keyed_post("register", &c.cashier, "/v1/members", body, key)
            .await;
        let Some((201, m)) = a else {
            if a.is_none() {
                return;
            }
            continue;
        };
        let id = m["id"].as_str().unwrap().to_string();
        c.book.lock().await.names.insert(id.clone(), (name, None));
        if n.is_multiple_of(2) {
            let new_name = format!("改名{n}");
            let a = call(
                &c.client,
                &c.base,
                Method::PATCH,
                &c.cashier,
                &format!("/v1/members/{id}"),
                Some(&json!({"name": new_name, "tags": ["edited"]})),
                None,
            )
            .await;
            no_5xx("patch", &a);
            let mut b = c.book.lock().await;
            let e = b.names.get_mut(&id).unwrap();
            if ok(&a) {
                e.0 = new_name;
            } else if a.is_none() {
                e.1 = Some(new_name);
                return;
            }
        }
        if n.is_multiple_of(5) {
            let a = call(
                &c.client,
                &c.base,
                Method::DELETE,
                &c.manager,
                &format!("/v1/members/{id}"),
                None,
                None,
            )
            .await;
            no_5xx("erase", &a);
            c.book.lock().await.erased.insert(id.clone(), ok(&a));
            if a.is_none() {
                return;
            }
        }
    }
}

/// Member sales with points redemption and coupons.
async fn sales_task(c: Arc<Ctx>, lane: u64) {
    while !c.stop.load(Ordering::Relaxed) {
        let n = c.next();
        let member = &c.core[(n as usize) % c.core.len()];
        let mut body = json!({
            "member_id": member,
            "lines": [{"sku": (["TEA", "MILK", "RICE"][(n % 3) as usize]), "qty": 1 + n % 3}, {"sku": "MILK", "qty": 1}],
            "payments": [{"method": "cash", "amount": 200_000}],
            "print": false,
        });
        if n.is_multiple_of(4) {
            body["redeem_points"] = json!(100);
        }
        if n.is_multiple_of(3) {
            // A coupon issued just before (no idempotency key on issue).
            let code = format!("CP{}X{lane}X{n}", c.round);
            let a = call(&c.client, &c.base, Method::POST, &c.manager, "/v1/coupons",
                Some(&json!({"code": code, "title": "满10减1", "kind": {"type": "amount_off", "threshold": 1000, "amount": 100}})), None).await;
            no_5xx("coupon", &a);
            c.book.lock().await.coupons.insert(code.clone(), ok(&a));
            if a.is_none() {
                return;
            }
            if ok(&a) {
                body["coupon_codes"] = json!([code]);
            }
        }
        let key = format!("sale-{}-{lane}-{n}", c.round);
        let a = c
            .keyed_post("sale", &c.cashier, "/v1/sales", body, key)
            .await;
        if let Some((201, s)) = &a {
            let id = s["id"].as_str().unwrap().to_string();
            c.book.lock().await.sale_ids.push(id);
        }
        if a.is_none() {
            return;
        }
    }
}

/// Partial and whole refunds of acknowledged sales.
async fn refunds_task(c: Arc<Ctx>, lane: u64) {
    while !c.stop.load(Ordering::Relaxed) {
        let n = c.next();
        let sale = {
            let b = c.book.lock().await;
            if b.sale_ids.is_empty() {
                None
            } else {
                Some(b.sale_ids[(n as usize * 7) % b.sale_ids.len()].clone())
            }
        };
        let Some(sale) = sale else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let body = if n.is_multiple_of(2) {
            json!({"reason": "顾客退货", "lines": [{"sku": "MILK", "qty": 1}]})
        } else {
            json!({"reason": "整单退", "restock": !n.is_multiple_of(3)})
        };
        let key = format!("rf-{}-{lane}-{n}", c.round);
        let path = format!("/v1/sales/{sale}/refunds");
        let a = c.keyed_post("refund", &c.manager, &path, body, key).await;
        if a.is_none() {
            return;
        }
    }
}

/// Stock movements, product edits, logins and logouts.
async fn misc_task(c: Arc<Ctx>, lane: u64) {
    while !c.stop.load(Ordering::Relaxed) {
        let n = c.next();
        let (delta, reason) = if n.is_multiple_of(2) {
            (5, "receive")
        } else {
            (-1, "damage")
        };
        let body = json!({"sku": (["TEA", "MILK", "RICE", "SNACK"][(n % 4) as usize]), "delta": delta, "reason": reason, "note": format!("n{n}")});
        let key = format!("mv-{}-{lane}-{n}", c.round);
        let a = c
            .keyed_post("move", &c.manager, "/v1/stock/movements", body, key)
            .await;
        if a.is_none() {
            return;
        }
        if lane == 0 && n.is_multiple_of(3) {
            let price = 100 + (n as i64 % 5000);
            let a = call(
                &c.client,
                &c.base,
                Method::PUT,
                &c.manager,
                "/v1/products/SNACK",
                Some(&json!({"name": "薯片", "price": price, "safety_stock": (n % 7) as i64})),
                None,
            )
            .await;
            no_5xx("put product", &a);
            let mut b = c.book.lock().await;
            if ok(&a) {
                b.price = (price, None);
            } else if a.is_none() {
                b.price.1 = Some(price);
                return;
            }
        }
        if n.is_multiple_of(4) {
            let a = call(
                &c.client,
                &c.base,
                Method::POST,
                POS2,
                "/v1/sessions",
                Some(&json!({"staff_no": "1001", "pin": "1111"})),
                None,
            )
            .await;
            no_5xx("login", &a);
            let Some((201, s)) = a else {
                if a.is_none() {
                    return;
                }
                continue;
            };
            let t = s["token"].as_str().unwrap().to_string();
            let a = call(
                &c.client,
                &c.base,
                Method::DELETE,
                &t,
                "/v1/sessions/current",
                None,
                None,
            )
            .await;
            no_5xx("logout", &a);
            if a.is_none() {
                return;
            }
        }
    }
}

/// Checks every answered request after a restart, and retries every unanswered one with its
/// key (its answer then becomes the book's).
async fn check_book(d: &Daemon, book: &mut Book) {
    let cashier = d.login(CASHIER).await;
    let manager = d.login(MANAGER).await;
    let keys: Vec<String> = book.keyed.keys().cloned().collect();
    for key in keys {
        let (path, body, answer) = book.keyed.get(&key).cloned().unwrap();
        let token = if path == "/v1/members" || path == "/v1/sales" {
            &cashier
        } else {
            &manager
        };
        // An erased member's registration key is forgotten with the member (by design).
        if path == "/v1/members"
            && let Some((_, v)) = &answer
            && let Some(id) = v["id"].as_str()
            && book.erased.contains_key(id)
        {
            continue;
        }
        let again = call(
            &d.client,
            &d.base,
            Method::POST,
            token,
            &path,
            Some(&body),
            Some(&key),
        )
        .await;
        let again = again.unwrap_or_else(|| panic!("retry of {key}: no answer"));
        match &answer {
            Some((s, v)) if (200..300).contains(s) => {
                assert_eq!(
                    again.0, 200,
                    "retry of acknowledged {key} {path}: {again:?} (first {v})"
                );
                let id_field = if path == "/v1/stock/movements" {
                    "movement_id"
                } else {
                    "id"
                };
                assert_eq!(
                    again.1[id_field], v[id_field],
                    "retry of {key} {path} answers the original: {again:?} vs {v}"
                );
                if path == "/v1/sales" {
                    let (s, sale) = d
                        .get(
                            &cashier,
                            &format!("/v1/sales/{}", v["id"].as_str().unwrap()),
                        )
                        .await;
                    assert_eq!(s, 200, "acknowledged sale {key} missing: {sale}");
                    assert_eq!(sale["total"], v["total"]);
                }
            }
            Some((s, v)) => {
                // Refused then: refused or (state changed since, e.g. points) — never a 5xx.
                assert!(
                    again.0 < 500,
                    "retry of refused {key}: {again:?} (first {s} {v})"
                );
            }
            None => {
                assert!(again.0 < 500, "retry of unanswered {key}: {again:?}");
                if path == "/v1/sales" && again.0 == 201 {
                    book.sale_ids
                        .push(again.1["id"].as_str().unwrap().to_string());
                }
                book.keyed.insert(
                    key.clone(),
                    (path.clone(), body.clone(), Some(again.clone())),
                );
                // The retry's answer must itself be stable.
                let third = call(
                    &d.client,
                    &d.base,
                    Method::POST,
                    token,
                    &path,
                    Some(&body),
                    Some(&key),
                )
                .await
                .unwrap();
                if (200..300).contains(&again.0) {
                    assert_eq!(third.0, 200, "{key}: {third:?}");
                }
            }
        }
    }
    // Registrations: one member per phone.
    for (key, (path, body, answer)) in &book.keyed {
        if path != "/v1/members" {
            continue;
        }
        let phone = body["phone"].as_str().unwrap();
        let (_, v) = d.get(&manager, &format!("/v1/members?phone={phone}")).await;
        let n = v["members"].as_array().map_or(0, Vec::len);
        if let Some((s, m)) = answer
            && (200..300).contains(s)
            && !book
                .erased
                .get(m["id"].as_str().unwrap_or(""))
                .copied()
                .unwrap_or(false)
        {
            assert!(n <= 1, "{key}: {n} members with {phone}: {v}");
            if !book.erased.contains_key(m["id"].as_str().unwrap()) {
                assert_eq!(n, 1, "{key}: registered member with {phone} not found: {v}");
            }
        }
    }
    // Edits.
    for (id, (acked, unknown)) in &book.names {
        if book.erased.contains_key(id) {
            continue;
        }
        let (s, v) = d.get(&manager, &format!("/v1/members/{id}")).await;
        assert_eq!(s, 200, "{id}: {v}");
        let name = v["name"].as_str().unwrap_or_default();
        assert!(
            name == acked || unknown.as_deref() == Some(name),
            "member {id}: name {name:?}, acknowledged {acked:?}, unanswered {unknown:?}"
        );
        if name.starts_with("改名") {
            assert_eq!(v["tags"], json!(["edited"]), "half an edit: {v}");
        }
    }
    for (id, acked) in &book.erased {
        let (s, v) = d.get(&manager, &format!("/v1/members/{id}")).await;
        assert_eq!(s, 200, "{id}: {v}");
        if *acked {
            assert_eq!(v["erased"], true, "acknowledged erasure of {id} lost: {v}");
            assert!(v["name"].is_null() || v["name"] == "", "{v}");
        }
    }
    // Product price.
    let (_, p) = d.get(&cashier, "/v1/products/SNACK").await;
    let price = p["price"].as_i64().unwrap();
    assert!(
        price == book.price.0 || Some(price) == book.price.1,
        "SNACK price {price}, book {:?}",
        book.price
    );
    // Coupons issued and acknowledged exist.
    for (code, acked) in &book.coupons {
        if *acked {
            let (s, v) = d.get(&manager, &format!("/v1/coupons/{code}")).await;
            assert_eq!(s, 200, "acknowledged coupon {code} lost: {v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_write_path_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), EXTRA);
    let t = d.login(CASHIER).await;
    let mut core = Vec::new();
    for i in 0..6 {
        core.push(
            d.register(
                &t,
                &format!("常客{i}"),
                &format!("1390000000{i}"),
                json!({}),
            )
            .await,
        );
    }
    // Give them points to redeem.
    for m in &core {
        for _ in 0..5 {
            let (s, v) = d.sale(&t, &json!({"member_id": m, "lines": [{"sku": "TEA", "qty": 1}], "payments": common::cash(25_000)})).await;
            assert_eq!(s, 201, "{v}");
        }
    }
    let book = Arc::new(Mutex::new(Book {
        price: (650, None),
        ..Default::default()
    }));
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("CRASH_SEED={seed}");
    let rounds: u64 = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let ctx = Arc::new(Ctx {
            client: d.client.clone(),
            base: d.base.clone(),
            cashier: d.login(CASHIER).await,
            manager: d.login(MANAGER).await,
            book: book.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            core: core.clone(),
            round,
            counter: Arc::new(AtomicU64::new(round * 100_000)),
        });
        let mut tasks = Vec::new();
        for lane in 0..2 {
            tasks.push(tokio::spawn(members_task(ctx.clone(), lane)));
            tasks.push(tokio::spawn(refunds_task(ctx.clone(), lane)));
            tasks.push(tokio::spawn(misc_task(ctx.clone(), lane)));
        }
        for lane in 0..4 {
            tasks.push(tokio::spawn(sales_task(ctx.clone(), lane)));
        }
        let wait = 300 + (seed.wrapping_mul(round + 7) >> 7) % 900;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        d.kill9();
        ctx.stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        d = Daemon::start_in(dir.path(), EXTRA);
        let mut b = book.lock().await;
        let mut stats: BTreeMap<String, usize> = BTreeMap::new();
        for (k, (_, _, a)) in &b.keyed {
            let kind = k.split('-').next().unwrap().to_string();
            let st = a.as_ref().map_or("none".to_string(), |(s, v)| {
                format!(
                    "{s}{}",
                    v["error"]["code"]
                        .as_str()
                        .map(|c| format!(":{c}"))
                        .unwrap_or_default()
                )
            });
            *stats.entry(format!("{kind} {st}")).or_default() += 1;
        }
        eprintln!(
            "round {round}: killed after {wait} ms, {} keyed requests {stats:?}, erased {}, names {}, coupons {}",
            b.keyed.len(),
            b.erased.len(),
            b.names.len(),
            b.coupons.len()
        );
        check_book(&d, &mut b).await;
        let moved = movements(&d).await;
        check_counters(&d, &core, &moved).await;
        let mut members: BTreeSet<String> = core.iter().cloned().collect();
        members.extend(b.names.keys().cloned());
        drop(b);
        assert_eq!(d.terminate(), Some(0));
        d = compare_with_rebuild(dir.path(), EXTRA, &members).await;
        let _ = TERMINAL_TOKEN;
    }
    d.terminate();
}
