//! The MQTT link to HQ (design section 5).
//!
//! One task (`link`) owns the connection. The journal's outbox — not rumqttc's in-memory
//! queue — is what guarantees delivery: after every (re)connect the link sends every event after
//! the acknowledged position, in `seq` order, with a bounded number in flight, and moves the
//! position only over events whose PUBACK arrived ([`outbox`]). Each connection gets a fresh
//! MQTT client, so no publish of an earlier connection can be replayed behind the store's back;
//! the broker keeps the persistent session for the downlink. HQ's messages are applied by the
//! ledger and acknowledged to the broker only after that ([`downlink`] reads them, `apply`
//! applies them).
//!
//! With the uplink disabled or the broker away, the store sells as before: events wait in the
//! journal, `GET /v1/uplink` shows the backlog, and past `outbox_alarm` events an alert is
//! raised.

mod apply;
pub mod downlink;
mod link;
pub mod outbox;
mod tls;
pub mod topics;

pub(crate) use tls::client_config as tls_client_config;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::UplinkConfig;
use crate::domain::event::Alert;
use crate::journal::{JournalReader, store};
use crate::ledger::{Actor, Command, Ledger};
use crate::pii::PiiCodec;

/// What the link reports, shared with the API and health checks.
#[derive(Debug, Default)]
pub struct UplinkStatus {
    /// Whether the uplink is configured on.
    pub enabled: bool,
    connected: AtomicBool,
    acked_seq: AtomicU64,
    last_ack_at: Mutex<Option<DateTime<Utc>>>,
    /// Downlink messages that were malformed or too big (acknowledged and reported).
    pub malformed: AtomicU64,
    /// Downlink messages applied.
    pub applied: AtomicU64,
    /// Events too big for the broker (reported, not sent).
    pub unsendable: AtomicU64,
    /// Connections established.
    pub connects: AtomicU64,
    /// Whether the outbox alarm is raised (an `outbox_backlog` alert told HQ, no `outbox_ok`
    /// since): `/healthz` says so and `/metrics` has it.
    pub backlog_alarm: AtomicBool,
    /// `(seq, occurred_at, seen)` of the oldest unsent event, last looked up (saves a journal
    /// read per health check while the position does not move); `seen` is when it was first
    /// found to be the oldest unsent (on the monotonic clock).
    oldest: Mutex<Option<Oldest>>,
}

/// `(seq, occurred_at, seen)`: see [`UplinkStatus`]'s `oldest`.
type Oldest = (u64, Option<DateTime<FixedOffset>>, Instant);

impl UplinkStatus {
    /// Status starting from the journal's acknowledged position.
    pub fn new(enabled: bool, acked_seq: u64, last_ack_at: Option<DateTime<Utc>>) -> Self {
        UplinkStatus {
            enabled,
            acked_seq: AtomicU64::new(acked_seq),
            last_ack_at: Mutex::new(last_ack_at),
            ..Default::default()
        }
    }

    /// Whether a broker connection is up.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// Every event up to this `seq` is at HQ.
    pub fn acked_seq(&self) -> u64 {
        self.acked_seq.load(Ordering::Relaxed)
    }

    fn set_acked(&self, seq: u64) {
        self.acked_seq.fetch_max(seq, Ordering::Relaxed);
        if let Ok(mut t) = self.last_ack_at.lock() {
            *t = Some(Utc::now());
        }
    }

    /// When the broker last acknowledged an event.
    pub fn last_ack_at(&self) -> Option<DateTime<Utc>> {
        self.last_ack_at.lock().ok().and_then(|t| *t)
    }
}

/// `GET /v1/uplink`.
#[derive(Debug, Clone, Serialize)]
pub struct UplinkView {
    /// Whether the uplink is configured on.
    pub enabled: bool,
    /// Whether a broker connection is up.
    pub connected: bool,
    /// Events not yet acknowledged by the broker.
    pub backlog: u64,
    /// Time of the oldest of them.
    pub oldest_unsent_at: Option<DateTime<FixedOffset>>,
    /// How long the oldest of them has waited, in seconds: by its time, and at least as long
    /// as it has been seen waiting here (a clock set back after events were recorded while it
    /// ran ahead makes their times lie in the future). For `/metrics`.
    #[serde(skip)]
    pub oldest_unsent_age: Option<f64>,
    /// When the broker last acknowledged an event (store-local, like every time in the API).
    pub last_ack_at: Option<DateTime<FixedOffset>>,
}

/// The uplink's view right now: backlog from the ledger's last `seq` and the acknowledged
/// position; the oldest unsent event's time from the journal. Times in the store's timezone.
pub async fn view(
    status: &UplinkStatus,
    last_seq: u64,
    journal: &JournalReader,
    settings: &crate::ledger::StoreSettings,
) -> UplinkView {
    let acked = status.acked_seq().min(last_seq);
    let backlog = last_seq - acked;
    let cached = status
        .oldest
        .lock()
        .ok()
        .and_then(|o| *o)
        .filter(|(seq, _, _)| *seq == acked + 1);
    let (oldest_unsent_at, seen) = match (backlog, cached) {
        (0, _) => (None, None),
        (_, Some((_, at, seen))) => (at, Some(seen)),
        _ => {
            let at = journal
                .with(move |c| store::event_at(c, acked + 1))
                .await
                .ok()
                .flatten()
                .and_then(|e| DateTime::parse_from_rfc3339(&e.occurred_at).ok());
            let seen = Instant::now();
            if let Ok(mut o) = status.oldest.lock() {
                *o = Some((acked + 1, at, seen));
            }
            (at, Some(seen))
        }
    };
    let oldest_unsent_age = seen.map(|seen| {
        let by_time = oldest_unsent_at.map_or(0.0, |t| {
            (Utc::now() - t.with_timezone(&Utc))
                .num_milliseconds()
                .max(0) as f64
                / 1000.0
        });
        by_time.max(seen.elapsed().as_secs_f64())
    });
    UplinkView {
        enabled: status.enabled,
        connected: status.connected(),
        backlog,
        oldest_unsent_at,
        oldest_unsent_age,
        last_ack_at: status.last_ack_at().map(|t| settings.local(t)),
    }
}

/// The actor for commands the uplink itself issues.
fn system_actor() -> Actor {
    Actor {
        staff_no: "uplink".into(),
        role: crate::domain::access::Role::Admin,
        terminal_id: "storebox".into(),
    }
}

/// Records an alert for HQ; logs when even that is impossible.
async fn alert(ledger: &Ledger, code: &str, message: String, detail: serde_json::Value) -> bool {
    let a = Alert {
        source: "uplink".into(),
        code: code.into(),
        message,
        detail,
    };
    match ledger.execute(system_actor(), Command::Alert(a)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, code, "cannot record an uplink alert");
            false
        }
    }
}

/// Everything the link needs.
pub struct Parts {
    /// `[uplink]`.
    pub config: UplinkConfig,
    /// This store.
    pub store_id: String,
    /// The single writer.
    pub ledger: Ledger,
    /// Read access to the journal (the outbox).
    pub journal: JournalReader,
    /// Read access to the cache (the members a campaign from HQ targets).
    pub cache: crate::cache::Cache,
    /// Opens personal data for HQ.
    pub codec: PiiCodec,
    /// Shared status.
    pub status: Arc<UplinkStatus>,
    /// When the daemon started (for the status message).
    pub started_at: DateTime<Utc>,
}

/// Starts the link (when enabled) and the backlog watch; both stop with `shutdown`.
pub fn start(parts: Parts, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![tokio::spawn(backlog_watch(
        parts.ledger.clone(),
        parts.journal.clone(),
        parts.status.clone(),
        parts.config.outbox_alarm,
        shutdown.clone(),
    ))];
    if parts.config.enabled {
        tasks.push(tokio::spawn(link::run(parts, shutdown)));
    } else {
        tracing::info!("uplink disabled: events wait in the journal's outbox");
    }
    tasks
}

/// Raises an alert when the outbox passes its alarm size (`outbox_backlog`, once per
/// crossing) and another when it is below half the alarm again (`outbox_ok`): HQ's trouble
/// list closes the outage it opened. What HQ was last told survives a restart: a box switched
/// off during an outage neither announces it again nor forgets to end it.
async fn backlog_watch(
    ledger: Ledger,
    journal: JournalReader,
    status: Arc<UplinkStatus>,
    alarm: u64,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut raised = match journal.with(store::backlog_alarm_raised).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot look for an earlier backlog alert");
            false
        }
    };
    loop {
        status.backlog_alarm.store(raised, Ordering::Relaxed);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let last = ledger.stats.last_seq.load(Ordering::Relaxed);
                let backlog = last.saturating_sub(status.acked_seq());
                if !raised && backlog > alarm {
                    tracing::warn!(backlog, alarm, "outbox backlog above its alarm size; selling goes on");
                    raised = alert(
                        &ledger,
                        "outbox_backlog",
                        format!("{backlog} events wait for HQ (alarm at {alarm})"),
                        serde_json::json!({"backlog": backlog, "alarm": alarm}),
                    )
                    .await;
                } else if raised && backlog.saturating_mul(2) < alarm {
                    tracing::info!(backlog, alarm, "outbox backlog below half its alarm size again");
                    // Not recorded (the journal refused it): tried again at the next tick.
                    raised = !alert(
                        &ledger,
                        "outbox_ok",
                        format!("{backlog} events wait for HQ (alarm at {alarm})"),
                        serde_json::json!({"backlog": backlog, "alarm": alarm}),
                    )
                    .await;
                }
            }
        }
    }
}
