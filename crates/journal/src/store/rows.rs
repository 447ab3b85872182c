//! A commit's rows, inserted many to a statement.
//!
//! SQLite runs each statement as a small program that opens a cursor on the
//! table and on each of its indexes, binds, steps and resets. With one
//! statement per record and one per case link, that setup was most of
//! SQLite's share of the journal's CPU per fix. Here rows are gathered and
//! inserted [`ROWS_PER_INSERT`] to a statement; what is left at the end of
//! a commit goes in one row at a time.
//!
//! This module never decides what a row holds, nor the order of rows: the
//! journal's `write_entries` does, and rows reach the table in the order
//! they were pushed.

use kordon_core::CaseId;
use rusqlite::{CachedStatement, Transaction};

use crate::record::{Hash, Record};

/// Rows per multi-row `INSERT`. 16 took a commit of 200 fixes from 20,700
/// to 16,900 instructions per fix, SHA-256 aside (callgrind of
/// `Journal::append` in `benches/journal.rs`, 2026-12-05); 8 gave 17,350
/// and 32 gave 18,400: with more rows a statement holds more bound values
/// at once than SQLite's small-allocation pool keeps, and they go to
/// `malloc`.
const ROWS_PER_INSERT: usize = 16;

/// `INSERT OR ROLLBACK INTO table columns VALUES (?, …), …` for `rows`
/// rows. A statement that can fail after some of its rows went in needs a
/// journal of its own to take them out again, unless a failure rolls back
/// the whole transaction: a failed commit is abandoned whole anyway
/// (`Journal::append`), and the statement journal cost another 280
/// instructions per fix (16,900 → 16,700).
fn insert_sql(table_and_columns: &str, columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!(
        "INSERT OR ROLLBACK INTO {table_and_columns} VALUES {}",
        vec![row; rows].join(", ")
    )
}

const RECORD_COLUMNS: &str = "records (seq, at_ms, kind, device, body, digest, chain)";
const LINK_COLUMNS: &str = "case_links (seq, case_id, prev_seq, link)";

/// One record's row; its body is a range of [`Records::bodies`].
struct RecordRow<'e> {
    seq: u64,
    record: &'e Record,
    body: std::ops::Range<usize>,
    digest: Hash,
    chain: Hash,
}

/// The `records` rows of a commit.
pub(super) struct Records<'tx, 'e> {
    many: CachedStatement<'tx>,
    one: CachedStatement<'tx>,
    /// The bodies of the rows not yet inserted, one after another: SQLite
    /// copies what it binds, so one buffer serves the whole commit.
    bodies: Vec<u8>,
    /// Where the body [`Records::body_of`] wrote last begins.
    body_start: usize,
    rows: Vec<RecordRow<'e>>,
}

impl<'tx, 'e> Records<'tx, 'e> {
    pub(super) fn new(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Records {
            many: tx.prepare_cached(&insert_sql(RECORD_COLUMNS, 7, ROWS_PER_INSERT))?,
            one: tx.prepare_cached(&insert_sql(RECORD_COLUMNS, 7, 1))?,
            bodies: Vec::with_capacity(512 * ROWS_PER_INSERT),
            body_start: 0,
            rows: Vec::with_capacity(ROWS_PER_INSERT),
        })
    }

    /// Writes `record`'s body after the bodies waiting, and returns it.
    pub(super) fn body_of(&mut self, record: &Record) -> &[u8] {
        self.body_start = self.bodies.len();
        record.write_body(&mut self.bodies);
        &self.bodies[self.body_start..]
    }

    /// The row of `record`, whose body [`Records::body_of`] wrote last.
    pub(super) fn push(
        &mut self,
        seq: u64,
        record: &'e Record,
        digest: Hash,
        chain: Hash,
    ) -> rusqlite::Result<()> {
        self.rows.push(RecordRow {
            seq,
            record,
            body: self.body_start..self.bodies.len(),
            digest,
            chain,
        });
        if self.rows.len() == ROWS_PER_INSERT {
            bind_records(&mut self.many, &self.rows, &self.bodies)?;
            self.many.raw_execute()?;
            self.rows.clear();
            self.bodies.clear();
        }
        Ok(())
    }

    /// Inserts the rows still waiting.
    pub(super) fn finish(mut self) -> rusqlite::Result<()> {
        for row in self.rows.chunks(1) {
            bind_records(&mut self.one, row, &self.bodies)?;
            self.one.raw_execute()?;
        }
        Ok(())
    }
}

fn bind_records(
    statement: &mut CachedStatement<'_>,
    rows: &[RecordRow<'_>],
    bodies: &[u8],
) -> rusqlite::Result<()> {
    for (i, row) in rows.iter().enumerate() {
        let at = i * 7;
        statement.raw_bind_parameter(at + 1, row.seq as i64)?;
        statement.raw_bind_parameter(at + 2, row.record.at().as_millisecond())?;
        statement.raw_bind_parameter(at + 3, row.record.kind())?;
        statement.raw_bind_parameter(at + 4, row.record.device().map(|d| d.as_str()))?;
        statement.raw_bind_parameter(at + 5, &bodies[row.body.clone()])?;
        statement.raw_bind_parameter(at + 6, &row.digest[..])?;
        statement.raw_bind_parameter(at + 7, &row.chain[..])?;
    }
    Ok(())
}

/// One case link's row.
struct LinkRow<'e> {
    seq: u64,
    case: &'e CaseId,
    prev_seq: u64,
    link: Hash,
}

/// The `case_links` rows of a commit.
pub(super) struct Links<'tx, 'e> {
    many: CachedStatement<'tx>,
    one: CachedStatement<'tx>,
    rows: Vec<LinkRow<'e>>,
}

impl<'tx, 'e> Links<'tx, 'e> {
    pub(super) fn new(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Links {
            many: tx.prepare_cached(&insert_sql(LINK_COLUMNS, 4, ROWS_PER_INSERT))?,
            one: tx.prepare_cached(&insert_sql(LINK_COLUMNS, 4, 1))?,
            rows: Vec::with_capacity(ROWS_PER_INSERT),
        })
    }

    /// The link of record `seq` into `case`'s chain, after `prev_seq`.
    pub(super) fn push(
        &mut self,
        seq: u64,
        case: &'e CaseId,
        prev_seq: u64,
        link: Hash,
    ) -> rusqlite::Result<()> {
        self.rows.push(LinkRow {
            seq,
            case,
            prev_seq,
            link,
        });
        if self.rows.len() == ROWS_PER_INSERT {
            bind_links(&mut self.many, &self.rows)?;
            self.many.raw_execute()?;
            self.rows.clear();
        }
        Ok(())
    }

    /// Inserts the rows still waiting.
    pub(super) fn finish(mut self) -> rusqlite::Result<()> {
        for row in self.rows.chunks(1) {
            bind_links(&mut self.one, row)?;
            self.one.raw_execute()?;
        }
        Ok(())
    }
}

fn bind_links(statement: &mut CachedStatement<'_>, rows: &[LinkRow<'_>]) -> rusqlite::Result<()> {
    for (i, row) in rows.iter().enumerate() {
        let at = i * 4;
        statement.raw_bind_parameter(at + 1, row.seq as i64)?;
        statement.raw_bind_parameter(at + 2, row.case.as_str())?;
        statement.raw_bind_parameter(at + 3, row.prev_seq as i64)?;
        statement.raw_bind_parameter(at + 4, &row.link[..])?;
    }
    Ok(())
}
