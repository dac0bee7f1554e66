//! Staff sessions through the real binary: their expiry, and what ends them — the config
//! file changing under them (reload or restart), an own PIN change — and what a failed login
//! writes down.

mod common;

use common::*;
use serde_json::{Value, json};

/// A session's expiry is in the store's time, as every time the API gives, and the
/// `Authorization` scheme's name is case-insensitive.
#[tokio::test]
async fn a_session_expires_in_store_time_and_bearer_is_any_case() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let r = d
        .client
        .post(d.url("/v1/sessions"))
        .bearer_auth(TERMINAL_TOKEN)
        .json(&json!({"staff_no": CASHIER.0, "pin": CASHIER.1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.unwrap();
    let expires = v["expires_at"].as_str().unwrap();
    assert!(expires.ends_with("+08:00"), "{expires}");
    let token = v["token"].as_str().unwrap();
    for (scheme, status) in [
        ("bearer", 200),
        ("BEARER", 200),
        ("Bearer", 200),
        ("Basic", 401),
    ] {
        let r = d
            .client
            .get(d.url("/v1/products/TEA"))
            .header("Authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{scheme}");
    }
    d.terminate();
}

/// The status of a request any staff member may make with `token`.
async fn works(d: &Daemon, token: String) -> u16 {
    d.get(&token, "/v1/products/TEA").await.0
}

/// Staff and terminals of the config file: a removal, another role, another PIN or another
/// token ends the sessions opened under the old entry — at a reload (SIGHUP) and at a start
/// after the file was edited — while sessions the change does not touch go on.
#[tokio::test]
async fn config_changes_end_the_sessions_they_no_longer_grant() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let manager = d.login(MANAGER).await;
    let cashier = d.login(CASHIER).await;
    let admin = d.login(ADMIN).await;
    let (_, v, _) = login_status(&d, POS2, "9001", "9999").await;
    let admin_on_pos2 = v["token"].as_str().unwrap().to_string();
    let id = d.register(&admin, "李四", "13900139000", json!({})).await;

    // The manager becomes a cashier, the cashier gets another PIN, pos-2 goes.
    let text = std::fs::read_to_string(&d.config).unwrap();
    let edited = text
        .replace("role = \"manager\"", "role = \"cashier\"")
        .replace("pin = \"1111\"", "pin = \"4321\"")
        .replace(
            "[[terminals]]\nid = \"pos-2\"\ntoken = \"test-terminal-token-0002\"\n",
            "",
        );
    assert_eq!(edited.matches("pos-2").count(), 0);
    std::fs::write(&d.config, &edited).unwrap();
    d.hup();
    d.wait_log("config reloaded", 1);
    let (s, v) = d.get(&manager, &format!("/v1/members/{id}")).await;
    assert_eq!(
        (s, code(&v)),
        (401, "invalid_token"),
        "a demoted manager's session still reads full phones: {v}"
    );
    assert_eq!(works(&d, cashier).await, 401, "the old PIN's session");
    assert_eq!(works(&d, admin_on_pos2).await, 401, "a removed terminal's");
    assert_eq!(works(&d, admin.clone()).await, 200, "an untouched session");
    let (s, v) = d
        .get(&d.login(MANAGER).await, &format!("/v1/members/{id}"))
        .await;
    assert_eq!((s, v["phone"].as_str()), (200, Some("139****9000")));
    let cashier = d.login(("1001", "4321")).await;
    let (_, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    let reload = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "config.reload")
        .cloned()
        .unwrap();
    assert_eq!(reload["detail"]["sessions_ended"], 3, "{reload}");

    // Stopped, the admin's PIN changes in the file: at the start their session is over, the
    // cashier's goes on.
    d.terminate();
    std::fs::write(
        dir.path().join("storebox.toml"),
        edited.replace("pin = \"9999\"", "pin = \"9090\""),
    )
    .unwrap();
    let d = Daemon::start_with(dir.path(), &dir.path().join("storebox.toml"));
    assert_eq!(
        works(&d, admin).await,
        401,
        "the old PIN's session, restarted"
    );
    assert_eq!(
        works(&d, cashier).await,
        200,
        "an untouched session, restarted"
    );
    d.terminate();
}

/// An admin managed over the API who changes their own PIN ends their sessions (a leaked
/// PIN's sessions with them); the audit log says it was a change, not a re-hash at login.
#[tokio::test]
async fn an_own_pin_change_ends_the_sessions_and_is_audited_as_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let admin = d.login(ADMIN).await;
    let (s, v) = put_staff(
        &d,
        &admin,
        "9001",
        json!({"name": "管理员", "role": "admin", "pin": "9999"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let first = d.login(ADMIN).await;
    let second = d.login(ADMIN).await;
    let (s, v) = put_staff(
        &d,
        &first,
        "9001",
        json!({"name": "管理员", "role": "admin", "pin": "9191"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = d.get(&second, "/v1/products/TEA").await;
    assert_eq!((s, code(&v)), (401, "invalid_token"), "the other session");
    let admin = d.login(("9001", "9191")).await;
    let (_, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == "9001" && e["action"].as_str().unwrap().starts_with("staff."))
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"staff.change"), "{actions:?}");
    assert!(!actions.contains(&"staff.pin_upgrade"), "{actions:?}");
    d.terminate();
}

/// A login with a staff number nobody has (a PIN typed into the wrong field, say) is audited
/// and logged without that number.
#[tokio::test]
async fn an_unknown_staff_number_is_not_written_down() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "860731", "1111").await;
    assert_eq!(s, 401);
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "1001", "0000").await;
    assert_eq!(s, 401);
    let admin = d.login(ADMIN).await;
    let (_, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    let failed: Vec<(&str, &str)> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login.failed")
        .map(|e| {
            (
                e["staff_no"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(failed, [("unknown", "unknown"), ("1001", "1001")]);
    assert!(!d.log_text().contains("860731"), "{}", d.log_text());
    d.terminate();
}
