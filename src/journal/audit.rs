//! The audit log: sensitive actions in a hash chain.
//!
//! Each row carries the MAC of the row before it and its own MAC over every field and that
//! link, keyed with the store's audit key (see [`crate::security`]). Changing, removing or
//! reordering a row breaks the chain at that row; without the key nobody can forge a chain
//! that verifies. Rows are written in the same transaction as the facts they describe, and
//! each one is also sent to HQ as an `audit.recorded` event.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::JournalError;
use crate::security::seal::mac;

pub use crate::domain::audit::{AuditEntry, NewAudit};

fn chain_mac(key: &[u8; 32], e: &AuditEntry, prev: &[u8]) -> [u8; 32] {
    let n = e.n.to_string();
    let detail = e.detail.to_string();
    mac(
        key,
        &[
            b"audit-v1",
            n.as_bytes(),
            e.at.as_bytes(),
            e.staff_no.as_bytes(),
            e.terminal_id.as_bytes(),
            e.action.as_bytes(),
            e.target.as_bytes(),
            detail.as_bytes(),
            prev,
        ],
    )
}

/// The action of the entry a restore writes; with `RESTORE_GAP_FROM` in its detail it may
/// skip positions (see [`append_after_restore`]).
pub const RESTORE_ACTION: &str = "journal.restore";
const RESTORE_GAP_FROM: &str = "audit_gap_from";

/// Appends an entry at the end of the chain (inside the caller's transaction).
pub fn append(
    conn: &Connection,
    key: &[u8; 32],
    at: &str,
    new: NewAudit,
) -> Result<AuditEntry, JournalError> {
    append_skipping(conn, key, at, new, 0)
}

/// The restore's entry, after a restore from a backup HQ has outrun: HQ may hold up to
/// `events_lost` entries this journal never will (the box ran on after the backup, each
/// entry an event), with the positions that came next. So the chain goes on after a gap of
/// that many, and the entry says where the gap begins (`audit_gap_from` in its detail, under
/// its MAC): no position HQ holds is used twice, and `verify` accepts this gap and no other.
pub fn append_after_restore(
    conn: &Connection,
    key: &[u8; 32],
    at: &str,
    mut new: NewAudit,
    events_lost: u64,
) -> Result<AuditEntry, JournalError> {
    let next = last_entry(conn)?.map_or(1, |(n, _)| n + 1);
    new.action = RESTORE_ACTION.to_string();
    if let Value::Object(m) = &mut new.detail {
        m.insert(RESTORE_GAP_FROM.into(), Value::from(next));
    }
    append_skipping(conn, key, at, new, events_lost)
}

fn last_entry(conn: &Connection) -> Result<Option<(u64, Vec<u8>)>, JournalError> {
    let last: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT n, hash FROM audit ORDER BY n DESC LIMIT 1")
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .map_err(JournalError::sql("reading the end of the audit chain"))?;
    Ok(last.map(|(n, h)| (n as u64, h)))
}

fn append_skipping(
    conn: &Connection,
    key: &[u8; 32],
    at: &str,
    new: NewAudit,
    skip: u64,
) -> Result<AuditEntry, JournalError> {
    let (n, prev) = match last_entry(conn)? {
        Some((n, h)) => (n + 1 + skip, h),
        None => (1 + skip, Vec::new()),
    };
    let entry = AuditEntry {
        n,
        at: at.to_string(),
        staff_no: new.staff_no,
        terminal_id: new.terminal_id,
        action: new.action,
        target: new.target,
        detail: new.detail,
    };
    let hash = chain_mac(key, &entry, &prev);
    conn.prepare_cached(
        "INSERT INTO audit (n, at, staff_no, terminal_id, action, target, detail, prev, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut st| {
        st.execute(params![
            n as i64,
            entry.at,
            entry.staff_no,
            entry.terminal_id,
            entry.action,
            entry.target,
            entry.detail.to_string(),
            prev,
            hash.as_slice()
        ])
    })
    .map_err(JournalError::sql("appending to the audit chain"))?;
    Ok(entry)
}

type Row = (AuditEntry, Vec<u8>, Vec<u8>);

fn read_rows(conn: &Connection, after: u64, limit: u64) -> Result<Vec<Row>, JournalError> {
    conn.prepare_cached(
        "SELECT n, at, staff_no, terminal_id, action, target, detail, prev, hash
         FROM audit WHERE n > ?1 ORDER BY n LIMIT ?2",
    )
    .and_then(|mut st| {
        st.query_map(
            params![i64::try_from(after).unwrap_or(i64::MAX), limit as i64],
            |r| {
                let detail: String = r.get(6)?;
                Ok((
                    AuditEntry {
                        n: r.get::<_, i64>(0)? as u64,
                        at: r.get(1)?,
                        staff_no: r.get(2)?,
                        terminal_id: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        // A detail that is not JSON any more is kept as text: verification
                        // then fails on that row and names it.
                        detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
                    },
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )?
        .collect()
    })
    .map_err(JournalError::sql("reading the audit chain"))
}

/// The position of the last entry written before `t` (0: none), found by halving the
/// positions (a few reads by rowid, not a scan of years of entries). Entries are written in
/// time order; after a clock set back, the day an entry is found for is near, not exact.
pub fn position_before(conn: &Connection, t: DateTime<Utc>) -> Result<u64, JournalError> {
    let read = |n: u64| -> Result<Option<(u64, String)>, JournalError> {
        conn.prepare_cached("SELECT n, at FROM audit WHERE n >= ?1 ORDER BY n LIMIT 1")
            .and_then(|mut st| {
                st.query_row(params![i64::try_from(n).unwrap_or(i64::MAX)], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
                })
                .optional()
            })
            .map_err(JournalError::sql("finding a day in the audit chain"))
    };
    let last: Option<i64> = conn
        .query_row("SELECT MAX(n) FROM audit", [], |r| r.get(0))
        .map_err(JournalError::sql("reading the audit chain's length"))?;
    // Entries up to `lo` were written before `t`; those from `hi` on at or after it (positions
    // may have a gap, after a restore).
    let (mut lo, mut hi) = (0u64, last.map_or(0, |n| n as u64).saturating_add(1));
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match read(mid)? {
            Some((n, at)) if n < hi => {
                // An entry whose time does not read (tampered) counts as before: `verify`
                // names it.
                let before = DateTime::parse_from_rfc3339(&at).map_or(true, |at| at < t);
                if before { lo = n } else { hi = n }
            }
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Entries after position `after`, oldest first, at most `limit`.
pub fn list(conn: &Connection, after: u64, limit: u64) -> Result<Vec<AuditEntry>, JournalError> {
    Ok(read_rows(conn, after, limit)?
        .into_iter()
        .map(|(e, _, _)| e)
        .collect())
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every entry is as written.
    Intact {
        /// Entries checked.
        entries: u64,
    },
    /// The first entry that is not as written.
    Broken {
        /// Its position.
        n: u64,
        /// Its time and action as stored now (may themselves be the tampered fields).
        at: String,
        /// Its action.
        action: String,
        /// What is wrong.
        reason: String,
    },
}

/// Walks the whole chain and names the first entry that does not verify.
pub fn verify(conn: &Connection, key: &[u8; 32]) -> Result<Verdict, JournalError> {
    let mut expected_n = 1u64;
    let mut entries = 0u64;
    let mut prev_hash: Vec<u8> = Vec::new();
    loop {
        let rows = read_rows(conn, expected_n - 1, 1_000)?;
        if rows.is_empty() {
            return Ok(Verdict::Intact { entries });
        }
        for (e, prev, hash) in rows {
            let restore_gap = e.action == RESTORE_ACTION
                && e.n > expected_n
                && e.detail.get(RESTORE_GAP_FROM).and_then(Value::as_u64) == Some(expected_n);
            if restore_gap {
                // Checked with the rest of the entry by its MAC below.
                expected_n = e.n;
            }
            let broken = |reason: &str| Verdict::Broken {
                n: expected_n,
                at: e.at.clone(),
                action: e.action.clone(),
                reason: reason.to_string(),
            };
            if e.n != expected_n {
                return Ok(broken(&format!(
                    "entry {expected_n} is missing (the next one is {})",
                    e.n
                )));
            }
            if prev != prev_hash {
                return Ok(broken("it does not link to the entry before it"));
            }
            if chain_mac(key, &e, &prev) != hash.as_slice() {
                return Ok(broken("its contents do not match its hash"));
            }
            prev_hash = hash;
            expected_n += 1;
            entries += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(super::super::MIGRATIONS[3]).unwrap();
        c
    }

    fn entry(action: &str) -> NewAudit {
        NewAudit {
            staff_no: "2001".into(),
            terminal_id: "pos-1".into(),
            action: action.into(),
            target: "S-1".into(),
            detail: serde_json::json!({"amount": 1200}),
        }
    }

    #[test]
    fn a_day_is_found_by_halving_the_positions_also_across_a_restores_gap() {
        let c = conn();
        let key = [3u8; 32];
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(position_before(&c, t("2026-11-23T00:00:00Z")).unwrap(), 0);
        // Ten entries a day for 30 days, a restore's gap of 50 positions on day 20.
        for day in 1..=30 {
            for k in 0..10 {
                let at = format!("2026-11-{day:02}T{:02}:30:00.25+00:00", 8 + k);
                if day == 20 && k == 0 {
                    append_after_restore(&c, &key, &at, entry("restore"), 50).unwrap();
                } else {
                    append(&c, &key, &at, entry("login")).unwrap();
                }
            }
        }
        let first_of = |day: &str| {
            let after = position_before(&c, t(day)).unwrap();
            list(&c, after, 1).unwrap().first().map(|e| e.at.clone())
        };
        assert_eq!(
            first_of("2026-11-01T00:00:00Z").as_deref(),
            Some("2026-11-01T08:30:00.25+00:00")
        );
        assert_eq!(
            first_of("2026-11-07T00:00:00Z").as_deref(),
            Some("2026-11-07T08:30:00.25+00:00")
        );
        assert_eq!(
            first_of("2026-11-20T00:00:00Z").as_deref(),
            Some("2026-11-20T08:30:00.25+00:00")
        );
        assert_eq!(
            first_of("2026-11-21T00:00:00Z").as_deref(),
            Some("2026-11-21T08:30:00.25+00:00")
        );
        // An instant inside a day: the first entry at or after it.
        assert_eq!(
            first_of("2026-11-30T12:30:00.25Z").as_deref(),
            Some("2026-11-30T12:30:00.25+00:00")
        );
        assert_eq!(first_of("2026-12-01T00:00:00Z"), None);
        assert_eq!(position_before(&c, t("2026-10-01T00:00:00Z")).unwrap(), 0);
    }

    #[test]
    fn a_restore_skips_positions_and_only_its_gap_verifies() {
        let c = conn();
        let key = [3u8; 32];
        for _ in 0..3 {
            append(&c, &key, "2026-11-23T10:00:00Z", entry("sale.refund")).unwrap();
        }
        let restore = NewAudit {
            detail: serde_json::json!({"hq_last_seq": 90}),
            ..entry("anything")
        };
        let e = append_after_restore(&c, &key, "2026-11-24T08:00:00Z", restore, 10).unwrap();
        assert_eq!((e.n, e.action.as_str()), (14, RESTORE_ACTION));
        assert_eq!(e.detail["audit_gap_from"], 4);
        assert_eq!(
            append(&c, &key, "2026-11-24T08:01:00Z", entry("login"))
                .unwrap()
                .n,
            15
        );
        assert_eq!(verify(&c, &key).unwrap(), Verdict::Intact { entries: 5 });
        // Any other gap is a missing entry, and so is a restore entry's changed gap.
        c.execute("DELETE FROM audit WHERE n = 2", []).unwrap();
        assert!(matches!(
            verify(&c, &key).unwrap(),
            Verdict::Broken { n: 2, .. }
        ));
    }

    #[test]
    fn a_chain_verifies_and_a_changed_entry_is_named() {
        let c = conn();
        let key = [3u8; 32];
        for i in 0..5 {
            let e = append(
                &c,
                &key,
                &format!("2026-11-23T10:0{i}:00Z"),
                entry("sale.refund"),
            )
            .unwrap();
            assert_eq!(e.n, i + 1);
        }
        assert_eq!(verify(&c, &key).unwrap(), Verdict::Intact { entries: 5 });
        assert!(matches!(
            verify(&c, &[4u8; 32]).unwrap(),
            Verdict::Broken { n: 1, .. }
        ));

        c.execute("UPDATE audit SET detail = '{\"amount\":1}' WHERE n = 3", [])
            .unwrap();
        match verify(&c, &key).unwrap() {
            Verdict::Broken { n, action, .. } => {
                assert_eq!(n, 3);
                assert_eq!(action, "sale.refund");
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_removed_entry_breaks_the_chain() {
        let c = conn();
        let key = [3u8; 32];
        for _ in 0..4 {
            append(&c, &key, "2026-11-23T10:00:00Z", entry("login")).unwrap();
        }
        c.execute("DELETE FROM audit WHERE n = 2", []).unwrap();
        assert!(matches!(
            verify(&c, &key).unwrap(),
            Verdict::Broken { n: 2, .. }
        ));
        // Removing the tail is only visible against HQ's copy (`audit.recorded` events).
        assert_eq!(list(&c, 0, 10).unwrap().len(), 3);
    }
}
