//! The refund slip: what a refund gives back, for the customer and the till's cash count.
//!
//! Pure, like the receipt: printed from the `sale.refunded` event and the sale it refunds, so a
//! slip printed late (the printer was off) shows the refund as it was recorded.

use super::{LabelMode, Layout, PaperWidth, bilingual, method_index, neg, short_id, wrap};
use crate::devices::escpos::Encoding;
use crate::domain::contact::mask_phone;
use crate::domain::refund::Refund;
use crate::domain::sale::Sale;

/// Everything a refund slip shows; filled by the caller from config and the journal.
#[derive(Debug, Clone)]
pub struct RefundSlip<'a> {
    /// Store name, printed large at the top.
    pub store_name: &'a str,
    /// Extra header lines from config, centered.
    pub header_lines: &'a [String],
    /// The sale refunded (its number is printed).
    pub sale: &'a Sale,
    /// The refund.
    pub refund: &'a Refund,
    /// The member's phone, masked again here, if the sale had a member.
    pub phone: Option<&'a str>,
    /// The printer's text encoding.
    pub encoding: Encoding,
    /// Paper width.
    pub paper: PaperWidth,
    /// Label language.
    pub labels: LabelMode,
    /// Printed again on request: marked so at the top, and no drawer kick.
    pub reprint: bool,
}

/// Label texts of one language.
struct Labels {
    title: &'static str,
    manager: &'static str,
    refund_no: &'static str,
    sale_no: &'static str,
    reason: &'static str,
    returned: &'static str,
    shortfall: &'static str,
    total: &'static str,
    points_returned: &'static str,
    points_taken: &'static str,
}

const BILINGUAL: Labels = Labels {
    title: "*** 退款单 REFUND ***",
    manager: "经办 Manager",
    refund_no: "退款号 Refund No.",
    sale_no: "原单号 Sale No.",
    reason: "原因 Reason",
    returned: "退货金额 Returned",
    shortfall: "已用积分扣回 Points already used",
    total: "退款合计 Refund total",
    points_returned: "退还积分 Points returned",
    points_taken: "扣回积分 Points taken back",
};

const ENGLISH: Labels = Labels {
    title: "*** REFUND ***",
    manager: "Manager",
    refund_no: "Refund No.",
    sale_no: "Sale No.",
    reason: "Reason",
    returned: "Returned",
    shortfall: "Points already used",
    total: "Refund total",
    points_returned: "Points returned",
    points_taken: "Points taken back",
};

/// Renders the slip: the refund mark, store, who and when, the sale it refunds and why, each
/// returned line, the money given back and how, the member's points, feed and cut. The drawer
/// kick (a cash refund) is the caller's, after the cut.
pub fn render_refund(input: &RefundSlip<'_>) -> Vec<u8> {
    let mut r = Layout::new(input.encoding, input.paper, input.labels);
    // As the receipt: Chinese labels only where the printer can print them.
    let l = if bilingual(input.labels, input.encoding) {
        &BILINGUAL
    } else {
        &ENGLISH
    };
    let (refund, sale) = (input.refund, input.sale);
    r.out.bold(true);
    if input.reprint {
        r.centered(r.labels.reprint, 1);
    }
    r.centered(l.title, 1);
    r.out.bold(false);
    r.store(input.store_name, input.header_lines);
    r.rule();
    r.pair(r.labels.terminal, &refund.terminal_id);
    r.pair(l.manager, &refund.staff_no);
    r.pair(
        l.refund_no,
        &format!("#{} {}", refund.seq, short_id(&refund.id)),
    );
    r.pair(l.sale_no, &format!("#{} {}", sale.seq, short_id(&sale.id)));
    let time = refund.created_at.format("%Y-%m-%d %H:%M:%S").to_string();
    r.pair(r.labels.time, &time);
    r.out.line(l.reason);
    for part in wrap(&format!("  {}", refund.reason), r.cols, r.enc) {
        r.out.line(&part);
    }
    r.rule();
    for line in &refund.lines {
        for part in wrap(&line.name, r.cols, r.enc) {
            r.out.line(&part);
        }
        let qty = format!("  -{}", line.qty);
        r.pair(&qty, &super::format_yuan(neg(line.amount)));
    }
    r.rule();
    r.pair(l.returned, &r.money(refund.amount));
    if refund.shortfall_value != 0 {
        let label = format!("{} {}", l.shortfall, refund.points_shortfall);
        r.pair(&label, &r.money(neg(refund.shortfall_value)));
    }
    r.out.bold(true).size(1, 2);
    r.pair(l.total, &r.money(refund.refund_total));
    r.out.size(1, 1).bold(false);
    for p in &refund.payments {
        r.pair(r.labels.methods[method_index(p.method)], &r.money(p.amount));
    }
    if let (Some(phone), Some(after)) = (input.phone, &refund.member) {
        r.rule();
        r.pair(r.labels.member, &mask_phone(phone));
        if let Some(level) = &after.level {
            r.pair(r.labels.level, &level.name);
        }
        if refund.points_restored != 0 {
            r.pair(l.points_returned, &format!("+{}", refund.points_restored));
        }
        if refund.points_reversed != 0 {
            r.pair(l.points_taken, &format!("-{}", refund.points_reversed));
        }
        r.pair(r.labels.points_balance, &after.points.to_string());
    }
    r.out.feed_lines(3).cut_with_feed(0);
    r.out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::decode::decode;
    use crate::domain::refund::RefundLine;
    use crate::domain::sale::{MemberAfter, Payment, PaymentMethod};

    fn refund(sale: &Sale) -> Refund {
        Refund {
            id: "0193a5f1-0000-7000-8000-00000000abcd".into(),
            seq: 1077,
            store_id: sale.store_id.clone(),
            sale_id: sale.id.clone(),
            sale_month: "2026-11".into(),
            created_at: chrono::DateTime::parse_from_rfc3339("2026-11-24T09:05:00+08:00").unwrap(),
            staff_no: "0002".into(),
            terminal_id: "T01".into(),
            member_id: sale.member_id.clone(),
            reason: "包装破损 damaged".into(),
            restock: false,
            lines: vec![RefundLine {
                sku: "6902".into(),
                name: "五常大米 5kg".into(),
                qty: 1,
                amount: 6291,
                points_restored: 0,
                points_reversed: 75,
            }],
            amount: 6291,
            points_restored: 0,
            points_reversed: 75,
            points_shortfall: 0,
            shortfall_value: 0,
            refund_total: 6291,
            payments: vec![Payment {
                method: PaymentMethod::Cash,
                amount: 6291,
            }],
            member: Some(MemberAfter {
                level: sale.member.as_ref().and_then(|m| m.level.clone()),
                points: 3212,
                total_spend: 406_054,
                upgraded_to: None,
            }),
            idempotency_key: None,
        }
    }

    fn slip<'a>(sale: &'a Sale, refund: &'a Refund, paper: PaperWidth) -> RefundSlip<'a> {
        RefundSlip {
            store_name: "上海南京西路店",
            header_lines: &[],
            sale,
            refund,
            phone: Some("13812345678"),
            encoding: Encoding::Gb18030,
            paper,
            labels: LabelMode::Bilingual,
            reprint: false,
        }
    }

    #[test]
    fn a_refund_slip_shows_what_goes_back_and_whose_sale_it_was() {
        let sale = super::super::tests::sale();
        let r = refund(&sale);
        for paper_width in [PaperWidth::Mm58, PaperWidth::Mm80] {
            let paper = decode(&render_refund(&slip(&sale, &r, paper_width)));
            let text = paper.lines.join("\n");
            let has = |parts: &[&str]| {
                paper
                    .lines
                    .iter()
                    .any(|l| parts.iter().all(|p| l.contains(p)))
            };
            assert!(paper.unknown.is_empty(), "{:?}", paper.unknown);
            assert!(has(&["退款单 REFUND"]), "{text}");
            assert!(has(&["上海南京西路店"]), "{text}");
            assert!(has(&["原单号 Sale No.", "#1042 6A7B8C9D"]), "{text}");
            assert!(has(&["退款号 Refund No.", "#1077 0000ABCD"]), "{text}");
            assert!(has(&["经办 Manager", "0002"]), "{text}");
            assert!(has(&["包装破损 damaged"]), "{text}");
            assert!(has(&["五常大米 5kg"]) && has(&["-1", "-62.91"]), "{text}");
            assert!(has(&["退款合计 Refund total", "￥62.91"]), "{text}");
            assert!(has(&["现金 Cash", "￥62.91"]), "{text}");
            assert!(has(&["扣回积分 Points taken back", "-75"]), "{text}");
            assert!(has(&["积分余额 Points balance", "3212"]), "{text}");
            assert!(has(&["138****5678"]) && !text.contains("13812345678"));
            assert_eq!(paper.cuts, 1);
            assert!(paper.drawer_kicks.is_empty(), "the kick is the caller's");
            for (line, width) in paper.lines.iter().zip(&paper.line_widths) {
                assert!(*width <= paper_width.columns(), "{width}: {line}");
            }
        }
    }

    /// Points the member had already spent are kept back from the money: the slip says so, and
    /// what it prints adds up.
    #[test]
    fn points_already_used_are_shown_as_kept_back() {
        let sale = super::super::tests::sale();
        let mut r = refund(&sale);
        r.points_shortfall = 75;
        r.shortfall_value = 75;
        r.refund_total = 6216;
        r.payments[0].amount = 6216;
        let paper = decode(&render_refund(&RefundSlip {
            labels: LabelMode::English,
            reprint: false,
            encoding: Encoding::Cp437 { esc_t: 0 },
            ..slip(&sale, &r, PaperWidth::Mm80)
        }));
        let text = paper.lines.join("\n");
        assert!(text.contains("*** REFUND ***"), "{text}");
        assert!(
            paper
                .lines
                .iter()
                .any(|l| l.contains("Points already used 75") && l.contains("-¥0.75")),
            "{text}"
        );
        assert!(
            paper
                .lines
                .iter()
                .any(|l| l.contains("Refund total") && l.contains("¥62.16")),
            "{text}"
        );
    }
}
