//! Acquire: one node, or Redlock over N, with retry, waiting on the wake-up signal, fencing
//! and re-entry.
//!
//! The machine and its guarantees are documented on [`Acquire`].
//!
//! ## Waking up (the non-fair path)
//!
//! Invariant: a waiter is never blocked past the moment the lock became free by more than
//! about one round trip on one node, and never past the retry cap over several (property 8
//! of `core/tests/simulation.rs`, `core/tests/sim/wakeup.rs`). What made waiters sleep while
//! the lock was free, and what keeps them from it now:
//!
//! - **Waits timed without the holder's TTL.** A wait is bounded by when the holder's key
//!   expires, so a crashed holder (whose key expires, pushing no signal) frees its waiters at
//!   once. The first attempt no longer asks for that TTL (an uncontended acquire is one
//!   `SET NX PX`); a refusal that did not say it is retried at once with the `PTTL`, so no wait
//!   is ever timed by the retry cap alone.
//!
//! ## A name that is another kind of lock
//! A plain `SET NX` refuses a semaphore's or a read-write lock's name (a key of another type)
//! like a held lock, and would keep a mutex waiting for nothing, or tell a try-lock "held".
//! Where the server has it ([`ServerInfo::has_set_nx_get`]: Redis ≥ 7.0, Valkey) every
//! attempt is `SET NX PX GET`, which answers `WRONGTYPE` itself: the acquire fails with that
//! typed server error from its first attempt, a try-lock included, and the uncontended
//! acquire is still one command. On older servers the retry after a refusal also asks the
//! key's `TYPE` and fails the same way; a try-lock there makes one attempt and no retry, so
//! it still reports such a name held. Closing that would cost a refused try-lock a second
//! round trip (and the machine a request kind of its own) on servers that will not grow the
//! command; it is documented instead.
//! - **Rollbacks that pushed no signal.** Over several nodes a failed attempt rolls back the
//!   keys it took; a waiter refused by such a key was never woken when it went, and slept out
//!   its span (up to the cap) while a quorum was free. Rollbacks now push the signal.
//! - **The wrong span and the wrong list over several nodes.** The span is the time until a
//!   quorum's keys have expired (the k-th shortest TTL, not the longest), and the waiter
//!   blocks on the busy node whose key lives longest: keys that expire within the span need
//!   no signal. A waiter watches one node, so a lock freed by a competitor's rollback on
//!   another node is noticed at the end of the span (the documented Redlock limit).
//!
//! - **Releases that push only when someone waits.** Pushing the signal (`DEL`, `LPUSH`,
//!   `PEXPIRE`) more than doubled what a release costs the server, and most releases have no
//!   waiter. Lua cannot see who is blocked in `BLPOP`, so a plain mutex's waiters say they
//!   wait: every attempt that may be followed by a wait (the ones after a refusal, which
//!   also ask the holder's TTL) sends `SET <waiting> 1 PX` [`WAITING_MARK_LIFE`] on each node
//!   *before* its `SET NX PX` (or acquire script), in the same batch on the same connection,
//!   and the release script pushes only while that mark exists. No wake-up is lost: the mark
//!   is on the server before the waiter's attempt runs. A release that ran before the mark
//!   left the lock free at the attempt, or taken by a client whose own release comes after
//!   the attempt, hence after the mark; a release after the mark pushes. A refused attempt
//!   that carried no mark (the first one) is retried at once with it, like the `PTTL` probe,
//!   so no wait follows an unmarked attempt. The mark must outlive the wait it covers: the
//!   mark's life is one constant for every client (a later mark never shortens an earlier
//!   one), and a span is cut so that the attempt, the span and the `BLPOP`'s reply (at most
//!   two request timeouts besides the span) end before the mark does; with no span left the
//!   waiter polls. So does a waiter whose mark a node refused (an ACL that denies the mark's
//!   key): a release there may push nothing, so it never blocks on that node's signal until a
//!   later attempt's mark is taken. The uncontended acquire sends nothing new (one command), a try-lock never
//!   marks, and a crashed waiter's mark only makes releases push until it expires. Under the
//!   python-redis-lock layout, whose own waiters never mark, a release always pushes; so
//!   does a reset. An older distlock's waiter does not mark: under a newer releaser it
//!   notices a release at the end of its span (at most the retry cap).
//!
//! On one node no signal is lost: every release wakes the longest-blocked waiter. The tail
//! measured there (acquire-wait p99 of tens of ms with 4 workers, workers starved outright
//! with 8) came from barging: the releaser's next `SET NX` reached the server before the woken
//! waiter's, so the waiter was refused and went to the back of the server's `BLPOP` queue,
//! and its wake-up was spent. Non-fair mode allows that by definition; the host keeps its own
//! releasers from winning every such race (see `host/src/guard.rs`), and the fair mode hands
//! the lock over on the server.

use crate::commands::{Answer, Request};
use crate::error::{ConfigError, Error, NodeFailure, ServerError};
use crate::fair::Queued;
use crate::keys::Token;
use crate::lock::{Lease, Lock, MAX_NODES, quorum};
use crate::machine::{Context, Decide, Machine};
use crate::retry::Backoff;
use crate::server::ServerInfo;
use crate::time::{Duration, Instant};

/// Acquires a lock over up to `N` nodes. See [`Machine`] for the driver loop.
///
/// Acquire: one node, or Redlock over N, with retry, waiting on the wake-up signal, fencing
/// and re-entry.
///
/// An *attempt* sends the acquire to every node at `t0` and counts votes. A quorum
/// ([`crate::lock::quorum`]) of grants wins — if validity remains: the lease is valid until
/// `t0 + ttl - drift` ([`crate::Lock::valid_until`]). As soon as a quorum can no longer be
/// reached the attempt fails; whatever it may have taken (nodes that granted, and nodes still
/// silent, whose grant may yet land) is rolled back by compare-and-delete, so a failed
/// attempt never leaves a minority holding keys until their TTL.
///
/// Between attempts the machine either sleeps out a backoff delay — never past the wait
/// deadline, and never past the moment the holder's key expires, when a node said — or, when
/// wake-up signals are on, blocks on the signal list of a node that said "busy" (`BLPOP`) for
/// up to the same span, and never longer than the retry cap: a release then hands the lock
/// over within a round trip, and one that pushes no signal is noticed within the cap. A
/// signal is a hint only: every wake-up is followed by a full attempt.
///
/// ## Fencing over N nodes
/// With one node the fence is the counter's `INCR` inside the acquire script: one counter,
/// strictly increasing. With N nodes each node has its own counter and a single round is not
/// enough: two quorums may read different counters. So after winning a quorum with fence `F`
/// (the largest counter among the granting nodes) the machine raises the counter to at least
/// `F` on a quorum (the raise-fence script of [`SCRIPTS`](crate::SCRIPTS)) *before* reporting the lease.
///
/// Claim: if lease A is reported before lease B's winning attempt starts, then `F_B > F_A`.
/// A's raise quorum and B's grant quorum share a node `x` (two majorities intersect). On
/// `x` the raise completed before A was reported, hence before B's attempt reached `x`, so
/// `x`'s counter was at least `F_A` when B's script incremented it: B's counter on `x` is
/// `> F_A`, and `F_B`, the largest of B's counters, is too. The argument needs counters that
/// survive restarts (persistence on, as for any Redlock guarantee); the simulator shows what
/// breaks without. A lease whose validity ran out during the raise round is not reported.
///
/// ## One token per attempt
/// Each attempt writes its own token ([`crate::Token::for_attempt`]), and a rollback deletes
/// only its attempt's. Found by the simulator: with one token for every attempt, a rollback
/// that reached a node late — over a connection the driver had replaced, while the server
/// still ran what the old one carried — deleted the key of a later, winning attempt, and a
/// second client got in. The lease reports the winning attempt's token. A re-entry is
/// recognised by the owner's token (the one passed in: for re-entry, the first lease's), never
/// by an attempt's; a re-entry attempt that has to be rolled back (it timed out, or won only a
/// minority) keeps its extra hold on the nodes it reached, so such a lock frees at its TTL
/// rather than at the last release.
///
/// Invariant: the outcome is `Ok` only when a quorum of well-formed grants for *this*
/// attempt arrived (replies of earlier attempts are stale and discarded by the links) and
/// validity remains at the time of reporting.
///
/// ## Fair mode
/// With [`crate::LockOptions::fair`] (one node, tagged layout) waiters queue in arrival order
/// instead of retrying: each waiter blocks on its own wake-up list, and a release sets the
/// lock to the first live waiter's token and wakes only that waiter, which confirms it in the
/// same cycle and returns already holding it — one round trip, no race with the releaser or
/// newcomers, no herd. A try-lock never takes a lock that live waiters queue for. A waiter
/// that dies is skipped, or the hand-off to it expires, within 1.5 × the request timeout.
/// Re-entry and fencing work as without. The cycle, its validity argument and its numbers
/// are documented in the `fair` module (`core/src/fair.rs`).
pub type Acquire<const N: usize> = Machine<AcquireOp, N>;

/// A "busy" node's TTL that the node did not say (see `AcquireOp::busy_ttls`).
const UNKNOWN_TTL: u32 = u32::MAX;

/// A node's vote in the current round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    /// Asked, no answer yet.
    Pending,
    /// Yes.
    Granted,
    /// Another token holds the lock.
    Busy,
    /// No usable answer, and the command did not run (an error reply).
    Failed,
    /// No answer (timeout, disconnect): the command may have run, so the node is rolled back
    /// like a grant.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Round 1: asking every node for the lock.
    Acquiring,
    /// Round 2 (fenced, N > 1): raising the fence counter on a quorum to `fence`.
    Raising { fence: u64 },
    /// Sleeping out a retry delay.
    Sleeping { until: Instant },
    /// Blocked on a node's wake-up signal.
    Waiting { node: usize },
    /// The outcome is out.
    Done,
}

/// The decisions of an acquire (the operation behind [`Acquire`]).
#[derive(Debug, Clone)]
pub struct AcquireOp {
    phase: Phase,
    /// When the current attempt's first request was queued (validity counts from here).
    started: Instant,
    wait_until: Instant,
    attempts: u32,
    backoff: Backoff,
    votes: heapless::Vec<Vote, MAX_NODES>,
    granted_fence: u64,
    /// Grants that took the lock fresh (with this attempt's token).
    fresh_grants: usize,
    /// The smallest hold count among grants that re-entered (the owner's token).
    reentered: Option<u32>,
    /// Grants that re-entered.
    reentered_grants: usize,
    raised: usize,
    raise_failed: usize,
    holder_ttl: Option<Duration>,
    /// This round's word from each node that said "busy": how long its key lives, in ms
    /// ([`UNKNOWN_TTL`]: not said). Compact, as the machine is stored inline: a TTL past
    /// `u32::MAX - 1` ms (49 days) reads as that, far beyond any wait span.
    busy_ttls: heapless::Vec<u32, MAX_NODES>,
    /// Some attempt was refused ("busy"): later attempts ask for the holder's TTL.
    refused: bool,
    /// The current attempt asked for the holder's TTL (see [`AcquireOp::start_attempt`]).
    probed: bool,
    last_failure: Option<NodeFailure>,
    fatal: Option<(usize, ServerError)>,
    fatal_nodes: usize,
    signal_usable: bool,
    /// What the last failed attempt would report, should no other attempt start.
    gave_up: Option<Error>,
    outcome: Option<Result<Lease, Error>>,
    /// Fair mode: every decision is the queued waiter's (the fields above stay unused).
    fair: Option<Queued>,
}

impl<const N: usize> Machine<AcquireOp, N> {
    /// Starts acquiring `lock` with `token` on the nodes described by `servers` (one per
    /// node, in node order; [`ServerInfo::default`] when not known), waiting up to `wait`
    /// for a holder to let go (`Duration::ZERO`: one attempt, a try-lock). `seed` randomises
    /// the retry jitter: pass random bits.
    pub fn new(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        wait: Duration,
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        let mut ctx = Context::new(lock, token, servers)?;
        let options = lock.options();
        let mut op = AcquireOp {
            phase: Phase::Acquiring,
            started: now,
            wait_until: now.saturating_add(wait),
            attempts: 0,
            backoff: Backoff::new(options.retry, seed),
            votes: heapless::Vec::new(),
            granted_fence: 0,
            fresh_grants: 0,
            reentered: None,
            reentered_grants: 0,
            raised: 0,
            raise_failed: 0,
            holder_ttl: None,
            busy_ttls: heapless::Vec::new(),
            refused: false,
            probed: false,
            last_failure: None,
            fatal: None,
            fatal_nodes: 0,
            signal_usable: options.wake_signal.is_some(),
            gave_up: None,
            outcome: None,
            fair: None,
        };
        if options.fair {
            op.fair = Some(Queued::start(&mut ctx, wait, now, seed));
        } else {
            op.start_attempt(&mut ctx, now);
        }
        Ok(Machine { ctx, op })
    }
}

impl AcquireOp {
    fn may_retry_after(&self, lock: &Lock, now: Instant) -> bool {
        let attempts_left = lock
            .options()
            .retry
            .max_attempts
            .is_none_or(|max| self.attempts < max);
        attempts_left && now < self.wait_until
    }

    fn start_attempt<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        self.attempts = self.attempts.saturating_add(1);
        self.phase = Phase::Acquiring;
        self.started = now;
        self.granted_fence = 0;
        self.fresh_grants = 0;
        self.reentered = None;
        self.reentered_grants = 0;
        self.fatal = None;
        self.fatal_nodes = 0;
        self.votes.clear();
        self.busy_ttls.clear();
        // The first attempt sends only the command it needs: an uncontended acquire (the
        // common case) is one `SET NX PX`, not two commands. Only after a refusal — when a
        // wait is coming — does an attempt also ask how long the holder's key lives, and only
        // when that can time a later attempt. `fail_attempt` retries a refused first attempt
        // at once for that answer, so no wait is ever timed without it.
        // A read-write lock's writer that may wait says so from its first attempt (the flag is
        // what registers its intent): a refusal then turns new readers away at once, not only
        // after its first wait (see `crate::rwlock`).
        let waits = self.refused || ctx.lock.is_write_side();
        let probe_ttl = waits && self.may_retry_after(&ctx.lock, now);
        self.probed = probe_ttl;
        // The attempt that may be followed by a wait marks the name first (see "Waking up").
        let mark_waiting = probe_ttl && marks_waiting(&ctx.lock);
        for node in 0..ctx.links.len() {
            let vote = if ctx.links.queue(
                node,
                Request::Acquire {
                    probe_ttl,
                    attempt: self.attempts,
                    mark_waiting,
                },
            ) {
                Vote::Pending
            } else {
                self.last_failure = Some(NodeFailure::Disconnected);
                Vote::Failed
            };
            let _ = self.votes.push(vote);
            let _ = self.busy_ttls.push(UNKNOWN_TTL);
        }
        self.decide(ctx, now);
    }

    fn count(&self, vote: Vote) -> usize {
        self.votes.iter().filter(|&&v| v == vote).count()
    }

    /// Settles the round when its result is certain.
    fn decide<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        let nodes = self.votes.len();
        let needed = quorum(nodes);
        let granted = self.count(Vote::Granted);
        let against = self.count(Vote::Busy) + self.count(Vote::Failed) + self.count(Vote::Lost);
        if granted >= needed {
            if ctx.lock.options().fenced && nodes > 1 {
                self.start_raise(ctx, now);
            } else {
                self.succeed(ctx, now);
            }
        } else if against > nodes - needed {
            self.fail_attempt(ctx, now, None);
        }
    }

    fn start_raise<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        let fence = self.granted_fence;
        self.phase = Phase::Raising { fence };
        self.raised = 0;
        self.raise_failed = 0;
        for (node, vote) in self.votes.iter_mut().enumerate() {
            // A silent node's grant may still land: it stays a node to roll back.
            if *vote == Vote::Pending {
                *vote = Vote::Granted;
            }
            // Raising is safe on any node (it only ever increases a counter), and every node
            // that takes it brings the quorum closer.
            if !ctx.links.queue(node, Request::RaiseFence(fence)) {
                self.raise_failed += 1;
            }
        }
        self.raise_decide(ctx, now);
    }

    fn raise_decide<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        let nodes = self.votes.len();
        let needed = quorum(nodes);
        if self.raised >= needed {
            self.succeed(ctx, now);
        } else if self.raise_failed > nodes - needed {
            self.fail_attempt(ctx, now, None);
        }
    }

    fn succeed<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        let valid_until = ctx.lock.valid_until(self.started);
        if now >= valid_until {
            return self.fail_attempt(ctx, now, Some(Error::Expired));
        }
        // A fresh acquisition holds this attempt's token; a re-entry holds the owner's (the
        // token the caller passed: the lease token of its first acquisition). The lease is the
        // token a quorum holds; grants split between the two (some nodes lost the key) hold
        // neither by a quorum, and win nothing.
        let needed = quorum(self.votes.len());
        let (token, holds) = match self.reentered {
            Some(holds) if self.reentered_grants >= needed => (ctx.token.clone(), holds),
            _ if self.fresh_grants >= needed => {
                let reentrant = ctx.lock.options().reentrant;
                (ctx.token.for_attempt(self.attempts, reentrant), 1)
            }
            _ => return self.fail_attempt(ctx, now, None),
        };
        // Replies still owed (slow nodes) are stale now; their grants are ours and go with
        // the release, which is sent to every node.
        ctx.links.abandon_all();
        let lease = Lease {
            token,
            fence: ctx.lock.options().fenced.then_some(self.granted_fence),
            started: self.started,
            valid_until,
            holds,
        };
        self.finish(Ok(lease));
    }

    /// The attempt cannot win: roll back, then retry, wait or give up.
    fn fail_attempt<const N: usize>(
        &mut self,
        ctx: &mut Context<N>,
        now: Instant,
        reason: Option<Error>,
    ) {
        let nodes = self.votes.len();
        let needed = quorum(nodes);
        let granted = self.count(Vote::Granted);
        let busy = self.count(Vote::Busy);
        let pending = self.count(Vote::Pending);
        self.roll_back(ctx);
        if let Some((node, error)) = self.fatal.take()
            && nodes - self.fatal_nodes < needed
        {
            let node = u8::try_from(node).unwrap_or(u8::MAX);
            return self.finish(Err(Error::Server { node, error }));
        }
        let error = reason.unwrap_or_else(|| self.attempt_error(granted, busy, pending));
        if !self.may_retry_after(&ctx.lock, now) {
            return self.finish(Err(error));
        }
        if busy > 0 {
            self.refused = true;
            // The same when the attempt carried no waiting mark (the acquire script says the
            // TTL from the first attempt on): a wait after an unmarked attempt could sleep
            // through a release that pushed nothing.
            if !self.probed && (self.holder_ttl.is_none() || marks_waiting(&ctx.lock)) {
                // Refused without learning the holder's TTL (a plain `SET NX`: the first
                // attempt does not ask). Waiting now would be timed by the retry cap alone,
                // and a holder whose key expires (a crashed holder pushes no signal) would
                // keep this waiter blocked past the moment the lock became free. One more
                // attempt at once asks for it; it is also the earliest retry there can be.
                // A rollback queued for a node must go out before the next attempt's
                // request replaces it there: then the retry waits for the driver's next turn.
                self.gave_up = Some(error);
                if ctx.links.has_queued() {
                    self.phase = Phase::Sleeping { until: now };
                    return;
                }
                self.gave_up = None;
                return self.start_attempt(ctx, now);
            }
        }
        // Reported if the next attempt cannot start before the wait runs out.
        self.gave_up = Some(error);
        let remaining = self.wait_until.saturating_since(now);
        // Past the moment a quorum's keys have expired there is nothing to wait for.
        let until_free = self
            .quorum_free_in(needed)
            .map(|t| t.saturating_add(Duration::from_millis(1)));
        // Block on the signal of a node that said "busy" (it has no rollback queued): the one
        // whose key lives longest. Keys that expire within the span need no signal, the
        // timeout covers them; the longest-lived is the one only a release or a rollback can
        // free in time — typically a competitor's attempt on a split vote, rolled back at
        // once. Found by the wake-up simulation: two waiters blocked on the first busy node,
        // held by a key about to expire, while each one's rollback signalled the node the
        // other one needed, and the lock stayed free and unwatched until the span ran out.
        let waiter = self
            .votes
            .iter()
            .zip(&self.busy_ttls)
            .enumerate()
            .filter(|(_, (vote, _))| **vote == Vote::Busy)
            // Unknown counts as longest; the first node wins a tie.
            .max_by_key(|(node, (_, ttl))| (**ttl, core::cmp::Reverse(*node)))
            .map(|(node, _)| node)
            .filter(|_| self.signal_usable)
            // A node that refused the mark may release without a push: poll it instead.
            .filter(|&node| !ctx.links.mark_refused(node));
        // Never longer than the retry cap either: a release that pushes no signal (a client
        // with signals off, another library, a reset) is then noticed within the cap.
        let cap = ctx.lock.options().retry.cap;
        let span = until_free
            .map_or(cap, |t| t.min(cap))
            .min(remaining)
            .max(Duration::from_millis(1));
        // A marked waiter's cycle must end while its mark lives; when no span is left, poll.
        let (span, waiter) = if marks_waiting(&ctx.lock) {
            match marked_span(span, ctx.lock.options().request_timeout) {
                Some(span) => (span, waiter),
                None => (span, None),
            }
        } else {
            (span, waiter)
        };
        match waiter {
            Some(node) if ctx.links.queue(node, Request::Wait(span)) => {
                self.phase = Phase::Waiting { node };
            }
            _ => {
                let delay = self.backoff.next_delay();
                let delay = until_free.map_or(delay, |t| delay.min(t)).min(remaining);
                self.phase = Phase::Sleeping {
                    until: now.saturating_add(delay),
                };
            }
        }
    }

    /// How long until enough keys of this round's "busy" nodes have expired for a quorum to
    /// be free, taking every other node as free (what granted is rolled back): the k-th
    /// shortest of their TTLs, k = `needed` minus the nodes that did not say busy. `None`
    /// when a TTL that counts is unknown. With one node, its holder's TTL.
    ///
    /// Not the longest TTL: over several nodes one lease's keys expire apart (each was set
    /// when its request arrived), and a competitor's attempt may hold a minority whose keys
    /// outlive the holder's; waiting for the last of them kept waiters blocked while a quorum
    /// was free (found by the wake-up simulation, `core/tests/sim/wakeup.rs`).
    fn quorum_free_in(&self, needed: usize) -> Option<Duration> {
        let nodes = self.votes.len();
        let busy = self.count(Vote::Busy);
        let k = needed.saturating_sub(nodes - busy).max(1);
        let mut ttls: heapless::Vec<u32, MAX_NODES> = self
            .votes
            .iter()
            .zip(&self.busy_ttls)
            .filter(|(vote, _)| **vote == Vote::Busy)
            .map(|(_, ttl)| *ttl)
            .collect();
        // Unknown sorts last: it counts as "longer than any".
        ttls.sort_unstable();
        ttls.get(k - 1)
            .filter(|&&ms| ms != UNKNOWN_TTL)
            .map(|&ms| Duration::from_millis(u64::from(ms)))
    }

    /// What a failed attempt reports, from its votes. The attempt may be settled before every
    /// node answered (two "busy" of five with one node down already rule a quorum out).
    /// Nodes still silent count for the cluster: it is contention, not a lost quorum, unless
    /// the failures alone leave too few nodes.
    fn attempt_error(&self, granted: usize, busy: usize, pending: usize) -> Error {
        let nodes = self.votes.len();
        let needed = quorum(nodes);
        if busy > 0 && granted + busy + pending >= needed {
            Error::NotAcquired {
                attempts: self.attempts,
                holder_ttl: self.holder_ttl,
            }
        } else {
            Error::QuorumLost {
                granted: u8::try_from(granted).unwrap_or(u8::MAX),
                needed: u8::try_from(needed).unwrap_or(u8::MAX),
                nodes: u8::try_from(nodes).unwrap_or(u8::MAX),
                last_failure: self.last_failure.clone(),
            }
        }
    }

    /// Between attempts, `node` turned out to be down (its connection dropped, or the wait on
    /// its signal got no answer): what the last attempt would report must not claim it still
    /// says "busy". Found against real servers: a waiter whose majority died while it waited
    /// reported "held by another owner" at its deadline, though no quorum was left to hold it.
    fn node_went_down(&mut self, node: usize, failure: NodeFailure) {
        if !matches!(self.phase, Phase::Sleeping { .. } | Phase::Waiting { .. }) {
            return;
        }
        let Some(vote) = self.votes.get_mut(node) else {
            return;
        };
        // A node still silent when the attempt settled counted for the cluster, like a
        // "busy" one; neither does once it is seen down.
        if !matches!(*vote, Vote::Busy | Vote::Pending) {
            return;
        }
        *vote = Vote::Lost;
        self.last_failure = Some(failure);
        if self.gave_up.is_some() {
            let (granted, busy) = (self.count(Vote::Granted), self.count(Vote::Busy));
            self.gave_up = Some(self.attempt_error(granted, busy, self.count(Vote::Pending)));
        }
    }

    /// Starts the next attempt, unless the wait ran out meanwhile (the driver was late, or a
    /// wake-up came at the deadline): no attempt starts after the deadline, so an acquire
    /// ends by `wait + 2 × request_timeout` on the caller's clock.
    fn retry_or_give_up<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        if now <= self.wait_until {
            self.gave_up = None;
            return self.start_attempt(ctx, now);
        }
        let error = self.gave_up.take().unwrap_or(Error::NotAcquired {
            attempts: self.attempts,
            holder_ttl: self.holder_ttl,
        });
        self.finish(Err(error));
    }

    /// Queues the compare-and-delete of this attempt's token on every node that granted or
    /// may have (still silent, or lost); their replies, and everything else in flight, are
    /// no longer needed.
    fn roll_back<const N: usize>(&self, ctx: &mut Context<N>) {
        for (node, vote) in self.votes.iter().enumerate() {
            if matches!(vote, Vote::Granted | Vote::Pending | Vote::Lost) {
                let _ = ctx.links.queue(
                    node,
                    Request::Rollback {
                        attempt: self.attempts,
                    },
                );
            }
        }
        ctx.links.abandon_all();
    }

    fn finish(&mut self, outcome: Result<Lease, Error>) {
        self.phase = Phase::Done;
        self.outcome = Some(outcome);
    }

    fn record_failure(&mut self, node: usize, failure: NodeFailure) {
        if let NodeFailure::Server(error) = &failure
            && !error.kind.is_transient()
        {
            self.fatal_nodes += 1;
            if self.fatal.is_none() {
                self.fatal = Some((node, error.clone()));
            }
        }
        self.last_failure = Some(failure);
    }
}

/// How long a waiter's mark ([`crate::Keys::waiting`]) lives: the same for every client, so a
/// later mark never shortens an earlier one. Long enough that every blocking span the retry
/// policy allows fits in it (see `marked_span`); a crashed waiter's mark only makes releases
/// push (what every release did before marks) until it expires.
pub const WAITING_MARK_LIFE: Duration = Duration::from_secs(30);

/// Whether an acquire of `lock` marks the name before an attempt that may be followed by a
/// wait: a plain (non-fair) mutex of one name, with wake-up signals on, under a layout that
/// has the mark. Semaphores, read-write locks, multi-name and fair locks have release scripts
/// of their own, which push as before.
fn marks_waiting(lock: &Lock) -> bool {
    let options = lock.options();
    lock.limit().is_none()
        && lock.rw_mode().is_none()
        && lock.multi.is_none()
        && !options.fair
        && options.wake_signal.is_some()
        && lock.keys().waiting().is_some()
}

/// A marked waiter's blocking span, clamped so its cycle ends before its mark expires: the
/// mark was set by the attempt that preceded the wait, whose reply took up to one request
/// timeout, and the `BLPOP` may answer up to one request timeout past its span. `None` when
/// nothing is left (a request timeout of 15 s or more): the waiter polls instead.
#[must_use]
pub(crate) fn marked_span(span: Duration, request_timeout: Duration) -> Option<Duration> {
    let round_trips = request_timeout.saturating_add(request_timeout);
    let room = WAITING_MARK_LIFE.saturating_sub(round_trips);
    (!room.is_zero()).then(|| span.min(room))
}

impl Decide for AcquireOp {
    type Outcome = Result<Lease, Error>;

    fn on_answer<const N: usize>(
        &mut self,
        ctx: &mut Context<N>,
        node: usize,
        request: Request,
        answer: Answer,
        now: Instant,
    ) {
        if let Some(fair) = &mut self.fair {
            return fair.on_answer(ctx, request, answer, now);
        }
        match (self.phase, request) {
            (Phase::Acquiring, Request::Acquire { .. }) => {
                if self.votes.get(node) != Some(&Vote::Pending) {
                    return;
                }
                let vote = match answer {
                    Answer::Granted { holds, fence } => {
                        self.granted_fence = self.granted_fence.max(fence);
                        if holds > 1 {
                            self.reentered = Some(self.reentered.map_or(holds, |h| h.min(holds)));
                            self.reentered_grants += 1;
                        } else {
                            self.fresh_grants += 1;
                        }
                        Vote::Granted
                    }
                    Answer::Busy { holder_ttl } => {
                        // The longest TTL this round reported; an earlier round's only
                        // where this one did not ask.
                        self.holder_ttl = if self.count(Vote::Busy) == 0 {
                            holder_ttl.or(self.holder_ttl)
                        } else {
                            self.holder_ttl.max(holder_ttl)
                        };
                        if let Some(slot) = self.busy_ttls.get_mut(node) {
                            *slot = holder_ttl.map_or(UNKNOWN_TTL, |t| {
                                u32::try_from(t.as_millis())
                                    .map_or(UNKNOWN_TTL - 1, |ms| ms.min(UNKNOWN_TTL - 1))
                            });
                        }
                        Vote::Busy
                    }
                    Answer::Failed(
                        failure @ (NodeFailure::Timeout | NodeFailure::Disconnected),
                    ) => {
                        self.record_failure(node, failure);
                        Vote::Lost
                    }
                    Answer::Failed(failure) => {
                        self.record_failure(node, failure);
                        Vote::Failed
                    }
                    _ => {
                        self.record_failure(
                            node,
                            NodeFailure::Protocol(crate::ProtocolError::UnexpectedReply),
                        );
                        Vote::Failed
                    }
                };
                if let Some(slot) = self.votes.get_mut(node) {
                    *slot = vote;
                }
                self.decide(ctx, now);
            }
            (Phase::Raising { fence }, Request::RaiseFence(asked)) if asked == fence => {
                match answer {
                    Answer::Raised(value) if value >= fence => self.raised += 1,
                    Answer::Failed(failure) => {
                        self.raise_failed += 1;
                        self.record_failure(node, failure);
                    }
                    _ => self.raise_failed += 1,
                }
                self.raise_decide(ctx, now);
            }
            (Phase::Waiting { node: waiting }, Request::Wait(_)) if waiting == node => {
                if let Answer::Failed(NodeFailure::Server(error)) = &answer
                    && !error.kind.is_transient()
                {
                    // BLPOP refused (ACL, or no such command): poll instead from now on.
                    self.signal_usable = false;
                }
                if let Answer::Failed(
                    failure @ (NodeFailure::Timeout | NodeFailure::Disconnected),
                ) = answer
                {
                    self.node_went_down(node, failure);
                }
                self.retry_or_give_up(ctx, now);
            }
            // Rollbacks, and replies of rounds already settled: nothing to decide, but a node
            // that stopped answering between attempts is down for what they report.
            (_, _) => {
                if let Answer::Failed(
                    failure @ (NodeFailure::Timeout | NodeFailure::Disconnected),
                ) = answer
                {
                    self.node_went_down(node, failure);
                }
            }
        }
    }

    fn on_timer<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        if let Some(fair) = &mut self.fair {
            return fair.on_timer(ctx, now);
        }
        if let Phase::Sleeping { until } = self.phase
            && now >= until
        {
            self.retry_or_give_up(ctx, now);
        }
    }

    fn timer(&self) -> Option<Instant> {
        if let Some(fair) = &self.fair {
            return fair.timer();
        }
        match self.phase {
            Phase::Sleeping { until } => Some(until),
            _ => None,
        }
    }

    fn on_idle_disconnect<const N: usize>(
        &mut self,
        _ctx: &mut Context<N>,
        node: usize,
        _now: Instant,
    ) {
        self.node_went_down(node, NodeFailure::Disconnected);
    }

    fn on_cancel<const N: usize>(&mut self, ctx: &mut Context<N>, _now: Instant) {
        if let Some(fair) = &mut self.fair {
            return fair.on_cancel(ctx);
        }
        if self.phase == Phase::Done {
            return;
        }
        if matches!(self.phase, Phase::Acquiring | Phase::Raising { .. }) {
            self.roll_back(ctx);
        }
        ctx.links.abandon_all();
        self.finish(Err(Error::Cancelled));
    }

    fn take_outcome(&mut self) -> Option<Self::Outcome> {
        if let Some(fair) = &mut self.fair {
            return fair.take_outcome();
        }
        self.outcome.take()
    }
}
