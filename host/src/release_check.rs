//! The deferred confirmations of a client's pipelined releases: what a connection owes for a
//! release written on it without waiting ([`OwedReply`]), and where the core's verdict on it
//! ([`ReleaseCheck`]) is reported ([`ReleaseReports`], read as [`PipelinedReleases`]).
//!
//! Invariant: **every pipelined release is reported exactly once.** An [`OwedReply`] is either
//! reported with the check the core made of its reply ([`OwedReply::report`]), or — dropped
//! with its connection before the reply was read (connection lost, closed out of step, the
//! pool full, the client gone) — reported as unconfirmed by its `Drop`. Nothing here reads
//! a reply or decides what one means: that is the core's ([`distlock_core::ReleaseCheck`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use distlock_core::{NodeFailure, OwedRelease, ReleaseCheck};
use tracing::{debug, warn};

/// A callback told of each pipelined release's deferred confirmation.
type Callback = Arc<dyn Fn(&ReleaseCheck) + Send + Sync>;

/// How a client's pipelined releases have been confirmed so far (see
/// [`Guard::release_pipelined`](crate::Guard::release_pipelined)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PipelinedReleases {
    /// Written, reply not read yet.
    pub pending: u64,
    /// The server ran the delete on our key: released.
    pub released: u64,
    /// When the server ran the delete the key was no longer ours (expired, reset, or another
    /// token's): the lease had been lost before the release.
    pub not_held: u64,
    /// No usable reply (connection lost with the reply owed, reply late, server error): the
    /// delete may or may not have run; the key is gone at its TTL at the latest.
    pub unconfirmed: u64,
}

/// The counters and callback of one client (shared by its clones).
#[derive(Default)]
pub(crate) struct ReleaseReports {
    sent: AtomicU64,
    released: AtomicU64,
    not_held: AtomicU64,
    unconfirmed: AtomicU64,
    callback: Mutex<Option<Callback>>,
}

impl ReleaseReports {
    /// The counts so far.
    pub(crate) fn snapshot(&self) -> PipelinedReleases {
        let released = self.released.load(Ordering::Acquire);
        let not_held = self.not_held.load(Ordering::Acquire);
        let unconfirmed = self.unconfirmed.load(Ordering::Acquire);
        let sent = self.sent.load(Ordering::Acquire);
        PipelinedReleases {
            pending: sent.saturating_sub(released + not_held + unconfirmed),
            released,
            not_held,
            unconfirmed,
        }
    }

    /// Calls `callback` with every later check (replacing an earlier callback).
    pub(crate) fn set_callback(&self, callback: Callback) {
        *self.callback.lock().unwrap_or_else(PoisonError::into_inner) = Some(callback);
    }

    /// A release of `name` was written and its reply is owed: the record that goes with the
    /// connection.
    pub(crate) fn owe(self: &Arc<Self>, release: OwedRelease, name: String) -> OwedReply {
        self.sent.fetch_add(1, Ordering::AcqRel);
        OwedReply {
            release: Some(release),
            reports: Some(Arc::clone(self)),
            name,
        }
    }

    fn record(&self, check: &ReleaseCheck, name: &str) {
        let counter = match check {
            ReleaseCheck::Released(_) => {
                debug!(name, "pipelined release confirmed");
                &self.released
            }
            ReleaseCheck::NotHeld => {
                warn!(
                    name,
                    "pipelined release: the lock was no longer held by this token when the server ran it (the lease had been lost)"
                );
                &self.not_held
            }
            ReleaseCheck::Unconfirmed(why) => {
                warn!(name, %why, "pipelined release unconfirmed: the lock expires at its TTL at the latest");
                &self.unconfirmed
            }
            _ => &self.unconfirmed,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        let callback = self
            .callback
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(callback) = callback {
            callback(check);
        }
    }
}

/// A pipelined release's reply a connection owes, and where its check is reported. Reported
/// once: by [`OwedReply::report`], or as unconfirmed when dropped unreported.
pub(crate) struct OwedReply {
    release: Option<OwedRelease>,
    reports: Option<Arc<ReleaseReports>>,
    name: String,
}

impl OwedReply {
    /// What the core needs to read the reply: handed to the machine (or reader) that reads
    /// the connection next. `None` once taken.
    pub(crate) fn take_release(&mut self) -> Option<OwedRelease> {
        self.release.take()
    }

    /// Puts back what is still owed, taken with [`OwedReply::take_release`] by a reader that
    /// hands the connection on before the reply is in.
    pub(crate) fn restore(&mut self, release: OwedRelease) {
        self.release = Some(release);
    }

    /// Reports the core's check of the reply.
    pub(crate) fn report(mut self, check: &ReleaseCheck) {
        if let Some(reports) = self.reports.take() {
            reports.record(check, &self.name);
        }
    }
}

impl Drop for OwedReply {
    fn drop(&mut self) {
        if let Some(reports) = self.reports.take() {
            reports.record(
                &ReleaseCheck::Unconfirmed(NodeFailure::Disconnected),
                &self.name,
            );
        }
    }
}
