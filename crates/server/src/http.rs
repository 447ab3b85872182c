//! The HTTP API (axum). Every route but `/healthz`, the dashboard's files
//! and sign-in needs a bearer token or a dashboard session
//! ([`crate::session`]); the role decides what the caller sees (the
//! dashboard's own routes are listed in `docs/dashboard.md`):
//!
//! | route | monitoring | police | admin |
//! | --- | --- | --- | --- |
//! | `GET /metrics` | yes | yes | yes |
//! | `GET /api/v1/cases`, `GET /api/v1/cases/{id}` | yes | yes | yes |
//! | `PUT`, `DELETE /api/v1/cases/{id}` | 403 | 403 | yes |
//! | `GET /api/v1/alerts`, `GET /api/v1/alerts/{id}` | all alerts | alerts for police | all, without any position |
//! | `POST /api/v1/alerts/{id}/ack` | yes | yes (the police's own) | 403 |
//! | `POST /api/v1/alerts/{id}/resolve`, `…/escalate` | yes | 403 | 403 |
//! | `POST /api/v1/alerts/{id}/notes` | yes | yes | 403 |
//! | `GET /api/v1/stream` (live) | all, with positions | police alerts | alerts without positions of her |
//! | `GET /api/v1/positions`, `…/playback` | yes | 403 | 403 |
//! | `GET /api/v1/cases/{id}/timeline` | yes | yes | without positions |
//! | `GET /api/v1/feed/cap.atom` (the police's CAP messages) | yes | yes | 403 |
//! | `GET /api/v1/bans?lat=&lon=` | yes | yes | yes |
//!
//! A missing or unknown token is 401; a known token of the wrong role 403;
//! a request by session cookie that changes anything without the session's
//! CSRF token 403.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::{Sender, TrySendError};
use kordon_alert::AlertRecord;
use kordon_core::CaseId;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::config::{Role, TokenConfig};
use crate::core_thread::{Command, OperatorAction, OperatorError, PutCaseError};
use crate::health::Health;
use crate::live::{AlertView, Feed};
use crate::session::{self, Sessions};

#[derive(Clone)]
pub struct ApiState {
    /// The engine thread's queue for requests, which it takes from before
    /// the fixes (`core_thread::queues`).
    pub(crate) desk: Sender<Command>,
    pub(crate) access: Access,
    metrics: PrometheusHandle,
    pub(crate) clock: crate::clock::Clock,
    pub(crate) health: Health,
    pub(crate) feed: Feed,
    pub(crate) escalate_after_s: u32,
    /// The journal, read (never written) for timelines and playback.
    pub(crate) journal: std::path::PathBuf,
    pub(crate) targets: crate::config::DeadlineTargets,
    pub(crate) dispatch: crate::dispatch::Dispatch,
}

/// What the API needs besides the engine's queue.
pub struct ApiParts {
    pub metrics: PrometheusHandle,
    pub clock: crate::clock::Clock,
    pub health: Health,
    pub feed: Feed,
    pub escalate_after_s: u32,
    pub journal: std::path::PathBuf,
    pub targets: crate::config::DeadlineTargets,
    pub dispatch: crate::dispatch::Dispatch,
}

/// The configured API tokens, each kept as its SHA-256 with its holder's
/// role and name: the one place a presented token is recognised, in one
/// process and in a cluster instance alike.
#[derive(Clone)]
pub(crate) struct Tokens(Arc<Vec<Token>>);

struct Token {
    sha256: [u8; 32],
    role: Role,
    name: String,
}

impl Tokens {
    pub(crate) fn new(tokens: &[TokenConfig]) -> Self {
        let tokens = tokens
            .iter()
            .filter_map(|t| {
                let mut sha256 = [0u8; 32];
                for (i, byte) in sha256.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(t.sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
                }
                Some(Token {
                    sha256,
                    role: t.role,
                    name: t.name.clone(),
                })
            })
            .collect();
        Tokens(Arc::new(tokens))
    }

    /// The holder of a bearer token, if it is one of ours.
    pub(crate) fn holder(&self, token: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        self.0.iter().find(|t| t.sha256 == digest).map(|t| Caller {
            role: t.role,
            name: t.name.clone(),
        })
    }

    /// The caller a request's `Authorization` header names; `None` when
    /// the request has no such header.
    pub(crate) fn bearer(&self, headers: &HeaderMap) -> Option<Result<Caller, ApiError>> {
        let header = headers.get(AUTHORIZATION)?;
        let caller = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "use `Authorization: Bearer <token>`",
                )
            })
            .and_then(|token| {
                self.holder(token)
                    .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
            });
        Some(caller)
    }
}

impl ApiState {
    pub fn new(desk: Sender<Command>, tokens: &[TokenConfig], parts: ApiParts) -> Self {
        ApiState {
            desk,
            access: Access::new(tokens),
            metrics: parts.metrics,
            clock: parts.clock,
            health: parts.health,
            feed: parts.feed,
            escalate_after_s: parts.escalate_after_s,
            journal: parts.journal,
            targets: parts.targets,
            dispatch: parts.dispatch,
        }
    }
}

/// Who may call: the configured tokens, and the dashboard sessions opened
/// with them (each process, or cluster instance, its own).
#[derive(Clone)]
pub struct Access {
    pub(crate) tokens: Tokens,
    pub(crate) sessions: Sessions,
}

impl Access {
    pub fn new(tokens: &[TokenConfig]) -> Access {
        Access {
            tokens: Tokens::new(tokens),
            sessions: Sessions::default(),
        }
    }
}

/// SHA-256 of a token, as stored in the configuration.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.trim().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/cases", get(list_cases))
        .route(
            "/api/v1/cases/{id}",
            get(get_case).put(put_case).delete(delete_case),
        )
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/alerts/{id}/ack", post(ack_alert))
        .route("/api/v1/alerts/{id}/resolve", post(resolve_alert))
        .route("/api/v1/alerts/{id}/notes", post(note_alert))
        .route("/api/v1/alerts/{id}/escalate", post(escalate_alert))
        .route("/api/v1/dispositions", get(dispositions))
        .route("/api/v1/bans", get(bans))
        .merge(crate::web::routes())
        .merge(crate::history::routes())
        .merge(crate::intake::routes())
        .merge(crate::dispatch::routes())
        .with_state(state)
}

/// An API error: status and a message for the person who called.
pub struct ApiError(StatusCode, serde_json::Value);

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, json!({ "error": message.into() }))
    }

    /// An error whose body says more than its message (`{"error": …, …}`).
    pub(crate) fn with_body(status: StatusCode, body: serde_json::Value) -> Self {
        ApiError(status, body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.0, Json(self.1)).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
        }
        response
    }
}

/// The authenticated caller.
pub struct Caller {
    pub role: Role,
    pub name: String,
}

impl Caller {
    pub(crate) fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the {:?} role may not do this", self.role).to_lowercase(),
            ))
        }
    }
}

/// A state whose routes know their callers ([`Access`]): by bearer token,
/// or by a dashboard session (cookie, with its CSRF token for any change).
pub(crate) trait Callers {
    fn access(&self) -> &Access;
}

impl Callers for ApiState {
    fn access(&self) -> &Access {
        &self.access
    }
}

impl<S: Callers + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let access = state.access();
        if let Some(caller) = access.tokens.bearer(&parts.headers) {
            return caller;
        }
        let session_id = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session::cookie_value)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
        let session = access
            .sessions
            .get(session_id, std::time::Instant::now())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "the session has ended; sign in again",
                )
            })?;
        let changes_something = !matches!(
            parts.method,
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        if changes_something {
            let csrf = parts
                .headers
                .get(session::CSRF_HEADER)
                .and_then(|v| v.to_str().ok());
            if csrf != Some(session.csrf.as_str()) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "a request by session must carry its `X-Kordon-CSRF` token",
                ));
            }
        }
        Ok(Caller {
            role: session.role,
            name: session.name,
        })
    }
}

pub(crate) const ALL: &[Role] = &[Role::Monitoring, Role::Police, Role::Admin];

/// Sends a command to the engine's thread and waits for its answer.
pub(crate) async fn ask<T>(
    state: &ApiState,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    ask_engine(&state.desk, command).await
}

/// Sends a command to an engine's thread (one process's, or a shard's in a
/// cluster) and waits for its answer, at most 5 s.
pub(crate) async fn ask_engine<T>(
    core: &Sender<Command>,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    ask_engine_within(core, command, Duration::from_secs(5)).await
}

/// How long `/healthz` waits for the engine: a probe wants its answer
/// within a second or two, and an engine held up that long (by a stalled
/// journal, say) is itself the news.
const HEALTH_WAIT: Duration = Duration::from_secs(1);

/// [`ask_engine`], waiting at most `within` for the answer.
async fn ask_engine_within<T>(
    core: &Sender<Command>,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
    within: Duration,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    match core.try_send(command(reply)) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the engine is busy; retry",
            ))
        }
        Err(TrySendError::Disconnected(_)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "kordon is stopping",
            ))
        }
    }
    match tokio::time::timeout(within, answer).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "kordon is stopping",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the engine did not answer in {} s", within.as_secs()),
        )),
    }
}

/// 200 when the engine answers, the broker is connected and the journal
/// commits; 503 naming each problem otherwise.
async fn healthz(State(state): State<ApiState>) -> Response {
    // Asked on the requests' queue, which the engine's thread takes from
    // before the fixes: under overload the engine still answers. An engine
    // that does not (it waits for a stalled journal) is named a problem,
    // beside the reason the report gives.
    let cases = ask_engine_within(&state.desk, Command::ListCases, HEALTH_WAIT)
        .await
        .map(|c| c.len());
    let mut report = state.health.report();
    if let Err(ApiError(_, error)) = &cases {
        report.problems.push(format!(
            "the engine did not answer: {}",
            error["error"].as_str().unwrap_or("unknown")
        ));
    }
    let cases = cases.ok();
    let (status, word) = if report.problems.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "degraded")
    };
    let body = json!({
        "status": word,
        // kordon's time (simulated in the demo): consoles time alerts by it.
        "now": state.clock.now(),
        "cases": cases,
        "broker_connected_since": report.broker_connected_since,
        "problems": report.problems,
    });
    (status, Json(body)).into_response()
}

async fn metrics(caller: Caller, State(state): State<ApiState>) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    state.metrics.run_upkeep();
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response())
}

async fn list_cases(caller: Caller, State(state): State<ApiState>) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let cases = ask(&state, Command::ListCases).await?;
    Ok(Json(cases).into_response())
}

async fn get_case(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let case = ask(&state, |reply| Command::GetCase(CaseId::new(&id), reply)).await?;
    case.map(|c| Json(c).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no case `{id}`")))
}

async fn put_case(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let case = crate::intake::case_for_path(&id, &body)?;
    let warnings = crate::intake::warnings_of(&case);
    let now = state.clock.now();
    let result = ask(&state, |reply| Command::PutCase {
        case: Box::new(case),
        now,
        reply,
    })
    .await?;
    tracing::info!(case = id, by = caller.name, "case put through the API");
    match result {
        Ok(outcome) => {
            let status = match outcome {
                crate::core_thread::PutOutcome::Created => StatusCode::CREATED,
                crate::core_thread::PutOutcome::Replaced => StatusCode::OK,
            };
            let body = json!({ "case": id, "outcome": outcome, "warnings": warnings });
            Ok((status, Json(body)).into_response())
        }
        Err(PutCaseError::Rejected(rejected)) => Err(crate::intake::refused(&rejected)),
        Err(PutCaseError::Storage(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the case runs but could not be stored, so it will not survive a restart: {e}"),
        )),
    }
}

async fn delete_case(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let now = state.clock.now();
    let removed = ask(&state, |reply| Command::DeleteCase {
        id: CaseId::new(&id),
        now,
        reply,
    })
    .await?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    tracing::info!(
        case = id,
        by = caller.name,
        removed,
        "case delete through the API"
    );
    if removed {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no case `{id}`"),
        ))
    }
}

/// What a caller of `role` may see of an alert, if anything. An admin
/// sees nothing that locates a protected person: not her position, not the
/// distance to her, and no position of his either: a tamper or a battery
/// alert while he stands beside her, or a zone breach in the zone around
/// her home, would place her as well as a contact-ban alert does.
pub(crate) fn visible(role: Role, mut record: AlertRecord) -> Option<AlertRecord> {
    match role {
        Role::Monitoring => Some(record),
        Role::Police => record.needs_police.then_some(record),
        Role::Admin => {
            record.latest = record.latest.without_protected_position();
            record.latest.offender = None;
            Some(record)
        }
    }
}

async fn list_alerts(caller: Caller, State(state): State<ApiState>) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let alerts: Vec<AlertView> = ask(&state, Command::Alerts)
        .await?
        .into_iter()
        .filter_map(|r| visible(caller.role, r))
        .map(|r| AlertView::of(r, state.escalate_after_s))
        .collect();
    Ok(Json(alerts).into_response())
}

async fn get_alert(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let alert = ask(&state, |reply| Command::Alert(id.clone(), reply)).await?;
    alert
        .and_then(|r| visible(caller.role, r))
        .map(|r| Json(AlertView::of(r, state.escalate_after_s)).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no alert `{id}`")))
}

/// An acknowledgement: the operator is the caller (a session's or token's
/// name) unless an API client names the person at its console.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AckBody {
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// Reads an optional JSON body; an empty body is the default.
fn body_or_default<T: serde::de::DeserializeOwned + Default>(
    body: &str,
    expected: &str,
) -> Result<T, ApiError> {
    if body.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("expected {expected}: {e}")))
}

/// Hands an operator's action to the engine's thread and answers with what
/// it did, once that is journaled.
async fn operate(
    state: &ApiState,
    caller: &Caller,
    id: &str,
    operator: String,
    action: OperatorAction,
) -> Result<Response, ApiError> {
    let now = state.clock.now();
    let result = ask(state, |reply| Command::Operator {
        id: id.to_string(),
        operator,
        action,
        now,
        reply,
    })
    .await?;
    tracing::debug!(alert = id, by = caller.name, "operator action");
    result
        .map(|done| Json(done).into_response())
        .map_err(|e| action_refused(&e))
}

/// The answer to an operator's action the desk refused.
pub(crate) fn action_refused(e: &OperatorError) -> ApiError {
    let status = match e {
        OperatorError::UnknownAlert(_) => StatusCode::NOT_FOUND,
        OperatorError::Conflict(_) => StatusCode::CONFLICT,
        OperatorError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// The monitoring room's acknowledgement, or the police's own (their
/// dispatcher took it), by the caller's role.
async fn ack_alert(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring, Role::Police])?;
    let (operator, action) = acknowledgement(&caller, &body)?;
    if caller.role == Role::Police {
        let visible = ask(&state, |reply| Command::Alert(id.clone(), reply))
            .await?
            .is_some_and(|r| r.needs_police);
        if !visible {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no alert with id `{id}`"),
            ));
        }
    }
    operate(&state, &caller, &id, operator, action).await
}

/// The acknowledgement a request asks for, and who gives it: the caller
/// unless an API client names the person at its console.
pub(crate) fn acknowledgement(
    caller: &Caller,
    body: &str,
) -> Result<(String, OperatorAction), ApiError> {
    let body: AckBody = body_or_default(body, r#"{"note": "…"}"#)?;
    let operator = body.operator.unwrap_or_else(|| caller.name.clone());
    if operator.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`operator` is empty",
        ));
    }
    let action = OperatorAction::Acknowledge {
        note: body.note,
        police: caller.role == Role::Police,
    };
    Ok((operator, action))
}

/// The body of a resolution: who resolved it is the caller.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    #[serde(default)]
    disposition: Option<kordon_alert::Disposition>,
    #[serde(default)]
    note: Option<String>,
}

/// The monitoring room closes its handling of an alert with a disposition
/// and a note. A tamper alarm's episode closes with it (reason
/// `operator_resolved`, in every case the bracelet is in; without a
/// disposition it is `bracelet_checked`). The answer comes once that is
/// journaled; while the journal cannot commit it waits, and after 5 s is a
/// 503 like any unanswered call: the resolution then stands in memory and
/// is committed by the writer's retry (GET the alert to see it).
async fn resolve_alert(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let action = resolution(&body)?;
    operate(&state, &caller, &id, caller.name.clone(), action).await
}

/// The resolution a request asks for (the operator is the caller).
pub(crate) fn resolution(body: &str) -> Result<OperatorAction, ApiError> {
    let body: ResolveBody = body_or_default(
        body,
        r#"{"disposition": "…", "note": "…"} (the operator is the caller)"#,
    )?;
    Ok(OperatorAction::Resolve {
        disposition: body.disposition,
        note: body.note,
    })
}

/// The one text field `field` of a body such as `{"text": "…"}`; blank
/// is refused with `blank`.
fn required_text(body: &str, field: &str, blank: &str) -> Result<String, ApiError> {
    let refused = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(r#"expected {{"{field}": "…"}}: {why}"#),
        )
    };
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(body).map_err(|e| refused(e.to_string()))?;
    if let Some(other) = object.keys().find(|k| *k != field) {
        return Err(refused(format!("unknown field `{other}`")));
    }
    let text = object
        .get(field)
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| refused(format!("`{field}` is missing or not text")))?;
    if text.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, blank));
    }
    Ok(text.to_string())
}

async fn note_alert(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring, Role::Police])?;
    let action = note(&body)?;
    operate(&state, &caller, &id, caller.name.clone(), action).await
}

/// The note a request adds (`{"text": "…"}`).
pub(crate) fn note(body: &str) -> Result<OperatorAction, ApiError> {
    let text = required_text(body, "text", "the note is empty")?;
    Ok(OperatorAction::Note { text })
}

/// The monitoring room passes an alert to the police and the case
/// coordinators now, with a note saying why.
async fn escalate_alert(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let action = escalation(&body)?;
    operate(&state, &caller, &id, caller.name.clone(), action).await
}

/// The escalation by hand a request asks for, with its reason
/// (`{"note": "…"}`).
pub(crate) fn escalation(body: &str) -> Result<OperatorAction, ApiError> {
    let note = required_text(
        body,
        "note",
        "say why it goes to the police: the note is empty",
    )?;
    Ok(OperatorAction::Escalate { note })
}

/// The dispositions an alert can be resolved with.
pub(crate) async fn dispositions(caller: Caller) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    Ok(Json(kordon_alert::Disposition::ALL).into_response())
}

/// `?lat=…&lon=…` (which bans cover this place) or `?person=…` (which
/// bans apply to this case, bracelet or victim device).
#[derive(Deserialize)]
pub(crate) struct BansQuery {
    lat: Option<f64>,
    lon: Option<f64>,
    person: Option<String>,
}

/// What a caller asks of `/api/v1/bans`.
pub(crate) enum BansAsked {
    At { lat: f64, lon: f64 },
    Of(String),
}

pub(crate) type BansQueryResult =
    Result<Query<BansQuery>, axum::extract::rejection::QueryRejection>;

/// Reads `?lat=…&lon=…` or `?person=…`, refusing anything else.
pub(crate) fn bans_asked(query: BansQueryResult) -> Result<BansAsked, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected ?lat=…&lon=… or ?person=…: {e}"),
        )
    })?;
    let (lat, lon) = match (q.lat, q.lon, q.person) {
        (None, None, Some(person)) if !person.trim().is_empty() => {
            return Ok(BansAsked::Of(person))
        }
        (Some(lat), Some(lon), None) => (lat, lon),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "expected ?lat=…&lon=… or ?person=…",
            ))
        }
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "lat must be in -90..90 and lon in -180..180",
        ));
    }
    Ok(BansAsked::At { lat, lon })
}

/// The bans covering a place that a caller of `role` may see: an admin
/// sees no contact ban, whose hit says where a protected person is.
pub(crate) fn bans_visible(role: Role, hits: Vec<kordon_core::BanHit>) -> Vec<kordon_core::BanHit> {
    match role {
        Role::Admin => hits
            .into_iter()
            .filter(|h| h.kind != kordon_core::BanKind::ContactBan)
            .collect(),
        _ => hits,
    }
}

async fn bans(
    caller: Caller,
    State(state): State<ApiState>,
    query: BansQueryResult,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let (lat, lon) = match bans_asked(query)? {
        BansAsked::Of(person) => return crate::intake::person(&state, &person).await,
        BansAsked::At { lat, lon } => (lat, lon),
    };
    let now = state.clock.now();
    let hits = ask(&state, |reply| Command::Bans {
        lat,
        lon,
        now,
        reply,
    })
    .await?;
    Ok(Json(bans_visible(caller.role, hits)).into_response())
}
