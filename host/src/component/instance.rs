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

    /// `client.open`.
    pub fn open(&mut self, config: &wit::Config) -> Result<ClientHandle, CallError> {
        let client = self
            .api
            .client()
            .call_open(&mut self.store, config)?
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
