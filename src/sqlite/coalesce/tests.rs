//! The coalescing VFS against real files: one write a commit, readers, crashes, `psow=0`,
//! refused writes.

use super::*;
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;

fn writer(path: &Path, synchronous: &str) -> Connection {
    let c = crate::sqlite::open_writer(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )
    .unwrap();
    let _: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    c.execute_batch(&format!(
        "PRAGMA synchronous={synchronous};
         CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT NOT NULL, h TEXT NOT NULL);
         CREATE INDEX IF NOT EXISTS t_h ON t(h);"
    ))
    .unwrap();
    c
}

fn writes() -> u64 {
    WAL_WRITES.with(std::cell::Cell::get)
}

fn wal_len(path: &Path) -> u64 {
    std::fs::metadata(format!("{}-wal", path.display()))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Scattered values, so that the index's pages are written apart from the table's.
fn h(i: i64) -> String {
    format!("{:016x}", (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[test]
fn a_transaction_s_frames_go_out_in_one_write() {
    assert_eq!(vfs().unwrap(), NAME);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let c = writer(&path, "FULL");
    for i in 1..=20_i64 {
        let (before, wal) = (writes(), wal_len(&path));
        c.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            params![i, "x".repeat(1500), h(i)],
        )
        .unwrap();
        let frames = (wal_len(&path) - wal).div_ceil(4096 + 24);
        assert!(frames >= 2, "commit {i}: {frames} frames");
        assert_eq!(writes() - before, 1, "commit {i}: {frames} frames");
    }
}

/// `synchronous=NORMAL` never syncs at a commit: the frames must still be in the file
/// before SQLite tells readers of them.
#[test]
fn a_reader_sees_every_commit_without_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let c = writer(&path, "NORMAL");
    let r = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    for i in 1..=300_i64 {
        c.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            params![i, format!("{i}").repeat(400), h(i)],
        )
        .unwrap();
        let (n, last): (i64, String) = r
            .query_row(
                "SELECT COUNT(*), (SELECT v FROM t WHERE h = ?1) FROM t",
                [h(i)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, last), (i, format!("{i}").repeat(400)));
    }
}

/// Transactions of 1 to 40 frames (so that a commit frame lands on every position against
/// the buffer's 64 KiB), in `synchronous=NORMAL`, with the WAL restarted in place now and
/// then: after each commit the file holds whole frames, a reader sees it, and another
/// connection's checkpoint copies sound pages into the database.
#[test]
fn commits_of_every_size_are_whole_in_the_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let c = writer(&path, "NORMAL");
    c.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    let other = Connection::open(&path).unwrap();
    let mut k = 0_i64;
    for n in 1..=40 {
        if n % 10 == 0 {
            let _: (i64, i64, i64) = other
                .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
        }
        let tx = c.unchecked_transaction().unwrap();
        for _ in 0..n {
            k += 1;
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2, ?3)",
                params![k, format!("{k:>3500}"), h(k)],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        if n < 10 {
            assert_eq!((wal_len(&path) - 32) % (4096 + 24), 0, "{n} rows");
        }
        let seen: (i64, String) = other
            .query_row(
                "SELECT COUNT(*), MAX(v) FROM t WHERE k = ?1 OR k < ?1",
                [k],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(seen.0, k, "{n} rows");
        let _: (i64, i64, i64) = other
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        let ok: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "{n} rows");
    }
}

/// Without powersafe overwrite SQLite pads a commit to a sector and splits a write around a
/// sync: nothing is buffered, and a reader sees every commit.
#[test]
fn a_device_without_powersafe_overwrite_is_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let c = Connection::open_with_flags_and_vfs(
        format!("file:{}?psow=0", path.display()),
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI,
        vfs().unwrap(),
    )
    .unwrap();
    let _: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    c.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB);",
    )
    .unwrap();
    let r = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    for k in 1..=20_i64 {
        c.execute("INSERT INTO t VALUES (?1, randomblob(3500))", [k])
            .unwrap();
        let n: i64 = r
            .query_row("SELECT COUNT(*) FROM t", [], |x| x.get(0))
            .unwrap();
        assert_eq!(n, k);
        assert_eq!((wal_len(&path) - 32) % (4096 + 24), 0, "commit {k}");
    }
}

/// A write the file refuses (here: past the process's file size limit, as a full disk
/// would) fails its transaction's commit, and the next transaction, once there is room,
/// commits over it. Run in a child process, which alone gets the limit.
#[test]
fn a_refused_write_fails_its_commit_and_not_the_next() {
    if std::env::var_os("STOREBOX_COALESCE_CHILD").is_some() {
        refused_write_in_child();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite::coalesce::tests::a_refused_write_fails_its_commit_and_not_the_next",
            "--nocapture",
        ])
        .env("STOREBOX_COALESCE_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

fn refused_write_in_child() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let c = writer(&path, "NORMAL");
    c.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    let insert = |from: i64, n: i64| -> rusqlite::Result<()> {
        let tx = c.unchecked_transaction()?;
        for k in from..from + n {
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2, ?3)",
                params![k, "z".repeat(1000), h(k)],
            )?;
        }
        tx.commit()
    };
    insert(1, 10).unwrap();
    let limit = |bytes: u64| {
        let l = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain system calls with a valid struct; SIGXFSZ ignored so that a write
        // past the limit fails with EFBIG instead of ending the process.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &l), 0);
        }
    };
    limit(wal_len(&path) + 6000);
    let refused = insert(11, 10).unwrap_err();
    assert!(
        matches!(
            refused.sqlite_error_code(),
            Some(rusqlite::ErrorCode::SystemIoFailure)
        ),
        "{refused}"
    );
    limit(libc::RLIM_INFINITY);
    insert(21, 10).unwrap();
    let r = Connection::open(&path).unwrap();
    let ok: String = r
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let keys: Vec<i64> = r
        .prepare("SELECT k FROM t ORDER BY k")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let expected: Vec<i64> = (1..=10).chain(21..=30).collect();
    assert_eq!(keys, expected);
}

/// Big transactions, with pages spilled before their commit and written again (SQLite then
/// rewrites frames and their checksums), and the files copied while the writer is open —
/// as a crash leaves them: every committed transaction is recovered, and only those.
#[test]
fn what_a_crash_leaves_recovers_every_commit() {
    for synchronous in ["NORMAL", "FULL"] {
        crash_leaves_every_commit(synchronous);
    }
}

fn crash_leaves_every_commit(synchronous: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let c = writer(&path, synchronous);
    c.execute_batch("PRAGMA cache_size=8; PRAGMA wal_autocheckpoint=0;")
        .unwrap();
    let mut n = 0_i64;
    for round in 0..6 {
        let tx = c.unchecked_transaction().unwrap();
        for _ in 0..300 {
            n += 1;
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2, ?3)",
                params![n, "y".repeat(700), h(n)],
            )
            .unwrap();
        }
        // The same rows again, in pages spilled to the WAL earlier in this transaction.
        tx.execute(
            "UPDATE t SET v = ?1 WHERE k > ?2",
            params![format!("round {round}"), n - 300],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    // Right after the last commit, and with one more transaction under way.
    assert_eq!(crashed(&path), (n, n, 0, "round 5".into()), "{synchronous}");
    let open = c.unchecked_transaction().unwrap();
    for i in 1..=200 {
        open.execute(
            "INSERT INTO t VALUES (?1, 'lost', ?2)",
            params![n + i, h(n + i)],
        )
        .unwrap();
    }
    assert_eq!(crashed(&path), (n, n, 0, "round 5".into()), "{synchronous}");
    drop(open);
}

/// The database as a crash would leave it (its files copied while the writer is open),
/// recovered: its integrity checked, its rows counted, its highest key, the rows of the
/// uncommitted transaction, the value of the last row.
fn crashed(path: &Path) -> (i64, i64, i64, String) {
    let copy = tempfile::tempdir().unwrap();
    for ext in ["", "-wal"] {
        std::fs::copy(
            format!("{}{ext}", path.display()),
            format!("{}{ext}", copy.path().join("db").display()),
        )
        .unwrap();
    }
    let r = Connection::open(copy.path().join("db")).unwrap();
    let ok: String = r
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    r.query_row(
        "SELECT COUNT(*), MAX(k), (SELECT COUNT(*) FROM t WHERE v = 'lost'),
                (SELECT v FROM t ORDER BY k DESC LIMIT 1) FROM t",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )
    .unwrap()
}
