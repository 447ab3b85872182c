//! The ingest link: kordon's subscribing connection to the broker, which
//! reads only as fast as kordon handles messages and answers the broker
//! whatever it reads.
//!
//! It speaks MQTT 3.1.1 itself (rumqttc's codec, `mqttbytes`) because
//! rumqttc cannot do this: one event loop reads and writes there, so a
//! paused read pauses the acknowledgements and keep-alives too, and under a
//! flood its requests leave at about a tenth of the rate messages arrive
//! (`docs/mqtt.md`, Backpressure).
//!
//! - A message is read only when the engine's queue has room for it. While
//!   kordon is behind, the rest waits in the socket and at the broker,
//!   unacknowledged: TCP's flow control is kordon's backpressure and the
//!   broker's queue is the backlog, so memory stays flat and nothing is
//!   dropped or kept back.
//! - It reads the socket at most once per [`READ_PERIOD`], and the socket
//!   does not wake it meanwhile ([`LinkSocket`]): Mosquitto writes each
//!   message as it comes, and a link woken for each spent more CPU in the
//!   kernel's wake-ups than on the messages. A message after a quiet
//!   moment is read at once.
//! - Reading and writing never wait for each other: acknowledgements of
//!   handled messages (from the journal writer, a commit's at a time, once
//!   their records are durable)
//!   and a PINGREQ every keep-alive period are queued and written as the
//!   socket takes them, whatever the reading does.
//! - A message is acknowledged only on the connection it came on
//!   ([`Receipt`]); the broker delivers it again on the next one.
//! - It subscribes on every connection (QoS 1), so a session the broker
//!   kept with missing or different subscriptions is mended.
//! - Monitoring is `online` (`kordon/v1/engine/status`) only while this
//!   link is subscribed and the publishing link is up ([`Health`] says when
//!   both are); this link announces it, and `offline` when it is lost.
//!
//! It never decides anything about a message: [`Intake`] turns each into a
//! command and queues it for the engine's thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use crossbeam_channel::TrySendError;
use kordon_ingest::broker::{
    BrokerSettings, BrokerStream, Dialer, LinkSocket, MAX_MQTT_PACKET, OFFLINE, ONLINE,
};
use kordon_ingest::Backoff;
use rumqttc::mqttbytes::v4::{
    Connect, Login, Packet, PubComp, SubAck, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::{AsyncClient, ConnectReturnCode, QoS};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::core_thread::Command;
use crate::health::{Health, Link};
use crate::metrics as m;
use crate::mqtt::{announce, subscriptions, Intake, Receipt};

/// Whether kordon holds messages it has read and not yet acknowledged on
/// the current connection (their records wait for the journal's commit).
/// While it does, the broker may hold the rest back (its in-flight window
/// is full), so a pause in what arrives is kordon's own, not the devices'
/// silence: [`crate::engine_time`] must not end a backlog on it. A disk
/// busy with another writer stalled a commit for longer than a backlog's
/// quiet, and the rest of the backlog was judged at the wall clock.
#[derive(Debug, Clone, Default)]
pub struct Unacknowledged(Arc<AtomicBool>);

impl Unacknowledged {
    /// Some messages read on this connection wait for their acknowledgement.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, any: bool) {
        self.0.store(any, Ordering::Relaxed);
    }
}

/// Who the link is to the broker.
#[derive(Debug, Clone)]
pub struct Session {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: Duration,
}

impl Session {
    pub fn of(settings: &BrokerSettings) -> Session {
        Session {
            client_id: settings.client_id.clone(),
            username: settings.username.clone(),
            password: settings.password.clone(),
            keep_alive: Duration::from_secs(u64::from(settings.keep_alive_s.max(1))),
        }
    }
}

/// How long a broker may take to answer a CONNECT, and to take the last
/// packets at shutdown.
const BROKER_PATIENCE: Duration = Duration::from_secs(10);
/// What one read asks of the socket at least.
const READ_CHUNK: usize = 64 * 1024;
/// The share of the engine's queue that must be free before reading
/// resumes once it was found full: room for one at a time would wake the
/// link for every message under overload.
const RESUME_SHARE: usize = 4;
/// How often a paused link looks for room in the engine's queue (a
/// crossbeam queue, which has nothing to await).
const ROOM_POLL: Duration = Duration::from_millis(1);
/// How often the link reads the socket, at most: a message within a
/// period of the last read waits for the rest of it (tokio's timer rounds
/// the wait up to its millisecond ticks, so 0.5 to 1.5 ms), and everything
/// that came meanwhile is read in one go and handed to the engine's thread
/// as one batch. At 10,000 fixes/s this took the link's CPU per fix from
/// about 7 to 4.4 µs, and its thread's wake-ups from 6,400 to 1,050 a
/// second (`kordon-bench --rates 10000`, 2026-12-02).
const READ_PERIOD: Duration = Duration::from_micros(500);
/// How often the link shows what the broker has yet to take of its output
/// (`kordon_ingest_unsent_bytes`).
const UNSENT_LOOK: Duration = Duration::from_secs(1);
/// Acknowledgements queued together, at most.
const ACK_BATCH: usize = 1_024;
/// The packet id of kordon's SUBSCRIBE (the link sends no other packet
/// that needs one).
const SUBSCRIBE_PKID: u16 = 1;

#[derive(Debug, Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the broker sent what is not MQTT 3.1.1: {0}")]
    Protocol(String),
    #[error("the broker refused the connection: {0:?}")]
    Refused(ConnectReturnCode),
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the broker closed the connection")]
    Closed,
    #[error("no word from the broker for {0:?}, a keep-alive ping unanswered")]
    Silent(Duration),
    #[error("the broker has taken nothing kordon wrote for {0:?}")]
    NotTaking(Duration),
}

impl From<CodecError> for LinkError {
    fn from(e: CodecError) -> Self {
        LinkError::Protocol(e.to_string())
    }
}

/// How a connection ended without an error: kordon stopped, the last
/// acknowledgements went out, then DISCONNECT.
enum Ended {
    Stopped,
}

/// Everything the link needs; [`IngestLink::run`] drives it until kordon
/// stops.
pub struct IngestLink {
    pub dialer: Dialer,
    pub session: Session,
    /// Decodes what is read, and queues it for the engine's thread.
    pub intake: Intake,
    /// Each commit's acknowledgements, from the journal writer; closed
    /// once it is done.
    pub receipts: mpsc::Receiver<Vec<Receipt>>,
    /// The publishing link, for `online` and `offline`.
    pub status: AsyncClient,
    pub clock: Clock,
    pub health: Health,
    pub stopping: watch::Receiver<bool>,
    /// Told whether messages wait for their acknowledgement.
    pub unacknowledged: Unacknowledged,
}

impl IngestLink {
    /// Connects, serves the connection, and connects again with back-off,
    /// until kordon stops.
    pub async fn run(self) {
        let IngestLink {
            dialer,
            session,
            intake,
            receipts,
            status,
            clock,
            health,
            stopping,
            unacknowledged,
        } = self;
        let mut driver = Driver {
            intake: Some(intake),
            receipts,
            status,
            clock,
            health,
            stopping,
            unacknowledged,
            keep_alive: session.keep_alive,
            messages_in: metrics::counter!(m::MESSAGES_IN),
        };
        let mut backoff = Backoff::new();
        for number in 1.. {
            let opened = tokio::select! {
                opened = open(&dialer, &session) => opened,
                () = drop_stale_receipts(&mut driver.receipts) => return,
                _ = driver.stopping.changed() => return,
            };
            let outcome = match opened {
                Ok(opened) => {
                    backoff.reset();
                    driver.serve(opened, number).await
                }
                Err(e) => Err(e),
            };
            let error = match outcome {
                Ok(Ended::Stopped) => {
                    driver.health.broker_lost(Link::Ingest, driver.clock.now());
                    return;
                }
                Err(error) => error,
            };
            driver.lost();
            metrics::counter!(m::BROKER_CONNECTION_ERRORS).increment(1);
            if driver.intake.is_none() {
                // Stopping without a broker: nothing left to flush to.
                return;
            }
            let delay = backoff.next_delay();
            warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "ingest link to the broker lost");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = drop_stale_receipts(&mut driver.receipts) => return,
                _ = driver.stopping.changed() => return,
            }
        }
    }
}

/// The link between connections. `intake` is `None` once kordon stops
/// taking messages (dropping it tells the shutdown so).
struct Driver {
    intake: Option<Intake>,
    receipts: mpsc::Receiver<Vec<Receipt>>,
    status: AsyncClient,
    clock: Clock,
    health: Health,
    stopping: watch::Receiver<bool>,
    unacknowledged: Unacknowledged,
    keep_alive: Duration,
    /// `kordon_messages_total`, looked up once rather than by name for
    /// every message.
    messages_in: metrics::Counter,
}

impl Driver {
    /// One connection, from its CONNACK to its end.
    async fn serve(&mut self, opened: Opened, number: u64) -> Result<Ended, LinkError> {
        info!(
            session_present = opened.session_present,
            "ingest link connected to the broker"
        );
        let session_present = opened.session_present;
        let mut connection = Connection::new(opened, number, self.keep_alive);
        connection.output.subscribe()?;
        let mut waiting = None;
        if let Some(intake) = &mut self.intake {
            intake.connected(number, &self.health);
            waiting = Some(Command::Connected {
                now: self.clock.now(),
                session_present,
            });
        }
        let mut pings = tokio::time::interval_at(
            tokio::time::Instant::now() + self.keep_alive,
            self.keep_alive,
        );
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut looks = tokio::time::interval(UNSENT_LOOK);
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if waiting.is_none() {
                waiting = self.hand_on_read(&mut connection)?;
            }
            self.unacknowledged.set(connection.unacknowledged > 0);
            let reading = self.intake.is_some() && waiting.is_none();
            let Connection { input, output, .. } = &mut connection;
            tokio::select! {
                biased;
                _ = self.stopping.changed(), if self.intake.is_some() => {
                    // Stop taking messages; keep acknowledging what the
                    // engine's thread still finishes, until the journal
                    // writer is done.
                    self.intake = None;
                    waiting = None;
                    debug!("ingest link: no longer handing messages on");
                }
                written = output.write_some(), if output.has_output() => written?,
                receipts = self.receipts.recv() => match receipts {
                    Some(batch) => connection.acknowledge(batch, &mut self.receipts)?,
                    None => {
                        if self.intake.is_some() {
                            // Only a failed writer closes it this early.
                            error!("the journal writer is gone while kordon still takes messages: nothing can be acknowledged any more; the ingest link stops");
                        }
                        connection.output.close().await?;
                        return Ok(Ended::Stopped);
                    }
                },
                _ = pings.tick() => connection.keep_alive(reading)?,
                _ = looks.tick() => connection.show_unsent(),
                has_room = room(&self.intake), if waiting.is_some() => {
                    // `waiting` is `Some`: the branch's condition.
                    match (self.intake.as_ref().filter(|_| has_room), waiting.take()) {
                        (Some(intake), Some(command)) => {
                            waiting = intake.hand_on(command).err().and_then(still_waiting);
                            if waiting.is_none() {
                                connection.input.resume();
                                self.health.engine_caught_up();
                            }
                        }
                        (Some(_), None) => {}
                        // The engine's thread is gone.
                        (None, _) => self.intake = None,
                    }
                },
                read = input.read_some(), if reading => read?,
            }
        }
    }

    /// Hands on the messages already read while the engine's queue has
    /// room, and answers the broker's other packets. The message that finds
    /// the queue full comes back: it waits for room, and reading waits with
    /// it; kordon is overloaded until it goes in.
    fn hand_on_read(&mut self, connection: &mut Connection) -> Result<Option<Command>, LinkError> {
        if self.intake.is_none() {
            return Ok(None);
        }
        while let Some(packet) = connection.input.next_packet()? {
            let publish = match packet {
                Packet::Publish(publish) => publish,
                Packet::SubAck(ack) => {
                    self.subscribed(&ack);
                    continue;
                }
                other => {
                    connection.output.answer(other)?;
                    continue;
                }
            };
            let Some(intake) = &mut self.intake else {
                return Ok(None);
            };
            self.messages_in.increment(1);
            if publish.qos != QoS::AtMostOnce {
                connection.unacknowledged += 1;
            }
            let command = intake.command(publish, self.clock.now());
            match intake.hand_on(command) {
                Ok(()) => {}
                Err(TrySendError::Full(command)) => {
                    connection.input.pause();
                    metrics::counter!(m::ENGINE_BUSY).increment(1);
                    self.health.engine_busy(self.clock.now());
                    return Ok(Some(command));
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.intake = None;
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// The broker answered the SUBSCRIBE: the link is up. A refused filter
    /// (the broker's ACL) is an error in the log: its messages never reach
    /// kordon.
    fn subscribed(&self, ack: &SubAck) {
        let refused: Vec<_> = subscriptions()
            .into_iter()
            .zip(&ack.return_codes)
            .filter(|(_, code)| matches!(code, SubscribeReasonCode::Failure))
            .map(|(filter, _)| filter)
            .collect();
        if refused.is_empty() {
            info!("ingest link subscribed");
        } else {
            error!(?refused, "the broker refused these subscriptions (its ACL?): their messages never reach kordon");
        }
        if self.health.broker_connected(Link::Ingest, self.clock.now()) {
            announce(&self.status, ONLINE);
        }
    }

    /// The connection is gone: monitoring is down until it is back.
    fn lost(&self) {
        // The broker delivers them again on the next connection, and what
        // was unsent went with this one.
        self.unacknowledged.set(false);
        metrics::gauge!(m::INGEST_UNSENT).set(0.0);
        if self.health.broker_lost(Link::Ingest, self.clock.now()) {
            announce(&self.status, OFFLINE);
        }
    }
}

/// Waits until the engine's queue has room for a batch again (also when
/// the engine's thread has ended: it empties its queue, and the hand-on
/// that follows finds it gone); false when kordon stopped taking messages.
async fn room(intake: &Option<Intake>) -> bool {
    let Some(intake) = intake else {
        return false;
    };
    // Its own sender: a future borrowing the intake would keep it borrowed
    // through every branch of the select.
    let queue = intake.engine_queue();
    let capacity = queue.capacity().unwrap_or(usize::MAX);
    while capacity - queue.len() < capacity / RESUME_SHARE {
        tokio::time::sleep(ROOM_POLL).await;
    }
    true
}

/// The command a failed hand-on gives back, when it can still go.
fn still_waiting(error: TrySendError<Command>) -> Option<Command> {
    match error {
        TrySendError::Full(command) => Some(command),
        TrySendError::Disconnected(_) => None,
    }
}

/// A connection the broker accepted.
struct Opened {
    stream: Box<dyn BrokerStream>,
    socket: LinkSocket,
    session_present: bool,
    /// What the broker sent after its CONNACK, read with it: with a session
    /// present, the first messages it held for kordon.
    read: BytesMut,
}

/// Dials, sends CONNECT, and waits for the CONNACK.
async fn open(dialer: &Dialer, session: &Session) -> Result<Opened, LinkError> {
    let opening = async {
        let dialed = dialer.dial().await?;
        let (mut stream, socket) = (dialed.stream, dialed.socket);
        let mut out = BytesMut::new();
        Packet::Connect(connect_packet(session)).write(&mut out, MAX_MQTT_PACKET)?;
        stream.write_all(&out).await?;
        let mut read = BytesMut::with_capacity(READ_CHUNK);
        loop {
            match Packet::read(&mut read, MAX_MQTT_PACKET) {
                Ok(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
                    return Ok(Opened {
                        stream,
                        socket,
                        session_present: ack.session_present,
                        read,
                    });
                }
                Ok(Packet::ConnAck(ack)) => return Err(LinkError::Refused(ack.code)),
                Ok(other) => {
                    return Err(LinkError::Protocol(format!(
                        "{other:?} where a CONNACK was due"
                    )))
                }
                Err(CodecError::InsufficientBytes(_)) => {
                    if stream.read_buf(&mut read).await? == 0 {
                        return Err(LinkError::Closed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    tokio::time::timeout(BROKER_PATIENCE, opening)
        .await
        .map_err(|_| LinkError::Timeout(BROKER_PATIENCE))?
}

fn connect_packet(session: &Session) -> Connect {
    let mut connect = Connect::new(session.client_id.clone());
    connect.keep_alive = session.keep_alive.as_secs().clamp(1, u64::from(u16::MAX)) as u16;
    // The broker keeps kordon's subscriptions and queues messages for it
    // while it is away (a restart, a network fault).
    connect.clean_session = false;
    if let Some(user) = &session.username {
        connect.login = Some(Login::new(
            user.clone(),
            session.password.clone().unwrap_or_default(),
        ));
    }
    connect
}

/// Waits until the journal writer is done, dropping the acknowledgements
/// that arrive meanwhile: without a connection they are all stale.
async fn drop_stale_receipts(receipts: &mut mpsc::Receiver<Vec<Receipt>>) {
    while let Some(batch) = receipts.recv().await {
        for receipt in batch {
            debug!(
                pkid = receipt.pkid(),
                "not acknowledged: received on an earlier connection, the broker delivers it again"
            );
        }
    }
}

/// One connection: its reading and writing halves, which never wait for
/// each other.
struct Connection {
    input: Input,
    output: Output,
    number: u64,
    keep_alive: Duration,
    /// Messages read on this connection and not yet acknowledged.
    unacknowledged: usize,
}

impl Connection {
    fn new(opened: Opened, number: u64, keep_alive: Duration) -> Self {
        let (reader, writer) = tokio::io::split(opened.stream);
        Connection {
            input: Input {
                reader,
                read: opened.read,
                heard: Instant::now(),
                paused_since: None,
                last_read: Instant::now(),
                socket: opened.socket,
                held: false,
            },
            output: Output {
                writer,
                out: BytesMut::new(),
                unflushed: false,
                waiting_since: Instant::now(),
                untaken: None,
                unsent: metrics::gauge!(m::INGEST_UNSENT),
            },
            number,
            keep_alive,
            unacknowledged: 0,
        }
    }

    /// Queues the acknowledgements ready now, `first` among them, for this
    /// connection's messages; those of earlier connections are dropped.
    fn acknowledge(
        &mut self,
        first: Vec<Receipt>,
        receipts: &mut mpsc::Receiver<Vec<Receipt>>,
    ) -> Result<(), LinkError> {
        let mut next = Some(first);
        let mut queued = 0;
        while let Some(batch) = next {
            queued += batch.len();
            for receipt in batch {
                if let Some(ack) = receipt.acknowledgement(self.number) {
                    self.unacknowledged = self.unacknowledged.saturating_sub(1);
                    self.output.queue(ack)?;
                }
            }
            next = match queued < ACK_BATCH {
                true => receipts.try_recv().ok(),
                false => None,
            };
        }
        Ok(())
    }

    /// Shows in `/metrics` what the broker has yet to take of this link's
    /// output ([`m::INGEST_UNSENT`]): what waits here and in the socket.
    /// Looked at every [`UNSENT_LOOK`], not per write: a look just after a
    /// write sees the bytes on their way, and nothing would look again
    /// once the link is quiet.
    fn show_unsent(&self) {
        let in_socket = self.input.socket.untaken().unwrap_or(0);
        self.output
            .unsent
            .set((self.output.out.len() + in_socket) as f64);
    }

    /// Every keep-alive period: a PINGREQ, whatever the reading does. The
    /// broker has gone when, while kordon reads, it has said nothing for
    /// one and a half periods (so this finds it within two), or when it has
    /// taken nothing kordon wrote for a period, not even a little.
    fn keep_alive(&mut self, reading: bool) -> Result<(), LinkError> {
        let silent = self.input.heard.elapsed();
        if reading && silent > self.keep_alive * 3 / 2 {
            return Err(LinkError::Silent(silent));
        }
        self.output.look_below(self.input.socket.untaken());
        let stuck = self.output.waiting_since.elapsed();
        if self.output.has_output() && stuck > self.keep_alive {
            return Err(LinkError::NotTaking(stuck));
        }
        self.input.count_pause();
        self.output.queue(Packet::PingReq)
    }
}

/// The reading half.
struct Input {
    reader: ReadHalf<Box<dyn BrokerStream>>,
    read: BytesMut,
    /// When the broker was last heard from, or reading last resumed.
    heard: Instant,
    /// Since when reading waits for room in the engine's queue (counted so far).
    paused_since: Option<Instant>,
    /// When the socket was last read.
    last_read: Instant,
    socket: LinkSocket,
    /// Whether the socket's wake-ups are held.
    held: bool,
}

impl Input {
    /// Reads what the socket has (at least one byte), at most once per
    /// [`READ_PERIOD`]; cancel-safe. Within a period the socket's wake-ups
    /// are held up to a read's worth ([`READ_CHUNK`]), so that nothing
    /// short of a flood wakes the runtime's thread before the period ends;
    /// they are released before reading, whatever happened meanwhile.
    async fn read_some(&mut self) -> Result<(), LinkError> {
        let due = self.last_read + READ_PERIOD;
        if Instant::now() < due {
            // A hold the kernel refuses costs wake-ups, not messages: read
            // on without it.
            if !self.held {
                self.held = self.socket.hold(READ_CHUNK).is_ok();
            }
            tokio::time::sleep_until(due.into()).await;
        }
        if self.held {
            self.socket.release()?;
            self.held = false;
        }
        self.read.reserve(READ_CHUNK);
        if self.reader.read_buf(&mut self.read).await? == 0 {
            return Err(LinkError::Closed);
        }
        self.heard = Instant::now();
        self.last_read = self.heard;
        Ok(())
    }

    /// The next whole packet already read, if there is one.
    fn next_packet(&mut self) -> Result<Option<Packet>, LinkError> {
        match Packet::read(&mut self.read, MAX_MQTT_PACKET) {
            Ok(packet) => Ok(Some(packet)),
            Err(CodecError::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reading waits for room in the engine's queue.
    fn pause(&mut self) {
        self.paused_since.get_or_insert_with(Instant::now);
    }

    /// Adds the pause so far to `kordon_ingest_paused_microseconds_total`
    /// (also during a long pause, so the metric shows it as it happens).
    fn count_pause(&mut self) {
        if let Some(since) = &mut self.paused_since {
            metrics::counter!(m::INGEST_PAUSED).increment(since.elapsed().as_micros() as u64);
            *since = Instant::now();
        }
    }

    /// Room again: reading resumes, and the broker's silence is counted
    /// from now (what it sent meanwhile waits unread in the socket).
    fn resume(&mut self) {
        self.count_pause();
        self.paused_since = None;
        self.heard = Instant::now();
    }
}

/// The writing half: packets queued, written as the socket takes them.
struct Output {
    writer: WriteHalf<Box<dyn BrokerStream>>,
    out: BytesMut,
    /// Written, but perhaps still in TLS's buffer.
    unflushed: bool,
    /// When writing last made progress, or output began to wait.
    waiting_since: Instant,
    /// What the socket held that the broker had yet to take, at the last
    /// look.
    untaken: Option<usize>,
    /// `kordon_ingest_unsent_bytes`, looked up once.
    unsent: metrics::Gauge,
}

impl Output {
    fn queue(&mut self, packet: Packet) -> Result<(), LinkError> {
        if !self.has_output() {
            self.waiting_since = Instant::now();
        }
        packet.write(&mut self.out, MAX_MQTT_PACKET)?;
        Ok(())
    }

    fn subscribe(&mut self) -> Result<(), LinkError> {
        let filters = subscriptions()
            .into_iter()
            .map(|f| rumqttc::SubscribeFilter::new(f.to_string(), QoS::AtLeastOnce));
        let mut subscribe = Subscribe::new_many(filters);
        subscribe.pkid = SUBSCRIBE_PKID;
        self.queue(Packet::Subscribe(subscribe))
    }

    /// Answers a packet from the broker other than a message or SUBACK.
    /// A QoS 2 message (a session from before kordon subscribed at QoS 1)
    /// is acknowledged with PUBREC once handled, like a QoS 1 one with
    /// PUBACK; its PUBREL is answered at once.
    fn answer(&mut self, packet: Packet) -> Result<(), LinkError> {
        match packet {
            Packet::PingResp | Packet::UnsubAck(_) => Ok(()),
            Packet::PubRel(release) => self.queue(Packet::PubComp(PubComp::new(release.pkid))),
            other => Err(LinkError::Protocol(format!(
                "{other:?} on an established connection"
            ))),
        }
    }

    /// A broker busy with other clients may take kordon's bytes a little
    /// at a time, too little for the socket to wake the writer: progress
    /// all the same, seen in the socket's queue shrinking since the last
    /// look. (Under 46,000 fixes/s Mosquitto took 22 s to free the third
    /// of a buffer that wakes a writer.)
    fn look_below(&mut self, untaken: Option<usize>) {
        if let (Some(now), Some(before)) = (untaken, self.untaken) {
            if now < before {
                self.waiting_since = Instant::now();
            }
        }
        self.untaken = untaken;
    }

    fn has_output(&self) -> bool {
        !self.out.is_empty() || self.unflushed
    }

    /// Writes what the socket takes now; cancel-safe (what was not taken
    /// stays queued).
    async fn write_some(&mut self) -> Result<(), LinkError> {
        if !self.out.is_empty() {
            let written = self.writer.write(&self.out).await?;
            if written == 0 {
                return Err(LinkError::Closed);
            }
            self.out.advance(written);
            self.unflushed = true;
            self.waiting_since = Instant::now();
        }
        if self.out.is_empty() {
            self.writer.flush().await?;
            self.unflushed = false;
        }
        Ok(())
    }

    /// Writes what is queued and a DISCONNECT.
    async fn close(&mut self) -> Result<(), LinkError> {
        self.queue(Packet::Disconnect)?;
        let flushed = tokio::time::timeout(BROKER_PATIENCE, async {
            while self.has_output() {
                self.write_some().await?;
            }
            Ok::<(), LinkError>(())
        });
        flushed
            .await
            .map_err(|_| LinkError::Timeout(BROKER_PATIENCE))??;
        info!("ingest link disconnected from the broker");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kordon_ingest::{Decoder, Limits};
    use rumqttc::mqttbytes::v4::{ConnAck, PubAck, PubRec, PubRel, Publish};
    use rumqttc::{EventLoop, MqttOptions};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A broker played by hand: the packets it reads, and what it writes.
    struct FakeBroker {
        stream: TcpStream,
        read: BytesMut,
    }

    impl FakeBroker {
        async fn accept(listener: &TcpListener) -> FakeBroker {
            FakeBroker::accept_sending(listener, false, &[]).await
        }

        /// Accepts kordon's connection and answers its CONNECT with a
        /// CONNACK and then `first`, in one write (as a broker that held
        /// messages for kordon's session does).
        async fn accept_sending(
            listener: &TcpListener,
            session_present: bool,
            first: &[Packet],
        ) -> FakeBroker {
            let (stream, _) = listener.accept().await.unwrap();
            let mut broker = FakeBroker {
                stream,
                read: BytesMut::new(),
            };
            let Packet::Connect(connect) = broker.next().await else {
                panic!("CONNECT first");
            };
            assert!(!connect.clean_session, "kordon keeps its session");
            let mut out = BytesMut::new();
            let connack = ConnAck::new(ConnectReturnCode::Success, session_present);
            for packet in std::iter::once(&Packet::ConnAck(connack)).chain(first) {
                packet.write(&mut out, MAX_MQTT_PACKET).unwrap();
            }
            broker.stream.write_all(&out).await.unwrap();
            let Packet::Subscribe(subscribe) = broker.next().await else {
                panic!("SUBSCRIBE on every connection");
            };
            let codes = subscribe
                .filters
                .iter()
                .map(|_| SubscribeReasonCode::Success(QoS::AtLeastOnce))
                .collect();
            broker
                .send(Packet::SubAck(SubAck::new(subscribe.pkid, codes)))
                .await;
            broker
        }

        async fn next(&mut self) -> Packet {
            loop {
                match Packet::read(&mut self.read, MAX_MQTT_PACKET) {
                    Ok(packet) => return packet,
                    Err(CodecError::InsufficientBytes(_)) => {
                        let n = self.stream.read_buf(&mut self.read).await.unwrap();
                        assert!(n > 0, "kordon closed the connection");
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }

        async fn send(&mut self, packet: Packet) {
            let mut out = BytesMut::new();
            packet.write(&mut out, MAX_MQTT_PACKET).unwrap();
            self.stream.write_all(&out).await.unwrap();
        }

        /// The next packet other than a PINGREQ, answering those.
        async fn next_answering_pings(&mut self) -> Packet {
            loop {
                match self.next().await {
                    Packet::PingReq => self.send(Packet::PingResp).await,
                    other => return other,
                }
            }
        }
    }

    fn fix(pkid: u16) -> Packet {
        fix_at(pkid, QoS::AtLeastOnce)
    }

    fn fix_at(pkid: u16, qos: QoS) -> Packet {
        let topic = format!("kordon/v1/devices/b-{pkid}/fix");
        let mut publish = Publish::new(topic, qos, "{}");
        publish.pkid = pkid;
        Packet::Publish(publish)
    }

    /// The engine's end of its queue, taken from as a test needs.
    struct Commands(crossbeam_channel::Receiver<Command>);

    impl Commands {
        /// The next command, waiting (asynchronously: the link runs on
        /// the test's thread) for up to 5 s.
        async fn recv(&mut self) -> Option<Command> {
            for _ in 0..5_000 {
                if let Ok(command) = self.0.try_recv() {
                    return Some(command);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        }

        fn len(&self) -> usize {
            self.0.len()
        }
    }

    struct Kordon {
        commands: Commands,
        receipts: mpsc::Sender<Vec<Receipt>>,
        unacknowledged: Unacknowledged,
        _stop: watch::Sender<bool>,
        _status: EventLoop,
    }

    /// A link to the broker listening on `listener`, with an engine's
    /// queue of `queue` and a keep-alive of a second.
    fn start_link(listener: &TcpListener, queue: usize) -> Kordon {
        let url = format!("mqtt://{}", listener.local_addr().unwrap());
        let (engine, commands) = crossbeam_channel::bounded(queue);
        let (receipts, receipts_rx) = mpsc::channel(16);
        let (stop, stopping) = watch::channel(false);
        let (status, status_loop) = AsyncClient::new(
            MqttOptions::new("kordon-test-publisher", "127.0.0.1", 1),
            16,
        );
        let link = IngestLink {
            dialer: Dialer::new(&BrokerSettings::new(url)).unwrap(),
            session: Session {
                client_id: "kordon-test".into(),
                username: None,
                password: None,
                keep_alive: Duration::from_secs(1),
            },
            intake: Intake::new(engine, Decoder::new(Limits::default(), HashMap::new())),
            receipts: receipts_rx,
            status,
            clock: Clock::wall(),
            health: Health::default(),
            stopping,
            unacknowledged: Unacknowledged::default(),
        };
        let unacknowledged = link.unacknowledged.clone();
        tokio::spawn(link.run());
        Kordon {
            commands: Commands(commands),
            receipts,
            unacknowledged,
            _stop: stop,
            _status: status_loop,
        }
    }

    fn device_of(command: &Command) -> String {
        match command {
            Command::Message { topic, .. } | Command::Refused { topic, .. } => topic.clone(),
            Command::Connected { .. } => "connected".into(),
            _ => panic!("unexpected command"),
        }
    }

    fn take_receipt(command: Command) -> Receipt {
        match command {
            Command::Message { ack, .. } | Command::Refused { ack, .. } => ack.unwrap(),
            _ => panic!("not a message"),
        }
    }

    /// The overload fix: with the engine's queue full, the link takes nothing more
    /// (the rest waits at the broker) yet keeps pinging and acknowledging;
    /// once the engine catches up, every message arrives, in order.
    #[tokio::test]
    async fn reading_waits_for_room_while_pings_and_acknowledgements_go_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut kordon = start_link(&listener, 4);
        let mut broker = FakeBroker::accept(&listener).await;
        for pkid in 1..=50 {
            broker.send(fix(pkid)).await;
        }
        // Two keep-alive periods with nobody taking from the queue.
        let pinged = tokio::time::timeout(Duration::from_millis(2_500), async {
            let mut pings = 0;
            while pings < 2 {
                assert_eq!(broker.next().await, Packet::PingReq);
                pings += 1;
            }
        })
        .await;
        assert!(pinged.is_ok(), "no keep-alive while the queue was full");
        assert_eq!(kordon.commands.len(), 4, "the queue, and no more");

        // The engine handles the first three fixes: they are acknowledged.
        let connected = kordon.commands.recv().await.unwrap();
        assert_eq!(device_of(&connected), "connected");
        for _ in 0..3 {
            let receipt = take_receipt(kordon.commands.recv().await.unwrap());
            kordon.receipts.send(vec![receipt]).await.unwrap();
        }
        for pkid in 1..=3 {
            assert_eq!(
                broker.next_answering_pings().await,
                Packet::PubAck(PubAck::new(pkid))
            );
        }
        // The rest follows as room frees up, in the order it was sent.
        for pkid in 4..=50 {
            let command = kordon.commands.recv().await.unwrap();
            assert_eq!(
                device_of(&command),
                format!("kordon/v1/devices/b-{pkid}/fix")
            );
        }
    }

    /// A broker that stops answering while kordon reads is left after one
    /// and a half keep-alive periods, and the link connects again; a
    /// message handled from the first connection is not acknowledged on
    /// the second (the broker delivers it again there).
    #[tokio::test]
    async fn a_silent_broker_is_left_and_the_link_connects_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut kordon = start_link(&listener, 16);
        let mut silent = FakeBroker::accept(&listener).await;
        silent.send(fix(8)).await;
        let again = tokio::time::timeout(Duration::from_secs(5), FakeBroker::accept(&listener));
        let mut broker = again.await.expect("no second connection");
        assert_eq!(
            device_of(&kordon.commands.recv().await.unwrap()),
            "connected"
        );
        let stale = take_receipt(kordon.commands.recv().await.unwrap());
        assert_eq!(
            device_of(&kordon.commands.recv().await.unwrap()),
            "connected"
        );
        broker.send(fix(9)).await;
        let current = take_receipt(kordon.commands.recv().await.unwrap());
        kordon.receipts.send(vec![stale]).await.unwrap();
        kordon.receipts.send(vec![current]).await.unwrap();
        assert_eq!(
            broker.next_answering_pings().await,
            Packet::PubAck(PubAck::new(9))
        );
    }

    /// The ticks are told while messages read wait for their
    /// acknowledgement (a commit the disk holds up), and when none does.
    #[tokio::test]
    async fn the_ticks_are_told_while_messages_wait_for_their_acknowledgement() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut kordon = start_link(&listener, 16);
        let mut broker = FakeBroker::accept(&listener).await;
        assert!(!kordon.unacknowledged.any(), "nothing read yet");
        broker.send(fix(1)).await;
        broker.send(fix(2)).await;
        assert_eq!(
            device_of(&kordon.commands.recv().await.unwrap()),
            "connected"
        );
        let first = take_receipt(kordon.commands.recv().await.unwrap());
        let second = take_receipt(kordon.commands.recv().await.unwrap());
        assert!(kordon.unacknowledged.any(), "two read, none acknowledged");
        kordon.receipts.send(vec![first]).await.unwrap();
        assert_eq!(
            broker.next_answering_pings().await,
            Packet::PubAck(PubAck::new(1))
        );
        assert!(kordon.unacknowledged.any(), "one still waits");
        kordon.receipts.send(vec![second]).await.unwrap();
        assert_eq!(
            broker.next_answering_pings().await,
            Packet::PubAck(PubAck::new(2))
        );
        for _ in 0..100 {
            if !kordon.unacknowledged.any() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("every message acknowledged, yet the ticks are told some wait");
    }

    /// A broker that held messages for kordon's session sends them right
    /// behind its CONNACK, often in the same segment: they are read, not
    /// lost with the CONNACK's buffer (found in review: the link started
    /// reading in the middle of the first message).
    #[tokio::test]
    async fn messages_that_come_with_the_connack_are_taken() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut kordon = start_link(&listener, 16);
        let mut broker = FakeBroker::accept_sending(&listener, true, &[fix(1), fix(2)]).await;
        assert_eq!(
            device_of(&kordon.commands.recv().await.unwrap()),
            "connected"
        );
        for pkid in 1..=2 {
            let command = kordon.commands.recv().await.unwrap();
            assert_eq!(
                device_of(&command),
                format!("kordon/v1/devices/b-{pkid}/fix")
            );
            kordon
                .receipts
                .send(vec![take_receipt(command)])
                .await
                .unwrap();
            assert_eq!(
                broker.next_answering_pings().await,
                Packet::PubAck(PubAck::new(pkid))
            );
        }
    }

    /// A broker busy with other clients takes what kordon writes slowly:
    /// the link keeps its connection while the broker takes anything.
    /// Found in the overload benchmark (46,000 fixes/s offered): Mosquitto
    /// drained kordon's acknowledgements too slowly for the socket ever to
    /// wake the writer (that takes a third of its buffer free), and after
    /// 22 s the link took the broker for gone, and left.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_broker_slow_to_take_what_kordon_writes_is_not_left() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kordon = start_link(&listener, 16);
        let mut broker = FakeBroker::accept(&listener).await;
        // A PUBCOMP owed for each PUBREL: more than both sockets' buffers
        // hold (loopback's grow to 4 MiB for a sender).
        let mut releases = BytesMut::new();
        for n in 0..2_000_000u32 {
            let release = PubRel::new((n % 65_535 + 1) as u16);
            Packet::PubRel(release)
                .write(&mut releases, MAX_MQTT_PACKET)
                .unwrap();
        }
        broker.stream.write_all(&releases).await.unwrap();
        // And more messages than the engine's queue holds: kordon stops
        // reading, so only what the broker takes can tell it is there.
        for pkid in 1..=32 {
            broker.send(fix(pkid)).await;
        }
        // Taken a little at a time for four keep-alive periods.
        let mut taken = 0;
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let mut chunk = [0u8; 4_096];
            let n = broker.stream.read(&mut chunk).await.unwrap_or(0);
            assert!(n > 0, "kordon left a broker that takes what it writes");
            taken += n;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(taken > 0);
        assert_eq!(kordon.commands.len(), 16, "the engine's queue is full");
        let reconnected = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(reconnected.is_err(), "kordon connected again");
    }

    /// A session from before kordon subscribed at QoS 1 may still deliver
    /// at QoS 2: the message is taken and acknowledged with PUBREC once
    /// handled, and the broker's PUBREL answered, instead of the link
    /// dropping the connection on it again and again.
    #[tokio::test]
    async fn a_qos_2_message_is_taken_and_its_handshake_completed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut kordon = start_link(&listener, 16);
        let mut broker = FakeBroker::accept(&listener).await;
        broker.send(fix_at(5, QoS::ExactlyOnce)).await;
        assert_eq!(
            device_of(&kordon.commands.recv().await.unwrap()),
            "connected"
        );
        let command = kordon.commands.recv().await.unwrap();
        assert_eq!(device_of(&command), "kordon/v1/devices/b-5/fix");
        kordon
            .receipts
            .send(vec![take_receipt(command)])
            .await
            .unwrap();
        assert_eq!(
            broker.next_answering_pings().await,
            Packet::PubRec(PubRec::new(5))
        );
        broker.send(Packet::PubRel(PubRel::new(5))).await;
        assert_eq!(
            broker.next_answering_pings().await,
            Packet::PubComp(PubComp::new(5))
        );
    }

    /// `kordon_ingest_unsent_bytes` of a recorder that only this test's
    /// thread (the link runs on it too) records into.
    fn unsent_bytes(handle: &metrics_exporter_prometheus::PrometheusHandle) -> f64 {
        handle
            .render()
            .lines()
            .find(|l| l.starts_with(m::INGEST_UNSENT))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    }

    /// A broker too busy to read kordon's acknowledgements (Mosquitto
    /// under overload reads one packet per connection per turn): what it
    /// has not taken shows in `/metrics`, kordon keeps the connection
    /// while the broker takes a little at a time, and the gauge is back at
    /// 0 once the broker has read everything.
    #[tokio::test]
    async fn acknowledgements_the_broker_has_not_read_show_as_unsent() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _only_here = metrics::set_default_local_recorder(&recorder);
        // A small receive buffer: the broker's end holds little unread.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let mut kordon = start_link(&listener, 40_000);
        let mut broker = FakeBroker::accept(&listener).await;

        const MESSAGES: u16 = 30_000;
        let mut fixes = BytesMut::new();
        for pkid in 1..=MESSAGES {
            fix(pkid).write(&mut fixes, MAX_MQTT_PACKET).unwrap();
        }
        broker.stream.write_all(&fixes).await.unwrap();
        let mut receipts = Vec::new();
        while receipts.len() < usize::from(MESSAGES) {
            let command = kordon.commands.recv().await.expect("every fix handed on");
            if device_of(&command) != "connected" {
                receipts.push(take_receipt(command));
            }
        }
        while !receipts.is_empty() {
            let batch: Vec<Receipt> = receipts.drain(..receipts.len().min(1_000)).collect();
            kordon.receipts.send(batch).await.unwrap();
        }

        // 120,000 bytes of PUBACKs, and the broker reads 4 KiB every
        // 200 ms: little, but enough for kordon to see it take something.
        let mut highest = 0.0f64;
        let mut chunk = [0u8; 4096];
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            highest = highest.max(unsent_bytes(&handle));
            let n = broker.stream.read(&mut chunk).await.unwrap();
            broker.read.extend_from_slice(&chunk[..n]);
        }
        assert!(
            highest > 60_000.0,
            "unsent acknowledgements shown: {highest}"
        );
        let mut acknowledged = 0usize;
        while acknowledged < usize::from(MESSAGES) {
            match broker.next_answering_pings().await {
                Packet::PubAck(_) => acknowledged += 1,
                other => panic!("only acknowledgements and pings, got {other:?}"),
            }
        }
        let mut unsent = f64::NAN;
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            unsent = unsent_bytes(&handle);
            if unsent == 0.0 {
                break;
            }
        }
        // Every acknowledgement came on the first connection: kordon did
        // not give the slow broker up.
        assert_eq!(unsent, 0.0, "the broker read everything");
    }
}
