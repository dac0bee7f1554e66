//! `/v1/campaigns`: a manager targets a segment or tag with a coupon for a period; storebox
//! holds out a control group, issues the coupons, and measures redemption and the treated
//! members' sales against the control group's. The automatic coupons (birthday, welcome,
//! win-back) are reported beside them.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Json, Path, Staff};
use crate::domain::access::Action;
use crate::domain::campaign::{Campaign, CampaignResult, Target, in_control, measure};
use crate::domain::catalog::CouponKind;
use crate::domain::insight::{Segment, rfm};
use crate::ledger::Command;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/campaigns", get(list).post(start))
        .route("/v1/campaigns/{id}", get(read))
}

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
    #[serde(default = "ten")]
    control_percent: u8,
}

fn ten() -> u8 {
    10
}

#[derive(Serialize)]
struct CampaignView {
    id: String,
    name: String,
    target: Target,
    starts: NaiveDate,
    ends: NaiveDate,
    control_percent: u8,
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

async fn view(state: &AppState, c: Campaign) -> ApiResult<CampaignView> {
    let today = state.settings.local_date(Utc::now());
    let (issued, redeemed) = state.cache.coupon_use(&format!("{}-", c.id))?;
    let sales = if c.starts <= today {
        let (from, to) = (c.starts, c.ends.min(today));
        state
            .journal
            .with(move |conn| crate::insight::facts(conn, from, to))
            .await?
            .sales
    } else {
        Vec::new()
    };
    let result = measure(&c, &sales, issued, redeemed);
    Ok(CampaignView {
        id: c.id,
        name: c.name,
        target: c.target,
        starts: c.starts,
        ends: c.ends,
        control_percent: c.control_percent,
        result,
    })
}

async fn list(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<serde_json::Value>> {
    staff.allow(Action::ReportsRead)?;
    let mut campaigns = Vec::new();
    for c in state.cache.campaigns()? {
        campaigns.push(view(&state, c).await?);
    }
    let year = state.settings.local_date(Utc::now()).year();
    let mut automatic = Vec::new();
    for (prefix, name) in [
        (
            format!("BD{:02}-", year.rem_euclid(100)),
            "生日礼券 birthday coupons this year",
        ),
        ("WL-".to_string(), "新会员礼券 welcome coupons"),
        ("WB".to_string(), "回归礼券 win-back coupons"),
    ] {
        let (issued, redeemed) = state.cache.coupon_use(&prefix)?;
        automatic.push(Automatic {
            id: prefix.trim_end_matches('-').to_string(),
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
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<CampaignView>> {
    staff.allow(Action::ReportsRead)?;
    let c = state
        .cache
        .campaigns()?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::not_found("campaign_not_found", format!("no campaign {id}")))?;
    Ok(Json(view(&state, c).await?))
}

async fn start(
    State(state): State<AppState>,
    staff: Staff,
    Json(req): Json<NewCampaign>,
) -> ApiResult<(StatusCode, Json<CampaignView>)> {
    staff.allow(Action::CampaignManage)?;
    let id = req.id.trim().to_ascii_uppercase();
    let reserved = ["BD", "WL", "WB"].iter().any(|p| id.starts_with(p));
    if !(2..=12).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_alphanumeric()) || reserved {
        return Err(ApiError::bad_request(
            "invalid_campaign_id",
            "a campaign id is 2–12 letters and digits, not starting with BD, WL or WB",
        ));
    }
    if req.name.trim().is_empty() || req.coupon_title.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid_campaign",
            "name and coupon_title are required",
        ));
    }
    if req.ends < req.starts || (req.ends - req.starts).num_days() > 366 {
        return Err(ApiError::bad_request(
            "invalid_period",
            "ends must be on or after starts, within a year",
        ));
    }
    if req.control_percent > 50 {
        return Err(ApiError::bad_request(
            "invalid_control_percent",
            "control_percent is 0–50",
        ));
    }
    let segment = match &req.target.segment {
        None => None,
        Some(code) => Some(Segment::from_code(code).ok_or_else(|| {
            ApiError::bad_request("unknown_segment", format!("no segment {code}"))
        })?),
    };
    if segment.is_none() && req.target.tag.is_none() {
        return Err(ApiError::bad_request(
            "invalid_target",
            "target needs a segment, a tag, or both",
        ));
    }
    let today = state.settings.local_date(Utc::now());
    let (cache, settings, tag, cid, pct) = (
        state.cache.clone(),
        state.settings.clone(),
        req.target.tag.clone(),
        id.clone(),
        req.control_percent,
    );
    let (treated, control) = tokio::task::spawn_blocking(move || {
        let (mut treated, mut control) = (Vec::new(), Vec::new());
        cache.scan_members(|_, m| {
            if m.erased_at.is_some() {
                return;
            }
            let in_segment = segment.is_none_or(|s| rfm(&m, &settings.insight.rfm, today).1 == s);
            let tagged = tag.as_ref().is_none_or(|t| m.tags.contains(t));
            if in_segment && tagged {
                if in_control(&cid, &m.id, pct) {
                    control.push(m.id.clone());
                } else {
                    treated.push(m.id.clone());
                }
            }
        })?;
        Ok::<_, crate::cache::CacheError>((treated, control))
    })
    .await
    .map_err(ApiError::internal)??;
    if treated.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_members",
            "no member matches the target",
        ));
    }
    let campaign = Campaign {
        id,
        name: req.name.trim().to_string(),
        target: req.target,
        coupon_title: req.coupon_title.trim().to_string(),
        coupon: req.coupon,
        starts: req.starts,
        ends: req.ends,
        control_percent: req.control_percent,
        treated,
        control,
        started_by: staff.session.staff_no.clone(),
    };
    state
        .ledger
        .execute(
            staff.actor(),
            Command::StartCampaign {
                campaign: Box::new(campaign.clone()),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, campaign).await?)))
}
