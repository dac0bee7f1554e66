//! `GET /healthz`: is the store able to sell? No token needed; cheap enough to poll.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;

use super::{AppState, Json};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
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
    started_at: chrono::DateTime<chrono::Utc>,
    journal: Journal,
    uplink: crate::uplink::UplinkView,
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let stats = &state.ledger.stats;
    let writable = stats.writable.load(Ordering::Relaxed);
    let last_seq = stats.last_seq.load(Ordering::Relaxed);
    let uplink = crate::uplink::view(&state.uplink, last_seq, &state.journal).await;
    let (status, code) = if !writable {
        ("failed", StatusCode::SERVICE_UNAVAILABLE)
    } else if uplink.enabled && !uplink.connected {
        ("degraded", StatusCode::OK)
    } else {
        ("ok", StatusCode::OK)
    };
    (
        code,
        Json(Health {
            status,
            version: env!("CARGO_PKG_VERSION"),
            store_id: state.settings.store_id.clone(),
            started_at: state.started_at,
            journal: Journal {
                writable,
                last_seq,
                failed_batches: stats.failed_batches.load(Ordering::Relaxed),
            },
            uplink,
        }),
    )
}
