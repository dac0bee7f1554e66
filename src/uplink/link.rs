//! The task that owns the MQTT connection.
//!
//! Per connection: a fresh `AsyncClient`/`EventLoop` pair; a pump task that only polls the event
//! loop (rumqttc's `poll` is never cancelled half-way) and forwards every event here; this task
//! submits publishes (`try_publish`, never blocking) and keeps the [`Outbox`] window. When the
//! connection fails the pair is dropped with everything rumqttc held, the outbox restarts from
//! the acknowledged position, and the next connection comes after a backoff that starts over
//! once a connection has been healthy for a while.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    Publish, QoS, StateError, TlsConfiguration, Transport,
};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

mod farewell;
mod status;

use super::outbox::{Outbox, publish_packet_size};
use super::topics::Topics;
use super::{Parts, alert, system_actor};
use crate::journal::{JournalError, store};
use crate::ledger::Command;

/// Journal events read per outbox query.
const READ_AHEAD: usize = 512;

/// An event read ahead from the outbox, with its MQTT payload (or why it has none).
struct Unsent {
    seq: u64,
    id: String,
    kind: String,
    payload: Result<Vec<u8>, String>,
    /// The payload could not be made because a read failed (not because the event cannot be
    /// decoded): it is read again, for up to [`READ_RETRY_FOR`].
    retry: bool,
    /// The ledger's erasure count when the payload was made (see [`Link::fill`]).
    erasures: u64,
}

/// How long failed reads may keep events from going up (they are read again every 200 ms)
/// before an event whose payload a failed read keeps from being made is reported to HQ as
/// `event_unreadable` and passed: a moment's failure loses nothing, a lasting one does not
/// stop the uplink for good. The time counts from the first failure of a spell, across
/// reconnections; the next event read ends the spell.
const READ_RETRY_FOR: Duration = Duration::from_secs(60);

/// Since when failed reads have kept events from going up.
type Stuck = Option<Instant>;

/// Why a connection ended.
enum End {
    /// The daemon is stopping.
    Shutdown,
    /// The connection failed or was refused; `oversized` when a downlink message was over
    /// rumqttc's limit (which, with a persistent session, comes back on every reconnect).
    Lost { reason: String, oversized: bool },
}

/// Runs the link until `shutdown`.
pub(super) async fn run(parts: Parts, shutdown: CancellationToken) {
    let topics = Topics::new(&parts.config.topic_prefix, &parts.store_id);
    let (down_tx, down_rx) = mpsc::channel(64);
    let redeliver = Arc::new(tokio::sync::Notify::new());
    let applier = tokio::spawn(super::apply::applier(
        down_rx,
        redeliver.clone(),
        parts.ledger.clone(),
        parts.cache.clone(),
        parts.status.clone(),
        topics.clone(),
        parts.config.max_message_bytes,
        shutdown.clone(),
    ));
    let mut link = Link {
        seq: parts.ledger.subscribe_seq(),
        parts,
        topics,
        stuck: std::sync::Mutex::new(None),
        boxes: status::Boxes::new(),
        redeliver,
    };
    let cfg = link.parts.config.clone();
    let mut delay = cfg.reconnect_min;
    let mut oversized_strikes = 0;
    let mut clean_next = false;
    loop {
        let started = Instant::now();
        let (end, was_up) = link.connection(&shutdown, &down_tx, clean_next).await;
        if clean_next && was_up {
            // The poisoned session is gone with everything it queued (the clean connection
            // ended at its CONNACK, and the next one starts a persistent session again): ask
            // HQ for a snapshot, now — not whenever a connection is next lost.
            clean_next = false;
            let _ = link
                .parts
                .ledger
                .execute(
                    system_actor(),
                    Command::RequestSync {
                        reason: "downlink_session_reset".into(),
                    },
                )
                .await;
            if !matches!(end, End::Shutdown) {
                continue;
            }
        }
        match end {
            End::Shutdown => break,
            End::Lost { reason, oversized } => {
                if oversized {
                    oversized_strikes += 1;
                    if oversized_strikes >= 2 {
                        tracing::error!(
                            "a downlink message is too big to receive at all; dropping the broker session and asking HQ to resync"
                        );
                        alert(
                            &link.parts.ledger,
                            "downlink_session_reset",
                            "a downlink message above the client's limit kept coming back; the session was dropped".into(),
                            json!({"reason": reason}),
                        )
                        .await;
                        clean_next = true;
                        oversized_strikes = 0;
                    }
                } else {
                    oversized_strikes = 0;
                }
                if was_up && started.elapsed() >= cfg.healthy_after {
                    delay = cfg.reconnect_min;
                }
                tracing::warn!(
                    broker = %format_args!("{}:{}", cfg.host, cfg.port),
                    %reason,
                    retry_in_ms = delay.as_millis() as u64,
                    "uplink connection lost"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(cfg.reconnect_max);
            }
        }
    }
    drop(down_tx);
    let _ = applier.await;
    tracing::info!("uplink stopped");
}

struct Link {
    parts: Parts,
    topics: Topics,
    /// The ledger's last committed `seq`: a change means new events to send.
    seq: watch::Receiver<u64>,
    /// Since when reads have kept events from going up (see [`READ_RETRY_FOR`]): kept across
    /// reconnections, and ended by the next event read.
    stuck: std::sync::Mutex<Stuck>,
    /// This box's status and the other boxes seen under its store id.
    boxes: status::Boxes,
    /// Rung by the applier when it left one of HQ's messages unacknowledged: the broker
    /// delivers it again only on a new connection (see `apply::applier`).
    redeliver: Arc<tokio::sync::Notify>,
}

/// Polls the event loop and forwards everything; stops at the first error.
async fn pump(mut el: EventLoop, tx: mpsc::Sender<Result<Event, ConnectionError>>) {
    loop {
        let r = el.poll().await;
        let stop = r.is_err();
        if tx.send(r).await.is_err() || stop {
            return;
        }
    }
}

impl Link {
    fn options(&self, clean: bool) -> Result<MqttOptions, String> {
        let cfg = &self.parts.config;
        // Said at start and refused by check-config and a reload; here it is what every
        // retry reports (rather than a name the resolver did not find).
        if let Some(problem) = crate::config::host_problem(&cfg.host) {
            return Err(format!("uplink.host: {problem}"));
        }
        let mut o = MqttOptions::new(cfg.client_id.clone(), cfg.host.clone(), cfg.port);
        o.set_keep_alive(cfg.keep_alive)
            .set_clean_session(clean)
            .set_manual_acks(true)
            .set_inflight(cfg.inflight.max(1))
            // Outgoing: what the broker accepts (checked before publishing). Incoming: well
            // above what HQ may send, so an oversized message still arrives, is reported and
            // acknowledged instead of breaking the connection.
            .set_max_packet_size(
                (cfg.max_message_bytes * 4).max(1 << 20),
                cfg.max_packet_bytes,
            )
            .set_last_will(LastWill::new(
                self.topics.status(),
                json!({"online": false}).to_string(),
                QoS::AtLeastOnce,
                true,
            ));
        if let Some((user, pass)) = &cfg.credentials {
            o.set_credentials(user.clone(), pass.0.clone());
        }
        if let Some(tls) = &cfg.tls {
            let tls_config =
                super::tls::client_config(tls).map_err(|(key, e)| format!("{key}: {e}"))?;
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(tls_config),
            )));
        }
        Ok(o)
    }

    /// One connection, from connect to loss or shutdown. Returns how it ended and whether it
    /// got as far as a CONNACK.
    async fn connection(
        &mut self,
        shutdown: &CancellationToken,
        down_tx: &mpsc::Sender<(Publish, AsyncClient)>,
        clean: bool,
    ) -> (End, bool) {
        let opts = match self.options(clean) {
            Ok(o) => o,
            Err(e) => {
                return (
                    End::Lost {
                        reason: format!("uplink settings: {e}"),
                        oversized: false,
                    },
                    false,
                );
            }
        };
        let cfg = self.parts.config.clone();
        // Room for the window, the status message, acks and subscriptions: never full.
        let (client, eventloop) = AsyncClient::new(opts, usize::from(cfg.inflight) + 64);
        let (ev_tx, mut ev_rx) = mpsc::channel(1024);
        let pump = tokio::spawn(pump(eventloop, ev_tx));
        let status = self.parts.status.clone();
        let mut outbox = Outbox::new(status.acked_seq(), usize::from(cfg.inflight));
        let mut persisted = outbox.acked();
        let mut ahead = VecDeque::new();
        let mut up = false;
        let mut ledger_alive = true;
        let mut status_tick = tokio::time::interval(cfg.status_interval);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut persist_tick = tokio::time::interval(Duration::from_millis(200));
        // A failed read stopped `fill`: the persist tick calls it again.
        let mut retry = false;
        // The last status published announced a backlog (or could not be published).
        let mut status_stale = false;
        // HQ's messages received while the applier's queue is full. The loop never waits for
        // the applier: it must go on reading the event loop (whose polling sends the applier's
        // acknowledgements, the pings and the store's own publishes), or, with a broker that
        // sends without limit, the applier waits on an acknowledgement that waits on the
        // event loop that waits on this loop. The broker's own in-flight limit bounds this.
        let mut down_waiting: VecDeque<Publish> = VecDeque::new();
        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    if up {
                        self.goodbye(&client, &mut ev_rx, &mut outbox).await;
                    }
                    break End::Shutdown;
                }
                permit = down_tx.reserve(), if !down_waiting.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(p) = down_waiting.pop_front() {
                            permit.send((p, client.clone()));
                        }
                    }
                    Err(_) => break End::Shutdown,
                },
                ev = ev_rx.recv() => match ev {
                    None => break End::Lost { reason: "event loop stopped".into(), oversized: false },
                    Some(Err(e)) => {
                        let oversized = matches!(
                            e,
                            ConnectionError::MqttState(StateError::Deserialization(
                                rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(_)
                            ))
                        );
                        break End::Lost { reason: e.to_string(), oversized };
                    }
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) if clean => {
                        // Only to drop the broker's session: a clean session would end with
                        // this connection, and whatever HQ sends until the next one is lost.
                        up = true;
                        break End::Lost { reason: "broker session dropped".into(), oversized: false };
                    }
                    Some(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                        up = true;
                        status.set_connected(true);
                        status.connects.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(host = %cfg.host, port = cfg.port, "uplink connected");
                        // A message left unacknowledged comes again on this connection anyway.
                        let _ = futures_util::FutureExt::now_or_never(self.redeliver.notified());
                        for filter in self.topics.subscriptions() {
                            if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                                tracing::error!(error = %e, "cannot subscribe");
                            }
                        }
                        self.watch_status(&client);
                        outbox.restart();
                        ahead.clear();
                        status_stale = self.publish_status(&client, &mut outbox).await;
                        retry = self.fill(&client, &mut outbox, &mut ahead).await;
                    }
                    Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => outbox.sent(pkid),
                    Some(Ok(Event::Outgoing(Outgoing::AwaitAck(pkid)))) => outbox.collided(pkid),
                    Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                        if let Some(acked) = outbox.acknowledged(ack.pkid) {
                            status.set_acked(acked);
                        }
                        retry = self.fill(&client, &mut outbox, &mut ahead).await;
                        if status_stale && outbox.acked() >= *self.seq.borrow() {
                            // Caught up: HQ sees the backlog gone now, not a status interval on.
                            status_stale = self.publish_status(&client, &mut outbox).await;
                        }
                    }
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) if p.topic == self.topics.status() => {
                        self.status_seen(&client, &p).await;
                    }
                    Some(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        if !down_waiting.is_empty() {
                            down_waiting.push_back(p);
                        } else {
                            match down_tx.try_send((p, client.clone())) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full((p, _))) => {
                                    down_waiting.push_back(p);
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => break End::Shutdown,
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                },
                changed = self.seq.changed(), if up && ledger_alive => {
                    if changed.is_err() {
                        ledger_alive = false;
                    }
                    retry = self.fill(&client, &mut outbox, &mut ahead).await;
                }
                _ = self.redeliver.notified(), if up => {
                    // Closed cleanly (no will), and opened again as after any lost connection.
                    self.disconnect(&client, &mut ev_rx, &mut outbox).await;
                    break End::Lost {
                        reason: "reconnecting, for the broker to deliver again a message from HQ not applied".into(),
                        oversized: false,
                    };
                }
                _ = status_tick.tick(), if up => {
                    status_stale = self.publish_status(&client, &mut outbox).await;
                }
                _ = persist_tick.tick() => {
                    persisted = self.persist(outbox.acked(), persisted).await;
                    if retry && up {
                        retry = self.fill(&client, &mut outbox, &mut ahead).await;
                    }
                }
            }
        };
        self.persist(outbox.acked(), persisted).await;
        pump.abort();
        status.set_connected(false);
        (end, up)
    }

    /// Stores the acknowledged position in the journal when it moved.
    async fn persist(&self, acked: u64, persisted: u64) -> u64 {
        if acked <= persisted {
            return persisted;
        }
        match self
            .parts
            .ledger
            .execute(system_actor(), Command::OutboxAcked { seq: acked })
            .await
        {
            Ok(_) => acked,
            Err(e) => {
                tracing::warn!(error = %e, "cannot store the outbox position (events may be sent twice)");
                persisted
            }
        }
    }

    /// Submits events from the journal until the window is full or nothing is left. Returns
    /// whether a failed read stopped it: it is to be called again soon (nothing else may come
    /// to call it).
    async fn fill(
        &self,
        client: &AsyncClient,
        outbox: &mut Outbox,
        ahead: &mut VecDeque<Unsent>,
    ) -> bool {
        let cfg = &self.parts.config;
        loop {
            let last = *self.seq.borrow();
            if outbox.room() == 0 || outbox.next() > last {
                return false;
            }
            // Loaded before the read: an erasure committed after it shows here next time.
            let erasures = self.parts.ledger.stats.erasures.load(Ordering::SeqCst);
            if ahead.front().is_some_and(|r| r.erasures != erasures) {
                // A member was erased since these payloads were made: personal data opened
                // then must not go to HQ after the erasure. Read again (it opens as null now).
                ahead.clear();
            }
            if ahead.front().map(|r| r.seq) != Some(outbox.next()) {
                // Read ahead in chunks: one journal query per chunk, not per acknowledgement.
                ahead.clear();
                let from = outbox.next() - 1;
                let store_id = self.parts.store_id.clone();
                let codec = self.parts.codec.clone();
                match self
                    .parts
                    .journal
                    .with(move |c| {
                        // Payloads are made here: opening personal data needs the member keys
                        // on this connection.
                        let rows = store::events_after(c, from, READ_AHEAD)?;
                        Ok(rows
                            .into_iter()
                            .map(|row| {
                                let payload = row.payload(c, &store_id, &codec);
                                Unsent {
                                    // Cannot be decoded: reported to HQ and passed (below). A
                                    // read that failed (a member key, say): read again.
                                    retry: matches!(
                                        payload,
                                        Err(ref e) if !matches!(e, JournalError::Corrupt { .. })
                                    ),
                                    payload: payload.map_err(|e| e.to_string()),
                                    seq: row.seq,
                                    id: row.id,
                                    kind: row.kind,
                                    erasures,
                                }
                            })
                            .collect::<Vec<_>>())
                    })
                    .await
                {
                    Ok(rows) if !rows.is_empty() => ahead.extend(rows),
                    Ok(_) => return false,
                    Err(e) => {
                        if self.failing().is_none() {
                            tracing::error!(error = %e, "cannot read the outbox; reading it again");
                            self.set_failing(Some(Instant::now()));
                        }
                        return true;
                    }
                }
                if ahead.front().map(|r| r.seq) != Some(outbox.next()) {
                    tracing::error!(expected = outbox.next(), "gap in the journal");
                    ahead.clear();
                    return false;
                }
            }
            let Some(row) = ahead.pop_front() else {
                return false;
            };
            if row.retry {
                let since = self.failing().unwrap_or_else(|| {
                    // Said once a spell of failures, not at every try.
                    tracing::warn!(seq = row.seq, error = ?row.payload.as_ref().err(), "an event's payload could not be read; reading it again");
                    Instant::now()
                });
                self.set_failing(Some(since));
                if since.elapsed() < READ_RETRY_FOR {
                    ahead.clear();
                    return true;
                }
            } else {
                self.set_failing(None);
            }
            let topic = self.topics.event(&row.kind);
            let size = row
                .payload
                .as_ref()
                .map_or(0, |p| publish_packet_size(&topic, p.len()));
            match &row.payload {
                Ok(p) if size <= cfg.max_packet_bytes => {
                    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, p.clone()) {
                        tracing::debug!(error = %e, "client queue full; sending the rest later");
                        ahead.push_front(row);
                        return false;
                    }
                    outbox.submitted(row.seq);
                }
                other => {
                    let (code, message) = match other {
                        Ok(_) => (
                            "event_too_large",
                            format!(
                                "event seq {} ({}) is {size} bytes, the broker takes {}",
                                row.seq, row.kind, cfg.max_packet_bytes
                            ),
                        ),
                        Err(e) => ("event_unreadable", format!("event seq {}: {e}", row.seq)),
                    };
                    let detail = json!({
                        "seq": row.seq, "id": row.id, "kind": row.kind,
                        "bytes": size, "limit": cfg.max_packet_bytes,
                    });
                    // Reported before (by an earlier connection or run that passed it but
                    // lost the acknowledged position, whose predecessors were not yet
                    // PUBACKed): passed again without a second alert, which HQ would get as
                    // another event with another id.
                    let seq = row.seq;
                    let reported = self
                        .parts
                        .journal
                        .with(move |c| store::uplink_alert_about(c, seq))
                        .await;
                    if matches!(reported, Ok(true)) {
                        outbox.skipped(row.seq);
                        self.parts.status.set_acked(outbox.acked());
                        continue;
                    }
                    tracing::error!(seq = row.seq, code, "event cannot be sent; reported to HQ");
                    // Never skip silently: only once the alert is in the journal. A row whose
                    // read failed is read again first, next time (it may read now).
                    if !alert(&self.parts.ledger, code, message, detail).await {
                        if row.retry {
                            ahead.clear();
                            return true;
                        }
                        ahead.push_front(row);
                        return false;
                    }
                    self.parts
                        .status
                        .unsendable
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    outbox.skipped(row.seq);
                    self.parts.status.set_acked(outbox.acked());
                }
            }
        }
    }

    /// Since when failed reads have kept events from going up, if they do.
    fn failing(&self) -> Stuck {
        *self.stuck.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_failing(&self, since: Stuck) {
        *self.stuck.lock().unwrap_or_else(|e| e.into_inner()) = since;
    }
}
