//! `status`: what each node says about one lock, and what that says about the lock.
//!
//! [`Inspect`] reads, on every node at once, the lock key (`GET`: the holder's token), its
//! time to live (`PTTL`) and the fencing counter (`GET`), one command at a time, and ends with
//! an [`Inspection`]: per node a [`Reading`] or the [`NodeError`] that kept it from being read.
//! [`verdict`] turns readings into held / free / unknown.
//!
//! Invariants:
//! - **Read only.** It sends `GET` and `PTTL`, nothing that writes.
//! - **Unknown is never free.** A node that could not be read — unreachable, silent past the
//!   request timeout, not RESP, a refusal (`NOPERM`, `WRONGTYPE`), a lock key holding no token,
//!   a fence that is no number — is an `Err`, and [`verdict`] says free only when no token can
//!   reach a majority even if every such node held it.
//! - **Held means a majority.** [`Verdict::Held`] only for a token on [`quorum`] nodes.
//! - **Bounded.** Each node's three requests together end within the lock's request timeout.

use alloc::vec::Vec;

use crate::dialogue::{Dialogues, NodeError, Step, Task, Value, command, driven_by_dialogues};
use crate::error::{ConfigError, ProtocolError, ServerError};
use crate::keys::{KeyRole, Token};
use crate::lock::{Lock, MAX_NODES, quorum};
use crate::server::ServerInfo;
use crate::time::{Duration, Instant};

/// What one node says about the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The token in the lock key, if any.
    pub holder: Option<Token>,
    /// How long the lock key lives (`None`: no key, or no expiry).
    pub ttl: Option<Duration>,
    /// The fencing counter: the last fence handed out.
    pub fence: Option<u64>,
}

/// What every node says, in node order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Each node's reading, or why it could not be read.
    pub nodes: Vec<Result<Reading, NodeError>>,
}

impl Inspection {
    /// The verdict over every node ([`verdict`]).
    #[must_use]
    pub fn verdict(&self) -> Verdict<&Token> {
        verdict(self.nodes.iter().map(|n| match n {
            Ok(Reading {
                holder: Some(token),
                ..
            }) => Seen::Holder(token),
            Ok(_) => Seen::Free,
            Err(_) => Seen::Unread,
        }))
    }
}

/// One node's answer, as [`verdict`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Seen<T> {
    /// The node has this token in the lock key.
    Holder(T),
    /// The node has no lock key.
    Free,
    /// The node could not be read: it may hold anything.
    Unread,
}

/// What the nodes say about the lock as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict<T> {
    /// A majority of nodes has this token in the lock key.
    Held(T),
    /// No token can be on a majority, even counting every node that could not be read.
    Free,
    /// The nodes that answered cannot decide: too many could not be read.
    Unknown,
}

/// The verdict of the nodes' answers: held by a token on a majority ([`quorum`]), free when
/// no token can have a majority even if every unread node had it, unknown otherwise.
pub fn verdict<T: Copy + PartialEq>(seen: impl IntoIterator<Item = Seen<T>>) -> Verdict<T> {
    let seen: Vec<Seen<T>> = seen.into_iter().collect();
    let needed = quorum(seen.len());
    let unread = seen.iter().filter(|s| matches!(s, Seen::Unread)).count();
    let mut most = 0;
    for s in &seen {
        let Seen::Holder(token) = s else { continue };
        let count = seen
            .iter()
            .filter(|o| matches!(o, Seen::Holder(t) if t == token))
            .count();
        if count >= needed {
            return Verdict::Held(*token);
        }
        most = most.max(count);
    }
    if most.saturating_add(unread) < needed {
        Verdict::Free
    } else {
        Verdict::Unknown
    }
}

/// Whether `count` of `nodes` nodes are a majority ([`quorum`]): when that many could not be
/// read (or reset), an operator command says so with its exit status.
#[must_use]
pub const fn is_majority(count: usize, nodes: usize) -> bool {
    count >= quorum(nodes)
}

/// The `status` machine over every node (see the module doc); drive it as a
/// [`crate::Driven`].
pub struct Inspect {
    dialogues: Dialogues<ReadLock>,
}

impl core::fmt::Debug for Inspect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Inspect")
    }
}

impl Inspect {
    /// Reads `lock` on each of `servers` (1 to [`MAX_NODES`]), each node within the lock's
    /// request timeout.
    pub fn new(lock: &Lock, servers: &[ServerInfo], now: Instant) -> Result<Self, ConfigError> {
        check_nodes(servers.len())?;
        let keys = lock.keys();
        let lock_key = keys.lock().concat();
        let fence_key = keys.fence().concat();
        let tasks = servers
            .iter()
            .map(|_| ReadLock {
                lock_key: lock_key.clone(),
                fence_key: fence_key.clone(),
                stage: Stage::Holder,
            })
            .collect();
        let timeout = lock.options().request_timeout;
        Ok(Inspect {
            dialogues: Dialogues::new(tasks, servers, timeout, timeout, now),
        })
    }

    fn outcome(nodes: Vec<Result<Reading, NodeError>>) -> Inspection {
        Inspection { nodes }
    }
}

driven_by_dialogues!(Inspect, Inspection);

/// Between 1 and [`MAX_NODES`] nodes, as for every machine.
pub(crate) fn check_nodes(nodes: usize) -> Result<(), ConfigError> {
    if (1..=MAX_NODES).contains(&nodes) {
        Ok(())
    } else {
        Err(ConfigError::BadNodeCount {
            nodes,
            capacity: MAX_NODES,
        })
    }
}

/// A server's error reply, or a reply the command never gives: the node fails with it.
pub(crate) fn failure(reply: Value) -> NodeError {
    match reply {
        Value::Error(e) => NodeError::Server(ServerError::from_message(&e)),
        _ => NodeError::Protocol(ProtocolError::UnexpectedReply),
    }
}

enum Stage {
    Holder,
    Ttl {
        holder: Option<Token>,
    },
    Fence {
        holder: Option<Token>,
        ttl: Option<Duration>,
    },
}

/// One node's reading: `GET` lock, `PTTL` lock, `GET` fence.
struct ReadLock {
    lock_key: Vec<u8>,
    fence_key: Vec<u8>,
    stage: Stage,
}

impl Task for ReadLock {
    type Done = Reading;

    fn start(&mut self, _now: Instant) -> Step<Reading> {
        Step::Send(command(&[b"GET", &self.lock_key]))
    }

    fn on_reply(&mut self, reply: Value, _now: Instant) -> Step<Reading> {
        match core::mem::replace(&mut self.stage, Stage::Holder) {
            Stage::Holder => {
                let holder = match reply {
                    Value::Nil => None,
                    Value::Text(t) if KeyRole::Lock.fits(&t) => Token::new(&t).ok(),
                    Value::Text(_) => {
                        return Step::Fail(NodeError::NotALock {
                            key: self.lock_key.clone(),
                            why: "it holds a string that is not a lock token",
                        });
                    }
                    other => return Step::Fail(failure(other)),
                };
                self.stage = Stage::Ttl { holder };
                Step::Send(command(&[b"PTTL", &self.lock_key]))
            }
            Stage::Ttl { holder } => {
                let ttl = match reply {
                    Value::Int(ms) => u64::try_from(ms).ok().map(Duration::from_millis),
                    other => return Step::Fail(failure(other)),
                };
                self.stage = Stage::Fence { holder, ttl };
                Step::Send(command(&[b"GET", &self.fence_key]))
            }
            Stage::Fence { holder, ttl } => {
                let fence = match reply {
                    Value::Nil => None,
                    Value::Text(t) => match parse_u64(&t) {
                        Some(fence) => Some(fence),
                        None => {
                            return Step::Fail(NodeError::NotALock {
                                key: self.fence_key.clone(),
                                why: "the fencing counter is not a number",
                            });
                        }
                    },
                    other => return Step::Fail(failure(other)),
                };
                Step::Done(Reading { holder, ttl, fence })
            }
        }
    }
}

/// A decimal `u64` (what `INCR` leaves), nothing else.
fn parse_u64(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}
