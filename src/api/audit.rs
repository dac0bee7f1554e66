//! `GET /v1/audit`: the audit chain, for admins (oldest first, paged by position, from a day).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Can, Json, Query, gate};
use crate::journal::audit::{self, AuditEntry};

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    /// Entries after this position (0: from the start).
    #[serde(default)]
    after: u64,
    /// At most this many (1–1000, default 100).
    limit: Option<u64>,
    /// From the first entry of this store-local day on (years of entries need not be paged
    /// through from the first): the page starts at the later of this and `after`.
    from: Option<NaiveDate>,
}

#[derive(Serialize)]
struct Entries {
    entries: Vec<AuditEntry>,
    /// Where the next page starts (`after`); `None` on the last page.
    next: Option<u64>,
}

async fn list(
    State(state): State<AppState>,
    Can(_staff, _): Can<gate::AuditRead>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Entries>> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let after = page.after;
    if let Some(day) = page.from
        && !crate::domain::calendar::PERIOD_YEARS.contains(&day.year())
    {
        return Err(ApiError::bad_request(
            "invalid_day",
            "from must be a day between 2000 and 9998",
        ));
    }
    let from = page
        .from
        .map(|day| state.settings.local_start(day).to_utc());
    // One entry past the page says whether another follows (`src/api/page.rs`).
    let entries = state
        .journal
        .with(move |c| {
            let after = match from {
                Some(t) => after.max(audit::position_before(c, t)?),
                None => after,
            };
            audit::list(c, after, limit + 1)
        })
        .await?
        .into_iter()
        .map(|mut e| {
            // Kept in UTC (the chain's MACs cover the text as written); shown with the
            // store's offset like every other time in the API.
            if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&e.at) {
                e.at = state.settings.local(at.to_utc()).to_rfc3339();
            }
            e
        })
        .collect::<Vec<_>>();
    let (entries, next) = super::page::after(entries, limit as usize, |e| e.n);
    Ok(Json(Entries { entries, next }))
}
