//! What the core knows about a server: its RESP version, flavour and version, and so which
//! commands it can use.
//!
//! Learned once per connection by the [`crate::handshake::Handshake`] machine (`HELLO`, or
//! `INFO server` on servers without it). [`ServerInfo::default`] assumes nothing — RESP2,
//! version unknown — and so uses only what every Redis since 2.6 has (`SET NX PX`, Lua).
//!
//! Invariant: a capability is claimed only for versions that are documented to have it; a
//! wrong guess is still safe because an `unknown command` reply makes the machine fall back
//! to the script and remember that for the rest of its run.

use crate::resp::Protocol;

/// Which server implementation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Flavor {
    /// Redis.
    Redis,
    /// Valkey.
    Valkey,
    /// Not known (no handshake, or another Redis-protocol server).
    #[default]
    Unknown,
}

/// A `major.minor.patch` server version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version {
    /// Major.
    pub major: u16,
    /// Minor.
    pub minor: u16,
    /// Patch.
    pub patch: u16,
}

impl Version {
    /// `major.minor.patch`.
    #[must_use]
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `7.2.4` (and tolerates a missing patch or a suffix such as `-rc1`).
    #[must_use]
    pub fn parse(text: &[u8]) -> Option<Self> {
        let mut parts = [0u16; 3];
        let mut fields = text.split(|&b| b == b'.');
        for (i, slot) in parts.iter_mut().enumerate() {
            let Some(field) = fields.next() else {
                // "7.2" is fine, "" is not.
                return (i >= 2).then_some(Version::new(parts[0], parts[1], 0));
            };
            let digits = field.iter().take_while(|b| b.is_ascii_digit()).count();
            let field = field.get(..digits)?;
            if field.is_empty() {
                return None;
            }
            *slot = core::str::from_utf8(field).ok()?.parse().ok()?;
        }
        Some(Version::new(parts[0], parts[1], parts[2]))
    }
}

/// The native compare-and-delete a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeDelete {
    /// Valkey ≥ 9.0: `DELIFEQ key token`.
    DelIfEq,
    /// Redis ≥ 8.4: `DELEX key IFEQ token`.
    DelExIfEq,
}

/// A native command a scriptless lock ([`crate::Scripts::Never`]) cannot do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NativeCommand {
    /// A compare-and-delete: `DELIFEQ` or `DELEX … IFEQ` (release, and an acquire's rollback).
    CompareAndDelete,
    /// `SET … IFEQ … PX` (extend).
    SetIfEq,
}

impl NativeCommand {
    /// The command as the servers spell it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            NativeCommand::CompareAndDelete => "DELIFEQ or DELEX … IFEQ",
            NativeCommand::SetIfEq => "SET … IFEQ",
        }
    }

    /// Which servers have it.
    #[must_use]
    pub const fn since(self) -> &'static str {
        match self {
            NativeCommand::CompareAndDelete => "Valkey ≥ 9.0, Redis ≥ 8.4",
            NativeCommand::SetIfEq => "Valkey ≥ 8.1, Redis ≥ 8.4",
        }
    }
}

/// One server, as the lock machines need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ServerInfo {
    /// The RESP version the connection speaks.
    pub protocol: Protocol,
    /// Redis, Valkey or unknown.
    pub flavor: Flavor,
    /// The server's version (0.0.0 when unknown).
    pub version: Version,
}

impl ServerInfo {
    /// The native compare-and-delete, where the server has one.
    #[must_use]
    pub fn native_delete(&self) -> Option<NativeDelete> {
        match self.flavor {
            Flavor::Valkey if self.version >= Version::new(9, 0, 0) => Some(NativeDelete::DelIfEq),
            Flavor::Redis if self.version >= Version::new(8, 4, 0) => Some(NativeDelete::DelExIfEq),
            _ => None,
        }
    }

    /// Whether `SET key value IFEQ expected PX ttl` exists (Valkey ≥ 8.1, Redis ≥ 8.4).
    #[must_use]
    pub fn has_set_ifeq(&self) -> bool {
        match self.flavor {
            Flavor::Valkey => self.version >= Version::new(8, 1, 0),
            Flavor::Redis => self.version >= Version::new(8, 4, 0),
            Flavor::Unknown => false,
        }
    }

    /// Whether `SET key value NX PX ttl GET` exists (Redis ≥ 7.0; every Valkey, which began
    /// at 7.2): one command that takes a free key (reply nil), names the holder of a held one
    /// (its value), and answers `WRONGTYPE` for a key of another kind — a semaphore's or a
    /// read-write lock's name — where a plain `SET NX` reads that as "held". Redis 6.2 knows
    /// `GET` but refuses it beside `NX` (`ERR syntax error`); a server not known is not
    /// assumed to have it.
    #[must_use]
    pub fn has_set_nx_get(&self) -> bool {
        match self.flavor {
            Flavor::Valkey => true,
            Flavor::Redis => self.version >= Version::new(7, 0, 0),
            Flavor::Unknown => false,
        }
    }

    /// Whether a handshake told anything about the server (its flavour or its version).
    #[must_use]
    pub fn is_known(&self) -> bool {
        self.flavor != Flavor::Unknown || self.version != Version::default()
    }

    /// The first native command a scriptless lock needs that this known server lacks
    /// (`None` for a server not known: its reply will tell).
    #[must_use]
    pub fn missing_for_scriptless(&self) -> Option<NativeCommand> {
        if !self.is_known() {
            None
        } else if self.native_delete().is_none() {
            Some(NativeCommand::CompareAndDelete)
        } else if !self.has_set_ifeq() {
            Some(NativeCommand::SetIfEq)
        } else {
            None
        }
    }

    /// Whether blocking timeouts may be fractional seconds (Redis ≥ 6.0; all Valkey).
    #[must_use]
    pub fn has_fractional_block_timeout(&self) -> bool {
        match self.flavor {
            Flavor::Valkey => true,
            Flavor::Redis => self.version >= Version::new(6, 0, 0),
            Flavor::Unknown => self.version >= Version::new(6, 0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(flavor: Flavor, v: (u16, u16, u16)) -> ServerInfo {
        ServerInfo {
            protocol: Protocol::Resp3,
            flavor,
            version: Version::new(v.0, v.1, v.2),
        }
    }

    #[test]
    fn versions_parse() {
        assert_eq!(Version::parse(b"7.2.4"), Some(Version::new(7, 2, 4)));
        assert_eq!(Version::parse(b"8.4"), Some(Version::new(8, 4, 0)));
        assert_eq!(
            Version::parse(b"255.255.255-rc1"),
            Some(Version::new(255, 255, 255))
        );
        assert_eq!(Version::parse(b""), None);
        assert_eq!(Version::parse(b"7"), None);
        assert_eq!(Version::parse(b"x.1.2"), None);
        assert_eq!(Version::parse(b"99999999.1.1"), None);
    }

    #[test]
    fn native_commands_follow_the_documented_versions() {
        assert_eq!(
            server(Flavor::Valkey, (9, 0, 0)).native_delete(),
            Some(NativeDelete::DelIfEq)
        );
        assert_eq!(server(Flavor::Valkey, (8, 1, 2)).native_delete(), None);
        assert!(server(Flavor::Valkey, (8, 1, 0)).has_set_ifeq());
        assert!(!server(Flavor::Valkey, (8, 0, 9)).has_set_ifeq());
        assert_eq!(
            server(Flavor::Redis, (8, 4, 0)).native_delete(),
            Some(NativeDelete::DelExIfEq)
        );
        assert_eq!(server(Flavor::Redis, (8, 2, 1)).native_delete(), None);
        assert!(server(Flavor::Redis, (8, 4, 0)).has_set_ifeq());
        assert!(!server(Flavor::Redis, (7, 4, 0)).has_set_ifeq());
        assert_eq!(ServerInfo::default().native_delete(), None);
        assert!(!ServerInfo::default().has_set_ifeq());
        assert!(!ServerInfo::default().has_fractional_block_timeout());
        assert!(server(Flavor::Redis, (6, 0, 0)).has_fractional_block_timeout());
        assert!(server(Flavor::Redis, (7, 0, 0)).has_set_nx_get());
        assert!(!server(Flavor::Redis, (6, 2, 14)).has_set_nx_get());
        assert!(server(Flavor::Valkey, (7, 2, 4)).has_set_nx_get());
        assert!(!server(Flavor::Unknown, (7, 2, 4)).has_set_nx_get());
        assert!(!ServerInfo::default().has_set_nx_get());
    }
}
