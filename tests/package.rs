//! The Debian package's definition (`[package.metadata.deb]` in Cargo.toml and
//! `packaging/debian/`), checked without building it: every file it names exists, goes where the
//! unit and the README say, and the maintainer scripts are sound shell. Building the package,
//! installing it into a scratch root and verifying the installed unit is
//! `packaging/check-deb.sh`, run by `.ci/run` (it needs cargo-deb and dpkg).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn deb_metadata() -> toml::Table {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&manifest).unwrap();
    manifest["package"]["metadata"]["deb"]
        .as_table()
        .expect("[package.metadata.deb]")
        .clone()
}

/// `(source, destination, mode)` of every asset.
fn assets() -> Vec<(String, String, String)> {
    deb_metadata()["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|a| {
            let a = a.as_array().expect("[source, dest, mode]");
            let s = |i: usize| a[i].as_str().expect("a string").to_string();
            (s(0), s(1), s(2))
        })
        .collect()
}

/// Where the package puts `source` (a destination ending in `/` keeps the file's name).
fn installed_as(source: &str) -> String {
    let (_, dest, _) = assets()
        .into_iter()
        .find(|(s, _, _)| s == source)
        .unwrap_or_else(|| panic!("{source} is not in the package"));
    let name = Path::new(source).file_name().unwrap().to_str().unwrap();
    if dest.ends_with('/') {
        format!("/{dest}{name}")
    } else {
        format!("/{dest}")
    }
}

#[test]
fn every_asset_exists_with_a_sane_mode() {
    for (source, dest, mode) in assets() {
        assert!(
            !dest.starts_with('/'),
            "{dest}: cargo-deb wants it relative"
        );
        if source == "target/release/storebox" {
            assert_eq!((dest.as_str(), mode.as_str()), ("usr/bin/", "755"));
            continue;
        }
        assert_eq!(mode, "644", "{source}");
        if let Some(dir) = source.strip_suffix("/*.md") {
            assert!(repo().join(dir).is_dir(), "{source}");
        } else {
            assert!(repo().join(&source).is_file(), "{source} does not exist");
        }
    }
}

#[test]
fn files_go_where_the_unit_and_systemd_look() {
    let unit = std::fs::read_to_string(repo().join("systemd/storebox.service")).unwrap();
    for (source, path) in [
        (
            "systemd/storebox.service",
            "/usr/lib/systemd/system/storebox.service",
        ),
        (
            "systemd/storebox.sysusers",
            "/usr/lib/sysusers.d/storebox.conf",
        ),
        (
            "systemd/storebox-modules.conf",
            "/usr/lib/modules-load.d/storebox.conf",
        ),
        (
            "systemd/99-storebox.rules",
            "/usr/lib/udev/rules.d/99-storebox.rules",
        ),
        (
            "config/example-store.toml",
            "/etc/storebox/storebox.toml.example",
        ),
        ("README.md", "/usr/share/doc/storebox/README.md"),
    ] {
        assert_eq!(installed_as(source), path, "{source}");
    }
    assert!(unit.contains("Documentation=file:///usr/share/doc/storebox/README.md"));
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart=");
    assert!(exec.starts_with(&installed_as("target/release/storebox")));
    // The postinst makes the user from the file under the name it is installed as.
    let postinst = std::fs::read_to_string(repo().join("packaging/debian/postinst")).unwrap();
    assert!(postinst.contains("systemd-sysusers ${root:+--root=\"$root\"} storebox.conf"));
}

#[test]
fn depends_on_libc6_alone() {
    let meta = deb_metadata();
    let depends = meta["depends"].as_str().expect("depends");
    assert!(
        depends.starts_with("libc6 (>= ") && !depends.contains(','),
        "{depends}"
    );
}

#[test]
fn maintainer_scripts_are_sound_shell() {
    let dir = deb_metadata()["maintainer-scripts"]
        .as_str()
        .expect("maintainer-scripts")
        .to_string();
    for name in ["postinst", "prerm", "postrm"] {
        let path: PathBuf = repo().join(&dir).join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            text.starts_with("#!/bin/sh\n"),
            "{name}: not a /bin/sh script"
        );
        assert!(text.lines().any(|l| l == "set -e"), "{name}: no set -e");
        // cargo-deb's systemd-units would splice its own fragments here; storebox's scripts
        // do that work themselves (the service must not start before a config exists).
        assert!(!text.contains("#DEBHELPER#"), "{name}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert!(mode & 0o111 != 0, "{name} is not executable");
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // No cargo-deb systemd-units: it would add enable/start fragments of its own.
    assert!(deb_metadata().get("systemd-units").is_none());
}

/// `cargo deb` on the binary this build made (the debug one: the check is of the packaging),
/// then `packaging/check-deb.sh`: contents, control data, install into a scratch root with the
/// maintainer scripts, `systemd-analyze verify` on the installed unit, upgrade and purge.
/// Without cargo-deb the test skips with the reason, except under `CI=true`, where .ci/run has
/// installed it.
#[test]
fn the_package_installs_and_its_unit_verifies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let has_cargo_deb = Command::new(&cargo)
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_deb {
        let reason = "cargo-deb is not installed (`cargo install cargo-deb --locked`)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}; .ci/run installs it under CI=true");
        }
        eprintln!("skipping: {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("storebox.deb");
    // `target/release/` in the assets stands for the profile's directory: dev → target/debug,
    // where CARGO_BIN_EXE_storebox is.
    assert!(
        Path::new(env!("CARGO_BIN_EXE_storebox")).ends_with("debug/storebox"),
        "{}",
        env!("CARGO_BIN_EXE_storebox")
    );
    let out = Command::new(&cargo)
        .args([
            "deb",
            "--profile",
            "dev",
            "--no-build",
            "--fast",
            "--output",
        ])
        .arg(&deb)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo deb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(repo().join("packaging/check-deb.sh"))
        .arg(&deb)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(out.status.success(), "packaging/check-deb.sh: {said}");
}
