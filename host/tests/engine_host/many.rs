//! The engine's calls for multi-name locks (`acquire-many` and its siblings), run to their
//! outcome on a [`Host`] the way its lock calls are: one operation at a time, driven by
//! `step`.

use wasmtime::component::ResourceAny;

use super::{Host, api, entropy};

/// The names as the WIT's `list<string>`.
fn owned(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

impl Host {
    /// `acquire-many` (wait in ms; 0: one attempt), run to its outcome.
    pub(crate) fn acquire_many(
        &mut self,
        names: &[&str],
        wait_ms: u32,
    ) -> Result<api::Lease, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_acquire_many(
                &mut *self.store.borrow_mut(),
                self.session,
                &owned(names),
                wait_ms,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Acquired(lease) => Ok(lease),
            other => panic!("acquire-many ended with {other:?}"),
        }
    }

    /// `release-many`, run to its outcome: the holds left.
    pub(crate) fn release_many(&mut self, names: &[&str], token: &str) -> Result<u32, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_release_many(
                &mut *self.store.borrow_mut(),
                self.session,
                &owned(names),
                token,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Released(holds) => Ok(holds),
            other => panic!("release-many ended with {other:?}"),
        }
    }

    /// `extend-many`, run to its outcome.
    pub(crate) fn extend_many(
        &mut self,
        names: &[&str],
        token: &str,
        ttl_ms: u32,
    ) -> Result<api::Extended, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_extend_many(
                &mut *self.store.borrow_mut(),
                self.session,
                &owned(names),
                token,
                ttl_ms,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Extended(extended) => Ok(extended),
            other => panic!("extend-many ended with {other:?}"),
        }
    }

    /// The renewal schedule of `lease`, held on every name of `names`.
    pub(crate) fn renewal_many(
        &mut self,
        names: &[&str],
        lease: &api::Lease,
    ) -> Result<ResourceAny, api::Error> {
        self.sessions()
            .call_renewal_many(
                &mut *self.store.borrow_mut(),
                self.session,
                &owned(names),
                lease,
                &entropy(),
            )
            .expect("no trap")
    }
}
