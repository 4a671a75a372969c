//! The commands each request puts on the wire, and what their replies mean.
//!
//! A [`Request`] is what an operation asks one node (take the lock, release it, extend it,
//! wait for a wake-up signal, ...). [`Encoder`] writes it as RESP — a plain command, a
//! pipelined batch (`SET NX PX [GET]` + `PTTL` [+ `TYPE`]; a native delete + the wake-up signal; a fair
//! waiter's `BLPOP` + fair acquire script), a script by digest or by source, or a native
//! compare command — for the server it goes to, and says how many replies that batch
//! produces. [`interpret`] turns the batch's answering reply (the first, except after a fair
//! waiter's `BLPOP`) into the [`Answer`] the operation decides on. Which encoding a request gets, and the fallbacks
//! between them, are the link's ([`crate::link`]).
//!
//! Invariant: every encoding of a request has the same effect on the server (the scripts and
//! the native commands compare the token before they act), so a fallback never changes what
//! a request does, only how it is spelled.

use crate::error::{NodeFailure, ProtocolError, ServerError};
use crate::keys::Token;
use crate::lock::Lock;
use crate::resp::{self, Reply, Sink};
use crate::script::{self, Script};
use crate::server::{NativeDelete, ServerInfo};
use crate::time::Duration;

/// What a request asks a node to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Take the lock for attempt `attempt`; `probe_ttl`: also ask how long the holder's key
    /// lives (to time waits) and what kind of value it is (a semaphore's or read-write lock's
    /// name refuses a plain `SET NX` like a held lock: see [`merge_probe`]); `mark_waiting`:
    /// first set the name's waiting mark ([`crate::Keys::waiting`], for
    /// [`crate::WAITING_MARK_LIFE`]), so a release after it pushes a wake-up (a plain mutex's
    /// attempt that may be followed by a wait, see [`crate::Acquire`]).
    Acquire {
        probe_ttl: bool,
        attempt: u32,
        mark_waiting: bool,
    },
    /// Raise the fencing counter to at least this.
    RaiseFence(u64),
    /// Compare-and-delete.
    Release,
    /// Compare-and-delete of what failed attempt `attempt` may have taken, pushing the wake-up
    /// signal like a release: a waiter blocked on that node was refused by this attempt's
    /// key, and nothing else would wake it when the key goes (see [`crate::Acquire`]).
    Rollback { attempt: u32 },
    /// Compare-and-extend.
    Extend,
    /// Block on the wake-up list for this long.
    Wait(Duration),
    /// One cycle of a fair-mode waiter for attempt `attempt`: `BLPOP` on its own wake-up
    /// list for `block` (none when zero), pipelined with the fair acquire script, which sets
    /// the lock for ttl + `extra` and, with `enqueue`, queues the waiter (see
    /// [`crate::fair`]).
    FairAcquire {
        attempt: u32,
        enqueue: bool,
        block: Duration,
        extra: Duration,
    },
}

impl Request {
    /// The request to send again after `NOSCRIPT`: the same, except that a fair cycle does
    /// not block again (its wait is over; its `extra` stays, so the validity it reports
    /// holds).
    pub(crate) fn again(self) -> Request {
        match self {
            Request::FairAcquire {
                attempt,
                enqueue,
                extra,
                ..
            } => Request::FairAcquire {
                attempt,
                enqueue,
                block: Duration::ZERO,
                extra,
            },
            other => other,
        }
    }

    /// Which reply of the batch carries the answer (the others are ignored): a fair cycle's
    /// script answers after its `BLPOP`.
    pub(crate) fn answering_reply(self) -> u8 {
        match self {
            Request::FairAcquire { block, .. } if !block.is_zero() => 1,
            Request::Acquire {
                mark_waiting: true, ..
            } => 1,
            _ => 0,
        }
    }

    /// How long the batch may block the connection.
    pub(crate) fn blocking(self) -> Option<Duration> {
        match self {
            Request::Wait(d) => Some(d),
            Request::FairAcquire { block, .. } if !block.is_zero() => Some(block),
            _ => None,
        }
    }
}

/// A node's answer to one request, as the operation sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Acquired (or re-entered `holds` times), with the node's fencing counter (0 unfenced).
    Granted { holds: u32, fence: u64 },
    /// Another token holds it; its key lives this much longer where known.
    Busy { holder_ttl: Option<Duration> },
    /// The fencing counter is now at least this.
    Raised(u64),
    /// Released; a reentrant lock is still held this many times.
    Released { still_held: u32 },
    /// The token does not hold the lock.
    NotHeld,
    /// Extended.
    Extended,
    /// The wait ended (a signal, or its timeout): time to try again.
    Woken,
    /// No usable answer.
    Failed(NodeFailure),
}

/// How a request was encoded (decides what its replies mean and which fallback applies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// A plain command: an acquire's `SET NX PX` (`OK` taken, nil refused), a `BLPOP`.
    Command,
    /// An acquire's `SET NX PX … GET` ([`ServerInfo::has_set_nx_get`]): nil taken, the
    /// holder's token refused, `WRONGTYPE` a name of another kind of lock — told apart in
    /// the one round trip, so a try-lock on a semaphore's name is refused as such.
    CommandGet,
    /// One of our scripts.
    Script,
    /// A native compare command (`DELIFEQ`, `DELEX … IFEQ`, `SET … IFEQ`).
    Native,
}

/// What a reply means for the request it answers.
pub(crate) fn interpret(
    request: Request,
    encoding: Encoding,
    reply: &Reply<'_>,
    lock: &Lock,
) -> Answer {
    let unexpected = Answer::Failed(NodeFailure::Protocol(ProtocolError::UnexpectedReply));
    if let Reply::Error(message) = reply {
        return Answer::Failed(NodeFailure::Server(ServerError::from_message(message)));
    }
    match (request, encoding) {
        (Request::Acquire { .. }, Encoding::Command) => match reply {
            Reply::Simple(b"OK") => Answer::Granted { holds: 1, fence: 0 },
            Reply::Nil => Answer::Busy { holder_ttl: None },
            _ => unexpected,
        },
        // Nil is the old value of a key that was not there: `NX` set it. A string is the
        // holder's token: `NX` refused. (A key of another kind is the error reply above.)
        (Request::Acquire { .. }, Encoding::CommandGet) => match reply {
            Reply::Nil => Answer::Granted { holds: 1, fence: 0 },
            Reply::Bulk(_) => Answer::Busy { holder_ttl: None },
            _ => unexpected,
        },
        (Request::Acquire { .. } | Request::FairAcquire { .. }, _) => match int_pair(reply) {
            // A fenced read reports the last write's fence, 0 before any write (see
            // `crate::rwlock`); every other fenced grant has a fence of at least 1.
            // More than one hold is a re-entry, which only a reentrant lock's script reports:
            // taken from any other reply, it would make the lease the owner's token, which an
            // earlier attempt's rollback may have deleted with (found by the fuzzer).
            Some((holds @ 1.., fence))
                if fence >= 0
                    && (fence > 0 || !lock.options().fenced || lock.is_read_side())
                    && (holds == 1 || lock.options().reentrant) =>
            {
                Answer::Granted {
                    holds: u32::try_from(holds).unwrap_or(u32::MAX),
                    fence: fence.unsigned_abs(),
                }
            }
            Some((0, ttl)) => Answer::Busy {
                holder_ttl: u64::try_from(ttl).ok().map(Duration::from_millis),
            },
            _ => unexpected,
        },
        (Request::RaiseFence(_), _) => match reply {
            Reply::Integer(n @ 0..) => Answer::Raised(n.unsigned_abs()),
            _ => unexpected,
        },
        (Request::Release | Request::Rollback { .. }, _) => interpret_release(encoding, reply),
        (Request::Extend, Encoding::Native) => match reply {
            Reply::Simple(b"OK") => Answer::Extended,
            Reply::Nil => Answer::NotHeld,
            _ => unexpected,
        },
        (Request::Extend, _) => match reply {
            Reply::Integer(1) => Answer::Extended,
            Reply::Integer(0) => Answer::NotHeld,
            _ => unexpected,
        },
        (Request::Wait(_), _) => match reply {
            Reply::Array(_) | Reply::Nil => Answer::Woken,
            _ => unexpected,
        },
    }
}

/// Merges the probe replies of a plain acquire (`SET NX PX` + `PTTL` + `TYPE`, or
/// `SET NX PX GET` + `PTTL`: the batch an attempt sends after a refusal) into the `SET`'s
/// answer: reply 1 is how long the holder's key lives, reply 2 (plain `SET NX` only) its kind.
///
/// A plain `SET NX` refuses any existing key, so a name that is a semaphore (a sorted set)
/// or a read-write lock (a hash) reads as "held" and a mutex would wait on it until its
/// deadline. The `TYPE` tells the kinds apart: a key that is neither a string nor gone turns
/// the refusal into the `WRONGTYPE` error the semaphore's and read-write lock's scripts give
/// the other way round. (`SET NX GET` answers `WRONGTYPE` itself, from the first attempt on,
/// and needs no `TYPE`.) The uncontended acquire sends no probe, so it pays nothing for
/// this; on a server without `SET NX GET` a try-lock, which sends none, still reads another
/// kind's name as held (see [`crate::Acquire`]). A `TYPE` the server refuses (an ACL without
/// it) leaves the refusal as it was: unknown is not another kind.
pub(crate) fn merge_probe(answer: &mut Answer, index: u8, reply: &Reply<'_>) {
    let Answer::Busy { holder_ttl } = answer else {
        return;
    };
    match (index, reply) {
        (1, Reply::Integer(ms)) if *ms >= 0 => {
            *holder_ttl = Some(Duration::from_millis(ms.unsigned_abs()));
        }
        (1, Reply::Integer(-2)) => *holder_ttl = Some(Duration::ZERO),
        (1, _) => *holder_ttl = None,
        (2, Reply::Simple(kind)) if !matches!(*kind, b"string" | b"none") => {
            let message = [
                &b"WRONGTYPE lock key: the name holds a "[..],
                kind,
                b", not a lock",
            ]
            .concat();
            *answer = Answer::Failed(NodeFailure::Server(ServerError::from_message(&message)));
        }
        _ => {}
    }
}

/// What a reply means for a release or a rollback (a server error included): the lock's
/// options play no part, so a pipelined release's owed reply is read without its lock.
pub(crate) fn interpret_release(encoding: Encoding, reply: &Reply<'_>) -> Answer {
    let unexpected = Answer::Failed(NodeFailure::Protocol(ProtocolError::UnexpectedReply));
    match (encoding, reply) {
        (_, Reply::Error(message)) => {
            Answer::Failed(NodeFailure::Server(ServerError::from_message(message)))
        }
        (Encoding::Native, Reply::Integer(1)) => Answer::Released { still_held: 0 },
        (Encoding::Native, Reply::Integer(0)) => Answer::NotHeld,
        (Encoding::Native, _) => unexpected,
        (_, Reply::Integer(-1)) => Answer::NotHeld,
        (_, Reply::Integer(n @ 0..)) => Answer::Released {
            still_held: u32::try_from(*n).unwrap_or(u32::MAX),
        },
        _ => unexpected,
    }
}

/// `{a, b}` of two integers, the shape every array-returning script uses.
fn int_pair(reply: &Reply<'_>) -> Option<(i64, i64)> {
    match reply {
        Reply::Array(items) => match items.as_slice() {
            [Reply::Integer(a), Reply::Integer(b)] => Some((*a, *b)),
            _ => None,
        },
        _ => None,
    }
}

/// Everything needed to put a request into bytes for one node.
pub(crate) struct Encoder<'a> {
    pub(crate) lock: &'a Lock,
    pub(crate) token: &'a Token,
    pub(crate) server: ServerInfo,
    pub(crate) use_eval: bool,
}

impl Encoder<'_> {
    /// How many replies the encoded batch produces.
    pub(crate) fn replies(&self, request: Request, encoding: Encoding) -> u8 {
        let mark = match request {
            Request::Acquire {
                mark_waiting: true, ..
            } => 1,
            _ => 0,
        };
        mark + match (request, encoding) {
            (
                Request::Acquire {
                    probe_ttl: true, ..
                },
                Encoding::Command,
            ) => 3,
            (
                Request::Acquire {
                    probe_ttl: true, ..
                },
                Encoding::CommandGet,
            ) => 2,
            (Request::Release | Request::Rollback { .. }, Encoding::Native)
                if self.signal_ttl(request).is_some() =>
            {
                4
            }
            (Request::FairAcquire { block, .. }, _) if !block.is_zero() => 2,
            _ => 1,
        }
    }

    /// How long a release's wake-up signal lives; `None`: push none.
    fn signal_ttl(&self, request: Request) -> Option<Duration> {
        match request {
            Request::Release | Request::Rollback { .. } => self.lock.options().wake_signal,
            _ => None,
        }
    }

    pub(crate) fn encode(&self, request: Request, encoding: Encoding, sink: &mut dyn Sink) {
        let keys = self.lock.keys();
        let options = self.lock.options();
        // Each acquire attempt writes its own token, and its rollback deletes only that (see
        // `Token::for_attempt`); release and extend act with the owner's (the lease's) token,
        // and a re-entry is recognised by it.
        let attempt_token = match request {
            Request::Acquire { attempt, .. }
            | Request::Rollback { attempt }
            | Request::FairAcquire { attempt, .. } => {
                Some(self.token.for_attempt(attempt, options.reentrant))
            }
            _ => None,
        };
        let token = attempt_token.as_ref().unwrap_or(self.token).as_bytes();
        let flag = |on: bool| if on { &b"1"[..] } else { &b"0"[..] };
        if let Some(limit) = self.lock.limit() {
            return self.encode_semaphore(request, limit, token, sink);
        }
        if let Some(mode) = self.lock.rw_mode() {
            return self.encode_rw(request, mode, token, sink);
        }
        if let Some(names) = &self.lock.multi {
            return self.encode_multi(request, names, token, sink);
        }
        if let (
            Request::Acquire {
                mark_waiting: true, ..
            },
            Some(waiting),
        ) = (request, keys.waiting())
        {
            // Before the attempt, on the same connection: the mark is on the server when the
            // attempt runs, so a release after a refusal sees it (see `crate::acquire`).
            sink.array(5);
            sink.bulk(b"SET");
            sink.bulk_parts(&waiting);
            sink.bulk(b"1");
            sink.bulk(b"PX");
            sink.bulk_u64(crate::WAITING_MARK_LIFE.as_millis());
        }
        match (request, encoding) {
            (Request::Acquire { probe_ttl, .. }, Encoding::Command | Encoding::CommandGet) => {
                let get = encoding == Encoding::CommandGet;
                sink.array(if get { 7 } else { 6 });
                sink.bulk(b"SET");
                sink.bulk_parts(&keys.lock());
                sink.bulk(token);
                sink.bulk(b"NX");
                sink.bulk(b"PX");
                sink.bulk_u64(options.ttl.as_millis());
                if get {
                    sink.bulk(b"GET");
                }
                if probe_ttl {
                    sink.array(2);
                    sink.bulk(b"PTTL");
                    sink.bulk_parts(&keys.lock());
                    if !get {
                        sink.array(2);
                        sink.bulk(b"TYPE");
                        sink.bulk_parts(&keys.lock());
                    }
                }
            }
            (Request::Acquire { .. }, _) => {
                self.script_header(
                    sink,
                    &script::ACQUIRE,
                    &[&keys.lock(), &keys.fence(), &keys.holds()],
                    5,
                );
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
                sink.bulk(flag(options.fenced));
                sink.bulk(flag(options.reentrant));
                sink.bulk(self.token.as_bytes());
            }
            (Request::RaiseFence(value), _) => {
                self.script_header(sink, &script::RAISE_FENCE, &[&keys.fence()], 1);
                sink.bulk_u64(value);
            }
            (Request::Release | Request::Rollback { .. }, Encoding::Native) => {
                match self.server.native_delete() {
                    Some(NativeDelete::DelExIfEq) => {
                        sink.array(4);
                        sink.bulk(b"DELEX");
                        sink.bulk_parts(&keys.lock());
                        sink.bulk(b"IFEQ");
                    }
                    _ => {
                        sink.array(3);
                        sink.bulk(b"DELIFEQ");
                        sink.bulk_parts(&keys.lock());
                    }
                }
                sink.bulk(token);
                if let Some(signal_ttl) = self.signal_ttl(request) {
                    // Unconditional, so a failed release may wake a waiter for nothing: it
                    // retries and waits again. LTRIM keeps the list at one element.
                    sink.array(3);
                    sink.bulk(b"LPUSH");
                    sink.bulk_parts(&keys.signal());
                    sink.bulk(b"1");
                    sink.array(4);
                    sink.bulk(b"LTRIM");
                    sink.bulk_parts(&keys.signal());
                    sink.bulk(b"0");
                    sink.bulk(b"0");
                    sink.array(3);
                    sink.bulk(b"PEXPIRE");
                    sink.bulk_parts(&keys.signal());
                    sink.bulk_u64(signal_ttl.as_millis());
                }
            }
            (Request::Release | Request::Rollback { .. }, _) if options.fair => {
                self.script_header(
                    sink,
                    &script::FAIR_RELEASE,
                    &[
                        &keys.lock(),
                        &keys.holds(),
                        &keys.queue(),
                        &keys.wake_prefix(),
                        &keys.alive_prefix(),
                    ],
                    3,
                );
                sink.bulk(token);
                sink.bulk(flag(options.reentrant));
                sink.bulk_u64(crate::fair::handoff_cap(options.request_timeout).as_millis());
            }
            (Request::Release | Request::Rollback { .. }, _) => {
                // A layout without a waiting mark (python-redis-lock's, whose waiters never
                // mark) pushes always; its signal key stands in for the mark, never read.
                let waiting = keys.waiting();
                self.script_header(
                    sink,
                    &script::RELEASE,
                    &[
                        &keys.lock(),
                        &keys.holds(),
                        &keys.signal(),
                        &waiting.unwrap_or_else(|| keys.signal()),
                    ],
                    4,
                );
                sink.bulk(token);
                sink.bulk(flag(options.reentrant));
                sink.bulk_u64(self.signal_ttl(request).map_or(0, Duration::as_millis));
                sink.bulk(flag(waiting.is_none()));
            }
            (Request::Extend, Encoding::Native) => {
                sink.array(7);
                sink.bulk(b"SET");
                sink.bulk_parts(&keys.lock());
                sink.bulk(token);
                sink.bulk(b"IFEQ");
                sink.bulk(token);
                sink.bulk(b"PX");
                sink.bulk_u64(options.ttl.as_millis());
            }
            (Request::Extend, _) => {
                self.script_header(sink, &script::EXTEND, &[&keys.lock(), &keys.holds()], 2);
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
            }
            (
                Request::FairAcquire {
                    enqueue,
                    block,
                    extra,
                    ..
                },
                _,
            ) => {
                self.fair_block(block, token, sink);
                self.script_header(
                    sink,
                    &script::FAIR_ACQUIRE,
                    &[
                        &keys.lock(),
                        &keys.fence(),
                        &keys.holds(),
                        &keys.queue(),
                        &keys.wake_prefix(),
                        &keys.alive_prefix(),
                    ],
                    8,
                );
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
                sink.bulk_u64(extra.as_millis());
                sink.bulk(flag(options.fenced));
                sink.bulk(flag(options.reentrant));
                sink.bulk(self.token.as_bytes());
                sink.bulk_u64(crate::fair::liveness(options.request_timeout).as_millis());
                sink.bulk(flag(enqueue));
            }
            (Request::Wait(timeout), _) => {
                sink.array(3);
                sink.bulk(b"BLPOP");
                sink.bulk_parts(&keys.signal());
                self.block_timeout(timeout, sink);
            }
        }
    }

    /// A semaphore's request (see [`crate::Lock::semaphore`]): its scripts, with `token` the
    /// attempt's (acquire, rollback) or the permit's (release, extend); a fair semaphore's
    /// cycles and releases run the fair semaphore scripts with fair mode's numbers
    /// ([`crate::fair`]) on the fair semaphore's own waiter keys (`:permit-queue`,
    /// `:permit-wake:`, `:permit-alive:`), never a fair mutex's. The replies have the mutex's shapes, so [`interpret`] reads them
    /// alike.
    fn encode_semaphore(&self, request: Request, limit: u32, token: &[u8], sink: &mut dyn Sink) {
        let keys = self.lock.keys();
        let options = self.lock.options();
        match request {
            Request::FairAcquire {
                enqueue,
                block,
                extra,
                ..
            } if options.fair => {
                self.fair_block(block, token, sink);
                self.script_header(
                    sink,
                    &script::SEMAPHORE_FAIR_ACQUIRE,
                    &[
                        &keys.lock(),
                        &keys.fence(),
                        &keys.permit_prefix(),
                        &keys.permit_queue(),
                        &keys.permit_wake_prefix(),
                        &keys.permit_alive_prefix(),
                    ],
                    7,
                );
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
                sink.bulk_u64(extra.as_millis());
                sink.bulk_u64(u64::from(limit));
                sink.bulk(if options.fenced { b"1" } else { b"0" });
                sink.bulk_u64(crate::fair::liveness(options.request_timeout).as_millis());
                sink.bulk(if enqueue { b"1" } else { b"0" });
            }
            Request::Release | Request::Rollback { .. } if options.fair => {
                self.script_header(
                    sink,
                    &script::SEMAPHORE_FAIR_RELEASE,
                    &[
                        &keys.lock(),
                        &keys.permit_prefix(),
                        &keys.permit_queue(),
                        &keys.permit_wake_prefix(),
                        &keys.permit_alive_prefix(),
                    ],
                    3,
                );
                sink.bulk(token);
                sink.bulk_u64(u64::from(limit));
                sink.bulk_u64(crate::fair::handoff_cap(options.request_timeout).as_millis());
            }
            Request::Acquire { .. } | Request::FairAcquire { .. } => {
                self.script_header(
                    sink,
                    &script::SEMAPHORE_ACQUIRE,
                    &[&keys.lock(), &keys.fence(), &keys.permit_prefix()],
                    4,
                );
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
                sink.bulk_u64(u64::from(limit));
                sink.bulk(if options.fenced { b"1" } else { b"0" });
            }
            Request::Release | Request::Rollback { .. } => {
                self.script_header(
                    sink,
                    &script::SEMAPHORE_RELEASE,
                    &[&keys.lock(), &keys.permit_prefix(), &keys.permit_signal()],
                    3,
                );
                sink.bulk(token);
                sink.bulk_u64(options.wake_signal.map_or(0, Duration::as_millis));
                sink.bulk_u64(u64::from(limit));
            }
            Request::Extend => {
                self.script_header(
                    sink,
                    &script::SEMAPHORE_EXTEND,
                    &[&keys.lock(), &keys.permit_prefix()],
                    2,
                );
                sink.bulk(token);
                sink.bulk_u64(options.ttl.as_millis());
            }
            // A semaphore's permits are never raised to a fence over several nodes (one node
            // only): the raise, should it come, is the mutex's, on the shared fence counter.
            Request::RaiseFence(value) => {
                self.script_header(sink, &script::RAISE_FENCE, &[&keys.fence()], 1);
                sink.bulk_u64(value);
            }
            // The semaphore's own wake-up list, never a mutex's `:signal`: a mutex waiter
            // of the name must not take the wake-up a permit's release pushed (see
            // `crate::keys`).
            Request::Wait(timeout) => {
                sink.array(3);
                sink.bulk(b"BLPOP");
                sink.bulk_parts(&keys.permit_signal());
                self.block_timeout(timeout, sink);
            }
        }
    }

    /// `EVALSHA sha numkeys keys…` (or `EVAL source …` after a `NOSCRIPT`), announcing
    /// `args` more arguments to follow.
    pub(crate) fn script_header(
        &self,
        sink: &mut dyn Sink,
        script: &Script,
        keys: &[&[&[u8]; 4]],
        args: usize,
    ) {
        sink.array(3usize.saturating_add(keys.len()).saturating_add(args));
        if self.use_eval {
            sink.bulk(b"EVAL");
            sink.bulk(script.source.as_bytes());
        } else {
            sink.bulk(b"EVALSHA");
            sink.bulk(&script.sha);
        }
        sink.bulk_u64(keys.len() as u64);
        for key in keys {
            sink.bulk_parts(&key[..]);
        }
    }

    /// A fair cycle's block before its script: `BLPOP` on the attempt's own wake-up list (a
    /// fair semaphore's waiters have their own, see [`crate::keys`]) for `block` (nothing for
    /// a cycle that does not block: the first, or a poll).
    fn fair_block(&self, block: Duration, token: &[u8], sink: &mut dyn Sink) {
        if block.is_zero() {
            return;
        }
        let keys = self.lock.keys();
        let wake = if self.lock.limit().is_some() {
            keys.permit_wake_prefix()
        } else {
            keys.wake_prefix()
        };
        sink.array(3);
        sink.bulk(b"BLPOP");
        sink.bulk_parts(&[wake[0], wake[1], wake[2], wake[3], token]);
        self.block_timeout(block, sink);
    }

    /// A `BLPOP` timeout: never 0 (that blocks forever); fractional seconds where the server
    /// takes them, else whole seconds rounded up.
    pub(crate) fn block_timeout(&self, timeout: Duration, sink: &mut dyn Sink) {
        let ms = timeout.as_millis().max(1);
        if self.server.has_fractional_block_timeout() {
            let mut whole = [0u8; 20];
            let mut frac = [0u8; 20];
            let whole = resp::encode::decimal(ms / 1000, &mut whole);
            let frac = resp::encode::decimal(1000 + ms % 1000, &mut frac);
            // `1000 + r` for r < 1000 is four digits; the last three are r zero-padded.
            sink.bulk_parts(&[whole, b".", frac.get(1..).unwrap_or_default()]);
        } else {
            sink.bulk_u64(ms.div_ceil(1000));
        }
    }
}
