//! Time as the core sees it: plain millisecond counts handed in by the caller.
//!
//! The core never reads a clock. [`Instant`] is a point on the *caller's monotonic clock* in
//! milliseconds from an origin the caller chooses; [`Duration`] is a span of milliseconds.
//! Milliseconds match Redis `PX`/`PEXPIRE`, so no unit conversion happens on the wire.
//!
//! Invariant: all arithmetic saturates. A hostile or buggy caller (time going backwards, a
//! huge TTL) can make a deadline wrong but never makes the core panic or wrap around.

use core::fmt;

/// A point in time on the caller's monotonic clock, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

/// A span of time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

impl Instant {
    /// The origin of the caller's clock.
    pub const ZERO: Instant = Instant(0);

    /// An instant `ms` milliseconds after the caller's origin.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// Milliseconds since the caller's origin.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    #[must_use]
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }

    /// `self - d`, saturating at the origin.
    #[must_use]
    pub const fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(d.0))
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);
    /// The longest span the core represents.
    pub const MAX: Duration = Duration(u64::MAX);

    /// A span of `ms` milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    /// A span of `s` seconds.
    #[must_use]
    pub const fn from_secs(s: u64) -> Self {
        Duration(s.saturating_mul(1000))
    }

    /// The span in milliseconds.
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whether the span is empty.
    #[must_use]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self + other`, saturating.
    #[must_use]
    pub const fn saturating_add(self, other: Duration) -> Duration {
        Duration(self.0.saturating_add(other.0))
    }

    /// `self - other`, or zero.
    #[must_use]
    pub const fn saturating_sub(self, other: Duration) -> Duration {
        Duration(self.0.saturating_sub(other.0))
    }

    /// `self * k`, saturating.
    #[must_use]
    pub const fn saturating_mul(self, k: u64) -> Duration {
        Duration(self.0.saturating_mul(k))
    }

    /// The smaller of two spans.
    #[must_use]
    pub const fn min(self, other: Duration) -> Duration {
        if self.0 <= other.0 { self } else { other }
    }

    /// The larger of two spans.
    #[must_use]
    pub const fn max(self, other: Duration) -> Duration {
        if self.0 >= other.0 { self } else { other }
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let late = Instant::from_millis(u64::MAX - 1);
        assert_eq!(
            late.saturating_add(Duration::from_millis(10)).as_millis(),
            u64::MAX
        );
        assert_eq!(
            Instant::ZERO.saturating_sub(Duration::from_millis(5)),
            Instant::ZERO
        );
        assert_eq!(
            Instant::from_millis(3).saturating_since(Instant::from_millis(9)),
            Duration::ZERO
        );
        assert_eq!(Duration::from_secs(u64::MAX), Duration::MAX);
        assert_eq!(Duration::from_millis(7).saturating_mul(3).as_millis(), 21);
    }
}
