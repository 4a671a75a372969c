//! The command's exit codes: one table, used by every subcommand and printed in `--help`.
//!
//! The codes follow `sysexits.h` where one fits, and the shell's conventions for a command
//! that cannot run (126, 127) or was stopped by a signal (128 + N).

use distlock_core::{HandshakeError, ServerError, ServerErrorKind};
use distlock_host::Error;

/// `release` / `extend`: the token does not hold the lock (it expired, was released or reset).
pub(crate) const NOT_HELD: u8 = 1;
/// EX_USAGE: bad arguments, names, TTLs, tokens, URLs or a node given twice.
pub(crate) const USAGE: u8 = 64;
/// EX_NOINPUT: `run`: the guest app cannot be read.
#[cfg(feature = "component")]
pub(crate) const NO_INPUT: u8 = 66;
/// EX_UNAVAILABLE: too few servers answered (not connected, timed out, or lost mid-wait).
pub(crate) const UNAVAILABLE: u8 = 69;
/// EX_SOFTWARE: `run`: the guest trapped, or a limit (time, memory) stopped it.
#[cfg(feature = "component")]
pub(crate) const GUEST_FAILED: u8 = 70;
/// EX_IOERR: the result could not be written (stdout closed); what was taken was released.
pub(crate) const IO_ERROR: u8 = 74;
/// EX_TEMPFAIL: the lock is held by another owner (or `exec --on-lost kill` lost it).
pub(crate) const NOT_ACQUIRED: u8 = 75;
/// EX_PROTOCOL: a server refused the command or broke the protocol (`WRONGTYPE`,
/// `WRONGLIMIT`, `OOM`, a Cluster `MOVED`, a reply that is not RESP).
pub(crate) const SERVER_REFUSED: u8 = 76;
/// EX_NOPERM: a server refused the credentials or the ACL user's rights (`NOAUTH`,
/// `WRONGPASS`, `NOPERM`).
pub(crate) const NO_PERMISSION: u8 = 77;
/// `exec`: the command exists but cannot be executed (permissions, not an executable).
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// `exec`: the command was not found.
pub(crate) const NOT_FOUND: u8 = 127;
/// `exec`, `run`: stopped by signal N exits `SIGNALLED + N`.
pub(crate) const SIGNALLED: u8 = 128;

/// The table for `--help`, as a literal so `concat!` can put it after the examples.
macro_rules! table {
    () => {
        "Exit codes:\n  \
        0     done\n  \
        1     release/extend: the token does not hold the lock\n  \
        64    bad arguments, names, TTLs, tokens or URLs; compute: COMMAND wrote more than 1,000,000 bytes, or a lock compute cannot use (Redlock, a Python layout, --no-scripts); a node given twice; a lock spanning cluster slots; a --limit outside 1..=1024; --read with --write, --fair or --limit; a semaphore or read-write lock over several nodes; several --name with --limit, --read, --write, --fair or --reentrant, a name twice, more than 16 names; run with --durable, or linked (no --native) with --connect-timeout or a Python --layout\n  \
        66    run: the guest app cannot be read\n  \
        69    too few servers answered (unreachable, timed out, or lost while waiting; no sentinel named a primary; a cluster primary reset --all could not walk)\n  \
        70    run: the guest trapped or a limit (--time-limit, memory) stopped it\n  \
        74    the result could not be written (stdout closed); an acquired lock was released; compute: COMMAND's output could not be read to its end\n  \
        75    the lock is held by another owner; exec --on-lost kill lost it; compute: the value was not computed within --wait, or the lock was lost while COMMAND ran\n  \
        76    a server refused the command or broke the protocol (WRONGTYPE, WRONGLIMIT, OOM, MOVED, not RESP), gave no slot map, or refused WAIT (--durable)\n  \
        77    a server or a sentinel refused the credentials or the user's rights (NOAUTH, WRONGPASS, NOPERM)\n  \
        126   exec, compute: the command cannot be executed\n  \
        127   exec, compute: the command was not found\n  \
        128+N exec, compute, run: stopped by signal N (the locks released first)\n  \
        other exec, compute, run: the command's (guest's) own exit code"
    };
}
pub(crate) use table;

/// The exit code for an error.
pub(crate) fn code_of(e: &Error) -> u8 {
    match e {
        Error::Lock(lock) => code_of_lock(lock),
        Error::Config(_)
        | Error::BadUrl { .. }
        | Error::TooManyNodes(_)
        | Error::NoPrefixToWalk { .. }
        | Error::EmptyPrefix
        | Error::DuplicateNode { .. }
        | Error::SpansSlots(_)
        | Error::NotOnCluster(_) => USAGE,
        Error::ClusterMap { .. } => SERVER_REFUSED,
        Error::Sentinel {
            why:
                distlock_core::DiscoveryError::RoleRefused
                | distlock_core::DiscoveryError::SentinelAuthRefused,
            ..
        } => NO_PERMISSION,
        Error::NotDurable { why, .. } => match why {
            distlock_core::DurableError::Refused(e) => code_of_server(e),
            distlock_core::DurableError::Malformed => SERVER_REFUSED,
            _ => UNAVAILABLE,
        },
        Error::Handshake { source, .. } => match source {
            HandshakeError::Auth(_) => NO_PERMISSION,
            HandshakeError::Server(e) => code_of_server(e),
            HandshakeError::Protocol(_) => SERVER_REFUSED,
            HandshakeError::Timeout => UNAVAILABLE,
            _ => UNAVAILABLE,
        },
        _ => UNAVAILABLE,
    }
}

fn code_of_lock(e: &distlock_core::Error) -> u8 {
    use distlock_core::Error as E;
    match e {
        E::NotAcquired { .. } | E::Expired => NOT_ACQUIRED,
        E::NotHeld => NOT_HELD,
        E::Server { error, .. } => code_of_server(error),
        E::Protocol { .. } => SERVER_REFUSED,
        _ => UNAVAILABLE,
    }
}

fn code_of_server(e: &ServerError) -> u8 {
    match e.kind {
        ServerErrorKind::NoAuth | ServerErrorKind::NoPerm => NO_PERMISSION,
        _ => SERVER_REFUSED,
    }
}
