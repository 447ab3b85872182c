//! The alert desk: turns the engine's events into messages for each
//! audience, keeps every alert until it is acknowledged, and escalates the
//! ones that need a police unit or ask for action ([`crate::attention`])
//! when no one acknowledges them in time.
//!
//! Like the engine it is a state machine without IO or clock: events, acks
//! and `now` go in, [`Outbound`] messages come out. The routing rules, which
//! are privacy rules, live in [`AlertDesk::route`]:
//!
//! | audience | gets |
//! | --- | --- |
//! | monitoring room | everything, with both positions, each message saying whether it asks for action ([`crate::attention`]) |
//! | police (JSON and CAP) | episodes that need a unit: proximity and zone breaches, curfew breaches and tamper in high-risk cases; then every later change of those episodes |
//! | protected person's device | warnings about the offender (proximity, zone breach, tamper; his bracelet offline in a high-risk case when he was last seen within her warning radius, or once it has lasted `health_action_after_s`), her own battery, her own device without a position for `health_action_after_s`; never a position, distance or direction |
//! | offender's bracelet | static zones only (exclusion zones, curfew); nothing derived from the victim |
//! | case coordinators | escalations: police alerts, and alerts asking for action, unacknowledged for `escalate_after_s` |
//!
//! An acknowledgement covers the level it was given at ([`crate::Level`]):
//! when an alert rises (a warning becomes a breach, a possible breach
//! certain) it demands attention again, needs a new acknowledgement, and
//! its escalation clock starts again (see `AlertRecord::demand_attention_again`).

use std::collections::{BTreeSet, HashMap, VecDeque};

use jiff::Timestamp;
use kordon_core::geodesy::distance_m;
use kordon_core::{
    Case, CaseId, Certainty, Coordinator, DeviceId, EpisodeId, Event, EventKind, Language, Phase,
    Reading, RiskLevel, Role, Rule,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::attention::{self, Attention};
use crate::cap::{self, CapThread};
use crate::handling::Handling;
use crate::message::{
    Acknowledgement, AlertEvent, AlertMessage, CoordinatorNotice, DeviceWarning, Level,
    PatternMessage, Position,
};
use crate::{texts, topics};

/// How the desk routes and escalates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertSettings {
    /// CAP `sender`: no spaces, commas or `&<`.
    pub sender: String,
    /// A police alert not acknowledged within this is escalated.
    pub escalate_after_s: u32,
    /// Whether bracelets are told when they near or enter a static zone.
    pub offender_zone_warnings: bool,
    /// Closed alerts kept for `/api/v1/alerts` after they are acknowledged.
    pub recent_limit: usize,
    /// A cleared alert nobody acknowledged is forgotten this many hours
    /// after it cleared (it stays in the journal), so that the desk's
    /// memory stays bounded on a day nobody acknowledges anything.
    pub forget_cleared_after_h: u32,
    /// The police hear an update of an episode only when it is material:
    /// a change of level, its end, or a move of at least this many metres
    /// (of the offender, or of the distance between the parties) ...
    pub police_update_min_move_m: f64,
    /// ... and then at most once in this many seconds.
    pub police_update_min_interval_s: u32,
    /// GPS lost or a device offline this long (twice this in a low-risk
    /// case) asks the monitoring room for action, and warns her where it
    /// degrades her protection (see [`crate::attention`]).
    pub health_action_after_s: u32,
    /// A contact-ban breach asks the room for action once it has been
    /// certain this long (the police and her device hear of it at once).
    pub proximity_action_after_s: u32,
    /// A breach of a case whose earlier breach asked for action, open or
    /// cleared less than this long ago, joins that incident.
    pub incident_join_s: u32,
    /// Whether her device hears of the offender inside her contact ban's
    /// warning radius. Off by default: most such episodes end without a
    /// contact and teach her to ignore her phone; she hears of the breach.
    pub tell_her_of_warnings: bool,
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            sender: "kordon@localhost".to_string(),
            escalate_after_s: 120,
            offender_zone_warnings: true,
            recent_limit: 1000,
            forget_cleared_after_h: 24,
            police_update_min_move_m: 100.0,
            police_update_min_interval_s: 60,
            health_action_after_s: 1800,
            proximity_action_after_s: 60,
            incident_join_s: 1800,
            tell_her_of_warnings: false,
        }
    }
}

impl AlertSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.sender.is_empty()
            || self
                .sender
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, ',' | '&' | '<'))
        {
            return Err(format!(
                "alerts.sender `{}` must be non-empty without spaces, commas, & or < (CAP 1.2)",
                self.sender
            ));
        }
        if self.escalate_after_s == 0 {
            return Err("alerts.escalate_after_s must be at least 1".into());
        }
        if !(self.police_update_min_move_m.is_finite() && self.police_update_min_move_m >= 0.0) {
            return Err(format!(
                "alerts.police_update_min_move_m = {} must be a distance of 0 m or more",
                self.police_update_min_move_m
            ));
        }
        Ok(())
    }
}

/// One message to publish (QoS 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// What an alert record says about itself, for the API. (Read back only
/// where a cluster relays it to another instance's consoles: what is not
/// written, the desk's own bookkeeping, reads back empty.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The latest state of the alert, as last published.
    #[serde(flatten)]
    pub latest: AlertMessage,
    /// When kordon first published it.
    pub raised_at: Timestamp,
    /// Since when it demands attention at its current level: its first
    /// publication, or its last rise in level (warning to breach, possible
    /// to certain). Escalation and time to acknowledge count from here.
    pub attention_since: Timestamp,
    pub open: bool,
    pub needs_police: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<Timestamp>,
    /// The acknowledgement of its current level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<Acknowledgement>,
    /// Acknowledgements of lower levels it has since risen above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_acknowledgements: Vec<Acknowledgement>,
    /// Events published about it so far.
    pub updates: u32,
    /// Since when a contact-ban breach has been certain (the time of the
    /// first certain evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certain_since: Option<Timestamp>,
    /// Notes, resolution, escalation by hand, the police's acknowledgement.
    #[serde(flatten)]
    pub handling: Handling,
    #[serde(skip)]
    pub(crate) cap: Option<CapThread>,
    /// What the police were last told, so that they hear material changes
    /// only.
    #[serde(skip)]
    pub(crate) police_told: PoliceTold,
    /// The kind each wearer was last told about, so a warning that only
    /// changes distance does not buzz a device again.
    #[serde(skip)]
    told_protected: HashMap<DeviceId, Option<EventKind>>,
    #[serde(skip)]
    told_offender: Option<EventKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AckError {
    #[error("no alert with id `{0}`")]
    UnknownAlert(String),
    #[error("alert `{id}` was already acknowledged by {operator} at {at}")]
    AlreadyAcknowledged {
        id: String,
        operator: String,
        at: Timestamp,
    },
}

/// What the desk knows of a case for routing.
#[derive(Debug, Clone)]
struct CaseRouting {
    risk: RiskLevel,
    offender: DeviceId,
    /// Devices of all protected persons who carry one.
    protected_devices: Vec<DeviceId>,
    /// Contact ban order → the protected person's device.
    contact_bans: HashMap<String, Option<DeviceId>>,
    /// Static zones the bracelet may hear of (`Rule::warns_bracelet`).
    static_zones: BTreeSet<String>,
    coordinators: Vec<Coordinator>,
    /// The largest contact-ban warning radius: how near him is near her.
    warning_radius_m: Option<f64>,
    /// The language each wearer's device is written to in.
    languages: HashMap<DeviceId, Language>,
}

impl CaseRouting {
    fn language(&self, device: &DeviceId) -> Language {
        self.languages.get(device).copied().unwrap_or_default()
    }
}

impl CaseRouting {
    fn new(case: &Case) -> Self {
        let device_of = |person: &str| {
            case.protected
                .iter()
                .find(|p| p.id.as_str() == person)
                .and_then(|p| p.device.clone())
        };
        let mut contact_bans = HashMap::new();
        let mut static_zones = BTreeSet::new();
        let mut warning_radius_m: Option<f64> = None;
        for order in &case.orders {
            match &order.rule {
                Rule::ContactBan {
                    protected,
                    warning_radius_m: radius,
                    ..
                } => {
                    contact_bans.insert(order.id.to_string(), device_of(protected.as_str()));
                    warning_radius_m = Some(warning_radius_m.map_or(*radius, |r| r.max(*radius)));
                }
                rule if rule.warns_bracelet() => {
                    static_zones.insert(order.id.to_string());
                }
                _ => {}
            }
        }
        CaseRouting {
            risk: case.risk,
            offender: case.offender.device.clone(),
            protected_devices: case
                .protected
                .iter()
                .filter_map(|p| p.device.clone())
                .collect(),
            contact_bans,
            static_zones,
            coordinators: case.coordinators.clone(),
            warning_radius_m,
            languages: case
                .protected
                .iter()
                .filter_map(|p| Some((p.device.clone()?, p.language)))
                .chain([(case.offender.device.clone(), case.offender.language)])
                .collect(),
        }
    }
}

/// The desk's memory in [`AlertDesk::snapshot`].
#[derive(Serialize, Deserialize)]
struct DeskState {
    alerts: Vec<StoredAlert>,
    closed: Vec<EpisodeId>,
}

/// An [`AlertRecord`] with the fields the API does not show.
#[derive(Serialize, Deserialize)]
struct StoredAlert {
    latest: AlertMessage,
    raised_at: Timestamp,
    /// Absent in snapshots from before levels: `raised_at`.
    #[serde(default)]
    attention_since: Option<Timestamp>,
    open: bool,
    needs_police: bool,
    escalated_at: Option<Timestamp>,
    acknowledgement: Option<Acknowledgement>,
    #[serde(default)]
    earlier_acknowledgements: Vec<Acknowledgement>,
    updates: u32,
    #[serde(default)]
    certain_since: Option<Timestamp>,
    cap: Option<CapThread>,
    #[serde(default)]
    police_told: PoliceTold,
    told_protected: Vec<(DeviceId, Option<EventKind>)>,
    told_offender: Option<EventKind>,
    #[serde(default)]
    handling: Handling,
}

impl From<&AlertRecord> for StoredAlert {
    fn from(r: &AlertRecord) -> Self {
        let mut told_protected: Vec<_> = r
            .told_protected
            .iter()
            .map(|(device, kind)| (device.clone(), *kind))
            .collect();
        told_protected.sort_by(|a, b| a.0.cmp(&b.0));
        StoredAlert {
            latest: r.latest.clone(),
            raised_at: r.raised_at,
            attention_since: Some(r.attention_since),
            open: r.open,
            needs_police: r.needs_police,
            escalated_at: r.escalated_at,
            acknowledgement: r.acknowledgement.clone(),
            earlier_acknowledgements: r.earlier_acknowledgements.clone(),
            updates: r.updates,
            certain_since: r.certain_since,
            cap: r.cap.clone(),
            police_told: r.police_told,
            told_protected,
            told_offender: r.told_offender,
            handling: r.handling.clone(),
        }
    }
}

impl From<StoredAlert> for AlertRecord {
    fn from(s: StoredAlert) -> Self {
        AlertRecord {
            latest: s.latest,
            raised_at: s.raised_at,
            attention_since: s.attention_since.unwrap_or(s.raised_at),
            open: s.open,
            needs_police: s.needs_police,
            escalated_at: s.escalated_at,
            acknowledgement: s.acknowledgement,
            earlier_acknowledgements: s.earlier_acknowledgements,
            updates: s.updates,
            certain_since: s.certain_since,
            cap: s.cap,
            police_told: s.police_told,
            told_protected: s.told_protected.into_iter().collect(),
            told_offender: s.told_offender,
            handling: s.handling,
        }
    }
}

/// The last message of an episode the police heard: when, at what level,
/// and where things stood.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PoliceTold {
    at: Option<Timestamp>,
    level: Option<Level>,
    offender: Option<(f64, f64)>,
    distance_m: Option<f64>,
}

impl PoliceTold {
    /// What the police know once told `message`, after `self`: the highest
    /// level they were told since the positions were last lost sight of.
    pub(crate) fn after(&self, message: &AlertMessage, now: Timestamp) -> PoliceTold {
        let level = Level::of(message);
        let level = match self.level {
            Some(told) if message.distance_m.is_some() && !level.rose_from(told) => told,
            _ => level,
        };
        PoliceTold {
            at: Some(now),
            level: Some(level),
            offender: message.offender.as_ref().map(|p| (p.lat, p.lon)),
            distance_m: message.distance_m,
        }
    }

    /// Whether `message` changes what the police know enough to send it:
    /// every event but an update does; an update when it rises above the
    /// highest level they were told, when its positions went stale, or when
    /// things moved far enough and the last one is long enough ago. A fall
    /// (certain to possible, breach to warning) is not news for a patrol on
    /// its own: a position flickering on the alarm radius would send one
    /// every few seconds, and the clearing says when it is over.
    fn material(&self, message: &AlertMessage, now: Timestamp, settings: &AlertSettings) -> bool {
        let level = Level::of(message);
        let rose = self.level.is_none_or(|before| level.rose_from(before));
        // Positions gone stale under an open contact-ban alert (the engine
        // then reports neither certainty nor distance): a patrol must not
        // go on trusting a certain breach.
        let lost_sight = message.kind.family() == "proximity"
            && message.certainty.is_none()
            && message.distance_m.is_none()
            && self.distance_m.is_some();
        if message.event != AlertEvent::Updated || rose || lost_sight {
            return true;
        }
        let interval =
            jiff::SignedDuration::from_secs(i64::from(settings.police_update_min_interval_s));
        let due = self.at.is_none_or(|at| now.duration_since(at) >= interval);
        let moved = |a: Option<(f64, f64)>, b: Option<(f64, f64)>| match (a, b) {
            (Some((la, lo)), Some((lb, lob))) => distance_m(la, lo, lb, lob),
            _ => 0.0,
        };
        let offender = moved(
            self.offender,
            message.offender.as_ref().map(|p| (p.lat, p.lon)),
        );
        let distance = match (self.distance_m, message.distance_m) {
            (Some(a), Some(b)) => (a - b).abs(),
            _ => 0.0,
        };
        let far = offender.max(distance) >= settings.police_update_min_move_m;
        // Moves matter while he is in breach; once the evidence no longer
        // shows one (no certainty), the clearing is the next news.
        far && due && message.certainty.is_some()
    }
}

impl AlertRecord {
    /// The alert rose in level: a new demand for attention. An operator's
    /// acknowledgement of the lower level no longer covers it, and the
    /// escalation clock starts again, unless the police were already
    /// waiting for an acknowledgement (their clock keeps running).
    fn demand_attention_again(&mut self, police_waiting: bool, now: Timestamp) {
        if let Some(ack) = self.acknowledgement.take() {
            self.earlier_acknowledgements.push(ack);
        }
        self.handling.rose();
        self.latest.acknowledged = None;
        if !police_waiting {
            self.attention_since = now;
            self.escalated_at = None;
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct AlertDesk {
    settings: AlertSettings,
    cases: HashMap<CaseId, CaseRouting>,
    pub(crate) alerts: HashMap<EpisodeId, AlertRecord>,
    /// Alerts that are cleared and acknowledged, oldest first, to forget.
    closed: VecDeque<EpisodeId>,
    /// Alerts changed since [`AlertDesk::take_changed`] was last asked.
    changed: Vec<EpisodeId>,
}

impl AlertDesk {
    pub fn new(settings: AlertSettings) -> Self {
        AlertDesk {
            settings,
            cases: HashMap::new(),
            alerts: HashMap::new(),
            closed: VecDeque::new(),
            changed: Vec::new(),
        }
    }

    /// Everything the desk remembers of alerts, as JSON (alert messages
    /// leave optional fields out, which only a self-describing format reads
    /// back). Case routing is not included: it follows from the cases.
    pub fn snapshot(&self) -> Vec<u8> {
        let state = DeskState {
            alerts: self.alerts.values().map(StoredAlert::from).collect(),
            closed: self.closed.iter().copied().collect(),
        };
        serde_json::to_vec(&state).expect("desk state always serialises")
    }

    /// A desk as it was at [`AlertDesk::snapshot`], routing for `cases`.
    pub fn restore<'a>(
        settings: AlertSettings,
        cases: impl IntoIterator<Item = &'a Case>,
        snapshot: &[u8],
    ) -> Result<AlertDesk, serde_json::Error> {
        let state: DeskState = serde_json::from_slice(snapshot)?;
        let mut desk = AlertDesk::new(settings);
        for case in cases {
            desk.upsert_case(case);
        }
        desk.alerts = state
            .alerts
            .into_iter()
            .map(|stored| (stored.latest.id, AlertRecord::from(stored)))
            .collect();
        desk.closed = state.closed.into();
        Ok(desk)
    }

    /// The alerts changed since the last call (raised, updated,
    /// acknowledged, escalated, noted, resolved), each once, for the
    /// dashboard's live stream.
    pub fn take_changed(&mut self) -> Vec<EpisodeId> {
        let mut changed = std::mem::take(&mut self.changed);
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    pub(crate) fn touch(&mut self, id: EpisodeId) {
        self.changed.push(id);
    }

    pub fn settings(&self) -> &AlertSettings {
        &self.settings
    }

    pub fn upsert_case(&mut self, case: &Case) {
        self.cases.insert(case.id.clone(), CaseRouting::new(case));
    }

    /// Call after the engine's `remove_case`, with the events it returned
    /// already routed: they need the case's routing.
    pub fn remove_case(&mut self, id: &CaseId) {
        self.cases.remove(id);
    }

    /// Whether an alert, as the engine's `event` reports it, needs a police
    /// unit now: the one rule, also for reports that read the journal.
    /// Breaches a unit can act on do, except a contact-ban breach while he
    /// passes at speed or travels with her (its `context` reading,
    /// [`kordon_core::intent`]): the room sees it at once, the police when a
    /// later fix reads otherwise (he slows near her, they get off together).
    /// A breach seen only between two fixes ([`kordon_core::passage`]) is
    /// the room's: he was past when it was found, and a later fix that
    /// shows it pages them.
    pub fn needs_police(event: &Event, risk: RiskLevel) -> bool {
        if event.between_fixes.is_some() {
            return false;
        }
        let reading = event.context.as_ref().map(|c| c.reading);
        match event.kind {
            EventKind::ProximityBreach => !reading.is_some_and(Reading::waits_for_police),
            EventKind::ZoneBreach => true,
            EventKind::CurfewBreach | EventKind::Tamper => risk == RiskLevel::High,
            _ => false,
        }
    }

    /// Routes one engine event, decided at `now`.
    pub fn route(&mut self, event: &Event, now: Timestamp) -> Vec<Outbound> {
        if event.kind == EventKind::Pattern {
            return self.route_pattern(event);
        }
        let Some(case) = self.cases.get(&event.case) else {
            // The engine only raises events for cases it holds, and the
            // desk is told of every case first; keep the alert regardless.
            let message = AlertMessage::from_event(event, RiskLevel::High);
            return vec![json(topics::MONITORING, &message)];
        };
        let mut message = AlertMessage::from_event(event, case.risk);
        let previous = self.alerts.get(&event.id);
        let certain_since = previous
            .and_then(|r| r.certain_since)
            .or((message.kind == EventKind::ProximityBreach
                && message.certainty == Some(Certainty::Certain))
            .then_some(message.ts));
        let asked_before = previous.is_some_and(|r| r.latest.attention == Attention::Action);
        message.attention = if asked_before {
            // Once an alert asks for action it keeps asking until it ends.
            Attention::Action
        } else {
            let context = self.context(case, &message, certain_since, now);
            attention::attention(&message, context, now, self.durations())
        };
        if event.phase == Phase::LateBreach {
            return vec![json(topics::MONITORING, &message)];
        }
        let mut out = vec![json(topics::MONITORING, &message)];
        self.changed.push(event.id);

        let record = self.alerts.entry(event.id).or_insert_with(|| AlertRecord {
            latest: message.clone(),
            raised_at: now,
            attention_since: now,
            open: true,
            needs_police: false,
            escalated_at: None,
            acknowledgement: None,
            earlier_acknowledgements: Vec::new(),
            updates: 0,
            certain_since: None,
            cap: None,
            police_told: PoliceTold::default(),
            told_protected: HashMap::new(),
            told_offender: None,
            handling: Handling::default(),
        });
        let police_waiting = record.needs_police && record.acknowledgement.is_none();
        if Level::of(&message).rose_from(Level::of(&record.latest)) {
            record.demand_attention_again(police_waiting, now);
        }
        if message.attention == Attention::Action && !asked_before {
            record.attention_since = now;
        }
        record.certain_since = certain_since;
        record.latest = AlertMessage {
            acknowledged: record.acknowledgement.clone(),
            police_acknowledged: record.handling.police_acknowledgement.clone(),
            ..message.clone()
        };
        record.updates += 1;
        record.open = event.phase != Phase::Cleared;

        // An episode the police never heard of does not reach them by its
        // clearing (a car that passed her and is gone).
        let pages = event.phase != Phase::Cleared && Self::needs_police(event, case.risk);
        if record.needs_police || pages {
            let first = !record.needs_police;
            record.needs_police = true;
            if first || record.police_told.material(&message, now, &self.settings) {
                record.police_told = record.police_told.after(&message, now);
                out.push(json(topics::POLICE, &message));
                let xml = cap::encode(&message, &mut record.cap, &self.settings.sender, now);
                out.push(Outbound {
                    topic: topics::POLICE_CAP.to_string(),
                    payload: xml.into_bytes(),
                });
            }
        }

        // Devices are told of what is happening now; a breach seen only
        // between two fixes is past when it is found.
        let mut recipients = if message.is_between_fixes() {
            Vec::new()
        } else {
            protected_recipients(case, &message, self.settings.tell_her_of_warnings)
        };
        if event.phase == Phase::Cleared {
            // Whoever was warned hears that it ended.
            for device in record.told_protected.keys() {
                if !recipients.contains(device) {
                    recipients.push(device.clone());
                }
            }
        }
        for device in recipients {
            let language = case.language(&device);
            let told = record.told_protected.entry(device.clone()).or_default();
            if let Some(warning) = device_warning(told, &message, Role::Protected, language) {
                out.push(json(&topics::device_warning(device.as_str()), &warning));
            }
        }
        let static_zone = event
            .order
            .as_ref()
            .is_some_and(|o| case.static_zones.contains(o.as_str()));
        let zone_kind = matches!(
            event.kind,
            EventKind::ZoneWarning | EventKind::ZoneBreach | EventKind::CurfewBreach
        );
        let now_at_a_fix = !message.is_between_fixes();
        if self.settings.offender_zone_warnings && static_zone && zone_kind && now_at_a_fix {
            if let Some(warning) = device_warning(
                &mut record.told_offender,
                &message,
                Role::Offender,
                case.language(&case.offender),
            ) {
                out.push(json(
                    &topics::device_warning(case.offender.as_str()),
                    &warning,
                ));
            }
        }
        if !record.open && record.acknowledgement.is_some() {
            self.closed.push_back(event.id);
        }
        self.forget_old();
        out
    }

    /// A pattern over days goes to the case's coordinators alone: not the
    /// room's to act on now, never the police's, never a device's.
    fn route_pattern(&self, event: &Event) -> Vec<Outbound> {
        let risk = self
            .cases
            .get(&event.case)
            .map_or(RiskLevel::High, |c| c.risk);
        PatternMessage::from_event(event, risk)
            .map(|m| json(&topics::case_patterns(event.case.as_str()), &m))
            .into_iter()
            .collect()
    }

    /// An operator acknowledges an alert.
    pub fn acknowledge(
        &mut self,
        id: &str,
        operator: &str,
        note: Option<String>,
        now: Timestamp,
    ) -> Result<(Acknowledgement, Vec<Outbound>), AckError> {
        let record = id
            .parse_episode()
            .and_then(|episode| self.alerts.get(&episode))
            .ok_or_else(|| AckError::UnknownAlert(id.to_string()))?;
        if let Some(ack) = &record.acknowledgement {
            return Err(AckError::AlreadyAcknowledged {
                id: id.to_string(),
                operator: ack.operator.clone(),
                at: ack.at,
            });
        }
        let ack = Acknowledgement {
            operator: operator.to_string(),
            note,
            at: now,
            time_to_ack_s: now
                .duration_since(record.attention_since)
                .as_secs_f64()
                .max(0.0),
            level: Some(Level::of(&record.latest)),
        };
        let out = self.acknowledge_with(id, ack.clone());
        Ok((ack, out))
    }

    /// Records `ack` as the acknowledgement of the alert's current level
    /// and tells those who follow it. The caller found the alert.
    pub(crate) fn acknowledge_with(&mut self, id: &str, ack: Acknowledgement) -> Vec<Outbound> {
        let Some(record) = id
            .parse_episode()
            .and_then(|episode| self.alerts.get_mut(&episode))
        else {
            return Vec::new();
        };
        record.latest.acknowledged = Some(ack.clone());
        self.changed.push(record.latest.id);
        let mut message = record.latest.clone();
        message.event = AlertEvent::Acknowledged;
        message.ts = ack.at;
        record.acknowledgement = Some(ack);
        let mut out = vec![json(topics::MONITORING, &message)];
        if record.needs_police {
            out.push(json(topics::POLICE, &message));
        }
        if !record.open {
            self.closed.push_back(record.latest.id);
        }
        self.forget_old();
        out
    }

    /// The risk level and coordinators of a case the desk routes for.
    pub(crate) fn case_contacts(&self, case: &CaseId) -> Option<(RiskLevel, Vec<Coordinator>)> {
        self.cases
            .get(case)
            .map(|c| (c.risk, c.coordinators.clone()))
    }

    /// Asks for action on conditions that lasted and warns her of those
    /// that degrade her protection; escalates alerts still open and
    /// unacknowledged `escalate_after_s` after they asked for attention
    /// (police alerts to the police and the case coordinators, other
    /// alerts asking for action to the coordinators); and forgets cleared
    /// ones nobody acknowledged within `forget_cleared_after_h`.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Outbound> {
        let keep =
            jiff::SignedDuration::from_hours(i64::from(self.settings.forget_cleared_after_h));
        self.alerts.retain(|_, r| {
            r.open || r.acknowledgement.is_some() || now.duration_since(r.latest.ts) < keep
        });
        let mut out = self.ask_for_action_on_lasting_conditions(now);
        out.extend(self.tell_her_what_lasts(now));
        let limit = jiff::SignedDuration::from_secs(i64::from(self.settings.escalate_after_s));
        let mut due: Vec<EpisodeId> = self
            .alerts
            .iter()
            .filter(|(_, r)| {
                r.open
                    && (r.needs_police || r.latest.attention == Attention::Action)
                    && r.acknowledgement.is_none()
                    && r.escalated_at.is_none()
                    && now.duration_since(r.attention_since) >= limit
            })
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        for id in due {
            self.changed.push(id);
            let record = self.alerts.get_mut(&id).expect("collected above");
            // Escalated as of its deadline, not of the tick that found it
            // due: whoever decides it (a cluster shard's next owner, on a
            // clock ticking at other moments) names the same escalation.
            let deadline = record.attention_since + limit;
            record.escalated_at = Some(deadline);
            let mut message = record.latest.clone();
            message.event = AlertEvent::Escalated;
            message.ts = deadline;
            // The police act on the alert already; an escalation is the
            // monitoring room's business and its coordinators'.
            out.push(json(topics::MONITORING, &message));
            if let Some(case) = self.cases.get(&message.case) {
                let notice = CoordinatorNotice {
                    id,
                    event: AlertEvent::Escalated,
                    kind: message.kind,
                    severity: message.severity,
                    case: message.case.clone(),
                    risk: case.risk,
                    ts: deadline,
                    unacknowledged_for_s: now.duration_since(record.attention_since).as_secs_f64(),
                    coordinators: case.coordinators.clone(),
                };
                out.push(json(
                    &topics::case_coordinators(message.case.as_str()),
                    &notice,
                ));
            }
        }
        out
    }

    fn durations(&self) -> attention::Durations {
        attention::Durations {
            health_action_after_s: self.settings.health_action_after_s,
            proximity_action_after_s: self.settings.proximity_action_after_s,
        }
    }

    /// What the attention policy reads about `message`'s alert besides the
    /// message itself.
    fn context(
        &self,
        case: &CaseRouting,
        message: &AlertMessage,
        certain_since: Option<Timestamp>,
        now: Timestamp,
    ) -> attention::Context {
        let incident_open = self.alerts.values().any(|r| {
            r.latest.case == message.case
                && r.latest.id != message.id
                && self.makes_incident(r, now)
        });
        context_given(case, message, certain_since, incident_open)
    }

    /// Whether `record` is a breach that asks for action, open or cleared
    /// less than `incident_join_s` ago: one that makes its case's other
    /// alerts part of an incident.
    fn makes_incident(&self, record: &AlertRecord, now: Timestamp) -> bool {
        let join = jiff::SignedDuration::from_secs(i64::from(self.settings.incident_join_s));
        record.latest.attention == Attention::Action
            && attention::makes_an_incident(record.latest.kind)
            && (record.open || now.duration_since(record.latest.ts) < join)
    }

    /// Publishes again, as asking for action, the open informational
    /// alerts that have come to ask for it by lasting (see
    /// [`crate::attention`]).
    fn ask_for_action_on_lasting_conditions(&mut self, now: Timestamp) -> Vec<Outbound> {
        let durations = self.durations();
        // Once per tick, not per alert: asked of every alert, the question
        // made the tick's cost grow with the square of the alerts held. An
        // informational alert never makes an incident itself, so its own
        // case being in the set means another alert of the case does.
        let incidents: std::collections::HashSet<&CaseId> = self
            .alerts
            .values()
            .filter(|r| self.makes_incident(r, now))
            .map(|r| &r.latest.case)
            .collect();
        let mut due: Vec<EpisodeId> = self
            .alerts
            .values()
            .filter(|r| r.open && r.latest.attention == Attention::Information)
            .filter(|r| {
                self.cases.get(&r.latest.case).is_some_and(|case| {
                    let incident_open = incidents.contains(&r.latest.case);
                    let context = context_given(case, &r.latest, r.certain_since, incident_open);
                    attention::attention(&r.latest, context, now, durations) == Attention::Action
                })
            })
            .map(|r| r.latest.id)
            .collect();
        due.sort_unstable();
        let mut out = Vec::new();
        for id in due {
            self.changed.push(id);
            let record = self.alerts.get_mut(&id).expect("collected above");
            record.latest.attention = Attention::Action;
            record.latest.event = AlertEvent::Updated;
            record.latest.ts = now;
            record.attention_since = now;
            record.updates += 1;
            out.push(json(topics::MONITORING, &record.latest));
        }
        out
    }

    /// Warns protected persons of open episodes that degrade their
    /// protection and have lasted `health_action_after_s`, once each.
    fn tell_her_what_lasts(&mut self, now: Timestamp) -> Vec<Outbound> {
        let after = jiff::SignedDuration::from_secs(i64::from(self.settings.health_action_after_s));
        let mut due: Vec<EpisodeId> = self
            .alerts
            .iter()
            .filter(|(_, r)| r.open && now.duration_since(r.latest.onset) >= after)
            .map(|(id, _)| *id)
            .collect();
        due.sort_unstable();
        let mut out = Vec::new();
        for id in due {
            let record = self.alerts.get_mut(&id).expect("collected above");
            let Some(case) = self.cases.get(&record.latest.case) else {
                continue;
            };
            for device in protected_recipients_when_lasting(case, &record.latest) {
                let told = record.told_protected.entry(device.clone()).or_default();
                if *told == Some(record.latest.kind) {
                    continue;
                }
                // As of the moment it had lasted long enough, not of the
                // tick that found it: whoever decides it names the same
                // warning, and her device is told once.
                let mut message = record.latest.clone();
                message.ts = record.latest.onset + after;
                let language = case.language(&device);
                if let Some(warning) = device_warning(told, &message, Role::Protected, language) {
                    out.push(json(&topics::device_warning(device.as_str()), &warning));
                }
            }
        }
        out
    }

    /// Open alerts and those not yet acknowledged, newest first, then up to
    /// `recent_limit` closed ones.
    /// Alerts unacknowledged past their deadline at `now`.
    pub fn overdue(&self, now: Timestamp) -> crate::Overdue {
        crate::Overdue::count(self.alerts.values(), self.settings.escalate_after_s, now)
    }

    pub fn alerts(&self) -> Vec<&AlertRecord> {
        let mut all: Vec<&AlertRecord> = self.alerts.values().collect();
        all.sort_by(|a, b| {
            let a_active = a.open || a.acknowledgement.is_none();
            let b_active = b.open || b.acknowledgement.is_none();
            b_active
                .cmp(&a_active)
                .then(b.raised_at.cmp(&a.raised_at))
                .then(a.latest.id.cmp(&b.latest.id))
        });
        all
    }

    pub fn alert(&self, id: &str) -> Option<&AlertRecord> {
        id.parse_episode()
            .and_then(|episode| self.alerts.get(&episode))
    }

    fn forget_old(&mut self) {
        while self.closed.len() > self.settings.recent_limit {
            if let Some(id) = self.closed.pop_front() {
                if self
                    .alerts
                    .get(&id)
                    .is_some_and(|r| !r.open && r.acknowledgement.is_some())
                {
                    self.alerts.remove(&id);
                }
            }
        }
    }
}

pub(crate) trait ParseEpisode {
    fn parse_episode(&self) -> Option<EpisodeId>;
}

impl ParseEpisode for str {
    fn parse_episode(&self) -> Option<EpisodeId> {
        serde_json::from_value(serde_json::Value::String(self.to_string())).ok()
    }
}

/// Which protected persons' devices hear of this event as it is raised.
///
/// She is told what changes what she should do, and nothing that would
/// teach her to ignore her phone: the contact ban that protects her once he
/// is *certainly* within its alarm radius (a possible breach is mostly a
/// disc grown on an old position, and her device is asked for a fresh one),
/// and within its warning radius only if `tell_her_of_warnings`; his
/// bracelet going silent at once when he was last seen near her (within
/// her warning radius), otherwise only if it lasts (see
/// `AlertDesk::tell_her_what_lasts`). Whoever was told hears the all-clear.
fn protected_recipients(
    case: &CaseRouting,
    message: &AlertMessage,
    tell_her_of_warnings: bool,
) -> Vec<DeviceId> {
    use EventKind::*;
    let her_ban = || {
        message
            .order
            .as_ref()
            .and_then(|o| case.contact_bans.get(o.as_str()).cloned().flatten())
            .into_iter()
            .collect()
    };
    match message.kind {
        ProximityWarning if tell_her_of_warnings => her_ban(),
        ProximityBreach if message.certainty == Some(Certainty::Certain) => her_ban(),
        DeviceOffline if message.role == Role::Offender && case.risk == RiskLevel::High => {
            let near_her =
                last_seen_near_her(case, message.offender.as_ref(), message.protected.as_ref());
            if message.event != AlertEvent::Opened || near_her {
                case.protected_devices.clone()
            } else {
                Vec::new()
            }
        }
        ZoneBreach | Tamper => case.protected_devices.clone(),
        BatteryLow | BatteryCritical if message.role == Role::Protected => {
            vec![message.device.clone()]
        }
        _ => Vec::new(),
    }
}

/// The attention policy's context of `message`'s alert in `case`, with
/// whether another breach of the case makes an incident.
fn context_given(
    case: &CaseRouting,
    message: &AlertMessage,
    certain_since: Option<Timestamp>,
    incident_open: bool,
) -> attention::Context {
    attention::Context {
        near_her: last_seen_near_her(case, message.offender.as_ref(), message.protected.as_ref()),
        certain_since,
        incident_open,
    }
}

/// Whether the offender's last known position was within the case's
/// contact-ban warning radius of the protected person's.
fn last_seen_near_her(case: &CaseRouting, his: Option<&Position>, hers: Option<&Position>) -> bool {
    let (Some(radius), Some(his), Some(hers)) = (case.warning_radius_m, his, hers) else {
        return false;
    };
    distance_m(his.lat, his.lon, hers.lat, hers.lon) <= radius
}

/// Whose device hears of an open episode once it has lasted
/// `health_action_after_s`: her protection degraded for long is hers to
/// know. His bracelet offline in a high-risk case (all protected persons),
/// and her own device without a position (her, while it still has a
/// connection to hear it).
fn protected_recipients_when_lasting(case: &CaseRouting, alert: &AlertMessage) -> Vec<DeviceId> {
    match alert.kind {
        EventKind::DeviceOffline
            if alert.role == Role::Offender && case.risk == RiskLevel::High =>
        {
            case.protected_devices.clone()
        }
        EventKind::GpsLost if alert.role == Role::Protected => vec![alert.device.clone()],
        _ => Vec::new(),
    }
}

/// A warning for a wearer, unless they were already told of this kind.
fn device_warning(
    told: &mut Option<EventKind>,
    message: &AlertMessage,
    wearer: Role,
    language: Language,
) -> Option<DeviceWarning> {
    let cleared = message.event == AlertEvent::Cleared;
    if cleared {
        // Only those who were warned hear that it ended.
        told.take()?;
    } else if *told == Some(message.kind) {
        return None;
    } else {
        *told = Some(message.kind);
    }
    let instruction = match wearer {
        Role::Protected => texts::protected_instruction(language, message.kind, message.event),
        Role::Offender => texts::offender_instruction(language, message.kind, message.event),
    };
    Some(DeviceWarning {
        id: message.id,
        event: message.event,
        kind: message.kind,
        severity: message.severity,
        ts: message.ts,
        instruction: instruction.to_string(),
        language,
    })
}

pub(crate) fn json<T: Serialize>(topic: &str, payload: &T) -> Outbound {
    Outbound {
        topic: topic.to_string(),
        payload: serde_json::to_vec(payload).expect("alert payloads always serialise"),
    }
}
