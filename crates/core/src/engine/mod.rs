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
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};
use smallvec::SmallVec;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use thiserror::Error;

use crate::config::EngineConfig;
use crate::decision::{disc_in_area, Assessment, Certainty};
use crate::episode::{ClearReason, EpisodeId, Event, EventKind, Phase, PositionReport, Succession};
use crate::geodesy::Ecef;
use crate::index::{OrderRef, PositionIndex, ZoneIndex};
use crate::intent::{LastReading, Movement, ProximityContext, Reading, TrackPoint, STANDING_MPS};
use crate::model::{
    Case, CaseId, DeviceId, Fix, GpsState, Input, OrderId, PlaceKind, RiskLevel, Role, Rule,
    Status, StrapState,
};
use crate::passage::{End, Line, Passage, Velocity};
use crate::patterns::{Darkness, HerPlace, News, PatternWatch, Sighting};
use crate::schedule::{schedule_time_zone, Schedule, ScheduleState};
use crate::track::{Observation, OpenEpisode, Opening, Track, TrackKinds, Transition};
use crate::validate::{check_device_roles, validate_case, CaseError, Problem, ValidationReport};
use crate::zone::CompiledZone;

mod rules;
mod slots;
mod state;
mod timers;

use rules::*;
use slots::Slots;
use state::*;
use timers::*;

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

/// A device's newest plausible position, with the first case it is in
/// and its wearer's role there: where a map shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LastPosition {
    pub device: DeviceId,
    pub case: CaseId,
    pub role: Role,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
    pub ts: Timestamp,
}

/// The shape of [`Engine::snapshot`]'s bytes. Bump it with any change to the
/// engine's state, so an old snapshot is refused rather than misread.
const SNAPSHOT_FORMAT: u32 = 6;

/// A snapshot [`Engine::restore`] cannot use.
#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("snapshot format {found} is not this engine's format {expected}: it was written by another kordon version")]
    Format { found: u32, expected: u32 },
    #[error("snapshot is damaged: {0}")]
    Damaged(#[from] postcard::Error),
}

/// The deterministic decision engine. See the module documentation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Engine {
    config: EngineConfig,
    #[serde(skip, default = "schedule_time_zone")]
    tz: TimeZone,
    /// Cases and devices by slot, shared with copies of the engine chunk
    /// by chunk until either side changes one ([`slots`]): a snapshot's
    /// copy holds the engine's thread for milliseconds, not for a clone
    /// of every case.
    cases: Slots<CaseState>,
    free_cases: Vec<usize>,
    case_slots: HashMap<CaseId, usize>,
    devices: Slots<DeviceState>,
    free_devices: Vec<usize>,
    device_slots: HashMap<DeviceId, usize>,
    /// Shared with copies of the engine: it changes only with the cases.
    zones: Arc<ZoneIndex>,
    positions: PositionIndex,
    /// When a device or an order must be looked at again, earliest first.
    /// An entry whose time is no longer its subject's `timer` is stale.
    timers: BinaryHeap<Reverse<(Timestamp, Subject)>>,
    /// Largest contact-ban warning radius, to size `bans_at` lookups.
    max_warning_radius_m: f64,
    /// The successions of orders and devices that went away, given back if
    /// they return, so that their episode ids are never reused.
    retired_orders: HashMap<(CaseId, OrderId), Succession>,
    retired_devices: HashMap<DeviceId, HealthSuccessions>,
    /// Fresh positions to ask for, until the driver takes them.
    #[serde(skip)]
    position_requests: Vec<PositionRequest>,
}

/// Ask `device` (a protected person's) for a fresh fix: the offender is
/// within her contact ban's warning radius of a position of hers that is
/// `request_position_after_s` old. It names nothing but her device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PositionRequest {
    pub device: DeviceId,
    /// The time of the fix that asked.
    pub at: Timestamp,
}

impl Engine {
    /// Drivers check `config` with [`EngineConfig::validate`] when they load
    /// it, so that a typo in a threshold is refused, not obeyed.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            tz: schedule_time_zone(),
            cases: Slots::default(),
            free_cases: Vec::new(),
            case_slots: HashMap::new(),
            devices: Slots::default(),
            free_devices: Vec::new(),
            device_slots: HashMap::new(),
            zones: Arc::default(),
            positions: PositionIndex::default(),
            timers: BinaryHeap::new(),
            max_warning_radius_m: 0.0,
            retired_orders: HashMap::new(),
            retired_devices: HashMap::new(),
            position_requests: Vec::new(),
        }
    }

    /// The whole state, as bytes [`Engine::restore`] turns back into an
    /// engine that behaves exactly as this one would from here on.
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&(SNAPSHOT_FORMAT, self)).expect("engine state always serialises")
    }

    pub fn restore(bytes: &[u8]) -> Result<Engine, SnapshotError> {
        let (found, rest): (u32, &[u8]) = postcard::take_from_bytes(bytes)?;
        if found != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format {
                found,
                expected: SNAPSHOT_FORMAT,
            });
        }
        Ok(postcard::from_bytes(rest)?)
    }

    /// Puts new thresholds in force (after a restart restored an engine
    /// that ran on others): every deadline is computed again from `now`.
    pub fn reconfigure(&mut self, config: EngineConfig, now: Timestamp) {
        self.config = config;
        self.timers.clear();
        for (slot, dev) in self.devices.iter_mut().enumerate() {
            if let Some(dev) = dev {
                dev.timer = None;
                let deadline = device_deadline(dev, &self.config);
                arm(
                    &mut self.timers,
                    &mut dev.timer,
                    deadline,
                    Subject::Device(slot),
                );
            }
        }
        for (slot, case) in self.cases.iter_mut().enumerate() {
            if let Some(case) = case {
                for i in 0..case.orders.len() {
                    case.orders[i].timer = None;
                    rearm_order(
                        &mut self.timers,
                        &self.config,
                        &self.tz,
                        &self.devices,
                        case,
                        slot,
                        i,
                        now,
                        None,
                    );
                }
            }
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

    /// The cases a device is part of (a victim device may be in several).
    pub fn cases_of(&self, device: &str) -> Vec<CaseId> {
        self.memberships_of(device)
            .into_iter()
            .map(|(case, _)| case)
            .collect()
    }

    /// The cases a device is part of, each with the role its wearer has
    /// there (an offender's bracelet, or a protected person's device). On
    /// the stack: it is asked for every fix, and a device is almost always
    /// in one case.
    pub fn memberships_of(&self, device: &str) -> SmallVec<[(CaseId, Role); 2]> {
        let Some(dev) = self
            .device_slots
            .get(device)
            .and_then(|&slot| self.devices[slot].as_ref())
        else {
            return SmallVec::new();
        };
        dev.memberships
            .iter()
            .filter_map(|&(case, role)| self.cases[case].as_ref().map(|c| (c.id.clone(), role)))
            .collect()
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
                warning_m,
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
                self.max_warning_radius_m = self.max_warning_radius_m.max(*warning_m);
            }
            // An order kept through the edit keeps its episode, and a
            // contact ban what its last reading of intent left (the
            // police's wait and its clock go on).
            let kept = previous.as_mut().and_then(|(_, old)| {
                let i = old
                    .orders
                    .iter()
                    .position(|o| o.id == order.id && o.rule.same_kind(&order.rule))?;
                let last = last_reading(&mut old.orders[i].rule).map(|l| *l);
                Some((std::mem::take(&mut old.orders[i].track), last))
            });
            if let (Some((_, Some(kept))), Some(last)) = (&kept, last_reading(&mut rule)) {
                *last = *kept;
            }
            let track = kept.map(|(track, _)| track).unwrap_or_else(|| {
                let key = (case.id.clone(), order.id.clone());
                Track::after(self.retired_orders.remove(&key).unwrap_or_default())
            });
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
                activation_judged: None,
                position_requested: None,
                position_wanted: None,
            });
        }
        let watched_since = previous
            .as_ref()
            .map(|(_, old)| old.watched_since)
            .unwrap_or(now);
        let (her_places, his_address) = known_places(&case, &orders);
        let patterns = match &mut previous {
            Some((_, old)) => {
                std::mem::take(&mut old.patterns).with_places(her_places, his_address)
            }
            None => PatternWatch::new(her_places, his_address),
        };
        if let Some((_, old)) = &mut previous {
            self.retire_orders(old, now, &mut events);
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
            patterns,
        };
        for (bounds, at) in zone_entries(slot, &state) {
            Arc::make_mut(&mut self.zones).insert(bounds, at);
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
        // Health episodes are per case: a device that joins the case brings
        // its open ones along, a device that leaves takes them away.
        let no_members = Vec::new();
        let old_members = previous
            .as_ref()
            .map_or(&no_members, |(_, old)| &old.members);
        if let Some(state) = self.cases[slot].as_ref() {
            for (members, others, phase, reason) in [
                (
                    old_members,
                    &state.members,
                    Phase::Cleared,
                    Some(ClearReason::OrderWithdrawn),
                ),
                (&state.members, old_members, Phase::Opened, None),
            ] {
                for &(d, role) in members.iter().filter(|m| !others.contains(m)) {
                    let Some(dev) = self.devices[d].as_ref() else {
                        continue;
                    };
                    for (kind, onset) in open_health(dev) {
                        events.push(health_event(
                            state, dev, role, kind, onset, phase, now, reason,
                        ));
                    }
                }
            }
        }
        if let Some((_, old)) = &previous {
            self.drop_orphan_devices(&old.members);
        }
        self.add_positions(&mut events);
        Ok(events)
    }

    /// Removes a case; its open episodes, health ones included, are cleared.
    pub fn remove_case(&mut self, id: &CaseId, now: Timestamp) -> Vec<Event> {
        let mut events = Vec::new();
        let Some((slot, mut old)) = self.detach_case(id) else {
            return events;
        };
        self.retire_orders(&mut old, now, &mut events);
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

    /// Clears the open episodes of `old`'s orders that no longer exist
    /// (all of them, for a removed case: an upsert has taken the tracks of
    /// those it keeps), keeping their successions.
    fn retire_orders(&mut self, old: &mut CaseState, now: Timestamp, events: &mut Vec<Event>) {
        for i in 0..old.orders.len() {
            close_order(old, i, ClearReason::OrderWithdrawn, now, events);
            let order = &old.orders[i];
            if order.track.succession != Succession::default() {
                self.retired_orders
                    .insert((old.id.clone(), order.id.clone()), order.track.succession);
            }
        }
    }

    /// Takes a case out of the tables, leaving its slot empty but reserved.
    fn detach_case(&mut self, id: &CaseId) -> Option<(usize, CaseState)> {
        let slot = self.case_slots.remove(id)?;
        let old = self.cases[slot].take()?;
        for (bounds, at) in zone_entries(slot, &old) {
            Arc::make_mut(&mut self.zones).remove(bounds, at);
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
                let mut dev = DeviceState::new(id.clone(), now);
                dev.successions = self.retired_devices.remove(id).unwrap_or_default();
                self.devices[slot] = Some(dev);
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
                    if dev.successions != HealthSuccessions::default() {
                        self.retired_devices.insert(dev.id.clone(), dev.successions);
                    }
                    self.device_slots.remove(&dev.id);
                    self.positions.remove(slot);
                    self.free_devices.push(slot);
                }
            }
        }
    }

    /// A device is either an offender or a protected person's, never both.
    fn check_roles(&self, case: &Case, report: &mut ValidationReport) {
        check_device_roles(case, |device| self.memberships_of(device.as_str()), report);
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
                    last_reading: LastReading::default(),
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

    fn slot_of(&self, device: &DeviceId) -> Result<usize, InputError> {
        self.device_slots
            .get(device.as_str())
            .copied()
            .ok_or_else(|| InputError::UnknownDevice(device.clone()))
    }

    fn gps_lost_pending(&self, slot: usize) -> bool {
        self.devices[slot]
            .as_ref()
            .is_some_and(DeviceState::gps_lost_pending)
    }

    /// The fresh positions kordon should ask for now, decided by the inputs
    /// since the last call; the driver sends each to its device.
    pub fn take_position_requests(&mut self) -> Vec<PositionRequest> {
        std::mem::take(&mut self.position_requests)
    }

    /// Takes one position fix.
    pub fn ingest_fix(&mut self, fix: &Fix) -> Result<FixOutcome, InputError> {
        check_fix(fix)?;
        let slot = self.slot_of(&fix.device)?;
        let gps_was_pending = self.gps_lost_pending(slot);
        let mut outcome = self.take_fix(slot, fix);
        self.requeue_device(slot, gps_was_pending);
        if let Ok(outcome) = &mut outcome {
            self.watch_going_dark(&mut outcome.events);
            self.add_positions(&mut outcome.events);
        }
        outcome
    }

    fn take_fix(&mut self, slot: usize, fix: &Fix) -> Result<FixOutcome, InputError> {
        let mut events = Vec::new();
        let heard = Heard {
            ts: fix.ts,
            strap: fix.strap,
            battery_pct: fix.battery_pct,
            charging: None,
            gps: None,
        };
        self.heard_from(slot, heard, &mut events);

        let Some(dev) = self.devices[slot].as_mut() else {
            return Err(InputError::UnknownDevice(fix.device.clone()));
        };
        if dev.is_duplicate(fix) {
            return Ok(FixOutcome {
                disposition: Disposition::Duplicate,
                events,
            });
        }
        dev.note_taken(fix);
        let sample = Sample {
            ts: fix.ts,
            lat: fix.lat,
            lon: fix.lon,
            accuracy_m: fix.accuracy_m,
            ecef: Ecef::from_lat_lon(fix.lat, fix.lon),
        };
        let usable = fix.accuracy_m <= self.config.max_usable_accuracy_m;
        if dev.latest_fix.is_some_and(|latest| fix.ts < latest) {
            let plausible = !dev.implausible_among_neighbours(&sample, &self.config);
            dev.history.remember(fix, usable && plausible);
            if fix.accuracy_m <= self.config.max_usable_accuracy_m {
                self.judge_late(slot, &sample, &mut events);
            }
            return Ok(FixOutcome {
                disposition: Disposition::Late,
                events,
            });
        }
        dev.latest_fix = Some(fix.ts);
        dev.history.remember(fix, usable);
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
        if suspect {
            dev.history.distrust_latest();
        } else {
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
            dev.successions.gps_lost.ended(onset, fix.ts);
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
        // How fast it was going when last accepted: from the fix before
        // that one, noise granted. Then the farthest it could have got.
        let was_going = dev
            .history
            .entries()
            .filter(|e| e.ts < accepted.ts)
            .max_by_key(|e| e.ts)
            .map_or(max, |e| implied_speed_mps(&e.sample(), &accepted));
        let dt = seconds_between(accepted.ts, sample.ts);
        let reachable =
            (was_going * dt + 0.5 * self.config.max_acceleration_mps2 * dt * dt).min(max * dt);
        let moved =
            (accepted.ecef.distance_m(&sample.ecef) - accepted.accuracy_m - sample.accuracy_m)
                .max(0.0);
        if moved <= reachable {
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
        // A zone is judged when the fix, or the line from his previous fix
        // to it (`crate::passage`), could reach it.
        let offender = dev
            .memberships
            .iter()
            .any(|(_, role)| *role == Role::Offender);
        let line_m = if suspect || !offender || self.config.between_fixes_note_gap_s == 0 {
            0.0
        } else {
            dev.line_to(sample, &self.config)
                .map_or(0.0, |line| line.reach_m())
        };
        let margin = self.config.clear_margin_m + sample.accuracy_m + line_m;
        for &(case_slot, role) in &dev.memberships {
            let Some(case) = self.cases[case_slot].as_mut() else {
                continue;
            };
            if !suspect {
                match role {
                    Role::Offender => watch_patterns(&self.config, &self.tz, case, sample, events),
                    Role::Protected => {
                        case.patterns
                            .note_hers(&self.config.patterns, sample.ts, sample.ecef)
                    }
                }
            }
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
                if let Some(her) = case.orders[i].position_wanted.take() {
                    if let Some(her) = self.devices.get(her).and_then(Option::as_ref) {
                        if !self.position_requests.iter().any(|r| r.device == her.id) {
                            self.position_requests.push(PositionRequest {
                                device: her.id.clone(),
                                at: sample.ts,
                            });
                        }
                    }
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
                    context: None,
                    between_fixes: None,
                    pattern: None,
                });
            }
        }
    }

    /// Takes a heartbeat or status message.
    ///
    /// Only the device must be known: a status reports the strap, the most
    /// urgent thing a bracelet can say, so a reading no device can make (a
    /// battery above 100 %) is left out instead of refusing the rest.
    pub fn ingest_status(&mut self, status: &Status) -> Result<Vec<Event>, InputError> {
        let slot = self.slot_of(&status.device)?;
        let battery_pct = status.battery_pct.filter(|b| *b <= 100);
        let gps_was_pending = self.gps_lost_pending(slot);
        let mut events = Vec::new();
        let heard = Heard {
            ts: status.ts,
            strap: status.strap,
            battery_pct,
            charging: status.charging,
            gps: status.gps,
        };
        self.heard_from(slot, heard, &mut events);
        self.requeue_device(slot, gps_was_pending);
        self.watch_going_dark(&mut events);
        self.add_positions(&mut events);
        Ok(events)
    }

    /// His bracelet going dark near her places is a pattern
    /// ([`crate::patterns`]): each GPS-lost, offline or tamper episode of
    /// an offender that opened is shown to his case's patterns with his
    /// last fix before it. The one place health episodes reach them.
    fn watch_going_dark(&mut self, events: &mut Vec<Event>) {
        let went_dark = |e: &Event| {
            e.phase == Phase::Opened
                && e.role == Role::Offender
                && matches!(
                    e.kind,
                    EventKind::GpsLost | EventKind::DeviceOffline | EventKind::Tamper
                )
        };
        let dark: SmallVec<[(usize, Timestamp, Darkness); 2]> = events
            .iter()
            .filter(|e| went_dark(e))
            .filter_map(|e| {
                let case = *self.case_slots.get(&e.case)?;
                let dev = self.devices[self.slot_of(&e.device).ok()?].as_ref()?;
                let last = dev
                    .history
                    .entries()
                    .filter(|r| r.trusted && r.ts <= e.onset)
                    .max_by_key(|r| r.ts)?;
                let dark = Darkness {
                    episode: e.id,
                    onset: e.onset,
                    last_fix: last.ts,
                    last_seen: last.sample().ecef,
                };
                Some((case, e.at, dark))
            })
            .collect();
        for (slot, at, dark) in dark {
            let Some(case) = self.cases[slot].as_mut() else {
                continue;
            };
            let news = case
                .patterns
                .went_dark(&self.config.patterns, &self.tz, &dark);
            events.extend(news.into_iter().map(|n| pattern_event(case, n, at)));
        }
    }

    /// Every alert carries the latest known positions of both parties where
    /// they exist, each with its own time (so its age shows): the one place
    /// this is decided. Events decided without one (device health, tamper,
    /// curfews and zones for hers, a clearing by time) get the newest
    /// accepted position of the case's offender and of the protected person
    /// concerned: the contact ban's, the device's own, or the case's first.
    fn add_positions(&self, events: &mut [Event]) {
        for event in events {
            let Some(case) = self
                .case_slots
                .get(&event.case)
                .and_then(|&slot| self.cases[slot].as_ref())
            else {
                continue;
            };
            if event.offender.is_none() {
                event.offender = self.latest_report(case.offender);
            }
            if event.protected.is_none() {
                let ban = event
                    .order
                    .as_ref()
                    .and_then(|id| case.orders.iter().find(|o| &o.id == id))
                    .and_then(|o| match o.rule {
                        CompiledRule::ContactBan { protected, .. } => Some(protected),
                        _ => None,
                    });
                let own = (event.role == Role::Protected)
                    .then(|| self.device_slots.get(&event.device).copied())
                    .flatten();
                let first = case
                    .members
                    .iter()
                    .find(|(_, role)| *role == Role::Protected)
                    .map(|(slot, _)| *slot);
                if let Some(slot) = ban.or(own).or(first) {
                    event.protected = self.latest_report(slot);
                }
            }
        }
    }

    fn latest_report(&self, slot: usize) -> Option<PositionReport> {
        let dev = self.devices.get(slot)?.as_ref()?;
        Some(dev.accepted?.report(&dev.id, 0.0))
    }

    /// An operator who has checked the bracelet resolves its tamper alarm at
    /// `at`: the one way a tamper episode ends. A tamper reported after
    /// this is a new episode. Nothing happens if none is open.
    pub fn resolve_tamper(
        &mut self,
        device: &DeviceId,
        at: Timestamp,
    ) -> Result<Vec<Event>, InputError> {
        let slot = self.slot_of(device)?;
        let mut events = Vec::new();
        let Some(dev) = self.devices[slot].as_mut() else {
            return Err(InputError::UnknownDevice(device.clone()));
        };
        if let Some(onset) = dev.tamper.take() {
            let at = at.max(onset);
            dev.successions.tamper.ended(onset, at);
            let dev = &*dev;
            fan_out(
                &self.cases,
                dev,
                EventKind::Tamper,
                onset,
                Phase::Cleared,
                at,
                &mut events,
            );
            for event in &mut events {
                event.reason = Some(ClearReason::OperatorResolved);
            }
        }
        self.add_positions(&mut events);
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
    fn heard_from(&mut self, slot: usize, heard: Heard, events: &mut Vec<Event>) {
        let Heard {
            ts,
            strap,
            battery_pct,
            charging,
            gps,
        } = heard;
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
            dev.successions.offline.ended(onset, now);
            changes.push((EventKind::DeviceOffline, onset, Phase::Cleared));
        }
        // A message older than the newest says nothing about the strap,
        // battery or GPS now; but a cut strap is news whenever it was reported.
        let (strap, battery_pct, charging, gps) = if current {
            (strap, battery_pct, charging, gps)
        } else {
            (
                strap.filter(|s| *s == StrapState::Tampered),
                None,
                None,
                None,
            )
        };
        // A fix says nothing of charging: the last status's word holds, so
        // a battery episode does not flap between fixes and statuses.
        let charging = if current {
            if charging.is_some() {
                dev.charging = charging;
            }
            dev.charging
        } else {
            None
        };
        // "GPS ok" ends a GPS-lost episode as a fix would (see `fixed`).
        if gps == Some(GpsState::Ok) {
            dev.gps_ok = Some(ts);
            if let Some(onset) = dev
                .gps_lost
                .take_if(|onset| after(ts, config.gps_lost_after_s) > *onset)
            {
                dev.successions.gps_lost.ended(onset, now);
                changes.push((EventKind::GpsLost, onset, Phase::Cleared));
            }
        }
        match strap {
            Some(StrapState::Tampered) if dev.tamper.is_none() => {
                // Found when it arrives (`now`): a cut strap reported late
                // still opens, after any tamper that has ended.
                if let Some(onset) = dev.successions.tamper.admit(ts, now) {
                    dev.tamper = Some(onset);
                    changes.push((EventKind::Tamper, onset, Phase::Opened));
                }
            }
            // A strap reported closed again does not end a tamper: it may
            // be flapping, or closed on a bracelet taken off. An operator
            // who has checked resolves it (`resolve_tamper`); until then
            // every flap is this one episode.
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
                if let Some(onset) = dev.successions.battery.admit(ts, now) {
                    dev.battery = Some((kind, onset));
                    changes.push((kind, onset, Phase::Opened));
                }
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
                    dev.successions.battery.ended(onset, now);
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
        self.watch_going_dark(&mut events);
        self.add_positions(&mut events);
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
        // Her position counts only while it is young enough to judge by.
        let max_age = f64::from(self.config.position_max_age_s);
        let nearby = self
            .devices_near(lat, lon, self.max_warning_radius_m)
            .into_iter()
            .filter(|near| seconds_between(near.ts, at) <= max_age);
        for near in nearby {
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
    /// Every device's newest plausible position (an engine restored from a
    /// snapshot has them before any device reports again).
    pub fn last_positions(&self) -> Vec<LastPosition> {
        self.devices
            .iter()
            .flatten()
            .filter_map(|dev| {
                let s = dev.accepted?;
                let &(case, role) = dev.memberships.first()?;
                let case = self.cases[case].as_ref()?.id.clone();
                Some(LastPosition {
                    device: dev.id.clone(),
                    case,
                    role,
                    lat: s.lat,
                    lon: s.lon,
                    accuracy_m: s.accuracy_m,
                    ts: s.ts,
                })
            })
            .collect()
    }

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

/// Refuses what cannot be a position. The engine applies it to every fix;
/// drivers call it to refuse a payload before it reaches the engine's thread.
pub fn check_fix(fix: &Fix) -> Result<(), InputError> {
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
