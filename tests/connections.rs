//! The HTTP server against slow and greedy clients on the LAN: a request head that never
//! finishes is cut off, one host cannot take every connection, and a half-sent request does
//! not hold up a shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /healthz` over a new connection from `local` (any 127.x.y.z address), its status line.
async fn healthz_from(local: &str, server: std::net::SocketAddr) -> std::io::Result<String> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(
        format!("{local}:0")
            .parse()
            .map_err(std::io::Error::other)?,
    )?;
    let mut conn = socket.connect(server).await?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: box\r\nConnection: close\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
        .await
        .map_err(std::io::Error::other)??;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// Slowloris: a request line, then a header byte every two seconds. The connection is closed
/// once its head has taken 30 s, however it trickles.
#[test]
fn a_request_head_that_never_ends_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let mut slow = TcpStream::connect(d.addr).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 256];
    let closed_after = loop {
        match slow.read(&mut buf) {
            Ok(_) => break t.elapsed(),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break t.elapsed(),
        }
        assert!(
            t.elapsed() < Duration::from_secs(45),
            "still open after 45 s"
        );
        if slow.write_all(b"X").is_err() {
            break t.elapsed();
        }
    };
    assert!(closed_after >= Duration::from_secs(25), "{closed_after:?}");
    d.terminate();
}

/// One host holding as many connections as it may cannot open more, and another host (a
/// till) still gets its answer.
#[tokio::test]
async fn one_host_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let mut silent = Vec::new();
    for _ in 0..192 {
        silent.push(tokio::net::TcpStream::connect(d.addr).await.unwrap());
    }
    // The limit holds whatever order the connections are accepted in: give the daemon a
    // moment to take them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = healthz_from("127.0.0.1", d.addr).await;
    assert!(
        refused.as_deref().map_or(true, str::is_empty),
        "a 193rd connection from one host was served: {refused:?}"
    );
    let till = healthz_from("127.0.0.2", d.addr).await.unwrap();
    assert!(till.contains(" 200 "), "{till}");
    // Once the greedy host lets go, it is served again.
    silent.truncate(100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = healthz_from("127.0.0.1", d.addr).await.unwrap();
    assert!(again.contains(" 200 "), "{again}");
    drop(silent);
    d.terminate();
}

/// A few hosts holding every connection the daemon serves (four addresses at their limit of
/// 192 each: a guest network bridged in by mistake, a host with several addresses) no longer
/// lock the tills out: the greediest host's oldest connection is closed to make room for a
/// host with fewer. Before, a till from a fifth address was refused for as long as they held on.
#[tokio::test]
async fn a_few_greedy_hosts_cannot_lock_the_tills_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let mut greedy = Vec::new();
    for host in 11..15 {
        for _ in 0..192 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(format!("127.0.0.{host}:0").parse().unwrap())
                .unwrap();
            greedy.push(socket.connect(d.addr).await.unwrap());
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for till in ["127.0.0.2", "127.0.0.3", "127.0.0.2"] {
        let answer = healthz_from(till, d.addr).await;
        assert!(
            answer.as_deref().is_ok_and(|a| a.contains(" 200 ")),
            "a till beside 768 connections from four hosts: {answer:?}"
        );
    }
    // A greedy connection made room for each till that found every slot taken (one at least,
    // one a till at most: each till's slot is freed once its answer is out), closed by the
    // daemon; the others are still open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buf = [0u8; 16];
    let mut closed = 0;
    for c in &greedy {
        match c.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => closed += 1,
        }
    }
    assert!(
        (1..=3).contains(&closed),
        "{closed} greedy connections closed"
    );
    assert!(d.log_text().contains("closed to make room"));
    drop(greedy);
    d.terminate();
}

/// SIGTERM while a client is half-way through sending a request: the daemon still stops, in
/// well under systemd's 60 s.
#[test]
fn a_half_sent_request_does_not_hold_up_the_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), "");
    let mut slow = TcpStream::connect(d.addr).unwrap();
    slow.write_all(b"POST /v1/sales HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n{\"lines\"")
        .unwrap();
    let mut half_head = TcpStream::connect(d.addr).unwrap();
    half_head
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on the daemon's own pid with a signal number.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let status = loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    drop((slow, half_head));
}

/// A second SIGTERM or SIGINT ends the daemon at once, whatever its shutdown waits for (here
/// a sale held up by a journal another process has locked, as a hung disk would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start_in(dir.path(), "");
    let token = d.login(common::CASHIER).await;
    let journal = rusqlite::Connection::open(dir.path().join("data/journal.sqlite3")).unwrap();
    journal.execute_batch("BEGIN IMMEDIATE").unwrap();
    let sale = d.spawn_sale(token);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // SAFETY: kill(2) on the daemon's own pid with signal numbers.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        d.child.try_wait().unwrap().is_none(),
        "the held-up sale was not waited for"
    );
    // Meanwhile the port is closed: a till connecting now is refused at once, not left
    // waiting for the shutdown to end.
    let refused = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(d.addr),
    )
    .await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "a connection during the shutdown: {refused:?}"
    );
    unsafe { libc::kill(d.child.id() as i32, libc::SIGINT) };
    let t = Instant::now();
    let status = loop {
        if let Some(status) = d.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a second signal did nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(130));
    drop(journal);
    let _ = sale.await;
}

/// A request whose body stops coming is answered `408` after 10 s, and its connection freed.
#[test]
fn a_body_that_stops_coming_is_answered_408() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let mut slow = TcpStream::connect(d.addr).unwrap();
    slow.write_all(
        format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            common::TERMINAL_TOKEN
        )
        .as_bytes(),
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let t = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = slow.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("body_timeout"), "{text}");
    assert!(t.elapsed() >= Duration::from_secs(9), "{:?}", t.elapsed());
    d.terminate();
}
