//! [`OwnRuntime`]: a store's own single-threaded tokio runtime, which drives the lock
//! component's `transport` connections on the thread that runs the guest.
//!
//! Why a store gets its own: on the adapter's shared multi-threaded runtime, the reply a
//! blocked `transport` call waits for is picked up by a runtime worker, which then wakes the
//! guest's thread — two thread wake-ups per round trip, and with many guests on few cores
//! the extra switches cost more CPU than the lock itself (the guest path at 16 clients ran at
//! half the native path's pairs/s). Here the guest's own thread waits in the runtime's
//! `epoll` for its own sockets, so a reply wakes exactly the thread that wants it.
//!
//! Invariants: a store makes at most one, on its first `transport` open, and every connection
//! it opens is registered with it and keeps it alive ([`super::resources::Connection`]), so
//! the runtime outlives its streams. Its I/O and timers make progress only inside
//! [`OwnRuntime::block_on`], which a store's host calls run one at a time on the thread that
//! calls the store. It runs no tasks of its own: dropping it never blocks and never panics,
//! even on a thread inside another runtime.

use std::future::Future;
use std::io;

use tokio::runtime::Runtime;

/// A store's own current-thread runtime (see the module doc).
pub(crate) struct OwnRuntime {
    /// `Some` until dropped.
    runtime: Option<Runtime>,
}

impl OwnRuntime {
    /// A runtime with I/O and timers, driven by whichever thread calls [`OwnRuntime::block_on`].
    pub(crate) fn new() -> io::Result<OwnRuntime> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        Ok(OwnRuntime {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` to its end on this thread, driving the runtime's I/O and timers meanwhile.
    pub(crate) fn block_on<F: Future>(&self, work: F) -> F::Output {
        match &self.runtime {
            Some(runtime) => runtime.block_on(work),
            // Only `drop` takes it.
            None => unreachable!("an own runtime is used after it was dropped"),
        }
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // A plain drop waits for the runtime's blocking threads (a name lookup, say), and
        // panics when the store is dropped from async code; with no tasks to finish, there
        // is nothing to wait for.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
