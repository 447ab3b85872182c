//! kordon's MQTT plumbing around the engine's thread:
//!
//! - [`crate::ingest_link`] reads device and operator messages (and kordon's
//!   own alerts, read back) only as fast as kordon handles them; [`Intake`]
//!   turns each into a command and puts it straight in the engine's queue
//!   (a refusal too, for `kordon/v1/rejects`), so that acknowledgements
//!   leave in the order messages came, and nothing a message holds (its
//!   size, its shape, a panic decoding it, a broker delivering it again and
//!   again) stops the messages behind it. No task sits in between: each hop
//!   woke a thread per message, and at 10,000 fixes/s those wake-ups cost
//!   more CPU than the decisions.
//! - [`run_ticker`] puts the 1 s tick in the engine's queue.
//! - [`run_publisher`] publishes the alerts the engine's thread decides, as
//!   it decides them, on the publishing link. (Acknowledgements go from the
//!   journal writer to the ingest link once a message's records are
//!   durable: a message received but not yet journaled when kordon stops or
//!   crashes is delivered again by the broker.)
//! - [`run_publishing_link`] drives rumqttc's event loop for the publishing
//!   link: reconnects with back-off and announces `online`.
//!
//! kordon also reads its own alert topics back ([`crate::delivery`]): those
//! echoes go to the engine's thread as [`Command::Echo`].
//!
//! On shutdown the ingest link stops handing messages on and the engine's
//! thread drains its queue. Then, side by side: the publisher publishes the
//! rest, the retained `offline` status, and disconnects the publishing
//! link; the journal writer commits the last records and hands on their
//! acknowledgements, which the ingest link writes before it disconnects.

use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use jiff::Timestamp;
use kordon_ingest::broker::{OFFLINE, ONLINE};
use kordon_ingest::topic::{ENGINE_STATUS, SUBSCRIPTIONS};
use kordon_ingest::{Backoff, Decoder, Reason, RedeliveryGuard, Refusal};
use rumqttc::mqttbytes::v4::{Packet, PubAck, PubRec};
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, Publish, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::core_thread::{Command, Envelope};
use crate::delivery::{is_echo, ECHO_FILTERS};
use crate::health::{Health, Link};
use crate::metrics as m;

/// Every filter kordon subscribes to: device and operator input, and its
/// own alert topics. `kordon/v1/alerts/+` covers the operators'
/// `kordon/v1/alerts/ack` too, so that no message matches two filters
/// (rumqttd would deliver it twice).
pub fn subscriptions() -> Vec<&'static str> {
    SUBSCRIPTIONS
        .iter()
        .copied()
        .filter(|f| *f != kordon_ingest::topic::ACK)
        .chain(ECHO_FILTERS.iter().map(|(filter, _)| *filter))
        .collect()
}

/// Commands waiting for the engine's thread: the messages the ingest link
/// read, the ticks (the API's requests have [`DESK_QUEUE`]). The ingest
/// link reads no further while it is full, so this and the queue behind it
/// (the journal writer's) are sized for memory, not speed: the broker
/// holds the rest.
/// (It replaced an inbox of 4,096 messages and an engine's queue of 4,096
/// commands behind it, and holds what both held.)
pub const ENGINE_QUEUE: usize = 8_192;

/// People's requests through the API (and the police webhooks' delivery
/// outcomes) waiting for the engine's thread, on a queue of their own that the thread takes from first
/// (`core_thread::queues`). A request finding it full is answered 503
/// ("the engine is busy"): hundreds of requests waiting is a stuck engine
/// or a runaway client, never an overload of fixes.
pub const DESK_QUEUE: usize = 256;

/// What it takes to acknowledge a received message: its packet id and QoS,
/// and the ingest link's connection it came on. A broker numbers the
/// messages it has in flight to kordon and reuses the numbers (Mosquitto
/// after 65,535 of them, a few seconds at full load): an acknowledgement
/// sent on a later connection would acknowledge whatever message then
/// carries that number, one kordon may not have handled, and that the
/// broker would never deliver again. The broker delivers a message again
/// on the next connection instead, and that copy is acknowledged.
///
/// Not the publish itself: its payload shares the link's read buffer, and
/// a message waiting for its acknowledgement would keep that alive.
#[derive(Debug)]
pub struct Receipt {
    pkid: u16,
    qos: QoS,
    connection: u64,
}

impl Receipt {
    pub fn pkid(&self) -> u16 {
        self.pkid
    }

    /// What acknowledges the message on connection `current`: PUBACK for
    /// QoS 1, PUBREC for QoS 2; nothing for a QoS 0 message, or for one
    /// received on an earlier connection.
    pub fn acknowledgement(&self, current: u64) -> Option<Packet> {
        if self.connection != current {
            debug!(
                pkid = self.pkid,
                "not acknowledged: received on an earlier connection, the broker delivers it again"
            );
            return None;
        }
        match self.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(self.pkid))),
            QoS::ExactlyOnce => Some(Packet::PubRec(PubRec::new(self.pkid))),
        }
    }
}

/// Publishes the retained engine status (`online` or `offline`) on the
/// publishing link, without waiting.
pub fn announce(client: &AsyncClient, status: &'static str) {
    if let Err(e) = client.try_publish(ENGINE_STATUS, QoS::AtLeastOnce, true, status) {
        error!(error = %e, status, "could not queue the engine status");
    }
}

/// Drives the publishing link's event loop until the disconnect that ends
/// a shutdown: connects again with back-off, and says `online` when it
/// completes kordon's connection (see [`Health::broker_connected`]).
/// Nothing arrives on it but the broker's acknowledgements.
pub async fn run_publishing_link(
    client: AsyncClient,
    mut eventloop: EventLoop,
    clock: crate::clock::Clock,
    health: Health,
    stopping: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                backoff.reset();
                info!("publishing link connected to the broker");
                // `online` once both links are up (the ingest link says it
                // when it is the later one).
                if health.broker_connected(Link::Publishing, clock.now()) {
                    announce(&client, ONLINE);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                info!("publishing link disconnected from the broker");
                health.broker_lost(Link::Publishing, clock.now());
                return;
            }
            Ok(_) => {}
            Err(error) => {
                health.broker_lost(Link::Publishing, clock.now());
                let stopping = *stopping.borrow();
                if stopping && matches!(error, ConnectionError::RequestsDone) {
                    return;
                }
                metrics::counter!(m::BROKER_CONNECTION_ERRORS).increment(1);
                let delay = backoff.next_delay();
                warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "publishing link to the broker lost");
                if stopping {
                    // Stopping without a broker: nothing left to flush to.
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Turns received publishes into commands for the engine's thread: a
/// decoded message, a refusal, or an echo of kordon's own alert, each with
/// the receipt that acknowledges it once handled, and queues them there.
/// Dropping it (when kordon stops taking messages) tells the shutdown that
/// nothing more comes from the broker (see [`Intake::on_close`]).
pub struct Intake {
    engine: Sender<Command>,
    closed: Option<oneshot::Sender<()>>,
    decoder: Decoder,
    poison: RedeliveryGuard,
    /// The broker delivers again what kordon held unacknowledged when the
    /// last connection dropped. While kordon was still behind then
    /// (messages from that connection still waiting, or overloaded), those
    /// are not poison: they are not counted.
    redeliveries_expected: bool,
    /// The ingest link's connection messages now come on.
    connection: u64,
}

impl Intake {
    pub fn new(engine: Sender<Command>, decoder: Decoder) -> Self {
        Intake {
            engine,
            closed: None,
            decoder,
            poison: RedeliveryGuard::new(),
            redeliveries_expected: false,
            connection: 0,
        }
    }

    /// Resolves once this intake is dropped: every command it queued is in
    /// the engine's queue, and no more come.
    pub fn on_close(&mut self) -> oneshot::Receiver<()> {
        let (closed, on_close) = oneshot::channel();
        self.closed = Some(closed);
        on_close
    }

    /// Queues `command` for the engine's thread without waiting: a full
    /// queue gives it back.
    #[allow(
        clippy::result_large_err,
        reason = "the command comes back to wait for room; boxing it would allocate per message"
    )]
    pub fn hand_on(&self, command: Command) -> Result<(), TrySendError<Command>> {
        self.engine.try_send(command)
    }

    /// The engine's queue, for waiting until it has room (the ingest link
    /// waits for room for many, not one at a time).
    pub fn engine_queue(&self) -> Sender<Command> {
        self.engine.clone()
    }

    /// The ingest link's connection `number` begins; see
    /// `redeliveries_expected`.
    pub fn connected(&mut self, number: u64, health: &Health) {
        self.connection = number;
        self.redeliveries_expected = !self.engine.is_empty() || health.is_overloaded();
    }

    /// What the engine's thread must do with `publish`: take it, refuse
    /// it, or match it against an alert kordon sent (an echo).
    pub fn command(&mut self, publish: Publish, now: Timestamp) -> Command {
        let receipt = Receipt {
            pkid: publish.pkid,
            qos: publish.qos,
            connection: self.connection,
        };
        let refusal = self.refusal_unread(&publish);
        let Publish { topic, payload, .. } = publish;
        let command = match refusal {
            Some(refusal) => Command::Refused {
                topic,
                refusal,
                now,
                ack: None,
            },
            None if is_echo(&topic) => Command::Echo {
                topic,
                payload: payload.to_vec(),
                now,
                ack: None,
            },
            None => self.decode(topic, &payload, now),
        };
        command.acknowledging(receipt)
    }

    /// Why `publish` is refused before anyone reads its payload, if it is:
    /// delivered again and again without being handled, or a retained copy.
    fn refusal_unread(&mut self, publish: &Publish) -> Option<Refusal> {
        let topic = &publish.topic;
        if publish.dup && !self.redeliveries_expected {
            if let Some(deliveries) = self.poison.redelivered(topic, &publish.payload) {
                error!(
                    topic,
                    deliveries,
                    "the broker keeps delivering this message and kordon never got to handle it: refused as poison so the messages behind it move on"
                );
                return Some(Refusal::new(
                    Reason::PoisonMessage,
                    format!("delivered {deliveries} times without being handled; refused so the stream behind it moves on"),
                ));
            }
        }
        (publish.retain && !is_echo(topic)).then(|| {
            Refusal::new(
                Reason::RetainedMessage,
                "a retained message is the broker's stored copy of an old message, not something a device just said; devices publish without the retain flag",
            )
        })
    }

    /// The decoded message, or its refusal; a panic in the decoder (a bug)
    /// refuses the message instead of stopping the connection.
    fn decode(&self, topic: String, payload: &[u8], now: Timestamp) -> Command {
        let received = Instant::now();
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.decoder.decode(&topic, payload, now)
        }));
        let refusal = match decoded {
            Ok(Ok(message)) => {
                return Command::Message {
                    topic,
                    message,
                    received,
                    now,
                    ack: None,
                }
            }
            Ok(Err(refusal)) => refusal,
            Err(_) => {
                metrics::counter!(m::HANDLING_FAILED).increment(1);
                error!(topic, "decoding this message panicked: refused");
                Refusal::new(
                    Reason::HandlingFailed,
                    "kordon failed while decoding this message; it is refused and the fault logged",
                )
            }
        };
        Command::Refused {
            topic,
            refusal,
            now,
            ack: None,
        }
    }
}

/// Puts a tick in the engine's queue once a second of kordon's time (the
/// demo's run faster), waiting (asynchronously, never blocking a tokio
/// worker) while the queue is full; the engine's thread decides what time
/// each tick carries to the engine ([`crate::engine_time`]). Ends when
/// kordon stops or the engine's thread is gone.
pub async fn run_ticker(
    engine: Sender<Command>,
    clock: crate::clock::Clock,
    unacknowledged: crate::ingest_link::Unacknowledged,
    mut stopping: watch::Receiver<bool>,
) {
    let period = Duration::from_secs_f64((1.0 / clock.speed()).max(0.02));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopping.changed() => return,
        }
        let mut tick = Command::Tick {
            at: clock.now(),
            intake_held: unacknowledged.any(),
        };
        loop {
            match engine.try_send(tick) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) => {
                    tick = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
    }
}

/// Publishes in order until every sender is gone (the engine's thread
/// holds the last), then says `offline` and disconnects.
pub async fn run_publisher(client: AsyncClient, mut envelopes: mpsc::Receiver<Envelope>) {
    while let Some(envelope) = envelopes.recv().await {
        metrics::gauge!(m::PUBLISH_QUEUE_DEPTH).set(envelopes.len() as f64);
        let Envelope {
            message,
            retain,
            caused_at,
            kind,
        } = envelope;
        let topic = message.topic;
        match client
            .publish(topic.as_str(), QoS::AtLeastOnce, retain, message.payload)
            .await
        {
            Ok(()) => {
                metrics::counter!(m::PUBLISHED).increment(1);
                if let (Some(at), Some(kind)) = (caused_at, kind) {
                    if topic == kordon_alert::topics::POLICE
                        || topic == kordon_alert::topics::MONITORING
                    {
                        metrics::histogram!(m::FIX_TO_ALERT, "topic" => topic_label(&topic), "kind" => kind)
                            .record(at.elapsed().as_secs_f64());
                    }
                }
            }
            Err(e) => {
                metrics::counter!(m::PUBLISH_FAILED).increment(1);
                error!(topic, error = %e, "publish failed");
            }
        }
    }
    if let Err(e) = client
        .publish(ENGINE_STATUS, QoS::AtLeastOnce, true, OFFLINE)
        .await
    {
        warn!(error = %e, "could not publish the offline status");
    }
    // Requests leave in order: `offline` goes out before the DISCONNECT.
    if let Err(e) = client.disconnect().await {
        warn!(error = %e, "disconnect failed");
    }
}

fn topic_label(topic: &str) -> &'static str {
    if topic == kordon_alert::topics::POLICE {
        "police"
    } else {
        "monitoring"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kordon_ingest::Limits;

    use super::*;

    fn delivery(pkid: u16, dup: bool) -> Publish {
        let mut publish = Publish::new("kordon/v1/devices/b-1/fix", QoS::AtLeastOnce, "{}");
        publish.pkid = pkid;
        publish.dup = dup;
        publish
    }

    fn receipt(command: Command) -> Receipt {
        match command {
            Command::Message { ack, .. }
            | Command::Refused { ack, .. }
            | Command::Echo { ack, .. } => ack.expect("a receipt"),
            _ => panic!("not a message"),
        }
    }

    #[test]
    fn a_message_is_acknowledged_only_on_the_connection_it_came_on() {
        let (mut intake, _rx) = new_intake();
        let health = Health::default();
        intake.connected(1, &health);
        let first = receipt(intake.command(delivery(7, false), Timestamp::UNIX_EPOCH));
        let puback = |pkid| Some(Packet::PubAck(PubAck::new(pkid)));
        assert_eq!(first.acknowledgement(1), puback(7));
        intake.connected(2, &health);
        let copy = receipt(intake.command(delivery(7, true), Timestamp::UNIX_EPOCH));
        assert_eq!(first.acknowledgement(2), None, "a stale acknowledgement");
        assert_eq!(copy.acknowledgement(2), puback(7));
        let mut unacknowledged = delivery(8, false);
        unacknowledged.qos = QoS::AtMostOnce;
        let qos0 = receipt(intake.command(unacknowledged, Timestamp::UNIX_EPOCH));
        assert_eq!(
            qos0.acknowledgement(2),
            None,
            "QoS 0 has no acknowledgement"
        );
        let mut exactly_once = delivery(9, false);
        exactly_once.qos = QoS::ExactlyOnce;
        let qos2 = receipt(intake.command(exactly_once, Timestamp::UNIX_EPOCH));
        assert_eq!(
            qos2.acknowledgement(2),
            Some(Packet::PubRec(PubRec::new(9)))
        );
    }

    fn new_intake() -> (Intake, crossbeam_channel::Receiver<Command>) {
        let (engine, rx) = crossbeam_channel::bounded(ENGINE_QUEUE);
        let decoder = Decoder::new(Limits::default(), HashMap::new());
        (Intake::new(engine, decoder), rx)
    }

    fn is_poison(command: &Command) -> bool {
        matches!(command, Command::Refused { refusal, .. } if refusal.reason == Reason::PoisonMessage)
    }

    #[test]
    fn a_message_redelivered_again_and_again_to_an_idle_kordon_is_poison() {
        let (mut intake, _rx) = new_intake();
        let health = Health::default();
        let refused = (0..RedeliveryGuard::LIMIT).map(|n| {
            intake.connected(n as u64, &health);
            intake.command(delivery(1, true), Timestamp::UNIX_EPOCH)
        });
        assert_eq!(refused.filter(is_poison).count(), 1);
    }

    #[test]
    fn redeliveries_of_messages_still_waiting_in_an_overloaded_kordon_are_not_poison() {
        let (mut intake, _rx) = new_intake();
        let health = Health::default();
        // The previous connection's messages still wait for the engine.
        intake
            .hand_on(Command::Connected {
                now: Timestamp::UNIX_EPOCH,
                session_present: true,
            })
            .unwrap();
        for n in 0..2 * RedeliveryGuard::LIMIT {
            intake.connected(n as u64, &health);
            let command = intake.command(delivery(1, true), Timestamp::UNIX_EPOCH);
            assert!(
                !is_poison(&command),
                "a waiting breach would be refused unread"
            );
        }
        // Overload seen by the ingest link counts the same.
        let (mut intake, _rx) = new_intake();
        health.engine_busy(Timestamp::UNIX_EPOCH);
        for n in 0..2 * RedeliveryGuard::LIMIT {
            intake.connected(n as u64, &health);
            let command = intake.command(delivery(1, true), Timestamp::UNIX_EPOCH);
            assert!(!is_poison(&command));
        }
    }
}
