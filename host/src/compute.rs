//! Get-or-compute for the Rust API ([`Client::get_or_compute`]): drives the core's
//! [`GetOrLock`] and [`FinishCompute`] machines and runs the caller's closure in between,
//! under a guard that renews the computation's lock.
//!
//! Every decision (what to send, how long a waiter blocks, who computes, what a reply means)
//! is the core's (`core/src/get_or_compute.rs`); this module runs the closure, keeps the
//! lock renewed while it runs, and maps outcomes to [`ComputeError`].
//!
//! Invariant: the closure runs only while this caller holds the lock (a
//! [`Fetched::Computing`] lease, renewed by the guard); its value is stored only by
//! [`FinishCompute::store`], which stores nothing when the lock was lost.

use std::future::Future;
use std::time::Duration;

use distlock_core::{Fetched, FinishCompute, GetOrLock, LockOptions, MAX_VALUE_LEN, Token};

use crate::admin::run;
use crate::client::Client;
use crate::clock::from_std;
use crate::entropy::random_bytes;
use crate::error::Error;
use crate::guard::Guard;

/// How long [`Client::get_or_compute`] waits for another caller's computation, and the TTL
/// of the computation's lock (renewed while the closure runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComputeOptions {
    /// The longest wait for another computer's value (or its lock) before
    /// [`ComputeError::NotAcquired`]. Default 10 s.
    pub wait: Duration,
    /// The computation lock's TTL: a computer that dies is replaced after at most this long.
    /// Default: the core's default lock TTL (30 s).
    pub lock_ttl: Duration,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        ComputeOptions {
            wait: Duration::from_secs(10),
            lock_ttl: crate::clock::to_std(LockOptions::default().ttl),
        }
    }
}

impl ComputeOptions {
    /// Sets [`ComputeOptions::wait`].
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Sets [`ComputeOptions::lock_ttl`].
    #[must_use]
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }
}

/// Why [`Client::get_or_compute`] returned no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComputeError<E> {
    /// The wait ran out while another caller computed (the value is not there yet).
    #[error("the value was not computed within the wait (another caller is computing it)")]
    NotAcquired {
        /// How long the computer's lock had left at the last look, when known.
        holder_ttl: Option<Duration>,
    },
    /// The closure failed; the lock was given up and one waiter computes next.
    #[error("the computation failed: {0}")]
    Compute(E),
    /// The computation's lock was lost while the closure ran (it expired or was reset): the
    /// value was not stored, since another caller may be computing it now.
    #[error("the computation's lock was lost while computing; the value was not stored")]
    LockLost,
    /// The client failed: a node that did not answer, a refusal, bad settings (more than one
    /// node: get-or-compute is single-node; a value over [`MAX_VALUE_LEN`] bytes).
    #[error(transparent)]
    Client(#[from] Error),
}

impl Client {
    /// The value cached under `key`, or the one `compute` returns, stored for `ttl`; with
    /// [`ComputeOptions::default`] (see [`Client::get_or_compute_with`]).
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        compute: F,
    ) -> Result<Vec<u8>, ComputeError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        self.get_or_compute_with(key, ttl, ComputeOptions::default(), compute)
            .await
    }

    /// The value cached under `key`; when it is missing, exactly one caller at a time runs
    /// `compute` (under the lock named `key`, renewed while it runs) and stores its value for
    /// `ttl`, and the others wait up to `options.wait` for that value — not for the lock: a
    /// waiter returns the stored value without ever taking it. A closure that fails gives the
    /// lock up and wakes one waiter, which computes next; a computer that dies is replaced
    /// when its lock expires (`options.lock_ttl`). One node only.
    pub async fn get_or_compute_with<F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        options: ComputeOptions,
        compute: F,
    ) -> Result<Vec<u8>, ComputeError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let lock_options = LockOptions {
            ttl: from_std(options.lock_ttl),
            ..self.default_options()
        };
        let lock = self.lock_spec(key.as_ref(), lock_options)?;
        let token = Token::from_entropy(random_bytes());
        let wait = from_std(options.wait);
        let fetched = run(self.pool(), |servers, now| {
            GetOrLock::new(&lock, token.clone(), servers, wait, now)
        })
        .await
        .map_err(Error::from)?;
        let lease = match fetched {
            Ok(Fetched::Value(value)) => return Ok(value),
            Ok(Fetched::Computing(lease)) => lease,
            Ok(_) => return Err(Error::Lock(distlock_core::Error::Cancelled).into()),
            Err(distlock_core::Error::NotAcquired { holder_ttl, .. }) => {
                return Err(ComputeError::NotAcquired {
                    holder_ttl: holder_ttl.map(crate::clock::to_std),
                });
            }
            Err(e) => return Err(Error::Lock(e).into()),
        };
        let token = lease.token().clone();
        let guard = Guard::new(self.clone(), lock.clone(), lease, true);
        let computed = compute().await;
        // From here on the finish script decides: the guard neither renews nor releases.
        guard.disarm();
        let value = match computed {
            Ok(value) if value.len() <= MAX_VALUE_LEN => value,
            Ok(value) => {
                self.abandon(&lock, &token).await;
                return Err(Error::Config(distlock_core::ConfigError::ValueTooLong {
                    len: value.len(),
                })
                .into());
            }
            Err(e) => {
                self.abandon(&lock, &token).await;
                return Err(ComputeError::Compute(e));
            }
        };
        let value_ttl = from_std(ttl);
        let stored = run(self.pool(), |servers, now| {
            FinishCompute::store(&lock, &token, servers, &value, value_ttl, now)
        })
        .await
        .map_err(Error::from)?;
        match stored {
            Ok(_) => Ok(value),
            Err(distlock_core::Error::NotHeld) => Err(ComputeError::LockLost),
            Err(e) => Err(Error::Lock(e).into()),
        }
    }

    /// Gives a failed computation up (releases its lock, wakes one waiter); a failure here
    /// leaves the lock to expire at its TTL, when the waiters take over anyway.
    async fn abandon(&self, lock: &distlock_core::Lock, token: &Token) {
        let result = run(self.pool(), |servers, now| {
            FinishCompute::abandon(lock, token, servers, now)
        })
        .await
        .map_err(Error::from)
        .and_then(|outcome| outcome.map_err(Error::Lock));
        if let Err(e) = result {
            tracing::warn!(error = %e, "giving up a computation failed; its lock expires at its TTL");
        }
    }
}
