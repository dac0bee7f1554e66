//! A full disk under the cache, on a real (tmpfs) filesystem: a cache write that fails after the
//! journal committed, an interrupted rebuild, an offline import. Needs root (to mount a small
//! tmpfs), as CI has; otherwise they skip and say so, except under `CI=true`, where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::json;

/// A small tmpfs mounted at a directory, unmounted when dropped.
struct SmallFs(PathBuf);

impl SmallFs {
    /// `None` (the test skips) when not root, but under `CI=true`, which runs as root.
    fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "tests/full_disk.rs mounts a small tmpfs and must run as root; CI runs as root"
            );
            eprintln!("skipping: tests/full_disk.rs mounts a small tmpfs and needs root");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs at {}: {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(SmallFs(at.to_path_buf()))
    }

    /// Fills the filesystem with `name` until the disk refuses more.
    fn fill(&self, name: &str) -> PathBuf {
        self.fill_leaving(name, 0)
    }

    /// Fills the filesystem with `name`, but for `kib` KiB.
    fn fill_leaving(&self, name: &str, kib: u64) -> PathBuf {
        use std::io::Write;
        let path = self.0.join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(kib * 1024)).unwrap();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A store whose cache (and its WAL) lives on a small filesystem of its own, through a symlink:
/// the journal can be written while the cache cannot.
fn store_with_cache_on(dir: &Path) -> Option<SmallFs> {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let fs = SmallFs::mount(&dir.join("cachefs"), "4m")?;
    std::os::unix::fs::symlink(fs.0.join("cache.sqlite3"), data.join("cache.sqlite3")).unwrap();
    Some(fs)
}

/// A read transaction on the cache: SQLite cannot restart the WAL from its start while it is
/// open, so each write needs new space.
fn hold_cache_snapshot(data: &Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open_with_flags(
        data.join("cache.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.execute_batch("BEGIN").unwrap();
    let _: i64 = c
        .query_row("SELECT COUNT(*) FROM meta", [], |r| r.get(0))
        .unwrap();
    c
}

/// After a cache write failed on a full disk, a command is not executed against the stale
/// cache: a second registration of the phone just registered is refused (503, nothing
/// recorded) rather than journaled as a second member with that phone. Once space is freed,
/// the cache catches up and the first member is found.
#[tokio::test]
async fn a_cache_left_behind_by_a_full_disk_is_caught_up_before_anything_is_decided_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = store_with_cache_on(dir.path()) else {
        return;
    };
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let snapshot = hold_cache_snapshot(&dir.path().join("data"));
    let filler = fs.fill("filler");
    let mut phone = None;
    let mut last = None;
    for n in 0..2000 {
        let p = format!("1380000{n:04}");
        let refused_before = d.log_text().matches("cannot start a batch").count();
        let (s, v) = d
            .post(
                &t,
                "/v1/members",
                &json!({"name": format!("会员{n}"), "phone": p}),
            )
            .await;
        if s == 201 {
            if d.log_text().contains("cache write after commit failed") {
                phone = Some(p);
                break;
            }
            last = Some(p);
            continue;
        }
        // The log is written beside the answers: what it says of this request may come a
        // little after the answer.
        match logged(&d, |log| {
            if log.contains("cache write after commit failed") {
                Some(true)
            } else if log.matches("cannot start a batch").count() > refused_before {
                Some(false)
            } else {
                None
            }
        })
        .await
        {
            // The last registration's cache write failed after its answer: that is the phone.
            Some(true) if s == 503 && last.is_some() => {
                phone = last;
                break;
            }
            // The disk filled up before a batch began rather than after its commit (where the
            // cache's write-ahead log needs its next page decides which): nothing was
            // recorded. Give back a page and go on until a commit's cache write is refused.
            Some(false) if s == 503 => {
                let len = std::fs::metadata(&filler).unwrap().len();
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&filler)
                    .unwrap();
                f.set_len(len.saturating_sub(4096)).unwrap();
            }
            _ => panic!("registration {n}: {s} {v}\n{}", d.log_text()),
        }
    }
    let phone = phone.expect("the cache never filled up");
    // Recorded, answered 201, but not in the cache: the same phone again.
    let (s, v) = d
        .post(&t, "/v1/members", &json!({"name": "重复", "phone": phone}))
        .await;
    assert_eq!(s, 503, "a second member with the phone: {v}");
    let h = d.health().await;
    assert!(
        h["problems"]
            .to_string()
            .contains("cache behind the journal"),
        "{h}"
    );
    drop(snapshot);
    std::fs::remove_file(filler).unwrap();
    let (s, v) = d
        .post(&t, "/v1/members", &json!({"name": "重复", "phone": phone}))
        .await;
    assert_eq!(s, 409, "{v}");
    let (s, v) = d.get(&t, &format!("/v1/members?phone={phone}")).await;
    assert_eq!(s, 200, "{v}");
    let found = v["members"].as_array().unwrap();
    assert_eq!(found.len(), 1, "{v}");
    assert_ne!(found[0]["name"], "重复", "{v}");
    let h = d.health().await;
    assert_eq!(h["cache"]["applied_seq"], h["journal"]["last_seq"], "{h}");
    assert!(!h["problems"].to_string().contains("cache behind"), "{h}");
    d.terminate();
}

/// What `seen` makes of the daemon's log, once it makes something of it, within a second.
async fn logged<T>(d: &Daemon, seen: impl Fn(&str) -> Option<T>) -> Option<T> {
    for _ in 0..20 {
        if let Some(t) = seen(&d.log_text()) {
            return Some(t);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    None
}

/// A rebuild (here: an import's bulk marker) that fails on a full disk after the old cache was
/// moved aside is taken up again at the next start: the cache is rebuilt, said so, and HQ is
/// asked for its data — not the new, empty file opened as if it were the cache.
#[tokio::test]
async fn a_rebuild_cut_short_by_a_full_disk_is_done_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = SmallFs::mount(&dir.path().join("data"), "8m") else {
        return;
    };
    let d = Daemon::start_in(dir.path(), "");
    let config = d.config.clone();
    d.terminate();
    let cache = rusqlite::Connection::open(fs.0.join("cache.sqlite3")).unwrap();
    cache
        .execute(
            "INSERT INTO meta (key, value) VALUES ('bulk_index', 'deferred')",
            [],
        )
        .unwrap();
    drop(cache);
    // Room to open the journal, not to create a new cache.
    let filler = fs.fill_leaving("filler", 64);
    let out = Command::new(env!("CARGO_BIN_EXE_storebox"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started on a full disk: {said}");
    assert!(said.contains("opening the cache"), "{said}");
    std::fs::remove_file(filler).unwrap();
    let d = Daemon::start_with(dir.path(), &config);
    let log = d.log_text();
    assert!(log.contains("cache rebuilt from the journal"), "{log}");
    assert!(
        !fs.0.join("cache.sqlite3-damaged").exists(),
        "marker left after the rebuild"
    );
    d.terminate();
    // HQ was asked for its data (a journaled request).
    let asked = common::cache_rebuilt_resyncs(&fs.0);
    assert_eq!(asked, 1);
}

/// An import whose cache writes fail on a full disk does not end as a success the cache does
/// not show, and its error says how many rows the journal holds; the next start brings them
/// into the cache.
#[tokio::test]
async fn an_import_on_a_full_disk_says_what_it_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = store_with_cache_on(dir.path()) else {
        return;
    };
    let d = Daemon::start_in(dir.path(), "");
    let config = d.config.clone();
    d.terminate();
    let csv = dir.path().join("members.csv");
    let mut text = String::from("name,phone\n");
    for n in 0..3000 {
        text.push_str(&format!("会员{n},1390000{n:04}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    // Room to open the cache, not to write the members.
    let filler = fs.fill_leaving("filler", 100);
    let out = storebox(&[
        "members",
        "import",
        "--config",
        config.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.contains("3000 rows were recorded (3000 added"),
        "{stdout}{stderr}"
    );
    std::fs::remove_file(filler).unwrap();
    let d = Daemon::start_with(dir.path(), &config);
    let t = d.login(CASHIER).await;
    for phone in ["13900000000", "13900002999"] {
        let (s, v) = d.get(&t, &format!("/v1/members?phone={phone}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(
            v["members"].as_array().map(Vec::len),
            Some(1),
            "{phone}: {v}"
        );
    }
    d.terminate();
}
