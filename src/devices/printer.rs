//! The task that owns one receipt printer.
//!
//! Jobs come from the journal's print queue (`print_jobs`), filled in the same transaction as
//! the sale, so a receipt survives a printer that is off and a daemon that is killed. The task
//! wakes on every journal commit, opens the printer (TCP, serial or an lp device file), asks its
//! status with DLE EOT where the transport can answer, sends each job's bytes and removes the
//! job. A printer that is away is retried with a backoff; the sale never waits for it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Context;
use super::bus::DeviceState;
use super::escpos::{EscPos, Status, StatusRequest, parse_status};
use super::receipt::{MemberBlock, ReceiptInput, render};
use crate::config::{DeviceConfig, PrinterOptions, Transport};
use crate::domain::event::EventBody;
use crate::domain::sale::{PaymentMethod, Sale};
use crate::journal::store::{self, PrintJob};
use crate::ledger::Command;

/// How long a printer gets to answer a status request.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// How long to wait for a connection or a write.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A queued receipt printed later than this does not open the drawer.
const DRAWER_WINDOW: chrono::Duration = chrono::Duration::minutes(2);

/// An open printer.
enum Conn {
    Tcp(TcpStream),
    Serial(tokio_serial::SerialStream),
    File(tokio::fs::File),
}

impl Conn {
    async fn open(transport: &Transport) -> Result<Conn, String> {
        let open = async {
            match transport {
                Transport::Tcp { address } => TcpStream::connect(address.as_str())
                    .await
                    .map(Conn::Tcp)
                    .map_err(|e| format!("connecting to {address}: {e}")),
                Transport::Serial { path, baud } => {
                    use tokio_serial::SerialPortBuilderExt;
                    tokio_serial::new(path.to_string_lossy(), *baud)
                        .open_native_async()
                        .map(Conn::Serial)
                        .map_err(|e| format!("opening {}: {e}", path.display()))
                }
                Transport::File { path } => tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .await
                    .map(Conn::File)
                    .map_err(|e| format!("opening {}: {e}", path.display())),
                Transport::Hid { path } => {
                    Err(format!("{} is not a printer transport", path.display()))
                }
            }
        };
        tokio::time::timeout(IO_TIMEOUT, open)
            .await
            .map_err(|_| "the printer did not answer in time".to_string())?
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        let io = async {
            match self {
                Conn::Tcp(s) => write_flush(s, bytes).await,
                Conn::Serial(s) => write_flush(s, bytes).await,
                Conn::File(f) => write_flush(f, bytes).await,
            }
        };
        tokio::time::timeout(IO_TIMEOUT, io)
            .await
            .map_err(|_| "writing to the printer timed out".to_string())?
            .map_err(|e| format!("writing to the printer: {e}"))
    }

    /// Asks one DLE EOT status; `None` when the transport cannot answer or the printer is
    /// silent (many cheap printers never answer).
    async fn status(&mut self, req: StatusRequest) -> Result<Option<u8>, String> {
        let mut cmd = EscPos::new(super::escpos::Encoding::CP437);
        cmd.status_request(req);
        let bytes = cmd.into_bytes();
        match self {
            Conn::Tcp(s) => ask(s, &bytes).await,
            Conn::Serial(s) => ask(s, &bytes).await,
            Conn::File(_) => Ok(None),
        }
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
) -> Result<Option<u8>, String> {
    write_flush(s, req)
        .await
        .map_err(|e| format!("asking the printer's status: {e}"))?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(STATUS_TIMEOUT, s.read(&mut byte)).await {
        Err(_) => Ok(None),
        Ok(Ok(0)) => Err("the printer closed the connection".into()),
        Ok(Ok(_)) => Ok(Some(byte[0])),
        Ok(Err(e)) => Err(format!("reading the printer's status: {e}")),
    }
}

/// What the printer says about itself.
async fn check(conn: &mut Conn) -> Result<(DeviceState, Option<String>), String> {
    let Some(b) = conn.status(StatusRequest::Printer).await? else {
        return Ok((DeviceState::Ready, None));
    };
    let offline = matches!(
        parse_status(StatusRequest::Printer, b),
        Ok(Status::Printer { offline: true, .. })
    );
    let paper = match conn.status(StatusRequest::PaperSensor).await? {
        Some(b) => matches!(
            parse_status(StatusRequest::PaperSensor, b),
            Ok(Status::Paper { end: true, .. })
        ),
        None => false,
    };
    if paper {
        return Ok((DeviceState::PaperOut, Some("out of paper".into())));
    }
    if offline {
        let cause = match conn.status(StatusRequest::OfflineCause).await? {
            Some(b) => match parse_status(StatusRequest::OfflineCause, b) {
                Ok(Status::OfflineCause {
                    cover_open: true, ..
                }) => "cover open",
                Ok(Status::OfflineCause {
                    paper_end_stop: true,
                    ..
                }) => "out of paper",
                _ => "printer offline",
            },
            None => "printer offline",
        };
        let state = if cause == "out of paper" || cause == "cover open" {
            DeviceState::PaperOut
        } else {
            DeviceState::Error
        };
        return Ok((state, Some(cause.into())));
    }
    Ok((DeviceState::Ready, None))
}

/// Runs the printer until `shutdown`.
pub(super) async fn run(ctx: Context, dev: DeviceConfig, shutdown: CancellationToken) {
    let Some(opts) = dev.printer.clone() else {
        return;
    };
    let mut seq = ctx.ledger.subscribe_seq();
    let mut backoff = Duration::from_millis(500);
    let mut health = tokio::time::interval(Duration::from_secs(30));
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let jobs = match ctx
            .journal
            .with({
                let id = dev.id.clone();
                move |c| store::pending_prints(c, &id, 50)
            })
            .await
        {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(device = %dev.id, error = %e, "cannot read the print queue");
                Vec::new()
            }
        };
        let check_only = jobs.is_empty();
        if check_only {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = seq.changed() => continue,
                _ = health.tick() => {}
            }
        }
        match serve(&ctx, &dev, &opts, &jobs).await {
            Ok(()) => backoff = Duration::from_millis(500),
            Err((state, reason)) => {
                ctx.report(&dev, state, Some(reason)).await;
                if check_only {
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Opens the printer, checks it, prints `jobs`. An error says which state the printer is in.
async fn serve(
    ctx: &Context,
    dev: &DeviceConfig,
    opts: &PrinterOptions,
    jobs: &[PrintJob],
) -> Result<(), (DeviceState, String)> {
    let mut conn = Conn::open(&dev.transport)
        .await
        .map_err(|e| (DeviceState::Offline, e))?;
    if opts.status_query {
        let (state, reason) = check(&mut conn)
            .await
            .map_err(|e| (DeviceState::Offline, e))?;
        if state != DeviceState::Ready {
            return Err((state, reason.unwrap_or_default()));
        }
    }
    ctx.report(dev, DeviceState::Ready, None).await;
    for job in jobs {
        let bytes = match job_bytes(ctx, opts, job).await {
            Ok(b) => b,
            Err(e) => {
                // A job that cannot be rendered (its sale is gone) would block the queue.
                tracing::error!(device = %dev.id, job = job.id, error = %e, "dropping an unprintable job");
                ctx.bus.rejected(&dev.id);
                Vec::new()
            }
        };
        if !bytes.is_empty() {
            conn.write(&bytes)
                .await
                .map_err(|e| (DeviceState::Offline, e))?;
            ctx.bus.handled(&dev.id);
        }
        if let Err(e) = ctx
            .ledger
            .execute(ctx.actor(), Command::PrintDone { job_id: job.id })
            .await
        {
            // The bytes went out; if the job stays queued it prints again. Better twice than never.
            tracing::error!(device = %dev.id, job = job.id, error = %e, "cannot mark a job printed");
        }
    }
    Ok(())
}

/// The bytes of one job.
async fn job_bytes(
    ctx: &Context,
    opts: &PrinterOptions,
    job: &PrintJob,
) -> Result<Vec<u8>, String> {
    if job.kind == "drawer" {
        let Some(pin) = opts.drawer else {
            return Ok(Vec::new());
        };
        let mut cmd = EscPos::new(opts.encoding);
        cmd.drawer_kick(pin);
        return Ok(cmd.into_bytes());
    }
    let sale_id = job.sale_id.clone();
    let store_id = ctx.settings.store_id.clone();
    let codec = ctx.cache.codec().clone();
    let events = ctx
        .journal
        .with(move |c| {
            store::sale_events(c, &sale_id)?
                .iter()
                .map(|r| r.decode(c, &store_id, &codec))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| e.to_string())?;
    let sale = events
        .into_iter()
        .find_map(|e| match e.body {
            EventBody::SaleRecorded(s) => Some(*s),
            _ => None,
        })
        .ok_or_else(|| format!("sale {} is not in the journal", job.sale_id))?;
    let phone = match &sale.member_id {
        Some(id) => ctx
            .cache
            .member(id)
            .ok()
            .flatten()
            .and_then(|m| m.profile.map(|p| p.phone))
            .unwrap_or_else(|| "***".into()),
        None => String::new(),
    };
    let reprint = job.kind == "reprint";
    let queued_at = DateTime::parse_from_rfc3339(&job.created_at)
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    let cash = sale
        .payments
        .iter()
        .any(|p| p.method == PaymentMethod::Cash);
    // A receipt that waited for its printer does not open the drawer long after the sale.
    let kick = (cash && !reprint && Utc::now() - queued_at < DRAWER_WINDOW)
        .then_some(opts.drawer)
        .flatten();
    let qr = opts.qr_template.as_deref().map(|t| fill_qr(t, &sale));
    Ok(render(&ReceiptInput {
        store_name: &ctx.settings.store_name,
        header_lines: &opts.header_lines,
        sale: &sale,
        member: MemberBlock::from_sale(&phone, &sale),
        reprint,
        encoding: opts.encoding,
        paper: opts.paper,
        labels: opts.labels,
        qr: qr.as_deref(),
        drawer_kick: kick,
    }))
}

/// Fills the QR template: `{sale_id}`, `{store_id}`, `{seq}`, `{total}`.
fn fill_qr(template: &str, sale: &Sale) -> String {
    template
        .replace("{sale_id}", &sale.id)
        .replace("{store_id}", &sale.store_id)
        .replace("{seq}", &sale.seq.to_string())
        .replace("{total}", &sale.total.to_string())
}
