//! The vote that release ([`crate::release`]) and extend ([`crate::extend`]) share: one
//! compare-and-act sent to every node, decided by quorum.
//!
//! Both are a *ballot*: every node is asked once; a quorum of yes wins, more than `n -
//! quorum` "not held" loses with [`Error::NotHeld`], and anything else is
//! [`Error::QuorumLost`] (or the server's error, when one that waiting cannot fix makes a
//! quorum impossible).
//!
//! A node that answered with a transient server error (`LOADING`, `BUSY`, `TRYAGAIN`, a
//! failover's `READONLY`) did not run the command, so it is asked again after a backoff
//! delay, until the ballot's deadline (`now + request_timeout`). A node that timed out or
//! disconnected is *not* asked again: the command may have run, and a second
//! compare-and-delete would then say "not held" about a release that worked.
//!
//! An extend's new validity is measured from the moment the ballot started, before any
//! request left, as for acquire: `started + ttl - drift`.
//!
//! Invariant: `Ok` needs a quorum of well-formed yes replies to this ballot's requests.

use crate::commands::{Answer, Request};
use crate::error::{ConfigError, Error, NodeFailure, ServerError};
use crate::keys::Token;
use crate::lock::MAX_NODES;
use crate::lock::{Lock, quorum};
use crate::machine::Context;
use crate::retry::Backoff;
use crate::server::ServerInfo;
use crate::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vote {
    Pending,
    Yes,
    NotHeld,
    /// Failed, but asking again can help.
    Retry,
    /// Failed for good in this ballot.
    Failed,
}

/// The shared state of a release or an extend.
#[derive(Debug, Clone)]
pub(crate) struct Ballot {
    request: Request,
    votes: heapless::Vec<Vote, MAX_NODES>,
    started: Instant,
    deadline: Instant,
    sleeping_until: Option<Instant>,
    backoff: Backoff,
    still_held: u32,
    last_failure: Option<NodeFailure>,
    fatal: Option<(usize, ServerError)>,
    /// For an extend: `started + ttl - drift`.
    valid_until: Instant,
    done: bool,
    decided: Option<Result<u32, Error>>,
}

impl Ballot {
    /// Queues `request` to every node and starts counting votes.
    pub(crate) fn start<const N: usize>(
        request: Request,
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        now: Instant,
        seed: u64,
    ) -> Result<(Context<N>, Ballot), ConfigError> {
        let mut ctx = Context::new(lock, token, servers)?;
        let options = lock.options();
        let mut ballot = Ballot {
            request,
            votes: heapless::Vec::new(),
            started: now,
            deadline: now.saturating_add(options.request_timeout),
            sleeping_until: None,
            backoff: Backoff::new(options.retry, seed),
            still_held: u32::MAX,
            last_failure: None,
            fatal: None,
            valid_until: lock.valid_until(now),
            done: false,
            decided: None,
        };
        for node in 0..ctx.links.len() {
            let vote = if ctx.links.queue(node, request) {
                Vote::Pending
            } else {
                Vote::Failed
            };
            let _ = ballot.votes.push(vote);
        }
        ballot.decide(&mut ctx, now);
        Ok((ctx, ballot))
    }

    /// When the round started (an extend's validity counts from here).
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// For an extend: `started + ttl - drift`.
    pub(crate) fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// The decision, once: the holds left (release) or 0.
    pub(crate) fn take_decided(&mut self) -> Option<Result<u32, Error>> {
        self.decided.take()
    }

    fn count(&self, vote: Vote) -> usize {
        self.votes.iter().filter(|&&v| v == vote).count()
    }

    pub(crate) fn on_answer<const N: usize>(
        &mut self,
        ctx: &mut Context<N>,
        node: usize,
        request: Request,
        answer: Answer,
        now: Instant,
    ) {
        if self.done || request != self.request {
            return;
        }
        let Some(vote) = self.votes.get_mut(node) else {
            return;
        };
        if *vote != Vote::Pending {
            return;
        }
        *vote = match answer {
            Answer::Released { still_held } => {
                self.still_held = self.still_held.min(still_held);
                Vote::Yes
            }
            Answer::Extended => Vote::Yes,
            Answer::NotHeld => Vote::NotHeld,
            Answer::Failed(NodeFailure::Server(error)) if error.kind.is_transient() => {
                self.last_failure = Some(NodeFailure::Server(error));
                Vote::Retry
            }
            Answer::Failed(failure) => {
                if let NodeFailure::Server(error) = &failure {
                    self.fatal.get_or_insert((node, error.clone()));
                }
                self.last_failure = Some(failure);
                Vote::Failed
            }
            _ => {
                self.last_failure =
                    Some(NodeFailure::Protocol(crate::ProtocolError::UnexpectedReply));
                Vote::Failed
            }
        };
        self.decide(ctx, now);
    }

    fn decide<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        let nodes = self.votes.len();
        let needed = quorum(nodes);
        let yes = self.count(Vote::Yes);
        let not_held = self.count(Vote::NotHeld);
        let can_retry = now < self.deadline;
        let pending = self.count(Vote::Pending);
        let retry = self.count(Vote::Retry);
        let hopeful = yes + pending + if can_retry { retry } else { 0 };
        // A release hears every node out (each has a reply deadline) before it reports, so a
        // slow node's key is deleted too — its NOSCRIPT fallback included — and not left to
        // its TTL. An extend may report as soon as its quorum is in.
        let settled =
            self.request != Request::Release || (pending == 0 && (retry == 0 || !can_retry));
        if !settled {
            return self.retry_later(now);
        }
        if yes >= needed {
            let holds = if self.still_held == u32::MAX {
                0
            } else {
                self.still_held
            };
            return self.finish(ctx, Ok(holds));
        }
        if not_held > nodes - needed {
            return self.finish(ctx, Err(Error::NotHeld));
        }
        if hopeful < needed {
            let error = match self.fatal.take() {
                Some((node, error)) => Error::Server {
                    node: u8::try_from(node).unwrap_or(u8::MAX),
                    error,
                },
                None => Error::QuorumLost {
                    granted: u8::try_from(yes).unwrap_or(u8::MAX),
                    needed: u8::try_from(needed).unwrap_or(u8::MAX),
                    nodes: u8::try_from(nodes).unwrap_or(u8::MAX),
                    last_failure: self.last_failure.clone(),
                },
            };
            return self.finish(ctx, Err(error));
        }
        self.retry_later(now);
    }

    /// When only nodes worth asking again are left, asks them after a pause.
    fn retry_later(&mut self, now: Instant) {
        if self.count(Vote::Pending) == 0
            && self.count(Vote::Retry) > 0
            && self.sleeping_until.is_none()
        {
            // Only retryable nodes keep the outcome open: ask them again after a pause.
            let delay = self.backoff.next_delay();
            self.sleeping_until = Some(now.saturating_add(delay).min(self.deadline));
        }
    }

    pub(crate) fn on_timer<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
        if self.done || self.sleeping_until.is_none_or(|t| now < t) {
            return;
        }
        self.sleeping_until = None;
        if now < self.deadline {
            for (node, vote) in self.votes.iter_mut().enumerate() {
                if *vote == Vote::Retry {
                    *vote = if ctx.links.queue(node, self.request) {
                        Vote::Pending
                    } else {
                        Vote::Failed
                    };
                }
            }
        }
        self.decide(ctx, now);
    }

    pub(crate) fn timer(&self) -> Option<Instant> {
        if self.done { None } else { self.sleeping_until }
    }

    pub(crate) fn cancel<const N: usize>(&mut self, ctx: &mut Context<N>) {
        if !self.done {
            self.finish(ctx, Err(Error::Cancelled));
        }
    }

    fn finish<const N: usize>(&mut self, ctx: &mut Context<N>, outcome: Result<u32, Error>) {
        // Slow nodes' commands were sent and will run; their replies are no longer needed.
        ctx.links.abandon_all();
        self.done = true;
        self.sleeping_until = None;
        self.decided = Some(outcome);
    }
}

/// The delegation both ballots share; `$settle` turns the ballot and the holds left into
/// the outcome.
macro_rules! ballot_operation {
    ($op:ty, $outcome:ty, $settle:expr) => {
        impl Decide for $op {
            type Outcome = Result<$outcome, Error>;

            fn on_answer<const N: usize>(
                &mut self,
                ctx: &mut Context<N>,
                node: usize,
                request: Request,
                answer: Answer,
                now: Instant,
            ) {
                self.0.on_answer(ctx, node, request, answer, now);
            }

            fn on_timer<const N: usize>(&mut self, ctx: &mut Context<N>, now: Instant) {
                self.0.on_timer(ctx, now);
            }

            fn timer(&self) -> Option<Instant> {
                self.0.timer()
            }

            fn on_cancel<const N: usize>(&mut self, ctx: &mut Context<N>, _now: Instant) {
                self.0.cancel(ctx);
            }

            fn take_outcome(&mut self) -> Option<Self::Outcome> {
                let settle: fn(&Ballot, u32) -> $outcome = $settle;
                let decided = self.0.take_decided()?;
                Some(decided.map(|holds| settle(&self.0, holds)))
            }
        }
    };
}

pub(crate) use ballot_operation;
