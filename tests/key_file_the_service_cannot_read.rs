//! `[security] key_file = "/etc/storebox/store.key"` written out (the example config shows the
//! line): the key is root's, mode 0600, as `storebox init` makes it, and the service runs as
//! `storebox`. The start failed with "/etc/storebox/store.key: Permission denied (os error 13):
//! Permission denied (os error 13)" — the OS error twice, and not a word on the store key or
//! the credential the unit hands over when `key_file` is not set. Needs root (to run the
//! daemon as another user); skips otherwise, except under `CI=true`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

#[test]
fn a_store_key_the_daemon_cannot_read_is_named_with_what_to_do() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "needs root; CI runs as root"
        );
        eprintln!("skipping: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.path().join("store.key");
    // The data directory is the daemon's user's; the key file is named in the config.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    let config = dir.path().join("storebox.toml");
    let security = format!("[security]\nkey_file = \"{}\"\n", key.display());
    std::fs::write(&config, common::config_text(&data, &security)).unwrap();
    let out = common::storebox(&["init", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(&config)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store key"), "{err}");
    assert_eq!(err.matches("Permission denied").count(), 1, "{err}");
    assert!(
        err.contains("security.key_file") && err.contains("storebox.key"),
        "{err}"
    );
}
