//! Customer insight for the manager: `GET /v1/segments` (members per RFM segment) and
//! `GET /v1/members/at-risk` (the churn list). JSON, or CSV with `format=csv`. Every member is
//! scored from the cache; see [`crate::domain::insight`] for the definitions.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::members::{RiskView, SegmentView};
use super::reports::{today, turn, wants_csv};
use super::{ApiError, ApiResult, AppState, Can, Json, Query, gate};
use crate::domain::insight::{self, Segment};
use crate::domain::money::Money;
use crate::domain::money::format_yuan;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/segments", get(segments))
        .route("/v1/members/at-risk", get(at_risk))
}

// --- segments -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentQuery {
    segment: Option<String>,
    after: Option<i64>,
    limit: Option<usize>,
    format: Option<String>,
}

#[derive(Serialize)]
struct SegmentCount {
    #[serde(flatten)]
    segment: SegmentView,
    members: u64,
}

#[derive(Serialize)]
struct SegmentMember {
    id: String,
    name: Option<String>,
    rfm: Option<insight::Rfm>,
    visits: u64,
    total_spend: Money,
    last_visit_at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

#[derive(Serialize)]
struct Segments {
    as_of: NaiveDate,
    segments: Vec<SegmentCount>,
    /// With `segment=`: its members, a page at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<Vec<SegmentMember>>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

/// Counts per segment (every member is scored), and with `segment=` that segment's members.
async fn segments(
    State(state): State<AppState>,
    Can(_staff, _): Can<gate::ReportsRead>,
    Query(q): Query<SegmentQuery>,
) -> ApiResult<Response> {
    let wanted = match &q.segment {
        None => None,
        Some(code) => Some(Segment::from_code(code).ok_or_else(|| {
            ApiError::bad_request("unknown_segment", format!("no segment {code}"))
        })?),
    };
    let csv = wants_csv(q.format.as_deref())?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = q.after.unwrap_or(0);
    let day = today(&state);
    let cache = state.cache.clone();
    let settings = state.settings.clone();
    // Every member is read (and unsealed): a report's turn, held by the scan itself, so a
    // dashboard refreshed ten times does not scan ten times beside the tills.
    let turn = turn(&state).await?;
    let (counts, members) = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let cut = &settings.insight.rfm;
        let mut counts = std::collections::BTreeMap::<Segment, u64>::new();
        // One member past the page says whether another follows (`src/api/page.rs`).
        let mut members = Vec::new();
        cache.scan_members(|rid, m| {
            if m.erased_at.is_some() && m.visits() == 0 {
                return;
            }
            let (scores, seg) = insight::rfm(&m, cut, day);
            *counts.entry(seg).or_insert(0) += 1;
            if wanted == Some(seg) && rid > after && members.len() <= limit {
                members.push((
                    rid,
                    SegmentMember {
                        id: m.id.clone(),
                        name: m.profile.as_ref().map(|p| p.name.clone()),
                        rfm: scores,
                        visits: m.visits(),
                        total_spend: m.total_spend(),
                        last_visit_at: m.last_visit_at().map(|t| settings.local(t)),
                    },
                ));
            }
        })?;
        Ok::<_, crate::cache::CacheError>((counts, members))
    })
    .await
    .map_err(ApiError::internal)??;
    let (members, next) = super::page::after(members, limit, |(rid, _)| *rid);
    let members: Vec<SegmentMember> = members.into_iter().map(|(_, m)| m).collect();
    let segments: Vec<SegmentCount> = Segment::ALL
        .into_iter()
        .map(|s| SegmentCount {
            segment: s.into(),
            members: counts.get(&s).copied().unwrap_or(0),
        })
        .collect();
    if csv {
        return Ok(match wanted {
            None => super::csv::response(
                "segments",
                &["segment", "name", "name_en", "members"],
                &Segment::ALL
                    .into_iter()
                    .map(|s| {
                        vec![
                            s.code().into(),
                            s.name_zh().into(),
                            s.name_en().into(),
                            counts.get(&s).copied().unwrap_or(0).to_string(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
            Some(s) => segment_csv(s, &members, next),
        });
    }
    Ok(Json(Segments {
        as_of: day,
        segments,
        members: wanted.map(|_| members),
        next,
    })
    .into_response())
}

/// A page of a segment's members as CSV. A spreadsheet has no `next` field: when more follow,
/// a last row says so and what to pass as `after`, where the manager reading the list ends up.
fn segment_csv(s: Segment, members: &[SegmentMember], next: Option<i64>) -> Response {
    let mut rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let (r, f, mo) = m.rfm.map_or((0, 0, 0), |x| (x.r, x.f, x.m));
            vec![
                m.id.clone(),
                m.name.clone().unwrap_or_default(),
                r.to_string(),
                f.to_string(),
                mo.to_string(),
                m.visits.to_string(),
                format_yuan(m.total_spend),
                m.last_visit_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            ]
        })
        .collect();
    if let Some(after) = next {
        rows.push(super::csv::more_not_listed(&format!("after={after}"), 8));
    }
    super::csv::response(
        s.code(),
        &[
            "id",
            "name",
            "r",
            "f",
            "m",
            "visits",
            "total_spend",
            "last_visit_at",
        ],
        &rows,
    )
}

// --- churn ----------------------------------------------------------------------------------

#[derive(Serialize)]
struct AtRiskMember {
    id: String,
    name: Option<String>,
    phone: Option<String>,
    segment: SegmentView,
    visits: u64,
    total_spend: Money,
    last_visit_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(flatten)]
    risk: RiskView,
}

#[derive(Serialize)]
struct AtRisk {
    as_of: NaiveDate,
    members: Vec<AtRiskMember>,
}

/// The at-risk list's one parameter (a report's `from`, `to` or `limit` is refused, not
/// ignored: the list is as of today, and whole).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AtRiskQuery {
    format: Option<String>,
}

/// Members flagged `at_risk`, longest overdue first.
async fn at_risk(
    State(state): State<AppState>,
    Can(_staff, _): Can<gate::ReportsRead>,
    Query(q): Query<AtRiskQuery>,
) -> ApiResult<Response> {
    let csv = wants_csv(q.format.as_deref())?;
    let day = today(&state);
    let cache = state.cache.clone();
    let settings = state.settings.clone();
    // As `segments`: one scan of every member at a time, with the reports.
    let turn = turn(&state).await?;
    let mut list = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let mut out = Vec::new();
        cache.scan_members(|_, m| {
            if m.erased_at.is_some() {
                return;
            }
            if let Some(reason) = insight::churn(&m, &settings.insight.churn, day) {
                let (_, seg) = insight::rfm(&m, &settings.insight.rfm, day);
                out.push(AtRiskMember {
                    id: m.id.clone(),
                    name: m.profile.as_ref().map(|p| p.name.clone()),
                    phone: m.profile.as_ref().map(|p| p.phone.clone()),
                    segment: seg.into(),
                    visits: m.visits(),
                    total_spend: m.total_spend(),
                    last_visit_at: m.last_visit_at().map(|t| settings.local(t)),
                    risk: reason.into(),
                });
            }
        })?;
        Ok::<_, crate::cache::CacheError>(out)
    })
    .await
    .map_err(ApiError::internal)??;
    list.sort_by(|a, b| a.last_visit_at.cmp(&b.last_visit_at).then(a.id.cmp(&b.id)));
    if csv {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|m| {
                vec![
                    m.id.clone(),
                    m.name.clone().unwrap_or_default(),
                    super::csv::code(m.phone.as_deref().unwrap_or_default()),
                    m.segment.code.to_string(),
                    m.visits.to_string(),
                    format_yuan(m.total_spend),
                    m.last_visit_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                    m.risk.message.clone(),
                ]
            })
            .collect();
        return Ok(super::csv::response(
            "at-risk",
            &[
                "id",
                "name",
                "phone",
                "segment",
                "visits",
                "total_spend",
                "last_visit_at",
                "reason",
            ],
            &rows,
        ));
    }
    Ok(Json(AtRisk {
        as_of: day,
        members: list,
    })
    .into_response())
}
