//! What the IT person installing storebox on many boxes sees: secrets on disk that every user
//! can read (warned by `check-config` and at start), a time zone whose sign is the reverse of
//! what it looks like, a journal from a newer storebox met by an older one, and an offline
//! command refused while the daemon runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, config_text, storebox};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory every user may enter (as `/etc/storebox` is), unlike a fresh temporary one.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    dir
}

/// A self-signed certificate and its key, written into `dir` as `name.pem` and `name-key.pem`.
fn cert_and_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_config_warns_about_secrets_every_user_can_read() {
    let dir = open_dir();
    let (cert, key) = cert_and_key(dir.path(), "https");
    let (client_cert, client_key) = cert_and_key(dir.path(), "client");
    let extra = format!(
        "\n[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\n\
         [uplink]\nenabled = false\nusername = \"sh-001\"\npassword = \"from-hq\"\n\n\
         [uplink.tls]\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        cert.display(),
        key.display(),
        client_cert.display(),
        client_cert.display(),
        client_key.display()
    );
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), &extra)).unwrap();
    let file = config.to_str().unwrap();

    // As `cp storebox.toml.example` and `openssl req` leave them: 0644.
    for f in [&config, &key, &client_key] {
        chmod(f, 0o644);
    }
    let out = storebox(&["check-config", file]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("warning: {file} can be read by every user"))
            && err.contains("uplink.password")
            && err.contains("staff PINs")
            && err.contains("chmod 640"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "warning: http.tls.key_file: the private key {} can be read by every user",
            key.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "warning: uplink.tls.client_key: the private key {} can be read by every user",
            client_key.display()
        )),
        "{err}"
    );

    // The modes the README gives: no warning.
    chmod(&config, 0o640);
    chmod(&key, 0o600);
    chmod(&client_key, 0o600);
    let out = storebox(&["check-config", file]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "", "no warning expected");

    // A store key others can read stops the daemon: check-config says so before.
    let store_key = dir.path().join("data/store.key");
    std::fs::create_dir_all(store_key.parent().unwrap()).unwrap();
    std::fs::write(&store_key, "storebox-key v1 x").unwrap();
    chmod(&store_key, 0o644);
    let out = storebox(&["check-config", file]);
    assert!(
        stderr(&out).contains("storebox will refuse to start; run `chmod 600"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_daemon_started_on_a_config_every_user_can_read_says_so() {
    let dir = open_dir();
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), "")).unwrap();
    chmod(&config, 0o644);
    let d = Daemon::start_with(dir.path(), &config);
    let log = d.log_text();
    assert!(
        log.contains("can be read by every user on this box (mode 0644), and it holds terminal tokens, staff PINs"),
        "{log}"
    );
    assert_eq!(d.terminate(), Some(0));
}

/// `Etc/GMT+8` reads as China's UTC+8 but is UTC−8 (the `Etc/` names reverse the sign): a
/// store given it would count its days, birthdays and reports sixteen hours off. Said by
/// `check-config` and at every start, not refused.
#[test]
fn an_etc_gmt_time_zone_is_said_with_its_real_offset() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    let text =
        config_text(&dir.path().join("data"), "").replace("\"Asia/Shanghai\"", "\"Etc/GMT+8\"");
    assert!(text.contains("Etc/GMT+8"), "{text}");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["check-config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = "warning: store.timezone: Etc/GMT+8 is UTC−8";
    assert!(stderr(&out).contains(said), "{}", stderr(&out));
    let d = Daemon::start_with(dir.path(), &config);
    let log = d.log_text();
    assert!(log.contains("Etc/GMT+8 is UTC−8"), "{log}");
    assert_eq!(d.terminate(), Some(0));
}

/// Runs `storebox run` on a config expected to fail at start; its exit code and output.
fn run_failing(config: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn an_older_storebox_on_a_newer_ones_journal_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let config = d.config.clone();
    assert_eq!(d.terminate(), Some(0));

    // An event of a kind a newer storebox (same journal schema) wrote.
    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    let seq: i64 = journal
        .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM events", [], |r| {
            r.get(0)
        })
        .unwrap();
    journal
        .execute(
            "INSERT INTO events (seq, id, kind, occurred_at, day, subject, data)
             VALUES (?1, '019aee00-0000-7000-8000-000000000001', 'member.visited',
                     '2026-12-07T10:00:00+08:00', '2026-12-07', 'm-1', '{\"member_id\":\"m-1\"}')",
            [seq],
        )
        .unwrap();
    drop(journal);
    // Lost with the newer storebox's cache: rebuilt from the journal.
    std::fs::remove_file(dir.path().join("data/cache.sqlite3")).unwrap();

    let (code, out) = run_failing(&config);
    assert_ne!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("event seq {seq}"))
            && out.contains("`member.visited` is an event kind this storebox")
            && out.contains("the journal was written by a newer storebox")
            && !out.contains("unknown variant"),
        "{out}"
    );
}

#[test]
fn restore_while_the_daemon_runs_says_to_stop_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let config = d.config.to_str().unwrap().to_string();
    let backup = dir.path().join("store.backup");
    let out = storebox(&["backup", "--config", &config, backup.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = storebox(&[
        "restore",
        "--config",
        &config,
        "--hq-last-seq",
        "0",
        backup.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("the daemon must be stopped for this (systemctl stop storebox)")
            && err.contains("another storebox is already running"),
        "{err}"
    );
    assert_eq!(d.terminate(), Some(0));
}

/// The commands' help says what the README's command list says.
#[test]
fn help_says_what_the_commands_do() {
    let help = |cmd: &str| {
        let out = storebox(&[cmd, "--help"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let generate = help("generate-config");
    assert!(
        generate.contains("standard error")
            && generate.contains("admin PIN")
            && !generate.contains("as a comment"),
        "{generate}"
    );
    let init = help("init");
    assert!(init.contains("new store"), "{init}");
    let check = help("check-config");
    assert!(check.contains("every user"), "{check}");
}
