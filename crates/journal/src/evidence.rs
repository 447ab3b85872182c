//! Evidence export and verification.
//!
//! An export holds one case's records over a time range: fixes and alert
//! events as CSV and GeoJSON, acknowledgements, resolutions, operators'
//! notes, escalations by hand, webhook delivery attempts and status
//! messages as CSV,
//! case changes as JSON lines, and `manifest.json` with, per record, its
//! number, digest and link in the case's hash chain, plus the hash of every
//! file. `verify` rebuilds each record from the exported rows, hashes it, and
//! walks the chain, so an edited value, a removed row or two rows swapped are
//! each reported with the record they concern. The chain proves integrity
//! relative to its head: keep the manifest's `chain.head` with the case file.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use kordon_core::CaseId;
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::record::{digest, hex, link, parse_hex, Hash, Record, GENESIS};

pub const FORMAT: &str = "kordon-evidence/1";

#[derive(Debug, Error)]
pub enum EvidenceError {
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Unreadable { path: PathBuf, detail: String },
    #[error("case {0} has no records in the journal for that time range")]
    Empty(String),
    #[error("record {seq} has fields the {file} layout does not carry: {detail} (a kordon bug; nothing was written)")]
    Layout {
        seq: u64,
        file: &'static str,
        detail: String,
    },
}

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub case: String,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub case: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    pub exported_at: Timestamp,
    /// The whole journal's last record and chain value when exported.
    pub journal_records: u64,
    pub journal_head: String,
    pub chain: ChainSummary,
    pub records: Vec<ManifestRecord>,
    /// SHA-256 of each data file.
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChainSummary {
    /// The case's link before the first exported record.
    pub anchor: String,
    /// The case's link after the last exported record.
    pub head: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestRecord {
    pub seq: u64,
    pub kind: String,
    pub digest: String,
    pub link: String,
    /// Retention retired its content; the digest still holds its place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Type {
    Str,
    Num,
    Int,
    Bool,
}

/// A column: its header, where it sits in the record's JSON, its type.
type Column = (&'static str, &'static str, Type);

struct Layout {
    kind: &'static str,
    csv: &'static str,
    geojson: Option<(&'static str, &'static str, &'static str)>,
    columns: &'static [Column],
}

const FIX_COLUMNS: &[Column] = &[
    ("received", "received", Type::Str),
    ("device", "fix.device", Type::Str),
    ("ts", "fix.ts", Type::Str),
    ("lat", "fix.lat", Type::Num),
    ("lon", "fix.lon", Type::Num),
    ("accuracy_m", "fix.accuracy_m", Type::Num),
    ("speed_mps", "fix.speed_mps", Type::Num),
    ("heading_deg", "fix.heading_deg", Type::Num),
    ("battery_pct", "fix.battery_pct", Type::Int),
    ("strap", "fix.strap", Type::Str),
    ("fix_seq", "fix.seq", Type::Int),
];

const EVENT_COLUMNS: &[Column] = &[
    ("decided_at", "at", Type::Str),
    ("id", "event.id", Type::Str),
    ("phase", "event.phase", Type::Str),
    ("kind", "event.kind", Type::Str),
    ("severity", "event.severity", Type::Str),
    ("case", "event.case", Type::Str),
    ("order", "event.order", Type::Str),
    ("device", "event.device", Type::Str),
    ("role", "event.role", Type::Str),
    ("onset", "event.onset", Type::Str),
    ("at", "event.at", Type::Str),
    ("certainty", "event.certainty", Type::Str),
    ("distance_m", "event.distance_m", Type::Num),
    ("offender_device", "event.offender.device", Type::Str),
    ("offender_lat", "event.offender.lat", Type::Num),
    ("offender_lon", "event.offender.lon", Type::Num),
    (
        "offender_accuracy_m",
        "event.offender.accuracy_m",
        Type::Num,
    ),
    ("offender_ts", "event.offender.ts", Type::Str),
    ("protected_device", "event.protected.device", Type::Str),
    ("protected_lat", "event.protected.lat", Type::Num),
    ("protected_lon", "event.protected.lon", Type::Num),
    (
        "protected_accuracy_m",
        "event.protected.accuracy_m",
        Type::Num,
    ),
    ("protected_ts", "event.protected.ts", Type::Str),
    ("reason", "event.reason", Type::Str),
];

const ACK_COLUMNS: &[Column] = &[
    ("at", "at", Type::Str),
    ("alert", "alert", Type::Str),
    ("operator", "operator", Type::Str),
    ("note", "note", Type::Str),
    ("police", "police", Type::Bool),
];

const RESOLVE_COLUMNS: &[Column] = &[
    ("at", "at", Type::Str),
    ("alert", "alert", Type::Str),
    ("device", "device", Type::Str),
    ("operator", "operator", Type::Str),
    ("note", "note", Type::Str),
    ("disposition", "disposition", Type::Str),
];

const NOTE_COLUMNS: &[Column] = &[
    ("at", "at", Type::Str),
    ("alert", "alert", Type::Str),
    ("operator", "operator", Type::Str),
    ("text", "text", Type::Str),
];

const ESCALATE_COLUMNS: &[Column] = &[
    ("at", "at", Type::Str),
    ("alert", "alert", Type::Str),
    ("operator", "operator", Type::Str),
    ("note", "note", Type::Str),
];

const WEBHOOK_COLUMNS: &[Column] = &[
    ("at", "at", Type::Str),
    ("alert", "alert", Type::Str),
    ("endpoint", "endpoint", Type::Str),
    ("message", "message", Type::Str),
    ("attempt", "attempt", Type::Int),
    ("status", "status", Type::Int),
    ("error", "error", Type::Str),
    ("delivered", "delivered", Type::Bool),
];

const STATUS_COLUMNS: &[Column] = &[
    ("received", "received", Type::Str),
    ("device", "status.device", Type::Str),
    ("ts", "status.ts", Type::Str),
    ("strap", "status.strap", Type::Str),
    ("battery_pct", "status.battery_pct", Type::Int),
    ("charging", "status.charging", Type::Bool),
    ("gps", "status.gps", Type::Str),
];

const LAYOUTS: &[Layout] = &[
    Layout {
        kind: "fix",
        csv: "fixes.csv",
        geojson: Some(("fixes.geojson", "fix.lat", "fix.lon")),
        columns: FIX_COLUMNS,
    },
    Layout {
        kind: "event",
        csv: "alerts.csv",
        geojson: Some(("alerts.geojson", "event.offender.lat", "event.offender.lon")),
        columns: EVENT_COLUMNS,
    },
    Layout {
        kind: "ack",
        csv: "acknowledgements.csv",
        geojson: None,
        columns: ACK_COLUMNS,
    },
    Layout {
        kind: "resolve",
        csv: "resolutions.csv",
        geojson: None,
        columns: RESOLVE_COLUMNS,
    },
    Layout {
        kind: "note",
        csv: "notes.csv",
        geojson: None,
        columns: NOTE_COLUMNS,
    },
    Layout {
        kind: "escalate",
        csv: "escalations.csv",
        geojson: None,
        columns: ESCALATE_COLUMNS,
    },
    Layout {
        kind: "webhook",
        csv: "webhook_deliveries.csv",
        geojson: None,
        columns: WEBHOOK_COLUMNS,
    },
    Layout {
        kind: "status",
        csv: "statuses.csv",
        geojson: None,
        columns: STATUS_COLUMNS,
    },
];

/// Case changes are whole documents: one JSON line each.
const CASE_CHANGES: &str = "case_changes.jsonl";

/// Writes the export into `out` (created if needed) and returns its manifest.
pub fn export(
    journal: &Path,
    request: &ExportRequest,
    out: &Path,
) -> Result<Manifest, EvidenceError> {
    let db_err = |source| EvidenceError::Journal {
        path: journal.to_path_buf(),
        source,
    };
    let conn =
        Connection::open_with_flags(journal, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db_err)?;
    let (journal_records, journal_head): (i64, Option<Vec<u8>>) = conn
        .query_row(
            "SELECT coalesce(max(seq), 0), (SELECT chain FROM records ORDER BY seq DESC LIMIT 1) FROM records",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(db_err)?;
    let from_ms = request.from.map_or(i64::MIN, |t| t.as_millisecond());
    let to_ms = request.to.map_or(i64::MAX, |t| t.as_millisecond());

    // Walk the case's chain back from its head: each link names the case's
    // previous record. The first record older than `from` is the anchor.
    let head = crate::case_marks::case_head(
        &conn,
        &CaseId::from(request.case.as_str()),
        journal_records as u64,
    )
    .map_err(db_err)?;
    let mut link_of = conn
        .prepare(
            "SELECT l.prev_seq, l.link, r.at_ms, r.kind, r.body, r.digest FROM case_links l \
             JOIN records r ON r.seq = l.seq WHERE l.seq = ?1 AND l.case_id = ?2",
        )
        .map_err(db_err)?;
    let mut rows = Vec::new();
    let mut anchor = GENESIS;
    let mut next = head as i64;
    while next > 0 {
        let (prev, link, at_ms, kind, body, stored_digest) = link_of
            .query_row(rusqlite::params![next, request.case], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<Vec<u8>>>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                ))
            })
            .map_err(db_err)?;
        if at_ms < from_ms {
            anchor = to_hash(link);
            break;
        }
        if at_ms <= to_ms {
            rows.push((next as u64, link, kind, body, stored_digest));
        }
        next = prev;
    }
    rows.reverse();
    if rows.is_empty() {
        return Err(EvidenceError::Empty(request.case.clone()));
    }

    let mut records = Vec::with_capacity(rows.len());
    let mut csv_rows: HashMap<&'static str, Vec<Vec<String>>> = HashMap::new();
    let mut features: HashMap<&'static str, Vec<Value>> = HashMap::new();
    let mut case_changes = String::new();
    for (seq, link, kind, body, stored_digest) in &rows {
        records.push(ManifestRecord {
            seq: *seq,
            kind: kind.clone(),
            digest: hex(&to_hash(stored_digest.clone())),
            link: hex(&to_hash(link.clone())),
            retired: body.is_none(),
        });
        if kind == "case_upsert" || kind == "case_remove" {
            if let Some(body) = body {
                let record: Value =
                    serde_json::from_slice(body).map_err(|e| EvidenceError::Layout {
                        seq: *seq,
                        file: CASE_CHANGES,
                        detail: e.to_string(),
                    })?;
                case_changes.push_str(
                    &serde_json::to_string(&serde_json::json!({"seq": seq, "record": record}))
                        .expect("json"),
                );
                case_changes.push('\n');
            }
            continue;
        }
        let Some(layout) = LAYOUTS.iter().find(|l| l.kind == kind) else {
            continue;
        };
        let Some(body) = body else {
            let mut row = vec![seq.to_string(), "true".into()];
            row.extend(layout.columns.iter().map(|_| String::new()));
            csv_rows.entry(layout.csv).or_default().push(row);
            continue;
        };
        let value: Value = serde_json::from_slice(body).map_err(|e| EvidenceError::Layout {
            seq: *seq,
            file: layout.csv,
            detail: e.to_string(),
        })?;
        let mut row = vec![seq.to_string(), "false".into()];
        let mut properties = Map::new();
        properties.insert("seq".into(), Value::from(*seq));
        for (name, path, _) in layout.columns {
            let cell = get(&value, path);
            row.push(match cell {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            });
            if let Some(v) = cell {
                properties.insert((*name).into(), v.clone());
            }
        }
        // The layout must carry every field, or verification would fail later.
        let rebuilt = rebuild(layout, &row[2..]).map_err(|detail| EvidenceError::Layout {
            seq: *seq,
            file: layout.csv,
            detail,
        })?;
        if digest(&rebuilt) != to_hash(stored_digest.clone()) {
            return Err(EvidenceError::Layout {
                seq: *seq,
                file: layout.csv,
                detail: String::from_utf8_lossy(body).into_owned(),
            });
        }
        csv_rows.entry(layout.csv).or_default().push(row);
        if let Some((file, lat, lon)) = layout.geojson {
            let geometry = match (get(&value, lat), get(&value, lon)) {
                (Some(lat), Some(lon)) => {
                    serde_json::json!({"type": "Point", "coordinates": [lon, lat]})
                }
                _ => Value::Null,
            };
            features.entry(file).or_default().push(serde_json::json!({
                "type": "Feature",
                "geometry": geometry,
                "properties": properties,
            }));
        }
    }

    fs::create_dir_all(out).map_err(|source| EvidenceError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut files = BTreeMap::new();
    for layout in LAYOUTS {
        let mut w = csv::Writer::from_writer(Vec::new());
        let header: Vec<&str> = ["seq", "retired"]
            .into_iter()
            .chain(layout.columns.iter().map(|c| c.0))
            .collect();
        w.write_record(&header).expect("in memory");
        for row in csv_rows.remove(layout.csv).unwrap_or_default() {
            w.write_record(&row).expect("in memory");
        }
        let bytes = w.into_inner().expect("in memory");
        files.insert(layout.csv.to_string(), write_file(out, layout.csv, &bytes)?);
        if let Some((file, _, _)) = layout.geojson {
            let collection = serde_json::json!({
                "type": "FeatureCollection",
                "features": features.remove(file).unwrap_or_default(),
            });
            let bytes = serde_json::to_vec_pretty(&collection).expect("json");
            files.insert(file.to_string(), write_file(out, file, &bytes)?);
        }
    }
    files.insert(
        CASE_CHANGES.to_string(),
        write_file(out, CASE_CHANGES, case_changes.as_bytes())?,
    );
    let manifest = Manifest {
        format: FORMAT.to_string(),
        case: request.case.clone(),
        from: request.from,
        to: request.to,
        exported_at: Timestamp::now(),
        journal_records: journal_records as u64,
        journal_head: journal_head.map(|h| hex(&to_hash(h))).unwrap_or_default(),
        chain: ChainSummary {
            anchor: hex(&anchor),
            head: records.last().map(|r| r.link.clone()).unwrap_or_default(),
        },
        records,
        files,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("json");
    write_file(out, "manifest.json", &bytes)?;
    Ok(manifest)
}

/// One thing wrong with an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    pub seq: Option<u64>,
    pub problem: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{}: record {seq}: {}", self.file, self.problem),
            None => write!(f, "{}: {}", self.file, self.problem),
        }
    }
}

/// What `verify` found: nothing wrong when `findings` is empty.
#[derive(Debug, Clone)]
pub struct Verification {
    pub records: usize,
    pub retired: usize,
    pub head: String,
    pub findings: Vec<Finding>,
}

/// Checks an export against its manifest and the manifest's chain.
pub fn verify(dir: &Path) -> Result<Verification, EvidenceError> {
    let manifest_path = dir.join("manifest.json");
    let manifest: Manifest =
        serde_json::from_slice(&read(&manifest_path)?).map_err(|e| EvidenceError::Unreadable {
            path: manifest_path.clone(),
            detail: e.to_string(),
        })?;
    let mut findings = Vec::new();
    let mut finding = |file: &str, seq: Option<u64>, problem: String| {
        findings.push(Finding {
            file: file.to_string(),
            seq,
            problem,
        })
    };
    if manifest.format != FORMAT {
        finding(
            "manifest.json",
            None,
            format!("format {} is not {FORMAT}", manifest.format),
        );
    }

    // The chain over the manifest's records.
    let mut previous = parse_hex(&manifest.chain.anchor).unwrap_or_else(|| {
        finding(
            "manifest.json",
            None,
            "the chain anchor is not a SHA-256 value".into(),
        );
        GENESIS
    });
    let mut last_seq = 0u64;
    let mut by_seq: HashMap<u64, &ManifestRecord> = HashMap::new();
    for r in &manifest.records {
        let (Some(d), Some(l)) = (parse_hex(&r.digest), parse_hex(&r.link)) else {
            finding(
                "manifest.json",
                Some(r.seq),
                "its digest or link is not a SHA-256 value".into(),
            );
            continue;
        };
        if r.seq <= last_seq {
            finding(
                "manifest.json",
                Some(r.seq),
                format!("it comes after record {last_seq}: records are out of order"),
            );
        }
        if link(&previous, r.seq, &d) != l {
            finding(
                "manifest.json",
                Some(r.seq),
                "its link does not follow from the record before it: a record was removed, inserted, moved or edited".into(),
            );
        }
        previous = l;
        last_seq = r.seq;
        by_seq.insert(r.seq, r);
    }
    if hex(&previous) != manifest.chain.head && !manifest.records.is_empty() {
        finding(
            "manifest.json",
            None,
            format!(
                "the chain ends at {} but the manifest's head is {}: records were removed from the end",
                hex(&previous),
                manifest.chain.head
            ),
        );
    }

    // Files as a whole.
    for (file, expected) in &manifest.files {
        match fs::read(dir.join(file)) {
            Ok(bytes) => {
                if hex(&digest(&bytes)) != *expected {
                    finding(
                        file,
                        None,
                        "the file differs from the one exported (its SHA-256 changed)".into(),
                    );
                }
            }
            Err(e) => finding(file, None, format!("cannot be read: {e}")),
        }
    }

    // Every row rebuilt and hashed.
    let mut retired = 0;
    for layout in LAYOUTS {
        let expected: Vec<u64> = manifest
            .records
            .iter()
            .filter(|r| r.kind == layout.kind)
            .map(|r| r.seq)
            .collect();
        retired += manifest
            .records
            .iter()
            .filter(|r| r.kind == layout.kind && r.retired)
            .count();
        if let Ok(bytes) = fs::read(dir.join(layout.csv)) {
            let rows = csv_rows(&bytes, layout);
            check_bodies(layout.csv, rows, &expected, &by_seq, &mut finding);
        }
        if let Some((file, lat, lon)) = layout.geojson {
            if let Ok(bytes) = fs::read(dir.join(file)) {
                match geojson_rows(&bytes, layout, lat, lon) {
                    Ok(rows) => check_bodies(file, rows, &expected, &by_seq, &mut finding),
                    Err(e) => finding(file, None, format!("is not GeoJSON: {e}")),
                }
            }
        }
    }
    if let Ok(bytes) = fs::read(dir.join(CASE_CHANGES)) {
        let expected: Vec<u64> = manifest
            .records
            .iter()
            .filter(|r| r.kind.starts_with("case_"))
            .map(|r| r.seq)
            .collect();
        let mut rows = Vec::new();
        for (i, line) in bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let parsed: Result<(u64, Option<Vec<u8>>), String> =
                serde_json::from_slice::<Value>(line)
                    .map_err(|e| e.to_string())
                    .and_then(|v| {
                        let seq = v["seq"].as_u64().ok_or("no seq")?;
                        let record: Record = serde_json::from_value(v["record"].clone())
                            .map_err(|e| e.to_string())?;
                        Ok((seq, Some(record.body())))
                    });
            rows.push(parsed.map_err(|e| format!("line {}: {e}", i + 1)));
        }
        check_bodies(CASE_CHANGES, rows, &expected, &by_seq, &mut finding);
    }
    Ok(Verification {
        records: manifest.records.len(),
        retired,
        head: manifest.chain.head.clone(),
        findings,
    })
}

type Row = Result<(u64, Option<Vec<u8>>), String>;

fn csv_rows(bytes: &[u8], layout: &Layout) -> Vec<Row> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let header_ok = reader
        .headers()
        .map(|h| {
            h.iter().collect::<Vec<_>>()
                == ["seq", "retired"]
                    .into_iter()
                    .chain(layout.columns.iter().map(|c| c.0))
                    .collect::<Vec<_>>()
        })
        .unwrap_or(false);
    if !header_ok {
        return vec![Err("its header is not the exported one".into())];
    }
    reader
        .records()
        .enumerate()
        .map(|(i, row)| {
            let row = row.map_err(|e| format!("row {}: {e}", i + 1))?;
            let seq: u64 = row[0]
                .parse()
                .map_err(|_| format!("row {}: seq is not a number", i + 1))?;
            if &row[1] == "true" {
                return Ok((seq, None));
            }
            let cells: Vec<String> = row.iter().skip(2).map(str::to_string).collect();
            rebuild(layout, &cells)
                .map(|body| (seq, Some(body)))
                .map_err(|e| format!("record {seq}: {e}"))
        })
        .collect()
}

fn geojson_rows(bytes: &[u8], layout: &Layout, lat: &str, lon: &str) -> Result<Vec<Row>, String> {
    let collection: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let features = collection["features"].as_array().ok_or("no features")?;
    Ok(features
        .iter()
        .map(|f| {
            let p = &f["properties"];
            let seq = p["seq"].as_u64().ok_or("a feature without seq")?;
            let mut value = Value::Object(Map::new());
            for (name, path, _) in layout.columns {
                if let Some(v) = p.get(*name) {
                    set(&mut value, path, v.clone());
                }
            }
            // The position is read from the geometry, so moving the point is caught.
            if let Some(c) = f["geometry"]["coordinates"].as_array() {
                set(&mut value, lon, c.first().cloned().unwrap_or(Value::Null));
                set(&mut value, lat, c.get(1).cloned().unwrap_or(Value::Null));
            }
            set(&mut value, "kind", Value::from(layout.kind));
            let record: Record =
                serde_json::from_value(value).map_err(|e| format!("record {seq}: {e}"))?;
            Ok((seq, Some(record.body())))
        })
        .collect())
}

fn check_bodies(
    file: &str,
    rows: Vec<Row>,
    expected: &[u64],
    by_seq: &HashMap<u64, &ManifestRecord>,
    finding: &mut impl FnMut(&str, Option<u64>, String),
) {
    let mut seen = Vec::new();
    let mut last = 0u64;
    for row in rows {
        let (seq, body) = match row {
            Ok(r) => r,
            Err(e) => {
                finding(file, None, e);
                continue;
            }
        };
        if seq <= last {
            finding(
                file,
                Some(seq),
                format!("it comes after record {last}: rows are out of order (swapped or moved)"),
            );
        }
        last = last.max(seq);
        seen.push(seq);
        let Some(entry) = by_seq.get(&seq) else {
            finding(
                file,
                Some(seq),
                "it is not in the manifest: an added row".into(),
            );
            continue;
        };
        match body {
            Some(body) => {
                if entry.retired {
                    finding(
                        file,
                        Some(seq),
                        "the manifest says retired, the file has content".into(),
                    );
                } else if hex(&digest(&body)) != entry.digest {
                    finding(
                        file,
                        Some(seq),
                        "its content does not match its digest: edited".into(),
                    );
                }
            }
            None if !entry.retired => finding(
                file,
                Some(seq),
                "marked retired, but the manifest has its content".into(),
            ),
            None => {}
        }
    }
    seen.sort_unstable();
    for seq in expected {
        if seen.binary_search(seq).is_err() {
            finding(file, Some(*seq), "it is missing: a deleted row".into());
        }
    }
}

/// Builds a record's body from its cells, in the layout's column order.
fn rebuild(layout: &Layout, cells: &[String]) -> Result<Vec<u8>, String> {
    let mut value = Value::Object(Map::new());
    set(&mut value, "kind", Value::from(layout.kind));
    for ((name, path, ty), cell) in layout.columns.iter().zip(cells) {
        if cell.is_empty() {
            continue;
        }
        let v = match ty {
            Type::Str => Value::String(cell.clone()),
            Type::Num => cell
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .ok_or_else(|| format!("{name} `{cell}` is not a number"))?,
            Type::Int => Value::from(
                cell.parse::<u64>()
                    .map_err(|_| format!("{name} `{cell}` is not a whole number"))?,
            ),
            Type::Bool => Value::Bool(
                cell.parse::<bool>()
                    .map_err(|_| format!("{name} `{cell}` is not true or false"))?,
            ),
        };
        set(&mut value, path, v);
    }
    let record: Record = serde_json::from_value(value).map_err(|e| e.to_string())?;
    Ok(record.body())
}

fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

fn set(value: &mut Value, path: &str, v: Value) {
    let mut at = value;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        let Value::Object(map) = at else { return };
        if keys.peek().is_none() {
            map.insert(key.to_string(), v);
            return;
        }
        at = map
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn to_hash(bytes: Vec<u8>) -> Hash {
    let mut h = [0u8; 32];
    if bytes.len() == 32 {
        h.copy_from_slice(&bytes);
    }
    h
}

fn read(path: &Path) -> Result<Vec<u8>, EvidenceError> {
    fs::read(path).map_err(|source| EvidenceError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<String, EvidenceError> {
    let path = dir.join(name);
    fs::write(&path, bytes).map_err(|source| EvidenceError::Io { path, source })?;
    Ok(hex(&digest(bytes)))
}
