//! Reading the journal for people: a case's timeline and its devices'
//! fixes over a time window (playback), on a read-only connection of its
//! own beside the writer's (SQLite's WAL lets both run at once).
//!
//! It never writes and never verifies: the journal was verified at start
//! and only kordon's writer appends to it. A query reads through the
//! index made for it (`records_timeline`) or walks a case's chain from a
//! mark (`crate::case_marks`), so its cost follows what it returns plus at
//! most the links of 262,144 records (a few tens of milliseconds), not the
//! journal's size.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use kordon_core::{CaseId, DeviceId, Fix};
use rusqlite::{Connection, OpenFlags};

use crate::store::JournalError;
use crate::Record;

/// The record kinds a case's timeline shows.
pub const TIMELINE_KINDS: [&str; 7] = [
    "event",
    "ack",
    "resolve",
    "note",
    "escalate",
    "case_upsert",
    "case_remove",
];

/// How long after a window's end [`Reader::case_fixes`] looks for its
/// fixes: a bracelet's backlog after a dead spot arrives late.
pub const LATE_ARRIVAL: jiff::SignedDuration = jiff::SignedDuration::from_mins(30);

/// `kind = 'event' OR kind = 'ack' OR …`: whether a record is on the
/// timeline, as the `records_timeline` index and every query that uses it
/// spell it (SQLite uses a partial index only for a query that repeats its
/// condition). Not `kind IN (…)`: on every insert SQLite would build a
/// temporary table for a list of more than two values, which was a fifth of
/// the journal's CPU per fix.
pub(crate) fn on_timeline() -> String {
    TIMELINE_KINDS
        .iter()
        .map(|k| format!("kind = '{k}'"))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Outbound and webhook records [`Reader::recent_dispatch`] reads at most.
const DISPATCH_LOOKBACK: usize = 500_000;

pub struct Reader {
    conn: Connection,
    path: PathBuf,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Reader, JournalError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        })?;
        let _ = conn.busy_timeout(std::time::Duration::from_secs(2));
        Ok(Reader {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        |source| JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The records (with their numbers) an SQL query of `seq, body` rows
    /// selects, in its order; retired and unreadable bodies are passed
    /// over.
    fn records(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<(u64, Record)>, JournalError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(self.err())?;
        let rows = stmt
            .query_map(params, |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get::<_, Option<Vec<u8>>>(1)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row.map_err(self.err())?;
            if let Some(record) = body.and_then(|b| Record::from_body(&b).ok()) {
                out.push((seq, record));
            }
        }
        Ok(out)
    }

    /// The timeline records of `case` before record `before` (all when
    /// `None`), newest first, at most `limit`.
    pub fn case_timeline(
        &self,
        case: &CaseId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, Record)>, JournalError> {
        let sql = format!(
            "SELECT r.seq, r.body FROM records r WHERE ({}) AND r.seq < ?2 \
             AND EXISTS (SELECT 1 FROM case_links l WHERE l.seq = r.seq AND l.case_id = ?1) \
             ORDER BY r.seq DESC LIMIT ?3",
            on_timeline()
        );
        let before = before.map_or(i64::MAX, |b| b as i64);
        self.records(&sql, rusqlite::params![case.as_str(), before, limit as i64])
    }

    /// The timeline records of every case from `from` to `to` (kordon's
    /// clock), oldest first: what the deadline report reads.
    pub fn timeline_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<(u64, Record)>, JournalError> {
        let (lo, hi) = self.seqs_between(from, to)?;
        let sql = format!(
            "SELECT seq, body FROM records WHERE ({}) AND seq >= ?1 AND seq < ?2 ORDER BY seq",
            on_timeline()
        );
        let mut out = self.records(&sql, rusqlite::params![lo as i64, hi as i64])?;
        out.retain(|(_, record)| (from..to).contains(&record.at()));
        Ok(out)
    }

    /// The payloads kordon journaled for `topic` from `from` to `to`
    /// (kordon's clock), oldest first.
    pub fn outbound_between(
        &self,
        topic: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<String>, JournalError> {
        let (lo, hi) = self.seqs_between(from, to)?;
        let sql = "SELECT seq, body FROM records WHERE kind IN ('outbound', 'webhook') \
                   AND seq >= ?1 AND seq < ?2 ORDER BY seq";
        let records = self.records(sql, rusqlite::params![lo as i64, hi as i64])?;
        Ok(records
            .into_iter()
            .filter(|(_, record)| (from..to).contains(&record.at()))
            .filter_map(|(_, record)| match record {
                Record::Outbound {
                    topic: t, payload, ..
                } if t == topic => Some(payload),
                _ => None,
            })
            .collect())
    }

    /// The latest case file of `case` put in force before record `before`.
    pub fn case_before(
        &self,
        case: &CaseId,
        before: u64,
    ) -> Result<Option<kordon_core::Case>, JournalError> {
        // The kinds of the timeline index, so that it serves this query.
        let sql = format!(
            "SELECT r.seq, r.body FROM records r WHERE ({}) \
             AND r.kind = 'case_upsert' AND r.seq < ?2 \
             AND EXISTS (SELECT 1 FROM case_links l WHERE l.seq = r.seq AND l.case_id = ?1) \
             ORDER BY r.seq DESC LIMIT 1",
            on_timeline()
        );
        let found = self.records(&sql, rusqlite::params![case.as_str(), before as i64])?;
        Ok(found.into_iter().find_map(|(_, record)| match record {
            Record::CaseUpsert { case, .. } => Some(case),
            _ => None,
        }))
    }

    /// The fixes of `case`'s devices (only `devices`, when given) taken
    /// from `from` to `to` (the fixes' own times), in the order kordon
    /// received them. Fixes that arrived more than [`LATE_ARRIVAL`] after
    /// `to` (a long backlog) are not looked for; retired fixes are gone.
    pub fn case_fixes(
        &self,
        case: &CaseId,
        devices: Option<&[DeviceId]>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Fix>, JournalError> {
        // A fix is received after it was taken; kordon's clock is close
        // to monotonic, and a margin before covers the rest.
        let margin = jiff::SignedDuration::from_mins(5);
        let last = self.last_seq()?;
        let lo = self.first_seq_at(from.checked_sub(margin).unwrap_or(from), last)?;
        let hi = self.first_seq_at(to.checked_add(LATE_ARRIVAL).unwrap_or(to), last)?;
        let seqs =
            crate::case_marks::case_records(&self.conn, case, lo, hi, last).map_err(self.err())?;
        let mut records = Vec::with_capacity(seqs.len());
        for seq in seqs {
            let sql = "SELECT seq, body FROM records WHERE seq = ?1 AND kind = 'fix'";
            records.extend(self.records(sql, [seq as i64])?);
        }
        Ok(records
            .into_iter()
            .filter_map(|(_, record)| match record {
                Record::Fix { fix, .. } => Some(fix),
                _ => None,
            })
            .filter(|fix| devices.is_none_or(|d| d.contains(&fix.device)))
            .filter(|fix| (from..=to).contains(&fix.ts))
            .collect())
    }

    /// The newest outbound messages on `topic` and webhook records, newest
    /// first: at most `limit` of those messages, and the webhook records
    /// among them.
    pub fn recent_dispatch(&self, topic: &str, limit: usize) -> Result<Vec<Record>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT body FROM records WHERE kind IN ('outbound', 'webhook') ORDER BY seq DESC",
            )
            .map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        let mut out = Vec::new();
        let mut messages = 0;
        let mut scanned = 0usize;
        while let Some(row) = rows.next().map_err(self.err())? {
            // A journal of many alerts and few police messages: look back
            // this far, not through all of it.
            scanned += 1;
            if scanned > DISPATCH_LOOKBACK {
                break;
            }
            let Some(body) = row.get::<_, Option<Vec<u8>>>(0).map_err(self.err())? else {
                continue;
            };
            match Record::from_body(&body) {
                Ok(record @ Record::Outbound { .. }) => {
                    let Record::Outbound { topic: t, .. } = &record else {
                        unreachable!()
                    };
                    if t == topic {
                        out.push(record);
                        messages += 1;
                        if messages == limit {
                            break;
                        }
                    }
                }
                Ok(record @ Record::Webhook { .. }) => out.push(record),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The records journaled from `from` to `to` lie in `lo..hi`; the
    /// caller still keeps only those whose time is before `to`. The journal
    /// stores times in milliseconds: a record of `to`'s own millisecond
    /// (an acknowledgement a report asked for at once) is inside.
    fn seqs_between(&self, from: Timestamp, to: Timestamp) -> Result<(u64, u64), JournalError> {
        let next_millisecond = to
            .checked_add(jiff::SignedDuration::from_millis(1))
            .unwrap_or(to);
        let last = self.last_seq()?;
        Ok((
            self.first_seq_at(from, last)?,
            self.first_seq_at(next_millisecond, last)?,
        ))
    }

    /// The number of the last record, where a commit ended.
    fn last_seq(&self) -> Result<u64, JournalError> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM records", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|last| last as u64)
            .map_err(self.err())
    }

    /// The first record journaled at or after `t` among records
    /// `1..=last` (`last + 1` when none is), by bisection on the records'
    /// own times.
    fn first_seq_at(&self, t: Timestamp, last: u64) -> Result<u64, JournalError> {
        let target = t.as_millisecond();
        let (mut lo, mut hi) = (1i64, last as i64 + 1);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT at_ms FROM records WHERE seq >= ?1 ORDER BY seq LIMIT 1")
            .map_err(self.err())?;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at: Option<i64> = stmt
                .query_row([mid], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(self.err())?;
            match at {
                Some(at) if at < target => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::on_timeline;
    use crate::{Durability, Journal};

    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map([], |row| row.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    /// The timeline's queries repeat the index's condition, so SQLite uses
    /// the partial index; and the condition is no `IN` list, which SQLite
    /// would turn into a temporary table on every insert.
    #[test]
    fn timeline_queries_use_the_timeline_index_and_inserts_build_no_temporary_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        drop(Journal::open(&path, Durability::Process).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let sql = format!(
            "SELECT seq, body FROM records WHERE ({}) AND seq >= 1 AND seq < 9 ORDER BY seq",
            on_timeline()
        );
        assert!(
            plan(&conn, &sql).contains("records_timeline"),
            "{}",
            plan(&conn, &sql)
        );
        let insert = "INSERT INTO records (seq, at_ms, kind, device, body, digest, chain) \
                      VALUES (1, 0, 'fix', NULL, NULL, x'00', x'00')";
        let opcodes: Vec<String> = conn
            .prepare(&format!("EXPLAIN {insert}"))
            .unwrap()
            .query_map([], |row| row.get::<_, String>(1))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            !opcodes.iter().any(|op| op == "OpenEphemeral"),
            "an insert builds a temporary table: {opcodes:?}"
        );
    }
}
