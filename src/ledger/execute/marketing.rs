//! The store's own marketing and customer care inside a batch: automatic coupons for an
//! occasion, campaigns, feedback.

use chrono::{DateTime, FixedOffset};

use super::Ctx;
use crate::domain::calendar;
use crate::domain::catalog::{Coupon, CouponKind};
use crate::domain::event::EventBody;
use crate::ledger::Outcome;
use crate::ledger::error::LedgerError;

/// An automatic coupon for an occasion: `amount` off any purchase, valid from the start of the
/// store-local day of `now` through the whole `days`-th day after it. Its end is written in the
/// store's offset on that day (`tz`): summer time may have begun or ended since `now`. Whole
/// days at both ends: a coupon issued while the clock ran ahead (a bad RTC, before NTP set it
/// right) is good the same day once the clock is right — until 2026-12-07 it was valid from the
/// instant of issue, and a birthday coupon the morning run issued at a clock eight hours ahead
/// was refused (`coupon_not_yet_valid`) until the afternoon.
pub(crate) fn auto_coupon(
    occasion: &crate::domain::automation::Occasion,
    member_id: &str,
    title: &str,
    amount: crate::domain::money::Money,
    now: DateTime<FixedOffset>,
    tz: chrono_tz::Tz,
    days: u32,
) -> Coupon {
    Coupon {
        code: crate::domain::automation::occasion_code(occasion, member_id),
        title: title.to_string(),
        kind: CouponKind::AmountOff {
            threshold: 0,
            amount,
        },
        valid_from: Some(calendar::local_time(
            tz,
            calendar::start_of_day(
                tz,
                calendar::local_date(tz, now.with_timezone(&chrono::Utc)),
            ),
        )),
        valid_to: Some(calendar::end_of_days_after(
            tz,
            now.with_timezone(&chrono::Utc),
            days,
        )),
        member_id: Some(member_id.to_string()),
        combinable_with_level: true,
        stackable: false,
        used: None,
        version: 0,
        seq: 0,
    }
}

impl Ctx<'_, '_> {
    pub(super) fn automate(
        &mut self,
        member_id: &str,
        occasion: crate::domain::automation::Occasion,
        coupon: Option<Coupon>,
    ) -> Result<Outcome, LedgerError> {
        use crate::domain::automation::{Occasion, occasion_code};
        let m = self.member_or_404(member_id)?;
        let code = occasion_code(&occasion, member_id);
        let coupon_known = match &coupon {
            Some(c) => self.pending.coupon(&c.code)?.is_some(),
            None => false,
        };
        if matches!(occasion, Occasion::Birthday { .. }) && coupon.is_none() {
            return Err(LedgerError::invalid(
                "invalid_occasion",
                "a birthday occasion comes with its coupon",
            ));
        }
        if m.erased_at.is_some() || coupon_known || self.pending.occasion_seen(&code)? {
            return Ok(Outcome::Automated { issued: false });
        }
        let coupon_code = match coupon {
            Some(mut c) => {
                c.member_id = Some(member_id.to_string());
                let code = c.code.clone();
                self.emit(EventBody::CouponIssued(Box::new(c)))?;
                Some(code)
            }
            None => None,
        };
        match occasion {
            Occasion::Birthday { year } => {
                self.emit(EventBody::MemberBirthday {
                    member_id: member_id.to_string(),
                    year,
                    coupon_code: coupon_code.unwrap_or_default(),
                    marketing_consent: m.consent.marketing,
                })?;
            }
            Occasion::Winback { reason, .. } => {
                self.emit(EventBody::MemberAtRisk {
                    member_id: member_id.to_string(),
                    reason,
                    coupon_code,
                    marketing_consent: m.consent.marketing,
                    occasion: Some(code),
                })?;
            }
            Occasion::Welcome | Occasion::Campaign { .. } => {}
        }
        Ok(Outcome::Automated { issued: true })
    }

    /// See [`crate::ledger::Command::StartCampaign`].
    pub(super) fn start_campaign(
        &mut self,
        c: crate::domain::campaign::Campaign,
        issued: bool,
    ) -> Result<Outcome, LedgerError> {
        self.campaign_not_started(&c.spec.id)?;
        let mut c = c;
        if !issued {
            // The members were picked from a read of the cache before this command ran: one
            // erased (or gone) since then gets no coupon and leaves the campaign.
            c.treated = self.still_members(std::mem::take(&mut c.treated))?;
            c.control = self.still_members(std::mem::take(&mut c.control))?;
        }
        if c.treated.is_empty() {
            return Err(LedgerError::rule(
                "no_members",
                "no member matches the target",
            ));
        }
        if !issued {
            self.issue_coupons(&c, false)?;
        }
        let id = c.spec.id.clone();
        self.emit(EventBody::CampaignStarted(Box::new(c.clone())))?;
        self.audit("campaign.start", &id, serde_json::json!({}))?;
        Ok(Outcome::Campaign(Box::new(c)))
    }

    /// See [`crate::ledger::Command::IssueCampaignCoupons`].
    pub(super) fn issue_campaign_coupons(
        &mut self,
        c: crate::domain::campaign::Campaign,
    ) -> Result<Outcome, LedgerError> {
        self.campaign_not_started(&c.spec.id)?;
        let mut c = c;
        c.treated = self.still_members(std::mem::take(&mut c.treated))?;
        c.control = self.still_members(std::mem::take(&mut c.control))?;
        // A part issued before (a start broken off, then HQ's message delivered again) is not
        // issued twice: a coupon used meanwhile stays used.
        self.issue_coupons(&c, true)?;
        Ok(Outcome::Campaign(Box::new(c)))
    }

    fn campaign_not_started(&self, id: &str) -> Result<(), LedgerError> {
        if self.pending.campaign(id)?.is_some() {
            return Err(LedgerError::conflict(
                "campaign_exists",
                format!("campaign {id} was already started"),
            ));
        }
        Ok(())
    }

    /// Issues the campaign's coupon to each of its treated members (`unless_held`: but to one
    /// who holds it already).
    fn issue_coupons(
        &mut self,
        c: &crate::domain::campaign::Campaign,
        unless_held: bool,
    ) -> Result<(), LedgerError> {
        let valid_from = self.settings.local_start(c.spec.starts);
        // `check` keeps `ends` far from the calendar's last day.
        let day_after =
            c.spec.ends.succ_opt().ok_or_else(|| {
                LedgerError::invalid("invalid_period", "ends has no day after it")
            })?;
        let valid_to = self.settings.local_start(day_after);
        for m in &c.treated {
            let occasion = crate::domain::automation::Occasion::Campaign {
                campaign: c.spec.id.clone(),
            };
            let code = crate::domain::automation::occasion_code(&occasion, m);
            if unless_held && self.pending.coupon(&code)?.is_some() {
                continue;
            }
            let coupon = Coupon {
                code,
                title: c.spec.coupon_title.clone(),
                kind: c.spec.coupon.clone(),
                valid_from: Some(valid_from),
                valid_to: Some(valid_to),
                member_id: Some(m.clone()),
                combinable_with_level: true,
                stackable: false,
                used: None,
                version: 0,
                seq: 0,
            };
            self.emit(EventBody::CouponIssued(Box::new(coupon)))?;
        }
        Ok(())
    }

    /// The ids of `ids` that are still members here, not erased.
    fn still_members(&self, ids: Vec<String>) -> Result<Vec<String>, LedgerError> {
        let mut live = Vec::with_capacity(ids.len());
        for id in ids {
            if self
                .pending
                .member(&id)?
                .is_some_and(|m| m.erased_at.is_none())
            {
                live.push(id);
            }
        }
        Ok(live)
    }

    pub(super) fn record_feedback(
        &mut self,
        mut f: crate::domain::feedback::Feedback,
    ) -> Result<Outcome, LedgerError> {
        if !(1..=5).contains(&f.rating) {
            return Err(LedgerError::invalid("invalid_rating", "rating is 1–5"));
        }
        f.text = f.text.trim().to_string();
        if f.text.chars().count() > 1000 {
            return Err(LedgerError::invalid(
                "invalid_text",
                "feedback text is at most 1,000 characters",
            ));
        }
        if let Some(m) = &f.member_id {
            self.member_or_404(m)?;
        }
        if let Some(s) = &f.sale_id {
            let (sale, _) = self.load_sale(s)?;
            // A complaint about a member's sale is theirs: their erasure takes its text too
            // (the cache finds what to scrub by `member_id`).
            if f.member_id.is_none() {
                f.member_id = sale.member_id;
            }
        }
        f.id = crate::ids::new_v7().to_string();
        f.status = crate::domain::feedback::FeedbackStatus::Open;
        f.notes.clear();
        f.recorded_by = self.actor.staff_no.clone();
        f.created_at = self.now;
        f.updated_at = self.now;
        let id = f.id.clone();
        self.emit(EventBody::FeedbackReceived(Box::new(f)))?;
        let f = self
            .pending
            .feedback(&id)?
            .ok_or_else(|| LedgerError::Internal("recorded feedback missing".into()))?;
        Ok(Outcome::Feedback(Box::new(f)))
    }

    pub(super) fn update_feedback(
        &mut self,
        id: &str,
        status: crate::domain::feedback::FeedbackStatus,
        note: String,
    ) -> Result<Outcome, LedgerError> {
        if self.pending.feedback(id)?.is_none() {
            return Err(LedgerError::not_found(
                "feedback_not_found",
                format!("no feedback {id}"),
            ));
        }
        let note = note.trim().to_string();
        if note.chars().count() > 1000 {
            return Err(LedgerError::invalid(
                "invalid_note",
                "a note is at most 1,000 characters",
            ));
        }
        self.emit(EventBody::FeedbackUpdated {
            id: id.to_string(),
            note: crate::domain::feedback::FeedbackNote {
                by: self.actor.staff_no.clone(),
                at: self.now,
                status,
                note,
            },
        })?;
        let f = self
            .pending
            .feedback(id)?
            .ok_or_else(|| LedgerError::Internal("updated feedback missing".into()))?;
        Ok(Outcome::Feedback(Box::new(f)))
    }
}
