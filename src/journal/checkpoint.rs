//! Checkpoints off the sale path.
//!
//! In WAL mode a commit only appends to the WAL (and fsyncs it); copying pages back into the
//! database file — a checkpoint — writes pages all over a large file and fsyncs it. With
//! SQLite's automatic checkpoint alone, that work falls on whichever sale commit crosses the
//! threshold. Here this thread checkpoints from its own connection: PASSIVE (never blocks the
//! writer) twice a second, and a blocking one only if the WAL ever grows past its ceiling. At
//! a store's usual pace (a sale every few seconds) it does every checkpoint.
//!
//! The writer's own automatic checkpoint stays on at 1,000 pages (`Journal::open`), as a bound
//! for bursts: at hundreds of sales a second the WAL reaches it between two ticks, and the
//! commit that crosses it copies what the WAL holds (a few milliseconds, once in ~170 sales).
//! Leaving bursts to this thread too was measured (2026-12-04, one terminal selling flat
//! out): no more sales a second, and a p99 of 9–14 ms instead of 2.5–3.6 ms — the WAL then
//! grows to half a second of sales and the thread's larger fsync holds up the writer's.
//!
//! After a member's personal data is erased the ledger asks for a scrub: a TRUNCATE
//! checkpoint, which copies the (securely deleted) pages home and empties the WAL, so the old
//! page images holding the erased data key leave the disk. It is retried every tick until
//! no reader holds the WAL open. A TRUNCATE checkpoint holds the writer's lock while it waits
//! for the readers, so a scrub waits for them only briefly ([`SCRUB_WAIT`]): a backup's read,
//! which can last minutes, would otherwise hold up every sale for the whole busy timeout at
//! every tick. The first tick after a start scrubs too: a scrub still due when the process was
//! stopped hard (a power cut during a backup's read) is remembered nowhere else.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::FILE_NAME;

/// WAL size above which a blocking checkpoint is forced.
const WAL_CEILING: u64 = 256 * 1024 * 1024;

/// How long a scrub waits for the writer and the readers before it tries again at the next
/// tick: the sales wait as long for it.
const SCRUB_WAIT: Duration = Duration::from_millis(20);

/// The ceiling in pages (of 4 KiB, SQLite's default): the automatic checkpoint of a writer
/// that leaves checkpoints to this thread in offline commands.
pub const WAL_CEILING_PAGES: u64 = WAL_CEILING / 4096;

/// Where the checkpoint thread is, for the file's readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// A checkpoint is about to run; `empty`: it must empty the WAL (a scrub, the ceiling,
    /// the last one), which waits until no reader holds a snapshot in it.
    Before {
        /// Whether the WAL must be emptied.
        empty: bool,
    },
    /// A checkpoint that had to empty the WAL did.
    Emptied,
}

/// What the checkpoint thread is asked for besides its ticks.
enum Request {
    Scrub,
}

/// The checkpoint thread. Stops (after a last checkpoint) when dropped.
pub struct Checkpointer {
    stop: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the journal in `dir`.
    pub fn start(dir: &Path) -> Checkpointer {
        Checkpointer::start_file(dir.join(FILE_NAME))
    }

    /// Starts checkpointing the SQLite file at `path` (the journal, or the cache).
    pub fn start_file(path: PathBuf) -> Checkpointer {
        Checkpointer::start_file_with(path, Box::new(|_| {}))
    }

    /// Like [`Checkpointer::start_file`], telling `readers` around every checkpoint (the
    /// cache's readers let go of old snapshots before one, and of every snapshot while a
    /// checkpoint must empty the WAL).
    pub fn start_file_with(path: PathBuf, readers: Box<dyn Fn(Moment) + Send>) -> Checkpointer {
        let (stop, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || run(&path, rx, readers))
            .map_err(|e| tracing::error!(error = %e, "cannot start the checkpoint thread"))
            .ok();
        Checkpointer {
            stop: Some(stop),
            thread,
        }
    }

    /// Asks for the WAL to be emptied into the file (see the module notes); returns at once.
    pub fn scrub(&self) {
        if let Some(tx) = &self.stop {
            let _ = tx.send(Request::Scrub);
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(path: &PathBuf, stop: mpsc::Receiver<Request>, readers: Box<dyn Fn(Moment) + Send>) {
    let conn = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "checkpoint thread cannot open the journal");
            return;
        }
    };
    let _ = conn.busy_timeout(crate::sqlite::BUSY_TIMEOUT);
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    // An erasure's scrub is asked for in memory only: a process stopped hard (a power cut, a
    // watchdog's kill) while a reader held the WAL left the erased data key's old pages in it,
    // and nothing would empty it before the next clean stop. So every start scrubs first.
    let mut scrub_due = true;
    let mut at_start = true;
    // Whether the last checkpoint failed: said once a spell (a file made read-only failed every
    // tick, a warning twice a second until someone noticed).
    let mut failing = false;
    loop {
        match stop.recv_timeout(Duration::from_millis(500)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(Request::Scrub) => {
                scrub_due = true;
                at_start = false;
            }
            // Stopped (or the ledger is gone): one last checkpoint.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                readers(Moment::Before { empty: true });
                let mode = if scrub_due { "TRUNCATE" } else { "PASSIVE" };
                checkpoint(&conn, mode, &mut failing);
                return;
            }
        }
        if scrub_due {
            readers(Moment::Before { empty: true });
            scrub_due = !crate::sqlite::waiting_at_most(&conn, SCRUB_WAIT, |c| {
                checkpoint(c, "TRUNCATE", &mut failing)
            });
            if !scrub_due {
                readers(Moment::Emptied);
                if std::mem::take(&mut at_start) {
                    tracing::debug!(file = %path.display(), "write-ahead log emptied at start");
                } else {
                    tracing::info!(file = %path.display(), "write-ahead log scrubbed after an erasure");
                }
            }
            continue;
        }
        let big = std::fs::metadata(&wal)
            .map(|m| m.len() > WAL_CEILING)
            .unwrap_or(false);
        readers(Moment::Before { empty: big });
        if checkpoint(&conn, if big { "RESTART" } else { "PASSIVE" }, &mut failing) && big {
            readers(Moment::Emptied);
        }
    }
}

/// Runs one checkpoint; true when it completed (not blocked by a reader or writer). A failure
/// is logged when `failing` was not set (and sets it), a success after failures too.
fn checkpoint(conn: &Connection, mode: &str, failing: &mut bool) -> bool {
    let r: rusqlite::Result<(i64, i64, i64)> =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        });
    match r {
        Ok((busy, _, _)) => {
            if std::mem::take(failing) {
                tracing::info!(mode, "checkpoints succeed again");
            }
            busy == 0
        }
        Err(e) => {
            if std::mem::replace(failing, true) {
                tracing::debug!(error = %e, mode, "checkpoint failed again");
            } else {
                tracing::warn!(error = %e, mode, "checkpoint failed; said again only once it succeeds");
            }
            false
        }
    }
}
