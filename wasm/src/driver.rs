//! The driver loop of `distlock_core::machine` over blocking `transport` calls, and the
//! connections it keeps: one per node, opened with the core's handshake.
//!
//! This module moves bytes and keeps time; what to send and what a reply means is the core's.
//! Invariant: a late reply never reaches the wrong operation. A connection that still owes
//! replies to a finished machine goes on to the next one with the count
//! ([`Machine::handover`] → [`Machine::discard_replies`]), which discards them before matching
//! its own; one that is out of step is reconnected.
//!
//! A dead or frozen node costs an operation its vote, not a timeout. Which node to connect
//! and when is the core's [`Session`]: this driver opens what
//! [`Session::poll_connect`] names, reports each connect's end, and closes a handshake the
//! session gave up on (connect plus handshake bounded by the request timeout). The handshake
//! runs beside the operations (its replies are read by the same waits that read the lock's):
//! no operation waits for a node to come up. A node whose connect failed is tried again after
//! the session's jittered backoff; meanwhile operations go on without it. A handshake that
//! completes while an operation runs joins that operation only if the machine was built for
//! the server it found; otherwise the next operation uses it. A connection whose request went
//! a whole request timeout without a reply byte (a node frozen while connected) is closed
//! when its operation ends and reported to the session as silent, which backs the node off:
//! such a node costs one operation a request timeout, not every one after it.
//!
//! Two kinds of machine run here ([`Runnable`]): the lock machines ([`Machine`]), which take
//! over a connection that still owes an earlier operation replies and need no node to be
//! open; and the core's conversations (get-or-compute's [`GetOrLock`] and [`FinishCompute`]),
//! which send their first command at once and cannot skip an earlier operation's replies.
//! Before a conversation, a connection owing replies is reconnected and the handshakes under
//! way are waited for (each bounded by the session's handshake deadline), so a conversation
//! starts on connections that owe nothing, or finds its node down.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use distlock_core::HandshakeOptions;
use distlock_core::{
    ConfigError, ConnectOutcome, Credentials, Duration, Handshake, Instant, NodeState, ServerInfo,
    Session, SessionOptions,
};
use distlock_core::{Driven, FinishCompute, GetOrLock, Machine, Operation};

use crate::api;
use crate::bindings::distlock::lock::transport::{self, Connection, Endpoint, TransportError};
use crate::{convert, now, seed, url};

/// The most nodes a client can run Redlock over: the core's limit, for every driver.
pub(crate) use distlock_core::MAX_NODES;
/// Bytes one receive takes.
const READ_CHUNK: u32 = 4096;
/// How long to wait when the machine names no deadline (it always does while it waits for
/// something; this only bounds a wrong guess).
const IDLE_WAIT_MS: u64 = 1_000;

/// One node: where it is and how to log in.
struct Node {
    /// The URL with any password hidden, for messages.
    shown: String,
    endpoint: Endpoint,
    handshake: HandshakeOptions,
}

/// A connection that has done its handshake.
struct Conn {
    io: Connection,
    server: ServerInfo,
    /// Replies still owed to the last operation (a Redlock round's slower node, a rollback's
    /// answer): the next operation's machine discards them itself.
    owed: u32,
}

/// A connection whose handshake is under way.
struct Pending {
    io: Connection,
    handshake: Handshake,
}

/// A node's connection.
enum Slot {
    Open(Conn),
    /// Connected; the handshake goes on beside the operations. Boxed: a handshake carries
    /// its reply buffer.
    Connecting(alloc::boxed::Box<Pending>),
    /// Not connected (the session says when to try again).
    Closed,
}

/// A node's connection and what the driver remembers of it.
struct Link {
    slot: Slot,
    /// What the last handshake found: what a machine is built with while the node is not
    /// open.
    known: ServerInfo,
    /// Why the last connect failed, for an error that names it.
    last_error: String,
}

impl Link {
    fn is_open(&self) -> bool {
        matches!(self.slot, Slot::Open(_))
    }

    /// The connect (or its handshake) failed: the session backs the node off.
    fn fail(&mut self, session: &mut Session<MAX_NODES>, node: usize, why: String) {
        self.slot = Slot::Closed;
        self.last_error = why;
        session.connect_failed(node, now());
    }

    /// The open connection was lost (or fell out of step): the session reconnects it when
    /// next asked.
    fn lose(&mut self, session: &mut Session<MAX_NODES>, node: usize) {
        self.slot = Slot::Closed;
        session.disconnected(node, now());
    }

    /// Opens the stream (for at most `timeout`) and sends the handshake's first commands:
    /// the session named this node ([`Session::poll_connect`]).
    fn start_connect(
        &mut self,
        spec: &Node,
        node: usize,
        session: &mut Session<MAX_NODES>,
        timeout: Duration,
    ) {
        session.connect_started(node, now());
        match transport::open(&spec.endpoint, timeout.as_millis().max(1)) {
            Ok(io) => {
                let handshake = Handshake::new(spec.handshake.clone(), now());
                self.slot = Slot::Connecting(alloc::boxed::Box::new(Pending { io, handshake }));
                self.step_handshake(spec, node, session, None);
            }
            Err(e) => self.fail(
                session,
                node,
                format!("cannot connect to {}: {}", spec.shown, describe(&e)),
            ),
        }
    }

    /// Feeds a connecting node's handshake `bytes` (`None`: only check its deadline and send
    /// what it asks); true when the node has just become open.
    fn step_handshake(
        &mut self,
        spec: &Node,
        node: usize,
        session: &mut Session<MAX_NODES>,
        bytes: Option<&[u8]>,
    ) -> bool {
        let Slot::Connecting(pending) = &mut self.slot else {
            return false;
        };
        let at = now();
        match bytes {
            Some(bytes) => pending.handshake.handle_input(bytes, at),
            None => {
                if pending.handshake.poll_timeout().is_some_and(|t| t <= at) {
                    pending.handshake.handle_timeout(at);
                }
            }
        }
        let mut buf = vec![0u8; 512];
        loop {
            match pending.handshake.poll_transmit(&mut buf) {
                Ok(Some(len)) => {
                    if let Err(e) = pending.io.send(buf.get(..len).unwrap_or_default()) {
                        let why = format!("cannot connect to {}: {}", spec.shown, describe(&e));
                        self.fail(session, node, why);
                        return false;
                    }
                }
                Ok(None) => break,
                Err(short) => buf.resize(short.required, 0),
            }
        }
        let Some(outcome) = pending.handshake.poll_outcome() else {
            return false;
        };
        match outcome {
            Ok(server) => {
                let Slot::Connecting(pending) = core::mem::replace(&mut self.slot, Slot::Closed)
                else {
                    return false;
                };
                let Pending { io, .. } = *pending;
                self.slot = Slot::Open(Conn {
                    io,
                    server,
                    owed: 0,
                });
                self.known = server;
                session.connected(node, now());
                true
            }
            Err(e) => {
                self.fail(session, node, format!("{}: {e}", spec.shown));
                false
            }
        }
    }

    /// When a connecting node's handshake gives up, if it is connecting.
    fn handshake_deadline(&self) -> Option<Instant> {
        match &self.slot {
            Slot::Connecting(pending) => pending.handshake.poll_timeout(),
            _ => None,
        }
    }

    /// The connection to wait on for bytes: an open one, or one whose handshake is under way.
    fn io(&self) -> Option<&Connection> {
        match &self.slot {
            Slot::Open(conn) => Some(&conn.io),
            Slot::Connecting(pending) => Some(&pending.io),
            Slot::Closed => None,
        }
    }
}

/// Feeds the handshakes under way what their connections already hold, without waiting,
/// then checks their deadlines. An operation that ends at once — a try-acquire while too few
/// nodes are open — never waits for bytes, so without this a returning node's handshake
/// would never be read and the node would never join.
fn read_ready_handshakes(nodes: &[Node], links: &mut [Link], session: &mut Session<MAX_NODES>) {
    for (node, (spec, link)) in nodes.iter().zip(links.iter_mut()).enumerate() {
        while let Slot::Connecting(pending) = &link.slot {
            match pending.io.receive(READ_CHUNK, 0) {
                Ok(bytes) if bytes.is_empty() => break,
                Ok(bytes) => {
                    link.step_handshake(spec, node, session, Some(&bytes));
                }
                Err(e) => {
                    let why = format!("cannot connect to {}: {}", spec.shown, describe(&e));
                    link.fail(session, node, why);
                }
            }
        }
        link.step_handshake(spec, node, session, None);
    }
}

/// Brings the session up to `at` (now): closes the handshakes it gave up on (no answer
/// within the request timeout), then opens every node it names. True when it opened any
/// (an open may block: `at` is then out of date).
fn tend(
    nodes: &[Node],
    links: &mut [Link],
    session: &mut Session<MAX_NODES>,
    timeout: Duration,
    at: Instant,
) -> bool {
    abandon_silent(nodes, links, session, at);
    let mut opened = false;
    while let Some(node) = session.poll_connect(at) {
        opened = true;
        match (nodes.get(node), links.get_mut(node)) {
            (Some(spec), Some(link)) => link.start_connect(spec, node, session, timeout),
            // Cannot happen (one link per node); never ask about it again.
            _ => session.connect_failed(node, at),
        }
    }
    opened
}

/// Brings the session's deadlines up to `at` (now) and closes the handshakes it gave up on
/// (no answer within the request timeout). The node's pause already runs: the report only
/// ends the connect.
fn abandon_silent(
    nodes: &[Node],
    links: &mut [Link],
    session: &mut Session<MAX_NODES>,
    at: Instant,
) {
    session.handle_timeout(at);
    for (node, (spec, link)) in nodes.iter().zip(links.iter_mut()).enumerate() {
        if matches!(link.slot, Slot::Connecting(_))
            && !matches!(session.state(node), Some(NodeState::Connecting { .. }))
        {
            let why = format!("{} did not answer within the request timeout", spec.shown);
            link.fail(session, node, why);
        }
    }
}

/// When to wake for connecting: the session's next deadline or a handshake's, if sooner.
fn connect_deadline(links: &[Link], session: &Session<MAX_NODES>) -> Option<Instant> {
    let handshakes = links.iter().filter_map(Link::handshake_deadline).min();
    match (session.poll_timeout(), handshakes) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A machine this driver runs: what it needs beyond [`Driven`] to share connections with
/// the operations before and after it.
pub(crate) trait Runnable: Driven {
    /// Whether the machine can take a connection that still owes an earlier operation
    /// replies ([`Runnable::discard_replies`]); a conversation cannot.
    const TAKES_OWED_REPLIES: bool;

    /// `node`'s connection still owes an earlier operation `replies` replies: skip them, or
    /// say false (the connection cannot be used).
    fn discard_replies(&mut self, node: usize, replies: u32) -> bool;

    /// After the outcome: what `node`'s connection still owes this machine (`None`: out of
    /// step, reconnect it).
    fn handover(&self, node: usize) -> Option<u32>;

    /// `node`'s handshake completed while the machine ran, for the server it was built for.
    fn join(&mut self, node: usize, now: Instant);
}

impl<Op: Operation> Runnable for Machine<Op, MAX_NODES> {
    const TAKES_OWED_REPLIES: bool = true;

    fn discard_replies(&mut self, node: usize, replies: u32) -> bool {
        Machine::discard_replies(self, node, replies)
    }

    fn handover(&self, node: usize) -> Option<u32> {
        Machine::handover(self, node)
    }

    /// Joins as a fresh connection that owes nothing: the machine asks that node again.
    fn join(&mut self, node: usize, now: Instant) {
        self.handle_disconnect(node, now);
    }
}

/// A conversation: one command at a time from its start, on a connection that owes nothing.
macro_rules! conversation {
    ($machine:ty) => {
        impl Runnable for $machine {
            const TAKES_OWED_REPLIES: bool = false;

            fn discard_replies(&mut self, _node: usize, replies: u32) -> bool {
                replies == 0
            }

            fn handover(&self, node: usize) -> Option<u32> {
                self.owed_replies(node)
            }

            /// A node that was not open when the conversation started has already failed
            /// its part: nothing to rejoin.
            fn join(&mut self, _node: usize, _now: Instant) {}
        }
    };
}
conversation!(GetOrLock);
conversation!(FinishCompute);

/// The nodes of one client and a connection to each.
pub(crate) struct Servers {
    nodes: Vec<Node>,
    links: RefCell<Vec<Link>>,
    /// Which nodes to connect and when (the core's decision).
    session: RefCell<Session<MAX_NODES>>,
    /// The client's request timeout: the longest an open (TCP, TLS) may block.
    connect_timeout: Duration,
}

impl Servers {
    /// Parses `urls` and connects to every node, each open bounded by `request_timeout`;
    /// fails unless a majority answers. Returns once every node has answered, failed or
    /// gone the request timeout without an answer (the session's deadline), or earlier when
    /// a majority failed. A handshake here progresses only while this driver waits, so unlike
    /// a host whose connects run in tasks of their own, it waits out the nodes still within
    /// their deadline after a quorum answered: the first operation then has every node that
    /// answers in time.
    #[inline(never)]
    pub(crate) fn connect(
        urls: &[String],
        request_timeout: Duration,
    ) -> Result<Servers, api::Error> {
        let mut session =
            Session::<MAX_NODES>::new(urls.len(), SessionOptions::new(request_timeout), seed())
                .map_err(convert::config_error)?;
        let mut nodes = Vec::with_capacity(urls.len());
        for text in urls {
            let parsed = url::parse(text).map_err(|why| {
                api::Error::Invalid(api::ConfigError {
                    kind: api::ConfigErrorKind::BadUrl,
                    message: format!(
                        "bad Redis URL {}: {why} (expected redis://[user:pass@]host:port[/db] or rediss://…)",
                        url::redact(text)
                    ),
                })
            })?;
            let credentials = parsed.password.map(|password| Credentials {
                username: parsed.username.map(String::into_bytes),
                password: password.into_bytes(),
            });
            nodes.push(Node {
                shown: url::redact(text),
                endpoint: Endpoint {
                    host: parsed.host,
                    port: parsed.port,
                    tls: parsed.tls,
                },
                handshake: HandshakeOptions {
                    credentials,
                    client_name: Some(b"distlock-wasm".to_vec()),
                    database: parsed.database,
                    ..HandshakeOptions::default()
                },
            });
        }
        let mut links: Vec<Link> = nodes
            .iter()
            .map(|_| Link {
                slot: Slot::Closed,
                known: ServerInfo::default(),
                last_error: String::new(),
            })
            .collect();
        let _ = tend(&nodes, &mut links, &mut session, request_timeout, now());
        let outcome = loop {
            match session.connect_outcome() {
                Some(ConnectOutcome::Ready) if session.any_connecting() => {}
                Some(outcome) => break outcome,
                None => {}
            }
            let until = connect_deadline(&links, &session);
            let wait_ms = until.map_or(IDLE_WAIT_MS, |at| at.saturating_since(now()).as_millis());
            match receive(&links, wait_ms) {
                Received::Bytes(node, bytes) => {
                    if let (Some(spec), Some(link)) = (nodes.get(node), links.get_mut(node)) {
                        link.step_handshake(spec, node, &mut session, Some(&bytes));
                    }
                }
                Received::Nothing => {
                    for (node, (spec, link)) in nodes.iter().zip(links.iter_mut()).enumerate() {
                        link.step_handshake(spec, node, &mut session, None);
                    }
                }
                Received::Lost(node) => {
                    if let (Some(spec), Some(link)) = (nodes.get(node), links.get_mut(node)) {
                        let why = format!(
                            "cannot connect to {}: the server closed the connection",
                            spec.shown
                        );
                        link.fail(&mut session, node, why);
                    }
                }
            }
            // Only give up on silent handshakes here: the first connect is one try per node.
            abandon_silent(&nodes, &mut links, &mut session, now());
        };
        if let ConnectOutcome::TooFew {
            ready,
            nodes: count,
            needed,
        } = outcome
        {
            let last = links
                .iter()
                .rev()
                .map(|l| l.last_error.as_str())
                .find(|e| !e.is_empty())
                .unwrap_or("no answer within the request timeout")
                .to_string();
            return Err(api::Error::Unavailable(if count == 1 {
                last
            } else {
                format!(
                    "only {ready} of {count} Redis nodes are reachable; a quorum needs {needed} (last error: {last})"
                )
            }));
        }
        Ok(Servers {
            nodes,
            links: RefCell::new(links),
            session: RefCell::new(session),
            connect_timeout: request_timeout,
        })
    }

    /// Starts connecting nodes that are down (without waiting for them), builds the machine
    /// (telling it what each connection still owes the previous one), drives it to its
    /// outcome, and keeps the connections.
    pub(crate) fn run<M: Runnable>(
        &self,
        build: impl FnOnce(&[ServerInfo], Instant) -> Result<M, ConfigError>,
    ) -> Result<M::Outcome, api::Error> {
        // Calls into one component instance never nest, so the links are never borrowed here.
        let (Ok(mut links), Ok(mut session)) =
            (self.links.try_borrow_mut(), self.session.try_borrow_mut())
        else {
            return Err(api::Error::Unavailable("re-entered a client".to_string()));
        };
        let session = &mut *session;
        // Handshakes that answered between operations, or ran out of time.
        read_ready_handshakes(&self.nodes, &mut links, session);
        // One clock read serves everything up to the first wait (each read is a call out of
        // the component): tending, building the machine, its first requests.
        let mut started = now();
        // Reconnect what the session says is due (a lost node at once, a failed one after its
        // pause), without waiting for it.
        let opened = tend(
            &self.nodes,
            &mut links,
            session,
            self.connect_timeout,
            started,
        );
        if !M::TAKES_OWED_REPLIES {
            self.ready_for_conversation(&mut links, session);
        }
        if opened || !M::TAKES_OWED_REPLIES {
            // An open, or the wait for handshakes, took time.
            started = now();
        }
        let servers: Vec<ServerInfo> = links
            .iter()
            .map(|l| match &l.slot {
                Slot::Open(conn) => conn.server,
                _ => l.known,
            })
            .collect();
        let mut machine = build(&servers, started).map_err(convert::config_error)?;
        for (node, link) in links.iter_mut().enumerate() {
            if let Slot::Open(conn) = &link.slot
                && !machine.discard_replies(node, conn.owed)
            {
                link.lose(session, node);
            }
        }
        let (outcome, unanswered_since, at) = drive(
            &mut machine,
            &self.nodes,
            &mut links,
            session,
            &servers,
            started,
        );
        // Hand each connection on as it is, with what it still owes; one that is out of step
        // (or has half a reply read) is reconnected by the next operation instead. One that
        // has not answered for a whole request timeout (a frozen node) is closed and the node
        // reconnected in the background: kept, it would cost every later operation that
        // timeout again. `at` is when the outcome came: no wait since.
        for (node, link) in links.iter_mut().enumerate() {
            let silent = unanswered_since
                .get(node)
                .copied()
                .flatten()
                .is_some_and(|since| at.saturating_since(since) >= self.connect_timeout);
            if let Slot::Open(conn) = &mut link.slot {
                match machine.handover(node) {
                    Some(owed) if owed > 0 && silent => {
                        let shown = self.nodes.get(node).map_or("", |n| n.shown.as_str());
                        link.last_error =
                            format!("{shown} did not answer within the request timeout");
                        link.slot = Slot::Closed;
                        session.silent(node, at);
                    }
                    Some(owed) => conn.owed = owed,
                    None => link.lose(session, node),
                }
            }
        }
        Ok(outcome)
    }

    /// Readies the connections for a conversation: one that owes an earlier operation replies
    /// is reconnected, and every handshake under way (those included) is waited for until it
    /// completes or the session gives it up (its request timeout).
    fn ready_for_conversation(&self, links: &mut [Link], session: &mut Session<MAX_NODES>) {
        let mut owing = false;
        for (node, link) in links.iter_mut().enumerate() {
            if let Slot::Open(conn) = &link.slot
                && conn.owed > 0
            {
                link.lose(session, node);
                owing = true;
            }
        }
        if owing {
            let _ = tend(&self.nodes, links, session, self.connect_timeout, now());
        }
        while links.iter().any(|l| matches!(l.slot, Slot::Connecting(_))) {
            let until = connect_deadline(links, session);
            let wait_ms = until.map_or(IDLE_WAIT_MS, |at| at.saturating_since(now()).as_millis());
            match receive(links, wait_ms) {
                Received::Bytes(node, bytes) => {
                    if let (Some(spec), Some(link)) = (self.nodes.get(node), links.get_mut(node)) {
                        link.step_handshake(spec, node, session, Some(&bytes));
                    }
                }
                Received::Nothing => {
                    for (node, (spec, link)) in self.nodes.iter().zip(links.iter_mut()).enumerate()
                    {
                        link.step_handshake(spec, node, session, None);
                    }
                }
                Received::Lost(node) => {
                    if let (Some(spec), Some(link)) = (self.nodes.get(node), links.get_mut(node)) {
                        if link.is_open() {
                            link.lose(session, node);
                        } else {
                            let why = format!(
                                "cannot connect to {}: the server closed the connection",
                                spec.shown
                            );
                            link.fail(session, node, why);
                        }
                    }
                }
            }
            abandon_silent(&self.nodes, links, session, now());
        }
    }
}

/// The loop of `distlock_core::machine`: send what the machine asks, feed what arrives,
/// honour its deadline; handshakes under way progress in the same waits. `built` is the
/// server each node's part of the machine was built for; `started` the time it was built
/// at. Returns the outcome, for each node since when a request sent to it has gone without
/// any reply bytes, and the time of the step that gave the outcome.
///
/// The clock is read once per step, not per call into the machine (each read is a call out
/// of the component): after each wait, and before a wait that follows sends (a send may
/// block, and the wait must end at the machine's deadline, not after it).
fn drive<M: Runnable>(
    machine: &mut M,
    nodes: &[Node],
    links: &mut [Link],
    session: &mut Session<MAX_NODES>,
    built: &[ServerInfo],
    started: Instant,
) -> (M::Outcome, Vec<Option<Instant>>, Instant) {
    let mut out = vec![0u8; 1024];
    let mut unanswered_since: Vec<Option<Instant>> = vec![None; links.len()];
    let mut at = started;
    loop {
        // 1. Everything the machine wants sent, now. A node that is not open has no
        //    connection for this request: the machine counts it as failed, at once.
        let mut sent_any = false;
        loop {
            let tx = match machine.poll_transmit(at, &mut out) {
                Ok(Some(tx)) => tx,
                Ok(None) => break,
                Err(short) => {
                    out.resize(short.required, 0);
                    continue;
                }
            };
            let link = links.get_mut(tx.node);
            let sent = match link {
                Some(Link {
                    slot: Slot::Open(conn),
                    ..
                }) => {
                    let sent = out.get(..tx.len).is_some_and(|b| conn.io.send(b).is_ok());
                    if !sent && let Some(link) = links.get_mut(tx.node) {
                        link.lose(session, tx.node);
                    }
                    if sent && let Some(since) = unanswered_since.get_mut(tx.node) {
                        since.get_or_insert(at);
                    }
                    sent_any |= sent;
                    sent
                }
                _ => false,
            };
            if !sent {
                machine.handle_disconnect(tx.node, at);
            }
        }
        if let Some(outcome) = machine.poll_outcome() {
            return (outcome, unanswered_since, at);
        }
        if sent_any {
            at = now();
        }
        // 2. Wait for bytes from any node, or the machine's deadline (or the session's).
        let until = match (machine.poll_timeout(), connect_deadline(links, session)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait_ms = until.map_or(IDLE_WAIT_MS, |due| due.saturating_since(at).as_millis());
        if wait_ms == 0 {
            // A deadline already due (rare): a fresh read, so that time moves on while the
            // machine's deadlines fire.
            at = now();
            settle_handshakes(machine, nodes, links, session, built, at);
            machine.handle_timeout(at);
            continue;
        }
        let received = receive(links, wait_ms);
        at = now();
        match received {
            Received::Bytes(node, bytes) => {
                let (Some(spec), Some(link)) = (nodes.get(node), links.get_mut(node)) else {
                    continue;
                };
                if link.is_open() {
                    if let Some(since) = unanswered_since.get_mut(node) {
                        *since = None;
                    }
                    machine.handle_input(node, &bytes, at);
                } else if link.step_handshake(spec, node, session, Some(&bytes)) {
                    join(machine, node, link, built);
                }
            }
            Received::Nothing => {
                settle_handshakes(machine, nodes, links, session, built, at);
                machine.handle_timeout(at);
            }
            Received::Lost(node) => {
                let (Some(spec), Some(link)) = (nodes.get(node), links.get_mut(node)) else {
                    continue;
                };
                if link.is_open() {
                    link.lose(session, node);
                    machine.handle_disconnect(node, at);
                } else {
                    let why = format!(
                        "cannot connect to {}: the server closed the connection",
                        spec.shown
                    );
                    link.fail(session, node, why);
                }
            }
        }
    }
}

/// Gives handshakes whose deadline passed their timeout, and closes those the session gave
/// up on by `at` (now). Nothing new is opened mid-operation (an open may block): the next
/// operation does.
fn settle_handshakes<M: Runnable>(
    machine: &mut M,
    nodes: &[Node],
    links: &mut [Link],
    session: &mut Session<MAX_NODES>,
    built: &[ServerInfo],
    at: Instant,
) {
    for (node, (spec, link)) in nodes.iter().zip(links.iter_mut()).enumerate() {
        if link.step_handshake(spec, node, session, None) {
            join(machine, node, link, built);
        }
    }
    abandon_silent(nodes, links, session, at);
}

/// A node whose handshake just completed joins the running machine, as a fresh connection
/// that owes nothing, if the machine was built for the server it found; else it waits, open,
/// for the next operation.
fn join<M: Runnable>(machine: &mut M, node: usize, link: &Link, built: &[ServerInfo]) {
    if let Slot::Open(conn) = &link.slot
        && built.get(node) == Some(&conn.server)
    {
        machine.join(node, now());
    }
}

/// What one wait on the connections gave.
enum Received {
    /// Bytes from a node.
    Bytes(usize, Vec<u8>),
    /// Nothing before the wait ran out.
    Nothing,
    /// A node's connection failed.
    Lost(usize),
}

/// Waits up to `wait_ms` for bytes from any connection (open, or with a handshake under
/// way). Not generic: one copy serves every operation.
#[inline(never)]
fn receive(links: &[Link], wait_ms: u64) -> Received {
    let live: Vec<(usize, &Connection)> = links
        .iter()
        .enumerate()
        .filter_map(|(node, l)| l.io().map(|io| (node, io)))
        .collect();
    if let [(node, io)] = live.as_slice() {
        return match io.receive(READ_CHUNK, wait_ms) {
            Ok(bytes) if bytes.is_empty() => Received::Nothing,
            Ok(bytes) => Received::Bytes(*node, bytes),
            Err(_) => Received::Lost(*node),
        };
    }
    // With no connection at all, `receive-any` of nothing is a plain sleep.
    let conns: Vec<&Connection> = live.iter().map(|(_, io)| *io).collect();
    let node_of = |i: u32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| live.get(i))
            .map(|(node, _)| *node)
    };
    match transport::receive_any(&conns, READ_CHUNK, wait_ms) {
        Ok(Some(arrived)) => node_of(arrived.index).map_or(Received::Nothing, |node| {
            Received::Bytes(node, arrived.bytes)
        }),
        Ok(None) => Received::Nothing,
        Err(failed) => node_of(failed.index).map_or(Received::Nothing, Received::Lost),
    }
}

/// A transport error, said for a person.
fn describe(error: &TransportError) -> String {
    match error {
        TransportError::Denied(why) => format!("not allowed by the runtime: {why}"),
        TransportError::Connect(why) | TransportError::Io(why) => why.clone(),
        TransportError::Closed => "the server closed the connection".to_string(),
    }
}
