//! The journal file: an append-only SQLite table of records, each with the
//! SHA-256 digest of its body and a hash chain over all records, plus a
//! second chain per case (the links an evidence export carries).
//!
//! Records and links are written in record order, so a commit appends
//! pages rather than touching pages all over the file: a case's links point
//! back to the case's previous record (`prev_seq`). Where each case's chain
//! ends is kept in memory while appending; readers find a case's records
//! from sparse marks ([`crate::case_marks`]), never from an index entry per
//! link (which made every fix write a page of its own).
//!
//! Opening a journal verifies every record and both chains before anything
//! is appended: a journal kordon cannot prove intact is refused with the
//! number of the first bad record, unless the operator asks to keep the good
//! part ([`Journal::open_truncating`]), which sets the damaged file aside
//! rather than deleting it: it is evidence too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use kordon_core::CaseId;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use thiserror::Error;
use tracing::{info, warn};

use crate::case_marks::{self, CaseHead, CaseHeads};
use crate::record::{digest, link, Hash, Record, GENESIS};

mod rows;

/// How hard a commit pushes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync on every commit: survives power loss (SQLite `synchronous=FULL`).
    #[default]
    Full,
    /// Survives a crash of kordon, not of the machine (`synchronous=NORMAL`).
    Process,
}

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "journal {path} is damaged at record {seq}: {problem}. The last good record is {last_good}. \
         kordon will not run on a journal it cannot verify; start it with --truncate-journal to keep \
         records 1 to {last_good} (the damaged file is kept beside the journal)"
    )]
    Broken {
        path: PathBuf,
        seq: u64,
        problem: String,
        last_good: u64,
    },
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One record to append and the cases whose chains it joins: almost
/// always one, kept inline (an allocation per fix on the engine's thread,
/// freed on the journal's, otherwise).
#[derive(Debug, Clone)]
pub struct Entry {
    pub record: Record,
    pub cases: SmallVec<[CaseId; 1]>,
}

impl Entry {
    pub fn new(record: Record) -> Self {
        Entry {
            record,
            cases: SmallVec::new(),
        }
    }

    pub fn for_cases(record: Record, cases: impl IntoIterator<Item = CaseId>) -> Self {
        Entry {
            record,
            cases: cases.into_iter().collect(),
        }
    }
}

/// What opening found, for the log and the metrics.
#[derive(Debug, Clone)]
pub struct Verified {
    pub records: u64,
    pub head: Hash,
    pub took: std::time::Duration,
}

/// What [`Journal::open_truncating`] did to a damaged journal.
#[derive(Debug, Clone)]
pub struct Truncation {
    pub kept: u64,
    pub damaged_copy: PathBuf,
    pub problem: String,
}

/// A stored record as read back.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: u64,
    /// `None` once retention retired it.
    pub record: Option<Record>,
    pub digest: Hash,
}

pub struct Journal {
    conn: Connection,
    path: PathBuf,
    last_seq: u64,
    head: Hash,
    case_heads: CaseHeads,
    /// Fixes up to here have been judged by retention (this process).
    retention_floor: u64,
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS records (
        seq    INTEGER PRIMARY KEY,
        at_ms  INTEGER NOT NULL,
        kind   TEXT NOT NULL,
        device TEXT,
        body   BLOB,
        digest BLOB NOT NULL,
        chain  BLOB NOT NULL
    );
    -- Alert events are few; retention reads them all, fixes it reads by range.
    CREATE INDEX IF NOT EXISTS records_events ON records(seq) WHERE kind = 'event';
    -- What people see of a case (crate::reader): its timeline, and its
    -- devices' fixes by time for playback.
    CREATE INDEX IF NOT EXISTS records_timeline ON records(seq) WHERE {ON_TIMELINE};
    -- The police's CAP messages and their webhook deliveries, read back at
    -- start (crate::reader) for the Atom feed and deliveries to resume.
    CREATE INDEX IF NOT EXISTS records_dispatch ON records(seq)
        WHERE kind IN ('outbound', 'webhook');
    CREATE TABLE IF NOT EXISTS case_links (
        seq      INTEGER NOT NULL,
        case_id  TEXT NOT NULL,
        prev_seq INTEGER NOT NULL,
        link     BLOB NOT NULL,
        PRIMARY KEY (seq, case_id)
    ) WITHOUT ROWID;
    -- Where reading a case's chain starts (crate::case_marks).
    CREATE TABLE IF NOT EXISTS case_marks (
        case_id TEXT NOT NULL,
        seq     INTEGER NOT NULL,
        PRIMARY KEY (case_id, seq)
    ) WITHOUT ROWID;
    -- Journals written before chains' ends were derived kept them here.
    DROP TABLE IF EXISTS case_heads;
";

impl Journal {
    /// Opens (or creates) the journal and verifies all of it.
    pub fn open(path: &Path, durability: Durability) -> Result<(Journal, Verified), JournalError> {
        let conn = connect(path, durability)?;
        let (verified, case_heads) = verify(&conn, path)?;
        // Only a verified journal is changed: a damaged one is evidence.
        case_marks::on_open(&conn, &case_heads).map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        info!(
            path = %path.display(),
            records = verified.records,
            took_ms = verified.took.as_millis() as u64,
            "journal verified"
        );
        Ok((
            Journal {
                conn,
                path: path.to_path_buf(),
                last_seq: verified.records,
                head: verified.head,
                case_heads,
                retention_floor: 0,
            },
            verified,
        ))
    }

    /// Opens the journal; if it is damaged, moves it aside and starts a new
    /// file with every record up to the last good one.
    pub fn open_truncating(
        path: &Path,
        durability: Durability,
    ) -> Result<(Journal, Verified, Option<Truncation>), JournalError> {
        match Journal::open(path, durability) {
            Ok((journal, verified)) => Ok((journal, verified, None)),
            Err(JournalError::Broken {
                last_good, problem, ..
            }) => {
                let truncation = truncate(path, last_good, problem)?;
                warn!(
                    kept = truncation.kept,
                    damaged = %truncation.damaged_copy.display(),
                    problem = %truncation.problem,
                    "journal truncated to its last good record"
                );
                let (journal, verified) = Journal::open(path, durability)?;
                Ok((journal, verified, Some(truncation)))
            }
            Err(other) => Err(other),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The number of the last record and the chain after it.
    pub fn head(&self) -> (u64, Hash) {
        (self.last_seq, self.head)
    }

    /// Appends the entries in one transaction: all of them or none.
    /// Returns the bytes written.
    pub fn append(&mut self, entries: &[Entry]) -> Result<u64, JournalError> {
        let err = |source| JournalError::Sqlite {
            path: self.path.clone(),
            source,
        };
        let mut heads = HeadsInCommit::new(&mut self.case_heads);
        let tx = self.conn.transaction().map_err(err)?;
        let written = write_entries(&tx, entries, (self.last_seq, self.head), &mut heads)
            .and_then(|written| tx.commit().map(|()| written));
        let (seq, head, bytes, swept) = match written {
            Ok(written) => written,
            Err(source) => {
                heads.undo();
                return Err(err(source));
            }
        };
        // The commit is on disk: the heads stay as it moved them.
        self.last_seq = seq;
        self.head = head;
        case_marks::swept(&mut self.case_heads, &swept);
        Ok(bytes)
    }

    /// Every record after `after`, in order. Retired records come as `None`.
    pub fn read_after(
        &self,
        after: u64,
        mut each: impl FnMut(Stored) -> Result<(), JournalError>,
    ) -> Result<(), JournalError> {
        let path = &self.path;
        let err = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body, digest FROM records WHERE seq > ?1 ORDER BY seq")
            .map_err(err)?;
        let mut rows = stmt.query([after as i64]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let seq = row.get::<_, i64>(0).map_err(err)? as u64;
            let body: Option<Vec<u8>> = row.get(1).map_err(err)?;
            let record = body
                .map(|b| {
                    Record::from_body(&b).map_err(|e| JournalError::Broken {
                        path: path.clone(),
                        seq,
                        problem: format!("its body is not a record: {e}"),
                        last_good: seq - 1,
                    })
                })
                .transpose()?;
            let digest = hash_column(row.get(2).map_err(err)?);
            each(Stored {
                seq,
                record,
                digest,
            })?;
        }
        Ok(())
    }

    /// The chain value after record `seq` (the genesis value for 0).
    pub fn chain_at(&self, seq: u64) -> Result<Option<Hash>, JournalError> {
        if seq == 0 {
            return Ok(Some(GENESIS));
        }
        self.conn
            .query_row(
                "SELECT chain FROM records WHERE seq = ?1",
                [seq as i64],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .map(|o| o.map(hash_column))
            .map_err(|source| JournalError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// Retires the bodies of fixes received before `cutoff` unless they lie
    /// within `margin_s` of an alert episode of one of their cases, or after
    /// record `keep_after` (what recovery still replays). The pass itself is
    /// journaled. Returns the number of fixes retired.
    pub fn retire(
        &mut self,
        cutoff: Timestamp,
        margin_s: i64,
        keep_after: u64,
        now: Timestamp,
    ) -> Result<u64, JournalError> {
        let path = self.path.clone();
        let err = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        // Episode spans per case, from the journaled events.
        let mut spans: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
        {
            let mut open: HashMap<(String, String), i64> = HashMap::new();
            let mut stmt = self
                .conn
                .prepare("SELECT body FROM records INDEXED BY records_events WHERE kind = 'event' AND body IS NOT NULL ORDER BY seq")
                .map_err(err)?;
            let mut rows = stmt.query([]).map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let body: Vec<u8> = row.get(0).map_err(err)?;
                let Ok(Record::Event { event, .. }) = Record::from_body(&body) else {
                    continue;
                };
                let key = (event.case.to_string(), event.id.to_string());
                let onset = event.onset.as_millisecond();
                match event.phase {
                    kordon_core::Phase::Cleared => {
                        let start = open.remove(&key).unwrap_or(onset);
                        spans
                            .entry(key.0)
                            .or_default()
                            .push((start, event.at.as_millisecond()));
                    }
                    kordon_core::Phase::LateBreach => spans
                        .entry(key.0)
                        .or_default()
                        .push((onset, event.at.as_millisecond())),
                    _ => {
                        open.entry(key).or_insert(onset);
                    }
                }
            }
            for ((case, _), start) in open {
                spans.entry(case).or_default().push((start, i64::MAX));
            }
        }
        let margin_ms = margin_s.saturating_mul(1000);
        let mut retire = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT r.seq, r.body, group_concat(l.case_id, char(31)) FROM records r \
                     LEFT JOIN case_links l ON l.seq = r.seq \
                     WHERE r.seq > ?3 AND r.seq <= ?2 AND r.kind = 'fix' AND r.body IS NOT NULL AND r.at_ms < ?1 \
                     GROUP BY r.seq",
                )
                .map_err(err)?;
            let mut rows = stmt
                .query(params![
                    cutoff.as_millisecond(),
                    keep_after as i64,
                    self.retention_floor as i64
                ])
                .map_err(err)?;
            while let Some(row) = rows.next().map_err(err)? {
                let seq: i64 = row.get(0).map_err(err)?;
                let body: Vec<u8> = row.get(1).map_err(err)?;
                let cases: Option<String> = row.get(2).map_err(err)?;
                let Ok(Record::Fix { fix, .. }) = Record::from_body(&body) else {
                    continue;
                };
                let t = fix.ts.as_millisecond();
                let evidence = cases.iter().flat_map(|c| c.split('\u{1f}')).any(|case| {
                    spans.get(case).is_some_and(|s| {
                        s.iter().any(|(from, to)| {
                            t >= from.saturating_sub(margin_ms) && t <= to.saturating_add(margin_ms)
                        })
                    })
                });
                if !evidence {
                    retire.push(seq);
                }
            }
        }
        // Records are journaled in time order (nearly: clocks step), so
        // the next pass can start where this one found a record too young.
        let young: Option<i64> = self
            .conn
            .query_row(
                "SELECT min(seq) FROM records WHERE seq > ?1 AND seq <= ?2 AND at_ms >= ?3",
                params![
                    self.retention_floor as i64,
                    keep_after as i64,
                    cutoff.as_millisecond()
                ],
                |r| r.get(0),
            )
            .map_err(err)?;
        self.retention_floor = young.map_or(keep_after, |seq| seq as u64 - 1);
        let retired = retire.len() as u64;
        if retired > 0 {
            let tx = self.conn.transaction().map_err(err)?;
            {
                let mut clear = tx
                    .prepare_cached("UPDATE records SET body = NULL WHERE seq = ?1")
                    .map_err(err)?;
                for seq in &retire {
                    clear.execute([seq]).map_err(err)?;
                }
            }
            tx.commit().map_err(err)?;
        }
        self.append(&[Entry::new(Record::Retention {
            cutoff,
            retired,
            at: now,
        })])?;
        Ok(retired)
    }

    /// Folds the write-ahead log into the file: on clean shutdown.
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(|source| JournalError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }
}

/// What a commit wrote: its last seq and chain, its bytes, and the heads
/// its sweep marked.
type Written = (u64, Hash, u64, Vec<(CaseId, u64)>);

/// Inserts the entries' records and case links after `(seq, head)`,
/// moving each case's head on in `heads` as its links are written.
///
/// Every error returns at once, and nothing may run on the connection
/// after one: a conflict in an `INSERT OR ROLLBACK` (`store/rows.rs`)
/// leaves no transaction, so a statement run after it would commit on its
/// own, a record out of its commit.
fn write_entries(
    tx: &rusqlite::Transaction<'_>,
    entries: &[Entry],
    (mut seq, mut head): (u64, Hash),
    heads: &mut HeadsInCommit<'_>,
) -> rusqlite::Result<Written> {
    let after = seq;
    let mut bytes = 0u64;
    let mut records = rows::Records::new(tx)?;
    let mut links = rows::Links::new(tx)?;
    let mut insert_mark =
        tx.prepare_cached("INSERT OR IGNORE INTO case_marks (case_id, seq) VALUES (?1, ?2)")?;
    for entry in entries {
        seq += 1;
        let (d, chain) = records.push(seq, &entry.record, |body| {
            bytes += body.len() as u64 + 64;
            let d = digest(body);
            (d, link(&head, seq, &d))
        })?;
        head = chain;
        for case in &entry.cases {
            heads.advance(case, |previous| {
                let (prev_seq, prev_link) = previous.map_or((0, GENESIS), |h| (h.seq, h.link));
                let l = link(&prev_link, seq, &d);
                links.push(seq, case, prev_seq, l)?;
                let next = CaseHead::next(previous.as_ref(), seq, l);
                if next.marked {
                    insert_mark.execute(params![case.as_str(), seq as i64])?;
                }
                Ok(next)
            })?;
        }
    }
    records.finish()?;
    links.finish()?;
    let mut swept = Vec::new();
    if case_marks::sweeps(after, seq) {
        swept = case_marks::unmarked_heads(heads.all());
        for (case, marked) in &swept {
            insert_mark.execute(params![case.as_str(), *marked as i64])?;
        }
    }
    Ok((seq, head, bytes, swept))
}

/// The case heads while a commit is being written: moved on in place, one
/// lookup per link, with what each move replaced, so that a commit that
/// fails leaves the heads as they were. (A map of the commit's own heads,
/// merged after the commit, looked each case up four times: the journal's
/// thread took 5.4-5.6 µs per fix at 10,000 fixes/s with it, 5.2 without.)
struct HeadsInCommit<'a> {
    heads: &'a mut CaseHeads,
    /// Per move, in order: the case and the head the move replaced
    /// (`None`: the case had none).
    replaced: Vec<(CaseId, Option<CaseHead>)>,
}

impl<'a> HeadsInCommit<'a> {
    fn new(heads: &'a mut CaseHeads) -> Self {
        HeadsInCommit {
            heads,
            replaced: Vec::new(),
        }
    }

    fn all(&self) -> &CaseHeads {
        self.heads
    }

    /// Moves `case`'s head on to what `link` returns, given its head so far
    /// (`None`: its first link). A head whose link fails stays as it was.
    fn advance(
        &mut self,
        case: &CaseId,
        link: impl FnOnce(Option<CaseHead>) -> rusqlite::Result<CaseHead>,
    ) -> rusqlite::Result<()> {
        let previous = match self.heads.get_mut(case) {
            Some(head) => {
                let previous = *head;
                *head = link(Some(previous))?;
                Some(previous)
            }
            None => {
                let next = link(None)?;
                self.heads.insert(case.clone(), next);
                None
            }
        };
        // An id is kept inline (up to 23 bytes): the clone copies, it does
        // not allocate.
        self.replaced.push((case.clone(), previous));
        Ok(())
    }

    /// The commit failed: every head goes back, the latest move first.
    fn undo(self) {
        for (case, previous) in self.replaced.into_iter().rev() {
            match previous {
                Some(head) => {
                    self.heads.insert(case, head);
                }
                None => {
                    self.heads.remove(&case);
                }
            }
        }
    }
}

fn connect(path: &Path, durability: Durability) -> Result<Connection, JournalError> {
    let err = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| JournalError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = Connection::open(path).map_err(err)?;
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Process => "NORMAL",
    };
    // SQLite's default page cache (2 MB): the writer appends, and at every
    // commit SQLite walks the whole cache's hash table, which at 64 MB cost
    // a sixth of the journal's CPU per fix.
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA cache_size = -2000;"
    ))
    .map_err(err)?;
    let on_timeline = crate::reader::on_timeline();
    let timeline_index: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'records_timeline'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(err)?;
    if timeline_index.is_some_and(|sql| !sql.ends_with(&on_timeline)) {
        // A journal from before the index was spelled without `IN`.
        info!("rebuilding the journal's timeline index");
        conn.execute_batch("DROP INDEX records_timeline;")
            .map_err(err)?;
    }
    conn.execute_batch(&SCHEMA.replace("{ON_TIMELINE}", &on_timeline))
        .map_err(err)?;
    Ok(conn)
}

fn hash_column(bytes: Vec<u8>) -> Hash {
    let mut h = [0u8; 32];
    if bytes.len() == 32 {
        h.copy_from_slice(&bytes);
    }
    h
}

/// A row as stored: seq, body, digest, chain.
type RawRecord = (i64, Option<Vec<u8>>, Vec<u8>, Vec<u8>);

/// Checks every record's digest, the chain, and every case's chain.
fn verify(conn: &Connection, path: &Path) -> Result<(Verified, CaseHeads), JournalError> {
    let started = Instant::now();
    let mut last_good = 0u64;
    let mut head = GENESIS;
    let broken = |seq: u64, last_good: u64, problem: String| JournalError::Broken {
        path: path.to_path_buf(),
        seq,
        problem,
        last_good,
    };
    let sqlite = |last_good: u64, e: rusqlite::Error| {
        broken(
            last_good + 1,
            last_good,
            format!("SQLite cannot read it ({e})"),
        )
    };
    let mut digests: Vec<Hash> = Vec::new();
    {
        let mut stmt = conn
            .prepare("SELECT seq, body, digest, chain FROM records ORDER BY seq")
            .map_err(|e| sqlite(0, e))?;
        let mut rows = stmt.query([]).map_err(|e| sqlite(0, e))?;
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Err(sqlite(last_good, e)),
            };
            let read = (|| -> rusqlite::Result<RawRecord> {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })();
            let (seq, body, stored_digest, chain) = read.map_err(|e| sqlite(last_good, e))?;
            let seq = seq as u64;
            let expected = last_good + 1;
            if seq != expected {
                return Err(broken(
                    expected,
                    last_good,
                    format!("it is missing (the next record is {seq})"),
                ));
            }
            if stored_digest.len() != 32 || chain.len() != 32 {
                return Err(broken(seq, last_good, "its hashes are cut short".into()));
            }
            let stored_digest = hash_column(stored_digest);
            if let Some(body) = &body {
                if digest(body) != stored_digest {
                    return Err(broken(
                        seq,
                        last_good,
                        "its content does not match its digest (edited or damaged)".into(),
                    ));
                }
            }
            let next = link(&head, seq, &stored_digest);
            if next[..] != chain[..] {
                return Err(broken(
                    seq,
                    last_good,
                    "its chain hash does not follow from the record before it".into(),
                ));
            }
            head = next;
            digests.push(stored_digest);
            last_good = seq;
        }
    }
    // The case chains: each link follows from the case's previous link.
    let mut heads = CaseHeads::default();
    {
        let mut stmt = conn
            .prepare("SELECT seq, case_id, prev_seq, link FROM case_links ORDER BY seq, case_id")
            .map_err(|e| sqlite(last_good, e))?;
        let mut rows = stmt.query([]).map_err(|e| sqlite(last_good, e))?;
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(e) => return Err(sqlite(last_good, e)),
            };
            let read = (|| -> rusqlite::Result<(i64, String, i64, Vec<u8>)> {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })();
            let (seq, case, prev_seq, stored) = read.map_err(|e| sqlite(last_good, e))?;
            let seq = seq as u64;
            let case = CaseId::from(case.as_str());
            let (expected_prev, previous) =
                heads.get(&case).map_or((0, GENESIS), |h| (h.seq, h.link));
            let Some(d) = digests.get((seq as usize).wrapping_sub(1)) else {
                return Err(broken(
                    seq,
                    last_good,
                    format!("case {case} links to a record that does not exist"),
                ));
            };
            if prev_seq as u64 != expected_prev || link(&previous, seq, d)[..] != stored[..] {
                // Records before this one are intact; the case chain from here is not.
                return Err(broken(
                    seq,
                    seq - 1,
                    format!("its link in the chain of case {case} does not follow from the case's previous record"),
                ));
            }
            heads.insert(case, CaseHead::verified(seq, hash_column(stored)));
        }
    }
    Ok((
        Verified {
            records: last_good,
            head,
            took: started.elapsed(),
        },
        heads,
    ))
}

/// Copies what `select` yields into `insert`, stopping at the first row
/// that cannot be read or whose `seq` (the first integer column) `valid`
/// refuses, given the number of rows copied so far.
fn copy_rows(
    from: &Connection,
    to: &rusqlite::Transaction<'_>,
    select: &str,
    insert: &str,
    columns: usize,
    valid: impl Fn(usize, i64) -> bool,
) -> rusqlite::Result<()> {
    let mut stmt = from.prepare(select)?;
    let mut rows = stmt.query([])?;
    let mut insert = to.prepare(insert)?;
    let mut copied = 0;
    while let Some(row) = rows.next()? {
        let values = (0..columns)
            .map(|i| row.get::<_, rusqlite::types::Value>(i))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let seq = values.iter().find_map(|v| match v {
            rusqlite::types::Value::Integer(n) => Some(*n),
            _ => None,
        });
        if !seq.is_some_and(|seq| valid(copied, seq)) {
            break;
        }
        insert.execute(rusqlite::params_from_iter(values))?;
        copied += 1;
    }
    Ok(())
}

/// Copies records 1..=`keep` of a damaged journal into a fresh file, moves
/// the damaged one (and its WAL) aside and puts the fresh one in its place.
fn truncate(path: &Path, keep: u64, problem: String) -> Result<Truncation, JournalError> {
    let io = |p: &Path, source| JournalError::Io {
        path: p.to_path_buf(),
        source,
    };
    let fresh = path.with_extension("truncating");
    let _ = std::fs::remove_file(&fresh);
    {
        // Row by row in the order verification read them: a bulk copy may
        // wander into the damaged pages.
        let damaged = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| JournalError::Sqlite {
                path: path.to_path_buf(),
                source,
            })?;
        let mut conn = connect(&fresh, Durability::Full)?;
        let err = |source| JournalError::Sqlite {
            path: fresh.clone(),
            source,
        };
        let tx = conn.transaction().map_err(err)?;
        copy_rows(
            &damaged,
            &tx,
            &format!("SELECT seq, at_ms, kind, device, body, digest, chain FROM records WHERE seq <= {keep} ORDER BY seq"),
            "INSERT INTO records VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            7,
            // Damaged pages can yield phantom rows; only the verified sequence counts.
            |i, seq| seq == i as i64 + 1,
        )
        .map_err(err)?;
        if let Err(e) = copy_rows(
            &damaged,
            &tx,
            &format!("SELECT seq, case_id, prev_seq, link FROM case_links WHERE seq <= {keep} ORDER BY seq, case_id"),
            "INSERT INTO case_links VALUES (?1, ?2, ?3, ?4)",
            4,
            |_, seq| (1..=keep as i64).contains(&seq),
        ) {
            warn!(error = %e, "some case links could not be read back; those cases' chains restart");
        }
        case_marks::mark_every_link(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(err)?;
    }
    let stamp = Timestamp::now().as_second();
    let damaged_copy = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
    std::fs::rename(path, &damaged_copy).map_err(|e| io(path, e))?;
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let to = PathBuf::from(format!("{}{suffix}", damaged_copy.display()));
            std::fs::rename(&side, &to).map_err(|e| io(&side, e))?;
        }
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", fresh.display()));
    }
    std::fs::rename(&fresh, path).map_err(|e| io(&fresh, e))?;
    Ok(Truncation {
        kept: keep,
        damaged_copy,
        problem,
    })
}
