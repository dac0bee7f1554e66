//! Recording a sale: settling payments, the member after the sale, and applying a recorded sale
//! to a member's counters (the projection uses the same function as the live path).

use chrono::{DateTime, Datelike, FixedOffset};
use serde::{Deserialize, Serialize};

use super::calendar::month_key;
use super::member::{LevelRef, Member};
use super::money::{Money, format_yuan};
use super::pricing::{AppliedCoupon, Benefit, PricedLine, Quote};
use super::rules::Rules;

/// How a customer paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Notes and coins; the only method that gives change.
    Cash,
    /// Bank card.
    Card,
    /// WeChat Pay.
    Wechat,
    /// Alipay.
    Alipay,
    /// The member's stored-value balance, settled by HQ's wallet.
    StoredValue,
    /// Anything else (vouchers, transfers).
    Other,
}

/// One payment of a sale (or one refund payment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// How.
    pub method: PaymentMethod,
    /// How much, in minor units.
    pub amount: Money,
}

/// The member block of a sale or refund: the member's state after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAfter {
    /// Level after the sale.
    pub level: Option<LevelRef>,
    /// Points balance after the sale.
    pub points: i64,
    /// Lifetime spend after the sale.
    pub total_spend: Money,
    /// The level reached by this sale, if it crossed a threshold.
    pub upgraded_to: Option<LevelRef>,
}

/// A recorded sale: the data of a `sale.recorded` event and the API's sale JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    /// UUIDv7.
    pub id: String,
    /// Journal sequence number of the `sale.recorded` event.
    pub seq: u64,
    /// Store that made the sale.
    pub store_id: String,
    /// Store-local time.
    #[serde(with = "crate::domain::timestamp::serde")]
    pub created_at: DateTime<FixedOffset>,
    /// Cashier.
    pub staff_no: String,
    /// Terminal.
    pub terminal_id: String,
    /// Member, if identified.
    pub member_id: Option<String>,
    /// Priced lines.
    pub lines: Vec<PricedLine>,
    /// Σ qty × unit_price.
    pub subtotal: Money,
    /// Σ discounts.
    pub discount_total: Money,
    /// Points paid with.
    pub points_redeemed: i64,
    /// Money value of those points.
    pub points_value: Money,
    /// Paid with money.
    pub total: Money,
    /// Payments as tendered.
    pub payments: Vec<Payment>,
    /// Σ payments.
    pub paid: Money,
    /// Change given (from cash).
    pub change: Money,
    /// Points earned.
    pub points_earned: i64,
    /// Member benefit applied.
    pub benefit: Option<Benefit>,
    /// With the birthday benefit: the year of the birthday whose discount this was (a
    /// birthday week can span New Year, so it is not always the sale's year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birthday_year: Option<i32>,
    /// Level held when the sale began.
    pub level: Option<LevelRef>,
    /// Coupons used, with what each took off.
    pub coupons: Vec<AppliedCoupon>,
    /// The member after the sale.
    pub member: Option<MemberAfter>,
    /// The terminal's `Idempotency-Key`: with `terminal_id`, what lets HQ recognise a sale a
    /// terminal sent again to a box that no longer knows the key (replaced, or restored from
    /// a backup taken before the sale) and that recorded it a second time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Sale {
    /// The month bucket the sale's spend and points belong to.
    pub fn month(&self) -> String {
        month_key(self.created_at.date_naive())
    }

    /// What each payment method contributed net of change (cash minus change), in order.
    pub fn net_payments(&self) -> Vec<Payment> {
        let mut change_left = self.change;
        let mut out: Vec<Payment> = self.payments.clone();
        for p in out.iter_mut().filter(|p| p.method == PaymentMethod::Cash) {
            let c = change_left.min(p.amount);
            p.amount -= c;
            change_left -= c;
        }
        out
    }
}

/// Whether any money changes hands in cash (a sale's tender, a refund's money back): what
/// opens the drawer and prints the change line.
pub fn any_cash(payments: &[Payment]) -> bool {
    payments
        .iter()
        .any(|p| p.method == PaymentMethod::Cash && p.amount > 0)
}

/// Why the tendered payments do not settle a sale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// Occurs when a payment amount is zero or negative.
    #[error("every payment must be a positive amount")]
    NonPositive,
    /// Occurs when payments do not reach the total. The message, which a till shows the
    /// cashier, says the total in yuan: after a price change since the quote it is not the one
    /// the till showed.
    #[error("paid {} of a total of {}", format_yuan(*paid), format_yuan(*total))]
    Underpaid {
        /// Tendered.
        paid: Money,
        /// Due.
        total: Money,
    },
    /// Occurs when non-cash payments exceed the total (only cash gives change).
    #[error(
        "non-cash payments of {} exceed the total of {}; only cash gives change",
        format_yuan(*non_cash),
        format_yuan(*total)
    )]
    NonCashOverpaid {
        /// Tendered other than in cash.
        non_cash: Money,
        /// Due.
        total: Money,
    },
    /// Occurs when there are more than 10 payments.
    #[error("at most 10 payments per sale")]
    TooMany,
    /// Occurs when a payment is above [`MAX_PAYMENT`] (a typo, or an attempt to overflow).
    #[error("a payment above 100,000,000.00 is not plausible")]
    Implausible,
}

/// Largest single payment accepted (¥100,000,000).
pub const MAX_PAYMENT: Money = 10_000_000_000;

/// Checks the payments against the total; returns `(paid, change)`.
pub fn settle(total: Money, payments: &[Payment]) -> Result<(Money, Money), SettleError> {
    if payments.len() > 10 {
        return Err(SettleError::TooMany);
    }
    if payments.iter().any(|p| p.amount <= 0) {
        return Err(SettleError::NonPositive);
    }
    if payments.iter().any(|p| p.amount > MAX_PAYMENT) {
        return Err(SettleError::Implausible);
    }
    let mut paid: Money = 0;
    let mut non_cash: Money = 0;
    for p in payments {
        paid += p.amount;
        if p.method != PaymentMethod::Cash {
            non_cash += p.amount;
        }
    }
    if paid < total {
        return Err(SettleError::Underpaid { paid, total });
    }
    if non_cash > total {
        return Err(SettleError::NonCashOverpaid { non_cash, total });
    }
    Ok((paid, paid - total))
}

/// Who, where and when: the parts of a sale that do not come from pricing.
#[derive(Debug, Clone)]
pub struct SaleContext {
    /// New sale id (UUIDv7).
    pub id: String,
    /// The `seq` the sale event will get.
    pub seq: u64,
    /// This store.
    pub store_id: String,
    /// Store-local time.
    pub now: DateTime<FixedOffset>,
    /// Cashier.
    pub staff_no: String,
    /// Terminal.
    pub terminal_id: String,
}

/// Builds the sale record from a quote and settled payments, computing the member's state
/// after the sale (level upgrades take effect here, for the next sale).
pub fn build_sale(
    ctx: SaleContext,
    quote: Quote,
    payments: Vec<Payment>,
    paid: Money,
    change: Money,
    member: Option<&Member>,
    rules: &Rules,
) -> Sale {
    let mut sale = Sale {
        id: ctx.id,
        seq: ctx.seq,
        store_id: ctx.store_id,
        created_at: ctx.now,
        staff_no: ctx.staff_no,
        terminal_id: ctx.terminal_id,
        member_id: member.map(|m| m.id.clone()),
        lines: quote.lines,
        subtotal: quote.subtotal,
        discount_total: quote.discount_total,
        points_redeemed: quote.points_redeemed,
        points_value: quote.points_value,
        total: quote.total,
        payments,
        paid,
        change,
        points_earned: quote.points_earned,
        benefit: quote.benefit,
        birthday_year: None,
        level: quote.level,
        coupons: quote.coupons,
        member: None,
        idempotency_key: None,
    };
    if let Some(m) = member {
        let today = ctx.now.date_naive();
        if sale.benefit == Some(Benefit::Birthday) {
            sale.birthday_year = m.birthday_year(rules, today);
        }
        let mut after = m.clone();
        add_sale_counters(&mut after, &sale);
        let new_level = after.effective_level(rules, today);
        let upgraded = rules.rank(new_level.map(|l| l.code.as_str()))
            > rules.rank(sale.level.as_ref().map(|l| l.code.as_str()));
        sale.member = Some(MemberAfter {
            level: new_level.map(LevelRef::from),
            points: after.points(rules, today),
            total_spend: after.total_spend(),
            upgraded_to: if upgraded {
                new_level.map(LevelRef::from)
            } else {
                None
            },
        });
    }
    sale
}

fn add_sale_counters(member: &mut Member, sale: &Sale) {
    let c = member.counters.entry(sale.store_id.clone()).or_default();
    c.visits = c.visits.saturating_add(1);
    c.last_visit_at = c.last_visit_at.max(Some(sale.created_at));
    crate::domain::member::note_visit_day(&mut c.visit_days, sale.created_at.date_naive());
    if sale.benefit == Some(Benefit::Birthday) {
        // Sales recorded before `birthday_year` existed: the sale's year.
        let year = sale.birthday_year.unwrap_or(sale.created_at.year());
        c.birthday_discount_year = c.birthday_discount_year.max(Some(year));
    }
    let m = c.month_mut(&sale.month());
    m.spend = m.spend.saturating_add(sale.total);
    m.points_earned = m.points_earned.saturating_add(sale.points_earned);
    m.points_redeemed = m.points_redeemed.saturating_add(sale.points_redeemed);
}

/// Applies a recorded sale to the member (projection): counters grow by the sale's recorded
/// figures and the level becomes the one the sale recorded. Rules are not re-run, so replaying
/// an old sale under new rules gives the same member.
pub fn apply_sale(member: &mut Member, sale: &Sale) {
    add_sale_counters(member, sale);
    if let Some(after) = &sale.member {
        member.level = after.level.as_ref().map(|l| l.code.clone());
    }
}
