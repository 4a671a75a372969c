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
//! ## Shape (every public item is re-exported here; the modules are private)
//! - **What to lock**: [`Lock`] = a checked [`LockName`] under a [`KeyLayout`] (distlock's
//!   own, redis-py's, python-redis-lock's) and [`LockOptions`] (TTL, fencing, re-entry,
//!   wake-up signals, [`RetryPolicy`], request timeout, [`Drift`]). Bounds: [`MAX_NODES`],
//!   [`MAX_TTL`], [`MAX_NAME_LEN`], [`MAX_PREFIX_LEN`], [`MIN_TOKEN_LEN`]..[`MAX_TOKEN_LEN`].
//! - **Connections**: [`Handshake`] learns a connection's RESP version and [`ServerInfo`];
//!   [`Session`] decides which nodes to (re)connect and when (connect deadlines bounded by
//!   the request timeout, jittered reconnect backoff) and whether a quorum is reachable.
//! - **Operations**: [`Acquire`], [`Release`], [`Extend`] are [`Machine`]s over up to `N`
//!   nodes; the driver loop, the same for every driver, is on [`Machine`]. An acquire yields a
//!   [`Lease`]; errors are [`Error`] (operations) and [`ConfigError`] (bad input).
//! - **Semaphores**: [`Lock::semaphore`] builds a counting semaphore of up to
//!   [`MAX_PERMITS`] permits; the same machines take, renew and release a permit, each a
//!   [`Lease`] of its own, reclaimed at its expiry when its holder dies.
//! - **Read-write locks**: [`Lock::rw`] builds one side ([`RwMode`]) of a read-write lock
//!   with writer preference; each read or write hold is a [`Lease`] of its own.
//! - **Multi-name locks**: [`Lock::multi`] takes up to [`MAX_MULTI_NAMES`] names all or
//!   nothing under one token and one [`Lease`]; released, extended and renewed together.
//! - **Get-or-compute** (the dogpile helper): [`GetOrLock`] returns a cached value, or the
//!   lock to compute it ([`Fetched`]), waiting for another computer's value rather than for
//!   its lock; [`FinishCompute`] stores the value and wakes every waiter, or gives up and
//!   wakes one. One node, values up to [`MAX_VALUE_LEN`].
//! - **Pipelined release**: [`PipelinedRelease`] writes a single-node release without
//!   waiting for its reply; the connection owes an [`OwedRelease`], read first by the next
//!   machine on it ([`Machine::owe_release`]) or by a [`ReleaseReader`], and checked as a
//!   [`ReleaseCheck`] (released, not ours, or unconfirmed — never "released" unread).
//! - **Holding**: [`Renewal`] schedules extends and says when a lease is lost;
//!   [`stop_deadlines`] says when a job under a lease must be terminated and killed so that it
//!   never outlives it.
//! - **Operator commands**: [`Inspect`] (`status`) and [`Reset`] (`reset`) are machines over
//!   up to `N` nodes too; [`verdict`] says held, free or unknown (never free when unread
//!   nodes could make a majority). Every machine is [`Driven`] the same way.
//! - **Redis Cluster**: a cluster is one node of a lock; [`lock_slot`] is the one hash slot a
//!   lock's keys share ([`key_slot`]: CRC16 of the hash tag), [`SlotMap`] says which
//!   [`Primary`] owns it (read from `CLUSTER SHARDS` / `CLUSTER SLOTS`, at most
//!   [`MAX_SHARDS`]), and [`Redirects`] says what a [`Redirect`] (`MOVED`, `ASK`,
//!   `TRYAGAIN`) means for a request, within [`MAX_REDIRECTS`] and its deadline;
//!   [`ClusterLink`] puts them together as one node's byte pipe for a driver;
//!   [`ClusterWalk`] says which primaries a `reset --all` must read, and refuses a partial
//!   read.
//! - **Durable leases**: [`Durability`] says what to send after an acquire or extend
//!   (`WAIT` / `WAITAOF`) and whether the reply confirms the lease ([`DurableError`]).
//! - **Redis Sentinel**: a sentinel group is one node of a lock too; [`Discovery`] says which
//!   sentinel to ask and when to give up, [`parse_primary_address`] and [`parse_role`] read
//!   the answers (a primary is used only once its `ROLE` says `master`; a sentinel that
//!   needs a password gets [`sentinel_auth_command`] first), and
//!   [`FailoverWatch`] says when a `READONLY` reply means the primary was demoted;
//!   [`SwitchSubscription`] keeps one `+switch-master` subscription per node (which sentinel,
//!   the pause after a loss) and says when an announced failover means the connections to
//!   the old primary must go.
//! - **Scripts**: [`SCRIPTS`], the Lua the protocol runs on a server, for operators who
//!   preload them (`SCRIPT LOAD`) or allow-list them by digest; [`DELETE_QUEUE`] and
//!   [`RESET_SEMAPHORE_OR_RW`], what `reset` sends by source for fair mode's queue and for a
//!   semaphore's or read-write lock's name.
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
//!   drift allowance: quorum + validity from the attempt's start ([`Acquire`]).
//! - Fencing tokens strictly increase across holders, on one node and on N ([`Acquire`]).
//! - Only the token's holder releases or extends (every release and extend compares the
//!   token and acts in one atomic step: a script or a native compare command).
//! - No input panics the core: every reply byte sequence is framed by a bounded scanner and
//!   either matched to a request or refused with a typed [`Error`].
#![no_std]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

extern crate alloc;

// Every module is private: the re-exports below are the API. `resp` and `script` open up
// under the `fuzzing` feature, for distlock's own fuzz targets, model server and simulator.
mod acquire;
mod ballot;
mod cluster;
mod cluster_link;
mod cluster_walk;
mod commands;
mod dialogue;
mod drift;
mod driven;
mod durable;
mod error;
mod extend;
mod fair;
mod get_or_compute;
mod handshake;
mod inspect;
mod keys;
mod limits;
mod link;
mod lock;
mod machine;
mod multi;
mod pipelined;
mod release;
mod renewal;
mod reset;
#[cfg(feature = "fuzzing")]
pub mod resp;
#[cfg(not(feature = "fuzzing"))]
mod resp;
mod retry;
mod rwlock;
#[cfg(feature = "fuzzing")]
pub mod script;
#[cfg(not(feature = "fuzzing"))]
mod script;
mod semaphore;
mod sentinel;
mod sentinel_switch;
mod server;
mod session;
mod slot;
mod stop;
mod time;
#[doc(hidden)]
pub mod wit;

pub use acquire::{Acquire, WAITING_MARK_LIFE};
pub use cluster::{
    ASKING, CLUSTER_SHARDS, CLUSTER_SLOTS, MAX_HOST_LEN, MAX_REDIRECTS, MAX_SHARDS, NextHop,
    Primary, Redirect, Redirects, RouteError, SLOT_MAP_REPLY_CAP, SlotMap, SlotMapError,
    TRY_AGAIN_DELAY, slot_map_reply_len,
};
pub use cluster_link::{ClusterLink, ClusterLinkError};
pub use cluster_walk::{ClusterWalk, ClusterWalkError};
pub use dialogue::{ADMIN_REPLY_CAP, NodeError};
pub use drift::Drift;
pub use driven::Driven;
pub use durable::{DURABLE_REPLY_CAP, DURABLE_TIMEOUT, Durability, DurableError};
pub use error::{
    ConfigError, Error, NodeFailure, ProtocolError, ScriptedFeature, ServerError, ServerErrorKind,
};
pub use extend::{Extend, Extended};
pub use get_or_compute::{Fetched, FinishCompute, GetOrLock, MAX_VALUE_LEN, MAX_WAKEUPS};
pub use handshake::{Credentials, Handshake, HandshakeError, HandshakeOptions};
pub use inspect::{
    Inspect, Inspection, Permits, Reading, RwHolds, Seen, Verdict, is_majority, verdict,
};
pub use keys::{
    DEFAULT_PREFIX, KeyLayout, KeyRole, Keys, LockName, PYTHON_REDIS_LOCK_PREFIX, REDIS_PY_PREFIX,
    RESET_SCAN_COUNT, RESET_WALK_LIMIT, Token,
};
pub use limits::{
    MAX_MULTI_NAMES, MAX_NAME_LEN, MAX_NODES, MAX_PERMITS, MAX_PREFIX_LEN, MAX_TOKEN_LEN, MAX_TTL,
    MIN_TOKEN_LEN,
};
pub use link::{REPLY_CAP, Transmit};
pub use lock::{Lease, Lock, LockOptions, Scripts, quorum};
pub use machine::{Machine, Operation};
pub use pipelined::{OwedRelease, PipelinedRelease, ReleaseCheck, ReleaseReader};
pub use release::{Release, Released};
pub use renewal::{ExtendOutcome, LostReason, Renewal, RenewalEvent};
pub use reset::{LeftAlone, NodeReset, Reset, ResetOutcome, Unfinished, WalkRefused, walk_pattern};
pub use resp::{BufferTooSmall, Protocol};
#[cfg(feature = "fuzzing")]
pub use retry::{Backoff, SplitMix64};
pub use retry::{Jitter, RetryPolicy, operation_seed};
pub use rwlock::RwMode;
pub use script::{DELETE_QUEUE, RESET_SEMAPHORE_OR_RW, SCRIPTS, Script};
pub use sentinel::{
    Asked, Discovery, DiscoveryError, DiscoveryStep, FailoverWatch, MAX_SENTINELS, ROLE, Role,
    SENTINEL_PORT, SENTINEL_REPLY_CAP, SENTINEL_ROUND_PAUSE, SENTINEL_ROUNDS, SentinelAnswer,
    SentinelReplyError, get_master_addr_command, parse_auth_reply, parse_primary_address,
    parse_role, sentinel_auth_command, sentinel_reply_len,
};
pub use sentinel_switch::{
    Pushed, SUBSCRIBE_RETRY_BASE, SUBSCRIBE_RETRY_CAP, SUBSCRIBE_SWITCH_MASTER,
    SWITCH_MASTER_CHANNEL, SubscribeStep, Switch, SwitchAction, SwitchSubscription, parse_pushed,
};
pub use server::{Flavor, NativeCommand, ServerInfo, Version};
pub use session::{
    ConnectOutcome, NodeDown, NodeState, RECONNECT, Reachability, Session, SessionOptions,
    reachability,
};
pub use slot::{SLOTS, SpansSlots, key_slot, lock_slot};
pub use stop::{StopDeadlines, stop_deadlines};
pub use time::{Duration, Instant};
