//! Redis Cluster's hash slots: which of the 16384 slots a key lives in, and the one slot a
//! lock's keys share (or that they do not share one).
//!
//! The slot of a key is CRC16/XMODEM (polynomial 0x1021, initial value 0, no reflection) of
//! its hash tag, mod 16384, exactly as the Redis Cluster specification defines it: the tag is
//! what lies between the first `{` and the first `}` after it, when that is not empty;
//! otherwise the whole key is hashed.
//!
//! Invariants: every function here is total (any bytes, no panic, no allocation) and returns
//! a slot below [`SLOTS`]; a key given as parts ([`Keys`] writes keys that way) has the slot
//! of the parts concatenated.

use crate::keys::Keys;

/// How many hash slots a Redis Cluster has.
pub const SLOTS: u16 = 16384;

/// The hash slot of `key`.
#[must_use]
pub fn key_slot(key: &[u8]) -> u16 {
    slot_of_parts(&[key])
}

/// The hash slot of the key written as `parts` concatenated, without concatenating them.
#[must_use]
pub(crate) fn slot_of_parts(parts: &[&[u8]]) -> u16 {
    let bytes = || parts.iter().flat_map(|part| part.iter().copied());
    let open = bytes().position(|b| b == b'{');
    let tag = open.and_then(|open| {
        let close = bytes().skip(open + 1).position(|b| b == b'}')?;
        // An empty tag (`{}`) does not count: the whole key is hashed.
        (close > 0).then_some((open + 1, close))
    });
    let crc = match tag {
        Some((start, len)) => crc16(bytes().skip(start).take(len)),
        None => crc16(bytes()),
    };
    crc % SLOTS
}

/// CRC16/XMODEM, bit by bit: keys are short and this runs once per operation.
fn crc16(bytes: impl Iterator<Item = u8>) -> u16 {
    let mut crc: u16 = 0;
    for byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A lock whose keys do not all live in one slot: a cluster cannot run its scripts, which
/// touch several of them at once (`CROSSSLOT`), so such a lock is refused on a cluster node
/// before anything is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpansSlots {
    /// The lock key's slot.
    pub lock: u16,
    /// The slot of the first of its other keys (fence, holds, wake-up list) that differs.
    pub other: u16,
}

impl core::fmt::Display for SpansSlots {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "the lock's keys span hash slots {} and {}: a cluster runs no script over keys of two slots (use the tagged layout, or a name with a {{tag}})",
            self.lock, self.other
        )
    }
}

impl core::error::Error for SpansSlots {}

/// The one slot all of a lock's keys (lock, fence, holds, wake-up list) live in.
///
/// distlock's own layout always shares one (`PREFIX{NAME}…`: the name is the hash tag);
/// redis-py's does too when the name has no `}` (its key `NAME` is hashed whole, and ours are
/// tagged `{NAME}`); python-redis-lock's (`lock:NAME`, `lock-signal:NAME`) only when the
/// name carries a hash tag of its own.
///
/// # Errors
///
/// [`SpansSlots`] when they do not share a slot.
pub fn lock_slot(keys: &Keys) -> Result<u16, SpansSlots> {
    let lock = slot_of_parts(&keys.lock());
    for other in [keys.fence(), keys.holds(), keys.signal()] {
        let other = slot_of_parts(&other);
        if other != lock {
            return Err(SpansSlots { lock, other });
        }
    }
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyLayout, LockName};

    #[test]
    fn crc16_is_xmodem() {
        // The check value of CRC-16/XMODEM.
        assert_eq!(crc16(b"123456789".iter().copied()), 0x31C3);
    }

    #[test]
    fn slots_match_the_cluster_specification() {
        // Values `CLUSTER KEYSLOT` returns.
        for (key, slot) in [
            (&b"foo"[..], 12182),
            (b"bar", 5061),
            (b"hello", 866),
            (b"", 0),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"user1000", 3443),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"foo{bar}{zap}", 5061),
        ] {
            assert_eq!(
                key_slot(key),
                slot,
                "{}",
                core::str::from_utf8(key).unwrap()
            );
        }
    }

    #[test]
    fn parts_hash_like_the_concatenated_key() {
        assert_eq!(
            slot_of_parts(&[b"{user", b"1000}", b".x"]),
            key_slot(b"user1000")
        );
        assert_eq!(slot_of_parts(&[b"fo", b"", b"o"]), 12182);
    }

    #[test]
    fn layouts_share_a_slot_or_say_they_do_not() {
        let name = |n: &[u8]| LockName::new(n).unwrap();
        let tagged = Keys::new(KeyLayout::default(), name(b"invoices"));
        assert_eq!(lock_slot(&tagged), Ok(key_slot(b"invoices")));
        let redis_py = Keys::new(KeyLayout::RedisPy, name(b"invoices"));
        assert_eq!(lock_slot(&redis_py), Ok(key_slot(b"invoices")));
        let python = Keys::new(KeyLayout::PythonRedisLock, name(b"invoices"));
        assert!(lock_slot(&python).is_err());
        // A name with its own hash tag keeps python-redis-lock's keys together.
        let python = Keys::new(KeyLayout::PythonRedisLock, name(b"{invoices}"));
        assert_eq!(lock_slot(&python), Ok(key_slot(b"invoices")));
    }
}
