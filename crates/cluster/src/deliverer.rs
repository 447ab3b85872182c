//! The deliverer: the alerts' stream out to Mosquitto, where the monitoring
//! room, the police's feed and the devices read them (`docs/cluster.md`,
//! "Alerts leave through a stream").
//!
//! There is one for each device broker ([`crate::brokers`]), each reading
//! the whole stream, so that every broker carries every alert. One instance
//! runs each at a time, under a lease, as the bridge runs. It
//! reads `KORDON_ALERTS` on a durable consumer and acknowledges a message to
//! the stream only once Mosquitto has acknowledged its publication (QoS 1),
//! so a deliverer that dies leaves what it had not delivered to the next
//! one. So that the next one does not send again what Mosquitto had already
//! taken, every deliverer reads its messages back on one persistent session
//! (which Mosquitto keeps, and fills, while no deliverer runs), and a new one
//! first sends a fence on each of those topics and waits for them to come
//! back: by then it has read back everything published before. A message
//! offered again is sent only if it was not read back. (Where the fences do
//! not come back within 10 s, it is sent: at least once, never lost.) A
//! deliverer acknowledges what it reads back to Mosquitto only after
//! [`ECHO_HOLD`], so that one dying between Mosquitto's acknowledgement and
//! the stream's leaves the echo to its successor (found by ten SIGKILLs in
//! `crates/server/tests/cluster_processes.rs`: a police alert sent twice);
//! and a message offered again while still in flight is not sent again.
//!
//! It delivers every message of the stream, a deposed owner's late ones
//! too: the stream keeps the first copy of each, so dropping one by its
//! epoch could drop the only copy (the new owner's was refused as its
//! duplicate). A late message is one decided from the same fixes, late, not
//! a wrong one. The epoch travels on for consumers. It decides nothing about
//! a case.
//!
//! [`delivery_delay`] tells any instance how long the oldest alert not yet
//! taken by Mosquitto has waited, so that a stalled deliverer is seen by
//! the others (`KordonClusterAlertsUndelivered`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::{self, consumer::pull, AckKind};
use futures_util::StreamExt;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::alerts::{self, ALERT_STREAM};
use crate::bridge::MayAct;
use crate::keeper::ClusterError;
use crate::routing::TOPIC_HEADER;

/// Where the deliverer publishes, and how much it has in flight.
#[derive(Clone, Debug)]
pub struct DelivererSettings {
    /// How to reach Mosquitto: its address, kordon's credentials, TLS
    /// (`kordon_ingest::broker::client_options`). The deliverer sets its
    /// client ids and sessions.
    pub mqtt: MqttOptions,
    pub client_id: String,
    /// The alerts' stream's durable consumer: one per Mosquitto
    /// ([`crate::brokers::DeviceBroker::consumer`]).
    pub consumer: String,
    /// Messages published and not yet acknowledged by Mosquitto.
    pub window: usize,
    /// How far back the consumer starts when it is first made: a broker
    /// added to a running cluster gets the alerts of the last minutes, not
    /// the stream's whole history before the fresh ones. The minutes cover
    /// a new cluster's start, when a shard may store an alert before this
    /// consumer exists.
    pub first_look_back: Duration,
}

impl DelivererSettings {
    pub const CLIENT_ID: &'static str = "kordon-deliverer";
    pub const CONSUMER: &'static str = "kordon-deliverer";
    pub const WINDOW: usize = 256;
    pub const FIRST_LOOK_BACK: Duration = Duration::from_secs(5 * 60);
}

/// How long the stream waits for a deliverer's acknowledgement before it
/// offers the message again (to the next deliverer, after a fail-over).
pub const ACK_WAIT: Duration = Duration::from_secs(5);

const LEASE_CHECK: Duration = Duration::from_millis(100);
/// How long a new deliverer waits for its fences before it delivers anyway.
const FENCE_PATIENCE: Duration = Duration::from_secs(10);
/// How long a message read back stays unacknowledged to Mosquitto: longer
/// than the stream takes to offer an unacknowledged message again
/// ([`ACK_WAIT`]). A deliverer that dies after Mosquitto took a message,
/// but before its acknowledgement to the stream landed, thus leaves the
/// message's echo in the session for its successor, which is offered the
/// message again and must know not to send it.
const ECHO_HOLD: Duration = Duration::from_secs(10);
/// Echoes held at most (a full queue stops the reading back for a moment).
const ECHOES_HELD: usize = 65_536;
/// How long a message read back is remembered: far longer than a message is
/// offered again after ([`ACK_WAIT`], plus a fail-over).
const ECHO_MEMORY: Duration = Duration::from_secs(10 * 60);
/// How long a deliverer whose lease ran out waits for what it has in flight.
const FINISH: Duration = Duration::from_secs(1);

/// A running deliverer.
pub struct Deliverer {
    task: JoinHandle<()>,
    stopped: watch::Receiver<bool>,
}

impl Deliverer {
    /// Starts delivering; it stops by itself once `may_act` says no.
    pub async fn start(
        settings: DelivererSettings,
        js: &jetstream::Context,
        may_act: MayAct,
    ) -> Result<Deliverer, ClusterError> {
        let error = |e: &dyn std::fmt::Display| ClusterError::Watch {
            bucket: ALERT_STREAM.to_string(),
            message: e.to_string(),
        };
        let stream = js.get_stream(ALERT_STREAM).await.map_err(|e| error(&e))?;
        // From this machine's clock, compared with NATS's stored times:
        // skew between the two shortens or lengthens the look-back.
        let start_time = time::OffsetDateTime::from(SystemTime::now() - settings.first_look_back);
        // Taken as it is when it exists: where it stands is what matters.
        let consumer = stream
            .get_or_create_consumer(
                &settings.consumer,
                pull::Config {
                    durable_name: Some(settings.consumer.clone()),
                    description: Some(format!(
                        "kordon: alerts out to Mosquitto ({})",
                        settings.client_id
                    )),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: settings.window as i64,
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartTime { start_time },
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| error(&e))?;
        let messages = consumer.messages().await.map_err(|e| error(&e))?;
        let (stopped_tx, stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            deliver(settings, messages, may_act).await;
            stopped_tx.send_replace(true);
        });
        Ok(Deliverer { task, stopped })
    }

    /// Waits until it has stopped by itself (its lease ran out).
    pub async fn stopped(&mut self) {
        let _ = self.stopped.wait_for(|s| *s).await;
    }

    /// Whether it has stopped.
    pub fn is_stopped(&self) -> bool {
        *self.stopped.borrow()
    }
}

impl Drop for Deliverer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A message on its way: taken from the stream, published to Mosquitto.
type Taken = jetstream::Message;

/// One connection to Mosquitto and what is in flight on it. Its event loop
/// runs on a task of its own (a `poll` cancelled in a `select!` can lose a
/// packet half written) and reports what the deliverer must match.
struct Link {
    client: AsyncClient,
    events: mpsc::Receiver<LinkEvent>,
    task: JoinHandle<()>,
    /// Published, in order, before rumqttc gave them a packet id.
    queued: VecDeque<Taken>,
    /// By packet id, until Mosquitto acknowledges.
    inflight: HashMap<u16, Taken>,
}

enum LinkEvent {
    /// rumqttc wrote the next queued publish under this packet id.
    Sent(u16),
    /// Mosquitto acknowledged this packet id.
    Acked(u16),
    /// The connection broke.
    Broken(String),
}

impl Link {
    /// A fresh connection: rumqttc resends what it had in flight when it
    /// reconnects, which would break the order its packet ids are matched
    /// in, so a broken link is dropped whole and the stream offers its
    /// messages again after [`ACK_WAIT`].
    fn new(settings: &DelivererSettings) -> Link {
        let mut options = settings.mqtt.clone();
        options
            .set_client_id(settings.client_id.clone())
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(15))
            .set_inflight(settings.window.min(u16::MAX as usize) as u16)
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, settings.window + 16);
        let (events_tx, events) = mpsc::channel(settings.window * 2 + 16);
        let task = tokio::spawn(async move {
            loop {
                let event = match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => LinkEvent::Sent(pkid),
                    Ok(Event::Incoming(Packet::PubAck(ack))) => LinkEvent::Acked(ack.pkid),
                    Ok(_) => continue,
                    Err(e) => LinkEvent::Broken(e.to_string()),
                };
                let broken = matches!(event, LinkEvent::Broken(_));
                if events_tx.send(event).await.is_err() || broken {
                    return;
                }
            }
        });
        Link {
            client,
            events,
            task,
            queued: VecDeque::new(),
            inflight: HashMap::new(),
        }
    }

    /// A message offered again: if this link still has it in flight, the
    /// new offer takes the old one's place (the stream takes the newest
    /// offer's acknowledgement) and `None` says it is not to be sent again.
    fn offered_again(&mut self, message: Taken) -> Option<Taken> {
        let sequence = |t: &Taken| t.info().ok().map(|i| i.stream_sequence);
        let Some(wanted) = sequence(&message) else {
            return Some(message);
        };
        let slot = self
            .queued
            .iter_mut()
            .chain(self.inflight.values_mut())
            .find(|t| sequence(t) == Some(wanted));
        match slot {
            Some(slot) => {
                *slot = message;
                None
            }
            None => Some(message),
        }
    }

    fn in_flight(&self) -> usize {
        self.queued.len() + self.inflight.len()
    }

    /// Matches one event of the connection: a packet id to its message, an
    /// acknowledgement from Mosquitto to the stream's. Err once it broke.
    async fn on(&mut self, event: Option<LinkEvent>) -> Result<(), String> {
        match event {
            Some(LinkEvent::Sent(pkid)) => {
                if let Some(taken) = self.queued.pop_front() {
                    self.inflight.insert(pkid, taken);
                }
            }
            Some(LinkEvent::Acked(pkid)) => {
                if let Some(taken) = self.inflight.remove(&pkid) {
                    if let Err(e) = taken.ack().await {
                        warn!(error = %e, "deliverer: acknowledging to the stream (it comes again)");
                    }
                }
            }
            Some(LinkEvent::Broken(e)) => return Err(e),
            None => return Err("the connection's task ended".to_string()),
        }
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn deliver(settings: DelivererSettings, mut messages: pull::Stream, may_act: MayAct) {
    info!(client_id = settings.client_id, "deliverer running");
    let mut echoes = Echoes::start(&settings);
    echoes.fence().await;
    let mut link = Link::new(&settings);
    let mut lease_check = tokio::time::interval(LEASE_CHECK);
    loop {
        tokio::select! {
            Some((topic, payload)) = echoes.events.recv() => echoes.record(&topic, &payload),
            event = link.events.recv() => {
                if let Err(e) = link.on(event).await {
                    warn!(error = e, in_flight = link.in_flight(), "deliverer: the connection to Mosquitto; what was in flight comes again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    link = Link::new(&settings);
                }
            }
            message = messages.next(), if link.in_flight() < settings.window => {
                let Some(message) = message else {
                    warn!("deliverer: the alerts' stream ended");
                    return;
                };
                let message = match message {
                    Ok(message) => message,
                    Err(e) => {
                        warn!(error = %e, "deliverer: reading the alerts' stream");
                        continue;
                    }
                };
                if !may_act(Instant::now()) {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    break;
                }
                hand_on(&mut link, &echoes, message).await;
            }
            _ = lease_check.tick() => {
                if !may_act(Instant::now()) {
                    break;
                }
            }
        }
    }
    // Its successor takes the session for reading back over.
    drop(echoes);
    finish(&mut link).await;
    info!("deliverer: the lease ran out; stopped (what it had not taken stays in the stream)");
}

/// How long the oldest alert message a Mosquitto has not yet acknowledged
/// to its deliverer (reading on `consumer`) has waited in the alerts' stream, at `now`: zero when none
/// waits. Before any deliverer made its consumer, every message waits. Any
/// instance can ask, so a deliverer that stalls or is gone (Mosquitto
/// unreachable, its instance stuck) is seen by the others.
///
/// A broker whose deliverer has not yet made its consumer (its shard is
/// held by an instance without it in its list, during a rolling restart)
/// waits for at most [`DelivererSettings::FIRST_LOOK_BACK`]: its consumer
/// will start that far back, not at the oldest alert of the stream.
pub async fn delivery_delay(
    js: &jetstream::Context,
    consumer: &str,
    now: SystemTime,
) -> Result<Duration, ClusterError> {
    let waited = alerts::unacknowledged_for(js, consumer, now).await?;
    if waited <= DelivererSettings::FIRST_LOOK_BACK {
        return Ok(waited);
    }
    let exists = match js.get_stream(ALERT_STREAM).await {
        Ok(stream) => stream.consumer_info(consumer).await.is_ok(),
        Err(_) => true,
    };
    Ok(match exists {
        true => waited,
        false => DelivererSettings::FIRST_LOOK_BACK,
    })
}

/// Waits a moment for Mosquitto to acknowledge what is in flight, taking
/// nothing new: each acknowledged message is acknowledged to the stream, so
/// that the next deliverer does not send it again. (Sending after the lease
/// ended cannot make a wrong alert, only a late one; a deliverer that dies
/// instead leaves its in-flight messages to be sent again, at least once.)
async fn finish(link: &mut Link) {
    let deadline = tokio::time::Instant::now() + FINISH;
    while link.in_flight() > 0 {
        let event = tokio::select! {
            event = link.events.recv() => event,
            _ = tokio::time::sleep_until(deadline) => break,
        };
        if link.on(event).await.is_err() {
            break;
        }
    }
}

/// The deliverers' messages read back from Mosquitto, on one persistent
/// session for every deliverer in turn.
struct Echoes {
    client: AsyncClient,
    events: mpsc::Receiver<(String, bytes::Bytes)>,
    /// Whether Mosquitto holds the session's subscriptions: a fence sent
    /// before would not come back.
    subscribed: watch::Receiver<bool>,
    task: JoinHandle<()>,
    /// Acknowledges each echo to Mosquitto once [`ECHO_HOLD`] has passed.
    acker: JoinHandle<()>,
    /// Message ids read back, with when.
    seen: HashMap<String, Instant>,
    pruned: Instant,
}

impl Echoes {
    fn start(settings: &DelivererSettings) -> Echoes {
        let mut options = settings.mqtt.clone();
        options
            .set_client_id(format!("{}-echo", settings.client_id))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (events_tx, events) = mpsc::channel(4_096);
        let (subscribed_tx, subscribed) = watch::channel(false);
        let subscriber = client.clone();
        let (held_tx, held) = mpsc::channel(ECHOES_HELD);
        let acker = tokio::spawn(acknowledge_when_due(client.clone(), held));
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.session_present => {
                        subscribed_tx.send_replace(true);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        subscribed_tx.send_replace(true);
                    }
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let client = subscriber.clone();
                        // Its own task: the request waits on this loop.
                        tokio::spawn(async move {
                            let filters =
                                kordon_alert::topics::ECHO_FILTERS.iter().map(|(f, _)| {
                                    rumqttc::SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce)
                                });
                            let _ = client.subscribe_many(filters).await;
                        });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let echo = (p.topic.clone(), p.payload.clone());
                        let due = tokio::time::Instant::now() + ECHO_HOLD;
                        if held_tx.send((due, p)).await.is_err()
                            || events_tx.send(echo).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, "deliverer: reading its messages back");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        });
        Echoes {
            client,
            events,
            subscribed,
            task,
            acker,
            seen: HashMap::new(),
            pruned: Instant::now(),
        }
    }

    fn record(&mut self, topic: &str, payload: &[u8]) {
        let now = Instant::now();
        self.seen.insert(alerts::message_id(topic, payload), now);
        if now.duration_since(self.pruned) > ECHO_MEMORY {
            self.seen
                .retain(|_, at| now.duration_since(*at) < ECHO_MEMORY);
            self.pruned = now;
        }
    }

    /// Sends a fence on every echo topic and reads back until each has
    /// come back (or [`FENCE_PATIENCE`] has passed): everything published
    /// before is then read back.
    async fn fence(&mut self) {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let token = format!("{}-{}", std::process::id(), since_epoch.as_nanos());
        let deadline = tokio::time::Instant::now() + FENCE_PATIENCE;
        if tokio::time::timeout_at(deadline, self.subscribed.wait_for(|s| *s))
            .await
            .is_err()
        {
            warn!("deliverer: reading back not subscribed in time; what is offered again is sent (it may arrive twice)");
            return;
        }
        let payload = serde_json::json!({ "fence": token }).to_string();
        let mut outstanding: Vec<&str> = Vec::new();
        for (_, fence) in kordon_alert::topics::ECHO_FILTERS {
            if self
                .client
                .publish(*fence, QoS::AtLeastOnce, false, payload.clone())
                .await
                .is_ok()
            {
                outstanding.push(fence);
            }
        }
        while !outstanding.is_empty() {
            let echo = tokio::select! {
                echo = self.events.recv() => echo,
                _ = tokio::time::sleep_until(deadline) => None,
            };
            let Some((topic, body)) = echo else {
                warn!(fences = outstanding.len(), "deliverer: fences not back; what is offered again is sent (it may arrive twice)");
                return;
            };
            if body.as_ref() == payload.as_bytes() {
                outstanding.retain(|f| *f != topic);
            } else {
                self.record(&topic, &body);
            }
        }
    }

    /// Whether a message was read back (so Mosquitto has it).
    fn has(&self, topic: &str, payload: &[u8]) -> bool {
        self.seen.contains_key(&alerts::message_id(topic, payload))
    }
}

impl Drop for Echoes {
    /// What is not acknowledged yet, Mosquitto offers the next deliverer.
    fn drop(&mut self) {
        self.task.abort();
        self.acker.abort();
    }
}

/// Acknowledges each echo to Mosquitto once it is due, in the order read.
async fn acknowledge_when_due(
    client: AsyncClient,
    mut held: mpsc::Receiver<(tokio::time::Instant, rumqttc::Publish)>,
) {
    while let Some((due, echo)) = held.recv().await {
        tokio::time::sleep_until(due).await;
        if client.ack(&echo).await.is_err() {
            return;
        }
    }
}

/// Publishes one message, unless Mosquitto already has it.
async fn hand_on(link: &mut Link, echoes: &Echoes, message: Taken) {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.to_string())
    };
    let topic = header(TOPIC_HEADER).unwrap_or_default();
    let offered = message.info().map(|i| i.delivered).unwrap_or(1);
    if topic.is_empty() {
        warn!(subject = %message.subject, "deliverer: a message without a topic; dropped");
        let _ = message.ack().await;
        return;
    }
    // Offered again while still in flight here (Mosquitto's acknowledgement
    // was late): not sent again.
    let Some(message) = (match offered {
        1 => Some(message),
        _ => link.offered_again(message),
    }) else {
        return;
    };
    // Offered again (an earlier deliverer, or this one's broken link, took
    // it and did not acknowledge): sent only if Mosquitto does not have it.
    if offered > 1 {
        let echoed = echoes.has(&topic, &message.payload);
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        info!(
            topic,
            sequence,
            offered,
            echoed,
            "deliverer: a message offered again; {}",
            if echoed { "Mosquitto has it" } else { "sent" }
        );
        if echoed {
            let _ = message.ack().await;
            return;
        }
    }
    let payload = message.payload.clone();
    match link
        .client
        .try_publish(topic, QoS::AtLeastOnce, false, payload)
    {
        Ok(()) => link.queued.push_back(message),
        // Not taken (cannot happen below the window): offered again.
        Err(e) => {
            warn!(error = %e, "deliverer: publishing");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_millis(200))))
                .await;
        }
    }
}

/// Whether a deliverer may run: the lease it runs under.
pub fn may_act(f: impl Fn(Instant) -> bool + Send + Sync + 'static) -> MayAct {
    Arc::new(f)
}
