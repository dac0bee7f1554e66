//! Master data from HQ (design section 5, "Down"): what an update is, and the rules that decide
//! whether it replaces what the store holds. Every item carries its own monotonically increasing
//! `version`; an item not newer than the cached one is ignored, so redelivery and reordering are
//! harmless. Member counters merge by per-store maximum whatever the version. Unknown fields in
//! HQ's items are ignored, so HQ can add fields before every store is upgraded.

use serde::{Deserialize, Serialize};

use super::access::Role;
use super::catalog::{Coupon, Product, Promo, StockLevel};
use super::member::Member;
use super::money::Money;
use super::rules::Rules;

/// A price change for an existing product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceUpdate {
    /// Product.
    pub sku: String,
    /// New regular price.
    pub price: Money,
    /// New promotion (none when absent).
    #[serde(default)]
    pub promo: Option<Promo>,
    /// HQ's version of the product.
    pub version: u64,
}

/// A stock count from HQ (absolute: after a stocktake or a delivery booked centrally).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCount {
    /// Product.
    pub sku: String,
    /// Units on hand.
    pub on_hand: i64,
    /// Safety stock.
    #[serde(default)]
    pub safety_stock: Option<i64>,
    /// HQ's version of this count.
    pub version: u64,
}

/// A staff member managed by HQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffRecord {
    /// Staff number.
    pub staff_no: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// argon2id hash of the PIN (HQ never sends PINs).
    pub pin_hash: String,
    /// Whether the staff member may log in (false removes them).
    #[serde(default = "yes")]
    pub active: bool,
    /// HQ's version.
    pub version: u64,
    /// The digest ([`pin_hash_digest`]) of the hash HQ sent that `pin_hash` replaced with a
    /// peppered one at a login here: HQ sending that hash again (with a newer version, for a
    /// new name say) is the same PIN, and the peppered hash and the staff member's sessions
    /// stay. Set by the store only. A digest, not the hash: an unpeppered hash kept in the
    /// cache and the journal could be tried against every 4–8-digit PIN offline; its SHA-256
    /// hides the salt that needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hq_pin_digest: Option<String>,
}

/// The digest of an HQ PIN hash kept in [`StaffRecord::hq_pin_digest`]: `sha256:` and the hex
/// SHA-256 of the PHC string.
pub fn pin_hash_digest(hash: &str) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(hash.as_bytes()))
    )
}

fn yes() -> bool {
    true
}

/// One applied HQ message, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum HqUpdate {
    /// `products`: whole products.
    Products(Vec<Product>),
    /// `prices`: price changes.
    Prices(Vec<PriceUpdate>),
    /// `members`: members with their counters from every store.
    Members(Vec<Member>),
    /// `rules`: the membership rules.
    Rules {
        /// HQ's version of the rules.
        version: u64,
        /// The rules.
        rules: Box<Rules>,
    },
    /// `coupons`.
    Coupons(Vec<Coupon>),
    /// `staff`.
    Staff(Vec<StaffRecord>),
    /// `stock`.
    Stock(Vec<StockCount>),
}

impl HqUpdate {
    /// Number of items carried.
    pub fn len(&self) -> usize {
        match self {
            HqUpdate::Products(v) => v.len(),
            HqUpdate::Prices(v) => v.len(),
            HqUpdate::Members(v) => v.len(),
            HqUpdate::Rules { .. } => 1,
            HqUpdate::Coupons(v) => v.len(),
            HqUpdate::Staff(v) => v.len(),
            HqUpdate::Stock(v) => v.len(),
        }
    }

    /// Whether no items are carried.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The update cut, in order, into updates of at most `n` items (at least one update; the
    /// rules are one item), each copied when its turn comes: a message of 15,000 members holds
    /// some 35 MB, and a copy of it all beside it doubled that.
    pub fn parts(&self, n: usize) -> impl Iterator<Item = HqUpdate> + Send + '_ {
        fn cut<T: Clone + Sync>(
            items: &[T],
            n: usize,
            kind: fn(Vec<T>) -> HqUpdate,
        ) -> Box<dyn Iterator<Item = HqUpdate> + Send + '_> {
            if items.is_empty() {
                return Box::new(std::iter::once(kind(Vec::new())));
            }
            Box::new(items.chunks(n.max(1)).map(move |c| kind(c.to_vec())))
        }
        match self {
            HqUpdate::Products(v) => cut(v, n, HqUpdate::Products),
            HqUpdate::Prices(v) => cut(v, n, HqUpdate::Prices),
            HqUpdate::Members(v) => cut(v, n, HqUpdate::Members),
            HqUpdate::Coupons(v) => cut(v, n, HqUpdate::Coupons),
            HqUpdate::Staff(v) => cut(v, n, HqUpdate::Staff),
            HqUpdate::Stock(v) => cut(v, n, HqUpdate::Stock),
            rules @ HqUpdate::Rules { .. } => Box::new(std::iter::once(rules.clone())),
        }
    }
}

/// A product from HQ against the cached one: `Some(new)` when it is newer. The local `seq`
/// survives so journal replays stay idempotent.
pub fn merge_product(current: Option<&Product>, incoming: &Product) -> Option<Product> {
    match current {
        Some(c) if c.version >= incoming.version => None,
        Some(c) => Some(Product {
            seq: c.seq,
            ..incoming.clone()
        }),
        None => Some(incoming.clone()),
    }
}

/// A price change against the cached product (ignored for an unknown product).
pub fn merge_price(current: Option<&Product>, incoming: &PriceUpdate) -> Option<Product> {
    let c = current?;
    (incoming.version > c.version).then(|| Product {
        price: incoming.price,
        promo: incoming.promo.clone(),
        version: incoming.version,
        ..c.clone()
    })
}

/// A member from HQ: counters always merge (per-store maximum); profile, tags and consent
/// follow the newer version; an erasure is never undone. `None` when nothing changed.
pub fn merge_member(current: Option<&Member>, incoming: &Member) -> Option<Member> {
    match current {
        None => Some(incoming.clone()),
        Some(c) => {
            let mut m = c.clone();
            m.merge_from(incoming);
            (m != *c).then_some(m)
        }
    }
}

/// A coupon from HQ: replaces an older one, but a coupon used anywhere stays used.
pub fn merge_coupon(current: Option<&Coupon>, incoming: &Coupon) -> Option<Coupon> {
    match current {
        None => Some(incoming.clone()),
        Some(c) => {
            let mut out = if incoming.version > c.version {
                Coupon {
                    seq: c.seq,
                    ..incoming.clone()
                }
            } else {
                c.clone()
            };
            out.used = c.used.clone().or_else(|| incoming.used.clone());
            (out != *c).then_some(out)
        }
    }
}

/// A stock count from HQ against the cached level.
pub fn merge_stock(current: Option<&StockLevel>, incoming: &StockCount) -> Option<StockLevel> {
    match current {
        Some(c) if c.version >= incoming.version => None,
        _ => {
            let base = current
                .cloned()
                .unwrap_or_else(|| StockLevel::empty(&incoming.sku));
            Some(StockLevel {
                on_hand: incoming.on_hand,
                safety_stock: incoming.safety_stock.unwrap_or(base.safety_stock),
                version: incoming.version,
                ..base
            })
        }
    }
}

/// Whether `current` is the journal's copy of HQ's record (see [`staff_journal_copy`]) still
/// waiting for HQ's PIN hash: a cache rebuilt from the journal holds it until HQ sends the
/// same version again.
fn waits_for_hq_pin(current: &StaffRecord) -> bool {
    current.active && current.pin_hash.is_empty()
}

/// Whether `merged` only fills in HQ's PIN hash for the journal's copy `before` (the same
/// version, sent again after a rebuild): neither journaled nor audited again.
fn fills_in_hq_pin(before: &StaffRecord, merged: &StaffRecord) -> bool {
    waits_for_hq_pin(before) && before.version == merged.version
}

/// A staff record from HQ against the cached one.
pub fn merge_staff(current: Option<&StaffRecord>, incoming: &StaffRecord) -> Option<StaffRecord> {
    match current {
        Some(c) if c.version > incoming.version => None,
        Some(c) if c.version == incoming.version && !waits_for_hq_pin(c) => None,
        _ => {
            let mut merged = incoming.clone();
            merged.hq_pin_digest = None;
            // HQ's hash that a login here peppered, or the peppered hash sent back: the same
            // PIN, whose peppered hash stays.
            if let Some(c) = current
                && !c.pin_hash.is_empty()
                && (c.hq_pin_digest.as_deref()
                    == Some(pin_hash_digest(&incoming.pin_hash).as_str())
                    || c.pin_hash == incoming.pin_hash)
            {
                merged.pin_hash = c.pin_hash.clone();
                merged.hq_pin_digest = c.hq_pin_digest.clone();
            }
            Some(merged)
        }
    }
}

/// The journal's copy of HQ's staff record `merged` applied over `before` (`None`: nothing to
/// journal): journaled when it changes who may log in — a removal, another role or PIN, a
/// staff member new here — so that a cache rebuilt from the journal does not bring back the
/// store's last word. HQ's own hash is left out (it could be tried against every PIN offline;
/// its digest stays): the copy's PIN hash is the store's peppered one when the PIN is the one
/// a login here peppered, else empty, which lets nobody in until HQ sends the record again.
/// Not journaled: a rename alone, and HQ's hash filling in a record waiting for it.
pub fn staff_journal_copy(
    before: Option<&StaffRecord>,
    merged: &StaffRecord,
) -> Option<StaffRecord> {
    let changes_access = match before {
        None => true,
        Some(b) if fills_in_hq_pin(b, merged) => false,
        Some(b) => {
            b.active != merged.active || b.role != merged.role || b.pin_hash != merged.pin_hash
        }
    };
    if !changes_access {
        return None;
    }
    let mut copy = merged.clone();
    if copy.hq_pin_digest.is_none() || !copy.active {
        copy.hq_pin_digest = (!copy.pin_hash.is_empty()).then(|| pin_hash_digest(&copy.pin_hash));
        copy.pin_hash = String::new();
    }
    Some(copy)
}

/// The audit entry for HQ's staff record `merged` applied over `before` (action, staff number,
/// detail), as an admin's change here has one; `None` when only the version moved (a resync
/// sending what the store holds).
pub fn staff_audit(
    before: Option<&StaffRecord>,
    merged: &StaffRecord,
) -> Option<(&'static str, String, serde_json::Value)> {
    if before.is_some_and(|b| fills_in_hq_pin(b, merged)) {
        return None;
    }
    // Removed already: nothing more to say. (No record at all may be the config file's staff
    // member, whom HQ takes over.)
    if !merged.active && before.is_some_and(|b| !b.active) {
        return None;
    }
    let before = before.filter(|b| b.active);
    let pin_changed = before.is_none_or(|b| b.pin_hash != merged.pin_hash);
    if before.is_some_and(|b| b.name == merged.name && b.role == merged.role && !pin_changed)
        && merged.active
    {
        return None;
    }
    let action = match (before, merged.active) {
        (_, false) => "staff.remove",
        (Some(_), true) => "staff.change",
        (None, true) => "staff.add",
    };
    Some((
        action,
        merged.staff_no.clone(),
        serde_json::json!({
            "by": "hq",
            "version": merged.version,
            "role": merged.role,
            "role_before": before.map(|b| b.role),
            "pin_changed": pin_changed,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pricing::tests::{member, product};

    /// HQ's new PIN goes into the journal without HQ's hash; a cache rebuilt from it lets
    /// nobody in with it until HQ sends the same version again, which then fills it in.
    #[test]
    fn the_journal_s_copy_of_hq_s_record_waits_for_hq_s_hash() {
        let hq = StaffRecord {
            staff_no: "5001".into(),
            name: "周芷若".into(),
            role: crate::domain::access::Role::Manager,
            pin_hash: "hq-1".into(),
            active: true,
            version: 3,
            hq_pin_digest: None,
        };
        let copy = staff_journal_copy(None, &hq).unwrap();
        assert_eq!(copy.pin_hash, "");
        assert_eq!(copy.hq_pin_digest, Some(pin_hash_digest("hq-1")));
        let filled = merge_staff(Some(&copy), &hq).unwrap();
        assert_eq!((filled.pin_hash.as_str(), filled.version), ("hq-1", 3));
        assert_eq!(staff_journal_copy(Some(&copy), &filled), None);
        assert_eq!(staff_audit(Some(&copy), &filled), None);
        // Once filled in, the same version is HQ's echo, ignored; a rename is not journaled.
        assert_eq!(merge_staff(Some(&filled), &hq), None);
        let renamed = StaffRecord {
            name: "周芷若 (店长)".into(),
            version: 4,
            ..hq.clone()
        };
        assert_eq!(staff_journal_copy(Some(&filled), &renamed), None);
    }

    #[test]
    fn hq_sending_the_hash_a_login_peppered_keeps_the_peppered_one() {
        let record = |pin_hash: &str, version| StaffRecord {
            staff_no: "5001".into(),
            name: "周芷若".into(),
            role: crate::domain::access::Role::Manager,
            pin_hash: pin_hash.into(),
            active: true,
            version,
            hq_pin_digest: None,
        };
        let peppered = StaffRecord {
            hq_pin_digest: Some(pin_hash_digest("hq-1")),
            ..record("peppered", 1)
        };
        let mut renamed = record("hq-1", 2);
        renamed.name = "周芷若 (店长)".into();
        let kept = merge_staff(Some(&peppered), &renamed).unwrap();
        assert_eq!(
            (kept.name.as_str(), kept.pin_hash.as_str(), kept.version),
            ("周芷若 (店长)", "peppered", 2)
        );
        assert_eq!(kept.hq_pin_digest, Some(pin_hash_digest("hq-1")));
        // The peppered hash sent back is the same PIN too.
        let echoed = merge_staff(Some(&peppered), &record("peppered", 2)).unwrap();
        assert_eq!(
            echoed,
            StaffRecord {
                version: 2,
                ..peppered.clone()
            }
        );
        // A new PIN replaces both; HQ cannot set the store's own field.
        let forged = StaffRecord {
            hq_pin_digest: Some(pin_hash_digest("hq-2")),
            ..record("hq-2", 3)
        };
        let new_pin = merge_staff(Some(&peppered), &forged).unwrap();
        assert_eq!(
            (new_pin.pin_hash.as_str(), new_pin.hq_pin_digest),
            ("hq-2", None)
        );
    }

    #[test]
    fn an_update_is_cut_in_order_into_parts_of_at_most_n_items() {
        let stock = |i| StockCount {
            sku: format!("S{i}"),
            on_hand: i,
            safety_stock: None,
            version: 1,
        };
        let update = HqUpdate::Stock((0..5).map(stock).collect());
        let skus: Vec<Vec<String>> = update
            .parts(2)
            .map(|p| match p {
                HqUpdate::Stock(v) => v.into_iter().map(|s| s.sku).collect(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(skus, [vec!["S0", "S1"], vec!["S2", "S3"], vec!["S4"]]);
        assert_eq!(
            HqUpdate::Stock(vec![]).parts(2).collect::<Vec<_>>(),
            [HqUpdate::Stock(vec![])]
        );
        let rules = HqUpdate::Rules {
            version: 1,
            rules: Box::default(),
        };
        assert_eq!(
            rules.parts(2).collect::<Vec<_>>(),
            std::slice::from_ref(&rules)
        );
    }

    #[test]
    fn older_versions_are_ignored() {
        let mut p = product("A", 100);
        p.version = 5;
        let mut old = product("A", 90);
        old.version = 4;
        assert_eq!(merge_product(Some(&p), &old), None);
        assert_eq!(
            merge_product(Some(&p), &p),
            None,
            "redelivery changes nothing"
        );
        let mut new = product("A", 110);
        new.version = 6;
        assert_eq!(merge_product(Some(&p), &new).map(|p| p.price), Some(110));
    }

    #[test]
    fn prices_need_a_known_product() {
        let upd = PriceUpdate {
            sku: "A".into(),
            price: 50,
            promo: None,
            version: 1,
        };
        assert_eq!(merge_price(None, &upd), None);
        let p = product("A", 100);
        assert_eq!(merge_price(Some(&p), &upd).map(|p| p.price), Some(50));
    }

    #[test]
    fn member_counters_merge_whatever_the_version() {
        let here = member(0, 0, None);
        let mut hq = member(0, 0, None);
        hq.version = 0;
        hq.counters
            .entry("sh-002".into())
            .or_default()
            .month_mut("2026-01")
            .spend = 500;
        let merged = merge_member(Some(&here), &hq).unwrap();
        assert_eq!(merged.total_spend(), 500);
        assert_eq!(merge_member(Some(&merged), &hq), None, "idempotent");
    }

    #[test]
    fn used_coupons_stay_used() {
        use crate::domain::catalog::{CouponKind, CouponUse};
        let c = Coupon {
            code: "C".into(),
            title: String::new(),
            kind: CouponKind::AmountOff {
                threshold: 0,
                amount: 100,
            },
            valid_from: None,
            valid_to: None,
            member_id: None,
            combinable_with_level: true,
            stackable: false,
            used: Some(CouponUse {
                sale_id: "s".into(),
                store_id: "sh-001".into(),
                at: crate::domain::pricing::tests::now(),
            }),
            version: 1,
            seq: 3,
        };
        let mut newer = c.clone();
        newer.used = None;
        newer.version = 2;
        newer.title = "new".into();
        let m = merge_coupon(Some(&c), &newer).unwrap();
        assert!(m.used.is_some());
        assert_eq!(m.title, "new");
        assert_eq!(m.seq, 3);
    }
}
