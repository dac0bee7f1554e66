//! What the uplink asks the journal of its own alerts.

use rusqlite::{Connection, params};

use super::JournalError;

/// Whether the uplink already reported the event `seq` as unsendable (`event_too_large` or
/// `event_unreadable`): such an alert is always a later event.
pub fn uplink_alert_about(conn: &Connection, seq: u64) -> Result<bool, JournalError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM events WHERE seq > ?1 AND kind = 'device.alert'
           AND subject = 'uplink'
           AND json_extract(data, '$.code') IN ('event_too_large', 'event_unreadable')
           AND json_extract(data, '$.detail.seq') = ?1)",
    )
    .and_then(|mut st| st.query_row(params![seq as i64], |r| r.get::<_, bool>(0)))
    .map_err(JournalError::sql("looking for an uplink alert"))
}

/// Whether an `outbox_backlog` alert was recorded after `seq` (the acknowledged position): the
/// outage it announced is not over for HQ, and a restart meanwhile does not announce it again.
pub fn backlog_alert_after(conn: &Connection, seq: u64) -> Result<bool, JournalError> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM events WHERE seq > ?1 AND kind = 'device.alert'
           AND subject = 'uplink' AND json_extract(data, '$.code') = 'outbox_backlog')",
    )
    .and_then(|mut st| {
        st.query_row(params![i64::try_from(seq).unwrap_or(i64::MAX)], |r| {
            r.get::<_, bool>(0)
        })
    })
    .map_err(JournalError::sql("looking for an outbox alert"))
}
