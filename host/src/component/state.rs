//! What a guest's store holds: its WASI context and resource table, its limits, the way to
//! the servers, and the lock component's exports when the guest is linked to one.
//!
//! Invariant: every lease handed to a guest lives in the store's resource table until the
//! guest drops it; whatever is left when the guest ends is released by
//! [`HostState::release_leftovers`].

use std::sync::Arc;
use std::time::Instant;

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
        self.runtime.block_on(crate::Client::connect_with(
            nodes,
            self.connect.clone(),
            layout,
        ))
    }
}

/// Why the host stopped a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Its time limit passed.
    Time,
    /// It tried to grow a memory past the limit.
    Memory,
}

/// The store data of one guest (and of the lock component instance linked to it).
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) net: Arc<Net>,
    provider: Option<ProviderApi>,
    limiter: Limiter,
    deadline: Option<Instant>,
    stopped: Option<Stop>,
}

impl HostState {
    pub(crate) fn new(wasi: WasiCtx, net: Arc<Net>, limits: Limits) -> HostState {
        HostState {
            wasi,
            table: ResourceTable::new(),
            net,
            provider: None,
            limiter: Limiter {
                memory: limits.memory,
                hit: false,
            },
            deadline: limits.time.map(|t| Instant::now() + t),
            stopped: None,
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
        if self.limiter.hit {
            return Some(Stop::Memory);
        }
        self.stopped
    }

    /// An epoch tick while wasm runs: stop the guest once its time is up.
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stopped = Some(Stop::Time);
            return Err(wasmtime::Error::msg("the guest ran past its time limit"));
        }
        Ok(UpdateDeadline::Continue(1))
    }

    /// Releases every lease still in the table (the guest ended without dropping it);
    /// returns how many there were. Failures are logged: those locks expire at their TTL.
    pub(crate) fn release_leftovers(&mut self) -> usize {
        let mut linked = Vec::new();
        let mut native = Vec::new();
        for entry in self.table.iter_mut() {
            if let Some(lease) = entry.downcast_mut::<LinkedLease>() {
                linked.push(lease.take_record());
            } else if let Some(lease) = entry.downcast_mut::<NativeLease>()
                && let Some(guard) = lease.take_guard()
            {
                native.push(guard);
            }
        }
        let count = linked.iter().flatten().count() + native.len();
        let runtime = self.net.runtime.clone();
        for record in linked.into_iter().flatten() {
            let released = self
                .net
                .client(&record.nodes, record.prefix.as_deref())
                .and_then(|client| {
                    runtime
                        .block_on(client.release(&record.name, &record.token, false))
                        .map(|_| ())
                });
            if let Err(e) = released {
                tracing::warn!(error = %e, "releasing a lease the guest left behind failed; the lock expires at its TTL");
            }
        }
        for guard in native {
            if let Err(e) = runtime.block_on(guard.release()) {
                tracing::warn!(error = %e, "releasing a lease the guest left behind failed; the lock expires at its TTL");
            }
        }
        count
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

/// The memory limit, and whether a guest ran into it.
pub(crate) struct Limiter {
    memory: usize,
    hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.hit = true;
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
