//! The case API of a cluster instance: `GET`, `PUT` and `DELETE
//! /api/v1/cases…`, with the roles and answers of single-process kordon
//! (`crate::http`), on the cases' bucket, which every instance reads and
//! writes. Any instance can be asked: the one serving a case's shard
//! applies each change as the bucket passes it on ([`super::ShardHost`]).
//!
//! A case is checked before it is stored, as one process checks it before
//! it runs: the case file, by an engine of its own that holds nothing else,
//! and its devices' roles against every other case of the cluster, from the
//! [`CaseDirectory`] (a device is never an offender's bracelet in one case
//! and a protected person's device in another). A case the bucket holds is
//! then one its shard's engine takes.
//!
//! What it never does: reach an engine that serves a shard, or answer
//! without a token. Two admins putting conflicting cases through two
//! instances within the same few milliseconds are not caught: each
//! instance's directory lags the bucket by the time a change takes to
//! reach it.

use std::collections::{BTreeMap, HashMap};

use async_nats::jetstream::kv;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kordon_cluster::cases::{self, CaseChange};
use kordon_cluster::ClusterError;
use kordon_core::{
    check_device_roles, Case, CaseId, CaseRejected, DeviceId, Engine, EngineConfig, Role as Side,
};
use serde_json::json;
use tokio::sync::watch;

use crate::config::{Role, TokenConfig};
use crate::core_thread::{CaseSummary, PutOutcome};
use crate::http::{ApiError, Caller, Tokens, ALL};
use crate::intake;

/// Every case of the cluster, as summaries and device roles (not whole
/// cases: a million devices' cases would not fit every instance's memory),
/// kept up to date with the bucket.
#[derive(Default, Clone)]
pub struct CaseDirectory {
    cases: BTreeMap<CaseId, Listed>,
    devices: HashMap<DeviceId, Vec<(CaseId, Side)>>,
}

#[derive(Clone)]
struct Listed {
    summary: CaseSummary,
    devices: Vec<(DeviceId, Side)>,
}

impl CaseDirectory {
    /// Every case of `bucket`, followed from now on.
    pub async fn follow(bucket: kv::Store) -> Result<watch::Receiver<Self>, ClusterError> {
        cases::follow(bucket, CaseDirectory::default(), CaseDirectory::apply).await
    }

    fn apply(&mut self, change: CaseChange) {
        let id = CaseId::new(change.id);
        self.forget(&id);
        if let Some(case) = change.case {
            self.list(&case);
        }
    }

    /// Lists a case as stored, replacing what was listed of it.
    pub fn list(&mut self, case: &Case) {
        self.forget(&case.id);
        let mut devices = vec![(case.offender.device.clone(), Side::Offender)];
        devices.extend(
            case.protected
                .iter()
                .filter_map(|p| p.device.clone())
                .map(|d| (d, Side::Protected)),
        );
        for (device, side) in &devices {
            self.devices
                .entry(device.clone())
                .or_default()
                .push((case.id.clone(), *side));
        }
        let summary = CaseSummary::of(case);
        self.cases
            .insert(case.id.clone(), Listed { summary, devices });
    }

    fn forget(&mut self, id: &CaseId) {
        let Some(listed) = self.cases.remove(id) else {
            return;
        };
        for (device, _) in listed.devices {
            if let Some(memberships) = self.devices.get_mut(&device) {
                memberships.retain(|(case, _)| case != id);
                if memberships.is_empty() {
                    self.devices.remove(&device);
                }
            }
        }
    }

    /// The cases a device is in, each with its side there.
    pub fn memberships(&self, device: &DeviceId) -> Vec<(CaseId, Side)> {
        self.devices.get(device).cloned().unwrap_or_default()
    }

    /// Every case, in id order.
    pub fn summaries(&self) -> Vec<CaseSummary> {
        self.cases.values().map(|l| l.summary.clone()).collect()
    }
}

/// What the case routes need: the bucket, the directory that follows it,
/// the tokens, and the engine settings a case is checked with.
#[derive(Clone)]
pub struct CaseApi {
    bucket: kv::Store,
    directory: watch::Receiver<CaseDirectory>,
    tokens: Tokens,
    engine: EngineConfig,
}

impl CaseApi {
    /// Reads every case of `bucket` into the directory, and follows it.
    pub async fn start(
        bucket: kv::Store,
        tokens: &[TokenConfig],
        engine: EngineConfig,
    ) -> Result<CaseApi, ClusterError> {
        let directory = CaseDirectory::follow(bucket.clone()).await?;
        Ok(CaseApi {
            bucket,
            directory,
            tokens: Tokens::new(tokens),
            engine,
        })
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/cases", get(list_cases))
            .route(
                "/api/v1/cases/{id}",
                get(get_case).put(put_case).delete(delete_case),
            )
            .with_state(self)
    }
}

/// The check a case passes before it enters the cluster's bucket, through
/// the API or `kordon cluster put-cases`: what the engine that will run it
/// would refuse (checked by an engine of its own, holding nothing else),
/// and a device already on the other side of another case in `directory`.
pub fn check_case(
    case: &Case,
    engine: &EngineConfig,
    directory: &CaseDirectory,
) -> Result<(), CaseRejected> {
    let mut scratch = Engine::new(engine.clone());
    let mut report = match scratch.upsert_case(case.clone(), jiff::Timestamp::UNIX_EPOCH) {
        Ok(_) => kordon_core::ValidationReport::default(),
        Err(rejected) => rejected.report,
    };
    check_device_roles(case, |device| directory.memberships(device), &mut report);
    match report.is_ok() {
        true => Ok(()),
        false => Err(CaseRejected { report }),
    }
}

impl FromRequestParts<CaseApi> for Caller {
    type Rejection = ApiError;

    /// A bearer token only: a cluster instance keeps no dashboard sessions.
    async fn from_request_parts(parts: &mut Parts, state: &CaseApi) -> Result<Self, ApiError> {
        state.tokens.bearer(&parts.headers).unwrap_or_else(|| {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required",
            ))
        })
    }
}

/// NATS could not be asked: the caller may retry, on this instance or
/// another.
fn unavailable(e: ClusterError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the cluster's cases could not be reached; retry: {e}"),
    )
}

async fn list_cases(caller: Caller, State(api): State<CaseApi>) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    let summaries = api.directory.borrow().summaries();
    Ok(Json(summaries).into_response())
}

async fn get_case(
    caller: Caller,
    State(api): State<CaseApi>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(ALL)?;
    cases::get(&api.bucket, &id)
        .await
        .map_err(unavailable)?
        .map(|case| Json(case).into_response())
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no case `{id}`")))
}

async fn put_case(
    caller: Caller,
    State(api): State<CaseApi>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let case = intake::case_for_path(&id, &body)?;
    if !case.id.is_plain() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("case id `{id}` must be 1 to 64 of A-Z a-z 0-9 . _ -, not starting with '.'"),
        ));
    }
    check_case(&case, &api.engine, &api.directory.borrow()).map_err(|r| intake::refused(&r))?;
    let existed = cases::get(&api.bucket, &id).await.map_err(unavailable)?;
    cases::put(&api.bucket, &case).await.map_err(unavailable)?;
    tracing::info!(
        case = id,
        by = caller.name,
        "case put in the cluster's bucket"
    );
    let (status, outcome) = match existed {
        Some(_) => (StatusCode::OK, PutOutcome::Replaced),
        None => (StatusCode::CREATED, PutOutcome::Created),
    };
    let warnings = intake::warnings_of(&case);
    let body = json!({ "case": id, "outcome": outcome, "warnings": warnings });
    Ok((status, Json(body)).into_response())
}

async fn delete_case(
    caller: Caller,
    State(api): State<CaseApi>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    if cases::get(&api.bucket, &id)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no case `{id}`"),
        ));
    }
    cases::delete(&api.bucket, &id).await.map_err(unavailable)?;
    tracing::info!(
        case = id,
        by = caller.name,
        "case deleted from the cluster's bucket"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
