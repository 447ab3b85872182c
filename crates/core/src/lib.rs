//! kordon-core: the deterministic decision engine of kordon.
//!
//! Given a position fix, is any order of any case breached, about to be, or
//! clear again? This crate answers that and nothing else: no IO, no clock, no
//! threads (the quinn-proto "sans-IO" model). Time arrives inside inputs and
//! through [`Engine::tick`]; events come out of every call. The MQTT server,
//! crash recovery, the simulator and replay all drive this same code.
//!
//! ```text
//! Case ──validate──▶ Engine::upsert_case ─┐
//! Fix ──────────────▶ Engine::ingest_fix ─┼─▶ Vec<Event> (opened / updated / cleared / late_breach)
//! Status ───────────▶ Engine::ingest_status┤
//! now ──────────────▶ Engine::tick ───────┘
//! ```

pub mod config;
pub mod decision;
pub mod engine;
pub mod episode;
pub mod geodesy;
mod index;
pub mod intent;
pub mod model;
pub mod order_checks;
pub mod passage;
pub mod patterns;
pub mod rfc3339;
pub mod schedule;
mod track;
pub mod validate;
pub mod zone;

pub use config::{ConfigError, EngineConfig};
pub use decision::Certainty;
pub use engine::{
    check_fix, BanHit, BanKind, CaseRejected, Disposition, Engine, FixOutcome, InputError,
    LastPosition, NearbyDevice, PositionRequest, SnapshotError,
};
pub use episode::{ClearReason, EpisodeId, Event, EventKind, Phase, PositionReport, Severity};
pub use intent::{ProximityContext, Reading};
pub use model::{
    Case, CaseId, Coordinator, DeviceId, Fix, GpsState, Input, KnownPlace, Language, Offender,
    Order, OrderId, PersonId, PlaceKind, ProtectedPerson, RiskLevel, Role, Rule, Status,
    StrapState, ZoneGeometry,
};
pub use passage::Passage;
pub use patterns::{Finding, PatternConfig, PatternKind};
pub use schedule::{Day, Schedule, Window};
pub use validate::{check_device_roles, validate_case, CaseError, Problem, ValidationReport};
