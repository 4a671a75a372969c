//! A held lock: the [`Guard`] an acquire gives (made here, by [`LockBuilder::acquire`]), what
//! it knows of its lease, the renewal task that keeps the lease, and the release when the
//! guard is dropped.
//!
//! The guard uses the client to extend and release; the client does not know the guard
//! (the acquire that makes one is here, not in `client.rs`), so the two modules import in
//! one direction only.
//!
//! Invariants:
//! - **The guard never claims more than the lease.** Its validity is the latest lease end
//!   an extend confirmed (only ever moved forward, except by a renewal driven by hand,
//!   [`Guard::renew_due`], where nothing races it and the latest extend is the truth), and
//!   zero once the lease was lost: a holder that asks is told the truth before it acts as
//!   the owner.
//! - **Renewal makes no decision.** The core's [`Renewal`] schedule says when to extend,
//!   when to try again and when the lease is lost; the task waits, sends and reports.
//! - **A guard is released once.** By [`Guard::release`], or else in the background when it
//!   is dropped; the renewal task is stopped first either way.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use distlock_core::{
    Acquire, ExtendOutcome, Extended, Lock, LostReason, Released, Renewal, RenewalEvent, Token,
};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::MAX_NODES;
use crate::client::{Client, LockBuilder, ONE_NODE, Shape};
use crate::clock::{from_std, to_std};
use crate::entropy::{random_bytes, random_u64};
use crate::error::Error;
use crate::straggler::Stragglers;

impl LockBuilder {
    /// Acquires, waiting up to [`LockBuilder::wait`].
    pub async fn acquire(self) -> Result<Guard, Error> {
        let wait = self.wait;
        self.acquire_within(wait).await
    }

    /// Acquires only if the lock is free right now.
    pub async fn try_acquire(self) -> Result<Guard, Error> {
        self.acquire_within(Duration::ZERO).await
    }

    /// Acquires like [`LockBuilder::acquire`], giving up when `cancel` completes first (a
    /// shutdown signal, say): whatever the acquire may already have taken on the servers is
    /// rolled back before this returns `Err(Error::Lock(distlock_core::Error::Cancelled))`,
    /// so no lock is left behind for its TTL.
    pub async fn acquire_until(
        self,
        cancel: impl std::future::Future<Output = ()> + Send,
    ) -> Result<Guard, Error> {
        let wait = self.wait;
        self.acquire_cancellable(wait, Some(Box::pin(cancel))).await
    }

    async fn acquire_within(self, wait: Duration) -> Result<Guard, Error> {
        self.acquire_cancellable(wait, None).await
    }

    async fn acquire_cancellable(
        self,
        wait: Duration,
        cancel: crate::drive::Cancel<'_>,
    ) -> Result<Guard, Error> {
        let shape = match (&self.names, self.rw, self.limit) {
            (Some(names), _, _) => Shape::Multi(names),
            (None, Some(mode), _) => Shape::Rw(mode),
            (None, None, Some(limit)) => Shape::Semaphore(limit),
            (None, None, None) => Shape::Lock,
        };
        let lock = self.client.lock_spec_of(&self.name, shape, self.options)?;
        let token = match &self.token {
            Some(t) => Token::new(t.as_bytes())?,
            None => Token::from_entropy(random_bytes()),
        };
        let seed = random_u64();
        let client = &self.client;
        let wait = from_std(wait);
        let (lease, durable, stragglers) = if client.nodes() == ONE_NODE {
            run_acquire::<ONE_NODE>(client, &lock, token, wait, seed, cancel).await?
        } else {
            // Boxed: a future holds the larger of its branches, and this one's machine would
            // make every single-node acquire's future three times the size (see `ONE_NODE`).
            Box::pin(run_acquire::<MAX_NODES>(
                client, &lock, token, wait, seed, cancel,
            ))
            .await?
        };
        let lease = lease?;
        if let Err(e) = client.durable_verdict(durable) {
            // Not confirmed by the replicas: a failover could lose it, so it is not reported
            // and not kept (released when the node answers; else it expires at its TTL).
            let _ = client
                .release_after(&lock, lease.token().clone(), &stragglers)
                .await;
            return Err(e);
        }
        let mut guard = Guard::new(client.clone(), lock, lease, self.auto_renew);
        guard.stragglers = stragglers;
        Ok(guard)
    }
}

/// What an acquire's machine for up to `N` nodes gave: its outcome, the durable check's
/// verdict (`None`: not asked) and the nodes whose replies it still owed.
type AcquireRun = (
    Result<distlock_core::Lease, distlock_core::Error>,
    Option<Result<(), distlock_core::DurableError>>,
    Stragglers,
);

/// Drives one acquire of `lock` with a machine for up to `N` nodes (see
/// [`crate::client::ONE_NODE`]).
async fn run_acquire<const N: usize>(
    client: &Client,
    lock: &Lock,
    token: Token,
    wait: distlock_core::Duration,
    seed: u64,
    cancel: crate::drive::Cancel<'_>,
) -> Result<AcquireRun, Error> {
    client
        .run_ordered(
            |servers, now| Acquire::<N>::new(lock, token, servers, wait, now, seed),
            cancel,
            |outcome| outcome.as_ref().ok().map(distlock_core::Lease::valid_until),
            &Stragglers::default(),
        )
        .await
}

/// State a guard shares with its renewal task.
struct Held {
    /// The validity the last extend to finish set (or the acquire's). Stored, never maxed: an
    /// extend to a shorter TTL moves the keys' expiry earlier, and the guard must not claim
    /// the longer one it had.
    valid_until: AtomicU64,
    /// Held across each extend, by hand or by the renewal task: one extend at a time, so the
    /// one whose result is stored last is also the one that reached the servers last.
    extending: tokio::sync::Mutex<()>,
    /// Whether the lease was lost; made by the first to set or watch it ([`Held::lost`]).
    lost: OnceLock<watch::Sender<bool>>,
    /// Marked changed each time an extend stores a validity ([`Guard::validity_moved`]); made
    /// by the first extend or watcher ([`Held::moved`]).
    moved: OnceLock<watch::Sender<()>>,
    released: AtomicBool,
}

impl Held {
    /// The lease-lost channel, made on first use. Every sender and every watcher goes through
    /// here, so they all share one channel, made before either acts: a guard nobody watches
    /// and that is never lost (most) makes none — a watch channel costs an allocation, and
    /// eight wake-up lists to notify when it drops.
    fn lost(&self) -> &watch::Sender<bool> {
        self.lost.get_or_init(|| watch::channel(false).0)
    }

    /// Whether the lease was marked lost. No channel yet: nobody marked it.
    fn is_lost(&self) -> bool {
        self.lost.get().is_some_and(|lost| *lost.borrow())
    }

    /// The validity-moved channel, made on first use, as [`Held::lost`].
    fn moved(&self) -> &watch::Sender<()> {
        self.moved.get_or_init(|| watch::channel(()).0)
    }

    /// Extends `lock` held by `token`, one extend at a time (by hand or by the renewal), and
    /// stores the validity it gives: the last extend to finish is the one that reached the
    /// servers last, so its validity is the keys' (a shorter TTL moves it earlier).
    async fn extend(&self, client: &Client, lock: &Lock, token: &Token) -> Result<Extended, Error> {
        let _one_at_a_time = self.extending.lock().await;
        let result = client.extend_lock(lock, token.clone()).await;
        if let Ok(extended) = &result {
            self.valid_until
                .store(extended.valid_until.as_millis(), Ordering::Release);
            self.moved().send_replace(());
        }
        result
    }
}

/// An extend's result as the renewal schedule takes it: `NotHeld` loses the lease at once;
/// any other failure is retried within the validity.
fn schedule_outcome(result: &Result<Extended, Error>) -> ExtendOutcome {
    match result {
        Ok(extended) => ExtendOutcome::Extended {
            started: extended.started,
            valid_until: extended.valid_until,
        },
        Err(e) if matches!(e.lock_error(), Some(distlock_core::Error::NotHeld)) => {
            ExtendOutcome::NotHeld
        }
        Err(e) => {
            debug!(error = %e, "renewal failed; the schedule tries again");
            ExtendOutcome::Failed
        }
    }
}

/// A held lock. Dropping it releases the lock (in the background); call
/// [`Guard::release`] to release it and see the result.
#[must_use = "dropping a guard releases the lock at once"]
pub struct Guard {
    client: Client,
    lock: Lock,
    token: Token,
    fence: Option<u64>,
    holds: u32,
    /// When the acquire started: where a renewal schedule starts counting.
    #[cfg_attr(
        not(feature = "component"),
        allow(dead_code, reason = "only a guest's renewal by hand reads it")
    )]
    started: distlock_core::Instant,
    held: Arc<Held>,
    renewal: Option<tokio::task::JoinHandle<()>>,
    /// The acquire's nodes whose replies were still owed when it returned: the release
    /// sends to them only once those are read (`straggler.rs`).
    stragglers: Stragglers,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field(
                "name",
                &String::from_utf8_lossy(self.lock.keys().name().as_bytes()),
            )
            .field("token", &self.token.as_str())
            .field("fence", &self.fence)
            .field("validity", &self.validity())
            .finish()
    }
}

impl Guard {
    pub(crate) fn new(
        client: Client,
        lock: Lock,
        lease: distlock_core::Lease,
        auto_renew: bool,
    ) -> Guard {
        let held = Arc::new(Held {
            valid_until: AtomicU64::new(lease.valid_until().as_millis()),
            extending: tokio::sync::Mutex::new(()),
            lost: OnceLock::new(),
            moved: OnceLock::new(),
            released: AtomicBool::new(false),
        });
        let renewal = auto_renew.then(|| {
            let schedule = Renewal::new(
                lock.options().ttl,
                lease.started(),
                lease.valid_until(),
                random_u64(),
            );
            tokio::spawn(renew(
                client.clone(),
                lock.clone(),
                lease.token().clone(),
                Arc::clone(&held),
                schedule,
            ))
        });
        Guard {
            client,
            lock,
            token: lease.token().clone(),
            fence: lease.fence(),
            holds: lease.holds(),
            started: lease.started(),
            held,
            renewal,
            stragglers: Stragglers::default(),
        }
    }

    /// The token: print it to release or extend from another process.
    #[must_use]
    pub fn token(&self) -> &str {
        self.token.as_str()
    }

    /// The fencing token of a fenced lock: larger than every earlier holder's.
    #[must_use]
    pub fn fence(&self) -> Option<u64> {
        self.fence
    }

    /// How many times the token holds a reentrant lock.
    #[must_use]
    pub fn holds(&self) -> u32 {
        self.holds
    }

    /// The lock's name (for [`Client::lock_many`], the first of its names in byte order:
    /// [`Guard::names`] lists them all).
    #[must_use]
    pub fn name(&self) -> &[u8] {
        self.lock.keys().name().as_bytes()
    }

    /// Every name the guard holds, in byte order: one, except for [`Client::lock_many`].
    pub fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.lock.every_name().iter().map(|k| k.name().as_bytes())
    }

    /// How much validity is left (zero once it ran out or the lease was lost).
    #[must_use]
    pub fn validity(&self) -> Duration {
        if self.held.is_lost() {
            return Duration::ZERO;
        }
        let until =
            distlock_core::Instant::from_millis(self.held.valid_until.load(Ordering::Acquire));
        to_std(until.saturating_since(self.client.clock().now()))
    }

    /// Whether the lease is still valid: the holder may act as the owner.
    #[must_use]
    pub fn is_held(&self) -> bool {
        !self.validity().is_zero()
    }

    /// Resolves when the lease is lost: its validity ran out (renewal failed or was not
    /// asked for) or the lock turned out to be held by another token.
    pub async fn lost(&self) {
        let mut lost = self.held.lost().subscribe();
        loop {
            if *lost.borrow_and_update() {
                return;
            }
            let until =
                distlock_core::Instant::from_millis(self.held.valid_until.load(Ordering::Acquire));
            let clock = self.client.clock();
            if clock.now() >= until {
                return;
            }
            tokio::select! {
                _ = lost.changed() => {}
                _ = tokio::time::sleep_until(clock.to_tokio(until)) => {}
            }
        }
    }

    /// Resolves once the lease's validity moves after this call: an extend (by hand or the
    /// renewal) stored a new one. The future is ready to be kept from the moment it is made,
    /// so a caller that makes it *before* it reads [`Guard::validity`] misses no move — what
    /// a watcher that schedules by the validity needs (`distlock exec` forwards each move to
    /// its job's watchdog). It also resolves once the guard is gone.
    pub fn validity_moved(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut moved = self.held.moved().subscribe();
        async move {
            let _ = moved.changed().await;
        }
    }

    /// Extends the lease to `ttl` from now.
    pub async fn extend(&self, ttl: Duration) -> Result<Duration, Error> {
        let lock = self.lock.with_ttl(from_std(ttl))?;
        match self.held.extend(&self.client, &lock, &self.token).await {
            Ok(_) => Ok(self.validity()),
            Err(e) => {
                if matches!(e.lock_error(), Some(distlock_core::Error::NotHeld)) {
                    self.held.lost().send_replace(true);
                }
                Err(e)
            }
        }
    }

    /// The core's renewal schedule of this lease, counted from its acquire: for a holder
    /// that renews by hand, one [`Guard::renew_due`] at a time (a WebAssembly guest's
    /// `lease.renew`), instead of the background task.
    #[cfg(feature = "component")]
    pub(crate) fn renewal(&self) -> Renewal {
        let valid_until =
            distlock_core::Instant::from_millis(self.held.valid_until.load(Ordering::Acquire));
        Renewal::new(
            self.lock.options().ttl,
            self.started,
            valid_until,
            random_u64(),
        )
    }

    /// One step of `schedule`, driven by hand: sends the extend it asks for if one is due —
    /// to the lease's TTL, answered by the validity's end ([`Renewal::extend_lock`]) — and
    /// returns how long until the next step is due, or why the lease is lost (the guard's
    /// validity is zero from then on). Makes no decision: the schedule makes them all.
    #[cfg(feature = "component")]
    pub(crate) async fn renew_due(&self, schedule: &mut Renewal) -> Result<Duration, LostReason> {
        let clock = self.client.clock();
        schedule.handle_timeout(clock.now());
        while let Some(event) = schedule.poll_event() {
            if event != RenewalEvent::Extend {
                break;
            }
            let lock = schedule.extend_lock(&self.lock, clock.now());
            let result = self.held.extend(&self.client, &lock, &self.token).await;
            let outcome = schedule_outcome(&result);
            schedule.handle_extend_outcome(outcome, clock.now());
        }
        if let Some(reason) = schedule.lost() {
            self.held.lost().send_replace(true);
            return Err(reason);
        }
        let next = schedule.poll_timeout().unwrap_or_else(|| clock.now());
        Ok(to_std(next.saturating_since(clock.now())))
    }

    /// Releases the lock and reports how it went.
    pub async fn release(mut self) -> Result<Released, Error> {
        self.stop_renewal();
        self.held.released.store(true, Ordering::Release);
        let released = self
            .client
            .release_after(&self.lock, self.token.clone(), &self.stragglers)
            .await;
        if self.lock.options().wake_signal.is_some() && self.client.pool().busy() {
            // The signal this release pushed may have woken a waiter of this client, whose
            // reply often arrives in the same turn of the runtime as ours, and Redis writes
            // ours first: without a yield this task runs on — typically into its next
            // acquire — and its `SET NX` reaches the server before the woken waiter's, which
            // is refused and goes to the back of the server's wait queue with its wake-up
            // spent. Measured: 8 workers on one client, 4 of them never acquired in 3 s.
            // Yielding lets the woken task send first. It costs a pass of the scheduler, so
            // only when another operation of this client is under way (an uncontended
            // acquire + release, scenario A, pays nothing).
            tokio::task::yield_now().await;
        }
        released
    }

    /// Stops renewing and forgets the lock without releasing it: its owner ends it another
    /// way (get-or-compute's finish script releases it as it stores the value).
    pub(crate) fn disarm(mut self) {
        self.stop_renewal();
        self.held.released.store(true, Ordering::Release);
    }

    /// Releases the lock without waiting for the server's reply: the release is written on
    /// an idle connection of the client and this returns, so a loop of acquire and release
    /// costs one round trip per pair instead of two. Opt-in; for a single-node lock of one
    /// name (see "Pipelined release" in the README).
    ///
    /// When it returns `Ok(())` the release is **sent, not done**: the name is not yet free
    /// (a waiter wakes, and another client can take the name, once the server runs the
    /// delete), and the lease must be treated as given up. The server's reply is read in the
    /// background while the connection is idle — or by the client's next lock operation,
    /// which claims the connection and reads it before its own replies — and reported
    /// ([`Client::settle_releases`] waits for every one; never hidden, never turned
    /// into "released"): [`Client::pipelined_releases`] counts, a `tracing` warning for each
    /// release that was no longer ours or is unconfirmed, and [`Client::on_release_check`].
    /// A late delete only keeps the name held longer: it deletes nothing but our own key.
    ///
    /// With no idle connection free to carry it (the client's first operation, or the last
    /// connection still owes an earlier pipelined release) or if the write fails, the
    /// release runs the normal way and its result is returned (`Ok` then means released).
    ///
    /// Refused before anything is sent — Redlock over several nodes, a semaphore, a
    /// read-write or multi-name lock ([`ConfigError::PipelinedUnsupported`]), a Redis Cluster
    /// ([`Error::NotOnCluster`]) — the guard is dropped, which releases it in the background
    /// as any dropped guard.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), distlock_host::Error> {
    /// let client = distlock_host::Client::connect(["redis://127.0.0.1:6379"]).await?;
    /// for job in 0..1000 {
    ///     let guard = client.lock("queue-head").try_acquire().await?;
    ///     // … the critical section …
    ///     guard.release_pipelined().await?; // sent; its reply is read by the next acquire
    /// }
    /// client.settle_releases().await; // read the last reply before shutting down
    /// assert_eq!(client.pipelined_releases().not_held, 0);
    /// # Ok(()) }
    /// ```
    ///
    /// [`ConfigError::PipelinedUnsupported`]: distlock_core::ConfigError::PipelinedUnsupported
    pub async fn release_pipelined(mut self) -> Result<(), Error> {
        self.client.check_pipelined(&self.lock, &self.token)?;
        self.stop_renewal();
        self.held.released.store(true, Ordering::Release);
        self.client.release_pipelined(&self.lock, &self.token).await
    }

    fn stop_renewal(&mut self) {
        if let Some(task) = self.renewal.take() {
            task.abort();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop_renewal();
        if self.held.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let (client, lock, token) = (self.client.clone(), self.lock.clone(), self.token.clone());
        let stragglers = std::mem::take(&mut self.stragglers);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = client.release_after(&lock, token, &stragglers).await {
                        warn!(error = %e, "releasing a dropped guard failed; the lock expires at its TTL");
                    }
                });
            }
            Err(_) => warn!("guard dropped outside a tokio runtime: the lock expires at its TTL"),
        }
    }
}

/// The watchdog: runs the core's renewal schedule ([`Renewal`]) — it says when to extend,
/// when to try again and when the lease is lost; this task only waits, sends the extend and
/// reports the outcome.
async fn renew(client: Client, lock: Lock, token: Token, held: Arc<Held>, mut schedule: Renewal) {
    let clock = client.clock();
    loop {
        while let Some(event) = schedule.poll_event() {
            match event {
                RenewalEvent::Extend => {
                    // An extend can take its request timeout; the validity's end does not
                    // wait for it.
                    let until = clock.to_tokio(schedule.valid_until());
                    let result = tokio::select! {
                        result = held.extend(&client, &lock, &token) => result,
                        () = tokio::time::sleep_until(until) => {
                            schedule.handle_timeout(clock.now());
                            continue;
                        }
                    };
                    let outcome = schedule_outcome(&result);
                    schedule.handle_extend_outcome(outcome, clock.now());
                }
                RenewalEvent::Lost(reason) => {
                    match reason {
                        LostReason::NotHeld => {
                            warn!("lease lost: the lock is no longer held by this token")
                        }
                        _ => warn!("lease lost: renewal kept failing until the validity ran out"),
                    }
                    held.lost().send_replace(true);
                    return;
                }
                _ => {}
            }
        }
        let Some(at) = schedule.poll_timeout() else {
            return;
        };
        tokio::time::sleep_until(clock.to_tokio(at)).await;
        schedule.handle_timeout(clock.now());
    }
}
