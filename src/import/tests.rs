//! Tests of the CSV import: decoding, rows, duplicates, refusals.

use super::*;

fn gbk(text: &str) -> Vec<u8> {
    encoding_rs::GB18030.encode(text).0.into_owned()
}

#[test]
fn a_utf8_file_with_stray_bytes_is_read_as_utf8_listing_each_bad_line_once() {
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice("姓名,手机号码\n张三,13900000000\n李".as_bytes());
    bytes.extend_from_slice(b"\xff\xfe,13900000001\n\xe5\x9b,13900000002\n");
    let d = decode(bytes.clone(), Encoding::Auto);
    assert_eq!(d.encoding, "utf-8");
    assert!(d.text.starts_with("姓名,手机号码\n张三,"), "{}", d.text);
    let bad: Vec<(u64, String)> = d.bad.iter().map(|b| (b.at, b.hex())).collect();
    let first = d.text.find('\u{FFFD}').unwrap_or_default() as u64;
    let last = d.text.rfind('\u{FFFD}').unwrap_or_default() as u64;
    assert_eq!(
        bad,
        [(first, "FF".into()), (last, "E5 9B".into())],
        "{}",
        d.text
    );
    // Forced UTF-8 reads the same.
    assert_eq!(decode(bytes.clone(), Encoding::Utf8).bad, d.bad);
}

#[test]
fn a_gbk_file_is_read_as_gbk_even_with_pairs_that_are_valid_utf8() {
    // 露 is C2 B6 in GBK, a valid UTF-8 sequence (¶).
    let text = "姓名,手机号码\n露露,13900000000\n张三,13900000001\n王芳,13900000002\n";
    let bytes = gbk(text);
    assert!(std::str::from_utf8(&bytes).is_err());
    assert!(!mostly_utf8(&bytes));
    let d = decode(bytes.clone(), Encoding::Auto);
    assert_eq!((d.encoding, d.text.as_str()), ("gbk", text));
    assert!(d.bad.is_empty(), "{:?}", d.bad);
}

#[test]
fn mostly_utf8_needs_valid_multibyte_characters_outnumbering_the_bad_bytes() {
    assert!(
        !mostly_utf8(b"name,phone\nab\xff,1\n"),
        "no multi-byte UTF-8"
    );
    assert!(mostly_utf8(b"\xe5\xbc\xa0\xff\xe4\xb8\x89"), "张 FF 三");
    assert!(
        !mostly_utf8(b"\xe5\xbc\xa0\xff\xfe\xfd"),
        "one valid, three bad"
    );
    let d = decode(
        b"\xEF\xBB\xBFname,phone\nab\xff,1\n".to_vec(),
        Encoding::Auto,
    );
    assert_eq!((d.encoding, d.bad.len()), ("utf-8", 1), "a BOM says UTF-8");
}

#[test]
fn malformed_gbk_bytes_are_listed_by_line() {
    let mut bytes = gbk("姓名,手机号码\n张三,13900000000\n");
    bytes.extend_from_slice(b"\x81,13900000001\n");
    bytes.extend(gbk("李四,13900000002\n"));
    let d = decode(bytes.clone(), Encoding::Gbk);
    assert_eq!(d.encoding, "gbk");
    assert_eq!(d.bad.len(), 1, "{:?}", d.bad);
    assert_eq!(d.bad[0].hex(), "81");
    assert!(d.text.ends_with("\u{FFFD},13900000001\n李四,13900000002\n"));
}

#[test]
fn rows_with_bad_bytes_are_refused_by_line_and_the_others_read() {
    let mut bytes = "姓名,手机号码\n张三,13900000000\n\"李\n"
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice(b"\xff\",13900000001\n");
    bytes.extend_from_slice("王五,13900000002\n".as_bytes());
    let d = decode(bytes.clone(), Encoding::Utf8);
    let mut rows = match Rows::open(&d, &[]) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let (good, bad) = rows.next_chunk(10);
    let lines: Vec<u64> = good.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 5]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    // The record starts on line 3; its bad byte is on line 4.
    assert_eq!(bad[0].0, 3);
    assert!(
        bad[0].1.contains("UTF-8") && bad[0].1.contains("--encoding gbk"),
        "{}",
        bad[0].1
    );
}

#[test]
fn a_header_with_bad_bytes_is_refused() {
    let d = decode(b"name,ph\xffone\nx,13900000000\n".to_vec(), Encoding::Utf8);
    let Err(e) = Rows::open(&d, &[]) else {
        panic!("opened");
    };
    assert!(e.contains("header") && e.contains("FF"), "{e}");
}

fn a_config(dir: &Path) -> crate::config::Config {
    let text = format!(
        "[store]\nid = \"sh-001\"\nname = \"店\"\nenvironment = \"development\"\n[storage]\ndir = \"{}\"\n",
        dir.display()
    );
    crate::config::Config::parse(Path::new("test.toml"), &text).unwrap()
}

/// A row the ledger refuses (its card is a member's known before the import) imports
/// nobody: the corrected row after it is no duplicate of it, and is imported.
#[tokio::test]
async fn a_row_the_ledger_refused_does_not_block_its_corrected_repeat() {
    let root = tempfile::tempdir().unwrap();
    let config = a_config(&root.path().join("data"));
    let first = root.path().join("first.csv");
    std::fs::write(&first, "name,phone,card_no\n老会员,13800000001,VIP0001\n").unwrap();
    let s = import(&config, &first, Encoding::Utf8, &[], CHUNK, |_| {})
        .await
        .unwrap();
    assert_eq!(s.report.added, 1, "{:?}", s.report);
    let second = root.path().join("second.csv");
    std::fs::write(
        &second,
        "name,phone,card_no\n张三,13900000000,VIP0001\n张三,13900000000,VIP0002\n",
    )
    .unwrap();
    let s = import(&config, &second, Encoding::Utf8, &[], CHUNK, |_| {})
        .await
        .unwrap();
    assert_eq!(s.report.added, 1, "{:?}", s.report);
    assert_eq!(s.report.rejected.len(), 1, "{:?}", s.report);
    assert!(
        s.report.rejected[0].1.contains("another member"),
        "{:?}",
        s.report
    );
}

/// A restore killed before it settled the journal leaves `restore.incomplete`: an import
/// refuses the directory as the daemon does (its events would number on from the backup).
#[tokio::test]
async fn an_import_refuses_a_half_restored_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let config = a_config(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    crate::security::StoreKeys::load_or_create(&config.key_path()).unwrap();
    drop(crate::journal::Journal::open(&dir, "sh-001").unwrap());
    std::fs::write(dir.join(crate::backup::RESTORING), b"").unwrap();
    let csv = root.path().join("m.csv");
    std::fs::write(&csv, "name,phone\n张三,13900000000\n").unwrap();
    let err = import(&config, &csv, Encoding::Utf8, &[], CHUNK, |_| {})
        .await
        .err()
        .map(|e| format!("{e:#}"));
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("was interrupted")),
        "{err:?}"
    );
    let last = crate::journal::Journal::open(&dir, "sh-001")
        .unwrap()
        .last_seq();
    assert_eq!(last, 0);
}

/// Files with Windows line ends (CRLF, as Excel on Windows writes them) and old-Mac ones (a lone
/// CR, Excel's "CSV (Macintosh)"): each row is reported by its own line, as an editor numbers
/// it, and every row with invalid bytes is refused — not only a CR file's first, the others
/// imported with U+FFFD in their name.
#[test]
fn rows_are_numbered_and_bad_bytes_found_whatever_the_line_ends() {
    for end in ["\r\n", "\r", "\n"] {
        for (enc, text) in [
            (
                Encoding::Utf8,
                (|t: &str| t.as_bytes().to_vec()) as fn(&str) -> Vec<u8>,
            ),
            (Encoding::Gbk, gbk),
        ] {
            let mut bytes = text(&format!("姓名,手机号码{end}张三,13900000000{end}李"));
            bytes.extend_from_slice(b"\xff,13900000001");
            bytes.extend(text(end));
            bytes.extend_from_slice(b"\xff\xff,13900000002");
            bytes.extend(text(&format!(
                "{end}王五,1390000000{end}\"赵{end}六\",13900000004{end}"
            )));
            let d = decode(bytes.clone(), enc);
            let mut rows = match Rows::open(&d, &[]) {
                Ok(r) => r,
                Err(e) => panic!("{e}"),
            };
            let (good, bad) = rows.next_chunk(10);
            let good: Vec<(u64, String)> = good.into_iter().map(|(l, r)| (l, r.name)).collect();
            let case = format!("{enc:?} {end:?}");
            assert_eq!(
                good,
                [
                    (2, "张三".to_string()),
                    (5, "王五".to_string()),
                    (6, "赵\n六".to_string())
                ],
                "{case}"
            );
            let lines: Vec<u64> = bad.iter().map(|(l, _)| *l).collect();
            assert_eq!(lines, [3, 4], "{case}: {bad:?}");
        }
    }
}

/// A file saved as GB18030 with its byte-order mark (84 31 95 33): the mark is not part of the
/// first column's name (the import refused the file: "no name column").
#[test]
fn a_gb18030_byte_order_mark_is_not_part_of_the_header() {
    for enc in [Encoding::Gbk, Encoding::Auto] {
        let mut bytes = b"\x84\x31\x95\x33".to_vec();
        bytes.extend(gbk("姓名,手机号码\n张三,13900000000\n"));
        let d = decode(bytes.clone(), enc);
        assert!(d.text.starts_with("姓名"), "{enc:?}: {:?}", d.text);
        let mut rows = match Rows::open(&d, &[]) {
            Ok(r) => r,
            Err(e) => panic!("{enc:?}: {e}"),
        };
        let (good, bad) = rows.next_chunk(10);
        assert_eq!((good.len(), bad.len()), (1, 0), "{enc:?}");
    }
}
