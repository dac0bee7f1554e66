//! What devices tell the rest of storebox: their state (for `GET /v1/devices`) and their events
//! (scans, card swipes, state changes), broadcast to the terminals' `GET /v1/events` streams.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

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

/// The latest events with their ids and when they were kept (monotonic: a clock set back or
/// forward changes no event's age), the first id this run gave less one, and the last.
struct Recent {
    start_id: u64,
    last_id: u64,
    events: VecDeque<(u64, Instant, DeviceEvent)>,
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
                start_id: last_id,
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
        recent.events.push_back((id, Instant::now(), event.clone()));
        // Sent under the lock, so ids go out in order and `subscribe_after` misses none.
        let _ = self.tx.send((id, event));
    }

    /// The kept events after id `after` (none without one) kept no longer than
    /// [`REPLAY_WINDOW`] before `now`, the last id given (for the stream to pass on, so that a
    /// terminal that has heard nothing yet can resume too), and a receiver of every event
    /// after them. An id this run did not give (an earlier run's, greater when that run's
    /// clock was ahead of this one's) replays every event kept of the window.
    pub fn subscribe_after(
        &self,
        after: Option<u64>,
        now: Instant,
    ) -> (Vec<Numbered>, u64, broadcast::Receiver<Numbered>) {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = self.tx.subscribe();
        let window = REPLAY_WINDOW.to_std().unwrap_or_default();
        let missed = match after {
            None => Vec::new(),
            Some(after) => {
                let after = if (recent.start_id..=recent.last_id).contains(&after) {
                    after
                } else {
                    0
                };
                recent
                    .events
                    .iter()
                    .filter(|(id, kept, _)| {
                        *id > after && now.saturating_duration_since(*kept) <= window
                    })
                    .map(|(id, _, e)| (*id, e.clone()))
                    .collect()
            }
        };
        (missed, recent.last_id, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(code: &str, at: DateTime<Utc>) -> DeviceEvent {
        DeviceEvent::Scan {
            device: "scanner-1".into(),
            terminal: "pos-1".into(),
            code: code.into(),
            symbology: Symbology::Other,
            product: None,
            at,
        }
    }

    fn codes(missed: &[Numbered]) -> Vec<String> {
        missed
            .iter()
            .map(|(_, e)| match e {
                DeviceEvent::Scan { code, .. } => code.clone(),
                _ => String::new(),
            })
            .collect()
    }

    /// The daemon restarted with its clock behind the last run's (a box without a battery
    /// booted at 1970 before NTP, or NTP set back a clock that ran fast): the till reconnects
    /// with the last run's id, greater than any this run gave, and must still get the scans
    /// made since the restart.
    #[test]
    fn an_id_of_a_run_whose_clock_was_ahead_still_gets_what_was_missed() {
        let bus = Bus::new(&[]);
        let now = Utc::now();
        bus.publish(scan("A", now));
        bus.publish(scan("B", now));
        // The earlier run's ids started an hour later than this run's.
        let earlier_run = u64::try_from(now.timestamp_micros()).unwrap() + 3_600_000_000;
        let (missed, _, _rx) = bus.subscribe_after(Some(earlier_run), Instant::now());
        assert_eq!(codes(&missed), ["A", "B"]);
    }

    /// Events published while terminals subscribe are each delivered once: in the replay or
    /// live, never both, never neither.
    #[test]
    fn events_published_while_subscribing_are_neither_missed_nor_doubled() {
        let bus = Bus::new(&[]);
        let now = Utc::now();
        bus.publish(scan("0", now));
        let (first, _, _rx) = bus.subscribe_after(Some(0), Instant::now());
        let before_first = first[0].0 - 1;
        let publisher = {
            let bus = bus.clone();
            std::thread::spawn(move || {
                for i in 1..1000 {
                    bus.publish(scan(&i.to_string(), Utc::now()));
                }
            })
        };
        for _ in 0..200 {
            let (missed, _, mut rx) = bus.subscribe_after(Some(before_first), Instant::now());
            let mut ids: Vec<u64> = missed.iter().map(|(id, _)| *id).collect();
            let upto = ids.last().copied().unwrap_or(before_first);
            // What the receiver got right after subscribing continues the replay.
            if let Ok((id, _)) = rx.try_recv() {
                ids.push(id);
                assert_eq!(id, upto + 1, "a gap or a double between replay and live");
            }
            assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
        }
        publisher.join().unwrap();
    }
}
