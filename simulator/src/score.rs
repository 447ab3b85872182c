//! Alert quality: what kordon published (as `kordon replay` writes it)
//! against a recording's ground truth.
//!
//! # Input
//!
//! One JSON object a line. A line without a `topic` field is a message of
//! the monitoring topic (`kordon/v1/alerts/monitoring`), as the topic
//! carries it; a line `{"topic": "...", "message": {...}}` is what another
//! audience received: the police JSON feed (`kordon/v1/alerts/police`), a
//! device's warnings (`kordon/v1/devices/{device}/warning`), a case's
//! coordinators (`kordon/v1/cases/{case}/coordinators`), or any other
//! topic. Files with monitoring lines only (older replays, or a broker's
//! monitoring topic) score as before, with nothing received by others.
//!
//! # Detection
//!
//! An alert *episode* is all monitoring messages with one id; it alarms from
//! the first message whose kind is a breach (a warning escalated later counts
//! from then) until it is cleared. A truth is *detected* when an alarming
//! episode of its family for its case overlaps it (give or take two minutes
//! before and five after); the *delay* runs from the true onset to the alarm
//! (zero if the alarm was already on). An alarm that overlaps no truth of its
//! family is a *false alert*, except that proximity alarms for a scripted
//! passing-by are *encounters*: real closeness without intent, counted apart.
//!
//! Truths shorter than [`BRIEF_MS`] (a car cutting through the edge of a
//! zone between two fixes) are counted apart as *brief*: no fix need fall
//! inside them.
//!
//! # What people receive
//!
//! Rates are per pair-day (pairs × hours / 24).
//!
//! - **Monitoring room.** Every episode (distinct id on the monitoring
//!   topic) is *actionable* if any of its messages says
//!   `"attention": "action"`, *informational* if its messages say
//!   `"attention": "information"` only. A message without the field (files
//!   from before the desk wrote it) demands action when its kind is a breach
//!   (`*_breach`), `tamper`, or `device_offline` of role `protected` (her
//!   device gone), and informs otherwise. `monitoring_by_kind` splits both
//!   by kind: an actionable episode's kind is that of its first message
//!   demanding action, an informational one's that of its first message.
//! - **Police.** Every message on the police JSON feed (the CAP feed is one
//!   to one with it and not counted); a police episode is one id. Besides
//!   the mean and median messages per episode, the most messages any police
//!   episode got when it lasted under ten minutes: from its first police
//!   message to its clearing (the police `cleared` message, else the
//!   monitoring one, else the end of the recording) or its last police
//!   message, whichever is later. A short episode with many messages is a
//!   stream, not a breach and its material changes.
//! - **Victim devices.** Warnings to a protected person's device (the
//!   recording's victim devices, and any device the monitoring messages show
//!   as hers: role `protected`, or the `protected` position's device). Such
//!   a message is *backed* when the monitoring episode of its id overlaps a
//!   truth of any kind for the same case (encounters included: real
//!   closeness is worth telling her) with the same slack as detection: the
//!   episode's first monitoring message no later than five minutes after the
//!   truth ends, and its clearing (or the end of the recording, if it stays
//!   open) no earlier than two minutes before the truth starts. A warning
//!   whose id never appears on the monitoring topic is *unbacked*; so is
//!   one about something no truth records (her own battery running low).
//! - **Bracelets.** Warnings to an offender's device (the recording's, or
//!   role `offender` in the monitoring messages), counted apart.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::recording::{Recording, Truth, TruthKind};

const BEFORE_MS: i64 = 120_000;
const AFTER_MS: i64 = 300_000;
/// Shorter truths are scored apart.
pub const BRIEF_MS: i64 = 30_000;
/// Police episodes shorter than this are checked for streams.
pub const SHORT_POLICE_EPISODE_MS: i64 = 600_000;

/// The topics of `docs/mqtt.md` (kordon-alert's `topics`; the simulator
/// does not depend on the alert crate).
pub const MONITORING_TOPIC: &str = "kordon/v1/alerts/monitoring";
pub const POLICE_TOPIC: &str = "kordon/v1/alerts/police";
pub const POLICE_CAP_TOPIC: &str = "kordon/v1/alerts/police/cap";

/// One monitoring line (the fields scoring needs).
#[derive(Debug, Clone, Deserialize)]
pub struct AlertLine {
    pub id: String,
    pub event: String,
    pub kind: String,
    pub case: String,
    #[serde(default)]
    pub role: Option<String>,
    pub ts: jiff::Timestamp,
    /// `action` or `information`; absent in files from before the desk
    /// wrote it.
    #[serde(default)]
    pub attention: Option<String>,
    /// The device the episode is about.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(default)]
    pub protected: Option<DeviceRef>,
}

/// A position in an alert, for its device.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceRef {
    pub device: String,
}

/// Who a line's topic reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Police,
    /// `kordon/v1/alerts/police/cap`: counted with the JSON feed, not apart.
    PoliceCap,
    /// The wearer of this device (victim device or bracelet).
    Device(String),
    /// The coordinators of this case.
    Coordinators(String),
    /// Patterns over days found in this case, for its coordinators.
    Patterns(String),
    Other,
}

impl Audience {
    pub fn of(topic: &str) -> Audience {
        if topic == POLICE_TOPIC {
            return Audience::Police;
        }
        if topic == POLICE_CAP_TOPIC {
            return Audience::PoliceCap;
        }
        let parts: Vec<&str> = topic.split('/').collect();
        match parts.as_slice() {
            ["kordon", "v1", "devices", device, "warning"] => Audience::Device(device.to_string()),
            ["kordon", "v1", "cases", case, "coordinators"] => {
                Audience::Coordinators(case.to_string())
            }
            ["kordon", "v1", "cases", case, "patterns"] => Audience::Patterns(case.to_string()),
            _ => Audience::Other,
        }
    }
}

/// A message another audience received (the fields scoring needs).
#[derive(Debug, Clone)]
pub struct OtherLine {
    pub topic: String,
    pub audience: Audience,
    /// The episode id (police messages and device warnings always have one).
    pub id: Option<String>,
    pub event: Option<String>,
    pub kind: Option<String>,
    pub ts: Option<jiff::Timestamp>,
}

/// One line of a replay's output.
#[derive(Debug, Clone)]
pub enum Line {
    Monitoring(AlertLine),
    Other(OtherLine),
}

#[derive(Deserialize)]
struct Addressed {
    topic: String,
    message: serde_json::Value,
}

/// What police messages and device warnings must carry.
#[derive(Deserialize)]
struct Episodic {
    id: String,
    event: String,
    #[serde(default)]
    kind: Option<String>,
    ts: jiff::Timestamp,
}

fn parse_line(line: &str) -> Result<Line, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if value.get("topic").is_none() {
        return serde_json::from_value(value)
            .map(Line::Monitoring)
            .map_err(|e| e.to_string());
    }
    let addressed: Addressed = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if addressed.topic == MONITORING_TOPIC {
        return serde_json::from_value(addressed.message)
            .map(Line::Monitoring)
            .map_err(|e| format!("{}: {e}", addressed.topic));
    }
    let audience = Audience::of(&addressed.topic);
    let text = |key: &str| {
        addressed
            .message
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let line = match audience {
        Audience::Police | Audience::Device(_) => {
            let m: Episodic = serde_json::from_value(addressed.message.clone())
                .map_err(|e| format!("{}: {e}", addressed.topic))?;
            OtherLine {
                topic: addressed.topic,
                audience,
                id: Some(m.id),
                event: Some(m.event),
                kind: m.kind,
                ts: Some(m.ts),
            }
        }
        _ => OtherLine {
            id: text("id"),
            event: text("event"),
            // A pattern message names its pattern.
            kind: text("kind").or_else(|| text("pattern")),
            ts: text("ts").and_then(|t| t.parse().ok()),
            topic: addressed.topic,
            audience,
        },
    };
    Ok(Line::Other(line))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Zone,
    Proximity,
    Curfew,
    Tamper,
    VictimOffline,
}

fn family(kind: &str, role: Option<&str>) -> Option<Family> {
    match kind {
        "zone_breach" => Some(Family::Zone),
        "proximity_breach" => Some(Family::Proximity),
        "curfew_breach" => Some(Family::Curfew),
        "tamper" => Some(Family::Tamper),
        "device_offline" if role == Some("protected") => Some(Family::VictimOffline),
        _ => None,
    }
}

/// The alerts a truth calls for; none for one stay of a pattern.
fn truth_family(kind: TruthKind) -> Option<Family> {
    match kind {
        TruthKind::Zone => Some(Family::Zone),
        TruthKind::Proximity | TruthKind::Encounter => Some(Family::Proximity),
        TruthKind::Curfew => Some(Family::Curfew),
        TruthKind::Tamper => Some(Family::Tamper),
        TruthKind::VictimOffline => Some(Family::VictimOffline),
        TruthKind::PatternStay => None,
    }
}

/// Figures for one incident kind (`none` for ordinary days).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ByIncident {
    pub pairs: u32,
    pub detected: u32,
    pub missed: u32,
    pub false_alerts: u32,
    pub encounter_alerts: u32,
    pub delay_p50_s: Option<f64>,
    pub delay_p95_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    pub pairs: u32,
    pub pair_days: f64,
    /// Truths (breaches, tamper, her device dying) with an alarm.
    pub detected: u32,
    pub missed: u32,
    /// Of those, scripted with intent (approach, follow, curfew break).
    pub scripted_detected: u32,
    pub scripted_missed: u32,
    pub false_alerts: u32,
    pub false_alerts_per_pair_day: f64,
    pub encounter_alerts: u32,
    /// Truths shorter than 30 s: detected, missed.
    pub brief_detected: u32,
    pub brief_missed: u32,
    pub warnings: u32,
    /// From the true onset to the alarm, breaches only.
    pub delay_p50_s: Option<f64>,
    pub delay_p95_s: Option<f64>,
    /// The same in units of the bracelet's fix interval at the onset.
    pub delay_p95_fix_intervals: Option<f64>,
    /// Contact-ban time in `position_unknown`, hours per pair-day.
    pub unknown_hours_per_pair_day: f64,
    pub by_truth: BTreeMap<String, (u32, u32)>,
    pub by_incident: BTreeMap<String, ByIncident>,
    /// What was missed and what was false, for reading.
    pub missed_list: Vec<String>,
    pub false_list: Vec<String>,
    /// The slowest detections, slowest first.
    pub slowest: Vec<String>,

    // What people receive (see the module documentation).
    /// Monitoring episodes the room must act on, per pair-day.
    pub monitoring_actionable_per_pair_day: f64,
    /// Monitoring episodes that only inform, per pair-day.
    pub monitoring_informational_per_pair_day: f64,
    pub monitoring_actionable_episodes: u32,
    pub monitoring_informational_episodes: u32,
    /// Kind → actionable and informational episodes per pair-day.
    pub monitoring_by_kind: BTreeMap<String, KindRates>,
    /// Messages on the police JSON feed.
    pub police_messages: u32,
    /// Distinct ids on the police JSON feed.
    pub police_episodes: u32,
    /// Mean police messages per police episode (`null` without any).
    pub police_messages_per_episode: Option<f64>,
    pub police_messages_per_episode_p50: Option<f64>,
    /// The most messages a police episode lasting under ten minutes got.
    pub police_messages_per_episode_max_under_10_min: Option<u32>,
    /// Warnings to victim devices.
    pub victim_messages: u32,
    pub victim_messages_per_pair_day: f64,
    /// Of those, whose episode no truth backs.
    pub victim_messages_unbacked: u32,
    pub victim_messages_unbacked_per_pair_day: f64,
    /// Kind → victim messages and unbacked ones (counts).
    pub victim_messages_by_kind: BTreeMap<String, VictimKind>,
    /// Warnings to bracelets.
    pub offender_messages: u32,
    pub offender_messages_per_pair_day: f64,
    /// Scripted passings-by (encounters: close, without intent) and those of
    /// them the police were paged for (a police message of the case's
    /// contact ban while it lasted, with the detection slack).
    pub pass_by_encounters: u32,
    pub pass_by_to_police: u32,
    /// `pass_by_to_police / pass_by_encounters` (`null` without any).
    pub pass_by_police_share: Option<f64>,
    /// The same for scripted shared rides (`co_travel`, `ring_co_travel`):
    /// close for minutes on the same tram, road or motorway, by chance.
    pub co_travel_encounters: u32,
    pub co_travel_to_police: u32,
    pub co_travel_police_share: Option<f64>,
    /// Scripted patterns (`slow_burn`, `loiter_edge`, `follow_far`) with three stays or
    /// more: flagged by a pattern message of their kind by the end of the
    /// third stay, or not; and those missed, for reading.
    pub patterns_detected: u32,
    pub patterns_missed: u32,
    pub patterns_missed_list: Vec<String>,
    /// Patterns found on pairs without a scripted pattern, per pair-day.
    pub pattern_alerts_per_pair_day: Option<f64>,
    /// Scripted drive-bys (`drive_by`: within the alarm radius of her at
    /// speed, a low-power bracelet reporting once a minute), those with no
    /// fix of his while within it, and those of them raised as a breach.
    pub drive_bys: u32,
    pub drive_bys_between_fixes: u32,
    pub drive_bys_between_fixes_detected: u32,
    /// `drive_bys_between_fixes_detected / drive_bys_between_fixes`.
    pub drive_by_detected_share: Option<f64>,
    pub drive_bys_missed_list: Vec<String>,
    /// Scripted zone and contact-ban truths (approach, follow) the police
    /// heard of with the slack of detection, those they never did, and the
    /// p95 of the delay from the true onset to the first police message
    /// of the truth's kind, in the truth's fix intervals.
    pub scripted_to_police: u32,
    pub scripted_police_missed: u32,
    pub scripted_police_delay_p95_fix_intervals: Option<f64>,
    /// The scripted truths the police never heard of, and the passings-by
    /// and shared rides they were paged for, for reading.
    pub police_missed_list: Vec<String>,
    pub encounters_paged_list: Vec<String>,
    /// Messages per audience: monitoring, police, victim, offender,
    /// coordinators, other (warnings to a device of neither side, or a
    /// topic this scorer does not know).
    pub messages_by_audience: BTreeMap<String, u32>,
}

/// Monitoring episodes of one kind per pair-day.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct KindRates {
    pub actionable: f64,
    pub informational: f64,
}

/// Victim messages of one kind.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct VictimKind {
    pub messages: u32,
    pub unbacked: u32,
}

struct Episode {
    case: String,
    family: Option<Family>,
    alarm_ms: Option<i64>,
    clear_ms: Option<i64>,
    warning: bool,
    unknown_from: Option<i64>,
    unknown_to: Option<i64>,
    id: String,
    /// Its first monitoring message.
    first_ms: i64,
    /// Whether its latest opened/updated/cleared message was `cleared`,
    /// and when (`None` while open).
    closed_ms: Option<i64>,
    /// Its last message, for an episode of late-breach evidence only.
    last_ms: i64,
    opened: bool,
    first_kind: String,
    /// The kind of its first message demanding action.
    action_kind: Option<String>,
}

impl Episode {
    /// Whether it sounded the alarm for truth `t`: its case and family,
    /// within the slack of detection.
    fn raised_for(&self, t: &Truth) -> bool {
        self.case == t.case
            && self.family.is_some_and(|f| truth_family(t.kind) == Some(f))
            && self.alarm_ms.is_some_and(|a| {
                a <= t.end_ms + AFTER_MS
                    && self.clear_ms.unwrap_or(i64::MAX) >= t.start_ms - BEFORE_MS
            })
    }

    /// When it ended: cleared, or never (open at the recording's end).
    fn end_ms(&self) -> i64 {
        match (self.opened, self.closed_ms) {
            (_, Some(c)) => c,
            (true, None) => i64::MAX,
            // Only late-breach evidence: over at its last message.
            (false, None) => self.last_ms,
        }
    }
}

/// Whether a monitoring message demands action (see the module docs).
fn demands_action(a: &AlertLine) -> bool {
    match a.attention.as_deref() {
        Some(attention) => attention == "action",
        None => {
            a.kind.ends_with("_breach")
                || a.kind == "tamper"
                || (a.kind == "device_offline" && a.role.as_deref() == Some("protected"))
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

/// Parses what `kordon replay` wrote (see the module documentation); a
/// line that is neither a monitoring alert nor an addressed message is an
/// error naming it.
pub fn read_alerts(text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

pub fn score(recording: &Recording, lines: &[Line]) -> Score {
    let alerts: Vec<&AlertLine> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Monitoring(a) => Some(a),
            Line::Other(_) => None,
        })
        .collect();
    // Episodes in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut episodes: BTreeMap<String, Episode> = BTreeMap::new();
    for a in alerts.iter().copied() {
        let ts = a.ts.as_millisecond();
        let e = episodes.entry(a.id.clone()).or_insert_with(|| {
            order.push(a.id.clone());
            Episode {
                case: a.case.clone(),
                family: None,
                alarm_ms: None,
                clear_ms: None,
                warning: false,
                unknown_from: None,
                unknown_to: None,
                id: a.id.clone(),
                first_ms: ts,
                closed_ms: None,
                last_ms: ts,
                opened: false,
                first_kind: a.kind.clone(),
                action_kind: None,
            }
        });
        e.first_ms = e.first_ms.min(ts);
        e.last_ms = e.last_ms.max(ts);
        match a.event.as_str() {
            "opened" | "updated" => {
                e.opened = true;
                e.closed_ms = None;
            }
            "cleared" => {
                e.opened = true;
                e.closed_ms = Some(ts);
            }
            _ => {}
        }
        if e.action_kind.is_none() && demands_action(a) {
            e.action_kind = Some(a.kind.clone());
        }
        let sounding = matches!(a.event.as_str(), "opened" | "updated" | "late_breach");
        if let Some(f) = family(&a.kind, a.role.as_deref()) {
            if sounding && e.alarm_ms.is_none() {
                e.family = Some(f);
                e.alarm_ms = Some(ts);
            }
        }
        if a.event == "cleared" && e.alarm_ms.is_some() && e.clear_ms.is_none() {
            e.clear_ms = Some(ts);
        }
        if a.kind.ends_with("_warning") && a.event == "opened" {
            e.warning = true;
        }
        if a.kind == "position_unknown" {
            match a.event.as_str() {
                "opened" => e.unknown_from = Some(ts),
                "cleared" => e.unknown_to = Some(ts),
                _ => {}
            }
        }
    }
    let end_ms = recording.start_ms + i64::from(recording.hours) * 3_600_000;
    let incident_of: BTreeMap<&str, String> = recording
        .pair_info
        .iter()
        .map(|p| {
            (
                p.case.as_str(),
                p.incident.clone().unwrap_or_else(|| "none".into()),
            )
        })
        .collect();
    let mut by_incident: BTreeMap<String, ByIncident> = BTreeMap::new();
    for p in &recording.pair_info {
        by_incident
            .entry(p.incident.clone().unwrap_or_else(|| "none".into()))
            .or_default()
            .pairs += 1;
    }
    let mut incident_delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();

    let mut matched: std::collections::HashSet<String> = Default::default();
    let mut encounter_ids: std::collections::HashSet<String> = Default::default();
    let (mut detected, mut missed, mut scripted_detected, mut scripted_missed) = (0, 0, 0, 0);
    let (mut brief_detected, mut brief_missed) = (0, 0);
    let mut delays = Vec::new();
    let mut delay_intervals = Vec::new();
    let mut slow: Vec<(f64, String)> = Vec::new();
    let mut by_truth: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut missed_list = Vec::new();
    for t in &recording.truth {
        let hits: Vec<&Episode> = episodes.values().filter(|e| e.raised_for(t)).collect();
        for e in &hits {
            matched.insert(e.id.clone());
            if t.kind == TruthKind::Encounter {
                encounter_ids.insert(e.id.clone());
            }
        }
        // Encounters are neither due nor false; a pattern's stays are
        // scored as the pattern (`patterns`).
        if matches!(t.kind, TruthKind::Encounter | TruthKind::PatternStay) {
            continue;
        }
        if t.end_ms - t.start_ms < BRIEF_MS {
            if hits.is_empty() {
                brief_missed += 1;
            } else {
                brief_detected += 1;
            }
            continue;
        }
        let incident = incident_of
            .get(t.case.as_str())
            .cloned()
            .unwrap_or_else(|| "none".into());
        let entry = by_truth.entry(t.kind.name().to_string()).or_default();
        let row = by_incident.entry(incident.clone()).or_default();
        match hits.iter().filter_map(|e| e.alarm_ms).min() {
            Some(alarm) => {
                detected += 1;
                entry.0 += 1;
                row.detected += 1;
                if t.intent {
                    scripted_detected += 1;
                }
                if matches!(
                    t.kind,
                    TruthKind::Zone | TruthKind::Proximity | TruthKind::Curfew
                ) {
                    let delay = ((alarm - t.start_ms) as f64 / 1000.0).max(0.0);
                    delays.push(delay);
                    delay_intervals.push(delay / t.fix_interval_s.max(1.0));
                    slow.push((
                        delay / t.fix_interval_s.max(1.0),
                        format!(
                            "{} {} at {}: {delay:.0} s with fixes every {:.0} s ({})",
                            t.case,
                            t.kind.name(),
                            jiff::Timestamp::from_millisecond(t.start_ms).unwrap_or_default(),
                            t.fix_interval_s,
                            t.incident.as_deref().unwrap_or("unscripted")
                        ),
                    ));
                    incident_delays.entry(incident).or_default().push(delay);
                }
            }
            None => {
                missed += 1;
                entry.1 += 1;
                row.missed += 1;
                if t.intent {
                    scripted_missed += 1;
                }
                missed_list.push(describe(t));
            }
        }
    }
    let mut false_alerts = 0;
    let mut false_list = Vec::new();
    for id in &order {
        let e = &episodes[id];
        let (Some(family), Some(alarm)) = (e.family, e.alarm_ms) else {
            continue;
        };
        // Her device dying without a script is not a false alarm.
        if matched.contains(id) || family == Family::VictimOffline {
            continue;
        }
        false_alerts += 1;
        let incident = incident_of
            .get(e.case.as_str())
            .cloned()
            .unwrap_or_else(|| "none".into());
        by_incident.entry(incident).or_default().false_alerts += 1;
        false_list.push(format!(
            "{} {family:?} alert {} at {}",
            e.case,
            e.id,
            jiff::Timestamp::from_millisecond(alarm).unwrap_or_default()
        ));
    }
    for id in &encounter_ids {
        let case = &episodes[id].case;
        let incident = incident_of
            .get(case.as_str())
            .cloned()
            .unwrap_or_else(|| "none".into());
        by_incident.entry(incident).or_default().encounter_alerts += 1;
    }
    delays.sort_by(f64::total_cmp);
    delay_intervals.sort_by(f64::total_cmp);
    for (incident, mut d) in incident_delays {
        d.sort_by(f64::total_cmp);
        let row = by_incident.entry(incident).or_default();
        row.delay_p50_s = percentile(&d, 0.5);
        row.delay_p95_s = percentile(&d, 0.95);
    }
    let pair_days = f64::from(recording.pairs) * f64::from(recording.hours) / 24.0;
    let unknown_ms: i64 = episodes
        .values()
        .filter_map(|e| {
            e.unknown_from
                .map(|f| e.unknown_to.unwrap_or(end_ms).max(f) - f)
        })
        .sum();
    let receive = receive(recording, &alerts, lines, &episodes, pair_days, end_ms);
    let reach = police_reach(recording, lines, &episodes);
    let drive_bys = drive_bys(recording, &episodes);
    let patterns = patterns(recording, lines);
    let per = |n: u32| {
        if pair_days > 0.0 {
            f64::from(n) / pair_days
        } else {
            0.0
        }
    };
    Score {
        pairs: recording.pairs,
        pair_days,
        detected,
        missed,
        scripted_detected,
        scripted_missed,
        false_alerts,
        false_alerts_per_pair_day: if pair_days > 0.0 {
            f64::from(false_alerts) / pair_days
        } else {
            0.0
        },
        encounter_alerts: encounter_ids.len() as u32,
        brief_detected,
        brief_missed,
        warnings: episodes.values().filter(|e| e.warning).count() as u32,
        delay_p50_s: percentile(&delays, 0.5),
        delay_p95_s: percentile(&delays, 0.95),
        delay_p95_fix_intervals: percentile(&delay_intervals, 0.95),
        unknown_hours_per_pair_day: if pair_days > 0.0 {
            unknown_ms as f64 / 3.6e6 / pair_days
        } else {
            0.0
        },
        by_truth,
        by_incident,
        missed_list,
        false_list,
        slowest: {
            slow.sort_by(|a, b| b.0.total_cmp(&a.0));
            slow.into_iter().take(10).map(|(_, s)| s).collect()
        },
        monitoring_actionable_per_pair_day: per(receive.actionable),
        monitoring_informational_per_pair_day: per(receive.informational),
        monitoring_actionable_episodes: receive.actionable,
        monitoring_informational_episodes: receive.informational,
        monitoring_by_kind: receive.by_kind,
        police_messages: receive.police_messages,
        police_episodes: receive.police_episodes,
        police_messages_per_episode: receive.police_mean,
        police_messages_per_episode_p50: receive.police_p50,
        police_messages_per_episode_max_under_10_min: receive.police_max_short,
        victim_messages: receive.victim,
        victim_messages_per_pair_day: per(receive.victim),
        victim_messages_unbacked: receive.victim_unbacked,
        victim_messages_unbacked_per_pair_day: per(receive.victim_unbacked),
        victim_messages_by_kind: receive.victim_by_kind,
        offender_messages: receive.offender,
        offender_messages_per_pair_day: per(receive.offender),
        messages_by_audience: receive.by_audience,
        pass_by_encounters: reach.encounters("pass_by").0,
        pass_by_to_police: reach.encounters("pass_by").1,
        pass_by_police_share: reach.share("pass_by"),
        co_travel_encounters: reach.encounters("co_travel").0,
        co_travel_to_police: reach.encounters("co_travel").1,
        co_travel_police_share: reach.share("co_travel"),
        patterns_detected: patterns.detected,
        patterns_missed: patterns.missed_list.len() as u32,
        patterns_missed_list: patterns.missed_list,
        pattern_alerts_per_pair_day: patterns.ordinary_per_pair_day,
        drive_bys_missed_list: drive_bys.missed_list,
        drive_bys: drive_bys.all,
        drive_bys_between_fixes: drive_bys.between_fixes,
        drive_bys_between_fixes_detected: drive_bys.detected,
        drive_by_detected_share: (drive_bys.between_fixes > 0)
            .then(|| f64::from(drive_bys.detected) / f64::from(drive_bys.between_fixes)),
        scripted_to_police: reach.scripted_delays.len() as u32,
        scripted_police_missed: reach.scripted_missed,
        scripted_police_delay_p95_fix_intervals: percentile(&reach.scripted_delays, 0.95),
        police_missed_list: reach.missed_list,
        encounters_paged_list: reach.paged_list,
    }
}

/// The pattern a scripted incident must be flagged as.
fn expected_pattern(incident: &str) -> Option<&'static str> {
    match incident {
        "slow_burn" => Some("slow_burn"),
        "loiter_edge" => Some("loitering"),
        "follow_far" => Some("following"),
        "dark_near_her" => Some("going_dark"),
        _ => None,
    }
}

/// Scripted patterns, counted, and pattern messages on the other pairs.
struct Patterns {
    detected: u32,
    missed_list: Vec<String>,
    ordinary_per_pair_day: Option<f64>,
}

fn patterns(recording: &Recording, lines: &[Line]) -> Patterns {
    // Case → pattern messages (kind, ts) that found or grew a pattern.
    let mut found: BTreeMap<&str, Vec<(&str, i64, bool)>> = BTreeMap::new();
    for l in lines {
        let Line::Other(o) = l else { continue };
        let Audience::Patterns(case) = &o.audience else {
            continue;
        };
        if let (Some(kind), Some(ts), Some(event @ ("opened" | "updated"))) =
            (o.kind.as_deref(), o.ts, o.event.as_deref())
        {
            found.entry(case.as_str()).or_default().push((
                kind,
                ts.as_millisecond(),
                event == "opened",
            ));
        }
    }
    let mut counted = Patterns {
        detected: 0,
        missed_list: Vec::new(),
        ordinary_per_pair_day: None,
    };
    let (mut ordinary_pairs, mut ordinary_found) = (0u32, 0u32);
    for pair in &recording.pair_info {
        let messages = found.get(pair.case.as_str());
        let Some(expected) = pair.incident.as_deref().and_then(expected_pattern) else {
            ordinary_pairs += 1;
            ordinary_found += messages.map_or(0, |m| m.iter().filter(|m| m.2).count()) as u32;
            continue;
        };
        let mut stays: Vec<&Truth> = recording
            .truth
            .iter()
            .filter(|t| t.case == pair.case && t.kind == TruthKind::PatternStay)
            .collect();
        stays.sort_by_key(|t| t.start_ms);
        let Some(third) = stays.get(2) else {
            continue;
        };
        let by = third.end_ms + AFTER_MS;
        let flagged =
            messages.is_some_and(|m| m.iter().any(|(k, ts, _)| *k == expected && *ts <= by));
        if flagged {
            counted.detected += 1;
        } else {
            counted.missed_list.push(format!(
                "{} {expected}: not flagged by the third stay ({})",
                pair.case,
                jiff::Timestamp::from_millisecond(third.end_ms).unwrap_or_default()
            ));
        }
    }
    let pair_days = f64::from(ordinary_pairs) * f64::from(recording.hours) / 24.0;
    counted.ordinary_per_pair_day =
        (pair_days > 0.0).then(|| f64::from(ordinary_found) / pair_days);
    counted
}

/// Scripted drive-bys, counted.
struct DriveBys {
    all: u32,
    between_fixes: u32,
    /// Of those between fixes.
    detected: u32,
    missed_list: Vec<String>,
}

/// The drive-by truths (contact ban), whether a fix of his fell within
/// each, and whether it was raised: what reading between fixes is for.
fn drive_bys(recording: &Recording, episodes: &BTreeMap<String, Episode>) -> DriveBys {
    let offender_of: BTreeMap<&str, String> = recording
        .pair_info
        .iter()
        .filter(|p| p.incident.as_deref() == Some("drive_by"))
        .map(|p| {
            (
                p.case.as_str(),
                format!("kordon/v1/devices/{}/fix", p.offender),
            )
        })
        .collect();
    let topics: std::collections::HashSet<&str> =
        offender_of.values().map(String::as_str).collect();
    let mut fixes: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for m in recording
        .messages
        .iter()
        .filter(|m| topics.contains(m.topic.as_str()))
    {
        let ts = serde_json::from_slice::<serde_json::Value>(&m.payload)
            .ok()
            .and_then(|v| v["ts"].as_i64());
        if let Some(ts) = ts {
            fixes.entry(m.topic.as_str()).or_default().push(ts);
        }
    }
    let mut counted = DriveBys {
        all: 0,
        between_fixes: 0,
        detected: 0,
        missed_list: Vec::new(),
    };
    for t in recording
        .truth
        .iter()
        .filter(|t| t.kind == TruthKind::Proximity && t.incident.as_deref() == Some("drive_by"))
    {
        counted.all += 1;
        let his = offender_of
            .get(t.case.as_str())
            .and_then(|topic| fixes.get(topic.as_str()));
        let fix_within = his.is_some_and(|ts| ts.iter().any(|&f| f >= t.start_ms && f <= t.end_ms));
        if fix_within {
            continue;
        }
        counted.between_fixes += 1;
        if episodes.values().any(|e| e.raised_for(t)) {
            counted.detected += 1;
        } else {
            counted.missed_list.push(describe(t));
        }
    }
    counted
}

/// Which truths reached the police, and how soon.
struct PoliceReach {
    /// Incident → encounters, and those the police were paged for.
    encounters: BTreeMap<String, (u32, u32)>,
    scripted_missed: u32,
    /// Sorted, in fix intervals.
    scripted_delays: Vec<f64>,
    missed_list: Vec<String>,
    paged_list: Vec<String>,
}

impl PoliceReach {
    fn encounters(&self, incident: &str) -> (u32, u32) {
        self.encounters.get(incident).copied().unwrap_or_default()
    }

    fn share(&self, incident: &str) -> Option<f64> {
        let (all, paged) = self.encounters(incident);
        (all > 0).then(|| f64::from(paged) / f64::from(all))
    }
}

fn police_reach(
    recording: &Recording,
    lines: &[Line],
    episodes: &BTreeMap<String, Episode>,
) -> PoliceReach {
    // Each police episode: its case (from the monitoring room's copy),
    // family, first message and end (its police clearing, else the
    // monitoring room's, else never).
    struct Paged<'a> {
        case: &'a str,
        family: Option<Family>,
        first_ms: i64,
        end_ms: i64,
    }
    let mut police: HashMap<&str, Paged> = HashMap::new();
    for line in lines {
        let Line::Other(o) = line else { continue };
        let (Audience::Police, Some(id), Some(ts)) = (&o.audience, o.id.as_deref(), o.ts) else {
            continue;
        };
        let Some(episode) = episodes.get(id) else {
            continue;
        };
        let ts = ts.as_millisecond();
        let p = police.entry(id).or_insert_with(|| Paged {
            case: episode.case.as_str(),
            family: o.kind.as_deref().and_then(|k| family(k, None)),
            first_ms: ts,
            end_ms: episode.end_ms(),
        });
        p.first_ms = p.first_ms.min(ts);
        if o.event.as_deref() == Some("cleared") {
            p.end_ms = p.end_ms.min(ts);
        }
    }
    // When the police first knew of an episode of the truth's kind that
    // overlaps it (with the detection slack).
    let paged = |t: &Truth| {
        let fam = truth_family(t.kind);
        police
            .values()
            .filter(|p| {
                p.case == t.case
                    && fam.is_some()
                    && p.family == fam
                    && p.first_ms <= t.end_ms + AFTER_MS
                    && p.end_ms >= t.start_ms
            })
            .map(|p| p.first_ms)
            .min()
    };
    let mut reach = PoliceReach {
        encounters: BTreeMap::new(),
        scripted_missed: 0,
        scripted_delays: Vec::new(),
        missed_list: Vec::new(),
        paged_list: Vec::new(),
    };
    for t in &recording.truth {
        match t.kind {
            TruthKind::Encounter => {
                // A shared ride on the motorway is a shared ride.
                let incident = match t.incident.as_deref() {
                    Some("ring_co_travel") => "co_travel".to_string(),
                    other => other.unwrap_or("none").to_string(),
                };
                let row = reach.encounters.entry(incident).or_default();
                row.0 += 1;
                if paged(t).is_some() {
                    row.1 += 1;
                    reach.paged_list.push(describe(t));
                }
            }
            TruthKind::Zone | TruthKind::Proximity
                if t.intent && t.end_ms - t.start_ms >= BRIEF_MS =>
            {
                match paged(t) {
                    Some(ts) => {
                        let delay = ((ts - t.start_ms) as f64 / 1000.0).max(0.0);
                        reach
                            .scripted_delays
                            .push(delay / t.fix_interval_s.max(1.0));
                    }
                    None => {
                        reach.scripted_missed += 1;
                        reach.missed_list.push(describe(t));
                    }
                }
            }
            _ => {}
        }
    }
    reach.scripted_delays.sort_by(f64::total_cmp);
    reach
}

/// What people receive (see the module documentation).
struct Received {
    actionable: u32,
    informational: u32,
    by_kind: BTreeMap<String, KindRates>,
    police_messages: u32,
    police_episodes: u32,
    police_mean: Option<f64>,
    police_p50: Option<f64>,
    police_max_short: Option<u32>,
    victim: u32,
    victim_unbacked: u32,
    victim_by_kind: BTreeMap<String, VictimKind>,
    offender: u32,
    by_audience: BTreeMap<String, u32>,
}

#[derive(Default)]
struct PoliceEpisode {
    messages: u32,
    first_ms: i64,
    last_ms: i64,
    cleared_ms: Option<i64>,
}

fn receive(
    recording: &Recording,
    alerts: &[&AlertLine],
    lines: &[Line],
    episodes: &BTreeMap<String, Episode>,
    pair_days: f64,
    end_ms: i64,
) -> Received {
    let mut received = Received {
        actionable: 0,
        informational: 0,
        by_kind: BTreeMap::new(),
        police_messages: 0,
        police_episodes: 0,
        police_mean: None,
        police_p50: None,
        police_max_short: None,
        victim: 0,
        victim_unbacked: 0,
        victim_by_kind: BTreeMap::new(),
        offender: 0,
        by_audience: BTreeMap::new(),
    };
    // Counted first, divided once: sums of fractions drift.
    let mut by_kind: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for e in episodes.values() {
        match &e.action_kind {
            Some(kind) => {
                received.actionable += 1;
                by_kind.entry(kind.clone()).or_default().0 += 1;
            }
            None => {
                received.informational += 1;
                by_kind.entry(e.first_kind.clone()).or_default().1 += 1;
            }
        }
    }
    let per = |n: u32| {
        if pair_days > 0.0 {
            f64::from(n) / pair_days
        } else {
            0.0
        }
    };
    received.by_kind = by_kind
        .into_iter()
        .map(|(kind, (actionable, informational))| {
            (
                kind,
                KindRates {
                    actionable: per(actionable),
                    informational: per(informational),
                },
            )
        })
        .collect();

    // Whose devices: the recording's, then what the monitoring room saw.
    let mut victims: BTreeSet<&str> = recording
        .pair_info
        .iter()
        .map(|p| p.victim.as_str())
        .collect();
    let mut offenders: BTreeSet<&str> = recording
        .pair_info
        .iter()
        .map(|p| p.offender.as_str())
        .collect();
    for a in alerts {
        if let Some(device) = a.device.as_deref() {
            match a.role.as_deref() {
                Some("protected") => {
                    victims.insert(device);
                }
                Some("offender") => {
                    offenders.insert(device);
                }
                _ => {}
            }
        }
        if let Some(p) = &a.protected {
            victims.insert(p.device.as_str());
        }
    }
    let mut truths: HashMap<&str, Vec<(i64, i64)>> = HashMap::new();
    for t in recording
        .truth
        .iter()
        .filter(|t| t.kind != TruthKind::PatternStay)
    {
        truths
            .entry(t.case.as_str())
            .or_default()
            .push((t.start_ms, t.end_ms));
    }
    let backed = |id: Option<&str>| {
        let Some(e) = id.and_then(|id| episodes.get(id)) else {
            return false;
        };
        truths.get(e.case.as_str()).is_some_and(|ts| {
            ts.iter().any(|&(start, end)| {
                e.first_ms <= end + AFTER_MS && e.end_ms() >= start - BEFORE_MS
            })
        })
    };

    let mut police: HashMap<&str, PoliceEpisode> = HashMap::new();
    let mut count = |audience: &str| *received.by_audience.entry(audience.into()).or_insert(0) += 1;
    let (mut victim, mut victim_unbacked, mut offender) = (0, 0, 0);
    let mut victim_by_kind: BTreeMap<String, VictimKind> = BTreeMap::new();
    for line in lines {
        let other = match line {
            Line::Monitoring(_) => {
                count("monitoring");
                continue;
            }
            Line::Other(o) => o,
        };
        match &other.audience {
            Audience::Police => {
                count("police");
                let ts = other.ts.map_or(0, |t| t.as_millisecond());
                let p = police
                    .entry(other.id.as_deref().unwrap_or_default())
                    .or_insert_with(|| PoliceEpisode {
                        first_ms: ts,
                        last_ms: ts,
                        ..Default::default()
                    });
                p.messages += 1;
                p.first_ms = p.first_ms.min(ts);
                p.last_ms = p.last_ms.max(ts);
                if other.event.as_deref() == Some("cleared") && p.cleared_ms.is_none() {
                    p.cleared_ms = Some(ts);
                }
            }
            Audience::PoliceCap => {}
            Audience::Device(device) if victims.contains(device.as_str()) => {
                count("victim");
                victim += 1;
                let row = victim_by_kind
                    .entry(other.kind.clone().unwrap_or_else(|| "unknown".into()))
                    .or_default();
                row.messages += 1;
                if !backed(other.id.as_deref()) {
                    victim_unbacked += 1;
                    row.unbacked += 1;
                }
            }
            Audience::Device(device) if offenders.contains(device.as_str()) => {
                count("offender");
                offender += 1;
            }
            Audience::Coordinators(_) => count("coordinators"),
            Audience::Patterns(_) => count("patterns"),
            Audience::Device(_) | Audience::Other => count("other"),
        }
    }
    received.victim = victim;
    received.victim_unbacked = victim_unbacked;
    received.victim_by_kind = victim_by_kind;
    received.offender = offender;

    received.police_messages = police.values().map(|p| p.messages).sum();
    received.police_episodes = police.len() as u32;
    let mut counts: Vec<f64> = police.values().map(|p| f64::from(p.messages)).collect();
    counts.sort_by(f64::total_cmp);
    received.police_p50 = percentile(&counts, 0.5);
    received.police_mean =
        (!police.is_empty()).then(|| f64::from(received.police_messages) / police.len() as f64);
    received.police_max_short = police
        .iter()
        .filter(|(id, p)| {
            let cleared = p
                .cleared_ms
                .or_else(|| episodes.get(**id).and_then(|e| e.closed_ms))
                .unwrap_or(end_ms);
            cleared.max(p.last_ms) - p.first_ms < SHORT_POLICE_EPISODE_MS
        })
        .map(|(_, p)| p.messages)
        .max();
    received
}

/// A truth for reading in a list: case, kind, when, and its incident.
fn describe(t: &Truth) -> String {
    format!(
        "{} {} from {} to {} ({})",
        t.case,
        t.kind.name(),
        jiff::Timestamp::from_millisecond(t.start_ms).unwrap_or_default(),
        jiff::Timestamp::from_millisecond(t.end_ms).unwrap_or_default(),
        t.incident.as_deref().unwrap_or("unscripted")
    )
}

fn secs(v: Option<f64>) -> String {
    v.map_or("–".into(), |s| format!("{s:.1} s"))
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} pairs, {:.1} pair-days", self.pairs, self.pair_days)?;
        writeln!(f, "| measure | value |\n| --- | --- |")?;
        writeln!(
            f,
            "| true breaches and events detected | {} |",
            self.detected
        )?;
        writeln!(f, "| missed | {} |", self.missed)?;
        writeln!(
            f,
            "| scripted (with intent) detected / missed | {} / {} |",
            self.scripted_detected, self.scripted_missed
        )?;
        writeln!(f, "| false alerts | {} |", self.false_alerts)?;
        writeln!(
            f,
            "| false alerts per pair-day | {:.3} |",
            self.false_alerts_per_pair_day
        )?;
        writeln!(f, "| detection delay p50 | {} |", secs(self.delay_p50_s))?;
        writeln!(f, "| detection delay p95 | {} |", secs(self.delay_p95_s))?;
        writeln!(
            f,
            "| detection delay p95, in fix intervals of the bracelet at the onset | {} |",
            self.delay_p95_fix_intervals
                .map_or("–".into(), |v| format!("{v:.2}"))
        )?;
        writeln!(
            f,
            "| encounters alerted (close, no intent) | {} |",
            self.encounter_alerts
        )?;
        writeln!(
            f,
            "| brief truths (< 30 s) detected / missed | {} / {} |",
            self.brief_detected, self.brief_missed
        )?;
        writeln!(f, "| warnings opened | {} |", self.warnings)?;
        writeln!(
            f,
            "| time in position unknown, h per pair-day | {:.2} |",
            self.unknown_hours_per_pair_day
        )?;
        writeln!(f)?;
        writeln!(f, "| truth | detected | missed |\n| --- | --- | --- |")?;
        for (k, (d, m)) in &self.by_truth {
            writeln!(f, "| {k} | {d} | {m} |")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "| incident | pairs | detected | missed | false | encounters | delay p50 | delay p95 |"
        )?;
        writeln!(f, "| --- | --- | --- | --- | --- | --- | --- | --- |")?;
        for (k, r) in &self.by_incident {
            writeln!(
                f,
                "| {k} | {} | {} | {} | {} | {} | {} | {} |",
                r.pairs,
                r.detected,
                r.missed,
                r.false_alerts,
                r.encounter_alerts,
                secs(r.delay_p50_s),
                secs(r.delay_p95_s)
            )?;
        }
        writeln!(f)?;
        self.fmt_received(f)?;
        for m in self.missed_list.iter().take(20) {
            writeln!(f, "missed: {m}")?;
        }
        for m in self.false_list.iter().take(20) {
            writeln!(f, "false: {m}")?;
        }
        for m in self.police_missed_list.iter().take(20) {
            writeln!(f, "never paged: {m}")?;
        }
        for m in self.encounters_paged_list.iter().take(20) {
            writeln!(f, "encounter paged: {m}")?;
        }
        for m in self.slowest.iter().take(5) {
            writeln!(f, "slowest: {m}")?;
        }
        Ok(())
    }
}

impl Score {
    /// The "What people receive" block of the table.
    fn fmt_received(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let audience = |k: &str| self.messages_by_audience.get(k).copied().unwrap_or(0);
        writeln!(f, "What people receive")?;
        writeln!(f, "| who | measure | value |\n| --- | --- | --- |")?;
        writeln!(
            f,
            "| monitoring room | episodes to act on, per pair-day | {:.3} ({}) |",
            self.monitoring_actionable_per_pair_day, self.monitoring_actionable_episodes
        )?;
        writeln!(
            f,
            "| monitoring room | episodes that only inform, per pair-day | {:.3} ({}) |",
            self.monitoring_informational_per_pair_day, self.monitoring_informational_episodes
        )?;
        writeln!(
            f,
            "| police | messages / episodes | {} / {} |",
            self.police_messages, self.police_episodes
        )?;
        let num = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
        writeln!(
            f,
            "| police | scripted approaches and follows paged / never paged; delay p95 in fix intervals | {} / {} ; {} |",
            self.scripted_to_police,
            self.scripted_police_missed,
            self.scripted_police_delay_p95_fix_intervals
                .map_or("–".into(), |v| format!("{v:.2}"))
        )?;
        let share = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.0} %", v * 100.0));
        writeln!(
            f,
            "| police | passings-by paged (share of encounters) | {} of {} ({}) |",
            self.pass_by_to_police,
            self.pass_by_encounters,
            share(self.pass_by_police_share)
        )?;
        writeln!(
            f,
            "| police | shared rides paged (share of encounters) | {} of {} ({}) |",
            self.co_travel_to_police,
            self.co_travel_encounters,
            share(self.co_travel_police_share)
        )?;
        writeln!(
            f,
            "| case coordinators | scripted patterns flagged by the third stay / missed; patterns on other pairs per pair-day | {} / {} ; {} |",
            self.patterns_detected,
            self.patterns_missed,
            self.pattern_alerts_per_pair_day
                .map_or("–".into(), |v| format!("{v:.4}"))
        )?;
        writeln!(
            f,
            "| monitoring | drive-bys between fixes raised (of all drive-bys) | {} of {} ({}) ; {} |",
            self.drive_bys_between_fixes_detected,
            self.drive_bys_between_fixes,
            share(self.drive_by_detected_share),
            self.drive_bys
        )?;
        writeln!(
            f,
            "| police | messages per episode: mean / p50 / most in an episode under 10 min | {} / {} / {} |",
            num(self.police_messages_per_episode),
            num(self.police_messages_per_episode_p50),
            self.police_messages_per_episode_max_under_10_min
                .map_or("–".into(), |v| v.to_string())
        )?;
        writeln!(
            f,
            "| victim device | warnings per pair-day | {:.3} ({}) |",
            self.victim_messages_per_pair_day, self.victim_messages
        )?;
        writeln!(
            f,
            "| victim device | of those, not backed by a truth, per pair-day | {:.3} ({}) |",
            self.victim_messages_unbacked_per_pair_day, self.victim_messages_unbacked
        )?;
        writeln!(
            f,
            "| bracelet | warnings per pair-day | {:.3} ({}) |",
            self.offender_messages_per_pair_day, self.offender_messages
        )?;
        writeln!(
            f,
            "| case coordinators | escalation notices | {} |",
            audience("coordinators")
        )?;
        if audience("other") > 0 {
            writeln!(
                f,
                "| others | messages to other devices or topics | {} |",
                audience("other")
            )?;
        }
        if !self.monitoring_by_kind.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "| monitoring episodes by kind, per pair-day | to act on | to inform |\n| --- | --- | --- |"
            )?;
            for (kind, r) in &self.monitoring_by_kind {
                writeln!(
                    f,
                    "| {kind} | {:.3} | {:.3} |",
                    r.actionable, r.informational
                )?;
            }
        }
        if !self.victim_messages_by_kind.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "| victim warnings by kind | messages | not backed |\n| --- | --- | --- |"
            )?;
            for (kind, r) in &self.victim_messages_by_kind {
                writeln!(f, "| {kind} | {} | {} |", r.messages, r.unbacked)?;
            }
        }
        writeln!(f)
    }
}

/// The plot: detection delay (p50 and p95) and false alerts per incident kind.
pub fn plot(score: &Score, path: &std::path::Path) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(500);
    let kinds: Vec<&String> = score.by_incident.keys().collect();
    let n = kinds.len().max(1) as i32;
    let max_delay = score
        .by_incident
        .values()
        .filter_map(|r| r.delay_p95_s)
        .fold(10.0f64, f64::max)
        * 1.15;
    let label = |i: &i32| {
        kinds
            .get(*i as usize)
            .map(|s| s.replace('_', " "))
            .unwrap_or_default()
    };
    {
        let mut chart = ChartBuilder::on(&left)
            .caption("detection delay (s): p50, p95", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(70)
            .y_label_area_size(45)
            .build_cartesian_2d(0..n, 0.0..max_delay)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(kinds.len())
            .x_label_formatter(&label)
            .x_label_style(
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, k) in kinds.iter().enumerate() {
            let r = &score.by_incident[*k];
            let i = i as i32;
            if let Some(p95) = r.delay_p95_s {
                chart
                    .draw_series([Rectangle::new(
                        [(i, 0.0), (i + 1, p95)],
                        RED.mix(0.35).filled(),
                    )])
                    .map_err(|e| e.to_string())?;
            }
            if let Some(p50) = r.delay_p50_s {
                chart
                    .draw_series([Rectangle::new([(i, 0.0), (i + 1, p50)], RED.filled())])
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    {
        let max_false = score
            .by_incident
            .values()
            .map(|r| r.false_alerts + r.encounter_alerts)
            .max()
            .unwrap_or(0)
            .max(1);
        let mut chart = ChartBuilder::on(&right)
            .caption(
                "false alerts (dark), encounters (light)",
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(70)
            .y_label_area_size(45)
            .build_cartesian_2d(0..n, 0u32..max_false + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(kinds.len())
            .x_label_formatter(&label)
            .x_label_style(
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            )
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, k) in kinds.iter().enumerate() {
            let r = &score.by_incident[*k];
            let i = i as i32;
            chart
                .draw_series([
                    Rectangle::new(
                        [(i, 0), (i + 1, r.false_alerts + r.encounter_alerts)],
                        BLUE.mix(0.3).filled(),
                    ),
                    Rectangle::new([(i, 0), (i + 1, r.false_alerts)], BLUE.filled()),
                ])
                .map_err(|e| e.to_string())?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::{PairInfo, Truth, FORMAT};

    fn ms(hhmmss: &str) -> i64 {
        format!("2026-11-30T{hhmmss}Z")
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond()
    }

    fn pair(n: u32, victim: &str) -> PairInfo {
        PairInfo {
            case: format!("SIM-000{n}"),
            offender: format!("OFF-000{n}"),
            victim: victim.into(),
            incident: None,
            curfew: false,
        }
    }

    /// Two pairs, one day; one zone truth for the first.
    fn recording() -> Recording {
        Recording {
            format: FORMAT,
            seed: 0,
            scenario: "hand-made".into(),
            scenario_toml: String::new(),
            pairs: 2,
            hours: 24,
            start_ms: ms("00:00:00"),
            cases: Vec::new(),
            // Her second device is known only from the monitoring messages.
            pair_info: vec![pair(1, "VIC-0001"), pair(2, "VIC-0002")],
            messages: Vec::new(),
            truth: vec![Truth {
                case: "SIM-0001".into(),
                kind: TruthKind::Zone,
                start_ms: ms("10:00:00"),
                end_ms: ms("10:04:00"),
                intent: true,
                incident: None,
                fix_interval_s: 10.0,
            }],
            answers: Vec::new(),
        }
    }

    /// A monitoring line; `extra` is more JSON fields, with a leading comma.
    fn monitoring(id: &str, event: &str, kind: &str, case: &str, ts: &str, extra: &str) -> String {
        format!(
            r#"{{"id":"{id}","event":"{event}","kind":"{kind}","case":"{case}","role":"offender","device":"OFF-{}","ts":"2026-11-30T{ts}Z"{extra}}}"#,
            &case[4..]
        )
    }

    fn addressed(topic: &str, id: &str, event: &str, kind: &str, ts: &str) -> String {
        format!(
            r#"{{"topic":"{topic}","message":{{"id":"{id}","event":"{event}","kind":"{kind}","ts":"2026-11-30T{ts}Z"}}}}"#
        )
    }

    fn lines() -> String {
        let police = POLICE_TOPIC;
        let warn = |device: &str| format!("kordon/v1/devices/{device}/warning");
        [
            // An actionable breach (no attention field: by its kind) with
            // three police messages in five minutes, a warning to her
            // (backed by the zone truth) and one to his bracelet.
            monitoring("b1", "opened", "zone_breach", "SIM-0001", "10:00:00", ""),
            addressed(police, "b1", "opened", "zone_breach", "10:00:00"),
            addressed(&warn("VIC-0001"), "b1", "opened", "zone_breach", "10:00:00"),
            addressed(&warn("OFF-0001"), "b1", "opened", "zone_breach", "10:00:00"),
            monitoring("b1", "updated", "zone_breach", "SIM-0001", "10:02:00", ""),
            addressed(police, "b1", "updated", "zone_breach", "10:02:00"),
            monitoring("b1", "cleared", "zone_breach", "SIM-0001", "10:05:00", ""),
            addressed(police, "b1", "cleared", "zone_breach", "10:05:00"),
            // The CAP feed is not counted.
            r#"{"topic":"kordon/v1/alerts/police/cap","message":"<alert/>"}"#.into(),
            // Informational by its kind.
            monitoring("g1", "opened", "gps_lost", "SIM-0002", "12:00:00", ""),
            monitoring("g1", "cleared", "gps_lost", "SIM-0002", "12:30:00", ""),
            // Informational by the field; her device known by the position.
            monitoring(
                "p1",
                "opened",
                "proximity_warning",
                "SIM-0002",
                "15:00:00",
                r#","attention":"information","protected":{"device":"PHONE-9","lat":51.9,"lon":4.5,"acc":10.0,"ts":"2026-11-30T14:59:00Z"}"#,
            ),
            addressed(&warn("PHONE-9"), "p1", "opened", "proximity_warning", "15:00:00"),
            // The field wins over the kind, both ways.
            monitoring(
                "x1",
                "opened",
                "position_unknown",
                "SIM-0002",
                "16:00:00",
                r#","attention":"action""#,
            ),
            monitoring(
                "l1",
                "late_breach",
                "zone_breach",
                "SIM-0002",
                "17:00:00",
                r#","attention":"information""#,
            ),
            // Five police messages over forty minutes: not short.
            monitoring("c2", "opened", "curfew_breach", "SIM-0002", "20:00:00", ""),
            addressed(police, "c2", "opened", "curfew_breach", "20:00:00"),
            addressed(police, "c2", "updated", "curfew_breach", "20:10:00"),
            addressed(police, "c2", "escalated", "curfew_breach", "20:15:00"),
            addressed(police, "c2", "updated", "curfew_breach", "20:20:00"),
            addressed(
                "kordon/v1/cases/SIM-0002/coordinators",
                "c2",
                "escalated",
                "curfew_breach",
                "20:15:00",
            ),
            monitoring("c2", "cleared", "curfew_breach", "SIM-0002", "20:40:00", ""),
            addressed(police, "c2", "cleared", "curfew_breach", "20:40:00"),
            // One police message, never cleared: open to the end of the day.
            monitoring("t2", "opened", "tamper", "SIM-0002", "23:55:00", ""),
            addressed(police, "t2", "opened", "tamper", "23:55:00"),
            // A warning to her for an episode the monitoring room never saw.
            addressed(&warn("VIC-0001"), "zz", "opened", "tamper", "21:00:00"),
        ]
        .join("\n")
    }

    #[test]
    fn the_police_reach_of_scripted_truths_and_encounters() {
        let mut r = recording();
        let truth = |case: &str, kind, from: &str, to: &str, intent, incident: &str| Truth {
            case: case.into(),
            kind,
            start_ms: ms(from),
            end_ms: ms(to),
            intent,
            incident: Some(incident.into()),
            fix_interval_s: 10.0,
        };
        r.truth = vec![
            // Paged 20 s after the onset: two fix intervals.
            truth(
                "SIM-0001",
                TruthKind::Zone,
                "10:00:00",
                "10:04:00",
                true,
                "approach_home",
            ),
            // Paged before it began, by an episode still open: no delay.
            truth(
                "SIM-0001",
                TruthKind::Proximity,
                "11:00:00",
                "11:05:00",
                true,
                "follow",
            ),
            // Never paged.
            truth(
                "SIM-0001",
                TruthKind::Proximity,
                "18:00:00",
                "18:05:00",
                true,
                "follow",
            ),
            // A passing-by the police heard of, one they did not.
            truth(
                "SIM-0002",
                TruthKind::Encounter,
                "12:00:00",
                "12:01:00",
                false,
                "pass_by",
            ),
            truth(
                "SIM-0002",
                TruthKind::Encounter,
                "14:00:00",
                "14:01:00",
                false,
                "pass_by",
            ),
            // A shared ride the police did not hear of.
            truth(
                "SIM-0002",
                TruthKind::Encounter,
                "16:00:00",
                "16:10:00",
                false,
                "co_travel",
            ),
        ];
        let police = POLICE_TOPIC;
        let text = [
            monitoring("z", "opened", "zone_breach", "SIM-0001", "10:00:00", ""),
            addressed(police, "z", "opened", "zone_breach", "10:00:20"),
            monitoring("z", "cleared", "zone_breach", "SIM-0001", "10:06:00", ""),
            monitoring(
                "f",
                "opened",
                "proximity_breach",
                "SIM-0001",
                "10:40:00",
                "",
            ),
            addressed(police, "f", "opened", "proximity_breach", "10:40:00"),
            monitoring(
                "f",
                "cleared",
                "proximity_breach",
                "SIM-0001",
                "11:10:00",
                "",
            ),
            monitoring(
                "g",
                "opened",
                "proximity_breach",
                "SIM-0001",
                "18:00:00",
                "",
            ),
            monitoring(
                "p",
                "opened",
                "proximity_breach",
                "SIM-0002",
                "12:00:00",
                "",
            ),
            addressed(police, "p", "updated", "proximity_breach", "12:00:30"),
            monitoring(
                "p",
                "cleared",
                "proximity_breach",
                "SIM-0002",
                "12:03:00",
                "",
            ),
            monitoring(
                "q",
                "opened",
                "proximity_breach",
                "SIM-0002",
                "14:00:00",
                "",
            ),
            monitoring(
                "q",
                "cleared",
                "proximity_breach",
                "SIM-0002",
                "14:03:00",
                "",
            ),
            monitoring(
                "c",
                "opened",
                "proximity_breach",
                "SIM-0002",
                "16:00:00",
                "",
            ),
            monitoring(
                "c",
                "cleared",
                "proximity_breach",
                "SIM-0002",
                "16:12:00",
                "",
            ),
        ]
        .join("\n");
        let s = score(&r, &read_alerts(&text).unwrap());
        assert_eq!((s.scripted_to_police, s.scripted_police_missed), (2, 1));
        assert_eq!(s.scripted_police_delay_p95_fix_intervals, Some(2.0));
        assert_eq!(s.police_missed_list.len(), 1);
        assert!(
            s.police_missed_list[0].contains("18:00:00"),
            "{:?}",
            s.police_missed_list
        );
        assert_eq!((s.pass_by_encounters, s.pass_by_to_police), (2, 1));
        assert_eq!(s.pass_by_police_share, Some(0.5));
        assert_eq!((s.co_travel_encounters, s.co_travel_to_police), (1, 0));
        assert_eq!(s.co_travel_police_share, Some(0.0));
    }

    #[test]
    fn what_people_receive_is_counted_per_audience() {
        let s = score(&recording(), &read_alerts(&lines()).unwrap());
        // The detection figures still come from the monitoring lines.
        assert_eq!((s.detected, s.missed), (1, 0));
        assert_eq!(s.pair_days, 2.0);

        // b1, x1, c2, t2 to act on; g1, p1, l1 to inform.
        assert_eq!(s.monitoring_actionable_episodes, 4);
        assert_eq!(s.monitoring_informational_episodes, 3);
        assert_eq!(s.monitoring_actionable_per_pair_day, 2.0);
        assert_eq!(s.monitoring_informational_per_pair_day, 1.5);
        let kinds: Vec<(&str, f64, f64)> = s
            .monitoring_by_kind
            .iter()
            .map(|(k, r)| (k.as_str(), r.actionable, r.informational))
            .collect();
        assert_eq!(
            kinds,
            [
                ("curfew_breach", 0.5, 0.0),
                ("gps_lost", 0.0, 0.5),
                ("position_unknown", 0.5, 0.0),
                ("proximity_warning", 0.0, 0.5),
                ("tamper", 0.5, 0.0),
                ("zone_breach", 0.5, 0.5),
            ]
        );

        // b1: 3, c2: 5, t2: 1.
        assert_eq!(s.police_messages, 9);
        assert_eq!(s.police_episodes, 3);
        assert_eq!(s.police_messages_per_episode, Some(3.0));
        assert_eq!(s.police_messages_per_episode_p50, Some(3.0));
        assert_eq!(s.police_messages_per_episode_max_under_10_min, Some(3));

        // b1 to VIC-0001 (backed), p1 to PHONE-9 (her case has no truth),
        // zz to VIC-0001 (no monitoring episode).
        assert_eq!(s.victim_messages, 3);
        assert_eq!(s.victim_messages_per_pair_day, 1.5);
        assert_eq!(s.victim_messages_unbacked, 2);
        assert_eq!(s.victim_messages_unbacked_per_pair_day, 1.0);
        assert_eq!(
            s.victim_messages_by_kind["zone_breach"],
            VictimKind {
                messages: 1,
                unbacked: 0
            }
        );
        assert_eq!(s.offender_messages, 1);
        assert_eq!(s.offender_messages_per_pair_day, 0.5);
        let audiences: Vec<(&str, u32)> = s
            .messages_by_audience
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(
            audiences,
            [
                ("coordinators", 1),
                ("monitoring", 11),
                ("offender", 1),
                ("police", 9),
                ("victim", 3),
            ]
        );

        let json = serde_json::to_value(&s).unwrap();
        for key in [
            "monitoring_actionable_per_pair_day",
            "monitoring_informational_per_pair_day",
            "monitoring_by_kind",
            "police_messages",
            "police_episodes",
            "police_messages_per_episode",
            "police_messages_per_episode_p50",
            "police_messages_per_episode_max_under_10_min",
            "victim_messages_per_pair_day",
            "victim_messages_unbacked_per_pair_day",
            "offender_messages_per_pair_day",
        ] {
            assert!(json.get(key).is_some(), "{key} in the JSON");
        }
        assert_eq!(
            json["monitoring_by_kind"]["zone_breach"]["informational"],
            0.5
        );
        let table = s.to_string();
        assert!(table.contains("What people receive"), "{table}");
        assert!(
            table.contains("| police | messages / episodes | 9 / 3 |"),
            "{table}"
        );
    }

    #[test]
    fn a_victim_warning_is_backed_within_the_slack_and_not_beyond() {
        let warn = |id: &str, ts: &str| {
            addressed(
                "kordon/v1/devices/VIC-0001/warning",
                id,
                "opened",
                "proximity_warning",
                ts,
            )
        };
        let text = [
            // Opens 4 min 59 s after the truth ended: backed.
            monitoring(
                "late",
                "opened",
                "proximity_warning",
                "SIM-0001",
                "10:08:59",
                "",
            ),
            warn("late", "10:08:59"),
            // Opens 5 min 1 s after: not backed.
            monitoring(
                "later",
                "opened",
                "proximity_warning",
                "SIM-0001",
                "10:09:01",
                "",
            ),
            warn("later", "10:09:01"),
            // Cleared 1 min before the truth began: backed.
            monitoring(
                "early",
                "opened",
                "proximity_warning",
                "SIM-0001",
                "09:50:00",
                "",
            ),
            monitoring(
                "early",
                "cleared",
                "proximity_warning",
                "SIM-0001",
                "09:59:00",
                "",
            ),
            warn("early", "09:50:00"),
            // Cleared 3 min before: not backed.
            monitoring(
                "earlier",
                "opened",
                "proximity_warning",
                "SIM-0001",
                "09:40:00",
                "",
            ),
            monitoring(
                "earlier",
                "cleared",
                "proximity_warning",
                "SIM-0001",
                "09:57:00",
                "",
            ),
            warn("earlier", "09:40:00"),
        ]
        .join("\n");
        let s = score(&recording(), &read_alerts(&text).unwrap());
        assert_eq!((s.victim_messages, s.victim_messages_unbacked), (4, 2));
        // No attention field: a warning informs.
        assert_eq!(s.monitoring_informational_episodes, 4);
        assert_eq!(s.police_messages_per_episode, None);
    }

    #[test]
    fn a_line_for_another_audience_needs_what_is_counted() {
        // A police message without an id is named.
        let err = read_alerts(
            "\n{\"topic\":\"kordon/v1/alerts/police\",\"message\":{\"event\":\"opened\",\"ts\":\"2026-11-30T10:00:00Z\"}}",
        )
        .unwrap_err();
        assert!(err.starts_with("line 2: kordon/v1/alerts/police:"), "{err}");
        // An unknown topic is counted, whatever it carries.
        let lines = read_alerts("{\"topic\":\"kordon/v1/something/new\",\"message\":[1]}").unwrap();
        let s = score(&recording(), &lines);
        assert_eq!(s.messages_by_audience["other"], 1);
    }
}
