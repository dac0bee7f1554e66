//! Property tests for the money invariants of design sections 2 and 3: whatever the cart,
//! member, coupon and points, totals are never negative, discounts never exceed the subtotal,
//! points never go negative, and refunding a whole sale gives back exactly what it took.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use proptest::prelude::*;

use super::catalog::{Coupon, CouponKind, Product, Promo};
use super::member::{Consent, Gender, Member, Profile, StoreCounters};
use super::money::{Money, TotalRounding};
use super::pricing::tests::{now, product};
use super::pricing::{CartItem, PricingError, PricingInput, price};
use super::refund::{RefundContext, apply_refund, compute_refund};
use super::rules::{Rules, SpendWindow};
use super::sale::{Payment, PaymentMethod, SaleContext, apply_sale, build_sale, settle};

#[derive(Debug, Clone)]
struct Case {
    products: Vec<(Money, Option<Money>, bool, u32)>,
    spend: Money,
    points: i64,
    birthday_today: bool,
    coupon: Option<CouponKind>,
    redeem_pct: u32,
    rounding: TotalRounding,
    window: SpendWindow,
    /// Months after which earned points lapse, with points earned in 2024-03 and paid with
    /// in 2025-02 (a member's older history).
    expiry: Option<u32>,
    old_points: (i64, i64),
}

fn coupon_kind() -> impl Strategy<Value = Option<CouponKind>> {
    prop_oneof![
        Just(None),
        (0i64..50_000, 0i64..60_000)
            .prop_map(|(threshold, amount)| Some(CouponKind::AmountOff { threshold, amount })),
        (0u32..=10_000, proptest::option::of(0i64..20_000))
            .prop_map(|(bps, cap)| Some(CouponKind::PercentOff { bps, cap })),
        Just(Some(CouponKind::FreeItem { sku: "P0".into() })),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(
            (
                0i64..200_000,
                proptest::option::of(0i64..200_000),
                any::<bool>(),
                1u32..30,
            ),
            1..6,
        ),
        0i64..800_000,
        0i64..100_000,
        any::<bool>(),
        coupon_kind(),
        0u32..=100,
        prop_oneof![
            Just(TotalRounding::None),
            Just(TotalRounding::DropFen),
            Just(TotalRounding::DropJiao)
        ],
        prop_oneof![
            Just(SpendWindow::Lifetime),
            Just(SpendWindow::CalendarYear),
            Just(SpendWindow::Rolling365d)
        ],
        proptest::option::of(1u32..=36),
        (0i64..50_000, 0i64..80_000),
    )
        .prop_map(
            |(
                products,
                spend,
                points,
                birthday_today,
                coupon,
                redeem_pct,
                rounding,
                window,
                expiry,
                old_points,
            )| {
                Case {
                    products,
                    spend,
                    points,
                    birthday_today,
                    coupon,
                    redeem_pct,
                    rounding,
                    window,
                    expiry,
                    old_points,
                }
            },
        )
}

fn make_member(c: &Case) -> Member {
    let mut counters = BTreeMap::new();
    let mut sc = StoreCounters::default();
    let m = sc.month_mut("2026-06");
    m.spend = c.spend;
    m.points_earned = c.points;
    sc.month_mut("2024-03").points_earned = c.old_points.0;
    sc.month_mut("2025-02").points_redeemed = c.old_points.1.min(c.old_points.0);
    counters.insert("sh-002".to_string(), sc);
    let birthday = if c.birthday_today {
        NaiveDate::from_ymd_opt(1990, 11, 23)
    } else {
        NaiveDate::from_ymd_opt(1990, 5, 1)
    };
    Member {
        id: "m".into(),
        profile: Some(Profile {
            name: "王".into(),
            phone: "13900000000".into(),
            gender: Gender::Unknown,
            birthday,
            card_no: None,
        }),
        tags: vec![],
        consent: Consent::default(),
        level: None,
        created_at: now(),
        created_store: "sh-001".into(),
        counters,
        version: 0,
        seq: 0,
        erased_at: None,
    }
}

fn make_products(c: &Case) -> Vec<Product> {
    c.products
        .iter()
        .enumerate()
        .map(|(i, (price, promo, member_discount, _))| {
            let mut p = product(&format!("P{i}"), *price);
            p.promo = promo.map(|price| Promo {
                price,
                from: None,
                to: None,
            });
            p.member_discount = *member_discount;
            p
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn money_and_points_invariants(c in case()) {
        let rules = Rules {
            spend_window: c.window,
            points_expiry_months: c.expiry,
            ..Default::default()
        };
        let member = make_member(&c);
        let products = make_products(&c);
        let items: Vec<CartItem> = products.iter().zip(&c.products)
            .map(|(p, (_, _, _, qty))| CartItem { product: p, qty: *qty })
            .collect();
        let coupons: Vec<Coupon> = c.coupon.iter().map(|kind| Coupon {
            code: "C".into(), title: String::new(), kind: kind.clone(), valid_from: None,
            valid_to: None, member_id: None, combinable_with_level: true, stackable: false,
            used: None, version: 0, seq: 0,
        }).collect();
        let today = now().date_naive();
        let mut input = PricingInput {
            items: &items, member: Some(&member), coupons: &coupons, redeem_points: 0,
            rules: &rules, now: now(), rounding: c.rounding,
        };
        // A coupon whose threshold the cart misses is refused, and one that would take
        // nothing off (a 0 % coupon, a cart at ¥0: kept for another sale); nothing else may be.
        let q0 = match price(&input) {
            Ok(q) => q,
            Err(PricingError::CouponThreshold { .. } | PricingError::CouponGivesNothing { .. }) => {
                return Ok(())
            }
            Err(e) => return Err(TestCaseError::fail(format!("refused: {e}"))),
        };
        prop_assert!(q0.max_redeem_points <= member.points(&rules, today));
        // Whatever the quote offered as redeemable must be accepted.
        input.redeem_points = q0.max_redeem_points * i64::from(c.redeem_pct) / 100;
        let q = price(&input).map_err(|e| TestCaseError::fail(format!("redeem refused: {e}")))?;

        prop_assert!(q.total >= 0);
        prop_assert!(q.discount_total >= 0);
        prop_assert!(q.discount_total <= q.subtotal);
        prop_assert!(q.points_value <= q.subtotal - q.discount_total);
        prop_assert!(q.points_earned >= 0);
        for l in &q.lines {
            prop_assert!(l.amount >= 0 && l.discount >= 0 && l.points_value >= 0);
            prop_assert!(l.points_value <= l.amount);
            prop_assert_eq!(l.amount, i64::from(l.qty) * l.unit_price - l.discount);
        }
        prop_assert_eq!(q.lines.iter().map(|l| l.paid()).sum::<Money>(), q.total);
        prop_assert_eq!(q.lines.iter().map(|l| l.points_earned).sum::<i64>(), q.points_earned);
        prop_assert_eq!(q.lines.iter().map(|l| l.points_redeemed).sum::<i64>(), q.points_redeemed);

        // Record it, paid in cash with a round note on top.
        let payments = vec![Payment { method: PaymentMethod::Cash, amount: q.total + 10_000 }];
        let (paid, change) = settle(q.total, &payments).unwrap();
        prop_assert_eq!(change, 10_000);
        let stock_before: i64 = 1_000;
        let sold: i64 = q.lines.iter().map(|l| i64::from(l.qty)).sum();
        let sale = build_sale(
            SaleContext { id: "s".into(), seq: 7, store_id: "sh-001".into(), now: now(),
                staff_no: "1".into(), terminal_id: "t".into() },
            q, payments, paid, change, Some(&member), &rules,
        );
        let mut after_sale = member.clone();
        apply_sale(&mut after_sale, &sale);
        prop_assert!(after_sale.points(&rules, today) >= 0);
        prop_assert_eq!(Some(after_sale.points(&rules, today)), sale.member.as_ref().map(|m| m.points));
        prop_assert_eq!(after_sale.total_spend(), member.total_spend() + sale.total);

        // Refund everything, in two steps when there is more than one unit on the first line.
        let ctx = |seq| RefundContext { id: format!("r{seq}"), seq, store_id: "sh-001".into(),
            now: now(), staff_no: "2".into(), terminal_id: "t".into(), reason: "test".into(),
            restock: true };
        let mut m = after_sale.clone();
        let mut refunds = Vec::new();
        if sale.lines[0].qty > 1 {
            let part = [super::refund::RefundRequestLine { sku: sale.lines[0].sku.clone(), qty: 1 }];
            let r = compute_refund(ctx(8), &sale, &refunds, Some(&part), Some(&m), &rules).unwrap();
            apply_refund(&mut m, &r);
            prop_assert!(m.points(&rules, today) >= 0);
            refunds.push(r);
        }
        let r = compute_refund(ctx(9), &sale, &refunds, None, Some(&m), &rules).unwrap();
        apply_refund(&mut m, &r);
        refunds.push(r);
        let restocked: i64 = refunds.iter().flat_map(|r| &r.lines).map(|l| i64::from(l.qty)).sum();

        prop_assert_eq!(m.total_spend(), member.total_spend());
        prop_assert_eq!(m.points(&rules, today), member.points(&rules, today));
        prop_assert_eq!(stock_before - sold + restocked, stock_before);
        prop_assert_eq!(refunds.iter().map(|r| r.refund_total).sum::<Money>(), sale.total);
        prop_assert!(refunds.iter().all(|r| r.points_shortfall == 0));
        let refunded: Money = refunds.iter().flat_map(|r| &r.payments).map(|p| p.amount).sum();
        prop_assert_eq!(refunded, sale.total);
        // Nothing is left to refund.
        prop_assert!(compute_refund(ctx(10), &sale, &refunds, None, Some(&m), &rules).is_err());
    }
}
