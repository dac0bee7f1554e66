//! Reading a period of store-local days: the events of its days in `seq` order (reports,
//! campaigns), and where they stand (whether they can still change).

use rusqlite::{Connection, params};

use super::{COLUMNS, StoredEvent};
use crate::journal::JournalError;

/// Where the events of the store-local days `from..=to` stand once a later day has begun: the
/// last `seq` of their late events (see `days_late`; 0, none), which an event written to one
/// of those days from then on changes. `None` while no later day has begun.
pub fn period_mark(conn: &Connection, from: &str, to: &str) -> Result<Option<i64>, JournalError> {
    conn.prepare_cached(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM days WHERE day > ?2) THEN COALESCE(
           (SELECT MAX(last_seq) FROM days_late WHERE day >= ?1 AND day <= ?2), 0) END",
    )
    .and_then(|mut st| st.query_row(params![from, to], |r| r.get(0)))
    .map_err(JournalError::sql(
        "reading where the events of a period stand",
    ))
}

/// Events a period's reading holds at a time: a page is read whole before `f` sees it, and a
/// supermarket's sale of 20 lines is ~5 KB of JSON (5,000 a page held ~25 MB at once).
const PERIOD_PAGE: usize = 1000;

/// Calls `f` with every event of one of `kinds` on the store-local days `from..to` (`to`
/// excluded), in `seq` order, reading in pages of `PERIOD_PAGE`. The events read lie between
/// the first event of the period and the first of a later day, or the last late event of a day
/// of the period (see `days_late`) when that comes after; events of other days among them are
/// skipped.
pub fn for_events_between(
    conn: &Connection,
    kinds: &[&str],
    from: &str,
    to: &str,
    mut f: impl FnMut(StoredEvent) -> Result<(), JournalError>,
) -> Result<(), JournalError> {
    let bounds: (Option<i64>, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT (SELECT MIN(first_seq) FROM days WHERE day >= ?1 AND day < ?2),
                    (SELECT MIN(first_seq) FROM days WHERE day >= ?2),
                    (SELECT MAX(last_seq) FROM days_late WHERE day >= ?1 AND day < ?2)",
            params![from, to],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(JournalError::sql("reading day bounds"))?;
    let Some(start) = bounds.0 else {
        return Ok(());
    };
    let end = bounds
        .1
        .unwrap_or(i64::MAX)
        .max(bounds.2.map_or(0, |last| last.saturating_add(1)));
    let marks = kinds.iter().map(|_| "?").collect::<Vec<_>>().join(",");
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE seq > ?1 AND seq < ?2 AND kind IN ({marks})
           AND day >= ?{from_at} AND day < ?{to_at}
         ORDER BY seq LIMIT {PERIOD_PAGE}",
        from_at = kinds.len() + 3,
        to_at = kinds.len() + 4,
    );
    let mut after = start - 1;
    loop {
        let mut st = conn
            .prepare_cached(&sql)
            .map_err(JournalError::sql("reading events of a period"))?;
        let mut args: Vec<rusqlite::types::Value> = vec![after.into(), end.into()];
        args.extend(
            kinds
                .iter()
                .chain([&from, &to])
                .map(|k| rusqlite::types::Value::Text(k.to_string())),
        );
        let rows: Vec<StoredEvent> = st
            .query_map(rusqlite::params_from_iter(args), StoredEvent::from_row)
            .and_then(|r| r.collect())
            .map_err(JournalError::sql("reading events of a period"))?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = last.seq as i64;
        for e in rows {
            f(e)?;
        }
    }
}
