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
use crate::domain::sync::StaffRecord;
use crate::ledger::Actor;
use crate::security::StoreKeys;
use crate::security::pin::PinMatch;

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

    /// A staff member by number: the record in the cache when HQ or an admin manages them (an
    /// inactive one cannot log in), else the config's. The record comes along when there is
    /// one (its PIN hash may be upgraded at login).
    pub fn staff(
        &self,
        cache: &Cache,
        staff_no: &str,
    ) -> Result<Option<(StaffConfig, Option<StaffRecord>)>, CacheError> {
        if let Some(rec) = cache.staff(staff_no)? {
            if !rec.active {
                return Ok(None);
            }
            let staff = StaffConfig {
                staff_no: rec.staff_no.clone(),
                name: rec.name.clone(),
                role: rec.role,
                pin: PinCheck::Argon2(rec.pin_hash.clone()),
            };
            return Ok(Some((staff, Some(rec))));
        }
        Ok(self.staff.get(staff_no).cloned().map(|s| (s, None)))
    }

    /// The staff of the config (those the cache does not override).
    pub fn configured(&self) -> impl Iterator<Item = &StaffConfig> {
        self.staff.values()
    }

    /// A terminal by id.
    pub fn terminal(&self, id: &str) -> Option<&TerminalConfig> {
        self.terminals.iter().find(|t| t.id == id)
    }

    /// The open sessions this directory no longer grants (or that recorded no grant, opened by
    /// an older storebox): their terminal is gone or has another token; their staff member is gone, inactive or has another role; or, for a
    /// staff member of the config (not managed by HQ or an admin, whose changes end sessions
    /// on the ledger), another PIN. Expired sessions are left to the hourly prune.
    pub fn stale_sessions(
        &self,
        cache: &Cache,
        keys: &StoreKeys,
    ) -> Result<Vec<[u8; 32]>, CacheError> {
        let mut stale = Vec::new();
        for (k, s) in cache.sessions()? {
            let granted = match (
                self.terminal(&s.terminal_id),
                self.staff(cache, &s.staff_no)?,
            ) {
                // A session of an older storebox, which recorded no grant, cannot be checked
                // against a changed token or PIN: it ends (one login more after the upgrade).
                (Some(t), Some((staff, record))) if staff.role == s.role => {
                    s.grant.as_ref().is_some_and(|g| {
                        *g == grant(keys, &t.id, &t.token_sha256, &staff, record.is_some())
                    })
                }
                _ => false,
            };
            if !granted {
                stale.push(k);
            }
        }
        Ok(stale)
    }
}

/// What a login is granted under, as a session records it: the terminal and its token, the
/// staff member and their role, and — for a staff member of the config — their PIN check.
/// Keyed, so that the cache holds nothing a PIN can be guessed from.
pub fn grant(
    keys: &StoreKeys,
    terminal_id: &str,
    terminal_token_sha256: &[u8; 32],
    staff: &StaffConfig,
    managed: bool,
) -> String {
    let pin: &[u8] = match (&staff.pin, managed) {
        // A managed staff member's hash may be peppered at a login: its changes end the
        // sessions where they are made (the ledger).
        (_, true) => b"managed",
        (PinCheck::Plain(p), false) => p.0.as_bytes(),
        (PinCheck::Argon2(h), false) => h.as_bytes(),
    };
    let kind: &[u8] = match (&staff.pin, managed) {
        (_, true) => b"managed",
        (PinCheck::Plain(_), false) => b"plain",
        (PinCheck::Argon2(_), false) => b"argon2",
    };
    let mac = crate::security::seal::Mac256::new(&keys.session).mac(&[
        b"session grant v1",
        terminal_id.as_bytes(),
        terminal_token_sha256,
        staff.staff_no.as_bytes(),
        staff.role.as_str().as_bytes(),
        kind,
        pin,
    ]);
    hex::encode(&mac[..16])
}

/// Checks a PIN against its configured check. Argon2 verification is slow by design, so
/// callers run this on a blocking thread.
pub fn verify_pin(keys: &StoreKeys, check: &PinCheck, pin: &str) -> PinMatch {
    match check {
        PinCheck::Plain(secret) => {
            if secret.0.len() == pin.len() && bool::from(secret.0.as_bytes().ct_eq(pin.as_bytes()))
            {
                PinMatch::Peppered
            } else {
                PinMatch::No
            }
        }
        PinCheck::Argon2(phc) => crate::security::pin::verify(keys, phc, pin),
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
        // The scheme's name is case-insensitive (RFC 9110 §11.1).
        .and_then(|v| {
            v.get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        })
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
    pub session: std::sync::Arc<Session>,
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

/// An action a route needs whatever its body says, as a type: [`Can`] checks it before the body
/// is read, so a request the role may not make is `403` even when its body is malformed.
pub trait Gate {
    /// The action.
    const ACTION: Action;
}

/// The gates of the routes that need more than a cashier and take a body, a query or a path
/// parameter: the role is checked before any of them is parsed.
pub mod gate {
    use super::{Action, Gate};

    macro_rules! gates {
        ($($name:ident),* $(,)?) => {$(
            #[doc = concat!("[`Action::", stringify!($name), "`].")]
            pub struct $name;
            impl Gate for $name {
                const ACTION: Action = Action::$name;
            }
        )*};
    }
    gates!(
        AuditRead,
        CampaignManage,
        CouponIssue,
        DeviceControl,
        FeedbackManage,
        MemberErase,
        PointsAdjust,
        ProductEdit,
        ReportsRead,
        SaleRefund,
        StaffManage,
        StaffRead,
        StockMove,
    );
}

/// The staff member behind a request, whose role allows `G`'s action.
pub struct Can<G>(pub Staff, pub std::marker::PhantomData<G>);

impl<G: Gate> FromRequestParts<AppState> for Can<G> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let staff = Staff::from_request_parts(parts, state).await?;
        staff.allow(G::ACTION)?;
        Ok(Can(staff, std::marker::PhantomData))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(dir: &Path, token: &str, pin: &str) -> Config {
        let text = format!(
            "[store]\nid = \"sh-001\"\nname = \"店\"\nenvironment = \"development\"\n[storage]\ndir = \"{}\"\n\
             [[terminals]]\nid = \"pos-1\"\ntoken = \"{token}\"\n\
             [[staff]]\nstaff_no = \"1001\"\nname = \"王芳\"\nrole = \"cashier\"\npin = \"{pin}\"\n",
            dir.display()
        );
        Config::parse(Path::new("test.toml"), &text).unwrap()
    }

    /// A session's grant follows the terminal's token and the PIN; a session an older
    /// storebox opened (no grant) cannot be checked, and ends too.
    #[test]
    fn sessions_end_with_their_token_or_pin_and_old_ones_end_too() {
        let dir = tempfile::tempdir().unwrap();
        let keys = StoreKeys::random();
        let codec = crate::pii::PiiCodec::new(std::sync::Arc::new(keys.clone()));
        let (cache, writer, _) = Cache::open(dir.path(), 4, codec).unwrap();
        let now = Utc::now();
        let old = Session {
            staff_no: "1001".into(),
            name: "王芳".into(),
            role: Role::Cashier,
            terminal_id: "pos-1".into(),
            created_at: now,
            expires_at: now + chrono::Duration::hours(12),
            grant: None,
        };
        writer.put_session(&[7u8; 32], &old).unwrap();
        let before = Directory::from_config(&config(dir.path(), "leaked-token-0001", "1111"));
        let t = before.terminal("pos-1").unwrap().clone();
        let (staff, rec) = before.staff(&cache, "1001").unwrap().unwrap();
        let new = Session {
            grant: Some(grant(&keys, &t.id, &t.token_sha256, &staff, rec.is_some())),
            ..old.clone()
        };
        writer.put_session(&[8u8; 32], &new).unwrap();
        // Nothing changed: only the old one ends.
        assert_eq!(
            before.stale_sessions(&cache, &keys).unwrap(),
            vec![[7u8; 32]]
        );
        for (token, pin) in [("fresh-token-0002", "1111"), ("leaked-token-0001", "4321")] {
            let after = Directory::from_config(&config(dir.path(), token, pin));
            let mut stale = after.stale_sessions(&cache, &keys).unwrap();
            stale.sort();
            assert_eq!(stale, vec![[7u8; 32], [8u8; 32]], "{token} {pin}");
        }
    }
}
