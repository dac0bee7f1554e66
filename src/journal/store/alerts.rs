//! What the box's watches (disk, backups, devices) ask the journal of the alerts they sent.

use rusqlite::{Connection, OptionalExtension, params};

use super::JournalError;

/// How far back (in events) a watch looks for the last alert it sent: no index leads to alerts
/// (one in every sale's commit would cost the till), so the search walks back from the newest
/// event, and a source that never alerted would otherwise read a years-long journal whole at
/// every start, once per watch. An alert older than this counts as none (months of sales in a
/// busy store).
const ALERT_LOOKBACK: i64 = 200_000;

/// The code and message of the last `device.alert` recorded from `source` (`storage`,
/// `backup`, a device id) within the last [`ALERT_LOOKBACK`] events, if any: a watch that
/// starts again after a restart tells HQ a trouble an earlier run announced is over
/// (`disk_ok`, `backup_ok`, `ready`), since HQ heard nothing else.
pub fn last_alert_from(
    conn: &Connection,
    source: &str,
) -> Result<Option<(String, String)>, JournalError> {
    conn.prepare_cached(
        "SELECT json_extract(data, '$.code'), json_extract(data, '$.message') FROM events
           WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM events) - ?2
             AND kind = 'device.alert' AND subject = ?1
           ORDER BY seq DESC LIMIT 1",
    )
    .and_then(|mut st| {
        st.query_row(params![source, ALERT_LOOKBACK], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .optional()
    })
    .map_err(JournalError::sql("looking for the last alert of a watch"))
}
