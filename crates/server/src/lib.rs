//! kordon-server: the `kordon` service around the deterministic engine.
//!
//! ```text
//!  broker ──▶ mqtt::run_connection ──decode──▶ core_thread (Engine + AlertDesk) ──▶ mqtt::run_publisher ──▶ broker
//!                   │ refusals ─────────────────────────────────────────────────────▲
//!  1 s tick ───────────────────────────────▶ core_thread
//!  HTTP (axum) ────────── commands ────────▶ core_thread
//! ```
//!
//! - [`config`]: the `kordon.toml` file.
//! - [`server`]: start and graceful shutdown.
//! - [`core_thread`]: the engine's own thread and its commands.
//! - [`mqtt`]: the connection and publisher tasks.
//! - [`http`]: the API and its roles.
//! - [`cases`]: the case directory.
//! - `embedded`: rumqttd inside the process (feature `embedded-broker`).

pub mod cases;
pub mod config;
pub mod core_thread;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
pub mod http;
pub mod metrics;
pub mod mqtt;
pub mod server;

pub use config::Config;
pub use server::{start, Running, StartError};
