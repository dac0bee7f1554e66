//! Files given to the data directory's owner.

use std::path::Path;

use anyhow::Context;

/// Gives the files in `dir` to the directory's owner. A restore run as root (as the IT
/// person does) writes them as root, and the daemon, running as the directory's owner
/// (`storebox`), then cannot open them.
pub(crate) fn give_to_owner(dir: &Path) -> anyhow::Result<()> {
    let owner = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        give_to(&entry?.path(), &owner)?;
    }
    Ok(())
}

/// Gives `path` to the owner of `dir` (a no-op when it is already theirs).
pub(super) fn give_like(path: &Path, dir: &Path) -> anyhow::Result<()> {
    let owner = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    give_to(path, &owner)
}

/// Gives `path` (not what a link points to) to the owner and group of `owner`, the data
/// directory's metadata, unless it is theirs already.
fn give_to(path: &Path, owner: &std::fs::Metadata) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("reading {}", path.display()))?;
        if meta.uid() != owner.uid() || meta.gid() != owner.gid() {
            std::os::unix::fs::lchown(path, Some(owner.uid()), Some(owner.gid())).with_context(
                || format!("giving {} to the data directory's owner", path.display()),
            )?;
        }
    }
    Ok(())
}
