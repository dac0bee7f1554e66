//! The largest carts and balances the store accepts, priced, sold and refunded: every figure
//! adds up and none wraps (only a balance past `i64` saturates, by design). The release build
//! panics on an overflow as the tests do (`overflow-checks` in `Cargo.toml`), so an input the
//! checks let through but the arithmetic cannot hold would be a `500` at the till; these are
//! the inputs at the edge.

use super::catalog::{Coupon, CouponKind, MAX_UNIT_PRICE, Product};
use super::member::{Member, StoreCounters};
use super::money::{Money, TotalRounding};
use super::pricing::tests::{now, product};
use super::pricing::{CartItem, MAX_LINES, MAX_QTY, PricingInput, Quote, price};
use super::refund::{RefundContext, RefundRequestLine, apply_refund, compute_refund};
use super::rules::Rules;
use super::sale::{MAX_PAYMENT, Payment, PaymentMethod, SaleContext, apply_sale, build_sale};

/// A member with `points` earned and `spend` at each of `stores` stores: HQ's counters allow
/// 10¹² a month at 2,000 stores; `i64::MAX` at one store is what no sum may overflow on either.
fn member(points: i64, stores: usize) -> Member {
    let mut m = super::pricing::tests::member(0, 0, chrono::NaiveDate::from_ymd_opt(1990, 11, 23));
    m.counters.clear();
    for s in 0..stores {
        let mut c = StoreCounters::default();
        let month = c.month_mut("2026-11");
        month.points_earned = points;
        month.spend = 1_000_000_000_000;
        m.counters.insert(format!("s{s}"), c);
    }
    m
}

/// A stackable coupon (the edge carts stack all three kinds).
fn coupon(code: &str, kind: CouponKind) -> Coupon {
    Coupon {
        stackable: true,
        ..super::pricing::tests::coupon(code, kind)
    }
}

/// The rules at the edges of what the config and HQ's `rules` accept.
fn rules(rate: u32, max_redeem_bps: u32, member_bps: u32, expiry: Option<u32>) -> Rules {
    let mut r = Rules {
        redeem_points_per_yuan: rate,
        max_redeem_bps,
        points_expiry_months: expiry,
        ..Rules::default()
    };
    for l in &mut r.levels {
        l.points_per_yuan_milli = 1_000_000;
        l.discount_bps = member_bps;
        l.birthday_discount_bps = member_bps;
        l.birthday_discount_cap = Some(i64::MAX);
    }
    r.validate().unwrap();
    r
}

/// Payments that settle `total`: as many of the largest accepted as it takes (ten at most).
fn payments(total: Money) -> Vec<Payment> {
    let mut left = total;
    let mut out = Vec::new();
    while left > 0 && out.len() < 10 {
        let amount = left.min(MAX_PAYMENT);
        out.push(Payment {
            method: PaymentMethod::Cash,
            amount,
        });
        left -= amount;
    }
    out
}

/// Sells `quote` to `m` at store s0, refunds one unit of P1 and then the rest, and checks that
/// every figure adds up. Whether money was paid (a cart past ten of the largest payments is
/// only quoted).
fn sell_and_refund(m: &Member, quote: Quote, rules: &Rules) -> bool {
    let pay = payments(quote.total);
    let Ok((paid, change)) = super::sale::settle(quote.total, &pay) else {
        // More than ten of the largest payments: the till cannot take this cart.
        assert!(quote.total > 10 * MAX_PAYMENT);
        return false;
    };
    let ctx = SaleContext {
        id: "s".into(),
        seq: 1,
        store_id: "s0".into(),
        now: now(),
        staff_no: "1".into(),
        terminal_id: "t".into(),
    };
    let sale = build_sale(ctx, quote, pay, paid, change, Some(m), rules);
    assert_eq!(
        sale.subtotal - sale.discount_total - sale.points_value,
        sale.total
    );
    assert!(sale.total >= 0 && sale.points_value >= 0 && sale.points_earned >= 0);
    let line_points: i64 = sale.lines.iter().map(|l| l.points_redeemed).sum();
    assert_eq!(line_points, sale.points_redeemed);
    let mut after = m.clone();
    apply_sale(&mut after, &sale);
    let refund =
        |prior: &[super::refund::Refund], m: &Member, lines: Option<&[RefundRequestLine]>| {
            let ctx = RefundContext {
                id: "r".into(),
                seq: 2,
                store_id: "s0".into(),
                now: now(),
                staff_no: "1".into(),
                terminal_id: "t".into(),
                reason: String::new(),
                restock: true,
            };
            compute_refund(ctx, &sale, prior, lines, Some(m), rules).unwrap()
        };
    let one = [RefundRequestLine {
        sku: "P1".into(),
        qty: 1,
    }];
    let first = refund(&[], &after, Some(&one));
    apply_refund(&mut after, &first);
    let rest = refund(std::slice::from_ref(&first), &after, None);
    let paid_lines: Money = sale.lines.iter().map(|l| l.paid()).sum();
    assert_eq!(first.amount + rest.amount, paid_lines);
    assert_eq!(
        first.points_restored + rest.points_restored,
        sale.points_redeemed
    );
    assert!(first.refund_total >= 0 && rest.refund_total >= 0);
    // The member spent every point meanwhile: the shortfall is kept from the money.
    let mut spent = after.clone();
    let s0 = spent.counters.entry("s0".into()).or_default();
    s0.month_mut("2026-11").points_redeemed = i64::MAX;
    let kept = refund(&[], &spent, None);
    assert!((0..=kept.amount).contains(&kept.shortfall_value));
    sale.total > 0
}

#[test]
fn the_largest_carts_and_balances_price_sell_and_refund_exactly() {
    // Each cart has the most lines: the most units at the highest price (paid with points, or
    // only quoted), one unit at the highest price, and the most units at a price that ten of
    // the largest payments can just pay for (¥999,900,000).
    let carts: Vec<(Vec<Product>, u32)> = [
        (MAX_UNIT_PRICE, MAX_QTY),
        (MAX_UNIT_PRICE, 1),
        (20_000, MAX_QTY),
    ]
    .into_iter()
    .map(|(unit_price, qty)| {
        let products = (0..MAX_LINES)
            .map(|i| product(&format!("P{i}"), unit_price))
            .collect();
        (products, qty)
    })
    .collect();
    let all_coupons = [
        coupon(
            "AMOUNT",
            CouponKind::AmountOff {
                threshold: 0,
                amount: MAX_UNIT_PRICE,
            },
        ),
        coupon("FREE", CouponKind::FreeItem { sku: "P0".into() }),
        coupon(
            "PERCENT",
            CouponKind::PercentOff {
                bps: 10_000,
                cap: Some(MAX_UNIT_PRICE),
            },
        ),
    ];
    let mut sold = 0;
    for rate in [1, u32::MAX] {
        for max_redeem_bps in [5_000, 10_000] {
            for member_bps in [0, 10_000] {
                for expiry in [None, Some(1)] {
                    let rules = rules(rate, max_redeem_bps, member_bps, expiry);
                    for (points, stores) in [(1_000_000_000_000, 20), (i64::MAX, 1)] {
                        let m = member(points, stores);
                        for (products, qty) in &carts {
                            let items: Vec<CartItem> = products
                                .iter()
                                .map(|product| CartItem { product, qty: *qty })
                                .collect();
                            for coupons in [&[][..], &all_coupons[..]] {
                                let input = |redeem_points| PricingInput {
                                    items: &items,
                                    member: Some(&m),
                                    coupons,
                                    redeem_points,
                                    rules: &rules,
                                    now: now(),
                                    rounding: TotalRounding::DropJiao,
                                };
                                // A cart the member's discount made free takes no coupon
                                // (none would take anything off).
                                let Ok(first) = price(&input(0)) else {
                                    assert!(member_bps == 10_000 && !coupons.is_empty());
                                    continue;
                                };
                                let most = first.max_redeem_points;
                                for redeem in [most, 1, points] {
                                    if let Ok(quote) = price(&input(redeem))
                                        && sell_and_refund(&m, quote, &rules)
                                    {
                                        sold += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(sold > 20, "{sold} sales paid with money");
}
