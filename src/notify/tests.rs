//! The notify protocol against real datagram sockets: a path in a temporary directory and an
//! abstract name, as systemd hands out either.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// Every message that arrives on `socket` within `window`.
fn drain(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => return out,
        }
    }
}

#[test]
fn socket_names_are_absolute_paths_or_abstract() {
    assert!(Notifier::new(OsStr::new("/run/systemd/notify")).is_ok());
    assert!(Notifier::new(OsStr::new("@/org/freedesktop/systemd1/notify/42")).is_ok());
    for bad in ["", "@", "run/systemd/notify", "vsock:2:1234"] {
        assert!(
            matches!(
                Notifier::new(OsStr::new(bad)),
                Err(NotifyError::BadSocket(_))
            ),
            "{bad:?} accepted"
        );
    }
    let long = format!("/{}", "x".repeat(200));
    assert!(Notifier::new(OsStr::new(&long)).is_err());
    assert!(!Notifier::default().enabled());
}

#[tokio::test]
async fn messages_reach_a_path_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let rx = UnixDatagram::bind(&path).unwrap();
    let n = Notifier::new(path.as_os_str()).unwrap();
    assert!(n.enabled());
    n.send("READY=1\nSTATUS=serving").await.unwrap();
    n.send(&status("two\nlines")).await.unwrap();
    assert_eq!(
        drain(&rx, Duration::from_millis(200)),
        ["READY=1\nSTATUS=serving", "STATUS=two lines"]
    );
}

#[tokio::test]
async fn messages_reach_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!(
        "storebox-test-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let rx = UnixDatagram::bind_addr(&addr).unwrap();
    let n = Notifier::new(OsStr::new(&format!("@{name}"))).unwrap();
    n.send("WATCHDOG=1").await.unwrap();
    assert_eq!(drain(&rx, Duration::from_millis(200)), ["WATCHDOG=1"]);
}

#[tokio::test]
async fn nobody_listening_is_an_error_and_no_socket_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    let n = Notifier::new(dir.path().join("gone").as_os_str()).unwrap();
    assert!(matches!(n.send("READY=1").await, Err(NotifyError::Send(_))));
    Notifier::default().send("READY=1").await.unwrap();
}

#[test]
fn watchdog_period_follows_sd_watchdog_enabled() {
    let me = 4242;
    let period = |usec, pid| watchdog_period_from(usec, pid, me);
    assert_eq!(period(None, None).unwrap(), None);
    assert_eq!(
        period(Some("30000000"), None).unwrap(),
        Some(Duration::from_secs(15))
    );
    assert_eq!(
        period(Some("500000"), Some("4242")).unwrap(),
        Some(Duration::from_millis(250))
    );
    // Inherited from a parent that was being watched: not ours to feed.
    assert_eq!(period(Some("500000"), Some("1")).unwrap(), None);
    // No WATCHDOG_USEC: no watchdog, whatever WATCHDOG_PID says.
    assert_eq!(period(None, Some("4242")).unwrap(), None);
    for (usec, pid) in [
        ("0", None),
        ("-5", None),
        ("soon", None),
        ("", None),
        ("500000", Some("x")),
        ("500000", Some("0")),
    ] {
        assert!(
            matches!(
                period(Some(usec), pid),
                Err(NotifyError::BadWatchdog { .. })
            ),
            "{usec:?} {pid:?} accepted"
        );
    }
}

#[tokio::test]
async fn pings_only_while_the_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let rx = UnixDatagram::bind(&path).unwrap();
    let n = Notifier::new(path.as_os_str()).unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let h = healthy.clone();
    let feeder = tokio::spawn(async move {
        feed(&n, Duration::from_millis(20), "serving", || {
            let ok = h.load(Ordering::SeqCst);
            async move { if ok { Ok(()) } else { Err("stuck".into()) } }
        })
        .await
    });
    let pings = |msgs: &[String]| msgs.iter().filter(|m| m.contains("WATCHDOG=1")).count();

    let rx = Arc::new(rx);
    let read = |window| {
        let rx = rx.clone();
        tokio::task::spawn_blocking(move || drain(&rx, window))
    };
    let healthy_msgs = read(Duration::from_millis(300)).await.unwrap();
    assert!(pings(&healthy_msgs) >= 5, "{healthy_msgs:?}");

    healthy.store(false, Ordering::SeqCst);
    // Let a ping already under way arrive, then listen.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = read(Duration::from_millis(10)).await.unwrap();
    let stuck = read(Duration::from_millis(300)).await.unwrap();
    assert_eq!(pings(&stuck), 0, "{stuck:?}");

    healthy.store(true, Ordering::SeqCst);
    let again = read(Duration::from_millis(300)).await.unwrap();
    assert!(pings(&again) >= 5, "{again:?}");
    assert!(
        again.iter().any(|m| m.contains("STATUS=serving")),
        "{again:?}"
    );
    feeder.abort();
}

#[test]
fn a_blocking_notification_reaches_the_socket_and_a_disabled_one_goes_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let rx = UnixDatagram::bind(&path).unwrap();
    let n = Notifier::new(path.as_os_str()).unwrap();
    n.notify_blocking(&replay_progress(2000, 40000));
    assert_eq!(
        drain(&rx, Duration::from_millis(200)),
        [
            "EXTEND_TIMEOUT_USEC=60000000\nSTATUS=starting: replaying the journal into the cache, event 2000 of 40000"
        ]
    );
    n.notify_blocking(&replay_finishing());
    assert_eq!(
        drain(&rx, Duration::from_millis(200)),
        [
            "EXTEND_TIMEOUT_USEC=300000000\nSTATUS=starting: journal replayed; writing the cache's member index"
        ]
    );
    Notifier::default().notify_blocking("READY=1");
    drop(rx);
    // No one listening: logged, not fatal.
    n.notify_blocking("READY=1");
}
