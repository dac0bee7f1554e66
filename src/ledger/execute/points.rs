//! A manager's adjustment of a member's points inside a batch.

use super::Ctx;
use crate::domain::adjustment::{AdjustError, Adjustment, MAX_ADJUSTMENT, MAX_NOTE_CHARS, adjust};
use crate::domain::event::EventBody;
use crate::journal::store;
use crate::ledger::error::LedgerError;
use crate::ledger::requests::AdjustPoints;
use crate::ledger::{Idem, Outcome};

impl Ctx<'_, '_> {
    /// Records `points.adjusted` for `member_id` (audited as `points.adjust`). The same key
    /// and body again answers the first adjustment, adjusting nothing.
    pub(super) fn adjust_points(
        &mut self,
        member_id: &str,
        req: AdjustPoints,
        idem: Idem,
    ) -> Result<Outcome, LedgerError> {
        if let Some(event) = self.idem_replay(Some(&idem))? {
            return match event.body {
                EventBody::PointsAdjusted(_) => Ok(Outcome::PointsAdjusted {
                    event: Box::new(event),
                    replayed: true,
                }),
                _ => Err(LedgerError::key_reused()),
            };
        }
        let member = match self.pending.member(member_id)? {
            None => {
                return Err(LedgerError::not_found(
                    "member_not_found",
                    format!("no member {member_id}"),
                ));
            }
            // Nobody can be served as an erased member (no name, phone or card to find them
            // by, and a sale refuses them): points given to them could never be used, and
            // points taken would correct nothing a till could see.
            Some(m) if m.erased_at.is_some() => {
                return Err(LedgerError::rule(
                    "member_erased",
                    format!("member {member_id} was erased; their points cannot be adjusted"),
                ));
            }
            Some(m) => m,
        };
        let data = adjust(
            &member,
            &Adjustment {
                delta: req.delta,
                reason: req.reason,
                note: &req.note,
                store_id: &self.settings.store_id,
                staff_no: &self.actor.staff_no,
                terminal_id: &self.actor.terminal_id,
            },
            self.rules,
            self.now,
        )
        .map_err(|e| match e {
            AdjustError::InvalidDelta => LedgerError::invalid(
                "invalid_delta",
                format!(
                    "delta must be a non-zero number of points, at most {MAX_ADJUSTMENT} either way"
                ),
            ),
            AdjustError::InvalidNote => LedgerError::invalid(
                "invalid_note",
                format!(
                    "note must be at most {MAX_NOTE_CHARS} characters, without control characters"
                ),
            ),
            AdjustError::InsufficientPoints { balance } => LedgerError::rule(
                "insufficient_points",
                format!(
                    "the member holds {balance} points; {} cannot be taken",
                    req.delta.saturating_neg()
                ),
            ),
        })?;
        let detail = serde_json::json!({
            "delta": data.delta,
            "reason": data.reason,
            "points_after": data.member.points,
        });
        let seq = self.emit(EventBody::PointsAdjusted(Box::new(data)))?;
        self.audit("points.adjust", member_id, detail)?;
        self.idem_store(Some(&idem), seq)?;
        let event = store::event_at(self.conn, seq)?
            .ok_or_else(|| LedgerError::Internal(format!("event {seq} just written is missing")))?
            .decode(self.conn, &self.settings.store_id, self.codec)?;
        Ok(Outcome::PointsAdjusted {
            event: Box::new(event),
            replayed: false,
        })
    }
}
