//! "Turn back" on the bracelet is per order: a zone around a protected
//! person's address (`around`) does not warn the bracelet unless the order
//! says so, because an offender who walks its warning buffer maps its edge
//! and so finds her; other static zones do, unless the order says not.

use jiff::{SignedDuration, Timestamp};
use kordon_alert::{AlertDesk, AlertSettings, Outbound};
use kordon_core::{Case, DeviceId, Engine, EngineConfig, Fix};

/// Three zones 5 km apart along a meridian.
const CENTRES: [(f64, f64); 3] = [(51.90, 4.45), (51.95, 4.45), (52.00, 4.45)];

fn zone(id: &str, centre: (f64, f64), extra: serde_json::Value) -> serde_json::Value {
    let mut rule = serde_json::json!({
        "type": "exclusion_zone", "warning_buffer_m": 200,
        "geometry": {"type": "Point", "coordinates": [centre.1, centre.0], "radius_m": 100}
    });
    for (key, value) in extra.as_object().unwrap() {
        rule[key] = value.clone();
    }
    serde_json::json!({"id": id, "legal_basis": "art. 38v Sr", "valid_from": "2026-01-01T00:00:00Z", "rule": rule})
}

fn case() -> Case {
    serde_json::from_value(serde_json::json!({
        "id": "RTM-1", "risk": "medium",
        "offender": {"device": "OFF-1"},
        "protected": [{"id": "P1", "device": "VIC-1"}],
        "orders": [
            zone("shelter", CENTRES[0], serde_json::json!({"around": "P1"})),
            zone("centre", CENTRES[1], serde_json::json!({})),
            zone("her-work", CENTRES[2], serde_json::json!({"around": "P1", "bracelet_warnings": true})),
        ]
    }))
    .unwrap()
}

fn t(s: i64) -> Timestamp {
    "2026-11-29T03:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_secs(s)
}

/// Which orders' episodes reached the bracelet when he walked into each zone.
#[test]
fn a_zone_around_her_address_does_not_warn_the_bracelet_unless_the_order_says_so() {
    let mut engine = Engine::new(EngineConfig::default());
    let mut desk = AlertDesk::new(AlertSettings::default());
    engine.upsert_case(case(), t(0)).unwrap();
    desk.upsert_case(&case());
    let mut out: Vec<Outbound> = Vec::new();
    let mut s = 0;
    for centre in CENTRES {
        // From 250 m south (in the buffer), into the zone, and out far.
        for metres in [250.0, 0.0, 3000.0, 3000.0, 3000.0] {
            s += 300;
            let lat = centre.0 - metres / 111_195.0;
            let fix = Fix::new(DeviceId::new("OFF-1"), t(s), lat, centre.1, 5.0);
            for event in engine.ingest_fix(&fix).unwrap().events {
                out.extend(desk.route(&event, t(s)));
            }
        }
    }
    let monitoring: Vec<serde_json::Value> = out
        .iter()
        .filter(|m| m.topic == "kordon/v1/alerts/monitoring")
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    let breaches = |order: &str| {
        monitoring
            .iter()
            .filter(|m| m["order"] == order && m["kind"] == "zone_breach")
            .count()
    };
    for order in ["shelter", "centre", "her-work"] {
        assert!(breaches(order) >= 1, "{order} was breached: {monitoring:?}");
    }
    let bracelet: Vec<serde_json::Value> = out
        .iter()
        .filter(|m| m.topic == "kordon/v1/devices/OFF-1/warning")
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    let ids_of = |order: &str| -> Vec<serde_json::Value> {
        monitoring
            .iter()
            .filter(|m| m["order"] == order)
            .map(|m| m["id"].clone())
            .collect()
    };
    let warned = |order: &str| bracelet.iter().any(|w| ids_of(order).contains(&w["id"]));
    assert!(
        !warned("shelter"),
        "the shelter's edge stays unknown to him"
    );
    assert!(warned("centre"));
    assert!(warned("her-work"), "switched on by the order");
}

#[test]
fn around_must_name_a_protected_person_of_the_case() {
    let mut json = serde_json::to_value(case()).unwrap();
    json["orders"][0]["rule"]["around"] = "P9".into();
    let case: Case = serde_json::from_value(json).unwrap();
    let report = kordon_core::validate_case(&case);
    assert!(!report.is_ok());
    assert!(format!("{report:?}").contains("around"), "{report:?}");
}
