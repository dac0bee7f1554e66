//! Backups by the daemon: one every `backup.every_hours`, due from the newest backup in the
//! backup directory, the oldest removed past `backup.keep`; a failure noted for `/healthz`
//! and told to HQ.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use super::{Header, backup_until, private_dir};
use crate::config::Config;
use crate::security::StoreKeys;

/// Why the last scheduled backup failed, or `None` (it worked, or none ran yet): `/healthz`
/// reports the store degraded while it is `Some`.
pub type Failing = std::sync::Arc<std::sync::Mutex<Option<String>>>;

/// Why scheduled backups failed, as the last backup alert an earlier run sent HQ says, when
/// that alert is a `backup_failed` (no `backup_ok` after it).
pub async fn failing_before(journal: &crate::journal::JournalReader) -> Option<String> {
    match journal.last_alert_from("backup").await {
        Some((code, message)) if code == "backup_failed" => Some(format!(
            "{} (before the last start)",
            message
                .strip_prefix("scheduled backup failed: ")
                .unwrap_or(&message)
        )),
        _ => None,
    }
}

/// Backups by the daemon: one every `every`, into `dir`, keeping the newest `keep`. A failure
/// is noted in `failing` and, with a `ledger`, sent to HQ as an alert (`backup_failed`, then
/// `backup_ok` at the next one that works): a box whose backups stopped should not be found out
/// on the day it is lost.
#[allow(clippy::too_many_arguments)]
pub async fn scheduled(
    config: Config,
    keys: std::sync::Arc<StoreKeys>,
    every: Duration,
    backup_dir: PathBuf,
    keep: usize,
    failing: Failing,
    ledger: Option<crate::ledger::Ledger>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // Counted from the newest backup there is, not from this start: a box switched off every
    // night never stayed up `every` (24 h by default) and got none. One overdue (or none yet)
    // is taken a minute after the start, once the start's own work is done.
    super::remove_abandoned_partials(&backup_dir, &config.store.id);
    let newest = newest_age(&backup_dir, &config.store.id);
    let first = match newest {
        Some(age) if age < every => every - age,
        _ => every.min(Duration::from_secs(60)),
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (config, keys, dir) = (config.clone(), keys.clone(), backup_dir.clone());
        let stop = shutdown.clone();
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<(PathBuf, Header)> {
            private_dir(&dir)?;
            let name = format!(
                "storebox-{}-{}.sbk",
                config.store.id,
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            );
            let path = dir.join(name);
            let h = backup_until(&config, &keys, &path, &|| stop.is_cancelled())?;
            prune(&dir, &config.store.id, keep, &path)?;
            Ok((path, h))
        })
        .await;
        // Stopped half-way by the daemon's stop: not a failure to tell HQ of (the next start
        // takes the overdue one a minute after it).
        if shutdown.is_cancelled() && matches!(&result, Ok(Err(_))) {
            tracing::info!("scheduled backup given up: the daemon is stopping");
            return;
        }
        let error = match result {
            Ok(Ok((path, h))) => {
                tracing::info!(
                    file = %path.display(),
                    last_seq = h.last_seq,
                    "scheduled backup written"
                );
                None
            }
            Ok(Err(e)) => {
                let e = format!("{e:#}");
                tracing::error!(error = %e, "scheduled backup failed");
                Some(e)
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduled backup task failed");
                Some(e.to_string())
            }
        };
        let was_failing = match failing.lock() {
            Ok(mut f) => std::mem::replace(&mut *f, error.clone()).is_some(),
            Err(p) => std::mem::replace(&mut *p.into_inner(), error.clone()).is_some(),
        };
        let alert = match (&error, was_failing) {
            (Some(e), false) => Some(("backup_failed", format!("scheduled backup failed: {e}"))),
            (None, true) => Some(("backup_ok", "scheduled backups work again".to_string())),
            _ => None,
        };
        if let (Some((code, message)), Some(ledger)) = (alert, &ledger) {
            let cmd = crate::ledger::Command::Alert(crate::domain::event::Alert {
                source: "backup".into(),
                code: code.into(),
                message,
                detail: serde_json::json!({ "dir": backup_dir.display().to_string() }),
            });
            let actor = crate::ledger::Actor {
                staff_no: "storebox".into(),
                role: crate::domain::access::Role::Admin,
                terminal_id: "storebox".into(),
            };
            if let Err(e) = ledger.execute(actor, cmd).await {
                tracing::error!(error = %e, "cannot record the backup alert");
            }
        }
    }
}

/// The store's scheduled backups in `dir`.
pub(super) fn scheduled_files(dir: &Path, store_id: &str) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("storebox-{store_id}-");
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".sbk"))
        })
        .collect())
}

/// How long ago the newest scheduled backup in `dir` was written, if there is one.
fn newest_age(dir: &Path, store_id: &str) -> Option<Duration> {
    scheduled_files(dir, store_id)
        .ok()?
        .iter()
        .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .filter_map(|t| t.elapsed().ok())
        .min()
}

/// Removes all but the newest `keep` scheduled backups of the store in `dir`; `written`, the
/// one just written, always stays. (Its name sorts before a backup named by a clock that once
/// ran ahead: with `keep = 1` every new backup was removed as soon as it was written, and the
/// stale one stayed.)
pub(super) fn prune(dir: &Path, store_id: &str, keep: usize, written: &Path) -> anyhow::Result<()> {
    let mut files = scheduled_files(dir, store_id)?;
    // The timestamp in the name sorts in time order; the one just written goes last. One
    // named after it was written before it by a clock that ran ahead: it goes first, or it
    // would hold one of the `keep` places (with data erased since) for good.
    files.sort_by_key(|p| (p.as_path() == written, p.as_path() < written, p.clone()));
    let excess = files.len().saturating_sub(keep);
    for old in &files[..excess] {
        std::fs::remove_file(old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}
