//! Wiring: opens the journal and the cache, starts the ledger and the HTTP server, and shuts
//! them down in order — stop accepting, finish in-flight requests, let the ledger commit what
//! it holds, flush the cache.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppContext, AppState, Directory};
use crate::cache::{Cache, Opened};
use crate::config::{Config, Environment};
use crate::journal::{Journal, JournalReader};
use crate::ledger::{Ledger, StoreSettings};
use crate::pii::PiiCodec;
use crate::security::{KeyError, StoreKeys};
use crate::uplink::UplinkStatus;

mod disk;
mod new_store;
mod offline;
mod reload;
mod serve;
mod summary;

pub use disk::DiskWatch;
use disk::disk_watch;
pub(crate) use disk::free_bytes;
pub use new_store::NEW_STORE;
pub(crate) use new_store::{check_data_dir, journal_started, mark_new_store};
pub use offline::OfflineStore;
use reload::{end_stale_sessions, reload_on_sighup};

fn system_actor() -> crate::ledger::Actor {
    crate::ledger::Actor {
        staff_no: "storebox".into(),
        role: crate::domain::access::Role::Admin,
        terminal_id: "storebox".into(),
    }
}

/// Why HQ must be asked for all of its master data, which only the cache holds, when the cache
/// was not there as it was left: `new_journal` when the journal begins here too (a new store,
/// or a box set up again without a restore: HQ also learns that this store's seqs start again
/// at 1), `cache_rebuilt` when the cache was damaged or is missing beside a journal. A cache
/// made by a start that stopped before asking (its port taken, a stop during the replay) is
/// taken up again by the next ([`Opened::Resumed`]): with the journal still empty, that is a
/// new journal too.
fn resync_reason(opened: &Opened, journal_was_empty: bool) -> Option<&'static str> {
    match opened {
        Opened::Existing => None,
        Opened::Created | Opened::Rebuilt(_) | Opened::Resumed if journal_was_empty => {
            Some("new_journal")
        }
        Opened::Created | Opened::Rebuilt(_) | Opened::Resumed => Some("cache_rebuilt"),
    }
}

/// Journals a request for all of HQ's master data, which a new or rebuilt cache lacks (only the
/// cache holds it); the uplink sends it.
async fn request_resync(ledger: &Ledger, reason: &str) -> Result<(), crate::ledger::LedgerError> {
    let request = crate::ledger::Command::RequestSync {
        reason: reason.into(),
    };
    ledger.execute(system_actor(), request).await.map(|_| ())
}

/// Takes the data directory's lock so two daemons never share one journal.
pub(crate) fn lock_data_dir(dir: &Path) -> anyhow::Result<File> {
    // Under systemd a directory the unit does not let storebox write is "read-only".
    let hint = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::ReadOnlyFilesystem => {
            anyhow::Error::from(e).context(crate::config::read_only_hint(dir))
        }
        _ => e.into(),
    };
    std::fs::create_dir_all(dir)
        .map_err(hint)
        .with_context(|| format!("creating the data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let path = dir.join("storebox.lock");
    let file = File::create(&path)
        .map_err(hint)
        .with_context(|| format!("creating {}", path.display()))?;
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

/// Loads the store key. In development a missing key is created next to the data; in
/// production it must exist (`storebox init`), because a new key cannot open existing data.
pub fn load_keys(config: &Config) -> anyhow::Result<StoreKeys> {
    let path = config.key_path();
    let keys = match config.store.environment {
        Environment::Development => {
            std::fs::create_dir_all(&config.storage.dir).with_context(|| {
                format!(
                    "creating the data directory {}",
                    config.storage.dir.display()
                )
            })?;
            let (keys, created) = StoreKeys::load_or_create(&path)?;
            if created {
                tracing::info!(path = %path.display(), fingerprint = keys.fingerprint(), "created a development store key");
            }
            keys
        }
        Environment::Production => StoreKeys::load(&path)?,
    };
    Ok(keys)
}

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    summary::starting(&config);
    let notifier = crate::notify::Notifier::from_env();
    let dir = config.storage.dir.clone();
    let _lock = lock_data_dir(&dir)?;
    check_data_dir(&config)?;
    crate::backup::remove_abandoned(&dir);
    notifier
        .notify(&crate::notify::status("starting: journal, cache, ledger"))
        .await;
    // The till sells while the link to HQ is broken: an unusable uplink certificate is said
    // here and by every connection attempt (the uplink reported down), and stops nothing.
    if let Err(e) = config.check_files() {
        tracing::error!(error = %e, "the uplink cannot connect until this is fixed");
    }
    for w in config.likely_mistakes() {
        tracing::warn!("{w}");
    }
    // Secrets every user on the box can read: said at every start, refused nowhere (the store
    // key aside, which `load_keys` refuses).
    for w in config.exposed_secrets() {
        // A development config (a checkout's config/dev.toml, 0644 like every file in it)
        // holds development secrets: said, not warned about.
        if config.store.environment == crate::config::Environment::Development {
            tracing::info!("development config: {w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    // Before anything is started: a TLS setup that fails stops the daemon cleanly.
    let tls = match &config.http.tls {
        Some(files) => Some(Arc::new(
            api::tls::server_config(files).context("setting up TLS for the HTTP API")?,
        )),
        None => None,
    };

    let keys = Arc::new(load_keys(&config)?);
    let codec = PiiCodec::new(keys.clone());
    let mut journal = Journal::open(&dir, &config.store.id)
        .with_context(|| format!("opening the journal in {}", dir.display()))?;
    if let Some(expected) = journal
        .bind_key(keys.fingerprint())
        .context("checking the store key")?
    {
        return Err(KeyError::WrongKey {
            path: config.key_path(),
            found: keys.fingerprint().to_string(),
            expected,
        }
        .into());
    }
    journal_started(&dir)?;
    let (acked_seq, last_ack_at) = crate::journal::store::outbox_position(journal.conn())
        .context("reading the outbox position")?;
    let last_ack_at = last_ack_at
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let uplink_status = Arc::new(UplinkStatus::new(
        config.uplink.enabled,
        acked_seq,
        last_ack_at,
    ));
    crate::cache::watch_damage(&dir);
    let (cache, cache_writer, opened) = Cache::open(&dir, config.storage.cache_capacity_mb, codec)
        .with_context(|| format!("opening the cache in {}", dir.display()))?;
    match &opened {
        Opened::Rebuilt(aside) => {
            tracing::warn!(moved_to = %aside.display(), "cache rebuilt from the journal; HQ data returns with the next sync");
        }
        Opened::Resumed => tracing::warn!(
            applied_seq = cache.applied_seq().unwrap_or(0),
            "cache rebuilt from the journal, going on from where an earlier start stopped; HQ data returns with the next sync"
        ),
        Opened::Existing | Opened::Created => {}
    }
    let mut resync = resync_reason(&opened, journal.last_seq() == 0);
    if opened == Opened::Created && resync == Some("cache_rebuilt") {
        tracing::warn!("no cache beside the journal: rebuilt from it; HQ is asked for its data");
    }
    if resync == Some("new_journal") {
        tracing::warn!(
            store = %config.store.id,
            "began a new journal (seq 1); HQ is asked for its data and told the numbering starts again"
        );
        match new_store::announce_new_journal(&mut journal, &config, cache.codec()) {
            Ok(()) => cache.rebuild_done(),
            Err(e) => tracing::error!(
                error = %e,
                "cannot ask HQ for its data; the next start asks again"
            ),
        }
        resync = None;
    }
    let settings = Arc::new(StoreSettings::from_config(&config));
    if let Some((version, rules)) = cache.rules().context("reading HQ's rules")? {
        tracing::info!(
            version,
            "membership rules from HQ in force (config's [membership] overridden)"
        );
        settings.set_rules(rules);
    }
    // A long replay (a rebuilt cache: a store's years of journal) tells systemd it is getting
    // on, so that `TimeoutStartSec` does not stop it half-way (it would go on at the next
    // start, but a replay longer than the timeout would never end).
    let noted = std::cell::Cell::new(None::<std::time::Instant>);
    let stopping = std::cell::Cell::new(false);
    let started_ledger = Ledger::start_unless(
        journal,
        cache_writer,
        settings.clone(),
        &config.products,
        config.storage.idempotency_days,
        &|applied, last| {
            let due = noted
                .get()
                .is_none_or(|at| at.elapsed() >= crate::notify::REPLAY_NOTE_EVERY);
            if applied < last && due {
                noted.set(Some(std::time::Instant::now()));
                tracing::info!(applied, last, "replaying the journal into the cache");
                notifier.notify_blocking(&crate::notify::replay_progress(applied, last));
            } else if applied >= last && noted.get().is_some() {
                // The last chunk of a long replay: its deferred index entries come next.
                notifier.notify_blocking(&crate::notify::replay_finishing());
            }
            let stop = shutdown.is_cancelled();
            if stop && noted.get().is_some() && !stopping.replace(true) {
                notifier.notify_blocking(&crate::notify::replay_stopping());
            }
            stop
        },
    );
    let (ledger, ledger_thread) = match started_ledger {
        Err(crate::ledger::LedgerError::ShuttingDown) => {
            // SIGTERM while the journal was replayed into the cache (a rebuild can take
            // minutes): stopped now, well within systemd's stop timeout.
            tracing::info!(
                "stopped during start-up, before the journal was replayed into the cache; it is finished at the next start"
            );
            return Ok(());
        }
        started => started.context("starting the ledger")?,
    };
    {
        // The journal has been replayed into the cache: load where phones and cards are, in
        // the background (lookups use the index tables until then).
        let cache = cache.clone();
        let spawned = std::thread::Builder::new()
            .name("member-hints".into())
            .spawn(move || {
                if let Err(e) = cache.load_hints() {
                    tracing::warn!(error = %e, "member hints not loaded; lookups use the index");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start loading member hints");
        }
    }
    // Bound before anything is journaled: a start that cannot listen (the port taken, the LAN
    // address not up yet) fails here, and systemd's restarts every 5 s add nothing to the
    // journal — each one recorded a `config.load` audit entry for HQ before failing.
    let tcp = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("listening on {}", config.http.listen))?;
    let addr = tcp.local_addr().context("reading the bound address")?;
    let started_at = chrono::Utc::now();
    let started_mono = std::time::Instant::now();
    if let Some(reason) = resync {
        match request_resync(&ledger, reason).await {
            Ok(()) => cache.rebuild_done(),
            Err(e) => tracing::error!(
                error = %e,
                "cannot ask HQ for a resync; the next start asks again"
            ),
        }
    }
    let loaded = crate::ledger::Command::Audit {
        action: "config.load".into(),
        target: config.source.display().to_string(),
        detail: serde_json::json!({
            "environment": format!("{:?}", config.store.environment).to_lowercase(),
            "key_fingerprint": keys.fingerprint(),
        }),
    };
    ledger
        .execute(system_actor(), loaded)
        .await
        .context("recording the start in the audit log")?;
    // A failure an earlier run told HQ of stays on `/healthz` (and is ended by a `backup_ok`)
    // until a backup works: a restart does not make it go away unseen.
    let backup_failing =
        crate::backup::Failing::new(std::sync::Mutex::new(match config.backup.every {
            Some(_) => crate::backup::failing_before(&JournalReader::new(&dir)).await,
            None => None,
        }));
    let backups = config.backup.every.map(|every| {
        tokio::spawn(crate::backup::scheduled(
            config.clone(),
            keys.clone(),
            every,
            config.backup.dir.clone(),
            config.backup.keep,
            backup_failing.clone(),
            Some(ledger.clone()),
            shutdown.clone(),
        ))
    });
    let automation = tokio::spawn(crate::automation::run(
        ledger.clone(),
        cache.clone(),
        settings.clone(),
        shutdown.clone(),
    ));
    let disk = Arc::new(DiskWatch::new(&dir, config.storage.min_free_mb));
    let disk_task = tokio::spawn(disk_watch(
        disk.clone(),
        ledger.clone(),
        JournalReader::new(&dir),
        shutdown.clone(),
    ));
    let bus = crate::devices::bus::Bus::new(&config.devices);
    let device_tasks = crate::devices::start(
        &config.devices,
        crate::devices::Context::new(
            ledger.clone(),
            JournalReader::new(&dir),
            cache.clone(),
            settings.clone(),
            bus.clone(),
        ),
        shutdown.clone(),
    );
    let uplink_tasks = crate::uplink::start(
        crate::uplink::Parts {
            config: config.uplink.clone(),
            store_id: config.store.id.clone(),
            ledger: ledger.clone(),
            journal: JournalReader::new(&dir),
            cache: cache.clone(),
            codec: cache.codec().clone(),
            status: uplink_status.clone(),
            started_at,
        },
        shutdown.clone(),
    );

    let state = AppState::new(AppContext {
        ledger: ledger.clone(),
        cache: cache.clone(),
        journal: JournalReader::new(&dir),
        settings,
        directory: api::Reloadable::new(Directory::from_config(&config)),
        started_at,
        started: started_mono,
        session_hours: config.http.session_hours,
        uplink: uplink_status,
        devices: bus,
        keys: keys.clone(),
        security: api::Reloadable::new(config.security.clone()),
        pin_checks: Arc::new(tokio::sync::Semaphore::new(2)),
        report_reads: Arc::new(tokio::sync::Semaphore::new(1)),
        ended_campaigns: Default::default(),
        metrics: Arc::new(crate::metrics::Metrics::default()),
        disk: disk.clone(),
        backup_failing,
        shutdown: shutdown.clone(),
    });
    // Terminals or staff taken out of the config, or given another role, PIN or token, while
    // the daemon was stopped: their sessions end before any request is served.
    let ended = end_stale_sessions(&state)
        .await
        .context("ending the sessions the config no longer grants")?;
    if ended > 0 {
        tracing::info!(
            sessions = ended,
            "sessions ended: the config no longer grants them"
        );
    }
    // Installed before the daemon says it listens: from then on SIGHUP reloads, never kills.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    let (listener, scheme) = match tls {
        None => (HttpListener::Plain(tcp), "http"),
        Some(tls) => (
            HttpListener::Tls(
                api::tls::TlsListener::new(tcp, tls).context("starting the TLS listener")?,
            ),
            "https",
        ),
    };
    summary::listening(&config, scheme, addr, started.elapsed());

    let housekeeping = tokio::spawn(housekeeping(ledger.clone(), shutdown.clone()));
    let reload = tokio::spawn(reload_on_sighup(
        state.clone(),
        config.clone(),
        hup,
        shutdown.clone(),
    ));
    let app = api::router(state, config.http.max_body_bytes);
    let server = tokio::spawn(serve(listener, app, shutdown.clone()));
    // READY=1 now that the listener is bound, then the watchdog and STOPPING=1.
    let systemd = tokio::spawn(crate::notify::supervise(
        notifier,
        crate::notify::Liveness {
            ledger: ledger.clone(),
            http: server.abort_handle(),
        },
        format!("serving on {scheme}://{addr}"),
        shutdown.clone(),
    ));
    let result = server
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the HTTP server task failed: {e}")));
    shutdown.cancel();
    let _ = systemd.await;
    let _ = housekeeping.await;
    let _ = disk_task.await;
    let _ = automation.await;
    let _ = reload.await;
    if let Some(b) = backups {
        let _ = b.await;
    }
    // The uplink says goodbye to the broker and stores its position through the ledger.
    for task in uplink_tasks.into_iter().chain(device_tasks) {
        let _ = task.await;
    }

    // Every request has finished; dropping the last handle lets the ledger drain and stop.
    drop(ledger);
    tokio::task::spawn_blocking(move || ledger_thread.join())
        .await
        .context("waiting for the ledger")?
        .map_err(|_| anyhow::anyhow!("the ledger thread panicked"))?;
    tracing::info!("stopped cleanly");
    result
}

/// The API's listener: plain HTTP, or HTTPS when `[http.tls]` is set.
enum HttpListener {
    Plain(TcpListener),
    Tls(api::tls::TlsListener),
}

/// Serves the API until `shutdown` is cancelled and in-flight requests are done (see
/// [`serve`](self::serve)).
async fn serve(
    listener: HttpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    match listener {
        HttpListener::Plain(l) => {
            self::serve::serve(l.tap_io(crate::api::tls::tune), app, shutdown).await
        }
        HttpListener::Tls(l) => self::serve::serve(l, app, shutdown).await,
    }
    Ok(())
}

/// Periodic upkeep: forget expired sessions.
async fn housekeeping(ledger: Ledger, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    let actor = system_actor();
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
