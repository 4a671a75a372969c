//! What a guest's store holds: its WASI context and resource table, its limits, the way to
//! the servers, and the lock component's exports when the guest is linked to one.
//!
//! Invariant: every lease handed to a guest lives in the store's resource table until the
//! guest drops it; whatever is left when the guest ends is released by
//! [`HostState::release_leftovers`].
//!
//! Stopping: a store has one stop flag ([`Stop`], first reason wins), raised by its time
//! limit's timer, by its [`Stopper`] (a signal to `distlock run`, say) or by the memory
//! limiter. Wasm code sees it at the next epoch tick; every host call that can block (the
//! `transport` reads and writes, the native driver's acquire and extend, WASI `poll`) waits
//! on it beside its own work ([`Halt::block_on`]), so a guest blocked in the host is stopped
//! as promptly as one that computes. Releasing is the one wait that is never cut short: it
//! is what stopping is for. An acquire cut short may have been granted by a server in the
//! instant before: the guest never got that lease, so nobody holds it, and it frees at its
//! TTL.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::provider::exports::distlock::lock::distlock::Guest as ProviderApi;
use super::link::LinkedLease;
use super::native::NativeLease;
use super::{AdapterError, AdapterOptions, Limits};
use crate::conn::ConnectOptions;
use crate::endpoint::Endpoint;

/// The way to the servers, shared by every store of an adapter.
pub(crate) struct Net {
    /// Runs the connections; guests block on it from their own threads.
    pub(crate) runtime: tokio::runtime::Handle,
    /// The configured nodes, as given.
    pub(crate) nodes: Vec<String>,
    /// The same, parsed: the only endpoints `transport` opens.
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) connect: ConnectOptions,
}

impl Net {
    pub(crate) fn new(
        options: AdapterOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Net, AdapterError> {
        let endpoints = options
            .nodes
            .iter()
            .map(|n| n.parse::<Endpoint>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Net {
            runtime,
            nodes: options.nodes,
            endpoints,
            connect: options.connect,
        })
    }

    /// The nodes with passwords hidden.
    pub(crate) fn shown_nodes(&self) -> Vec<String> {
        self.endpoints.iter().map(ToString::to_string).collect()
    }

    /// Whether `transport` may open a connection to `host:port` (with TLS or not).
    pub(crate) fn allows(&self, host: &str, port: u16, tls: bool) -> bool {
        self.endpoints
            .iter()
            .any(|e| e.host == host && e.port == port && e.tls == tls)
    }

    /// A native client for `nodes` (the configured ones when empty) under `prefix`.
    pub(crate) fn client(
        &self,
        nodes: &[String],
        prefix: Option<&str>,
    ) -> Result<crate::Client, crate::Error> {
        self.runtime.block_on(self.connect_client(nodes, prefix))
    }

    /// [`Net::client`], to await (for a caller that waits through [`Halt`]).
    pub(crate) async fn connect_client(
        &self,
        nodes: &[String],
        prefix: Option<&str>,
    ) -> Result<crate::Client, crate::Error> {
        let nodes = if nodes.is_empty() {
            &self.nodes[..]
        } else {
            nodes
        };
        if nodes.is_empty() {
            // `Client::connect_with` would give each client an embedded store of its own: no
            // exclusion between clients at all.
            let none = distlock_core::ConfigError::BadNodeCount {
                nodes: 0,
                capacity: crate::MAX_NODES,
            };
            return Err(none.into());
        }
        let layout = match prefix {
            Some(prefix) => crate::KeyLayout::tagged(prefix.as_bytes())?,
            None => crate::KeyLayout::default(),
        };
        crate::Client::connect_with(nodes, self.connect.clone(), layout).await
    }
}

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
/// [`super::Ended::Stopped`], its leases released.
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
        let mut stop = self.stop.clone();
        self.runtime.block_on(async move {
            tokio::select! {
                biased;
                _ = stop.wait_for(Option::is_some) => Err(stopped_trap()),
                out = work => Ok(out),
            }
        })
    }
}

/// The trap a host call ends with when its guest is stopped.
fn stopped_trap() -> wasmtime::Error {
    wasmtime::Error::msg("the guest was stopped")
}

/// The store data of one guest (and of the lock component instance linked to it).
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) net: Arc<Net>,
    provider: Option<ProviderApi>,
    limiter: Limiter,
    /// Raised once, with the first reason; see the module docs.
    stop: Arc<watch::Sender<Option<Stop>>>,
    /// Raises `stop` at the time limit or when the [`Stopper`] asks; ends with the store.
    watchdog: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for HostState {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.abort();
        }
    }
}

impl HostState {
    /// The state of a new store; its time limit runs from now.
    pub(crate) fn new(
        wasi: WasiCtx,
        net: Arc<Net>,
        limits: Limits,
        stopper: Option<&Stopper>,
    ) -> HostState {
        let stop = Arc::new(watch::Sender::new(None));
        if stopper.is_some_and(Stopper::is_stopped) {
            stop.send_replace(Some(Stop::Asked));
        }
        let watchdog = (limits.time.is_some() || stopper.is_some()).then(|| {
            let (stop, stopper, limit) = (Arc::clone(&stop), stopper.cloned(), limits.time);
            net.runtime.spawn(async move {
                let time_up = async {
                    match limit {
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
                raise(&stop, why);
            })
        });
        HostState {
            wasi,
            table: ResourceTable::new(),
            net,
            provider: None,
            limiter: Limiter {
                memory: limits.memory,
                stop: Arc::clone(&stop),
            },
            stop,
            watchdog,
        }
    }

    /// What host calls that can block wait through.
    pub(crate) fn halt(&self) -> Halt {
        Halt {
            runtime: self.net.runtime.clone(),
            stop: self.stop.subscribe(),
        }
    }

    /// The linked lock component's exports (set before the guest is instantiated).
    pub(crate) fn provider(&self) -> wasmtime::Result<ProviderApi> {
        self.provider
            .clone()
            .ok_or_else(|| wasmtime::Error::msg("no lock component is linked to this guest"))
    }

    pub(crate) fn set_provider(&mut self, api: ProviderApi) {
        self.provider = Some(api);
    }

    pub(crate) fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }

    /// Why the guest was stopped, if it was.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        *self.stop.borrow()
    }

    /// An epoch tick while wasm runs: trap once the guest is stopped.
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        match self.stopped() {
            Some(Stop::Time) => Err(wasmtime::Error::msg("the guest ran past its time limit")),
            Some(_) => Err(stopped_trap()),
            None => Ok(UpdateDeadline::Continue(1)),
        }
    }

    /// Releases every lease still in the table (the guest ended without dropping it), and
    /// says what became of each: released, no longer held, or not released (that lock frees
    /// at its TTL). Never cut short by the stop flag: releasing is what stopping is for; each
    /// release is bounded by its request timeout.
    pub(crate) fn release_leftovers(&mut self) -> Leftovers {
        let mut linked = Vec::new();
        let mut native = Vec::new();
        for entry in self.table.iter_mut() {
            if let Some(lease) = entry.downcast_mut::<LinkedLease>() {
                linked.extend(lease.take_record());
            } else if let Some(lease) = entry.downcast_mut::<NativeLease>()
                && let Some(guard) = lease.take_guard()
            {
                native.push((lease.name().to_owned(), guard));
            }
        }
        let mut leftovers = Leftovers::default();
        let runtime = self.net.runtime.clone();
        for record in linked {
            let released = self
                .net
                .client(&record.nodes, record.prefix.as_deref())
                .and_then(|client| {
                    runtime
                        .block_on(client.release(&record.name, &record.token, false))
                        .map(|_| ())
                });
            leftovers.note(record.name, released);
        }
        for (name, guard) in native {
            leftovers.note(name, runtime.block_on(guard.release()).map(|_| ()));
        }
        leftovers
    }
}

/// What became of the leases a guest left behind.
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    /// Released by the host: those locks are free now.
    pub(crate) released: usize,
    /// One sentence for each lease that was not released, saying why.
    pub(crate) not_released: Vec<String>,
}

impl Leftovers {
    fn note(&mut self, name: String, released: Result<(), crate::Error>) {
        match released {
            Ok(()) => self.released += 1,
            Err(crate::Error::Lock(distlock_core::Error::NotHeld)) => self.not_released.push(
                format!("{name}: no longer held (its TTL ran out, or it was released)"),
            ),
            Err(e) => {
                tracing::debug!(error = %e, name, "releasing a lease the guest left behind failed");
                self.not_released.push(format!(
                    "{name}: could not be released ({e}); the lock frees at its TTL"
                ));
            }
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
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
