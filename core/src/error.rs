//! Every way an operation can fail, as values.
//!
//! The core never panics on input: configuration that cannot work is a [`ConfigError`] at
//! construction, and a lock operation ends in `Ok` or one [`Error`]. Server error replies are
//! classified ([`ServerErrorKind`]) so the retry logic can tell transient trouble (`LOADING`,
//! `BUSY`, `TRYAGAIN`, a failover's `READONLY`) from trouble that waiting cannot fix
//! (`NOAUTH`, `WRONGTYPE`, `MOVED`).
//!
//! Invariant: an error value owns all it says (no borrow of the input), and its `Display`
//! tells the user what happened and what to do.

use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;

use crate::server::NativeCommand;
use crate::time::Duration;

/// How many bytes of a server's error message an error keeps (enough for any Redis message
/// worth reading; longer ones are cut, never refused).
// `ServerError::message` documents this number: change both together.
pub(crate) const SERVER_MESSAGE_CAP: usize = 120;

/// A lock operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The lock is held by another owner and the wait ran out (for a try, at once).
    NotAcquired {
        /// Attempts made, the first included.
        attempts: u32,
        /// How long the holder's key had left on the last attempt, where a node said so.
        holder_ttl: Option<Duration>,
    },
    /// Release or extend with a token that does not hold the lock: the lease expired, was
    /// released, or was force-reset, and someone else may hold it now.
    NotHeld,
    /// The lease's validity ran out before the operation could report it.
    Expired,
    /// Too few nodes answered for a quorum: the cluster, not contention, is the problem.
    QuorumLost {
        /// Nodes that granted.
        granted: u8,
        /// Nodes a quorum needs.
        needed: u8,
        /// Nodes in all.
        nodes: u8,
        /// The last thing that went wrong on a node that did not answer yes.
        last_failure: Option<NodeFailure>,
    },
    /// A node replied with an error that waiting cannot fix.
    Server {
        /// The node that said it.
        node: u8,
        /// What it said.
        error: ServerError,
    },
    /// A node's reply broke the protocol (not RESP, or not a reply the command can give).
    Protocol {
        /// The node that sent it.
        node: u8,
        /// What was wrong with it.
        error: ProtocolError,
    },
    /// The caller cancelled the operation.
    Cancelled,
}

/// Why one node did not take part in a quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeFailure {
    /// No reply before the request timeout.
    Timeout,
    /// The driver reported the connection lost.
    Disconnected,
    /// The node replied with an error.
    Server(ServerError),
    /// The node's reply broke the protocol.
    Protocol(ProtocolError),
}

/// A malformed or unexpected reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes are not RESP.
    Malformed,
    /// One reply is longer than the machine buffers.
    FrameTooLarge {
        /// The buffer's capacity in bytes.
        capacity: usize,
    },
    /// Aggregates nested deeper than the core accepts.
    TooDeep,
    /// A streamed (`?`-length) RESP3 type, which no lock command returns.
    Streamed,
    /// A well-formed reply of a type or value this command never returns.
    UnexpectedReply,
    /// Bytes arrived from a node that owes this machine no reply.
    Unsolicited,
}

/// A server's error reply, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// What kind of error it is.
    pub kind: ServerErrorKind,
    /// The message as the server sent it, cut at 120 bytes; invalid UTF-8
    /// is replaced. (Boxed: errors are rare, and a small `Error` keeps every `Result` small.)
    pub message: Box<str>,
}

/// The classes of server error the lock protocol reacts to differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ServerErrorKind {
    /// `NOSCRIPT`: the script cache lacks our script (after a failover or `SCRIPT FLUSH`).
    NoScript,
    /// `READONLY`: a replica answered, usually mid-failover.
    ReadOnly,
    /// `LOADING`: the server is loading its dataset.
    Loading,
    /// `BUSY`: a script is running too long on the server.
    Busy,
    /// `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`: the cluster is re-forming.
    TryAgain,
    /// `NOAUTH`, `WRONGPASS`: authentication is missing or wrong.
    NoAuth,
    /// `NOPERM`: the ACL user may not run a command or touch a key.
    NoPerm,
    /// `WRONGTYPE`: the lock key holds a value of another type — also a semaphore's scripts'
    /// answer when the name is a mutex (and a mutex's when the name is a semaphore).
    WrongType,
    /// `WRONGLIMIT`: the semaphore's live permits were taken with another limit; every
    /// client of a semaphore must agree on it (see [`crate::Lock::semaphore`]).
    WrongLimit,
    /// `MOVED`: the key lives on another cluster node.
    Moved,
    /// `ASK`: the key's slot is migrating.
    Ask,
    /// `ERR unknown command`: the server lacks the command.
    UnknownCommand,
    /// `OOM`: the server is out of memory under `maxmemory`.
    OutOfMemory,
    /// Anything else.
    Other,
}

impl ServerErrorKind {
    /// Whether waiting and retrying within the deadline can help.
    #[must_use]
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            Self::ReadOnly | Self::Loading | Self::Busy | Self::TryAgain
        )
    }

    /// Classifies an error reply by its first word (the RESP error prefix convention).
    #[must_use]
    pub fn classify(message: &[u8]) -> Self {
        let word_end = message
            .iter()
            .position(|&b| b == b' ')
            .unwrap_or(message.len());
        let (word, rest) = message.split_at(word_end);
        match word {
            b"NOSCRIPT" => Self::NoScript,
            b"READONLY" => Self::ReadOnly,
            b"LOADING" => Self::Loading,
            b"BUSY" => Self::Busy,
            b"TRYAGAIN" | b"CLUSTERDOWN" | b"MASTERDOWN" => Self::TryAgain,
            b"NOAUTH" | b"WRONGPASS" => Self::NoAuth,
            b"NOPERM" => Self::NoPerm,
            b"WRONGTYPE" => Self::WrongType,
            b"WRONGLIMIT" => Self::WrongLimit,
            b"MOVED" => Self::Moved,
            b"ASK" => Self::Ask,
            b"OOM" => Self::OutOfMemory,
            b"ERR"
                if starts_with_ignore_case(rest, b" unknown command")
                    || starts_with_ignore_case(rest, b" unknown subcommand") =>
            {
                Self::UnknownCommand
            }
            _ => Self::Other,
        }
    }
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len()
        && haystack
            .iter()
            .zip(prefix)
            .all(|(a, b)| a.eq_ignore_ascii_case(b))
}

impl ServerError {
    /// Classifies `message` and keeps a printable copy of it, without the script location a
    /// server adds to errors raised inside a script (`script: <sha>, on @user_script:4.`, or
    /// Redis 6's `Error running script (call to f_<sha>): @user_script:4: ` before it): the
    /// user should read what went wrong, not where in our Lua it happened.
    #[must_use]
    pub fn from_message(message: &[u8]) -> Self {
        let message = without_script_location(message);
        let mut kept = String::new();
        'cut: for chunk in message.utf8_chunks() {
            let replacement = (!chunk.invalid().is_empty()).then_some(char::REPLACEMENT_CHARACTER);
            for c in chunk.valid().chars().chain(replacement) {
                if kept.len().saturating_add(c.len_utf8()) > SERVER_MESSAGE_CAP {
                    break 'cut;
                }
                kept.push(c);
            }
        }
        ServerError {
            kind: ServerErrorKind::classify(message),
            message: kept.into_boxed_str(),
        }
    }
}

/// `message` without the script location servers add to errors raised in a script.
fn without_script_location(message: &[u8]) -> &[u8] {
    const MARK: &[u8] = b"@user_script:";
    let Some(at) = find(message, MARK) else {
        return message;
    };
    // Redis 6: "ERR Error running script (call to f_…): @user_script:4: WRONGTYPE …".
    let after = &message[at + MARK.len()..];
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    if let Some(inner) = after[digits..].strip_prefix(b": ")
        && !inner.is_empty()
    {
        return without_script_location(inner);
    }
    // Redis 7: "WRONGTYPE … script: <sha>, on @user_script:4.".
    match find(message, b" script: ") {
        Some(cut) if cut < at => trim_end(&message[..cut]),
        _ => message,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace() && *b != b'.')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

/// A lock could not be set up as asked; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The lock name is empty.
    EmptyName,
    /// The lock name is longer than [`crate::limits::MAX_NAME_LEN`] bytes.
    NameTooLong {
        /// Its length.
        len: usize,
    },
    /// The lock name has an ASCII control byte (CR, LF, NUL, …) at this offset.
    NameControlByte {
        /// Where.
        at: usize,
    },
    /// The lock name starts with `}`, which would give its keys an empty hash tag.
    NameStartsWithBrace,
    /// The lock name is reserved for distlock's own keys under this key layout (under
    /// [`crate::KeyLayout::RedisPy`]: names starting with [`crate::keys::REDIS_PY_PREFIX`]).
    ReservedName,
    /// The key prefix is longer than [`crate::limits::MAX_PREFIX_LEN`] or has a control byte or
    /// a brace.
    BadPrefix,
    /// A token must be 16 to 64 printable ASCII bytes.
    BadToken,
    /// The TTL is zero or above [`crate::limits::MAX_TTL`].
    BadTtl,
    /// The node count is zero, above the machine's capacity, or does not match the
    /// server descriptions given.
    BadNodeCount {
        /// Nodes asked for.
        nodes: usize,
        /// Nodes the machine type can hold.
        capacity: usize,
    },
    /// The retry policy cannot work (zero base delay with jitter off, cap below base, …).
    BadRetry,
    /// The clock-drift allowance leaves no validity for this TTL.
    DriftExceedsTtl,
    /// Fair mode ([`crate::LockOptions::fair`]) is single-node only and needs the tagged key
    /// layout: Redlock waiters (N > 1) and the Python libraries' layouts use wake-up signals.
    FairUnsupported,
    /// [`crate::Scripts::Never`] with an option only a Lua script can provide.
    NeedsScripts(ScriptedFeature),
    /// [`crate::Scripts::Never`], but node `node`'s server (as its handshake reported it)
    /// lacks `command`, and the lock would need a script in its place.
    MissingNativeCommand {
        /// Which node, in node order.
        node: usize,
        /// The command it lacks.
        command: NativeCommand,
    },
    /// A semaphore's limit is 0 or above [`crate::limits::MAX_PERMITS`].
    BadLimit {
        /// The limit asked for.
        limit: u32,
    },
    /// A semaphore ([`crate::Lock::semaphore`]) runs on one node with the tagged key layout,
    /// and is not reentrant (each permit is its own lease).
    SemaphoreUnsupported,
    /// A read-write lock ([`crate::Lock::rw`]) runs on one node with the tagged key layout,
    /// and is neither reentrant nor fair (each hold is its own lease).
    RwLockUnsupported,
    /// Get-or-compute ([`crate::GetOrLock`]) runs on one node with the tagged key layout and
    /// scripts, over a plain lock: not reentrant, fenced or fair, not a semaphore, a
    /// read-write or a multi-name lock.
    ComputeUnsupported,
    /// A value to store is longer than [`crate::MAX_VALUE_LEN`] bytes.
    ValueTooLong {
        /// Its length.
        len: usize,
    },
    /// A durable lease ([`crate::Durability`]) needs at least one replica and a timeout of at
    /// least 1 ms (`WAIT … 0` would block for ever), and one node: over several, Redlock's
    /// quorum of independent primaries is the durability.
    Durability,
    /// A multi-name lock ([`crate::Lock::multi`]) was given no name.
    NoNames,
    /// A multi-name lock was given more than [`crate::MAX_MULTI_NAMES`] names.
    TooManyNames {
        /// How many names were given.
        count: usize,
    },
    /// A multi-name lock was given the same name twice (at these places of the caller's list).
    DuplicateName {
        /// The first place of the name.
        first: usize,
        /// The place that repeats it.
        second: usize,
    },
    /// A multi-name lock ([`crate::Lock::multi`]) needs the tagged key layout and is neither
    /// reentrant nor fair.
    MultiUnsupported,
}

/// What only a Lua script gives a lock, so [`crate::Scripts::Never`] refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScriptedFeature {
    /// Fencing tokens ([`crate::LockOptions::fenced`]): the counter's `INCR` and the lock's
    /// `SET` must happen together.
    Fencing,
    /// Re-entry ([`crate::LockOptions::reentrant`]): the hold count moves with the lock key.
    Reentry,
    /// Fair mode ([`crate::LockOptions::fair`]): the queue and the hand-off are scripts.
    Fair,
    /// A semaphore ([`crate::Lock::semaphore`]): counting live permits is a script.
    Semaphore,
    /// A read-write lock ([`crate::Lock::rw`]): readers, writers and their intents are
    /// scripts.
    RwLock,
    /// A multi-name lock ([`crate::Lock::multi`]): every name taken in one atomic step is a
    /// script.
    MultiName,
}

impl ScriptedFeature {
    /// The option's name, as the builders and the command line spell it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            ScriptedFeature::Fencing => "fenced",
            ScriptedFeature::Reentry => "reentrant",
            ScriptedFeature::Fair => "fair",
            ScriptedFeature::Semaphore => "limit",
            ScriptedFeature::RwLock => "read-write",
            ScriptedFeature::MultiName => "several names",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAcquired { attempts, holder_ttl } => {
                let plural = if *attempts == 1 { "" } else { "s" };
                write!(f, "lock is held by another owner (gave up after {attempts} attempt{plural}")?;
                if let Some(ttl) = holder_ttl {
                    write!(f, "; the holder's key expires in {ttl}")?;
                }
                f.write_str("); wait longer or try later")
            }
            Error::NotHeld => f.write_str(
                "this token does not hold the lock: the lease expired, was released or was reset; stop the work it protected",
            ),
            Error::Expired => f.write_str(
                "the lease's validity ran out before the operation finished; use a longer TTL",
            ),
            Error::QuorumLost { granted, needed, nodes, last_failure } => {
                write!(f, "only {granted} of {nodes} nodes granted, {needed} needed")?;
                if let Some(why) = last_failure {
                    write!(f, " (last node failure: {why})")?;
                }
                f.write_str("; check that the Redis nodes are up and reachable")
            }
            Error::Server { node, error } => write!(f, "node {node}: {error}"),
            Error::Protocol { node, error } => write!(f, "node {node}: {error}"),
            Error::Cancelled => f.write_str("cancelled by the caller"),
        }
    }
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeFailure::Timeout => f.write_str("no reply in time"),
            NodeFailure::Disconnected => f.write_str("connection lost"),
            NodeFailure::Server(e) => fmt::Display::fmt(e, f),
            NodeFailure::Protocol(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Malformed => {
                f.write_str("reply is not valid RESP; is this a Redis server?")
            }
            ProtocolError::FrameTooLarge { capacity } => {
                write!(
                    f,
                    "reply is longer than the {capacity} bytes a lock reply can take"
                )
            }
            ProtocolError::TooDeep => f.write_str("reply nests aggregates too deeply"),
            ProtocolError::Streamed => {
                f.write_str("reply uses a streamed RESP3 type no lock command returns")
            }
            ProtocolError::UnexpectedReply => {
                f.write_str("reply has a type or value this command never returns")
            }
            ProtocolError::Unsolicited => f.write_str("bytes arrived that answer no request"),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.kind {
            ServerErrorKind::NoAuth => "; give the right user and password",
            ServerErrorKind::NoPerm => {
                "; the ACL user needs the lock's keys and commands (SET, GET, DEL, PEXPIRE, EVAL, EVALSHA, INCR, LPUSH, BLPOP)"
            }
            ServerErrorKind::WrongType => {
                "; a key of this lock holds another kind of value: pick another name or key prefix, or remove that key"
            }
            ServerErrorKind::WrongLimit => {
                "; every client of a semaphore must pass the same limit while any of its permits lives"
            }
            ServerErrorKind::Moved | ServerErrorKind::Ask => {
                "; this is a Redis Cluster node for another slot: connect to the node that owns the key"
            }
            ServerErrorKind::ReadOnly => "; this node is a replica: connect to the primary",
            ServerErrorKind::OutOfMemory => "; the server hit maxmemory",
            _ => "",
        };
        write!(f, "server error: {}{hint}", self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::EmptyName => f.write_str("lock name is empty"),
            ConfigError::NameTooLong { len } => write!(
                f,
                "lock name is {len} bytes; at most {} are allowed",
                crate::limits::MAX_NAME_LEN
            ),
            ConfigError::NameControlByte { at } => {
                write!(
                    f,
                    "lock name has a control byte (CR, LF, NUL, …) at offset {at}"
                )
            }
            ConfigError::NameStartsWithBrace => {
                f.write_str("lock name may not start with '}' (it would break the keys' hash tag)")
            }
            // The prefix is `keys::REDIS_PY_PREFIX`, written out so errors need no key module
            // (a keys test checks the two agree).
            ConfigError::ReservedName => f.write_str(
                "lock name is reserved for distlock's own keys under this key layout (it starts with 'distlock-redis-py:')",
            ),
            ConfigError::BadPrefix => write!(
                f,
                "key prefix must be at most {} bytes without control bytes or braces",
                crate::limits::MAX_PREFIX_LEN
            ),
            ConfigError::BadToken => f.write_str("token must be 16 to 64 printable ASCII bytes"),
            ConfigError::BadTtl => write!(
                f,
                "ttl must be between {} ms (with the default clock-drift allowance) and {} ms",
                crate::drift::Drift::default()
                    .min_ttl()
                    .map_or(1, |min| min.as_millis()),
                crate::limits::MAX_TTL.as_millis()
            ),
            ConfigError::BadNodeCount { nodes, capacity } => {
                write!(
                    f,
                    "{nodes} nodes given; between 1 and {capacity} are supported"
                )
            }
            ConfigError::BadRetry => {
                f.write_str("retry policy: base delay must be > 0 and at most the cap")
            }
            ConfigError::DriftExceedsTtl => write!(
                f,
                "the clock-drift allowance is as long as the ttl: no validity would remain (with \
                 the default allowance, 1% of the ttl + 2 ms, the ttl must be at least {} ms)",
                crate::drift::Drift::default()
                    .min_ttl()
                    .map_or(1, |min| min.as_millis()),
            ),
            ConfigError::BadLimit { limit } => write!(
                f,
                "semaphore limit {limit} is out of range: between 1 and {} permits",
                crate::limits::MAX_PERMITS
            ),
            ConfigError::SemaphoreUnsupported => f.write_str(
                "a semaphore runs on one node with the tagged key layout, and is not reentrant",
            ),
            ConfigError::RwLockUnsupported => f.write_str(
                "a read-write lock runs on one node with the tagged key layout, and is neither reentrant nor fair",
            ),
            ConfigError::ComputeUnsupported => f.write_str(
                "get-or-compute runs on one node with the tagged key layout and scripts, over a plain lock (not reentrant, fenced or fair)",
            ),
            ConfigError::ValueTooLong { len } => write!(
                f,
                "a value of {len} bytes is longer than the {} bytes get-or-compute stores",
                crate::get_or_compute::MAX_VALUE_LEN
            ),
            ConfigError::FairUnsupported => f.write_str(
                "fair mode is single-node only, with the tagged key layout; Redlock waiters use wake-up signals",
            ),
            ConfigError::NeedsScripts(feature) => write!(
                f,
                "the {} option needs Lua scripts, and scripts are set to never (drop one of them)",
                feature.name()
            ),
            ConfigError::MissingNativeCommand { node, command } => write!(
                f,
                "scripts are set to never, but node {node}'s server has no {} ({}); allow scripts or upgrade the server",
                command.name(),
                command.since()
            ),
            ConfigError::Durability => f.write_str(
                "a durable lease needs at least 1 replica, a timeout of at least 1 ms, and one node (a server or a sentinel group; Redlock's independent primaries are their own durability)",
            ),
            ConfigError::NoNames => f.write_str("a multi-name lock needs at least one name"),
            ConfigError::TooManyNames { count } => write!(
                f,
                "{count} names are too many for one lock: at most {}",
                crate::limits::MAX_MULTI_NAMES
            ),
            ConfigError::DuplicateName { first, second } => write!(
                f,
                "names {first} and {second} (counting from 0) are the same: a multi-name lock takes each name once"
            ),
            ConfigError::MultiUnsupported => f.write_str(
                "a multi-name lock needs the tagged key layout, and is neither reentrant nor fair",
            ),
        }
    }
}

impl core::error::Error for Error {}
impl core::error::Error for ConfigError {}
impl core::error::Error for ProtocolError {}
impl core::error::Error for ServerError {}
impl core::error::Error for NodeFailure {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_locations_are_cut_from_messages() {
        let redis7 = ServerError::from_message(
            b"WRONGTYPE Operation against a key holding the wrong kind of value script: 5f3a9c0e, on @user_script:4.",
        );
        assert_eq!(redis7.kind, ServerErrorKind::WrongType);
        assert_eq!(
            &*redis7.message,
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        );
        let redis6 = ServerError::from_message(
            b"ERR Error running script (call to f_5f3a9c0e): @user_script:4: WRONGTYPE Operation against a key holding the wrong kind of value",
        );
        assert_eq!(redis6.kind, ServerErrorKind::WrongType);
        assert_eq!(
            &*redis6.message,
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        );
        let plain = ServerError::from_message(b"OOM command not allowed");
        assert_eq!(&*plain.message, "OOM command not allowed");
        // A bare mark with nothing after it is left as the server sent it.
        let odd = ServerError::from_message(b"ERR @user_script:");
        assert_eq!(&*odd.message, "ERR @user_script:");
    }

    #[test]
    fn classifies_the_errors_the_protocol_reacts_to() {
        let cases: &[(&[u8], ServerErrorKind)] = &[
            (
                b"NOSCRIPT No matching script. Please use EVAL.",
                ServerErrorKind::NoScript,
            ),
            (
                b"READONLY You can't write against a read only replica.",
                ServerErrorKind::ReadOnly,
            ),
            (
                b"LOADING Redis is loading the dataset in memory",
                ServerErrorKind::Loading,
            ),
            (
                b"BUSY Redis is busy running a script.",
                ServerErrorKind::Busy,
            ),
            (b"NOAUTH Authentication required.", ServerErrorKind::NoAuth),
            (
                b"WRONGPASS invalid username-password pair",
                ServerErrorKind::NoAuth,
            ),
            (b"NOPERM User x has no permissions", ServerErrorKind::NoPerm),
            (
                b"WRONGTYPE Operation against a key holding the wrong kind of value",
                ServerErrorKind::WrongType,
            ),
            (
                b"WRONGLIMIT semaphore permits were taken with limit 3",
                ServerErrorKind::WrongLimit,
            ),
            (b"MOVED 3999 127.0.0.1:6381", ServerErrorKind::Moved),
            (b"ASK 3999 127.0.0.1:6381", ServerErrorKind::Ask),
            (
                b"TRYAGAIN Multiple keys request during rehashing of slot",
                ServerErrorKind::TryAgain,
            ),
            (
                b"CLUSTERDOWN The cluster is down",
                ServerErrorKind::TryAgain,
            ),
            (
                b"MASTERDOWN Link with MASTER is down",
                ServerErrorKind::TryAgain,
            ),
            (
                b"OOM command not allowed when used memory > 'maxmemory'.",
                ServerErrorKind::OutOfMemory,
            ),
            (
                b"ERR unknown command 'HELLO', with args beginning with: ",
                ServerErrorKind::UnknownCommand,
            ),
            (
                b"ERR unknown command `DELIFEQ`, with args beginning with: ",
                ServerErrorKind::UnknownCommand,
            ),
            (b"ERR syntax error", ServerErrorKind::Other),
            (b"", ServerErrorKind::Other),
            (b"NOSCRIPTX", ServerErrorKind::Other),
        ];
        for (msg, kind) in cases {
            assert_eq!(
                ServerErrorKind::classify(msg),
                *kind,
                "{:?}",
                core::str::from_utf8(msg)
            );
        }
    }

    #[test]
    fn only_waitable_errors_are_transient() {
        assert!(ServerErrorKind::Loading.is_transient());
        assert!(ServerErrorKind::Busy.is_transient());
        assert!(ServerErrorKind::ReadOnly.is_transient());
        assert!(ServerErrorKind::TryAgain.is_transient());
        assert!(!ServerErrorKind::NoAuth.is_transient());
        assert!(!ServerErrorKind::WrongType.is_transient());
        assert!(!ServerErrorKind::Moved.is_transient());
        assert!(!ServerErrorKind::NoScript.is_transient());
    }

    #[test]
    fn server_message_is_cut_and_cleaned_not_refused() {
        let mut long = [b'x'; 400];
        long[..5].copy_from_slice(b"BUSY ");
        long[10] = 0xff;
        let e = ServerError::from_message(&long);
        assert_eq!(e.kind, ServerErrorKind::Busy);
        assert_eq!(e.message.len(), SERVER_MESSAGE_CAP);
        assert!(e.message.contains('\u{fffd}'));
    }
}
