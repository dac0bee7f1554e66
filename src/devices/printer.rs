//! The task that owns one receipt printer.
//!
//! Jobs come from the journal's print queue (`print_jobs`), filled in the same transaction as
//! the sale, so a receipt survives a printer that is off and a daemon that is killed. The task
//! wakes on every journal commit, opens the printer (TCP, serial or an lp device file), asks its
//! status with DLE EOT where the transport can answer, sends each job's bytes and removes the
//! job once the printer took them: on TCP and serial, once the socket's or port's output queue
//! emptied ([`Conn::drain`]) and, of a printer that answers DLE EOT, once it answered one sent
//! after the job. A printer that is away, or leaves a job untaken, is retried with a backoff
//! (the job kept); the sale never waits for it.
//! An lp device file is written by a thread of its own, and a write the printer does not take
//! is waited for, never abandoned or doubled ([`LpWriter`]). A drawer kick (after a cash
//! receipt, or asked for alone) goes out only within [`DRAWER_WINDOW`] of its job being queued.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::time::Duration;

use chrono::Utc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::bus::DeviceState;
use super::escpos::{EscPos, StatusRequest};
use crate::config::{DeviceConfig, PrinterOptions, Transport};

mod job;
mod lp;
mod status;

use crate::journal::store::{self, PrintJob};
use crate::ledger::Command;
use job::{Parts, job_bytes};
use lp::{LpRequest, LpWriter};
use status::{ask, check};

/// How long a printer gets to answer a status request.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long to wait for a connection or a write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a TCP or serial printer may leave written bytes untaken (the socket's or the
/// port's output queue not shrinking) before it is deemed not to take data, the connection
/// dropped and the job kept. Generous: a printer that was only slow prints the receipt twice.
const DRAIN_STALL: Duration = Duration::from_secs(10);
/// At a stop, how long a TCP or serial printer may leave written bytes untaken before they are
/// dropped: one still taking them is waited for (it prints them whatever the daemon does, and
/// a job given up would be sent again, in full, after the restart).
const DRAIN_STALL_AT_STOP: Duration = Duration::from_secs(2);
/// How long a printer that answers DLE EOT gets to answer one sent after a job (or at the start
/// of a batch): it answers once it has read the bytes before it, which a printer busy printing
/// may take a while to do.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A receipt or a drawer opening that reaches its printer later than this after it was queued
/// does not open the drawer.
const DRAWER_WINDOW: chrono::Duration = chrono::Duration::minutes(2);

/// Why serving the printer stopped before its jobs were done.
enum Halt {
    /// The daemon is stopping.
    Shutdown,
    /// The printer is not usable; the state to report and why.
    Down(DeviceState, String),
    /// A job went out (or was dropped) but the journal could not record it: retried after a
    /// pause, without sending the job again.
    Unrecorded,
}

fn offline(reason: String) -> Halt {
    Halt::Down(DeviceState::Offline, reason)
}

/// An open printer. A `file` printer is the thread that owns its descriptor ([`LpWriter`]).
enum Conn<'a> {
    Tcp(TcpStream),
    Serial(tokio_serial::SerialStream),
    File(&'a mut LpWriter),
}

impl<'a> Conn<'a> {
    async fn open(
        ctx: &Context,
        dev: &DeviceConfig,
        lp: &'a mut Option<LpWriter>,
        shutdown: &CancellationToken,
    ) -> Result<Conn<'a>, Halt> {
        let open = async {
            match &dev.transport {
                Transport::Tcp { address } => TcpStream::connect(address.as_str())
                    .await
                    .map(Conn::Tcp)
                    .map_err(|e| format!("connecting to {address}: {e}")),
                Transport::Serial { path, baud } => {
                    use tokio_serial::SerialPortBuilderExt;
                    tokio_serial::new(path.to_string_lossy(), *baud)
                        .open_native_async()
                        .map(Conn::Serial)
                        .map_err(|e| format!("opening {}: {e}", path.display()))
                }
                // A `file` printer is opened by its thread, below; never polled here.
                Transport::File { path } | Transport::Hid { path } => {
                    Err(format!("{} is not a printer transport", path.display()))
                }
            }
        };
        if let Transport::File { path } = &dev.transport {
            if lp.is_none() {
                let w = LpWriter::spawn(&dev.id).map_err(|e| {
                    offline(format!("starting the writer of {}: {e}", path.display()))
                })?;
                *lp = Some(w);
            }
            let Some(w) = lp.as_mut() else {
                return Err(offline("the printer's writer is missing".into()));
            };
            // Waited for as long as it takes (see `LpWriter`), not timed out.
            let (tx, rx) = oneshot::channel();
            let req = LpRequest::Open(path.clone(), tx);
            w.call(ctx, dev, req, rx, shutdown, &mut false)
                .await?
                .map_err(|e| offline(format!("opening {}: {e}", path.display())))?;
            return Ok(Conn::File(w));
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => Err(Halt::Shutdown),
            r = tokio::time::timeout(IO_TIMEOUT, open) => r
                .map_err(|_| offline("the printer did not answer in time".to_string()))?
                .map_err(offline),
        }
    }

    /// Sends `bytes`. A TCP or serial printer gets [`IO_TIMEOUT`] to take some of them each
    /// time (see [`write_paced`]), then has to take the bytes: its output queue must empty,
    /// shrinking at least every [`DRAIN_STALL`] (else the connection is dropped with its unsent
    /// bytes, and the job sent again, in full, on a new one); a `file` printer is waited for as
    /// long as it takes (see [`LpWriter`]), `stalled` saying whether it was reported as not
    /// taking data. A stop does not cut a TCP or serial write short while the printer takes
    /// the bytes (see [`write_paced`]).
    async fn write(
        &mut self,
        ctx: &Context,
        dev: &DeviceConfig,
        bytes: &[u8],
        shutdown: &CancellationToken,
        stalled: &mut bool,
    ) -> Result<(), Halt> {
        if let Conn::File(w) = self {
            let (tx, rx) = oneshot::channel();
            let req = LpRequest::Write(bytes.to_vec(), tx);
            return w
                .call(ctx, dev, req, rx, shutdown, stalled)
                .await?
                .map_err(|e| offline(format!("writing to the printer: {e}")));
        }
        // Not cut short by a stop: the printer prints what it took whatever the daemon does,
        // and a job given up half-way would be sent again, in full, after the restart. It is
        // written on for as long as the printer takes it, as the drain does at a stop.
        let written = match self {
            Conn::Tcp(s) => write_paced(s, bytes).await,
            Conn::Serial(s) => write_paced(s, bytes).await,
            Conn::File(_) => Ok(()),
        }
        .map_err(|e| match e.kind() {
            _ if shutdown.is_cancelled() => Halt::Shutdown,
            std::io::ErrorKind::TimedOut => offline("writing to the printer timed out".into()),
            _ => offline(format!("writing to the printer: {e}")),
        });
        match written {
            Ok(()) => self.drain(shutdown).await,
            Err(e) => {
                self.abort();
                Err(e)
            }
        }
    }

    /// Waits until a TCP or serial printer took every byte written to it: until the output
    /// queue (`SIOCOUTQ` on a socket: bytes not yet acknowledged by the printer; `TIOCOUTQ` on
    /// a serial port: bytes not yet sent, held back by the printer's flow control) is empty.
    /// A write only hands the bytes to the kernel; a printer whose firmware hangs while its
    /// TCP stack still accepts leaves them there. As long as the queue shrinks it is waited
    /// for; after [`DRAIN_STALL`] without a byte taken the unsent bytes are dropped with the
    /// connection ([`Conn::abort`]) and the printer reported as not taking data. At shutdown a
    /// printer still taking the bytes is waited for; one that took none for
    /// [`DRAIN_STALL_AT_STOP`] is given up at once (the job stays queued).
    async fn drain(&mut self, shutdown: &CancellationToken) -> Result<(), Halt> {
        let fd = match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Serial(s) => s.as_raw_fd(),
            Conn::File(_) => return Ok(()),
        };
        let mut left = usize::MAX;
        let mut moved = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let now = match out_queue(fd) {
                Ok(n) => n,
                Err(e) => {
                    self.abort();
                    return Err(offline(format!("asking what the printer took: {e}")));
                }
            };
            if now == 0 {
                return Ok(());
            }
            let stopping = shutdown.is_cancelled();
            if now < left {
                left = now;
                moved = tokio::time::Instant::now();
            } else if stopping && moved.elapsed() >= DRAIN_STALL_AT_STOP {
                self.abort();
                return Err(Halt::Shutdown);
            } else if moved.elapsed() >= DRAIN_STALL {
                tracing::warn!(
                    untaken = now,
                    "the printer is not taking data; dropping the connection"
                );
                self.abort();
                return Err(offline(NOT_TAKING.into()));
            }
            tokio::select! {
                biased;
                // Measured again at once: taken by now, or how long since it took a byte.
                _ = shutdown.cancelled(), if !stopping => continue,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Discards what was written but not taken, so that nothing of a job the printer did not
    /// take reaches it after this connection is given up (it is sent again, in full, on the
    /// next): a TCP connection is reset when dropped rather than closed after its unsent bytes;
    /// a serial port's output queue is flushed (its close would otherwise wait for it).
    fn abort(&mut self) {
        match self {
            Conn::Tcp(s) => {
                let _ = s.set_zero_linger();
            }
            Conn::Serial(s) => {
                // SAFETY: tcflush on a descriptor the stream owns, with integer arguments.
                unsafe { libc::tcflush(s.as_raw_fd(), libc::TCOFLUSH) };
            }
            Conn::File(_) => {}
        }
    }

    /// Asks one DLE EOT status, waiting `wait` for the answer; `None` when the transport
    /// cannot answer or the printer is silent (many cheap printers never answer). A late
    /// answer to an earlier request still waiting to be read is discarded first.
    async fn status(&mut self, req: StatusRequest, wait: Duration) -> Result<Option<u8>, String> {
        let mut cmd = EscPos::new(super::escpos::Encoding::CP437);
        cmd.status_request(req);
        let bytes = cmd.into_bytes();
        match self {
            Conn::Tcp(s) => {
                let mut stale = [0u8; 64];
                while matches!(s.try_read(&mut stale), Ok(n) if n > 0) {}
                ask(s, &bytes, wait).await
            }
            Conn::Serial(s) => {
                // SAFETY: tcflush on a descriptor the stream owns, with integer arguments.
                unsafe { libc::tcflush(s.as_raw_fd(), libc::TCIFLUSH) };
                ask(s, &bytes, wait).await
            }
            Conn::File(_) => Ok(None),
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Conn::File(w) = self {
            w.close();
        }
    }
}

/// A TCP or serial printer that left a job's bytes untaken: the job stays queued and is sent
/// again, in full, on a new connection.
const NOT_TAKING: &str = "the printer is not taking data (hung, out of paper or jammed?); \
                          the job stays queued and is sent again";

/// Writes `bytes` to a TCP or serial printer, giving it [`IO_TIMEOUT`] to take some of them
/// each time, not to take them all: a slow printer (a serial line at 9600 baud takes about a
/// kilobyte a second) takes a receipt of a few hundred lines for longer than that, and is
/// printing it, not hung. (With one limit for the whole write, such a receipt was cut off,
/// the printer reported offline and the job sent again from the top, for ever.) No flush: a
/// serial port's is `tcdrain`, which holds the runtime thread until the line has sent every
/// byte queued (seconds at 9600 baud, for as long as flow control holds them back for a
/// printer out of paper); what the printer has not taken yet is watched by [`Conn::drain`].
/// A stop does not cut it short (see [`Conn::write`]): a stop that came while a long receipt
/// was still being written (a serial port's buffer holds a few KB) dropped the rest, and the
/// receipt printed again, in full, after the restart.
async fn write_paced<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = tokio::time::timeout(IO_TIMEOUT, w.write(rest))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// Bytes written to `fd` (a TCP socket or a serial port) that its peer has not taken yet.
/// `TIOCOUTQ` is `SIOCOUTQ` on Linux: on a TCP socket, the bytes not yet acknowledged.
fn out_queue(fd: std::os::fd::RawFd) -> std::io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: the ioctl writes one c_int through a pointer to a live local.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Runs the printer until `shutdown`.
pub(super) async fn run(ctx: Context, dev: DeviceConfig, shutdown: CancellationToken) {
    let Some(opts) = dev.printer.clone() else {
        return;
    };
    let mut seq = ctx.ledger.subscribe_seq();
    let mut backoff = Duration::from_millis(500);
    let mut health = tokio::time::interval(Duration::from_secs(30));
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A `file` printer's thread, started at its first open, kept until the task ends.
    let mut lp: Option<LpWriter> = None;
    // Whether the printer has answered DLE EOT since it was last unreachable (see `check`).
    let mut answers = false;
    // Jobs sent (or dropped) whose end the journal has not recorded yet, with the command that
    // records it: never sent again by this run of the daemon (see `record`).
    let mut unrecorded: HashMap<i64, Command> = HashMap::new();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let jobs = match ctx
            .journal
            .with({
                let id = dev.id.clone();
                move |c| store::pending_prints(c, &id, 50)
            })
            .await
        {
            Ok(j) => {
                // Forget only what the queue no longer holds: after a failed read, a job that
                // went out and is not recorded yet must still not be sent again.
                unrecorded.retain(|id, _| j.iter().any(|job| job.id == *id));
                j
            }
            Err(e) => {
                tracing::error!(device = %dev.id, error = %e, "cannot read the print queue");
                Vec::new()
            }
        };
        let check_only = jobs.is_empty();
        if check_only {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = seq.changed() => continue,
                _ = health.tick() => {}
            }
        }
        let served = serve(
            &ctx,
            &dev,
            &opts,
            &jobs,
            &mut lp,
            &mut answers,
            &mut unrecorded,
            &shutdown,
        );
        match served.await {
            Ok(()) => backoff = Duration::from_millis(500),
            Err(Halt::Shutdown) => return,
            Err(Halt::Unrecorded) => {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(Halt::Down(state, reason)) => {
                ctx.report(&dev, state, Some(reason)).await;
                if check_only {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Opens the printer, checks it, prints `jobs`. A job is removed once the printer took its
/// bytes: a `file` printer's write returned; a TCP or serial printer's output queue emptied
/// and, if it answers DLE EOT (`answers`), it answered one sent after the job. The printer is
/// reported ready once a job's bytes were all taken (or, with nothing to write, once it opened
/// and answered fine). A job in `unrecorded` already went out: it is only recorded.
#[allow(clippy::too_many_arguments)]
async fn serve(
    ctx: &Context,
    dev: &DeviceConfig,
    opts: &PrinterOptions,
    jobs: &[PrintJob],
    lp: &mut Option<LpWriter>,
    answers: &mut bool,
    unrecorded: &mut HashMap<i64, Command>,
    shutdown: &CancellationToken,
) -> Result<(), Halt> {
    let mut conn = match Conn::open(ctx, dev, lp, shutdown).await {
        Ok(c) => c,
        Err(e) => {
            // Away (off, unplugged, replaced?): whether it answers is learnt again.
            if matches!(e, Halt::Down(..)) {
                *answers = false;
            }
            return Err(e);
        }
    };
    if opts.status_query {
        // A printer known to answer is waited for longer: not past a shutdown.
        let (state, reason) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Err(Halt::Shutdown),
            r = check(&mut conn, answers) => r.map_err(offline)?,
        };
        if state != DeviceState::Ready {
            return Err(Halt::Down(state, reason.unwrap_or_default()));
        }
    }
    let mut ready = false;
    for job in jobs {
        if let Some(done) = unrecorded.get(&job.id).cloned() {
            record(ctx, dev, job.id, done, unrecorded).await;
            continue;
        }
        if shutdown.is_cancelled() {
            // The job being written is seen through at a stop; the next one is not begun.
            return Err(Halt::Shutdown);
        }
        let parts = match job_bytes(ctx, opts, job).await {
            Ok(b) => b,
            Err(e) => {
                // A job that cannot be rendered (its sale is gone) would block the queue.
                tracing::error!(device = %dev.id, job = job.id, error = %e, "dropping an unprintable job");
                ctx.bus.rejected(&dev.id);
                Parts::default()
            }
        };
        let mut stalled = false;
        let mut sent = false;
        let (mut body, mut kick) = (parts.body, parts.kick);
        if !matches!(conn, Conn::File(_)) {
            // One write: a TCP or serial printer that stops taking bytes is given up within
            // IO_TIMEOUT, so the kick rides with the receipt. A file printer can hold a write
            // for hours: its kick is decided after.
            if let Some(k) = kick.take_if(|k| Utc::now() < k.until) {
                body.extend_from_slice(&k.bytes);
            }
        }
        if !body.is_empty() {
            conn.write(ctx, dev, &body, shutdown, &mut stalled).await?;
            sent = true;
        }
        let mut done = Command::PrintDone { job_id: job.id };
        if let Some(kick) = kick {
            // Checked when the kick would go out, so a receipt that waited on a stuck printer
            // does not open the drawer late either.
            if Utc::now() < kick.until {
                conn.write(ctx, dev, &kick.bytes, shutdown, &mut stalled)
                    .await?;
                sent = true;
            } else if job.kind == "drawer" {
                tracing::warn!(device = %dev.id, job = job.id, queued_at = %job.created_at,
                    "a drawer opening waited too long for its printer: dropped, not opened");
                ctx.bus.rejected(&dev.id);
                done = Command::DrawerExpired {
                    job_id: job.id,
                    device_id: dev.id.clone(),
                    sale_id: job.sale_id.clone(),
                    queued_at: job.created_at.clone(),
                };
            } else {
                tracing::info!(device = %dev.id, job = job.id, sale = %job.sale_id,
                    "a receipt printed late does not open the drawer");
            }
        }
        if sent && opts.status_query && *answers {
            // The bytes reached the printer's network stack; a DLE EOT sent after them is
            // answered once the printer itself read them (a printer busy printing answers when
            // it is done). Waited for at a stop too ([`ANSWER_TIMEOUT`] at most): the printer
            // prints what it took whatever the daemon does, and a job left queued then would
            // print again after the restart, and open the drawer again.
            let answer = conn.status(StatusRequest::Printer, ANSWER_TIMEOUT).await;
            match answer {
                Ok(Some(_)) => {}
                Ok(None) => {
                    conn.abort();
                    return Err(offline(NOT_TAKING.into()));
                }
                Err(e) => {
                    conn.abort();
                    return Err(offline(e));
                }
            }
        }
        if sent {
            ctx.bus.handled(&dev.id);
            // Ready: first since the printer opened, or again after it was stuck on this job.
            if !ready || stalled {
                ctx.report(dev, DeviceState::Ready, None).await;
                ready = true;
            }
        }
        record(ctx, dev, job.id, done, unrecorded).await;
    }
    if !ready {
        ctx.report(dev, DeviceState::Ready, None).await;
    }
    if unrecorded.is_empty() {
        Ok(())
    } else {
        Err(Halt::Unrecorded)
    }
}

/// Records the end of a job (`done`). If the journal cannot take it (a full or failing disk),
/// the job stays queued but is kept in `unrecorded`: the printer task records it again after a
/// pause and does not send it again, or it would print the same receipt over and over for as
/// long as the journal cannot be written. Only a restart in between prints it twice.
async fn record(
    ctx: &Context,
    dev: &DeviceConfig,
    job_id: i64,
    done: Command,
    unrecorded: &mut HashMap<i64, Command>,
) {
    match ctx.ledger.execute(ctx.actor(), done.clone()).await {
        Ok(_) => {
            unrecorded.remove(&job_id);
        }
        Err(e) => {
            tracing::error!(device = %dev.id, job = job_id, error = %e,
                "cannot mark a job printed; it is not sent again, marking it is retried");
            unrecorded.insert(job_id, done);
        }
    }
}
