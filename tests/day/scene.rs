//! The scenes of a store's day: tills selling at once beside the manager's back office, the
//! store's own coupons and HQ's view of the store.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Book, Coupon, Rng, random_movement, random_refund, random_sale};
use crate::common::Daemon;
use crate::common::mqtt::{Hq, wait_for};

/// Waits until HQ has every event of the journal; the journal's last `seq`, and what HQ got.
pub async fn at_hq(d: &Daemon, t: &str, hq: &Hq) -> (u64, Vec<Value>) {
    let mut backlog = Value::Null;
    for _ in 0..1200 {
        let (_, u) = d.get(t, "/v1/uplink").await;
        backlog = u.clone();
        if u["backlog"] == 0 && u["connected"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backlog["backlog"], 0, "{backlog}");
    let metrics = d
        .client
        .get(d.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last_seq: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("storebox_journal_last_seq "))
        .and_then(|v| v.trim().parse().ok())
        .expect("storebox_journal_last_seq");
    let seqs = || -> std::collections::HashSet<u64> {
        hq.events()
            .iter()
            .filter_map(|e| e["seq"].as_u64())
            .collect()
    };
    wait_for(30, "HQ has every seq", || seqs().len() as u64 >= last_seq).await;
    (last_seq, hq.events())
}

/// Puts the coupons the store issued by itself (welcome, birthday: HQ hears of each) into the
/// drawer, as the member would bring them from the text message HQ sends.
pub async fn harvest(d: &Daemon, t: &str, hq: &Hq, book: &Mutex<Book>) {
    let (_, events) = at_hq(d, t, hq).await;
    let mut b = book.lock().unwrap();
    for e in events.iter().filter(|e| e["kind"] == "coupon.issued") {
        let code = e["data"]["code"].as_str().unwrap();
        if b.seen.insert(code.to_string()) {
            b.coupons.push(Coupon {
                code: code.to_string(),
                member_id: e["data"]["member_id"].as_str().map(str::to_string),
                free_sku: e["data"]["kind"]["sku"].as_str().map(str::to_string),
            });
        }
    }
}

/// Registers a member at a till on the day `on`: id, and the book's note of it.
pub async fn register(
    d: &Daemon,
    t: &str,
    staff: &str,
    book: &Mutex<Book>,
    n: u32,
    birthday: &str,
    on: &str,
) -> String {
    let id = d
        .register(
            t,
            &format!("会员{n}"),
            &format!("1391234{n:04}"),
            json!({"birthday": birthday}),
        )
        .await;
    book.lock()
        .unwrap()
        .registrations
        .push((id.clone(), staff.into(), on.into()));
    id
}

/// Issues a coupon at the store (manager) and puts it in the drawer.
pub async fn issue(d: &Daemon, tm: &str, book: &Mutex<Book>, kind: Value, member: Option<&str>) {
    let mut body = json!({"title": "店铺券", "kind": kind,
        "valid_from": "2026-11-01T00:00:00+08:00", "valid_to": "2026-12-31T23:59:59+08:00"});
    if let Some(m) = member {
        body["member_id"] = json!(m);
    }
    let (s, c) = d.post(tm, "/v1/coupons", &body).await;
    assert_eq!(s, 201, "{c}");
    let mut b = book.lock().unwrap();
    b.seen.insert(c["code"].as_str().unwrap().into());
    b.coupons.push(Coupon {
        code: c["code"].as_str().unwrap().into(),
        member_id: member.map(str::to_string),
        free_sku: c["kind"]["sku"].as_str().map(str::to_string),
    });
}

/// One till selling `n` customers.
pub async fn till(
    d: &Daemon,
    token: &str,
    seed: u64,
    n: usize,
    book: &Mutex<Book>,
    members: &[String],
) {
    let mut rng = Rng::new(seed);
    for _ in 0..n {
        random_sale(d, token, &mut rng, book, members).await;
    }
}

/// Two tills selling `n` customers each, and the manager's refunds (every other one of a sale
/// `among`, when given) and stock movements between.
#[allow(clippy::too_many_arguments)]
pub async fn rush(
    d: &Daemon,
    tokens: [&str; 3],
    seed: u64,
    n: usize,
    book: &Mutex<Book>,
    members: &[String],
    refunds: usize,
    among: Option<&[String]>,
) {
    let back_office = async {
        let mut rng = Rng::new(seed ^ 3);
        for k in 0..refunds {
            tokio::time::sleep(Duration::from_millis(40)).await;
            let from = if k % 2 == 0 { among } else { None };
            random_refund(d, tokens[2], &mut rng, book, from).await;
            random_movement(d, tokens[2], &mut rng, book).await;
        }
    };
    tokio::join!(
        till(d, tokens[0], seed ^ 1, n, book, members),
        till(d, tokens[1], seed ^ 2, n, book, members),
        back_office
    );
}
