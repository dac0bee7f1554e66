//! The receipt printers' paper: a FIFO standing in for each USB printer, the slips read back
//! off it, and the receipts and refund slips held against the sales and refunds they print.

use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::Book;
use crate::common::Daemon;

fn i(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap()
}

/// A FIFO standing in for a USB printer (`/dev/usb/lp*`): a thread of the test holds both
/// ends and keeps all the printer took, across the daemon's restarts and reopenings.
pub struct Lp {
    pub path: std::path::PathBuf,
    taken: std::sync::Arc<Mutex<Vec<u8>>>,
}

impl Lp {
    pub fn new(dir: &std::path::Path, name: &str) -> Lp {
        let path = dir.join(name);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let taken = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = taken.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 65536];
            while let Ok(n) = fifo.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Lp { path, taken }
    }

    /// Everything printed so far.
    pub fn paper(&self) -> Vec<u8> {
        self.taken.lock().unwrap().clone()
    }
}

/// The slips on a printer's paper, in order, each as its printed lines.
pub fn slips(bytes: &[u8]) -> Vec<Vec<String>> {
    use storebox::devices::decode::{Mark, decode};
    let paper = decode(bytes);
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for m in &paper.timeline {
        match m {
            Mark::Line(i) => cur.push(paper.lines[*i].clone()),
            Mark::Cut => out.push(std::mem::take(&mut cur)),
            _ => {}
        }
    }
    out
}

/// The value printed after `label` on a slip's line that begins with it.
pub fn printed<'a>(slip: &'a [String], label: &str) -> Option<&'a str> {
    slip.iter()
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
}

/// `￥12.90`, `-￥3.00` → minor units.
pub fn yuan(text: &str) -> i64 {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, text),
    };
    let digits: String = rest
        .trim_start_matches('￥')
        .chars()
        .filter(|c| *c != '.')
        .collect();
    sign * digits
        .parse::<i64>()
        .unwrap_or_else(|_| panic!("money {text:?}"))
}

/// The slips both printers put out.
pub fn paper(lps: &[Lp]) -> Vec<Vec<String>> {
    lps.iter().flat_map(|lp| slips(&lp.paper())).collect()
}

/// Waits until the printers have put out `n` slips.
pub async fn wait_paper(d: &Daemon, lps: &[Lp], n: usize) {
    for _ in 0..600 {
        if paper(lps).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = d.log_text();
    let log: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("print"))
        .map(|l| &l[..l.len().min(300)])
        .collect::<Vec<_>>();
    panic!(
        "{} of {n} slips printed; log:\n{}",
        paper(lps).len(),
        log.join("\n")
    );
}

/// The last 8 alphanumerics of an id, upper case, as a slip prints it.
fn short(id: &Value) -> String {
    let a: Vec<char> = id
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    a[a.len() - 8..]
        .iter()
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The paper: one receipt per sale and one slip per refund, each printing the recorded figures.
pub fn receipts(book: &Book, all: &[Vec<String>]) {
    let methods = [
        "现金 Cash",
        "银行卡 Card",
        "微信 WeChat",
        "支付宝 Alipay",
        "储值 Stored value",
        "其他 Other",
    ];
    for s in &book.sales {
        let no = format!("#{} {}", seq(s), short(&s["id"]));
        let found: Vec<&Vec<String>> = all
            .iter()
            .filter(|p| printed(p, "单号 No.") == Some(no.as_str()))
            .collect();
        assert_eq!(found.len(), 1, "receipts of sale {no}");
        let p = found[0];
        let money = |label: &str| printed(p, label).map(yuan);
        assert_eq!(money("小计 Subtotal"), Some(i(&s["subtotal"])), "{p:#?}");
        assert_eq!(money("合计 Total"), Some(i(&s["total"])), "{p:#?}");
        assert_eq!(money("实收 Paid"), Some(i(&s["paid"])), "{p:#?}");
        let tendered: i64 = p
            .iter()
            .filter_map(|l| methods.iter().find_map(|m| l.strip_prefix(m)))
            .map(|v| yuan(v.trim()))
            .sum();
        assert_eq!(tendered, i(&s["paid"]), "{p:#?}");
        if let Some(change) = money("找零 Change") {
            assert_eq!(change, i(&s["change"]), "{p:#?}");
        }
        if i(&s["points_redeemed"]) > 0 {
            let used = printed(p, "积分抵扣 Points used").unwrap_or_default();
            let want = format!("{} ", s["points_redeemed"]);
            assert!(used.starts_with(&want), "{used:?} {p:#?}");
            assert_eq!(
                yuan(used.split_whitespace().last().unwrap()),
                -i(&s["points_value"])
            );
        }
        if !s["member"].is_null() {
            assert_eq!(
                printed(p, "本次积分 Points earned"),
                Some(format!("+{}", s["points_earned"]).as_str())
            );
            assert_eq!(
                printed(p, "积分余额 Points balance"),
                Some(s["member"]["points"].to_string().as_str())
            );
            assert_eq!(
                printed(p, "恭喜升级 Upgraded to").is_some(),
                !s["member"]["upgraded_to"].is_null()
            );
        }
    }
    for r in &book.refunds {
        let no = format!("#{} {}", seq(r), short(&r["id"]));
        let found: Vec<&Vec<String>> = all
            .iter()
            .filter(|p| printed(p, "退款号 Refund No.") == Some(no.as_str()))
            .collect();
        assert_eq!(found.len(), 1, "slips of refund {no}");
        let p = found[0];
        assert_eq!(
            printed(p, "退货金额 Returned").map(yuan),
            Some(i(&r["amount"])),
            "{p:#?}"
        );
        assert_eq!(
            printed(p, "退款合计 Refund total").map(yuan),
            Some(i(&r["refund_total"])),
            "{p:#?}"
        );
    }
    let expected = book.sales.len() + book.refunds.len();
    assert_eq!(all.len(), expected, "slips on paper");
}

/// Each refund slip prints the points given back and taken, and the balance after.
pub fn refund_slips(book: &Book, all: &[Vec<String>]) {
    for r in book.refunds.iter().filter(|r| !r["member"].is_null()) {
        let no = format!("#{} ", r["seq"]);
        let p = all
            .iter()
            .find(|p| printed(p, "退款号 Refund No.").is_some_and(|v| v.starts_with(&no)))
            .expect("refund slip");
        let balance = printed(p, "积分余额 Points balance");
        assert_eq!(
            balance,
            Some(r["member"]["points"].to_string().as_str()),
            "{p:#?}"
        );
        let back = printed(p, "退还积分 Points returned").map(str::to_string);
        let want = (i(&r["points_restored"]) != 0).then(|| format!("+{}", r["points_restored"]));
        assert_eq!(back, want, "{p:#?}");
        let taken = printed(p, "扣回积分 Points taken back").map(str::to_string);
        let want = (i(&r["points_reversed"]) != 0).then(|| format!("-{}", r["points_reversed"]));
        assert_eq!(taken, want, "{p:#?}");
    }
}
