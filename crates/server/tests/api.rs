//! The HTTP API: tokens and roles on every route, live case edits, alerts
//! by role, bans at a point.

mod common;

use common::*;
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(kordon: &Kordon) -> Api {
        Api {
            base: kordon.http.clone(),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_route_refuses_a_missing_or_unknown_token_and_the_wrong_role() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let case_path = format!("/api/v1/cases/{}", case.id);
    let body = Some(case.json().to_string());
    let ack = Some(r#"{"operator":"op"}"#.to_string());
    let routes: Vec<(Method, String, Option<String>, &[&str])> = vec![
        (Method::GET, "/metrics".into(), None, &[]),
        (Method::GET, "/api/v1/cases".into(), None, &[]),
        (Method::GET, case_path.clone(), None, &[]),
        (
            Method::PUT,
            case_path.clone(),
            body.clone(),
            &[MONITORING_TOKEN, POLICE_TOKEN],
        ),
        (
            Method::DELETE,
            case_path.clone(),
            None,
            &[MONITORING_TOKEN, POLICE_TOKEN],
        ),
        (Method::GET, "/api/v1/alerts".into(), None, &[]),
        (
            Method::GET,
            "/api/v1/alerts/0123456789abcdef0123456789abcdef".into(),
            None,
            &[],
        ),
        (
            Method::POST,
            "/api/v1/alerts/0123456789abcdef0123456789abcdef/ack".into(),
            ack.clone(),
            &[ADMIN_TOKEN],
        ),
        (
            Method::POST,
            "/api/v1/alerts/0123456789abcdef0123456789abcdef/resolve".into(),
            None,
            &[ADMIN_TOKEN, POLICE_TOKEN],
        ),
        (
            Method::GET,
            "/api/v1/bans?lat=51.92&lon=4.547".into(),
            None,
            &[],
        ),
    ];
    for (method, path, body, forbidden) in &routes {
        for token in [None, Some("not-a-token"), Some("")] {
            let (status, answer) = api.call(method.clone(), path, token, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {answer}"
            );
        }
        for token in *forbidden {
            let (status, answer) = api
                .call(method.clone(), path, Some(token), body.clone())
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} as {token}: {answer}"
            );
        }
    }
    // A plain scheme other than Bearer is refused too.
    let response = api
        .http
        .get(format!("{}/api/v1/cases", api.base))
        .basic_auth("admin", Some(ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // /healthz needs no token.
    let (status, health) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["status"], "ok");
    kordon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_are_listed_put_live_validated_and_deleted_by_an_admin() {
    let broker = brokers().remove(0);
    let existing = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&existing]).await;
    let api = Api::new(&kordon);
    let (status, list) = api
        .call(Method::GET, "/api/v1/cases", Some(POLICE_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["id"], existing.id.as_str());

    // A new case is applied at once: its offender's fix is judged.
    let new = TestCase::new("high");
    let path = format!("/api/v1/cases/{}", new.id);
    let (status, answer) = api
        .call(
            Method::PUT,
            &path,
            Some(ADMIN_TOKEN),
            Some(new.json().to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let stored = std::fs::read_dir(&kordon.case_dir).unwrap().count();
    assert_eq!(stored, 2, "the case is written to the case directory");
    let watcher = Watcher::new(&broker, &["kordon/v1/alerts/monitoring"]).await;
    watcher
        .publish(
            &format!("kordon/v1/devices/{}/fix", new.offender),
            fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, Timestamp::now()),
        )
        .await;
    watcher
        .expect("zone breach of the new case", |_, p| {
            p.contains(&new.id) && p.contains("zone_breach")
        })
        .await;

    // An invalid case is refused with every problem, and changes nothing.
    let mut broken = new.json();
    broken["orders"][0]["rule"]["alarm_radius_m"] = 900.into();
    let (status, answer) = api
        .call(
            Method::PUT,
            &path,
            Some(ADMIN_TOKEN),
            Some(broken.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["report"]["errors"]
            .as_array()
            .is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
    let (_, current) = api.call(Method::GET, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(current["orders"][0]["rule"]["alarm_radius_m"], 200.0);
    // A case whose orders cannot work as meant runs, and the answer says
    // why, with the numbers: his address inside his own exclusion zone.
    let mut awkward = new.json();
    awkward["offender"]["registered_address"] = serde_json::json!([ZONE_CENTRE.1, ZONE_CENTRE.0]);
    let (status, answer) = api
        .call(
            Method::PUT,
            &path,
            Some(ADMIN_TOKEN),
            Some(awkward.to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let warned = answer["warnings"].as_array().is_some_and(|w| {
        w.iter()
            .any(|w| w["problem"]["code"] == "address_in_own_zone" && w["message"].is_string())
    });
    assert!(warned, "{answer}");
    // A body for another case, or no case at all, is a bad request.
    let (status, _) = api
        .call(
            Method::PUT,
            &path,
            Some(ADMIN_TOKEN),
            Some(existing.json().to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api
        .call(Method::PUT, &path, Some(ADMIN_TOKEN), Some("{".into()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Deleting withdraws its open episode and its file.
    let (status, _) = api
        .call(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    watcher
        .expect("episode withdrawn with the case", |_, p| {
            p.contains(&new.id)
                && p.contains("\"event\":\"cleared\"")
                && p.contains("order_withdrawn")
        })
        .await;
    assert_eq!(std::fs::read_dir(&kordon.case_dir).unwrap().count(), 1);
    let (status, _) = api.call(Method::GET, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(Method::DELETE, &path, Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    kordon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_show_each_role_what_it_may_see_and_can_be_acknowledged_once() {
    let broker = brokers().remove(0);
    let case = TestCase::new("medium");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &["kordon/v1/alerts/monitoring"]).await;
    let now = Timestamp::now();
    watcher
        .publish(
            &format!("kordon/v1/devices/{}/fix", case.victim),
            fix_json(HOME.0, HOME.1, 5.0, now),
        )
        .await;
    // 400 m: a proximity warning, for the monitoring room only.
    let (lat, lon) = north(HOME, 400.0);
    watcher
        .publish(
            &format!("kordon/v1/devices/{}/fix", case.offender),
            fix_json(lat, lon, 5.0, now),
        )
        .await;
    let (_, warning) = watcher
        .expect("warning", |_, p| p.contains("proximity_warning"))
        .await;
    let id = json(&warning)["id"].as_str().unwrap().to_string();

    let (_, monitoring) = api
        .call(Method::GET, "/api/v1/alerts", Some(MONITORING_TOKEN), None)
        .await;
    let mine: Vec<&Value> = monitoring
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["case"] == case.id.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{monitoring:#}");
    assert_eq!(
        mine[0]["protected"]["device"],
        case.victim.as_str(),
        "monitoring sees her position"
    );
    let (_, police) = api
        .call(Method::GET, "/api/v1/alerts", Some(POLICE_TOKEN), None)
        .await;
    assert!(
        police
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["id"] != id.as_str()),
        "a warning is not for police"
    );
    let (_, admin) = api
        .call(
            Method::GET,
            &format!("/api/v1/alerts/{id}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert!(
        admin.get("protected").is_none(),
        "admin never sees her position: {admin}"
    );
    assert!(
        admin.get("distance_m").is_none(),
        "nor the distance to her: {admin}"
    );
    assert!(
        admin.get("offender").is_none(),
        "nor his position: a contact-ban alert says she is near it: {admin}"
    );
    assert_eq!(admin["device"], case.offender.as_str());

    let path = format!("/api/v1/alerts/{id}/ack");
    let (status, ack) = api
        .call(
            Method::POST,
            &path,
            Some(MONITORING_TOKEN),
            Some(r#"{"operator":"op-3","note":"called her"}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack["operator"], "op-3");
    assert!(ack["time_to_ack_s"].as_f64().unwrap() >= 0.0);
    let (status, again) = api
        .call(
            Method::POST,
            &path,
            Some(MONITORING_TOKEN),
            Some(r#"{"operator":"op-4"}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(again["error"].as_str().unwrap().contains("op-3"));
    let (status, _) = api
        .call(
            Method::POST,
            &path,
            Some(MONITORING_TOKEN),
            Some(r#"{"operator":""}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api
        .call(
            Method::POST,
            "/api/v1/alerts/nope/ack",
            Some(POLICE_TOKEN),
            Some(r#"{"operator":"x"}"#.into()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Metrics count what happened.
    let (status, metrics) = api
        .call(Method::GET, "/metrics", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    for name in [
        "kordon_fixes_total",
        "kordon_alert_events_total",
        "kordon_fix_to_alert_seconds_bucket",
        "kordon_messages_refused_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    kordon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_at_a_point_name_the_orders_and_hide_contact_bans_from_admins() {
    let broker = brokers().remove(0);
    let case = TestCase::new("high");
    let kordon = Kordon::start(&broker, &[&case]).await;
    let api = Api::new(&kordon);
    let watcher = Watcher::new(&broker, &["kordon/v1/rejects"]).await;
    watcher
        .publish(
            &format!("kordon/v1/devices/{}/fix", case.victim),
            fix_json(HOME.0, HOME.1, 5.0, Timestamp::now()),
        )
        .await;
    // Wait until the engine has the fix: the API answers from the same thread.
    let home = format!("/api/v1/bans?lat={}&lon={}", HOME.0, HOME.1);
    // Up to 30 s: a loaded machine may take more than a moment.
    let mut hits = Value::Null;
    for _ in 0..600 {
        hits = api
            .call(Method::GET, &home, Some(POLICE_TOKEN), None)
            .await
            .1;
        if hits.as_array().is_some_and(|h| !h.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(hits[0]["order"], "contact-ban", "{hits}");
    assert_eq!(hits[0]["kind"], "contact_ban");
    let (_, as_admin) = api.call(Method::GET, &home, Some(ADMIN_TOKEN), None).await;
    assert_eq!(
        as_admin,
        Value::Array(vec![]),
        "a contact ban hit would tell an admin where she is"
    );
    let zone = format!("/api/v1/bans?lat={}&lon={}", ZONE_CENTRE.0, ZONE_CENTRE.1);
    let (_, zone_hits) = api.call(Method::GET, &zone, Some(ADMIN_TOKEN), None).await;
    assert_eq!(zone_hits[0]["order"], "zone-ban");
    assert_eq!(zone_hits[0]["inside"], true);
    for bad in [
        "/api/v1/bans?lat=95&lon=4",
        "/api/v1/bans?lat=x&lon=4",
        "/api/v1/bans",
    ] {
        let (status, _) = api.call(Method::GET, bad, Some(POLICE_TOKEN), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
    kordon.stop().await;
}
