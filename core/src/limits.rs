//! Every size bound of the protocol in one place: nodes per lock, TTL, name, prefix and
//! token lengths. Machines keep fixed-capacity state sized by these, and a value outside them
//! is refused with a typed [`crate::ConfigError`] before anything is sent.
//!
//! This module depends on nothing but [`crate::time`], so the error messages that quote the
//! bounds and the types that enforce them can all read them without importing each other.

use crate::time::Duration;

/// The most nodes one lock runs over, for every driver: machines keep their per-node state in
/// fixed arrays of this size. Redlock's majority of 7 already survives 3 lost nodes; more
/// nodes add a round trip's worth of tail latency each and no safety a user asks for.
pub const MAX_NODES: usize = 7;

/// The longest TTL: 2^44 ms, about 557 years, far inside what `PX` accepts.
pub const MAX_TTL: Duration = Duration::from_millis(1 << 44);

/// The longest lock name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The longest key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;
/// The shortest token accepted (16 bytes: 128 bits when random hex is 32 bytes; 16 allows
/// tokens of other libraries that are shorter but still unguessable).
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 64;

/// The largest permit count of a semaphore ([`crate::Lock::semaphore`]). Every acquire of a
/// semaphore reads each holder's permit key in one script (that is what makes reclaim exact:
/// a dead holder's permit stops counting the moment its key expires), so a script runs
/// O(limit) commands while it blocks the server; 1024 keeps that well under a millisecond.
pub const MAX_PERMITS: u32 = 1024;

/// The most names one multi-name lock ([`crate::Lock::multi`]) takes. Its scripts touch every
/// name's keys while they block the server, and Redis passes them all as `KEYS`; 16 keeps a
/// script short and the command small.
pub const MAX_MULTI_NAMES: usize = 16;
