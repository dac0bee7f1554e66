//! systemd's service notifications (sd_notify(3)), spoken in-crate: no libsystemd, no new
//! dependency.
//!
//! Under `Type=notify` systemd passes `NOTIFY_SOCKET`, a datagram socket named by an absolute
//! path or, with a leading `@`, an abstract name. A message is newline-separated `KEY=value`
//! assignments: `READY=1` once storebox serves HTTP, `STATUS=` for `systemctl status`,
//! `STOPPING=1` when it begins to shut down, `WATCHDOG=1` to feed `WatchdogSec=`. The kernel
//! attaches the sender's pid, which `NotifyAccess=main` checks.
//!
//! The watchdog is fed only while the main loops are healthy: each period the ledger thread must
//! answer a ping — which queues behind the real work, so a writer stuck on a hung disk stops
//! answering — and the HTTP server task must still run. When a check fails the ping is
//! withheld, and after `WatchdogSec` systemd kills the daemon and `Restart=on-failure` starts
//! it again. Without `NOTIFY_SOCKET` (a terminal, most tests) every send is a no-op.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;

/// How long one notification may wait for room in systemd's socket queue.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the ledger may take to answer a ping when there is no watchdog period to go by.
const DEFAULT_CHECK: Duration = Duration::from_secs(5);

/// Why a notification could not be set up or sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Occurs when `NOTIFY_SOCKET` is neither an absolute path nor an `@` abstract name, or is
    /// too long for a socket address.
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an @abstract socket name")]
    BadSocket(String),
    /// Occurs when `WATCHDOG_USEC` or `WATCHDOG_PID` is not a positive integer.
    #[error("{var}={value:?} is not a positive integer")]
    BadWatchdog {
        /// The environment variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// Occurs when the datagram cannot be sent: no one listens on the socket, or its queue
    /// stayed full for `SEND_TIMEOUT`.
    #[error("sending to the notify socket: {0}")]
    Send(#[source] std::io::Error),
}

/// Sends notifications to systemd, or nothing when not started by it. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    /// The notify socket; `None` sends nothing.
    socket: Option<SocketAddr>,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`; a no-op one when it is unset or unusable (logged).
    pub fn from_env() -> Notifier {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Notifier::default(),
            Some(value) => Notifier::new(&value).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "not notifying systemd");
                Notifier::default()
            }),
        }
    }

    /// The notifier for a `NOTIFY_SOCKET` value: `/path` or `@abstract-name`.
    pub fn new(value: &OsStr) -> Result<Notifier, NotifyError> {
        let bad = || NotifyError::BadSocket(value.to_string_lossy().into_owned());
        let bytes = value.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(Path::new(value)).map_err(|_| bad())?,
            Some(b'@') if bytes.len() > 1 => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(&bytes[1..]).map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        Ok(Notifier { socket: Some(addr) })
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one message (`KEY=value` lines). A fresh socket each time, as sd_notify does, so
    /// a systemd that re-executed itself is still reached.
    pub async fn send(&self, message: &str) -> Result<(), NotifyError> {
        let Some(addr) = &self.socket else {
            return Ok(());
        };
        let socket = connect(addr)?;
        socket.set_nonblocking(true).map_err(NotifyError::Send)?;
        let socket = tokio::net::UnixDatagram::from_std(socket).map_err(NotifyError::Send)?;
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(message.as_bytes())).await {
            Ok(sent) => sent.map(|_| ()).map_err(NotifyError::Send),
            Err(_) => Err(NotifyError::Send(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the socket's queue stayed full",
            ))),
        }
    }

    /// Sends one message; a failure is logged, never fatal (systemd notices what is missing).
    pub async fn notify(&self, message: &str) {
        if let Err(e) = self.send(message).await {
            tracing::warn!(error = %e, message, "systemd notification failed");
        }
    }

    /// [`Notifier::notify`] from a thread that is not the runtime's (the journal's replay at
    /// start-up): waits at most `SEND_TIMEOUT` for room in the socket's queue.
    pub fn notify_blocking(&self, message: &str) {
        let Some(addr) = &self.socket else {
            return;
        };
        let sent = connect(addr).and_then(|socket| {
            socket
                .set_write_timeout(Some(SEND_TIMEOUT))
                .and_then(|()| socket.send(message.as_bytes()))
                .map_err(NotifyError::Send)
        });
        if let Err(e) = sent {
            tracing::warn!(error = %e, message, "systemd notification failed");
        }
    }
}

/// A fresh datagram socket connected to `addr`.
fn connect(addr: &SocketAddr) -> Result<UnixDatagram, NotifyError> {
    let socket = UnixDatagram::unbound().map_err(NotifyError::Send)?;
    socket.connect_addr(addr).map_err(NotifyError::Send)?;
    Ok(socket)
}

/// How often a long replay of the journal at start-up tells systemd it is getting on, and how
/// much longer each message gives it (`EXTEND_TIMEOUT_USEC`).
pub const REPLAY_NOTE_EVERY: Duration = Duration::from_secs(10);
const REPLAY_EXTENSION: Duration = Duration::from_secs(60);

/// What a long replay sends once every event is replayed: the member index entries it
/// deferred are written next (`cache::bulk`, tens of seconds for a million members, more on an
/// SD card), with no progress to report meanwhile, so the extension is longer.
pub fn replay_finishing() -> String {
    format!(
        "EXTEND_TIMEOUT_USEC={}\n{}",
        REPLAY_FINISH_EXTENSION.as_micros(),
        status("starting: journal replayed; writing the cache's member index")
    )
}
const REPLAY_FINISH_EXTENSION: Duration = Duration::from_secs(300);

/// What a long replay sends when it is stopped (SIGTERM) half-way: the deferred member index
/// entries of the events replayed are written before it stops, so that the next start goes on
/// from there — as long as at the end of a replay, more than `TimeoutStopSec` may give it
/// (killed, the next start would replay from the first event again).
pub fn replay_stopping() -> String {
    format!(
        "STOPPING=1\nEXTEND_TIMEOUT_USEC={}\n{}",
        REPLAY_FINISH_EXTENSION.as_micros(),
        status("stopping: writing the cache's member index for the events replayed")
    )
}

/// What a long replay at start-up sends: more time than `TimeoutStartSec` gives (a store's
/// years of journal replayed into a rebuilt cache outlast it on an SD card), and how far it is,
/// for `systemctl status`. Sent only while events are replayed: a replay that stops getting on
/// (a hung disk) gets no more time.
pub fn replay_progress(applied: u64, last: u64) -> String {
    format!(
        "EXTEND_TIMEOUT_USEC={}\n{}",
        REPLAY_EXTENSION.as_micros(),
        status(&format!(
            "starting: replaying the journal into the cache, event {applied} of {last}"
        ))
    )
}

/// A `STATUS=` line; newlines would start new assignments, so they become spaces.
pub fn status(text: &str) -> String {
    format!("STATUS={}", text.replace('\n', " "))
}

/// How often to feed the watchdog, from `WATCHDOG_USEC` and `WATCHDOG_PID`; `None` when there is
/// no watchdog for this process (see [`watchdog_period_from`]). A bad value is logged.
pub fn watchdog_period() -> Option<Duration> {
    let var = |name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let (usec, pid) = (var("WATCHDOG_USEC"), var("WATCHDOG_PID"));
    match watchdog_period_from(usec.as_deref(), pid.as_deref(), std::process::id()) {
        Ok(period) => period,
        Err(e) => {
            tracing::warn!(error = %e, "systemd watchdog not fed");
            None
        }
    }
}

/// The rules of sd_watchdog_enabled(3): no watchdog without `WATCHDOG_USEC`; none when
/// `WATCHDOG_PID` is set and names another process (the variables were inherited); else ping
/// every half of `WATCHDOG_USEC`, as that page advises.
pub fn watchdog_period_from(
    usec: Option<&str>,
    pid: Option<&str>,
    me: u32,
) -> Result<Option<Duration>, NotifyError> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    let usec = positive(usec).ok_or_else(|| NotifyError::BadWatchdog {
        var: "WATCHDOG_USEC",
        value: usec.to_string(),
    })?;
    if let Some(pid) = pid {
        let pid = positive(pid).ok_or_else(|| NotifyError::BadWatchdog {
            var: "WATCHDOG_PID",
            value: pid.to_string(),
        })?;
        if pid != u64::from(me) {
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(usec) / 2))
}

fn positive(text: &str) -> Option<u64> {
    text.trim().parse::<u64>().ok().filter(|n| *n > 0)
}

/// What must be alive for the watchdog to be fed.
pub struct Liveness {
    /// The single writer: it must answer a ping.
    pub ledger: Ledger,
    /// The HTTP server task: it must not have ended.
    pub http: AbortHandle,
}

impl Liveness {
    /// `Ok` when the HTTP server task runs and the ledger answered a ping within `within`;
    /// else why not.
    pub async fn check(&self, within: Duration) -> Result<(), String> {
        if self.http.is_finished() {
            return Err("the HTTP server has stopped".into());
        }
        match tokio::time::timeout(within, self.ledger.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the ledger is gone: {e}")),
            Err(_) => Err(format!(
                "the ledger did not answer within {} ms",
                within.as_millis()
            )),
        }
    }
}

/// Tells systemd storebox is ready (`serving` becomes the status line), feeds the watchdog
/// while `live` passes, and sends `STOPPING=1` as soon as `shutdown` is cancelled, then
/// returns. Call it once the HTTP listener is bound and its server task spawned.
pub async fn supervise(
    notifier: Notifier,
    live: Liveness,
    serving: String,
    shutdown: CancellationToken,
) {
    let period = watchdog_period();
    notifier
        .notify(&format!("READY=1\n{}", status(&serving)))
        .await;
    if let Some(p) = period {
        tracing::info!(
            every_ms = (p / 4).as_millis() as u64,
            "feeding the systemd watchdog"
        );
    }
    let within = period.unwrap_or(DEFAULT_CHECK);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = async {
            match period {
                // Checked four times a period (each check waiting up to a period for the
                // ledger), so the last ping before a stall is at most an eighth of
                // `WatchdogSec` old: a stall is tolerated for nearly all of `WatchdogSec`,
                // not for half of it when it began just before a check.
                Some(p) => feed(&notifier, p / 4, &serving, || live.check(within)).await,
                None => std::future::pending().await,
            }
        } => {}
    }
    notifier
        .notify(&format!(
            "STOPPING=1\n{}",
            status("stopping: finishing requests")
        ))
        .await;
}

/// Every `period`, runs `check` and sends `WATCHDOG=1` only if it passed. The first failure is
/// logged and shown as the status; recovery restores `serving` as the status. Never returns.
pub async fn feed<F, Fut>(notifier: &Notifier, period: Duration, serving: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match check().await {
            Ok(()) => {
                if failing {
                    tracing::info!("healthy again: systemd watchdog pings resume");
                    notifier
                        .notify(&format!("WATCHDOG=1\n{}", status(serving)))
                        .await;
                } else {
                    notifier.notify("WATCHDOG=1").await;
                }
                failing = false;
            }
            Err(why) => {
                if !failing {
                    tracing::error!(
                        reason = %why,
                        "withholding the systemd watchdog ping: systemd restarts storebox if this lasts"
                    );
                    notifier.notify(&status(&format!("unhealthy: {why}"))).await;
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
