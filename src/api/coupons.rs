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
    Ok(Json(c))
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
        Outcome::Coupon(c) => Ok((StatusCode::CREATED, Json(*c))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
