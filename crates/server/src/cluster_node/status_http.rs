//! The HTTP a cluster instance answers: `/healthz` (no token, as in single
//! process: a supervisor's probe) with the shards it serves, and `/metrics`
//! (any configured token). The cases, the alerts and the histories are
//! served beside them ([`super::case_api`], [`super::alert_api`],
//! [`super::history_api`]). It never changes anything.

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kordon_cluster::Tenure;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::config::TokenConfig;
use crate::http::Tokens;

#[derive(Clone)]
struct StatusState {
    instance: String,
    serving: watch::Receiver<Vec<Tenure>>,
    metrics: PrometheusHandle,
    tokens: Tokens,
}

pub fn router(
    instance: String,
    serving: watch::Receiver<Vec<Tenure>>,
    metrics: PrometheusHandle,
    tokens: &[TokenConfig],
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .with_state(StatusState {
            instance,
            serving,
            metrics,
            tokens: Tokens::new(tokens),
        })
}

/// 200 while the instance serves at least one shard; 503 while it serves
/// none (joining, cut off from NATS, or more instances than shards), so a
/// probe sees an instance that is up but doing nothing.
async fn healthz(State(state): State<StatusState>) -> Response {
    let now = Instant::now();
    let serving = state.serving.borrow().clone();
    // A tenure past its end is over, whether or not its shard has been
    // closed yet.
    let shards: Vec<serde_json::Value> = serving
        .iter()
        .filter(|t| t.valid_until > now)
        .map(|t| {
            serde_json::json!({
                "shard": t.shard.0,
                "epoch": t.epoch.0,
                "tenure_left_ms": t.valid_until.saturating_duration_since(now).as_millis() as u64,
            })
        })
        .collect();
    let status = match shards.is_empty() {
        true => StatusCode::SERVICE_UNAVAILABLE,
        false => StatusCode::OK,
    };
    let body = serde_json::json!({
        "status": if shards.is_empty() { "serving_no_shard" } else { "ok" },
        "instance": state.instance,
        "shards": shards,
    });
    (status, Json(body)).into_response()
}

async fn metrics_page(State(state): State<StatusState>, headers: HeaderMap) -> Response {
    if !matches!(state.tokens.bearer(&headers), Some(Ok(_))) {
        return (
            StatusCode::UNAUTHORIZED,
            "a configured API token is needed\n",
        )
            .into_response();
    }
    state.metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
