//! The clock-drift allowance subtracted from every validity (Redlock's `drift`): how much
//! faster the servers' clocks may run than the client's over one TTL.
//!
//! Invariant: [`Drift::min_ttl`] is the smallest TTL whose allowance leaves any validity, so
//! a TTL of at least it always yields `allowance(ttl) < ttl`.

use crate::limits::MAX_TTL;
use crate::time::Duration;

/// Allowance for the servers' clocks running fast relative to the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Drift {
    /// Proportional part, in millionths of the TTL.
    pub per_million: u32,
    /// Fixed part.
    pub fixed: Duration,
}

impl Default for Drift {
    /// Redlock's allowance: 1% of the TTL plus 2 ms.
    fn default() -> Self {
        Drift {
            per_million: 10_000,
            fixed: Duration::from_millis(2),
        }
    }
}

impl Drift {
    /// The allowance for `ttl` (rounded up).
    #[must_use]
    pub fn allowance(&self, ttl: Duration) -> Duration {
        let scaled = u128::from(ttl.as_millis()) * u128::from(self.per_million);
        let proportional = scaled.div_ceil(1_000_000);
        Duration::from_millis(u64::try_from(proportional).unwrap_or(u64::MAX))
            .saturating_add(self.fixed)
    }

    /// The shortest TTL that leaves any validity after this allowance (`allowance(ttl) <
    /// ttl`), or `None` when no TTL up to [`MAX_TTL`] does: what a user is told up front,
    /// instead of a TTL in range that is then refused.
    #[must_use]
    pub fn min_ttl(&self) -> Option<Duration> {
        let leaves_validity = |ms: u64| self.allowance(Duration::from_millis(ms)).as_millis() < ms;
        let (mut low, mut high) = (1, MAX_TTL.as_millis());
        if !leaves_validity(high) {
            return None;
        }
        // The allowance grows slower than the TTL (per_million < 1_000_000 here, or even
        // MAX_TTL would fail), so "leaves validity" is false up to a point and true after it.
        while low < high {
            let mid = low + (high - low) / 2;
            if leaves_validity(mid) {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        Some(Duration::from_millis(low))
    }
}
