//! The engine: a deterministic state machine from inputs to events.
//!
//! Inputs are case changes, fixes, status messages and `tick(now)`; each call
//! returns the events it caused and nothing else happens: no clock, no IO, no
//! threads. The same inputs in the same order give the same events, which is
//! what lets the server, crash recovery, the simulator and replay all drive
//! this one piece of code.
//!
//! State is kept in slot tables (cases, devices) so that iteration order, and
//! with it the order of events, depends only on the inputs. Everything a case
//! decides with is reachable from its slot; a device maps to the cases it is
//! part of.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use foldhash::{HashMap, HashMapExt};
use smallvec::SmallVec;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use thiserror::Error;

use crate::config::EngineConfig;
use crate::decision::{disc_in_area, Assessment, Certainty};
use crate::episode::{ClearReason, EpisodeId, Event, EventKind, Phase, PositionReport};
use crate::geodesy::Ecef;
use crate::index::{OrderRef, PositionIndex, ZoneIndex};
use crate::model::{
    Case, CaseId, DeviceId, Fix, Input, OrderId, RiskLevel, Role, Rule, Status, StrapState,
};
use crate::schedule::{schedule_time_zone, Schedule, ScheduleState};
use crate::track::{OpenEpisode, Track, TrackKinds, Transition};
use crate::validate::{validate_case, CaseError, Problem, ValidationReport};
use crate::zone::CompiledZone;

/// Fixes kept per device to recognise redelivered duplicates and to judge
/// late fixes of the other party of a contact ban.
const HISTORY_LEN: usize = 8;

/// Late breaches derive their ids under this name, apart from live episodes.
const LATE_TRACK: &str = "late";

/// A fix or status the engine refuses. Nothing about it is recorded.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InputError {
    #[error("unknown device `{0}`")]
    UnknownDevice(DeviceId),
    #[error("{field} is not a finite number")]
    NotFinite { field: &'static str },
    #[error("latitude {0} is outside -90..90")]
    LatitudeOutOfRange(f64),
    #[error("longitude {0} is outside -180..180")]
    LongitudeOutOfRange(f64),
    #[error("position 0,0 is a receiver's default, not a fix")]
    NullIsland,
    #[error("accuracy {0} m must be greater than zero")]
    AccuracyNotPositive(f64),
    #[error("speed {0} m/s must not be negative")]
    NegativeSpeed(f64),
    #[error("heading {0}° is outside 0..360")]
    HeadingOutOfRange(f64),
    #[error("battery {0} % is above 100")]
    BatteryOutOfRange(u8),
}

/// A case the engine refused; the engine is unchanged.
#[derive(Debug, Clone, PartialEq, Error, Serialize)]
#[error("case refused with {} error(s); first: {}", report.errors.len(), first_error(report))]
pub struct CaseRejected {
    pub report: ValidationReport,
}

fn first_error(report: &ValidationReport) -> String {
    report
        .errors
        .first()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// What became of a fix the engine took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// A new, plausible position.
    Accepted,
    /// Implies an impossible speed; used, but only for *possible* decisions.
    Suspect,
    /// Seen before (same sequence number, or same time and position).
    Duplicate,
    /// Older than the device's latest fix: evidence only.
    Late,
    /// Its accuracy is too poor to decide anything; the device is alive.
    Unusable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FixOutcome {
    pub disposition: Disposition,
    pub events: Vec<Event>,
}

/// An order that covers a point, for police on the street.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BanHit {
    pub case: CaseId,
    pub order: OrderId,
    pub offender: DeviceId,
    pub risk: RiskLevel,
    pub kind: BanKind,
    /// `false` when the point lies only in the warning area.
    pub inside: bool,
    /// To the zone boundary (negative inside) or to the protected person.
    pub distance_m: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BanKind {
    ExclusionZone,
    ContactBan,
}

/// A device near a point, by its latest accepted fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NearbyDevice {
    pub device: DeviceId,
    pub distance_m: f64,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
    pub ts: Timestamp,
}

/// The deterministic decision engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    tz: TimeZone,
    cases: Vec<Option<CaseState>>,
    free_cases: Vec<usize>,
    case_slots: HashMap<CaseId, usize>,
    devices: Vec<Option<DeviceState>>,
    free_devices: Vec<usize>,
    device_slots: HashMap<DeviceId, usize>,
    zones: ZoneIndex,
    positions: PositionIndex,
    /// When a device or an order must be looked at again, earliest first.
    /// An entry whose time is no longer its subject's `timer` is stale.
    timers: BinaryHeap<Reverse<(Timestamp, Subject)>>,
    /// Largest contact-ban alarm radius, to size `bans_at` lookups.
    max_alarm_radius_m: f64,
}

#[derive(Debug)]
struct CaseState {
    id: CaseId,
    risk: RiskLevel,
    offender: usize,
    offender_id: DeviceId,
    /// Device slots of the case with their roles, the offender first.
    members: Vec<(usize, Role)>,
    /// Which orders a fix bears on, kept with the case so that most fixes
    /// decide without touching the orders themselves.
    plan: SmallVec<[OrderPlan; 4]>,
    orders: Vec<OrderState>,
    /// When the engine began watching: the reference for "never heard of".
    watched_since: Timestamp,
}

/// The few facts needed to skip an order for a fix, one per order.
#[derive(Debug, Clone, Copy)]
enum OrderPlan {
    /// An exclusion zone: a fix farther than `reach_m` (plus its accuracy and
    /// the clearing margin) from `centre` cannot touch it. `engaged` is true
    /// whenever its track may hold evidence or an open episode.
    Zone {
        centre: Ecef,
        reach_m: f64,
        engaged: bool,
    },
    Curfew,
    ContactBan {
        protected: usize,
    },
}

impl OrderPlan {
    fn of(rule: &CompiledRule) -> Self {
        match rule {
            CompiledRule::Exclusion { zone, buffer_m } => OrderPlan::Zone {
                centre: *zone.frame().origin(),
                reach_m: zone.reach_m() + buffer_m,
                engaged: true,
            },
            CompiledRule::Inclusion { .. } => OrderPlan::Curfew,
            CompiledRule::ContactBan { protected, .. } => OrderPlan::ContactBan {
                protected: *protected,
            },
        }
    }
}

/// What a timer looks at when it comes due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Subject {
    Device(usize),
    Order { case: usize, order: usize },
}

/// Queues `subject` for `at` unless it is already queued for then or earlier.
/// Deadlines mostly move later (every message postpones "offline"): the
/// earlier entry then comes due, finds nothing, and queues the new time.
fn arm(
    timers: &mut BinaryHeap<Reverse<(Timestamp, Subject)>>,
    timer: &mut Option<Timestamp>,
    at: Option<Timestamp>,
    subject: Subject,
) {
    if let Some(at) = at {
        if timer.is_none_or(|queued| at < queued) {
            *timer = Some(at);
            timers.push(Reverse((at, subject)));
        }
    }
}

#[derive(Debug)]
struct OrderState {
    id: OrderId,
    valid_from: Timestamp,
    valid_until: Option<Timestamp>,
    schedule: Option<(Schedule, Option<ScheduleState>)>,
    rule: CompiledRule,
    track: Track,
    /// The earliest time this order is queued to be looked at again.
    timer: Option<Timestamp>,
}

impl OrderState {
    /// What decides which deadlines an order has: its open episode's kind
    /// and, for a curfew, whether he is seen out (and how surely) or home.
    fn deadline_marks(&self, config: &EngineConfig) -> (Option<EventKind>, u8, bool) {
        let open = self.track.open.as_ref();
        let kind = open.map(|e| e.kind);
        match &self.rule {
            CompiledRule::Inclusion { curfew, .. } => (
                kind,
                match (curfew.outside_since, curfew.is_confirmed_outside(config)) {
                    (None, _) => 0,
                    (Some(_), false) => 1,
                    (Some(_), true) => 2,
                },
                open.is_some_and(|e| curfew.home_since(e.onset).is_some()),
            ),
            _ => (kind, 0, false),
        }
    }
}

#[derive(Debug)]
enum CompiledRule {
    Exclusion {
        zone: CompiledZone,
        buffer_m: f64,
    },
    Inclusion {
        zone: CompiledZone,
        grace_s: u32,
        curfew: CurfewEvidence,
    },
    ContactBan {
        protected: usize,
        protected_id: DeviceId,
        warning_m: f64,
        alarm_m: f64,
    },
}

impl CompiledRule {
    fn same_kind(&self, rule: &Rule) -> bool {
        matches!(
            (self, rule),
            (CompiledRule::Exclusion { .. }, Rule::ExclusionZone { .. })
                | (CompiledRule::Inclusion { .. }, Rule::InclusionZone { .. })
                | (CompiledRule::ContactBan { .. }, Rule::ContactBan { .. })
        )
    }
}

/// What the latest fixes say about an offender and an inclusion zone.
#[derive(Debug, Clone, Default)]
struct CurfewEvidence {
    outside: Option<Certainty>,
    outside_streak: u8,
    outside_since: Option<Timestamp>,
    inside_since: Option<Timestamp>,
    /// Time of the latest fix judged.
    last_seen: Option<Timestamp>,
}

impl CurfewEvidence {
    /// Out for certain, or possibly out on enough consecutive fixes.
    fn is_confirmed_outside(&self, config: &EngineConfig) -> bool {
        match self.outside {
            Some(Certainty::Certain) => true,
            Some(Certainty::Possible) => {
                self.outside_streak >= config.possible_confirmations.max(1)
            }
            None => false,
        }
    }

    /// From when he counts as home again for a breach that began at `onset`:
    /// only a fix after the onset shows him home since then. A fix stamped
    /// earlier, delivered late, cannot take back a breach on its own.
    fn home_since(&self, onset: Timestamp) -> Option<Timestamp> {
        let since = self.inside_since?;
        self.last_seen
            .is_some_and(|seen| seen >= onset)
            .then(|| since.max(onset))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    ts: Timestamp,
    lat: f64,
    lon: f64,
    accuracy_m: f64,
    ecef: Ecef,
}

impl Sample {
    fn report(&self, device: &DeviceId, extra_uncertainty_m: f64) -> PositionReport {
        PositionReport {
            device: device.clone(),
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m + extra_uncertainty_m,
            ts: self.ts,
        }
    }
}

#[derive(Debug)]
struct DeviceState {
    id: DeviceId,
    /// The cases the device is part of; almost always one.
    memberships: SmallVec<[(usize, Role); 2]>,
    watched_since: Timestamp,
    last_message: Option<Timestamp>,
    /// Time of the newest fix, usable or not: the line between live and late.
    latest_fix: Option<Timestamp>,
    /// Time of the newest usable fix, suspect or not: the GPS works.
    last_usable_fix: Option<Timestamp>,
    /// Newest plausible position.
    accepted: Option<Sample>,
    /// A suspect position waiting for the next fix to confirm it.
    pending: Option<Sample>,
    history: History,
    tamper: Option<Timestamp>,
    battery: Option<(EventKind, Timestamp)>,
    gps_lost: Option<Timestamp>,
    offline: Option<Timestamp>,
    /// The earliest time this device is queued to be looked at again.
    timer: Option<Timestamp>,
}

impl DeviceState {
    fn new(id: DeviceId, now: Timestamp) -> Self {
        DeviceState {
            id,
            memberships: SmallVec::new(),
            watched_since: now,
            last_message: None,
            latest_fix: None,
            last_usable_fix: None,
            accepted: None,
            pending: None,
            history: History::default(),
            tamper: None,
            battery: None,
            gps_lost: None,
            offline: None,
            timer: None,
        }
    }

    /// The last message, or when watching began if that is later: a message
    /// stamped before the engine watched cannot bring a deadline forward.
    fn heard(&self) -> Timestamp {
        self.last_message
            .map_or(self.watched_since, |t| t.max(self.watched_since))
    }

    /// The last usable fix, or when watching began if that is later.
    fn fixed(&self) -> Timestamp {
        self.last_usable_fix
            .map_or(self.watched_since, |t| t.max(self.watched_since))
    }

    /// Messages have come since the last usable fix: GPS lost is counting.
    fn gps_lost_pending(&self) -> bool {
        self.gps_lost.is_none() && self.offline.is_none() && self.heard() > self.fixed()
    }

    /// A redelivered fix carries its original time, so a fix newer than
    /// every fix seen is new, whatever its sequence number (a device that
    /// restarts counts from the beginning again).
    fn is_duplicate(&self, fix: &Fix) -> bool {
        if self.latest_fix.is_none_or(|latest| fix.ts > latest) {
            return false;
        }
        self.history.entries().any(|e| {
            (fix.seq.is_some() && e.seq == fix.seq)
                || (e.ts == fix.ts && e.lat == fix.lat && e.lon == fix.lon)
        })
    }

    /// Whether `sample` implies an impossible speed from the remembered fix
    /// nearest to it in time.
    fn implausible_among_neighbours(&self, sample: &Sample, config: &EngineConfig) -> bool {
        self.history
            .entries()
            .filter(|e| e.ts != sample.ts)
            .min_by_key(|e| sample.ts.duration_since(e.ts).as_millis().abs())
            .is_some_and(|e| {
                implied_speed_mps(&e.sample(), sample) > config.max_plausible_speed_mps
            })
    }

    /// The remembered fix nearest in time to `t`.
    fn sample_near(&self, t: Timestamp) -> Option<Sample> {
        self.history
            .entries()
            .min_by_key(|e| t.duration_since(e.ts).as_millis().abs())
            .map(Remembered::sample)
    }
}

/// The last fixes of a device, kept inline so that remembering one touches
/// no other memory.
#[derive(Debug, Default)]
struct History {
    entries: [Option<Remembered>; HISTORY_LEN],
    next: usize,
}

#[derive(Debug, Clone, Copy)]
struct Remembered {
    seq: Option<u64>,
    ts: Timestamp,
    lat: f64,
    lon: f64,
    accuracy_m: f64,
}

impl Remembered {
    fn sample(&self) -> Sample {
        Sample {
            ts: self.ts,
            lat: self.lat,
            lon: self.lon,
            accuracy_m: self.accuracy_m,
            ecef: Ecef::from_lat_lon(self.lat, self.lon),
        }
    }
}

impl History {
    fn remember(&mut self, fix: &Fix) {
        self.entries[self.next] = Some(Remembered {
            seq: fix.seq,
            ts: fix.ts,
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
        });
        self.next = (self.next + 1) % HISTORY_LEN;
    }

    fn entries(&self) -> impl Iterator<Item = &Remembered> {
        self.entries.iter().flatten()
    }
}

/// The speed a move between two fixes implies once both accuracies are
/// granted: noise is not speed.
fn implied_speed_mps(from: &Sample, to: &Sample) -> f64 {
    let gap = (from.ecef.distance_m(&to.ecef) - from.accuracy_m - to.accuracy_m).max(0.0);
    let dt = seconds_between(from.ts, to.ts);
    if gap == 0.0 {
        0.0
    } else if dt == 0.0 {
        f64::INFINITY
    } else {
        gap / dt
    }
}

fn seconds_between(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64().abs()
}

fn after(t: Timestamp, seconds: u32) -> Timestamp {
    t.checked_add(jiff::SignedDuration::from_secs(i64::from(seconds)))
        .unwrap_or(Timestamp::MAX)
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            tz: schedule_time_zone(),
            cases: Vec::new(),
            free_cases: Vec::new(),
            case_slots: HashMap::new(),
            devices: Vec::new(),
            free_devices: Vec::new(),
            device_slots: HashMap::new(),
            zones: ZoneIndex::default(),
            positions: PositionIndex::default(),
            timers: BinaryHeap::new(),
            max_alarm_radius_m: 0.0,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn case_count(&self) -> usize {
        self.case_slots.len()
    }

    pub fn device_count(&self) -> usize {
        self.device_slots.len()
    }

    pub fn has_device(&self, device: &str) -> bool {
        self.device_slots.contains_key(device)
    }

    /// Adds a case or replaces it, live. Episodes of orders that keep their id
    /// and type carry on; those of removed orders are cleared. `now` is when
    /// the engine starts watching devices it has not heard from.
    pub fn upsert_case(&mut self, case: Case, now: Timestamp) -> Result<Vec<Event>, CaseRejected> {
        let mut report = validate_case(&case);
        self.check_roles(&case, &mut report);
        let mut compiled = Vec::with_capacity(case.orders.len());
        if report.is_ok() {
            for (i, order) in case.orders.iter().enumerate() {
                match self.compile_rule(&case, &order.rule) {
                    Some(rule) => compiled.push(rule),
                    None => report.errors.push(CaseError {
                        case: case.id.clone(),
                        order: Some(order.id.clone()),
                        field: format!("orders[{i}].rule.geometry"),
                        problem: Problem::EmptyGeometry,
                    }),
                }
            }
        }
        if !report.is_ok() {
            return Err(CaseRejected { report });
        }

        let mut events = Vec::new();
        let mut previous = self.detach_case(&case.id);
        let slot = match &previous {
            Some((slot, _)) => *slot,
            None => self.free_cases.pop().unwrap_or_else(|| {
                self.cases.push(None);
                self.cases.len() - 1
            }),
        };
        let offender = self.attach_device(&case.offender.device, slot, Role::Offender, now);
        let mut members = vec![(offender, Role::Offender)];
        for person in &case.protected {
            if let Some(device) = &person.device {
                members.push((
                    self.attach_device(device, slot, Role::Protected, now),
                    Role::Protected,
                ));
            }
        }
        // Compile contact bans after the devices exist.
        let mut orders = Vec::with_capacity(case.orders.len());
        for (order, mut rule) in case.orders.iter().zip(compiled) {
            if let CompiledRule::ContactBan {
                protected,
                protected_id,
                alarm_m,
                ..
            } = &mut rule
            {
                // Attached above; a missing slot would read as a device never
                // heard from (position unknown), never as a panic.
                *protected = self
                    .device_slots
                    .get(protected_id.as_str())
                    .copied()
                    .unwrap_or(usize::MAX);
                self.max_alarm_radius_m = self.max_alarm_radius_m.max(*alarm_m);
            }
            let track = previous
                .as_mut()
                .and_then(|(_, old)| {
                    let i = old
                        .orders
                        .iter()
                        .position(|o| o.id == order.id && o.rule.same_kind(&order.rule))?;
                    Some(std::mem::take(&mut old.orders[i].track))
                })
                .unwrap_or_default();
            orders.push(OrderState {
                id: order.id.clone(),
                valid_from: order.valid_from,
                valid_until: order.valid_until,
                schedule: match &order.rule {
                    Rule::ExclusionZone { schedule, .. } => schedule.clone().map(|s| (s, None)),
                    Rule::InclusionZone { schedule, .. } => Some((schedule.clone(), None)),
                    Rule::ContactBan { .. } => None,
                },
                rule,
                track,
                timer: None,
            });
        }
        let watched_since = previous
            .as_ref()
            .map(|(_, old)| old.watched_since)
            .unwrap_or(now);
        if let Some((_, old)) = &mut previous {
            for i in 0..old.orders.len() {
                close_order(old, i, ClearReason::OrderWithdrawn, now, &mut events);
            }
        }
        let state = CaseState {
            id: case.id.clone(),
            risk: case.risk,
            offender,
            offender_id: case.offender.device.clone(),
            members,
            plan: orders.iter().map(|o| OrderPlan::of(&o.rule)).collect(),
            orders,
            watched_since,
        };
        for (bounds, at) in zone_entries(slot, &state) {
            self.zones.insert(bounds, at);
        }
        self.case_slots.insert(case.id.clone(), slot);
        self.cases[slot] = Some(state);
        if let Some(state) = self.cases[slot].as_mut() {
            for i in 0..state.orders.len() {
                rearm_order(
                    &mut self.timers,
                    &self.config,
                    &self.tz,
                    &self.devices,
                    state,
                    slot,
                    i,
                    now,
                    None,
                );
            }
        }
        if let Some((_, old)) = &previous {
            self.drop_orphan_devices(&old.members);
        }
        Ok(events)
    }

    /// Removes a case; its open episodes, health ones included, are cleared.
    pub fn remove_case(&mut self, id: &CaseId, now: Timestamp) -> Vec<Event> {
        let mut events = Vec::new();
        let Some((slot, mut old)) = self.detach_case(id) else {
            return events;
        };
        for i in 0..old.orders.len() {
            close_order(&mut old, i, ClearReason::OrderWithdrawn, now, &mut events);
        }
        for &(d, role) in &old.members {
            if let Some(dev) = self.devices[d].as_ref() {
                for (kind, onset) in open_health(dev) {
                    events.push(health_event(
                        &old,
                        dev,
                        role,
                        kind,
                        onset,
                        Phase::Cleared,
                        now,
                        Some(ClearReason::OrderWithdrawn),
                    ));
                }
            }
        }
        self.free_cases.push(slot);
        self.drop_orphan_devices(&old.members);
        events
    }

    /// Takes a case out of the tables, leaving its slot empty but reserved.
    fn detach_case(&mut self, id: &CaseId) -> Option<(usize, CaseState)> {
        let slot = self.case_slots.remove(id)?;
        let old = self.cases[slot].take()?;
        for (bounds, at) in zone_entries(slot, &old) {
            self.zones.remove(bounds, at);
        }
        // An upsert attaches the devices again; orphans are dropped after it.
        for &(d, _) in &old.members {
            if let Some(dev) = self.devices[d].as_mut() {
                dev.memberships.retain(|(c, _)| *c != slot);
            }
        }
        Some((slot, old))
    }

    fn attach_device(&mut self, id: &DeviceId, case: usize, role: Role, now: Timestamp) -> usize {
        let slot = match self.device_slots.get(id.as_str()) {
            Some(&slot) => slot,
            None => {
                let slot = self.free_devices.pop().unwrap_or_else(|| {
                    self.devices.push(None);
                    self.devices.len() - 1
                });
                self.devices[slot] = Some(DeviceState::new(id.clone(), now));
                self.device_slots.insert(id.clone(), slot);
                slot
            }
        };
        if let Some(dev) = self.devices[slot].as_mut() {
            if !dev.memberships.contains(&(case, role)) {
                dev.memberships.push((case, role));
            }
            let deadline = device_deadline(dev, &self.config);
            arm(
                &mut self.timers,
                &mut dev.timer,
                deadline,
                Subject::Device(slot),
            );
        }
        slot
    }

    /// Forgets those of `candidates` that no case needs any more.
    fn drop_orphan_devices(&mut self, candidates: &[(usize, Role)]) {
        for &(slot, _) in candidates {
            let orphan = self.devices[slot]
                .as_ref()
                .is_some_and(|d| d.memberships.is_empty());
            if orphan {
                if let Some(dev) = self.devices[slot].take() {
                    self.device_slots.remove(&dev.id);
                    self.positions.remove(slot);
                    self.free_devices.push(slot);
                }
            }
        }
    }

    /// A device is either an offender or a protected person's, never both.
    fn check_roles(&self, case: &Case, report: &mut ValidationReport) {
        let mut check = |device: &DeviceId, role: Role, field: String| {
            let Some(dev) = self
                .device_slots
                .get(device.as_str())
                .and_then(|&s| self.devices[s].as_ref())
            else {
                return;
            };
            for (c, existing) in &dev.memberships {
                let Some(other) = self.cases[*c].as_ref() else {
                    continue;
                };
                if other.id != case.id && *existing != role {
                    report.errors.push(CaseError {
                        case: case.id.clone(),
                        order: None,
                        field: field.clone(),
                        problem: Problem::DeviceRoleConflict {
                            device: device.to_string(),
                            existing: match existing {
                                Role::Offender => "the offender's bracelet".into(),
                                Role::Protected => "a protected person's device".into(),
                            },
                            other_case: other.id.to_string(),
                        },
                    });
                }
            }
        };
        check(
            &case.offender.device,
            Role::Offender,
            "offender.device".into(),
        );
        for (i, p) in case.protected.iter().enumerate() {
            if let Some(device) = &p.device {
                check(device, Role::Protected, format!("protected[{i}].device"));
            }
        }
    }

    fn compile_rule(&self, case: &Case, rule: &Rule) -> Option<CompiledRule> {
        Some(match rule {
            Rule::ExclusionZone {
                geometry,
                warning_buffer_m,
                ..
            } => CompiledRule::Exclusion {
                zone: CompiledZone::compile(geometry)?,
                buffer_m: warning_buffer_m.unwrap_or(0.0),
            },
            Rule::InclusionZone {
                geometry, grace_s, ..
            } => CompiledRule::Inclusion {
                zone: CompiledZone::compile(geometry)?,
                grace_s: *grace_s,
                curfew: CurfewEvidence::default(),
            },
            Rule::ContactBan {
                protected,
                warning_radius_m,
                alarm_radius_m,
            } => {
                let device = case
                    .protected
                    .iter()
                    .find(|p| &p.id == protected)?
                    .device
                    .clone()?;
                CompiledRule::ContactBan {
                    // Resolved once the devices are attached.
                    protected: usize::MAX,
                    protected_id: device,
                    warning_m: *warning_radius_m,
                    alarm_m: *alarm_radius_m,
                }
            }
        })
    }

    /// Applies a recorded input: the same as calling the method it names.
    pub fn apply(&mut self, input: &Input) -> Result<Vec<Event>, InputError> {
        match input {
            Input::Fix(fix) => self.ingest_fix(fix).map(|outcome| outcome.events),
            Input::Status(status) => self.ingest_status(status),
            Input::Tick { now } => Ok(self.tick(*now)),
        }
    }

    /// Takes one position fix.
    pub fn ingest_fix(&mut self, fix: &Fix) -> Result<FixOutcome, InputError> {
        check_fix(fix)?;
        let slot = *self
            .device_slots
            .get(fix.device.as_str())
            .ok_or_else(|| InputError::UnknownDevice(fix.device.clone()))?;
        let gps_was_pending = self.devices[slot]
            .as_ref()
            .is_some_and(DeviceState::gps_lost_pending);
        let outcome = self.take_fix(slot, fix);
        self.requeue_device(slot, gps_was_pending);
        outcome
    }

    fn take_fix(&mut self, slot: usize, fix: &Fix) -> Result<FixOutcome, InputError> {
        let mut events = Vec::new();
        self.heard_from(slot, fix.ts, fix.strap, fix.battery_pct, None, &mut events);

        let Some(dev) = self.devices[slot].as_mut() else {
            return Err(InputError::UnknownDevice(fix.device.clone()));
        };
        if dev.is_duplicate(fix) {
            return Ok(FixOutcome {
                disposition: Disposition::Duplicate,
                events,
            });
        }
        let sample = Sample {
            ts: fix.ts,
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
            ecef: Ecef::from_lat_lon(fix.lat, fix.lon),
        };
        if dev.latest_fix.is_some_and(|latest| fix.ts < latest) {
            dev.history.remember(fix);
            if fix.accuracy_m <= self.config.max_usable_accuracy_m {
                self.judge_late(slot, &sample, &mut events);
            }
            return Ok(FixOutcome {
                disposition: Disposition::Late,
                events,
            });
        }
        dev.latest_fix = Some(fix.ts);
        dev.history.remember(fix);
        if fix.accuracy_m > self.config.max_usable_accuracy_m {
            return Ok(FixOutcome {
                disposition: Disposition::Unusable,
                events,
            });
        }

        let suspect = self.is_suspect(slot, sample);
        let Some(dev) = self.devices[slot].as_mut() else {
            return Err(InputError::UnknownDevice(fix.device.clone()));
        };
        if !suspect {
            dev.accepted = Some(sample);
            dev.pending = None;
        }
        // Condition episodes (GPS lost, offline, unknown) clear only on
        // evidence that moves their deadline past their onset; otherwise a
        // message delayed in transit could clear one that then reopens with
        // the same onset, and so the same id.
        let gps_lost_after = self.config.gps_lost_after_s;
        let latest = dev.last_usable_fix.map_or(fix.ts, |last| last.max(fix.ts));
        dev.last_usable_fix = Some(latest);
        let cleared = dev
            .gps_lost
            .take_if(|onset| after(latest, gps_lost_after) > *onset);
        if let Some(onset) = cleared {
            let dev = &*dev;
            fan_out(
                &self.cases,
                dev,
                EventKind::GpsLost,
                onset,
                Phase::Cleared,
                fix.ts,
                &mut events,
            );
        }
        if !suspect {
            self.positions.update(slot, fix.lat, fix.lon, sample.ecef);
        }
        self.decide(slot, &sample, suspect, &mut events);
        Ok(FixOutcome {
            disposition: if suspect {
                Disposition::Suspect
            } else {
                Disposition::Accepted
            },
            events,
        })
    }

    /// Whether `sample` implies an impossible move. The accuracies of both
    /// fixes are granted first: noise is not speed. A suspect fix confirmed by
    /// the next one (plausible from it) makes that next one acceptable.
    fn is_suspect(&mut self, slot: usize, sample: Sample) -> bool {
        let max = self.config.max_plausible_speed_mps;
        let Some(dev) = self.devices[slot].as_mut() else {
            return false;
        };
        let Some(accepted) = dev.accepted else {
            return false;
        };
        if implied_speed_mps(&accepted, &sample) <= max {
            return false;
        }
        if dev
            .pending
            .as_ref()
            .is_some_and(|p| implied_speed_mps(p, &sample) <= max)
        {
            return false;
        }
        dev.pending = Some(sample);
        true
    }

    /// Runs every order the device's fix bears on.
    fn decide(&mut self, slot: usize, sample: &Sample, suspect: bool, events: &mut Vec<Event>) {
        let Some(dev) = self.devices[slot].as_ref() else {
            return;
        };
        let margin = self.config.clear_margin_m + sample.accuracy_m;
        for &(case_slot, role) in &dev.memberships {
            let Some(case) = self.cases[case_slot].as_mut() else {
                continue;
            };
            for i in 0..case.plan.len() {
                let relevant = match case.plan[i] {
                    OrderPlan::Zone {
                        centre,
                        reach_m,
                        engaged,
                    } => {
                        role == Role::Offender
                            && (engaged || centre.distance_m(&sample.ecef) <= reach_m + margin)
                    }
                    OrderPlan::Curfew => role == Role::Offender,
                    OrderPlan::ContactBan { protected } => {
                        role == Role::Offender || protected == slot
                    }
                };
                if !relevant {
                    continue;
                }
                let marks = case.orders[i].deadline_marks(&self.config);
                decide_order(
                    &self.config,
                    &self.tz,
                    &self.devices,
                    case,
                    i,
                    slot,
                    sample,
                    suspect,
                    events,
                );
                if let OrderPlan::Zone { engaged, .. } = &mut case.plan[i] {
                    *engaged = !case.orders[i].track.is_idle();
                }
                // Fixes only postpone the deadlines already queued, unless
                // they change what the order is waiting for.
                if case.orders[i].timer.is_some()
                    && case.orders[i].deadline_marks(&self.config) == marks
                {
                    continue;
                }
                rearm_order(
                    &mut self.timers,
                    &self.config,
                    &self.tz,
                    &self.devices,
                    case,
                    case_slot,
                    i,
                    sample.ts,
                    None,
                );
            }
        }
    }

    /// A fix older than the newest: live state stays; a breach it shows is
    /// reported as evidence, unless an open episode already covers its time.
    fn judge_late(&mut self, slot: usize, sample: &Sample, events: &mut Vec<Event>) {
        let Some(dev) = self.devices[slot].as_ref() else {
            return;
        };
        for &(case_slot, role) in &dev.memberships {
            let Some(case) = self.cases[case_slot].as_mut() else {
                continue;
            };
            for i in 0..case.orders.len() {
                let config = &self.config;
                let order = &mut case.orders[i];
                let Some(window) = active_window(order, &self.tz, sample.ts) else {
                    continue;
                };
                let finding = match (&order.rule, role) {
                    (CompiledRule::Exclusion { zone, .. }, Role::Offender) => {
                        let d = zone.signed_distance_m(&sample.ecef);
                        disc_in_area(d, sample.accuracy_m)
                            .map(|c| (EventKind::ZoneBreach, c, d, None))
                    }
                    (CompiledRule::Inclusion { zone, grace_s, .. }, Role::Offender) => {
                        let d = zone.signed_distance_m(&sample.ecef);
                        let late_enough = sample.ts >= after(window, *grace_s);
                        (late_enough
                            && disc_in_area(-d, sample.accuracy_m) == Some(Certainty::Certain))
                        .then_some((EventKind::CurfewBreach, Certainty::Certain, d, None))
                    }
                    (
                        CompiledRule::ContactBan {
                            protected, alarm_m, ..
                        },
                        _,
                    ) => {
                        let other_slot = if role == Role::Offender {
                            *protected
                        } else if *protected == slot {
                            case.offender
                        } else {
                            continue;
                        };
                        let Some(other_dev) = self.devices.get(other_slot).and_then(Option::as_ref)
                        else {
                            continue;
                        };
                        let Some(other) = other_dev.sample_near(sample.ts) else {
                            continue;
                        };
                        let age = seconds_between(other.ts, sample.ts);
                        if age > f64::from(config.position_max_age_s) {
                            continue;
                        }
                        let r = sample.accuracy_m
                            + other.accuracy_m
                            + age * config.stale_position_speed_mps;
                        let d = sample.ecef.distance_m(&other.ecef);
                        let other_report =
                            other.report(&other_dev.id, age * config.stale_position_speed_mps);
                        disc_in_area(d - alarm_m, r)
                            .map(|c| (EventKind::ProximityBreach, c, d, Some(other_report)))
                    }
                    _ => None,
                };
                let Some((kind, certainty, distance, other)) = finding else {
                    continue;
                };
                // A breach already open since before this fix holds it.
                if case.orders[i]
                    .track
                    .open
                    .as_ref()
                    .is_some_and(|e| e.kind == kind && e.onset <= sample.ts)
                {
                    continue;
                }
                let Some(dev) = self.devices[slot].as_ref() else {
                    continue;
                };
                // A late fix gets no next fix to confirm it: one implausible
                // against its neighbours in time stays possible.
                let certainty = if dev.implausible_among_neighbours(sample, config) {
                    Certainty::Possible
                } else {
                    certainty
                };
                let own = sample.report(&dev.id, 0.0);
                let (offender, protected) = match role {
                    Role::Offender => (Some(own), other),
                    Role::Protected => (other, Some(own)),
                };
                let order = &case.orders[i];
                events.push(Event {
                    id: EpisodeId::derive(&case.id, order.id.as_str(), LATE_TRACK, sample.ts),
                    phase: Phase::LateBreach,
                    kind,
                    severity: kind.severity(case.risk, Role::Offender),
                    case: case.id.clone(),
                    order: Some(order.id.clone()),
                    device: case.offender_id.clone(),
                    role: Role::Offender,
                    onset: sample.ts,
                    at: sample.ts,
                    certainty: Some(certainty),
                    distance_m: Some(distance),
                    offender,
                    protected,
                    reason: None,
                });
            }
        }
    }

    /// Takes a heartbeat or status message.
    pub fn ingest_status(&mut self, status: &Status) -> Result<Vec<Event>, InputError> {
        if let Some(b) = status.battery_pct.filter(|b| *b > 100) {
            return Err(InputError::BatteryOutOfRange(b));
        }
        let slot = *self
            .device_slots
            .get(status.device.as_str())
            .ok_or_else(|| InputError::UnknownDevice(status.device.clone()))?;
        let gps_was_pending = self.devices[slot]
            .as_ref()
            .is_some_and(DeviceState::gps_lost_pending);
        let mut events = Vec::new();
        self.heard_from(
            slot,
            status.ts,
            status.strap,
            status.battery_pct,
            status.charging,
            &mut events,
        );
        self.requeue_device(slot, gps_was_pending);
        Ok(events)
    }

    /// Queues a device that heard from its device again, if that could have
    /// brought a deadline forward: nothing queued (it was offline, or new),
    /// or messages without a fix just began (GPS lost may be near).
    fn requeue_device(&mut self, slot: usize, gps_was_pending: bool) {
        let Some(dev) = self.devices.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if dev.timer.is_none() || (!gps_was_pending && dev.gps_lost_pending()) {
            let deadline = device_deadline(dev, &self.config);
            arm(
                &mut self.timers,
                &mut dev.timer,
                deadline,
                Subject::Device(slot),
            );
        }
    }

    /// Health bookkeeping shared by fixes and status messages.
    fn heard_from(
        &mut self,
        slot: usize,
        ts: Timestamp,
        strap: Option<StrapState>,
        battery_pct: Option<u8>,
        charging: Option<bool>,
        events: &mut Vec<Event>,
    ) {
        let config = &self.config;
        let Some(dev) = self.devices[slot].as_mut() else {
            return;
        };
        let current = dev.last_message.is_none_or(|last| ts >= last);
        let now = dev.last_message.map_or(ts, |t| t.max(ts));
        dev.last_message = Some(now);
        let mut changes: Vec<(EventKind, Timestamp, Phase)> = Vec::new();
        if let Some(onset) = dev
            .offline
            .take_if(|onset| after(now, config.offline_after_s) > *onset)
        {
            changes.push((EventKind::DeviceOffline, onset, Phase::Cleared));
        }
        // A message older than the newest says nothing about the strap or
        // battery now.
        let (strap, battery_pct, charging) = if current {
            (strap, battery_pct, charging)
        } else {
            (None, None, None)
        };
        match strap {
            Some(StrapState::Tampered) if dev.tamper.is_none() => {
                dev.tamper = Some(ts);
                changes.push((EventKind::Tamper, ts, Phase::Opened));
            }
            Some(StrapState::Ok) => {
                if let Some(onset) = dev.tamper.take() {
                    changes.push((EventKind::Tamper, onset, Phase::Cleared));
                }
            }
            _ => {}
        }
        let level = battery_pct.map(|pct| {
            if pct <= config.battery_critical_pct {
                Some(EventKind::BatteryCritical)
            } else if pct <= config.battery_low_pct {
                Some(EventKind::BatteryLow)
            } else {
                None
            }
        });
        match (dev.battery, level) {
            (None, Some(Some(kind))) if charging != Some(true) => {
                dev.battery = Some((kind, ts));
                changes.push((kind, ts, Phase::Opened));
            }
            (Some((EventKind::BatteryLow, onset)), Some(Some(EventKind::BatteryCritical))) => {
                dev.battery = Some((EventKind::BatteryCritical, onset));
                changes.push((EventKind::BatteryCritical, onset, Phase::Updated));
            }
            (Some((kind, onset)), _) => {
                let recovered = battery_pct.is_some_and(|pct| {
                    pct > config
                        .battery_low_pct
                        .saturating_add(config.battery_hysteresis_pct)
                });
                if recovered || charging == Some(true) {
                    dev.battery = None;
                    changes.push((kind, onset, Phase::Cleared));
                }
            }
            _ => {}
        }
        let dev = &*dev;
        for (kind, onset, phase) in changes {
            fan_out(&self.cases, dev, kind, onset, phase, now, events);
        }
    }

    /// Advances time: offline and GPS-lost devices, stale contact-ban
    /// positions, curfew deadlines, orders whose validity or window ended.
    /// Only what has come due is looked at, so a tick costs what it finds,
    /// not the number of cases.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(&Reverse((due, subject))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            match subject {
                Subject::Device(slot) => {
                    let Some(dev) = self.devices.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    if dev.timer != Some(due) {
                        continue;
                    }
                    dev.timer = None;
                    check_device(&self.config, &self.cases, dev, now, &mut events);
                    // What was due and did not act waits for new input, which
                    // queues its subject again; requeueing it now would spin.
                    let deadline = device_deadline(dev, &self.config).filter(|d| *d > now);
                    arm(&mut self.timers, &mut dev.timer, deadline, subject);
                }
                Subject::Order { case, order } => {
                    let Some(state) = self.cases.get_mut(case).and_then(Option::as_mut) else {
                        continue;
                    };
                    if state.orders.get(order).is_none_or(|o| o.timer != Some(due)) {
                        continue;
                    }
                    state.orders[order].timer = None;
                    check_order(
                        &self.config,
                        &self.tz,
                        &self.devices,
                        state,
                        order,
                        now,
                        &mut events,
                    );
                    rearm_order(
                        &mut self.timers,
                        &self.config,
                        &self.tz,
                        &self.devices,
                        state,
                        case,
                        order,
                        now,
                        Some(now),
                    );
                }
            }
        }
        #[cfg(debug_assertions)]
        self.assert_nothing_missed(now);
        events
    }

    /// In debug builds (all tests), every tick checks that a full sweep of
    /// all devices and orders finds nothing the timers did not.
    #[cfg(debug_assertions)]
    fn assert_nothing_missed(&mut self, now: Timestamp) {
        let mut missed = Vec::new();
        for dev in self.devices.iter_mut().flatten() {
            check_device(&self.config, &self.cases, dev, now, &mut missed);
        }
        for case in self.cases.iter_mut().flatten() {
            for i in 0..case.orders.len() {
                check_order(
                    &self.config,
                    &self.tz,
                    &self.devices,
                    case,
                    i,
                    now,
                    &mut missed,
                );
            }
        }
        assert!(
            missed.is_empty(),
            "timers missed events at {now}: {missed:#?}"
        );
    }

    /// Active exclusion zones and contact bans that cover a point at `at`.
    pub fn bans_at(&mut self, lat: f64, lon: f64, at: Timestamp) -> Vec<BanHit> {
        let mut hits = Vec::new();
        if !(lat.is_finite() && lon.is_finite()) {
            return hits;
        }
        let point = Ecef::from_lat_lon(lat, lon);
        let candidates: Vec<OrderRef> = self.zones.candidates(lat, lon).collect();
        for OrderRef { case, order } in candidates {
            let Some(case) = self.cases[case].as_mut() else {
                continue;
            };
            let state = &mut case.orders[order];
            if active_window(state, &self.tz, at).is_none() {
                continue;
            }
            if let CompiledRule::Exclusion { zone, buffer_m } = &state.rule {
                if !zone.may_touch(&point, *buffer_m) {
                    continue;
                }
                let d = zone.signed_distance_m(&point);
                if d <= *buffer_m {
                    hits.push(BanHit {
                        case: case.id.clone(),
                        order: state.id.clone(),
                        offender: case.offender_id.clone(),
                        risk: case.risk,
                        kind: BanKind::ExclusionZone,
                        inside: d <= 0.0,
                        distance_m: d,
                    });
                }
            }
        }
        for near in self.devices_near(lat, lon, self.max_alarm_radius_m) {
            let Some(dev) = self
                .device_slots
                .get(near.device.as_str())
                .and_then(|&s| self.devices[s].as_ref())
            else {
                continue;
            };
            for &(case_slot, role) in &dev.memberships {
                if role != Role::Protected {
                    continue;
                }
                let Some(case) = self.cases[case_slot].as_mut() else {
                    continue;
                };
                for i in 0..case.orders.len() {
                    let CompiledRule::ContactBan {
                        protected_id,
                        warning_m,
                        alarm_m,
                        ..
                    } = &case.orders[i].rule
                    else {
                        continue;
                    };
                    if protected_id != &near.device || near.distance_m > *warning_m {
                        continue;
                    }
                    let (alarm_m, id) = (*alarm_m, case.orders[i].id.clone());
                    if active_window(&mut case.orders[i], &self.tz, at).is_some() {
                        hits.push(BanHit {
                            case: case.id.clone(),
                            order: id,
                            offender: case.offender_id.clone(),
                            risk: case.risk,
                            kind: BanKind::ContactBan,
                            inside: near.distance_m <= alarm_m,
                            distance_m: near.distance_m,
                        });
                    }
                }
            }
        }
        hits
    }

    /// Devices whose latest accepted fix lies within `radius_m`, nearest first.
    pub fn devices_near(&self, lat: f64, lon: f64, radius_m: f64) -> Vec<NearbyDevice> {
        if !(lat.is_finite() && lon.is_finite() && radius_m.is_finite()) {
            return Vec::new();
        }
        let point = Ecef::from_lat_lon(lat, lon);
        let mut found: Vec<NearbyDevice> = self
            .positions
            .candidates(lat, lon, radius_m)
            .filter_map(|slot| {
                let dev = self.devices.get(slot)?.as_ref()?;
                let s = dev.accepted?;
                let distance_m = s.ecef.distance_m(&point);
                (distance_m <= radius_m).then(|| NearbyDevice {
                    device: dev.id.clone(),
                    distance_m,
                    lat: s.lat,
                    lon: s.lon,
                    accuracy_m: s.accuracy_m,
                    ts: s.ts,
                })
            })
            .collect();
        found.sort_by(|a, b| {
            a.distance_m
                .total_cmp(&b.distance_m)
                .then_with(|| a.device.cmp(&b.device))
        });
        found
    }
}

/// Opens the health episodes of a device that have come due at `now`.
fn check_device(
    config: &EngineConfig,
    cases: &[Option<CaseState>],
    dev: &mut DeviceState,
    now: Timestamp,
    events: &mut Vec<Event>,
) {
    let heard = dev.heard();
    if dev.offline.is_none() {
        let deadline = after(heard, config.offline_after_s);
        if now >= deadline {
            dev.offline = Some(deadline);
            fan_out(
                cases,
                dev,
                EventKind::DeviceOffline,
                deadline,
                Phase::Opened,
                now,
                events,
            );
        }
    }
    if dev.offline.is_none() && dev.gps_lost.is_none() {
        let last_fix = dev.fixed();
        let deadline = after(last_fix, config.gps_lost_after_s);
        if now >= deadline && heard > last_fix {
            dev.gps_lost = Some(deadline);
            fan_out(
                cases,
                dev,
                EventKind::GpsLost,
                deadline,
                Phase::Opened,
                now,
                events,
            );
        }
    }
}

/// When `check_device` could next find something.
fn device_deadline(dev: &DeviceState, config: &EngineConfig) -> Option<Timestamp> {
    if dev.offline.is_some() {
        // Only a message ends it, and a message queues the device again.
        return None;
    }
    let offline = after(dev.heard(), config.offline_after_s);
    let gps_lost = dev
        .gps_lost_pending()
        .then(|| after(dev.fixed(), config.gps_lost_after_s));
    Some(gps_lost.map_or(offline, |g| g.min(offline)))
}

/// Opens or clears what time alone decides for order `i`: validity and
/// windows ending, curfew deadlines, a contact ban's pair going unknown.
fn check_order(
    config: &EngineConfig,
    tz: &TimeZone,
    devices: &[Option<DeviceState>],
    case: &mut CaseState,
    i: usize,
    now: Timestamp,
    events: &mut Vec<Event>,
) {
    let Some(window) = active_window(&mut case.orders[i], tz, now) else {
        close_order(case, i, ClearReason::OrderInactive, now, events);
        return;
    };
    match &case.orders[i].rule {
        CompiledRule::Inclusion { .. } => {
            curfew_deadlines(config, devices, case, i, window, now, events);
        }
        CompiledRule::ContactBan { .. } => {
            let known_until = pair_known_until(config, devices, case, i);
            if now >= known_until {
                open_position_unknown(case, i, known_until, now, events);
            }
        }
        CompiledRule::Exclusion { .. } => {}
    }
}

/// Queues order `i` for the next time `check_order` could find something,
/// judged from the state as of `at`; with `checked`, only deadlines after
/// that time (see `tick`).
#[allow(clippy::too_many_arguments)]
fn rearm_order(
    timers: &mut BinaryHeap<Reverse<(Timestamp, Subject)>>,
    config: &EngineConfig,
    tz: &TimeZone,
    devices: &[Option<DeviceState>],
    case: &mut CaseState,
    case_slot: usize,
    i: usize,
    at: Timestamp,
    checked: Option<Timestamp>,
) {
    let window = active_window(&mut case.orders[i], tz, at);
    let order = &case.orders[i];
    let open = order.track.open.as_ref().map(|e| e.kind);
    let mut next: Option<Timestamp> = None;
    let mut consider = |t: Timestamp| {
        if checked.is_none_or(|c| t > c) {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    };
    if at < order.valid_from {
        consider(order.valid_from);
    }
    if let Some(until) = order.valid_until.filter(|u| at < *u) {
        consider(until);
    }
    if let Some((_, Some(state))) = &order.schedule {
        if state.valid_until != Timestamp::MAX {
            consider(state.valid_until);
        }
    }
    match (&order.rule, window) {
        (
            CompiledRule::Inclusion {
                grace_s, curfew, ..
            },
            Some(window),
        ) => {
            if open != Some(EventKind::CurfewBreach) {
                if let Some(since) = curfew.outside_since {
                    consider(after(since.max(window), *grace_s));
                }
            }
            if open.is_none() {
                let last_fix = devices
                    .get(case.offender)
                    .and_then(Option::as_ref)
                    .map_or(case.watched_since, DeviceState::fixed)
                    .max(case.watched_since);
                consider(after(last_fix.max(window), config.gps_lost_after_s));
            }
            if let Some(breach) = order
                .track
                .open
                .as_ref()
                .filter(|e| e.kind == EventKind::CurfewBreach)
            {
                if let Some(since) = curfew.home_since(breach.onset) {
                    consider(after(since, config.clear_min_s));
                }
            }
        }
        (CompiledRule::ContactBan { .. }, Some(_)) if open != Some(EventKind::PositionUnknown) => {
            let known_until = pair_known_until(config, devices, case, i);
            if known_until != Timestamp::MAX {
                consider(known_until);
            }
        }
        _ => {}
    }
    let order = &mut case.orders[i];
    arm(
        timers,
        &mut order.timer,
        next,
        Subject::Order {
            case: case_slot,
            order: i,
        },
    );
}

/// The zone index entries of a case: its exclusion zones, buffer included.
fn zone_entries(
    slot: usize,
    case: &CaseState,
) -> impl Iterator<Item = (crate::zone::DegreeBox, OrderRef)> + '_ {
    case.orders
        .iter()
        .enumerate()
        .filter_map(move |(i, order)| match &order.rule {
            CompiledRule::Exclusion { zone, buffer_m } => Some((
                zone.bounds_with_margin(*buffer_m),
                OrderRef {
                    case: slot,
                    order: i,
                },
            )),
            _ => None,
        })
}

/// Refuses what cannot be a position.
fn check_fix(fix: &Fix) -> Result<(), InputError> {
    for (field, value) in [
        ("lat", fix.lat),
        ("lon", fix.lon),
        ("accuracy", fix.accuracy_m),
    ] {
        if !value.is_finite() {
            return Err(InputError::NotFinite { field });
        }
    }
    if !(-90.0..=90.0).contains(&fix.lat) {
        return Err(InputError::LatitudeOutOfRange(fix.lat));
    }
    if !(-180.0..=180.0).contains(&fix.lon) {
        return Err(InputError::LongitudeOutOfRange(fix.lon));
    }
    if fix.lat == 0.0 && fix.lon == 0.0 {
        return Err(InputError::NullIsland);
    }
    if fix.accuracy_m <= 0.0 {
        return Err(InputError::AccuracyNotPositive(fix.accuracy_m));
    }
    if let Some(speed) = fix.speed_mps {
        if !speed.is_finite() {
            return Err(InputError::NotFinite { field: "speed" });
        }
        if speed < 0.0 {
            return Err(InputError::NegativeSpeed(speed));
        }
    }
    if let Some(heading) = fix.heading_deg {
        if !heading.is_finite() {
            return Err(InputError::NotFinite { field: "heading" });
        }
        if !(0.0..=360.0).contains(&heading) {
            return Err(InputError::HeadingOutOfRange(heading));
        }
    }
    if let Some(b) = fix.battery_pct.filter(|b| *b > 100) {
        return Err(InputError::BatteryOutOfRange(b));
    }
    Ok(())
}

/// When an order is in force at `t`: the start of its current window (or of
/// its validity, for orders without a schedule), `None` when it is not.
fn active_window(order: &mut OrderState, tz: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    if t < order.valid_from || order.valid_until.is_some_and(|until| t >= until) {
        return None;
    }
    let Some((schedule, cache)) = &mut order.schedule else {
        return Some(order.valid_from);
    };
    let state = match cache {
        Some(state) if state.covers(t) => *state,
        _ => {
            let state = schedule.state_at(tz, t);
            *cache = Some(state);
            state
        }
    };
    state.active.map(|w| w.start.max(order.valid_from))
}

/// The open episode's event for an order.
fn order_event(
    case: &CaseState,
    order: &OrderState,
    episode: &OpenEpisode,
    transition: Transition,
    at: Timestamp,
    positions: Option<(Option<PositionReport>, Option<PositionReport>)>,
) -> Event {
    let (phase, reason) = match transition {
        Transition::Opened => (Phase::Opened, None),
        Transition::Updated => (Phase::Updated, None),
        Transition::Cleared(reason) => (Phase::Cleared, Some(reason)),
    };
    let (offender, protected) = positions.unwrap_or((None, None));
    Event {
        id: episode.id,
        phase,
        kind: episode.kind,
        severity: episode.kind.severity(case.risk, Role::Offender),
        case: case.id.clone(),
        order: Some(order.id.clone()),
        device: case.offender_id.clone(),
        role: Role::Offender,
        onset: episode.onset,
        at,
        certainty: episode.certainty,
        distance_m: episode.reported_distance_m,
        offender,
        protected,
        reason,
    }
}

fn open_health(dev: &DeviceState) -> Vec<(EventKind, Timestamp)> {
    [
        dev.tamper.map(|t| (EventKind::Tamper, t)),
        dev.battery,
        dev.gps_lost.map(|t| (EventKind::GpsLost, t)),
        dev.offline.map(|t| (EventKind::DeviceOffline, t)),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Health episodes are about a device; each case it belongs to hears of them.
fn fan_out(
    cases: &[Option<CaseState>],
    dev: &DeviceState,
    kind: EventKind,
    onset: Timestamp,
    phase: Phase,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    for &(case_slot, role) in &dev.memberships {
        if let Some(case) = cases[case_slot].as_ref() {
            let reason = (phase == Phase::Cleared).then_some(ClearReason::Resolved);
            events.push(health_event(
                case, dev, role, kind, onset, phase, at, reason,
            ));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn health_event(
    case: &CaseState,
    dev: &DeviceState,
    role: Role,
    kind: EventKind,
    onset: Timestamp,
    phase: Phase,
    at: Timestamp,
    reason: Option<ClearReason>,
) -> Event {
    Event {
        id: EpisodeId::derive(&case.id, dev.id.as_str(), kind.family(), onset),
        phase,
        kind,
        severity: kind.severity(case.risk, role),
        case: case.id.clone(),
        order: None,
        device: dev.id.clone(),
        role,
        onset,
        at,
        certainty: None,
        distance_m: None,
        offender: None,
        protected: None,
        reason,
    }
}

/// Feeds one in-order fix of device `slot` to order `i` of `case`.
#[allow(clippy::too_many_arguments)]
fn decide_order(
    config: &EngineConfig,
    tz: &TimeZone,
    devices: &[Option<DeviceState>],
    case: &mut CaseState,
    i: usize,
    slot: usize,
    sample: &Sample,
    suspect: bool,
    events: &mut Vec<Event>,
) {
    let at = sample.ts;
    // Curfew evidence is gathered outside the window too: out at 21:50 and
    // still out at 22:05 is out since the window began.
    if let CompiledRule::Inclusion { zone, curfew, .. } = &mut case.orders[i].rule {
        let d = zone.signed_distance_m(&sample.ecef);
        let outside = disc_in_area(-d, sample.accuracy_m);
        curfew.outside = if suspect {
            outside.map(|_| Certainty::Possible)
        } else {
            outside
        };
        if outside.is_some() {
            curfew.outside_streak = curfew.outside_streak.saturating_add(1);
            curfew.outside_since.get_or_insert(at);
        } else {
            curfew.outside_streak = 0;
            curfew.outside_since = None;
        }
        if !suspect && d + sample.accuracy_m <= -config.clear_margin_m {
            curfew.inside_since.get_or_insert(at);
        } else {
            curfew.inside_since = None;
        }
        curfew.last_seen = Some(at);
    }
    let Some(window) = active_window(&mut case.orders[i], tz, at) else {
        // A fix stamped before an episode began (delayed in transit past the
        // tick that opened it) says nothing about the order since then.
        if open_onset(case, i).is_none_or(|onset| onset <= at) {
            close_order(case, i, ClearReason::OrderInactive, at, events);
        }
        return;
    };
    let Some(dev) = devices[slot].as_ref() else {
        return;
    };
    // The other party of a contact ban; reports are built only for an event.
    let (assessment, kinds, other) = match &mut case.orders[i].rule {
        CompiledRule::Exclusion { zone, buffer_m } => {
            let d = zone.signed_distance_m(&sample.ecef);
            (
                Assessment::new(d, *buffer_m, sample.accuracy_m, config.clear_margin_m),
                TrackKinds {
                    warning: EventKind::ZoneWarning,
                    breach: EventKind::ZoneBreach,
                },
                None,
            )
        }
        CompiledRule::Inclusion { .. } => {
            // A fix during the window ends a curfew GPS-lost episode, if it
            // is newer than the silence that opened it.
            let silence_ends = after(at.max(window), config.gps_lost_after_s);
            if case.orders[i]
                .track
                .open
                .as_ref()
                .is_some_and(|e| e.kind == EventKind::GpsLost && silence_ends > e.onset)
            {
                close_order(case, i, ClearReason::Resolved, at, events);
            }
            curfew_deadlines(config, devices, case, i, window, at, events);
            return;
        }
        CompiledRule::ContactBan {
            protected,
            warning_m,
            alarm_m,
            ..
        } => {
            let (warning_m, alarm_m) = (*warning_m, *alarm_m);
            let (own_role, other_slot) = if slot == case.offender {
                (Role::Offender, *protected)
            } else {
                (Role::Protected, case.offender)
            };
            let other_dev = devices.get(other_slot).and_then(Option::as_ref);
            let other = other_dev.and_then(|d| Some((d, d.accepted?)));
            let Some((other_dev, other)) = other
                .filter(|(_, o)| seconds_between(o.ts, at) <= f64::from(config.position_max_age_s))
            else {
                let known_until = pair_known_until(config, devices, case, i);
                if at >= known_until {
                    open_position_unknown(case, i, known_until, at, events);
                }
                return;
            };
            if let Some(onset) = case.orders[i]
                .track
                .open
                .as_ref()
                .filter(|e| e.kind == EventKind::PositionUnknown)
                .map(|e| e.onset)
            {
                // Only a newer position of the stale party ends it; until
                // then a fix delayed in transit is not judged against it.
                if pair_known_until(config, devices, case, i) <= onset {
                    return;
                }
                close_order(case, i, ClearReason::Resolved, at, events);
            }
            let grown = seconds_between(other.ts, at) * config.stale_position_speed_mps;
            let d = sample.ecef.distance_m(&other.ecef);
            let r = sample.accuracy_m + other.accuracy_m + grown;
            let mut a = Assessment::new(d - alarm_m, warning_m - alarm_m, r, config.clear_margin_m);
            a.distance_m = d;
            let other = Some((other, other_dev, grown, own_role));
            (
                a,
                TrackKinds {
                    warning: EventKind::ProximityWarning,
                    breach: EventKind::ProximityBreach,
                },
                other,
            )
        }
    };
    let case_id = &case.id;
    let order = &mut case.orders[i];
    let order_id = &order.id;
    let family = kinds.breach.family();
    let derive = |onset| EpisodeId::derive(case_id, order_id.as_str(), family, onset);
    if let Some((episode, transition)) = order
        .track
        .step(assessment, at, suspect, kinds, config, derive)
    {
        let own = sample.report(&dev.id, 0.0);
        let positions = match other {
            None => (Some(own), None),
            Some((other, other_dev, grown, Role::Offender)) => {
                (Some(own), Some(other.report(&other_dev.id, grown)))
            }
            Some((other, other_dev, grown, Role::Protected)) => {
                (Some(other.report(&other_dev.id, grown)), Some(own))
            }
        };
        let order = &case.orders[i];
        events.push(order_event(
            case,
            order,
            &episode,
            transition,
            at,
            Some(positions),
        ));
    }
}

fn open_onset(case: &CaseState, i: usize) -> Option<Timestamp> {
    case.orders[i].track.open.as_ref().map(|e| e.onset)
}

fn open_kind(case: &CaseState, i: usize) -> Option<EventKind> {
    case.orders[i].track.open.as_ref().map(|e| e.kind)
}

/// Clears order `i`'s open episode, if any.
fn close_order(
    case: &mut CaseState,
    i: usize,
    reason: ClearReason,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    if let Some((episode, transition)) = case.orders[i].track.close(reason) {
        events.push(order_event(
            case,
            &case.orders[i],
            &episode,
            transition,
            at,
            None,
        ));
    }
}

/// Opens an episode that is not decided fix by fix (curfew, unknown, GPS lost).
#[allow(clippy::too_many_arguments)]
fn open_order_episode(
    case: &mut CaseState,
    i: usize,
    kind: EventKind,
    onset: Timestamp,
    at: Timestamp,
    certainty: Option<Certainty>,
    positions: Option<(Option<PositionReport>, Option<PositionReport>)>,
    events: &mut Vec<Event>,
) {
    let order = &mut case.orders[i];
    let episode = OpenEpisode {
        id: EpisodeId::derive(&case.id, order.id.as_str(), kind.family(), onset),
        kind,
        onset,
        certainty,
        reported_distance_m: None,
    };
    if let Some((episode, transition)) = order.track.begin(episode) {
        events.push(order_event(
            case,
            &case.orders[i],
            &episode,
            transition,
            at,
            positions,
        ));
    }
}

/// Until when both positions of a contact ban's pair are young enough to judge.
fn pair_known_until(
    config: &EngineConfig,
    devices: &[Option<DeviceState>],
    case: &CaseState,
    i: usize,
) -> Timestamp {
    let CompiledRule::ContactBan { protected, .. } = case.orders[i].rule else {
        return Timestamp::MAX;
    };
    [case.offender, protected]
        .into_iter()
        .filter_map(|slot| devices.get(slot).and_then(Option::as_ref))
        .map(|dev| {
            let last = dev
                .accepted
                .map_or(case.watched_since, |s| s.ts)
                .max(case.watched_since.max(dev.watched_since));
            after(last, config.position_max_age_s)
        })
        .min()
        .unwrap_or(Timestamp::MAX)
}

/// An open proximity episode stays open when the pair becomes unknown:
/// losing sight of a breach does not end it.
fn open_position_unknown(
    case: &mut CaseState,
    i: usize,
    onset: Timestamp,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    if case.orders[i].track.open.is_none() {
        open_order_episode(
            case,
            i,
            EventKind::PositionUnknown,
            onset,
            at,
            None,
            None,
            events,
        );
    }
}

/// Opens or clears a curfew episode from the evidence at `at`.
fn curfew_deadlines(
    config: &EngineConfig,
    devices: &[Option<DeviceState>],
    case: &mut CaseState,
    i: usize,
    window_start: Timestamp,
    at: Timestamp,
    events: &mut Vec<Event>,
) {
    let offender = devices[case.offender].as_ref();
    let CompiledRule::Inclusion {
        grace_s, curfew, ..
    } = &case.orders[i].rule
    else {
        return;
    };
    let current = open_kind(case, i);
    let confirmed = curfew.is_confirmed_outside(config);
    let deadline = curfew
        .outside_since
        .map(|since| after(since.max(window_start), *grace_s));
    let certainty = curfew.outside;
    let home_since = open_onset(case, i).and_then(|onset| curfew.home_since(onset));

    // Outside, confirmed, past the grace period within the window.
    if let (true, Some(deadline)) = (confirmed, deadline) {
        if at >= deadline && current != Some(EventKind::CurfewBreach) {
            close_order(case, i, ClearReason::Resolved, at, events);
            let positions =
                offender.and_then(|d| Some((Some(d.accepted?.report(&d.id, 0.0)), None)));
            open_order_episode(
                case,
                i,
                EventKind::CurfewBreach,
                deadline,
                at,
                certainty,
                positions,
                events,
            );
            return;
        }
    }
    // Back inside, clear by the margin, for long enough.
    if current == Some(EventKind::CurfewBreach)
        && home_since.is_some_and(|since| at >= after(since, config.clear_min_s))
    {
        close_order(case, i, ClearReason::Resolved, at, events);
    }
    // No fix during the window is not compliance. Judged after a clearing,
    // so one look at an instant is as good as any number of looks.
    if case.orders[i].track.open.is_none() {
        let last_fix = offender
            .map_or(case.watched_since, DeviceState::fixed)
            .max(case.watched_since);
        let deadline = after(last_fix.max(window_start), config.gps_lost_after_s);
        if at >= deadline {
            open_order_episode(
                case,
                i,
                EventKind::GpsLost,
                deadline,
                at,
                None,
                None,
                events,
            );
        }
    }
}
