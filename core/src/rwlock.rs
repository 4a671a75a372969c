//! Read-write locks with writer preference: many readers or one writer, each hold a lease of
//! its own.
//!
//! A read-write lock is a pair of [`Lock`]s built by [`Lock::rw`], one per [`RwMode`]; the
//! same machines drive both as a mutex ([`crate::Acquire`], [`crate::Release`],
//! [`crate::Extend`], [`crate::Renewal`]) and yield the same [`crate::Lease`]. Only the
//! scripts differ ([`crate::script::RW_ACQUIRE`], `RW_RELEASE`, `RW_EXTEND`).
//!
//! ## Why `Lock::rw(name, mode)` and not a `Lock::read`/`Lock::write` pair
//! The two sides share every check (name, layout, options, one node), every key and every
//! script; the mode is one argument of each script. One constructor keeps those checks in
//! one place, and a driver that takes the mode from its user (the CLI's `--read`/`--write`)
//! passes it through instead of branching.
//!
//! ## Design, and why
//! - **Each hold is a key.** A read hold is `<prefix>{N}:reader:<token>` with `PX ttl`, a write
//!   hold `<prefix>{N}:writer` holding the token with `PX ttl`. A holder that dies frees its
//!   hold exactly when its key expires, with no server clock and no sweeper; a renewal extends
//!   its own key only, so a read hold's expiry never extends another reader's (Redisson keeps
//!   every reader under one hash and one expiry, which is where its renewal leaks come from).
//!   The readers' set `<prefix>{N}:readers` only says which reader keys to read: a script
//!   drops from its head the members whose key is gone until it finds a live one, so "is
//!   any reader live" costs O(dead readers) + 1, never O(readers).
//! - **Exclusion.** A write is granted only when the writer key is absent and no live reader
//!   remains; a read only when the writer key is absent. Both are decided inside one script,
//!   so on the node there is never a writer key beside a live reader key, nor two writers:
//!   the claim `core/tests/rwlock_simulation.rs` checks against the clients' own beliefs (W1).
//! - **Writer preference, bounded.** A writer refused while it waits registers its intent:
//!   its owner token in `<prefix>{N}:writers` and a liveness key
//!   `<prefix>{N}:writer-alive:<owner>`
//!   that lives [`writer_liveness`] (`retry.cap + request_timeout`: its longest wait between
//!   attempts plus a round trip), refreshed by each of its attempts. A read is refused while
//!   any waiting writer's liveness key lives, so a stream of readers cannot starve a writer
//!   (W3); a writer that dies or gives up stops blocking readers within that liveness. A
//!   try-lock writer (no wait) never registers. The price, as for every writer-preferring
//!   lock: a continuous stream of writers can keep readers out.
//! - **Waking only who can proceed.** Writers wait on `<prefix>{N}:writer-signal`, readers on
//!   `<prefix>{N}:read-signal`. The release that leaves nothing held wakes one writer when a
//!   live writer waits; otherwise a write release wakes one reader, and each reader that had
//!   waited pushes the signal on when it gets in, so the waiting readers wake one after
//!   another (all of them, never a writer among them, never a herd at once). A read release
//!   that leaves a live reader wakes nobody. Wake-ups are hints: a waiter retries its script,
//!   and every wait is bounded by the PTTL of what refused it and the retry cap.
//! - **Fencing.** A write takes the name's fence counter's next value, as a mutex does. A read
//!   reports the counter as it stands: the fence of the last write granted before the read
//!   (0 before any). It is not unique among readers; it tells a reader which write it read
//!   after — a resource that has seen a larger fence was written after this read began.
//! - **A name is a mutex, a semaphore or a read-write lock.** `<prefix>{N}` is a hash marker
//!   while any hold lives, so a read-write script refuses a name holding a mutex's string or a
//!   semaphore's set, and a mutex's or semaphore's scripts refuse the marker, all with
//!   `WRONGTYPE` ([`crate::ServerErrorKind::WrongType`]). A plain mutex's `SET NX PX GET`
//!   (Redis ≥ 7.0, Valkey) answers `WRONGTYPE` on the marker too; on older servers its plain
//!   `SET NX` refuses the marker like a held lock, the `TYPE` probe its next attempt sends
//!   turns that into `WRONGTYPE`, and a try-lock there (one attempt, no probe) reports the
//!   name held (see [`crate::Acquire`]).
//! - **Waiters of their own.** The waiting writers' keys (`:writers`, `:writer-alive:`,
//!   `:writer-signal`) are the read-write lock's alone, never fair mode's queue or a mutex's
//!   wake-up list: a writer's intent outlives the holds (the name may meanwhile become a
//!   mutex's), and in a shared queue it would sort ahead of a fair mutex's waiters and be
//!   handed a name nobody confirms (see [`crate::keys`]). A refused attempt writes nothing:
//!   the `WRONGTYPE` check comes first.
//!
//! ## Limits
//! One node (a Redlock of readers would need a quorum of counts, as for the semaphore), the
//! tagged key layout, scripts on, not reentrant, not fair ([`ConfigError::RwLockUnsupported`],
//! [`ConfigError::NeedsScripts`]): refused before anything is sent.

use crate::commands::{Encoder, Request};
use crate::error::{ConfigError, ScriptedFeature};
use crate::keys::{KeyLayout, Keys, LockName};
use crate::lock::{Lock, LockOptions, Scripts};
use crate::resp::Sink;
use crate::script;
use crate::time::Duration;

/// Which side of a read-write lock a [`Lock`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RwMode {
    /// Shared: any number of readers at once, never beside a writer.
    Read,
    /// Exclusive: one writer, no reader.
    Write,
}

impl RwMode {
    /// The mode as the scripts take it: `r` or `w`.
    pub(crate) fn script_arg(self) -> &'static [u8] {
        match self {
            RwMode::Read => b"r",
            RwMode::Write => b"w",
        }
    }
}

/// How long a waiting writer's intent blocks new readers after its last attempt: the longest
/// wait between two attempts (the retry cap) plus a round trip (the request timeout).
#[must_use]
pub(crate) fn writer_liveness(options: &LockOptions) -> Duration {
    options.retry.cap.saturating_add(options.request_timeout)
}

impl Lock {
    /// One side (`mode`) of the read-write lock named `name` under `layout`: each acquire takes
    /// one read or write hold, a lease of its own (see the `rwlock` module doc: writers are
    /// preferred, each hold expires on its own, a name is a mutex, a semaphore or a read-write
    /// lock). Refused before anything is sent: a layout other than the tagged one, re-entry or
    /// fair mode ([`ConfigError::RwLockUnsupported`]), and [`Scripts::Never`]
    /// ([`ConfigError::NeedsScripts`]). Over more than one node, the machines refuse it.
    pub fn rw(
        layout: KeyLayout,
        name: &[u8],
        mode: RwMode,
        options: LockOptions,
    ) -> Result<Self, ConfigError> {
        let name = LockName::new(name)?;
        layout.check_name(&name)?;
        options.validate()?;
        if options.scripts == Scripts::Never {
            return Err(ConfigError::NeedsScripts(ScriptedFeature::RwLock));
        }
        if options.reentrant || options.fair || !matches!(layout, KeyLayout::Tagged { .. }) {
            return Err(ConfigError::RwLockUnsupported);
        }
        Ok(Lock {
            keys: Keys::new(layout, name),
            options,
            limit: None,
            rw: Some(mode),
            multi: None,
        })
    }

    /// The side of a read-write lock this is; `None` for a mutex or a semaphore.
    #[must_use]
    pub fn rw_mode(&self) -> Option<RwMode> {
        self.rw
    }

    /// The write side of a read-write lock, whose waiting acquires register their intent from
    /// the first attempt on.
    pub(crate) fn is_write_side(&self) -> bool {
        self.rw == Some(RwMode::Write)
    }

    /// The read side of a read-write lock, whose fence is the last write's (0 before any).
    pub(crate) fn is_read_side(&self) -> bool {
        self.rw == Some(RwMode::Read)
    }
}

impl Encoder<'_> {
    /// A read-write lock's request (see [`Lock::rw`]): its scripts, with `token` the attempt's
    /// (acquire, rollback) or the hold's (release, extend). The replies have the mutex's
    /// shapes, so the commands' `interpret` reads them alike. An acquire's `probe_ttl` is set
    /// exactly when the caller will wait on a refusal — a writer from its first attempt, a
    /// reader once it was refused (see [`crate::Acquire`]): what makes a writer register its
    /// intent and a reader that waited pass the readers' wake-up on.
    pub(crate) fn encode_rw(
        &self,
        request: Request,
        mode: RwMode,
        token: &[u8],
        sink: &mut dyn Sink,
    ) {
        let keys = self.lock.keys();
        let options = self.lock.options();
        let signal_ms = options.wake_signal.map_or(0, Duration::as_millis);
        match request {
            Request::Acquire { probe_ttl, .. }
            | Request::FairAcquire {
                enqueue: probe_ttl, ..
            } => {
                self.script_header(
                    sink,
                    &script::RW_ACQUIRE,
                    &[
                        &keys.lock(),
                        &keys.fence(),
                        &keys.writer(),
                        &keys.readers(),
                        &keys.reader_prefix(),
                        &keys.writers(),
                        &keys.writer_alive_prefix(),
                        &keys.read_signal(),
                    ],
                    8,
                );
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
                sink.bulk(mode.script_arg());
                sink.bulk(if options.fenced { b"1" } else { b"0" });
                sink.bulk(if probe_ttl { b"1" } else { b"0" });
                sink.bulk(self.token.as_bytes());
                sink.bulk_u64(writer_liveness(options).as_millis());
                sink.bulk_u64(signal_ms);
            }
            Request::Release | Request::Rollback { .. } => {
                self.script_header(
                    sink,
                    &script::RW_RELEASE,
                    &[
                        &keys.lock(),
                        &keys.writer(),
                        &keys.readers(),
                        &keys.reader_prefix(),
                        &keys.writers(),
                        &keys.writer_alive_prefix(),
                        &keys.writer_signal(),
                        &keys.read_signal(),
                    ],
                    3,
                );
                sink.bulk(token);
                sink.bulk(mode.script_arg());
                sink.bulk_u64(signal_ms);
            }
            Request::Extend => {
                self.script_header(
                    sink,
                    &script::RW_EXTEND,
                    &[
                        &keys.lock(),
                        &keys.writer(),
                        &keys.readers(),
                        &keys.reader_prefix(),
                    ],
                    3,
                );
                sink.bulk(token);
                sink.bulk(mode.script_arg());
                sink.bulk_u64(options.ttl.as_millis());
            }
            // One node only: no fence is ever raised over several; should one come, it is the
            // mutex's raise on the shared fence counter.
            Request::RaiseFence(value) => {
                self.script_header(sink, &script::RAISE_FENCE, &[&keys.fence()], 1);
                sink.bulk_u64(value);
            }
            Request::Wait(timeout) => {
                sink.array(3);
                sink.bulk(b"BLPOP");
                match mode {
                    RwMode::Read => sink.bulk_parts(&keys.read_signal()),
                    RwMode::Write => sink.bulk_parts(&keys.writer_signal()),
                }
                self.block_timeout(timeout, sink);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_setups_are_refused_before_anything_is_sent() {
        let options = LockOptions::default();
        let layout = KeyLayout::default();
        for mode in [RwMode::Read, RwMode::Write] {
            let lock = Lock::rw(layout.clone(), b"doc", mode, options).unwrap();
            assert_eq!(lock.rw_mode(), Some(mode));
            assert_eq!(lock.limit(), None);
            for refused in [
                LockOptions {
                    reentrant: true,
                    ..options
                },
                LockOptions {
                    fair: true,
                    ..options
                },
            ] {
                assert_eq!(
                    Lock::rw(layout.clone(), b"doc", mode, refused),
                    Err(ConfigError::RwLockUnsupported)
                );
            }
            assert_eq!(
                Lock::rw(KeyLayout::redis_py(), b"doc", mode, options),
                Err(ConfigError::RwLockUnsupported)
            );
            assert_eq!(
                Lock::rw(
                    layout.clone(),
                    b"doc",
                    mode,
                    LockOptions {
                        scripts: Scripts::Never,
                        ..options
                    }
                ),
                Err(ConfigError::NeedsScripts(ScriptedFeature::RwLock))
            );
            assert_eq!(
                Lock::rw(layout.clone(), b"", mode, options),
                Err(ConfigError::EmptyName)
            );
        }
        assert_eq!(Lock::new(layout, b"doc", options).unwrap().rw_mode(), None);
    }
}
