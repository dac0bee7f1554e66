//! What `storebox init` sets up and the daemon checks at its start: a production box starts a
//! new journal only where `init` said so (a data directory with no journal — a data partition
//! that did not mount — is refused, not begun again at seq 1); the store key's mode and
//! fingerprint.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// A production config from `storebox generate-config`, with its data in `data`, its key in
/// `dir/store.key` and the HTTP server on a free port of 127.0.0.1.
fn production_config(dir: &Path, data: &Path) -> std::path::PathBuf {
    let out = storebox(&["generate-config", "--store-id", "sh-009", "--name", "新店"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace("0.0.0.0:8080", "127.0.0.1:0")
        .replace("/var/lib/storebox", data.to_str().unwrap())
        .replace(
            "[security]\n",
            &format!(
                "[security]\nkey_file = \"{}\"\n",
                dir.join("store.key").display()
            ),
        );
    assert!(text.contains("environment = \"production\""));
    let config = dir.join("storebox.toml");
    std::fs::write(&config, text).unwrap();
    config
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `storebox run`, which must refuse to start: its output. A daemon that starts is stopped and
/// fails the test (rather than hanging it).
fn run_refused(config: &str) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config", config])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the daemon started:\n{}", text(&out));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    text(&out)
}

#[tokio::test]
async fn a_production_box_begins_a_journal_only_where_init_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = production_config(dir.path(), &data);
    let c = config.to_str().unwrap();

    // The key exists (say, put there from HQ's escrow), the data directory is empty.
    let out = storebox(&["init", "--config", c]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_file(data.join(storebox::app::NEW_STORE)).unwrap();
    let err = run_refused(c);
    assert!(
        err.contains("holds no journal") && err.contains("storebox init"),
        "{err}"
    );
    assert!(
        !data.join("journal.sqlite3").exists(),
        "a refused start left a journal behind"
    );
    // Nor does an offline command begin one.
    let csv = dir.path().join("members.csv");
    std::fs::write(&csv, "name,phone\n张三,13800138000\n").unwrap();
    let out = storebox(&["members", "import", "--config", c, csv.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("holds no journal"), "{}", text(&out));

    // `storebox init` marks the directory as a new store's: the first start begins the
    // journal and takes the mark away.
    let out = storebox(&["init", "--config", c]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the first start begins"),
        "{}",
        text(&out)
    );
    let d = Daemon::start_with(dir.path(), &config);
    let (status, _) = d.get("", "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(d.terminate(), Some(0));
    assert!(data.join("journal.sqlite3").exists());
    assert!(!data.join(storebox::app::NEW_STORE).exists());
    let out = storebox(&["init", "--config", c]);
    assert!(text(&out).contains("is in place"), "{}", text(&out));

    // The partition does not mount: the same directory, empty again. Refused.
    let backup = dir.path().join("store.sbk");
    let out = storebox(&["backup", "--config", c, backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    for e in std::fs::read_dir(&data).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let err = run_refused(c);
    assert!(err.contains("holds no journal"), "{err}");

    // A restore into a directory init marked (the IT person followed the install steps on a
    // replacement box) is a restore into an empty directory, and leaves no mark.
    let out = storebox(&["init", "--config", c]);
    assert!(out.status.success(), "{}", text(&out));
    let out = storebox(&[
        "restore",
        "--config",
        c,
        "--hq-last-seq",
        "0",
        backup.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!data.join(storebox::app::NEW_STORE).exists());
    let d = Daemon::start_with(dir.path(), &config);
    assert_eq!(d.terminate(), Some(0));
}

/// The key `storebox init` makes is 0600; the daemon refuses one others can read, and one that
/// is not the key its data was written with.
#[test]
fn a_readable_or_wrong_key_stops_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    let data = dir.path().join("data");
    std::fs::write(&config, config_text(&data, "")).unwrap();
    let c = config.to_str().unwrap();
    let out = storebox(&["init", "--config", c]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = data.join("store.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = storebox(&["init", "--config", c]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("is in place"));

    // Run once so the data records the key.
    let d = Daemon::start_with(dir.path(), &config);
    d.terminate();

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = storebox(&["run", "--config", c]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("can be read by others") && err.contains("chmod 600"),
        "{err}"
    );

    // Another key: refused, naming both fingerprints.
    std::fs::remove_file(&key).unwrap();
    let other = dir.path().join("other.key");
    let other_config = dir.path().join("other.toml");
    std::fs::write(
        &other_config,
        config_text(
            &data,
            &format!("[security]\nkey_file = \"{}\"\n", other.display()),
        ),
    )
    .unwrap();
    assert!(
        storebox(&["init", "--config", other_config.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::copy(&other, &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = storebox(&["run", "--config", c]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not the key this data directory was written with"),
        "{err}"
    );
}
