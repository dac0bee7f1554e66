//! The daemon under a stand-in for systemd: a datagram socket of the test's own in
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC`, as `Type=notify` and `WatchdogSec=` set them (this
//! machine has no systemd as PID 1 to start the real unit).
//!
//! To stop a main loop, the test does what a hung disk does to the ledger: it takes SQLite's
//! write lock on the journal from another connection, so the ledger thread blocks inside its
//! next `BEGIN IMMEDIATE` (for up to the journal's 5 s busy timeout). Nothing in the daemon is
//! made for the test.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tokio::net::UnixDatagram;

/// The test's end of the notify socket.
struct Systemd {
    socket: UnixDatagram,
}

impl Systemd {
    fn bind(path: &Path) -> Systemd {
        Systemd {
            socket: UnixDatagram::bind(path).unwrap(),
        }
    }

    /// Every message that arrives within `window`.
    async fn during(&self, window: Duration) -> Vec<String> {
        let end = Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Ok(Err(e)) => panic!("reading the notify socket: {e}"),
                Err(_) => return out,
            }
        }
    }

    /// Messages up to and including the first one containing `what`; panics after `limit`.
    async fn until(&self, what: &str, limit: Duration) -> Vec<String> {
        let end = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let found = m.lines().any(|l| l == what);
                    out.push(m);
                    if found {
                        return out;
                    }
                }
                Ok(Err(e)) => panic!("reading the notify socket: {e}"),
                Err(_) => panic!("no {what} within {limit:?}; got {out:?}"),
            }
        }
    }
}

/// The daemon in `dir` under the test's stand-in for systemd, with `WATCHDOG_USEC`.
/// `WATCHDOG_PID` is left unset, which sd_watchdog_enabled(3) takes as "this process" (the
/// harness spawns the binary).
fn watched(dir: &Path, watchdog_usec: &str) -> (Daemon, Systemd) {
    let socket_path = dir.join("notify.sock");
    let systemd = Systemd::bind(&socket_path);
    let config = dir.join("storebox.toml");
    std::fs::write(&config, config_text(&dir.join("data"), "")).unwrap();
    let d = Daemon::start_env(
        dir,
        &config,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", watchdog_usec),
        ],
    );
    (d, systemd)
}

fn pings(msgs: &[String]) -> usize {
    msgs.iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_http_pings_while_the_ledger_answers_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // WatchdogSec=0.5: checked every 62.5 ms.
    let (d, systemd) = watched(dir.path(), "500000");

    // READY=1 with the address as status, before any ping; and HTTP answers right then.
    let start = systemd.until("READY=1", Duration::from_secs(30)).await;
    let ready = start.last().unwrap();
    assert!(
        ready.contains(&format!("STATUS=serving on {}", d.base)),
        "{ready:?}"
    );
    assert_eq!(pings(&start), 0, "pings before READY: {start:?}");
    let r = d.client.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Pings keep coming while all is well: 62.5 ms apart, so about 30 in 2 s.
    let healthy = systemd.during(Duration::from_secs(2)).await;
    assert!(pings(&healthy) >= 5, "{healthy:?}");

    // Stop the ledger: hold the journal's write lock, then give the ledger a write.
    let token = d.login(CASHIER).await;
    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    journal.busy_timeout(Duration::from_secs(5)).unwrap();
    journal.execute_batch("BEGIN IMMEDIATE").unwrap();
    let sale = d.spawn_sale(token);
    // A ping answered before the sale reached the ledger may still be on its way.
    let settling = systemd.during(Duration::from_millis(400)).await;
    let stuck = systemd.during(Duration::from_secs(2)).await;
    assert_eq!(
        pings(&stuck),
        0,
        "pings while the ledger is stuck: {stuck:?}"
    );
    assert!(
        settling
            .iter()
            .chain(&stuck)
            .any(|m| m.contains("STATUS=unhealthy: the ledger did not answer")),
        "{settling:?} {stuck:?}"
    );
    // The daemon still serves what needs no ledger meanwhile: only the watchdog knows.
    let r = d.client.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Let go: the sale is recorded after all, and the pings come back with the status.
    journal.execute_batch("ROLLBACK").unwrap();
    let status = sale.await.unwrap().unwrap();
    assert_eq!(status, 201, "the held-up sale");
    let back = systemd.until("WATCHDOG=1", Duration::from_secs(3)).await;
    assert!(
        back.iter()
            .any(|m| m.contains(&format!("STATUS=serving on {}", d.base))),
        "{back:?}"
    );
    let again = systemd.during(Duration::from_secs(1)).await;
    assert!(pings(&again) >= 2, "{again:?}");

    // SIGTERM: STOPPING=1, and a clean exit.
    assert_eq!(d.terminate(), Some(0));
    let end = systemd.until("STOPPING=1", Duration::from_secs(5)).await;
    assert!(end.last().unwrap().contains("STATUS=stopping"), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abstract_socket_and_no_watchdog_for_another_pid() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("storebox-notify-test-{}", std::process::id());
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
    };
    let std_socket = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
    std_socket.set_nonblocking(true).unwrap();
    let systemd = Systemd {
        socket: UnixDatagram::from_std(std_socket).unwrap(),
    };
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), "")).unwrap();
    // WATCHDOG_PID names another process: the variables were inherited, not meant for us.
    let d = Daemon::start_env(
        dir.path(),
        &config,
        &[
            ("NOTIFY_SOCKET", &format!("@{name}")),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    );
    systemd.until("READY=1", Duration::from_secs(30)).await;
    let after = systemd.during(Duration::from_millis(600)).await;
    assert_eq!(pings(&after), 0, "{after:?}");
    assert_eq!(d.terminate(), Some(0));
    systemd.until("STOPPING=1", Duration::from_secs(5)).await;
}

/// A disk stall shorter than `WatchdogSec` does not get the daemon killed, even when it begins
/// long after the last ping: with `WatchdogSec=2` and a stall of 1.4 s starting 0.9 s after a
/// ping, no two pings are 2 s apart. (Pinging only every half of `WatchdogSec` left a gap of
/// 0.9 + 1.4 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shorter_than_the_watchdog_is_tolerated_whenever_it_begins() {
    let dir = tempfile::tempdir().unwrap();
    let (d, systemd) = watched(dir.path(), "2000000");
    systemd.until("READY=1", Duration::from_secs(30)).await;
    let token = d.login(CASHIER).await;
    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    journal.busy_timeout(Duration::from_secs(5)).unwrap();
    // Pings are read from here on, with their times.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        loop {
            let m = systemd.during(Duration::from_millis(20)).await;
            if pings(&m) > 0 && tx.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let first = rx.recv().await.unwrap();
    tokio::time::sleep_until((first + Duration::from_millis(900)).into()).await;
    journal.execute_batch("BEGIN IMMEDIATE").unwrap();
    let sale = d.spawn_sale(token);
    tokio::time::sleep(Duration::from_millis(1400)).await;
    journal.execute_batch("ROLLBACK").unwrap();
    assert_eq!(sale.await.unwrap().unwrap(), 201);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut times = vec![first];
    while let Ok(t) = rx.try_recv() {
        times.push(t);
    }
    listener.abort();
    let longest = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest < Duration::from_millis(1900),
        "{longest:?} between two pings (WatchdogSec=2 s): systemd would kill"
    );
    assert!(times.len() >= 4, "{times:?}");
    assert_eq!(d.terminate(), Some(0));
}
