//! The files in `systemd/`, checked with systemd's own tools where they exist: the unit with
//! `systemd-analyze verify` and `security --offline`, the sysusers file with `systemd-sysusers`
//! into a scratch root. The udev rules get a lint of their own (systemd 252, Debian 12, has no
//! `udevadm verify`). And the three files must agree on the device groups.
//!
//! A tool that is missing skips its test with the reason printed, except under `CI=true`:
//! `.ci/run` installs them, and a skip there would hide a broken unit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const INSTALLED_EXEC_START: &str =
    "ExecStart=/usr/bin/storebox run --config /etc/storebox/storebox.toml";

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(repo_file(name)).unwrap_or_else(|e| panic!("systemd/{name}: {e}"))
}

/// The path of `name` if it is installed; `None` (after printing why) when the test should
/// skip. Panics under CI, where .ci/run must have installed it.
fn tool(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&dirs)
        .chain(["/usr/bin".into(), "/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let reason = format!("{name} is not installed (Debian package `systemd`)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{reason}; .ci/run installs it under CI=true");
        }
        eprintln!("skipping: {reason}");
    }
    found
}

fn run(tool: &Path, args: &[&str], file: &Path) -> Output {
    Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The unit as shipped, but starting the binary this build made: `verify` insists that
/// ExecStart= names an executable, and /usr/bin/storebox exists only on an installed box.
fn unit_for_this_build(dir: &Path, extra: &str) -> PathBuf {
    let unit = read("storebox.service");
    assert!(
        unit.lines().any(|l| l == INSTALLED_EXEC_START),
        "the unit no longer says {INSTALLED_EXEC_START:?}"
    );
    let local = unit.replace(
        "ExecStart=/usr/bin/storebox ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_storebox")),
    );
    let path = dir.join("storebox.service");
    std::fs::write(&path, format!("{local}{extra}")).unwrap();
    path
}

/// `verify` exits 0 on some problems it only warns about, so any output at all fails too;
/// `--recursive-errors=no` keeps the verdict to this unit, not the machine's other units.
fn verify(analyze: &Path, unit: &Path) -> Result<(), String> {
    let out = run(
        analyze,
        &["verify", "--man=no", "--recursive-errors=no"],
        unit,
    );
    let said = text(&out);
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {said}", out.status))
    }
}

#[test]
fn the_unit_verifies() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path(), "");
    if let Err(e) = verify(&analyze, &unit) {
        panic!("systemd-analyze verify storebox.service: {e}");
    }
    // And the check is not blind: a misspelt directive fails it.
    let broken = unit_for_this_build(dir.path(), "ProtectSytem=strict\n");
    assert!(
        verify(&analyze, &broken).is_err(),
        "verify let a misspelt directive through"
    );
}

#[test]
fn the_unit_keeps_its_hardening() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path(), "");
    let out = run(
        &analyze,
        &["security", "--offline=yes", "--man=no", "--no-pager"],
        &unit,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    // "→ Overall exposure level for storebox.service: 1.6 OK 🙂" (0 best, 10 worst). The unit
    // scores 1.6; the devices (no PrivateDevices=) and the network cost what remains.
    let level: f64 = said
        .lines()
        .find_map(|l| l.split("exposure level for storebox.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{said}"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{said}");
}

/// The system calls in `set` (`@system-service`, or one call), as `systemd-analyze
/// syscall-filter` lists them, groups expanded.
fn syscalls(analyze: &Path, set: &str) -> std::collections::BTreeSet<String> {
    if !set.starts_with('@') {
        return [set.to_string()].into();
    }
    let out = Command::new(analyze)
        .args(["syscall-filter", "--no-pager", set])
        .output()
        .unwrap();
    assert!(out.status.success(), "{set}: {}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut calls = std::collections::BTreeSet::new();
    for line in listed.lines().skip(1).map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        calls.extend(syscalls(analyze, line));
    }
    calls
}

/// The system calls the unit's `SystemCallFilter=` lines let through, as systemd reads them:
/// the first line names what is allowed, a later one adds to it, one with `~` takes away.
fn allowed_syscalls(analyze: &Path) -> std::collections::BTreeSet<String> {
    let unit = read("storebox.service");
    let mut allowed = std::collections::BTreeSet::new();
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (deny, names) = match value.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, value),
        };
        for name in names.split_whitespace() {
            let set = syscalls(analyze, name);
            if deny {
                allowed.retain(|c| !set.contains(c));
            } else {
                allowed.extend(set);
            }
        }
    }
    allowed
}

/// What the daemon calls beyond ordinary I/O, each with why. The morning automation lowers
/// its own thread to nice 19 (`automation::lowest_priority`), so that reading every member
/// takes only the CPU the tills leave; `setpriority` is in `@resources`, which the unit denied
/// whole: under systemd the call failed (EPERM), the pass ran at the tills' priority and
/// every morning's log said "cannot lower the automation thread's priority".
#[test]
fn the_unit_lets_the_daemon_make_the_calls_it_needs() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let allowed = allowed_syscalls(&analyze);
    assert!(
        allowed.contains("openat"),
        "the filter was not read: {allowed:?}"
    );
    for (call, why) in [
        ("setpriority", "the automation thread's nice 19"),
        ("fdatasync", "the journal's commits"),
        ("ioctl", "serial ports, evdev grabs, printers"),
        ("flock", "the data directory's lock"),
    ] {
        assert!(allowed.contains(call), "the unit denies {call} ({why})");
    }
    // And the rest of `@resources` and `@privileged` stays denied.
    for call in [
        "setrlimit",
        "sched_setscheduler",
        "chown",
        "setuid",
        "mount",
    ] {
        assert!(!allowed.contains(call), "the unit allows {call}");
    }
}

#[test]
fn the_unit_names_what_the_daemon_expects() {
    let unit = read("storebox.service");
    let has = |line: &str| unit.lines().any(|l| l == line);
    // The daemon finds the key in $CREDENTIALS_DIRECTORY under this name (config::key_path).
    let credential = format!(
        "LoadCredential={}:{}",
        storebox::config::CREDENTIAL_NAME,
        storebox::config::DEFAULT_KEY_FILE
    );
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30",
        "Restart=on-failure",
        "User=storebox",
        "Group=storebox",
        "StateDirectory=storebox",
        "ConfigurationDirectory=storebox",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "DevicePolicy=closed",
        &credential,
    ] {
        assert!(has(line), "the unit lacks {line:?}");
    }
    assert!(
        !unit.contains("DynamicUser=yes"),
        "devices need a real user"
    );
    assert!(
        !unit.contains("PrivateDevices=yes"),
        "it would hide the devices"
    );
}

/// The groups of `SupplementaryGroups=`.
fn unit_groups() -> Vec<String> {
    read("storebox.service")
        .lines()
        .find_map(|l| l.strip_prefix("SupplementaryGroups="))
        .expect("SupplementaryGroups= in the unit")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn sysusers_creates_the_user_and_its_groups() {
    let Some(sysusers) = tool("systemd-sysusers") else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let file = repo_file("storebox.sysusers");
    let root_arg = format!("--root={}", root.path().display());
    let out = run(&sysusers, &[&root_arg], &file);
    assert!(out.status.success(), "{}", text(&out));
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let user: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("storebox:"))
        .unwrap_or_else(|| panic!("no storebox in {passwd}"))
        .split(':')
        .collect();
    assert_eq!(user[5], "/var/lib/storebox", "home");
    assert!(user[6].ends_with("nologin"), "shell {}", user[6]);
    let uid: u32 = user[2].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "not a system uid: {uid}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    for g in unit_groups().iter().chain([&"storebox".to_string()]) {
        assert!(
            group.lines().any(|l| l.starts_with(&format!("{g}:"))),
            "sysusers does not ensure the group {g}:\n{group}"
        );
    }
}

/// One `KEY{attr}OP"value"` of a udev rule.
#[derive(Debug)]
struct Term {
    key: String,
    op: String,
    value: String,
}

/// Splits a rule line into terms; `Err` names what is wrong.
fn parse_rule(line: &str) -> Result<Vec<Term>, String> {
    let mut terms = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        let op_at = rest
            .find(['=', '!', '+', '-', ':'])
            .ok_or_else(|| format!("no operator in {rest:?}"))?;
        let key = rest[..op_at].trim().to_string();
        let after = &rest[op_at..];
        let op = ["==", "!=", "+=", "-=", ":=", "="]
            .into_iter()
            .find(|o| after.starts_with(o))
            .ok_or_else(|| format!("bad operator in {rest:?}"))?;
        let after = after[op.len()..]
            .strip_prefix('"')
            .ok_or_else(|| format!("unquoted value after {key}{op}"))?;
        let end = after
            .find('"')
            .ok_or_else(|| format!("unterminated value after {key}{op}"))?;
        terms.push(Term {
            key,
            op: op.to_string(),
            value: after[..end].to_string(),
        });
        rest = after[end + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("missing ',' before {rest:?}"));
        }
    }
    Ok(terms)
}

#[test]
fn the_udev_rules_parse_and_grant_only_the_units_groups() {
    const KEYS: &[&str] = &[
        "ACTION",
        "SUBSYSTEM",
        "SUBSYSTEMS",
        "KERNEL",
        "DRIVERS",
        "ATTR",
        "ATTRS",
        "ENV",
        "GROUP",
        "MODE",
        "SYMLINK",
        "TAG",
    ];
    let groups = unit_groups();
    let rules = read("99-storebox.rules");
    let mut active = 0;
    let mut examples = 0;
    for (n, raw) in rules.lines().enumerate() {
        let n = n + 1;
        // Commented examples are checked too: they are meant to be uncommented.
        let (line, example) = match raw.strip_prefix('#') {
            Some(l) if l.starts_with("SUBSYSTEM") => (l, true),
            Some(_) => continue,
            None if raw.trim().is_empty() => continue,
            None => (raw, false),
        };
        let terms = parse_rule(line).unwrap_or_else(|e| panic!("line {n}: {e}"));
        for t in &terms {
            let bare = t.key.split('{').next().unwrap_or_default();
            assert!(KEYS.contains(&bare), "line {n}: unknown key {}", t.key);
            match bare {
                "GROUP" => assert!(
                    groups.contains(&t.value),
                    "line {n}: group {} is not in the unit's SupplementaryGroups",
                    t.value
                ),
                "MODE" => assert_eq!(t.value, "0660", "line {n}"),
                "SYMLINK" => assert!(t.value.starts_with("storebox/"), "line {n}"),
                _ => {}
            }
        }
        assert!(
            terms.iter().any(|t| t.op == "==") && terms.iter().any(|t| t.op != "=="),
            "line {n}: a rule needs a match and an assignment"
        );
        if example {
            examples += 1;
        } else {
            active += 1;
        }
    }
    assert!(
        active >= 4 && examples >= 4,
        "{active} rules, {examples} examples"
    );
}

#[test]
fn the_modules_are_the_ones_device_allow_needs() {
    let unit = read("storebox.service");
    let modules = read("storebox-modules.conf");
    let listed: Vec<&str> = modules
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    // The driver that registers each hot-plugged class of DeviceAllow=.
    for (class, module) in [("char-ttyUSB", "usbserial"), ("char-ttyACM", "cdc_acm")] {
        assert!(unit.contains(&format!("DeviceAllow={class} rw")), "{class}");
        assert!(listed.contains(&module), "{module} is not loaded at boot");
    }
}
