//! Campaigns: a coupon for the members of a segment or tag, for a period, with a control group
//! held out so that the effect can be measured against it.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::CouponKind;
use super::money::Money;
use super::report::SaleFact;

/// Who a campaign is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// RFM segment code (`important_retain`...).
    #[serde(default)]
    pub segment: Option<String>,
    /// Member tag.
    #[serde(default)]
    pub tag: Option<String>,
}

/// A campaign as started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// Id, also the coupon code prefix: 2–12 of `A-Z0-9`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Who.
    pub target: Target,
    /// Coupon title.
    pub coupon_title: String,
    /// Coupon kind.
    pub coupon: CouponKind,
    /// First day.
    pub starts: NaiveDate,
    /// Last day.
    pub ends: NaiveDate,
    /// Share of the eligible members held out (0–50 %).
    pub control_percent: u8,
    /// Members given the coupon.
    pub treated: Vec<String>,
    /// Members held out.
    pub control: Vec<String>,
    /// Who started it.
    pub started_by: String,
}

/// Whether a member falls in the control group: a hash of campaign and member, so the split is
/// stable and independent of the order members are seen in.
pub fn in_control(campaign: &str, member_id: &str, percent: u8) -> bool {
    let h = Sha256::digest(format!("{campaign}/{member_id}").as_bytes());
    (u16::from_be_bytes([h[0], h[1]]) % 100) < u16::from(percent)
}

/// `part / whole` to three decimals (0 when `whole` is 0).
pub fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 / whole as f64 * 1000.0).round() / 1000.0
}

/// How a campaign did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CampaignResult {
    /// Coupons issued.
    pub issued: u64,
    /// Coupons used.
    pub redeemed: u64,
    /// redeemed / issued.
    pub redemption_rate: f64,
    /// Treated members, and their revenue during the campaign.
    pub treated_members: u64,
    /// Revenue of treated members in the period.
    pub treated_revenue: Money,
    /// Control members, and their revenue during the campaign.
    pub control_members: u64,
    /// Revenue of control members in the period.
    pub control_revenue: Money,
    /// Revenue per treated member.
    pub revenue_per_treated: Money,
    /// Revenue per control member.
    pub revenue_per_control: Money,
    /// (per treated − per control) × treated members: what the campaign added.
    pub incremental_revenue: Money,
}

/// Measures a campaign from the sales of its period and the use of its coupons.
pub fn measure(c: &Campaign, sales: &[SaleFact], issued: u64, redeemed: u64) -> CampaignResult {
    let mut group: HashMap<&str, bool> = HashMap::new();
    for m in &c.treated {
        group.insert(m, true);
    }
    for m in &c.control {
        group.insert(m, false);
    }
    let (mut t, mut k) = (0, 0);
    for s in sales {
        let d = s.at.date_naive();
        if d < c.starts || d > c.ends {
            continue;
        }
        match s.member_id.as_deref().and_then(|m| group.get(m)) {
            Some(true) => t += s.total,
            Some(false) => k += s.total,
            None => {}
        }
    }
    let nt = c.treated.len() as i64;
    let nc = c.control.len() as i64;
    let per_t = if nt > 0 { t / nt } else { 0 };
    let per_c = if nc > 0 { k / nc } else { 0 };
    CampaignResult {
        issued,
        redeemed,
        redemption_rate: rate(redeemed, issued),
        treated_members: nt as u64,
        treated_revenue: t,
        control_members: nc as u64,
        control_revenue: k,
        revenue_per_treated: per_t,
        revenue_per_control: per_c,
        incremental_revenue: if nc > 0 { (per_t - per_c) * nt } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_split_is_stable_and_near_its_share() {
        let n = (0..10_000)
            .filter(|i| in_control("SPRING", &format!("m{i}"), 10))
            .count();
        assert!((800..1200).contains(&n), "{n}");
        assert_eq!(
            in_control("SPRING", "m1", 10),
            in_control("SPRING", "m1", 10)
        );
        assert!(!in_control("SPRING", "m1", 0));
    }
}
