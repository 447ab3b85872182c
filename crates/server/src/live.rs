//! The dashboard's live stream: every change of an alert, the devices'
//! positions (at most once a second each), case changes and kordon's
//! health, in order, to every console at once over Server-Sent Events.
//!
//! The engine's thread feeds a [`Feed`] and never waits on it: events go
//! into a bounded ring (for `Last-Event-ID` resume) and a broadcast
//! channel; a console too slow to keep up is told to `reset` (refetch
//! everything) instead of holding anything back. Event ids are
//! `<boot>-<n>`: a resume after kordon restarted, or from further back
//! than the ring reaches, is a `reset` too. Nothing here decides anything
//! or journals anything: the stream shows what the journal already holds.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use jiff::Timestamp;
use kordon_alert::AlertRecord;
use kordon_core::{CaseId, DeviceId, Fix, Role as WearerRole};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::config::Role;

/// Events kept for consoles that reconnect.
const RING: usize = 8_192;
/// Events a console may fall behind before it is told to reset.
const LAG: usize = 4_096;
/// The least time between two positions of one device on the stream.
const POSITION_EVERY: Duration = Duration::from_secs(1);

/// A device's latest position, as the map shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DevicePosition {
    pub device: DeviceId,
    pub case: CaseId,
    pub role: WearerRole,
    pub lat: f64,
    pub lon: f64,
    pub acc_m: f64,
    pub ts: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_mps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
}

impl DevicePosition {
    pub fn of(fix: &Fix, case: CaseId, role: WearerRole) -> Self {
        DevicePosition {
            device: fix.device.clone(),
            case,
            role,
            lat: fix.lat,
            lon: fix.lon,
            acc_m: fix.accuracy_m,
            ts: fix.ts,
            speed_mps: fix.speed_mps,
            heading_deg: fix.heading_deg,
        }
    }
}

/// What changed.
#[derive(Debug, Clone)]
pub enum Change {
    Alert(Box<AlertRecord>),
    Position(DevicePosition),
    Case(CaseId),
    Health(serde_json::Value),
    /// Some changes were lost on the way (a cluster's relay): every
    /// console refetches everything.
    Reset,
}

#[derive(Debug)]
pub struct LiveEvent {
    pub seq: u64,
    pub change: Change,
}

/// The feed: cheap to clone, shared by the engine's thread (which feeds
/// it) and the HTTP handlers (which read it).
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    boot: String,
    escalate_after_s: u32,
    ring: Mutex<Ring>,
    tx: broadcast::Sender<Arc<LiveEvent>>,
    positions: Mutex<Positions>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    events: VecDeque<Arc<LiveEvent>>,
}

#[derive(Default)]
struct Positions {
    /// Written on the engine's thread for every fix: hashed with foldhash,
    /// not SipHash, and updated in place (see [`Positions::keep`]).
    latest: foldhash::HashMap<DeviceId, DevicePosition>,
    sent: HashMap<DeviceId, Instant>,
    /// Devices whose latest position has not gone out yet (a set: it is
    /// asked about on every fix, and holds every moving device).
    pending: std::collections::HashSet<DeviceId>,
}

impl Positions {
    /// Keeps `position` as its device's latest. A device already known
    /// (every fix but its first) is overwritten in place: an insert per fix
    /// hashed the key twice and moved the whole entry, a tenth of the
    /// engine thread's time at 10,000 fixes/s.
    fn keep(&mut self, position: DevicePosition) {
        match self.latest.get_mut(position.device.as_str()) {
            Some(latest) => *latest = position,
            None => {
                self.latest.insert(position.device.clone(), position);
            }
        }
    }
}

impl Feed {
    /// A feed for alerts escalated `escalate_after_s` after they ask for
    /// attention (for their acknowledgement deadlines).
    pub fn new(escalate_after_s: u32) -> Self {
        let mut boot = [0u8; 4];
        // A boot id only tells one process's ids from another's.
        let _ = getrandom::fill(&mut boot);
        let (tx, _) = broadcast::channel(LAG);
        Feed {
            inner: Arc::new(Inner {
                boot: boot.iter().map(|b| format!("{b:02x}")).collect(),
                escalate_after_s,
                ring: Mutex::new(Ring {
                    next: 1,
                    events: VecDeque::new(),
                }),
                tx,
                positions: Mutex::new(Positions::default()),
            }),
        }
    }

    fn push(&self, change: Change) {
        let mut ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let event = Arc::new(LiveEvent {
            seq: ring.next,
            change,
        });
        ring.next += 1;
        if ring.events.len() == RING {
            ring.events.pop_front();
        }
        ring.events.push_back(event.clone());
        // No console listening is fine.
        let _ = self.inner.tx.send(event);
    }

    /// Every change from now on, as consoles get them (a cluster's shard
    /// forwards them to every instance).
    pub fn changes(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.inner.tx.subscribe()
    }

    /// Whether a console is listening.
    pub fn watched(&self) -> bool {
        self.inner.tx.receiver_count() > 0
    }

    pub fn alert(&self, record: AlertRecord) {
        self.push(Change::Alert(Box::new(record)));
    }

    pub fn case(&self, id: CaseId) {
        self.push(Change::Case(id));
    }

    pub fn health(&self, body: serde_json::Value) {
        self.push(Change::Health(body));
    }

    /// Tells every console to refetch everything: changes were lost
    /// before they reached this feed.
    pub fn reset(&self) {
        self.push(Change::Reset);
    }

    /// Remembers a device's position; it goes out now unless the device's
    /// last one went out less than a second ago (then at the next
    /// [`Feed::flush_positions`]).
    pub fn position(&self, position: DevicePosition, now: Instant) {
        // With no console listening there is no one to send it to: a
        // console that connects fetches where everyone is, then hears of
        // each device's next fix.
        if self.inner.tx.receiver_count() == 0 {
            self.remember_position(position);
            return;
        }
        let due = {
            let mut p = self
                .inner
                .positions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let device = position.device.clone();
            p.keep(position.clone());
            let due = p
                .sent
                .get(&device)
                .is_none_or(|at| now.duration_since(*at) >= POSITION_EVERY);
            if due {
                p.sent.insert(device, now);
            } else {
                p.pending.insert(device);
            }
            due
        };
        if due {
            self.push(Change::Position(position));
        }
    }

    /// Remembers a position without sending it (the journal's replay at
    /// start: the map opens where everyone last was).
    pub fn remember_position(&self, position: DevicePosition) {
        let mut p = self
            .inner
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.keep(position);
    }

    /// Sends the positions held back by the once-a-second rule.
    pub fn flush_positions(&self, now: Instant) {
        let due: Vec<DevicePosition> = {
            let mut p = self
                .inner
                .positions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let pending = std::mem::take(&mut p.pending);
            let mut due = Vec::new();
            for device in pending {
                let ready = p
                    .sent
                    .get(&device)
                    .is_none_or(|at| now.duration_since(*at) >= POSITION_EVERY);
                if !ready {
                    p.pending.insert(device);
                } else if let Some(position) = p.latest.get(&device).cloned() {
                    p.sent.insert(device, now);
                    due.push(position);
                }
            }
            due
        };
        for position in due {
            self.push(Change::Position(position));
        }
    }

    /// Forgets the devices of a case that is gone.
    pub fn forget_devices(&self, keep: impl Fn(&DeviceId) -> bool) {
        let mut p = self
            .inner
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.latest.retain(|d, _| keep(d));
        p.sent.retain(|d, _| keep(d));
        p.pending.retain(|d| keep(d));
    }

    pub fn positions(&self) -> Vec<DevicePosition> {
        let p = self
            .inner
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<DevicePosition> = p.latest.values().cloned().collect();
        all.sort_by(|a, b| a.device.cmp(&b.device));
        all
    }

    fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.inner.boot)
    }

    /// The events after `last_event_id` still in the ring, and a receiver
    /// for those after them; `None` when the stream cannot resume there.
    fn resume(
        &self,
        last_event_id: Option<&str>,
    ) -> (
        Option<Vec<Arc<LiveEvent>>>,
        broadcast::Receiver<Arc<LiveEvent>>,
    ) {
        // Subscribe first: nothing falls between the ring and the channel.
        let rx = self.inner.tx.subscribe();
        let ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let Some(id) = last_event_id else {
            return (Some(Vec::new()), rx);
        };
        let after = id
            .strip_prefix(&self.inner.boot)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<u64>().ok());
        let oldest = ring.events.front().map_or(ring.next, |e| e.seq);
        match after {
            Some(after) if after + 1 >= oldest && after < ring.next => (
                Some(
                    ring.events
                        .iter()
                        .filter(|e| e.seq > after)
                        .cloned()
                        .collect(),
                ),
                rx,
            ),
            _ => (None, rx),
        }
    }

    /// The SSE response for a console of `role`.
    pub fn stream(
        &self,
        role: Role,
        last_event_id: Option<&str>,
    ) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
        let (backlog, rx) = self.resume(last_event_id);
        let reset = backlog.is_none();
        let backlog: VecDeque<Arc<LiveEvent>> = backlog.unwrap_or_default().into();
        let last_seq = backlog.back().map(|e| e.seq).unwrap_or(0);
        let state = StreamState {
            feed: self.clone(),
            role,
            backlog,
            rx,
            last_seq,
            reset,
        };
        let events = stream::unfold(state, |mut state| async move {
            let event = state.next().await?;
            Some((Ok(event), state))
        });
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
    }
}

struct StreamState {
    feed: Feed,
    role: Role,
    backlog: VecDeque<Arc<LiveEvent>>,
    rx: broadcast::Receiver<Arc<LiveEvent>>,
    /// Events up to here were sent (or were in the backlog).
    last_seq: u64,
    /// The console must refetch everything before it reads on.
    reset: bool,
}

impl StreamState {
    /// The next event this console may see; `None` ends the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if std::mem::take(&mut self.reset) {
                let seq = self.feed.inner.ring.lock().map(|r| r.next - 1).unwrap_or(0);
                self.last_seq = self.last_seq.max(seq);
                return Some(
                    SseEvent::default()
                        .event("reset")
                        .id(self.feed.id(seq))
                        .data("{}"),
                );
            }
            let event = match self.backlog.pop_front() {
                Some(event) => event,
                None => match self.rx.recv().await {
                    Ok(event) if event.seq <= self.last_seq => continue,
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.reset = true;
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            self.last_seq = self.last_seq.max(event.seq);
            if let Some((name, data)) =
                shown(&event.change, self.role, self.feed.inner.escalate_after_s)
            {
                return Some(
                    SseEvent::default()
                        .event(name)
                        .id(self.feed.id(event.seq))
                        .data(data),
                );
            }
        }
    }
}

/// Tells every console when kordon's health changes (broker, journal,
/// overload): checked every 2 s, sent only on a change, so that a banner
/// comes up without waiting for the console's own poll of `/healthz`.
pub async fn watch_health(
    feed: Feed,
    health: crate::health::Health,
    clock: crate::clock::Clock,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    let mut last: Option<Vec<String>> = None;
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        let report = health.report();
        if last.as_ref() == Some(&report.problems) {
            continue;
        }
        let status = if report.problems.is_empty() {
            "ok"
        } else {
            "degraded"
        };
        feed.health(serde_json::json!({
            "status": status,
            "now": clock.now(),
            "broker_connected_since": report.broker_connected_since,
            "problems": report.problems,
        }));
        last = Some(report.problems);
    }
}

/// What a console of `role` sees of a change: the same rules as the API's.
fn shown(change: &Change, role: Role, escalate_after_s: u32) -> Option<(&'static str, String)> {
    fn json<T: Serialize + ?Sized>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
    }
    match change {
        Change::Alert(record) => {
            let record = crate::http::visible(role, (**record).clone())?;
            Some(("alert", json(&AlertView::of(record, escalate_after_s))))
        }
        Change::Position(position) => {
            (role == Role::Monitoring).then(|| ("position", json(position)))
        }
        Change::Case(id) => Some(("case", json(&serde_json::json!({ "case": id })))),
        Change::Health(body) => Some(("health", json(body))),
        Change::Reset => Some(("reset", "{}".to_string())),
    }
}

/// An alert as the dashboard shows it: the desk's record and when it
/// escalates if nobody acknowledges it.
#[derive(Debug, Serialize)]
pub struct AlertView {
    #[serde(flatten)]
    pub record: AlertRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_deadline: Option<Timestamp>,
}

impl AlertView {
    pub fn of(record: AlertRecord, escalate_after_s: u32) -> Self {
        let ack_deadline = kordon_alert::handling::ack_deadline(&record, escalate_after_s);
        AlertView {
            record,
            ack_deadline,
        }
    }
}
