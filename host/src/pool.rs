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
//!   reply never reaches the next user; callers drop the others instead.
//! - **A silent node costs no time.** Once a node's connects have gone unanswered for the
//!   ready timeout, connects to it fail at once and one probe per ready timeout runs in the
//!   background; a node whose connect failed waits out its reconnect backoff
//!   ([`distlock_core::RECONNECT`]) before the next.
//! - **A node appears once.** The same server given twice (by URL, or by two names for one
//!   address) is refused before anything is sent: its vote would count twice.

use std::sync::Arc;

use distlock_core::reconnect_pause;
use distlock_core::{Protocol, Reachability, ServerInfo, quorum, reachability};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::clock::{Clock, to_std};
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
    /// After a failed connect: no new attempt before this, and the pauses to come.
    down: std::sync::Mutex<Option<(tokio::time::Instant, u32)>>,
    /// What the node's last handshake learned: what a machine is built with for a node whose
    /// connection is still to be opened.
    known: std::sync::Mutex<Option<ServerInfo>>,
    connecting: std::sync::Mutex<Connecting>,
}

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
    pool: Arc<Pool>,
    node: usize,
    /// Set when the server answered (the connect succeeded).
    answered: bool,
}

impl Attempt {
    fn admit(pool: &Arc<Pool>, node: usize) -> Admission {
        let Some(mut connecting) = pool.nodes.get(node).and_then(|n| n.connecting.lock().ok())
        else {
            return Admission::Refuse;
        };
        let now = tokio::time::Instant::now();
        let silent_after = pool.connect.ready_timeout;
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
            pool: Arc::clone(pool),
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
        let Some(node) = self.pool.nodes.get(self.node) else {
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

/// The nodes of one client, their idle connections and the clock (see the module doc).
pub(crate) struct Pool {
    nodes: Vec<Node>,
    clock: Clock,
    connect: ConnectOptions,
}

impl Pool {
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
        let pool = Self::with_targets(endpoints.into_iter().map(Target::Remote).collect(), connect);
        // Check reachability now, so a typo fails here rather than at the first lock.
        pool.until_ready(deadline).await?;
        Ok(pool)
    }

    /// A pool over a fresh embedded in-process store (one node).
    pub(crate) fn embedded() -> Arc<Pool> {
        Self::with_targets(
            vec![Target::Embedded(Store::new())],
            ConnectOptions::default(),
        )
    }

    fn with_targets(targets: Vec<Target>, connect: ConnectOptions) -> Arc<Pool> {
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
        Arc::new(Pool {
            nodes,
            clock: Clock::new(),
            connect,
        })
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

    /// Each node's endpoint, in node order, as messages name it.
    pub(crate) fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.target.to_string()).collect()
    }

    /// The clock operations over this pool read.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// Connects to every node at once and waits until a quorum has answered, every node has
    /// reported, or `deadline`, whichever comes first. Once a quorum is out of reach it still
    /// waits (within the same deadline) for the nodes under way, so the error counts every
    /// node that answered and blames a real failure. The connects still under way go on in
    /// the background, and their connections join the pool if their nodes answer.
    async fn until_ready(self: &Arc<Self>, deadline: tokio::time::Instant) -> Result<(), Error> {
        let nodes = self.nodes.len();
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
    /// Hand the channel to [`Pool::pool_the_rest`] when done with it.
    fn connect_each(
        self: &Arc<Self>,
        nodes: impl Iterator<Item = usize>,
    ) -> mpsc::UnboundedReceiver<(usize, Result<Conn, Error>)> {
        let (reports, receiver) = mpsc::unbounded_channel();
        for node in nodes {
            let pool = Arc::clone(self);
            let reports = reports.clone();
            tokio::spawn(async move {
                let protocol = pool.known_server(node).protocol;
                let result = pool.connect_node(node, protocol).await;
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
        tokio::spawn(async move { pool.connect_node(node, protocol).await })
    }

    /// An idle connection to `node` that is still alive; dead ones are dropped.
    pub(crate) fn take_idle(&self, node: usize) -> Option<Conn> {
        let mut idle = self.nodes.get(node)?.idle.lock().ok()?;
        while let Some(conn) = idle.pop() {
            if !conn.is_stale() {
                return Some(conn);
            }
            debug!(node, "dropping a dead idle connection");
        }
        None
    }

    /// Opens a new connection to `node`, asking for `protocol`. A node whose last connect
    /// failed is not tried again until its backoff pause ([`distlock_core::RECONNECT`]: 100 ms, doubling to
    /// 2 s) is over, and one whose connects go unanswered for a ready timeout is only probed
    /// in the background, so a dead or frozen node costs an operation nothing but its vote.
    async fn connect_node(
        self: &Arc<Self>,
        node: usize,
        protocol: Protocol,
    ) -> Result<Conn, Error> {
        let Some(slot) = self.nodes.get(node) else {
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
                    self.connect.ready_timeout
                ),
            ),
        };
        match Attempt::admit(self, node) {
            Admission::Go(attempt) => self.dial(attempt, protocol).await,
            Admission::Probe(attempt) => {
                let pool = Arc::clone(self);
                tokio::spawn(async move {
                    if let Ok(conn) = pool.dial(attempt, protocol).await {
                        pool.checkin(node, conn);
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
        let Some(slot) = self.nodes.get(node) else {
            return Err(Error::TooManyNodes(node));
        };
        let clock = self.clock;
        let conn = match &slot.target {
            Target::Remote(endpoint) => Conn::open(endpoint, &self.connect, protocol, &clock).await,
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
                    let failures = previous.map_or(1, |(_, f)| f.saturating_add(1));
                    let pause = to_std(reconnect_pause(failures));
                    Some((tokio::time::Instant::now() + pause, failures))
                }
            };
        }
        conn
    }

    /// Takes `conn` back as one of `node`'s idle connections. Only a connection that owes no
    /// reply may come back (see the module doc).
    pub(crate) fn checkin(&self, node: usize, conn: Conn) {
        if let Some(node) = self.nodes.get(node)
            && let Ok(mut idle) = node.idle.lock()
        {
            // A few idle connections per node are plenty; more are closed.
            if idle.len() < 16 {
                idle.push(conn);
            }
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
