//! Stopping a guest: why ([`Stop`]), who asks ([`Stopper`], the time limit, the memory
//! limit), and how a host call that blocks gives way ([`Halt`]).
//!
//! A store has one stop flag ([`StopFlag`], first reason wins), raised by its time limit's
//! timer, by its [`Stopper`] (a signal to `distlock run`, say) or by the memory limiter
//! ([`Limiter`]). Wasm code sees it at the next epoch tick ([`StopFlag::on_epoch`]); every
//! host call that can block (the `transport` reads and writes, the native driver's acquire,
//! extend and renew, WASI `poll`) waits on it beside its own work ([`Halt::block_on`], or
//! [`Halt::block_on_own`] on the store's own runtime), so a guest blocked in the host is
//! stopped as promptly as one that computes. Releasing is the one wait that is never cut
//! short: it is what stopping is for. An acquire cut short may have been granted by a server
//! in the instant before: the guest never got that lease, so nobody holds it, and it frees
//! at its TTL.
//!
//! Invariant: once raised, the flag keeps its first reason; the watchdog that raises it on
//! time ends with the flag.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use wasmtime::{ResourceLimiter, UpdateDeadline};

use super::own_runtime::OwnRuntime;

/// Why the host stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Its time limit passed.
    Time,
    /// It tried to grow a memory past the limit.
    Memory,
    /// Its runner asked ([`Stopper::stop`]).
    Asked,
}

/// Stops a running guest from another thread: a signal handler, a supervisor. Cheap to
/// clone; every clone stops the same runs. A guest stopped this way ends as
/// [`Ended::Stopped`](super::Ended::Stopped), its leases released.
#[derive(Clone)]
pub struct Stopper {
    asked: Arc<watch::Sender<bool>>,
}

impl Default for Stopper {
    fn default() -> Self {
        Stopper {
            asked: Arc::new(watch::Sender::new(false)),
        }
    }
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stopper")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

impl Stopper {
    /// A stopper that has not stopped anything yet.
    #[must_use]
    pub fn new() -> Stopper {
        Stopper::default()
    }

    /// Stops every run given this stopper: wasm code at its next epoch tick, a call blocked
    /// in the host at once. A run that starts afterwards ends before the guest runs.
    pub fn stop(&self) {
        self.asked.send_replace(true);
    }

    /// Whether [`Stopper::stop`] was called.
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        *self.asked.borrow()
    }

    async fn stopped(&self) {
        let mut asked = self.asked.subscribe();
        // The sender lives as long as `self`: `wait_for` ends only when asked.
        let _ = asked.wait_for(|asked| *asked).await;
    }
}

/// The stop flag of one store, and the watchdog that raises it at the time limit or when
/// the [`Stopper`] asks.
pub(crate) struct StopFlag {
    /// Raised once, with the first reason.
    flag: Arc<watch::Sender<Option<Stop>>>,
    runtime: tokio::runtime::Handle,
    /// Ends with the flag.
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for StopFlag {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
    }
}

impl StopFlag {
    /// A flag raised after `time` from now (if given) or when `stopper` asks (at once if it
    /// already did); the watchdog runs on `runtime`.
    pub(crate) fn new(
        runtime: &tokio::runtime::Handle,
        time: Option<Duration>,
        stopper: Option<&Stopper>,
    ) -> StopFlag {
        let flag = Arc::new(watch::Sender::new(None));
        if stopper.is_some_and(Stopper::is_stopped) {
            flag.send_replace(Some(Stop::Asked));
        }
        let watchdog = (time.is_some() || stopper.is_some()).then(|| {
            let (flag, stopper) = (Arc::clone(&flag), stopper.cloned());
            runtime.spawn(async move {
                let time_up = async {
                    match time {
                        Some(limit) => tokio::time::sleep(limit).await,
                        None => std::future::pending().await,
                    }
                };
                let asked = async {
                    match &stopper {
                        Some(stopper) => stopper.stopped().await,
                        None => std::future::pending().await,
                    }
                };
                let why = tokio::select! {
                    () = time_up => Stop::Time,
                    () = asked => Stop::Asked,
                };
                raise(&flag, why);
            })
        });
        StopFlag {
            flag,
            runtime: runtime.clone(),
            watchdog,
        }
    }

    /// What host calls that can block wait through.
    pub(crate) fn halt(&self) -> Halt {
        Halt {
            runtime: self.runtime.clone(),
            stop: self.flag.subscribe(),
        }
    }

    /// The memory limit, raising this flag when a guest runs into it.
    pub(crate) fn limiter(&self, memory: usize) -> Limiter {
        Limiter {
            memory,
            stop: Arc::clone(&self.flag),
        }
    }

    /// Why the guest was stopped, if it was.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        *self.flag.borrow()
    }

    /// An epoch tick while wasm runs: trap once the guest is stopped.
    pub(crate) fn on_epoch(&self) -> wasmtime::Result<UpdateDeadline> {
        match self.stopped() {
            Some(Stop::Time) => Err(wasmtime::Error::msg("the guest ran past its time limit")),
            Some(_) => Err(stopped_trap()),
            None => Ok(UpdateDeadline::Continue(1)),
        }
    }
}

/// Waits on host work unless the store's guest is stopped: what every host call that can
/// block goes through.
#[derive(Clone)]
pub(crate) struct Halt {
    runtime: tokio::runtime::Handle,
    stop: watch::Receiver<Option<Stop>>,
}

impl Halt {
    /// Runs `work` to its end on the adapter's runtime, or until the guest is stopped: then
    /// `work` is dropped (never started when the guest is already stopped) and the call
    /// traps, which ends the guest.
    pub(crate) fn block_on<F: Future>(&self, work: F) -> wasmtime::Result<F::Output> {
        self.runtime.block_on(self.unless_stopped(work))
    }

    /// [`Halt::block_on`] on the store's own runtime, for work on the connections registered
    /// with it (the lock component's `transport`): this thread drives their I/O itself.
    pub(crate) fn block_on_own<F: Future>(
        &self,
        own: &OwnRuntime,
        work: F,
    ) -> wasmtime::Result<F::Output> {
        own.block_on(self.unless_stopped(work))
    }

    /// `work`'s output, or the stop's trap if the guest is stopped first. The stop flag is a
    /// `watch` channel: its wake-up reaches whichever runtime waits on it.
    async fn unless_stopped<F: Future>(&self, work: F) -> wasmtime::Result<F::Output> {
        let mut stop = self.stop.clone();
        tokio::select! {
            biased;
            _ = stop.wait_for(Option::is_some) => Err(stopped_trap()),
            out = work => Ok(out),
        }
    }
}

/// The trap a host call ends with when its guest is stopped.
fn stopped_trap() -> wasmtime::Error {
    wasmtime::Error::msg("the guest was stopped")
}

/// Raises `stop` with `why` unless it is already raised (the first reason is the one told).
fn raise(stop: &watch::Sender<Option<Stop>>, why: Stop) {
    stop.send_if_modified(|stop| {
        let first = stop.is_none();
        if first {
            *stop = Some(why);
        }
        first
    });
}

/// The memory limit; running into it stops the guest.
pub(crate) struct Limiter {
    memory: usize,
    stop: Arc<watch::Sender<Option<Stop>>>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            raise(&self.stop, Stop::Memory);
            return Err(wasmtime::Error::msg(format!(
                "the guest tried to grow a memory to {} MiB, past its limit of {} MiB",
                desired >> 20,
                self.memory >> 20
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}
