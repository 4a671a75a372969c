//! A guest's `distlock` import served by the Rust driver: each call runs [`crate::Client`]
//! on the adapter's runtime, blocking the guest's thread until it is done (or the guest is
//! stopped). The resources it hands out are [`NativeClient`] and [`NativeLease`].
//!
//! Same semantics as the lock component: a lease released (or found lost) is inert, a
//! dropped lease is released, errors are the `error` variant case for case.

use std::time::Duration;

use distlock_core::LostReason;
use wasmtime::component::{HasSelf, Linker, Resource};

use super::bindings::app::distlock::lock::distlock::{
    self as api, Config, ConfigError, ConfigErrorKind, Error,
};
use super::resources::{NativeClient, NativeLease};
use super::state::HostState;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    api::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

impl api::Host for HostState {}

impl api::HostClient for HostState {
    fn open(&mut self, config: Config) -> wasmtime::Result<Result<Resource<NativeClient>, Error>> {
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
