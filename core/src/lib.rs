//! # distlock-core
//!
//! The lock protocol of distlock as pure state machines: a distributed lock over
//! Redis-protocol servers (Redis, Valkey), on one node or by Redlock quorum over several.
//!
//! **This crate does no I/O, reads no clock and draws no randomness.** The caller hands in
//! the bytes read from each node, the current time on its monotonic clock, and entropy
//! (tokens, jitter seeds); it takes out the bytes to send to node `i`, the next deadline,
//! and the outcome. One core therefore serves every driver: the tokio host, the WebAssembly
//! component, the deterministic simulator and the fuzzer. It is `#![no_std]` with `alloc`
//! (only decoded aggregate replies allocate; the single-node hot path does not).
//!
//! ## Shape
//! - [`Lock`]: a checked name and [`LockOptions`] (TTL, fencing, re-entry, wake-up signals,
//!   retry, timeouts, clock drift).
//! - [`Handshake`]: learns a connection's RESP version and server version, so the lock
//!   machines can use native compare commands where the server has them.
//! - [`Acquire`], [`Release`], [`Extend`]: [`Machine`]s over `N` nodes. The driver loop is
//!   documented on [`machine`].
//! - [`Session`]: which of the nodes to (re)connect and when, connect deadlines, reconnect
//!   backoff, and whether a quorum is reachable ([`session`]).
//! - [`stop_deadlines`]: when a job run under a lease must be terminated and killed so that
//!   it never outlives the lease ([`stop`]).
//!
//! ```
//! use distlock_core::{Acquire, Instant, Duration, KeyLayout, Lock, LockOptions, ServerInfo, Token};
//!
//! let lock = Lock::new(KeyLayout::default(), b"invoices", LockOptions::default()).unwrap();
//! let token = Token::from_entropy([7; 16]); // use OS randomness in real code
//! let now = Instant::from_millis(0);
//! let mut acquire: Acquire<1> =
//!     Acquire::new(&lock, token, &[ServerInfo::default()], Duration::ZERO, now, 42).unwrap();
//!
//! let mut buf = [0u8; 512];
//! let tx = acquire.poll_transmit(now, &mut buf).unwrap().unwrap();
//! assert!(buf[..tx.len].starts_with(b"*6\r\n$3\r\nSET\r\n"));
//!
//! // The server answers; the lease is valid for ttl minus the drift allowance.
//! acquire.handle_input(tx.node, b"+OK\r\n", Instant::from_millis(1));
//! let lease = acquire.poll_outcome().unwrap().unwrap();
//! assert_eq!(lease.valid_until(), Instant::from_millis(30_000 - 302));
//! ```
//!
//! ## Guarantees (and where they are shown)
//! - Mutual exclusion while the lease is valid, given node persistence and clocks within the
//!   drift allowance: quorum + validity from the attempt's start ([`acquire`] docs).
//! - Fencing tokens strictly increase across holders, on one node and on N ([`acquire`]).
//! - Only the token's holder releases or extends ([`script`]; compare-and-act is atomic).
//! - No input panics the core: every reply byte sequence is framed by a bounded scanner and
//!   either matched to a request or refused with a typed [`Error`].
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

extern crate alloc;

pub mod acquire;
pub mod ballot;
pub mod error;
pub mod handshake;
pub mod keys;
mod link;
pub mod lock;
pub mod machine;
pub mod renewal;
pub mod resp;
pub mod retry;
pub mod script;
pub mod server;
pub mod session;
pub mod stop;
pub mod time;
pub mod wit;

pub use acquire::Acquire;
pub use ballot::{Extend, Extended, Release, Released};
pub use error::{ConfigError, Error, NodeFailure, ProtocolError, ServerError, ServerErrorKind};
pub use handshake::{Credentials, Handshake, HandshakeError, HandshakeOptions};
pub use keys::{KeyLayout, KeyRole, LockName, Token};
pub use link::{REPLY_CAP, Transmit};
pub use lock::{Drift, Lease, Lock, LockOptions, MAX_NODES, quorum};
pub use machine::Machine;
pub use renewal::{ExtendOutcome, LostReason, Renewal, RenewalEvent};
pub use resp::{BufferTooSmall, Protocol};
pub use retry::{Jitter, RetryPolicy, operation_seed};
pub use server::{Flavor, ServerInfo, Version};
pub use session::{
    ConnectOutcome, NodeDown, NodeState, Reachability, Session, SessionOptions, reachability,
};
pub use stop::{StopDeadlines, stop_deadlines};
pub use time::{Duration, Instant};
