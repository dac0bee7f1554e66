//! Campaigns: a coupon for the members of a segment or tag, for a period, with a control group
//! held out so that the effect can be measured against it.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::catalog::CouponKind;
use super::money::Money;
use super::report::{SaleFact, Tally};

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

/// A campaign as defined — by a manager over the API or by HQ over MQTT — before the store
/// picks its members. Unknown fields are ignored here (HQ may add some); the API refuses them
/// with its own strict request type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSpec {
    /// Id, also the coupon code prefix.
    pub id: String,
    /// Name.
    pub name: String,
    /// Who.
    pub target: Target,
    /// Coupon title.
    pub coupon_title: String,
    /// Coupon kind.
    pub coupon: CouponKind,
    /// First day (store time).
    pub starts: NaiveDate,
    /// Last day (store time).
    pub ends: NaiveDate,
    /// Share of the eligible members held out (0–50 %).
    #[serde(default = "default_control_percent")]
    pub control_percent: u8,
}

/// A campaign as started: its definition, and the members it was given to and held out from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    /// What was defined (its fields sit at the top level of the JSON).
    #[serde(flatten)]
    pub spec: CampaignSpec,
    /// Members given the coupon.
    pub treated: Vec<String>,
    /// Members held out.
    pub control: Vec<String>,
    /// Who started it (a staff number, or `hq`).
    pub started_by: String,
}

/// The control group's share when a definition gives none: 10 %.
pub fn default_control_percent() -> u8 {
    10
}

/// Why a campaign definition is refused: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// `invalid_campaign_id`, `invalid_campaign`, `invalid_period`, `invalid_control_percent`,
    /// `unknown_segment`, `invalid_target`, `invalid_coupon`.
    pub code: &'static str,
    /// For people.
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A checked definition: the spec with its id upper-cased and its texts trimmed, and the
/// target segment parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSpec {
    /// The definition.
    pub spec: CampaignSpec,
    /// The target segment, if one is given.
    pub segment: Option<super::insight::Segment>,
}

/// Checks a campaign definition. The id prefixes the coupon codes, so it is 2–12 letters and
/// digits and not one of the automatic prefixes (`BD`, `WL`, `WB`).
pub fn check(mut spec: CampaignSpec) -> Result<CheckedSpec, SpecError> {
    let err = |code, message: &str| SpecError {
        code,
        message: message.to_string(),
    };
    spec.id = spec.id.trim().to_ascii_uppercase();
    spec.name = spec.name.trim().to_string();
    spec.coupon_title = spec.coupon_title.trim().to_string();
    let id = &spec.id;
    let reserved = ["BD", "WL", "WB"].iter().any(|p| id.starts_with(p));
    if !(2..=12).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) || reserved {
        return Err(err(
            "invalid_campaign_id",
            "a campaign id is 2–12 letters and digits, not starting with BD, WL or WB",
        ));
    }
    if spec.name.is_empty()
        || spec.coupon_title.is_empty()
        || spec.name.chars().count() > 64
        || spec.coupon_title.chars().count() > 64
    {
        return Err(err(
            "invalid_campaign",
            "name and coupon_title are required, 64 characters at most",
        ));
    }
    // Its coupons' validity ends the day after `ends`.
    let years = super::calendar::PERIOD_YEARS;
    if !years.contains(&spec.starts.year())
        || !years.contains(&spec.ends.year())
        || spec.ends < spec.starts
        || (spec.ends - spec.starts).num_days() > 366
    {
        return Err(err(
            "invalid_period",
            "ends must be on or after starts, within a year, both between 2000 and 9998",
        ));
    }
    if spec.control_percent > 50 {
        return Err(err("invalid_control_percent", "control_percent is 0–50"));
    }
    if let Err(e) = spec.coupon.validate() {
        return Err(SpecError {
            code: "invalid_coupon",
            message: e,
        });
    }
    let segment = match &spec.target.segment {
        None => None,
        Some(code) => Some(
            super::insight::Segment::from_code(code).ok_or_else(|| SpecError {
                code: "unknown_segment",
                message: format!("no segment {code}"),
            })?,
        ),
    };
    if segment.is_none() && spec.target.tag.is_none() {
        return Err(err(
            "invalid_target",
            "target needs a segment, a tag, or both",
        ));
    }
    Ok(CheckedSpec { spec, segment })
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

/// Measures a campaign from the sales and refunds of its period, sale by sale as the period
/// is read (see [`Tally`]): revenue is what a group's sales of the period took, less what their
/// refunds in the period gave back.
#[derive(Debug)]
pub struct Measure<'a> {
    c: &'a Campaign,
    /// Whether each member of the campaign is treated (else held out).
    group: HashMap<&'a str, bool>,
    /// The group of each sale counted, for its refunds.
    counted: HashMap<String, bool>,
    treated: Money,
    control: Money,
}

impl<'a> Measure<'a> {
    /// Nothing counted yet.
    pub fn new(c: &'a Campaign) -> Measure<'a> {
        let mut group: HashMap<&str, bool> = HashMap::new();
        for m in &c.treated {
            group.insert(m, true);
        }
        for m in &c.control {
            group.insert(m, false);
        }
        Measure {
            c,
            group,
            counted: HashMap::new(),
            treated: 0,
            control: 0,
        }
    }

    fn in_period(&self, at: &chrono::DateTime<chrono::FixedOffset>) -> bool {
        (self.c.spec.starts..=self.c.spec.ends).contains(&at.date_naive())
    }

    /// What the treated and the control members spent so far.
    pub fn revenue(&self) -> Revenue {
        Revenue {
            treated: self.treated,
            control: self.control,
        }
    }
}

/// What a campaign's treated and control members spent in its period, net of the period's
/// refunds: final once the period is over (the API keeps it, see `api::campaigns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revenue {
    /// Treated members'.
    pub treated: Money,
    /// Control members'.
    pub control: Money,
}

impl Revenue {
    /// How campaign `c` did with this revenue and the use of its coupons.
    pub fn result(self, c: &Campaign, issued: u64, redeemed: u64) -> CampaignResult {
        let (t, k) = (self.treated, self.control);
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
}

impl Tally for Measure<'_> {
    fn sale(&mut self, s: &SaleFact) {
        if !self.in_period(&s.at) {
            return;
        }
        let Some(&treated) = s.member_id.as_deref().and_then(|m| self.group.get(m)) else {
            return;
        };
        if treated {
            self.treated += s.total;
        } else {
            self.control += s.total;
        }
        self.counted.insert(s.id.clone(), treated);
    }

    fn refund(&mut self, r: &crate::domain::report::RefundFact) {
        if !self.in_period(&r.at) {
            return;
        }
        match self.counted.get(r.sale_id.as_str()) {
            Some(true) => self.treated -= r.amount,
            Some(false) => self.control -= r.amount,
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::report::RefundFact;
    use chrono::TimeZone;

    /// A group's revenue is its sales of the period less their refunds in the period.
    #[test]
    fn revenue_is_net_of_the_period_s_refunds() {
        let c = Campaign {
            spec: check(spec()).unwrap().spec,
            treated: vec!["t1".into(), "t2".into()],
            control: vec!["c1".into()],
            started_by: "2001".into(),
        };
        let at = |day: NaiveDate| {
            chrono::FixedOffset::east_opt(8 * 3600)
                .unwrap()
                .from_local_datetime(&day.and_hms_opt(10, 0, 0).unwrap())
                .unwrap()
        };
        let day = c.spec.starts;
        let sale = |id: &str, member: &str, total| SaleFact {
            id: id.into(),
            at: at(day),
            staff_no: "1".into(),
            terminal_id: "pos-1".into(),
            member_id: Some(member.into()),
            total,
            lines: vec![],
            payments: vec![],
        };
        let refund = |sale: &str, amount| RefundFact {
            sale_id: sale.into(),
            at: at(day),
            staff_no: "2".into(),
            terminal_id: "pos-1".into(),
            sale_staff_no: None,
            amount,
            lines: vec![],
            payments: vec![],
        };
        let sales = [
            sale("a", "t1", 10_000),
            sale("b", "t2", 6_000),
            sale("c", "c1", 3_000),
        ];
        let refunds = [
            refund("a", 4_000),
            refund("c", 1_000),
            refund("elsewhere", 500),
        ];
        let mut m = Measure::new(&c);
        sales.iter().for_each(|s| m.sale(s));
        refunds.iter().for_each(|r| m.refund(r));
        let r = m.revenue().result(&c, 2, 1);
        assert_eq!((r.treated_revenue, r.control_revenue), (12_000, 2_000));
        assert_eq!(
            (r.revenue_per_treated, r.revenue_per_control),
            (6_000, 2_000)
        );
        assert_eq!(r.incremental_revenue, 8_000);
    }

    fn spec() -> CampaignSpec {
        CampaignSpec {
            id: " spring26 ".into(),
            name: " 春季回馈 ".into(),
            target: Target {
                segment: Some("important_retain".into()),
                tag: None,
            },
            coupon_title: "满100减20".into(),
            coupon: CouponKind::AmountOff {
                threshold: 10_000,
                amount: 2_000,
            },
            starts: "2026-03-01".parse().unwrap(),
            ends: "2026-03-31".parse().unwrap(),
            control_percent: 10,
        }
    }

    #[test]
    fn definitions_are_checked_and_normalised() {
        let c = check(spec()).unwrap();
        assert_eq!(
            (c.spec.id.as_str(), c.spec.name.as_str()),
            ("SPRING26", "春季回馈")
        );
        assert_eq!(
            c.segment,
            Some(super::super::insight::Segment::ImportantRetain)
        );
        let refused = |f: fn(&mut CampaignSpec)| {
            let mut s = spec();
            f(&mut s);
            check(s).unwrap_err().code
        };
        assert_eq!(refused(|s| s.id = "BD26".into()), "invalid_campaign_id");
        assert_eq!(refused(|s| s.id = "A B".into()), "invalid_campaign_id");
        assert_eq!(refused(|s| s.name = " ".into()), "invalid_campaign");
        assert_eq!(
            refused(|s| s.ends = "2026-02-01".parse().unwrap()),
            "invalid_period"
        );
        // At the calendar's edge (chrono's last day has no day after it for the coupons).
        assert_eq!(
            refused(|s| {
                s.starts = NaiveDate::MAX;
                s.ends = NaiveDate::MAX;
            }),
            "invalid_period"
        );
        assert_eq!(
            refused(|s| {
                s.starts = NaiveDate::MIN;
                s.ends = NaiveDate::MIN;
            }),
            "invalid_period"
        );
        assert_eq!(
            refused(|s| s.control_percent = 51),
            "invalid_control_percent"
        );
        assert_eq!(
            refused(|s| s.coupon = CouponKind::AmountOff {
                threshold: 0,
                amount: 0
            }),
            "invalid_coupon"
        );
        assert_eq!(
            refused(|s| s.target.segment = Some("vip".into())),
            "unknown_segment"
        );
        assert_eq!(refused(|s| s.target.segment = None), "invalid_target");
    }

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
