//! The Rust API for code without an async runtime: each call blocks on a runtime this
//! module owns.
//!
//! ```no_run
//! use std::time::Duration;
//! let client = distlock_host::blocking::Client::connect(["redis://127.0.0.1:6379"])?;
//! let guard = client.lock("nightly-report").wait(Duration::from_secs(10)).acquire()?;
//! // … the critical section …
//! guard.release()?;
//! # Ok::<(), distlock_host::Error>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use distlock_core::Released;
use tokio::runtime::Runtime;

use crate::error::Error;

fn runtime() -> Result<Arc<Runtime>, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map(Arc::new)
        .map_err(|source| Error::Connect {
            endpoint: "runtime".into(),
            source,
        })
}

/// A blocking [`crate::Client`].
#[derive(Clone, Debug)]
pub struct Client {
    runtime: Arc<Runtime>,
    inner: crate::Client,
}

impl Client {
    /// See [`crate::Client::connect`].
    pub fn connect<I, S>(urls: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let runtime = runtime()?;
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let inner = runtime.block_on(crate::Client::connect(urls))?;
        Ok(Client { runtime, inner })
    }

    /// See [`crate::Client::connect_with`]: connection options and a key layout.
    pub fn connect_with<I, S>(
        urls: I,
        connect: crate::ConnectOptions,
        layout: crate::KeyLayout,
    ) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let runtime = runtime()?;
        let urls: Vec<String> = urls.into_iter().map(|u| u.as_ref().to_owned()).collect();
        let inner = runtime.block_on(crate::Client::connect_with(urls, connect, layout))?;
        Ok(Client { runtime, inner })
    }

    /// See [`crate::Client::embedded`].
    pub fn embedded() -> Result<Client, Error> {
        let runtime = runtime()?;
        let inner = {
            let _entered = runtime.enter();
            crate::Client::embedded()
        };
        Ok(Client { runtime, inner })
    }

    /// See [`crate::Client::with_scripts`].
    #[must_use]
    pub fn with_scripts(self, scripts: crate::Scripts) -> Client {
        Client {
            runtime: self.runtime,
            inner: self.inner.with_scripts(scripts),
        }
    }

    /// See [`crate::Client::durable`]: every lease confirmed by `durability`'s replicas.
    pub fn durable(self, durability: crate::Durability) -> Result<Client, Error> {
        Ok(Client {
            inner: self.inner.durable(durability)?,
            ..self
        })
    }

    /// See [`crate::Client::settle_releases`].
    pub fn settle_releases(&self) {
        self.runtime.block_on(self.inner.settle_releases());
    }

    /// See [`crate::Client::pipelined_releases`].
    #[must_use]
    pub fn pipelined_releases(&self) -> crate::PipelinedReleases {
        self.inner.pipelined_releases()
    }

    /// See [`crate::Client::lock`].
    pub fn lock(&self, name: impl AsRef<[u8]>) -> LockBuilder {
        LockBuilder {
            runtime: Arc::clone(&self.runtime),
            inner: self.inner.lock(name),
        }
    }

    /// See [`crate::Client::semaphore`].
    pub fn semaphore(&self, name: impl AsRef<[u8]>, limit: u32) -> LockBuilder {
        LockBuilder {
            runtime: Arc::clone(&self.runtime),
            inner: self.inner.semaphore(name, limit),
        }
    }

    /// See [`crate::Client::lock_many`].
    pub fn lock_many<N: AsRef<[u8]>>(&self, names: impl IntoIterator<Item = N>) -> LockBuilder {
        LockBuilder {
            runtime: Arc::clone(&self.runtime),
            inner: self.inner.lock_many(names),
        }
    }

    /// See [`crate::Client::read_lock`].
    pub fn read_lock(&self, name: impl AsRef<[u8]>) -> LockBuilder {
        LockBuilder {
            runtime: Arc::clone(&self.runtime),
            inner: self.inner.read_lock(name),
        }
    }

    /// See [`crate::Client::write_lock`].
    pub fn write_lock(&self, name: impl AsRef<[u8]>) -> LockBuilder {
        LockBuilder {
            runtime: Arc::clone(&self.runtime),
            inner: self.inner.write_lock(name),
        }
    }

    /// See [`crate::Client::get_or_compute_with`]: the cached value under `key`, or the one
    /// `compute` returns (run by one caller at a time, the others wait for its value).
    pub fn get_or_compute<E>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        options: crate::ComputeOptions,
        compute: impl FnOnce() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, crate::ComputeError<E>> {
        self.runtime.block_on(
            self.inner
                .get_or_compute_with(key, ttl, options, || async { compute() }),
        )
    }

    /// See [`crate::Client::begin_compute`]: the cached value under `key`, or this caller's
    /// [`Computation`] of it.
    pub fn begin_compute(
        &self,
        key: impl AsRef<[u8]>,
        options: crate::ComputeOptions,
    ) -> Result<Begun, crate::ComputeError> {
        Ok(
            match self
                .runtime
                .block_on(self.inner.begin_compute(key, options))?
            {
                crate::Begun::Value(value) => Begun::Value(value),
                crate::Begun::Compute(inner) => Begun::Compute(Computation {
                    runtime: Arc::clone(&self.runtime),
                    inner: Some(inner),
                }),
            },
        )
    }

    /// See [`crate::Client::release`].
    pub fn release(&self, name: impl AsRef<[u8]>, token: &str) -> Result<Released, Error> {
        self.runtime
            .block_on(self.inner.release(name, token, false))
    }
}

/// A blocking [`crate::LockBuilder`].
#[derive(Debug)]
#[must_use]
pub struct LockBuilder {
    runtime: Arc<Runtime>,
    inner: crate::LockBuilder,
}

impl LockBuilder {
    /// See [`crate::LockBuilder::ttl`].
    pub fn ttl(self, ttl: Duration) -> Self {
        LockBuilder {
            inner: self.inner.ttl(ttl),
            ..self
        }
    }

    /// See [`crate::LockBuilder::wait`].
    pub fn wait(self, wait: Duration) -> Self {
        LockBuilder {
            inner: self.inner.wait(wait),
            ..self
        }
    }

    /// See [`crate::LockBuilder::fenced`].
    pub fn fenced(self, on: bool) -> Self {
        LockBuilder {
            inner: self.inner.fenced(on),
            ..self
        }
    }

    /// See [`crate::LockBuilder::auto_renew`].
    pub fn auto_renew(self, on: bool) -> Self {
        LockBuilder {
            inner: self.inner.auto_renew(on),
            ..self
        }
    }

    /// See [`crate::LockBuilder::acquire`].
    pub fn acquire(self) -> Result<Guard, Error> {
        let guard = self.runtime.block_on(self.inner.acquire())?;
        Ok(Guard {
            runtime: self.runtime,
            inner: Some(guard),
        })
    }

    /// See [`crate::LockBuilder::try_acquire`].
    pub fn try_acquire(self) -> Result<Guard, Error> {
        let guard = self.runtime.block_on(self.inner.try_acquire())?;
        Ok(Guard {
            runtime: self.runtime,
            inner: Some(guard),
        })
    }
}

/// What [`Client::begin_compute`] found (see [`crate::Begun`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Begun {
    /// The cached value.
    Value(Vec<u8>),
    /// This caller computes: then [`Computation::store`] or [`Computation::abandon`].
    Compute(Computation),
}

/// A blocking [`crate::Computation`]; dropping it unfinished gives the computation up before
/// returning (one waiter computes next).
#[derive(Debug)]
#[must_use = "dropping a computation gives it up at once"]
pub struct Computation {
    runtime: Arc<Runtime>,
    inner: Option<Box<crate::Computation>>,
}

impl Computation {
    fn computation(&self) -> &crate::Computation {
        // Only `store`, `abandon` and `drop` take it, and they consume `self`.
        self.inner
            .as_ref()
            .expect("computation present until it ends")
    }

    /// The computation lock's token.
    #[must_use]
    pub fn token(&self) -> &str {
        self.computation().guard().token()
    }

    /// How long the computation's lock is still valid (renewed in the background).
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.computation().guard().validity()
    }

    /// Whether the computation's lock is still held: when not, stop computing (the value
    /// would not be stored).
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.computation().guard().is_held()
    }

    /// See [`crate::Computation::store`].
    pub fn store(mut self, value: &[u8], ttl: Duration) -> Result<(), crate::ComputeError> {
        let inner = self
            .inner
            .take()
            .expect("computation present until it ends");
        self.runtime.block_on(inner.store(value, ttl))
    }

    /// See [`crate::Computation::abandon`].
    pub fn abandon(mut self) {
        if let Some(inner) = self.inner.take() {
            self.runtime.block_on(inner.abandon());
        }
    }
}

impl Drop for Computation {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            self.runtime.block_on(inner.abandon());
        }
    }
}

/// A blocking [`crate::Guard`]; dropping it releases the lock before returning.
#[derive(Debug)]
#[must_use = "dropping a guard releases the lock at once"]
pub struct Guard {
    runtime: Arc<Runtime>,
    inner: Option<crate::Guard>,
}

impl Guard {
    fn guard(&self) -> &crate::Guard {
        // Only `release` and `drop` take the inner guard, and both consume `self`.
        self.inner.as_ref().expect("guard present until release")
    }

    /// See [`crate::Guard::token`].
    #[must_use]
    pub fn token(&self) -> &str {
        self.guard().token()
    }

    /// See [`crate::Guard::fence`].
    #[must_use]
    pub fn fence(&self) -> Option<u64> {
        self.guard().fence()
    }

    /// See [`crate::Guard::validity`].
    #[must_use]
    pub fn validity(&self) -> Duration {
        self.guard().validity()
    }

    /// See [`crate::Guard::is_held`].
    #[must_use]
    pub fn is_held(&self) -> bool {
        self.guard().is_held()
    }

    /// See [`crate::Guard::extend`].
    pub fn extend(&self, ttl: Duration) -> Result<Duration, Error> {
        self.runtime.block_on(self.guard().extend(ttl))
    }

    /// See [`crate::Guard::release`].
    pub fn release(mut self) -> Result<Released, Error> {
        let guard = self.inner.take().expect("guard present until release");
        self.runtime.block_on(guard.release())
    }

    /// See [`crate::Guard::release_pipelined`]: the release is sent, not done; its reply is
    /// read in the background (the client's runtime has a worker thread of its own), or by
    /// the client's next operation; [`Client::settle_releases`] waits for it.
    pub fn release_pipelined(mut self) -> Result<(), Error> {
        let guard = self.inner.take().expect("guard present until release");
        self.runtime.block_on(guard.release_pipelined())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(guard) = self.inner.take() {
            let _ = self.runtime.block_on(guard.release());
        }
    }
}
