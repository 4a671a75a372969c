//! Releasing a lease: a compare-and-delete on every node, decided by quorum ([`crate::ballot`]).
//!
//! A release hears every node out (each within its reply deadline) before it reports, so a
//! slow node's key is deleted too and not left to its TTL. With wake-up signals on, the
//! delete also pushes the signal a waiter blocks on. A reentrant lock is free only after as
//! many releases as acquires ([`Released::StillHeld`]).

use crate::ballot::{Ballot, ballot_operation};
use crate::commands::{Answer, Request};
use crate::error::{ConfigError, Error};
use crate::keys::Token;
use crate::lock::Lock;
use crate::machine::{Context, Decide, Machine};
use crate::server::ServerInfo;
use crate::time::Instant;

/// Releases a lease over up to `N` nodes. See [`Machine`] for the driver loop.
pub type Release<const N: usize> = Machine<ReleaseOp, N>;

/// A successful release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Released {
    /// The lock is free (and a waiter was signalled, when signals are on).
    Free,
    /// A reentrant lock is still held this many times by the token.
    StillHeld {
        /// Holds left.
        holds: u32,
    },
}

/// The decisions of a release (the operation behind [`Release`]).
#[derive(Debug, Clone)]
pub struct ReleaseOp(Ballot);

impl<const N: usize> Machine<ReleaseOp, N> {
    /// Starts releasing `lock` held by `token` on the nodes described by `servers`. Works
    /// from any process that has the token. `seed` randomises retry jitter.
    pub fn new(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        let (ctx, ballot) = Ballot::start(Request::Release, lock, token, servers, now, seed)?;
        Ok(Machine {
            ctx,
            op: ReleaseOp(ballot),
        })
    }
}

ballot_operation!(ReleaseOp, Released, |_, holds| {
    if holds == 0 {
        Released::Free
    } else {
        Released::StillHeld { holds }
    }
});
