//! `GET /healthz`: is the store able to sell? `GET /metrics`: Prometheus figures. No token
//! needed for either (neither holds personal data); both cheap enough to poll.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

use axum::response::IntoResponse;

use super::{AppState, Json};
use crate::metrics::{Gauges, Troubles, render};

/// How long `/healthz` waits for the ledger to try a journal or cache that refused a write.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
}

#[derive(Serialize)]
struct Journal {
    writable: bool,
    last_seq: u64,
    failed_batches: u64,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    store_id: String,
    started_at: chrono::DateTime<chrono::FixedOffset>,
    /// Why the status is not `ok`.
    problems: Vec<String>,
    journal: Journal,
    cache: Cache,
    disk: Disk,
    uplink: crate::uplink::UplinkView,
    devices: Vec<DeviceHealth>,
}

#[derive(Serialize)]
struct Cache {
    readable: bool,
    /// False while the cache cannot be written (see `problems`).
    writable: bool,
    /// The journal `seq` the cache has applied.
    applied_seq: Option<u64>,
}

#[derive(Serialize)]
struct Disk {
    free_bytes: Option<u64>,
    low: bool,
}

#[derive(Serialize)]
struct DeviceHealth {
    id: String,
    state: &'static str,
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let stats = &state.ledger.stats;
    let running = state.ledger.is_running();
    if running
        && (!stats.writable.load(Ordering::Relaxed) || stats.cache_failing.load(Ordering::Relaxed))
    {
        // The ledger tries at each round whether the journal or the cache takes writes again
        // (at most once a second): a ping makes a round, so that a fault that has cleared
        // shows as cleared here without waiting for a sale.
        let _ = tokio::time::timeout(PROBE_WAIT, state.ledger.ping()).await;
    }
    let writable = running && stats.writable.load(Ordering::Relaxed);
    let last_seq = stats.last_seq.load(Ordering::Relaxed);
    let uplink =
        crate::uplink::view(&state.uplink, last_seq, &state.journal, &state.settings).await;
    // A point read (not a count: counting a million members takes tens of milliseconds).
    let applied = state.cache.applied_seq().ok();
    let devices: Vec<DeviceHealth> = state
        .devices
        .statuses()
        .into_iter()
        .map(|d| DeviceHealth {
            id: d.id,
            state: d.state.as_str(),
        })
        .collect();
    let now = chrono::Utc::now();
    let troubles = troubles(&state, &now);
    let disk = Disk {
        free_bytes: state.disk.free_bytes(),
        low: troubles.disk_low,
    };
    // Failed: no sale can be recorded (or members found). Degraded: the store sells, but
    // something needs attention.
    let mut failed = Vec::new();
    let mut degraded = Vec::new();
    if !running {
        failed.push("ledger stopped".to_string());
    } else if stats.journal_misplaced.load(Ordering::Relaxed) {
        failed.push(
            "journal file no longer in the data directory (removed or moved while storebox ran): nothing is recorded until it is back, or storebox is restarted"
                .to_string(),
        );
    } else if !writable {
        failed.push("journal not writable".to_string());
    }
    if applied.is_none() {
        failed.push("cache not readable".to_string());
    }
    let cache_writable = !troubles.cache_failing;
    if running && stats.cache_behind.load(Ordering::Relaxed) {
        failed.push(
            "cache behind the journal: a write to it failed (disk full?); commands are refused until it catches up"
                .to_string(),
        );
    } else if running && !cache_writable {
        failed.push(
            "cache not writable: sales are refused, or the cache falls behind the journal"
                .to_string(),
        );
    }
    if troubles.cache_damaged {
        degraded.push(
            "cache damaged: some members or products cannot be read until a restart rebuilds it from the journal"
                .to_string(),
        );
    }
    if troubles.clock_not_set {
        degraded.push(format!(
            "clock not set: the box's clock says {}; sales are recorded with that date until NTP sets it (no battery-backed clock? check NTP and the network)",
            state.settings.local(now).format("%Y-%m-%d %H:%M")
        ));
    }
    if disk.low {
        degraded.push("disk space low".to_string());
    }
    if let Some(e) = state.backup_failing.lock().ok().and_then(|f| f.clone()) {
        degraded.push(format!("scheduled backup failing: {e}"));
    }
    if uplink.enabled && !uplink.connected {
        degraded.push("uplink not connected".to_string());
    }
    if troubles.outbox_alarm {
        degraded.push(format!(
            "outbox alarm raised: {} events wait for HQ (it ends below half of uplink.outbox_alarm)",
            uplink.backlog
        ));
    }
    for d in devices.iter().filter(|d| d.state != "ready") {
        degraded.push(format!("device {} {}", d.id, d.state));
    }
    let (status, code) = if !failed.is_empty() {
        ("failed", StatusCode::SERVICE_UNAVAILABLE)
    } else if !degraded.is_empty() {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    failed.extend(degraded);
    (
        code,
        Json(Health {
            status,
            version: env!("CARGO_PKG_VERSION"),
            store_id: state.settings.store_id.clone(),
            started_at: state.settings.local(state.started_at),
            problems: failed,
            journal: Journal {
                writable,
                last_seq,
                failed_batches: stats.failed_batches.load(Ordering::Relaxed),
            },
            cache: Cache {
                readable: applied.is_some(),
                writable: cache_writable,
                applied_seq: applied,
            },
            disk,
            uplink,
            devices,
        }),
    )
}

/// The troubles `/healthz` lists and `/metrics` gives as gauges, read in one place.
fn troubles(state: &AppState, now: &chrono::DateTime<chrono::Utc>) -> Troubles {
    Troubles {
        outbox_alarm: state.uplink.backlog_alarm.load(Ordering::Relaxed),
        disk_low: state.disk.is_low(),
        backup_failing: state
            .backup_failing
            .lock()
            .map(|f| f.is_some())
            .unwrap_or(false),
        clock_not_set: crate::domain::timestamp::clock_not_set(now),
        cache_damaged: crate::cache::damage_noted(),
        cache_failing: state.ledger.stats.cache_failing.load(Ordering::Relaxed),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = &state.ledger.stats;
    let last_seq = stats.last_seq.load(Ordering::Relaxed);
    let uplink =
        crate::uplink::view(&state.uplink, last_seq, &state.journal, &state.settings).await;
    let gauges = Gauges {
        last_seq,
        batches: stats.batches.load(Ordering::Relaxed),
        commands: stats.commands.load(Ordering::Relaxed),
        failed_batches: stats.failed_batches.load(Ordering::Relaxed),
        phase_seconds: stats
            .phase_micros
            .each_ref()
            .map(|m| m.load(Ordering::Relaxed) as f64 / 1e6),
        writable: state.ledger.is_running() && stats.writable.load(Ordering::Relaxed),
        outbox_backlog: uplink.backlog,
        outbox_oldest_age: uplink.oldest_unsent_age,
        uplink_connected: uplink.enabled.then_some(uplink.connected),
        devices: state
            .devices
            .statuses()
            .into_iter()
            .map(|d| {
                (
                    d.id,
                    d.kind.as_str(),
                    d.state.as_str(),
                    d.handled,
                    d.rejected,
                )
            })
            .collect(),
        members: {
            let cache = state.cache.clone();
            tokio::task::spawn_blocking(move || cache.member_count().unwrap_or(0))
                .await
                .unwrap_or(0)
        },
        disk_free_bytes: state.disk.free_bytes(),
        uptime: state.started.elapsed().as_secs_f64(),
        troubles: troubles(&state, &chrono::Utc::now()),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&state.metrics, &gauges),
    )
}
