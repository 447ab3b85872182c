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
//!   by the broker. An acknowledgement goes out only on the connection its
//!   message came on ([`Receipt`]).
//!
//! kordon also reads its own alert topics back ([`crate::delivery`]): those
//! echoes go to the engine's thread as [`Command::Echo`].
//!
//! On shutdown the connection task stops handing messages on, the engine's
//! thread drains its queue, the publisher publishes the rest, then the
//! retained `offline` status, and disconnects.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use jiff::Timestamp;
use kordon_ingest::broker::{OFFLINE, ONLINE};
use kordon_ingest::topic::{ENGINE_STATUS, SUBSCRIPTIONS};
use kordon_ingest::{Backoff, Decoder, Reason, RedeliveryGuard, Refusal};
use rumqttc::{
    AsyncClient, ClientError, ConnectionError, Event, EventLoop, Incoming, Outgoing, Publish, QoS,
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

/// Messages received and waiting for the engine's thread: more than a
/// broker keeping to its in-flight window lets kordon hold unacknowledged
/// (Mosquitto's default 20, `deploy/mosquitto/kordon.conf` and the embedded
/// broker 1,000).
///
/// This and the queues behind it (the engine's, the journal writer's) are
/// sized for memory, not speed: under overload all of them fill, at about
/// 1.5 KB per message, and a few thousand already hold more than a second
/// of work.
pub const INBOX: usize = 4_096;
/// Messages kept back while the inbox is full (a broker that ignores its
/// in-flight window, as Mosquitto 2.0.11 does towards a late acknowledger,
/// or a QoS 0 flood). Past this a QoS 1 message is left unacknowledged, and
/// kordon reconnects once it has caught up so that the broker delivers it
/// again; a QoS 0 one is dropped; both are counted.
const OVERFLOW: usize = 16_384;
/// How often kordon reconnects to have the messages it could not take
/// delivered again.
///
/// Mosquitto 2.0.11 answers such a reconnect by sending kordon everything
/// it holds unacknowledged at once, far more than kordon can keep, so one
/// reconnect fetches only what fits in the queues, and a large backlog
/// takes several. While the broker writes such a flood kordon works at
/// full speed (it keeps taking whatever fits as its queues empty); once
/// it has handled the flood, it waits a short pause for the live messages
/// and asks again. Pausing longer only leaves kordon idle with a backlog
/// at the broker: with a fixed 30 s between reconnects, 211,116 fixes did
/// not drain in a minute.
#[derive(Debug, Default)]
enum RedeliveryPacing {
    #[default]
    Idle,
    /// Asked at `at`; `behind` once the flood has filled the queues.
    Asked { at: Instant, behind: bool },
    /// The last flood is handled; the next reconnect not before `next`.
    Pausing { next: Instant },
}

impl RedeliveryPacing {
    /// The pause after a flood is handled.
    const PAUSE: Duration = Duration::from_secs(2);
    /// A safety net: an ask whose reconnect was never seen to catch up
    /// (its flood never filled the queues, so `observe` never saw kordon
    /// behind) holds the next one back no longer than this.
    const LONGEST: Duration = Duration::from_secs(30);

    fn may_ask(&self, now: Instant) -> bool {
        match *self {
            Self::Idle => true,
            Self::Asked { at, .. } => now.duration_since(at) >= Self::LONGEST,
            Self::Pausing { next } => now >= next,
        }
    }

    fn asked(&mut self, now: Instant) {
        *self = Self::Asked {
            at: now,
            behind: false,
        };
    }

    /// Called with every event on the connection that follows an ask:
    /// whether the queues have room (no overflow, inbox under half full).
    fn observe(&mut self, now: Instant, caught_up: bool) {
        if let Self::Asked { behind, .. } = self {
            if !caught_up {
                *behind = true;
            } else if *behind {
                *self = Self::Pausing {
                    next: now + Self::PAUSE,
                };
            }
        }
    }
}

/// How often an idle connection task looks again at what waits on time
/// rather than on the broker ([`Intake::waits_on_time`]).
const IDLE_WAKE: Duration = Duration::from_millis(100);

/// Which connection to the broker is current: a count of connections lost.
///
/// A broker numbers the messages it has in flight to kordon and reuses the
/// numbers (Mosquitto after 65,535 of them, a few seconds at full load).
/// An acknowledgement of a message received on an earlier connection, sent
/// on the current one, acknowledges whatever message now carries that
/// number: one kordon may not have handled yet, and that the broker then
/// never delivers again. A message received on a lost connection is
/// delivered again by the broker on the next one, and that copy is
/// acknowledged. rumqttc drops the acknowledgements still in its
/// own queue when a connection drops for the same reason; this covers the
/// ones still on their way through the engine and the journal.
#[derive(Clone, Debug, Default)]
pub struct Connections(Arc<AtomicU64>);

impl Connections {
    fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// The connection dropped, or the connection task ended: every receipt
    /// taken so far is stale.
    fn lost(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    fn receipt(&self, publish: &Publish) -> Receipt {
        Receipt {
            pkid: publish.pkid,
            qos: publish.qos,
            connection: self.current(),
        }
    }
}

/// What it takes to acknowledge a received message: its packet id and QoS,
/// good only on the connection it came on ([`Connections`]). Not the
/// publish itself: its payload shares rumqttc's read buffer, and a message
/// waiting for its acknowledgement would keep that whole buffer alive.
#[derive(Debug)]
pub struct Receipt {
    pkid: u16,
    qos: QoS,
    connection: u64,
}

impl Receipt {
    /// What rumqttc acknowledges: it reads only the packet id and QoS.
    fn as_publish(&self) -> Publish {
        let mut publish = Publish::new(String::new(), self.qos, Vec::new());
        publish.pkid = self.pkid;
        publish
    }
}

/// Polls the event loop until the disconnect that ends a shutdown. It never
/// waits for the engine: received messages go into the bounded `inbox`, so
/// keep-alives are answered whatever the engine's backlog.
pub async fn run_connection(
    client: AsyncClient,
    mut eventloop: EventLoop,
    intake: Intake,
    clock: crate::clock::Clock,
    health: Health,
    mut stopping: watch::Receiver<bool>,
) {
    let connections = intake.connections.clone();
    poll_until_stopped(
        &client,
        &mut eventloop,
        intake,
        clock,
        &health,
        &mut stopping,
    )
    .await;
    // Nothing received can be acknowledged any more.
    connections.lost();
}

async fn poll_until_stopped(
    client: &AsyncClient,
    eventloop: &mut EventLoop,
    intake: Intake,
    clock: crate::clock::Clock,
    health: &Health,
    stopping: &mut watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new();
    let mut forwarding = Some(intake);
    loop {
        if let Some(intake) = &mut forwarding {
            intake.between_events(client);
        }
        let waits_on_time = forwarding.as_ref().is_some_and(Intake::waits_on_time);
        let event = tokio::select! {
            event = eventloop.poll() => event,
            _ = stopping.changed(), if forwarding.is_some() => {
                // Stop taking messages; keep polling so the publisher can
                // flush and disconnect through this event loop.
                forwarding = None;
                debug!("connection: no longer handing messages on");
                continue;
            }
            // A quiet broker sends nothing for up to a keep-alive period:
            // what was kept back, and the next redelivery, must not wait
            // for it. Fires only on an idle connection, where rumqttc
            // waits on the socket or its request queue.
            _ = tokio::time::sleep(IDLE_WAKE), if waits_on_time => continue,
        };
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
                    intake.connected(health);
                    intake.hand_on(Command::Connected(clock.now()), QoS::AtLeastOnce);
                }
            }
            Ok(Event::Incoming(Incoming::Publish(publish))) => {
                metrics::counter!(m::MESSAGES_IN).increment(1);
                // Without forwarding the message stays unacknowledged: the
                // broker delivers it again to the next session.
                if let Some(intake) = &mut forwarding {
                    intake.take(publish, clock.now());
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if forwarding.is_some() => {
                // A reconnect asked for by `Intake::wants_redelivery`: the
                // broker closes this connection and the next one begins.
                info!("disconnected to have the broker deliver again the messages kordon could not take");
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                info!("disconnected from the broker");
                metrics::gauge!(m::BROKER_CONNECTED).set(0.0);
                health.broker_lost(clock.now());
                return;
            }
            Ok(_) => {}
            Err(error) => {
                let asked = forwarding.as_mut().is_some_and(Intake::connection_lost);
                metrics::gauge!(m::BROKER_CONNECTED).set(0.0);
                health.broker_lost(clock.now());
                if asked {
                    // The end of a reconnect kordon asked for: the next
                    // poll connects again, at once.
                    continue;
                }
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
pub struct Intake {
    inbox: mpsc::Sender<Command>,
    decoder: Decoder,
    connections: Connections,
    poison: RedeliveryGuard,
    /// The broker delivers again what kordon held unacknowledged when the
    /// last connection dropped. While kordon was still behind then (messages
    /// from that connection still waiting), or when it reconnected to have
    /// messages it could not take delivered again, those are not poison:
    /// they are not counted.
    redeliveries_expected: bool,
    /// QoS 1 messages not taken on this connection (the queue was full).
    /// A broker delivers them again only on a new connection, so once the
    /// backlog is gone kordon disconnects and connects again: left alone
    /// they, and any breach among them, would wait for the next network
    /// fault. `disconnect_asked` lasts until the connection is gone,
    /// `redelivery_asked` until the next one is up.
    not_taken_on_connection: u64,
    disconnect_asked: bool,
    redelivery_asked: bool,
    pacing: RedeliveryPacing,
    /// Kept back while the inbox is full, oldest first.
    overflow: VecDeque<Command>,
    /// Messages not taken since the last log line about them, and when
    /// that line was written.
    not_taken: u64,
    last_not_taken_log: Option<Instant>,
}

impl Intake {
    pub fn new(inbox: mpsc::Sender<Command>, decoder: Decoder, connections: Connections) -> Self {
        Intake {
            inbox,
            decoder,
            connections,
            poison: RedeliveryGuard::new(),
            redeliveries_expected: false,
            not_taken_on_connection: 0,
            disconnect_asked: false,
            redelivery_asked: false,
            pacing: RedeliveryPacing::default(),
            overflow: VecDeque::new(),
            not_taken: 0,
            last_not_taken_log: None,
        }
    }

    /// A new connection begins: see `redeliveries_expected`.
    fn connected(&mut self, health: &Health) {
        self.redeliveries_expected = self.redelivery_asked
            || !self.overflow.is_empty()
            || self.inbox.capacity() < INBOX
            || health.is_overloaded();
        self.redelivery_asked = false;
        self.not_taken_on_connection = 0;
    }

    /// Whether to reconnect now so that the broker delivers again what
    /// this connection could not take: only once kordon has caught up
    /// ([`Intake::caught_up`]), or the copies would meet the same full
    /// queue, and as paced by [`RedeliveryPacing`].
    fn wants_redelivery(&self) -> bool {
        self.not_taken_on_connection > 0
            && !self.redelivery_asked
            && self.caught_up()
            && self.pacing.may_ask(Instant::now())
    }

    /// What was kept back has gone on and the inbox is mostly empty.
    fn caught_up(&self) -> bool {
        self.overflow.is_empty() && self.inbox.capacity() > INBOX / 2
    }

    /// Tells the pacing how the flood a reconnect brought is going, once
    /// the new connection is up.
    fn observe_recovery(&mut self) {
        if !self.redelivery_asked {
            self.pacing.observe(Instant::now(), self.caught_up());
        }
    }

    /// The connection is gone: its receipts are stale. True when kordon
    /// itself asked for that (see `wants_redelivery`).
    fn connection_lost(&mut self) -> bool {
        self.connections.lost();
        std::mem::take(&mut self.disconnect_asked)
    }

    fn redelivery_requested(&mut self) {
        self.disconnect_asked = true;
        self.redelivery_asked = true;
        self.pacing.asked(Instant::now());
    }

    /// Between two events: what was kept back moves on as room frees up,
    /// and once kordon has caught up it asks for what it could not take.
    fn between_events(&mut self, client: &AsyncClient) {
        self.drain_overflow();
        self.observe_recovery();
        if self.wants_redelivery() {
            match client.try_disconnect() {
                Ok(()) => self.redelivery_requested(),
                // rumqttc's request queue is full of acknowledgements: ask
                // again at the next turn (a line each time would be 1,800
                // warnings a minute under a flood, as measured).
                Err(ClientError::TryRequest(_)) => {
                    debug!("the disconnect waits: rumqttc's request queue is full")
                }
                Err(e) => warn!(error = %e, "could not queue the disconnect"),
            }
        }
    }

    /// Something waits for time to pass rather than for the broker:
    /// messages kept back, or a redelivery to ask for.
    fn waits_on_time(&self) -> bool {
        !self.overflow.is_empty() || (self.not_taken_on_connection > 0 && !self.redelivery_asked)
    }

    /// What the engine's thread must do with `publish`: take it, refuse
    /// it, or match it against an alert kordon sent (an echo).
    fn command(&mut self, publish: Publish, now: Timestamp) -> Command {
        let receipt = self.connections.receipt(&publish);
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

    /// Decodes `publish` and queues it. One that cannot be kept is not
    /// even decoded: while the queues are full, reading must stay cheap so
    /// that the broker's answer to kordon's keep-alive, behind the flood,
    /// is read in time.
    fn take(&mut self, publish: Publish, now: Timestamp) {
        if self.disconnect_asked {
            // Still arriving on a connection kordon is leaving: it could
            // not be acknowledged, and the broker delivers it again.
            return;
        }
        let qos = publish.qos;
        let room =
            (self.overflow.is_empty() && self.inbox.capacity() > 0) || self.can_keep_back(qos);
        if room {
            let command = self.command(publish, now);
            self.hand_on(command, qos);
        } else {
            self.leave_unacknowledged(qos);
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
        if self.can_keep_back(qos) {
            self.overflow.push_back(command);
            return;
        }
        self.leave_unacknowledged(qos);
    }

    /// Whether a message that finds the inbox full can wait in the
    /// overflow: a QoS 0 one never does (its sender allowed it to be lost).
    fn can_keep_back(&self, qos: QoS) -> bool {
        qos != QoS::AtMostOnce && self.overflow.len() < OVERFLOW
    }

    fn leave_unacknowledged(&mut self, qos: QoS) {
        // Dropping it unacknowledged: the broker sends a QoS 1 message
        // again on the next connection; a QoS 0 one is gone, as its sender
        // allowed.
        metrics::counter!(m::DEFERRED).increment(1);
        self.not_taken += 1;
        if qos != QoS::AtMostOnce {
            self.not_taken_on_connection += 1;
        }
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
                "kordon is overloaded and its broker ignores the in-flight window: messages not taken (count since the last such line); once kordon has caught up it reconnects and the broker delivers them again"
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
pub async fn run_publisher(
    client: AsyncClient,
    connections: Connections,
    mut envelopes: mpsc::Receiver<Envelope>,
) {
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
            Envelope::Ack(receipt) => acknowledge(&client, &connections, receipt).await,
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

/// Acknowledges a handled message on the connection it came on; after
/// that connection is lost, not at all (see [`Connections`]). The check
/// and the hand-over to rumqttc are made together, never across a wait:
/// a connection lost in between would otherwise take a stale one.
async fn acknowledge(client: &AsyncClient, connections: &Connections, receipt: Receipt) {
    loop {
        if receipt.connection != connections.current() {
            debug!(
                pkid = receipt.pkid,
                "not acknowledged: received on an earlier connection, the broker delivers it again"
            );
            return;
        }
        match client.try_ack(&receipt.as_publish()) {
            Ok(()) => return,
            // rumqttc's request queue is full: wait for room, then check
            // the connection again.
            Err(ClientError::TryRequest(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) => {
                warn!(error = %e, "acknowledgement to the broker failed");
                return;
            }
        }
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
    use rumqttc::MqttOptions;

    use super::*;

    fn delivery(pkid: u16, dup: bool) -> Publish {
        let mut publish = Publish::new("kordon/v1/devices/b-1/fix", QoS::AtLeastOnce, "{}");
        publish.pkid = pkid;
        publish.dup = dup;
        publish
    }

    /// A client whose request queue holds one request, and whether that
    /// one slot is still free afterwards.
    fn one_slot_client() -> (AsyncClient, EventLoop) {
        AsyncClient::new(MqttOptions::new("test", "127.0.0.1", 1), 1)
    }

    fn slot_free(client: &AsyncClient) -> bool {
        client
            .try_publish("t", QoS::AtMostOnce, false, "probe")
            .is_ok()
    }

    #[tokio::test]
    async fn a_message_from_a_lost_connection_is_not_acknowledged_on_the_next() {
        let connections = Connections::default();
        let (client, _eventloop) = one_slot_client();
        let stale = connections.receipt(&delivery(7, false));
        connections.lost();
        acknowledge(&client, &connections, stale).await;
        assert!(slot_free(&client), "the stale acknowledgement was queued");

        let (client, _eventloop) = one_slot_client();
        let current = connections.receipt(&delivery(7, true));
        acknowledge(&client, &connections, current).await;
        assert!(!slot_free(&client), "the acknowledgement was not queued");
    }

    fn new_intake() -> (Intake, mpsc::Receiver<Command>) {
        let (inbox, rx) = mpsc::channel(INBOX);
        let decoder = Decoder::new(Limits::default(), HashMap::new());
        (Intake::new(inbox, decoder, Connections::default()), rx)
    }

    fn is_poison(command: &Command) -> bool {
        matches!(command, Command::Refused { refusal, .. } if refusal.reason == Reason::PoisonMessage)
    }

    #[test]
    fn a_message_redelivered_again_and_again_to_an_idle_kordon_is_poison() {
        let (mut intake, _rx) = new_intake();
        let health = Health::default();
        let refused = (0..RedeliveryGuard::LIMIT).map(|_| {
            intake.connected(&health);
            intake.command(delivery(1, true), Timestamp::UNIX_EPOCH)
        });
        assert_eq!(refused.filter(is_poison).count(), 1);
    }

    #[test]
    fn redeliveries_of_messages_still_waiting_in_an_overloaded_kordon_are_not_poison() {
        let (mut intake, _rx) = new_intake();
        let health = Health::default();
        // The previous connection's messages still wait for the engine.
        intake.hand_on(Command::Connected(Timestamp::UNIX_EPOCH), QoS::AtLeastOnce);
        for _ in 0..2 * RedeliveryGuard::LIMIT {
            intake.connected(&health);
            let command = intake.command(delivery(1, true), Timestamp::UNIX_EPOCH);
            assert!(
                !is_poison(&command),
                "a waiting breach would be refused unread"
            );
        }
        // Overload seen by the forwarder counts the same.
        let (mut intake, _rx) = new_intake();
        health.engine_busy(Timestamp::UNIX_EPOCH);
        for _ in 0..2 * RedeliveryGuard::LIMIT {
            intake.connected(&health);
            let command = intake.command(delivery(1, true), Timestamp::UNIX_EPOCH);
            assert!(!is_poison(&command));
        }
    }
}

#[cfg(test)]
mod pacing {
    use super::*;

    /// A reconnect's flood is handled after 4 s: the next reconnect comes
    /// a short pause later, not sooner; a flood that never filled the
    /// queues holds the next ask back no longer than the longest pause.
    #[test]
    fn the_next_redelivery_comes_a_pause_after_the_last_flood_is_handled() {
        let start = Instant::now();
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let pause = RedeliveryPacing::PAUSE.as_secs_f64();
        let mut pacing = RedeliveryPacing::default();
        assert!(pacing.may_ask(at(0.0)));
        pacing.asked(at(0.0));
        pacing.observe(at(0.1), true); // connected, the flood not yet here
        assert!(!pacing.may_ask(at(0.2)));
        pacing.observe(at(0.3), false);
        pacing.observe(at(2.0), false);
        assert!(!pacing.may_ask(at(3.9)), "still handling the flood");
        pacing.observe(at(4.0), true);
        assert!(!pacing.may_ask(at(4.0 + pause - 0.1)));
        assert!(pacing.may_ask(at(4.0 + pause)));

        pacing.asked(at(10.0));
        pacing.observe(at(11.0), true);
        assert!(!pacing.may_ask(at(39.9)));
        assert!(pacing.may_ask(at(40.0)));
    }
}

#[cfg(test)]
mod not_taken {
    use std::collections::HashMap;

    use kordon_ingest::Limits;

    use super::*;

    fn fix() -> Command {
        Command::Connected(Timestamp::UNIX_EPOCH)
    }

    fn delivery_of_a_fix() -> Publish {
        Publish::new("kordon/v1/devices/b-1/fix", QoS::AtLeastOnce, "{}")
    }

    /// A broker that ignores kordon's in-flight window fills the queue and
    /// the overflow; what is not taken then waits at the broker, and only
    /// a new connection brings it back. kordon asks for one once it has
    /// caught up, and the copies that come are not mistaken for poison.
    #[test]
    fn messages_not_taken_are_fetched_again_by_a_reconnect_once_kordon_caught_up() {
        let (inbox, mut rx) = mpsc::channel(INBOX);
        let decoder = Decoder::new(Limits::default(), HashMap::new());
        let mut intake = Intake::new(inbox, decoder, Connections::default());
        for _ in 0..INBOX + OVERFLOW + 3 {
            intake.hand_on(fix(), QoS::AtLeastOnce);
        }
        assert_eq!(intake.not_taken_on_connection, 3);
        assert!(!intake.wants_redelivery(), "the backlog is still there");
        while !intake.overflow.is_empty() {
            while rx.try_recv().is_ok() {}
            intake.drain_overflow();
        }
        assert!(!intake.wants_redelivery(), "the inbox is still full");
        while rx.try_recv().is_ok() {}
        assert!(intake.wants_redelivery());

        intake.redelivery_requested();
        assert!(!intake.wants_redelivery(), "asked once");
        // What still arrives on the connection being left is not queued:
        // its acknowledgement could not go out, the broker sends it again.
        intake.take(delivery_of_a_fix(), Timestamp::UNIX_EPOCH);
        assert!(rx.try_recv().is_err());
        assert!(intake.connection_lost(), "the disconnect was kordon's own");
        intake.connected(&Health::default());
        assert_eq!(intake.not_taken_on_connection, 0);
        for _ in 0..2 * RedeliveryGuard::LIMIT {
            let mut copy = delivery_of_a_fix();
            copy.dup = true;
            let command = intake.command(copy, Timestamp::UNIX_EPOCH);
            assert!(!matches!(
                command,
                Command::Refused { refusal, .. } if refusal.reason == Reason::PoisonMessage
            ));
        }
    }
}
