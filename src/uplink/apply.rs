//! HQ's messages, applied: one at a time, in arrival order, each acknowledged to the broker
//! once the ledger applied it — or once it is clear that it never can be (malformed, too big,
//! or failing the same way every time), in which case HQ is told by an alert.

use std::sync::Arc;

use rumqttc::{AsyncClient, Publish};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::downlink::{Downlink, parse};
use super::topics::Topics;
use super::{UplinkStatus, alert, system_actor};
use crate::cache::Cache;
use crate::domain::campaign::CheckedSpec;
use crate::domain::sync::HqUpdate;
use crate::ledger::{Command, Ledger, LedgerError, Outcome};

/// Applies downlink messages one at a time, in arrival order, and acknowledges each to the
/// broker after the ledger applied it. A malformed or oversized message is counted, reported
/// and acknowledged, so it never comes back. One left unacknowledged (still failing on
/// storage) rings `redeliver`: the link connects again, for the broker to deliver it again.
#[allow(clippy::too_many_arguments)]
pub(super) async fn applier(
    mut rx: mpsc::Receiver<(Publish, AsyncClient)>,
    redeliver: Arc<tokio::sync::Notify>,
    ledger: Ledger,
    cache: Cache,
    status: Arc<UplinkStatus>,
    topics: Topics,
    max_bytes: usize,
    shutdown: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let tz = ledger.settings.tz;
    loop {
        // A daemon stopping applies nothing more: what it received and did not acknowledge,
        // the broker delivers again on its next connection (the queue may hold minutes of a
        // resync's work, none of which could be acknowledged any more).
        let (p, client) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            next = rx.recv() => match next {
                Some(next) => next,
                None => return,
            },
        };
        let now = chrono::Utc::now().with_timezone(&tz).fixed_offset();
        let parsed = match topics.downlink(&p.topic) {
            None => Err(format!("unexpected topic {}", p.topic)),
            Some(_) if p.payload.len() > max_bytes => Err(format!(
                "{} bytes, more than max_message_bytes {max_bytes}",
                p.payload.len()
            )),
            // On a blocking thread: a message of 15,000 members is 4 MB of JSON, and parsing
            // and checking it item by item held one of the runtime's two threads (on a 2-core
            // box) for a few hundred milliseconds, the tills' lookups waiting behind it.
            Some((_, kind)) => parse_apart(kind, p.payload.clone(), now).await,
        };
        let ack = match parsed {
            Err(reason) => {
                status.malformed.fetch_add(1, Relaxed);
                // Escaped: the reason may quote HQ's text (a `kind`, a variant), and a line break
                // in it would write a line of HQ's making into the log.
                tracing::warn!(topic = %p.topic, reason = %reason.escape_debug(), "malformed downlink message; acknowledged and reported");
                alert(
                    &ledger,
                    "malformed_downlink",
                    format!("a message from HQ on {} was not applied: {reason}", p.topic),
                    json!({"topic": p.topic, "bytes": p.payload.len(), "reason": reason}),
                )
                .await;
                true
            }
            Ok(parsed) => {
                if !parsed.rejected.is_empty() {
                    status.malformed.fetch_add(1, Relaxed);
                    tracing::warn!(topic = %p.topic, rejected = parsed.rejected.len(), "downlink items left out");
                    let message = format!(
                        "{} item(s) of message {} on {} were left out",
                        parsed.rejected.len(),
                        parsed.id,
                        p.topic
                    );
                    let parts = parsed.rejected_at.chunks(NAMED_PER_ALERT);
                    let reasons = parsed.rejected.chunks(NAMED_PER_ALERT);
                    for (at, why) in parts.zip(reasons) {
                        let shown: Vec<&String> = why.iter().take(20).collect();
                        alert(
                            &ledger,
                            "downlink_items_rejected",
                            message.clone(),
                            json!({"topic": p.topic, "id": parsed.id, "rejected": shown,
                                   "items": at, "count": parsed.rejected.len()}),
                        )
                        .await;
                    }
                }
                // A message that failed on storage is applied again here, for a few minutes:
                // the broker delivers an unacknowledged message again only on the next
                // connection, which a healthy link may not make for weeks. HQ's messages
                // after it wait for it, in order.
                let (mut pause, mut attempts) = (RETRY_FIRST, 1);
                let applying = loop {
                    let applying = match &parsed.action {
                        Downlink::Update(u) => apply_update(&ledger, u, &shutdown).await,
                        Downlink::Resync => ledger
                            .execute(
                                system_actor(),
                                Command::RequestSync {
                                    reason: "hq_command".into(),
                                },
                            )
                            .await
                            .map(|_| Vec::new()),
                        Downlink::Campaigns(specs) => {
                            if start_campaigns(&ledger, &cache, specs.clone(), &shutdown).await {
                                Ok(Vec::new())
                            } else {
                                Err(LedgerError::Unavailable(
                                    "the campaigns could not be started".into(),
                                ))
                            }
                        }
                    };
                    match applying {
                        Err(e) if !fails_again(&e) && attempts < RETRY_ATTEMPTS => {
                            attempts += 1;
                            if pause == RETRY_FIRST {
                                tracing::error!(error = %e, topic = %p.topic, "downlink message not applied; applying it again");
                            } else {
                                tracing::debug!(error = %e, topic = %p.topic, "downlink message still not applied");
                            }
                            tokio::select! {
                                // Not acknowledged: the broker delivers it again on the next
                                // connection.
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep(pause) => {}
                            }
                            pause = (pause * 2).min(RETRY_MAX);
                        }
                        decided => break decided,
                    }
                };
                match applying {
                    Ok(unknown_products) => {
                        status.applied.fetch_add(1, Relaxed);
                        if !unknown_products.is_empty() {
                            tracing::warn!(topic = %p.topic, products = unknown_products.len(), "prices for unknown products left out");
                            let message = format!(
                                "{} price(s) of message {} on {} are for products this store does not know; send the products",
                                unknown_products.len(),
                                parsed.id,
                                p.topic
                            );
                            for skus in unknown_products.chunks(NAMED_PER_ALERT) {
                                alert(
                                    &ledger,
                                    "downlink_items_rejected",
                                    message.clone(),
                                    json!({"topic": p.topic, "id": parsed.id, "unknown_products": skus,
                                           "count": unknown_products.len()}),
                                )
                                .await;
                            }
                        }
                        true
                    }
                    Err(e) if !fails_again(&e) => {
                        // Still failing after minutes (a disk full for longer, a lasting
                        // fault): left unacknowledged, for the broker to deliver again on the
                        // next connection, and HQ's later messages are not held up for ever.
                        // That connection is made now: the broker counts the message against
                        // its in-flight limit (Mosquitto's `max_inflight_messages`) until then,
                        // and once that many are held it sends nothing more on this one.
                        tracing::error!(error = %e, topic = %p.topic, attempts, "downlink message not applied; left for the broker to deliver again");
                        redeliver.notify_one();
                        false
                    }
                    Err(e) => {
                        // Delivered again it would fail again (and, a bug, fail again on every
                        // connection): acknowledged, and HQ is told.
                        status.malformed.fetch_add(1, Relaxed);
                        tracing::error!(error = %e, topic = %p.topic, "downlink message not applied; acknowledged and reported");
                        alert(
                            &ledger,
                            "downlink_not_applied",
                            format!("message {} on {} was not applied: {e}", parsed.id, p.topic),
                            json!({"topic": p.topic, "id": parsed.id, "reason": e.to_string()}),
                        )
                        .await;
                        true
                    }
                }
            }
        };
        if ack && let Err(e) = client.ack(&p).await {
            tracing::debug!(error = %e, "ack not sent (connection gone); the broker will redeliver");
        }
    }
}

/// The first pause before a message that failed on storage is applied again; it doubles up
/// to [`RETRY_MAX`].
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause between attempts at a message that failed on storage.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);
/// Attempts at a message that failed on storage (pauses of 1, 2, 4, 8, 16 and then 30 s:
/// about two and a half minutes) before it is left to the broker's next delivery.
const RETRY_ATTEMPTS: u32 = 10;

/// [`parse`]s HQ's message on a blocking thread: a message of 15,000 members is 4 MB of JSON,
/// and parsing and checking it item by item on the runtime held one of its two threads (on a
/// 2-core box) for a few hundred milliseconds, the tills' lookups waiting behind it. A panic
/// while parsing (a bug) makes the message malformed: acknowledged and reported.
async fn parse_apart(
    kind: &str,
    payload: impl AsRef<[u8]> + Send + 'static,
    now: chrono::DateTime<chrono::FixedOffset>,
) -> Result<super::downlink::Parsed, String> {
    let kind = kind.to_string();
    tokio::task::spawn_blocking(move || parse(&kind, payload.as_ref(), now))
        .await
        .unwrap_or_else(|e| Err(format!("parsing the message failed: {e}")))
}

/// Most items (positions, or SKUs of unknown products) one `downlink_items_rejected` alert
/// names; more go in further alerts. HQ must learn every item it has to send again, and an
/// alert must stay under `uplink.max_packet_bytes` (1,000 SKUs of 32 characters: 35 KB).
const NAMED_PER_ALERT: usize = 1000;

/// Most items of an HQ message applied in one ledger batch. A batch holds up the terminals'
/// sales queued behind it; a message of 20,000 products or 10,000 members (well under
/// `max_message_bytes`) applied at once held a sale for seconds. Parts of 256 members took
/// some 130 ms each in a debug build on a 2-core VM (a slow ARM box is in that range with a
/// release build): during a push of 100,000 members the tills' sales waited 70 ms at the
/// median and 240 ms at p99 (4 ms and 70 ms beside no push). Parts of 64 cost a few more
/// commits (one fsync each) and hold a sale a quarter as long.
const ITEMS_PER_BATCH: usize = 64;

/// Applies HQ's master data in parts of [`ITEMS_PER_BATCH`] items, one ledger batch each, so
/// that the sales that come meanwhile go in between; returns the products that prices were
/// sent for but the store does not know. A part that fails stops the rest: the parts before it
/// stay applied, and HQ's message delivered again finds their items held at their version. So
/// does a daemon stopping, after the part under way.
async fn apply_update(
    ledger: &Ledger,
    update: &HqUpdate,
    shutdown: &CancellationToken,
) -> Result<Vec<String>, LedgerError> {
    let mut unknown = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in update.parts(ITEMS_PER_BATCH) {
        // Stopping: the rest comes again with the message, unacknowledged.
        if shutdown.is_cancelled() {
            return Err(LedgerError::ShuttingDown);
        }
        let outcome = ledger
            .execute(system_actor(), Command::ApplyHq(Box::new(part)))
            .await?;
        if let Outcome::Applied {
            unknown_products, ..
        } = outcome
        {
            // A SKU priced in two parts is named once.
            for sku in unknown_products {
                if seen.insert(sku.clone()) {
                    unknown.push(sku);
                }
            }
        }
    }
    Ok(unknown)
}

/// Whether a command that failed would fail the same way if HQ's message came again: a bug
/// (a caught panic) or a refusal. Storage failures and a stopping ledger may pass.
fn fails_again(e: &LedgerError) -> bool {
    !matches!(
        e,
        LedgerError::Internal(_)
            | LedgerError::Unavailable(_)
            | LedgerError::Unconfirmed(_)
            | LedgerError::ShuttingDown
    )
}

/// Starts the campaigns HQ defined, each with the members it targets at this store (a
/// campaign nobody here matches is left alone; one already started is not started again, so
/// a redelivered message changes nothing). True when every campaign is dealt with and the
/// message can be acknowledged; false (redelivery) when the store could not read its members
/// or write the journal.
async fn start_campaigns(
    ledger: &Ledger,
    cache: &Cache,
    specs: Vec<CheckedSpec>,
    shutdown: &CancellationToken,
) -> bool {
    for checked in specs {
        let id = checked.spec.id.clone();
        match cache.campaign(&id) {
            // HQ's, delivered again (or sent again): not started twice.
            Ok(Some(c)) if c.started_by == "hq" => continue,
            // A manager's of the same id: HQ's does not run here, and HQ must hear it (it
            // would count this store in a campaign it does not run).
            Ok(Some(c)) => {
                let why = format!(
                    "a campaign of this id was started here by staff {}",
                    c.started_by
                );
                not_started(ledger, &id, &why).await;
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, campaign = %id, "cannot read the campaigns");
                return false;
            }
        }
        let settings = ledger.settings.clone();
        let today = settings.local_date(chrono::Utc::now());
        let cache = cache.clone();
        let picked = tokio::task::spawn_blocking(move || {
            crate::automation::campaign_for(&cache, &settings, checked, "hq", today)
        })
        .await;
        let campaign = match picked {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => {
                tracing::info!(campaign = %id, "campaign from HQ targets no member of this store");
                continue;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, campaign = %id, "cannot pick the members of a campaign from HQ");
                return false;
            }
            Err(e) if e.is_panic() => {
                // A bug: it would fail again on every delivery.
                let why = crate::ledger::panic_message(&*e.into_panic());
                not_started(ledger, &id, &why).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, campaign = %id, "picking the members of a campaign from HQ failed");
                return false;
            }
        };
        let (treated, control) = (campaign.treated.len(), campaign.control.len());
        match ledger
            .start_campaign(system_actor(), campaign, Some(shutdown))
            .await
        {
            Ok(_) => {
                tracing::info!(campaign = %id, treated, control, "campaign from HQ started")
            }
            Err(LedgerError::Conflict { .. }) => {}
            Err(e) if fails_again(&e) => not_started(ledger, &id, &e.to_string()).await,
            Err(e) => {
                tracing::error!(error = %e, campaign = %id, "campaign from HQ not started");
                return false;
            }
        }
    }
    true
}

/// Reports a campaign from HQ that cannot start here however often it comes.
async fn not_started(ledger: &Ledger, id: &str, why: &str) {
    tracing::error!(error = %why, campaign = %id, "campaign from HQ not started; reported");
    alert(
        ledger,
        "downlink_not_applied",
        format!("campaign {id} from HQ was not started: {why}"),
        json!({"campaign": id, "reason": why}),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_message_that_would_fail_again_is_acknowledged_unapplied() {
        let bug = LedgerError::Bug("panicked: index out of bounds".into());
        let refused = LedgerError::Invalid {
            code: "invalid",
            message: "no".into(),
        };
        assert!(fails_again(&bug) && fails_again(&refused));
        for passing in [
            LedgerError::Internal("disk I/O error".into()),
            LedgerError::Unavailable("database or disk is full".into()),
            LedgerError::ShuttingDown,
        ] {
            assert!(!fails_again(&passing), "{passing:?} is redelivered");
        }
    }

    /// HQ's big message is parsed while the runtime goes on with other work (the tills'
    /// lookups): on a single-threaded runtime, a task beside the parse runs meanwhile. Parsed
    /// on the runtime itself, it did not run once until the parse of 15,000 members ended.
    #[tokio::test(flavor = "current_thread")]
    async fn a_big_message_is_parsed_beside_the_runtime_s_other_work() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let items: Vec<_> = (0..15_000)
            .map(|i| {
                json!({"id": format!("hq-m-{i:06}"), "name": format!("会员{i:06}"),
                       "phone": format!("139{i:08}"), "card_no": format!("C{i:09}"),
                       "gender": "female", "birthday": "1990-05-06", "version": 1})
            })
            .collect();
        let payload =
            serde_json::to_vec(&json!({"id": "m", "kind": "members", "items": items})).unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        tokio::task::yield_now().await;
        let now = chrono::Utc::now().fixed_offset();
        let before = ticks.load(Ordering::Relaxed);
        let parsed = parse_apart("members", payload, now).await.unwrap();
        let during = ticks.load(Ordering::Relaxed) - before;
        ticker.abort();
        assert!(parsed.rejected.is_empty(), "{:?}", &parsed.rejected[..1]);
        assert!(
            during > 0,
            "nothing else ran on the runtime while the message was parsed"
        );
    }
}
