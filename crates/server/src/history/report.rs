//! The deadline report: for every alert raised in a period, how long until
//! the monitoring room acknowledged it, until it was resolved, and (police
//! alerts) until the police acknowledged it, each against its target; and
//! per partner and ISO week, the share of alerts handled within target.
//!
//! It is computed from the journal alone (events, acknowledgements,
//! resolutions, escalations, case files), so it covers alerts the desk has
//! long forgotten and says the same after a restart.

use std::collections::{BTreeMap, HashSet};

use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::{SignedDuration, Timestamp};
use kordon_alert::AlertDesk;
use kordon_core::{CaseId, EventKind, Phase, RiskLevel, Severity};
use kordon_journal::Record;
use serde::{Deserialize, Serialize};

use super::read;
use crate::config::{DeadlineTargets, Role};
use crate::http::{ApiError, ApiState, Caller};

/// One alert's deadlines.
#[derive(Debug, Clone, Serialize)]
pub struct AlertDeadlines {
    pub alert: String,
    pub case: CaseId,
    pub kind: EventKind,
    pub severity: Severity,
    pub raised_at: Timestamp,
    pub police: bool,
    /// The monitoring room was asked to act on it (see
    /// `kordon_alert::attention`): its deadlines apply.
    pub action: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub police_acknowledged_s: Option<f64>,
    /// Whether each deadline was met; absent where it does not apply (the
    /// room's apply to alerts that ask for acknowledgement: police alerts,
    /// and those asking the room to act; the police's to police alerts)
    /// and where it is still running (not done, target not passed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_in_time: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_in_time: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub police_in_time: Option<bool>,
}

/// Rebuilds each alert's deadlines from the journal's timeline records of
/// a period, `risk` giving each case's risk level (for the police rule)
/// and `action` whether the room was asked to act on an alert.
pub fn deadlines(
    records: &[(u64, Record)],
    risk: impl Fn(&CaseId) -> RiskLevel,
    action: impl Fn(&str) -> bool,
    targets: &DeadlineTargets,
    now: Timestamp,
) -> Vec<AlertDeadlines> {
    let mut alerts: BTreeMap<String, AlertDeadlines> = BTreeMap::new();
    let since = |raised: Timestamp, at: Timestamp| at.duration_since(raised).as_secs_f64().max(0.0);
    for (_, record) in records {
        match record {
            Record::Event { event, at } if event.phase == Phase::Opened => {
                let police = AlertDesk::needs_police(event, risk(&event.case));
                alerts
                    .entry(event.id.to_string())
                    .or_insert(AlertDeadlines {
                        alert: event.id.to_string(),
                        case: event.case.clone(),
                        kind: event.kind,
                        severity: event.severity,
                        raised_at: *at,
                        police,
                        action: false,
                        acknowledged_s: None,
                        resolved_s: None,
                        police_acknowledged_s: None,
                        acknowledged_in_time: None,
                        resolved_in_time: None,
                        police_in_time: None,
                    });
            }
            Record::Event { event, .. } => {
                if let Some(a) = alerts.get_mut(&event.id.to_string()) {
                    // As the desk: a clearing pages no one.
                    if event.phase != Phase::Cleared
                        && AlertDesk::needs_police(event, risk(&event.case))
                    {
                        a.police = true;
                    }
                    // The alert at its worst: a warning that became a breach.
                    if event.severity > a.severity {
                        a.kind = event.kind;
                        a.severity = event.severity;
                    }
                }
            }
            Record::Ack {
                alert, at, police, ..
            } => {
                if let Some(a) = alerts.get_mut(alert) {
                    let took = Some(since(a.raised_at, *at));
                    if *police {
                        a.police_acknowledged_s = a.police_acknowledged_s.or(took);
                    } else {
                        a.acknowledged_s = a.acknowledged_s.or(took);
                    }
                }
            }
            Record::Resolve { alert, at, .. } => {
                if let Some(a) = alerts.get_mut(alert) {
                    a.resolved_s = a.resolved_s.or(Some(since(a.raised_at, *at)));
                    a.acknowledged_s = a.acknowledged_s.or(Some(since(a.raised_at, *at)));
                }
            }
            Record::Escalate { alert, .. } => {
                if let Some(a) = alerts.get_mut(alert) {
                    a.police = true;
                }
            }
            _ => {}
        }
    }
    let mut rows: Vec<AlertDeadlines> = alerts.into_values().collect();
    for row in &mut rows {
        row.action = action(&row.alert);
        let asks = row.police || row.action;
        // Done: in time or not. Not done: missed once the target has
        // passed, and not judged yet before.
        let within = |took: Option<f64>, target_s: u32, raised: Timestamp| match took {
            Some(s) => Some(s <= f64::from(target_s)),
            None => (now.duration_since(raised) > SignedDuration::from_secs(target_s.into()))
                .then_some(false),
        };
        row.acknowledged_in_time = asks
            .then(|| within(row.acknowledged_s, targets.acknowledge_s, row.raised_at))
            .flatten();
        row.resolved_in_time = asks
            .then(|| within(row.resolved_s, targets.resolve_s, row.raised_at))
            .flatten();
        row.police_in_time = row
            .police
            .then(|| {
                within(
                    row.police_acknowledged_s,
                    targets.police_acknowledge_s,
                    row.raised_at,
                )
            })
            .flatten();
    }
    rows.sort_by(|a, b| a.raised_at.cmp(&b.raised_at).then(a.alert.cmp(&b.alert)));
    rows
}

/// One partner's week.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeekCompliance {
    /// ISO week, e.g. `2026-W48`.
    pub week: String,
    /// `monitoring` or `police`.
    pub partner: &'static str,
    /// Alerts whose deadlines apply to this partner.
    pub alerts: usize,
    pub acknowledged_in_time: usize,
    pub share_in_time: f64,
    /// The share the partner agreed to (`[reports.targets] share`).
    pub target_share: f64,
    pub met: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_in_time: Option<usize>,
}

pub fn compliance(rows: &[AlertDeadlines], target_share: f64) -> Vec<WeekCompliance> {
    let mut weeks: BTreeMap<(String, &'static str), WeekCompliance> = BTreeMap::new();
    for row in rows {
        let date = jiff::tz::TimeZone::UTC.to_datetime(row.raised_at).date();
        let iso = date.iso_week_date();
        let week = format!("{}-W{:02}", iso.year(), iso.week());
        let mut count = |partner: &'static str, in_time: bool, resolved: Option<bool>| {
            let entry = weeks
                .entry((week.clone(), partner))
                .or_insert_with(|| WeekCompliance {
                    week: week.clone(),
                    partner,
                    alerts: 0,
                    acknowledged_in_time: 0,
                    share_in_time: 0.0,
                    target_share,
                    met: false,
                    resolved_in_time: resolved.map(|_| 0),
                });
            entry.alerts += 1;
            entry.acknowledged_in_time += usize::from(in_time);
            if let (Some(n), Some(true)) = (entry.resolved_in_time.as_mut(), resolved) {
                *n += 1;
            }
        };
        if let Some(in_time) = row.acknowledged_in_time {
            count("monitoring", in_time, row.resolved_in_time);
        }
        if let Some(in_time) = row.police_in_time {
            count("police", in_time, None);
        }
    }
    let mut out: Vec<WeekCompliance> = weeks.into_values().collect();
    for w in &mut out {
        w.share_in_time = w.acknowledged_in_time as f64 / w.alerts.max(1) as f64;
        w.met = w.share_in_time >= w.target_share;
    }
    out
}

#[derive(Deserialize)]
pub struct Period {
    from: Option<Timestamp>,
    to: Option<Timestamp>,
    weeks: Option<u32>,
}

impl Period {
    /// From and to, at `now` (default: the last 7 days); a 400 when `from`
    /// is not before `to`.
    pub(crate) fn bounds(&self, now: Timestamp) -> Result<(Timestamp, Timestamp), ApiError> {
        let days = i64::from(self.weeks.unwrap_or(1).clamp(1, 53)) * 7;
        let to = self.to.unwrap_or(now);
        let from = self
            .from
            .unwrap_or_else(|| to - SignedDuration::from_hours(24 * days));
        if from >= to {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "`from` must be before `to`",
            ));
        }
        Ok((from, to))
    }
}

/// What one journal holds for the report of a period: its timeline
/// records, each case's risk level as it stood at the period's end, and
/// the alerts the monitoring room was asked to act on.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ReportInputs {
    pub records: Vec<Record>,
    pub risks: BTreeMap<CaseId, RiskLevel>,
    pub asked: HashSet<String>,
}

impl ReportInputs {
    /// What `reader`'s journal holds for the period from `from` to `to`.
    pub fn read(
        reader: &kordon_journal::Reader,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<ReportInputs, kordon_journal::JournalError> {
        let records = reader.timeline_between(from, to)?;
        let mut risks: BTreeMap<CaseId, RiskLevel> = BTreeMap::new();
        let last = records.last().map_or(0, |(seq, _)| *seq) + 1;
        for (_, record) in &records {
            if let Record::Event { event, .. } = record {
                if !risks.contains_key(&event.case) {
                    // The case as it stood at the end of the period.
                    let risk = reader
                        .case_before(&event.case, last)?
                        .map_or(RiskLevel::High, |c| c.risk);
                    risks.insert(event.case.clone(), risk);
                }
            }
        }
        let asked = reader
            .outbound_between(kordon_alert::topics::MONITORING, from, to)?
            .iter()
            .filter_map(|payload| serde_json::from_str::<serde_json::Value>(payload).ok())
            .filter(|m| m["attention"] == "action")
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        let records = records.into_iter().map(|(_, record)| record).collect();
        Ok(ReportInputs {
            records,
            risks,
            asked,
        })
    }

    /// Each alert's deadlines, judged at `now`.
    pub fn deadlines(&self, targets: &DeadlineTargets, now: Timestamp) -> Vec<AlertDeadlines> {
        let numbered: Vec<(u64, Record)> = self.records.iter().cloned().map(|r| (0, r)).collect();
        deadlines(
            &numbered,
            |case| self.risks.get(case).copied().unwrap_or(RiskLevel::High),
            |alert| self.asked.contains(alert),
            targets,
            now,
        )
    }
}

/// The report's rows for a period (default: the last 7 days).
async fn rows(state: &ApiState, period: Period) -> Result<Vec<AlertDeadlines>, ApiError> {
    let now = state.clock.now();
    let (from, to) = period.bounds(now)?;
    let inputs = read(state, move |reader| ReportInputs::read(reader, from, to)).await?;
    Ok(inputs.deadlines(&state.targets, now))
}

pub async fn deadlines_json(
    caller: Caller,
    State(state): State<ApiState>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let rows = rows(&state, period).await?;
    Ok(Json(serde_json::json!({ "targets": state.targets, "alerts": rows })).into_response())
}

pub async fn deadlines_csv(
    caller: Caller,
    State(state): State<ApiState>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let rows = rows(&state, period).await?;
    Ok(deadlines_csv_file(rows))
}

/// The deadline report as a CSV download.
pub(crate) fn deadlines_csv_file(rows: Vec<AlertDeadlines>) -> Response {
    let mut out = String::from(
        "alert,case,kind,severity,raised_at,police,action,acknowledged_s,resolved_s,police_acknowledged_s,acknowledged_in_time,resolved_in_time,police_in_time\n",
    );
    let secs = |s: Option<f64>| s.map(|s| format!("{s:.0}")).unwrap_or_default();
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.alert,
            r.case,
            r.kind,
            serde_json::to_value(r.severity)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            r.raised_at,
            r.police,
            r.action,
            secs(r.acknowledged_s),
            secs(r.resolved_s),
            secs(r.police_acknowledged_s),
            r.acknowledged_in_time
                .map(|b| b.to_string())
                .unwrap_or_default(),
            r.resolved_in_time
                .map(|b| b.to_string())
                .unwrap_or_default(),
            r.police_in_time.map(|b| b.to_string()).unwrap_or_default(),
        ));
    }
    csv_file("kordon-deadlines.csv", out)
}

pub async fn compliance_csv(
    caller: Caller,
    State(state): State<ApiState>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let rows = rows(&state, period).await?;
    Ok(compliance_csv_file(&rows, state.targets.share))
}

/// The compliance report as a CSV download.
pub(crate) fn compliance_csv_file(rows: &[AlertDeadlines], target_share: f64) -> Response {
    let mut out = String::from(
        "week,partner,alerts,acknowledged_in_time,share_in_time,target_share,met,resolved_in_time\n",
    );
    for w in compliance(rows, target_share) {
        out.push_str(&format!(
            "{},{},{},{},{:.3},{},{},{}\n",
            w.week,
            w.partner,
            w.alerts,
            w.acknowledged_in_time,
            w.share_in_time,
            w.target_share,
            w.met,
            w.resolved_in_time
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ));
    }
    csv_file("kordon-compliance.csv", out)
}

fn csv_file(name: &str, body: String) -> Response {
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn compliance_json(
    caller: Caller,
    State(state): State<ApiState>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let rows = rows(&state, period).await?;
    Ok(Json(compliance(&rows, state.targets.share)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kordon_core::{Certainty, DeviceId, EpisodeId, Event, Role as Wearer};

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_764_460_800 + s).unwrap()
    }

    fn opened(id: EpisodeId, kind: EventKind, severity: Severity, s: i64) -> (u64, Record) {
        let event = Event {
            id,
            case: CaseId::from("C1"),
            order: None,
            kind,
            severity,
            phase: Phase::Opened,
            device: DeviceId::from("OFF-1"),
            role: Wearer::Offender,
            onset: at(s),
            at: at(s),
            certainty: Some(Certainty::Certain),
            distance_m: None,
            offender: None,
            protected: None,
            reason: None,
            context: None,
            between_fixes: None,
            pattern: None,
        };
        (s as u64, Record::Event { event, at: at(s) })
    }

    fn ack(id: &str, s: i64, police: bool) -> (u64, Record) {
        let record = Record::Ack {
            alert: id.into(),
            operator: "op".into(),
            note: None,
            at: at(s),
            police,
        };
        (s as u64, record)
    }

    #[test]
    fn deadlines_apply_to_alerts_that_ask_for_someone_and_are_judged_against_the_targets() {
        let breach = EpisodeId::derive(&CaseId::from("C1"), "zone", "breach", at(0));
        let battery = EpisodeId::derive(&CaseId::from("C1"), "OFF-1", "battery", at(10));
        let records = vec![
            opened(breach, EventKind::ZoneBreach, Severity::Extreme, 0),
            opened(battery, EventKind::BatteryLow, Severity::Minor, 10),
            ack(&breach.to_string(), 90, false),
            ack(&breach.to_string(), 400, true),
        ];
        let targets = DeadlineTargets::default();
        let rows = deadlines(
            &records,
            |_| RiskLevel::Medium,
            |_| false,
            &targets,
            at(7200),
        );
        let row = |id: EpisodeId| rows.iter().find(|r| r.alert == id.to_string()).unwrap();
        let b = row(breach);
        assert!(b.police);
        assert_eq!(b.acknowledged_s, Some(90.0));
        assert_eq!(b.acknowledged_in_time, Some(true));
        assert_eq!(b.police_acknowledged_s, Some(400.0));
        assert_eq!(b.police_in_time, Some(false), "300 s is the police target");
        assert_eq!(
            b.resolved_in_time,
            Some(false),
            "unresolved after two hours"
        );
        let battery_row = row(battery);
        assert_eq!(battery_row.acknowledged_in_time, None, "it asks nobody");
        assert_eq!(battery_row.police_in_time, None);

        let weeks = compliance(&rows, 0.95);
        let room = weeks.iter().find(|w| w.partner == "monitoring").unwrap();
        assert_eq!((room.alerts, room.acknowledged_in_time), (1, 1));
        assert!(room.met);
        let police = weeks.iter().find(|w| w.partner == "police").unwrap();
        assert_eq!((police.alerts, police.acknowledged_in_time), (1, 0));
        assert!(!police.met);
        assert_eq!(police.week, "2025-W48");
    }
}
