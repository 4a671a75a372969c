//! The per-node plumbing every lock machine shares: what to send, which reply answers what,
//! and the fallbacks that need no decision from the operation.
//!
//! Each node has one [`Link`]: at most one request queued and one in flight. A request is a
//! *batch* of pipelined commands (`SET NX PX GET` + `PTTL`, say); its replies are merged into one
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
//! - A pipelined release the connection still owes ([`OwedRelease`], from the operation that
//!   used it before) was written before anything of ours, so its replies come first: they go
//!   to it, never to a request, and its [`ReleaseCheck`] waits for the driver
//!   ([`Links::take_release_check`]). A timeout, a disconnect or a broken reply before they
//!   are all in leaves it [`ReleaseCheck::Unconfirmed`], never released. Pipelined releases
//!   are single-node, so a machine holds at most one (beside its links, not in each: the
//!   multi-node machines do not grow for it).
//! - `NOSCRIPT` makes the request go again by `EVAL` (and the link use `EVAL` from then on);
//!   `ERR unknown command` on a native command makes it go again as a script (and the link
//!   use scripts from then on). Neither reaches the operation — except under
//!   [`Scripts::Never`], where the `unknown command` is the operation's answer (a server
//!   error naming the command): a scriptless lock never falls back to a script.
//!   `ERR syntax error` on an acquire's `SET NX PX GET` (a server that reported a version
//!   it does not have: Redis 6.2 refuses `GET` beside `NX`) makes it go again as a plain
//!   `SET NX PX` (and the link use that from then on); the refused command set nothing.

use crate::commands::{Answer, Request};
use crate::commands::{Encoder, Encoding, interpret, merge_probe};
use crate::error::{NodeFailure, ProtocolError, ServerErrorKind};
use crate::keys::Token;
use crate::lock::{Lock, LockOptions, Scripts};
use crate::pipelined::{OwedRelease, ReleaseCheck};
use crate::resp::{self, BufferTooSmall, Framer, Reply};
use crate::server::ServerInfo;
use crate::time::{Duration, Instant};

/// How a server refuses `SET NX PX GET` when it lacks it (Redis 6.2: `GET` beside `NX`).
const SYNTAX_ERROR: &[u8] = b"ERR syntax error";

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
    /// The server refused `SET NX PX GET`: acquire with a plain `SET NX PX`.
    plain_set_only: bool,
    /// The server refused the last waiting mark sent here (an ACL that denies the mark's key,
    /// say): a release there may not push, so a waiter must not block on this node's signal.
    mark_refused: bool,
    desynced: bool,
}

/// The links of one machine, one per node, in node order.
#[derive(Debug, Clone)]
pub(crate) struct Links<const N: usize> {
    links: heapless::Vec<Link, N>,
    /// The pipelined release a connection owes from before this machine, if any.
    deferred: Deferred,
}

/// Where the one pipelined release a machine's connection may owe stands.
#[derive(Debug, Clone)]
enum Deferred {
    Nothing,
    /// Node `.0`'s connection owes its replies; they come before any of ours.
    Owed(usize, OwedRelease),
    /// Its check, until the driver takes it.
    Checked(usize, ReleaseCheck),
}

impl Deferred {
    /// The release `node`'s connection owes, while its replies are still coming.
    fn owed_by(&mut self, node: usize) -> Option<&mut OwedRelease> {
        match self {
            Deferred::Owed(n, owed) if *n == node => Some(owed),
            _ => None,
        }
    }

    /// Replies `node`'s connection still owes the release.
    fn remaining(&self, node: usize) -> u32 {
        match self {
            Deferred::Owed(n, owed) if *n == node => owed.remaining(),
            _ => 0,
        }
    }

    /// `node`'s owed release will not be read in full: it is unconfirmed. Returns the
    /// replies it still owed (to read past, should the connection go on).
    fn fail(&mut self, node: usize, failure: NodeFailure) -> u32 {
        let remaining = self.remaining(node);
        if matches!(self, Deferred::Owed(n, _) if *n == node) {
            *self = Deferred::Checked(node, ReleaseCheck::Unconfirmed(failure));
        }
        remaining
    }
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
                    plain_set_only: false,
                    mark_refused: false,
                    desynced: false,
                })
                .ok()?;
        }
        Some(Links {
            links,
            deferred: Deferred::Nothing,
        })
    }

    /// How many nodes.
    pub(crate) fn len(&self) -> usize {
        self.links.len()
    }

    /// What `node`'s server is, as the machine was built with.
    pub(crate) fn server(&self, node: usize) -> Option<ServerInfo> {
        self.links.get(node).map(|l| l.server)
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
        let release = self.deferred.remaining(node);
        Some(link.stale.saturating_add(in_flight).saturating_add(release))
    }

    /// `node`'s connection owes a pipelined release's replies, ahead of anything this machine
    /// sends. False when there is no such node, a release is owed already, or the connection
    /// owes replies to an earlier machine (it then carries more than the link can account
    /// for: reconnect it).
    pub(crate) fn owe_release(&mut self, node: usize, owed: OwedRelease) -> bool {
        let Some(link) = self.links.get(node) else {
            return false;
        };
        // A connection owing replies to an earlier machine (`discard`) would give those
        // first: one owing a release owes nothing else.
        if !matches!(self.deferred, Deferred::Nothing) || link.stale > 0 || link.desynced {
            return false;
        }
        self.deferred = Deferred::Owed(node, owed);
        true
    }

    /// The deferred confirmation of the pipelined release `node` owed, once decided.
    pub(crate) fn take_release_check(&mut self, node: usize) -> Option<ReleaseCheck> {
        match core::mem::replace(&mut self.deferred, Deferred::Nothing) {
            Deferred::Checked(n, check) if n == node => Some(check),
            other => {
                self.deferred = other;
                None
            }
        }
    }

    /// Whether `node` refused the last waiting mark it was sent (see [`Link::mark_refused`]).
    pub(crate) fn mark_refused(&self, node: usize) -> bool {
        self.links.get(node).is_some_and(|link| link.mark_refused)
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

    /// The earliest reply deadline of the requests in flight and the pipelined release owed.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let release = match &self.deferred {
            Deferred::Owed(_, owed) => Some(owed.deadline()),
            _ => None,
        };
        self.links
            .iter()
            .filter_map(|l| l.in_flight.as_ref().map(|f| f.deadline))
            .chain(release)
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
            // A rollback's reply is abandoned with the attempt it undoes: nobody would read a
            // `NOSCRIPT` and resend it, and the key it should free would then stand until its
            // TTL. So it carries its script's source, whatever the server's script cache holds
            // (connections load no scripts up front; a failover or `SCRIPT FLUSH` empties it).
            use_eval: link.use_eval || matches!(request, Request::Rollback { .. }),
        };
        let len = resp::encode_into(buf, |sink| {
            ctx.encode(request, encoding, sink);
        })?;
        link.queued = None;
        let blocking = request.blocking();
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
        let deferred = &mut self.deferred;
        while !link.desynced {
            let taken = link.framer.push(bytes);
            bytes = bytes.get(taken..).unwrap_or_default();
            loop {
                match link.framer.next_frame_len() {
                    Ok(Some(len)) => {
                        let outcome = link.take_frame(len, lock, node, deferred);
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
                        if let Some((request, answer)) = link.desync(error, node, deferred) {
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
        if let Deferred::Owed(node, owed) = &self.deferred
            && owed.deadline() <= now
        {
            let node = *node;
            let remaining = self.deferred.fail(node, NodeFailure::Timeout);
            if let Some(link) = self.links.get_mut(node) {
                link.stale = link.stale.saturating_add(remaining);
            }
        }
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
        self.deferred.fail(node, NodeFailure::Disconnected);
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

/// How `request` is spelled for `server` under `options`; `scripts_only`: the server
/// answered a native command with `unknown command` earlier; `plain_set_only`: it refused
/// `SET NX PX GET` earlier. The one place that decides between scripts and native commands
/// (the handshake's script loading asks it too).
///
/// A plain acquire is `SET NX PX GET` where the server has it
/// ([`ServerInfo::has_set_nx_get`]): in the same one command as `SET NX PX`, it also tells a
/// name of another kind of lock (`WRONGTYPE`) from a held one, which a try-lock has no second
/// round to ask.
///
/// Under [`Scripts::Never`] nothing is a script: the options were checked to need none
/// ([`LockOptions::validate`]) and the known servers to have the native commands (the
/// machine's constructor), and `scripts_only` is never set.
///
/// Every request of a semaphore or a read-write lock (`semaphore`: a lock with scripts of its
/// own) but the wait is one of its scripts ([`crate::Lock::semaphore`] and [`crate::Lock::rw`]
/// refuse [`Scripts::Never`]).
pub(crate) fn encoding(
    request: Request,
    options: &LockOptions,
    server: &ServerInfo,
    scripts_only: bool,
    plain_set_only: bool,
    semaphore: bool,
) -> Encoding {
    let plain_acquire = if server.has_set_nx_get() && !plain_set_only {
        Encoding::CommandGet
    } else {
        Encoding::Command
    };
    if semaphore {
        return match request {
            Request::Wait(_) => Encoding::Command,
            _ => Encoding::Script,
        };
    }
    let native_allowed = !options.reentrant && !scripts_only;
    if options.scripts == Scripts::Never {
        // A server not known yet (its node was down when the machine was built) gets the
        // native command too: if it lacks it, its `unknown command` is the answer.
        return match request {
            Request::Acquire { .. } => plain_acquire,
            Request::Wait(_) => Encoding::Command,
            Request::Release | Request::Rollback { .. } | Request::Extend => Encoding::Native,
            // Only fenced and fair locks send these, and `validate` refuses both.
            Request::RaiseFence(_) | Request::FairAcquire { .. } => Encoding::Script,
        };
    }
    match request {
        Request::Acquire { .. } if options.fenced || options.reentrant => Encoding::Script,
        Request::FairAcquire { .. } => Encoding::Script,
        Request::Acquire { .. } => plain_acquire,
        Request::Wait(_) => Encoding::Command,
        Request::RaiseFence(_) => Encoding::Script,
        Request::Release | Request::Rollback { .. }
            if native_allowed && !options.fair && server.native_delete().is_some() =>
        {
            Encoding::Native
        }
        Request::Extend if native_allowed && server.has_set_ifeq() => Encoding::Native,
        Request::Release | Request::Rollback { .. } | Request::Extend => Encoding::Script,
    }
}

impl Link {
    fn encoding_for(&self, request: Request, lock: &Lock) -> Encoding {
        encoding(
            request,
            lock.options(),
            &self.server,
            self.scripts_only,
            self.plain_set_only,
            lock.limit().is_some() || lock.rw_mode().is_some() || lock.multi.is_some(),
        )
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
    fn desync(
        &mut self,
        error: ProtocolError,
        node: usize,
        deferred: &mut Deferred,
    ) -> Option<(Request, Answer)> {
        deferred.fail(node, NodeFailure::Protocol(error));
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
    /// `deferred`: the pipelined release the machine's connections owe, whose replies come
    /// first on `node`'s (this link's) connection.
    fn take_frame(
        &mut self,
        len: usize,
        lock: &Lock,
        node: usize,
        deferred: &mut Deferred,
    ) -> Option<(Request, Answer)> {
        let reply = match resp::decode(self.framer.frame(len), self.server.protocol) {
            Ok(Reply::Push(_)) => return None,
            Ok(reply) => reply,
            Err(error) => return self.desync(error, node, deferred),
        };
        if let Some(owed) = deferred.owed_by(node) {
            if let Some(check) = owed.on_reply(&reply) {
                *deferred = Deferred::Checked(node, check);
            }
            return None;
        }
        if self.stale > 0 {
            self.stale -= 1;
            return None;
        }
        let Some(flight) = self.in_flight.as_mut() else {
            return self.desync(ProtocolError::Unsolicited, node, deferred);
        };
        let index = flight.seen;
        flight.seen = flight.seen.saturating_add(1);
        if index < flight.request.answering_reply()
            && let Request::Acquire {
                mark_waiting: true, ..
            } = flight.request
        {
            // The waiting mark's reply: anything but `OK` leaves the name unmarked here.
            self.mark_refused = !matches!(reply, Reply::Simple(_));
        }
        if index == flight.request.answering_reply() {
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
                        && lock.options().scripts != Scripts::Never
                        && ServerErrorKind::classify(message)
                            == ServerErrorKind::UnknownCommand =>
                {
                    flight.again = true;
                    self.scripts_only = true;
                }
                Reply::Error(message)
                    if flight.encoding == Encoding::CommandGet
                        && message.len() >= SYNTAX_ERROR.len()
                        && message[..SYNTAX_ERROR.len()].eq_ignore_ascii_case(SYNTAX_ERROR) =>
                {
                    flight.again = true;
                    self.plain_set_only = true;
                }
                _ => flight.answer = Some(interpret(flight.request, flight.encoding, &reply, lock)),
            }
        } else if let (
            Some(answer),
            Request::Acquire {
                probe_ttl: true, ..
            },
            Encoding::Command | Encoding::CommandGet,
        ) = (flight.answer.as_mut(), flight.request, flight.encoding)
        {
            // The PTTL (and TYPE) piggy-backed on SET NX: how long the holder's key lives,
            // and whether it is a lock's at all.
            // Counted from the `SET`'s reply (a waiting mark may come before it).
            merge_probe(
                answer,
                index.saturating_sub(flight.request.answering_reply()),
                &reply,
            );
        }
        if flight.seen < flight.replies {
            return None;
        }
        let flight = self.in_flight.take()?;
        if flight.again {
            self.queued = Some(flight.request.again());
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
