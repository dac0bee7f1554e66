//! `POST /v1/sessions` (log in on a terminal) and `DELETE /v1/sessions/current` (log out).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Router, http::request::Parts};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::auth::{bearer, new_token, verify_pin};
use super::{ApiError, ApiResult, AppState, Json, Staff};
use crate::cache::Session;
use crate::config::token_hash;
use crate::domain::access::Role;
use crate::ledger::{Actor, Command, SessionOp};

fn staff_actor(staff_no: &str, role: Role, terminal_id: &str) -> Actor {
    Actor {
        staff_no: staff_no.to_string(),
        role,
        terminal_id: terminal_id.to_string(),
    }
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions", post(login))
        .route("/v1/sessions/current", delete(logout))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    staff_no: String,
    pin: String,
}

#[derive(Serialize)]
struct SessionView {
    token: String,
    staff_no: String,
    name: String,
    role: Role,
    terminal_id: String,
    expires_at: DateTime<Utc>,
}

/// The terminal token of a login request.
struct Terminal(String);

impl axum::extract::FromRequestParts<AppState> for Terminal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        state
            .directory
            .terminal_for(token)
            .map(|t| Terminal(t.id.clone()))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid_terminal",
                    "the terminal token is not known to this store",
                )
            })
    }
}

async fn login(
    State(state): State<AppState>,
    Terminal(terminal_id): Terminal,
    Json(req): Json<Login>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "unknown staff number or wrong PIN",
        )
    };
    if req.staff_no.len() > 16 || req.pin.len() > 16 {
        return Err(refused());
    }
    let Some(staff) = state.directory.staff(&state.cache, &req.staff_no)? else {
        return Err(refused());
    };
    let check = staff.pin.clone();
    let pin = req.pin;
    let ok = tokio::task::spawn_blocking(move || verify_pin(&check, &pin))
        .await
        .map_err(ApiError::internal)?;
    if !ok {
        tracing::info!(staff_no = %staff.staff_no, terminal = %terminal_id, "failed login");
        return Err(refused());
    }
    let token = new_token();
    let now = Utc::now();
    let session = Session {
        staff_no: staff.staff_no.clone(),
        name: staff.name.clone(),
        role: staff.role,
        terminal_id: terminal_id.clone(),
        created_at: now,
        expires_at: now + chrono::Duration::hours(i64::from(state.session_hours)),
    };
    state
        .ledger
        .execute(
            staff_actor(&staff.staff_no, staff.role, &terminal_id),
            Command::Session(SessionOp::Open {
                token_hash: token_hash(&token),
                session: session.clone(),
            }),
        )
        .await?;
    tracing::info!(staff_no = %staff.staff_no, terminal = %terminal_id, "login");
    Ok((
        StatusCode::CREATED,
        Json(SessionView {
            token,
            staff_no: session.staff_no,
            name: session.name,
            role: session.role,
            terminal_id,
            expires_at: session.expires_at,
        }),
    ))
}

async fn logout(State(state): State<AppState>, staff: Staff) -> ApiResult<StatusCode> {
    state
        .ledger
        .execute(
            staff.actor(),
            Command::Session(SessionOp::Close {
                token_hash: staff.token_hash,
            }),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
