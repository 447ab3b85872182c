//! The case API of a cluster instance: `GET /api/v1/cases`, `GET`, `PUT`
//! and `DELETE /api/v1/cases/{id}`, and `POST /api/v1/cases/{id}/check`,
//! with the roles and answers of single-process kordon (`crate::http`,
//! `crate::intake`), on the cases' bucket, which every instance reads and
//! writes. Any instance can be asked: the one serving a case's shard
//! applies each change as the bucket passes it on ([`super::ShardHost`]).
//! (A case's timeline is not served in a cluster yet.)
//!
//! A case is checked before it is stored, as one process checks it before
//! it runs ([`check_case`]): the case file, by an engine of its own that
//! holds nothing else, and its devices' sides against every other case of
//! the cluster, from the [`CaseDirectory`] (a device is never an offender's
//! bracelet in one case and a protected person's device in another). A
//! change is made over the revision it read (compare and set), so two
//! writers never both think they made a case, and answered once this
//! instance's directory has it, so the next request here sees it.
//!
//! What it never does: reach an engine that serves a shard, or answer
//! without a token. Two admins putting conflicting cases through two
//! instances within the few milliseconds a change takes to reach the other
//! instance's directory are not caught.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kordon_cluster::cases::{self, CaseChange, Changed, Stored};
use kordon_cluster::ClusterError;
use kordon_core::{
    check_device_roles, Case, CaseId, CaseRejected, DeviceId, Engine, EngineConfig, Role as Side,
    ValidationReport,
};
use serde_json::json;
use tokio::sync::{watch, Mutex};

use crate::config::Role;
use crate::core_thread::{CaseSummary, PutOutcome};
use crate::http::{self, Access, ApiError, Caller, ALL};
use crate::intake;

/// Every case of the cluster, as summaries and device roles for the case
/// API, kept up to date with the bucket. (The whole cases, by shard, are
/// the shard host's: [`kordon_cluster::cases::CasesByShard`].)
#[derive(Default, Clone)]
pub struct CaseDirectory {
    cases: BTreeMap<CaseId, Listed>,
    devices: HashMap<DeviceId, Vec<(CaseId, Side)>>,
    /// The bucket's revision of the last change listed.
    revision: u64,
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
        self.revision = self.revision.max(change.revision);
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

    /// The memberships of a case's devices: all [`check_case`] needs, taken
    /// at once so that the directory is not held while a case is checked.
    fn memberships_of(&self, case: &Case) -> HashMap<DeviceId, Vec<(CaseId, Side)>> {
        let devices = std::iter::once(&case.offender.device)
            .chain(case.protected.iter().filter_map(|p| p.device.as_ref()));
        devices.map(|d| (d.clone(), self.memberships(d))).collect()
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
    access: Access,
    engine: EngineConfig,
    /// One change at a time through this instance: a case is checked
    /// against a directory that has every change made here before it.
    writing: Arc<Mutex<()>>,
}

impl CaseApi {
    /// Reads every case of `bucket` into the directory, and follows it.
    pub async fn start(
        bucket: kv::Store,
        access: Access,
        engine: EngineConfig,
    ) -> Result<CaseApi, ClusterError> {
        let directory = CaseDirectory::follow(bucket.clone()).await?;
        Ok(CaseApi {
            bucket,
            directory,
            access,
            engine,
            writing: Arc::default(),
        })
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/api/v1/cases", get(list_cases))
            .route(
                "/api/v1/cases/{id}",
                get(get_case).put(put_case).delete(delete_case),
            )
            .route("/api/v1/cases/{id}/check", post(check))
            .with_state(self)
    }
}

/// The check a case passes before it enters the cluster's bucket, through
/// the API or `kordon cluster put-cases`: what the engine that will run it
/// would refuse (checked by an engine of its own, holding nothing else),
/// and a device already on the other side of another case, from
/// `memberships` (the cases a device is in, each with its side there).
/// Warnings are kept in a refusal, as one process keeps them.
pub fn check_case<M>(
    case: &Case,
    engine: &EngineConfig,
    memberships: impl FnMut(&DeviceId) -> M,
) -> Result<(), CaseRejected>
where
    M: IntoIterator<Item = (CaseId, Side)>,
{
    let report = case_report(case, engine, memberships);
    match report.is_ok() {
        true => Ok(()),
        false => Err(CaseRejected { report }),
    }
}

/// Every problem and warning [`check_case`] finds.
fn case_report<M>(
    case: &Case,
    engine: &EngineConfig,
    memberships: impl FnMut(&DeviceId) -> M,
) -> ValidationReport
where
    M: IntoIterator<Item = (CaseId, Side)>,
{
    let mut scratch = Engine::new(engine.clone());
    // The time only places the case's orders in their validity; nothing
    // the check decides depends on it.
    let mut report = match scratch.upsert_case(case.clone(), jiff::Timestamp::UNIX_EPOCH) {
        Ok(_) => kordon_core::validate_case(case),
        Err(rejected) => rejected.report,
    };
    check_device_roles(case, memberships, &mut report);
    report
}

impl http::Callers for CaseApi {
    fn access(&self) -> &Access {
        &self.access
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

fn no_case(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no case `{id}`"))
}

fn changed_meanwhile(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!("case `{id}` was changed by someone else meanwhile; read it again and retry"),
    )
}

/// What the bucket holds of a case; a case id that cannot be a key is no
/// case (its key would be another's, or none).
async fn stored(api: &CaseApi, id: &str) -> Result<Stored, ApiError> {
    if !CaseId::new(id).is_plain() {
        return Err(no_case(id));
    }
    cases::stored(&api.bucket, id).await.map_err(unavailable)
}

impl CaseApi {
    /// The answer to a change made over a revision read: once this
    /// instance's directory has it, so that the request after it here sees
    /// it; a directory slower than a second is logged, and the change
    /// stands.
    async fn made(
        &self,
        id: &str,
        change: Result<Result<u64, Changed>, ClusterError>,
    ) -> Result<(), ApiError> {
        let revision = change
            .map_err(unavailable)?
            .map_err(|Changed| changed_meanwhile(id))?;
        let mut directory = self.directory.clone();
        let listed = directory.wait_for(|d| d.revision >= revision);
        if tokio::time::timeout(Duration::from_secs(1), listed)
            .await
            .is_err()
        {
            tracing::warn!(revision, "the case directory is slow to follow the bucket");
        }
        Ok(())
    }
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
    match stored(&api, &id).await? {
        Stored::Case { case, .. } => Ok(Json(case).into_response()),
        Stored::Missing { .. } => Err(no_case(&id)),
        Stored::Unreadable { problem, .. } => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("case `{id}` is in the bucket but cannot be read ({problem}); put it again"),
        )),
    }
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
            not_plain(&case.id),
        ));
    }
    let _writing = api.writing.lock().await;
    let report = api.report(&case);
    if !report.is_ok() {
        return Err(intake::refused(&CaseRejected { report }));
    }
    let before = stored(&api, &id).await?;
    let change = cases::put_over(&api.bucket, &case, before.revision()).await;
    api.made(&id, change).await?;
    tracing::info!(
        case = id,
        by = caller.name,
        "case put in the cluster's bucket"
    );
    let (status, outcome) = match before.exists() {
        true => (StatusCode::OK, PutOutcome::Replaced),
        false => (StatusCode::CREATED, PutOutcome::Created),
    };
    let warnings = intake::warnings_of(&case);
    let body = json!({ "case": id, "outcome": outcome, "warnings": warnings });
    Ok((status, Json(body)).into_response())
}

/// Why a case id that is not plain is refused in a cluster.
fn not_plain(id: &CaseId) -> String {
    format!(
        "case id `{id}` must be {} (in a cluster it is a key of the cases' bucket)",
        CaseId::PLAIN
    )
}

impl CaseApi {
    /// What [`check_case`] finds in `case`, against this instance's
    /// directory of the cluster's devices.
    fn report(&self, case: &Case) -> ValidationReport {
        let memberships = self.directory.borrow().memberships_of(case);
        case_report(case, &self.engine, |device| {
            memberships.get(device).cloned().unwrap_or_default()
        })
    }
}

/// A case file checked as a `PUT` of it would be, stored nowhere: its
/// problems and warnings, and what it changes in the stored case.
async fn check(
    caller: Caller,
    State(api): State<CaseApi>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let case = intake::parse(&body)?;
    let report = api.report(&case);
    let mut more = Vec::new();
    if !case.id.is_plain() {
        more.push(intake::FieldProblem {
            field: "id".into(),
            order: None,
            problem: json!({ "code": "id_not_plain" }),
            message: not_plain(&case.id),
        });
    }
    // A path that is not plain names no stored case (and the file's id
    // differs from it, or is not plain either: both are said).
    let running = match CaseId::new(&id).is_plain() {
        true => match stored(&api, &id).await? {
            Stored::Case { case, .. } => Some(case),
            Stored::Missing { .. } | Stored::Unreadable { .. } => None,
        },
        false => None,
    };
    let answer = intake::checked(&id, &case, &report, running.as_ref(), more);
    Ok(Json(answer).into_response())
}

async fn delete_case(
    caller: Caller,
    State(api): State<CaseApi>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let _writing = api.writing.lock().await;
    let before = stored(&api, &id).await?;
    if !before.exists() {
        return Err(no_case(&id));
    }
    let change = cases::delete_over(&api.bucket, &id, before.revision()).await;
    api.made(&id, change).await?;
    tracing::info!(
        case = id,
        by = caller.name,
        "case deleted from the cluster's bucket"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
