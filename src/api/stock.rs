//! `/v1/stock`: levels, the below-safety list, movements.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Query, Staff, gate, idempotency_key};
use crate::domain::access::Action;
use crate::domain::catalog::StockLevel;
use crate::journal::store;
use crate::ledger::requests::{StockMovement, request_hash};
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/stock", get(list))
        .route("/v1/stock/movements", post(movement).get(movements))
        .route("/v1/stock/{sku}", get(read))
}

/// Most levels listed at once.
const LIST_LIMIT: usize = 1000;

#[derive(Serialize)]
struct LevelView {
    sku: String,
    on_hand: i64,
    safety_stock: i64,
    below_safety: bool,
    updated_at: Option<chrono::DateTime<chrono::FixedOffset>>,
}

impl From<StockLevel> for LevelView {
    fn from(l: StockLevel) -> Self {
        LevelView {
            below_safety: l.below_safety(),
            sku: l.sku,
            on_hand: l.on_hand,
            safety_stock: l.safety_stock,
            updated_at: l.updated_at,
        }
    }
}

async fn read(
    State(state): State<AppState>,
    staff: Staff,
    Path(sku): Path<String>,
) -> ApiResult<Json<LevelView>> {
    staff.allow(Action::StockRead)?;
    let level = match state.cache.stock(&sku)? {
        Some(l) => l,
        None if state.cache.product(&sku)?.is_some() => StockLevel::empty(&sku),
        None => {
            return Err(ApiError::not_found(
                "unknown_product",
                format!("no product {sku}"),
            ));
        }
    };
    Ok(Json(level.into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    below_safety: bool,
    /// Continue after this SKU (from `next_after`).
    #[serde(default)]
    after: String,
}

#[derive(Serialize)]
struct Levels {
    stock: Vec<LevelView>,
    /// Pass as `after` to get the next page; `null` on the last page.
    next_after: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Levels>> {
    staff.allow(Action::StockRead)?;
    let cache = state.cache.clone();
    let levels = tokio::task::spawn_blocking(move || {
        if q.below_safety {
            cache.stock_below_safety(&q.after, LIST_LIMIT + 1)
        } else {
            cache.stock_levels(&q.after, LIST_LIMIT + 1)
        }
    })
    .await
    .map_err(ApiError::internal)??;
    // A store with more products than a page: the rest is a page away, not left out.
    let (levels, next_after) = super::page::after(levels, LIST_LIMIT, |l| l.sku.clone());
    Ok(Json(Levels {
        stock: levels.into_iter().map(LevelView::from).collect(),
        next_after,
    }))
}

#[derive(Serialize)]
struct MovementView {
    movement_id: String,
    #[serde(flatten)]
    level: LevelView,
}

async fn movement(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::StockMove>,
    headers: HeaderMap,
    Json(req): Json<StockMovement>,
) -> ApiResult<(StatusCode, Json<MovementView>)> {
    let idem = idempotency_key(&headers, request_hash("stock", &req))?;
    match state
        .ledger
        .execute(staff.actor(), Command::MoveStock { req, idem })
        .await?
    {
        Outcome::Stock {
            level,
            movement_id,
            replayed,
        } => {
            let status = if replayed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((
                status,
                Json(MovementView {
                    movement_id,
                    level: level.into(),
                }),
            ))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MovementsQuery {
    date: Option<NaiveDate>,
    /// Continue after this `seq` (from `next_after_seq`).
    #[serde(default)]
    after_seq: u64,
}

#[derive(Serialize)]
struct Movements {
    date: NaiveDate,
    movements: Vec<Value>,
    /// Pass as `after_seq` to get the next page; `null` on the last page.
    next_after_seq: Option<u64>,
}

/// Most movements returned by one call (a day HQ counts every product has one for each).
const MOVEMENTS_PAGE: usize = 10_000;

/// Stock movements of a store-local day (today by default), oldest first.
async fn movements(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<MovementsQuery>,
) -> ApiResult<Json<Movements>> {
    staff.allow(Action::StockRead)?;
    let date = q
        .date
        .unwrap_or_else(|| state.settings.local_date(chrono::Utc::now()));
    let day = date.to_string();
    let store_id = state.settings.store_id.clone();
    let codec = state.cache.codec().clone();
    let (movements, next_after_seq) = state
        .journal
        .with(move |conn| {
            let rows =
                store::events_on_day(conn, "stock.moved", &day, q.after_seq, MOVEMENTS_PAGE + 1)?;
            let (rows, next) = super::page::after(rows, MOVEMENTS_PAGE, |r| r.seq);
            let movements = rows
                .iter()
                .map(|r| {
                    let e = r.decode(conn, &store_id, &codec)?;
                    let mut v = serde_json::to_value(&e.body).unwrap_or_default();
                    let mut data = v.get_mut("data").map(Value::take).unwrap_or_default();
                    if let Some(obj) = data.as_object_mut() {
                        obj.insert(
                            "occurred_at".into(),
                            Value::String(e.occurred_at.to_rfc3339()),
                        );
                        obj.insert("seq".into(), Value::from(e.seq));
                    }
                    Ok(data)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((movements, next))
        })
        .await?;
    Ok(Json(Movements {
        date,
        movements,
        next_after_seq,
    }))
}
