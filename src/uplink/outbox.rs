//! The outbox window: which journal events are on their way to the broker, and how far the
//! broker has acknowledged everything. A pure state machine (no IO), fed by the link task.
//!
//! rumqttc gives no per-message acknowledgement: a publish gets its packet id only when the
//! event loop sends it (`Outgoing::Publish(pkid)`, in submission order), and the broker answers
//! with `PubAck(pkid)`. Packet ids are reused, so the window maps them to journal `seq`s itself.
//! The *acknowledged position* only moves over a contiguous run of acknowledged `seq`s: an
//! event leaves the outbox only when it and every event before it had its PUBACK.

use std::collections::{BTreeSet, HashMap, VecDeque};

/// What was submitted to the MQTT client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A journal event.
    Event(u64),
    /// A retained status message (acknowledged like the rest, but not an event).
    Status,
}

/// The window of events between the journal and the broker.
#[derive(Debug)]
pub struct Outbox {
    /// Every `seq` up to this one has been acknowledged (or reported as unsendable).
    acked: u64,
    /// The next `seq` to read from the journal and send.
    next: u64,
    /// Submitted, waiting for the client to assign a packet id.
    queued: VecDeque<Item>,
    /// Sent, waiting for PUBACK, by packet id.
    inflight: HashMap<u16, Item>,
    /// A publish held back by a packet-id collision (`Outgoing::AwaitAck`).
    stashed: Option<(u16, Item)>,
    /// Acknowledged `seq`s above `acked` (acks that came out of order).
    done_above: BTreeSet<u64>,
    /// Most events outstanding at once.
    window: usize,
}

impl Outbox {
    /// A window of `window` events, starting after `acked`.
    pub fn new(acked: u64, window: usize) -> Outbox {
        Outbox {
            acked,
            next: acked + 1,
            queued: VecDeque::new(),
            inflight: HashMap::new(),
            stashed: None,
            done_above: BTreeSet::new(),
            window: window.max(1),
        }
    }

    /// Starts over after a (re)connect: everything not acknowledged is sent again, from the
    /// oldest, because a new connection knows nothing of the old one's publishes.
    pub fn restart(&mut self) {
        self.next = self.acked + 1;
        self.queued.clear();
        self.inflight.clear();
        self.stashed = None;
        self.done_above.clear();
    }

    /// Every `seq` up to this one is acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The next `seq` to send.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Events (not status messages) outstanding.
    fn outstanding(&self) -> usize {
        let is_event = |i: &Item| matches!(i, Item::Event(_));
        self.queued.iter().filter(|i| is_event(i)).count()
            + self.inflight.values().filter(|i| is_event(i)).count()
            + self.stashed.iter().filter(|(_, i)| is_event(i)).count()
    }

    /// How many more events may be submitted now.
    pub fn room(&self) -> usize {
        self.window.saturating_sub(self.outstanding())
    }

    /// Records that the event `seq` (the next one) was submitted to the client.
    pub fn submitted(&mut self, seq: u64) {
        debug_assert_eq!(seq, self.next);
        self.queued.push_back(Item::Event(seq));
        self.next = seq + 1;
    }

    /// Records that a status message was submitted.
    pub fn submitted_status(&mut self) {
        self.queued.push_back(Item::Status);
    }

    /// Records that `seq` (the next one) will never be sent (too big for the broker; an alert
    /// was raised): it counts as done.
    pub fn skipped(&mut self, seq: u64) {
        debug_assert_eq!(seq, self.next);
        self.next = seq + 1;
        self.done(seq);
    }

    /// `Outgoing::Publish(pkid)`: the oldest queued item went out under `pkid`.
    pub fn sent(&mut self, pkid: u16) {
        if let Some((p, item)) = self.stashed.take() {
            if p == pkid {
                self.inflight.insert(p, item);
                return;
            }
            self.stashed = Some((p, item));
        }
        if self.inflight.contains_key(&pkid) {
            // A retransmission of something already in flight.
            return;
        }
        if let Some(item) = self.queued.pop_front() {
            self.inflight.insert(pkid, item);
        }
    }

    /// `Outgoing::AwaitAck(pkid)`: the oldest queued item waits for `pkid` to be free.
    pub fn collided(&mut self, pkid: u16) {
        if let Some(item) = self.queued.pop_front() {
            self.stashed = Some((pkid, item));
        }
    }

    /// `PubAck(pkid)`: returns the new acknowledged position if it moved.
    pub fn acknowledged(&mut self, pkid: u16) -> Option<u64> {
        match self.inflight.remove(&pkid) {
            Some(Item::Event(seq)) => {
                let before = self.acked;
                self.done(seq);
                (self.acked > before).then_some(self.acked)
            }
            _ => None,
        }
    }

    fn done(&mut self, seq: u64) {
        if seq <= self.acked {
            return;
        }
        self.done_above.insert(seq);
        while self.done_above.remove(&(self.acked + 1)) {
            self.acked += 1;
        }
    }
}

/// The size of the MQTT PUBLISH packet for a QoS 1 message (fixed header, topic, packet id,
/// payload), as rumqttc computes it before refusing a packet over the limit.
pub fn publish_packet_size(topic: &str, payload_len: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload_len;
    let len_len = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_len + remaining
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_position_moves_only_over_contiguous_acks() {
        let mut o = Outbox::new(10, 3);
        assert_eq!(o.next(), 11);
        for s in 11..=13 {
            o.submitted(s);
        }
        assert_eq!(o.room(), 0);
        o.sent(1);
        o.sent(2);
        o.sent(3);
        assert_eq!(o.acknowledged(2), None, "12 acked before 11");
        assert_eq!(o.acked(), 10);
        assert_eq!(o.acknowledged(1), Some(12));
        assert_eq!(o.room(), 2);
        assert_eq!(o.acknowledged(3), Some(13));
        assert_eq!(o.acknowledged(3), None, "a duplicate ack changes nothing");
    }

    #[test]
    fn status_messages_do_not_take_event_slots_or_move_the_position() {
        let mut o = Outbox::new(0, 2);
        o.submitted_status();
        o.submitted(1);
        o.sent(1); // status
        o.sent(2); // event 1
        assert_eq!(o.room(), 1);
        assert_eq!(o.acknowledged(1), None);
        assert_eq!(o.acknowledged(2), Some(1));
    }

    #[test]
    fn restart_resends_from_the_oldest_unacknowledged() {
        let mut o = Outbox::new(0, 8);
        for s in 1..=5 {
            o.submitted(s);
            o.sent(s as u16);
        }
        o.acknowledged(1);
        o.acknowledged(3);
        o.restart();
        assert_eq!(o.acked(), 1);
        assert_eq!(o.next(), 2, "3 was acked but 2 was not: resend from 2");
        assert_eq!(o.room(), 8);
    }

    #[test]
    fn skipped_events_count_as_done() {
        let mut o = Outbox::new(0, 4);
        o.submitted(1);
        o.sent(7);
        o.skipped(2);
        assert_eq!(o.acked(), 0);
        assert_eq!(o.acknowledged(7), Some(2));
    }

    #[test]
    fn collisions_hold_the_item_until_its_packet_id_is_free() {
        let mut o = Outbox::new(0, 4);
        o.submitted(1);
        o.sent(1);
        o.submitted(2);
        o.collided(1);
        assert_eq!(o.acknowledged(1), Some(1));
        o.sent(1); // the stashed publish goes out under the freed id
        assert_eq!(o.acknowledged(1), Some(2));
    }

    #[test]
    fn packet_size_matches_mqtt_framing() {
        assert_eq!(publish_packet_size("a/b", 10), 1 + 1 + 2 + 3 + 2 + 10);
        assert_eq!(publish_packet_size("t", 200), 1 + 2 + 2 + 1 + 2 + 200);
    }
}
