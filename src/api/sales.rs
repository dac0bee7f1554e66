//! `/v1/sales`: quote, record, read, list by day, refund; `/v1/refunds`: a day's refunds.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ApiError, ApiResult, AppState, Can, Json, JsonText, Path, Query, Staff, gate, idempotency_key,
};
use crate::domain::access::Action;
use crate::domain::event::EventBody;
use crate::domain::pricing::Quote;
use crate::domain::refund::Refund;
use crate::domain::sale::Sale;
use crate::journal::store;
use crate::ledger::cart::price_cart;
use crate::ledger::requests::{RefundRequest, SaleRequest, request_hash};
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sales/quote", post(quote))
        .route("/v1/sales", post(record).get(list))
        .route("/v1/sales/{id}", get(read))
        .route("/v1/sales/{id}/refunds", post(refund))
        .route("/v1/refunds", get(list_refunds))
}

/// Most sales (or refunds) returned by one list call.
const PAGE: usize = 500;

async fn quote(
    State(state): State<AppState>,
    staff: Staff,
    Json(req): Json<SaleRequest>,
) -> ApiResult<Json<Quote>> {
    staff.allow(Action::SaleQuote)?;
    let rules = state.settings.rules();
    let now = state.settings.local(Utc::now());
    let cart = price_cart(&state.cache, &req, &state.settings, &rules, now)?;
    Ok(Json(cart.quote))
}

async fn record(
    State(state): State<AppState>,
    staff: Staff,
    headers: HeaderMap,
    Json(req): Json<SaleRequest>,
) -> ApiResult<Response> {
    staff.allow(Action::SaleRecord)?;
    let idem = idempotency_key(&headers, request_hash("sale", &req))?.ok_or_else(|| {
        ApiError::bad_request(
            "idempotency_key_required",
            "POST /v1/sales needs an Idempotency-Key header (a new UUID per sale)",
        )
    })?;
    match state
        .ledger
        .execute(staff.actor(), Command::Sale { req, idem })
        .await?
    {
        Outcome::Sale {
            sale,
            replayed,
            json,
        } => {
            let status = if replayed {
                StatusCode::OK
            } else {
                state
                    .metrics
                    .sales
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                StatusCode::CREATED
            };
            Ok(match json {
                // The journal's JSON of this very sale, as `Json(*sale)` would write it.
                Some(body) => (status, JsonText(body)).into_response(),
                None => (status, Json(*sale)).into_response(),
            })
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

/// A sale with its refunds.
#[derive(Serialize)]
struct SaleView {
    #[serde(flatten)]
    sale: Sale,
    refunds: Vec<Refund>,
    refunded_total: i64,
}

async fn read(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
) -> ApiResult<Json<SaleView>> {
    staff.allow(Action::SaleRead)?;
    if id.len() > 64 {
        return Err(ApiError::not_found("sale_not_found", "no such sale"));
    }
    let store_id = state.settings.store_id.clone();
    let codec = state.cache.codec().clone();
    let lookup = id.clone();
    let events = state
        .journal
        .with(move |conn| {
            store::sale_events(conn, &lookup)?
                .iter()
                .map(|r| r.decode(conn, &store_id, &codec))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let mut sale = None;
    let mut refunds = Vec::new();
    for e in events {
        match e.body {
            EventBody::SaleRecorded(s) => sale = Some(*s),
            EventBody::SaleRefunded(r) => refunds.push(*r),
            _ => {}
        }
    }
    let sale =
        sale.ok_or_else(|| ApiError::not_found("sale_not_found", format!("no sale {id}")))?;
    let refunded_total = refunds.iter().map(|r| r.refund_total).sum();
    Ok(Json(SaleView {
        sale,
        refunds,
        refunded_total,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Store-local day; today when absent.
    date: Option<NaiveDate>,
    /// Continue after this `seq` (from `next_after_seq`).
    #[serde(default)]
    after_seq: u64,
}

#[derive(Serialize)]
struct SaleList {
    date: NaiveDate,
    sales: Vec<Sale>,
    /// Pass as `after_seq` to get the next page; `null` on the last page.
    next_after_seq: Option<u64>,
}

/// The events of `kind` on the query's store-local day (today when absent), a page of them
/// after its `after_seq`, and the `seq` to continue after.
async fn day_page(
    state: &AppState,
    kind: &'static str,
    q: ListQuery,
) -> ApiResult<(NaiveDate, Vec<EventBody>, Option<u64>)> {
    let date = q
        .date
        .unwrap_or_else(|| state.settings.local_date(Utc::now()));
    let day = date.to_string();
    let store_id = state.settings.store_id.clone();
    let codec = state.cache.codec().clone();
    let events = state
        .journal
        .with(move |conn| {
            store::events_on_day(conn, kind, &day, q.after_seq, PAGE + 1)?
                .iter()
                .map(|r| r.decode(conn, &store_id, &codec))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let (events, next) = super::page::after(events, PAGE, |e| e.seq);
    Ok((date, events.into_iter().map(|e| e.body).collect(), next))
}

async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<SaleList>> {
    staff.allow(Action::SaleRead)?;
    let (date, events, next_after_seq) = day_page(&state, "sale.recorded", q).await?;
    let sales = events
        .into_iter()
        .filter_map(|e| match e {
            EventBody::SaleRecorded(s) => Some(*s),
            _ => None,
        })
        .collect();
    Ok(Json(SaleList {
        date,
        sales,
        next_after_seq,
    }))
}

#[derive(Serialize)]
struct RefundList {
    date: NaiveDate,
    refunds: Vec<Refund>,
    /// Pass as `after_seq` to get the next page; `null` on the last page.
    next_after_seq: Option<u64>,
}

/// The refunds given on a day, whenever their sales were: the cash-up's money back, each with
/// its reason and the manager who gave it.
async fn list_refunds(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RefundList>> {
    staff.allow(Action::SaleRead)?;
    let (date, events, next_after_seq) = day_page(&state, "sale.refunded", q).await?;
    let refunds = events
        .into_iter()
        .filter_map(|e| match e {
            EventBody::SaleRefunded(r) => Some(*r),
            _ => None,
        })
        .collect();
    Ok(Json(RefundList {
        date,
        refunds,
        next_after_seq,
    }))
}

async fn refund(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::SaleRefund>,
    headers: HeaderMap,
    Path(sale_id): Path<String>,
    Json(req): Json<RefundRequest>,
) -> ApiResult<(StatusCode, Json<Refund>)> {
    let idem = idempotency_key(&headers, request_hash(&sale_id, &req))?;
    match state
        .ledger
        .execute(staff.actor(), Command::Refund { sale_id, req, idem })
        .await?
    {
        Outcome::Refund { refund, replayed } => {
            let status = if replayed {
                StatusCode::OK
            } else {
                state
                    .metrics
                    .refunds
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                StatusCode::CREATED
            };
            Ok((status, Json(*refund)))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
