//! What `journalctl -u storebox` shows an IT person after an upgrade or when a box misbehaves:
//! which storebox runs (the version), on which config and data directory, and what of it is
//! on — the uplink and its broker, devices, HTTPS, backups, the morning automation. A start
//! that fails says which version failed, before the failure. None of it holds a secret.

mod common;

use std::process::Command;

use common::*;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn line_with<'a>(log: &'a str, needle: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
}

#[test]
fn the_start_says_which_storebox_runs_on_what_and_what_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = broker.local_addr().unwrap().port();
    let extra = format!(
        "[uplink]\nenabled = true\nhost = \"127.0.0.1\"\nport = {port}\n\
         username = \"sh-001\"\npassword = \"uplink-pass-7c1e9\"\n\
         [backup]\nevery_hours = 24\n"
    );
    let d = Daemon::start_in(dir.path(), &extra);
    let log = d.log_text();
    let data = dir.path().join("data");
    let starting = line_with(&log, "starting");
    assert!(
        starting.contains(&format!("storebox {VERSION}")),
        "{starting}"
    );
    assert!(
        starting.contains(&d.config.display().to_string()),
        "{starting}"
    );
    assert!(starting.contains(&data.display().to_string()), "{starting}");
    let listening = line_with(&log, "listening on http://");
    for part in [
        format!("version={VERSION}"),
        format!("uplink=127.0.0.1:{port}"),
        "devices=0".to_string(),
        "backups=\"every 24 h\"".to_string(),
        "automation=\"off\"".to_string(),
    ] {
        assert!(listening.contains(&part), "no {part} in: {listening}");
    }
    d.terminate();
    // Nothing secret on the way: the uplink password, terminal tokens, PINs.
    let log = d_log(&dir);
    for secret in [
        "uplink-pass-7c1e9",
        TERMINAL_TOKEN,
        "test-terminal-token-0002",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// The log of a second, plain start of the store in `dir` (uplink and backups off).
fn d_log(dir: &tempfile::TempDir) -> String {
    let d = Daemon::start_in(dir.path(), "");
    let listening = line_with(&d.log_text(), "listening on http://").to_string();
    assert!(listening.contains("uplink=off"), "{listening}");
    assert!(listening.contains("backups=\"off\""), "{listening}");
    let log = d.log_text();
    d.terminate();
    log
}

/// After an upgrade the new binary's start fails (here: its port is taken): the log says
/// which version it was, and on what, before the error.
#[test]
fn a_start_that_fails_says_which_version_failed() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = write_config(dir.path(), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:0", &taken.local_addr().unwrap().to_string());
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stdout);
    let starting = line_with(&log, "starting");
    assert!(starting.contains(&format!("storebox {VERSION}")), "{log}");
    assert!(log.contains("Address already in use"), "{log}");

    // A config the new storebox refuses: the log says which version refused it, and why.
    std::fs::write(
        &config,
        config_text(&dir.path().join("data"), "[store]\ncolour = \"red\"\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let log = String::from_utf8_lossy(&out.stdout);
    let refused = line_with(&log, "ERROR");
    assert!(refused.contains(&format!("version={VERSION}")), "{log}");
    assert!(refused.contains("storebox.toml"), "{log}");
}
