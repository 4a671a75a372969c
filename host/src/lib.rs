//! # distlock-host
//!
//! Drives the `distlock-core` lock machines over real connections. What a Rust program and a
//! shell user touch:
//!
//! - [`Client`]: one Redis node, several for Redlock, or the embedded in-process store;
//!   connections are pooled per node, TLS (`rediss://`) and ACL users come from the URL.
//! - [`LockBuilder`] → [`Guard`]: acquire with a wait, a TTL, fencing, re-entry and
//!   auto-renewal; the guard reports its validity and loss, and releases on drop.
//! - [`blocking`]: the same API for code without an async runtime.
//! - The `distlock` command (`src/bin/distlock/`): `exec`, `acquire`, `release`, `extend`,
//!   `status`, `reset`, `demo`.
//!
//! The host makes no lock decision of its own: retry, quorum, validity and fencing are the
//! core's; this crate moves bytes and keeps time.

mod admin;
pub mod blocking;
mod client;
mod clock;
#[cfg(feature = "component")]
pub mod component;
mod conn;
mod drive;
mod embedded;
mod endpoint;
mod entropy;
mod error;
mod guard;
mod pool;

pub use admin::{NodeReset, NodeStatus, ResetDone, ResetReport, Status, Verdict};
pub use client::{Client, LockBuilder};
pub use conn::{ConnectOptions, TlsSettings};
pub use distlock_core::{Extended, KeyLayout, LockOptions, Released, RetryPolicy};
pub use endpoint::Endpoint;
pub use error::Error;
pub use guard::Guard;

/// The most nodes a client can run Redlock over (the core's limit, for every driver).
pub use distlock_core::MAX_NODES;
