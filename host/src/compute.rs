//! Get-or-compute for the Rust API ([`Client::get_or_compute`], and in two steps
//! [`Client::begin_compute`] → [`Computation`]): drives the core's [`GetOrLock`] and
//! [`FinishCompute`] machines and runs the caller's computation in between, under a guard
//! that renews the computation's lock.
//!
//! Every decision (what to send, how long a waiter blocks, who computes, what a reply means)
//! is the core's (`core/src/get_or_compute.rs`); this module runs the closure, keeps the
//! lock renewed while it runs, and maps outcomes to [`ComputeError`].
//!
//! Invariants: the computation runs only while this caller holds the lock (a
//! [`Fetched::Computing`] lease, renewed by the guard); its value is stored only by
//! [`FinishCompute::store`], which stores nothing when the lock was lost; a [`Computation`]
//! ends once — stored, given up, or (dropped) given up in the background.

use std::future::Future;
use std::time::Duration;

use distlock_core::{Fetched, FinishCompute, GetOrLock, LockOptions, Token};

use crate::admin::{run, run_until};
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
pub enum ComputeError<E = std::convert::Infallible> {
    /// The wait ran out while another caller computed (the value is not there yet).
    #[error("the value was not computed within the wait (another caller is computing it)")]
    NotAcquired {
        /// How many times the value was asked for, the first included.
        attempts: u32,
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
    /// node: get-or-compute is single-node; a value over
    /// [`MAX_VALUE_LEN`](distlock_core::MAX_VALUE_LEN) bytes).
    #[error(transparent)]
    Client(#[from] Error),
}

/// What [`Client::begin_compute`] found: the value, or the computation for this caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Begun {
    /// The cached value (there at once, or stored by the computer this caller waited for).
    Value(Vec<u8>),
    /// This caller computes: while [`Computation::guard`] holds the lock, compute the value,
    /// then [`Computation::store`] it (or [`Computation::abandon`] the computation).
    Compute(Box<Computation>),
}

/// A computation this caller holds the lock for ([`Begun::Compute`]). Its guard renews the
/// lock while the value is computed; [`Computation::store`] stores the value only while the
/// lock is still this caller's. Dropped without either ending, it gives the computation up
/// in the background (as [`Computation::abandon`] does), so one waiter computes next.
#[derive(Debug)]
pub struct Computation {
    client: Client,
    lock: distlock_core::Lock,
    token: Token,
    /// `None` once the computation ended (stored or given up).
    guard: Option<Guard>,
}

impl Computation {
    /// The computation's lock: its token, validity and loss ([`Guard::lost`]) — stop
    /// computing when it is lost, since the value will not be stored.
    ///
    /// # Panics
    ///
    /// Never: the guard is taken only by the calls that consume the computation.
    pub fn guard(&self) -> &Guard {
        self.guard
            .as_ref()
            .expect("a computation keeps its guard until it ends")
    }

    /// Stores `value` under the key for `ttl`, wakes every waiter, and releases the lock —
    /// all in one script, and only while this caller's token holds the lock.
    ///
    /// # Errors
    ///
    /// [`ComputeError::LockLost`] when the lock was lost (nothing stored: another caller may
    /// be computing now); a value over [`MAX_VALUE_LEN`](distlock_core::MAX_VALUE_LEN) bytes
    /// ([`ConfigError::ValueTooLong`](distlock_core::ConfigError::ValueTooLong)) or a TTL the
    /// core refuses ([`ConfigError::BadTtl`](distlock_core::ConfigError::BadTtl)): nothing
    /// stored, the computation given up, as [`FinishCompute::check_store`] rules;
    /// [`ComputeError::Client`] when the node failed.
    pub async fn store(mut self, value: &[u8], ttl: Duration) -> Result<(), ComputeError> {
        if let Some(guard) = self.guard.take() {
            // From here on the finish script decides: the guard neither renews nor releases.
            guard.disarm();
        }
        // The core's rule, checked before anything is sent: a refused value or TTL gives the
        // computation up at once (a waiter computes next), nothing stored.
        if let Err(refused) = FinishCompute::check_store(value, from_std(ttl)) {
            self.client.abandon(&self.lock, &self.token).await;
            return Err(Error::Config(refused).into());
        }
        let (lock, token) = (&self.lock, &self.token);
        let stored = run(self.client.pool(), |servers, now| {
            FinishCompute::store(lock, token, servers, value, from_std(ttl), now)
        })
        .await
        .map_err(Error::from)?;
        match stored {
            Ok(_) => Ok(()),
            Err(distlock_core::Error::NotHeld) => Err(ComputeError::LockLost),
            Err(e) => Err(Error::Lock(e).into()),
        }
    }

    /// Gives the computation up: releases its lock and wakes one waiter, which computes next.
    /// A failure here leaves the lock to expire at its TTL, when the waiters take over anyway.
    pub async fn abandon(mut self) {
        if let Some(guard) = self.guard.take() {
            guard.disarm();
        }
        self.client.abandon(&self.lock, &self.token).await;
    }

    /// [`Computation::abandon`], saying how it went: `Err(`[`distlock_core::Error::NotHeld`]`)`
    /// when the lock was no longer this computation's (nothing to give up).
    #[cfg(feature = "component")]
    pub(crate) async fn give_up(mut self) -> Result<(), Error> {
        if let Some(guard) = self.guard.take() {
            guard.disarm();
        }
        self.client.give_up(&self.lock, &self.token).await
    }
}

impl Drop for Computation {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        guard.disarm();
        let (client, lock, token) = (self.client.clone(), self.lock.clone(), self.token.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { client.abandon(&lock, &token).await });
            }
            Err(_) => tracing::warn!(
                "computation dropped outside a tokio runtime: its lock expires at its TTL"
            ),
        }
    }
}

impl ComputeError {
    /// The same error for a computation whose own errors are `E` (an error of
    /// [`Client::begin_compute`] or [`Computation::store`] has none of its own).
    fn widen<E>(self) -> ComputeError<E> {
        match self {
            ComputeError::NotAcquired {
                attempts,
                holder_ttl,
            } => ComputeError::NotAcquired {
                attempts,
                holder_ttl,
            },
            ComputeError::Compute(never) => match never {},
            ComputeError::LockLost => ComputeError::LockLost,
            ComputeError::Client(e) => ComputeError::Client(e),
        }
    }
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
        let computation = match self
            .begin_compute(key, options)
            .await
            .map_err(ComputeError::widen)?
        {
            Begun::Value(value) => return Ok(value),
            Begun::Compute(computation) => computation,
        };
        match compute().await {
            Ok(value) => {
                computation
                    .store(&value, ttl)
                    .await
                    .map_err(ComputeError::widen)?;
                Ok(value)
            }
            Err(e) => {
                computation.abandon().await;
                Err(ComputeError::Compute(e))
            }
        }
    }

    /// Get-or-compute in two steps, for a computation that is not a closure (a process, a
    /// job on another task): the value cached under `key` ([`Begun::Value`], after waiting
    /// up to `options.wait` for another caller's computation), or this caller's turn to
    /// compute it ([`Begun::Compute`]), holding the lock named `key`, renewed until the
    /// [`Computation`] is stored or given up. One node only.
    ///
    /// # Errors
    ///
    /// [`ComputeError::NotAcquired`] when the wait ran out while another caller computed;
    /// [`ComputeError::Client`] for a refusal before anything is sent (Redlock, a Python key
    /// layout, scripts off: [`ConfigError::ComputeUnsupported`](
    /// distlock_core::ConfigError::ComputeUnsupported)) or a node that failed.
    pub async fn begin_compute(
        &self,
        key: impl AsRef<[u8]>,
        options: ComputeOptions,
    ) -> Result<Begun, ComputeError> {
        let lock_options = self.compute_lock_options(options);
        self.begin_compute_cancellable(key.as_ref(), lock_options, options.wait, true, None)
            .await
    }

    /// [`Client::begin_compute`], given up when `cancel` completes first (a signal, a
    /// shutdown): then [`distlock_core::Error::Cancelled`] (in [`ComputeError::Client`]). A
    /// lock taken by a reply still in flight when it was cancelled expires at its TTL.
    pub async fn begin_compute_until(
        &self,
        key: impl AsRef<[u8]>,
        options: ComputeOptions,
        cancel: impl Future<Output = ()> + Send,
    ) -> Result<Begun, ComputeError> {
        let lock_options = self.compute_lock_options(options);
        let cancel = Some(Box::pin(cancel) as _);
        self.begin_compute_cancellable(key.as_ref(), lock_options, options.wait, true, cancel)
            .await
    }

    /// [`Client::begin_compute`] for a holder that renews by hand (a WebAssembly guest's
    /// `computation.renew`, one [`Guard::renew_due`] at a time): the computation's lock is
    /// taken with `options` (its TTL, and the settings the core checks), and no background
    /// task renews it.
    #[cfg(feature = "component")]
    pub(crate) async fn begin_compute_renewed_by_hand(
        &self,
        key: &[u8],
        options: LockOptions,
        wait: Duration,
    ) -> Result<Begun, ComputeError> {
        self.begin_compute_cancellable(key, options, wait, false, None)
            .await
    }

    /// The client's lock options with the computation lock's TTL.
    fn compute_lock_options(&self, options: ComputeOptions) -> LockOptions {
        LockOptions {
            ttl: from_std(options.lock_ttl),
            ..self.default_options()
        }
    }

    async fn begin_compute_cancellable(
        &self,
        key: &[u8],
        lock_options: LockOptions,
        wait: Duration,
        auto_renew: bool,
        cancel: crate::drive::Cancel<'_>,
    ) -> Result<Begun, ComputeError> {
        let lock = self.lock_spec(key, lock_options)?;
        let token = Token::from_entropy(random_bytes());
        let wait = from_std(wait);
        let fetched = run_until(
            self.pool(),
            |servers, now| GetOrLock::new(&lock, token.clone(), servers, wait, now),
            cancel,
        )
        .await
        .map_err(Error::from)?;
        let lease = match fetched {
            Ok(Fetched::Value(value)) => return Ok(Begun::Value(value)),
            Ok(Fetched::Computing(lease)) => lease,
            Ok(_) => return Err(Error::Lock(distlock_core::Error::Cancelled).into()),
            Err(distlock_core::Error::NotAcquired {
                attempts,
                holder_ttl,
            }) => {
                return Err(ComputeError::NotAcquired {
                    attempts,
                    holder_ttl: holder_ttl.map(crate::clock::to_std),
                });
            }
            Err(e) => return Err(Error::Lock(e).into()),
        };
        let token = lease.token().clone();
        let guard = Guard::new(self.clone(), lock.clone(), lease, auto_renew);
        Ok(Begun::Compute(Box::new(Computation {
            client: self.clone(),
            lock,
            token,
            guard: Some(guard),
        })))
    }

    /// Gives a failed computation up (releases its lock, wakes one waiter); a failure here
    /// leaves the lock to expire at its TTL, when the waiters take over anyway.
    async fn abandon(&self, lock: &distlock_core::Lock, token: &Token) {
        match self.give_up(lock, token).await {
            Ok(_) => {}
            // The lock is no longer this caller's: there is nothing to give up.
            Err(Error::Lock(distlock_core::Error::NotHeld)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "giving up a computation failed; its lock expires at its TTL");
            }
        }
    }

    /// Gives up the computation `token` holds the lock of: releases the lock and wakes one
    /// waiter; `Err(`[`distlock_core::Error::NotHeld`]`)` when the token no longer held it.
    async fn give_up(&self, lock: &distlock_core::Lock, token: &Token) -> Result<(), Error> {
        run(self.pool(), |servers, now| {
            FinishCompute::abandon(lock, token, servers, now)
        })
        .await
        .map_err(Error::from)
        .and_then(|outcome| outcome.map(|_| ()).map_err(Error::Lock))
    }

    /// Gives up the computation of `name` whose lock `token` holds (a computation a guest
    /// left behind: only its name, token and options are known), taken with `options`.
    #[cfg(feature = "component")]
    pub(crate) async fn give_up_computation(
        &self,
        name: &str,
        token: &str,
        options: LockOptions,
    ) -> Result<(), Error> {
        let lock = self.lock_spec(name.as_bytes(), options)?;
        let token = Token::new(token.as_bytes())?;
        self.give_up(&lock, &token).await
    }
}
