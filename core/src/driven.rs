//! The one driving surface every sans-IO machine of the core offers, so a driver has one
//! loop for all of them: the lock operations ([`Machine`]) and the operator commands
//! ([`crate::Inspect`] for `status`, [`crate::Reset`] for `reset`).
//!
//! The loop is the one documented on [`crate::machine`]: drain [`Driven::poll_transmit`],
//! feed [`Driven::handle_input`] / [`Driven::handle_disconnect`], call
//! [`Driven::handle_timeout`] at [`Driven::poll_timeout`], stop at [`Driven::poll_outcome`].
//! The trait only names those methods; each implementation keeps its own invariants.

use crate::Transmit;
use crate::machine::{Machine, Operation};
use crate::resp::BufferTooSmall;
use crate::time::Instant;

/// A sans-IO machine over up to `nodes` nodes: bytes and the time in, bytes, a deadline and
/// an outcome out. See the module doc for the loop.
pub trait Driven {
    /// What the machine ends with.
    type Outcome;

    /// The next bytes to send, written to the front of `buf`. Call until it returns
    /// `Ok(None)`. A short buffer is left untouched and the error says the size needed.
    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall>;

    /// Bytes read from `node`'s connection (any split, any coalescing).
    fn handle_input(&mut self, node: usize, bytes: &[u8], now: Instant);

    /// Time has reached [`Driven::poll_timeout`] (calling it early or late is harmless).
    fn handle_timeout(&mut self, now: Instant);

    /// `node`'s connection was lost or could not be opened.
    fn handle_disconnect(&mut self, node: usize, now: Instant);

    /// When to call [`Driven::handle_timeout`] next.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// The outcome, once; `None` until then.
    #[must_use]
    fn poll_outcome(&mut self) -> Option<Self::Outcome>;

    /// Gives the machine up; it then ends as soon as it can.
    fn cancel(&mut self, now: Instant);

    /// Replies `node`'s connection still owes the machine; `None`: out of step, reconnect.
    #[must_use]
    fn owed_replies(&self, node: usize) -> Option<u32>;
}

impl<Op: Operation, const N: usize> Driven for Machine<Op, N> {
    type Outcome = Op::Outcome;

    fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        Machine::poll_transmit(self, now, buf)
    }

    fn handle_input(&mut self, node: usize, bytes: &[u8], now: Instant) {
        Machine::handle_input(self, node, bytes, now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Machine::handle_timeout(self, now);
    }

    fn handle_disconnect(&mut self, node: usize, now: Instant) {
        Machine::handle_disconnect(self, node, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Machine::poll_timeout(self)
    }

    fn poll_outcome(&mut self) -> Option<Self::Outcome> {
        Machine::poll_outcome(self)
    }

    fn cancel(&mut self, now: Instant) {
        Machine::cancel(self, now);
    }

    fn owed_replies(&self, node: usize) -> Option<u32> {
        Machine::owed_replies(self, node)
    }
}
