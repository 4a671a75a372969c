//! Counting semaphores with expiring permits: at most `limit` holders of a name at once,
//! each permit a lease of its own.
//!
//! A semaphore is a [`Lock`] built by [`Lock::semaphore`]; the same machines drive it as a
//! mutex ([`crate::Acquire`], [`crate::Release`], [`crate::Extend`], [`crate::Renewal`]) and
//! yield the same [`crate::Lease`]: a permit has its own token, TTL, validity, renewal and
//! release. Only the scripts differ ([`crate::script::SEMAPHORE_ACQUIRE`] and its siblings).
//!
//! ## Design, and why
//! - **A permit is a key** `<prefix>{N}:permit:<token>` with `PX ttl`. Its expiry is the
//!   permit's: a holder that dies frees its permit exactly when that key expires, with no
//!   server clock and no sweeper ("eventually" is what Redisson's users report for expired
//!   permits). The holders' set, `<prefix>{N}` (a sorted set, score = the limit), only says
//!   which permit keys to read: every acquire drops the holders whose key is gone and counts
//!   the rest, so a count is of live permits only.
//! - **No permit goes uncounted**: a token is in the set whenever its permit key exists (the
//!   release drops both in one script, and the set is kept alive at least as long as every
//!   permit key it names). So at most `limit` permit keys exist at once — the claim the
//!   simulator checks (`core/tests/semaphore.rs`).
//! - **Bounded work**: an acquire adds a token only when fewer than `limit` live ones remain,
//!   so the set never holds more than `limit` tokens after an acquire, and an acquire reads at
//!   most `limit` keys (hence [`MAX_PERMITS`]).
//! - **The limit must agree**: it is an argument of every acquire and stored as each
//!   holder's score; an acquire under another limit while a permit taken under the stored one
//!   lives is refused with `WRONGLIMIT` ([`crate::ServerErrorKind::WrongLimit`]). Once every
//!   permit has gone, a new limit may start.
//! - **A name is a mutex or a semaphore**: the holders' set is the mutex's lock key, so a
//!   semaphore's script refuses a name holding a mutex's token, and a mutex's scripts and
//!   native compare commands refuse the set, both with `WRONGTYPE`
//!   ([`crate::ServerErrorKind::WrongType`]). A plain mutex's `SET NX PX GET` (Redis ≥ 7.0,
//!   Valkey) answers `WRONGTYPE` on the set itself, a try-lock's one attempt included. On
//!   older servers a plain `SET NX` refuses the set like a held lock; the `TYPE` probe its
//!   next attempt sends turns that refusal into the same `WRONGTYPE`
//!   (`crate::commands::merge_probe`), so it fails instead of waiting, but a try-lock there
//!   (one attempt, no probe) reports the name held (see [`crate::Acquire`]).
//! - **Waiting**: a refused acquire learns when the soonest permit expires and blocks on the
//!   semaphore's own wake-up list (`<prefix>{N}:permit-signal`, never a mutex's `:signal`: a
//!   mutex waiter of the name must not take a permit's wake-up, see [`crate::keys`]) for at
//!   most that long; a release pushes one element, so it wakes one
//!   waiter, not a herd, and the list keeps up to `limit` of them so that releases in quick
//!   succession each wake one. A non-fair waiter can lose a freed permit to a newcomer.
//! - **Fair mode** ([`crate::LockOptions::fair`]): the waiter is fair mode's
//!   ([`crate::fair`]: cycles of `BLPOP` on its own wake-up list and a script, a queue in
//!   arrival order, a liveness key per waiter, every number from `R`); only the scripts are
//!   the semaphore's ([`crate::script::SEMAPHORE_FAIR_ACQUIRE`],
//!   [`crate::script::SEMAPHORE_FAIR_RELEASE`]). Its waiters have keys of their own
//!   (`<prefix>{N}:permit-queue`, `:permit-alive:<token>`, `:permit-wake:<token>`; see
//!   [`crate::keys`]), never a fair mutex's `:queue`: a waiter's entry outlives the holds
//!   (the name may pass from permits to a mutex while it waits), so in a shared queue a
//!   semaphore's release could hand a permit to a fair mutex's waiter, and a fair mutex's
//!   release the name to a semaphore's (simulation K3 in
//!   `core/tests/mixed_kinds_simulation.rs`, and `core/tests/real_redis.rs::
//!   a_fair_mutex_and_a_fair_semaphore_of_one_name_never_meet_in_each_others_waiters`).
//!   A permit is taken only when fewer than
//!   `limit` live permits exist and no live waiter is ahead in the queue (dead ones are
//!   dropped from its head), so a newcomer never takes a permit a live waiter queues for. A
//!   release that leaves a permit free hands it to the first live waiter: it creates that
//!   waiter's permit key for the lesser of its remaining liveness and fair mode's hand-off
//!   cap (so at most `R`), counts it among the holders (so the limit holds through the hand-off) and wakes only that
//!   waiter, which confirms the permit (for its full ttl) on its next cycle. A waiter that
//!   died before confirming holds the handed permit at most `R`; then the next live waiter's
//!   cycle takes it. The simulator checks the limit, first in first out among live waiters
//!   and that bound (`core/tests/semaphore_simulation.rs`). All clients of a semaphore must
//!   agree on fair mode: a non-fair acquire does not look at the queue.
//! - **Fencing**: the name's fence counter, incremented by every permit taken, as a mutex's.
//!   Fences order permits, they do not make them exclusive: a resource guarded by a
//!   semaphore admits up to `limit` holders by design.
//!
//! ## Limits
//! One node (a Redlock of semaphores would need a quorum of counts, which the intersection
//! argument for mutexes does not give), the tagged key layout, scripts on, not reentrant
//! ([`ConfigError::SemaphoreUnsupported`], [`ConfigError::NeedsScripts`]); `limit`
//! in `1..=`[`MAX_PERMITS`] ([`ConfigError::BadLimit`]). All are refused before anything is
//! sent.

use crate::error::{ConfigError, ScriptedFeature};
use crate::keys::{KeyLayout, Keys, LockName};
use crate::limits::MAX_PERMITS;
use crate::lock::{Lock, LockOptions, Scripts};

impl Lock {
    /// A counting semaphore named `name` of `limit` permits under `layout`: each acquire
    /// takes one permit, a lease of its own (see the `semaphore` module doc: permits are
    /// reclaimed at their expiry, the limit must agree among clients, a name is a mutex or a
    /// semaphore; with [`LockOptions::fair`], freed permits go to the first live waiter).
    /// Refused before anything is sent: a limit outside `1..=`[`MAX_PERMITS`]
    /// ([`ConfigError::BadLimit`]), a layout other than the tagged one or re-entry
    /// ([`ConfigError::SemaphoreUnsupported`]), and [`Scripts::Never`]
    /// ([`ConfigError::NeedsScripts`]). Over more than one node, the machines refuse it.
    pub fn semaphore(
        layout: KeyLayout,
        name: &[u8],
        limit: u32,
        options: LockOptions,
    ) -> Result<Self, ConfigError> {
        if limit == 0 || limit > MAX_PERMITS {
            return Err(ConfigError::BadLimit { limit });
        }
        let name = LockName::new(name)?;
        layout.check_name(&name)?;
        options.validate()?;
        if options.scripts == Scripts::Never {
            return Err(ConfigError::NeedsScripts(ScriptedFeature::Semaphore));
        }
        if options.reentrant || !matches!(layout, KeyLayout::Tagged { .. }) {
            return Err(ConfigError::SemaphoreUnsupported);
        }
        Ok(Lock {
            keys: Keys::new(layout, name),
            options,
            limit: Some(limit),
            rw: None,
            multi: None,
        })
    }

    /// The permit count of a semaphore; `None` for a mutex.
    #[must_use]
    pub fn limit(&self) -> Option<u32> {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_limits_and_setups_are_refused_before_anything_is_sent() {
        let options = LockOptions::default();
        let layout = KeyLayout::default();
        for limit in [0, MAX_PERMITS + 1, u32::MAX] {
            assert_eq!(
                Lock::semaphore(layout.clone(), b"jobs", limit, options),
                Err(ConfigError::BadLimit { limit })
            );
        }
        for limit in [1, MAX_PERMITS] {
            let lock = Lock::semaphore(layout.clone(), b"jobs", limit, options).unwrap();
            assert_eq!(lock.limit(), Some(limit));
        }
        let fair = LockOptions {
            fair: true,
            ..options
        };
        let lock = Lock::semaphore(layout.clone(), b"jobs", 3, fair).unwrap();
        assert!(lock.options().fair);
        assert_eq!(
            Lock::semaphore(KeyLayout::redis_py(), b"jobs", 2, fair),
            Err(ConfigError::SemaphoreUnsupported)
        );
        assert_eq!(
            Lock::new(layout.clone(), b"jobs", options).unwrap().limit(),
            None
        );
        assert_eq!(
            Lock::semaphore(
                layout.clone(),
                b"jobs",
                2,
                LockOptions {
                    reentrant: true,
                    ..options
                }
            ),
            Err(ConfigError::SemaphoreUnsupported)
        );
        assert_eq!(
            Lock::semaphore(KeyLayout::redis_py(), b"jobs", 2, options),
            Err(ConfigError::SemaphoreUnsupported)
        );
        assert_eq!(
            Lock::semaphore(
                layout.clone(),
                b"jobs",
                2,
                LockOptions {
                    scripts: Scripts::Never,
                    ..options
                }
            ),
            Err(ConfigError::NeedsScripts(ScriptedFeature::Semaphore))
        );
        assert_eq!(
            Lock::semaphore(layout, b"", 2, options),
            Err(ConfigError::EmptyName)
        );
    }
}
