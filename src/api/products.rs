//! `/v1/products`: read by SKU or barcode, local edit.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Query, Staff, gate};
use crate::domain::access::Action;
use crate::domain::catalog::Product;
use crate::domain::money::Money;
use crate::ledger::requests::ProductEdit;
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/products", get(by_barcode))
        .route("/v1/products/{sku}", get(read).put(edit))
}

/// A product with the price in force now.
#[derive(Serialize)]
struct ProductView {
    #[serde(flatten)]
    product: Product,
    current_price: Money,
}

fn view(state: &AppState, mut product: Product) -> ProductView {
    let now = state.settings.local(Utc::now());
    // A promotion's times in the store's timezone, like every time the API gives (HQ's come
    // with the offset HQ wrote them in).
    if let Some(promo) = product.promo.as_mut() {
        let local = |t: chrono::DateTime<chrono::FixedOffset>| state.settings.local(t);
        promo.from = promo.from.map(local);
        promo.to = promo.to.map(local);
    }
    ProductView {
        current_price: product.unit_price_at(now),
        product,
    }
}

async fn read(
    State(state): State<AppState>,
    staff: Staff,
    Path(sku): Path<String>,
) -> ApiResult<Json<ProductView>> {
    staff.allow(Action::ProductRead)?;
    let p = state
        .cache
        .product(&sku)?
        .ok_or_else(|| ApiError::not_found("unknown_product", format!("no product {sku}")))?;
    Ok(Json(view(&state, p)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ByBarcode {
    barcode: String,
}

async fn by_barcode(
    State(state): State<AppState>,
    staff: Staff,
    Query(q): Query<ByBarcode>,
) -> ApiResult<Json<ProductView>> {
    staff.allow(Action::ProductRead)?;
    let code = crate::domain::catalog::typed_barcode(&q.barcode);
    let code = code.as_str();
    crate::domain::catalog::validate_barcode(code)
        .map_err(|m| ApiError::bad_request("invalid_barcode", m))?;
    let p = state.cache.product_by_barcode(code)?.ok_or_else(|| {
        ApiError::not_found("unknown_barcode", format!("no product with barcode {code}"))
    })?;
    Ok(Json(view(&state, p)))
}

async fn edit(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::ProductEdit>,
    Path(sku): Path<String>,
    Json(req): Json<ProductEdit>,
) -> ApiResult<Json<ProductView>> {
    match state
        .ledger
        .execute(staff.actor(), Command::PutProduct { sku, req })
        .await?
    {
        Outcome::Product(p) => Ok(Json(view(&state, *p))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
