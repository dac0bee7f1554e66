//! What one print job sends: the receipt of its sale or the slip of a refund (read back from
//! the journal), or nothing for a drawer opening, and the drawer kick while it is still timely.

use chrono::{DateTime, Utc};

use super::DRAWER_WINDOW;
use crate::config::PrinterOptions;
use crate::devices::Context;
use crate::devices::escpos::EscPos;
use crate::devices::receipt::{MemberBlock, ReceiptInput, RefundSlip, render, render_refund};
use crate::domain::event::EventBody;
use crate::domain::sale::{Sale, any_cash};
use crate::journal::store::{self, PrintJob};

/// What one job sends: the receipt (empty for a drawer opening), then the drawer kick.
#[derive(Default)]
pub(super) struct Parts {
    pub(super) body: Vec<u8>,
    pub(super) kick: Option<Kick>,
}

/// A drawer kick, sent only before `until`.
pub(super) struct Kick {
    pub(super) bytes: Vec<u8>,
    pub(super) until: DateTime<Utc>,
}

/// The bytes of one job. A receipt or refund slip opens the drawer (cash, not a reprint) and a
/// drawer job does so only within [`DRAWER_WINDOW`] of being queued: nobody may be at the till
/// later.
pub(super) async fn job_bytes(
    ctx: &Context,
    opts: &PrinterOptions,
    job: &PrintJob,
) -> Result<Parts, String> {
    // Queued more than the window after now: by a clock that has gone back since (NTP set
    // right a box that booted with its clock ahead), so how long it waited is unknown, and it
    // opens no drawer — a drawer opening, a cash receipt or a refund slip alike. Taken for its
    // time (or as fresh), one queued a day before opened the drawer whenever the printer came
    // back within that day. (A small step back keeps its time: the kick's wait is then at most
    // twice the window.)
    let now = Utc::now();
    let queued_at = DateTime::parse_from_rfc3339(&job.created_at)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    let kick = |pin, fresh_if_unknown: bool| {
        let mut cmd = EscPos::new(opts.encoding);
        cmd.drawer_kick(pin);
        let until = match queued_at {
            Some(t) if t > now + DRAWER_WINDOW => DateTime::<Utc>::MIN_UTC,
            Some(t) => t + DRAWER_WINDOW,
            None if fresh_if_unknown => now + DRAWER_WINDOW,
            None => DateTime::<Utc>::MIN_UTC,
        };
        Kick {
            bytes: cmd.into_bytes(),
            until,
        }
    };
    if job.kind == "drawer" {
        // A drawer opening of unknown age is treated as expired.
        return Ok(Parts {
            body: Vec::new(),
            kick: opts.drawer.map(|pin| kick(pin, false)),
        });
    }
    let sale_id = job.sale_id.clone();
    let store_id = ctx.settings.store_id.clone();
    let codec = ctx.cache.codec().clone();
    let events = ctx
        .journal
        .with(move |c| {
            store::sale_events(c, &sale_id)?
                .iter()
                .map(|r| r.decode(c, &store_id, &codec))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut sale = None;
    let mut refund = None;
    for e in events {
        match e.body {
            EventBody::SaleRecorded(s) => sale = Some(*s),
            EventBody::SaleRefunded(r) if job.refund_id.as_deref() == Some(r.id.as_str()) => {
                refund = Some(*r)
            }
            _ => {}
        }
    }
    let sale = sale.ok_or_else(|| format!("sale {} is not in the journal", job.sale_id))?;
    let phone = match &sale.member_id {
        Some(id) => ctx
            .cache
            .member(id)
            .ok()
            .flatten()
            .and_then(|m| m.profile.map(|p| p.phone))
            .unwrap_or_else(|| "***".into()),
        None => String::new(),
    };
    let reprint = job.kind == "reprint";
    if job.kind == "refund" || (reprint && job.refund_id.is_some()) {
        let refund = refund.ok_or_else(|| {
            format!(
                "refund {} of sale {} is not in the journal",
                job.refund_id.as_deref().unwrap_or("?"),
                job.sale_id
            )
        })?;
        let body = render_refund(&RefundSlip {
            store_name: &ctx.settings.store_name,
            header_lines: &opts.header_lines,
            sale: &sale,
            refund: &refund,
            phone: sale.member_id.as_ref().map(|_| phone.as_str()),
            encoding: opts.encoding,
            paper: opts.paper,
            labels: opts.labels,
            reprint,
        });
        let cash = any_cash(&refund.payments);
        return Ok(Parts {
            body,
            kick: (cash && !reprint)
                .then_some(opts.drawer)
                .flatten()
                .map(|pin| kick(pin, true)),
        });
    }
    let cash = any_cash(&sale.payments);
    let qr = opts.qr_template.as_deref().map(|t| fill_qr(t, &sale));
    let body = render(&ReceiptInput {
        store_name: &ctx.settings.store_name,
        header_lines: &opts.header_lines,
        sale: &sale,
        member: MemberBlock::from_sale(&phone, &sale),
        reprint,
        encoding: opts.encoding,
        paper: opts.paper,
        labels: opts.labels,
        qr: qr.as_deref(),
        // Sent after the receipt, if still in time (see `serve`).
        drawer_kick: None,
    });
    Ok(Parts {
        body,
        kick: (cash && !reprint)
            .then_some(opts.drawer)
            .flatten()
            .map(|pin| kick(pin, true)),
    })
}

/// Fills the QR template: `{sale_id}`, `{store_id}`, `{seq}`, `{total}`.
fn fill_qr(template: &str, sale: &Sale) -> String {
    template
        .replace("{sale_id}", &sale.id)
        .replace("{store_id}", &sale.store_id)
        .replace("{seq}", &sale.seq.to_string())
        .replace("{total}", &sale.total.to_string())
}
