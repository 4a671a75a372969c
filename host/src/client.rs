//! The Rust API: a [`Client`] over one node or a Redlock quorum, and [`LockBuilder`] for each
//! acquire. The client holds the node pool ([`Pool`]) and the key layout; it builds the
//! core's machines for an operation and drives them over the pool's connections.
//!
//! The [`Guard`](crate::Guard) an acquire gives, and the acquire itself, are in `guard.rs`:
//! the guard extends and releases through this module, never the other way round.

use std::sync::Arc;
use std::time::Duration;

use distlock_core::RwMode;
use distlock_core::{
    ConfigError, Durability, Extend, Extended, KeyLayout, Lock, LockOptions, Release, Released,
    RetryPolicy, Scripts, ServerInfo, Token,
};
use distlock_core::{Machine, Operation};

use crate::MAX_NODES;
use crate::clock::{Clock, from_std};
use crate::conn::ConnectOptions;
use crate::drive::{Cancel, Slot, drive, in_step, return_slots, settle, take_slots};
use crate::endpoint::Endpoint;
use crate::entropy::random_u64;
use crate::error::Error;
use crate::pool::{Claim, Pool};
use crate::release_check::{OwedReply, ReleaseReports};
use crate::straggler::Stragglers;

/// The node capacity of a single-node client's machines. A machine has room for `N` nodes
/// (each ~624 bytes, most of it the reply framer: BENCHMARKS.md "State machine sizes"), and
/// every operation builds one and carries it in its future, which each level that awaits it
/// copies whole (those copies led the host's CPU per lock pair: BENCHMARKS.md "The native
/// host's CPU per lock pair"). Sized for the one node a single-node client has, it is a
/// third of one sized for [`MAX_NODES`]. Which capacity a client's machines get changes
/// nothing of what they send or decide.
pub(crate) const ONE_NODE: usize = 1;

/// A handle on the lock service: one Redis node, N nodes for Redlock, or the embedded
/// in-process store. Cheap to clone; connections are pooled per node.
///
/// ```no_run
/// # async fn f() -> Result<(), distlock_host::Error> {
/// use std::time::Duration;
/// let client = distlock_host::Client::connect(["redis://127.0.0.1:6379"]).await?;
/// let guard = client.lock("nightly-report").ttl(Duration::from_secs(30)).wait(Duration::from_secs(10)).acquire().await?;
/// // … the critical section; pass guard.fence() to the resource if the lock is fenced …
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pool: Arc<Pool>,
    layout: Arc<KeyLayout>,
    scripts: Scripts,
    /// Replica-durable leases ([`Client::durable`]).
    durable: Option<Durability>,
    /// How its pipelined releases were confirmed (shared by its clones).
    releases: Arc<ReleaseReports>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes = self.pool.endpoints();
        f.debug_struct("Client").field("nodes", &nodes).finish()
    }
}

impl Client {
    /// Connects to the nodes at `urls` (one URL: a single node; several: Redlock over them).
    /// With no URL at all, uses the embedded in-process store ([`Client::embedded`]). Fails
    /// when fewer nodes than a quorum answer.
    pub async fn connect<I, S>(urls: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::connect_with(urls, ConnectOptions::default(), KeyLayout::default()).await
    }

    /// [`Client::connect`] with connection options and a key layout.
    ///
    /// The layout decides which keys hold a lock ([`KeyLayout`]): the default tagged one, or
    /// exactly the keys of a Python lock library, so that distlock and that library exclude
    /// each other on the same names while users move from one to the other.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), distlock_host::Error> {
    /// use std::time::Duration;
    /// use distlock_host::{Client, ConnectOptions, KeyLayout};
    ///
    /// // Python processes lock with `redis_lock.Lock(conn, "invoices", expire=60)`: the key
    /// // `lock:invoices`, and releases push to `lock-signal:invoices`, which wakes us too.
    /// let client = Client::connect_with(
    ///     ["redis://127.0.0.1:6379"],
    ///     ConnectOptions::default(),
    ///     KeyLayout::python_redis_lock(),
    /// )
    /// .await?;
    /// let guard = client.lock("invoices").ttl(Duration::from_secs(60)).wait(Duration::from_secs(10)).acquire().await?;
    /// guard.release().await?; // wakes a Python waiter blocked in `acquire()`
    ///
    /// // redis-py's `redis.Redis().lock("invoices")` is the key `invoices` itself.
    /// let client = Client::connect_with(
    ///     ["redis://127.0.0.1:6379"],
    ///     ConnectOptions::default(),
    ///     KeyLayout::redis_py(),
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with<I, S>(
        urls: I,
        connect: ConnectOptions,
        layout: KeyLayout,
    ) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = urls
            .into_iter()
            .map(|u| u.as_ref().parse::<Endpoint>())
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Ok(Self::embedded_with(layout));
        }
        if endpoints.len() > MAX_NODES {
            return Err(Error::TooManyNodes(endpoints.len()));
        }
        let pool = Pool::connect(endpoints, connect).await?;
        Ok(Client::over(pool, layout))
    }

    /// The embedded in-process store: the same lock semantics with no server, for demos,
    /// tests and locks between the tasks and threads of **one process only**.
    #[must_use]
    pub fn embedded() -> Client {
        Self::embedded_with(KeyLayout::default())
    }

    fn embedded_with(layout: KeyLayout) -> Client {
        Client::over(Pool::embedded(), layout)
    }

    fn over(pool: Arc<Pool>, layout: KeyLayout) -> Client {
        Client {
            pool,
            layout: Arc::new(layout),
            scripts: Scripts::Auto,
            durable: None,
            releases: Arc::default(),
        }
    }

    /// Makes every lease of this client replica-durable: after each acquire and extend, the
    /// same connection sends `WAIT replicas timeout` (`WAITAOF 1 replicas timeout` with
    /// [`Durability::with_aof`]), and the lease is reported only when the server says enough
    /// replicas acknowledged it, within the timeout and the lease's validity (which still
    /// counts from the acquire's start). An acquire whose lease was not confirmed releases it
    /// and fails with [`Error::NotDurable`]; an extend not confirmed fails the same way and
    /// leaves the validity where the last confirmed one put it. A server that refuses `WAIT`
    /// fails every acquire with that refusal, never a silent downgrade. `WAIT` is not strong
    /// consistency: see the README's "Sentinel" section.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (`ConfigError::Durability`) for a client over several nodes:
    /// Redlock's quorum of independent primaries is its own durability.
    pub fn durable(mut self, durability: Durability) -> Result<Client, Error> {
        if self.pool.len() != 1 {
            return Err(ConfigError::Durability.into());
        }
        self.durable = Some(durability);
        Ok(self)
    }

    /// The same client, whose locks, releases and extends run Lua scripts as `scripts` says
    /// (default [`Scripts::Auto`]). [`Scripts::Never`] runs on native commands alone: it
    /// needs Valkey ≥ 9.0 or Redis ≥ 8.4 on every node, refuses fenced, reentrant and fair
    /// locks ([`ConfigError::NeedsScripts`]) and servers without the commands
    /// ([`ConfigError::MissingNativeCommand`]), and never sends `EVAL`. See "Servers without
    /// scripts" in the README.
    #[must_use]
    pub fn with_scripts(mut self, scripts: Scripts) -> Client {
        self.scripts = scripts;
        self
    }

    /// How many nodes (1: single node; more: Redlock).
    #[must_use]
    pub fn nodes(&self) -> usize {
        self.pool.len()
    }

    /// Whether this client runs on the embedded in-process store.
    #[must_use]
    pub fn is_embedded(&self) -> bool {
        self.pool.is_embedded()
    }

    /// Starts building an acquire of the lock `name`.
    pub fn lock(&self, name: impl AsRef<[u8]>) -> LockBuilder {
        LockBuilder {
            client: self.clone(),
            name: name.as_ref().to_vec(),
            options: LockOptions {
                scripts: self.scripts,
                ..LockOptions::default()
            },
            wait: Duration::ZERO,
            auto_renew: false,
            token: None,
            limit: None,
            rw: None,
            names: None,
        }
    }

    /// Starts building an acquire of several names at once, all or nothing, under one token:
    /// the guard holds every name or none, and renews and releases them together. Each name
    /// is held as [`Client::lock`] holds it, so a plain lock of one of the names and this one
    /// exclude each other. The names are sorted before anything is sent; 1 to
    /// [`distlock_core::MAX_MULTI_NAMES`] of them, none twice (else the acquire fails with
    /// [`ConfigError::NoNames`], [`ConfigError::TooManyNames`] or
    /// [`ConfigError::DuplicateName`] before anything is sent). The tagged key layout, not
    /// reentrant or fair ([`ConfigError::MultiUnsupported`]); on a Redis Cluster the names
    /// must share a hash tag (`{orders}:1`, `{orders}:2`), else [`Error::SpansSlots`]. A
    /// fenced acquire gives one fence, larger than every earlier holder's of each name. See
    /// "Multi-name locks" in the README.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), distlock_host::Error> {
    /// use std::time::Duration;
    /// let client = distlock_host::Client::connect(["redis://127.0.0.1:6379"]).await?;
    /// let both = client.lock_many(["account:17", "account:42"]).wait(Duration::from_secs(10)).acquire().await?;
    /// // … move money between the two accounts: nobody holds either …
    /// both.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn lock_many<N: AsRef<[u8]>>(&self, names: impl IntoIterator<Item = N>) -> LockBuilder {
        let names: Vec<Vec<u8>> = names.into_iter().map(|n| n.as_ref().to_vec()).collect();
        LockBuilder {
            names: Some(names),
            ..self.lock(Vec::new())
        }
    }

    /// Starts building an acquire of a read hold of the read-write lock `name`: any number
    /// of readers at once, never beside a writer, and never past a writer that waits (writer
    /// preference: a stream of readers cannot starve a writer). Each read hold is a lease of
    /// its own (token, TTL, renewal, release); a reader that dies frees its hold when its own
    /// TTL runs out, and one reader's renewal never extends another's. A fenced read reports
    /// the fence of the last write granted before it (0 before any). A name is a lock, a
    /// semaphore or a read-write lock ([`distlock_core::ServerErrorKind::WrongType`]). One
    /// node and the tagged key layout, not reentrant or fair (else the acquire fails with
    /// [`ConfigError::RwLockUnsupported`] before anything is sent). See "Read-write locks"
    /// in the README.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), distlock_host::Error> {
    /// let client = distlock_host::Client::connect(["redis://127.0.0.1:6379"]).await?;
    /// let read = client.read_lock("catalog").auto_renew(true).acquire().await?;
    /// // … any number of readers, no writer …
    /// read.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn read_lock(&self, name: impl AsRef<[u8]>) -> LockBuilder {
        LockBuilder {
            rw: Some(RwMode::Read),
            ..self.lock(name)
        }
    }

    /// Starts building an acquire of the write hold of the read-write lock `name`: one
    /// writer, no reader. While it waits it turns new readers away, so it gets in once the
    /// read holds already there end. A fenced write takes the name's next fence. See
    /// [`Client::read_lock`] for the rest.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), distlock_host::Error> {
    /// use std::time::Duration;
    /// let client = distlock_host::Client::connect(["redis://127.0.0.1:6379"]).await?;
    /// let write = client.write_lock("catalog").fenced(true).wait(Duration::from_secs(30)).acquire().await?;
    /// // … alone: no reader, no other writer …
    /// write.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn write_lock(&self, name: impl AsRef<[u8]>) -> LockBuilder {
        LockBuilder {
            rw: Some(RwMode::Write),
            ..self.lock(name)
        }
    }

    /// Starts building an acquire of one of `limit` permits of the semaphore `name`: at most
    /// `limit` guards of that name are held at once, each a lease of its own (token, TTL,
    /// renewal, release), and a holder that dies frees its permit when its TTL runs out.
    /// Every client of the name must pass the same limit while any permit lives (else
    /// [`distlock_core::ServerErrorKind::WrongLimit`]), and a name is either a lock or a
    /// semaphore ([`distlock_core::ServerErrorKind::WrongType`]). One node and the tagged
    /// key layout; `limit` in `1..=`[`distlock_core::MAX_PERMITS`] (else the acquire fails
    /// with [`ConfigError::BadLimit`] or [`ConfigError::SemaphoreUnsupported`] before
    /// anything is sent). With [`LockBuilder::fair`], waiters queue in arrival order and a
    /// release hands its permit straight to the first live waiter (no newcomer takes it
    /// first). See "Semaphores" in the README.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), distlock_host::Error> {
    /// use std::time::Duration;
    /// let client = distlock_host::Client::connect(["redis://127.0.0.1:6379"]).await?;
    /// let permit = client.semaphore("encoders", 4).ttl(Duration::from_secs(30)).auto_renew(true).wait(Duration::from_secs(60)).acquire().await?;
    /// // … at most four of these sections run at once …
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: impl AsRef<[u8]>, limit: u32) -> LockBuilder {
        LockBuilder {
            limit: Some(limit),
            ..self.lock(name)
        }
    }

    /// Releases `name` held by `token` (printed by [`Guard::token`](crate::Guard::token),
    /// possibly in another process).
    pub async fn release(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        reentrant: bool,
    ) -> Result<Released, Error> {
        self.release_with(
            name,
            token,
            LockOptions {
                reentrant,
                scripts: self.scripts,
                ..LockOptions::default()
            },
        )
        .await
    }

    /// [`Client::release`] of a lock acquired with `options` (its `reentrant` and `fair`
    /// matter): a fair lock's release hands it to the first live waiter. A fair lock
    /// released without `fair` is still freed; its first waiter then takes it within one
    /// cycle (half the request timeout) instead of at once.
    pub async fn release_with(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        options: LockOptions,
    ) -> Result<Released, Error> {
        self.release_by_token(name.as_ref(), Shape::Lock, token, options)
            .await
    }

    /// Gives back the permit `token` holds of the semaphore `name` of `limit` permits
    /// (printed by [`Guard::token`](crate::Guard::token), possibly in another process), and
    /// wakes one waiter.
    pub async fn release_permit(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        limit: u32,
    ) -> Result<Released, Error> {
        let options = self.default_options();
        self.release_by_token(name.as_ref(), Shape::Semaphore(limit), token, options)
            .await
    }

    /// [`Client::release_permit`] of a permit acquired with `options` (its `fair` matters): a
    /// fair semaphore's release hands the permit to the first live waiter. Released without
    /// `fair`, the permit is still given back; the first waiter then takes it within one
    /// cycle (half the request timeout) instead of at once.
    pub async fn release_permit_with(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        limit: u32,
        options: LockOptions,
    ) -> Result<Released, Error> {
        self.release_by_token(name.as_ref(), Shape::Semaphore(limit), token, options)
            .await
    }

    /// Extends the permit `token` holds of the semaphore `name` of `limit` permits to `ttl`
    /// from now.
    pub async fn extend_permit(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        ttl: Duration,
        limit: u32,
    ) -> Result<Extended, Error> {
        self.extend_by_token(name.as_ref(), Shape::Semaphore(limit), token, ttl)
            .await
    }

    /// Gives back the `mode` hold `token` has of the read-write lock `name` (printed by
    /// [`Guard::token`](crate::Guard::token), possibly in another process), waking whoever can
    /// proceed.
    pub async fn release_rw(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        mode: RwMode,
    ) -> Result<Released, Error> {
        let options = self.default_options();
        self.release_by_token(name.as_ref(), Shape::Rw(mode), token, options)
            .await
    }

    /// Extends the `mode` hold `token` has of the read-write lock `name` to `ttl` from now
    /// (only that hold: another reader's is never moved).
    pub async fn extend_rw(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        ttl: Duration,
        mode: RwMode,
    ) -> Result<Extended, Error> {
        self.extend_by_token(name.as_ref(), Shape::Rw(mode), token, ttl)
            .await
    }

    /// Extends `name` held by `token` to `ttl` from now.
    pub async fn extend(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        ttl: Duration,
    ) -> Result<Extended, Error> {
        self.extend_by_token(name.as_ref(), Shape::Lock, token, ttl)
            .await
    }

    /// Releases every one of `names` that `token` holds (taken together by
    /// [`Client::lock_many`]; the token printed by [`Guard::token`](crate::Guard::token),
    /// possibly in another process), waking each name's waiters. The names in any order;
    /// refused as [`Client::lock_many`] refuses them. [`distlock_core::Error::NotHeld`] (in
    /// [`Error::Lock`]) when the token holds none of them.
    pub async fn release_many<N: AsRef<[u8]>>(
        &self,
        names: &[N],
        token: &str,
    ) -> Result<Released, Error> {
        self.release_many_with(names, token, self.default_options())
            .await
    }

    /// [`Client::release_many`] with the options the names were acquired with.
    pub async fn release_many_with<N: AsRef<[u8]>>(
        &self,
        names: &[N],
        token: &str,
        options: LockOptions,
    ) -> Result<Released, Error> {
        let names: Vec<Vec<u8>> = names.iter().map(|n| n.as_ref().to_vec()).collect();
        self.release_by_token(&[], Shape::Multi(&names), token, options)
            .await
    }

    /// Extends every one of `names` that `token` holds (taken together by
    /// [`Client::lock_many`]) to `ttl` from now: all of them, or none when the token does
    /// not hold every one.
    pub async fn extend_many<N: AsRef<[u8]>>(
        &self,
        names: &[N],
        token: &str,
        ttl: Duration,
    ) -> Result<Extended, Error> {
        let names: Vec<Vec<u8>> = names.iter().map(|n| n.as_ref().to_vec()).collect();
        self.extend_by_token(&[], Shape::Multi(&names), token, ttl)
            .await
    }

    /// The lock options of a by-token call: the defaults, with this client's scripts.
    pub(crate) fn default_options(&self) -> LockOptions {
        LockOptions {
            scripts: self.scripts,
            ..LockOptions::default()
        }
    }

    /// Releases the `shape` of `name` that `token` holds (the by-token releases).
    async fn release_by_token(
        &self,
        name: &[u8],
        shape: Shape<'_>,
        token: &str,
        options: LockOptions,
    ) -> Result<Released, Error> {
        let lock = self.lock_spec_of(name, shape, options)?;
        let token = Token::new(token.as_bytes())?;
        self.release_lock(&lock, token).await
    }

    /// Extends the `shape` of `name` that `token` holds to `ttl` from now (the by-token
    /// extends).
    async fn extend_by_token(
        &self,
        name: &[u8],
        shape: Shape<'_>,
        token: &str,
        ttl: Duration,
    ) -> Result<Extended, Error> {
        let options = LockOptions {
            ttl: from_std(ttl),
            ..self.default_options()
        };
        let lock = self.lock_spec_of(name, shape, options)?;
        let token = Token::new(token.as_bytes())?;
        self.extend_lock(&lock, token).await
    }

    pub(crate) fn lock_spec(&self, name: &[u8], options: LockOptions) -> Result<Lock, Error> {
        self.lock_spec_of(name, Shape::Lock, options)
    }

    /// The core's lock for `name` in `shape` under this client's layout; on a cluster,
    /// checked to keep all its keys in one slot (a cluster runs a lock's scripts only then).
    pub(crate) fn lock_spec_of(
        &self,
        name: &[u8],
        shape: Shape<'_>,
        options: LockOptions,
    ) -> Result<Lock, Error> {
        let layout = (*self.layout).clone();
        let lock = match shape {
            Shape::Lock => Lock::new(layout, name, options)?,
            Shape::Semaphore(limit) => Lock::semaphore(layout, name, limit, options)?,
            Shape::Rw(mode) => Lock::rw(layout, name, mode, options)?,
            Shape::Multi(names) => {
                let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
                Lock::multi(layout, &names, options)?
            }
        };
        if self.pool.has_cluster() {
            lock.slot()?;
        }
        Ok(lock)
    }

    pub(crate) async fn release_lock(&self, lock: &Lock, token: Token) -> Result<Released, Error> {
        self.release_after(lock, token, &Stragglers::default())
            .await
    }

    /// Releases `lock` held by `token`, sending to each of the acquire's straggler nodes only
    /// once its owed replies are read (see `straggler.rs`).
    pub(crate) async fn release_after(
        &self,
        lock: &Lock,
        token: Token,
        acquired: &Stragglers,
    ) -> Result<Released, Error> {
        if self.nodes() == ONE_NODE {
            self.release_sized::<ONE_NODE>(lock, token, acquired).await
        } else {
            // Boxed so that a single-node release's future is not sized for this branch's
            // machine (see `ONE_NODE`).
            Box::pin(self.release_sized::<MAX_NODES>(lock, token, acquired)).await
        }
    }

    /// [`Client::release_after`] with a machine for up to `N` nodes.
    async fn release_sized<const N: usize>(
        &self,
        lock: &Lock,
        token: Token,
        acquired: &Stragglers,
    ) -> Result<Released, Error> {
        let seed = random_u64();
        let (outcome, _, _) = self
            .run_ordered(
                |servers, now| Release::<N>::new(lock, token, servers, now, seed),
                None,
                |_| None,
                acquired,
            )
            .await?;
        Ok(outcome?)
    }

    pub(crate) async fn extend_lock(&self, lock: &Lock, token: Token) -> Result<Extended, Error> {
        if self.nodes() == ONE_NODE {
            self.extend_sized::<ONE_NODE>(lock, token).await
        } else {
            // Boxed, as in `release_after`.
            Box::pin(self.extend_sized::<MAX_NODES>(lock, token)).await
        }
    }

    /// [`Client::extend_lock`] with a machine for up to `N` nodes.
    async fn extend_sized<const N: usize>(
        &self,
        lock: &Lock,
        token: Token,
    ) -> Result<Extended, Error> {
        let seed = random_u64();
        let (outcome, durable) = self
            .run_durably(
                |servers, now| Extend::<N>::new(lock, token, servers, now, seed),
                None,
                |outcome| outcome.as_ref().ok().map(|e| e.valid_until),
            )
            .await?;
        let extended = outcome?;
        // Not confirmed: the validity stays where the last confirmed lease put it (the
        // renewal schedule retries within it).
        self.durable_verdict(durable)?;
        Ok(extended)
    }

    /// What a durable check's verdict means for the caller.
    pub(crate) fn durable_verdict(
        &self,
        verdict: Option<Result<(), distlock_core::DurableError>>,
    ) -> Result<(), Error> {
        match verdict {
            Some(Err(why)) => Err(Error::NotDurable {
                endpoint: self.pool.endpoints().into_iter().next().unwrap_or_default(),
                why,
            }),
            _ => Ok(()),
        }
    }

    /// Takes an idle connection per node where there is one, builds the machine at once (a
    /// node without one is described by what its last handshake learned, and its connection
    /// is opened while the machine runs), drives it — giving the operation up when `cancel`
    /// completes first (see [`crate::drive::drive`]) — and returns the connections that are
    /// still in step to the pool. For a durable client ([`Client::durable`]) whose outcome gave
    /// a lease valid until the instant `valid_until` reads from it, also asks the node, on
    /// the connection that carried the operation, whether enough replicas hold it (`None`:
    /// not asked).
    pub(crate) async fn run_durably<Op: Operation, const N: usize>(
        &self,
        build: impl FnOnce(&[ServerInfo], distlock_core::Instant) -> Result<Machine<Op, N>, ConfigError>,
        cancel: Cancel<'_>,
        valid_until: impl FnOnce(&Op::Outcome) -> Option<distlock_core::Instant>,
    ) -> Result<(Op::Outcome, Option<Result<(), distlock_core::DurableError>>), Error>
    where
        Machine<Op, N>: Send + 'static,
    {
        let (outcome, durable, _) = self
            .run_ordered(build, cancel, valid_until, &Stragglers::default())
            .await?;
        Ok((outcome, durable))
    }

    /// [`Client::run_durably`], after an earlier operation on the same lease (`after`): what
    /// the machine sends to a node whose replies that operation still owed is held back until
    /// they are read (see `straggler.rs`). Also returns this operation's own stragglers: the
    /// nodes whose replies it still owed when it returned, read in the background.
    pub(crate) async fn run_ordered<Op: Operation, const N: usize>(
        &self,
        build: impl FnOnce(&[ServerInfo], distlock_core::Instant) -> Result<Machine<Op, N>, ConfigError>,
        cancel: Cancel<'_>,
        valid_until: impl FnOnce(&Op::Outcome) -> Option<distlock_core::Instant>,
        after: &Stragglers,
    ) -> Result<
        (
            Op::Outcome,
            Option<Result<(), distlock_core::DurableError>>,
            Stragglers,
        ),
        Error,
    >
    where
        Machine<Op, N>: Send + 'static,
    {
        let pool = &self.pool;
        let _counted = pool.operation();
        claim_read_in_background(pool).await;
        let (mut slots, servers) = take_slots(pool, true);
        let mut machine = match build(&servers, pool.clock().now()) {
            Ok(machine) => machine,
            Err(e) => {
                // Nothing was sent on them: they go back to the pool as they came.
                return_slots(pool, slots);
                return Err(e.into());
            }
        };
        let owed = owe_releases(&mut machine, &mut slots);
        after.hold_back(pool, &mut slots, &servers);
        let outcome = drive(&mut machine, &mut slots, &servers, pool, cancel).await;
        let durable = match (&self.durable, valid_until(&outcome)) {
            (Some(durability), Some(until)) => Some(
                self.confirm_durable(durability, &machine, &mut slots, until)
                    .await,
            ),
            _ => None,
        };
        if in_step(&machine, &slots) {
            report_releases(&mut machine, owed);
            return_slots(pool, slots);
            return Ok((outcome, durable, Stragglers::default()));
        }
        // Replies still owed (a Redlock round's slower nodes, a rollback's answers): read
        // them in the background, so the caller has its outcome now and the connections go
        // back to the pool instead of being reopened. A later operation on the lease waits
        // for them before it sends to those nodes (`straggler.rs`).
        let owing = (0..slots.len())
            .filter(|&node| {
                !matches!(slots[node], Slot::Closed) && machine.owed_replies(node) != Some(0)
            })
            .collect();
        let (stragglers, settled) = Stragglers::owed(owing);
        let pool = Arc::clone(pool);
        tokio::spawn(async move {
            let request_timeout = machine.lock().options().request_timeout;
            settle(&mut machine, &mut slots, &servers, &pool, request_timeout).await;
            report_releases(&mut machine, owed);
            return_slots(&pool, slots);
            settled.done();
        });
        Ok((outcome, durable, stragglers))
    }

    /// Sends the durable check on the one node's connection, which must be in step (it
    /// carried the operation that just succeeded); a connection the check leaves out of step
    /// is dropped.
    async fn confirm_durable<Op: Operation, const N: usize>(
        &self,
        durability: &Durability,
        machine: &Machine<Op, N>,
        slots: &mut [Slot],
        valid_until: distlock_core::Instant,
    ) -> Result<(), distlock_core::DurableError> {
        let not_confirmed = Err(distlock_core::DurableError::NotReplicated {
            acknowledged: 0,
            needed: durability.replicas(),
        });
        let Some(slot) = slots.first_mut() else {
            return not_confirmed;
        };
        let Slot::Ready(conn) = slot else {
            return not_confirmed;
        };
        if machine.owed_replies(0) != Some(0) {
            return not_confirmed;
        }
        let clock = self.pool.clock();
        let (verdict, in_step) =
            crate::durable::confirm(conn, durability, valid_until, &clock).await;
        if !in_step {
            *slot = Slot::Closed;
        }
        verdict
    }

    pub(crate) fn clock(&self) -> Clock {
        self.pool.clock()
    }

    /// Where this client's pipelined releases are reported (`pipelined.rs`).
    pub(crate) fn release_reports(&self) -> &Arc<ReleaseReports> {
        &self.releases
    }

    /// The node pool, for the operator commands (`admin.rs`) that talk to each node directly.
    pub(crate) fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// The key layout of this client's locks.
    #[must_use]
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }
}

/// Takes back, for each node, the connection last left owing a pipelined release's reply and
/// read in the background (`pipelined.rs`), and puts it among the idle ones, where
/// [`take_slots`] takes it first: what the operation sends then goes behind the release on
/// that connection, and its machine reads what is still owed first ([`owe_releases`]).
/// Takes it at once when it stands between replies (the usual case: the reader's task need
/// not run first); waits only for a reply half read to be in (its deadline at most).
async fn claim_read_in_background(pool: &Arc<Pool>) {
    for node in 0..pool.len() {
        match pool.claim_reading(node) {
            Some(Claim::Now(conn)) => pool.checkin(node, conn),
            Some(Claim::Later(conn)) => {
                if let Ok(conn) = conn.await {
                    pool.checkin(node, conn);
                }
            }
            Some(Claim::Gone) | None => {}
        }
    }
}

/// Tells `machine` of the pipelined releases its connections owe (their replies come first),
/// and keeps their records to report what it reads of them ([`report_releases`]). A
/// connection the machine cannot take one from is not used.
fn owe_releases<Op: Operation, const N: usize>(
    machine: &mut Machine<Op, N>,
    slots: &mut [Slot],
) -> Vec<(usize, OwedReply)> {
    let mut owed = Vec::new();
    for (node, slot) in slots.iter_mut().enumerate() {
        let Slot::Ready(conn) = slot else {
            continue;
        };
        let Some(mut reply) = conn.owed.take() else {
            continue;
        };
        let taken = reply
            .take_release()
            .is_some_and(|release| machine.owe_release(node, release));
        if taken {
            owed.push((node, reply));
        } else {
            // Dropped with the connection: reported unconfirmed.
            *slot = Slot::Closed;
        }
    }
    owed
}

/// Reports the check `machine` made of each pipelined release its connections owed; one it
/// did not get to (the connection dropped with the reply unread) is reported unconfirmed
/// as its record drops.
fn report_releases<Op: Operation, const N: usize>(
    machine: &mut Machine<Op, N>,
    owed: Vec<(usize, OwedReply)>,
) {
    for (node, reply) in owed {
        if let Some(check) = machine.take_release_check(node) {
            reply.report(&check);
        }
    }
}

/// Which kind of lock a name stands for: the one choice between the core's constructors.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape<'a> {
    /// A lock ([`Client::lock`]).
    Lock,
    /// One permit of a semaphore of this many ([`Client::semaphore`]).
    Semaphore(u32),
    /// One side of a read-write lock ([`Client::read_lock`], [`Client::write_lock`]).
    Rw(RwMode),
    /// Every one of these names at once ([`Client::lock_many`]).
    Multi(&'a [Vec<u8>]),
}

/// Options for one acquire; finish with [`LockBuilder::acquire`] or [`LockBuilder::try_acquire`].
#[derive(Debug, Clone)]
#[must_use]
// Its acquire methods, which make the guard, are in `guard.rs` (see the module doc).
pub struct LockBuilder {
    pub(crate) client: Client,
    pub(crate) name: Vec<u8>,
    pub(crate) options: LockOptions,
    pub(crate) wait: Duration,
    pub(crate) auto_renew: bool,
    pub(crate) token: Option<String>,
    /// `Some(n)`: one permit of a semaphore of `n` ([`Client::semaphore`]).
    pub(crate) limit: Option<u32>,
    /// `Some(mode)`: one hold of a read-write lock ([`Client::read_lock`],
    /// [`Client::write_lock`]).
    pub(crate) rw: Option<RwMode>,
    /// `Some(names)`: every one of these names at once ([`Client::lock_many`]).
    pub(crate) names: Option<Vec<Vec<u8>>>,
}

impl LockBuilder {
    /// How long the lock lives without renewal (default 30 s).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options.ttl = from_std(ttl);
        self
    }

    /// How long [`LockBuilder::acquire`] waits for a holder to let go (default: not at all).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Retry timing while waiting.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.options.retry = retry;
        self
    }

    /// Hand out fencing tokens ([`Guard::fence`](crate::Guard::fence)).
    pub fn fenced(mut self, on: bool) -> Self {
        self.options.fenced = on;
        self
    }

    /// Allow the token's holder to acquire again (pass the token with [`LockBuilder::token`]).
    pub fn reentrant(mut self, on: bool) -> Self {
        self.options.reentrant = on;
        self
    }

    /// Fair mode: waiters queue in arrival order, and the guard's release hands the lock (a
    /// semaphore's permit) straight to the first live waiter, whose acquire returns already
    /// holding it. One node
    /// and the tagged key layout only (else the acquire fails with
    /// [`ConfigError::FairUnsupported`]); every client of the lock should use it. See
    /// "Fair mode" in the README.
    pub fn fair(mut self, on: bool) -> Self {
        self.options.fair = on;
        self
    }

    /// Whether this lock may run Lua scripts (default: the client's,
    /// [`Client::with_scripts`]).
    pub fn scripts(mut self, scripts: Scripts) -> Self {
        self.options.scripts = scripts;
        self
    }

    /// Acquire with this token instead of a fresh random one (re-entry, or hand-off).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Renew the lease in the background while the guard lives (every third of the TTL).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Take one of `limit` permits of a semaphore of this name instead of the lock (see
    /// [`Client::semaphore`]); `None`: the lock.
    pub fn limit(mut self, limit: Option<u32>) -> Self {
        self.limit = limit;
        self
    }

    /// Take a `mode` hold of a read-write lock of this name instead of the lock (see
    /// [`Client::read_lock`]); `None`: the lock.
    pub fn rw(mut self, mode: Option<RwMode>) -> Self {
        self.rw = mode;
        self
    }

    /// Replace all lock options at once.
    pub fn options(mut self, options: LockOptions) -> Self {
        self.options = options;
        self
    }
}
