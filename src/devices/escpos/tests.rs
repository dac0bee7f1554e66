use super::*;

fn built(f: impl FnOnce(&mut EscPos), enc: Encoding) -> Vec<u8> {
    let mut p = EscPos::new(enc);
    f(&mut p);
    p.into_bytes()
}

#[test]
fn status_replies_from_the_notes() {
    use StatusRequest::*;
    let ok = parse_status(Printer, 0x12);
    assert!(matches!(ok, Ok(Status::Printer { offline: false, .. })));
    assert!(!ok.is_ok_and(|s| s.needs_attention()));
    let offline = parse_status(Printer, 0x1A);
    assert!(matches!(offline, Ok(Status::Printer { offline: true, .. })));
    let cover = parse_status(OfflineCause, 0x16);
    assert!(matches!(
        cover,
        Ok(Status::OfflineCause {
            cover_open: true,
            paper_end_stop: false,
            ..
        })
    ));
    let stop = parse_status(OfflineCause, 0x32);
    assert!(matches!(
        stop,
        Ok(Status::OfflineCause {
            cover_open: false,
            paper_end_stop: true,
            ..
        })
    ));
    let out = parse_status(PaperSensor, 0x72);
    assert_eq!(
        out,
        Ok(Status::Paper {
            near_end: false,
            end: true
        })
    );
    assert!(out.is_ok_and(|s| s.needs_attention()));
    let near = parse_status(PaperSensor, 0x1E);
    assert_eq!(
        near,
        Ok(Status::Paper {
            near_end: true,
            end: false
        })
    );
    assert!(
        !near.is_ok_and(|s| s.needs_attention()),
        "near end still prints"
    );
    assert_eq!(
        parse_status(PaperSensor, 0x12),
        Ok(Status::Paper {
            near_end: false,
            end: false
        })
    );
    assert_eq!(
        parse_status(Printer, 0xFF),
        Err(StatusError::NotAStatusReply(0xFF))
    );
    assert_eq!(
        parse_status(Printer, 0x00),
        Err(StatusError::NotAStatusReply(0x00))
    );
}

#[test]
fn commands_have_their_exact_bytes() {
    let gb = built(
        |p| {
            p.init();
        },
        Encoding::Gb18030,
    );
    assert_eq!(gb, [0x1B, 0x40, 0x1C, 0x26]);
    let cp = built(
        |p| {
            p.init();
        },
        Encoding::CP858,
    );
    assert_eq!(cp, [0x1B, 0x40, 0x1C, 0x2E, 0x1B, 0x74, 19]);
    let b = built(
        |p| {
            p.drawer_kick(DrawerPin::Pin2)
                .drawer_kick(DrawerPin::Pin5)
                .cut_with_feed(0);
            p.status_request(StatusRequest::OfflineCause)
                .size(2, 2)
                .bold(true)
                .align(Align::Center);
        },
        Encoding::Gb18030,
    );
    let want = [
        0x1B, 0x70, 0x00, 0x19, 0xFA, 0x1B, 0x70, 0x01, 0x19, 0xFA, 0x1D, 0x56, 0x42, 0x00, 0x10,
        0x04, 0x02, 0x1D, 0x21, 0x11, 0x1B, 0x45, 0x01, 0x1B, 0x61, 0x01,
    ];
    assert_eq!(b, want);
}

#[test]
fn qr_framing_matches_the_reference_bytes() {
    let b = built(
        |p| {
            assert!(p.qr("HELLO", 6).is_ok());
        },
        Encoding::Gb18030,
    );
    let want = [
        0x1D, 0x28, 0x6B, 0x04, 0x00, 0x31, 0x41, 0x32, 0x00, // model 2
        0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x43, 0x06, // module 6
        0x1D, 0x28, 0x6B, 0x03, 0x00, 0x31, 0x45, 0x31, // M
        0x1D, 0x28, 0x6B, 0x08, 0x00, 0x31, 0x50, 0x30, b'H', b'E', b'L', b'L', b'O', 0x1D, 0x28,
        0x6B, 0x03, 0x00, 0x31, 0x51, 0x30, // print
    ];
    assert_eq!(b, want);
    let mut p = EscPos::new(Encoding::Gb18030);
    assert_eq!(p.qr("", 6).err(), Some(QrError::Empty));
    assert_eq!(
        p.qr(&"x".repeat(3000), 6).err(),
        Some(QrError::TooLong(3000))
    );
    assert!(p.as_bytes().is_empty(), "a refused QR code leaves no bytes");
}

#[test]
fn gbk_text_uses_full_width_yuan_and_no_four_byte_codes() {
    let b = Encoding::Gb18030.encode("收银 ¥12.50");
    assert_eq!(
        b,
        [
            0xCA, 0xD5, 0xD2, 0xF8, 0x20, 0xA3, 0xA4, b'1', b'2', b'.', b'5', b'0'
        ]
    );
    // Ext-B, € (CP936 0x80), private use: nothing the printer would misprint.
    assert_eq!(Encoding::Gb18030.encode("𠀀€\u{E000}"), b"???");
    assert_eq!(
        Encoding::Gb18030.encode("a\x1B@\n"),
        b"a @ ",
        "controls never reach the printer"
    );
}

#[test]
fn code_pages_replace_what_they_lack() {
    assert_eq!(
        Encoding::CP858.encode("€ é ¥"),
        [0xD5, b' ', 0x82, b' ', 0xBE]
    );
    assert_eq!(Encoding::CP437.encode("¥€上"), [0x9D, b'?', b'?']);
    for page in [CodePage::Cp437, CodePage::Cp858] {
        assert_eq!(page.high_half().chars().count(), 128);
        for b in 0x80..=0xFF_u8 {
            assert_eq!(
                page.encode_char(page.decode_byte(b)),
                Some(b),
                "{page:?} {b:02X}"
            );
        }
    }
}

#[test]
fn widths_follow_the_bytes_not_unicode() {
    let gb = Encoding::Gb18030;
    assert_eq!(display_width("Total", gb), 5);
    assert_eq!(display_width("合计", gb), 4);
    assert_eq!(
        display_width("é·—￥¥", gb),
        10,
        "GBK Latin and punctuation print full width"
    );
    assert_eq!(display_width("𠀀", gb), 1, "replaced by ?");
    assert_eq!(display_width("é上", Encoding::CP858), 2);
}

#[test]
fn invisible_characters_print_as_nothing() {
    let text = "可乐\u{200B}★\u{FE0F}\u{202C}\u{FEFF}";
    assert_eq!(
        Encoding::Gb18030.encode(text),
        Encoding::Gb18030.encode("可乐★")
    );
    assert_eq!(display_width(text, Encoding::Gb18030), 6);
    assert_eq!(Encoding::CP437.encode("a\u{200B}b\u{FE0F}"), b"ab");
    assert_eq!(display_width("a\u{200B}b", Encoding::CP437), 2);
}
