//! Store devices (design section 6): barcode scanners, member-card readers, receipt printers
//! and their cash drawers. Each device is owned by one task that opens it, reads or writes it,
//! and reopens it with a backoff when it goes away; state changes reach `GET /v1/devices`, the
//! terminals' `GET /v1/events` streams and HQ (`device.alert`).
//!
//! - [`bus`]: device states and the event broadcast.
//! - [`scan`], [`keymap`]: what scanners and card readers send, checked; keyboard-wedge keys to
//!   characters.
//! - [`escpos`], [`receipt`], [`decode`]: ESC/POS bytes, the receipt layout, and the decoder
//!   that turns bytes back into the printed lines (for the tests).
//! - `input`, `printer`: the tasks.

pub mod bus;
pub mod decode;
pub mod escpos;
mod input;
pub mod keymap;
mod printer;
pub mod receipt;
pub mod scan;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache::Cache;
use crate::config::{DeviceConfig, DeviceKind};
use crate::domain::access::Role;
use crate::domain::event::Alert;
use crate::journal::JournalReader;
use crate::ledger::{Actor, Command, Ledger, StoreSettings};
use bus::{Bus, DeviceState};

/// What the device tasks share.
#[derive(Clone)]
pub struct Context {
    /// The single writer (print queue, alerts).
    pub ledger: Ledger,
    /// The journal, for the print queue and the sales to print.
    pub journal: JournalReader,
    /// Products by barcode, members by card.
    pub cache: Cache,
    /// Store name, clock, rules.
    pub settings: Arc<StoreSettings>,
    /// States and events.
    pub bus: Bus,
    /// Devices that reported at least once since start.
    reported: Arc<Mutex<HashSet<String>>>,
}

impl Context {
    /// The context for the device tasks.
    pub fn new(
        ledger: Ledger,
        journal: JournalReader,
        cache: Cache,
        settings: Arc<StoreSettings>,
        bus: Bus,
    ) -> Context {
        Context {
            ledger,
            journal,
            cache,
            settings,
            bus,
            reported: Default::default(),
        }
    }

    fn actor(&self) -> Actor {
        Actor {
            staff_no: "devices".into(),
            role: Role::Admin,
            terminal_id: "storebox".into(),
        }
    }

    /// Records a device's state. A change (or, when first opened, a state other than the one
    /// HQ was last told of) is logged and reported to HQ as `device.alert` with the state as
    /// its code.
    async fn report(&self, dev: &DeviceConfig, state: DeviceState, reason: Option<String>) {
        let changed = self.bus.set_state(&dev.id, state, reason.clone());
        let first = self
            .reported
            .lock()
            .map(|mut r| r.insert(dev.id.clone()))
            .unwrap_or(false);
        let alert = if first {
            // What an earlier run last told HQ of this device (ready when it told nothing): a
            // printer out of paper at the last stop and ready now is reported ready, or HQ's
            // alert stays open for ever; one still out of paper is not reported a second time.
            let told = self.journal.last_alert_from(&dev.id).await;
            told.as_ref()
                .map_or(DeviceState::Ready.as_str(), |(code, _)| code)
                != state.as_str()
        } else {
            changed
        };
        if !alert {
            return;
        }
        let message = match &reason {
            Some(r) => format!("{} is {}: {r}", dev.id, state.as_str()),
            None => format!("{} is {}", dev.id, state.as_str()),
        };
        if state == DeviceState::Ready {
            tracing::info!(device = %dev.id, "device ready");
        } else {
            tracing::warn!(device = %dev.id, state = state.as_str(), reason = reason.as_deref().unwrap_or(""), "device not ready");
        }
        let a = Alert {
            source: dev.id.clone(),
            code: state.as_str().into(),
            message,
            detail: json!({
                "kind": dev.kind,
                "transport": dev.transport.name(),
                "target": dev.transport.target(),
                "terminal": dev.terminal,
            }),
        };
        if let Err(e) = self.ledger.execute(self.actor(), Command::Alert(a)).await {
            tracing::error!(device = %dev.id, error = %e, "cannot record a device alert");
        }
    }
}

/// Starts one task per device; they stop with `shutdown`.
pub fn start(
    devices: &[DeviceConfig],
    ctx: Context,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    devices
        .iter()
        .map(|d| {
            let (ctx, d, shutdown) = (ctx.clone(), d.clone(), shutdown.clone());
            match d.kind {
                DeviceKind::Printer => tokio::spawn(printer::run(ctx, d, shutdown)),
                DeviceKind::Scanner | DeviceKind::CardReader => {
                    tokio::spawn(input::run(ctx, d, shutdown))
                }
            }
        })
        .collect()
}
