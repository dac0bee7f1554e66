//! The config file's reload on SIGHUP, and the end of the sessions a changed config no longer
//! grants (at a reload and at the start).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::system_actor;
use crate::api::{AppState, Directory};
use crate::config::Config;

/// Reloads the config file on SIGHUP: terminals, staff, lock-out settings and (unless HQ's
/// rules are in force) the membership rules take effect at once; other changed sections are
/// named in the log as needing a restart — `[[products]]` only for SKUs the store does not know
/// yet, as a restart records no other (a changed product the store holds is named as not
/// applied instead). A config that does not load changes nothing. Every
/// reload is audited (`config.reload`).
pub(super) async fn reload_on_sighup(
    state: AppState,
    mut current: Config,
    mut hup: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        let path = current.source.clone();
        let (detail, next) = match Config::load_for_reload(&path, current.store.environment) {
            Err(e) => {
                tracing::error!(error = %e, "config reload refused; the running config stays");
                (
                    serde_json::json!({ "ok": false, "error": e.to_string() }),
                    None,
                )
            }
            Ok(new) => {
                let products = ProductChanges::between(&state, &current, &new);
                let (applied, restart) = apply_reload(&state, &current, &new, &products);
                if !restart.is_empty() {
                    tracing::warn!(sections = ?restart, "config changes that need a restart");
                }
                let not_applied = products.not_applied;
                if !not_applied.is_empty() {
                    tracing::warn!(
                        skus = ?not_applied,
                        "[[products]] changes to products the store already has are not applied, \
                         now or at a restart (the config only adds SKUs the store does not know): \
                         change them with PUT /v1/products/{{sku}} or at HQ"
                    );
                }
                // A terminal or staff member removed, or given another role, PIN or token:
                // their open sessions end with the reload.
                let ended = match end_stale_sessions(&state).await {
                    Ok(n) => serde_json::json!(n),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot end the sessions the config no longer grants");
                        serde_json::json!(format!("failed: {e}"))
                    }
                };
                tracing::info!(applied = ?applied, sessions_ended = %ended, "config reloaded");
                (
                    serde_json::json!({
                        "ok": true,
                        "applied": applied,
                        "needs_restart": restart,
                        "products_not_applied": not_applied,
                        "sessions_ended": ended,
                    }),
                    Some(new),
                )
            }
        };
        let audit = crate::ledger::Command::Audit {
            action: "config.reload".into(),
            target: path.display().to_string(),
            detail,
        };
        if let Err(e) = state.ledger.execute(system_actor(), audit).await {
            tracing::error!(error = %e, "cannot audit the config reload");
        }
        // Only the reloadable parts of `new` are in force: the sections that need a restart
        // keep running as the daemon started them, so they stay the comparison's base (a
        // second reload still names them; a change undone names nothing).
        if let Some(new) = next {
            current.terminals = new.terminals;
            current.staff = new.staff;
            let key_file = current.security.key_file.clone();
            current.security = new.security;
            current.security.key_file = key_file;
            current.membership = new.membership;
        }
    }
}

/// Puts the reloadable parts of `new` in force; returns what was applied and which changed
/// sections need a restart (`[[products]]` as `products` found).
fn apply_reload(
    state: &AppState,
    old: &Config,
    new: &Config,
    products: &ProductChanges,
) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut applied = vec!["terminals", "staff", "security"];
    state.directory.set(Directory::from_config(new));
    state.security.set(new.security.clone());
    if new.security.key_file != old.security.key_file {
        applied.retain(|s| *s != "security");
    }
    match state.cache.rules() {
        Ok(None) => {
            state.settings.set_rules(new.membership.clone());
            applied.push("membership");
        }
        Ok(Some(_)) => {}
        Err(e) => tracing::error!(error = %e, "cannot read HQ's rules; membership not reloaded"),
    }
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let mut restart = Vec::new();
    for (name, changed) in [
        ("store", !same(&old.store, &new.store)),
        ("http", !same(&old.http, &new.http)),
        ("storage", !same(&old.storage, &new.storage)),
        ("uplink", !same(&old.uplink, &new.uplink)),
        ("devices", !same(&old.devices, &new.devices)),
        ("products", products.for_a_restart),
        ("backup", !same(&old.backup, &new.backup)),
        ("insight", !same(&old.insight, &new.insight)),
        (
            "security.key_file",
            new.security.key_file != old.security.key_file,
        ),
    ] {
        if changed {
            restart.push(name);
        }
    }
    (applied, restart)
}

/// What a reload finds changed in `[[products]]`, read once: the config only seeds SKUs the
/// store does not know (the ledger's seeding skips the others), so a changed entry needs a
/// restart only for a new SKU, and one for a product the store holds is never applied.
struct ProductChanges {
    /// An entry added or changed for a SKU the store does not hold: a restart records it.
    for_a_restart: bool,
    /// SKUs whose entry was added, changed or removed and which the store already holds.
    not_applied: Vec<String>,
}

impl ProductChanges {
    fn between(state: &AppState, old: &Config, new: &Config) -> ProductChanges {
        let entries = |c: &Config| -> BTreeMap<String, String> {
            c.products
                .iter()
                .map(|p| (p.product.sku.clone(), format!("{p:?}")))
                .collect()
        };
        let (before, after) = (entries(old), entries(new));
        let mut out = ProductChanges {
            for_a_restart: false,
            not_applied: Vec::new(),
        };
        let skus: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
        for sku in skus.into_iter().filter(|s| before.get(*s) != after.get(*s)) {
            if store_has(state, sku) {
                out.not_applied.push(sku.clone());
            } else if after.contains_key(sku) {
                out.for_a_restart = true;
            }
        }
        out
    }
}

/// Whether the store holds a product. A cache that cannot be read counts as not holding it,
/// so the change is still named as needing a restart.
fn store_has(state: &AppState, sku: &str) -> bool {
    match state.cache.product(sku) {
        Ok(p) => p.is_some(),
        Err(e) => {
            tracing::error!(error = %e, sku, "cannot read a product to compare the config's");
            false
        }
    }
}

/// Ends the open sessions the current directory no longer grants
/// ([`Directory::stale_sessions`]); returns how many.
pub(super) async fn end_stale_sessions(state: &AppState) -> anyhow::Result<usize> {
    let directory = state.directory.get();
    let cache = state.cache.clone();
    let keys = state.keys.clone();
    let stale = tokio::task::spawn_blocking(move || directory.stale_sessions(&cache, &keys))
        .await
        .context("the session check stopped")?
        .context("reading the sessions")?;
    let n = stale.len();
    if n > 0 {
        let op = crate::ledger::SessionOp::End {
            token_hashes: stale,
        };
        state
            .ledger
            .execute(system_actor(), crate::ledger::Command::Session(op))
            .await
            .context("ending sessions")?;
    }
    Ok(n)
}
