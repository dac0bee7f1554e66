//! Reads what the insight figures need — sales, refunds and registrations of a period from the
//! journal, members from the cache — and hands it to [`crate::domain::insight`] and
//! [`crate::domain::report`].

use chrono::NaiveDate;
use rusqlite::Connection;

use crate::domain::refund::Refund;
use crate::domain::report::{RefundFact, SaleFact, Tally};
use crate::domain::sale::Sale;
use crate::journal::JournalError;
use crate::journal::store::{self, StoredEvent};

fn corrupt(e: &StoredEvent, err: impl std::fmt::Display) -> JournalError {
    JournalError::Corrupt {
        seq: e.seq,
        reason: format!("{}: {err}", e.kind),
    }
}

/// Hands the sales, refunds and registrations on the store-local days `from..=to` to `tally`,
/// one at a time in `seq` order, as they are read: none is kept (a year of a store selling
/// 1,500 times a day is over half a million sales, about a kilobyte each held). A refund's
/// `sale_staff_no` is read from its sale's event (one indexed lookup a refund) when the tally
/// wants it ([`Tally::wants_sale_cashier`]).
pub fn read(
    conn: &Connection,
    from: NaiveDate,
    to: NaiveDate,
    tally: &mut impl Tally,
) -> Result<(), JournalError> {
    let end = to.succ_opt().unwrap_or(to).to_string();
    store::for_events_between(
        conn,
        &["sale.recorded", "sale.refunded", "member.registered"],
        &from.to_string(),
        &end,
        |e| {
            match e.kind.as_str() {
                "sale.recorded" => {
                    let s: Sale = serde_json::from_str(&e.data).map_err(|x| corrupt(&e, x))?;
                    let payments = s.net_payments();
                    tally.sale(&SaleFact {
                        id: s.id,
                        at: s.created_at,
                        staff_no: s.staff_no,
                        terminal_id: s.terminal_id,
                        member_id: s.member_id,
                        total: s.total,
                        lines: s
                            .lines
                            .into_iter()
                            .map(|l| (l.sku, l.qty, l.amount))
                            .collect(),
                        payments,
                    });
                }
                "sale.refunded" => {
                    let r: Refund = serde_json::from_str(&e.data).map_err(|x| corrupt(&e, x))?;
                    // The refunded sale's cashier is in that sale's event.
                    let sale_staff_no = if tally.wants_sale_cashier() {
                        store::sale_events(conn, &r.sale_id)?
                            .into_iter()
                            .find(|sale| sale.kind == "sale.recorded")
                            .and_then(|sale| serde_json::from_str::<Sale>(&sale.data).ok())
                            .map(|s| s.staff_no)
                    } else {
                        None
                    };
                    tally.refund(&RefundFact {
                        sale_id: r.sale_id,
                        at: r.created_at,
                        staff_no: r.staff_no,
                        terminal_id: r.terminal_id,
                        sale_staff_no,
                        // The money given back: less than the lines' amount when points the
                        // member had already spent were kept back (`shortfall_value`).
                        amount: r.refund_total,
                        lines: r.lines.into_iter().map(|l| (l.sku, l.qty)).collect(),
                        payments: r.payments,
                    });
                }
                _ => {
                    // Only the staff number is read: the profile stays sealed.
                    let v: serde_json::Value =
                        serde_json::from_str(&e.data).map_err(|x| corrupt(&e, x))?;
                    if let Some(no) = v["staff_no"].as_str() {
                        tally.registration(no);
                    }
                }
            }
            Ok(())
        },
    )
}

/// `(staff_no, rating)` of the feedback about staff recorded on the days `from..=to`.
pub fn ratings(
    conn: &Connection,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<(String, u8)>, JournalError> {
    let mut out = Vec::new();
    let end = to.succ_opt().unwrap_or(to).to_string();
    store::for_events_between(conn, &["feedback.received"], &from.to_string(), &end, |e| {
        let f: crate::domain::feedback::Feedback =
            serde_json::from_str(&e.data).map_err(|x| corrupt(&e, x))?;
        if let Some(no) = f.staff_no {
            out.push((no, f.rating));
        }
        Ok(())
    })?;
    Ok(out)
}
