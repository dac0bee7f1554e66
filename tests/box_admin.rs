//! What the IT person does on a box, with the real binary: offline commands run as root (the
//! store key is root's) beside a daemon that runs as the data directory's owner (`storebox`
//! under systemd, here `nobody`), and a daemon restarted by systemd while it cannot listen.
//!
//! The root tests skip with the reason when not run as root, except under `CI=true` (as
//! tests/package.rs does with its tools), where they fail.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// The user the daemon runs as in these tests (`nobody`).
const DAEMON_UID: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    let reason = "needs root (to run offline commands as root beside a daemon run as nobody)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}; CI runs as root");
    }
    eprintln!("skipping: {reason}");
    false
}

/// A box: `dir` readable by the daemon's user, the data directory its own (as systemd's
/// `StateDirectory=` makes it), a development config (the key is made in the data directory).
fn new_box() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::os::unix::fs::chown(&data, Some(DAEMON_UID), Some(DAEMON_UID)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&data, "")).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    (dir, data, config)
}

/// Starts the daemon as [`DAEMON_UID`]; returns it once it listens, or its log if it exits.
fn start_as_owner(config: &Path) -> Result<(Child, String), String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY")
        .uid(DAEMON_UID)
        .gid(DAEMON_UID)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut log = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("listening on http") {
            return Ok((child, log));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(log)
}

fn stop(mut child: Child) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Entries of `data` not owned by the daemon's user.
fn not_the_owners(data: &Path) -> Vec<String> {
    std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.metadata().unwrap().uid() != DAEMON_UID)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// After an upgrade the cache of the older storebox (another layout) is rebuilt by whatever
/// opens the store first; when that is `storebox members import`, run as root, the new cache
/// file was root's and the daemon, running as `storebox`, could not start ("attempt to write
/// a readonly database") until someone chowned it by hand.
#[test]
fn an_import_run_as_root_leaves_files_the_daemon_can_open() {
    if !is_root() {
        return;
    }
    let (_dir, data, config) = new_box();
    let (daemon, _) = start_as_owner(&config).unwrap_or_else(|log| panic!("first start:\n{log}"));
    stop(daemon);
    // The cache as an older storebox left it.
    let cache = rusqlite::Connection::open(data.join("cache.sqlite3")).unwrap();
    cache
        .execute("UPDATE meta SET value = '6' WHERE key = 'layout'", [])
        .unwrap();
    drop(cache);
    let csv = data.parent().unwrap().join("members.csv");
    std::fs::write(&csv, "name,phone\n张三,13800138000\n李四,13900139000\n").unwrap();
    common::import_members(&config, &csv);
    assert_eq!(not_the_owners(&data), Vec::<String>::new());
    let (daemon, log) =
        start_as_owner(&config).unwrap_or_else(|log| panic!("start after the import:\n{log}"));
    assert!(!log.contains("ERROR"), "{log}");
    stop(daemon);
}

/// `storebox backup` (as root) works on a copy in the data directory; one killed half-way
/// left a copy (a whole journal) the daemon could neither open nor remove, though its start
/// and its scheduled backups are to remove it: it stayed, unreported, until a backup was run
/// by hand again.
#[test]
fn the_copy_a_killed_root_backup_left_is_removed_by_the_daemon() {
    if !is_root() {
        return;
    }
    let (dir, data, config) = new_box();
    let (daemon, _) = start_as_owner(&config).unwrap_or_else(|log| panic!("first start:\n{log}"));
    stop(daemon);
    // The backup blocks on opening its output (a FIFO nobody reads) after the copy is made.
    let out = dir.path().join("b.sbk");
    let fifo = std::ffi::CString::new(dir.path().join("b.partial").to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let mut backup = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["backup", "--config"])
        .arg(&config)
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let copy = || {
        std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".backup-"))
            .collect::<Vec<_>>()
    };
    // Blocked opening the FIFO: the copy is whole.
    let wchan = format!("/proc/{}/wchan", backup.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&wchan).unwrap_or_default() != "wait_for_partner" {
        assert!(
            Instant::now() < deadline,
            "the backup never reached its output"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    backup.kill().unwrap();
    backup.wait().unwrap();
    assert_eq!(copy().len(), 1, "the killed backup left its copy");
    let (daemon, log) =
        start_as_owner(&config).unwrap_or_else(|log| panic!("start after the backup:\n{log}"));
    stop(daemon);
    assert_eq!(copy(), Vec::<String>::new(), "{log}");
    assert!(
        log.contains("removed the copy an interrupted backup left"),
        "{log}"
    );
}

fn events(data: &Path) -> i64 {
    rusqlite::Connection::open(data.join("journal.sqlite3"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}

/// Under systemd a daemon that cannot listen (the port taken, `http.listen` naming a LAN
/// address not up yet) exits and is started again every 5 s, for ever. Each start recorded a
/// `config.load` audit entry in the journal (an event for HQ) before it tried to listen:
/// 17,280 a day.
#[test]
fn a_start_that_cannot_listen_journals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(dir.path(), "");
    assert_eq!(daemon.terminate(), Some(0));
    let data = dir.path().join("data");
    let before = events(&data);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = dir.path().join("taken.toml");
    std::fs::write(
        &config,
        config_text(&data, "").replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
    for _ in 0..3 {
        let out = storebox(&["run", "--config", config.to_str().unwrap()]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("listening on 127.0.0.1"), "{said}");
    }
    assert_eq!(events(&data), before, "failed starts were journaled");
    drop(taken);
}
