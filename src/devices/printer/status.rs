//! What a printer says about itself: DLE EOT status requests and what their answers mean.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use super::{ANSWER_TIMEOUT, Conn, IO_TIMEOUT, STATUS_TIMEOUT, write_paced};
use crate::devices::bus::DeviceState;
use crate::devices::escpos::{Status, StatusRequest, is_status_reply, parse_status};

/// A printer that answered DLE EOT before and now does not.
const SILENT: &str = "the printer no longer answers its status (hung?); the jobs wait";

pub(super) async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    wait: Duration,
) -> Result<Option<u8>, String> {
    tokio::time::timeout(IO_TIMEOUT, write_paced(s, req))
        .await
        .map_err(|_| "asking the printer's status timed out".to_string())?
        .map_err(|e| format!("asking the printer's status: {e}"))?;
    // A byte without the fixed bits of a DLE EOT reply (an XON of software flow control, line
    // noise) is not the answer: the reply may come right after it.
    let deadline = tokio::time::Instant::now() + wait;
    let mut byte = [0u8; 1];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut byte)).await {
            Err(_) => return Ok(None),
            Ok(Ok(0)) => return Err("the printer closed the connection".into()),
            Ok(Ok(_)) if is_status_reply(byte[0]) => return Ok(Some(byte[0])),
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(format!("reading the printer's status: {e}")),
        }
    }
}

/// What the printer says about itself. A printer that never answered is given
/// [`STATUS_TIMEOUT`] and, silent, assumed ready (many cheap printers never answer); one that
/// has answered since it was last unreachable (`answers`) is given [`ANSWER_TIMEOUT`] and,
/// silent now, is offline: its firmware hangs while its network interface still accepts.
pub(super) async fn check(
    conn: &mut Conn<'_>,
    answers: &mut bool,
) -> Result<(DeviceState, Option<String>), String> {
    let wait = if *answers {
        ANSWER_TIMEOUT
    } else {
        STATUS_TIMEOUT
    };
    // Only a status reply is an answer: a stray byte (the XON of software flow control, line
    // noise) must not make a printer that never answers look hung when it is silent next time.
    let reply = conn
        .status(StatusRequest::Printer, wait)
        .await?
        .and_then(|b| parse_status(StatusRequest::Printer, b).ok());
    let Some(status) = reply else {
        if *answers {
            return Ok((DeviceState::Offline, Some(SILENT.into())));
        }
        return Ok((DeviceState::Ready, None));
    };
    *answers = true;
    let offline = matches!(status, Status::Printer { offline: true, .. });
    let paper = match conn
        .status(StatusRequest::PaperSensor, STATUS_TIMEOUT)
        .await?
    {
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
        let cause = match conn
            .status(StatusRequest::OfflineCause, STATUS_TIMEOUT)
            .await?
        {
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
