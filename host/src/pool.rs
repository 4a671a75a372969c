//! The node pool: the nodes a client locks over, their idle connections, and the opening of
//! new ones — connecting at start-up within the ready deadline, reconnect backoff, probing a
//! silent node — and the clock every operation over them reads.
//!
//! A [`Pool`] is shared as an `Arc<Pool>`: the client, the operations driven over it and the
//! tasks that go on after an operation ended (connects, probes, settling connections) each
//! hold one, so a connect finishing after its operation still lands in the pool. The pool
//! knows nothing of locks or machines; it only opens, lends and takes back connections.
//!
//! Invariants:
//! - **Only clean connections are idle.** A connection is checked in only when it owes no
//!   reply (fresh from its handshake, or in step with the machine that used it), so a late
//!   reply never reaches the next user; callers drop the others instead. A connection that
//!   owes a pipelined release's reply is held by its background reader instead
//!   ([`Pool::start_reading`]), which puts it back once the reply is read — or hands it, as
//!   it stands between replies, to the operation that claims it ([`Pool::claim_reading`]),
//!   whose machine reads the rest first. That claim takes the connection at once, without
//!   waiting for the reader's task to run (a hop to another thread, as long as a round trip
//!   on a busy machine), unless half a reply is in. One task per pool reads all such
//!   connections ([`Pool::watch_reading`]), each within its reply's deadline.
//! - **The core decides when to connect.** Which node may be opened now, how long a connect
//!   may go unanswered (the ready timeout) and how long a node that failed is left alone
//!   (jittered backoff) are the core's [`Session`]: the pool reports each connect's start and
//!   end and asks before opening, so a down or frozen node costs an operation its vote, not a
//!   connect. Until a node answers, one connect at a time finds out whether it will; a ready
//!   node gets as many connections as operations need. A connect past its deadline goes on in the background (up to the connect
//!   timeout): if the node answers, its connection joins the pool and the node is back.
//! - **An announced failover is followed.** A sentinel-managed node keeps a `+switch-master`
//!   subscription (`sentinel_switch.rs`) for as long as the pool lives (aborted on drop);
//!   once it names a new primary, no connection to another primary is lent or taken back.
//! - **A node appears once.** The same server given twice (by URL, or by two names for one
//!   address) is refused before anything is sent: its vote would count twice.

use std::sync::Arc;

use distlock_core::{
    ConnectOutcome, NodeDown, NodeState, Protocol, ServerInfo, Session, SessionOptions, quorum,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::MAX_NODES;
use crate::clock::{Clock, from_std};
use crate::conn::{Conn, ConnectOptions};
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
    /// What the node's last handshake learned: what a machine is built with for a node whose
    /// connection is still to be opened.
    known: std::sync::Mutex<Option<ServerInfo>>,
    /// Woken when a connect to the node ends or a connection comes back idle: what an
    /// operation waiting on the node's one connect under way listens for.
    changed: tokio::sync::Notify,
    /// A sentinel-managed node's primary, as the last `+switch-master` or discovery named it.
    followed: std::sync::Mutex<Followed>,
    /// Connections read in the background while idle ([`Pool::start_reading`]): lent on
    /// claim, the newest last.
    reading: std::sync::Mutex<Vec<Reading>>,
}

/// A connection read in the background while idle (a pipelined release's reply,
/// `pipelined.rs`), as the pool sees it: something an operation can claim the connection
/// from. The pool knows nothing of what is read; the reader decides when it can let go.
pub(crate) trait BackgroundRead: Send + Sync {
    /// Gives the connection up to the operation that claims it: at once when it stands
    /// between replies (still owing the rest, which that operation's machine reads first),
    /// else once the reply under way is in. Called without any lock of the pool held, and
    /// once: the pool forgets the reader as it calls this.
    fn claim(&self, pool: &Pool) -> Claim;

    /// Reads what has arrived, registering `cx`'s waker for more; ready once the reader has
    /// ended (its check made, or its connection claimed).
    fn poll_read(&self, pool: &Pool, cx: &mut std::task::Context<'_>) -> std::task::Poll<()>;

    /// When the reply is due; `None` once the reader has ended.
    fn deadline(&self) -> Option<distlock_core::Instant>;

    /// The reply's deadline has passed by `now`.
    fn time_out(&self, pool: &Pool, now: distlock_core::Instant);
}

/// The pool's one task that reads idle connections in the background (see
/// [`Pool::watch_reading`]).
#[derive(Default)]
struct Background {
    /// The task, once started: aborted when the pool is dropped.
    task: Option<tokio::task::AbortHandle>,
    /// Its waker, from its last run.
    waker: Option<std::task::Waker>,
    /// When it runs next at the latest (its timer: the earliest reply deadline it knew of);
    /// `None` while it has nothing to read and waits to be woken.
    runs_by: Option<distlock_core::Instant>,
    /// The latest reply deadline registered: with nothing left to read, the task keeps its
    /// timer until then, so a loop of releases (each claimed before the task gets to it)
    /// does not wake it once per release.
    latest: Option<distlock_core::Instant>,
}

/// What claiming a connection read in the background gives (see [`BackgroundRead::claim`]).
pub(crate) enum Claim {
    /// The connection, taken from its reader without waiting for it: it may still owe part
    /// of a pipelined release's reply (`conn.owed`).
    Now(Conn),
    /// Half a reply is in: the connection comes through here once it is all in (within the
    /// reply's deadline); `Err` when the reader dropped it (out of step, or lost).
    Later(oneshot::Receiver<Conn>),
    /// The reader had already ended: its connection is among the idle ones again, or closed.
    Gone,
}

/// One background reader of a node's connection (see [`Pool::start_reading`]).
struct Reading {
    id: u64,
    read: Arc<dyn BackgroundRead>,
}

/// What a sentinel-managed node knows of its current primary (see [`Pool::follow`]).
#[derive(Default)]
struct Followed {
    /// The primary connections must go to; those to another are let go.
    primary: Option<(String, u16)>,
    /// The sentinel a discovery asks first: the one that announced the last switch.
    preferred: usize,
    /// Switches followed so far: a discovery that started before one does not overrule it.
    switches: u64,
}

impl Followed {
    /// Whether `conn` may be used: not a sentinel connection, nothing announced yet, or a
    /// connection to the primary announced.
    fn allows(&self, conn: &Conn) -> bool {
        match (&self.primary, conn.sentinel_primary()) {
            (Some((host, port)), Some((to, at))) => at == *port && to.eq_ignore_ascii_case(host),
            _ => true,
        }
    }
}

/// The nodes of one client, their idle connections and the clock (see the module doc).
pub(crate) struct Pool {
    nodes: Vec<Node>,
    /// Which nodes may be connected now, and where the set stands: the core's decision.
    session: std::sync::Mutex<Session<MAX_NODES>>,
    clock: Clock,
    connect: ConnectOptions,
    /// Operations under way over this pool (see [`Pool::operation`]).
    operations: std::sync::atomic::AtomicUsize,
    /// The id of the next background reader ([`Pool::start_reading`]).
    readers: std::sync::atomic::AtomicU64,
    /// The `+switch-master` subscriptions of the sentinel-managed nodes: aborted on drop.
    subscriptions: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// The task reading idle connections in the background ([`Pool::watch_reading`]).
    background: std::sync::Mutex<Background>,
    /// Background readers whose check is decided but not yet reported (a reader reports
    /// once its lock is let go): [`Pool::reports_settled`] waits for them.
    reports_in_flight: std::sync::atomic::AtomicUsize,
    /// Told when the last report in flight is made.
    reports_done: tokio::sync::Notify,
}

impl Drop for Pool {
    fn drop(&mut self) {
        let subscriptions = self
            .subscriptions
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for subscription in subscriptions.drain(..) {
            subscription.abort();
        }
        let background = self
            .background
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = background.task.take() {
            task.abort();
        }
    }
}

/// One operation under way over a [`Pool`], counted until dropped.
pub(crate) struct Operation<'a>(&'a Pool);

impl Drop for Operation<'_> {
    fn drop(&mut self) {
        self.0
            .operations
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Pool {
    /// Counts an operation under way until the returned value is dropped.
    pub(crate) fn operation(&self) -> Operation<'_> {
        self.operations
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Operation(self)
    }

    /// Whether any operation is under way over this pool (a waiter of this process, say).
    pub(crate) fn busy(&self) -> bool {
        self.operations.load(std::sync::atomic::Ordering::Acquire) > 0
    }

    /// A pool over the Redis nodes at `endpoints`, once it is usable: refuses a server given
    /// twice, then connects to every node and waits until a quorum has answered (see
    /// [`Pool::until_ready`]), all within one ready timeout — looking the hosts up included.
    pub(crate) async fn connect(
        endpoints: Vec<Endpoint>,
        connect: ConnectOptions,
    ) -> Result<Arc<Pool>, Error> {
        // One budget for the whole of connecting: looking the hosts up and waiting for them.
        let deadline = tokio::time::Instant::now() + connect.ready_timeout;
        refuse_duplicates(&endpoints, deadline).await?;
        let pool =
            Self::with_targets(endpoints.into_iter().map(Target::Remote).collect(), connect)?;
        pool.subscribe_to_switches();
        // Check reachability now, so a typo fails here rather than at the first lock.
        pool.until_ready(deadline).await?;
        Ok(pool)
    }

    /// A pool over the Redis nodes at `endpoints` of a client that is connected already (an
    /// operator command's part of its nodes): no reachability check, each connection is
    /// opened when an operation first sends to its node, within that operation's deadline.
    pub(crate) fn beside(
        endpoints: Vec<Endpoint>,
        connect: ConnectOptions,
    ) -> Result<Arc<Pool>, Error> {
        let pool =
            Self::with_targets(endpoints.into_iter().map(Target::Remote).collect(), connect)?;
        pool.subscribe_to_switches();
        Ok(pool)
    }

    /// A pool over a fresh embedded in-process store (one node).
    pub(crate) fn embedded() -> Arc<Pool> {
        Self::with_targets(
            vec![Target::Embedded(Store::new())],
            ConnectOptions::default(),
        )
        .expect("one node is within every session's capacity")
    }

    /// A pool over `targets`, none connected yet; the session's connect deadline is the ready
    /// timeout and its reconnect jitter is drawn from OS entropy.
    fn with_targets(targets: Vec<Target>, connect: ConnectOptions) -> Result<Arc<Pool>, Error> {
        let count = targets.len();
        let options = SessionOptions::new(from_std(connect.ready_timeout));
        let session = Session::new(count, options, crate::entropy::random_u64())
            .map_err(|_| Error::TooManyNodes(count))?;
        let nodes = targets
            .into_iter()
            .map(|target| Node {
                target,
                idle: std::sync::Mutex::new(Vec::new()),
                known: std::sync::Mutex::new(None),
                changed: tokio::sync::Notify::new(),
                followed: std::sync::Mutex::new(Followed::default()),
                reading: std::sync::Mutex::new(Vec::new()),
            })
            .collect();
        Ok(Arc::new(Pool {
            nodes,
            session: std::sync::Mutex::new(session),
            clock: Clock::new(),
            connect,
            operations: std::sync::atomic::AtomicUsize::new(0),
            readers: std::sync::atomic::AtomicU64::new(0),
            subscriptions: std::sync::Mutex::new(Vec::new()),
            background: std::sync::Mutex::new(Background::default()),
            reports_in_flight: std::sync::atomic::AtomicUsize::new(0),
            reports_done: tokio::sync::Notify::new(),
        }))
    }

    /// Starts the `+switch-master` subscription of every sentinel-managed node.
    fn subscribe_to_switches(self: &Arc<Self>) {
        for (node, slot) in self.nodes.iter().enumerate() {
            let Target::Remote(endpoint) = &slot.target else {
                continue;
            };
            if endpoint.sentinel.is_none() {
                continue;
            }
            let task = crate::sentinel_switch::spawn(
                Arc::downgrade(self),
                node,
                endpoint.clone(),
                self.connect.clone(),
                self.clock,
            );
            if let Ok(mut subscriptions) = self.subscriptions.lock() {
                subscriptions.push(task.abort_handle());
            }
        }
    }

    /// A sentinel announced that `node`'s service failed over to `primary`, by sentinel
    /// `announced_by`: the node's idle connections to any other primary are closed now, those
    /// in use are not taken back, and the next connect asks `announced_by` first — and still
    /// checks the new primary's `ROLE`.
    pub(crate) fn follow(
        &self,
        node: usize,
        primary: &distlock_core::Primary,
        announced_by: usize,
    ) {
        let Some(slot) = self.nodes.get(node) else {
            return;
        };
        let Ok(mut followed) = slot.followed.lock() else {
            return;
        };
        followed.primary = Some((primary.host().to_owned(), primary.port()));
        followed.preferred = announced_by;
        followed.switches = followed.switches.wrapping_add(1);
        let gone: Vec<Conn> = match slot.idle.lock() {
            Ok(mut idle) => {
                let (keep, gone) = idle.drain(..).partition(|conn| followed.allows(conn));
                *idle = keep;
                gone
            }
            Err(_) => Vec::new(),
        };
        drop(followed);
        debug!(
            node,
            closed = gone.len(),
            "a sentinel announced a new primary"
        );
        drop(gone);
    }

    /// Whether `conn` may serve `node` (see [`Followed::allows`]).
    fn allowed(&self, node: usize, conn: &Conn) -> bool {
        self.nodes
            .get(node)
            .and_then(|slot| slot.followed.lock().ok().map(|f| f.allows(conn)))
            .unwrap_or(true)
    }

    /// Runs `f` on the session, brought up to now first (its deadlines are checked whenever
    /// it is asked, so no timer task is needed).
    fn session<R>(
        &self,
        f: impl FnOnce(&mut Session<MAX_NODES>, distlock_core::Instant) -> R,
    ) -> R {
        let now = self.clock.now();
        // A panic elsewhere while it was held leaves the session consistent: every update is
        // one call.
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        session.handle_timeout(now);
        f(&mut session, now)
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether a node is the embedded in-process store.
    pub(crate) fn is_embedded(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n.target, Target::Embedded(_)))
    }

    /// Whether a node is a Redis Cluster (`redis+cluster://`).
    pub(crate) fn has_cluster(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(&n.target, Target::Remote(e) if e.cluster))
    }

    /// The cluster's URL and the connect options, when this pool's one node is a Redis
    /// Cluster (`redis+cluster://`).
    pub(crate) fn only_cluster(&self) -> Option<(Endpoint, ConnectOptions)> {
        match self.nodes.as_slice() {
            [
                Node {
                    target: Target::Remote(endpoint),
                    ..
                },
            ] if endpoint.cluster => Some((endpoint.clone(), self.connect.clone())),
            _ => None,
        }
    }

    /// Every node's endpoint (in node order) and the connect options, when some node is a
    /// Redis Cluster (`redis+cluster://`; the nodes are then all remote).
    pub(crate) fn with_clusters(&self) -> Option<(Vec<Endpoint>, ConnectOptions)> {
        if !self.has_cluster() {
            return None;
        }
        let endpoints = self
            .nodes
            .iter()
            .map(|n| match &n.target {
                Target::Remote(endpoint) => Some(endpoint.clone()),
                Target::Embedded(_) => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some((endpoints, self.connect.clone()))
    }

    /// Each node's endpoint, in node order, as messages name it.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.target.to_string()).collect()
    }

    /// The clock operations over this pool read.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// Connects to every node at once and waits until the session says how it went (a quorum
    /// is ready, or every node has answered, failed or passed its deadline), or `deadline`,
    /// whichever comes first. Once a quorum is out of reach it still waits (within the same
    /// deadline) for the nodes under way, so the error counts every node that answered and
    /// blames a real failure. The connects still under way go on in the background, and their
    /// connections join the pool if their nodes answer.
    async fn until_ready(self: &Arc<Self>, deadline: tokio::time::Instant) -> Result<(), Error> {
        let nodes = self.nodes.len();
        let mut reports = self.connect_each(0..nodes);
        let mut reported = vec![false; nodes];
        let mut last = None;
        loop {
            let (outcome, next) = self.session(|s, _| (s.connect_outcome(), s.poll_timeout()));
            // A node's failure reaches the session before its report reaches this loop: a
            // failed outcome waits for the reports still on their way, so the error is the
            // node's own (a refused login) and not "no answer".
            let all_reported = reported.iter().all(|seen| *seen);
            if outcome == Some(ConnectOutcome::Ready) || (outcome.is_some() && all_reported) {
                break;
            }
            // Wake for the session's next deadline too: that is when a silent node gives up.
            let wake = match outcome {
                Some(_) => deadline,
                None => next.map_or(deadline, |at| self.clock.to_tokio(at).min(deadline)),
            };
            match tokio::time::timeout_at(wake, reports.recv()).await {
                Ok(Some((node, result))) => {
                    if let Some(seen) = reported.get_mut(node) {
                        *seen = true;
                    }
                    match result {
                        Ok(conn) => self.checkin(node, conn),
                        Err(e) => last = Some(e),
                    }
                }
                // Every task reports before it ends, so the channel closes only after all have.
                Ok(None) => break,
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => {}
            }
        }
        self.pool_the_rest(reports);
        let (outcome, reachable) = self.session(|s, _| (s.connect_outcome(), s.ready()));
        if outcome == Some(ConnectOutcome::Ready) {
            return Ok(());
        }
        for (node, _) in reported.iter().enumerate().filter(|(_, seen)| !**seen) {
            last = Some(self.no_answer(node));
        }
        let last = last.unwrap_or(Error::TooManyNodes(0));
        // One node: its own error says it best.
        if nodes == 1 {
            return Err(last);
        }
        Err(Error::TooFewNodes {
            reachable,
            nodes,
            needed: quorum(nodes),
            last: Box::new(last),
        })
    }

    /// Opens a connection to each of `nodes` at once, each in a task of its own that goes on
    /// when the caller stops waiting; each reports `(node, result)` on the channel returned.
    /// Hand the channel to [`Pool::pool_the_rest`] when done with it.
    fn connect_each(
        self: &Arc<Self>,
        nodes: impl Iterator<Item = usize>,
    ) -> mpsc::UnboundedReceiver<(usize, Result<Conn, Error>)> {
        let (reports, receiver) = mpsc::unbounded_channel();
        for node in nodes {
            let pool = Arc::clone(self);
            let reports = reports.clone();
            let protocol = self.known_server(node).protocol;
            // Admitted here, not in the task: the session knows of the connect before the
            // caller next asks it.
            let admitted = self.admit(node);
            tokio::spawn(async move {
                let result = match admitted {
                    Ok(()) => pool.dial(node, protocol).await,
                    Err(e) => Err(e),
                };
                // Nobody is waiting any more: the connection is still worth pooling.
                if let Err(mpsc::error::SendError((node, Ok(conn)))) = reports.send((node, result))
                {
                    pool.checkin(node, conn);
                }
            });
        }
        receiver
    }

    /// Stops listening to [`Pool::connect_each`]'s reports: connections already reported
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
            .nodes
            .get(node)
            .map_or_else(|| format!("node {node}"), |n| n.target.to_string());
        Error::Connect {
            endpoint,
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {:?}", self.connect.ready_timeout),
            ),
        }
    }

    /// What `node`'s last handshake learned; before any, a server assumed to speak RESP3
    /// (as the handshake asks) with nothing else known.
    pub(crate) fn known_server(&self, node: usize) -> ServerInfo {
        self.nodes
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
    pub(crate) fn open(
        self: &Arc<Self>,
        node: usize,
        protocol: Protocol,
    ) -> JoinHandle<Result<Conn, Error>> {
        let pool = Arc::clone(self);
        let admitted = self.admit(node);
        tokio::spawn(async move {
            match admitted {
                Ok(()) => pool.dial(node, protocol).await,
                Err(refused) => pool.join_connect(node, protocol, refused).await,
            }
        })
    }

    /// `node` was not admitted. When that is because its one connect is under way (the
    /// session allows one at a time until a node answers — the connect a client started, say,
    /// still going when it returned at a quorum), waits for that connect up to the session's
    /// deadline for it and takes the connection it brings, or connects anew once the node is
    /// ready, instead of counting an answering node as unreachable. Otherwise `refused`.
    async fn join_connect(
        &self,
        node: usize,
        protocol: Protocol,
        refused: Error,
    ) -> Result<Conn, Error> {
        let Some(slot) = self.nodes.get(node) else {
            return Err(refused);
        };
        loop {
            // Created before the checks: a wake-up between them and the wait is not lost.
            let changed = slot.changed.notified();
            let deadline = match self.session(|s, _| s.state(node)) {
                Some(NodeState::Connecting { deadline }) => deadline,
                // The connect ended: admitted now (ready, or closed again), or refused for
                // good (backing off).
                _ => {
                    return match self.admit(node) {
                        Ok(()) => self.dial(node, protocol).await,
                        Err(e) => Err(e),
                    };
                }
            };
            if let Some(conn) = self.take_idle(node, false) {
                if conn.server.protocol == protocol {
                    return Ok(conn);
                }
                // Built for another RESP version: the next operation, built for this
                // server, takes it.
                self.checkin(node, conn);
                return Err(refused);
            }
            let until = self.clock.to_tokio(deadline);
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return Err(refused);
            }
        }
    }

    /// An idle connection to `node` that is still alive, the last one checked in first;
    /// dead ones are dropped. `owing`: one that owes a pipelined release's reply will do
    /// too — only for a lock machine, which reads that reply first
    /// (`Machine::owe_release`); without it such connections stay idle.
    pub(crate) fn take_idle(&self, node: usize, owing: bool) -> Option<Conn> {
        let mut idle = self.nodes.get(node)?.idle.lock().ok()?;
        let mut at = idle.len();
        while at > 0 {
            at -= 1;
            let Some(conn) = idle.get(at) else {
                break;
            };
            if conn.owed.is_some() && !owing {
                continue;
            }
            let conn = idle.remove(at);
            // A connection owing a reply is readable once the reply is in: that says nothing
            // of whether it is dead (its reader finds out, and reports the release
            // unconfirmed if so).
            let alive = conn.owed.is_some() || !conn.is_stale();
            if alive && self.allowed(node, &conn) {
                return Some(conn);
            }
            // Not a session event: an idle connection the server closed (a restart, its idle
            // timeout) says nothing of whether the node answers now; the next connect does.
            debug!(node, "dropping a dead idle connection");
        }
        None
    }

    /// An idle connection to `node` that owes a pipelined release's reply, to be read by
    /// [`crate::pipelined`]'s settling.
    pub(crate) fn take_owing(&self, node: usize) -> Option<Conn> {
        let mut idle = self.nodes.get(node)?.idle.lock().ok()?;
        let at = idle.iter().rposition(|conn| conn.owed.is_some())?;
        Some(idle.remove(at))
    }

    /// A connection to `node` is read in the background while idle (a pipelined release's
    /// reply, `pipelined.rs`) by `read`: until the reader ends with [`Pool::finish_reading`]
    /// (passing the id returned here), an operation may claim the connection from it
    /// ([`Pool::claim_reading`]).
    pub(crate) fn start_reading(&self, node: usize, read: Arc<dyn BackgroundRead>) -> u64 {
        let id = self
            .readers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(slot) = self.nodes.get(node)
            && let Ok(mut reading) = slot.reading.lock()
        {
            reading.push(Reading { id, read });
        }
        id
    }

    /// Has the pool's background task read `read` (registered with [`Pool::start_reading`])
    /// until it ends, without waking the task when it can be helped: the task's waker is
    /// registered on the connection here, by a poll from the calling thread, so the reply
    /// wakes the task only if no operation claimed the connection first; and the task is
    /// woken only when its timer would not run it by the reply's deadline (it was idle, or
    /// this reply is due sooner). Call without holding any lock of `read`.
    pub(crate) fn watch_reading(self: &Arc<Self>, read: &Arc<dyn BackgroundRead>) {
        let Some(deadline) = read.deadline() else {
            return;
        };
        let mut background = self
            .background
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // None yet, or ended with the runtime it ran on (a client outliving one).
        if background
            .task
            .as_ref()
            .is_none_or(|task| task.is_finished())
        {
            // Its first run reads every registered connection, this one included.
            background.waker = None;
            background.runs_by = None;
            let task = tokio::spawn(read_in_background(Arc::downgrade(self)));
            background.task = Some(task.abort_handle());
            return;
        }
        background.latest = Some(background.latest.map_or(deadline, |l| l.max(deadline)));
        let Some(waker) = background.waker.clone() else {
            // Started, not yet run: it will read this one when it runs.
            return;
        };
        let covered = background.runs_by.is_some_and(|by| by <= deadline);
        drop(background);
        if covered {
            let _ = read.poll_read(self, &mut std::task::Context::from_waker(&waker));
        } else {
            waker.wake();
        }
    }

    /// Every connection read in the background now.
    fn reading_now(&self) -> Vec<Arc<dyn BackgroundRead>> {
        let mut all = Vec::new();
        for node in &self.nodes {
            if let Ok(reading) = node.reading.lock() {
                all.extend(reading.iter().map(|r| Arc::clone(&r.read)));
            }
        }
        all
    }

    /// One run of the background task: times out the replies past their deadline, reads
    /// the rest, and sets its timer to the earliest deadline left — with nothing left to
    /// read, to the latest deadline registered while that is still ahead, else none (woken
    /// by [`Pool::watch_reading`]). Returns when the task must run next at the latest.
    fn poll_background(&self, cx: &mut std::task::Context<'_>) -> Option<distlock_core::Instant> {
        loop {
            let now = self.clock.now();
            let mut earliest: Option<distlock_core::Instant> = None;
            for read in self.reading_now() {
                match read.deadline() {
                    Some(due) if due <= now => read.time_out(self, now),
                    Some(_) => {
                        if read.poll_read(self, cx).is_pending()
                            && let Some(due) = read.deadline()
                        {
                            earliest = Some(earliest.map_or(due, |e| e.min(due)));
                        }
                    }
                    None => {}
                }
            }
            let mut background = self
                .background
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            background.waker = Some(cx.waker().clone());
            // Lock order: this lock, then the reading lists and a reader's own; nothing
            // takes this one while holding those (`watch_reading` is called without them).
            // A connection registered since the snapshot, before this lock, saw the old
            // timer: read it now. One registered after takes this lock next and sees this
            // run's timer (or none, and wakes the task).
            if earliest.is_none() && self.reading_now().iter().any(|r| r.deadline().is_some()) {
                continue;
            }
            let due = earliest.or(background.latest.filter(|&latest| latest > now));
            background.runs_by = due;
            return due;
        }
    }

    /// Claims the connection to `node` last put to background reading, if there is one (see
    /// [`BackgroundRead::claim`]). No wait when the reader stands between replies: the
    /// operation goes on at once, without the reader's task having to run.
    pub(crate) fn claim_reading(&self, node: usize) -> Option<Claim> {
        let mut reading = self.nodes.get(node)?.reading.lock().ok()?;
        let claimed = reading.pop()?;
        // The reader's own lock is taken in `claim`, never while this one is held: the
        // reader calls `finish_reading` (this lock) while holding its own.
        drop(reading);
        Some(claimed.read.claim(self))
    }

    /// A background reader's check is decided and will be reported once the reader lets its
    /// lock go; [`Pool::report_finished`] follows the report.
    pub(crate) fn report_started(&self) {
        self.reports_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// The report [`Pool::report_started`] announced is made.
    pub(crate) fn report_finished(&self) {
        if self
            .reports_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.reports_done.notify_waiters();
        }
    }

    /// Returns once no background reader's report is in flight: a reader that ended (so
    /// claims find it gone) has also reported.
    pub(crate) async fn reports_settled(&self) {
        loop {
            let done = self.reports_done.notified();
            tokio::pin!(done);
            // Registered before the count is read, so a report finishing in between wakes it.
            done.as_mut().enable();
            if self
                .reports_in_flight
                .load(std::sync::atomic::Ordering::SeqCst)
                == 0
            {
                return;
            }
            done.await;
        }
    }

    /// The reader `id` of `node` ends, with its connection when it is in step (its reply read
    /// and reported): back among the idle ones. The reader calls this once no operation can
    /// claim the connection from it any more, and before letting one that tries find out,
    /// so an operation finds the connection claimable, idle, or closed — never lent twice,
    /// never missing.
    pub(crate) fn finish_reading(&self, node: usize, id: u64, conn: Option<Conn>) {
        let Some(slot) = self.nodes.get(node) else {
            return;
        };
        if let Ok(mut reading) = slot.reading.lock()
            && let Some(at) = reading.iter().position(|r| r.id == id)
        {
            reading.remove(at);
        }
        if let Some(conn) = conn {
            self.checkin(node, conn);
        }
    }

    /// Asks the core's session whether a connect to `node` may start now, and tells it one
    /// does (see the module doc): a node that backs off (its last connect failed, or its
    /// connects went unanswered for the ready timeout) fails at once, so a dead or frozen node
    /// costs an operation nothing but its vote. Each `Ok` must be followed by [`Pool::dial`],
    /// which reports how the connect ended.
    fn admit(&self, node: usize) -> Result<(), Error> {
        let Some(slot) = self.nodes.get(node) else {
            return Err(Error::TooManyNodes(node));
        };
        let admitted = self.session(|s, now| {
            if s.may_connect(node, now) {
                s.connect_started(node, now);
                Ok(())
            } else {
                Err((s.state(node), s.down(node)))
            }
        });
        let Err((state, down)) = admitted else {
            return Ok(());
        };
        let (kind, why) = match down {
            _ if matches!(state, Some(NodeState::Connecting { .. })) => (
                std::io::ErrorKind::NotConnected,
                "still connecting: its first connect has not answered yet".to_string(),
            ),
            Some(NodeDown::TimedOut | NodeDown::Silent) => (
                std::io::ErrorKind::TimedOut,
                format!(
                    "not answering: its connects have gone unanswered for {:?}; waiting before trying again",
                    self.connect.ready_timeout
                ),
            ),
            _ => (
                std::io::ErrorKind::NotConnected,
                "down at the last attempt; waiting before reconnecting".to_string(),
            ),
        };
        debug!(node, ?state, ?down, "not connecting");
        Err(Error::Connect {
            endpoint: slot.target.to_string(),
            source: std::io::Error::new(kind, why),
        })
    }

    /// Opens a connection to `node`, asking for `protocol`, for a connect [`Pool::admit`]ted,
    /// and reports to the session how it ended.
    async fn dial(&self, node: usize, protocol: Protocol) -> Result<Conn, Error> {
        let Some(slot) = self.nodes.get(node) else {
            return Err(Error::TooManyNodes(node));
        };
        let clock = self.clock;
        let (preferred, switches) = slot
            .followed
            .lock()
            .map_or((0, 0), |f| (f.preferred, f.switches));
        let conn = match &slot.target {
            Target::Remote(endpoint) if endpoint.sentinel.is_some() => {
                crate::sentinel::open(endpoint, &self.connect, protocol, &clock, preferred).await
            }
            Target::Remote(endpoint) => Conn::open(endpoint, &self.connect, protocol, &clock).await,
            Target::Embedded(store) => store.connect(protocol, &clock).await,
        };
        // A primary discovered and checked since the last switch is the current one: a later
        // failover the subscription missed must not leave every new connection refused.
        if let Ok(conn) = &conn
            && let Some((host, port)) = conn.sentinel_primary()
            && let Ok(mut followed) = slot.followed.lock()
            && followed.switches == switches
        {
            followed.primary = Some((host.to_owned(), port));
        }
        if let (Ok(conn), Ok(mut known)) = (&conn, slot.known.lock()) {
            *known = Some(conn.server);
        }
        self.session(|s, now| match &conn {
            Ok(_) => s.connected(node, now),
            Err(_) => s.connect_failed(node, now),
        });
        slot.changed.notify_waiters();
        conn
    }

    /// A connection to `node` in use by an operation failed (closed by the server, a read or
    /// write error): the session hears of it, as from the lock component's driver, so it
    /// knows the node is no longer ready and the next connect finds out whether it is back.
    pub(crate) fn lost(&self, node: usize) {
        self.session(|s, now| s.disconnected(node, now));
    }

    /// Takes `conn` back as one of `node`'s idle connections. Only a connection that owes no
    /// reply may come back (see the module doc).
    pub(crate) fn checkin(&self, node: usize, conn: Conn) {
        // A connection to a primary a sentinel announced as replaced is closed, not kept.
        if !self.allowed(node, &conn) {
            return;
        }
        if let Some(node) = self.nodes.get(node)
            && let Ok(mut idle) = node.idle.lock()
        {
            // A few idle connections per node are plenty; more are closed.
            if idle.len() < 16 {
                idle.push(conn);
            }
            drop(idle);
            node.changed.notify_waiters();
        }
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
        // A seed shared by two URLs: one cluster given twice, or a cluster and one of its
        // own nodes.
        for first in &endpoints[..i] {
            // One group of sentinels commonly watches several services: each is a node. One
            // service through a shared sentinel is one primary given twice.
            if first.sentinel.is_some()
                && second.sentinel.is_some()
                && first.sentinel != second.sentinel
            {
                continue;
            }
            if let Some((host, port)) = second.seeds().into_iter().find(|(host, port)| {
                first
                    .seeds()
                    .iter()
                    .any(|(h, p)| p == port && h.eq_ignore_ascii_case(host))
            }) {
                return Err(duplicate(first, second, first.at(&host, port).address()));
            }
        }
    }
    if endpoints.len() < 2 {
        return Ok(());
    }
    let lookups: Vec<JoinHandle<Vec<std::net::SocketAddr>>> = endpoints
        .iter()
        .map(|e| {
            let (host, port) = (e.host.clone(), e.port);
            // A sentinel's address is not the lock node's: the primary it names is, and two
            // services of one group share their sentinels.
            let sentinel = e.sentinel.is_some();
            tokio::spawn(async move {
                if sentinel {
                    return Vec::new();
                }
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

/// The pool's background reader (see [`Pool::watch_reading`]): runs while the pool lives,
/// reading the connections registered with it, each until its reply is in, its deadline
/// passes or an operation claims it.
async fn read_in_background(pool: std::sync::Weak<Pool>) {
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        loop {
            let Some(pool) = pool.upgrade() else {
                return std::task::Poll::Ready(());
            };
            let Some(due) = pool.poll_background(cx) else {
                timer = None;
                return std::task::Poll::Pending;
            };
            let at = pool.clock.to_tokio(due);
            let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            sleep.as_mut().reset(at);
            if sleep.as_mut().poll(cx).is_pending() {
                return std::task::Poll::Pending;
            }
        }
    })
    .await;
}
