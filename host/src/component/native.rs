//! A guest's `distlock` import served by the Rust driver: each call runs [`crate::Client`]
//! on the adapter's runtime, blocking the guest's thread until it is done (or the guest is
//! stopped). The resources it hands out are [`NativeClient`], [`NativeLease`] and
//! [`NativeComputation`].
//!
//! Same semantics as the lock component: a lease released (or found lost) is inert, a
//! dropped lease is released, errors are the `error` variant case for case. A computation
//! runs on [`crate::Client::begin_compute`]'s machinery, renewed only by the guest's `renew`;
//! one dropped unfinished is given up in the background on the adapter's runtime (as a
//! dropped [`crate::Computation`] is), so the destructor does no network I/O itself.
//!
//! A client opens under the runtime's key settings (`net.rs`: its layout or prefix, its
//! scripts mode), as the linked lock component's clients do.

use std::time::Duration;

use distlock_core::{FinishCompute, LostReason};
use wasmtime::component::{HasSelf, Linker, Resource};

use super::bindings::app::distlock::lock::distlock::{
    self as api, Config, ConfigError, ConfigErrorKind, Error,
};
use super::net::ConfigRefusal;
use super::resources::{NativeClient, NativeComputation, NativeLease};
use super::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    api::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

impl api::Host for HostState {}

impl api::HostClient for HostState {
    fn open(
        &mut self,
        mut config: Config,
    ) -> wasmtime::Result<Result<Resource<NativeClient>, Error>> {
        // The runtime's layout, prefix and scripts mode, as the lock component gets them.
        if let Err((refusal, message)) = self
            .net
            .settle_config(&mut config.key_prefix, &mut config.no_scripts)
        {
            return Ok(Err(Error::Invalid(ConfigError {
                kind: match refusal {
                    ConfigRefusal::BadPrefix => ConfigErrorKind::BadPrefix,
                    ConfigRefusal::NeedsScripts => ConfigErrorKind::NeedsScripts,
                },
                message,
            })));
        }
        let settings = distlock_core::wit::LockSettings {
            fenced: config.fenced,
            fair: config.fair,
            no_scripts: config.no_scripts,
            ttl_ms: config.ttl_ms,
            request_timeout_ms: config.request_timeout_ms,
        };
        let options = match settings.options() {
            Ok(options) => options,
            Err(e) => return Ok(Err(config_error(e))),
        };
        // A guest reaches the configured nodes only, served natively as by the lock
        // component (whose `transport` refuses the rest).
        if let Some(why) = self.net.refuse_unconfigured(&config.nodes) {
            return Ok(Err(Error::Unavailable(why)));
        }
        let (halt, net) = (self.halt(), std::sync::Arc::clone(&self.net));
        let connected =
            halt.block_on(net.connect_client(&config.nodes, config.key_prefix.as_deref()))?;
        let client = match connected {
            Ok(client) => client,
            Err(e) => return Ok(Err(host_error(e))),
        };
        if let Err(e) = options.check_setup(client.layout(), client.nodes()) {
            return Ok(Err(config_error(e)));
        }
        Ok(Ok(self.table.push(NativeClient { client, options })?))
    }

    fn acquire(
        &mut self,
        client: Resource<NativeClient>,
        name: String,
        wait_ms: u64,
    ) -> wasmtime::Result<Result<Resource<api::Lease>, Error>> {
        self.acquire_within(&client, name, Duration::from_millis(wait_ms))
    }

    fn try_acquire(
        &mut self,
        client: Resource<NativeClient>,
        name: String,
    ) -> wasmtime::Result<Result<Resource<api::Lease>, Error>> {
        self.acquire_within(&client, name, Duration::ZERO)
    }

    fn acquire_shaped(
        &mut self,
        client: Resource<NativeClient>,
        name: String,
        shape: api::Shape,
        wait_ms: u64,
    ) -> wasmtime::Result<Result<Resource<api::Lease>, Error>> {
        self.acquire_shaped_within(&client, name, shape, Duration::from_millis(wait_ms))
    }

    fn acquire_many(
        &mut self,
        client: Resource<NativeClient>,
        names: Vec<String>,
        wait_ms: u64,
    ) -> wasmtime::Result<Result<Resource<api::Lease>, Error>> {
        let native = self.table.get(&client)?;
        let builder = native
            .client
            .lock_many(&names)
            .options(native.options)
            .wait(Duration::from_millis(wait_ms));
        self.acquire_built(builder, names.join(", "))
    }

    fn get_or_lock(
        &mut self,
        client: Resource<NativeClient>,
        name: String,
        wait_ms: u64,
    ) -> wasmtime::Result<Result<api::Fetched, Error>> {
        let halt = self.halt();
        let native = self.table.get(&client)?;
        let begun = halt.block_on(native.client.begin_compute_renewed_by_hand(
            name.as_bytes(),
            native.options,
            Duration::from_millis(wait_ms),
        ))?;
        let computation = match begun {
            Ok(crate::Begun::Value(value)) => return Ok(Ok(api::Fetched::Value(value))),
            Ok(crate::Begun::Compute(computation)) => computation,
            Err(e) => return Ok(Err(compute_error(e))),
        };
        let renewal = computation.guard().renewal();
        let computation = NativeComputation {
            token: computation.guard().token().to_owned(),
            computation: Some(computation),
            name,
            renewal,
        };
        Ok(Ok(api::Fetched::Computing(self.table.push(computation)?)))
    }

    fn drop(&mut self, client: Resource<NativeClient>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        Ok(())
    }
}

impl HostState {
    fn acquire_within(
        &mut self,
        client: &Resource<NativeClient>,
        name: String,
        wait: Duration,
    ) -> wasmtime::Result<Result<Resource<NativeLease>, Error>> {
        self.acquire_shaped_within(client, name, api::Shape::Lock, wait)
    }

    /// Acquires `shape` on `name`: the core's reading of the shape (its options, limit and
    /// side) goes to the host's builder, whose guard then extends, renews and releases that
    /// permit or hold.
    fn acquire_shaped_within(
        &mut self,
        client: &Resource<NativeClient>,
        name: String,
        shape: api::Shape,
        wait: Duration,
    ) -> wasmtime::Result<Result<Resource<NativeLease>, Error>> {
        let client = self.table.get(client)?;
        let shape = core_shape(&shape);
        let builder = client
            .client
            .lock(&name)
            .options(shape.options(client.options))
            .limit(shape.limit())
            .rw(shape.rw_mode())
            .wait(wait);
        self.acquire_built(builder, name)
    }

    /// Runs `builder`'s acquire (a lock of one name in a shape, or a set of names) and keeps
    /// its guard as the guest's lease, known as `name`.
    fn acquire_built(
        &mut self,
        builder: crate::LockBuilder,
        name: String,
    ) -> wasmtime::Result<Result<Resource<NativeLease>, Error>> {
        let halt = self.halt();
        // A stop drops the acquire mid-way: whatever it took then frees at its TTL.
        let guard = match halt.block_on(builder.acquire())? {
            Ok(guard) => guard,
            Err(e) => return Ok(Err(host_error(e))),
        };
        let lease = NativeLease {
            token: guard.token().to_owned(),
            fence: guard.fence(),
            renewal: guard.renewal(),
            guard: Some(guard),
            name,
        };
        Ok(Ok(self.table.push(lease)?))
    }
}

impl api::HostLease for HostState {
    fn name(&mut self, lease: Resource<NativeLease>) -> wasmtime::Result<String> {
        Ok(self.table.get(&lease)?.name.clone())
    }

    fn token(&mut self, lease: Resource<NativeLease>) -> wasmtime::Result<String> {
        Ok(self.table.get(&lease)?.token.clone())
    }

    fn fence(&mut self, lease: Resource<NativeLease>) -> wasmtime::Result<Option<u64>> {
        Ok(self.table.get(&lease)?.fence)
    }

    fn validity_ms(&mut self, lease: Resource<NativeLease>) -> wasmtime::Result<u64> {
        let lease = self.table.get(&lease)?;
        Ok(lease.guard.as_ref().map_or(0, |g| {
            u64::try_from(g.validity().as_millis()).unwrap_or(u64::MAX)
        }))
    }

    fn extend(
        &mut self,
        lease: Resource<NativeLease>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let halt = self.halt();
        let lease = self.table.get(&lease)?;
        let Some(guard) = lease.guard.as_ref() else {
            return Ok(Err(Error::NotHeld));
        };
        Ok(
            match halt.block_on(guard.extend(Duration::from_millis(ttl_ms)))? {
                Ok(validity) => Ok(u64::try_from(validity.as_millis()).unwrap_or(u64::MAX)),
                Err(e) => Err(host_error(e)),
            },
        )
    }

    // The guard runs the core's schedule one step; a stop cuts the extend short like any
    // other wait (the guest ends, and its leases are released).
    fn renew(&mut self, lease: Resource<NativeLease>) -> wasmtime::Result<Result<u64, Error>> {
        let halt = self.halt();
        let NativeLease { guard, renewal, .. } = self.table.get_mut(&lease)?;
        let Some(guard) = guard.as_ref() else {
            return Ok(Err(Error::NotHeld));
        };
        Ok(match halt.block_on(guard.renew_due(renewal))? {
            Ok(next) => Ok(u64::try_from(next.as_millis()).unwrap_or(u64::MAX)),
            Err(LostReason::NotHeld) => Err(Error::NotHeld),
            Err(_) => Err(Error::Expired),
        })
    }

    // Releasing is never cut short by a stop (it is what stopping is for): a plain wait,
    // bounded by the request timeout.
    fn release(&mut self, lease: Resource<NativeLease>) -> wasmtime::Result<Result<(), Error>> {
        let runtime = self.net.runtime.clone();
        let Some(guard) = self.table.get_mut(&lease)?.guard.take() else {
            return Ok(Err(Error::NotHeld));
        };
        Ok(runtime
            .block_on(guard.release())
            .map(|_| ())
            .map_err(host_error))
    }

    fn drop(&mut self, lease: Resource<NativeLease>) -> wasmtime::Result<()> {
        let lease = self.table.delete(lease)?;
        if let Some(guard) = lease.guard {
            // As the lock component does: errors are not the guest's to see; the lock
            // expires at its TTL.
            if let Err(e) = self.net.runtime.block_on(guard.release()) {
                tracing::debug!(error = %e, "releasing a dropped lease failed");
            }
        }
        Ok(())
    }
}

impl api::HostComputation for HostState {
    fn name(&mut self, computation: Resource<NativeComputation>) -> wasmtime::Result<String> {
        Ok(self.table.get(&computation)?.name.clone())
    }

    fn token(&mut self, computation: Resource<NativeComputation>) -> wasmtime::Result<String> {
        Ok(self.table.get(&computation)?.token.clone())
    }

    fn validity_ms(&mut self, computation: Resource<NativeComputation>) -> wasmtime::Result<u64> {
        let computation = self.table.get(&computation)?;
        Ok(computation.computation.as_ref().map_or(0, |c| {
            u64::try_from(c.guard().validity().as_millis()).unwrap_or(u64::MAX)
        }))
    }

    fn extend(
        &mut self,
        computation: Resource<NativeComputation>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let halt = self.halt();
        let Some(computation) = self.table.get(&computation)?.computation.as_ref() else {
            return Ok(Err(Error::NotHeld));
        };
        let extend = computation.guard().extend(Duration::from_millis(ttl_ms));
        Ok(match halt.block_on(extend)? {
            Ok(validity) => Ok(u64::try_from(validity.as_millis()).unwrap_or(u64::MAX)),
            Err(e) => Err(host_error(e)),
        })
    }

    fn renew(
        &mut self,
        computation: Resource<NativeComputation>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let halt = self.halt();
        let NativeComputation {
            computation,
            renewal,
            ..
        } = self.table.get_mut(&computation)?;
        let Some(computation) = computation.as_ref() else {
            return Ok(Err(Error::NotHeld));
        };
        Ok(
            match halt.block_on(computation.guard().renew_due(renewal))? {
                Ok(next) => Ok(u64::try_from(next.as_millis()).unwrap_or(u64::MAX)),
                Err(LostReason::NotHeld) => Err(Error::NotHeld),
                Err(_) => Err(Error::Expired),
            },
        )
    }

    // Like a release, never cut short by a stop: bounded by the request timeout.
    fn store(
        &mut self,
        computation: Resource<NativeComputation>,
        value: Vec<u8>,
        value_ttl_ms: u64,
    ) -> wasmtime::Result<Result<(), Error>> {
        let ttl = Duration::from_millis(value_ttl_ms);
        // A refused value changes nothing: the computation goes on (the core's check).
        if let Err(e) = FinishCompute::check_store(&value, crate::clock::from_std(ttl)) {
            return Ok(Err(config_error(e)));
        }
        let runtime = self.net.runtime.clone();
        let Some(computation) = self.table.get_mut(&computation)?.take() else {
            return Ok(Err(Error::NotHeld));
        };
        Ok(runtime
            .block_on(computation.store(&value, ttl))
            .map_err(compute_error))
    }

    fn abandon(
        &mut self,
        computation: Resource<NativeComputation>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let runtime = self.net.runtime.clone();
        let Some(computation) = self.table.get_mut(&computation)?.take() else {
            return Ok(Err(Error::NotHeld));
        };
        Ok(runtime.block_on(computation.give_up()).map_err(host_error))
    }

    fn drop(&mut self, computation: Resource<NativeComputation>) -> wasmtime::Result<()> {
        let computation = self.table.delete(computation)?;
        // Dropped inside the runtime, an unfinished computation gives itself up in a task of
        // its own: nothing here waits on the network.
        let _runtime = self.net.runtime.enter();
        drop(computation);
        Ok(())
    }
}

/// A get-or-compute error as the `error` variant.
fn compute_error(error: crate::ComputeError) -> Error {
    match error {
        crate::ComputeError::NotAcquired {
            attempts,
            holder_ttl,
        } => Error::NotAcquired(api::NotAcquired {
            attempts,
            holder_ttl_ms: holder_ttl.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        }),
        crate::ComputeError::LockLost => Error::NotHeld,
        crate::ComputeError::Client(e) => host_error(e),
        crate::ComputeError::Compute(never) => match never {},
    }
}

/// A host error as the `error` variant.
fn host_error(error: crate::Error) -> Error {
    match error {
        crate::Error::Lock(e) => lock_error(e),
        crate::Error::Config(e) => config_error(e),
        e @ crate::Error::BadUrl { .. } => Error::Invalid(ConfigError {
            kind: ConfigErrorKind::BadUrl,
            message: e.to_string(),
        }),
        e @ crate::Error::TooManyNodes(_) => Error::Invalid(ConfigError {
            kind: ConfigErrorKind::BadNodeCount,
            message: e.to_string(),
        }),
        other => Error::Unavailable(other.to_string()),
    }
}

// The core's errors, case for case: the same conversions the lock component expands.
distlock_core::wit_error_conversions!(super::bindings::app::distlock::lock::distlock);
// The interface's `shape` as the core's, case for case.
distlock_core::wit_shape_conversion!(super::bindings::app::distlock::lock::distlock);
