//! The node set of one client: which nodes to (re)connect and when, how long a connect may
//! take, and whether the set can run lock operations — one answer for every driver.
//!
//! [`Session`] is a sans-IO machine over up to `N` nodes. The driver opens sockets and runs
//! handshakes; it tells the session what happened ([`Session::connect_started`],
//! [`Session::connected`], [`Session::connect_failed`], [`Session::disconnected`],
//! [`Session::silent`]) and when time passed ([`Session::handle_timeout`]), and asks it what
//! to do ([`Session::poll_connect`], [`Session::may_connect`], [`Session::poll_timeout`]) and
//! where the set stands ([`Session::reachability`], [`Session::connect_outcome`]).
//!
//! Each node is, at any time, in one [`NodeState`]:
//! - **closed**: never tried, or its connection was lost; open it when it is needed;
//! - **connecting**, with a deadline: connect plus handshake must answer within the request
//!   timeout ([`SessionOptions::connect_timeout`]), or the node counts as silent; a node
//!   tried again after its pause is connecting too (it can answer again);
//! - **ready**: a connect answered, and nothing has failed since;
//! - **backing off** until an instant: its last connect failed or went unanswered; the pause
//!   comes from [`RetryPolicy`] with jitter ([`RECONNECT`]), drawn from the caller's seed, so
//!   a crowd of clients does not reconnect to a restarted server in lockstep.
//!
//! A connection that went a whole request timeout without a reply byte (a node frozen while
//! connected) **is** a session event ([`Session::silent`]): the node backs off like one whose
//! connect went unanswered. Reconnecting at once would leave one more connect hanging on a
//! frozen node for every operation; backing off costs an operation only the node's vote.
//! A connection lost outright (closed, reset) puts the node back to closed: the next need
//! reconnects at once, and a node that refuses then backs off.
//!
//! Connects the driver reported as started and not yet as ended are *outstanding*. A connect
//! past its deadline stays outstanding (a host may let it go on in the background, and if it
//! answers late the node is ready again), but the node no longer waits for it.
//!
//! Invariants (property-tested below):
//! - [`Session::reachability`] is `Ready` exactly when a quorum of nodes is ready, and
//!   `Unreachable` exactly when the ready nodes and those whose attempt can still answer
//!   (closed, or connecting within the deadline) are fewer than a quorum;
//! - [`Session::poll_connect`] never names a node that is backing off, nor one with a
//!   connect outstanding within its deadline; [`Session::may_connect`] allows more than one
//!   such connect at a time only to a ready node (a pool of connections). A connect past its
//!   deadline does not hold the node's next one back: the session gave up on it, and waiting
//!   for a host's background connect to end would delay the node's return by that host's
//!   own connect timeout (5 s for the tokio host);
//! - every backoff pause is within the reconnect policy's bounds (`[1 ms, cap]`);
//! - a connect deadline is never more than the connect timeout away, and none is left past
//!   due after [`Session::handle_timeout`].
//!
//! No input panics the session: unknown nodes are ignored and counts saturate.

use crate::error::ConfigError;
use crate::lock::{MAX_NODES, quorum};
use crate::retry::{Backoff, Jitter, RetryPolicy, SplitMix64, operation_seed};
use crate::time::{Duration, Instant};

/// Where connecting to a set of nodes stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reachability {
    /// A quorum has answered: lock operations can run (the rest may join later).
    Ready,
    /// Not yet a quorum, but the nodes still pending could make one.
    Waiting,
    /// Too many nodes failed for a quorum, whatever the pending ones do.
    Unreachable,
}

/// Where connecting to `nodes` nodes stands once `answered` have answered and `failed` have
/// failed (the rest are pending). Counts above `nodes` are treated as `nodes`.
#[must_use]
pub const fn reachability(nodes: usize, answered: usize, failed: usize) -> Reachability {
    let needed = quorum(nodes);
    if answered >= needed {
        Reachability::Ready
    } else if nodes.saturating_sub(failed) < needed {
        Reachability::Unreachable
    } else {
        Reachability::Waiting
    }
}

/// The pauses before connecting again to a node whose last connect failed or went
/// unanswered: decorrelated jitter between 100 ms and three times the previous pause, at
/// most 2 s. A refused connect is cheap for the server, but many clients of a restarted
/// server would otherwise come back together; the pause keeps a down node from costing every
/// operation a connect.
pub const RECONNECT: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
    jitter: Jitter::Decorrelated,
    max_attempts: None,
};

/// How a [`Session`] connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Connect plus handshake of a node, at most, before the node counts as silent: the
    /// lock's request timeout, so a node that does not answer costs connecting what it costs
    /// an operation (its vote), not more time. Zero is taken as 1 ms.
    pub connect_timeout: Duration,
    /// The pauses before reconnecting to a node that failed ([`RECONNECT`] by default).
    pub reconnect: RetryPolicy,
}

impl SessionOptions {
    /// Connects bounded by `request_timeout`, pauses from [`RECONNECT`].
    #[must_use]
    pub const fn new(request_timeout: Duration) -> Self {
        SessionOptions {
            connect_timeout: request_timeout,
            reconnect: RECONNECT,
        }
    }
}

impl Default for SessionOptions {
    /// The default lock options' request timeout (1 s), [`RECONNECT`].
    fn default() -> Self {
        SessionOptions::new(crate::lock::LockOptions::default().request_timeout)
    }
}

/// Where one node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeState {
    /// Not connected and free to connect: never tried, or its connection was lost.
    Closed,
    /// A connect is under way; the node counts as silent if none answers by `deadline`.
    Connecting {
        /// When the outstanding connects count as unanswered.
        deadline: Instant,
    },
    /// A connect answered and nothing failed since.
    Ready,
    /// The last connect failed or went unanswered: no new one before `until`.
    BackingOff {
        /// The end of the pause.
        until: Instant,
    },
}

/// Why a node is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeDown {
    /// Its connect or handshake failed (refused, reset, a server error).
    Failed,
    /// Its connect did not answer within the connect timeout.
    TimedOut,
    /// Its connection was lost.
    Lost,
    /// Its connection went a request timeout without a reply.
    Silent,
}

/// How the first connect to the set ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectOutcome {
    /// A quorum is ready.
    Ready,
    /// Every node answered or gave up, and fewer than a quorum are ready; each other node's
    /// reason is [`Session::down`].
    TooFew {
        /// Nodes ready.
        ready: usize,
        /// Nodes in the set.
        nodes: usize,
        /// The quorum.
        needed: usize,
    },
}

/// Whether a node is ready, backing off, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Closed,
    Ready,
    BackingOff(Instant),
}

/// One node's part of the session.
#[derive(Debug, Clone, Copy)]
struct Slot {
    standing: Standing,
    /// Connects started and not yet reported.
    outstanding: u32,
    /// When the outstanding connects count as unanswered (`None`: none outstanding, or the
    /// node already gave up on them).
    deadline: Option<Instant>,
    backoff: Backoff,
    /// Seeds of this node's later backoffs (a fresh one after each success).
    seeds: SplitMix64,
    down: Option<NodeDown>,
}

/// The connect policy of a set of up to `N` nodes (see the module doc).
#[derive(Debug, Clone)]
pub struct Session<const N: usize = MAX_NODES> {
    slots: [Slot; N],
    nodes: usize,
    options: SessionOptions,
}

impl<const N: usize> Session<N> {
    /// A session over `nodes` nodes, all closed; `seed` (the caller's entropy, or a
    /// simulation's) draws the reconnect jitter.
    pub fn new(nodes: usize, options: SessionOptions, seed: u64) -> Result<Self, ConfigError> {
        if nodes == 0 || nodes > N {
            return Err(ConfigError::BadNodeCount { nodes, capacity: N });
        }
        options.reconnect.validate()?;
        let options = SessionOptions {
            connect_timeout: options.connect_timeout.max(Duration::from_millis(1)),
            ..options
        };
        let mut node = 0u64;
        let slots = [(); N].map(|()| {
            let mut seeds = SplitMix64::new(operation_seed(seed, node));
            node += 1;
            Slot {
                standing: Standing::Closed,
                outstanding: 0,
                deadline: None,
                backoff: Backoff::new(options.reconnect, seeds.next_u64()),
                seeds,
                down: None,
            }
        });
        Ok(Session {
            slots,
            nodes,
            options,
        })
    }

    /// How many nodes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes
    }

    /// Always false: a session has at least one node.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes == 0
    }

    /// The options in force.
    #[must_use]
    pub fn options(&self) -> SessionOptions {
        self.options
    }

    fn slot(&self, node: usize) -> Option<&Slot> {
        self.slots.get(..self.nodes)?.get(node)
    }

    fn slot_mut(&mut self, node: usize) -> Option<&mut Slot> {
        self.slots.get_mut(..self.nodes)?.get_mut(node)
    }

    fn active(&self) -> &[Slot] {
        self.slots.get(..self.nodes).unwrap_or_default()
    }

    /// Where `node` stands (`None` for a node outside the set).
    #[must_use]
    pub fn state(&self, node: usize) -> Option<NodeState> {
        let slot = self.slot(node)?;
        Some(match (slot.standing, slot.deadline) {
            (Standing::Ready, _) => NodeState::Ready,
            (Standing::BackingOff(until), _) => NodeState::BackingOff { until },
            (Standing::Closed, Some(deadline)) => NodeState::Connecting { deadline },
            (Standing::Closed, None) => NodeState::Closed,
        })
    }

    /// Why `node` is not ready: what ended its last attempt (`None` while it is ready, or
    /// before anything failed).
    #[must_use]
    pub fn down(&self, node: usize) -> Option<NodeDown> {
        let slot = self.slot(node)?;
        if slot.standing == Standing::Ready {
            return None;
        }
        slot.down
    }

    /// When the connects under way to `node` count as unanswered (`None`: none is within
    /// its deadline).
    #[must_use]
    pub fn deadline(&self, node: usize) -> Option<Instant> {
        self.slot(node)?.deadline
    }

    /// Connects started to `node` and not yet reported.
    #[must_use]
    pub fn outstanding(&self, node: usize) -> u32 {
        self.slot(node).map_or(0, |s| s.outstanding)
    }

    /// The next node to open on the session's own account, if any: one that is closed, or
    /// whose pause is over, with no connect outstanding within its deadline. Call it until `None` (each answer
    /// must be followed by [`Session::connect_started`] or the same node comes back), after
    /// [`Session::handle_timeout`] and after each event.
    #[must_use]
    pub fn poll_connect(&self, now: Instant) -> Option<usize> {
        self.active().iter().position(|slot| {
            slot.deadline.is_none()
                && match slot.standing {
                    Standing::Closed => true,
                    Standing::BackingOff(until) => until <= now,
                    Standing::Ready => false,
                }
        })
    }

    /// Whether a driver that lends connections to concurrent operations may open one more
    /// to `node` now: to a ready node (its pool grows, until a connect goes unanswered past
    /// its deadline), or as [`Session::poll_connect`] would. Never while the node backs off,
    /// nor beside a connect to a node that is not ready: until a node answers, one connect
    /// at a time finds out whether it will, so a down or frozen node costs the operations
    /// meanwhile its vote, not a pile of hanging connects.
    #[must_use]
    pub fn may_connect(&self, node: usize, now: Instant) -> bool {
        let Some(slot) = self.slot(node) else {
            return false;
        };
        if slot.deadline.is_some_and(|d| d <= now) {
            return false;
        }
        match slot.standing {
            Standing::Ready => true,
            Standing::Closed => slot.deadline.is_none(),
            Standing::BackingOff(until) => until <= now && slot.deadline.is_none(),
        }
    }

    /// The driver started a connect (TCP, TLS, handshake) to `node` at `now`.
    pub fn connect_started(&mut self, node: usize, now: Instant) {
        let timeout = self.options.connect_timeout;
        let Some(slot) = self.slot_mut(node) else {
            return;
        };
        slot.outstanding = slot.outstanding.saturating_add(1);
        slot.deadline.get_or_insert(now.saturating_add(timeout));
        // A node tried again after its pause is connecting, no longer backing off: a driver
        // that closes the handshakes the session gave up on (its state is not connecting)
        // must not close this one, and reachability must count it as able to answer.
        if let Standing::BackingOff(until) = slot.standing
            && until <= now
        {
            slot.standing = Standing::Closed;
        }
    }

    /// A connect to `node` answered (its handshake completed): the node is ready, its
    /// backoff starts over. Connects still outstanding get a new deadline from now.
    pub fn connected(&mut self, node: usize, now: Instant) {
        let timeout = self.options.connect_timeout;
        let reconnect = self.options.reconnect;
        let Some(slot) = self.slot_mut(node) else {
            return;
        };
        slot.outstanding = slot.outstanding.saturating_sub(1);
        slot.deadline = (slot.outstanding > 0).then(|| now.saturating_add(timeout));
        if slot.standing != Standing::Ready {
            slot.backoff = Backoff::new(reconnect, slot.seeds.next_u64());
        }
        slot.standing = Standing::Ready;
        slot.down = None;
    }

    /// A connect to `node` failed (refused, reset, the handshake refused or broke off): the
    /// node backs off. Several connects failing together pause it once.
    pub fn connect_failed(&mut self, node: usize, now: Instant) {
        let Some(slot) = self.slot_mut(node) else {
            return;
        };
        slot.outstanding = slot.outstanding.saturating_sub(1);
        if slot.outstanding == 0 {
            slot.deadline = None;
        }
        slot.back_off(now, NodeDown::Failed);
    }

    /// A ready connection to `node` was lost (closed, reset, out of step): the node is
    /// closed, to be reconnected at once when needed. A node that is not ready is unchanged.
    pub fn disconnected(&mut self, node: usize, _now: Instant) {
        let Some(slot) = self.slot_mut(node) else {
            return;
        };
        if slot.standing == Standing::Ready {
            slot.standing = Standing::Closed;
            slot.down = Some(NodeDown::Lost);
        }
    }

    /// A connection to `node` went a whole request timeout without a reply byte and was
    /// dropped: the node backs off as if its connect had gone unanswered (see the module
    /// doc for why this is a session event).
    pub fn silent(&mut self, node: usize, now: Instant) {
        if let Some(slot) = self.slot_mut(node) {
            slot.back_off(now, NodeDown::Silent);
        }
    }

    /// Time has reached [`Session::poll_timeout`]: nodes whose connects did not answer by
    /// their deadline count as silent and back off (the connects stay outstanding until the
    /// driver reports them).
    pub fn handle_timeout(&mut self, now: Instant) {
        let nodes = self.nodes;
        for slot in self.slots.iter_mut().take(nodes) {
            if slot.deadline.is_some_and(|d| d <= now) {
                slot.deadline = None;
                slot.back_off(now, NodeDown::TimedOut);
            }
        }
    }

    /// When to call [`Session::handle_timeout`] next: the earliest connect deadline, or the
    /// end of the earliest pause of a node with nothing outstanding (when
    /// [`Session::poll_connect`] may name it).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active()
            .iter()
            .filter_map(|slot| match (slot.deadline, slot.standing) {
                (Some(deadline), _) => Some(deadline),
                (None, Standing::BackingOff(until)) => Some(until),
                _ => None,
            })
            .min()
    }

    /// Nodes ready.
    #[must_use]
    pub fn ready(&self) -> usize {
        self.active()
            .iter()
            .filter(|s| s.standing == Standing::Ready)
            .count()
    }

    /// Nodes that cannot answer before they are tried again: backing off.
    fn gone(&self) -> usize {
        self.active()
            .iter()
            .filter(|s| matches!(s.standing, Standing::BackingOff(_)))
            .count()
    }

    /// Where the set stands: ready at a quorum; unreachable when the ready nodes and those
    /// that can still answer their current attempt are fewer.
    #[must_use]
    pub fn reachability(&self) -> Reachability {
        reachability(self.nodes, self.ready(), self.gone())
    }

    /// Whether a node that is not ready still has a connect within its deadline: a driver
    /// whose handshakes progress only while it waits (a blocking one) may wait for these after
    /// a quorum is ready, so that the first operation has every node that answers in time.
    #[must_use]
    pub fn any_connecting(&self) -> bool {
        self.active()
            .iter()
            .any(|s| s.deadline.is_some() && s.standing == Standing::Closed)
    }

    /// How the first connect to the set ended, once it has: `Ready` as soon as a quorum is
    /// ready; `TooFew` once every node was tried and none is connecting any more (each
    /// answered, failed or passed its deadline: a driver waits out the pending ones, so the
    /// error counts every node that answered). `None` while it is still open — and before
    /// any connect was tried, so that "not tried yet" never reads as "unreachable".
    #[must_use]
    pub fn connect_outcome(&self) -> Option<ConnectOutcome> {
        let ready = self.ready();
        let needed = quorum(self.nodes);
        if ready >= needed {
            return Some(ConnectOutcome::Ready);
        }
        let untried = self.active().iter().any(Slot::untried);
        (!untried && !self.any_connecting()).then_some(ConnectOutcome::TooFew {
            ready,
            nodes: self.nodes,
            needed,
        })
    }
}

impl Slot {
    /// Never tried: no connect was started, so nothing is known about the node yet (a node
    /// whose connection was lost is closed too, but with a reason in `down`).
    fn untried(&self) -> bool {
        self.standing == Standing::Closed && self.deadline.is_none() && self.down.is_none()
    }

    /// Pauses the node after a failure, unless a pause is already running (connects that
    /// fail together count once).
    fn back_off(&mut self, now: Instant, why: NodeDown) {
        if let Standing::BackingOff(until) = self.standing
            && until > now
        {
            return;
        }
        self.down = Some(why);
        let pause = self.backoff.next_delay();
        self.standing = Standing::BackingOff(now.saturating_add(pause));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn session(nodes: usize) -> Session<MAX_NODES> {
        Session::new(nodes, SessionOptions::new(SECOND), 7).unwrap()
    }

    #[test]
    fn three_nodes() {
        use Reachability::*;
        assert_eq!(reachability(3, 0, 0), Waiting);
        assert_eq!(reachability(3, 1, 1), Waiting);
        assert_eq!(reachability(3, 2, 0), Ready);
        assert_eq!(reachability(3, 2, 1), Ready);
        assert_eq!(reachability(3, 0, 2), Unreachable);
        assert_eq!(reachability(3, 1, 2), Unreachable);
    }

    #[test]
    fn one_node_is_its_own_quorum() {
        assert_eq!(reachability(1, 1, 0), Reachability::Ready);
        assert_eq!(reachability(1, 0, 0), Reachability::Waiting);
        assert_eq!(reachability(1, 0, 1), Reachability::Unreachable);
    }

    #[test]
    fn bad_sets_are_refused() {
        let options = SessionOptions::default();
        assert!(Session::<3>::new(0, options, 1).is_err());
        assert!(Session::<3>::new(4, options, 1).is_err());
        let bad = SessionOptions {
            reconnect: RetryPolicy {
                base: Duration::ZERO,
                ..RECONNECT
            },
            ..options
        };
        assert_eq!(
            Session::<3>::new(3, bad, 1).err(),
            Some(ConfigError::BadRetry)
        );
        assert_eq!(RECONNECT.validate(), Ok(()));
    }

    #[test]
    fn first_connect_is_ready_at_a_quorum() {
        let mut s = session(3);
        let mut opened = Vec::new();
        while let Some(node) = s.poll_connect(at(0)) {
            s.connect_started(node, at(0));
            opened.push(node);
        }
        assert_eq!(opened, [0, 1, 2]);
        assert_eq!(
            s.state(0),
            Some(NodeState::Connecting { deadline: at(1000) })
        );
        assert_eq!(s.connect_outcome(), None);
        s.connected(0, at(3));
        assert_eq!(s.reachability(), Reachability::Waiting);
        s.connect_failed(1, at(4));
        assert_eq!(s.reachability(), Reachability::Waiting);
        assert_eq!(s.connect_outcome(), None);
        s.connected(2, at(5));
        assert_eq!(s.connect_outcome(), Some(ConnectOutcome::Ready));
        assert_eq!(s.reachability(), Reachability::Ready);
        assert_eq!(s.down(1), Some(NodeDown::Failed));
        assert!(!s.any_connecting());
    }

    #[test]
    fn connect_outcome_is_open_until_every_node_was_tried() {
        let mut s = session(3);
        assert_eq!(
            s.connect_outcome(),
            None,
            "nothing tried is not unreachable"
        );
        s.connect_started(0, at(0));
        s.connect_failed(0, at(1));
        assert_eq!(s.connect_outcome(), None, "nodes 1 and 2 were never tried");
        s.connect_started(1, at(1));
        s.connect_failed(1, at(2));
        s.connect_started(2, at(2));
        s.connect_failed(2, at(3));
        assert_eq!(
            s.connect_outcome(),
            Some(ConnectOutcome::TooFew {
                ready: 0,
                nodes: 3,
                needed: 2
            })
        );
        // A node lost after it was ready counts as tried: the outcome stays decided.
        let mut s = session(1);
        s.connect_started(0, at(0));
        s.connected(0, at(1));
        s.disconnected(0, at(2));
        assert_eq!(
            s.connect_outcome(),
            Some(ConnectOutcome::TooFew {
                ready: 0,
                nodes: 1,
                needed: 1
            })
        );
    }

    #[test]
    fn a_silent_node_times_out_and_too_few_names_why() {
        let mut s = session(3);
        for node in 0..3 {
            s.connect_started(node, at(0));
        }
        s.connect_failed(0, at(1));
        s.connected(1, at(2));
        assert_eq!(s.connect_outcome(), None, "node 2 may still answer");
        assert!(s.any_connecting());
        assert_eq!(
            s.state(2),
            Some(NodeState::Connecting { deadline: at(1000) })
        );
        s.handle_timeout(at(999));
        assert_eq!(s.connect_outcome(), None);
        s.handle_timeout(at(1000));
        assert_eq!(
            s.connect_outcome(),
            Some(ConnectOutcome::TooFew {
                ready: 1,
                nodes: 3,
                needed: 2
            })
        );
        assert_eq!(s.reachability(), Reachability::Unreachable);
        assert_eq!(s.down(0), Some(NodeDown::Failed));
        assert_eq!(s.down(2), Some(NodeDown::TimedOut));
        // The late connect is given up on: after the pause, the node is tried again (the
        // first one may still answer).
        assert!(!s.may_connect(2, at(1000)));
        assert!(s.may_connect(2, at(60_000)));
        assert_eq!(s.poll_connect(at(60_000)), Some(0));
        // It answers late: the node is back.
        s.connected(2, at(3000));
        assert_eq!(s.reachability(), Reachability::Ready);
    }

    #[test]
    fn a_lost_connection_reconnects_at_once_and_a_refusal_backs_off() {
        let mut s = session(1);
        s.connect_started(0, at(0));
        s.connected(0, at(1));
        assert_eq!(s.poll_connect(at(1)), None);
        s.disconnected(0, at(10));
        assert_eq!(s.state(0), Some(NodeState::Closed));
        assert_eq!(s.down(0), Some(NodeDown::Lost));
        assert_eq!(s.poll_connect(at(10)), Some(0));
        s.connect_started(0, at(10));
        assert_eq!(s.poll_connect(at(10)), None, "one connect at a time");
        s.connect_failed(0, at(11));
        let Some(NodeState::BackingOff { until }) = s.state(0) else {
            panic!("{:?}", s.state(0));
        };
        assert!(until >= at(11 + 100) && until <= at(11 + 2000), "{until:?}");
        assert_eq!(s.poll_connect(at(until.as_millis() - 1)), None);
        assert!(!s.may_connect(0, at(until.as_millis() - 1)));
        assert_eq!(s.poll_timeout(), Some(until));
        assert_eq!(s.poll_connect(until), Some(0));
        assert!(s.may_connect(0, until));
    }

    #[test]
    fn a_node_tried_again_after_its_pause_is_connecting() {
        let mut s = session(3);
        for node in 0..3 {
            s.connect_started(node, at(0));
        }
        s.connected(0, at(1));
        s.connect_failed(1, at(1));
        s.connect_failed(2, at(1));
        assert_eq!(s.reachability(), Reachability::Unreachable);
        let Some(NodeState::BackingOff { until }) = s.state(1) else {
            panic!("{:?}", s.state(1));
        };
        assert_eq!(s.poll_connect(until), Some(1));
        s.connect_started(1, until);
        // Not taken for a connect the session gave up on: a driver keeps its handshake.
        let deadline = until.saturating_add(SECOND);
        assert_eq!(s.state(1), Some(NodeState::Connecting { deadline }));
        assert!(s.any_connecting());
        assert_eq!(s.reachability(), Reachability::Waiting, "node 1 may answer");
        assert_eq!(s.down(1), Some(NodeDown::Failed), "why it was down last");
        s.connected(1, at(until.as_millis() + 3));
        assert_eq!(s.reachability(), Reachability::Ready);
        // Unanswered, it backs off again, its pause grown from the last one.
        let mut t: Session<1> = Session::new(1, SessionOptions::new(SECOND), 7).unwrap();
        t.connect_started(0, at(0));
        t.connect_failed(0, at(0));
        let Some(NodeState::BackingOff { until }) = t.state(0) else {
            panic!();
        };
        t.connect_started(0, until);
        assert!(matches!(t.state(0), Some(NodeState::Connecting { .. })));
        t.handle_timeout(until.saturating_add(SECOND));
        assert!(matches!(t.state(0), Some(NodeState::BackingOff { .. })));
        assert_eq!(t.down(0), Some(NodeDown::TimedOut));
    }

    #[test]
    fn a_silent_connection_backs_the_node_off() {
        let mut s = session(3);
        s.connect_started(1, at(0));
        assert!(
            !s.may_connect(1, at(1)),
            "one connect at a time until it answers"
        );
        s.connect_started(0, at(0));
        s.connected(0, at(1));
        s.silent(0, at(2000));
        assert!(matches!(s.state(0), Some(NodeState::BackingOff { .. })));
        assert_eq!(s.down(0), Some(NodeDown::Silent));
        assert!(!s.may_connect(0, at(2001)));
    }

    #[test]
    fn a_ready_node_grows_until_its_extra_connects_hang() {
        let mut s = session(1);
        s.connect_started(0, at(0));
        s.connected(0, at(1));
        // A pool lends connections: more connects to a ready node are fine…
        assert!(s.may_connect(0, at(5)));
        s.connect_started(0, at(5));
        s.connect_started(0, at(6));
        assert!(s.may_connect(0, at(7)));
        s.connected(0, at(8));
        // …until one goes a connect timeout unanswered: the node is frozen.
        assert_eq!(s.poll_timeout(), Some(at(1008)));
        s.handle_timeout(at(1008));
        assert!(matches!(s.state(0), Some(NodeState::BackingOff { .. })));
        assert!(!s.may_connect(0, at(1008)), "it backs off");
        assert!(
            s.may_connect(0, at(1_000_000)),
            "a hanging connect holds nothing back"
        );
        s.connect_failed(0, at(5000));
        assert_eq!(s.outstanding(0), 0);
    }

    #[test]
    fn failures_together_pause_once_and_pauses_grow() {
        let mut s = session(1);
        let mut pauses = Vec::new();
        let mut now = 0;
        for _ in 0..12 {
            s.connect_started(0, at(now));
            s.connect_started(0, at(now));
            s.connect_failed(0, at(now));
            let first = s.state(0);
            s.connect_failed(0, at(now));
            assert_eq!(s.state(0), first, "the second failure adds no pause");
            let Some(NodeState::BackingOff { until }) = first else {
                panic!("{first:?}");
            };
            pauses.push(until.saturating_since(at(now)).as_millis());
            now = until.as_millis();
        }
        assert!(
            pauses.iter().all(|p| (100..=2000).contains(p)),
            "{pauses:?}"
        );
        assert!(pauses.iter().any(|p| *p > 300), "{pauses:?}");
        // Different seeds, different pauses: clients spread out.
        let mut other: Session<1> = Session::new(1, SessionOptions::new(SECOND), 8).unwrap();
        let mut same = true;
        let mut now = 0;
        for pause in &pauses {
            other.connect_started(0, at(now));
            other.connect_failed(0, at(now));
            let Some(NodeState::BackingOff { until }) = other.state(0) else {
                panic!();
            };
            same &= until.saturating_since(at(now)).as_millis() == *pause;
            now = until.as_millis();
        }
        assert!(!same, "jitter draws from the seed");
    }

    #[test]
    fn unknown_nodes_are_ignored() {
        let mut s = session(2);
        s.connect_started(5, at(0));
        s.connected(5, at(0));
        s.connect_failed(5, at(0));
        s.disconnected(5, at(0));
        s.silent(5, at(0));
        assert_eq!(s.state(5), None);
        assert!(!s.may_connect(5, at(0)));
        assert_eq!(s.outstanding(5), 0);
        s.connect_failed(0, at(0));
        assert_eq!(s.outstanding(0), 0);
    }

    /// One event of the property test.
    #[derive(Debug, Clone)]
    enum Event {
        Tick(u64),
        Open,
        Extra(usize),
        Connected(usize),
        Failed(usize),
        Lost(usize),
        Silent(usize),
        Timeout,
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u64..3000).prop_map(Event::Tick),
            Just(Event::Open),
            (0usize..8).prop_map(Event::Extra),
            (0usize..8).prop_map(Event::Connected),
            (0usize..8).prop_map(Event::Failed),
            (0usize..8).prop_map(Event::Lost),
            (0usize..8).prop_map(Event::Silent),
            Just(Event::Timeout),
        ]
    }

    proptest! {
        #[test]
        fn ready_means_a_quorum_answered_and_unreachable_means_none_can(
            nodes in 1usize..=16,
            answered in 0usize..=16,
            failed in 0usize..=16,
        ) {
            let answered = answered.min(nodes);
            let failed = failed.min(nodes - answered);
            let pending = nodes - answered - failed;
            let state = reachability(nodes, answered, failed);
            prop_assert_eq!(state == Reachability::Ready, answered >= quorum(nodes));
            prop_assert_eq!(
                state == Reachability::Unreachable,
                answered + pending < quorum(nodes)
            );
        }

        #[test]
        fn the_session_keeps_its_invariants(
            nodes in 1usize..=MAX_NODES,
            seed: u64,
            timeout in 1u64..2000,
            events in proptest::collection::vec(event(), 0..200),
        ) {
            let options = SessionOptions::new(Duration::from_millis(timeout));
            let mut s: Session<MAX_NODES> = Session::new(nodes, options, seed).unwrap();
            let mut now = 0u64;
            // The model: the connects outstanding per node, when each started.
            let mut started: Vec<Vec<u64>> = (0..nodes).map(|_| Vec::new()).collect();
            for event in events {
                match event {
                    Event::Tick(ms) => now += ms,
                    Event::Open => {
                        while let Some(node) = s.poll_connect(at(now)) {
                            let state = s.state(node).unwrap();
                            prop_assert!(
                                !matches!(state, NodeState::BackingOff { until } if until > at(now)),
                                "opened while backing off: {:?}", state
                            );
                            prop_assert_eq!(s.deadline(node), None, "opened beside a connect");
                            prop_assert!(!matches!(state, NodeState::Ready));
                            s.connect_started(node, at(now));
                            started[node].push(now);
                            // What it opened is connecting (not taken for one given up on).
                            prop_assert!(
                                matches!(s.state(node), Some(NodeState::Connecting { .. })),
                                "opened, yet {:?}", s.state(node)
                            );
                        }
                    }
                    Event::Extra(node) if s.may_connect(node, at(now)) => {
                        let state = s.state(node).unwrap();
                        prop_assert!(
                            matches!(state, NodeState::Ready) || s.deadline(node).is_none(),
                            "opened beside a connect to a node not ready: {:?}", state
                        );
                        prop_assert!(
                            !matches!(state, NodeState::BackingOff { until } if until > at(now)),
                            "opened while backing off: {:?}", state
                        );
                        s.connect_started(node, at(now));
                        started[node].push(now);
                    }
                    Event::Connected(node) | Event::Failed(node) if node < nodes => {
                        if started[node].is_empty() {
                            continue;
                        }
                        started[node].remove(0);
                        if matches!(event, Event::Connected(_)) {
                            s.connected(node, at(now));
                            prop_assert_eq!(s.state(node), Some(NodeState::Ready));
                        } else {
                            s.connect_failed(node, at(now));
                            prop_assert!(
                                matches!(s.state(node), Some(NodeState::BackingOff { .. } | NodeState::Connecting { .. })),
                                "{:?}", s.state(node)
                            );
                        }
                    }
                    Event::Lost(node) => s.disconnected(node, at(now)),
                    Event::Silent(node) => s.silent(node, at(now)),
                    Event::Timeout => {
                        if let Some(t) = s.poll_timeout() {
                            now = now.max(t.as_millis());
                            s.handle_timeout(at(now));
                        }
                    }
                    _ => {}
                }
                // Outstanding connects are what the driver started and has not reported.
                for (node, pending) in started.iter().enumerate() {
                    prop_assert_eq!(s.outstanding(node) as usize, pending.len());
                }
                // Deadlines: never more than a connect timeout away, only while connects
                // are outstanding, and none past due once timeouts are handled.
                for (node, pending) in started.iter().enumerate() {
                    if let Some(deadline) = s.deadline(node) {
                        prop_assert!(deadline <= at(now + timeout), "{:?} > {} + {}", deadline, now, timeout);
                        prop_assert!(!pending.is_empty());
                        if matches!(event, Event::Timeout) {
                            prop_assert!(deadline > at(now));
                        }
                    }
                    if let Some(NodeState::BackingOff { until }) = s.state(node) {
                        prop_assert!(until <= at(now + RECONNECT.cap.as_millis()));
                    }
                }
                // Reachability against a count of the states.
                let states: Vec<NodeState> = (0..nodes).map(|n| s.state(n).unwrap()).collect();
                let ready = states.iter().filter(|st| matches!(st, NodeState::Ready)).count();
                let possible = states
                    .iter()
                    .filter(|st| matches!(st, NodeState::Ready | NodeState::Closed | NodeState::Connecting { .. }))
                    .count();
                let reach = s.reachability();
                prop_assert_eq!(reach == Reachability::Ready, ready >= quorum(nodes));
                prop_assert_eq!(reach == Reachability::Unreachable, possible < quorum(nodes));
            }
        }

        #[test]
        fn backoff_pauses_stay_within_the_policy(seed: u64, failures in 1usize..60) {
            let mut s: Session<1> = Session::new(1, SessionOptions::default(), seed).unwrap();
            let mut now = 0u64;
            for _ in 0..failures {
                s.connect_started(0, at(now));
                s.connect_failed(0, at(now));
                let Some(NodeState::BackingOff { until }) = s.state(0) else {
                    return Err(TestCaseError::fail("not backing off"));
                };
                let pause = until.saturating_since(at(now));
                prop_assert!(pause >= RECONNECT.base && pause <= RECONNECT.cap, "{:?}", pause);
                now = until.as_millis();
            }
        }
    }
}
