//! The per-node plumbing every lock machine shares: what to send, which reply answers what,
//! and the fallbacks that need no decision from the operation.
//!
//! Each node has one [`Link`]: at most one request queued and one in flight. A request is a
//! *batch* of pipelined commands (`SET NX PX` + `PTTL`, say); its replies are merged into one
//! [`Answer`] for the operation, so an operation sees exactly one answer per request sent —
//! its reply, or [`NodeFailure`] on timeout, disconnect or a broken reply.
//!
//! Invariants, each what keeps "a reply for one request never completes another":
//! - Replies arrive in request order on a connection. A request given up on (timed out, or
//!   superseded) adds its missing replies to `stale`, and the next `stale` frames are
//!   discarded before anything else is matched.
//! - A frame that answers nothing (no request in flight, none stale) or that is not RESP
//!   marks the link *desynchronised*: from then on it accepts nothing until the driver
//!   reconnects ([`Links::disconnected`]).
//! - RESP3 push frames are out-of-band and never count as replies.
//! - `NOSCRIPT` makes the request go again by `EVAL` (and the link use `EVAL` from then on);
//!   `ERR unknown command` on a native command makes it go again as a script (and the link
//!   use scripts from then on). Neither reaches the operation.

use crate::error::{NodeFailure, ProtocolError, ServerError, ServerErrorKind};
use crate::keys::Token;
use crate::lock::Lock;
use crate::resp::{self, BufferTooSmall, Framer, Reply, Sink};
use crate::script::{self, Script};
use crate::server::{NativeDelete, ServerInfo};
use crate::time::{Duration, Instant};

/// Reply bytes a link buffers; longer replies are refused. Lock replies are a few dozen bytes,
/// server error messages rarely above 200.
pub const REPLY_CAP: usize = 512;

/// One write for the driver: `len` bytes at the front of the caller's buffer, for `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Transmit {
    /// Which node's connection to write to.
    pub node: usize,
    /// How many bytes of the buffer to write.
    pub len: usize,
    /// `Some(d)`: a blocking command (`BLPOP`) that holds the connection for up to `d`; a
    /// driver that shares connections sends it on one that may block.
    pub blocking: Option<Duration>,
}

/// What a request asks a node to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Take the lock for attempt `attempt`; `probe_ttl`: also ask how long the holder's key
    /// lives (to time waits).
    Acquire { probe_ttl: bool, attempt: u32 },
    /// Raise the fencing counter to at least this.
    RaiseFence(u64),
    /// Compare-and-delete.
    Release,
    /// Compare-and-delete of what failed attempt `attempt` may have taken, pushing no wake-up
    /// signal (the attempt's own waiter would swallow it).
    Rollback { attempt: u32 },
    /// Compare-and-extend.
    Extend,
    /// Block on the wake-up list for this long.
    Wait(Duration),
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
enum Encoding {
    Command,
    Script,
    Native,
}

#[derive(Debug, Clone)]
struct InFlight {
    request: Request,
    encoding: Encoding,
    replies: u8,
    seen: u8,
    deadline: Instant,
    answer: Option<Answer>,
    again: bool,
}

/// One node's connection state, as far as the core needs it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    server: ServerInfo,
    framer: Framer<REPLY_CAP>,
    queued: Option<Request>,
    in_flight: Option<InFlight>,
    stale: u32,
    use_eval: bool,
    scripts_only: bool,
    desynced: bool,
}

/// The links of one machine, one per node, in node order.
#[derive(Debug, Clone)]
pub(crate) struct Links<const N: usize> {
    links: heapless::Vec<Link, N>,
}

impl<const N: usize> Links<N> {
    /// One link per server; `None` when there are none or more than `N`.
    pub(crate) fn new(servers: &[ServerInfo]) -> Option<Self> {
        if servers.is_empty() {
            return None;
        }
        let mut links = heapless::Vec::new();
        for &server in servers {
            links
                .push(Link {
                    server,
                    framer: Framer::new(),
                    queued: None,
                    in_flight: None,
                    stale: 0,
                    use_eval: false,
                    scripts_only: false,
                    desynced: false,
                })
                .ok()?;
        }
        Some(Links { links })
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    /// Queues `request` for `node`, giving up on whatever the node still had in flight.
    /// Returns false when the link cannot take requests (desynchronised, or no such node):
    /// the operation must count the node as failed.
    pub(crate) fn queue(&mut self, node: usize, request: Request) -> bool {
        let Some(link) = self.links.get_mut(node) else {
            return false;
        };
        if link.desynced {
            return false;
        }
        link.abandon_in_flight();
        link.queued = Some(request);
        true
    }

    /// Gives up on every request in flight; their replies become stale.
    pub(crate) fn abandon_all(&mut self) {
        for link in &mut self.links {
            link.abandon_in_flight();
        }
    }

    /// Whether a request is queued and not yet sent.
    pub(crate) fn has_queued(&self) -> bool {
        self.links.iter().any(|l| l.queued.is_some())
    }

    /// Replies `node`'s connection still owes for requests this machine sent; `None` when the
    /// connection is out of step and must be reconnected before anything else uses it.
    pub(crate) fn owed(&self, node: usize) -> Option<u32> {
        let link = self.links.get(node)?;
        if link.desynced {
            return None;
        }
        let in_flight = link
            .in_flight
            .as_ref()
            .map_or(0, |f| u32::from(f.replies.saturating_sub(f.seen)));
        Some(link.stale.saturating_add(in_flight))
    }

    /// [`Links::owed`], when the connection can be handed to another machine as it is: not
    /// while part of a reply sits in this link's buffer (the next machine would start reading
    /// mid-frame).
    pub(crate) fn handover(&self, node: usize) -> Option<u32> {
        let link = self.links.get(node)?;
        if link.framer.buffered() > 0 {
            return None;
        }
        self.owed(node)
    }

    /// `node`'s connection still owes `replies` replies to an earlier machine: discard that
    /// many frames before matching anything of ours (they arrive first: same connection,
    /// sent earlier). False when there is no such node.
    pub(crate) fn discard(&mut self, node: usize, replies: u32) -> bool {
        let Some(link) = self.links.get_mut(node) else {
            return false;
        };
        link.stale = link.stale.saturating_add(replies);
        true
    }

    /// The earliest reply deadline of the requests in flight.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.links
            .iter()
            .filter_map(|l| l.in_flight.as_ref().map(|f| f.deadline))
            .min()
    }

    /// Encodes the next queued request into `buf`.
    pub(crate) fn poll_transmit(
        &mut self,
        lock: &Lock,
        token: &Token,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        let Some((node, link)) = self
            .links
            .iter_mut()
            .enumerate()
            .find(|(_, l)| l.queued.is_some())
        else {
            return Ok(None);
        };
        let Some(request) = link.queued else {
            return Ok(None);
        };
        let encoding = link.encoding_for(request, lock);
        let ctx = Encoder {
            lock,
            token,
            server: link.server,
            use_eval: link.use_eval,
        };
        let len = resp::encode_into(buf, |sink| {
            ctx.encode(request, encoding, sink);
        })?;
        link.queued = None;
        let blocking = match request {
            Request::Wait(d) => Some(d),
            _ => None,
        };
        let timeout = lock
            .options()
            .request_timeout
            .saturating_add(blocking.unwrap_or(Duration::ZERO));
        link.in_flight = Some(InFlight {
            request,
            encoding,
            replies: ctx.replies(request, encoding),
            seen: 0,
            deadline: now.saturating_add(timeout),
            answer: None,
            again: false,
        });
        Ok(Some(Transmit {
            node,
            len,
            blocking,
        }))
    }

    /// Feeds bytes read from `node`; calls `on_answer` for each request that completes.
    pub(crate) fn handle_input(
        &mut self,
        node: usize,
        mut bytes: &[u8],
        lock: &Lock,
        mut on_answer: impl FnMut(usize, Request, Answer),
    ) {
        let Some(link) = self.links.get_mut(node) else {
            return;
        };
        while !link.desynced {
            let taken = link.framer.push(bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
            loop {
                match link.framer.next_frame_len() {
                    Ok(Some(len)) => {
                        let outcome = link.take_frame(len, lock);
                        link.framer.consume(len);
                        if let Some((request, answer)) = outcome {
                            on_answer(node, request, answer);
                        }
                        if link.desynced {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        if let Some((request, answer)) = link.desync(error) {
                            on_answer(node, request, answer);
                        }
                        break;
                    }
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
    }

    /// Fails the requests whose reply deadline has passed.
    pub(crate) fn handle_timeout(
        &mut self,
        now: Instant,
        mut on_answer: impl FnMut(usize, Request, Answer),
    ) {
        for (node, link) in self.links.iter_mut().enumerate() {
            if link.in_flight.as_ref().is_some_and(|f| f.deadline <= now)
                && let Some(request) = link.abandon_in_flight()
            {
                on_answer(node, request, Answer::Failed(NodeFailure::Timeout));
            }
        }
    }

    /// The driver lost (or replaced) `node`'s connection: nothing is owed on the new one.
    pub(crate) fn disconnected(
        &mut self,
        node: usize,
        mut on_answer: impl FnMut(usize, Request, Answer),
    ) {
        let Some(link) = self.links.get_mut(node) else {
            return;
        };
        link.framer.clear();
        link.stale = 0;
        link.desynced = false;
        if let Some(flight) = link.in_flight.take() {
            on_answer(
                node,
                flight.request,
                Answer::Failed(NodeFailure::Disconnected),
            );
        }
    }
}

impl Link {
    fn encoding_for(&self, request: Request, lock: &Lock) -> Encoding {
        let options = lock.options();
        match request {
            Request::Acquire { .. } if options.fenced || options.reentrant => Encoding::Script,
            Request::Acquire { .. } | Request::Wait(_) => Encoding::Command,
            Request::RaiseFence(_) => Encoding::Script,
            Request::Release | Request::Rollback { .. }
                if !options.reentrant
                    && !self.scripts_only
                    && self.server.native_delete().is_some() =>
            {
                Encoding::Native
            }
            Request::Extend
                if !options.reentrant && !self.scripts_only && self.server.has_set_ifeq() =>
            {
                Encoding::Native
            }
            Request::Release | Request::Rollback { .. } | Request::Extend => Encoding::Script,
        }
    }

    /// Gives up on the request in flight; its missing replies become stale.
    fn abandon_in_flight(&mut self) -> Option<Request> {
        let flight = self.in_flight.take()?;
        self.stale = self
            .stale
            .saturating_add(u32::from(flight.replies.saturating_sub(flight.seen)));
        Some(flight.request)
    }

    /// The link is out of step with its connection. The request in flight, or one queued to
    /// go again (after `NOSCRIPT`) that now never will, fails: the operation must hear of it.
    fn desync(&mut self, error: ProtocolError) -> Option<(Request, Answer)> {
        self.desynced = true;
        self.framer.clear();
        let request = match self.in_flight.take() {
            Some(flight) => Some(flight.request),
            None => self.queued.take(),
        };
        self.queued = None;
        Some((request?, Answer::Failed(NodeFailure::Protocol(error))))
    }

    /// Matches one complete frame (the first `len` buffered bytes) to what is owed.
    fn take_frame(&mut self, len: usize, lock: &Lock) -> Option<(Request, Answer)> {
        let reply = match resp::decode(self.framer.frame(len), self.server.protocol) {
            Ok(Reply::Push(_)) => return None,
            Ok(reply) => reply,
            Err(error) => return self.desync(error),
        };
        if self.stale > 0 {
            self.stale -= 1;
            return None;
        }
        let Some(flight) = self.in_flight.as_mut() else {
            return self.desync(ProtocolError::Unsolicited);
        };
        let index = flight.seen;
        flight.seen = flight.seen.saturating_add(1);
        if index == 0 {
            match &reply {
                Reply::Error(message)
                    if flight.encoding == Encoding::Script
                        && ServerErrorKind::classify(message) == ServerErrorKind::NoScript =>
                {
                    flight.again = true;
                    self.use_eval = true;
                }
                Reply::Error(message)
                    if flight.encoding == Encoding::Native
                        && ServerErrorKind::classify(message)
                            == ServerErrorKind::UnknownCommand =>
                {
                    flight.again = true;
                    self.scripts_only = true;
                }
                _ => flight.answer = Some(interpret(flight.request, flight.encoding, &reply, lock)),
            }
        } else if let (
            Some(Answer::Busy { holder_ttl }),
            Request::Acquire {
                probe_ttl: true, ..
            },
        ) = (flight.answer.as_mut(), flight.request)
        {
            // The PTTL piggy-backed on SET NX: how long until the holder's key expires.
            *holder_ttl = match reply {
                Reply::Integer(ms) if ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
                Reply::Integer(-2) => Some(Duration::ZERO),
                _ => None,
            };
        }
        if flight.seen < flight.replies {
            return None;
        }
        let flight = self.in_flight.take()?;
        if flight.again {
            self.queued = Some(flight.request);
            return None;
        }
        let answer = flight
            .answer
            .unwrap_or(Answer::Failed(NodeFailure::Protocol(
                ProtocolError::UnexpectedReply,
            )));
        Some((flight.request, answer))
    }
}

/// What a reply means for the request it answers.
fn interpret(request: Request, encoding: Encoding, reply: &Reply<'_>, lock: &Lock) -> Answer {
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
        (Request::Acquire { .. }, _) => match int_pair(reply) {
            Some((holds @ 1.., fence)) if fence >= 0 && (fence > 0 || !lock.options().fenced) => {
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
        (Request::Release | Request::Rollback { .. }, Encoding::Native) => match reply {
            Reply::Integer(1) => Answer::Released { still_held: 0 },
            Reply::Integer(0) => Answer::NotHeld,
            _ => unexpected,
        },
        (Request::Release | Request::Rollback { .. }, _) => match reply {
            Reply::Integer(-1) => Answer::NotHeld,
            Reply::Integer(n @ 0..) => Answer::Released {
                still_held: u32::try_from(*n).unwrap_or(u32::MAX),
            },
            _ => unexpected,
        },
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
struct Encoder<'a> {
    lock: &'a Lock,
    token: &'a Token,
    server: ServerInfo,
    use_eval: bool,
}

impl Encoder<'_> {
    /// How many replies the encoded batch produces.
    fn replies(&self, request: Request, encoding: Encoding) -> u8 {
        match (request, encoding) {
            (
                Request::Acquire {
                    probe_ttl: true, ..
                },
                Encoding::Command,
            ) => 2,
            (Request::Release | Request::Rollback { .. }, Encoding::Native)
                if self.signal_ttl(request).is_some() =>
            {
                4
            }
            _ => 1,
        }
    }

    /// How long a release's wake-up signal lives; `None`: push none.
    fn signal_ttl(&self, request: Request) -> Option<Duration> {
        match request {
            Request::Release => self.lock.options().wake_signal,
            _ => None,
        }
    }

    fn encode(&self, request: Request, encoding: Encoding, sink: &mut dyn Sink) {
        let keys = self.lock.keys();
        let options = self.lock.options();
        // Each acquire attempt writes its own token, and its rollback deletes only that (see
        // `Token::for_attempt`); release and extend act with the owner's (the lease's) token,
        // and a re-entry is recognised by it.
        let attempt_token = match request {
            Request::Acquire { attempt, .. } | Request::Rollback { attempt } => {
                Some(self.token.for_attempt(attempt, options.reentrant))
            }
            _ => None,
        };
        let token = attempt_token.as_ref().unwrap_or(self.token).as_bytes();
        let flag = |on: bool| if on { &b"1"[..] } else { &b"0"[..] };
        match (request, encoding) {
            (Request::Acquire { probe_ttl, .. }, Encoding::Command) => {
                sink.array(6);
                sink.bulk(b"SET");
                sink.bulk_parts(&keys.lock());
                sink.bulk(token);
                sink.bulk(b"NX");
                sink.bulk(b"PX");
                sink.bulk_u64(options.ttl.as_millis());
                if probe_ttl {
                    sink.array(2);
                    sink.bulk(b"PTTL");
                    sink.bulk_parts(&keys.lock());
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
            (Request::Release | Request::Rollback { .. }, _) => {
                self.script_header(
                    sink,
                    &script::RELEASE,
                    &[&keys.lock(), &keys.holds(), &keys.signal()],
                    3,
                );
                sink.bulk(token);
                sink.bulk(flag(options.reentrant));
                sink.bulk_u64(self.signal_ttl(request).map_or(0, Duration::as_millis));
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
            (Request::Wait(timeout), _) => {
                sink.array(3);
                sink.bulk(b"BLPOP");
                sink.bulk_parts(&keys.signal());
                self.block_timeout(timeout, sink);
            }
        }
    }

    /// `EVALSHA sha numkeys keys…` (or `EVAL source …` after a `NOSCRIPT`), announcing
    /// `args` more arguments to follow.
    fn script_header(
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

    /// A `BLPOP` timeout: never 0 (that blocks forever); fractional seconds where the server
    /// takes them, else whole seconds rounded up.
    fn block_timeout(&self, timeout: Duration, sink: &mut dyn Sink) {
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
