//! kordon-sim: the Rotterdam simulator and the alert-quality scorer.
//!
//! - [`geodata`]: the OpenStreetMap and CBS layers in `simulator/data/`.
//! - [`graph`]: a routable graph from the road lines, with its connectivity.
//! - [`world`]: the city, and day plans with a true position at every instant.
//! - [`scenario`]: scenario files: incident shares, noise, fix intervals.
//! - [`sim`]: pairs, routines, incidents, GPS noise, device messages, ground truth.
//! - [`answer`]: victim devices answering kordon's requests for a fresh position.
//! - [`live`]: publishing a simulation to a broker as it happens.
//! - [`recording`]: what `kordon-sim record` writes and `kordon replay` reads.
//! - [`score`]: alerts against the ground truth, as `kordon score` prints it.

pub mod answer;
pub mod geodata;
pub mod graph;
pub mod live;
pub mod recording;
pub mod scenario;
pub mod score;
pub mod sim;
pub mod world;

pub use recording::Recording;
pub use scenario::Scenario;
pub use sim::{generate, SimConfig};
pub use world::World;
