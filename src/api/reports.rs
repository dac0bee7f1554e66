//! Customer insight and reports for the manager: `/v1/segments`, `/v1/members/at-risk` and
//! `/v1/reports/{sales,products,associations,staff,stock}`. JSON, or CSV with `format=csv`.
//! Figures come from the journal's sales and refunds (the book of record) and the cache's
//! members and stock; see [`crate::domain::insight`] for the definitions.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::members::{RiskView, SegmentView};
use super::{ApiError, ApiResult, AppState, Json, Query, Staff};
use crate::domain::access::Action;
use crate::domain::insight::{self, Segment};
use crate::domain::money::Money;
use crate::domain::report;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/segments", get(segments))
        .route("/v1/members/at-risk", get(at_risk))
        .route("/v1/reports/sales", get(sales))
        .route("/v1/reports/products", get(products))
        .route("/v1/reports/associations", get(associations))
        .route("/v1/reports/staff", get(staff_report))
        .route("/v1/reports/stock", get(stock))
}

/// A period (store-local days, both included) and the output format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Period {
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    format: Option<String>,
    /// Pairs: sales both products must share at least (default 3).
    min_count: Option<u64>,
    /// Rows at most (default 20, up to 1000).
    limit: Option<usize>,
}

impl Period {
    /// `from..=to`, by default the 30 days up to today; at most 366 days.
    fn range(&self, today: NaiveDate) -> ApiResult<(NaiveDate, NaiveDate)> {
        let to = self.to.unwrap_or(today);
        let from = self.from.unwrap_or(to - chrono::Duration::days(29));
        if from > to || (to - from).num_days() > 365 {
            return Err(ApiError::bad_request(
                "invalid_period",
                "from must be on or before to, and at most 366 days before it",
            ));
        }
        Ok((from, to))
    }

    fn csv(&self) -> ApiResult<bool> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::bad_request(
                "invalid_format",
                "format is json or csv",
            )),
        }
    }

    fn limit(&self) -> usize {
        self.limit.unwrap_or(20).clamp(1, 1000)
    }
}

fn today(state: &AppState) -> NaiveDate {
    state.settings.local_date(Utc::now())
}

async fn facts(
    state: &AppState,
    from: NaiveDate,
    to: NaiveDate,
) -> ApiResult<crate::insight::Facts> {
    Ok(state
        .journal
        .with(move |c| crate::insight::facts(c, from, to))
        .await?)
}

fn yuan(m: Money) -> String {
    format!("{}.{:02}", m / 100, (m % 100).abs())
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
    /// Pass as `after` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

/// Counts per segment (every member is scored), and with `segment=` that segment's members.
async fn segments(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<SegmentQuery>,
) -> ApiResult<Response> {
    staff.allow(Action::ReportsRead)?;
    let wanted = match &q.segment {
        None => None,
        Some(code) => Some(Segment::from_code(code).ok_or_else(|| {
            ApiError::bad_request("unknown_segment", format!("no segment {code}"))
        })?),
    };
    let csv = Period {
        from: None,
        to: None,
        format: q.format.clone(),
        min_count: None,
        limit: None,
    }
    .csv()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = q.after.unwrap_or(0);
    let day = today(&state);
    let cache = state.cache.clone();
    let settings = state.settings.clone();
    let (counts, members, next) = tokio::task::spawn_blocking(move || {
        let cut = &settings.insight.rfm;
        let mut counts = std::collections::BTreeMap::<Segment, u64>::new();
        let mut members = Vec::new();
        let mut next = None;
        cache.scan_members(|rid, m| {
            if m.erased_at.is_some() && m.visits() == 0 {
                return;
            }
            let (scores, seg) = insight::rfm(&m, cut, day);
            *counts.entry(seg).or_insert(0) += 1;
            if wanted == Some(seg) && rid > after && members.len() < limit {
                members.push(SegmentMember {
                    id: m.id.clone(),
                    name: m.profile.as_ref().map(|p| p.name.clone()),
                    rfm: scores,
                    visits: m.visits(),
                    total_spend: m.total_spend(),
                    last_visit_at: m.last_visit_at(),
                });
                if members.len() == limit {
                    next = Some(rid);
                }
            }
        })?;
        Ok::<_, crate::cache::CacheError>((counts, members, next))
    })
    .await
    .map_err(ApiError::internal)??;
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
            Some(s) => super::csv::response(
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
                &members
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
                            yuan(m.total_spend),
                            m.last_visit_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            ),
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

/// Members flagged `at_risk`, longest overdue first.
async fn at_risk(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    staff.allow(Action::ReportsRead)?;
    let csv = q.csv()?;
    let day = today(&state);
    let cache = state.cache.clone();
    let settings = state.settings.clone();
    let mut list = tokio::task::spawn_blocking(move || {
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
                    last_visit_at: m.last_visit_at(),
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
                    m.phone.clone().unwrap_or_default(),
                    m.segment.code.to_string(),
                    m.visits.to_string(),
                    yuan(m.total_spend),
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

// --- sales ----------------------------------------------------------------------------------

#[derive(Serialize)]
struct SalesReport {
    from: NaiveDate,
    to: NaiveDate,
    #[serde(flatten)]
    summary: report::SalesSummary,
    /// Members' share of sales and of revenue.
    member_share: f64,
    member_revenue_share: f64,
    /// The same length of time just before.
    previous: report::SalesSummary,
    /// Revenue, sales and average ticket against the previous period, in percent.
    revenue_trend_percent: Option<f64>,
    sales_trend_percent: Option<f64>,
    average_ticket_trend_percent: Option<f64>,
}

async fn sales(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    staff.allow(Action::ReportsRead)?;
    let (from, to) = q.range(today(&state))?;
    let days = (to - from).num_days() + 1;
    let now = facts(&state, from, to).await?;
    let prev_to = from - chrono::Duration::days(1);
    let prev_from = prev_to - chrono::Duration::days(days - 1);
    let before = facts(&state, prev_from, prev_to).await?;
    let summary = report::summarize(&now.sales, &now.refunds);
    let previous = report::summarize(&before.sales, &before.refunds);
    if q.csv()? {
        let rows: Vec<Vec<String>> = summary
            .by_day
            .iter()
            .map(|(d, (n, rev))| vec![d.clone(), n.to_string(), yuan(*rev)])
            .collect();
        return Ok(super::csv::response(
            "sales",
            &["day", "sales", "revenue"],
            &rows,
        ));
    }
    let share = |a: f64, b: f64| {
        if b > 0.0 {
            (a / b * 1000.0).round() / 1000.0
        } else {
            0.0
        }
    };
    Ok(Json(SalesReport {
        from,
        to,
        member_share: share(summary.member_sales as f64, summary.sales as f64),
        member_revenue_share: share(summary.member_revenue as f64, summary.revenue as f64),
        revenue_trend_percent: report::trend_percent(summary.revenue, previous.revenue),
        sales_trend_percent: report::trend_percent(summary.sales as i64, previous.sales as i64),
        average_ticket_trend_percent: report::trend_percent(
            summary.average_ticket,
            previous.average_ticket,
        ),
        summary,
        previous,
    })
    .into_response())
}

// --- products -------------------------------------------------------------------------------

#[derive(Serialize)]
struct ProductRow {
    #[serde(flatten)]
    sales: report::ProductSales,
    name: String,
    on_hand: Option<i64>,
    units_per_day: f64,
    days_of_cover: Option<f64>,
    turnover: Option<f64>,
}

#[derive(Serialize)]
struct ProductsReport {
    from: NaiveDate,
    to: NaiveDate,
    best_sellers: Vec<ProductRow>,
    slow_sellers: Vec<ProductRow>,
}

async fn products(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    staff.allow(Action::ReportsRead)?;
    let (from, to) = q.range(today(&state))?;
    let days = (to - from).num_days() + 1;
    let f = facts(&state, from, to).await?;
    let levels = state.cache.stock_levels(100_000)?;
    let catalog: Vec<String> = levels.iter().map(|l| l.sku.clone()).collect();
    let mut rows: Vec<ProductRow> = Vec::new();
    for p in report::product_sales(&f.sales, &f.refunds, &catalog) {
        let on_hand = levels.iter().find(|l| l.sku == p.sku).map(|l| l.on_hand);
        let (units_per_day, days_of_cover, turnover) =
            report::stock_cover(p.units, on_hand.unwrap_or(0), days);
        let name = state
            .cache
            .product(&p.sku)?
            .map(|x| x.name)
            .unwrap_or_default();
        rows.push(ProductRow {
            sales: p,
            name,
            on_hand,
            units_per_day,
            days_of_cover,
            turnover,
        });
    }
    if q.csv()? {
        let out: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.sales.sku.clone(),
                    r.name.clone(),
                    r.sales.units.to_string(),
                    yuan(r.sales.revenue),
                    r.sales.sales.to_string(),
                    r.on_hand.map(|v| v.to_string()).unwrap_or_default(),
                    r.units_per_day.to_string(),
                    r.days_of_cover.map(|v| v.to_string()).unwrap_or_default(),
                    r.turnover.map(|v| v.to_string()).unwrap_or_default(),
                ]
            })
            .collect();
        return Ok(super::csv::response(
            "products",
            &[
                "sku",
                "name",
                "units",
                "revenue",
                "sales",
                "on_hand",
                "units_per_day",
                "days_of_cover",
                "turnover",
            ],
            &out,
        ));
    }
    let limit = q.limit();
    rows.sort_by(|a, b| {
        b.sales
            .revenue
            .cmp(&a.sales.revenue)
            .then(a.sales.sku.cmp(&b.sales.sku))
    });
    let mut slow: Vec<ProductRow> = Vec::new();
    let mut best: Vec<ProductRow> = Vec::new();
    for (i, r) in rows.into_iter().enumerate() {
        if i < limit {
            best.push(r);
        } else {
            slow.push(r);
        }
    }
    slow.sort_by(|a, b| {
        a.sales
            .units
            .cmp(&b.sales.units)
            .then(a.sales.sku.cmp(&b.sales.sku))
    });
    slow.truncate(limit);
    Ok(Json(ProductsReport {
        from,
        to,
        best_sellers: best,
        slow_sellers: slow,
    })
    .into_response())
}

// --- associations ---------------------------------------------------------------------------

#[derive(Serialize)]
struct PairsReport {
    from: NaiveDate,
    to: NaiveDate,
    sales: usize,
    pairs: Vec<report::Pair>,
}

async fn associations(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    staff.allow(Action::ReportsRead)?;
    let (from, to) = q.range(today(&state))?;
    let f = facts(&state, from, to).await?;
    let pairs = report::associations(&f.sales, q.min_count.unwrap_or(3).max(1), q.limit());
    if q.csv()? {
        let rows: Vec<Vec<String>> = pairs
            .iter()
            .map(|p| {
                vec![
                    p.a.clone(),
                    p.b.clone(),
                    p.count.to_string(),
                    p.support.to_string(),
                    p.confidence.to_string(),
                    p.lift.to_string(),
                ]
            })
            .collect();
        return Ok(super::csv::response(
            "associations",
            &["a", "b", "count", "support", "confidence", "lift"],
            &rows,
        ));
    }
    Ok(Json(PairsReport {
        from,
        to,
        sales: f.sales.len(),
        pairs,
    })
    .into_response())
}

// --- staff ----------------------------------------------------------------------------------

#[derive(Serialize)]
struct StaffReport {
    from: NaiveDate,
    to: NaiveDate,
    staff: Vec<report::StaffFigures>,
}

async fn staff_report(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    staff.allow(Action::ReportsRead)?;
    let (from, to) = q.range(today(&state))?;
    let f = facts(&state, from, to).await?;
    let ratings = state
        .journal
        .with(move |c| crate::insight::ratings(c, from, to))
        .await?;
    let figures = report::staff_figures(&f.sales, &f.refunds, &f.registrations, &ratings);
    if q.csv()? {
        let rows: Vec<Vec<String>> = figures
            .iter()
            .map(|s| {
                vec![
                    s.staff_no.clone(),
                    s.sales.to_string(),
                    yuan(s.revenue),
                    yuan(s.refunded),
                    yuan(s.average_ticket),
                    s.member_share.to_string(),
                    s.registrations.to_string(),
                    s.feedback.to_string(),
                    s.average_rating.map(|r| r.to_string()).unwrap_or_default(),
                ]
            })
            .collect();
        return Ok(super::csv::response(
            "staff",
            &[
                "staff_no",
                "sales",
                "revenue",
                "refunded",
                "average_ticket",
                "member_share",
                "registrations",
                "feedback",
                "average_rating",
            ],
            &rows,
        ));
    }
    Ok(Json(StaffReport {
        from,
        to,
        staff: figures,
    })
    .into_response())
}

// --- stock ----------------------------------------------------------------------------------

async fn stock(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    staff.allow(Action::ReportsRead)?;
    let low = state
        .cache
        .stock_below_safety(q.limit.unwrap_or(1000).clamp(1, 10_000))?;
    if q.csv()? {
        let rows: Vec<Vec<String>> = low
            .iter()
            .map(|l| {
                vec![
                    l.sku.clone(),
                    l.on_hand.to_string(),
                    l.safety_stock.to_string(),
                ]
            })
            .collect();
        return Ok(super::csv::response(
            "low-stock",
            &["sku", "on_hand", "safety_stock"],
            &rows,
        ));
    }
    Ok(Json(serde_json::json!({ "low_stock": low })).into_response())
}
