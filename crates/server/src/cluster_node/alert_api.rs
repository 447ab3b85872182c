//! The alert API of a cluster instance: the alert routes of single-process
//! kordon (`crate::http`), with the same tokens, roles and answers, over the
//! alert desks of every shard of the cluster, whichever instance serves
//! them (`docs/cluster.md`, "The alert API in a cluster"):
//!
//! - `GET /api/v1/alerts` and `GET /api/v1/alerts/{id}` ask every instance
//!   at once ([`kordon_cluster::desks::gather`]); each answers for the
//!   shards it serves, with what the caller's role may see. A list that
//!   lacks shards which did not answer in time says so in the header
//!   [`UNANSWERED_HEADER`]; an alert not found while shards are missing is
//!   a 503, not a 404.
//! - `POST /api/v1/alerts/{id}/ack`, `…/resolve`, `…/notes` and
//!   `…/escalate` find the alert's shard the same way, then store the
//!   action in the shard's own stream ([`kordon_cluster::desks::carry`]).
//!   The shard's owner applies it between the devices' messages, at the
//!   time the stream stored it, and answers ([`carried_command`]); a new
//!   owner replays it the same way, so a take-over loses no acknowledgement
//!   (`docs/cluster.md` names the case it does not yet cover: an alert the
//!   clock opened after the last snapshot).
//!
//! - `GET /api/v1/bans` (`?lat=…&lon=…` or `?person=…`) and the map's
//!   `GET /api/v1/positions` are gathered as the alerts are: each shard's
//!   engine knows its own cases' orders and devices.
//!
//! What it never does: change an alert anywhere but through the shard's
//! stream, or answer an alert's question from a shard it does not serve.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use jiff::Timestamp;
use kordon_cluster::desks::{self, Answer, Gathered, ShardPart};
use kordon_cluster::questions;
use kordon_cluster::{ClusterError, Shard, ShardCount};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{oneshot, watch};
use tracing::warn;

use super::ServedEngine;
use crate::config::Role;
use crate::core_thread::{Command, OperatorAction, OperatorError, OperatorReply};
use crate::http::{self, Access, ApiError, Caller, ALL};
use crate::live::AlertView;

/// Names the shards a list of alerts lacks because they did not answer in
/// time (comma-separated).
pub const UNANSWERED_HEADER: &str = "kordon-shards-unanswered";
/// How long a read waits for every shard to answer.
const GATHER_WAIT: Duration = Duration::from_secs(2);
/// How long an action waits for the shard's owner to apply it.
const ACTION_WAIT: Duration = Duration::from_secs(5);

/// What the alert routes need: NATS, the cluster's shard count, the tokens.
#[derive(Clone)]
pub struct AlertApi {
    js: jetstream::Context,
    shards: ShardCount,
    access: Access,
}

impl AlertApi {
    pub fn new(js: jetstream::Context, shards: ShardCount, access: Access) -> AlertApi {
        AlertApi { js, shards, access }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/alerts", get(list_alerts))
            .route("/api/v1/alerts/{id}", get(get_alert))
            .route("/api/v1/alerts/{id}/ack", post(ack_alert))
            .route("/api/v1/alerts/{id}/resolve", post(resolve_alert))
            .route("/api/v1/alerts/{id}/notes", post(note_alert))
            .route("/api/v1/alerts/{id}/escalate", post(escalate_alert))
            .route("/api/v1/dispositions", get(http::dispositions))
            .route("/api/v1/bans", get(bans))
            .route("/api/v1/positions", get(positions))
            .with_state(self)
    }
}

impl http::Callers for AlertApi {
    fn access(&self) -> &Access {
        &self.access
    }
}

/// A question to every instance about its shards, answered with what a
/// caller of `role` may see.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "ask", rename_all = "snake_case")]
enum Question {
    /// The desks' alerts, all of them or the one named.
    Alerts {
        role: Role,
        #[serde(default)]
        alert: Option<String>,
    },
    /// The bans covering a place.
    BansAt { role: Role, lat: f64, lon: f64 },
    /// The bans of a case, bracelet or victim device.
    BansOf { person: String },
    /// Every device's latest position (the monitoring room's map).
    Positions,
}

/// What each shard answered (a list of alerts or bans), as the role may
/// see it.
struct Found {
    by_shard: Vec<(Shard, Vec<Value>)>,
    missing: Vec<Shard>,
}

impl Found {
    /// Every shard's list in one, with the shards missing named in
    /// [`UNANSWERED_HEADER`]; a 503 when no shard answered.
    fn merged(
        self,
        order: impl FnMut(&Value, &Value) -> std::cmp::Ordering,
    ) -> Result<Response, ApiError> {
        if self.by_shard.is_empty() {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no shard answered: is any instance serving?",
            ));
        }
        let mut all: Vec<Value> = self.by_shard.into_iter().flat_map(|(_, a)| a).collect();
        all.sort_by(order);
        let mut response = Json(all).into_response();
        if !self.missing.is_empty() {
            let missing =
                HeaderValue::from_str(&shard_list(&self.missing)).expect("digits and commas");
            response.headers_mut().insert(UNANSWERED_HEADER, missing);
        }
        Ok(response)
    }
}

impl AlertApi {
    async fn ask(&self, question: &Question) -> Result<Found, ApiError> {
        let bytes = serde_json::to_vec(question).expect("a question serialises");
        let Gathered { parts, missing } =
            desks::gather(&self.js.client(), self.shards, bytes.into(), GATHER_WAIT)
                .await
                .map_err(unreachable)?;
        if !missing.is_empty() {
            warn!(
                missing = missing.len(),
                "shards did not answer about their alerts in time"
            );
        }
        let by_shard = parts
            .into_values()
            .map(|part| {
                let alerts = match part.body {
                    Value::Array(alerts) => alerts,
                    _ => Vec::new(),
                };
                (part.shard, alerts)
            })
            .collect();
        Ok(Found { by_shard, missing })
    }

    /// The alert `id` as a caller of `role` may see it, and its shard.
    pub(super) async fn find(&self, role: Role, id: &str) -> Result<(Shard, Value), ApiError> {
        let question = Question::Alerts {
            role,
            alert: Some(id.to_string()),
        };
        let found = self.ask(&question).await?;
        let hit = found
            .by_shard
            .into_iter()
            .find_map(|(shard, alerts)| alerts.into_iter().next().map(|a| (shard, a)));
        match (hit, found.missing.is_empty()) {
            (Some(hit), _) => Ok(hit),
            (None, true) => Err(no_alert(id)),
            (None, false) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "no alert `{id}` among the shards that answered; shards {} did not answer in time (changing hands?): retry",
                    shard_list(&found.missing)
                ),
            )),
        }
    }
}

fn no_alert(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no alert with id `{id}`"))
}

fn unreachable(e: ClusterError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the cluster could not be asked; retry: {e}"),
    )
}

fn shard_list(shards: &[Shard]) -> String {
    let names: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
    names.join(",")
}

/// The order of the desk's own list (`AlertDesk::alerts`), across shards:
/// open or unacknowledged first, then newest first, then by id.
fn desk_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    let active = |v: &Value| v["open"] == Value::Bool(true) || v.get("acknowledgement").is_none();
    let raised = |v: &Value| {
        v["raised_at"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    let id = |v: &Value| v["id"].as_str().map(str::to_string);
    active(b)
        .cmp(&active(a))
        .then(raised(b).cmp(&raised(a)))
        .then(id(a).cmp(&id(b)))
}

async fn list_alerts(caller: Caller, State(api): State<AlertApi>) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let question = Question::Alerts {
        role: caller.role,
        alert: None,
    };
    api.ask(&question).await?.merged(desk_order)
}

/// Every device's latest position, over every shard: the monitoring
/// room's map. A device in cases of two shards is listed by each.
async fn positions(caller: Caller, State(api): State<AlertApi>) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let device = |v: &Value| v["device"].as_str().map(str::to_string);
    api.ask(&Question::Positions)
        .await?
        .merged(|a, b| device(a).cmp(&device(b)))
}

/// `/api/v1/bans?lat=…&lon=…` or `?person=…`, over every shard.
async fn bans(
    caller: Caller,
    State(api): State<AlertApi>,
    query: http::BansQueryResult,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let question = match http::bans_asked(query)? {
        http::BansAsked::At { lat, lon } => Question::BansAt {
            role: caller.role,
            lat,
            lon,
        },
        http::BansAsked::Of(person) => Question::BansOf { person },
    };
    let found = api.ask(&question).await?;
    if let Question::BansOf { person } = &question {
        let none = found.by_shard.iter().all(|(_, bans)| bans.is_empty());
        if none && found.missing.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no case, bracelet or victim device `{person}`"),
            ));
        }
    }
    let nearest = |v: &Value| v["distance_m"].as_f64().unwrap_or(f64::INFINITY);
    found.merged(|a, b| nearest(a).total_cmp(&nearest(b)))
}

async fn get_alert(
    caller: Caller,
    State(api): State<AlertApi>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let (_, alert) = api.find(caller.role, &id).await?;
    Ok(Json(alert).into_response())
}

async fn ack_alert(
    caller: Caller,
    State(api): State<AlertApi>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring, Role::Police])?;
    let (operator, action) = http::acknowledgement(&caller, &body)?;
    api.operate(&caller, &id, operator, action).await
}

async fn resolve_alert(
    caller: Caller,
    State(api): State<AlertApi>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let action = http::resolution(&body)?;
    api.operate(&caller, &id, caller.name.clone(), action).await
}

async fn note_alert(
    caller: Caller,
    State(api): State<AlertApi>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring, Role::Police])?;
    let action = http::note(&body)?;
    api.operate(&caller, &id, caller.name.clone(), action).await
}

async fn escalate_alert(
    caller: Caller,
    State(api): State<AlertApi>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let action = http::escalation(&body)?;
    api.operate(&caller, &id, caller.name.clone(), action).await
}

/// An operator's action on an alert, as a shard's stream carries it.
#[derive(Debug, Serialize, Deserialize)]
struct CarriedAction {
    alert: String,
    operator: String,
    action: OperatorAction,
}

/// What the shard's owner did with an action.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Done(Value),
    Refused(OperatorError),
}

impl AlertApi {
    /// Finds the alert's shard (as the caller may see it: the police act
    /// only on alerts for the police), stores the action in the shard's
    /// stream, and answers with what the shard's owner did.
    async fn operate(
        &self,
        caller: &Caller,
        id: &str,
        operator: String,
        action: OperatorAction,
    ) -> Result<Response, ApiError> {
        let (shard, _) = self.find(caller.role, id).await?;
        let carried = CarriedAction {
            alert: id.to_string(),
            operator,
            action,
        };
        let payload = serde_json::to_vec(&carried).expect("an action serialises");
        let nats = self.js.client();
        let reply = nats.new_inbox();
        let mut answers = nats
            .subscribe(reply.clone())
            .await
            .map_err(|e| unreachable(nats_error(&e)))?;
        desks::carry(&self.js, shard, payload.into(), &reply)
            .await
            .map_err(unreachable)?;
        tracing::debug!(alert = id, by = caller.name, %shard, "operator action carried");
        let answer = tokio::time::timeout(ACTION_WAIT, answers.next()).await;
        let _ = answers.unsubscribe().await;
        let outcome = match answer {
            Ok(Some(message)) => serde_json::from_slice::<Outcome>(&message.payload).ok(),
            _ => None,
        };
        match outcome {
            Some(Outcome::Done(done)) => Ok(Json(done).into_response()),
            Some(Outcome::Refused(e)) => Err(http::action_refused(&e)),
            None => Err(stored_not_answered(shard)),
        }
    }
}

/// The answer to an action stored in its shard's stream whose owner did
/// not answer in time: it is applied once the shard is served, so
/// `"stored": true` tells a client not to send it again (a note sent again
/// would be stored twice).
fn stored_not_answered(shard: Shard) -> ApiError {
    ApiError::with_body(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({
            "error": format!(
                "the action is stored in shard {shard}'s stream, but the shard's owner did not answer in {} s (changing hands?); it is applied when the shard is served: GET the alert to see it, and do not send it again",
                ACTION_WAIT.as_secs()
            ),
            "stored": true,
        }),
    )
}

fn nats_error(e: &dyn std::fmt::Display) -> ClusterError {
    ClusterError::Bucket {
        bucket: "operator's answer".to_string(),
        message: e.to_string(),
    }
}

/// The engine command for an operator's action read from a shard's stream
/// at `now` (the time the stream stored it), whose outcome goes to `reply`
/// once the engine has it; `None` for an action that cannot be read (said
/// to `reply` at once, and skipped by every owner alike).
pub(crate) fn carried_command(
    payload: &[u8],
    nats: async_nats::Client,
    reply: String,
    now: Timestamp,
) -> Option<Command> {
    let carried = match serde_json::from_slice::<CarriedAction>(payload) {
        Ok(carried) => carried,
        Err(e) => {
            warn!(error = %e, "an operator's action in a shard's stream is unreadable: skipped");
            let refused = Outcome::Refused(OperatorError::Unprocessable(format!(
                "the action could not be read: {e}"
            )));
            tokio::spawn(tell(nats, reply, refused));
            return None;
        }
    };
    let (answer, outcome) = oneshot::channel();
    tokio::spawn(async move {
        let outcome = match outcome.await {
            Ok(Ok(done)) => Outcome::Done(reply_json(&done)),
            Ok(Err(refused)) => Outcome::Refused(refused),
            Err(_) => return, // the shard closed first: its next owner applies it
        };
        tell(nats, reply, outcome).await;
    });
    Some(Command::Operator {
        id: carried.alert,
        operator: carried.operator,
        action: carried.action,
        now,
        reply: answer,
    })
}

fn reply_json(done: &OperatorReply) -> Value {
    serde_json::to_value(done).unwrap_or(Value::Null)
}

/// Sends an action's outcome to whoever waits for it (nobody, when a new
/// owner replays the action).
async fn tell(nats: async_nats::Client, reply: String, outcome: Outcome) {
    if reply.is_empty() {
        return;
    }
    let bytes = serde_json::to_vec(&outcome).expect("an outcome serialises");
    if let Err(e) = nats.publish(reply, bytes.into()).await {
        warn!(error = %e, "answering an operator's action");
    }
}

/// Answers every question about the desks of the shards this instance
/// serves (`engines`), until NATS closes the subscription.
pub async fn answer_questions(
    nats: async_nats::Client,
    engines: watch::Receiver<Vec<ServedEngine>>,
    asked: Asked,
) {
    let mut questions = questions::listen(&nats, desks::DESK_SUBJECT, "the desks").await;
    while let Some(message) = questions.next().await {
        let Some(reply) = message.reply else { continue };
        let Ok(question) = serde_json::from_slice::<Question>(&message.payload) else {
            warn!("an unreadable question about the desks: not answered");
            continue;
        };
        let served = engines.borrow().clone();
        let nats = nats.clone();
        tokio::spawn(async move {
            let answer = answer(&served, &question, &asked).await;
            let bytes = serde_json::to_vec(&answer).expect("an answer serialises");
            if let Err(e) = nats.publish(reply, bytes.into()).await {
                warn!(error = %e, "answering a question about the desks");
            }
        });
    }
}

/// What the shards of `served` answer to `question`: one part per shard
/// whose tenure still holds, whose replay is done (a desk still being
/// rebuilt would answer "no such alert"; it is named missing instead) and
/// whose engine answered.
async fn answer(served: &[ServedEngine], question: &Question, asked: &Asked) -> Answer {
    let parts = served
        .iter()
        .filter(|engine| Instant::now() < engine.tenure.valid_until && *engine.caught_up.borrow())
        .map(|engine| async move {
            let body = shard_answer(engine, question, asked).await?;
            Some(ShardPart {
                shard: engine.tenure.shard,
                epoch: engine.tenure.epoch,
                body,
            })
        });
    let parts = futures_util::future::join_all(parts).await;
    Answer {
        parts: parts.into_iter().flatten().collect(),
    }
}

/// What answering needs besides the engines: the settings alerts are shown
/// with, and kordon's clock (which orders hold now).
#[derive(Clone, Copy)]
pub struct Asked {
    pub escalate_after_s: u32,
    pub clock: crate::clock::Clock,
}

/// One shard engine's answer, as a JSON list; `None` if it did not answer.
async fn shard_answer(served: &ServedEngine, question: &Question, asked: &Asked) -> Option<Value> {
    let engine = &served.commands;
    let listed = match question {
        Question::Alerts { role, alert } => {
            let records = match alert {
                None => http::ask_engine(engine, Command::Alerts).await.ok()?,
                Some(id) => {
                    let id = id.clone();
                    let one = http::ask_engine(engine, |reply| Command::Alert(id, reply));
                    one.await.ok()?.into_iter().collect()
                }
            };
            let views: Vec<AlertView> = records
                .into_iter()
                .filter_map(|r| http::visible(*role, r))
                .map(|r| AlertView::of(r, asked.escalate_after_s))
                .collect();
            serde_json::to_value(views)
        }
        Question::BansAt { role, lat, lon } => {
            let (lat, lon, now) = (*lat, *lon, asked.clock.now());
            let hits = http::ask_engine(engine, |reply| Command::Bans {
                lat,
                lon,
                now,
                reply,
            });
            serde_json::to_value(http::bans_visible(*role, hits.await.ok()?))
        }
        Question::BansOf { person } => {
            let cases = http::ask_engine(engine, Command::AllCases).await.ok()?;
            let found = crate::intake::bans_of_person(&cases, person, asked.clock.now());
            serde_json::to_value(found)
        }
        Question::Positions => serde_json::to_value(served.feed.positions()),
    };
    listed.ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn alerts_from_several_shards_are_listed_in_the_desk_s_order() {
        let acknowledged = json!({"ack_by": "x"});
        let mut alerts = [
            json!({"id": "c", "open": false, "acknowledgement": acknowledged, "raised_at": "2026-12-03T10:00:05Z"}),
            json!({"id": "a", "open": true, "raised_at": "2026-12-03T10:00:00Z"}),
            json!({"id": "b", "open": true, "raised_at": "2026-12-03T10:00:00.5Z"}),
            json!({"id": "d", "open": false, "raised_at": "2026-12-03T09:00:00Z"}),
        ];
        alerts.sort_by(desk_order);
        let ids: Vec<&str> = alerts.iter().map(|a| a["id"].as_str().unwrap()).collect();
        // Unacknowledged or open first, newest first (by time, not by text:
        // "…00Z" sorts after "…00.5Z" as text), then the closed, handled one.
        assert_eq!(ids, ["b", "a", "d", "c"]);
    }

    #[test]
    fn an_action_and_its_refusal_read_back_as_written() {
        let carried = CarriedAction {
            alert: "e1".into(),
            operator: "Fatima".into(),
            action: OperatorAction::Acknowledge {
                note: Some("called him".into()),
                police: false,
            },
        };
        let read: CarriedAction =
            serde_json::from_slice(&serde_json::to_vec(&carried).unwrap()).unwrap();
        assert_eq!(read.operator, "Fatima");
        assert!(matches!(
            read.action,
            OperatorAction::Acknowledge { police: false, .. }
        ));
        let refused = Outcome::Refused(OperatorError::Conflict("already".into()));
        let read: Outcome = serde_json::from_slice(&serde_json::to_vec(&refused).unwrap()).unwrap();
        assert!(matches!(read, Outcome::Refused(OperatorError::Conflict(m)) if m == "already"));
    }
}
