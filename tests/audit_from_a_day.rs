//! The audit log from a given day: an auditor looking into last week on a box that has run for
//! years had to page from the first entry ever written, a thousand at a time. `from=` starts at
//! the first entry of a store-local day.

mod common;

use common::{ADMIN, Daemon, MANAGER, libfaketime, start_faked, store_today};
use reqwest::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_starts_at_the_first_entry_of_the_day_asked_for() {
    let Some(lib) = libfaketime() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "");
    let today = store_today();
    // Price changes three days ago and today (each audited as `product.edit`).
    let d = start_faked(dir.path(), &config, lib, ("FAKETIME", "-3d"), &[]);
    let tm = d.login(MANAGER).await;
    for price in [1200, 1300] {
        let (s, v) = d
            .send(
                Method::PUT,
                &tm,
                "/v1/products/SNACK",
                &json!({"name": "薯片", "price": price}),
                None,
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    d.terminate();
    let d = Daemon::start_with(dir.path(), &config);
    let tm = d.login(MANAGER).await;
    let (s, v) = d
        .send(
            Method::PUT,
            &tm,
            "/v1/products/SNACK",
            &json!({"name": "薯片", "price": 1400}),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let admin = d.login(ADMIN).await;

    let day_of = |e: &serde_json::Value| e["at"].as_str().unwrap()[..10].to_string();
    let (s, all) = d.get(&admin, "/v1/audit?limit=1000").await;
    assert_eq!(s, 200, "{all}");
    let all = all["entries"].as_array().unwrap().clone();
    let first_today = all
        .iter()
        .find(|e| day_of(e) == today.to_string())
        .expect("an entry today");

    let (s, page) = d.get(&admin, &format!("/v1/audit?from={today}")).await;
    assert_eq!(s, 200, "{page}");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.first(), Some(first_today), "{page}");
    assert!(
        entries.iter().all(|e| day_of(e) == today.to_string()),
        "{page}"
    );
    assert!(
        entries.iter().any(|e| e["action"] == "product.edit"),
        "{page}"
    );
    // Three days ago: that day's two price changes of SNACK come first.
    let then = today - chrono::Duration::days(3);
    let (_, page) = d
        .get(&admin, &format!("/v1/audit?from={then}&limit=1000"))
        .await;
    let edits: Vec<_> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "product.edit" && e["target"] == "SNACK")
        .map(|e| (day_of(e), e["detail"].clone()))
        .collect();
    assert_eq!(edits.len(), 3, "{page}");
    assert_eq!(edits[0].0, then.to_string(), "{page}");
    // `after` goes on from a page; a later `from` than `after` wins; tomorrow has nothing.
    let (_, page) = d
        .get(&admin, &format!("/v1/audit?from={today}&after=0"))
        .await;
    assert_eq!(page["entries"][0], *first_today);
    let tomorrow = today + chrono::Duration::days(1);
    let (s, page) = d.get(&admin, &format!("/v1/audit?from={tomorrow}")).await;
    assert_eq!(s, 200);
    assert_eq!(page["entries"], json!([]), "{page}");
    assert!(page["next"].is_null(), "{page}");
    for bad in ["1999-12-31", "2026-13-01", "yesterday"] {
        let (s, v) = d.get(&admin, &format!("/v1/audit?from={bad}")).await;
        assert_eq!(s, 400, "{bad}: {v}");
    }
    d.terminate();
}
