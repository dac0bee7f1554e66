//! The API's error: a status, a stable `code` and a message, as design section 4 specifies:
//! `{"error": {"code": "snake_case_reason", "message": "human readable"}}`.
//!
//! Server errors (5xx) are logged with their cause and the terminal gets a generic message.
//! Extractor rejections (bad JSON, unknown fields, bad path or query) become `400` (or `413`
//! for an oversized body, `415` for a missing JSON content type) in the same shape.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::cache::CacheError;
use crate::journal::JournalError;
use crate::ledger::LedgerError;

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable reason code.
    pub code: &'static str,
    /// Message for the terminal.
    pub message: String,
    /// Seconds to wait before trying again (sent as `Retry-After`).
    pub retry_after: Option<u64>,
}

/// The code of an error response, for the request metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, telling the terminal when to try again.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// `400`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// `404`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// `500`, logged; the terminal sees no detail.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the details are in the storebox log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        resp.extensions_mut().insert(ErrorCode(self.code));
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Invalid { code, message } => ApiError::bad_request(code, message),
            LedgerError::NotFound { code, message } => ApiError::not_found(code, message),
            LedgerError::Conflict { code, message } => {
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            LedgerError::Rule { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            LedgerError::Forbidden { code, message } => {
                ApiError::new(StatusCode::FORBIDDEN, code, message)
            }
            LedgerError::Unavailable(cause) => {
                tracing::error!(error = %cause, "journal or cache unwritable; request refused");
                // The journal, or the cache it must be caught up into before anything is
                // decided on it (see the ledger's `catch_up`): the log says which.
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_unavailable",
                    "the store cannot record anything now: its journal or cache cannot be written (disk full?); nothing was recorded",
                )
            }
            LedgerError::Unconfirmed(cause) => {
                tracing::error!(error = %cause, "journal commit unconfirmed; request refused");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "journal_unconfirmed",
                    "the store's journal could not confirm the write (a disk error, or its file \
                     gone from the data directory); it may have been recorded: retry with the \
                     same Idempotency-Key, never a new one",
                )
            }
            LedgerError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "storebox is shutting down; retry shortly",
            ),
            LedgerError::Internal(cause) | LedgerError::Bug(cause) => ApiError::internal(cause),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(e: CacheError) -> Self {
        ApiError::internal(e)
    }
}

impl From<JournalError> for ApiError {
    fn from(e: JournalError) -> Self {
        ApiError::from(LedgerError::from(e))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON with Content-Type: application/json",
            ),
            _ => ApiError::bad_request("invalid_body", r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", r.body_text())
    }
}
