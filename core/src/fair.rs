//! Fair mode's decisions: a single-node waiter that queues in arrival order and is handed the
//! lock by the release, in one round trip, on its own wake-up list.
//!
//! This module owns every number of fair mode (the block span, the liveness, the hand-off
//! cap, all derived from the lock's request timeout `R`) and the waiter's sub-state
//! [`Queued`], which [`crate::acquire::AcquireOp`] delegates to when
//! [`crate::LockOptions::fair`] is on. The scripts are [`crate::script::FAIR_ACQUIRE`] and
//! [`crate::script::FAIR_RELEASE`]; the keys are in [`crate::keys`]. A fair semaphore
//! ([`crate::Lock::semaphore`]) runs the same waiter and numbers with its own scripts,
//! [`crate::script::SEMAPHORE_FAIR_ACQUIRE`] and [`crate::script::SEMAPHORE_FAIR_RELEASE`]:
//! there "the lock" below is one of the permits.
//!
//! ## A waiter's cycle
//! An *attempt* keeps one token ([`crate::Token::for_attempt`]) and its place in the queue
//! across *cycles*. The first cycle is the fair acquire script alone; each later one is one
//! pipelined batch, `[BLPOP <wake list of this token> L, EVALSHA fair-acquire]`, with
//! `L = min(R / 2, time left to wait)`. The script either grants (re-entry, a hand-off it
//! confirms, or a free lock with nobody live ahead) or says busy, queueing the token (or
//! refreshing its liveness: a key that lives `L + R / 2`, enough to reach the next cycle's
//! script). A busy cycle is followed at once by the next one, with the same token: no sleep,
//! no herd — only the waiter the release handed the lock to is woken.
//!
//! A try-lock (`wait` zero) sends one cycle with enqueue off: it never takes a lock live
//! waiters queue for, and never joins the queue.
//!
//! A cycle whose reply is lost (timeout, disconnect) or that fails ends the attempt: the
//! attempt's token is rolled back by the fair release script (compare-and-delete that also
//! leaves the queue and hands the lock on, so a lost cycle never strands the queue), and the
//! next attempt, after a backoff delay, has a new token at the back of the queue. A waiter
//! that gives up at its deadline or is cancelled leaves the queue the same way.
//!
//! ## Validity of a cycle's grant
//! Let `t_send` be when the batch was queued (on the client's clock) and `extra` its `BLPOP`
//! span (zero for the script-only first cycle). The script runs at server time `T_c`, after
//! the batch left: `T_c >= t_send`. It sets the lock key for `ttl + extra`, so the key lives
//! until at least `t_send + extra + ttl`. The lease is reported with
//! `t0 = min(reply time, t_send + extra)`, valid until `t0 + ttl - drift(ttl + extra)`:
//! `t0 + ttl <= t_send + extra + ttl`, and the drift allowance covers a server clock running
//! fast over the key's whole life. A waiter woken at once has `t0` about its reply time, so a
//! hand-off loses the lease no validity to the time spent waiting. A grant whose validity has
//! run out by the reply is rolled back, like the non-fair path's.
//!
//! ## Dead waiters
//! A waiter that dies stops refreshing its liveness key, which expires within
//! [`liveness`]`(R) = R`. Releases and free-lock takes drop waiters without one from the
//! queue's head (O(dead)). A hand-off to a waiter that dies before confirming sets the lock
//! for at most `min(its remaining liveness, `[`handoff_cap`]`(R)) <= R`; after it runs out the
//! next live waiter's cycle, at most `L` later, takes the lock: the stall is at most
//! `1.5 R`, never a TTL.
//!
//! ## Servers without fractional `BLPOP` timeouts
//! A server older than Redis 6 (or one the handshake did not identify) blocks whole seconds
//! at least, longer than a cycle may take. There the waiter polls instead: after a busy
//! cycle it sleeps `L` and sends the script alone. A hand-off then waits for the waiter's
//! next poll (at most `L`) instead of waking it; order, liveness and every bound above stay.
//!
//! Requirements: one node (Redlock waiters use the non-fair wake-up signal) and the tagged
//! key layout. All clients of a lock must agree on fair mode: a non-fair acquire does not
//! look at the queue. The scripts use sorted sets and `PEXPIRE`: any Redis from 2.6, any
//! Valkey.

use crate::commands::{Answer, Request};
use crate::error::{Error, NodeFailure, ProtocolError};
use crate::lock::Lease;
use crate::machine::Context;
use crate::retry::Backoff;
use crate::time::{Duration, Instant};

/// The longest a waiter blocks on its wake-up list in one cycle: `R / 2` (at least 1 ms).
#[must_use]
pub(crate) fn block_span(request_timeout: Duration) -> Duration {
    Duration::from_millis((request_timeout.as_millis() / 2).max(1))
}

/// How long a waiter counts as live after a cycle's script ran: its next cycle's block span
/// (or poll delay) plus `R / 2` for the round trip in between, so `R`.
#[must_use]
pub(crate) fn liveness(request_timeout: Duration) -> Duration {
    block_span(request_timeout)
        .saturating_add(Duration::from_millis(request_timeout.as_millis() / 2))
}

/// The longest lease a release hands to a waiter that has not confirmed yet: `R`.
#[must_use]
pub(crate) fn handoff_cap(request_timeout: Duration) -> Duration {
    request_timeout
}

/// The lease a cycle's grant reports: validity from `t0 = min(reply, sent + extra)` (see the
/// module doc), or `None` when it has already run out at `now`.
#[must_use]
pub(crate) fn grant_validity(
    lock: &crate::Lock,
    sent: Instant,
    extra: Duration,
    now: Instant,
) -> Option<(Instant, Instant)> {
    let options = lock.options();
    let t0 = now.min(sent.saturating_add(extra));
    let drift = options.drift.allowance(options.ttl.saturating_add(extra));
    let valid_until = t0.saturating_add(options.ttl.saturating_sub(drift));
    (now < valid_until).then_some((t0, valid_until))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A cycle is in flight: queued at `sent`, its key living `extra` longer than the ttl.
    Cycling { sent: Instant, extra: Duration },
    /// Between attempts, after a lost or failed cycle.
    Sleeping { until: Instant },
    /// Waiting to poll again (a server without fractional `BLPOP` timeouts).
    Polling { until: Instant },
    /// The outcome is out.
    Done,
}

/// A fair-mode waiter: the sub-state [`crate::acquire::AcquireOp`] delegates to.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    phase: Phase,
    attempt: u32,
    wait_until: Instant,
    /// Cycles sent (reported as attempts when giving up).
    cycles: u32,
    /// Whether this attempt's token may be in the queue (or handed the lock): a give-up then
    /// rolls it back.
    enqueued: bool,
    backoff: Backoff,
    holder_ttl: Option<Duration>,
    gave_up: Option<Error>,
    outcome: Option<Result<Lease, Error>>,
}

impl Queued {
    /// Starts waiting: the first cycle (script only) is queued.
    pub(crate) fn start<const N: usize>(
        ctx: &mut Context<N>,
        wait: Duration,
        now: Instant,
        seed: u64,
    ) -> Queued {
        let mut queued = Queued {
            phase: Phase::Done,
            attempt: 1,
            wait_until: now.saturating_add(wait),
            cycles: 0,
            enqueued: false,
            backoff: Backoff::new(ctx.lock.options().retry, seed),
            holder_ttl: None,
            gave_up: None,
            outcome: None,
        };
        queued.send_cycle(ctx, Duration::ZERO, now);
        queued
    }

    /// Queues one cycle blocking for `block` first (none when zero).
    fn send_cycle<const N: usize>(&mut self, ctx: &mut Context<N>, block: Duration, now: Instant) {
        let enqueue = now < self.wait_until;
        self.cycles = self.cycles.saturating_add(1);
        self.enqueued |= enqueue;
        let request = Request::FairAcquire {
            attempt: self.attempt,
            enqueue,
            block,
            extra: block,
        };
        if ctx.links.queue(0, request) {
            self.phase = Phase::Cycling {
                sent: now,
                extra: block,
            };
        } else {
            self.cycle_failed(ctx, NodeFailure::Disconnected, now);
        }
    }

    /// Compare-and-delete of this attempt's token that also leaves the queue and hands the
    /// lock on (the fair release script).
    fn roll_back<const N: usize>(&mut self, ctx: &mut Context<N>) {
        if self.enqueued {
            let _ = ctx.links.queue(
                0,
                Request::Rollback {
                    attempt: self.attempt,
                },
            );
            self.enqueued = false;
        }
        ctx.links.abandon_all();
    }

    /// The attempt is over without the lock: roll back, then sleep and start a new attempt
    /// (a new token, at the back of the queue), or give up.
    fn cycle_failed<const N: usize>(
        &mut self,
        ctx: &mut Context<N>,
        failure: NodeFailure,
        now: Instant,
    ) {
        // A lost reply may be a grant: the rollback must reach the node.
        self.enqueued = true;
        self.roll_back(ctx);
        let error = match failure {
            NodeFailure::Server(error) if !error.kind.is_transient() => {
                return self.finish(Err(Error::Server { node: 0, error }));
            }
            failure => Error::QuorumLost {
                granted: 0,
                needed: 1,
                nodes: 1,
                last_failure: Some(failure),
            },
        };
        self.next_attempt(ctx, error, now);
    }

    /// After a rollback: a new attempt after a backoff delay, or `error` when the wait (or
    /// the attempts) ran out.
    fn next_attempt<const N: usize>(&mut self, ctx: &mut Context<N>, error: Error, now: Instant) {
        let attempts_left = ctx
            .lock
            .options()
            .retry
            .max_attempts
            .is_none_or(|max| self.attempt < max);
        if !attempts_left || now >= self.wait_until {
            return self.finish(Err(error));
        }
        self.gave_up = Some(error);
        self.attempt = self.attempt.saturating_add(1);
        let delay = self
            .backoff
            .next_delay()
            .min(self.wait_until.saturating_since(now));
        self.phase = Phase::Sleeping {
            until: now.saturating_add(delay),
        };
    }

    fn granted<const N: usize>(
        &mut self,
        ctx: &mut Context<N>,
        (holds, fence): (u32, u64),
        (sent, extra): (Instant, Duration),
        now: Instant,
    ) {
        let Some((started, valid_until)) = grant_validity(&ctx.lock, sent, extra, now) else {
            // The reply came too late to use the lock: hand it on, and try again (a new
            // token, at the back of the queue) while the wait lasts. Found by the simulator:
            // a waiter whose grant arrived after a latency spike gave up with the wait left.
            self.enqueued = true;
            self.roll_back(ctx);
            return self.next_attempt(ctx, Error::Expired, now);
        };
        let options = ctx.lock.options();
        // A re-entry holds the owner's token; a fresh grant (a take or a confirmed hand-off)
        // this attempt's.
        let token = if holds > 1 {
            ctx.token.clone()
        } else {
            ctx.token.for_attempt(self.attempt, options.reentrant)
        };
        ctx.links.abandon_all();
        self.finish(Ok(Lease {
            token,
            fence: options.fenced.then_some(fence),
            started,
            valid_until,
            holds,
        }));
    }

    fn busy<const N: usize>(
        &mut self,
        ctx: &mut Context<N>,
        holder_ttl: Option<Duration>,
        now: Instant,
    ) {
        self.holder_ttl = holder_ttl.filter(|t| !t.is_zero()).or(self.holder_ttl);
        if now >= self.wait_until {
            self.roll_back(ctx);
            return self.finish(Err(Error::NotAcquired {
                attempts: self.cycles,
                holder_ttl: self.holder_ttl,
            }));
        }
        let block = block_span(ctx.lock.options().request_timeout)
            .min(self.wait_until.saturating_since(now))
            .max(Duration::from_millis(1));
        if ctx
            .links
            .server(0)
            .is_some_and(|s| s.has_fractional_block_timeout())
        {
            self.send_cycle(ctx, block, now);
        } else {
            self.phase = Phase::Polling {
                until: now.saturating_add(block),
            };
        }
    }

    /// A node answered.
    pub(crate) fn on_answer<const N: usize>(
        &mut self,
        ctx: &mut Context<N>,
        request: Request,
        answer: Answer,
        now: Instant,
    ) {
        let (Phase::Cycling { sent, extra }, Request::FairAcquire { attempt, .. }) =
            (self.phase, request)
        else {
            // Rollbacks, and replies of cycles already settled.
            return;
        };
        if attempt != self.attempt {
            return;
        }
        match answer {
            Answer::Granted { holds, fence } => {
                self.granted(ctx, (holds, fence), (sent, extra), now);
            }
            Answer::Busy { holder_ttl } => self.busy(ctx, holder_ttl, now),
            Answer::Failed(failure) => self.cycle_failed(ctx, failure, now),
            _ => self.cycle_failed(
                ctx,
                NodeFailure::Protocol(ProtocolError::UnexpectedReply),
                now,
            ),
        }
    }

    /// The sleep between attempts is over.
    pub(crate) fn on_timer<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        if let Phase::Polling { until } = self.phase
            && now >= until
        {
            if now < self.wait_until {
                return self.send_cycle(ctx, Duration::ZERO, now);
            }
            self.roll_back(ctx);
            return self.finish(Err(Error::NotAcquired {
                attempts: self.cycles,
                holder_ttl: self.holder_ttl,
            }));
        }
        if let Phase::Sleeping { until } = self.phase
            && now >= until
        {
            if now <= self.wait_until {
                self.gave_up = None;
                return self.send_cycle(ctx, Duration::ZERO, now);
            }
            let error = self.gave_up.take().unwrap_or(Error::NotAcquired {
                attempts: self.cycles,
                holder_ttl: self.holder_ttl,
            });
            self.finish(Err(error));
        }
    }

    /// When [`Queued::on_timer`] wants calling.
    pub(crate) fn timer(&self) -> Option<Instant> {
        match self.phase {
            Phase::Sleeping { until } | Phase::Polling { until } => Some(until),
            _ => None,
        }
    }

    /// The caller gave up: leave the queue (hand on a lock handed to us meanwhile).
    pub(crate) fn on_cancel<const N: usize>(&mut self, ctx: &mut Context<N>) {
        if self.phase == Phase::Done {
            return;
        }
        if matches!(self.phase, Phase::Cycling { .. } | Phase::Polling { .. }) {
            // The cycle in flight may grant: roll it back whatever it was.
            self.enqueued = true;
        }
        self.roll_back(ctx);
        self.finish(Err(Error::Cancelled));
    }

    fn finish(&mut self, outcome: Result<Lease, Error>) {
        self.phase = Phase::Done;
        self.outcome = Some(outcome);
    }

    /// The outcome, once.
    pub(crate) fn take_outcome(&mut self) -> Option<Result<Lease, Error>> {
        self.outcome.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyLayout, Lock, LockOptions};
    use proptest::prelude::*;

    #[test]
    fn the_numbers_follow_the_request_timeout() {
        let r = Duration::from_secs(1);
        assert_eq!(block_span(r), Duration::from_millis(500));
        assert_eq!(liveness(r), r);
        assert_eq!(handoff_cap(r), r);
        assert_eq!(
            block_span(Duration::from_millis(1)),
            Duration::from_millis(1)
        );
    }

    proptest! {
        /// The key the script sets (for ttl + extra from a moment no earlier than `sent`)
        /// outlives the reported validity by the drift allowance of its whole life, whatever
        /// the reply time.
        #[test]
        fn a_grant_never_claims_more_than_the_key_lives(
            ttl in 10u64..100_000,
            extra in 0u64..5_000,
            sent in 0u64..1_000_000,
            script_delay in 0u64..10_000,
            reply_delay in 0u64..10_000,
        ) {
            let lock = Lock::new(
                KeyLayout::default(),
                b"p",
                LockOptions { ttl: Duration::from_millis(ttl), fair: true, ..Default::default() },
            ).unwrap();
            let sent = Instant::from_millis(sent);
            let extra = Duration::from_millis(extra);
            // The script runs no earlier than the batch left, the reply comes after it.
            let ran = sent.saturating_add(Duration::from_millis(script_delay));
            let reply = ran.saturating_add(Duration::from_millis(reply_delay));
            let key_until = ran.saturating_add(Duration::from_millis(ttl)).saturating_add(extra);
            if let Some((t0, valid_until)) = grant_validity(&lock, sent, extra, reply) {
                let drift = lock.options().drift.allowance(Duration::from_millis(ttl).saturating_add(extra));
                prop_assert!(valid_until.saturating_add(drift) <= key_until);
                prop_assert!(t0 <= reply);
                prop_assert!(reply < valid_until);
            }
        }
    }
}
