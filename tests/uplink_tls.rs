//! The uplink over TLS to a real Mosquitto: the broker's certificate checked against the CA
//! the config names, the store's client certificate presented; and a config whose TLS files
//! are missing or wrong refused by `check-config` with the key that names them.

mod common;

use std::path::{Path, PathBuf};

use common::mqtt::{Broker, Hq, kinds};
use common::{CASHIER, Daemon, cash, config_text, storebox};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

/// PEM files of a CA, a broker certificate for 127.0.0.1 and a client certificate, all in
/// `dir`.
struct Pki {
    ca: PathBuf,
    broker_cert: PathBuf,
    broker_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write(dir: &Path, name: &str, pem: String) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

fn pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "HQ test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    // Each its own subject: one equal to the CA's reads as self-issued to OpenSSL.
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names[0].as_str());
        let cert = params.signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (broker_cert, broker_key) = leaf(vec!["127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["sh-001".into()]);
    Pki {
        ca: write(dir, "ca.pem", ca.pem()),
        broker_cert: write(dir, "broker.pem", broker_cert),
        broker_key: write(dir, "broker-key.pem", broker_key),
        client_cert: write(dir, "client.pem", client_cert),
        client_key: write(dir, "client-key.pem", client_key),
    }
}

fn tls_uplink(port: u16, ca: &Path, cert: &Path, key: &Path) -> String {
    format!(
        "\n[uplink]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\nkeep_alive_secs = 5\n\
         reconnect_min_ms = 100\nreconnect_max_ms = 1000\n\n[uplink.tls]\nca_file = \"{}\"\n\
         client_cert = \"{}\"\nclient_key = \"{}\"\n",
        ca.display(),
        cert.display(),
        key.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_reaches_hq_over_tls_with_the_stores_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let broker = Broker::start_tls(dir.path(), &p.ca, &p.broker_cert, &p.broker_key);
    let hq = Hq::connect(broker.port, "sh-001").await;
    let uplink = tls_uplink(broker.tls_port(), &p.ca, &p.client_cert, &p.client_key);
    let d = Daemon::start_in(dir.path(), &uplink);
    let t = d.login(CASHIER).await;
    let (s, sale) = d
        .sale(
            &t,
            &json!({"lines": [{"sku": "TEA", "qty": 1}], "payments": cash(25000)}),
        )
        .await;
    assert_eq!(s, 201, "{sale}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !kinds(&hq.events()).contains(&"sale.recorded".to_string()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no sale.recorded over TLS; store log:\n{}\nbroker: {}",
            d.log_text(),
            broker.log_summary()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, up) = d.get(&t, "/v1/uplink").await;
    assert_eq!(up["connected"], true, "{up}");
    d.terminate();
}

#[test]
fn check_config_refuses_uplink_tls_files_that_are_missing_or_not_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let missing = dir.path().join("nowhere.pem");
    let cases = [
        // No CA file at all.
        (
            missing.clone(),
            p.client_cert.clone(),
            p.client_key.clone(),
            "uplink.tls.ca_file",
        ),
        // A private key where the CA should be: no certificate in it.
        (
            p.client_key.clone(),
            p.client_cert.clone(),
            p.client_key.clone(),
            "uplink.tls.ca_file",
        ),
        // The client key missing.
        (
            p.ca.clone(),
            p.client_cert.clone(),
            missing.clone(),
            "uplink.tls.client_key",
        ),
        // A key that is not the client certificate's.
        (
            p.ca.clone(),
            p.client_cert.clone(),
            p.broker_key.clone(),
            "uplink.tls.client_key",
        ),
        // A certificate file with no certificate in it.
        (
            p.ca.clone(),
            p.client_key.clone(),
            p.client_key.clone(),
            "uplink.tls.client_cert",
        ),
    ];
    for (i, (ca, cert, key, want)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("storebox-{i}.toml"));
        let text = config_text(&dir.path().join("data"), &tls_uplink(8883, ca, cert, key));
        std::fs::write(&file, text).unwrap();
        let out = storebox(&["check-config", file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "case {i} ({want}) passed check-config"
        );
        assert!(err.contains(want), "case {i}: {err}");
    }
    // The same files in their places pass.
    let file = dir.path().join("storebox-ok.toml");
    let uplink = tls_uplink(8883, &p.ca, &p.client_cert, &p.client_key);
    std::fs::write(&file, config_text(&dir.path().join("data"), &uplink)).unwrap();
    let out = storebox(&["check-config", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The till sells while the link to HQ is broken: a daemon whose uplink CA file is missing
/// starts, records sales, and reports the uplink down with the key that names the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_uplink_ca_stops_the_link_not_the_till() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path());
    let missing = dir.path().join("nowhere.pem");
    let uplink = tls_uplink(8883, &missing, &p.client_cert, &p.client_key);
    let d = Daemon::start_in(dir.path(), &uplink);
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
    assert_eq!(d.health().await["status"], "degraded");
    assert!(
        d.log_text().contains("uplink.tls.ca_file"),
        "{}",
        d.log_text()
    );
    d.terminate();
}
