//! The wire contract of docs/mqtt.md over a real broker: kordon in-process
//! on an embedded rumqttd, and on Mosquitto too when `KORDON_TEST_MQTT_URL`
//! is set.

mod common;

use std::time::Duration;

use common::*;
use jiff::{SignedDuration, Timestamp};

/// Fix times start in the past and advance by the test, not the clock.
fn start_time() -> Timestamp {
    Timestamp::now() - SignedDuration::from_mins(30)
}

fn is_case(payload: &str, case: &TestCase) -> bool {
    payload.contains(&format!("\"case\":\"{}\"", case.id))
}

fn event_of(topic: &str, payload: &str, case: &TestCase, event: &str, kind: &str) -> bool {
    is_case(payload, case)
        && topic.ends_with(if topic.contains("police") {
            "police"
        } else {
            "monitoring"
        })
        && payload.contains(&format!("\"event\":\"{event}\""))
        && payload.contains(&format!("\"kind\":\"{kind}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approach_gives_warning_then_breach_then_cleared_on_the_right_topics_in_order() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("medium");
        let kordon = Kordon::start(&broker, &[&case]).await;
        let watcher = Watcher::new(
            &broker,
            &["kordon/v1/alerts/#", "kordon/v1/devices/+/warning"],
        )
        .await;
        let mut t = start_time();
        let victim_fix = format!("kordon/v1/devices/{}/fix", case.victim);
        let offender_fix = format!("kordon/v1/devices/{}/fix", case.offender);
        watcher
            .publish(&victim_fix, fix_json(HOME.0, HOME.1, 5.0, t))
            .await;
        for metres in [
            2000.0, 800.0, 400.0, 100.0, 50.0, 2000.0, 2500.0, 3000.0, 3000.0,
        ] {
            t += SignedDuration::from_secs(30);
            let (lat, lon) = north(HOME, metres);
            watcher
                .publish(&offender_fix, fix_json(lat, lon, 5.0, t))
                .await;
        }

        let (_, warning) = watcher
            .expect("proximity_warning opened", |t, p| {
                event_of(t, p, &case, "opened", "proximity_warning")
            })
            .await;
        let id = json(&warning)["id"].as_str().unwrap().to_string();
        let (_, breach) = watcher
            .expect("proximity_breach update", |t, p| {
                event_of(t, p, &case, "updated", "proximity_breach") && t.ends_with("monitoring")
            })
            .await;
        assert_eq!(
            json(&breach)["id"],
            id.as_str(),
            "one episode: the warning became the breach"
        );
        let breach = json(&breach);
        assert!(breach["distance_m"].as_f64().unwrap() < 200.0);
        assert_eq!(breach["protected"]["device"], case.victim.as_str());
        assert_eq!(breach["offender"]["device"], case.offender.as_str());
        let (_, cleared) = watcher
            .expect("cleared on monitoring", |t, p| {
                event_of(t, p, &case, "cleared", "proximity_breach") && t.ends_with("monitoring")
            })
            .await;
        assert_eq!(json(&cleared)["id"], id.as_str());

        // Police hear of it from the breach on, then of its end.
        watcher
            .expect("breach on police", |t, p| {
                t == "kordon/v1/alerts/police"
                    && event_of(t, p, &case, "updated", "proximity_breach")
            })
            .await;
        watcher
            .expect("cleared on police", |t, p| {
                t == "kordon/v1/alerts/police"
                    && event_of(t, p, &case, "cleared", "proximity_breach")
            })
            .await;
        let rest = watcher.drain(Duration::from_millis(300)).await;
        assert!(
            !rest.iter().any(|(t, p)| t == "kordon/v1/alerts/police"
                && String::from_utf8_lossy(p).contains("proximity_warning")),
            "a warning alone does not call the police"
        );
        kordon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_messages_validate_against_the_schema_and_thread_alert_update_cancel() {
    let schema_text = xsd::cap_schema_text();
    let schema_doc = roxmltree::Document::parse(&schema_text).unwrap();
    let schema = xsd::Schema::new(&schema_doc);
    for_each_broker(|broker| {
        let schema = &schema;
        async move {
            let case = TestCase::new("high");
            let kordon = Kordon::start(&broker, &[&case]).await;
            let watcher = Watcher::new(&broker, &["kordon/v1/alerts/police/cap"]).await;
            let mut t = start_time();
            watcher
                .publish(
                    &format!("kordon/v1/devices/{}/fix", case.victim),
                    fix_json(HOME.0, HOME.1, 5.0, t),
                )
                .await;
            for metres in [100.0, 60.0, 3000.0, 3000.0, 3000.0, 3000.0] {
                t += SignedDuration::from_secs(30);
                let (lat, lon) = north(HOME, metres);
                watcher
                    .publish(
                        &format!("kordon/v1/devices/{}/fix", case.offender),
                        fix_json(lat, lon, 5.0, t),
                    )
                    .await;
            }
            let mine = |p: &str| p.contains(&format!("<value>{}</value>", case.id));
            let (_, first) = watcher
                .expect("CAP Alert", |_, p| {
                    mine(p) && p.contains("<msgType>Alert</msgType>")
                })
                .await;
            let (_, cancel) = watcher
                .expect("CAP Cancel", |_, p| {
                    mine(p) && p.contains("<msgType>Cancel</msgType>")
                })
                .await;
            for xml in [&first, &cancel] {
                if let Err(errors) = schema.validate(xml) {
                    panic!("CAP invalid:\n{}\n{xml}", errors.join("\n"));
                }
            }
            let first_doc = roxmltree::Document::parse(&first).unwrap();
            let text = |doc: &roxmltree::Document, name: &str| {
                doc.descendants()
                    .find(|n| n.has_tag_name(name))
                    .and_then(|n| n.text())
                    .unwrap_or("")
                    .to_string()
            };
            assert_eq!(text(&first_doc, "scope"), "Restricted");
            assert!(!text(&first_doc, "restriction").is_empty());
            let circles: Vec<_> = first_doc
                .descendants()
                .filter(|n| n.has_tag_name("circle"))
                .collect();
            assert_eq!(circles.len(), 2, "offender and protected person");
            let radius_km: f64 = circles[0]
                .text()
                .unwrap()
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            assert!((radius_km - 0.005).abs() < 1e-9, "5 m accuracy is 0.005 km");
            let cancel_doc = roxmltree::Document::parse(&cancel).unwrap();
            assert_eq!(
                text(&cancel_doc, "references"),
                format!(
                    "kordon@test,{},{}",
                    text(&first_doc, "identifier"),
                    text(&first_doc, "sent")
                )
            );
            // The schema check itself catches what it should.
            let broken = first.replace("+00:00</sent>", "Z</sent>");
            assert!(schema.validate(&broken).is_err(), "a Z time must fail");
            let reordered = first.replacen("<status>Actual</status>", "", 1).replacen(
                "</scope>",
                "</scope><status>Actual</status>",
                1,
            );
            assert!(
                schema.validate(&reordered).is_err(),
                "element order must be checked"
            );
            kordon.stop().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_breach_reaches_monitoring_police_the_bracelet_and_the_victim() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("medium");
        let kordon = Kordon::start(&broker, &[&case]).await;
        let watcher = Watcher::new(
            &broker,
            &["kordon/v1/alerts/#", "kordon/v1/devices/+/warning"],
        )
        .await;
        let t = start_time();
        watcher
            .publish(
                &format!("kordon/v1/devices/{}/fix", case.offender),
                fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, t),
            )
            .await;
        let (_, alert) = watcher
            .expect("zone_breach opened", |t, p| {
                event_of(t, p, &case, "opened", "zone_breach") && t.ends_with("monitoring")
            })
            .await;
        let alert = json(&alert);
        assert_eq!(alert["order"], "zone-ban");
        assert!(
            alert["distance_m"].as_f64().unwrap() < 0.0,
            "inside is negative"
        );
        watcher
            .expect("zone_breach on police", |t, p| {
                t == "kordon/v1/alerts/police" && event_of(t, p, &case, "opened", "zone_breach")
            })
            .await;
        let bracelet = format!("kordon/v1/devices/{}/warning", case.offender);
        let (_, to_bracelet) = watcher
            .expect("bracelet warning", |t, _| t == bracelet)
            .await;
        assert_eq!(json(&to_bracelet)["kind"], "zone_breach");
        let victim = format!("kordon/v1/devices/{}/warning", case.victim);
        watcher.expect("victim warning", |t, _| t == victim).await;
        kordon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_victim_warning_carries_no_offender_coordinate_and_the_bracelet_hears_nothing_of_her() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("high");
        let kordon = Kordon::start(&broker, &[&case]).await;
        let victim_topic = format!("kordon/v1/devices/{}/warning", case.victim);
        let bracelet_topic = format!("kordon/v1/devices/{}/warning", case.offender);
        let watcher = Watcher::new(&broker, &[&victim_topic, &bracelet_topic]).await;
        let mut t = start_time();
        watcher
            .publish(
                &format!("kordon/v1/devices/{}/fix", case.victim),
                fix_json(HOME.0, HOME.1, 5.0, t),
            )
            .await;
        let mut offender_positions = Vec::new();
        for metres in [450.0, 150.0, 40.0, 35.0, 30.0] {
            t += SignedDuration::from_secs(20);
            let (lat, lon) = north(HOME, metres);
            offender_positions.push((lat, lon));
            watcher
                .publish(
                    &format!("kordon/v1/devices/{}/fix", case.offender),
                    fix_json(lat, lon, 5.0, t),
                )
                .await;
        }
        watcher
            .expect("breach to the victim", |t, p| {
                t == victim_topic && p.contains("proximity_breach")
            })
            .await;
        let _ = watcher.drain(Duration::from_millis(500)).await;
        let log = watcher.log();
        assert!(
            log.iter().all(|(t, _)| *t != bracelet_topic),
            "nothing about the victim reaches the bracelet"
        );
        let to_victim: Vec<&Vec<u8>> = log
            .iter()
            .filter(|(t, _)| *t == victim_topic)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            to_victim.len(),
            1,
            "one breach: the warning radius alone does not buzz her (alerts.tell_her_of_warnings), \
             and moving closer within the breach buzzes no one again"
        );
        for payload in to_victim {
            // On the raw bytes: no rendering of any offender coordinate.
            let text = String::from_utf8_lossy(payload);
            for (lat, lon) in &offender_positions {
                for digits in 2..=6 {
                    for coordinate in [lat, lon] {
                        let printed = format!("{coordinate:.digits$}");
                        assert!(
                            !text.contains(&printed),
                            "victim payload contains offender coordinate {printed}: {text}"
                        );
                    }
                }
            }
            let value = json(&text);
            let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
            assert_eq!(
                keys,
                [
                    "event",
                    "id",
                    "instruction",
                    "kind",
                    "language",
                    "severity",
                    "ts"
                ],
                "{text}"
            );
            assert!(value["instruction"].as_str().is_some_and(|s| !s.is_empty()));
        }
        kordon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reason_lands_on_the_rejects_topic() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("medium");
        let kordon = Kordon::start(&broker, &[&case]).await;
        let watcher = Watcher::new(&broker, &["kordon/v1/rejects", "kordon/v1/alerts/#"]).await;
        let now = Timestamp::now();
        let ts = now.as_millisecond();
        let fix = format!("kordon/v1/devices/{}/fix", case.offender);
        let status = format!("kordon/v1/devices/{}/status", case.offender);
        let ok = |extra: &str| format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.5,"acc":5{extra}}}"#);
        let messages: Vec<(String, String, &str)> = vec![
            (fix.clone(), "x".repeat(5000), "payload_too_large"),
            (fix.clone(), "{not json".into(), "malformed_payload"),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":51.9,"acc":5}}"#),
                "missing_field",
            ),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":"north","lon":4.5,"acc":5}}"#),
                "invalid_field",
            ),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":NaN,"lon":4.5,"acc":5}}"#),
                "not_finite",
            ),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":95,"lon":4.5,"acc":5}}"#),
                "latitude_out_of_range",
            ),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":51.9,"lon":200,"acc":5}}"#),
                "longitude_out_of_range",
            ),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":0,"lon":0,"acc":5}}"#),
                "null_island",
            ),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.5,"acc":0}}"#),
                "accuracy_not_positive",
            ),
            (
                fix.clone(),
                format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.5,"acc":99999}}"#),
                "accuracy_absurd",
            ),
            (
                fix.clone(),
                format!(
                    r#"{{"ts":{},"lat":51.9,"lon":4.5,"acc":5}}"#,
                    ts + 3_600_000
                ),
                "timestamp_in_future",
            ),
            (
                fix.clone(),
                format!(
                    r#"{{"ts":{},"lat":51.9,"lon":4.5,"acc":5}}"#,
                    ts - 90 * 86_400_000
                ),
                "timestamp_too_old",
            ),
            (
                fix.clone(),
                ok(&format!(r#","device":"{}""#, case.victim)),
                "device_mismatch",
            ),
            (
                "kordon/v1/devices/OFF 0001/fix".into(),
                ok(""),
                "invalid_device_id",
            ),
            (
                format!("kordon/v1/devices/X{}/fix", case.offender),
                ok(""),
                "unknown_device",
            ),
            ("owntracks/lonely".into(), "{}".into(), "unknown_topic"),
            (
                format!("owntracks/user-{}/phone", case.id),
                r#"{"_type":"location","tst":1,"lat":1,"lon":1,"acc":1}"#.into(),
                "unknown_device",
            ),
            (
                status.clone(),
                r#"{"strap":"tampered""#.to_string(),
                "malformed_payload",
            ),
            (
                format!("owntracks/user-{}/phone/event", case.id),
                r#"{"_type":"transition","event":"enter"}"#.into(),
                "unsupported_message",
            ),
            (
                "kordon/v1/alerts/ack".into(),
                r#"{"id":"00000000000000000000000000000000","operator":"op"}"#.into(),
                "unknown_alert",
            ),
        ];
        // Every reason the decoder and engine can give is exercised here,
        // but `already_acknowledged`, which needs an alert first (see the
        // escalation test), `retained_message` (tests/poison.rs), and
        // those no well-behaved broker and kordon produce on demand:
        // `poison_message` (the broker redelivering a message it cannot
        // get acknowledged; kordon_ingest::poison's tests) and
        // `handling_failed` (a panic). `field_out_of_range` is the
        // engine's answer to a caller of its API; the decoder drops an
        // impossible optional reading and keeps the position.
        let mut covered: Vec<&str> = messages
            .iter()
            .map(|(_, _, r)| *r)
            .chain([
                "already_acknowledged",
                "retained_message",
                "poison_message",
                "handling_failed",
                "field_out_of_range",
            ])
            .collect();
        covered.sort_unstable();
        covered.dedup();
        let mut all: Vec<&str> = kordon_ingest::Reason::ALL
            .iter()
            .map(|r| r.code())
            .collect();
        all.sort_unstable();
        assert_eq!(covered, all, "a reason without a wire test");
        for (topic, payload, _) in &messages {
            watcher.publish(topic, payload.clone()).await;
        }
        for (topic, payload, reason) in &messages {
            let (_, reject) = watcher
                .expect(&format!("{reason} for {topic} {payload:.60}"), |t, p| {
                    t == "kordon/v1/rejects"
                        && p.contains(&format!("\"reason\":\"{reason}\""))
                        && p.contains(&format!("\"topic\":\"{topic}\""))
                })
                .await;
            let reject = json(&reject);
            assert!(reject["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
        // Nothing refused moved the engine, and the connection survived it all.
        let (lat, lon) = north(ZONE_CENTRE, 0.0);
        watcher.publish(&fix, fix_json(lat, lon, 5.0, now)).await;
        watcher
            .expect("a good fix after the bad ones", |t, p| {
                event_of(t, p, &case, "opened", "zone_breach")
            })
            .await;
        kordon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_device_id_is_refused_and_changes_nothing() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("high");
        let kordon = Kordon::start(&broker, &[&case]).await;
        let watcher = Watcher::new(&broker, &["kordon/v1/rejects", "kordon/v1/alerts/#"]).await;
        let t = start_time();
        // Someone publishes on the victim's topic claiming to be the offender,
        // at the victim's home: it must neither move her nor him.
        let spoof = format!(
            r#"{{"device":"{}","ts":"{t}","lat":{},"lon":{},"acc":5}}"#,
            case.offender, ZONE_CENTRE.0, ZONE_CENTRE.1
        );
        watcher
            .publish(&format!("kordon/v1/devices/{}/fix", case.victim), spoof)
            .await;
        let (_, reject) = watcher
            .expect("device_mismatch", |t, p| {
                t == "kordon/v1/rejects" && p.contains("device_mismatch")
            })
            .await;
        let reject = json(&reject);
        assert_eq!(reject["device"], case.victim.as_str());
        assert!(reject["detail"].as_str().unwrap().contains(&case.offender));
        let events = watcher.drain(Duration::from_millis(500)).await;
        assert!(
            !events.iter().any(|(t, p)| t.starts_with("kordon/v1/alerts")
                && String::from_utf8_lossy(p).contains(&case.id)),
            "a refused fix raises nothing"
        );
        kordon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_breach_escalates_and_acknowledgement_records_time_to_ack() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("high");
        let kordon = Kordon::start_with(&broker, &[&case], 2, None).await;
        let coordinators = format!("kordon/v1/cases/{}/coordinators", case.id);
        let watcher = Watcher::new(
            &broker,
            &["kordon/v1/alerts/#", "kordon/v1/rejects", &coordinators],
        )
        .await;
        let t = Timestamp::now();
        watcher
            .publish(
                &format!("kordon/v1/devices/{}/fix", case.offender),
                fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, t),
            )
            .await;
        let (_, opened) = watcher
            .expect("zone breach", |t, p| {
                t == "kordon/v1/alerts/police" && event_of(t, p, &case, "opened", "zone_breach")
            })
            .await;
        let id = json(&opened)["id"].as_str().unwrap().to_string();
        // Escalation comes from the 1 s tick once 2 s have passed unacknowledged.
        // On the monitoring topic and to the coordinators; the police act
        // on the alert already.
        let (_, escalated) = watcher
            .expect("escalated on monitoring", |t, p| {
                t == "kordon/v1/alerts/monitoring"
                    && p.contains("\"event\":\"escalated\"")
                    && p.contains(&id)
            })
            .await;
        assert_eq!(
            json(&escalated)["offender"]["device"],
            case.offender.as_str()
        );
        let (_, notice) = watcher
            .expect("coordinators told", |t, _| t == coordinators)
            .await;
        let notice = json(&notice);
        assert_eq!(notice["coordinators"][0]["name"], "A. Bakker");
        assert!(notice["unacknowledged_for_s"].as_f64().unwrap() >= 2.0);

        // Acknowledged over MQTT, with operator and note.
        watcher
            .publish(
                "kordon/v1/alerts/ack",
                format!(r#"{{"id":"{id}","operator":"op-17","note":"unit 12 sent"}}"#),
            )
            .await;
        let (_, acked) = watcher
            .expect("acknowledged", |t, p| {
                t == "kordon/v1/alerts/monitoring"
                    && p.contains("\"event\":\"acknowledged\"")
                    && p.contains(&id)
            })
            .await;
        let acked = json(&acked);
        assert_eq!(acked["acknowledged"]["operator"], "op-17");
        assert_eq!(acked["acknowledged"]["note"], "unit 12 sent");
        assert!(acked["acknowledged"]["time_to_ack_s"].as_f64().unwrap() >= 2.0);
        // A second acknowledgement is refused, naming the first.
        watcher
            .publish(
                "kordon/v1/alerts/ack",
                format!(r#"{{"id":"{id}","operator":"op-18"}}"#),
            )
            .await;
        let (_, again) = watcher
            .expect("already_acknowledged", |t, p| {
                t == "kordon/v1/rejects" && p.contains("already_acknowledged")
            })
            .await;
        assert!(again.contains("op-17"));
        // The API shows the acknowledgement and the escalation.
        let alert: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/alerts/{id}", kordon.http))
            .bearer_auth(MONITORING_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(alert["acknowledgement"]["operator"], "op-17");
        assert!(alert["escalated_at"].is_string());
        kordon.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kordon_reconnects_after_a_broker_outage_and_gets_what_was_published_meanwhile() {
    for_each_broker(|broker| async move {
        let case = TestCase::new("medium");
        let proxy = proxy::Proxy::start(broker.host_port()).await;
        let kordon = Kordon::start_with(&broker, &[&case], 120, Some(proxy.url())).await;
        let watcher = Watcher::new(&broker, &["kordon/v1/alerts/#"]).await;

        proxy.down();
        // Cut off for certain before publishing (not "500 ms will do"):
        // kordon itself says it has lost the broker.
        let mut cut_off = false;
        for _ in 0..300 {
            let health: serde_json::Value = reqwest::get(format!("{}/healthz", kordon.http))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if health["problems"]
                .to_string()
                .contains("not connected to the broker")
            {
                cut_off = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(cut_off, "kordon never noticed the outage");
        let t = start_time();
        let fix = format!("kordon/v1/devices/{}/fix", case.offender);
        let breach = fix_json(ZONE_CENTRE.0, ZONE_CENTRE.1, 5.0, t);
        // Published while kordon is cut off: the broker keeps it for
        // kordon's persistent session.
        watcher.publish(&fix, breach).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            watcher
                .wait_for(Duration::from_millis(10), |_, p| is_case(p, &case))
                .await
                .is_none(),
            "no alert while kordon is cut off"
        );
        proxy.up();
        // kordon's back-off between attempts doubles up to 10 s: the
        // default 10 s of `expect` is too little if the outage ran long.
        assert!(
            watcher
                .wait_for(Duration::from_secs(40), |t, p| {
                    event_of(t, p, &case, "opened", "zone_breach")
                })
                .await
                .is_some(),
            "the breach after the outage"
        );
        // And it keeps working after the reconnection. (The first fix 5 km
        // away implies 125 m/s: suspect, so it clears nothing by itself.)
        let (lat, lon) = north(ZONE_CENTRE, 5000.0);
        for i in 1..=5 {
            watcher
                .publish(
                    &format!("kordon/v1/devices/{}/fix", case.offender),
                    fix_json(lat, lon, 5.0, t + SignedDuration::from_secs(40 * i)),
                )
                .await;
        }
        watcher
            .expect("cleared after the reconnection", |t, p| {
                event_of(t, p, &case, "cleared", "zone_breach")
            })
            .await;
        kordon.stop().await;
    })
    .await;
}
