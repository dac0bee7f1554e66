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
/// `outbox_backlog` and `outbox_ok` alerts is an `outbox_backlog`. Looked for in the whole
/// journal, through the index of alerts by source (schema step 10), so a restart neither
/// announces the same outage again nor forgets to tell HQ it ended, however long the outage
/// (a fixed look-back of 200,000 events missed the alert of an outage longer than that, and
/// its end was never told).
pub fn backlog_alarm_raised(conn: &Connection) -> Result<bool, JournalError> {
    conn.prepare_cached(
        "SELECT json_extract(data, '$.code') = 'outbox_backlog' FROM events
           INDEXED BY events_alerts
           WHERE kind = 'device.alert' AND subject = 'uplink'
             AND json_extract(data, '$.code') IN ('outbox_backlog', 'outbox_ok')
           ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut st| st.query_row([], |r| r.get::<_, bool>(0)).optional())
    .map(|raised| raised.unwrap_or(false))
    .map_err(JournalError::sql("looking for an outbox alert"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal of `n` events (all sales), at the current schema.
    fn journal(n: i64) -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        for step in crate::journal::MIGRATIONS {
            c.execute_batch(step).unwrap();
        }
        c.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO events (seq, id, kind, occurred_at, day, subject, data)
             SELECT i, 'e' || i, 'sale.recorded', '2026-12-01T10:00:00+08:00', '2026-12-01',
                    's' || i, '{}' FROM n",
            params![n],
        )
        .unwrap();
        c
    }

    fn alert_at(c: &Connection, seq: i64, code: &str) {
        c.execute(
            "UPDATE events SET kind = 'device.alert', subject = 'uplink', data = ?2
             WHERE seq = ?1",
            params![seq, format!(r#"{{"source":"uplink","code":"{code}"}}"#)],
        )
        .unwrap();
    }

    /// An outage longer than any fixed look-back (an `outbox_alarm` of 100,000, 300,000 events
    /// after its alert; the link back, the alert acknowledged, 100,000 still waiting when the
    /// box restarts): the alarm is still raised, so it is not announced again and its end is
    /// told. Until 2026-12-08 the search looked at the latest 200,000 events only and found
    /// nothing: the end of that outage never reached HQ.
    #[test]
    fn the_alarm_of_a_long_outage_is_found_however_far_back() {
        let c = journal(400_000);
        alert_at(&c, 100_001, "outbox_backlog");
        assert!(backlog_alarm_raised(&c).unwrap());
        alert_at(&c, 350_000, "outbox_ok");
        assert!(!backlog_alarm_raised(&c).unwrap());
        let none = journal(10);
        assert!(!backlog_alarm_raised(&none).unwrap());
    }
}
