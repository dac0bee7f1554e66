//! `[membership]`: the rules of design section 3 as written in the config. Omitted keys take
//! the chain's defaults; `[[membership.levels]]`, when given, replaces the whole ladder.

use serde::Deserialize;

use super::{Invalid, bad};
use crate::domain::money::{Bps, Money};
use crate::domain::rules::{BirthdayWindow, LevelRule, Rules, SpendWindow};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMembership {
    #[serde(default)]
    spend_window: Option<SpendWindow>,
    #[serde(default)]
    levels_can_drop: Option<bool>,
    #[serde(default)]
    birthday_window: Option<BirthdayWindow>,
    #[serde(default)]
    redeem_points_per_yuan: Option<u32>,
    #[serde(default)]
    max_redeem_percent: Option<f64>,
    /// 0 = points never expire.
    #[serde(default)]
    points_expiry_months: Option<u32>,
    #[serde(default)]
    levels: Option<Vec<RawLevel>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    code: String,
    name: String,
    /// Minor units (分).
    threshold: Money,
    points_per_yuan: f64,
    #[serde(default)]
    discount_percent: f64,
    #[serde(default)]
    birthday_discount_percent: f64,
    #[serde(default)]
    birthday_discount_cap: Option<Money>,
    #[serde(default)]
    benefits: Vec<String>,
}

fn percent_to_bps(key: String, p: f64) -> Result<Bps, Invalid> {
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err(bad(key, "must be a percentage between 0 and 100"));
    }
    Ok((p * 100.0).round() as Bps)
}

/// Membership rules from `[membership]` as read (HQ's `rules` item decodes it itself, to name
/// the field at fault).
pub fn membership_from_raw(raw: RawMembership) -> Result<Rules, String> {
    to_rules(raw).map_err(|(key, reason)| format!("{key}: {reason}"))
}

pub(super) fn to_rules(raw: RawMembership) -> Result<Rules, Invalid> {
    let mut rules = Rules::default();
    if let Some(w) = raw.spend_window {
        rules.spend_window = w;
    }
    if let Some(d) = raw.levels_can_drop {
        rules.levels_can_drop = d;
    }
    if let Some(w) = raw.birthday_window {
        rules.birthday_window = w;
    }
    if let Some(r) = raw.redeem_points_per_yuan {
        rules.redeem_points_per_yuan = r;
    }
    if let Some(p) = raw.max_redeem_percent {
        rules.max_redeem_bps = percent_to_bps("membership.max_redeem_percent".into(), p)?;
    }
    if let Some(m) = raw.points_expiry_months {
        rules.points_expiry_months = (m > 0).then_some(m);
    }
    if let Some(levels) = raw.levels {
        rules.levels = Vec::with_capacity(levels.len());
        for (i, l) in levels.into_iter().enumerate() {
            let key = |f: &str| format!("membership.levels[{i}].{f}");
            if !l.points_per_yuan.is_finite() || !(0.0..=1000.0).contains(&l.points_per_yuan) {
                return Err(bad(key("points_per_yuan"), "must be between 0 and 1000"));
            }
            rules.levels.push(LevelRule {
                code: l.code,
                name: l.name,
                threshold: l.threshold,
                points_per_yuan_milli: (l.points_per_yuan * 1000.0).round() as u32,
                discount_bps: percent_to_bps(key("discount_percent"), l.discount_percent)?,
                birthday_discount_bps: percent_to_bps(
                    key("birthday_discount_percent"),
                    l.birthday_discount_percent,
                )?,
                birthday_discount_cap: l.birthday_discount_cap,
                benefits: l.benefits,
            });
        }
    }
    rules.validate().map_err(|r| bad("membership", r))?;
    Ok(rules)
}
