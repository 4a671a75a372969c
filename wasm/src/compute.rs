//! Get-or-compute for guest apps: `client.get-or-lock` and the `computation` resource, driven
//! by the core's [`GetOrLock`] and [`FinishCompute`] machines.
//!
//! Every decision — what to send, how long a waiter blocks, who computes, what a reply means,
//! which settings and values are refused — is the core's (`core/src/get_or_compute.rs`); this
//! module runs its machines over the client's connections and keeps the computation's lock
//! as a [`Lease`] (so `renew` and `extend` are the lease's own).
//!
//! Invariants: a computation ends once — at the first store or abandon that was sent,
//! whatever its answer — and is inert afterwards; a refused store (a value too long, a bad
//! TTL) changes nothing; a computation
//! dropped unfinished does no network I/O in its destructor — it is queued on its client
//! ([`Dropped`]) and given up (the core's abandon, waking one waiter) at the client's next
//! call.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use distlock_core::wit::Shape;
use distlock_core::{Duration, Fetched, FinishCompute, GetOrLock, Lock, Token};

use crate::api;
use crate::{Draw, Lease, Shared, convert};

/// Computations dropped unfinished: the lock and token of each, to give up.
#[derive(Default)]
pub(crate) struct Dropped(RefCell<Vec<(Lock, Token)>>);

impl Shared {
    /// Gives up the computations the guest dropped unfinished (waking one waiter for each).
    /// A failure leaves that lock to free at its TTL; a lock already lost needs nothing.
    pub(crate) fn give_up_dropped(&self) {
        let dropped = match self.dropped.0.try_borrow_mut() {
            Ok(mut list) => core::mem::take(&mut *list),
            Err(_) => return,
        };
        for (lock, token) in dropped {
            let _ = self
                .servers
                .run(|servers, now| FinishCompute::abandon(&lock, &token, servers, now));
        }
    }
}

/// `client.get-or-lock`: the value of `name`, or its computation for this caller.
pub(crate) fn get_or_lock(
    shared: &Rc<Shared>,
    name: String,
    wait: Duration,
) -> Result<api::Fetched, api::Error> {
    let lock = Shape::Lock
        .lock(shared.layout.clone(), name.as_bytes(), shared.options)
        .map_err(convert::config_error)?;
    let draw = Draw::new();
    let token = Token::from_entropy(draw.token);
    let fetched = shared
        .servers
        .run(|servers, now| GetOrLock::new(&lock, token, servers, wait, now))?
        .map_err(convert::lock_error)?;
    match fetched {
        Fetched::Value(value) => Ok(api::Fetched::Value(value)),
        Fetched::Computing(lease) => Ok(api::Fetched::Computing(api::Computation::new(
            Computation {
                held: Lease::holding(shared, name, lock, &lease, &draw),
            },
        ))),
        // An outcome this component does not know: hand out nothing (its lock, if any, frees
        // at its TTL).
        _ => Err(api::Error::Cancelled),
    }
}

/// `distlock.computation`: the computation's lock, held as a lease until it ends.
pub(crate) struct Computation {
    /// Given up (`Lease::give_up`) once the computation ended, so it neither renews nor
    /// releases afterwards.
    held: Lease,
}

impl Computation {
    /// Runs `finish` (a store or an abandon) with this computation's lock and token.
    fn finish(
        &self,
        finish: impl FnOnce(
            &Lock,
            &Token,
            &[distlock_core::ServerInfo],
            distlock_core::Instant,
        ) -> Result<FinishCompute, distlock_core::ConfigError>,
    ) -> Result<Result<u32, distlock_core::Error>, api::Error> {
        let held = &self.held;
        if held.released.get() {
            return Err(api::Error::NotHeld);
        }
        let (lock, token) = (&held.lock, &held.token);
        held.shared
            .servers
            .run(|servers, now| finish(lock, token, servers, now))
    }
}

impl api::GuestComputation for Computation {
    fn name(&self) -> String {
        self.held.name.clone()
    }

    fn token(&self) -> String {
        api::GuestLease::token(&self.held)
    }

    fn validity_ms(&self) -> u64 {
        api::GuestLease::validity_ms(&self.held)
    }

    fn extend(&self, ttl_ms: u64) -> Result<u64, api::Error> {
        api::GuestLease::extend(&self.held, ttl_ms)
    }

    fn renew(&self) -> Result<u64, api::Error> {
        api::GuestLease::renew(&self.held)
    }

    fn store(&self, value: Vec<u8>, value_ttl_ms: u64) -> Result<(), api::Error> {
        let ttl = Duration::from_millis(value_ttl_ms);
        // A refusal (value too long, bad TTL) is an `Err` here, before anything was sent: the
        // computation goes on.
        let stored = self.finish(|lock, token, servers, now| {
            FinishCompute::store(lock, token, servers, &value, ttl, now)
        })?;
        // Sent: the computation has ended, whatever the answer (a failed node may or may not
        // have stored the value; the lock then frees at its TTL).
        self.held.give_up();
        stored.map(|_| ()).map_err(convert::lock_error)
    }

    fn abandon(&self) -> Result<(), api::Error> {
        let abandoned = self.finish(FinishCompute::abandon)?;
        // Sent: ended whatever the answer (a failure leaves the lock to free at its TTL).
        self.held.give_up();
        abandoned.map(|_| ()).map_err(convert::lock_error)
    }
}

impl Drop for Computation {
    fn drop(&mut self) {
        let held = &self.held;
        if held.released.get() {
            return;
        }
        // No network I/O here: the client gives it up at its next call. Marked given up, so
        // the lease's own destructor does not release it either.
        held.give_up();
        if let Ok(mut dropped) = held.shared.dropped.0.try_borrow_mut() {
            dropped.push((held.lock.clone(), held.token.clone()));
        }
    }
}
