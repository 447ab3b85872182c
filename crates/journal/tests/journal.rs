//! The journal on disk: appends survive reopening, damage is found and named,
//! truncation keeps the good part, retention keeps evidence, and evidence
//! exports catch every kind of tampering.

use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use kordon_core::{CaseId, DeviceId, Engine, EngineConfig, Event, Fix};
use kordon_journal::evidence::{self, ExportRequest};
use kordon_journal::{Durability, Entry, Journal, JournalError, Reader, Record};

const CASE: &str = "RTM-1";

fn t0() -> Timestamp {
    "2026-11-29T03:00:00Z".parse().unwrap()
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

fn case() -> kordon_core::Case {
    kordon_core::Case::from_json(
        r#"{
        "id": "RTM-1", "risk": "high",
        "offender": {"device": "OFF-1"},
        "protected": [{"id": "P1", "device": "VIC-1"}],
        "orders": [{
            "id": "home", "valid_from": "2026-01-01T00:00:00Z", "legal_basis": "test",
            "rule": {"type": "exclusion_zone", "warning_buffer_m": 100,
                     "geometry": {"type": "Point", "coordinates": [4.47, 51.92], "radius_m": 200}}
        }]
    }"#,
    )
    .unwrap()
}

fn fix_entry(n: i64, lat: f64, lon: f64) -> Entry {
    let ts = t0() + secs(n * 30);
    Entry::for_cases(
        Record::Fix {
            fix: Fix::new(DeviceId::from("OFF-1"), ts, lat, lon, 5.5).with_seq(n as u64),
            received: ts + SignedDuration::from_millis(250),
        },
        vec![CaseId::from(CASE)],
    )
}

fn event_entries(events: &[Event], at: Timestamp) -> Vec<Entry> {
    events
        .iter()
        .map(|e| {
            Entry::for_cases(
                Record::Event {
                    event: e.clone(),
                    at,
                },
                vec![e.case.clone()],
            )
        })
        .collect()
}

/// A journal with a case, 20 fixes walking into the zone and out, the
/// events they caused, and an acknowledgement.
fn journal_with_a_breach(path: &Path) -> Journal {
    let (mut j, _) = Journal::open(path, Durability::Process).unwrap();
    let mut engine = Engine::new(EngineConfig::default());
    engine.upsert_case(case(), t0()).unwrap();
    j.append(&[Entry::for_cases(
        Record::CaseUpsert {
            case: case(),
            at: t0(),
        },
        vec![CaseId::from(CASE)],
    )])
    .unwrap();
    for n in 1..=20 {
        // 2 km south, in, and away again.
        let lat = if (8..12).contains(&n) { 51.92 } else { 51.90 };
        let entry = fix_entry(n, lat, 4.47);
        let Record::Fix { fix, received } = &entry.record else {
            unreachable!()
        };
        let events = engine.ingest_fix(fix).unwrap().events;
        let mut batch = vec![entry.clone()];
        batch.extend(event_entries(&events, *received));
        j.append(&batch).unwrap();
    }
    j.append(&[Entry::for_cases(
        Record::Ack {
            alert: "x".into(),
            operator: "op-7".into(),
            note: Some("unit sent".into()),
            at: t0() + secs(400),
            police: false,
        },
        vec![CaseId::from(CASE)],
    )])
    .unwrap();
    j
}

#[test]
fn records_survive_reopening_with_their_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let j = journal_with_a_breach(&path);
    let head = j.head();
    drop(j);
    let (j, verified) = Journal::open(&path, Durability::Full).unwrap();
    assert_eq!(j.head(), head);
    assert_eq!(verified.records, head.0);
    let mut kinds = Vec::new();
    j.read_after(0, |s| {
        kinds.push(s.record.unwrap().kind());
        Ok(())
    })
    .unwrap();
    assert_eq!(kinds.first(), Some(&"case_upsert"));
    assert!(
        kinds.contains(&"event"),
        "the breach was journaled: {kinds:?}"
    );
    assert_eq!(kinds.len() as u64, head.0);
}

fn flip_byte_in(path: &Path, needle: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the needle is in the file");
    bytes[at + needle.len() - 1] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_is_found_and_named_and_truncation_keeps_the_good_part() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut j = journal_with_a_breach(&path);
    let before = j.head().0;
    // One fix with a recognisable coordinate, and a few records after it.
    j.append(&[fix_entry(100, 51.123456789, 4.47)]).unwrap();
    let damaged_seq = j.head().0;
    for n in 101..105 {
        j.append(&[fix_entry(n, 51.90, 4.47)]).unwrap();
    }
    j.checkpoint().unwrap();
    drop(j);
    flip_byte_in(&path, b"51.123456789");

    let err = Journal::open(&path, Durability::Full)
        .err()
        .expect("refused");
    match &err {
        JournalError::Broken { seq, last_good, .. } => {
            assert_eq!((*seq, *last_good), (damaged_seq, before));
        }
        other => panic!("expected a broken chain, got {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&format!("damaged at record {damaged_seq}"))
            && message.contains("--truncate-journal"),
        "{message}"
    );

    let (mut j, verified, truncation) = Journal::open_truncating(&path, Durability::Full).unwrap();
    let truncation = truncation.expect("it truncated");
    assert_eq!((truncation.kept, verified.records), (before, before));
    assert!(truncation.damaged_copy.exists(), "the damaged file is kept");
    // And it carries on from there.
    j.append(&[fix_entry(200, 51.90, 4.47)]).unwrap();
    drop(j);
    assert_eq!(
        Journal::open(&path, Durability::Full).unwrap().1.records,
        before + 1
    );
}

#[test]
fn a_truncated_last_page_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut j = journal_with_a_breach(&path);
    for n in 100..600 {
        j.append(&[fix_entry(n, 51.90, 4.47)]).unwrap();
    }
    let total = j.head().0;
    j.checkpoint().unwrap();
    drop(j);
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 1000).unwrap();
    drop(file);

    let err = Journal::open(&path, Durability::Full)
        .err()
        .expect("refused");
    let JournalError::Broken { seq, last_good, .. } = &err else {
        panic!("expected a broken journal, got {err}");
    };
    assert!(*last_good < total && *seq == last_good + 1, "{err}");
    let (_, verified, truncation) = Journal::open_truncating(&path, Durability::Full).unwrap();
    assert_eq!(verified.records, truncation.unwrap().kept);
}

#[test]
fn an_edited_digest_or_chain_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    drop(journal_with_a_breach(&path));
    // Someone with SQLite rewrites a fix and recomputes its digest but
    // cannot recompute the chain without rewriting every later record.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let body: Vec<u8> = conn
        .query_row("SELECT body FROM records WHERE seq = 5", [], |r| r.get(0))
        .unwrap();
    let edited = String::from_utf8(body).unwrap().replace("51.9", "51.8");
    let digest = kordon_journal::record::digest(edited.as_bytes());
    conn.execute(
        "UPDATE records SET body = ?1, digest = ?2 WHERE seq = 5",
        rusqlite::params![edited.as_bytes(), &digest[..]],
    )
    .unwrap();
    drop(conn);
    let err = Journal::open(&path, Durability::Full)
        .err()
        .expect("refused");
    assert!(matches!(err, JournalError::Broken { seq: 5, .. }), "{err}");
}

#[test]
fn retention_retires_old_fixes_but_keeps_those_around_an_episode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut j = journal_with_a_breach(&path);
    // Fixes a day later, far from any episode.
    for n in 3000..3010 {
        j.append(&[fix_entry(n, 51.90, 4.47)]).unwrap();
    }
    let cutoff = t0() + secs(3005 * 30);
    let head = j.head().0;
    // Margin of 60 s: fixes 30 s apart next to the episode stay.
    let retired = j.retire(cutoff, 60, head, cutoff).unwrap();
    assert!(retired >= 10, "{retired}");
    let mut kept_fixes = 0;
    let mut retired_seen = 0;
    j.read_after(0, |s| {
        match s.record {
            Some(Record::Fix { .. }) => kept_fixes += 1,
            None => retired_seen += 1,
            _ => {}
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(retired_seen, retired);
    // The fixes in the zone (8..12) and the ones beside them stay; the ones
    // newer than the cutoff stay.
    assert!(kept_fixes >= 4 + 2 + 5, "{kept_fixes}");
    drop(j);
    // The chain still verifies, and the pass is on record.
    let (j, _) = Journal::open(&path, Durability::Full).unwrap();
    let mut last = None;
    j.read_after(0, |s| {
        last = s.record;
        Ok(())
    })
    .unwrap();
    assert!(matches!(last, Some(Record::Retention { retired: r, .. }) if r == retired));
}

fn export(dir: &Path, journal: &Path) -> std::path::PathBuf {
    let out = dir.join("export");
    let manifest = evidence::export(
        journal,
        &ExportRequest {
            case: CASE.into(),
            from: None,
            to: None,
        },
        &out,
    )
    .unwrap();
    assert!(manifest.records.iter().any(|r| r.kind == "event"));
    out
}

fn findings(out: &Path) -> Vec<String> {
    evidence::verify(out)
        .unwrap()
        .findings
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn edit_lines(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    edit(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn an_untouched_export_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    drop(journal_with_a_breach(&path));
    let out = export(dir.path(), &path);
    let v = evidence::verify(&out).unwrap();
    assert!(v.findings.is_empty(), "{:?}", v.findings);
    assert!(v.records > 20);
    for file in [
        "fixes.csv",
        "fixes.geojson",
        "alerts.csv",
        "alerts.geojson",
        "acknowledgements.csv",
        "manifest.json",
    ] {
        assert!(out.join(file).exists(), "{file}");
    }
}

/// The journal keeps times in milliseconds; a report asked for in the
/// same millisecond as an acknowledgement must still see it (the deadline
/// report's test met this now and then).
#[test]
fn a_record_of_the_last_millisecond_before_the_end_is_in_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (mut j, _) = Journal::open(&path, Durability::Process).unwrap();
    let at = t0() + SignedDuration::from_micros(100_200);
    j.append(&[Entry::for_cases(
        Record::Ack {
            alert: "x".into(),
            operator: "op-7".into(),
            note: None,
            at,
            police: false,
        },
        vec![CaseId::from(CASE)],
    )])
    .unwrap();
    drop(j);
    let reader = Reader::open(&path).unwrap();
    let to = at + SignedDuration::from_micros(300);
    let seen = reader.timeline_between(t0(), to).unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    // A record at or after the end stays out.
    assert!(reader.timeline_between(t0(), at).unwrap().is_empty());
}

/// Where a case's chain ends is derived from its links, never stored per
/// commit; a journal from before that kept a table of them, which goes.
#[test]
fn an_export_runs_to_the_cases_newest_record_even_from_an_old_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (newest, _) = journal_with_a_breach(&path).head();
    let old = rusqlite::Connection::open(&path).unwrap();
    old.execute_batch(
        "CREATE TABLE case_heads (case_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, link BLOB NOT NULL) WITHOUT ROWID;
         INSERT INTO case_heads VALUES ('RTM-1', 1, x'00');",
    )
    .unwrap();
    drop(old);
    let (j, _) = Journal::open(&path, Durability::Process).unwrap();
    drop(j);
    let tables: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'case_heads'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    let out = export(dir.path(), &path);
    let manifest: evidence::Manifest =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let last = manifest.records.last().unwrap();
    assert_eq!((last.seq, last.kind.as_str()), (newest, "ack"));
    assert!(findings(&out).is_empty(), "{:?}", findings(&out));
}

#[test]
fn verify_names_an_edited_coordinate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    drop(journal_with_a_breach(&path));
    let out = export(dir.path(), &path);
    let mut seq = String::new();
    edit_lines(&out.join("fixes.csv"), |lines| {
        // Move the 9th fix (in the zone) 1 m north.
        let cells: Vec<&str> = lines[9].split(',').collect();
        seq = cells[0].to_string();
        lines[9] = lines[9].replacen(",51.92,", ",51.92001,", 1);
    });
    let found = findings(&out);
    assert!(
        found.iter().any(|f| f
            == &format!("fixes.csv: record {seq}: its content does not match its digest: edited")),
        "{found:?}"
    );

    // The same in the GeoJSON: the point moved.
    let out = export(dir.path(), &path);
    let text = std::fs::read_to_string(out.join("fixes.geojson")).unwrap();
    std::fs::write(
        out.join("fixes.geojson"),
        text.replacen("51.92\n", "51.93\n", 1),
    )
    .unwrap();
    let found = findings(&out);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("fixes.geojson: record ") && f.ends_with("edited")),
        "{found:?}"
    );
}

#[test]
fn verify_names_a_deleted_row_and_two_swapped_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    drop(journal_with_a_breach(&path));

    let out = export(dir.path(), &path);
    let mut deleted = String::new();
    edit_lines(&out.join("alerts.csv"), |lines| {
        deleted = lines.remove(1).split(',').next().unwrap().to_string();
    });
    let found = findings(&out);
    assert!(
        found.contains(&format!(
            "alerts.csv: record {deleted}: it is missing: a deleted row"
        )),
        "{found:?}"
    );

    let out = export(dir.path(), &path);
    let mut second = String::new();
    edit_lines(&out.join("fixes.csv"), |lines| {
        lines.swap(3, 4);
        second = lines[4].split(',').next().unwrap().to_string();
    });
    let found = findings(&out);
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("fixes.csv: record ") && f.contains("out of order")),
        "{found:?}"
    );
    let _ = second;

    // Removing the row from the manifest as well breaks the chain there.
    let out = export(dir.path(), &path);
    let manifest_path = out.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let removed = manifest["records"].as_array_mut().unwrap().remove(5);
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let found = findings(&out);
    let next = manifest["records"][5]["seq"].as_u64().unwrap();
    assert!(
        found.iter().any(|f| f.starts_with(&format!(
            "manifest.json: record {next}: its link does not follow"
        ))),
        "removed {removed}: {found:?}"
    );
}

#[test]
fn the_writer_commits_in_groups_and_hands_on_in_order() {
    use kordon_journal::{Durable, GroupCommit, Job, SnapshotStore, Writer};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (journal, _) = Journal::open(&path, Durability::Process).unwrap();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let writer = Writer::spawn(
        journal,
        SnapshotStore::new(dir.path()),
        GroupCommit::default(),
        move |durable, thens: Vec<u32>| {
            assert_eq!(durable, Durable::Yes);
            done_tx.send(thens).unwrap();
            Vec::new()
        },
    );
    let jobs = writer.sender();
    for n in 0..2000u32 {
        let entries = if n % 10 == 0 {
            Vec::new() // a refusal: nothing to journal, still in order
        } else {
            vec![fix_entry(i64::from(n), 51.9, 4.47)]
        };
        jobs.send(Job::Append { entries, then: n }).unwrap();
        if n == 1000 {
            jobs.send(Job::Snapshot {
                state: kordon_journal::PendingState::ready(b"state".to_vec()),
            })
            .unwrap();
        }
    }
    drop(jobs);
    let journal = writer.finish();
    let batches: Vec<Vec<u32>> = done_rx.try_iter().collect();
    let order: Vec<u32> = batches.iter().flatten().copied().collect();
    assert_eq!(order, (0..2000).collect::<Vec<_>>());
    assert!(batches.len() < 2000, "some commits carried several jobs");
    assert_eq!(journal.head().0, 1800);
    let snapshot = SnapshotStore::new(dir.path()).load(|_| Ok(())).unwrap();
    // Written after everything handed over before it was committed.
    assert_eq!(snapshot.seq, 900);
    assert_eq!(Some(snapshot.chain), journal.chain_at(900).unwrap());
}

/// A commit that fails (here: another connection holds the write lock past
/// SQLite's busy timeout) is retried until it succeeds: no record is
/// skipped, what the owner holds back comes again with the successful
/// commit, and no snapshot is taken of a state the disk does not have.
#[test]
fn a_failed_commit_is_retried_and_no_record_is_skipped() {
    use kordon_journal::{Durable, GroupCommit, Job, SnapshotStore, Writer};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (journal, _) = Journal::open(&path, Durability::Process).unwrap();
    let intruder = rusqlite::Connection::open(&path).unwrap();
    intruder.execute_batch("BEGIN IMMEDIATE").unwrap();

    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let writer = Writer::spawn(
        journal,
        SnapshotStore::new(dir.path()),
        GroupCommit::default(),
        move |durable, thens: Vec<u32>| {
            done_tx.send((durable.clone(), thens.clone())).unwrap();
            match durable {
                Durable::Yes => Vec::new(),
                // Even numbers stand for acknowledgements: they wait.
                Durable::No(_) => thens.into_iter().filter(|n| n % 2 == 0).collect(),
            }
        },
    );
    let jobs = writer.sender();
    for n in 0..10u32 {
        let entries = vec![fix_entry(i64::from(n), 51.9, 4.47)];
        jobs.send(Job::Append { entries, then: n }).unwrap();
    }
    // The state after ten records, none of which can be on disk yet.
    jobs.send(Job::Snapshot {
        state: kordon_journal::PendingState::ready(b"after 10".to_vec()),
    })
    .unwrap();
    let first = done_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap();
    assert!(
        matches!(&first.0, Durable::No(reason) if reason.contains("locked")),
        "{first:?}"
    );
    intruder.execute_batch("ROLLBACK").unwrap();
    drop(intruder);
    for n in 10..20u32 {
        let entries = vec![fix_entry(i64::from(n), 51.9, 4.47)];
        jobs.send(Job::Append { entries, then: n }).unwrap();
    }
    drop(jobs);
    let journal = writer.finish();

    let outcomes: Vec<(Durable, Vec<u32>)> =
        std::iter::once(first).chain(done_rx.try_iter()).collect();
    // What went on: after a failed commit only what the owner let go (odd
    // numbers), after a successful one everything it was given.
    let mut went_on: Vec<u32> = outcomes
        .iter()
        .flat_map(|(durable, thens)| {
            thens
                .iter()
                .copied()
                .filter(move |n| *durable == Durable::Yes || n % 2 == 1)
        })
        .collect();
    let acknowledged: Vec<u32> = went_on.iter().copied().filter(|n| n % 2 == 0).collect();
    assert_eq!(
        acknowledged,
        (0..20).step_by(2).collect::<Vec<_>>(),
        "held acknowledgements go on in order, once, after their records are on disk"
    );
    let first_success = outcomes
        .iter()
        .find(|(durable, _)| *durable == Durable::Yes)
        .unwrap();
    assert_eq!(first_success.1[..5], [0, 2, 4, 6, 8]);
    went_on.sort_unstable();
    assert_eq!(went_on, (0..20).collect::<Vec<_>>(), "everything once");

    // Every record, in order, none skipped.
    assert_eq!(journal.head().0, 20);
    let mut seen = Vec::new();
    journal
        .read_after(0, |stored| {
            if let Some(Record::Fix { fix, .. }) = stored.record {
                seen.push(fix.seq);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, (0..20).map(Some).collect::<Vec<_>>());
    // Taken only once the ten records it reflects were on disk: one taken
    // before would have recovery replay them on top of it.
    if let Some(snapshot) = SnapshotStore::new(dir.path()).load(|_| Ok(())) {
        assert_eq!((snapshot.seq, &snapshot.state[..]), (10, &b"after 10"[..]));
    }
}

/// A commit that fails halfway (here: the second link of one record to the
/// same case breaks the links' key) leaves every case's chain where the
/// last commit left it: the next commit links on from there, and the
/// journal verifies when opened again.
#[test]
fn a_commit_that_fails_halfway_leaves_the_case_chains_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (mut j, _) = Journal::open(&path, Durability::Process).unwrap();
    j.append(&[fix_entry(1, 51.9, 4.47)]).unwrap();
    let committed = j.head();

    let mut twice = fix_entry(3, 51.9, 4.47);
    twice.cases = [CaseId::from(CASE), CaseId::from(CASE)]
        .into_iter()
        .collect();
    let mut both = fix_entry(2, 51.9, 4.47);
    both.cases.push(CaseId::from("RTM-2"));
    let failed = j.append(&[both.clone(), twice]);
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(j.head(), committed);

    j.append(&[both, fix_entry(4, 51.9, 4.47)]).unwrap();
    let head = j.head();
    drop(j);
    let (j, verified) = Journal::open(&path, Durability::Process)
        .expect("every case's chain links on from its last committed record");
    assert_eq!((j.head(), verified.records), (head, 3));
}

/// Fixes 1..=n, every third also for a second case: more records and links
/// in one commit than one multi-row insert takes, and a rest.
fn many_fixes(n: i64) -> Vec<Entry> {
    (1..=n)
        .map(|k| {
            let mut entry = fix_entry(k, 51.9 + k as f64 * 1e-5, 4.47);
            if k % 3 == 0 {
                entry.cases.push(CaseId::from("RTM-2"));
            }
            entry
        })
        .collect()
}

/// A commit's rows go in many to a statement (`store/rows.rs`): every
/// record of a long commit is there as it was handed over, under its own
/// number, and both chains verify.
#[test]
fn a_long_commit_keeps_every_record_and_both_chains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (mut j, _) = Journal::open(&path, Durability::Process).unwrap();
    let (entries, more) = (many_fixes(75), many_fixes(3));
    j.append(&entries).unwrap();
    j.append(&more).unwrap();
    drop(j);
    let (j, verified) = Journal::open(&path, Durability::Process).unwrap();
    assert_eq!(verified.records, 78);
    let mut read = Vec::new();
    j.read_after(0, |s| {
        read.push((s.seq, s.record));
        Ok(())
    })
    .unwrap();
    let expected: Vec<_> = entries.iter().chain(&more).collect();
    assert_eq!(read.len(), expected.len());
    for ((seq, record), (k, entry)) in read.iter().zip(expected.iter().enumerate()) {
        assert_eq!(*seq, k as u64 + 1);
        assert_eq!(record.as_ref(), Some(&entry.record), "record {seq}");
    }
    let out = dir.path().join("export");
    let request = ExportRequest {
        case: "RTM-2".into(),
        from: None,
        to: None,
    };
    let manifest = evidence::export(&path, &request, &out).unwrap();
    assert_eq!(manifest.records.len(), 26, "every third of 75, and of 3");
    assert!(findings(&out).is_empty(), "{:?}", findings(&out));
}

/// A conflict after some of a commit's rows were inserted undoes all of
/// them: the journal goes on from its last commit.
#[test]
fn a_conflict_late_in_a_long_commit_undoes_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let (mut j, _) = Journal::open(&path, Durability::Process).unwrap();
    j.append(&many_fixes(2)).unwrap();
    let committed = j.head();
    let mut entries = many_fixes(60);
    entries[49].cases.push(CaseId::from(CASE));
    assert!(j.append(&entries).is_err());
    assert_eq!(j.head(), committed);
    entries[49].cases.pop();
    j.append(&entries).unwrap();
    drop(j);
    let (_, verified) = Journal::open(&path, Durability::Process).unwrap();
    assert_eq!(verified.records, 62);
}
