//! The HTTP API (axum). Every route but `/healthz` needs a bearer token; the
//! token's role decides what the caller sees:
//!
//! | route | monitoring | police | admin |
//! | --- | --- | --- | --- |
//! | `GET /metrics` | yes | yes | yes |
//! | `GET /api/v1/cases`, `GET /api/v1/cases/{id}` | yes | yes | yes |
//! | `PUT`, `DELETE /api/v1/cases/{id}` | 403 | 403 | yes |
//! | `GET /api/v1/alerts`, `GET /api/v1/alerts/{id}` | all alerts | alerts for police | all, without the victim's position |
//! | `POST /api/v1/alerts/{id}/ack` | yes | yes | 403 |
//! | `POST /api/v1/alerts/{id}/resolve` (a tamper alarm) | yes | 403 | 403 |
//! | `GET /api/v1/bans?lat=&lon=` | yes | yes | yes |
//!
//! A missing or unknown token is 401; a known token of the wrong role 403.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use crossbeam_channel::{Sender, TrySendError};
use kordon_alert::{AckError, AlertRecord};
use kordon_core::{Case, CaseId};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::config::{Role, TokenConfig};
use crate::core_thread::{Command, PutCaseError, ResolveError};
use crate::health::Health;

#[derive(Clone)]
pub struct ApiState {
    core: Sender<Command>,
    tokens: Arc<Vec<Token>>,
    metrics: PrometheusHandle,
    clock: crate::clock::Clock,
    health: Health,
}

struct Token {
    sha256: [u8; 32],
    role: Role,
    name: String,
}

impl ApiState {
    pub fn new(
        core: Sender<Command>,
        tokens: &[TokenConfig],
        metrics: PrometheusHandle,
        clock: crate::clock::Clock,
        health: Health,
    ) -> Self {
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
        ApiState {
            core,
            tokens: Arc::new(tokens),
            metrics,
            clock,
            health,
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
        .route("/api/v1/bans", get(bans))
        .with_state(state)
}

/// An API error: status and a message for the person who called.
pub struct ApiError(StatusCode, serde_json::Value);

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, json!({ "error": message.into() }))
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
    fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
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

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"))?;
        let token = header.strip_prefix("Bearer ").ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "use `Authorization: Bearer <token>`",
            )
        })?;
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        state
            .tokens
            .iter()
            .find(|t| t.sha256 == digest)
            .map(|t| Caller {
                role: t.role,
                name: t.name.clone(),
            })
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))
    }
}

const ALL: &[Role] = &[Role::Monitoring, Role::Police, Role::Admin];

/// Sends a command to the engine's thread and waits for its answer.
async fn ask<T>(
    state: &ApiState,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    match state.core.try_send(command(reply)) {
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
    match tokio::time::timeout(Duration::from_secs(5), answer).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "kordon is stopping",
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine did not answer in 5 s",
        )),
    }
}

/// 200 when the engine answers, the broker is connected and the journal
/// commits; 503 naming each problem otherwise.
async fn healthz(State(state): State<ApiState>) -> Response {
    // Under overload the engine's queue may be full: the report still says
    // why, rather than a bare "busy".
    let cases = ask(&state, Command::ListCases).await.map(|c| c.len());
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
    let case = Case::from_json(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("not a case file: {e}")))?;
    if case.id.as_str() != id {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the path names case `{id}` but the body is case `{}`",
                case.id
            ),
        ));
    }
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
            Ok((status, Json(json!({ "case": id, "outcome": outcome }))).into_response())
        }
        Err(PutCaseError::Rejected(rejected)) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": rejected.to_string(), "report": rejected.report }),
        )),
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

/// What `caller` may see of an alert, if anything.
fn visible(caller: &Caller, mut record: AlertRecord) -> Option<AlertRecord> {
    match caller.role {
        Role::Monitoring => Some(record),
        Role::Police => record.needs_police.then_some(record),
        Role::Admin => {
            record.latest = record.latest.without_protected_position();
            Some(record)
        }
    }
}

async fn list_alerts(caller: Caller, State(state): State<ApiState>) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let alerts: Vec<AlertRecord> = ask(&state, Command::Alerts)
        .await?
        .into_iter()
        .filter_map(|r| visible(&caller, r))
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
        .and_then(|r| visible(&caller, r))
        .map(|r| Json(r).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no alert `{id}`")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    operator: String,
    #[serde(default)]
    note: Option<String>,
}

async fn ack_alert(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring, Role::Police])?;
    let body: AckBody = serde_json::from_str(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"operator\": \"…\", \"note\": \"…\"}}: {e}"),
        )
    })?;
    if body.operator.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "`operator` is empty",
        ));
    }
    let now = state.clock.now();
    let result = ask(&state, |reply| Command::Acknowledge {
        id: id.clone(),
        operator: body.operator,
        note: body.note,
        now,
        reply,
    })
    .await?;
    match result {
        Ok(ack) => Ok(Json(ack).into_response()),
        Err(e @ AckError::UnknownAlert(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e @ AckError::AlreadyAcknowledged { .. }) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
    }
}

/// The body of a resolution: who resolved it is the caller's token.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    #[serde(default)]
    note: Option<String>,
}

/// The monitoring room resolves a tamper alarm once someone has checked the
/// bracelet: the episode closes with reason `operator_resolved` (in every
/// case the bracelet is in), and the answer comes once that is journaled.
/// While the journal cannot commit the answer waits, and after 5 s is a 503
/// like any unanswered call: the resolution then stands in memory and is
/// committed by the writer's retry (GET the alert to see it closed).
async fn resolve_alert(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    let body: ResolveBody = if body.trim().is_empty() {
        ResolveBody::default()
    } else {
        serde_json::from_str(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"note\": \"…\"}} or no body (the operator is the token's name): {e}"
                ),
            )
        })?
    };
    let now = state.clock.now();
    let result = ask(&state, |reply| Command::Resolve {
        id: id.clone(),
        operator: caller.name.clone(),
        note: body.note,
        now,
        reply,
    })
    .await?;
    match result {
        Ok(resolution) => Ok(Json(resolution).into_response()),
        Err(e @ ResolveError::UnknownAlert(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e @ ResolveError::NotTamper { .. }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.to_string(),
        )),
        Err(e @ (ResolveError::AlreadyCleared { .. } | ResolveError::NotOpen { .. })) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
    }
}

#[derive(Deserialize)]
struct BansQuery {
    lat: f64,
    lon: f64,
}

async fn bans(
    caller: Caller,
    State(state): State<ApiState>,
    query: Result<Query<BansQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected ?lat=…&lon=…: {e}"),
        )
    })?;
    if !(-90.0..=90.0).contains(&q.lat) || !(-180.0..=180.0).contains(&q.lon) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "lat must be in -90..90 and lon in -180..180",
        ));
    }
    let now = state.clock.now();
    let hits = ask(&state, |reply| Command::Bans {
        lat: q.lat,
        lon: q.lon,
        now,
        reply,
    })
    .await?;
    let hits = if caller.role == Role::Admin {
        // A contact ban hit says where a protected person is.
        hits.into_iter()
            .filter(|h| h.kind != kordon_core::BanKind::ContactBan)
            .collect()
    } else {
        hits
    };
    Ok(Json(hits).into_response())
}
