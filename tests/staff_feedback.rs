//! Through the real binary: the feedback list's page starts with what is overdue, a reload
//! keeps naming what needs a restart, two admins removing each other leave an admin, an erased
//! member's feedback text is gone, feedback names a real staff member and a sane due day.

mod common;

use common::*;
use serde_json::{Value, json};

const SECOND_ADMIN: &str =
    "\n[[staff]]\nstaff_no = \"9002\"\nname = \"管理员二\"\nrole = \"admin\"\npin = \"9998\"\n";

/// An overdue complaint is listed first, whatever the page size, and `overdue` counts it.
#[tokio::test]
async fn the_feedback_page_starts_with_the_overdue_items() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let cashier = d.login(CASHIER).await;
    let manager = d.login(MANAGER).await;
    for _ in 0..3 {
        let (s, v) = d
            .post(
                &cashier,
                "/v1/feedback",
                &json!({"rating": 5, "text": "好", "category": "praise"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, late) = d
        .post(
            &cashier,
            "/v1/feedback",
            &json!({"rating": 1, "text": "坏", "category": "service", "due": "2020-01-01"}),
        )
        .await;
    assert_eq!(s, 201, "{late}");
    let (s, v) = d.get(&manager, "/v1/feedback?limit=2").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["items"][0]["id"], late["id"], "{v}");
    assert_eq!(v["overdue"], 1, "{v}");
    d.terminate();
}

/// Feedback about a staff member names one the store has, and its follow-up is due within
/// the coming year ("nobody" went into the staff report; a due day in year 262142 was taken).
#[tokio::test]
async fn feedback_names_a_real_staff_member_and_a_sane_due_day() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let cashier = d.login(CASHIER).await;
    let feedback = |extra: Value| {
        let mut body = json!({"rating": 2, "text": "慢", "category": "service"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (s, v) = d
        .post(
            &cashier,
            "/v1/feedback",
            &feedback(json!({"staff_no": "nobody"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("unknown_staff")),
        "{v}"
    );
    let (s, v) = d
        .post(
            &cashier,
            "/v1/feedback",
            &feedback(json!({"due": "9999-01-01"})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("invalid_due")),
        "{v}"
    );
    let (s, v) = d
        .post(
            &cashier,
            "/v1/feedback",
            &feedback(json!({"staff_no": "1001"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    d.terminate();
}

/// A change that needs a restart is named at every reload until the daemon restarts, not
/// only at the first.
#[tokio::test]
async fn a_second_reload_still_names_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let admin = d.login(ADMIN).await;
    let text = std::fs::read_to_string(&d.config).unwrap();
    let edited = text.replace("[http]\n", "[http]\nsession_hours = 8\n");
    assert_ne!(edited, text);
    std::fs::write(&d.config, &edited).unwrap();
    d.hup();
    d.wait_log("config reloaded", 1);
    d.hup();
    d.wait_log("config reloaded", 2);
    let (_, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    let reloads: Vec<&Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "config.reload")
        .collect();
    assert_eq!(reloads.len(), 2, "{v}");
    assert_eq!(reloads[0]["detail"]["needs_restart"], json!(["http"]));
    assert_eq!(
        reloads[1]["detail"]["needs_restart"],
        json!(["http"]),
        "the second reload forgot the change not in force: {}",
        reloads[1]
    );
    // Undone: nothing to restart for.
    std::fs::write(&d.config, &text).unwrap();
    d.hup();
    d.wait_log("config reloaded", 3);
    let (_, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    let last = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["action"] == "config.reload")
        .cloned()
        .unwrap();
    assert_eq!(last["detail"]["needs_restart"], json!([]), "{last}");
    d.terminate();
}

/// Two admins removing each other at once leave one admin, not none.
#[tokio::test]
async fn two_admins_removing_each_other_leave_an_admin() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), SECOND_ADMIN);
    let a = d.login(ADMIN).await;
    let (s, v, _) = login_status(&d, POS2, "9002", "9998").await;
    assert_eq!(s, 201, "{v}");
    let b = v["token"].as_str().unwrap().to_string();
    let del = |token: String, no: &'static str| {
        let client = d.client.clone();
        let url = d.url(&format!("/v1/staff/{no}"));
        tokio::spawn(async move {
            client
                .delete(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let (x, y) = (del(a, "9002"), del(b, "9001"));
    let (x, y) = (x.await.unwrap(), y.await.unwrap());
    let left = [
        login_status(&d, TERMINAL_TOKEN, "9001", "9999").await.0,
        login_status(&d, TERMINAL_TOKEN, "9002", "9998").await.0,
    ];
    assert!(
        left.contains(&201),
        "no admin can log in any more (removals answered {x} and {y})"
    );
    d.terminate();
}

/// What an erased member said is gone from the feedback list.
#[tokio::test]
async fn an_erased_member_s_feedback_text_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let cashier = d.login(CASHIER).await;
    let manager = d.login(MANAGER).await;
    let id = d.register(&cashier, "张三", "13812345678", json!({})).await;
    let (s, f) = d
        .post(
            &cashier,
            "/v1/feedback",
            &json!({"rating": 1, "text": "我是张三 13812345678", "category": "service", "member_id": id}),
        )
        .await;
    assert_eq!(s, 201, "{f}");
    let (s, _) = d.erase(&manager, &id).await;
    assert_eq!(s, 204);
    let (_, v) = d.get(&manager, "/v1/feedback?status=all").await;
    assert!(
        !v.to_string().contains("13812345678"),
        "an erased member's phone is still in their feedback: {v}"
    );
    d.terminate();
}
