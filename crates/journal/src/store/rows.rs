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
use rusqlite::{CachedStatement, Statement, Transaction};

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

/// A row of one of the journal's tables.
trait Row {
    /// `table (column, …)`.
    const INTO: &'static str;
    const COLUMNS: usize;
    /// What the row's values borrow from besides the row.
    type Context: ?Sized;

    /// Binds the row's values from parameter `first` (1-based) on.
    fn bind(
        &self,
        statement: &mut Statement<'_>,
        first: usize,
        context: &Self::Context,
    ) -> rusqlite::Result<()>;
}

/// One table's rows waiting to go in, inserted [`ROWS_PER_INSERT`] to a
/// statement as they come, the rest one at a time at the end.
struct Pending<'tx, R> {
    many: CachedStatement<'tx>,
    one: CachedStatement<'tx>,
    rows: Vec<R>,
}

impl<'tx, R: Row> Pending<'tx, R> {
    fn new(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Pending {
            many: tx.prepare_cached(&insert_sql(R::INTO, R::COLUMNS, ROWS_PER_INSERT))?,
            one: tx.prepare_cached(&insert_sql(R::INTO, R::COLUMNS, 1))?,
            rows: Vec::with_capacity(ROWS_PER_INSERT),
        })
    }

    /// Adds `row`; returns whether that made a full statement, which then
    /// went in with every row waiting.
    fn push(&mut self, row: R, context: &R::Context) -> rusqlite::Result<bool> {
        self.rows.push(row);
        if self.rows.len() < ROWS_PER_INSERT {
            return Ok(false);
        }
        for (i, row) in self.rows.iter().enumerate() {
            row.bind(&mut self.many, i * R::COLUMNS + 1, context)?;
        }
        self.many.raw_execute()?;
        self.rows.clear();
        Ok(true)
    }

    /// Inserts the rows still waiting.
    fn finish(mut self, context: &R::Context) -> rusqlite::Result<()> {
        for row in &self.rows {
            row.bind(&mut self.one, 1, context)?;
            self.one.raw_execute()?;
        }
        Ok(())
    }
}

/// One record's row; its body is a range of [`Records::bodies`].
struct RecordRow<'e> {
    seq: u64,
    record: &'e Record,
    body: std::ops::Range<usize>,
    digest: Hash,
    chain: Hash,
}

impl Row for RecordRow<'_> {
    const INTO: &'static str = "records (seq, at_ms, kind, device, body, digest, chain)";
    const COLUMNS: usize = 7;
    type Context = [u8];

    fn bind(
        &self,
        statement: &mut Statement<'_>,
        first: usize,
        bodies: &[u8],
    ) -> rusqlite::Result<()> {
        statement.raw_bind_parameter(first, self.seq as i64)?;
        statement.raw_bind_parameter(first + 1, self.record.at().as_millisecond())?;
        statement.raw_bind_parameter(first + 2, self.record.kind())?;
        statement.raw_bind_parameter(first + 3, self.record.device().map(|d| d.as_str()))?;
        statement.raw_bind_parameter(first + 4, &bodies[self.body.clone()])?;
        statement.raw_bind_parameter(first + 5, &self.digest[..])?;
        statement.raw_bind_parameter(first + 6, &self.chain[..])
    }
}

/// The `records` rows of a commit.
pub(super) struct Records<'tx, 'e> {
    pending: Pending<'tx, RecordRow<'e>>,
    /// The bodies of the rows waiting, one after another: SQLite copies
    /// what it binds, so one buffer serves the whole commit.
    bodies: Vec<u8>,
    /// Where the body [`Records::body_of`] wrote last begins.
    body_start: usize,
}

impl<'tx, 'e> Records<'tx, 'e> {
    pub(super) fn new(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Records {
            pending: Pending::new(tx)?,
            bodies: Vec::with_capacity(512 * ROWS_PER_INSERT),
            body_start: 0,
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
        let row = RecordRow {
            seq,
            record,
            body: self.body_start..self.bodies.len(),
            digest,
            chain,
        };
        if self.pending.push(row, &self.bodies)? {
            self.bodies.clear();
        }
        Ok(())
    }

    /// Inserts the rows still waiting.
    pub(super) fn finish(self) -> rusqlite::Result<()> {
        self.pending.finish(&self.bodies)
    }
}

/// One case link's row.
struct LinkRow<'e> {
    seq: u64,
    case: &'e CaseId,
    prev_seq: u64,
    link: Hash,
}

impl Row for LinkRow<'_> {
    const INTO: &'static str = "case_links (seq, case_id, prev_seq, link)";
    const COLUMNS: usize = 4;
    type Context = ();

    fn bind(&self, statement: &mut Statement<'_>, first: usize, _: &()) -> rusqlite::Result<()> {
        statement.raw_bind_parameter(first, self.seq as i64)?;
        statement.raw_bind_parameter(first + 1, self.case.as_str())?;
        statement.raw_bind_parameter(first + 2, self.prev_seq as i64)?;
        statement.raw_bind_parameter(first + 3, &self.link[..])
    }
}

/// The `case_links` rows of a commit.
pub(super) struct Links<'tx, 'e>(Pending<'tx, LinkRow<'e>>);

impl<'tx, 'e> Links<'tx, 'e> {
    pub(super) fn new(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        Pending::new(tx).map(Links)
    }

    /// The link of record `seq` into `case`'s chain, after `prev_seq`.
    pub(super) fn push(
        &mut self,
        seq: u64,
        case: &'e CaseId,
        prev_seq: u64,
        link: Hash,
    ) -> rusqlite::Result<()> {
        let row = LinkRow {
            seq,
            case,
            prev_seq,
            link,
        };
        self.0.push(row, &())?;
        Ok(())
    }

    /// Inserts the rows still waiting.
    pub(super) fn finish(self) -> rusqlite::Result<()> {
        self.0.finish(&())
    }
}
