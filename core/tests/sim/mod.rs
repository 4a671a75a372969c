//! The deterministic simulator: a world of model Redis nodes, a faulty network, drifting
//! clocks and clients driving the real `distlock-core` machines; see `tests/simulation.rs`.
// Shared by the simulation test crate only, not a public API.
#![allow(unreachable_pub)]

pub mod check;
pub mod params;
pub mod wakeup;
pub mod world;

pub use check::Property;
pub use params::{Faults, Params, Variant};
pub use world::{Report, TRACE_TAIL, run};
