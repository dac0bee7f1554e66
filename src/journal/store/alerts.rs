//! What the box's watches (disk, backups, devices) ask the journal of the alerts they sent.

use rusqlite::{Connection, OptionalExtension, params};

use super::JournalError;

/// The code and message of the last `device.alert` recorded from `source` (`storage`,
/// `backup`, a device id), if any: a watch that starts again after a restart tells HQ a
/// trouble an earlier run announced is over (`disk_ok`, `backup_ok`, `ready`), since HQ heard
/// nothing else. Found through the index of alerts by source (schema step 10), however long
/// ago (a look-back of the latest 200,000 events, as first written, forgot an older one).
pub fn last_alert_from(
    conn: &Connection,
    source: &str,
) -> Result<Option<(String, String)>, JournalError> {
    conn.prepare_cached(
        "SELECT json_extract(data, '$.code'), json_extract(data, '$.message') FROM events
           INDEXED BY events_alerts
           WHERE kind = 'device.alert' AND subject = ?1
           ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut st| {
        st.query_row(params![source], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .optional()
    })
    .map_err(JournalError::sql("looking for the last alert of a watch"))
}
