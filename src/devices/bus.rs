//! What devices tell the rest of storebox: their state (for `GET /v1/devices`) and their events
//! (scans, card swipes, state changes), broadcast to the terminals' `GET /v1/events` streams.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

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

/// How many of the latest events the bus keeps for terminals that reconnect.
const RECENT: usize = 1024;

/// How old an event may be and still be given to a terminal that reconnects after missing it
/// (a Wi-Fi drop); an older scan would only confuse the till.
pub const REPLAY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// An event with its id (`id:` on the event stream).
pub type Numbered = (u64, DeviceEvent);

/// The latest events with their ids, and the last id given.
struct Recent {
    last_id: u64,
    events: VecDeque<(u64, DeviceEvent)>,
}

/// Device states and the event broadcast. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<(u64, DeviceEvent)>,
    recent: Arc<Mutex<Recent>>,
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
        // Ids start at the start-up time (in microseconds, one event a µs at most), so those
        // of a later run are greater than any a terminal kept from an earlier one.
        let last_id = u64::try_from(now.timestamp_micros()).unwrap_or(0);
        Bus {
            tx: broadcast::channel(RECENT).0,
            recent: Arc::new(Mutex::new(Recent {
                last_id,
                events: VecDeque::with_capacity(RECENT),
            })),
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

    /// Sends an event, with the next id, to whoever listens (nobody listening is fine), and
    /// keeps it for terminals that reconnect.
    pub fn publish(&self, event: DeviceEvent) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent.last_id += 1;
        let id = recent.last_id;
        if recent.events.len() >= RECENT {
            recent.events.pop_front();
        }
        recent.events.push_back((id, event.clone()));
        // Sent under the lock, so ids go out in order and `subscribe_after` misses none.
        let _ = self.tx.send((id, event));
    }

    /// The kept events after id `after` (none without one) no older than [`REPLAY_WINDOW`] at
    /// `now`, and a receiver of every event after them.
    pub fn subscribe_after(
        &self,
        after: Option<u64>,
        now: DateTime<Utc>,
    ) -> (Vec<Numbered>, broadcast::Receiver<Numbered>) {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = self.tx.subscribe();
        let missed = match after {
            None => Vec::new(),
            Some(after) => recent
                .events
                .iter()
                .filter(|(id, e)| *id > after && now - e.at() <= REPLAY_WINDOW)
                .cloned()
                .collect(),
        };
        (missed, rx)
    }
}
