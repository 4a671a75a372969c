//! What the runtime passes in, as the core takes it: instants as `f64` milliseconds, spans as
//! `u32` milliseconds, entropy as bytes, a lock's `shape` as the core's
//! [`distlock_core::wit::Shape`].
//!
//! Invariant: no input is refused by a trap. An instant that is negative or not finite counts
//! as 0 and one past 2^53 as 2^53 (a JavaScript number's exact range); entropy that is too
//! short is an `invalid` error before anything is built.

use alloc::format;

use distlock_core::{Duration, Instant};

use crate::api;

/// The largest integer a JavaScript number holds exactly.
const EXACT: u64 = 1 << 53;

/// Entropy bytes a token takes.
const TOKEN_BYTES: usize = 16;
/// Entropy bytes a retry seed takes.
const SEED_BYTES: usize = 8;

/// The runtime's `instant` as the core's.
pub(crate) fn instant(ms: f64) -> Instant {
    if !ms.is_finite() || ms <= 0.0 {
        return Instant::ZERO;
    }
    // `as` saturates and drops the fraction.
    Instant::from_millis((ms as u64).min(EXACT))
}

/// The core's instant as the runtime's `instant` (exact: at most 2^53).
pub(crate) fn millis(at: Instant) -> f64 {
    at.as_millis().min(EXACT) as f64
}

/// A `u32` span.
pub(crate) fn span(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// A node index as the core takes it.
pub(crate) fn node(node: u8) -> usize {
    usize::from(node)
}

/// A node index as the interface carries it (nodes never exceed `MAX_NODES`, far below 256).
pub(crate) fn node_index(node: usize) -> u8 {
    u8::try_from(node).unwrap_or(u8::MAX)
}

/// Retry jitter: the first 8 bytes of `entropy`.
pub(crate) fn seed(entropy: &[u8]) -> Result<u64, api::Error> {
    let bytes = entropy
        .get(..SEED_BYTES)
        .ok_or_else(|| short(SEED_BYTES, entropy.len()))?;
    let mut seed = [0u8; SEED_BYTES];
    seed.copy_from_slice(bytes);
    Ok(u64::from_le_bytes(seed))
}

/// A token's 16 bytes and a retry seed: 24 bytes of `entropy`.
pub(crate) fn token_and_seed(entropy: &[u8]) -> Result<([u8; TOKEN_BYTES], u64), api::Error> {
    let needed = TOKEN_BYTES + SEED_BYTES;
    let (token, rest) = entropy
        .get(..needed)
        .ok_or_else(|| short(needed, entropy.len()))?
        .split_at(TOKEN_BYTES);
    let mut out = [0u8; TOKEN_BYTES];
    out.copy_from_slice(token);
    Ok((out, seed(rest)?))
}

fn short(needed: usize, got: usize) -> api::Error {
    api::Error::Invalid(api::ConfigError {
        kind: api::ConfigErrorKind::Other,
        message: format!("entropy: {needed} random bytes needed, {got} given"),
    })
}

distlock_core::wit_shape_conversion!(crate::bindings::exports::distlock::lock::machines);
