use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

const MINIMAL: &str = r#"
[store]
id = "sh-001"
name = "测试店"
environment = "development"
"#;

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let result = Config::load(&path);
        if name.starts_with("invalid-") {
            assert!(result.is_err(), "{name} should be rejected");
        } else {
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        n += 1;
    }
    assert!(n >= 1);
}

#[test]
fn minimal_config_takes_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.store.timezone, chrono_tz::Asia::Shanghai);
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.membership, crate::domain::rules::Rules::default());
    assert_eq!(c.storage.idempotency_days, 30);
}

#[test]
fn errors_name_the_key_and_reason() {
    let e = parse(&format!("{MINIMAL}\n[http]\nlisten = \"nowhere\"\n")).unwrap_err();
    assert_eq!(e.key, "http.listen");
    assert!(e.to_string().starts_with("test.toml: http.listen: "), "{e}");

    let e = parse(&MINIMAL.replace("[store]", "[store]\ncolour = \"red\"")).unwrap_err();
    assert_eq!(e.key, "store.colour");
    assert!(e.reason.contains("unknown field `colour`"), "{e}");
    assert!(e.reason.contains("line 3"), "{e}");

    let e = parse(&MINIMAL.replace("sh-001", "SH/001")).unwrap_err();
    assert_eq!(e.key, "store.id");

    let e = parse(&format!(
        "{MINIMAL}\n[[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"boss\"\npin = \"1234\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "staff[0].role");

    let e = parse("[store\nid=").unwrap_err();
    assert_eq!(e.key, "");
    assert!(e.reason.contains("line 1"), "{e}");
}

#[test]
fn production_refuses_plain_secrets() {
    let prod = MINIMAL.replace(
        "environment = \"development\"",
        "environment = \"production\"",
    );
    let e = parse(&format!(
        "{prod}\n[[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"cashier\"\npin = \"1234\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "staff[0].pin");
    let e = parse(&format!(
        "{prod}\n[[terminals]]\nid = \"pos-1\"\ntoken = \"0123456789abcdef\"\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "terminals[0].token");
    let ok = parse(&format!(
        "{prod}\n[[terminals]]\nid = \"pos-1\"\ntoken_sha256 = \"{}\"\n",
        hex::encode(token_hash("0123456789abcdef"))
    ))
    .unwrap();
    assert_eq!(ok.terminals[0].token_sha256, token_hash("0123456789abcdef"));
}

#[test]
fn membership_levels_are_validated() {
    let e = parse(&format!(
        "{MINIMAL}\n[membership]\nmax_redeem_percent = 150\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "membership.max_redeem_percent");
    let e = parse(&format!(
        "{MINIMAL}\n[[membership.levels]]\ncode = \"a\"\nname = \"A\"\nthreshold = 500\npoints_per_yuan = 1\n[[membership.levels]]\ncode = \"b\"\nname = \"B\"\nthreshold = 100\npoints_per_yuan = 1\n"
    ))
    .unwrap_err();
    assert_eq!(e.key, "membership");
    assert!(e.reason.contains("thresholds must increase"), "{e}");
}

#[test]
fn secrets_do_not_print() {
    let c = parse(&format!(
        "{MINIMAL}\n[[staff]]\nstaff_no = \"1\"\nname = \"a\"\nrole = \"cashier\"\npin = \"4321\"\n"
    ))
    .unwrap();
    let dump = format!("{c:?}");
    assert!(!dump.contains("4321"), "{dump}");
    assert!(dump.contains("MASKED"));
}
