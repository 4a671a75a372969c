//! The Rust API: a [`Client`] over one node or a Redlock quorum, [`LockBuilder`] for each
//! acquire, and the [`Guard`] that holds a lease, renews it and releases it on drop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use distlock_core::connect::RECONNECT;
use distlock_core::machine::{Machine, Operation};
use distlock_core::retry::{Backoff, SplitMix64};
use distlock_core::{
    Acquire, ConfigError, Extend, ExtendOutcome, Extended, KeyLayout, Lock, LockOptions,
    LostReason, Protocol, Reachability, Release, Released, Renewal, RenewalEvent, RetryPolicy,
    ServerInfo, Token, quorum, reachability,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::MAX_NODES;
use crate::clock::{Clock, from_std, to_std};
use crate::conn::{Conn, ConnectOptions};
use crate::drive::{Slot, drive, in_step, settle};
use crate::embedded::Store;
use crate::endpoint::Endpoint;
use crate::error::Error;

/// Where a node's connections go.
#[derive(Clone)]
enum Target {
    Remote(Endpoint),
    Embedded(Store),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Remote(e) => e.fmt(f),
            Target::Embedded(_) => f.write_str("embedded in-process store"),
        }
    }
}

/// One node and its idle connections.
struct Node {
    target: Target,
    idle: std::sync::Mutex<Vec<Conn>>,
    /// After a failed connect: no new attempt before this, and the pauses to come.
    down: std::sync::Mutex<Option<(tokio::time::Instant, Backoff)>>,
    /// What the node's last handshake learned: what a machine is built with for a node whose
    /// connection is still to be opened.
    known: std::sync::Mutex<Option<ServerInfo>>,
    connecting: std::sync::Mutex<Connecting>,
}

/// The longest a finished operation's connections are read in the background for the replies
/// they still owe before being closed instead of pooled.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);
// A node whose connects have gone `ConnectOptions::ready_timeout` (the request timeout)
// without one being answered is *silent* (frozen, or behind a partition). Operations do not
// wait for connects (their request timeout gives up on the node), so without a limit every
// operation would leave one more connect hanging for the whole connect timeout, and each
// would wait out its request timeout on it. Instead, once a node is silent, connects to it
// fail at once, and one connect per that period goes on in the background as a probe: when
// the node answers again, the probe's connection joins the pool and the node is back.

/// Connects to a node under way, since when none of them has been answered, and when the
/// last one started.
#[derive(Default)]
struct Connecting {
    count: usize,
    unanswered_since: Option<tokio::time::Instant>,
    last_start: Option<tokio::time::Instant>,
}

/// Whether a connect may start.
enum Admission {
    /// Connect, and let the caller wait for it.
    Go(Attempt),
    /// The node is silent: connect in the background only (a probe).
    Probe(Attempt),
    /// The node is silent and was probed less than a ready timeout ago.
    Refuse,
}

/// One connect under way (counted in [`Node::connecting`] while it lives).
struct Attempt {
    client: Client,
    node: usize,
    /// Set when the server answered (the connect succeeded).
    answered: bool,
}

impl Attempt {
    fn admit(client: &Client, node: usize) -> Admission {
        let Some(mut connecting) = client
            .inner
            .nodes
            .get(node)
            .and_then(|n| n.connecting.lock().ok())
        else {
            return Admission::Refuse;
        };
        let now = tokio::time::Instant::now();
        let silent_after = client.inner.connect.ready_timeout;
        let long = |at: Option<tokio::time::Instant>| {
            at.is_some_and(|at| now.duration_since(at) >= silent_after)
        };
        let silent = connecting.count > 0 && long(connecting.unanswered_since);
        if silent && !long(connecting.last_start) {
            return Admission::Refuse;
        }
        connecting.count += 1;
        connecting.unanswered_since.get_or_insert(now);
        connecting.last_start = Some(now);
        let attempt = Attempt {
            client: client.clone(),
            node,
            answered: false,
        };
        if silent {
            Admission::Probe(attempt)
        } else {
            Admission::Go(attempt)
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(node) = self.client.inner.nodes.get(self.node) else {
            return;
        };
        if let Ok(mut connecting) = node.connecting.lock() {
            connecting.count = connecting.count.saturating_sub(1);
            if connecting.count == 0 {
                connecting.unanswered_since = None;
            } else if self.answered {
                connecting.unanswered_since = Some(tokio::time::Instant::now());
            }
        }
    }
}

struct Inner {
    nodes: Vec<Node>,
    layout: KeyLayout,
    clock: Clock,
    connect: ConnectOptions,
}

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
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self
            .inner
            .nodes
            .iter()
            .map(|n| n.target.to_string())
            .collect();
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
        // One budget for the whole of connecting: looking the hosts up and waiting for them.
        let deadline = tokio::time::Instant::now() + connect.ready_timeout;
        refuse_duplicates(&endpoints, deadline).await?;
        let client = Self::with_targets(
            endpoints.into_iter().map(Target::Remote).collect(),
            connect,
            layout,
        );
        // Check reachability now, so a typo fails here rather than at the first lock.
        client.until_ready(deadline).await?;
        Ok(client)
    }

    /// Connects to every node at once and waits until a quorum has answered, every node has
    /// reported, or `deadline`, whichever comes first. Once a quorum is out of reach it still
    /// waits (within the same deadline) for the nodes under way, so the error counts every
    /// node that answered and blames a real failure. The connects still under way go on in
    /// the background, and their connections join the pool if their nodes answer.
    async fn until_ready(&self, deadline: tokio::time::Instant) -> Result<(), Error> {
        let nodes = self.inner.nodes.len();
        let mut reports = self.connect_each(0..nodes);
        let mut reported = vec![false; nodes];
        let (mut answered, mut failed, mut last) = (0, 0, None);
        loop {
            if reachability(nodes, answered, failed) == Reachability::Ready
                || answered + failed == nodes
            {
                break;
            }
            match tokio::time::timeout_at(deadline, reports.recv()).await {
                Ok(Some((node, result))) => {
                    if let Some(seen) = reported.get_mut(node) {
                        *seen = true;
                    }
                    match result {
                        Ok(conn) => {
                            answered += 1;
                            self.checkin(node, conn);
                        }
                        Err(e) => {
                            failed += 1;
                            last = Some(e);
                        }
                    }
                }
                // The deadline (every task reports before it ends, so the channel closes
                // only after all have).
                Ok(None) | Err(_) => break,
            }
        }
        self.pool_the_rest(reports);
        for (node, _) in reported.iter().enumerate().filter(|(_, seen)| !**seen) {
            failed += 1;
            last = Some(self.no_answer(node));
        }
        if reachability(nodes, answered, failed) == Reachability::Ready {
            return Ok(());
        }
        let last = last.unwrap_or(Error::TooManyNodes(0));
        // One node: its own error says it best.
        if nodes == 1 {
            return Err(last);
        }
        Err(Error::TooFewNodes {
            reachable: answered,
            nodes,
            needed: quorum(nodes),
            last: Box::new(last),
        })
    }

    /// Opens a connection to each of `nodes` at once, each in a task of its own that goes on
    /// when the caller stops waiting; each reports `(node, result)` on the channel returned.
    /// Hand the channel to [`Client::pool_the_rest`] when done with it.
    fn connect_each(
        &self,
        nodes: impl Iterator<Item = usize>,
    ) -> mpsc::UnboundedReceiver<(usize, Result<Conn, Error>)> {
        let (reports, receiver) = mpsc::unbounded_channel();
        for node in nodes {
            let client = self.clone();
            let reports = reports.clone();
            tokio::spawn(async move {
                let protocol = client.known_server(node).protocol;
                let result = client.connect_node(node, protocol).await;
                // Nobody is waiting any more: the connection is still worth pooling.
                if let Err(mpsc::error::SendError((node, Ok(conn)))) = reports.send((node, result))
                {
                    client.checkin(node, conn);
                }
            });
        }
        receiver
    }

    /// Stops listening to [`Client::connect_each`]'s reports: connections already reported
    /// and those still to come go to the pool.
    fn pool_the_rest(&self, mut reports: mpsc::UnboundedReceiver<(usize, Result<Conn, Error>)>) {
        reports.close();
        while let Ok((node, result)) = reports.try_recv() {
            if let Ok(conn) = result {
                self.checkin(node, conn);
            }
        }
    }

    /// The error of a node whose connect did not answer within the ready timeout.
    fn no_answer(&self, node: usize) -> Error {
        let endpoint = self
            .inner
            .nodes
            .get(node)
            .map_or_else(|| format!("node {node}"), |n| n.target.to_string());
        Error::Connect {
            endpoint,
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", self.inner.connect.ready_timeout),
            ),
        }
    }

    /// The embedded in-process store: the same lock semantics with no server, for demos,
    /// tests and locks between the tasks and threads of **one process only**.
    #[must_use]
    pub fn embedded() -> Client {
        Self::embedded_with(KeyLayout::default())
    }

    fn embedded_with(layout: KeyLayout) -> Client {
        Self::with_targets(
            vec![Target::Embedded(Store::new())],
            ConnectOptions::default(),
            layout,
        )
    }

    fn with_targets(targets: Vec<Target>, connect: ConnectOptions, layout: KeyLayout) -> Client {
        let nodes = targets
            .into_iter()
            .map(|target| Node {
                target,
                idle: std::sync::Mutex::new(Vec::new()),
                down: std::sync::Mutex::new(None),
                known: std::sync::Mutex::new(None),
                connecting: std::sync::Mutex::new(Connecting::default()),
            })
            .collect();
        Client {
            inner: Arc::new(Inner {
                nodes,
                layout,
                clock: Clock::new(),
                connect,
            }),
        }
    }

    /// How many nodes (1: single node; more: Redlock).
    #[must_use]
    pub fn nodes(&self) -> usize {
        self.inner.nodes.len()
    }

    /// Whether this client runs on the embedded in-process store.
    #[must_use]
    pub fn is_embedded(&self) -> bool {
        self.inner
            .nodes
            .iter()
            .any(|n| matches!(n.target, Target::Embedded(_)))
    }

    /// Starts building an acquire of the lock `name`.
    pub fn lock(&self, name: impl AsRef<[u8]>) -> LockBuilder {
        LockBuilder {
            client: self.clone(),
            name: name.as_ref().to_vec(),
            options: LockOptions::default(),
            wait: Duration::ZERO,
            auto_renew: false,
            token: None,
        }
    }

    /// Releases `name` held by `token` (printed by [`Guard::token`], possibly in another
    /// process).
    pub async fn release(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        reentrant: bool,
    ) -> Result<Released, Error> {
        let lock = self.lock_spec(
            name.as_ref(),
            LockOptions {
                reentrant,
                ..LockOptions::default()
            },
        )?;
        let token = Token::new(token.as_bytes())?;
        self.release_lock(&lock, token).await
    }

    /// Extends `name` held by `token` to `ttl` from now.
    pub async fn extend(
        &self,
        name: impl AsRef<[u8]>,
        token: &str,
        ttl: Duration,
    ) -> Result<Extended, Error> {
        let lock = self.lock_spec(
            name.as_ref(),
            LockOptions {
                ttl: from_std(ttl),
                ..LockOptions::default()
            },
        )?;
        let token = Token::new(token.as_bytes())?;
        self.extend_lock(&lock, token).await
    }

    fn lock_spec(&self, name: &[u8], options: LockOptions) -> Result<Lock, Error> {
        Ok(Lock::new(self.inner.layout.clone(), name, options)?)
    }

    pub(crate) async fn release_lock(&self, lock: &Lock, token: Token) -> Result<Released, Error> {
        let seed = random_u64();
        let outcome = self
            .run(|servers, now| Release::<MAX_NODES>::new(lock, token, servers, now, seed))
            .await?;
        Ok(outcome?)
    }

    pub(crate) async fn extend_lock(&self, lock: &Lock, token: Token) -> Result<Extended, Error> {
        let seed = random_u64();
        let outcome = self
            .run(|servers, now| Extend::<MAX_NODES>::new(lock, token, servers, now, seed))
            .await?;
        Ok(outcome?)
    }

    /// Takes an idle connection per node where there is one, builds the machine at once (a
    /// node without one is described by what its last handshake learned, and its connection
    /// is opened while the machine runs), drives it, and returns the connections that are
    /// still in step to the pool.
    async fn run<Op: Operation>(
        &self,
        build: impl FnOnce(
            &[ServerInfo],
            distlock_core::Instant,
        ) -> Result<Machine<Op, MAX_NODES>, ConfigError>,
    ) -> Result<Op::Outcome, Error>
    where
        Machine<Op, MAX_NODES>: Send + 'static,
    {
        let mut slots = Vec::with_capacity(self.inner.nodes.len());
        let mut servers = Vec::with_capacity(self.inner.nodes.len());
        for node in 0..self.inner.nodes.len() {
            match self.take_idle(node) {
                Some(conn) => {
                    servers.push(conn.server);
                    slots.push(Slot::Ready(conn));
                }
                None => {
                    servers.push(self.known_server(node));
                    slots.push(Slot::Closed);
                }
            }
        }
        let mut machine = build(&servers, self.inner.clock.now())?;
        let outcome = drive(&mut machine, &mut slots, &servers, self).await;
        if in_step(&machine, &slots) {
            self.return_slots(slots);
        } else {
            // Replies still owed (a Redlock round's slower nodes, a rollback's answers): read
            // them in the background, so the caller has its outcome now and the connections
            // go back to the pool instead of being reopened.
            let client = self.clone();
            tokio::spawn(async move {
                settle(&mut machine, &mut slots, &servers, &client, SETTLE_LIMIT).await;
                client.return_slots(slots);
            });
        }
        Ok(outcome)
    }

    /// Puts an operation's connections back in the pool (those still opening once open).
    fn return_slots(&self, slots: Vec<Slot>) {
        for (node, slot) in slots.into_iter().enumerate() {
            match slot {
                Slot::Ready(conn) => self.checkin(node, conn),
                // Nothing was written on it: it joins the pool clean once open.
                Slot::Opening { connect, .. } => {
                    let client = self.clone();
                    tokio::spawn(async move {
                        if let Ok(Ok(conn)) = connect.await {
                            client.checkin(node, conn);
                        }
                    });
                }
                Slot::Closed => {}
            }
        }
    }

    /// What `node`'s last handshake learned; before any, a server assumed to speak RESP3
    /// (as the handshake asks) with nothing else known.
    fn known_server(&self, node: usize) -> ServerInfo {
        self.inner
            .nodes
            .get(node)
            .and_then(|n| *n.known.lock().ok()?)
            .unwrap_or(ServerInfo {
                protocol: Protocol::Resp3,
                ..ServerInfo::default()
            })
    }

    /// Opens a connection to `node` speaking `protocol` (where the server can), in a task of
    /// its own: it goes on when the operation that asked for it has ended, bounded by the
    /// connect timeout.
    pub(crate) fn open(&self, node: usize, protocol: Protocol) -> JoinHandle<Result<Conn, Error>> {
        let client = self.clone();
        tokio::spawn(async move { client.connect_node(node, protocol).await })
    }

    /// An idle connection to `node` that is still alive; dead ones are dropped.
    fn take_idle(&self, node: usize) -> Option<Conn> {
        let mut idle = self.inner.nodes.get(node)?.idle.lock().ok()?;
        while let Some(conn) = idle.pop() {
            if !conn.is_stale() {
                return Some(conn);
            }
            debug!(node, "dropping a dead idle connection");
        }
        None
    }

    /// Opens a new connection to `node`, asking for `protocol`. A node whose last connect
    /// failed is not tried again until its backoff pause ([`RECONNECT`]: 100 ms, doubling to
    /// 2 s) is over, and one whose connects go unanswered for a ready timeout is only probed
    /// in the background, so a dead or frozen node costs an operation nothing but its vote.
    pub(crate) async fn connect_node(
        &self,
        node: usize,
        protocol: Protocol,
    ) -> Result<Conn, Error> {
        let Some(slot) = self.inner.nodes.get(node) else {
            return Err(Error::TooManyNodes(node));
        };
        let down_until = slot
            .down
            .lock()
            .ok()
            .and_then(|d| *d)
            .map(|(until, _)| until);
        if down_until.is_some_and(|t| tokio::time::Instant::now() < t) {
            return Err(Error::Connect {
                endpoint: slot.target.to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "down at the last attempt; waiting before reconnecting",
                ),
            });
        }
        let silent = || Error::Connect {
            endpoint: slot.target.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "not answering: its connects have gone unanswered for {:?}",
                    self.inner.connect.ready_timeout
                ),
            ),
        };
        match Attempt::admit(self, node) {
            Admission::Go(attempt) => self.dial(attempt, protocol).await,
            Admission::Probe(attempt) => {
                let client = self.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = client.dial(attempt, protocol).await {
                        client.checkin(node, conn);
                    }
                });
                Err(silent())
            }
            Admission::Refuse => Err(silent()),
        }
    }

    /// Connects for `attempt` and records how it went (what the server is, or its backoff).
    async fn dial(&self, mut attempt: Attempt, protocol: Protocol) -> Result<Conn, Error> {
        let node = attempt.node;
        let Some(slot) = self.inner.nodes.get(node) else {
            return Err(Error::TooManyNodes(node));
        };
        let clock = self.inner.clock;
        let conn = match &slot.target {
            Target::Remote(endpoint) => {
                Conn::open(endpoint, &self.inner.connect, protocol, &clock).await
            }
            Target::Embedded(store) => store.connect(protocol, &clock).await,
        };
        if let (Ok(conn), Ok(mut known)) = (&conn, slot.known.lock()) {
            *known = Some(conn.server);
        }
        attempt.answered = conn.is_ok();
        drop(attempt);
        if let Ok(mut down) = slot.down.lock() {
            *down = match (&conn, *down) {
                (Ok(_), _) => None,
                (Err(_), previous) => {
                    // Without jitter the seed draws nothing: the pauses are the policy's.
                    let mut backoff =
                        previous.map_or_else(|| Backoff::new(RECONNECT, 0), |(_, b)| b);
                    let pause = to_std(backoff.next_delay());
                    Some((tokio::time::Instant::now() + pause, backoff))
                }
            };
        }
        conn
    }

    pub(crate) fn checkin(&self, node: usize, conn: Conn) {
        if let Some(node) = self.inner.nodes.get(node)
            && let Ok(mut idle) = node.idle.lock()
        {
            // A few idle connections per node are plenty; more are closed.
            if idle.len() < 16 {
                idle.push(conn);
            }
        }
    }

    pub(crate) fn clock(&self) -> Clock {
        self.inner.clock
    }

    /// Runs `f` on a connection to each node (for status and reset), all nodes at once, each
    /// within `deadline` whatever its connect or its server does: a node that has not finished
    /// by then gives [`Error::NodeTimeout`] and its connection is dropped (it may still owe a
    /// reply, so it never returns to the pool). Gives each node's endpoint and result, in node
    /// order.
    pub(crate) async fn on_each_node<T>(
        &self,
        deadline: Duration,
        f: impl AsyncFn(usize, &mut Conn) -> Result<T, Error>,
    ) -> Vec<(String, Result<T, Error>)> {
        let f = &f;
        let work = self.inner.nodes.iter().enumerate().map(|(node, slot)| {
            let endpoint = slot.target.to_string();
            async move {
                let run = async {
                    let mut conn = match self.take_idle(node) {
                        Some(conn) => conn,
                        None => {
                            let protocol = self.known_server(node).protocol;
                            self.open(node, protocol).await.unwrap_or_else(|e| {
                                Err(Error::Connect {
                                    endpoint: endpoint.clone(),
                                    source: std::io::Error::other(e.to_string()),
                                })
                            })?
                        }
                    };
                    let result = f(node, &mut conn).await;
                    if result.is_ok() {
                        self.checkin(node, conn);
                    }
                    result
                };
                let result = tokio::time::timeout(deadline, run)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::NodeTimeout {
                            endpoint: endpoint.clone(),
                            after: deadline,
                        })
                    });
                (endpoint, result)
            }
        });
        join_all(work.collect()).await
    }

    /// The key layout of this client's locks.
    #[must_use]
    pub fn layout(&self) -> &KeyLayout {
        &self.inner.layout
    }
}

/// Options for one acquire; finish with [`LockBuilder::acquire`] or [`LockBuilder::try_acquire`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LockBuilder {
    client: Client,
    name: Vec<u8>,
    options: LockOptions,
    wait: Duration,
    auto_renew: bool,
    token: Option<String>,
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

    /// Hand out fencing tokens ([`Guard::fence`]).
    pub fn fenced(mut self, on: bool) -> Self {
        self.options.fenced = on;
        self
    }

    /// Allow the token's holder to acquire again (pass the token with [`LockBuilder::token`]).
    pub fn reentrant(mut self, on: bool) -> Self {
        self.options.reentrant = on;
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

    /// Replace all lock options at once.
    pub fn options(mut self, options: LockOptions) -> Self {
        self.options = options;
        self
    }

    /// Acquires, waiting up to [`LockBuilder::wait`].
    pub async fn acquire(self) -> Result<Guard, Error> {
        let wait = self.wait;
        self.acquire_within(wait).await
    }

    /// Acquires only if the lock is free right now.
    pub async fn try_acquire(self) -> Result<Guard, Error> {
        self.acquire_within(Duration::ZERO).await
    }

    async fn acquire_within(self, wait: Duration) -> Result<Guard, Error> {
        let lock = self.client.lock_spec(&self.name, self.options)?;
        let token = match &self.token {
            Some(t) => Token::new(t.as_bytes())?,
            None => Token::from_entropy(random_bytes()),
        };
        let seed = random_u64();
        let client = &self.client;
        let lease = client
            .run(|servers, now| {
                Acquire::<MAX_NODES>::new(&lock, token, servers, from_std(wait), now, seed)
            })
            .await??;
        Ok(Guard::new(client.clone(), lock, lease, self.auto_renew))
    }
}

/// State a guard shares with its renewal task.
struct Held {
    valid_until: AtomicU64,
    lost: watch::Sender<bool>,
    released: AtomicBool,
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
    held: Arc<Held>,
    renewal: Option<tokio::task::JoinHandle<()>>,
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
    fn new(client: Client, lock: Lock, lease: distlock_core::Lease, auto_renew: bool) -> Guard {
        let (lost, _) = watch::channel(false);
        let held = Arc::new(Held {
            valid_until: AtomicU64::new(lease.valid_until().as_millis()),
            lost,
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
            held,
            renewal,
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

    /// The lock's name.
    #[must_use]
    pub fn name(&self) -> &[u8] {
        self.lock.keys().name().as_bytes()
    }

    /// How much validity is left (zero once it ran out or the lease was lost).
    #[must_use]
    pub fn validity(&self) -> Duration {
        if *self.held.lost.borrow() {
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
        let mut lost = self.held.lost.subscribe();
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

    /// Extends the lease to `ttl` from now.
    pub async fn extend(&self, ttl: Duration) -> Result<Duration, Error> {
        let lock = self.lock.with_ttl(from_std(ttl))?;
        match self.client.extend_lock(&lock, self.token.clone()).await {
            Ok(extended) => {
                self.held
                    .valid_until
                    .fetch_max(extended.valid_until.as_millis(), Ordering::AcqRel);
                Ok(self.validity())
            }
            Err(e) => {
                if matches!(e.lock_error(), Some(distlock_core::Error::NotHeld)) {
                    self.held.lost.send_replace(true);
                }
                Err(e)
            }
        }
    }

    /// Releases the lock and reports how it went.
    pub async fn release(mut self) -> Result<Released, Error> {
        self.stop_renewal();
        self.held.released.store(true, Ordering::Release);
        self.client
            .release_lock(&self.lock, self.token.clone())
            .await
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
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = client.release_lock(&lock, token).await {
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
                    let outcome = tokio::select! {
                        outcome = client.extend_lock(&lock, token.clone()) => outcome,
                        () = tokio::time::sleep_until(until) => {
                            schedule.handle_timeout(clock.now());
                            continue;
                        }
                    };
                    let outcome = match outcome {
                        Ok(extended) => {
                            held.valid_until
                                .fetch_max(extended.valid_until.as_millis(), Ordering::AcqRel);
                            ExtendOutcome::Extended {
                                started: extended.started,
                                valid_until: extended.valid_until,
                            }
                        }
                        Err(e) if matches!(e.lock_error(), Some(distlock_core::Error::NotHeld)) => {
                            ExtendOutcome::NotHeld
                        }
                        Err(e) => {
                            debug!(error = %e, "renewal failed; the schedule tries again");
                            ExtendOutcome::Failed
                        }
                    };
                    schedule.handle_extend_outcome(outcome, clock.now());
                }
                RenewalEvent::Lost(reason) => {
                    match reason {
                        LostReason::NotHeld => {
                            warn!("lease lost: the lock is no longer held by this token")
                        }
                        _ => warn!("lease lost: renewal kept failing until the validity ran out"),
                    }
                    held.lost.send_replace(true);
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

/// Refuses a server given twice, whose vote would count twice (a lock "held" by our own
/// other attempt): first the same host and port in the URLs, before anything is looked up;
/// then two hosts that resolve to a shared address (`localhost` and `127.0.0.1`), before
/// anything is sent. A host that does not resolve by `deadline` is left to its connect,
/// which reports it.
async fn refuse_duplicates(
    endpoints: &[Endpoint],
    deadline: tokio::time::Instant,
) -> Result<(), Error> {
    let duplicate = |first: &Endpoint, second: &Endpoint, address: String| Error::DuplicateNode {
        first: first.to_string(),
        second: second.to_string(),
        address,
    };
    for (i, second) in endpoints.iter().enumerate() {
        if let Some(first) = endpoints[..i].iter().find(|e| e.same_address(second)) {
            return Err(duplicate(first, second, second.address()));
        }
    }
    if endpoints.len() < 2 {
        return Ok(());
    }
    let lookups: Vec<JoinHandle<Vec<std::net::SocketAddr>>> = endpoints
        .iter()
        .map(|e| {
            let (host, port) = (e.host.clone(), e.port);
            tokio::spawn(async move {
                tokio::net::lookup_host((host.as_str(), port))
                    .await
                    .map(Iterator::collect)
                    .unwrap_or_default()
            })
        })
        .collect();
    let mut resolved = Vec::with_capacity(lookups.len());
    for lookup in lookups {
        resolved.push(match tokio::time::timeout_at(deadline, lookup).await {
            Ok(Ok(addresses)) => addresses,
            _ => Vec::new(),
        });
    }
    for (i, second) in endpoints.iter().enumerate() {
        for (j, first) in endpoints[..i].iter().enumerate() {
            if let Some(shared) = resolved[i].iter().find(|a| resolved[j].contains(a)) {
                return Err(duplicate(first, second, shared.to_string()));
            }
        }
    }
    Ok(())
}

/// 16 bytes from the OS's CSPRNG, for tokens.
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // The OS RNG failing is not recoverable for a lock: a predictable token is a security bug.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// A seed for retry jitter: spread, not secret, so no system call per operation. A
/// process-wide counter, started at a random point, each value run through the core's
/// generator (a different counter value gives an unrelated seed).
fn random_u64() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let b = random_bytes();
        AtomicU64::new(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    });
    SplitMix64::new(next.fetch_add(1, Ordering::Relaxed)).next_u64()
}

/// Runs futures concurrently in the calling task and gives their outputs in order (each
/// future is polled until it is done, then never again).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
