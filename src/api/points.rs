//! `POST /v1/members/{id}/points`: a manager's adjustment of a member's points by hand.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::{ApiError, ApiResult, AppState, Can, Json, Path, gate, idempotency_key};
use crate::domain::adjustment::AdjustReason;
use crate::domain::event::{Event, EventBody};
use crate::domain::sale::MemberAfter;
use crate::ledger::requests::{AdjustPoints, request_hash};
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/members/{id}/points", post(adjust))
}

/// The answer: the adjustment as recorded, with the member after it.
#[derive(Debug, Serialize)]
struct AdjustmentView {
    /// The `points.adjusted` event's id.
    id: String,
    seq: u64,
    member_id: String,
    delta: i64,
    reason: AdjustReason,
    note: String,
    staff_no: String,
    terminal_id: String,
    #[serde(with = "crate::domain::timestamp::serde")]
    created_at: DateTime<FixedOffset>,
    member: MemberAfter,
}

impl AdjustmentView {
    fn of(e: Event) -> Option<Self> {
        let EventBody::PointsAdjusted(a) = e.body else {
            return None;
        };
        let a = *a;
        Some(AdjustmentView {
            id: e.id,
            seq: e.seq,
            member_id: a.member_id,
            delta: a.delta,
            reason: a.reason,
            note: a.note,
            staff_no: a.staff_no,
            terminal_id: a.terminal_id,
            created_at: e.occurred_at,
            member: a.member,
        })
    }
}

async fn adjust(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::PointsAdjust>,
    headers: HeaderMap,
    Path(member_id): Path<String>,
    Json(req): Json<AdjustPoints>,
) -> ApiResult<(StatusCode, Json<AdjustmentView>)> {
    let hash = request_hash(&format!("points:{member_id}"), &req);
    let idem = idempotency_key(&headers, hash)?.ok_or_else(|| {
        ApiError::bad_request(
            "idempotency_key_required",
            "POST /v1/members/{id}/points needs an Idempotency-Key header (a new UUID per adjustment)",
        )
    })?;
    match state
        .ledger
        .execute(
            staff.actor(),
            Command::AdjustPoints {
                member_id,
                req,
                idem,
            },
        )
        .await?
    {
        Outcome::PointsAdjusted { event, replayed } => {
            let status = if replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            let view = AdjustmentView::of(*event)
                .ok_or_else(|| ApiError::internal("the key's event is not an adjustment"))?;
            Ok((status, Json(view)))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
