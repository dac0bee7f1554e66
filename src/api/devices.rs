//! `/v1/devices` (state), `/v1/events` (the terminal's scans, card reads and device changes as
//! server-sent events), `POST /v1/sales/{id}/print` (reprint) and
//! `POST /v1/devices/{id}/drawer` (open the drawer without a sale).

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use serde::Serialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::{ApiError, ApiResult, AppState, Json, Path, Staff};
use crate::devices::bus::DeviceStatus;
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
    devices: Vec<DeviceStatus>,
}

async fn list(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Devices>> {
    staff.allow(Action::StatusRead)?;
    Ok(Json(Devices {
        devices: state.devices.statuses(),
    }))
}

/// The events of the session's terminal, as they happen. A client that falls behind loses the
/// oldest events rather than slowing the devices down.
async fn events(
    State(state): State<AppState>,
    staff: Staff,
) -> ApiResult<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>> {
    staff.allow(Action::StatusRead)?;
    let terminal = staff.session.terminal_id.clone();
    let stream = BroadcastStream::new(state.devices.subscribe()).filter_map(move |e| {
        let e = e.ok()?;
        if e.terminal() != terminal {
            return None;
        }
        let kind = match &e {
            crate::devices::bus::DeviceEvent::Scan { .. } => "scan",
            crate::devices::bus::DeviceEvent::Card { .. } => "card",
            crate::devices::bus::DeviceEvent::Device { .. } => "device",
        };
        Event::default().event(kind).json_data(&e).ok().map(Ok)
    });
    // The stream ends at shutdown, or the server would wait for it forever.
    let stream =
        futures_util::StreamExt::take_until(stream, state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Serialize)]
struct Queued {
    job_id: i64,
    device_id: String,
}

async fn reprint(
    State(state): State<AppState>,
    staff: Staff,
    Path(sale_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    staff.allow(Action::ReceiptReprint)?;
    queued(
        state
            .ledger
            .execute(staff.actor(), Command::Reprint { sale_id })
            .await?,
    )
}

async fn open_drawer(
    State(state): State<AppState>,
    staff: Staff,
    Path(device_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    staff.allow(Action::DeviceControl)?;
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
