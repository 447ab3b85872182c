//! Alert quality: the alerts kordon published (as the monitoring topic
//! carries them) against a recording's ground truth.
//!
//! An alert *episode* is all messages with one id; it alarms from the first
//! message whose kind is a breach (a warning escalated later counts from
//! then) until it is cleared. A truth is *detected* when an alarming episode
//! of its family for its case overlaps it (give or take two minutes before
//! and five after); the *delay* runs from the true onset to the alarm (zero
//! if the alarm was already on). An alarm that overlaps no truth of its
//! family is a *false alert*, except that proximity alarms for a scripted
//! passing-by are *encounters*: real closeness without intent, counted apart.
//!
//! Truths shorter than [`BRIEF_MS`] (a car cutting through the edge of a
//! zone between two fixes) are counted apart as *brief*: no fix need fall
//! inside them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::recording::{Recording, TruthKind};

const BEFORE_MS: i64 = 120_000;
const AFTER_MS: i64 = 300_000;
/// Shorter truths are scored apart.
pub const BRIEF_MS: i64 = 30_000;

/// One line of ALERTS.jsonl (the fields scoring needs).
#[derive(Debug, Clone, Deserialize)]
pub struct AlertLine {
    pub id: String,
    pub event: String,
    pub kind: String,
    pub case: String,
    #[serde(default)]
    pub role: Option<String>,
    pub ts: jiff::Timestamp,
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

fn truth_family(kind: TruthKind) -> Family {
    match kind {
        TruthKind::Zone => Family::Zone,
        TruthKind::Proximity | TruthKind::Encounter => Family::Proximity,
        TruthKind::Curfew => Family::Curfew,
        TruthKind::Tamper => Family::Tamper,
        TruthKind::VictimOffline => Family::VictimOffline,
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
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

/// Parses ALERTS.jsonl; a line that is not an alert is an error naming it.
pub fn read_alerts(text: &str) -> Result<Vec<AlertLine>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

pub fn score(recording: &Recording, alerts: &[AlertLine]) -> Score {
    // Episodes in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut episodes: BTreeMap<String, Episode> = BTreeMap::new();
    for a in alerts {
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
            }
        });
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
        let fam = truth_family(t.kind);
        let hits: Vec<&Episode> = episodes
            .values()
            .filter(|e| e.case == t.case && e.family == Some(fam))
            .filter(|e| {
                e.alarm_ms.is_some_and(|a| {
                    a <= t.end_ms + AFTER_MS
                        && e.clear_ms.unwrap_or(i64::MAX) >= t.start_ms - BEFORE_MS
                })
            })
            .collect();
        for e in &hits {
            matched.insert(e.id.clone());
            if t.kind == TruthKind::Encounter {
                encounter_ids.insert(e.id.clone());
            }
        }
        if t.kind == TruthKind::Encounter {
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
                missed_list.push(format!(
                    "{} {} from {} to {} ({})",
                    t.case,
                    t.kind.name(),
                    jiff::Timestamp::from_millisecond(t.start_ms).unwrap_or_default(),
                    jiff::Timestamp::from_millisecond(t.end_ms).unwrap_or_default(),
                    t.incident.as_deref().unwrap_or("unscripted")
                ));
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
    }
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
        for m in self.missed_list.iter().take(20) {
            writeln!(f, "missed: {m}")?;
        }
        for m in self.false_list.iter().take(20) {
            writeln!(f, "false: {m}")?;
        }
        for m in self.slowest.iter().take(5) {
            writeln!(f, "slowest: {m}")?;
        }
        Ok(())
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
