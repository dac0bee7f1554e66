//! The task that owns one scanner or card reader.
//!
//! Serial devices are read as lines (the configured suffix ends a line); USB keyboard wedges are
//! read through evdev with an exclusive grab, so their keystrokes never reach a console, and
//! decoded by [`KeyDecoder`]. A line left unfinished for [`LINE_GAP`], or by the device going
//! away, is dropped and counted as rejected. A serial read of 0 bytes means the device went
//! away (unplugged, or the other end of a pty closed): the task reports it offline and reopens
//! with a backoff until it is back.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::bus::{CardMember, DeviceEvent, DeviceState, ScannedProduct};
use super::keymap::{KeyDecoder, KeyEvent};
use super::scan::{classify_scan, parse_card};
use crate::config::{DeviceConfig, DeviceKind, Transport};
use crate::domain::catalog::upc_e_to_upc_a;
use crate::domain::contact::mask_phone;
use crate::domain::member::LevelRef;

/// Longest line kept while waiting for its terminator; beyond it the line is garbage.
const MAX_LINE: usize = 256;
/// A line still unfinished this long after its last byte is dropped (and counted rejected):
/// scanners and readers send a code's bytes within milliseconds, so the rest of a read cut
/// short is not coming, and the next scan must not be glued to it.
const LINE_GAP: Duration = Duration::from_millis(300);
/// First reopen delay; doubles up to [`MAX_BACKOFF`], back to the start after a healthy minute.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const HEALTHY: Duration = Duration::from_secs(60);

/// Runs a scanner or card reader until `shutdown`.
pub(super) async fn run(ctx: Context, dev: DeviceConfig, shutdown: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let opened = Instant::now();
        let reason = match &dev.transport {
            Transport::Serial { path, baud } => serial(&ctx, &dev, path, *baud, &shutdown).await,
            Transport::Hid { path } => hid(&ctx, &dev, path, &shutdown).await,
            other => Err(format!("{} cannot carry a {:?}", other.name(), dev.kind)),
        };
        let Err(reason) = reason else { return };
        if opened.elapsed() > HEALTHY {
            backoff = MIN_BACKOFF;
        }
        ctx.report(&dev, DeviceState::Offline, Some(reason)).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads a serial device until it fails (`Err` with why) or shutdown (`Ok`).
async fn serial(
    ctx: &Context,
    dev: &DeviceConfig,
    path: &std::path::Path,
    baud: u32,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    use tokio_serial::SerialPortBuilderExt;
    let mut port = tokio_serial::new(path.to_string_lossy(), baud)
        .open_native_async()
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    ctx.report(dev, DeviceState::Ready, None).await;
    let mut line: Vec<u8> = Vec::with_capacity(64);
    let mut garbage = false;
    // The last byte ended a line with CR: an LF now is the rest of that line end.
    let mut after_cr = false;
    let mut buf = [0u8; 512];
    loop {
        let partial = !line.is_empty() || garbage;
        let read = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = port.read(&mut buf) => r,
            _ = tokio::time::sleep(LINE_GAP), if partial => {
                // A read cut short (power blip, cable): not glued to the next scan.
                if cut_short(&line, garbage) {
                    ctx.bus.rejected(&dev.id);
                    tracing::debug!(device = %dev.id, bytes = line.len(), "unfinished input dropped after a pause");
                }
                line.clear();
                garbage = false;
                continue;
            }
        };
        let n = match read {
            Ok(n) if n > 0 => n,
            end => {
                // A line the device went away in the middle of was cut short too.
                if cut_short(&line, garbage) {
                    ctx.bus.rejected(&dev.id);
                }
                return Err(match end {
                    Err(e) => format!("reading {}: {e}", path.display()),
                    Ok(_) => format!("{} went away", path.display()),
                });
            }
        };
        for &b in &buf[..n] {
            let crlf = after_cr && b == b'\n';
            after_cr = false;
            if dev.line_end.ends_line(b) {
                after_cr = b == b'\r';
                if crlf && line.is_empty() && !garbage {
                    continue;
                }
                if garbage {
                    ctx.bus.rejected(&dev.id);
                    tracing::debug!(device = %dev.id, "over-long input rejected");
                } else {
                    handle_line(ctx, dev, &line).await;
                }
                line.clear();
                garbage = false;
            } else if line.len() >= MAX_LINE {
                garbage = true;
            } else {
                line.push(b);
            }
        }
    }
}

/// Whether what is left of a line when it ends unfinished (a pause, the device gone) was a
/// read cut short, counted as rejected. Bare white space is the rest of a line end (the LF of
/// a CR LF when the suffix is CR), dropped without counting.
fn cut_short(line: &[u8], garbage: bool) -> bool {
    garbage || !line.trim_ascii().is_empty()
}

/// Reads an evdev keyboard wedge until it fails or shutdown.
async fn hid(
    ctx: &Context,
    dev: &DeviceConfig,
    path: &std::path::Path,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut device =
        evdev::Device::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    // Exclusive: the scanner's keystrokes must not also type into a console or a POS app.
    device
        .grab()
        .map_err(|e| format!("grabbing {}: {e}", path.display()))?;
    let mut events = device
        .into_event_stream()
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    ctx.report(dev, DeviceState::Ready, None).await;
    let mut decoder = KeyDecoder::new();
    loop {
        let partial = decoder.has_partial();
        let ev = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = events.next_event() => r.map_err(|e| {
                // A line the device went away in the middle of was cut short.
                if partial {
                    ctx.bus.rejected(&dev.id);
                }
                format!("reading {}: {e}", path.display())
            })?,
            _ = tokio::time::sleep(LINE_GAP), if partial => {
                decoder.drop_partial();
                ctx.bus.rejected(&dev.id);
                tracing::debug!(device = %dev.id, "unfinished input dropped after a pause");
                continue;
            }
        };
        if ev.event_type() != evdev::EventType::KEY {
            continue;
        }
        if let Some(line) = decoder.feed(KeyEvent {
            code: ev.code(),
            value: ev.value(),
        }) {
            handle_line(ctx, dev, &line).await;
        }
    }
}

/// Turns one line into a scan or card event for the device's terminal, or counts it rejected.
/// Like an HTTP request, it first waits for the cache to show every sale answered before it.
async fn handle_line(ctx: &Context, dev: &DeviceConfig, line: &[u8]) {
    ctx.ledger.caught_up().await;
    let at = Utc::now();
    let event = match dev.kind {
        DeviceKind::Scanner => match classify_scan(line) {
            Ok(scan) => {
                let by_code = |code: &str| ctx.cache.product_by_barcode(code).ok().flatten();
                // Eight digits may be a UPC-E, whose product is filed under its UPC-A.
                let product = by_code(&scan.code)
                    .or_else(|| upc_e_to_upc_a(&scan.code).and_then(|a| by_code(&a)))
                    .map(|p| ScannedProduct {
                        price: p.unit_price_at(ctx.settings.local(at)),
                        sku: p.sku,
                        name: p.name,
                    });
                DeviceEvent::Scan {
                    device: dev.id.clone(),
                    terminal: dev.terminal.clone(),
                    code: scan.code,
                    symbology: scan.symbology,
                    product,
                    at,
                }
            }
            Err(why) => {
                ctx.bus.rejected(&dev.id);
                tracing::debug!(device = %dev.id, %why, "scan rejected");
                return;
            }
        },
        DeviceKind::CardReader => match parse_card(line) {
            Ok(card_no) => {
                // A cache that cannot be read is not an unknown card: told so, the till would
                // offer to register the member again.
                let (member, looked_up) = match ctx.cache.member_by_card(&card_no) {
                    Ok(m) => (m, true),
                    Err(e) => {
                        tracing::error!(device = %dev.id, error = %e,
                            "card read: the member could not be read from the cache");
                        (None, false)
                    }
                };
                let rules = ctx.settings.rules();
                let today = ctx.settings.local_date(at);
                let member = member
                    .filter(|m| m.erased_at.is_none())
                    .map(|m| CardMember {
                        level: m.effective_level(&rules, today).map(LevelRef::from),
                        name: m.profile.as_ref().map(|p| p.name.clone()),
                        phone: m.profile.as_ref().map(|p| mask_phone(&p.phone)),
                        id: m.id,
                    });
                DeviceEvent::Card {
                    device: dev.id.clone(),
                    terminal: dev.terminal.clone(),
                    unknown_card: looked_up && member.is_none(),
                    card_no,
                    member,
                    at,
                }
            }
            Err(why) => {
                ctx.bus.rejected(&dev.id);
                tracing::debug!(device = %dev.id, %why, "card read rejected");
                return;
            }
        },
        DeviceKind::Printer => return,
    };
    ctx.bus.handled(&dev.id);
    ctx.bus.publish(event);
}
