//! The machine an [`crate::operation::Operation`] runs, and its constructors sized to the
//! session: an acquire, release or extend over one node is built for one node
//! (`Acquire<1>`, …), over more for [`MAX_NODES`].
//!
//! Why: a machine carries per-node state for as many nodes as its capacity, and almost every
//! session has one node. Built for `MAX_NODES`, every operation would build and copy several
//! kilobytes it never uses; built for one node, it copies a fraction of that.
//!
//! Invariant: the size is the only difference. Both capacities run the same core machine
//! with the same lock, token, servers, time and seed, and a machine is built for one node
//! only when the session has exactly one server, so the core's checks (node count, fair
//! queues, semaphores, read-write locks on one node only) decide as they would for
//! `MAX_NODES`.

use alloc::boxed::Box;

use distlock_core::{
    Acquire, ConfigError, Duration, Extend, FinishCompute, GetOrLock, Inspect, Instant, Lock,
    MAX_NODES, Release, Reset, ServerInfo, Token,
};

/// The machine an operation runs. Boxed: each carries its nodes' reply buffers.
pub(crate) enum Machine {
    Acquire(Box<Acquire<MAX_NODES>>),
    AcquireOne(Box<Acquire<1>>),
    Release(Box<Release<MAX_NODES>>),
    ReleaseOne(Box<Release<1>>),
    Extend(Box<Extend<MAX_NODES>>),
    ExtendOne(Box<Extend<1>>),
    Status(Box<Inspect>),
    Reset(Box<Reset>),
    GetOrLock(Box<GetOrLock>),
    FinishCompute(Box<FinishCompute>),
}

/// Runs `$body` with `$m` bound to the machine, as a [`distlock_core::Driven`].
macro_rules! driven {
    ($machine:expr, $m:ident => $body:expr) => {
        match $machine {
            Machine::Acquire($m) => $body,
            Machine::AcquireOne($m) => $body,
            Machine::Release($m) => $body,
            Machine::ReleaseOne($m) => $body,
            Machine::Extend($m) => $body,
            Machine::ExtendOne($m) => $body,
            Machine::Status($m) => $body,
            Machine::Reset($m) => $body,
            Machine::GetOrLock($m) => $body,
            Machine::FinishCompute($m) => $body,
        }
    };
}
pub(crate) use driven;

/// Whether `servers` is a one-node session's, for which the one-node machines are built.
fn one_node(servers: &[ServerInfo]) -> bool {
    servers.len() == 1
}

impl Machine {
    /// [`Acquire::new`], sized to `servers`.
    pub(crate) fn acquire(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        wait: Duration,
        now: Instant,
        seed: u64,
    ) -> Result<Machine, ConfigError> {
        Ok(if one_node(servers) {
            Machine::AcquireOne(Box::new(Acquire::new(
                lock, token, servers, wait, now, seed,
            )?))
        } else {
            Machine::Acquire(Box::new(Acquire::new(
                lock, token, servers, wait, now, seed,
            )?))
        })
    }

    /// [`Release::new`], sized to `servers`.
    pub(crate) fn release(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        now: Instant,
        seed: u64,
    ) -> Result<Machine, ConfigError> {
        Ok(if one_node(servers) {
            Machine::ReleaseOne(Box::new(Release::new(lock, token, servers, now, seed)?))
        } else {
            Machine::Release(Box::new(Release::new(lock, token, servers, now, seed)?))
        })
    }

    /// [`Extend::new`], sized to `servers`.
    pub(crate) fn extend(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        now: Instant,
        seed: u64,
    ) -> Result<Machine, ConfigError> {
        Ok(if one_node(servers) {
            Machine::ExtendOne(Box::new(Extend::new(lock, token, servers, now, seed)?))
        } else {
            Machine::Extend(Box::new(Extend::new(lock, token, servers, now, seed)?))
        })
    }
}
