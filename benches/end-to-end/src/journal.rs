//! What kordon's journal holds of the benchmark's fixes, read from its
//! SQLite file (read-only, after kordon stopped): fix records, and distinct
//! fixes by device and sequence number.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

pub struct JournalCount {
    pub fix_records: u64,
    pub distinct_fixes: u64,
}

pub fn count(path: &Path) -> Result<JournalCount, String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("opening the journal {}: {e}", path.display()))?;
    conn.query_row(
        "SELECT count(*), count(DISTINCT device || '/' || json_extract(body, '$.fix.seq')) \
         FROM records WHERE kind = 'fix'",
        [],
        |row| {
            Ok(JournalCount {
                fix_records: row.get::<_, i64>(0)? as u64,
                distinct_fixes: row.get::<_, i64>(1)? as u64,
            })
        },
    )
    .map_err(|e| format!("counting the journal's fixes: {e}"))
}
