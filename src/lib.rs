//! storebox: the customer-management and device hub of a store.
//!
//! # Layout
//!
//! - [`domain`]: pure store logic — money, membership rules, pricing, sales, refunds, points
//!   adjusted by hand (`domain/adjustment.rs`), events,
//!   permissions, lock-out, RFM segments and the churn warning, report figures, campaigns and
//!   automatic occasions, feedback; month keys and RFC 3339 times as the JSON holds them
//!   (`calendar`, `timestamp`). No IO and no clock: `now` is passed in. Property-tested.
//! - [`journal`]: the SQLite book of record — append-only events with gap-free `seq`,
//!   idempotency keys, the outbox position, the hash-chained audit log; a pool of read-only
//!   connections for queries; the check that its files are still where it opened them.
//! - [`cache`]: the rebuildable cache (its own SQLite file) — members indexed by phone, card,
//!   phone tail and name (phones and cards also hinted in memory, so the till's lookups skip
//!   the index), products by barcode, stock, coupons, sessions; the projections that apply
//!   journal events to them, idempotently; bulk mode (`cache/bulk.rs`), in which an import or
//!   a long replay writes new members' index entries sorted at the end; the writer's memo of
//!   committed products and stock levels (`cache/memo.rs`), which a sale reads; member reads
//!   in `cache/members.rs`; the hand-back of a phone or card HQ's duplicate let go of in
//!   `cache/pending/handback.rs`.
//! - [`ledger`]: the single writer. One thread owns the journal's write connection; commands
//!   arrive over a channel, are computed in `domain`, appended in one transaction per batch
//!   (group commit), projected into the cache, and answered after the commit.
//! - [`uplink`]: the MQTT link to HQ — the outbox sender (events leave only on PUBACK), the
//!   downlink applier (HQ's master data by per-item version, a message at a time, big ones in
//!   parts), the retained status (and another box's under the same store id,
//!   `uplink/link/status.rs`), leaving the broker (`uplink/link/farewell.rs`).
//! - [`pii`]: the one codec personal data passes through on its way to disk: sealed per member
//!   in the journal (data keys in `member_keys`), sealed in the cache, HMAC lookup keys.
//! - [`security`]: the store key file and the keys derived from it, the sealing and MAC
//!   primitives, peppered argon2id PINs.
//! - `sqlite`: what every SQLite connection gets (the query planner stability guarantee,
//!   without which rusqlite's statement cache re-prepares every statement); `sqlite/coalesce.rs`,
//!   the VFS through which the journal's and the cache's writers hand each transaction's WAL
//!   frames to the file in one write.
//! - [`backup`]: online, compressed, encrypted backups and their restore; scheduled backups.
//! - [`admin`]: the offline commands (`init`, `audit verify`, `backup`, `restore`).
//! - [`api`]: axum handlers, one module per resource; authentication and the error type; the
//!   cut of a long list into pages (`api/page.rs`).
//! - [`devices`]: scanners, card readers and receipt printers (serial, HID, TCP, file), the
//!   ESC/POS encoder, receipt and refund slip layout (`devices/receipt/refund.rs`) and
//!   decoder, the device bus.
//! - [`insight`]: hands a period's sales, refunds and registrations, as the journal is read,
//!   to the reports' tallies (`domain::report::Tally`; none is held); [`automation`]: the morning run (birthday and win-back coupons);
//!   [`import`]: members from CSV.
//! - [`ids`]: UUIDv7 ids.
//! - [`metrics`]: counters and histograms for `GET /metrics`.
//! - [`config`]: TOML → validated [`config::Config`], errors naming file, key and reason;
//!   secrets on disk every user can read (`config/exposure.rs`); directories the packaged
//!   unit would not let the service write (`config/unit.rs`); likely mistakes warned about, not
//!   refused (`config/warnings.rs`).
//! - [`notify`]: systemd's notify protocol without libsystemd — `READY=1` once HTTP is served,
//!   `STATUS=`, `STOPPING=1`, `EXTEND_TIMEOUT_USEC` while a long replay gets on, and watchdog
//!   pings only while the ledger answers and the HTTP server runs. The unit, sysusers and udev files are in `systemd/`.
//! - [`app`]: wiring — lock the data directory, open the stores, start the ledger, the HTTP
//!   server and the background tasks (automation, disk watch, SIGHUP reload, backups), tell
//!   systemd, shut down in order; `app/serve.rs`, the HTTP server's own accept loop (a time
//!   limit on request heads, caps on connections, a bounded shutdown); `app/reload.rs`, the
//!   SIGHUP reload and the end of the sessions a changed config no longer grants;
//!   `app/new_store.rs`, the refusal of a production data directory with no journal that
//!   `storebox init` did not mark as a new store's; `app/summary.rs`, what the log says at
//!   start (version, config, data directory, what is on);
//!   [`app::OfflineStore`] for offline commands.
//!
//! `main.rs` is thin: command line, logging, signals, then [`app::run`].

pub mod admin;
pub mod api;
pub mod app;
pub mod automation;
pub mod backup;
pub mod cache;
pub mod config;
pub mod devices;
pub mod domain;
pub mod ids;
pub mod import;
pub mod insight;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod notify;
pub mod pii;
pub mod security;
mod sqlite;
pub mod uplink;
