use std::collections::BTreeMap;

use chrono::{FixedOffset, NaiveDate, TimeZone};

use super::*;
use crate::domain::catalog::{CouponUse, Promo};
use crate::domain::member::{Consent, Gender, Profile};
use crate::domain::sale::{Payment, PaymentMethod, SaleContext, apply_sale, build_sale, settle};

pub(crate) fn now() -> DateTime<FixedOffset> {
    FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2026, 11, 23, 10, 15, 0)
        .unwrap()
}

pub(crate) fn product(sku: &str, price: Money) -> Product {
    Product {
        sku: sku.into(),
        name: format!("商品{sku}"),
        barcodes: vec![],
        price,
        promo: None,
        category: None,
        unit: None,
        member_discount: true,
        active: true,
        version: 0,
        seq: 0,
    }
}

pub(crate) fn member(spend: Money, points: i64, birthday: Option<NaiveDate>) -> Member {
    let mut counters = BTreeMap::new();
    if spend > 0 || points > 0 {
        let mut c = crate::domain::member::StoreCounters::default();
        let m = c.month_mut("2026-01");
        m.spend = spend;
        m.points_earned = points;
        counters.insert("sh-001".to_string(), c);
    }
    let rules = Rules::default();
    let level = rules.level_for_spend(spend).map(|l| l.code.clone());
    Member {
        id: "m-1".into(),
        profile: Some(Profile {
            name: "李娜".into(),
            phone: "13800138000".into(),
            gender: Gender::Female,
            birthday,
            card_no: None,
        }),
        tags: vec![],
        consent: Consent::default(),
        level,
        created_at: now(),
        created_store: "sh-001".into(),
        counters,
        version: 0,
        seq: 0,
        erased_at: None,
    }
}

pub(crate) fn coupon(code: &str, kind: CouponKind) -> Coupon {
    Coupon {
        code: code.into(),
        title: String::new(),
        kind,
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

fn quote(
    items: &[(&Product, u32)],
    member: Option<&Member>,
    coupons: &[Coupon],
    redeem: i64,
) -> Result<Quote, PricingError> {
    let rules = Rules::default();
    let items: Vec<CartItem> = items
        .iter()
        .map(|(p, q)| CartItem {
            product: p,
            qty: *q,
        })
        .collect();
    price(&PricingInput {
        items: &items,
        member,
        coupons,
        redeem_points: redeem,
        rules: &rules,
        now: now(),
        rounding: TotalRounding::None,
    })
}

fn sell(m: &Member, q: Quote) -> crate::domain::sale::Sale {
    let payments = vec![Payment {
        method: PaymentMethod::Cash,
        amount: q.total.max(1),
    }];
    let (paid, change) = settle(q.total, &payments).unwrap();
    let ctx = SaleContext {
        id: "s-1".into(),
        seq: 1,
        store_id: "sh-001".into(),
        now: now(),
        staff_no: "1001".into(),
        terminal_id: "pos-1".into(),
    };
    build_sale(ctx, q, payments, paid, change, Some(m), &Rules::default())
}

#[test]
fn anonymous_sale_costs_the_subtotal() {
    let a = product("A", 1250);
    let q = quote(&[(&a, 3)], None, &[], 0).unwrap();
    assert_eq!(q.subtotal, 3750);
    assert_eq!(q.total, 3750);
    assert_eq!(q.points_earned, 0);
}

#[test]
fn first_sale_reaches_regular_but_earns_nothing() {
    let m = member(0, 0, None);
    let a = product("A", 250_000);
    let q = quote(&[(&a, 1)], Some(&m), &[], 0).unwrap();
    assert_eq!(q.total, 250_000);
    assert_eq!(
        q.points_earned, 0,
        "no level when the sale began, no points"
    );
    let sale = sell(&m, q);
    let after = sale.member.as_ref().unwrap();
    assert_eq!(
        after.upgraded_to.as_ref().map(|l| l.code.as_str()),
        Some("regular")
    );
    assert_eq!(after.points, 0);

    let mut m2 = m.clone();
    apply_sale(&mut m2, &sale);
    let b = product("B", 10_000);
    let q2 = quote(&[(&b, 1)], Some(&m2), &[], 0).unwrap();
    assert_eq!(q2.points_earned, 100, "¥100 at 普通会员 earns 100 points");
}

#[test]
fn silver_earns_1_2_points_per_yuan() {
    let m = member(300_000, 0, None);
    let a = product("A", 10_000);
    let q = quote(&[(&a, 1)], Some(&m), &[], 0).unwrap();
    assert_eq!(q.points_earned, 120);
}

#[test]
fn birthday_discount_once_a_year() {
    let m = member(150_000, 0, NaiveDate::from_ymd_opt(1990, 11, 23));
    let a = product("A", 10_000);
    let q = quote(&[(&a, 1)], Some(&m), &[], 0).unwrap();
    assert_eq!(q.benefit, Some(Benefit::Birthday));
    assert_eq!(q.total, 8_000, "普通会员 pays 8折 on the birthday");
    let sale = sell(&m, q);
    let mut m2 = m.clone();
    apply_sale(&mut m2, &sale);
    let q2 = quote(&[(&a, 1)], Some(&m2), &[], 0).unwrap();
    assert_eq!(q2.benefit, None);
    assert_eq!(q2.total, 10_000);
}

#[test]
fn birthday_discount_skips_excluded_products() {
    let m = member(150_000, 0, NaiveDate::from_ymd_opt(1990, 11, 23));
    let a = product("A", 10_000);
    let mut tobacco = product("T", 5_000);
    tobacco.member_discount = false;
    let q = quote(&[(&a, 1), (&tobacco, 1)], Some(&m), &[], 0).unwrap();
    assert_eq!(q.total, 8_000 + 5_000);
}

#[test]
fn points_redemption_limits() {
    let m = member(150_000, 3_000, None);
    let a = product("A", 4_000);
    assert_eq!(
        quote(&[(&a, 1)], Some(&m), &[], 3_001),
        Err(PricingError::InsufficientPoints {
            held: 3_000,
            requested: 3_001
        })
    );
    assert_eq!(
        quote(&[(&a, 1)], Some(&m), &[], 2_001),
        Err(PricingError::RedeemAboveLimit { max_points: 2_000 })
    );
    let q = quote(&[(&a, 1)], Some(&m), &[], 2_000).unwrap();
    assert_eq!(q.points_value, 2_000);
    assert_eq!(q.total, 2_000);
    assert_eq!(q.points_earned, 20, "points paid with points earn nothing");
    assert_eq!(
        quote(&[(&a, 1)], None, &[], 10),
        Err(PricingError::PointsNeedMember)
    );
}

/// `items` priced for `m` redeeming `redeem` points at `rate` points a yuan.
fn redeeming(
    items: &[CartItem<'_>],
    m: &Member,
    rate: u32,
    redeem: i64,
) -> Result<Quote, PricingError> {
    let rules = Rules {
        redeem_points_per_yuan: rate,
        ..Rules::default()
    };
    price(&PricingInput {
        items,
        member: Some(m),
        coupons: &[],
        redeem_points: redeem,
        rules: &rules,
        now: now(),
        rounding: TotalRounding::None,
    })
}

/// At 1,000 points a yuan a point is worth a tenth of a fen: a redemption is charged only the
/// points its whole fen need, never more than asked (at the chain's 100 a yuan, exactly what
/// was asked).
#[test]
fn only_the_points_whole_fen_need_are_charged() {
    let m = member(150_000, 30_009, None);
    let a = product("A", 4_001);
    let items = [CartItem {
        product: &a,
        qty: 1,
    }];
    let priced = |rate: u32, redeem| redeeming(&items, &m, rate, redeem);
    let q = priced(1_000, 1_009).unwrap();
    assert_eq!((q.points_redeemed, q.points_value), (1_000, 100));
    assert_eq!(
        q.lines.iter().map(|l| l.points_redeemed).sum::<i64>(),
        1_000
    );
    assert_eq!(q.total, 4_001 - 100);
    assert_eq!(
        priced(1_000, 9),
        Err(PricingError::RedeemTooSmall { points: 9 })
    );
    // 150 a yuan: 301 points are worth 200.67 fen; 200 fen cost 300 points.
    let q = priced(150, 301).unwrap();
    assert_eq!((q.points_redeemed, q.points_value), (300, 200));
    // 99 a yuan: 98 points pay 98 fen (98.99 worth) and cost all 98.
    let q = priced(99, 98).unwrap();
    assert_eq!((q.points_redeemed, q.points_value), (98, 98));
    // The chain's rate: what is asked.
    let q = priced(100, 1_234).unwrap();
    assert_eq!((q.points_redeemed, q.points_value), (1_234, 1_234));
}

/// The quote's `max_redeem_points`, whatever the rate, is accepted and pays the most the
/// sale allows: no fewer points pay as much, and more are refused or pay no more. (At 150 a
/// yuan the floor of the allowed value's points, 967 for ¥6.45, paid only ¥6.44, while 968,
/// which pays ¥6.45, was accepted.)
#[test]
fn the_quoted_maximum_redemption_pays_the_most_allowed() {
    let m = member(150_000, 1_000_000, None);
    for price_fen in [1_290, 1_291, 4_001, 9_999] {
        let a = product("A", price_fen);
        let items = [CartItem {
            product: &a,
            qty: 1,
        }];
        for rate in [1, 7, 50, 99, 100, 150, 333, 1_000] {
            let priced = |redeem| redeeming(&items, &m, rate, redeem);
            let max = priced(0).unwrap().max_redeem_points;
            let case = format!("{price_fen} fen at {rate} a yuan, max {max}");
            let value = |r: Result<Quote, PricingError>| r.map(|q| q.points_value).unwrap_or(0);
            let best = value(priced(max));
            if max > 0 {
                let q = priced(max).unwrap_or_else(|e| panic!("{case}: {e:?}"));
                assert_eq!(q.points_redeemed, max, "{case}: charged");
                assert!(
                    value(priced(max - 1)) < best,
                    "{case}: one fewer pays as much"
                );
            }
            for more in [max + 1, max + 2, max + i64::from(rate)] {
                assert!(value(priced(more)) <= best, "{case}: {more} pay more");
            }
        }
    }
}

#[test]
fn coupons_apply_after_member_discount() {
    let m = member(150_000, 0, NaiveDate::from_ymd_opt(1990, 11, 23));
    let a = product("A", 15_000);
    let c = coupon(
        "C100-20",
        CouponKind::AmountOff {
            threshold: 10_000,
            amount: 2_000,
        },
    );
    // 150 → birthday 8折 → 120 → 满100减20 → 100.
    let q = quote(&[(&a, 1)], Some(&m), std::slice::from_ref(&c), 0).unwrap();
    assert_eq!(q.total, 10_000);
    assert_eq!(q.lines[0].member_discount, 3_000);
    assert_eq!(q.lines[0].coupon_discount, 2_000);

    let mut exclusive = c.clone();
    exclusive.combinable_with_level = false;
    let q = quote(&[(&a, 1)], Some(&m), &[exclusive], 0).unwrap();
    assert_eq!(q.total, 13_000);
    assert_eq!(q.benefit, None);
}

#[test]
fn coupon_rules() {
    let a = product("A", 5_000);
    let c = coupon(
        "T",
        CouponKind::AmountOff {
            threshold: 10_000,
            amount: 2_000,
        },
    );
    assert!(matches!(
        quote(&[(&a, 1)], None, std::slice::from_ref(&c), 0),
        Err(PricingError::CouponThreshold { .. })
    ));
    let mut used = c.clone();
    used.used = Some(CouponUse {
        sale_id: "x".into(),
        store_id: "sh-001".into(),
        at: now(),
    });
    assert!(matches!(
        quote(&[(&a, 3)], None, &[used], 0),
        Err(PricingError::CouponUsed { .. })
    ));
    let mut expired = c.clone();
    expired.valid_to = Some(now() - chrono::Duration::days(1));
    assert!(matches!(
        quote(&[(&a, 3)], None, &[expired], 0),
        Err(PricingError::CouponExpired { .. })
    ));
    let mut bound = c.clone();
    bound.member_id = Some("someone-else".into());
    assert!(matches!(
        quote(&[(&a, 3)], None, &[bound], 0),
        Err(PricingError::CouponNotYours { .. })
    ));
    let pct = coupon(
        "P",
        CouponKind::PercentOff {
            bps: 1000,
            cap: None,
        },
    );
    assert_eq!(
        quote(&[(&a, 3)], None, &[c.clone(), pct.clone()], 0),
        Err(PricingError::TooManyCoupons)
    );
    let q = quote(&[(&a, 3)], None, &[pct], 0).unwrap();
    assert_eq!(q.total, 13_500);
    let free = coupon("F", CouponKind::FreeItem { sku: "A".into() });
    assert_eq!(quote(&[(&a, 3)], None, &[free], 0).unwrap().total, 10_000);
}

/// Two stackable "one free" coupons for the same product, on two units, give both units
/// (each coupon one unit at its price, not half of what the first left).
#[test]
fn stacked_free_item_coupons_give_a_unit_each() {
    let a = product("A", 1_000);
    let mut free = coupon("F1", CouponKind::FreeItem { sku: "A".into() });
    free.stackable = true;
    let mut again = free.clone();
    again.code = "F2".into();
    let q = quote(&[(&a, 2)], None, &[free.clone(), again.clone()], 0).unwrap();
    assert_eq!(q.total, 0);
    assert_eq!(
        q.coupons.iter().map(|c| c.discount).collect::<Vec<_>>(),
        [1_000, 1_000]
    );
    let q = quote(&[(&a, 3)], None, &[free.clone(), again.clone()], 0).unwrap();
    assert_eq!(q.total, 1_000);
    // More free units than the cart holds: the last coupon has no unit to give.
    assert!(matches!(
        quote(&[(&a, 1)], None, &[free, again], 0),
        Err(PricingError::CouponItemMissing { .. })
    ));
}

/// A coupon that would take nothing off — its free item costs ¥0 already, a percent off a cart
/// of ¥0 — is refused, not used up for nothing.
#[test]
fn a_coupon_that_takes_nothing_off_is_not_used_up() {
    let free_already = product("GIFT", 0);
    let coffee = coupon("F1", CouponKind::FreeItem { sku: "GIFT".into() });
    assert!(matches!(
        quote(&[(&free_already, 1)], None, &[coffee], 0),
        Err(PricingError::CouponGivesNothing { code }) if code == "F1"
    ));
    let tenth = coupon(
        "P10",
        CouponKind::PercentOff {
            bps: 1_000,
            cap: None,
        },
    );
    assert!(matches!(
        quote(&[(&free_already, 2)], None, std::slice::from_ref(&tenth), 0),
        Err(PricingError::CouponGivesNothing { .. })
    ));
    let a = product("A", 1_000);
    let q = quote(&[(&a, 1)], None, &[tenth], 0).unwrap();
    assert_eq!(q.coupons[0].discount, 100);
}

#[test]
fn promotions_and_rounding() {
    let mut a = product("A", 1_299);
    a.promo = Some(Promo {
        price: 999,
        from: None,
        to: None,
    });
    let items = [CartItem {
        product: &a,
        qty: 3,
    }];
    let rules = Rules::default();
    let q = price(&PricingInput {
        items: &items,
        member: None,
        coupons: &[],
        redeem_points: 0,
        rules: &rules,
        now: now(),
        rounding: TotalRounding::DropJiao,
    })
    .unwrap();
    // 3 × 9.99 = 29.97 → 抹零 → 29.00
    assert_eq!(q.subtotal, 3_897);
    assert_eq!(q.lines[0].promo_discount, 900);
    assert_eq!(q.lines[0].rounding, 97);
    assert_eq!(q.total, 2_900);
}

#[test]
fn rejects_bad_quantities() {
    let a = product("A", 100);
    assert!(matches!(
        quote(&[(&a, 0)], None, &[], 0),
        Err(PricingError::BadQuantity { .. })
    ));
    assert!(matches!(
        quote(&[(&a, MAX_QTY + 1)], None, &[], 0),
        Err(PricingError::BadQuantity { .. })
    ));
    assert_eq!(quote(&[], None, &[], 0), Err(PricingError::EmptyCart));
}

/// A capped birthday rate above the level's is taken only when it is worth more in money: on a
/// big cart the level's discount is larger, and the year's birthday stays unused.
#[test]
fn a_capped_birthday_discount_is_taken_only_when_worth_more() {
    let m = member(150_000, 0, NaiveDate::from_ymd_opt(1990, 11, 23));
    let mut rules = Rules::default();
    let code = m
        .effective_level(&rules, now().date_naive())
        .unwrap()
        .code
        .clone();
    for l in rules.levels.iter_mut().filter(|l| l.code == code) {
        l.discount_bps = 1_000;
        l.birthday_discount_bps = 2_000;
        l.birthday_discount_cap = Some(1_000);
    }
    let quote = |price_each: Money| {
        let a = product("A", price_each);
        let items = [CartItem {
            product: &a,
            qty: 1,
        }];
        price(&PricingInput {
            items: &items,
            member: Some(&m),
            coupons: &[],
            redeem_points: 0,
            rules: &rules,
            now: now(),
            rounding: TotalRounding::None,
        })
        .unwrap()
    };
    // ¥1,000: 10 % is ¥100, the birthday's 20 % only ¥10 with its cap.
    let big = quote(100_000);
    assert_eq!((big.benefit, big.total), (Some(Benefit::Level), 90_000));
    // ¥50: the birthday's ¥10 beats the level's ¥5.
    let small = quote(5_000);
    assert_eq!(
        (small.benefit, small.total),
        (Some(Benefit::Birthday), 4_000)
    );
}

/// A birthday week that spans New Year gives its discount once: used on 29 December 2026 for a
/// 31 December birthday, it is not given again on 2 January 2027 (the same week), and the
/// next birthday's week gives it again.
#[test]
fn a_birthday_week_across_new_year_gives_the_discount_once() {
    let mut m = member(150_000, 0, NaiveDate::from_ymd_opt(1990, 12, 31));
    let rules = Rules {
        birthday_window: crate::domain::rules::BirthdayWindow::Week,
        ..Rules::default()
    };
    let a = product("A", 10_000);
    let items = [CartItem {
        product: &a,
        qty: 1,
    }];
    let at = |y, mo, d| {
        FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .with_ymd_and_hms(y, mo, d, 10, 0, 0)
            .unwrap()
    };
    let quote = |m: &Member, now| {
        price(&PricingInput {
            items: &items,
            member: Some(m),
            coupons: &[],
            redeem_points: 0,
            rules: &rules,
            now,
            rounding: TotalRounding::None,
        })
        .unwrap()
    };
    let q = quote(&m, at(2026, 12, 29));
    assert_eq!(q.benefit, Some(Benefit::Birthday));
    let payments = vec![Payment {
        method: PaymentMethod::Cash,
        amount: q.total,
    }];
    let ctx = SaleContext {
        id: "s-1".into(),
        seq: 1,
        store_id: "sh-001".into(),
        now: at(2026, 12, 29),
        staff_no: "1001".into(),
        terminal_id: "pos-1".into(),
    };
    let total = q.total;
    let sale = build_sale(ctx, q, payments, total, 0, Some(&m), &rules);
    assert_eq!(sale.birthday_year, Some(2026));
    apply_sale(&mut m, &sale);
    assert_eq!(quote(&m, at(2027, 1, 2)).benefit, None);
    assert_eq!(quote(&m, at(2027, 1, 4)).benefit, None);
    assert_eq!(quote(&m, at(2027, 12, 28)).benefit, Some(Benefit::Birthday));
}

/// With fewer points held than pay the most allowed, the quoted maximum is still a redemption
/// that is accepted and charged in full (at 150 a yuan, 1 point held was quoted and refused as
/// too small; 4 were quoted and 3 charged).
#[test]
fn the_quoted_maximum_with_few_points_held_is_accepted_and_charged() {
    let a = product("A", 9_999);
    let items = [CartItem {
        product: &a,
        qty: 1,
    }];
    for (rate, held) in [(150, 1), (150, 4), (1_000, 9), (1_000, 1_009), (333, 5)] {
        let m = member(150_000, held, None);
        let priced = |redeem| redeeming(&items, &m, rate, redeem);
        let max = priced(0).unwrap().max_redeem_points;
        if max > 0 {
            let q = priced(max)
                .unwrap_or_else(|e| panic!("rate {rate} held {held}: max {max} refused: {e:?}"));
            assert_eq!(
                q.points_redeemed, max,
                "rate {rate} held {held}: max {max} charged"
            );
        }
    }
}
