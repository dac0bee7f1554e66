//! Receipt layout: a recorded [`Sale`] to the ESC/POS bytes of its receipt.
//!
//! Pure and deterministic: the time printed is the sale's own `created_at` (store-local), so a
//! reprint from the journal is byte-for-byte the first print plus the reprint mark.
//!
//! Columns are counted the way the printer draws them ([`display_width`]): a double-byte
//! character takes two, and the store name printed at double width takes twice that. Lines are
//! wrapped by that width, never inside a character, so nothing relies on the printer's own
//! wrapping (which would break the label/amount columns).
//!
//! Money is printed with [`format_yuan`]. On Chinese printers the currency sign is the
//! full-width `￥` (GBK `A3 A4`, two columns); on Western code pages it is `¥`, which both
//! CP437 (0x9D) and CP858 (0xBE) carry as a single byte. Line items (unit price, line amount)
//! are printed without the sign to save columns; totals and payments carry it.

use super::escpos::{Align, DrawerPin, Encoding, EscPos, char_width, display_width};
use crate::domain::contact::mask_phone;
use crate::domain::money::{Money, format_yuan};
use crate::domain::pricing::Benefit;
use crate::domain::sale::{PaymentMethod, Sale, any_cash};

/// Paper roll width, which decides the column count in Font A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperWidth {
    /// 58 mm paper: 384 dots at 203 dpi, 32 columns.
    Mm58,
    /// 80 mm paper: 576 dots, 48 columns.
    Mm80,
    /// A configured column count (e.g. 42 on 180 dpi Epson TM-T88-class printers, or Font B
    /// counts); clamped to 16..=128.
    Columns(usize),
}

impl PaperWidth {
    /// Columns per line at normal size.
    pub fn columns(self) -> usize {
        match self {
            PaperWidth::Mm58 => 32,
            PaperWidth::Mm80 => 48,
            PaperWidth::Columns(n) => n.clamp(16, 128),
        }
    }
}

/// Which labels the receipt prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelMode {
    /// Chinese and English: "合计 Total". Only honoured with [`Encoding::Gb18030`]; a Western
    /// code page cannot print the Chinese half, so it falls back to English.
    Bilingual,
    /// English only: "Total".
    English,
}

/// The member block printed under the payments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberBlock {
    /// The member's phone. Masked again at render time with [`mask_phone`] (idempotent on
    /// `138****5678`), so a whole number never reaches paper even if the caller passes one.
    pub phone: String,
    /// Level display name after the sale (e.g. 银卡会员), if any.
    pub level: Option<String>,
    /// Points balance after the sale.
    pub points_balance: i64,
    /// Points this sale earned.
    pub points_earned: i64,
    /// Display name of the level this sale upgraded the member to, if it did.
    pub upgraded_to: Option<String>,
}

impl MemberBlock {
    /// The block from a sale's own member figures, or `None` if the sale has no member.
    pub fn from_sale(phone: &str, sale: &Sale) -> Option<MemberBlock> {
        let after = sale.member.as_ref()?;
        Some(MemberBlock {
            phone: phone.to_owned(),
            level: after.level.as_ref().map(|l| l.name.clone()),
            points_balance: after.points,
            points_earned: sale.points_earned,
            upgraded_to: after.upgraded_to.as_ref().map(|l| l.name.clone()),
        })
    }
}

/// Everything a receipt shows besides the sale itself; filled by the caller from config.
#[derive(Debug, Clone)]
pub struct ReceiptInput<'a> {
    /// Store name, printed large at the top.
    pub store_name: &'a str,
    /// Extra header lines from config (address, phone, slogan), centered.
    pub header_lines: &'a [String],
    /// The recorded sale.
    pub sale: &'a Sale,
    /// Member block, if the sale had a member; [`MemberBlock::from_sale`] takes the figures
    /// the sale recorded, so a reprint shows them as they were.
    pub member: Option<MemberBlock>,
    /// Prints a 重打/REPRINT mark at the top.
    pub reprint: bool,
    /// The printer's text encoding.
    pub encoding: Encoding,
    /// Paper width.
    pub paper: PaperWidth,
    /// Label language.
    pub labels: LabelMode,
    /// QR content (the caller fills its template), printed above the cut.
    pub qr: Option<&'a str>,
    /// Drawer to open after the cut; the caller sets it when a payment was cash, and leaves
    /// it `None` on reprints.
    pub drawer_kick: Option<DrawerPin>,
}

/// Label texts of one language.
struct Labels {
    reprint: &'static str,
    terminal: &'static str,
    staff: &'static str,
    sale_no: &'static str,
    time: &'static str,
    discount: &'static str,
    member_discount: &'static str,
    birthday_discount: &'static str,
    subtotal: &'static str,
    coupon: &'static str,
    rounding: &'static str,
    points_paid: &'static str,
    total: &'static str,
    paid: &'static str,
    change: &'static str,
    member: &'static str,
    level: &'static str,
    points_earned: &'static str,
    points_balance: &'static str,
    upgraded: &'static str,
    methods: [&'static str; 6],
}

const BILINGUAL: Labels = Labels {
    reprint: "*** 重打 REPRINT ***",
    terminal: "终端 Terminal",
    staff: "收银员 Staff",
    sale_no: "单号 No.",
    time: "时间 Time",
    discount: "优惠 Discount",
    member_discount: "会员折扣 Member",
    birthday_discount: "生日折扣 Birthday",
    subtotal: "小计 Subtotal",
    coupon: "优惠券 Coupon",
    rounding: "抹零 Rounding",
    points_paid: "积分抵扣 Points used",
    total: "合计 Total",
    paid: "实收 Paid",
    change: "找零 Change",
    member: "会员 Member",
    level: "等级 Level",
    points_earned: "本次积分 Points earned",
    points_balance: "积分余额 Points balance",
    upgraded: "恭喜升级 Upgraded to",
    methods: [
        "现金 Cash",
        "银行卡 Card",
        "微信 WeChat",
        "支付宝 Alipay",
        "储值 Stored value",
        "其他 Other",
    ],
};

const ENGLISH: Labels = Labels {
    reprint: "*** REPRINT ***",
    terminal: "Terminal",
    staff: "Staff",
    sale_no: "No.",
    time: "Time",
    discount: "Discount",
    member_discount: "Member discount",
    birthday_discount: "Birthday discount",
    subtotal: "Subtotal",
    coupon: "Coupon",
    rounding: "Rounding",
    points_paid: "Points used",
    total: "Total",
    paid: "Paid",
    change: "Change",
    member: "Member",
    level: "Level",
    points_earned: "Points earned",
    points_balance: "Points balance",
    upgraded: "Upgraded to",
    methods: ["Cash", "Card", "WeChat", "Alipay", "Stored value", "Other"],
};

fn method_index(m: PaymentMethod) -> usize {
    match m {
        PaymentMethod::Cash => 0,
        PaymentMethod::Card => 1,
        PaymentMethod::Wechat => 2,
        PaymentMethod::Alipay => 3,
        PaymentMethod::StoredValue => 4,
        PaymentMethod::Other => 5,
    }
}

/// Renders the receipt of `input.sale`: header, lines, totals, payments, member block, QR,
/// feed and cut, then the drawer kick last (so the drawer opens as the receipt comes off).
pub fn render(input: &ReceiptInput<'_>) -> Vec<u8> {
    let mut r = Layout::new(input.encoding, input.paper, input.labels);
    r.header(input);
    r.items(input.sale);
    r.totals(input.sale);
    if let Some(m) = &input.member {
        r.member(m);
    }
    if let Some(content) = input.qr.filter(|q| !q.is_empty()) {
        r.qr(content);
    }
    r.out.feed_lines(3).cut_with_feed(0);
    if let Some(pin) = input.drawer_kick {
        r.out.drawer_kick(pin);
    }
    r.out.into_bytes()
}

/// The receipt being laid out.
struct Layout {
    out: EscPos,
    cols: usize,
    enc: Encoding,
    labels: &'static Labels,
    currency: &'static str,
}

impl Layout {
    /// A slip for `paper` in `enc`, with the printer initialised.
    fn new(enc: Encoding, paper: PaperWidth, labels: LabelMode) -> Layout {
        let chinese = enc.is_chinese();
        let mut r = Layout {
            out: EscPos::new(enc),
            cols: paper.columns(),
            enc,
            labels: if bilingual(labels, enc) {
                &BILINGUAL
            } else {
                &ENGLISH
            },
            currency: if chinese { "￥" } else { "¥" },
        };
        r.out.init();
        r
    }

    /// Store name (bold, double size) and the config's lines, centered.
    fn store(&mut self, store_name: &str, header_lines: &[String]) {
        self.out.bold(true);
        self.centered(store_name, 2);
        self.out.bold(false);
        for h in header_lines {
            self.centered(h, 1);
        }
    }

    /// Reprint mark, store name (bold, double size), config lines, then who, where, when.
    fn header(&mut self, input: &ReceiptInput<'_>) {
        let (l, sale) = (self.labels, input.sale);
        if input.reprint {
            self.out.bold(true);
            self.centered(l.reprint, 1);
            self.out.bold(false);
        }
        self.store(input.store_name, input.header_lines);
        self.rule();
        self.pair(l.terminal, &sale.terminal_id);
        self.pair(l.staff, &sale.staff_no);
        self.pair(l.sale_no, &format!("#{} {}", sale.seq, short_id(&sale.id)));
        let time = sale.created_at.format("%Y-%m-%d %H:%M:%S").to_string();
        self.pair(l.time, &time);
        self.rule();
    }

    /// Each line: its name wrapped, `qty x unit price` and what that comes to, then the line's
    /// own discount (promotion, level or birthday) if any. Coupons and 抹零, which a line's
    /// `discount` also carries a share of, are printed once each under the subtotal.
    fn items(&mut self, sale: &Sale) {
        for line in &sale.lines {
            for part in wrap(&line.name, self.cols, self.enc) {
                self.out.line(&part);
            }
            let qty = format!("  {} x {}", line.qty, format_yuan(line.unit_price));
            let gross = i64::from(line.qty).saturating_mul(line.unit_price);
            self.pair(&qty, &format_yuan(gross));
            let own = line.discount - line.coupon_discount - line.rounding;
            if own != 0 {
                let label = format!("  {}", self.labels.discount);
                self.pair(&label, &format_yuan(neg(own)));
            }
        }
        self.rule();
    }

    /// Subtotal, the lines' own discounts, each coupon, points paid, 抹零 (the order pricing
    /// applies them in), the total (bold, double height), each payment, paid and change (shown
    /// whenever cash was tendered). What is printed adds up: subtotal − discount − coupons −
    /// points − 抹零 = total.
    fn totals(&mut self, sale: &Sale) {
        let l = self.labels;
        self.pair(l.subtotal, &self.money(sale.subtotal));
        let coupons: Money = sale.coupons.iter().map(|c| c.discount).sum();
        let rounding: Money = sale.lines.iter().map(|x| x.rounding).sum();
        // The level's or the birthday's discount on a line of its own, named, so the customer
        // sees the birthday discount was given; the promotions (and anything older records do
        // not split) under the plain label.
        let member: Money = sale.lines.iter().map(|x| x.member_discount).sum();
        let own = sale.discount_total - coupons - rounding - member;
        if own != 0 {
            self.pair(l.discount, &self.money(neg(own)));
        }
        if member != 0 {
            let label = match sale.benefit {
                Some(Benefit::Birthday) => l.birthday_discount,
                _ => l.member_discount,
            };
            self.pair(label, &self.money(neg(member)));
        }
        for c in &sale.coupons {
            let label = format!("{} {}", l.coupon, c.code);
            self.pair(&label, &self.money(neg(c.discount)));
        }
        if sale.points_redeemed != 0 || sale.points_value != 0 {
            let label = format!("{} {}", l.points_paid, sale.points_redeemed);
            self.pair(&label, &self.money(neg(sale.points_value)));
        }
        // Last, as pricing takes it: on what is left to pay after the points.
        if rounding != 0 {
            self.pair(l.rounding, &self.money(neg(rounding)));
        }
        self.out.bold(true).size(1, 2);
        self.pair(l.total, &self.money(sale.total));
        self.out.size(1, 1).bold(false);
        for p in &sale.payments {
            self.pair(l.methods[method_index(p.method)], &self.money(p.amount));
        }
        self.pair(l.paid, &self.money(sale.paid));
        if any_cash(&sale.payments) || sale.change != 0 {
            self.pair(l.change, &self.money(sale.change));
        }
    }

    /// Masked phone, level, points earned and balance, and the upgrade notice.
    fn member(&mut self, m: &MemberBlock) {
        let l = self.labels;
        self.rule();
        self.pair(l.member, &mask_phone(&m.phone));
        if let Some(level) = &m.level {
            self.pair(l.level, level);
        }
        self.pair(l.points_earned, &format!("+{}", m.points_earned));
        self.pair(l.points_balance, &m.points_balance.to_string());
        if let Some(up) = &m.upgraded_to {
            self.out.bold(true);
            self.pair(l.upgraded, up);
            self.out.bold(false);
        }
    }

    /// The QR code, centered and sized to the paper.
    fn qr(&mut self, content: &str) {
        self.out.line_feed().align(Align::Center);
        if self
            .out
            .qr(content, qr_module(content.len(), self.cols))
            .is_err()
        {
            // Too long for a QR code: print it, so what the template produced is not lost.
            for part in wrap(content, self.cols, self.enc) {
                self.out.line(&part);
            }
        }
        self.out.align(Align::Left);
    }

    /// A line of dashes across the paper.
    fn rule(&mut self) {
        self.out.line(&"-".repeat(self.cols));
    }

    /// `text` centered by the printer, at `width` times normal width, wrapped to fit.
    fn centered(&mut self, text: &str, width: u8) {
        let factor = usize::from(width.max(1));
        self.out.align(Align::Center).size(width, width);
        for part in wrap(text, self.cols / factor, self.enc) {
            self.out.line(&part);
        }
        self.out.size(1, 1).align(Align::Left);
    }

    /// Label on the left, value on the right of the same line; if both do not fit, the
    /// label (wrapped) and then the value right-aligned on lines of their own.
    fn pair(&mut self, label: &str, value: &str) {
        let (lw, vw) = (
            display_width(label, self.enc),
            display_width(value, self.enc),
        );
        if lw + 1 + vw <= self.cols {
            let pad = " ".repeat(self.cols - lw - vw);
            self.out.line(&format!("{label}{pad}{value}"));
            return;
        }
        for part in wrap(label, self.cols, self.enc) {
            self.out.line(&part);
        }
        for part in wrap(value, self.cols, self.enc) {
            let pad = self.cols.saturating_sub(display_width(&part, self.enc));
            self.out.line(&format!("{}{part}", " ".repeat(pad)));
        }
    }

    /// Money with the currency sign, the minus sign first: `-￥3.00`.
    fn money(&self, amount: Money) -> String {
        let s = format_yuan(amount);
        match s.strip_prefix('-') {
            Some(abs) => format!("-{}{abs}", self.currency),
            None => format!("{}{s}", self.currency),
        }
    }
}

/// Bytes a model 2 QR code of version 1..=40 holds at error correction M.
const QR_CAPACITY_M: [usize; 40] = [
    14, 26, 42, 62, 84, 106, 122, 152, 180, 213, 251, 287, 331, 362, 412, 450, 504, 560, 624, 666,
    711, 779, 857, 911, 997, 1059, 1125, 1190, 1264, 1370, 1452, 1538, 1628, 1722, 1809, 1911,
    1989, 2099, 2213, 2331,
];

/// Dots per module so the symbol and its quiet zone fit the paper: at most 6 (easy to scan),
/// smaller for long content. Printers skip a QR code wider than the paper without a word, so
/// a long URL on 58 mm would otherwise just be missing.
fn qr_module(len: usize, cols: usize) -> u8 {
    let version = QR_CAPACITY_M
        .iter()
        .position(|cap| *cap >= len)
        .unwrap_or(39)
        + 1;
    let modules = 17 + 4 * version + 8; // symbol plus a 4-module quiet zone on each side
    let dots = cols * 12; // Font A is 12 dots a column: 384 on 58 mm, 576 on 80 mm
    u8::try_from((dots / modules).clamp(1, 6)).unwrap_or(1)
}

/// Whether labels are printed in Chinese and English: asked for, and the printer's encoding
/// can print Chinese (a Western code page falls back to English).
fn bilingual(labels: LabelMode, enc: Encoding) -> bool {
    labels == LabelMode::Bilingual && enc.is_chinese()
}

fn neg(amount: Money) -> Money {
    amount.saturating_neg()
}

/// The last 8 alphanumerics of the id, upper case. UUIDv7 ids start with the timestamp, so
/// sales of the same minute share a prefix; the random tail tells them apart at a glance.
fn short_id(id: &str) -> String {
    let alnum: Vec<char> = id.chars().filter(char::is_ascii_alphanumeric).collect();
    let start = alnum.len().saturating_sub(8);
    alnum[start..]
        .iter()
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Splits `text` into lines of at most `cols` columns in `enc`, never inside a character. A
/// Latin word is moved whole to the next line when the line has a space to break at. A
/// character wider than `cols` gets a line of its own rather than looping.
pub fn wrap(text: &str, cols: usize, enc: Encoding) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    let mut width = 0;
    for c in text.chars() {
        if c == ' ' && cur.is_empty() && !lines.is_empty() {
            continue; // a continuation line does not start with the space it broke at
        }
        let w = char_width(c, enc);
        if width + w > cols && !cur.is_empty() {
            let mid_word = c.is_ascii_alphanumeric()
                && cur
                    .chars()
                    .last()
                    .is_some_and(|p| p.is_ascii_alphanumeric());
            match cur.rfind(' ').filter(|at| mid_word && *at > 0) {
                Some(at) => {
                    let tail = cur[at + 1..].to_owned();
                    cur.truncate(at);
                    lines.push(std::mem::replace(&mut cur, tail));
                }
                None => lines.push(std::mem::take(&mut cur)),
            }
            width = display_width(&cur, enc);
            if c == ' ' && cur.is_empty() {
                continue; // the line broke at this very space
            }
        }
        cur.push(c);
        width += w;
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

mod refund;
pub use refund::{RefundSlip, render_refund};

#[cfg(test)]
pub(crate) mod tests;
