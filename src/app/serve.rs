//! The HTTP server's own accept loop (instead of `axum::serve`), for what a store LAN needs
//! and `axum::serve` does not give:
//!
//! - **A time limit on a request's head**: a connection that sends no complete request head
//!   for [`HEAD_TIMEOUT`] (a silent socket, one header byte a second, or an idle keep-alive
//!   connection) is closed. `axum::serve` builds hyper without a timer, and hyper's own 30-s
//!   limit then does nothing: a thousand silent sockets used up the daemon's file descriptors
//!   and no till could connect.
//! - **Limits on connections**: at most [`MAX_CONNECTIONS`] in all (below the file-descriptor
//!   limit: journal, cache, devices and the broker need theirs) and [`MAX_PER_PEER`] from one
//!   address, so one misbehaving host cannot lock the tills out. Beyond them the connection is
//!   closed at once.
//! - **A bounded shutdown**: at shutdown every connection finishes the request it is serving
//!   and closes; one still sending its request after [`SHUTDOWN_GRACE`] is dropped (a
//!   half-sent request held the shutdown, and systemd's restart, for ever).
//!
//! A request head larger than [`MAX_HEAD`] is refused by hyper (`431`), as are malformed heads
//! (`400`) and over-long URIs (`414`): hyper answers those itself, with an empty body, before
//! the router's JSON errors can (docs/decisions.md).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a connection may take to send a request's head, counted from the end of the
/// answer before (so also how long a keep-alive connection may sit idle).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once, from all peers.
pub const MAX_CONNECTIONS: usize = 768;
/// Connections served at once from one address (the bench's load generator uses 64).
pub const MAX_PER_PEER: usize = 192;
/// The largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 64 * 1024;
/// How long connections have at shutdown to finish their request.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Connections counted per peer and in all.
#[derive(Default)]
struct Counts {
    total: usize,
    by_peer: HashMap<IpAddr, usize>,
}

/// One counted connection, uncounted when dropped.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = match self.counts.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.by_peer.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                c.by_peer.remove(&self.peer);
            }
        }
    }
}

/// A slot for a connection from `peer`, if the limits leave one.
fn admit(counts: &Arc<Mutex<Counts>>, peer: IpAddr) -> Option<Slot> {
    let mut c = match counts.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    let from_peer = c.by_peer.get(&peer).copied().unwrap_or(0);
    if c.total >= MAX_CONNECTIONS || from_peer >= MAX_PER_PEER {
        return None;
    }
    c.total += 1;
    *c.by_peer.entry(peer).or_insert(0) += 1;
    Some(Slot {
        counts: counts.clone(),
        peer,
    })
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets the connections finish
/// their requests (for at most [`SHUTDOWN_GRACE`]) and returns once every one is closed.
pub async fn serve<L>(mut listener: L, app: axum::Router, shutdown: CancellationToken)
where
    L: Listener<Addr = SocketAddr>,
{
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut connections = JoinSet::new();
    let mut refused_logged = false;
    loop {
        let (io, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Reap finished connections as they go, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let Some(slot) = admit(&counts, peer.ip()) else {
            // Dropped: closed at once. Logged once per spell, not per connection.
            if !refused_logged {
                tracing::warn!(peer = %peer, "connection refused: too many connections");
                refused_logged = true;
            }
            continue;
        };
        refused_logged = false;
        let app = app.clone();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            serve_connection(io, app, stop).await;
        });
    }
    // The port closes now: a terminal connecting during the grace is refused at once, rather
    // than accepted by the kernel and left waiting (and a TLS listener's handshakes stop).
    drop(listener);
    // No new connections; those open finish their request and close (see `serve_connection`).
    if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "connections still open after the grace period are dropped"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Serves one connection: HTTP/1.1 with keep-alive, the head's time limit and size limit. At
/// shutdown the request in progress is finished, then the connection closes; one that does not
/// finish within [`SHUTDOWN_GRACE`] is dropped.
async fn serve_connection<I>(io: I, app: axum::Router, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            log_end(r);
            return;
        }
        _ = shutdown.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut()).await {
        Ok(r) => log_end(r),
        Err(_) => tracing::debug!("a connection still busy at the end of the grace is dropped"),
    }
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        // A client gone, a head too slow or too large: theirs, not the store's.
        tracing::debug!(error = %e, "connection ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_peer_and_in_all() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = [192, 168, 1, 10].into();
        let b: IpAddr = [192, 168, 1, 11].into();
        let mut held: Vec<Slot> = (0..MAX_PER_PEER)
            .map(|_| admit(&counts, a).unwrap())
            .collect();
        assert!(admit(&counts, a).is_none(), "one peer's limit");
        let other = admit(&counts, b).expect("another peer still gets in");
        held.pop();
        assert!(admit(&counts, a).is_some(), "a slot freed is a slot again");
        drop(other);
        drop(held);
        let c = counts.lock().unwrap();
        assert_eq!((c.total, c.by_peer.len()), (0, 0));
    }
}
