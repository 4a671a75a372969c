//! [`HostState`]: what a guest's store holds — its WASI context and resource table, its
//! limits and stop flag, the way to the servers (and the runtime its `transport` connections
//! run on), and the lock component's exports when the guest is linked to one — and the
//! release of the leases a guest left behind, and the give-up of its unfinished computations.
//!
//! Invariant: every lease and computation handed to a guest lives in the store's resource
//! table until the guest drops it (a linked computation dropped unfinished moves to
//! [`HostState::dropped_computations`]); whatever is left when the guest ends is released or
//! given up by [`HostState::release_leftovers`], never cut short by the stop flag (releasing
//! is what stopping is for; each release is bounded by its request timeout). Giving up a
//! computation wakes one of its waiters, which computes next.

use std::sync::Arc;

use wasmtime::UpdateDeadline;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::provider::exports::distlock::lock::distlock::Guest as ProviderApi;
use super::bindings::provider::exports::distlock::lock::linking::Guest as LinkingApi;
use super::net::Net;
use super::options::Limits;
use super::own_runtime::OwnRuntime;
use super::resources::{
    ComputationRecord, Held, LeaseRecord, LinkedComputation, LinkedLease, NativeComputation,
    NativeLease,
};
use super::stop::{Halt, Limiter, Stop, StopFlag, Stopper};

/// The store data of one guest (and of the lock component instance linked to it).
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) net: Arc<Net>,
    provider: Option<ProviderApi>,
    /// The lock component's `linking` exports (its acquires answered with the token).
    linking: Option<LinkingApi>,
    /// Linked computations the guest dropped unfinished: the lock component gives each up
    /// at its client's next call; if the guest ends first, the host does.
    pub(crate) dropped_computations: Vec<ComputationRecord>,
    limiter: Limiter,
    stop: StopFlag,
    /// Drives the `transport` connections on the guest's thread; made by the first open.
    own_runtime: Option<Arc<OwnRuntime>>,
}

impl HostState {
    /// The state of a new store; its time limit runs from now.
    pub(crate) fn new(
        wasi: WasiCtx,
        net: Arc<Net>,
        limits: Limits,
        stopper: Option<&Stopper>,
    ) -> HostState {
        let stop = StopFlag::new(&net.runtime, limits.time, stopper);
        HostState {
            wasi,
            table: ResourceTable::new(),
            net,
            provider: None,
            linking: None,
            dropped_computations: Vec::new(),
            limiter: stop.limiter(limits.memory),
            stop,
            own_runtime: None,
        }
    }

    /// The store's own runtime, which every `transport` connection of the store is opened
    /// on (one per store, made on first use).
    pub(crate) fn own_runtime(&mut self) -> std::io::Result<Arc<OwnRuntime>> {
        if let Some(runtime) = &self.own_runtime {
            return Ok(Arc::clone(runtime));
        }
        let runtime = Arc::new(OwnRuntime::new()?);
        self.own_runtime = Some(Arc::clone(&runtime));
        Ok(runtime)
    }

    /// What host calls that can block wait through.
    pub(crate) fn halt(&self) -> Halt {
        self.stop.halt()
    }

    /// The linked lock component's exports (set before the guest is instantiated).
    pub(crate) fn provider(&self) -> wasmtime::Result<ProviderApi> {
        self.provider
            .clone()
            .ok_or_else(|| wasmtime::Error::msg("no lock component is linked to this guest"))
    }

    /// The linked lock component's `linking` exports (set with [`HostState::set_provider`]).
    pub(crate) fn linking(&self) -> wasmtime::Result<LinkingApi> {
        self.linking
            .clone()
            .ok_or_else(|| wasmtime::Error::msg("no lock component is linked to this guest"))
    }

    pub(crate) fn set_provider(&mut self, api: ProviderApi, linking: LinkingApi) {
        self.provider = Some(api);
        self.linking = Some(linking);
    }

    pub(crate) fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }

    /// Why the guest was stopped, if it was.
    pub(crate) fn stopped(&self) -> Option<Stop> {
        self.stop.stopped()
    }

    /// An epoch tick while wasm runs: trap once the guest is stopped.
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        self.stop.on_epoch()
    }

    /// Releases every lease still in the table (the guest ended without dropping it) and
    /// gives up every computation that did not end (so one waiter computes next), and says
    /// what became of each: released, no longer held, or not released (that lock frees at
    /// its TTL). A computation counts as a lease: it holds the name's lock.
    pub(crate) fn release_leftovers(&mut self) -> Leftovers {
        let mut linked = Vec::new();
        let mut native = Vec::new();
        let mut computations = Vec::new();
        let mut native_computations = Vec::new();
        for entry in self.table.iter_mut() {
            if let Some(lease) = entry.downcast_mut::<LinkedLease>() {
                linked.extend(lease.take_record());
            } else if let Some(lease) = entry.downcast_mut::<NativeLease>()
                && let Some(guard) = lease.take_guard()
            {
                native.push((lease.name().to_owned(), guard));
            } else if let Some(computation) = entry.downcast_mut::<LinkedComputation>() {
                computations.extend(computation.take_record());
            } else if let Some(computation) = entry.downcast_mut::<NativeComputation>()
                && let Some(taken) = computation.take()
            {
                native_computations.push((computation.name.clone(), taken));
            }
        }
        let dropped = std::mem::take(&mut self.dropped_computations);
        let mut leftovers = Leftovers::default();
        let runtime = self.net.runtime.clone();
        for record in linked {
            let released = self
                .net
                .client(&record.nodes, record.prefix.as_deref())
                .and_then(|client| {
                    runtime
                        .block_on(release_record(&client, &record))
                        .map(|_| ())
                });
            leftovers.note(record.name, released);
        }
        for (name, guard) in native {
            leftovers.note(name, runtime.block_on(guard.release()).map(|_| ()));
        }
        for record in computations {
            let given_up = self.give_up(&record);
            leftovers.note(record.name, given_up);
        }
        for (name, computation) in native_computations {
            leftovers.note(name, runtime.block_on(computation.give_up()));
        }
        // Dropped by the guest: the lock component may have given it up already (then the
        // lock is no longer this token's, and there is nothing to report).
        for record in dropped {
            match self.give_up(&record) {
                Err(crate::Error::Lock(distlock_core::Error::NotHeld)) => {}
                given_up => leftovers.note(record.name, given_up),
            }
        }
        leftovers
    }

    /// Gives up a linked computation natively, with the options it was taken with.
    fn give_up(&self, record: &ComputationRecord) -> Result<(), crate::Error> {
        let client = self.net.client(&record.nodes, record.prefix.as_deref())?;
        self.net.runtime.block_on(client.give_up_computation(
            &record.name,
            &record.token,
            record.options,
        ))
    }
}

/// Releases a linked lease the guest left behind natively: the lock, the permit or hold its
/// shape names, with the options the guest's client took it with (so a fair lock's or a fair
/// semaphore's release still hands it on to the first live waiter), or every name of its set.
async fn release_record(
    client: &crate::Client,
    record: &LeaseRecord,
) -> Result<crate::Released, crate::Error> {
    let (name, token) = (&record.name, &record.token);
    let shape = match &record.held {
        Held::Shaped(shape) => *shape,
        Held::Many(names) => {
            return client.release_many_with(names, token, record.options).await;
        }
    };
    let options = shape.options(record.options);
    match (shape.limit(), shape.rw_mode()) {
        (Some(limit), _) => {
            client
                .release_permit_with(name, token, limit, options)
                .await
        }
        (None, Some(mode)) => client.release_rw(name, token, mode).await,
        (None, None) => client.release_with(name, token, options).await,
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
