//! Connecting to a set of nodes: when the set is ready for lock operations, when it can no
//! longer be, and how soon to try a node that refused again.
//!
//! Drivers open the sockets and read the clocks; these are the decisions they ask about, so
//! that every driver waits for the same quorum and backs off the same way. A node that has
//! not answered yet is neither a vote nor a failure: the driver decides, by its deadline
//! (the lock's request timeout), when to stop waiting for it.
//!
//! Invariants: [`reachability`] says `Ready` exactly when a quorum has answered, and
//! `Unreachable` exactly when a quorum can no longer answer even if every pending node does;
//! [`RECONNECT`] is a valid [`RetryPolicy`] whose delays are never zero.

use crate::lock::quorum;
use crate::retry::{Jitter, RetryPolicy};
use crate::time::Duration;

/// Where connecting to a set of nodes stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reachability {
    /// A quorum has answered: lock operations can run (the rest may join later).
    Ready,
    /// Not yet a quorum, but the nodes still pending could make one.
    Waiting,
    /// Too many nodes failed for a quorum, whatever the pending ones do.
    Unreachable,
}

/// Where connecting to `nodes` nodes stands once `answered` have answered and `failed` have
/// failed (the rest are pending). Counts above `nodes` are treated as `nodes`.
#[must_use]
pub const fn reachability(nodes: usize, answered: usize, failed: usize) -> Reachability {
    let needed = quorum(nodes);
    if answered >= needed {
        Reachability::Ready
    } else if nodes.saturating_sub(failed) < needed {
        Reachability::Unreachable
    } else {
        Reachability::Waiting
    }
}

/// The pauses before connecting again to a node whose last connect failed: 100 ms, doubling
/// up to 2 s. No jitter: one client's reconnects to one node are what is spaced out, and a
/// refused connect is cheap for the server; the pause keeps a down node from costing every
/// operation a connect.
pub const RECONNECT: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
    jitter: Jitter::None,
    max_attempts: None,
};

/// The pause before the next connect to a node after `failures` failed connects in a row
/// (0: none, connect at once): [`RECONNECT`]'s delays, for a driver that counts failures
/// instead of keeping a backoff.
#[must_use]
pub const fn reconnect_pause(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = if failures - 1 < 32 { failures - 1 } else { 32 };
    RECONNECT
        .base
        .saturating_mul(1u64 << doublings)
        .min(RECONNECT.cap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Backoff;

    #[test]
    fn three_nodes() {
        use Reachability::*;
        assert_eq!(reachability(3, 0, 0), Waiting);
        assert_eq!(reachability(3, 1, 1), Waiting);
        assert_eq!(reachability(3, 2, 0), Ready);
        assert_eq!(reachability(3, 2, 1), Ready);
        assert_eq!(reachability(3, 0, 2), Unreachable);
        assert_eq!(reachability(3, 1, 2), Unreachable);
    }

    #[test]
    fn one_node_is_its_own_quorum() {
        assert_eq!(reachability(1, 1, 0), Reachability::Ready);
        assert_eq!(reachability(1, 0, 0), Reachability::Waiting);
        assert_eq!(reachability(1, 0, 1), Reachability::Unreachable);
    }

    #[test]
    fn counted_pauses_are_the_policys_delays() {
        let mut backoff = Backoff::new(RECONNECT, 0);
        assert_eq!(reconnect_pause(0), Duration::ZERO);
        for failures in 1..40 {
            assert_eq!(
                reconnect_pause(failures),
                backoff.next_delay(),
                "{failures}"
            );
        }
        assert_eq!(reconnect_pause(u32::MAX), RECONNECT.cap);
    }

    #[test]
    fn reconnect_pauses_double_to_the_cap() {
        assert_eq!(RECONNECT.validate(), Ok(()));
        let mut backoff = Backoff::new(RECONNECT, 0);
        let got: alloc::vec::Vec<u64> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 800, 1600, 2000, 2000]);
    }

    proptest::proptest! {
        #[test]
        fn ready_means_a_quorum_answered_and_unreachable_means_none_can(
            nodes in 1usize..=16,
            answered in 0usize..=16,
            failed in 0usize..=16,
        ) {
            let answered = answered.min(nodes);
            let failed = failed.min(nodes - answered);
            let pending = nodes - answered - failed;
            let state = reachability(nodes, answered, failed);
            proptest::prop_assert_eq!(state == Reachability::Ready, answered >= quorum(nodes));
            proptest::prop_assert_eq!(
                state == Reachability::Unreachable,
                answered + pending < quorum(nodes)
            );
        }
    }
}
