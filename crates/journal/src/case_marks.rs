//! Case marks: where reading one case's records starts, without an index
//! entry for every record.
//!
//! A case's records form a chain (each `case_links` row names the case's
//! previous record), so reading a case is a walk back from one of its
//! links. A mark (`case_marks`, keyed by case) is such a starting point.
//! An index of every link by case made each appended fix write a page of
//! its own (a case's entries sit together, so 10,000 cases are 10,000
//! places in that index): a third of the journal's CPU per fix and half
//! the bytes it wrote. Marks are sparse, and two rules, both here, keep
//! every walk short:
//!
//! 1. **Every [`MARK_EVERY`]th link of a case is marked**, and so is its
//!    first link after the journal is opened. A walk back from the first
//!    mark at or after a point passes at most [`MARK_EVERY`] links before
//!    reaching it.
//! 2. **A commit that crosses a multiple of [`SWEEP_RECORDS`] marks every
//!    case's last link** as the commit leaves it, if not marked yet; so
//!    does opening the journal ([`on_open`]). A case's last link is
//!    therefore marked or after that multiple, where [`case_head`] scans
//!    for it.
//!
//! Marks may be denser than the rules ask (journals from before marks
//! mark every link): the rules bound the gaps, never require them. Marks
//! carry no hash: a missing one can make a search stop short (an export
//! would then end early and still verify), which is why both rules live
//! here and the tests compare every search against a scan of every link.

use kordon_core::CaseId;
use rusqlite::{params, Connection, OptionalExtension};

use crate::record::Hash;

/// A case's links between marks, at most.
pub const MARK_EVERY: u32 = 64;

/// Records between sweeps that mark every case's last link. About 26 s at
/// 10,000 fixes/s: a sweep writes a mark per case then (10,000 cases: a
/// mark for one link in 26), and a search for a case's last link reads the
/// links of fewer records than this (about 25 ms).
#[cfg(not(test))]
pub const SWEEP_RECORDS: u64 = 1 << 18;
/// Small enough for tests to cross it many times.
#[cfg(test)]
pub const SWEEP_RECORDS: u64 = 1 << 10;

/// Where each case's chain ends, keyed by case. Hashed with foldhash, not
/// SipHash: the writer looks a case up for every record it appends.
pub(crate) type CaseHeads = foldhash::HashMap<CaseId, CaseHead>;

/// The end of a case's chain as the writer keeps it in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CaseHead {
    pub seq: u64,
    pub link: Hash,
    /// Links of the case since its last mark; `None`: mark the next one
    /// (unknown since the journal was opened).
    pub since_mark: Option<u32>,
    /// Whether `seq` itself is marked.
    pub marked: bool,
}

impl CaseHead {
    /// A chain's end found by verifying the journal, and marked then
    /// ([`on_open`]); the links since its last mark are not counted, so
    /// the next one is marked too.
    pub fn verified(seq: u64, link: Hash) -> Self {
        CaseHead {
            seq,
            link,
            since_mark: None,
            marked: true,
        }
    }

    /// The case's head after appending link `seq` to `previous` (`None`:
    /// the case's first link), and whether that link is to be marked
    /// (rule 1).
    pub fn next(previous: Option<&CaseHead>, seq: u64, link: Hash) -> CaseHead {
        let since = previous.and_then(|p| p.since_mark);
        let marked = since.is_none_or(|n| n + 1 >= MARK_EVERY);
        CaseHead {
            seq,
            link,
            since_mark: Some(if marked { 0 } else { since.unwrap_or(0) + 1 }),
            marked,
        }
    }
}

/// Whether a commit appending records `after + 1 ..= last` sweeps (rule 2).
pub(crate) fn sweeps(after: u64, last: u64) -> bool {
    last / SWEEP_RECORDS > after / SWEEP_RECORDS
}

/// The heads a sweep marks: those not marked yet, as the sweep's commit
/// leaves them.
pub(crate) fn unmarked_heads(heads: &CaseHeads) -> Vec<(CaseId, u64)> {
    heads
        .iter()
        .filter(|(_, head)| !head.marked)
        .map(|(case, head)| (case.clone(), head.seq))
        .collect()
}

/// Notes, once the sweep's commit is on disk, that its heads are marked.
pub(crate) fn swept(heads: &mut CaseHeads, marks: &[(CaseId, u64)]) {
    for (case, seq) in marks {
        if let Some(head) = heads.get_mut(case).filter(|head| head.seq == *seq) {
            head.marked = true;
        }
    }
}

/// Whether reads may start from marks: the table is there, and the index
/// of every link by case is not. Journals from before marks have that
/// index, and lose it in the transaction that marks their every link
/// ([`on_open`]); an older kordon run on the journal since would have built
/// it again and appended links without marks.
fn marks_usable(conn: &Connection) -> rusqlite::Result<bool> {
    Ok(has_schema_object(conn, "table", "case_marks")?
        && !has_schema_object(conn, "index", OLD_LINK_INDEX)?)
}

/// The index of every link by case that journals from before marks have.
const OLD_LINK_INDEX: &str = "case_links_by_case";

fn has_schema_object(conn: &Connection, kind: &str, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = ?1 AND name = ?2",
        [kind, name],
        |r| r.get(0),
    )
}

/// Where a search for a case's last link among records `1..=last` starts
/// scanning (rule 2): it reads the links of fewer than [`SWEEP_RECORDS`]
/// records.
fn head_scan_from(last: u64) -> u64 {
    (last / SWEEP_RECORDS) * SWEEP_RECORDS
}

/// The marks of case `?1` that are its links: marks carry no hash, and a
/// stray one must not bring another case's records in.
const MARKED_LINK: &str = "SELECT m.seq FROM case_marks m \
    JOIN case_links l ON l.seq = m.seq AND l.case_id = m.case_id WHERE m.case_id = ?1";

/// Windows of at most this many records are scanned rather than walked.
#[cfg(not(test))]
const SCAN_WINDOW: u64 = 1 << 16;
/// Small enough for tests to walk most windows.
#[cfg(test)]
const SCAN_WINDOW: u64 = 1 << 6;

/// The last link of `case` among records `1..=last` (0: none). `last`
/// must be where a commit ended (the journal's `max(seq)` as a reader saw
/// it): a sweep marks the heads as its commit leaves them.
pub(crate) fn case_head(conn: &Connection, case: &CaseId, last: u64) -> rusqlite::Result<u64> {
    head(conn, case, last, marks_usable(conn)?)
}

/// [`case_head`], with [`marks_usable`] known.
fn head(conn: &Connection, case: &CaseId, last: u64, usable: bool) -> rusqlite::Result<u64> {
    let scan_from = match usable {
        true => head_scan_from(last),
        // The index of every link by case finds it at once.
        false => 0,
    };
    let marked: Option<i64> = if scan_from > 0 {
        conn.query_row(
            &format!("{MARKED_LINK} AND m.seq <= ?2 ORDER BY m.seq DESC LIMIT 1"),
            params![case.as_str(), last as i64],
            |r| r.get(0),
        )
        .optional()?
    } else {
        None
    };
    // Newest first: an active case's last link is found at once.
    let after: Option<i64> = conn
        .query_row(
            "SELECT seq FROM case_links WHERE seq > ?1 AND seq <= ?2 AND case_id = ?3 \
             ORDER BY seq DESC LIMIT 1",
            params![scan_from as i64, last as i64, case.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    Ok(after.or(marked).map_or(0, |s| s as u64))
}

/// The records of `case` from `from` to before `before` among records
/// `1..=last`, in order (`last` as for [`case_head`]). A short window is
/// scanned; a longer one is a walk back through the case's chain from the
/// first mark at or after `before`, else from the case's last link. Either
/// reads the links of at most [`SWEEP_RECORDS`] records beyond the case's
/// own links in the window.
pub(crate) fn case_records(
    conn: &Connection,
    case: &CaseId,
    from: u64,
    before: u64,
    last: u64,
) -> rusqlite::Result<Vec<u64>> {
    let before = before.min(last + 1);
    if from >= before {
        return Ok(Vec::new());
    }
    let usable = marks_usable(conn)?;
    let scan_limit = SCAN_WINDOW.max(last - head_scan_from(last));
    if !usable || before - from <= scan_limit {
        let mut stmt = conn.prepare_cached(
            "SELECT seq FROM case_links WHERE seq >= ?1 AND seq < ?2 AND case_id = ?3 ORDER BY seq",
        )?;
        let seqs = stmt.query_map(params![from as i64, before as i64, case.as_str()], |r| {
            r.get::<_, i64>(0).map(|s| s as u64)
        })?;
        return seqs.collect();
    }
    let mark: Option<i64> = conn
        .query_row(
            &format!("{MARKED_LINK} AND m.seq >= ?2 AND m.seq <= ?3 ORDER BY m.seq LIMIT 1"),
            params![case.as_str(), before as i64, last as i64],
            |r| r.get(0),
        )
        .optional()?;
    let start = match mark {
        Some(mark) => mark as u64,
        None => head(conn, case, last, usable)?,
    };
    // The walk starts only from one of the case's own links.
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE walk(seq) AS ( \
             SELECT seq FROM case_links WHERE seq = ?2 AND case_id = ?1 \
             UNION ALL \
             SELECT l.prev_seq FROM walk JOIN case_links l ON l.seq = walk.seq AND l.case_id = ?1 \
             WHERE walk.seq >= ?3 AND l.prev_seq > 0) \
         SELECT seq FROM walk WHERE seq >= ?3 AND seq < ?4 ORDER BY seq",
    )?;
    let seqs = stmt.query_map(
        params![case.as_str(), start as i64, from as i64, before as i64],
        |r| r.get::<_, i64>(0).map(|s| s as u64),
    )?;
    seqs.collect()
}

/// Marks for a journal whose links were not marked by the rules (rebuilt
/// by truncation): every link, which the rules allow.
pub(crate) fn mark_every_link(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("INSERT OR IGNORE INTO case_marks SELECT case_id, seq FROM case_links;")
}

/// Makes the marks whole once the journal has been verified: a journal from
/// before marks (or appended to by an older kordon since) has every link
/// marked and its index dropped, in one transaction, so a reader uses one
/// or the other; and every case's last link is marked, so the rules hold
/// whatever wrote the journal before.
pub(crate) fn on_open(conn: &Connection, heads: &CaseHeads) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    if has_schema_object(&tx, "index", OLD_LINK_INDEX)? {
        tracing::info!("marking the journal's case links (once)");
        mark_every_link(&tx)?;
        tx.execute_batch(&format!("DROP INDEX {OLD_LINK_INDEX};"))?;
    }
    {
        let mut mark =
            tx.prepare("INSERT OR IGNORE INTO case_marks (case_id, seq) VALUES (?1, ?2)")?;
        for (case, head) in heads {
            mark.execute(params![case.as_str(), head.seq as i64])?;
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, Entry, Journal, Record};

    const CASES: [&str; 4] = ["busy", "quiet", "rare", "gone"];

    /// The cases record `seq` joins: "busy" every other record, "quiet"
    /// only record 3, "rare" every 300th, "gone" the first 500.
    fn cases_of(seq: u64) -> Vec<CaseId> {
        let mut cases = Vec::new();
        if seq.is_multiple_of(2) {
            cases.push(CaseId::new("busy"));
        }
        if seq == 3 {
            cases.push(CaseId::new("quiet"));
        }
        if seq.is_multiple_of(300) {
            cases.push(CaseId::new("rare"));
        }
        if seq <= 500 {
            cases.push(CaseId::new("gone"));
        }
        cases
    }

    /// Appends records `after + 1 ..= last` in commits of 7.
    fn append(journal: &mut Journal, last: u64) {
        let mut seq = journal.head().0;
        while seq < last {
            let batch: Vec<Entry> = (seq + 1..=(seq + 7).min(last))
                .map(|n| {
                    let at = jiff::Timestamp::from_second(1_800_000_000 + n as i64).unwrap();
                    let record = Record::CaseRemove {
                        case: CaseId::new("x"),
                        at,
                    };
                    Entry::for_cases(record, cases_of(n))
                })
                .collect();
            seq += batch.len() as u64;
            journal.append(&batch).unwrap();
        }
    }

    /// Every head and every window of every case, against a scan of all
    /// links.
    fn assert_reads_match_a_scan(path: &std::path::Path) {
        let conn = Connection::open(path).unwrap();
        let last: i64 = conn
            .query_row("SELECT max(seq) FROM records", [], |r| r.get(0))
            .unwrap();
        let last = last as u64;
        for name in CASES {
            let case = CaseId::new(name);
            let all: Vec<u64> = (1..=last)
                .filter(|n| cases_of(*n).contains(&case))
                .collect();
            assert_eq!(case_head(&conn, &case, last).unwrap(), *all.last().unwrap());
            for (from, before) in [
                (1, last + 1),
                (2, 3),
                (900, 1200),
                (last - 50, last),
                (1000, 3000),
            ] {
                let expected: Vec<u64> = all
                    .iter()
                    .copied()
                    .filter(|n| (from..before).contains(n))
                    .collect();
                let found = case_records(&conn, &case, from, before, last).unwrap();
                assert_eq!(found, expected, "{name} from {from} before {before}");
            }
        }
    }

    fn marks_of(path: &std::path::Path, case: &str) -> u64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row(
            "SELECT count(*) FROM case_marks WHERE case_id = ?1",
            [case],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
    }

    #[test]
    fn reads_from_sparse_marks_match_a_scan_across_sweeps_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let (mut journal, _) = Journal::open(&path, Durability::Process).unwrap();
        append(&mut journal, 2 * SWEEP_RECORDS + 10);
        drop(journal);
        let (mut journal, _) = Journal::open(&path, Durability::Process).unwrap();
        append(&mut journal, 3 * SWEEP_RECORDS + 100);
        assert_reads_match_a_scan(&path);
        // About one link in MARK_EVERY, plus each sweep's and each opening's.
        let busy_links = (3 * SWEEP_RECORDS + 100) / 2;
        assert!(marks_of(&path, "busy") <= busy_links / MARK_EVERY as u64 + 1 + 3 + 2);
        assert_eq!(marks_of(&path, "quiet"), 1);
        // A stray mark (no link of the case) changes nothing.
        let conn = Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO case_marks VALUES ('busy', 2001), ('quiet', 3001)",
            [],
        )
        .unwrap();
        assert_reads_match_a_scan(&path);
    }

    #[test]
    fn a_journal_from_before_marks_is_marked_once_and_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let (mut journal, _) = Journal::open(&path, Durability::Process).unwrap();
        append(&mut journal, SWEEP_RECORDS + 10);
        drop(journal);
        {
            // As kordon wrote journals before marks.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "DROP TABLE case_marks; \
                 CREATE INDEX case_links_by_case ON case_links(case_id, seq);",
            )
            .unwrap();
        }
        assert_reads_match_a_scan(&path);
        let (mut journal, _) = Journal::open(&path, Durability::Process).unwrap();
        assert_eq!(marks_of(&path, "gone"), 500);
        assert_reads_match_a_scan(&path);
        append(&mut journal, 2 * SWEEP_RECORDS + 10);
        assert_reads_match_a_scan(&path);
        let conn = Connection::open(&path).unwrap();
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'case_links_by_case'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 0);
    }

    /// An older kordon run on a journal with marks builds its index again
    /// and appends links without marks; reads use the index until the
    /// journal is opened again.
    #[test]
    fn links_appended_by_an_older_kordon_are_found_and_marked_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let (mut journal, _) = Journal::open(&path, Durability::Process).unwrap();
        append(&mut journal, SWEEP_RECORDS + 10);
        drop(journal);
        let (mut journal, _) = Journal::open(&path, Durability::Process).unwrap();
        // As the older kordon appends: its index, links, and no marks.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE INDEX case_links_by_case ON case_links(case_id, seq);")
            .unwrap();
        append(&mut journal, 2 * SWEEP_RECORDS + 20);
        drop(journal);
        conn.execute(
            "DELETE FROM case_marks WHERE seq > ?1",
            [SWEEP_RECORDS as i64 + 10],
        )
        .unwrap();
        assert_reads_match_a_scan(&path);
        drop(Journal::open(&path, Durability::Process).unwrap());
        assert_reads_match_a_scan(&path);
    }

    #[test]
    fn a_case_is_marked_first_then_every_mark_every_links() {
        let mut head: Option<CaseHead> = None;
        let mut marked = Vec::new();
        for seq in 1..=200u64 {
            let next = CaseHead::next(head.as_ref(), seq, [0; 32]);
            if next.marked {
                marked.push(seq);
            }
            head = Some(next);
        }
        assert_eq!(marked, vec![1, 65, 129, 193]);
    }

    #[test]
    fn a_head_found_by_verifying_is_marked_by_its_next_link() {
        let verified = CaseHead::verified(10, [0; 32]);
        assert!(CaseHead::next(Some(&verified), 11, [0; 32]).marked);
    }

    #[test]
    fn a_commit_sweeps_when_it_crosses_a_multiple() {
        assert!(!sweeps(0, SWEEP_RECORDS - 1));
        assert!(sweeps(0, SWEEP_RECORDS));
        assert!(sweeps(SWEEP_RECORDS - 1, SWEEP_RECORDS + 5));
        assert!(!sweeps(SWEEP_RECORDS, 2 * SWEEP_RECORDS - 1));
    }

    #[test]
    fn a_sweep_marks_each_unmarked_head_once() {
        let marked = CaseHead::next(None, 1, [0; 32]);
        let unmarked = CaseHead::next(Some(&marked), 2, [0; 32]);
        let mut heads = CaseHeads::from_iter([
            (CaseId::new("A"), marked),
            (CaseId::new("B"), unmarked),
            (CaseId::new("C"), unmarked),
        ]);
        // C's link in the sweep's commit is its first mark.
        heads.insert(CaseId::new("C"), CaseHead::next(None, 3, [0; 32]));
        let marks = unmarked_heads(&heads);
        assert_eq!(marks, vec![(CaseId::new("B"), 2)]);
        swept(&mut heads, &marks);
        assert!(unmarked_heads(&heads).is_empty());
    }
}
