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
