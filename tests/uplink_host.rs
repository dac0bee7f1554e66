//! The broker's address as an IT person copies it from HQ's mail: a URL
//! (`mqtts://mqtt.hq.example.cn:8883`), a `host:port`, a stray space. Each is not a host
//! name: `check-config` refuses it naming `uplink.host`, and a daemon started on it sells on
//! (the till never waits for HQ) and says in its log which key is wrong, not only that a name
//! could not be looked up.

mod common;

use common::*;
use serde_json::json;

fn uplink(host: &str) -> String {
    format!("[uplink]\nenabled = true\nhost = \"{host}\"\nport = 1883\nreconnect_min_ms = 100\n")
}

#[test]
fn check_config_refuses_a_broker_url_or_host_and_port_in_uplink_host() {
    let dir = tempfile::tempdir().unwrap();
    for host in [
        "mqtts://mqtt.hq.example.cn:8883",
        "tcp://10.1.2.3",
        "mqtt.hq.example.cn:8883",
        "10.1.2.3:1883",
        " mqtt.hq.example.cn",
        "mqtt.hq.example.cn/",
        "[::1]",
    ] {
        let config = write_config(dir.path(), &uplink(host));
        let out = storebox(&["check-config", config.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{host:?} passed check-config: {err}"
        );
        assert!(
            err.contains("storebox.toml: uplink.host: "),
            "{host:?}: {err}"
        );
        assert!(err.contains("uplink.port"), "{host:?}: no hint: {err}");
    }
    // Names and addresses a broker has are taken, IPv6 ones too.
    for host in [
        "mqtt.hq.example.cn",
        "10.1.2.3",
        "::1",
        "fd00::5",
        "broker_1.local",
    ] {
        let config = write_config(dir.path(), &uplink(host));
        let out = storebox(&["check-config", config.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{host:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_given_a_broker_url_sells_and_says_which_key_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), &uplink("mqtts://mqtt.hq.example.cn:8883"));
    let t = d.login(CASHIER).await;
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    let (_, up) = d.get(&t, "/v1/uplink").await;
    assert_eq!(up["connected"], false, "{up}");
    d.wait_log("uplink connection lost", 1);
    let log = d.log_text();
    assert!(log.contains("uplink.host"), "{log}");
    // Every retry names the broker it tried.
    let lost = log
        .lines()
        .find(|l| l.contains("uplink connection lost"))
        .unwrap_or_default();
    assert!(lost.contains("mqtt.hq.example.cn"), "{lost}");
    d.terminate();
}
