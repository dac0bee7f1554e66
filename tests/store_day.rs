//! A whole store day, reconciled. Two days of a store played by seeded random customers at two
//! tills at once (members and walk-ins, a member's birthday, levels reached mid-day, points
//! earned and paid with, coupons of each kind, mixed payments), a manager giving refunds —
//! whole and partial, of the day's sales and of the day before's — and booking deliveries,
//! breakage and transfers, a price changed at the store and one by HQ, HQ's member, coupon and
//! stock count arriving over a real Mosquitto, the link to HQ down for a while, and the daemon
//! restarted mid-day; the store's welcome and birthday coupons, a member forgotten (PIPL) and
//! one corrected. Then every view of those days must tell the same story, to the fen and the
//! point (`tests/day/checks.rs`, `views.rs`, `paper.rs`): each sale as answered, read, listed and
//! sent to HQ; the sales, staff and product reports (JSON and CSV); payments by method; stock,
//! its movements and `stock.low`; each member's spend, points, level and visits (page, lookups,
//! segments, export); the receipts and refund slips on the printers' paper; the audit log; and
//! what HQ received — every `seq` once. Last, the cache rebuilt from the journal shows the same.
//! `DAY_SEED` replays a run's choices (which till gets there first still varies).

mod common;
mod day;

use std::sync::Mutex;
use std::time::Duration;

use common::mqtt::{Broker, Hq, wait_for};
use common::{CASHIER, Daemon, MANAGER, POS2, TERMINAL_TOKEN, libfaketime, start_faked};
use day::paper::{paper, wait_paper};
use day::scene::{at_hq, harvest, issue, register, rush};
use day::{Book, Coupon, Lp, checks, login_at};
use serde_json::{Value, json};

const DAY1: &str = "2026-11-20";
const DAY2: &str = "2026-11-21";
const CASHIER2: (&str, &str) = ("1002", "3333");
/// The daemon's clock is set in UTC: 01:00 is 09:00 in the store (Asia/Shanghai).
const UTC: &[(&str, &str)] = &[("TZ", "UTC")];

/// The chain's rules, with 抹零 of the fen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_view_of_a_store_day_agrees() {
    two_days(&Variant {
        store: "total_rounding = \"drop_fen\"",
        membership: "",
        levels_can_drop: false,
        automation: true,
    })
    .await;
}

/// A chain whose levels follow the last twelve months' spend and can drop (a refund takes a
/// member back below a threshold), with points that lapse, 抹零 of the jiao and no selling
/// beyond the stock on the books.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_view_agrees_when_levels_can_drop() {
    two_days(&Variant {
        store: "total_rounding = \"drop_jiao\"\nallow_negative_stock = false",
        membership: "\n[membership]\nlevels_can_drop = true\nspend_window = \"rolling_365d\"\n\
                     points_expiry_months = 12\nbirthday_window = \"week\"\n",
        levels_can_drop: true,
        automation: false,
    })
    .await;
}

/// How a store is set up: lines for `[store]`, a `[membership]` section, whether levels can
/// drop (for the checks), and whether the store's automation (welcome and birthday coupons)
/// runs.
struct Variant {
    store: &'static str,
    membership: &'static str,
    levels_can_drop: bool,
    automation: bool,
}

async fn two_days(variant: &Variant) {
    let Some(lib) = libfaketime() else { return };
    let seed: u64 = std::env::var("DAY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261121);
    eprintln!("DAY_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let lps = [Lp::new(dir.path(), "lp1"), Lp::new(dir.path(), "lp2")];
    let text = common::config_text(
        &dir.path().join("data"),
        &format!(
            "{}{}{}",
            day::extra_config(&lps[0].path, &lps[1].path),
            broker.uplink_config(""),
            variant.membership
        ),
    )
    .replace(
        "environment = \"development\"",
        &format!("environment = \"development\"\n{}", variant.store),
    )
    .replace(
        "[insight.automation]\nenabled = false",
        &format!("[insight.automation]\nenabled = {}", variant.automation),
    );
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, text).unwrap();
    let book = Mutex::new(Book::default());

    eprintln!("--- day 1");
    // Day 1: members register, buy, some reach a level; coupons are issued.
    let d = open_at(dir.path(), &config, lib, &format!("@{DAY1} 01:00:00"));
    hq.wait_online().await;
    let (t1, t2, tm) = tills(&d).await;
    let mut members = Vec::new();
    for n in 0..10u32 {
        // Two share today's date of birth (day 2's), one yesterday's.
        let birthday = match n {
            0 | 1 => "1990-11-21",
            2 => "1988-11-20",
            _ => "1992-03-15",
        };
        let (t, no) = if n % 2 == 0 {
            (&t1, "1001")
        } else {
            (&t2, "1002")
        };
        members.push(register(&d, t, no, &book, n, birthday, DAY1).await);
    }
    // Three of each kind: 满100减20, 9折 (at most ¥50 off), and a free item for a member.
    for member in &members[..3] {
        issue(
            &d,
            &tm,
            &book,
            json!({"type": "amount_off", "threshold": 10_000, "amount": 2_000}),
            None,
        )
        .await;
        issue(
            &d,
            &tm,
            &book,
            json!({"type": "percent_off", "bps": 1_000, "cap": 5_000}),
            None,
        )
        .await;
        issue(
            &d,
            &tm,
            &book,
            json!({"type": "free_item", "sku": "SNACK"}),
            Some(member),
        )
        .await;
    }
    // The welcome coupons the store gave (HQ hears of every coupon issued).
    harvest(&d, &tm, &hq, &book).await;
    rush(&d, [&t1, &t2, &tm], seed, 60, &book, &members, 12, None).await;
    let day_sales: Vec<String> = book
        .lock()
        .unwrap()
        .sales
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    close(d, &lps, &book).await;

    eprintln!("--- day 2 morning");
    // Day 2, morning: HQ's member (spend elsewhere), HQ's coupon for them.
    let d = open_at(dir.path(), &config, lib, &format!("@{DAY2} 01:00:00"));
    let (t1, t2, tm) = tills(&d).await;
    let hq_member = json!({"id": "m-day", "kind": "members", "version": 1, "items": [
        {"id": "hq-member-1", "name": "吴敏", "phone": "13788889999", "birthday": "1979-07-01", "version": 3,
         "level": "silver", "created_at": "2025-01-05T10:00:00+08:00", "created_store": "sh-002",
         "counters": {"sh-002": {"visits": 5, "months": {"2026-10": {"spend": 400_000, "points_earned": 3_000}}}}}]});
    hq.publish("storebox/stores/sh-001/hq/members", hq_member.clone())
        .await;
    hq.publish(
        "storebox/stores/sh-001/hq/coupons",
        json!({"id": "c-day", "kind": "coupons", "version": 1, "items": [
        {"code": "HQ-VIP15", "title": "会员85折", "kind": {"type": "percent_off", "bps": 1_500},
         "member_id": "hq-member-1", "combinable_with_level": false, "version": 1}]}),
    )
    .await;
    for _ in 0..400 {
        if d.get(&tm, "/v1/coupons/HQ-VIP15").await.0 == 200
            && d.get(&tm, "/v1/members/hq-member-1").await.0 == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    book.lock().unwrap().coupons.push(Coupon {
        code: "HQ-VIP15".into(),
        member_id: Some("hq-member-1".into()),
        free_sku: None,
    });
    members.push("hq-member-1".into());
    if variant.automation {
        // The morning's birthday coupons: two birthdays today, one yesterday caught up.
        let birthdays = || {
            hq.events()
                .iter()
                .filter(|e| e["kind"] == "member.birthday")
                .count()
        };
        wait_for(20, "the birthday coupons", || birthdays() >= 3).await;
        harvest(&d, &tm, &hq, &book).await;
    }
    rush(
        &d,
        [&t1, &t2, &tm],
        seed ^ 0x100,
        60,
        &book,
        &members,
        15,
        Some(&day_sales),
    )
    .await;

    eprintln!("--- mid-morning");
    // Mid-morning: TEA's price changed here, MILK's by HQ, RICE counted by HQ; then the link
    // to HQ goes down for a while.
    let (s, v) = d
        .send(
            reqwest::Method::PUT,
            &tm,
            "/v1/products/TEA",
            &json!({"name": "西湖龙井 250g",
        "price": 26_800, "barcodes": ["6901234567892"], "safety_stock": 10}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    hq.publish("storebox/hq/products", json!({"id": "p-day", "kind": "products", "version": 1, "items": [
        {"sku": "MILK", "name": "纯牛奶 1L", "price": 1_350, "barcodes": ["6901234567915"], "version": 1}]})).await;
    hq.publish(
        "storebox/stores/sh-001/hq/stock",
        json!({"id": "s-day", "kind": "stock", "version": 1, "items": [
        {"sku": "RICE", "on_hand": 900, "safety_stock": 890, "version": 1}]}),
    )
    .await;
    rush(
        &d,
        [&t1, &t2, &tm],
        seed ^ 0x200,
        30,
        &book,
        &members,
        9,
        None,
    )
    .await;
    let mut broker = broker;
    broker.stop();
    rush(
        &d,
        [&t1, &t2, &tm],
        seed ^ 0x300,
        30,
        &book,
        &members,
        9,
        Some(&day_sales),
    )
    .await;
    close(d, &lps, &book).await;
    broker.start_again();

    eprintln!("--- afternoon");
    // Day 2, afternoon, after the restart.
    let d = open_at(dir.path(), &config, lib, &format!("@{DAY2} 06:00:00"));
    let (t1, t2, tm) = tills(&d).await;
    // A customer asks to be forgotten (PIPL); their sales stay, and may still be refunded.
    let forgotten = members[9].clone();
    let (s, v) = d.erase(&tm, &forgotten).await;
    assert_eq!(s, 204, "{v}");
    let buyers: Vec<String> = members
        .iter()
        .filter(|m| **m != forgotten)
        .cloned()
        .collect();
    // Another's name is corrected, and a tag added.
    let edited = members[3].clone();
    let (s, v) = d
        .send(
            reqwest::Method::PATCH,
            &t2,
            &format!("/v1/members/{edited}"),
            &json!({"name": "会员3改", "tags": ["常客"]}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    rush(
        &d,
        [&t1, &t2, &tm],
        seed ^ 0x400,
        60,
        &book,
        &buyers,
        18,
        None,
    )
    .await;
    let book = book.into_inner().unwrap();
    let count = |f: &dyn Fn(&Value) -> bool| book.sales.iter().filter(|s| f(s)).count();
    eprintln!(
        "{} sales ({} members, {} coupons, {} with points, {} birthday, {} upgrades, {} with 抹零), \
         {} refunds ({} of day 1 on day 2, {} kept money for points), {} movements; refused: {:?}",
        book.sales.len(),
        count(&|s| !s["member_id"].is_null()),
        count(&|s| !s["coupons"].as_array().unwrap().is_empty()),
        count(&|s| s["points_redeemed"].as_i64() > Some(0)),
        count(&|s| s["benefit"] == "birthday"),
        count(&|s| !s["member"]["upgraded_to"].is_null()),
        count(&|s| s["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["rounding"].as_i64() > Some(0))),
        book.refunds.len(),
        book.refunds
            .iter()
            .filter(
                |r| day_sales.contains(&r["sale_id"].as_str().unwrap().to_string())
                    && r["created_at"].as_str().unwrap().starts_with(DAY2)
            )
            .count(),
        book.refunds
            .iter()
            .filter(|r| r["shortfall_value"].as_i64() > Some(0))
            .count(),
        book.movements.len(),
        book.refused
    );

    eprintln!("--- waiting for HQ and paper");
    // Everything at HQ, everything on paper.
    let (last_seq, events) = at_hq(&d, &tm, &hq).await;
    // HQ's view of the store's backlog catches up with the store's own.
    wait_for(15, "HQ's status with no backlog", || {
        hq.last_status()
            .is_some_and(|s| s["online"] == true && s["backlog"] == 0)
    })
    .await;
    wait_paper(&d, &lps, book.sales.len() + book.refunds.len()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let up = checks::hq(&events, last_seq, &book);
    checks::sales(&d, &tm, &book, &[DAY1, DAY2]).await;
    let by_method = checks::payments(&book);
    eprintln!("net by method: {by_method:?}");
    for day in [DAY1, DAY2] {
        checks::reports(&d, &tm, &book, day).await;
    }
    checks::stock(&d, &tm, &book, &[DAY1, DAY2], &up).await;
    let mut opening = checks::Opening::new();
    opening.insert("hq-member-1".into(), (400_000, 3_000, 5, Some("silver")));
    checks::members(&d, &tm, &book, &opening, &up, variant.levels_can_drop).await;
    day::paper::receipts(&book, &paper(&lps));
    let hq_events: Vec<Value> = up.values().cloned().collect();
    for day in [DAY1, DAY2] {
        day::views::products(&d, &tm, &book, day).await;
    }
    day::views::period(&d, &tm, &book, &[DAY1, DAY2]).await;
    day::views::stock_lists(&d, &t1, &tm, &hq_events).await;
    day::views::lookups(&d, &tm, &book, &buyers).await;
    let erased: Vec<&Value> = up
        .values()
        .filter(|e| e["kind"] == "member.erased")
        .collect();
    assert_eq!(erased.len(), 1, "member.erased at HQ");
    assert_eq!(erased[0]["data"]["member_id"], forgotten.as_str());
    let updated: Vec<&Value> = up
        .values()
        .filter(|e| e["kind"] == "member.updated")
        .collect();
    assert_eq!(updated.len(), 1, "member.updated at HQ");
    assert_eq!(
        updated[0]["data"]["profile"]["name"], "会员3改",
        "{}",
        updated[0]
    );
    assert_eq!(
        d.get(&tm, &format!("/v1/members/{edited}")).await.1["name"],
        "会员3改"
    );
    day::views::hq_details(&hq_events, &book);
    day::views::segments(&d, &tm, &members).await;
    day::paper::refund_slips(&book, &paper(&lps));
    for day in [DAY1, DAY2] {
        day::views::hours(&d, &tm, &book, day).await;
    }
    let ta = d.login(common::ADMIN).await;
    let (_, events) = at_hq(&d, &tm, &hq).await;
    day::views::audit(&d, &ta, &book, &events).await;

    // The cache is a projection of the journal (and of HQ's data): rebuilt, it shows the same.
    eprintln!("--- cache rebuilt");
    let mut before = Vec::new();
    for id in &members {
        before.push(d.get(&tm, &format!("/v1/members/{id}")).await.1);
    }
    let stock_before = d.get(&tm, "/v1/stock").await.1;
    d.terminate();
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(dir.path().join("data").join(f));
    }
    let d = open_at(dir.path(), &config, lib, &format!("@{DAY2} 10:00:00"));
    let tm = d.login(MANAGER).await;
    hq.publish("storebox/stores/sh-001/hq/members", hq_member.clone())
        .await;
    let mut after = Vec::new();
    for _ in 0..400 {
        let (_, m) = d.get(&tm, "/v1/members/hq-member-1").await;
        if m["name"] == "吴敏" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for id in &members {
        after.push(d.get(&tm, &format!("/v1/members/{id}")).await.1);
    }
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(a, b, "a member after the cache was rebuilt");
    }
    assert_eq!(
        d.get(&tm, "/v1/stock").await.1,
        stock_before,
        "stock after the cache was rebuilt"
    );
    d.terminate();
}

/// The store opened at `when` (libfaketime's `@…`, the daemon's clock in UTC).
fn open_at(dir: &std::path::Path, config: &std::path::Path, lib: &str, when: &str) -> Daemon {
    start_faked(dir, config, lib, ("FAKETIME", when), UTC)
}

/// The two cashiers at their tills and the manager, logged in.
async fn tills(d: &Daemon) -> (String, String, String) {
    let t1 = login_at(d, TERMINAL_TOKEN, CASHIER).await;
    let t2 = login_at(d, POS2, CASHIER2).await;
    (t1, t2, d.login(MANAGER).await)
}

/// Closing time: every receipt and slip of the book on paper, then the daemon stopped.
async fn close(d: Daemon, lps: &[Lp], book: &Mutex<Book>) {
    let printed = {
        let b = book.lock().unwrap();
        b.sales.len() + b.refunds.len()
    };
    wait_paper(&d, lps, printed).await;
    d.terminate();
}
