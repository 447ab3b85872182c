//! The broker connection, driven by three tasks:
//!
//! - [`run_connection`] polls rumqttc's event loop: it reconnects with
//!   back-off, subscribes when the broker has no session for kordon,
//!   announces `online`, decodes every publish and queues it (or its
//!   refusal, for `kordon/v1/rejects`) for the engine's thread, so that
//!   acknowledgements leave in the order messages came. It never waits for
//!   the engine, so keep-alives are answered whatever the backlog; nothing a
//!   message holds (its size, its shape, a panic decoding it, a broker
//!   delivering it again and again) stops the messages behind it.
//! - [`run_forwarder`] moves the queued commands to the engine's thread,
//!   waiting while its queue is full, with the 1 s tick among them.
//! - [`run_publisher`] publishes the alerts the engine's thread decides, as
//!   it decides them, and the broker acknowledgements the journal writer
//!   passes on once the message's records are durable. A message received
//!   but not yet journaled when kordon stops or crashes is delivered again
//!   by the broker.
//!
//! kordon also reads its own alert topics back ([`crate::delivery`]): those
//! echoes go to the engine's thread as [`Command::Echo`].
//!
//! On shutdown the connection task stops handing messages on, the engine's
//! thread drains its queue, the publisher publishes the rest, then the
//! retained `offline` status, and disconnects.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use jiff::Timestamp;
use kordon_ingest::broker::{OFFLINE, ONLINE};
use kordon_ingest::topic::{ENGINE_STATUS, SUBSCRIPTIONS};
use kordon_ingest::{Backoff, Decoder, Reason, RedeliveryGuard, Refusal};
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, Outgoing, Publish, QoS,
    SubscribeFilter,
};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::core_thread::{Command, Envelope};
use crate::delivery::{is_echo, ECHO_FILTERS};
use crate::engine_time::EngineTime;
use crate::health::Health;
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

/// Messages received and waiting for the engine's thread. Far more than
/// any broker lets kordon hold unacknowledged (its in-flight window:
/// Mosquitto's default 20, `deploy/mosquitto/kordon.conf` and the embedded
/// broker 1,000), so in practice it never fills: the broker holds the rest.
pub const INBOX: usize = 8_192;
/// Messages kept back while the inbox is full (a broker that ignores its
/// in-flight window, or a QoS 0 flood). Past this a QoS 1 message is left
/// unacknowledged for the broker to deliver again on the next connection,
/// and a QoS 0 one is dropped; both are counted.
const OVERFLOW: usize = 65_536;

/// Polls the event loop until the disconnect that ends a shutdown. It never
/// waits for the engine: received messages go into the bounded `inbox`, so
/// keep-alives are answered whatever the engine's backlog.
pub async fn run_connection(
    client: AsyncClient,
    mut eventloop: EventLoop,
    decoder: Decoder,
    inbox: mpsc::Sender<Command>,
    clock: crate::clock::Clock,
    health: Health,
    mut stopping: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    let mut forwarding = Some(Intake::new(inbox, decoder));
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = stopping.changed(), if forwarding.is_some() => {
                // Stop taking messages; keep polling so the publisher can
                // flush and disconnect through this event loop.
                forwarding = None;
                debug!("connection: no longer handing messages on");
                continue;
            }
        };
        if let Some(intake) = &mut forwarding {
            intake.drain_overflow();
        }
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                backoff.reset();
                metrics::gauge!(m::BROKER_CONNECTED).set(1.0);
                health.broker_connected(clock.now());
                info!(
                    session_present = ack.session_present,
                    "connected to the broker"
                );
                if !ack.session_present {
                    let filters = subscriptions()
                        .into_iter()
                        .map(|f| SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        error!(error = %e, "could not queue the subscriptions");
                    }
                }
                if let Err(e) = client.try_publish(ENGINE_STATUS, QoS::AtLeastOnce, true, ONLINE) {
                    error!(error = %e, "could not queue the online status");
                }
                if let Some(intake) = &mut forwarding {
                    intake.hand_on(Command::Connected(clock.now()), QoS::AtLeastOnce);
                }
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                metrics::counter!(m::MESSAGES_IN).increment(1);
                // Without forwarding the message stays unacknowledged: the
                // broker delivers it again to the next session.
                if let Some(intake) = &mut forwarding {
                    let qos = publish.qos;
                    let command = intake.command(publish, clock.now());
                    intake.hand_on(command, qos);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                info!("disconnected from the broker");
                metrics::gauge!(m::BROKER_CONNECTED).set(0.0);
                health.broker_lost(clock.now());
                return;
            }
            Ok(_) => {}
            Err(error) => {
                metrics::gauge!(m::BROKER_CONNECTED).set(0.0);
                health.broker_lost(clock.now());
                metrics::counter!(m::BROKER_CONNECTION_ERRORS).increment(1);
                if forwarding.is_none() && matches!(error, ConnectionError::RequestsDone) {
                    return;
                }
                let delay = backoff.next_delay();
                warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "broker connection lost");
                if forwarding.is_none() {
                    // Stopping without a broker: nothing left to flush to.
                    return;
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Turns received publishes into commands for the engine's thread and
/// queues them, in the order they came, without ever waiting.
struct Intake {
    inbox: mpsc::Sender<Command>,
    decoder: Decoder,
    poison: RedeliveryGuard,
    /// Kept back while the inbox is full, oldest first.
    overflow: VecDeque<Command>,
    /// Messages not taken since the last log line about them, and when
    /// that line was written.
    not_taken: u64,
    last_not_taken_log: Option<Instant>,
}

impl Intake {
    fn new(inbox: mpsc::Sender<Command>, decoder: Decoder) -> Self {
        Intake {
            inbox,
            decoder,
            poison: RedeliveryGuard::new(),
            overflow: VecDeque::new(),
            not_taken: 0,
            last_not_taken_log: None,
        }
    }

    /// What the engine's thread must do with `publish`: take it, refuse
    /// it, or match it against an alert kordon sent (an echo).
    fn command(&mut self, publish: Publish, now: Timestamp) -> Command {
        let topic = publish.topic.clone();
        let command = match self.refusal_unread(&publish) {
            Some(refusal) => Command::Refused {
                topic,
                refusal,
                now,
                ack: None,
            },
            None if is_echo(&topic) => Command::Echo {
                topic,
                payload: publish.payload.to_vec(),
                now,
                ack: None,
            },
            None => self.decode(topic, &publish.payload, now),
        };
        command.acknowledging(publish)
    }

    /// Why `publish` is refused before anyone reads its payload, if it is:
    /// delivered again and again without being handled, or a retained copy.
    fn refusal_unread(&mut self, publish: &Publish) -> Option<Refusal> {
        let topic = &publish.topic;
        if publish.dup {
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

    /// Queues `command` behind everything received before it.
    fn hand_on(&mut self, command: Command, qos: QoS) {
        if self.overflow.is_empty() {
            match self.inbox.try_send(command) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(command)) => self.keep_back(command, qos),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    warn!("engine thread gone; message left unacknowledged");
                }
            }
        } else {
            self.keep_back(command, qos);
        }
        metrics::gauge!(m::INBOX_DEPTH).set((INBOX - self.inbox.capacity()) as f64);
    }

    fn keep_back(&mut self, command: Command, qos: QoS) {
        if self.overflow.len() < OVERFLOW && qos != QoS::AtMostOnce {
            self.overflow.push_back(command);
            return;
        }
        // Dropping it unacknowledged: the broker sends a QoS 1 message
        // again on the next connection; a QoS 0 one is gone, as its sender
        // allowed.
        metrics::counter!(m::DEFERRED).increment(1);
        self.not_taken += 1;
        // One line a second at most: a line per message would make this
        // task, which must answer keep-alives, a log writer.
        let now = Instant::now();
        if self
            .last_not_taken_log
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
        {
            warn!(
                kept_back = self.overflow.len(),
                not_taken = self.not_taken,
                ?qos,
                "kordon is overloaded and its broker ignores the in-flight window: messages not taken (count since the last such line)"
            );
            self.not_taken = 0;
            self.last_not_taken_log = Some(now);
        }
    }

    /// Moves what was kept back into the inbox as room frees up.
    fn drain_overflow(&mut self) {
        while let Some(command) = self.overflow.pop_front() {
            match self.inbox.try_send(command) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(command)) => {
                    self.overflow.push_front(command);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.overflow.clear();
                    return;
                }
            }
        }
    }
}

/// Moves commands from the inbox to the engine's thread, in order, waiting
/// (asynchronously, never blocking a tokio worker) while its queue is full,
/// and puts the 1 s tick among them, carrying the time [`EngineTime`] gives.
/// A full engine queue marks kordon overloaded (`/healthz`) until the inbox
/// is empty again. Ends when the connection task stops handing messages on.
pub async fn run_forwarder(
    mut inbox: mpsc::Receiver<Command>,
    core: crossbeam_channel::Sender<Command>,
    clock: crate::clock::Clock,
    health: Health,
) {
    // A tick per second of kordon's time (the demo's runs faster).
    let period = Duration::from_secs_f64((1.0 / clock.speed()).max(0.02));
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut engine_time = EngineTime::default();
    loop {
        let command = tokio::select! {
            command = inbox.recv() => match command {
                Some(command) => command,
                None => return,
            },
            _ = ticks.tick() => {
                let at = clock.now();
                Command::Tick { at, engine: engine_time.tick(at) }
            }
        };
        if let Some(ts) = command.event_time() {
            engine_time.received(ts, clock.now());
        }
        if !hand_to_engine(&core, command, &clock, &health).await {
            return;
        }
        metrics::gauge!(m::INBOX_DEPTH).set(inbox.len() as f64);
        if inbox.is_empty() {
            health.engine_caught_up();
        }
    }
}

/// Puts `command` in the engine's queue, waiting while it is full; false
/// when the engine's thread is gone.
async fn hand_to_engine(
    core: &crossbeam_channel::Sender<Command>,
    mut command: Command,
    clock: &crate::clock::Clock,
    health: &Health,
) -> bool {
    loop {
        match core.try_send(command) {
            Ok(()) => return true,
            Err(TrySendError::Full(back)) => {
                command = back;
                metrics::counter!(m::ENGINE_BUSY).increment(1);
                health.engine_busy(clock.now());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(TrySendError::Disconnected(_)) => return false,
        }
    }
}

/// Publishes in order until every sender is gone (the journal writer
/// holds the last), then says `offline` and disconnects.
pub async fn run_publisher(client: AsyncClient, mut envelopes: mpsc::Receiver<Envelope>) {
    while let Some(envelope) = envelopes.recv().await {
        metrics::gauge!(m::PUBLISH_QUEUE_DEPTH).set(envelopes.len() as f64);
        match envelope {
            Envelope::Publish {
                message,
                retain,
                caused_at,
                kind,
            } => {
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
            Envelope::Ack(publish) => {
                if let Err(e) = client.ack(&publish).await {
                    warn!(error = %e, "acknowledgement to the broker failed");
                }
            }
            // The journal writer answers callers itself; one handed on
            // here is answered in order all the same.
            Envelope::Reply(reply) => reply.send(),
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
