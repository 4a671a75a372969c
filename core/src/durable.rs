//! Replica-durable leases: after an acquire or extend succeeded on a node, what to send on the
//! same connection (`WAIT numreplicas timeout`, or `WAITAOF numlocal numreplicas timeout`)
//! so the lease is reported only once enough replicas hold it, and what the reply means.
//!
//! The lease's validity still counts from the acquire's (or extend's) start: the time the
//! replicas take is spent out of it, never added. So the wait is bounded by the validity
//! left, and a lease whose validity ran out while waiting is not reported.
//!
//! What this does **not** give: `WAIT` makes a write survive the failover of a primary to a
//! replica that acknowledged it; it is not strong consistency (a replica that acknowledged
//! may itself be lost, and a write not acknowledged in time may still have been replicated
//! — the driver releases it).
//!
//! Invariants (unit and property tests below and in `tests/durable.rs`):
//! - never `WAIT … 0`: the timeout sent is at least 1 ms and at most the validity left;
//! - a lease counts as replicated only when an integer reply is at least the replicas asked
//!   for (for `WAITAOF`, both counts);
//! - a refusal (`ERR unknown command`, `NOPERM`, a managed service's own error) is
//!   [`DurableError::Refused`], never a silent success; no reply bytes panic.

use alloc::format;
use alloc::vec::Vec;

use crate::error::{ConfigError, ServerError};
use crate::resp::{Protocol, Reply, decode, frame_len};
use crate::time::{Duration, Instant};

/// How long a durable lease waits for its replicas when the user names no timeout: the
/// default request timeout, the time a node may stay silent.
pub const DURABLE_TIMEOUT: Duration = Duration::from_millis(1_000);

/// The longest reply to a `WAIT` / `WAITAOF` read.
pub const DURABLE_REPLY_CAP: usize = 512;

/// How many replicas must acknowledge a lease, and how long to wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    replicas: u32,
    timeout: Duration,
    aof: bool,
}

/// Why a lease was not confirmed durable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurableError {
    /// Fewer replicas acknowledged the lease than asked for within the timeout.
    NotReplicated {
        /// Replicas that acknowledged (for `WAITAOF`: that fsynced).
        acknowledged: u32,
        /// Replicas asked for.
        needed: u32,
    },
    /// `WAITAOF` said the primary's own append-only file did not fsync the lease (no AOF).
    NotFsynced,
    /// The server refused `WAIT`/`WAITAOF`: an unknown command (`WAITAOF` before 7.2, a
    /// managed service that disables it), `NOPERM`.
    Refused(ServerError),
    /// The reply was not a reply to `WAIT`/`WAITAOF`.
    Malformed,
    /// The lease's validity ran out before the replicas answered.
    Expired,
}

impl core::fmt::Display for DurableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotReplicated {
                acknowledged,
                needed,
            } => write!(
                f,
                "only {acknowledged} of the {needed} replicas asked for acknowledged the lease in time"
            ),
            Self::NotFsynced => f.write_str(
                "the primary did not fsync the lease to its append-only file (appendonly is off?)",
            ),
            Self::Refused(e) => write!(
                f,
                "the server refused to wait for its replicas ({e}); durable leases cannot be had there"
            ),
            Self::Malformed => f.write_str("the reply to WAIT is not a count of replicas"),
            Self::Expired => {
                f.write_str("the lease's validity ran out while waiting for the replicas")
            }
        }
    }
}

impl core::error::Error for DurableError {}

impl Durability {
    /// `replicas` (at least 1) must acknowledge each lease within `timeout` (at least 1 ms).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Durability`] for 0 replicas or a zero timeout (`WAIT … 0` would block
    /// for ever).
    pub fn new(replicas: u32, timeout: Duration) -> Result<Self, ConfigError> {
        if replicas == 0 || timeout.as_millis() == 0 {
            return Err(ConfigError::Durability);
        }
        Ok(Durability {
            replicas,
            timeout,
            aof: false,
        })
    }

    /// Waits with `WAITAOF 1 replicas timeout` instead (Redis 7.2+): the lease is fsynced to
    /// the primary's and the replicas' append-only files.
    #[must_use]
    pub fn with_aof(self) -> Self {
        Durability { aof: true, ..self }
    }

    /// Replicas that must acknowledge.
    #[must_use]
    pub fn replicas(&self) -> u32 {
        self.replicas
    }

    /// The longest wait for them.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether `WAITAOF` is sent.
    #[must_use]
    pub fn aof(&self) -> bool {
        self.aof
    }

    /// How long the wait sent at `now` may take: the timeout, cut to the validity left
    /// until `valid_until`; `None` when none is left.
    #[must_use]
    pub fn wait_for(&self, valid_until: Instant, now: Instant) -> Option<Duration> {
        let left = valid_until.saturating_since(now);
        if left.as_millis() == 0 {
            return None;
        }
        Some(Duration::from_millis(
            self.timeout.as_millis().min(left.as_millis()),
        ))
    }

    /// The command to send at `now` for a lease valid until `valid_until`, and the instant
    /// its reply must have arrived by (the validity's end: an answer later is of no use).
    ///
    /// # Errors
    ///
    /// [`DurableError::Expired`] when no validity is left to wait in.
    pub fn command(
        &self,
        valid_until: Instant,
        now: Instant,
    ) -> Result<(Vec<u8>, Instant), DurableError> {
        let wait = self
            .wait_for(valid_until, now)
            .ok_or(DurableError::Expired)?;
        let args: Vec<alloc::string::String> = if self.aof {
            alloc::vec![
                "WAITAOF".into(),
                "1".into(),
                format!("{}", self.replicas),
                format!("{}", wait.as_millis()),
            ]
        } else {
            alloc::vec![
                "WAIT".into(),
                format!("{}", self.replicas),
                format!("{}", wait.as_millis()),
            ]
        };
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in &args {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
        Ok((out, valid_until))
    }

    /// The length of the one reply at the start of `buf`, `Ok(None)` until it is complete.
    ///
    /// # Errors
    ///
    /// [`DurableError::Malformed`] for bytes that are not RESP or a reply past
    /// [`DURABLE_REPLY_CAP`].
    pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, DurableError> {
        match frame_len(buf) {
            Ok(Some(len)) if len <= DURABLE_REPLY_CAP => Ok(Some(len)),
            Ok(None) if buf.len() <= DURABLE_REPLY_CAP => Ok(None),
            _ => Err(DurableError::Malformed),
        }
    }

    /// Whether the reply (one whole frame, read at `now`) confirms a lease valid until
    /// `valid_until`.
    ///
    /// # Errors
    ///
    /// See [`DurableError`].
    pub fn judge(
        &self,
        frame: &[u8],
        protocol: Protocol,
        valid_until: Instant,
        now: Instant,
    ) -> Result<(), DurableError> {
        match Self::reply_len(frame)? {
            Some(len) if len == frame.len() => {}
            _ => return Err(DurableError::Malformed),
        }
        let reply = decode(frame, protocol).map_err(|_| DurableError::Malformed)?;
        let count = |r: &Reply<'_>| match r {
            Reply::Integer(n) => u32::try_from(*n).map_err(|_| DurableError::Malformed),
            _ => Err(DurableError::Malformed),
        };
        let acknowledged = match (&reply, self.aof) {
            (Reply::Error(message), _) => {
                return Err(DurableError::Refused(ServerError::from_message(message)));
            }
            (Reply::Integer(_), false) => count(&reply)?,
            (Reply::Array(items), true) => match items.as_slice() {
                [local, replicas] => {
                    if count(local)? < 1 {
                        return Err(DurableError::NotFsynced);
                    }
                    count(replicas)?
                }
                _ => return Err(DurableError::Malformed),
            },
            _ => return Err(DurableError::Malformed),
        };
        if acknowledged < self.replicas {
            return Err(DurableError::NotReplicated {
                acknowledged,
                needed: self.replicas,
            });
        }
        if now >= valid_until {
            return Err(DurableError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn zero_replicas_or_a_zero_timeout_are_refused() {
        assert_eq!(
            Durability::new(0, Duration::from_millis(10)),
            Err(ConfigError::Durability)
        );
        assert_eq!(
            Durability::new(1, Duration::ZERO),
            Err(ConfigError::Durability)
        );
    }

    #[test]
    fn the_wait_is_cut_to_the_validity_left_and_never_zero() {
        let d = Durability::new(2, Duration::from_millis(500)).unwrap();
        assert_eq!(
            d.command(t(10_000), t(0)).unwrap().0,
            b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$3\r\n500\r\n"
        );
        assert_eq!(
            d.command(t(100), t(60)).unwrap().0,
            b"*3\r\n$4\r\nWAIT\r\n$1\r\n2\r\n$2\r\n40\r\n"
        );
        assert_eq!(d.command(t(100), t(100)), Err(DurableError::Expired));
        let aof = d.with_aof();
        assert_eq!(
            aof.command(t(10_000), t(0)).unwrap().0,
            b"*4\r\n$7\r\nWAITAOF\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n500\r\n"
        );
    }

    #[test]
    fn replies_are_judged() {
        let d = Durability::new(1, Duration::from_millis(100)).unwrap();
        let judge = |reply: &[u8], now| d.judge(reply, Protocol::Resp2, t(1_000), t(now));
        assert_eq!(judge(b":1\r\n", 5), Ok(()));
        assert_eq!(judge(b":3\r\n", 5), Ok(()));
        assert_eq!(
            judge(b":0\r\n", 5),
            Err(DurableError::NotReplicated {
                acknowledged: 0,
                needed: 1
            })
        );
        assert_eq!(judge(b":1\r\n", 1_000), Err(DurableError::Expired));
        assert_eq!(judge(b":-1\r\n", 5), Err(DurableError::Malformed));
        assert_eq!(judge(b"+OK\r\n", 5), Err(DurableError::Malformed));
        assert_eq!(judge(b":1\r\n:1\r\n", 5), Err(DurableError::Malformed));
        assert!(matches!(
            judge(b"-ERR unknown command 'WAIT'\r\n", 5),
            Err(DurableError::Refused(_))
        ));
        assert!(matches!(
            judge(
                b"-NOPERM this user has no permissions to run the 'wait' command\r\n",
                5
            ),
            Err(DurableError::Refused(_))
        ));
        let aof = d.with_aof();
        let judge = |reply: &[u8]| aof.judge(reply, Protocol::Resp2, t(1_000), t(5));
        assert_eq!(judge(b"*2\r\n:1\r\n:1\r\n"), Ok(()));
        assert_eq!(judge(b"*2\r\n:0\r\n:1\r\n"), Err(DurableError::NotFsynced));
        assert!(matches!(
            judge(b"*2\r\n:1\r\n:0\r\n"),
            Err(DurableError::NotReplicated { .. })
        ));
        assert_eq!(judge(b":1\r\n"), Err(DurableError::Malformed));
    }
}
