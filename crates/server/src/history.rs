//! What happened, read back from the journal for people: a case's
//! timeline, the tracks of an alert's episode and the hour before it, and
//! the deadline report (how long until acknowledged, resolved, and taken
//! by the police, against the targets of `[reports]`).
//!
//! It reads the journal on a connection of its own
//! ([`kordon_journal::Reader`]), off the engine's thread and off the async
//! runtime's workers; it never writes, and it shows an admin nothing that
//! locates a protected person.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jiff::Timestamp;
use kordon_core::{CaseId, DeviceId, Fix, Phase};
use kordon_journal::{Reader, Record};
use serde::{Deserialize, Serialize};

use crate::config::Role;
use crate::core_thread::Command;
use crate::http::{ask, ApiError, ApiState, Caller, ALL};

pub mod report;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/cases/{id}/timeline", get(timeline))
        .route("/api/v1/alerts/{id}/playback", get(playback))
        .route("/api/v1/reports/deadlines", get(report::deadlines_json))
        .route("/api/v1/reports/deadlines.csv", get(report::deadlines_csv))
        .route("/api/v1/reports/compliance", get(report::compliance_json))
        .route(
            "/api/v1/reports/compliance.csv",
            get(report::compliance_csv),
        )
}

/// Runs a journal query on a blocking thread.
pub(crate) async fn read<T: Send + 'static>(
    state: &ApiState,
    query: impl FnOnce(&Reader) -> Result<T, kordon_journal::JournalError> + Send + 'static,
) -> Result<T, ApiError> {
    let path = state.journal.clone();
    tokio::task::spawn_blocking(move || {
        let reader = Reader::open(&path)?;
        query(&reader)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the journal could not be read: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct TimelineQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

/// One thing that happened in a case.
#[derive(Debug, Serialize)]
pub struct TimelineItem {
    pub seq: u64,
    pub at: Timestamp,
    /// `alert`, `ack`, `police_ack`, `resolve`, `note`, `escalate`,
    /// `case_put`, `case_removed`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// For `alert`: opened, updated, cleared, late_breach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// For `alert`: what kind of alert (proximity_breach, tamper, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_kind: Option<kordon_core::EventKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<kordon_core::Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certainty: Option<kordon_core::Certainty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
}

impl TimelineItem {
    fn new(seq: u64, at: Timestamp, kind: &'static str) -> Self {
        TimelineItem {
            seq,
            at,
            kind,
            alert: None,
            phase: None,
            alert_kind: None,
            severity: None,
            certainty: None,
            distance_m: None,
            device: None,
            operator: None,
            text: None,
            disposition: None,
        }
    }

    /// The item a record shows, if it shows one; never a position.
    fn of(seq: u64, record: Record, role: Role) -> Option<Self> {
        let item = match record {
            Record::Event { event, at } => {
                let mut item = TimelineItem::new(seq, at, "alert");
                let locates_her = role == Role::Admin && event.kind.family() == "proximity";
                item.alert = Some(event.id.to_string());
                item.phase = Some(event.phase);
                item.alert_kind = Some(event.kind);
                item.severity = Some(event.severity);
                item.certainty = event.certainty;
                item.distance_m = event.distance_m.filter(|_| !locates_her);
                item.device = Some(event.device);
                item
            }
            Record::Ack {
                alert,
                operator,
                note,
                at,
                police,
            } => {
                let mut item =
                    TimelineItem::new(seq, at, if police { "police_ack" } else { "ack" });
                item.alert = Some(alert);
                item.operator = Some(operator);
                item.text = note;
                item
            }
            Record::Resolve {
                alert,
                device,
                operator,
                note,
                at,
                disposition,
            } => {
                let mut item = TimelineItem::new(seq, at, "resolve");
                item.alert = Some(alert);
                item.device = Some(device);
                item.operator = Some(operator);
                item.text = note;
                item.disposition = Some(disposition.unwrap_or_else(|| "bracelet_checked".into()));
                item
            }
            Record::Note {
                alert,
                operator,
                text,
                at,
            } => {
                let mut item = TimelineItem::new(seq, at, "note");
                item.alert = Some(alert);
                item.operator = Some(operator);
                item.text = Some(text);
                item
            }
            Record::Escalate {
                alert,
                operator,
                note,
                at,
            } => {
                let mut item = TimelineItem::new(seq, at, "escalate");
                item.alert = Some(alert);
                item.operator = Some(operator);
                item.text = Some(note);
                item
            }
            Record::CaseUpsert { at, .. } => TimelineItem::new(seq, at, "case_put"),
            Record::CaseRemove { at, .. } => TimelineItem::new(seq, at, "case_removed"),
            _ => return None,
        };
        Some(item)
    }
}

/// Drops updates that change nothing a person reads at a glance: an
/// update stays when its kind or certainty differs from the alert's
/// previous item (a warning become a breach, a possible one certain).
fn without_repeats(items: Vec<TimelineItem>) -> Vec<TimelineItem> {
    // Newest first: compare each update with the next older item.
    let mut last: BTreeMap<
        String,
        (
            Option<kordon_core::EventKind>,
            Option<kordon_core::Certainty>,
        ),
    > = BTreeMap::new();
    let mut keep: Vec<TimelineItem> = items
        .into_iter()
        .rev()
        .filter(|item| {
            let (Some(alert), "alert") = (&item.alert, item.kind) else {
                return true;
            };
            let now = (item.alert_kind, item.certainty);
            let before = last.insert(alert.clone(), now);
            item.phase != Some(Phase::Updated) || before != Some(now)
        })
        .collect();
    keep.reverse();
    keep
}

async fn timeline(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let case = CaseId::new(&id);
    let limit = q.limit.unwrap_or(500).clamp(1, 5_000);
    let role = caller.role;
    let items = read(&state, move |reader| {
        reader.case_timeline(&case, q.before, limit)
    })
    .await?
    .into_iter()
    .filter_map(|(seq, record)| TimelineItem::of(seq, record, role))
    .collect();
    Ok(Json(without_repeats(items)).into_response())
}

/// A point of a track.
#[derive(Debug, Serialize)]
struct TrackPoint {
    ts: Timestamp,
    lat: f64,
    lon: f64,
    acc_m: f64,
}

#[derive(Debug, Serialize)]
struct Playback {
    alert: String,
    case: CaseId,
    from: Timestamp,
    to: Timestamp,
    onset: Timestamp,
    tracks: BTreeMap<DeviceId, Vec<TrackPoint>>,
}

/// How far before an episode its playback starts.
const PLAYBACK_BEFORE: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);
/// The longest playback, from its start.
const PLAYBACK_MAX: jiff::SignedDuration = jiff::SignedDuration::from_hours(12);

/// The tracks of an alert's case devices, from an hour before its onset to
/// its end (or now): the monitoring room replays what happened.
async fn playback(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let alert = ask(&state, |reply| Command::Alert(id.clone(), reply))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no alert `{id}`")))?;
    let now = state.clock.now();
    let from = alert.latest.onset - PLAYBACK_BEFORE;
    let end = if alert.open { now } else { alert.latest.ts };
    let to = end.min(from + PLAYBACK_MAX).max(from);
    let case = alert.latest.case.clone();
    let fixes: Vec<Fix> = {
        let case = case.clone();
        read(&state, move |reader| {
            reader.case_fixes(&case, None, from, to)
        })
        .await?
    };
    let mut tracks: BTreeMap<DeviceId, Vec<TrackPoint>> = BTreeMap::new();
    for fix in fixes {
        tracks
            .entry(fix.device.clone())
            .or_default()
            .push(TrackPoint {
                ts: fix.ts,
                lat: fix.lat,
                lon: fix.lon,
                acc_m: fix.accuracy_m,
            });
    }
    for track in tracks.values_mut() {
        track.sort_by_key(|p| p.ts);
    }
    Ok(Json(Playback {
        alert: id,
        case,
        from,
        to,
        onset: alert.latest.onset,
        tracks,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(seq: u64, kind: kordon_core::EventKind) -> TimelineItem {
        let mut item = TimelineItem::new(seq, Timestamp::UNIX_EPOCH, "alert");
        item.alert = Some("a".into());
        item.phase = Some(Phase::Updated);
        item.alert_kind = Some(kind);
        item
    }

    #[test]
    fn an_update_that_changes_nothing_at_a_glance_is_left_out() {
        use kordon_core::EventKind::*;
        let mut opened = update(1, ProximityWarning);
        opened.phase = Some(Phase::Opened);
        // Newest first, as the journal is read.
        let items = vec![
            update(4, ProximityBreach),
            update(3, ProximityWarning),
            update(2, ProximityWarning),
            opened,
        ];
        let seqs: Vec<u64> = without_repeats(items).iter().map(|i| i.seq).collect();
        assert_eq!(seqs, vec![4, 1]);
    }
}
