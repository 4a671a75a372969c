//! When to renew a held lease, and when it is lost: the watchdog's schedule, sans-IO.
//!
//! The schedule is documented on [`Renewal`].

use crate::lock::Lock;
use crate::retry::{Backoff, Jitter, RetryPolicy};
use crate::time::{Duration, Instant};

/// What the schedule asks of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenewalEvent {
    /// Send an extend now (to the lease's TTL), then report its outcome with
    /// [`Renewal::handle_extend_outcome`].
    Extend,
    /// The lease is lost: stop acting as its holder.
    Lost(LostReason),
}

/// How the extend asked for by [`RenewalEvent::Extend`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExtendOutcome {
    /// Extended: when that extend started, and the new validity
    /// ([`crate::Extended::started`], [`crate::Extended::valid_until`]).
    Extended {
        /// When the extend's first request left.
        started: Instant,
        /// Until when the lease is now valid.
        valid_until: Instant,
    },
    /// The lock is not held by this token ([`crate::Error::NotHeld`]).
    NotHeld,
    /// Anything else: no quorum answered in time, a connection failed, a server error.
    Failed,
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostReason {
    /// Its validity ran out before an extend succeeded (the servers could not be reached).
    Expired,
    /// An extend found the lock no longer held by this token (expired, or reset by an
    /// operator): someone else may hold it now.
    NotHeld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Held; the next extend is due at `next`.
    Waiting { next: Instant },
    /// An extend is out; its outcome is awaited.
    Extending,
    /// Lost; nothing more to do.
    Lost(LostReason),
}

/// The renewal schedule of one held lease. See the module doc for the rules.
///
/// When to renew a held lease, and when it is lost: the watchdog's schedule, sans-IO.
///
/// A driver holding a lease with auto-renewal runs one [`Renewal`] beside it. The schedule
/// says when to send an extend (the driver runs an [`crate::Extend`] machine then, and hands
/// its outcome back), when to try again after a failed one, and when the lease is lost. It
/// reads no clock and keeps no socket: like the lock machines it takes `now` and gives back
/// deadlines ([`Renewal::poll_timeout`]) and events ([`Renewal::poll_event`]), so the host's
/// guard, the WebAssembly component and the simulator decide renewal the same way.
///
/// The rules:
/// - an extend is due every third of the TTL, counted from when the last successful one (or
///   the acquire) started — a renewed lease always has two thirds of its TTL ahead of it;
/// - a failed extend (timeout, lost connection, a transient server error) is retried after a
///   jittered delay of at most a quarter of that period, for as long as the validity lasts;
/// - the lease is lost when its validity runs out without a successful extend — on the
///   caller's clock at `valid_until`, which already leaves the drift allowance before any
///   server lets the key expire, so "lost" is reported before anyone else can take the lock —
///   or at once when an extend finds another token holding it ([`crate::Error::NotHeld`]).
/// - the extend it asks for answers by the validity's end at the latest
///   ([`Renewal::extend_lock`] cuts its request timeout to the validity left), so a driver
///   that cannot wait on the extend and the validity's end at once — a single-threaded
///   WebAssembly guest blocked in the call — still hears of a failed renewal, and reports
///   the lease lost, no later than the validity ends.
///
/// Invariants: while held, [`Renewal::poll_timeout`] is never later than the validity's end;
/// the validity only moves forward; once lost, the schedule stays lost and asks for nothing.
#[derive(Debug, Clone)]
pub struct Renewal {
    period: Duration,
    valid_until: Instant,
    phase: Phase,
    /// An event not yet taken by [`Renewal::poll_event`].
    event: Option<RenewalEvent>,
    retry: Backoff,
}

impl Renewal {
    /// The schedule of a lease of `ttl` whose acquire started at `started` and which is valid
    /// until `valid_until` ([`crate::Lease::started`], [`crate::Lease::valid_until`]). `seed`
    /// randomises the retry jitter: pass random bits.
    #[must_use]
    pub fn new(ttl: Duration, started: Instant, valid_until: Instant, seed: u64) -> Self {
        let period = Self::period_of(ttl);
        // Retries spread over at most a quarter of the period: several fit in the validity
        // that is left after a missed renewal (two thirds of the TTL), and contending
        // renewals of many guards do not fire in lockstep after a shared outage.
        let cap = Duration::from_millis((period.as_millis() / 4).max(1));
        let policy = RetryPolicy {
            base: Duration::from_millis(10).min(cap),
            cap,
            jitter: Jitter::Full,
            max_attempts: None,
        };
        Renewal {
            period,
            valid_until,
            phase: Phase::Waiting {
                next: started.saturating_add(period),
            },
            event: None,
            retry: Backoff::new(policy, seed),
        }
    }

    /// How often a lease of `ttl` is extended: every third of it (at least every 1 ms).
    #[must_use]
    pub fn period_of(ttl: Duration) -> Duration {
        Duration::from_millis((ttl.as_millis() / 3).max(1))
    }

    /// Until when the lease is valid, as far as the schedule knows (it moves forward with
    /// every successful extend).
    #[must_use]
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// The lock to send the extend asked for by [`RenewalEvent::Extend`] with, at `now`:
    /// `lock` (the lease's, to its TTL), its request timeout cut to the validity left (at
    /// least 1 ms), so that the extend's outcome is in by the validity's end.
    #[must_use]
    pub fn extend_lock(&self, lock: &Lock, now: Instant) -> Lock {
        let left = self.valid_until.saturating_since(now);
        let timeout = lock
            .options()
            .request_timeout
            .min(left)
            .max(Duration::from_millis(1));
        // Only a zero timeout is refused, and this one is positive.
        lock.with_request_timeout(timeout)
            .unwrap_or_else(|_| lock.clone())
    }

    /// Why the lease was lost, once it was.
    #[must_use]
    pub fn lost(&self) -> Option<LostReason> {
        match self.phase {
            Phase::Lost(reason) => Some(reason),
            _ => None,
        }
    }

    /// When to call [`Renewal::handle_timeout`] next: the next extend, or the end of the
    /// validity while an extend is out; `None` once lost.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Waiting { next } => Some(next.min(self.valid_until)),
            Phase::Extending => Some(self.valid_until),
            Phase::Lost(_) => None,
        }
    }

    /// Time has reached [`Renewal::poll_timeout`] (early or late calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Lost(_)) {
            return;
        }
        if now >= self.valid_until {
            return self.lose(LostReason::Expired);
        }
        if let Phase::Waiting { next } = self.phase
            && now >= next
        {
            self.phase = Phase::Extending;
            self.event = Some(RenewalEvent::Extend);
        }
    }

    /// What the driver must do now, once per event; `None` when nothing.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<RenewalEvent> {
        self.event.take()
    }

    /// How the extend asked for by [`RenewalEvent::Extend`] ended.
    pub fn handle_extend_outcome(&mut self, outcome: ExtendOutcome, now: Instant) {
        if self.phase != Phase::Extending {
            return;
        }
        match outcome {
            ExtendOutcome::Extended {
                started,
                valid_until,
            } => {
                self.valid_until = self.valid_until.max(valid_until);
                self.phase = Phase::Waiting {
                    next: started.saturating_add(self.period).max(now),
                };
            }
            ExtendOutcome::NotHeld => self.lose(LostReason::NotHeld),
            ExtendOutcome::Failed if now >= self.valid_until => self.lose(LostReason::Expired),
            ExtendOutcome::Failed => {
                let next = now.saturating_add(self.retry.next_delay());
                self.phase = Phase::Waiting { next };
            }
        }
    }

    fn lose(&mut self, reason: LostReason) {
        self.phase = Phase::Lost(reason);
        self.event = Some(RenewalEvent::Lost(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn extended(started: Instant, valid_until: Instant) -> ExtendOutcome {
        ExtendOutcome::Extended {
            started,
            valid_until,
        }
    }

    fn fire(r: &mut Renewal, now: Instant) -> Option<RenewalEvent> {
        r.handle_timeout(now);
        r.poll_event()
    }

    #[test]
    fn extends_every_third_of_the_ttl_from_the_last_start() {
        let mut r = Renewal::new(Duration::from_secs(30), ms(0), ms(29_000), 1);
        assert_eq!(r.poll_timeout(), Some(ms(10_000)));
        assert_eq!(fire(&mut r, ms(9_999)), None);
        assert_eq!(fire(&mut r, ms(10_000)), Some(RenewalEvent::Extend));
        // While it is out, only the end of the validity matters.
        assert_eq!(r.poll_timeout(), Some(ms(29_000)));
        r.handle_extend_outcome(extended(ms(10_000), ms(39_000)), ms(10_005));
        assert_eq!(r.valid_until(), ms(39_000));
        assert_eq!(r.poll_timeout(), Some(ms(20_000)));
        assert_eq!(r.poll_event(), None);
    }

    #[test]
    fn failures_are_retried_within_the_validity_then_the_lease_is_lost() {
        let mut r = Renewal::new(Duration::from_secs(3), ms(0), ms(2_900), 7);
        assert_eq!(fire(&mut r, ms(1_000)), Some(RenewalEvent::Extend));
        let mut now = ms(1_000);
        let mut retries = 0;
        loop {
            r.handle_extend_outcome(ExtendOutcome::Failed, now);
            let Some(next) = r.poll_timeout() else {
                break;
            };
            assert!(next <= ms(2_900), "never past the validity");
            assert!(next > now, "a retry is never immediate");
            assert!(
                next.saturating_since(now) <= Duration::from_millis(250),
                "at most a quarter of the period apart"
            );
            now = next;
            match fire(&mut r, now) {
                Some(RenewalEvent::Extend) => retries += 1,
                Some(RenewalEvent::Lost(reason)) => {
                    assert_eq!(reason, LostReason::Expired);
                    assert_eq!(now, ms(2_900), "lost exactly when the validity ends");
                    break;
                }
                None => unreachable!("a timeout either extends or loses"),
            }
        }
        assert!(retries >= 3, "several retries fit: {retries}");
        assert_eq!(r.lost(), Some(LostReason::Expired));
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn another_holder_is_a_loss_at_once() {
        let mut r = Renewal::new(Duration::from_secs(30), ms(0), ms(29_000), 1);
        assert_eq!(fire(&mut r, ms(10_000)), Some(RenewalEvent::Extend));
        r.handle_extend_outcome(ExtendOutcome::NotHeld, ms(10_003));
        assert_eq!(
            r.poll_event(),
            Some(RenewalEvent::Lost(LostReason::NotHeld))
        );
        assert_eq!(r.poll_timeout(), None);
        // Nothing revives it.
        r.handle_extend_outcome(extended(ms(10_000), ms(60_000)), ms(10_004));
        assert_eq!(r.lost(), Some(LostReason::NotHeld));
        assert_eq!(fire(&mut r, ms(20_000)), None);
    }

    #[test]
    fn a_late_driver_loses_the_lease_rather_than_extending_past_it() {
        let mut r = Renewal::new(Duration::from_millis(300), ms(0), ms(295), 3);
        // The driver was paused through the whole validity.
        assert_eq!(
            fire(&mut r, ms(400)),
            Some(RenewalEvent::Lost(LostReason::Expired))
        );
    }

    #[test]
    fn the_extend_answers_by_the_end_of_the_validity() {
        use crate::keys::KeyLayout;
        use crate::lock::LockOptions;
        let options = LockOptions {
            ttl: Duration::from_secs(3),
            ..LockOptions::default()
        };
        let lock = Lock::new(KeyLayout::default(), b"job", options).unwrap_or_else(|_| {
            unreachable!("valid options");
        });
        let r = Renewal::new(Duration::from_secs(3), ms(0), ms(2_968), 1);
        let timeout = |now| r.extend_lock(&lock, ms(now)).options().request_timeout;
        // Plenty of validity left: the lock's own request timeout.
        assert_eq!(timeout(1_000), Duration::from_secs(1));
        // Near the end: only what is left, so the outcome is in by then.
        assert_eq!(timeout(2_500), Duration::from_millis(468));
        // At or past the end (the schedule has lost the lease by then): still a valid lock.
        assert_eq!(timeout(2_968), Duration::from_millis(1));
        assert_eq!(timeout(5_000), Duration::from_millis(1));
        // Everything else is the lease's: the keys and the TTL.
        let cut = r.extend_lock(&lock, ms(2_500));
        assert_eq!(cut.keys(), lock.keys());
        assert_eq!(cut.options().ttl, lock.options().ttl);
    }

    #[test]
    fn validity_never_moves_back() {
        let mut r = Renewal::new(Duration::from_secs(30), ms(0), ms(29_000), 1);
        assert_eq!(fire(&mut r, ms(10_000)), Some(RenewalEvent::Extend));
        r.handle_extend_outcome(extended(ms(0), ms(5_000)), ms(10_001));
        assert_eq!(r.valid_until(), ms(29_000));
    }
}
