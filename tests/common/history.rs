//! A store's past, written straight into its journal before the daemon first starts: member
//! registrations and sales at any time, for tests that need a history (segments, the churn
//! warning, automation).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};
use storebox::domain::event::{Event, EventBody};

/// The store id of the tests' config.
const STORE: &str = "sh-001";

/// A `member.registered` event body.
pub fn member_event(
    id: &str,
    at: DateTime<FixedOffset>,
    by: &str,
    name: &str,
    phone: &str,
) -> Value {
    json!({"kind": "member.registered", "data": {
        "member_id": id, "store_id": STORE, "staff_no": by, "created_at": at.to_rfc3339(),
        "profile": {"name": name, "phone": phone},
        "tags": [], "consent": {"marketing": true}}})
}

/// A `sale.recorded` event body: `lines` are `(sku, qty, amount)`, paid in cash, no discounts.
pub fn sale_event(
    id: &str,
    at: DateTime<FixedOffset>,
    staff: &str,
    member_id: Option<&str>,
    lines: &[(&str, u32, i64)],
) -> Value {
    let total: i64 = lines.iter().map(|l| l.2).sum();
    json!({"kind": "sale.recorded", "data": {
        "id": id, "seq": 0, "store_id": STORE, "created_at": at.to_rfc3339(),
        "staff_no": staff, "terminal_id": "pos-1", "member_id": member_id,
        "lines": lines.iter().map(|(sku, qty, amount)| json!({
            "sku": sku, "name": sku, "qty": qty, "unit_price": amount / i64::from(*qty),
            "discount": 0, "amount": amount, "promo_discount": 0, "member_discount": 0,
            "coupon_discount": 0, "rounding": 0, "points_value": 0, "points_redeemed": 0,
            "points_earned": 0})).collect::<Vec<_>>(),
        "subtotal": total, "discount_total": 0, "points_redeemed": 0, "points_value": 0,
        "total": total, "payments": [{"method": "cash", "amount": total}],
        "paid": total, "change": 0, "points_earned": 0, "benefit": null, "level": null,
        "coupons": [], "member": null}})
}

/// Appends `events` (time, body) to the journal of a new store in `data`, in time order, in
/// one transaction; the store key is created there if missing.
pub fn write_journal(data: &Path, mut events: Vec<(DateTime<FixedOffset>, Value)>) {
    use storebox::journal::{Journal, store};
    std::fs::create_dir_all(data).unwrap();
    let (keys, _) = storebox::security::StoreKeys::load_or_create(&data.join("store.key")).unwrap();
    let codec = storebox::pii::PiiCodec::new(Arc::new(keys));
    events.sort_by_key(|e| e.0);
    let mut journal = Journal::open(data, STORE).unwrap();
    let first = journal.last_seq() + 1;
    let tx = journal.conn_mut().transaction().unwrap();
    for (seq, (at, body)) in (first..).zip(events) {
        let body: EventBody = serde_json::from_value(body).expect("a valid event");
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            store_id: STORE.into(),
            seq,
            occurred_at: at,
            body,
        };
        store::append(&tx, &event, &at.date_naive().to_string(), &codec).unwrap();
    }
    tx.commit().unwrap();
}
