//! Terminals' `GET /v1/events` streams as a store's Wi-Fi has them all day: a till that froze
//! and reads nothing, streams and keep-alive connections opened and dropped a thousand times,
//! fifty tablets listening at once, and a stream over HTTPS. What the daemon holds is measured
//! from /proc (descriptors, resident memory), never timed: a leak fails, a slow box does not.

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::devices::{store_with_scanner, wait_state};
use common::hw::Events;
use common::{CASHIER, Daemon, cash};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The daemon's open descriptors.
fn fds(d: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", d.child.id()))
        .unwrap()
        .count()
}

/// The daemon's resident memory, in KiB.
fn rss_kib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Waits (up to `secs`) until the daemon holds at most `most` descriptors; returns the count.
async fn fds_settle(d: &Daemon, most: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let n = fds(d);
        if n <= most || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A daemon with a scanner on pos-1 (a pseudo-terminal), ready, and a cashier's token.
async fn rig(dir: &Path, extra: &str) -> (Daemon, Scanner, String) {
    let (mut scanner, d) = store_with_scanner(dir, extra);
    let t = d.login(CASHIER).await;
    wait_state(&d, &t, "scanner-1", "ready").await;
    let master = std::sync::Arc::new(std::sync::Mutex::new(scanner.take_master()));
    (d, master, t)
}

/// The scanner's end of the pty, written from blocking threads (the pty blocks when the
/// daemon is behind).
type Scanner = std::sync::Arc<std::sync::Mutex<std::fs::File>>;

/// Sends `n` scans of TEA, then one of `marker`; returns when all are written.
async fn scan_burst(scanner: &Scanner, n: usize, marker: &str) {
    let (scanner, marker) = (scanner.clone(), marker.to_string());
    tokio::task::spawn_blocking(move || {
        let mut master = scanner.lock().unwrap();
        for _ in 0..n {
            master.write_all(b"6901234567892\r").unwrap();
        }
        master.write_all(format!("{marker}\r").as_bytes()).unwrap();
        master.flush().unwrap();
    })
    .await
    .unwrap();
}

/// The head of a request on `io`, and the response's head read back (its status).
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, token: &str) -> u16 {
    let head = format!(
        "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    io.write_all(head.as_bytes()).await.unwrap();
    io.flush().await.unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), io.read(&mut byte))
            .await
            .expect("no answer in 30 s")
            .unwrap();
        assert_eq!(n, 1, "closed after {:?}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// One `GET /healthz` on a keep-alive connection, read to the end of its body.
async fn healthz_keep_alive(io: &mut TcpStream) {
    io.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = io.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap();
            if buf.len() >= end + 4 + len {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                return;
            }
        }
    }
}

/// A till that froze with its stream open reads nothing while the scanner goes on: the daemon's
/// memory stays bounded, the other tablet of the till hears every scan's end at once, and a
/// sale goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_till_neither_grows_the_daemon_nor_holds_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (d, scanner, t) = rig(dir.path(), "").await;
    let t2 = d.login(CASHIER).await;
    // The frozen till: a small receive buffer, never read.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut frozen = socket.connect(d.addr).await.unwrap();
    assert_eq!(open_stream(&mut frozen, &t).await, 200);
    let live = Events::open(&d.client, &d.base, &t2).await;

    let n = 5_000;
    scan_burst(&scanner, n, "END-1").await;
    live.wait("scan", 120, |v| v["code"] == "END-1").await;
    let after_first = rss_kib(&d);
    for round in 2..=4 {
        let marker = format!("END-{round}");
        let sent = Instant::now();
        scan_burst(&scanner, n, &marker).await;
        let milk = json!({"lines": [{"sku": "MILK", "qty": 1}], "payments": cash(1290)});
        let sale = d.sale(&t, &milk);
        let (status, body) = tokio::time::timeout(Duration::from_secs(60), sale)
            .await
            .expect("a sale held up by a frozen till's stream");
        assert_eq!(status, 201, "{body}");
        live.wait("scan", 120, |v| v["code"] == marker).await;
        eprintln!(
            "round {round}: {n} scans to the live tablet in {:?}",
            sent.elapsed()
        );
    }
    let after_last = rss_kib(&d);
    // The frozen till really is behind: what the daemon has queued for it and it never read.
    let local = frozen.local_addr().unwrap();
    let ss = std::process::Command::new("ss")
        .args(["-tnH", "state", "established"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    let queued: Option<u64> = ss
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[2] == d.addr.to_string() && f[3] == local.to_string())
        .and_then(|f| f[1].parse().ok());
    eprintln!("queued for the frozen till: {queued:?} bytes");
    if let Some(q) = queued {
        assert!(
            q > 100_000,
            "the frozen till was not behind ({q} bytes queued)"
        );
    }
    eprintln!(
        "RSS after {n} scans {after_first} KiB, after {} more {after_last} KiB",
        3 * n
    );
    // 15,000 events kept for the frozen till would be several MiB; the bus keeps 1,024.
    assert!(
        after_last < after_first + 6 * 1024,
        "memory grew from {after_first} KiB to {after_last} KiB"
    );
    drop(frozen);
    drop(scanner);
}

/// A stream opened and dropped 1,000 times, and 1,000 keep-alive connections opened and
/// dropped: the daemon's descriptors and memory come back to where they were, and the address's
/// connection count too (a slot kept would refuse the 193rd).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_and_keep_alive_connections_dropped_a_thousand_times_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (d, scanner, t) = rig(dir.path(), "").await;
    let churn = |n: usize| {
        let (addr, t) = (d.addr, t.clone());
        async move {
            for i in 0..n {
                let mut s = TcpStream::connect(addr).await.unwrap();
                assert_eq!(open_stream(&mut s, &t).await, 200, "stream {i}");
                if i % 2 == 0 {
                    // Half close politely, half vanish with a reset.
                    s.set_zero_linger().unwrap();
                }
                drop(s);
                let mut k = TcpStream::connect(addr).await.unwrap();
                healthz_keep_alive(&mut k).await;
                healthz_keep_alive(&mut k).await;
                drop(k);
            }
        }
    };
    churn(100).await;
    let (fds_before, rss_before) = (fds_settle(&d, 0, 3).await, rss_kib(&d));
    churn(1_000).await;
    let fds_after = fds_settle(&d, fds_before + 2, 60).await;
    let rss_after = rss_kib(&d);
    eprintln!("fds {fds_before} -> {fds_after}; RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(
        fds_after <= fds_before + 2,
        "descriptors {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after < rss_before + 8 * 1024,
        "memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    // Everything still works: a new stream hears a scan.
    let live = Events::open(&d.client, &d.base, &t).await;
    scan_burst(&scanner, 0, "AFTER-CHURN").await;
    live.wait("scan", 30, |v| v["code"] == "AFTER-CHURN").await;
}

/// Fifty tablets listening at once: one scan reaches every one; each costs the daemon one
/// descriptor and little memory; all are given back when they go.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_streams_each_hear_one_scan() {
    let dir = tempfile::tempdir().unwrap();
    let (d, scanner, t) = rig(dir.path(), "").await;
    let (fds_before, rss_before) = (fds(&d), rss_kib(&d));
    let mut streams = Vec::new();
    for _ in 0..50 {
        let client = reqwest::Client::new();
        streams.push(Events::open(&client, &d.base, &t).await);
    }
    let (fds_open, rss_open) = (fds(&d), rss_kib(&d));
    eprintln!(
        "50 streams: {} descriptors, {} KiB ({} KiB a stream)",
        fds_open - fds_before,
        rss_open.saturating_sub(rss_before),
        rss_open.saturating_sub(rss_before) / 50
    );
    assert!(fds_open <= fds_before + 52, "{fds_before} -> {fds_open}");
    scan_burst(&scanner, 0, "ONE-FOR-ALL").await;
    for s in &streams {
        s.wait("scan", 30, |v| v["code"] == "ONE-FOR-ALL").await;
    }
    drop(streams);
    let fds_after = fds_settle(&d, fds_before + 2, 60).await;
    assert!(fds_after <= fds_before + 2, "{fds_before} -> {fds_after}");
}

/// A till's TLS settings: trusts `cert_pem` only, ring, ALPN `http/1.1`.
fn tls_client(cert_pem: &str) -> std::sync::Arc<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    std::sync::Arc::new(config)
}

/// Over HTTPS as over HTTP: a stream hears its till's scans, and streams dropped by the
/// hundred (half with a reset) give back their descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_over_https_hears_scans_and_dropped_ones_are_let_go() {
    use tokio_rustls::TlsConnector;
    use tokio_rustls::rustls::pki_types::ServerName;
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let tls = format!(
        "\n[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let (mut pty, d) = store_with_scanner(dir.path(), &tls);
    assert!(d.base.starts_with("https://"), "{}", d.base);
    let scanner: Scanner = std::sync::Arc::new(std::sync::Mutex::new(pty.take_master()));
    let config = tls_client(&made.cert.pem());
    let connect = || async {
        let tcp = TcpStream::connect(d.addr).await.unwrap();
        TlsConnector::from(config.clone())
            .connect(ServerName::IpAddress(d.addr.ip().into()), tcp)
            .await
            .unwrap()
    };
    // A login over TLS.
    let mut s = connect().await;
    let body = json!({"staff_no": CASHIER.0, "pin": CASHIER.1}).to_string();
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        common::TERMINAL_TOKEN,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.ok();
    let token = answer
        .split("\"token\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_string();
    drop(s);

    let mut stream = connect().await;
    assert_eq!(open_stream(&mut stream, &token).await, 200);
    // Wait until the scanner is up, then scan until the stream hears one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut heard = String::new();
    while !heard.contains("OVER-TLS") {
        assert!(Instant::now() < deadline, "nothing heard: {heard}");
        scan_burst(&scanner, 0, "OVER-TLS").await;
        let mut chunk = [0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(1), stream.read(&mut chunk)).await
        {
            heard.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
    drop(stream);

    let fds_before = fds_settle(&d, 0, 3).await;
    for i in 0..200 {
        let mut s = connect().await;
        assert_eq!(open_stream(&mut s, &token).await, 200, "stream {i}");
        if i % 2 == 0 {
            s.get_ref().0.set_zero_linger().unwrap();
        }
        drop(s);
    }
    let fds_after = fds_settle(&d, fds_before + 2, 60).await;
    eprintln!("TLS: fds {fds_before} -> {fds_after}");
    assert!(fds_after <= fds_before + 2, "{fds_before} -> {fds_after}");
}
