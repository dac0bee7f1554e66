//! Pricing a cart: the fixed order of benefits (design section 3).
//!
//! 1. line promotions (promotional unit price);
//! 2. the level **or** the birthday discount, whichever is larger in money (a capped birthday
//!    rate can be worth less on a big cart; birthday at most once a calendar year), on lines
//!    that allow member discounts;
//! 3. coupons (one per sale unless every coupon is stackable; a coupon may exclude step 2);
//! 4. points redemption (100 points = ¥1 by default, at most 50 % of what is left to pay);
//! 5. 抹零, if the store drops the 分 or 角 of the total.
//!
//! Each discount is rounded half-up per line; sale-level reductions (amount coupons, points,
//! 抹零) are spread over the lines by largest remainder so that each line knows exactly what it
//! cost, which is what makes partial refunds exact. Points to be earned are computed at the
//! level the member holds when the sale begins, on the amount paid with money.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::catalog::{Coupon, CouponKind, MAX_UNIT_PRICE, Product};
use super::member::{LevelRef, Member};
use super::money::{
    Money, TotalRounding, allocate, format_yuan, mul_div_ceil, mul_div_floor, percent_of,
};
use super::rules::Rules;

/// Most units of one product on one sale line.
pub const MAX_QTY: u32 = 9_999;
/// Most distinct lines on one sale.
pub const MAX_LINES: usize = 500;

/// One product in the cart.
#[derive(Debug, Clone)]
pub struct CartItem<'a> {
    /// The product as the cache holds it.
    pub product: &'a Product,
    /// Units; duplicates of a product are merged into one line before pricing.
    pub qty: u32,
}

/// Everything pricing needs, passed in: no clock, no store.
#[derive(Debug, Clone)]
pub struct PricingInput<'a> {
    /// Cart lines, in scan order.
    pub items: &'a [CartItem<'a>],
    /// The member buying, if identified.
    pub member: Option<&'a Member>,
    /// Coupons presented, as found in the cache.
    pub coupons: &'a [Coupon],
    /// Points the member wants to pay with.
    pub redeem_points: i64,
    /// Membership rules in force.
    pub rules: &'a Rules,
    /// Store-local time of the sale.
    pub now: DateTime<FixedOffset>,
    /// The store's 抹零 setting.
    pub rounding: TotalRounding,
}

/// Which member benefit applied in step 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Benefit {
    /// The level's everyday discount.
    Level,
    /// The birthday discount (counts as this year's).
    Birthday,
}

/// A priced line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    /// Product.
    pub sku: String,
    /// Product name at the time of sale.
    pub name: String,
    /// Units.
    pub qty: u32,
    /// Regular unit price.
    pub unit_price: Money,
    /// All discounts on the line (promotion + member + coupon + 抹零 share).
    pub discount: Money,
    /// `qty × unit_price − discount`: what the line costs before points.
    pub amount: Money,
    /// Line promotion part of `discount`.
    pub promo_discount: Money,
    /// Level or birthday part of `discount`.
    pub member_discount: Money,
    /// Coupon part of `discount`.
    pub coupon_discount: Money,
    /// 抹零 part of `discount`.
    pub rounding: Money,
    /// Share of the points payment (money value) carried by this line.
    pub points_value: Money,
    /// Share of the points paid, in points.
    pub points_redeemed: i64,
    /// Share of the points earned by the sale.
    pub points_earned: i64,
}

impl PricedLine {
    /// What was paid with money for this line.
    pub fn paid(&self) -> Money {
        self.amount - self.points_value
    }
}

/// A priced cart: what `POST /v1/sales/quote` answers and what a sale records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// Priced lines.
    pub lines: Vec<PricedLine>,
    /// Σ qty × unit_price.
    pub subtotal: Money,
    /// Σ line discounts.
    pub discount_total: Money,
    /// Points paid with.
    pub points_redeemed: i64,
    /// Money value of the points paid with.
    pub points_value: Money,
    /// What is left to pay with money: `subtotal − discount_total − points_value`.
    pub total: Money,
    /// Points the sale earns (at the level held when it began).
    pub points_earned: i64,
    /// Member benefit applied in step 2, if any.
    pub benefit: Option<Benefit>,
    /// The member's level when the sale began.
    pub level: Option<LevelRef>,
    /// Coupons used, with what each took off.
    pub coupons: Vec<AppliedCoupon>,
    /// Most points this cart could be paid with (for the till's "use points?" prompt).
    pub max_redeem_points: i64,
}

/// A coupon used on a sale and the discount it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedCoupon {
    /// Coupon code.
    pub code: String,
    /// Discount it gave.
    pub discount: Money,
}

/// Why a cart cannot be priced as asked. Each maps to a `400` or `422` at the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// Occurs when the cart has no lines.
    #[error("the cart is empty")]
    EmptyCart,
    /// Occurs when the cart has more distinct products than [`MAX_LINES`].
    #[error("the cart has more than {MAX_LINES} lines")]
    TooManyLines,
    /// Occurs when a quantity is zero or above [`MAX_QTY`].
    #[error("quantity for {sku} must be between 1 and {MAX_QTY}")]
    BadQuantity {
        /// The line's product.
        sku: String,
    },
    /// Occurs when a product has been delisted or carries an implausible price.
    #[error("product {sku} cannot be sold")]
    NotForSale {
        /// The product.
        sku: String,
    },
    /// Occurs when points are to be redeemed without a member.
    #[error("paying with points needs a member")]
    PointsNeedMember,
    /// Occurs when the requested points are negative.
    #[error("points to redeem must not be negative")]
    NegativePoints,
    /// Occurs when the member holds fewer points than asked.
    #[error("the member holds {held} points, {requested} were asked")]
    InsufficientPoints {
        /// Points held.
        held: i64,
        /// Points asked.
        requested: i64,
    },
    /// Occurs when the points would pay more than the allowed share of the sale.
    #[error("at most {max_points} points can be used on this sale")]
    RedeemAboveLimit {
        /// The most points allowed.
        max_points: i64,
    },
    /// Occurs when so few points are asked that they are worth nothing.
    #[error("{points} points are worth less than one minor unit")]
    RedeemTooSmall {
        /// Points asked.
        points: i64,
    },
    /// Occurs when the same coupon is presented twice.
    #[error("coupon {code} was given twice")]
    DuplicateCoupon {
        /// The coupon.
        code: String,
    },
    /// Occurs when several coupons are presented and one of them does not stack.
    #[error("only one coupon can be used per sale")]
    TooManyCoupons,
    /// Occurs when the coupon was already used.
    #[error("coupon {code} has already been used")]
    CouponUsed {
        /// The coupon.
        code: String,
    },
    /// Occurs before the coupon's validity starts.
    #[error("coupon {code} is not valid yet")]
    CouponNotYetValid {
        /// The coupon.
        code: String,
    },
    /// Occurs after the coupon's validity ended.
    #[error("coupon {code} has expired")]
    CouponExpired {
        /// The coupon.
        code: String,
    },
    /// Occurs when a member-bound coupon is presented for another member or none.
    #[error("coupon {code} belongs to another member")]
    CouponNotYours {
        /// The coupon.
        code: String,
    },
    /// Occurs when the cart does not reach the coupon's threshold.
    #[error(
        "coupon {code} needs {} but the cart is {}",
        format_yuan(*threshold),
        format_yuan(*amount)
    )]
    CouponThreshold {
        /// The coupon.
        code: String,
        /// Amount needed.
        threshold: Money,
        /// Amount reached.
        amount: Money,
    },
    /// Occurs when a coupon would take nothing off the cart (its item already free, nothing
    /// left to pay): a single-use coupon is not used up for nothing.
    #[error("coupon {code} takes nothing off this cart: keep it for another sale")]
    CouponGivesNothing {
        /// The coupon.
        code: String,
    },
    /// Occurs when a free-item coupon's product is not in the cart.
    #[error("coupon {code} is for {sku}, which is not in the cart")]
    CouponItemMissing {
        /// The coupon.
        code: String,
        /// Product it is for.
        sku: String,
    },
}

/// The points that pay the most a sale allows (`max_value` minor units) at `rate` points a
/// yuan: what those points are worth is floored to the minor unit, and only the points that
/// worth needs are charged. At 150 points a yuan and ¥6.45 allowed, 968 points (967 pay ¥6.44);
/// at 50 a yuan, 322 (¥6.44: 323 would pay ¥6.46).
fn points_for_value(max_value: Money, rate: i128) -> i64 {
    // The most points whose worth stays within the limit, then what that worth costs.
    let accepted = mul_div_ceil(max_value.saturating_add(1), rate, 100) - 1;
    mul_div_ceil(mul_div_floor(accepted, 100, rate), rate, 100)
}

/// Prices a cart. Pure: the same input always gives the same quote.
pub fn price(input: &PricingInput<'_>) -> Result<Quote, PricingError> {
    if input.items.is_empty() {
        return Err(PricingError::EmptyCart);
    }
    if input.items.len() > MAX_LINES {
        return Err(PricingError::TooManyLines);
    }
    if input.redeem_points < 0 {
        return Err(PricingError::NegativePoints);
    }
    let today = input.now.date_naive();

    // Step 1: lines and line promotions.
    let mut lines = Vec::with_capacity(input.items.len());
    for item in input.items {
        let p = item.product;
        if item.qty == 0 || item.qty > MAX_QTY {
            return Err(PricingError::BadQuantity { sku: p.sku.clone() });
        }
        if !p.active || p.price < 0 || p.price > MAX_UNIT_PRICE {
            return Err(PricingError::NotForSale { sku: p.sku.clone() });
        }
        let qty = i64::from(item.qty);
        let gross = qty * p.price;
        let promo_discount = gross - qty * p.unit_price_at(input.now).max(0);
        lines.push(PricedLine {
            sku: p.sku.clone(),
            name: p.name.clone(),
            qty: item.qty,
            unit_price: p.price,
            discount: promo_discount,
            amount: gross - promo_discount,
            promo_discount,
            member_discount: 0,
            coupon_discount: 0,
            rounding: 0,
            points_value: 0,
            points_redeemed: 0,
            points_earned: 0,
        });
    }

    // Coupons are checked before step 2 because a coupon may exclude the member benefit.
    check_coupons(input)?;
    let level_allowed = input.coupons.iter().all(|c| c.combinable_with_level);

    // Step 2: level or birthday discount.
    let level_rule = input
        .member
        .and_then(|m| m.effective_level(input.rules, today));
    let mut benefit = None;
    if let (Some(member), Some(rule), true) = (input.member, level_rule, level_allowed) {
        let eligible: Vec<usize> = (0..lines.len())
            .filter(|i| input.items[*i].product.member_discount)
            .collect();
        // Each eligible line's discount at `bps`, at most `cap` in all.
        let parts = |bps: u32, cap: Option<Money>| -> Vec<Money> {
            let parts: Vec<Money> = eligible
                .iter()
                .map(|i| percent_of(lines[*i].amount, bps))
                .collect();
            match cap {
                Some(cap) if parts.iter().sum::<Money>() > cap => {
                    let weights: Vec<Money> = eligible.iter().map(|i| lines[*i].amount).collect();
                    allocate(cap.max(0), &weights)
                }
                _ => parts,
            }
        };
        let level = parts(rule.discount_bps, None);
        // The birthday discount only when it is worth more, in money, than the level's (a
        // capped birthday rate can be worth less on a big cart): the year's birthday stays
        // unused otherwise.
        let birthday = member
            .birthday_discount_due(input.rules, today)
            .then(|| parts(rule.birthday_discount_bps, rule.birthday_discount_cap))
            .filter(|b| b.iter().sum::<Money>() > level.iter().sum::<Money>());
        let (kind, chosen) = match birthday {
            Some(b) => (Benefit::Birthday, b),
            None => (Benefit::Level, level),
        };
        for (i, d) in eligible.iter().zip(chosen) {
            add_discount(&mut lines[*i], d, Part::Member);
        }
        if lines.iter().any(|l| l.member_discount > 0) {
            benefit = Some(kind);
        }
    }

    // Step 3: coupons, in the order given.
    let mut coupons = Vec::with_capacity(input.coupons.len());
    for (i, coupon) in input.coupons.iter().enumerate() {
        let before: Money = lines.iter().map(|l| l.coupon_discount).sum();
        // Units the coupons before it gave free, if it gives a unit free too.
        let given = input.coupons[..i]
            .iter()
            .filter(|c| c.kind == coupon.kind)
            .count();
        apply_coupon(coupon, given, &mut lines)?;
        let after: Money = lines.iter().map(|l| l.coupon_discount).sum();
        // Single use: one that takes nothing off (its item free already, the cart at ¥0) would
        // be used up for nothing. The customer keeps it for another sale.
        if after == before {
            return Err(PricingError::CouponGivesNothing {
                code: coupon.code.clone(),
            });
        }
        coupons.push(AppliedCoupon {
            code: coupon.code.clone(),
            discount: after - before,
        });
    }

    // Step 4: points.
    let rate = i128::from(input.rules.redeem_points_per_yuan);
    let base: Money = lines.iter().map(|l| l.amount).sum();
    let max_value = mul_div_floor(base, i128::from(input.rules.max_redeem_bps), 10_000);
    let held = match input.member {
        Some(m) => m.points(input.rules, today),
        None => 0,
    };
    let max_points = points_for_value(max_value, rate);
    // Fewer points held than pay the most allowed: what the points held pay, and only the
    // points that worth needs (a point or two too few to pay a fen pay nothing).
    let max_redeem_points = if max_points <= held {
        max_points
    } else {
        mul_div_ceil(mul_div_floor(held.max(0), 100, rate), rate, 100)
    };
    let mut points_value = 0;
    let mut points_redeemed = 0;
    if input.redeem_points > 0 {
        if input.member.is_none() {
            return Err(PricingError::PointsNeedMember);
        }
        if input.redeem_points > held {
            return Err(PricingError::InsufficientPoints {
                held,
                requested: input.redeem_points,
            });
        }
        points_value = mul_div_floor(input.redeem_points, 100, rate);
        if points_value > max_value {
            return Err(PricingError::RedeemAboveLimit { max_points });
        }
        if points_value == 0 {
            return Err(PricingError::RedeemTooSmall {
                points: input.redeem_points,
            });
        }
        // Only the points the whole minor units need are charged: at 1,000 points a yuan,
        // 1,009 points pay ¥1.00 and cost 1,000 (the 9 would buy nothing). Never more than
        // asked; at the chain's 100 a yuan, exactly what was asked.
        points_redeemed = mul_div_ceil(points_value, rate, 100);
        let amounts: Vec<Money> = lines.iter().map(|l| l.amount).collect();
        let values = allocate(points_value, &amounts);
        let points = allocate(points_redeemed, &values);
        for ((l, v), p) in lines.iter_mut().zip(values).zip(points) {
            l.points_value = v;
            l.points_redeemed = p;
        }
    }

    // Step 5: 抹零 on what is left to pay.
    let to_pay: Money = base - points_value;
    let dropped = input.rounding.dropped(to_pay);
    if dropped > 0 {
        let weights: Vec<Money> = lines.iter().map(PricedLine::paid).collect();
        for (l, d) in lines.iter_mut().zip(allocate(dropped, &weights)) {
            add_discount(l, d, Part::Rounding);
        }
    }

    let subtotal: Money = lines.iter().map(|l| i64::from(l.qty) * l.unit_price).sum();
    let discount_total: Money = lines.iter().map(|l| l.discount).sum();
    let total = subtotal - discount_total - points_value;

    let points_earned = match level_rule {
        Some(rule) if input.member.is_some() => {
            mul_div_floor(total, i128::from(rule.points_per_yuan_milli), 100_000)
        }
        _ => 0,
    };
    if points_earned > 0 {
        let paid: Vec<Money> = lines.iter().map(PricedLine::paid).collect();
        for (l, p) in lines.iter_mut().zip(allocate(points_earned, &paid)) {
            l.points_earned = p;
        }
    }

    Ok(Quote {
        lines,
        subtotal,
        discount_total,
        points_redeemed,
        points_value,
        total,
        points_earned,
        benefit,
        level: level_rule.map(LevelRef::from),
        coupons,
        max_redeem_points,
    })
}

#[derive(Clone, Copy)]
enum Part {
    Member,
    Coupon,
    Rounding,
}

/// Adds a discount to a line, never taking the line below zero.
fn add_discount(line: &mut PricedLine, amount: Money, part: Part) {
    let d = amount.clamp(0, line.amount);
    line.discount += d;
    line.amount -= d;
    match part {
        Part::Member => line.member_discount += d,
        Part::Coupon => line.coupon_discount += d,
        Part::Rounding => line.rounding += d,
    }
}

fn check_coupons(input: &PricingInput<'_>) -> Result<(), PricingError> {
    let coupons = input.coupons;
    for (i, c) in coupons.iter().enumerate() {
        if coupons[..i].iter().any(|o| o.code == c.code) {
            return Err(PricingError::DuplicateCoupon {
                code: c.code.clone(),
            });
        }
    }
    if coupons.len() > 1 && !coupons.iter().all(|c| c.stackable) {
        return Err(PricingError::TooManyCoupons);
    }
    for c in coupons {
        let code = || c.code.clone();
        if c.used.is_some() {
            return Err(PricingError::CouponUsed { code: code() });
        }
        if c.valid_from.is_some_and(|f| input.now < f) {
            return Err(PricingError::CouponNotYetValid { code: code() });
        }
        if c.valid_to.is_some_and(|t| input.now > t) {
            return Err(PricingError::CouponExpired { code: code() });
        }
        if let Some(owner) = &c.member_id
            && input.member.map(|m| &m.id) != Some(owner)
        {
            return Err(PricingError::CouponNotYours { code: code() });
        }
    }
    Ok(())
}

/// Applies `coupon` to the lines; for a free item, `given` earlier coupons of the sale each
/// gave one unit of the same product free already.
fn apply_coupon(
    coupon: &Coupon,
    given: usize,
    lines: &mut [PricedLine],
) -> Result<(), PricingError> {
    match &coupon.kind {
        CouponKind::AmountOff { threshold, amount } => {
            let base: Money = lines.iter().map(|l| l.amount).sum();
            if base < *threshold {
                return Err(PricingError::CouponThreshold {
                    code: coupon.code.clone(),
                    threshold: *threshold,
                    amount: base,
                });
            }
            let off = (*amount).clamp(0, base);
            let weights: Vec<Money> = lines.iter().map(|l| l.amount).collect();
            for (l, d) in lines.iter_mut().zip(allocate(off, &weights)) {
                add_discount(l, d, Part::Coupon);
            }
        }
        CouponKind::PercentOff { bps, cap } => {
            let bps = (*bps).min(10_000);
            let mut parts: Vec<Money> = lines.iter().map(|l| percent_of(l.amount, bps)).collect();
            if let Some(cap) = cap
                && parts.iter().sum::<Money>() > *cap
            {
                let weights: Vec<Money> = lines.iter().map(|l| l.amount).collect();
                parts = allocate((*cap).max(0), &weights);
            }
            for (l, d) in lines.iter_mut().zip(parts) {
                add_discount(l, d, Part::Coupon);
            }
        }
        CouponKind::FreeItem { sku } => {
            // The units not given free yet: a coupon without one left finds none in the cart.
            let left = |l: &PricedLine| i64::from(l.qty) - i64::try_from(given).unwrap_or(i64::MAX);
            let Some(line) = lines.iter_mut().find(|l| &l.sku == sku && left(l) > 0) else {
                return Err(PricingError::CouponItemMissing {
                    code: coupon.code.clone(),
                    sku: sku.clone(),
                });
            };
            // One of those units, at what they cost now (not the line's average, which the
            // units already given free have lowered).
            let one_unit = line.amount / left(line);
            add_discount(line, one_unit, Part::Coupon);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
