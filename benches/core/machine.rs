//! What the bench measures of the machine beside the daemon: the disk's raw fsync rate, a bare
//! SQLite commit loop, the page cache, the host's steal time, and where threads run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Raw fsync rate of the disk holding `dir`: a 4 KiB block overwritten in a preallocated
/// 1 MiB file, then `fdatasync`, repeatedly — the cheapest durable write the disk offers, and
/// what a steady-state WAL commit does (SQLite reuses its WAL file from the start after each
/// checkpoint).
pub(crate) fn fsync_rate(dir: &Path, secs: u64) -> f64 {
    use std::os::unix::fs::FileExt;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("probe file");
    f.write_all(&vec![0u8; 1 << 20]).expect("preallocate");
    f.sync_all().expect("fsync");
    let block = [0x5Au8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        f.write_all_at(&block, (n % 256) * 4096).expect("write");
        f.sync_data().expect("fdatasync");
        n += 1;
    }
    let _ = std::fs::remove_file(&path);
    n as f64 / started.elapsed().as_secs_f64()
}

/// A bare SQLite loop on the same disk, for reference: WAL, `synchronous=FULL`, one
/// transaction per "sale" inserting a 1.2 KB row, a partial-index entry and a key — what a
/// journal commit costs with nothing else around it.
pub(crate) fn sqlite_commit_rate(dir: &Path, secs: u64) -> f64 {
    let path = dir.join("sqlite-probe.sqlite3");
    let remove = || {
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    };
    remove();
    let c = rusqlite::Connection::open(&path).expect("probe db");
    let _: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("wal");
    c.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE events (seq INTEGER PRIMARY KEY, kind TEXT, subject TEXT, data TEXT);
         CREATE INDEX events_sales ON events(subject) WHERE kind = 'sale';
         CREATE TABLE keys (k TEXT PRIMARY KEY, seq INTEGER) WITHOUT ROWID;",
    )
    .expect("probe schema");
    let data = "x".repeat(1200);
    let started = Instant::now();
    let mut n: i64 = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        n += 1;
        let tx = c.unchecked_transaction().expect("tx");
        tx.execute(
            "INSERT INTO events VALUES (?1, 'sale', ?2, ?3)",
            rusqlite::params![n, format!("s{n:020}"), data],
        )
        .expect("insert");
        tx.execute(
            "INSERT INTO keys VALUES (?1, ?2)",
            rusqlite::params![format!("k{n:020}"), n],
        )
        .expect("insert");
        tx.commit().expect("commit");
    }
    drop(c);
    remove();
    n as f64 / started.elapsed().as_secs_f64()
}

/// Reads `path` through, so that the OS holds it in its page cache; returns the seconds it took
/// (long when pages had to come from the disk). This VM pages out page cache that it judges
/// idle (the kernel's DAMON reclaim runs here, with 21 GB free), so a million-member cache file
/// seeded or last read a minute earlier is partly on disk again, and a lookup that meets such a
/// page waits for a disk read on a runtime thread: the rounds measured that, not the server.
pub(crate) fn warm(path: &Path) -> f64 {
    use std::io::Read;
    let started = Instant::now();
    if let Ok(mut f) = std::fs::File::open(path) {
        let mut buf = vec![0u8; 1 << 20];
        while matches!(f.read(&mut buf), Ok(n) if n > 0) {}
    }
    started.elapsed().as_secs_f64()
}

/// The calling thread pinned to one CPU, until dropped (then its former affinity is back).
pub(crate) struct Pinned(libc::cpu_set_t);

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: a mask this thread's own affinity was read into, passed with its size.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&self.0), &self.0) };
    }
}

/// Pins the calling thread to `cpu` (`None`, with a word on stderr, if it cannot).
pub(crate) fn pin_to(cpu: usize) -> Option<Pinned> {
    if cpu >= libc::CPU_SETSIZE as usize {
        eprintln!("  BENCH_CLIENT_CPU={cpu}: no such CPU; left unpinned");
        return None;
    }
    // SAFETY: cpu_set_t is plain bits, zero is an empty set; the calls get its true size.
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&old), &mut old) != 0 {
            return None;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&one), &one) != 0 {
            eprintln!("  BENCH_CLIENT_CPU={cpu}: cannot pin the client there; left unpinned");
            return None;
        }
        Some(Pinned(old))
    }
}

/// Runs `f`, and returns with its result the host's steal time meanwhile (all CPUs, ms), from
/// `/proc/stat`: time a vCPU was ready to run but the host ran something else.
pub(crate) fn with_steal<T>(f: impl FnOnce() -> T) -> (T, Option<f64>) {
    let before = steal_ms();
    let out = f();
    let stolen = before.zip(steal_ms()).map(|(a, b)| b - a);
    (out, stolen)
}

/// The host's steal time so far, all CPUs, in milliseconds (`/proc/stat` counts it in ticks
/// of 1/100 s on Linux).
fn steal_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: f64 = cpu.split_whitespace().nth(8)?.parse().ok()?;
    Some(ticks * 10.0)
}

/// The CPU a thread last ran on: field 39 of its `/proc/.../stat`.
pub(crate) fn last_cpu(stat: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(stat).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(39 - 3)?.parse().ok()
}

/// The `stat` file of the daemon's ledger thread (named `ledger`), if it can be found.
pub(crate) fn ledger_stat(pid: u32) -> Option<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .map(|task| task.path())
        .find(|task| {
            std::fs::read_to_string(task.join("comm")).is_ok_and(|comm| comm.trim() == "ledger")
        })
        .map(|task| task.join("stat"))
}
