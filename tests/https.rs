//! HTTPS on the LAN: the real daemon with `[http.tls]` and a certificate made at test time,
//! talked to by a small TLS client: tokio-rustls with ring (already a dependency of the daemon)
//! and HTTP/1.1 written by hand. reqwest's `rustls` feature would bring aws-lc into the build,
//! and `rustls-no-provider` would add hyper-rustls and the platform verifier for this one file.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{CASHIER, Daemon, TERMINAL_TOKEN};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// Makes a self-signed certificate for 127.0.0.1 in `dir`, starts the daemon serving it, and
/// returns the daemon with the certificate's PEM (what a terminal is told to trust).
fn start_https(dir: &Path) -> (Daemon, String) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generating a certificate");
    let cert_pem = made.cert.pem();
    let cert = dir.join("storebox-cert.pem");
    let key = dir.join("storebox-key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let extra = format!(
        "\n[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let d = Daemon::start_in(dir, &extra);
    assert!(d.base.starts_with("https://"), "{}", d.base);
    (d, cert_pem)
}

/// A terminal's TLS settings: trusts `cert_pem` only, ring, the given protocol versions.
fn client_config(
    cert_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn tls13_and_12(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    client_config(cert_pem, rustls::DEFAULT_VERSIONS)
}

async fn connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config.clone())
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
}

/// One HTTP/1.1 request on a TLS connection of its own: (status, JSON body or null).
async fn request(
    stream: &mut TlsStream<TcpStream>,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(token) = bearer {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), read_response(stream))
        .await
        .expect("no response within 30 s")
}

/// Reads one response with a `Content-Length` body.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed before the end of the response head: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed in the middle of the body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    (status, body)
}

async fn get_health(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> u16 {
    let mut s = connect(addr, config).await.expect("TLS handshake");
    let (status, body) = request(&mut s, "GET", "/healthz", None, None).await;
    assert_eq!(body["store_id"], "sh-001", "{body}");
    status
}

/// Waits (up to 20 s) for `needle` to appear in the daemon's log.
async fn wait_for_log(d: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.log_text().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "'{needle}' not logged:\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminals_log_in_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cert_pem) = start_https(dir.path());
    assert!(d.log_text().contains("listening on https://"));

    // TLS 1.3 by default, ALPN http/1.1.
    let config = tls13_and_12(&cert_pem);
    let mut s = connect(d.addr, &config).await.expect("TLS 1.3 handshake");
    {
        let (_, conn) = s.get_ref();
        assert_eq!(
            conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    let (status, body) = request(&mut s, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["store_id"], "sh-001");

    // An older terminal that speaks TLS 1.2 only.
    let tls12 = client_config(&cert_pem, &[&rustls::version::TLS12]);
    let mut s = connect(d.addr, &tls12).await.expect("TLS 1.2 handshake");
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (status, _) = request(&mut s, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);

    // A cashier logs in and works over HTTPS.
    let mut s = connect(d.addr, &config).await.unwrap();
    let (status, body) = request(
        &mut s,
        "POST",
        "/v1/sessions",
        Some(TERMINAL_TOKEN),
        Some(&json!({"staff_no": CASHIER.0, "pin": CASHIER.1})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let mut s = connect(d.addr, &config).await.unwrap();
    let (status, body) = request(&mut s, "GET", "/v1/products/TEA", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sku"], "TEA");

    // Several requests on one kept-alive connection.
    let mut s = connect(d.addr, &config).await.unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = read_response(&mut s).await;
        assert_eq!(status, 200);
    }
    drop(s);

    // A terminal that does not trust this certificate gets no connection, and the daemon
    // says why.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let stranger = tls13_and_12(&other.cert.pem());
    assert!(connect(d.addr, &stranger).await.is_err());
    wait_for_log(&d, "TLS handshake failed").await;
    assert_eq!(get_health(d.addr, &config).await, 200);

    // Graceful shutdown works as over plain HTTP, even with a client mid-handshake.
    let _silent = TcpStream::connect(d.addr).await.unwrap();
    let log = d.log.clone();
    let started = Instant::now();
    assert_eq!(d.terminate(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown waited for the silent client ({:?})",
        started.elapsed()
    );
    assert!(log.lock().unwrap().contains("stopped cleanly"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_silent_clients_do_not_block_https() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cert_pem) = start_https(dir.path());
    let config = tls13_and_12(&cert_pem);

    // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    let mut plain = TcpStream::connect(d.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), plain.read_to_end(&mut answer))
        .await
        .expect("the daemon should close a plain-HTTP connection");
    // Closed, or reset after a TLS alert: either way no HTTP.
    let _ = read;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    wait_for_log(&d, "TLS handshake failed").await;
    assert_eq!(get_health(d.addr, &config).await, 200);

    // Clients that open TCP and say nothing, or stop half-way through a ClientHello, hold no
    // one else up: another terminal connects at once, not after the 10 s handshake timeout.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(d.addr).await.unwrap());
    }
    let mut half = TcpStream::connect(d.addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    silent.push(half);
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(get_health(d.addr, &config).await, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "HTTPS requests waited {:?} behind silent clients",
        started.elapsed()
    );

    // The silent ones are dropped when their handshake time is up.
    for mut s in silent {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a silent client was kept past the timeout");
        assert!(rest.is_empty() || !rest.starts_with(b"HTTP/"));
    }
    assert!(started.elapsed() >= Duration::from_secs(9));
    assert_eq!(get_health(d.addr, &config).await, 200);
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
}

/// One host's silent connections take at most its own share of the TLS handshakes: a till on
/// another address still gets through while they sit there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_take_every_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cert_pem) = start_https(dir.path());
    let config = tls13_and_12(&cert_pem);
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(d.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let tcp = socket.connect(d.addr).await.unwrap();
    let mut till = TlsConnector::from(config.clone())
        .connect(ServerName::IpAddress(d.addr.ip().into()), tcp)
        .await
        .expect("a till's handshake while another host holds 300 silent connections");
    let (status, _) = request(&mut till, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    drop(silent);
}
