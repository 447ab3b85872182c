//! Case validation: every problem named with its case, order and field.

use kordon_core::{validate_case, Case, Problem};

const GOOD: &str = r#"{
  "id": "RTM-9", "risk": "medium",
  "offender": {"device": "OFF-9"},
  "protected": [{"id": "P1", "device": "VIC-9"}],
  "orders": [
    {"id": "home", "legal_basis": "art. 38v Sr",
     "valid_from": "2026-01-01T00:00:00+01:00", "valid_until": "2027-01-01T00:00:00+01:00",
     "rule": {"type": "exclusion_zone", "warning_buffer_m": 200,
              "geometry": {"type": "Polygon", "coordinates": [[[4.51,51.92],[4.52,51.92],[4.52,51.93],[4.51,51.93],[4.51,51.92]]]}}},
    {"id": "curfew", "legal_basis": "art. 14c Sr",
     "valid_from": "2026-01-01T00:00:00+01:00",
     "rule": {"type": "inclusion_zone", "grace_s": 600,
              "geometry": {"type": "Point", "coordinates": [4.48, 51.88], "radius_m": 60},
              "schedule": {"windows": [{"days": ["mon","tue"], "start": "22:00", "end": "06:00"}]}}},
    {"id": "contact", "legal_basis": "art. 38v Sr",
     "valid_from": "2026-01-01T00:00:00+01:00",
     "rule": {"type": "contact_ban", "protected": "P1", "warning_radius_m": 1000, "alarm_radius_m": 300}}
  ]
}"#;

/// Parses GOOD with one edit applied to its JSON value.
fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Case {
    let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

fn problems(case: &Case) -> Vec<(Option<String>, String, Problem)> {
    validate_case(case)
        .errors
        .into_iter()
        .map(|e| (e.order.map(|o| o.to_string()), e.field, e.problem))
        .collect()
}

fn ring(v: &mut serde_json::Value) -> &mut serde_json::Value {
    &mut v["orders"][0]["rule"]["geometry"]["coordinates"][0]
}

#[test]
fn a_good_case_passes() {
    let case = Case::from_json(GOOD).unwrap();
    let report = validate_case(&case);
    assert!(report.is_ok(), "{:?}", report.errors);
    assert!(report.warnings.is_empty());
}

#[test]
fn unclosed_ring_is_named() {
    let case = with(|v| {
        ring(v).as_array_mut().unwrap().pop();
    });
    let p = problems(&case);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0.as_deref(), Some("home"));
    assert_eq!(p[0].1, "orders[0].rule.geometry.coordinates[0]");
    assert!(matches!(p[0].2, Problem::RingNotClosed { .. }));
    let message = validate_case(&case).errors[0].to_string();
    assert!(message.contains("case RTM-9, order home"), "{message}");
}

#[test]
fn too_few_ring_points() {
    let case = with(|v| {
        *ring(v) = serde_json::json!([[4.51, 51.92], [4.52, 51.92], [4.51, 51.92]]);
    });
    assert!(matches!(
        problems(&case)[0].2,
        Problem::TooFewRingPoints { found: 3 }
    ));
}

#[test]
fn self_intersecting_ring() {
    let case = with(|v| {
        // A bow tie.
        *ring(v) = serde_json::json!([
            [4.51, 51.92],
            [4.52, 51.93],
            [4.52, 51.92],
            [4.51, 51.93],
            [4.51, 51.92]
        ]);
    });
    let p = problems(&case);
    assert!(
        matches!(&p[0].2, Problem::InvalidPolygon { detail } if detail.contains("self-intersection")),
        "{p:?}"
    );
}

#[test]
fn swapped_lat_lon_is_an_error_outside_nl_a_warning() {
    let swapped = with(|v| {
        v["orders"][1]["rule"]["geometry"]["coordinates"] = serde_json::json!([51.88, 4.48]);
    });
    assert!(matches!(
        problems(&swapped)[0].2,
        Problem::LatLonSwapped { .. }
    ));
    let abroad = with(|v| {
        v["orders"][1]["rule"]["geometry"]["coordinates"] = serde_json::json!([2.35, 48.85]);
    });
    let report = validate_case(&abroad);
    assert!(report.is_ok());
    assert!(matches!(
        report.warnings[0].problem,
        Problem::OutsideNetherlands { .. }
    ));
    let impossible = with(|v| {
        v["orders"][1]["rule"]["geometry"]["coordinates"] = serde_json::json!([4.48, 91.0]);
    });
    assert!(matches!(
        problems(&impossible)[0].2,
        Problem::LatitudeOutOfRange { .. }
    ));
}

#[test]
fn radii_must_be_positive_and_sane() {
    let zero = with(|v| v["orders"][1]["rule"]["geometry"]["radius_m"] = 0.into());
    assert!(matches!(problems(&zero)[0].2, Problem::NotPositive { .. }));
    let absurd = with(|v| v["orders"][2]["rule"]["warning_radius_m"] = 60_000.into());
    assert!(matches!(problems(&absurd)[0].2, Problem::Absurd { .. }));
    let negative_buffer = with(|v| v["orders"][0]["rule"]["warning_buffer_m"] = (-5).into());
    assert!(matches!(
        problems(&negative_buffer)[0].2,
        Problem::Negative { .. }
    ));
}

#[test]
fn a_zone_larger_than_fifty_km_is_refused() {
    let case = with(|v| {
        // From Rotterdam to Groningen.
        *ring(v) = serde_json::json!([[4.48, 51.92], [6.56, 53.22], [6.56, 51.92], [4.48, 51.92]]);
    });
    assert!(
        matches!(problems(&case)[0].2, Problem::ZoneTooLarge { .. }),
        "{:?}",
        problems(&case)
    );
}

#[test]
fn alarm_radius_larger_than_warning_radius() {
    let case = with(|v| v["orders"][2]["rule"]["alarm_radius_m"] = 2000.into());
    let p = problems(&case);
    assert_eq!(p[0].1, "orders[2].rule.alarm_radius_m");
    assert!(matches!(p[0].2, Problem::AlarmExceedsWarning { .. }));
}

#[test]
fn empty_and_overlapping_windows() {
    let empty = with(|v| {
        v["orders"][1]["rule"]["schedule"]["windows"][0]["end"] = "22:00".into();
    });
    assert!(matches!(problems(&empty)[0].2, Problem::EmptyWindow));
    let overlapping = with(|v| {
        v["orders"][1]["rule"]["schedule"]["windows"] = serde_json::json!([
            {"days": ["mon"], "start": "22:00", "end": "06:00"},
            {"days": ["tue"], "start": "05:00", "end": "09:00"}
        ]);
    });
    assert!(matches!(
        problems(&overlapping)[0].2,
        Problem::OverlappingWindows { other: 0, .. }
    ));
    let sunday_into_monday = with(|v| {
        v["orders"][1]["rule"]["schedule"]["windows"] = serde_json::json!([
            {"days": ["sun"], "start": "22:00", "end": "06:00"},
            {"days": ["mon"], "start": "05:00", "end": "09:00"}
        ]);
    });
    assert!(matches!(
        problems(&sunday_into_monday)[0].2,
        Problem::OverlappingWindows { .. }
    ));
    let no_windows =
        with(|v| v["orders"][1]["rule"]["schedule"]["windows"] = serde_json::json!([]));
    assert!(matches!(problems(&no_windows)[0].2, Problem::NoWindows));
}

#[test]
fn validity_that_ends_before_it_starts() {
    let case = with(|v| v["orders"][0]["valid_until"] = "2025-01-01T00:00:00Z".into());
    let p = problems(&case);
    assert_eq!(p[0].1, "orders[0].valid_until");
    assert!(matches!(p[0].2, Problem::ValidityEndsBeforeStart { .. }));
}

#[test]
fn unknown_protected_person_and_missing_device() {
    let unknown = with(|v| v["orders"][2]["rule"]["protected"] = "P7".into());
    assert!(
        matches!(&problems(&unknown)[0].2, Problem::UnknownProtectedPerson { id } if id == "P7")
    );
    let no_device = with(|v| v["protected"][0] = serde_json::json!({"id": "P1"}));
    assert!(matches!(
        problems(&no_device)[0].2,
        Problem::ProtectedPersonWithoutDevice { .. }
    ));
    let shared = with(|v| v["protected"][0]["device"] = "OFF-9".into());
    assert!(matches!(
        problems(&shared)[0].2,
        Problem::DeviceUsedTwice { .. }
    ));
}

#[test]
fn every_problem_is_reported_at_once() {
    let case = with(|v| {
        ring(v).as_array_mut().unwrap().pop();
        v["orders"][2]["rule"]["alarm_radius_m"] = 2000.into();
        v["orders"][1]["valid_until"] = "2025-01-01T00:00:00Z".into();
    });
    assert_eq!(problems(&case).len(), 3);
}

#[test]
fn typos_in_field_names_are_refused_by_the_parser() {
    let text = GOOD.replace("warning_buffer_m", "warning_bufer_m");
    let err = Case::from_json(&text).unwrap_err().to_string();
    assert!(err.contains("warning_bufer_m"), "{err}");
}

#[test]
fn the_example_cases_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/cases");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let case = Case::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let report = validate_case(&case);
            assert!(report.is_ok(), "{}: {:?}", path.display(), report.errors);
            assert!(
                report.warnings.is_empty(),
                "{}: {:?}",
                path.display(),
                report.warnings
            );
            n += 1;
        }
    }
    assert_eq!(n, 2);
}
