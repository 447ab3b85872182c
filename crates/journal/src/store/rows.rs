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

use std::sync::LazyLock;

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

/// A table's two inserts: [`ROWS_PER_INSERT`] rows, and one.
///
/// Both are `INSERT OR ROLLBACK`. A statement that can fail after some of
/// its rows went in needs a journal of its own to take them out again,
/// unless a failure rolls back the whole transaction: a failed commit is
/// abandoned whole anyway (`Journal::append`), and the statement journal
/// cost another 280 instructions per fix (16,900 → 16,700).
struct Inserts {
    columns: usize,
    many: String,
    one: String,
}

impl Inserts {
    /// For `table (column, …)` with `columns` columns. Built once: a
    /// commit at rest holds a single fix.
    fn new(into: &str, columns: usize) -> Inserts {
        let row = format!("({})", vec!["?"; columns].join(", "));
        let sql = |rows| {
            format!(
                "INSERT OR ROLLBACK INTO {into} VALUES {}",
                vec![row.as_str(); rows].join(", ")
            )
        };
        Inserts {
            columns,
            many: sql(ROWS_PER_INSERT),
            one: sql(1),
        }
    }
}

/// A row of one of the journal's tables.
trait Row {
    /// This table's inserts.
    fn inserts() -> &'static Inserts;
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
            many: tx.prepare_cached(&R::inserts().many)?,
            one: tx.prepare_cached(&R::inserts().one)?,
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
            row.bind(&mut self.many, i * R::inserts().columns + 1, context)?;
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
    type Context = [u8];

    fn inserts() -> &'static Inserts {
        static INSERTS: LazyLock<Inserts> = LazyLock::new(|| {
            Inserts::new("records (seq, at_ms, kind, device, body, digest, chain)", 7)
        });
        &INSERTS
    }

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
}

impl<'tx, 'e> Records<'tx, 'e> {
    pub(super) fn new(tx: &'tx Transaction<'_>) -> rusqlite::Result<Self> {
        Ok(Records {
            pending: Pending::new(tx)?,
            bodies: Vec::with_capacity(512 * ROWS_PER_INSERT),
        })
    }

    /// The row of record `seq`: its body is written after the bodies
    /// waiting, and `seal` gives the body's digest and the chain value after
    /// it, which the row holds too and which are returned.
    pub(super) fn push(
        &mut self,
        seq: u64,
        record: &'e Record,
        seal: impl FnOnce(&[u8]) -> (Hash, Hash),
    ) -> rusqlite::Result<(Hash, Hash)> {
        let start = self.bodies.len();
        record.write_body(&mut self.bodies);
        let (digest, chain) = seal(&self.bodies[start..]);
        let row = RecordRow {
            seq,
            record,
            body: start..self.bodies.len(),
            digest,
            chain,
        };
        if self.pending.push(row, &self.bodies)? {
            self.bodies.clear();
        }
        Ok((digest, chain))
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
    type Context = ();

    fn inserts() -> &'static Inserts {
        static INSERTS: LazyLock<Inserts> =
            LazyLock::new(|| Inserts::new("case_links (seq, case_id, prev_seq, link)", 4));
        &INSERTS
    }

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
