//! An operator resolves a tamper alarm: `POST /api/v1/alerts/{id}/resolve`.
//! A strap reported closed again does not end the alarm; the monitoring
//! room's resolution does, with reason `operator_resolved`, once and only
//! for a tamper; it is journaled, and a restart that replays the journal
//! keeps it resolved.

mod common;

use std::time::Duration;

use common::*;
use jiff::Timestamp;
use kordon_journal::{Durability, Journal, Record};
use reqwest::StatusCode;
use serde_json::Value;

const TOPICS: &[&str] = &[
    "kordon/v1/alerts/monitoring",
    "kordon/v1/alerts/police",
    "kordon/v1/rejects",
];

async fn call(
    kordon: &Kordon,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", kordon.http))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn resolve(
    kordon: &Kordon,
    id: &str,
    token: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    call(
        kordon,
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/resolve"),
        token,
        body,
    )
    .await
}

async fn strap(watcher: &Watcher, case: &TestCase, state: &str) {
    watcher
        .publish(
            &format!("kordon/v1/devices/{}/status", case.offender),
            format!(r#"{{"strap":"{state}"}}"#),
        )
        .await;
}

/// The tamper alarm's `opened` on the monitoring topic; its id.
async fn tamper_opened(watcher: &Watcher, case: &TestCase) -> String {
    let case_id = format!("\"case\":\"{}\"", case.id);
    let (_, opened) = watcher
        .expect("the tamper alarm opened", |t, p| {
            t == "kordon/v1/alerts/monitoring"
                && p.contains(&case_id)
                && p.contains(r#""kind":"tamper""#)
                && p.contains(r#""event":"opened""#)
        })
        .await;
    json(&opened)["id"].as_str().unwrap().to_string()
}

/// Waits until kordon has handled everything published before this: the
/// engine takes messages in order, so the reject of a probe published now
/// comes after whatever they caused.
async fn settle(watcher: &Watcher) {
    let probe = format!("PROBE-SETTLE-{}", Timestamp::now().as_nanosecond());
    watcher
        .publish(
            &format!("kordon/v1/devices/{probe}/fix"),
            fix_json(51.9, 4.5, 5.0, Timestamp::now()),
        )
        .await;
    watcher
        .expect("the probe's reject", |t, p| {
            t == "kordon/v1/rejects" && p.contains(&probe)
        })
        .await;
    let _ = watcher
        .wait_for(Duration::from_millis(300), |_, _| false)
        .await;
}

fn cleared_messages(watcher: &Watcher, topic: &str, id: &str) -> Vec<Value> {
    watcher
        .log()
        .into_iter()
        .filter(|(t, _)| t == topic)
        .map(|(_, p)| json(&String::from_utf8_lossy(&p)))
        .filter(|m| m["id"] == id && m["event"] == "cleared")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitoring_room_resolves_a_tamper_alarm_once_and_nothing_else_ends_it() {
    let broker = brokers().remove(0);
    // High risk: the police hear of a tamper, and of its end.
    let case = TestCase::new("high");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let watcher = Watcher::new(&broker, TOPICS).await;

    strap(&watcher, &case, "tampered").await;
    let id = tamper_opened(&watcher, &case).await;

    // The strap closed again: the alarm stays open (flaps are one episode).
    strap(&watcher, &case, "ok").await;
    settle(&watcher).await;
    assert!(
        cleared_messages(&watcher, "kordon/v1/alerts/monitoring", &id).is_empty(),
        "a strap reported ok ended the tamper alarm"
    );
    let (status, alert) = call(
        &kordon,
        reqwest::Method::GET,
        &format!("/api/v1/alerts/{id}"),
        MONITORING_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{alert}");
    assert_eq!(alert["open"], true, "{alert}");

    // Only the monitoring room resolves.
    for token in [POLICE_TOKEN, ADMIN_TOKEN] {
        let (status, body) = resolve(&kordon, &id, token, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    // The operator is the token's name, not a field of the body.
    let (status, body) = resolve(&kordon, &id, MONITORING_TOKEN, Some(r#"{"operator":"x"}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, resolved) = resolve(
        &kordon,
        &id,
        MONITORING_TOKEN,
        Some(r#"{"note":"strap checked at his address"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["alert"], id.as_str(), "{resolved}");
    assert_eq!(resolved["device"], case.offender.as_str(), "{resolved}");
    assert_eq!(resolved["operator"], "test monitoring", "{resolved}");
    assert_eq!(
        resolved["note"], "strap checked at his address",
        "{resolved}"
    );
    assert!(
        resolved["at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .is_ok(),
        "{resolved}"
    );
    assert_eq!(resolved["cleared"], serde_json::json!([id]), "{resolved}");

    for topic in ["kordon/v1/alerts/monitoring", "kordon/v1/alerts/police"] {
        let (_, cleared) = watcher
            .expect(&format!("the tamper alarm cleared on {topic}"), |t, p| {
                t == topic && p.contains(&id) && p.contains(r#""event":"cleared""#)
            })
            .await;
        let cleared = json(&cleared);
        assert_eq!(cleared["reason"], "operator_resolved", "{cleared}");
        assert_eq!(cleared["kind"], "tamper", "{cleared}");
    }

    // Once.
    let (status, again) = resolve(&kordon, &id, MONITORING_TOKEN, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    let message = again["error"].as_str().unwrap();
    assert!(
        message.contains("already cleared at") && message.contains("operator_resolved"),
        "{message}"
    );
    settle(&watcher).await;
    assert_eq!(
        cleared_messages(&watcher, "kordon/v1/alerts/monitoring", &id).len(),
        1,
        "cleared once"
    );

    // Resolving is handling: it acknowledges an alert nobody had, so it
    // does not go on to escalate.
    let (_, alert) = call(
        &kordon,
        reqwest::Method::GET,
        &format!("/api/v1/alerts/{id}"),
        MONITORING_TOKEN,
        None,
    )
    .await;
    assert_eq!(alert["open"], false, "{alert}");
    assert_eq!(alert["reason"], "operator_resolved", "{alert}");
    assert_eq!(
        alert["acknowledgement"]["operator"], "test monitoring",
        "{alert}"
    );
    assert_eq!(
        alert["resolution"]["disposition"], "bracelet_checked",
        "{alert}"
    );

    // An unknown alert, and one that is not a tamper.
    let (status, body) = resolve(
        &kordon,
        "0123456789abcdef0123456789abcdef",
        MONITORING_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no alert with id"),
        "{body}"
    );
    watcher
        .publish(
            &format!("kordon/v1/devices/{}/fix", case.offender),
            fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, Timestamp::now()),
        )
        .await;
    let case_id = format!("\"case\":\"{}\"", case.id);
    let (_, breach) = watcher
        .expect("a zone breach", |t, p| {
            t == "kordon/v1/alerts/monitoring"
                && p.contains(&case_id)
                && p.contains(r#""kind":"zone_breach""#)
        })
        .await;
    let breach = json(&breach)["id"].as_str().unwrap().to_string();
    let (status, body) = resolve(&kordon, &breach, MONITORING_TOKEN, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("resolving a zone_breach alert needs a `disposition` and a `note`"),
        "{body}"
    );
    // With them, the room closes its handling; the episode is the engine's.
    let (status, body) = resolve(
        &kordon,
        &breach,
        MONITORING_TOKEN,
        Some(r#"{"disposition":"offender_contacted","note":"told him to leave"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disposition"], "offender_contacted", "{body}");
    assert_eq!(body["cleared"], serde_json::json!([]), "{body}");

    // A tamper after the resolution is a new alarm.
    strap(&watcher, &case, "tampered").await;
    let second = tamper_opened(&watcher, &case).await;
    assert_ne!(second, id);

    let journal = kordon.journal_path();
    kordon.stop().await;
    let (journal, _) = Journal::open(&journal, Durability::Process).unwrap();
    let mut resolutions = Vec::new();
    journal
        .read_after(0, |stored| {
            if let Some(Record::Resolve {
                alert,
                device,
                operator,
                note,
                ..
            }) = stored.record
            {
                resolutions.push((alert, device.to_string(), operator, note));
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        resolutions,
        vec![
            (
                id,
                case.offender.clone(),
                "test monitoring".to_string(),
                Some("strap checked at his address".to_string())
            ),
            (
                breach,
                case.offender.clone(),
                "test monitoring".to_string(),
                Some("told him to leave".to_string())
            )
        ],
        "the two resolutions journaled, refusals none"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_replayed_from_the_journal_keeps_the_tamper_alarm_resolved() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let mut kordon = Kordon::start(&broker, &[&case]).await;
    let watcher = Watcher::new(&broker, TOPICS).await;

    strap(&watcher, &case, "tampered").await;
    let id = tamper_opened(&watcher, &case).await;
    let (status, resolved) = resolve(&kordon, &id, MONITORING_TOKEN, None).await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert!(resolved.get("note").is_none(), "{resolved}");
    watcher
        .expect("the tamper alarm cleared", |t, p| {
            t == "kordon/v1/alerts/monitoring"
                && p.contains(&id)
                && p.contains(r#""reason":"operator_resolved""#)
        })
        .await;

    // Without its snapshots, the restart rebuilds everything from the
    // journal's records, the resolution among them.
    kordon.shutdown().await;
    let journal_dir = kordon.journal_path().parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&journal_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("snapshot") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    kordon.restart().await;

    let (status, alert) = call(
        &kordon,
        reqwest::Method::GET,
        &format!("/api/v1/alerts/{id}"),
        MONITORING_TOKEN,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{alert}");
    assert_eq!(alert["open"], false, "{alert}");
    assert_eq!(alert["reason"], "operator_resolved", "{alert}");
    let (status, again) = resolve(&kordon, &id, MONITORING_TOKEN, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // The engine has it closed too: a new cut is a new alarm.
    strap(&watcher, &case, "tampered").await;
    let second = tamper_opened(&watcher, &case).await;
    assert_ne!(
        second, id,
        "the resolved alarm opened again after the restart"
    );
    settle(&watcher).await;
    let opened = watcher
        .log()
        .into_iter()
        .filter(|(t, p)| {
            let p = String::from_utf8_lossy(p);
            t == "kordon/v1/alerts/monitoring"
                && p.contains(&id)
                && p.contains(r#""event":"opened""#)
        })
        .count();
    assert_eq!(opened, 1, "opened once, before the restart");
    kordon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_is_answered_only_once_it_is_on_disk() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let watcher = Watcher::new(&broker, TOPICS).await;
    strap(&watcher, &case, "tampered").await;
    let id = tamper_opened(&watcher, &case).await;

    // Someone holds a write transaction on the live journal: kordon's
    // commits wait (and fail, and are retried) until it lets go.
    let intruder = rusqlite::Connection::open(kordon.journal_path()).unwrap();
    intruder.execute_batch("BEGIN IMMEDIATE").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let url = format!("{}/api/v1/alerts/{id}/resolve", kordon.http);
    let answer = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .bearer_auth(MONITORING_TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !answer.is_finished(),
        "the resolution was answered before the journal could hold it: {:?}",
        answer.await
    );
    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    let (status, body) = answer.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");

    let journal = rusqlite::Connection::open(kordon.journal_path()).unwrap();
    let resolves: i64 = journal
        .query_row(
            "SELECT count(*) FROM records WHERE kind = 'resolve' AND device = ?1",
            [&case.offender],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(resolves, 1);
    drop(journal);
    kordon.stop().await;
}
