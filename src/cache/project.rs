//! Projections: how each journal event changes the cache. Used by the live write path and by
//! the replay at start-up, so both produce the same cache.
//!
//! Idempotent: every entity remembers the last `seq` applied to it and an event at or below it
//! only refreshes index entries. Events carry decisions (points earned, level after), so the
//! projections never consult the rules.

use super::{CacheError, Pending};
use crate::domain::adjustment::apply_adjustment;
use crate::domain::catalog::{Coupon, CouponKind, CouponUse, StockLevel};
use crate::domain::event::{Event, EventBody, HqCountApplied};
use crate::domain::member::Member;
use crate::domain::refund::apply_refund;
use crate::domain::sale::apply_sale;

/// Applies one event to the pending cache.
pub fn project(p: &mut Pending<'_>, e: &Event) -> Result<(), CacheError> {
    let seq = e.seq;
    match &e.body {
        EventBody::MemberRegistered(r) => {
            let existing = p.member(&r.member_id)?;
            match existing {
                Some(m) if m.seq >= seq => p.reindex_member(&m),
                existing => {
                    let mut m = existing.unwrap_or_else(|| stub_member(&r.member_id, e));
                    if m.erased_at.is_none() {
                        m.profile = r.profile.clone();
                    }
                    m.tags = r.tags.clone();
                    m.consent = r.consent.clone();
                    m.created_at = r.created_at;
                    m.created_store = r.store_id.clone();
                    m.seq = seq;
                    p.put_member(m)?;
                }
            }
        }
        EventBody::MemberUpdated(u) => {
            with_member(p, &u.member_id, e, |m| {
                if m.erased_at.is_none() {
                    m.profile = u.profile.clone();
                }
                m.tags = u.tags.clone();
                m.consent = u.consent.clone();
            })?;
        }
        EventBody::MemberErased { member_id, .. } => {
            with_member(p, member_id, e, |m| {
                m.profile = None;
                // Tags are free text a cashier wrote about the person ("孕妇"): they go too.
                m.tags.clear();
                m.erased_at = Some(e.occurred_at);
            })?;
            // What the member said is about the person too (uplink.md: "the text is what the
            // customer said and may hold personal data"), and so are the staff's notes on it.
            for mut f in p.feedback_of_member(member_id)? {
                let mut changed = !f.text.is_empty();
                f.text.clear();
                for n in &mut f.notes {
                    changed |= !n.note.is_empty();
                    n.note.clear();
                }
                if changed {
                    p.put_feedback(f);
                }
            }
        }
        EventBody::SaleRecorded(sale) => {
            if let Some(id) = &sale.member_id {
                with_member(p, id, e, |m| apply_sale(m, sale))?;
            }
            for line in &sale.lines {
                move_stock(p, &line.sku, -i64::from(line.qty), e)?;
            }
            for applied in &sale.coupons {
                // A coupon the cache does not hold (one of HQ's, in a cache rebuilt from the
                // journal) is kept as used all the same: HQ's next push of it merges into this
                // and stays used, instead of arriving as new and unused.
                let mut c = p
                    .coupon(&applied.code)?
                    .unwrap_or_else(|| used_coupon_stub(&applied.code, applied.discount));
                if c.seq < seq {
                    c.used = Some(CouponUse {
                        sale_id: sale.id.clone(),
                        store_id: sale.store_id.clone(),
                        at: sale.created_at,
                    });
                    c.seq = seq;
                    p.put_coupon(c);
                }
            }
        }
        EventBody::PointsAdjusted(a) => {
            with_member(p, &a.member_id, e, |m| apply_adjustment(m, a))?;
        }
        EventBody::SaleRefunded(refund) => {
            if let Some(id) = &refund.member_id {
                with_member(p, id, e, |m| apply_refund(m, refund))?;
            }
            if refund.restock {
                for line in &refund.lines {
                    move_stock(p, &line.sku, i64::from(line.qty), e)?;
                }
            }
        }
        EventBody::StockMoved {
            sku,
            delta,
            hq_count,
            on_hand_after,
            ..
        } => match hq_count {
            // HQ's count is absolute: the level it set, whatever the cache held before (a
            // cache rebuilt after an upgrade lacks the counts storebox kept in the cache alone).
            Some(count) => count_stock(p, sku, *on_hand_after, count, e)?,
            None => move_stock(p, sku, *delta, e)?,
        },
        EventBody::CouponIssued(c) => {
            let current = p.coupon(&c.code)?;
            if current
                .as_ref()
                .is_none_or(|cur| cur.seq < seq && cur.used.is_none())
            {
                let mut c = (**c).clone();
                c.seq = seq;
                p.put_coupon(c);
            }
        }
        EventBody::ProductUpdated {
            product,
            safety_stock,
            ..
        } => {
            let current = p.product(&product.sku)?;
            if current.as_ref().is_none_or(|cur| cur.seq < seq) {
                let mut prod = (**product).clone();
                prod.seq = seq;
                p.put_product(prod)?;
            }
            if let Some(safety) = safety_stock {
                // No level yet: no units ever went in or out (each journal event that moves
                // them makes one), so the product waits for its first delivery.
                let mut level = p.stock(&product.sku)?.unwrap_or_else(|| StockLevel {
                    awaiting_delivery: true,
                    ..StockLevel::empty(&product.sku)
                });
                if level.seq < seq {
                    level.safety_stock = *safety;
                    level.seq = seq;
                    level.updated_at = Some(e.occurred_at);
                    p.put_stock(level);
                }
            }
        }
        // Facts for HQ that the cache already reflects through the events above.
        EventBody::LevelChanged { .. }
        | EventBody::CouponRedeemed { .. }
        | EventBody::StockLow { .. }
        | EventBody::DeviceAlert(_)
        | EventBody::SyncRequested { .. }
        | EventBody::AuditRecorded(_)
        | EventBody::JournalRestored { .. }
        | EventBody::MemberBirthday { .. } => {}
        EventBody::MemberAtRisk {
            occasion,
            coupon_code,
            ..
        } => {
            // Events before the occasion field was added always carried a coupon, whose
            // code is the occasion's.
            if let Some(code) = occasion.as_ref().or(coupon_code.as_ref()) {
                p.put_occasion(code);
            }
        }
        EventBody::CampaignStarted(c) => p.put_campaign((**c).clone()),
        EventBody::FeedbackReceived(f) => {
            if p.feedback(&f.id)?.is_none() {
                p.put_feedback((**f).clone());
            }
        }
        EventBody::FeedbackUpdated { id, note } => {
            if let Some(mut f) = p.feedback(id)?
                && !f.notes.contains(note)
            {
                f.status = note.status;
                f.updated_at = note.at;
                f.notes.push(note.clone());
                p.put_feedback(f);
            }
        }
        EventBody::StaffChanged { record, .. } => {
            // A local change is the newest word until HQ sends a higher version.
            let stale = p
                .staff(&record.staff_no)?
                .is_some_and(|s| s.version > record.version);
            if !stale {
                p.put_staff(record.clone());
            }
        }
    }
    p.set_applied(seq);
    Ok(())
}

/// A member known only by id: a sale for a member whose record has not reached this cache yet
/// (cache rebuilt before HQ resent it). HQ's copy merges into it later.
/// What the cache knows of a coupon it only saw used: its code and what it took off. HQ's
/// version of it (any version above 0) replaces all but the use.
fn used_coupon_stub(code: &str, discount: crate::domain::money::Money) -> Coupon {
    Coupon {
        code: code.to_string(),
        title: String::new(),
        kind: CouponKind::AmountOff {
            threshold: 0,
            amount: discount,
        },
        valid_from: None,
        valid_to: None,
        member_id: None,
        combinable_with_level: true,
        stackable: false,
        used: None,
        version: 0,
        seq: 0,
    }
}

fn stub_member(id: &str, e: &Event) -> Member {
    Member {
        id: id.to_string(),
        profile: None,
        tags: Vec::new(),
        consent: Default::default(),
        level: None,
        created_at: e.occurred_at,
        created_store: String::new(),
        counters: Default::default(),
        version: 0,
        seq: 0,
        erased_at: None,
    }
}

fn with_member(
    p: &mut Pending<'_>,
    id: &str,
    e: &Event,
    f: impl FnOnce(&mut Member),
) -> Result<(), CacheError> {
    let mut m = p.member(id)?.unwrap_or_else(|| stub_member(id, e));
    if m.seq >= e.seq {
        p.reindex_member(&m);
        return Ok(());
    }
    f(&mut m);
    m.seq = e.seq;
    p.put_member(m)
}

fn count_stock(
    p: &mut Pending<'_>,
    sku: &str,
    on_hand: i64,
    count: &HqCountApplied,
    e: &Event,
) -> Result<(), CacheError> {
    let mut level = p.stock(sku)?.unwrap_or_else(|| StockLevel::empty(sku));
    if level.seq >= e.seq {
        return Ok(());
    }
    level.on_hand = on_hand;
    level.awaiting_delivery = false;
    level.version = level.version.max(count.version);
    level.safety_stock = count.safety_stock;
    level.seq = e.seq;
    level.updated_at = Some(e.occurred_at);
    p.put_stock(level);
    Ok(())
}

fn move_stock(p: &mut Pending<'_>, sku: &str, delta: i64, e: &Event) -> Result<(), CacheError> {
    let mut level = p.stock(sku)?.unwrap_or_else(|| StockLevel::empty(sku));
    if level.seq >= e.seq {
        return Ok(());
    }
    level.on_hand = level.on_hand.saturating_add(delta);
    level.awaiting_delivery = false;
    level.seq = e.seq;
    level.updated_at = Some(e.occurred_at);
    p.put_stock(level);
    Ok(())
}
