//! `/v1/members`: register, look up, read, edit, erase.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::sync::atomic::Ordering;

use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Query, Staff, gate, idempotency_key};
use crate::domain::access::Action;
use crate::domain::contact::{
    mask_phone, name_search_key, name_search_len, normalize_card, normalize_phone, normalize_tail,
};
use crate::domain::member::{Consent, Gender, LevelRef, Member};
use crate::domain::money::Money;
use crate::ledger::requests::{RegisterMember, UpdateMember, personal_request_hash};
use crate::ledger::{Command, Outcome, StoreSettings};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/members", post(register).get(lookup))
        .route("/v1/members/export", get(export))
        .route("/v1/members/{id}", get(read).patch(update).delete(erase))
}

/// Most members a lookup returns.
const LOOKUP_LIMIT: usize = 50;

/// The next level and what it takes.
#[derive(Debug, Serialize)]
pub(crate) struct NextLevel {
    code: String,
    name: String,
    spend_needed: Money,
}

/// A member as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct MemberView {
    id: String,
    name: Option<String>,
    phone: Option<String>,
    gender: Gender,
    birthday: Option<NaiveDate>,
    card_no: Option<String>,
    tags: Vec<String>,
    consent: Consent,
    level: Option<LevelRef>,
    points: i64,
    total_spend: Money,
    visits: u64,
    #[serde(with = "crate::domain::timestamp::serde::option")]
    last_visit_at: Option<DateTime<FixedOffset>>,
    #[serde(with = "crate::domain::timestamp::serde")]
    created_at: DateTime<FixedOffset>,
    next_level: Option<NextLevel>,
    birthday_discount_available: bool,
    /// RFM segment (`important_value`...), with its names.
    segment: SegmentView,
    /// RFM scores, 1–5 each (absent before the first purchase).
    rfm: Option<crate::domain::insight::Rfm>,
    /// Flagged as drifting away, with the reason (shown at the till).
    at_risk: Option<RiskView>,
    erased: bool,
}

/// A segment as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct SegmentView {
    pub(crate) code: &'static str,
    name: &'static str,
    name_en: &'static str,
}

impl From<crate::domain::insight::Segment> for SegmentView {
    fn from(s: crate::domain::insight::Segment) -> Self {
        SegmentView {
            code: s.code(),
            name: s.name_zh(),
            name_en: s.name_en(),
        }
    }
}

/// Why a member is at risk.
#[derive(Debug, Serialize)]
pub(crate) struct RiskView {
    #[serde(flatten)]
    reason: crate::domain::insight::ChurnReason,
    pub(crate) message: String,
}

impl From<crate::domain::insight::ChurnReason> for RiskView {
    fn from(reason: crate::domain::insight::ChurnReason) -> Self {
        RiskView {
            message: reason.describe(),
            reason,
        }
    }
}

impl MemberView {
    /// Renders a member for `staff`: the phone is masked below manager.
    pub(crate) fn new(m: &Member, staff: &Staff, settings: &StoreSettings) -> MemberView {
        let rules = settings.rules();
        let today = settings.local_date(Utc::now());
        let level = m.effective_level(&rules, today);
        let next_level = rules
            .next_level(level.map(|l| l.code.as_str()))
            .map(|n| NextLevel {
                code: n.code.clone(),
                name: n.name.clone(),
                spend_needed: n
                    .threshold
                    .saturating_sub(m.window_spend(&rules, today))
                    .max(0),
            });
        let full_phone = staff.can(Action::MemberReadFullPhone);
        let p = m.profile.as_ref();
        let (rfm, segment) = crate::domain::insight::rfm(m, &settings.insight.rfm, today);
        let at_risk = crate::domain::insight::churn(m, &settings.insight.churn, today);
        MemberView {
            segment: segment.into(),
            rfm,
            at_risk: at_risk.map(RiskView::from),
            id: m.id.clone(),
            name: p.map(|p| p.name.clone()),
            phone: p.map(|p| {
                if full_phone {
                    p.phone.clone()
                } else {
                    mask_phone(&p.phone)
                }
            }),
            gender: p.map(|p| p.gender).unwrap_or_default(),
            birthday: p.and_then(|p| p.birthday),
            card_no: p.and_then(|p| p.card_no.clone()),
            tags: m.tags.clone(),
            consent: m.consent.clone(),
            level: level.map(LevelRef::from),
            points: m.points(&rules, today),
            total_spend: m.total_spend(),
            visits: m.visits(),
            // HQ's members come with HQ's offsets (often UTC): shown in the store's, like
            // every time the API gives.
            last_visit_at: m.last_visit_at().map(|t| settings.local(t)),
            created_at: settings.local(m.created_at),
            next_level,
            birthday_discount_available: m.birthday_discount_due(&rules, today)
                && level.is_some_and(|l| l.birthday_discount_bps > 0),
            erased: m.erased_at.is_some(),
        }
    }
}

fn member_outcome(outcome: Outcome) -> ApiResult<(Member, bool)> {
    match outcome {
        Outcome::Member { member, replayed } => Ok((*member, replayed)),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn register(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
    Json(req): Json<RegisterMember>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    staff.allow(Action::MemberRegister)?;
    let idem = idempotency_key(&headers, personal_request_hash(&state.keys, "member", &req))?;
    let (m, replayed) = member_outcome(
        state
            .ledger
            .execute(
                staff.actor(),
                crate::ledger::Command::Register { req, idem },
            )
            .await?,
    )?;
    // A repeated request with the same key gets the original member with 200.
    let status = if replayed {
        StatusCode::OK
    } else {
        state.metrics.registrations.fetch_add(1, Ordering::Relaxed);
        StatusCode::CREATED
    };
    Ok((status, Json(MemberView::new(&m, &staff, &state.settings))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lookup {
    phone: Option<String>,
    card: Option<String>,
    phone_tail: Option<String>,
    q: Option<String>,
}

#[derive(Serialize)]
struct Members {
    members: Vec<MemberView>,
    /// More members match than a lookup returns ([`LOOKUP_LIMIT`]): the till should ask for
    /// the whole phone number, or more of the name. Only present when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

async fn lookup(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Lookup>,
) -> ApiResult<Json<Members>> {
    staff.allow(Action::MemberRead)?;
    let given = [&q.phone, &q.card, &q.phone_tail, &q.q]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give exactly one of phone, card, phone_tail or q",
        ));
    }
    let cache = &state.cache;
    state
        .metrics
        .lookup(match (&q.phone, &q.card, &q.phone_tail) {
            (Some(_), _, _) => "phone",
            (_, Some(_), _) => "card",
            (_, _, Some(_)) => "phone_tail",
            _ => "name",
        });
    let mut found: Vec<Member> = if let Some(phone) = &q.phone {
        let phone = normalize_phone(phone)
            .map_err(|e| ApiError::bad_request("invalid_phone", e.to_string()))?;
        cache.member_by_phone(&phone)?.into_iter().collect()
    } else if let Some(card) = &q.card {
        let card = normalize_card(card)
            .map_err(|e| ApiError::bad_request("invalid_card", e.to_string()))?;
        cache.member_by_card(&card)?.into_iter().collect()
    } else if let Some(tail) = &q.phone_tail {
        let tail = normalize_tail(tail)
            .map_err(|e| ApiError::bad_request("invalid_phone_tail", e.to_string()))?;
        cache.members_by_tail(&tail, LOOKUP_LIMIT + 1)?
    } else {
        let typed = q.q.as_deref().unwrap_or_default();
        let name = name_search_key(typed);
        if name.is_empty() || name_search_len(typed) > 50 {
            return Err(ApiError::bad_request(
                "invalid_query",
                "q must be a name of 1–50 characters",
            ));
        }
        cache.members_by_name(&name, LOOKUP_LIMIT + 1)?
    };
    // An erased member is kept out of every index; should one still be found, it neither
    // shows nor counts towards the limit.
    found.retain(|m| m.erased_at.is_none());
    let truncated = found.len() > LOOKUP_LIMIT;
    found.truncate(LOOKUP_LIMIT);
    let members = found
        .iter()
        .map(|m| MemberView::new(m, &staff, &state.settings))
        .collect();
    Ok(Json(Members { members, truncated }))
}

async fn read(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<MemberView>> {
    staff.allow(Action::MemberRead)?;
    let m = state
        .cache
        .member(&id)?
        .ok_or_else(|| ApiError::not_found("member_not_found", format!("no member {id}")))?;
    Ok(Json(MemberView::new(&m, &staff, &state.settings)))
}

async fn update(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    Json(req): Json<UpdateMember>,
) -> ApiResult<Json<MemberView>> {
    staff.allow(Action::MemberEdit)?;
    let (m, _) = member_outcome(
        state
            .ledger
            .execute(staff.actor(), Command::Update { member_id: id, req })
            .await?,
    )?;
    Ok(Json(MemberView::new(&m, &staff, &state.settings)))
}

async fn erase(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::MemberErase>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .ledger
        .execute(staff.actor(), Command::Erase { member_id: id })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members per page of the export.
const EXPORT_PAGE: usize = 500;

/// `GET /v1/members/export`: every member's personal data and counters as CSV (UTF-8 with a
/// byte-order mark, so spreadsheets read the Chinese names). Managers only, and audited.
/// Erased members appear without personal data. Streamed page by page.
async fn export(
    State(state): State<AppState>,
    staff: Staff,
) -> ApiResult<axum::response::Response> {
    staff.allow(Action::MemberExport)?;
    let count = state.cache.member_count()?;
    super::sessions::audit(
        &state,
        &staff.actor(),
        "member.export",
        "members",
        serde_json::json!({ "members": count }),
    )
    .await?;
    tracing::info!(staff_no = %staff.session.staff_no, members = count, "member export");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<String, std::io::Error>>(4);
    let cache = state.cache.clone();
    let settings = state.settings.clone();
    // A panic while writing (a bug) must break the download visibly, not end it as if the
    // file were complete.
    let on_panic = tx.clone();
    let produce = move || {
        let rules = settings.rules();
        let today = settings.local_date(Utc::now());
        let mut head = String::from("\u{feff}");
        super::csv::row(
            &mut head,
            &[
                "id",
                "name",
                "phone",
                "gender",
                "birthday",
                "card_no",
                "level",
                "points",
                "total_spend",
                "visits",
                "last_visit_at",
                "created_at",
                "created_store",
                "erased",
            ],
        );
        if tx.blocking_send(Ok(head)).is_err() {
            return;
        }
        let mut after = 0;
        loop {
            let page = match cache.members_page(after, EXPORT_PAGE) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "member export stopped");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            let Some((last, _)) = page.last() else { return };
            after = *last;
            let mut chunk = String::with_capacity(page.len() * 120);
            for (_, m) in &page {
                let p = m.profile.as_ref();
                let gender = p.map(|p| format!("{:?}", p.gender).to_lowercase());
                let birthday = p.and_then(|p| p.birthday).map(|b| b.to_string());
                let level = m.effective_level(&rules, today).map(|l| l.code.clone());
                let code = super::csv::code;
                super::csv::row(
                    &mut chunk,
                    &[
                        &m.id,
                        p.map_or("", |p| p.name.as_str()),
                        &code(p.map_or("", |p| p.phone.as_str())),
                        gender.as_deref().unwrap_or(""),
                        birthday.as_deref().unwrap_or(""),
                        &code(p.and_then(|p| p.card_no.as_deref()).unwrap_or("")),
                        level.as_deref().unwrap_or(""),
                        &m.points(&rules, today).to_string(),
                        &m.total_spend().to_string(),
                        &m.visits().to_string(),
                        &m.last_visit_at()
                            .map(|t| settings.local(t).to_rfc3339())
                            .unwrap_or_default(),
                        &settings.local(m.created_at).to_rfc3339(),
                        &code(&m.created_store),
                        if m.erased_at.is_some() { "1" } else { "0" },
                    ],
                );
            }
            if tx.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    };
    tokio::task::spawn_blocking(move || {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(produce)) {
            let why = crate::ledger::panic_message(&*panic);
            tracing::error!(error = %why, "member export stopped");
            let _ = on_panic.blocking_send(Err(std::io::Error::other(why)));
        }
    });
    let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"members.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}
