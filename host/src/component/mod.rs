//! The wasmtime adapter: the lock as a WebAssembly component, and guest apps that use it.
//!
//! - The **lock component** (`wasm/`, the `provider` world of `wit/distlock.wit`) runs the
//!   core behind `distlock:lock/distlock` (and `distlock:lock/linking`, the acquires
//!   answered with the lease's token, which `link.rs` calls). The adapter supplies its
//!   imports: `transport` (`transport.rs`: TCP and TLS through the same connection code as
//!   [`crate::Client`], limited to the configured nodes), and `wasi:clocks`/`wasi:random`
//!   (wasmtime-wasi).
//! - A **guest app** (the `app` world) imports `distlock`. The adapter serves it either by
//!   linking it to a lock component instance in the same store ([`Serve::Linked`]: every call
//!   is forwarded instance to instance, `link.rs`) or from the Rust driver
//!   ([`Serve::Native`], `native.rs`). Both pass the same conformance suite.
//! - A **Redis Cluster or Sentinel group** among the nodes (`redis+cluster://`,
//!   `redis+sentinel://`) is reached only natively: [`crate::Client`] owns the routing (the
//!   slot map and its redirects, the discovered primary and its `+switch-master` follow-up),
//!   while the lock component's `transport` gives it byte streams to fixed addresses. A
//!   stream that rerouted under the component would carry its handshake to one server and
//!   its lock commands to others, and hide redirects and switches it would need to see.
//!   So while [`Adapter::routed_node`] names one, the lock component refuses to serve
//!   ([`AdapterError::Routed`]) and guests are run with [`Serve::Native`].
//! - The adapter's **key settings** ([`AdapterOptions::layout`], [`AdapterOptions::no_scripts`])
//!   hold for every client a guest opens, served either way: they fill what its `config`
//!   leaves unset and refuse a config naming others (`net.rs`). The lock component gets them
//!   through that `config`; what it cannot take (a Python library's layout,
//!   [`AdapterOptions::ready_timeout`]) refuses linked serving ([`AdapterError::NeedsNative`]).
//! - Guests run under a **time limit** and a **memory limit** ([`Limits`]), and can be
//!   stopped from another thread ([`Stopper`]). The time limit and a stop hold whatever the
//!   guest is doing: computing (epoch interruption), blocked in a `distlock` call, or
//!   sleeping through `wasi:io/poll` (`poll.rs`). A guest that is stopped, traps or exits
//!   while holding leases has them released by the host, which keeps serving.
//!
//! Nothing here decides anything about the lock: that is the core's, inside the component or
//! behind [`crate::Client`]; this module moves calls and bytes.
//!
//! ```no_run
//! # fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use distlock_host::component::{Adapter, AdapterOptions, RunOptions, COUNTER_WASM};
//! let runtime = tokio::runtime::Runtime::new()?;
//! let adapter = Adapter::new(
//!     AdapterOptions { nodes: vec!["redis://127.0.0.1:6379".into()], ..AdapterOptions::default() },
//!     runtime.handle().clone(),
//! )?;
//! let app = adapter.load(COUNTER_WASM)?;
//! let report = adapter.run(&app, &RunOptions::args(["counter", "count", "jobs", "/data/n", "10"]))?;
//! println!("{report:?}");
//! # Ok(()) }
//! ```

// The layers, each importing only those above it:
//   options                        settings and the adapter's error
//   own_runtime                    a store's own runtime for its transport connections
//   net, stop                      the way to the servers; stopping a guest
//   resources                      what the resource table holds per WIT resource
//   bindings                       the generated bindings (resources mapped in)
//   state                          a store's data, and the leases a guest left behind
//   transport, native, link, poll  the drivers: each serves one interface to the store
//   instance                       a component's `distlock` exports, called from Rust
//   mod.rs                         the public API: the Adapter and its runs
mod bindings;
mod instance;
mod link;
mod native;
mod net;
mod options;
mod own_runtime;
mod poll;
mod resources;
mod state;
mod stop;
mod transport;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use net::Net;
use state::HostState;
use stop::Stop;

pub use instance::{
    CallError, ClientHandle, ComputationHandle, Fetched, LeaseHandle, LockInstance,
};
pub use options::{AdapterError, AdapterOptions, Limits};
pub use stop::Stopper;

/// The `distlock` interface's types (`config`, `error`, …), as Rust types.
pub mod wit {
    pub use super::bindings::provider::exports::distlock::lock::distlock::{
        Config, ConfigError, ConfigErrorKind, Error, NodeFailure, NodeProtocolError,
        NodeServerError, NotAcquired, ProtocolError, QuorumLost, SemaphoreShape, ServerError,
        ServerErrorKind, Shape,
    };
}

/// The lock component (`wasm/`, the `provider` world), built by the build script.
pub const PROVIDER_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/distlock_provider.wasm"));
/// The sans-IO lock engine (`wasm/engine/`, the `engine` world of `wit/engine.wit`): the
/// core's machines as resources, for runtimes that drive them from their own event loop. The
/// host does not run it itself; its conformance test (`tests/engine.rs`) and the bindings for
/// other runtimes (`bindings/`) do.
pub const ENGINE_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/distlock_engine.wasm"));
/// The example guest app (`wasm/examples/counter`): a WASI command that increments a counter
/// file under a lock.
pub const COUNTER_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/distlock_counter.wasm"));
/// A guest that imports `distlock` and exports it again, call for call
/// (`wasm/examples/passthrough`): what the conformance suite drives to test the guest path.
pub const PASSTHROUGH_WASM: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/distlock_passthrough.wasm"));

/// The engine's epoch tick: the resolution of [`Limits::time`].
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How a guest's `distlock` import is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serve {
    /// By a lock component instance in the guest's store, call for call.
    #[default]
    Linked,
    /// By the Rust driver ([`crate::Client`]).
    Native,
}

/// A compiled guest component (an app, or any component exporting `distlock`).
#[derive(Clone)]
pub struct Guest {
    component: Component,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guest")
    }
}

/// How to run a guest command.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Its arguments, the program name first.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Host directories it may read and write: (host path, path in the guest).
    pub dirs: Vec<(PathBuf, String)>,
    /// Give it this process's stdin, stdout and stderr (else none).
    pub inherit_stdio: bool,
    /// How its `distlock` import is served.
    pub serve: Serve,
    /// What it may use.
    pub limits: Limits,
    /// Stops the run from another thread (a signal handler, say); `None`: only its limits
    /// stop it.
    pub stopper: Option<Stopper>,
}

impl RunOptions {
    /// Default options with these arguments (the program name first) and inherited stdio.
    pub fn args<I, S>(args: I) -> RunOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RunOptions {
            args: args.into_iter().map(Into::into).collect(),
            inherit_stdio: true,
            ..RunOptions::default()
        }
    }
}

/// How a guest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code (0: success).
    Exited(i32),
    /// It trapped (a panic, say); the message is wasmtime's.
    Trapped(String),
    /// It was stopped at its time limit.
    TimeLimit(Duration),
    /// It was stopped when it tried to grow a memory past its limit (bytes).
    MemoryLimit(usize),
    /// It was stopped by its [`Stopper`].
    Stopped,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "exited with code {code}"),
            Ended::Trapped(why) => write!(f, "trapped: {why}"),
            Ended::TimeLimit(limit) => {
                write!(f, "stopped: it ran past its time limit of {limit:?}")
            }
            Ended::MemoryLimit(bytes) => {
                write!(
                    f,
                    "stopped: it tried to grow its memory past the limit of {} MiB",
                    bytes >> 20
                )
            }
            Ended::Stopped => f.write_str("was stopped"),
        }
    }
}

/// What a guest run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// How it ended.
    pub ended: Ended,
    /// Leases it still held when it ended, which the host released: those locks are free.
    pub leases_released: usize,
    /// Leases it left behind that the host did not release, one sentence each saying why (no
    /// longer held, or the release failed and the lock frees at its TTL).
    pub leases_not_released: Vec<String>,
}

struct Inner {
    engine: Engine,
    provider: Component,
    /// For the lock component: `transport` and WASI.
    provider_linker: Linker<HostState>,
    /// For guests served by a linked lock component: `distlock` forwarded, and WASI. No
    /// `transport`: a guest reaches the servers only through the lock.
    linked_linker: Linker<HostState>,
    /// For guests served natively: `distlock` from the Rust driver, and WASI.
    native_linker: Linker<HostState>,
    ticking: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Release);
    }
}

/// Runs the lock component and guest apps. Cheap to clone. Compiling is the expensive part:
/// make one per process and derive others for other nodes with [`Adapter::configure`].
#[derive(Clone)]
pub struct Adapter {
    inner: Arc<Inner>,
    net: Arc<Net>,
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adapter")
            .field("nodes", &self.net.shown_nodes())
            .finish()
    }
}

impl Adapter {
    /// Compiles the lock component and prepares the linkers. `runtime` runs the native
    /// driver's connections and the stop watchdogs (a multi-threaded runtime: guests block on
    /// it from their own threads); the lock component's `transport` connections run on a
    /// runtime of their store's own, driven by the guest's thread.
    pub fn new(
        options: AdapterOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Adapter, AdapterError> {
        let net = Arc::new(Net::new(options, runtime)?);
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(AdapterError::wasm("setting up wasmtime"))?;
        let provider = Component::new(&engine, PROVIDER_WASM)
            .map_err(AdapterError::wasm("compiling the lock component"))?;

        let mut provider_linker = Linker::new(&engine);
        poll::add_wasi_to_linker(&mut provider_linker)
            .map_err(AdapterError::wasm("linking WASI"))?;
        transport::add_to_linker(&mut provider_linker)
            .map_err(AdapterError::wasm("linking transport"))?;
        let mut linked_linker = Linker::new(&engine);
        poll::add_wasi_to_linker(&mut linked_linker).map_err(AdapterError::wasm("linking WASI"))?;
        link::add_to_linker(&mut linked_linker).map_err(AdapterError::wasm("linking distlock"))?;
        let mut native_linker = Linker::new(&engine);
        poll::add_wasi_to_linker(&mut native_linker).map_err(AdapterError::wasm("linking WASI"))?;
        native::add_to_linker(&mut native_linker)
            .map_err(AdapterError::wasm("linking distlock"))?;

        let ticking = Arc::new(AtomicBool::new(true));
        {
            let (engine, ticking) = (engine.clone(), Arc::clone(&ticking));
            std::thread::Builder::new()
                .name("distlock-epoch".into())
                .spawn(move || {
                    while ticking.load(Ordering::Acquire) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| AdapterError::Wasm {
                    what: "starting the epoch ticker".into(),
                    error: wasmtime::Error::new(e),
                })?;
        }
        Ok(Adapter {
            inner: Arc::new(Inner {
                engine,
                provider,
                provider_linker,
                linked_linker,
                native_linker,
                ticking,
            }),
            net,
        })
    }

    /// An adapter for other nodes that shares this one's engine and compiled components
    /// (guests loaded by either run on both).
    pub fn configure(
        &self,
        options: AdapterOptions,
        runtime: tokio::runtime::Handle,
    ) -> Result<Adapter, AdapterError> {
        Ok(Adapter {
            inner: Arc::clone(&self.inner),
            net: Arc::new(Net::new(options, runtime)?),
        })
    }

    /// The first configured node that only the native driver can reach — a Redis Cluster
    /// or a Sentinel group, as a URL without its password — or `None` when every node is a
    /// fixed server. While there is one, [`Serve::Linked`] and [`Adapter::lock_component`]
    /// are refused with [`AdapterError::Routed`]: serve guests with [`Serve::Native`].
    pub fn routed_node(&self) -> Option<String> {
        self.net.routed_node()
    }

    /// Compiles a guest component.
    pub fn load(&self, wasm: &[u8]) -> Result<Guest, AdapterError> {
        let component = Component::new(&self.inner.engine, wasm)
            .map_err(AdapterError::wasm("compiling the guest"))?;
        Ok(Guest { component })
    }

    /// Runs a guest command (its `wasi:cli/run` export) to its end, on this thread, then
    /// releases whatever leases it still holds. [`Serve::Linked`] with a node that needs
    /// routing ([`Adapter::routed_node`]) is refused before the guest starts
    /// ([`AdapterError::Routed`]), and so is it with a setting only the native driver
    /// honours ([`AdapterError::NeedsNative`]: a layout other than tagged, a ready timeout).
    pub fn run(&self, guest: &Guest, options: &RunOptions) -> Result<RunReport, AdapterError> {
        if options.serve == Serve::Linked {
            self.fixed_nodes_only()?;
        }
        let mut store = self.store(options)?;
        if store.data().stopped().is_some() {
            // Stopped before it started: it never runs, so it holds nothing.
            return Ok(RunReport {
                ended: ended_by(&store, &options.limits, wasmtime::Error::msg("stopped")),
                leases_released: 0,
                leases_not_released: Vec::new(),
            });
        }
        let linker = self.link(&mut store, options.serve)?;
        let pre = linker
            .instantiate_pre(&guest.component)
            .map_err(AdapterError::wasm("linking the guest"))?;
        let command = wasmtime_wasi::p2::bindings::sync::CommandPre::new(pre)
            .and_then(|pre| pre.instantiate(&mut store))
            .map_err(AdapterError::wasm("instantiating the guest"));
        let ended = match command {
            Ok(command) => match command.wasi_cli_run().call_run(&mut store) {
                Ok(Ok(())) => Ended::Exited(0),
                Ok(Err(())) => Ended::Exited(1),
                Err(error) => ended_by(&store, &options.limits, error),
            },
            // A start function can trap or exhaust a limit too.
            Err(AdapterError::Wasm { error, .. }) if store.data().stopped().is_some() => {
                ended_by(&store, &options.limits, error)
            }
            Err(e) => return Err(e),
        };
        let leftovers = store.data_mut().release_leftovers();
        Ok(RunReport {
            ended,
            leases_released: leftovers.released,
            leases_not_released: leftovers.not_released,
        })
    }

    /// An instance of the lock component, to call its `distlock` exports from Rust: the
    /// component driven over the host's `transport`.
    pub fn lock_component(&self, limits: Limits) -> Result<LockInstance, AdapterError> {
        self.fixed_nodes_only()?;
        let options = RunOptions {
            limits,
            ..RunOptions::default()
        };
        let mut store = self.store(&options)?;
        let (api, _linking) = self.instantiate_provider(&mut store)?;
        Ok(LockInstance::new(store, api))
    }

    /// An instance of `guest`, a component that exports `distlock` (and may import it, served
    /// as `serve` says), to call its exports from Rust.
    pub fn guest_exports(
        &self,
        guest: &Guest,
        serve: Serve,
        limits: Limits,
    ) -> Result<LockInstance, AdapterError> {
        let options = RunOptions {
            limits,
            serve,
            ..RunOptions::default()
        };
        let mut store = self.store(&options)?;
        let linker = self.link(&mut store, serve)?;
        let instance = linker
            .instantiate(&mut store, &guest.component)
            .map_err(AdapterError::wasm("instantiating the guest"))?;
        // The guest exports `distlock` alone (the lock component's `linking` is the host's).
        let api = bindings::provider::exports::distlock::lock::distlock::GuestIndices::new(
            &instance.instance_pre(&store),
        )
        .and_then(|indices| indices.load(&mut store, &instance))
        .map_err(AdapterError::wasm("reading the guest's distlock exports"))?;
        Ok(LockInstance::new(store, api))
    }

    /// A store for one guest, with its WASI context and limits.
    fn store(&self, options: &RunOptions) -> Result<Store<HostState>, AdapterError> {
        let mut wasi = wasmtime_wasi::WasiCtx::builder();
        wasi.args(&options.args)
            .envs(&options.env)
            .allow_blocking_current_thread(true);
        if options.inherit_stdio {
            wasi.inherit_stdio();
        }
        for (host, guest) in &options.dirs {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(AdapterError::wasm(format!("opening {}", host.display())))?;
        }
        let state = HostState::new(
            wasi.build(),
            Arc::clone(&self.net),
            options.limits,
            options.stopper.as_ref(),
        );
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|state| state.limiter());
        // Every tick: a stop (time limit, stopper) can come at any moment.
        store.epoch_deadline_callback(|mut ctx| ctx.data_mut().on_epoch());
        store.set_epoch_deadline(1);
        Ok(store)
    }

    /// The linker for a guest served as `serve`; for [`Serve::Linked`], instantiates the lock
    /// component in `store` first.
    fn link(
        &self,
        store: &mut Store<HostState>,
        serve: Serve,
    ) -> Result<&Linker<HostState>, AdapterError> {
        match serve {
            Serve::Linked => {
                self.fixed_nodes_only()?;
                let (api, linking) = self.instantiate_provider(store)?;
                store.data_mut().set_provider(api, linking);
                Ok(&self.inner.linked_linker)
            }
            Serve::Native => Ok(&self.inner.native_linker),
        }
    }

    /// Refuses the lock component while a node needs routing it does not do, or a setting
    /// asks what only the native driver honours ([`AdapterError::NeedsNative`]).
    fn fixed_nodes_only(&self) -> Result<(), AdapterError> {
        if let Some(node) = self.net.routed_node() {
            return Err(AdapterError::Routed { node });
        }
        match self.net.linked_refusal() {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }

    fn instantiate_provider(
        &self,
        store: &mut Store<HostState>,
    ) -> Result<
        (
            bindings::provider::exports::distlock::lock::distlock::Guest,
            bindings::provider::exports::distlock::lock::linking::Guest,
        ),
        AdapterError,
    > {
        let provider = bindings::provider::Provider::instantiate(
            &mut *store,
            &self.inner.provider,
            &self.inner.provider_linker,
        )
        .map_err(AdapterError::wasm("instantiating the lock component"))?;
        Ok((
            provider.distlock_lock_distlock().clone(),
            provider.distlock_lock_linking().clone(),
        ))
    }
}

/// How a guest that failed with `error` ended: stopped by a limit, exited, or trapped.
fn ended_by(store: &Store<HostState>, limits: &Limits, error: wasmtime::Error) -> Ended {
    match store.data().stopped() {
        Some(Stop::Time) => return Ended::TimeLimit(limits.time.unwrap_or_default()),
        Some(Stop::Memory) => return Ended::MemoryLimit(limits.memory),
        Some(Stop::Asked) => return Ended::Stopped,
        None => {}
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Ended::Exited(exit.0);
    }
    tracing::debug!(error = ?error, "the guest trapped");
    // The root cause says what happened (`unreachable` executed, …); the wasm backtrace
    // above it is for debugging.
    Ended::Trapped(error.root_cause().to_string())
}
