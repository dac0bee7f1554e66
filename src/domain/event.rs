//! Store facts: what the journal records and the uplink sends to HQ (design sections 1 and 5).
//!
//! An event's `data` carries decisions, not inputs: a sale records the points it earned and the
//! level it left the member at, so replaying the journal under changed rules rebuilds exactly the
//! same caches.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::catalog::{Coupon, Product};
use super::member::{Consent, LevelRef, Profile};
use super::money::Money;
use super::refund::Refund;
use super::sale::Sale;

/// Why stock moved (other than by a sale or refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockReason {
    /// Goods received from a supplier or the warehouse (delta > 0).
    Receive,
    /// Stocktake correction (either sign).
    Adjust,
    /// Damaged, expired or stolen goods written off (delta < 0).
    Damage,
    /// Transfer to (delta < 0) or from (delta > 0) another store.
    Transfer,
}

impl StockReason {
    /// Whether `delta` has the sign this reason demands.
    pub fn accepts(self, delta: i64) -> bool {
        match self {
            StockReason::Receive => delta > 0,
            StockReason::Damage => delta < 0,
            StockReason::Adjust | StockReason::Transfer => delta != 0,
        }
    }
}

/// A member as registered (the data of `member.registered`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRegistered {
    /// New member id.
    pub member_id: String,
    /// Personal data (sealed by the codec at rest; `None` once erased).
    pub profile: Option<Profile>,
    /// Tags.
    pub tags: Vec<String>,
    /// Consent.
    pub consent: Consent,
    /// Registering store.
    pub store_id: String,
    /// Staff who registered the member (for staff reports).
    pub staff_no: String,
    /// Store-local time.
    pub created_at: DateTime<FixedOffset>,
}

/// A profile edit (the data of `member.updated`): the whole profile after the edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberUpdated {
    /// Member.
    pub member_id: String,
    /// Profile after the edit (sealed at rest).
    pub profile: Option<Profile>,
    /// Tags after the edit.
    pub tags: Vec<String>,
    /// Consent after the edit.
    pub consent: Consent,
    /// Names of the fields that changed.
    pub fields: Vec<String>,
    /// Staff who edited.
    pub staff_no: String,
}

/// An alert for HQ and the store manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Where it comes from: `uplink`, or a device id.
    pub source: String,
    /// Stable reason code (`event_too_large`, `malformed_downlink`, `outbox_backlog`,
    /// `offline`, `paper_out`...).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// Machine-readable detail (seq and size of an event too big to send, the topic of a bad
    /// message...).
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// HQ's stock count, as a `stock.moved` event records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HqCountApplied {
    /// The count's version (HQ's per-item version).
    pub version: u64,
    /// The product's safety stock after the count.
    pub safety_stock: i64,
}

/// The body of an event: its kind and data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum EventBody {
    /// A sale was recorded.
    #[serde(rename = "sale.recorded")]
    SaleRecorded(Box<Sale>),
    /// A sale was refunded (whole or part).
    #[serde(rename = "sale.refunded")]
    SaleRefunded(Box<Refund>),
    /// A member registered at this store.
    #[serde(rename = "member.registered")]
    MemberRegistered(MemberRegistered),
    /// A member's profile was edited here.
    #[serde(rename = "member.updated")]
    MemberUpdated(MemberUpdated),
    /// A member's personal data was erased (PIPL); counters stay, anonymous.
    #[serde(rename = "member.erased")]
    MemberErased {
        /// Member.
        member_id: String,
        /// Staff who erased (or `hq`).
        staff_no: String,
    },
    /// A manager adjusted a member's points by hand (goodwill credit, correction).
    #[serde(rename = "points.adjusted")]
    PointsAdjusted(Box<super::adjustment::PointsAdjusted>),
    /// A member's level changed (after a sale or refund).
    #[serde(rename = "level.changed")]
    LevelChanged {
        /// Member.
        member_id: String,
        /// Level before.
        from: Option<LevelRef>,
        /// Level after.
        to: Option<LevelRef>,
        /// Spend that decided it.
        total_spend: Money,
        /// The sale or refund that caused it.
        cause_id: String,
    },
    /// A coupon was used on a sale.
    #[serde(rename = "coupon.redeemed")]
    CouponRedeemed {
        /// Coupon code.
        code: String,
        /// Sale.
        sale_id: String,
        /// Member, if any.
        member_id: Option<String>,
        /// Discount the coupon gave.
        discount: Money,
    },
    /// The store issued a coupon (manager or automation).
    #[serde(rename = "coupon.issued")]
    CouponIssued(Box<Coupon>),
    /// Stock moved by hand (receipt, stocktake, damage, transfer).
    #[serde(rename = "stock.moved")]
    StockMoved {
        /// Movement id.
        movement_id: String,
        /// Product.
        sku: String,
        /// Units in (positive) or out (negative).
        delta: i64,
        /// Why.
        reason: StockReason,
        /// Free text.
        note: String,
        /// Staff.
        staff_no: String,
        /// Level after the movement.
        on_hand_after: i64,
        /// Set when the movement is HQ's stock count taking effect (`on_hand_after` is the
        /// count, `delta` what the store's books were off by): the count's version and the
        /// safety stock after it, so that a cache rebuilt from the journal holds the count,
        /// and HQ's count sent again is recognised, instead of the count being lost or
        /// undoing the sales made since.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hq_count: Option<HqCountApplied>,
    },
    /// A product fell below its safety stock.
    #[serde(rename = "stock.low")]
    StockLow {
        /// Product.
        sku: String,
        /// Units on hand.
        on_hand: i64,
        /// Safety stock.
        safety_stock: i64,
    },
    /// Something needs attention: a device went offline, an event was too big to send, a
    /// downlink message was malformed, the outbox is backing up.
    #[serde(rename = "device.alert")]
    DeviceAlert(Alert),
    /// The store asks HQ for a full snapshot of its master data (after a `resync` command or a
    /// rebuilt cache).
    #[serde(rename = "sync.requested")]
    SyncRequested {
        /// Why (`hq_command`, `cache_rebuilt`).
        reason: String,
    },
    /// A product was edited locally (HQ normally owns products).
    #[serde(rename = "product.updated")]
    ProductUpdated {
        /// The product after the edit.
        product: Box<Product>,
        /// Safety stock set with it, if any.
        safety_stock: Option<i64>,
        /// Staff.
        staff_no: String,
    },
    /// A sensitive action was recorded in the audit chain.
    #[serde(rename = "audit.recorded")]
    AuditRecorded(crate::domain::audit::AuditEntry),
    /// An admin added, changed or removed a staff member at this store. The PIN travels only
    /// as its argon2id hash, peppered with the store key.
    #[serde(rename = "staff.changed")]
    StaffChanged {
        /// The staff record after the change (`active: false` when removed).
        record: crate::domain::sync::StaffRecord,
        /// The admin who changed it.
        by: String,
    },
    /// A member's birthday is coming up (or is today) and their birthday coupon was issued;
    /// HQ sends the greeting (SMS / WeChat) to those with marketing consent.
    #[serde(rename = "member.birthday")]
    MemberBirthday {
        /// Member.
        member_id: String,
        /// The birthday's year.
        year: i32,
        /// The coupon issued.
        coupon_code: String,
        /// Whether the member agreed to marketing messages.
        marketing_consent: bool,
    },
    /// A member was flagged as drifting away (and given a win-back coupon, if configured).
    #[serde(rename = "member.at_risk")]
    MemberAtRisk {
        /// Member.
        member_id: String,
        /// Why, as shown at the till.
        reason: String,
        /// The coupon issued, if any.
        coupon_code: Option<String>,
        /// Whether the member agreed to marketing messages.
        marketing_consent: bool,
        /// The occasion's code (`WB2609-…`, the same as a win-back coupon's would be): the
        /// member is flagged once per occasion. Absent in events of storebox before 0.1 of
        /// issue 6's follow-up, whose occasion is their coupon's code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        occasion: Option<String>,
    },
    /// A campaign started: who was targeted and who was held out as the control group.
    #[serde(rename = "campaign.started")]
    CampaignStarted(Box<crate::domain::campaign::Campaign>),
    /// A customer's feedback or complaint was recorded.
    #[serde(rename = "feedback.received")]
    FeedbackReceived(Box<crate::domain::feedback::Feedback>),
    /// A feedback item was followed up (status and note).
    #[serde(rename = "feedback.updated")]
    FeedbackUpdated {
        /// Item.
        id: String,
        /// The note added, with the status it set.
        note: crate::domain::feedback::FeedbackNote,
    },
    /// The store's data was restored from a backup. Events after `backup_last_seq` up to
    /// `hq_last_seq` were lost on the box (HQ has them); numbering goes on after HQ's.
    #[serde(rename = "journal.restored")]
    JournalRestored {
        /// The last `seq` in the backup.
        backup_last_seq: u64,
        /// The last `seq` HQ had received, as the operator gave it.
        hq_last_seq: u64,
        /// When the backup was taken (RFC 3339).
        backup_created_at: String,
    },
}

impl EventBody {
    /// Every kind this storebox knows ([`EventBody::kind`] of each variant). A journal row of
    /// another kind was written by a newer storebox.
    pub const KINDS: [&'static str; 22] = [
        "sale.recorded",
        "sale.refunded",
        "member.registered",
        "member.updated",
        "member.erased",
        "points.adjusted",
        "level.changed",
        "coupon.redeemed",
        "coupon.issued",
        "stock.moved",
        "stock.low",
        "device.alert",
        "sync.requested",
        "product.updated",
        "audit.recorded",
        "staff.changed",
        "journal.restored",
        "feedback.received",
        "member.birthday",
        "member.at_risk",
        "campaign.started",
        "feedback.updated",
    ];

    /// The event kind as it appears in the journal and the MQTT topic (`sale.recorded`).
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::SaleRecorded(_) => "sale.recorded",
            EventBody::SaleRefunded(_) => "sale.refunded",
            EventBody::MemberRegistered(_) => "member.registered",
            EventBody::MemberUpdated(_) => "member.updated",
            EventBody::MemberErased { .. } => "member.erased",
            EventBody::PointsAdjusted(_) => "points.adjusted",
            EventBody::LevelChanged { .. } => "level.changed",
            EventBody::CouponRedeemed { .. } => "coupon.redeemed",
            EventBody::CouponIssued(_) => "coupon.issued",
            EventBody::StockMoved { .. } => "stock.moved",
            EventBody::StockLow { .. } => "stock.low",
            EventBody::DeviceAlert(_) => "device.alert",
            EventBody::SyncRequested { .. } => "sync.requested",
            EventBody::ProductUpdated { .. } => "product.updated",
            EventBody::AuditRecorded(_) => "audit.recorded",
            EventBody::StaffChanged { .. } => "staff.changed",
            EventBody::JournalRestored { .. } => "journal.restored",
            EventBody::FeedbackReceived(_) => "feedback.received",
            EventBody::MemberBirthday { .. } => "member.birthday",
            EventBody::MemberAtRisk { .. } => "member.at_risk",
            EventBody::CampaignStarted(_) => "campaign.started",
            EventBody::FeedbackUpdated { .. } => "feedback.updated",
        }
    }

    /// What the event is about, for lookups in the journal (sale id, member id, sku, code).
    pub fn subject(&self) -> String {
        match self {
            EventBody::SaleRecorded(s) => s.id.clone(),
            EventBody::SaleRefunded(r) => r.sale_id.clone(),
            EventBody::MemberRegistered(m) => m.member_id.clone(),
            EventBody::MemberUpdated(m) => m.member_id.clone(),
            EventBody::MemberErased { member_id, .. } => member_id.clone(),
            EventBody::PointsAdjusted(a) => a.member_id.clone(),
            EventBody::LevelChanged { member_id, .. } => member_id.clone(),
            EventBody::CouponRedeemed { code, .. } => code.clone(),
            EventBody::CouponIssued(c) => c.code.clone(),
            EventBody::StockMoved { sku, .. } => sku.clone(),
            EventBody::StockLow { sku, .. } => sku.clone(),
            EventBody::DeviceAlert(a) => a.source.clone(),
            EventBody::SyncRequested { .. } => "sync".into(),
            EventBody::ProductUpdated { product, .. } => product.sku.clone(),
            EventBody::AuditRecorded(a) => format!("audit:{}", a.n),
            EventBody::StaffChanged { record, .. } => record.staff_no.clone(),
            EventBody::JournalRestored { .. } => "restore".into(),
            EventBody::FeedbackReceived(f) => f.id.clone(),
            EventBody::MemberBirthday { member_id, .. } => member_id.clone(),
            EventBody::MemberAtRisk { member_id, .. } => member_id.clone(),
            EventBody::CampaignStarted(c) => c.spec.id.clone(),
            EventBody::FeedbackUpdated { id, .. } => id.clone(),
        }
    }
}

/// An event as stored: envelope plus body. Serialises to the MQTT payload of design section 5:
/// `{"id", "store_id", "seq", "kind", "occurred_at", "data"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7, never reused.
    pub id: String,
    /// The store.
    pub store_id: String,
    /// Gap-free journal sequence number.
    pub seq: u64,
    /// Store-local time.
    #[serde(with = "crate::domain::timestamp::serde")]
    pub occurred_at: DateTime<FixedOffset>,
    /// Kind and data.
    #[serde(flatten)]
    pub body: EventBody,
}

#[cfg(test)]
mod tests {
    use super::EventBody;

    /// `KINDS` is the list serde knows: a variant added without its kind there would be taken
    /// for a newer storebox's.
    #[test]
    fn kinds_are_every_variant() {
        let e =
            serde_json::from_value::<EventBody>(serde_json::json!({"kind": "no.such", "data": {}}))
                .unwrap_err()
                .to_string();
        let expected = e
            .split_once("expected one of ")
            .map(|(_, l)| l)
            .unwrap_or_else(|| panic!("{e}"));
        let mut serde_kinds: Vec<&str> = expected
            .split(", ")
            .map(|k| k.trim_matches(|c: char| c == '`' || c.is_whitespace()))
            .map(|k| k.split('`').next().unwrap_or(k))
            .collect();
        let mut kinds = EventBody::KINDS.to_vec();
        serde_kinds.sort_unstable();
        kinds.sort_unstable();
        assert_eq!(kinds, serde_kinds);
    }
}
