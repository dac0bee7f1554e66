//! Stock movements, products and coupons inside a batch.

use super::Ctx;
use crate::domain::catalog::{
    Coupon, CouponKind, MAX_UNIT_PRICE, Product, StockLevel, gtin_twin, validate_barcode,
    validate_sku,
};
use crate::domain::event::EventBody;
use crate::ledger::error::LedgerError;
use crate::ledger::requests::{IssueCoupon, ProductEdit, StockMovement};
use crate::ledger::{Idem, Outcome};

/// Largest stock movement in one go.
const MAX_STOCK_DELTA: i64 = 1_000_000;

impl Ctx<'_, '_> {
    pub(super) fn move_stock(
        &mut self,
        req: StockMovement,
        idem: Option<Idem>,
    ) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(idem.as_ref())? {
            return match event.body {
                EventBody::StockMoved {
                    movement_id, sku, ..
                } => {
                    let level = self
                        .pending
                        .stock(&sku)?
                        .unwrap_or_else(|| StockLevel::empty(&sku));
                    Ok(Outcome::Stock {
                        level,
                        movement_id,
                        replayed: true,
                    })
                }
                _ => Err(LedgerError::key_reused()),
            };
        }
        if self.pending.product(&req.sku)?.is_none() {
            return Err(LedgerError::not_found(
                "unknown_product",
                format!("no product {}", req.sku),
            ));
        }
        if !req.reason.accepts(req.delta)
            || !(-MAX_STOCK_DELTA..=MAX_STOCK_DELTA).contains(&req.delta)
        {
            return Err(LedgerError::invalid(
                "invalid_delta",
                "receive needs a positive delta, damage a negative one, adjust and transfer a non-zero one (at most 1000000)",
            ));
        }
        if req.note.chars().count() > 200 {
            return Err(LedgerError::invalid(
                "invalid_note",
                "note must be at most 200 characters",
            ));
        }
        let before = self
            .pending
            .stock(&req.sku)?
            .unwrap_or_else(|| StockLevel::empty(&req.sku));
        let after = before.on_hand + req.delta;
        // Only a movement that takes stock out can be short: a receipt onto a negative count
        // (left by a time negative stock was allowed, or HQ's count) is always taken.
        if req.delta < 0 && after < 0 && !self.settings.allow_negative_stock {
            return Err(LedgerError::rule(
                "insufficient_stock",
                format!("only {} of {} in stock", before.on_hand, req.sku),
            ));
        }
        let movement_id = crate::ids::new_v7().to_string();
        let seq = self.emit(EventBody::StockMoved {
            movement_id: movement_id.clone(),
            sku: req.sku.clone(),
            delta: req.delta,
            reason: req.reason,
            note: req.note.clone(),
            staff_no: self.actor.staff_no.clone(),
            on_hand_after: after,
            hq_count: None,
        })?;
        self.low_stock_alert(&before, after, before.safety_stock)?;
        self.audit(
            "stock.move",
            &req.sku,
            serde_json::json!({
                "movement_id": movement_id,
                "delta": req.delta,
                "reason": req.reason,
                "on_hand_after": after,
            }),
        )?;
        self.idem_store(idem.as_ref(), seq)?;
        let level = self.pending.stock(&req.sku)?.unwrap_or(before);
        Ok(Outcome::Stock {
            level,
            movement_id,
            replayed: false,
        })
    }

    pub(super) fn put_product(
        &mut self,
        sku: &str,
        req: ProductEdit,
    ) -> Result<Outcome, LedgerError> {
        validate_sku(sku).map_err(|m| LedgerError::invalid("invalid_sku", m))?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(LedgerError::invalid(
                "invalid_name",
                "product name must be 1–64 characters",
            ));
        }
        if !(0..=MAX_UNIT_PRICE).contains(&req.price) {
            return Err(LedgerError::invalid(
                "invalid_price",
                "price must be 0..=1000000000 minor units",
            ));
        }
        if req.promo.as_ref().is_some_and(|p| !p.fits(req.price)) {
            return Err(LedgerError::invalid(
                "invalid_promo",
                "a promotion price must be between 0 and the price, and start before it ends",
            ));
        }
        if req
            .safety_stock
            .is_some_and(|s| !(0..=MAX_STOCK_DELTA).contains(&s))
        {
            return Err(LedgerError::invalid(
                "invalid_safety_stock",
                "safety stock must be 0..=1000000",
            ));
        }
        if req.barcodes.len() > 16 {
            return Err(LedgerError::invalid(
                "invalid_barcode",
                "at most 16 barcodes",
            ));
        }
        for b in &req.barcodes {
            validate_barcode(b).map_err(|m| LedgerError::invalid("invalid_barcode", m))?;
            // Its other GTIN spelling is the same code (a scan of either finds the product
            // holding either): another product's, a scan would ring up whichever product
            // holds the spelling the till's scanner sends.
            for code in std::iter::once(b.clone()).chain(gtin_twin(b)) {
                if let Some(owner) = self.pending.product_by_barcode(&code)?
                    && owner.sku != sku
                {
                    return Err(LedgerError::conflict(
                        "barcode_taken",
                        if code == *b {
                            format!("barcode {b} belongs to {}", owner.sku)
                        } else {
                            format!("barcode {b} is {code}, which belongs to {}", owner.sku)
                        },
                    ));
                }
            }
        }
        let current = self.pending.product(sku)?;
        // A safety stock raised above what a product has on hand puts it below: told as a
        // movement would tell it. A product that never had units (a new one, or HQ's not yet
        // counted here) waits for its first delivery, which tells it if still short.
        let level_before = match req.safety_stock {
            Some(_) => self.pending.stock(sku)?.filter(|l| !l.awaiting_delivery),
            None => None,
        };
        let detail = serde_json::json!({
            "price_before": current.as_ref().map(|c| c.price),
            "price": req.price,
            "active": req.active,
        });
        let product = Product {
            sku: sku.to_string(),
            name: name.to_string(),
            barcodes: req.barcodes.clone(),
            price: req.price,
            promo: req.promo.clone(),
            category: req.category.clone(),
            unit: req.unit.clone(),
            member_discount: req.member_discount,
            active: req.active,
            // HQ stays the owner: its next version replaces this local edit.
            version: current.as_ref().map_or(0, |c| c.version),
            seq: 0,
        };
        self.emit(EventBody::ProductUpdated {
            product: Box::new(product),
            safety_stock: req.safety_stock,
            staff_no: self.actor.staff_no.clone(),
        })?;
        if let (Some(before), Some(safety)) = (&level_before, req.safety_stock) {
            self.low_stock_alert(before, before.on_hand, safety)?;
        }
        self.audit("product.edit", sku, detail)?;
        let p = self
            .pending
            .product(sku)?
            .ok_or_else(|| LedgerError::Internal("edited product missing from the cache".into()))?;
        Ok(Outcome::Product(Box::new(p)))
    }

    pub(super) fn issue_coupon(&mut self, req: IssueCoupon) -> Result<Outcome, LedgerError> {
        let code = match &req.code {
            Some(c) => {
                let c = crate::domain::catalog::typed_coupon_code(c);
                if !(4..=32).contains(&c.len())
                    || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(LedgerError::invalid(
                        "invalid_coupon_code",
                        "code must be 4–32 letters, digits or '-'",
                    ));
                }
                c
            }
            None => generate_code(),
        };
        if self.pending.coupon(&code)?.is_some() {
            return Err(LedgerError::conflict(
                "coupon_exists",
                format!("coupon {code} exists"),
            ));
        }
        let kind_ok = req.kind.validate().is_ok()
            && match &req.kind {
                CouponKind::FreeItem { sku } => self.pending.product(sku)?.is_some(),
                _ => true,
            };
        if !kind_ok {
            return Err(LedgerError::invalid(
                "invalid_coupon",
                "amount and threshold must be positive amounts, percent 0.01–100 %, a free item a known product",
            ));
        }
        if !crate::domain::catalog::valid_window(req.valid_from, req.valid_to) {
            return Err(LedgerError::invalid(
                "invalid_coupon",
                "valid_from must be before valid_to",
            ));
        }
        if req.title.chars().count() > 64 {
            return Err(LedgerError::invalid(
                "invalid_coupon",
                "title must be at most 64 characters",
            ));
        }
        if let Some(m) = &req.member_id {
            self.member_or_404(m)?;
        }
        let coupon = Coupon {
            code: code.clone(),
            title: req.title.clone(),
            kind: req.kind.clone(),
            valid_from: req.valid_from,
            valid_to: req.valid_to,
            member_id: req.member_id.clone(),
            combinable_with_level: req.combinable_with_level,
            stackable: req.stackable,
            used: None,
            version: 0,
            seq: 0,
        };
        self.emit(EventBody::CouponIssued(Box::new(coupon)))?;
        let c = self
            .pending
            .coupon(&code)?
            .ok_or_else(|| LedgerError::Internal("issued coupon missing from the cache".into()))?;
        Ok(Outcome::Coupon(Box::new(c)))
    }
}

/// A coupon code: 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L).
fn generate_code() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
