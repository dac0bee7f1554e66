//! Refunds taken in several steps (a property: whatever the cart, the points paid and spent
//! between, the split of payments, the partial refunds sum to the sale), and the reversal of
//! earned points under an expiry.
use std::collections::BTreeMap;

use proptest::prelude::*;

use super::member::{Member, MonthCounters};
use super::money::{Money, TotalRounding};
use super::pricing::tests::{member, now, product};
use super::pricing::{CartItem, PricingInput, price};
use super::refund::{RefundContext, RefundRequestLine, apply_refund, compute_refund};
use super::rules::Rules;
use super::sale::{Payment, PaymentMethod, SaleContext, apply_sale, build_sale, settle};

/// Sale `s` (seq 7) at store sh-001 at `now`, rung up by staff 1.
fn sale_at(now: chrono::DateTime<chrono::FixedOffset>) -> SaleContext {
    SaleContext {
        id: "s".into(),
        seq: 7,
        store_id: "sh-001".into(),
        now,
        staff_no: "1".into(),
        terminal_id: "t".into(),
    }
}

/// A refund `id` (`seq`) at store sh-001 at `now` by staff 2, restocked.
fn refund_at(
    id: impl Into<String>,
    seq: u64,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> RefundContext {
    RefundContext {
        id: id.into(),
        seq,
        store_id: "sh-001".into(),
        now,
        staff_no: "2".into(),
        terminal_id: "t".into(),
        reason: "x".into(),
        restock: true,
    }
}

fn raw_points(m: &Member) -> i64 {
    let mut t = MonthCounters::default();
    for c in m.counters.values() {
        for mc in c.months.values() {
            t.points_earned += mc.points_earned;
            t.points_reversed += mc.points_reversed;
            t.points_redeemed += mc.points_redeemed;
            t.points_restored += mc.points_restored;
        }
    }
    t.points_earned - t.points_reversed - t.points_redeemed + t.points_restored
}

/// A case of [`multi_step_partial_refunds`].
#[derive(Debug, Clone)]
struct Steps {
    prices: Vec<(i64, u32)>,
    start_points: i64,
    redeem_pct: u32,
    spend_between: u32,
    steps: Vec<(usize, u32)>,
    split: i64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn multi_step_partial_refunds(
        prices in proptest::collection::vec((1i64..50_000, 1u32..6), 1..4),
        start_points in 0i64..20_000,
        redeem_pct in 0u32..=100,
        spend_between in 0u32..=100,
        steps in proptest::collection::vec((0usize..4, 1u32..4), 1..8),
        split in 0i64..=100,
    ) {
        check_steps(Steps { prices, start_points, redeem_pct, spend_between, steps, split })?;
    }
}

fn check_steps(case: Steps) -> Result<(), TestCaseError> {
    let Steps {
        prices,
        start_points,
        redeem_pct,
        spend_between,
        steps,
        split,
    } = case;
    let rules = Rules::default();
    let today = now().date_naive();
    let mut m = member(350_000, start_points, None);
    let products: Vec<_> = prices
        .iter()
        .enumerate()
        .map(|(i, (p, _))| product(&format!("P{i}"), *p))
        .collect();
    let items: Vec<CartItem> = products
        .iter()
        .zip(&prices)
        .map(|(p, (_, q))| CartItem {
            product: p,
            qty: *q,
        })
        .collect();
    let mut input = PricingInput {
        items: &items,
        member: Some(&m),
        coupons: &[],
        redeem_points: 0,
        rules: &rules,
        now: now(),
        rounding: TotalRounding::DropFen,
    };
    let q0 = price(&input).unwrap();
    input.redeem_points = q0.max_redeem_points * i64::from(redeem_pct) / 100;
    let q = match price(&input) {
        Ok(q) => q,
        Err(_) => return Ok(()),
    };
    let card = q.total * split / 100;
    let mut payments = vec![];
    if card > 0 {
        payments.push(Payment {
            method: PaymentMethod::Card,
            amount: card,
        });
    }
    if q.total - card > 0 {
        payments.push(Payment {
            method: PaymentMethod::Cash,
            amount: q.total - card + 50,
        });
    }
    let (paid, change) = settle(q.total, &payments).unwrap();
    let sale = build_sale(sale_at(now()), q, payments, paid, change, Some(&m), &rules);
    apply_sale(&mut m, &sale);
    prop_assert_eq!(raw_points(&m), sale.member.as_ref().unwrap().points);
    // The member spends some of the points elsewhere.
    let spend = m.points(&rules, today) * i64::from(spend_between) / 100;
    m.counters
        .entry("sh-002".into())
        .or_default()
        .month_mut("2026-11")
        .points_redeemed += spend;
    let mut refunds = vec![];
    let mut n = 0u64;
    for (line, qty) in steps {
        let line = line % sale.lines.len();
        let req = [RefundRequestLine {
            sku: sale.lines[line].sku.clone(),
            qty,
        }];
        n += 1;
        let ctx = refund_at(format!("r{n}"), 8 + n, now());
        let Ok(r) = compute_refund(ctx, &sale, &refunds, Some(&req), Some(&m), &rules) else {
            continue;
        };
        apply_refund(&mut m, &r);
        prop_assert!(
            raw_points(&m) >= 0,
            "negative points {} after {:?}",
            raw_points(&m),
            r
        );
        prop_assert_eq!(
            Some(m.points(&rules, today)),
            r.member.as_ref().map(|x| x.points)
        );
        prop_assert!(r.refund_total >= 0);
        refunds.push(r);
    }
    let ctx = refund_at("rlast", 100, now());
    if let Ok(r) = compute_refund(ctx, &sale, &refunds, None, Some(&m), &rules) {
        apply_refund(&mut m, &r);
        prop_assert!(raw_points(&m) >= 0);
        refunds.push(r);
    }
    let back: Money = refunds
        .iter()
        .map(|r| r.refund_total + r.shortfall_value)
        .sum();
    prop_assert_eq!(back, sale.total);
    let by: BTreeMap<String, Money> =
        refunds
            .iter()
            .flat_map(|r| &r.payments)
            .fold(BTreeMap::new(), |mut acc, p| {
                *acc.entry(format!("{:?}", p.method)).or_default() += p.amount;
                acc
            });
    for p in sale.net_payments() {
        let got = by.get(&format!("{:?}", p.method)).copied().unwrap_or(0);
        prop_assert!(got <= p.amount, "method got {} > paid {}", got, p.amount);
    }
    let paid_back: Money = refunds
        .iter()
        .flat_map(|r| &r.payments)
        .map(|p| p.amount)
        .sum();
    prop_assert_eq!(
        paid_back,
        refunds.iter().map(|r| r.refund_total).sum::<Money>()
    );
    let restored: i64 = refunds.iter().map(|r| r.points_restored).sum();
    prop_assert_eq!(restored, sale.points_redeemed);
    let qty: u32 = refunds.iter().flat_map(|r| &r.lines).map(|l| l.qty).sum();
    prop_assert_eq!(qty, sale.lines.iter().map(|l| l.qty).sum::<u32>());
    Ok(())
}

/// Points expiry (12 months). A sale on 2025-11-15 pays with 500 points earned in 2024-11
/// (their last month) and earns 120 points; the member spends those 120 points in 2025-12.
/// A refund a year later restores the 500 points, but they have lapsed by then: they cannot
/// cover the 120 earned points the member already used. Those must be a shortfall (money kept),
/// not "reversed" against points the member does not have.
#[test]
fn reversal_is_not_covered_by_restored_points_that_have_lapsed() {
    use chrono::{FixedOffset, TimeZone};
    let rules = Rules {
        points_expiry_months: Some(12),
        ..Rules::default()
    };
    let at = |y, mo, d| {
        FixedOffset::east_opt(8 * 3600)
            .unwrap()
            .with_ymd_and_hms(y, mo, d, 10, 0, 0)
            .unwrap()
    };
    let mut m = member(0, 0, None);
    {
        let c = m.counters.entry("sh-001".into()).or_default();
        c.month_mut("2024-01").spend = 350_000; // silver
        c.month_mut("2024-11").points_earned = 500;
    }
    m.level = Some("silver".into());
    let sale_day = at(2025, 11, 15);
    assert_eq!(m.points(&rules, sale_day.date_naive()), 500);
    let p = product("A", 11_000);
    let items = [CartItem {
        product: &p,
        qty: 1,
    }];
    let q = price(&PricingInput {
        items: &items,
        member: Some(&m),
        coupons: &[],
        redeem_points: 500,
        rules: &rules,
        now: sale_day,
        rounding: TotalRounding::None,
    })
    .unwrap();
    assert_eq!(
        (q.points_redeemed, q.total, q.points_earned),
        (500, 10_500, 126)
    );
    let payments = vec![Payment {
        method: PaymentMethod::Card,
        amount: q.total,
    }];
    let (paid, change) = settle(q.total, &payments).unwrap();
    let sale = build_sale(
        sale_at(sale_day),
        q,
        payments,
        paid,
        change,
        Some(&m),
        &rules,
    );
    apply_sale(&mut m, &sale);
    // The member pays with the 126 points in December.
    m.counters
        .get_mut("sh-001")
        .unwrap()
        .month_mut("2025-12")
        .points_redeemed = 126;
    let refund_day = at(2026, 11, 23);
    assert_eq!(m.points(&rules, refund_day.date_naive()), 0);
    let ctx = refund_at("r", 9, refund_day);
    let r = compute_refund(ctx, &sale, &[], None, Some(&m), &rules).unwrap();
    let before = m.clone();
    apply_refund(&mut m, &r);
    // Nothing the member holds could be taken back: the 126 points were spent.
    assert_eq!(
        (
            r.points_reversed,
            r.points_shortfall,
            r.shortfall_value,
            r.refund_total
        ),
        (0, 126, 126, 10_500 - 126),
        "refund {r:?}; balance before {} after {}",
        before.points(&rules, refund_day.date_naive()),
        m.points(&rules, refund_day.date_naive())
    );
}

/// Sells `qty` ¥`yuan` items to `m` on `day` (regular member: 1 point a yuan) and applies it.
fn sell_on(
    m: &mut Member,
    rules: &Rules,
    day: (i32, u32, u32),
    yuan: i64,
    qty: u32,
) -> super::sale::Sale {
    use chrono::{FixedOffset, TimeZone};
    let at = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(day.0, day.1, day.2, 10, 0, 0)
        .unwrap();
    let p = product("A", yuan * 100);
    let items = [CartItem { product: &p, qty }];
    let q = price(&PricingInput {
        items: &items,
        member: Some(m),
        coupons: &[],
        redeem_points: 0,
        rules,
        now: at,
        rounding: TotalRounding::None,
    })
    .unwrap();
    let payments = vec![Payment {
        method: PaymentMethod::Card,
        amount: q.total,
    }];
    let (paid, change) = settle(q.total, &payments).unwrap();
    let sale = build_sale(sale_at(at), q, payments, paid, change, Some(m), rules);
    apply_sale(m, &sale);
    sale
}

/// A regular member (¥1,500 spent in 2025-06), points lapsing after three months.
fn regular_with_expiry() -> (Member, Rules) {
    let rules = Rules {
        points_expiry_months: Some(3),
        ..Rules::default()
    };
    let mut m = member(0, 0, None);
    m.counters
        .entry("sh-001".into())
        .or_default()
        .month_mut("2025-06")
        .spend = 150_000;
    m.level = Some("regular".into());
    (m, rules)
}

/// Refunds the whole of `sale` on `day`; returns the refund and the balance before and after.
fn refund_all_on(
    m: &mut Member,
    rules: &Rules,
    sale: &super::sale::Sale,
    day: (i32, u32, u32),
) -> (super::refund::Refund, i64, i64) {
    use chrono::{FixedOffset, TimeZone};
    let at = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(day.0, day.1, day.2, 10, 0, 0)
        .unwrap();
    let before = m.points(rules, at.date_naive());
    let r = compute_refund(refund_at("r", 50, at), sale, &[], None, Some(m), rules).unwrap();
    apply_refund(m, &r);
    let after = m.points(rules, at.date_naive());
    assert_eq!(r.member.as_ref().map(|x| x.points), Some(after));
    (r, before, after)
}

/// The 500 points of a January sale lapsed unused at the end of April: refunded in June,
/// nothing of them is kept from the money (they were not used), and the 300 points earned
/// in May stay the member's.
#[test]
fn points_of_the_sale_that_lapsed_unused_are_not_charged_for() {
    let (mut m, rules) = regular_with_expiry();
    let sale = sell_on(&mut m, &rules, (2026, 1, 10), 500, 1);
    assert_eq!(sale.points_earned, 500);
    let (r, before, after) = refund_all_on(&mut m, &rules, &sale, (2026, 6, 10));
    assert_eq!(
        (
            r.points_shortfall,
            r.shortfall_value,
            r.refund_total,
            before,
            after
        ),
        (0, 0, 50_000, 0, 0),
        "{r:?}"
    );

    let (mut m, rules) = regular_with_expiry();
    let sale = sell_on(&mut m, &rules, (2026, 1, 10), 500, 1);
    m.counters
        .get_mut("sh-001")
        .unwrap()
        .month_mut("2026-05")
        .points_earned = 300;
    let (r, before, after) = refund_all_on(&mut m, &rules, &sale, (2026, 6, 10));
    assert_eq!(
        (
            r.points_shortfall,
            r.shortfall_value,
            r.refund_total,
            before,
            after
        ),
        (0, 0, 50_000, 300, 300),
        "{r:?}"
    );
}

/// The 300 points of a May sale were paid with in June; 200 were earned in July, and 500 of
/// January had lapsed in April. Refunded in July, each of the sale's 300 points is either
/// taken from the balance or kept from the money: never neither (the reversal booked to May
/// used to be absorbed by January's lapsed points, so the refund said 200 points reversed,
/// the balance stayed 200, and only ¥1 was kept).
#[test]
fn every_used_point_of_a_refunded_sale_is_taken_back_or_paid_for() {
    let (mut m, rules) = regular_with_expiry();
    m.counters
        .get_mut("sh-001")
        .unwrap()
        .month_mut("2026-01")
        .points_earned = 500;
    let sale = sell_on(&mut m, &rules, (2026, 5, 10), 300, 1);
    assert_eq!(sale.points_earned, 300);
    {
        let c = m.counters.get_mut("sh-001").unwrap();
        c.month_mut("2026-06").points_redeemed = 300;
        c.month_mut("2026-07").points_earned = 200;
    }
    let (r, before, after) = refund_all_on(&mut m, &rules, &sale, (2026, 7, 10));
    assert_eq!(before, 200);
    assert_eq!(
        (before - after) + r.points_shortfall,
        300,
        "taken {} + kept for {}: {r:?}",
        before - after,
        r.points_shortfall
    );
    assert_eq!(r.points_reversed, before - after, "{r:?}");
    assert_eq!(r.shortfall_value, r.points_shortfall, "{r:?}");
}

/// Two ¥250 items sold in January earn 500 points; 250 pay in February, the other 250 lapse
/// at the end of April. Refunded one by one in June: the lapsed 250 are not charged for, and
/// not twice either: the used 250 come out of the 300 earned in May.
#[test]
fn points_that_lapsed_are_not_forgiven_twice_by_partial_refunds() {
    use chrono::{FixedOffset, TimeZone};
    let (mut m, rules) = regular_with_expiry();
    let sale = sell_on(&mut m, &rules, (2026, 1, 10), 250, 2);
    assert_eq!(sale.points_earned, 500);
    {
        let c = m.counters.get_mut("sh-001").unwrap();
        c.month_mut("2026-02").points_redeemed = 250;
        c.month_mut("2026-05").points_earned = 300;
    }
    let at = FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .with_ymd_and_hms(2026, 6, 10, 10, 0, 0)
        .unwrap();
    let today = at.date_naive();
    assert_eq!(m.points(&rules, today), 300);
    let one = [RefundRequestLine {
        sku: "A".into(),
        qty: 1,
    }];
    let mut refunds = vec![];
    for n in 0..2u64 {
        let r = compute_refund(
            refund_at(format!("r{n}"), 50 + n, at),
            &sale,
            &refunds,
            Some(&one),
            Some(&m),
            &rules,
        )
        .unwrap();
        apply_refund(&mut m, &r);
        assert_eq!(
            r.member.as_ref().map(|x| x.points),
            Some(m.points(&rules, today))
        );
        assert_eq!((r.points_reversed, r.points_shortfall), (250, 0), "{r:?}");
        refunds.push(r);
    }
    assert_eq!(m.points(&rules, today), 50);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// What the refund's search relies on: under an expiry, booking one more point of
    /// reversal to a month takes at most one more point from the balance, and never gives one
    /// back, whatever the member's months (counters that paid more than was held included).
    #[test]
    fn each_reversed_point_takes_at_most_one_point(
        months in proptest::collection::vec((0i64..400, 0i64..400), 1..14),
        expiry in 1u32..6,
        target in 0usize..14,
        today_month in 0u32..20,
    ) {
        let rules = Rules { points_expiry_months: Some(expiry), ..Rules::default() };
        let mut m = member(0, 0, None);
        let key = |i: usize| format!("{}-{:02}", 2025 + i / 12, i % 12 + 1);
        for (i, (earned, paid)) in months.iter().enumerate() {
            let c = m.counters.entry("sh-001".into()).or_default().month_mut(&key(i));
            c.points_earned = *earned;
            c.points_redeemed = *paid;
        }
        let month = key(target % months.len());
        let today = chrono::NaiveDate::from_ymd_opt(
            2025 + (today_month / 12) as i32,
            today_month % 12 + 1,
            15,
        )
        .unwrap();
        let mut last = m.points(&rules, today);
        for n in 1..=400 {
            m.counters.get_mut("sh-001").unwrap().month_mut(&month).points_reversed = n;
            let now = m.points(&rules, today);
            prop_assert!(now <= last && last - now <= 1, "{n}: {last} → {now}");
            last = now;
        }
    }
}
