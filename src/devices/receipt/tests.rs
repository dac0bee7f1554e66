use super::*;
use crate::devices::decode::{DecodeOptions, Mark, Paper, decode, decode_with};
use crate::domain::member::LevelRef;
use crate::domain::pricing::{AppliedCoupon, Benefit, PricedLine};
use crate::domain::sale::{MemberAfter, Payment};
use chrono::DateTime;

const LONG_NAME: &str = "有机纯牛奶 250ml×12盒 礼盒装 新鲜直达";

fn line(sku: &str, name: &str, qty: u32, unit_price: Money, discount: Money) -> PricedLine {
    PricedLine {
        sku: sku.into(),
        name: name.into(),
        qty,
        unit_price,
        discount,
        amount: i64::from(qty) * unit_price - discount,
        promo_discount: 0,
        member_discount: discount,
        coupon_discount: 0,
        rounding: 0,
        points_value: 0,
        points_redeemed: 0,
        points_earned: 0,
    }
}

fn silver() -> LevelRef {
    LevelRef {
        code: "silver".into(),
        name: "银卡会员".into(),
    }
}

/// A silver member pays ¥239.73 with ¥300 cash: change ¥60.27, 287 points earned (also the
/// journal's sample sale).
pub(crate) fn sale() -> Sale {
    Sale {
        id: "0193a5f0-7c1e-7d2a-9b3c-4e5f6a7b8c9d".into(),
        seq: 1042,
        store_id: "sh-001".into(),
        created_at: DateTime::parse_from_rfc3339("2026-11-23T10:15:00+08:00").unwrap(),
        staff_no: "0007".into(),
        terminal_id: "T01".into(),
        member_id: Some("m-1".into()),
        lines: vec![
            line("6901", LONG_NAME, 2, 8990, 1798),
            line("6902", "五常大米 5kg", 1, 6990, 699),
            line("6903", "苹果", 3, 500, 0),
        ],
        subtotal: 26470,
        discount_total: 2497,
        points_redeemed: 0,
        points_value: 0,
        total: 23973,
        payments: vec![Payment {
            method: PaymentMethod::Cash,
            amount: 30000,
        }],
        paid: 30000,
        change: 6027,
        points_earned: 287,
        benefit: Some(Benefit::Level),
        birthday_year: None,
        level: Some(silver()),
        coupons: vec![],
        member: Some(MemberAfter {
            level: Some(silver()),
            points: 3287,
            total_spend: 412_345,
            upgraded_to: None,
        }),
        idempotency_key: None,
    }
}

fn input<'a>(sale: &'a Sale, headers: &'a [String], paper: PaperWidth) -> ReceiptInput<'a> {
    ReceiptInput {
        store_name: "上海南京西路店",
        header_lines: headers,
        sale,
        member: MemberBlock::from_sale("13812345678", sale),
        reprint: false,
        encoding: Encoding::Gb18030,
        paper,
        labels: LabelMode::Bilingual,
        qr: Some("https://r.example.cn/sh-001/1042?c=会员"),
        drawer_kick: Some(DrawerPin::Pin2),
    }
}

fn headers() -> Vec<String> {
    vec!["南京西路1266号".into(), "电话 021-6288 0000".into()]
}

fn has(paper: &Paper, parts: &[&str]) -> bool {
    paper
        .lines
        .iter()
        .any(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn chinese_cash_receipt_shows_what_the_customer_checks() {
    let (s, h) = (sale(), headers());
    let bytes = render(&input(&s, &h, PaperWidth::Mm58));
    let paper = decode(&bytes);
    assert!(paper.unknown.is_empty(), "{:?}", paper.unknown);
    assert!(has(&paper, &["上海南京西路店"]));
    assert!(has(&paper, &["南京西路1266号"]));
    assert!(has(&paper, &["五常大米 5kg"]) && has(&paper, &["苹果"]));
    assert!(has(&paper, &["会员 Member", "138****5678"]));
    assert!(
        !paper.lines.concat().contains("13812345678"),
        "whole phone on paper"
    );
    assert!(has(&paper, &["等级 Level", "银卡会员"]));
    assert!(has(&paper, &["本次积分 Points earned", "+287"]));
    assert!(has(&paper, &["积分余额 Points balance", "3287"]));
    assert!(has(&paper, &["合计 Total", "￥239.73"]));
    assert!(has(&paper, &["现金 Cash", "￥300.00"]));
    assert!(has(&paper, &["找零 Change", "￥60.27"]));
    assert!(
        has(&paper, &["  优惠 Discount", "-17.98"]),
        "line discount shown"
    );
    assert!(has(&paper, &["会员折扣 Member", "-￥24.97"]));
    assert!(
        has(&paper, &["2 x 89.90", "179.80"]),
        "the line before its discount"
    );
    assert!(has(&paper, &["#1042 6A7B8C9D"]) && has(&paper, &["2026-11-23 10:15:00"]));
    assert_eq!(paper.qr, ["https://r.example.cn/sh-001/1042?c=会员"]);
    assert_eq!(paper.cuts, 1);
    assert_eq!(paper.drawer_kicks, [(2, 0x19, 0xFA)]);
    let cut = paper.timeline.iter().position(|m| *m == Mark::Cut);
    assert!(cut.is_some());
    assert_eq!(
        paper.timeline.last(),
        Some(&Mark::DrawerKick(0)),
        "kick after the cut"
    );
    assert!(bytes.windows(2).any(|w| w == [0xA3, 0xA4]), "full-width ￥");
    assert!(
        !bytes.windows(4).any(|w| w == [0x81, 0x30, 0x84, 0x36]),
        "4-byte ¥"
    );
    assert!(!has(&paper, &["重打"]));
}

#[test]
fn fits_58mm_and_wraps_a_long_name_without_losing_characters() {
    let (s, h) = (sale(), headers());
    let paper = decode(&render(&input(&s, &h, PaperWidth::Mm58)));
    for (l, w) in paper.lines.iter().zip(&paper.line_widths) {
        assert!(*w <= 32, "{w} columns: {l}");
        assert!(display_width(l, Encoding::Gb18030) <= 32, "{l}");
    }
    let at = paper.lines.iter().position(|l| l.starts_with("有机纯牛奶"));
    let at = at.unwrap_or_else(|| panic!("name missing: {:?}", paper.lines));
    assert_eq!(paper.line_widths[at], 32, "filled to the edge");
    assert_eq!(
        format!("{}{}", paper.lines[at], paper.lines[at + 1]),
        LONG_NAME
    );
    // The store name is printed at double width: 7 characters × 2 × 2 = 28 columns.
    assert!(
        paper
            .lines
            .iter()
            .zip(&paper.line_widths)
            .any(|(l, w)| l == "上海南京西路店" && *w == 28)
    );
}

#[test]
fn fits_80mm_on_one_line_per_name() {
    let (s, h) = (sale(), headers());
    let paper = decode(&render(&input(&s, &h, PaperWidth::Mm80)));
    assert!(
        paper.line_widths.iter().all(|w| *w <= 48),
        "{:?}",
        paper.line_widths
    );
    assert!(paper.lines.iter().any(|l| l == LONG_NAME));
    assert!(has(&paper, &["合计 Total", "￥239.73"]));
}

#[test]
fn narrow_configured_width_still_fits() {
    let (s, h) = (sale(), headers());
    let paper = decode(&render(&input(&s, &h, PaperWidth::Columns(10))));
    assert!(
        paper.line_widths.iter().all(|w| *w <= 16),
        "{:?}",
        paper.line_widths
    );
    assert!(paper.lines.concat().contains("￥239.73"));
}

#[test]
fn reprint_is_marked_at_the_top() {
    let (s, h) = (sale(), headers());
    let paper = decode(&render(&ReceiptInput {
        reprint: true,
        ..input(&s, &h, PaperWidth::Mm58)
    }));
    assert_eq!(paper.lines[0], "*** 重打 REPRINT ***");
}

#[test]
fn western_code_page_prints_english_and_question_marks() {
    let (s, h) = (sale(), headers());
    let enc = Encoding::CP858;
    let bytes = render(&ReceiptInput {
        encoding: enc,
        ..input(&s, &h, PaperWidth::Mm58)
    });
    let paper = decode_with(&bytes, &DecodeOptions::for_encoding(enc));
    assert!(has(&paper, &["?????"]), "store name as ?");
    assert!(has(&paper, &["Total", "¥239.73"]) && has(&paper, &["Change", "¥60.27"]));
    assert!(has(&paper, &["Cash", "¥300.00"]) && has(&paper, &["Member", "138****5678"]));
    assert!(!paper.lines.concat().contains("合计"));
    assert!(
        !bytes.windows(2).any(|w| w == [0x1C, 0x26]),
        "no Chinese mode"
    );
    // Only the QR payload (raw bytes, UTF-8) may carry bytes above 0x7F besides the
    // page's own characters: ¥ (0xBE) and × (0x9E) here. No UTF-8 reaches the font.
    let qr_at = bytes.windows(3).position(|w| w == [0x31, 0x50, 0x30]);
    let text_part = &bytes[..qr_at.unwrap_or(bytes.len())];
    assert!(
        text_part
            .iter()
            .all(|b| *b < 0x80 || [0x9E, 0xBE].contains(b))
    );
    assert!(has(&paper, &["????? 250ml×12? ??? ????"]));
    assert!(paper.line_widths.iter().all(|w| *w <= 32));
}

/// The amount printed on the line of `paper` that holds every one of `parts`, in minor units.
fn amount_on(paper: &Paper, parts: &[&str]) -> Option<i64> {
    let line = paper
        .lines
        .iter()
        .find(|l| parts.iter().all(|p| l.contains(p)))?;
    let figure = line.split_whitespace().last()?;
    let negative = figure.starts_with('-');
    let digits: String = figure.chars().filter(char::is_ascii_digit).collect();
    let n: i64 = digits.parse().ok()?;
    Some(if negative { -n } else { n })
}

/// Two bags of rice with a 满100减20 coupon and 抹零, as pricing makes the sale: each line's
/// `discount` carries its share of the coupon and of the rounding.
#[test]
fn a_coupon_and_rounding_are_printed_once_and_the_receipt_adds_up() {
    let mut s = sale();
    let mut rice = line("6902", "五常大米 5kg", 2, 8990, 0);
    rice.member_discount = 899;
    rice.coupon_discount = 2000;
    rice.rounding = 81;
    rice.discount = 899 + 2000 + 81;
    rice.amount = 17980 - rice.discount;
    s.lines = vec![rice];
    s.subtotal = 17980;
    s.discount_total = 2980;
    s.total = 15000;
    s.coupons = vec![AppliedCoupon {
        code: "MJ100-20".into(),
        discount: 2000,
    }];
    s.payments[0].amount = 20000;
    s.paid = 20000;
    s.change = 5000;
    let h = headers();
    let paper = decode(&render(&input(&s, &h, PaperWidth::Mm80)));
    let text = paper.lines.join("\n");
    assert_eq!(text.matches("MJ100-20").count(), 1, "{text}");
    assert_eq!(text.matches("-￥20.00").count(), 1, "{text}");
    assert_eq!(amount_on(&paper, &["2 x 89.90"]), Some(17980), "{text}");
    let subtotal = amount_on(&paper, &["小计 Subtotal"]).unwrap();
    let printed: i64 = [
        amount_on(&paper, &["会员折扣 Member", "￥"]),
        amount_on(&paper, &["优惠券 Coupon"]),
        amount_on(&paper, &["抹零 Rounding"]),
        amount_on(&paper, &["积分抵扣"]),
    ]
    .into_iter()
    .flatten()
    .sum();
    assert_eq!(
        amount_on(&paper, &["会员折扣 Member", "￥"]),
        Some(-899),
        "{text}"
    );
    assert_eq!(amount_on(&paper, &["抹零 Rounding"]), Some(-81), "{text}");
    assert_eq!(
        subtotal + printed,
        amount_on(&paper, &["合计 Total"]).unwrap(),
        "{text}"
    );
}

/// The reductions are printed in the order pricing applies them (design section 3, then
/// 抹零 on what is left to pay): the lines' own discounts, the coupon, the points, 抹零. 抹零
/// came before the points it is taken after.
#[test]
fn reductions_are_printed_in_the_order_they_apply() {
    let mut s = sale();
    let mut rice = line("6902", "五常大米 5kg", 2, 8990, 0);
    rice.member_discount = 899;
    rice.coupon_discount = 2000;
    rice.points_value = 500;
    rice.points_redeemed = 500;
    rice.rounding = 81;
    rice.discount = 899 + 2000 + 81;
    rice.amount = 17980 - rice.discount;
    s.lines = vec![rice];
    s.subtotal = 17980;
    s.discount_total = 2980;
    s.points_redeemed = 500;
    s.points_value = 500;
    s.total = 14500;
    s.coupons = vec![AppliedCoupon {
        code: "MJ100-20".into(),
        discount: 2000,
    }];
    s.payments[0].amount = 20000;
    s.paid = 20000;
    s.change = 5500;
    let h = headers();
    let paper = decode(&render(&input(&s, &h, PaperWidth::Mm80)));
    let text = paper.lines.join("\n");
    let at = |label: &str| {
        paper
            .lines
            .iter()
            .position(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label}: {text}"))
    };
    let order = [
        at("小计 Subtotal"),
        at("会员折扣 Member"),
        at("优惠券 Coupon"),
        at("积分抵扣 Points used"),
        at("抹零 Rounding"),
        at("合计 Total"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}\n{text}");
}

#[test]
fn upgrade_coupon_and_points_are_printed() {
    let mut s = sale();
    s.coupons = vec![AppliedCoupon {
        code: "C100-20".into(),
        discount: 2000,
    }];
    // As pricing makes it: the coupon is carried by the lines' discounts.
    s.lines[0].coupon_discount = 2000;
    s.lines[0].discount += 2000;
    s.lines[0].amount -= 2000;
    s.discount_total += 2000;
    s.points_redeemed = 500;
    s.points_value = 500;
    s.total -= 2500;
    if let Some(m) = s.member.as_mut() {
        m.upgraded_to = Some(LevelRef {
            code: "gold".into(),
            name: "金卡会员".into(),
        });
    }
    let h = headers();
    let paper = decode(&render(&input(&s, &h, PaperWidth::Mm58)));
    assert!(has(&paper, &["优惠券 Coupon C100-20", "-￥20.00"]));
    assert!(has(&paper, &["积分抵扣 Points used 500", "-￥5.00"]));
    assert!(has(&paper, &["恭喜升级 Upgraded to", "金卡会员"]));
}

#[test]
fn card_sale_without_member_has_no_change_member_or_kick() {
    let mut s = sale();
    s.member = None;
    s.payments = vec![Payment {
        method: PaymentMethod::Wechat,
        amount: 23973,
    }];
    s.paid = 23973;
    s.change = 0;
    let h = headers();
    let inp = ReceiptInput {
        member: None,
        drawer_kick: None,
        qr: None,
        ..input(&s, &h, PaperWidth::Mm58)
    };
    let bytes = render(&inp);
    assert_eq!(bytes, render(&inp), "deterministic");
    let paper = decode(&bytes);
    assert!(has(&paper, &["微信 WeChat", "￥239.73"]));
    assert!(!has(&paper, &["找零"]) && !has(&paper, &["会员 Member"]));
    assert!(paper.drawer_kicks.is_empty() && paper.qr.is_empty());
    assert_eq!(paper.cuts, 1);
}

#[test]
fn wrap_breaks_between_characters_and_words() {
    let gb = Encoding::Gb18030;
    assert_eq!(wrap("收银台a收银", 4, gb), ["收银", "台a", "收银"]);
    assert_eq!(wrap("收银台a收银", 5, gb), ["收银", "台a收", "银"]);
    assert_eq!(
        wrap("Organic whole milk", 10, gb),
        ["Organic", "whole milk"]
    );
    assert_eq!(
        wrap("收", 1, gb),
        ["收"],
        "too wide for the line: own line, no loop"
    );
    assert_eq!(wrap("", 8, gb), [""]);
}

/// A space that falls just past the end of a line is where the line breaks: the next line
/// does not start with it (a product name would otherwise print indented by one column).
#[test]
fn wrap_at_a_space_on_the_edge_does_not_indent_the_next_line() {
    let gb = Encoding::Gb18030;
    assert_eq!(wrap("一二三四 五", 8, gb), ["一二三四", "五"]);
    assert_eq!(wrap("Milk 1L", 4, gb), ["Milk", "1L"]);
    assert_eq!(wrap("一二三四  五", 8, gb), ["一二三四", "五"]);
}

#[test]
fn qr_modules_shrink_to_fit_the_paper() {
    assert_eq!(qr_module(40, 32), 6, "a short URL prints large");
    assert_eq!(
        qr_module(300, 32),
        4,
        "version 13: 77 modules with quiet zone, 384 dots"
    );
    assert_eq!(qr_module(300, 48), 6);
    assert_eq!(qr_module(2331, 32), 2);
}

/// Odd product, store and header text (a four-byte GB18030 character, emoji and joiners, flags,
/// full-width Latin, control characters, a long word, an empty name), a long coupon code and
/// a long level name: every line stays within the paper on every width and encoding, and no
/// control byte from a name reaches the printer as a command. (The figures need not add up
/// here: this is the layout only.)
#[test]
fn odd_text_never_runs_past_the_paper() {
    let names = [
        "𠮷野家 牛丼 Beef Bowl 大盛 🍜🍜 ✓ 刘䶮",
        "Coca-Cola 可口可乐·零度 Zero Sugar 330ml×24罐 整箱装 限时特惠 Limited Edition Pack",
        "ＡＢＣ全角１２３ é è ü ß ñ Ω α β γ ① ② ③ ㈠ ㈡",
        "👨‍👩‍👧 family pack ❤️ 🇨🇳",
        "\t\n\r\u{1b}@\u{1d}V0 name",
        "a",
        "",
        "Supercalifragilisticexpialidocious_ExtraLongSKUDescriptionWithoutSpaces_1234567890",
    ];
    for enc in [Encoding::Gb18030, Encoding::CP858] {
        for paper_w in [PaperWidth::Mm58, PaperWidth::Mm80, PaperWidth::Columns(42)] {
            let mut s = sale();
            for (i, n) in names.iter().enumerate() {
                let mut l = line(&format!("X{i}"), n, 99, 123_456, 1);
                l.member_discount = 1;
                s.lines.push(l);
            }
            s.coupons.push(AppliedCoupon {
                code: "WELCOME-BACK-2026-VERY-LONG-CODE-XYZ".into(),
                discount: 12345,
            });
            s.points_redeemed = 1_234_567;
            s.points_value = 1_234_567;
            s.member.as_mut().unwrap().upgraded_to = Some(LevelRef {
                code: "x".into(),
                name: "至尊钻石黑金会员 Diamond Black".into(),
            });
            let h = vec![
                "上海市静安区南京西路1266号恒隆广场B1层 Plaza 66 B1 Nanjing West Road Shanghai"
                    .to_string(),
            ];
            let bytes = render(&ReceiptInput {
                encoding: enc,
                store_name: "上海南京西路店 Shanghai West Nanjing Road Flagship",
                ..input(&s, &h, paper_w)
            });
            let paper = decode_with(&bytes, &DecodeOptions::for_encoding(enc));
            assert!(paper.unknown.is_empty(), "{:?}", paper.unknown);
            for (l, w) in paper.lines.iter().zip(&paper.line_widths) {
                assert!(*w <= paper_w.columns(), "{w}: {l}");
            }
        }
    }
}

/// The birthday discount is named on the receipt (the customer checks it was given), apart from
/// the promotions; what is printed still adds up to the total.
#[test]
fn the_birthday_discount_is_named_apart_from_the_promotions() {
    let mut s = sale();
    let mut tea = line("6901", "龙井 250g", 1, 10000, 0);
    tea.promo_discount = 1000;
    tea.member_discount = 1800;
    tea.discount = 2800;
    tea.amount = 7200;
    s.lines = vec![tea];
    s.subtotal = 10000;
    s.discount_total = 2800;
    s.total = 7200;
    s.benefit = Some(Benefit::Birthday);
    s.payments[0].amount = 10000;
    s.paid = 10000;
    s.change = 2800;
    let h = headers();
    for paper_width in [PaperWidth::Mm58, PaperWidth::Mm80] {
        let paper = decode(&render(&input(&s, &h, paper_width)));
        let text = paper.lines.join("\n");
        assert!(text.contains("生日折扣 Birthday"), "{text}");
        assert_eq!(
            amount_on(&paper, &["生日折扣", "￥"]),
            Some(-1800),
            "{text}"
        );
        assert_eq!(
            amount_on(&paper, &["优惠 Discount", "￥"]),
            Some(-1000),
            "{text}"
        );
        assert!(!text.contains("会员折扣"), "{text}");
    }
}
