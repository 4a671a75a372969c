//! # distlock-host
//!
//! Drives the `distlock-core` lock machines over real connections. What a Rust program and a
//! shell user touch:
//!
//! - [`Client`]: one Redis node, several for Redlock, or the embedded in-process store;
//!   connections are pooled per node, TLS (`rediss://`) and ACL users come from the URL.
//! - [`LockBuilder`] → [`Guard`]: acquire with a wait, a TTL, fencing, re-entry and
//!   auto-renewal; the guard reports its validity and loss, and releases on drop.
//! - [`Client::get_or_compute`]: the dogpile helper — one caller computes a missing value
//!   under the name's lock, the others wait for the value ([`ComputeOptions`],
//!   [`ComputeError`]; in two steps, for a computation that is no closure,
//!   [`Client::begin_compute`] → [`Begun`] / [`Computation`]; the core's `GetOrLock` and
//!   `FinishCompute` decide, `compute.rs` runs the computation).
//! - [`blocking`]: the same API for code without an async runtime.
//! - The `distlock` command (`src/bin/distlock/`): `exec`, `acquire`, `release`, `extend`,
//!   `compute`, `status`, `reset`, `demo`.
//!
//! The host makes no lock decision of its own. Retry, quorum, validity and fencing
//! ([`distlock_core::Acquire`], `Release`, `Extend`), renewal ([`distlock_core::Renewal`]),
//! which node to (re)connect and when ([`distlock_core::Session`]), what `status` and `reset`
//! read and delete ([`distlock_core::Inspect`], [`distlock_core::Reset`]), when a job under a
//! lease is stopped ([`distlock_core::stop_deadlines`]) and the node limit ([`MAX_NODES`]) are
//! the core's; this crate opens sockets, moves bytes, reads the clock and draws entropy.
//!
//! ## From a lock name to the bytes, one straight line
//! `distlock exec --name backup -- ./backup.sh`:
//! 1. `src/bin/distlock/main.rs` parses the command line into a [`Client`] and a
//!    [`LockBuilder`] (`exec.rs` runs the job);
//! 2. `guard.rs` ([`LockBuilder::acquire`]) checks the name into a `distlock_core::Lock`, draws
//!    the token and seed (`entropy.rs`) and asks the client to run an `Acquire` machine;
//! 3. `client.rs` builds the machine from what each node's handshake learned and hands it to
//!    `drive.rs`;
//! 4. `drive.rs` is the core's driver loop: it writes each `poll_transmit` to its node's
//!    connection, feeds what it reads to `handle_input`, sleeps until `poll_timeout`, and stops
//!    at `poll_outcome`;
//! 5. `pool.rs` lends the connections, opening one when the core's session allows it, and
//!    `conn.rs` is the socket (TCP or TLS, `HELLO`/`AUTH` by the core's `Handshake`).
//!
//! Nothing flows back up but the outcome: the core never calls the host, and each file above
//! imports only the ones after it.

mod admin;
pub mod blocking;
mod client;
mod clock;
mod cluster;
mod cluster_reset;
#[cfg(feature = "component")]
pub mod component;
mod compute;
mod conn;
mod drive;
mod durable;
mod embedded;
mod endpoint;
mod entropy;
mod error;
mod guard;
mod pipelined;
mod pool;
mod release_check;
mod sentinel;
mod sentinel_switch;

pub use admin::{NodeReset, NodeStatus, Permits, ResetDone, ResetReport, RwHolds, Status, Verdict};
pub use client::{Client, LockBuilder};
pub use compute::{Begun, Computation, ComputeError, ComputeOptions};
pub use conn::{ConnectOptions, TlsSettings};
pub use distlock_core::ReleaseCheck;
pub use distlock_core::{
    ConfigError, Durability, DurableError, Extended, KeyLayout, LockOptions, NativeCommand,
    Released, RetryPolicy, ScriptedFeature, Scripts,
};
pub use endpoint::Endpoint;
pub use error::Error;
pub use guard::Guard;
pub use release_check::PipelinedReleases;

/// The most nodes a client can run Redlock over (the core's limit, for every driver).
pub use distlock_core::MAX_NODES;
pub use distlock_core::RwMode;
