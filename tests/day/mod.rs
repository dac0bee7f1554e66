//! A store's day as tills, a manager and a back office make it: seeded random sales (members and
//! walk-ins, coupons, points, mixed payments), refunds and stock movements, each recorded in a
//! [`Book`] as the terminal was answered (`scene` plays them two tills at a time). `checks`,
//! `views` and `paper` then hold every view of the day against the book and each other.

#![allow(dead_code)]

pub mod checks;
pub mod paper;
pub mod scene;
pub mod views;

pub use paper::Lp;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::common::{Daemon, code};

/// A small seeded generator (SplitMix64): the same seed plays the same choices.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A coupon waiting in a drawer for a customer: its code, the member it is bound to, and the
/// product it gives free (for a free-item coupon).
#[derive(Debug, Clone)]
pub struct Coupon {
    pub code: String,
    pub member_id: Option<String>,
    pub free_sku: Option<String>,
}

/// Everything the terminals were told, as they were told it.
#[derive(Default)]
pub struct Book {
    /// `POST /v1/sales` answers (201).
    pub sales: Vec<Value>,
    /// `POST /v1/sales/{id}/refunds` answers (201).
    pub refunds: Vec<Value>,
    /// `POST /v1/stock/movements` answers (201).
    pub movements: Vec<Value>,
    /// Registrations: member id, staff number, store-local day.
    pub registrations: Vec<(String, String, String)>,
    /// Coupons not used yet.
    pub coupons: Vec<Coupon>,
    /// Every coupon code put into `coupons` so far.
    pub seen: std::collections::HashSet<String>,
    /// Refusals a till can meet when another till changed something first (a coupon used, a
    /// price changed, points spent), by code.
    pub refused: BTreeMap<String, u32>,
}

/// The products the tills sell and their config prices.
pub const SKUS: [&str; 7] = ["TEA", "MILK", "RICE", "SNACK", "CIG", "FRUIT", "OIL"];

/// Extra config: the store's products beyond the test config's, a second cashier, and a `file`
/// printer at each terminal (`lp1`, `lp2`: FIFOs standing in for `/dev/usb/lp*`, see [`Lp`]).
pub fn extra_config(lp1: &std::path::Path, lp2: &std::path::Path) -> String {
    format!(
        r#"
[[staff]]
staff_no = "1002"
name = "陈静"
role = "cashier"
pin = "3333"

[[products]]
sku = "SNACK"
name = "牛肉干 100g"
price = 333
stock = 500
safety_stock = 20

[[products]]
sku = "CIG"
name = "中华香烟"
price = 4500
member_discount = false
stock = 200

[[products]]
sku = "FRUIT"
name = "阳光玫瑰 1kg"
price = 1999
stock = 300
safety_stock = 280

[[products]]
sku = "OIL"
name = "花生油 5L"
price = 12990
stock = 300

[[devices]]
id = "printer-1"
kind = "printer"
terminal = "pos-1"
transport = "file"
path = "{}"

[[devices]]
id = "printer-2"
kind = "printer"
terminal = "pos-2"
transport = "file"
path = "{}"
"#,
        lp1.display(),
        lp2.display()
    )
}

/// Logs `staff` in on the terminal whose token is `terminal`.
pub async fn login_at(d: &Daemon, terminal: &str, staff: (&str, &str)) -> String {
    let (s, v, _) = crate::common::login_status(d, terminal, staff.0, staff.1).await;
    assert_eq!(s, 201, "login {}: {v}", staff.0);
    v["token"].as_str().unwrap().to_string()
}

/// Refusals one till can meet because another till (or HQ) changed something between its
/// quote and its sale. Anything else is a failure of the test.
const RACES: [&str; 8] = [
    "out_of_stock",
    "coupon_used",
    "underpaid",
    "non_cash_overpaid",
    "insufficient_points",
    "redeem_above_limit",
    "coupon_threshold_not_met",
    "coupon_item_missing",
];

/// Payments for `total`: cash (exact or a round note with change), one other method exactly,
/// or a split of two methods.
fn payments(rng: &mut Rng, total: i64) -> Value {
    if total == 0 {
        return json!([]);
    }
    let other = ["card", "wechat", "alipay", "stored_value", "other"];
    match rng.below(100) {
        0..=19 => json!([{"method": "cash", "amount": total}]),
        20..=39 => {
            // A ¥10 or ¥100 note (or several) and change.
            let note = if rng.chance(50) { 1_000 } else { 10_000 };
            let tendered = (total / note + 1) * note;
            json!([{"method": "cash", "amount": tendered}])
        }
        40..=69 => json!([{"method": rng.pick(&other), "amount": total}]),
        _ if total < 2 => json!([{"method": "card", "amount": total}]),
        _ => {
            let first = 1 + rng.below((total - 1) as u64) as i64;
            let rest = total - first;
            if rng.chance(50) {
                // The rest in cash, rounded up to a ¥10 note: change.
                let tendered = (rest / 1_000 + 1) * 1_000;
                json!([{"method": rng.pick(&other), "amount": first},
                       {"method": "cash", "amount": tendered}])
            } else {
                json!([{"method": "wechat", "amount": first},
                       {"method": "alipay", "amount": rest}])
            }
        }
    }
}

/// Takes a coupon `member` may use out of the drawer.
fn take_coupon(book: &Mutex<Book>, rng: &mut Rng, member: Option<&str>) -> Option<Coupon> {
    let mut b = book.lock().unwrap();
    let fits: Vec<usize> = (0..b.coupons.len())
        .filter(|i| {
            b.coupons[*i].member_id.is_none() || b.coupons[*i].member_id.as_deref() == member
        })
        .collect();
    if fits.is_empty() {
        return None;
    }
    let i = fits[rng.below(fits.len() as u64) as usize];
    Some(b.coupons.remove(i))
}

/// One customer at the till: a cart of one to four products (now and then a big one), a member
/// or not, maybe a coupon, maybe points, then payment. Priced with a quote first, as a till
/// does; a race with another till (see [`RACES`]) starts the customer over.
pub async fn random_sale(
    d: &Daemon,
    token: &str,
    rng: &mut Rng,
    book: &Mutex<Book>,
    members: &[String],
) -> Option<Value> {
    for _ in 0..4 {
        let mut lines: Vec<Value> = Vec::new();
        let n = 1 + rng.below(4);
        let mut skus: Vec<&str> = Vec::new();
        while (skus.len() as u64) < n {
            let sku = *rng.pick(&SKUS);
            if !skus.contains(&sku) {
                skus.push(sku);
            }
        }
        for sku in &skus {
            let qty = if *sku == "TEA" && rng.chance(30) {
                4 + rng.below(6)
            } else {
                1 + rng.below(3)
            };
            lines.push(json!({"sku": sku, "qty": qty}));
        }
        let member = (!members.is_empty() && rng.chance(65)).then(|| rng.pick(members).clone());
        let coupon = if rng.chance(30) {
            take_coupon(book, rng, member.as_deref())
        } else {
            None
        };
        if let Some(sku) = coupon.as_ref().and_then(|c| c.free_sku.clone())
            && !skus.contains(&sku.as_str())
        {
            lines.push(json!({"sku": sku, "qty": 1}));
        }
        let mut body = json!({"lines": lines});
        if let Some(m) = &member {
            body["member_id"] = json!(m);
        }
        if let Some(c) = &coupon {
            body["coupon_codes"] = json!([c.code]);
        }
        let (s, mut q) = d.post(token, "/v1/sales/quote", &body).await;
        if s == 422 && RACES.contains(&code(&q)) {
            note_refusal(book, code(&q), coupon, false);
            continue;
        }
        assert_eq!(s, 200, "quote {body}: {q}");
        let max = q["max_redeem_points"].as_i64().unwrap_or(0);
        if member.is_some() && max >= 100 && rng.chance(45) {
            body["redeem_points"] = json!(100 + rng.below((max - 99) as u64) as i64);
            let (s, q2) = d.post(token, "/v1/sales/quote", &body).await;
            if s == 422 && RACES.contains(&code(&q2)) {
                // Another till spent the member's points meanwhile.
                note_refusal(book, code(&q2), coupon, false);
                continue;
            }
            assert_eq!(s, 200, "quote {body}: {q2}");
            q = q2;
        }
        body["payments"] = payments(rng, q["total"].as_i64().unwrap());
        let key = uuid::Uuid::now_v7().to_string();
        let post = || d.send(reqwest::Method::POST, token, "/v1/sales", &body, Some(&key));
        let (s, v) = post().await;
        if s == 201 {
            if rng.chance(15) {
                // The answer was lost; the till sends the sale again with its key.
                let again = post().await;
                assert_eq!(again, (200, v.clone()), "the sale sent again");
            }
            book.lock().unwrap().sales.push(v.clone());
            return Some(v);
        }
        assert!(
            s == 422 && RACES.contains(&code(&v)),
            "sale {body}: {s} {v}"
        );
        let used = code(&v) == "coupon_used";
        note_refusal(book, code(&v), coupon, used);
    }
    None
}

fn note_refusal(book: &Mutex<Book>, why: &str, coupon: Option<Coupon>, used: bool) {
    let mut b = book.lock().unwrap();
    *b.refused.entry(why.to_string()).or_default() += 1;
    if let Some(c) = coupon
        && !used
        && why != "coupon_threshold_not_met"
    {
        b.coupons.push(c);
    }
}

/// Units of each line of `sale` not refunded yet, by the book.
pub fn refundable(book: &Book, sale: &Value) -> Vec<(String, u64)> {
    let id = &sale["id"];
    sale["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let sku = l["sku"].as_str().unwrap();
            let back: u64 = book
                .refunds
                .iter()
                .filter(|r| &r["sale_id"] == id)
                .flat_map(|r| r["lines"].as_array().unwrap())
                .filter(|x| x["sku"] == sku)
                .map(|x| x["qty"].as_u64().unwrap())
                .sum();
            (sku.to_string(), l["qty"].as_u64().unwrap() - back)
        })
        .filter(|(_, q)| *q > 0)
        .collect()
}

/// A customer brings something back: a sale (of `among`, by id, or any in the book) refunded
/// whole or in part, the goods back on the shelf or not.
pub async fn random_refund(
    d: &Daemon,
    manager: &str,
    rng: &mut Rng,
    book: &Mutex<Book>,
    among: Option<&[String]>,
) -> Option<Value> {
    let (sale, left) = {
        let b = book.lock().unwrap();
        let open: Vec<(Value, Vec<(String, u64)>)> = b
            .sales
            .iter()
            .filter(|s| among.is_none_or(|ids| ids.iter().any(|i| s["id"] == i.as_str())))
            .map(|s| (s.clone(), refundable(&b, s)))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        if open.is_empty() {
            return None;
        }
        open[rng.below(open.len() as u64) as usize].clone()
    };
    let mut body = json!({"reason": "顾客退货", "restock": rng.chance(75)});
    if rng.chance(55) {
        let mut lines = Vec::new();
        for (sku, qty) in &left {
            if lines.is_empty() || rng.chance(30) {
                lines.push(json!({"sku": sku, "qty": 1 + rng.below(*qty)}));
            }
        }
        body["lines"] = json!(lines);
    }
    let id = sale["id"].as_str().unwrap();
    let key = uuid::Uuid::now_v7().to_string();
    let (s, v) = d
        .send(
            reqwest::Method::POST,
            manager,
            &format!("/v1/sales/{id}/refunds"),
            &body,
            Some(&key),
        )
        .await;
    assert_eq!(s, 201, "refund of {id} {body}: {v}");
    if rng.chance(20) {
        let path = format!("/v1/sales/{id}/refunds");
        let again = d
            .send(reqwest::Method::POST, manager, &path, &body, Some(&key))
            .await;
        assert_eq!(again, (200, v.clone()), "the refund sent again");
    }
    book.lock().unwrap().refunds.push(v.clone());
    Some(v)
}

/// A delivery, a breakage, a transfer or a count correction.
pub async fn random_movement(d: &Daemon, manager: &str, rng: &mut Rng, book: &Mutex<Book>) {
    let sku = *rng.pick(&SKUS);
    let (reason, delta) = match rng.below(4) {
        0 => ("receive", 10 + rng.below(40) as i64),
        1 => ("damage", -(1 + rng.below(3) as i64)),
        2 => ("transfer", -(1 + rng.below(5) as i64)),
        _ => ("adjust", if rng.chance(50) { 2 } else { -2 }),
    };
    let (s, v) = d
        .post(
            manager,
            "/v1/stock/movements",
            &json!({"sku": sku, "delta": delta, "reason": reason, "note": "盘点"}),
        )
        .await;
    if s == 422 && code(&v) == "insufficient_stock" {
        // The store sells no more than its books hold, and they hold less.
        return;
    }
    assert_eq!(s, 201, "{sku} {reason} {delta}: {v}");
    book.lock().unwrap().movements.push(v);
}
