//! The payload contract of docs/mqtt.md: what decodes, and the reason code
//! of every refusal.

use std::collections::HashMap;

use jiff::Timestamp;
use kordon_core::{DeviceId, GpsState, StrapState};
use kordon_ingest::{BinaryFix, Decoder, Limits, Message, Reason};

fn now() -> Timestamp {
    "2026-11-29T08:00:00Z".parse().unwrap()
}

fn decoder() -> Decoder {
    let owntracks = HashMap::from([("anna/phone".to_string(), DeviceId::new("VIC-0001"))]);
    Decoder::new(Limits::default(), owntracks)
}

fn reason(topic: &str, payload: &[u8]) -> Reason {
    match decoder().decode(topic, payload, now()) {
        Ok(message) => panic!(
            "{topic} {} accepted as {message:?}",
            String::from_utf8_lossy(payload)
        ),
        Err(refusal) => {
            assert!(!refusal.detail.is_empty());
            refusal.reason
        }
    }
}

const FIX: &str = "kordon/v1/devices/OFF-0001/fix";

#[test]
fn a_json_fix_with_epoch_ms_or_rfc3339_decodes() {
    let d = decoder();
    let ms = now().as_millisecond();
    let payload = format!(
        r#"{{"ts":{ms},"lat":51.92,"lon":4.48,"acc":8,"seq":7,"speed":1.5,"heading":90,"batt":80,"firmware":"2.1"}}"#
    );
    let Message::Fix(fix) = d.decode(FIX, payload.as_bytes(), now()).unwrap() else {
        panic!("not a fix")
    };
    assert_eq!(fix.device.as_str(), "OFF-0001");
    assert_eq!(fix.ts, now());
    assert_eq!((fix.lat, fix.lon, fix.accuracy_m), (51.92, 4.48, 8.0));
    assert_eq!(
        (fix.seq, fix.speed_mps, fix.heading_deg, fix.battery_pct),
        (Some(7), Some(1.5), Some(90.0), Some(80))
    );

    let payload =
        br#"{"device":"OFF-0001","ts":"2026-11-29T08:59:30+01:00","lat":51.92,"lon":4.48,"acc":8}"#;
    let Message::Fix(fix) = d.decode(FIX, payload, now()).unwrap() else {
        panic!("not a fix")
    };
    assert_eq!(fix.ts, "2026-11-29T07:59:30Z".parse::<Timestamp>().unwrap());
}

#[test]
fn a_status_message_decodes() {
    let payload = br#"{"ts":"2026-11-29T07:59:00Z","strap":"tampered","batt":12,"charging":false,"gps":"no_fix"}"#;
    let message = decoder()
        .decode("kordon/v1/devices/OFF-0001/status", payload, now())
        .unwrap();
    let Message::Status(status) = message else {
        panic!("not a status")
    };
    assert_eq!(status.strap, Some(StrapState::Tampered));
    assert_eq!(status.gps, Some(GpsState::NoFix));
    assert_eq!(
        (status.battery_pct, status.charging),
        (Some(12), Some(false))
    );
}

#[test]
fn an_owntracks_location_maps_to_its_configured_device() {
    let tst = now().as_second() - 5;
    let payload = format!(
        r#"{{"_type":"location","tst":{tst},"lat":51.9,"lon":4.5,"acc":12,"batt":64,"vel":36,"cog":180,"tid":"an","t":"u"}}"#
    );
    let message = decoder()
        .decode("owntracks/anna/phone", payload.as_bytes(), now())
        .unwrap();
    let Message::Fix(fix) = message else {
        panic!("not a fix")
    };
    assert_eq!(fix.device.as_str(), "VIC-0001");
    assert_eq!(fix.speed_mps, Some(10.0), "vel is km/h");
    assert_eq!(fix.heading_deg, Some(180.0));
    assert_eq!(fix.battery_pct, Some(64));
}

#[test]
fn a_binary_fix_round_trips_and_is_compact() {
    let binary = BinaryFix {
        ts_ms: now().as_millisecond(),
        lat_e7: 519_200_000,
        lon_e7: 44_800_000,
        acc_dm: 85,
        seq: Some(1234),
        speed_cm_s: Some(150),
        heading_cdeg: Some(9000),
        batt: Some(80),
    };
    let bytes = binary.encode();
    assert!(bytes.len() <= 30, "{} bytes", bytes.len());
    let message = decoder()
        .decode("kordon/v1/devices/OFF-0001/fix.bin", &bytes, now())
        .unwrap();
    let Message::Fix(fix) = message else {
        panic!("not a fix")
    };
    assert_eq!((fix.lat, fix.lon, fix.accuracy_m), (51.92, 4.48, 8.5));
    assert_eq!((fix.speed_mps, fix.heading_deg), (Some(1.5), Some(90.0)));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        reason("kordon/v1/devices/OFF-0001/fix.bin", &trailing),
        Reason::MalformedPayload
    );
    assert_eq!(
        reason("kordon/v1/devices/OFF-0001/fix.bin", &bytes[..5]),
        Reason::MalformedPayload
    );
}

#[test]
fn an_acknowledgement_decodes_and_must_name_its_operator() {
    let message = decoder()
        .decode(
            "kordon/v1/alerts/ack",
            br#"{"id":"abc","operator":"op-17","note":"unit sent"}"#,
            now(),
        )
        .unwrap();
    let Message::Ack(ack) = message else {
        panic!("not an ack")
    };
    assert_eq!(
        (ack.id.as_str(), ack.operator.as_str(), ack.note.as_deref()),
        ("abc", "op-17", Some("unit sent"))
    );
    assert_eq!(
        reason("kordon/v1/alerts/ack", br#"{"id":"abc"}"#),
        Reason::MissingField
    );
    assert_eq!(
        reason("kordon/v1/alerts/ack", br#"{"id":"abc","operator":" "}"#),
        Reason::InvalidField
    );
}

fn status(payload: &str) -> kordon_core::Status {
    match decoder().decode(
        "kordon/v1/devices/OFF-0001/status",
        payload.as_bytes(),
        now(),
    ) {
        Ok(Message::Status(status)) => status,
        other => panic!("{payload}: {other:?}"),
    }
}

#[test]
fn a_tamper_status_needs_nothing_but_its_strap() {
    let ts = now().as_millisecond() - 2000;
    for payload in [
        format!(r#"{{"ts":{ts},"strap":"tampered"}}"#),
        r#"{"strap":"tampered"}"#.to_string(),
        r#"{"ts":"yesterday","strap":"tampered","gps":"3d","batt":300,"charging":"?"}"#.into(),
        format!(r#"{{"ts":{ts},"strap":"cut","gps":"ok","fw":{{"v":2}}}}"#),
        format!(r#"{{"ts":{ts},"strap":"OPEN","batt":180}}"#),
        // A clock reset to 1970, and one an hour ahead: the strap is news now.
        r#"{"ts":0,"strap":"tampered"}"#.into(),
        format!(r#"{{"ts":{},"strap":"tampered"}}"#, ts + 3_600_000),
    ] {
        let status = status(&payload);
        assert_eq!(status.strap, Some(StrapState::Tampered), "{payload}");
        assert!(status.battery_pct.is_none_or(|b| b <= 100), "{payload}");
        assert!(status.ts <= now(), "{payload}");
    }
    // Without a usable time it is stamped with its arrival.
    assert_eq!(status(r#"{"strap":"tampered"}"#).ts, now());
    assert_eq!(status(r#"{"ts":0,"strap":"tampered"}"#).ts, now());
    // A well-stamped one keeps its time.
    let stamped = status(&format!(r#"{{"ts":{ts},"strap":"ok","gps":"no_fix"}}"#));
    assert_eq!(stamped.ts.as_millisecond(), ts);
    assert_eq!(
        (stamped.strap, stamped.gps),
        (Some(StrapState::Ok), Some(GpsState::NoFix))
    );
    // A word kordon does not know says nothing about the strap; a status
    // with nothing usable is a heartbeat.
    let unknown = status(r#"{"strap":"wobbly","gps":7}"#);
    assert_eq!((unknown.strap, unknown.gps), (None, None));
    assert_eq!(status("{}").strap, None);
}

#[test]
fn a_fix_keeps_its_position_when_an_optional_reading_is_impossible() {
    let ts = now().as_millisecond();
    for extra in [
        r#","heading":400"#,
        r#","batt":300"#,
        r#","batt":180"#,
        r#","speed":-4"#,
        r#","speed":"fast""#,
        r#","seq":-1"#,
    ] {
        let payload = format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.4,"acc":5{extra}}}"#);
        let Message::Fix(fix) = decoder().decode(FIX, payload.as_bytes(), now()).unwrap() else {
            panic!("not a fix")
        };
        assert_eq!((fix.lat, fix.lon, fix.accuracy_m), (51.9, 4.4, 5.0));
        assert_eq!(
            (fix.speed_mps, fix.heading_deg, fix.battery_pct, fix.seq),
            (None, None, None, None),
            "{extra}"
        );
    }
}

#[test]
fn a_fix_stamped_ahead_of_its_arrival_is_taken_as_of_its_arrival() {
    let ahead = now().as_millisecond() + 55_000;
    let payload = format!(r#"{{"ts":{ahead},"lat":51.9,"lon":4.4,"acc":5}}"#);
    let Message::Fix(fix) = decoder().decode(FIX, payload.as_bytes(), now()).unwrap() else {
        panic!("not a fix")
    };
    assert_eq!(fix.ts, now());
    // Beyond the tolerated skew it is refused, as before.
    let far = format!(
        r#"{{"ts":{},"lat":51.9,"lon":4.4,"acc":5}}"#,
        now().as_millisecond() + 61_000
    );
    assert_eq!(reason(FIX, far.as_bytes()), Reason::TimestampInFuture);
}

#[test]
fn every_fault_has_its_own_reason() {
    let ts = now().as_millisecond();
    let cases: Vec<(&str, String, Reason)> = vec![
        (FIX, "x".repeat(5000), Reason::PayloadTooLarge),
        (FIX, "{\"ts\":".into(), Reason::MalformedPayload),
        (FIX, "not json".into(), Reason::MalformedPayload),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":51.9,"acc":5}}"#),
            Reason::MissingField,
        ),
        (
            FIX,
            r#"{"lat":51.9,"lon":4.4,"acc":5}"#.into(),
            Reason::MissingField,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":"51.9","lon":4.4,"acc":5}}"#),
            Reason::InvalidField,
        ),
        (
            FIX,
            r#"{"ts":"yesterday","lat":51.9,"lon":4.4,"acc":5}"#.to_string(),
            Reason::InvalidField,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":1e999,"lon":4.4,"acc":5}}"#),
            Reason::NotFinite,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":NaN,"lon":4.4,"acc":5}}"#),
            Reason::NotFinite,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":91,"lon":4.4,"acc":5}}"#),
            Reason::LatitudeOutOfRange,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":51.9,"lon":-181,"acc":5}}"#),
            Reason::LongitudeOutOfRange,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":0,"lon":0,"acc":5}}"#),
            Reason::NullIsland,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.4,"acc":0}}"#),
            Reason::AccuracyNotPositive,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.4,"acc":-3}}"#),
            Reason::AccuracyNotPositive,
        ),
        (
            FIX,
            format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.4,"acc":250000}}"#),
            Reason::AccuracyAbsurd,
        ),
        (
            FIX,
            format!(
                r#"{{"ts":{},"lat":51.9,"lon":4.4,"acc":5}}"#,
                ts + 3_600_000
            ),
            Reason::TimestampInFuture,
        ),
        (
            FIX,
            format!(
                r#"{{"ts":{},"lat":51.9,"lon":4.4,"acc":5}}"#,
                ts - 40 * 86_400_000
            ),
            Reason::TimestampTooOld,
        ),
        (
            FIX,
            format!(r#"{{"device":"VIC-0001","ts":{ts},"lat":51.9,"lon":4.4,"acc":5}}"#),
            Reason::DeviceMismatch,
        ),
        (
            "kordon/v1/devices/OFF 1/fix",
            format!(r#"{{"ts":{ts},"lat":51.9,"lon":4.4,"acc":5}}"#),
            Reason::InvalidDeviceId,
        ),
        (
            "kordon/v1/devices/OFF-0001/telemetry",
            "{}".into(),
            Reason::UnknownTopic,
        ),
        (
            "kordon/v1/devices/OFF-0001/status",
            r#"{"strap":"tampered""#.into(),
            Reason::MalformedPayload,
        ),
        (
            "kordon/v1/devices/OFF-0001/status",
            format!(r#"{{"device":"OFF-0002","ts":{ts},"strap":"tampered"}}"#),
            Reason::DeviceMismatch,
        ),
        (
            "owntracks/bob/phone",
            format!(
                r#"{{"_type":"location","tst":{},"lat":51.9,"lon":4.4,"acc":5}}"#,
                ts / 1000
            ),
            Reason::UnknownDevice,
        ),
        (
            "owntracks/anna/phone",
            r#"{"_type":"transition","event":"enter"}"#.into(),
            Reason::UnsupportedMessage,
        ),
        (
            "owntracks/anna/phone/event",
            "{}".into(),
            Reason::UnsupportedMessage,
        ),
    ];
    for (topic, payload, expected) in cases {
        assert_eq!(
            reason(topic, payload.as_bytes()),
            expected,
            "{topic} {payload}"
        );
    }
}

#[test]
fn a_refusal_names_the_device_of_its_topic() {
    let refusal = decoder().decode(FIX, b"{oops", now()).unwrap_err();
    assert_eq!(
        refusal.device.as_ref().map(|d| d.as_str()),
        Some("OFF-0001")
    );
    let owntracks = decoder()
        .decode("owntracks/anna/phone", br#"{"_type":"location"}"#, now())
        .unwrap_err();
    assert_eq!(
        owntracks.device.as_ref().map(|d| d.as_str()),
        Some("VIC-0001")
    );
    // Also when refused for its range or time, not only its syntax (found
    // by the owntracks fuzz target).
    for payload in [
        r#"{"_type":"location","tst":1,"lat":51.9,"lon":4.4,"acc":5}"#,
        r#"{"_type":"location","tst":1795939200,"lat":51.9,"lon":200,"acc":5}"#,
    ] {
        let refusal = decoder()
            .decode("owntracks/anna/phone", payload.as_bytes(), now())
            .unwrap_err();
        assert_eq!(
            refusal.device.as_ref().map(|d| d.as_str()),
            Some("VIC-0001"),
            "{payload}"
        );
    }
}

#[test]
fn every_reason_has_a_distinct_code() {
    let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), Reason::ALL.len());
}
