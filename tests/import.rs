//! `storebox members import` through the real binary: a GBK file from a spreadsheet with bad
//! rows, duplicates and a known member.

mod common;

use common::*;
use serde_json::json;

/// How many members a lookup by `phone` finds.
async fn members_with_phone(d: &Daemon, token: &str, phone: &str) -> usize {
    let (status, v) = d.get(token, &format!("/v1/members?phone={phone}")).await;
    assert_eq!(status, 200, "{phone}: {v}");
    v["members"]
        .as_array()
        .map(Vec::len)
        .unwrap_or_else(|| panic!("{phone}: no member list in {v}"))
}

#[tokio::test]
async fn a_gbk_file_imports_its_good_rows_and_names_each_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let known = d
        .register(&t, "老会员", "13800000001", json!({"tags": ["老客"]}))
        .await;
    let config = d.config.clone();
    let config = config.to_str().unwrap().to_string();

    // While the daemon runs, an import is refused.
    let csv = dir.path().join("members.csv");
    std::fs::write(&csv, "姓名,手机号码\n张三,13900000000\n").unwrap();
    let out = storebox(&[
        "members",
        "import",
        "--config",
        &config,
        csv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be stopped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.terminate();

    let text = "\
姓名,手机号码,生日,性别,会员卡号,标签,营销同意
张三,139 0000 0000,1988-03-04,男,VIP0001,常客;茶叶,是
李四,+86 139-0000-0001,1990/12/01,女,,,否
王五,12345,,,,,
,13900000003,,,,,
赵六,13900000004,1990-13-40,,,,
张三,13900000000,,,,团购,
钱七,13800000001,1975-06-01,,VIP0002,新标签,
孙八,13900000005,,外星,,,
周九,13900000006,,,VIP0001,,
";
    let (gbk, _, _) = encoding_rs::GB18030.encode(text);
    std::fs::write(&csv, &gbk).unwrap();
    let out = storebox(&[
        "members",
        "import",
        "--config",
        &config,
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("10 rows") || stdout.contains("9 rows"),
        "{stdout}"
    );
    assert!(stdout.contains("(gbk)"), "{stdout}");
    assert!(stdout.contains("2 added"), "{stdout}");
    // Only the known member merges: line 7 repeats line 2's phone, line 10 its card.
    assert!(stdout.contains("1 merged"), "{stdout}");
    for (line, what) in [
        (4, "phone"),
        (5, "name"),
        (6, "birthday"),
        (7, "phone: duplicate of line 2"),
        (9, "gender"),
        (10, "card_no: duplicate of line 2"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("line {line}: ")) && l.contains(what)),
            "line {line} ({what}) not reported:\n{stdout}"
        );
    }
    assert!(stdout.contains("6 refused"), "{stdout}");

    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(MANAGER).await;
    let (_, v) = d.get(&t, "/v1/members?phone=13900000000").await;
    let m = &v["members"][0];
    assert_eq!(m["name"], "张三", "{v}");
    assert_eq!(m["birthday"], "1988-03-04");
    assert_eq!(m["gender"], "male");
    assert_eq!(m["card_no"], "VIP0001");
    assert_eq!(m["consent"]["marketing"], true);
    let tags: Vec<&str> = m["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["常客", "茶叶"], "the duplicate row changed nothing");
    let (_, v) = d.get(&t, "/v1/members?phone=13900000001").await;
    assert_eq!(v["members"][0]["name"], "李四");
    assert_eq!(v["members"][0]["birthday"], "1990-12-01");
    // The known member keeps their name and gains what they lacked.
    let (_, m) = d.get(&t, &format!("/v1/members/{known}")).await;
    assert_eq!(m["name"], "老会员");
    assert_eq!(m["birthday"], "1975-06-01");
    assert_eq!(m["card_no"], "VIP0002");
    let tags: Vec<&str> = m["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, ["老客", "新标签"]);
    for phone in ["13900000003", "13900000004", "13900000005", "13900000006"] {
        assert_eq!(members_with_phone(&d, &t, phone).await, 0, "{phone}");
    }
    d.terminate();

    // Importing the same file again adds nothing.
    let out = storebox(&[
        "members",
        "import",
        "--config",
        &config,
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("0 added, 0 merged"), "{stdout}");
}

#[test]
fn an_unknown_header_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), "")).unwrap();
    let csv = dir.path().join("m.csv");
    std::fs::write(&csv, "\u{feff}客户,联系方式\n张三,13900000000\n").unwrap();
    let c = config.to_str().unwrap();
    let out = storebox(&["members", "import", "--config", c, csv.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--map"));
    let out = storebox(&[
        "members",
        "import",
        "--config",
        c,
        "--map",
        "name=客户",
        "--map",
        "phone=联系方式",
        csv.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 added"));
}

#[tokio::test]
async fn a_file_read_in_small_chunks_imports_the_same_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("storebox.toml");
    std::fs::write(&config_path, config_text(&dir.path().join("data"), "")).unwrap();
    let config = storebox::config::Config::load(&config_path).unwrap();
    // Eight data rows and a blank line, read three at a time: the duplicate of line 2 comes two
    // chunks later and is refused as one, not merged into the member the first chunk added;
    // the bad rows fall in different chunks and keep their line numbers.
    let csv = dir.path().join("m.csv");
    std::fs::write(
        &csv,
        "姓名,手机号码,标签\n\
         张三,13900000000,常客\n\
         李四,13900000001,\n\
         王五,12345,\n\
         \n\
         赵六,13900000002,\n\
         ,13900000003,\n\
         钱七,13900000004,\n\
         张三,13900000000,团购\n\
         孙八,1390000000x,\n",
    )
    .unwrap();
    let mut calls = Vec::new();
    let summary = storebox::import::import(
        &config,
        &csv,
        storebox::import::Encoding::Auto,
        &[],
        3,
        |p| calls.push(p),
    )
    .await
    .unwrap();
    assert_eq!(summary.rows, 8);
    let rows: Vec<u64> = calls.iter().map(|p| p.rows).collect();
    assert_eq!(rows, [3, 6, 8], "progress after each chunk: {calls:?}");
    let pcts: Vec<u64> = calls.iter().map(|p| p.percent()).collect();
    assert!(pcts.is_sorted() && pcts[0] > 0, "{calls:?}");
    assert!(pcts[1] < 100, "{calls:?}");
    assert!(calls[2].finished() && pcts[2] == 100, "{calls:?}");
    let r = &summary.report;
    assert_eq!((r.added, r.merged, r.unchanged), (4, 0, 0), "{r:?}");
    let lines: Vec<u64> = r.rejected.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [4, 7, 9, 10], "{:?}", r.rejected);
    assert_eq!(
        r.rejected[2].1, "phone: duplicate of line 2",
        "{:?}",
        r.rejected
    );

    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(MANAGER).await;
    let (_, v) = d.get(&t, "/v1/members?phone=13900000000").await;
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["members"][0]["tags"], json!(["常客"]), "{v}");
    for phone in ["13900000001", "13900000002", "13900000004"] {
        assert_eq!(members_with_phone(&d, &t, phone).await, 1, "{phone}");
    }
    d.terminate();
}

/// A store's config under `dir` (data in `dir/data`) and a CSV file holding `text`.
fn store_and_file(
    dir: &std::path::Path,
    text: &str,
) -> (storebox::config::Config, std::path::PathBuf) {
    let config_path = dir.join("storebox.toml");
    std::fs::write(&config_path, config_text(&dir.join("data"), "")).unwrap();
    let csv = dir.join("m.csv");
    std::fs::write(&csv, text).unwrap();
    (storebox::config::Config::load(&config_path).unwrap(), csv)
}

/// Imports `csv` through the library, 15 rows a chunk.
async fn import_by_15(
    config: &storebox::config::Config,
    csv: &std::path::Path,
) -> storebox::import::Summary {
    storebox::import::import(
        config,
        csv,
        storebox::import::Encoding::Auto,
        &[],
        15,
        |_| {},
    )
    .await
    .unwrap()
}

/// An import that stops after some chunks committed but before the sorted index entries were
/// written (power cut, kill -9) leaves its marker in the cache: the next import (or the
/// daemon's next start) moves that cache aside, rebuilds it from the journal and asks HQ for
/// its master data again; every imported member is found by phone, card and phone tail.
#[tokio::test]
async fn members_of_an_import_stopped_before_its_index_entries_are_found_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut text = String::from("姓名,手机号码,会员卡号\n");
    for i in 0..40 {
        text.push_str(&format!("会员{i},1390000{i:04},CARD{i:04}\n"));
    }
    let (config, csv) = store_and_file(dir.path(), &text);
    let summary = import_by_15(&config, &csv).await;
    assert_eq!(summary.report.added, 40);

    // The state such a stop leaves: the members' rows and the marker, no index entries.
    {
        let cache = rusqlite::Connection::open(data.join("cache.sqlite3")).unwrap();
        cache
            .execute_batch(
                "DELETE FROM idx_phone; DELETE FROM idx_card; DELETE FROM idx_tail;
                 DELETE FROM idx_name;
                 INSERT INTO meta (key, value) VALUES ('bulk_index', 'deferred');",
            )
            .unwrap();
    }
    // The operator runs the import again, with one more row.
    std::fs::write(
        &csv,
        "姓名,手机号码,会员卡号\n会员0,13900000000,CARD0000\n会员40,13900000040,CARD0040\n",
    )
    .unwrap();
    let again = import_by_15(&config, &csv).await;
    let r = &again.report;
    assert_eq!((r.added, r.unchanged), (1, 1), "{r:?}");
    let resyncs = common::cache_rebuilt_resyncs(&data);
    assert_eq!(resyncs, 1, "HQ is asked for what only the cache held");

    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(MANAGER).await;
    for i in [0, 17, 39, 40] {
        let phone = format!("1390000{i:04}");
        assert_eq!(members_with_phone(&d, &t, &phone).await, 1, "{phone}");
        let (status, v) = d.get(&t, &format!("/v1/members?card=CARD{i:04}")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["members"][0]["phone"], phone, "{v}");
        let (_, v) = d.get(&t, &format!("/v1/members?phone_tail={i:04}")).await;
        assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{i}: {v}");
    }
    d.terminate();
    assert!(
        std::fs::read_dir(&data)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("cache.broken-")),
        "the unusable cache was kept aside"
    );
}

/// A phone tail or a name that more members share than a lookup returns (50) says so, so the
/// till can ask for the whole phone number instead of showing a partial list as the answer.
#[tokio::test]
async fn a_lookup_with_more_matches_than_it_returns_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("姓名,手机号码\n");
    for i in 0..52 {
        text.push_str(&format!("王伟,139{i:04}4321\n"));
    }
    text.push_str("李娜,13900001234\n");
    let (config, csv) = store_and_file(dir.path(), &text);
    assert_eq!(import_by_15(&config, &csv).await.report.added, 53);

    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    for query in ["phone_tail=4321", "q=王伟"] {
        let (s, v) = d.get(&t, &format!("/v1/members?{query}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["members"].as_array().map(Vec::len), Some(50), "{query}");
        assert_eq!(v["truncated"], true, "{query}");
    }
    for query in ["phone_tail=1234", "q=李娜", "phone=13900001234"] {
        let (s, v) = d.get(&t, &format!("/v1/members?{query}")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{query}");
        assert_eq!(v.get("truncated"), None, "{query}");
    }
    d.terminate();
}

/// Runs `storebox members import` on `csv` with `extra` arguments; returns the exit code and
/// what it printed.
fn run_import(config: &std::path::Path, csv: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let config = config.to_str().unwrap();
    let mut args = vec!["members", "import", "--config", config];
    args.extend_from_slice(extra);
    args.push(csv.to_str().unwrap());
    let out = storebox(&args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The line of the import's output about `line` of the file, if it was refused.
fn refusal(out: &str, line: u64) -> Option<&str> {
    out.lines()
        .find(|l| l.starts_with(&format!("line {line}: ")))
}

/// A UTF-8 file with one stray byte is read as UTF-8, not as GBK (which turned every name into
/// mojibake): the line holding the byte is refused, naming the line and `--encoding`, and the
/// other rows are imported. With `--encoding utf-8`, such a line is refused too, not imported
/// with U+FFFD in place of the byte.
#[tokio::test]
async fn a_utf8_file_with_a_stray_byte_stays_utf8_and_refuses_only_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("storebox.toml");
    std::fs::write(&config, config_text(&dir.path().join("data"), "")).unwrap();
    let csv = dir.path().join("m.csv");

    let mut bytes = "姓名,手机号码,标签\n张三,13900000000,常客\n"
        .as_bytes()
        .to_vec();
    bytes.extend_from_slice("李".as_bytes());
    bytes.extend_from_slice(b"\xff,13900000001,\n");
    bytes.extend_from_slice("王五,13900000002,茶叶\n".as_bytes());
    std::fs::write(&csv, &bytes).unwrap();
    let (code, out) = run_import(&config, &csv, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("(utf-8)"), "{out}");
    assert!(out.contains("2 added"), "{out}");
    assert!(out.contains("1 refused"), "{out}");
    let l3 = refusal(&out, 3).unwrap_or_else(|| panic!("line 3 not refused:\n{out}"));
    assert!(l3.contains("UTF-8") && l3.contains("--encoding"), "{l3}");
    assert!(
        refusal(&out, 2).is_none() && refusal(&out, 4).is_none(),
        "{out}"
    );

    // Forced UTF-8: the bad line is refused, not imported with a replacement character.
    let mut bytes = "姓名,手机号码\n".as_bytes().to_vec();
    bytes.extend_from_slice(b"\xe8\xb5\xb5\xc0,13900000003\n");
    bytes.extend_from_slice("钱七,13900000004\n".as_bytes());
    std::fs::write(&csv, &bytes).unwrap();
    let (code, out) = run_import(&config, &csv, &["--encoding", "utf-8"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("1 added"), "{out}");
    let l2 = refusal(&out, 2).unwrap_or_else(|| panic!("line 2 not refused:\n{out}"));
    assert!(l2.contains("UTF-8") && l2.contains("--encoding"), "{l2}");

    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(MANAGER).await;
    for (phone, name) in [
        ("13900000000", "张三"),
        ("13900000002", "王五"),
        ("13900000004", "钱七"),
    ] {
        let (_, v) = d.get(&t, &format!("/v1/members?phone={phone}")).await;
        assert_eq!(v["members"][0]["name"], name, "{v}");
    }
    for phone in ["13900000001", "13900000003"] {
        assert_eq!(members_with_phone(&d, &t, phone).await, 0, "{phone}");
    }
    d.terminate();
}

/// Two rows of one file with the same phone (or card number): the later one is refused as a
/// duplicate of the earlier and changes nothing; the merge into a member is for members known
/// before the import. The same file imported again is a new import: its rows count as
/// unchanged, its duplicates are refused again.
#[tokio::test]
async fn a_phone_or_card_repeated_within_one_file_is_refused_as_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let known = d.register(&t, "老会员", "13800000001", json!({})).await;
    let config = d.config.clone();
    d.terminate();

    let csv = dir.path().join("m.csv");
    let text = "\
姓名,手机号码,生日,性别,会员卡号
张三,13900000000,,,
李四,13900000000,1991-07-07,女,VIP9999
王五,13900000002,,,VIP0002
赵六,13900000003,,,VIP0002
钱七,13800000001,1975-06-01,,
孙八,138 0000 0001,,男,VIP0008
";
    std::fs::write(&csv, text).unwrap();
    let (code, out) = run_import(&config, &csv, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("2 added, 1 merged into known members, 0 unchanged, 3 refused"),
        "{out}"
    );
    for (line, reason) in [
        (3, "phone: duplicate of line 2"),
        (5, "card_no: duplicate of line 4"),
        (7, "phone: duplicate of line 6"),
    ] {
        assert_eq!(
            refusal(&out, line),
            Some(format!("line {line}: {reason}").as_str()),
            "{out}"
        );
    }

    // The file imported again (as after a stop midway): nothing added or merged twice.
    let (code, again) = run_import(&config, &csv, &[]);
    assert_eq!(code, 1, "{again}");
    assert!(
        again.contains("0 added, 0 merged into known members, 3 unchanged, 3 refused"),
        "{again}"
    );

    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(MANAGER).await;
    let (_, v) = d.get(&t, "/v1/members?phone=13900000000").await;
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1), "{v}");
    let m = &v["members"][0];
    assert_eq!(m["name"], "张三", "{v}");
    assert!(m.get("birthday").is_none_or(|b| b.is_null()), "{v}");
    assert!(m.get("card_no").is_none_or(|c| c.is_null()), "{v}");
    assert_eq!(m["gender"], "unknown", "{v}");
    for card in ["VIP9999", "VIP0008"] {
        let (status, v) = d.get(&t, &format!("/v1/members?card={card}")).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["members"].as_array().map(Vec::len),
            Some(0),
            "{card}: {v}"
        );
    }
    let (_, v) = d.get(&t, "/v1/members?card=VIP0002").await;
    assert_eq!(v["members"][0]["name"], "王五", "{v}");
    assert_eq!(members_with_phone(&d, &t, "13900000003").await, 0);
    // The known member merged line 6 only.
    let (_, m) = d.get(&t, &format!("/v1/members/{known}")).await;
    assert_eq!(m["name"], "老会员", "{m}");
    assert_eq!(m["birthday"], "1975-06-01", "{m}");
    assert_eq!(m["gender"], "unknown", "{m}");
    assert!(m.get("card_no").is_none_or(|c| c.is_null()), "{m}");
    d.terminate();
}
