//! Read-only connections to the journal, pooled. WAL lets them read while the writer commits;
//! each query runs on a blocking thread so the async runtime never waits on the disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

use super::{FILE_NAME, JournalError};

/// A pool of read-only journal connections. Cheap to clone.
#[derive(Clone)]
pub struct JournalReader {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// Most idle connections kept open.
const MAX_IDLE: usize = 4;

impl JournalReader {
    /// A reader for the journal in `dir` (the writer must have created it).
    pub fn new(dir: &Path) -> JournalReader {
        JournalReader {
            inner: Arc::new(Inner {
                path: dir.join(FILE_NAME),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    fn checkout(&self) -> Result<Connection, JournalError> {
        if let Some(c) = self.inner.idle.lock().ok().and_then(|mut v| v.pop()) {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(JournalError::sql("opening a journal reader"))?;
        conn.busy_timeout(crate::sqlite::BUSY_TIMEOUT)
            .map_err(JournalError::sql("setting busy timeout"))?;
        crate::sqlite::tune(&conn).map_err(JournalError::sql("tuning a journal reader"))?;
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        if let Ok(mut idle) = self.inner.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }

    /// Runs `f` on a read-only connection on a blocking thread.
    pub async fn with<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.with_blocking(f))
            .await
            .map_err(|e| JournalError::Unwritable(format!("reader task failed: {e}")))?
    }

    /// The code and message of the last alert recorded from `source`
    /// ([`store::last_alert_from`](super::store::last_alert_from)): what a watch last told HQ.
    /// A read that fails is logged and counts as none.
    pub async fn last_alert_from(&self, source: &str) -> Option<(String, String)> {
        let id = source.to_string();
        match self
            .with(move |c| super::store::last_alert_from(c, &id))
            .await
        {
            Ok(last) => last,
            Err(e) => {
                tracing::warn!(source, error = %e, "cannot look for the last alert sent to HQ");
                None
            }
        }
    }

    /// Runs `f` on a read-only connection on the current thread.
    pub fn with_blocking<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        F: FnOnce(&Connection) -> Result<T, JournalError>,
    {
        let conn = self.checkout()?;
        let out = f(&conn);
        self.checkin(conn);
        out
    }
}
