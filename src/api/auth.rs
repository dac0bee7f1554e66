//! Authentication: terminal tokens open staff sessions; session tokens authorise every other
//! call. Tokens are compared by their SHA-256, in constant time; neither kind is stored in
//! plain text.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use base64::Engine;
use chrono::Utc;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::cache::{Cache, CacheError, Session};
use crate::config::{Config, PinCheck, StaffConfig, TerminalConfig, token_hash};
use crate::domain::access::{Action, Role};
use crate::ledger::Actor;

/// Terminals and staff known to the store.
#[derive(Debug)]
pub struct Directory {
    terminals: Vec<TerminalConfig>,
    staff: HashMap<String, StaffConfig>,
}

impl Directory {
    /// The directory from the config.
    pub fn from_config(c: &Config) -> Directory {
        Directory {
            terminals: c.terminals.clone(),
            staff: c
                .staff
                .iter()
                .map(|s| (s.staff_no.clone(), s.clone()))
                .collect(),
        }
    }

    /// The terminal whose token this is.
    pub fn terminal_for(&self, token: &str) -> Option<&TerminalConfig> {
        let h = token_hash(token);
        // Compare with every terminal so the time taken does not reveal which one matched.
        let mut found = None;
        for t in &self.terminals {
            if bool::from(t.token_sha256.ct_eq(&h)) {
                found = Some(t);
            }
        }
        found
    }

    /// A staff member by number: HQ's record when HQ manages them (an inactive one cannot log
    /// in), else the config's.
    pub fn staff(&self, cache: &Cache, staff_no: &str) -> Result<Option<StaffConfig>, CacheError> {
        if let Some(hq) = cache.staff(staff_no)? {
            if !hq.active {
                return Ok(None);
            }
            return Ok(Some(StaffConfig {
                staff_no: hq.staff_no,
                name: hq.name,
                role: hq.role,
                pin: PinCheck::Argon2(hq.pin_hash),
            }));
        }
        Ok(self.staff.get(staff_no).cloned())
    }
}

/// Checks a PIN against its configured check. Argon2 verification is slow by design, so
/// callers run this on a blocking thread.
pub fn verify_pin(check: &PinCheck, pin: &str) -> bool {
    match check {
        PinCheck::Plain(secret) => {
            secret.0.len() == pin.len() && bool::from(secret.0.as_bytes().ct_eq(pin.as_bytes()))
        }
        PinCheck::Argon2(phc) => {
            use argon2::password_hash::PasswordVerifier;
            use argon2::password_hash::phc::PasswordHash;
            match PasswordHash::new(phc) {
                Ok(hash) => argon2::Argon2::default()
                    .verify_password(pin.as_bytes(), &hash)
                    .is_ok(),
                Err(_) => false,
            }
        }
    }
}

/// A new random session token (256 bits, URL-safe base64).
pub fn new_token() -> String {
    use rand::Rng;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The bearer token of a request.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "send Authorization: Bearer <token>",
            )
        })
}

/// The staff member behind a request's session token.
#[derive(Debug, Clone)]
pub struct Staff {
    /// The session.
    pub session: Session,
    /// SHA-256 of the token (to end the session).
    pub token_hash: [u8; 32],
}

impl Staff {
    /// Refuses with `403` unless the staff member's role allows `action`.
    pub fn allow(&self, action: Action) -> Result<(), ApiError> {
        if action.allowed(self.session.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{} needs the {} role",
                    action.describe(),
                    action.min_role().as_str()
                ),
            ))
        }
    }

    /// Whether the role allows `action` (for fields shown only to some roles).
    pub fn can(&self, action: Action) -> bool {
        action.allowed(self.session.role)
    }

    /// The staff member's role.
    pub fn role(&self) -> Role {
        self.session.role
    }

    /// The actor for ledger commands.
    pub fn actor(&self) -> Actor {
        Actor {
            staff_no: self.session.staff_no.clone(),
            role: self.session.role,
            terminal_id: self.session.terminal_id.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        let hash = token_hash(token);
        match state.cache.session(&hash, Utc::now())? {
            Some(session) => Ok(Staff {
                session,
                token_hash: hash,
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the session token is unknown or expired; log in again",
            )),
        }
    }
}
