//! The engine's calls for semaphores and read-write locks (`acquire-shaped` and its
//! siblings), run to their outcome on a [`Host`] the way its lock calls are: one operation at
//! a time, driven by `step`.

use wasmtime::component::ResourceAny;

use super::{Host, api, entropy};

/// One of `limit` permits of a semaphore; `fair`: `none` is the session's.
pub(crate) fn semaphore(limit: u32, fair: Option<bool>) -> api::Shape {
    api::Shape::Semaphore(api::SemaphoreShape { limit, fair })
}

impl Host {
    /// `acquire-shaped` (wait in ms; 0: one attempt), run to its outcome.
    pub(crate) fn acquire_shaped(
        &mut self,
        name: &str,
        shape: &api::Shape,
        wait_ms: u32,
    ) -> Result<api::Lease, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_acquire_shaped(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                *shape,
                wait_ms,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Acquired(lease) => Ok(lease),
            other => panic!("acquire-shaped ended with {other:?}"),
        }
    }

    /// `release-shaped`, run to its outcome: the holds left.
    pub(crate) fn release_shaped(
        &mut self,
        name: &str,
        shape: &api::Shape,
        token: &str,
    ) -> Result<u32, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_release_shaped(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                *shape,
                token,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Released(holds) => Ok(holds),
            other => panic!("release-shaped ended with {other:?}"),
        }
    }

    /// `extend-shaped`, run to its outcome.
    pub(crate) fn extend_shaped(
        &mut self,
        name: &str,
        shape: &api::Shape,
        token: &str,
        ttl_ms: u32,
    ) -> Result<api::Extended, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_extend_shaped(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                *shape,
                token,
                ttl_ms,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Extended(extended) => Ok(extended),
            other => panic!("extend-shaped ended with {other:?}"),
        }
    }

    /// The renewal schedule of `lease`, a permit or hold of `shape` on `name`.
    pub(crate) fn renewal_shaped(
        &mut self,
        name: &str,
        shape: &api::Shape,
        lease: &api::Lease,
    ) -> Result<ResourceAny, api::Error> {
        self.sessions()
            .call_renewal_shaped(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                *shape,
                lease,
                &entropy(),
            )
            .expect("no trap")
    }
}
