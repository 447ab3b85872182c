//! Reading a test kordon's journal from outside: what it holds of fixes.

use std::collections::BTreeMap;
use std::path::Path;

use kordon_journal::{Durability, Journal, Record};

/// Every fix record in the journal (verified on open), by device and
/// sequence number, with how often each is there.
pub fn journaled_fixes(path: &Path) -> BTreeMap<(String, u64), usize> {
    let (journal, _) = Journal::open(path, Durability::Process).expect("the journal verifies");
    let mut fixes = BTreeMap::new();
    journal
        .read_after(0, |stored| {
            if let Some(Record::Fix { fix, .. }) = stored.record {
                *fixes
                    .entry((fix.device.to_string(), fix.seq.unwrap_or(u64::MAX)))
                    .or_default() += 1;
            }
            Ok(())
        })
        .unwrap();
    fixes
}

/// How many fix records the journal holds, read while kordon writes it
/// (0 before it exists).
pub fn journal_fix_count(path: &Path) -> u64 {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM records WHERE kind = 'fix'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_or(0, |n| n as u64)
}
