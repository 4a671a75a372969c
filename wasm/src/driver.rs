//! The driver loop of `distlock_core::machine` over blocking `transport` calls, and the
//! connections it keeps: one per node, opened with the core's handshake.
//!
//! This module moves bytes and keeps time; what to send and what a reply means is the core's.
//! Invariant: a late reply never reaches the wrong operation. A connection that still owes
//! replies to a finished machine goes on to the next one with the count
//! ([`Machine::handover`] → [`Machine::discard_replies`]), which discards them before matching
//! its own; one that is out of step is reconnected.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use distlock_core::handshake::HandshakeOptions;
use distlock_core::machine::{Machine, Operation};
use distlock_core::{ConfigError, Credentials, Duration, Handshake, Instant, ServerInfo, quorum};

use crate::api;
use crate::bindings::distlock::lock::transport::{self, Connection, Endpoint, TransportError};
use crate::{convert, now, url};

/// The most nodes a client can run Redlock over (the host's limit too).
pub(crate) const MAX_NODES: usize = 7;
/// TCP (and TLS) connect, at most.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// After a node could not be reached, operations do not try it again for this long (a dead
/// host would otherwise cost every operation a connect timeout).
const RECONNECT_AFTER: Duration = Duration::from_millis(1_000);
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

/// A node's connection slot.
enum Slot {
    Open(Conn),
    /// Not connected; not worth trying again before this.
    Down {
        retry_at: Instant,
    },
}

/// The nodes of one client and a connection to each.
pub(crate) struct Servers {
    nodes: Vec<Node>,
    slots: RefCell<Vec<Slot>>,
}

impl Servers {
    /// Parses `urls` and connects to every node; fails unless a majority answers.
    #[inline(never)]
    pub(crate) fn connect(urls: &[String]) -> Result<Servers, api::Error> {
        if urls.is_empty() || urls.len() > MAX_NODES {
            return Err(convert::config_error(ConfigError::BadNodeCount {
                nodes: urls.len(),
                capacity: MAX_NODES,
            }));
        }
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
        let mut slots = Vec::with_capacity(nodes.len());
        let mut last = String::new();
        for node in &nodes {
            match open(node) {
                Ok(conn) => slots.push(Slot::Open(conn)),
                Err(why) => {
                    last = why;
                    slots.push(Slot::Down {
                        retry_at: now().saturating_add(RECONNECT_AFTER),
                    });
                }
            }
        }
        let reachable = slots.iter().filter(|s| matches!(s, Slot::Open(_))).count();
        let needed = quorum(nodes.len());
        if reachable < needed {
            return Err(api::Error::Unavailable(if nodes.len() == 1 {
                last
            } else {
                format!(
                    "only {reachable} of {} Redis nodes are reachable; a quorum needs {needed} (last error: {last})",
                    nodes.len()
                )
            }));
        }
        Ok(Servers {
            nodes,
            slots: RefCell::new(slots),
        })
    }

    /// Reconnects nodes that are down, builds the machine (telling it what each connection
    /// still owes the previous one), drives it to its outcome, and keeps the connections.
    pub(crate) fn run<Op: Operation>(
        &self,
        build: impl FnOnce(&[ServerInfo], Instant) -> Result<Machine<Op, MAX_NODES>, ConfigError>,
    ) -> Result<Op::Outcome, api::Error> {
        // Calls into one component instance never nest, so the slots are never borrowed here.
        let Ok(mut slots) = self.slots.try_borrow_mut() else {
            return Err(api::Error::Unavailable("re-entered a client".to_string()));
        };
        for (node, slot) in self.nodes.iter().zip(slots.iter_mut()) {
            if let Slot::Down { retry_at } = *slot
                && now() >= retry_at
            {
                *slot = match open(node) {
                    Ok(conn) => Slot::Open(conn),
                    Err(_) => Slot::Down {
                        retry_at: now().saturating_add(RECONNECT_AFTER),
                    },
                };
            }
        }
        let servers: Vec<ServerInfo> = slots
            .iter()
            .map(|s| match s {
                Slot::Open(conn) => conn.server,
                Slot::Down { .. } => ServerInfo::default(),
            })
            .collect();
        let mut machine = build(&servers, now()).map_err(convert::config_error)?;
        for (node, slot) in slots.iter().enumerate() {
            if let Slot::Open(conn) = slot {
                machine.discard_replies(node, conn.owed);
            }
        }
        let outcome = drive(&mut machine, &mut slots);
        // Hand each connection on as it is, with what it still owes; one that is out of step
        // (or has half a reply read) is reconnected by the next operation instead.
        for (node, slot) in slots.iter_mut().enumerate() {
            if let Slot::Open(conn) = slot {
                match machine.handover(node) {
                    Some(owed) => conn.owed = owed,
                    None => {
                        *slot = Slot::Down {
                            retry_at: Instant::ZERO,
                        }
                    }
                }
            }
        }
        Ok(outcome)
    }
}

/// Marks `node` lost and tells the machine.
fn lose<Op: Operation>(machine: &mut Machine<Op, MAX_NODES>, slots: &mut [Slot], node: usize) {
    if let Some(slot) = slots.get_mut(node) {
        *slot = Slot::Down {
            retry_at: Instant::ZERO,
        };
    }
    machine.handle_disconnect(node, now());
}

/// The loop of `distlock_core::machine`: send what the machine asks, feed what arrives,
/// honour its deadline.
fn drive<Op: Operation>(machine: &mut Machine<Op, MAX_NODES>, slots: &mut [Slot]) -> Op::Outcome {
    let mut out = vec![0u8; 1024];
    loop {
        // 1. Everything the machine wants sent, now.
        loop {
            let tx = match machine.poll_transmit(now(), &mut out) {
                Ok(Some(tx)) => tx,
                Ok(None) => break,
                Err(short) => {
                    out.resize(short.required, 0);
                    continue;
                }
            };
            let sent = out
                .get(..tx.len)
                .is_some_and(|bytes| send(slots, tx.node, bytes));
            if !sent {
                lose(machine, slots, tx.node);
            }
        }
        if let Some(outcome) = machine.poll_outcome() {
            return outcome;
        }
        // 2. Wait for bytes from any node, or the machine's deadline.
        let wait_ms = machine
            .poll_timeout()
            .map_or(IDLE_WAIT_MS, |at| at.saturating_since(now()).as_millis());
        if wait_ms == 0 {
            machine.handle_timeout(now());
            continue;
        }
        let received = receive(slots, wait_ms);
        match received {
            Received::Bytes(node, bytes) => machine.handle_input(node, &bytes, now()),
            Received::Nothing => machine.handle_timeout(now()),
            Received::Lost(node) => lose(machine, slots, node),
        }
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

/// Waits up to `wait_ms` for bytes from any open connection. Not generic: one copy serves
/// every operation.
#[inline(never)]
fn receive(slots: &[Slot], wait_ms: u64) -> Received {
    let open: Vec<usize> = slots
        .iter()
        .enumerate()
        .filter_map(|(node, s)| matches!(s, Slot::Open(_)).then_some(node))
        .collect();
    if let [node] = open.as_slice() {
        let Some(Slot::Open(conn)) = slots.get(*node) else {
            return Received::Nothing;
        };
        return match conn.io.receive(READ_CHUNK, wait_ms) {
            Ok(bytes) if bytes.is_empty() => Received::Nothing,
            Ok(bytes) => Received::Bytes(*node, bytes),
            Err(_) => Received::Lost(*node),
        };
    }
    // With no connection at all, `receive-any` of nothing is a plain sleep.
    let conns: Vec<&Connection> = open
        .iter()
        .filter_map(|&node| match slots.get(node) {
            Some(Slot::Open(conn)) => Some(&conn.io),
            _ => None,
        })
        .collect();
    let node_of = |i: u32| usize::try_from(i).ok().and_then(|i| open.get(i).copied());
    match transport::receive_any(&conns, READ_CHUNK, wait_ms) {
        Ok(Some(arrived)) => node_of(arrived.index).map_or(Received::Nothing, |node| {
            Received::Bytes(node, arrived.bytes)
        }),
        Ok(None) => Received::Nothing,
        Err(failed) => node_of(failed.index).map_or(Received::Nothing, Received::Lost),
    }
}

/// Writes `bytes` to `node`'s connection; false when it has none or the write failed.
#[inline(never)]
fn send(slots: &[Slot], node: usize, bytes: &[u8]) -> bool {
    match slots.get(node) {
        Some(Slot::Open(conn)) => conn.io.send(bytes).is_ok(),
        _ => false,
    }
}

/// Opens `node`'s connection and runs the handshake over it.
#[inline(never)]
fn open(node: &Node) -> Result<Conn, String> {
    let failed = |e: TransportError| format!("cannot connect to {}: {}", node.shown, describe(&e));
    let io = transport::open(&node.endpoint, CONNECT_TIMEOUT_MS).map_err(failed)?;
    let mut handshake = Handshake::new(node.handshake.clone(), now());
    let mut buf = vec![0u8; 512];
    loop {
        loop {
            match handshake.poll_transmit(&mut buf) {
                Ok(Some(len)) => io
                    .send(buf.get(..len).unwrap_or_default())
                    .map_err(failed)?,
                Ok(None) => break,
                Err(short) => buf.resize(short.required, 0),
            }
        }
        if let Some(outcome) = handshake.poll_outcome() {
            return outcome
                .map(|server| Conn {
                    io,
                    server,
                    owed: 0,
                })
                .map_err(|e| format!("{}: {e}", node.shown));
        }
        let wait_ms = handshake
            .poll_timeout()
            .map_or(IDLE_WAIT_MS, |at| at.saturating_since(now()).as_millis())
            .max(1);
        let bytes = io.receive(READ_CHUNK, wait_ms).map_err(failed)?;
        if bytes.is_empty() {
            handshake.handle_timeout(now());
        } else {
            handshake.handle_input(&bytes, now());
        }
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
