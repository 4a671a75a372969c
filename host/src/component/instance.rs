//! [`LockInstance`]: a component that exports `distlock` (the lock component itself, or a
//! guest that re-exports it), called from Rust.

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::bindings::provider::exports::distlock::lock::distlock::{self as wit, Guest as Api};
use super::state::HostState;

/// A `client` of a [`LockInstance`].
#[derive(Debug)]
pub struct ClientHandle(ResourceAny);

/// A `lease` of a [`LockInstance`]. Pass it to [`LockInstance::drop_lease`] when done (that
/// releases the lock if it is still held, as dropping a lease does in a guest).
#[derive(Debug)]
pub struct LeaseHandle(ResourceAny);

/// A `computation` of a [`LockInstance`] (`client.get-or-lock` found the value missing).
/// Pass it to [`LockInstance::drop_computation`] when done (dropping an unfinished one gives
/// it up without network I/O, as the interface says).
#[derive(Debug)]
pub struct ComputationHandle(ResourceAny);

/// What [`LockInstance::get_or_lock`] found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Fetched {
    /// The cached value.
    Value(Vec<u8>),
    /// This caller computes the value.
    Computing(ComputationHandle),
}

/// Why a call into a component failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The lock operation failed; the component said why.
    #[error("{0}")]
    Lock(wit::Error),
    /// The component trapped (or was stopped by a limit); the instance is unusable now.
    #[error("the component trapped: {0:#}")]
    Trap(wasmtime::Error),
}

impl CallError {
    /// The lock error, if that is what this is.
    #[must_use]
    pub fn lock_error(&self) -> Option<&wit::Error> {
        match self {
            CallError::Lock(e) => Some(e),
            CallError::Trap(_) => None,
        }
    }
}

impl From<wasmtime::Error> for CallError {
    fn from(e: wasmtime::Error) -> Self {
        CallError::Trap(e)
    }
}

/// An instance of a component that exports `distlock`, in a store of its own, called from
/// Rust. Single-threaded like any store: one per thread. Dropping it releases the leases a
/// linked guest inside still holds.
pub struct LockInstance {
    store: Store<HostState>,
    api: Api,
}

impl std::fmt::Debug for LockInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockInstance")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LockInstance {
    pub(crate) fn new(store: Store<HostState>, api: Api) -> LockInstance {
        LockInstance { store, api }
    }

    /// `client.open`, under the adapter's key settings (its layout or prefix and scripts
    /// mode fill what `config` leaves unset; another prefix, or scripts where it sends none,
    /// is refused with `invalid`), as a guest's clients are.
    pub fn open(&mut self, config: &wit::Config) -> Result<ClientHandle, CallError> {
        let mut config = config.clone();
        super::link::settle(&self.store.data().net, &mut config).map_err(CallError::Lock)?;
        let client = self
            .api
            .client()
            .call_open(&mut self.store, &config)?
            .map_err(CallError::Lock)?;
        Ok(ClientHandle(client))
    }

    /// `client.acquire`.
    pub fn acquire(
        &mut self,
        client: &ClientHandle,
        name: &str,
        wait: Duration,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_acquire(&mut self.store, client.0, name, millis(wait))?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `client.try-acquire`.
    pub fn try_acquire(
        &mut self,
        client: &ClientHandle,
        name: &str,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_try_acquire(&mut self.store, client.0, name)?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `client.acquire-shaped`: a semaphore's permit or a read-write lock's hold.
    pub fn acquire_shaped(
        &mut self,
        client: &ClientHandle,
        name: &str,
        shape: wit::Shape,
        wait: Duration,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_acquire_shaped(&mut self.store, client.0, name, shape, millis(wait))?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `client.acquire-many`: every name at once, all or nothing.
    pub fn acquire_many(
        &mut self,
        client: &ClientHandle,
        names: &[String],
        wait: Duration,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_acquire_many(&mut self.store, client.0, names, millis(wait))?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `lease.name`.
    pub fn name(&mut self, lease: &LeaseHandle) -> Result<String, CallError> {
        Ok(self.api.lease().call_name(&mut self.store, lease.0)?)
    }

    /// `lease.token`.
    pub fn token(&mut self, lease: &LeaseHandle) -> Result<String, CallError> {
        Ok(self.api.lease().call_token(&mut self.store, lease.0)?)
    }

    /// `lease.fence`.
    pub fn fence(&mut self, lease: &LeaseHandle) -> Result<Option<u64>, CallError> {
        Ok(self.api.lease().call_fence(&mut self.store, lease.0)?)
    }

    /// `lease.validity-ms`.
    pub fn validity(&mut self, lease: &LeaseHandle) -> Result<Duration, CallError> {
        Ok(Duration::from_millis(
            self.api
                .lease()
                .call_validity_ms(&mut self.store, lease.0)?,
        ))
    }

    /// `lease.extend`: the new validity.
    pub fn extend(&mut self, lease: &LeaseHandle, ttl: Duration) -> Result<Duration, CallError> {
        let ms = self
            .api
            .lease()
            .call_extend(&mut self.store, lease.0, millis(ttl))?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `lease.renew`: extends the lease if the core's renewal schedule says it is due;
    /// how long until the next call is due.
    pub fn renew(&mut self, lease: &LeaseHandle) -> Result<Duration, CallError> {
        let ms = self
            .api
            .lease()
            .call_renew(&mut self.store, lease.0)?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `lease.release`.
    pub fn release(&mut self, lease: &LeaseHandle) -> Result<(), CallError> {
        self.api
            .lease()
            .call_release(&mut self.store, lease.0)?
            .map_err(CallError::Lock)
    }

    /// Drops a lease (releasing the lock if it is still held).
    pub fn drop_lease(&mut self, lease: LeaseHandle) -> Result<(), CallError> {
        Ok(lease.0.resource_drop(&mut self.store)?)
    }

    /// `client.get-or-lock`: the value cached under `name`, or this caller's computation of
    /// it, waiting up to `wait` for another caller's value.
    pub fn get_or_lock(
        &mut self,
        client: &ClientHandle,
        name: &str,
        wait: Duration,
    ) -> Result<Fetched, CallError> {
        let fetched = self
            .api
            .client()
            .call_get_or_lock(&mut self.store, client.0, name, millis(wait))?
            .map_err(CallError::Lock)?;
        Ok(match fetched {
            wit::Fetched::Value(value) => Fetched::Value(value),
            wit::Fetched::Computing(computation) => {
                Fetched::Computing(ComputationHandle(computation))
            }
        })
    }

    /// `computation.name`.
    pub fn computation_name(&mut self, c: &ComputationHandle) -> Result<String, CallError> {
        Ok(self.api.computation().call_name(&mut self.store, c.0)?)
    }

    /// `computation.token`.
    pub fn computation_token(&mut self, c: &ComputationHandle) -> Result<String, CallError> {
        Ok(self.api.computation().call_token(&mut self.store, c.0)?)
    }

    /// `computation.validity-ms`.
    pub fn computation_validity(&mut self, c: &ComputationHandle) -> Result<Duration, CallError> {
        let ms = self
            .api
            .computation()
            .call_validity_ms(&mut self.store, c.0)?;
        Ok(Duration::from_millis(ms))
    }

    /// `computation.extend`: the new validity.
    pub fn computation_extend(
        &mut self,
        c: &ComputationHandle,
        ttl: Duration,
    ) -> Result<Duration, CallError> {
        let ms = self
            .api
            .computation()
            .call_extend(&mut self.store, c.0, millis(ttl))?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `computation.renew`: how long until the next call is due.
    pub fn computation_renew(&mut self, c: &ComputationHandle) -> Result<Duration, CallError> {
        let ms = self
            .api
            .computation()
            .call_renew(&mut self.store, c.0)?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `computation.store`: stores `value` for `ttl` and wakes the waiters.
    pub fn store(
        &mut self,
        c: &ComputationHandle,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), CallError> {
        self.api
            .computation()
            .call_store(&mut self.store, c.0, value, millis(ttl))?
            .map_err(CallError::Lock)
    }

    /// `computation.abandon`: gives the computation up and wakes one waiter.
    pub fn abandon(&mut self, c: &ComputationHandle) -> Result<(), CallError> {
        self.api
            .computation()
            .call_abandon(&mut self.store, c.0)?
            .map_err(CallError::Lock)
    }

    /// Drops a computation (an unfinished one is given up, as the interface says).
    pub fn drop_computation(&mut self, c: ComputationHandle) -> Result<(), CallError> {
        Ok(c.0.resource_drop(&mut self.store)?)
    }

    /// Drops a client.
    pub fn drop_client(&mut self, client: ClientHandle) -> Result<(), CallError> {
        Ok(client.0.resource_drop(&mut self.store)?)
    }
}

impl Drop for LockInstance {
    fn drop(&mut self) {
        self.store.data_mut().release_leftovers();
    }
}
