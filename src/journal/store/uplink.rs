//! What the uplink asks the journal of its own alerts.

use rusqlite::{Connection, OptionalExtension, params};

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

/// Whether the outbox alarm is raised as far as HQ is told: the last of the uplink's
/// `outbox_backlog` and `outbox_ok` alerts is an `outbox_backlog`. Looked for among the events
/// after `acked` (the acknowledged position: an alert HQ has not got yet, however long the
/// outage) and at least the latest 200,000, so a restart neither announces the same outage
/// again nor forgets to tell HQ it ended.
pub fn backlog_alarm_raised(conn: &Connection, acked: u64) -> Result<bool, JournalError> {
    conn.prepare_cached(
        "SELECT json_extract(data, '$.code') = 'outbox_backlog' FROM events
           WHERE seq > MIN(?1, (SELECT COALESCE(MAX(seq), 0) FROM events) - 200000)
             AND kind = 'device.alert' AND subject = 'uplink'
             AND json_extract(data, '$.code') IN ('outbox_backlog', 'outbox_ok')
           ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut st| {
        st.query_row(params![i64::try_from(acked).unwrap_or(i64::MAX)], |r| {
            r.get::<_, bool>(0)
        })
        .optional()
    })
    .map(|raised| raised.unwrap_or(false))
    .map_err(JournalError::sql("looking for an outbox alert"))
}
