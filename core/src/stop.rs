//! When a job run under a lease must be stopped: the rule that keeps a job from outliving
//! its lock.
//!
//! The rule is documented on [`stop_deadlines`].

use crate::time::{Duration, Instant};

/// When to ask the job to stop and when to kill it; see [`stop_deadlines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopDeadlines {
    /// Ask the job to end (SIGTERM) at this instant.
    pub term: Instant,
    /// Kill the job (SIGKILL) at this instant: strictly before the lease's validity ends.
    pub kill: Instant,
}

/// The longest margin kept between the kill and the end of the validity.
const KILL_MARGIN_MAX: Duration = Duration::from_secs(1);

/// The time kept between the kill and the end of the lease's validity: a tenth of the TTL,
/// at least 1 ms and at most 1 s (enough for a kill to land on a loaded machine, little
/// enough not to eat into short TTLs).
#[must_use]
pub(crate) const fn kill_margin(ttl: Duration) -> Duration {
    Duration::from_millis(ttl.as_millis() / 10)
        .min(KILL_MARGIN_MAX)
        .max(Duration::from_millis(1))
}

/// The longest grace a job gets between the termination and the kill under a lease of `ttl`:
/// `grace` bounded by a third of the TTL (see [`stop_deadlines`]).
#[must_use]
pub(crate) const fn bounded_grace(ttl: Duration, grace: Duration) -> Duration {
    grace.min(Duration::from_millis(ttl.as_millis() / 3))
}

/// When to terminate and when to kill a job whose lease (of `ttl`) is valid until
/// `valid_until`, given that the job should get `grace` to end after the termination, at
/// `now`. Never panics; see [`stop_deadlines`] for the guarantees.
///
/// When a job run under a lease must be stopped: the rule that keeps a job from outliving
/// its lock.
///
/// A driver that runs a job while it holds a lease (the host's `distlock exec`) asks a
/// termination signal to be sent at [`StopDeadlines::term`] and a kill at
/// [`StopDeadlines::kill`]. A job still running when the lease's validity ends would be a
/// second holder beside the next one, so:
///
/// - `kill` is **strictly before** `valid_until` (whenever `valid_until` is after the clock's
///   origin): a margin (a tenth of the TTL, 1 ms to 1 s) is left for the kill to land and the kernel to tear the
///   job down before the validity runs out;
/// - `term ≤ kill`: the job gets up to `grace` to end by itself, but never past the kill;
/// - the grace is bounded by a third of the TTL, so a lease renewed on schedule (the host
///   renews every third of the TTL and retries until the validity ends) is renewed before the
///   termination is due: a healthy job is never signalled, however long a grace was asked
///   for;
/// - a deadline already past means "now": `term` is never set before `now` unless `kill` is,
///   so a driver that acts on `now >= term` signals at once and not twice.
///
/// Deadlines move forward when a renewal moves `valid_until` forward: compute them again
/// after every renewal (or whenever a deadline comes, before acting on it).
///
/// When the lock is known to be someone else's (an extend found another token, or none), the
/// deadlines are moot: stop the job at once, termination and kill together.
#[must_use]
pub const fn stop_deadlines(
    valid_until: Instant,
    ttl: Duration,
    grace: Duration,
    now: Instant,
) -> StopDeadlines {
    let kill = valid_until.saturating_sub(kill_margin(ttl));
    let term = kill.saturating_sub(bounded_grace(ttl, grace));
    // Already due: now (or the kill, if that is earlier still).
    let earliest = if now.as_millis() < kill.as_millis() {
        now
    } else {
        kill
    };
    let term = if term.as_millis() < earliest.as_millis() {
        earliest
    } else {
        term
    };
    StopDeadlines { term, kill }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn a_fresh_thirty_second_lease_terminates_ten_seconds_before_the_kill() {
        // Acquired at 1 000 with a 30 s TTL (validity 29 698 after the drift allowance).
        let d = stop_deadlines(at(30_698), ms(30_000), ms(10_000), at(1_000));
        assert_eq!(d.kill, at(29_698));
        assert_eq!(d.term, at(19_698));
        // The first renewal is due at 11 000: well before the termination.
        assert!(d.term > at(11_000));
    }

    #[test]
    fn a_long_grace_is_bounded_by_a_third_of_the_ttl() {
        // 3 s TTL, 10 s grace asked: the job gets 1 s, and a renewal at 1/3 TTL comes first.
        let d = stop_deadlines(at(2_700), ms(3_000), ms(10_000), at(0));
        assert_eq!(d.kill, at(2_400));
        assert_eq!(d.term, at(1_400));
        assert!(d.term > at(1_000));
    }

    #[test]
    fn a_renewal_moves_both_deadlines_forward() {
        let before = stop_deadlines(at(10_000), ms(9_000), ms(2_000), at(3_000));
        let after = stop_deadlines(at(13_000), ms(9_000), ms(2_000), at(6_000));
        assert!(after.term > before.term && after.kill > before.kill);
    }

    #[test]
    fn a_lease_about_to_end_is_terminated_now_and_killed_before_it_ends() {
        let d = stop_deadlines(at(10_000), ms(30_000), ms(10_000), at(9_500));
        assert_eq!(d.kill, at(9_000));
        assert_eq!(d.term, at(9_000));
        let d = stop_deadlines(at(10_000), ms(30_000), ms(10_000), at(8_500));
        assert_eq!((d.term, d.kill), (at(8_500), at(9_000)));
    }

    #[test]
    fn margins_stay_within_their_bounds() {
        assert_eq!(kill_margin(ms(0)), ms(1));
        assert_eq!(kill_margin(ms(5)), ms(1));
        assert_eq!(kill_margin(ms(3_000)), ms(300));
        assert_eq!(kill_margin(Duration::MAX), ms(1_000));
        assert_eq!(bounded_grace(ms(3_000), ms(10)), ms(10));
    }

    proptest! {
        #[test]
        fn kill_is_strictly_before_the_validity_and_term_never_after_kill(
            valid_until in any::<u64>(),
            ttl in prop_oneof![0u64..100_000, any::<u64>()],
            grace in prop_oneof![0u64..100_000, any::<u64>()],
            now in any::<u64>(),
        ) {
            let d = stop_deadlines(at(valid_until), ms(ttl), ms(grace), at(now));
            if valid_until > 0 {
                prop_assert!(d.kill < at(valid_until));
            }
            prop_assert!(d.term <= d.kill);
            // Never before now unless the kill itself is.
            prop_assert!(d.term >= at(now).min(d.kill));
            // The job never gets more than the bounded grace.
            prop_assert!(d.kill.saturating_since(d.term) <= bounded_grace(ms(ttl), ms(grace)));
        }

        #[test]
        fn a_later_validity_never_brings_a_deadline_earlier(
            valid_until in 0u64..1 << 40,
            later in 0u64..1 << 20,
            ttl in 0u64..1 << 30,
            grace in 0u64..1 << 30,
            now in 0u64..1 << 40,
        ) {
            let a = stop_deadlines(at(valid_until), ms(ttl), ms(grace), at(now));
            let b = stop_deadlines(at(valid_until + later), ms(ttl), ms(grace), at(now));
            prop_assert!(b.kill >= a.kill && b.term >= a.term);
        }
    }
}
