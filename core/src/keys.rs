//! Lock names, key layout and tokens.
//!
//! A lock named `N` under the default layout lives in these keys, all sharing the hash tag
//! `{N}` so that every script touches one Redis Cluster slot:
//!
//! | key | holds |
//! |---|---|
//! | `<prefix>{N}` | the holder's token (a plain string: `GET` shows who holds it) |
//! | `<prefix>{N}:fence` | the fencing counter (never expires) |
//! | `<prefix>{N}:holds` | the re-entry count of a reentrant lock |
//! | `<prefix>{N}:signal` | the wake-up list a release pushes to and waiters `BLPOP` |
//!
//! Redis takes the tag between the first `{` and the first `}` after it (the whole key when
//! that is empty). The prefix has no braces, so the first `{` is ours; the first `}` after it
//! lies in the part all four keys share (at the latest, our closing `}`); and a name may not
//! start with `}`, so the tag is never empty. A property test checks this for any bytes.
//!
//! Invariants: a [`LockName`] is 1 to [`MAX_NAME_LEN`] bytes, no ASCII control byte, not
//! starting with `}`; a prefix has no control byte and no brace; a [`Token`] is 16 to 64
//! printable ASCII bytes. All are checked once, at construction.

use crate::error::ConfigError;

/// The longest lock name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The longest key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;
/// The prefix of the default layout.
pub const DEFAULT_PREFIX: &[u8] = b"distlock:";
/// The shortest token accepted (16 bytes: 128 bits when random hex is 32 bytes; 16 allows
/// tokens of other libraries that are shorter but still unguessable).
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted.
pub const MAX_TOKEN_LEN: usize = 64;

/// A validated lock name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockName(heapless::Vec<u8, MAX_NAME_LEN>);

impl LockName {
    /// Checks `name`: not empty, at most [`MAX_NAME_LEN`] bytes, no control byte (CR, LF, NUL
    /// and friends would make names unprintable in logs and the command line; any other byte,
    /// including invalid UTF-8, is fine because keys travel as bulk strings).
    pub fn new(name: &[u8]) -> Result<Self, ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if let Some(at) = name.iter().position(|b| b.is_ascii_control()) {
            return Err(ConfigError::NameControlByte { at });
        }
        if name.first() == Some(&b'}') {
            return Err(ConfigError::NameStartsWithBrace);
        }
        heapless::Vec::from_slice(name)
            .map(LockName)
            .map_err(|_| ConfigError::NameTooLong { len: name.len() })
    }

    /// The name's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Where a lock's keys live.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyLayout {
    /// `<prefix>{name}` and its `:fence`, `:holds`, `:signal` siblings (see the module doc).
    Tagged {
        /// Prepended to every key; [`DEFAULT_PREFIX`] by default.
        prefix: heapless::Vec<u8, MAX_PREFIX_LEN>,
    },
}

impl Default for KeyLayout {
    fn default() -> Self {
        KeyLayout::Tagged {
            prefix: heapless::Vec::from_slice(DEFAULT_PREFIX).unwrap_or_default(),
        }
    }
}

impl KeyLayout {
    /// The tagged layout with a custom prefix (at most [`MAX_PREFIX_LEN`] bytes, no control
    /// bytes, no `{` or `}`; may be empty).
    pub fn tagged(prefix: &[u8]) -> Result<Self, ConfigError> {
        if prefix
            .iter()
            .any(|&b| b.is_ascii_control() || b == b'{' || b == b'}')
        {
            return Err(ConfigError::BadPrefix);
        }
        heapless::Vec::from_slice(prefix)
            .map(|prefix| KeyLayout::Tagged { prefix })
            .map_err(|_| ConfigError::BadPrefix)
    }

    /// The key prefix.
    #[must_use]
    pub fn prefix(&self) -> &[u8] {
        match self {
            KeyLayout::Tagged { prefix } => prefix,
        }
    }
}

/// The keys of one lock, as parts ready for [`crate::resp::Sink::bulk_parts`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keys {
    layout: KeyLayout,
    name: LockName,
}

impl Keys {
    /// The keys of lock `name` under `layout`.
    #[must_use]
    pub fn new(layout: KeyLayout, name: LockName) -> Self {
        Keys { layout, name }
    }

    /// The lock's name.
    #[must_use]
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// The layout.
    #[must_use]
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    fn with_suffix<'a>(&'a self, suffix: &'static [u8]) -> [&'a [u8]; 4] {
        [self.layout.prefix(), b"{", self.name.as_bytes(), suffix]
    }

    /// The key holding the token.
    #[must_use]
    pub fn lock(&self) -> [&[u8]; 4] {
        self.with_suffix(b"}")
    }

    /// The fencing counter.
    #[must_use]
    pub fn fence(&self) -> [&[u8]; 4] {
        self.with_suffix(b"}:fence")
    }

    /// The re-entry count.
    #[must_use]
    pub fn holds(&self) -> [&[u8]; 4] {
        self.with_suffix(b"}:holds")
    }

    /// The wake-up list.
    #[must_use]
    pub fn signal(&self) -> [&[u8]; 4] {
        self.with_suffix(b"}:signal")
    }
}

/// The secret that proves ownership of a lease: only the holder of the token releases or
/// extends it. Printable, so it can be printed by one process and handed to another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(heapless::String<MAX_TOKEN_LEN>);

impl Token {
    /// A fresh token from 16 bytes (128 bits) of caller entropy, as 32 lowercase hex digits.
    /// The core has no randomness of its own: pass bytes from the OS's CSPRNG.
    #[must_use]
    pub fn from_entropy(entropy: [u8; 16]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = heapless::String::new();
        for byte in entropy {
            for nibble in [byte >> 4, byte & 0x0f] {
                // Both indices are < 16, and 32 chars fit MAX_TOKEN_LEN.
                let c = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                let _ = text.push(char::from(c));
            }
        }
        Token(text)
    }

    /// A token given by the caller (one printed by another process, say): 16 to 64 printable
    /// ASCII bytes, no spaces.
    pub fn new(token: &[u8]) -> Result<Self, ConfigError> {
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len())
            || !token.iter().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::BadToken);
        }
        let text = core::str::from_utf8(token).map_err(|_| ConfigError::BadToken)?;
        heapless::String::try_from(text)
            .map(Token)
            .map_err(|_| ConfigError::BadToken)
    }

    /// The token acquire attempt `attempt` writes: the token itself for the first attempt on
    /// a plain lock, `<token>.<attempt>` otherwise (the token cut to fit [`MAX_TOKEN_LEN`]).
    /// Distinct per attempt, so a compare-and-delete that rolls back a failed attempt can
    /// never remove what a later attempt took — even when it reaches the node late, over a
    /// connection the driver has already replaced. On a reentrant lock the owner's token is
    /// what re-enters, so no attempt writes it: a later attempt never mistakes an earlier
    /// one's key for a re-entry. The lease reports the winning attempt's token: that is the
    /// one to release, extend or re-enter with.
    #[must_use]
    pub fn for_attempt(&self, attempt: u32, reentrant: bool) -> Token {
        if attempt <= 1 && !reentrant {
            return self.clone();
        }
        let mut digits = [0u8; 20];
        let suffix = crate::resp::encode::decimal(u64::from(attempt), &mut digits);
        let keep = self
            .0
            .len()
            .min(MAX_TOKEN_LEN.saturating_sub(suffix.len() + 1));
        let mut text = heapless::String::new();
        // All ASCII, and `keep + 1 + suffix` fits MAX_TOKEN_LEN by construction.
        let _ = text.push_str(self.0.get(..keep).unwrap_or_default());
        let _ = text.push('.');
        let _ = text.push_str(core::str::from_utf8(suffix).unwrap_or_default());
        Token(text)
    }

    /// The token's text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The token's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl core::fmt::Display for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::strategy::Just;

    fn joined(parts: [&[u8]; 4]) -> Vec<u8> {
        parts.concat()
    }

    /// The slot-relevant part of a key, as Redis Cluster computes it.
    fn hash_tag(key: &[u8]) -> &[u8] {
        if let Some(open) = key.iter().position(|&b| b == b'{')
            && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
            && len > 0
        {
            return &key[open + 1..open + 1 + len];
        }
        key
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(LockName::new(b""), Err(ConfigError::EmptyName));
        assert_eq!(
            LockName::new(b"a\r\nb"),
            Err(ConfigError::NameControlByte { at: 1 })
        );
        assert_eq!(
            LockName::new(b"\0"),
            Err(ConfigError::NameControlByte { at: 0 })
        );
        assert_eq!(
            LockName::new(&[b'x'; MAX_NAME_LEN + 1]),
            Err(ConfigError::NameTooLong {
                len: MAX_NAME_LEN + 1
            })
        );
        assert!(LockName::new(&[b'x'; MAX_NAME_LEN]).is_ok());
        assert!(LockName::new(&[0xff, 0xfe, b'{', b'}']).is_ok());
        assert_eq!(LockName::new(b"}x"), Err(ConfigError::NameStartsWithBrace));
    }

    #[test]
    fn default_layout_keys() {
        let keys = Keys::new(KeyLayout::default(), LockName::new(b"jobs").unwrap());
        assert_eq!(joined(keys.lock()), b"distlock:{jobs}");
        assert_eq!(joined(keys.fence()), b"distlock:{jobs}:fence");
        assert_eq!(joined(keys.holds()), b"distlock:{jobs}:holds");
        assert_eq!(joined(keys.signal()), b"distlock:{jobs}:signal");
    }

    proptest::proptest! {
        #[test]
        fn all_keys_of_a_lock_share_one_cluster_slot(
            prefix in proptest::collection::vec(proptest::prop_oneof![Just(b'{'), Just(b'}'), 0x20u8..=0xff], 0..12),
            name in proptest::collection::vec(proptest::prop_oneof![Just(b'{'), Just(b'}'), 0x20u8..=0xff], 1..12),
        ) {
            // Whatever is accepted must keep the keys in one slot.
            let (Ok(layout), Ok(name)) = (KeyLayout::tagged(&prefix), LockName::new(&name)) else {
                return Ok(());
            };
            let keys = Keys::new(layout, name);
            let lock = joined(keys.lock());
            for other in [joined(keys.fence()), joined(keys.holds()), joined(keys.signal())] {
                proptest::prop_assert_eq!(hash_tag(&lock), hash_tag(&other));
            }
        }
    }

    #[test]
    fn tokens() {
        let t = Token::from_entropy([0xab; 16]);
        assert_eq!(t.as_str(), "abababababababababababababababab");
        assert_eq!(Token::new(b"short"), Err(ConfigError::BadToken));
        assert_eq!(
            Token::new(b"0123456789abcdef with space"),
            Err(ConfigError::BadToken)
        );
        assert_eq!(
            Token::new(b"0123456789abcdef\r\n"),
            Err(ConfigError::BadToken)
        );
        assert_eq!(Token::new(&[b'a'; 65]), Err(ConfigError::BadToken));
        assert_eq!(Token::new(t.as_bytes()), Ok(t));
    }

    #[test]
    fn every_attempt_has_its_own_token() {
        let t = Token::from_entropy([0x11; 16]);
        assert_eq!(t.for_attempt(1, false), t);
        assert_eq!(
            t.for_attempt(1, true).as_str(),
            alloc::format!("{}.1", t.as_str())
        );
        assert_eq!(
            t.for_attempt(2, false).as_str(),
            alloc::format!("{}.2", t.as_str())
        );
        let long = Token::new(&[b'z'; MAX_TOKEN_LEN]).unwrap();
        let fourth = long.for_attempt(4_000_000_000, false);
        assert_eq!(fourth.as_str().len(), MAX_TOKEN_LEN);
        assert!(fourth.as_str().ends_with(".4000000000"));
        assert_ne!(long.for_attempt(5, false), long.for_attempt(6, false));
        assert_eq!(Token::new(fourth.as_bytes()), Ok(fourth));
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(
            KeyLayout::tagged(&[b'p'; MAX_PREFIX_LEN + 1]),
            Err(ConfigError::BadPrefix)
        );
        assert_eq!(KeyLayout::tagged(b"a\nb"), Err(ConfigError::BadPrefix));
        assert_eq!(KeyLayout::tagged(b"a{}:"), Err(ConfigError::BadPrefix));
        assert!(KeyLayout::tagged(b"").is_ok());
    }
}
