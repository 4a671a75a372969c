//! The host's clock, as the core wants it: monotonic milliseconds from a fixed origin.

use std::time::Instant as StdInstant;

use distlock_core::{Duration, Instant};

/// Monotonic milliseconds since the clock was made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: StdInstant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            origin: StdInstant::now(),
        }
    }

    /// Now, on the core's scale.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a core instant, for sleeping until it.
    pub(crate) fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        tokio::time::Instant::from_std(
            self.origin + std::time::Duration::from_millis(at.as_millis()),
        )
    }
}

/// A core duration as a std one.
pub(crate) fn to_std(d: Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis())
}

/// A std duration as a core one (saturating).
pub(crate) fn from_std(d: std::time::Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
