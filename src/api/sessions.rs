//! `POST /v1/sessions` (log in on a terminal) and `DELETE /v1/sessions/current` (log out).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Router, http::request::Parts};
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::auth::{bearer, new_token, verify_pin};
use super::{ApiError, ApiResult, AppState, Json, Staff};
use crate::cache::Session;
use crate::config::{PinCheck, token_hash};
use crate::domain::access::Role;
use crate::domain::sync::StaffRecord;
use crate::ledger::{Actor, Command, Outcome, SessionOp};
use crate::security::pin::PinMatch;
use serde_json::json;

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
    /// In the store's timezone, as every time the API gives.
    expires_at: DateTime<FixedOffset>,
}

/// The terminal of a login request: its id and its token's SHA-256.
struct Terminal(String, [u8; 32]);

impl axum::extract::FromRequestParts<AppState> for Terminal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        state
            .directory
            .get()
            .terminal_for(token)
            .map(|t| Terminal(t.id.clone(), t.token_sha256))
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
    Terminal(terminal_id, terminal_token): Terminal,
    Json(req): Json<Login>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let refused = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "unknown staff number or wrong PIN",
        )
    };
    let sec = state.security.get();
    let staff_no = req.staff_no.trim().to_string();
    let staff_scope = crate::security::lockout_scope(&staff_no);
    let terminal_scope = format!("terminal:{terminal_id}");
    let now = Utc::now();
    // A number no staff member has is not written down as typed (audit log, HQ's copy, the
    // log): it may be a PIN typed into the wrong field. A removed staff member's number is
    // written down: their trying it is what an auditor looks for.
    let shown = if staff_no.len() <= 16
        && (state.cache.staff(&staff_no)?.is_some()
            || state
                .directory
                .get()
                .staff(&state.cache, &staff_no)?
                .is_some())
    {
        staff_no.clone()
    } else {
        "unknown".to_string()
    };
    let audit_actor = staff_actor(&shown, Role::Cashier, &terminal_id);

    // The attempt is counted before its PIN is checked, on the ledger thread (see `Attempt`):
    // logins sent at once cannot all pass the lock before the first wrong PIN is counted. A
    // locked staff number or terminal: no PIN is checked, not even the right one.
    let valid_shape = staff_no.len() <= 16 && req.pin.len() <= 16;
    let mut scopes = vec![(terminal_scope.clone(), sec.terminal_max_failures)];
    if valid_shape {
        scopes.push((staff_scope.clone(), sec.max_pin_failures));
    }
    let window = chrono::Duration::from_std(sec.lockout).map_err(ApiError::internal)?;
    let attempt = match count_attempt(&state, &audit_actor, scopes, window).await? {
        Ok(attempt) => attempt,
        Err(Outcome::Locked { scope, until }) => {
            let (code, what) = if scope == terminal_scope {
                ("terminal_locked", "this terminal")
            } else {
                ("staff_locked", "this staff number")
            };
            audit(
                &state,
                &audit_actor,
                "login.refused",
                &shown,
                json!({ "reason": code }),
            )
            .await?;
            let secs = (until - now).num_seconds().max(1) as u64;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                code,
                format!("too many wrong PINs: {what} is locked for {secs} more seconds"),
            )
            .retry_after(secs));
        }
        Err(other) => {
            return Err(ApiError::internal(format!(
                "a login attempt was answered {other:?}"
            )));
        }
    };

    let known = if valid_shape {
        state.directory.get().staff(&state.cache, &staff_no)?
    } else {
        None
    };
    let matched = match &known {
        // Nobody by that number: the PIN is checked all the same, against a hash nobody's, so
        // that the answer takes as long as a wrong PIN's (the time would say who exists).
        None if valid_shape => {
            let nobody = PinCheck::Argon2(crate::security::pin::NOBODY.to_string());
            check_pin(&state, &nobody, &req.pin).await?;
            PinMatch::No
        }
        None => PinMatch::No,
        Some((staff, _)) => check_pin(&state, &staff.pin, &req.pin).await?,
    };
    let Some((staff, record)) = known.filter(|_| matched.ok()) else {
        // A wrong PIN (or nobody by that number): the attempt stays counted.
        attempt.stands();
        audit(&state, &audit_actor, "login.failed", &shown, json!({})).await?;
        tracing::info!(staff_no = %shown, terminal = %terminal_id, "failed login");
        return Err(refused());
    };
    let actor = staff_actor(&staff.staff_no, staff.role, &terminal_id);
    attempt.right_pin(staff_scope).await?;
    let token = new_token();
    let session = Session {
        staff_no: staff.staff_no.clone(),
        name: staff.name.clone(),
        role: staff.role,
        terminal_id: terminal_id.clone(),
        created_at: now,
        expires_at: now + chrono::Duration::hours(i64::from(state.session_hours)),
        grant: Some(super::auth::grant(
            &state.keys,
            &terminal_id,
            &terminal_token,
            &staff,
            record.is_some(),
        )),
    };
    state
        .ledger
        .execute(
            actor.clone(),
            Command::Session(SessionOp::Open {
                token_hash: token_hash(&token),
                session: session.clone(),
            }),
        )
        .await?;
    // Removed, given another role or a new PIN while this PIN was checked: that change ended
    // the staff member's sessions before this one opened (or ends it with them, when both come
    // in one batch), so the record checked must still be the one in force.
    // (Another till's login may have peppered an HQ hash meanwhile: the PIN is checked again
    // against a check that changed.)
    // So must the terminal and its token: a reload that took them away while this login ran
    // has ended the sessions it found, not this one.
    let directory = state.directory.get();
    let terminal_stands = directory
        .terminal(&terminal_id)
        .is_some_and(|t| t.token_sha256 == terminal_token);
    let stands = match directory.staff(&state.cache, &staff.staff_no)? {
        Some((now, _)) if terminal_stands && now.role == staff.role => {
            same_check(&staff.pin, &now.pin) || check_pin(&state, &now.pin, &req.pin).await?.ok()
        }
        _ => false,
    };
    if !stands {
        state
            .ledger
            .execute(
                actor.clone(),
                Command::Session(SessionOp::Close {
                    token_hash: token_hash(&token),
                }),
            )
            .await?;
        audit(
            &state,
            &audit_actor,
            "login.failed",
            &staff_no,
            json!({ "reason": "staff_changed" }),
        )
        .await?;
        return Err(refused());
    }
    if let (PinMatch::Unpeppered, Some(record)) = (matched, record) {
        upgrade_pin_hash(&state, &actor, record, req.pin).await;
    }
    audit(
        &state,
        &actor,
        "login",
        &staff.staff_no,
        json!({ "role": staff.role }),
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
            expires_at: state.settings.local(session.expires_at),
        }),
    ))
}

/// Counts a login's attempt before its PIN is checked (on the ledger thread, see `Attempt`):
/// the attempt, or the outcome that refused it (`Locked`). Counted in a task of its own, which
/// hands the [`Attempt`] over or — when the login was dropped meanwhile — drops it, taking the
/// attempt back: hyper drops a request once it reads the end of the client's stream, and a
/// login dropped while its attempt was counted, before the guard existed, left it counted for
/// good (a terminal that gave up on a busy box: a few of them locked a cashier out, right PIN
/// or not).
async fn count_attempt(
    state: &AppState,
    actor: &Actor,
    scopes: Vec<(String, u32)>,
    window: chrono::Duration,
) -> ApiResult<Result<Attempt, Outcome>> {
    let (ledger, actor) = (state.ledger.clone(), actor.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let op = SessionOp::Attempt {
            scopes: scopes.clone(),
            window,
        };
        let counted = ledger
            .execute(actor.clone(), Command::Session(op))
            .await
            .map(|outcome| match outcome {
                Outcome::Attempted { since } => Ok(Attempt {
                    ledger,
                    actor,
                    counts: scopes
                        .into_iter()
                        .zip(since)
                        .map(|((scope, max), since)| (scope, max, since))
                        .collect(),
                    open: true,
                }),
                other => Err(other),
            });
        // Nobody left to hear of it: the attempt is dropped here, and taken back.
        let _ = tx.send(counted);
    });
    Ok(rx.await.map_err(ApiError::internal)??)
}

/// A login's attempt, counted before its PIN is checked. Settled as standing (a wrong PIN is
/// answered) or as a right PIN's (taken back, the staff number's count forgotten); a login that
/// ends before either — its PIN check failed, or the request was dropped unanswered — takes it
/// back when dropped: no PIN was answered, so no guess was made (a terminal that gives up and
/// closes its connection has its request dropped by hyper, see [`count_attempt`]).
struct Attempt {
    ledger: crate::ledger::Ledger,
    actor: Actor,
    /// The counts the attempt went into: scope, limit, when the count started.
    counts: Vec<(String, u32, DateTime<Utc>)>,
    open: bool,
}

impl Attempt {
    /// A wrong PIN is about to be answered: the attempt stays counted.
    fn stands(mut self) {
        self.open = false;
    }

    /// The PIN was right: the attempt is taken back and the staff number's count forgotten.
    async fn right_pin(mut self, staff_scope: String) -> ApiResult<()> {
        self.open = false;
        let attempts = std::mem::take(&mut self.counts);
        self.ledger
            .execute(
                self.actor.clone(),
                Command::Session(SessionOp::TakeBack {
                    attempts,
                    clear: Some(staff_scope),
                }),
            )
            .await?;
        Ok(())
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (ledger, actor) = (self.ledger.clone(), self.actor.clone());
        let attempts = std::mem::take(&mut self.counts);
        runtime.spawn(async move {
            let op = SessionOp::TakeBack {
                attempts,
                clear: None,
            };
            if let Err(e) = ledger.execute(actor, Command::Session(op)).await {
                tracing::warn!(error = %e, "could not take back an unanswered login attempt");
            }
        });
    }
}

/// Checks `pin` against `check` on a blocking thread, at most two at a time (argon2id is slow
/// by design).
async fn check_pin(state: &AppState, check: &PinCheck, pin: &str) -> ApiResult<PinMatch> {
    let _permit = state
        .pin_checks
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let (keys, check, pin) = (state.keys.clone(), check.clone(), pin.to_string());
    tokio::task::spawn_blocking(move || verify_pin(&keys, &check, &pin))
        .await
        .map_err(ApiError::internal)
}

/// Whether two PIN checks are the same (the same hash, or in development the same PIN).
fn same_check(a: &PinCheck, b: &PinCheck) -> bool {
    match (a, b) {
        (PinCheck::Argon2(a), PinCheck::Argon2(b)) => a == b,
        (PinCheck::Plain(a), PinCheck::Plain(b)) => a.0 == b.0,
        _ => false,
    }
}

/// Replaces a PIN hash made without this store's pepper (one from HQ) by a peppered one,
/// now that the PIN is known to be right — unless the record changed meanwhile (see
/// [`Command::UpgradePin`]). A failure only costs the upgrade.
async fn upgrade_pin_hash(state: &AppState, actor: &Actor, record: StaffRecord, pin: String) {
    let keys = state.keys.clone();
    let hashed = match state.pin_checks.acquire().await {
        Ok(_permit) => tokio::task::spawn_blocking(move || crate::security::pin::hash(&keys, &pin))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r),
        Err(e) => Err(e.to_string()),
    };
    let result = match hashed {
        Ok(to) => state
            .ledger
            .execute(
                actor.clone(),
                Command::UpgradePin {
                    staff_no: record.staff_no,
                    from: record.pin_hash,
                    to,
                },
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(staff_no = %actor.staff_no, error = %e, "could not pepper a PIN hash from HQ");
    }
}

/// Records a sensitive action in the audit chain.
pub(super) async fn audit(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> ApiResult<()> {
    state
        .ledger
        .execute(
            actor.clone(),
            Command::Audit {
                action: action.to_string(),
                target: target.to_string(),
                detail,
            },
        )
        .await?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn pin_checks_are_the_same_only_for_the_same_hash_or_pin() {
        let hash = |h: &str| PinCheck::Argon2(h.into());
        let plain = |p: &str| PinCheck::Plain(Secret(p.into()));
        assert!(same_check(&hash("h1"), &hash("h1")));
        assert!(!same_check(&hash("h1"), &hash("h2")));
        assert!(!same_check(&hash("1111"), &plain("1111")));
        assert!(same_check(&plain("1111"), &plain("1111")));
        assert!(!same_check(&plain("1111"), &plain("2222")));
    }
}
