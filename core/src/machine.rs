//! The sans-IO driving surface every lock operation shares.
//!
//! The driver loop is documented on [`Machine`].

use crate::commands::{Answer, Request};
use crate::error::ConfigError;
use crate::keys::Token;
use crate::link::{Links, Transmit};
use crate::lock::{Lock, Scripts};
use crate::resp::BufferTooSmall;
use crate::server::ServerInfo;
use crate::time::Instant;

/// What the links and the operation share: the lock and the token it acts with.
#[derive(Debug, Clone)]
pub struct Context<const N: usize> {
    pub(crate) links: Links<N>,
    pub(crate) lock: Lock,
    pub(crate) token: Token,
}

impl<const N: usize> Context<N> {
    /// One link per server: between 1 and `N` (and at most [`crate::MAX_NODES`]) of them.
    pub(crate) fn new(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
    ) -> Result<Self, ConfigError> {
        let capacity = N.min(crate::MAX_NODES);
        let count = ConfigError::BadNodeCount {
            nodes: servers.len(),
            capacity,
        };
        if servers.len() > capacity {
            return Err(count);
        }
        // One queue lives on one node: a Redlock of fair queues would need a quorum of
        // hand-offs, which no single release can give.
        if lock.options().fair && servers.len() > 1 {
            return Err(ConfigError::FairUnsupported);
        }
        // The same for a semaphore's count of live permits (see `crate::semaphore`).
        if lock.limit().is_some() && servers.len() > 1 {
            return Err(ConfigError::SemaphoreUnsupported);
        }
        // And for a read-write lock's readers (see `crate::rwlock`).
        if lock.rw_mode().is_some() && servers.len() > 1 {
            return Err(ConfigError::RwLockUnsupported);
        }
        // A scriptless lock refuses up front a server known to lack a native command (one
        // not known yet is asked, and its reply tells).
        if lock.options().scripts == Scripts::Never {
            for (node, server) in servers.iter().enumerate() {
                if let Some(command) = server.missing_for_scriptless() {
                    return Err(ConfigError::MissingNativeCommand { node, command });
                }
            }
        }
        let links = Links::new(servers).ok_or(count)?;
        Ok(Context {
            links,
            lock: lock.clone(),
            token,
        })
    }
}

pub(crate) mod sealed {
    use super::{Answer, Context, Instant, Request};

    /// The decisions of an operation, called by [`super::Machine`]. Sealed: its types are the
    /// crate's own.
    pub trait Decide {
        /// What the operation ends with.
        type Outcome;

        /// A node answered a request.
        fn on_answer<const N: usize>(
            &mut self,
            ctx: &mut Context<N>,
            node: usize,
            request: Request,
            answer: Answer,
            now: Instant,
        );

        /// The operation's own timer fired.
        fn on_timer<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant);

        /// When the operation's own timer fires.
        fn timer(&self) -> Option<Instant>;

        /// A node's connection was lost while nothing was in flight on it (between
        /// attempts, say): no request failed, but what the operation knows of the node may.
        fn on_idle_disconnect<const N: usize>(
            &mut self,
            _ctx: &mut Context<N>,
            _node: usize,
            _now: Instant,
        ) {
        }

        /// The caller gave up.
        fn on_cancel<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant);

        /// The outcome, once.
        fn take_outcome(&mut self) -> Option<Self::Outcome>;
    }
}

/// A lock operation (acquire, release, extend); implemented by this crate's operations only.
pub trait Operation: sealed::Decide {}

impl<T: sealed::Decide> Operation for T {}

pub(crate) use sealed::Decide;

/// The sans-IO driving surface every lock operation shares.
///
/// A [`Machine`] is one operation (acquire, release, extend) over `N` nodes at most. The
/// driver loop, the same for every operation and every driver (tokio host, wasm component,
/// simulator, fuzzer):
///
/// 1. After building the machine and after every `handle_*` call, drain
///    [`Machine::poll_transmit`] and write each [`Transmit`] to its node's connection. If a
///    node has no connection, call [`Machine::handle_disconnect`] for it.
/// 2. Feed bytes read from node `i` to [`Machine::handle_input`] — any split, any coalescing.
/// 3. At [`Machine::poll_timeout`], call [`Machine::handle_timeout`].
/// 4. When [`Machine::poll_outcome`] returns `Some`, the operation is over. Before reusing a
///    node's connection for something else, discard [`Machine::owed_replies`] replies from it
///    (or reconnect when that says `None`) — or hand it to the next machine as it is:
///    [`Machine::handover`] here, [`Machine::discard_replies`] there, and that machine skips
///    them itself. A connection that owes a pipelined release's reply
///    ([`crate::PipelinedRelease`]) goes to the next machine with [`Machine::owe_release`],
///    which reads and checks that reply first ([`Machine::take_release_check`]).
///    Replies still owed after the outcome (a Redlock acquire returns at a quorum) mean the
///    requests behind them may not have run yet: what a later operation on the same lease
///    sends to that node goes behind them on the same connection (the hand-over above), or
///    waits until they are read or given up at the lock's request timeout — never beside
///    them on another connection, where a release could overtake the acquire's `SET` and
///    leave the key until its TTL.
///
/// The machine does no I/O, reads no clock and draws no randomness: `now` and the seed come
/// in as arguments, so the same inputs give the same outputs, byte for byte.
#[derive(Debug, Clone)]
pub struct Machine<Op, const N: usize> {
    pub(crate) ctx: Context<N>,
    pub(crate) op: Op,
}

impl<Op: Operation, const N: usize> Machine<Op, N> {
    /// The next bytes to send, written to the front of `buf`. Call until it returns
    /// `Ok(None)`. A short buffer is left untouched and the error says the size needed.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        let Context { links, lock, token } = &mut self.ctx;
        links.poll_transmit(lock, token, now, buf)
    }

    /// Bytes read from `node`'s connection.
    pub fn handle_input(&mut self, node: usize, bytes: &[u8], now: Instant) {
        let mut answers: heapless::Vec<(usize, Request, Answer), 4> = heapless::Vec::new();
        let Context { links, lock, .. } = &mut self.ctx;
        // One request per node is in flight, so at most one answer comes out of one read.
        links.handle_input(node, bytes, lock, |n, r, a| {
            let _ = answers.push((n, r, a));
        });
        for (n, r, a) in answers {
            self.op.on_answer(&mut self.ctx, n, r, a, now);
        }
    }

    /// Time has reached [`Machine::poll_timeout`] (calling it early or late is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut answers: heapless::Vec<(usize, Request, Answer), N> = heapless::Vec::new();
        self.ctx.links.handle_timeout(now, |n, r, a| {
            let _ = answers.push((n, r, a));
        });
        for (n, r, a) in answers {
            self.op.on_answer(&mut self.ctx, n, r, a, now);
        }
        if self.op.timer().is_some_and(|t| t <= now) {
            self.op.on_timer(&mut self.ctx, now);
        }
    }

    /// `node`'s connection was lost, could not be opened, or was replaced by a new one: what
    /// was in flight on it failed, and nothing is owed on the new connection.
    pub fn handle_disconnect(&mut self, node: usize, now: Instant) {
        let mut answer = None;
        self.ctx
            .links
            .disconnected(node, |n, r, a| answer = Some((n, r, a)));
        match answer {
            Some((n, r, a)) => self.op.on_answer(&mut self.ctx, n, r, a, now),
            None => self.op.on_idle_disconnect(&mut self.ctx, node, now),
        }
    }

    /// When to call [`Machine::handle_timeout`] next. After the outcome it may still name the
    /// deadline of a reply owed (a rollback's); the driver may stop calling then.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.op.timer(), self.ctx.links.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The operation's result, once; `None` until then, and while transmits it still needs
    /// sent (a rollback, say) are queued.
    #[must_use]
    pub fn poll_outcome(&mut self) -> Option<<Op as Decide>::Outcome> {
        if self.ctx.links.has_queued() {
            return None;
        }
        self.op.take_outcome()
    }

    /// Gives the operation up. An acquire rolls back what it may have taken; the outcome
    /// becomes [`crate::Error::Cancelled`] unless it had already ended.
    pub fn cancel(&mut self, now: Instant) {
        self.op.on_cancel(&mut self.ctx, now);
    }

    /// Replies `node`'s connection still owes this machine, to discard before reusing it;
    /// `None`: the connection is out of step, reconnect it.
    #[must_use]
    pub fn owed_replies(&self, node: usize) -> Option<u32> {
        self.ctx.links.owed(node)
    }

    /// Hands `node`'s connection on to the next operation without waiting for what it still
    /// owes: the number of replies to pass to that machine's [`Machine::discard_replies`].
    /// `None`: reconnect instead (out of step, or a reply half-read).
    #[must_use]
    pub fn handover(&self, node: usize) -> Option<u32> {
        self.ctx.links.handover(node)
    }

    /// `node`'s connection comes from an earlier machine's [`Machine::handover`] and still
    /// owes it `replies` replies: this machine discards that many frames from the node before
    /// matching its own, so a late reply to the earlier operation never answers this one.
    /// Call it before the first [`Machine::poll_transmit`]. False when there is no such node.
    pub fn discard_replies(&mut self, node: usize, replies: u32) -> bool {
        self.ctx.links.discard(node, replies)
    }

    /// `node`'s connection owes the replies of a pipelined release written on it before
    /// ([`crate::PipelinedRelease`]): they come before anything of this machine's, so this
    /// machine reads them first and checks them, and its operation never sees them. Call it
    /// before the first [`Machine::poll_transmit`]; then [`Machine::take_release_check`]
    /// after the outcome (while replies are owed, [`Machine::owed_replies`] counts them). A
    /// disconnect, a reply deadline passed or a broken reply before they are in leaves the
    /// release [`crate::ReleaseCheck::Unconfirmed`]. False (nothing changed) when there is
    /// no such node, the node already owes one, or it owes replies to an earlier machine
    /// ([`Machine::discard_replies`]): a connection that owes a release owes nothing else.
    pub fn owe_release(&mut self, node: usize, owed: crate::OwedRelease) -> bool {
        self.ctx.links.owe_release(node, owed)
    }

    /// The deferred confirmation of the pipelined release `node`'s connection owed
    /// ([`Machine::owe_release`]), once its replies are read (or given up on); once.
    /// `None` while they are still owed: a driver that drops the connection then must report
    /// the release as unconfirmed itself.
    #[must_use]
    pub fn take_release_check(&mut self, node: usize) -> Option<crate::ReleaseCheck> {
        self.ctx.links.take_release_check(node)
    }

    /// How many nodes the operation runs over.
    #[must_use]
    pub fn nodes(&self) -> usize {
        self.ctx.links.len()
    }

    /// The lock the machine acts on.
    #[must_use]
    pub fn lock(&self) -> &Lock {
        &self.ctx.lock
    }

    /// The token it acts with.
    #[must_use]
    pub fn token(&self) -> &Token {
        &self.ctx.token
    }
}
