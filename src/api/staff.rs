//! `/v1/staff`: the store's staff, managed by an admin (HQ may push staff too; see the
//! uplink). Changes are journaled (`staff.changed`) and audited; PINs are stored only as
//! peppered argon2id hashes and never returned.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiResult, AppState, Can, Json, Path, Staff, gate};
use crate::config::{PinCheck, valid_pin};
use crate::domain::access::{Action, Role};
use crate::domain::sync::StaffRecord;
use crate::ledger::{Command, Outcome};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/staff", get(list))
        .route("/v1/staff/{staff_no}", get(read).put(put).delete(remove))
}

/// A staff member as the API shows them: no PIN, no hash.
#[derive(Debug, Serialize)]
struct StaffView {
    staff_no: String,
    name: String,
    role: Role,
    /// `config` (from the config file) or `managed` (by an admin or HQ).
    source: &'static str,
    active: bool,
}

fn view(r: &StaffRecord) -> StaffView {
    StaffView {
        staff_no: r.staff_no.clone(),
        name: r.name.clone(),
        role: r.role,
        source: "managed",
        active: r.active,
    }
}

async fn list(State(state): State<AppState>, staff: Staff) -> ApiResult<Json<Vec<StaffView>>> {
    staff.allow(Action::StaffRead)?;
    let managed = state.cache.all_staff()?;
    let mut out: Vec<StaffView> = state
        .directory
        .get()
        .configured()
        .filter(|c| !managed.iter().any(|m| m.staff_no == c.staff_no))
        .map(|c| StaffView {
            staff_no: c.staff_no.clone(),
            name: c.name.clone(),
            role: c.role,
            source: "config",
            active: true,
        })
        .collect();
    out.extend(managed.iter().map(view));
    out.sort_by(|a, b| a.staff_no.cmp(&b.staff_no));
    Ok(Json(out))
}

async fn read(
    State(state): State<AppState>,
    Can(_staff, _): Can<gate::StaffRead>,
    Path(staff_no): Path<String>,
) -> ApiResult<Json<StaffView>> {
    if let Some(r) = state.cache.staff(&staff_no)? {
        return Ok(Json(view(&r)));
    }
    state
        .directory
        .get()
        .configured()
        .find(|c| c.staff_no == staff_no)
        .map(|c| {
            Json(StaffView {
                staff_no: c.staff_no.clone(),
                name: c.name.clone(),
                role: c.role,
                source: "config",
                active: true,
            })
        })
        .ok_or_else(|| not_found(&staff_no))
}

fn not_found(staff_no: &str) -> ApiError {
    ApiError::not_found("staff_not_found", format!("no staff member {staff_no}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutStaff {
    name: String,
    role: Role,
    /// Required for a new staff member; optional otherwise (the PIN stays).
    pin: Option<String>,
}

/// A staff number: 1–16 letters, digits or `-`.
fn valid_staff_no(no: &str) -> bool {
    (1..=16).contains(&no.len()) && no.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The current record of a staff member, managed or from the config.
async fn current(state: &AppState, staff_no: &str) -> ApiResult<Option<StaffRecord>> {
    if let Some(r) = state.cache.staff(staff_no)? {
        return Ok(Some(r));
    }
    let directory = state.directory.get();
    let Some(c) = directory
        .configured()
        .find(|c| c.staff_no == staff_no)
        .cloned()
    else {
        return Ok(None);
    };
    let pin_hash = match &c.pin {
        PinCheck::Argon2(h) => h.clone(),
        // Development configs: the plain PIN becomes a peppered hash.
        PinCheck::Plain(secret) => hash_pin(state, secret.0.clone()).await?,
    };
    Ok(Some(StaffRecord {
        staff_no: c.staff_no.clone(),
        name: c.name.clone(),
        role: c.role,
        pin_hash,
        active: true,
        version: 0,
        hq_pin_digest: None,
    }))
}

async fn hash_pin(state: &AppState, pin: String) -> ApiResult<String> {
    let _permit = state
        .pin_checks
        .acquire()
        .await
        .map_err(ApiError::internal)?;
    let keys = state.keys.clone();
    tokio::task::spawn_blocking(move || crate::security::pin::hash(&keys, &pin))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// An admin cannot lock themselves out: no removing or demoting oneself.
fn not_self(staff: &Staff, staff_no: &str, what: &str) -> ApiResult<()> {
    if staff.session.staff_no == staff_no {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "cannot_change_self",
            format!("an admin cannot {what} themselves; ask another admin"),
        ));
    }
    Ok(())
}

async fn put(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::StaffManage>,
    Path(staff_no): Path<String>,
    Json(req): Json<PutStaff>,
) -> ApiResult<Json<StaffView>> {
    if !valid_staff_no(&staff_no) {
        return Err(ApiError::bad_request(
            "invalid_staff_no",
            "a staff number is 1–16 letters, digits or '-'",
        ));
    }
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 32 {
        return Err(ApiError::bad_request(
            "invalid_name",
            "a name is 1–32 characters",
        ));
    }
    if req.role != staff.role() && staff.session.staff_no == staff_no {
        not_self(&staff, &staff_no, "change the role of")?;
    }
    let before = current(&state, &staff_no).await?.filter(|r| r.active);
    let pin_given = req.pin.is_some();
    // A kept PIN keeps the digest of the HQ hash it peppers (see `StaffRecord::hq_pin_digest`).
    let (pin_hash, hq_pin_digest) = match (req.pin, &before) {
        (Some(pin), _) if !valid_pin(&pin) => {
            return Err(ApiError::bad_request("invalid_pin", "a PIN is 4–8 digits"));
        }
        (Some(pin), _) => (hash_pin(&state, pin).await?, None),
        (None, Some(b)) => (b.pin_hash.clone(), b.hq_pin_digest.clone()),
        (None, None) => {
            return Err(ApiError::bad_request(
                "pin_required",
                "a new staff member needs a pin",
            ));
        }
    };
    let version = match state.cache.staff(&staff_no)? {
        Some(r) => r.version,
        None => 0,
    };
    let record = StaffRecord {
        staff_no,
        name: name.to_string(),
        role: req.role,
        pin_hash,
        active: true,
        version,
        hq_pin_digest,
    };
    match state
        .ledger
        .execute(
            staff.actor(),
            Command::PutStaff {
                record: Box::new(record),
                pin_given,
            },
        )
        .await?
    {
        Outcome::Staff { record, .. } => Ok(Json(view(&record))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn remove(
    State(state): State<AppState>,
    Can(staff, _): Can<gate::StaffManage>,
    Path(staff_no): Path<String>,
) -> ApiResult<StatusCode> {
    not_self(&staff, &staff_no, "remove")?;
    let Some(mut record) = current(&state, &staff_no).await?.filter(|r| r.active) else {
        return Err(not_found(&staff_no));
    };
    record.active = false;
    state
        .ledger
        .execute(
            staff.actor(),
            Command::PutStaff {
                record: Box::new(record),
                pin_given: false,
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
