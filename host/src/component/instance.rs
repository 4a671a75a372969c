//! [`AsyncLockInstance`]: a component that exports `distlock` (the lock component itself,
//! or a guest that re-exports it), called from Rust as a task; [`LockInstance`]: the same,
//! called from a thread (each call a `block_on` of the async one).
//!
//! Invariant: whatever a linked guest inside still holds when the instance is dropped is
//! released by the host: [`LockInstance`] waits for that, [`AsyncLockInstance`] hands it to
//! a task on the adapter's runtime (a destructor does no network I/O), or releases it in
//! [`AsyncLockInstance::close`].

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use super::bindings::provider::exports::distlock::lock::distlock::{self as wit, Guest as Api};
use super::state::{HostState, LeftBehind};

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
/// async Rust: each call is a future, and a call that waits on a server frees the runtime's
/// worker meanwhile. One call at a time, like any store. Dropping it releases the leases a
/// linked guest inside still holds, in a task on the adapter's runtime; [`Self::close`] does
/// the same and waits for it.
pub struct AsyncLockInstance {
    store: Store<HostState>,
    api: Api,
}

impl std::fmt::Debug for AsyncLockInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AsyncLockInstance")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl AsyncLockInstance {
    pub(crate) fn new(store: Store<HostState>, api: Api) -> AsyncLockInstance {
        AsyncLockInstance { store, api }
    }

    /// `client.open`, under the adapter's key settings (its layout or prefix and scripts
    /// mode fill what `config` leaves unset; another prefix, or scripts where it sends none,
    /// is refused with `invalid`), as a guest's clients are.
    pub async fn open(&mut self, config: &wit::Config) -> Result<ClientHandle, CallError> {
        let mut config = config.clone();
        super::link::settle(&self.store.data().net, &mut config).map_err(CallError::Lock)?;
        let client = self
            .api
            .client()
            .call_open(&mut self.store, &config)
            .await?
            .map_err(CallError::Lock)?;
        Ok(ClientHandle(client))
    }

    /// `client.acquire`.
    pub async fn acquire(
        &mut self,
        client: &ClientHandle,
        name: &str,
        wait: Duration,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_acquire(&mut self.store, client.0, name, millis(wait))
            .await?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `client.try-acquire`.
    pub async fn try_acquire(
        &mut self,
        client: &ClientHandle,
        name: &str,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_try_acquire(&mut self.store, client.0, name)
            .await?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `client.acquire-shaped`: a semaphore's permit or a read-write lock's hold.
    pub async fn acquire_shaped(
        &mut self,
        client: &ClientHandle,
        name: &str,
        shape: wit::Shape,
        wait: Duration,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_acquire_shaped(&mut self.store, client.0, name, shape, millis(wait))
            .await?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `client.acquire-many`: every name at once, all or nothing.
    pub async fn acquire_many(
        &mut self,
        client: &ClientHandle,
        names: &[String],
        wait: Duration,
    ) -> Result<LeaseHandle, CallError> {
        let lease = self
            .api
            .client()
            .call_acquire_many(&mut self.store, client.0, names, millis(wait))
            .await?
            .map_err(CallError::Lock)?;
        Ok(LeaseHandle(lease))
    }

    /// `lease.name`.
    pub async fn name(&mut self, lease: &LeaseHandle) -> Result<String, CallError> {
        Ok(self.api.lease().call_name(&mut self.store, lease.0).await?)
    }

    /// `lease.token`.
    pub async fn token(&mut self, lease: &LeaseHandle) -> Result<String, CallError> {
        Ok(self
            .api
            .lease()
            .call_token(&mut self.store, lease.0)
            .await?)
    }

    /// `lease.fence`.
    pub async fn fence(&mut self, lease: &LeaseHandle) -> Result<Option<u64>, CallError> {
        Ok(self
            .api
            .lease()
            .call_fence(&mut self.store, lease.0)
            .await?)
    }

    /// `lease.validity-ms`.
    pub async fn validity(&mut self, lease: &LeaseHandle) -> Result<Duration, CallError> {
        let ms = self
            .api
            .lease()
            .call_validity_ms(&mut self.store, lease.0)
            .await?;
        Ok(Duration::from_millis(ms))
    }

    /// `lease.extend`: the new validity.
    pub async fn extend(
        &mut self,
        lease: &LeaseHandle,
        ttl: Duration,
    ) -> Result<Duration, CallError> {
        let ms = self
            .api
            .lease()
            .call_extend(&mut self.store, lease.0, millis(ttl))
            .await?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `lease.renew`: extends the lease if the core's renewal schedule says it is due;
    /// how long until the next call is due.
    pub async fn renew(&mut self, lease: &LeaseHandle) -> Result<Duration, CallError> {
        let ms = self
            .api
            .lease()
            .call_renew(&mut self.store, lease.0)
            .await?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `lease.release`.
    pub async fn release(&mut self, lease: &LeaseHandle) -> Result<(), CallError> {
        self.api
            .lease()
            .call_release(&mut self.store, lease.0)
            .await?
            .map_err(CallError::Lock)
    }

    /// Drops a lease (releasing the lock if it is still held).
    pub async fn drop_lease(&mut self, lease: LeaseHandle) -> Result<(), CallError> {
        Ok(lease.0.resource_drop_async(&mut self.store).await?)
    }

    /// `client.get-or-lock`: the value cached under `name`, or this caller's computation of
    /// it, waiting up to `wait` for another caller's value.
    pub async fn get_or_lock(
        &mut self,
        client: &ClientHandle,
        name: &str,
        wait: Duration,
    ) -> Result<Fetched, CallError> {
        let fetched = self
            .api
            .client()
            .call_get_or_lock(&mut self.store, client.0, name, millis(wait))
            .await?
            .map_err(CallError::Lock)?;
        Ok(match fetched {
            wit::Fetched::Value(value) => Fetched::Value(value),
            wit::Fetched::Computing(computation) => {
                Fetched::Computing(ComputationHandle(computation))
            }
        })
    }

    /// `computation.name`.
    pub async fn computation_name(&mut self, c: &ComputationHandle) -> Result<String, CallError> {
        Ok(self
            .api
            .computation()
            .call_name(&mut self.store, c.0)
            .await?)
    }

    /// `computation.token`.
    pub async fn computation_token(&mut self, c: &ComputationHandle) -> Result<String, CallError> {
        Ok(self
            .api
            .computation()
            .call_token(&mut self.store, c.0)
            .await?)
    }

    /// `computation.validity-ms`.
    pub async fn computation_validity(
        &mut self,
        c: &ComputationHandle,
    ) -> Result<Duration, CallError> {
        let ms = self
            .api
            .computation()
            .call_validity_ms(&mut self.store, c.0)
            .await?;
        Ok(Duration::from_millis(ms))
    }

    /// `computation.extend`: the new validity.
    pub async fn computation_extend(
        &mut self,
        c: &ComputationHandle,
        ttl: Duration,
    ) -> Result<Duration, CallError> {
        let ms = self
            .api
            .computation()
            .call_extend(&mut self.store, c.0, millis(ttl))
            .await?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `computation.renew`: how long until the next call is due.
    pub async fn computation_renew(
        &mut self,
        c: &ComputationHandle,
    ) -> Result<Duration, CallError> {
        let ms = self
            .api
            .computation()
            .call_renew(&mut self.store, c.0)
            .await?
            .map_err(CallError::Lock)?;
        Ok(Duration::from_millis(ms))
    }

    /// `computation.store`: stores `value` for `ttl` and wakes the waiters.
    pub async fn store(
        &mut self,
        c: &ComputationHandle,
        value: &[u8],
        ttl: Duration,
    ) -> Result<(), CallError> {
        self.api
            .computation()
            .call_store(&mut self.store, c.0, value, millis(ttl))
            .await?
            .map_err(CallError::Lock)
    }

    /// `computation.abandon`: gives the computation up and wakes one waiter.
    pub async fn abandon(&mut self, c: &ComputationHandle) -> Result<(), CallError> {
        self.api
            .computation()
            .call_abandon(&mut self.store, c.0)
            .await?
            .map_err(CallError::Lock)
    }

    /// Drops a computation (an unfinished one is given up, as the interface says).
    pub async fn drop_computation(&mut self, c: ComputationHandle) -> Result<(), CallError> {
        Ok(c.0.resource_drop_async(&mut self.store).await?)
    }

    /// Drops a client.
    pub async fn drop_client(&mut self, client: ClientHandle) -> Result<(), CallError> {
        Ok(client.0.resource_drop_async(&mut self.store).await?)
    }

    /// Releases the leases a linked guest inside still holds (and gives up its unfinished
    /// computations), waiting for that, and ends the instance.
    pub async fn close(mut self) {
        self.take_left_behind().release().await;
    }

    /// What a linked guest inside left behind, taken out of the store (no I/O).
    fn take_left_behind(&mut self) -> LeftBehind {
        self.store.data_mut().take_left_behind()
    }
}

impl Drop for AsyncLockInstance {
    fn drop(&mut self) {
        // Taken out here (no I/O), released in a task; after `close`, nothing is left.
        let left = self.take_left_behind();
        if !left.is_empty() {
            let runtime = self.store.data().net.runtime.clone();
            runtime.spawn(left.release());
        }
    }
}

/// An instance of a component that exports `distlock`, in a store of its own, called from a
/// thread: each call runs the [`AsyncLockInstance`] call to its end on the adapter's runtime
/// (so never from inside an async task: use [`AsyncLockInstance`] there). One per thread,
/// like any store. Dropping it releases the leases a linked guest inside still holds, and
/// waits for that.
pub struct LockInstance {
    instance: Option<AsyncLockInstance>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for LockInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockInstance")
    }
}

/// A blocking method of [`LockInstance`]: the [`AsyncLockInstance`] method of the same name,
/// run to its end.
macro_rules! blocking {
    ($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*) -> $out:ty) => {
        $(#[$doc])*
        pub fn $name(&mut self, $($arg: $ty),*) -> Result<$out, CallError> {
            let (instance, runtime) = self.parts();
            runtime.block_on(instance.$name($($arg),*))
        }
    };
}

impl LockInstance {
    pub(crate) fn new(instance: AsyncLockInstance, runtime: tokio::runtime::Handle) -> Self {
        LockInstance {
            instance: Some(instance),
            runtime,
        }
    }

    fn parts(&mut self) -> (&mut AsyncLockInstance, &tokio::runtime::Handle) {
        match &mut self.instance {
            Some(instance) => (instance, &self.runtime),
            // Only `drop` takes it.
            None => unreachable!("a lock instance is used after it was dropped"),
        }
    }

    blocking!(/// `client.open`.
        open(config: &wit::Config) -> ClientHandle);
    blocking!(/// `client.acquire`.
        acquire(client: &ClientHandle, name: &str, wait: Duration) -> LeaseHandle);
    blocking!(/// `client.try-acquire`.
        try_acquire(client: &ClientHandle, name: &str) -> LeaseHandle);
    blocking!(/// `client.acquire-shaped`: a semaphore's permit or a read-write lock's hold.
        acquire_shaped(client: &ClientHandle, name: &str, shape: wit::Shape, wait: Duration)
            -> LeaseHandle);
    blocking!(/// `client.acquire-many`: every name at once, all or nothing.
        acquire_many(client: &ClientHandle, names: &[String], wait: Duration) -> LeaseHandle);
    blocking!(/// `lease.name`.
        name(lease: &LeaseHandle) -> String);
    blocking!(/// `lease.token`.
        token(lease: &LeaseHandle) -> String);
    blocking!(/// `lease.fence`.
        fence(lease: &LeaseHandle) -> Option<u64>);
    blocking!(/// `lease.validity-ms`.
        validity(lease: &LeaseHandle) -> Duration);
    blocking!(/// `lease.extend`: the new validity.
        extend(lease: &LeaseHandle, ttl: Duration) -> Duration);
    blocking!(/// `lease.renew`: extends the lease if the core's renewal schedule says it is
        /// due; how long until the next call is due.
        renew(lease: &LeaseHandle) -> Duration);
    blocking!(/// `lease.release`.
        release(lease: &LeaseHandle) -> ());
    blocking!(/// Drops a lease (releasing the lock if it is still held).
        drop_lease(lease: LeaseHandle) -> ());
    blocking!(/// `client.get-or-lock`: the value cached under `name`, or this caller's
        /// computation of it, waiting up to `wait` for another caller's value.
        get_or_lock(client: &ClientHandle, name: &str, wait: Duration) -> Fetched);
    blocking!(/// `computation.name`.
        computation_name(c: &ComputationHandle) -> String);
    blocking!(/// `computation.token`.
        computation_token(c: &ComputationHandle) -> String);
    blocking!(/// `computation.validity-ms`.
        computation_validity(c: &ComputationHandle) -> Duration);
    blocking!(/// `computation.extend`: the new validity.
        computation_extend(c: &ComputationHandle, ttl: Duration) -> Duration);
    blocking!(/// `computation.renew`: how long until the next call is due.
        computation_renew(c: &ComputationHandle) -> Duration);
    blocking!(/// `computation.store`: stores `value` for `ttl` and wakes the waiters.
        store(c: &ComputationHandle, value: &[u8], ttl: Duration) -> ());
    blocking!(/// `computation.abandon`: gives the computation up and wakes one waiter.
        abandon(c: &ComputationHandle) -> ());
    blocking!(/// Drops a computation (an unfinished one is given up, as the interface says).
        drop_computation(c: ComputationHandle) -> ());
    blocking!(/// Drops a client.
        drop_client(client: ClientHandle) -> ());
}

impl Drop for LockInstance {
    fn drop(&mut self) {
        if let Some(mut instance) = self.instance.take() {
            // Waits only when there is something to release: an instance that holds nothing
            // drops anywhere, inside async code too.
            let left = instance.take_left_behind();
            if !left.is_empty() {
                self.runtime.block_on(left.release());
            }
        }
    }
}
