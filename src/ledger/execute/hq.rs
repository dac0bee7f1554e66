//! HQ's master data inside a batch: products, prices, members, coupons, staff, stock.

use super::Ctx;
use crate::cache::{CacheError, Pending};
use crate::domain::catalog::StockLevel;
use crate::domain::event::{EventBody, HqCountApplied, StockReason};
use crate::domain::sync::{self, HqUpdate};
use crate::ledger::Outcome;
use crate::ledger::error::LedgerError;

impl Ctx<'_, '_> {
    /// Applies master data from HQ to the cache by per-item version (no journal event, but for
    /// stock counts, which are movements of the store's books).
    pub(super) fn apply_hq(&mut self, update: HqUpdate) -> Result<Outcome, LedgerError> {
        let mut tally = (0, 0);
        let mut rules_out = None;
        let mut removed_staff = Vec::new();
        let mut unknown_products = Vec::new();
        let mut erased_by_hq = Vec::new();
        // HQ's staff changes, for the audit log as an admin's here are.
        let mut staff_audit = Vec::new();
        let mut hq_staff = Vec::new();
        let p = &mut *self.pending;
        match update {
            HqUpdate::Products(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.product(&i.sku),
                sync::merge_product,
                |p, m| {
                    // A price change that came before the product: newer, it applies now.
                    let m = match p.waiting_price(&m.sku)? {
                        Some(w) => {
                            p.put_waiting_price(&m.sku, None);
                            sync::merge_price(Some(&m), &w).unwrap_or(m)
                        }
                        None => m,
                    };
                    p.put_product(m)
                },
            )?,
            HqUpdate::Prices(items) => {
                // A price change for a product not known yet (it overtook the product's first
                // push) waits for the product; HQ is told all the same.
                for i in &items {
                    if p.product(&i.sku)?.is_none() {
                        if p.waiting_price(&i.sku)?
                            .is_none_or(|w| w.version < i.version)
                        {
                            p.put_waiting_price(&i.sku, Some(i.clone()));
                        }
                        if !unknown_products.contains(&i.sku) {
                            unknown_products.push(i.sku.clone());
                        }
                    }
                }
                apply_each(
                    p,
                    items,
                    &mut tally,
                    |p, i| p.product(&i.sku),
                    sync::merge_price,
                    |p, m| {
                        p.put_product_price(m);
                        Ok(())
                    },
                )?
            }
            HqUpdate::Members(items) => {
                // Members HQ erased that the store still holds personal data of.
                for m in items.iter().filter(|m| m.erased_at.is_some()) {
                    if p.member(&m.id)?.is_some_and(|c| c.erased_at.is_none()) {
                        erased_by_hq.push(m.id.clone());
                    }
                }
                apply_each(
                    p,
                    items,
                    &mut tally,
                    |p, i| p.member(&i.id),
                    sync::merge_member,
                    |p, m| p.put_member(m),
                )?
            }
            HqUpdate::Coupons(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.coupon(&i.code),
                sync::merge_coupon,
                |p, m| {
                    p.put_coupon(m);
                    Ok(())
                },
            )?,
            HqUpdate::Staff(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.staff(&i.staff_no),
                sync::merge_staff,
                |p, m| {
                    // Removed, or given another role or PIN: their sessions end, as after an
                    // admin's change here. With no record before, any open session is one of
                    // the config file's staff member HQ now takes over: it ends too.
                    let before = p.staff(&m.staff_no)?;
                    if !m.active
                        || before
                            .as_ref()
                            .is_none_or(|b| b.role != m.role || b.pin_hash != m.pin_hash)
                    {
                        removed_staff.push(m.staff_no.clone());
                    }
                    if let Some(entry) = sync::staff_audit(before.as_ref(), &m) {
                        staff_audit.push(entry);
                    }
                    // What decides who logs in goes into the journal too, or a cache rebuilt
                    // from it while HQ is away brings back the store's last word (a removed
                    // staff member's peppered PIN, an old role).
                    if let Some(copy) = sync::staff_journal_copy(before.as_ref(), &m) {
                        hq_staff.push((copy, m.clone()));
                    }
                    p.put_staff(m);
                    Ok(())
                },
            )?,
            // A count is a journal event (`stock.moved` with `hq_count`), not a cache write
            // alone: the sales and movements after it are counted on top of it, a rebuilt cache
            // gets it back from the journal, and the count sent again after the rebuild's resync
            // is the version already held (it would otherwise undo the sales since).
            HqUpdate::Stock(items) => {
                for item in items {
                    let before = self.pending.stock(&item.sku)?;
                    match sync::merge_stock(before.as_ref(), &item) {
                        Some(counted) => {
                            tally.0 += 1;
                            self.hq_stock_count(before, counted)?;
                        }
                        None => tally.1 += 1,
                    }
                }
            }
            HqUpdate::Rules { version, rules } => {
                if p.rules()?.is_none_or(|(v, _)| version > v) {
                    tally.0 += 1;
                    p.put_rules(version, (*rules).clone());
                    rules_out = Some(rules);
                } else {
                    tally.1 += 1;
                }
            }
        }
        if !self.pending.is_durable() {
            // The ledger opens a durable cache batch for every batch with HQ data.
            return Err(LedgerError::Internal(
                "HQ data in a cache batch that is not fsynced".into(),
            ));
        }
        for (copy, record) in hq_staff {
            // The journal's copy holds no HQ hash (see `sync::staff_journal_copy`); its event
            // projects the copy into the cache, which keeps the record HQ sent.
            self.emit(EventBody::StaffChanged {
                record: copy,
                by: "hq".into(),
            })?;
            self.pending.put_staff(record);
        }
        for (action, staff_no, detail) in staff_audit {
            self.audit(action, &staff_no, detail)?;
        }
        for id in erased_by_hq {
            self.erase_member(&id, "hq".into())?;
            self.audit("member.erase", &id, serde_json::json!({ "by": "hq" }))?;
        }
        Ok(Outcome::Applied {
            applied: tally.0,
            ignored: tally.1,
            rules: rules_out,
            removed_staff,
            unknown_products,
        })
    }

    /// Records HQ's count of a product (merged into the level `before` by
    /// [`sync::merge_stock`]) as the movement that brings the store's books to it.
    fn hq_stock_count(
        &mut self,
        before: Option<StockLevel>,
        counted: StockLevel,
    ) -> Result<(), LedgerError> {
        let before = before.unwrap_or_else(|| StockLevel::empty(&counted.sku));
        self.emit(EventBody::StockMoved {
            movement_id: crate::ids::new_v7().to_string(),
            sku: counted.sku.clone(),
            delta: counted.on_hand.saturating_sub(before.on_hand),
            reason: StockReason::Adjust,
            note: format!("HQ stock count, version {}", counted.version),
            // HQ's, as docs/uplink.md has it, whichever actor carried it in (the uplink's).
            staff_no: "hq".into(),
            on_hand_after: counted.on_hand,
            hq_count: Some(HqCountApplied {
                version: counted.version,
                safety_stock: counted.safety_stock,
            }),
        })?;
        // Below the count's safety stock, and not below the one before: a raised safety
        // stock puts the product below it as surely as units going out.
        self.low_stock_alert(&before, counted.on_hand, counted.safety_stock)
    }

    /// See [`crate::ledger::Command::UpgradePin`].
    pub(super) fn upgrade_pin(
        &mut self,
        staff_no: &str,
        from: &str,
        to: String,
    ) -> Result<Outcome, LedgerError> {
        match self
            .pending
            .staff(staff_no)?
            .filter(|s| s.active && s.pin_hash == from)
        {
            Some(mut record) => {
                record.hq_pin_digest = Some(sync::pin_hash_digest(&record.pin_hash));
                record.pin_hash = to;
                self.put_staff(record, true, false)
            }
            // Changed since the PIN was checked: the change stands.
            None => Ok(Outcome::Done),
        }
    }

    /// An admin's staff change runs only while the admin still is one: a request that passed
    /// the API's checks can reach the ledger after another admin's change removed or demoted
    /// its sender (two admins removing each other at once would otherwise both succeed and
    /// leave the store without an admin). A staff member of the config file has no record
    /// here unless one was made for them, and a config change ends their sessions.
    pub(super) fn actor_still_admin(&self) -> Result<(), LedgerError> {
        match self.pending.staff(&self.actor.staff_no)? {
            Some(me) if !me.active || me.role != crate::domain::access::Role::Admin => {
                Err(LedgerError::conflict(
                    "staff_changed",
                    format!(
                        "staff member {} was removed or given another role meanwhile; log in again",
                        self.actor.staff_no
                    ),
                ))
            }
            _ => Ok(()),
        }
    }

    /// Adds, changes or removes (`active: false`) a staff member at this store. `upgrade`: the
    /// same PIN hashed again at a login ([`crate::ledger::Command::UpgradePin`]), which ends
    /// no session; any other change of PIN, role or activity ends the person's sessions, their
    /// own change of their own PIN too (a leaked PIN's sessions go with it). `pin_given`: an
    /// admin gave the person a PIN, which ends a lock of their number by wrong PINs.
    pub(super) fn put_staff(
        &mut self,
        record: sync::StaffRecord,
        upgrade: bool,
        pin_given: bool,
    ) -> Result<Outcome, LedgerError> {
        let before = self.pending.staff(&record.staff_no)?.filter(|b| b.active);
        let pin_changed = before
            .as_ref()
            .is_none_or(|b| b.pin_hash != record.pin_hash);
        let own_upgrade = upgrade
            && before
                .as_ref()
                .is_some_and(|b| b.role == record.role && b.name == record.name && record.active);
        let action = match (&before, record.active) {
            (_, false) => "staff.remove",
            _ if own_upgrade => "staff.pin_upgrade",
            (Some(_), true) => "staff.change",
            (None, true) => "staff.add",
        };
        let detail = serde_json::json!({
            "role": record.role,
            "role_before": before.as_ref().map(|b| b.role),
            "pin_changed": pin_changed,
        });
        // Removed, given another role or a new PIN by an admin: open sessions end.
        let revoke = !own_upgrade
            && (!record.active
                || pin_changed
                || before.as_ref().is_some_and(|b| b.role != record.role));
        let staff_no = record.staff_no.clone();
        let unlock = pin_given && record.active;
        self.emit(EventBody::StaffChanged {
            record: record.clone(),
            by: self.actor.staff_no.clone(),
        })?;
        self.audit(action, &staff_no, detail)?;
        Ok(Outcome::Staff {
            record: Box::new(record),
            revoke,
            unlock,
        })
    }
}

/// Applies HQ items one after the other (a later item sees an earlier one of the same key),
/// counting into `tally` (changed, ignored).
fn apply_each<T, C>(
    p: &mut Pending<'_>,
    items: Vec<T>,
    tally: &mut (usize, usize),
    current: impl Fn(&Pending<'_>, &T) -> Result<Option<C>, CacheError>,
    merge: impl Fn(Option<&C>, &T) -> Option<C>,
    mut put: impl FnMut(&mut Pending<'_>, C) -> Result<(), CacheError>,
) -> Result<(), CacheError> {
    for item in items {
        match merge(current(p, &item)?.as_ref(), &item) {
            Some(m) => {
                tally.0 += 1;
                put(p, m)?;
            }
            None => tally.1 += 1,
        }
    }
    Ok(())
}
