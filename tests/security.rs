//! Staff and personal data, through the real binary: PIN lock-out, the audit chain and its
//! verification, staff administration. The permission matrix is in `permissions.rs`.

mod common;

use common::mqtt::{store_with_hq, wait_for};
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn the_sixth_pin_is_refused_even_when_right_until_the_lock_expires() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[security]\nlockout_seconds = 3\n");

    for i in 0..5 {
        let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "1001", "0000").await;
        assert_eq!(
            (s, code(&v)),
            (401, "invalid_credentials"),
            "attempt {i}: {v}"
        );
    }
    let (s, v, retry) = login_status(&d, TERMINAL_TOKEN, "1001", "1111").await;
    assert_eq!((s, code(&v)), (429, "staff_locked"), "{v}");
    let secs: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=3).contains(&secs), "{secs}");
    // Locked everywhere, not only on the terminal that guessed.
    let (s, _, _) = login_status(&d, POS2, "1001", "1111").await;
    assert_eq!(s, 429);
    // Other staff work on.
    d.login(MANAGER).await;

    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "1001", "1111").await;
    assert_eq!(s, 201, "after the lock: {v}");

    // A terminal trying many staff numbers is locked as a whole (20 by default).
    for i in 0..20 {
        let (s, _, _) = login_status(&d, POS2, &format!("77{i:02}"), "1234").await;
        assert_eq!(s, 401);
    }
    let (s, v, _) = login_status(&d, POS2, "2001", "2222").await;
    assert_eq!((s, code(&v)), (429, "terminal_locked"), "{v}");
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "2001", "2222").await;
    assert_eq!(s, 201, "the other terminal is not locked");

    // All of it is in the audit log.
    let admin = d.login(ADMIN).await;
    let (s, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{v}");
    let actions: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "login.failed").count(), 25);
    assert_eq!(actions.iter().filter(|a| **a == "login.refused").count(), 3);
    assert!(actions.contains(&"login"));
    assert!(actions.contains(&"config.load"));
    let log = d.log_text();
    d.terminate();
    // As a word of its own: a PIN inside a longer number (a timestamp, a duration) is not one.
    let leaked: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == "1111" || w == "2222")
        })
        .collect();
    assert!(leaked.is_empty(), "a PIN in the log: {leaked:?}");
}

/// Guesses sent all at once, each on its own connection: before an attempt was counted ahead
/// of its PIN check, every one of them passed the lock while the first were still being
/// checked, and each got its PIN checked.
#[tokio::test]
async fn logins_sent_at_once_get_no_more_pin_checks_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let pins: Vec<String> = (0..30).map(|i| format!("{:04}", 2000 + i)).collect();
    let answers = futures_util::future::join_all(
        pins.iter()
            .map(|pin| login_status(&d, TERMINAL_TOKEN, "1001", pin)),
    )
    .await;
    let count = |status: u16, want: &str| {
        answers
            .iter()
            .filter(|(s, v, _)| *s == status && code(v) == want)
            .count()
    };
    assert_eq!(
        (
            count(401, "invalid_credentials"),
            count(429, "staff_locked")
        ),
        (5, 25),
        "{answers:?}"
    );
    // Locked: the right PIN is refused too.
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "1001", "1111").await;
    assert_eq!((s, code(&v)), (429, "staff_locked"), "{v}");

    // A terminal's burst over many staff numbers stops at the terminal's limit (20), counting
    // the five above.
    let numbers: Vec<String> = (0..40).map(|i| format!("77{i:02}")).collect();
    let answers = futures_util::future::join_all(
        numbers
            .iter()
            .map(|no| login_status(&d, TERMINAL_TOKEN, no, "1234")),
    )
    .await;
    let wrong = answers.iter().filter(|(s, _, _)| *s == 401).count();
    let locked = answers
        .iter()
        .filter(|(s, v, _)| *s == 429 && code(v) == "terminal_locked")
        .count();
    assert_eq!((wrong, locked), (15, 25), "{answers:?}");
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, "2001", "2222").await;
    assert_eq!((s, code(&v)), (429, "terminal_locked"), "{v}");
    // Right PINs take their attempts back: another terminal's logins do not add up to a lock.
    for _ in 0..25 {
        let (s, v, _) = login_status(&d, POS2, "2001", "2222").await;
        assert_eq!(s, 201, "{v}");
    }
    d.terminate();
}

/// Someone at a terminal locks a manager's number with wrong PINs: an admin lets the manager in
/// at once by giving them a PIN (the same one typed again will do), not after the lock-out
/// time. Changing only their name unlocks nothing.
#[tokio::test]
async fn an_admin_unlocks_a_staff_number_by_giving_it_a_pin() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[security]\nlockout_seconds = 3600\n");
    let admin = d.login(ADMIN).await;
    for _ in 0..5 {
        let (s, _, _) = login_status(&d, POS2, MANAGER.0, "0000").await;
        assert_eq!(s, 401);
    }
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, MANAGER.0, MANAGER.1).await;
    assert_eq!((s, code(&v)), (429, "staff_locked"), "{v}");
    let (_, record) = d.get(&admin, &format!("/v1/staff/{}", MANAGER.0)).await;
    let (s, v) = put_staff(
        &d,
        &admin,
        MANAGER.0,
        json!({"name": "店长改名", "role": record["role"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, MANAGER.0, MANAGER.1).await;
    assert_eq!((s, code(&v)), (429, "staff_locked"), "a name change: {v}");
    let (s, v) = put_staff(
        &d,
        &admin,
        MANAGER.0,
        json!({"name": "店长改名", "role": record["role"], "pin": MANAGER.1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v, _) = login_status(&d, TERMINAL_TOKEN, MANAGER.0, MANAGER.1).await;
    assert_eq!(s, 201, "after the admin's PIN: {v}");
}

#[tokio::test]
async fn staff_managed_by_an_admin_log_in_and_removal_ends_their_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let admin = d.login(ADMIN).await;
    let (s, v) = put_staff(
        &d,
        &admin,
        "3001",
        json!({"name": "赵敏", "role": "cashier", "pin": "3030"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("pin").is_none() && v.get("pin_hash").is_none());
    let t = d.login(("3001", "3030")).await;
    let (s, _) = d.get(&t, "/v1/products/TEA").await;
    assert_eq!(s, 200);

    // An admin cannot remove themselves.
    let (s, v) = d
        .send(
            reqwest::Method::DELETE,
            &admin,
            "/v1/staff/9001",
            &Value::Null,
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (409, "cannot_change_self"));

    let (s, _) = d
        .send(
            reqwest::Method::DELETE,
            &admin,
            "/v1/staff/3001",
            &Value::Null,
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, v) = d.get(&t, "/v1/products/TEA").await;
    assert_eq!(
        (s, code(&v)),
        (401, "invalid_token"),
        "session survived removal"
    );
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "3001", "3030").await;
    assert_eq!(s, 401);

    // A config staff member removed over the API stays removed after a restart.
    let (s, _) = d
        .send(
            reqwest::Method::DELETE,
            &admin,
            "/v1/staff/1001",
            &Value::Null,
            None,
        )
        .await;
    assert_eq!(s, 204);
    d.terminate();
    let d = Daemon::start_in(dir.path(), "");
    let (s, _, _) = login_status(&d, TERMINAL_TOKEN, "1001", "1111").await;
    assert_eq!(s, 401);
    let admin = d.login(ADMIN).await;
    let (_, v) = d.get(&admin, "/v1/staff").await;
    let list = v.as_array().unwrap();
    assert!(
        list.iter()
            .any(|s| s["staff_no"] == "1001" && s["active"] == false),
        "{v}"
    );
    d.terminate();
}

#[tokio::test]
async fn a_tampered_audit_entry_is_named_by_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let tm = d.login(MANAGER).await;
    let (s, v) = d
        .sale(
            &tm,
            &json!({"lines": [{"sku": "TEA", "qty": 2}], "payments": cash(50000)}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let sale_id = v["sale"]["id"]
        .as_str()
        .or(v["id"].as_str())
        .unwrap()
        .to_string();
    let (s, v) = d
        .post(
            &tm,
            &format!("/v1/sales/{sale_id}/refunds"),
            &json!({"reason": "顾客退货"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = d
        .post(
            &tm,
            "/v1/stock/movements",
            &json!({"sku": "RICE", "delta": 10, "reason": "receive"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let admin = d.login(ADMIN).await;
    let (_, v) = d.get(&admin, "/v1/audit").await;
    let entries = v["entries"].as_array().unwrap().clone();
    let refund = entries
        .iter()
        .find(|e| e["action"] == "sale.refund")
        .expect("the refund is audited");
    assert_eq!(refund["target"], sale_id.as_str());
    assert_eq!(refund["staff_no"], "2001");
    assert!(entries.iter().any(|e| e["action"] == "stock.move"));
    let config = d.config.clone();
    d.terminate();

    let config = config.to_str().unwrap();
    let out = storebox(&["audit", "verify", "--config", config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    // Someone with the SQLite file makes the refund smaller.
    let n = refund["n"].as_u64().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    db.execute(
        "UPDATE audit SET detail = json_set(detail, '$.amount', 1) WHERE n = ?1",
        [n as i64],
    )
    .unwrap();
    drop(db);
    let out = storebox(&["audit", "verify", "--config", config]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("broken at entry {n} (sale.refund")),
        "{err}"
    );
}

/// A staff member pushed by HQ (a plain argon2id hash: HQ has no store's key) logs in; the
/// login replaces the hash by one peppered with the store key, which HQ hears of. HQ's later
/// changes hold: another role ends the open session, a removal ends every login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hq_staff_log_in_their_hash_is_peppered_and_hq_changes_still_hold() {
    use argon2::PasswordHasher;
    let dir = tempfile::tempdir().unwrap();
    let (_broker, hq, d) = store_with_hq(dir.path()).await;
    let admin = d.login(ADMIN).await;
    let hq_hash = argon2::Argon2::default()
        .hash_password(b"6006")
        .unwrap()
        .to_string();
    // Pushes the staff member, then waits until the store shows the push (logins sent before
    // it would count as wrong PINs).
    let push_as = |staff_no: &'static str,
                   name: &'static str,
                   role: &'static str,
                   active: bool,
                   version: u64| {
        let (d, hq, admin, hash) = (&d, &hq, &admin, &hq_hash);
        async move {
            hq.publish(
                "storebox/stores/sh-001/hq/staff",
                json!({"id": format!("s-{staff_no}-{version}"), "kind": "staff", "version": version, "items": [
                    {"staff_no": staff_no, "name": name, "role": role, "pin_hash": hash,
                     "active": active, "version": version}]}),
            )
            .await;
            for _ in 0..400 {
                let (s, v) = d.get(admin, &format!("/v1/staff/{staff_no}")).await;
                if s == 200 && v["name"] == name && v["role"] == role && v["active"] == active {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("HQ's staff version {version} never arrived");
        }
    };
    let push = |role, active, version| push_as("6001", "郭靖", role, active, version);
    let login = |pin: &'static str| {
        let d = &d;
        async move {
            let r = d
                .client
                .post(d.url("/v1/sessions"))
                .bearer_auth(TERMINAL_TOKEN)
                .json(&json!({"staff_no": "6001", "pin": pin}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    push("manager", true, 1).await;
    let (s, first) = login("6006").await;
    assert_eq!(
        (s, first["role"].as_str()),
        (201, Some("manager")),
        "{first}"
    );
    wait_for(10, "staff.changed with a peppered hash", || {
        hq.events().iter().any(|e| {
            e["kind"] == "staff.changed"
                && e["data"]["by"] != "hq"
                && e["data"]["record"]["staff_no"] == "6001"
                && e["data"]["record"]["pin_hash"] != json!(hq_hash)
        })
    })
    .await;
    // The unpeppered hash is kept nowhere (it could be tried against every PIN offline): the
    // event, which is also the journal's copy, holds only a digest of it.
    assert!(
        hq.events()
            .iter()
            .all(|e| !e.to_string().contains(hq_hash.as_str())),
        "HQ's unpeppered hash in an event"
    );
    // The peppered hash works, and the wrong PIN does not.
    assert_eq!(login("6006").await.0, 201);
    assert_eq!(login("6007").await.0, 401);
    let token = first["token"].as_str().unwrap();
    assert_eq!(d.get(token, "/v1/products/TEA").await.0, 200);

    // HQ renames them, sending its own hash of the same PIN again: the session holds, and the
    // PIN is not peppered a second time.
    push_as("6001", "郭靖 (店长)", "manager", true, 2).await;
    assert_eq!(d.get(token, "/v1/products/TEA").await.0, 200);
    assert_eq!(login("6006").await.0, 201);
    let peppered = || {
        hq.events()
            .iter()
            // The store's own (a login peppering), not its journal's copies of HQ's pushes.
            .filter(|e| {
                e["kind"] == "staff.changed"
                    && e["data"]["by"] != "hq"
                    && e["data"]["record"]["staff_no"] == "6001"
            })
            .count()
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(peppered(), 1);

    // HQ makes them a cashier (with its own hash of the same PIN): the manager's session ends;
    // a new login is a cashier's.
    push("cashier", true, 3).await;
    assert_eq!(d.get(token, "/v1/products/TEA").await.0, 401);
    let (s, v) = login("6006").await;
    assert_eq!((s, v["role"].as_str()), (201, Some("cashier")), "{v}");

    // HQ removes them: no login any more.
    push("cashier", false, 5).await;
    assert_eq!(login("6006").await.0, 401);

    // HQ takes over a manager of the config file and makes them a cashier: the session opened
    // with the config's record ends too.
    let config_manager = d.login(MANAGER).await;
    assert_eq!(d.get(&config_manager, "/v1/products/TEA").await.0, 200);
    push_as(MANAGER.0, "郭靖", "cashier", true, 1).await;
    assert_eq!(d.get(&config_manager, "/v1/products/TEA").await.0, 401);
    d.terminate();
}
