//! Where the packaged unit lets the service write. `systemd/storebox.service` makes the whole
//! file system read-only for it (`ProtectSystem=strict`) but `/var/lib/storebox`: a production
//! config whose data or backup directory is elsewhere (a bigger disk at `/data`, a USB stick
//! for the backups, a relative `./data`, which is `/data` under systemd, whose working
//! directory is `/`) passes every check, and the service then fails with "Read-only file
//! system" on a file system that is not. `check-config` says so beforehand; a drop-in with
//! `ReadWritePaths=` allows another directory, so it is a warning, not a refusal.

use std::path::Path;

use super::{Config, Environment};

/// The one directory the packaged unit lets the service write (`StateDirectory=storebox`).
pub const UNIT_STATE_DIR: &str = "/var/lib/storebox";

impl Config {
    /// Directories the packaged unit would not let a production daemon write, one sentence
    /// each, saying what to do; empty in development and when all are under
    /// [`UNIT_STATE_DIR`].
    pub fn outside_the_unit(&self) -> Vec<String> {
        if self.store.environment != Environment::Production {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (key, dir) in [
            ("storage.dir", &self.storage.dir),
            ("backup.dir", &self.backup.dir),
        ] {
            if dir.is_relative() {
                out.push(format!(
                    "{key}: {} is relative to the directory storebox starts in, which is / under \
                     systemd; give an absolute path under {UNIT_STATE_DIR}",
                    dir.display()
                ));
            } else if !dir.starts_with(UNIT_STATE_DIR) {
                out.push(format!(
                    "{key}: {} is outside {UNIT_STATE_DIR}, the only directory storebox.service \
                     lets the service write (it would fail with \"Read-only file system\"); use \
                     a directory under {UNIT_STATE_DIR}, or allow this one with \
                     `systemctl edit storebox`: [Service] ReadWritePaths={}",
                    dir.display(),
                    dir.display()
                ));
            }
        }
        // storage.dir outside, backup.dir defaulting to under it: one warning is enough.
        if self.backup.dir.starts_with(&self.storage.dir) && out.len() == 2 {
            out.pop();
        }
        out
    }
}

/// The hint for a data directory the system refused to write as read-only: under systemd that
/// is most often the unit's `ProtectSystem=strict`, not the disk.
pub fn read_only_hint(dir: &Path) -> String {
    format!(
        "{} is read-only to storebox; under systemd storebox.service lets it write only \
         {UNIT_STATE_DIR} (another directory needs ReadWritePaths= in a drop-in: `systemctl \
         edit storebox`)",
        dir.display()
    )
}
