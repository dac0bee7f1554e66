//! The end-of-day cash-up: what each payment method took and gave back, and the day's refunds. The drawer should hold
//! the cash taken (tendered minus change) less the cash given back; the card terminal, WeChat
//! and Alipay statements show theirs. Before, the sales report had only the store's totals and
//! a manager added up every sale's payments by hand.

mod common;

use common::*;
use serde_json::{Value, json};

fn pay(method: &str, amount: i64) -> Value {
    json!({"method": method, "amount": amount})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sales_report_gives_each_payment_method_s_takings() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "");
    let t = d.login(CASHIER).await;
    let tm = d.login(MANAGER).await;
    let sell = |sku: &str, qty: u32, payments: Vec<Value>| json!({"lines": [{"sku": sku, "qty": qty}], "payments": payments});
    // ¥12.90 paid with a ¥20 note: ¥7.10 change.
    let (s, a) = d.sale(&t, &sell("MILK", 1, vec![pay("cash", 2000)])).await;
    assert_eq!((s, a["change"].as_i64()), (201, Some(710)), "{a}");
    // ¥89.90: ¥50 on the card, the rest by WeChat.
    let (s, b) = d
        .sale(
            &t,
            &sell("RICE", 1, vec![pay("card", 5000), pay("wechat", 3990)]),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    // ¥250 by Alipay, refunded whole.
    let (s, c) = d
        .sale(&t, &sell("TEA", 1, vec![pay("alipay", 25000)]))
        .await;
    assert_eq!(s, 201, "{c}");
    let (s, r) = d
        .post(
            &tm,
            &format!("/v1/sales/{}/refunds", c["id"].as_str().unwrap()),
            &json!({"reason": "不要了"}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    // ¥25.80 in two cash payments (¥10 + ¥20): ¥4.20 change, one sale.
    let (s, e) = d
        .sale(
            &t,
            &sell("MILK", 2, vec![pay("cash", 1000), pay("cash", 2000)]),
        )
        .await;
    assert_eq!((s, e["change"].as_i64()), (201, Some(420)), "{e}");
    // At the second till: ¥89.90 from a ¥100 note; refunded at the manager's till (pos-1),
    // whose drawer gives the cash back.
    let (s, login, _) = login_status(&d, POS2, CASHIER.0, CASHIER.1).await;
    assert_eq!(s, 201, "{login}");
    let t2 = login["token"].as_str().unwrap();
    let (s, f) = d.sale(t2, &sell("RICE", 1, vec![pay("cash", 10000)])).await;
    assert_eq!((s, f["change"].as_i64()), (201, Some(1010)), "{f}");
    let (s, back) = d
        .post(
            &tm,
            &format!("/v1/sales/{}/refunds", f["id"].as_str().unwrap()),
            &json!({"reason": "买错了"}),
        )
        .await;
    assert_eq!(s, 201, "{back}");

    let (s, v) = d.get(&tm, "/v1/reports/sales").await;
    assert_eq!(s, 200, "{v}");
    let m = &v["by_method"];
    let row = |taken: i64, sales: u64, refunded: i64, refunds: u64| {
        json!({"sales": sales, "taken": taken, "refunds": refunds, "refunded": refunded,
               "net": taken - refunded})
    };
    assert_eq!(
        *m,
        json!({
            "cash": row(1290 + 2580 + 8990, 3, 8990, 1),
            "card": row(5000, 1, 0, 0),
            "wechat": row(3990, 1, 0, 0),
            "alipay": row(25000, 1, 25000, 1),
        }),
        "{v}"
    );
    // Each drawer's count: pos-1 took two sales' cash and gave the refund's back.
    assert_eq!(
        v["cash_by_terminal"],
        json!({"pos-1": row(1290 + 2580, 2, 8990, 1), "pos-2": row(8990, 1, 0, 0)}),
        "{v}"
    );
    // The methods add up to the report's totals.
    let sum = |k: &str| {
        m.as_object()
            .unwrap()
            .values()
            .map(|x| x[k].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(sum("taken"), v["revenue"].as_i64().unwrap(), "{v}");
    assert_eq!(sum("refunded"), v["refunded"].as_i64().unwrap(), "{v}");
    assert_eq!(sum("net"), v["net"].as_i64().unwrap(), "{v}");
    assert_eq!(v["previous"]["by_method"], json!({}), "{v}");

    // The day's refunds, listed: the money back by method, why, and who gave it.
    let (s, l) = d
        .get(&t, &format!("/v1/refunds?date={}", store_today()))
        .await;
    assert_eq!(s, 200, "{l}");
    let refunds = l["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 2, "{l}");
    assert_eq!(refunds[0]["id"], r["id"], "{l}");
    assert_eq!(refunds[0]["sale_id"], c["id"], "{l}");
    assert_eq!(refunds[0]["reason"], "不要了", "{l}");
    assert_eq!(refunds[0]["payments"], json!([pay("alipay", 25000)]), "{l}");
    assert!(l["next_after_seq"].is_null(), "{l}");
    d.terminate();
}
