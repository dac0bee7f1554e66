//! `[[devices]]`: scanners, card readers and receipt printers (design section 6).

use std::path::PathBuf;

use serde::Deserialize;

use super::{Invalid, bad, valid_id};
use crate::devices::escpos::{DrawerPin, Encoding};
use crate::devices::receipt::{LabelMode, PaperWidth};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    id: String,
    kind: DeviceKind,
    terminal: String,
    transport: TransportKind,
    #[serde(default)]
    path: Option<PathBuf>,
    #[serde(default)]
    baud: Option<u32>,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    suffix: Option<LineEnd>,
    #[serde(default)]
    paper: Option<String>,
    #[serde(default)]
    columns: Option<usize>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    code_page: Option<u8>,
    #[serde(default)]
    labels: Option<String>,
    #[serde(default)]
    drawer_pin: Option<u8>,
    #[serde(default)]
    header_lines: Vec<String>,
    #[serde(default)]
    qr: Option<String>,
    #[serde(default)]
    status: Option<bool>,
}

/// What a device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Barcode scanner.
    Scanner,
    /// Member-card reader (magstripe or card UID).
    CardReader,
    /// ESC/POS receipt printer (with its cash drawer).
    Printer,
}

impl DeviceKind {
    /// The kind's name as in config.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Scanner => "scanner",
            DeviceKind::CardReader => "card_reader",
            DeviceKind::Printer => "printer",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TransportKind {
    Serial,
    Hid,
    Tcp,
    File,
}

/// How storebox reaches a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A serial port (USB-serial adapters included) at `baud`.
    Serial {
        /// Device path; prefer a stable `/dev/serial/by-id/...` name.
        path: PathBuf,
        /// Speed.
        baud: u32,
    },
    /// A USB keyboard-wedge read through evdev with an exclusive grab.
    Hid {
        /// `/dev/input/by-id/...-event-kbd`.
        path: PathBuf,
    },
    /// A network printer (raw TCP, usually port 9100).
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A printer device file such as `/dev/usb/lp0`.
    File {
        /// Device path.
        path: PathBuf,
    },
}

impl Transport {
    /// Short name for `/v1/devices`.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Serial { .. } => "serial",
            Transport::Hid { .. } => "hid",
            Transport::Tcp { .. } => "tcp",
            Transport::File { .. } => "file",
        }
    }

    /// The device path, for all but TCP.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Transport::Serial { path, .. } | Transport::Hid { path } | Transport::File { path } => {
                Some(path)
            }
            Transport::Tcp { .. } => None,
        }
    }

    /// Where: path or address.
    pub fn target(&self) -> String {
        match self {
            Transport::Serial { path, .. } | Transport::Hid { path } | Transport::File { path } => {
                path.display().to_string()
            }
            Transport::Tcp { address } => address.clone(),
        }
    }
}

/// What ends a scanned or swiped line on a serial device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LineEnd {
    /// `\r` (the usual factory setting).
    #[default]
    Cr,
    /// `\n`.
    Lf,
    /// `\r\n`.
    CrLf,
    /// Tab.
    Tab,
}

impl LineEnd {
    /// Whether `b` ends a line. CR and LF both do unless the suffix is a tab: no code or swipe
    /// holds either, and a scanner set to LF (or CR LF) on a port configured `cr` — a scanner
    /// swapped for another model — lost every scan to the 300 ms gap. The LF of a CR LF then
    /// ends an empty line, which the reader drops without counting.
    pub fn ends_line(self, b: u8) -> bool {
        match self {
            LineEnd::Cr | LineEnd::Lf | LineEnd::CrLf => b == b'\r' || b == b'\n',
            LineEnd::Tab => b == b'\t',
        }
    }
}

/// Receipt printer settings.
#[derive(Debug, Clone)]
pub struct PrinterOptions {
    /// Paper width (or columns).
    pub paper: PaperWidth,
    /// Text encoding: GB18030 (Chinese printers) or a Western code page.
    pub encoding: Encoding,
    /// Label language.
    pub labels: LabelMode,
    /// Cash drawer connector; `None` when there is no drawer.
    pub drawer: Option<DrawerPin>,
    /// Lines under the store name (address, phone, slogan).
    pub header_lines: Vec<String>,
    /// QR content template: `{sale_id}`, `{store_id}`, `{seq}`, `{total}` are filled in.
    pub qr_template: Option<String>,
    /// Ask the printer's status (DLE EOT) before each job where the transport allows.
    pub status_query: bool,
}

/// One configured device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Device id (`scanner-1`).
    pub id: String,
    /// What it is.
    pub kind: DeviceKind,
    /// The terminal it serves: scans go to that terminal's event stream, its sales print here.
    pub terminal: String,
    /// How it is reached.
    pub transport: Transport,
    /// Line end of scanner and card-reader input.
    pub line_end: LineEnd,
    /// Printer settings (printers only).
    pub printer: Option<PrinterOptions>,
}

pub(super) fn to_devices(
    raw: Vec<RawDevice>,
    terminals: &[String],
) -> Result<Vec<DeviceConfig>, Invalid> {
    let mut out: Vec<DeviceConfig> = Vec::with_capacity(raw.len());
    for (i, d) in raw.into_iter().enumerate() {
        let key = |f: &str| format!("devices[{i}].{f}");
        if !valid_id(&d.id) {
            return Err(bad(
                key("id"),
                "must be 1–32 lower-case letters, digits, '-' or '_'",
            ));
        }
        if out.iter().any(|o| o.id == d.id) {
            return Err(bad(key("id"), format!("duplicate device id {}", d.id)));
        }
        if !terminals.contains(&d.terminal) {
            return Err(bad(
                key("terminal"),
                format!("no terminal {} in [[terminals]]", d.terminal),
            ));
        }
        let path = |what: &str| {
            d.path
                .clone()
                .filter(|p| !p.as_os_str().is_empty())
                .ok_or_else(|| bad(key("path"), format!("a {what} device needs a path")))
        };
        let transport = match d.transport {
            TransportKind::Serial => {
                let baud = d.baud.unwrap_or(9600);
                if !(300..=4_000_000).contains(&baud) {
                    return Err(bad(key("baud"), "must be 300..=4000000"));
                }
                Transport::Serial {
                    path: path("serial")?,
                    baud,
                }
            }
            TransportKind::Hid => Transport::Hid { path: path("hid")? },
            TransportKind::File => Transport::File {
                path: path("file")?,
            },
            TransportKind::Tcp => {
                let address = d
                    .address
                    .clone()
                    .filter(|a| {
                        a.rsplit_once(':').is_some_and(|(h, p)| {
                            !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0)
                        })
                    })
                    .ok_or_else(|| {
                        bad(
                            key("address"),
                            "a tcp device needs an address like 192.168.1.50:9100",
                        )
                    })?;
                Transport::Tcp { address }
            }
        };
        if let Some(o) = out.iter().find(|o| same_port(&o.transport, &transport)) {
            let what = match transport {
                Transport::Tcp { .. } => "address",
                _ => "path",
            };
            return Err(bad(
                key(what),
                format!(
                    "device {} already uses it (two devices cannot share one port)",
                    o.id
                ),
            ));
        }
        let allowed = match d.kind {
            DeviceKind::Printer => matches!(
                transport,
                Transport::Tcp { .. } | Transport::Serial { .. } | Transport::File { .. }
            ),
            DeviceKind::Scanner | DeviceKind::CardReader => {
                matches!(transport, Transport::Serial { .. } | Transport::Hid { .. })
            }
        };
        if !allowed {
            return Err(bad(
                key("transport"),
                "scanners and card readers use serial or hid; printers use tcp, serial or file",
            ));
        }
        let printer = if d.kind == DeviceKind::Printer {
            Some(printer_options(&d, &key)?)
        } else {
            None
        };
        out.push(DeviceConfig {
            id: d.id,
            kind: d.kind,
            terminal: d.terminal,
            transport,
            line_end: d.suffix.unwrap_or_default(),
            printer,
        });
    }
    let mut printers: Vec<&str> = out
        .iter()
        .filter(|d| d.kind == DeviceKind::Printer)
        .map(|d| d.terminal.as_str())
        .collect();
    printers.sort_unstable();
    if let Some(w) = printers.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(
            "devices",
            format!("terminal {} has two printers", w[0]),
        ));
    }
    Ok(out)
}

/// Whether two transports open the same port: one serial line, HID node, file or printer
/// address cannot be read or written by two devices. Paths as written: two that resolve to one
/// port are warned about ([`Config::devices_sharing_a_port`]), not refused.
fn same_port(a: &Transport, b: &Transport) -> bool {
    let tcp = |t: &Transport| matches!(t, Transport::Tcp { .. });
    match (tcp(a), tcp(b)) {
        // Host names are case-insensitive; paths are not.
        (true, true) => a.target().eq_ignore_ascii_case(&b.target()),
        (false, false) => a.target() == b.target(),
        _ => false,
    }
}

impl super::Config {
    /// Devices whose paths, as they resolve now, are one port — `/dev/ttyUSB0` and a
    /// `/dev/serial/by-id/...` link to it: each would read part of every scan. One sentence
    /// each, for `check-config` and the start's log. Not refused: USB ports are numbered anew
    /// at a boot, and a by-id link that now points at another device's `ttyUSBn` must not keep
    /// the whole till from starting.
    pub fn devices_sharing_a_port(&self) -> Vec<String> {
        let resolved: Vec<(&DeviceConfig, std::path::PathBuf)> = self
            .devices
            .iter()
            .filter_map(|d| Some((d, std::fs::canonicalize(d.transport.path()?).ok()?)))
            .collect();
        let mut out = Vec::new();
        for (i, (a, pa)) in resolved.iter().enumerate() {
            for (b, pb) in &resolved[i + 1..] {
                if pa == pb {
                    out.push(format!(
                        "devices {} ({}) and {} ({}) are one port, {}: each reads part of every \
                         scan; name each device by its own /dev/serial/by-id/ link",
                        a.id,
                        a.transport.target(),
                        b.id,
                        b.transport.target(),
                        pa.display()
                    ));
                }
            }
        }
        out
    }
}

fn printer_options(d: &RawDevice, key: &dyn Fn(&str) -> String) -> Result<PrinterOptions, Invalid> {
    let paper = match (d.paper.as_deref(), d.columns) {
        (_, Some(c)) if !(16..=128).contains(&c) => {
            return Err(bad(key("columns"), "must be 16..=128"));
        }
        (_, Some(c)) => PaperWidth::Columns(c),
        (None | Some("80mm"), None) => PaperWidth::Mm80,
        (Some("58mm"), None) => PaperWidth::Mm58,
        (Some(other), None) => {
            return Err(bad(key("paper"), format!("'{other}' is not 58mm or 80mm")));
        }
    };
    let encoding = match (d.encoding.as_deref().unwrap_or("gb18030"), d.code_page) {
        ("gb18030", None) => Encoding::Gb18030,
        ("gb18030", Some(_)) => {
            return Err(bad(key("code_page"), "code_page is for cp437 or cp858"));
        }
        ("cp437", n) => Encoding::Cp437 {
            esc_t: n.unwrap_or(0),
        },
        ("cp858", n) => Encoding::Cp858 {
            esc_t: n.unwrap_or(19),
        },
        (other, _) => {
            return Err(bad(
                key("encoding"),
                format!("'{other}' is not gb18030, cp437 or cp858"),
            ));
        }
    };
    let labels = match d.labels.as_deref() {
        None | Some("bilingual") => LabelMode::Bilingual,
        Some("english") => LabelMode::English,
        Some(other) => {
            return Err(bad(
                key("labels"),
                format!("'{other}' is not bilingual or english"),
            ));
        }
    };
    let drawer = match d.drawer_pin.unwrap_or(2) {
        0 => None,
        2 => Some(DrawerPin::Pin2),
        5 => Some(DrawerPin::Pin5),
        _ => return Err(bad(key("drawer_pin"), "must be 2, 5, or 0 for no drawer")),
    };
    if d.header_lines.len() > 8 || d.header_lines.iter().any(|l| l.chars().count() > 64) {
        return Err(bad(key("header_lines"), "at most 8 lines of 64 characters"));
    }
    // A control character would reach the printer as a command (ESC, GS: drawer kicks, cuts,
    // code pages), not as text.
    if d.header_lines
        .iter()
        .any(|l| l.chars().any(char::is_control))
    {
        return Err(bad(
            key("header_lines"),
            "no control characters (one line per entry, no tabs or escapes)",
        ));
    }
    if d.qr.as_ref().is_some_and(|q| q.len() > 512) {
        return Err(bad(key("qr"), "at most 512 characters"));
    }
    if d.qr
        .as_ref()
        .is_some_and(|q| q.chars().any(char::is_control))
    {
        return Err(bad(key("qr"), "no control characters"));
    }
    Ok(PrinterOptions {
        paper,
        encoding,
        labels,
        drawer,
        header_lines: d.header_lines.clone(),
        qr_template: d.qr.clone(),
        status_query: d.status.unwrap_or(true),
    })
}
