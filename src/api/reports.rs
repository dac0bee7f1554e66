//! Reports for the manager: `/v1/reports/{sales,products,associations,staff,stock}`. JSON, or
//! CSV with `format=csv`. Figures come from the journal's sales and refunds (the book of record)
//! and the cache's stock; see [`crate::domain::report`] for the definitions.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Can, Json, Query, gate};
use crate::domain::money::format_yuan;
use crate::domain::report;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/reports/sales", get(sales))
        .route("/v1/reports/products", get(products))
        .route("/v1/reports/associations", get(associations))
        .route("/v1/reports/staff", get(staff_report))
        .route("/v1/reports/stock", get(stock))
}

/// A period (store-local days, both included) and the output format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Period {
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
    /// Both ends lie in 2000–9998, so that the period before it (the sales report compares
    /// with it) is on the calendar too.
    fn range(&self, today: NaiveDate) -> ApiResult<(NaiveDate, NaiveDate)> {
        let years = crate::domain::calendar::PERIOD_YEARS;
        let to = self.to.unwrap_or(today);
        let from = match self.from {
            Some(from) => from,
            None => to
                .checked_sub_days(chrono::Days::new(29))
                .unwrap_or(NaiveDate::MIN),
        };
        if !years.contains(&from.year())
            || !years.contains(&to.year())
            || from > to
            || (to - from).num_days() > 365
        {
            return Err(ApiError::bad_request(
                "invalid_period",
                "from must be on or before to, the period at most 366 days (both days included), both between 2000 and 9998",
            ));
        }
        Ok((from, to))
    }

    pub(super) fn csv(&self) -> ApiResult<bool> {
        wants_csv(self.format.as_deref())
    }

    fn limit(&self) -> usize {
        self.limit.unwrap_or(20).clamp(1, 1000)
    }
}

/// Whether `format=` asks for CSV (JSON otherwise).
pub(super) fn wants_csv(format: Option<&str>) -> ApiResult<bool> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::bad_request(
            "invalid_format",
            "format is json or csv",
        )),
    }
}

pub(super) fn today(state: &AppState) -> NaiveDate {
    state.settings.local_date(Utc::now())
}

/// A report's turn to read a period's sales (see `AppContext::report_reads`).
pub(super) type Turn = tokio::sync::OwnedSemaphorePermit;

/// Waits for the turn of a report that reads a period's sales: one at a time (see
/// `AppContext::report_reads`). The permit is held until the answer is built, and by each
/// read ([`tally`]) until it ends.
pub(super) async fn turn(state: &AppState) -> ApiResult<Turn> {
    state
        .report_reads
        .clone()
        .acquire_owned()
        .await
        .map_err(ApiError::internal)
}

/// Adds up the sales, refunds and registrations of a period in `tally` (see
/// [`crate::insight::read`]), holding `turn` until the read ends: a request dropped meanwhile
/// (a manager reloading a slow report, a dashboard's timeout) leaves its read running on a
/// blocking thread, and the next report must not start another beside it. Gives the turn back
/// for the rest of the answer.
async fn tally<T: report::Tally + Send + 'static>(
    state: &AppState,
    turn: Turn,
    from: NaiveDate,
    to: NaiveDate,
    mut tally: T,
) -> ApiResult<(T, Turn)> {
    Ok(state
        .journal
        .with(move |c| {
            crate::insight::read(c, from, to, &mut tally)?;
            Ok((tally, turn))
        })
        .await?)
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
    Can(_staff, _): Can<gate::ReportsRead>,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    let (from, to) = q.range(today(&state))?;
    let turn = turn(&state).await?;
    let days = (to - from).num_days() + 1;
    let (summary, turn) = tally(&state, turn, from, to, report::SalesSummary::default()).await?;
    let prev_to = from - chrono::Duration::days(1);
    let prev_from = prev_to - chrono::Duration::days(days - 1);
    let (previous, _turn) = tally(
        &state,
        turn,
        prev_from,
        prev_to,
        report::SalesSummary::default(),
    )
    .await?;
    let (summary, previous) = (summary.finished(), previous.finished());
    if q.csv()? {
        // A row a day of the period, days without a sale or refund included.
        let rows: Vec<Vec<String>> = from
            .iter_days()
            .take_while(|d| *d <= to)
            .map(|d| {
                let d = d.to_string();
                let (n, rev) = summary.by_day.get(&d).copied().unwrap_or_default();
                let refunded = summary.refunded_by_day.get(&d).copied().unwrap_or_default();
                vec![
                    d,
                    n.to_string(),
                    format_yuan(rev),
                    format_yuan(refunded),
                    format_yuan(rev - refunded),
                ]
            })
            .collect();
        return Ok(super::csv::response(
            "sales",
            &["day", "sales", "revenue", "refunded", "net"],
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
    Can(_staff, _): Can<gate::ReportsRead>,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    let (from, to) = q.range(today(&state))?;
    let turn = turn(&state).await?;
    let days = (to - from).num_days() + 1;
    let levels = state.cache.stock_levels("", 100_000)?;
    let catalog: Vec<String> = levels.iter().map(|l| l.sku.clone()).collect();
    let (sold, _turn) = tally(&state, turn, from, to, report::ProductTally::new(&catalog)).await?;
    let on_hand_of: std::collections::HashMap<&str, i64> =
        levels.iter().map(|l| (l.sku.as_str(), l.on_hand)).collect();
    let mut rows: Vec<ProductRow> = Vec::new();
    for p in sold.rows() {
        let on_hand = on_hand_of.get(p.sku.as_str()).copied();
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
                    super::csv::code(&r.sales.sku),
                    r.name.clone(),
                    r.sales.units.to_string(),
                    format_yuan(r.sales.revenue),
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
    sales: u64,
    pairs: Vec<report::Pair>,
}

async fn associations(
    State(state): State<AppState>,
    Can(_staff, _): Can<gate::ReportsRead>,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    let (from, to) = q.range(today(&state))?;
    let turn = turn(&state).await?;
    let (f, _turn) = tally(&state, turn, from, to, report::PairTally::default()).await?;
    let pairs = f.pairs(q.min_count.unwrap_or(3).max(1), q.limit());
    if q.csv()? {
        let rows: Vec<Vec<String>> = pairs
            .iter()
            .map(|p| {
                vec![
                    super::csv::code(&p.a),
                    super::csv::code(&p.b),
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
        sales: f.sales(),
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
    Can(_staff, _): Can<gate::ReportsRead>,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    let (from, to) = q.range(today(&state))?;
    let turn = turn(&state).await?;
    let (mut f, _turn) = tally(&state, turn, from, to, report::StaffTally::default()).await?;
    let ratings = state
        .journal
        .with(move |c| crate::insight::ratings(c, from, to))
        .await?;
    for (no, rating) in &ratings {
        f.rating(no, *rating);
    }
    let figures = f.figures();
    if q.csv()? {
        let rows: Vec<Vec<String>> = figures
            .iter()
            .map(|s| {
                vec![
                    super::csv::code(&s.staff_no),
                    s.sales.to_string(),
                    format_yuan(s.revenue),
                    format_yuan(s.refunded),
                    format_yuan(s.average_ticket),
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
    Can(_staff, _): Can<gate::ReportsRead>,
    Query(q): Query<Period>,
) -> ApiResult<Response> {
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let low = state.cache.stock_below_safety("", limit + 1)?;
    // More products below their safety stock than the limit: said, not left out silently.
    let (low, truncated) = super::page::cut(low, limit);
    if q.csv()? {
        let mut rows: Vec<Vec<String>> = low
            .iter()
            .map(|l| {
                vec![
                    super::csv::code(&l.sku),
                    l.on_hand.to_string(),
                    l.safety_stock.to_string(),
                ]
            })
            .collect();
        if truncated {
            rows.push(super::csv::more_not_listed(
                &format!("limit={limit}, at most 10000"),
                3,
            ));
        }
        return Ok(super::csv::response(
            "low-stock",
            &["sku", "on_hand", "safety_stock"],
            &rows,
        ));
    }
    Ok(Json(serde_json::json!({ "low_stock": low, "truncated": truncated })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn period(from: &str, to: &str) -> Period {
        Period {
            from: Some(from.parse().unwrap()),
            to: Some(to.parse().unwrap()),
            format: None,
            min_count: None,
            limit: None,
        }
    }

    /// A period is at most 366 days, both ends included (the README's words). The refusal
    /// said "from ... at most 366 days before" to, and refused a `from` exactly 366 days
    /// before: the manager who followed the message was refused again.
    #[test]
    fn the_refusal_says_the_limit_that_is_applied() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        // 366 days, both included: a leap year.
        assert!(period("2024-01-01", "2024-12-31").range(today).is_ok());
        // `from` 366 days before `to`: 367 days.
        let e = period("2025-01-01", "2026-01-02").range(today).unwrap_err();
        assert_eq!(e.code, "invalid_period");
        assert!(
            !e.message.contains("366 days before"),
            "says a from 366 days before is allowed: {}",
            e.message
        );
        assert!(e.message.contains("366 days"), "{}", e.message);
    }
}
