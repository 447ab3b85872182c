//! `kordon replay` writes every message it decides: the monitoring topic's
//! as the topic carries it, every other topic's (police JSON, device
//! warnings, coordinators) addressed, the CAP feed left out; `kordon
//! score` reads both and counts what each audience received.

use kordon_alert::{AlertMessage, DeviceWarning};
use kordon_server::replay::{Pace, Replay};
use kordon_server::Config;
use kordon_sim::score::{read_alerts, score};
use kordon_sim::sim::default_start;
use kordon_sim::{generate, Scenario, SimConfig, World};

#[test]
fn a_replay_writes_what_police_and_devices_receive_beside_the_monitoring_topic() {
    let (world, _) = World::load().unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../simulator/scenarios/approach_home.toml"
    ))
    .unwrap();
    let recording = generate(
        &world,
        &SimConfig {
            seed: 11,
            pairs: 3,
            hours: 24,
            start: default_start(),
            scenario: Scenario::parse(&text).unwrap(),
            scenario_text: text,
        },
    );
    let config =
        Config::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/kordon.toml").as_ref())
            .unwrap();
    let mut out = Vec::new();
    let done = Replay::new(config.engine, config.alerts, config.ingest)
        .run(&recording, Pace::Fast, &mut out, |_| {})
        .unwrap();
    let out = String::from_utf8(out).unwrap();

    let (mut monitoring, mut police, mut victim, mut offender) = (0, 0, 0, 0);
    let victims: Vec<&str> = recording
        .pair_info
        .iter()
        .map(|p| p.victim.as_str())
        .collect();
    let mut monitoring_only = Vec::new();
    for line in out.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(topic) = value.get("topic").and_then(|t| t.as_str()) else {
            // The monitoring topic's payload, unchanged.
            serde_json::from_value::<AlertMessage>(value).unwrap();
            monitoring += 1;
            monitoring_only.push(line);
            continue;
        };
        let message = value["message"].clone();
        assert_ne!(topic, "kordon/v1/alerts/police/cap", "CAP is left out");
        if topic == "kordon/v1/alerts/police" {
            serde_json::from_value::<AlertMessage>(message).unwrap();
            police += 1;
        } else if let Some(device) = topic
            .strip_prefix("kordon/v1/devices/")
            .and_then(|t| t.strip_suffix("/warning"))
        {
            serde_json::from_value::<DeviceWarning>(message).unwrap();
            if victims.contains(&device) {
                victim += 1;
            } else {
                offender += 1;
            }
        } else {
            assert!(
                topic.starts_with("kordon/v1/cases/") && topic.ends_with("/coordinators"),
                "{topic}"
            );
        }
    }
    assert_eq!(monitoring, done.alert_messages);
    assert_eq!(
        out.lines().count() as u64,
        done.alert_messages + done.other_messages
    );
    // Approaches to her home: breaches the police and she hear of.
    assert!(police > 0, "police messages in\n{out}");
    assert!(victim > 0, "victim warnings in\n{out}");

    let all = score(&recording, &read_alerts(&out).unwrap());
    eprintln!("{all}");
    assert_eq!(u64::from(all.police_messages), police);
    assert_eq!(
        u64::from(all.victim_messages + all.offender_messages),
        victim + offender
    );
    assert!(all.police_episodes > 0 && all.monitoring_actionable_episodes > 0);
    // The monitoring lines alone score as before, and alike.
    let old = score(
        &recording,
        &read_alerts(&monitoring_only.join("\n")).unwrap(),
    );
    assert_eq!(
        (old.detected, old.missed, old.false_alerts, old.delay_p95_s),
        (all.detected, all.missed, all.false_alerts, all.delay_p95_s)
    );
    assert_eq!(old.police_messages, 0);
    assert_eq!(old.victim_messages, 0);
}

/// A day of one pair made by hand: she stands still, her device reporting
/// a fix only every ten minutes (a status every minute); he drives up to
/// her from 4 km, stands 30 m from her for five minutes, drives off. Her
/// device would answer a request with `answer` (its accuracy, or `None`
/// for no fix), every 10 s.
fn sparse_victim(answer: Option<u16>) -> kordon_sim::Recording {
    use kordon_sim::geodata::offset;
    use kordon_sim::recording::{fix_payload, AnswerFix, DeviceAnswers, Message, PairInfo, FORMAT};
    let start = default_start().as_millisecond();
    let her = [4.48, 51.92];
    let e7 = |p: [f64; 2]| ((p[1] * 1e7).round() as i32, (p[0] * 1e7).round() as i32);
    let mut messages = Vec::new();
    let mut push = |t_ms: i64, topic: &str, payload: Vec<u8>| {
        messages.push(Message {
            at_ms: start + t_ms + 500,
            topic: topic.into(),
            payload,
        })
    };
    let status = |t_ms: i64| {
        format!(
            r#"{{"ts":{},"strap":"ok","gps":"ok","batt":80,"charging":false}}"#,
            start + t_ms
        )
        .into_bytes()
    };
    // Hers: fixes at 00:00:33, 00:10:33, …; statuses every minute.
    let mut regular = Vec::new();
    for k in 0..12 {
        let t = 33_000 + k * 600_000;
        let (lat, lon) = e7(offset(her, (k % 3) as f64, 2.0));
        push(
            t,
            "kordon/v1/devices/VIC-0001/fix",
            fix_payload(start + t, lat, lon, 150, k as u64 + 1, 80),
        );
        regular.push(t);
    }
    for k in 0..120 {
        push(
            k * 60_000 + 7_000,
            "kordon/v1/devices/VIC-0001/status",
            status(k * 60_000 + 7_000),
        );
    }
    // His: every 5 s from 00:15, 4 km north of her, at 10 m/s.
    let mut seq = 0;
    for k in 0..240 {
        let t = 900_000 + k * 5000;
        let s = (k * 5) as f64;
        let north = if s < 397.0 {
            4000.0 - 10.0 * s
        } else if s < 700.0 {
            30.0
        } else {
            30.0 + 10.0 * (s - 700.0)
        };
        seq += 1;
        let (lat, lon) = e7(offset(her, 0.0, north));
        push(
            t,
            "kordon/v1/devices/OFF-0001/fix",
            fix_payload(start + t, lat, lon, 80, seq, 90),
        );
    }
    for k in 0..120 {
        push(
            k * 60_000 + 9_000,
            "kordon/v1/devices/OFF-0001/status",
            status(k * 60_000 + 9_000),
        );
    }
    messages.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then(a.topic.cmp(&b.topic)));
    // What her device would answer, every 10 s: where she stands.
    let fixes = (0..720)
        .map(|i| {
            let t = i * 10_000;
            answer.map(|acc_dm| {
                let (lat_e7, lon_e7) = e7(offset(her, -1.0, 0.0));
                AnswerFix {
                    lat_e7,
                    lon_e7,
                    acc_dm,
                    batt: 80,
                    seq: regular.iter().filter(|r| **r <= t).count() as u64,
                }
            })
        })
        .collect();
    let case = serde_json::json!({
        "id": "SIM-0001", "risk": "high",
        "offender": {"device": "OFF-0001"},
        "protected": [{"id": "P1", "device": "VIC-0001"}],
        "orders": [{"id": "contact-ban", "legal_basis": "simulated", "valid_from": "2026-01-01T00:00:00Z",
                    "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 500.0, "alarm_radius_m": 200.0}}],
    });
    kordon_sim::Recording {
        format: FORMAT,
        seed: 0,
        scenario: "hand-made".into(),
        scenario_toml: String::new(),
        pairs: 1,
        hours: 2,
        start_ms: start,
        cases: vec![case.to_string()],
        pair_info: vec![PairInfo {
            case: "SIM-0001".into(),
            offender: "OFF-0001".into(),
            victim: "VIC-0001".into(),
            incident: Some("approach_home".into()),
            curfew: false,
        }],
        messages,
        truth: Vec::new(),
        answers: vec![DeviceAnswers {
            device: "VIC-0001".into(),
            every_s: 10,
            start_ms: start,
            fixes,
        }],
    }
}

fn replay(recording: &kordon_sim::Recording) -> (kordon_server::replay::Replayed, String) {
    let config =
        Config::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/kordon.toml").as_ref())
            .unwrap();
    let mut out = Vec::new();
    let done = Replay::new(config.engine, config.alerts, config.ingest)
        .run(recording, Pace::Fast, &mut out, |_| {})
        .unwrap();
    (done, String::from_utf8(out).unwrap())
}

/// The times (ms) of her positions the monitoring room was shown.
fn her_positions_shown(out: &str) -> Vec<i64> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("topic").is_none())
        .filter_map(|v| {
            let ts = v["protected"]["ts"]
                .as_str()?
                .parse::<jiff::Timestamp>()
                .ok()?;
            Some(ts.as_millisecond())
        })
        .collect()
}

/// He comes near while her last fix is minutes old: kordon asks her device,
/// it answers a few seconds later with a fix the engine takes (her fresh
/// position is what the monitoring room sees), her later fixes are not
/// taken for duplicates of the answer, and the same recording replays to
/// the same bytes. A device that cannot get a fix answers nothing.
#[test]
fn her_device_answers_a_request_for_a_fresh_position_and_the_replay_takes_it() {
    let recording = sparse_victim(Some(120));
    let (done, out) = replay(&recording);
    eprintln!("{done:?}");
    assert!(done.position_requests > 0, "{done:?}");
    assert!(done.position_answers > 0, "{done:?}");
    assert_eq!(done.answers_taken, done.position_answers, "{done:?}");
    assert_eq!(done.position_requests_unanswered, 0);
    assert_eq!((done.refused, done.duplicates), (0, 0), "{done:?}");
    assert_eq!(done.messages, recording.messages.len() as u64);
    let recorded_fixes = recording.fixes() as u64;
    assert_eq!(done.fixes, recorded_fixes + done.position_answers);
    // Her regular fixes are at :33 s; answers come on the 10 s grid, 5 to
    // 25 s after the request.
    let start = recording.start_ms;
    let fresh: Vec<i64> = her_positions_shown(&out)
        .into_iter()
        .filter(|ts| (ts - start) % 10_000 == 0)
        .collect();
    assert!(!fresh.is_empty(), "no answer shown in\n{out}");

    let (again, same) = replay(&recording);
    assert!(out == same, "the same recording replays differently");
    assert_eq!(
        (again.position_requests, again.position_answers, again.fixes),
        (done.position_requests, done.position_answers, done.fixes)
    );

    // Indoors without GPS: asked, no answer, only her regular fixes shown.
    let (unable, out) = replay(&sparse_victim(None));
    assert!(unable.position_requests > 0, "{unable:?}");
    assert_eq!(unable.position_answers, 0);
    assert_eq!(
        unable.position_requests_unanswered,
        unable.position_requests
    );
    assert_eq!(unable.fixes, recorded_fixes);
    assert!(her_positions_shown(&out)
        .iter()
        .all(|ts| (ts - start) % 10_000 != 0));
}

/// Live (`kordon-sim run`, `kordon demo`): a request on her device's
/// request topic is answered on its fix topic, from the recording's
/// answers at the simulated time it arrives, numbered after her last fix.
#[cfg(feature = "embedded-broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_her_simulated_phone_answers_a_request_on_its_fix_topic() {
    use std::time::Duration;

    use kordon_sim::recording::{AnswerFix, DeviceAnswers, Message, FORMAT};
    use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

    let addr = kordon_server::embedded::start("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let broker = format!("mqtt://{addr}");
    let now = jiff::Timestamp::now().as_millisecond();
    let start = now - 3_600_000;
    let device = format!("VIC-LIVE-{}", std::process::id());
    // Her statuses keep the publisher going for five simulated minutes.
    let messages = (0..30)
        .map(|k| Message {
            at_ms: now + k * 10_000,
            topic: format!("kordon/v1/devices/{device}/status"),
            payload: format!(r#"{{"ts":{},"gps":"ok","batt":70}}"#, now + k * 10_000).into_bytes(),
        })
        .collect();
    let fix = AnswerFix {
        lat_e7: 519_200_000,
        lon_e7: 44_800_000,
        acc_dm: 87,
        batt: 70,
        seq: 41,
    };
    let recording = kordon_sim::Recording {
        format: FORMAT,
        seed: 0,
        scenario: "hand-made".into(),
        scenario_toml: String::new(),
        pairs: 1,
        hours: 2,
        start_ms: start,
        cases: Vec::new(),
        pair_info: Vec::new(),
        messages,
        truth: Vec::new(),
        answers: vec![DeviceAnswers {
            device: device.clone(),
            every_s: 10,
            start_ms: start,
            fixes: vec![Some(fix); 720],
        }],
    };

    let mut options = MqttOptions::new(
        format!("watch-{device}"),
        addr.ip().to_string(),
        addr.port(),
    );
    options.set_keep_alive(Duration::from_secs(10));
    let (watcher, mut events) = AsyncClient::new(options, 100);
    watcher
        .subscribe(format!("kordon/v1/devices/{device}/fix"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, mut fixes) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let mut subscribed_tx = Some(subscribed_tx);
    let polling = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    let _ = tx.send(p.payload.to_vec());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .unwrap()
        .unwrap();

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let (progress_tx, progress) = tokio::sync::watch::channel(Default::default());
    let broker_url = broker.clone();
    let publisher = tokio::spawn(async move {
        kordon_sim::live::publish_with(recording, &broker_url, 20.0, now, stop, progress_tx).await
    });
    // The publisher connects and subscribes to the request topics.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = now + 1500 * 20;
    watcher
        .publish(
            format!("kordon/v1/devices/{device}/request"),
            QoS::AtLeastOnce,
            false,
            br#"{"action":"report_location","ts":"2026-11-30T10:00:00Z"}"#.to_vec(),
        )
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), fixes.recv())
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let ts = answer["ts"].as_i64().unwrap();
    assert_eq!((ts - start) % 10_000, 0, "a sample's time: {answer}");
    // Asked at about `asked` (simulated); answered 5 to 15 s after, on the
    // next sample (the request's travel adds a little, more under load).
    assert!(
        ts >= asked && ts <= asked + 100_000,
        "{ts} against {asked}: {answer}"
    );
    assert_eq!(answer["lat"], 51.92);
    assert_eq!(answer["lon"], 4.48);
    assert_eq!(answer["acc"], 8.7);
    assert_eq!(answer["seq"], 42);
    assert_eq!(answer["batt"], 70);
    let counts = *progress.borrow();
    assert_eq!((counts.requests, counts.answers), (1, 1));
    let _ = stop_tx.send(true);
    publisher.await.unwrap().unwrap();
    polling.abort();
}

/// In cluster mode every message is stored in the alerts' stream under
/// `kordon_cluster::alerts::message_id`, and the stream drops a second
/// message with an id it holds. So no two messages single-process kordon
/// sends may share an id, over days whose deadlines (curfews, a dying
/// device, going dark, a tamper) give openings and clearings by the clock.
#[test]
fn no_two_messages_of_a_day_share_an_id_in_the_cluster_s_alerts_stream() {
    let (world, _) = World::load().unwrap();
    let mut checked = 0;
    for (seed, scenario) in [
        (1, "standard_day"),
        (2, "curfew_break"),
        (3, "victim_device_dies"),
        (4, "dark_near_her"),
        (5, "tamper_flee"),
    ] {
        let path = format!(
            "{}/../../simulator/scenarios/{scenario}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let recording = generate(
            &world,
            &SimConfig {
                seed,
                pairs: 4,
                hours: 24,
                start: default_start(),
                scenario: Scenario::parse(&text).unwrap(),
                scenario_text: text,
            },
        );
        let (_, out) = replay(&recording);
        let mut seen: std::collections::HashMap<String, String> = Default::default();
        for line in out.lines() {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            let (topic, payload) = match value.get("topic").and_then(|t| t.as_str()) {
                Some(topic) => (topic.to_string(), value["message"].to_string()),
                None => ("kordon/v1/alerts/monitoring".to_string(), line.to_string()),
            };
            let id = kordon_cluster::alerts::message_id(&topic, payload.as_bytes());
            if let Some(before) = seen.insert(id, format!("{topic} {payload}")) {
                panic!("{scenario}: two messages, one id:\n{before}\n{topic} {payload}");
            }
            checked += 1;
        }
    }
    eprintln!("{checked} messages, each with an id of its own");
    assert!(checked > 100, "only {checked} messages");
}
