//! The dashboard's own routes: its files (`web/static/`, embedded in the
//! binary at build time, so nothing is fetched from anywhere else), signing
//! in and out, the live stream and the devices' latest positions.
//!
//! It decides nothing and changes no alert: everything an operator does
//! goes through the API routes of [`crate::http`] like any other client's.

use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use include_dir::{include_dir, Dir};
use serde::Deserialize;

use crate::clock::Clock;
use crate::config::Role;
use crate::http::{ApiError, ApiState, Caller, Callers};
use crate::live::Feed;
use crate::session;

static FILES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/static");

/// What the dashboard's routes read: who may call, the live feed, and
/// kordon's clock. One process serves them, and so does every cluster
/// instance (`crate::cluster_node::dashboard`).
pub(crate) trait Dashboard: Callers + Clone + Send + Sync + 'static {
    fn feed(&self) -> &Feed;
    fn clock(&self) -> Clock;
}

impl Dashboard for ApiState {
    fn feed(&self) -> &Feed {
        &self.feed
    }
    fn clock(&self) -> Clock {
        self.clock
    }
}

pub fn routes() -> Router<ApiState> {
    dashboard_routes().route("/api/v1/positions", get(positions))
}

/// The dashboard's files, sessions and live stream (the positions are
/// the state's own: one process has them at hand, a cluster gathers them).
pub(crate) fn dashboard_routes<S: Dashboard>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .route(
            "/api/v1/session",
            get(whoami::<S>).post(sign_in::<S>).delete(sign_out::<S>),
        )
        .route("/api/v1/stream", get(stream::<S>))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "geojson" => "application/geo+json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Response {
    match FILES.get_file(path) {
        Some(file) => (
            [
                (CONTENT_TYPE, content_type(path)),
                // Files change with the binary; a console that reloads
                // after an upgrade gets the new ones.
                (CACHE_CONTROL, "no-cache"),
            ],
            file.contents(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

async fn index() -> Response {
    file("index.html")
}

async fn asset(Path(path): Path<String>) -> Response {
    if path.split('/').any(|part| part == "..") {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    file(&path)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// Exchanges a bearer token for a session cookie.
async fn sign_in<S: Dashboard>(State(state): State<S>, body: String) -> Result<Response, ApiError> {
    let SignIn { token } = serde_json::from_str(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(r#"expected {{"token": "…"}}: {e}"#),
        )
    })?;
    let access = state.access();
    let holder = access
        .tokens
        .holder(&token)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
    let (id, info) = access
        .sessions
        .open(&holder.name, holder.role, Instant::now());
    tracing::info!(name = holder.name, role = ?holder.role, "signed in to the dashboard");
    let body = with_now(&state, info);
    Ok(([(SET_COOKIE, session::set_cookie(&id))], Json(body)).into_response())
}

/// Who the session belongs to, with its CSRF token (a reloaded page asks).
async fn whoami<S: Dashboard>(
    State(state): State<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let info = session_id(&headers)
        .and_then(|id| state.access().sessions.get(id, Instant::now()))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not signed in"))?;
    Ok(Json(with_now(&state, info)).into_response())
}

/// The session as the dashboard is told of it, with kordon's time (the
/// demo's simulated time runs ahead of the browser's clock).
fn with_now<S: Dashboard>(state: &S, info: session::SessionInfo) -> serde_json::Value {
    let mut body = serde_json::to_value(info).unwrap_or_default();
    body["now"] = serde_json::json!(state.clock().now());
    body
}

async fn sign_out<S: Dashboard>(
    caller: Caller,
    State(state): State<S>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(id) = session_id(&headers) {
        state.access().sessions.close(id);
    }
    tracing::info!(name = caller.name, "signed out of the dashboard");
    Ok((
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, session::clear_cookie())],
    )
        .into_response())
}

fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::cookie_value)
}

/// The live stream (Server-Sent Events); `Last-Event-ID` resumes.
async fn stream<S: Dashboard>(
    caller: Caller,
    State(state): State<S>,
    headers: HeaderMap,
) -> Response {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state
        .feed()
        .stream(caller.role, last.as_deref())
        .into_response()
}

/// Every device's latest position: the monitoring room's map.
async fn positions(caller: Caller, State(state): State<ApiState>) -> Result<Response, ApiError> {
    caller.require(&[Role::Monitoring])?;
    Ok(Json(state.feed.positions()).into_response())
}
