//! The engine's get-or-compute calls (`get-or-lock`, `finish-compute`, `abandon-compute`),
//! run to their outcome on a [`Host`] the way its lock calls are, and
//! [`Host::get_or_compute`]: the whole dogpile helper as a binding drives it — fetch, run the
//! computation only on `computing`, then store its value or give it up.

use super::{Host, api, entropy};

/// Why [`Host::get_or_compute`] returned no value.
#[derive(Debug, PartialEq)]
pub(crate) enum ComputeFailure {
    /// The computation failed with this; its lock was given up (one waiter computes next).
    Computation(String),
    /// An engine call failed.
    Engine(api::Error),
}

impl Host {
    /// `get-or-lock` (wait in ms; 0: ask once), run to its outcome.
    pub(crate) fn get_or_lock(
        &mut self,
        name: &str,
        wait_ms: u32,
    ) -> Result<api::Fetched, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_get_or_lock(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                wait_ms,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Fetched(fetched) => Ok(fetched),
            other => panic!("get-or-lock ended with {other:?}"),
        }
    }

    /// `finish-compute`, run to its outcome: the waiters woken.
    pub(crate) fn finish_compute(
        &mut self,
        name: &str,
        token: &str,
        value: &[u8],
        value_ttl_ms: u32,
    ) -> Result<u32, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_finish_compute(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                token,
                value,
                value_ttl_ms,
                now,
            )
            .expect("no trap")?;
        self.computed(op, "finish-compute")
    }

    /// `abandon-compute`, run to its outcome: the waiters woken (at most one).
    pub(crate) fn abandon_compute(&mut self, name: &str, token: &str) -> Result<u32, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_abandon_compute(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                token,
                now,
            )
            .expect("no trap")?;
        self.computed(op, "abandon-compute")
    }

    fn computed(
        &mut self,
        op: wasmtime::component::ResourceAny,
        what: &str,
    ) -> Result<u32, api::Error> {
        match self.run(op)? {
            api::Outcome::Computed(woken) => Ok(woken),
            other => panic!("{what} ended with {other:?}"),
        }
    }

    /// The value cached under `name`, or the one `compute` returns, stored for
    /// `value_ttl_ms`; waits up to `wait_ms` for another caller's value. `compute` runs only
    /// when this caller holds the computation's lock; when it fails, the lock is given up.
    pub(crate) fn get_or_compute(
        &mut self,
        name: &str,
        wait_ms: u32,
        value_ttl_ms: u32,
        compute: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, ComputeFailure> {
        let lease = match self.get_or_lock(name, wait_ms) {
            Ok(api::Fetched::Value(value)) => return Ok(value),
            Ok(api::Fetched::Computing(lease)) => lease,
            Err(error) => return Err(ComputeFailure::Engine(error)),
        };
        match compute() {
            Ok(value) => self
                .finish_compute(name, &lease.token, &value, value_ttl_ms)
                .map(|_| value)
                .map_err(ComputeFailure::Engine),
            Err(why) => {
                self.abandon_compute(name, &lease.token)
                    .map_err(ComputeFailure::Engine)?;
                Err(ComputeFailure::Computation(why))
            }
        }
    }
}
