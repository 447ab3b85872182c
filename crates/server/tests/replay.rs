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
