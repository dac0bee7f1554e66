//! Leaving the broker: the clean shutdown's goodbye (retained `online: false`, then a
//! DISCONNECT), and a DISCONNECT alone — no will, so HQ sees no store going offline — when the
//! link connects again for the broker to deliver a message from HQ once more.

use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, Outgoing, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

use super::{Link, Outbox};

impl Link {
    /// Clean shutdown: retained `online: false`, wait briefly for outstanding acks, disconnect.
    pub(super) async fn goodbye(
        &self,
        client: &AsyncClient,
        ev_rx: &mut mpsc::Receiver<Result<Event, ConnectionError>>,
        outbox: &mut Outbox,
    ) {
        let _ = client.try_publish(
            self.topics.status(),
            QoS::AtLeastOnce,
            true,
            json!({"online": false}).to_string(),
        );
        outbox.submitted_status();
        self.disconnect(client, ev_rx, outbox).await;
    }

    /// Sends DISCONNECT (the broker then drops the will) and waits briefly for it to go out,
    /// taking the acknowledgements that come meanwhile.
    pub(super) async fn disconnect(
        &self,
        client: &AsyncClient,
        ev_rx: &mut mpsc::Receiver<Result<Event, ConnectionError>>,
        outbox: &mut Outbox,
    ) {
        let _ = client.try_disconnect();
        let deadline = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                ev = ev_rx.recv() => match ev {
                    Some(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => outbox.sent(pkid),
                    Some(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                        if let Some(a) = outbox.acknowledged(ack.pkid) {
                            self.parts.status.set_acked(a);
                        }
                    }
                    Some(Ok(Event::Outgoing(Outgoing::Disconnect))) | Some(Err(_)) | None => return,
                    _ => {}
                }
            }
        }
    }
}
