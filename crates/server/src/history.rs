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
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimelineItem {
    /// Its record's place in the journal it was read from (in a cluster,
    /// the journal of the instance that answered: numbers from two
    /// instances do not compare).
    pub seq: u64,
    pub at: Timestamp,
    /// `alert`, `ack`, `police_ack`, `resolve`, `note`, `escalate`,
    /// `case_put`, `case_removed`.
    pub kind: String,
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
    fn new(seq: u64, at: Timestamp, kind: &str) -> Self {
        TimelineItem {
            seq,
            at,
            kind: kind.to_string(),
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

    /// What the item says, whichever journal it was read from: all but its
    /// `seq`. A take-over's replay journals the same decision, at the same
    /// time, in the next owner's journal too.
    pub(crate) fn identity(&self) -> String {
        let mut said = serde_json::to_value(self).unwrap_or_default();
        if let Some(fields) = said.as_object_mut() {
            fields.remove("seq");
        }
        said.to_string()
    }

    /// The item a record shows, if it shows one; never a position.
    pub(crate) fn of(seq: u64, record: Record, role: Role) -> Option<Self> {
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
pub(crate) fn without_repeats(items: Vec<TimelineItem>) -> Vec<TimelineItem> {
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
            let (Some(alert), "alert") = (&item.alert, item.kind.as_str()) else {
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
pub(crate) struct Playback {
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

/// What an alert's playback shows: its case's devices from an hour before
/// its onset to its end (or `now`), at most [`PLAYBACK_MAX`].
#[derive(Clone, Debug)]
pub(crate) struct PlaybackWindow {
    pub alert: String,
    pub case: CaseId,
    pub from: Timestamp,
    pub to: Timestamp,
    pub onset: Timestamp,
}

impl PlaybackWindow {
    pub fn of(alert: &kordon_alert::desk::AlertRecord, now: Timestamp) -> Self {
        let from = alert.latest.onset - PLAYBACK_BEFORE;
        let end = if alert.open { now } else { alert.latest.ts };
        PlaybackWindow {
            alert: alert.latest.id.to_string(),
            case: alert.latest.case.clone(),
            from,
            to: end.min(from + PLAYBACK_MAX).max(from),
            onset: alert.latest.onset,
        }
    }

    /// The playback of `fixes` (the case's, read from a journal or
    /// several): one track per device, in time order, each fix once.
    pub fn playback(self, fixes: impl IntoIterator<Item = Fix>) -> Playback {
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
            // A fix two journals hold (a take-over's replay) is one point.
            track.dedup_by(|a, b| a.ts == b.ts && a.lat == b.lat && a.lon == b.lon);
        }
        Playback {
            alert: self.alert,
            case: self.case,
            from: self.from,
            to: self.to,
            onset: self.onset,
            tracks,
        }
    }
}

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
    let window = PlaybackWindow::of(&alert, state.clock.now());
    let fixes: Vec<Fix> = {
        let (case, from, to) = (window.case.clone(), window.from, window.to);
        read(&state, move |reader| {
            reader.case_fixes(&case, None, from, to)
        })
        .await?
    };
    Ok(Json(window.playback(fixes)).into_response())
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
