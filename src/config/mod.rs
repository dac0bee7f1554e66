//! Configuration: TOML → [`Config`], parsed, then validated.
//!
//! Parsing uses `deny_unknown_fields` everywhere, so a typo is an error and not a silently
//! ignored setting. Every error names the file, the key and the reason
//! (`config/dev.toml: staff[1].pin: ...`). Secrets live in [`Secret`], whose `Debug` prints
//! `MASKED`.

mod devices;
mod exposure;
mod generate;
mod insight;
mod membership;
mod raw;
mod security;
mod tls;
mod unit;
mod uplink;
mod warnings;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use crate::domain::access::Role;
use crate::domain::catalog::Product;
use crate::domain::money::TotalRounding;
use crate::domain::rules::Rules;

pub use devices::{DeviceConfig, DeviceKind, LineEnd, PrinterOptions, Transport};
pub use generate::generate;
pub use insight::{Automation, InsightConfig};
pub use membership::{RawMembership, membership_from_raw};
pub use raw::RawConfig;
pub use security::{BackupConfig, CREDENTIAL_NAME, DEFAULT_KEY_FILE, SecurityConfig};
pub use tls::TlsFiles;
pub use unit::{UNIT_STATE_DIR, read_only_hint};
pub use uplink::{UplinkConfig, UplinkTls, host_problem};

/// A configuration error: which file, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file read.
    pub file: PathBuf,
    /// Dotted path of the offending key (`store.timezone`, `staff[0].pin`); empty when the
    /// whole file is at fault (unreadable, not TOML).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// A secret from the config (terminal token, PIN). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MASKED")
    }
}

/// Development or production. Development accepts plain PINs and terminal tokens in the config;
/// production demands hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Plain secrets allowed; meant for a laptop.
    Development,
    /// Only hashes in the config.
    #[default]
    Production,
}

/// `[store]`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Store id, used in MQTT topics and events (`sh-001`).
    pub id: String,
    /// Store name printed on receipts.
    pub name: String,
    /// The store's timezone: decides "today", birthdays and reporting days.
    pub timezone: Tz,
    /// ISO 4217 code; amounts are in its minor unit (2 decimals assumed).
    pub currency: String,
    /// Development or production.
    pub environment: Environment,
    /// Whether a sale may take stock below zero (default yes: goods on the counter are real).
    pub allow_negative_stock: bool,
    /// 抹零: how the total of a sale is rounded.
    pub total_rounding: TotalRounding,
}

/// `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the bound address is logged).
    pub listen: SocketAddr,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a staff session lasts.
    pub session_hours: u32,
    /// `[http.tls]`: serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
}

/// `[storage]`.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Data directory: `journal.sqlite3` and `cache/` live here.
    pub dir: PathBuf,
    /// Page cache of the cache file, in MiB (shared between its connections).
    pub cache_capacity_mb: u64,
    /// How long idempotency keys are kept at least (the longest expected offline period); they
    /// are forgotten a generation at a time, so at most twice this.
    pub idempotency_days: u32,
    /// Free space on the data directory's file system below which an alert is raised.
    pub min_free_mb: u64,
}

/// How a terminal's token is checked.
#[derive(Debug, Clone)]
pub struct TerminalConfig {
    /// Terminal id (`pos-1`).
    pub id: String,
    /// SHA-256 of the terminal token (plain tokens are hashed when the config is read).
    pub token_sha256: [u8; 32],
    /// Whether the config gave the token itself (development), not its hash.
    pub plain_token: bool,
}

/// How a staff member's PIN is checked.
#[derive(Debug, Clone)]
pub enum PinCheck {
    /// Development only: the PIN itself.
    Plain(Secret),
    /// An argon2id PHC string (`storebox hash-pin`).
    Argon2(String),
}

/// A staff member.
#[derive(Debug, Clone)]
pub struct StaffConfig {
    /// Staff number used to log in.
    pub staff_no: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// PIN check.
    pub pin: PinCheck,
}

/// A product (and optional opening stock) known before HQ's first sync.
#[derive(Debug, Clone)]
pub struct SeedProduct {
    /// The product.
    pub product: Product,
    /// Opening stock, used only when the store has no stock record for the product yet.
    pub stock: Option<i64>,
    /// Safety stock.
    pub safety_stock: Option<i64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[[terminals]]`.
    pub terminals: Vec<TerminalConfig>,
    /// `[[staff]]`.
    pub staff: Vec<StaffConfig>,
    /// `[membership]`: the rules (defaults = the chain's table).
    pub membership: Rules,
    /// `[[products]]`: products known before HQ's first sync.
    pub products: Vec<SeedProduct>,
    /// `[uplink]`: the MQTT link to HQ.
    pub uplink: UplinkConfig,
    /// `[[devices]]`: scanners, card readers, printers.
    pub devices: Vec<DeviceConfig>,
    /// `[security]`: the store key and PIN lock-out.
    pub security: SecurityConfig,
    /// `[backup]`: scheduled backups.
    pub backup: BackupConfig,
    /// `[insight]`: segments, churn warning, automations.
    pub insight: InsightConfig,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = raw::read(path).map_err(|reason| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            reason,
        })?;
        Config::parse(path, &text)
    }

    /// Parses and validates config text; `path` is used in messages only.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw = raw::parse(text).map_err(|(key, reason)| ConfigError {
            file: path.to_path_buf(),
            key,
            reason,
        })?;
        validate(raw)
            .map_err(|(key, reason)| ConfigError {
                file: path.to_path_buf(),
                key,
                reason,
            })
            .map(|mut c| {
                c.source = path.to_path_buf();
                c
            })
    }

    /// Checks what only the link to HQ uses — the broker's host (a URL or a `host:port` where
    /// a host name goes) and the uplink's TLS certificates and key, read from their files —
    /// and says which key is wrong. `check-config` and a reload refuse such a config; the
    /// daemon starts on it all the same (the till must sell while the link to HQ is broken)
    /// and reports the uplink down with the same reason.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        if !self.uplink.host.is_empty()
            && let Some(reason) = host_problem(&self.uplink.host)
        {
            return Err(ConfigError {
                file: self.source.clone(),
                key: "uplink.host".into(),
                reason,
            });
        }
        if let Some(tls) = &self.uplink.tls {
            crate::uplink::tls_client_config(tls).map_err(|(key, reason)| ConfigError {
                file: self.source.clone(),
                key: key.to_string(),
                reason,
            })?;
        }
        Ok(())
    }

    /// Reads a config file as a running daemon's reload (SIGHUP) takes it: `store.environment`
    /// changes only at a restart, so the terminals and staff applied at once must also pass
    /// the checks of the environment the daemon runs in (a production daemon takes no plain
    /// PIN or terminal token, whatever the edited file says its environment is).
    pub fn load_for_reload(path: &Path, running: Environment) -> Result<Config, ConfigError> {
        let text = raw::read(path).map_err(|reason| ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            reason,
        })?;
        Config::parse_for_reload(path, &text, running)
    }

    /// [`Config::load_for_reload`] on text; `path` is used in messages only.
    pub fn parse_for_reload(
        path: &Path,
        text: &str,
        running: Environment,
    ) -> Result<Config, ConfigError> {
        let new = Config::parse(path, text)?;
        new.check_files()?;
        if new.store.environment != running {
            let mut raw = raw::parse(text).map_err(|(key, reason)| ConfigError {
                file: path.to_path_buf(),
                key,
                reason,
            })?;
            raw.store.environment = running;
            validate(raw).map_err(|(key, reason)| ConfigError {
                file: path.to_path_buf(),
                key,
                reason: format!(
                    "{reason} (the daemon runs in {}: store.environment changes at a restart)",
                    format!("{running:?}").to_lowercase()
                ),
            })?;
        }
        Ok(new)
    }

    /// The store key file (see `[security] key_file`): explicit, else the systemd credential
    /// `storebox.key` in `$CREDENTIALS_DIRECTORY`, else `<storage.dir>/store.key` in
    /// development and `/etc/storebox/store.key` in production.
    pub fn key_path(&self) -> PathBuf {
        let creds = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        security::key_path(
            &self.security,
            self.store.environment,
            &self.storage.dir,
            creds.as_deref(),
        )
    }

    /// The session lifetime.
    pub fn session_ttl(&self) -> chrono::Duration {
        chrono::Duration::hours(i64::from(self.http.session_hours))
    }
}

type Invalid = (String, String);

fn bad(key: impl Into<String>, reason: impl Into<String>) -> Invalid {
    (key.into(), reason.into())
}

/// SHA-256 of a token, as stored for terminals.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn validate(raw: RawConfig) -> Result<Config, Invalid> {
    let s = raw.store;
    if !valid_id(&s.id) {
        return Err(bad(
            "store.id",
            "must be 1–32 lower-case letters, digits, '-' or '_' (it is used in MQTT topics)",
        ));
    }
    if s.name.trim().is_empty() {
        return Err(bad("store.name", "must not be empty"));
    }
    let timezone: Tz = s.timezone.parse().map_err(|_| {
        bad(
            "store.timezone",
            format!("unknown time zone '{}'", s.timezone),
        )
    })?;
    if s.currency.len() != 3 || !s.currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad(
            "store.currency",
            "must be an ISO 4217 code such as CNY",
        ));
    }
    let environment = s.environment;

    let h = raw.http;
    let listen: SocketAddr = h.listen.parse().map_err(|_| {
        bad(
            "http.listen",
            format!("'{}' is not an address like 127.0.0.1:8080", h.listen),
        )
    })?;
    if !(1024..=16 * 1024 * 1024).contains(&h.max_body_bytes) {
        return Err(bad(
            "http.max_body_bytes",
            "must be between 1024 and 16777216",
        ));
    }
    if !(1..=24 * 30).contains(&h.session_hours) {
        return Err(bad("http.session_hours", "must be between 1 and 720"));
    }
    let http_tls = tls::to_tls(h.tls)?;

    let st = raw.storage;
    if st.dir.as_os_str().is_empty() {
        return Err(bad("storage.dir", "must not be empty"));
    }
    if !(1..=4096).contains(&st.cache_capacity_mb) {
        return Err(bad(
            "storage.cache_capacity_mb",
            "must be between 1 and 4096",
        ));
    }
    if !(16..=1024 * 1024).contains(&st.min_free_mb) {
        return Err(bad("storage.min_free_mb", "must be between 16 and 1048576"));
    }
    if !(1..=3650).contains(&st.idempotency_days) {
        return Err(bad(
            "storage.idempotency_days",
            "must be between 1 and 3650",
        ));
    }

    let mut terminals = Vec::with_capacity(raw.terminals.len());
    let mut seen = HashSet::new();
    for (i, t) in raw.terminals.into_iter().enumerate() {
        let key = |f: &str| format!("terminals[{i}].{f}");
        if !valid_id(&t.id) {
            return Err(bad(
                key("id"),
                "must be 1–32 lower-case letters, digits, '-' or '_'",
            ));
        }
        if !seen.insert(t.id.clone()) {
            return Err(bad(key("id"), format!("duplicate terminal id {}", t.id)));
        }
        let plain_token = t.token.is_some();
        let token_sha256 = match (t.token, t.token_sha256) {
            (Some(_), Some(_)) => {
                return Err(bad(key("token"), "give token or token_sha256, not both"));
            }
            (Some(tok), None) => {
                if environment != Environment::Development {
                    return Err(bad(
                        key("token"),
                        "plain tokens are accepted in development only; use token_sha256",
                    ));
                }
                if tok.len() < 16 {
                    return Err(bad(key("token"), "must be at least 16 characters"));
                }
                token_hash(&tok)
            }
            (None, Some(hex_hash)) => hex::decode(&hex_hash)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| bad(key("token_sha256"), "must be 64 hex digits"))?,
            (None, None) => return Err(bad(key("token"), "a token or token_sha256 is required")),
        };
        // A login is credited to the terminal its token names: two with one token would
        // credit one's logins, lock-outs, scans and receipts to the other.
        if let Some(other) = terminals
            .iter()
            .find(|o: &&TerminalConfig| o.token_sha256 == token_sha256)
        {
            return Err(bad(
                key(if plain_token { "token" } else { "token_sha256" }),
                format!(
                    "the same token as terminal {}; each terminal needs its own",
                    other.id
                ),
            ));
        }
        terminals.push(TerminalConfig {
            id: t.id,
            token_sha256,
            plain_token,
        });
    }

    let mut staff = Vec::with_capacity(raw.staff.len());
    let mut seen = HashSet::new();
    for (i, p) in raw.staff.into_iter().enumerate() {
        let key = |f: &str| format!("staff[{i}].{f}");
        if p.staff_no.is_empty()
            || p.staff_no.len() > 16
            || !p.staff_no.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(bad(key("staff_no"), "must be 1–16 letters or digits"));
        }
        if !seen.insert(p.staff_no.clone()) {
            return Err(bad(
                key("staff_no"),
                format!("duplicate staff number {}", p.staff_no),
            ));
        }
        if p.name.trim().is_empty() {
            return Err(bad(key("name"), "must not be empty"));
        }
        let pin = match (p.pin, p.pin_hash) {
            (Some(_), Some(_)) => return Err(bad(key("pin"), "give pin or pin_hash, not both")),
            (Some(pin), None) => {
                if environment != Environment::Development {
                    return Err(bad(
                        key("pin"),
                        "plain PINs are accepted in development only; use pin_hash (storebox hash-pin)",
                    ));
                }
                if !valid_pin(&pin) {
                    return Err(bad(key("pin"), "must be 4–8 digits"));
                }
                PinCheck::Plain(Secret(pin))
            }
            (None, Some(hash)) => {
                if let Err(e) = crate::security::pin::check_hash(&hash) {
                    return Err(bad(
                        key("pin_hash"),
                        format!("must be an argon2id hash from `storebox hash-pin` ({e})"),
                    ));
                }
                PinCheck::Argon2(hash)
            }
            (None, None) => return Err(bad(key("pin"), "a pin or pin_hash is required")),
        };
        staff.push(StaffConfig {
            staff_no: p.staff_no,
            name: p.name.trim().to_string(),
            role: p.role,
            pin,
        });
    }

    let membership = membership::to_rules(raw.membership)?;
    let products = raw::to_products(raw.products)?;
    let uplink = uplink::to_uplink(raw.uplink, &s.id)?;
    let terminal_ids: Vec<String> = terminals.iter().map(|t| t.id.clone()).collect();
    let devices = devices::to_devices(raw.devices, &terminal_ids)?;
    let security = security::to_security(raw.security)?;
    let backup = security::to_backup(raw.backup, &st.dir)?;
    let insight = insight::to_insight(raw.insight)?;

    Ok(Config {
        source: PathBuf::new(),
        store: StoreConfig {
            id: s.id,
            name: s.name,
            timezone,
            currency: s.currency,
            environment,
            allow_negative_stock: s.allow_negative_stock,
            total_rounding: s.total_rounding,
        },
        http: HttpConfig {
            listen,
            max_body_bytes: h.max_body_bytes,
            session_hours: h.session_hours,
            tls: http_tls,
        },
        storage: StorageConfig {
            dir: st.dir,
            cache_capacity_mb: st.cache_capacity_mb,
            idempotency_days: st.idempotency_days,
            min_free_mb: st.min_free_mb,
        },
        terminals,
        staff,
        membership,
        products,
        uplink,
        devices,
        security,
        backup,
        insight,
    })
}

/// Ids used in topics and keys: 1–32 of `[a-z0-9_-]`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A PIN: 4–8 digits.
pub fn valid_pin(pin: &str) -> bool {
    (4..=8).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests;

/// Hashes a PIN with argon2id for `pin_hash`.
pub fn hash_pin(pin: &str) -> Result<String, String> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(pin.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}
