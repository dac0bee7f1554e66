//! A `file` printer (`/dev/usb/lp*`, `/dev/lp*`): the thread that owns its descriptor, and
//! the printer task's side of it ([`LpWriter`]).

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Halt, IO_TIMEOUT, offline};
use crate::config::DeviceConfig;
use crate::devices::Context;
use crate::devices::bus::DeviceState;

/// What a `file` printer's thread is asked to do.
pub(super) enum LpRequest {
    /// (Re)open the device file.
    Open(PathBuf, oneshot::Sender<std::io::Result<()>>),
    /// Write all of these bytes (blocking, as long as the printer takes).
    Write(Vec<u8>, oneshot::Sender<std::io::Result<()>>),
    /// Close the device file.
    Close,
}

/// The thread that owns a `file` printer's descriptor (`/dev/usb/lp*`, `/dev/lp*`).
///
/// The device is written with ordinary blocking writes — the lp drivers return from a write
/// only once the printer took the last of it — on a thread of its own, not on tokio's blocking
/// pool. A printer that stops taking data (out of paper, cover open, jammed) holds that thread
/// in its write; the printer's task then reports it offline once, after [`IO_TIMEOUT`] without
/// a byte taken, and keeps waiting for that same write: nothing else is asked of the thread
/// (no second copy, no reopen) until the write has ended. Once the printer takes data again
/// the rest of the job goes out, so the receipt prints once. A write that fails (the printer
/// was unplugged) ends too; only then is the device reopened and the job sent again in full
/// (its head, printed before the failure, then shows twice). At shutdown the task stops
/// waiting; the thread, stuck in its write, ends with the process and the job stays queued.
pub(super) struct LpWriter {
    requests: std::sync::mpsc::Sender<LpRequest>,
    /// The answer to the request in progress: no other is sent before it came.
    pending: Option<oneshot::Receiver<std::io::Result<()>>>,
    /// Bytes the thread has written so far (all requests): progress, seen from the task.
    written: Arc<AtomicUsize>,
}

/// A stuck printer's state message.
const STALLED: &str = "the printer is not taking data (out of paper, cover open or jammed?); \
                       the job waits for it";
/// The thread writes in pieces of this size, counting each, so a slow printer is seen moving.
const LP_CHUNK: usize = 512;

impl LpWriter {
    pub(super) fn spawn(id: &str) -> std::io::Result<LpWriter> {
        let (requests, rx) = std::sync::mpsc::channel();
        let written = Arc::new(AtomicUsize::new(0));
        let count = written.clone();
        std::thread::Builder::new()
            .name(format!("lp {id}"))
            .spawn(move || lp_thread(&rx, &count))?;
        Ok(LpWriter {
            requests,
            pending: None,
            written,
        })
    }

    /// Sends `req` (whose answer comes on `answer`) once the request before it has ended, and
    /// waits for its answer. `Ok(Err(_))` is the device's error.
    pub(super) async fn call(
        &mut self,
        ctx: &Context,
        dev: &DeviceConfig,
        req: LpRequest,
        answer: oneshot::Receiver<std::io::Result<()>>,
        shutdown: &CancellationToken,
        stalled: &mut bool,
    ) -> Result<std::io::Result<()>, Halt> {
        if self.pending.is_some() {
            // Not expected (every call waits for its answer unless the daemon stops), but
            // whatever is still in progress ends before anything else is asked.
            if let Err(e) = self.wait(ctx, dev, shutdown, stalled).await? {
                tracing::warn!(device = %dev.id, error = %e, "an earlier printer request failed");
            }
        }
        self.requests
            .send(req)
            .map_err(|_| offline("the printer's writer thread is gone".into()))?;
        self.pending = Some(answer);
        self.wait(ctx, dev, shutdown, stalled).await
    }

    /// Waits for the request in progress to end. After [`IO_TIMEOUT`] without a byte written
    /// the printer is reported offline (once: `stalled`), and waited for still.
    async fn wait(
        &mut self,
        ctx: &Context,
        dev: &DeviceConfig,
        shutdown: &CancellationToken,
        stalled: &mut bool,
    ) -> Result<std::io::Result<()>, Halt> {
        loop {
            let Some(answer) = self.pending.as_mut() else {
                return Ok(Ok(()));
            };
            let before = self.written.load(Ordering::Relaxed);
            tokio::select! {
                _ = shutdown.cancelled() => return Err(Halt::Shutdown),
                r = answer => {
                    self.pending = None;
                    return Ok(r.unwrap_or_else(|_| {
                        Err(std::io::Error::other("the printer's writer thread is gone"))
                    }));
                }
                _ = tokio::time::sleep(IO_TIMEOUT) => {
                    if self.written.load(Ordering::Relaxed) == before && !*stalled {
                        *stalled = true;
                        ctx.report(dev, DeviceState::Offline, Some(STALLED.into())).await;
                    }
                }
            }
        }
    }

    /// Closes the device once the request in progress (if any) has ended.
    pub(super) fn close(&mut self) {
        let _ = self.requests.send(LpRequest::Close);
    }
}

/// The body of a `file` printer's thread: one request at a time, until the task is gone.
fn lp_thread(requests: &std::sync::mpsc::Receiver<LpRequest>, written: &AtomicUsize) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(req) = requests.recv() {
        match req {
            LpRequest::Open(path, answer) => {
                file = None;
                let r = open_lp(&path).map(|f| file = Some(f));
                let _ = answer.send(r);
            }
            LpRequest::Write(bytes, answer) => {
                let r = match file.as_mut() {
                    Some(f) => write_counted(f, &bytes, written),
                    None => Err(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the printer is not open",
                    )),
                };
                if r.is_err() {
                    file = None;
                }
                let _ = answer.send(r);
            }
            LpRequest::Close => file = None,
        }
    }
}

/// Opens a device file for blocking writes. The open itself is non-blocking, so that a FIFO
/// standing in for a printer fails at once when nothing reads it rather than waiting.
fn open_lp(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

fn write_counted(
    f: &mut std::fs::File,
    bytes: &[u8],
    written: &AtomicUsize,
) -> std::io::Result<()> {
    use std::io::Write;
    for piece in bytes.chunks(LP_CHUNK) {
        f.write_all(piece)?;
        written.fetch_add(piece.len(), Ordering::Relaxed);
    }
    f.flush()
}
