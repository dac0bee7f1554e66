//! Reads what the insight figures need — sales, refunds and registrations of a period from the
//! journal, members from the cache — and hands it to [`crate::domain::insight`].

use std::collections::HashMap;

use chrono::NaiveDate;
use rusqlite::Connection;

use crate::domain::refund::Refund;
use crate::domain::report::{RefundFact, SaleFact};
use crate::domain::sale::Sale;
use crate::journal::JournalError;
use crate::journal::store::{self, StoredEvent};

/// Facts of a period.
#[derive(Debug, Default)]
pub struct Facts {
    /// Sales.
    pub sales: Vec<SaleFact>,
    /// Refunds.
    pub refunds: Vec<RefundFact>,
    /// Staff number of each member registration.
    pub registrations: Vec<String>,
}

fn corrupt(e: &StoredEvent, err: impl std::fmt::Display) -> JournalError {
    JournalError::Corrupt {
        seq: e.seq,
        reason: format!("{}: {err}", e.kind),
    }
}

/// The sales, refunds and registrations on the store-local days `from..=to`.
pub fn facts(conn: &Connection, from: NaiveDate, to: NaiveDate) -> Result<Facts, JournalError> {
    let mut out = Facts::default();
    let mut refunds: Vec<(Refund, String)> = Vec::new();
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
                    out.sales.push(SaleFact {
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
                    let sale_id = r.sale_id.clone();
                    refunds.push((r, sale_id));
                }
                _ => {
                    // Only the staff number is read: the profile stays sealed.
                    let v: serde_json::Value =
                        serde_json::from_str(&e.data).map_err(|x| corrupt(&e, x))?;
                    if let Some(no) = v["staff_no"].as_str() {
                        out.registrations.push(no.to_string());
                    }
                }
            }
            Ok(())
        },
    )?;
    let cashier: HashMap<&str, &str> = out
        .sales
        .iter()
        .map(|s| (s.id.as_str(), s.staff_no.as_str()))
        .collect();
    let mut facts = Vec::with_capacity(refunds.len());
    for (r, sale_id) in refunds {
        let sale_staff_no = match cashier.get(sale_id.as_str()) {
            Some(no) => Some(no.to_string()),
            // A refund of an older sale: its cashier is in that sale's event.
            None => store::sale_events(conn, &sale_id)?
                .into_iter()
                .find(|e| e.kind == "sale.recorded")
                .and_then(|e| serde_json::from_str::<Sale>(&e.data).ok())
                .map(|s| s.staff_no),
        };
        facts.push(RefundFact {
            sale_id: sale_id.clone(),
            at: r.created_at,
            staff_no: r.staff_no,
            terminal_id: r.terminal_id,
            sale_staff_no,
            // The money given back: less than the lines' amount when points the member had
            // already spent were kept back (`shortfall_value`).
            amount: r.refund_total,
            lines: r.lines.into_iter().map(|l| (l.sku, l.qty)).collect(),
            payments: r.payments,
        });
    }
    out.refunds = facts;
    Ok(out)
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
