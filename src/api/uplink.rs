//! `GET /v1/uplink`: is HQ getting the store's events?

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::{ApiResult, AppState, Json, Staff};
use crate::domain::access::Action;
use crate::uplink::{UplinkView, view};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/uplink", get(read))
}

async fn read(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<UplinkView>> {
    staff.allow(Action::StatusRead)?;
    let last = state.ledger.stats.last_seq.load(Ordering::Relaxed);
    Ok(Json(
        view(&state.uplink, last, &state.journal, &state.settings).await,
    ))
}
