//! Importing members in bulk: each row registered, merged into the member holding its phone,
//! or refused with a reason, all in the caller's transaction.

use chrono::NaiveDate;

use super::Ctx;
use crate::domain::contact::{
    check_birthday, normalize_card, normalize_name, normalize_phone, normalize_tags,
};
use crate::domain::event::{EventBody, MemberRegistered, MemberUpdated};
use crate::domain::member::Profile;
use crate::ledger::error::LedgerError;
use crate::ledger::requests::{ImportRow, RegisterMember};
use crate::ledger::{ImportReport, Outcome};

/// What one imported row did.
enum Imported {
    Added,
    Merged,
    Unchanged,
}

/// A row's profile and tags, normalised, or why the row is refused. `today`: birthdays after
/// it are refused.
pub(crate) fn normalize_row(
    req: &RegisterMember,
    today: NaiveDate,
) -> Result<(Profile, Vec<String>), String> {
    if let Some(b) = req.birthday {
        check_birthday(b, today).map_err(|e| e.to_string())?;
    }
    Ok((
        Profile {
            name: normalize_name(&req.name).map_err(|e| e.to_string())?,
            phone: normalize_phone(&req.phone).map_err(|e| e.to_string())?,
            gender: req.gender,
            birthday: req.birthday,
            card_no: req
                .card_no
                .as_deref()
                .filter(|c| !c.trim().is_empty())
                .map(normalize_card)
                .transpose()
                .map_err(|e| e.to_string())?,
        },
        normalize_tags(&req.tags).map_err(|e| e.to_string())?,
    ))
}

impl Ctx<'_, '_> {
    pub(super) fn import_members(&mut self, rows: Vec<ImportRow>) -> Result<Outcome, LedgerError> {
        let mut report = ImportReport::default();
        for row in rows {
            let line = row.line;
            match self.import_one(row)? {
                Ok(Imported::Added) => report.added += 1,
                Ok(Imported::Merged) => report.merged += 1,
                Ok(Imported::Unchanged) => report.unchanged += 1,
                Err(reason) => report.rejected.push((line, reason)),
            }
        }
        Ok(Outcome::Imported(Box::new(report)))
    }

    /// One imported row: `Err` inside is the row's refusal; outside, a failure of the batch.
    fn import_one(&mut self, row: ImportRow) -> Result<Result<Imported, String>, LedgerError> {
        let ImportRow { req, prepared, .. } = row;
        let (profile, tags) = match &prepared {
            Some(p) => (p.profile.clone(), p.tags.clone()),
            None => match normalize_row(&req, self.now.date_naive()) {
                Ok(r) => r,
                Err(reason) => return Ok(Err(reason)),
            },
        };
        let keys = match &prepared {
            Some(p) => p.keys.clone(),
            None => crate::cache::MemberKeys::of(self.codec, &profile),
        };
        let card_owner = match keys.card() {
            Some(k) => self.pending.member_id_by_key(true, k)?,
            None => None,
        };
        let Some(id) = self.pending.member_id_by_key(false, keys.phone())? else {
            if card_owner.is_some() {
                return Ok(Err("card_no: another member already has this card".into()));
            }
            let id = match prepared {
                Some(p) => {
                    let p = *p;
                    self.pending
                        .prime(&p.id, profile.clone(), keys, p.sealed.cache.clone());
                    self.presealed = Some((p.id.clone(), p.sealed));
                    p.id
                }
                None => crate::ids::new_v7().to_string(),
            };
            self.emit(EventBody::MemberRegistered(MemberRegistered {
                member_id: id,
                profile: Some(profile),
                tags,
                consent: req.consent,
                store_id: self.settings.store_id.clone(),
                staff_no: self.actor.staff_no.clone(),
                created_at: self.now,
            }))?;
            return Ok(Ok(Imported::Added));
        };
        // A known phone: fill what the member lacks, add tags; never overwrite. (A phone or
        // card an earlier row of the same import gave never gets here: the import refuses the
        // row as a duplicate, see `import::Seen`.)
        let m = self.member_or_404(&id)?;
        let Some(old) = m.profile.clone() else {
            return Ok(Err("phone: belongs to an erased member".into()));
        };
        if card_owner.as_ref().is_some_and(|o| *o != id) {
            return Ok(Err("card_no: another member already has this card".into()));
        }
        let mut p = old.clone();
        if p.birthday.is_none() {
            p.birthday = profile.birthday;
        }
        if p.card_no.is_none() {
            p.card_no = profile.card_no;
        }
        if p.gender == Default::default() {
            p.gender = profile.gender;
        }
        let mut all_tags = m.tags.clone();
        for t in tags {
            if !all_tags.contains(&t) {
                all_tags.push(t);
            }
        }
        let all_tags = match normalize_tags(&all_tags) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut fields = Vec::new();
        for (name, changed) in [
            ("birthday", p.birthday != old.birthday),
            ("card_no", p.card_no != old.card_no),
            ("gender", p.gender != old.gender),
            ("tags", all_tags != m.tags),
        ] {
            if changed {
                fields.push(name.to_string());
            }
        }
        if fields.is_empty() {
            return Ok(Ok(Imported::Unchanged));
        }
        self.emit(EventBody::MemberUpdated(MemberUpdated {
            member_id: id,
            profile: Some(p),
            tags: all_tags,
            consent: m.consent.clone(),
            fields,
            staff_no: self.actor.staff_no.clone(),
        }))?;
        Ok(Ok(Imported::Merged))
    }
}
