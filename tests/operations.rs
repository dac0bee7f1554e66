//! Operating the box: `/metrics` in the Prometheus text format, `/healthz` with every part's
//! state.

mod common;

use common::*;
use serde_json::json;

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the text format parses")
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test]
async fn metrics_parse_and_count_what_was_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), &common::devices::printer_only("127.0.0.1:1"));
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let m = d.register(&t, "李雷", "13912340000", json!({})).await;
    let mut first = None;
    for i in 0..7 {
        let key = format!("sale-{i}");
        let body =
            json!({"member_id": m, "lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
        let (s, v) = d
            .send(reqwest::Method::POST, &t, "/v1/sales", &body, Some(&key))
            .await;
        assert_eq!(s, 201, "{v}");
        first.get_or_insert(v["id"].as_str().unwrap_or_default().to_string());
        // A retried request is answered again, not recorded again.
        let (s, _) = d
            .send(reqwest::Method::POST, &t, "/v1/sales", &body, Some(&key))
            .await;
        assert_eq!(s, 200);
    }
    let sale = first.unwrap();
    let (s, v) = d
        .post(
            &tm,
            &format!("/v1/sales/{sale}/refunds"),
            &json!({"reason": "退货"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(d.get(&t, "/v1/members?phone=13912340000").await.0, 200);
    assert_eq!(d.get(&t, "/v1/products/NOPE").await.0, 404);

    let text = d.text("", "/metrics").await;
    let s = scrape(&text);
    let recorded = d.sales_on(&t, &store_today().to_string()).await.len() as f64;
    assert_eq!(recorded, 7.0);
    assert_eq!(
        value(&s, "storebox_sales_total", &[]),
        Some(recorded),
        "{text}"
    );
    assert_eq!(value(&s, "storebox_refunds_total", &[]), Some(1.0));
    assert_eq!(
        value(&s, "storebox_member_registrations_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "storebox_members_cached", &[]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&s, "storebox_member_lookups_total", &[("by", "phone")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "storebox_errors_total", &[("code", "unknown_product")]).or(value(
            &s,
            "storebox_errors_total",
            &[("code", "product_not_found")]
        )),
        Some(1.0),
        "{text}"
    );
    // Every committed batch waited for its fsync.
    let commit = value(
        &s,
        "storebox_ledger_phase_seconds_total",
        &[("phase", "commit")],
    );
    assert!(commit.is_some_and(|c| c > 0.0), "{text}");
    let last = d.health().await["journal"]["last_seq"].as_f64().unwrap();
    assert_eq!(value(&s, "storebox_journal_last_seq", &[]), Some(last));
    assert_eq!(
        value(&s, "storebox_outbox_backlog", &[]),
        Some(last),
        "nothing acknowledged"
    );
    assert!(value(&s, "storebox_outbox_oldest_age_seconds", &[]).is_some());
    assert_eq!(
        value(
            &s,
            "storebox_device_up",
            &[("device", "printer-1"), ("state", "ready")]
        ),
        Some(0.0)
    );
    assert!(value(&s, "storebox_disk_free_bytes", &[]).unwrap_or(0.0) > 0.0);
    // A box with nothing wrong: each trouble `/healthz` could list is at 0, by name.
    for trouble in [
        "storebox_outbox_alarm",
        "storebox_disk_low",
        "storebox_backup_failing",
        "storebox_clock_not_set",
        "storebox_cache_damaged",
        "storebox_cache_failing",
    ] {
        assert_eq!(value(&s, trouble, &[]), Some(0.0), "{trouble}\n{text}");
    }
    // Latency histograms by route pattern, never by raw path.
    let sales_count = s.samples.iter().find(|x| {
        x.metric == "storebox_http_request_duration_seconds"
            && x.labels.get("route") == Some("/v1/sales")
            && x.labels.get("method") == Some("POST")
    });
    match sales_count.map(|x| &x.value) {
        Some(prometheus_parse::Value::Histogram(h)) => {
            assert_eq!(h.last().map(|b| b.count), Some(14.0));
        }
        other => panic!("no histogram for POST /v1/sales: {other:?}\n{text}"),
    }
    assert!(!text.contains("13912340000") && !text.contains(&m));

    // Health: a printer that cannot be reached makes the store degraded, not failed.
    let h = d.health().await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["cache"]["readable"], true);
    assert!(h["cache"]["applied_seq"].as_u64().unwrap() > 0);
    assert!(h["disk"]["free_bytes"].as_u64().unwrap() > 0);
    assert_eq!(h["devices"][0]["id"], "printer-1");
    assert!(
        h["problems"][0].as_str().unwrap().contains("printer-1"),
        "{h}"
    );
    d.terminate();
}

#[tokio::test]
async fn sighup_reloads_staff_and_lockout_and_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    // A new cashier and another listen port are added to the file.
    let text = std::fs::read_to_string(&d.config).unwrap();
    let edited = text
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"")
        .replace(
            "[insight.automation]\nenabled = false",
            "[insight.automation]\nenabled = true",
        )
        + "\n[[staff]]\nstaff_no = \"1002\"\nname = \"新人\"\nrole = \"cashier\"\npin = \"1212\"\n";
    std::fs::write(&d.config, &edited).unwrap();
    d.hup();
    d.wait_log("config reloaded", 1);
    assert!(d.log_text().contains("need a restart"), "{}", d.log_text());
    d.login(("1002", "1212")).await;

    // A broken file changes nothing.
    std::fs::write(&d.config, edited.replace("[store]", "[store\n")).unwrap();
    d.hup();
    d.wait_log("config reload refused", 1);
    d.login(("1002", "1212")).await;

    let admin = d.login(ADMIN).await;
    let (_, v) = d.get(&admin, "/v1/audit?limit=1000").await;
    let reloads: Vec<&serde_json::Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "config.reload")
        .collect();
    assert_eq!(reloads.len(), 2, "{v}");
    assert_eq!(reloads[0]["detail"]["ok"], true);
    assert_eq!(
        reloads[0]["detail"]["needs_restart"],
        json!(["http", "insight"]),
        "{v}"
    );
    assert_eq!(reloads[1]["detail"]["ok"], false);
    d.terminate();
}
