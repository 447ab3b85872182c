//! Case intake: a case file checked before it is applied. Every problem is
//! located (the field's path, e.g. `orders[1].rule.radius_m`, and its
//! order), a file that is not JSON or not a case says where it stopped
//! (line and column), and the diff against the case in force lists each
//! value that would change. Nothing is applied here: `PUT` does that.
//!
//! It also answers the police's "which bans apply to this person".

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kordon_core::{validate_case, Case, CaseError, CaseId, CaseRejected};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Role;
use crate::core_thread::Command;
use crate::http::{ask, ApiError, ApiState, Caller};

pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/v1/cases/{id}/check", post(check))
}

/// A located problem, as the intake form shows it next to its field.
#[derive(Debug, Serialize)]
pub struct FieldProblem {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    pub problem: Value,
    pub message: String,
}

impl From<&CaseError> for FieldProblem {
    fn from(e: &CaseError) -> Self {
        FieldProblem {
            field: e.field.clone(),
            order: e.order.as_ref().map(ToString::to_string),
            problem: serde_json::to_value(&e.problem).unwrap_or(Value::Null),
            message: e.problem.to_string(),
        }
    }
}

/// One value that would change.
#[derive(Debug, Serialize, PartialEq)]
pub struct Change {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// The case a `PUT /api/v1/cases/{id}` body holds: a case file, and the
/// case the path names.
pub(crate) fn case_for_path(id: &str, body: &str) -> Result<Case, ApiError> {
    let case = parse(body)?;
    if case.id.as_str() != id {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the path names case `{id}` but the body is case `{}`",
                case.id
            ),
        ));
    }
    Ok(case)
}

/// Orders that may not work as written (his address in his own zone, a
/// zone smaller than a fix's accuracy): the case runs, and the admin hears
/// why it may not protect her as meant.
pub(crate) fn warnings_of(case: &Case) -> Vec<FieldProblem> {
    validate_case(case)
        .warnings
        .iter()
        .map(FieldProblem::from)
        .collect()
}

/// The answer to a case refused: 422, every problem located.
pub(crate) fn refused(rejected: &CaseRejected) -> ApiError {
    let located =
        |list: &[CaseError]| -> Vec<FieldProblem> { list.iter().map(Into::into).collect() };
    ApiError::with_body(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({
            "error": rejected.to_string(),
            "report": rejected.report,
            "errors": located(&rejected.report.errors),
            "warnings": located(&rejected.report.warnings),
        }),
    )
}

/// Parses a case file, or says where and why it is not one.
pub fn parse(text: &str) -> Result<Case, ApiError> {
    Case::from_json(text).map_err(|e| {
        ApiError::with_body(
            StatusCode::BAD_REQUEST,
            json!({
                "error": format!("not a case file: {e}"),
                "line": e.line(),
                "column": e.column(),
            }),
        )
    })
}

async fn check(
    caller: Caller,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: String,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Admin])?;
    let case = parse(&body)?;
    let report = validate_case(&case);
    let running = ask(&state, |reply| Command::GetCase(CaseId::new(&id), reply)).await?;
    let answer = checked(&id, &case, &report, running.as_ref(), Vec::new());
    Ok(Json(answer).into_response())
}

/// The answer to a case's check before it is applied: its problems
/// (`report`, `more`, and a path naming another case), its warnings, and
/// what it changes in the case `running`.
pub(crate) fn checked(
    id: &str,
    case: &Case,
    report: &kordon_core::ValidationReport,
    running: Option<&Case>,
    more: Vec<FieldProblem>,
) -> Value {
    let mut errors: Vec<FieldProblem> = more;
    if case.id.as_str() != id {
        errors.push(FieldProblem {
            field: "id".into(),
            order: None,
            problem: json!({ "code": "id_differs_from_path" }),
            message: format!(
                "the path names case `{id}` but the file is case `{}`",
                case.id
            ),
        });
    }
    errors.extend(report.errors.iter().map(FieldProblem::from));
    let warnings: Vec<FieldProblem> = report.warnings.iter().map(FieldProblem::from).collect();
    let before = running
        .and_then(|c| serde_json::to_value(c).ok())
        .unwrap_or(Value::Null);
    let after = serde_json::to_value(case).unwrap_or(Value::Null);
    let mut changes = Vec::new();
    diff("", &before, &after, &mut changes);
    json!({
        "case": id,
        "exists": running.is_some(),
        "valid": errors.is_empty(),
        "errors": errors,
        "warnings": warnings,
        "diff": changes,
    })
}

/// The leaves that differ between `before` and `after`, by path. A case
/// that is new is listed by its top-level fields.
pub fn diff(path: &str, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Null, Value::Object(b)) if path.is_empty() => {
            out.extend(b.iter().map(|(key, value)| Change {
                path: key.clone(),
                before: None,
                after: Some(value.clone()),
            }));
        }
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff(
                    &sub,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if !is_coordinates(a) && !is_coordinates(b) => {
            for i in 0..a.len().max(b.len()) {
                diff(
                    &format!("{path}[{i}]"),
                    a.get(i).unwrap_or(&Value::Null),
                    b.get(i).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(Change {
            path: path.to_string(),
            before: (!a.is_null()).then(|| a.clone()),
            after: (!b.is_null()).then(|| b.clone()),
        }),
        _ => {}
    }
}

/// A geometry's coordinates change as one value: a redrawn zone is one
/// change, not a thousand.
fn is_coordinates(values: &[Value]) -> bool {
    values
        .first()
        .is_some_and(|v| v.is_array() || v.is_number())
}

/// The orders that apply to a person, found by case id, or the device of
/// the offender or of a protected person: what an officer on the street
/// asks.
#[derive(Debug, Serialize)]
pub struct PersonBans {
    pub case: CaseId,
    pub risk: kordon_core::RiskLevel,
    pub offender: kordon_core::DeviceId,
    /// How the id asked for relates to the case.
    pub matched_as: &'static str,
    pub orders: Vec<OrderInForce>,
}

#[derive(Debug, Serialize)]
pub struct OrderInForce {
    #[serde(flatten)]
    pub order: kordon_core::Order,
    pub valid_now: bool,
}

pub fn bans_of_person(cases: &[Case], who: &str, now: jiff::Timestamp) -> Vec<PersonBans> {
    let who = who.trim();
    cases
        .iter()
        .filter_map(|case| {
            let matched_as = if case.id.as_str().eq_ignore_ascii_case(who) {
                "case"
            } else if case.offender.device.as_str().eq_ignore_ascii_case(who) {
                "offender"
            } else if case.protected.iter().any(|p| {
                // Person ids (`P1`) are the case's own; devices are unique.
                p.device
                    .as_ref()
                    .is_some_and(|d| d.as_str().eq_ignore_ascii_case(who))
            }) {
                "protected"
            } else {
                return None;
            };
            Some(PersonBans {
                case: case.id.clone(),
                risk: case.risk,
                offender: case.offender.device.clone(),
                matched_as,
                orders: case
                    .orders
                    .iter()
                    .map(|o| OrderInForce {
                        valid_now: o.is_valid_at(now),
                        order: o.clone(),
                    })
                    .collect(),
            })
        })
        .collect()
}

pub(crate) async fn person(state: &ApiState, who: &str) -> Result<Response, ApiError> {
    let cases = ask(state, Command::AllCases).await?;
    let found = bans_of_person(&cases, who, state.clock.now());
    if found.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no case, bracelet or victim device `{who}`"),
        ));
    }
    Ok(Json(found).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_names_each_changed_leaf_and_a_redrawn_zone_once() {
        let before = json!({"risk": "medium", "orders": [{"rule": {"radius_m": 200, "centre": [4.5, 51.9]}}]});
        let after = json!({"risk": "high", "orders": [{"rule": {"radius_m": 250, "centre": [4.6, 51.9]}}, {"id": "b"}]});
        let mut out = Vec::new();
        diff("", &before, &after, &mut out);
        let paths: Vec<&str> = out.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "orders[0].rule.centre",
                "orders[0].rule.radius_m",
                "orders[1]",
                "risk"
            ]
        );
        assert_eq!(out[3].before, Some(json!("medium")));

        let mut new = Vec::new();
        diff(
            "",
            &Value::Null,
            &json!({"id": "C9", "risk": "low"}),
            &mut new,
        );
        let paths: Vec<&str> = new.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, vec!["id", "risk"], "a new case by its fields");
    }
}
