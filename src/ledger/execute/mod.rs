//! Executing one command inside the batch transaction: validate, compute in `domain`, emit
//! events (append to the journal and project into the pending cache), store the idempotency key.
//!
//! Every refusal happens before the first event is emitted, so a refused command leaves no
//! trace; an error after an emit fails the whole batch (see `Worker::batch`).

use chrono::{DateTime, FixedOffset, Utc};
use rusqlite::Connection;

use super::cart::live_member;
use super::error::LedgerError;
use super::settings::StoreSettings;
use super::{Actor, Command, Idem, Outcome};
use crate::cache::{Pending, project};
use crate::domain::event::{Event, EventBody};
use crate::domain::member::Member;
use crate::domain::rules::Rules;
use crate::journal::store::{self, IdemRecord};
use crate::pii::PiiCodec;

mod catalog;
mod hq;
pub(crate) mod import;
mod marketing;
mod members;
mod points;
mod sales;

pub(crate) use marketing::auto_coupon;

/// The state one command runs against.
pub(super) struct Ctx<'a, 'c> {
    conn: &'a Connection,
    pending: &'a mut Pending<'c>,
    settings: &'a StoreSettings,
    rules: &'a Rules,
    codec: &'a PiiCodec,
    now_utc: DateTime<Utc>,
    now: DateTime<FixedOffset>,
    next_seq: u64,
    emitted: usize,
    actor: &'a Actor,
    /// Whether personal data was erased (the files are scrubbed after the commit).
    erased: bool,
    /// The profile of the next `member.registered` of this member id, sealed ahead.
    presealed: Option<(String, crate::pii::Presealed)>,
}

impl<'a, 'c> Ctx<'a, 'c> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        conn: &'a Connection,
        pending: &'a mut Pending<'c>,
        settings: &'a StoreSettings,
        rules: &'a Rules,
        codec: &'a PiiCodec,
        now_utc: DateTime<Utc>,
        next_seq: u64,
        actor: &'a Actor,
    ) -> Self {
        Ctx {
            conn,
            pending,
            settings,
            rules,
            codec,
            now_utc,
            now: settings.local(now_utc),
            next_seq,
            emitted: 0,
            actor,
            erased: false,
            presealed: None,
        }
    }

    /// Whether the command erased personal data.
    pub(super) fn erased(&self) -> bool {
        self.erased
    }

    /// Events emitted so far.
    pub(super) fn emitted(&self) -> usize {
        self.emitted
    }

    /// The `seq` the next event would get.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(super) fn run(&mut self, cmd: Command) -> Result<Outcome, LedgerError> {
        match cmd {
            Command::Register { req, idem } => self.register(req, idem),
            Command::Update { member_id, req } => self.update(&member_id, req),
            Command::Erase { member_id } => self.erase(&member_id),
            Command::Sale { req, idem } => self.sale(req, idem),
            Command::Refund { sale_id, req, idem } => self.refund(&sale_id, req, idem),
            Command::MoveStock { req, idem } => self.move_stock(req, idem),
            Command::AdjustPoints {
                member_id,
                req,
                idem,
            } => self.adjust_points(&member_id, req, idem),
            Command::PutProduct { sku, req } => self.put_product(&sku, req),
            Command::IssueCoupon { req } => self.issue_coupon(req),
            Command::Session(_) => Err(LedgerError::Internal(
                "session changes are not part of a batch".into(),
            )),
            Command::OutboxAcked { seq } => {
                if seq > self.next_seq.saturating_sub(1) {
                    return Err(LedgerError::Internal(format!(
                        "outbox acknowledgement for seq {seq} beyond the journal"
                    )));
                }
                store::set_outbox_position(self.conn, seq, &self.now_utc.to_rfc3339())?;
                Ok(Outcome::Done)
            }
            Command::Alert(alert) => {
                self.emit(EventBody::DeviceAlert(alert))?;
                Ok(Outcome::Done)
            }
            Command::RequestSync { reason } => {
                self.emit(EventBody::SyncRequested { reason })?;
                Ok(Outcome::Done)
            }
            Command::ApplyHq(update) => self.apply_hq(*update),
            #[cfg(test)]
            Command::PanicForTest { after_emit } => {
                if after_emit {
                    self.emit(EventBody::SyncRequested {
                        reason: "test".into(),
                    })?;
                }
                panic!("a bug, for a test")
            }
            #[cfg(test)]
            Command::PanicAfterCommitForTest => {
                self.emit(EventBody::SyncRequested {
                    reason: "test".into(),
                })?;
                Ok(Outcome::PanicAfterCommitForTest)
            }
            Command::Reprint { sale_id, refund_id } => {
                // An unknown sale or refund is 404 whatever the terminal has.
                let (_, refunds) = self.load_sale(&sale_id)?;
                if let Some(id) = &refund_id
                    && !refunds.iter().any(|r| r.id == *id)
                {
                    return Err(LedgerError::not_found(
                        "refund_not_found",
                        format!("sale {sale_id} has no refund {id}"),
                    ));
                }
                let device_id = self.printer()?;
                // A refund slip's reprint is a "reprint" job with the refund's id: it opens no
                // drawer, and a storebox of journal schema 9 that found one queued would print
                // the sale's receipt marked as a reprint rather than anything with a kick.
                let job_id = store::queue_print(
                    self.conn,
                    &device_id,
                    "reprint",
                    &sale_id,
                    refund_id.as_deref(),
                    &self.now_utc.to_rfc3339(),
                )?;
                self.audit(
                    "receipt.reprint",
                    &sale_id,
                    match &refund_id {
                        Some(r) => serde_json::json!({ "device_id": device_id, "refund_id": r }),
                        None => serde_json::json!({ "device_id": device_id }),
                    },
                )?;
                Ok(Outcome::Queued { job_id, device_id })
            }
            Command::OpenDrawer { device_id } => {
                if !self.settings.printers.values().any(|d| *d == device_id) {
                    return Err(LedgerError::not_found(
                        "unknown_device",
                        format!("no printer {device_id}"),
                    ));
                }
                if !self.settings.drawers.contains(&device_id) {
                    // Queued and audited, it would answer 202 and open nothing.
                    return Err(LedgerError::rule(
                        "no_drawer",
                        format!("printer {device_id} has no cash drawer (drawer_pin = 0)"),
                    ));
                }
                let job_id = store::queue_print(
                    self.conn,
                    &device_id,
                    "drawer",
                    "",
                    None,
                    &self.now_utc.to_rfc3339(),
                )?;
                self.audit("drawer.open", &device_id, serde_json::json!({}))?;
                Ok(Outcome::Queued { job_id, device_id })
            }
            Command::Audit {
                action,
                target,
                detail,
            } => {
                self.audit(&action, &target, detail)?;
                Ok(Outcome::Done)
            }
            Command::PutStaff { record, pin_given } => {
                self.actor_still_admin()?;
                self.put_staff(*record, false, pin_given)
            }
            Command::UpgradePin { staff_no, from, to } => self.upgrade_pin(&staff_no, &from, to),
            Command::RecordFeedback { item } => self.record_feedback(*item),
            Command::ImportMembers { rows } => self.import_members(rows),
            Command::Automate {
                member_id,
                occasion,
                coupon,
            } => self.automate(&member_id, occasion, coupon.map(|c| *c)),
            Command::StartCampaign { campaign, issued } => self.start_campaign(*campaign, issued),
            Command::IssueCampaignCoupons { campaign } => self.issue_campaign_coupons(*campaign),
            Command::UpdateFeedback { id, status, note } => self.update_feedback(&id, status, note),
            Command::PrintDone { job_id } => {
                store::print_done(self.conn, job_id)?;
                Ok(Outcome::Done)
            }
            Command::DrawerExpired {
                job_id,
                device_id,
                sale_id,
                queued_at,
            } => {
                store::print_done(self.conn, job_id)?;
                let mut detail = serde_json::json!({ "job_id": job_id, "queued_at": queued_at });
                if !sale_id.is_empty() {
                    detail["sale_id"] = sale_id.into();
                }
                self.audit("drawer.expired", &device_id, detail)?;
                Ok(Outcome::Done)
            }
        }
    }

    /// Appends an event to the journal and applies it to the pending cache.
    /// Appends a sensitive action to the audit chain (same transaction) and sends it to HQ.
    fn audit(
        &mut self,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), LedgerError> {
        let entry = crate::journal::audit::append(
            self.conn,
            &self.codec.keys().audit,
            &self.now_utc.to_rfc3339(),
            crate::journal::audit::NewAudit {
                staff_no: self.actor.staff_no.clone(),
                terminal_id: self.actor.terminal_id.clone(),
                action: action.to_string(),
                target: target.to_string(),
                detail,
            },
        )?;
        self.emit(EventBody::AuditRecorded(entry))?;
        Ok(())
    }

    fn emit(&mut self, body: EventBody) -> Result<u64, LedgerError> {
        self.emit_data(body).map(|(seq, _)| seq)
    }

    /// [`Self::emit`], returning with the `seq` the event's data as the journal holds it (for a
    /// sale, its answer's body).
    fn emit_data(&mut self, mut body: EventBody) -> Result<(u64, String), LedgerError> {
        let seq = self.next_seq;
        // A coupon's `seq` is the last event applied to it: its own, when issued (it went to
        // HQ as 0 before, beside the event's real seq).
        if let EventBody::CouponIssued(c) = &mut body {
            c.seq = seq;
        }
        let event = Event {
            id: crate::ids::new_v7().to_string(),
            store_id: self.settings.store_id.clone(),
            seq,
            occurred_at: self.now,
            body,
        };
        let day = self.now.date_naive().to_string();
        self.emitted += 1;
        let presealed = match (self.presealed.take(), &event.body) {
            (Some((id, pre)), EventBody::MemberRegistered(r)) if r.member_id == id => Some(pre),
            _ => None,
        };
        let data = store::append_with(self.conn, &event, &day, self.codec, presealed.as_ref())?;
        project(self.pending, &event)?;
        self.next_seq += 1;
        Ok((seq, data))
    }

    /// Looks up an idempotency key: `Some(event)` when the request was already executed.
    fn idem_replay(&self, idem: Option<&Idem>) -> Result<Option<Event>, LedgerError> {
        let Some(idem) = idem else { return Ok(None) };
        let Some(rec) = store::idem_get(self.conn, &self.actor.terminal_id, &idem.key)? else {
            return Ok(None);
        };
        if rec.body_hash != idem.body_hash {
            return Err(LedgerError::conflict(
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
            ));
        }
        let row = store::event_at(self.conn, rec.seq)?.ok_or_else(|| {
            LedgerError::Internal(format!(
                "idempotency key points at missing event {}",
                rec.seq
            ))
        })?;
        Ok(Some(row.decode(
            self.conn,
            &self.settings.store_id,
            self.codec,
        )?))
    }

    fn idem_store(&self, idem: Option<&Idem>, seq: u64) -> Result<(), LedgerError> {
        if let Some(idem) = idem {
            store::idem_put(
                self.conn,
                &self.actor.terminal_id,
                &idem.key,
                &IdemRecord {
                    body_hash: idem.body_hash.clone(),
                    seq,
                },
                &self.now_utc.to_rfc3339(),
            )?;
        }
        Ok(())
    }

    /// The printer of the actor's terminal.
    fn printer(&self) -> Result<String, LedgerError> {
        self.settings
            .printers
            .get(&self.actor.terminal_id)
            .cloned()
            .ok_or_else(|| {
                LedgerError::rule(
                    "no_printer",
                    format!("terminal {} has no receipt printer", self.actor.terminal_id),
                )
            })
    }

    fn member_or_404(&self, id: &str) -> Result<Member, LedgerError> {
        live_member(&*self.pending, id)
    }
}
