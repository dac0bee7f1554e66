//! Store settings shared by the ledger and the API: who the store is, its clock, and the
//! membership rules in force (which HQ may replace while the store runs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::config::Config;
use crate::domain::calendar::{local_date, local_time, start_of_day};
use crate::domain::money::TotalRounding;
use crate::domain::rules::Rules;

/// Settings of the running store.
#[derive(Debug)]
pub struct StoreSettings {
    /// Store id.
    pub store_id: String,
    /// Store name.
    pub store_name: String,
    /// Store timezone.
    pub tz: Tz,
    /// 抹零 setting.
    pub rounding: TotalRounding,
    /// Whether sales may take stock below zero.
    pub allow_negative_stock: bool,
    /// The receipt printer of each terminal (terminal id → device id).
    pub printers: HashMap<String, String>,
    /// The printers with a cash drawer (`drawer_pin` not 0).
    pub drawers: HashSet<String>,
    /// RFM cut-offs and churn rules.
    pub insight: crate::config::InsightConfig,
    rules: RwLock<Arc<Rules>>,
}

impl StoreSettings {
    /// Settings from the config.
    pub fn from_config(c: &Config) -> StoreSettings {
        StoreSettings {
            store_id: c.store.id.clone(),
            store_name: c.store.name.clone(),
            tz: c.store.timezone,
            rounding: c.store.total_rounding,
            allow_negative_stock: c.store.allow_negative_stock,
            printers: c
                .devices
                .iter()
                .filter(|d| d.kind == crate::config::DeviceKind::Printer)
                .map(|d| (d.terminal.clone(), d.id.clone()))
                .collect(),
            drawers: c
                .devices
                .iter()
                .filter(|d| d.printer.as_ref().is_some_and(|p| p.drawer.is_some()))
                .map(|d| d.id.clone())
                .collect(),
            insight: c.insight.clone(),
            rules: RwLock::new(Arc::new(c.membership.clone())),
        }
    }

    /// The membership rules in force.
    pub fn rules(&self) -> Arc<Rules> {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the membership rules (HQ push, config reload).
    pub fn set_rules(&self, rules: Rules) {
        let mut guard = match self.rules.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(rules);
    }

    /// Store-local time of an instant (one written with another offset, as HQ's, too).
    pub fn local(&self, at: impl Into<DateTime<Utc>>) -> DateTime<FixedOffset> {
        local_time(self.tz, at.into())
    }

    /// Store-local date of an instant.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        local_date(self.tz, at)
    }

    /// The store-local start (midnight) of `day`: its first instant when a daylight-saving gap
    /// swallows midnight (see [`start_of_day`]).
    pub fn local_start(&self, day: NaiveDate) -> DateTime<FixedOffset> {
        self.local(start_of_day(self.tz, day))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn settings(tz: &str) -> StoreSettings {
        let text = format!(
            "[store]\nid = \"sh-001\"\nname = \"店\"\ntimezone = \"{tz}\"\nenvironment = \"development\"\n\
             [storage]\ndir = \"/tmp/unused\"\n"
        );
        StoreSettings::from_config(&Config::parse(Path::new("test.toml"), &text).unwrap())
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// A day whose midnight a daylight-saving gap swallows begins when the gap ends, on that
    /// day: a campaign starting on it is not valid from the evening before (Santiago) nor only
    /// from 03:00 (Beirut).
    #[test]
    fn a_day_begins_at_its_first_instant_when_daylight_saving_skips_midnight() {
        let start = |tz: &str, d: &str| settings(tz).local_start(day(d)).to_rfc3339();
        // Midnight exists: it is the start, in the day's own offset.
        assert_eq!(
            start("Europe/Berlin", "2026-03-29"),
            "2026-03-29T00:00:00+01:00"
        );
        assert_eq!(
            start("Europe/Berlin", "2026-03-30"),
            "2026-03-30T00:00:00+02:00"
        );
        assert_eq!(
            start("America/New_York", "2026-11-01"),
            "2026-11-01T00:00:00-04:00"
        );
        // Clocks go from 00:00 to 01:00.
        assert_eq!(
            start("America/Santiago", "2026-09-06"),
            "2026-09-06T01:00:00-03:00"
        );
        assert_eq!(
            start("Asia/Beirut", "2026-03-29"),
            "2026-03-29T01:00:00+03:00"
        );
        assert_eq!(
            start("America/Havana", "2026-03-08"),
            "2026-03-08T01:00:00-04:00"
        );
        // Samoa skipped 30 December 2011: that day begins where the next one does.
        assert_eq!(
            start("Pacific/Apia", "2011-12-30"),
            "2011-12-31T00:00:00+14:00"
        );
    }
}
