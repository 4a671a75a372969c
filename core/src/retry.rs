//! When to try again: exponential backoff with jitter, bounded by the caller's wait.
//!
//! The core has no RNG: the caller passes a seed (from the OS, or from a simulation's seed)
//! and the jitter comes from SplitMix64 over it, so a run replays exactly from its inputs.
//!
//! Invariants: a delay is never zero (no spinning) and never above the policy's cap; the
//! wait deadline, not an attempt count, is what bounds an acquire by default.

use crate::error::ConfigError;
use crate::time::Duration;

/// How a retry delay is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// Exactly `base * 2^attempt`, capped. Contending clients retry in lockstep: avoid.
    None,
    /// Uniform in `[1, base * 2^attempt]`, capped ("full jitter").
    #[default]
    Full,
    /// Uniform in `[base, 3 * previous]`, capped ("decorrelated jitter").
    Decorrelated,
}

/// Retry timing for acquire (and for transient errors in release and extend).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    /// The first delay's scale.
    pub base: Duration,
    /// No delay is longer.
    pub cap: Duration,
    /// How delays are randomised.
    pub jitter: Jitter,
    /// Attempts at most, the first included; `None`: as many as the wait allows.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    /// Base 10 ms, cap 500 ms, full jitter, no attempt limit: the wait bounds it. Peers retry 3
    /// times 200 ms apart and then give up even when the caller would wait; here a waiter
    /// keeps trying for exactly as long as it asked, and a release wakes it at once.
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(10),
            cap: Duration::from_millis(500),
            jitter: Jitter::Full,
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.base.is_zero() || self.cap < self.base || self.max_attempts == Some(0) {
            return Err(ConfigError::BadRetry);
        }
        Ok(())
    }
}

/// The jitter seed of a driver's `n`-th operation, from one draw of entropy (`base`) per
/// process: consecutive `n` give unrelated seeds, so a driver needs no system call per
/// operation and no generator of its own. Seeds spread retries; they are not secrets (tokens
/// come from the driver's entropy, never from here).
#[must_use]
pub fn operation_seed(base: u64, n: u64) -> u64 {
    SplitMix64::new(base.wrapping_add(n)).next_u64()
}

/// A deterministic generator (SplitMix64) over the caller's seed. Crate-private: drivers take
/// seeds from [`operation_seed`]; the fuzzer and simulator reach it under `fuzzing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub struct SplitMix64(u64);

#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
impl SplitMix64 {
    /// A generator from `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high]` (inclusive; `low` when `high <= low`).
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        let span = high - low;
        match span.checked_add(1) {
            Some(n) => low + self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// The delays of one operation's retries (and of a node's reconnects). Crate-private: the
/// machines keep it; the fuzzer and simulator reach it under `fuzzing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
pub struct Backoff {
    policy: RetryPolicy,
    rng: SplitMix64,
    retries: u32,
    previous: Duration,
}

#[cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub))]
impl Backoff {
    /// Delays under `policy`, randomised from `seed`.
    #[must_use]
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Backoff {
            policy,
            rng: SplitMix64::new(seed),
            retries: 0,
            previous: policy.base,
        }
    }

    /// The delay before the next retry, in `[1 ms, cap]`.
    pub fn next_delay(&mut self) -> Duration {
        let RetryPolicy {
            base, cap, jitter, ..
        } = self.policy;
        let exponential = base.saturating_mul(1u64 << self.retries.min(32)).min(cap);
        self.retries = self.retries.saturating_add(1);
        let ms = match jitter {
            Jitter::None => exponential.as_millis(),
            Jitter::Full => self.rng.between(1, exponential.as_millis()),
            Jitter::Decorrelated => {
                let high = self.previous.saturating_mul(3).min(cap).as_millis();
                self.rng.between(base.as_millis(), high)
            }
        };
        let delay = Duration::from_millis(ms.max(1)).min(cap.max(Duration::from_millis(1)));
        self.previous = delay;
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_seeds_differ_from_one_operation_to_the_next() {
        let seeds: alloc::vec::Vec<u64> = (0..1000).map(|n| operation_seed(42, n)).collect();
        for (i, a) in seeds.iter().enumerate() {
            assert!(!seeds[i + 1..].contains(a), "seed {i} repeats");
        }
        assert_ne!(operation_seed(1, 0), operation_seed(2, 0));
        assert_eq!(
            operation_seed(7, 3),
            operation_seed(7, 3),
            "replays from its inputs"
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let ok = RetryPolicy::default();
        assert_eq!(ok.validate(), Ok(()));
        assert!(
            RetryPolicy {
                base: Duration::ZERO,
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            RetryPolicy {
                cap: Duration::from_millis(1),
                ..ok
            }
            .validate()
            .is_err()
        );
        assert!(
            RetryPolicy {
                max_attempts: Some(0),
                ..ok
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn no_jitter_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            jitter: Jitter::None,
            ..RetryPolicy::default()
        };
        let mut b = Backoff::new(policy, 1);
        let got: alloc::vec::Vec<u64> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 320, 500, 500]);
    }

    #[test]
    fn same_seed_same_delays() {
        let mut a = Backoff::new(RetryPolicy::default(), 42);
        let mut b = Backoff::new(RetryPolicy::default(), 42);
        for _ in 0..50 {
            assert_eq!(a.next_delay(), b.next_delay());
        }
    }

    proptest::proptest! {
        #[test]
        fn delays_stay_within_one_ms_and_the_cap(
            seed: u64,
            base in 1u64..1000,
            extra in 0u64..10_000,
            decorrelated: bool,
        ) {
            let policy = RetryPolicy {
                base: Duration::from_millis(base),
                cap: Duration::from_millis(base + extra),
                jitter: if decorrelated { Jitter::Decorrelated } else { Jitter::Full },
                max_attempts: None,
            };
            let mut b = Backoff::new(policy, seed);
            for _ in 0..100 {
                let d = b.next_delay();
                proptest::prop_assert!(d >= Duration::from_millis(1));
                proptest::prop_assert!(d <= policy.cap);
            }
        }
    }
}
