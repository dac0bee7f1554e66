//! What a store's audit log and its staff records say after staff change over a year: a
//! removed staff member trying their number again, HQ adding, demoting and removing someone,
//! and HQ's removal holding after the cache is rebuilt from the journal.

mod common;

use common::mqtt::{Broker, Hq, store_with_hq};
use common::*;
use serde_json::{Value, json};

async fn audit_entries(d: &Daemon, admin: &str) -> Vec<Value> {
    let (s, v) = d.get(admin, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{v}");
    v["entries"].as_array().unwrap().clone()
}

/// A staff member an admin removed who tries their number again is written down by that
/// number, not as `unknown` (which is for numbers nobody has, a PIN typed in the wrong
/// field): the auditor looks for exactly these.
#[tokio::test]
async fn a_removed_staff_member_s_login_is_audited_under_their_number() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let admin = d.login(ADMIN).await;
    let (s, v) = d
        .send(
            reqwest::Method::DELETE,
            &admin,
            "/v1/staff/1001",
            &Value::Null,
            None,
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, CASHIER.0, CASHIER.1).await;
    assert_eq!(s, 401);
    let failed: Vec<(String, String)> = audit_entries(&d, &admin)
        .await
        .iter()
        .filter(|e| e["action"] == "login.failed")
        .map(|e| {
            (
                e["staff_no"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(failed, [("1001".to_string(), "1001".to_string())]);
    d.terminate();
}

/// Pushes a staff record as HQ and waits until the store shows it.
async fn push(d: &Daemon, hq: &Hq, admin: &str, hash: &str, role: &str, active: bool, v: u64) {
    hq.publish(
        "storebox/stores/sh-001/hq/staff",
        json!({"id": format!("s-{v}"), "kind": "staff", "version": v, "items": [
            {"staff_no": "6001", "name": "郭靖", "role": role, "pin_hash": hash,
             "active": active, "version": v}]}),
    )
    .await;
    for _ in 0..400 {
        let (s, r) = d.get(admin, "/v1/staff/6001").await;
        if s == 200 && r["role"] == role && r["active"] == active {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("HQ's staff version {v} never arrived");
}

fn hq_hash(pin: &[u8]) -> String {
    use argon2::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(pin)
        .unwrap()
        .to_string()
}

/// HQ adding, demoting and removing a staff member is in the store's audit log, as an admin's
/// change here is: an auditor who sees a manager's sessions end can tell who did it.
#[tokio::test]
async fn hq_s_staff_changes_are_in_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    hq.wait_online().await;
    let admin = d.login(ADMIN).await;
    let hash = hq_hash(b"6006");
    push(&d, &hq, &admin, &hash, "manager", true, 1).await;
    push(&d, &hq, &admin, &hash, "cashier", true, 2).await;
    push(&d, &hq, &admin, &hash, "cashier", false, 3).await;
    let staff: Vec<(String, String, Value)> = audit_entries(&d, &admin)
        .await
        .iter()
        .filter(|e| e["target"] == "6001" && e["action"].as_str().unwrap().starts_with("staff."))
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["detail"]["role"].as_str().unwrap_or("").to_string(),
                e["detail"]["by"].clone(),
            )
        })
        .collect();
    let hq_by = json!("hq");
    assert_eq!(
        staff,
        [
            (
                "staff.add".to_string(),
                "manager".to_string(),
                hq_by.clone()
            ),
            (
                "staff.change".to_string(),
                "cashier".to_string(),
                hq_by.clone()
            ),
            ("staff.remove".to_string(), "cashier".to_string(), hq_by),
        ]
    );
    d.terminate();
}

/// HQ removes a staff member who has logged in here (their PIN hash was peppered, which the
/// journal keeps as `staff.changed`). The cache is then rebuilt from the journal while HQ is
/// away: the removed staff member must not log in again with their old PIN.
#[tokio::test]
async fn hq_s_removal_holds_after_a_cache_rebuild_while_hq_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path());
    let hq = Hq::connect(broker.port, "sh-001").await;
    let config = write_config(dir.path(), &broker.uplink_config(""));
    let d = Daemon::start_with(dir.path(), &config);
    hq.wait_online().await;
    let admin = d.login(ADMIN).await;
    let hash = hq_hash(b"6006");
    push(&d, &hq, &admin, &hash, "manager", true, 1).await;
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "6001", "6006").await;
    assert_eq!(s, 201, "{v}");
    // The peppered hash reaches the journal (the login's own compare-and-set).
    for _ in 0..400 {
        let actions: Vec<Value> = audit_entries(&d, &admin)
            .await
            .iter()
            .map(|e| e["action"].clone())
            .collect();
        if actions.contains(&json!("staff.pin_upgrade")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    push(&d, &hq, &admin, &hash, "manager", false, 2).await;
    assert_eq!(
        login_status(&d, TERMINAL_TOKEN, "6001", "6006").await.0,
        401
    );
    d.terminate();

    // The cache goes; HQ is away while the store starts again.
    broker.stop();
    let data = dir.path().join("data");
    for f in ["cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let d = Daemon::start_with(dir.path(), &config);
    assert_eq!(cache_rebuilt_resyncs(&data), 1);
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "6001", "6006").await;
    assert_eq!(
        s, 401,
        "HQ removed 6001, yet after the rebuild they log in: {v}"
    );
    let admin = d.login(ADMIN).await;
    let (s, v) = d.get(&admin, "/v1/staff/6001").await;
    assert!(s == 404 || v["active"] == false, "{s} {v}");
    d.terminate();
}
