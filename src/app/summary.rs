//! What the log says at start for whoever reads `journalctl -u storebox`: which storebox runs
//! (the version — after an upgrade of a hundred boxes, which ones run the new one), on which
//! config and data directory (said first, so a start that fails says it too), and, once it
//! serves, what is on: the uplink and its broker, devices, backups, the morning automation.
//! Never a secret: no password, token, PIN or key is in any of it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Config;

/// The version of this build, as `storebox --version` and `/healthz` say it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The first line of a start.
pub(super) fn starting(config: &Config) {
    tracing::info!(
        config = %config.source.display(),
        data_dir = %config.storage.dir.display(),
        store = %config.store.id,
        environment = %format!("{:?}", config.store.environment).to_lowercase(),
        "storebox {VERSION} starting"
    );
    let now = chrono::Utc::now();
    if crate::domain::timestamp::clock_not_set(&now) {
        tracing::warn!(
            clock = %now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "clock not set: sales are recorded with this date until NTP sets it; /healthz says so while it lasts"
        );
    }
}

/// The line that says the daemon serves, with what is on and off.
pub(super) fn listening(config: &Config, scheme: &str, addr: SocketAddr, elapsed: Duration) {
    let uplink = &config.uplink;
    let broker = if uplink.enabled {
        let tls = if uplink.tls.is_some() { " (TLS)" } else { "" };
        format!("{}:{}{tls}", uplink.host, uplink.port)
    } else {
        "off".to_string()
    };
    let backups = match config.backup.every {
        Some(every) => format!("every {} h", every.as_secs() / 3600),
        None => "off".to_string(),
    };
    let automation = &config.insight.automation;
    let automation = if automation.enabled {
        format!("at {:02}:00", automation.run_hour)
    } else {
        "off".to_string()
    };
    tracing::info!(
        store = %config.store.id,
        version = %VERSION,
        uplink = %broker,
        devices = config.devices.len(),
        backups = ?backups,
        automation = ?automation,
        elapsed_ms = elapsed.as_millis() as u64,
        "listening on {scheme}://{addr}"
    );
}
