//! Extending a lease: a compare-and-extend on every node, decided by quorum ([`crate::ballot`]).
//!
//! The new validity is measured from the moment the extend started, before any request
//! left, as an acquire's is: `started + ttl - drift` ([`Extended`]). An extend may report as
//! soon as its quorum is in.

use crate::ballot::{Ballot, ballot_operation};
use crate::commands::{Answer, Request};
use crate::error::{ConfigError, Error};
use crate::keys::Token;
use crate::lock::Lock;
use crate::machine::{Context, Decide, Machine};
use crate::server::ServerInfo;
use crate::time::Instant;

/// Extends a lease over up to `N` nodes. See [`Machine`] for the driver loop.
pub type Extend<const N: usize> = Machine<ExtendOp, N>;

/// A successful extend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extended {
    /// When the extend started (validity counts from here).
    pub started: Instant,
    /// Until when the holder may now act as the owner.
    pub valid_until: Instant,
}

/// The decisions of an extend (the operation behind [`Extend`]).
#[derive(Debug, Clone)]
pub struct ExtendOp(Ballot);

impl<const N: usize> Machine<ExtendOp, N> {
    /// Starts extending `lock` held by `token` to a fresh TTL (`lock`'s; see
    /// [`Lock::with_ttl`] for another span) on the nodes described by `servers`.
    pub fn new(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        let (ctx, ballot) = Ballot::start(Request::Extend, lock, token, servers, now, seed)?;
        Ok(Machine {
            ctx,
            op: ExtendOp(ballot),
        })
    }
}

ballot_operation!(ExtendOp, Extended, |ballot, _| Extended {
    started: ballot.started(),
    valid_until: ballot.valid_until(),
});
