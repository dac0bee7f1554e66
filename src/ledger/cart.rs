//! Pricing a cart against the cache: shared by `POST /v1/sales/quote` (reads the cache) and
//! the sale command (reads the batch's overlay), so a quote and the sale that follows it are
//! computed by the same code.

use chrono::{DateTime, FixedOffset};

use super::error::LedgerError;
use super::requests::SaleRequest;
use super::settings::StoreSettings;
use crate::cache::Lookup;
use crate::domain::catalog::StockLevel;
use crate::domain::member::Member;
use crate::domain::pricing::{
    CartItem, MAX_LINES, MAX_QTY, PricingError, PricingInput, Quote, price,
};
use crate::domain::rules::Rules;

/// A priced cart and what was read to price it.
#[derive(Debug, Clone)]
pub struct PricedCart {
    /// The member buying.
    pub member: Option<Member>,
    /// The quote.
    pub quote: Quote,
    /// Stock of each line before the sale (same order as the quote's lines).
    pub stock_before: Vec<Option<StockLevel>>,
}

/// Finds a member who can buy as a member (known, not erased).
pub fn live_member(view: &impl Lookup, id: &str) -> Result<Member, LedgerError> {
    match view.member(id)? {
        Some(m) if m.erased_at.is_none() && m.profile.is_some() => Ok(m),
        _ => Err(LedgerError::not_found(
            "member_not_found",
            format!("no member {id}"),
        )),
    }
}

/// Merges repeated scans of a product into one line, keeping scan order. Stops at more than
/// [`MAX_LINES`] distinct products (the search is linear in the lines merged so far: a cart
/// of a hundred thousand distinct lines, in a large body, would hold the ledger for minutes).
fn merge_lines(req: &SaleRequest) -> Result<Vec<(String, u32)>, PricingError> {
    let mut merged: Vec<(String, u32)> = Vec::with_capacity(req.lines.len().min(MAX_LINES + 1));
    for l in &req.lines {
        if let Some((_, q)) = merged.iter_mut().find(|(s, _)| *s == l.sku) {
            *q = q.saturating_add(l.qty);
        } else if merged.len() == MAX_LINES {
            return Err(PricingError::TooManyLines);
        } else {
            merged.push((l.sku.clone(), l.qty));
        }
    }
    Ok(merged)
}

/// Prices `req` against `view` at store-local time `now`.
pub fn price_cart(
    view: &impl Lookup,
    req: &SaleRequest,
    settings: &StoreSettings,
    rules: &Rules,
    now: DateTime<FixedOffset>,
) -> Result<PricedCart, LedgerError> {
    let member = match &req.member_id {
        Some(id) => Some(live_member(view, id)?),
        None => None,
    };
    let merged = merge_lines(req)?;
    let mut products = Vec::with_capacity(merged.len());
    let mut stock_before = Vec::with_capacity(merged.len());
    for (sku, qty) in &merged {
        if *qty == 0 || *qty > MAX_QTY {
            return Err(LedgerError::invalid(
                "invalid_quantity",
                format!("quantity for {sku} must be between 1 and {MAX_QTY}"),
            ));
        }
        let p = view.product(sku)?.ok_or_else(|| {
            LedgerError::not_found("unknown_product", format!("no product {sku}"))
        })?;
        let level = view.stock(sku)?;
        if !settings.allow_negative_stock {
            let on_hand = level.as_ref().map_or(0, |l| l.on_hand);
            if on_hand < i64::from(*qty) {
                return Err(LedgerError::rule(
                    "out_of_stock",
                    format!("only {on_hand} of {sku} in stock"),
                ));
            }
        }
        products.push(p);
        stock_before.push(level);
    }
    let mut coupons = Vec::with_capacity(req.coupon_codes.len());
    for code in &req.coupon_codes {
        let code = crate::domain::catalog::typed_coupon_code(code);
        let c = view
            .coupon(&code)?
            .ok_or_else(|| LedgerError::not_found("unknown_coupon", format!("no coupon {code}")))?;
        coupons.push(c);
    }
    let items: Vec<CartItem> = products
        .iter()
        .zip(&merged)
        .map(|(p, (_, qty))| CartItem {
            product: p,
            qty: *qty,
        })
        .collect();
    let quote = price(&PricingInput {
        items: &items,
        member: member.as_ref(),
        coupons: &coupons,
        redeem_points: req.redeem_points,
        rules,
        now,
        rounding: settings.rounding,
    })?;
    Ok(PricedCart {
        member,
        quote,
        stock_before,
    })
}
