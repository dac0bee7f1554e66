//! The packaged unit lets the service write one directory, `/var/lib/storebox`
//! (`ProtectSystem=strict`, `StateDirectory=storebox`). A production config whose data or
//! backup directory is elsewhere — a bigger disk at `/data`, a USB stick for the backups, or a
//! relative `./data`, which is `/data` under systemd — passed `check-config`, then the service
//! failed with "Read-only file system" on a file system that is not: `check-config` says so
//! beforehand, naming the key and the drop-in that allows it.

mod common;

fn production(dir: &std::path::Path, storage: &str, backup: &str) -> std::path::PathBuf {
    let out = common::storebox(&["generate-config", "--store-id", "sh-001", "--name", "店"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace("dir = \"/var/lib/storebox\"", storage)
        .replace("[backup]\n", &format!("[backup]\n{backup}"));
    let config = dir.join("storebox.toml");
    std::fs::write(&config, text).unwrap();
    config
}

fn warnings(config: &std::path::Path) -> String {
    let out = common::storebox(&["check-config", config.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    err
}

#[test]
fn check_config_says_when_the_unit_would_not_let_storebox_write_there() {
    let dir = tempfile::tempdir().unwrap();
    let config = production(dir.path(), "dir = \"/srv/storebox\"", "");
    let err = warnings(&config);
    assert!(
        err.contains("storage.dir") && err.contains("/var/lib/storebox"),
        "{err}"
    );
    assert!(err.contains("ReadWritePaths=/srv/storebox"), "{err}");

    let config = production(
        dir.path(),
        "dir = \"/var/lib/storebox\"",
        "dir = \"/media/usb/backups\"\n",
    );
    let err = warnings(&config);
    assert!(err.contains("backup.dir"), "{err}");
    assert!(!err.contains("storage.dir"), "{err}");

    let config = production(dir.path(), "dir = \"./data\"", "");
    let err = warnings(&config);
    assert!(
        err.contains("storage.dir") && err.contains("relative"),
        "{err}"
    );

    // Where the unit lets it write: nothing to say.
    let config = production(
        dir.path(),
        "dir = \"/var/lib/storebox\"",
        "dir = \"/var/lib/storebox/backups\"\n",
    );
    let err = warnings(&config);
    assert!(
        !err.contains("storage.dir") && !err.contains("backup.dir"),
        "{err}"
    );
}
