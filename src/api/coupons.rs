//! `/v1/coupons`: look up a coupon, issue one locally.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Staff, gate};
use crate::domain::access::Action;
use crate::domain::catalog::Coupon;
use crate::ledger::requests::IssueCoupon;
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/coupons", post(issue))
        .route("/v1/coupons/{code}", get(read))
}

async fn read(
    State(state): State<AppState>,
    staff: Staff,
    Path(code): Path<String>,
) -> ApiResult<Json<Coupon>> {
    staff.allow(Action::CouponRead)?;
    let code = crate::domain::catalog::typed_coupon_code(&code);
    let c = state
        .cache
        .coupon(&code)?
        .ok_or_else(|| ApiError::not_found("unknown_coupon", format!("no coupon {code}")))?;
    Ok(Json(store_local(&state, c)))
}

/// The coupon with its times in the store's timezone, like every time the API gives (HQ's
/// coupons, and those a manager issued, come with the offset they were written in).
fn store_local(state: &AppState, mut c: Coupon) -> Coupon {
    let local = |t: chrono::DateTime<chrono::FixedOffset>| state.settings.local(t);
    c.valid_from = c.valid_from.map(local);
    c.valid_to = c.valid_to.map(local);
    if let Some(u) = c.used.as_mut() {
        u.at = local(u.at);
    }
    c
}

async fn issue(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::CouponIssue>,
    Json(req): Json<IssueCoupon>,
) -> ApiResult<(StatusCode, Json<Coupon>)> {
    match state
        .ledger
        .execute(staff.actor(), Command::IssueCoupon { req })
        .await?
    {
        Outcome::Coupon(c) => Ok((StatusCode::CREATED, Json(store_local(&state, *c)))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
