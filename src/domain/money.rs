//! Money arithmetic in integer minor units (分 for CNY).
//!
//! Every amount in storebox is an `i64` count of minor units; floats never touch money. Products
//! of an amount and a rate are computed in `i128` so that no realistic cart can overflow, then
//! rounded half-up back to minor units, as the design asks ("each discount is rounded half-up to
//! the minor unit per line").

use serde::{Deserialize, Serialize};

/// An amount in minor units (分). `12990` is ¥129.90.
pub type Money = i64;

/// A rate in basis points: `2000` is 20 %. Used for percent discounts.
pub type Bps = u32;

/// 100 % in basis points.
pub const FULL_BPS: Bps = 10_000;

/// `amount × bps / 10000`, rounded half-up (away from zero for the half). Never overflows for
/// any `i64` amount because the product is taken in `i128`; the result saturates at `i64`.
pub fn percent_of(amount: Money, bps: Bps) -> Money {
    mul_div_round(amount, i128::from(bps), i128::from(FULL_BPS))
}

/// `amount × num / den`, rounded half-up; `den` must be positive.
pub fn mul_div_round(amount: Money, num: i128, den: i128) -> Money {
    debug_assert!(den > 0);
    let product = i128::from(amount) * num;
    let half = den / 2;
    let q = if product >= 0 {
        (product + half) / den
    } else {
        -((-product + half) / den)
    };
    saturate(q)
}

/// `amount × num / den`, rounded down (towards negative infinity for positive inputs).
/// Used for points, which are always floored.
pub fn mul_div_floor(amount: Money, num: i128, den: i128) -> Money {
    debug_assert!(den > 0);
    saturate((i128::from(amount) * num).div_euclid(den))
}

/// `amount × num / den`, rounded up (for the points a value in minor units costs).
pub fn mul_div_ceil(amount: Money, num: i128, den: i128) -> Money {
    debug_assert!(den > 0);
    let product = i128::from(amount) * num;
    saturate(product.div_euclid(den) + i128::from(product.rem_euclid(den) != 0))
}

fn saturate(v: i128) -> Money {
    if v > i128::from(i64::MAX) {
        i64::MAX
    } else if v < i128::from(i64::MIN) {
        i64::MIN
    } else {
        v as i64
    }
}

/// Splits `total` over `weights` in proportion, so that the parts sum to `total` exactly
/// (largest-remainder method, ties going to the earlier line). Weights must be non-negative;
/// if they are all zero the whole amount goes to the first weight.
///
/// This is how sale-level reductions (an amount-off coupon, points paid, 抹零) are spread over
/// the lines, so that a later partial refund of a line returns exactly that line's share.
pub fn allocate(total: Money, weights: &[Money]) -> Vec<Money> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: i128 = weights.iter().map(|w| i128::from((*w).max(0))).sum();
    if sum == 0 {
        let mut out = vec![0; weights.len()];
        out[0] = total;
        return out;
    }
    let total128 = i128::from(total);
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut assigned: i128 = 0;
    for (i, w) in weights.iter().enumerate() {
        let p = total128 * i128::from((*w).max(0));
        let q = p.div_euclid(sum);
        let r = p.rem_euclid(sum);
        parts.push(q);
        remainders.push((r, i));
        assigned += q;
    }
    let mut left = total128 - assigned;
    // Largest remainder first; earlier index wins ties so the result is deterministic.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut idx = 0;
    while left > 0 && !remainders.is_empty() {
        let i = remainders[idx % remainders.len()].1;
        parts[i] += 1;
        left -= 1;
        idx += 1;
    }
    parts.into_iter().map(saturate).collect()
}

/// How the total of a sale is rounded (抹零). Chinese stores commonly drop the 分, some the 角.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TotalRounding {
    /// Charge the exact total.
    #[default]
    None,
    /// Drop the 分: ¥12.34 → ¥12.30.
    DropFen,
    /// Drop the 分 and 角: ¥12.34 → ¥12.00.
    DropJiao,
}

impl TotalRounding {
    /// The amount dropped from `total` (never negative, never more than `total`).
    pub fn dropped(self, total: Money) -> Money {
        if total <= 0 {
            return 0;
        }
        match self {
            TotalRounding::None => 0,
            TotalRounding::DropFen => total % 10,
            TotalRounding::DropJiao => total % 100,
        }
    }
}

/// Formats minor units as yuan with two decimals, e.g. `12990` → `129.90`, `-5` → `-0.05`.
pub fn format_yuan(amount: Money) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percent_rounds_half_up() {
        assert_eq!(percent_of(1005, 1000), 101); // 100.5 → 101
        assert_eq!(percent_of(1004, 1000), 100);
        assert_eq!(percent_of(250_000, 2000), 50_000);
        assert_eq!(percent_of(-1005, 1000), -101);
    }

    #[test]
    fn floors_points() {
        assert_eq!(mul_div_floor(10_000, 1200, 100_000), 120);
        assert_eq!(mul_div_floor(99, 1000, 100_000), 0);
    }

    #[test]
    fn ceils_the_points_a_value_costs() {
        assert_eq!(mul_div_ceil(200, 150, 100), 300);
        assert_eq!(mul_div_ceil(201, 150, 100), 302);
        assert_eq!(mul_div_ceil(98, 99, 100), 98);
        assert_eq!(mul_div_ceil(100, 1000, 100), 1000);
        assert_eq!(mul_div_ceil(0, 150, 100), 0);
    }

    #[test]
    fn allocates_exactly() {
        assert_eq!(allocate(100, &[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(allocate(0, &[5, 5]), vec![0, 0]);
        assert_eq!(allocate(7, &[0, 0]), vec![7, 0]);
        assert_eq!(allocate(2000, &[10_000, 5_000]), vec![1333, 667]);
    }

    #[test]
    fn rounding_drops_small_units() {
        assert_eq!(TotalRounding::DropFen.dropped(1234), 4);
        assert_eq!(TotalRounding::DropJiao.dropped(1234), 34);
        assert_eq!(TotalRounding::None.dropped(1234), 0);
        assert_eq!(TotalRounding::DropJiao.dropped(0), 0);
    }

    #[test]
    fn formats_yuan() {
        assert_eq!(format_yuan(12990), "129.90");
        assert_eq!(format_yuan(5), "0.05");
        assert_eq!(format_yuan(-250), "-2.50");
    }

    proptest! {
        #[test]
        fn allocation_sums_to_total(total in 0i64..10_000_000, weights in proptest::collection::vec(0i64..1_000_000, 1..20)) {
            let parts = allocate(total, &weights);
            prop_assert_eq!(parts.iter().sum::<i64>(), total);
            prop_assert!(parts.iter().all(|p| *p >= 0));
        }

        #[test]
        fn allocation_never_exceeds_weight_when_total_fits(weights in proptest::collection::vec(1i64..1_000_000, 1..20), frac in 0u32..=10_000) {
            let sum: i64 = weights.iter().sum();
            let total = percent_of(sum, frac).min(sum);
            let parts = allocate(total, &weights);
            for (p, w) in parts.iter().zip(&weights) {
                prop_assert!(p <= w, "part {} above weight {}", p, w);
            }
        }
    }
}
