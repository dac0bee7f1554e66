//! Sales and refunds inside a batch.

use super::Ctx;
use crate::domain::catalog::StockLevel;
use crate::domain::event::EventBody;
use crate::domain::member::{LevelRef, Member};
use crate::domain::refund::{Refund, RefundContext, compute_refund};
use crate::domain::rules::Rules;
use crate::domain::sale::{Sale, SaleContext, any_cash, build_sale, settle};
use crate::journal::store;
use crate::ledger::cart::{PricedCart, price_cart};
use crate::ledger::error::LedgerError;
use crate::ledger::requests::{RefundRequest, SaleRequest};
use crate::ledger::{Idem, Outcome};

impl Ctx<'_, '_> {
    pub(super) fn sale(&mut self, req: SaleRequest, idem: Idem) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(Some(&idem))? {
            return match event.body {
                EventBody::SaleRecorded(sale) => Ok(Outcome::Sale {
                    sale,
                    replayed: true,
                    json: None,
                }),
                _ => Err(LedgerError::key_reused()),
            };
        }
        let PricedCart {
            member,
            quote,
            stock_before,
        } = price_cart(&*self.pending, &req, self.settings, self.rules, self.now)?;
        let (paid, change) = settle(quote.total, &req.payments)?;
        let mut sale = build_sale(
            SaleContext {
                id: crate::ids::new_v7().to_string(),
                seq: self.next_seq,
                store_id: self.settings.store_id.clone(),
                now: self.now,
                staff_no: self.actor.staff_no.clone(),
                terminal_id: self.actor.terminal_id.clone(),
            },
            quote,
            req.payments.clone(),
            paid,
            change,
            member.as_ref(),
            self.rules,
        );
        sale.idempotency_key = Some(idem.key.clone());
        let (sale_seq, json) = self.emit_data(EventBody::SaleRecorded(Box::new(sale.clone())))?;
        debug_assert_eq!(sale_seq, sale.seq);
        for c in &sale.coupons {
            self.emit(EventBody::CouponRedeemed {
                code: c.code.clone(),
                sale_id: sale.id.clone(),
                member_id: sale.member_id.clone(),
                discount: c.discount,
            })?;
        }
        // From the level the member held (what HQ last heard): where levels can drop, one that
        // lapsed with the spend window since is a change too, told with the sale that finds it.
        if let (Some(m), Some(after)) = (&member, &sale.member)
            && m.level.as_deref() != after.level.as_ref().map(|l| l.code.as_str())
        {
            self.emit(EventBody::LevelChanged {
                member_id: m.id.clone(),
                from: held_level(m, self.rules),
                to: after.level.clone(),
                total_spend: after.total_spend,
                cause_id: sale.id.clone(),
            })?;
        }
        for (line, level) in sale.lines.iter().zip(stock_before) {
            if let Some(level) = level {
                let on_hand = level.on_hand - i64::from(line.qty);
                self.low_stock_alert(&level, on_hand, level.safety_stock)?;
            }
        }
        self.idem_store(Some(&idem), sale_seq)?;
        // The receipt is queued with the sale: it prints when the printer can, never lost. It
        // opens the drawer for cash as it comes off; a cash sale without a receipt (the
        // customer wants none) still needs the drawer for the change.
        if let Some(device_id) = self.settings.printers.get(&self.actor.terminal_id) {
            let cash = any_cash(&sale.payments);
            let kind = match (req.print, cash) {
                (true, _) => Some("receipt"),
                (false, true) => Some("drawer"),
                (false, false) => None,
            };
            if let Some(kind) = kind {
                store::queue_print(
                    self.conn,
                    device_id,
                    kind,
                    &sale.id,
                    None,
                    &self.now_utc.to_rfc3339(),
                )?;
            }
        }
        Ok(Outcome::Sale {
            sale: Box::new(sale),
            replayed: false,
            json: Some(json),
        })
    }

    /// Emits `stock.low` when a level goes below its safety stock: `before` becomes
    /// `on_hand` units with a safety stock of `safety_stock`.
    pub(super) fn low_stock_alert(
        &mut self,
        before: &StockLevel,
        on_hand: i64,
        safety_stock: i64,
    ) -> Result<(), LedgerError> {
        if before.falls_below_safety(on_hand, safety_stock) {
            self.emit(EventBody::StockLow {
                sku: before.sku.clone(),
                on_hand,
                safety_stock,
            })?;
        }
        Ok(())
    }

    pub(super) fn load_sale(&self, sale_id: &str) -> Result<(Sale, Vec<Refund>), LedgerError> {
        let rows = store::sale_events(self.conn, sale_id)?;
        let mut sale = None;
        let mut refunds = Vec::new();
        for row in rows {
            match row
                .decode(self.conn, &self.settings.store_id, self.codec)?
                .body
            {
                EventBody::SaleRecorded(s) => sale = Some(*s),
                EventBody::SaleRefunded(r) => refunds.push(*r),
                _ => {}
            }
        }
        let sale = sale.ok_or_else(|| {
            LedgerError::not_found("sale_not_found", format!("no sale {sale_id}"))
        })?;
        Ok((sale, refunds))
    }

    pub(super) fn refund(
        &mut self,
        sale_id: &str,
        req: RefundRequest,
        idem: Option<Idem>,
    ) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(idem.as_ref())? {
            return match event.body {
                EventBody::SaleRefunded(refund) => Ok(Outcome::Refund {
                    refund,
                    replayed: true,
                }),
                _ => Err(LedgerError::key_reused()),
            };
        }
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(LedgerError::invalid(
                "invalid_reason",
                "a reason of 1–200 characters is required",
            ));
        }
        let (sale, prior) = self.load_sale(sale_id)?;
        let member = match &sale.member_id {
            Some(id) => self.pending.member(id)?,
            None => None,
        };
        let level_before = member.as_ref().and_then(|m| held_level(m, self.rules));
        let mut refund = compute_refund(
            RefundContext {
                id: crate::ids::new_v7().to_string(),
                seq: self.next_seq,
                store_id: self.settings.store_id.clone(),
                now: self.now,
                staff_no: self.actor.staff_no.clone(),
                terminal_id: self.actor.terminal_id.clone(),
                reason: reason.to_string(),
                restock: req.restock,
            },
            &sale,
            &prior,
            req.lines.as_deref(),
            member.as_ref(),
            self.rules,
        )?;
        refund.idempotency_key = idem.as_ref().map(|i| i.key.clone());
        let seq = self.emit(EventBody::SaleRefunded(Box::new(refund.clone())))?;
        if let (Some(m), Some(after)) = (&member, &refund.member)
            && after.level.as_ref().map(|l| &l.code) != level_before.as_ref().map(|l| &l.code)
        {
            self.emit(EventBody::LevelChanged {
                member_id: m.id.clone(),
                from: level_before,
                to: after.level.clone(),
                total_spend: after.total_spend,
                cause_id: refund.id.clone(),
            })?;
        }
        self.audit(
            "sale.refund",
            &refund.sale_id,
            serde_json::json!({
                "refund_id": refund.id,
                "amount": refund.amount,
                "restock": refund.restock,
            }),
        )?;
        self.idem_store(idem.as_ref(), seq)?;
        // The slip is queued with the refund, as a receipt with its sale; it opens the drawer
        // when money goes back in cash.
        if let Some(device_id) = self.settings.printers.get(&self.actor.terminal_id) {
            store::queue_print(
                self.conn,
                device_id,
                "refund",
                &refund.sale_id,
                Some(&refund.id),
                &self.now_utc.to_rfc3339(),
            )?;
        }
        Ok(Outcome::Refund {
            refund: Box::new(refund),
            replayed: false,
        })
    }
}

/// The level a member holds as recorded (the last sale's, refund's or HQ's), with its name from
/// the rules (its code for a name, if the rules no longer have it).
fn held_level(m: &Member, rules: &Rules) -> Option<LevelRef> {
    m.level.as_deref().map(|code| match rules.level(code) {
        Some(l) => LevelRef::from(l),
        None => LevelRef {
            code: code.to_string(),
            name: code.to_string(),
        },
    })
}
