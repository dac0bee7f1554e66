//! `[insight]`: RFM cut-offs and the churn warning's rules (`[insight.rfm]`,
//! `[insight.churn]`), and the automations (`[insight.automation]`).

use serde::Deserialize;

use super::{Invalid, bad};
use crate::domain::insight::{ChurnRules, RfmCutoffs};
use crate::domain::member::VISIT_DAYS_KEPT;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInsight {
    #[serde(default)]
    rfm: Option<RfmCutoffs>,
    #[serde(default)]
    churn: Option<ChurnRules>,
    #[serde(default)]
    automation: Option<Automation>,
}

/// What the store does by itself each morning and on registration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Automation {
    /// Whether the automations run at all.
    pub enabled: bool,
    /// Store-local hour (0–23) of the morning run.
    pub run_hour: u32,
    /// Days before the birthday the birthday coupon is issued (0: on the day).
    pub birthday_days_ahead: u32,
    /// Days after a birthday a run still issues its coupon if none was issued for that year
    /// (the box was off that morning, or the member registered or had their birthday entered
    /// after the run); 1–31, so the next morning always catches up the day before.
    pub birthday_catch_up_days: u32,
    /// Birthday coupon value (分) by level code; `default` for members without a listed level.
    pub birthday_coupon: std::collections::BTreeMap<String, i64>,
    /// Days a birthday coupon stays valid.
    pub birthday_valid_days: u32,
    /// Welcome coupon value (分) on registration; 0: none.
    pub welcome_coupon: i64,
    /// Days a welcome coupon stays valid.
    pub welcome_valid_days: u32,
    /// Win-back coupon value (分) when a member turns at risk; 0: none (the member is still
    /// reported to HQ with `member.at_risk`).
    pub winback_coupon: i64,
    /// Days a win-back coupon stays valid.
    pub winback_valid_days: u32,
}

impl Default for Automation {
    fn default() -> Self {
        Automation {
            enabled: true,
            run_hour: 8,
            birthday_days_ahead: 0,
            birthday_catch_up_days: 7,
            birthday_coupon: [
                ("default".to_string(), 1_000),
                ("silver".to_string(), 2_000),
                ("gold".to_string(), 5_000),
            ]
            .into_iter()
            .collect(),
            birthday_valid_days: 30,
            welcome_coupon: 500,
            welcome_valid_days: 30,
            winback_coupon: 2_000,
            winback_valid_days: 30,
        }
    }
}

/// `[insight]`.
#[derive(Debug, Clone, Default)]
pub struct InsightConfig {
    /// RFM cut-offs.
    pub rfm: RfmCutoffs,
    /// Churn rules.
    pub churn: ChurnRules,
    /// Automations.
    pub automation: Automation,
}

fn ascending<T: PartialOrd>(v: &[T]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

pub(super) fn to_insight(raw: Option<RawInsight>) -> Result<InsightConfig, Invalid> {
    let raw = raw.unwrap_or_default();
    let rfm = raw.rfm.unwrap_or_default();
    for (key, ok) in [
        ("insight.rfm.recency_days", ascending(&rfm.recency_days)),
        ("insight.rfm.frequency", ascending(&rfm.frequency)),
        (
            "insight.rfm.monetary",
            ascending(&rfm.monetary) && rfm.monetary[0] >= 0,
        ),
    ] {
        if !ok {
            return Err(bad(key, "needs four ascending cut-offs"));
        }
    }
    let churn = raw.churn.unwrap_or_default();
    if !(1.0..=20.0).contains(&churn.interval_factor) {
        return Err(bad(
            "insight.churn.interval_factor",
            "must be between 1 and 20",
        ));
    }
    if !(0.05..=1.0).contains(&churn.spend_drop) {
        return Err(bad(
            "insight.churn.spend_drop",
            "must be between 0.05 and 1",
        ));
    }
    // A member's rhythm is read from the latest visit days the counters keep: more cannot be
    // asked for, or no member would ever be overdue.
    if !(2..=VISIT_DAYS_KEPT).contains(&churn.min_visits) {
        return Err(bad(
            "insight.churn.min_visits",
            format!("must be 2–{VISIT_DAYS_KEPT} (the visit days kept per member)"),
        ));
    }
    if churn.min_gap_days < 1 || churn.min_monthly_spend < 0 {
        return Err(bad(
            "insight.churn",
            "min_gap_days must be at least 1, min_monthly_spend not negative",
        ));
    }
    if !(churn.min_gap_days..=36_500).contains(&churn.lost_after_days) {
        return Err(bad(
            "insight.churn.lost_after_days",
            "must be at least min_gap_days and at most 36500",
        ));
    }
    let automation = raw.automation.unwrap_or_default();
    if automation.run_hour > 23 {
        return Err(bad("insight.automation.run_hour", "must be 0–23"));
    }
    if automation.birthday_days_ahead > 31 {
        return Err(bad(
            "insight.automation.birthday_days_ahead",
            "must be 0–31",
        ));
    }
    if !(1..=31).contains(&automation.birthday_catch_up_days) {
        return Err(bad(
            "insight.automation.birthday_catch_up_days",
            "must be 1–31",
        ));
    }
    for (key, v) in [
        (
            "insight.automation.welcome_coupon",
            automation.welcome_coupon,
        ),
        (
            "insight.automation.winback_coupon",
            automation.winback_coupon,
        ),
    ] {
        if !(0..=1_000_000).contains(&v) {
            return Err(bad(key, "must be between 0 and 1000000 (分)"));
        }
    }
    if automation
        .birthday_coupon
        .values()
        .any(|v| !(0..=1_000_000).contains(v))
    {
        return Err(bad(
            "insight.automation.birthday_coupon",
            "values must be between 0 and 1000000 (分)",
        ));
    }
    for (key, v) in [
        (
            "insight.automation.birthday_valid_days",
            automation.birthday_valid_days,
        ),
        (
            "insight.automation.welcome_valid_days",
            automation.welcome_valid_days,
        ),
        (
            "insight.automation.winback_valid_days",
            automation.winback_valid_days,
        ),
    ] {
        if !(1..=366).contains(&v) {
            return Err(bad(key, "must be between 1 and 366"));
        }
    }
    if automation.birthday_valid_days < automation.birthday_days_ahead {
        // Issued `birthday_days_ahead` days before, it would end before the birthday.
        return Err(bad(
            "insight.automation.birthday_valid_days",
            "must be at least birthday_days_ahead: the coupon would end before the birthday",
        ));
    }
    Ok(InsightConfig {
        rfm,
        churn,
        automation,
    })
}
