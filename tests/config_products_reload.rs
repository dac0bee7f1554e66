//! `[[products]]` at a reload: the config only seeds SKUs the store does not know (dev.toml,
//! README "Configuration"), so a reload must not tell the IT person that a restart applies a
//! changed product the store already has — the restart changes nothing.

mod common;

use common::*;
use serde_json::json;

/// The `config.reload` audit entries, oldest first, once there are `n` (the entry is written
/// just after the log line).
async fn reloads(d: &Daemon, n: usize) -> Vec<serde_json::Value> {
    let admin = d.login(ADMIN).await;
    for _ in 0..100 {
        let (_, v) = d.get(&admin, "/v1/audit?limit=1000").await;
        let found: Vec<serde_json::Value> = v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "config.reload")
            .cloned()
            .collect();
        if found.len() >= n {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} config.reload entries");
}

#[tokio::test]
async fn a_reload_names_only_the_product_changes_a_restart_applies() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let text = std::fs::read_to_string(&d.config).unwrap();

    // A price changed for a product the store already has: not applied now, nor at a restart.
    let repriced = text.replace("price = 25000", "price = 26000");
    assert_ne!(repriced, text);
    std::fs::write(&d.config, &repriced).unwrap();
    d.hup();
    d.wait_log("config reloaded", 1);
    let r = reloads(&d, 1).await;
    assert_eq!(r[0]["detail"]["needs_restart"], json!([]), "{r:?}");
    assert_eq!(
        r[0]["detail"]["products_not_applied"],
        json!(["TEA"]),
        "{r:?}"
    );
    assert!(
        d.log_text()
            .contains("are not applied, now or at a restart"),
        "{}",
        d.log_text()
    );

    // A new SKU is recorded at the next start: that one needs a restart.
    let added = repriced + "\n[[products]]\nsku = \"SALT\"\nname = \"食盐\"\nprice = 300\n";
    std::fs::write(&d.config, &added).unwrap();
    d.hup();
    d.wait_log("config reloaded", 2);
    let r = reloads(&d, 2).await;
    assert_eq!(
        r[1]["detail"]["needs_restart"],
        json!(["products"]),
        "{r:?}"
    );
    assert_eq!(
        r[1]["detail"]["products_not_applied"],
        json!(["TEA"]),
        "{r:?}"
    );
    d.terminate();

    // What the restart does: the new SKU is there, the known one keeps the store's price.
    let config = dir.path().join("storebox.toml");
    let d = Daemon::start_with(dir.path(), &config);
    let cashier = d.login(CASHIER).await;
    let (status, salt) = d.get(&cashier, "/v1/products/SALT").await;
    assert_eq!(status, 200, "{salt}");
    let (_, tea) = d.get(&cashier, "/v1/products/TEA").await;
    assert_eq!(tea["price"], 25000, "{tea}");
    d.terminate();
}
