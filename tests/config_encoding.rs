//! A config saved by a Windows editor: Notepad's "ANSI" (GBK on a Chinese Windows,
//! Windows-1252 on a Western one), its "Unicode" (UTF-16 with a BOM), UTF-8 with a BOM, CRLF
//! line ends. The last two are read as they are; the others are refused by `check-config` and
//! by `run` alike, with the line where the text stops being UTF-8 and what to do — not only
//! "stream did not contain valid UTF-8".

mod common;

use std::path::Path;

use common::*;

fn both(config: &Path) -> Vec<(Option<i32>, String)> {
    let path = config.to_str().unwrap();
    [vec!["check-config", path], vec!["run", "--config", path]]
        .iter()
        .map(|args| {
            let out = storebox(args);
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

#[test]
fn a_config_not_in_utf8_is_refused_with_its_line_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("data"), "");
    let line = text
        .lines()
        .position(|l| l.contains("上海南京西路店"))
        .unwrap()
        + 1;
    let gbk = encoding_rs::GBK.encode(&text).0.into_owned();
    let cp1252 = encoding_rs::WINDOWS_1252
        .encode(&text.replace("上海南京西路店", "Café Müller"))
        .0
        .into_owned();
    let mut utf16 = vec![0xff, 0xfe];
    utf16.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    for (name, bytes, said) in [
        ("gbk.toml", gbk, format!("line {line}")),
        ("cp1252.toml", cp1252, format!("line {line}")),
        ("utf16.toml", utf16, "UTF-16".to_string()),
    ] {
        let config = dir.path().join(name);
        std::fs::write(&config, bytes).unwrap();
        for (code, err) in both(&config) {
            assert_eq!(code, Some(2), "{name}: {err}");
            assert!(err.contains(name), "{name}: {err}");
            assert!(err.contains(&said), "{name}: no {said:?} in {err}");
            assert!(err.contains("save it as UTF-8"), "{name}: {err}");
        }
    }
}

#[test]
fn a_utf8_config_with_a_bom_and_crlf_line_ends_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("data"), "");
    let config = dir.path().join("windows.toml");
    std::fs::write(
        &config,
        format!("\u{feff}{}", text.trim_start().replace('\n', "\r\n")),
    )
    .unwrap();
    let out = storebox(&["check-config", config.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = Daemon::start_with(dir.path(), &config);
    assert!(d.log_text().contains("store=sh-001"), "{}", d.log_text());
    d.terminate();
}
