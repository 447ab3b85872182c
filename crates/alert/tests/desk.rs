//! The alert desk, driven by the real engine with explicit time: who hears
//! what (the privacy rules), escalation deadlines, acknowledgement, and the
//! CAP thread of an episode.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AckError, AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix};
use serde_json::Value;

const HOME: (f64, f64) = (51.9200, 4.5470);
const ZONE: (f64, f64) = (51.9500, 4.4500);

fn case(risk: &str) -> Case {
    let d = 0.002;
    let (zlat, zlon) = ZONE;
    let json = serde_json::json!({
        "id": "RTM-1", "risk": risk,
        "offender": {"device": "OFF-1"},
        "protected": [{"id": "P1", "device": "VIC-1"}, {"id": "P2", "device": "VIC-2"}],
        "coordinators": [{"organisation": "Politie Rotterdam", "name": "J. de Vries"}],
        "orders": [
            {"id": "contact-p1", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 500, "alarm_radius_m": 200}},
            {"id": "zone", "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z",
             "rule": {"type": "exclusion_zone", "warning_buffer_m": 100, "geometry": {"type": "Polygon", "coordinates": [[
                [zlon - d, zlat - d], [zlon + d, zlat - d], [zlon + d, zlat + d], [zlon - d, zlat + d], [zlon - d, zlat - d]]]}}}
        ]
    });
    serde_json::from_value(json).unwrap()
}

fn t0() -> Timestamp {
    "2026-11-29T03:00:00Z".parse().unwrap()
}

struct World {
    engine: Engine,
    desk: AlertDesk,
    out: Vec<Outbound>,
}

impl World {
    fn new(risk: &str, settings: AlertSettings) -> Self {
        let mut engine = Engine::new(EngineConfig::default());
        let mut desk = AlertDesk::new(settings);
        let case = case(risk);
        engine.upsert_case(case.clone(), t0()).unwrap();
        desk.upsert_case(&case);
        World {
            engine,
            desk,
            out: Vec::new(),
        }
    }

    fn fix(&mut self, device: &str, (lat, lon): (f64, f64), at: Timestamp) {
        self.send(Fix::new(DeviceId::new(device), at, lat, lon, 5.0), at);
    }

    /// A fix whose receiver says it stands still: arrived, not passing by.
    fn fix_standing(&mut self, device: &str, (lat, lon): (f64, f64), at: Timestamp) {
        let mut fix = Fix::new(DeviceId::new(device), at, lat, lon, 5.0);
        fix.speed_mps = Some(0.0);
        self.send(fix, at);
    }

    fn send(&mut self, fix: Fix, at: Timestamp) {
        let outcome = self.engine.ingest_fix(&fix).unwrap();
        for event in &outcome.events {
            let routed = self.desk.route(event, at);
            self.out.extend(routed);
        }
    }

    fn take(&mut self) -> Vec<Outbound> {
        std::mem::take(&mut self.out)
    }
}

fn north((lat, lon): (f64, f64), metres: f64) -> (f64, f64) {
    (lat + metres / 111_195.0, lon)
}

fn on(out: &[Outbound], topic: &str) -> Vec<Value> {
    out.iter()
        .filter(|m| m.topic == topic)
        .map(|m| {
            serde_json::from_slice(&m.payload)
                .unwrap_or(Value::String(String::from_utf8_lossy(&m.payload).into()))
        })
        .collect()
}

#[test]
fn a_warning_goes_to_monitoring_and_her_device_and_a_breach_adds_police_and_cap() {
    // Her device hears of the warning radius only where the programme
    // wants it (off by default).
    let settings = AlertSettings {
        tell_her_of_warnings: true,
        ..AlertSettings::default()
    };
    let mut w = World::new("medium", settings);
    w.fix("VIC-1", HOME, t0());
    w.fix(
        "OFF-1",
        north(HOME, 400.0),
        t0() + SignedDuration::from_secs(10),
    );
    let out = w.take();
    assert_eq!(on(&out, "kordon/v1/alerts/monitoring").len(), 1);
    assert!(on(&out, "kordon/v1/alerts/police").is_empty());
    let warning = on(&out, "kordon/v1/devices/VIC-1/warning");
    assert_eq!(warning.len(), 1);
    assert_eq!(warning[0]["kind"], "proximity_warning");
    assert!(
        on(&out, "kordon/v1/devices/VIC-2/warning").is_empty(),
        "P2 is not under this contact ban"
    );
    assert!(
        on(&out, "kordon/v1/devices/OFF-1/warning").is_empty(),
        "the bracelet never hears of her"
    );

    w.fix_standing(
        "OFF-1",
        north(HOME, 100.0),
        t0() + SignedDuration::from_secs(20),
    );
    let out = w.take();
    let police = on(&out, "kordon/v1/alerts/police");
    assert_eq!(police.len(), 1);
    assert_eq!(police[0]["kind"], "proximity_breach");
    assert_eq!(police[0]["protected"]["device"], "VIC-1");
    assert_eq!(police[0]["risk"], "medium");
    let cap = out
        .iter()
        .find(|m| m.topic == "kordon/v1/alerts/police/cap")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&cap.payload).contains("<msgType>Alert</msgType>"),
        "first police message opens the CAP thread"
    );
    assert_eq!(
        on(&out, "kordon/v1/devices/VIC-1/warning")[0]["kind"],
        "proximity_breach"
    );

    // Closer still, 10 s later: the same breach, a new distance; the
    // monitoring room sees it, the police do not (not material: under
    // `police_update_min_move_m` and `police_update_min_interval_s`), her
    // device does not buzz again.
    w.fix(
        "OFF-1",
        north(HOME, 30.0),
        t0() + SignedDuration::from_secs(30),
    );
    let out = w.take();
    assert_eq!(on(&out, "kordon/v1/alerts/monitoring").len(), 1);
    assert!(on(&out, "kordon/v1/alerts/police").is_empty());
    assert!(on(&out, "kordon/v1/devices/VIC-1/warning").is_empty());
    // A minute later, 140 m from her position now 85 s old: only a
    // possible breach. A fall is not news for a patrol on its own.
    w.fix(
        "OFF-1",
        north(HOME, 140.0),
        t0() + SignedDuration::from_secs(85),
    );
    let out = w.take();
    assert_eq!(
        on(&out, "kordon/v1/alerts/monitoring")[0]["certainty"],
        "possible"
    );
    assert!(on(&out, "kordon/v1/alerts/police").is_empty());
    assert!(on(&out, "kordon/v1/devices/VIC-1/warning").is_empty());
    // She walks 250 m north and he follows her, still within the alarm
    // radius: he moved 160 m from where the police last had him, and their
    // last message is over a minute old: material.
    w.fix(
        "VIC-1",
        north(HOME, 250.0),
        t0() + SignedDuration::from_secs(94),
    );
    w.fix(
        "OFF-1",
        north(HOME, 260.0),
        t0() + SignedDuration::from_secs(95),
    );
    let out = w.take();
    assert_eq!(on(&out, "kordon/v1/alerts/police").len(), 1, "{out:?}");
    assert!(String::from_utf8_lossy(
        &out.iter()
            .find(|m| m.topic.ends_with("/cap"))
            .unwrap()
            .payload
    )
    .contains("<msgType>Update</msgType>"));

    // He leaves; after the clearing time the police thread is cancelled and
    // she is told it ended.
    for (i, metres) in [3000.0, 3100.0, 3200.0, 3300.0].into_iter().enumerate() {
        w.fix(
            "OFF-1",
            north(HOME, metres),
            t0() + SignedDuration::from_secs(120 + 40 * i as i64),
        );
    }
    let out = w.take();
    assert!(String::from_utf8_lossy(
        &out.iter()
            .find(|m| m.topic.ends_with("/cap"))
            .unwrap()
            .payload
    )
    .contains("<msgType>Cancel</msgType>"));
    let ended = on(&out, "kordon/v1/devices/VIC-1/warning");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["event"], "cleared");
}

#[test]
fn warnings_for_her_and_the_bracelet_carry_nothing_about_the_other_party() {
    let mut w = World::new("high", AlertSettings::default());
    w.fix("VIC-1", HOME, t0());
    w.fix(
        "OFF-1",
        north(HOME, 100.0),
        t0() + SignedDuration::from_secs(10),
    );
    w.fix("OFF-1", ZONE, t0() + SignedDuration::from_secs(400));
    let out = w.take();
    let device_topics: Vec<&Outbound> = out
        .iter()
        .filter(|m| m.topic.ends_with("/warning"))
        .collect();
    assert!(device_topics.len() >= 3);
    for message in device_topics {
        let value: Value = serde_json::from_slice(&message.payload).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
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
            "{}",
            message.topic
        );
    }
    let bracelet = on(&out, "kordon/v1/devices/OFF-1/warning");
    assert!(
        bracelet
            .iter()
            .all(|w| w["kind"].as_str().unwrap().starts_with("zone")),
        "static zones only: {bracelet:?}"
    );
    assert!(!bracelet.is_empty());
}

#[test]
fn bracelet_zone_warnings_can_be_switched_off() {
    let settings = AlertSettings {
        offender_zone_warnings: false,
        ..AlertSettings::default()
    };
    let mut w = World::new("medium", settings);
    w.fix("OFF-1", ZONE, t0());
    let out = w.take();
    assert!(on(&out, "kordon/v1/devices/OFF-1/warning").is_empty());
    assert_eq!(on(&out, "kordon/v1/alerts/police").len(), 1);
}

#[test]
fn an_unacknowledged_police_alert_escalates_once_at_its_deadline_to_the_room_and_coordinators() {
    let settings = AlertSettings {
        escalate_after_s: 120,
        ..AlertSettings::default()
    };
    let mut w = World::new("high", settings);
    w.fix("OFF-1", ZONE, t0());
    let id = on(&w.take(), "kordon/v1/alerts/police")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        w.desk
            .tick(t0() + SignedDuration::from_secs(119))
            .is_empty(),
        "not before the deadline"
    );
    let escalated = w.desk.tick(t0() + SignedDuration::from_secs(120));
    assert!(
        on(&escalated, "kordon/v1/alerts/police").is_empty(),
        "the police act on the alert already"
    );
    let monitoring = on(&escalated, "kordon/v1/alerts/monitoring");
    assert_eq!(monitoring.len(), 1);
    assert_eq!(monitoring[0]["event"], "escalated");
    assert_eq!(monitoring[0]["id"], id.as_str());
    let notice = on(&escalated, "kordon/v1/cases/RTM-1/coordinators");
    assert_eq!(
        notice[0]["coordinators"][0]["organisation"],
        "Politie Rotterdam"
    );
    assert_eq!(notice[0]["unacknowledged_for_s"], 120.0);
    assert!(
        w.desk
            .tick(t0() + SignedDuration::from_secs(600))
            .is_empty(),
        "escalated once"
    );

    let (ack, out) = w
        .desk
        .acknowledge(&id, "op-1", None, t0() + SignedDuration::from_secs(150))
        .unwrap();
    assert_eq!(ack.time_to_ack_s, 150.0);
    assert_eq!(
        on(&out, "kordon/v1/alerts/monitoring")[0]["event"],
        "acknowledged"
    );
    assert_eq!(
        on(&out, "kordon/v1/alerts/police")[0]["acknowledged"]["operator"],
        "op-1"
    );
    let record = w.desk.alert(&id).unwrap();
    assert!(record.escalated_at.is_some() && record.acknowledgement.is_some());
}

#[test]
fn an_acknowledged_alert_does_not_escalate_and_warnings_never_do() {
    let mut w = World::new("high", AlertSettings::default());
    w.fix("OFF-1", ZONE, t0());
    let id = on(&w.take(), "kordon/v1/alerts/police")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.desk
        .acknowledge(
            &id,
            "op-1",
            Some("unit 7".into()),
            t0() + SignedDuration::from_secs(30),
        )
        .unwrap();
    assert!(w
        .desk
        .tick(t0() + SignedDuration::from_secs(1000))
        .is_empty());
    assert!(matches!(
        w.desk.acknowledge(&id, "op-2", None, t0() + SignedDuration::from_secs(40)),
        Err(AckError::AlreadyAcknowledged { ref operator, .. }) if operator == "op-1"
    ));
    assert!(matches!(
        w.desk
            .acknowledge("ffffffffffffffffffffffffffffffff", "op", None, t0()),
        Err(AckError::UnknownAlert(_))
    ));

    let mut w = World::new("medium", AlertSettings::default());
    w.fix("VIC-1", HOME, t0());
    w.fix("OFF-1", north(HOME, 400.0), t0());
    w.take();
    assert!(
        w.desk
            .tick(t0() + SignedDuration::from_secs(10_000))
            .is_empty(),
        "a warning alone calls no one"
    );
}

#[test]
fn curfew_and_tamper_call_police_only_in_high_risk_cases() {
    use kordon_core::{Status, StrapState};
    for (risk, police) in [("medium", 0), ("high", 1)] {
        let mut w = World::new(risk, AlertSettings::default());
        let mut status = Status::heartbeat(DeviceId::new("OFF-1"), t0());
        status.strap = Some(StrapState::Tampered);
        let events = w.engine.ingest_status(&status).unwrap();
        let out: Vec<Outbound> = events.iter().flat_map(|e| w.desk.route(e, t0())).collect();
        assert_eq!(on(&out, "kordon/v1/alerts/police").len(), police, "{risk}");
        assert_eq!(on(&out, "kordon/v1/alerts/monitoring").len(), 1);
        assert_eq!(
            on(&out, "kordon/v1/devices/VIC-1/warning").len(),
            1,
            "she is told her protection is void"
        );
        assert_eq!(on(&out, "kordon/v1/devices/VIC-2/warning").len(), 1);
    }
}

#[test]
fn the_sender_must_be_a_valid_cap_sender() {
    for bad in ["", "kordon rotterdam", "a,b", "a&b"] {
        let settings = AlertSettings {
            sender: bad.into(),
            ..AlertSettings::default()
        };
        assert!(settings.validate().is_err(), "{bad:?}");
    }
    assert!(AlertSettings::default().validate().is_ok());
}

/// A restart restores the desk from its snapshot: the alert keeps its
/// CAP thread, its escalation deadline and what each device was told.
#[test]
fn a_restored_desk_carries_on_as_the_original() {
    let settings = AlertSettings {
        escalate_after_s: 120,
        ..AlertSettings::default()
    };
    let run = |restore: bool| {
        let mut w = World::new("high", settings.clone());
        w.fix("OFF-1", ZONE, t0());
        if restore {
            let case = case("high");
            w.desk = AlertDesk::restore(settings.clone(), [&case], &w.desk.snapshot()).unwrap();
        }
        // Again in the zone: no second buzz on her device, a CAP Update.
        w.fix(
            "OFF-1",
            north(ZONE, 5.0),
            t0() + SignedDuration::from_secs(30),
        );
        let mut out = w.take();
        out.extend(w.desk.tick(t0() + SignedDuration::from_secs(120)));
        out
    };
    let continuous = run(false);
    assert!(
        !on(&continuous, "kordon/v1/alerts/police").is_empty(),
        "the run escalates"
    );
    assert_eq!(continuous, run(true));
}
