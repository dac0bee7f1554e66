//! The name search at the length limit of a name: every name a member can be registered with
//! can be searched for, and a query longer than any name is refused.

mod common;

use common::{Daemon, MANAGER, code};
use serde_json::{Value, json};

/// `s` percent-encoded for a query string.
fn enc(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// A name of 50 characters, the most a name may have, is found by itself, also when lower-casing
/// makes some of its letters two characters (the Turkish `İ` becomes `i̇`), and also with its
/// inner spaces typed twice; 51 characters are refused as a query, as they are as a name.
#[tokio::test]
async fn a_name_of_the_longest_length_is_found_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(MANAGER).await;
    let names = [
        "张".repeat(50),
        "İ".repeat(50),
        format!("{} {}", "İ".repeat(24), "Ş".repeat(25)),
    ];
    for (i, name) in names.iter().enumerate() {
        let (s, v) = d
            .post(
                &t,
                "/v1/members",
                &json!({"name": name, "phone": format!("1390000{i:04}")}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        let id = v["id"].clone();
        for q in [name.clone(), name.replace(' ', "  ")] {
            let (s, v) = d.get(&t, &format!("/v1/members?q={}", enc(&q))).await;
            assert_eq!(s, 200, "{q}: {v}");
            let found: Vec<&Value> = v["members"].as_array().unwrap().iter().collect();
            assert_eq!(found.len(), 1, "{q}: {v}");
            assert_eq!(found[0]["id"], id, "{q}: {v}");
        }
    }
    for q in ["张".repeat(51), "İ".repeat(51)] {
        let (s, v) = d.get(&t, &format!("/v1/members?q={}", enc(&q))).await;
        assert_eq!((s, code(&v)), (400, "invalid_query"), "{q}: {v}");
    }
}
