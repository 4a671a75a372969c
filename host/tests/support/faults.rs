//! What every fault test checks, whatever the fault: no call running past its deadline
//! ([`deadline`]: `wait + 2 × request timeout`, plus a margin for a loaded CI machine), only
//! typed errors ([`is_quorum_lost`], [`is_outage`], matched on [`distlock_host::Error`]), and
//! a guard that never claims longer than its key lives ([`claim_and_key`]), less the drift
//! allowance ([`drift`]).
//!
//! The numbers here are the tests' expectations of the defaults (the request timeout, the
//! drift allowance), not decisions: the allowance itself is read from the core.

use std::time::{Duration, Instant};

use distlock_core::{Drift, NodeFailure};
use distlock_host::{Error, Guard};

use super::{RedisServer, blocking, lock_key};

/// The default request timeout: a silent node counts as failed after this.
pub(crate) const RT: Duration = Duration::from_secs(1);
/// Slack on every deadline for a loaded 2-core CI machine.
pub(crate) const MARGIN: Duration = Duration::from_millis(1500);

/// The longest an operation with this wait may take: `wait + 2 × request timeout`, plus the
/// margin.
pub(crate) fn deadline(wait: Duration) -> Duration {
    wait + 2 * RT + MARGIN
}

/// Validity Redlock subtracts for clock drift at `ttl` (the default: 1% + 2 ms).
pub(crate) fn drift(ttl: Duration) -> Duration {
    let ms = Drift::default()
        .allowance(distlock_core::Duration::from_millis(ttl.as_millis() as u64))
        .as_millis();
    Duration::from_millis(ms)
}

/// Whether `e` is a lost quorum whose last node failure is `failure` (any, when `None`).
pub(crate) fn is_quorum_lost(e: &Error, failure: Option<&NodeFailure>) -> bool {
    match e.lock_error() {
        Some(distlock_core::Error::QuorumLost { last_failure, .. }) => {
            failure.is_none_or(|f| last_failure.as_ref() == Some(f))
        }
        _ => false,
    }
}

/// Whether `e` is one of the errors a client may see while its server is unreachable or
/// silent: a lost quorum, contention, a lost lease, or a failed connect.
pub(crate) fn is_outage(e: &Error) -> bool {
    matches!(
        e,
        Error::Connect { .. }
            | Error::Lock(
                distlock_core::Error::QuorumLost { .. }
                    | distlock_core::Error::NotAcquired { .. }
                    | distlock_core::Error::NotHeld
                    | distlock_core::Error::Expired
            )
    )
}

/// Whether `result` is the refusal a holder gets once its lock is gone: `NotHeld`, typed —
/// its call did not touch whoever holds the lock now.
pub(crate) fn is_not_held<T>(result: &Result<T, Error>) -> bool {
    matches!(
        result.as_ref().map_err(Error::lock_error),
        Err(Some(distlock_core::Error::NotHeld))
    )
}

/// The lock key's holder on `server` (its token), if any.
pub(crate) fn holder_token(server: &RedisServer, name: &str) -> Option<String> {
    server.raw().ok(&["GET", &lock_key(name)]).text()
}

/// Loads the lock scripts into `server`'s script cache (as an earlier release would have), so
/// no release needs a `NOSCRIPT` round.
pub(crate) fn load_scripts(server: &RedisServer) {
    let mut raw = server.raw();
    for script in distlock_core::SCRIPTS {
        raw.ok(&["SCRIPT", "LOAD", script.source]);
    }
}

/// The guard's validity now and the instant it ends, after checking that the lock key on
/// `server` outlives it by the drift allowance at least (so no one else can take the lock
/// while the guard claims it) and that it is within the TTL.
pub(crate) fn claim_and_key(
    server: &RedisServer,
    name: &str,
    guard: &Guard,
    ttl: Duration,
) -> (Duration, Instant) {
    // The instant first: a pause between the two reads then only makes the check lenient.
    let read_at = Instant::now();
    let validity = guard.validity();
    assert!(
        !validity.is_zero() && validity <= ttl - drift(ttl),
        "validity {validity:?} with a TTL of {ttl:?}"
    );
    let pttl = blocking(|| server.raw().ok(&["PTTL", &lock_key(name)]).int());
    let pttl = pttl
        .and_then(|p| u64::try_from(p).ok())
        .expect("the key lives");
    // The key's life left at `read_at` (+1 ms for PTTL's rounding down).
    let left = Duration::from_millis(pttl + 1) + read_at.elapsed();
    assert!(
        left >= validity + drift(ttl),
        "the guard claims {validity:?} but its key lives only {left:?}"
    );
    (validity, read_at + validity)
}
