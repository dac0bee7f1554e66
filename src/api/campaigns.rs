//! `/v1/campaigns`: a manager targets a segment or tag with a coupon for a period; storebox
//! holds out a control group, issues the coupons, and measures redemption and the treated
//! members' sales against the control group's. The automatic coupons (birthday, welcome,
//! win-back) are reported beside them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Staff, gate};
use crate::domain::access::Action;
use crate::domain::automation::is_occasion_code;
use crate::domain::campaign::{
    Campaign, CampaignResult, CampaignSpec, Measure, Revenue, Target, check,
};
use crate::domain::catalog::CouponKind;
use crate::ledger::Outcome;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", get(list).post(start))
        .route("/v1/campaigns/{id}", get(read))
}

/// A campaign as a manager defines it: [`CampaignSpec`], with unknown fields refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCampaign {
    id: String,
    name: String,
    target: Target,
    coupon_title: String,
    coupon: CouponKind,
    starts: NaiveDate,
    ends: NaiveDate,
    #[serde(default = "crate::domain::campaign::default_control_percent")]
    control_percent: u8,
}

impl From<NewCampaign> for CampaignSpec {
    fn from(r: NewCampaign) -> CampaignSpec {
        CampaignSpec {
            id: r.id,
            name: r.name,
            target: r.target,
            coupon_title: r.coupon_title,
            coupon: r.coupon,
            starts: r.starts,
            ends: r.ends,
            control_percent: r.control_percent,
        }
    }
}

#[derive(Serialize)]
struct CampaignView {
    #[serde(flatten)]
    spec: CampaignSpec,
    #[serde(flatten)]
    result: CampaignResult,
}

#[derive(Serialize)]
struct Automatic {
    id: String,
    name: &'static str,
    issued: u64,
    redeemed: u64,
    redemption_rate: f64,
}

/// The revenue of campaigns whose period is over, by id, with the period it was read for
/// (a campaign is started once under an id; the period is checked all the same) and where the
/// period's events stood then (see [`crate::journal::store::period_mark`]).
pub type Ended = Arc<Mutex<HashMap<String, Kept>>>;

/// An ended campaign's revenue, as kept: first and last day, the period's mark, revenue.
type Kept = (NaiveDate, NaiveDate, i64, Revenue);

async fn view(state: &AppState, c: Campaign) -> ApiResult<CampaignView> {
    let today = state.settings.local_date(Utc::now());
    // Its coupons' codes, not a manager's own that begin the same (`SPRING-EXTRA`).
    let (issued, redeemed) = state.cache.coupon_use(&format!("{}-", c.spec.id), |code| {
        is_occasion_code(code, &c.spec.id, 0)
    })?;
    let (starts, ends) = (c.spec.starts, c.spec.ends);
    let over = ends < today;
    // Sales of days past change only when the clock goes back across midnight (NTP correcting
    // a clock that ran fast): kept once the journal has begun a later day, for as long as no
    // late event came to the period's days (the journal marks them).
    let mark = if over {
        let (from, to) = (starts.to_string(), ends.to_string());
        state
            .journal
            .with(move |conn| crate::journal::store::period_mark(conn, &from, &to))
            .await?
    } else {
        None
    };
    let known = mark.and_then(|mark| {
        lock(&state.ended_campaigns)
            .get(&c.spec.id)
            .filter(|(s, e, m, _)| (*s, *e, *m) == (starts, ends, mark))
            .map(|(_, _, _, revenue)| *revenue)
    });
    let revenue = match known {
        Some(revenue) => revenue,
        None if starts <= today => {
            let (from, to) = (starts, ends.min(today));
            // Up to a year's sales, as a report reads (added up as they are read): a report's
            // turn, held by the read itself (a dashboard's dropped request leaves it running).
            let turn = super::reports::turn(state).await?;
            let read = c.clone();
            let revenue = state
                .journal
                .with(move |conn| {
                    let _turn = turn;
                    let mut m = Measure::new(&read);
                    crate::insight::read(conn, from, to, &mut m)?;
                    Ok(m.revenue())
                })
                .await?;
            if let Some(mark) = mark {
                lock(&state.ended_campaigns)
                    .insert(c.spec.id.clone(), (starts, ends, mark, revenue));
            }
            revenue
        }
        None => Revenue::default(),
    };
    Ok(CampaignView {
        result: revenue.result(&c, issued, redeemed),
        spec: c.spec,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn list(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<serde_json::Value>> {
    staff.allow(Action::ReportsRead)?;
    let mut campaigns = Vec::new();
    for c in state.cache.campaigns()? {
        campaigns.push(view(&state, c).await?);
    }
    let year = state.settings.local_date(Utc::now()).year();
    let mut automatic = Vec::new();
    // By the codes the occasions give (a win-back's holds the month of the last visit, or
    // nothing when none is known), not every code that begins the same: until 2026-12-07 a
    // manager's `WBXMAS` counted as a win-back coupon, `WL-VIP` as a welcome one.
    for (prefix, digits, name) in [
        (
            format!("BD{:02}", year.rem_euclid(100)),
            &[0][..],
            "生日礼券 birthday coupons this year",
        ),
        ("WL".to_string(), &[0][..], "新会员礼券 welcome coupons"),
        ("WB".to_string(), &[4, 0][..], "回归礼券 win-back coupons"),
    ] {
        let (issued, redeemed) = state.cache.coupon_use(&prefix, |code| {
            digits.iter().any(|n| is_occasion_code(code, &prefix, *n))
        })?;
        automatic.push(Automatic {
            id: prefix.clone(),
            name,
            issued,
            redeemed,
            redemption_rate: crate::domain::campaign::rate(redeemed, issued),
        });
    }
    Ok(Json(
        serde_json::json!({ "campaigns": campaigns, "automatic": automatic }),
    ))
}

async fn read(
    State(state): State<AppState>,
    Can(_staff, _): Can<gate::ReportsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignView>> {
    let c = state
        .cache
        .campaign(&id.to_ascii_uppercase())?
        .ok_or_else(|| ApiError::not_found("campaign_not_found", format!("no campaign {id}")))?;
    Ok(Json(view(&state, c).await?))
}

async fn start(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::CampaignManage>,
    Json(req): Json<NewCampaign>,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    let checked = check(req.into()).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    if state.cache.campaign(&checked.spec.id)?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "campaign_exists",
            format!("campaign {} was already started", checked.spec.id),
        ));
    }
    let today = state.settings.local_date(Utc::now());
    let (cache, settings, by) = (
        state.cache.clone(),
        state.settings.clone(),
        staff.session.staff_no.clone(),
    );
    let campaign = tokio::task::spawn_blocking(move || {
        crate::automation::campaign_for(&cache, &settings, checked, &by, today)
    })
    .await
    .map_err(ApiError::internal)??
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_members",
            "no member matches the target",
        )
    })?;
    let started = state.ledger.start_campaign(staff.actor(), campaign, None);
    let campaign = match started.await? {
        Outcome::Campaign(c) => *c,
        other => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    };
    Ok((StatusCode::CREATED, Json(view(&state, campaign).await?)))
}
