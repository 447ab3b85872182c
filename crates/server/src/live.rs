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

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
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
/// The least time between two batches of positions sent as the engine
/// ends its batches of commands: under load a console gets ten events of
/// positions a second, not one per batch (hundreds), each of which woke
/// every console's task; when it is quiet a position goes out at once.
const BATCH_EVERY: Duration = Duration::from_millis(100);

/// A device's latest position, as the map shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DevicePosition {
    pub device: DeviceId,
    pub case: CaseId,
    pub role: WearerRole,
    pub lat: f64,
    pub lon: f64,
    pub acc_m: f64,
    #[serde(serialize_with = "kordon_core::rfc3339::serialize")]
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
    /// Devices' latest positions, at most one a second of each device.
    Positions(Vec<DevicePosition>),
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
    /// The event's text where every console that may see it sees the
    /// same (positions), written by the first console to send it.
    text: OnceLock<String>,
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
    /// Set when kordon stops: every stream ends ([`Feed::close`]).
    closed: tokio::sync::watch::Sender<bool>,
    positions: Mutex<Positions>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    events: VecDeque<Arc<LiveEvent>>,
}

/// Where every device is, for the map, and which positions go out next.
///
/// Written on the engine's thread for every fix, so each fix costs one
/// lookup in one map (foldhash, updated in place). Positions go out in
/// batches ([`Change::Positions`]): one event for all that the engine's
/// batch of commands (or the tick) let out. At 10,000 fixes/s an event per
/// position was 10,000 events a second for every console, and cost kordon
/// more CPU than the rest of a fix (`docs/operations.md`).
#[derive(Default)]
struct Positions {
    devices: foldhash::HashMap<DeviceId, Shown>,
    /// Due to go out at the end of the engine's batch.
    outgoing: Vec<DevicePosition>,
    /// Devices whose latest position the once-a-second rule holds back.
    held: Vec<DeviceId>,
    /// The newest time a position was shown at: the store's clock.
    newest: Option<Instant>,
    /// When the last batch went out.
    batch_sent: Option<Instant>,
}

/// A device's latest position and when consoles last got one of it.
struct Shown {
    latest: DevicePosition,
    sent: Option<Instant>,
    /// In [`Positions::held`].
    held: bool,
}

impl Shown {
    fn due(&self, now: Instant) -> bool {
        self.sent
            .is_none_or(|at| now.saturating_duration_since(at) >= POSITION_EVERY)
    }
}

impl Positions {
    /// Keeps `position` as its device's latest, overwritten in place
    /// through its entry (one hash; an insert per fix hashed the key twice
    /// and moved the whole entry, a tenth of the engine thread's time at
    /// 10,000 fixes/s). The id's clone is a copy: ids are kept inline.
    fn keep(&mut self, position: DevicePosition) -> &mut Shown {
        let device = position.device.clone();
        match self.devices.entry(device) {
            std::collections::hash_map::Entry::Occupied(shown) => {
                let shown = shown.into_mut();
                shown.latest = position;
                shown
            }
            std::collections::hash_map::Entry::Vacant(slot) => slot.insert(Shown {
                latest: position,
                sent: None,
                held: false,
            }),
        }
    }

    /// Keeps `position` and lets it out now, or holds it back if its
    /// device's last one went out less than a second before `now`.
    fn show(&mut self, position: DevicePosition, now: Instant) {
        self.newest = self.newest.max(Some(now));
        let shown = self.keep(position);
        if shown.due(now) {
            shown.sent = Some(now);
            let latest = shown.latest.clone();
            self.outgoing.push(latest);
        } else if !shown.held {
            shown.held = true;
            let device = shown.latest.device.clone();
            self.held.push(device);
        }
    }

    /// The positions let out since the last batch: all of them when
    /// `paced` is false, else none while the last batch is less than
    /// [`BATCH_EVERY`] old.
    fn batch(&mut self, paced: bool) -> Vec<DevicePosition> {
        let recent = match (self.batch_sent, self.newest) {
            (Some(sent), Some(newest)) => newest.saturating_duration_since(sent) < BATCH_EVERY,
            _ => false,
        };
        if self.outgoing.is_empty() || (paced && recent) {
            return Vec::new();
        }
        self.batch_sent = self.newest.or(self.batch_sent);
        std::mem::take(&mut self.outgoing)
    }

    /// Lets out the held-back positions that are due by `now`.
    fn release_held(&mut self, now: Instant) {
        self.newest = self.newest.max(Some(now));
        let Positions {
            devices,
            outgoing,
            held,
            ..
        } = self;
        held.retain(|device| {
            let Some(shown) = devices.get_mut(device) else {
                return false;
            };
            if !shown.due(now) {
                return true;
            }
            shown.sent = Some(now);
            shown.held = false;
            outgoing.push(shown.latest.clone());
            false
        });
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
                closed: tokio::sync::watch::Sender::new(false),
                positions: Mutex::new(Positions::default()),
            }),
        }
    }

    fn push(&self, change: Change) {
        let mut ring = self.inner.ring.lock().unwrap_or_else(|e| e.into_inner());
        let event = Arc::new(LiveEvent {
            seq: ring.next,
            change,
            text: OnceLock::new(),
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

    /// Ends every console's stream, now and for those that come later:
    /// kordon is stopping, and its HTTP server waits for every response to
    /// end (an open console held a stop on SIGTERM until it was killed).
    /// Browsers reconnect by themselves.
    pub fn close(&self) {
        self.inner.closed.send_replace(true);
    }

    /// Whether a console is listening.
    pub fn watched(&self) -> bool {
        self.inner.tx.receiver_count() > 0
    }

    /// An alert's change, after the positions let out before it: the map
    /// shows where the parties are when the alert comes up.
    pub fn alert(&self, record: AlertRecord) {
        self.send_batch(false);
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

    /// Remembers a device's position; it goes out with the next
    /// [`Feed::send_positions`] unless the device's last one went out less
    /// than a second ago (then with the first [`Feed::flush_positions`] a
    /// second after it).
    pub fn position(&self, position: DevicePosition, now: Instant) {
        // With no console listening there is no one to send it to: a
        // console that connects fetches where everyone is, then hears of
        // each device's next fix.
        if self.inner.tx.receiver_count() == 0 {
            self.remember_position(position);
            return;
        }
        self.position_store().show(position, now);
    }

    /// Remembers a position without sending it (the journal's replay at
    /// start: the map opens where everyone last was).
    pub fn remember_position(&self, position: DevicePosition) {
        self.position_store().keep(position);
    }

    /// Sends the positions let out since the last batch, as one event,
    /// unless the last batch went out less than [`BATCH_EVERY`] ago (they
    /// go with the next): the engine's thread calls it when it has handled
    /// what was queued.
    pub fn send_positions(&self) {
        self.send_batch(true);
    }

    /// Sends the positions held back by the once-a-second rule that are
    /// due by `now`, with every other one let out since the last batch.
    pub fn flush_positions(&self, now: Instant) {
        self.position_store().release_held(now);
        self.send_batch(false);
    }

    fn send_batch(&self, paced: bool) {
        let batch = self.position_store().batch(paced);
        if !batch.is_empty() {
            self.push(Change::Positions(batch));
        }
    }

    /// Forgets the devices of a case that is gone.
    pub fn forget_devices(&self, keep: impl Fn(&DeviceId) -> bool) {
        let mut p = self.position_store();
        p.devices.retain(|d, _| keep(d));
        p.held.retain(|d| keep(d));
        p.outgoing.retain(|position| keep(&position.device));
    }

    /// Every device's latest position, in the order of their ids.
    pub fn positions(&self) -> Vec<DevicePosition> {
        let p = self.position_store();
        let mut all: Vec<DevicePosition> = p.devices.values().map(|s| s.latest.clone()).collect();
        drop(p);
        all.sort_by(|a, b| a.device.cmp(&b.device));
        all
    }

    /// The position store, locked.
    fn position_store(&self) -> std::sync::MutexGuard<'_, Positions> {
        self.inner
            .positions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
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
            closed: self.inner.closed.subscribe(),
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
    closed: tokio::sync::watch::Receiver<bool>,
    /// Events up to here were sent (or were in the backlog).
    last_seq: u64,
    /// The console must refetch everything before it reads on.
    reset: bool,
}

impl StreamState {
    /// The next change, or `None` once kordon stops.
    async fn next_change(&mut self) -> Option<Result<Arc<LiveEvent>, broadcast::error::RecvError>> {
        tokio::select! {
            change = self.rx.recv() => Some(change),
            _ = self.closed.wait_for(|closed| *closed) => None,
        }
    }

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
                None => match self.next_change().await? {
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
            if let Some((name, data)) = shown(&event, self.role, self.feed.inner.escalate_after_s) {
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
fn shown(event: &LiveEvent, role: Role, escalate_after_s: u32) -> Option<(&'static str, String)> {
    fn json<T: Serialize + ?Sized>(value: &T) -> String {
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
    }
    match &event.change {
        Change::Alert(record) => {
            let record = crate::http::visible(role, (**record).clone())?;
            Some(("alert", json(&AlertView::of(record, escalate_after_s))))
        }
        Change::Positions(positions) => (role == Role::Monitoring).then(|| {
            (
                "positions",
                event.text.get_or_init(|| json(positions)).clone(),
            )
        }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(device: &str, lat: f64) -> DevicePosition {
        DevicePosition {
            device: DeviceId::new(device),
            case: CaseId::new("RTM-1"),
            role: WearerRole::Offender,
            lat,
            lon: 4.47,
            acc_m: 5.0,
            ts: Timestamp::from_second(1_800_000_000).unwrap(),
            speed_mps: None,
            heading_deg: None,
        }
    }

    fn lats(positions: &[DevicePosition]) -> Vec<f64> {
        positions.iter().map(|p| p.lat).collect()
    }

    #[test]
    fn a_position_goes_out_at_once_and_the_next_within_a_second_waits_for_its_second() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Positions::default();
        p.show(at("OFF-1", 51.0), t0);
        assert_eq!(lats(&std::mem::take(&mut p.outgoing)), [51.0]);

        // Two more within the second: held once, and only the latest goes.
        p.show(at("OFF-1", 51.1), t0 + ms(200));
        p.show(at("OFF-1", 51.2), t0 + ms(400));
        assert!(p.outgoing.is_empty());
        assert_eq!(p.held.len(), 1, "held once: {:?}", p.held);
        p.release_held(t0 + ms(900));
        assert!(p.outgoing.is_empty(), "not before its second");
        p.release_held(t0 + ms(1000));
        assert_eq!(lats(&std::mem::take(&mut p.outgoing)), [51.2]);
        assert!(p.held.is_empty());

        // The next is held from the release, not from the first.
        p.show(at("OFF-1", 51.3), t0 + ms(1500));
        assert!(p.outgoing.is_empty());
        p.release_held(t0 + ms(2000));
        assert_eq!(lats(&p.outgoing), [51.3]);
    }

    #[test]
    fn a_batch_carries_every_device_that_moved_once_the_engine_has_handled_what_was_queued() {
        let feed = Feed::new(120);
        let mut console = feed.changes();
        let now = Instant::now();
        feed.position(at("OFF-1", 51.0), now);
        feed.position(at("VIC-1", 52.0), now);
        assert!(console.try_recv().is_err(), "nothing before the batch ends");
        feed.case(CaseId::new("RTM-1"));
        feed.send_positions();
        feed.send_positions(); // nothing more: no empty batch
        let kinds: Vec<String> = std::iter::from_fn(|| console.try_recv().ok())
            .map(|event| match &event.change {
                Change::Positions(positions) => format!("positions {:?}", lats(positions)),
                other => format!("{other:?}").split('(').next().unwrap().to_string(),
            })
            .collect();
        assert_eq!(kinds, ["Case", "positions [51.0, 52.0]"]);
    }

    #[test]
    fn batches_at_the_end_of_the_engines_batches_go_out_ten_a_second_and_the_tick_sends_the_rest() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Positions::default();
        p.show(at("OFF-1", 51.0), t0);
        assert_eq!(
            lats(&p.batch(true)),
            [51.0],
            "after a quiet moment, at once"
        );
        p.show(at("OFF-2", 52.0), t0 + ms(40));
        assert!(p.batch(true).is_empty(), "40 ms after the last batch");
        p.show(at("OFF-3", 53.0), t0 + ms(100));
        assert_eq!(lats(&p.batch(true)), [52.0, 53.0], "100 ms after it");
        p.show(at("OFF-4", 54.0), t0 + ms(120));
        assert_eq!(lats(&p.batch(false)), [54.0], "unpaced: the tick, an alert");
        assert!(p.batch(false).is_empty(), "no empty batch");
    }

    #[test]
    fn without_a_console_positions_are_kept_for_the_map_and_not_sent() {
        let feed = Feed::new(120);
        feed.position(at("OFF-1", 51.0), Instant::now());
        feed.send_positions();
        let mut console = feed.changes();
        assert!(console.try_recv().is_err());
        assert_eq!(lats(&feed.positions()), [51.0]);
    }

    #[test]
    fn a_forgotten_device_leaves_the_map_and_what_was_to_go_out() {
        let feed = Feed::new(120);
        let mut console = feed.changes();
        let now = Instant::now();
        feed.position(at("OFF-1", 51.0), now);
        feed.position(at("OFF-1", 51.1), now + Duration::from_millis(10));
        feed.position(at("OFF-2", 53.0), now);
        feed.forget_devices(|device| device.as_str() != "OFF-1");
        feed.flush_positions(now + Duration::from_secs(2));
        let Change::Positions(sent) = &console.try_recv().unwrap().change else {
            panic!("a batch of positions");
        };
        assert_eq!(lats(sent), [53.0]);
        assert_eq!(lats(&feed.positions()), [53.0]);
    }
}
