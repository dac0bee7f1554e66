//! The HTTP API for POS terminals (design section 4), on axum.
//!
//! [`router`] builds the whole application from an [`AppState`], so tests can drive it without a
//! socket. One module per resource; `auth` turns a bearer token into a [`Staff`] and every
//! handler names the [`Action`](crate::domain::access::Action) it performs.

mod audit;
mod auth;
mod campaigns;
mod coupons;
mod csv;
mod devices;
mod error;
mod feedback;
mod health;
mod members;
mod page;
mod points;
mod products;
mod reports;
mod sales;
mod segments;
mod sessions;
mod staff;
mod stock;
pub mod tls;
mod uplink;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use futures_util::{FutureExt, StreamExt};

use crate::cache::Cache;
use crate::journal::JournalReader;
use crate::ledger::{Idem, Ledger, StoreSettings};

pub use auth::{Can, Directory, Staff, gate};
pub use error::{ApiError, ApiResult};

/// Everything the handlers need, behind one `Arc` (axum clones the state for every request).
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl AppState {
    /// Wraps the context.
    pub fn new(ctx: AppContext) -> AppState {
        AppState(Arc::new(ctx))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppContext;
    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// The shared parts of the application.
pub struct AppContext {
    /// The single writer.
    pub ledger: Ledger,
    /// Read access to the cache.
    pub cache: Cache,
    /// Read access to the journal.
    pub journal: JournalReader,
    /// Store settings and rules.
    pub settings: Arc<StoreSettings>,
    /// Terminals and staff (replaced by a config reload).
    pub directory: Reloadable<Directory>,
    /// When the daemon started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// The same instant on the monotonic clock: uptime, which a step of the wall clock (NTP
    /// setting right a box that booted with a bad clock) must not move.
    pub started: std::time::Instant,
    /// How long a staff session lasts.
    pub session_hours: u32,
    /// The HQ link's state.
    pub uplink: Arc<crate::uplink::UplinkStatus>,
    /// Device states and events.
    pub devices: crate::devices::bus::Bus,
    /// The store key (PIN pepper, audit key).
    pub keys: Arc<crate::security::StoreKeys>,
    /// Lock-out and PIN settings (replaced by a config reload).
    pub security: Reloadable<crate::config::SecurityConfig>,
    /// At most this many PIN hashes at once (each takes ~19 MiB and a core for tens of ms).
    pub pin_checks: Arc<tokio::sync::Semaphore>,
    /// At most this many reports read a period's sales, or every member (segments, the
    /// at-risk list), at once (a year's sales take a core for seconds and tens of MiB each, a
    /// million members seconds; reports asked for all at once would take every core from the
    /// tills and add up in memory).
    pub report_reads: Arc<tokio::sync::Semaphore>,
    /// The revenue of each campaign whose period is over, by id, once read: it no longer
    /// changes, and reading every past campaign's period at every `GET /v1/campaigns` read
    /// more of the journal each month (see `campaigns`).
    pub ended_campaigns: campaigns::Ended,
    /// Counters and histograms for `GET /metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Free space on the data directory, watched (see `app::disk_watch`).
    pub disk: Arc<crate::app::DiskWatch>,
    /// Why the last scheduled backup failed, if it did.
    pub backup_failing: crate::backup::Failing,
    /// Cancelled at shutdown: long-lived responses (event streams) end with it.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// A part of the config that a reload (SIGHUP) replaces while requests read it.
#[derive(Debug)]
pub struct Reloadable<T>(std::sync::RwLock<Arc<T>>);

impl<T> Reloadable<T> {
    /// Holds `v`.
    pub fn new(v: T) -> Self {
        Reloadable(std::sync::RwLock::new(Arc::new(v)))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(v),
            Err(p) => *p.into_inner() = Arc::new(v),
        }
    }
}

/// JSON body extractor whose rejections are [`ApiError`]s.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        // One allocation of a typical response's size (axum's own starts at 128 bytes and
        // grows several times for a member).
        let mut buf = Vec::with_capacity(1024);
        match serde_json::to_writer(&mut buf, &self.0) {
            Ok(()) => JsonText(buf).into_response(),
            Err(e) => ApiError::internal(e).into_response(),
        }
    }
}

/// A body that already is JSON text, answered as [`Json`] answers its value.
pub struct JsonText<B>(pub B);

impl<B: axum::response::IntoResponse> axum::response::IntoResponse for JsonText<B> {
    fn into_response(self) -> Response {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            self.0,
        )
            .into_response()
    }
}

/// Query extractor whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Path extractor whose rejections are [`ApiError`]s.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Builds the application.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(health::router())
        .merge(sessions::router())
        .merge(members::router())
        .merge(points::router())
        .merge(products::router())
        .merge(stock::router())
        .merge(staff::router())
        .merge(audit::router())
        .merge(reports::router())
        .merge(segments::router())
        .merge(feedback::router())
        .merge(campaigns::router())
        .merge(sales::router())
        .merge(coupons::router())
        .merge(uplink::router())
        .merge(devices::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(max_body_bytes, body_in_time))
        .layer(middleware::from_fn_with_state(
            max_body_bytes,
            refuse_oversized,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .with_state(state)
}

/// The least of an oversized body read (and thrown away) before the 413 goes out; twice the
/// limit when that is more.
const DRAIN_MIN: u64 = 4 * 1024 * 1024;

/// How long reading an oversized body may take before the 413 goes out anyway.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Answers a body declared larger than the limit with 413 — after reading it, up to
/// [`DRAIN_MIN`] or twice the limit. Answered unread, the connection would be closed with the
/// body still arriving, and the kernel answers a close with unread data by a reset: a
/// terminal still sending would see a broken connection instead of the error. A client that
/// asked to hear first (`Expect: 100-continue`) has sent nothing yet and is answered at once.
/// A chunked body (no length) is refused when its reading passes the limit, unread beyond it.
async fn refuse_oversized(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(declared) = declared.filter(|&n| n > limit as u64) else {
        return next.run(req).await;
    };
    let waits = headers
        .get(axum::http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits && declared <= DRAIN_MIN.max(2 * limit as u64) {
        let mut body = req.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = body.next().await {} };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    axum::response::IntoResponse::into_response(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than {limit} bytes"),
    ))
}

/// How long a request's body may take to arrive once its head has.
pub const BODY_TIME: Duration = Duration::from_secs(10);

/// Reads a request's body within [`BODY_TIME`], or answers `408`. The server bounds the head's
/// arrival (`app/serve.rs`) but not the body's: a terminal that sends a head and a few bytes of
/// body would hold its connection — and a shutdown — for ever. A body found longer than the
/// limit as it is read (chunked: no length declared) is refused with `413`, unread beyond it.
async fn body_in_time(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let has_body = headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let read = async {
        let mut stream = body.into_data_stream();
        // A terminal's body comes in one piece as a rule: kept as it came, not copied.
        let mut chunks: Vec<axum::body::Bytes> = Vec::with_capacity(1);
        let mut len = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("the request body could not be read: {e}"),
                )
            })?;
            len += chunk.len();
            if len > limit {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the request body is larger than {limit} bytes"),
                ));
            }
            chunks.push(chunk);
        }
        Ok(match chunks.len() {
            1 => chunks.swap_remove(0),
            _ => axum::body::Bytes::from(chunks.concat()),
        })
    };
    match tokio::time::timeout(BODY_TIME, read).await {
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        Ok(Err(e)) => axum::response::IntoResponse::into_response(e),
        Err(_) => axum::response::IntoResponse::into_response(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s",
                BODY_TIME.as_secs()
            ),
        )),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no_route", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

/// Logs each request by its route pattern (never the raw path or query: they can hold phone
/// numbers), status and latency.
async fn log_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    // A sale is answered before its cache write: whatever comes after the answer sees it.
    state.ledger.caught_up().await;
    // A handler that panics (a bug: input is checked) answers 500 with the error JSON, like
    // any other internal error, instead of dropping the terminal's connection unanswered.
    let resp = match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(panic) => axum::response::IntoResponse::into_response(ApiError::internal(
            crate::ledger::panic_message(&*panic),
        )),
    };
    let status = resp.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    let route = route.as_ref().map_or("(unmatched)", MatchedPath::as_str);
    state.metrics.request(
        method.as_str(),
        route,
        status,
        started.elapsed().as_secs_f64(),
    );
    if let Some(code) = resp.extensions().get::<error::ErrorCode>() {
        state.metrics.error(code.0);
    }
    if status >= 500 {
        tracing::warn!(%method, route, status, micros, "request failed");
    } else {
        tracing::debug!(%method, route, status, micros, "request");
    }
    resp
}

/// Reads the `Idempotency-Key` header: 1–128 visible ASCII characters.
pub(crate) fn idempotency_key(
    headers: &HeaderMap,
    body_hash: String,
) -> Result<Option<Idem>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1–128 visible ASCII characters",
            )
        })?;
    Ok(Some(Idem {
        key: key.to_string(),
        body_hash,
    }))
}
