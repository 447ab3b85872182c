//! An acknowledgement holds for the level it was given at. A rise in level
//! (warning to breach, possible to certain) is a new demand for attention:
//! it needs its own acknowledgement and restarts the escalation clock; the
//! acknowledgement names the level the operator saw. Escalation goes to the
//! monitoring topic and the case's coordinators, not to the police.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AckError, AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, Certainty, DeviceId, Engine, EngineConfig, EventKind, Fix};
use serde_json::Value;

const HOME: (f64, f64) = (51.9200, 4.5470);
const POLICE: &str = "kordon/v1/alerts/police";
const MONITORING: &str = "kordon/v1/alerts/monitoring";

fn case() -> Case {
    serde_json::from_value(serde_json::json!({
        "id": "RTM-1", "risk": "medium",
        "offender": {"device": "OFF-1"},
        "protected": [{"id": "P1", "device": "VIC-1"}],
        "orders": [
            {"id": "contact-p1", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 1000, "alarm_radius_m": 200}}
        ]
    }))
    .unwrap()
}

fn t(s: i64) -> Timestamp {
    "2026-11-29T03:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
}

struct Room {
    engine: Engine,
    desk: AlertDesk,
}

impl Room {
    fn new() -> Room {
        let config = EngineConfig {
            possible_confirmations: 1,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config);
        let settings = AlertSettings {
            escalate_after_s: 20,
            ..AlertSettings::default()
        };
        let mut desk = AlertDesk::new(settings);
        engine.upsert_case(case(), t(0)).unwrap();
        desk.upsert_case(&case());
        Room { engine, desk }
    }

    /// A fix `north_m` north of her home; what the desk sends.
    fn fix(&mut self, device: &str, north_m: f64, acc: f64, s: i64) -> Vec<Outbound> {
        let lat = HOME.0 + north_m / 111_195.0;
        let fix = Fix::new(DeviceId::new(device), t(s), lat, HOME.1, acc);
        let events = self.engine.ingest_fix(&fix).unwrap().events;
        events
            .iter()
            .flat_map(|e| self.desk.route(e, t(s)))
            .collect()
    }
}

fn on(out: &[Outbound], topic: &str) -> Vec<Value> {
    out.iter()
        .filter(|m| m.topic == topic)
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}

#[test]
fn an_acknowledged_warning_does_not_swallow_its_breach() {
    let mut room = Room::new();
    room.fix("VIC-1", 0.0, 5.0, 0);
    let warned = room.fix("OFF-1", 800.0, 5.0, 10);
    let id = on(&warned, "kordon/v1/alerts/monitoring")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ack, _) = room.desk.acknowledge(&id, "op-1", None, t(30)).unwrap();
    let seen = ack.level.unwrap();
    assert_eq!(seen.kind, EventKind::ProximityWarning);
    // Minutes later he is at her door.
    let breach = room.fix("OFF-1", 20.0, 5.0, 200);
    assert_eq!(on(&breach, POLICE)[0]["kind"], "proximity_breach");
    let record = room.desk.alert(&id).unwrap();
    assert!(
        record.acknowledgement.is_none(),
        "the breach is not acknowledged"
    );
    assert_eq!(record.earlier_acknowledgements.len(), 1);
    assert_eq!(record.attention_since, t(200));
    // Nobody acknowledges the breach: it escalates on its own clock.
    assert!(room.desk.tick(t(219)).is_empty());
    let escalated = room.desk.tick(t(220));
    assert_eq!(on(&escalated, MONITORING)[0]["event"], "escalated");
    assert!(
        on(&escalated, POLICE).is_empty(),
        "the police act on the alert already; escalation is the room's"
    );
    // And it can be acknowledged, naming the breach.
    let (ack, _) = room.desk.acknowledge(&id, "op-2", None, t(230)).unwrap();
    let level = ack.level.unwrap();
    assert_eq!(level.kind, EventKind::ProximityBreach);
    assert_eq!(ack.time_to_ack_s, 30.0);
    assert!(matches!(
        room.desk.acknowledge(&id, "op-3", None, t(231)),
        Err(AckError::AlreadyAcknowledged { .. })
    ));
}

#[test]
fn a_possible_breach_turning_certain_needs_a_new_acknowledgement() {
    let mut room = Room::new();
    room.fix("VIC-1", 0.0, 5.0, 0);
    // 215 m with a 30 m disc: possibly inside the 200 m alarm radius.
    let possible = room.fix("OFF-1", 215.0, 30.0, 10);
    let opened = &on(&possible, POLICE)[0];
    assert_eq!(opened["certainty"], "possible");
    let id = opened["id"].as_str().unwrap().to_string();
    let (ack, _) = room.desk.acknowledge(&id, "op-1", None, t(15)).unwrap();
    assert_eq!(ack.level.unwrap().certainty, Some(Certainty::Possible));
    let certain = room.fix("OFF-1", 30.0, 5.0, 40);
    assert_eq!(on(&certain, POLICE)[0]["certainty"], "certain");
    assert!(room.desk.alert(&id).unwrap().acknowledgement.is_none());
    let (ack, _) = room.desk.acknowledge(&id, "op-1", None, t(45)).unwrap();
    assert_eq!(ack.level.unwrap().certainty, Some(Certainty::Certain));
}

#[test]
fn police_waiting_for_an_acknowledgement_keep_their_clock_when_the_breach_turns_certain() {
    let mut room = Room::new();
    room.fix("VIC-1", 0.0, 5.0, 0);
    room.fix("OFF-1", 215.0, 30.0, 10);
    room.fix("OFF-1", 30.0, 5.0, 25);
    // Raised at 10 s for the police, never acknowledged: due at 30 s, not
    // 20 s after it turned certain.
    let escalated = room.desk.tick(t(30));
    assert_eq!(on(&escalated, MONITORING)[0]["event"], "escalated");
}

/// What `kordon_alerts_overdue` shows: an alert past its deadline counts
/// for each audience that has not acknowledged it, and stops counting for
/// the one that does.
#[test]
fn an_alert_is_overdue_for_each_audience_until_it_acknowledges() {
    use kordon_alert::Overdue;
    let mut room = Room::new();
    room.fix("VIC-1", 0.0, 5.0, 0);
    let out = room.fix("OFF-1", 30.0, 5.0, 10);
    let id = on(&out, POLICE)[0]["id"].as_str().unwrap().to_string();
    // Deadline: 10 s + 20 s.
    let none = Overdue {
        monitoring: 0,
        police: 0,
    };
    assert_eq!(room.desk.overdue(t(30)), none);
    assert_eq!(
        room.desk.overdue(t(31)),
        Overdue {
            monitoring: 1,
            police: 1
        }
    );
    room.desk.acknowledge(&id, "op-7", None, t(32)).unwrap();
    assert_eq!(
        room.desk.overdue(t(33)),
        Overdue {
            monitoring: 0,
            police: 1
        }
    );
    room.desk
        .acknowledge_for_police(&id, "dispatch-2", None, t(34))
        .unwrap();
    assert_eq!(room.desk.overdue(t(35)), none);
}
