//! kordon-server: the `kordon` service around the deterministic engine.
//!
//! ```text
//!  broker ──▶ ingest_link ──decode──▶ engine's queue ──▶ core_thread ──alerts, at once──▶ mqtt::run_publisher ──▶ publishing link ──▶ broker
//!    ▲         (reads only when the      ▲   ▲           (Engine, AlertDesk, ──records + acks──▶ journal writer
//!    │          queue has room)           │   │            Deliveries)                          (group commit)
//!    └─ acks ◀──────────────────────────────────── a commit's acks, once durable ──────────────────┘
//!  1 s tick (mqtt::run_ticker) ──────────┘   │
//!  HTTP (axum) ──────── commands ────────────┘
//! ```
//!
//! Every arrow is a bounded queue, and every sender waits when its queue is
//! full. The ingest link reads no further while the engine's queue is full
//! but still writes acknowledgements and keep-alives, so an overload ends at
//! the broker, which holds the messages kordon has not acknowledged.
//!
//! - [`config`]: the `kordon.toml` file.
//! - [`server`]: start and graceful shutdown.
//! - [`core_thread`]: the engine's own thread, its commands, journal replay.
//! - [`delivery`]: publishing each alert message once, across crashes.
//! - [`demo`]: `kordon demo`, everything in one process with the simulator.
//! - [`ingest_link`]: the subscribing connection, which reads only as fast
//!   as kordon handles messages.
//! - [`mqtt`]: decoding into commands, the ticker, the publisher and the
//!   publishing link.
//! - [`dispatch`]: the police's CAP messages as an Atom feed and webhooks.
//! - [`http`]: the API and its roles.
//! - [`web`], [`session`], [`live`], [`history`], [`intake`]: the dashboard:
//!   its files, sign-in, the live stream, what the journal tells people,
//!   case files checked before they apply.
//! - [`health`]: broker links and journal commits, for `/healthz`.
//! - [`engine_time`]: the time ticks carry, also while draining a backlog.
//! - [`replay`]: a recording through the engine on virtual time (`kordon replay`).
//! - [`cases`]: the case directory.
//! - [`clock`]: the time drivers stamp inputs with (scaled in the demo).
//! - `embedded`: rumqttd inside the process (feature `embedded-broker`).

pub mod cases;
pub mod clock;
pub mod cluster_node;
pub mod config;
pub mod core_thread;
pub mod delivery;
pub mod demo;
pub mod dispatch;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod engine_time;
pub mod health;
pub mod history;
pub mod http;
pub mod ingest_link;
pub mod intake;
pub mod live;
pub mod metrics;
pub mod mqtt;
pub mod replay;
pub mod server;
pub mod session;
pub mod web;

pub use config::Config;
pub use server::{
    recover_state, start, start_with, OnDamagedJournal, RecoveryStats, Running, StartError,
};
