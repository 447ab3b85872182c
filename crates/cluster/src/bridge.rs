//! The bridge: devices' messages from Mosquitto into JetStream, each to the
//! shards of its device's cases, acknowledged to Mosquitto only once
//! JetStream has stored every copy (`docs/cluster.md`, "Devices keep
//! speaking MQTT").
//!
//! There is one for each device broker ([`crate::brokers`]). One instance
//! runs each at a time, under a lease. It checks the lease before
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
//! Three tasks, joined by bounded queues: the MQTT reader, the publisher to
//! JetStream, and the acknowledger, which waits for JetStream's
//! acknowledgements in order and passes each on to Mosquitto. A copy
//! JetStream did not store is sent again, after the messages behind it: the
//! shard's reader gets it late, as it gets a device's late fix.
//!
//! The reader never waits for the other two. rumqttc reads, writes and pings
//! in one poll, so a reader waiting for room would also hold back the
//! acknowledgements that make room, and the keep-alive: under a flood the
//! three tasks once waited on each other for ever, and Mosquitto dropped the
//! silent bridge. Mosquitto itself bounds what the reader takes: it sends no
//! more than `max_inflight_messages` unacknowledged, and the rest waits
//! there. The reader's queue ([`BridgeSettings::HELD`]) holds what Mosquitto
//! can have in flight, twice over; a message that still finds it full is left
//! unacknowledged, and the bridge connects again once the queue is empty,
//! for Mosquitto to offer it again.
//! It never decides anything about a case.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Messages sent to JetStream and not yet stored (and so not yet
    /// acknowledged to Mosquitto).
    pub window: usize,
    /// Messages read and not yet sent to JetStream, at most
    /// ([`BridgeSettings::HELD`]).
    pub held: usize,
}

impl BridgeSettings {
    pub const CLIENT_ID: &'static str = "kordon-bridge";
    /// `max_inflight_messages` of `deploy/mosquitto/kordon.conf`.
    pub const WINDOW: usize = 20_000;
    /// Twice what Mosquitto can have in flight to one session (packet ids
    /// have 16 bits), since after a reconnect it offers again what the
    /// bridge still holds. The queue grows as it fills; while JetStream
    /// keeps up it holds little.
    pub const HELD: usize = 2 * u16::MAX as usize;
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

/// Makes sure the shards' stream exists, with `max_age` as its age limit
/// if given ([`crate::retention::Retention`]).
pub async fn ensure_shard_stream(
    js: &jetstream::Context,
    replicas: usize,
    max_age: Option<Duration>,
) -> Result<(), ClusterError> {
    let stream = crate::keeper::OwnStream {
        name: SHARD_STREAM,
        description: "kordon: every device message, by shard",
        subjects: SHARD_SUBJECTS,
        duplicate_window: DUPLICATE_WINDOW,
    };
    crate::keeper::ensure_stream(js, &stream, replicas, max_age).await
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
/// for every message Mosquitto can have in flight, and the subscription.
/// Only the reader's polling empties it, and it polls whatever the rest
/// does, so a full queue only slows the acknowledger down.
const REQUESTS: usize = u16::MAX as usize + 16;

/// How often the acknowledger tries again while rumqttc's queue is full.
const ACK_RETRY: Duration = Duration::from_millis(1);

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
        let acks = Arc::new(Acks {
            client: client.clone(),
            connection: Mutex::new(0),
            reader_gone: AtomicBool::new(false),
        });
        let (taken_tx, taken_rx) = mpsc::channel(settings.held.max(1));
        let (sent_tx, sent_rx) = mpsc::channel(settings.window);
        let (stopped_tx, stopped) = watch::channel(false);
        let stopped_tx = Arc::new(stopped_tx);
        let (subscribed_tx, subscribed) = watch::channel(false);
        let reader = Reader {
            client,
            eventloop,
            acks: acks.clone(),
            taken: taken_tx,
            subscribed: subscribed_tx,
        };
        let tasks = vec![
            tokio::spawn(reader.run()),
            tokio::spawn(publish(
                js.clone(),
                book,
                may_act.clone(),
                taken_rx,
                sent_tx,
                stopped_tx.clone(),
            )),
            tokio::spawn(acknowledge(js, acks, may_act, sent_rx, stopped_tx)),
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

/// A message read from Mosquitto, and the connection it came on.
struct Taken {
    message: Publish,
    connection: u64,
}

/// Reads from Mosquitto: subscribes on a connection that has no session
/// yet, and hands on every message. Reconnects by itself (rumqttc does, on
/// the next poll).
struct Reader {
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
    acks: Arc<Acks>,
    taken: mpsc::Sender<Taken>,
    subscribed: watch::Sender<bool>,
}

impl Reader {
    async fn run(mut self) {
        // A message left unacknowledged for want of room, to be offered
        // again on the next connection.
        let mut left = false;
        loop {
            if left && self.taken.capacity() == self.taken.max_capacity() {
                info!("bridge: connecting again, for Mosquitto to offer what it left");
                self.acks.connection_lost(&mut self.eventloop);
                left = false;
            }
            let event = tokio::select! {
                event = self.eventloop.poll() => event,
                // The bridge stopped: drop the connection, and with it every
                // message not acknowledged, which Mosquitto keeps.
                _ = self.taken.closed() => return,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.session_present => {
                    self.subscribed.send_replace(true);
                }
                Ok(Event::Incoming(Packet::ConnAck(_))) => subscribe(&self.client),
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    self.subscribed.send_replace(true);
                }
                Ok(Event::Incoming(Packet::Publish(message))) => {
                    if !self.hand_on(message, &mut left) {
                        return; // the bridge stopped
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(error = %e, "bridge: the connection to Mosquitto");
                    self.acks.connection_lost(&mut self.eventloop);
                    left = false;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Hands a message to the publisher, or leaves it with Mosquitto
    /// (unacknowledged) when the queue is full; false once the bridge has
    /// stopped.
    fn hand_on(&self, message: Publish, left: &mut bool) -> bool {
        let connection = self.acks.connection();
        match self.taken.try_send(Taken {
            message,
            connection,
        }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !*left {
                    warn!(held = self.taken.max_capacity(), "bridge: Mosquitto offers more than the bridge holds while JetStream is behind; the rest is left with Mosquitto until the bridge connects again");
                }
                *left = true;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.acks.reader_gone.store(true, Ordering::Relaxed);
    }
}

/// Acknowledgements to Mosquitto, each only on the connection its message
/// came on. After a reconnect Mosquitto offers an unacknowledged message
/// again, under a packet id that may by then name another message, so an
/// acknowledgement from an earlier connection could let a message go that
/// JetStream does not hold yet. The copy offered again is acknowledged
/// instead.
struct Acks {
    client: AsyncClient,
    /// The current connection's number; held while an acknowledgement is
    /// queued, so that none slips in as a connection ends.
    connection: Mutex<u64>,
    reader_gone: AtomicBool,
}

impl Acks {
    fn connection(&self) -> u64 {
        *self.connection.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the acknowledgement of a message, unless its connection has
    /// ended.
    async fn acknowledge(&self, message: &Publish, connection: u64) {
        loop {
            {
                let current = self.connection.lock().unwrap_or_else(|e| e.into_inner());
                if *current != connection {
                    return; // Mosquitto offers it again.
                }
                match self.client.try_ack(message) {
                    Ok(()) => return,
                    Err(rumqttc::ClientError::TryRequest(_)) if !self.reader_gone() => {}
                    Err(e) => {
                        warn!(error = %e, "bridge: acknowledging to Mosquitto");
                        return;
                    }
                }
            }
            tokio::time::sleep(ACK_RETRY).await;
        }
    }

    /// Whether the reader, and with it rumqttc's event loop, is gone: a
    /// full queue and a closed one give the same error.
    fn reader_gone(&self) -> bool {
        self.reader_gone.load(Ordering::Relaxed)
    }

    /// The connection ended (or is ended): the next is another, and the
    /// acknowledgements queued for this one are dropped (rumqttc's `clean`
    /// drops them, and sends the rest again on the next connection).
    fn connection_lost(&self, eventloop: &mut rumqttc::EventLoop) {
        let mut current = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        *current += 1;
        eventloop.clean();
    }
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
    connection: u64,
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
    mut taken: mpsc::Receiver<Taken>,
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
        let Some(Taken {
            message,
            connection,
        }) = message.filter(|_| may_act(Instant::now()))
        else {
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
        let sent_message = Sent {
            message,
            connection,
            copies,
        };
        if sent.send(sent_message).await.is_err() {
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
    acks: Arc<Acks>,
    may_act: MayAct,
    mut sent: mpsc::Receiver<Sent>,
    stopped: Arc<watch::Sender<bool>>,
) {
    while let Some(Sent {
        message,
        connection,
        copies,
    }) = sent.recv().await
    {
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
        acks.acknowledge(&message, connection).await;
    }
}
