//! kordon-journal: the durable record of everything kordon took in and
//! decided, and the proof that it is intact.
//!
//! - [`record`]: what a journal record is, and the hashes that chain them.
//! - [`store`]: the SQLite journal: append, verify on open, replay, retention.
//! - [`case_marks`]: where reading one case's records starts.
//! - [`writer`]: the writer thread that group-commits off the hot path.
//! - [`snapshot`]: state snapshots, written atomically, read back with a fallback.
//! - [`snapshot_gate`]: at most one snapshot's state in memory at a time.
//! - [`evidence`]: per-case export (CSV, GeoJSON, manifest) and its verification.
//!
//! The engine never waits on this crate: the server hands records to the
//! writer and acts (publishes, acknowledges) when the writer says they are
//! durable.

pub mod case_marks;
pub mod evidence;
pub mod queue;
pub mod reader;
pub mod record;
pub mod snapshot;
pub mod snapshot_gate;
pub mod store;
pub mod writer;

pub use queue::JobSender;
pub use reader::{Reader, TIMELINE_KINDS};
pub use record::{EngineTick, Hash, Record};
pub use snapshot::{Snapshot, SnapshotStore};
pub use snapshot_gate::{SnapshotGate, SnapshotPass};
pub use store::{Durability, Entry, Journal, JournalError, Stored, Truncation, Verified};
pub use writer::{Durable, GroupCommit, Job, PendingState, Writer};
