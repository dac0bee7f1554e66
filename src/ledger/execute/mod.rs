//! Executing one command inside the batch transaction: validate, compute in `domain`, emit
//! events (append to the journal and project into the pending cache), store the idempotency key.
//!
//! Every refusal happens before the first event is emitted, so a refused command leaves no
//! trace; an error after an emit fails the whole batch (see `Worker::batch`).

use chrono::{DateTime, Datelike, FixedOffset, Utc};
use rusqlite::Connection;

use super::cart::{PricedCart, live_member, price_cart};
use super::error::LedgerError;
use super::requests::{
    IssueCoupon, ProductEdit, RefundRequest, RegisterMember, SaleRequest, StockMovement,
    UpdateMember,
};
use super::settings::StoreSettings;
use super::{Actor, Command, Idem, Outcome};
use crate::cache::{CacheError, Pending, project};
use crate::domain::access::Action;
use crate::domain::catalog::{
    Coupon, CouponKind, MAX_UNIT_PRICE, Product, StockLevel, validate_barcode, validate_sku,
};
use crate::domain::contact::{normalize_card, normalize_name, normalize_phone, normalize_tags};
use crate::domain::event::{Event, EventBody, MemberRegistered, MemberUpdated};
use crate::domain::member::{LevelRef, Member, Profile};
use crate::domain::refund::{Refund, RefundContext, compute_refund};
use crate::domain::rules::Rules;
use crate::domain::sale::{Sale, SaleContext, build_sale, settle};
use crate::domain::sync::{self, HqUpdate};
use crate::journal::store::{self, IdemRecord};
use crate::pii::PiiCodec;

pub(crate) mod import;
mod marketing;

pub(crate) use marketing::auto_coupon;

/// Largest stock movement in one go.
const MAX_STOCK_DELTA: i64 = 1_000_000;

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
            Command::Reprint { sale_id } => {
                let device_id = self.printer()?;
                self.load_sale(&sale_id)?;
                let job_id = store::queue_print(
                    self.conn,
                    &device_id,
                    "reprint",
                    &sale_id,
                    &self.now_utc.to_rfc3339(),
                )?;
                self.audit(
                    "receipt.reprint",
                    &sale_id,
                    serde_json::json!({ "device_id": device_id }),
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
                let job_id = store::queue_print(
                    self.conn,
                    &device_id,
                    "drawer",
                    "",
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
            Command::PutStaff { record } => self.put_staff(*record),
            Command::RecordFeedback { item } => self.record_feedback(*item),
            Command::ImportMembers { rows } => self.import_members(rows),
            Command::Automate {
                member_id,
                occasion,
                coupon,
            } => self.automate(&member_id, occasion, coupon.map(|c| *c)),
            Command::StartCampaign { campaign } => self.start_campaign(*campaign),
            Command::UpdateFeedback { id, status, note } => self.update_feedback(&id, status, note),
            Command::PrintDone { job_id } => {
                store::print_done(self.conn, job_id)?;
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
        let seq = self.next_seq;
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
        store::append_with(self.conn, &event, &day, self.codec, presealed.as_ref())?;
        project(self.pending, &event)?;
        self.next_seq += 1;
        Ok(seq)
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

    fn check_birthday(&self, b: chrono::NaiveDate) -> Result<(), LedgerError> {
        let today = self.now.date_naive();
        if b > today || b.year() < 1900 {
            return Err(LedgerError::invalid(
                "invalid_birthday",
                "birthday must be a past date after 1900",
            ));
        }
        Ok(())
    }

    fn check_unique(&self, profile: &Profile, member_id: &str) -> Result<(), LedgerError> {
        if let Some(owner) = self.pending.member_id_by_phone(&profile.phone)?
            && owner != member_id
        {
            return Err(LedgerError::conflict(
                "phone_taken",
                "another member already has this phone number",
            ));
        }
        if let Some(card) = &profile.card_no
            && let Some(owner) = self.pending.member_id_by_card(card)?
            && owner != member_id
        {
            return Err(LedgerError::conflict(
                "card_taken",
                "another member already has this card",
            ));
        }
        Ok(())
    }

    fn register(
        &mut self,
        req: RegisterMember,
        idem: Option<Idem>,
    ) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(idem.as_ref())? {
            let EventBody::MemberRegistered(r) = &event.body else {
                return Err(LedgerError::conflict(
                    "idempotency_key_reused",
                    "key was used for another kind of request",
                ));
            };
            let m = self.pending.member(&r.member_id)?.ok_or_else(|| {
                LedgerError::not_found(
                    "member_not_found",
                    "the member registered with this key is gone",
                )
            })?;
            return Ok(Outcome::Member {
                member: Box::new(m),
                replayed: true,
            });
        }
        if let Some(b) = req.birthday {
            self.check_birthday(b)?;
        }
        let profile = Profile {
            name: normalize_name(&req.name)?,
            phone: normalize_phone(&req.phone)?,
            gender: req.gender,
            birthday: req.birthday,
            card_no: req.card_no.as_deref().map(normalize_card).transpose()?,
        };
        let tags = normalize_tags(&req.tags)?;
        let id = crate::ids::new_v7().to_string();
        self.check_unique(&profile, &id)?;
        let seq = self.emit(EventBody::MemberRegistered(MemberRegistered {
            member_id: id.clone(),
            profile: Some(profile),
            tags,
            consent: req.consent,
            store_id: self.settings.store_id.clone(),
            staff_no: self.actor.staff_no.clone(),
            created_at: self.now,
        }))?;
        self.idem_store(idem.as_ref(), seq)?;
        let a = &self.settings.insight.automation;
        if a.enabled && a.welcome_coupon > 0 {
            let coupon = auto_coupon(
                &crate::domain::automation::Occasion::Welcome,
                &id,
                "新会员礼券 Welcome",
                a.welcome_coupon,
                self.now,
                a.welcome_valid_days,
            );
            self.emit(EventBody::CouponIssued(Box::new(coupon)))?;
        }
        let m = self.pending.member(&id)?.ok_or_else(|| {
            LedgerError::Internal("registered member missing from the cache".into())
        })?;
        Ok(Outcome::Member {
            member: Box::new(m),
            replayed: false,
        })
    }

    fn update(&mut self, id: &str, req: UpdateMember) -> Result<Outcome, LedgerError> {
        let m = self.member_or_404(id)?;
        let old = m
            .profile
            .clone()
            .ok_or_else(|| LedgerError::not_found("member_not_found", format!("no member {id}")))?;
        let mut p = old.clone();
        let mut fields = Vec::new();
        if let Some(name) = &req.name {
            p.name = normalize_name(name)?;
        }
        if let Some(phone) = &req.phone {
            p.phone = normalize_phone(phone)?;
        }
        if let Some(g) = req.gender {
            p.gender = g;
        }
        if let Some(b) = req.birthday {
            self.check_birthday(b)?;
            if old.birthday.is_some_and(|o| o != b)
                && !Action::MemberEditBirthday.allowed(self.actor.role)
            {
                return Err(LedgerError::Forbidden {
                    code: "birthday_change_needs_manager",
                    message: "changing a birthday already on file needs a manager".into(),
                });
            }
            p.birthday = Some(b);
        }
        if let Some(card) = &req.card_no {
            p.card_no = if card.trim().is_empty() {
                None
            } else {
                Some(normalize_card(card)?)
            };
        }
        let tags = match &req.tags {
            Some(t) => normalize_tags(t)?,
            None => m.tags.clone(),
        };
        let consent = req.consent.clone().unwrap_or_else(|| m.consent.clone());
        for (name, changed) in [
            ("name", p.name != old.name),
            ("phone", p.phone != old.phone),
            ("gender", p.gender != old.gender),
            ("birthday", p.birthday != old.birthday),
            ("card_no", p.card_no != old.card_no),
            ("tags", tags != m.tags),
            ("consent", consent != m.consent),
        ] {
            if changed {
                fields.push(name.to_string());
            }
        }
        if fields.is_empty() {
            return Ok(Outcome::Member {
                member: Box::new(m),
                replayed: false,
            });
        }
        self.check_unique(&p, id)?;
        self.emit(EventBody::MemberUpdated(MemberUpdated {
            member_id: id.to_string(),
            profile: Some(p),
            tags,
            consent,
            fields,
            staff_no: self.actor.staff_no.clone(),
        }))?;
        let m = self.member_or_404(id)?;
        Ok(Outcome::Member {
            member: Box::new(m),
            replayed: false,
        })
    }

    fn erase(&mut self, id: &str) -> Result<Outcome, LedgerError> {
        match self.pending.member(id)? {
            None => Err(LedgerError::not_found(
                "member_not_found",
                format!("no member {id}"),
            )),
            Some(m) if m.erased_at.is_some() => Ok(Outcome::Erased),
            Some(_) => {
                let by = self.actor.staff_no.clone();
                self.erase_member(id, by)?;
                self.audit("member.erase", id, serde_json::json!({}))?;
                Ok(Outcome::Erased)
            }
        }
    }

    /// Erases a member: destroys their data key (the journal's copies of their personal data
    /// become unreadable), records `member.erased` (the cache drops the profile and its index
    /// entries), and asks for the files to be scrubbed after the commit.
    fn erase_member(&mut self, id: &str, by: String) -> Result<(), LedgerError> {
        self.codec
            .forget_member(self.conn, id)
            .map_err(|e| LedgerError::Internal(format!("destroying a member key: {e}")))?;
        self.emit(EventBody::MemberErased {
            member_id: id.to_string(),
            staff_no: by,
        })?;
        self.erased = true;
        Ok(())
    }

    fn sale(&mut self, req: SaleRequest, idem: Idem) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(Some(&idem))? {
            return match event.body {
                EventBody::SaleRecorded(sale) => Ok(Outcome::Sale {
                    sale,
                    replayed: true,
                }),
                _ => Err(LedgerError::conflict(
                    "idempotency_key_reused",
                    "key was used for another kind of request",
                )),
            };
        }
        let PricedCart {
            member,
            quote,
            stock_before,
        } = price_cart(&*self.pending, &req, self.settings, self.rules, self.now)?;
        let (paid, change) = settle(quote.total, &req.payments)?;
        let sale = build_sale(
            SaleContext {
                id: crate::ids::new_v7().to_string(),
                seq: self.next_seq,
                store_id: self.settings.store_id.clone(),
                now: self.now,
                staff_no: self.actor.staff_no.clone(),
                terminal_id: self.actor.terminal_id.clone(),
            },
            quote,
            req.payments.clone(),
            paid,
            change,
            member.as_ref(),
            self.rules,
        );
        let sale_seq = self.emit(EventBody::SaleRecorded(Box::new(sale.clone())))?;
        debug_assert_eq!(sale_seq, sale.seq);
        for c in &sale.coupons {
            self.emit(EventBody::CouponRedeemed {
                code: c.code.clone(),
                sale_id: sale.id.clone(),
                member_id: sale.member_id.clone(),
                discount: c.discount,
            })?;
        }
        if let (Some(m), Some(after)) = (&member, &sale.member)
            && let Some(to) = &after.upgraded_to
        {
            self.emit(EventBody::LevelChanged {
                member_id: m.id.clone(),
                from: sale.level.clone(),
                to: Some(to.clone()),
                total_spend: after.total_spend,
                cause_id: sale.id.clone(),
            })?;
        }
        for (line, level) in sale.lines.iter().zip(stock_before) {
            if let Some(level) = level {
                self.low_stock_alert(&level, level.on_hand - i64::from(line.qty))?;
            }
        }
        self.idem_store(Some(&idem), sale_seq)?;
        // The receipt is queued with the sale: it prints when the printer can, never lost.
        if req.print
            && let Some(device_id) = self.settings.printers.get(&self.actor.terminal_id)
        {
            store::queue_print(
                self.conn,
                device_id,
                "receipt",
                &sale.id,
                &self.now_utc.to_rfc3339(),
            )?;
        }
        Ok(Outcome::Sale {
            sale: Box::new(sale),
            replayed: false,
        })
    }

    /// Emits `stock.low` when a level crosses below its safety stock.
    fn low_stock_alert(&mut self, before: &StockLevel, after: i64) -> Result<(), LedgerError> {
        if before.safety_stock > 0
            && before.on_hand >= before.safety_stock
            && after < before.safety_stock
        {
            self.emit(EventBody::StockLow {
                sku: before.sku.clone(),
                on_hand: after,
                safety_stock: before.safety_stock,
            })?;
        }
        Ok(())
    }

    fn load_sale(&self, sale_id: &str) -> Result<(Sale, Vec<Refund>), LedgerError> {
        let rows = store::sale_events(self.conn, sale_id)?;
        let mut sale = None;
        let mut refunds = Vec::new();
        for row in rows {
            match row
                .decode(self.conn, &self.settings.store_id, self.codec)?
                .body
            {
                EventBody::SaleRecorded(s) => sale = Some(*s),
                EventBody::SaleRefunded(r) => refunds.push(*r),
                _ => {}
            }
        }
        let sale = sale.ok_or_else(|| {
            LedgerError::not_found("sale_not_found", format!("no sale {sale_id}"))
        })?;
        Ok((sale, refunds))
    }

    fn refund(
        &mut self,
        sale_id: &str,
        req: RefundRequest,
        idem: Option<Idem>,
    ) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(idem.as_ref())? {
            return match event.body {
                EventBody::SaleRefunded(refund) => Ok(Outcome::Refund {
                    refund,
                    replayed: true,
                }),
                _ => Err(LedgerError::conflict(
                    "idempotency_key_reused",
                    "key was used for another kind of request",
                )),
            };
        }
        let reason = req.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(LedgerError::invalid(
                "invalid_reason",
                "a reason of 1–200 characters is required",
            ));
        }
        let (sale, prior) = self.load_sale(sale_id)?;
        let member = match &sale.member_id {
            Some(id) => self.pending.member(id)?,
            None => None,
        };
        let today = self.now.date_naive();
        let level_before = member
            .as_ref()
            .and_then(|m| m.effective_level(self.rules, today))
            .map(LevelRef::from);
        let refund = compute_refund(
            RefundContext {
                id: crate::ids::new_v7().to_string(),
                seq: self.next_seq,
                store_id: self.settings.store_id.clone(),
                now: self.now,
                staff_no: self.actor.staff_no.clone(),
                terminal_id: self.actor.terminal_id.clone(),
                reason: reason.to_string(),
                restock: req.restock,
            },
            &sale,
            &prior,
            req.lines.as_deref(),
            member.as_ref(),
            self.rules,
        )?;
        let seq = self.emit(EventBody::SaleRefunded(Box::new(refund.clone())))?;
        if let (Some(m), Some(after)) = (&member, &refund.member)
            && after.level != level_before
        {
            self.emit(EventBody::LevelChanged {
                member_id: m.id.clone(),
                from: level_before,
                to: after.level.clone(),
                total_spend: after.total_spend,
                cause_id: refund.id.clone(),
            })?;
        }
        self.audit(
            "sale.refund",
            &refund.sale_id,
            serde_json::json!({
                "refund_id": refund.id,
                "amount": refund.amount,
                "restock": refund.restock,
            }),
        )?;
        self.idem_store(idem.as_ref(), seq)?;
        Ok(Outcome::Refund {
            refund: Box::new(refund),
            replayed: false,
        })
    }

    fn move_stock(
        &mut self,
        req: StockMovement,
        idem: Option<Idem>,
    ) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(idem.as_ref())? {
            return match event.body {
                EventBody::StockMoved {
                    movement_id, sku, ..
                } => {
                    let level = self
                        .pending
                        .stock(&sku)?
                        .unwrap_or_else(|| StockLevel::empty(&sku));
                    Ok(Outcome::Stock {
                        level,
                        movement_id,
                        replayed: true,
                    })
                }
                _ => Err(LedgerError::conflict(
                    "idempotency_key_reused",
                    "key was used for another kind of request",
                )),
            };
        }
        if self.pending.product(&req.sku)?.is_none() {
            return Err(LedgerError::not_found(
                "unknown_product",
                format!("no product {}", req.sku),
            ));
        }
        if !req.reason.accepts(req.delta) || req.delta.abs() > MAX_STOCK_DELTA {
            return Err(LedgerError::invalid(
                "invalid_delta",
                "receive needs a positive delta, damage a negative one, adjust and transfer a non-zero one (at most 1000000)",
            ));
        }
        if req.note.chars().count() > 200 {
            return Err(LedgerError::invalid(
                "invalid_note",
                "note must be at most 200 characters",
            ));
        }
        let before = self
            .pending
            .stock(&req.sku)?
            .unwrap_or_else(|| StockLevel::empty(&req.sku));
        let after = before.on_hand + req.delta;
        if after < 0 && !self.settings.allow_negative_stock {
            return Err(LedgerError::rule(
                "insufficient_stock",
                format!("only {} of {} in stock", before.on_hand, req.sku),
            ));
        }
        let movement_id = crate::ids::new_v7().to_string();
        let seq = self.emit(EventBody::StockMoved {
            movement_id: movement_id.clone(),
            sku: req.sku.clone(),
            delta: req.delta,
            reason: req.reason,
            note: req.note.clone(),
            staff_no: self.actor.staff_no.clone(),
            on_hand_after: after,
        })?;
        self.low_stock_alert(&before, after)?;
        self.audit(
            "stock.move",
            &req.sku,
            serde_json::json!({
                "movement_id": movement_id,
                "delta": req.delta,
                "reason": req.reason,
                "on_hand_after": after,
            }),
        )?;
        self.idem_store(idem.as_ref(), seq)?;
        let level = self.pending.stock(&req.sku)?.unwrap_or(before);
        Ok(Outcome::Stock {
            level,
            movement_id,
            replayed: false,
        })
    }

    fn put_product(&mut self, sku: &str, req: ProductEdit) -> Result<Outcome, LedgerError> {
        validate_sku(sku).map_err(|m| LedgerError::invalid("invalid_sku", m))?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(LedgerError::invalid(
                "invalid_name",
                "product name must be 1–64 characters",
            ));
        }
        if !(0..=MAX_UNIT_PRICE).contains(&req.price) {
            return Err(LedgerError::invalid(
                "invalid_price",
                "price must be 0..=1000000000 minor units",
            ));
        }
        if let Some(promo) = &req.promo
            && (!(0..=req.price).contains(&promo.price)
                || promo.from.zip(promo.to).is_some_and(|(f, t)| f > t))
        {
            return Err(LedgerError::invalid(
                "invalid_promo",
                "a promotion price must be between 0 and the price, and start before it ends",
            ));
        }
        if req
            .safety_stock
            .is_some_and(|s| !(0..=MAX_STOCK_DELTA).contains(&s))
        {
            return Err(LedgerError::invalid(
                "invalid_safety_stock",
                "safety stock must be 0..=1000000",
            ));
        }
        if req.barcodes.len() > 16 {
            return Err(LedgerError::invalid(
                "invalid_barcode",
                "at most 16 barcodes",
            ));
        }
        for b in &req.barcodes {
            validate_barcode(b).map_err(|m| LedgerError::invalid("invalid_barcode", m))?;
            if let Some(owner) = self.pending.product_by_barcode(b)?
                && owner.sku != sku
            {
                return Err(LedgerError::conflict(
                    "barcode_taken",
                    format!("barcode {b} belongs to {}", owner.sku),
                ));
            }
        }
        let current = self.pending.product(sku)?;
        let detail = serde_json::json!({
            "price_before": current.as_ref().map(|c| c.price),
            "price": req.price,
            "active": req.active,
        });
        let product = Product {
            sku: sku.to_string(),
            name: name.to_string(),
            barcodes: req.barcodes.clone(),
            price: req.price,
            promo: req.promo.clone(),
            category: req.category.clone(),
            unit: req.unit.clone(),
            member_discount: req.member_discount,
            active: req.active,
            // HQ stays the owner: its next version replaces this local edit.
            version: current.as_ref().map_or(0, |c| c.version),
            seq: 0,
        };
        self.emit(EventBody::ProductUpdated {
            product: Box::new(product),
            safety_stock: req.safety_stock,
            staff_no: self.actor.staff_no.clone(),
        })?;
        self.audit("product.edit", sku, detail)?;
        let p = self
            .pending
            .product(sku)?
            .ok_or_else(|| LedgerError::Internal("edited product missing from the cache".into()))?;
        Ok(Outcome::Product(Box::new(p)))
    }

    /// Applies master data from HQ to the cache by per-item version (no journal event).
    fn apply_hq(&mut self, update: HqUpdate) -> Result<Outcome, LedgerError> {
        let mut tally = (0, 0);
        let mut rules_out = None;
        let mut removed_staff = Vec::new();
        let mut erased_by_hq = Vec::new();
        let p = &mut *self.pending;
        match update {
            HqUpdate::Products(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.product(&i.sku),
                sync::merge_product,
                |p, m| p.put_product(m),
            )?,
            HqUpdate::Prices(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.product(&i.sku),
                sync::merge_price,
                |p, m| p.put_product(m),
            )?,
            HqUpdate::Members(items) => {
                // Members HQ erased that the store still holds personal data of.
                for m in items.iter().filter(|m| m.erased_at.is_some()) {
                    if p.member(&m.id)?.is_some_and(|c| c.erased_at.is_none()) {
                        erased_by_hq.push(m.id.clone());
                    }
                }
                apply_each(
                    p,
                    items,
                    &mut tally,
                    |p, i| p.member(&i.id),
                    sync::merge_member,
                    |p, m| p.put_member(m),
                )?
            }
            HqUpdate::Coupons(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.coupon(&i.code),
                sync::merge_coupon,
                |p, m| {
                    p.put_coupon(m);
                    Ok(())
                },
            )?,
            HqUpdate::Staff(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.staff(&i.staff_no),
                sync::merge_staff,
                |p, m| {
                    if !m.active {
                        removed_staff.push(m.staff_no.clone());
                    }
                    p.put_staff(m);
                    Ok(())
                },
            )?,
            HqUpdate::Stock(items) => apply_each(
                p,
                items,
                &mut tally,
                |p, i| p.stock(&i.sku),
                sync::merge_stock,
                |p, m| {
                    p.put_stock(m);
                    Ok(())
                },
            )?,
            HqUpdate::Rules { version, rules } => {
                if p.rules()?.is_none_or(|(v, _)| version > v) {
                    tally.0 += 1;
                    p.put_rules(version, (*rules).clone());
                    rules_out = Some(rules);
                } else {
                    tally.1 += 1;
                }
            }
        }
        if !p.is_durable() {
            // The ledger opens a durable cache batch for every batch with HQ data.
            return Err(LedgerError::Internal(
                "HQ data in a cache batch that is not fsynced".into(),
            ));
        }
        for id in erased_by_hq {
            self.erase_member(&id, "hq".into())?;
            self.audit("member.erase", &id, serde_json::json!({ "by": "hq" }))?;
        }
        Ok(Outcome::Applied {
            applied: tally.0,
            ignored: tally.1,
            rules: rules_out,
            removed_staff,
        })
    }

    /// Adds, changes or removes (`active: false`) a staff member at this store.
    fn put_staff(&mut self, record: sync::StaffRecord) -> Result<Outcome, LedgerError> {
        let before = self.pending.staff(&record.staff_no)?.filter(|b| b.active);
        let pin_changed = before
            .as_ref()
            .is_none_or(|b| b.pin_hash != record.pin_hash);
        let own_upgrade = self.actor.staff_no == record.staff_no
            && before
                .as_ref()
                .is_some_and(|b| b.role == record.role && b.name == record.name && record.active);
        let action = match (&before, record.active) {
            (_, false) => "staff.remove",
            _ if own_upgrade => "staff.pin_upgrade",
            (Some(_), true) => "staff.change",
            (None, true) => "staff.add",
        };
        let detail = serde_json::json!({
            "role": record.role,
            "role_before": before.as_ref().map(|b| b.role),
            "pin_changed": pin_changed,
        });
        // Removed, given another role or a new PIN by an admin: open sessions end.
        let revoke = !own_upgrade
            && (!record.active
                || pin_changed
                || before.as_ref().is_some_and(|b| b.role != record.role));
        let staff_no = record.staff_no.clone();
        self.emit(EventBody::StaffChanged {
            record: record.clone(),
            by: self.actor.staff_no.clone(),
        })?;
        self.audit(action, &staff_no, detail)?;
        Ok(Outcome::Staff {
            record: Box::new(record),
            revoke,
        })
    }

    fn issue_coupon(&mut self, req: IssueCoupon) -> Result<Outcome, LedgerError> {
        let code = match &req.code {
            Some(c) => {
                let c = c.trim().to_ascii_uppercase();
                if !(4..=32).contains(&c.len())
                    || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(LedgerError::invalid(
                        "invalid_coupon_code",
                        "code must be 4–32 letters, digits or '-'",
                    ));
                }
                c
            }
            None => generate_code(),
        };
        if self.pending.coupon(&code)?.is_some() {
            return Err(LedgerError::conflict(
                "coupon_exists",
                format!("coupon {code} exists"),
            ));
        }
        let kind_ok = req.kind.validate().is_ok()
            && match &req.kind {
                CouponKind::FreeItem { sku } => self.pending.product(sku)?.is_some(),
                _ => true,
            };
        if !kind_ok {
            return Err(LedgerError::invalid(
                "invalid_coupon",
                "amount and threshold must be positive amounts, percent 0.01–100 %, a free item a known product",
            ));
        }
        if req
            .valid_from
            .zip(req.valid_to)
            .is_some_and(|(f, t)| f >= t)
        {
            return Err(LedgerError::invalid(
                "invalid_coupon",
                "valid_from must be before valid_to",
            ));
        }
        if req.title.chars().count() > 64 {
            return Err(LedgerError::invalid(
                "invalid_coupon",
                "title must be at most 64 characters",
            ));
        }
        if let Some(m) = &req.member_id {
            self.member_or_404(m)?;
        }
        let coupon = Coupon {
            code: code.clone(),
            title: req.title.clone(),
            kind: req.kind.clone(),
            valid_from: req.valid_from,
            valid_to: req.valid_to,
            member_id: req.member_id.clone(),
            combinable_with_level: req.combinable_with_level,
            stackable: req.stackable,
            used: None,
            version: 0,
            seq: 0,
        };
        self.emit(EventBody::CouponIssued(Box::new(coupon)))?;
        let c = self
            .pending
            .coupon(&code)?
            .ok_or_else(|| LedgerError::Internal("issued coupon missing from the cache".into()))?;
        Ok(Outcome::Coupon(Box::new(c)))
    }
}

/// A coupon code: 10 characters from an alphabet without look-alikes (no 0/O, 1/I/L).
fn generate_code() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..10)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Applies HQ items one after the other (a later item sees an earlier one of the same key),
/// counting into `tally` (changed, ignored).
fn apply_each<T, C>(
    p: &mut Pending<'_>,
    items: Vec<T>,
    tally: &mut (usize, usize),
    current: impl Fn(&Pending<'_>, &T) -> Result<Option<C>, CacheError>,
    merge: impl Fn(Option<&C>, &T) -> Option<C>,
    mut put: impl FnMut(&mut Pending<'_>, C) -> Result<(), CacheError>,
) -> Result<(), CacheError> {
    for item in items {
        match merge(current(p, &item)?.as_ref(), &item) {
            Some(m) => {
                tally.0 += 1;
                put(p, m)?;
            }
            None => tally.1 += 1,
        }
    }
    Ok(())
}
