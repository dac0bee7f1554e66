//! Refunds, whole or partial: what goes back to the customer, to the member's counters and to
//! stock. A refund of everything left on a sale returns exactly what the sale took, line by
//! line, because every figure is computed as "cumulative share minus what earlier refunds
//! already returned".

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::member::{LevelRef, Member};
use super::money::{Money, allocate, mul_div_floor};
use super::rules::Rules;
use super::sale::{MemberAfter, Payment, Sale};

/// A line of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundLine {
    /// Product.
    pub sku: String,
    /// Product name, as sold.
    pub name: String,
    /// Units returned.
    pub qty: u32,
    /// Money value of the returned units (their share of what was paid with money).
    pub amount: Money,
    /// Points that had paid for these units, given back to the member.
    pub points_restored: i64,
    /// Points these units had earned: their share to take back. What was taken back in the
    /// end is the refund's `points_reversed` (less, by `points_shortfall`, when the member had
    /// spent them: their value is kept from the money instead).
    pub points_reversed: i64,
}

/// A recorded refund: the data of a `sale.refunded` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// UUIDv7 of the refund.
    pub id: String,
    /// Journal sequence number of the `sale.refunded` event.
    pub seq: u64,
    /// Store that gave the refund.
    pub store_id: String,
    /// The refunded sale.
    pub sale_id: String,
    /// Month bucket of the refunded sale (refunds are booked against the sale's month).
    pub sale_month: String,
    /// Store-local time.
    #[serde(with = "crate::domain::timestamp::serde")]
    pub created_at: DateTime<FixedOffset>,
    /// Manager who approved.
    pub staff_no: String,
    /// Terminal.
    pub terminal_id: String,
    /// Member of the sale.
    pub member_id: Option<String>,
    /// Why (free text).
    pub reason: String,
    /// Whether the goods go back into stock.
    pub restock: bool,
    /// Returned lines.
    pub lines: Vec<RefundLine>,
    /// Σ line amounts: spend taken back from the member.
    pub amount: Money,
    /// Paid points given back.
    pub points_restored: i64,
    /// Earned points taken back.
    pub points_reversed: i64,
    /// Earned points that could not be taken back because the member had already used them.
    pub points_shortfall: i64,
    /// Money kept back for that shortfall (at the redemption rate).
    pub shortfall_value: Money,
    /// Money returned to the customer: `amount − shortfall_value`.
    pub refund_total: Money,
    /// How the money goes back (in proportion to how the sale was paid).
    pub payments: Vec<Payment>,
    /// The member after the refund.
    pub member: Option<MemberAfter>,
    /// The terminal's `Idempotency-Key`, if it sent one (see the sale's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A line the manager wants to refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequestLine {
    /// Product.
    pub sku: String,
    /// Units to return.
    pub qty: u32,
}

/// Why a refund cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    /// Occurs when every unit of the sale has already been refunded.
    #[error("the sale has already been refunded in full")]
    AlreadyRefunded,
    /// Occurs when a refund line names a product not on the sale.
    #[error("{sku} is not on this sale")]
    NotOnSale {
        /// The product.
        sku: String,
    },
    /// Occurs when more units are asked back than remain refundable.
    #[error("only {refundable} of {sku} can still be refunded")]
    TooMany {
        /// The product.
        sku: String,
        /// Units still refundable.
        refundable: u32,
    },
    /// Occurs when the refund lines are an empty list, or a line has quantity zero or the
    /// same product as another.
    #[error("refund lines need at least one line, a positive quantity and distinct products")]
    BadLines,
}

/// Who, where and when of a refund.
#[derive(Debug, Clone)]
pub struct RefundContext {
    /// New refund id.
    pub id: String,
    /// `seq` of the refund event.
    pub seq: u64,
    /// This store.
    pub store_id: String,
    /// Store-local time.
    pub now: DateTime<FixedOffset>,
    /// Manager.
    pub staff_no: String,
    /// Terminal.
    pub terminal_id: String,
    /// Reason given.
    pub reason: String,
    /// Back into stock?
    pub restock: bool,
}

/// Computes a refund of `request` (everything still refundable when `None`) against `sale`,
/// given the refunds already made. `member` is the member's current state.
pub fn compute_refund(
    ctx: RefundContext,
    sale: &Sale,
    prior: &[Refund],
    request: Option<&[RefundRequestLine]>,
    member: Option<&Member>,
    rules: &Rules,
) -> Result<Refund, RefundError> {
    let done = |sku: &str| -> (u32, Money, i64, i64) {
        let mut acc = (0u32, 0, 0, 0);
        for r in prior {
            for l in r.lines.iter().filter(|l| l.sku == sku) {
                acc.0 += l.qty;
                acc.1 += l.amount;
                acc.2 += l.points_restored;
                acc.3 += l.points_reversed;
            }
        }
        acc
    };

    let wanted: Vec<(usize, u32)> = match request {
        None => sale
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i, l.qty - done(&l.sku).0.min(l.qty)))
            .filter(|(_, q)| *q > 0)
            .collect(),
        // No lines at all is a malformed request, not a sale refunded in full.
        Some([]) => return Err(RefundError::BadLines),
        Some(req) => {
            let mut out = Vec::with_capacity(req.len());
            for (n, r) in req.iter().enumerate() {
                if r.qty == 0 || req[..n].iter().any(|o| o.sku == r.sku) {
                    return Err(RefundError::BadLines);
                }
                let i = sale
                    .lines
                    .iter()
                    .position(|l| l.sku == r.sku)
                    .ok_or_else(|| RefundError::NotOnSale { sku: r.sku.clone() })?;
                let refundable = sale.lines[i].qty - done(&r.sku).0.min(sale.lines[i].qty);
                if r.qty > refundable {
                    return Err(RefundError::TooMany {
                        sku: r.sku.clone(),
                        refundable,
                    });
                }
                out.push((i, r.qty));
            }
            out
        }
    };
    if wanted.is_empty() {
        return Err(RefundError::AlreadyRefunded);
    }

    let mut lines = Vec::with_capacity(wanted.len());
    for (i, k) in wanted {
        let l = &sale.lines[i];
        let (before_qty, before_amount, before_restored, before_reversed) = done(&l.sku);
        let after_qty = i128::from(before_qty + k);
        let qty = i128::from(l.qty);
        let share = |whole: i64| mul_div_floor(whole, after_qty, qty);
        lines.push(RefundLine {
            sku: l.sku.clone(),
            name: l.name.clone(),
            qty: k,
            amount: share(l.paid()) - before_amount,
            points_restored: share(l.points_redeemed) - before_restored,
            points_reversed: share(l.points_earned) - before_reversed,
        });
    }

    let amount: Money = lines.iter().map(|l| l.amount).sum();
    let restored: i64 = lines.iter().map(|l| l.points_restored).sum();
    let to_reverse: i64 = lines.iter().map(|l| l.points_reversed).sum();
    let today = ctx.now.date_naive();

    // Earned points the member has already spent cannot be taken back; their value is kept
    // from the money returned instead. What can be taken back is the balance once the paid
    // points are given back: with an expiry, points given back that have lapsed since the sale
    // (they return to the month they were paid in) are no balance to take from, and the
    // sale's own points that lapsed unused are neither taken nor paid for.
    let (reversed, shortfall) = match member {
        Some(m) => {
            let mut restored_only = m.clone();
            let month = restored_only
                .counters
                .entry(ctx.store_id.clone())
                .or_default()
                .month_mut(&sale.month());
            month.points_restored = month.points_restored.saturating_add(restored);
            reversal(
                restored_only,
                &ctx.store_id,
                &sale.month(),
                to_reverse,
                rules,
                today,
            )
        }
        None => (0, 0),
    };
    let shortfall_value = if shortfall > 0 {
        let rate = i64::from(rules.redeem_points_per_yuan);
        ((shortfall * 100 + rate - 1) / rate).min(amount)
    } else {
        0
    };
    let refund_total = amount - shortfall_value;

    let payments = refund_payments(sale, prior, refund_total);

    let mut refund = Refund {
        id: ctx.id,
        seq: ctx.seq,
        store_id: ctx.store_id,
        sale_id: sale.id.clone(),
        sale_month: sale.month(),
        created_at: ctx.now,
        staff_no: ctx.staff_no,
        terminal_id: ctx.terminal_id,
        member_id: sale.member_id.clone(),
        reason: ctx.reason,
        restock: ctx.restock,
        lines,
        amount,
        points_restored: restored,
        points_reversed: reversed,
        points_shortfall: shortfall,
        shortfall_value,
        refund_total,
        payments,
        member: None,
        idempotency_key: None,
    };
    if let Some(m) = member {
        let mut after = m.clone();
        add_refund_counters(&mut after, &refund);
        let level = if rules.levels_can_drop {
            after.effective_level(rules, today)
        } else {
            m.effective_level(rules, today)
        };
        refund.member = Some(MemberAfter {
            level: level.map(LevelRef::from),
            points: after.points(rules, today),
            total_spend: after.total_spend(),
            upgraded_to: None,
        });
    }
    Ok(refund)
}

/// How many of a sale's `to_reverse` earned points a refund books as taken back, and how many
/// the member used (a shortfall, paid from the money returned). `member` has the refund's paid
/// points given back already; the reversal is booked to the sale's `month` at `store_id`.
///
/// The sale's points that lapsed unused count as taken back and cost nothing. The rest come out
/// of the balance, but only as far as booking them to the sale's month takes them from it: with
/// an expiry, a reversal of points that were paid with moves that payment onto later points,
/// and where those had lapsed, booking takes nothing the member holds. (Until 2026-12-07 the
/// refund booked as much as the balance held: the points of a January sale that lapsed in
/// April, refunded in June, were "taken" from the May points they never were part of, the
/// balance did not move, and the rest was kept from the money.)
fn reversal(
    mut member: Member,
    store_id: &str,
    month: &str,
    to_reverse: i64,
    rules: &Rules,
    today: chrono::NaiveDate,
) -> (i64, i64) {
    let to_reverse = to_reverse.max(0);
    let lapsed = to_reverse.min(member.points_lapsed_unused(rules, today, month).max(0));
    let rest = to_reverse - lapsed;
    let booked = member
        .counters
        .entry(store_id.to_string())
        .or_default()
        .month_mut(month)
        .points_reversed;
    let mut balance_after = |n: i64| {
        member
            .counters
            .entry(store_id.to_string())
            .or_default()
            .month_mut(month)
            .points_reversed = booked.saturating_add(n);
        member.points(rules, today)
    };
    let balance = balance_after(lapsed);
    // The most points whose booking takes as many from the balance. One point more booked
    // takes at most one more, so those are a prefix: a binary search finds its end.
    let (mut lo, mut hi) = (0, rest.min(balance).max(0));
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        if balance - balance_after(lapsed + mid) == mid {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (lapsed + lo, rest - lo)
}

/// How `total` goes back, by payment method: in proportion to what each method paid and has
/// not had back from earlier refunds. No method gets back more than it paid, and the refund
/// that returns the rest of the sale returns exactly each method's rest.
fn refund_payments(sale: &Sale, prior: &[Refund], total: Money) -> Vec<Payment> {
    let mut left: Vec<Payment> = Vec::new();
    for p in sale.net_payments() {
        match left.iter_mut().find(|l| l.method == p.method) {
            Some(l) => l.amount += p.amount,
            None => left.push(p),
        }
    }
    for p in prior.iter().flat_map(|r| &r.payments) {
        if let Some(l) = left.iter_mut().find(|l| l.method == p.method) {
            l.amount = (l.amount - p.amount).max(0);
        }
    }
    let weights: Vec<Money> = left.iter().map(|p| p.amount).collect();
    left.iter()
        .zip(allocate(total, &weights))
        .filter(|(_, a)| *a > 0)
        .map(|(p, amount)| Payment {
            method: p.method,
            amount,
        })
        .collect()
}

fn add_refund_counters(member: &mut Member, refund: &Refund) {
    let c = member.counters.entry(refund.store_id.clone()).or_default();
    let m = c.month_mut(&refund.sale_month);
    m.spend_refunded = m.spend_refunded.saturating_add(refund.amount);
    m.points_restored = m.points_restored.saturating_add(refund.points_restored);
    m.points_reversed = m.points_reversed.saturating_add(refund.points_reversed);
}

/// Applies a recorded refund to the member (projection).
pub fn apply_refund(member: &mut Member, refund: &Refund) {
    add_refund_counters(member, refund);
    if let Some(after) = &refund.member {
        member.level = after.level.as_ref().map(|l| l.code.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::TotalRounding;
    use crate::domain::pricing::tests::{now, product};
    use crate::domain::pricing::{CartItem, PricingInput, price};
    use crate::domain::sale::{PaymentMethod, SaleContext, build_sale, settle};

    /// Three items at ¥33.33 paid ¥50.00 by WeChat and ¥49.99 by card, refunded one by one:
    /// each method gets back what it paid, never more (the proportional split of each refund
    /// on its own sent WeChat ¥50.01 and the card ¥49.98).
    #[test]
    fn no_payment_method_gets_back_more_than_it_paid() {
        let products = [product("A", 3333), product("B", 3333), product("C", 3333)];
        let items: Vec<CartItem> = products
            .iter()
            .map(|p| CartItem { product: p, qty: 1 })
            .collect();
        let rules = Rules::default();
        let quote = price(&PricingInput {
            items: &items,
            member: None,
            coupons: &[],
            redeem_points: 0,
            rules: &rules,
            now: now(),
            rounding: TotalRounding::None,
        })
        .unwrap();
        let payments = vec![
            Payment {
                method: PaymentMethod::Wechat,
                amount: 5000,
            },
            Payment {
                method: PaymentMethod::Card,
                amount: 4999,
            },
        ];
        let (paid, change) = settle(quote.total, &payments).unwrap();
        let ctx = SaleContext {
            id: "s".into(),
            seq: 1,
            store_id: "sh-001".into(),
            now: now(),
            staff_no: "1".into(),
            terminal_id: "t".into(),
        };
        let sale = build_sale(ctx, quote, payments, paid, change, None, &rules);
        let mut refunds: Vec<Refund> = Vec::new();
        for (n, sku) in ["A", "B", "C"].into_iter().enumerate() {
            let ctx = RefundContext {
                id: format!("r{n}"),
                seq: 2 + n as u64,
                store_id: "sh-001".into(),
                now: now(),
                staff_no: "2".into(),
                terminal_id: "t".into(),
                reason: "test".into(),
                restock: true,
            };
            let line = [RefundRequestLine {
                sku: sku.into(),
                qty: 1,
            }];
            let r = compute_refund(ctx, &sale, &refunds, Some(&line), None, &rules).unwrap();
            assert_eq!(r.payments.iter().map(|p| p.amount).sum::<Money>(), 3333);
            refunds.push(r);
            let back = |m| -> Money {
                refunds
                    .iter()
                    .flat_map(|r| &r.payments)
                    .filter(|p| p.method == m)
                    .map(|p| p.amount)
                    .sum()
            };
            assert!(back(PaymentMethod::Wechat) <= 5000, "{refunds:?}");
            assert!(back(PaymentMethod::Card) <= 4999, "{refunds:?}");
            if n == 2 {
                assert_eq!(
                    (back(PaymentMethod::Wechat), back(PaymentMethod::Card)),
                    (5000, 4999)
                );
            }
        }
    }
}
