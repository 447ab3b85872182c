//! What a cluster instance serves from the journals: a case's timeline
//! (`GET /api/v1/cases/{id}/timeline`), an alert's playback
//! (`GET /api/v1/alerts/{id}/playback`), the deadline and compliance
//! reports (`GET /api/v1/reports/…`) and the police's CAP feed
//! (`GET /api/v1/feed/cap.atom`), with the same roles and answers as
//! single-process kordon (`crate::history`, `crate::dispatch`).
//!
//! Each instance's journal holds what its shards handled while it served
//! them, so a case's history is spread over the journals of every instance
//! that served the case's shard, and a take-over's replay leaves some of
//! it in two. The instance asked puts one question to every instance
//! ([`kordon_cluster::journals::gather`]); each answers from its own journal
//! ([`answer_questions`]), and the asker merges the answers, each record
//! once. Members alive that did not answer within the wait are named in the
//! header [`UNANSWERED_HEADER`]: the history is then partial, and says so.
//!
//! What it never does: write a journal, or show a role what single-process
//! kordon would not.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use jiff::Timestamp;
use kordon_alert::desk::AlertRecord;
use kordon_alert::topics;
use kordon_cluster::journals::{self, Read};
use kordon_cluster::questions;
use kordon_cluster::{InstanceId, Tenures};
use kordon_core::{CaseId, Fix, RiskLevel};
use kordon_journal::{Reader, Record};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tracing::warn;

use super::alert_api::AlertApi;
use crate::config::{DeadlineTargets, Role};
use crate::dispatch::{CapMessage, Dispatch, FEED_LENGTH};
use crate::history::report::{self, AlertDeadlines, Period, ReportInputs};
use crate::history::{without_repeats, PlaybackWindow, TimelineItem};
use crate::http::{self, Access, ApiError, Caller, ALL};

/// Names the members alive whose journals did not answer in time
/// (comma-separated): what they hold is missing from the answer.
pub const UNANSWERED_HEADER: &str = "kordon-instances-unanswered";
/// How long a read waits for every member's journal.
const GATHER_WAIT: Duration = Duration::from_secs(2);
/// A timeline's items, unless the caller asks for fewer or more.
const TIMELINE_LIMIT: usize = 500;
const TIMELINE_MAX: usize = 5_000;

/// What the history routes show besides the journals: kordon's clock (a
/// playback of an open alert runs to now), the reports' targets, and the
/// CAP feed's sender.
#[derive(Clone)]
pub struct HistorySettings {
    pub clock: crate::clock::Clock,
    pub targets: DeadlineTargets,
    pub sender: String,
}

/// What the history routes need: NATS, the members alive, the alert desks
/// (a playback starts from its alert), the tokens.
#[derive(Clone)]
pub struct HistoryApi {
    nats: async_nats::Client,
    tenures: watch::Receiver<Tenures>,
    alerts: AlertApi,
    access: Access,
    settings: HistorySettings,
}

impl HistoryApi {
    pub fn new(
        nats: async_nats::Client,
        tenures: watch::Receiver<Tenures>,
        alerts: AlertApi,
        settings: HistorySettings,
    ) -> HistoryApi {
        let access = http::Callers::access(&alerts).clone();
        HistoryApi {
            nats,
            tenures,
            alerts,
            access,
            settings,
        }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/cases/{id}/timeline", get(timeline))
            .route("/api/v1/alerts/{id}/playback", get(playback))
            .route("/api/v1/reports/deadlines", get(deadlines_json))
            .route("/api/v1/reports/deadlines.csv", get(deadlines_csv))
            .route("/api/v1/reports/compliance", get(compliance_json))
            .route("/api/v1/reports/compliance.csv", get(compliance_csv))
            .route("/api/v1/feed/cap.atom", get(police_feed))
            .with_state(self)
    }

    /// Every member's answer to `question`, in one list of `T`.
    async fn ask<T: DeserializeOwned>(&self, question: &Question) -> Result<Heard<T>, ApiError> {
        let members = self.tenures.borrow().members.clone();
        let bytes = serde_json::to_vec(question).expect("a question serialises");
        let Read { answers, missing } =
            journals::gather(&self.nats, &members, bytes.into(), GATHER_WAIT)
                .await
                .map_err(|e| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("the cluster could not be asked; retry: {e}"),
                    )
                })?;
        if answers.is_empty() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no instance's journal answered: retry",
            ));
        }
        if !missing.is_empty() {
            warn!(?missing, "instances' journals did not answer in time");
        }
        let items = answers
            .into_iter()
            .flat_map(|(instance, items)| items.into_iter().map(move |i| (instance.clone(), i)))
            .filter_map(|(instance, item)| read_item(&instance, item))
            .collect();
        Ok(Heard { items, missing })
    }
}

impl http::Callers for HistoryApi {
    fn access(&self) -> &Access {
        &self.access
    }
}

/// One item of an instance's answer; `None` (said in the log) when it is
/// not what was asked for.
fn read_item<T: DeserializeOwned>(instance: &InstanceId, item: Value) -> Option<T> {
    match serde_json::from_value(item) {
        Ok(item) => Some(item),
        Err(e) => {
            warn!(instance = %instance.as_str(), error = %e, "an instance's journal answered an unreadable item: left out");
            None
        }
    }
}

/// What every journal answered, in one list, and who did not answer.
struct Heard<T> {
    items: Vec<T>,
    missing: Vec<InstanceId>,
}

/// `body` as JSON, with the members that did not answer named.
fn respond(body: impl Serialize, missing: &[InstanceId]) -> Response {
    with_missing(Json(body).into_response(), missing)
}

/// `response`, with the members that did not answer named.
fn with_missing(mut response: Response, missing: &[InstanceId]) -> Response {
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|m| m.as_str()).collect();
        let names = HeaderValue::from_str(&names.join(",")).expect("instance ids are tokens");
        response.headers_mut().insert(UNANSWERED_HEADER, names);
    }
    response
}

/// A question to every instance's journal.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
enum Question {
    /// A case's newest timeline items, as a caller of `role` may see them.
    Timeline {
        case: CaseId,
        role: Role,
        limit: usize,
    },
    /// A case's fixes from `from` to `to`.
    Fixes {
        case: CaseId,
        from: Timestamp,
        to: Timestamp,
    },
    /// What the reports of the period from `from` to `to` are made of.
    Report { from: Timestamp, to: Timestamp },
    /// The newest CAP messages sent to the police.
    PoliceCap,
}

/// One item of a journal's [`ReportInputs`], as it travels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
enum ReportItem {
    Record { record: Box<Record> },
    Risk { case: CaseId, risk: RiskLevel },
    Asked { alert: String },
}

impl ReportItem {
    fn of(inputs: ReportInputs) -> Vec<ReportItem> {
        let records = inputs.records.into_iter().map(|record| ReportItem::Record {
            record: Box::new(record),
        });
        let risks = inputs
            .risks
            .into_iter()
            .map(|(case, risk)| ReportItem::Risk { case, risk });
        let asked = inputs
            .asked
            .into_iter()
            .map(|alert| ReportItem::Asked { alert });
        records.chain(risks).chain(asked).collect()
    }
}

/// Several journals' report items as one journal's inputs: each record
/// once (a take-over's replay journals the same record, at the same time,
/// twice), in kordon's time order.
fn merged_inputs(items: Vec<ReportItem>) -> ReportInputs {
    let mut inputs = ReportInputs::default();
    let mut seen = HashSet::new();
    for item in items {
        match item {
            ReportItem::Record { record } => {
                let identity = serde_json::to_string(&record).unwrap_or_default();
                if seen.insert(identity) {
                    inputs.records.push(*record);
                }
            }
            ReportItem::Risk { case, risk } => {
                inputs.risks.entry(case).or_insert(risk);
            }
            ReportItem::Asked { alert } => {
                inputs.asked.insert(alert);
            }
        }
    }
    // Stable: one journal's records of the same moment keep their order.
    inputs.records.sort_by_key(Record::at);
    inputs
}

impl HistoryApi {
    /// The report's rows for a period, from every journal.
    async fn report_rows(
        &self,
        period: Period,
    ) -> Result<(Vec<AlertDeadlines>, Vec<InstanceId>), ApiError> {
        let now = self.settings.clock.now();
        let (from, to) = period.bounds(now)?;
        let heard: Heard<ReportItem> = self.ask(&Question::Report { from, to }).await?;
        let rows = merged_inputs(heard.items).deadlines(&self.settings.targets, now);
        Ok((rows, heard.missing))
    }
}

async fn deadlines_json(
    caller: Caller,
    State(api): State<HistoryApi>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let (rows, missing) = api.report_rows(period).await?;
    let body = serde_json::json!({ "targets": api.settings.targets, "alerts": rows });
    Ok(respond(body, &missing))
}

async fn deadlines_csv(
    caller: Caller,
    State(api): State<HistoryApi>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let (rows, missing) = api.report_rows(period).await?;
    Ok(with_missing(report::deadlines_csv_file(rows), &missing))
}

async fn compliance_json(
    caller: Caller,
    State(api): State<HistoryApi>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let (rows, missing) = api.report_rows(period).await?;
    let weeks = report::compliance(&rows, api.settings.targets.share);
    Ok(respond(weeks, &missing))
}

async fn compliance_csv(
    caller: Caller,
    State(api): State<HistoryApi>,
    Query(period): Query<Period>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let (rows, missing) = api.report_rows(period).await?;
    let file = report::compliance_csv_file(&rows, api.settings.targets.share);
    Ok(with_missing(file, &missing))
}

#[derive(Deserialize)]
struct TimelineQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn timeline(
    caller: Caller,
    State(api): State<HistoryApi>,
    Path(id): Path<String>,
    Query(q): Query<TimelineQuery>,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    if q.before.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`before` pages one journal's records; a cluster's timeline is gathered from several, whose numbers do not compare: ask with a larger `limit` (at most 5000)",
        ));
    }
    let limit = q.limit.unwrap_or(TIMELINE_LIMIT).clamp(1, TIMELINE_MAX);
    let question = Question::Timeline {
        case: CaseId::new(&id),
        role: caller.role,
        limit,
    };
    let heard: Heard<TimelineItem> = api.ask(&question).await?;
    let items = merged_timeline(heard.items, limit);
    Ok(respond(items, &heard.missing))
}

/// The items of several journals as one timeline, newest first: each item
/// once (a take-over's replay journals the same decision twice, at the same
/// time), the updates that change nothing at a glance left out, at most
/// `limit`.
fn merged_timeline(items: Vec<TimelineItem>, limit: usize) -> Vec<TimelineItem> {
    let mut seen = HashSet::new();
    let mut once: Vec<TimelineItem> = items
        .into_iter()
        .filter(|item| seen.insert(item.identity()))
        .collect();
    // Stable: one journal's items of the same moment keep their order.
    once.sort_by_key(|item| std::cmp::Reverse(item.at));
    let mut merged = without_repeats(once);
    merged.truncate(limit);
    merged
}

/// The tracks of an alert's case devices from an hour before its onset,
/// from every journal that holds them.
async fn playback(
    caller: Caller,
    State(api): State<HistoryApi>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let (_, found) = api.alerts.find(Role::Monitoring, &id).await?;
    let alert: AlertRecord = serde_json::from_value(found).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the alert's desk answered what is not an alert: {e}"),
        )
    })?;
    let window = PlaybackWindow::of(&alert, api.settings.clock.now());
    let question = Question::Fixes {
        case: window.case.clone(),
        from: window.from,
        to: window.to,
    };
    let heard: Heard<Fix> = api.ask(&question).await?;
    let body = window.playback(heard.items);
    Ok(respond(body, &heard.missing))
}

/// The police's CAP messages as Atom, newest first, from every journal:
/// each message once (by its CAP identifier), the newest
/// [`FEED_LENGTH`] of the cluster.
async fn police_feed(caller: Caller, State(api): State<HistoryApi>) -> Result<Response, ApiError> {
    caller.require(&[Role::Police, Role::Monitoring])?;
    let heard: Heard<String> = api.ask(&Question::PoliceCap).await?;
    let feed = merged_feed(&api.settings.sender, heard.items);
    let atom = (
        [(CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        feed.atom(),
    );
    Ok(with_missing(atom.into_response(), &heard.missing))
}

/// CAP messages from several journals as one feed.
fn merged_feed(sender: &str, sent: Vec<String>) -> Dispatch {
    let mut messages: Vec<(Timestamp, String)> = sent
        .into_iter()
        .filter_map(|xml| CapMessage::parse(&xml).map(|m| (m.sent, xml)))
        .collect();
    messages.sort_by_key(|(sent, _)| *sent);
    // Oldest first: the feed keeps the newest, and each identifier once.
    let feed = Dispatch::new(sender, None);
    for (_, xml) in messages {
        feed.offer(&xml);
    }
    feed
}

/// Answers every question about this instance's journal (`journal`, read
/// on a connection of its own, off the runtime's workers) as `instance`,
/// until NATS closes the subscription.
pub async fn answer_questions(nats: async_nats::Client, instance: InstanceId, journal: PathBuf) {
    let mut questions = questions::listen(&nats, journals::JOURNALS_SUBJECT, "the journal").await;
    while let Some(message) = questions.next().await {
        let Some(reply) = message.reply else { continue };
        let Ok(question) = serde_json::from_slice::<Question>(&message.payload) else {
            warn!("an unreadable question about the journal: not answered");
            continue;
        };
        let (nats, instance, journal) = (nats.clone(), instance.clone(), journal.clone());
        tokio::spawn(async move {
            let read = tokio::task::spawn_blocking(move || answer(&journal, question)).await;
            let items = match read {
                Ok(Ok(items)) => items,
                Ok(Err(e)) => {
                    warn!(error = %e, "reading the journal for another instance: not answered");
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "reading the journal for another instance: not answered");
                    return;
                }
            };
            let max_bytes = nats.server_info().max_payload;
            for part in journals::in_parts(&instance, items, max_bytes) {
                let bytes = serde_json::to_vec(&part).expect("an answer serialises");
                if let Err(e) = nats.publish(reply.clone(), bytes.into()).await {
                    warn!(error = %e, "answering a question about the journal");
                    return;
                }
            }
        });
    }
}

/// This journal's answer to `question`, as a list of JSON items.
fn answer(
    journal: &std::path::Path,
    question: Question,
) -> Result<Vec<Value>, kordon_journal::JournalError> {
    let reader = Reader::open(journal)?;
    let body = match question {
        Question::Timeline { case, role, limit } => {
            let items: Vec<TimelineItem> = reader
                .case_timeline(&case, None, limit)?
                .into_iter()
                .filter_map(|(seq, record)| TimelineItem::of(seq, record, role))
                .collect();
            serde_json::to_value(items)
        }
        Question::Fixes { case, from, to } => {
            serde_json::to_value(reader.case_fixes(&case, None, from, to)?)
        }
        Question::Report { from, to } => {
            let inputs = ReportInputs::read(&reader, from, to)?;
            serde_json::to_value(ReportItem::of(inputs))
        }
        Question::PoliceCap => {
            let records = reader.recent_dispatch(topics::POLICE_CAP, FEED_LENGTH)?;
            let sent: Vec<String> = records
                .into_iter()
                .filter_map(|record| match record {
                    Record::Outbound { payload, .. } => Some(payload),
                    _ => None,
                })
                .collect();
            serde_json::to_value(sent)
        }
    };
    Ok(match body.unwrap_or_default() {
        Value::Array(items) => items,
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(instance_seq: u64, secs: i64, kind: &str, alert: &str) -> TimelineItem {
        let at = Timestamp::from_second(secs).unwrap();
        let mut item: TimelineItem = serde_json::from_value(serde_json::json!({
            "seq": instance_seq, "at": at, "kind": kind, "alert": alert,
        }))
        .unwrap();
        item.seq = instance_seq;
        item
    }

    /// Two journals (a shard's owner, and the next owner that replayed
    /// after its last snapshot) hold the same acknowledgement: it is shown
    /// once, and the items of both come newest first.
    #[test]
    fn a_record_two_journals_hold_is_shown_once() {
        let first_owner = vec![item(40, 100, "ack", "e1"), item(39, 90, "note", "e1")];
        let next_owner = vec![item(7, 120, "resolve", "e1"), item(6, 100, "ack", "e1")];
        let merged = merged_timeline(first_owner.into_iter().chain(next_owner).collect(), 10);
        let kinds: Vec<&str> = merged.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds, vec!["resolve", "ack", "note"]);
    }

    /// A report's inputs from two journals: a record both hold counts
    /// once, and the records come in kordon's time order.
    #[test]
    fn a_report_s_records_two_journals_hold_count_once() {
        let note = |secs: i64, text: &str| Record::Note {
            alert: "e1".into(),
            operator: "op".into(),
            text: text.into(),
            at: Timestamp::from_second(secs).unwrap(),
        };
        let items = vec![
            ReportItem::Record {
                record: Box::new(note(20, "second")),
            },
            ReportItem::Asked { alert: "e1".into() },
            ReportItem::Record {
                record: Box::new(note(10, "first")),
            },
            ReportItem::Record {
                record: Box::new(note(20, "second")),
            },
            ReportItem::Asked { alert: "e1".into() },
        ];
        let inputs = merged_inputs(items);
        assert_eq!(inputs.records, vec![note(10, "first"), note(20, "second")]);
        assert_eq!(inputs.asked.len(), 1);
    }

    #[test]
    fn the_newest_items_up_to_the_limit_are_kept() {
        let items = (0..10)
            .map(|n| item(n, 100 + n as i64, "note", "e1"))
            .collect();
        let merged = merged_timeline(items, 3);
        let times: Vec<i64> = merged.iter().map(|i| i.at.as_second()).collect();
        assert_eq!(times, vec![109, 108, 107]);
    }
}
