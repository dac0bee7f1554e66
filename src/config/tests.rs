use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

const MINIMAL: &str = r#"
[store]
id = "sh-001"
name = "测试店"
environment = "development"
"#;

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let result = Config::load(&path);
        if name.starts_with("invalid-") {
            assert!(result.is_err(), "{name} should be rejected");
        } else {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn minimal_config_takes_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.store.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.membership, crate::domain::rules::Rules::default());
    assert_eq!(c.storage.idempotency_days, 30);
}

#[test]
fn errors_name_the_key_and_reason() {
    let e = parse(&format!("{MINIMAL}\n[http]\nlisten = \"nowhere\"\n")).unwrap_err();
    assert_eq!(e.key, "http.listen");
    assert!(e.to_string().starts_with("test.toml: http.listen: "), "{e}");

    let e = parse(&MINIMAL.replace("[store]", "[store]\ncolour = \"red\"")).unwrap_err();
    assert_eq!(e.key, "store.colour");
    assert!(e.reason.contains("unknown field `colour`"), "{e}");
    assert!(e.reason.contains("line 3"), "{e}");

    let e = parse(&MINIMAL.replace("sh-001", "SH/001")).unwrap_err();
    assert_eq!(e.key, "store.id");

    let e = parse(&format!(
        "{MINIMAL}\n[[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"boss\"\npin = \"1234\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "staff[0].role");

    // Two terminals with one token: whose logins would they be?
    let e = parse(&format!(
        "{MINIMAL}\n[[terminals]]\nid = \"pos-1\"\ntoken = \"a-token-of-16-chars\"\n\
         [[terminals]]\nid = \"pos-2\"\ntoken = \"a-token-of-16-chars\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "terminals[1].token");
    assert!(e.reason.contains("pos-1"), "{e}");

    // A broker on port 0 would be dialled for ever.
    let e = parse(&format!(
        "{MINIMAL}\n[uplink]\nenabled = true\nhost = \"hq\"\nport = 0\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "uplink.port");
    // 0 meant "off" to whoever wrote it; the daemon took it as 1 without a word.
    for key in ["outbox_alarm", "healthy_after_secs"] {
        let e = parse(&format!(
            "{MINIMAL}\n[uplink]\nenabled = true\nhost = \"hq\"\n{key} = 0\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, format!("uplink.{key}"), "{e}");
    }

    let e = parse("[store\nid=").unwrap_err();
    assert_eq!(e.key, "");
    assert!(e.reason.contains("line 1"), "{e}");
}

#[test]
fn production_refuses_plain_secrets() {
    let prod = MINIMAL.replace(
        "environment = \"development\"",
        "environment = \"production\"",
    );
    let e = parse(&format!(
        "{prod}\n[[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"cashier\"\npin = \"1234\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "staff[0].pin");
    let e = parse(&format!(
        "{prod}\n[[terminals]]\nid = \"pos-1\"\ntoken = \"0123456789abcdef\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "terminals[0].token");
    let ok = parse(&format!(
        "{prod}\n[[terminals]]\nid = \"pos-1\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(token_hash("0123456789abcdef"))
    ))
    .unwrap();
    assert_eq!(ok.terminals[0].token_sha256, token_hash("0123456789abcdef"));
}

#[test]
fn membership_levels_are_validated() {
    let e = parse(&format!(
        "{MINIMAL}\n[membership]\nmax_redeem_percent = 150\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "membership.max_redeem_percent");
    let e = parse(&format!(
        "{MINIMAL}\n[[membership.levels]]\ncode = \"a\"\nname = \"A\"\nthreshold = 500\npoints_per_yuan = 1\n[[membership.levels]]\ncode = \"b\"\nname = \"B\"\nthreshold = 100\npoints_per_yuan = 1\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "membership");
    assert!(e.reason.contains("thresholds must increase"), "{e}");
}

#[test]
fn secrets_do_not_print() {
    let c = parse(&format!(
        "{MINIMAL}\n[[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"cashier\"\npin = \"4321\"\n"
    ))
    .unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("4321"), "{dump}");
    assert!(dump.contains("MASKED"));
}

/// A self-signed certificate for `localhost` and 127.0.0.1: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// MINIMAL plus `[http.tls]` naming `cert` and `key`.
fn with_tls(cert: &Path, key: &Path) -> String {
    format!(
        "{MINIMAL}\n[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[test]
fn http_tls_loads_a_matching_pair() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    // A chain: the store's certificate first, then another (an intermediate, say).
    let (other, _) = self_signed();
    std::fs::write(dir.path().join("cert.pem"), format!("{cert}{other}")).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let c = parse(&with_tls(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
    ))
    .unwrap();
    let tls = c.http.tls.expect("[http.tls] is set");
    assert_eq!(tls.certified.cert.len(), 2);
    assert_eq!(tls.key_file, dir.path().join("key.pem"));
    // No TLS unless asked for.
    assert!(parse(MINIMAL).unwrap().http.tls.is_none());
}

#[test]
fn http_tls_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let missing = dir.path().join("missing.pem");

    let e = parse(&with_tls(&missing, &dir.path().join("key.pem"))).unwrap_err();
    assert_eq!(e.key, "http.tls.cert_file");
    assert!(
        e.reason
            .starts_with(&format!("cannot read {}: ", missing.display())),
        "{e}"
    );

    let e = parse(&with_tls(&dir.path().join("cert.pem"), &missing)).unwrap_err();
    assert_eq!(e.key, "http.tls.key_file");
    assert!(e.reason.contains("cannot read"), "{e}");

    let e = parse(&format!(
        "{MINIMAL}\n[http.tls]\ncert_file = \"{}\"\n",
        dir.path().join("cert.pem").display()
    ))
    .unwrap_err();
    assert_eq!(e.key, "http.tls");
    assert!(e.reason.contains("key_file"), "{e}");
}

#[test]
fn http_tls_rejects_garbage_pem() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let good_cert = dir.path().join("cert.pem");
    let good_key = dir.path().join("key.pem");
    std::fs::write(&good_cert, &cert).unwrap();
    std::fs::write(&good_key, &key).unwrap();
    let text = dir.path().join("text.pem");
    std::fs::write(&text, "this is not PEM at all\n").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_der = dir.path().join("not-der.pem");
    std::fs::write(
        &not_der,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    let e = parse(&with_tls(&text, &good_key)).unwrap_err();
    assert_eq!(e.key, "http.tls.cert_file");
    assert!(e.reason.starts_with("no certificate found in "), "{e}");

    let e = parse(&with_tls(&broken, &good_key)).unwrap_err();
    assert_eq!(e.key, "http.tls.cert_file");
    assert!(e.reason.contains("is not valid PEM"), "{e}");

    let e = parse(&with_tls(&not_der, &good_key)).unwrap_err();
    assert_eq!(e.key, "http.tls.cert_file");
    assert!(e.reason.starts_with("bad certificate in "), "{e}");

    let e = parse(&with_tls(&good_cert, &text)).unwrap_err();
    assert_eq!(e.key, "http.tls.key_file");
    assert!(e.reason.starts_with("no private key found in "), "{e}");

    // A key with a passphrase (`openssl req` without `-nodes`).
    let encrypted = dir.path().join("encrypted.pem");
    std::fs::write(
        &encrypted,
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = parse(&with_tls(&good_cert, &encrypted)).unwrap_err();
    assert_eq!(e.key, "http.tls.key_file");
    assert!(e.reason.contains("is encrypted"), "{e}");
    // OpenSSL's legacy form (`openssl ec -aes256`): headers inside the PEM block.
    std::fs::write(
        &encrypted,
        "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\naGVsbG8gd29ybGQ=\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = parse(&with_tls(&good_cert, &encrypted)).unwrap_err();
    assert_eq!(e.key, "http.tls.key_file");
    assert!(e.reason.contains("is encrypted"), "{e}");

    // The files swapped: the certificate file holds no key.
    let e = parse(&with_tls(&good_cert, &good_cert)).unwrap_err();
    assert_eq!(e.key, "http.tls.key_file");
    assert!(e.reason.starts_with("no private key found in "), "{e}");
}

#[test]
fn http_tls_rejects_a_key_of_another_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _) = self_signed();
    let (_, other_key) = self_signed();
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), other_key).unwrap();
    let e = parse(&with_tls(
        &dir.path().join("cert.pem"),
        &dir.path().join("key.pem"),
    ))
    .unwrap_err();
    assert_eq!(e.key, "http.tls.key_file");
    assert!(
        e.reason.contains("does not belong to the certificate"),
        "{e}"
    );
}

#[test]
fn http_tls_refuses_unknown_keys() {
    let e = parse(&format!(
        "{MINIMAL}\n[http.tls]\ncert_file = \"a\"\nkey_file = \"b\"\nca_file = \"c\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "http.tls.ca_file");
    assert!(e.reason.contains("unknown field"), "{e}");
}

#[test]
fn security_and_backup_settings_are_checked() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.security.max_pin_failures, 5);
    assert_eq!(c.security.lockout, std::time::Duration::from_secs(900));
    assert!(c.backup.every.is_none(), "scheduled backups are opt-in");
    assert_eq!(c.key_path(), c.storage.dir.join("store.key"));
    for (text, key) in [
        (
            "[security]\nmax_pin_failures = 2\n",
            "security.max_pin_failures",
        ),
        (
            "[security]\nterminal_max_failures = 4\n",
            "security.terminal_max_failures",
        ),
        (
            "[security]\nlockout_seconds = 0\n",
            "security.lockout_seconds",
        ),
        ("[security]\nkey_file = \"\"\n", "security.key_file"),
        ("[backup]\nkeep = 0\n", "backup.keep"),
        ("[backup]\nevery_hours = 10000\n", "backup.every_hours"),
    ] {
        let e = parse(&format!("{MINIMAL}\n{text}")).unwrap_err();
        assert_eq!(e.key, key, "{e}");
    }
    let c = parse(&format!(
        "{MINIMAL}\n[security]\nkey_file = \"/srv/k\"\n[backup]\nevery_hours = 6\nkeep = 3\n"
    ))
    .unwrap();
    assert_eq!(c.key_path(), Path::new("/srv/k"));
    assert_eq!(
        c.backup.every,
        Some(std::time::Duration::from_secs(6 * 3600))
    );
    assert_eq!(c.backup.keep, 3);
}

#[test]
fn the_birthday_catch_up_window_is_checked() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.insight.automation.birthday_catch_up_days, 7);
    let with = |n: u32| {
        parse(&format!(
            "{MINIMAL}\n[insight.automation]\nbirthday_catch_up_days = {n}\n"
        ))
    };
    assert_eq!(
        with(14).unwrap().insight.automation.birthday_catch_up_days,
        14
    );
    for n in [0, 32] {
        let e = with(n).unwrap_err();
        assert_eq!(e.key, "insight.automation.birthday_catch_up_days", "{e}");
    }
    // A coupon issued 14 days ahead and valid 7 would end before the birthday.
    let ahead = "[insight.automation]\nbirthday_days_ahead = 14\nbirthday_valid_days";
    assert!(parse(&format!("{MINIMAL}\n{ahead} = 14\n")).is_ok());
    let e = parse(&format!("{MINIMAL}\n{ahead} = 7\n")).unwrap_err();
    assert_eq!(e.key, "insight.automation.birthday_valid_days", "{e}");
}

#[test]
fn a_generated_config_is_valid_production_config() {
    let (text, token, pin) = generate("gz-007", "广州\"天河\"店");
    let c = parse(&text).unwrap();
    assert_eq!(c.store.id, "gz-007");
    assert_eq!(c.store.name, "广州\"天河\"店");
    assert_eq!(c.store.environment, Environment::Production);
    assert_eq!(c.terminals[0].token_sha256, token_hash(&token));
    assert!(!text.contains(&token) && !text.contains(&format!("\"{pin}\"")));
    assert!(valid_pin(&pin));
}

// --- audit: configuration ---

/// README and DESIGN spell the rolling window `rolling_365d` (as does config/dev.toml).
#[test]
fn rolling_365d_is_accepted_as_documented() {
    let c = parse(&format!(
        "{MINIMAL}\n[membership]\nspend_window = \"rolling_365d\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.membership.spend_window,
        crate::domain::rules::SpendWindow::Rolling365d
    );
    // HQ's rules message goes through the same struct.
    let raw: RawMembership =
        serde_json::from_value(serde_json::json!({"spend_window": "rolling_365d"})).unwrap();
    let r = membership_from_raw(raw).unwrap();
    assert_eq!(
        r.spend_window,
        crate::domain::rules::SpendWindow::Rolling365d
    );
}

/// One barcode on two products: check-config said OK, the daemon then refused to start
/// ("starting the ledger: barcode … belongs to A1", no file or key).
#[test]
fn a_barcode_shared_by_two_products_is_refused() {
    let e = parse(&format!(
        "{MINIMAL}\n[[products]]\nsku = \"A1\"\nname = \"a\"\nprice = 1\nbarcodes = [\"690123\"]\n\
         [[products]]\nsku = \"B1\"\nname = \"b\"\nprice = 1\nbarcodes = [\"690123\"]\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "products[1].barcodes", "{e}");
    assert!(e.reason.contains("A1"), "{e}");
    // The same barcode twice on one product is harmless.
    parse(&format!(
        "{MINIMAL}\n[[products]]\nsku = \"A1\"\nname = \"a\"\nprice = 1\nbarcodes = [\"690123\", \"690123\"]\n"
    ))
    .unwrap();
}

/// A UPC-A on one product and its EAN-13 spelling on another: one code to the scanner and the
/// barcode index, so the ledger refused to seed the second (the daemon did not start) while
/// check-config said OK.
#[test]
fn a_barcode_and_its_other_gtin_spelling_on_two_products_are_refused() {
    for (a, b) in [
        ("036000291452", "0036000291452"),
        ("0036000291452", "036000291452"),
    ] {
        let e = parse(&format!(
            "{MINIMAL}\n[[products]]\nsku = \"A1\"\nname = \"a\"\nprice = 1\nbarcodes = [\"{a}\"]\n\
             [[products]]\nsku = \"B1\"\nname = \"b\"\nprice = 1\nbarcodes = [\"{b}\"]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "products[1].barcodes", "{e}");
        assert!(e.reason.contains("A1"), "{e}");
    }
    // Both spellings on one product are harmless.
    parse(&format!(
        "{MINIMAL}\n[[products]]\nsku = \"A1\"\nname = \"a\"\nprice = 1\nbarcodes = [\"036000291452\", \"0036000291452\"]\n"
    ))
    .unwrap();
}

/// A store name with a line break or a control character made `generate-config` print a file
/// that is not TOML.
#[test]
fn a_generated_config_survives_any_store_name() {
    for name in [
        "a\nb",
        "tab\there",
        "bell\u{7}",
        "del\u{7f}",
        "back\\slash \"q\"",
    ] {
        let (text, _, _) = generate("sh-001", name);
        let c = parse(&text).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(c.store.name, name);
    }
}

/// A printer on port 0 is dialled for ever (the uplink's port 0 is refused for that reason).
#[test]
fn a_printer_on_port_0_is_refused() {
    let e = parse(&format!(
        "{MINIMAL}\n[[terminals]]\nid = \"pos-1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n\
         [[devices]]\nid = \"p1\"\nkind = \"printer\"\nterminal = \"pos-1\"\ntransport = \"tcp\"\naddress = \"192.168.1.50:0\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "devices[0].address", "{e}");
}

/// Two devices on one serial port or one printer address fight over it: the second is
/// refused, naming the first. A printer header with an escape would reach the printer as a
/// command.
#[test]
fn devices_sharing_a_port_and_headers_with_control_characters_are_refused() {
    let terminal = "[[terminals]]\nid = \"pos-1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n";
    let device = |id: &str, kind: &str, transport: &str, at: &str| {
        let place = if transport == "tcp" {
            "address"
        } else {
            "path"
        };
        format!(
            "[[devices]]\nid = \"{id}\"\nkind = \"{kind}\"\nterminal = \"pos-1\"\n\
             transport = \"{transport}\"\n{place} = \"{at}\"\n"
        )
    };
    let shared = [
        (
            device("scan", "scanner", "serial", "/dev/ttyUSB0"),
            device("reader", "card_reader", "serial", "/dev/ttyUSB0"),
            "devices[1].path",
        ),
        (
            device("scan", "scanner", "serial", "/dev/ttyUSB0"),
            device("p1", "printer", "file", "/dev/ttyUSB0"),
            "devices[1].path",
        ),
    ];
    for (a, b, key) in shared {
        let e = parse(&format!("{MINIMAL}\n{terminal}{a}{b}")).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.reason.contains("scan"), "{e}");
    }
    // Different ports, and a path differing only in case, are different devices.
    let apart = format!(
        "{MINIMAL}\n{terminal}{}{}",
        device("scan", "scanner", "serial", "/dev/ttyUSB0"),
        device("reader", "card_reader", "serial", "/dev/ttyusb0"),
    );
    parse(&apart).unwrap();

    let printer = device("p1", "printer", "tcp", "192.168.1.50:9100");
    for header in ["\"\\u001bp\\u0000\"", "\"a\\tb\"", "\"x\\ny\""] {
        let e = parse(&format!(
            "{MINIMAL}\n{terminal}{printer}header_lines = [{header}]\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "devices[0].header_lines", "{header}: {e}");
    }
    parse(&format!(
        "{MINIMAL}\n{terminal}{printer}header_lines = [\"欢迎光临 Welcome\"]\n"
    ))
    .unwrap();
}

/// A port named twice, once by its `/dev/serial/by-id/` link: both devices opened it and each
/// read part of every scan. Said (check-config, the start's log), not refused: a by-id link
/// that points at another device's `ttyUSBn` after a boot numbered the ports anew must not
/// keep the till from starting. A link to another port, or one not there yet, says nothing.
#[test]
fn a_port_named_by_a_link_is_the_same_port() {
    let dir = tempfile::tempdir().unwrap();
    let (port, other) = (dir.path().join("ttyUSB0"), dir.path().join("ttyUSB1"));
    std::fs::write(&port, b"").unwrap();
    std::fs::write(&other, b"").unwrap();
    let link = dir.path().join("usb-Honeywell_1900-if00");
    std::os::unix::fs::symlink(&port, &link).unwrap();
    let config = |a: &Path, b: &Path| {
        format!(
            "{MINIMAL}\n[[terminals]]\nid = \"pos-1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n\
             [[devices]]\nid = \"scan\"\nkind = \"scanner\"\nterminal = \"pos-1\"\n\
             transport = \"serial\"\npath = \"{}\"\n\
             [[devices]]\nid = \"reader\"\nkind = \"card_reader\"\nterminal = \"pos-1\"\n\
             transport = \"serial\"\npath = \"{}\"\n",
            a.display(),
            b.display()
        )
    };
    let shared = parse(&config(&port, &link))
        .unwrap()
        .devices_sharing_a_port();
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert!(
        shared[0].contains("scan") && shared[0].contains("reader"),
        "{shared:?}"
    );
    for apart in [
        config(&other, &link),
        config(&dir.path().join("ttyUSB9"), &link),
    ] {
        let said = parse(&apart).unwrap().devices_sharing_a_port();
        assert!(said.is_empty(), "{said:?}");
    }
}

/// A production daemon reloaded (SIGHUP) with a file switched to development and plain
/// secrets put the plain PIN and token in force at once, though the environment itself
/// "needs a restart".
#[test]
fn a_reload_keeps_the_running_environments_rules() {
    let dev = format!(
        "{MINIMAL}\n[[terminals]]\nid = \"pos-1\"\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\n\
         [[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"admin\"\npin = \"1234\"\n"
    );
    let p = Path::new("test.toml");
    let e = Config::parse_for_reload(p, &dev, Environment::Production).unwrap_err();
    assert_eq!(e.key, "terminals[0].token", "{e}");
    assert!(e.reason.contains("at a restart"), "{e}");
    // The same file reloads into a development daemon.
    Config::parse_for_reload(p, &dev, Environment::Development).unwrap();
    // Switching to development without plain secrets reloads (the switch waits for a restart).
    let c = Config::parse_for_reload(p, MINIMAL, Environment::Production).unwrap();
    assert_eq!(c.store.environment, Environment::Development);
}

/// A reload (SIGHUP) reads the uplink's TLS files as `check-config` does, and refuses a
/// config naming one that is missing; a start takes it (see `Config::check_files`).
#[test]
fn a_reload_refuses_an_uplink_ca_that_is_missing() {
    let text = format!(
        "{MINIMAL}\n[uplink]\nenabled = true\nhost = \"hq\"\n[uplink.tls]\nca_file = \"/nonexistent/hq-ca.pem\"\n"
    );
    let p = Path::new("test.toml");
    let started = Config::parse(p, &text).unwrap();
    assert_eq!(started.check_files().unwrap_err().key, "uplink.tls.ca_file");
    let e = Config::parse_for_reload(p, &text, Environment::Development).unwrap_err();
    assert_eq!(e.key, "uplink.tls.ca_file", "{e}");
}
