//! The bridge: devices' messages from Mosquitto into JetStream, each to the
//! shards of its device's cases, acknowledged to Mosquitto only once
//! JetStream has stored every copy (`docs/cluster.md`, "Devices keep
//! speaking MQTT").
//!
//! One instance runs it at a time, under a lease. It checks the lease before
//! every message it hands on, and every 100 ms when none comes, and stops
//! when the lease has run out. It reads on a persistent MQTT session with a
//! fixed client id, so:
//! - what it took but had not acknowledged when it stopped or died stays
//!   with Mosquitto, for the next bridge;
//! - the next bridge, connecting with the same id, takes the session over,
//!   and Mosquitto disconnects a deposed bridge still running;
//! - a fix stored twice (a redelivery after a fail-over) is dropped by the
//!   stream: its id is derived from its content
//!   ([`crate::routing::message_id`]); a redelivered status is stored twice.
//!
//! Three tasks, joined by bounded queues of `window` messages: the MQTT
//! reader, the publisher to JetStream, and the acknowledger, which waits for
//! JetStream's acknowledgements in order and passes each on to Mosquitto. A
//! copy JetStream did not store is sent again, after the messages behind it:
//! the shard's reader gets it late, as it gets a device's late fix.
//! The window should be at least Mosquitto's `max_inflight_messages`, so that
//! the reader rarely finds it full (redeliveries after a reconnect can add to
//! it). When it does, reading pauses until JetStream has stored enough to
//! make room; the publisher and the acknowledger never wait for the reader
//! ([`REQUESTS`]), so a pause always ends while JetStream stores.
//! It never decides anything about a case.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, context::PublishAckFuture};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::keeper::ClusterError;
use crate::routing::{self, DeviceBook, SHARD_STREAM, SHARD_SUBJECTS, TOPIC_HEADER};

/// Where the bridge reads and how much it holds.
#[derive(Clone, Debug)]
pub struct BridgeSettings {
    /// How to reach Mosquitto: its address, kordon's credentials, TLS
    /// (`kordon_ingest::broker::client_options`). The bridge sets its
    /// client id and session.
    pub mqtt: MqttOptions,
    /// One session for whichever instance runs the bridge.
    pub client_id: String,
    /// Messages taken from Mosquitto and not yet acknowledged to it.
    pub window: usize,
}

impl BridgeSettings {
    pub const CLIENT_ID: &'static str = "kordon-bridge";
    /// `max_inflight_messages` of `deploy/mosquitto/kordon.conf`.
    pub const WINDOW: usize = 20_000;
}

/// The device topics the bridge reads (`docs/mqtt.md`).
const TOPICS: &[&str] = &[
    "kordon/v1/devices/+/fix",
    "kordon/v1/devices/+/fix.bin",
    "kordon/v1/devices/+/status",
];

/// How long a copy's redelivery to the stream is recognised as one: longer
/// than a bridge's fail-over and the backlog it then drains. JetStream keeps
/// every id of the window in memory, so it is not hours.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Makes sure the shards' stream exists.
pub async fn ensure_shard_stream(
    js: &jetstream::Context,
    replicas: usize,
) -> Result<(), ClusterError> {
    crate::keeper::ensure_stream(
        js,
        SHARD_STREAM,
        "kordon: every device message, by shard",
        SHARD_SUBJECTS,
        replicas,
        DUPLICATE_WINDOW,
    )
    .await
}

/// Whether the bridge may go on at an instant: its lease, as the lease
/// keeper tells it.
pub type MayAct = Arc<dyn Fn(Instant) -> bool + Send + Sync>;

/// A running bridge.
pub struct Bridge {
    tasks: Vec<JoinHandle<()>>,
    stopped: watch::Receiver<bool>,
    subscribed: watch::Receiver<bool>,
}

/// The room in rumqttc's queue of requests to Mosquitto: an acknowledgement
/// for every message Mosquitto can have in flight to one session (packet
/// ids have 16 bits), and the subscription. Only the reader's polling
/// empties that queue, and the reader pauses while the window is full; with
/// less room the acknowledger would wait for the reader, the publisher for
/// the acknowledger and the reader for the publisher, for ever. (With 64 it
/// did: the cluster benchmark at 32,000 fixes/s, and
/// `offered_more_than_its_window_the_bridge_keeps_answering_and_stores_all`
/// in `tests/bridge.rs`.) rumqttc's queue grows as it fills; it holds
/// nothing while the acknowledgements keep up.
const REQUESTS: usize = u16::MAX as usize + 16;

/// How long reading may pause for room in the window before the log says
/// so: JetStream stores more slowly than Mosquitto offers. Mosquitto drops
/// a connection silent for one and a half keep-alive periods (22.5 s); the
/// bridge then connects again and Mosquitto offers its messages again.
const LONG_PAUSE: Duration = Duration::from_secs(5);

/// How often an idle bridge checks its lease: with no message coming, it
/// must still stop (and let go of the session) when the lease runs out.
const LEASE_CHECK: Duration = Duration::from_millis(100);

impl Bridge {
    /// Starts reading. It stops by itself once `may_act` says no.
    pub fn start(
        settings: BridgeSettings,
        js: jetstream::Context,
        book: watch::Receiver<DeviceBook>,
        may_act: MayAct,
    ) -> Bridge {
        let mut options = settings.mqtt.clone();
        options
            .set_client_id(settings.client_id.clone())
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let (client, eventloop) = AsyncClient::new(options, REQUESTS);
        let (taken_tx, taken_rx) = mpsc::channel(settings.window);
        let (sent_tx, sent_rx) = mpsc::channel(settings.window);
        let (stopped_tx, stopped) = watch::channel(false);
        let stopped_tx = Arc::new(stopped_tx);
        let (subscribed_tx, subscribed) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(read(client.clone(), eventloop, taken_tx, subscribed_tx)),
            tokio::spawn(publish(
                js.clone(),
                book,
                may_act.clone(),
                taken_rx,
                sent_tx,
                stopped_tx.clone(),
            )),
            tokio::spawn(acknowledge(js, client, may_act, sent_rx, stopped_tx)),
        ];
        info!(client_id = settings.client_id, "bridge running");
        Bridge {
            tasks,
            stopped,
            subscribed,
        }
    }

    /// Waits until Mosquitto holds the bridge's subscriptions (acknowledged,
    /// or kept from an earlier connection of the session): from then on it
    /// keeps every device message for the bridge.
    pub async fn subscribed(&mut self) {
        let _ = self.subscribed.wait_for(|s| *s).await;
    }

    /// Waits until the bridge has stopped by itself (its lease ran out).
    pub async fn stopped(&mut self) {
        let _ = self.stopped.wait_for(|s| *s).await;
    }

    /// Stops at once: what a crash leaves behind (the unacknowledged stay
    /// with Mosquitto).
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Reads from Mosquitto: subscribes on a connection that has no session
/// yet, and hands on every message. Reconnects by itself (rumqttc does, on
/// the next poll).
async fn read(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    taken: mpsc::Sender<Publish>,
    subscribed: watch::Sender<bool>,
) {
    loop {
        let event = tokio::select! {
            event = eventloop.poll() => event,
            // The bridge stopped: drop the connection, and with it every
            // message not acknowledged, which Mosquitto keeps.
            _ = taken.closed() => return,
        };
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.session_present => {
                subscribed.send_replace(true);
            }
            Ok(Event::Incoming(Packet::ConnAck(_))) => subscribe(&client),
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                subscribed.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(message))) => {
                if hand_on(&taken, message).await.is_err() {
                    return; // the bridge stopped
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "bridge: the connection to Mosquitto");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Hands a message to the publisher. When the window is full, reading
/// pauses (and with it the connection: rumqttc reads, writes and pings in
/// one poll) until the acknowledger has made room.
async fn hand_on(taken: &mpsc::Sender<Publish>, message: Publish) -> Result<(), ()> {
    let message = match taken.try_send(message) {
        Ok(()) => return Ok(()),
        Err(mpsc::error::TrySendError::Closed(_)) => return Err(()),
        Err(mpsc::error::TrySendError::Full(message)) => message,
    };
    let paused = Instant::now();
    loop {
        match tokio::time::timeout(LONG_PAUSE, taken.reserve()).await {
            Ok(Ok(room)) => {
                room.send(message);
                break;
            }
            Ok(Err(_)) => return Err(()),
            Err(_) => warn!(
                paused_s = paused.elapsed().as_secs(),
                "bridge: JetStream stores more slowly than Mosquitto offers; reading paused"
            ),
        }
    }
    if paused.elapsed() >= LONG_PAUSE {
        info!(
            paused_ms = paused.elapsed().as_millis() as u64,
            "bridge: reading resumed"
        );
    }
    Ok(())
}

/// Asks for the device topics from a task of its own: the request waits for
/// room in rumqttc's queue, which only the event loop's task empties, and
/// that task must go on reading (and answering keep-alive) meanwhile.
fn subscribe(client: &AsyncClient) {
    let client = client.clone();
    tokio::spawn(async move {
        let topics = TOPICS
            .iter()
            .map(|t| rumqttc::SubscribeFilter::new(t.to_string(), QoS::AtLeastOnce));
        if let Err(e) = client.subscribe_many(topics).await {
            warn!(error = %e, "bridge: subscribing");
        }
    });
}

/// A message and the stores of its copies, in the order taken.
struct Sent {
    message: Publish,
    copies: Vec<ShardCopy>,
}

/// One shard's copy of a message.
struct ShardCopy {
    subject: String,
    /// A fix's id, for the stream to drop a copy it holds already.
    id: Option<String>,
    ack: Option<PublishAckFuture>,
}

/// Publishes every copy of every message, while the lease holds.
async fn publish(
    js: jetstream::Context,
    book: watch::Receiver<DeviceBook>,
    may_act: MayAct,
    mut taken: mpsc::Receiver<Publish>,
    sent: mpsc::Sender<Sent>,
    stopped: Arc<watch::Sender<bool>>,
) {
    let mut lease_check = tokio::time::interval(LEASE_CHECK);
    loop {
        let message = tokio::select! {
            message = taken.recv() => message,
            _ = lease_check.tick() => {
                if may_act(Instant::now()) {
                    continue;
                }
                None
            }
        };
        let Some(message) = message.filter(|_| may_act(Instant::now())) else {
            info!("bridge: the lease ran out (or the reader stopped); stopping");
            stopped.send_replace(true);
            return;
        };
        let shards = book.borrow().route(&message.topic);
        let mut copies = Vec::with_capacity(shards.len());
        for shard in shards {
            let subject = routing::shard_subject(shard);
            let id = routing::message_id(&message.topic, &message.payload, shard);
            let ack = store(&js, &subject, id.as_deref(), &message).await;
            copies.push(ShardCopy { subject, id, ack });
        }
        if sent.send(Sent { message, copies }).await.is_err() {
            return;
        }
    }
}

/// Sends one copy; `None` if it could not even be sent (it is sent again).
async fn store(
    js: &jetstream::Context,
    subject: &str,
    id: Option<&str>,
    message: &Publish,
) -> Option<PublishAckFuture> {
    let mut headers = HeaderMap::new();
    if let Some(id) = id {
        headers.insert(NATS_MESSAGE_ID, id);
    }
    headers.insert(TOPIC_HEADER, message.topic.as_str());
    js.publish_with_headers(subject.to_string(), headers, message.payload.clone())
        .await
        .map_err(|e| warn!(error = %e, subject, "bridge: publishing"))
        .ok()
}

/// Waits, in order, until every copy of a message is stored (sending it
/// again if need be), then acknowledges the message to Mosquitto.
async fn acknowledge(
    js: jetstream::Context,
    client: AsyncClient,
    may_act: MayAct,
    mut sent: mpsc::Receiver<Sent>,
    stopped: Arc<watch::Sender<bool>>,
) {
    while let Some(Sent { message, copies }) = sent.recv().await {
        for mut copy in copies {
            loop {
                if let Some(ack) = copy.ack.take() {
                    match ack.await {
                        Ok(_) => break,
                        Err(e) => {
                            warn!(error = %e, subject = copy.subject, "bridge: not stored; again")
                        }
                    }
                }
                if !may_act(Instant::now()) {
                    // Not acknowledged: Mosquitto keeps it for the next bridge.
                    stopped.send_replace(true);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                copy.ack = store(&js, &copy.subject, copy.id.as_deref(), &message).await;
            }
        }
        if let Err(e) = client.ack(&message).await {
            warn!(error = %e, "bridge: acknowledging to Mosquitto");
        }
    }
}
