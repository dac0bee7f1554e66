//! Wiring: opens the journal and the cache, starts the ledger and the HTTP server, and shuts
//! them down in order — stop accepting, finish in-flight requests, let the ledger commit what
//! it holds, flush the cache.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppContext, AppState, Directory};
use crate::cache::{Cache, Opened};
use crate::config::Config;
use crate::journal::{Journal, JournalReader};
use crate::ledger::{Ledger, StoreSettings};
use crate::pii::PiiCodec;

/// Takes the data directory's lock so two daemons never share one journal.
fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let path = dir.join("storebox.lock");
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("another storebox is already running on {}", dir.display())
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let dir = config.storage.dir.clone();
    let _lock = lock_data_dir(&dir)?;

    let codec = PiiCodec::plain();
    let journal = Journal::open(&dir, &config.store.id)
        .with_context(|| format!("opening the journal in {}", dir.display()))?;
    let (cache, cache_writer, opened) = Cache::open(&dir, config.storage.cache_capacity_mb, codec)
        .with_context(|| format!("opening the cache in {}", dir.display()))?;
    if let Opened::Rebuilt(aside) = &opened {
        tracing::warn!(moved_to = %aside.display(), "cache rebuilt from the journal; HQ data returns with the next sync");
    }
    let settings = Arc::new(StoreSettings::from_config(&config));
    let (ledger, ledger_thread) = Ledger::start(
        journal,
        cache_writer,
        settings.clone(),
        &config.products,
        config.storage.idempotency_days,
    )
    .context("starting the ledger")?;

    let state = AppState::new(AppContext {
        ledger: ledger.clone(),
        cache: cache.clone(),
        journal: JournalReader::new(&dir),
        settings,
        directory: Arc::new(Directory::from_config(&config)),
        started_at: chrono::Utc::now(),
        session_hours: config.http.session_hours,
    });
    let listener = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("listening on {}", config.http.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        store = %config.store.id,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "listening on http://{addr}"
    );

    let housekeeping = tokio::spawn(housekeeping(ledger.clone(), shutdown.clone()));
    let app = api::router(state, config.http.max_body_bytes);
    let serve =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let result = serve.await.context("serving HTTP");
    shutdown.cancel();
    let _ = housekeeping.await;

    // Every request has finished; dropping the last handle lets the ledger drain and stop.
    drop(ledger);
    tokio::task::spawn_blocking(move || ledger_thread.join())
        .await
        .context("waiting for the ledger")?
        .map_err(|_| anyhow::anyhow!("the ledger thread panicked"))?;
    tracing::info!("stopped cleanly");
    result
}

/// Periodic upkeep: forget expired sessions.
async fn housekeeping(ledger: Ledger, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    let actor = crate::ledger::Actor {
        staff_no: "storebox".into(),
        role: crate::domain::access::Role::Admin,
        terminal_id: "storebox".into(),
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                let op = crate::ledger::Command::Session(crate::ledger::SessionOp::Prune);
                if let Err(e) = ledger.execute(actor.clone(), op).await {
                    tracing::warn!(error = %e, "pruning sessions failed");
                }
            }
        }
    }
}
