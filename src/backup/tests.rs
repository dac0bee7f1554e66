//! Tests of backups, restores and the schedule.

use super::leftovers::TEMP_LOCK;
use super::room::MIB;
use super::schedule::{prune, scheduled_files};
use super::*;

fn store(dir: &Path) -> (Config, StoreKeys) {
    let text = format!(
        "[store]\nid = \"sh-001\"\nname = \"店\"\nenvironment = \"development\"\n[storage]\ndir = \"{}\"\n",
        dir.display()
    );
    let config = Config::parse(Path::new("test.toml"), &text).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (keys, _) = StoreKeys::load_or_create(&config.key_path()).unwrap();
    (config, keys)
}

/// The files in `dir` but the lock every daemon and restore leaves.
fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n != "storebox.lock")
        .collect();
    n.sort();
    n
}

/// A new box in `root/new` for a restore: an empty data directory holding the store key
/// `key`.
fn new_box(root: &Path, key: impl AsRef<Path>) -> (PathBuf, Config, StoreKeys) {
    let dir = root.join("new");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(key, dir.join("store.key")).unwrap();
    let (config, keys) = store(&dir);
    (dir, config, keys)
}

/// A backup taken of `store`'s directory, in `root`.
fn a_backup(root: &Path) -> (PathBuf, PathBuf) {
    let (old, keys) = store(&root.join("old"));
    drop(Journal::open(&old.storage.dir, "sh-001").unwrap());
    let file = root.join("b.sbk");
    backup(&old, &keys, &file).unwrap();
    (file, old.key_path())
}

#[test]
fn a_restore_killed_half_way_is_named_not_taken_for_a_store() {
    let root = tempfile::tempdir().unwrap();
    let (file, key) = a_backup(root.path());
    let (new_dir, new, keys) = new_box(root.path(), key);
    restore(&new, &keys, &file, 0, false).unwrap();
    check_no_restore_under_way(&new_dir).unwrap();
    // As a restore killed between writing the files and settling them leaves it.
    std::fs::write(new_dir.join(RESTORING), b"").unwrap();
    let err = check_no_restore_under_way(&new_dir).unwrap_err();
    assert!(format!("{err}").contains("was interrupted"), "{err}");
    let err = restore(&new, &keys, &file, 0, false).unwrap_err();
    assert!(format!("{err}").contains("was interrupted"), "{err}");
}

#[test]
fn a_restore_is_refused_while_a_daemon_holds_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let (file, key) = a_backup(root.path());
    let (new_dir, new, keys) = new_box(root.path(), key);
    let daemon = crate::app::lock_data_dir(&new_dir).unwrap();
    let err = restore(&new, &keys, &file, 0, false).unwrap_err();
    assert!(format!("{err:#}").contains("already running"), "{err:#}");
    assert!(!new_dir.join(journal::FILE_NAME).exists());
    drop(daemon);
    restore(&new, &keys, &file, 0, false).unwrap();
}

#[test]
fn restored_files_belong_to_the_data_directorys_owner() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: giving files to another user takes root");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let (file, key) = a_backup(root.path());
    let (new_dir, new, keys) = new_box(root.path(), key);
    // The daemon's user (here `nobody`) owns the directory; root restores.
    std::os::unix::fs::chown(&new_dir, Some(65534), Some(65534)).unwrap();
    std::os::unix::fs::chown(new_dir.join("store.key"), Some(65534), Some(65534)).unwrap();
    restore(&new, &keys, &file, 0, false).unwrap();
    for entry in std::fs::read_dir(&new_dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{:?} left to root",
            entry.file_name()
        );
    }
}

#[test]
fn the_copy_of_a_killed_backup_is_removed_but_not_a_live_ones() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    // A backup killed half-way: its copy is there, its lock free (the kernel let go of it
    // with the process).
    let killed = dir.join(".backup-killed");
    std::fs::create_dir_all(&killed).unwrap();
    std::fs::write(killed.join(TEMP_LOCK), b"").unwrap();
    std::fs::write(killed.join(journal::FILE_NAME), b"a copy").unwrap();
    // One killed before it made its lock, an hour ago; one being made this instant.
    let old = dir.join(".backup-old");
    std::fs::create_dir_all(&old).unwrap();
    File::open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let fresh = dir.join(".backup-fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let live = TempDir::new(dir).unwrap();
    assert_eq!(remove_abandoned(dir), 2);
    assert!(!killed.exists() && !old.exists());
    assert!(fresh.exists(), "a copy being made (no lock yet) stays");
    assert!(live.0.exists(), "a live backup's copy stays");
    drop(live);
    assert_eq!(names(dir), vec![".backup-fresh".to_string()]);
}

/// Runs the scheduled backups of `config` every `every` seconds into `dir` for `secs` seconds.
async fn run_scheduled(
    config: &Config,
    keys: &StoreKeys,
    every: u64,
    dir: &Path,
    failing: &Failing,
    secs: u64,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(scheduled(
        config.clone(),
        std::sync::Arc::new(keys.clone()),
        Duration::from_secs(every),
        dir.to_path_buf(),
        5,
        failing.clone(),
        None,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.cancel();
    task.await.unwrap();
}

/// The schedule counts from the newest backup, not from the start: a box that never stays
/// up `every` still gets its backups.
#[tokio::test]
async fn a_scheduled_backup_is_due_from_the_newest_one_not_from_the_start() {
    let root = tempfile::tempdir().unwrap();
    let (config, keys) = store(&root.path().join("data"));
    drop(Journal::open(&config.storage.dir, "sh-001").unwrap());
    let dir = root.path().join("backups");
    std::fs::create_dir_all(&dir).unwrap();
    let last = dir.join("storebox-sh-001-20261206T000000Z.sbk");
    std::fs::write(&last, b"an older backup").unwrap();
    File::options()
        .write(true)
        .open(&last)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(9))
        .unwrap();
    let failing = Failing::default();
    // Due a second after the start (the last one is 9 s old); counted from the start, it
    // would come after 10 s.
    run_scheduled(&config, &keys, 10, &dir, &failing, 4).await;
    assert_eq!(scheduled_files(&dir, "sh-001").unwrap().len(), 2);
    assert_eq!(*failing.lock().unwrap(), None);

    // A backup directory that cannot be written: the failure is noted (for /healthz).
    let blocked = root.path().join("not-a-dir");
    std::fs::write(&blocked, b"a file").unwrap();
    run_scheduled(&config, &keys, 1, &blocked, &failing, 2).await;
    let noted = failing.lock().unwrap().clone();
    assert!(
        noted.is_some_and(|e| e.contains("not-a-dir")),
        "{:?}",
        failing
    );
}

#[test]
fn a_restore_that_fails_leaves_the_directory_as_it_found_it() {
    let root = tempfile::tempdir().unwrap();
    let (old, keys) = store(&root.path().join("old"));
    drop(Journal::open(&old.storage.dir, "sh-001").unwrap());
    let good = root.path().join("good.sbk");
    backup(&old, &keys, &good).unwrap();
    // A journal of a storebox newer than this one.
    Connection::open(old.storage.dir.join(journal::FILE_NAME))
        .unwrap()
        .execute(
            "UPDATE meta SET value = '999' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    let file = root.path().join("newer.sbk");
    backup(&old, &keys, &file).unwrap();

    let (new_dir, new, keys) = new_box(root.path(), old.key_path());
    let before = names(&new_dir);
    let err = restore(&new, &keys, &file, 0, false).unwrap_err();
    assert!(format!("{err:#}").contains("newer"), "{err:#}");
    assert_eq!(
        names(&new_dir),
        before,
        "the failed restore left files behind"
    );

    // The same directory takes a good backup afterwards.
    restore(&new, &keys, &good, 0, false).unwrap();
    assert!(new_dir.join(journal::FILE_NAME).exists());
}

#[test]
fn retention_keeps_the_newest_of_this_store_only() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "storebox-sh-001-20261120T000000Z.sbk",
        "storebox-sh-001-20261121T000000Z.sbk",
        "storebox-sh-001-20261122T000000Z.sbk",
        "storebox-sh-002-20261101T000000Z.sbk",
        "notes.txt",
    ];
    for n in names {
        std::fs::write(dir.path().join(n), b"x").unwrap();
    }
    prune(
        dir.path(),
        "sh-001",
        2,
        &dir.path().join("storebox-sh-001-20261122T000000Z.sbk"),
    )
    .unwrap();
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    let mut want = names[1..].to_vec();
    want.sort();
    assert_eq!(left, want);
}

/// The working copies of a backup take as much room as the files: a backup that would leave
/// less than `storage.min_free_mb` refuses before copying anything. (Before, it filled the
/// disk, and the sales of the minutes it took were refused: the journal could not grow.)
#[test]
fn a_backup_that_would_eat_the_journals_room_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let (old, keys) = store(&root.path().join("old"));
    drop(Journal::open(&old.storage.dir, "sh-001").unwrap());
    let free = crate::app::free_bytes(&old.storage.dir).expect("free space measured");
    // The largest reserve a config may ask for (1 TiB): more than this disk has free.
    let max_mb = 1024 * 1024;
    if free >= max_mb * 1024 * 1024 {
        eprintln!("skipped: this disk has more than 1 TiB free");
        return;
    }
    let mut tight = old.clone();
    tight.storage.min_free_mb = max_mb;
    let file = root.path().join("b.sbk");
    let err = backup(&tight, &keys, &file).unwrap_err();
    assert!(
        format!("{err:#}").contains("not enough free space"),
        "{err:#}"
    );
    assert!(!file.exists() && !file.with_extension("partial").exists());
    assert!(
        names(&old.storage.dir)
            .iter()
            .all(|n| !n.starts_with(".backup-")),
        "{:?}",
        names(&old.storage.dir)
    );
    // With the default reserve it goes ahead.
    backup(&old, &keys, &file).unwrap();
}

/// A backup named by a clock that once ran ahead sorts after every later one: the one just
/// written stays all the same (before, with `keep = 1` each new backup was removed at once and
/// the stale one kept for good).
#[test]
fn retention_never_removes_the_backup_just_written() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = dir.path().join("storebox-sh-001-20991231T000000Z.sbk");
    let written = dir.path().join("storebox-sh-001-20261206T000000Z.sbk");
    for f in [&ahead, &written] {
        std::fs::write(f, b"x").unwrap();
    }
    prune(dir.path(), "sh-001", 1, &written).unwrap();
    assert!(written.exists(), "the backup just written was removed");
    assert!(!ahead.exists());
}

/// The backup file, on the data directory's disk, stops before it takes the journal's reserve
/// (how far it compresses is not known when the backup starts); elsewhere it is not watched.
#[test]
fn the_backup_file_stops_short_of_the_journals_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let free_mb = crate::app::free_bytes(dir.path()).expect("free space measured") / MIB;
    let out = dir.path().join("b.sbk");
    let mut over = RoomGuard::new(Vec::new(), dir.path(), &out, free_mb + 1);
    let err = over.write_all(b"backup bytes").unwrap_err();
    assert!(err.to_string().contains("not enough free space"), "{err}");
    assert!(over.inner.is_empty());
    let mut within = RoomGuard::new(Vec::new(), dir.path(), &out, 1);
    within.write_all(b"backup bytes").unwrap();
    assert_eq!(within.inner, b"backup bytes");
    // A file on another file system (or a directory that cannot be read) is not watched.
    let mut elsewhere = RoomGuard::new(Vec::new(), dir.path(), Path::new("/proc/x"), free_mb + 1);
    elsewhere.write_all(b"backup bytes").unwrap();
}

/// A backup named by a clock that once ran ahead is older than the one just written, whatever
/// its name says: it goes before the real ones (before, it held one of the `keep` places for
/// good, a backup with the data keys of members erased since).
#[test]
fn retention_does_not_keep_a_backup_named_ahead_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = dir.path().join("storebox-sh-001-20991231T000000Z.sbk");
    let earlier = dir.path().join("storebox-sh-001-20261205T000000Z.sbk");
    let written = dir.path().join("storebox-sh-001-20261206T000000Z.sbk");
    for f in [&ahead, &earlier, &written] {
        std::fs::write(f, b"x").unwrap();
    }
    prune(dir.path(), "sh-001", 2, &written).unwrap();
    assert!(written.exists() && earlier.exists());
    assert!(!ahead.exists(), "the backup named ahead was kept");
}

/// A backup stopped half-way (the daemon is stopping) gives up, and leaves neither its working
/// copies (a full journal, member keys included) nor a `.partial` file; the next one works.
/// (Before, a scheduled backup could not be stopped: a daemon stopped during a large store's
/// backup waited minutes for it, past systemd's stop timeout, and was killed.)
#[test]
fn a_stopped_backup_gives_up_and_leaves_nothing_behind() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let root = tempfile::tempdir().unwrap();
    let (old, keys) = store(&root.path().join("old"));
    drop(Journal::open(&old.storage.dir, "sh-001").unwrap());
    let file = root.path().join("b.sbk");
    // Stopped at each point it looks: before the copies, between them, while archiving.
    for after in 0..6 {
        let asked = AtomicUsize::new(0);
        let stop = || asked.fetch_add(1, Ordering::SeqCst) >= after;
        let Err(err) = backup_until(&old, &keys, &file, &stop) else {
            break;
        };
        assert!(format!("{err:#}").contains(STOPPED), "{err:#}");
        assert!(!file.exists(), "a stopped backup was written");
        assert!(
            !file.with_extension("partial").exists(),
            "a .partial file was left"
        );
        assert!(
            names(&old.storage.dir)
                .iter()
                .all(|n| !n.starts_with(".backup-")),
            "{:?}",
            names(&old.storage.dir)
        );
    }
    backup_until(&old, &keys, &file, &|| false).unwrap();
    assert!(file.exists());
}

/// The `.partial` file a backup killed half-way left in the backup directory (member keys and
/// data, removed by nothing else) goes at the scheduler's start; one being written (locked),
/// another store's and a finished backup stay.
#[test]
fn a_partial_file_a_killed_backup_left_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let killed = dir.join("storebox-sh-001-20261201T020000Z.partial");
    std::fs::write(&killed, b"half a backup").unwrap();
    let writing = dir.join("storebox-sh-001-20261208T020000Z.partial");
    let held = File::create(&writing).unwrap();
    held.try_lock().unwrap();
    let other = dir.join("storebox-bj-002-20261201T020000Z.partial");
    std::fs::write(&other, b"another store's").unwrap();
    let done = dir.join("storebox-sh-001-20261130T020000Z.sbk");
    std::fs::write(&done, b"a backup").unwrap();
    assert_eq!(remove_abandoned_partials(dir, "sh-001"), 1);
    assert!(!killed.exists(), "the killed backup's file stayed");
    assert!(writing.exists() && other.exists() && done.exists());
    drop(held);
    assert_eq!(remove_abandoned_partials(dir, "sh-001"), 1);
    assert!(!writing.exists());
}
