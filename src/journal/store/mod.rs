//! Statements on the journal tables. Free functions over `&Connection`, so that the same code
//! runs on the writer's transaction, a savepoint, or a reader's connection.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

mod alerts;
mod idempotency;
mod period;
mod uplink;

pub use alerts::last_alert_from;
pub use idempotency::{
    IdemRecord, idem_forget_member, idem_get, idem_note_member, idem_put, idem_rotate,
};
pub use period::{for_events_between, period_mark};
pub use uplink::{backlog_alarm_raised, uplink_alert_about};

use super::JournalError;
use crate::domain::event::{Event, EventBody};
use crate::pii::PiiCodec;

/// An event row as stored: data still sealed, not yet decoded.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Sequence number.
    pub seq: u64,
    /// UUIDv7.
    pub id: String,
    /// Kind (`sale.recorded`).
    pub kind: String,
    /// RFC 3339 store-local time.
    pub occurred_at: String,
    /// Data as stored (JSON, personal data sealed).
    pub data: String,
}

impl StoredEvent {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredEvent> {
        Ok(StoredEvent {
            seq: r.get::<_, i64>(0)? as u64,
            id: r.get(1)?,
            kind: r.get(2)?,
            occurred_at: r.get(3)?,
            data: r.get(4)?,
        })
    }

    /// The event as HQ receives it (design section 5): `{"id", "store_id", "seq",
    /// "occurred_at", "kind", "data"}`. Events without sealed personal data are framed around
    /// the stored JSON as it is; the others are decoded and re-encoded with the data opened
    /// (`conn` is the journal connection the row was read from: it holds the member keys).
    pub fn payload(
        &self,
        conn: &Connection,
        store_id: &str,
        codec: &PiiCodec,
    ) -> Result<Vec<u8>, JournalError> {
        if codec.is_open(&self.data) {
            let mut out = Vec::with_capacity(self.data.len() + 160);
            out.extend_from_slice(b"{\"id\":");
            serde_json::to_writer(&mut out, &self.id).map_err(|e| self.corrupt(e))?;
            out.extend_from_slice(b",\"store_id\":");
            serde_json::to_writer(&mut out, store_id).map_err(|e| self.corrupt(e))?;
            out.extend_from_slice(format!(",\"seq\":{},\"occurred_at\":", self.seq).as_bytes());
            serde_json::to_writer(&mut out, &self.occurred_at).map_err(|e| self.corrupt(e))?;
            out.extend_from_slice(b",\"kind\":");
            serde_json::to_writer(&mut out, &self.kind).map_err(|e| self.corrupt(e))?;
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(self.data.as_bytes());
            out.push(b'}');
            return Ok(out);
        }
        let event = self.decode(conn, store_id, codec)?;
        serde_json::to_vec(&event).map_err(|e| self.corrupt(e))
    }

    fn corrupt(&self, e: impl std::fmt::Display) -> JournalError {
        JournalError::Corrupt {
            seq: self.seq,
            reason: e.to_string(),
        }
    }

    /// Decodes the row into an [`Event`], opening personal data with `codec` and the member
    /// keys on `conn`.
    pub fn decode(
        &self,
        conn: &Connection,
        store_id: &str,
        codec: &PiiCodec,
    ) -> Result<Event, JournalError> {
        let corrupt = |reason: String| JournalError::Corrupt {
            seq: self.seq,
            reason,
        };
        if !EventBody::KINDS.contains(&self.kind.as_str()) {
            // Not damage: a newer storebox wrote it, and this one was installed over it.
            return Err(corrupt(format!(
                "`{}` is an event kind this storebox ({}) does not know: the journal was \
                 written by a newer storebox; install that version (or a later one) again",
                self.kind,
                env!("CARGO_PKG_VERSION")
            )));
        }
        let mut data: Value =
            serde_json::from_str(&self.data).map_err(|e| corrupt(format!("data: {e}")))?;
        let subject = subject_of(&data);
        codec
            .open(conn, &subject, &mut data)
            .map_err(|e| pii_err(self.seq, e))?;
        let body: EventBody =
            serde_json::from_value(serde_json::json!({"kind": self.kind, "data": data}))
                .map_err(|e| corrupt(format!("{}: {e}", self.kind)))?;
        let occurred_at = chrono::DateTime::parse_from_rfc3339(&self.occurred_at)
            .map_err(|e| corrupt(format!("occurred_at: {e}")))?;
        Ok(Event {
            id: self.id.clone(),
            store_id: store_id.to_string(),
            seq: self.seq,
            occurred_at,
            body,
        })
    }
}

fn pii_err(seq: u64, e: crate::pii::PiiError) -> JournalError {
    match e {
        crate::pii::PiiError::Journal(j) => *j,
        other => JournalError::Corrupt {
            seq,
            reason: other.to_string(),
        },
    }
}

/// The subject used as the codec's key context: the member id where the data is about one.
fn subject_of(data: &Value) -> String {
    data.get("member_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

const COLUMNS: &str = "seq, id, kind, occurred_at, data";

/// The highest committed `seq` (0 for an empty journal).
pub fn last_seq(conn: &Connection) -> Result<u64, JournalError> {
    let v: Option<i64> = conn
        .query_row("SELECT MAX(seq) FROM events", [], |r| r.get(0))
        .map_err(JournalError::sql("reading the last seq"))?;
    Ok(v.unwrap_or(0) as u64)
}

/// Appends an event. `day` is the store-local `YYYY-MM-DD` of `occurred_at`.
pub fn append(
    conn: &Connection,
    event: &Event,
    day: &str,
    codec: &PiiCodec,
) -> Result<(), JournalError> {
    append_with(conn, event, day, codec, None).map(|_| ())
}

/// [`append`], with the profile of a new member sealed ahead (see
/// [`PiiCodec::preseal`](crate::pii::PiiCodec::preseal)). Returns the event's data as written
/// (for a sale, the sale's JSON: its answer).
pub fn append_with(
    conn: &Connection,
    event: &Event,
    day: &str,
    codec: &PiiCodec,
    presealed: Option<&crate::pii::Presealed>,
) -> Result<String, JournalError> {
    let data = match (presealed, &event.body) {
        // A new member sealed ahead (a bulk import): written directly, not through a `Value`.
        (Some(pre), EventBody::MemberRegistered(r)) if r.profile.is_some() => {
            let (profile, tags) = codec
                .use_presealed(conn, &r.member_id, pre)
                .map_err(|e| pii_err(event.seq, e))?;
            if tags.is_none() && !r.tags.is_empty() {
                // Tags that were not sealed ahead are never written open.
                return Err(pii_err(event.seq, crate::pii::PiiError::Seal));
            }
            serde_json::to_string(&PresealedRegistered::of(r, profile, tags))
                .map_err(encoding_err(event.seq))?
        }
        // Sales and refunds hold no personal data to seal (a member is named by id only):
        // written straight to JSON, not through a `Value` — a few µs of a lone till's sale.
        (None, EventBody::SaleRecorded(sale)) => {
            serde_json::to_string(sale).map_err(encoding_err(event.seq))?
        }
        (None, EventBody::SaleRefunded(refund)) => {
            serde_json::to_string(refund).map_err(encoding_err(event.seq))?
        }
        _ => sealed_data(conn, event, codec, presealed)?,
    };
    insert_event(conn, event, day, &data)?;
    Ok(data)
}

/// The data of a `member.registered` event with its profile sealed ahead, as the generic path
/// writes it: the fields in the order a `serde_json::Value` object (sorted keys) writes them,
/// so both give the same bytes.
#[derive(serde::Serialize)]
struct PresealedRegistered<'a> {
    consent: &'a crate::domain::member::Consent,
    created_at: &'a chrono::DateTime<chrono::FixedOffset>,
    member_id: &'a str,
    profile: &'a str,
    staff_no: &'a str,
    store_id: &'a str,
    tags: PresealedTags<'a>,
}

/// Tags as the generic path writes them: sealed, or an empty array as it is.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum PresealedTags<'a> {
    Sealed(&'a str),
    Open(&'a [String]),
}

impl<'a> PresealedRegistered<'a> {
    fn of(
        r: &'a crate::domain::event::MemberRegistered,
        profile: &'a str,
        tags: Option<&'a str>,
    ) -> Self {
        PresealedRegistered {
            consent: &r.consent,
            created_at: &r.created_at,
            member_id: &r.member_id,
            profile,
            staff_no: &r.staff_no,
            store_id: &r.store_id,
            tags: match tags {
                Some(sealed) => PresealedTags::Sealed(sealed),
                None => PresealedTags::Open(&r.tags),
            },
        }
    }
}

fn encoding_err(seq: u64) -> impl Fn(serde_json::Error) -> JournalError {
    move |e| JournalError::Corrupt {
        seq,
        reason: format!("encoding: {e}"),
    }
}

/// An event's data as stored: JSON, its profile sealed.
fn sealed_data(
    conn: &Connection,
    event: &Event,
    codec: &PiiCodec,
    presealed: Option<&crate::pii::Presealed>,
) -> Result<String, JournalError> {
    let mut whole = serde_json::to_value(&event.body).map_err(encoding_err(event.seq))?;
    let mut data = whole
        .get_mut("data")
        .map(Value::take)
        .unwrap_or(Value::Null);
    let subject = subject_of(&data);
    match presealed {
        Some(pre) => codec.seal_presealed(conn, &subject, &mut data, pre),
        None => codec.seal(conn, &subject, &mut data),
    }
    .map_err(|e| pii_err(event.seq, e))?;
    Ok(data.to_string())
}

/// Inserts an event row with its data as stored, and marks the day's first event.
fn insert_event(
    conn: &Connection,
    event: &Event,
    day: &str,
    data: &str,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO events (seq, id, kind, occurred_at, day, subject, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            event.seq as i64,
            event.id,
            event.body.kind(),
            event.occurred_at.to_rfc3339(),
            day,
            event.body.subject(),
            data,
        ])
    })
    .map_err(JournalError::sql("appending an event"))?;
    // The first event of a day marks where the day starts (a lookup, and a write once a day).
    conn.prepare_cached("INSERT OR IGNORE INTO days (day, first_seq) VALUES (?1, ?2)")
        .and_then(|mut st| st.execute(params![day, event.seq as i64]))
        .map_err(JournalError::sql("marking the day"))?;
    // An event of a day before the latest (the clock went back across midnight) is marked as
    // late: reading the day up to the next day's first event would miss it.
    let late: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM days WHERE day > ?1)")
        .and_then(|mut st| st.query_row(params![day], |r| r.get(0)))
        .map_err(JournalError::sql("marking the day"))?;
    if late {
        conn.prepare_cached(
            "INSERT INTO days_late (day, last_seq) VALUES (?1, ?2)
             ON CONFLICT (day) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq)",
        )
        .and_then(|mut st| st.execute(params![day, event.seq as i64]))
        .map_err(JournalError::sql("marking a late event"))?;
    }
    Ok(())
}

/// The event with `seq`, if any.
pub fn event_at(conn: &Connection, seq: u64) -> Result<Option<StoredEvent>, JournalError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE seq = ?1"))
        .and_then(|mut st| {
            st.query_row(params![seq as i64], StoredEvent::from_row)
                .optional()
        })
        .map_err(JournalError::sql("reading an event"))
}

/// Up to `limit` events after `after`, in order.
pub fn events_after(
    conn: &Connection,
    after: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, JournalError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
    ))
    .and_then(|mut st| {
        st.query_map(
            params![i64::try_from(after).unwrap_or(i64::MAX), limit as i64],
            StoredEvent::from_row,
        )?
        .collect()
    })
    .map_err(JournalError::sql("reading events"))
}

/// A sale's `sale.recorded` and `sale.refunded` events, in order.
pub fn sale_events(conn: &Connection, sale_id: &str) -> Result<Vec<StoredEvent>, JournalError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events
         WHERE subject = ?1 AND kind IN ('sale.recorded', 'sale.refunded') ORDER BY seq"
    ))
    .and_then(|mut st| {
        st.query_map(params![sale_id], StoredEvent::from_row)?
            .collect()
    })
    .map_err(JournalError::sql("reading a sale's events"))
}

/// Events of `kind` on store-local `day`, after `after_seq`, at most `limit`. A day's events
/// lie between its first event and the next day's first, or its last late event (see
/// `days_late`) when that comes after.
pub fn events_on_day(
    conn: &Connection,
    kind: &str,
    day: &str,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, JournalError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM events
         WHERE seq >= (SELECT first_seq FROM days WHERE day = ?2)
           AND seq < MAX(COALESCE((SELECT first_seq FROM days WHERE day > ?2 ORDER BY day LIMIT 1),
                                  9223372036854775807),
                         COALESCE((SELECT last_seq + 1 FROM days_late WHERE day = ?2), 0))
           AND seq > ?3 AND kind = ?1 AND day = ?2
         ORDER BY seq LIMIT ?4"
    ))
    .and_then(|mut st| {
        st.query_map(
            params![
                kind,
                day,
                i64::try_from(after_seq).unwrap_or(i64::MAX),
                limit as i64
            ],
            StoredEvent::from_row,
        )?
        .collect()
    })
    .map_err(JournalError::sql("reading events by day"))
}

/// The outbox position: the highest `seq` below which HQ has acknowledged everything, and when
/// the last acknowledgement arrived.
pub fn outbox_position(conn: &Connection) -> Result<(u64, Option<String>), JournalError> {
    conn.query_row(
        "SELECT acked_seq, last_ack_at FROM outbox WHERE id = 1",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
    )
    .map_err(JournalError::sql("reading the outbox position"))
}

/// The wrapped data key of a member, if it has one.
pub fn member_key(conn: &Connection, member_id: &str) -> Result<Option<Vec<u8>>, JournalError> {
    conn.prepare_cached("SELECT wrapped FROM member_keys WHERE member_id = ?1")
        .and_then(|mut st| st.query_row(params![member_id], |r| r.get(0)).optional())
        .map_err(JournalError::sql("reading a member key"))
}

/// Stores a member's wrapped data key.
pub fn put_member_key(
    conn: &Connection,
    member_id: &str,
    wrapped: &[u8],
) -> Result<(), JournalError> {
    conn.prepare_cached("INSERT INTO member_keys (member_id, wrapped) VALUES (?1, ?2)")
        .and_then(|mut st| st.execute(params![member_id, wrapped]))
        .map_err(JournalError::sql("storing a member key"))?;
    Ok(())
}

/// Deletes a member's data key (erasure). Returns whether there was one.
pub fn delete_member_key(conn: &Connection, member_id: &str) -> Result<bool, JournalError> {
    conn.prepare_cached("DELETE FROM member_keys WHERE member_id = ?1")
        .and_then(|mut st| st.execute(params![member_id]))
        .map(|n| n > 0)
        .map_err(JournalError::sql("deleting a member key"))
}

/// Moves the outbox position forward (never back).
pub fn set_outbox_position(
    conn: &Connection,
    acked_seq: u64,
    at: &str,
) -> Result<(), JournalError> {
    conn.execute(
        "UPDATE outbox SET acked_seq = MAX(acked_seq, ?1), last_ack_at = ?2 WHERE id = 1",
        params![acked_seq as i64, at],
    )
    .map_err(JournalError::sql("moving the outbox position"))?;
    Ok(())
}

/// Sets the outbox position to `acked_seq`, back as well as forward: a restore told that HQ
/// lacks events the broker had acknowledged (`--hq-lost-events`) sends them again.
pub fn reset_outbox_position(
    conn: &Connection,
    acked_seq: u64,
    at: &str,
) -> Result<(), JournalError> {
    conn.execute(
        "UPDATE outbox SET acked_seq = ?1, last_ack_at = ?2 WHERE id = 1",
        params![i64::try_from(acked_seq).unwrap_or(i64::MAX), at],
    )
    .map_err(JournalError::sql("setting the outbox position"))?;
    Ok(())
}

#[cfg(test)]
mod tests;

/// A job in the print queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrintJob {
    /// Queue id (order of printing).
    pub id: i64,
    /// `receipt`, `reprint`, `refund` (the slip of a refund) or `drawer`.
    pub kind: String,
    /// The sale to print, or whose refund (empty for a drawer opening).
    pub sale_id: String,
    /// The refund whose slip to print (`refund` jobs).
    pub refund_id: Option<String>,
    /// When it was queued (RFC 3339).
    pub created_at: String,
}

/// Queues a job for `device_id` (in the same transaction as the sale or refund it prints).
pub fn queue_print(
    conn: &Connection,
    device_id: &str,
    kind: &str,
    sale_id: &str,
    refund_id: Option<&str>,
    created_at: &str,
) -> Result<i64, JournalError> {
    conn.prepare_cached(
        "INSERT INTO print_jobs (device_id, kind, sale_id, refund_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut st| st.execute(params![device_id, kind, sale_id, refund_id, created_at]))
    .map_err(JournalError::sql("queueing a print job"))?;
    Ok(conn.last_insert_rowid())
}

/// The jobs waiting for `device_id`, oldest first.
pub fn pending_prints(
    conn: &Connection,
    device_id: &str,
    limit: usize,
) -> Result<Vec<PrintJob>, JournalError> {
    conn.prepare_cached(
        "SELECT id, kind, sale_id, refund_id, created_at FROM print_jobs WHERE device_id = ?1
         ORDER BY id LIMIT ?2",
    )
    .and_then(|mut st| {
        st.query_map(params![device_id, limit as i64], |r| {
            Ok(PrintJob {
                id: r.get(0)?,
                kind: r.get(1)?,
                sale_id: r.get(2)?,
                refund_id: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?
        .collect()
    })
    .map_err(JournalError::sql("reading the print queue"))
}

/// Removes a job its printer took.
pub fn print_done(conn: &Connection, id: i64) -> Result<(), JournalError> {
    conn.execute("DELETE FROM print_jobs WHERE id = ?1", params![id])
        .map_err(JournalError::sql("finishing a print job"))?;
    Ok(())
}
