//! The store's retained status message: publishing this box's, and reading the one the broker
//! holds, which tells when another box runs under this store's id.
//!
//! Two boxes with one store id (a spare set up by mistake beside the store's own, a box
//! restored or cloned while the old one still runs) connect as the same client: the broker
//! closes one's connection each time the other connects, and their shared session hands each
//! of HQ's messages to whichever is connected — or, with another `client_id`, both stay
//! connected and send HQ two sets of events under one store id. Each box's status carries a
//! random id of its run (`box`), and the link subscribes to the status topic (QoS 0). Once the
//! broker has echoed this box's own status back, the retained status is this box's; a status
//! saying `online: true` under another `box` after that was published by another box since.
//! Before it (a status left by this box's own previous run, which died without its will) it
//! proves nothing. The other box is logged and reported to HQ (`device.alert`
//! `store_id_in_use`), once per other box.

use std::collections::HashSet;

use rumqttc::{AsyncClient, Publish, QoS};
use serde_json::{Value, json};

use super::super::alert;
use super::Link;
use super::Outbox;

/// What the link knows of the status messages under its store's id.
pub(super) struct Boxes {
    /// This run's id, sent as the status's `box`.
    own: String,
    /// Whether the broker has echoed this box's status back (it is then the retained one).
    own_seen: bool,
    /// Other boxes already reported.
    reported: HashSet<String>,
}

impl Boxes {
    pub(super) fn new() -> Boxes {
        Boxes {
            own: crate::ids::new_v7().to_string(),
            own_seen: false,
            reported: HashSet::new(),
        }
    }

    /// Takes in a status message; returns it when it is another box's, not yet reported.
    fn seen(&mut self, payload: &[u8]) -> Option<Value> {
        let status: Value = serde_json::from_slice(payload).ok()?;
        let other = status.get("box")?.as_str()?;
        if other == self.own {
            self.own_seen = true;
            return None;
        }
        let live = status.get("online") == Some(&Value::Bool(true));
        (live && self.own_seen && self.reported.insert(other.to_string())).then_some(status)
    }
}

impl Link {
    /// Publishes the retained status message; returns whether it announced a backlog (and must
    /// be published again once the backlog is gone: HQ would see it for a status interval).
    pub(super) async fn publish_status(&self, client: &AsyncClient, outbox: &mut Outbox) -> bool {
        let last = *self.seq.borrow();
        let view = super::super::view(
            &self.parts.status,
            last,
            &self.parts.journal,
            &self.parts.ledger.settings,
        )
        .await;
        let payload = json!({
            "online": true,
            "version": env!("CARGO_PKG_VERSION"),
            "started_at": self.parts.ledger.settings.local(self.parts.started_at),
            "backlog": view.backlog,
            "oldest_unsent_at": view.oldest_unsent_at,
            "box": self.boxes.own,
        });
        match client.try_publish(
            self.topics.status(),
            QoS::AtLeastOnce,
            true,
            payload.to_string(),
        ) {
            Ok(()) => {
                outbox.submitted_status();
                view.backlog > 0
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish the status");
                true
            }
        }
    }

    /// Subscribes to the store's status topic (see the module notes).
    pub(super) fn watch_status(&self, client: &AsyncClient) {
        if let Err(e) = client.try_subscribe(self.topics.status(), QoS::AtMostOnce) {
            tracing::warn!(error = %e, "cannot subscribe to the store's status");
        }
    }

    /// A status message under this store's id arrived: another box's is logged and reported.
    pub(super) async fn status_seen(&mut self, client: &AsyncClient, p: &Publish) {
        if p.qos != QoS::AtMostOnce {
            let _ = client.try_ack(p);
        }
        let Some(other) = self.boxes.seen(&p.payload) else {
            return;
        };
        let store = &self.parts.store_id;
        tracing::error!(
            other_box = %other["box"], started_at = %other["started_at"], this_box = %self.boxes.own,
            "another box is connected to HQ's broker as store {store}: two boxes with one store id take each other's connection and HQ's messages, and HQ gets both boxes' events; switch off the one that is not the store's"
        );
        alert(
            &self.parts.ledger,
            "store_id_in_use",
            format!("another box runs as store {store} and reaches HQ's broker"),
            json!({"other": other, "box": self.boxes.own}),
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: &str, online: bool) -> Vec<u8> {
        json!({"online": online, "box": id})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn another_box_counts_only_after_this_ones_status_came_back() {
        let mut b = Boxes::new();
        let own = b.own.clone();
        // This box's previous run left its status: nothing yet.
        assert!(b.seen(&status("earlier-run", true)).is_none());
        assert!(b.seen(&status(&own, true)).is_none());
        // Offline, older versions without a `box`, garbage: nothing.
        assert!(b.seen(&status("other", false)).is_none());
        assert!(b.seen(br#"{"online": true}"#).is_none());
        assert!(b.seen(b"not json").is_none());
        assert!(b.seen(&status("other", true)).is_some());
        // Once per other box.
        assert!(b.seen(&status("other", true)).is_none());
        assert!(b.seen(&status("third", true)).is_some());
    }
}
