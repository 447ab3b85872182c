//! A tamper alarm an operator resolved: the `resolve` record in the journal
//! and in the evidence export (`resolutions.csv`), verified like every other
//! row.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use kordon_core::{CaseId, ClearReason, DeviceId, Engine, EngineConfig, Phase, Status, StrapState};
use kordon_journal::evidence::{self, ExportRequest};
use kordon_journal::{Durability, Entry, Journal, Record};

const CASE: &str = "RTM-9";

fn t0() -> Timestamp {
    "2026-11-29T03:00:00Z".parse().unwrap()
}

fn case() -> kordon_core::Case {
    kordon_core::Case::from_json(
        r#"{
        "id": "RTM-9", "risk": "high",
        "offender": {"device": "OFF-9"},
        "protected": [{"id": "P1", "device": "VIC-9"}],
        "orders": [{
            "id": "home", "valid_from": "2026-01-01T00:00:00Z", "legal_basis": "test",
            "rule": {"type": "exclusion_zone", "warning_buffer_m": 100,
                     "geometry": {"type": "Point", "coordinates": [4.47, 51.92], "radius_m": 200}}
        }]
    }"#,
    )
    .unwrap()
}

fn for_case(record: Record) -> Entry {
    Entry::for_cases(record, vec![CaseId::from(CASE)])
}

/// A case whose bracelet reports its strap cut, then an operator resolving
/// the alarm: the records as kordon journals them. Returns the alert id.
fn journal_with_a_resolved_tamper(path: &Path) -> String {
    let (mut j, _) = Journal::open(path, Durability::Process).unwrap();
    let mut engine = Engine::new(EngineConfig::default());
    engine.upsert_case(case(), t0()).unwrap();
    j.append(&[for_case(Record::CaseUpsert {
        case: case(),
        at: t0(),
    })])
    .unwrap();
    let device = DeviceId::from("OFF-9");
    let mut status = Status::heartbeat(device.clone(), t0() + SignedDuration::from_secs(30));
    status.strap = Some(StrapState::Tampered);
    let opened = engine.ingest_status(&status).unwrap();
    assert_eq!(opened.len(), 1, "{opened:?}");
    let alert = opened[0].id.to_string();
    let mut batch = vec![for_case(Record::Status {
        status: status.clone(),
        received: status.ts,
    })];
    batch.extend(opened.iter().map(|e| {
        for_case(Record::Event {
            event: e.clone(),
            at: status.ts,
        })
    }));
    j.append(&batch).unwrap();

    let at = t0() + SignedDuration::from_secs(600);
    let cleared = engine.resolve_tamper(&device, at).unwrap();
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].phase, Phase::Cleared);
    assert_eq!(cleared[0].reason, Some(ClearReason::OperatorResolved));
    let mut batch = vec![for_case(Record::Resolve {
        alert: alert.clone(),
        device,
        operator: "monitoring room, \"night\" shift".into(),
        note: Some("strap checked at his address, replaced".into()),
        at,
        disposition: Some("bracelet_checked".into()),
    })];
    batch.extend(cleared.iter().map(|e| {
        for_case(Record::Event {
            event: e.clone(),
            at,
        })
    }));
    j.append(&batch).unwrap();
    alert
}

fn export(dir: &Path, journal: &Path) -> PathBuf {
    let out = dir.join("export");
    evidence::export(
        journal,
        &ExportRequest {
            case: CASE.into(),
            from: None,
            to: None,
        },
        &out,
    )
    .unwrap();
    out
}

#[test]
fn a_resolution_is_replayable_and_in_the_export_which_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let alert = journal_with_a_resolved_tamper(&path);

    let (j, _) = Journal::open(&path, Durability::Full).unwrap();
    let mut resolves = Vec::new();
    j.read_after(0, |stored| {
        if let Some(record @ Record::Resolve { .. }) = stored.record {
            resolves.push(record);
        }
        Ok(())
    })
    .unwrap();
    drop(j);
    assert_eq!(resolves.len(), 1, "{resolves:?}");
    let Record::Resolve {
        alert: named,
        device,
        ..
    } = &resolves[0]
    else {
        unreachable!()
    };
    assert_eq!(named, &alert);
    assert_eq!(device.as_str(), "OFF-9");
    assert_eq!(resolves[0].kind(), "resolve");

    let out = export(dir.path(), &path);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["kind"] == "resolve"));
    assert!(manifest["files"].get("resolutions.csv").is_some());
    let csv = std::fs::read_to_string(out.join("resolutions.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "seq,retired,at,alert,device,operator,note,disposition"
    );
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[1].contains(&alert), "{csv}");
    assert!(lines[1].contains("OFF-9"), "{csv}");
    assert!(lines[1].contains("replaced"), "{csv}");
    assert!(lines[1].ends_with(",bracelet_checked"), "{csv}");
    let v = evidence::verify(&out).unwrap();
    assert!(v.findings.is_empty(), "{:?}", v.findings);

    // Who resolved it is evidence: changing the name is caught.
    let edited = csv.replace("night", "day");
    std::fs::write(out.join("resolutions.csv"), edited).unwrap();
    let found: Vec<String> = evidence::verify(&out)
        .unwrap()
        .findings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("resolutions.csv: record ") && f.ends_with("edited")),
        "{found:?}"
    );
}
