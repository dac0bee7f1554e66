//! Members inside a batch: registration, edits, erasure, and the checks they share.

use super::{Ctx, auto_coupon};
use crate::domain::access::Action;
use crate::domain::contact::{
    check_birthday, normalize_card, normalize_name, normalize_phone, normalize_tags,
};
use crate::domain::event::{EventBody, MemberRegistered, MemberUpdated};
use crate::domain::member::Profile;
use crate::journal::store;
use crate::ledger::error::LedgerError;
use crate::ledger::requests::{RegisterMember, UpdateMember};
use crate::ledger::{Idem, Outcome};

impl Ctx<'_, '_> {
    /// A birthday after 1900 and not after the store's today.
    fn check_birthday(&self, b: chrono::NaiveDate) -> Result<(), LedgerError> {
        Ok(check_birthday(b, self.now.date_naive())?)
    }

    /// The phone and the card (any not in `kept`, the profile before an edit) are no other
    /// member's. What an edit leaves as it was is not checked again: HQ's copy of a duplicate
    /// member may hold it in the index (uplink.md), and that is no reason to refuse the edit
    /// of a name.
    fn check_unique(
        &self,
        profile: &Profile,
        member_id: &str,
        kept: Option<&Profile>,
    ) -> Result<(), LedgerError> {
        if kept.is_none_or(|k| k.phone != profile.phone)
            && let Some(owner) = self.pending.member_id_by_phone(&profile.phone)?
            && owner != member_id
        {
            return Err(LedgerError::conflict(
                "phone_taken",
                "another member already has this phone number",
            ));
        }
        if let Some(card) = &profile.card_no
            && kept.is_none_or(|k| k.card_no.as_ref() != Some(card))
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

    pub(super) fn register(
        &mut self,
        req: RegisterMember,
        idem: Option<Idem>,
    ) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(idem.as_ref())? {
            let EventBody::MemberRegistered(r) = &event.body else {
                return Err(LedgerError::key_reused());
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
            // An empty card number is no card, as in an edit and an import.
            card_no: req
                .card_no
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .map(normalize_card)
                .transpose()?,
        };
        let tags = normalize_tags(&req.tags)?;
        let id = crate::ids::new_v7().to_string();
        self.check_unique(&profile, &id, None)?;
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
        if let Some(idem) = &idem {
            // Forgotten at the member's erasure (the body hash comes from the phone).
            store::idem_note_member(self.conn, &id, &self.actor.terminal_id, &idem.key)?;
        }
        let a = &self.settings.insight.automation;
        if a.enabled && a.welcome_coupon > 0 {
            let coupon = auto_coupon(
                &crate::domain::automation::Occasion::Welcome,
                &id,
                "新会员礼券 Welcome",
                a.welcome_coupon,
                self.now,
                self.settings.tz,
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

    pub(super) fn update(&mut self, id: &str, req: UpdateMember) -> Result<Outcome, LedgerError> {
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
        self.check_unique(&p, id, Some(&old))?;
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

    pub(super) fn erase(&mut self, id: &str) -> Result<Outcome, LedgerError> {
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
    pub(super) fn erase_member(&mut self, id: &str, by: String) -> Result<(), LedgerError> {
        self.codec
            .forget_member(self.conn, id)
            .map_err(|e| LedgerError::Internal(format!("destroying a member key: {e}")))?;
        store::idem_forget_member(self.conn, id)?;
        self.emit(EventBody::MemberErased {
            member_id: id.to_string(),
            staff_no: by,
        })?;
        self.erased = true;
        Ok(())
    }
}
