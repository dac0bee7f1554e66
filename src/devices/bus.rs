//! What devices tell the rest of storebox: their state (for `GET /v1/devices`) and their events
//! (scans, card swipes, state changes), broadcast to the terminals' `GET /v1/events` streams.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use super::scan::Symbology;
use crate::config::{DeviceConfig, DeviceKind};

/// A device's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Open and working.
    Ready,
    /// Not reachable (unplugged, switched off, refusing connections).
    Offline,
    /// A printer out of paper (or with its cover open).
    PaperOut,
    /// Reachable but failing.
    Error,
}

impl DeviceState {
    /// The state's name, used as the alert code.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Ready => "ready",
            DeviceState::Offline => "offline",
            DeviceState::PaperOut => "paper_out",
            DeviceState::Error => "error",
        }
    }
}

/// A product as a scan event shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ScannedProduct {
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Price in force now.
    pub price: i64,
}

/// A member as a card event shows it (phone masked).
#[derive(Debug, Clone, Serialize)]
pub struct CardMember {
    /// Member id.
    pub id: String,
    /// Name.
    pub name: Option<String>,
    /// Masked phone (`138****5678`).
    pub phone: Option<String>,
    /// Level code and name.
    pub level: Option<crate::domain::member::LevelRef>,
}

/// An event for terminals.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeviceEvent {
    /// A barcode was scanned.
    Scan {
        /// Scanner.
        device: String,
        /// Terminal it serves.
        terminal: String,
        /// The code.
        code: String,
        /// What it looks like.
        symbology: Symbology,
        /// The product with that barcode, if the store knows one.
        product: Option<ScannedProduct>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A member card was read.
    Card {
        /// Reader.
        device: String,
        /// Terminal it serves.
        terminal: String,
        /// The card number.
        card_no: String,
        /// The member holding the card, if any.
        member: Option<CardMember>,
        /// Whether no member holds this card.
        unknown_card: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// A device changed state.
    Device {
        /// Device.
        device: String,
        /// Terminal it serves.
        terminal: String,
        /// New state.
        state: DeviceState,
        /// Why, when not ready.
        last_error: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
}

impl DeviceEvent {
    /// When it happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            DeviceEvent::Scan { at, .. }
            | DeviceEvent::Card { at, .. }
            | DeviceEvent::Device { at, .. } => *at,
        }
    }

    /// The terminal the event is for.
    pub fn terminal(&self) -> &str {
        match self {
            DeviceEvent::Scan { terminal, .. }
            | DeviceEvent::Card { terminal, .. }
            | DeviceEvent::Device { terminal, .. } => terminal,
        }
    }
}

/// A device's entry in `GET /v1/devices`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceStatus {
    /// Device id.
    pub id: String,
    /// What it is.
    pub kind: DeviceKind,
    /// `serial`, `hid`, `tcp`, `file`.
    pub transport: &'static str,
    /// Path or address.
    pub target: String,
    /// Terminal it serves.
    pub terminal: String,
    /// Current state.
    pub state: DeviceState,
    /// The last error seen, if any.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub since: DateTime<Utc>,
    /// Scans, swipes or receipts handled.
    pub handled: u64,
    /// Inputs rejected (garbage, bad check digits) or jobs failed.
    pub rejected: u64,
}

/// Device states and the event broadcast. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<DeviceEvent>,
    states: Arc<RwLock<BTreeMap<String, DeviceStatus>>>,
    counters: Arc<BTreeMap<String, (AtomicU64, AtomicU64)>>,
}

impl Bus {
    /// A bus for `devices`, every one starting offline until its task opens it.
    pub fn new(devices: &[DeviceConfig]) -> Bus {
        let now = Utc::now();
        let states = devices
            .iter()
            .map(|d| {
                (
                    d.id.clone(),
                    DeviceStatus {
                        id: d.id.clone(),
                        kind: d.kind,
                        transport: d.transport.name(),
                        target: d.transport.target(),
                        terminal: d.terminal.clone(),
                        state: DeviceState::Offline,
                        last_error: Some("not opened yet".into()),
                        since: now,
                        handled: 0,
                        rejected: 0,
                    },
                )
            })
            .collect();
        let counters = devices
            .iter()
            .map(|d| (d.id.clone(), (AtomicU64::new(0), AtomicU64::new(0))))
            .collect();
        Bus {
            tx: broadcast::channel(1024).0,
            states: Arc::new(RwLock::new(states)),
            counters: Arc::new(counters),
        }
    }

    /// Every device's status.
    pub fn statuses(&self) -> Vec<DeviceStatus> {
        let mut out: Vec<DeviceStatus> = self
            .states
            .read()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for s in &mut out {
            if let Some((h, r)) = self.counters.get(&s.id) {
                s.handled = h.load(Ordering::Relaxed);
                s.rejected = r.load(Ordering::Relaxed);
            }
        }
        out
    }

    /// A device's current state.
    pub fn state(&self, id: &str) -> Option<DeviceState> {
        self.states.read().ok()?.get(id).map(|s| s.state)
    }

    /// Records a state; returns whether it changed (and then broadcasts it).
    pub fn set_state(&self, id: &str, state: DeviceState, error: Option<String>) -> bool {
        let Ok(mut states) = self.states.write() else {
            return false;
        };
        let Some(s) = states.get_mut(id) else {
            return false;
        };
        let changed = s.state != state;
        s.last_error = error.clone();
        if !changed {
            return false;
        }
        s.state = state;
        s.since = Utc::now();
        let event = DeviceEvent::Device {
            device: id.to_string(),
            terminal: s.terminal.clone(),
            state,
            last_error: error,
            at: s.since,
        };
        drop(states);
        self.publish(event);
        true
    }

    /// Counts a handled input or job.
    pub fn handled(&self, id: &str) {
        if let Some((h, _)) = self.counters.get(id) {
            h.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a rejected input or failed job.
    pub fn rejected(&self, id: &str) {
        if let Some((_, r)) = self.counters.get(id) {
            r.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sends an event to whoever listens (nobody listening is fine).
    pub fn publish(&self, event: DeviceEvent) {
        let _ = self.tx.send(event);
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.tx.subscribe()
    }
}
