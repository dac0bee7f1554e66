//! HTTPS on the store's LAN: a [`Listener`] for `axum::serve` that yields TLS streams.
//!
//! axum's serve loop awaits [`Listener::accept`] before it takes the next connection. Were the
//! TLS handshake done inside `accept`, one terminal that opens a connection and says nothing (or
//! a port scanner, or a plain-HTTP client that waits for an answer) would stall every other
//! terminal until it gave up. So a background task accepts TCP connections and runs each
//! handshake in its own task, bounded by [`HANDSHAKE_TIMEOUT`]; finished streams come to the
//! listener through a channel, and `accept` only receives.
//!
//! At shutdown the server (`app/serve.rs`) stops calling `accept` and drops the listener,
//! which stops the background task (closing the port and abandoning handshakes still under
//! way), then it waits for the connections it already serves.
//!
//! Handshakes are capped in all ([`MAX_HANDSHAKES`]) and per address
//! ([`MAX_HANDSHAKES_PER_PEER`]): one host's silent sockets cannot take every handshake slot
//! and lock the tills out before the server's own per-address cap is reached.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use crate::config::TlsFiles;

/// How long a client has to complete its TLS handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes under way at most; connections beyond are closed at once. A store has a handful
/// of terminals; this only bounds what a misbehaving host on the LAN can make the box hold.
const MAX_HANDSHAKES: usize = 256;

/// Handshakes under way at most from one address.
const MAX_HANDSHAKES_PER_PEER: usize = 16;

/// Finished handshakes waiting for axum to take them.
const READY_QUEUE: usize = 64;

/// The server side of TLS: the ring provider (never aws-lc: the box cross-compiles to ARM),
/// TLS 1.3 and 1.2, the certificate and key from the config, and ALPN `http/1.1` only (the
/// server speaks HTTP/1.1 alone).
pub fn server_config(tls: &TlsFiles) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
            tls.certified.clone(),
        )));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A TLS connection ready for HTTP, and the client's address.
type Ready = (TlsStream<TcpStream>, SocketAddr);

/// Accepts TLS connections for `axum::serve`; handshakes happen off its accept path.
pub struct TlsListener {
    /// Streams whose handshake finished, from the background task.
    ready: mpsc::Receiver<Ready>,
    /// The bound address (for `local_addr`).
    local_addr: SocketAddr,
    /// The task accepting TCP and spawning handshakes; aborted when the listener is dropped.
    acceptor: JoinHandle<()>,
}

impl TlsListener {
    /// Serves TLS with `config` on an already bound `tcp` listener. Must be called within the
    /// tokio runtime (it spawns the accepting task).
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(TlsListener {
            ready,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        // Dropping the task's JoinSet aborts the handshakes still under way.
        self.acceptor.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            None => {
                // The accepting task only ends when this listener is dropped; if it died
                // anyway, no connection will ever come: say so once and wait for shutdown.
                tracing::error!("the TLS accept task stopped; no new connections are accepted");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// How long data sent to a terminal may stay unacknowledged before the connection is given
/// up, and how long a silent connection waits before keep-alive probes ask whether the
/// terminal is still there. Without them a till that vanished (Wi-Fi gone, switched off at the
/// plug) keeps its event stream, and the scans and card reads sent into it, for the kernel's
/// ~15 minutes of retransmissions; with them for about a minute. A till whose link comes back
/// later opens the stream again and gets what it missed (`Last-Event-ID`).
pub const PEER_GONE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Sets up an accepted connection (HTTP and HTTPS alike): Nagle's algorithm off — with it on,
/// a small write that follows another one not yet acknowledged waits for that
/// acknowledgement, which a terminal delays by up to 40 ms when it has nothing to send (a
/// device event on a terminal's stream right after another one arrived 40 ms late) — and a
/// terminal that vanished found out within [`PEER_GONE_AFTER`].
pub fn tune(stream: &mut TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY on a connection");
    }
    let socket = socket2::SockRef::from(&*stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(3);
    if let Err(e) = socket.set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not set TCP keep-alive on a connection");
    }
    if let Err(e) = socket.set_tcp_user_timeout(Some(PEER_GONE_AFTER)) {
        tracing::debug!(error = %e, "could not set TCP_USER_TIMEOUT on a connection");
    }
}

/// Accepts TCP connections and gives each its own handshake task, until the listener is gone.
async fn accept_loop(tcp: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<Ready>) {
    let mut handshakes = JoinSet::new();
    let mut by_peer: HashMap<IpAddr, usize> = HashMap::new();
    let mut refused_logged = false;
    loop {
        tokio::select! {
            _ = ready.closed() => return,
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                match done {
                    Ok(ip) => {
                        if let Some(n) = by_peer.get_mut(&ip) {
                            *n -= 1;
                            if *n == 0 {
                                by_peer.remove(&ip);
                            }
                        }
                    }
                    Err(e) => {
                        // A task that panicked no longer says whose it was: the counts start
                        // afresh from those still under way.
                        tracing::error!(error = %e, "a TLS handshake task ended abnormally");
                        by_peer.clear();
                    }
                }
            }
            accepted = tcp.accept() => match accepted {
                Ok((mut stream, peer)) => {
                    tune(&mut stream);
                    let mine = by_peer.get(&peer.ip()).copied().unwrap_or(0);
                    if handshakes.len() >= MAX_HANDSHAKES || mine >= MAX_HANDSHAKES_PER_PEER {
                        if !refused_logged {
                            tracing::warn!(%peer, "too many TLS handshakes under way; connection closed");
                            refused_logged = true;
                        }
                        continue;
                    }
                    refused_logged = false;
                    *by_peer.entry(peer.ip()).or_insert(0) += 1;
                    handshakes.spawn(handshake(acceptor.clone(), stream, peer, ready.clone()));
                }
                Err(e) => accept_error(e).await,
            },
        }
    }
}

/// One handshake, bounded in time; a failure concerns this client only. Returns the client's
/// address, for the count of handshakes per address.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<Ready>,
) -> IpAddr {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // An error means the server is shutting down: the connection is simply closed.
            let _ = ready.send((tls, peer)).await;
        }
        Ok(Err(e)) if is_tls_error(&e) => {
            // Worth a line: typically a terminal set up for http:// or one that does not trust
            // the store's certificate.
            tracing::info!(%peer, error = %e, "TLS handshake failed");
        }
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection lost during TLS handshake"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
    peer.ip()
}

/// Whether the handshake failed on TLS itself (as opposed to the connection going away).
fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// What axum does for its own TCP listener: errors of one connection are ignored; others (out
/// of file descriptors) are logged and followed by a pause instead of a busy loop.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection the server accepted gives a vanished terminal up after about a minute:
    /// the options are read back from the real socket.
    #[tokio::test]
    async fn an_accepted_connection_gives_up_on_a_vanished_terminal() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (mut stream, _) = listener.accept().await.expect("accept");
        tune(&mut stream);
        assert!(stream.nodelay().expect("TCP_NODELAY"));
        let socket = socket2::SockRef::from(&stream);
        assert!(socket.keepalive().expect("SO_KEEPALIVE"));
        assert_eq!(socket.tcp_keepalive_time().ok(), Some(KEEPALIVE_IDLE));
        assert_eq!(
            socket.tcp_user_timeout().ok().flatten(),
            Some(PEER_GONE_AFTER)
        );
    }
}
