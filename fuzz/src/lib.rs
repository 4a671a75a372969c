//! The fuzz harness of `distlock-core`, shared by the targets in `fuzz_targets/`.
//!
//! - [`cluster`]: the `cluster_routing` target (slot maps and the cluster link);
//! - [`driver`]: drives a lock machine, accounts for each connection and checks the
//!   invariants after every call (the module doc lists them);
//! - [`wire`]: decodes what a machine sends with `redis-protocol` and checks every argument;
//! - [`replies`]: replies chosen by meaning and encoded for the command they answer;
//! - [`records`], [`events`], [`encoding`]: the three targets' inputs;
//! - [`meter`]: the counting allocator behind the memory bounds;
//! - [`seeds`]: writes `event_sequence` inputs for the seed corpus;
//! - [`reach`]: counters of what a corpus reaches (`examples/reach.rs`).

pub mod cluster;
pub mod driver;
pub mod encoding;
pub mod events;
pub mod handshake;
pub mod meter;
pub mod reach;
pub mod records;
pub mod replies;
pub mod seeds;
pub mod setup;
pub mod wire;
