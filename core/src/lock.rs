//! A lock's configuration, the lease it yields, and the Redlock arithmetic.
//!
//! Validity (Redlock): a lease acquired by an attempt that started at `t0` — before its first
//! request left — is valid until `t0 + ttl - drift`, where `drift = ttl * per_million / 10^6 +
//! fixed` covers the servers' clocks running faster than the client's. Measuring from `t0`
//! rather than from the replies makes network delay shorten the lease, never lengthen it.
//!
//! Invariants: `ttl` is in `1..=MAX_TTL`; `drift(ttl) < ttl`; a quorum of `n` nodes is
//! `n / 2 + 1`, so any two quorums share a node.

use crate::error::{ConfigError, ScriptedFeature};
use crate::keys::{KeyLayout, Keys, LockName, Token};
use crate::retry::RetryPolicy;
use crate::time::{Duration, Instant};

pub(crate) use crate::drift::Drift;
pub(crate) use crate::limits::{MAX_NODES, MAX_TTL};

/// How a lock behaves. `Default` gives the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockOptions {
    /// How long the lock's keys live on the server without an extend. Default 30 s.
    pub ttl: Duration,
    /// Hand out fencing tokens (a number larger than any earlier holder's). Default off.
    pub fenced: bool,
    /// Let the holder of the token acquire again; it is free after as many releases.
    /// Default off.
    pub reentrant: bool,
    /// On release, push a wake-up signal that lives this long, so a waiter blocked on it
    /// acquires at once instead of sleeping out a retry delay; `None`: no signal, waiters
    /// poll with backoff. Default 1 s.
    pub wake_signal: Option<Duration>,
    /// Retry timing.
    pub retry: RetryPolicy,
    /// How long to wait for a node's reply before counting it as failed. Default 1 s.
    pub request_timeout: Duration,
    /// Clock-drift allowance subtracted from every validity.
    pub drift: Drift,
    /// Fair mode: waiters queue in arrival order and a release hands the lock straight to
    /// the first live waiter, which returns already holding it (see "Fair mode" on
    /// [`crate::Acquire`]). One node and the tagged key layout only
    /// ([`ConfigError::FairUnsupported`]); every client of a lock must agree on it. Default
    /// off.
    pub fair: bool,
    /// Whether the lock may run Lua scripts (see [`Scripts`]). Default [`Scripts::Auto`].
    pub scripts: Scripts,
}

/// Whether a lock may run Lua scripts (`EVALSHA`/`EVAL`).
///
/// Managed services often forbid scripting, and a failover empties the script cache. Where
/// the server has the native compare commands, a plain lock needs no script: acquire is
/// `SET NX PX`, extend `SET … IFEQ … PX` (Valkey ≥ 8.1, Redis ≥ 8.4), release and an
/// acquire's rollback `DELIFEQ` (Valkey ≥ 9.0) or `DELEX … IFEQ` (Redis ≥ 8.4), followed by
/// the wake-up signal's `LPUSH`, `LTRIM`, `PEXPIRE` in the same pipeline.
///
/// What a scriptless lock gives up:
/// - fencing, re-entry and fair mode ([`ConfigError::NeedsScripts`]);
/// - the wake-up signal's atomicity with the delete. The pipeline is not a transaction:
///   another client's command may run between the delete and the `LPUSH`, and a client that
///   dies between them deletes the key without pushing. A waiter then is not woken early: it
///   tries again after its retry delay (bounded by the policy's cap), or when its `BLPOP`
///   times out. Exclusion is not affected: the signal only says "try now", and the try is an
///   atomic `SET NX`. A signal pushed after a failed compare-and-delete wakes a waiter for
///   nothing; it finds the lock held and waits again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Scripts {
    /// The native commands where the server has them, scripts for the rest (and for every
    /// option that needs one). A server that answers a native command with `unknown command`
    /// gets the script from then on.
    #[default]
    Auto,
    /// Never a script: the options must need none, and every node must have the native
    /// commands ([`ConfigError::MissingNativeCommand`] when the machine is built otherwise).
    /// A native command refused at run time is an error, never a fallback to `EVAL`.
    Never,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            ttl: Duration::from_secs(30),
            fenced: false,
            reentrant: false,
            wake_signal: Some(Duration::from_secs(1)),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(1),
            drift: Drift::default(),
            fair: false,
            scripts: Scripts::Auto,
        }
    }
}

/// A named lock with checked options: what every machine is built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lock {
    pub(crate) keys: Keys,
    pub(crate) options: LockOptions,
    /// `Some(n)`: a semaphore of `n` permits ([`Lock::semaphore`]); `None`: a mutex.
    pub(crate) limit: Option<u32>,
    /// `Some(mode)`: one side of a read-write lock ([`Lock::rw`]); `None`: not one.
    pub(crate) rw: Option<crate::rwlock::RwMode>,
    /// `Some(names)`: a multi-name lock ([`Lock::multi`]); `None`: one name.
    pub(crate) multi: Option<crate::multi::MultiNames>,
}

impl Lock {
    /// Checks `name` (also against the layout's reserved names) and `options` and builds the
    /// lock under `layout`.
    pub fn new(layout: KeyLayout, name: &[u8], options: LockOptions) -> Result<Self, ConfigError> {
        let name = LockName::new(name)?;
        layout.check_name(&name)?;
        options.validate()?;
        options.check_layout(&layout)?;
        Ok(Lock {
            keys: Keys::new(layout, name),
            options,
            limit: None,
            rw: None,
            multi: None,
        })
    }

    /// The lock's keys.
    #[must_use]
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The lock's options.
    #[must_use]
    pub fn options(&self) -> &LockOptions {
        &self.options
    }

    /// The same lock with another TTL (an extend for a different span).
    pub fn with_ttl(&self, ttl: Duration) -> Result<Self, ConfigError> {
        let options = LockOptions {
            ttl,
            ..self.options
        };
        options.validate()?;
        Ok(Lock {
            keys: self.keys.clone(),
            options,
            limit: self.limit,
            rw: self.rw,
            multi: self.multi.clone(),
        })
    }

    /// The same lock with another request timeout (an operation that must answer sooner,
    /// such as a renewal's extend near the end of the validity).
    pub fn with_request_timeout(&self, request_timeout: Duration) -> Result<Self, ConfigError> {
        let options = LockOptions {
            request_timeout,
            ..self.options
        };
        options.validate()?;
        Ok(Lock {
            keys: self.keys.clone(),
            options,
            limit: self.limit,
            rw: self.rw,
            multi: self.multi.clone(),
        })
    }

    /// When a lease whose attempt started at `started` stops being valid.
    #[must_use]
    pub fn valid_until(&self, started: Instant) -> Instant {
        let ttl = self.options.ttl;
        started.saturating_add(ttl.saturating_sub(self.options.drift.allowance(ttl)))
    }
}

impl LockOptions {
    /// Checks that these options can work over `nodes` nodes with `layout`: what a driver
    /// calls when a client opens, so a setup no lock of it could use is refused before
    /// anything is sent. Fair mode needs one node and the tagged layout
    /// ([`ConfigError::FairUnsupported`]).
    pub fn check_setup(&self, layout: &KeyLayout, nodes: usize) -> Result<(), ConfigError> {
        self.validate()?;
        self.check_layout(layout)?;
        // One queue lives on one node: a Redlock of fair queues would need a quorum of
        // hand-offs, which no single release can give.
        if self.fair && nodes > 1 {
            return Err(ConfigError::FairUnsupported);
        }
        Ok(())
    }

    /// The fair queue's keys are computed inside the scripts from the tagged layout's hash
    /// tag; the Python layouts have no room for them.
    fn check_layout(&self, layout: &KeyLayout) -> Result<(), ConfigError> {
        if self.fair && !matches!(layout, KeyLayout::Tagged { .. }) {
            return Err(ConfigError::FairUnsupported);
        }
        Ok(())
    }

    /// Checks the options can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl.is_zero() || self.ttl > MAX_TTL {
            return Err(ConfigError::BadTtl);
        }
        if self.drift.allowance(self.ttl) >= self.ttl {
            return Err(ConfigError::DriftExceedsTtl);
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::BadRetry);
        }
        if self.wake_signal.is_some_and(Duration::is_zero) {
            return Err(ConfigError::BadRetry);
        }
        if self.scripts == Scripts::Never
            && let Some(feature) = self.needs_scripts_for()
        {
            return Err(ConfigError::NeedsScripts(feature));
        }
        self.retry.validate()
    }
}

impl LockOptions {
    /// The first option that only a script can provide, if any.
    #[must_use]
    pub fn needs_scripts_for(&self) -> Option<ScriptedFeature> {
        if self.fenced {
            Some(ScriptedFeature::Fencing)
        } else if self.reentrant {
            Some(ScriptedFeature::Reentry)
        } else if self.fair {
            Some(ScriptedFeature::Fair)
        } else {
            None
        }
    }
}

/// The votes a quorum of `nodes` needs.
#[must_use]
pub const fn quorum(nodes: usize) -> usize {
    nodes / 2 + 1
}

/// A held lock, as an acquire reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub(crate) token: Token,
    pub(crate) fence: Option<u64>,
    pub(crate) started: Instant,
    pub(crate) valid_until: Instant,
    pub(crate) holds: u32,
}

impl Lease {
    /// The token that proves ownership (for release, extend, or hand-off to another process).
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The fencing token, for fenced locks: larger than every earlier holder's. Pass it to
    /// the resource you protect and have it reject smaller ones.
    #[must_use]
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// When the acquire attempt that won started (validity is measured from here).
    #[must_use]
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Until when the holder may act as the owner, on the caller's clock.
    #[must_use]
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// How much validity is left at `now` (zero once it ran out).
    #[must_use]
    pub fn remaining(&self, now: Instant) -> Duration {
        self.valid_until.saturating_since(now)
    }

    /// How many times the token holds a reentrant lock (1 for a plain lock).
    #[must_use]
    pub fn holds(&self) -> u32 {
        self.holds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!([1, 2, 3, 4, 5, 7].map(quorum), [1, 2, 2, 3, 3, 4]);
        for n in 1..=16 {
            assert!(2 * quorum(n) > n, "two quorums of {n} must share a node");
        }
    }

    #[test]
    fn drift_is_redlocks_by_default() {
        let d = Drift::default();
        assert_eq!(
            d.allowance(Duration::from_secs(10)),
            Duration::from_millis(102)
        );
        assert_eq!(
            d.allowance(Duration::from_millis(1)),
            Duration::from_millis(3)
        );
        let huge = Drift {
            per_million: u32::MAX,
            fixed: Duration::MAX,
        };
        assert_eq!(huge.allowance(MAX_TTL), Duration::MAX);
    }

    #[test]
    fn min_ttl_is_the_first_ttl_the_drift_leaves_validity_in() {
        let default = Drift::default();
        let min = default.min_ttl().unwrap();
        assert_eq!(min, Duration::from_millis(4));
        assert!(default.allowance(min) < min);
        let below = Duration::from_millis(min.as_millis() - 1);
        assert!(default.allowance(below) >= below);
        let none = Drift {
            per_million: 1_000_000,
            fixed: Duration::ZERO,
        };
        assert_eq!(none.min_ttl(), None);
        let fixed_only = Drift {
            per_million: 0,
            fixed: Duration::from_millis(10),
        };
        assert_eq!(fixed_only.min_ttl(), Some(Duration::from_millis(11)));
    }

    #[test]
    fn validity_subtracts_the_drift_from_the_start() {
        let lock = Lock::new(
            KeyLayout::default(),
            b"x",
            LockOptions {
                ttl: Duration::from_secs(10),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            lock.valid_until(Instant::from_millis(1000)),
            Instant::from_millis(1000 + 10_000 - 102)
        );
    }

    #[test]
    fn fair_setups_are_checked_before_any_lock_is_built() {
        let fair = LockOptions {
            fair: true,
            ..LockOptions::default()
        };
        assert_eq!(fair.check_setup(&KeyLayout::default(), 1), Ok(()));
        assert_eq!(
            fair.check_setup(&KeyLayout::default(), 3),
            Err(ConfigError::FairUnsupported)
        );
        assert_eq!(
            fair.check_setup(&KeyLayout::redis_py(), 1),
            Err(ConfigError::FairUnsupported)
        );
        // Without fair mode every layout and node count the lock supports is fine.
        let plain = LockOptions::default();
        assert_eq!(plain.check_setup(&KeyLayout::redis_py(), 5), Ok(()));
        assert_eq!(
            LockOptions {
                ttl: Duration::ZERO,
                ..fair
            }
            .check_setup(&KeyLayout::default(), 1),
            Err(ConfigError::BadTtl)
        );
    }

    #[test]
    fn options_are_checked() {
        let ok = LockOptions::default();
        assert!(ok.validate().is_ok());
        assert_eq!(
            LockOptions {
                ttl: Duration::ZERO,
                ..ok
            }
            .validate(),
            Err(ConfigError::BadTtl)
        );
        assert_eq!(
            LockOptions {
                ttl: MAX_TTL.saturating_add(Duration::from_millis(1)),
                ..ok
            }
            .validate(),
            Err(ConfigError::BadTtl)
        );
        // 2 ms of fixed drift leaves nothing of a 2 ms TTL.
        assert_eq!(
            LockOptions {
                ttl: Duration::from_millis(2),
                ..ok
            }
            .validate(),
            Err(ConfigError::DriftExceedsTtl)
        );
        assert!(
            LockOptions {
                wake_signal: Some(Duration::ZERO),
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            LockOptions {
                request_timeout: Duration::ZERO,
                ..ok
            }
            .validate()
            .is_err()
        );
    }
}
