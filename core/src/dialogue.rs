//! One conversation per node for the operator machines ([`crate::Inspect`],
//! [`crate::Reset`]) and get-or-compute's ([`crate::GetOrLock`], [`crate::FinishCompute`]):
//! a command, its reply, the next command chosen from that reply, until the node's task is
//! done or fails.
//!
//! What it owns: framing and decoding each node's replies (in the RESP version the node's
//! connection speaks), the deadlines, and turning every way a node can fail into a
//! [`NodeError`]. What a task sends and what a reply means are the task's ([`Task`]).
//!
//! Invariants:
//! - **One request in flight per node**, so a reply always answers the request before it; a
//!   reply that answers nothing, or bytes that are not RESP, fail the node and put its
//!   connection out of step ([`Dialogues::owed_replies`] is `None`).
//! - **Bounded.** Each request ends within the request timeout (a blocking one,
//!   get-or-compute's `BLPOP`, within its block plus that); each node's whole task ends within
//!   its budget (connect time included: the clock starts when the first command is handed to
//!   the driver); a reply is buffered up to [`ADMIN_REPLY_CAP`] bytes, no more.
//! - **Never free by failure.** A node that times out, disconnects or answers garbage ends in
//!   `Err`, never in a task's result.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::Transmit;
use crate::error::{ProtocolError, ServerError};
use crate::resp::{self, BufferTooSmall, Protocol, Reply, Sink};
use crate::server::ServerInfo;
use crate::time::{Duration, Instant};

/// The longest reply an operator command buffers (a `SCAN` page of long keys fits many times).
pub const ADMIN_REPLY_CAP: usize = 1 << 20;

/// Why one node could not be read or reset.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeError {
    /// The connection could not be opened, or was lost.
    Disconnected,
    /// No complete answer in time.
    Timeout {
        /// The deadline it missed: the request timeout, or the node's whole budget.
        after: Duration,
    },
    /// The reply was not RESP, or not one the command can give.
    Protocol(ProtocolError),
    /// The server refused the command (`NOPERM`, `WRONGTYPE`, `OOM`, …).
    Server(ServerError),
    /// A key of the lock's name holds something the lock protocol never writes there: a
    /// user's own key, which says nothing about the lock.
    NotALock {
        /// The key.
        key: Vec<u8>,
        /// What it holds instead.
        why: &'static str,
    },
    /// The caller gave the command up.
    Cancelled,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Disconnected => {
                f.write_str("the connection could not be opened or was lost")
            }
            NodeError::Timeout { after } => {
                write!(f, "no complete answer within {} ms", after.as_millis())
            }
            NodeError::Protocol(e) => fmt::Display::fmt(e, f),
            NodeError::Server(e) => fmt::Display::fmt(e, f),
            NodeError::NotALock { key, why } => {
                write!(
                    f,
                    "{} is not a lock key: {why}",
                    String::from_utf8_lossy(key)
                )
            }
            NodeError::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl core::error::Error for NodeError {}

/// A reply as owned values (operator replies are small, and a task keeps parts of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Nil,
    Int(i64),
    Text(Vec<u8>),
    List(Vec<Value>),
    Error(Vec<u8>),
    /// A type no operator command's reply has (a map, a boolean, a double).
    Other,
}

impl Value {
    fn from_reply(reply: &Reply<'_>) -> Value {
        match reply {
            Reply::Nil => Value::Nil,
            Reply::Integer(i) => Value::Int(*i),
            Reply::Simple(b) | Reply::Bulk(b) => Value::Text(b.to_vec()),
            Reply::Error(e) => Value::Error(e.to_vec()),
            Reply::Array(items) | Reply::Push(items) => {
                Value::List(items.iter().map(Value::from_reply).collect())
            }
            _ => Value::Other,
        }
    }
}

/// A command's bytes: an array of bulk strings.
pub(crate) fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut counter = resp::encode::Counter(0);
    counter.command(args);
    let mut out = alloc::vec![0u8; counter.0];
    // The buffer has exactly the size counted, so this cannot come up short.
    let len = resp::encode_into(&mut out, |s: &mut dyn Sink| s.command(args)).unwrap_or(0);
    out.truncate(len);
    out
}

/// What a task does next.
pub(crate) enum Step<D> {
    /// Send this command and hand its reply to [`Task::on_reply`].
    Send(Vec<u8>),
    /// Send this blocking command (`BLPOP`), which may hold the connection this long before
    /// it answers: its reply is awaited for that plus the request timeout (within the
    /// node's budget), and the transmit says it blocks.
    Block(Vec<u8>, Duration),
    /// The node's part is done.
    Done(D),
    /// The node failed.
    Fail(NodeError),
}

/// One node's part of an operator command: which command to send, and what each reply means.
pub(crate) trait Task {
    /// What the node's part ends with.
    type Done;
    /// The first step.
    fn start(&mut self, now: Instant) -> Step<Self::Done>;
    /// The reply to the last command sent.
    fn on_reply(&mut self, reply: Value, now: Instant) -> Step<Self::Done>;
}

enum State<D> {
    Running,
    Finished(Result<D, NodeError>),
    Reported,
}

struct Node<T: Task> {
    task: T,
    state: State<T::Done>,
    protocol: Protocol,
    /// A command waiting for [`Dialogues::poll_transmit`], and how long it may block.
    queued: Option<(Vec<u8>, Option<Duration>)>,
    /// The request in flight: when it times out, and the limit that sets it.
    in_flight: Option<(Instant, Duration)>,
    /// When the node's whole part times out.
    deadline: Instant,
    /// Bytes read and not yet framed.
    buf: Vec<u8>,
    /// The connection owes a reply that will never be read, or carried garbage.
    out_of_step: bool,
}

impl<T: Task> Node<T> {
    fn apply(&mut self, step: Step<T::Done>) {
        match step {
            Step::Send(bytes) => self.queued = Some((bytes, None)),
            Step::Block(bytes, block) => self.queued = Some((bytes, Some(block))),
            Step::Done(done) => self.finish(Ok(done)),
            Step::Fail(e) => self.finish(Err(e)),
        }
    }

    fn finish(&mut self, result: Result<T::Done, NodeError>) {
        if matches!(self.state, State::Running) {
            self.state = State::Finished(result);
        }
        self.queued = None;
        if self.in_flight.take().is_some() || !self.buf.is_empty() {
            self.out_of_step = true;
        }
    }

    fn running(&self) -> bool {
        matches!(self.state, State::Running)
    }

    /// Frames and handles every complete reply buffered.
    fn read(&mut self, now: Instant) {
        while !self.out_of_step {
            let len = match resp::frame_len(&self.buf) {
                Ok(Some(len)) => len,
                Ok(None) if self.buf.len() > ADMIN_REPLY_CAP => {
                    return self.broken(ProtocolError::FrameTooLarge {
                        capacity: ADMIN_REPLY_CAP,
                    });
                }
                Ok(None) => return,
                Err(e) => return self.broken(e),
            };
            let frame = self.buf.get(..len).unwrap_or_default();
            let value = match resp::decode(frame, self.protocol) {
                Ok(Reply::Push(_)) => None,
                Ok(reply) => Some(Value::from_reply(&reply)),
                Err(e) => return self.broken(e),
            };
            self.buf.drain(..len.min(self.buf.len()));
            let Some(value) = value else { continue };
            if self.in_flight.take().is_none() || !self.running() {
                return self.broken(ProtocolError::Unsolicited);
            }
            let step = self.task.on_reply(value, now);
            self.apply(step);
        }
    }

    fn broken(&mut self, e: ProtocolError) {
        self.finish(Err(NodeError::Protocol(e)));
        self.out_of_step = true;
        self.buf.clear();
    }
}

/// Every node's conversation (see the module doc).
pub(crate) struct Dialogues<T: Task> {
    nodes: Vec<Node<T>>,
    request_timeout: Duration,
    budget: Duration,
}

impl<T: Task> Dialogues<T> {
    /// One conversation per task, `tasks[i]` with node `i` (speaking `servers[i].protocol`);
    /// each request within `request_timeout`, each node's whole part within `budget`.
    pub(crate) fn new(
        tasks: Vec<T>,
        servers: &[ServerInfo],
        request_timeout: Duration,
        budget: Duration,
        now: Instant,
    ) -> Self {
        let nodes = tasks
            .into_iter()
            .zip(servers)
            .map(|(mut task, server)| {
                let step = task.start(now);
                let mut node = Node {
                    task,
                    state: State::Running,
                    protocol: server.protocol,
                    queued: None,
                    in_flight: None,
                    deadline: now.saturating_add(budget),
                    buf: Vec::new(),
                    out_of_step: false,
                };
                node.apply(step);
                node
            })
            .collect();
        Dialogues {
            nodes,
            request_timeout,
            budget,
        }
    }

    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        buf: &mut [u8],
    ) -> Result<Option<Transmit>, BufferTooSmall> {
        let request_timeout = self.request_timeout;
        let budget = self.budget;
        let Some((index, node)) = self
            .nodes
            .iter_mut()
            .enumerate()
            .find(|(_, n)| n.queued.is_some())
        else {
            return Ok(None);
        };
        let Some((bytes, blocking)) = node.queued.as_ref() else {
            return Ok(None);
        };
        let blocking = *blocking;
        let Some(out) = buf.get_mut(..bytes.len()) else {
            return Err(BufferTooSmall {
                required: bytes.len(),
            });
        };
        out.copy_from_slice(bytes);
        let len = bytes.len();
        node.queued = None;
        let limit = request_timeout.saturating_add(blocking.unwrap_or(Duration::ZERO));
        let by_request = now.saturating_add(limit);
        node.in_flight = Some(if by_request <= node.deadline {
            (by_request, limit)
        } else {
            (node.deadline, budget)
        });
        Ok(Some(Transmit {
            node: index,
            len,
            blocking,
        }))
    }

    pub(crate) fn handle_input(&mut self, node: usize, bytes: &[u8], now: Instant) {
        let Some(node) = self.nodes.get_mut(node) else {
            return;
        };
        if node.out_of_step {
            return;
        }
        node.buf.extend_from_slice(bytes);
        node.read(now);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let budget = self.budget;
        for node in self.nodes.iter_mut().filter(|n| n.running()) {
            match node.in_flight {
                Some((at, after)) if at <= now => {
                    node.finish(Err(NodeError::Timeout { after }));
                }
                None if node.deadline <= now => {
                    node.finish(Err(NodeError::Timeout { after: budget }));
                }
                _ => {}
            }
        }
    }

    pub(crate) fn handle_disconnect(&mut self, node: usize) {
        let Some(node) = self.nodes.get_mut(node) else {
            return;
        };
        node.finish(Err(NodeError::Disconnected));
        // The connection is gone: nothing is owed on the next one.
        node.in_flight = None;
        node.buf.clear();
        node.out_of_step = false;
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.nodes
            .iter()
            .filter(|n| n.running())
            .map(|n| n.in_flight.map_or(n.deadline, |(at, _)| at))
            .min()
    }

    /// Each node's result, in node order, once every node has one.
    pub(crate) fn poll_outcome(&mut self) -> Option<Vec<Result<T::Done, NodeError>>> {
        let finished = self
            .nodes
            .iter()
            .all(|n| matches!(n.state, State::Finished(_)));
        if !finished {
            return None;
        }
        let results = self
            .nodes
            .iter_mut()
            .filter_map(
                |n| match core::mem::replace(&mut n.state, State::Reported) {
                    State::Finished(result) => Some(result),
                    _ => None,
                },
            )
            .collect();
        Some(results)
    }

    pub(crate) fn cancel(&mut self) {
        for node in &mut self.nodes {
            node.finish(Err(NodeError::Cancelled));
        }
    }

    pub(crate) fn owed_replies(&self, node: usize) -> Option<u32> {
        let node = self.nodes.get(node)?;
        if node.out_of_step {
            return None;
        }
        Some(u32::from(node.in_flight.is_some()))
    }
}

/// Implements [`crate::Driven`] for an operator machine whose `dialogues` field is a
/// [`Dialogues`] and whose outcome is built by its `outcome(results)` method.
macro_rules! driven_by_dialogues {
    ($machine:ty, $outcome:ty) => {
        impl $crate::Driven for $machine {
            type Outcome = $outcome;

            fn poll_transmit(
                &mut self,
                now: $crate::Instant,
                buf: &mut [u8],
            ) -> Result<Option<$crate::Transmit>, $crate::BufferTooSmall> {
                self.dialogues.poll_transmit(now, buf)
            }

            fn handle_input(&mut self, node: usize, bytes: &[u8], now: $crate::Instant) {
                self.dialogues.handle_input(node, bytes, now);
            }

            fn handle_timeout(&mut self, now: $crate::Instant) {
                self.dialogues.handle_timeout(now);
            }

            fn handle_disconnect(&mut self, node: usize, _now: $crate::Instant) {
                self.dialogues.handle_disconnect(node);
            }

            fn poll_timeout(&self) -> Option<$crate::Instant> {
                self.dialogues.poll_timeout()
            }

            fn poll_outcome(&mut self) -> Option<Self::Outcome> {
                let results = self.dialogues.poll_outcome()?;
                Some(Self::outcome(results))
            }

            fn cancel(&mut self, _now: $crate::Instant) {
                self.dialogues.cancel();
            }

            fn owed_replies(&self, node: usize) -> Option<u32> {
                self.dialogues.owed_replies(node)
            }
        }
    };
}
pub(crate) use driven_by_dialogues;
