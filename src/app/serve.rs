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
//!   address, so one misbehaving host cannot lock the tills out. A connection beyond its
//!   address's limit is closed at once. One beyond the limit in all takes the place of the
//!   oldest connection of the address holding the most, when that is more than its own would
//!   then hold (the evicted connection finishes its request, if it is serving one, and
//!   closes): a few hosts at their limit — a guest network bridged in, a host with several
//!   addresses — locked every till out, refused for as long as they held on.
//! - **A bounded shutdown**: at shutdown every connection finishes the request it is serving
//!   and closes; one still sending its request after [`SHUTDOWN_GRACE`] is dropped (a
//!   half-sent request held the shutdown, and systemd's restart, for ever).
//!
//! A request head larger than [`MAX_HEAD`] is refused by hyper (`431`), as are malformed heads
//! (`400`) and over-long URIs (`414`): hyper answers those itself, with an empty body, before
//! the router's JSON errors can (docs/decisions.md).

use std::collections::{HashMap, VecDeque};
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
/// Connections served at once, from all peers (and at most as many again finishing a request
/// after being asked to close to make room: see `admit`).
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
    /// Connections served and not asked to make room.
    total: usize,
    /// Connections asked to close to make room, still finishing (see [`admit`]).
    closing: usize,
    /// Each peer's connections not asked to close, oldest first: id, and the token that asks.
    by_peer: HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>,
    next_id: u64,
}

/// One counted connection, uncounted when dropped.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
    id: u64,
    /// Cancelled when the connection is to close to make room for another host's.
    evict: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = match self.counts.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        let mut counted = false;
        if let Some(open) = c.by_peer.get_mut(&self.peer) {
            if let Some(i) = open.iter().position(|(id, _)| *id == self.id) {
                open.remove(i);
                counted = true;
            }
            if open.is_empty() {
                c.by_peer.remove(&self.peer);
            }
        }
        if counted {
            c.total = c.total.saturating_sub(1);
        } else {
            c.closing = c.closing.saturating_sub(1);
        }
    }
}

/// A slot for a connection from `peer`, if the limits leave one, and the peer whose oldest
/// connection was asked to close to make room, if one was. With every connection taken, the
/// peer holding the most gives one up when it holds more than `peer` would then; at most
/// [`MAX_CONNECTIONS`] more may be closing at once (an evicted connection finishing a request).
fn admit(counts: &Arc<Mutex<Counts>>, peer: IpAddr) -> Option<(Slot, Option<IpAddr>)> {
    let mut c = match counts.lock() {
        Ok(c) => c,
        Err(p) => p.into_inner(),
    };
    let from_peer = c.by_peer.get(&peer).map_or(0, VecDeque::len);
    if from_peer >= MAX_PER_PEER {
        return None;
    }
    let mut evicted = None;
    if c.total >= MAX_CONNECTIONS {
        if c.closing >= MAX_CONNECTIONS {
            return None;
        }
        let (greediest, held) = c
            .by_peer
            .iter()
            .map(|(ip, open)| (*ip, open.len()))
            .max_by_key(|(_, n)| *n)?;
        if held <= from_peer + 1 {
            return None;
        }
        let open = c.by_peer.get_mut(&greediest)?;
        let (_, token) = open.pop_front()?;
        token.cancel();
        c.total -= 1;
        c.closing += 1;
        evicted = Some(greediest);
    }
    let (id, evict) = (c.next_id, CancellationToken::new());
    c.next_id += 1;
    c.total += 1;
    c.by_peer
        .entry(peer)
        .or_default()
        .push_back((id, evict.clone()));
    let slot = Slot {
        counts: counts.clone(),
        peer,
        id,
        evict,
    };
    Some((slot, evicted))
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets the connections finish
/// their requests (for at most [`SHUTDOWN_GRACE`]) and returns once every one is closed.
pub async fn serve<L>(mut listener: L, app: axum::Router, shutdown: CancellationToken)
where
    L: Listener<Addr = SocketAddr>,
{
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut connections = JoinSet::new();
    // Refusals and evictions are logged once per spell, not per connection.
    let mut crowded_logged = false;
    loop {
        let (io, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // Reap finished connections as they go, so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let Some((slot, evicted)) = admit(&counts, peer.ip()) else {
            // Dropped: closed at once.
            if !crowded_logged {
                tracing::warn!(peer = %peer, "connection refused: too many connections");
                crowded_logged = true;
            }
            continue;
        };
        match evicted {
            Some(greediest) if !crowded_logged => {
                tracing::warn!(
                    peer = %peer,
                    %greediest,
                    "too many connections: the oldest of the address holding the most is closed to make room"
                );
                crowded_logged = true;
            }
            Some(_) => {}
            None => crowded_logged = false,
        }
        let app = app.clone();
        let stop = shutdown.clone();
        let evict = slot.evict.clone();
        connections.spawn(async move {
            let _slot = slot;
            serve_connection(io, app, stop, evict).await;
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
/// shutdown, or when `evict` asks it to make room, the request in progress is finished, then
/// the connection closes; one that does not finish within [`SHUTDOWN_GRACE`] is dropped.
async fn serve_connection<I>(
    io: I,
    app: axum::Router,
    shutdown: CancellationToken,
    evict: CancellationToken,
) where
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
        _ = evict.cancelled() => {}
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

    fn slot(counts: &Arc<Mutex<Counts>>, peer: IpAddr) -> Slot {
        let (slot, evicted) = admit(counts, peer).expect("admitted");
        assert_eq!(evicted, None);
        slot
    }

    #[test]
    fn connections_are_counted_per_peer_and_in_all() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let a: IpAddr = [192, 168, 1, 10].into();
        let b: IpAddr = [192, 168, 1, 11].into();
        let mut held: Vec<Slot> = (0..MAX_PER_PEER).map(|_| slot(&counts, a)).collect();
        assert!(admit(&counts, a).is_none(), "one peer's limit");
        let other = slot(&counts, b);
        held.pop();
        held.push(slot(&counts, a));
        drop(other);
        drop(held);
        let c = counts.lock().unwrap();
        assert_eq!((c.total, c.closing, c.by_peer.len()), (0, 0, 0));
    }

    #[test]
    fn with_every_connection_taken_the_greediest_peer_makes_room() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let peers: Vec<IpAddr> = (0..MAX_CONNECTIONS / MAX_PER_PEER)
            .map(|i| IpAddr::from([10, 0, 0, i as u8]))
            .collect();
        let mut held: Vec<Slot> = peers
            .iter()
            .flat_map(|&p| (0..MAX_PER_PEER).map(move |_| p))
            .map(|p| slot(&counts, p))
            .collect();
        // One more from a greedy peer: refused (its own limit).
        assert!(admit(&counts, peers[0]).is_none());
        // A till: the oldest connection of a peer holding the most is asked to close.
        let till: IpAddr = [10, 0, 1, 1].into();
        let (t, evicted) = admit(&counts, till).expect("the till gets in");
        let greediest = evicted.expect("a connection made room");
        let asked = held.iter().position(|s| s.evict.is_cancelled()).unwrap();
        assert_eq!(held[asked].peer, greediest);
        assert_eq!(held.iter().filter(|s| s.evict.is_cancelled()).count(), 1);
        {
            let c = counts.lock().unwrap();
            assert_eq!((c.total, c.closing), (MAX_CONNECTIONS, 1));
        }
        // Peers that hold about as many as each other take nothing from one another.
        held.remove(asked);
        assert!(admit(&counts, greediest).is_none());
        drop(held);
        drop(t);
        let c = counts.lock().unwrap();
        assert_eq!((c.total, c.closing, c.by_peer.len()), (0, 0, 0));
    }

    #[test]
    fn peers_holding_their_fair_share_are_not_asked_to_make_room() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        // Every connection taken, one each: a newcomer is refused, not let in by closing
        // another's.
        let held: Vec<Slot> = (0..MAX_CONNECTIONS)
            .map(|i| slot(&counts, IpAddr::from([10, 1, (i / 256) as u8, i as u8])))
            .collect();
        assert!(admit(&counts, IpAddr::from([10, 2, 0, 1])).is_none());
        assert!(held.iter().all(|s| !s.evict.is_cancelled()));
    }
}
