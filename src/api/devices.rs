//! `/v1/devices` (state), `/v1/events` (the terminal's scans, card reads and device changes as
//! server-sent events), `POST /v1/sales/{id}/print` (reprint a receipt or a refund slip) and
//! `POST /v1/devices/{id}/drawer` (open the drawer without a sale).

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Staff, gate};
use crate::domain::access::Action;
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/devices", get(list))
        .route("/v1/devices/{id}/drawer", post(open_drawer))
        .route("/v1/events", get(events))
        .route("/v1/sales/{id}/print", post(reprint))
}

#[derive(Serialize)]
struct Devices {
    devices: Vec<serde_json::Value>,
}

/// `v` as JSON with its `key` set to `at` in the store's timezone (the bus keeps UTC; the API
/// gives every time with the store's offset).
fn with_local_time<T: Serialize>(
    state: &AppState,
    v: &T,
    key: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let mut json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    if let Some(o) = json.as_object_mut() {
        o.insert(key.to_string(), serde_json::json!(state.settings.local(at)));
    }
    json
}

async fn list(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Devices>> {
    staff.allow(Action::StatusRead)?;
    Ok(Json(Devices {
        devices: state
            .devices
            .statuses()
            .iter()
            .map(|d| with_local_time(&state, d, "since", d.since))
            .collect(),
    }))
}

/// How often an idle event stream checks that its session still exists.
const SESSION_CHECK: Duration = Duration::from_secs(5);

/// The events of the session's terminal, as they happen, each with an id. A terminal that
/// reconnects with `Last-Event-ID` first gets the events it missed (those the bus still keeps,
/// of the last [`REPLAY_WINDOW`](crate::devices::bus::REPLAY_WINDOW)). A client that falls
/// behind loses the oldest events rather than slowing the devices down. The stream lasts as
/// long as its session: it ends when the session is logged out, ended (staff removed, role
/// changed) or expires, so a terminal whose staff logged out hears no more card reads.
async fn events(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
) -> ApiResult<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>> {
    staff.allow(Action::StatusRead)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let terminal = staff.session.terminal_id.clone();
    let (cache, token_hash) = (state.cache.clone(), staff.token_hash);
    let expires_at = staff.session.expires_at;
    let session_began = staff.session.created_at;
    let local = state.clone();
    // The events missed (of this session: a card read at the till before its login, heard by
    // no stream then, is not given to the next cashier), then an `id:` alone with the last id
    // given (so that a terminal that has heard nothing of its till yet can resume too), then
    // device events as they come, and a tick now and then (`None`) so an idle stream notices.
    let (mut missed, last_id, live) = state
        .devices
        .subscribe_after(after, std::time::Instant::now());
    missed.retain(|(_, e)| e.at() >= session_began);
    let events = tokio_stream::iter(missed.into_iter().map(Ok))
        .chain(tokio_stream::iter([Err(last_id)]))
        .chain(BroadcastStream::new(live).map(|e| e.map_err(|_| 0)))
        .map(Some);
    let ticks = Box::pin(futures_util::stream::unfold((), |()| async {
        tokio::time::sleep(SESSION_CHECK).await;
        Some((None, ()))
    }));
    let stream = futures_util::stream::select(events, ticks)
        .take_while(move |_| matches!(cache.session(&token_hash, chrono::Utc::now()), Ok(Some(_))))
        .filter_map(move |e| {
            let (id, e) = match e? {
                Ok(numbered) => numbered,
                // The last id given when the stream began, or a lag (0: nothing to say).
                Err(0) => return None,
                Err(last_id) => return Some(Ok(Event::default().id(last_id.to_string()))),
            };
            if e.terminal() != terminal {
                return None;
            }
            let kind = match &e {
                crate::devices::bus::DeviceEvent::Scan { .. } => "scan",
                crate::devices::bus::DeviceEvent::Card { .. } => "card",
                crate::devices::bus::DeviceEvent::Device { .. } => "device",
            };
            let data = with_local_time(&local, &e, "at", e.at());
            Event::default()
                .id(id.to_string())
                .event(kind)
                .json_data(&data)
                .ok()
                .map(Ok)
        });
    // The stream ends when the session expires (nothing to check it against then), and at
    // shutdown, or the server would wait for it forever.
    let until_expiry = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or(Duration::ZERO);
    let stream = futures_util::StreamExt::take_until(stream, tokio::time::sleep(until_expiry));
    let stream =
        futures_util::StreamExt::take_until(stream, state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Serialize)]
struct Queued {
    job_id: i64,
    device_id: String,
}

/// A reprint's optional body: which refund's slip to print instead of the sale's receipt.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReprintRequest {
    refund_id: Option<String>,
}

async fn reprint(
    State(state): State<AppState>,
    staff: Staff,
    Path(sale_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    staff.allow(Action::ReceiptReprint)?;
    // The body is optional (terminals reprint a receipt with none, whatever Content-Type they
    // send): only a body with something in it is read.
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        ReprintRequest::default()
    } else {
        serde_json::from_slice::<ReprintRequest>(&body)
            .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))?
    };
    let refund_id = req.refund_id;
    queued(
        state
            .ledger
            .execute(staff.actor(), Command::Reprint { sale_id, refund_id })
            .await?,
    )
}

async fn open_drawer(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::DeviceControl>,
    Path(device_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    queued(
        state
            .ledger
            .execute(staff.actor(), Command::OpenDrawer { device_id })
            .await?,
    )
}

fn queued(outcome: Outcome) -> ApiResult<(StatusCode, Json<Queued>)> {
    match outcome {
        Outcome::Queued { job_id, device_id } => {
            Ok((StatusCode::ACCEPTED, Json(Queued { job_id, device_id })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
