//! Store settings shared by the ledger and the API: who the store is, its clock, and the
//! membership rules in force (which HQ may replace while the store runs).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::config::Config;
use crate::domain::calendar::{local_date, local_time};
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

    /// Store-local time of an instant.
    pub fn local(&self, at: DateTime<Utc>) -> DateTime<FixedOffset> {
        local_time(self.tz, at)
    }

    /// Store-local date of an instant.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        local_date(self.tz, at)
    }

    /// The store-local start (midnight) of `day`.
    pub fn local_start(&self, day: NaiveDate) -> DateTime<FixedOffset> {
        use chrono::TimeZone;
        let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        match self.tz.from_local_datetime(&midnight).earliest() {
            Some(t) => t.fixed_offset(),
            None => self.local(midnight.and_utc()),
        }
    }
}
