//! `cargo bench --bench import`: imports a generated CSV of 1,000,000 members (GBK, as Excel on
//! Chinese Windows writes it, with a few bad rows and duplicates) into an empty store, and
//! prints the time and rate. Goal: under 60 s on the development machine.
//! `BENCH_MEMBERS` sets the number of rows, `BENCH_CHUNK` the rows per transaction (default:
//! what `storebox members import` uses).

mod support;

use std::io::Write;
use std::time::Instant;

fn main() {
    let n = support::env_or("BENCH_MEMBERS", 1_000_000);
    let chunk = support::env_or("BENCH_CHUNK", storebox::import::CHUNK as u64) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let path = dir.path().join("members.csv");
    let t = Instant::now();
    let mut text = String::with_capacity(n as usize * 64);
    text.push_str("姓名,手机号码,生日,性别,会员卡号,标签\n");
    let surnames = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"];
    for i in 0..n {
        let name = format!(
            "{}{}",
            surnames[(i % 10) as usize],
            ["芳", "伟", "娜", "敏", "静"][(i / 10 % 5) as usize]
        );
        // Every 1,000th row repeats a phone (refused as a duplicate); every 5,000th is a bad phone.
        let phone = if i % 5_000 == 4_999 {
            "12345".to_string()
        } else if i % 1_000 == 999 {
            format!("13{:09}", i - 1)
        } else {
            format!("13{i:09}")
        };
        let birthday = format!("19{:02}-{:02}-{:02}", 50 + i % 50, 1 + i % 12, 1 + i % 28);
        let gender = if i % 2 == 0 { "男" } else { "女" };
        text.push_str(&format!(
            "{name},{phone},{birthday},{gender},C{i:08},常客\n"
        ));
    }
    let gbk = encoding_rs::GB18030.encode(&text).0.into_owned();
    drop(text);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&gbk))
        .expect("write csv");
    println!(
        "generated {n} rows ({:.0} MiB GBK) in {:.1} s",
        gbk.len() as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    drop(gbk);

    let config_path = dir.path().join("storebox.toml");
    std::fs::write(&config_path, support::config_head(&data)).expect("config");
    let config = storebox::config::Config::load(&config_path).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let t = Instant::now();
    let summary = runtime
        .block_on(storebox::import::import(
            &config,
            &path,
            storebox::import::Encoding::Auto,
            &[],
            chunk,
            |_| {},
        ))
        .expect("import");
    let secs = t.elapsed().as_secs_f64();
    let r = &summary.report;
    println!(
        "imported {} rows ({}): {} added, {} merged, {} unchanged, {} refused",
        summary.rows,
        summary.encoding,
        r.added,
        r.merged,
        r.unchanged,
        r.rejected.len()
    );
    println!(
        "import of {n} members: {secs:.1} s, {:.0} rows/s (goal < 60 s: {})",
        n as f64 / secs,
        if secs < 60.0 { "met" } else { "missed" }
    );
    // Every file: the journal and the cache with their write-ahead logs.
    let size: u64 = std::fs::read_dir(&data)
        .expect("data directory")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "data directory after the import: {:.0} MiB",
        size as f64 / 1048576.0
    );
}
