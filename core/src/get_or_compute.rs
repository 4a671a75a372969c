//! Get-or-compute (the dogpile helper): many callers ask for one cached value; one computes
//! it under a lock, the others wait for the *value*, not for the lock.
//!
//! Two machines, each one conversation with one node ([`crate::dialogue`]):
//! - [`GetOrLock`] runs [`crate::script::GET_OR_LOCK`]: the value if it is there; else the
//!   computation's lock, reported as a [`Lease`] ([`Fetched::Computing`]); else it registers
//!   as a waiter and blocks on the wake-up list (`BLPOP`) for at most the holder's remaining
//!   TTL and the time left to wait, then asks again. A waiter therefore returns the stored
//!   value without ever taking the lock.
//! - [`FinishCompute`] runs [`crate::script::FINISH_COMPUTE`]: only while the lease's token
//!   still holds the lock, it stores the value and wakes every registered waiter
//!   ([`FinishCompute::store`]), or gives the computation up and wakes one waiter, which
//!   then takes the lock and computes ([`FinishCompute::abandon`]). A computer whose lock was
//!   lost (it expired, or was reset) stores nothing and is told so ([`Error::NotHeld`]).
//!
//! ## Design, and why
//! - **The computation's lock is the name's plain lock.** `<prefix>{N}` holds the computer's
//!   token with `PX ttl`, exactly as [`crate::Acquire`] writes it, so the existing extend and
//!   renewal ([`crate::Extend`], [`crate::Renewal`]) keep it alive while the computation runs,
//!   `status` shows who computes, and a plain lock of the same name excludes a computation.
//!   The value is `<prefix>{N}:value`, the waiters' count `<prefix>{N}:value:waiters` and
//!   their wake-up list `<prefix>{N}:value:wake`: one hash tag, one slot.
//! - **At most one computation while its lock is valid**: the lock is taken by `SET NX` in
//!   the same script that found no value, and the value is stored only by the token holding
//!   the lock. The lease's validity is the mutex's (`ttl` minus the drift allowance from the
//!   moment the script was sent), so the claim is the mutex's, checked by the simulator
//!   (`core/tests/get_or_compute_simulation.rs`).
//! - **No lost wake-up**: a waiter is counted in the same script that saw the lock held, so
//!   a store that comes after it pushes a wake-up for it (the count outlives every
//!   registered waiter's block: each registration sets its expiry to the holder's PTTL plus
//!   a request timeout, and a waiter blocks no longer than that PTTL); a wake-up pushed before the waiter
//!   reaches its `BLPOP` waits in the list (which lives two request timeouts). Up to
//!   [`MAX_WAKEUPS`] are pushed per store; a waiter beyond them, or whose wake-up was taken
//!   by another, asks again when its wait (the holder's PTTL) ends. A stale wake-up only makes
//!   a waiter ask once more: wake-ups are hints, every one is followed by the script.
//! - **A failed or dead computer is replaced by exactly one waiter**: giving up deletes the
//!   lock and wakes one waiter; a computer that dies leaves its lock to expire at its TTL,
//!   when the waiters' `BLPOP` (timed by that TTL) ends. Either way the next script call
//!   takes the lock by `SET NX`: one wins, the rest wait again.
//! - **Bounded**: each request ends within the request timeout (a `BLPOP` within its block
//!   plus that), the whole fetch within the wait plus three request timeouts (the first
//!   script, the last one after the wait, the last `BLPOP`'s round trip), a finish within
//!   two.
//! - **Allocates**: a value is bytes of any length up to [`MAX_VALUE_LEN`], so these machines
//!   use the heap (as the operator machines do); the lock machines' hot path is untouched.
//!
//! ## Limits
//! One node, the tagged layout, scripts on, a plain lock (not reentrant, fenced or fair):
//! [`ConfigError::ComputeUnsupported`] before anything is sent. Redlock is refused because a
//! value stored on a majority is not a value: a waiter reading a node that missed the store
//! would compute again. Values up to [`MAX_VALUE_LEN`] bytes ([`ConfigError::ValueTooLong`]).

use alloc::vec::Vec;

use crate::dialogue::{Dialogues, NodeError, Step, Task, Value, command, driven_by_dialogues};
use crate::error::{ConfigError, Error, NodeFailure, ProtocolError, ServerError, ServerErrorKind};
use crate::keys::{KeyLayout, Keys, Token};
use crate::lock::{Lease, Lock, Scripts};
use crate::script::{self, Script};
use crate::server::ServerInfo;
use crate::time::{Duration, Instant};

/// The longest value get-or-compute stores and reads back (its reply must fit the
/// conversation's reply buffer, [`crate::ADMIN_REPLY_CAP`]).
pub const MAX_VALUE_LEN: usize = 1_000_000;

/// The most wake-ups one store pushes: each costs the server an `LPUSH` inside the script.
pub const MAX_WAKEUPS: u32 = 1024;

/// Request timeouts a fetch may take beyond its wait: the first script, the last one after
/// the wait, and the round trip of the last `BLPOP`.
const BUDGET_SLACK: u64 = 3;

/// How long pushed wake-ups wait for their waiters: two request timeouts (a waiter reaches
/// its `BLPOP` one round trip after its script).
fn wake_ttl(request_timeout: Duration) -> Duration {
    request_timeout.saturating_mul(2)
}

/// The value's key, the waiters' count and their wake-up list, as parts to concatenate; only
/// the tagged layout has them (the constructors refuse the others).
fn compute_keys(keys: &Keys) -> Option<[Vec<u8>; 3]> {
    let KeyLayout::Tagged { prefix } = keys.layout() else {
        return None;
    };
    let key = |suffix: &[u8]| {
        let mut k = Vec::with_capacity(prefix.len() + keys.name().as_bytes().len() + 16);
        k.extend_from_slice(prefix);
        k.push(b'{');
        k.extend_from_slice(keys.name().as_bytes());
        k.extend_from_slice(suffix);
        k
    };
    Some([
        key(b"}:value"),
        key(b"}:value:waiters"),
        key(b"}:value:wake"),
    ])
}

fn lock_key(keys: &Keys) -> Vec<u8> {
    keys.lock().concat()
}

/// Whether `lock` can be the computation's lock over `servers`.
fn check(lock: &Lock, servers: &[ServerInfo]) -> Result<(), ConfigError> {
    let options = lock.options();
    let plain = lock.limit().is_none() && lock.rw_mode().is_none() && lock.multi.is_none();
    if servers.len() != 1
        || !plain
        || options.reentrant
        || options.fenced
        || options.fair
        || options.scripts == Scripts::Never
        || compute_keys(lock.keys()).is_none()
    {
        return Err(ConfigError::ComputeUnsupported);
    }
    Ok(())
}

/// A script call: `EVALSHA` until the node says `NOSCRIPT`, then `EVAL`.
fn script_call(script: &Script, by_source: bool, keys: &[&[u8]], argv: &[&[u8]]) -> Vec<u8> {
    let mut numkeys = [0u8; 20];
    let numkeys = crate::resp::encode::decimal(keys.len() as u64, &mut numkeys);
    let mut args: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + argv.len());
    if by_source {
        args.push(b"EVAL");
        args.push(script.source.as_bytes());
    } else {
        args.push(b"EVALSHA");
        args.push(&script.sha);
    }
    args.push(numkeys);
    args.extend_from_slice(keys);
    args.extend_from_slice(argv);
    command(&args)
}

fn decimal(n: u64) -> Vec<u8> {
    let mut buf = [0u8; 20];
    crate::resp::encode::decimal(n, &mut buf).to_vec()
}

/// What a script's error reply means: `NOSCRIPT` asks for the source, anything else fails.
fn script_error(message: &[u8]) -> Result<(), NodeError> {
    if ServerErrorKind::classify(message) == ServerErrorKind::NoScript {
        Ok(())
    } else {
        Err(NodeError::Server(ServerError::from_message(message)))
    }
}

fn unexpected() -> NodeError {
    NodeError::Protocol(ProtocolError::UnexpectedReply)
}

/// One node's failure as an operation error, as [`crate::Acquire`] reports it on one node.
fn operation_error(error: NodeError) -> Error {
    let lost = |failure| Error::QuorumLost {
        granted: 0,
        needed: 1,
        nodes: 1,
        last_failure: Some(failure),
    };
    match error {
        NodeError::Disconnected => lost(NodeFailure::Disconnected),
        NodeError::Timeout { .. } => lost(NodeFailure::Timeout),
        NodeError::Server(error) => Error::Server { node: 0, error },
        NodeError::Protocol(error) => Error::Protocol { node: 0, error },
        NodeError::Cancelled => Error::Cancelled,
        NodeError::NotALock { .. } => Error::Protocol {
            node: 0,
            error: ProtocolError::UnexpectedReply,
        },
    }
}

/// What a fetch ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fetched {
    /// The value was there (at once, or stored by the computer this caller waited for).
    Value(Vec<u8>),
    /// This caller holds the computation's lock: compute, then [`FinishCompute::store`] (or
    /// [`FinishCompute::abandon`]) with this lease's token before its validity ends.
    Computing(Lease),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Script,
    Wait,
}

enum Fetch {
    Done(Fetched),
    GaveUp {
        attempts: u32,
        holder_ttl: Option<Duration>,
    },
    /// The lock was granted, but its reply came after the lease's validity.
    Expired,
}

/// The one node's part of a fetch.
struct FetchTask {
    lock: Lock,
    token: Token,
    server: ServerInfo,
    wait_until: Instant,
    by_source: bool,
    sent: Sent,
    sent_at: Instant,
    attempts: u32,
}

impl FetchTask {
    fn ask(&mut self, now: Instant) -> Step<Fetch> {
        let keys = self.lock.keys();
        let Some([value, waiters, _]) = compute_keys(keys) else {
            return Step::Fail(unexpected());
        };
        let options = self.lock.options();
        let ttl = decimal(options.ttl.as_millis());
        let allowance = decimal(options.request_timeout.as_millis());
        let lock = lock_key(keys);
        self.sent = Sent::Script;
        self.sent_at = now;
        self.attempts = self.attempts.saturating_add(1);
        Step::Send(script_call(
            &script::GET_OR_LOCK,
            self.by_source,
            &[&value, &lock, &waiters],
            &[self.token.as_bytes(), &ttl, &allowance],
        ))
    }

    /// Blocks on the wake-up list until a store, the holder's key's expiry, or the wait's end.
    fn wait(&mut self, holder_ttl: Option<Duration>, now: Instant) -> Step<Fetch> {
        let left = self.wait_until.saturating_since(now);
        if left.is_zero() {
            return Step::Done(Fetch::GaveUp {
                attempts: self.attempts,
                holder_ttl,
            });
        }
        let block = holder_ttl
            .map_or(left, |ttl| ttl.min(left))
            .max(Duration::from_millis(1));
        let Some([_, _, wake]) = compute_keys(self.lock.keys()) else {
            return Step::Fail(unexpected());
        };
        let ms = block.as_millis();
        // Fractional seconds where the server takes them; else whole seconds, rounded up.
        let (timeout, blocks_for) = if self.server.has_fractional_block_timeout() {
            let mut text = decimal(ms / 1000);
            text.push(b'.');
            text.extend_from_slice(&decimal(1000 + ms % 1000)[1..]);
            (text, block)
        } else {
            let secs = ms.div_ceil(1000);
            (
                decimal(secs),
                Duration::from_millis(secs.saturating_mul(1000)),
            )
        };
        self.sent = Sent::Wait;
        Step::Block(command(&[b"BLPOP", &wake, &timeout]), blocks_for)
    }
}

impl Task for FetchTask {
    type Done = Fetch;

    fn start(&mut self, now: Instant) -> Step<Fetch> {
        self.ask(now)
    }

    fn on_reply(&mut self, reply: Value, now: Instant) -> Step<Fetch> {
        match (self.sent, reply) {
            (Sent::Script, Value::Error(message)) => match script_error(&message) {
                Ok(()) if !self.by_source => {
                    self.by_source = true;
                    self.attempts = self.attempts.saturating_sub(1);
                    self.ask(now)
                }
                Ok(()) => Step::Fail(NodeError::Server(ServerError::from_message(&message))),
                Err(e) => Step::Fail(e),
            },
            (Sent::Script, Value::List(items)) => match items.as_slice() {
                [Value::Int(2), Value::Text(value)] => {
                    Step::Done(Fetch::Done(Fetched::Value(value.clone())))
                }
                [Value::Int(1), Value::Int(0)] => {
                    let started = self.sent_at;
                    let valid_until = self.lock.valid_until(started);
                    if now >= valid_until {
                        return Step::Done(Fetch::Expired);
                    }
                    Step::Done(Fetch::Done(Fetched::Computing(Lease {
                        token: self.token.clone(),
                        fence: None,
                        started,
                        valid_until,
                        holds: 1,
                    })))
                }
                [Value::Int(0), Value::Int(ttl)] => {
                    let holder_ttl = u64::try_from(*ttl).ok().map(Duration::from_millis);
                    self.wait(holder_ttl, now)
                }
                _ => Step::Fail(unexpected()),
            },
            (Sent::Wait, Value::Nil | Value::List(_)) => self.ask(now),
            (Sent::Wait, Value::Error(message)) => {
                Step::Fail(NodeError::Server(ServerError::from_message(&message)))
            }
            _ => Step::Fail(unexpected()),
        }
    }
}

/// Fetches a cached value, or the lock to compute it, waiting for another computer's value
/// up to `wait` (see the module doc). A driver runs it as any [`crate::Driven`] machine.
///
/// Outcome: [`Fetched`], or [`Error::NotAcquired`] when the wait ran out while another
/// computed, [`Error::Expired`] when the grant's reply came after its validity (the lock then
/// expires at its TTL),
/// [`Error::QuorumLost`] when the node did not answer, [`Error::Server`] /
/// [`Error::Protocol`] for a refusal or a broken reply, [`Error::Cancelled`].
pub struct GetOrLock {
    dialogues: Dialogues<FetchTask>,
}

impl core::fmt::Debug for GetOrLock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("GetOrLock")
    }
}

impl GetOrLock {
    /// Starts fetching the value of `lock`'s name, taking its lock with `token` when the value
    /// is missing and nobody computes it; waits up to `wait` for a computer's value
    /// (`Duration::ZERO`: ask once). `servers` must describe exactly one node.
    pub fn new(
        lock: &Lock,
        token: Token,
        servers: &[ServerInfo],
        wait: Duration,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        check(lock, servers)?;
        let request_timeout = lock.options().request_timeout;
        let task = FetchTask {
            lock: lock.clone(),
            token,
            server: servers.first().copied().unwrap_or_default(),
            wait_until: now.saturating_add(wait),
            by_source: false,
            sent: Sent::Script,
            sent_at: now,
            attempts: 0,
        };
        let budget = wait.saturating_add(request_timeout.saturating_mul(BUDGET_SLACK));
        Ok(GetOrLock {
            dialogues: Dialogues::new(alloc::vec![task], servers, request_timeout, budget, now),
        })
    }

    fn outcome(results: Vec<Result<Fetch, NodeError>>) -> Result<Fetched, Error> {
        match results.into_iter().next() {
            Some(Ok(Fetch::Done(fetched))) => Ok(fetched),
            Some(Ok(Fetch::GaveUp {
                attempts,
                holder_ttl,
            })) => Err(Error::NotAcquired {
                attempts,
                holder_ttl,
            }),
            Some(Ok(Fetch::Expired)) => Err(Error::Expired),
            Some(Err(e)) => Err(operation_error(e)),
            None => Err(Error::Cancelled),
        }
    }
}

driven_by_dialogues!(GetOrLock, Result<Fetched, Error>);

/// The node's part of finishing: one script, resent by source after `NOSCRIPT`.
struct FinishTask {
    call: [Vec<u8>; 2],
    by_source: bool,
}

impl Task for FinishTask {
    /// The wake-ups pushed; `None`: the token did not hold the lock.
    type Done = Option<u32>;

    fn start(&mut self, _now: Instant) -> Step<Option<u32>> {
        Step::Send(self.call[0].clone())
    }

    fn on_reply(&mut self, reply: Value, _now: Instant) -> Step<Option<u32>> {
        match reply {
            Value::Int(n @ 0..) => Step::Done(Some(u32::try_from(n).unwrap_or(u32::MAX))),
            Value::Int(-1) => Step::Done(None),
            Value::Error(message) => match script_error(&message) {
                Ok(()) if !self.by_source => {
                    self.by_source = true;
                    Step::Send(self.call[1].clone())
                }
                Ok(()) => Step::Fail(NodeError::Server(ServerError::from_message(&message))),
                Err(e) => Step::Fail(e),
            },
            _ => Step::Fail(unexpected()),
        }
    }
}

/// Ends a computation begun by [`Fetched::Computing`]: stores the value and wakes every
/// waiter, or gives up and wakes one (see the module doc). Outcome: the wake-ups pushed, or
/// [`Error::NotHeld`] when the lease's token no longer held the lock (nothing was stored),
/// or a node's failure as for [`GetOrLock`] (the value may or may not be stored then).
pub struct FinishCompute {
    dialogues: Dialogues<FinishTask>,
}

impl core::fmt::Debug for FinishCompute {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("FinishCompute")
    }
}

impl FinishCompute {
    /// Stores `value` for `value_ttl` under `lock`'s name, if `token` still holds the lock,
    /// releases the lock and wakes the waiters.
    pub fn store(
        lock: &Lock,
        token: &Token,
        servers: &[ServerInfo],
        value: &[u8],
        value_ttl: Duration,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        Self::check_store(value, value_ttl)?;
        Self::new(lock, token, servers, Some((value, value_ttl)), now)
    }

    /// Whether [`FinishCompute::store`] takes `value` for `value_ttl`: a value up to
    /// [`MAX_VALUE_LEN`] bytes ([`ConfigError::ValueTooLong`]), a TTL from 1 ms up to the
    /// lock's bound ([`ConfigError::BadTtl`]). For a driver that must know before it commits
    /// to storing (a refused store changes nothing).
    pub fn check_store(value: &[u8], value_ttl: Duration) -> Result<(), ConfigError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(ConfigError::ValueTooLong { len: value.len() });
        }
        if value_ttl.is_zero() || value_ttl > crate::limits::MAX_TTL {
            return Err(ConfigError::BadTtl);
        }
        Ok(())
    }

    /// Gives the computation up: releases the lock, if `token` still holds it, and wakes one
    /// waiter, which takes the lock and computes.
    pub fn abandon(
        lock: &Lock,
        token: &Token,
        servers: &[ServerInfo],
        now: Instant,
    ) -> Result<Self, ConfigError> {
        Self::new(lock, token, servers, None, now)
    }

    fn new(
        lock: &Lock,
        token: &Token,
        servers: &[ServerInfo],
        store: Option<(&[u8], Duration)>,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        check(lock, servers)?;
        let Some([value_key, waiters, wake]) = compute_keys(lock.keys()) else {
            return Err(ConfigError::ComputeUnsupported);
        };
        let request_timeout = lock.options().request_timeout;
        let lock_key = lock_key(lock.keys());
        let (flag, value, ttl): (&[u8], &[u8], Vec<u8>) = match store {
            Some((value, ttl)) => (b"1", value, decimal(ttl.as_millis())),
            None => (b"0", b"", decimal(0)),
        };
        let cap = decimal(u64::from(MAX_WAKEUPS));
        let wake_ms = decimal(wake_ttl(request_timeout).as_millis());
        let keys: [&[u8]; 4] = [&lock_key, &value_key, &waiters, &wake];
        let argv: [&[u8]; 6] = [token.as_bytes(), flag, value, &ttl, &cap, &wake_ms];
        let call = [
            script_call(&script::FINISH_COMPUTE, false, &keys, &argv),
            script_call(&script::FINISH_COMPUTE, true, &keys, &argv),
        ];
        let task = FinishTask {
            call,
            by_source: false,
        };
        // One script, and its resend after `NOSCRIPT`.
        let budget = request_timeout.saturating_mul(2);
        Ok(FinishCompute {
            dialogues: Dialogues::new(alloc::vec![task], servers, request_timeout, budget, now),
        })
    }

    fn outcome(results: Vec<Result<Option<u32>, NodeError>>) -> Result<u32, Error> {
        match results.into_iter().next() {
            Some(Ok(Some(woken))) => Ok(woken),
            Some(Ok(None)) => Err(Error::NotHeld),
            Some(Err(e)) => Err(operation_error(e)),
            None => Err(Error::Cancelled),
        }
    }
}

driven_by_dialogues!(FinishCompute, Result<u32, Error>);
