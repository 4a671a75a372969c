//! The host's entropy: tokens from the operating system's CSPRNG, jitter seeds from the core's
//! per-operation seed over one draw of it. Everything that needs randomness (the client, the
//! guard, the node pool's session) takes it from here, so no module reaches into another for it.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// 16 bytes from the OS's CSPRNG, for tokens.
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // The OS RNG failing is not recoverable for a lock: a predictable token is a security bug.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// A seed for retry jitter: the core's seed for this process's next operation
/// ([`distlock_core::operation_seed`]) from one draw of OS entropy, so no system call per
/// operation.
pub(crate) fn random_u64() -> u64 {
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let b = random_bytes();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    });
    distlock_core::operation_seed(base, NEXT.fetch_add(1, Ordering::Relaxed))
}
