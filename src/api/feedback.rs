//! `/v1/feedback`: record a customer's feedback (any staff), list and follow up (managers).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, patch};
use chrono::Datelike;
use serde::Deserialize;

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Query, Staff, gate};
use crate::domain::access::Action;
use crate::domain::feedback::{Feedback, FeedbackCategory, FeedbackStatus};
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/feedback", get(list).post(record))
        .route("/v1/feedback/{id}", patch(follow_up))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewFeedback {
    rating: u8,
    #[serde(default)]
    text: String,
    category: FeedbackCategory,
    sale_id: Option<String>,
    member_id: Option<String>,
    staff_no: Option<String>,
    due: Option<chrono::NaiveDate>,
}

fn feedback(outcome: Outcome) -> ApiResult<Feedback> {
    match outcome {
        Outcome::Feedback(f) => Ok(*f),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn record(
    State(state): State<AppState>,
    staff: Staff,
    Json(req): Json<NewFeedback>,
) -> ApiResult<(StatusCode, Json<Feedback>)> {
    staff.allow(Action::FeedbackRecord)?;
    // The staff member it is about must be one (the staff report counts by number), and a
    // follow-up is due within the coming year.
    if let Some(no) = &req.staff_no
        && state.directory.get().staff(&state.cache, no)?.is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_staff",
            format!("no staff member {no}"),
        ));
    }
    let today = state.settings.local_date(chrono::Utc::now());
    if let Some(due) = req.due
        && (due.year() < 2000 || due > today + chrono::Duration::days(366))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_due",
            "due must be a day from 2000 to a year from today",
        ));
    }
    let now = chrono::Utc::now().fixed_offset();
    let item = Feedback {
        id: String::new(),
        rating: req.rating,
        text: req.text,
        category: req.category,
        sale_id: req.sale_id,
        member_id: req.member_id,
        staff_no: req.staff_no,
        status: FeedbackStatus::Open,
        // Complaints are followed up within three days unless told otherwise.
        due: req.due.or_else(|| {
            (req.rating <= 2)
                .then(|| state.settings.local_date(chrono::Utc::now()) + chrono::Duration::days(3))
        }),
        notes: Vec::new(),
        recorded_by: String::new(),
        created_at: now,
        updated_at: now,
    };
    let f = feedback(
        state
            .ledger
            .execute(
                staff.actor(),
                Command::RecordFeedback {
                    item: Box::new(item),
                },
            )
            .await?,
    )?;
    Ok((StatusCode::CREATED, Json(f)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// `open` (default: open and in progress) or `all`.
    status: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    Can(_staff, _): Can<gate::FeedbackManage>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let open_only = match q.status.as_deref() {
        None | Some("open") => true,
        Some("all") => false,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                "status is open or all",
            ));
        }
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    // Every item the status asks for is read: the page is the first `limit` in the order
    // below (overdue first), and `overdue` counts them all, not only the page's.
    let mut items = state.cache.feedback_list(open_only, i64::MAX as usize)?;
    // Overdue first, then by due day, then oldest.
    items.sort_by(|a, b| {
        (a.due.is_none(), a.due, a.created_at).cmp(&(b.due.is_none(), b.due, b.created_at))
    });
    let today = state.settings.local_date(chrono::Utc::now());
    let overdue = items
        .iter()
        .filter(|f| f.status != FeedbackStatus::Closed && f.due.is_some_and(|d| d < today))
        .count();
    items.truncate(limit);
    Ok(Json(
        serde_json::json!({ "items": items, "overdue": overdue }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUp {
    status: FeedbackStatus,
    #[serde(default)]
    note: String,
}

async fn follow_up(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::FeedbackManage>,
    Path(id): Path<String>,
    Json(req): Json<FollowUp>,
) -> ApiResult<Json<Feedback>> {
    let f = feedback(
        state
            .ledger
            .execute(
                staff.actor(),
                Command::UpdateFeedback {
                    id,
                    status: req.status,
                    note: req.note,
                },
            )
            .await?,
    )?;
    Ok(Json(f))
}
